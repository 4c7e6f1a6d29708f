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

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from certify import container, signing
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
from certify.bound_reference import reference_mismatches
from certify.certificate import (
    REL_TOLERANCE,
    RISK_TOLERANCE,
    SAMPLED_RECORD_FIELDS,
    Certificate,
    compare_numbers,
    default_assumptions,
    make_claim,
    recompute_bound,
    recorded_input_mismatches,
    validate_certificate,
    version_of,
)
from certify.errors import CertifyError, InvalidInputError, VerificationError
from certify.pipeline import measure_risk
from certify.records import (
    DatasetRecord,
    DataSource,
    EvaluationSettings,
    RiskRecord,
    SampledDataRecord,
    VerificationCheck,
    VerificationReport,
)

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
    #: where ``--recompute-risk`` keeps tokenized shards and sampled-mode journals (None:
    #: a temporary folder), and how it reaches the Hub for a Hub dataset
    cache: str | Path | None = None
    endpoint: str | None = None
    token: str | None = field(default=None, repr=False)
    workers: int = 0


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
    rows, parameters = _output_rows_and_parameters(header)
    model = evidence.certificate["model"]
    if parameters != model["parameters"] or parameters != artifact["parameters"]:
        raise VerificationError(
            f"the decoded tensors hold {parameters:,} parameters, the certificate records "
            f"{model['parameters']:,} (model) and {artifact['parameters']:,} (artifact)"
        )
    if rows != model["vocab_size"]:
        raise VerificationError(
            f"the decoded output layer has {rows:,} rows, the certificate's bound uses "
            f"V = {model['vocab_size']:,}"
        )
    return _passed(
        "decode",
        f"decoded every tensor; weights hash {decoded[:16]}… matches; {parameters:,} "
        f"parameters and an output layer of {rows:,} rows, as recorded",
    )


#: names of the output layer (then, for tied weights, of the input embedding)
_OUTPUT_LAYER_NAMES = ("lm_head.weight", "output.weight", "embed_out.weight")
_EMBEDDING_NAMES = (
    "embed_tokens.weight",
    "wte.weight",
    "word_embeddings.weight",
    "embed_in.weight",
)


def _output_rows_and_parameters(header: dict[str, Any]) -> tuple[int | None, int]:
    """(rows of the output layer, parameter count) of a .certz header's tensors.

    The parameter count is over stored tensors (an alias of a tied tensor is not counted
    twice, as compress counts them); the output layer is the LM head, or the input
    embedding when the head is tied to it.
    """
    shapes = {entry["name"]: entry["shape"] for entry in header["tensors"]}
    for alias in header.get("aliases", []):
        shapes.setdefault(alias["name"], shapes.get(alias["target"], []))
    parameters = sum(math.prod(entry["shape"]) for entry in header["tensors"])
    for suffixes in (_OUTPUT_LAYER_NAMES, _EMBEDDING_NAMES):
        for name, shape in shapes.items():
            if name.endswith(suffixes) and shape:
                return int(shape[0]), int(parameters)
    return None, int(parameters)


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
    """The ``bound`` check on one certificate (also used on golden files).

    Every number is recomputed twice from the recorded inputs: by certify.bound (the
    code that made it) and by certify.bound_reference, a second implementation that
    shares no code with it; both must agree with what is recorded.
    """
    recomputed = json_round_trip(bound_result_to_dict(recompute_bound(certificate)))
    differences, exact, close = compare_numbers(certificate["bound"], recomputed)
    if differences:
        more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
        raise VerificationError(f"recomputed bound differs: {differences[0]}{more}")
    independent = reference_mismatches(certificate["bound"])
    if independent:
        more = f" (and {len(independent) - 1} more)" if len(independent) > 1 else ""
        raise VerificationError(f"the independent recomputation differs: {independent[0]}{more}")
    detail = f"{exact} exactly" + (f", {close} within {REL_TOLERANCE:g} relative" if close else "")
    return _passed(
        "bound",
        f"all {exact + close} numbers recompute ({detail}), and a second implementation "
        "of the formulas agrees",
    )


def _statement_check(evidence: Evidence) -> VerificationCheck:
    """The one-sentence claim is the one the numbers give."""
    if evidence.certificate is None:
        return _not_run("statement", "no valid certificate")
    expected = make_claim(evidence.certificate)
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


def _recorded_settings(certificate: Certificate, device: str) -> EvaluationSettings:
    """The evaluation settings a certificate records (its version's token rules)."""
    data = certificate["data"]
    metrics = certificate["bound"]["metrics"]
    exhaustive = data["sampling"]["method"] == "exhaustive"
    return EvaluationSettings(
        chunk_tokens=data["chunk_tokens"],
        context_tokens=data["context_tokens"],
        samples=max(2, data["sampling"]["samples"]),
        exhaustive=exhaustive,
        seed=data["sampling"]["seed"],
        alphas=tuple(float(m["alpha"]) for m in metrics if m["name"] == "bits"),
        top_k=tuple(int(m["k"]) for m in metrics if m["name"] == "top_k_error"),
        device=device,
        dtype=certificate["evaluation"]["dtype"],
        stream=cast(Any, data["sampling"].get("stream", "certification")),
        bound_version=version_of(certificate),
    )


def _recorded_source(certificate: Certificate, dataset: str | Path) -> DataSource:
    data = certificate["data"]
    return DataSource(
        source=str(dataset),
        max_documents=data.get("max_documents"),
        mode="sampled" if "sampled" in data else "exact",
    )


def _risk_check(
    evidence: Evidence, certificate: Certificate, artifact_path: Path, dataset: str | Path
) -> VerificationCheck:
    """Re-measure the risk on ``dataset`` with the recorded settings and require every
    measured input of the bound to be what the certificate claims."""
    options = evidence.options
    data = certificate["data"]
    sampled = data.get("sampled")
    recorded = (
        None
        if sampled is None
        else _sampled_record(certificate, cast(dict[str, Any], sampled), dataset)
    )
    with tempfile.TemporaryDirectory(prefix="certify-verify-") as scratch:
        measured = measure_risk(
            artifact_path,
            _recorded_source(certificate, dataset),
            _recorded_settings(certificate, options.risk_device),
            options.cache if options.cache is not None else scratch,
            endpoint=options.endpoint,
            token=options.token,
            recorded=recorded,
            workers=options.workers,
        )
    problems = _measured_data_mismatches(certificate, measured) + _statistics_mismatches(
        certificate, measured, options.risk_tolerance
    )
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise VerificationError(f"{problems[0]}{more}")
    what = "the same draws" if sampled is not None else f"n = {measured.n_tokens:,} tokens"
    return _passed(
        "risk",
        f"re-measured on {measured.device} in {measured.dtype}: {what}, the same tokenizer, "
        f"V and tokens scored; every sample mean at most {options.risk_tolerance:g} above "
        "the recorded one, and every variance and square mean within "
        f"{_RELATIVE_RISK_TOLERANCE:g} relative",
    )


def _sampled_record(
    certificate: Certificate, sampled: dict[str, Any], dataset: str | Path
) -> SampledDataRecord:
    """The sampled-mode record a certificate carries, to draw the same units again from
    ``dataset`` (a local source wherever the verifier keeps it; a Hub id as recorded)."""
    data = certificate["data"]
    hub = sampled["source_options"].get("kind") == "hub"
    fields = {key: sampled[key] for key in SAMPLED_RECORD_FIELDS}
    return SampledDataRecord(
        source=data["source"] if hub else str(dataset),
        revision=data["revision"],
        tokenizer_sha256=data["tokenizer_sha256"],
        vocab_size=certificate["model"]["vocab_size"],
        eos_token_id=-1,  # not recorded; redraw reads it from the tokenizer
        chunk_tokens=data["chunk_tokens"],
        context_tokens=data["context_tokens"],
        seed=data["sampling"]["seed"],
        **fields,
    )


#: variances and square means re-measured on the same device and dtype agree to float
#: rounding; 1% relative leaves room for another BLAS, and anything larger is a claim
_RELATIVE_RISK_TOLERANCE = 1e-2


def _measured_data_mismatches(certificate: Certificate, measured: RiskRecord) -> list[str]:
    """Counts and hashes: what the data is must be exactly what the certificate says."""
    data = certificate["data"]
    expected: dict[str, Any] = {
        "model.vocab_size": (certificate["model"]["vocab_size"], measured.vocab_size),
        "evaluation.tokens_scored": (
            certificate["evaluation"]["tokens_scored"],
            measured.tokens_scored,
        ),
        "data.sampling.samples": (data["sampling"]["samples"], measured.sampling.samples),
    }
    record = measured.data
    if isinstance(record, DatasetRecord):
        expected.update(
            {
                "data.n_tokens": (data.get("n_tokens"), record.n_tokens),
                "data.documents": (data.get("documents"), record.documents),
                "data.tokenizer_sha256": (data["tokenizer_sha256"], record.tokenizer_sha256),
                "data.shards_sha256": (data.get("shards_sha256"), record.shards_sha256),
            }
        )
        if "documents_sha256" in data:
            expected["data.documents_sha256"] = (data["documents_sha256"], record.documents_sha256)
    elif isinstance(record, SampledDataRecord):
        sampled = cast(dict[str, Any], data.get("sampled") or {})
        for key in ("total_weight", "units", "units_sha256", "accepted", "drawn", "draws_sha256"):
            expected[f"data.sampled.{key}"] = (sampled.get(key), getattr(record, key))
        expected["data.tokenizer_sha256"] = (data["tokenizer_sha256"], record.tokenizer_sha256)
    return [
        f"{name}: the certificate says {claimed!r}, the data gives {found!r}"
        for name, (claimed, found) in expected.items()
        if claimed != found
    ]


def _statistics_mismatches(
    certificate: Certificate, measured: RiskRecord, tolerance: float
) -> list[str]:
    """Means: one-sided (a recorded mean below the measured one is a false claim; above
    it only loosens the bound). Variances and square means: equal within 1% relative."""
    problems = []
    for recorded, metric in zip(certificate["bound"]["metrics"], measured.metrics, strict=True):
        label = f"bits α={metric.alpha}" if metric.name == "bits" else f"top-{metric.k} error"
        gap = metric.sample_mean - float(recorded["sample_mean"])
        if gap > tolerance:
            problems.append(
                f"{label}: re-measured mean {metric.sample_mean!r} is {gap:.3g} above the "
                f"recorded {recorded['sample_mean']!r} (tolerance {tolerance:g})"
            )
        pairs: list[tuple[str, float | None]] = [("sample_variance", metric.sample_variance)]
        if recorded.get("square_mean") is not None:
            pairs += [
                ("square_mean", metric.square_mean),
                ("square_variance", metric.square_variance),
            ]
        for key, value in pairs:
            claimed = float(cast(float, recorded.get(key)))
            if value is None or not math.isclose(
                claimed, value, rel_tol=_RELATIVE_RISK_TOLERANCE, abs_tol=1e-9
            ):
                problems.append(f"{label}: recorded {key} {claimed!r}, re-measured {value!r}")
    return problems


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
    cache: str | Path | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    workers: int = 0,
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
    ``risk_tolerance``, on ``risk_device``; ``cache`` keeps its shards or sampled-mode
    journal, ``endpoint``/``token`` reach a Hub dataset, ``workers`` tokenize sampled
    units). Raises InvalidInputError only when TARGET does not exist.
    """
    options = VerifyOptions(
        public_key_pem=public_key_pem,
        allow_unpinned=allow_unpinned,
        decode_artifact=decode_artifact,
        recompute_risk=recompute_risk,
        dataset=dataset,
        risk_tolerance=risk_tolerance,
        risk_device=risk_device,
        cache=cache,
        endpoint=endpoint,
        token=token,
        workers=workers,
    )
    evidence = load_evidence(target, options)
    checks = run_checks(evidence)
    return VerificationReport(
        target=str(target),
        checks=checks,
        fingerprint=_signer_fingerprint(evidence, checks),
        pinned=public_key_pem is not None,
    )
