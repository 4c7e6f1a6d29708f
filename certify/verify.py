"""``certify verify``: check a run folder, certificate or envelope, trusting nothing in it.

Shaped like sigstore's verifier: :func:`load_evidence` reads everything once into a
frozen :class:`Evidence` (the certificate and its exact bytes, the DSSE envelope and
the in-toto statement it carries, the folder, the artifact's path, the published key,
and why any of them could not be read); then every entry of :data:`CHECKS`, a named
small function of that record, gives one :class:`~certify.records.VerificationCheck`.
The report is their results in table order. A check whose input failed to load is
"not run"; no check raises (a CertifyError or OSError becomes its failure reason).

To add a check: write ``_NAME_check(evidence) -> VerificationCheck | None`` (None
when it does not apply, like ``model_signing`` without a model.sig), add it to
:data:`CHECKS` where it belongs in the report, and document it in docs/CERTIFICATE.md.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from certify import container, risk, signing
from certify import data as token_data
from certify._files import (
    CERTIFICATE_NAME,
    ENVELOPE_NAME,
    MODEL_SIGNATURE_NAME,
    PUBLIC_KEY_NAME,
    file_digest,
    safe_relative_path,
)
from certify._jcs import canonical_bytes, json_round_trip, parse_json_strict
from certify.bound import bound_result_to_dict
from certify.certificate import (
    REL_TOLERANCE,
    RISK_TOLERANCE,
    Certificate,
    compare_numbers,
    default_assumptions,
    make_statement,
    recompute_bound,
    recorded_input_mismatches,
    validate_certificate,
)
from certify.errors import CertifyError, InvalidInputError, VerificationError
from certify.records import EvaluationSettings, VerificationCheck, VerificationReport

__all__ = [
    "CHECKS",
    "Evidence",
    "VerifyOptions",
    "bound_recomputes",
    "load_evidence",
    "run_checks",
    "verify",
]


# --------------------------------------------------------------------------- the evidence


@dataclass(frozen=True)
class VerifyOptions:
    """How to verify: the pinned key and what else to do (see :func:`verify`)."""

    public_key_pem: bytes | None = None
    allow_unpinned: bool = False
    decode_artifact: bool = True
    recompute_risk: bool = False
    dataset: str | Path | None = None
    risk_tolerance: float = RISK_TOLERANCE
    risk_device: str = "auto"


@dataclass(frozen=True, eq=False)
class Evidence:
    """Everything a check may look at, read once. ``None`` fields come with a reason."""

    folder: Path
    options: VerifyOptions
    #: the certificate (from certificate.json, or the envelope's predicate without one)
    certificate: Certificate | None
    #: the bytes it was parsed from (its canonical form when it came from the envelope)
    certificate_bytes: bytes | None
    #: what the ``certificate`` check says: where it came from, or why it is None
    certificate_reason: str
    #: certificate.dsse.json as strict JSON, and why it is None
    envelope: dict[str, Any] | None
    envelope_error: str
    #: the in-toto statement inside the envelope (shape checked, signature NOT yet)
    intoto: dict[str, Any] | None
    intoto_error: str
    keyids: tuple[str | None, ...]
    #: the artifact file the certificate names, inside the folder, and why it is None
    artifact_path: Path | None
    artifact_error: str
    #: certify-signing-key.pub.pem next to the certificate (proves nothing by itself)
    published_key_pem: bytes | None
    #: model.sig, when the folder has one
    bundle_path: Path | None


def _locate(target: Path) -> tuple[Path, Path | None, Path]:
    """(run folder, certificate file or None, envelope file) of TARGET."""
    if target.is_dir():
        return target, target / CERTIFICATE_NAME, target / ENVELOPE_NAME
    if not target.exists():
        raise InvalidInputError(
            f"{target} does not exist",
            hint="pass a run folder, certificate.json, certificate.dsse.json or a Hub repo id",
        )
    folder = target.parent
    if target.name.endswith(".dsse.json"):
        certificate = folder / CERTIFICATE_NAME
        return folder, certificate if certificate.exists() else None, target
    return folder, target, folder / ENVELOPE_NAME


def _read_envelope(path: Path, folder: Path) -> tuple[dict[str, Any] | None, str]:
    if not path.exists():
        return None, f"{ENVELOPE_NAME} not found in {folder} (the certificate is unsigned)"
    try:
        return signing.load_envelope(path), ""
    except CertifyError as error:
        return None, str(error)


def _parse_intoto(
    envelope: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, tuple[str | None, ...], str]:
    """(statement, keyids, why the envelope is malformed) without checking the signature."""
    if envelope is None:
        return None, (), ""
    try:
        _, signatures, statement = signing.parse_envelope(envelope)
    except CertifyError as error:
        return None, (), str(error)
    return statement, tuple(keyid for keyid, _ in signatures), ""


def _predicate_certificate(
    intoto: dict[str, Any] | None, why_not: str
) -> tuple[Certificate | None, bytes | None, str]:
    """TARGET is an envelope with no certificate.json beside it: its predicate."""
    if intoto is None:
        return None, None, why_not
    try:
        validate_certificate(intoto["predicate"])
        certificate = cast(Certificate, intoto["predicate"])
        return (
            certificate,
            canonical_bytes(certificate),
            "the signed predicate is a valid certificate",
        )
    except CertifyError as error:
        return None, None, str(error)


def _read_certificate(path: Path) -> tuple[Certificate | None, bytes | None, str]:
    try:
        data = path.read_bytes()
        parsed = parse_json_strict(data, what=path.name)
        validate_certificate(parsed)
    except CertifyError as error:
        return None, None, str(error)
    except OSError as error:
        return None, None, f"cannot read {path}: {error.strerror}"
    certificate = cast(Certificate, parsed)
    version = certificate["certificate_version"]
    return certificate, data, f"{path.name} matches the schema (v{version})"


def _resolve_artifact(folder: Path, certificate: Certificate | None) -> tuple[Path | None, str]:
    if certificate is None:
        return None, "no valid certificate"
    name = certificate["artifact"]["path"]
    try:
        path = safe_relative_path(folder, name)
        if not path.is_file():
            raise VerificationError(f"{name} not found in {folder}")
    except VerificationError as error:
        return None, str(error)
    return path, ""


def _read_if_file(path: Path) -> bytes | None:
    try:
        return path.read_bytes() if path.is_file() else None
    except OSError:
        return None


def load_evidence(target: str | Path, options: VerifyOptions) -> Evidence:
    """Read TARGET once. Raises InvalidInputError only when TARGET does not exist."""
    folder, certificate_path, envelope_path = _locate(Path(target))
    envelope, envelope_error = _read_envelope(envelope_path, folder)
    intoto, keyids, intoto_error = _parse_intoto(envelope)
    if certificate_path is None:
        loaded = _predicate_certificate(intoto, envelope_error or intoto_error)
    else:
        loaded = _read_certificate(certificate_path)
    certificate, certificate_bytes, certificate_reason = loaded
    artifact_path, artifact_error = _resolve_artifact(folder, certificate)
    bundle = folder / MODEL_SIGNATURE_NAME
    return Evidence(
        folder=folder,
        options=options,
        certificate=certificate,
        certificate_bytes=certificate_bytes,
        certificate_reason=certificate_reason,
        envelope=envelope,
        envelope_error=envelope_error,
        intoto=intoto,
        intoto_error=intoto_error,
        keyids=keyids,
        artifact_path=artifact_path,
        artifact_error=artifact_error,
        published_key_pem=_read_if_file(folder / PUBLIC_KEY_NAME),
        bundle_path=bundle if bundle.is_file() else None,
    )


# --------------------------------------------------------------------------- results


def _passed(name: str, reason: str) -> VerificationCheck:
    return VerificationCheck(name=name, passed=True, status="pass", reason=reason)


def _failed(name: str, reason: str) -> VerificationCheck:
    return VerificationCheck(name=name, passed=False, status="fail", reason=reason)


def _not_run(name: str, because: str) -> VerificationCheck:
    return VerificationCheck(
        name=name, passed=False, status="not_run", reason=f"not run: {because}"
    )


def _unpinned(name: str, allowed: bool, reason: str) -> VerificationCheck:
    return VerificationCheck(name=name, passed=allowed, status="unpinned", reason=reason)


# --------------------------------------------------------------------------- the certificate


def _certificate_check(evidence: Evidence) -> VerificationCheck:
    """Strict JSON (no NaN, duplicate keys, numbers beyond float64) valid against the schema."""
    if evidence.certificate is None:
        return _failed("certificate", evidence.certificate_reason)
    return _passed("certificate", evidence.certificate_reason)


def _canonical_check(evidence: Evidence) -> VerificationCheck:
    """The file's bytes are the RFC 8785 form of its content."""
    if evidence.certificate is None or evidence.certificate_bytes is None:
        return _not_run("canonical", "no valid certificate")
    if canonical_bytes(evidence.certificate) == evidence.certificate_bytes:
        return _passed("canonical", "the file is in RFC 8785 canonical form")
    return _failed(
        "canonical", "the file is not the RFC 8785 canonical form of its content (re-encoded?)"
    )


# --------------------------------------------------------------------------- the signature


def _envelope_check(evidence: Evidence) -> VerificationCheck:
    """DSSE keys, payloadType, strict base64, an in-toto statement with our predicate type."""
    if evidence.envelope is None:
        return _failed("envelope", evidence.envelope_error)
    if evidence.intoto is None:
        return _failed("envelope", evidence.intoto_error)
    keyids = ", ".join(str(keyid) for keyid in evidence.keyids)
    return _passed("envelope", f"DSSE envelope of an in-toto Statement v1 (keyid {keyids})")


def _signature_check(evidence: Evidence) -> VerificationCheck:
    """A signature verifies with the pinned key (else: the published one, UNPINNED)."""
    if evidence.envelope is None:
        return _not_run("signature", "no envelope")
    if evidence.intoto is None:
        return _not_run("signature", "the envelope is malformed")
    pinned = evidence.options.public_key_pem
    if pinned is None:
        return _unpinned_signature_check(evidence, evidence.envelope)
    try:
        _, fingerprint = signing.verify_envelope(evidence.envelope, pinned)
    except CertifyError as error:
        return _failed("signature", str(error))
    return _passed("signature", f"signed by the pinned key {fingerprint}")


def _unpinned_signature_check(evidence: Evidence, envelope: dict[str, Any]) -> VerificationCheck:
    published = evidence.published_key_pem
    if published is None:
        return _failed(
            "signature",
            "no key to check the signature against: pass --key PUB.pem "
            f"(no {PUBLIC_KEY_NAME} in the folder either)",
        )
    try:
        _, fingerprint = signing.verify_envelope(envelope, published)
    except CertifyError as error:
        return _failed("signature", f"with {PUBLIC_KEY_NAME}: {error}")
    reason = (
        f"valid but UNPINNED: signed by key {fingerprint} published next to the "
        "certificate, which anyone could have replaced; pass --key PUB.pem from the signer "
        "(or compare this fingerprint with one they published)"
    )
    allowed = evidence.options.allow_unpinned
    if allowed:
        reason += "; accepted because unpinned signatures were allowed"
    return _unpinned("signature", allowed, reason)


def _predicate_check(evidence: Evidence) -> VerificationCheck:
    """The signed predicate is this certificate, byte for byte in canonical form."""
    if evidence.intoto is None or evidence.certificate is None:
        return _not_run("predicate", "needs a valid envelope and certificate")
    predicate = evidence.intoto["predicate"]
    if canonical_bytes(predicate) != canonical_bytes(evidence.certificate):
        differences, _, _ = compare_numbers(predicate, evidence.certificate, "predicate")
        detail = differences[0] if differences else "canonical bytes differ"
        raise VerificationError(f"the signed predicate differs from the certificate: {detail}")
    return _passed("predicate", "the signed predicate is this certificate, byte for byte")


# --------------------------------------------------------------------------- the files


def _artifact_path_check(evidence: Evidence) -> VerificationCheck:
    """artifact.path is relative, stays inside the folder and names a file."""
    if evidence.certificate is None:
        return _not_run("artifact_path", "no valid certificate")
    if evidence.artifact_path is None:
        return _failed("artifact_path", evidence.artifact_error)
    name = evidence.certificate["artifact"]["path"]
    return _passed("artifact_path", f"{name} is inside the folder")


def _subjects_check(evidence: Evidence) -> VerificationCheck:
    """Every signed file is in the folder with the signed sha256 and size."""
    if evidence.intoto is None or evidence.certificate is None:
        return _not_run("subjects", "needs a valid envelope and certificate")
    artifact = evidence.certificate["artifact"]
    subjects = evidence.intoto["subject"]
    names = [subject["name"] for subject in subjects]
    if artifact["path"] not in names:
        raise VerificationError(f"the artifact {artifact['path']} is not a signed subject")
    if len(set(names)) != len(names):
        raise VerificationError("a subject is listed twice")
    for subject in subjects:
        _check_subject(evidence.folder, subject, artifact["path"], artifact["sha256"])
    return _passed("subjects", f"{len(names)} signed file(s) match by sha256 and size")


def _check_subject(folder: Path, subject: dict[str, Any], artifact: str, artifact_sha: str) -> None:
    name = subject["name"]
    path = safe_relative_path(folder, name)
    if not path.is_file():
        raise VerificationError(f"signed subject {name} not found in {folder}")
    sha256, size_bytes = file_digest(path)
    if sha256 != subject["digest"]["sha256"]:
        raise VerificationError(
            f"{name}: sha256 {sha256} but the signature covers {subject['digest']['sha256']}"
        )
    expected_size = subject.get("annotations", {}).get("size_bytes")
    if expected_size is not None and expected_size != size_bytes:
        raise VerificationError(f"{name}: {size_bytes} bytes but signed as {expected_size}")
    if name == artifact and sha256 != artifact_sha:
        raise VerificationError(
            f"the signed subject {name} has sha256 {sha256}, the certificate records {artifact_sha}"
        )


def _artifact_check(evidence: Evidence) -> VerificationCheck:
    """The artifact file's sha256 and size are the recorded ones."""
    if evidence.artifact_path is None or evidence.certificate is None:
        return _not_run("artifact", "no artifact file")
    path = evidence.artifact_path
    artifact = evidence.certificate["artifact"]
    sha256, size_bytes = file_digest(path)
    if size_bytes != artifact["size_bytes"]:
        raise VerificationError(
            f"{path.name} has {size_bytes} bytes, the certificate records {artifact['size_bytes']}"
        )
    if sha256 != artifact["sha256"]:
        raise VerificationError(
            f"{path.name} has sha256 {sha256}, the certificate records {artifact['sha256']}"
        )
    return _passed("artifact", f"sha256 {sha256[:16]}… and {size_bytes:,} bytes match")


def _decode_check(evidence: Evidence) -> VerificationCheck:
    """The artifact decodes, tensor by tensor, to the recorded decoded-weights hash."""
    if evidence.artifact_path is None or evidence.certificate is None:
        return _not_run("decode", "no artifact file")
    if not evidence.options.decode_artifact:
        return _not_run("decode", "skipped on request")
    artifact = evidence.certificate["artifact"]
    header = container.read_header(evidence.artifact_path)
    version = header.get("format_version")
    if version is not None and version != artifact["format_version"]:
        raise VerificationError(
            f"the file is format version {version}, the certificate records "
            f"{artifact['format_version']}"
        )
    decoded = container.verify_artifact(evidence.artifact_path)
    if decoded != artifact["decoded_weights_sha256"]:
        raise VerificationError(
            f"decoded weights hash to {decoded}, the certificate records "
            f"{artifact['decoded_weights_sha256']}"
        )
    return _passed("decode", f"decoded every tensor; weights hash {decoded[:16]}… matches")


def _model_signing_check(evidence: Evidence) -> VerificationCheck | None:
    """(Only with a model.sig) the OpenSSF model-signing bundle verifies over the folder."""
    if evidence.bundle_path is None:
        return None
    pinned = evidence.options.public_key_pem
    if pinned is None:
        if evidence.published_key_pem is None:
            raise VerificationError("no key to check model.sig against: pass --key PUB.pem")
        signing.verify_model_signing_bundle(evidence.folder, evidence.folder / PUBLIC_KEY_NAME)
        return _unpinned(
            "model_signing",
            evidence.options.allow_unpinned,
            "model.sig verifies over the whole folder, but only with the UNPINNED key "
            "published in it; pass --key PUB.pem",
        )
    signing.load_public_key(pinned)
    with tempfile.TemporaryDirectory(prefix="certify-key-") as scratch:
        key_path = Path(scratch) / "key.pub.pem"
        key_path.write_bytes(pinned)
        signing.verify_model_signing_bundle(evidence.folder, key_path)
    return _passed(
        "model_signing", "model.sig (OpenSSF model-signing) verifies over the whole folder"
    )


# --------------------------------------------------------------------------- the numbers


def _inputs_check(evidence: Evidence) -> VerificationCheck:
    """Every recorded copy of each bound input agrees."""
    if evidence.certificate is None:
        return _not_run("inputs", "no valid certificate")
    problems = recorded_input_mismatches(evidence.certificate)
    if problems:
        return _failed("inputs", problems[0])
    return _passed("inputs", "every recorded copy of each bound input agrees")


def _bound_check(evidence: Evidence) -> VerificationCheck:
    """Every number of ``bound`` recomputes from the recorded inputs."""
    if evidence.certificate is None:
        return _not_run("bound", "no valid certificate")
    return bound_recomputes(evidence.certificate)


def bound_recomputes(certificate: Certificate) -> VerificationCheck:
    """The ``bound`` check on one certificate (also used on golden files)."""
    recomputed = json_round_trip(bound_result_to_dict(recompute_bound(certificate)))
    differences, exact, close = compare_numbers(certificate["bound"], recomputed)
    if differences:
        more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
        raise VerificationError(f"recomputed bound differs: {differences[0]}{more}")
    detail = f"{exact} exactly" + (f", {close} within {REL_TOLERANCE:g} relative" if close else "")
    return _passed("bound", f"all {exact + close} numbers recompute ({detail})")


def _statement_check(evidence: Evidence) -> VerificationCheck:
    """The one-sentence claim is the one the numbers give."""
    if evidence.certificate is None:
        return _not_run("statement", "no valid certificate")
    expected = make_statement(evidence.certificate)
    if expected == evidence.certificate["statement"]:
        return _passed("statement", "the sentence follows from the recorded numbers")
    return _failed("statement", f"the sentence does not match the numbers; expected: {expected}")


def _assumptions_check(evidence: Evidence) -> VerificationCheck:
    """The standard assumptions for these settings come first, unchanged."""
    if evidence.certificate is None:
        return _not_run("assumptions", "no valid certificate")
    standard = default_assumptions(evidence.certificate)
    recorded = evidence.certificate["assumptions"]
    if recorded[: len(standard)] == standard:
        return _passed("assumptions", f"states the {len(standard)} standard assumptions")
    missing = next((a for a in standard if a not in recorded), standard[0])
    return _failed(
        "assumptions",
        "the standard assumptions for these settings are missing or changed; "
        f"expected first: {missing}",
    )


def _recompute_risk_check(evidence: Evidence) -> VerificationCheck | None:
    """(Only with recompute_risk) the risk re-measured on the data matches the recorded one."""
    if not evidence.options.recompute_risk:
        return None
    if evidence.certificate is None or evidence.artifact_path is None:
        return _not_run("risk", "needs a valid certificate and artifact")
    if evidence.options.dataset is None:
        return _failed("risk", "--recompute-risk needs --dataset SRC")
    return _risk_check(
        evidence, evidence.certificate, evidence.artifact_path, evidence.options.dataset
    )


def _risk_check(
    evidence: Evidence, certificate: Certificate, artifact_path: Path, dataset: str | Path
) -> VerificationCheck:
    """Re-measure the risk on ``dataset`` with the recorded settings and compare means."""
    tolerance = evidence.options.risk_tolerance
    device = evidence.options.risk_device
    recorded = certificate["data"]
    metrics = certificate["bound"]["metrics"]
    model, tokenizer = risk.load_for_evaluation(
        artifact_path, device=device, dtype=certificate["evaluation"]["dtype"]
    )
    with tempfile.TemporaryDirectory(prefix="certify-verify-") as scratch:
        if token_data.is_shard_dir(dataset):
            shards = token_data.open_shards(dataset)
        else:
            shards = token_data.tokenize_source(
                dataset, tokenizer, scratch, max_documents=recorded["max_documents"]
            )
        if shards.record.shards_sha256 != recorded["shards_sha256"]:
            raise VerificationError(
                f"the dataset's tokens hash to {shards.record.shards_sha256}, the certificate "
                f"records {recorded['shards_sha256']}; pass the same data"
            )
        settings = EvaluationSettings(
            chunk_tokens=recorded["chunk_tokens"],
            context_tokens=recorded["context_tokens"],
            samples=recorded["sampling"]["samples"],
            exhaustive=recorded["sampling"]["method"] == "exhaustive",
            seed=recorded["sampling"]["seed"],
            alphas=tuple(float(m["alpha"]) for m in metrics if m["name"] == "bits"),
            top_k=tuple(int(m["k"]) for m in metrics if m["name"] == "top_k_error"),
            device=device,
            dtype=certificate["evaluation"]["dtype"],
        )
        measured = risk.evaluate(
            model,
            shards,
            settings,
            bos_token_id=token_data.bos_token_id(tokenizer),
            tokenizer=tokenizer,
        )
    worst = 0.0
    for recorded_metric, metric in zip(metrics, measured.metrics, strict=True):
        gap = abs(float(recorded_metric["sample_mean"]) - metric.sample_mean)
        label = f"bits α={metric.alpha}" if metric.name == "bits" else f"top-{metric.k} error"
        if gap > tolerance:
            raise VerificationError(
                f"{label}: re-measured {metric.sample_mean!r}, recorded "
                f"{recorded_metric['sample_mean']!r}, gap {gap:.3g} > tolerance {tolerance:g}"
            )
        worst = max(worst, gap)
    return _passed(
        "risk",
        f"re-measured on {measured.device} in {measured.dtype}: every sample mean within "
        f"{tolerance:g} (absolute, in its unit) of the recorded one; largest gap {worst:.3g}",
    )


# --------------------------------------------------------------------------- the table

CheckFunction = Callable[[Evidence], "VerificationCheck | None"]

#: every check, in report order; a function returning None does not apply (omitted)
CHECKS: tuple[tuple[str, CheckFunction], ...] = (
    ("certificate", _certificate_check),
    ("canonical", _canonical_check),
    ("envelope", _envelope_check),
    ("signature", _signature_check),
    ("predicate", _predicate_check),
    ("artifact_path", _artifact_path_check),
    ("subjects", _subjects_check),
    ("artifact", _artifact_check),
    ("decode", _decode_check),
    ("model_signing", _model_signing_check),
    ("inputs", _inputs_check),
    ("bound", _bound_check),
    ("statement", _statement_check),
    ("assumptions", _assumptions_check),
    ("risk", _recompute_risk_check),
)


def _guarded(name: str, check: CheckFunction, evidence: Evidence) -> VerificationCheck | None:
    """Run one check; a CertifyError or OSError becomes its failure reason."""
    try:
        return check(evidence)
    except CertifyError as error:
        return _failed(name, str(error))
    except OSError as error:
        return _failed(name, f"cannot read: {error.strerror or error}")


def run_checks(evidence: Evidence) -> tuple[VerificationCheck, ...]:
    """The result of every applicable check of :data:`CHECKS`, in order."""
    results = (_guarded(name, check, evidence) for name, check in CHECKS)
    return tuple(result for result in results if result is not None)


def _signer_fingerprint(evidence: Evidence, checks: tuple[VerificationCheck, ...]) -> str | None:
    """The fingerprint of the key the envelope verified with (None when none did)."""
    signature = next((check for check in checks if check.name == "signature"), None)
    if signature is None or signature.status not in ("pass", "unpinned"):
        return None
    pinned = evidence.options.public_key_pem
    key = pinned if pinned is not None else evidence.published_key_pem
    return None if key is None else signing.public_key_fingerprint(key)


def verify(
    target: str | Path,
    *,
    public_key_pem: bytes | None = None,
    allow_unpinned: bool = False,
    decode_artifact: bool = True,
    recompute_risk: bool = False,
    dataset: str | Path | None = None,
    risk_tolerance: float = RISK_TOLERANCE,
    risk_device: str = "auto",
) -> VerificationReport:
    """Check a run folder, certificate file or envelope file; never raises for a failed check.

    One named result per check of :data:`CHECKS` (docs/CERTIFICATE.md says what each
    establishes): ``certificate``, ``canonical``, ``envelope``, ``signature`` (against
    ``public_key_pem``; without it, against the key published in the folder, reported
    as *unpinned* and passing only with ``allow_unpinned``), ``predicate``,
    ``artifact_path``, ``subjects``, ``artifact``, ``decode`` (unless
    ``decode_artifact`` is False, which then does not pass), ``model_signing`` (when a
    model.sig is present), ``inputs``, ``bound``, ``statement``, ``assumptions``, and
    with ``recompute_risk`` ``risk`` (re-measured on ``dataset`` within
    ``risk_tolerance``, on ``risk_device``). Raises InvalidInputError only when TARGET
    does not exist.
    """
    options = VerifyOptions(
        public_key_pem=public_key_pem,
        allow_unpinned=allow_unpinned,
        decode_artifact=decode_artifact,
        recompute_risk=recompute_risk,
        dataset=dataset,
        risk_tolerance=risk_tolerance,
        risk_device=risk_device,
    )
    evidence = load_evidence(target, options)
    checks = run_checks(evidence)
    return VerificationReport(
        target=str(target),
        checks=checks,
        fingerprint=_signer_fingerprint(evidence, checks),
        pinned=public_key_pem is not None,
    )
