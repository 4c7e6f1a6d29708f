"""certify.bound_reference: an independent recomputation agrees with certify.bound.

The reference shares no code with bound.py (checked below); both must give every
statement's forms and certified value to 1e-12 relative on the golden fixtures and on
many random inputs, and the reference must flag a tampered number.
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import certify.bound_reference as reference_module
from certify.bound import bound_input_from_dict, bound_result_to_dict, compute_bound
from certify.bound_reference import (
    beta_lower_quantile,
    reference_bound,
    reference_mismatches,
)
from certify.errors import InvalidInputError

FIXTURES = Path(__file__).parent / "fixtures" / "bound"
GOLDEN_INPUTS = ["input.json", "v2_exact_input.json", "v2_sampled_input.json"]
GOLDEN_INPUTS += ["v2_no_squares_input.json"]
REL = 1e-12


def _recorded(data: dict[str, Any]) -> dict[str, Any]:
    """The bound object as a certificate stores it (through JSON)."""
    return json.loads(json.dumps(bound_result_to_dict(compute_bound(bound_input_from_dict(data)))))


def _agree(recorded: dict[str, Any]) -> None:
    """Every number the reference recomputes matches bound.py's to 1e-12 relative."""
    again = reference_bound(recorded)
    assert reference_mismatches(recorded) == []
    assert again["prior_nats"] == pytest.approx(recorded["prior"]["nats"], rel=REL)
    if recorded.get("bound_version", 1) == 2:
        assert again["statement_events"] == recorded["statement_events"]
        assert again["sampling_events"] == recorded["sampling_events"]
        if recorded["n_lower_bound"] is not None:
            assert again["acceptance_lower_bound"] == pytest.approx(
                recorded["acceptance_lower_bound"], rel=REL
            )
            # equal unless the two quantiles straddle an integer boundary of W·p
            difference = abs(again["n_lower_bound"] - recorded["n_lower_bound"])
            assert difference <= (1 if _straddles(recorded) else 0)
    for mine, theirs in zip(recorded["metrics"], again["metrics"], strict=True):
        for key in ("loss_min", "loss_range", "bound", "mean_bound", "azuma", "freedman"):
            if key in mine and mine[key] is not None:
                assert theirs[key] == pytest.approx(mine[key], rel=REL, abs=1e-300), key
        if mine.get("freedman_lambda") is not None:
            assert theirs["freedman_lambda"] == pytest.approx(mine["freedman_lambda"], rel=REL)
        if mine.get("square_bound") is not None:
            assert theirs["square_bound"] == pytest.approx(mine["square_bound"], rel=REL)
        assert theirs["complexity_term"] == pytest.approx(
            mine["complexity_term"], rel=1e-11, abs=REL * abs(mine["bound"])
        )


def _straddles(recorded: dict[str, Any]) -> bool:
    product = recorded["sampled"]["total_weight"] * recorded["acceptance_lower_bound"]
    return abs(product - round(product)) <= 1e-9 * max(product, 1.0)


@pytest.mark.parametrize("name", GOLDEN_INPUTS)
def test_agrees_on_the_golden_fixtures(name: str) -> None:
    data = json.loads((FIXTURES / name).read_text())
    if name == "input.json":
        _agree(json.loads((FIXTURES / "bound.json").read_text()))  # the v1 golden as stored
        data = {**data, "bound_version": 1}
    _agree(_recorded(data))
    stored = json.loads((FIXTURES / name.replace("input", "bound")).read_text())
    assert reference_mismatches(stored) == []


def test_module_is_independent_of_bound_py_and_scipy() -> None:
    tree = ast.parse(Path(reference_module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert "certify.bound" not in imported
    assert not any(name.split(".")[0] in ("scipy", "numpy", "certify.bound") for name in imported)
    assert imported <= {"__future__", "math", "collections.abc", "fractions", "typing"} | {
        "certify.errors"
    }


# --------------------------------------------------------------------------- the Beta quantile


def test_beta_quantile_closed_forms() -> None:
    assert beta_lower_quantile(1, 1, 0.0625) == pytest.approx(0.0625, rel=1e-15)
    assert beta_lower_quantile(5, 5, 0.05) == pytest.approx(0.05**0.2, rel=1e-15)
    expected = -math.expm1(math.log1p(-0.05) / 10)  # Beta(1, 10): 1 − (1 − δ)^(1/10)
    assert beta_lower_quantile(1, 10, 0.05) == pytest.approx(expected, rel=1e-14)
    # the exact root (mpmath, 40 digits): 0.001717831772994303998…
    assert beta_lower_quantile(1000, 535_845, 0.005) == pytest.approx(
        0.001717831772994303998, rel=5e-16
    )
    # level ≥ 1/2 brackets on [0, 1]: Beta(1, 1) median
    assert beta_lower_quantile(1, 1, 0.5) == pytest.approx(0.5, rel=1e-15)
    with pytest.raises(InvalidInputError):
        beta_lower_quantile(3, 2, 0.05)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 3000),
    st.integers(0, 20_000),
    st.floats(min_value=1e-9, max_value=0.45),
)
def test_beta_quantile_matches_scipy(accepted: int, extra: int, level: float) -> None:
    from scipy import special

    drawn = accepted + extra
    quantile = beta_lower_quantile(accepted, drawn, level)
    # scipy's inverse is good to ~1e-11 (it is off by 2e-12 in a case above), its CDF to ~1e-15
    assert quantile == pytest.approx(
        float(special.betaincinv(accepted, drawn - accepted + 1, level)), rel=1e-10
    )
    assert float(special.betainc(accepted, drawn - accepted + 1, quantile)) == pytest.approx(
        level, rel=1e-9
    )


# --------------------------------------------------------------------------- random inputs


@st.composite
def recorded_bounds(draw: st.DrawFn) -> dict[str, Any]:
    """Random certify-bound inputs of both versions, every mode, as recorded objects."""
    version = draw(st.sampled_from([1, 2, 2, 2]))
    vocab_size = draw(st.integers(2, 200_000))
    method = draw(st.sampled_from(["bernstein", "hoeffding", "exhaustive"]))
    sampled_mode = version == 2 and method != "exhaustive" and draw(st.booleans())
    squares = version == 2 and draw(st.booleans())
    accepted = draw(st.integers(2, 2000))
    samples = accepted if sampled_mode else draw(st.integers(2, 10**5))
    metrics = []
    alphas = draw(st.lists(st.floats(1e-6, 0.9), min_size=0, max_size=3, unique=True))
    ks = draw(st.lists(st.integers(1, 1), min_size=0 if alphas else 1, max_size=1))
    for label in [("bits", a) for a in alphas] + [("top_k_error", k) for k in ks]:
        if label[0] == "bits":
            alpha = label[1]
            low = -math.log1p(-alpha * (vocab_size - 1) / vocab_size) / math.log(2)
            width = math.log1p((1 - alpha) * vocab_size / alpha) / math.log(2)
            entry: dict[str, Any] = {"name": "bits", "alpha": alpha}
        else:
            if label[1] >= vocab_size:
                continue
            low, width = 0.0, 1.0
            entry = {"name": "top_k_error", "k": label[1]}
        mean = min(low + draw(st.floats(0, 1)) * width, low + width)
        entry.update(
            sample_mean=mean,
            sample_variance=draw(st.floats(0, 1)) * (mean - low) * (low + width - mean),
            samples=samples,
        )
        if squares:
            square = draw(st.floats(0, 0.5)) * width**2
            entry.update(
                square_mean=square,
                square_variance=draw(st.floats(0, 1)) * square * (width**2 - square),
            )
        metrics.append(entry)
    if not metrics:
        metrics.append({"name": "top_k_error", "k": 1, "sample_mean": 0.5})
        metrics[0].update(sample_variance=0.1, samples=samples)
        if squares:
            metrics[0].update(square_mean=0.2, square_variance=0.05)
    data: dict[str, Any] = {
        "bound_version": version,
        "vocab_size": vocab_size,
        "size_bytes": draw(st.integers(1, 10**10)),
        "hyperparameter_configurations": draw(st.integers(1, 1000)),
        "delta": draw(st.floats(1e-6, 0.5)),
        "delta_split": draw(st.floats(0.05, 0.95)),
        "sampling_method": method,
        "heldout": draw(st.booleans()),
        "metrics": metrics,
    }
    if version == 2:
        data["search_scored_sample"] = draw(st.booleans())
    if sampled_mode:
        data["sampled"] = {
            "total_weight": draw(st.integers(accepted, 10**13)),
            "accepted": accepted,
            "drawn": accepted + draw(st.integers(0, 2 * accepted)),
        }
        if draw(st.booleans()):
            data["delta_n"] = data["delta"] * draw(st.floats(0.01, 0.5))
    else:
        data["n_tokens"] = draw(st.integers(1, 10**13))
    return _recorded(data)


@settings(max_examples=150, deadline=None)
@given(recorded_bounds())
def test_agrees_with_bound_py_on_random_inputs(recorded: dict[str, Any]) -> None:
    _agree(recorded)


# --------------------------------------------------------------------------- tampering


def _exact_v2() -> dict[str, Any]:
    return json.loads((FIXTURES / "v2_exact_bound.json").read_text())


def _sampled_v2() -> dict[str, Any]:
    return json.loads((FIXTURES / "v2_sampled_bound.json").read_text())


def _set(path: tuple[Any, ...], value: Any, source: Any = _exact_v2) -> dict[str, Any]:
    recorded = source()
    target = recorded
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value(target[path[-1]]) if callable(value) else value
    return recorded


TAMPERED = [
    (_set(("metrics", 0, "bound"), lambda v: v * (1 - 1e-9)), "metrics[0].bound"),
    (_set(("metrics", 1, "freedman"), lambda v: v - 1e-6), "metrics[1].freedman"),
    (_set(("metrics", 2, "azuma"), lambda v: v + 1e-3), "metrics[2].azuma"),
    (_set(("metrics", 0, "square_bound"), lambda v: v / 2), "metrics[0].square_bound"),
    (_set(("metrics", 0, "freedman_lambda"), 0.5), "metrics[0].freedman_lambda"),
    (_set(("metrics", 0, "certified_by"), "azuma"), "metrics[0].certified_by"),
    (_set(("metrics", 3, "loss_range"), 0.5), "metrics[3].loss_range"),
    (_set(("prior", "nats"), lambda v: v - 100), "prior.nats"),
    (_set(("statement_events",), 5), "statement_events"),
    (_set(("sampling_events",), 5), "sampling_events"),
    (_set(("summary", "bits_per_token_bound"), 1.0), "summary.bits_per_token_bound"),
    (_set(("n_lower_bound",), lambda v: v * 2, _sampled_v2), "n_lower_bound"),
    (_set(("acceptance_lower_bound",), 0.99, _sampled_v2), "acceptance_lower_bound"),
    (_set(("metrics", 0, "sampling_term"), 0.0, _sampled_v2), "metrics[0].sampling_term"),
]


@pytest.mark.parametrize(("recorded", "path"), TAMPERED)
def test_tampered_numbers_are_flagged(recorded: dict[str, Any], path: str) -> None:
    problems = reference_mismatches(recorded)
    assert any(problem.startswith(f"bound.{path}") for problem in problems), problems


def test_changed_inputs_change_every_bound() -> None:
    # a smaller claimed variance of q is an input: the recorded numbers then disagree
    recorded = _exact_v2()
    recorded["metrics"][0]["square_mean"] /= 2
    assert any("metrics[0]" in problem for problem in reference_mismatches(recorded))


def test_a_delta_split_above_delta_is_refused() -> None:
    recorded = _exact_v2()
    recorded["delta_c"] = recorded["delta"]
    (problem,) = reference_mismatches(recorded)
    assert "exceeds" in problem and "\n" not in problem
