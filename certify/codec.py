"""Entropy coding of integer symbols with constriction's ANS, and the quantized-tensor payload.

One stream of symbols (a tensor's codes, its scale codes or its zero points) is coded
with ``constriction.stream.stack.AnsCoder`` and ONE
``constriction.stream.model.Categorical(probabilities, perfect=False)`` built from the
exact integer symbol counts, which are stored with the stream. Only symbols that occur
are in the model's alphabet (absent symbols get no probability mass and cannot be
encoded); the model's probabilities are ``counts / total`` in float64 over the present
symbols, computed by the same function on both sides so encoder and decoder build a
bit-identical model. The coded length is a whole number of 32-bit words.

The byte layout of a payload is specified in docs/FORMAT.md, "Quantized tensor payload".
"""

from __future__ import annotations

import importlib.metadata
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import constriction
import numpy as np

from certify.errors import ArtifactFormatError, InvalidInputError
from certify.quantize import (
    MAX_BITS,
    MAX_GROUP_SIZE,
    MAX_SCALE_EXPONENT,
    MIN_BITS,
    MIN_SCALE_EXPONENT,
    SCALE_CODES,
    SCALE_STEPS_PER_OCTAVE,
    QuantizedTensor,
    group_count,
)

PAYLOAD_MAGIC = b"QT"
PAYLOAD_VERSION = 1
MAX_NDIM = 8
MAX_ALPHABET_SIZE = 1 << 16
#: Symbols are handed to constriction in chunks of this many (bounds int32 temporaries).
_CHUNK_SYMBOLS = 1 << 20
_FLAG_SYMMETRIC = 0x01
_HEADER = struct.Struct("<2sBBBBhI")  # magic, version, flags, bits, ndim, scale_exponent, group
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


@dataclass(frozen=True, eq=False)
class EncodedSymbols:
    """An ANS-coded symbol stream: exact counts per symbol and the compressed words.

    ``counts[s]`` is how often symbol ``s`` occurs (length ``alphabet_size``, uint64);
    ``words`` are the coder's 32-bit words (uint32). The number of symbols is
    ``counts.sum()``. Streams with fewer than two distinct symbols need no words.
    """

    alphabet_size: int
    counts: np.ndarray
    words: np.ndarray

    @property
    def num_symbols(self) -> int:
        """Number of coded symbols."""
        return int(self.counts.sum())

    @property
    def coded_bits(self) -> int:
        """Bits of the compressed words (a multiple of 32)."""
        return 32 * int(self.words.size)


def codec_parameters() -> dict[str, Any]:
    """Every setting that changes the coded bytes (recorded in the container header)."""
    return {
        "entropy_coder": "constriction.stream.stack.AnsCoder",
        "entropy_model": "constriction.stream.model.Categorical",
        "perfect": False,
        "constriction_version": importlib.metadata.version("constriction"),
        "model_probabilities": "float64 counts/total over present symbols",
        "word_bits": 32,
        "payload_version": PAYLOAD_VERSION,
        "scale_grid": {
            "steps_per_octave": SCALE_STEPS_PER_OCTAVE,
            "codes": SCALE_CODES,
            "rounding": "ceil",
        },
    }


def _model_for(counts: np.ndarray) -> tuple[Any, np.ndarray]:
    """The categorical model over the present symbols, and those symbols in order.

    Encoder and decoder both call this with the same counts, so the model is the same.
    """
    present = np.flatnonzero(counts)
    present_counts = counts[present].astype(np.float64)
    probabilities = present_counts / present_counts.sum()
    model = constriction.stream.model.Categorical(probabilities, perfect=False)
    return model, present


def _check_alphabet(alphabet_size: int) -> None:
    if isinstance(alphabet_size, bool) or not 1 <= int(alphabet_size) <= MAX_ALPHABET_SIZE:
        raise InvalidInputError(
            f"must be between 1 and {MAX_ALPHABET_SIZE}, got {alphabet_size}",
            field="alphabet_size",
        )


def _count_symbols(flat: np.ndarray, alphabet_size: int) -> np.ndarray:
    """Exact count of every symbol (uint64, length ``alphabet_size``); checks the range."""
    if flat.dtype == np.uint8:
        # Count byte pairs through a uint16 view (one 65536-bin pass, ~3x faster than
        # bincount over bytes), then fold the pair table into byte counts.
        # Chunked, because bincount converts its input to intp (8 bytes per pair).
        even = flat.size - flat.size % 2
        pair_view = flat[:even].view(np.uint16)
        pairs = np.zeros(1 << 16, dtype=np.int64)
        for start in range(0, pair_view.size, _CHUNK_SYMBOLS):
            pairs += np.bincount(pair_view[start : start + _CHUNK_SYMBOLS], minlength=1 << 16)
        # each pair adds its low byte to a column and its high byte to a row count
        pair_table = pairs.reshape(256, 256)
        counts = pair_table.sum(axis=0) + pair_table.sum(axis=1)
        if even < flat.size:
            counts[flat[-1]] += 1
        if counts[alphabet_size:].any():
            high = int(np.flatnonzero(counts)[-1])
            raise InvalidInputError(
                f"must lie in [0, {alphabet_size}), got a symbol {high}", field="symbols"
            )
        full = np.zeros(max(alphabet_size, 256), dtype=np.uint64)
        full[:256] = counts
        return full[:alphabet_size]
    if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= alphabet_size):
        raise InvalidInputError(
            f"must lie in [0, {alphabet_size}), got [{int(flat.min())}, {int(flat.max())}]",
            field="symbols",
        )
    return np.bincount(flat, minlength=alphabet_size).astype(np.uint64)


def encode_symbols(symbols: np.ndarray, alphabet_size: int) -> EncodedSymbols:
    """ANS-code ``symbols`` (integers in ``[0, alphabet_size)``) with one categorical model.

    >>> import numpy as np
    >>> symbols = np.array([0, 1, 1, 2, 1, 0, 3, 1], dtype=np.uint8)
    >>> decode_symbols(encode_symbols(symbols, 4)).tolist() == symbols.tolist()
    True
    """
    _check_alphabet(alphabet_size)
    array = np.asarray(symbols)
    if array.dtype.kind not in "iu":
        raise InvalidInputError(f"must be integers, got dtype {array.dtype}", field="symbols")
    flat = np.ascontiguousarray(array).reshape(-1)
    counts = _count_symbols(flat, alphabet_size)
    if np.count_nonzero(counts) < 2:
        # Zero or one distinct symbol: the counts alone determine the stream.
        return EncodedSymbols(int(alphabet_size), counts, np.zeros(0, dtype=np.uint32))
    model, present = _model_for(counts)
    first, last = int(present[0]), int(present[-1])
    contiguous = last - first + 1 == present.size
    dense_index = np.zeros(alphabet_size, dtype=np.int32)
    dense_index[present] = np.arange(present.size, dtype=np.int32)
    coder = constriction.stream.stack.AnsCoder()
    # ANS is a stack: push chunks last-to-first so that decoding pops them in order.
    # The words are identical to one encode_reverse of the whole array.
    starts = range(0, flat.size, _CHUNK_SYMBOLS)
    for start in reversed(starts):
        part = flat[start : start + _CHUNK_SYMBOLS]
        if contiguous:  # a cast and a shift are ~3x faster than a gather
            chunk = part.astype(np.int32)
            if first:
                chunk -= first
        else:
            chunk = dense_index[part]
        coder.encode_reverse(chunk, model)
    words = np.asarray(coder.get_compressed(), dtype=np.uint32)
    return EncodedSymbols(int(alphabet_size), counts, words)


def decode_symbols(encoded: EncodedSymbols, out: np.ndarray | None = None) -> np.ndarray:
    """Decode a stream made by :func:`encode_symbols` (uint8 if the alphabet fits, else int32).

    Raises :class:`ArtifactFormatError` if the words do not decode to exactly the
    stored counts (corrupted or truncated data).
    """
    counts = np.asarray(encoded.counts, dtype=np.uint64)
    alphabet_size = int(encoded.alphabet_size)
    _check_alphabet(alphabet_size)
    if counts.shape != (alphabet_size,):
        raise ArtifactFormatError(
            f"symbol counts: expected {alphabet_size} entries, got {counts.shape}"
        )
    total = int(counts.sum())
    dtype = np.uint8 if alphabet_size <= 256 else np.int32
    if out is None:
        out = np.empty(total, dtype=dtype)
    present = np.flatnonzero(counts)
    if present.size < 2:
        if encoded.words.size:
            raise ArtifactFormatError("symbol stream: words present for a constant stream")
        if present.size:
            out[...] = present[0]
        return out
    model, present = _model_for(counts)
    symbol_of = present.astype(dtype)
    first = int(present[0])
    contiguous = int(present[-1]) - first + 1 == present.size
    try:
        coder = constriction.stream.stack.AnsCoder(np.ascontiguousarray(encoded.words, np.uint32))
        for start in range(0, total, _CHUNK_SYMBOLS):
            amount = min(_CHUNK_SYMBOLS, total - start)
            dense = coder.decode(model, amount)
            target = out[start : start + amount]
            if contiguous:  # a cast and a shift are faster than a gather
                target[...] = dense
                if first:
                    target += first
            else:
                target[...] = symbol_of[dense]
        finished = coder.is_empty()
    except (ValueError, RuntimeError, IndexError, OverflowError) as error:
        raise ArtifactFormatError(f"symbol stream does not decode: {error}") from error
    if not finished:
        raise ArtifactFormatError("symbol stream: compressed words left over after decoding")
    if not np.array_equal(_count_symbols(out, alphabet_size), counts):
        raise ArtifactFormatError("symbol stream: decoded symbols do not match stored counts")
    return out


# --------------------------------------------------------------------------- payload bytes


def _write_varint(value: int, parts: list[bytes]) -> None:
    data = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            data.append(byte | 0x80)
        else:
            data.append(byte)
            break
    parts.append(bytes(data))


def _stream_bytes(encoded: EncodedSymbols) -> bytes:
    """presence bitmap, LEB128 counts of present symbols, u32 word count, LE words."""
    counts = encoded.counts
    present = counts > 0
    parts = [np.packbits(present, bitorder="little").tobytes()]
    for count in counts[present]:
        _write_varint(int(count), parts)
    parts.append(_U32.pack(int(encoded.words.size)))
    parts.append(encoded.words.astype("<u4").tobytes())
    return b"".join(parts)


class _Reader:
    """Bounds-checked little-endian reader that names what it was reading on failure."""

    def __init__(self, buffer: bytes | bytearray | memoryview, offset: int) -> None:
        self.view = memoryview(buffer)
        self.offset = offset

    def take(self, size: int, what: str) -> memoryview:
        end = self.offset + size
        if size < 0 or end > len(self.view):
            raise ArtifactFormatError(
                f"quantized payload truncated while reading {what} "
                f"(needs {size} bytes at offset {self.offset}, {len(self.view)} available)"
            )
        chunk = self.view[self.offset : end]
        self.offset = end
        return chunk

    def varint(self, what: str) -> int:
        value = 0
        for shift in range(0, 64, 7):
            byte = self.take(1, what)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise ArtifactFormatError(f"quantized payload: {what} is not a valid varint")


def _read_stream(reader: _Reader, alphabet_size: int, expected: int, what: str) -> EncodedSymbols:
    bitmap = np.frombuffer(reader.take((alphabet_size + 7) // 8, f"{what} bitmap"), np.uint8)
    present = np.unpackbits(bitmap, bitorder="little")[:alphabet_size].astype(bool)
    if np.unpackbits(bitmap, bitorder="little")[alphabet_size:].any():
        raise ArtifactFormatError(f"quantized payload: {what} bitmap marks symbols out of range")
    counts = np.zeros(alphabet_size, dtype=np.uint64)
    for symbol in np.flatnonzero(present):
        count = reader.varint(f"{what} counts")
        if count == 0:
            raise ArtifactFormatError(f"quantized payload: {what} has a zero count")
        counts[symbol] = count
    if int(counts.sum()) != expected:
        raise ArtifactFormatError(
            f"quantized payload: {what} counts sum to {int(counts.sum())}, expected {expected}"
        )
    num_words = _U32.unpack(reader.take(4, f"{what} word count"))[0]
    words = np.frombuffer(reader.take(4 * num_words, f"{what} words"), dtype="<u4")
    return EncodedSymbols(alphabet_size, counts, words.astype(np.uint32))


def _shift_codes(
    codes: np.ndarray,
    zero_points: np.ndarray,
    q: QuantizedTensor,
    *,
    subtract: bool,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``(codes -/+ zero point of the group) mod 2**bits`` (uint8 arithmetic wraps).

    The codes stream holds codes relative to their group's zero point: a weight of 0 is
    symbol 0 in every group, so one categorical model fits all groups (coding the raw
    codes mixes groups whose distributions are shifted by their zero points).
    """
    if codes.shape != (q.numel,):
        raise InvalidInputError(
            f"expected {q.numel} codes for shape {q.shape}, got {codes.shape}", field="codes"
        )
    if zero_points.shape != (q.num_groups,):
        raise InvalidInputError(f"expected {q.num_groups} zero points", field="zero_points")
    operation = np.subtract if subtract else np.add
    result = np.empty_like(codes) if out is None else out
    mask = np.uint8((1 << q.bits) - 1)
    g = q.group_size
    full_groups = q.numel // g
    step = max(1, (1 << 18) // g)  # groups per block: temporaries stay cache-sized
    for first in range(0, full_groups, step):
        last = min(first + step, full_groups)
        block = result[first * g : last * g].reshape(-1, g)
        operation(
            codes[first * g : last * g].reshape(-1, g), zero_points[first:last, None], out=block
        )
        np.bitwise_and(block, mask, out=block)
    if full_groups * g < q.numel:
        tail = result[full_groups * g :]
        operation(codes[full_groups * g :], zero_points[-1], out=tail)
        np.bitwise_and(tail, mask, out=tail)
    return result


def centered_codes(q: QuantizedTensor) -> np.ndarray:
    """The symbols the codes stream holds: ``(code - group zero point) mod 2**bits`` (uint8)."""
    return _shift_codes(q.codes, q.group_zero_points(), q, subtract=True)


def encode_quantized(q: QuantizedTensor) -> bytes:
    """Self-delimiting little-endian bytes of one quantized tensor (ends with a CRC-32).

    A round trip gives back exactly the same codes, scales and zero points:

    >>> import numpy as np
    >>> from certify.quantize import quantize_tensor
    >>> weights = np.random.default_rng(0).normal(size=(8, 64)).astype(np.float32)
    >>> q = quantize_tensor(weights, bits=4, group_size=32)
    >>> decode_quantized(encode_quantized(q)) == q
    True
    """
    if not MIN_BITS <= q.bits <= MAX_BITS:
        raise InvalidInputError(f"must be between {MIN_BITS} and {MAX_BITS}", field="bits")
    if len(q.shape) > MAX_NDIM:
        raise InvalidInputError(f"at most {MAX_NDIM} dimensions, got {len(q.shape)}", field="shape")
    flags = _FLAG_SYMMETRIC if q.symmetric else 0
    parts = [
        _HEADER.pack(
            PAYLOAD_MAGIC,
            PAYLOAD_VERSION,
            flags,
            q.bits,
            len(q.shape),
            q.scale_exponent,
            q.group_size,
        )
    ]
    parts.extend(_U64.pack(int(dim)) for dim in q.shape)
    centered = centered_codes(q)
    parts.append(_stream_bytes(encode_symbols(centered, 1 << q.bits)))
    del centered
    parts.append(_stream_bytes(encode_symbols(q.scale_codes, SCALE_CODES)))
    if not q.symmetric:
        parts.append(_stream_bytes(encode_symbols(q.zero_points, 1 << q.bits)))
    body = b"".join(parts)
    return body + _U32.pack(zlib.crc32(body))


def read_quantized(
    buffer: bytes | bytearray | memoryview, offset: int = 0
) -> tuple[QuantizedTensor, int]:
    """Parse one payload starting at ``offset``; returns the tensor and the end offset."""
    reader = _Reader(buffer, offset)
    magic, version, flags, bits, ndim, scale_exponent, group_size = _HEADER.unpack(
        reader.take(_HEADER.size, "payload header")
    )
    if magic != PAYLOAD_MAGIC:
        raise ArtifactFormatError(f"quantized payload: bad magic {magic!r}, expected b'QT'")
    if version != PAYLOAD_VERSION:
        raise ArtifactFormatError(
            f"quantized payload version {version} is not supported (this build reads "
            f"{PAYLOAD_VERSION}; upgrade certify)"
        )
    if flags & ~_FLAG_SYMMETRIC:
        raise ArtifactFormatError(f"quantized payload: unknown flags 0x{flags:02x}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ArtifactFormatError(f"quantized payload: bits {bits} outside 2-8")
    if ndim > MAX_NDIM:
        raise ArtifactFormatError(f"quantized payload: {ndim} dimensions (at most {MAX_NDIM})")
    if not 1 <= group_size <= MAX_GROUP_SIZE:
        raise ArtifactFormatError(f"quantized payload: group size {group_size} out of range")
    if not MIN_SCALE_EXPONENT <= scale_exponent <= MAX_SCALE_EXPONENT:
        raise ArtifactFormatError(f"quantized payload: scale exponent {scale_exponent} invalid")
    shape = tuple(_U64.unpack(reader.take(8, "shape"))[0] for _ in range(ndim))
    numel = int(np.prod(shape, dtype=np.float64)) if shape else 1
    if numel > 1 << 40:
        raise ArtifactFormatError(f"quantized payload: implausible shape {shape}")
    symmetric = bool(flags & _FLAG_SYMMETRIC)
    num_groups = group_count(numel, group_size)
    code_stream = _read_stream(reader, 1 << bits, numel, "codes")
    scale_stream = _read_stream(reader, SCALE_CODES, num_groups, "scale codes")
    zero_stream = (
        _read_stream(reader, 1 << bits, num_groups, "zero points") if not symmetric else None
    )
    body_end = reader.offset
    (stored_crc,) = _U32.unpack(reader.take(4, "checksum"))
    if zlib.crc32(reader.view[offset:body_end]) != stored_crc:
        raise ArtifactFormatError("quantized payload: CRC-32 mismatch (corrupted data)")
    q = QuantizedTensor(
        shape=shape,
        bits=bits,
        group_size=group_size,
        symmetric=symmetric,
        codes=decode_symbols(code_stream),
        scale_exponent=scale_exponent,
        scale_codes=decode_symbols(scale_stream),
        zero_points=(
            decode_symbols(zero_stream) if zero_stream is not None else np.zeros(0, np.uint8)
        ),
    )
    _shift_codes(q.codes, q.group_zero_points(), q, subtract=False, out=q.codes)
    return q, reader.offset


def decode_quantized(payload: bytes | bytearray | memoryview) -> QuantizedTensor:
    """Inverse of :func:`encode_quantized`; the payload must be consumed exactly.

    Raises :class:`ArtifactFormatError` for truncated, corrupted or unknown payloads.
    """
    q, end = read_quantized(payload, 0)
    if end != len(memoryview(payload)):
        raise ArtifactFormatError(
            f"quantized payload: {len(memoryview(payload)) - end} unexpected trailing bytes"
        )
    return q
