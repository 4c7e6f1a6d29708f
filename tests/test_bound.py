"""certify.bound: hand-computed values, properties, coverage by simulation, parsing, CLI.

Version 1 (Azuma only) keeps its tests and its golden file; version 2 (DESIGN.md "The
bound, version 2": Azuma with ln(n(n+1)), the empirical Freedman form, W ≥ V̂, sampled
mode's n_lo) has its own sections below. The agreement of bound.py with the
independent implementation lives in tests/test_bound_reference.py.
"""

from __future__ import annotations

import dataclasses
import decimal
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certify.bound import (
    FORMS_PER_STATEMENT,
    LAMBDA_GRID,
    acceptance_lower_bound,
    authors_formula_bound,
    azuma_term,
    bound_input_from_dict,
    bound_input_from_result,
    bound_result_from_dict,
    bound_result_to_dict,
    complexity_term,
    compute_bound,
    confidence_text,
    document_level_bound,
    freedman_coefficients,
    freedman_term,
    n_lower_bound,
    perplexity_bound,
    prior_nats,
    psi,
    round_up,
    round_up_text,
    sampling_term,
    smoothed_loss_range,
)
from certify.cli import run_cli
from certify.errors import InvalidInputError
from certify.records import (
    BoundInput,
    MetricSample,
    RiskRecord,
    SampledDraws,
    SamplingRecord,
    to_dict,
)

LN2 = math.log(2.0)
FIXTURES = Path(__file__).parent / "fixtures" / "bound"


def example_input(**overrides: Any) -> dict[str, Any]:
    """A realistic INPUT.json: two bits metrics and one top-1 error."""
    data: dict[str, Any] = {
        "vocab_size": 32000,
        "n_tokens": 5_000_000,
        "size_bytes": 12_345,
        "metrics": [
            {
                "name": "bits",
                "alpha": 0.01,
                "sample_mean": 3.2,
                "sample_variance": 0.5,
                "samples": 200,
            },
            {
                "name": "bits",
                "alpha": 0.1,
                "sample_mean": 3.5,
                "sample_variance": 0.4,
                "samples": 200,
            },
            {
                "name": "top_k_error",
                "k": 1,
                "sample_mean": 0.55,
                "sample_variance": 0.01,
                "samples": 200,
            },
        ],
    }
    data.update(overrides)
    return data


# --------------------------------------------------------------------------- hand-computed values


def test_smoothed_loss_range_by_hand() -> None:
    # α = 0.5, V = 2: a = −log2(1 − 0.5 + 0.5/2) = −log2(0.75) = 0.41503749927884376
    #                 Δ = log2(1 + 0.5·2/0.5) = log2(3) = 1.584962500721156
    loss_min, loss_range = smoothed_loss_range(0.5, 2)
    assert loss_min == pytest.approx(0.41503749927884376, rel=1e-15)
    assert loss_range == pytest.approx(1.584962500721156, rel=1e-15)
    # the top of the range is −log2(α/V) = −log2(0.25) = 2
    assert loss_min + loss_range == pytest.approx(2.0, rel=1e-15)
    # α = 0.1, V = 10: a = −log2(0.91), Δ = log2(1 + 0.9·10/0.1) = log2(91); a + Δ = log2(100)
    loss_min, loss_range = smoothed_loss_range(0.1, 10)
    assert loss_min == pytest.approx(-math.log2(0.91), rel=1e-14)
    assert loss_range == pytest.approx(math.log2(91.0), rel=1e-15)
    assert loss_min + loss_range == pytest.approx(math.log2(100.0), rel=1e-15)


def test_smoothed_loss_range_tiny_alpha_is_accurate() -> None:
    # α = 1e-12, V = 32000: a = −log2(1 − α(1 − 1/V)) ≈ α(1 − 1/V)/ln 2 = 1.4426499...e-12.
    # Naive −log2(1 − α + α/V) loses most digits here; log1p keeps them.
    loss_min, loss_range = smoothed_loss_range(1e-12, 32000)
    assert loss_min == pytest.approx(1e-12 * (1 - 1 / 32000) / LN2, rel=1e-9)
    # Δ = log2(1 + (1 − 1e-12)·32000/1e-12) ≈ log2(3.2e16) = 54.828...
    assert loss_range == pytest.approx(math.log2(3.2e16), rel=1e-12)


def test_prior_nats_by_hand() -> None:
    # B = 1, H = 1: 8·ln2 + ln(1·2) + ln 1 = 9·ln2 = 6.238324625039508
    assert prior_nats(1) == pytest.approx(9 * LN2, rel=1e-15)
    assert prior_nats(1) == pytest.approx(6.238324625039508, rel=1e-15)
    # B = 1000, H = 4: 8000·ln2 + ln(1000·1001) + ln 4
    #   = 5545.177444479562 + 13.816510558... + 1.386294361... = 5560.380249...
    expected = 8000 * LN2 + math.log(1000 * 1001) + math.log(4)
    assert prior_nats(1000, 4) == pytest.approx(expected, rel=1e-15)
    assert prior_nats(1000, 4) == pytest.approx(5560.380249, rel=1e-9)
    # held-out: only ln H = ln 4 = 1.3862943611198906
    assert prior_nats(1000, 4, heldout=True) == pytest.approx(1.3862943611198906, rel=1e-15)
    assert prior_nats(1000, 1, heldout=True) == 0.0


def test_complexity_term_by_hand() -> None:
    # Δ = 2, ln 1/P = ln 10, n = 50, K = 2, δ_c = 0.2:
    # 2·sqrt((ln 10 + ln(2/0.2)) / 100) = 2·sqrt(2·2.302585/100) = 2·0.2145966 = 0.42919320525786947
    assert complexity_term(2.0, math.log(10), 50, 2, 0.2) == pytest.approx(
        0.42919320525786947, rel=1e-14
    )


def test_sampling_term_by_hand() -> None:
    # Hoeffding, Δ = 1, s = 200, K = 4, δ_s = 0.04: d = 0.01,
    # sqrt(ln(100) / 400) = sqrt(4.605170/400) = 0.10729830131446737
    assert sampling_term("hoeffding", 1.0, 0.3, 200, 4, 0.04) == pytest.approx(
        0.10729830131446737, rel=1e-14
    )
    # Bernstein, Δ = 3, v = 0.5, s = 101, K = 2, δ_s = 0.04: d = 0.02, ln(2/d) = ln 100
    # sqrt(2·0.5·4.605170/101) + 7·3·4.605170/(3·100) = 0.2135326 + 0.3223619 = 0.5358935135276712
    assert sampling_term("bernstein", 3.0, 0.5, 101, 2, 0.04) == pytest.approx(
        0.5358935135276712, rel=1e-14
    )
    assert sampling_term("exhaustive", 3.0, 0.5, 1, 2, 0.04) == 0.0


def test_perplexity_bound_by_hand() -> None:
    assert perplexity_bound(3.0) == 8.0
    assert perplexity_bound(0.5) == pytest.approx(math.sqrt(2.0), rel=1e-15)
    assert perplexity_bound(5000.0) == math.inf


def test_document_level_bound_by_hand() -> None:
    # R̂ = 1, Δ = 2, ln 1/P = 10, m = 1000, δ = 0.05:
    # 1 + 2·sqrt((10 + ln 20)/2000) = 1 + 2·sqrt(0.00649787) = 1 + 2·0.08060934 = 1.16121869
    assert document_level_bound(1.0, 2.0, 10.0, 1000, 0.05) == pytest.approx(
        1 + 2 * math.sqrt((10 + math.log(20)) / 2000), rel=1e-15
    )
    assert document_level_bound(1.0, 2.0, 10.0, 1000, 0.05) == pytest.approx(1.16121869, rel=1e-8)


def _authors_llm_subsampling_bound(
    train_error: float,
    div: float,
    data_size: int,
    sample_size: int,
    delta: float = 1.0,
    epsilon: float = 0.05,
) -> float:
    """Transcription of ``llm_subsampling_bound`` in the authors' repository.

    github.com/YilunKuang/token-bounds-for-llms, token_sublora/bounds/compute_bounds.py
    (commit 7c38b791f8ef9fe4f426b6a34e6f5e84d0a0c3d2); there ``delta`` is the loss range Δ
    and ``epsilon`` the failure probability. ``div`` is built in
    token_sublora/sublora_pipeline.py (get_bounds) as
    (prefix_message_len + misc_extra_bits)·ln 2, prefix_message_len = C + 2·log2 C.
    """
    r = sample_size / (sample_size + data_size)
    complexity = np.sqrt((div - np.log(r * epsilon)) / (2 * data_size)) + np.sqrt(
        -np.log((1 - r) * epsilon) / (2 * sample_size)
    )
    return float(train_error + delta * complexity)


def test_authors_formula_reproduces_their_code() -> None:
    # Worked example through the authors' own arithmetic: a 1000-byte file (C = 8000 bits),
    # misc_extra_bits = 2 (their README command) + 8 (their loop adds len(alpha_array) = 8
    # before the first bits bound), n = 10^6 tokens, s = 10^4 samples, α = 0.01, V = 32000.
    size_bits = 8000.0
    prefix_message_len = size_bits + 2 * np.log2(size_bits)  # 8025.931568569325
    divergence = (prefix_message_len + 10.0) * np.log(2)  # 5570.0833099264855 nats
    loss_range = float(np.log2(1 + (1 - 0.01) * 32000 / 0.01))  # 21.595141360137788
    theirs = _authors_llm_subsampling_bound(3.0, divergence, 10**6, 10**4, delta=loss_range)
    ours = authors_formula_bound(3.0, loss_range, 1000, 10**6, 10**4, 0.05, extra_bits=10.0)
    assert ours == pytest.approx(theirs, rel=1e-14)
    # r = 10^4/(1.01·10^6) = 0.00990099;
    # sqrt((5570.0833 − ln(0.00990099·0.05))/2·10^6) = sqrt(5577.694/2e6) = 0.0528096
    # sqrt(−ln(0.990099·0.05)/2·10^4) = sqrt(3.005677/2e4) = 0.0122590
    # 3 + 21.595141·(0.0528096 + 0.0122590) = 3 + 21.595141·0.0650686 = 4.405165154870248
    assert ours == pytest.approx(4.405165154870248, rel=1e-13)


# --------------------------------------------------------------------------- compute_bound


def test_compute_bound_combines_terms() -> None:
    result = compute_bound(bound_input_from_dict(example_input(bound_version=1)))
    assert result.statements == 3
    assert result.delta_c == pytest.approx(0.025) and result.delta_s == pytest.approx(0.025)
    assert result.delta_c + result.delta_s == 0.05
    nats = prior_nats(12_345)
    assert result.prior.nats == nats
    for metric in result.metrics:
        assert metric.complexity_term == complexity_term(
            metric.loss_range, nats, 5_000_000, 3, 0.025
        )
        assert metric.sampling_term == sampling_term(
            "bernstein", metric.loss_range, metric.sample_variance, 200, 3, 0.025
        )
        assert metric.bound == metric.sample_mean + metric.sampling_term + metric.complexity_term
    bits = [metric for metric in result.metrics if metric.name == "bits"]
    best = min(bits, key=lambda metric: metric.bound)
    assert result.summary["bits_per_token_bound"] == best.bound
    assert result.summary["alpha"] == best.alpha
    assert result.summary["perplexity_bound"] == pytest.approx(2.0**best.bound, rel=1e-15)
    assert result.summary["vacuous"] is (best.bound >= math.log2(32000))
    (top1,) = result.summary["top_k"]
    assert top1["k"] == 1 and top1["bound"] == result.metrics[2].bound
    authors = result.summary["comparison"]["authors_formula"]
    # their formula gets the same union over K = 3 statements, as log2 3 extra bits
    assert authors["extra_bits"] == pytest.approx(math.log2(3))
    theirs = [
        authors_formula_bound(
            m.sample_mean, m.loss_range, 12_345, 5_000_000, 200, 0.05, math.log2(3)
        )
        for m in result.metrics
    ]
    assert [entry["bound"] for entry in authors["metrics"]] == pytest.approx(theirs, rel=1e-15)
    assert authors["bits_per_token_bound"] == min(theirs[:2])


def test_exhaustive_gives_all_delta_to_complexity() -> None:
    data = example_input(sampling_method="exhaustive", delta_split=1.0, bound_version=1)
    for metric in data["metrics"]:
        metric["samples"] = 1
    result = compute_bound(bound_input_from_dict(data))
    assert result.delta_c == 0.05 and result.delta_s == 0.0
    for metric in result.metrics:
        assert metric.sampling_term == 0.0
        assert metric.complexity_term == complexity_term(
            metric.loss_range, result.prior.nats, 5_000_000, 3, 0.05
        )
    assert result.summary["comparison"]["authors_formula"] is None


def test_hoeffding_and_heldout_input() -> None:
    data = example_input(
        sampling_method="hoeffding", heldout=True, hyperparameter_configurations=6, bound_version=1
    )
    result = compute_bound(bound_input_from_dict(data))
    assert result.prior.nats == pytest.approx(math.log(6), rel=1e-15)
    first = result.metrics[0]
    assert first.sampling_term == pytest.approx(
        first.loss_range * math.sqrt(math.log(3 / 0.025) / 400), rel=1e-14
    )


def test_vacuous_flags() -> None:
    data = example_input(n_tokens=1000, size_bytes=10**7)
    result = compute_bound(bound_input_from_dict(data))
    assert result.summary["vacuous"] is True
    assert result.summary["top_k"][0]["vacuous"] is True
    assert result.summary["perplexity_bound"] is None  # 2**bound overflows float64
    json.dumps(bound_result_to_dict(result), allow_nan=False)


def test_summary_without_bits_metrics() -> None:
    data = example_input()
    data["metrics"] = data["metrics"][2:]
    result = compute_bound(bound_input_from_dict(data))
    assert result.summary["bits_per_token_bound"] is None
    assert result.summary["top_k"][0]["bound"] == result.metrics[0].bound


@pytest.mark.parametrize("version", [1, 2])
def test_result_round_trips_through_json(version: int) -> None:
    result = compute_bound(bound_input_from_dict(example_input(bound_version=version)))
    as_dict = bound_result_to_dict(result)
    assert bound_result_from_dict(json.loads(json.dumps(as_dict))) == result
    assert "k" not in as_dict["metrics"][0] and as_dict["metrics"][0]["alpha"] == 0.01
    assert "alpha" not in as_dict["metrics"][2] and as_dict["metrics"][2]["k"] == 1
    for key in ("statements", "delta_c", "delta_s", "summary", "sampling_method", "heldout"):
        assert key in as_dict
    assert set(as_dict["prior"]) == {"size_bytes", "hyperparameter_configurations", "nats"}


@pytest.mark.parametrize("version", [1, 2])
def test_recompute_from_result(version: int) -> None:
    data = example_input(delta=0.01, delta_split=0.3, bound_version=version)
    result = compute_bound(bound_input_from_dict(data))
    recorded = bound_result_from_dict(json.loads(json.dumps(bound_result_to_dict(result))))
    assert recorded.bound_version == version
    again = compute_bound(bound_input_from_result(recorded))
    assert again.bound_version == version
    for before, after in zip(result.metrics, again.metrics, strict=True):
        assert after.bound == pytest.approx(before.bound, rel=1e-12)


def test_golden_bound_object() -> None:
    """Version 1: the bound object for a fixed input is byte for byte the recorded one."""
    data = json.loads((FIXTURES / "input.json").read_text())
    text = (FIXTURES / "bound.json").read_text()
    got = bound_result_to_dict(compute_bound(bound_input_from_dict({**data, "bound_version": 1})))
    assert _close(got, json.loads(text)), json.dumps(got, indent=2)
    assert json.dumps(got, indent=2) + "\n" == text
    # read back, it recomputes with the version-1 formulas (v1 certificates keep verifying)
    recorded = bound_result_from_dict(json.loads(text))
    assert recorded.bound_version == 1
    again = bound_result_to_dict(compute_bound(bound_input_from_result(recorded)))
    assert _close(again, json.loads(text))


def _close(got: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        return got.keys() == expected.keys() and all(_close(got[k], expected[k]) for k in expected)
    if isinstance(expected, list):
        return len(got) == len(expected) and all(map(_close, got, expected))
    if isinstance(expected, float) and not isinstance(got, bool):
        return bool(got == pytest.approx(expected, rel=1e-12))
    return bool(got == expected)


def test_reads_risk_json_shape() -> None:
    risk = RiskRecord(
        vocab_size=32000,
        n_tokens=10**6,
        chunk_tokens=1024,
        context_tokens=128,
        sampling=SamplingRecord("length_proportional_with_replacement", 64, 0),
        metrics=(
            MetricSample("bits", 4.0, 0.2, 64, alpha=0.01),
            MetricSample("top_k_error", 0.6, 0.01, 64, k=5),
        ),
        device="cpu",
        dtype="float32",
        tokens_scored=65536,
        seconds=1.5,
    )
    data = {**to_dict(risk), "size_bytes": 4096, "kind": "risk", "certify_version": "0.1.0"}
    parsed = bound_input_from_dict(data)
    assert parsed.metrics == risk.metrics
    assert parsed.size_bytes == 4096
    assert parsed.sampling_method == "bernstein"
    # an exhaustive evaluation defaults to the exhaustive bound ...
    exhaustive = {**data, "sampling": {"method": "exhaustive", "samples": 977, "seed": 0}}
    assert bound_input_from_dict(exhaustive).sampling_method == "exhaustive"
    assert bound_input_from_dict(
        {**exhaustive, "sampling_method": "hoeffding"}
    ).sampling_method == ("hoeffding")
    # ... but sampled statistics may not claim to be exhaustive (that drops a needed term)
    with pytest.raises(InvalidInputError) as raised:
        bound_input_from_dict({**data, "sampling_method": "exhaustive"})
    assert raised.value.field == "sampling_method"


# --------------------------------------------------------------------------- properties

sizes = st.integers(min_value=1, max_value=10**10)
token_counts = st.integers(min_value=1, max_value=10**13)
deltas = st.floats(min_value=1e-9, max_value=0.99)
ranges = st.floats(min_value=1e-3, max_value=60.0)
statement_counts = st.integers(min_value=1, max_value=100)


@given(ranges, sizes, token_counts, statement_counts, deltas)
def test_complexity_term_falls_with_n_and_delta_rises_with_size(
    loss_range: float, size: int, n: int, statements: int, delta: float
) -> None:
    nats = prior_nats(size)
    term = complexity_term(loss_range, nats, n, statements, delta)
    assert complexity_term(loss_range, nats, n + 1 + n // 3, statements, delta) < term
    assert complexity_term(loss_range, nats, n, statements, min(0.999, delta * 1.5)) < term
    assert complexity_term(loss_range, prior_nats(size + 1), n, statements, delta) > term
    assert complexity_term(loss_range, nats, n, statements + 1, delta) > term
    assert prior_nats(size, heldout=True) < nats


@given(
    st.sampled_from(["hoeffding", "bernstein"]),
    ranges,
    st.floats(min_value=0.0, max_value=100.0),
    st.integers(min_value=2, max_value=10**7),
    statement_counts,
    deltas,
)
def test_sampling_term_falls_with_s_and_delta(
    method: str, loss_range: float, variance: float, samples: int, statements: int, delta: float
) -> None:
    term = sampling_term(method, loss_range, variance, samples, statements, delta)  # type: ignore[arg-type]
    more = sampling_term(method, loss_range, variance, samples + 1, statements, delta)  # type: ignore[arg-type]
    surer = sampling_term(method, loss_range, variance, samples, statements, min(0.999, delta * 2))  # type: ignore[arg-type]
    assert 0.0 < more < term
    assert surer < term


@st.composite
def bound_inputs(draw: st.DrawFn) -> BoundInput:
    vocab_size = draw(st.integers(min_value=2, max_value=200_000))
    alphas = draw(
        st.lists(st.floats(min_value=1e-6, max_value=0.9), min_size=1, max_size=5, unique=True)
    )
    metrics = []
    for alpha in alphas:
        loss_min, loss_range = smoothed_loss_range(alpha, vocab_size)
        share = draw(st.floats(min_value=0.0, max_value=1.0))
        mean = min(loss_min + share * loss_range, loss_min + loss_range)
        spread = draw(st.floats(min_value=0.0, max_value=1.0))
        variance = spread * (mean - loss_min) * (loss_min + loss_range - mean)
        metrics.append(MetricSample("bits", mean, variance, draw(st.integers(2, 10**5)), alpha))
    return BoundInput(
        vocab_size=vocab_size,
        n_tokens=draw(token_counts),
        size_bytes=draw(sizes),
        metrics=tuple(metrics),
        hyperparameter_configurations=draw(st.integers(1, 1000)),
        delta=draw(st.floats(min_value=1e-6, max_value=0.5)),
        delta_split=draw(st.floats(min_value=0.05, max_value=0.95)),
        sampling_method=draw(st.sampled_from(["bernstein", "hoeffding", "exhaustive"])),
    )


@settings(max_examples=60, deadline=None)
@given(bound_inputs())
def test_headline_is_min_over_alpha_and_heldout_is_smaller(bound_input: BoundInput) -> None:
    result = compute_bound(bound_input)
    assert result.summary["bits_per_token_bound"] == min(metric.bound for metric in result.metrics)
    heldout = compute_bound(dataclasses.replace(bound_input, heldout=True))
    for ours, held in zip(result.metrics, heldout.metrics, strict=True):
        assert held.bound <= ours.bound
    bigger = compute_bound(dataclasses.replace(bound_input, size_bytes=bound_input.size_bytes * 2))
    more_data = compute_bound(dataclasses.replace(bound_input, n_tokens=bound_input.n_tokens * 2))
    surer = compute_bound(dataclasses.replace(bound_input, delta=bound_input.delta * 1.5))
    for base, big, more, sure in zip(
        result.metrics, bigger.metrics, more_data.metrics, surer.metrics, strict=True
    ):
        assert big.bound > base.bound
        assert more.bound < base.bound
        assert sure.bound < base.bound


# --------------------------------------------------------------------------- coverage simulations


def binomial_upper_limit(trials: int, probability: float, tail: float) -> int:
    """Smallest q with P(Binomial(trials, probability) > q) ≤ tail (exact sum in log space)."""
    log_p, log_q = math.log(probability), math.log1p(-probability)
    terms = [
        math.lgamma(trials + 1)
        - math.lgamma(x + 1)
        - math.lgamma(trials - x + 1)
        + x * log_p
        + (trials - x) * log_q
        for x in range(trials + 1)
    ]
    upper_tail = 0.0
    for x in range(trials, -1, -1):
        if upper_tail + math.exp(terms[x]) > tail:
            return x
        upper_tail += math.exp(terms[x])
    return 0


# A test that flags a rate only when failures exceed the 1 − 1e-6 quantile of
# Binomial(reps, δ) wrongly fails a correct bound with probability ≤ 1e-6 (the margin).
MARGIN_TAIL = 1e-6


def test_binomial_upper_limit_by_hand() -> None:
    # Binomial(10, 0.5): P(X > 8) = P(9) + P(10) = (10 + 1)/1024 = 0.0107 > 0.01 and
    # P(X > 9) = 1/1024 ≤ 0.01, so the limit at tail 0.01 is 9.
    assert binomial_upper_limit(10, 0.5, 0.01) == 9


def _markov_source_failures(term_scale: float) -> tuple[int, int]:
    """Failures of the complexity term over a prior-weighted family on a Markov source.

    The source is a 3-state Markov chain with transition matrix T (known), so the
    conditional risk E[l(X_i) | x_<i] = Σ_y T[x_{i−1}, y]·l(x_{i−1}, y) is exact. The
    family: M = 16 predictors (T itself and 15 random transition matrices) with prior
    P_j ∝ 2^−j; losses: α-smoothed bits (α = 0.1) and top-1 error, K = 2 statements.
    A repetition fails if any statement of any predictor has R > R̂ + term·term_scale, so
    the check also covers a predictor picked after seeing the data (e.g. the best one).
    """
    rng = np.random.default_rng(20240726)
    states, reps, n_tokens, delta = 3, 4000, 300, 0.05
    transition = np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.45, 0.1, 0.45]])
    predictors = rng.dirichlet(np.full(states, 2.0), size=(16, states))
    predictors[0] = transition
    prior = 0.5 ** np.arange(1, 17)
    prior /= prior.sum()
    alpha = 0.1
    loss_min, loss_range = smoothed_loss_range(alpha, states)
    bits = -np.log2((1 - alpha) * predictors + alpha / states)  # [j, previous, next]
    top1 = (predictors.argmax(-1)[..., None] != np.arange(states)).astype(float)
    # Simulate all repetitions at once; only transition counts matter for both risks.
    state = np.zeros(reps, dtype=np.int64)
    counts = np.zeros((reps, states, states))
    cumulative = transition.cumsum(1)
    for _ in range(n_tokens):
        following = (rng.random(reps)[:, None] > cumulative[state]).sum(1)
        np.add.at(counts, (np.arange(reps), state, following), 1.0)
        state = following
    context_counts = counts.sum(2)
    failed = np.zeros(reps, dtype=bool)
    for loss, (low, width) in ((bits, (loss_min, loss_range)), (top1, (0.0, 1.0))):
        assert loss.min() >= low - 1e-12 and loss.max() <= low + width + 1e-12
        empirical = np.einsum("rpq,jpq->rj", counts, loss) / n_tokens
        conditional = np.einsum("rp,jp->rj", context_counts, (transition[None] * loss).sum(-1))
        conditional /= n_tokens
        terms = np.array([complexity_term(width, -math.log(p), n_tokens, 2, delta) for p in prior])
        failed |= (conditional > empirical + term_scale * terms).any(1)
    return int(failed.sum()), reps


def test_complexity_term_coverage_on_markov_source() -> None:
    failures, reps = _markov_source_failures(term_scale=1.0)
    limit = binomial_upper_limit(reps, 0.05, MARGIN_TAIL)
    assert failures <= limit, f"{failures}/{reps} failures, allowed {limit} at δ = 0.05"


def test_too_small_complexity_term_is_caught() -> None:
    failures, reps = _markov_source_failures(term_scale=0.25)
    limit = binomial_upper_limit(reps, 0.05, MARGIN_TAIL)
    assert failures > limit, f"a quarter of the term failed only {failures}/{reps} times"


def _chunk_population() -> tuple[np.ndarray, np.ndarray, float, float]:
    """5000 chunks of 1..1024 tokens; chunk means in [0.5, 10.5], skewed with rare high ones."""
    rng = np.random.default_rng(7)
    count, loss_min, loss_range = 5000, 0.5, 10.0
    lengths = rng.integers(1, 1025, size=count).astype(float)
    rare = rng.random(count) < 0.02
    shares = np.where(rare, rng.uniform(0.8, 1.0, count), rng.beta(2.0, 20.0, count))
    return lengths, loss_min + loss_range * shares, loss_min, loss_range


def _sampling_failures(method: str, samples: int, wrong: bool) -> tuple[int, int]:
    """Failures of R̂ ≤ Ȳ + term over repeated length-proportional samples of chunks."""
    lengths, means, _, loss_range = _chunk_population()
    full_risk = float((lengths * means).sum() / lengths.sum())  # token-weighted R̂
    rng = np.random.default_rng(11)
    reps, delta = 10000, 0.05
    drawn = means[rng.choice(means.size, size=(reps, samples), p=lengths / lengths.sum())]
    sample_mean = drawn.mean(1)
    variance = drawn.var(1, ddof=1)
    if wrong:  # Bernstein's variance term alone, without its range term: too small
        terms = np.sqrt(2 * variance * math.log(1 / delta) / samples)
    else:
        terms = np.array(
            [sampling_term(method, loss_range, v, samples, 1, delta) for v in variance]  # type: ignore[arg-type]
        )
    return int((full_risk > sample_mean + terms).sum()), reps


@pytest.mark.parametrize(
    ("method", "samples"), [("hoeffding", 30), ("bernstein", 30), ("bernstein", 400)]
)
def test_sampling_term_coverage(method: str, samples: int) -> None:
    failures, reps = _sampling_failures(method, samples, wrong=False)
    limit = binomial_upper_limit(reps, 0.05, MARGIN_TAIL)
    assert failures <= limit, f"{failures}/{reps} failures, allowed {limit} at δ = 0.05"


def test_sampling_term_without_range_term_is_caught() -> None:
    failures, reps = _sampling_failures("bernstein", 30, wrong=True)
    limit = binomial_upper_limit(reps, 0.05, MARGIN_TAIL)
    assert failures > limit, f"the variance-only term failed only {failures}/{reps} times"


def test_hoeffding_sampling_term_on_two_point_chunks() -> None:
    # Worst case for Hoeffding: chunk means at the ends of the range with probability 1/2.
    rng = np.random.default_rng(3)
    reps, samples, delta = 20000, 50, 0.05
    drawn = rng.integers(0, 2, size=(reps, samples)).astype(float)
    term = sampling_term("hoeffding", 1.0, 0.25, samples, 1, delta)
    failures = int((drawn.mean(1) + term < 0.5).sum())
    assert failures <= binomial_upper_limit(reps, delta, MARGIN_TAIL)
    # a third of the Hoeffding term is far too small here and must be caught
    assert int((drawn.mean(1) + term / 3 < 0.5).sum()) > binomial_upper_limit(
        reps, delta, MARGIN_TAIL
    )


# --------------------------------------------------------------------------- invalid input


def _metric(index: int, **changes: Any) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        data["metrics"][index].update(changes)

    return mutate


def _top(**changes: Any) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        data.update(changes)

    return mutate


def _duplicate(index: int) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        data["metrics"].append(dict(data["metrics"][index]))

    return mutate


INVALID_CASES = [
    (_top(delta=0.0), "delta"),
    (_top(delta=1.0), "delta"),
    (_top(delta=-0.1), "delta"),
    (_top(delta=float("nan")), "delta"),
    (_top(delta="0.05"), "delta"),
    (_top(delta_split=0.0), "delta_split"),
    (_top(delta_split=1.0), "delta_split"),
    (_top(n_tokens=0), "n_tokens"),
    (_top(n_tokens=float("inf")), "n_tokens"),
    (_top(n_tokens=2.5), "n_tokens"),
    (_top(n_tokens=True), "n_tokens"),
    (_top(vocab_size=1), "vocab_size"),
    (_top(size_bytes=0), "size_bytes"),
    (_top(hyperparameter_configurations=0), "hyperparameter_configurations"),
    (_top(sampling_method="bootstrap"), "sampling_method"),
    (_top(heldout="yes"), "heldout"),
    (_top(metrics=[]), "metrics"),
    (_top(metrics={"name": "bits"}), "metrics"),
    (_metric(0, samples=1), "metrics[0].samples"),
    (_metric(0, alpha=0.0), "metrics[0].alpha"),
    (_metric(0, alpha=1.0), "metrics[0].alpha"),
    (_metric(0, alpha=None), "metrics[0].alpha"),
    (_metric(0, k=3), "metrics[0].k"),
    (_metric(1, sample_mean=0.0), "metrics[1].sample_mean"),
    (_metric(1, sample_mean=100.0), "metrics[1].sample_mean"),
    (_metric(1, sample_mean=float("nan")), "metrics[1].sample_mean"),
    (_metric(1, sample_variance=-1e-9), "metrics[1].sample_variance"),
    (_metric(1, sample_variance=float("inf")), "metrics[1].sample_variance"),
    (_metric(1, sample_variance=1e6), "metrics[1].sample_variance"),
    (_metric(2, sample_mean=1.5), "metrics[2].sample_mean"),
    (_metric(2, k=0), "metrics[2].k"),
    (_metric(2, k=32000), "metrics[2].k"),
    (_metric(2, alpha=0.1), "metrics[2].alpha"),
    (_metric(2, name="accuracy"), "metrics[2].name"),
    (_duplicate(1), "metrics[3].alpha"),
    (_duplicate(2), "metrics[3].k"),
]


@pytest.mark.parametrize(("mutate", "field"), INVALID_CASES)
def test_invalid_input_names_the_field(mutate: Any, field: str) -> None:
    data = json.loads(json.dumps(example_input()))
    mutate(data)
    with pytest.raises(InvalidInputError) as raised:
        bound_input_from_dict(data)
    assert raised.value.field == field
    assert str(raised.value).startswith(field)
    assert "\n" not in str(raised.value)


def test_hoeffding_accepts_one_sample_bernstein_does_not() -> None:
    data = example_input(sampling_method="hoeffding")
    for metric in data["metrics"]:
        metric["samples"] = 1
        metric["sample_variance"] = 0.0
    assert compute_bound(bound_input_from_dict(data)).metrics[0].samples == 1
    data["metrics"][0]["samples"] = 0
    with pytest.raises(InvalidInputError, match=r"metrics\[0\]\.samples"):
        bound_input_from_dict(data)


def test_exhaustive_ignores_delta_split_and_variance() -> None:
    data = example_input(sampling_method="exhaustive", delta_split=7.0)
    data["metrics"][1]["sample_variance"] = 1e6  # unused without sampling
    assert compute_bound(bound_input_from_dict(data)).delta_c == 0.05


def test_unknown_and_missing_keys() -> None:
    with pytest.raises(InvalidInputError, match="'deltta'"):
        bound_input_from_dict(example_input(deltta=0.1))
    data = example_input()
    data["metrics"][0]["mean"] = 3.0
    with pytest.raises(InvalidInputError, match=r"metrics\[0\].*'mean'"):
        bound_input_from_dict(data)
    data = example_input()
    del data["size_bytes"]
    with pytest.raises(InvalidInputError, match="--artifact") as raised:
        bound_input_from_dict(data)
    assert raised.value.field == "size_bytes"
    data = example_input()
    del data["metrics"][0]["sample_variance"]
    with pytest.raises(InvalidInputError) as raised:
        bound_input_from_dict(data)
    assert raised.value.field == "metrics[0].sample_variance"
    with pytest.raises(InvalidInputError):
        bound_input_from_dict([1, 2])  # type: ignore[arg-type]


def test_informational_keys_are_ignored() -> None:
    extra = {"chunk_tokens": 1024, "context_tokens": 0, "device": "cpu", "seconds": 1.0}
    assert bound_input_from_dict(example_input(**extra)) == bound_input_from_dict(example_input())


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: smoothed_loss_range(0.0, 100), "alpha"),
        (lambda: smoothed_loss_range(0.5, 1), "vocab_size"),
        (lambda: prior_nats(0), "size_bytes"),
        (lambda: prior_nats(10, 0), "hyperparameter_configurations"),
        (lambda: complexity_term(1.0, 10.0, 0, 1, 0.05), "n_tokens"),
        (lambda: complexity_term(1.0, 10.0, 10, 1, 1.0), "delta_c"),
        (lambda: complexity_term(1.0, float("nan"), 10, 1, 0.5), "prior_nats"),
        (lambda: complexity_term(-1.0, 10.0, 10, 1, 0.5), "loss_range"),
        (lambda: sampling_term("bernstein", 1.0, 0.1, 1, 1, 0.05), "samples"),
        (lambda: sampling_term("hoeffding", 1.0, 0.1, 0, 1, 0.05), "samples"),
        (lambda: sampling_term("bernstein", 1.0, -0.1, 10, 1, 0.05), "sample_variance"),
        (lambda: sampling_term("bernstein", 1.0, 0.1, 10, 1, 0.0), "delta_s"),
        (lambda: sampling_term("magic", 1.0, 0.1, 10, 1, 0.05), "sampling_method"),  # type: ignore[arg-type]
        (lambda: perplexity_bound(float("nan")), "bits_bound"),
        (lambda: authors_formula_bound(1.0, 1.0, 10, 10, 10, 1.5), "delta"),
    ],
)
def test_formula_functions_reject_bad_values(call: Any, field: str) -> None:
    with pytest.raises(InvalidInputError) as raised:
        call()
    assert raised.value.field == field


def test_bound_result_from_dict_rejects_malformed() -> None:
    good = bound_result_to_dict(compute_bound(bound_input_from_dict(example_input())))
    broken = json.loads(json.dumps(good))
    del broken["metrics"][0]["bound"]
    with pytest.raises(InvalidInputError, match=r"bound\.metrics\[0\]\.bound"):
        bound_result_from_dict(broken)
    broken = json.loads(json.dumps(good))
    broken["extra"] = 1
    with pytest.raises(InvalidInputError, match="'extra'"):
        bound_result_from_dict(broken)


# --------------------------------------------------------------------------- CLI


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_cli_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _write(tmp_path / "in.json", example_input())
    assert run_cli(["bound", str(source)]) == 0
    out = capsys.readouterr().out
    assert "bits per token ≤" in out and "top-1 error ≤" in out
    assert "complexity" in out and "sampling" in out and "α=0.01" in out and "…" not in out


def test_cli_json_and_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _write(tmp_path / "in.json", example_input())
    target = tmp_path / "bound.json"
    assert run_cli(["bound", str(source), "--json", "-o", str(target)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(target.read_text()) == printed
    expected = bound_result_to_dict(compute_bound(bound_input_from_dict(example_input())))
    assert printed == json.loads(json.dumps(expected))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bound.json", "in.json"]


def test_cli_artifact_sets_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = example_input()
    del data["size_bytes"]
    source = _write(tmp_path / "risk.json", data)
    artifact = tmp_path / "model.certz"
    artifact.write_bytes(b"\x00" * 777)
    assert run_cli(["bound", str(source), "--artifact", str(artifact), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["prior"]["size_bytes"] == 777
    assert printed["prior"]["nats"] == prior_nats(777)
    assert printed["summary"]["size_bytes_from"] == {
        "artifact": str(artifact),
        "size_bytes": 777,
        "input_size_bytes": None,
    }
    # it overrides a size_bytes given in the input, and says so on stderr
    source = _write(tmp_path / "in.json", example_input(size_bytes=5))
    assert run_cli(["bound", str(source), "--artifact", str(artifact)]) == 0
    captured = capsys.readouterr()
    assert "777" in captured.err and "input said 5" in captured.err


def test_cli_bad_json_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.json"
    source.write_text("{not json")
    target = tmp_path / "out.json"
    assert run_cli(["bound", str(source), "-o", str(target)]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "not valid JSON" in err and "\n" not in err
    assert not target.exists()


def test_cli_invalid_field_and_missing_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write(tmp_path / "in.json", example_input(delta=2.0))
    assert run_cli(["bound", str(source)]) == 3
    assert "delta" in capsys.readouterr().err
    assert run_cli(["bound", str(tmp_path / "missing.json")]) == 3
    capsys.readouterr()
    good = _write(tmp_path / "good.json", example_input())
    assert run_cli(["bound", str(good), "--artifact", str(tmp_path / "none.certz")]) == 3
    assert "--artifact" in capsys.readouterr().err
    _write(tmp_path / "list.json", [1])  # type: ignore[arg-type]
    assert run_cli(["bound", str(tmp_path / "list.json")]) == 3


def test_cli_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["bound", "--help"]) == 0
    out = capsys.readouterr().out
    assert "certify bound" in out and "--artifact" in out and "sampling_method" in out


def test_cli_output_folder_must_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _write(tmp_path / "in.json", example_input())
    assert run_cli(["bound", str(source), "-o", str(tmp_path / "no" / "bound.json")]) == 3
    assert "--output" in capsys.readouterr().err


# =========================================================================== version 2


def v2_input(**overrides: Any) -> dict[str, Any]:
    """example_input with the square statistics of version 2 (q = (l − Y)²)."""
    data = example_input(**overrides)
    squares = [(12.0, 3.0), (10.5, 2.5), (0.2, 0.004)]
    for metric, (square_mean, square_variance) in zip(data["metrics"], squares, strict=True):
        metric.setdefault("square_mean", square_mean)
        metric.setdefault("square_variance", square_variance)
    return data


def sampled_input(**overrides: Any) -> dict[str, Any]:
    """v2_input in sampled mode: 200 accepted units out of 230 draws, W = 6·10^6."""
    data = v2_input(**overrides)
    del data["n_tokens"]
    data.setdefault("sampled", {"total_weight": 6_000_000, "accepted": 200, "drawn": 230})
    return data


GRID = [2.0 ** (-j / 4) for j in range(1, 61)]


def _psi_series(lam: float) -> float:
    return math.fsum(lam**order / order for order in range(2, 2000))


# ------------------------------------------------------------------------ v2 hand-computed values


def test_lambda_grid_and_forms_per_statement() -> None:
    assert len(LAMBDA_GRID) == 60 and FORMS_PER_STATEMENT == 61
    assert LAMBDA_GRID[0] == pytest.approx(2 ** (-0.25), rel=1e-15)  # 0.8408964152537145
    assert LAMBDA_GRID[3] == 0.5 and LAMBDA_GRID[-1] == 2.0**-15
    assert list(LAMBDA_GRID) == pytest.approx(GRID, rel=1e-15)


def test_psi_by_hand_and_accurate_for_small_lambda() -> None:
    # ψ(1/2) = ln 2 − 1/2 = 0.6931471805599453 − 0.5 = 0.1931471805599453
    assert psi(0.5) == pytest.approx(0.1931471805599453, rel=1e-15)
    assert psi(0.0) == 0.0
    # ψ(0.84) = −ln(0.16) − 0.84 = 1.8325814637483102 − 0.84 = 0.9925814637483102
    assert psi(0.84) == pytest.approx(0.9925814637483102, rel=1e-14)
    for lam in (*GRID, 1e-9, 0.3, 0.7, 0.95):
        assert psi(lam) == pytest.approx(_psi_series(lam), rel=4e-16 if lam < 0.9 else 1e-14)
    # the naive −log1p(−λ) − λ loses ~all digits at λ = 2^−15 (relative error ≈ 2^−52/λ)
    tiny = 2.0**-15
    assert psi(tiny) == pytest.approx(tiny**2 / 2 + tiny**3 / 3 + tiny**4 / 4, rel=1e-15)
    with pytest.raises(InvalidInputError):
        psi(1.0)


def test_azuma_term_by_hand() -> None:
    # Δ = 2, ln 1/P = ln 10, n = 50, K_c = 2, δ_c = 0.2:
    # 2·sqrt((ln 10 + ln(50·51) + ln(2/0.2))/100) = 2·sqrt((2.302585 + 7.843849 + 2.302585)/100)
    #   = 2·sqrt(0.1244902) = 2·0.3528317 = 0.7056633425122936
    assert azuma_term(2.0, math.log(10), 50, 2, 0.2) == pytest.approx(0.7056633425122936, rel=1e-14)
    # v2 is version 1's term with ln(n(n+1)) added under the root
    v1 = complexity_term(2.0, math.log(10), 50, 2, 0.2)
    assert v1 == pytest.approx(2 * math.sqrt((math.log(10) + math.log(10)) / 100), rel=1e-14)
    assert azuma_term(2.0, math.log(10), 50, 2, 0.2) > v1


def test_azuma_term_for_a_lower_bound_of_one() -> None:
    # Δ = 1, ln 1/P = 0, K_c = 1, δ_c = 0.9: c = ln(1/0.9) = 0.1053605.
    # n = 1: sqrt((c + ln 2)/2) = sqrt(0.3990442) = 0.6317;
    # n = 2: sqrt((c + ln 6)/4) = sqrt(0.4742799) = 0.6886798938704907, larger, so a lower
    # bound n_lo = 1 (the true n may be 2) must use n = 2's value.
    exact = azuma_term(1.0, 0.0, 1, 1, 0.9)
    assert exact == pytest.approx(math.sqrt((math.log(1 / 0.9) + math.log(2)) / 2), rel=1e-14)
    lower = azuma_term(1.0, 0.0, 1, 1, 0.9, lower_bound=True)
    assert lower == pytest.approx(0.6886798938704907, rel=1e-14)
    # from n = 2 on the term falls, so a lower bound ≥ 2 is used as it is
    assert azuma_term(1.0, 0.0, 2, 1, 0.9, lower_bound=True) == azuma_term(1.0, 0.0, 2, 1, 0.9)


def test_freedman_coefficients_and_term_by_hand() -> None:
    # Δ = 1, ln 1/P = 0, n = 1000, K_c = 61, δ_c = 0.05; at λ = 1/2 (j = 4):
    # ψ(1/2)/(1/2·1) = 0.3862943611198906, and (ln 61 + ln 20)/(1/2·1000) = 7.106606/500
    #   = 0.014213212275454605
    lam, coefficient, complexity = freedman_coefficients(1.0, 0.0, 1000, 61, 0.05)[3]
    assert lam == 0.5
    assert coefficient == pytest.approx(0.3862943611198906, rel=1e-14)
    assert complexity == pytest.approx(0.014213212275454605, rel=1e-14)
    # with W = 0.1 the smallest of the 60 terms, by an explicit loop over the grid
    expected = min(
        ((-math.log1p(-g) - g) / g * 0.1 + (math.log(61) + math.log(20)) / (g * 1000), g)
        for g in GRID
    )
    term, best_lambda = freedman_term(1.0, 0.1, 0.0, 1000, 61, 0.05)
    assert term == pytest.approx(expected[0], rel=1e-13)
    assert best_lambda == expected[1] == 2.0 ** (-7 / 4)  # 0.2973017787506803
    assert term == pytest.approx(0.042580315279150564, rel=1e-13)


def test_acceptance_lower_bound_closed_forms() -> None:
    # Beta(1, 1) is uniform: the δ_n-quantile is δ_n
    assert acceptance_lower_bound(1, 1, 0.0625) == 0.0625
    # Beta(G, 1) has CDF x^G: quantile δ_n^(1/G); 0.05^(1/5) = 0.5492802716530588
    assert acceptance_lower_bound(5, 5, 0.05) == pytest.approx(0.05**0.2, rel=1e-14)
    # Beta(1, D) has CDF 1 − (1−x)^D: quantile 1 − (1−δ_n)^(1/D) = −expm1(log1p(−δ_n)/D)
    expected = -math.expm1(math.log1p(-0.05) / 10)  # 0.005116196891823701
    assert acceptance_lower_bound(1, 10, 0.05) == pytest.approx(expected, rel=1e-14)
    # a larger case against scipy's forward CDF: never above δ_n, and tight
    from scipy import special

    quantile = acceptance_lower_bound(1000, 535_845, 0.005)
    assert special.betainc(1000, 534_846, quantile) <= 0.005
    # the exact root (mpmath, 40 digits) is 0.001717831772994303998...; betaincinv alone
    # returns 0.00171783177299778 (2e-12 too high), the polished value is within an ulp
    assert quantile == pytest.approx(0.001717831772994303998, rel=5e-16)


def test_n_lower_bound_rounds_down_exactly() -> None:
    # W = 10^6, Beta(1, 1): n_lo = ⌊10^6 · 0.0625⌋ = 62500
    assert n_lower_bound(1_000_000, 1, 1, 0.0625) == (62_500, 0.0625)
    # Beta(2, 1) (G = D = 2) at δ_n = 1/16: quantile sqrt(1/16) = 1/4;
    # W = 4,000,002: W/4 = 1,000,000.5 → 1,000,000
    assert n_lower_bound(4_000_002, 2, 2, 0.0625)[0] == 1_000_000
    # never below one token (an accepted unit holds at least one)
    assert n_lower_bound(3, 1, 50, 0.001)[0] == 1
    with pytest.raises(InvalidInputError, match=r"sampled\.drawn"):
        n_lower_bound(100, 5, 4, 0.01)


def test_v2_exhaustive_by_hand() -> None:
    # One top-1 statement (a = 0, Δ = 1), exhaustive: U = R̂ = 0.3, W = V̂ = 0.1,
    # n = 10,000, B = 100 bytes, H = 1, δ = δ_c = 0.05, K_c = 61.
    # ln 1/P = 800·ln 2 + ln(100·101) = 554.517744 + 9.220291 = 563.7380351507857
    # Azuma: sqrt((563.738035 + ln(10^4·10001) + ln(61/0.05))/20000)
    #   = sqrt((563.738035 + 18.420781 + 7.106606)/20000) = 0.17164868511402376
    # Freedman, best λ = 2^(−3/4) = 0.5946035575013605:
    #   ψ(λ)/λ·0.1 + (563.738035 + 7.106606)/(λ·10^4) = 0.147851605155408
    data = {
        "vocab_size": 32000,
        "n_tokens": 10_000,
        "size_bytes": 100,
        "sampling_method": "exhaustive",
        "metrics": [
            {
                "name": "top_k_error",
                "k": 1,
                "sample_mean": 0.3,
                "sample_variance": 0.0,
                "samples": 40,
                "square_mean": 0.1,
                "square_variance": 0.0,
            }
        ],
    }
    result = compute_bound(bound_input_from_dict(data))
    assert result.bound_version == 2 and result.delta_c == 0.05 and result.delta_s == 0.0
    assert result.delta_n is None and result.n_lower_bound is None and result.n_tokens == 10_000
    assert result.statement_events == 61 and result.sampling_events == 2
    assert result.prior.nats == pytest.approx(563.7380351507857, rel=1e-14)
    (metric,) = result.metrics
    assert metric.sampling_term == 0.0 and metric.square_sampling_term == 0.0
    assert metric.mean_bound == 0.3 and metric.square_bound == 0.1
    assert metric.azuma == pytest.approx(0.3 + 0.17164868511402376, rel=1e-14)
    assert metric.freedman == pytest.approx(0.3 + 0.14785160515540774, rel=1e-14)
    assert metric.freedman_lambda == 2.0 ** (-3 / 4)
    assert metric.certified_by == "freedman"
    assert metric.bound == metric.freedman == metric.mean_bound + metric.complexity_term


def test_v2_sampled_mode_by_hand() -> None:
    # G = D = 2 accepted of 2 draws, W = 4,000,002, δ = 0.625: δ_n = δ/10 = 0.0625, and
    # δ_c = δ_s = (0.625 − 0.0625)/2 = 0.28125. n_lo = ⌊W·sqrt(δ_n)⌋ = 1,000,000.
    # One top-1 statement with squares: K_c = 61, the sampling bounds share δ_s at
    # d = δ_s/2 (U and W), Hoeffding: U = 0.3 + sqrt(ln(2/0.28125)/4),
    # W = 0.1 + 1²·sqrt(ln(2/0.28125)/4).
    data = {
        "vocab_size": 32000,
        "sampled": {"total_weight": 4_000_002, "accepted": 2, "drawn": 2},
        "size_bytes": 100,
        "delta": 0.625,
        "sampling_method": "hoeffding",
        "metrics": [
            {
                "name": "top_k_error",
                "k": 1,
                "sample_mean": 0.3,
                "sample_variance": 0.02,
                "samples": 2,
                "square_mean": 0.1,
                "square_variance": 0.01,
            }
        ],
    }
    result = compute_bound(bound_input_from_dict(data))
    assert result.delta_n == 0.0625 and result.delta_c == result.delta_s == 0.28125
    assert result.n_tokens is None and result.n_lower_bound == 1_000_000
    assert result.acceptance_lower_bound == 0.25
    assert result.sampled is not None and result.sampled.drawn == 2
    (metric,) = result.metrics
    deviation = math.sqrt(math.log(2 / 0.28125) / 4)  # 0.7001848624457093
    assert metric.sampling_term == pytest.approx(deviation, rel=1e-14)
    assert metric.mean_bound == pytest.approx(0.3 + deviation, rel=1e-14)
    assert metric.square_bound == pytest.approx(0.1 + deviation, rel=1e-14)
    prior = 800 * LN2 + math.log(100 * 101)
    azuma = math.sqrt(
        (prior + math.log(10**6 * (10**6 + 1)) + math.log(61 / 0.28125)) / (2 * 10**6)
    )
    assert metric.azuma == pytest.approx(0.3 + deviation + azuma, rel=1e-14)
    freedman = min(
        _psi_series(g) / g * (0.1 + deviation) + (prior + math.log(61 / 0.28125)) / (g * 10**6)
        for g in GRID
    )
    assert metric.freedman == pytest.approx(0.3 + deviation + freedman, rel=1e-13)
    assert metric.bound == min(metric.azuma, metric.freedman)


def test_v2_without_squares_is_azuma_alone() -> None:
    result = compute_bound(bound_input_from_dict(example_input()))
    assert result.bound_version == 2
    assert result.statement_events == 3 and result.sampling_events == 3  # K_c = K, d = δ_s/K
    nats = prior_nats(12_345)
    for metric in result.metrics:
        assert metric.freedman is None and metric.square_bound is None
        assert metric.certified_by == "azuma" and metric.bound == metric.azuma
        assert metric.complexity_term == azuma_term(metric.loss_range, nats, 5_000_000, 3, 0.025)
        assert metric.sampling_term == sampling_term(
            "bernstein", metric.loss_range, metric.sample_variance, 200, 3, 0.025
        )
    assert result.summary["certified_by"] == "azuma"


def test_v2_with_squares_counts_61_forms_and_two_sampling_bounds() -> None:
    result = compute_bound(bound_input_from_dict(v2_input()))
    assert result.statement_events == 3 * 61 and result.sampling_events == 3 * 2
    nats = result.prior.nats
    for metric in result.metrics:
        assert metric.square_mean is not None and metric.square_variance is not None
        assert metric.sampling_term == sampling_term(
            "bernstein", metric.loss_range, metric.sample_variance, 200, 6, 0.025
        )
        assert metric.square_sampling_term == sampling_term(
            "bernstein", metric.loss_range**2, metric.square_variance, 200, 6, 0.025
        )
        assert metric.square_bound == metric.square_mean + metric.square_sampling_term
        assert metric.azuma == metric.mean_bound + azuma_term(
            metric.loss_range, nats, 5_000_000, 183, 0.025
        )
        term, lam = freedman_term(
            metric.loss_range, metric.square_bound, nats, 5_000_000, 183, 0.025
        )
        assert metric.freedman == metric.mean_bound + term and metric.freedman_lambda == lam
        assert metric.bound == min(metric.azuma, metric.freedman)
    assert result.summary["azuma_bits_per_token_bound"] == min(
        m.azuma for m in result.metrics if m.name == "bits"
    )


def test_search_that_scored_the_sample_joins_the_sampling_union() -> None:
    base = compute_bound(bound_input_from_dict(v2_input(hyperparameter_configurations=6)))
    searched = compute_bound(
        bound_input_from_dict(v2_input(hyperparameter_configurations=6, search_scored_sample=True))
    )
    assert base.sampling_events == 6 and searched.sampling_events == 36
    assert searched.statement_events == base.statement_events
    for before, after in zip(base.metrics, searched.metrics, strict=True):
        assert after.sampling_term > before.sampling_term and after.bound > before.bound


def test_delta_split_in_sampled_mode() -> None:
    result = compute_bound(bound_input_from_dict(sampled_input()))
    assert result.delta_n == 0.005  # δ/10
    assert result.delta_c == pytest.approx(0.0225, rel=1e-15) == result.delta_s
    assert result.delta_n + result.delta_c + result.delta_s == pytest.approx(0.05, rel=1e-15)
    custom = compute_bound(bound_input_from_dict(sampled_input(delta_n=0.01, delta_split=0.25)))
    assert custom.delta_n == 0.01
    assert custom.delta_c == pytest.approx(0.01, rel=1e-15)  # 0.25 of the remaining 0.04
    assert custom.delta_s == pytest.approx(0.03, rel=1e-15)
    assert custom.n_lower_bound == n_lower_bound(6_000_000, 200, 230, 0.01)[0]
    # the authors' comparison uses n_lo in sampled mode, and says so
    assert "n_lower_bound" in result.summary["comparison"]["note"]


# ------------------------------------------------------------------------ v2 published numbers


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [
        (4.4012, {"significant": 3}, "4.41"),
        # the double nearest 4.35 is 4.34999999999999964…, below 4.35: 4.35 is an upper bound
        (4.35, {"significant": 3}, "4.35"),
        # the doubles nearest 4.41 and 4.4 are 4.41000000000000014… and 4.40000000000000036…,
        # above the decimals: rounding the double up must go one step further
        (4.41, {"significant": 3}, "4.42"),
        (4.4, {"significant": 3}, "4.41"),
        (9.996, {"significant": 3}, "10.0"),
        (0.000123456, {"significant": 2}, "0.00013"),
        (2.0, {"decimals": 2}, "2.00"),
        (2.001, {"decimals": 2}, "2.01"),
        (123.4, {"decimals": 0}, "124"),
        (-1.234, {"decimals": 1}, "-1.2"),
        (0.0, {"significant": 3}, "0.00"),
    ],
)
def test_round_up_text(value: float, digits: dict[str, int], text: str) -> None:
    got = round_up_text(value, **digits)
    assert got == text
    assert decimal.Decimal(got) >= decimal.Decimal(value)  # never below the exact value
    assert round_up(value, **digits) >= value


def test_round_up_never_rounds_down_and_needs_one_precision() -> None:
    rng = np.random.default_rng(5)
    for value in rng.uniform(0.0, 20.0, 500):
        for places in (0, 1, 2, 3):
            text = round_up_text(float(value), decimals=places)
            assert decimal.Decimal(text) >= decimal.Decimal(float(value))
            assert decimal.Decimal(text) - decimal.Decimal(float(value)) < decimal.Decimal(10) ** (
                -places
            )
    with pytest.raises(InvalidInputError):
        round_up_text(1.0)
    with pytest.raises(InvalidInputError):
        round_up_text(1.0, significant=2, decimals=2)
    with pytest.raises(InvalidInputError):
        round_up_text(math.inf, significant=2)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (0.05, "95%"),
        (0.1, "90%"),
        (1e-7, "99.99999%"),
        (0.005, "99.5%"),
        (1e-20, "99.999999999999999999%"),
        (0.123456789, "87.6543211%"),
    ],
)
def test_confidence_text_is_exact(delta: float, text: str) -> None:
    assert confidence_text(delta) == text
    assert confidence_text(delta) != "100%"


# --------------------------------------------------------------------------- v2 properties


@st.composite
def v2_bound_inputs(draw: st.DrawFn) -> BoundInput:
    """Version 2 inputs with square statistics, exact or sampled mode."""
    vocab_size = draw(st.integers(min_value=2, max_value=200_000))
    method = draw(st.sampled_from(["bernstein", "hoeffding", "exhaustive"]))
    sampled_mode = method != "exhaustive" and draw(st.booleans())
    accepted = draw(st.integers(2, 3000))
    samples = accepted if sampled_mode else draw(st.integers(2, 10**5))
    metrics = []
    for alpha in draw(
        st.lists(st.floats(min_value=1e-6, max_value=0.9), min_size=1, max_size=4, unique=True)
    ):
        loss_min, loss_range = smoothed_loss_range(alpha, vocab_size)
        mean = loss_min + draw(st.floats(0.0, 1.0)) * loss_range
        mean = min(mean, loss_min + loss_range)
        variance = draw(st.floats(0.0, 1.0)) * (mean - loss_min) * (loss_min + loss_range - mean)
        square_mean = draw(st.floats(0.0, 0.3)) * loss_range**2
        square_variance = draw(st.floats(0.0, 1.0)) * square_mean * (loss_range**2 - square_mean)
        metrics.append(
            MetricSample("bits", mean, variance, samples, alpha, None, square_mean, square_variance)
        )
    total_weight = draw(st.integers(10**3, 10**13))
    drawn = accepted + draw(st.integers(0, 3 * accepted))
    return BoundInput(
        vocab_size=vocab_size,
        n_tokens=None if sampled_mode else draw(token_counts),
        size_bytes=draw(sizes),
        metrics=tuple(metrics),
        hyperparameter_configurations=draw(st.integers(1, 1000)),
        delta=draw(st.floats(min_value=1e-6, max_value=0.5)),
        delta_split=draw(st.floats(min_value=0.05, max_value=0.95)),
        sampling_method=method,  # type: ignore[arg-type]
        heldout=draw(st.booleans()),
        sampled=SampledDraws(total_weight, accepted, drawn) if sampled_mode else None,
    )


def ranges_of(bound_input: BoundInput) -> list[tuple[float, float]]:
    return [
        smoothed_loss_range(m.alpha or 0.5, bound_input.vocab_size) for m in bound_input.metrics
    ]


def _more_data(bound_input: BoundInput) -> BoundInput:
    if bound_input.sampled is None:
        return dataclasses.replace(bound_input, n_tokens=(bound_input.n_tokens or 1) * 2)
    sampled = bound_input.sampled
    more = dataclasses.replace(sampled, total_weight=sampled.total_weight * 2)
    return dataclasses.replace(bound_input, sampled=more)


@settings(max_examples=80, deadline=None)
@given(v2_bound_inputs())
def test_v2_forms_fall_with_n_rise_with_size_and_variance(bound_input: BoundInput) -> None:
    result = compute_bound(bound_input)
    more = compute_bound(_more_data(bound_input))
    bigger = compute_bound(dataclasses.replace(bound_input, size_bytes=bound_input.size_bytes * 2))
    noisier = compute_bound(
        dataclasses.replace(
            bound_input,
            metrics=tuple(
                # stays ≤ Δ²/2, where a larger mean only widens the feasible variance
                dataclasses.replace(m, square_mean=(m.square_mean or 0.0) * 1.5 + 1e-3 * r**2)
                for m, (_, r) in zip(bound_input.metrics, ranges_of(bound_input), strict=True)
            ),
        )
    )
    strict = bound_input.sampled is None or (result.n_lower_bound or 0) > 2
    for base, m, b, v in zip(
        result.metrics, more.metrics, bigger.metrics, noisier.metrics, strict=True
    ):
        assert base.azuma is not None and base.freedman is not None
        # the certified value is the smallest form, never above the Azuma form
        assert base.bound == min(base.azuma, base.freedman) <= base.azuma
        assert base.bound == base.mean_bound + base.complexity_term
        assert base.mean_bound == base.sample_mean + base.sampling_term
        # each form falls as n grows (in sampled mode: as the total weight grows)
        assert m.azuma is not None and m.freedman is not None
        if strict:
            assert m.azuma < base.azuma and m.freedman < base.freedman
        else:
            assert m.azuma <= base.azuma and m.freedman <= base.freedman
        # ... rises with the artifact's size (held-out mode drops the size from the prior)
        assert b.azuma is not None and b.freedman is not None
        if bound_input.heldout:
            assert b.azuma == base.azuma and b.freedman == base.freedman
        else:
            assert b.azuma > base.azuma and b.freedman > base.freedman
        # ... and the Freedman form rises with V̂ (the Azuma form does not see it)
        assert v.freedman is not None and v.freedman > base.freedman
        assert v.azuma == base.azuma
    if bound_input.sampled is not None:
        assert result.n_lower_bound is not None and result.delta_n is not None
        assert result.n_lower_bound <= bound_input.sampled.total_weight


@settings(max_examples=40, deadline=None)
@given(v2_bound_inputs())
def test_v2_never_above_v1_without_the_new_terms(bound_input: BoundInput) -> None:
    """With exact n the version 2 Azuma form differs from version 1 only by ln(n(n+1)),
    ln 61 and the split of δ_s between U and W, all of which can only raise it."""
    if bound_input.sampled is not None:
        return
    version_2 = compute_bound(bound_input)
    version_1 = compute_bound(
        dataclasses.replace(
            bound_input,
            bound_version=1,
            metrics=tuple(
                dataclasses.replace(m, square_mean=None, square_variance=None)
                for m in bound_input.metrics
            ),
        )
    )
    for new, old in zip(version_2.metrics, version_1.metrics, strict=True):
        assert new.azuma is not None and new.azuma >= old.bound


# ------------------------------------------------------------------------ v2 coverage simulations


def _markov_freedman_data() -> dict[str, Any]:
    """A dependent bounded source with known conditional means, and 16 fixed "models".

    A sticky 4-state Markov chain (T = 0.6·I + 0.4·random) is the source, so
    μ_i = Σ_y T[x_{i−1}, y]·l(x_{i−1}, y) is exact. The family: 16 predictors P_j (T itself,
    a smoothed T and 14 random transition matrices) with prior 2^−j. Two statements:
    α-smoothed bits (α = 0.1, V = 4) with centre Y = the predictor's own expected loss, and
    top-1 error with centre = the predictor's mass outside its top token. Every loss,
    centre and conditional mean depends only on (x_{i−1}, x_i), so R, R̂ and V̂ of every
    predictor follow from the transition counts of each simulated stream.
    """
    rng = np.random.default_rng(20240726)
    states, reps, n_tokens = 4, 4000, 400
    transition = 0.6 * np.eye(states) + 0.4 * rng.dirichlet(np.full(states, 0.7), size=states)
    predictors = rng.dirichlet(np.full(states, 2.0), size=(16, states))
    predictors[0] = transition
    predictors[1] = 0.9 * transition + 0.1 / states
    prior = 0.5 ** np.arange(1, 17)
    prior /= prior.sum()
    alpha = 0.1
    loss_min, loss_range = smoothed_loss_range(alpha, states)
    bits = -np.log2((1 - alpha) * predictors + alpha / states)  # [j, previous, next]
    top1 = (predictors.argmax(-1)[..., None] != np.arange(states)).astype(float)
    statements = [
        (bits, (predictors * bits).sum(-1), loss_min, loss_range),
        (top1, 1.0 - predictors.max(-1), 0.0, 1.0),
    ]
    state = np.zeros(reps, dtype=np.int64)
    counts = np.zeros(reps * states * states)
    cumulative = transition.cumsum(1)
    for _ in range(n_tokens):
        following = (rng.random(reps)[:, None] > cumulative[state]).sum(1)
        flat = (np.arange(reps) * states + state) * states + following
        counts += np.bincount(flat, minlength=reps * states * states)
        state = following
    counts = counts.reshape(reps, states, states)
    return {
        "counts": counts,
        "transition": transition,
        "statements": statements,
        "prior": prior,
        "n_tokens": n_tokens,
        "reps": reps,
    }


_MARKOV_CACHE: dict[str, Any] = {}


def _freedman_failures(variant: str, delta: float = 0.05) -> tuple[int, int]:
    """Repetitions where some (predictor, statement) has R > its certified value.

    The certified value is version 2's exhaustive one (U = R̂, W = V̂): the smallest of the
    Azuma form and the 60 Freedman forms, K_c = 61·2 events, through bound.py's own
    ``freedman_coefficients`` and ``azuma_term``. ``variant`` "no_variance" drops the
    ψ(λ)/(λΔ)·V̂ term (too small: it must be caught).
    """
    if not _MARKOV_CACHE:
        _MARKOV_CACHE.update(_markov_freedman_data())
    data = _MARKOV_CACHE
    counts, n_tokens = data["counts"], data["n_tokens"]
    context_counts = counts.sum(2)
    events = FORMS_PER_STATEMENT * len(data["statements"])
    failed = np.zeros(data["reps"], dtype=bool)
    for loss, centre, low, width in data["statements"]:
        assert loss.min() >= low - 1e-12 and loss.max() <= low + width + 1e-12
        assert centre.min() >= low - 1e-12 and centre.max() <= low + width + 1e-12
        square = (loss - centre[..., None]) ** 2
        empirical = np.einsum("rpq,jpq->rj", counts, loss) / n_tokens
        square_mean = np.einsum("rpq,jpq->rj", counts, square) / n_tokens
        conditional = np.einsum(
            "rp,jp->rj", context_counts, (data["transition"][None] * loss).sum(-1)
        )
        conditional /= n_tokens
        for j, weight in enumerate(data["prior"]):
            nats = -math.log(weight)
            table = np.array(freedman_coefficients(width, nats, n_tokens, events, delta))
            coefficient = 0.0 * table[:, 1] if variant == "no_variance" else table[:, 1]
            freedman = (square_mean[:, j, None] * coefficient[None] + table[None, :, 2]).min(1)
            azuma = azuma_term(width, nats, n_tokens, events, delta)
            certified = empirical[:, j] + np.minimum(azuma, freedman)
            failed |= conditional[:, j] > certified
    return int(failed.sum()), int(data["reps"])


def test_freedman_form_coverage_on_dependent_markov_source() -> None:
    failures, reps = _freedman_failures("correct")
    limit = binomial_upper_limit(reps, 0.05, MARGIN_TAIL)
    assert failures <= limit, f"{failures}/{reps} failures, allowed {limit} at δ = 0.05"


def test_freedman_form_without_variance_term_is_caught() -> None:
    failures, reps = _freedman_failures("no_variance")
    limit = binomial_upper_limit(reps, 0.05, MARGIN_TAIL)
    assert failures > limit, f"dropping ψ(λ)V̂/(λΔ) failed only {failures}/{reps} times"


def _stopped_stream_failures(with_length_term: bool) -> tuple[int, int]:
    """Azuma at a data-dependent length n (the reason for ln(n(n+1))).

    Losses are fair coin flips in {0, 1} (Δ = 1, μ_i = 1/2, one hypothesis, K = 1).
    The stream stops at the first m ≤ 1000 where R − R̂_m exceeds the *version 1* term
    sqrt(ln(1/δ)/(2m)) (else at 1000). Version 1's term assumed a fixed n and fails at
    this n far more often than δ; version 2's, with ln(n(n+1)), holds at every length
    at once and so at any stopping time.
    """
    rng = np.random.default_rng(99)
    reps, longest, delta = 20000, 1000, 0.05
    lengths = np.arange(1, longest + 1, dtype=np.float64)
    v1_term = np.sqrt(math.log(1 / delta) / (2 * lengths))
    v2_term = np.array([azuma_term(1.0, 0.0, int(m), 1, delta) for m in lengths])
    v1_check = np.array([complexity_term(1.0, 0.0, int(m), 1, delta) for m in lengths])
    assert np.allclose(v1_check, v1_term, rtol=1e-14)
    failures = 0
    for _ in range(reps // 5000):
        flips = rng.integers(0, 2, size=(5000, longest), dtype=np.int8)
        gap = 0.5 - np.cumsum(flips, axis=1, dtype=np.int32) / lengths  # R − R̂_m
        crossed = gap > v1_term
        stop = np.where(crossed.any(1), crossed.argmax(1), longest - 1)
        gap_at_stop = gap[np.arange(gap.shape[0]), stop]
        term = v2_term[stop] if with_length_term else v1_term[stop]
        failures += int((gap_at_stop > term).sum())
    return failures, reps


def test_azuma_with_length_term_covers_a_data_dependent_length() -> None:
    failures, reps = _stopped_stream_failures(with_length_term=True)
    limit = binomial_upper_limit(reps, 0.05, MARGIN_TAIL)
    assert failures <= limit, f"{failures}/{reps} failures, allowed {limit} at δ = 0.05"


def test_azuma_without_length_term_is_caught_at_a_data_dependent_length() -> None:
    failures, reps = _stopped_stream_failures(with_length_term=False)
    limit = binomial_upper_limit(reps, 0.05, MARGIN_TAIL)
    assert failures > limit, f"version 1's term failed only {failures}/{reps} times"


def _square_bound_failures(method: str, square_range: float) -> tuple[int, int]:
    """Failures of V̂ ≤ W over repeated samples of chunk means of q in [0, Δ²].

    Two-point chunk means {0, Δ²} with probability 1/2 each (Hoeffding's worst case;
    Δ = 4 so Δ² = 16): W = q̄ + deviation(range). The deviation must use the range of q,
    Δ², not the loss's Δ.
    """
    rng = np.random.default_rng(17)
    reps, samples, delta, loss_range = 20000, 50, 0.05, 4.0
    drawn = loss_range**2 * rng.integers(0, 2, size=(reps, samples))
    full = loss_range**2 / 2  # V̂ of the population
    variance = drawn.var(1, ddof=1)
    deviations = np.array(
        [sampling_term(method, square_range, v, samples, 1, delta) for v in variance]  # type: ignore[arg-type]
    )
    return int((full > drawn.mean(1) + deviations).sum()), reps


@pytest.mark.parametrize("method", ["hoeffding", "bernstein"])
def test_square_bound_coverage_at_range_delta_squared(method: str) -> None:
    failures, reps = _square_bound_failures(method, 16.0)
    limit = binomial_upper_limit(reps, 0.05, MARGIN_TAIL)
    assert failures <= limit, f"{failures}/{reps} failures, allowed {limit} at δ = 0.05"


def test_square_bound_with_the_loss_range_is_caught() -> None:
    failures, reps = _square_bound_failures("hoeffding", 4.0)  # Δ instead of Δ²
    limit = binomial_upper_limit(reps, 0.05, MARGIN_TAIL)
    assert failures > limit, f"range Δ for q failed only {failures}/{reps} times"


def _units() -> tuple[np.ndarray, np.ndarray]:
    """300 units: token counts n_u in 1..400, weights w_u = n_u + extra (bytes-like) ≥ n_u."""
    rng = np.random.default_rng(23)
    tokens = rng.integers(1, 401, size=300)
    weights = tokens + rng.integers(0, 200, size=300)
    return tokens, weights


def _sampled_draws(accepted: int, reps: int, seed: int) -> np.ndarray:
    """D (draws until the G-th acceptance) of DESIGN.md's scheme, simulated as written:
    units i.i.d. with probability w_u/W, each accepted with probability n_u/w_u."""
    tokens, weights = _units()
    rng = np.random.default_rng(seed)
    ratio = weights.sum() / tokens.sum()
    width = int(accepted * ratio * 4 + 60)
    units = rng.choice(tokens.size, size=(reps, width), p=weights / weights.sum())
    accept = rng.random((reps, width)) < tokens[units] / weights[units]
    running = np.cumsum(accept, axis=1)
    assert (running[:, -1] >= accepted).all(), "widen the simulation"
    return (running >= accepted).argmax(1) + 1


@pytest.mark.parametrize("accepted", [1, 5, 40])
def test_sampled_n_lower_bound_covers_n(accepted: int) -> None:
    tokens, weights = _units()
    n, total_weight, delta_n = int(tokens.sum()), int(weights.sum()), 0.05
    drawn = _sampled_draws(accepted, 20000, seed=accepted)
    lower = {
        int(d): n_lower_bound(total_weight, accepted, int(d), delta_n)[0] for d in np.unique(drawn)
    }
    n_lo = np.array([lower[int(d)] for d in drawn])
    failures, reps = int((n_lo > n).sum()), drawn.size
    limit = binomial_upper_limit(reps, delta_n, MARGIN_TAIL)
    assert failures <= limit, f"n_lo > n in {failures}/{reps}, allowed {limit} at δ_n = 0.05"
    # not vacuous: with 40 accepted units the median n_lo is most of n
    if accepted == 40:
        assert np.median(n_lo) > 0.7 * n


def test_sampled_n_from_the_mean_acceptance_is_caught() -> None:
    tokens, weights = _units()
    n, total_weight = int(tokens.sum()), int(weights.sum())
    drawn = _sampled_draws(40, 20000, seed=40)
    wrong = np.floor(total_weight * 40 / drawn)  # W·G/D: the point estimate, no quantile
    failures = int((wrong > n).sum())
    limit = binomial_upper_limit(drawn.size, 0.05, MARGIN_TAIL)
    assert failures > limit, f"the point estimate exceeded n only {failures} times"


# --------------------------------------------------------------------------- v2 invalid input


V2_INVALID_CASES = [
    (_metric(0, square_mean=None), "metrics[0].square_mean"),  # one metric without squares
    (_metric(0, square_variance=None), "metrics[0].square_variance"),
    (_metric(0, square_mean=-0.1), "metrics[0].square_mean"),
    (_metric(2, square_mean=1.5), "metrics[2].square_mean"),  # above Δ² = 1
    (_metric(0, square_variance=-1.0), "metrics[0].square_variance"),
    (_metric(0, square_variance=1e9), "metrics[0].square_variance"),
    (_top(bound_version=3), "bound_version"),
    (_top(delta_n=0.01), "delta_n"),  # delta_n without sampled mode
    (_top(search_scored_sample="yes"), "search_scored_sample"),
    (_top(n_tokens=None), "n_tokens"),
    (_top(sampled={"total_weight": 10, "accepted": 200, "drawn": 230}, n_tokens=5), "n_tokens"),
]

SAMPLED_INVALID_CASES = [
    (_top(sampled={"total_weight": 10, "accepted": 200, "drawn": 100}), "sampled.drawn"),
    (_top(sampled={"total_weight": 0, "accepted": 200, "drawn": 230}), "sampled.total_weight"),
    (_top(sampled={"total_weight": 10, "accepted": 200}), "sampled.drawn"),
    (_top(sampled={"total_weight": 10, "accepted": 200, "drawn": 230, "x": 1}), None),
    (_top(sampled=[1, 2, 3]), "sampled"),
    (_top(delta_n=0.05), "delta_n"),  # not below δ
    (_top(delta_n=0.0), "delta_n"),
    (_top(sampling_method="exhaustive"), "sampling_method"),
    (_metric(1, samples=199), "metrics[1].samples"),  # must equal sampled.accepted
    (_top(bound_version=1), "sampled"),  # v1 has no sampled mode
]


@pytest.mark.parametrize(("mutate", "field"), V2_INVALID_CASES)
def test_v2_invalid_input_names_the_field(mutate: Any, field: str) -> None:
    data = json.loads(json.dumps(v2_input()))
    mutate(data)
    with pytest.raises(InvalidInputError) as raised:
        bound_input_from_dict(data)
    assert raised.value.field == field
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(("mutate", "field"), SAMPLED_INVALID_CASES)
def test_sampled_invalid_input_names_the_field(mutate: Any, field: str | None) -> None:
    data = json.loads(json.dumps(sampled_input()))
    mutate(data)
    with pytest.raises(InvalidInputError) as raised:
        bound_input_from_dict(data)
    assert raised.value.field == field
    assert "\n" not in str(raised.value)


def test_v1_refuses_sampled_mode() -> None:
    data = sampled_input(bound_version=1)
    for metric in data["metrics"]:
        del metric["square_mean"], metric["square_variance"]
    with pytest.raises(InvalidInputError) as raised:
        bound_input_from_dict(data)
    assert raised.value.field == "sampled"


def test_v2_result_reads_back_and_rejects_v1_keys() -> None:
    result = compute_bound(bound_input_from_dict(sampled_input()))
    as_dict = json.loads(json.dumps(bound_result_to_dict(result)))
    assert bound_result_from_dict(as_dict) == result
    assert as_dict["bound_version"] == 2 and as_dict["n_tokens"] is None
    assert as_dict["sampled"] == {"total_weight": 6_000_000, "accepted": 200, "drawn": 230}
    assert set(as_dict["metrics"][0]) >= {"azuma", "freedman", "freedman_lambda", "certified_by"}
    broken = json.loads(json.dumps(as_dict))
    broken["bound_version"] = 1
    with pytest.raises(InvalidInputError, match="bound_version"):
        bound_result_from_dict(broken)
    broken = json.loads(json.dumps(as_dict))
    broken["metrics"][0]["certified_by"] = "chernoff"
    with pytest.raises(InvalidInputError, match="certified_by"):
        bound_result_from_dict(broken)
    broken = json.loads(json.dumps(as_dict))
    del broken["metrics"][0]["azuma"]
    with pytest.raises(InvalidInputError, match=r"metrics\[0\]\.azuma"):
        bound_result_from_dict(broken)


# --------------------------------------------------------------------------- v2 CLI and goldens


def test_cli_v2_table_shows_the_forms(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _write(tmp_path / "in.json", v2_input())
    assert run_cli(["bound", str(source)]) == 0
    out = capsys.readouterr().out
    assert "form" in out and "Freedman λ=" in out and "Azuma" in out and "…" not in out
    assert "Freedman form" in out and "probability ≥ 95%" in out
    result = compute_bound(bound_input_from_dict(v2_input()))
    # printed bounds are rounded up, never to nearest
    assert round_up_text(result.summary["bits_per_token_bound"], decimals=4) in out


def test_cli_v2_json_carries_every_form(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _write(tmp_path / "in.json", sampled_input())
    assert run_cli(["bound", str(source), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = bound_result_to_dict(compute_bound(bound_input_from_dict(sampled_input())))
    assert printed == json.loads(json.dumps(expected))
    for metric in printed["metrics"]:
        assert metric["certified_by"] in ("azuma", "freedman")
        assert metric["bound"] == min(metric["azuma"], metric["freedman"])
        assert 0 < metric["freedman_lambda"] < 1
    assert printed["n_lower_bound"] == n_lower_bound(6_000_000, 200, 230, 0.005)[0]


def test_cli_sampled_table_says_n_is_a_lower_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write(tmp_path / "in.json", sampled_input())
    assert run_cli(["bound", str(source)]) == 0
    out = capsys.readouterr().out
    assert "sampled mode: n ≥" in out and "rounded down" in out and "200 accepted" in out


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({**sampled_input(), "n_tokens": 10}, "n_tokens"),
        (v2_input(delta_n=0.01), "delta_n"),
        (v2_input(bound_version=7), "bound_version"),
        (sampled_input(sampled={"total_weight": 5, "accepted": 9, "drawn": 3}), "sampled.drawn"),
    ],
)
def test_cli_v2_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: dict[str, Any], field: str
) -> None:
    source = _write(tmp_path / "in.json", data)
    assert run_cli(["bound", str(source)]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and field in err and "\n" not in err


@pytest.mark.parametrize("name", ["v2_exact", "v2_sampled", "v2_no_squares"])
def test_golden_v2_bound_objects(name: str) -> None:
    """Version 2 bound objects for fixed inputs stay what tests/fixtures/bound/ recorded."""
    data = json.loads((FIXTURES / f"{name}_input.json").read_text())
    expected = json.loads((FIXTURES / f"{name}_bound.json").read_text())
    got = bound_result_to_dict(compute_bound(bound_input_from_dict(data)))
    assert _close(got, expected), json.dumps(got, indent=2)
    assert bound_result_from_dict(expected) == bound_result_from_dict(got) or _close(got, expected)


def test_v1_ignores_square_statistics() -> None:
    """A version-1 recomputation of a version-2 risk file: the squares are not read."""
    with_squares = compute_bound(bound_input_from_dict(v2_input(bound_version=1)))
    without = compute_bound(bound_input_from_dict(example_input(bound_version=1)))
    assert bound_result_to_dict(with_squares) == bound_result_to_dict(without)
    assert all(metric.square_mean is None for metric in with_squares.metrics)
