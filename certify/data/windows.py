"""Which chunks are scored, as windows: the exact-mode sampler (DESIGN.md "The bound").

A window is one chunk and the context it is predicted from. This module draws them
from a token stream that was tokenized whole (token shards); sampled mode
(``certify.data.sampled``) builds the same kind of windows from the units it draws.

Version 1 chunking (certificates of version 1): the whole stream is cut into
consecutive chunks of S tokens (the last may be shorter); a chunk's context is the
P tokens before it in the stream. Chunks are drawn i.i.d. with probability
proportional to their length (a token drawn uniformly, its chunk taken), or each
chunk once in exhaustive mode.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Protocol

import numpy as np

from certify.errors import InvalidInputError
from certify.records import DatasetRecord

__all__ = ["StreamWindows", "TokenSource", "stream_windows", "windows_sha256"]


class TokenSource(Protocol):
    """A token stream: ``certify.data.TokenShards`` or any array-backed stand-in."""

    @property
    def n_tokens(self) -> int: ...

    @property
    def record(self) -> DatasetRecord: ...

    def read(self, start: int, stop: int) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True, eq=False)
class StreamWindows:
    """Windows that are ranges of one token stream, read on demand.

    Window j is ``source.read(starts[j], starts[j] + context_tokens[j] + scored[j])``;
    the fields mean what they mean in :class:`certify.records.TokenWindows`.
    """

    source: TokenSource
    starts: np.ndarray
    context_tokens: np.ndarray
    scored: np.ndarray
    observation: np.ndarray
    chunk_ids: np.ndarray

    @property
    def count(self) -> int:
        """Number of windows."""
        return int(self.starts.size)

    def scored_tokens(self) -> np.ndarray:
        """Tokens scored in each window (int64)."""
        return self.scored

    def window(self, j: int) -> np.ndarray:
        """Context and chunk tokens of window ``j`` (int64)."""
        start = int(self.starts[j])
        return self.source.read(start, start + int(self.context_tokens[j] + self.scored[j]))


def stream_windows(
    source: TokenSource, chunks: np.ndarray, chunk_tokens: int, context_tokens: int
) -> StreamWindows:
    """Windows of version-1 stream chunks ``chunks`` (one window per entry, in order).

    Chunk j holds tokens [j·S, min((j+1)·S, n)) and is preceded by min(j·S, P) context
    tokens of the stream; ``chunk_ids`` rows are (-1, 0, j): no unit, the stream as one
    document, chunk j. Each window is its own observation.

    >>> import numpy as np
    >>> class Stream:
    ...     n_tokens = 10
    ...     record = None
    ...     def read(self, start, stop):
    ...         return np.arange(start, stop)
    >>> windows = stream_windows(Stream(), np.array([0, 2]), chunk_tokens=4, context_tokens=3)
    >>> windows.window(1).tolist(), windows.scored_tokens().tolist()
    ([5, 6, 7, 8, 9], [4, 2])
    """
    n_tokens = int(source.n_tokens)
    chunks = np.asarray(chunks, dtype=np.int64)
    count = -(-n_tokens // chunk_tokens)
    if chunks.size and (chunks.min() < 0 or chunks.max() >= count):
        raise InvalidInputError(f"chunk indices must lie in [0, {count})", field="chunks")
    starts = chunks * chunk_tokens
    stops = np.minimum(starts + chunk_tokens, n_tokens)
    context = np.minimum(starts, context_tokens)
    return StreamWindows(
        source=source,
        starts=starts - context,
        context_tokens=context,
        scored=stops - starts,
        observation=np.arange(chunks.size, dtype=np.int64),
        chunk_ids=np.stack(
            [np.full(chunks.size, -1, np.int64), np.full(chunks.size, -1, np.int64), chunks], axis=1
        ),
    )


def windows_sha256(chunk_ids: np.ndarray, observation: np.ndarray, data_sha256: str) -> str:
    """sha256 naming a set of windows over one dataset (keys checkpoints)."""
    digest = hashlib.sha256(data_sha256.encode("ascii"))
    digest.update(np.ascontiguousarray(chunk_ids, dtype="<i8").tobytes())
    digest.update(np.ascontiguousarray(observation, dtype="<i8").tobytes())
    return digest.hexdigest()
