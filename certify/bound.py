"""The token-level martingale generalization bound (pure float64 math, no torch).

Implements DESIGN.md "The bound" (Lotfi et al. 2024, arXiv 2407.18158) and the
decisions written down in docs/MATH.md:

* ``smoothed_loss_range``  -- the interval [a, a+Δ] of the α-smoothed bits loss;
* ``prior_nats``           -- ln 1/P(h) of an artifact of ``size_bytes`` bytes;
* ``complexity_term``      -- Azuma–Hoeffding + union bound over the prior, δ_c;
* ``sampling_term``        -- Hoeffding / empirical Bernstein over sampled chunks, δ_s;
* ``compute_bound``        -- every statement of a :class:`BoundInput` at once.

``document_level_bound`` and ``authors_formula_bound`` exist for comparison only.
All arithmetic is plain Python floats (IEEE float64).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from certify.errors import InvalidInputError
from certify.records import (
    BoundInput,
    BoundResult,
    MetricBound,
    MetricSample,
    PriorRecord,
    SamplingMethod,
)

__all__ = [
    "INFORMATIONAL_KEYS",
    "SAMPLING_METHODS",
    "authors_formula_bound",
    "bound_input_from_dict",
    "bound_input_from_result",
    "bound_result_from_dict",
    "bound_result_to_dict",
    "complexity_term",
    "compute_bound",
    "document_level_bound",
    "perplexity_bound",
    "prior_nats",
    "sampling_term",
    "smoothed_loss_range",
    "validate_bound_input",
]

LN2 = math.log(2.0)
SAMPLING_METHODS: tuple[SamplingMethod, ...] = ("bernstein", "hoeffding", "exhaustive")

#: keys that ``certify evaluate``'s risk.json carries besides the bound's inputs;
#: ``bound_input_from_dict`` ignores them so risk.json can be passed straight in.
INFORMATIONAL_KEYS: frozenset[str] = frozenset(
    {
        "chunk_tokens",
        "context_tokens",
        "sampling",
        "device",
        "dtype",
        "tokens_scored",
        "seconds",
        "data",
        "model",
        "artifact",
        "evaluation",
        "kind",
        "certify_version",
    }
)

_INPUT_KEYS = (
    "vocab_size",
    "n_tokens",
    "size_bytes",
    "metrics",
    "hyperparameter_configurations",
    "delta",
    "delta_split",
    "sampling_method",
    "heldout",
)
_METRIC_KEYS = ("name", "alpha", "k", "sample_mean", "sample_variance", "samples")
# Relative slack allowed when checking that a variance is feasible for its mean and
# range: statistics computed in float64 by another stage may be off by a few ulps.
_FEASIBILITY_TOLERANCE = 1e-9


# --------------------------------------------------------------------------- checks


def _finite(value: float, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"expected a number, got {value!r}", field=field)
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(f"expected a finite number, got {number!r}", field=field)
    return number


def _integer(value: Any, field: str, minimum: int) -> int:
    if isinstance(value, bool):
        raise InvalidInputError(f"expected an integer, got {value!r}", field=field)
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise InvalidInputError(f"expected an integer, got {value!r}", field=field)
        value = int(value)
    if not isinstance(value, int):
        raise InvalidInputError(f"expected an integer, got {value!r}", field=field)
    if value < minimum:
        raise InvalidInputError(f"must be at least {minimum}, got {value}", field=field)
    return value


def _open_unit(value: float, field: str) -> float:
    number = _finite(value, field)
    if not 0.0 < number < 1.0:
        raise InvalidInputError(
            f"must lie in the open interval (0, 1), got {number!r}", field=field
        )
    return number


def _method(method: Any, field: str = "sampling_method") -> SamplingMethod:
    if method not in SAMPLING_METHODS:
        raise InvalidInputError(
            f"must be one of {', '.join(SAMPLING_METHODS)}, got {method!r}", field=field
        )
    return method  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- formulas


def smoothed_loss_range(alpha: float, vocab_size: int) -> tuple[float, float]:
    """(a, Δ) in bits: the α-smoothed loss −log2((1−α)p + α/V) lies in [a, a+Δ].

    a = −log2(1 − α + α/V) (p = 1) and a + Δ = −log2(α/V) (p = 0), so
    Δ = log2(1 + (1−α)V/α). Computed with log1p, accurate for tiny α.
    """
    alpha = _open_unit(alpha, "alpha")
    vocab_size = _integer(vocab_size, "vocab_size", 2)
    loss_min_bits = -math.log1p(-alpha * (vocab_size - 1) / vocab_size) / LN2
    loss_range_bits = math.log1p((1.0 - alpha) * vocab_size / alpha) / LN2
    return loss_min_bits, loss_range_bits


def prior_nats(
    size_bytes: int, hyperparameter_configurations: int = 1, heldout: bool = False
) -> float:
    """ln 1/P(h) in nats for an artifact of ``size_bytes`` bytes.

    P(file) = 2^(−8B) / (B(B+1)) sums to 1 over all byte strings of length ≥ 1,
    and a uniform choice among H searched configurations adds ln H:
    8B·ln2 + ln B + ln(B+1) + ln H. Held-out data: ln H only (the file's content
    did not depend on the data, but the search over settings may have looked at it).
    """
    size_bytes = _integer(size_bytes, "size_bytes", 1)
    configurations = _integer(hyperparameter_configurations, "hyperparameter_configurations", 1)
    search_nats = math.log(configurations)
    if heldout:
        return search_nats
    return 8.0 * size_bytes * LN2 + math.log(size_bytes) + math.log1p(size_bytes) + search_nats


def complexity_term(
    loss_range: float, prior_nats: float, n_tokens: int, statements: int, delta_c: float
) -> float:
    """Δ·sqrt((ln 1/P(h) + ln(K/δ_c)) / (2n)): Azuma–Hoeffding with a union bound.

    Holds for all hypotheses and all K statements at once with probability ≥ 1 − δ_c.
    """
    loss_range = _finite(loss_range, "loss_range")
    if loss_range <= 0.0:
        raise InvalidInputError(f"must be positive, got {loss_range!r}", field="loss_range")
    prior = _finite(prior_nats, "prior_nats")
    if prior < 0.0:
        raise InvalidInputError(f"must be non-negative, got {prior!r}", field="prior_nats")
    n_tokens = _integer(n_tokens, "n_tokens", 1)
    statements = _integer(statements, "statements", 1)
    delta_c = _open_unit(delta_c, "delta_c")
    confidence_nats = math.log(statements) - math.log(delta_c)
    return loss_range * math.sqrt((prior + confidence_nats) / (2.0 * n_tokens))


def sampling_term(
    method: SamplingMethod,
    loss_range: float,
    sample_variance: float,
    samples: int,
    statements: int,
    delta_s: float,
) -> float:
    """Upper deviation of the full-data risk R̂ above the mean of ``samples`` chunk means.

    With d = δ_s/K: Hoeffding Δ·sqrt(ln(1/d)/(2s)); empirical Bernstein
    (Maurer & Pontil 2009, Thm 4, rescaled from [0, 1] to a range Δ)
    sqrt(2v·ln(2/d)/s) + 7Δ·ln(2/d)/(3(s−1)); exhaustive evaluation 0.
    """
    method = _method(method)
    if method == "exhaustive":
        return 0.0
    loss_range = _finite(loss_range, "loss_range")
    if loss_range <= 0.0:
        raise InvalidInputError(f"must be positive, got {loss_range!r}", field="loss_range")
    variance = _finite(sample_variance, "sample_variance")
    if variance < 0.0:
        raise InvalidInputError(f"must be non-negative, got {variance!r}", field="sample_variance")
    statements = _integer(statements, "statements", 1)
    delta_s = _open_unit(delta_s, "delta_s")
    log_inverse_d = math.log(statements) - math.log(delta_s)  # ln(1/d), d = δ_s/K
    if method == "hoeffding":
        samples = _integer(samples, "samples", 1)
        return loss_range * math.sqrt(log_inverse_d / (2.0 * samples))
    samples = _integer(samples, "samples", 2)  # a sample variance needs two chunks
    log_two_over_d = LN2 + log_inverse_d
    return math.sqrt(2.0 * variance * log_two_over_d / samples) + (
        7.0 * loss_range * log_two_over_d / (3.0 * (samples - 1))
    )


def perplexity_bound(bits_bound: float) -> float:
    """2**bits: a bound on the perplexity (``inf`` if it overflows float64)."""
    bits = _finite(bits_bound, "bits_bound")
    try:
        return math.pow(2.0, bits)
    except OverflowError:
        return math.inf


def document_level_bound(
    sample_mean: float, loss_range: float, prior_nats: float, documents: int, delta: float
) -> float:
    """Comparison only: the earlier document-level bound R̂ + Δ·sqrt((ln 1/P + ln 1/δ)/(2m)).

    Assumes m documents drawn i.i.d.; its unit of data is a document, not a token.
    """
    mean = _finite(sample_mean, "sample_mean")
    loss_range = _finite(loss_range, "loss_range")
    prior = _finite(prior_nats, "prior_nats")
    documents = _integer(documents, "documents", 1)
    delta = _open_unit(delta, "delta")
    return mean + loss_range * math.sqrt((prior - math.log(delta)) / (2.0 * documents))


def authors_formula_bound(
    sample_mean: float,
    loss_range: float,
    size_bytes: int,
    n_tokens: int,
    samples: int,
    delta: float,
    extra_bits: float = 0.0,
) -> float:
    """Comparison only: the formula of the authors' code (``llm_subsampling_bound``).

    r = s/(s+n); R̂_s + Δ[sqrt((D − ln rδ)/(2n)) + sqrt(−ln((1−r)δ)/(2s))] with
    D = (C + 2·log2 C + extra_bits)·ln2 nats and C = 8B bits (their C was a gzip size).
    """
    mean = _finite(sample_mean, "sample_mean")
    loss_range = _finite(loss_range, "loss_range")
    size_bytes = _integer(size_bytes, "size_bytes", 1)
    n_tokens = _integer(n_tokens, "n_tokens", 1)
    samples = _integer(samples, "samples", 1)
    delta = _open_unit(delta, "delta")
    extra_bits = _finite(extra_bits, "extra_bits")
    size_bits = 8.0 * size_bytes
    divergence_nats = (size_bits + 2.0 * math.log2(size_bits) + extra_bits) * LN2
    share = samples / (samples + n_tokens)
    # ln(rδ) and ln((1−r)δ) written as sums of logs; log1p keeps 1−r exact for tiny r
    log_r = math.log(samples) - math.log(samples + n_tokens)
    log_one_minus_r = math.log1p(-share)
    complexity = math.sqrt((divergence_nats - log_r - math.log(delta)) / (2.0 * n_tokens))
    sampling = math.sqrt(-(log_one_minus_r + math.log(delta)) / (2.0 * samples))
    return mean + loss_range * (complexity + sampling)


# --------------------------------------------------------------------------- validation


def _metric_label(metric: MetricSample) -> tuple[str, float | int | None]:
    return (metric.name, metric.alpha if metric.name == "bits" else metric.k)


def _metric_range(metric: MetricSample, vocab_size: int, field: str) -> tuple[float, float]:
    if metric.name == "bits":
        if metric.k is not None:
            raise InvalidInputError("a bits metric takes alpha, not k", field=f"{field}.k")
        if metric.alpha is None:
            raise InvalidInputError(
                "a bits metric needs the smoothing alpha in (0, 1)", field=f"{field}.alpha"
            )
        alpha = _open_unit(metric.alpha, f"{field}.alpha")
        return smoothed_loss_range(alpha, vocab_size)
    if metric.name == "top_k_error":
        if metric.alpha is not None:
            raise InvalidInputError(
                "a top_k_error metric takes k, not alpha", field=f"{field}.alpha"
            )
        if metric.k is None:
            raise InvalidInputError("a top_k_error metric needs k ≥ 1", field=f"{field}.k")
        k = _integer(metric.k, f"{field}.k", 1)
        if k >= vocab_size:
            raise InvalidInputError(
                f"must be below vocab_size ({vocab_size}); top-{k} error is trivially 0",
                field=f"{field}.k",
            )
        return 0.0, 1.0
    raise InvalidInputError(
        f"must be 'bits' or 'top_k_error', got {metric.name!r}", field=f"{field}.name"
    )


def _check_metric(
    metric: MetricSample, vocab_size: int, method: SamplingMethod, field: str
) -> tuple[float, float]:
    loss_min, loss_range = _metric_range(metric, vocab_size, field)
    mean = _finite(metric.sample_mean, f"{field}.sample_mean")
    variance = _finite(metric.sample_variance, f"{field}.sample_variance")
    minimum_samples = 2 if method == "bernstein" else 1
    samples = _integer(metric.samples, f"{field}.samples", minimum_samples)
    loss_max = loss_min + loss_range
    if not loss_min <= mean <= loss_max:
        raise InvalidInputError(
            f"must lie in the loss's range [{loss_min!r}, {loss_max!r}], got {mean!r} "
            "(a bits mean must be measured with the same alpha and vocab_size)",
            field=f"{field}.sample_mean",
        )
    if variance < 0.0:
        raise InvalidInputError(
            f"must be non-negative, got {variance!r}", field=f"{field}.sample_variance"
        )
    if samples >= 2 and method != "exhaustive":
        # Values in [a, a+Δ] with mean m have unbiased variance ≤ (m−a)(a+Δ−m)·s/(s−1).
        # (Exhaustive mode: the mean is token-weighted and the variance unused.)
        feasible = (mean - loss_min) * (loss_max - mean) * samples / (samples - 1)
        if variance > feasible * (1.0 + _FEASIBILITY_TOLERANCE) + 1e-12 * loss_range**2:
            raise InvalidInputError(
                f"{variance!r} is impossible for {samples} chunk means in "
                f"[{loss_min!r}, {loss_max!r}] with mean {mean!r} (at most {feasible!r}); "
                "pass the unbiased variance of the per-chunk mean losses",
                field=f"{field}.sample_variance",
            )
    return loss_min, loss_range


def validate_bound_input(bound_input: BoundInput) -> list[tuple[float, float]]:
    """Check every field of ``bound_input``; return (a, Δ) per metric.

    Raises :class:`InvalidInputError` naming the first offending field.
    """
    vocab_size = _integer(bound_input.vocab_size, "vocab_size", 2)
    _integer(bound_input.n_tokens, "n_tokens", 1)
    _integer(bound_input.size_bytes, "size_bytes", 1)
    _integer(bound_input.hyperparameter_configurations, "hyperparameter_configurations", 1)
    _open_unit(bound_input.delta, "delta")
    method = _method(bound_input.sampling_method)
    if method != "exhaustive":
        _open_unit(bound_input.delta_split, "delta_split")
    if not isinstance(bound_input.heldout, bool):
        raise InvalidInputError(
            f"expected true or false, got {bound_input.heldout!r}", field="heldout"
        )
    if not bound_input.metrics:
        raise InvalidInputError(
            "needs at least one entry, e.g. "
            '{"name": "bits", "alpha": 0.01, "sample_mean": ..., "sample_variance": ..., '
            '"samples": ...}',
            field="metrics",
        )
    ranges = []
    seen: dict[tuple[str, float | int | None], int] = {}
    for index, metric in enumerate(bound_input.metrics):
        field = f"metrics[{index}]"
        ranges.append(_check_metric(metric, vocab_size, method, field))
        label = _metric_label(metric)
        if label in seen:
            which = "alpha" if metric.name == "bits" else "k"
            raise InvalidInputError(
                f"duplicates metrics[{seen[label]}] ({metric.name}, {which}={label[1]!r}); "
                "each statement may appear once",
                field=f"{field}.{which}",
            )
        seen[label] = index
    return ranges


# --------------------------------------------------------------------------- the bound


def _split_delta(bound_input: BoundInput) -> tuple[float, float]:
    if bound_input.sampling_method == "exhaustive":
        return bound_input.delta, 0.0
    delta_c = bound_input.delta * bound_input.delta_split
    return delta_c, bound_input.delta - delta_c


def compute_bound(bound_input: BoundInput) -> BoundResult:
    """Every statement of ``bound_input``; with probability ≥ 1 − δ all of them hold.

    Per metric: bound = sample_mean + sampling_term + complexity_term, with
    K = len(metrics) statements sharing δ_c (complexity) and δ_s (sampling).
    ``summary`` holds the headline (minimum bits bound over α), its perplexity
    bound, each top-k bound, vacuity flags and the authors' formula for comparison.
    """
    ranges = validate_bound_input(bound_input)
    delta_c, delta_s = _split_delta(bound_input)
    statements = len(bound_input.metrics)
    nats = prior_nats(
        bound_input.size_bytes, bound_input.hyperparameter_configurations, bound_input.heldout
    )
    bounds = []
    for metric, (loss_min, loss_range) in zip(bound_input.metrics, ranges, strict=True):
        complexity = complexity_term(loss_range, nats, bound_input.n_tokens, statements, delta_c)
        sampling = (
            0.0
            if bound_input.sampling_method == "exhaustive"
            else sampling_term(
                bound_input.sampling_method,
                loss_range,
                metric.sample_variance,
                metric.samples,
                statements,
                delta_s,
            )
        )
        mean = float(metric.sample_mean)
        bounds.append(
            MetricBound(
                name=metric.name,
                alpha=None if metric.alpha is None else float(metric.alpha),
                k=None if metric.k is None else int(metric.k),
                loss_min=loss_min,
                loss_range=loss_range,
                sample_mean=mean,
                sample_variance=float(metric.sample_variance),
                samples=int(metric.samples),
                complexity_term=complexity,
                sampling_term=sampling,
                bound=mean + sampling + complexity,
            )
        )
    result = BoundResult(
        delta=float(bound_input.delta),
        delta_c=delta_c,
        delta_s=delta_s,
        heldout=bound_input.heldout,
        prior=PriorRecord(
            size_bytes=int(bound_input.size_bytes),
            hyperparameter_configurations=int(bound_input.hyperparameter_configurations),
            nats=nats,
        ),
        statements=statements,
        sampling_method=bound_input.sampling_method,
        n_tokens=int(bound_input.n_tokens),
        vocab_size=int(bound_input.vocab_size),
        metrics=tuple(bounds),
    )
    return dataclasses.replace(result, summary=_summary(result))


def _summary(result: BoundResult) -> dict[str, Any]:
    """Headline numbers; every value here is derived from ``result.metrics``."""
    trivial_bits = math.log2(result.vocab_size)
    summary: dict[str, Any] = {
        "bits_per_token_bound": None,
        "alpha": None,
        "empirical_bits_per_token": None,
        "perplexity_bound": None,
        "uniform_bits_per_token": trivial_bits,
        "vacuous": None,
        "top_k": [],
    }
    bits = [metric for metric in result.metrics if metric.name == "bits"]
    if bits:
        # ties resolve to the first entry, so the headline is reproducible
        best = min(bits, key=lambda metric: metric.bound)
        perplexity = perplexity_bound(best.bound)
        summary.update(
            bits_per_token_bound=best.bound,
            alpha=best.alpha,
            empirical_bits_per_token=best.sample_mean,
            perplexity_bound=perplexity if math.isfinite(perplexity) else None,
            vacuous=best.bound >= trivial_bits,
        )
    for metric in result.metrics:
        if metric.name == "top_k_error" and metric.k is not None:
            uniform_error = 1.0 - metric.k / result.vocab_size
            summary["top_k"].append(
                {
                    "k": metric.k,
                    "bound": metric.bound,
                    "empirical": metric.sample_mean,
                    "uniform_error": uniform_error,
                    "vacuous": metric.bound >= uniform_error,
                }
            )
    summary["comparison"] = _comparison(result)
    return summary


def _comparison(result: BoundResult) -> dict[str, Any]:
    """The authors' formula on the same statistics (never the headline)."""
    if result.sampling_method == "exhaustive":
        return {
            "authors_formula": None,
            "note": "the authors' formula assumes sampled tokens; not computed for exhaustive",
        }
    # Give their formula the same union over K statements and H configurations, as bits.
    extra_bits = math.log2(result.statements) + math.log2(
        result.prior.hyperparameter_configurations
    )
    per_metric = []
    for metric in result.metrics:
        bound = authors_formula_bound(
            metric.sample_mean,
            metric.loss_range,
            result.prior.size_bytes,
            result.n_tokens,
            metric.samples,
            result.delta,
            extra_bits,
        )
        entry: dict[str, Any] = {"name": metric.name}
        entry["alpha" if metric.name == "bits" else "k"] = (
            metric.alpha if metric.name == "bits" else metric.k
        )
        entry["bound"] = bound
        per_metric.append(entry)
    bits_bounds = [entry["bound"] for entry in per_metric if entry["name"] == "bits"]
    return {
        "authors_formula": {
            "extra_bits": extra_bits,
            "size_bits": 8 * result.prior.size_bytes,
            "bits_per_token_bound": min(bits_bounds) if bits_bounds else None,
            "metrics": per_metric,
        },
        "note": (
            "Lotfi et al.'s published formula (r = s/(s+n), one Hoeffding term per part) "
            "on the same statistics, with C = 8·size_bytes bits and extra_bits = "
            "log2 K + log2 H; for comparison only"
        ),
    }


# --------------------------------------------------------------------------- dicts


def _require_mapping(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"expected a JSON object, got {type(value).__name__}", field=field)
    return value


def _reject_unknown(data: Mapping[str, Any], allowed: Sequence[str], field: str | None) -> None:
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        prefix = f"{field}: " if field else ""
        raise InvalidInputError(
            f"{prefix}unknown key(s) {', '.join(repr(key) for key in unknown)}; "
            f"expected only {', '.join(allowed)}"
        )


def _metric_from_dict(data: Any, field: str) -> MetricSample:
    entry = _require_mapping(data, field)
    _reject_unknown(entry, _METRIC_KEYS, field)
    for key in ("name", "sample_mean", "sample_variance", "samples"):
        if key not in entry:
            raise InvalidInputError("is required", field=f"{field}.{key}")
    return MetricSample(
        name=entry["name"],
        sample_mean=entry["sample_mean"],
        sample_variance=entry["sample_variance"],
        samples=entry["samples"],
        alpha=entry.get("alpha"),
        k=entry.get("k"),
    )


def _sampling_method_of(data: Mapping[str, Any]) -> SamplingMethod:
    """``sampling_method``, defaulting from a risk.json's ``sampling.method``.

    An exhaustive evaluation defaults to the exhaustive bound; claiming "exhaustive"
    for statistics that risk.json says were sampled would drop a term the sampled
    mean needs, so that combination is refused.
    """
    sampling = data.get("sampling")
    evaluated = sampling.get("method") if isinstance(sampling, Mapping) else None
    if "sampling_method" in data:
        method = _method(data["sampling_method"])
        if method == "exhaustive" and evaluated is not None and evaluated != "exhaustive":
            raise InvalidInputError(
                f"is 'exhaustive' but sampling.method says the chunks were sampled "
                f"({evaluated!r}); use 'bernstein' or 'hoeffding'",
                field="sampling_method",
            )
        return method
    return "exhaustive" if evaluated == "exhaustive" else "bernstein"


def bound_input_from_dict(data: Mapping[str, Any]) -> BoundInput:
    """Parse ``certify bound``'s INPUT (or a risk.json) into a validated :class:`BoundInput`.

    Defaults: hyperparameter_configurations 1, delta 0.05, delta_split 0.5,
    sampling_method "bernstein" ("exhaustive" when a risk.json's ``sampling.method``
    is "exhaustive"), heldout false. Other keys in :data:`INFORMATIONAL_KEYS` are
    ignored; any other unknown key raises :class:`InvalidInputError`.
    """
    data = _require_mapping(data, "input")
    known = {key: value for key, value in data.items() if key not in INFORMATIONAL_KEYS}
    _reject_unknown(known, _INPUT_KEYS, None)
    for key in ("vocab_size", "n_tokens", "size_bytes", "metrics"):
        if key not in known:
            hint = " (or pass --artifact model.certz)" if key == "size_bytes" else ""
            raise InvalidInputError(f"is required{hint}", field=key)
    metrics = known["metrics"]
    if not isinstance(metrics, list):
        raise InvalidInputError("expected a list of metric objects", field="metrics")
    bound_input = BoundInput(
        vocab_size=_integer(known["vocab_size"], "vocab_size", 2),
        n_tokens=_integer(known["n_tokens"], "n_tokens", 1),
        size_bytes=_integer(known["size_bytes"], "size_bytes", 1),
        metrics=tuple(
            _metric_from_dict(entry, f"metrics[{index}]") for index, entry in enumerate(metrics)
        ),
        hyperparameter_configurations=_integer(
            known.get("hyperparameter_configurations", 1), "hyperparameter_configurations", 1
        ),
        delta=_finite(known.get("delta", 0.05), "delta"),
        delta_split=_finite(known.get("delta_split", 0.5), "delta_split"),
        sampling_method=_sampling_method_of(data),
        heldout=known.get("heldout", False),
    )
    validate_bound_input(bound_input)
    return _normalised(bound_input)


def _normalised(bound_input: BoundInput) -> BoundInput:
    """Same input with JSON numbers turned into the record's Python types."""
    metrics = tuple(
        MetricSample(
            name=metric.name,
            sample_mean=float(metric.sample_mean),
            sample_variance=float(metric.sample_variance),
            samples=_integer(metric.samples, "samples", 1),
            alpha=None if metric.alpha is None else float(metric.alpha),
            k=None if metric.k is None else _integer(metric.k, "k", 1),
        )
        for metric in bound_input.metrics
    )
    return BoundInput(
        vocab_size=bound_input.vocab_size,
        n_tokens=bound_input.n_tokens,
        size_bytes=bound_input.size_bytes,
        metrics=metrics,
        hyperparameter_configurations=bound_input.hyperparameter_configurations,
        delta=float(bound_input.delta),
        delta_split=float(bound_input.delta_split),
        sampling_method=bound_input.sampling_method,
        heldout=bound_input.heldout,
    )


def bound_input_from_result(result: BoundResult) -> BoundInput:
    """The inputs recorded in a result (to recompute it, e.g. in ``certify verify``).

    delta_split is recovered as δ_c/δ; recomputed terms may then differ from the
    recorded ones in the last few ulps, so compare with a relative tolerance.
    """
    return BoundInput(
        vocab_size=result.vocab_size,
        n_tokens=result.n_tokens,
        size_bytes=result.prior.size_bytes,
        metrics=tuple(
            MetricSample(
                name=metric.name,
                sample_mean=metric.sample_mean,
                sample_variance=metric.sample_variance,
                samples=metric.samples,
                alpha=metric.alpha,
                k=metric.k,
            )
            for metric in result.metrics
        ),
        hyperparameter_configurations=result.prior.hyperparameter_configurations,
        delta=result.delta,
        delta_split=0.5
        if result.sampling_method == "exhaustive"
        else result.delta_c / result.delta,
        sampling_method=result.sampling_method,
        heldout=result.heldout,
    )


_METRIC_OUTPUT_KEYS = (
    "name",
    "loss_min",
    "loss_range",
    "sample_mean",
    "sample_variance",
    "samples",
    "complexity_term",
    "sampling_term",
    "bound",
)


def bound_result_to_dict(result: BoundResult) -> dict[str, Any]:
    """The certificate's ``bound`` object (JSON-ready; bits entries carry alpha, top-k carry k)."""
    metrics = []
    for metric in result.metrics:
        entry: dict[str, Any] = {"name": metric.name}
        if metric.name == "bits":
            entry["alpha"] = metric.alpha
        else:
            entry["k"] = metric.k
        for key in _METRIC_OUTPUT_KEYS[1:]:
            entry[key] = getattr(metric, key)
        metrics.append(entry)
    return {
        "delta": result.delta,
        "delta_c": result.delta_c,
        "delta_s": result.delta_s,
        "heldout": result.heldout,
        "prior": {
            "size_bytes": result.prior.size_bytes,
            "hyperparameter_configurations": result.prior.hyperparameter_configurations,
            "nats": result.prior.nats,
        },
        "statements": result.statements,
        "sampling_method": result.sampling_method,
        "n_tokens": result.n_tokens,
        "vocab_size": result.vocab_size,
        "metrics": metrics,
        "summary": _json_copy(result.summary),
    }


def _json_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _json_copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_copy(item) for item in value]
    return value


_RESULT_KEYS = (
    "delta",
    "delta_c",
    "delta_s",
    "heldout",
    "prior",
    "statements",
    "sampling_method",
    "n_tokens",
    "vocab_size",
    "metrics",
    "summary",
)


def bound_result_from_dict(data: Mapping[str, Any]) -> BoundResult:
    """Read a ``bound`` object back (shape and types only; recompute to check numbers)."""
    data = _require_mapping(data, "bound")
    _reject_unknown(data, _RESULT_KEYS, "bound")
    for key in _RESULT_KEYS[:-1]:
        if key not in data:
            raise InvalidInputError("is required", field=f"bound.{key}")
    prior = _require_mapping(data["prior"], "bound.prior")
    _reject_unknown(prior, ("size_bytes", "hyperparameter_configurations", "nats"), "bound.prior")
    for key in ("size_bytes", "hyperparameter_configurations", "nats"):
        if key not in prior:
            raise InvalidInputError("is required", field=f"bound.prior.{key}")
    if not isinstance(data["metrics"], list):
        raise InvalidInputError("expected a list", field="bound.metrics")
    metrics = []
    for index, raw in enumerate(data["metrics"]):
        field = f"bound.metrics[{index}]"
        entry = _require_mapping(raw, field)
        _reject_unknown(entry, (*_METRIC_OUTPUT_KEYS, "alpha", "k"), field)
        for key in _METRIC_OUTPUT_KEYS:
            if key not in entry:
                raise InvalidInputError("is required", field=f"{field}.{key}")
        if entry["name"] not in ("bits", "top_k_error"):
            raise InvalidInputError(
                f"must be 'bits' or 'top_k_error', got {entry['name']!r}", field=f"{field}.name"
            )
        alpha = entry.get("alpha")
        k = entry.get("k")
        metrics.append(
            MetricBound(
                name=entry["name"],
                alpha=None if alpha is None else _finite(alpha, f"{field}.alpha"),
                k=None if k is None else _integer(k, f"{field}.k", 1),
                loss_min=_finite(entry["loss_min"], f"{field}.loss_min"),
                loss_range=_finite(entry["loss_range"], f"{field}.loss_range"),
                sample_mean=_finite(entry["sample_mean"], f"{field}.sample_mean"),
                sample_variance=_finite(entry["sample_variance"], f"{field}.sample_variance"),
                samples=_integer(entry["samples"], f"{field}.samples", 1),
                complexity_term=_finite(entry["complexity_term"], f"{field}.complexity_term"),
                sampling_term=_finite(entry["sampling_term"], f"{field}.sampling_term"),
                bound=_finite(entry["bound"], f"{field}.bound"),
            )
        )
    heldout = data["heldout"]
    if not isinstance(heldout, bool):
        raise InvalidInputError(f"expected true or false, got {heldout!r}", field="bound.heldout")
    summary = data.get("summary", {})
    return BoundResult(
        delta=_finite(data["delta"], "bound.delta"),
        delta_c=_finite(data["delta_c"], "bound.delta_c"),
        delta_s=_finite(data["delta_s"], "bound.delta_s"),
        heldout=heldout,
        prior=PriorRecord(
            size_bytes=_integer(prior["size_bytes"], "bound.prior.size_bytes", 1),
            hyperparameter_configurations=_integer(
                prior["hyperparameter_configurations"],
                "bound.prior.hyperparameter_configurations",
                1,
            ),
            nats=_finite(prior["nats"], "bound.prior.nats"),
        ),
        statements=_integer(data["statements"], "bound.statements", 1),
        sampling_method=_method(data["sampling_method"], "bound.sampling_method"),
        n_tokens=_integer(data["n_tokens"], "bound.n_tokens", 1),
        vocab_size=_integer(data["vocab_size"], "bound.vocab_size", 2),
        metrics=tuple(metrics),
        summary=dict(_require_mapping(summary, "bound.summary")),
    )
