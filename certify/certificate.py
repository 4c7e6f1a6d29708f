"""The certificate: build it from records, validate, canonicalise, recompute, verify.

``certificate.json`` is the RFC 8785 (JSON Canonicalization Scheme) form of an
object that records every input of the bound and every number derived from it
(docs/CERTIFICATE.md, schemas/certificate.schema.json). ``verify`` trusts none of
it: it checks the schema, the DSSE signature, the files' hashes, decodes the
artifact, and recomputes every number of ``bound`` with :mod:`certify.bound`.
"""

from __future__ import annotations

import datetime
import decimal
import importlib.metadata
import importlib.resources
import math
from collections.abc import Callable, Iterable, Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path, PurePosixPath
from typing import Any

from certify._files import (
    CERTIFICATE_NAME,
    ENVELOPE_NAME,
    file_digest,
    safe_relative_path,
    write_bytes_atomic,
)
from certify._jcs import (
    canonical_bytes,
    check_json_values,
    json_round_trip,
    parse_json_strict,
    schema_error,
)
from certify.errors import (
    CertificateError,
    CertifyError,
    InvalidInputError,
    VerificationError,
)
from certify.records import (
    ArtifactRecord,
    BoundInput,
    BoundResult,
    DatasetRecord,
    MetricSample,
    ModelRecord,
    RiskRecord,
    VerificationCheck,
    VerificationReport,
    to_dict,
)

__all__ = [
    "CERTIFICATE_NAME",
    "CERTIFICATE_VERSION",
    "ENVELOPE_NAME",
    "REL_TOLERANCE",
    "RISK_TOLERANCE",
    "build_certificate",
    "canonical_bytes",
    "compare_numbers",
    "load_certificate",
    "make_statement",
    "parse_json_strict",
    "recompute_bound",
    "recorded_input_mismatches",
    "safe_relative_path",
    "validate_certificate",
    "verify",
    "write_certificate",
]

CERTIFICATE_VERSION = 1
#: relative tolerance when comparing recomputed floats with recorded ones. The bound
#: uses log/exp/sqrt/pow from the platform's libm, which IEEE 754 does not require to
#: be correctly rounded (glibc, macOS and musl may differ in the last ulp), and
#: δ_c/δ recovers the δ split only to an ulp; 1e-12 is ~4500 ulps, far below any
#: printed digit, far above libm differences.
REL_TOLERANCE = 1e-12
#: default absolute tolerance (in the metric's unit: bits per token, or error rate)
#: when re-measured risk is compared with the recorded sample means.
RISK_TOLERANCE = 1e-3
#: libraries whose versions change the artifact's bytes or the measured numbers
DEPENDENCIES = ("torch", "transformers", "tokenizers", "safetensors", "constriction", "numpy")


# --------------------------------------------------------------------------- schema


def validate_certificate(obj: Any) -> None:
    """Raise CertificateError naming the first problem: non-finite or unsafe numbers,
    then any violation of the JSON schema (JSON path + what was expected)."""
    check_json_values(obj, "$")
    problem = schema_error(obj, "certificate")
    if problem is not None:
        raise CertificateError(problem, hint="see docs/CERTIFICATE.md for every field")


# --------------------------------------------------------------------------- build


def _dependency_versions() -> dict[str, str]:
    versions = {}
    for package in DEPENDENCIES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rounded(value: float, places: int, rounding: str) -> str:
    # every float64 has an exact decimal form of at most ~770 digits
    with decimal.localcontext() as context:
        context.prec = 800
        return str(Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=rounding))


def _ceil(value: float, places: int) -> str:
    """``value`` rounded up at ``places`` decimals, exactly (so the sentence never overclaims)."""
    return _rounded(value, places, ROUND_CEILING)


def _floor(value: float, places: int) -> str:
    return _rounded(value, places, ROUND_FLOOR)


def _confidence_percent(delta: float) -> str:
    """(1 − δ) in percent, from δ's shortest decimal form, exact."""
    percent = (Decimal(1) - Decimal(repr(float(delta)))) * 100
    text = format(percent.normalize(), "f")
    return text


def make_statement(certificate: Mapping[str, Any]) -> str:
    """The certificate's one-sentence claim, generated from its numbers.

    Bounds are rounded *up* (and δ's confidence is exact), so the sentence follows
    from the recorded numbers. ``verify`` regenerates it and compares.
    """
    bound = certificate["bound"]
    summary = bound["summary"]
    artifact = certificate["artifact"]
    data = certificate["data"]
    claims = []
    if summary.get("bits_per_token_bound") is not None:
        bits = float(summary["bits_per_token_bound"])
        claim = f"at most {_ceil(bits, 3)} bits per token at smoothing α = {summary['alpha']!r}"
        perplexity = summary.get("perplexity_bound")
        if perplexity is not None:
            claim += f" (perplexity at most {_ceil(float(perplexity), 2)})"
        if summary.get("vacuous"):
            uniform = _floor(summary["uniform_bits_per_token"], 3)
            claim += f", which is vacuous (no better than the {uniform} bits of a uniform guess)"
        claims.append(claim)
    for entry in summary.get("top_k", []):
        claim = f"a top-{entry['k']} error rate of at most {_ceil(float(entry['bound']), 4)}"
        if entry.get("vacuous"):
            claim += " (vacuous)"
        claims.append(claim)
    if not claims:  # pragma: no cover - the schema requires at least one metric
        claims.append("the bounds listed in this certificate")
    over = (
        "the data"
        if bound["sampling_method"] == "exhaustive"
        else f"the data and the {data['sampling']['samples']:,} sampled chunks"
    )
    listed = "; ".join(claims)
    return (
        f"With probability at least {_confidence_percent(bound['delta'])}% over {over}, "
        f"the model decoded from {artifact['path']} ({artifact['size_bytes']:,} bytes, "
        f"sha256 {artifact['sha256'][:16]}…) has a token-level risk, conditional on the "
        f"preceding tokens and averaged over the {data['n_tokens']:,} tokens of "
        f"{data['source']} (revision {data['revision']}), of {listed}; all "
        f"{bound['statements']} statements of this certificate hold together."
    )


def default_assumptions(certificate: Mapping[str, Any]) -> list[str]:
    """The assumptions every certificate states, filled in from its numbers."""
    bound = certificate["bound"]
    data = certificate["data"]
    evaluation = certificate["evaluation"]
    artifact = certificate["artifact"]
    assumptions = [
        f"The predictor is the model decoded from {artifact['path']} and run in "
        f"{evaluation['dtype']} on {evaluation['device']}; nothing is claimed about the "
        "original, unquantized weights or other numeric precisions.",
        f"Tokens are scored as in docs/CERTIFICATE.md: chunks of {data['chunk_tokens']} "
        f"tokens, each preceded by one BOS token and {data['context_tokens']} unscored "
        "context tokens; the claim is about this token stream and tokenizer only.",
        "The bound is on the conditional (martingale) risk of each token given the "
        "tokens before it in this dataset, not on the risk under any other distribution.",
        f"The {bound['prior']['hyperparameter_configurations']} hyperparameter "
        "configuration(s) counted in the prior are every configuration that was tried; "
        "any other choice made after looking at this data would void the bound.",
    ]
    if bound["sampling_method"] != "exhaustive":
        assumptions.append(
            f"Chunks were drawn with seed {data['sampling']['seed']} and the sampling "
            f"method ({bound['sampling_method']}) was fixed before any loss was seen."
        )
    if bound["heldout"]:
        assumptions.append(
            "Held-out mode: the data is asserted to be independent of the model, so the "
            "file size is not charged in the prior. certify does not and cannot check this."
        )
    return assumptions


def recorded_input_mismatches(certificate: Mapping[str, Any]) -> list[str]:
    """Where the certificate's copies of one input disagree (empty when consistent)."""
    bound = certificate["bound"]
    data = certificate["data"]
    artifact = certificate["artifact"]
    model = certificate["model"]
    problems = []

    def same(label: str, recorded: Any, expected: Any, expected_label: str) -> None:
        if recorded != expected or isinstance(recorded, bool) != isinstance(expected, bool):
            problems.append(f"{label} = {recorded!r} but {expected_label} = {expected!r}")

    same(
        "bound.prior.size_bytes",
        bound["prior"]["size_bytes"],
        artifact["size_bytes"],
        "artifact.size_bytes",
    )
    same("bound.n_tokens", bound["n_tokens"], data["n_tokens"], "data.n_tokens")
    same("bound.vocab_size", bound["vocab_size"], model["vocab_size"], "model.vocab_size")
    same("bound.statements", bound["statements"], len(bound["metrics"]), "len(bound.metrics)")
    exhaustive = data["sampling"]["method"] == "exhaustive"
    if exhaustive != (bound["sampling_method"] == "exhaustive"):
        problems.append(
            f"bound.sampling_method = {bound['sampling_method']!r} does not fit "
            f"data.sampling.method = {data['sampling']['method']!r}"
        )
    for index, metric in enumerate(bound["metrics"]):
        same(
            f"bound.metrics[{index}].samples",
            metric["samples"],
            data["sampling"]["samples"],
            "data.sampling.samples",
        )
    if exhaustive:
        same(
            "evaluation.tokens_scored",
            certificate["evaluation"]["tokens_scored"],
            data["n_tokens"],
            "data.n_tokens",
        )
    expected_bpp = 8.0 * artifact["size_bytes"] / artifact["parameters"]
    if not _close(artifact["bits_per_parameter"], expected_bpp):
        problems.append(
            f"artifact.bits_per_parameter = {artifact['bits_per_parameter']!r} but "
            f"8·size_bytes/parameters = {expected_bpp!r}"
        )
    return problems


def build_certificate(
    model: ModelRecord,
    artifact: ArtifactRecord,
    data: DatasetRecord,
    risk: RiskRecord,
    bound: BoundResult,
    *,
    created_at: str | None = None,
    assumptions: Iterable[str] = (),
    tool_version: str | None = None,
) -> dict[str, Any]:
    """The certificate object (already JSON round-tripped, schema-valid).

    Checks that the records describe one run: the bound was computed from this
    artifact's size, this dataset's n_tokens, this model's vocabulary and exactly the
    risk's statistics. ``assumptions`` are appended to the standard ones.
    Raises CertificateError naming the first disagreement.
    """
    from certify import __version__
    from certify.bound import bound_result_to_dict

    if risk.n_tokens != data.n_tokens:
        raise CertificateError(
            f"risk.n_tokens = {risk.n_tokens} but data.n_tokens = {data.n_tokens}",
            hint="evaluate on the tokenized dataset the certificate names",
        )
    if risk.vocab_size != model.vocab_size:
        raise CertificateError(
            f"risk.vocab_size = {risk.vocab_size} but model.vocab_size = {model.vocab_size}"
        )
    measured = [
        (m.name, m.alpha, m.k, m.sample_mean, m.sample_variance, m.samples) for m in risk.metrics
    ]
    bounded = [
        (m.name, m.alpha, m.k, m.sample_mean, m.sample_variance, m.samples) for m in bound.metrics
    ]
    if measured != bounded:
        raise CertificateError(
            "the bound's metric statistics differ from the risk's",
            hint="compute the bound from this risk record",
        )
    artifact_name = PurePosixPath(Path(artifact.path).name).as_posix()
    certificate: dict[str, Any] = {
        "certificate_version": CERTIFICATE_VERSION,
        "statement": "",
        "created_at": created_at or _utc_now(),
        "tool": {
            "name": "certify",
            "version": tool_version or __version__,
            "dependencies": _dependency_versions(),
        },
        "model": to_dict(model),
        "artifact": {
            "path": artifact_name,
            "sha256": artifact.sha256,
            "size_bytes": artifact.size_bytes,
            "format_version": artifact.format_version,
            "quantization": dict(artifact.quantization),
            "bits_per_parameter": artifact.bits_per_parameter,
            "decoded_weights_sha256": artifact.decoded_weights_sha256,
            "parameters": artifact.parameters,
        },
        "data": {
            **to_dict(data),
            "chunk_tokens": risk.chunk_tokens,
            "context_tokens": risk.context_tokens,
            "sampling": to_dict(risk.sampling),
        },
        "evaluation": {
            "device": risk.device,
            "dtype": risk.dtype,
            "tokens_scored": risk.tokens_scored,
            "seconds": float(risk.seconds),
        },
        "bound": bound_result_to_dict(bound),
        "assumptions": [],
    }
    certificate = json_round_trip(certificate)
    problems = recorded_input_mismatches(certificate)
    if problems:
        raise CertificateError(problems[0], hint="build the certificate from one run's records")
    certificate["assumptions"] = default_assumptions(certificate) + [str(a) for a in assumptions]
    certificate["statement"] = make_statement(certificate)
    validate_certificate(certificate)
    return certificate  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- files


def write_certificate(certificate: Mapping[str, Any], path: str | Path) -> bytes:
    """Validate and write the canonical bytes atomically; returns the bytes written."""
    validate_certificate(certificate)
    data = canonical_bytes(dict(certificate))
    write_bytes_atomic(path, data)
    return data


def load_certificate(path: str | Path) -> dict[str, Any]:
    """Read, strictly parse and validate a certificate file."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise CertificateError(f"cannot read {path}: {error.strerror}") from error
    certificate = parse_json_strict(data, what=str(path))
    validate_certificate(certificate)
    return certificate  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- recompute


def bound_input_of(certificate: Mapping[str, Any]) -> BoundInput:
    """The bound's inputs, each read from its primary place in the certificate."""
    bound = certificate["bound"]
    exhaustive = bound["sampling_method"] == "exhaustive"
    return BoundInput(
        vocab_size=certificate["model"]["vocab_size"],
        n_tokens=certificate["data"]["n_tokens"],
        size_bytes=certificate["artifact"]["size_bytes"],
        metrics=tuple(
            MetricSample(
                name=metric["name"],
                sample_mean=float(metric["sample_mean"]),
                sample_variance=float(metric["sample_variance"]),
                samples=metric["samples"],
                alpha=None if metric.get("alpha") is None else float(metric["alpha"]),
                k=metric.get("k"),
            )
            for metric in bound["metrics"]
        ),
        hyperparameter_configurations=bound["prior"]["hyperparameter_configurations"],
        delta=float(bound["delta"]),
        # the split is recorded as δ_c; δ_c/δ may be off by an ulp (see REL_TOLERANCE)
        delta_split=0.5 if exhaustive else float(bound["delta_c"]) / float(bound["delta"]),
        sampling_method=bound["sampling_method"],
        heldout=bound["heldout"],
        bound_version=1,
    )


def recompute_bound(certificate: Mapping[str, Any]) -> BoundResult:
    """Recompute the bound from the certificate's recorded inputs.

    Raises VerificationError when the recorded copies of an input disagree or the
    inputs are outside the bound's domain.
    """
    from certify.bound import compute_bound

    problems = recorded_input_mismatches(certificate)
    if problems:
        raise VerificationError(f"recorded inputs disagree: {problems[0]}")
    try:
        return compute_bound(bound_input_of(certificate))
    except InvalidInputError as error:
        raise VerificationError(
            f"the recorded inputs are not valid bound inputs: {error}"
        ) from error


def _close(recorded: float, recomputed: float) -> bool:
    return recorded == recomputed or math.isclose(recorded, recomputed, rel_tol=REL_TOLERANCE)


def compare_numbers(
    recorded: Any, recomputed: Any, where: str = "bound"
) -> tuple[list[str], int, int]:
    """Compare two JSON values: (differences, numbers equal exactly, numbers within tolerance).

    Integers, booleans, strings and nulls must be equal; a pair of numbers where
    either is a float may differ by :data:`REL_TOLERANCE` relative.
    """
    differences: list[str] = []
    counts = [0, 0]

    def walk(left: Any, right: Any, path: str) -> None:
        if isinstance(left, dict) and isinstance(right, dict):
            if set(left) != set(right):
                differences.append(f"{path}: keys {sorted(left)} != recomputed {sorted(right)}")
                return
            for key in left:
                walk(left[key], right[key], f"{path}.{key}")
            return
        if isinstance(left, list) and isinstance(right, list):
            if len(left) != len(right):
                differences.append(f"{path}: {len(left)} entries, recomputed {len(right)}")
                return
            for index, (a, b) in enumerate(zip(left, right, strict=True)):
                walk(a, b, f"{path}[{index}]")
            return
        numeric = (int, float)
        if (
            isinstance(left, numeric)
            and isinstance(right, numeric)
            and not isinstance(left, bool)
            and not isinstance(right, bool)
        ):
            if left == right:
                counts[0] += 1
            elif (isinstance(left, float) or isinstance(right, float)) and _close(left, right):
                counts[1] += 1
            else:
                differences.append(f"{path} = {left!r}, recomputed {right!r}")
            return
        if type(left) is not type(right) or left != right:
            differences.append(f"{path} = {left!r}, recomputed {right!r}")

    walk(recorded, recomputed, where)
    return differences, counts[0], counts[1]


# --------------------------------------------------------------------------- verify


def _check(name: str, passed: bool, reason: str, status: str | None = None) -> VerificationCheck:
    return VerificationCheck(
        name=name,
        passed=passed,
        status=status or ("pass" if passed else "fail"),  # type: ignore[arg-type]
        reason=reason,
    )


def _not_run(name: str, because: str) -> VerificationCheck:
    return VerificationCheck(
        name=name, passed=False, status="not_run", reason=f"not run: {because}"
    )


def _locate(target: Path) -> tuple[Path, Path | None, Path | None]:
    """(run folder, certificate file or None, envelope file or None) of TARGET."""
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


def _guarded(name: str, action: Callable[[], VerificationCheck]) -> VerificationCheck:
    """Run one check; a CertifyError becomes its failure reason."""
    try:
        return action()
    except CertifyError as error:
        return _check(name, False, str(error))
    except OSError as error:
        return _check(name, False, f"cannot read: {error.strerror or error}")


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

    Checks, in order (each a named line of the report): ``certificate`` (strict JSON
    + schema), ``canonical`` (file bytes are the RFC 8785 form), ``envelope`` (DSSE
    shape), ``signature`` (against ``public_key_pem``; without it, against the key
    published in the folder, reported as *unpinned* and passing only with
    ``allow_unpinned``), ``predicate`` (the signed predicate is this certificate),
    ``artifact_path``, ``subjects`` (every signed file's sha256 and size), ``artifact``
    (the artifact's sha256 and size), ``decode`` (the artifact decodes and its decoded
    weights hash matches), ``inputs`` (the recorded copies of each input agree),
    ``bound`` (every number recomputes), ``statement`` (the sentence matches the
    numbers), and with ``recompute_risk`` ``risk`` (re-measured on ``dataset``, within
    ``risk_tolerance``). Raises InvalidInputError only when TARGET does not exist.
    """
    from certify import signing

    folder, certificate_path, envelope_path = _locate(Path(target))
    checks: list[VerificationCheck] = []
    fingerprint: str | None = None
    pinned = public_key_pem is not None

    # -- certificate
    certificate: dict[str, Any] | None = None
    certificate_bytes: bytes | None = None
    envelope: dict[str, Any] | None = None
    statement: dict[str, Any] | None = None

    if envelope_path is not None and envelope_path.exists():
        try:
            envelope = signing.load_envelope(envelope_path)
        except CertifyError as error:
            envelope_error = str(error)
        else:
            envelope_error = ""
    else:
        envelope_error = f"{ENVELOPE_NAME} not found in {folder} (the certificate is unsigned)"

    if certificate_path is None:
        # TARGET is an envelope with no certificate.json beside it: check its predicate
        try:
            if envelope is None:
                raise CertificateError(envelope_error)
            _, _, statement = signing.parse_envelope(envelope)
            certificate = statement["predicate"]
            validate_certificate(certificate)
            certificate_bytes = canonical_bytes(certificate)
            checks.append(
                _check("certificate", True, "the signed predicate is a valid certificate")
            )
        except CertifyError as error:
            checks.append(_check("certificate", False, str(error)))
            certificate = None
    else:
        try:
            certificate_bytes = certificate_path.read_bytes()
            certificate = parse_json_strict(certificate_bytes, what=certificate_path.name)
            validate_certificate(certificate)
            checks.append(
                _check("certificate", True, f"{certificate_path.name} matches the schema (v1)")
            )
        except CertifyError as error:
            checks.append(_check("certificate", False, str(error)))
            certificate = None
        except OSError as error:
            checks.append(
                _check("certificate", False, f"cannot read {certificate_path}: {error.strerror}")
            )
            certificate = None
    if certificate is not None and certificate_bytes is not None:
        canonical = canonical_bytes(certificate)
        checks.append(
            _check("canonical", True, "the file is in RFC 8785 canonical form")
            if canonical == certificate_bytes
            else _check(
                "canonical",
                False,
                "the file is not the RFC 8785 canonical form of its content (re-encoded?)",
            )
        )
    else:
        checks.append(_not_run("canonical", "no valid certificate"))

    # -- envelope and signature
    if envelope is None:
        checks.append(_check("envelope", False, envelope_error))
        checks.append(_not_run("signature", "no envelope"))
    else:
        try:
            _, signatures, statement = signing.parse_envelope(envelope)
            keyids = ", ".join(str(keyid) for keyid, _ in signatures)
            checks.append(
                _check(
                    "envelope", True, f"DSSE envelope of an in-toto Statement v1 (keyid {keyids})"
                )
            )
        except CertifyError as error:
            checks.append(_check("envelope", False, str(error)))
            statement = None
        if statement is None:
            checks.append(_not_run("signature", "the envelope is malformed"))
        else:
            signature_check, fingerprint = _signature_check(
                envelope, folder, public_key_pem, allow_unpinned
            )
            checks.append(signature_check)

    # -- predicate
    if statement is None or certificate is None:
        checks.append(_not_run("predicate", "needs a valid envelope and certificate"))
    else:
        checks.append(
            _guarded("predicate", lambda: _predicate_check(statement, certificate))  # type: ignore[arg-type]
        )

    # -- files
    artifact_path: Path | None = None
    if certificate is None:
        checks.append(_not_run("artifact_path", "no valid certificate"))
    else:
        try:
            artifact_path = safe_relative_path(folder, certificate["artifact"]["path"])
            if not artifact_path.is_file():
                raise VerificationError(f"{certificate['artifact']['path']} not found in {folder}")
            checks.append(
                _check(
                    "artifact_path", True, f"{certificate['artifact']['path']} is inside the folder"
                )
            )
        except VerificationError as error:
            checks.append(_check("artifact_path", False, str(error)))
            artifact_path = None
    if statement is None or certificate is None:
        checks.append(_not_run("subjects", "needs a valid envelope and certificate"))
    else:
        checks.append(
            _guarded("subjects", lambda: _subjects_check(statement, certificate, folder))  # type: ignore[arg-type]
        )
    if artifact_path is None or certificate is None:
        checks.append(_not_run("artifact", "no artifact file"))
        checks.append(_not_run("decode", "no artifact file"))
    else:
        checks.append(_guarded("artifact", lambda: _artifact_check(artifact_path, certificate)))  # type: ignore[arg-type]
        if decode_artifact:
            checks.append(_guarded("decode", lambda: _decode_check(artifact_path, certificate)))  # type: ignore[arg-type]
        else:
            checks.append(_not_run("decode", "skipped on request"))

    if (folder / signing.MODEL_SIGNING_BUNDLE_NAME).is_file():
        checks.append(
            _guarded("model_signing", lambda: _bundle_check(folder, public_key_pem, allow_unpinned))
        )

    # -- numbers
    if certificate is None:
        for name in ("inputs", "bound", "statement", "assumptions"):
            checks.append(_not_run(name, "no valid certificate"))
    else:
        problems = recorded_input_mismatches(certificate)
        checks.append(
            _check(
                "inputs",
                not problems,
                problems[0] if problems else "every recorded copy of each bound input agrees",
            )
        )
        checks.append(_guarded("bound", lambda: _bound_check(certificate)))  # type: ignore[arg-type]
        expected = make_statement(certificate)
        checks.append(
            _check("statement", True, "the sentence follows from the recorded numbers")
            if expected == certificate["statement"]
            else _check(
                "statement", False, f"the sentence does not match the numbers; expected: {expected}"
            )
        )
        standard = default_assumptions(certificate)
        recorded = certificate["assumptions"]
        checks.append(
            _check("assumptions", True, f"states the {len(standard)} standard assumptions")
            if recorded[: len(standard)] == standard
            else _check(
                "assumptions",
                False,
                "the standard assumptions for these settings are missing or changed; "
                f"expected first: {next((a for a in standard if a not in recorded), standard[0])}",
            )
        )
    if recompute_risk:
        if certificate is None or artifact_path is None:
            checks.append(_not_run("risk", "needs a valid certificate and artifact"))
        elif dataset is None:
            checks.append(_check("risk", False, "--recompute-risk needs --dataset SRC"))
        else:
            checks.append(
                _guarded(
                    "risk",
                    lambda: _risk_check(
                        certificate,
                        artifact_path,
                        dataset,
                        risk_tolerance,
                        risk_device,  # type: ignore[arg-type]
                    ),
                )
            )
    return VerificationReport(
        target=str(target), checks=tuple(checks), fingerprint=fingerprint, pinned=pinned
    )


def _signature_check(
    envelope: dict[str, Any], folder: Path, public_key_pem: bytes | None, allow_unpinned: bool
) -> tuple[VerificationCheck, str | None]:
    from certify import signing

    if public_key_pem is not None:
        try:
            _, fingerprint = signing.verify_envelope(envelope, public_key_pem)
        except CertifyError as error:
            return _check("signature", False, str(error)), None
        return _check("signature", True, f"signed by the pinned key {fingerprint}"), fingerprint
    published = folder / signing.PUBLIC_KEY_NAME
    if not published.is_file():
        return (
            _check(
                "signature",
                False,
                "no key to check the signature against: pass --key PUB.pem "
                f"(no {signing.PUBLIC_KEY_NAME} in the folder either)",
            ),
            None,
        )
    try:
        _, fingerprint = signing.verify_envelope(envelope, published.read_bytes())
    except CertifyError as error:
        return _check("signature", False, f"with {published.name}: {error}"), None
    reason = (
        f"valid but UNPINNED: signed by key {fingerprint} published next to the "
        "certificate, which anyone could have replaced; pass --key PUB.pem from the signer "
        "(or compare this fingerprint with one they published)"
    )
    if allow_unpinned:
        reason += "; accepted because unpinned signatures were allowed"
    return _check("signature", allow_unpinned, reason, status="unpinned"), fingerprint


def _bundle_check(
    folder: Path, public_key_pem: bytes | None, allow_unpinned: bool
) -> VerificationCheck:
    """The OpenSSF model-signing bundle (model.sig) over every file of the folder."""
    import tempfile

    from certify import signing

    try:
        import model_signing  # noqa: F401
    except ImportError:
        return _check(
            "model_signing",
            True,
            f"{signing.MODEL_SIGNING_BUNDLE_NAME} present but not checked: install "
            "certify[model-signing] (the checks above do not depend on it)",
            status="not_run",
        )
    if public_key_pem is None:
        published = folder / signing.PUBLIC_KEY_NAME
        if not published.is_file():
            raise VerificationError("no key to check model.sig against: pass --key PUB.pem")
        signing.verify_model_signing_bundle(folder, published)
        return _check(
            "model_signing",
            allow_unpinned,
            "model.sig verifies over the whole folder, but only with the UNPINNED key "
            "published in it; pass --key PUB.pem",
            status="unpinned",
        )
    signing.load_public_key(public_key_pem)
    with tempfile.TemporaryDirectory(prefix="certify-key-") as scratch:
        key_path = Path(scratch) / "key.pub.pem"
        key_path.write_bytes(public_key_pem)
        signing.verify_model_signing_bundle(folder, key_path)
    return _check(
        "model_signing", True, "model.sig (OpenSSF model-signing) verifies over the whole folder"
    )


def _predicate_check(statement: dict[str, Any], certificate: dict[str, Any]) -> VerificationCheck:
    if canonical_bytes(statement["predicate"]) != canonical_bytes(certificate):
        differences, _, _ = compare_numbers(statement["predicate"], certificate, "predicate")
        detail = differences[0] if differences else "canonical bytes differ"
        raise VerificationError(f"the signed predicate differs from the certificate: {detail}")
    return _check("predicate", True, "the signed predicate is this certificate, byte for byte")


def _subjects_check(
    statement: dict[str, Any], certificate: dict[str, Any], folder: Path
) -> VerificationCheck:

    artifact = certificate["artifact"]
    names = [subject["name"] for subject in statement["subject"]]
    if artifact["path"] not in names:
        raise VerificationError(f"the artifact {artifact['path']} is not a signed subject")
    if len(set(names)) != len(names):
        raise VerificationError("a subject is listed twice")
    for subject in statement["subject"]:
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
        if name == artifact["path"] and sha256 != artifact["sha256"]:
            raise VerificationError(
                f"the signed subject {name} has sha256 {sha256}, the certificate "
                f"records {artifact['sha256']}"
            )
    return _check("subjects", True, f"{len(names)} signed file(s) match by sha256 and size")


def _artifact_check(path: Path, certificate: dict[str, Any]) -> VerificationCheck:

    artifact = certificate["artifact"]
    sha256, size_bytes = file_digest(path)
    if size_bytes != artifact["size_bytes"]:
        raise VerificationError(
            f"{path.name} has {size_bytes} bytes, the certificate records {artifact['size_bytes']}"
        )
    if sha256 != artifact["sha256"]:
        raise VerificationError(
            f"{path.name} has sha256 {sha256}, the certificate records {artifact['sha256']}"
        )
    return _check("artifact", True, f"sha256 {sha256[:16]}… and {size_bytes:,} bytes match")


def _decode_check(path: Path, certificate: dict[str, Any]) -> VerificationCheck:
    try:
        from certify import container
    except ImportError as error:  # pragma: no cover - container ships with the package
        raise VerificationError(
            f"not available: cannot import certify.container ({error})"
        ) from error
    artifact = certificate["artifact"]
    header = container.read_header(path)
    version = header.get("format_version")
    if version is not None and version != artifact["format_version"]:
        raise VerificationError(
            f"the file is format version {version}, the certificate records "
            f"{artifact['format_version']}"
        )
    decoded = container.verify_artifact(path)
    if decoded != artifact["decoded_weights_sha256"]:
        raise VerificationError(
            f"decoded weights hash to {decoded}, the certificate records "
            f"{artifact['decoded_weights_sha256']}"
        )
    return _check("decode", True, f"decoded every tensor; weights hash {decoded[:16]}… matches")


def _bound_check(certificate: dict[str, Any]) -> VerificationCheck:
    from certify.bound import bound_result_to_dict

    recomputed = json_round_trip(bound_result_to_dict(recompute_bound(certificate)))
    differences, exact, close = compare_numbers(certificate["bound"], recomputed)
    if differences:
        more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
        raise VerificationError(f"recomputed bound differs: {differences[0]}{more}")
    detail = f"{exact} exactly" + (f", {close} within {REL_TOLERANCE:g} relative" if close else "")
    return _check("bound", True, f"all {exact + close} numbers recompute ({detail})")


def _risk_check(
    certificate: dict[str, Any],
    artifact_path: Path,
    dataset: str | Path,
    tolerance: float,
    device: str,
) -> VerificationCheck:
    """Re-measure the risk on ``dataset`` with the recorded settings and compare means."""
    import tempfile

    from certify import data as data_module
    from certify import risk
    from certify.records import EvaluationSettings

    recorded = certificate["data"]
    metrics = certificate["bound"]["metrics"]
    model, tokenizer = risk.load_for_evaluation(
        artifact_path, device=device, dtype=certificate["evaluation"]["dtype"]
    )
    with tempfile.TemporaryDirectory(prefix="certify-verify-") as scratch:
        if data_module.is_shard_dir(dataset):
            shards = data_module.open_shards(dataset)
        else:
            shards = data_module.tokenize_source(
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
            model, shards, settings, bos_token_id=data_module.bos_token_id(tokenizer), tokenizer=tokenizer
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
    return _check(
        "risk",
        True,
        f"re-measured on {measured.device} in {measured.dtype}: every sample mean within "
        f"{tolerance:g} (absolute, in its unit) of the recorded one; largest gap {worst:.3g}",
    )
