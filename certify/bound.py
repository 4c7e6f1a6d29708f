"""The token-level martingale generalization bound (pure float64 math, no torch).

Implements DESIGN.md "The bound, version 2" (Lotfi et al. 2024, arXiv 2407.18158,
with an empirical Freedman form and sampled mode) and keeps version 1 for the
certificates made with it; docs/MATH.md proves every term and lists the decisions:

* ``smoothed_loss_range``  -- the interval [a, a+Δ] of the α-smoothed bits loss;
* ``prior_nats``           -- ln 1/P(h) of an artifact of ``size_bytes`` bytes;
* ``azuma_term``           -- v2 Azuma–Hoeffding term, with ln(n(n+1)) for a random n;
* ``freedman_term``        -- v2 empirical Freedman term, best λ of ``LAMBDA_GRID``;
* ``sampling_term``        -- Hoeffding / empirical Bernstein over sampled chunks;
* ``n_lower_bound``        -- sampled mode: n ≥ W·(δ_n-quantile of Beta(G, D−G+1));
* ``compute_bound``        -- every statement of a :class:`BoundInput` at once;
* ``complexity_term``      -- the version-1 Azuma term (no ln(n(n+1)));
* ``round_up`` / ``round_up_text`` / ``confidence_text`` -- published numbers.

``document_level_bound`` and ``authors_formula_bound`` exist for comparison only.
All arithmetic is plain Python floats (IEEE float64); scipy only inverts the Beta
distribution (and every result is checked against scipy's forward CDF).
``certify.bound_reference`` recomputes the same numbers independently.
"""

from __future__ import annotations

import dataclasses
import decimal
import math
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any, Literal

from certify.errors import CertifyError, InvalidInputError
from certify.records import (
    BoundInput,
    BoundResult,
    MetricBound,
    MetricSample,
    PriorRecord,
    SampledDraws,
    SamplingMethod,
)

__all__ = [
    "BOUND_VERSIONS",
    "FORMS_PER_STATEMENT",
    "INFORMATIONAL_KEYS",
    "LAMBDA_GRID",
    "SAMPLING_METHODS",
    "acceptance_lower_bound",
    "authors_formula_bound",
    "azuma_term",
    "bound_input_from_dict",
    "bound_input_from_result",
    "bound_result_from_dict",
    "bound_result_to_dict",
    "complexity_term",
    "compute_bound",
    "confidence_text",
    "document_level_bound",
    "freedman_coefficients",
    "freedman_term",
    "n_lower_bound",
    "perplexity_bound",
    "prior_nats",
    "psi",
    "round_up",
    "round_up_text",
    "sampling_term",
    "smoothed_loss_range",
    "split_delta",
    "tokens_needed",
    "validate_bound_input",
]

LN2 = math.log(2.0)
SAMPLING_METHODS: tuple[SamplingMethod, ...] = ("bernstein", "hoeffding", "exhaustive")
#: versions of the formulas: 1 (Azuma only) and 2 (DESIGN.md "The bound, version 2")
BOUND_VERSIONS: tuple[int, ...] = (1, 2)
#: Λ = {2^(−j/4) : j = 1, …, 60}, the fixed grid of the Freedman form (largest first)
LAMBDA_GRID: tuple[float, ...] = tuple(2.0 ** (-j / 4.0) for j in range(1, 61))
#: events per statement in the union of version 2: the Azuma form and one per λ
FORMS_PER_STATEMENT = len(LAMBDA_GRID) + 1
#: sampled mode's default δ_n = δ / this (DESIGN.md: δ_n = δ/10)
DEFAULT_DELTA_N_DIVISOR = 10

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
    "sampled",
    "delta_n",
    "search_scored_sample",
    "bound_version",
)
_METRIC_KEYS = (
    "name",
    "alpha",
    "k",
    "sample_mean",
    "sample_variance",
    "samples",
    "square_mean",
    "square_variance",
)
_SAMPLED_KEYS = ("total_weight", "accepted", "drawn")
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


# --------------------------------------------------------------------------- version 2 formulas


def psi(lam: float) -> float:
    """ψ(λ) = −ln(1−λ) − λ = Σ_{k≥2} λ^k/k for λ in [0, 1).

    The series for λ ≤ 1/2 avoids the cancellation of −log1p(−λ) − λ at small λ
    (relative error ≈ 2^−52/λ there); above 1/2 the direct form loses nothing.
    """
    lam = _finite(lam, "lambda")
    if not 0.0 <= lam < 1.0:
        raise InvalidInputError(f"must lie in [0, 1), got {lam!r}", field="lambda")
    if lam > 0.5:
        return -math.log1p(-lam) - lam
    total, power, order = 0.0, lam * lam, 2
    while power > 0.0:
        term = power / order
        total += term
        if term <= total * 1e-18:
            break
        power *= lam
        order += 1
    return total


#: ψ(λ) on the grid, computed once
_PSI_GRID: tuple[float, ...] = tuple(psi(lam) for lam in LAMBDA_GRID)


def _ln_events_over_delta(statement_events: int, delta_c: float) -> float:
    return math.log(_integer(statement_events, "statement_events", 1)) - math.log(
        _open_unit(delta_c, "delta_c")
    )


def _check_range_and_prior(loss_range: float, prior: float) -> tuple[float, float]:
    loss_range = _finite(loss_range, "loss_range")
    if loss_range <= 0.0:
        raise InvalidInputError(f"must be positive, got {loss_range!r}", field="loss_range")
    prior = _finite(prior, "prior_nats")
    if prior < 0.0:
        raise InvalidInputError(f"must be non-negative, got {prior!r}", field="prior_nats")
    return loss_range, prior


def azuma_term(
    loss_range: float,
    prior_nats: float,
    n_tokens: int,
    statement_events: int,
    delta_c: float,
    *,
    lower_bound: bool = False,
) -> float:
    """Version 2 Azuma form: Δ·sqrt((ln 1/P(h) + ln(n(n+1)) + ln(K_c/δ_c)) / (2n)).

    The ln(n(n+1)) pays for a random n (a union over every length m with weight
    1/(m(m+1))). With ``lower_bound`` (sampled mode, n_tokens = n_lo ≤ n) the term
    must be at least its value at the true n: (c + ln(m(m+1)))/m falls for every real
    m ≥ 2 when c ≥ 0 (docs/MATH.md), so n_lo is used as is unless n_lo = 1, where
    the larger of m = 1 and m = 2 is taken.
    """
    loss_range, prior = _check_range_and_prior(loss_range, prior_nats)
    n_tokens = _integer(n_tokens, "n_tokens", 1)
    numerator = prior + _ln_events_over_delta(statement_events, delta_c)

    def ratio(count: int) -> float:
        return (numerator + math.log(count) + math.log1p(count)) / (2.0 * count)

    value = ratio(n_tokens)
    if lower_bound and n_tokens == 1:
        value = max(value, ratio(2))
    return loss_range * math.sqrt(value)


def freedman_coefficients(
    loss_range: float, prior_nats: float, n_tokens: int, statement_events: int, delta_c: float
) -> list[tuple[float, float, float]]:
    """Per λ of ``LAMBDA_GRID``: (λ, ψ(λ)/(λΔ), Δ·(ln 1/P(h) + ln(K_c/δ_c))/(λn)).

    The Freedman term at λ is ``coefficient · W + complexity`` for an upper bound W on V̂.
    """
    loss_range, prior = _check_range_and_prior(loss_range, prior_nats)
    n_tokens = _integer(n_tokens, "n_tokens", 1)
    numerator = loss_range * (prior + _ln_events_over_delta(statement_events, delta_c))
    return [
        (lam, psi_lam / (lam * loss_range), numerator / (lam * n_tokens))
        for lam, psi_lam in zip(LAMBDA_GRID, _PSI_GRID, strict=True)
    ]


def freedman_term(
    loss_range: float,
    square_bound: float,
    prior_nats: float,
    n_tokens: int,
    statement_events: int,
    delta_c: float,
) -> tuple[float, float]:
    """(smallest term over λ ∈ Λ, its λ) of the empirical Freedman form.

    Term at λ: ψ(λ)/(λΔ)·W + Δ·(ln 1/P(h) + ln(K_c/δ_c))/(λn), with W ≥ V̂ (loss unit²).
    Ties go to the larger λ (the earlier grid entry).
    """
    square_bound = _finite(square_bound, "square_bound")
    if square_bound < 0.0:
        raise InvalidInputError(f"must be non-negative, got {square_bound!r}", field="square_bound")
    best_term, best_lambda = math.inf, LAMBDA_GRID[0]
    for lam, coefficient, complexity in freedman_coefficients(
        loss_range, prior_nats, n_tokens, statement_events, delta_c
    ):
        term = coefficient * square_bound + complexity
        if term < best_term:
            best_term, best_lambda = term, lam
    return best_term, best_lambda


def acceptance_lower_bound(accepted: int, drawn: int, delta_n: float) -> float:
    """The δ_n-quantile of Beta(G, D − G + 1): a lower confidence bound on p = n/W.

    D draws until the G-th acceptance, each accepted with probability p, give
    P(D ≤ d) = P(Binomial(d, p) ≥ G) = I_p(G, d − G + 1); the quantile is below p with
    probability ≥ 1 − δ_n (docs/MATH.md). scipy's betaincinv can be off by ~1e-12
    relative, so up to three Newton steps on scipy's forward I_x polish it, and it is
    stepped down until I_x(G, D − G + 1) ≤ δ_n holds as evaluated (never above).
    """
    from scipy import special  # heavy: only sampled mode needs it

    accepted = _integer(accepted, "sampled.accepted", 1)
    drawn = _integer(drawn, "sampled.drawn", 1)
    if drawn < accepted:
        raise InvalidInputError(
            f"must be at least sampled.accepted ({accepted}), got {drawn}",
            field="sampled.drawn",
        )
    delta_n = _open_unit(delta_n, "delta_n")
    a, b = float(accepted), float(drawn - accepted + 1)
    log_beta = float(special.betaln(a, b))
    quantile = float(special.betaincinv(a, b, delta_n))
    for _ in range(3):
        if not 0.0 < quantile < 1.0:
            break
        excess = float(special.betainc(a, b, quantile)) - delta_n
        log_density = (a - 1.0) * math.log(quantile) + (b - 1.0) * math.log1p(-quantile)
        density = math.exp(log_density - log_beta)
        if excess == 0.0 or not math.isfinite(density) or density <= 0.0:
            break
        polished = quantile - excess / density
        if not 0.0 < polished < 1.0:
            break
        quantile = polished
    for _ in range(64):
        if quantile <= 0.0 or float(special.betainc(a, b, quantile)) <= delta_n:
            break
        quantile = math.nextafter(quantile, 0.0)
    else:
        raise InvalidInputError(  # pragma: no cover - scipy would have to be badly off
            "cannot invert the Beta distribution to the required precision",
            field="sampled",
        )
    return quantile


def n_lower_bound(
    total_weight: int, accepted: int, drawn: int, delta_n: float
) -> tuple[int, float]:
    """(n_lo, quantile): n ≥ n_lo with probability ≥ 1 − δ_n in sampled mode.

    n_lo = ⌊W · B⁻¹(δ_n; G, D − G + 1)⌋, the product taken exactly (n is an integer, so
    rounding down loses nothing), and at least 1 (an accepted unit holds a token).
    """
    total_weight = _integer(total_weight, "sampled.total_weight", 1)
    quantile = acceptance_lower_bound(accepted, drawn, delta_n)
    exact = math.floor(Fraction(quantile) * total_weight)
    return max(1, exact), quantile


def split_delta(bound_input: BoundInput) -> tuple[float | None, float, float]:
    """(δ_n, δ_c, δ_s) of a version 2 input.

    δ_n (sampled mode only; default δ/10) is taken from δ first; the rest is split
    δ_c = rest·delta_split, δ_s = rest − δ_c, or δ_c = rest, δ_s = 0 when exhaustive.
    """
    delta = _open_unit(bound_input.delta, "delta")
    delta_n: float | None = None
    rest = delta
    if bound_input.sampled is not None:
        delta_n = (
            delta / DEFAULT_DELTA_N_DIVISOR
            if bound_input.delta_n is None
            else _open_unit(bound_input.delta_n, "delta_n")
        )
        if delta_n >= delta:
            raise InvalidInputError(
                f"must be below delta ({delta!r}), got {delta_n!r}", field="delta_n"
            )
        rest = delta - delta_n
    if bound_input.sampling_method == "exhaustive":
        return delta_n, rest, 0.0
    delta_c = rest * _open_unit(bound_input.delta_split, "delta_split")
    return delta_n, delta_c, rest - delta_c


# --------------------------------------------------------------------------- published numbers


def round_up_text(
    value: float, *, significant: int | None = None, decimals: int | None = None
) -> str:
    """``value`` rounded UP (toward +∞, never to nearest) as a plain decimal string.

    Give exactly one of ``significant`` (digits) or ``decimals`` (places after the
    point). The float's exact binary value is rounded, so the text is never below it:
    ``round_up_text(4.4012, significant=3) == "4.41"``, ``round_up_text(2.0,
    decimals=2) == "2.00"``.
    """
    number = _finite(value, "value")
    if (significant is None) == (decimals is None):
        raise InvalidInputError("give exactly one of significant or decimals", field="digits")
    exact = decimal.Decimal(number)
    if significant is not None:
        significant = _integer(significant, "significant", 1)
        if exact == 0:
            return "0" if significant == 1 else "0." + "0" * (significant - 1)
        places = significant - 1 - exact.adjusted()
    else:
        places = _integer(decimals, "decimals", 0)
    # enough precision that quantize never rounds on its own (a double has ≤ 767 digits)
    context = decimal.Context(prec=max(64, exact.adjusted() + places + 16))
    quantum = decimal.Decimal(1).scaleb(-places)
    rounded = exact.quantize(quantum, rounding=decimal.ROUND_CEILING, context=context)
    if significant is not None and rounded.adjusted() > exact.adjusted():
        # 9.996 → 10.00 at 3 digits: one more digit before the point, one fewer after
        rounded = rounded.quantize(
            quantum.scaleb(1), rounding=decimal.ROUND_CEILING, context=context
        )
    return format(rounded, "f")


def round_up(value: float, *, significant: int | None = None, decimals: int | None = None) -> float:
    """``round_up_text`` as a float; never below ``value`` (the nearest double to a
    decimal ≥ value is ≥ value, since value itself is a double)."""
    return float(round_up_text(value, significant=significant, decimals=decimals))


def confidence_text(delta: float) -> str:
    """1 − δ as an exact percentage: 0.05 → "95%", 1e-7 → "99.99999%" (never "100%").

    δ is read as the shortest decimal that round-trips (``repr``), i.e. as written.
    """
    delta = _open_unit(delta, "delta")
    # exact: repr has ≤ 17 digits and an exponent ≥ −324, so 1 − δ fits in 400 digits
    with decimal.localcontext(decimal.Context(prec=400)):
        percent = (decimal.Decimal(1) - decimal.Decimal(repr(delta))) * 100
        text = format(percent.normalize(), "f")
    return f"{text}%"


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


def _check_feasible_variance(
    variance: float, mean: float, low: float, high: float, samples: int, field: str, what: str
) -> None:
    # Values in [low, high] with mean m have unbiased variance ≤ (m−low)(high−m)·s/(s−1).
    feasible = (mean - low) * (high - mean) * samples / (samples - 1)
    if variance > feasible * (1.0 + _FEASIBILITY_TOLERANCE) + 1e-12 * (high - low) ** 2:
        raise InvalidInputError(
            f"{variance!r} is impossible for {samples} chunk means in "
            f"[{low!r}, {high!r}] with mean {mean!r} (at most {feasible!r}); "
            f"pass the unbiased variance of the per-chunk {what}",
            field=field,
        )


def _check_metric(
    metric: MetricSample, vocab_size: int, method: SamplingMethod, field: str, version: int = 1
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
        # (Exhaustive mode: the mean is token-weighted and the variance unused.)
        _check_feasible_variance(
            variance, mean, loss_min, loss_max, samples, f"{field}.sample_variance", "mean losses"
        )
    _check_squares(metric, loss_range, method, samples, field, version)
    return loss_min, loss_range


def _check_squares(
    metric: MetricSample,
    loss_range: float,
    method: SamplingMethod,
    samples: int,
    field: str,
    version: int,
) -> None:
    """square_mean / square_variance: both or neither, q = (l − Y)² lies in [0, Δ²]."""
    given = (metric.square_mean is not None, metric.square_variance is not None)
    if not any(given) or version == 1:
        return  # version 1 has no Freedman form: it does not read them
    if not all(given):
        missing = "square_variance" if given[0] else "square_mean"
        raise InvalidInputError(
            "is required with the other square statistic (both or neither)",
            field=f"{field}.{missing}",
        )
    square_max = loss_range * loss_range
    square_mean = _finite(metric.square_mean, f"{field}.square_mean")  # type: ignore[arg-type]
    square_variance = _finite(metric.square_variance, f"{field}.square_variance")  # type: ignore[arg-type]
    if not 0.0 <= square_mean <= square_max:
        raise InvalidInputError(
            f"must lie in [0, Δ²] = [0, {square_max!r}] (q = (loss − centre)², both in the "
            f"loss's range), got {square_mean!r}",
            field=f"{field}.square_mean",
        )
    if square_variance < 0.0:
        raise InvalidInputError(
            f"must be non-negative, got {square_variance!r}", field=f"{field}.square_variance"
        )
    if samples >= 2 and method != "exhaustive":
        _check_feasible_variance(
            square_variance,
            square_mean,
            0.0,
            square_max,
            samples,
            f"{field}.square_variance",
            "means of q",
        )


def _version(value: Any) -> int:
    if isinstance(value, bool) or value not in BOUND_VERSIONS:
        raise InvalidInputError(
            f"must be one of {', '.join(map(str, BOUND_VERSIONS))}, got {value!r}",
            field="bound_version",
        )
    return int(value)


def _check_flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(f"expected true or false, got {value!r}", field=field)
    return value


def _check_counts(bound_input: BoundInput, version: int, method: SamplingMethod) -> None:
    """n_tokens (exact) or sampled (a lower bound on n), never both."""
    sampled = bound_input.sampled
    if sampled is None:
        if bound_input.n_tokens is None:
            raise InvalidInputError(
                "is required (the exact token count), or give sampled "
                "{total_weight, accepted, drawn} for sampled mode",
                field="n_tokens",
            )
        _integer(bound_input.n_tokens, "n_tokens", 1)
        if bound_input.delta_n is not None:
            raise InvalidInputError(
                "applies only to sampled mode (with sampled {total_weight, accepted, drawn})",
                field="delta_n",
            )
        return
    if version == 1:
        raise InvalidInputError("bound_version 1 has no sampled mode", field="sampled")
    if bound_input.n_tokens is not None:
        raise InvalidInputError(
            "give either n_tokens (exact n) or sampled (a lower bound on n), not both",
            field="n_tokens",
        )
    if method == "exhaustive":
        raise InvalidInputError(
            "cannot be 'exhaustive' in sampled mode (scoring every chunk counts n exactly: "
            "give n_tokens)",
            field="sampling_method",
        )
    _integer(sampled.total_weight, "sampled.total_weight", 1)
    accepted = _integer(sampled.accepted, "sampled.accepted", 1)
    drawn = _integer(sampled.drawn, "sampled.drawn", 1)
    if drawn < accepted:
        raise InvalidInputError(
            f"must be at least sampled.accepted ({accepted}), got {drawn}",
            field="sampled.drawn",
        )


def validate_bound_input(bound_input: BoundInput) -> list[tuple[float, float]]:
    """Check every field of ``bound_input``; return (a, Δ) per metric.

    Raises :class:`InvalidInputError` naming the first offending field.
    """
    version = _version(bound_input.bound_version)
    vocab_size = _integer(bound_input.vocab_size, "vocab_size", 2)
    method = _method(bound_input.sampling_method)
    _check_counts(bound_input, version, method)
    _integer(bound_input.size_bytes, "size_bytes", 1)
    _integer(bound_input.hyperparameter_configurations, "hyperparameter_configurations", 1)
    _open_unit(bound_input.delta, "delta")
    if method != "exhaustive":
        _open_unit(bound_input.delta_split, "delta_split")
    _check_flag(bound_input.heldout, "heldout")
    if _check_flag(bound_input.search_scored_sample, "search_scored_sample") and version == 1:
        raise InvalidInputError(
            "bound_version 1 has no sampling union over a search", field="search_scored_sample"
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
        ranges.append(_check_metric(metric, vocab_size, method, field, version))
        label = _metric_label(metric)
        if label in seen:
            which = "alpha" if metric.name == "bits" else "k"
            raise InvalidInputError(
                f"duplicates metrics[{seen[label]}] ({metric.name}, {which}={label[1]!r}); "
                "each statement may appear once",
                field=f"{field}.{which}",
            )
        seen[label] = index
        if bound_input.sampled is not None and metric.samples != bound_input.sampled.accepted:
            raise InvalidInputError(
                f"must equal sampled.accepted ({bound_input.sampled.accepted}) in sampled mode "
                f"(one observation per accepted unit), got {metric.samples}",
                field=f"{field}.samples",
            )
    with_squares = [metric.square_mean is not None for metric in bound_input.metrics]
    if version == 2 and any(with_squares) and not all(with_squares):
        index = with_squares.index(False)
        raise InvalidInputError(
            "is required: give square_mean and square_variance for every metric or for none "
            "(the union counts 61 forms per statement, or 1 without them)",
            field=f"metrics[{index}].square_mean",
        )
    if version == 2:
        split_delta(bound_input)  # δ_n < δ
    return ranges


# --------------------------------------------------------------------------- the bound


def _split_delta(bound_input: BoundInput) -> tuple[float, float]:
    """Version 1: (δ_c, δ_s)."""
    if bound_input.sampling_method == "exhaustive":
        return bound_input.delta, 0.0
    delta_c = bound_input.delta * bound_input.delta_split
    return delta_c, bound_input.delta - delta_c


def compute_bound(bound_input: BoundInput) -> BoundResult:
    """Every statement of ``bound_input``; with probability ≥ 1 − δ all of them hold.

    ``bound_input.bound_version`` picks the formulas. Version 2 (the default): per
    statement the smallest of the Azuma form and the 60 Freedman forms, each
    U + term with U ≥ R̂ and W ≥ V̂ from the sampled statistics (docs/MATH.md).
    Version 1: sample_mean + sampling_term + complexity_term (Azuma only). In both,
    ``bound = sample_mean + sampling_term + complexity_term``; ``summary`` holds the
    headline (minimum bits bound over α), its perplexity bound, each top-k bound,
    vacuity flags and the authors' formula for comparison.

    The result round-trips through its JSON object (the certificate's ``bound``):

    >>> from certify.records import BoundInput, MetricSample
    >>> inputs = BoundInput(
    ...     vocab_size=32000, n_tokens=10**12, size_bytes=3 * 10**9,
    ...     metrics=(MetricSample("bits", 2.4, 0.3, 10000, alpha=0.1,
    ...                           square_mean=7.0, square_variance=1.5),))
    >>> result = compute_bound(inputs)
    >>> result.metrics[0].certified_by, round(result.metrics[0].bound, 3)
    ('freedman', 3.159)
    >>> bound_result_from_dict(bound_result_to_dict(result)) == result
    True
    """
    ranges = validate_bound_input(bound_input)
    if bound_input.bound_version == 1:
        return _compute_v1(bound_input, ranges)
    return _compute_v2(bound_input, ranges)


def _prior_record(bound_input: BoundInput) -> PriorRecord:
    return PriorRecord(
        size_bytes=int(bound_input.size_bytes),
        hyperparameter_configurations=int(bound_input.hyperparameter_configurations),
        nats=prior_nats(
            bound_input.size_bytes,
            bound_input.hyperparameter_configurations,
            bound_input.heldout,
        ),
    )


def _compute_v1(bound_input: BoundInput, ranges: list[tuple[float, float]]) -> BoundResult:
    delta_c, delta_s = _split_delta(bound_input)
    statements = len(bound_input.metrics)
    nats = prior_nats(
        bound_input.size_bytes, bound_input.hyperparameter_configurations, bound_input.heldout
    )
    n_tokens = _integer(bound_input.n_tokens, "n_tokens", 1)
    bounds = []
    for metric, (loss_min, loss_range) in zip(bound_input.metrics, ranges, strict=True):
        complexity = complexity_term(loss_range, nats, n_tokens, statements, delta_c)
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
        n_tokens=n_tokens,
        vocab_size=int(bound_input.vocab_size),
        metrics=tuple(bounds),
    )
    return dataclasses.replace(result, summary=_summary(result))


def _compute_v2(bound_input: BoundInput, ranges: list[tuple[float, float]]) -> BoundResult:
    """DESIGN.md "The bound, version 2" (docs/MATH.md proves each term)."""
    delta_n, delta_c, delta_s = split_delta(bound_input)
    method = bound_input.sampling_method
    statements = len(bound_input.metrics)
    squares = bound_input.metrics[0].square_mean is not None  # all or none (validated)
    statement_events = statements * (FORMS_PER_STATEMENT if squares else 1)
    search_share = (
        int(bound_input.hyperparameter_configurations) if bound_input.search_scored_sample else 1
    )
    sampling_events = statements * (2 if squares else 1) * search_share
    sampled = bound_input.sampled
    n_lo: int | None = None
    quantile: float | None = None
    if sampled is not None:
        n_lo, quantile = n_lower_bound(
            sampled.total_weight,
            sampled.accepted,
            sampled.drawn,
            delta_n if delta_n is not None else bound_input.delta / DEFAULT_DELTA_N_DIVISOR,
        )
        n_used = n_lo
    else:
        n_used = _integer(bound_input.n_tokens, "n_tokens", 1)
    prior = _prior_record(bound_input)
    bounds = []
    for metric, (loss_min, loss_range) in zip(bound_input.metrics, ranges, strict=True):
        mean = float(metric.sample_mean)
        sampling = (
            0.0
            if method == "exhaustive"
            else sampling_term(
                method, loss_range, metric.sample_variance, metric.samples, sampling_events, delta_s
            )
        )
        mean_bound = mean + sampling
        azuma = azuma_term(
            loss_range,
            prior.nats,
            n_used,
            statement_events,
            delta_c,
            lower_bound=sampled is not None,
        )
        azuma_value = mean_bound + azuma
        square_mean = square_variance = square_sampling = square_bound = None
        freedman_value = freedman_lambda = None
        certified_by: Literal["azuma", "freedman"] = "azuma"
        complexity, bound = azuma, azuma_value
        if squares:
            square_mean = float(metric.square_mean)  # type: ignore[arg-type]
            square_variance = float(metric.square_variance)  # type: ignore[arg-type]
            square_sampling = (
                0.0
                if method == "exhaustive"
                else sampling_term(
                    method,
                    loss_range * loss_range,
                    square_variance,
                    metric.samples,
                    sampling_events,
                    delta_s,
                )
            )
            square_bound = square_mean + square_sampling
            freedman, freedman_lambda = freedman_term(
                loss_range, square_bound, prior.nats, n_used, statement_events, delta_c
            )
            freedman_value = mean_bound + freedman
            if freedman_value < azuma_value:  # ties: the Azuma form
                complexity, bound, certified_by = freedman, freedman_value, "freedman"
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
                bound=bound,
                square_mean=square_mean,
                square_variance=square_variance,
                mean_bound=mean_bound,
                square_sampling_term=square_sampling,
                square_bound=square_bound,
                azuma=azuma_value,
                freedman=freedman_value,
                freedman_lambda=freedman_lambda,
                certified_by=certified_by,
            )
        )
    result = BoundResult(
        delta=float(bound_input.delta),
        delta_c=delta_c,
        delta_s=delta_s,
        heldout=bound_input.heldout,
        prior=prior,
        statements=statements,
        sampling_method=method,
        n_tokens=None if sampled is not None else n_used,
        vocab_size=int(bound_input.vocab_size),
        metrics=tuple(bounds),
        bound_version=2,
        delta_n=delta_n,
        statement_events=statement_events,
        sampling_events=sampling_events,
        search_scored_sample=bound_input.search_scored_sample,
        sampled=None
        if sampled is None
        else SampledDraws(int(sampled.total_weight), int(sampled.accepted), int(sampled.drawn)),
        acceptance_lower_bound=quantile,
        n_lower_bound=n_lo,
    )
    return dataclasses.replace(result, summary=_summary(result))


def martingale_tokens(result: BoundResult) -> int:
    """The n of every martingale term: n_tokens, or n_lower_bound in sampled mode."""
    if result.n_tokens is not None:
        return result.n_tokens
    if result.n_lower_bound is None:
        raise InvalidInputError("needs n_tokens or n_lower_bound", field="bound.n_tokens")
    return result.n_lower_bound


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
    version_2 = result.bound_version >= 2
    if version_2:
        summary["certified_by"] = None
        summary["azuma_bits_per_token_bound"] = None
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
        if version_2:
            summary["certified_by"] = best.certified_by
            # what the Azuma form alone would certify, to show what the Freedman form adds
            summary["azuma_bits_per_token_bound"] = min(
                metric.azuma for metric in bits if metric.azuma is not None
            )
    for metric in result.metrics:
        if metric.name == "top_k_error" and metric.k is not None:
            uniform_error = 1.0 - metric.k / result.vocab_size
            entry: dict[str, Any] = {
                "k": metric.k,
                "bound": metric.bound,
                "empirical": metric.sample_mean,
                "uniform_error": uniform_error,
                "vacuous": metric.bound >= uniform_error,
            }
            if version_2:
                entry["certified_by"] = metric.certified_by
            summary["top_k"].append(entry)
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
    n_tokens = martingale_tokens(result)
    per_metric = []
    for metric in result.metrics:
        bound = authors_formula_bound(
            metric.sample_mean,
            metric.loss_range,
            result.prior.size_bytes,
            n_tokens,
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
    note = (
        "Lotfi et al.'s published formula (r = s/(s+n), one Hoeffding term per part) "
        "on the same statistics, with C = 8·size_bytes bits and extra_bits = "
        "log2 K + log2 H; for comparison only"
    )
    if result.n_tokens is None:
        note += "; n = n_lower_bound (sampled mode)"
    return {
        "authors_formula": {
            "extra_bits": extra_bits,
            "size_bits": 8 * result.prior.size_bytes,
            "bits_per_token_bound": min(bits_bounds) if bits_bounds else None,
            "metrics": per_metric,
        },
        "note": note,
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
        square_mean=entry.get("square_mean"),
        square_variance=entry.get("square_variance"),
    )


def _sampled_from_dict(data: Any, field: str = "sampled") -> SampledDraws | None:
    if data is None:
        return None
    entry = _require_mapping(data, field)
    _reject_unknown(entry, _SAMPLED_KEYS, field)
    for key in _SAMPLED_KEYS:
        if key not in entry:
            raise InvalidInputError("is required", field=f"{field}.{key}")
    return SampledDraws(
        total_weight=_integer(entry["total_weight"], f"{field}.total_weight", 1),
        accepted=_integer(entry["accepted"], f"{field}.accepted", 1),
        drawn=_integer(entry["drawn"], f"{field}.drawn", 1),
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

    Defaults: bound_version 2, hyperparameter_configurations 1, delta 0.05,
    delta_split 0.5, sampling_method "bernstein" ("exhaustive" when a risk.json's
    ``sampling.method`` is "exhaustive"), heldout false, search_scored_sample false;
    in sampled mode (``sampled`` instead of ``n_tokens``) delta_n δ/10. Other keys in
    :data:`INFORMATIONAL_KEYS` are ignored; any other unknown key raises
    :class:`InvalidInputError`.
    """
    data = _require_mapping(data, "input")
    known = {key: value for key, value in data.items() if key not in INFORMATIONAL_KEYS}
    _reject_unknown(known, _INPUT_KEYS, None)
    sampled = _sampled_from_dict(known.get("sampled"))
    required = ("vocab_size", "size_bytes", "metrics")
    for key in ("vocab_size", "n_tokens", "size_bytes", "metrics"):
        if key == "n_tokens" and sampled is None and known.get(key) is None:
            raise InvalidInputError(
                "is required (the exact token count), or give sampled "
                "{total_weight, accepted, drawn} for sampled mode",
                field=key,
            )
        if key in required and key not in known:
            hint = " (or pass --artifact model.certz)" if key == "size_bytes" else ""
            raise InvalidInputError(f"is required{hint}", field=key)
    metrics = known["metrics"]
    if not isinstance(metrics, list):
        raise InvalidInputError("expected a list of metric objects", field="metrics")
    n_tokens = known.get("n_tokens")
    delta_n = known.get("delta_n")
    bound_input = BoundInput(
        vocab_size=_integer(known["vocab_size"], "vocab_size", 2),
        n_tokens=None if n_tokens is None else _integer(n_tokens, "n_tokens", 1),
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
        sampled=sampled,
        delta_n=None if delta_n is None else _finite(delta_n, "delta_n"),
        search_scored_sample=known.get("search_scored_sample", False),
        bound_version=_version(known.get("bound_version", 2)),
    )
    validate_bound_input(bound_input)
    return _normalised(bound_input)


def _optional_float(value: float | None) -> float | None:
    return None if value is None else float(value)


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
            square_mean=_optional_float(metric.square_mean),
            square_variance=_optional_float(metric.square_variance),
        )
        for metric in bound_input.metrics
    )
    return dataclasses.replace(
        bound_input,
        metrics=metrics,
        delta=float(bound_input.delta),
        delta_split=float(bound_input.delta_split),
        delta_n=_optional_float(bound_input.delta_n),
    )


def bound_input_from_result(result: BoundResult) -> BoundInput:
    """The inputs recorded in a result (to recompute it, e.g. in ``certify verify``).

    Carries the result's ``bound_version`` (a version-1 result recomputes with the
    version-1 formulas). delta_split is recovered as δ_c/(δ − δ_n); recomputed terms
    may then differ from the recorded ones in the last few ulps, so compare with a
    relative tolerance.
    """
    rest = result.delta - (result.delta_n or 0.0)
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
                square_mean=metric.square_mean,
                square_variance=metric.square_variance,
            )
            for metric in result.metrics
        ),
        hyperparameter_configurations=result.prior.hyperparameter_configurations,
        delta=result.delta,
        delta_split=0.5 if result.sampling_method == "exhaustive" else result.delta_c / rest,
        sampling_method=result.sampling_method,
        heldout=result.heldout,
        sampled=result.sampled,
        delta_n=result.delta_n,
        search_scored_sample=result.search_scored_sample,
        bound_version=result.bound_version,
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
#: version 2 metric keys after name and alpha/k, in output order (JSON = record fields)
_METRIC_OUTPUT_KEYS_V2 = (
    "loss_min",
    "loss_range",
    "sample_mean",
    "sample_variance",
    "samples",
    "square_mean",
    "square_variance",
    "sampling_term",
    "mean_bound",
    "square_sampling_term",
    "square_bound",
    "azuma",
    "freedman",
    "freedman_lambda",
    "certified_by",
    "complexity_term",
    "bound",
)


def bound_result_to_dict(result: BoundResult) -> dict[str, Any]:
    """The certificate's ``bound`` object (JSON-ready; bits entries carry alpha, top-k carry k).

    A version-1 result gives exactly the version-1 object (no ``bound_version`` key);
    version 2 adds the keys docs/MATH.md "The bound object" lists, null where unused.
    """
    if result.bound_version == 1:
        return _result_to_dict_v1(result)
    metrics = []
    for metric in result.metrics:
        entry: dict[str, Any] = {"name": metric.name}
        if metric.name == "bits":
            entry["alpha"] = metric.alpha
        else:
            entry["k"] = metric.k
        for key in _METRIC_OUTPUT_KEYS_V2:
            entry[key] = getattr(metric, key)
        metrics.append(entry)
    sampled = result.sampled
    return {
        "bound_version": result.bound_version,
        "delta": result.delta,
        "delta_n": result.delta_n,
        "delta_c": result.delta_c,
        "delta_s": result.delta_s,
        "heldout": result.heldout,
        "search_scored_sample": result.search_scored_sample,
        "prior": {
            "size_bytes": result.prior.size_bytes,
            "hyperparameter_configurations": result.prior.hyperparameter_configurations,
            "nats": result.prior.nats,
        },
        "statements": result.statements,
        "statement_events": result.statement_events,
        "sampling_events": result.sampling_events,
        "sampling_method": result.sampling_method,
        "n_tokens": result.n_tokens,
        "sampled": None
        if sampled is None
        else {
            "total_weight": sampled.total_weight,
            "accepted": sampled.accepted,
            "drawn": sampled.drawn,
        },
        "acceptance_lower_bound": result.acceptance_lower_bound,
        "n_lower_bound": result.n_lower_bound,
        "vocab_size": result.vocab_size,
        "metrics": metrics,
        "summary": _json_copy(result.summary),
    }


def _result_to_dict_v1(result: BoundResult) -> dict[str, Any]:
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
_RESULT_KEYS_V2 = (
    "bound_version",
    "delta",
    "delta_n",
    "delta_c",
    "delta_s",
    "heldout",
    "search_scored_sample",
    "prior",
    "statements",
    "statement_events",
    "sampling_events",
    "sampling_method",
    "n_tokens",
    "sampled",
    "acceptance_lower_bound",
    "n_lower_bound",
    "vocab_size",
    "metrics",
    "summary",
)


def _optional(value: Any, parse: Any, *args: Any) -> Any:
    return None if value is None else parse(value, *args)


def _metric_bound_from_dict(raw: Any, field: str, version: int) -> MetricBound:
    entry = _require_mapping(raw, field)
    keys = _METRIC_OUTPUT_KEYS if version == 1 else ("name", *_METRIC_OUTPUT_KEYS_V2)
    _reject_unknown(entry, (*keys, "alpha", "k"), field)
    for key in keys:
        if key not in entry:
            raise InvalidInputError("is required", field=f"{field}.{key}")
    if entry["name"] not in ("bits", "top_k_error"):
        raise InvalidInputError(
            f"must be 'bits' or 'top_k_error', got {entry['name']!r}", field=f"{field}.name"
        )
    alpha = entry.get("alpha")
    k = entry.get("k")
    metric = MetricBound(
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
    if version == 1:
        return metric
    certified_by = entry["certified_by"]
    if certified_by not in ("azuma", "freedman"):
        raise InvalidInputError(
            f"must be 'azuma' or 'freedman', got {certified_by!r}", field=f"{field}.certified_by"
        )
    floats = {
        key: _optional(entry[key], _finite, f"{field}.{key}")
        for key in (
            "square_mean",
            "square_variance",
            "square_sampling_term",
            "square_bound",
            "freedman",
            "freedman_lambda",
        )
    }
    return dataclasses.replace(
        metric,
        mean_bound=_finite(entry["mean_bound"], f"{field}.mean_bound"),
        azuma=_finite(entry["azuma"], f"{field}.azuma"),
        certified_by=certified_by,
        **floats,
    )


def bound_result_from_dict(data: Mapping[str, Any]) -> BoundResult:
    """Read a ``bound`` object back (shape and types only; recompute to check numbers).

    Without ``bound_version`` it is a version-1 object (exactly the version-1 keys).
    """
    data = _require_mapping(data, "bound")
    version = 1 if "bound_version" not in data else _version(data["bound_version"])
    if "bound_version" in data and version == 1:
        raise InvalidInputError(
            "a version-1 bound object has no bound_version key", field="bound.bound_version"
        )
    keys = _RESULT_KEYS if version == 1 else _RESULT_KEYS_V2
    _reject_unknown(data, keys, "bound")
    for key in keys:
        if key not in data and key != "summary":
            raise InvalidInputError("is required", field=f"bound.{key}")
    prior = _require_mapping(data["prior"], "bound.prior")
    _reject_unknown(prior, ("size_bytes", "hyperparameter_configurations", "nats"), "bound.prior")
    for key in ("size_bytes", "hyperparameter_configurations", "nats"):
        if key not in prior:
            raise InvalidInputError("is required", field=f"bound.prior.{key}")
    if not isinstance(data["metrics"], list):
        raise InvalidInputError("expected a list", field="bound.metrics")
    metrics = tuple(
        _metric_bound_from_dict(raw, f"bound.metrics[{index}]", version)
        for index, raw in enumerate(data["metrics"])
    )
    heldout = data["heldout"]
    if not isinstance(heldout, bool):
        raise InvalidInputError(f"expected true or false, got {heldout!r}", field="bound.heldout")
    summary = data.get("summary", {})
    result = BoundResult(
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
        n_tokens=_optional(data["n_tokens"], _integer, "bound.n_tokens", 1)
        if version == 2
        else _integer(data["n_tokens"], "bound.n_tokens", 1),
        vocab_size=_integer(data["vocab_size"], "bound.vocab_size", 2),
        metrics=metrics,
        summary=dict(_require_mapping(summary, "bound.summary")),
    )
    if version == 1:
        return result
    return dataclasses.replace(
        result,
        bound_version=version,
        delta_n=_optional(data["delta_n"], _finite, "bound.delta_n"),
        statement_events=_integer(data["statement_events"], "bound.statement_events", 1),
        sampling_events=_integer(data["sampling_events"], "bound.sampling_events", 1),
        search_scored_sample=_check_flag(
            data["search_scored_sample"], "bound.search_scored_sample"
        ),
        sampled=_sampled_from_dict(data["sampled"], "bound.sampled"),
        acceptance_lower_bound=_optional(
            data["acceptance_lower_bound"], _finite, "bound.acceptance_lower_bound"
        ),
        n_lower_bound=_optional(data["n_lower_bound"], _integer, "bound.n_lower_bound", 1),
    )


def tokens_needed(
    bound_at: Callable[[int], float],
    target_bits: float,
    *,
    strict: bool = False,
    min_tokens: int = 1,
    max_tokens: int = 10**40,
) -> int | None:
    """The smallest n in [``min_tokens``, ``max_tokens``] with ``bound_at(n) ≤ target_bits``
    (``<`` if ``strict``), or None when even ``max_tokens`` does not reach it.

    ``certify plan`` and the model card's "n needed" both use it. Doubling from
    ``min_tokens``, then integer bisection. The bound must not increase with n
    (DESIGN.md: (c + ln(n(n+1)))/(2n) and c/(λn) fall as n grows); every probe checks it
    against the probes around it and raises :class:`CertifyError` if it does not hold.
    """

    def meets(value: float) -> bool:
        return value < target_bits if strict else value <= target_bits

    probes: list[tuple[int, float]] = []

    def probe(n: int) -> float:
        value = bound_at(n)
        for other, other_value in probes:
            tolerance = 1e-9 * max(1.0, abs(other_value))
            if (other < n and value > other_value + tolerance) or (
                other > n and value < other_value - tolerance
            ):
                raise CertifyError(
                    f"the bound is not monotone in n ({other}: {other_value!r}, {n}: {value!r}); "
                    "this is a bug in certify"
                )
        probes.append((n, value))
        return value

    if not meets(probe(max_tokens)):
        return None
    # invariant: bound_at(low) misses (or low is below min_tokens), bound_at(high) meets
    low, high = min_tokens - 1, min_tokens
    while high < max_tokens and not meets(probe(high)):
        low, high = high, min(2 * high, max_tokens)
    while high - low > 1:
        middle = (low + high) // 2
        if meets(probe(middle)):
            high = middle
        else:
            low = middle
    return high
