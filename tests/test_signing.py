"""certify.signing: P-256 keys, in-toto statements, DSSE envelopes, model-signing interop."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from certify import signing
from certify.certificate import canonical_bytes, load_certificate
from certify.cli import run_cli
from certify.errors import SigningError, VerificationError

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
    statement = signing.build_statement(certificate, run, ["tokenizer.safetensors"])
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == signing.PREDICATE_TYPE
    names = [subject["name"] for subject in statement["subject"]]
    assert names == ["model.certz", "tokenizer.safetensors"]
    assert (
        statement["subject"][1]["digest"]["sha256"] == hashlib.sha256(b"more weights").hexdigest()
    )
    assert statement["subject"][1]["annotations"] == {"size_bytes": 12}
    envelope = signing.sign_statement(statement, keys.private_key_path)
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
        signing.build_statement(certificate, run)


def _signed(stand_in_run: tuple[Path, dict[str, Any]], keys: signing.KeyPair) -> dict[str, Any]:
    run, certificate = stand_in_run
    return signing.sign_statement(signing.build_statement(certificate, run), keys.private_key_path)


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
