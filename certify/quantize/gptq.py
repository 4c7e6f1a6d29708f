"""GPTQ (Frantar et al. 2022): Hessian-aware rounding of one weight matrix, RTN's code form.

:func:`gptq_quantize_matrix` quantizes one ``[out, in]`` matrix ``W`` given the Hessian
``H = 2/N · Σ x xᵀ`` of its layer-wise loss ``||W X - Ŵ X||²`` over calibration inputs
``x`` (length ``in``). Columns (input features) are quantized one at a time; the
rounding error of column ``j``, divided by the ``j``-th diagonal entry of the upper
Cholesky factor of ``H⁻¹``, is spread over the columns not yet quantized (optimal brain
surgeon update), in lazy batches of ``block_size`` columns. ``H`` gets ``damping`` times
its mean diagonal added first; inputs never active on the calibration data (zero
diagonal) get a unit diagonal, so their weights are rounded like RTN's and pass no error.

The result is a :class:`~certify.quantize.QuantizedTensor` of exactly RTN's form: the
same groups (``group_size`` consecutive values of the row-major *stored* tensor, which
for GPT-2's ``Conv1D`` is ``[in, out]``), the tensor's scale exponent picked from the
original weights as RTN does, and per group a log-grid scale code and an integer zero
point chosen by RTN's rule (:func:`certify.quantize.rtn.group_parameters`), or, with the
optional scale search, the best of RTN's and a few grid scales around it by the group's
rounding error weighted by the Hessian diagonal, plus a price per bit
(:func:`certify.quantize.rtn.search_group_parameters`). A group's
scale and zero point are chosen from the group's *current* (error-updated) values at the
start of the lazy block that holds the group's first column in processing order, the
``static_groups=False`` behaviour of the reference implementation; for groups that lie
inside one row and align with the blocks this is exactly the reference. Groups that
wrap across rows (``in`` not a multiple of ``group_size``) start at column 0, so their
parameters come from values not yet updated; later values outside the range are clipped
to the code range, like every code.

Determinism: float64 Hessian and Cholesky factors, float32 column updates, stable sorts,
``torch.round`` (half to even), a fixed column order. Same inputs, device, thread count
and torch version give the same codes. docs/FORMAT.md, "GPTQ settings".
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import numpy as np

from certify.errors import InvalidInputError
from certify.quantize.rtn import (
    QuantizedTensor,
    group_count,
    needed_scales,
    pick_scale_exponent,
    quantize_tensor,
    scale_grid,
    search_group_parameters,
    validate_settings,
)
from certify.records import QUANTIZER_METHODS, QuantizationSettings

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_DAMPING",
    "DEFAULT_FIRST_TOKEN_WEIGHT",
    "DEFAULT_RATE_LAMBDA",
    "DEFAULT_SCALE_SEARCH_STEPS",
    "GPTQ_METHOD",
    "METHODS",
    "RTN_METHOD",
    "GPTQNumericalError",
    "check_quantization_settings",
    "gptq_quantize_matrix",
    "layer_output_error",
    "method_library_versions",
]

RTN_METHOD, GPTQ_METHOD = QUANTIZER_METHODS
METHODS = QUANTIZER_METHODS
DEFAULT_DAMPING = 0.01
DEFAULT_BLOCK_SIZE = 128
#: columns by decreasing Hessian diagonal: on SmolLM2-135M at 4 bits / groups of 128 the
#: held-out loss rises 6.0% instead of 9.3%, same file size (bench/results/quantize.json)
DEFAULT_ACT_ORDER = True
#: rate-aware rounding's weight in certify's defaults: on SmolLM2-135M at 4 bits / groups
#: of 128 (act order) it lowered both the file (3.5185 → 3.4900 bits per parameter) and the
#: held-out loss (+6.0% → +5.4% over the original); 0.5 saves more bits (3.448) at +7.3%
DEFAULT_RATE_LAMBDA = 0.2
#: scale search: off by default. On SmolLM2-135M (4 bits, groups of 128, act order,
#: rate_lambda 0.2) 8 steps at price 0 lowered the held-out loss rise 5.4% → 5.0% for a
#: 4.2% larger file (as groups of 64 would), at price 0.3 raised it to 5.8% at the same
#: size, at price 1 cut the file 4.7% for +7.1% (bench/results/quantize.json)
DEFAULT_SCALE_SEARCH_STEPS = 0
MAX_SCALE_SEARCH_STEPS = 64
#: weight of each window's first token (BOS) in the Hessians; measured in bench/quantize.py
DEFAULT_FIRST_TOKEN_WEIGHT = 64.0
#: Cholesky retries: damping is multiplied by 10 each time the factorization fails
_CHOLESKY_RETRIES = 4
#: elements per chunk when computing each group's first column (bounds temporaries)
_CHUNK_ELEMENTS = 1 << 22
#: settings fields that only GPTQ uses (all required for it except the optional ones)
GPTQ_FIELDS = (
    "damping",
    "block_size",
    "act_order",
    "true_sequential",
    "first_token_weight",
    "rate_lambda",
    "scale_search_steps",
    "scale_search_price",
    "calibration_source",
    "calibration_sha256",
    "calibration_seed",
    "calibration_tokens",
    "calibration_window_tokens",
    "compute_device",
    "rtn_tensors",
)
_OPTIONAL_GPTQ_FIELDS = (
    "rate_lambda",
    "scale_search_steps",
    "scale_search_price",
    "calibration_seed",
)


class GPTQNumericalError(ArithmeticError):
    """The Hessian cannot be factorized or the update produced non-finite weights."""


def check_gptq_options(settings: QuantizationSettings) -> None:
    """Raise :class:`InvalidInputError` unless the GPTQ options of ``settings`` are usable."""
    validate_settings(settings.bits, settings.group_size)
    damping = settings.damping
    if damping is None or isinstance(damping, bool) or not 0 < float(damping) < 1e3:
        raise InvalidInputError(
            f"must be a number > 0 (fraction of the mean Hessian diagonal), got {damping!r}",
            field="damping",
            hint="the usual value is 0.01",
        )
    block = settings.block_size
    if block is None or isinstance(block, bool) or not isinstance(block, int) or block < 1:
        raise InvalidInputError(f"must be an integer ≥ 1, got {block!r}", field="block_size")
    for name in ("act_order", "true_sequential"):
        if not isinstance(getattr(settings, name), bool):
            raise InvalidInputError(
                f"must be true or false, got {getattr(settings, name)!r}", field=name
            )
    weight = settings.first_token_weight
    if weight is None or isinstance(weight, bool) or not 1 <= float(weight) <= 1e6:
        raise InvalidInputError(
            f"must be a number ≥ 1, got {weight!r}",
            field="first_token_weight",
            hint="1 = unweighted",
        )
    _check_optional_non_negative(settings.rate_lambda, "rate_lambda", "")
    steps = settings.scale_search_steps
    in_range = isinstance(steps, int) and 0 <= steps <= MAX_SCALE_SEARCH_STEPS
    if steps is not None and (isinstance(steps, bool) or not in_range):
        raise InvalidInputError(
            f"must be an integer from 0 to {MAX_SCALE_SEARCH_STEPS}, got {steps!r}",
            field="scale_search_steps",
            hint="each step is one grid scale (2^(1/16), about 4.4%) away from RTN's",
        )
    price = settings.scale_search_price
    _check_optional_non_negative(price, "scale_search_price", " (1 = the bits-neutral price)")
    if price and not steps:
        raise InvalidInputError(
            "is set but scale_search_steps is 0 (no search to price)",
            field="scale_search_price",
            hint="set scale_search_steps too, e.g. 8",
        )


def _check_optional_non_negative(value: Any, name: str, meaning: str) -> None:
    if value is not None and (isinstance(value, bool) or not 0 <= float(value) < 1e6):
        raise InvalidInputError(f"must be a number ≥ 0{meaning}, got {value!r}", field=name)


def check_quantization_settings(settings: QuantizationSettings) -> None:
    """Raise :class:`InvalidInputError` (field ``method`` or the GPTQ field) unless the
    method is known and its own fields are exactly the ones set.

    RTN settings must leave every GPTQ field None; GPTQ settings must set all of them
    (except ``rate_lambda``, ``scale_search_*`` and ``calibration_seed``), as
    :func:`certify.quantize.layerwise.gptq_quantize_model` returns them.
    """
    if settings.method not in METHODS:
        raise InvalidInputError(
            f"unknown quantization method {settings.method!r}; certify implements "
            f"{', '.join(repr(m) for m in METHODS)}",
            field="method",
        )
    if settings.method == RTN_METHOD:
        extra = [name for name in GPTQ_FIELDS if getattr(settings, name) is not None]
        if extra:
            raise InvalidInputError(
                f"method 'rtn-groupwise' takes no {', '.join(extra)} (GPTQ settings)",
                field="method",
            )
        return
    missing = [
        name
        for name in GPTQ_FIELDS
        if name not in _OPTIONAL_GPTQ_FIELDS and getattr(settings, name) is None
    ]
    if missing:
        raise InvalidInputError(
            f"method 'gptq' needs {', '.join(missing)}; GPTQ settings come from "
            "certify.quantize.gptq_quantize_model, which computes the codes",
            field="method",
        )
    check_gptq_options(settings)
    if settings.compute_device not in ("cpu", "cuda"):
        raise InvalidInputError(
            f"must be 'cpu' or 'cuda', got {settings.compute_device!r}", field="compute_device"
        )


def method_library_versions(settings: QuantizationSettings) -> dict[str, str]:
    """Versions of libraries whose arithmetic decides the codes of ``settings.method``.

    Empty for RTN (numpy only, already recorded); torch and transformers for GPTQ,
    whose codes depend on the float arithmetic of the calibration forward passes.
    """
    if settings.method != GPTQ_METHOD:
        return {}
    versions = {}
    for package in ("torch", "transformers"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover - dependencies
            versions[package] = "unknown"
    return versions


def _as_tensor(value: Any, dtype: Any, device: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().to(device=device, dtype=dtype).clone()
    return torch.from_numpy(np.array(value)).to(device=device, dtype=dtype)


def _tensor_view(value: Any) -> Any:
    """``value`` as a torch tensor, sharing its memory when it is a tensor or an array."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach()
    return torch.from_numpy(np.asarray(value))


def _reversed_hessian(hessian: Any, order: Any, device: Any) -> Any:
    """``J H_π J`` as a new float64 tensor: the Hessian (a tensor) in processing order ``π``
    with rows and columns reversed, made in one indexing pass (``hessian`` is not changed).

    Dead inputs (zero diagonal) get a unit diagonal, so they are rounded like RTN's.
    """
    import torch

    reverse = order.flip(0).to(hessian.device)
    h = hessian[reverse[:, None], reverse[None, :]].to(device=device, dtype=torch.float64)
    h.diagonal().copy_(_live_diagonal(h.diagonal()))
    return h


def _live_diagonal(diagonal: Any) -> Any:
    """The Hessian's diagonal with dead inputs (never active: 0) counted as 1."""
    import torch

    return torch.where(diagonal == 0, 1.0, diagonal)


def _inverse_cholesky(hessian: Any, order: Any, damping: float, device: Any) -> Any:
    """Upper Cholesky factor ``U`` of ``(H_π + damping·mean(diag H)·I)⁻¹`` as float32.

    ``H_π`` is ``hessian`` with rows and columns in processing order ``order``. With the
    reversal ``J`` and ``J H_π J = L Lᵀ`` (lower Cholesky), ``H_π⁻¹ = (J L⁻¹ J)ᵀ (J L⁻¹ J)``
    and ``J L⁻¹ J`` is upper triangular with a positive diagonal, so it *is* ``U``: one
    factorization and one triangular solve, never the inverse matrix itself (fewer
    operations, better conditioned). Both run in place, so the peak is two float64
    copies (for an 11008-wide Hessian 2 GB instead of about 5 GB).
    """
    import torch

    for attempt in range(_CHOLESKY_RETRIES + 1):
        h = _reversed_hessian(hessian, order, device)
        h.diagonal().add_(damping * 10.0**attempt * float(h.diagonal().mean()))
        info = torch.empty((), dtype=torch.int32, device=h.device)
        torch.linalg.cholesky_ex(h, out=(h, info))  # h now holds L (and zeros above)
        if int(info) != 0:
            continue
        lower_inverse = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
        torch.linalg.solve_triangular(h, lower_inverse, upper=False, out=lower_inverse)
        del h
        upper = lower_inverse.to(torch.float32)
        del lower_inverse
        upper = upper.flip(0, 1)
        if bool(torch.isfinite(upper).all()):
            return upper
    raise GPTQNumericalError("the damped Hessian is not positive definite")


def _current_group_values(
    work: Any,
    groups: np.ndarray,
    positions: Any,
    group_size: int,
    rows: int,
    cols: int,
    transposed: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The current (error-updated) values of ``groups`` and each value's column.

    ``work`` is ``[processing position, row]``; ``positions`` maps a column to its
    processing position. Returns ``[groups, group_size]`` arrays: float32 values and
    int64 columns, where elements past the tensor's end (a partial last group) have
    value 0 and column -1.
    """
    import torch

    device = work.device
    numel = rows * cols
    offsets = torch.arange(group_size, device=device, dtype=torch.int64)
    flat = torch.from_numpy(groups).to(device)[:, None] * group_size + offsets[None, :]
    valid = flat < numel
    flat = torch.where(valid, flat, torch.zeros_like(flat))
    if transposed:
        element_rows, element_cols = flat % rows, flat // rows
    else:
        element_rows, element_cols = flat // cols, flat % cols
    del flat
    values = work[positions[element_cols], element_rows]
    values = torch.where(valid, values, torch.zeros((), device=device))
    if not bool(torch.isfinite(values).all()):
        raise GPTQNumericalError("the error updates produced non-finite weights")
    element_cols = torch.where(valid, element_cols, -1)
    return values.cpu().numpy(), element_cols.cpu().numpy()


def _group_first_positions(
    rows: int, cols: int, transposed: bool, position_of_column: np.ndarray, group_size: int
) -> np.ndarray:
    """For every group, the first processing position among its elements' columns."""
    numel = rows * cols
    starts = np.arange(0, numel, group_size, dtype=np.int64)
    first = np.empty(starts.size, dtype=np.int64)
    groups_per_chunk = max(1, _CHUNK_ELEMENTS // group_size)
    for g0 in range(0, starts.size, groups_per_chunk):
        g1 = min(g0 + groups_per_chunk, starts.size)
        flat = np.arange(g0 * group_size, min(g1 * group_size, numel), dtype=np.int64)
        columns = flat // rows if transposed else flat % cols
        first[g0:g1] = np.minimum.reduceat(position_of_column[columns], starts[g0:g1] - starts[g0])
    return first


def _rate_table(rtn: QuantizedTensor) -> np.ndarray:
    """Code lengths in bits of the centred codes, from RTN's histogram (add-one smoothed)."""
    zero = np.repeat(rtn.group_zero_points(), rtn.group_size)[: rtn.numel]
    centred = (rtn.codes.astype(np.int64) - zero) % (1 << rtn.bits)
    counts = np.bincount(centred, minlength=1 << rtn.bits).astype(np.float64) + 1.0
    return np.asarray(-np.log2(counts / counts.sum()), dtype=np.float32)


def _bits_neutral_price(rtn: QuantizedTensor, importance: np.ndarray, transposed: bool) -> float:
    """The scale search's price of a bit: ``ln 2 / 6 · mean(importance · s_RTN²)``.

    For a value of importance ``a`` rounded with step ``s``, the error is about
    ``a s² / 12`` and the code length about ``−log2 s`` + const, so at a price ``μ`` per
    bit the best step has ``s² = 6 μ / (a ln 2)``. This ``μ`` makes that RTN's step for a
    value of the matrix's mean ``a s_RTN²``: the search does not buy or sell bits on
    average, it moves them from groups whose errors matter little (small Hessian
    diagonal, relative to their step) to those whose errors matter much.
    """
    steps = rtn.scales().astype(np.float64) ** 2
    total = 0.0
    chunk = max(1, _CHUNK_ELEMENTS // rtn.group_size)
    width = rtn.shape[1]
    for g0 in range(0, steps.size, chunk):
        flat = np.arange(g0 * rtn.group_size, min((g0 + chunk) * rtn.group_size, rtn.numel))
        columns = flat // width if transposed else flat % width
        total += float(
            np.dot(
                np.repeat(steps[g0 : g0 + chunk], rtn.group_size)[: flat.size], importance[columns]
            )
        )
    return float(np.log(2.0) / 6.0 * total / rtn.numel)


def gptq_quantize_matrix(
    weights: Any,
    hessian: Any,
    bits: int,
    group_size: int,
    *,
    symmetric: bool = False,
    damping: float = DEFAULT_DAMPING,
    block_size: int = DEFAULT_BLOCK_SIZE,
    act_order: bool = False,
    transposed: bool = False,
    rate_lambda: float = 0.0,
    scale_search_steps: int = 0,
    scale_search_price: float = 0.0,
    device: Any = None,
) -> QuantizedTensor:
    """Quantize one weight matrix with GPTQ; codes of RTN's form (see the module doc).

    ``weights`` is the stored 2-D matrix (numpy or torch): ``[out, in]``, or ``[in, out]``
    with ``transposed=True`` (GPT-2's ``Conv1D``); ``hessian`` is ``[in, in]``.
    ``rate_lambda > 0`` turns on rate-aware rounding: a value is moved to its other
    neighbouring code when that lowers ``(distance in steps)² + rate_lambda · bits``,
    with code lengths from the RTN code histogram of the same matrix.
    ``scale_search_steps > 0`` chooses each group's scale and zero point among RTN's
    and that many smaller grid scales (and, at ``scale_search_price > 0``, larger ones),
    by the group's rounding error weighted by the Hessian diagonal plus
    ``scale_search_price`` times the bits-neutral price of its codes' bits
    (:func:`certify.quantize.rtn.search_group_parameters`, :func:`_bits_neutral_price`).
    Pure: the inputs are not modified. Raises :class:`InvalidInputError` for bad
    settings or shapes and :class:`GPTQNumericalError` when the Hessian cannot be used.

    >>> import numpy as np
    >>> from certify.quantize import dequantize, quantize_tensor
    >>> rng = np.random.default_rng(0)
    >>> w = rng.standard_normal((16, 64)).astype(np.float32)
    >>> x = rng.standard_normal((64, 512)) * np.linspace(0.1, 3, 64)[:, None]
    >>> h = 2 * x @ x.T / x.shape[1]
    >>> q = gptq_quantize_matrix(w, h, bits=3, group_size=32)
    >>> (q.shape, q.bits, q.group_size, q.codes.dtype.name, q.scale_codes.shape)
    ((16, 64), 3, 32, 'uint8', (32,))
    >>> rtn = quantize_tensor(w, 3, 32)
    >>> bool(layer_output_error(w, dequantize(q), h) < layer_output_error(w, dequantize(rtn), h))
    True
    """
    import torch

    validate_settings(bits, group_size)
    bits, group_size = int(bits), int(group_size)
    if not (isinstance(block_size, int) and not isinstance(block_size, bool) and block_size >= 1):
        raise InvalidInputError(f"must be an integer ≥ 1, got {block_size!r}", field="block_size")
    if not damping > 0:
        raise InvalidInputError(f"must be > 0, got {damping!r}", field="damping")
    device = torch.device(device) if device is not None else torch.device("cpu")
    stored = _as_tensor(weights, torch.float32, device)
    if stored.ndim != 2 or stored.numel() == 0:
        raise InvalidInputError(
            f"must be a non-empty 2-D matrix, got shape {tuple(stored.shape)}", field="weights"
        )
    if not bool(torch.isfinite(stored).all()):
        raise InvalidInputError("contain NaN or infinite values", field="weights")
    stored_shape = (int(stored.shape[0]), int(stored.shape[1]))
    matrix = stored.T.contiguous() if transposed else stored
    rows, cols = int(matrix.shape[0]), int(matrix.shape[1])
    source = _tensor_view(hessian)  # no copy: the factorization makes the one it needs
    if tuple(source.shape) != (cols, cols):
        raise InvalidInputError(
            f"must be [{cols}, {cols}] for weights of shape {stored_shape}, "
            f"got {tuple(source.shape)}",
            field="hessian",
        )
    if not bool(torch.isfinite(source).all()):
        raise GPTQNumericalError("the Hessian has NaN or infinite entries")
    diagonal = source.diagonal().to(device=device, dtype=torch.float64)
    # a value's weight in the scale search: its column's (live) Hessian diagonal
    column_importance = _live_diagonal(diagonal).cpu().numpy().astype(np.float32)

    stored_numpy = stored.cpu().numpy()
    numel = rows * cols
    max_code = (1 << bits) - 1
    # The tensor's grid exponent comes from the original weights, exactly as RTN's.
    starts = np.arange(0, numel, group_size, dtype=np.intp)
    flat_original = stored_numpy.reshape(-1)
    scale_exponent = pick_scale_exponent(
        needed_scales(
            np.minimum.reduceat(flat_original, starts),
            np.maximum.reduceat(flat_original, starts),
            bits,
            symmetric,
        )
    )
    grid = scale_grid(scale_exponent)
    # RTN's codes give rate-aware rounding and a priced scale search their code lengths
    priced_search = scale_search_steps > 0 and scale_search_price > 0
    rtn = (
        quantize_tensor(stored_numpy, bits, group_size, symmetric=symmetric)
        if rate_lambda > 0 or priced_search
        else None
    )
    code_bits = _rate_table(rtn) if rtn is not None else None
    rate_table = torch.from_numpy(code_bits).to(device) if rate_lambda > 0 else None
    bit_price = (
        scale_search_price * _bits_neutral_price(rtn, column_importance, transposed)
        if priced_search and rtn is not None
        else 0.0
    )
    del rtn

    if act_order:
        order = torch.argsort(_live_diagonal(diagonal), descending=True, stable=True)
        matrix = matrix[:, order]
    else:
        order = torch.arange(cols, device=device)
    h_inv = _inverse_cholesky(source, order, float(damping), device)
    # Work on the transpose, [column in processing order, row]: a column is contiguous.
    work = matrix.T.contiguous()
    order_numpy = order.cpu().numpy()
    position_of_column = np.empty(cols, dtype=np.int64)
    position_of_column[order_numpy] = np.arange(cols)
    positions_device = torch.from_numpy(position_of_column).to(device)
    num_groups = group_count(numel, group_size)
    first_position = _group_first_positions(rows, cols, transposed, position_of_column, group_size)
    groups_by_start = np.argsort(first_position, kind="stable")
    sorted_starts = first_position[groups_by_start]
    scale_codes = np.zeros(num_groups, dtype=np.uint8)
    zeros = np.zeros(num_groups, dtype=np.float32)
    scales_device = torch.zeros(num_groups, dtype=torch.float32, device=device)
    zeros_device = torch.zeros(num_groups, dtype=torch.float32, device=device)
    codes = torch.empty((cols, rows), dtype=torch.uint8, device=device)
    row_index = torch.arange(rows, device=device, dtype=torch.int64)[None, :]
    order_device = order.to(torch.int64)
    columns = _columns_numpy if device.type == "cpu" else _columns_torch
    groups_per_chunk = max(1, _CHUNK_ELEMENTS // group_size)

    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        # side information of the groups whose first column falls in this block
        lo, hi = np.searchsorted(sorted_starts, [i1, i2], side="left")
        starting = groups_by_start[lo:hi]
        # with act order nearly every group starts in the first block: chunks bound the
        # index temporaries (int64, several per element) to _CHUNK_ELEMENTS each
        for c0 in range(0, starting.size, groups_per_chunk):
            chunk = starting[c0 : c0 + groups_per_chunk]
            values, element_cols = _current_group_values(
                work, chunk, positions_device, group_size, rows, cols, transposed
            )
            importance = np.where(element_cols >= 0, column_importance[element_cols], 0)
            codes_k, zeros_k = search_group_parameters(
                values,
                importance,
                bits,
                symmetric,
                scale_exponent,
                scale_search_steps,
                code_bits=code_bits,
                bit_price=bit_price,
            )
            del values, element_cols, importance
            scale_codes[chunk] = codes_k
            zeros[chunk] = zeros_k
            group_ids = torch.from_numpy(chunk).to(device)
            scales_device[group_ids] = torch.from_numpy(grid[codes_k]).to(device)
            zeros_device[group_ids] = torch.from_numpy(zeros_k).to(device)
        # per element of the block: its group's scale and zero point ([column, row])
        block_columns = order_device[i1:i2][:, None]
        if transposed:
            block_groups = (block_columns * rows + row_index) // group_size
        else:
            block_groups = (row_index * cols + block_columns) // group_size
        block = work[i1:i2].clone()
        block_codes, errors = columns(
            block,
            scales_device[block_groups],
            zeros_device[block_groups],
            h_inv[i1:i2, i1:i2],
            max_code,
            rate_table,
            rate_lambda,
        )
        codes[i1:i2] = block_codes
        if i2 < cols:  # lazy batch update of the later columns
            work[i2:] -= h_inv[i1:i2, i2:].T @ errors
    # back to the natural column order, then to the stored layout
    natural = torch.empty_like(codes)  # [column, row]
    natural[order_device] = codes
    stored_codes = natural if transposed else natural.T
    flat_codes = np.ascontiguousarray(stored_codes.cpu().numpy()).reshape(-1)
    return QuantizedTensor(
        shape=stored_shape,
        bits=bits,
        group_size=group_size,
        symmetric=bool(symmetric),
        codes=flat_codes,
        scale_exponent=scale_exponent,
        scale_codes=scale_codes,
        zero_points=np.zeros(0, np.uint8) if symmetric else zeros.astype(np.uint8),
    )


def _columns_numpy(
    block: Any,
    scales: Any,
    zeros: Any,
    h1: Any,
    max_code: int,
    rate_table: Any,
    rate_lambda: float,
) -> tuple[Any, Any]:
    """Quantize the columns of one lazy block in order (CPU).

    ``block`` is ``[columns, rows]`` (updated in place), ``scales``/``zeros`` give each
    element's group parameters, ``h1`` is the block's part of the inverse Cholesky
    factor. Returns the codes (uint8) and the scaled errors, ``[columns, rows]``. numpy
    on CPU: the loop does a dozen small operations per column, where torch's per-call
    and thread-synchronisation costs dominate; every operation is elementwise IEEE
    float32, so the results equal :func:`_columns_torch`'s.
    """
    import torch

    w_all = block.numpy()
    s_all, z_all, h = scales.cpu().numpy(), zeros.cpu().numpy(), h1.cpu().numpy()
    table = rate_table.cpu().numpy() if rate_table is not None else None
    count = w_all.shape[0]
    codes = np.empty(w_all.shape, dtype=np.uint8)
    errors = np.empty_like(w_all)
    for i in range(count):
        w, s, z = w_all[i], s_all[i], z_all[i]
        scaled = w / s
        q = np.rint(scaled)
        if table is not None:
            q = _rate_aware_numpy(scaled, q, z, max_code, table, rate_lambda)
        else:
            q += z
            np.clip(q, 0, max_code, out=q)
        codes[i] = q
        error = (w - (q - z) * s) / h[i, i]
        errors[i] = error
        if i + 1 < count:
            w_all[i + 1 :] -= h[i, i + 1 :, None] * error[None, :]
    return torch.from_numpy(codes), torch.from_numpy(errors)


def _rate_aware_numpy(
    scaled: np.ndarray, q: np.ndarray, z: np.ndarray, max_code: int, table: Any, lam: float
) -> np.ndarray:
    other = np.where(scaled >= q, q + 1, q - 1)
    near = np.clip(q + z, 0, max_code)
    far = np.clip(other + z, 0, max_code)
    x = scaled + z
    alphabet = max_code + 1
    cost_near = (x - near) ** 2 + lam * table[(near - z).astype(np.int64) % alphabet]
    cost_far = (x - far) ** 2 + lam * table[(far - z).astype(np.int64) % alphabet]
    return np.where(cost_far < cost_near, far, near)


def _columns_torch(
    block: Any,
    scales: Any,
    zeros: Any,
    h1: Any,
    max_code: int,
    rate_table: Any,
    rate_lambda: float,
) -> tuple[Any, Any]:
    """:func:`_columns_numpy` with torch operations, for accelerators."""
    import torch

    count = block.shape[0]
    codes = torch.empty(block.shape, dtype=torch.uint8, device=block.device)
    errors = torch.empty_like(block)
    alphabet = max_code + 1
    for i in range(count):
        w, s, z = block[i], scales[i], zeros[i]
        scaled = w / s
        q = torch.round(scaled)
        if rate_table is not None:
            other = torch.where(scaled >= q, q + 1, q - 1)
            near = torch.clamp(q + z, 0, max_code)
            far = torch.clamp(other + z, 0, max_code)
            x = scaled + z
            cost_near = (x - near) ** 2 + rate_lambda * rate_table[
                (near - z).to(torch.int64) % alphabet
            ]
            cost_far = (x - far) ** 2 + rate_lambda * rate_table[
                (far - z).to(torch.int64) % alphabet
            ]
            q = torch.where(cost_far < cost_near, far, near)
        else:
            q = torch.clamp(q + z, 0, max_code)
        codes[i] = q.to(torch.uint8)
        error = (w - (q - z) * s) / h1[i, i]
        errors[i] = error
        if i + 1 < count:
            block[i + 1 :] -= h1[i, i + 1 :, None] * error[None, :]
    return codes, errors


def layer_output_error(weights: Any, decoded: Any, hessian: Any, transposed: bool = False) -> float:
    """The layer-wise loss GPTQ minimises: ``tr(ΔW H ΔWᵀ) / 2`` = mean ``||ΔW x||²``.

    With ``H = 2/N Σ x xᵀ`` this is the mean over the calibration inputs of the squared
    error of the layer's output (float64).
    """
    delta = np.asarray(weights, dtype=np.float64) - np.asarray(decoded, dtype=np.float64)
    if transposed:
        delta = delta.T
    h = np.asarray(hessian, dtype=np.float64)
    return float(np.einsum("ij,jk,ik->", delta, h, delta) / 2.0)
