"""Tests of certify.calibration: calibration windows, their fingerprint, their random stream."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

import certify.calibration
from certify.calibration import (
    TokenArray,
    calibration_batch,
    calibration_sha256,
    check_heldout_calibration,
    draw_calibration_windows,
    window_starts,
)
from certify.errors import DataError, InvalidInputError, UsageError
from certify.streams import Stream, child_generator


class ArrayStream:
    """A token stream over an array (what TokenShards offers: n_tokens and read)."""

    def __init__(self, tokens: np.ndarray) -> None:
        self.tokens = tokens
        self.reads: list[tuple[int, int]] = []

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.size)

    def read(self, start: int, stop: int) -> np.ndarray:
        self.reads.append((start, stop))
        return self.tokens[start:stop].astype(np.int64)


def test_doctests() -> None:
    assert doctest.testmod(certify.calibration).failed == 0


def test_fingerprint_is_sha256_of_little_endian_int64() -> None:
    import hashlib

    tokens = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int32)
    expected = hashlib.sha256(np.array([1, 2, 3, 4, 5, 6], dtype="<i8").tobytes()).hexdigest()
    assert calibration_sha256(tokens) == expected
    assert calibration_sha256(tokens[:, ::-1]) != expected


def test_batch_from_sequences() -> None:
    batch = calibration_batch(
        [np.arange(5, dtype=np.uint16), np.arange(5, 10)], source="mine", seed=None
    )
    assert batch.tokens.dtype == np.int64 and batch.tokens.shape == (2, 5)
    assert (batch.windows, batch.window_tokens, batch.n_tokens) == (2, 5, 10)
    assert batch.sha256 == calibration_sha256(batch.tokens)
    assert not batch.tokens.flags.writeable


@pytest.mark.parametrize(
    ("sequences", "message"),
    [
        ([], "no calibration"),
        ([np.arange(4), np.arange(5)], "one length"),
        ([np.arange(1)], "at least 2"),
        ([np.array([0.5, 1.5])], "integers"),
        ([np.array([3, -1])], "≥ 0"),
        ([np.zeros((2, 2), dtype=np.int64)], "1-D"),
    ],
)
def test_bad_sequences_are_refused(sequences: list[np.ndarray], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        calibration_batch(sequences, source="x")


def test_windows_are_stream_slices_after_bos() -> None:
    tokens = np.arange(10_000, dtype=np.int64) % 997 + 3
    stream = ArrayStream(tokens)
    batch = draw_calibration_windows(
        stream, seed=5, source="data", total_tokens=1000, window_tokens=64, bos_token_id=1
    )
    assert batch.tokens.shape == (16, 64)  # ceil(1000 / 64) windows
    assert (batch.tokens[:, 0] == 1).all()
    for row, (start, stop) in zip(batch.tokens, stream.reads, strict=True):
        assert stop - start == 63
        assert np.array_equal(row[1:], tokens[start:stop])
    assert batch.seed == 5 and batch.source == "data"
    # no BOS: whole windows of stream tokens
    plain = draw_calibration_windows(
        ArrayStream(tokens), seed=5, source="data", total_tokens=128, window_tokens=64
    )
    assert plain.tokens.shape == (2, 64) and (plain.tokens != 1).all()


def test_draws_are_deterministic_and_depend_on_the_seed() -> None:
    tokens = np.arange(50_000, dtype=np.int64)
    a = draw_calibration_windows(ArrayStream(tokens), seed=11, source="d", total_tokens=2048)
    b = draw_calibration_windows(ArrayStream(tokens), seed=11, source="d", total_tokens=2048)
    c = draw_calibration_windows(ArrayStream(tokens), seed=12, source="d", total_tokens=2048)
    assert a.sha256 == b.sha256 and np.array_equal(a.tokens, b.tokens)
    assert a.sha256 != c.sha256


def test_calibration_draws_come_from_their_own_child_stream() -> None:
    """Calibration uses Stream.CALIBRATION; the certified sample uses Stream.CERTIFICATION."""
    n_tokens, body, windows = 1_000_000, 511, 64
    for seed in range(20):
        starts = window_starts(n_tokens, body, windows, seed)
        own = child_generator(seed, Stream.CALIBRATION).integers(
            0, n_tokens - body + 1, size=windows, dtype=np.int64
        )
        assert np.array_equal(starts, own)
        # the same draw from the certification stream of the same root seed differs,
        # and so does a draw straight from the root seed (no seed maps to itself)
        certification = child_generator(seed, Stream.CERTIFICATION).integers(
            0, n_tokens - body + 1, size=windows, dtype=np.int64
        )
        root = np.random.default_rng(seed).integers(
            0, n_tokens - body + 1, size=windows, dtype=np.int64
        )
        assert not np.array_equal(starts, certification)
        assert not np.array_equal(starts, root)
        assert len(set(starts.tolist()) & set(certification.tolist())) < windows // 4


def test_child_streams_are_independent() -> None:
    """Uniform draws of the two streams are uncorrelated (independent generators)."""
    calibration = child_generator(3, Stream.CALIBRATION).random(200_000)
    certification = child_generator(3, Stream.CERTIFICATION).random(200_000)
    correlation = float(np.corrcoef(calibration, certification)[0, 1])
    assert abs(correlation) < 0.01  # 4.5 standard errors at n = 200,000


def test_stream_shorter_than_a_window_is_refused() -> None:
    with pytest.raises(DataError, match="fewer than one window"):
        draw_calibration_windows(
            ArrayStream(np.arange(100)), seed=0, source="d", total_tokens=512, window_tokens=512
        )


@pytest.mark.parametrize("field", ["total_tokens", "window_tokens"])
@pytest.mark.parametrize("value", [0, 1, True, 2.5])
def test_bad_sizes_are_refused(field: str, value: object) -> None:
    with pytest.raises(InvalidInputError):
        draw_calibration_windows(
            ArrayStream(np.arange(10_000)), seed=0, source="d", **{field: value}
        )


def test_heldout_with_in_data_calibration_is_refused() -> None:
    data = "a" * 64
    with pytest.raises(UsageError, match="--heldout"):
        check_heldout_calibration(True, data, data)
    check_heldout_calibration(True, "b" * 64, data)  # other calibration data: allowed
    check_heldout_calibration(True, None, data)  # no calibration (RTN): allowed
    check_heldout_calibration(False, data, data)  # compression bound: allowed


def test_token_array_reads_as_a_stream() -> None:
    """certify's own array stream gives the same draw as the spy stream above."""
    tokens = np.arange(5000, dtype=np.int64) % 97
    stream = TokenArray(tokens)
    assert stream.n_tokens == 5000 and np.shares_memory(stream.read(10, 20), tokens)
    a = draw_calibration_windows(stream, seed=3, source="d", total_tokens=1024)
    b = draw_calibration_windows(ArrayStream(tokens), seed=3, source="d", total_tokens=1024)
    assert a.sha256 == b.sha256 and np.array_equal(a.tokens, b.tokens)
