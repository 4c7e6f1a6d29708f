"""Which chunks are scored, as windows: the exact-mode sampler (DESIGN.md "The bound").

A window is one chunk and the context it is predicted from. This module draws them
from a token stream that was tokenized whole (token shards); sampled mode
(``certify.data.sampled``) builds the same kind of windows from the units it draws.

Version 2 (DESIGN.md): each document is cut into chunks of S tokens from its own
start (a document's last chunk may be shorter); a chunk's context is up to P tokens
of the same document before it (never across a document start). A chunk is drawn by
drawing a token uniformly from the n tokens of the stream and taking its chunk, which
gives each chunk probability length/n; exhaustive mode takes every chunk once. Draws
come from the CERTIFICATION (or SEARCH) child stream of the seed (certify.streams).

Version 1 (certificates of version 1): the whole stream is cut into consecutive chunks
of S tokens; a chunk's context is the P tokens before it in the stream; draws come
from ``PCG64(seed)`` directly (``certify.data.sample_chunks``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Protocol, runtime_checkable

import numpy as np

from certify.errors import InvalidInputError
from certify.records import DatasetRecord

__all__ = [
    "DocumentSource",
    "StreamWindows",
    "TokenSource",
    "all_document_chunks",
    "document_windows",
    "sample_document_chunks",
    "stream_windows",
    "windows_sha256",
]


class TokenSource(Protocol):
    """A token stream: ``certify.data.TokenShards`` or any array-backed stand-in."""

    @property
    def n_tokens(self) -> int: ...

    @property
    def record(self) -> DatasetRecord: ...

    def read(self, start: int, stop: int) -> np.ndarray: ...


@runtime_checkable
class DocumentSource(TokenSource, Protocol):
    """A token stream that knows where its documents end (token shards of format 2)."""

    def document_ends(self) -> np.ndarray: ...


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


# --------------------------------------------------------------------------- version 2


def _document_starts(ends: np.ndarray) -> np.ndarray:
    starts = np.zeros(ends.size, dtype=np.int64)
    starts[1:] = ends[:-1]
    return starts


def sample_document_chunks(
    ends: np.ndarray, chunk_tokens: int, samples: int, generator: np.random.Generator
) -> np.ndarray:
    """``samples`` chunks (rows: document, chunk index) drawn i.i.d. ∝ chunk length.

    A token drawn uniformly from [0, n) lies in exactly one chunk, so a chunk of L
    tokens is drawn with probability L/n (sampling with replacement).
    """
    ends = np.asarray(ends, dtype=np.int64)
    positions = generator.integers(0, int(ends[-1]), size=samples, dtype=np.int64)
    documents = np.searchsorted(ends, positions, side="right")
    offsets = positions - _document_starts(ends)[documents]
    return np.stack([documents, offsets // chunk_tokens], axis=1)


def all_document_chunks(ends: np.ndarray, chunk_tokens: int) -> np.ndarray:
    """Every chunk once (rows: document, chunk index), in order (exhaustive evaluation)."""
    ends = np.asarray(ends, dtype=np.int64)
    lengths = ends - _document_starts(ends)
    counts = -(-lengths // chunk_tokens)
    documents = np.repeat(np.arange(ends.size, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    chunks = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(first, counts)
    return np.stack([documents, chunks], axis=1)


def document_windows(
    source: DocumentSource, chunks: np.ndarray, chunk_tokens: int, context_tokens: int
) -> StreamWindows:
    """Windows of version-2 chunks (rows: document, chunk index), one per row, in order.

    Chunk c of document d holds its tokens [c·S, min((c+1)·S, length)) and is preceded
    by min(c·S, P) tokens of the same document. ``chunk_ids`` rows are (-1, d, c).

    >>> import numpy as np
    >>> class Stream:
    ...     n_tokens = 10
    ...     record = None
    ...     def read(self, start, stop):
    ...         return np.arange(start, stop)
    ...     def document_ends(self):
    ...         return np.array([3, 10])
    >>> chunks = all_document_chunks(Stream().document_ends(), 4)
    >>> chunks.tolist()
    [[0, 0], [1, 0], [1, 1]]
    >>> windows = document_windows(Stream(), chunks, chunk_tokens=4, context_tokens=2)
    >>> [windows.window(j).tolist() for j in range(3)], windows.context_tokens.tolist()
    ([[0, 1, 2], [3, 4, 5, 6], [5, 6, 7, 8, 9]], [0, 0, 2])
    """
    ends = np.asarray(source.document_ends(), dtype=np.int64)
    chunks = np.asarray(chunks, dtype=np.int64).reshape(-1, 2)
    documents, indices = chunks[:, 0], chunks[:, 1]
    doc_starts = _document_starts(ends)[documents]
    starts = doc_starts + indices * chunk_tokens
    stops = np.minimum(starts + chunk_tokens, ends[documents])
    if chunks.size and not bool(np.all(stops > starts)):
        raise InvalidInputError("a chunk index lies beyond its document", field="chunks")
    context = np.minimum(starts - doc_starts, context_tokens)
    return StreamWindows(
        source=source,
        starts=starts - context,
        context_tokens=context,
        scored=stops - starts,
        observation=np.arange(documents.size, dtype=np.int64),
        chunk_ids=np.stack([np.full(documents.size, -1, np.int64), documents, indices], axis=1),
    )
