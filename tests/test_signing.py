"""certify.signing: P-256 keys, in-toto statements, DSSE envelopes, model-signing interop."""

from __future__ import annotations

import base64
import dataclasses
import doctest
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from certify import pipeline, signing
from certify._files import published_files
from certify.certificate import canonical_bytes, load_certificate, write_certificate
from certify.cli import run_cli
from certify.errors import SigningError, VerificationError
from certify.records import EvaluationSettings, RunSettings

GOLDEN = Path(__file__).parent / "fixtures" / "certificate" / "golden.certificate.json"


@pytest.fixture()
def keys(tmp_path: Path) -> signing.KeyPair:
    return signing.generate_key(tmp_path / "keys")


@pytest.fixture()
def stand_in_run(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A run folder whose 'artifact' is a stand-in file the golden certificate is re-pointed at."""
    run = tmp_path / "run"
    run.mkdir()
    data = os.urandom(4096)
    (run / "model.certz").write_bytes(data)
    certificate = load_certificate(GOLDEN)
    # only the fields signing reads are made true; the bound is not recomputed here
    certificate["artifact"]["sha256"] = hashlib.sha256(data).hexdigest()
    certificate["artifact"]["size_bytes"] = len(data)
    return run, certificate


# --------------------------------------------------------------------------- keys


def test_generate_key_files_modes_and_fingerprint(keys: signing.KeyPair) -> None:
    private = Path(keys.private_key_path)
    public = Path(keys.public_key_path)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_public_key(public.read_bytes())
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert keys.fingerprint == hashlib.sha256(der).hexdigest()
    assert signing.public_key_fingerprint(public.read_bytes()) == keys.fingerprint
    assert not list(private.parent.glob("*.tmp-*"))


def test_generate_key_refuses_to_overwrite(keys: signing.KeyPair) -> None:
    folder = Path(keys.private_key_path).parent
    with pytest.raises(SigningError, match="already exists"):
        signing.generate_key(folder)
    again = signing.generate_key(folder, force=True)
    assert again.fingerprint != keys.fingerprint


def test_encrypted_key_needs_its_passphrase(tmp_path: Path) -> None:
    pair = signing.generate_key(tmp_path, b"correct horse")
    pem = Path(pair.private_key_path).read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in pem and b"correct horse" not in pem
    with pytest.raises(SigningError, match="CERTIFY_KEY_PASSPHRASE"):
        signing.load_private_key(pair.private_key_path)
    with pytest.raises(SigningError, match="wrong passphrase"):
        signing.load_private_key(pair.private_key_path, b"wrong")
    signing.load_private_key(pair.private_key_path, b"correct horse")


def test_non_p256_keys_are_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    other = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "p384.pem"
    path.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(SigningError, match="P-256"):
        signing.load_private_key(path)
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    pem = ed.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(VerificationError, match="P-256"):
        signing.load_public_key(pem)
    with pytest.raises(VerificationError, match="PEM"):
        signing.load_public_key(b"not a key")


def test_keygen_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.delenv("CERTIFY_KEY_PASSPHRASE", raising=False)
    assert run_cli(["keygen", "-o", str(tmp_path / "k")]) == 0
    out = capsys.readouterr()
    fingerprint = signing.public_key_fingerprint(
        (tmp_path / "k" / signing.PUBLIC_KEY_NAME).read_bytes()
    )
    assert fingerprint in out.out and "PRIVATE" not in out.out + out.err
    assert run_cli(["keygen", "-o", str(tmp_path / "k")]) == 9
    assert "--force" in capsys.readouterr().err
    monkeypatch.setenv("CERTIFY_KEY_PASSPHRASE", "s3cret passphrase")
    assert run_cli(["keygen", "-o", str(tmp_path / "k"), "--force", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["encrypted"] is True and "s3cret" not in json.dumps(report)
    private = Path(report["private_key_path"])
    assert b"ENCRYPTED" in private.read_bytes()
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


# --------------------------------------------------------------------------- DSSE


def test_pae_matches_the_dsse_spec() -> None:
    # the example of the DSSE v1 protocol document
    assert signing.dsse_pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_statement_subjects_and_round_trip(
    stand_in_run: tuple[Path, dict[str, Any]], keys: signing.KeyPair
) -> None:
    run, certificate = stand_in_run
    (run / "tokenizer.safetensors").write_bytes(b"more weights")
    statement = signing.build_intoto_statement(certificate, run, ["tokenizer.safetensors"])
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == signing.PREDICATE_TYPE
    names = [subject["name"] for subject in statement["subject"]]
    assert names == ["model.certz", "tokenizer.safetensors"]
    assert (
        statement["subject"][1]["digest"]["sha256"] == hashlib.sha256(b"more weights").hexdigest()
    )
    assert statement["subject"][1]["annotations"] == {"size_bytes": 12}
    envelope = signing.sign_intoto_statement(statement, keys.private_key_path)
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert envelope["signatures"][0]["keyid"] == keys.fingerprint
    assert base64.b64decode(envelope["payload"]) == canonical_bytes(statement)
    verified, fingerprint = signing.verify_envelope(
        envelope, Path(keys.public_key_path).read_bytes()
    )
    assert verified == json.loads(canonical_bytes(statement)) and fingerprint == keys.fingerprint


def test_statement_refuses_artifact_that_differs(
    stand_in_run: tuple[Path, dict[str, Any]],
) -> None:
    run, certificate = stand_in_run
    (run / "model.certz").write_bytes(b"another file")
    with pytest.raises(SigningError, match="does not match the certificate"):
        signing.build_intoto_statement(certificate, run)


def _signed(stand_in_run: tuple[Path, dict[str, Any]], keys: signing.KeyPair) -> dict[str, Any]:
    run, certificate = stand_in_run
    return signing.sign_intoto_statement(
        signing.build_intoto_statement(certificate, run), keys.private_key_path
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda e: e.update(payloadType="application/json"), "payloadType"),
        (lambda e: e.update(payload=e["payload"][:-4]), "payload"),
        (lambda e: e.update(payload=e["payload"][:10] + "\n" + e["payload"][10:]), "base64"),
        (lambda e: e.update(payload=" " + e["payload"]), "base64"),
        (lambda e: e.update(signatures=[]), "signatures"),
        (lambda e: e.update(extra=1), "unexpected"),
        (lambda e: e.pop("payloadType"), "missing"),
        (lambda e: e["signatures"][0].update(sig=e["signatures"][0]["sig"][:-8]), "sig"),
        (lambda e: e["signatures"][0].update(keyid=7), "keyid"),
        (
            lambda e: e.update(payload=base64.b64encode(b'{"_type": "x"}').decode()),
            "in-toto",
        ),
        (
            lambda e: e.update(payload=base64.b64encode(b'{"a": NaN}').decode()),
            "NaN",
        ),
    ],
)
def test_malformed_envelopes_fail_with_a_reason(
    stand_in_run: tuple[Path, dict[str, Any]], keys: signing.KeyPair, change: Any, reason: str
) -> None:
    envelope = _signed(stand_in_run, keys)
    change(envelope)
    with pytest.raises(VerificationError, match=reason):
        signing.verify_envelope(envelope, Path(keys.public_key_path).read_bytes())


def test_reencoded_statement_fails_signature(
    stand_in_run: tuple[Path, dict[str, Any]], keys: signing.KeyPair
) -> None:
    envelope = _signed(stand_in_run, keys)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(VerificationError, match="no signature verifies"):
        signing.verify_envelope(envelope, Path(keys.public_key_path).read_bytes())


def test_wrong_key_fails(
    stand_in_run: tuple[Path, dict[str, Any]], keys: signing.KeyPair, tmp_path: Path
) -> None:
    other = signing.generate_key(tmp_path / "other")
    envelope = _signed(stand_in_run, keys)
    with pytest.raises(VerificationError, match=other.fingerprint):
        signing.verify_envelope(envelope, Path(other.public_key_path).read_bytes())


def test_load_envelope_is_strict(tmp_path: Path) -> None:
    path = tmp_path / "e.json"
    path.write_text('{"payload": "", "payload": ""}')
    with pytest.raises(VerificationError, match="duplicate"):
        signing.load_envelope(path)
    path.write_text("[]")
    with pytest.raises(VerificationError, match="not a JSON object"):
        signing.load_envelope(path)


# --------------------------------------------------------------------------- model-signing


def test_sign_run_writes_everything_and_model_signing_accepts_it(
    stand_in_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    run, certificate = stand_in_run
    pair = signing.generate_key(tmp_path / "keys", b"pass phrase")
    (run / "README.md").write_text("# card\n")
    paths = signing.sign_run(run, certificate, pair.private_key_path, b"pass phrase")
    assert set(paths) == {"certificate", "envelope", "public_key", "bundle"}
    assert (run / "certificate.json").read_bytes() == canonical_bytes(certificate)
    assert sorted(p.name for p in run.iterdir()) == sorted(
        [
            "README.md",
            "certificate.json",
            "certificate.dsse.json",
            signing.PUBLIC_KEY_NAME,
            "model.certz",
            "model.sig",
        ]
    )
    signing.verify_model_signing_bundle(run, pair.public_key_path)
    # the model-signing command line, exactly as its documentation shows it
    command = [
        sys.executable,
        "-m",
        "model_signing",
        "verify",
        "key",
        "--signature",
        str(run / "model.sig"),
        "--public_key",
        pair.public_key_path,
        str(run),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (run / "README.md").write_text("# changed card\n")
    with pytest.raises(VerificationError, match=r"README\.md"):
        signing.verify_model_signing_bundle(run, pair.public_key_path)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode != 0


def test_sign_run_takes_a_certificate_file_and_ensure_signed_signs_only_when_needed(
    stand_in_run: tuple[Path, dict[str, Any]], keys: signing.KeyPair
) -> None:
    run, certificate = stand_in_run
    write_certificate(certificate, run / "certificate.json")
    paths = signing.sign_run(run, run / "certificate.json", keys.private_key_path)
    assert paths["bundle"] == run / "model.sig"
    assert signing.ensure_signed(run, None) is False  # model.sig covers every file
    (run / "README.md").write_text("# a card written after signing\n")
    assert "no longer matches" in str(signing.published_signature_problem(run))
    with pytest.raises(SigningError, match="--key"):
        signing.ensure_signed(run, None)
    assert signing.ensure_signed(run, keys.private_key_path) is True
    assert signing.published_signature_problem(run) is None
    # a stray file that push would leave behind does not matter to the published set
    (run / "notes.pem").write_bytes(Path(keys.private_key_path).read_bytes())
    assert signing.ensure_signed(run, None) is False


def test_the_docstring_round_trip_runs() -> None:
    results = doctest.testmod(signing, optionflags=doctest.ELLIPSIS)
    assert results.attempted >= 8 and results.failed == 0


# --------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def certified_run(
    toy_model: Path, sample_texts: tuple[str, ...], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A folder exactly as `certify run` leaves it, and the folder its key was made in."""
    root = tmp_path_factory.mktemp("certified")
    texts = root / "texts"
    texts.mkdir()
    for number, text in enumerate(sample_texts):
        (texts / f"doc{number:02d}.txt").write_text(text, encoding="utf-8")
    home = root / "certify-home"
    settings = RunSettings(
        model=str(toy_model),
        out_dir=str(root / "run"),
        key_dir=str(home / "keys"),
        dataset=str(texts),
        evaluation=EvaluationSettings(
            chunk_tokens=32, samples=6, alphas=(0.1,), top_k=(1,), device="cpu"
        ),
    )
    pipeline.run(settings)
    return {"run": root / "run", "home": home, "settings": settings}


def _copy(certified_run: dict[str, Any], tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(certified_run["run"], target)
    return target


def _official_verify(folder: Path, public_key: Path) -> subprocess.CompletedProcess[str]:
    """model-signing's own command line (its console script is this module's CLI)."""
    command = [
        sys.executable,
        "-m",
        "model_signing",
        "verify",
        "key",
        "--signature",
        str(folder / "model.sig"),
        "--public_key",
        str(public_key),
        str(folder),
    ]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def _signed_names(bundle: Path) -> set[str]:
    """The files a model-signing bundle covers (its in-toto predicate's resources)."""
    envelope = json.loads(bundle.read_bytes())["dsseEnvelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    return {resource["name"] for resource in statement["predicate"]["resources"]}


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_model_signing_cli_accepts_a_certify_run_folder_and_rejects_any_change(
    certified_run: dict[str, Any], tmp_path: Path
) -> None:
    public_key = certified_run["home"] / "keys" / signing.PUBLIC_KEY_NAME
    run = certified_run["run"]
    # the folder as `certify run` left it: state folder and log included, neither signed
    assert (run / ".certify").is_dir() and (run / "run.log").is_file()
    done = _official_verify(run, public_key)
    assert done.returncode == 0, done.stdout + done.stderr
    published = {path.name for path in published_files(run)}
    assert _signed_names(run / "model.sig") == published - {"model.sig"}
    assert {"model.certz", "README.md", "bound.png", "certificate.dsse.json"} <= published
    for name in ("README.md", "model.certz"):
        changed = _copy(certified_run, tmp_path / name)
        _flip_one_byte(changed / name)
        done = _official_verify(changed, public_key)
        assert done.returncode != 0 and name in done.stderr, done.stdout + done.stderr


def test_a_rerun_reuses_signing_and_still_verifies(
    certified_run: dict[str, Any], tmp_path: Path
) -> None:
    run = _copy(certified_run, tmp_path)
    again = pipeline.run(dataclasses.replace(certified_run["settings"], out_dir=str(run)))
    assert again is not None
    assert {"certificate", "card", "sign", "model_signing"} <= set(again.reused_stages)
    done = _official_verify(run, certified_run["home"] / "keys" / signing.PUBLIC_KEY_NAME)
    assert done.returncode == 0, done.stdout + done.stderr  # run.log grew; it is not signed


def _hub_env(monkeypatch: pytest.MonkeyPatch, hub_server: Any, home: Path) -> None:
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    monkeypatch.setenv("CERTIFY_HOME", str(home))
    monkeypatch.delenv("CERTIFY_KEY_PASSPHRASE", raising=False)


def _push(run: Path, repo_id: str, capsys: pytest.CaptureFixture[str], *extra: str) -> Any:
    code = run_cli(["push", str(run), "--repo-id", repo_id, "--json", *extra])
    captured = capsys.readouterr()
    return code, captured


def _download(hub_server: Any, repo_id: str, folder: Path) -> Path:
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(
            repo_id, local_dir=folder, endpoint=hub_server.endpoint, token=hub_server.token
        )
    )


def test_pushed_repo_verifies_with_the_official_cli_after_download(
    certified_run: dict[str, Any],
    hub_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    run = _copy(certified_run, tmp_path)
    public_key = certified_run["home"] / "keys" / signing.PUBLIC_KEY_NAME
    _hub_env(monkeypatch, hub_server, certified_run["home"])
    code, captured = _push(run, "alice/toy-certified", capsys)
    assert code == 0, captured.err
    pushed = json.loads(captured.out)
    assert "model.sig" in pushed["files"] and "run.log" not in pushed["files"]
    assert pushed["signed_again"] is False
    download = _download(hub_server, "alice/toy-certified", tmp_path / "download")
    assert (download / ".cache").is_dir()  # huggingface_hub's metadata, never signed
    done = _official_verify(download, public_key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert run_cli(["verify", "alice/toy-certified", "--key", str(public_key), "--json"]) == 0
    checks = {c["name"]: c["status"] for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["model_signing"] == "pass"
    _flip_one_byte(download / "bound.png")
    done = _official_verify(download, public_key)
    assert done.returncode != 0 and "bound.png" in done.stderr


def test_push_signs_again_when_the_card_changed(
    certified_run: dict[str, Any],
    hub_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    run = _copy(certified_run, tmp_path)
    public_key = certified_run["home"] / "keys" / signing.PUBLIC_KEY_NAME
    with (run / "README.md").open("a", encoding="utf-8") as card:
        card.write("\nA paragraph the publisher added after the run.\n")
    assert _official_verify(run, public_key).returncode != 0
    _hub_env(monkeypatch, hub_server, certified_run["home"])  # the key certify run made
    code, captured = _push(run, "alice/edited", capsys)
    assert code == 0, captured.err
    assert json.loads(captured.out)["signed_again"] is True
    assert _official_verify(run, public_key).returncode == 0
    download = _download(hub_server, "alice/edited", tmp_path / "download")
    assert "added after the run" in (download / "README.md").read_text(encoding="utf-8")
    done = _official_verify(download, public_key)
    assert done.returncode == 0, done.stdout + done.stderr


def test_push_refuses_a_stale_model_sig_it_cannot_sign_again(
    certified_run: dict[str, Any],
    hub_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    run = _copy(certified_run, tmp_path)
    (run / "README.md").write_text("# replaced\n", encoding="utf-8")
    _hub_env(monkeypatch, hub_server, tmp_path / "no-keys-here")
    code, captured = _push(run, "alice/stale", capsys)
    assert code == 9, captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "model.sig" in errors[0] and "--key" in errors[0], captured.err
    assert "Traceback" not in captured.out + captured.err
    other = signing.generate_key(tmp_path / "other-keys")
    code, captured = _push(run, "alice/stale", capsys, "--key", other.private_key_path)
    assert code == 9 and "is not the key that signed" in captured.err
    assert hub_server.head("alice/stale") is None  # nothing was created or committed
