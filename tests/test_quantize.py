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
