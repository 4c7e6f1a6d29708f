"""Tests of certify.codec: ANS symbol streams and the quantized-tensor payload."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certify.codec import (
    EncodedSymbols,
    codec_parameters,
    decode_quantized,
    decode_symbols,
    encode_quantized,
    encode_symbols,
    read_quantized,
)
from certify.errors import ArtifactFormatError, InvalidInputError
from certify.quantize import dequantize, quantize_tensor


@st.composite
def symbol_streams(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    alphabet_size = draw(st.integers(1, 300))
    length = draw(st.integers(0, 3000))
    used = draw(st.integers(1, alphabet_size))
    skew = draw(st.floats(0.0, 6.0))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    support = rng.choice(alphabet_size, size=used, replace=False)
    weights = np.exp(-skew * np.arange(used, dtype=np.float64))
    symbols = rng.choice(support, size=length, p=weights / weights.sum())
    return symbols.astype(np.int64), alphabet_size


@settings(max_examples=80, deadline=None)
@given(stream=symbol_streams())
def test_symbol_round_trip(stream: tuple[np.ndarray, int]) -> None:
    symbols, alphabet_size = stream
    encoded = encode_symbols(symbols, alphabet_size)
    assert encoded.num_symbols == symbols.size
    assert encoded.coded_bits == 32 * encoded.words.size
    assert np.array_equal(decode_symbols(encoded), symbols)
    # rebuilt from the stored counts alone, as a reader of the file does
    rebuilt = EncodedSymbols(alphabet_size, encoded.counts.copy(), encoded.words.copy())
    assert np.array_equal(decode_symbols(rebuilt), symbols)


def test_empty_and_single_symbol_streams_need_no_words() -> None:
    for symbols in (np.zeros(0, np.int64), np.full(1000, 3, np.int64)):
        encoded = encode_symbols(symbols, 16)
        assert encoded.words.size == 0
        assert np.array_equal(decode_symbols(encoded), symbols)


def test_coded_length_close_to_empirical_entropy() -> None:
    rng = np.random.default_rng(0)
    symbols = np.clip(np.rint(rng.normal(7.5, 2.0, 200_000)), 0, 15).astype(np.uint8)
    probabilities = np.bincount(symbols) / symbols.size
    probabilities = probabilities[probabilities > 0]
    entropy_bits = -(probabilities * np.log2(probabilities)).sum() * symbols.size
    coded_bits = encode_symbols(symbols, 16).coded_bits
    assert entropy_bits <= coded_bits <= entropy_bits * 1.001 + 64


def test_absent_symbols_get_no_probability_mass() -> None:
    # Only symbols 0 and 255 occur: the model is binary, so ~1 bit per symbol.
    rng = np.random.default_rng(1)
    symbols = rng.choice([0, 255], size=64_000).astype(np.uint8)
    encoded = encode_symbols(symbols, 256)
    assert encoded.coded_bits <= 64_000 * 1.001 + 64
    bad = EncodedSymbols(256, encoded.counts, encoded.words)
    assert np.array_equal(decode_symbols(bad), symbols)


def test_encoding_is_deterministic_across_chunking() -> None:
    import certify.codec as codec

    rng = np.random.default_rng(2)
    symbols = rng.integers(0, 5, size=50_000)
    whole = encode_symbols(symbols, 5)
    original = codec._CHUNK_SYMBOLS
    codec._CHUNK_SYMBOLS = 997
    try:
        chunked = encode_symbols(symbols, 5)
        assert np.array_equal(decode_symbols(whole), symbols)
    finally:
        codec._CHUNK_SYMBOLS = original
    assert np.array_equal(whole.words, chunked.words)


def test_symbol_input_validation() -> None:
    with pytest.raises(InvalidInputError, match="symbols"):
        encode_symbols(np.array([0, 4]), 4)
    with pytest.raises(InvalidInputError, match="symbols"):
        encode_symbols(np.array([-1, 2]), 4)
    with pytest.raises(InvalidInputError, match="symbols"):
        encode_symbols(np.array([0.5]), 4)
    with pytest.raises(InvalidInputError, match="alphabet_size"):
        encode_symbols(np.array([0]), 0)


def test_corrupted_words_are_detected() -> None:
    rng = np.random.default_rng(3)
    symbols = rng.integers(0, 8, size=5000)
    encoded = encode_symbols(symbols, 8)
    words = encoded.words.copy()
    words[words.size // 2] ^= 0x00010000
    with pytest.raises(ArtifactFormatError):
        decode_symbols(EncodedSymbols(8, encoded.counts, words))
    with pytest.raises(ArtifactFormatError):
        decode_symbols(EncodedSymbols(8, encoded.counts, encoded.words[:-1]))


def _tensor(seed: int = 0, shape: tuple[int, ...] = (48, 96)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * 0.05).astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(
    bits=st.integers(2, 8),
    group_size=st.integers(1, 200),
    symmetric=st.booleans(),
    shape=st.lists(st.integers(0, 30), min_size=0, max_size=3).map(tuple),
    seed=st.integers(0, 1000),
)
def test_payload_round_trip_is_bit_exact(
    bits: int, group_size: int, symmetric: bool, shape: tuple[int, ...], seed: int
) -> None:
    weights = _tensor(seed, shape)
    q = quantize_tensor(weights, bits, group_size, symmetric=symmetric)
    payload = encode_quantized(q)
    decoded = decode_quantized(payload)
    assert decoded == q
    assert decoded.shape == weights.shape
    assert np.array_equal(dequantize(decoded), dequantize(q))
    assert encode_quantized(decoded) == payload


def test_payload_is_deterministic_and_self_delimiting() -> None:
    first = encode_quantized(quantize_tensor(_tensor(1), 3, 32))
    second = encode_quantized(quantize_tensor(_tensor(1), 3, 32))
    assert first == second
    other = encode_quantized(quantize_tensor(_tensor(2, (5, 7)), 4, 8, symmetric=True))
    joined = b"xx" + first + other
    q1, end1 = read_quantized(joined, 2)
    q2, end2 = read_quantized(joined, end1)
    assert end2 == len(joined)
    assert q1 == decode_quantized(first) and q2 == decode_quantized(other)
    with pytest.raises(ArtifactFormatError, match="trailing"):
        decode_quantized(first + b"\x00")


def test_payload_header_fields() -> None:
    q = quantize_tensor(_tensor(3), 4, 64)
    payload = encode_quantized(q)
    assert payload[:2] == b"QT" and payload[2] == 1 and payload[3] == 0 and payload[4] == 4
    assert payload[5] == 2
    assert int.from_bytes(payload[6:8], "little", signed=True) == q.scale_exponent
    assert int.from_bytes(payload[8:12], "little") == 64
    assert int.from_bytes(payload[12:20], "little") == 48
    assert int.from_bytes(payload[-4:], "little") == zlib.crc32(payload[:-4])


def test_every_truncation_is_an_artifact_format_error() -> None:
    payload = encode_quantized(quantize_tensor(_tensor(4, (8, 40)), 3, 16))
    for cut in range(len(payload)):
        with pytest.raises(ArtifactFormatError):
            decode_quantized(payload[:cut])


def test_every_flipped_byte_is_an_artifact_format_error() -> None:
    payload = bytearray(encode_quantized(quantize_tensor(_tensor(5, (6, 50)), 4, 32)))
    for position in range(len(payload)):
        corrupted = bytearray(payload)
        corrupted[position] ^= 0x5A
        with pytest.raises(ArtifactFormatError):
            decode_quantized(bytes(corrupted))


def test_unknown_version_and_magic() -> None:
    payload = bytearray(encode_quantized(quantize_tensor(_tensor(6), 4, 32)))
    future = bytearray(payload)
    future[2] = 2
    with pytest.raises(ArtifactFormatError, match="version 2"):
        decode_quantized(bytes(future))
    with pytest.raises(ArtifactFormatError, match="magic"):
        decode_quantized(b"ZZ" + bytes(payload[2:]))


def test_codec_parameters_record_byte_changing_settings() -> None:
    parameters = codec_parameters()
    assert parameters["perfect"] is False
    assert parameters["word_bits"] == 32
    assert parameters["constriction_version"].count(".") >= 1
    assert parameters["payload_version"] == 1


def _entropy_bits(symbols: np.ndarray) -> float:
    counts = np.bincount(symbols).astype(np.float64)
    counts = counts[counts > 0]
    return float(-(counts * np.log2(counts / symbols.size)).sum())


def test_codes_are_coded_relative_to_their_zero_point() -> None:
    from certify.codec import centered_codes

    rng = np.random.default_rng(8)
    # every group holds small noise and one outlier, alternately positive and negative, so
    # zero points differ (~3 vs ~12) and the raw codes mix two shifted distributions
    weights = rng.standard_normal((256, 64)).astype(np.float32) * 0.1
    weights[::2, 0] = 1.0
    weights[1::2, 0] = -1.0
    q = quantize_tensor(weights, 4, 64)
    centered = centered_codes(q)
    zeros = np.repeat(q.zero_points, 64)
    assert np.array_equal((centered.astype(np.int64) + zeros) % 16, q.codes)
    payload_bits = 8 * len(encode_quantized(q))
    assert payload_bits < 0.9 * _entropy_bits(q.codes)
    assert payload_bits < 1.05 * _entropy_bits(centered) + 8 * 256


FIXTURES = Path(__file__).parent / "fixtures" / "codec"


def _golden_tensors() -> dict[str, tuple[np.ndarray, int, int, bool]]:
    """Exactly representable weights (no libm), so the bytes are platform-independent."""
    asymmetric = (((np.arange(200) * 37) % 101 - 50) / 64).astype(np.float32).reshape(10, 20)
    asymmetric[3, 7] = 5.0  # one outlier; 200 values in groups of 16: a partial last group
    symmetric = (((np.arange(96) * 13) % 29 - 14) / 32).astype(np.float32).reshape(4, 24)
    return {
        "quantized_payload_v1.bin": (asymmetric, 3, 16, False),
        "quantized_payload_v1_symmetric.bin": (symmetric, 4, 8, True),
    }


@pytest.mark.parametrize("name", sorted(_golden_tensors()))
def test_golden_payload_bytes(name: str) -> None:
    """The v1 payload bytes are frozen. If the format changes on purpose, bump
    PAYLOAD_VERSION and rewrite the fixture with ``encode_quantized`` of these tensors."""
    weights, bits, group_size, symmetric = _golden_tensors()[name]
    q = quantize_tensor(weights, bits, group_size, symmetric=symmetric)
    golden = (FIXTURES / name).read_bytes()
    assert encode_quantized(q) == golden
    decoded = decode_quantized(golden)
    assert decoded == q
    assert np.array_equal(dequantize(decoded), dequantize(q))
