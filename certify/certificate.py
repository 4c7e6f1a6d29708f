"""The certificate: build it from records, validate, canonicalise, recompute.

``certificate.json`` is the RFC 8785 (JSON Canonicalization Scheme) form of an
object that records every input of the bound and every number derived from it
(docs/CERTIFICATE.md, certify/schemas/certificate.schema.json). It travels through
the code as :class:`Certificate`, a TypedDict of the schema's shape. Signing it is
:mod:`certify.signing`'s job, checking a folder :mod:`certify.verify`'s; this module
imports neither.
"""

from __future__ import annotations

import datetime
import decimal
import importlib.metadata
import math
from collections.abc import Iterable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path, PurePosixPath
from typing import Any, TypedDict, cast

from certify._files import (
    CERTIFICATE_NAME,
    ENVELOPE_NAME,
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
from certify._version import __version__
from certify.bound import (
    bound_result_to_dict,
    compute_bound,
    confidence_text,
    round_up_text,
)
from certify.errors import CertificateError, InvalidInputError, VerificationError
from certify.records import (
    ArtifactRecord,
    BoundInput,
    BoundResult,
    DatasetRecord,
    MetricName,
    MetricSample,
    ModelRecord,
    RiskRecord,
    SampledDataRecord,
    SampledDraws,
    SamplingMethod,
    to_dict,
)
from certify.streams import derive_seed

__all__ = [
    "CERTIFICATE_NAME",
    "CERTIFICATE_VERSION",
    "ENVELOPE_NAME",
    "REL_TOLERANCE",
    "RISK_TOLERANCE",
    "SUPPORTED_VERSIONS",
    "Certificate",
    "CertificateArtifact",
    "CertificateBound",
    "CertificateData",
    "CertificateEvaluation",
    "CertificateMetric",
    "CertificateModel",
    "CertificatePrior",
    "CertificateSampling",
    "CertificateTool",
    "bound_input_of",
    "build_certificate",
    "canonical_bytes",
    "compare_numbers",
    "default_assumptions",
    "json_round_trip",
    "load_certificate",
    "make_claim",
    "parse_json_strict",
    "published_number",
    "recompute_bound",
    "recorded_input_mismatches",
    "safe_relative_path",
    "validate_certificate",
    "version_of",
    "write_certificate",
]

#: the version new certificates are written in; every version listed keeps verifying
CERTIFICATE_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
#: the JSON schema of each version (certify/schemas/<name>.schema.json)
SCHEMAS = {1: "certificate", 2: "certificate-v2"}
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


# --------------------------------------------------------------------------- the shape
# One TypedDict per object of certify/schemas/certificate*.schema.json (versions 1 and 2;
# the fields only one version has are in a total=False subclass). The schemas stay the
# authority: these only let the type checker follow the fields.


class CertificateTool(TypedDict):
    name: str
    version: str
    #: library -> version, for every library that changes the bytes or the numbers
    dependencies: dict[str, str]


class CertificateModel(TypedDict):
    source: str
    revision: str
    architecture: str
    parameters: int
    vocab_size: int


class CertificateArtifact(TypedDict):
    #: a name inside the run folder, never absolute
    path: str
    sha256: str
    size_bytes: int
    format_version: int
    #: method, bits, group_size, and whatever else changed the bytes
    quantization: dict[str, Any]
    bits_per_parameter: float
    decoded_weights_sha256: str
    parameters: int


class _SamplingFields(TypedDict):
    method: str
    samples: int
    seed: int


class CertificateSampling(_SamplingFields, total=False):
    #: version 2: what the default seed was derived from, and the child stream used
    seed_inputs: dict[str, Any]
    stream: str


class _DataFields(TypedDict):
    source: str
    revision: str
    tokenizer_sha256: str
    chunk_tokens: int
    context_tokens: int
    sampling: CertificateSampling


class CertificateData(_DataFields, total=False):
    #: version 2: "exact" (n counted) or "sampled" (n bounded below from drawn units)
    mode: str
    #: exact n (version 1, and version 2 in exact mode)
    n_tokens: int
    documents: int
    shards_sha256: str
    documents_sha256: str
    max_documents: int | None
    #: version 2 sampled mode: the units, their weights, the draws and n's lower bound
    sampled: dict[str, Any]


class CertificateEvaluation(TypedDict):
    device: str
    dtype: str
    tokens_scored: int
    seconds: float


class CertificatePrior(TypedDict):
    size_bytes: int
    hyperparameter_configurations: int
    nats: float


class _MetricFields(TypedDict):
    name: MetricName
    loss_min: float
    loss_range: float
    sample_mean: float
    sample_variance: float
    samples: int
    complexity_term: float
    sampling_term: float
    bound: float


class CertificateMetric(_MetricFields, total=False):
    #: "bits" statements carry alpha, "top_k_error" statements carry k
    alpha: float
    k: int
    #: version 2: statistics of q, U and W, each form's value and the winning form
    square_mean: float | None
    square_variance: float | None
    mean_bound: float
    square_sampling_term: float | None
    square_bound: float | None
    azuma: float
    freedman: float | None
    freedman_lambda: float | None
    certified_by: str


class _BoundFields(TypedDict):
    delta: float
    delta_c: float
    delta_s: float
    heldout: bool
    prior: CertificatePrior
    statements: int
    sampling_method: SamplingMethod
    #: exact n; None in version 2 sampled mode (see sampled and n_lower_bound)
    n_tokens: int | None
    vocab_size: int
    metrics: list[CertificateMetric]
    #: headline numbers for people (bits_per_token_bound, perplexity_bound, top_k, ...)
    summary: dict[str, Any]


class CertificateBound(_BoundFields, total=False):
    #: version 2 only
    bound_version: int
    delta_n: float | None
    search_scored_sample: bool
    statement_events: int
    sampling_events: int
    sampled: dict[str, int] | None
    acceptance_lower_bound: float | None
    n_lower_bound: int | None


class Certificate(TypedDict):
    """certificate.json, as parsed (docs/CERTIFICATE.md names every field)."""

    certificate_version: int
    statement: str
    created_at: str
    tool: CertificateTool
    model: CertificateModel
    artifact: CertificateArtifact
    data: CertificateData
    evaluation: CertificateEvaluation
    bound: CertificateBound
    assumptions: list[str]


# --------------------------------------------------------------------------- schema


def version_of(obj: Any) -> int:
    """The certificate's ``certificate_version``, refused unless this certify reads it."""
    version = obj.get("certificate_version") if isinstance(obj, dict) else None
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        raise CertificateError(
            f"$.certificate_version: {version!r} is not a version this certify reads "
            f"({', '.join(map(str, SUPPORTED_VERSIONS))})",
            hint="a newer certify may read it; see docs/CERTIFICATE.md",
        )
    return int(version)


def validate_certificate(obj: Any) -> None:
    """Raise CertificateError naming the first problem: non-finite or unsafe numbers, an
    unknown version, then any violation of that version's JSON schema (JSON path + what
    was expected)."""
    check_json_values(obj, "$")
    problem = schema_error(obj, SCHEMAS[version_of(obj)])
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


def published_number(value: float, significant: int = 4) -> str:
    """``value`` for people, rounded UP to ``significant`` digits (never to nearest).

    Large and tiny values use scientific notation with the mantissa rounded up, so a
    vacuous perplexity prints as ``4.26e+183``, not as a 184-digit integer.

    >>> published_number(3.14159), published_number(2.0**600), published_number(0.5)
    ('3.142', '4.150e+180', '0.5000')
    """
    exact = Decimal(value)
    if value == 0 or 1e-4 <= abs(value) < 1e6:
        text = round_up_text(value, significant=significant)
        if abs(Decimal(text)) < 1_000_000:  # 999999.9 rounds up to 1000000: scientific
            return text
    exponent = exact.adjusted()
    mantissa = exact.scaleb(-exponent)
    quantum = Decimal(1).scaleb(-(significant - 1))
    with decimal.localcontext() as context:
        context.prec = 800
        rounded = mantissa.quantize(quantum, rounding=ROUND_CEILING)
        if abs(rounded) >= 10:  # 9.9996 → 10.00: one more power of ten
            exponent += 1
            rounded = (mantissa / 10).quantize(quantum, rounding=ROUND_CEILING)
    return f"{rounded}e{exponent:+03d}"


def make_claim(certificate: Certificate) -> str:
    """The certificate's one-sentence claim, generated from its numbers.

    Bounds are rounded *up* (and δ's confidence is exact), so the sentence follows
    from the recorded numbers. ``verify`` regenerates it and compares.
    """
    if version_of(certificate) >= 2:
        return _statement_v2(certificate)
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


def _statement_v2(certificate: Certificate) -> str:
    bound = certificate["bound"]
    summary = bound["summary"]
    artifact = certificate["artifact"]
    data = certificate["data"]
    claims = []
    if summary.get("bits_per_token_bound") is not None:
        claim = (
            f"at most {published_number(summary['bits_per_token_bound'])} bits per token "
            f"at smoothing α = {summary['alpha']!r}"
        )
        if summary.get("perplexity_bound") is not None:
            claim += f" (perplexity at most {published_number(summary['perplexity_bound'])})"
        if summary.get("vacuous"):
            uniform = _floor(summary["uniform_bits_per_token"], 3)
            claim += f", which is vacuous (no better than the {uniform} bits of a uniform guess)"
        claims.append(claim)
    for entry in summary.get("top_k", []):
        claim = (
            f"a top-{entry['k']} error rate of at most {round_up_text(entry['bound'], decimals=4)}"
        )
        if entry.get("vacuous"):
            claim += " (vacuous)"
        claims.append(claim)
    sampled = data.get("sampled")
    if bound["sampling_method"] == "exhaustive":
        over = "the data"
    elif sampled is not None:
        over = f"the data and the {data['sampling']['samples']:,} sampled units"
    else:
        over = f"the data and the {data['sampling']['samples']:,} sampled chunks"
    if sampled is not None:
        tokens = (
            f"the tokens of {data['source']} (revision {data['revision']}), at least "
            f"{sampled['n_lower_bound']:,} of them by a lower bound included in this "
            "confidence"
        )
    else:
        tokens = (
            f"the {data['n_tokens']:,} tokens of {data['source']} (revision {data['revision']})"
        )
    heldout = (
        " in held-out mode (the data is asserted to be independent of the model, so the "
        "file's size is not charged)"
        if bound["heldout"]
        else ""
    )
    return (
        f"With probability at least {confidence_text(bound['delta'])} over {over}, the model "
        f"decoded from {artifact['path']} ({artifact['size_bytes']:,} bytes, sha256 "
        f"{artifact['sha256'][:16]}…) has a token-level risk{heldout}, conditional on the "
        f"preceding tokens and averaged over {tokens}, of {'; '.join(claims)}; all "
        f"{bound['statements']} statements of this certificate hold together."
    )


_HELDOUT_ASSUMPTION = (
    "Held-out mode: the data is asserted to be independent of the model, so the "
    "file size is not charged in the prior. certify does not and cannot check this."
)


def _common_assumptions(bound: Any) -> list[str]:
    """The assumptions about the risk and the prior, the same in every version."""
    return [
        "The bound is on the conditional (martingale) risk of each token given the "
        "tokens before it in this dataset, not on the risk under any other distribution.",
        f"The {bound['prior']['hyperparameter_configurations']} hyperparameter "
        "configuration(s) counted in the prior are every configuration that was tried; "
        "any other choice made after looking at this data would void the bound.",
    ]


def default_assumptions(certificate: Certificate) -> list[str]:
    """The assumptions every certificate states, filled in from its numbers."""
    if version_of(certificate) >= 2:
        return _assumptions_v2(certificate)
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
        *_common_assumptions(bound),
    ]
    if bound["sampling_method"] != "exhaustive":
        assumptions.append(
            f"Chunks were drawn with seed {data['sampling']['seed']} and the sampling "
            f"method ({bound['sampling_method']}) was fixed before any loss was seen."
        )
    if bound["heldout"]:
        assumptions.append(_HELDOUT_ASSUMPTION)
    return assumptions


def _assumptions_v2(certificate: Certificate) -> list[str]:
    bound = certificate["bound"]
    data = certificate["data"]
    evaluation = certificate["evaluation"]
    artifact = certificate["artifact"]
    sampling = data["sampling"]
    assumptions = [
        f"The predictor is the model decoded from {artifact['path']} and run in "
        f"{evaluation['dtype']} on {evaluation['device']}; nothing is claimed about the "
        "original, unquantized weights or other numeric precisions.",
        f"Tokens are scored as in docs/CERTIFICATE.md (version 2): every document is cut "
        f"into chunks of {data['chunk_tokens']} tokens from its own start; each chunk is "
        f"preceded by one BOS token and up to {data['context_tokens']} unscored tokens of "
        "the same document; a top-k error counts ties against the model; the claim is "
        "about this token stream and tokenizer only.",
        *_common_assumptions(bound),
    ]
    if bound["sampling_method"] != "exhaustive":
        origin = (
            "derived from the artifact, the data, the chunk and context lengths and the "
            "sample size (data.sampling.seed_inputs)"
            if "seed_inputs" in sampling
            else "given by the signer"
        )
        assumptions.append(
            f"The sample was drawn from the {sampling.get('stream', 'certification')} "
            f"stream of seed {sampling['seed']}, {origin}, and the sampling method "
            f"({bound['sampling_method']}) was fixed before any loss was seen."
        )
    sampled = data.get("sampled")
    if sampled is not None:
        assumptions.append(
            f"Sampled mode: the dataset is the ordered list of {sampled['units']:,} units "
            f"(sha256 {sampled['units_sha256'][:16]}…) of {data['source']} at revision "
            f"{data['revision']}, each of weight at least its token count under the "
            f"{sampled['weight_rule']!r} rule (checked on every unit drawn); n is at least "
            f"{sampled['n_lower_bound']:,} with probability 1 − {sampled['delta_n']!r}, "
            "which the confidence includes."
        )
    if bound["heldout"]:
        assumptions.append(_HELDOUT_ASSUMPTION)
    return assumptions


def _seed_mismatches(certificate: Certificate) -> list[str]:
    """A derived seed must be the hash of its recorded inputs, and those the run's own."""
    data = certificate["data"]
    inputs = data["sampling"].get("seed_inputs")
    if inputs is None:
        return []
    problems = []
    if derive_seed(inputs) != data["sampling"]["seed"]:
        problems.append(
            f"data.sampling.seed = {data['sampling']['seed']} is not the seed its "
            f"recorded inputs derive ({derive_seed(inputs)})"
        )
    expected = {
        "artifact_sha256": certificate["artifact"]["sha256"],
        "chunk_tokens": data["chunk_tokens"],
        "context_tokens": data["context_tokens"],
    }
    if "shards_sha256" in data:
        expected["data_sha256"] = data["shards_sha256"]
        expected["documents_sha256"] = data.get("documents_sha256")
    problems.extend(
        f"data.sampling.seed_inputs.{key} = {inputs.get(key)!r} but the certificate "
        f"records {value!r}"
        for key, value in expected.items()
        if inputs.get(key) != value
    )
    return problems


def _mismatches_v2(certificate: Certificate, same: Any) -> list[str]:
    bound = certificate["bound"]
    data = certificate["data"]
    sampled = data.get("sampled")
    problems = _seed_mismatches(certificate)
    if sampled is None:
        same("bound.n_tokens", bound["n_tokens"], data.get("n_tokens"), "data.n_tokens")
        same("bound.sampled", bound.get("sampled"), None, "exact mode")
    else:
        recorded = {key: sampled[key] for key in ("total_weight", "accepted", "drawn")}
        same("bound.sampled", bound.get("sampled"), recorded, "data.sampled")
        same("bound.delta_n", bound.get("delta_n"), sampled["delta_n"], "data.sampled.delta_n")
        same(
            "bound.n_lower_bound",
            bound.get("n_lower_bound"),
            sampled["n_lower_bound"],
            "data.sampled.n_lower_bound",
        )
    return problems


def recorded_input_mismatches(certificate: Certificate) -> list[str]:
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
    if version_of(certificate) >= 2:
        problems.extend(_mismatches_v2(certificate, same))
    else:
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
            data.get("n_tokens"),
            "data.n_tokens",
        )
    expected_bpp = 8.0 * artifact["size_bytes"] / artifact["parameters"]
    if not _close(artifact["bits_per_parameter"], expected_bpp):
        problems.append(
            f"artifact.bits_per_parameter = {artifact['bits_per_parameter']!r} but "
            f"8·size_bytes/parameters = {expected_bpp!r}"
        )
    return problems


def _statistics(metrics: Iterable[Any]) -> list[tuple[Any, ...]]:
    return [
        (
            m.name,
            m.alpha,
            m.k,
            m.sample_mean,
            m.sample_variance,
            m.samples,
            m.square_mean,
            m.square_variance,
        )
        for m in metrics
    ]


def _check_one_run(
    model: ModelRecord,
    data: DatasetRecord | SampledDataRecord,
    risk: RiskRecord,
    bound: BoundResult,
) -> None:
    """The records describe one run: same n, same vocabulary, exactly the risk's statistics."""
    if isinstance(data, DatasetRecord) and risk.n_tokens != data.n_tokens:
        raise CertificateError(
            f"risk.n_tokens = {risk.n_tokens} but data.n_tokens = {data.n_tokens}",
            hint="evaluate on the tokenized dataset the certificate names",
        )
    if risk.vocab_size != model.vocab_size:
        raise CertificateError(
            f"risk.vocab_size = {risk.vocab_size} but model.vocab_size = {model.vocab_size}"
        )
    if _statistics(risk.metrics) != _statistics(bound.metrics):
        raise CertificateError(
            "the bound's metric statistics differ from the risk's",
            hint="compute the bound from this risk record",
        )


#: the fields of a SampledDataRecord a v2 certificate's ``data.sampled`` carries
#: (with delta_n and n_lower_bound from the bound), enough to draw its units again
SAMPLED_RECORD_FIELDS = (
    "weight_rule",
    "truncation_tokens",
    "extra_tokens_per_document",
    "total_weight",
    "units",
    "units_sha256",
    "accepted",
    "drawn",
    "chunks_per_unit",
    "source_options",
    "draws_sha256",
    "tokens_tokenized",
    "bytes_read",
    "documents_tokenized",
)


def _data_entry(
    data: DatasetRecord | SampledDataRecord, risk: RiskRecord, bound: BoundResult
) -> dict[str, Any]:
    """The certificate's ``data`` object of version 2 (exact or sampled mode)."""
    common = {
        "source": data.source,
        "revision": data.revision,
        "tokenizer_sha256": data.tokenizer_sha256,
        "chunk_tokens": risk.chunk_tokens,
        "context_tokens": risk.context_tokens,
        "sampling": to_dict(risk.sampling),
    }
    if isinstance(data, DatasetRecord):
        return {
            "mode": "exact",
            **common,
            "n_tokens": data.n_tokens,
            "documents": data.documents,
            "shards_sha256": data.shards_sha256,
            "documents_sha256": data.documents_sha256,
            "max_documents": data.max_documents,
        }
    sampled = {key: getattr(data, key) for key in SAMPLED_RECORD_FIELDS}
    sampled.update(delta_n=bound.delta_n, n_lower_bound=bound.n_lower_bound)
    return {"mode": "sampled", **common, "sampled": sampled}


def _artifact_entry(artifact: ArtifactRecord) -> dict[str, Any]:
    return {
        # a name inside the run folder, never the path it was written to
        "path": PurePosixPath(Path(artifact.path).name).as_posix(),
        "sha256": artifact.sha256,
        "size_bytes": artifact.size_bytes,
        "format_version": artifact.format_version,
        "quantization": dict(artifact.quantization),
        "bits_per_parameter": artifact.bits_per_parameter,
        "decoded_weights_sha256": artifact.decoded_weights_sha256,
        "parameters": artifact.parameters,
    }


def build_certificate(
    model: ModelRecord,
    artifact: ArtifactRecord,
    data: DatasetRecord | SampledDataRecord,
    risk: RiskRecord,
    bound: BoundResult,
    *,
    created_at: str | None = None,
    assumptions: Iterable[str] = (),
    tool_version: str | None = None,
) -> Certificate:
    """The certificate object (version 2; already JSON round-tripped, schema-valid).

    Checks that the records describe one run: the bound was computed from this
    artifact's size, this dataset's n (or its sampled draws), this model's vocabulary
    and exactly the risk's statistics. ``assumptions`` are appended to the standard
    ones. Raises CertificateError naming the first disagreement.
    """
    if bound.bound_version != CERTIFICATE_VERSION:
        raise CertificateError(
            f"the bound is of version {bound.bound_version}; certificates are written in "
            f"version {CERTIFICATE_VERSION}",
            hint="compute the bound with bound_version=2",
        )
    _check_one_run(model, data, risk, bound)
    draft = {
        "certificate_version": CERTIFICATE_VERSION,
        "statement": "",
        "created_at": created_at or _utc_now(),
        "tool": {
            "name": "certify",
            "version": tool_version or __version__,
            "dependencies": _dependency_versions(),
        },
        "model": to_dict(model),
        "artifact": _artifact_entry(artifact),
        "data": _data_entry(data, risk, bound),
        "evaluation": {
            "device": risk.device,
            "dtype": risk.dtype,
            "tokens_scored": risk.tokens_scored,
            "seconds": float(risk.seconds),
        },
        "bound": bound_result_to_dict(bound),
        "assumptions": [],
    }
    certificate = cast(Certificate, json_round_trip(draft))
    problems = recorded_input_mismatches(certificate)
    if problems:
        raise CertificateError(problems[0], hint="build the certificate from one run's records")
    certificate["assumptions"] = default_assumptions(certificate) + [str(a) for a in assumptions]
    certificate["statement"] = make_claim(certificate)
    validate_certificate(certificate)
    return certificate


# --------------------------------------------------------------------------- files


def write_certificate(certificate: Certificate, path: str | Path) -> bytes:
    """Validate and write the canonical bytes atomically; returns the bytes written."""
    validate_certificate(certificate)
    data = canonical_bytes(certificate)
    write_bytes_atomic(path, data)
    return data


def load_certificate(path: str | Path) -> Certificate:
    """Read, strictly parse and validate a certificate file."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise CertificateError(f"cannot read {path}: {error.strerror}") from error
    certificate = parse_json_strict(data, what=str(path))
    validate_certificate(certificate)
    return cast(Certificate, certificate)


# --------------------------------------------------------------------------- recompute


def bound_input_of(certificate: Certificate) -> BoundInput:
    """The bound's inputs, each read from its primary place in the certificate."""
    bound = certificate["bound"]
    version = version_of(certificate)
    exhaustive = bound["sampling_method"] == "exhaustive"
    sampled = certificate["data"].get("sampled") if version >= 2 else None
    delta = float(bound["delta"])
    delta_n = None if sampled is None else float(sampled["delta_n"])
    # the split is recorded as δ_c; δ_c/(δ − δ_n) may be off by an ulp (REL_TOLERANCE)
    rest = delta if delta_n is None else delta - delta_n
    return BoundInput(
        vocab_size=certificate["model"]["vocab_size"],
        n_tokens=None if sampled is not None else certificate["data"]["n_tokens"],
        size_bytes=certificate["artifact"]["size_bytes"],
        metrics=tuple(_metric_sample(metric, version) for metric in bound["metrics"]),
        hyperparameter_configurations=bound["prior"]["hyperparameter_configurations"],
        delta=delta,
        delta_split=0.5 if exhaustive else float(bound["delta_c"]) / rest,
        sampling_method=bound["sampling_method"],
        heldout=bound["heldout"],
        sampled=None
        if sampled is None
        else SampledDraws(
            total_weight=sampled["total_weight"],
            accepted=sampled["accepted"],
            drawn=sampled["drawn"],
        ),
        delta_n=delta_n,
        search_scored_sample=bool(bound.get("search_scored_sample", False)),
        bound_version=version,
    )


def _metric_sample(metric: CertificateMetric, version: int) -> MetricSample:
    squares = version >= 2 and metric.get("square_mean") is not None
    return MetricSample(
        name=metric["name"],
        sample_mean=float(metric["sample_mean"]),
        sample_variance=float(metric["sample_variance"]),
        samples=metric["samples"],
        alpha=None if metric.get("alpha") is None else float(metric["alpha"]),
        k=metric.get("k"),
        square_mean=float(cast(float, metric["square_mean"])) if squares else None,
        square_variance=float(cast(float, metric["square_variance"])) if squares else None,
    )


def recompute_bound(certificate: Certificate) -> BoundResult:
    """Recompute the bound from the certificate's recorded inputs.

    Raises VerificationError when the recorded copies of an input disagree or the
    inputs are outside the bound's domain.
    """
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
