"""ECDSA P-256 keys, in-toto Statements, DSSE envelopes and OpenSSF model-signing.

* ``generate_key``          -- a P-256 key pair; the private key is created 0600 and
  encrypted when a passphrase is given.
* ``build_intoto_statement``       -- an in-toto Statement v1 whose subjects are the published
  weight files (by sha256) and whose predicate is the certificate.
* ``sign_intoto_statement``        -- a DSSE envelope over the statement (ECDSA-SHA256 of the
  DSSE pre-authentication encoding).
* ``verify_envelope``       -- strict parse + signature check against a public key.
* ``sign_run``              -- THE way a run folder is signed (``certify run`` and
  ``certify push`` both call it): ``certificate.dsse.json``, the public key copy and,
  last, ``model.sig``, an OpenSSF model-signing bundle over exactly the published files
  (:func:`certify._files.published_files`), which ``model_signing verify key`` accepts.
* ``ensure_signed``         -- before a push: sign again when ``model.sig`` no longer
  covers the files to publish (say, ``certify card`` changed README.md), else refuse.

A statement signed and verified (the round trip):

>>> import base64, tempfile
>>> scratch = tempfile.TemporaryDirectory()
>>> keys = generate_key(scratch.name)
>>> statement = {
...     "_type": INTOTO_STATEMENT_TYPE,
...     "subject": [{"name": "model.certz", "digest": {"sha256": "0" * 64}}],
...     "predicateType": PREDICATE_TYPE,
...     "predicate": {"certificate_version": 1},
... }
>>> envelope = sign_intoto_statement(statement, keys.private_key_path)
>>> public_pem = Path(keys.public_key_path).read_bytes()
>>> verified, fingerprint = verify_envelope(envelope, public_pem)
>>> verified == statement, fingerprint == keys.fingerprint
(True, True)
>>> changed = dict(statement, predicate={"certificate_version": 2})
>>> envelope["payload"] = base64.b64encode(canonical_bytes(changed)).decode()
>>> verify_envelope(envelope, public_pem)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
certify.errors.VerificationError: no signature verifies with the key of fingerprint ...
>>> scratch.cleanup()

Nothing here prints or logs key material; errors name files, never contents.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypedDict

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certify._files import (
    CERTIFICATE_NAME,
    ENVELOPE_NAME,
    LOG_NAME,
    MODEL_SIGNATURE_NAME,
    PRIVATE_KEY_NAME,
    PUBLIC_KEY_NAME,
    STATE_DIR,
    file_digest,
    published_files,
    safe_relative_path,
    temp_path,
    write_bytes_atomic,
)
from certify._jcs import canonical_bytes, json_round_trip, parse_json_strict
from certify.certificate import Certificate, load_certificate, write_certificate
from certify.errors import CertifyError, SigningError, VerificationError
from certify.records import KeyPair

__all__ = [
    "INTOTO_STATEMENT_TYPE",
    "MODEL_SIGNING_BUNDLE_NAME",
    "MODEL_SIGNING_IGNORED",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "PRIVATE_KEY_NAME",
    "PUBLIC_KEY_NAME",
    "InTotoStatement",
    "InTotoSubject",
    "KeyPair",
    "build_intoto_statement",
    "dsse_pae",
    "ensure_signed",
    "envelope_bytes",
    "generate_key",
    "load_envelope",
    "load_private_key",
    "load_public_key",
    "parse_envelope",
    "public_key_fingerprint",
    "public_key_pem",
    "published_signature_problem",
    "sign_certificate",
    "sign_intoto_statement",
    "sign_run",
    "verify_envelope",
    "verify_model_signing_bundle",
    "write_model_signing_bundle",
]

#: DSSE payload type of an in-toto statement
PAYLOAD_TYPE = "application/vnd.in-toto+json"
INTOTO_STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
#: our predicate type; the trailing version changes with ``certificate_version``
PREDICATE_TYPE = "https://certify.dev/certificate/v1"
#: the OpenSSF model-signing bundle written next to the run's files
MODEL_SIGNING_BUNDLE_NAME = MODEL_SIGNATURE_NAME
#: never published, so never covered by model.sig, whether present or not: the stage
#: state, the run log, and the metadata folder ``hf download --local-dir`` writes
#: (huggingface_hub keeps ``.cache/huggingface/`` inside the download folder)
MODEL_SIGNING_IGNORED: tuple[str, ...] = (STATE_DIR, LOG_NAME, ".cache")

_ENVELOPE_KEYS = frozenset({"payload", "payloadType", "signatures"})
_SIGNATURE_KEYS = frozenset({"keyid", "sig"})
_STATEMENT_KEYS = frozenset({"_type", "subject", "predicateType", "predicate"})
_SUBJECT_KEYS = frozenset({"name", "digest", "annotations"})


class InTotoSubject(TypedDict):
    """One signed file: its name in the run folder, sha256 and size."""

    name: str
    digest: dict[str, str]
    annotations: dict[str, int]


class InTotoStatement(TypedDict):
    """The in-toto Statement v1 that ``certificate.dsse.json`` signs."""

    _type: str
    subject: list[InTotoSubject]
    predicateType: str
    predicate: Certificate


# --------------------------------------------------------------------------- keys


def public_key_fingerprint(public_key: ec.EllipticCurvePublicKey | bytes | str) -> str:
    """Hex sha256 of the DER SubjectPublicKeyInfo of a public key (object or PEM)."""
    key = load_public_key(public_key) if isinstance(public_key, bytes | str) else public_key
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def load_public_key(pem: bytes | str) -> ec.EllipticCurvePublicKey:
    """Parse a PEM public key and require ECDSA P-256."""
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as error:
        raise VerificationError(
            "the public key is not a PEM SubjectPublicKeyInfo",
            hint="pass the .pub.pem file that `certify keygen` wrote",
        ) from error
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise VerificationError("the public key is not an ECDSA P-256 key")
    return key


def load_private_key(
    path: str | Path, passphrase: bytes | None = None
) -> ec.EllipticCurvePrivateKey:
    """Load a PEM private key (decrypting with ``passphrase``) and require P-256."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SigningError(
            f"cannot read private key {path}: {error.strerror}",
            hint="create one with `certify keygen`",
        ) from error
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as error:  # encrypted without passphrase, or passphrase for plain key
        if passphrase is None:
            raise SigningError(
                f"private key {path} is encrypted",
                hint="set CERTIFY_KEY_PASSPHRASE to its passphrase",
            ) from error
        raise SigningError(
            f"private key {path} is not encrypted but a passphrase was given",
            hint="unset CERTIFY_KEY_PASSPHRASE",
        ) from error
    except (ValueError, UnsupportedAlgorithm) as error:
        raise SigningError(
            f"cannot load private key {path}: wrong passphrase or not a PEM private key",
            hint="check CERTIFY_KEY_PASSPHRASE and the file",
        ) from error
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise SigningError(f"private key {path} is not an ECDSA P-256 key")
    return key


def _write_new_file(path: Path, data: bytes, mode: int, force: bool) -> None:
    """Write ``data`` to ``path`` atomically; the temp file has ``mode`` from creation."""
    if path.exists() and not force:
        raise SigningError(f"{path} already exists", hint="pass --force to overwrite it")
    write_bytes_atomic(path, data, mode=mode)


def generate_key(
    out_dir: str | Path, passphrase: bytes | None = None, *, force: bool = False
) -> KeyPair:
    """Create an ECDSA P-256 key pair in ``out_dir``.

    The private key is PKCS#8 PEM, mode 0600 from creation, encrypted with the best
    available scheme when ``passphrase`` is given. Refuses to overwrite either file
    unless ``force``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    private_path = out / PRIVATE_KEY_NAME
    public_path = out / PUBLIC_KEY_NAME
    if not force:
        for path in (private_path, public_path):
            if path.exists():
                raise SigningError(f"{path} already exists", hint="pass --force to overwrite it")
    if passphrase is not None and not passphrase:
        raise SigningError(
            "the passphrase is empty", hint="unset CERTIFY_KEY_PASSPHRASE or set one"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new_file(private_path, private_pem, 0o600, force)
    _write_new_file(public_path, public_pem, 0o644, force)
    return KeyPair(
        private_key_path=str(private_path),
        public_key_path=str(public_path),
        fingerprint=public_key_fingerprint(key.public_key()),
    )


# --------------------------------------------------------------------------- statement


def build_intoto_statement(
    certificate: Certificate, run_dir: str | Path, extra_subjects: Iterable[str] = ()
) -> InTotoStatement:
    """The in-toto Statement v1 of ``certificate``.

    Subjects: the artifact (``certificate["artifact"]["path"]``) and every name in
    ``extra_subjects`` (other published weight files), each a path relative to
    ``run_dir``, with its sha256 and, as an annotation, its size in bytes. The
    artifact's hash must equal the one the certificate records.
    """
    root = Path(run_dir)
    artifact = certificate["artifact"]
    names = [artifact["path"], *(name for name in extra_subjects if name != artifact["path"])]
    subjects: list[InTotoSubject] = []
    for name in names:
        path = safe_relative_path(root, name)
        try:
            sha256, size_bytes = file_digest(path)
        except OSError as error:
            raise SigningError(f"cannot read subject {name} in {root}: {error.strerror}") from error
        if name == artifact["path"] and (sha256, size_bytes) != (
            artifact["sha256"],
            artifact["size_bytes"],
        ):
            raise SigningError(
                f"{name} does not match the certificate (sha256/size differ)",
                hint="rebuild the certificate from the artifact that is in the folder",
            )
        subjects.append(
            {"name": name, "digest": {"sha256": sha256}, "annotations": {"size_bytes": size_bytes}}
        )
    return {
        "_type": INTOTO_STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": json_round_trip(certificate),
    }


# --------------------------------------------------------------------------- DSSE


def dsse_pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: ``DSSEv1 <len> <type> <len> <body>``."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def sign_intoto_statement(
    statement: Mapping[str, Any], private_key_path: str | Path, passphrase: bytes | None = None
) -> dict[str, Any]:
    """A DSSE envelope over the RFC 8785 bytes of ``statement``, signed ECDSA-SHA256."""
    key = load_private_key(private_key_path, passphrase)
    payload = canonical_bytes(dict(statement))
    signature = key.sign(dsse_pae(PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    return {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [
            {
                "keyid": public_key_fingerprint(key.public_key()),
                "sig": base64.b64encode(signature).decode("ascii"),
            }
        ],
    }


def envelope_bytes(envelope: Mapping[str, Any]) -> bytes:
    """The bytes of ``certificate.dsse.json`` (RFC 8785 canonical JSON)."""
    return canonical_bytes(dict(envelope))


def _strict_b64(text: Any, field: str) -> bytes:
    """Decode standard base64, refusing anything that would not re-encode identically."""
    if not isinstance(text, str) or not text:
        raise VerificationError("must be a non-empty base64 string", field=field)
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as error:
        raise VerificationError(
            "is not standard padded base64 (truncated or re-encoded?)", field=field
        ) from error
    if base64.b64encode(raw).decode("ascii") != text:
        raise VerificationError("is not canonical base64 (re-encoded?)", field=field)
    return raw


def load_envelope(path: str | Path) -> dict[str, Any]:
    """Read ``certificate.dsse.json`` with the strict JSON parser."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise VerificationError(f"cannot read envelope {path}: {error.strerror}") from error
    try:
        envelope = parse_json_strict(data, what="envelope")
    except CertifyError as error:
        raise VerificationError(str(error)) from error
    if not isinstance(envelope, dict):
        raise VerificationError("the envelope is not a JSON object", field="envelope")
    return envelope


def parse_envelope(envelope: Any) -> tuple[bytes, list[tuple[str | None, bytes]], dict[str, Any]]:
    """Check an envelope's shape without verifying it: (payload, [(keyid, sig)], statement).

    Raises :class:`VerificationError` naming the first problem: unknown or missing
    keys, a payload type other than in-toto's, invalid base64, a payload that is
    not a strict-JSON in-toto Statement v1 with our predicate type.
    """
    if not isinstance(envelope, Mapping):
        raise VerificationError("the envelope is not a JSON object", field="envelope")
    keys = set(envelope)
    if keys != _ENVELOPE_KEYS:
        missing = sorted(_ENVELOPE_KEYS - keys)
        extra = sorted(keys - _ENVELOPE_KEYS)
        raise VerificationError(
            f"envelope keys differ from DSSE's (missing {missing}, unexpected {extra})",
            field="envelope",
        )
    if envelope["payloadType"] != PAYLOAD_TYPE:
        raise VerificationError(
            f"payloadType is {envelope['payloadType']!r}, expected {PAYLOAD_TYPE!r}",
            field="envelope.payloadType",
        )
    payload = _strict_b64(envelope["payload"], "envelope.payload")
    signatures = envelope["signatures"]
    if not isinstance(signatures, list) or not signatures:
        raise VerificationError("must be a non-empty list", field="envelope.signatures")
    parsed: list[tuple[str | None, bytes]] = []
    for index, entry in enumerate(signatures):
        field = f"envelope.signatures[{index}]"
        if (
            not isinstance(entry, Mapping)
            or "sig" not in entry
            or not set(entry) <= _SIGNATURE_KEYS
        ):
            raise VerificationError("must be an object with sig and optional keyid", field=field)
        keyid = entry.get("keyid")
        if keyid is not None and not isinstance(keyid, str):
            raise VerificationError("must be a string", field=f"{field}.keyid")
        parsed.append((keyid, _strict_b64(entry["sig"], f"{field}.sig")))
    try:
        statement = parse_json_strict(payload, what="envelope payload")
    except CertifyError as error:
        raise VerificationError(str(error)) from error
    _check_intoto_statement(statement)
    return payload, parsed, statement


def _check_intoto_statement(statement: Any) -> None:
    field = "statement"
    if not isinstance(statement, dict):
        raise VerificationError("the payload is not a JSON object", field=field)
    if set(statement) != _STATEMENT_KEYS:
        raise VerificationError(
            f"keys {sorted(statement)} differ from in-toto Statement v1's "
            f"{sorted(_STATEMENT_KEYS)}",
            field=field,
        )
    if statement["_type"] != INTOTO_STATEMENT_TYPE:
        raise VerificationError(
            f"_type is {statement['_type']!r}, expected {INTOTO_STATEMENT_TYPE!r}", field=field
        )
    if statement["predicateType"] != PREDICATE_TYPE:
        raise VerificationError(
            f"predicateType is {statement['predicateType']!r}, expected {PREDICATE_TYPE!r}",
            field=field,
        )
    subjects = statement["subject"]
    if not isinstance(subjects, list) or not subjects:
        raise VerificationError("subject must be a non-empty list", field=field)
    for index, subject in enumerate(subjects):
        where = f"statement.subject[{index}]"
        if not isinstance(subject, dict) or not {"name", "digest"} <= set(subject) <= _SUBJECT_KEYS:
            raise VerificationError("must be an object with name and digest", field=where)
        digest = subject["digest"]
        if (
            not isinstance(subject["name"], str)
            or not isinstance(digest, dict)
            or not isinstance(digest.get("sha256"), str)
        ):
            raise VerificationError("needs a string name and digest.sha256", field=where)
        annotations = subject.get("annotations", {})
        if not isinstance(annotations, dict):
            raise VerificationError("annotations must be an object", field=where)
    if not isinstance(statement["predicate"], dict):
        raise VerificationError("predicate must be an object", field=field)


def verify_envelope(envelope: Any, public_key_pem: bytes | str) -> tuple[dict[str, Any], str]:
    """Verify a DSSE envelope against a public key: (statement, key fingerprint).

    Passes when at least one signature verifies over the DSSE PAE of the exact
    payload bytes. Raises :class:`VerificationError` with the reason otherwise.
    """
    key = load_public_key(public_key_pem)
    fingerprint = public_key_fingerprint(key)
    payload, signatures, statement = parse_envelope(envelope)
    message = dsse_pae(PAYLOAD_TYPE, payload)
    for _keyid, signature in signatures:
        try:
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return statement, fingerprint
    keyids = ", ".join(str(keyid) for keyid, _ in signatures)
    raise VerificationError(
        f"no signature verifies with the key of fingerprint {fingerprint} "
        f"(envelope keyid(s): {keyids})",
        hint="wrong public key, or the payload was changed after signing",
    )


# --------------------------------------------------------------------------- model-signing


def _model_signing_hashing(ignored: Iterable[str]) -> Any:
    from model_signing import hashing

    # names relative to the model folder, as model-signing's CLI passes them; it adds
    # the git files (.git, .gitattributes, ...) itself
    return hashing.Config().set_ignored_paths(paths=sorted(ignored), ignore_git_paths=True)


def _unpublished(root: Path, bundle_name: str) -> set[str]:
    """Names in ``root`` that are not published, plus the ones that never are."""
    published = {path.name for path in published_files(root)}
    present = {path.name for path in root.iterdir()} - published
    return present | set(MODEL_SIGNING_IGNORED) | {bundle_name}


def write_model_signing_bundle(
    run_dir: str | Path,
    private_key_path: str | Path,
    passphrase: bytes | None = None,
    bundle_name: str = MODEL_SIGNING_BUNDLE_NAME,
) -> Path:
    """Sign exactly the published files of ``run_dir`` with OpenSSF model-signing.

    Everything else in the folder (``.certify/``, ``run.log``, temporaries, private
    keys, subfolders) is recorded in the bundle as an ignored path, so ``model_signing
    verify key --signature RUN/model.sig --public_key PUB.pem RUN`` accepts the folder
    as it is and a Hub download of it. Call it last: a published file added or changed
    afterwards makes that command fail.
    """
    try:
        from model_signing import signing as ms_signing
    except ImportError as error:  # a dependency; only a broken install lacks it
        raise SigningError(
            "the model-signing package is not installed", hint="reinstall certify"
        ) from error
    root = Path(run_dir)
    load_private_key(private_key_path, passphrase)  # our checks and messages first
    ignored = _unpublished(root, bundle_name)
    # written in the (ignored) state folder first, so no temporary name reaches the bundle
    temp = temp_path(root / STATE_DIR / bundle_name)
    made_state_dir = not temp.parent.exists()
    temp.parent.mkdir(parents=True, exist_ok=True)
    # model-signing annotates password as str but hands it to cryptography, which needs bytes
    password: Any = passphrase
    try:
        ms_signing.Config().use_elliptic_key_signer(
            private_key=Path(private_key_path), password=password
        ).set_hashing_config(_model_signing_hashing(ignored)).sign(root, temp)
        os.replace(temp, root / bundle_name)
    except CertifyError:
        raise
    except Exception as error:  # model-signing raises plain exceptions
        raise SigningError(f"model-signing failed: {type(error).__name__}: {error}") from error
    finally:
        temp.unlink(missing_ok=True)
        if made_state_dir:
            with contextlib.suppress(OSError):
                temp.parent.rmdir()
    return root / bundle_name


def verify_model_signing_bundle(
    run_dir: str | Path,
    public_key_path: str | Path,
    bundle_name: str = MODEL_SIGNING_BUNDLE_NAME,
    *,
    published_only: bool = False,
) -> None:
    """Verify ``run_dir`` against its model-signing bundle, as ``model_signing verify key``.

    ``published_only`` also ignores whatever in the folder is not published now (a
    stray file that ``push`` would leave behind): the check then answers "will a
    download of the pushed repo verify?".
    """
    try:
        from model_signing import verifying as ms_verifying
    except ImportError as error:
        raise VerificationError(
            "the model-signing package is not installed", hint="reinstall certify"
        ) from error
    root = Path(run_dir)
    ignored = _unpublished(root, bundle_name) if published_only else {bundle_name}
    try:
        ms_verifying.Config().use_elliptic_key_verifier(
            public_key=Path(public_key_path)
        ).set_hashing_config(_model_signing_hashing(ignored)).verify(root, root / bundle_name)
    except Exception as error:
        raise VerificationError(
            f"model-signing bundle does not verify: {type(error).__name__}: {error}"
        ) from error


# --------------------------------------------------------------------------- a whole run


def public_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The PEM SubjectPublicKeyInfo of a private key's public half (what is published)."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sign_certificate(
    run_dir: str | Path,
    certificate: Certificate,
    private_key_path: str | Path,
    passphrase: bytes | None = None,
    *,
    extra_subjects: Iterable[str] = (),
) -> dict[str, Path]:
    """Sign ``certificate`` in ``run_dir``: certificate.json, certificate.dsse.json, public key.

    The first half of :func:`sign_run` (``certify run`` runs the halves as two stages
    so that a changed card re-signs model.sig but keeps the envelope). certificate.json
    is (re)written only when its bytes differ from the canonical form of ``certificate``.
    """
    root = Path(run_dir)
    key = load_private_key(private_key_path, passphrase)
    paths = {
        "certificate": root / CERTIFICATE_NAME,
        "envelope": root / ENVELOPE_NAME,
        "public_key": root / PUBLIC_KEY_NAME,
    }
    if not paths["certificate"].is_file() or paths["certificate"].read_bytes() != canonical_bytes(
        certificate
    ):
        write_certificate(certificate, paths["certificate"])
    statement = build_intoto_statement(certificate, root, extra_subjects)
    envelope = sign_intoto_statement(statement, private_key_path, passphrase)
    write_bytes_atomic(paths["envelope"], envelope_bytes(envelope))
    write_bytes_atomic(paths["public_key"], public_key_pem(key))
    return paths


def sign_run(
    run_dir: str | Path,
    certificate: Certificate | str | Path,
    private_key_path: str | Path,
    passphrase: bytes | None = None,
    *,
    extra_subjects: Iterable[str] = (),
    model_signing_bundle: bool = True,
) -> dict[str, Path]:
    """Sign a run folder: certificate.dsse.json, the public key and, last, model.sig.

    ``certificate`` is the certificate or the path of its file (strictly loaded);
    certificate.json in ``run_dir`` is made its canonical form. Must be the last step
    that writes a published file into ``run_dir``: model.sig covers every published
    file. Returns the written paths by role (``certificate``, ``envelope``,
    ``public_key`` and, unless ``model_signing_bundle`` is False, ``bundle``).
    """
    if not isinstance(certificate, dict):
        certificate = load_certificate(certificate)
    paths = sign_certificate(
        run_dir, certificate, private_key_path, passphrase, extra_subjects=extra_subjects
    )
    if model_signing_bundle:
        paths["bundle"] = write_model_signing_bundle(run_dir, private_key_path, passphrase)
    return paths


def published_signature_problem(run_dir: str | Path) -> str | None:
    """Why model.sig does not cover the files ``push`` would publish now (None: it does).

    Checked with the public key published in the folder: this is about integrity (the
    bundle matches the files), which is what a Hub download will be checked for.
    """
    root = Path(run_dir)
    if not (root / MODEL_SIGNATURE_NAME).is_file():
        return f"{root} has no {MODEL_SIGNATURE_NAME}"
    if not (root / PUBLIC_KEY_NAME).is_file():
        return f"{root} has no {PUBLIC_KEY_NAME} to check {MODEL_SIGNATURE_NAME} with"
    try:
        verify_model_signing_bundle(root, root / PUBLIC_KEY_NAME, published_only=True)
    except VerificationError as error:
        return f"{MODEL_SIGNATURE_NAME} no longer matches the files of {root} ({error})"
    return None


def ensure_signed(
    run_dir: str | Path,
    private_key_path: str | Path | None,
    passphrase: bytes | None = None,
) -> bool:
    """Make sure model.sig covers the files to publish; True when this signed again.

    When it does not (missing, or a file such as README.md changed after signing),
    sign the folder again with :func:`sign_run` and the signer's key. Refuses (one-line
    SigningError saying how) without a key, or with a key other than the one whose
    public half the folder publishes.
    """
    root = Path(run_dir)
    problem = published_signature_problem(root)
    if problem is None:
        return False
    if private_key_path is None or not Path(private_key_path).is_file():
        raise SigningError(
            f"{problem}; signing it again needs the run's private key",
            hint="pass --key PRIVATE.pem, the key the run was signed with",
        )
    fingerprint = public_key_fingerprint(
        load_private_key(private_key_path, passphrase).public_key()
    )
    published = root / PUBLIC_KEY_NAME
    if published.is_file() and public_key_fingerprint(published.read_bytes()) != fingerprint:
        raise SigningError(
            f"{private_key_path} (fingerprint {fingerprint}) is not the key that signed "
            f"{root} (its {PUBLIC_KEY_NAME} has {public_key_fingerprint(published.read_bytes())})",
            hint="pass --key with the private key of the folder's public key",
        )
    sign_run(root, root / CERTIFICATE_NAME, private_key_path, passphrase)
    return True
