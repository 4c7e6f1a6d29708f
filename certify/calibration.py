"""Calibration data for a data-dependent quantizer (GPTQ): token windows, seeded and hashed.

A calibration batch is a matrix of token ids, ``windows x window_tokens``, that the
quantizer runs through the model to measure activation statistics. By default the
windows are drawn from the run's own dataset, from the random stream
``Stream.CALIBRATION`` of the run's seed (:mod:`certify.streams`); the chunks the
certificate scores come from ``Stream.CERTIFICATION``, an independent child stream, so
no seed makes the calibration draw equal the certification draw. The batch is
identified by the sha256 of its tokens, which the artifact records
(docs/FORMAT.md, "GPTQ settings").

Held-out mode asserts that the certified data is independent of the model; a model
calibrated on that data is not, so :func:`check_heldout_calibration` refuses the pair.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from certify.errors import DataError, InvalidInputError, UsageError
from certify.records import DEFAULT_CALIBRATION_TOKENS
from certify.streams import Stream, child_generator

__all__ = [
    "DEFAULT_CALIBRATION_TOKENS",
    "DEFAULT_WINDOW_TOKENS",
    "CalibrationBatch",
    "TokenArray",
    "TokenStream",
    "calibration_batch",
    "calibration_sha256",
    "check_heldout_calibration",
    "draw_calibration_windows",
    "window_starts",
]

DEFAULT_WINDOW_TOKENS = 512


class TokenStream(Protocol):
    """What calibration needs of a token stream (e.g. :class:`certify.data.TokenShards`)."""

    @property
    def n_tokens(self) -> int:
        """Number of tokens in the stream."""
        ...

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens ``[start, stop)`` as an integer array."""
        ...


@dataclass(frozen=True, eq=False)
class TokenArray:
    """A token array read as a :class:`TokenStream` (e.g. sampled mode's drawn windows,
    concatenated, or a benchmark's text already tokenized)."""

    tokens: np.ndarray

    @property
    def n_tokens(self) -> int:
        """Number of tokens in the array."""
        return int(self.tokens.size)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens ``[start, stop)`` (a view, not a copy)."""
        return self.tokens[start:stop]


@dataclass(frozen=True, eq=False)
class CalibrationBatch:
    """Calibration windows: ``tokens`` is int64 ``[windows, window_tokens]``.

    ``source`` says where they came from (a dataset source string), ``seed`` the root
    seed of the draw (``None`` when the caller chose the windows), ``sha256`` is
    :func:`calibration_sha256` of ``tokens``.
    """

    tokens: np.ndarray
    source: str
    seed: int | None
    sha256: str

    @property
    def windows(self) -> int:
        """Number of windows (rows)."""
        return int(self.tokens.shape[0])

    @property
    def window_tokens(self) -> int:
        """Tokens per window, BOS included when one was prepended."""
        return int(self.tokens.shape[1])

    @property
    def n_tokens(self) -> int:
        """Total number of calibration tokens."""
        return int(self.tokens.size)


def calibration_sha256(tokens: np.ndarray) -> str:
    """sha256 of the tokens as little-endian int64 in C order (rows = windows).

    >>> calibration_sha256(np.array([[1, 2]]))[:12]
    '0c730b69905c'
    """
    array = np.ascontiguousarray(tokens, dtype="<i8")
    return hashlib.sha256(array.tobytes()).hexdigest()


def calibration_batch(
    sequences: Iterable[np.ndarray], *, source: str, seed: int | None = None
) -> CalibrationBatch:
    """The calibration batch made of ``sequences`` (equal-length 1-D arrays of token ids).

    Raises :class:`InvalidInputError` for no sequences, unequal or too short lengths
    (fewer than 2 tokens) and negative or non-integer ids.
    """
    rows = [np.asarray(sequence) for sequence in sequences]
    if not rows:
        raise InvalidInputError("no calibration sequences given", field="calibration")
    lengths = {row.shape for row in rows}
    if len(lengths) != 1 or rows[0].ndim != 1:
        raise InvalidInputError(
            f"calibration sequences must be 1-D and of one length, got shapes {sorted(lengths)}",
            field="calibration",
        )
    if rows[0].size < 2:
        raise InvalidInputError(
            "calibration sequences need at least 2 tokens each", field="calibration"
        )
    if any(row.dtype.kind not in "iu" for row in rows):
        raise InvalidInputError("calibration tokens must be integers", field="calibration")
    tokens = np.stack([row.astype(np.int64) for row in rows])
    if tokens.min() < 0:
        raise InvalidInputError("calibration tokens must be ≥ 0", field="calibration")
    tokens.setflags(write=False)
    return CalibrationBatch(tokens, source, seed, calibration_sha256(tokens))


def window_starts(n_tokens: int, body_tokens: int, windows: int, seed: int) -> np.ndarray:
    """Start positions of ``windows`` windows of ``body_tokens`` in a stream of ``n_tokens``.

    Uniform over ``[0, n_tokens - body_tokens]``, i.i.d., drawn from the child stream
    ``Stream.CALIBRATION`` of ``seed`` (never the certification stream).
    """
    if n_tokens < body_tokens:
        raise DataError(
            f"the calibration source has {n_tokens} tokens, fewer than one window of {body_tokens}",
            hint="pass a larger --calibration source or lower the window length",
        )
    generator = child_generator(seed, Stream.CALIBRATION)
    return generator.integers(0, n_tokens - body_tokens + 1, size=windows, dtype=np.int64)


def draw_calibration_windows(
    stream: TokenStream,
    *,
    seed: int,
    source: str,
    total_tokens: int = DEFAULT_CALIBRATION_TOKENS,
    window_tokens: int = DEFAULT_WINDOW_TOKENS,
    bos_token_id: int | None = None,
) -> CalibrationBatch:
    """Draw ``ceil(total_tokens / window_tokens)`` windows from ``stream`` (seeded).

    Each window is ``window_tokens`` consecutive tokens of the stream (it may cross a
    document boundary, like GPTQ's random C4 segments), or, with ``bos_token_id``, that
    token followed by ``window_tokens - 1`` stream tokens (the scorer also starts every
    window with BOS). Raises :class:`InvalidInputError` for sizes below 2 and
    :class:`DataError` when the stream is shorter than one window.
    """
    for name, value in (("calibration_tokens", total_tokens), ("window_tokens", window_tokens)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 2:
            raise InvalidInputError(f"must be an integer ≥ 2, got {value!r}", field=name)
    windows = -(-int(total_tokens) // int(window_tokens))
    prefix = [] if bos_token_id is None else [int(bos_token_id)]
    body = int(window_tokens) - len(prefix)
    starts = window_starts(int(stream.n_tokens), body, windows, seed)
    rows = [
        np.concatenate([np.asarray(prefix, np.int64), stream.read(int(s), int(s) + body)])
        for s in starts
    ]
    return calibration_batch(rows, source=source, seed=seed)


def check_heldout_calibration(
    heldout: bool, calibration_fingerprint: str | None, data_fingerprint: str
) -> None:
    """Refuse held-out mode when the quantizer was calibrated on the certified data.

    ``calibration_fingerprint`` is the ``shards_sha256`` of the calibration source
    (``None`` when the quantizer uses no data, e.g. RTN), ``data_fingerprint`` that of
    the certified data. Equal fingerprints mean the model was fitted to the data whose
    independence held-out mode asserts, which would make the bound wrong.
    """
    if (
        heldout
        and calibration_fingerprint is not None
        and (calibration_fingerprint == data_fingerprint)
    ):
        raise UsageError(
            "--heldout cannot be used when the quantizer was calibrated on the certified "
            "data (the model then depends on that data)",
            hint="pass --calibration with other data, use --quantizer rtn, or drop --heldout",
        )
