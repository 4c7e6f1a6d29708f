"""Tests of certify.quantize.gptq: GPTQ on one matrix, RTN's code form, settings checks."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

import certify.quantize.gptq
from certify.errors import InvalidInputError
from certify.quantize import (
    QuantizedTensor,
    check_quantization_settings,
    dequantize,
    gptq_quantize_matrix,
    layer_output_error,
    method_library_versions,
    quantize_tensor,
)
from certify.quantize.gptq import GPTQNumericalError
from certify.quantize.rtn import (
    group_parameters,
    needed_scales,
    pick_scale_exponent,
    scale_grid,
)
from certify.records import QuantizationSettings


def _problem(rows: int, cols: int, seed: int, tokens: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Weights and a Hessian 2/N X Xᵀ of correlated inputs with uneven scales."""
    rng = np.random.default_rng(seed)
    weights = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
    mixing = rng.standard_normal((cols, cols)) / np.sqrt(cols)
    inputs = (
        mixing @ rng.standard_normal((cols, tokens)) * np.exp(0.5 * rng.standard_normal((cols, 1)))
    )
    return weights, 2.0 * inputs @ inputs.T / tokens


def _reference_gptq(
    weights: np.ndarray, hessian: np.ndarray, bits: int, group_size: int, block: int = 128
) -> np.ndarray:
    """A line-by-line transcription of the reference ``fasterquant`` (GPTQ repository,
    ``static_groups=False``, natural order) with certify's group side information."""
    w_all = torch.tensor(weights, dtype=torch.float32).clone()
    rows, cols = w_all.shape
    h = torch.tensor(hessian, dtype=torch.float64).clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    flat = weights.reshape(-1)
    starts = np.arange(0, flat.size, group_size)
    exponent = pick_scale_exponent(
        needed_scales(
            np.minimum.reduceat(flat, starts), np.maximum.reduceat(flat, starts), bits, False
        )
    )
    grid = scale_grid(exponent)
    h[range(cols), range(cols)] += 0.01 * torch.mean(torch.diag(h))
    h = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    h_inv = h.float()
    codes = torch.zeros_like(w_all)
    max_code = (1 << bits) - 1
    s = z = torch.zeros(rows)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        w1 = w_all[:, i1:i2].clone()
        errors = torch.zeros_like(w1)
        h1 = h_inv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            if (i1 + i) % group_size == 0:  # find_params on the full (stale) W
                part = w_all[:, i1 + i : i1 + i + group_size].numpy()
                lows, highs = part.min(1), part.max(1)
                scale_codes, zeros = group_parameters(
                    lows, needed_scales(lows, highs, bits, False), bits, False, exponent
                )
                s, z = torch.from_numpy(grid[scale_codes]), torch.from_numpy(zeros)
            w = w1[:, i]
            q = torch.clamp(torch.round(w / s) + z, 0, max_code)
            codes[:, i1 + i] = q
            error = (w - (q - z) * s) / h1[i, i]
            w1[:, i:] -= error.unsqueeze(1).matmul(h1[i, i:].unsqueeze(0))
            errors[:, i] = error
        w_all[:, i2:] -= errors.matmul(h_inv[i1:i2, i2:])
    return codes.numpy().astype(np.uint8).reshape(-1)


def test_doctests() -> None:
    assert doctest.testmod(certify.quantize.gptq).failed == 0


@pytest.mark.parametrize(
    ("rows", "cols", "group_size", "bits"), [(64, 256, 32, 4), (48, 384, 128, 3), (32, 512, 64, 2)]
)
def test_matches_the_reference_algorithm(rows: int, cols: int, group_size: int, bits: int) -> None:
    weights, hessian = _problem(rows, cols, seed=rows)
    expected = _reference_gptq(weights, hessian, bits, group_size)
    assert np.array_equal(gptq_quantize_matrix(weights, hessian, bits, group_size).codes, expected)


def test_codes_have_rtn_form() -> None:
    weights, hessian = _problem(40, 96, seed=1)
    for symmetric in (False, True):
        q = gptq_quantize_matrix(weights, hessian, 3, 32, symmetric=symmetric)
        rtn = quantize_tensor(weights, 3, 32, symmetric=symmetric)
        assert isinstance(q, QuantizedTensor)
        assert (q.shape, q.bits, q.group_size, q.symmetric) == (
            rtn.shape,
            rtn.bits,
            rtn.group_size,
            rtn.symmetric,
        )
        assert q.scale_exponent == rtn.scale_exponent
        assert q.codes.dtype == np.uint8 and q.codes.shape == rtn.codes.shape
        assert int(q.codes.max()) < 8
        assert q.scale_codes.shape == rtn.scale_codes.shape
        assert q.zero_points.shape == rtn.zero_points.shape
        assert dequantize(q).shape == weights.shape


@pytest.mark.parametrize("bits", [3, 4])
@pytest.mark.parametrize(
    ("cols", "group_size", "act_order"),
    [(256, 32, False), (256, 128, True), (576, 128, False), (576, 128, True), (200, 64, False)],
)
def test_layer_output_error_below_rtn(
    bits: int, cols: int, group_size: int, act_order: bool
) -> None:
    """Groups aligned, wrapping across rows (576 % 128 != 0), partial last group."""
    weights, hessian = _problem(48, cols, seed=cols + bits)
    gptq = gptq_quantize_matrix(weights, hessian, bits, group_size, act_order=act_order)
    rtn = quantize_tensor(weights, bits, group_size)
    gptq_error = layer_output_error(weights, dequantize(gptq), hessian)
    rtn_error = layer_output_error(weights, dequantize(rtn), hessian)
    assert gptq_error < 0.8 * rtn_error


def test_transposed_storage() -> None:
    """GPT-2 Conv1D: stored [in, out], Hessian over the stored rows."""
    weights, hessian = _problem(48, 128, seed=9)
    stored = np.ascontiguousarray(weights.T)
    q = gptq_quantize_matrix(stored, hessian, 4, 32, transposed=True)
    rtn = quantize_tensor(stored, 4, 32)
    assert q.shape == stored.shape and q.scale_codes.shape == rtn.scale_codes.shape
    gptq_error = layer_output_error(stored, dequantize(q), hessian, transposed=True)
    rtn_error = layer_output_error(stored, dequantize(rtn), hessian, transposed=True)
    assert gptq_error < 0.8 * rtn_error


def test_no_information_is_rtn() -> None:
    """A zero Hessian (inputs never active) passes no error: the codes are RTN's."""
    weights, _ = _problem(16, 96, seed=2)
    hessian = np.zeros((96, 96))
    for bits, group_size in ((2, 32), (4, 40)):
        assert gptq_quantize_matrix(weights, hessian, bits, group_size) == quantize_tensor(
            weights, bits, group_size
        )


def test_dead_inputs_are_rounded_and_the_rest_still_improves() -> None:
    weights, hessian = _problem(32, 128, seed=3)
    hessian[:, 5] = hessian[5, :] = 0.0
    q = gptq_quantize_matrix(weights, hessian, 4, 32)
    rtn = quantize_tensor(weights, 4, 32)
    assert layer_output_error(weights, dequantize(q), hessian) < layer_output_error(
        weights, dequantize(rtn), hessian
    )


def test_deterministic_and_inputs_untouched() -> None:
    weights, hessian = _problem(32, 160, seed=4)
    before_w, before_h = weights.copy(), hessian.copy()
    first = gptq_quantize_matrix(weights, hessian, 3, 32, act_order=True)
    second = gptq_quantize_matrix(
        torch.from_numpy(weights), torch.from_numpy(hessian), 3, 32, act_order=True
    )
    assert first == second
    assert np.array_equal(weights, before_w) and np.array_equal(hessian, before_h)


def _code_entropy_bits(q: QuantizedTensor) -> float:
    """Empirical entropy (bits per value) of the codes centred on their zero points."""
    zero = np.repeat(q.group_zero_points(), q.group_size)[: q.numel].astype(np.int64)
    counts = np.bincount((q.codes - zero) % (1 << q.bits), minlength=1 << q.bits)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


@pytest.mark.parametrize("act_order", [False, True])
def test_scale_search_trades_error_and_bits(act_order: bool) -> None:
    """Price 0 buys a lower layer error with bits; the bits-neutral price 1 sells
    error for bits; steps 0 is exactly the plain quantizer."""
    weights, hessian = _problem(64, 256, seed=8)
    rng = np.random.default_rng(8)
    weights *= rng.standard_t(3, weights.shape).astype(np.float32)  # heavy tails, like LLMs
    plain = gptq_quantize_matrix(weights, hessian, 3, 64, act_order=act_order)
    assert plain == gptq_quantize_matrix(
        weights, hessian, 3, 64, act_order=act_order, scale_search_steps=0
    )
    results = {
        price: gptq_quantize_matrix(
            weights,
            hessian,
            3,
            64,
            act_order=act_order,
            scale_search_steps=8,
            scale_search_price=price,
        )
        for price in (0.0, 1.0)
    }
    error = {
        key: layer_output_error(weights, dequantize(q), hessian)
        for key, q in (("plain", plain), *results.items())
    }
    entropy = {key: _code_entropy_bits(q) for key, q in (("plain", plain), *results.items())}
    assert error[0.0] < 0.9 * error["plain"] and entropy[0.0] > entropy["plain"]
    assert entropy[1.0] < entropy["plain"] - 0.1 and error[1.0] > error["plain"]
    # price 0 shrinks scales (finer steps, clipped extremes); price 1 grows them
    mean_code = {key: float(q.scale_codes.mean()) for key, q in results.items()}
    assert mean_code[0.0] < float(plain.scale_codes.mean()) < mean_code[1.0]


def test_block_size_only_regroups_the_updates() -> None:
    """Lazy batches reorganise the updates exactly (up to float rounding) when every
    group starts at a block start (here: one group per row)."""
    weights, hessian = _problem(32, 256, seed=5)
    a = gptq_quantize_matrix(weights, hessian, 4, 256, block_size=128)
    b = gptq_quantize_matrix(weights, hessian, 4, 256, block_size=32)
    assert np.mean(a.codes != b.codes) < 0.005


def test_rate_aware_rounding() -> None:
    weights, hessian = _problem(64, 256, seed=6)
    plain = gptq_quantize_matrix(weights, hessian, 4, 64)
    assert gptq_quantize_matrix(weights, hessian, 4, 64, rate_lambda=0.0) == plain
    rated = gptq_quantize_matrix(weights, hessian, 4, 64, rate_lambda=0.3)

    assert _code_entropy_bits(rated) < _code_entropy_bits(plain)
    rated_error = layer_output_error(weights, dequantize(rated), hessian)
    rtn_error = layer_output_error(weights, dequantize(quantize_tensor(weights, 4, 64)), hessian)
    assert rated_error < rtn_error


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"hessian": np.eye(7)}, InvalidInputError, "hessian"),
        ({"bits": 9}, InvalidInputError, "bits"),
        ({"block_size": 0}, InvalidInputError, "block_size"),
        ({"damping": 0.0}, InvalidInputError, "damping"),
        ({"hessian": -np.eye(16)}, GPTQNumericalError, "positive definite"),
        ({"hessian": np.full((16, 16), np.nan)}, GPTQNumericalError, "NaN"),
        ({"weights": np.zeros(16, np.float32)}, InvalidInputError, "2-D"),
        ({"weights": np.full((4, 16), np.inf, np.float32)}, InvalidInputError, "NaN"),
    ],
)
def test_bad_inputs(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    arguments: dict[str, object] = {
        "weights": np.ones((4, 16), np.float32),
        "hessian": np.eye(16),
        "bits": 4,
        "group_size": 8,
    }
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        gptq_quantize_matrix(**arguments)  # type: ignore[arg-type]


def _gptq_settings(**changes: object) -> QuantizationSettings:
    fields: dict[str, object] = {
        "method": "gptq",
        "damping": 0.01,
        "block_size": 128,
        "act_order": False,
        "true_sequential": True,
        "first_token_weight": 64.0,
        "calibration_source": "data",
        "calibration_sha256": "0" * 64,
        "calibration_seed": 1,
        "calibration_tokens": 1024,
        "calibration_window_tokens": 512,
        "compute_device": "cpu",
        "rtn_tensors": ("lm_head.weight",),
    }
    fields.update(changes)
    return QuantizationSettings(**fields)  # type: ignore[arg-type]


def test_settings_checks() -> None:
    check_quantization_settings(QuantizationSettings())
    check_quantization_settings(_gptq_settings())
    check_quantization_settings(_gptq_settings(calibration_seed=None, rate_lambda=0.1))
    with pytest.raises(InvalidInputError, match=r"method.*unknown"):
        check_quantization_settings(QuantizationSettings(method="awq"))
    with pytest.raises(InvalidInputError, match=r"method.*takes no damping"):
        check_quantization_settings(QuantizationSettings(damping=0.01))
    with pytest.raises(InvalidInputError, match=r"method.*needs .*calibration_sha256"):
        check_quantization_settings(_gptq_settings(calibration_sha256=None))
    with pytest.raises(InvalidInputError, match="damping"):
        check_quantization_settings(_gptq_settings(damping=-1.0))
    with pytest.raises(InvalidInputError, match="block_size"):
        check_quantization_settings(_gptq_settings(block_size=0))
    with pytest.raises(InvalidInputError, match="compute_device"):
        check_quantization_settings(_gptq_settings(compute_device="tpu"))
    with pytest.raises(InvalidInputError, match="rate_lambda"):
        check_quantization_settings(_gptq_settings(rate_lambda=-1.0))
    check_quantization_settings(_gptq_settings(scale_search_steps=8))
    for bad in (-1, 65, 2.5, True):
        with pytest.raises(InvalidInputError, match="scale_search_steps"):
            check_quantization_settings(_gptq_settings(scale_search_steps=bad))
    with pytest.raises(InvalidInputError, match=r"takes no scale_search_steps"):
        check_quantization_settings(QuantizationSettings(scale_search_steps=8))
    check_quantization_settings(_gptq_settings(scale_search_steps=8, scale_search_price=0.5))
    for bad_price in (-1.0, True):
        with pytest.raises(InvalidInputError, match="scale_search_price"):
            check_quantization_settings(
                _gptq_settings(scale_search_steps=8, scale_search_price=bad_price)
            )
    with pytest.raises(InvalidInputError, match=r"scale_search_price.*no search"):
        check_quantization_settings(_gptq_settings(scale_search_price=1.0))


def test_library_versions_of_each_method() -> None:
    assert method_library_versions(QuantizationSettings()) == {}
    versions = method_library_versions(_gptq_settings())
    assert versions["torch"] == torch.__version__
    assert set(versions) == {"torch", "transformers"}


@pytest.mark.parametrize("act_order", [False, True])
def test_inverse_factor_is_the_upper_cholesky_of_the_damped_inverse(act_order: bool) -> None:
    _, hessian = _problem(8, 96, seed=3)
    hessian[7, :] = hessian[:, 7] = 0.0  # a dead input
    before = hessian.copy()
    diagonal = np.where(np.diag(hessian) == 0, 1.0, np.diag(hessian))
    order = np.argsort(-diagonal, kind="stable") if act_order else np.arange(96)
    permuted = hessian[np.ix_(order, order)]
    permuted[np.diag_indices(96)] = diagonal[order] + 0.01 * diagonal.mean()
    expected = np.linalg.cholesky(np.linalg.inv(permuted)).T  # inverse = Uᵀ U, U upper
    upper = certify.quantize.gptq._inverse_cholesky(
        torch.from_numpy(hessian), torch.from_numpy(order), 0.01, torch.device("cpu")
    )
    assert upper.dtype == torch.float32 and upper.is_contiguous()
    assert np.array_equal(np.tril(upper.numpy(), -1), np.zeros((96, 96), np.float32))
    assert np.allclose(upper.numpy(), expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    assert np.array_equal(hessian, before)


_FACTOR_MEMORY_PROBE = """
import json, sys
import numpy as np, torch
from certify.quantize.gptq import _inverse_cholesky
n = int(sys.argv[1])
x = torch.randn(n, 2 * n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
hessian = x @ x.T / n
del x
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
_inverse_cholesky(hessian[:64, :64], torch.arange(64), 0.01, torch.device("cpu"))  # warm up
open("/proc/self/clear_refs", "w").write("5")
baseline = status("VmRSS:")
upper = _inverse_cholesky(hessian, torch.arange(n).flip(0), 0.01, torch.device("cpu"))
print(json.dumps({"growth": status("VmHWM:") - baseline}))
"""


def test_inverse_factor_peak_memory_is_two_copies() -> None:
    """The factorization works in place: above the caller's Hessian, its peak is one
    float64 working copy plus the triangular solve's right-hand side (the old
    inverse-then-factor path held about four)."""
    import json
    import subprocess
    import sys

    size = 3072
    done = subprocess.run(
        [sys.executable, "-c", _FACTOR_MEMORY_PROBE, str(size)],
        capture_output=True,
        text=True,
        check=True,
    )
    growth = json.loads(done.stdout.strip().splitlines()[-1])["growth"]
    copy_bytes = 8 * size * size
    assert growth < 2.6 * copy_bytes, (growth, copy_bytes)


@pytest.mark.parametrize(("act_order", "transposed"), [(True, False), (True, True), (False, False)])
def test_side_information_in_chunks_is_the_same(
    monkeypatch: pytest.MonkeyPatch, act_order: bool, transposed: bool
) -> None:
    """Group ranges are read in bounded chunks (with act order nearly every group starts
    in the first block); the chunk size must not change a single code."""
    weights, hessian = _problem(48, 192, seed=9)
    stored = np.ascontiguousarray(weights.T) if transposed else weights
    whole = gptq_quantize_matrix(stored, hessian, 4, 32, act_order=act_order, transposed=transposed)
    monkeypatch.setattr(certify.quantize.gptq, "_CHUNK_ELEMENTS", 3 * 32)  # 3 groups a chunk
    chunked = gptq_quantize_matrix(
        stored, hessian, 4, 32, act_order=act_order, transposed=transposed
    )
    assert chunked == whole
