"""Deterministic group-wise round-to-nearest (RTN) quantization of one tensor.

The tensor is flattened in row-major order and cut into consecutive groups of
``group_size`` values; for an ``[out, in]`` matrix with ``in % group_size == 0`` a
group is part of one row. If the element count is not a multiple of the group
size, the last group is shorter (it holds the remaining values and gets its own
scale). Each group ``j`` has an integer zero point ``z_j`` and a scale ``s_j``;
value ``i`` of the group is stored as the code ``q_i`` and decodes to
``(q_i - z_j) * s_j`` in float32.

Scales are not stored as floats: each is a code ``k`` (one byte) on a logarithmic
grid shared by the whole tensor, ``scale(k) = 2 ** (scale_exponent + k / 16)``
(16 steps per octave, 16 octaves), evaluated exactly as
``ldexp(FRACTIONAL_POWERS[k % 16], scale_exponent + k // 16)`` with the float32
constants below. The quantizer first picks the smallest grid scale that covers
the group's range, then computes zero point and codes *with that scale*, so what
is stored is exactly what dequantization uses and every value is within half a
scale step of its original (no clipping). Docs: docs/FORMAT.md, "Quantized tensor
payload".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from certify.errors import InvalidInputError

MIN_BITS = 2
MAX_BITS = 8
MAX_GROUP_SIZE = 1 << 20
SCALE_STEPS_PER_OCTAVE = 16
SCALE_CODES = 256
#: float32(2 ** (j / 16)) for j = 0..15, written out so the grid never depends on libm.
FRACTIONAL_POWERS = np.array(
    [
        float.fromhex(text)
        for text in (
            "0x1.0000000000000p+0",
            "0x1.0b55860000000p+0",
            "0x1.172b840000000p+0",
            "0x1.2387a60000000p+0",
            "0x1.306fe00000000p+0",
            "0x1.3dea640000000p+0",
            "0x1.4bfdae0000000p+0",
            "0x1.5ab07e0000000p+0",
            "0x1.6a09e60000000p+0",
            "0x1.7a11480000000p+0",
            "0x1.8ace540000000p+0",
            "0x1.9c49180000000p+0",
            "0x1.ae89fa0000000p+0",
            "0x1.c199be0000000p+0",
            "0x1.d5818e0000000p+0",
            "0x1.ea4afa0000000p+0",
        )
    ],
    dtype=np.float32,
)
#: float32 normal range: the grid (exponent .. exponent + 16) must stay inside it.
MIN_SCALE_EXPONENT = -126
MAX_SCALE_EXPONENT = 127 - (SCALE_CODES // SCALE_STEPS_PER_OCTAVE)
#: Values are processed in blocks of about this many elements, so temporaries stay small.
_BLOCK_ELEMENTS = 1 << 18


@dataclass(frozen=True, eq=False)
class QuantizedTensor:
    """Integer codes and side information of one group-wise quantized tensor.

    ``codes`` (uint8, one per element, row-major) lie in ``[0, 2**bits)``.
    ``scale_codes`` (uint8, one per group) index the tensor's scale grid
    (see :func:`scale_grid`); ``zero_points`` (uint8, one per group) are empty for
    symmetric quantization, whose zero point is ``2 ** (bits - 1)``.
    """

    shape: tuple[int, ...]
    bits: int
    group_size: int
    symmetric: bool
    codes: np.ndarray
    scale_exponent: int
    scale_codes: np.ndarray
    zero_points: np.ndarray

    @property
    def numel(self) -> int:
        """Number of elements of the tensor."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def num_groups(self) -> int:
        """Number of groups (the last may be partial)."""
        return group_count(self.numel, self.group_size)

    def scales(self) -> np.ndarray:
        """Per-group scales as float32 (exactly the values dequantization uses)."""
        return scale_grid(self.scale_exponent)[self.scale_codes]

    def group_zero_points(self) -> np.ndarray:
        """Per-group zero points as uint8 (the constant ``2**(bits-1)`` if symmetric)."""
        if self.symmetric:
            return np.full(self.num_groups, 1 << (self.bits - 1), dtype=np.uint8)
        return self.zero_points

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantizedTensor):
            return NotImplemented
        return (
            self.shape == other.shape
            and self.bits == other.bits
            and self.group_size == other.group_size
            and self.symmetric == other.symmetric
            and self.scale_exponent == other.scale_exponent
            and np.array_equal(self.codes, other.codes)
            and np.array_equal(self.scale_codes, other.scale_codes)
            and np.array_equal(self.zero_points, other.zero_points)
        )

    __hash__ = None  # type: ignore[assignment]


def group_count(numel: int, group_size: int) -> int:
    """Number of groups of ``group_size`` (last one partial) covering ``numel`` values."""
    return -(-numel // group_size)


def scale_grid(scale_exponent: int) -> np.ndarray:
    """The 256 float32 scales ``2 ** (scale_exponent + k / 16)``, increasing in ``k``."""
    if not MIN_SCALE_EXPONENT <= scale_exponent <= MAX_SCALE_EXPONENT:
        raise InvalidInputError(
            f"must lie in [{MIN_SCALE_EXPONENT}, {MAX_SCALE_EXPONENT}], got {scale_exponent}",
            field="scale_exponent",
        )
    k = np.arange(SCALE_CODES)
    exponents = scale_exponent + k // SCALE_STEPS_PER_OCTAVE
    grid = np.ldexp(FRACTIONAL_POWERS[k % SCALE_STEPS_PER_OCTAVE], exponents)
    return grid.astype(np.float32)


def validate_settings(bits: int, group_size: int) -> None:
    """Raise :class:`InvalidInputError` unless ``bits`` and ``group_size`` are usable."""
    if isinstance(bits, bool) or not isinstance(bits, int | np.integer):
        raise InvalidInputError(f"must be an integer, got {bits!r}", field="bits")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise InvalidInputError(
            f"must be between {MIN_BITS} and {MAX_BITS}, got {bits}",
            field="bits",
            hint="pass e.g. --bits 4",
        )
    if isinstance(group_size, bool) or not isinstance(group_size, int | np.integer):
        raise InvalidInputError(f"must be an integer, got {group_size!r}", field="group_size")
    if not 1 <= group_size <= MAX_GROUP_SIZE:
        raise InvalidInputError(
            f"must be between 1 and {MAX_GROUP_SIZE}, got {group_size}",
            field="group_size",
            hint="typical values are 32, 64 or 128",
        )


def quantize_tensor(
    weights: np.ndarray, bits: int, group_size: int, symmetric: bool = False
) -> QuantizedTensor:
    """Quantize ``weights`` group-wise with round-to-nearest.

    Asymmetric (default): the group's range ``[min(w, 0), max(w, 0)]`` is covered by
    ``2**bits - 1`` steps with an integer zero point. Symmetric: zero point
    ``2**(bits-1)`` and the scale covers ``max|w|`` with ``2**(bits-1) - 1`` steps.
    Deterministic (float32 IEEE arithmetic only). Raises :class:`InvalidInputError`
    for bits outside 2-8, bad group sizes, non-numeric or non-finite weights.
    """
    validate_settings(bits, group_size)
    bits = int(bits)
    group_size = int(group_size)
    array = np.asarray(weights)
    if array.dtype.kind not in "fiu":
        raise InvalidInputError(
            f"must be a real numeric array, got dtype {array.dtype}", field="weights"
        )
    shape = tuple(int(d) for d in array.shape)
    flat = np.ascontiguousarray(array, dtype=np.float32).reshape(-1)
    numel = flat.size
    num_groups = group_count(numel, group_size)
    max_code = (1 << bits) - 1

    # Pass 1: the scale each group needs. reduceat over the group starts handles the
    # partial last group too, and is faster than min(axis=1) for short groups.
    full = (numel // group_size) * group_size
    starts = np.arange(0, numel, group_size, dtype=np.intp)
    if num_groups:
        lows = np.minimum.reduceat(flat, starts)
        highs = np.maximum.reduceat(flat, starts)
    else:
        lows = highs = np.zeros(0, dtype=np.float32)
    if num_groups and not (np.isfinite(lows).all() and np.isfinite(highs).all()):
        raise InvalidInputError(
            "contain NaN or infinite values", field="weights", hint="check the checkpoint"
        )
    needed = needed_scales(lows, highs, bits, symmetric)
    scale_exponent = pick_scale_exponent(needed)
    scale_codes, zeros = group_parameters(lows, needed, bits, symmetric, scale_exponent)
    scales = scale_grid(scale_exponent)[scale_codes]
    stored_zero_points = np.zeros(0, np.uint8) if symmetric else zeros.astype(np.uint8)

    # Pass 2: codes, in blocks of whole groups so temporaries stay cache-sized.
    codes = np.empty(numel, dtype=np.uint8)
    groups_per_block = max(1, _BLOCK_ELEMENTS // group_size)
    full_groups = full // group_size
    for first in range(0, full_groups, groups_per_block):
        last = min(first + groups_per_block, full_groups)
        values = flat[first * group_size : last * group_size].reshape(-1, group_size)
        _codes_into(
            values,
            scales[first:last, None],
            zeros[first:last, None],
            max_code,
            codes[first * group_size : last * group_size].reshape(-1, group_size),
        )
    if full < numel:
        _codes_into(flat[full:], scales[-1], zeros[-1], max_code, codes[full:])
    return QuantizedTensor(
        shape=shape,
        bits=bits,
        group_size=group_size,
        symmetric=bool(symmetric),
        codes=codes,
        scale_exponent=scale_exponent,
        scale_codes=scale_codes,
        zero_points=stored_zero_points,
    )


def needed_scales(lows: np.ndarray, highs: np.ndarray, bits: int, symmetric: bool) -> np.ndarray:
    """Per-group scale that covers each group's range (float32), from its min and max.

    ``lows``/``highs`` are the groups' minima and maxima (float32); the range always
    includes 0. Raises :class:`InvalidInputError` when a range overflows float32.
    """
    lows = np.minimum(np.asarray(lows, dtype=np.float32), np.float32(0))
    highs = np.maximum(np.asarray(highs, dtype=np.float32), np.float32(0))
    steps = float((1 << bits) - 1) if not symmetric else float((1 << (bits - 1)) - 1)
    with np.errstate(over="ignore"):  # an overflowing range is reported just below
        needed = np.maximum(-lows, highs) if symmetric else highs - lows
        needed /= np.float32(steps)
    if needed.size and not np.isfinite(needed).all():
        raise InvalidInputError(
            "magnitude too large to quantize in float32", field="weights", hint="rescale them"
        )
    return needed


def pick_scale_exponent(needed: np.ndarray) -> int:
    """The tensor's grid exponent for the per-group scales ``needed`` (see module doc)."""
    return _pick_scale_exponent(float(needed.max()) if needed.size else 0.0)


def group_parameters(
    lows: np.ndarray, needed: np.ndarray, bits: int, symmetric: bool, scale_exponent: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scale codes (uint8) and zero points (float32, integral) of groups.

    ``needed`` comes from :func:`needed_scales`; the scale code is the smallest grid code
    whose scale covers it (255 if none does), the zero point ``clip(rint(-lo / s), 0,
    2**bits - 1)`` with ``lo = min(low, 0)`` (``2**(bits-1)`` if symmetric). RTN and GPTQ
    both choose their side information with this function, so it has one definition.
    """
    max_code = (1 << bits) - 1
    grid = scale_grid(scale_exponent)
    scale_codes_int = np.searchsorted(grid, needed, side="left")
    np.minimum(scale_codes_int, SCALE_CODES - 1, out=scale_codes_int)
    scale_codes = scale_codes_int.astype(np.uint8)
    if symmetric:
        return scale_codes, np.full(needed.shape, 1 << (bits - 1), dtype=np.float32)
    lows = np.minimum(np.asarray(lows, dtype=np.float32), np.float32(0))
    zeros = np.rint(-lows / grid[scale_codes])
    np.clip(zeros, 0, max_code, out=zeros)
    return scale_codes, zeros.astype(np.float32)


def search_group_parameters(
    values: np.ndarray,
    importance: np.ndarray,
    bits: int,
    symmetric: bool,
    scale_exponent: int,
    steps: int,
    *,
    code_bits: np.ndarray | None = None,
    bit_price: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Scale codes and zero points of groups that minimise their weighted rounding error,
    or, given a price per bit, their error plus the price of their codes' bits.

    ``values`` and ``importance`` are ``[groups, group_size]`` (float32; pad a short
    group with value 0 and importance 0). The candidates are RTN's choice
    (:func:`group_parameters`) and each of the ``steps`` grid scales just below it
    (and, when ``bit_price > 0``, just above it), with the zero point
    ``rint(max_code · −lo / (hi − lo))`` (where a range scaled about zero puts it) and
    its two neighbours; a symmetric group keeps ``2**(bits-1)``. A smaller scale rounds
    the bulk of the group more finely and clips its extremes; a larger one spends fewer
    bits. Kept is the candidate with the smallest ``Σ importance · (value − decoded)²``
    (``decoded`` exactly as dequantization gives it) plus ``bit_price`` times the bits
    of its codes, ``Σ code_bits[(code − zero) mod 2**bits]`` over the values with
    importance > 0. Ties keep the earlier candidate, RTN's first, so ``steps=0`` returns
    RTN's rule and no group's cost ever exceeds that of RTN's rule.

    >>> v = np.array([[-1.0, -0.1, 0.0, 0.1, 0.2, 0.3, 0.35, 3.0]], dtype=np.float32)
    >>> w = np.array([[1, 9, 9, 9, 9, 9, 9, 0.01]], dtype=np.float32)  # the 3.0 barely counts
    >>> e = pick_scale_exponent(needed_scales(v.min(1), v.max(1), 2, False))
    >>> rtn_code = search_group_parameters(v, w, 2, False, e, 0)[0]
    >>> int(search_group_parameters(v, w, 2, False, e, 16)[0][0]) < int(rtn_code[0])
    True
    """
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
        raise InvalidInputError(
            f"must be an integer ≥ 0, got {steps!r}", field="scale_search_steps"
        )
    values = np.asarray(values, dtype=np.float32)
    importance = np.asarray(importance, dtype=np.float32)
    if values.ndim != 2 or importance.shape != values.shape:
        raise InvalidInputError(
            f"values {values.shape} and importance {importance.shape} must be the same 2-D "
            "shape [groups, group_size]",
            field="importance",
        )
    if bit_price < 0 or (bit_price > 0 and code_bits is None):
        raise InvalidInputError(
            f"must be ≥ 0, and > 0 only with code_bits, got {bit_price!r}", field="bit_price"
        )
    max_code = (1 << bits) - 1
    grid = scale_grid(scale_exponent)
    lows = values.min(axis=1, initial=0.0)  # every range includes 0, as RTN's does
    highs = values.max(axis=1, initial=0.0)
    rtn_codes, rtn_zeros = group_parameters(
        lows, needed_scales(lows, highs, bits, symmetric), bits, symmetric, scale_exponent
    )
    if steps == 0:
        return rtn_codes, rtn_zeros
    counted = importance > 0
    price = np.asarray(code_bits, dtype=np.float64) * bit_price if bit_price > 0 else None

    def cost(codes: np.ndarray, zeros: np.ndarray) -> np.ndarray:
        return _weighted_error(values, importance, grid[codes], zeros, max_code, price, counted)

    best_codes, best_zeros = rtn_codes.copy(), rtn_zeros.copy()
    best_error = cost(best_codes, best_zeros)
    if symmetric:
        centre = rtn_zeros
    else:
        span = highs - lows
        with np.errstate(divide="ignore", invalid="ignore"):
            centre = np.where(span > 0, np.rint(max_code * -lows / span), rtn_zeros)
    offsets = (0.0,) if symmetric else (0.0, -1.0, 1.0)
    shifts = [-step for step in range(1, int(steps) + 1)]
    if price is not None:
        shifts += list(range(1, int(steps) + 1))
    for shift in shifts:
        codes = np.clip(rtn_codes.astype(np.int64) + shift, 0, SCALE_CODES - 1).astype(np.uint8)
        for offset in offsets:
            zeros = np.clip(centre + np.float32(offset), 0, max_code).astype(np.float32)
            error = cost(codes, zeros)
            better = error < best_error
            best_error = np.where(better, error, best_error)
            best_codes = np.where(better, codes, best_codes)
            best_zeros = np.where(better, zeros, best_zeros)
    return best_codes, best_zeros


def _weighted_error(
    values: np.ndarray,
    importance: np.ndarray,
    scales: np.ndarray,
    zeros: np.ndarray,
    max_code: int,
    price: np.ndarray | None = None,
    counted: np.ndarray | None = None,
) -> np.ndarray:
    """Per group ``Σ importance · (value − decoded)²`` with RTN's codes for these
    parameters, plus ``Σ price[(code − zero) mod 2**bits]`` over ``counted`` if priced."""
    codes = np.empty(values.shape, dtype=np.float32)
    _codes_into(values, scales[:, None], zeros[:, None], max_code, codes)
    codes -= zeros[:, None]
    total = np.zeros(values.shape[0], dtype=np.float64)
    if price is not None and counted is not None:
        centred = codes.astype(np.int64) % (max_code + 1)
        total += np.where(counted, price[centred], 0.0).sum(axis=1)
    codes *= scales[:, None]
    np.subtract(values, codes, out=codes)
    np.square(codes, out=codes)
    codes *= importance
    return total + codes.sum(axis=1, dtype=np.float64)


def _codes_into(
    values: np.ndarray, scales: np.ndarray, zeros: np.ndarray, max_code: int, out: np.ndarray
) -> None:
    scaled = values / scales
    np.rint(scaled, out=scaled)
    scaled += zeros
    np.clip(scaled, 0, max_code, out=scaled)
    out[...] = scaled


def _pick_scale_exponent(largest_needed_scale: float) -> int:
    """Grid exponent whose top octave holds the largest scale any group needs."""
    if largest_needed_scale <= 0.0:
        return MIN_SCALE_EXPONENT
    _, exponent = np.frexp(np.float32(largest_needed_scale))  # s = m * 2**e, m in [0.5, 1)
    # s < 2**e = grid value of code 16*(e - E); the top code is 255 = 16*15 + 15, so
    # E = e - 15 puts 2**e inside the grid and covers 15 octaves below it.
    scale_exponent = int(exponent) - (SCALE_CODES // SCALE_STEPS_PER_OCTAVE - 1)
    if scale_exponent > MAX_SCALE_EXPONENT:
        raise InvalidInputError(
            "magnitude too large to quantize in float32", field="weights", hint="rescale them"
        )
    return max(scale_exponent, MIN_SCALE_EXPONENT)


def dequantize(q: QuantizedTensor) -> np.ndarray:
    """Decoded float32 tensor of shape ``q.shape``: ``(code - zero_point) * scale``.

    Exact and deterministic: every value is one float32 multiplication of a small
    integer by a stored grid scale. This defines the weights of the decoded model.
    """
    numel = q.numel
    if q.codes.shape != (numel,):
        raise InvalidInputError(
            f"expected {numel} codes for shape {q.shape}, got {q.codes.shape}", field="codes"
        )
    scales = q.scales()
    zeros = q.group_zero_points().astype(np.float32)
    if scales.shape != (q.num_groups,) or zeros.shape != (q.num_groups,):
        raise InvalidInputError(
            f"expected {q.num_groups} groups of side information", field="scale_codes"
        )
    out = np.empty(numel, dtype=np.float32)
    g = q.group_size
    full = (numel // g) * g
    full_groups = full // g
    groups_per_block = max(1, _BLOCK_ELEMENTS // g)
    for first in range(0, full_groups, groups_per_block):
        last = min(first + groups_per_block, full_groups)
        block = out[first * g : last * g].reshape(-1, g)
        block[...] = q.codes[first * g : last * g].reshape(-1, g)
        block -= zeros[first:last, None]
        block *= scales[first:last, None]
    if full < numel:
        tail = out[full:]
        tail[...] = q.codes[full:]
        tail -= zeros[-1]
        tail *= scales[-1]
    return out.reshape(q.shape)
