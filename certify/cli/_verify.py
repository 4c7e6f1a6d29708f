"""``certify keygen`` and ``certify verify``."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from rich.markup import escape

from certify.card import VERIFY_SCOPE
from certify.certificate import RISK_TOLERANCE
from certify.cli._app import (
    app,
    console,
    default_key_dir,
    default_shard_cache,
    env,
    err_console,
    print_json,
    sampling_workers,
)
from certify.errors import InvalidInputError, VerificationError
from certify.hub import download_run
from certify.signing import generate_key
from certify.verify import verify

KEYGEN_HELP = """Create an ECDSA P-256 key pair for signing certificates.

Writes [cyan]certify-signing-key.pem[/cyan] (private, PKCS#8, file mode 0600) and
[cyan]certify-signing-key.pub.pem[/cyan] (public) into DIR and prints the public key's
fingerprint (sha256 of its DER form). Publish the fingerprint or the .pub.pem where
users can find it: [bold]certify verify --key[/bold] pins it. If CERTIFY_KEY_PASSPHRASE
is set, the private key is encrypted with it. The private key is never printed.

[bold]Examples[/bold]

  certify keygen

  CERTIFY_KEY_PASSPHRASE='correct horse' certify keygen -o keys/

  certify keygen -o keys/ --force --json
"""

VERIFY_HELP = f"""Check a certified model offline, trusting nothing in it.

TARGET is a run folder (certificate.json + certificate.dsse.json + model.certz), a
certificate file, an envelope file, or a Hub repo id (downloaded first; HF_TOKEN and
HF_ENDPOINT are used). One line per check: the schema, the DSSE signature (against
--key), that the signed statement is this certificate, every signed file's sha256 and
size, that the artifact decodes to the recorded weights, that model.sig (OpenSSF
model-signing, when present) covers the folder, that every number of the bound
recomputes from the recorded inputs, and that the sentence matches the numbers.

{VERIFY_SCOPE}

Without --key the signature can only be checked against the key published next to the
certificate, which proves nothing about who signed: the check is shown as UNPINNED
with the key's fingerprint and fails unless --allow-unpinned is given.

Exit status: 0 when every check passes, 10 when any fails.

[bold]Examples[/bold]

  certify verify runs/tiny --key certify-signing-key.pub.pem

  certify verify user/tiny-llama-certified --key signer.pub.pem --json

  certify verify runs/tiny --key k.pub.pem --recompute-risk --dataset shards/
"""


def _unwrap(text: str) -> str:
    """Join the lines of each prose paragraph (rich keeps single newlines); keep examples."""
    paragraphs = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        indented = any(line.startswith("  ") for line in lines)
        paragraphs.append(block if indented else " ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs)


_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_MARKS = {"pass": "✓", "fail": "✗", "unpinned": "!", "not_run": "-"}


@app.command("keygen", help=_unwrap(KEYGEN_HELP))
def keygen(
    out_dir: Path = typer.Option(
        None,
        "--out-dir",
        "-o",
        help="Folder for the key pair (default: where certify run looks, ~/.config/certify/keys).",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing key pair."),
    as_json: bool = typer.Option(False, "--json", help="Print paths and fingerprint as JSON."),
) -> None:
    passphrase = env("CERTIFY_KEY_PASSPHRASE")
    pair = generate_key(
        out_dir or default_key_dir(),
        passphrase.encode("utf-8") if passphrase else None,
        force=force,
    )
    if as_json:
        print_json(
            {
                "private_key_path": pair.private_key_path,
                "public_key_path": pair.public_key_path,
                "fingerprint": pair.fingerprint,
                "encrypted": passphrase is not None,
            }
        )
        return
    console.print(f"private key: {pair.private_key_path} (mode 0600"
                  f"{', encrypted' if passphrase else ', NOT encrypted'})")  # fmt: skip
    console.print(f"public key:  {pair.public_key_path}")
    console.print(f"fingerprint: {pair.fingerprint}")
    if not passphrase:
        err_console.print(
            "note: set CERTIFY_KEY_PASSPHRASE before keygen to encrypt the private key"
        )


def _resolve_target(target: str, revision: str | None) -> Path:
    path = Path(target)
    if path.exists():
        if revision is not None:
            raise InvalidInputError("--revision applies to Hub repo ids only", field="--revision")
        return path
    if _REPO_ID.match(target):
        err_console.print(f"downloading {target}{'@' + revision if revision else ''} …")
        return download_run(target, revision, endpoint=env("HF_ENDPOINT"), token=env("HF_TOKEN"))
    raise InvalidInputError(
        f"{target} is neither an existing path nor a Hub repo id (owner/name)",
        field="TARGET",
    )


@app.command("verify", help=_unwrap(VERIFY_HELP))
def verify_command(
    target: str = typer.Argument(..., help="Run folder, certificate file or Hub repo id."),
    key: Path = typer.Option(
        None, "--key", "-k", help="The signer's public key (PEM) to pin the signature to."
    ),
    allow_unpinned: bool = typer.Option(
        False, "--allow-unpinned", help="Accept a signature by the key published in the folder."
    ),
    revision: str = typer.Option(None, "--revision", help="Hub revision (branch, tag or commit)."),
    recompute_risk: bool = typer.Option(
        False, "--recompute-risk", help="Re-measure the risk on --dataset (slow)."
    ),
    dataset: str = typer.Option(
        None, "--dataset", help="Token shards or source to re-measure the risk on."
    ),
    risk_tolerance: float = typer.Option(
        RISK_TOLERANCE,
        "--risk-tolerance",
        help="Largest accepted gap of a re-measured mean (its unit).",
    ),
    device: str = typer.Option(
        "auto", "--device", help="Device for --recompute-risk (auto: CUDA, then MPS, then CPU)."
    ),
    skip_decode: bool = typer.Option(
        False, "--skip-decode", help="Do not decode the artifact (faster; that check then fails)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    public_key_pem = None
    if key is not None:
        try:
            public_key_pem = key.read_bytes()
        except OSError as error:
            raise InvalidInputError(f"cannot read {key}: {error.strerror}", field="--key") from None
    if dataset is not None and not recompute_risk:
        raise InvalidInputError("--dataset is only used with --recompute-risk", field="--dataset")
    folder = _resolve_target(target, revision)
    report = verify(
        folder,
        public_key_pem=public_key_pem,
        allow_unpinned=allow_unpinned,
        decode_artifact=not skip_decode,
        recompute_risk=recompute_risk,
        dataset=dataset,
        risk_tolerance=risk_tolerance,
        risk_device=device,
        cache=default_shard_cache(),
        endpoint=env("HF_ENDPOINT"),
        token=env("HF_TOKEN"),
        workers=sampling_workers() if recompute_risk else 0,
    )
    if as_json:
        print_json(
            {
                "target": target,
                "passed": report.passed,
                "fingerprint": report.fingerprint,
                "pinned": report.pinned,
                "checks": [
                    {
                        "name": check.name,
                        "passed": check.passed,
                        "status": check.status,
                        "reason": check.reason,
                    }
                    for check in report.checks
                ],
            }
        )
    else:
        width = max(len(check.name) for check in report.checks)
        for check in report.checks:
            style = "green" if check.passed else ("red" if check.status == "fail" else "yellow")
            mark = _MARKS[check.status]
            console.print(
                f"[{style}]{mark}[/{style}] {check.name.ljust(width)}  {escape(check.reason)}",
                markup=True,
                soft_wrap=True,
                highlight=False,
            )
    if not report.passed:
        failed = report.failed()
        names = ", ".join(check.name for check in failed)
        raise VerificationError(f"{len(failed)} check(s) did not pass: {names}")
