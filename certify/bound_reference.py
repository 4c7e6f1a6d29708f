"""A second, minimal implementation of the bound, written independently of bound.py.

``certify verify`` recomputes a certificate's ``bound`` object twice: once with
``certify.bound`` (the code that made it) and once with this module, which shares no
code with it: it reads the recorded inputs from the plain JSON object, recomputes
every derived number from DESIGN.md's formulas directly (plain Python floats, no
numpy, no scipy), and inverts the Beta distribution of sampled mode by bisection on
the exact binomial identity

    P(Beta(G, D − G + 1) ≤ x) = P(Binomial(D, x) ≥ G),

summing the binomial tail term by term in log space. Where bound.py uses a series,
a library call or a closed form, this module deliberately takes another route to the
same value (ψ always by its series, Δ as a difference of logarithms, λ through exp),
so that a slip in one is unlikely to be repeated in the other.

Public: :func:`reference_bound` (the recomputed numbers) and
:func:`reference_mismatches` (recorded vs recomputed, as readable lines).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from certify.errors import InvalidInputError

__all__ = ["beta_lower_quantile", "reference_bound", "reference_mismatches"]

#: relative tolerance for recorded vs recomputed numbers (both are float64 throughout)
RELATIVE_TOLERANCE = 1e-12
_GRID_SIZE = 60  # λ_j = 2^(−j/4), j = 1..60
_LOG2 = math.log(2.0)


def _number(data: Mapping[str, Any], key: str, where: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInputError(f"expected a finite number, got {value!r}", field=f"{where}{key}")
    return float(value)


def _count(data: Mapping[str, Any], key: str, where: str, minimum: int = 1) -> int:
    value = data.get(key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(
            f"expected an integer ≥ {minimum}, got {value!r}", field=f"{where}{key}"
        )
    return value


# --------------------------------------------------------------------------- sampled mode


def _log_upper_binomial_tail(drawn: int, accepted: int, x: float, log_choose: float) -> float:
    """ln P(Binomial(drawn, x) ≥ accepted), for 0 < x < 1, summed term by term."""
    log_first = log_choose + accepted * math.log(x) + (drawn - accepted) * math.log1p(-x)
    odds = x / (1.0 - x)
    total, term = 1.0, 1.0  # terms relative to the first one, P(X = accepted)
    for successes in range(accepted, drawn):
        term *= (drawn - successes) / (successes + 1) * odds
        total += term
        if term < total * 1e-18:
            break
    return log_first + math.log(total)


def beta_lower_quantile(accepted: int, drawn: int, level: float) -> float:
    """The largest x (to float precision) with P(Beta(G, D − G + 1) ≤ x) ≤ ``level``.

    Bisection on P(Binomial(D, x) ≥ G) ≤ level. When level < 1/2 the answer is below
    G/D: the binomial median at x = G/D is G, so the tail there is ≥ 1/2.
    """
    if not 1 <= accepted <= drawn:
        raise InvalidInputError(f"needs 1 ≤ accepted ≤ drawn, got {accepted}, {drawn}")
    if not 0.0 < level < 1.0:
        raise InvalidInputError(f"needs 0 < level < 1, got {level!r}")
    log_choose = math.log(math.comb(drawn, accepted))
    log_level = math.log(level)
    low, high = 0.0, (accepted / drawn if level < 0.5 else 1.0)
    while True:
        middle = (low + high) / 2.0
        if middle <= low or middle >= high:
            return low
        if _log_upper_binomial_tail(drawn, accepted, middle, log_choose) <= log_level:
            low = middle
        else:
            high = middle


# --------------------------------------------------------------------------- the formulas


def _loss_interval(metric: Mapping[str, Any], vocab_size: int, where: str) -> tuple[float, float]:
    """(a, Δ) of a statement: bits at α: a = −log2(1 − α(V−1)/V), Δ = log2((α + (1−α)V)/α)."""
    if metric.get("name") == "bits":
        alpha = _number(metric, "alpha", where)
        loss_min = -math.log1p(-alpha * (vocab_size - 1) / vocab_size) / _LOG2
        loss_range = math.log2(alpha + (1.0 - alpha) * vocab_size) - math.log2(alpha)
        return loss_min, loss_range
    if metric.get("name") == "top_k_error":
        return 0.0, 1.0
    raise InvalidInputError(f"unknown statement {metric.get('name')!r}", field=f"{where}name")


def _psi(lam: float) -> float:
    """ψ(λ) = Σ_{k≥2} λ^k / k (= −ln(1−λ) − λ), summed until the terms vanish."""
    total, power, order = 0.0, lam, 1
    while True:
        power *= lam
        order += 1
        term = power / order
        total += term
        if term < total * 1e-18:
            return total


def _upper_mean(
    method: str, mean: float, variance: float, samples: int, value_range: float, ln_inverse: float
) -> float:
    """Upper bound on a full-data mean from ``samples`` i.i.d. observations; ln(1/d) given."""
    if method == "exhaustive":
        return mean
    if method == "hoeffding":
        return mean + value_range * math.sqrt(ln_inverse / (2 * samples))
    if method == "bernstein":
        ln_two = ln_inverse + _LOG2
        return (
            mean
            + math.sqrt(2 * variance * ln_two / samples)
            + 7 * value_range * ln_two / (3 * (samples - 1))
        )
    raise InvalidInputError(f"unknown sampling method {method!r}", field="sampling_method")


def reference_bound(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """Recompute every statement of a certificate's ``bound`` object from its inputs.

    Reads only the inputs (bound_version, δ, δ_n, δ_c, δ_s, heldout,
    search_scored_sample, prior size and configurations, sampling_method, n_tokens or
    sampled, vocab_size, and per metric name, α or k, the sample statistics and the
    square statistics); everything else is recomputed. Returns the recomputed numbers
    in the shape of the ``bound`` object (``metrics`` in the same order).
    """
    version = recorded.get("bound_version", 1)
    if version not in (1, 2) or isinstance(version, bool):
        raise InvalidInputError(f"unknown bound_version {version!r}", field="bound.bound_version")
    where = "bound."
    delta = _number(recorded, "delta", where)
    delta_c = _number(recorded, "delta_c", where)
    delta_s = _number(recorded, "delta_s", where)
    delta_n = 0.0 if recorded.get("delta_n") is None else _number(recorded, "delta_n", where)
    if delta_n + delta_c + delta_s > delta * (1 + RELATIVE_TOLERANCE):
        raise InvalidInputError(
            f"δ_n + δ_c + δ_s = {delta_n + delta_c + delta_s!r} exceeds δ = {delta!r}",
            field="bound.delta",
        )
    method = str(recorded.get("sampling_method"))
    prior = recorded.get("prior")
    if not isinstance(prior, Mapping):
        raise InvalidInputError("expected an object", field="bound.prior")
    size_bytes = _count(prior, "size_bytes", "bound.prior.")
    configurations = _count(prior, "hyperparameter_configurations", "bound.prior.")
    if recorded.get("heldout") is True:
        prior_nats = math.log(configurations)
    else:
        prior_nats = (
            8 * size_bytes * _LOG2
            + math.log(size_bytes * (size_bytes + 1))
            + math.log(configurations)
        )
    vocab_size = _count(recorded, "vocab_size", where, 2)
    metrics = recorded.get("metrics")
    if not isinstance(metrics, list) or not metrics:
        raise InvalidInputError("expected a non-empty list", field="bound.metrics")
    statements = len(metrics)
    squares = version == 2 and all(metric.get("square_mean") is not None for metric in metrics)

    sampled = recorded.get("sampled") if version == 2 else None
    n_lower = quantile = None
    if isinstance(sampled, Mapping):
        quantile = beta_lower_quantile(
            _count(sampled, "accepted", "bound.sampled."),
            _count(sampled, "drawn", "bound.sampled."),
            delta_n,
        )
        weight = _count(sampled, "total_weight", "bound.sampled.")
        n_lower = max(1, math.floor(Fraction(quantile) * weight))
        n = n_lower
    else:
        n = _count(recorded, "n_tokens", where)

    if version == 1:
        events = sampling_events = statements
    else:
        events = statements * (_GRID_SIZE + 1 if squares else 1)
        search = configurations if recorded.get("search_scored_sample") is True else 1
        sampling_events = statements * (2 if squares else 1) * search
    ln_events = math.log(events / delta_c)
    ln_sampling = math.log(sampling_events / delta_s) if method != "exhaustive" else 0.0

    out_metrics = []
    for index, metric in enumerate(metrics):
        at = f"bound.metrics[{index}]."
        loss_min, loss_range = _loss_interval(metric, vocab_size, at)
        mean = _number(metric, "sample_mean", at)
        samples = _count(metric, "samples", at)
        mean_bound = _upper_mean(
            method, mean, _number(metric, "sample_variance", at), samples, loss_range, ln_sampling
        )
        entry: dict[str, Any] = {
            "name": metric.get("name"),
            "loss_min": loss_min,
            "loss_range": loss_range,
            "mean_bound": mean_bound,
            "sampling_term": mean_bound - mean,
        }
        if version == 1:
            complexity = loss_range * math.sqrt((prior_nats + ln_events) / (2 * n))
            entry.update(complexity_term=complexity, bound=mean_bound + complexity)
            out_metrics.append(entry)
            continue
        numerator = prior_nats + ln_events

        def azuma_ratio(count: int, numerator: float = numerator) -> float:
            return (numerator + math.log(count * (count + 1))) / (2 * count)

        ratio = azuma_ratio(n)
        if n_lower is not None and n == 1:
            ratio = max(ratio, azuma_ratio(2))  # the term is largest at n = 2 when n_lo = 1
        azuma = loss_range * math.sqrt(ratio)
        entry.update(azuma=mean_bound + azuma, square_bound=None, freedman=None)
        entry.update(freedman_lambda=None, certified_by="azuma", complexity_term=azuma)
        entry["bound"] = mean_bound + azuma
        if squares:
            square_bound = _upper_mean(
                method,
                _number(metric, "square_mean", at),
                _number(metric, "square_variance", at),
                samples,
                loss_range**2,
                ln_sampling,
            )
            best, best_lambda = math.inf, 0.0
            for j in range(1, _GRID_SIZE + 1):
                lam = math.exp(-j * _LOG2 / 4)
                term = _psi(lam) * square_bound / (lam * loss_range) + loss_range * numerator / (
                    lam * n
                )
                if term < best:
                    best, best_lambda = term, lam
            entry.update(square_bound=square_bound, freedman=mean_bound + best)
            entry["freedman_lambda"] = best_lambda
            if mean_bound + best < mean_bound + azuma:
                entry.update(certified_by="freedman", complexity_term=best)
                entry["bound"] = mean_bound + best
        out_metrics.append(entry)
    return {
        "bound_version": version,
        "prior_nats": prior_nats,
        "statement_events": events,
        "sampling_events": sampling_events,
        "n": n,
        "n_lower_bound": n_lower,
        "acceptance_lower_bound": quantile,
        "metrics": out_metrics,
    }


# --------------------------------------------------------------------------- comparison


def _close(recorded: Any, recomputed: float, tolerance: float) -> bool:
    if isinstance(recorded, bool) or not isinstance(recorded, int | float):
        return False
    scale = max(abs(float(recorded)), abs(recomputed))
    return abs(float(recorded) - recomputed) <= tolerance * scale


def reference_mismatches(
    recorded: Mapping[str, Any], tolerance: float = RELATIVE_TOLERANCE
) -> list[str]:
    """Every recorded number of a ``bound`` object that the reference does not reproduce.

    An empty list means the recorded prior, event counts, n lower bound, loss ranges,
    U, W, each form, the winning form and every bound agree within ``tolerance``
    (relative; n_lower_bound may differ by one token, where the two quantiles straddle
    an integer) and the headline is the smallest bits bound.
    """
    try:
        again = reference_bound(recorded)
    except InvalidInputError as error:
        return [f"the recorded inputs cannot be recomputed: {error}"]
    problems = []

    def check(path: str, value: Any, expected: float | None) -> None:
        if expected is None:
            if value is not None:
                problems.append(f"{path} = {value!r}, recomputed null")
        elif not _close(value, expected, tolerance):
            problems.append(f"{path} = {value!r}, recomputed {expected!r}")

    prior = recorded.get("prior") or {}
    check("bound.prior.nats", prior.get("nats"), again["prior_nats"])
    if again["bound_version"] == 2:
        for key in ("statement_events", "sampling_events"):
            if recorded.get(key) != again[key]:
                problems.append(f"bound.{key} = {recorded.get(key)!r}, recomputed {again[key]!r}")
        check(
            "bound.acceptance_lower_bound",
            recorded.get("acceptance_lower_bound"),
            again["acceptance_lower_bound"],
        )
        lower = recorded.get("n_lower_bound")
        expected = again["n_lower_bound"]
        if (lower is None) != (expected is None) or (
            expected is not None
            and (not isinstance(lower, int) or isinstance(lower, bool) or abs(lower - expected) > 1)
        ):
            problems.append(f"bound.n_lower_bound = {lower!r}, recomputed {expected!r}")
    keys_v1 = ("loss_min", "loss_range", "sampling_term", "complexity_term", "bound")
    keys_v2 = (*keys_v1, "mean_bound", "square_bound", "azuma", "freedman", "freedman_lambda")
    for index, (metric, expected_metric) in enumerate(
        zip(recorded.get("metrics") or [], again["metrics"], strict=False)
    ):
        path = f"bound.metrics[{index}]"
        for key in keys_v1 if again["bound_version"] == 1 else keys_v2:
            if key in ("sampling_term", "complexity_term", "loss_min"):
                # differences and tiny values: compare on the scale of the bound
                scale = max(abs(expected_metric["bound"]), 1e-300)
                value = metric.get(key)
                if not (
                    isinstance(value, int | float)
                    and not isinstance(value, bool)
                    and abs(value - expected_metric[key]) <= tolerance * scale
                ):
                    problems.append(
                        f"{path}.{key} = {value!r}, recomputed {expected_metric[key]!r}"
                    )
                continue
            check(f"{path}.{key}", metric.get(key), expected_metric[key])
        if again["bound_version"] == 2:
            winner = metric.get("certified_by")
            forms = (expected_metric["azuma"], expected_metric["freedman"])
            tie = forms[1] is not None and _close(forms[0], forms[1], tolerance)
            if winner != expected_metric["certified_by"] and not tie:
                problems.append(
                    f"{path}.certified_by = {winner!r}, recomputed "
                    f"{expected_metric['certified_by']!r}"
                )
    bits = [m["bound"] for m in again["metrics"] if m["name"] == "bits"]
    headline = (recorded.get("summary") or {}).get("bits_per_token_bound")
    if bits and headline is not None:
        check("bound.summary.bits_per_token_bound", headline, min(bits))
    return problems
