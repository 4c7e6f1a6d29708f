"""``certify push`` and ``certify card``: publish a run and attach bounds to model cards.

The token is HF_TOKEN, else huggingface_hub's stored login (``hf auth login``); the
endpoint is ``--endpoint``, else HF_ENDPOINT, else https://huggingface.co.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path
from typing import Any

import typer

from certify import card as card_module
from certify import hub, signing
from certify._files import PRIVATE_KEY_NAME, write_text_atomic
from certify.certificate import load_certificate
from certify.cli._app import app, console, default_key_dir, env, err_console, print_json
from certify.errors import InvalidInputError, UsageError
from certify.records import to_dict

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")

PUSH_HELP = """Publish a finished run folder to a Hub model repo in ONE atomic commit.

RUN_DIR must hold certificate.json, certificate.dsse.json and model.certz (and
model.certz must be the file the certificate names); its other top-level files
(README.md, bound.png, the public key, model.sig) go in the same commit.
Subfolders, hidden and temporary files, run.log and private keys are never
uploaded. The repo is created if missing; --revision pushes to a branch (created
from main if missing). If anything fails, nothing is committed.

model.sig (OpenSSF model-signing) must cover exactly the files pushed. If it does
not (say `certify card` changed README.md after the run), the folder is signed again
with the run's private key: --key, else the key `certify run` made
($CERTIFY_HOME/keys, else ~/.config/certify/keys); CERTIFY_KEY_PASSPHRASE decrypts
it. Without that key the push is refused.

Token: HF_TOKEN, else the login of `hf auth login`. Endpoint: --endpoint, else
HF_ENDPOINT (self-hosted hubs and mirrors).

[bold]Examples[/bold]

  certify push runs/smol --repo-id me/smol-certified

  certify push runs/smol --repo-id my-org/smol-certified --private --revision certified

  certify push runs/smol --repo-id me/smol-certified --key keys/certify-signing-key.pem

  HF_ENDPOINT=https://hub.example.org certify push runs/smol --repo-id me/smol --json
"""

CARD_HELP = """Attach (or refresh) certified bounds on a model card, changing nothing else.

TARGET is a local README.md, a folder (its README.md; created if missing) or a Hub
repo id. The card gets model-index results for every NON-VACUOUS certified number
(bits per token at its α, perplexity, top-k error; named with α, δ and held-out mode;
rounded up), base_model (only a Hub model, only if absent), tags, a `certify`
metadata key, and a section between <!-- certify:begin --> and <!-- certify:end -->
that lists every statement (vacuous ones marked), the data a non-vacuous bound needs,
the plot and how to verify. Local models and datasets appear by short name and
content hash, never by path. Other metadata, other eval results and the rest of the
text stay byte-for-byte; running it twice changes nothing.

A local card is updated in place (with bound.png next to it); its verify commands
name the certificate's folder (relative, as given). For a Hub repo the verify
commands pin the commit read, when that commit holds this certificate.json; the
updated card is printed, or written to --output; with --push it is committed back
(README.md + bound.png, one commit, refused if the branch moved meanwhile, and
refused for a repo whose model.sig covers README.md: update the run folder's card
and `certify push` it, which signs again).

[bold]Examples[/bold]

  certify card runs/smol --certificate runs/smol/certificate.json

  certify card my-org/my-model --certificate certificate.json --key key.pub.pem --push

  certify card my-org/my-model --certificate certificate.json --output README.md
"""


def _endpoint(option: str | None) -> str | None:
    return option or env("HF_ENDPOINT")


def _token() -> str | None:
    """HF_TOKEN, else huggingface_hub's stored login (None if neither)."""
    token = env("HF_TOKEN")
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


@app.command("push", help=PUSH_HELP)
def push_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="Folder written by `certify run`."),
    repo_id: str = typer.Option(..., "--repo-id", help="Target model repo, NAMESPACE/NAME."),
    private: bool = typer.Option(False, "--private", help="Create the repo private."),
    revision: str = typer.Option(None, "--revision", help="Branch to push to (default main)."),
    commit_message: str = typer.Option(None, "--commit-message", help="Commit title."),
    endpoint: str = typer.Option(None, "--endpoint", help="Hub endpoint (default HF_ENDPOINT)."),
    create_pr: bool = typer.Option(False, "--create-pr", help="Open a pull request instead."),
    key: Path = typer.Option(
        None,
        "--key",
        help="The run's private key, to sign again if model.sig no longer covers the folder "
        "(default: the key certify run made).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    if key is not None and not key.is_file():
        raise InvalidInputError(
            f"{key} is not a file", field="--key", hint="pass a PEM private key"
        )
    passphrase = env("CERTIFY_KEY_PASSPHRASE")
    err_console.print(f"pushing {run_dir} to {repo_id} …")
    result = hub.push_run(
        run_dir,
        repo_id,
        private=private,
        revision=revision,
        commit_message=commit_message,
        endpoint=_endpoint(endpoint),
        token=_token(),
        create_pr=create_pr,
        signing_key=key if key is not None else default_key_dir() / PRIVATE_KEY_NAME,
        key_passphrase=passphrase.encode("utf-8") if passphrase else None,
    )
    if as_json:
        print_json(to_dict(result))
        return
    if result.signed_again:
        console.print("model.sig did not cover the files any more: signed the folder again")
    console.print(f"pushed {len(result.files)} files to {result.repo_url} ({result.revision})")
    console.print(f"commit: {result.commit_url}")
    if result.card_commit_oid:
        console.print(
            f"card: its verify commands pin {result.commit_oid[:12]} "
            f"(commit {result.card_commit_oid[:12]})"
        )
    if result.pull_request_url:
        console.print(f"pull request: {result.pull_request_url}")


def _fingerprint(key: Path | None, certificate_path: Path) -> str:
    candidates = [key] if key is not None else [certificate_path.parent / signing.PUBLIC_KEY_NAME]
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            return str(signing.public_key_fingerprint(candidate.read_bytes()))
    if key is not None:
        raise InvalidInputError(f"cannot read the public key {key}", field="--key")
    raise UsageError(
        f"no --key given and no {signing.PUBLIC_KEY_NAME} next to {certificate_path}",
        field="--key",
        hint="pass the signer's public key with --key KEY.pub.pem",
    )


def _as_given(path: Path) -> str:
    """A folder as the card names it: relative to the working folder when inside it."""
    if path.is_absolute():
        try:
            return path.relative_to(Path.cwd()).as_posix() or "."
        except ValueError:
            return path.as_posix()  # the card reduces it to its name
    return path.as_posix()


@app.command("card", help=CARD_HELP)
def card_command(
    target: str = typer.Argument(..., metavar="TARGET", help="README.md, folder or Hub repo id."),
    certificate: Path = typer.Option(
        ..., "--certificate", "-c", help="The certificate.json to show."
    ),
    key: Path = typer.Option(
        None, "--key", "-k", help="Signer's public key (default: the .pub.pem next to it)."
    ),
    base_model: str = typer.Option(
        None,
        "--base-model",
        help="Hub id for base_model if the card has none (default: the certified model, "
        "when it came from the Hub).",
    ),
    dataset: str = typer.Option(
        None, "--dataset", help="Hub dataset id (default: data.source, when it is one)."
    ),
    dataset_config: str = typer.Option(None, "--dataset-config", help="Dataset config name."),
    dataset_split: str = typer.Option(None, "--dataset-split", help="Dataset split."),
    push: bool = typer.Option(False, "--push", help="Commit the card back to the Hub repo."),
    revision: str = typer.Option(None, "--revision", help="Hub branch to read and push."),
    output: Path = typer.Option(None, "--output", "-o", help="Write a Hub card here instead."),
    endpoint: str = typer.Option(None, "--endpoint", help="Hub endpoint (default HF_ENDPOINT)."),
    commit_message: str = typer.Option(None, "--commit-message", help="Commit title."),
    as_json: bool = typer.Option(False, "--json", help="Print what was done as JSON."),
) -> None:
    try:
        certificate_bytes = certificate.read_bytes()
    except OSError as error:
        raise InvalidInputError(
            f"cannot read {certificate}: {error.strerror}", field="--certificate"
        ) from None
    certificate_data = load_certificate(certificate)
    certificate_sha = hashlib.sha256(certificate_bytes).hexdigest()
    fingerprint = _fingerprint(key, certificate)
    dataset_fields = {"id": dataset, "config": dataset_config, "split": dataset_split}

    local = Path(target)
    is_local = local.exists() or local.suffix.lower() == ".md" or not _REPO_ID.match(target)
    if is_local:
        if push:
            raise UsageError("--push applies to Hub repo ids only", field="--push")
        card_path = local / "README.md" if local.is_dir() else local
        existing = card_path.read_text(encoding="utf-8") if card_path.exists() else None
        text = card_module.render_card(
            certificate_data,
            key_fingerprint=fingerprint,
            base_model=base_model,
            dataset=dataset_fields,
            existing=existing,
            run_folder=_as_given(certificate.parent),
            certificate_sha256_hex=certificate_sha,
        )
        changed = text != existing
        if changed:
            card_module.plot_bound(certificate_data, card_path.parent / "bound.png")
            write_text_atomic(card_path, text)
        report: dict[str, Any] = {"card": str(card_path), "changed": changed}
        if as_json:
            print_json(report)
        else:
            console.print(f"{'updated' if changed else 'unchanged'}: {card_path}")
        return

    token = _token()
    hub_endpoint = _endpoint(endpoint)
    existing, commit = hub.fetch_card(target, revision, endpoint=hub_endpoint, token=token)
    _, names = hub.repo_file_names(target, commit, endpoint=hub_endpoint, token=token)
    if push and "model.sig" in names:
        raise UsageError(
            f"{target}@{commit[:12]} has a model.sig that covers README.md: a card pushed "
            "alone would break it",
            field="--push",
            hint="update the card in the run folder (certify card RUN_DIR -c "
            "RUN_DIR/certificate.json) and publish it with certify push RUN_DIR, which signs "
            "again",
        )
    # pin the verify commands to a commit that holds exactly this certificate: the one
    # the card already names, else the one read
    pinned = card_module.pinned_revision(existing, target, certificate_sha)
    if pinned is None and "certificate.json" in names:
        published = hub.fetch_file(
            target, "certificate.json", commit, endpoint=hub_endpoint, token=token
        )
        if hashlib.sha256(published).hexdigest() == certificate_sha:
            pinned = commit
    text = card_module.render_card(
        certificate_data,
        key_fingerprint=fingerprint,
        base_model=base_model,
        dataset=dataset_fields,
        existing=existing,
        repo_id=target,
        revision=pinned,
        endpoint=hub_endpoint,
        certificate_sha256_hex=certificate_sha,
    )
    changed = text != existing
    if not push:
        if output is not None:
            write_text_atomic(output, text)
            card_module.plot_bound(certificate_data, output.parent / "bound.png")
            err_console.print(f"wrote {output} (not pushed; add --push to commit it)")
        elif as_json:
            print_json({"repo_id": target, "commit": commit, "changed": changed, "card": text})
        else:
            console.out(text, end="", highlight=False)
        return
    if not changed:
        result: dict[str, Any] = {"repo_id": target, "commit": commit, "changed": False}
        if as_json:
            print_json(result)
        else:
            console.print(f"the card of {target} already shows this certificate; nothing pushed")
        return
    with tempfile.TemporaryDirectory(prefix="certify-card-") as scratch:
        plot = Path(scratch) / "bound.png"
        card_module.plot_bound(certificate_data, plot)
        pushed = hub.push_card(
            target,
            text,
            plot_path=plot,
            revision=revision,
            parent_commit=commit,
            commit_message=commit_message,
            endpoint=hub_endpoint,
            token=token,
        )
    if as_json:
        print_json({**to_dict(pushed), "changed": True})
    else:
        console.print(f"updated the card of {target}: {pushed.commit_url}")


__all__ = ["card_command", "push_command"]
