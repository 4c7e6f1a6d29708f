"""Tests of certify.quantize: group-wise RTN, the scale grid and dequantization."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from certify.errors import InvalidInputError
from certify.quantize import (
    FRACTIONAL_POWERS,
    QuantizedTensor,
    dequantize,
    quantize_tensor,
    scale_grid,
)
from certify.quantize.rtn import needed_scales, pick_scale_exponent, search_group_parameters


def _per_element(q: QuantizedTensor, per_group: np.ndarray) -> np.ndarray:
    return np.repeat(per_group, q.group_size)[: q.numel].reshape(q.shape)


def _assert_within_half_step(weights: np.ndarray, q: QuantizedTensor) -> None:
    decoded = dequantize(q)
    scales = _per_element(q, q.scales()).astype(np.float64)
    error = np.abs(decoded.astype(np.float64) - weights.astype(np.float64))
    # half a step, plus float32 rounding of the division and the product
    slack = scales * (1 << q.bits) * 2.0**-22 + np.abs(weights) * 2.0**-22
    assert (error <= scales / 2 + slack).all()


def test_fractional_powers_are_float32_of_two_to_the_sixteenths() -> None:
    expected = np.array([2 ** (j / 16) for j in range(16)], dtype=np.float32)
    assert np.array_equal(FRACTIONAL_POWERS, expected)
    grid = scale_grid(-20)
    assert grid.dtype == np.float32 and (np.diff(grid) > 0).all()
    assert grid[0] == 2.0**-20 and grid[16] == 2.0**-19


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("symmetric", [False, True])
def test_error_at_most_half_a_scale_step(bits: int, symmetric: bool) -> None:
    rng = np.random.default_rng(bits)
    weights = (rng.standard_normal((64, 256)) * 0.02).astype(np.float32)
    weights[3, 5] = 0.4  # an outlier
    q = quantize_tensor(weights, bits, 64, symmetric=symmetric)
    assert q.codes.dtype == np.uint8 and q.codes.shape == (weights.size,)
    assert int(q.codes.max()) < (1 << bits)
    assert q.num_groups == weights.size // 64
    assert q.zero_points.size == (0 if symmetric else q.num_groups)
    _assert_within_half_step(weights, q)
    decoded = dequantize(q)
    assert decoded.dtype == np.float32 and decoded.shape == weights.shape


@settings(max_examples=60, deadline=None)
@given(
    weights=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=3, max_side=40),
        elements=st.floats(-1e4, 1e4, width=32),
    ),
    bits=st.integers(2, 8),
    group_size=st.integers(1, 300),
    symmetric=st.booleans(),
)
def test_half_step_bound_any_shape_and_partial_groups(
    weights: np.ndarray, bits: int, group_size: int, symmetric: bool
) -> None:
    q = quantize_tensor(weights, bits, group_size, symmetric=symmetric)
    assert q.num_groups == math.ceil(weights.size / group_size)
    assert q.scale_codes.shape == (q.num_groups,)
    _assert_within_half_step(weights, q)


def test_partial_last_group_has_its_own_scale() -> None:
    weights = np.concatenate([np.full(100, 0.01), np.array([5.0])]).astype(np.float32)
    q = quantize_tensor(weights, 4, 100)
    scales = q.scales()
    assert q.num_groups == 2 and scales[1] > 100 * scales[0]
    assert abs(float(dequantize(q)[0]) - 0.01) <= scales[0] / 2


def test_zeros_and_constant_groups_decode_exactly() -> None:
    zeros = np.zeros((4, 32), dtype=np.float32)
    assert np.array_equal(dequantize(quantize_tensor(zeros, 4, 32)), zeros)
    constant = np.full(64, -0.5, dtype=np.float32)
    decoded = dequantize(quantize_tensor(constant, 3, 32))
    q = quantize_tensor(constant, 3, 32)
    assert np.abs(decoded - constant).max() <= q.scales().max() / 2


def test_deterministic_and_dtype_independent() -> None:
    rng = np.random.default_rng(7)
    weights = rng.standard_normal((33, 70)).astype(np.float32)
    first = quantize_tensor(weights, 3, 32)
    assert first == quantize_tensor(weights.copy(), 3, 32)
    assert first == quantize_tensor(weights.astype(np.float64), 3, 32)
    assert np.array_equal(dequantize(first), dequantize(first))


def test_groups_follow_rows_when_they_divide() -> None:
    weights = np.zeros((3, 64), dtype=np.float32)
    weights[1] = 1.0  # row 1 alone has a large range
    q = quantize_tensor(weights, 4, 32)
    scales = q.scales().reshape(3, 2)
    assert (scales[1] > scales[0]).all() and (scales[0] == scales[2]).all()


@pytest.mark.parametrize("bits", [0, 1, 9, 16, -4])
def test_bits_out_of_range(bits: int) -> None:
    with pytest.raises(InvalidInputError, match="bits"):
        quantize_tensor(np.ones(8, np.float32), bits, 4)


@pytest.mark.parametrize("group_size", [0, -1, -128, 1 << 40])
def test_bad_group_size(group_size: int) -> None:
    with pytest.raises(InvalidInputError, match="group_size"):
        quantize_tensor(np.ones(8, np.float32), 4, group_size)


def test_non_integer_settings() -> None:
    with pytest.raises(InvalidInputError, match="bits"):
        quantize_tensor(np.ones(8, np.float32), 4.0, 4)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="group_size"):
        quantize_tensor(np.ones(8, np.float32), 4, True)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(bad: float) -> None:
    weights = np.ones(300, dtype=np.float32)
    weights[257] = bad  # in the partial last group
    with pytest.raises(InvalidInputError, match="weights"):
        quantize_tensor(weights, 4, 128)
    weights = np.ones(256, dtype=np.float32)
    weights[3] = bad
    with pytest.raises(InvalidInputError, match="weights"):
        quantize_tensor(weights, 4, 128)


def test_huge_or_non_numeric_weights() -> None:
    with pytest.raises(InvalidInputError, match="weights"):
        quantize_tensor(np.array([3e38, -3e38], dtype=np.float32), 4, 2)
    with pytest.raises(InvalidInputError, match="weights"):
        quantize_tensor(np.array(["a", "b"]), 4, 2)


def _weighted_errors(
    values: np.ndarray, importance: np.ndarray, codes: np.ndarray, zeros: np.ndarray, bits: int
) -> np.ndarray:
    """Per group Σ importance · (value − decoded)², decoded with the given parameters."""
    exponent = _exponent_of(values, bits)
    scales = scale_grid(exponent)[codes][:, None].astype(np.float32)
    q = np.clip(np.rint(values / scales) + zeros[:, None], 0, (1 << bits) - 1)
    decoded = ((q - zeros[:, None]) * scales).astype(np.float32)
    return np.asarray((importance * (values - decoded) ** 2).sum(axis=1, dtype=np.float64))


def _exponent_of(values: np.ndarray, bits: int) -> int:
    return pick_scale_exponent(needed_scales(values.min(axis=1), values.max(axis=1), bits, False))


def _heavy_tailed_groups(groups: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = (rng.standard_t(3, (groups, size)) * 0.02).astype(np.float32)
    importance = rng.gamma(1.0, 1.0, (groups, size)).astype(np.float32)
    return values, importance


def test_scale_search_without_steps_is_rtns_rule() -> None:
    values, importance = _heavy_tailed_groups(64, 128, seed=1)
    exponent = _exponent_of(values, 4)
    codes, zeros = search_group_parameters(values, importance, 4, False, exponent, 0)
    rtn = quantize_tensor(values, 4, 128)
    assert rtn.scale_exponent == exponent
    assert np.array_equal(codes, rtn.scale_codes) and np.array_equal(zeros, rtn.zero_points)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_scale_search_never_loses_to_rtn_and_usually_wins(bits: int) -> None:
    values, importance = _heavy_tailed_groups(256, 128, seed=bits)
    exponent = _exponent_of(values, bits)
    rtn = search_group_parameters(values, importance, bits, False, exponent, 0)
    searched = search_group_parameters(values, importance, bits, False, exponent, 8)
    before = _weighted_errors(values, importance, *rtn, bits)
    after = _weighted_errors(values, importance, *searched, bits)
    assert (after <= before).all()
    assert after.sum() < 0.9 * before.sum()  # heavy tails: clipping the extremes pays
    assert (searched[0] <= rtn[0]).all() and (searched[0] >= rtn[0].astype(int) - 8).all()
    assert ((searched[1] >= 0) & (searched[1] <= (1 << bits) - 1)).all()


def test_scale_search_follows_the_importance() -> None:
    """An outlier that does not matter is clipped; one that matters keeps its range."""
    values = np.array([[-1.0, -0.1, 0.0, 0.1, 0.2, 0.3, 0.35, 3.0]], dtype=np.float32)
    exponent = _exponent_of(values, 2)
    rtn_code = search_group_parameters(values, np.ones_like(values), 2, False, exponent, 0)[0]
    ignored = np.array([[1, 9, 9, 9, 9, 9, 9, 0.0]], dtype=np.float32)
    vital = np.array([[1, 1, 1, 1, 1, 1, 1, 1e6]], dtype=np.float32)
    outlier_only = np.array([[0, 0, 0, 0, 0, 0, 0, 1.0]], dtype=np.float32)
    chosen = {
        name: search_group_parameters(values, weights, 2, False, exponent, 16)
        for name, weights in (("ignored", ignored), ("vital", vital))
    }
    assert chosen["ignored"][0][0] < rtn_code[0]
    clipped = _weighted_errors(values, outlier_only, *chosen["ignored"], 2)[0]
    kept = _weighted_errors(values, outlier_only, *chosen["vital"], 2)[0]
    assert clipped > 1.0 and kept < 0.01  # squared error of the 3.0


def test_scale_search_symmetric_keeps_the_zero_point() -> None:
    values, importance = _heavy_tailed_groups(32, 64, seed=7)
    exponent = pick_scale_exponent(
        needed_scales(values.min(axis=1), values.max(axis=1), 4, symmetric=True)
    )
    codes, zeros = search_group_parameters(values, importance, 4, True, exponent, 8)
    assert (zeros == 8).all() and codes.dtype == np.uint8


def test_scale_search_bad_input() -> None:
    values = np.zeros((2, 4), dtype=np.float32)
    with pytest.raises(InvalidInputError, match="scale_search_steps"):
        search_group_parameters(values, values, 4, False, -20, -1)
    with pytest.raises(InvalidInputError, match="importance"):
        search_group_parameters(values, values[:1], 4, False, -20, 2)
    # all-zero groups: every candidate decodes exactly, RTN's choice is kept
    codes, zeros = search_group_parameters(values, np.ones_like(values), 4, False, -20, 8)
    assert (codes == 0).all() and (zeros == 0).all()


def test_scale_search_with_a_bit_price_spends_fewer_bits() -> None:
    """Priced, the search may also take larger scales; a high price buys fewer bits."""
    values, importance = _heavy_tailed_groups(256, 128, seed=11)
    exponent = _exponent_of(values, 4)
    rtn_codes, rtn_zeros = search_group_parameters(values, importance, 4, False, exponent, 0)
    # code lengths: short near the centre (zero), long at the ends, as in real weights
    code_bits = np.minimum(np.arange(16), 16 - np.arange(16)).astype(np.float32) + 1.0

    def bits_of(codes: np.ndarray, zeros: np.ndarray) -> float:
        scales = scale_grid(exponent)[codes][:, None]
        q = np.clip(np.rint(values / scales) + zeros[:, None], 0, 15)
        return float(code_bits[(q - zeros[:, None]).astype(np.int64) % 16].sum())

    free = search_group_parameters(values, importance, 4, False, exponent, 8)
    priced = search_group_parameters(
        values, importance, 4, False, exponent, 8, code_bits=code_bits, bit_price=1.0
    )
    assert bits_of(*priced) < bits_of(rtn_codes, rtn_zeros) < bits_of(*free)
    assert (priced[0] > rtn_codes).any()
    with pytest.raises(InvalidInputError, match="bit_price"):
        search_group_parameters(values, importance, 4, False, exponent, 8, bit_price=1.0)
    with pytest.raises(InvalidInputError, match="bit_price"):
        search_group_parameters(
            values, importance, 4, False, exponent, 8, code_bits=code_bits, bit_price=-1.0
        )
