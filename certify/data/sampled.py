"""Sampled mode, part 2: draw units ∝ weight, accept with n_u/w_u, take r windows each.

DESIGN.md "Corpora too large to tokenize: sampled mode" and docs/DATA.md "Sampled mode".
The draw sequence is a function of the seed alone: draw k's unit and acceptance threshold
come from ``child_generator(seed, Stream.UNITS)`` in fixed blocks of
:data:`DRAW_BLOCK` draws (a token t uniform in [0, W) picks the unit whose cumulative
weight interval holds it, so P(u) = w_u/W exactly; then an integer a uniform in [0, w_u)),
and the r token positions of draw k come from ``child_generator(seed, Stream.UNITS, 1, k)``.
Draw k is accepted iff a < n_u, with probability n_u/w_u exactly. Tokenizing a drawn unit
is the only work; it runs in worker processes (one tokenizer each) ahead of the draw being
decided, but every decision is taken in draw order, so a parallel run returns exactly what
a serial one does. Drawing stops at the G-th acceptance; D is the number of draws.

A work folder holds a journal (``journal.json``, rewritten atomically) of every tokenized
unit's token count and of the windows of every accepted draw (``windows/*.npy``), so a run
stopped by Ctrl-C (or killed) resumes without tokenizing finished units again.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from certify import hub
from certify._files import write_bytes_atomic
from certify._jcs import schema_error
from certify.data import (
    DEFAULT_BATCH_DOCUMENTS,
    DecodeErrors,
    _batches,
    _encode_batch,
    _eos_token_id,
    _text_of,
    decode_text,
    tokenizer_sha256,
)
from certify.data.units import (
    DEFAULT_BLOCK_LINES,
    UnitList,
    compare_units,
    enumerate_recorded,
    enumerate_units,
    parquet_text_column,
    parse_footer,
    weight_rule_for,
)
from certify.errors import (
    DataError,
    DatasetChangedError,
    InvalidInputError,
    WeightRuleError,
)
from certify.records import SampledDataRecord, TokenWindows
from certify.streams import Stream, child_generator

__all__ = [
    "DRAW_BLOCK",
    "JOURNAL_FORMAT",
    "JOURNAL_NAME",
    "JOURNAL_VERSION",
    "SampledData",
    "SampledSettings",
    "draw_sequence",
    "redraw",
    "sample_source",
    "sample_units",
    "validate_journal",
]

#: draws generated per call of the unit generator (part of the algorithm: changing it
#: changes which units a seed draws)
DRAW_BLOCK = 1024
JOURNAL_NAME = "journal.json"
JOURNAL_FORMAT = "certify-sampled-journal"
JOURNAL_VERSION = 1
WINDOWS_DIR = "windows"
#: seconds between journal rewrites while units complete (and always at the end)
_JOURNAL_INTERVAL_S = 1.0

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SampledSettings:
    """The choices of a sampled run (all recorded except ``workers`` and ``max_draws``).

    ``accepted_units`` is G, ``chunks_per_unit`` r, ``chunk_tokens`` S, ``context_tokens``
    P. ``workers`` tokenizer processes (0: in this process; the result is the same).
    ``max_draws`` stops a run whose acceptance rate is hopeless (default 1000·G).
    """

    accepted_units: int
    chunks_per_unit: int = 4
    chunk_tokens: int = 1024
    context_tokens: int = 0
    seed: int = 0
    workers: int = 0
    max_draws: int | None = None
    batch_size: int = DEFAULT_BATCH_DOCUMENTS
    lookahead: int | None = None


@dataclass(frozen=True, eq=False)
class SampledData:
    """The windows to score, the record, and what each draw was (arrays of length D)."""

    windows: TokenWindows
    record: SampledDataRecord
    draw_units: np.ndarray
    draw_accepted: np.ndarray
    draw_tokens: np.ndarray
    #: units tokenized by this call (not read back from the journal)
    units_tokenized_now: int = 0
    #: units whose token counts came from the journal
    units_from_journal: int = 0
    #: draws whose windows came from the journal
    windows_from_journal: int = 0
    seconds: float = field(default=0.0, compare=False)


# --------------------------------------------------------------------------- the draw sequence


class _DrawSequence:
    """Draw k's (unit, acceptance threshold), generated in blocks of DRAW_BLOCK."""

    def __init__(self, weights: np.ndarray, seed: int) -> None:
        self._weights = weights
        self._cumulative = np.cumsum(weights)
        self._total = int(self._cumulative[-1])
        self._generator = child_generator(seed, Stream.UNITS)
        self._units = np.zeros(0, dtype=np.int64)
        self._thresholds = np.zeros(0, dtype=np.int64)

    def get(self, k: int) -> tuple[int, int]:
        while k >= self._units.size:
            tokens = self._generator.integers(0, self._total, size=DRAW_BLOCK, dtype=np.int64)
            units = np.searchsorted(self._cumulative, tokens, side="right").astype(np.int64)
            thresholds = self._generator.integers(0, self._weights[units], dtype=np.int64)
            self._units = np.concatenate([self._units, units])
            self._thresholds = np.concatenate([self._thresholds, thresholds])
        return int(self._units[k]), int(self._thresholds[k])


def draw_sequence(weights: np.ndarray, seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` draws' units and acceptance thresholds for ``seed`` (for tests)."""
    sequence = _DrawSequence(np.asarray(weights, dtype=np.int64), seed)
    sequence.get(max(count - 1, 0))
    return sequence._units[:count].copy(), sequence._thresholds[:count].copy()


def window_positions(seed: int, draw: int, unit_tokens: int, count: int) -> np.ndarray:
    """``count`` token positions in draw ``draw``'s unit (uniform, with replacement)."""
    generator = child_generator(seed, Stream.UNITS, 1, draw)
    return generator.integers(0, unit_tokens, size=count, dtype=np.int64)


def windows_of(
    document_tokens: list[np.ndarray],
    positions: np.ndarray,
    chunk_tokens: int,
    context_tokens: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(tokens, offsets, context lengths, (document, chunk) rows) of the windows at ``positions``.

    Each document is cut into chunks of S tokens from its own start (the last may be
    shorter); position p of the unit's stream falls in one chunk, whose window is up to P
    earlier tokens of the same document followed by the chunk.
    """
    lengths = np.array([len(tokens) for tokens in document_tokens], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    parts: list[np.ndarray] = []
    offsets = [0]
    contexts = []
    ids = []
    for position in positions.tolist():
        document = int(np.searchsorted(starts, position, side="right")) - 1
        within = position - int(starts[document])
        chunk = within // chunk_tokens
        chunk_start = chunk * chunk_tokens
        chunk_stop = min(chunk_start + chunk_tokens, int(lengths[document]))
        context_start = max(0, chunk_start - context_tokens)
        parts.append(document_tokens[document][context_start:chunk_stop])
        offsets.append(offsets[-1] + chunk_stop - context_start)
        contexts.append(chunk_start - context_start)
        ids.append((document, chunk))
    tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return (
        tokens.astype(np.int64),
        np.array(offsets, dtype=np.int64),
        np.array(contexts, dtype=np.int64),
        np.array(ids, dtype=np.int64).reshape(-1, 2),
    )


# --------------------------------------------------------------------------- reading one unit


class _RangeFile(io.RawIOBase):
    """A read-only file of ``size`` bytes of which only some ranges are known.

    pyarrow reads one row group's column chunk through it (the footer is given parsed), so
    a read outside the known ranges is a bug, reported as such.
    """

    def __init__(self, size: int, ranges: dict[int, bytes]) -> None:
        self._size = size
        self._ranges = sorted(ranges.items())
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: self._size}[whence]
        self._position = base + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._size - self._position)
        if want <= 0:
            return 0
        for start, data in self._ranges:
            if start <= self._position and self._position + want <= start + len(data):
                begin = self._position - start
                buffer[:want] = data[begin : begin + want]
                self._position += want
                return want
        raise DataError(
            f"reading bytes [{self._position}, {self._position + want}) of a row group that "
            "were not fetched"
        )


@dataclass(frozen=True)
class _Task:
    """One drawn unit to read and tokenize (and, when accepted, to cut windows from)."""

    draw: int
    unit: int
    threshold: int
    weight: int
    name: str
    kind: str
    path: str
    file_size: int
    part: int
    byte_start: int
    byte_stop: int
    footer: bytes | None


@dataclass(frozen=True)
class _Context:
    """What every worker needs once (set by the pool's initializer)."""

    tokenizer: Any
    eos: int
    source: dict[str, Any]
    revision: str
    truncation_tokens: int | None
    settings: SampledSettings
    token: str | None = field(default=None, repr=False)
    endpoint: str | None = None


_CONTEXT: _Context | None = None


def _set_context(context: _Context) -> None:
    global _CONTEXT
    _CONTEXT = context
    # Ctrl-C reaches the whole process group: the parent alone handles it (saves the
    # journal, shuts the pool down); a worker that died of it would only print a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _read_unit(context: _Context, task: _Task) -> tuple[list[str], bytes]:
    """The unit's documents and the raw bytes read (hashed into ``draws_sha256``)."""
    source = context.source
    column = source["text_column"]
    if source["kind"] == "hub":
        (data,) = hub.read_dataset_ranges(
            source["id"],
            context.revision,
            task.path,
            [(task.byte_start, task.byte_stop)],
            size=task.file_size,
            token=context.token,
            endpoint=context.endpoint,
        )
        return _parquet_texts(task, data, column, f"dataset {source['id']} file {task.path}"), data
    root = Path(source["path"])
    path = root / task.path if source["kind"] == "folder" else root
    try:
        with open(path, "rb") as stream:
            stream.seek(task.byte_start)
            data = stream.read(task.byte_stop - task.byte_start)
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    if len(data) != task.byte_stop - task.byte_start:
        raise DatasetChangedError(f"{path} is shorter than when its units were listed")
    if task.kind == "text":
        text = decode_text(data, source.get("decode_errors", "strict"), str(path))
        return ([] if text is None else [text]), data
    if task.kind == "jsonl":
        return _jsonl_texts(data, column, f"{path} {task.name}"), data
    return _parquet_texts(task, data, column, str(path)), data


def _jsonl_texts(data: bytes, column: str, where: str) -> list[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{where} is not UTF-8 (byte {error.start})") from None
    texts = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where} line {number} is not JSON: {error.msg}") from None
        texts.append(_text_of(record, column, f"{where} line {number}"))
    return texts


def _parquet_texts(task: _Task, data: bytes, column: str, where: str) -> list[str]:
    import pyarrow.parquet as pq

    if task.footer is None:  # pragma: no cover - enumerate_units always keeps footers
        raise DataError(f"{where}: no footer for row group {task.part}")
    metadata = parse_footer(task.footer, where)
    index = parquet_text_column(metadata, column, where)
    name = metadata.schema.column(index).path
    handle = _RangeFile(task.file_size, {task.byte_start: data})
    try:
        table = pq.ParquetFile(handle, metadata=metadata, pre_buffer=False).read_row_group(
            task.part, columns=[name]
        )
    except DataError:
        raise
    except Exception as error:
        raise DataError(f"cannot read {where} row group {task.part}: {error}") from None
    values = table.column(0).to_pylist()
    for number, value in enumerate(values):
        if not isinstance(value, str):
            raise DataError(
                f"{where} row group {task.part} row {number}: column {column!r} holds "
                f"{type(value).__name__}, expected text"
            )
    return values


def _tokenize_documents(context: _Context, texts: list[str]) -> list[np.ndarray]:
    """Each document's tokens followed by EOS (exact mode's rule), cut to c tokens if set."""
    documents: list[np.ndarray] = []
    limit = context.truncation_tokens
    for batch in _batches(iter(texts), context.settings.batch_size):
        for ids in _encode_batch(context.tokenizer, batch):
            tokens = np.empty(len(ids) + 1, dtype=np.int64)
            tokens[:-1] = ids
            tokens[-1] = context.eos
            documents.append(tokens if limit is None else tokens[:limit])
    return documents


def _run_task(task: _Task, context: _Context | None = None) -> dict[str, Any]:
    """Read, tokenize and (when accepted) cut the windows of one drawn unit."""
    context = context or _CONTEXT
    assert context is not None, "worker started without its context"
    texts, data = _read_unit(context, task)
    documents = _tokenize_documents(context, texts)
    n_tokens = int(sum(len(tokens) for tokens in documents))
    result: dict[str, Any] = {
        "draw": task.draw,
        "unit": task.unit,
        "tokens": n_tokens,
        "documents": len(documents),
        "bytes_read": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "windows": None,
    }
    if n_tokens > task.weight:
        result["violation"] = True
        return result
    if task.threshold < n_tokens:
        settings = context.settings
        positions = window_positions(settings.seed, task.draw, n_tokens, settings.chunks_per_unit)
        result["windows"] = windows_of(
            documents, positions, settings.chunk_tokens, settings.context_tokens
        )
    return result


# --------------------------------------------------------------------------- journal


@dataclass
class _UnitStat:
    tokens: int
    documents: int
    bytes_read: int
    sha256: str


class _Journal:
    """``journal.json`` + ``windows/draw-*.npy`` in a work folder (docs/DATA.md)."""

    def __init__(self, folder: Path | None, key: dict[str, Any], windows_key: dict[str, Any]):
        self.folder = folder
        self.key = key
        self.windows_key = windows_key
        self.units: dict[int, _UnitStat] = {}
        self.windows: dict[int, dict[str, Any]] = {}
        self._written_at = 0.0
        self._dirty = False
        if folder is not None:
            self._load()

    def _load(self) -> None:
        assert self.folder is not None
        path = self.folder / JOURNAL_NAME
        try:
            journal = json.loads(path.read_text(encoding="utf-8"))
            validate_journal(journal)
        except (OSError, ValueError, DataError):
            return  # no journal, or one we cannot trust: start afresh
        if any(journal.get(name) != value for name, value in self.key.items()):
            return  # another dataset, tokenizer or rule: nothing applies
        for item in journal["units"]:
            self.units[int(item["unit"])] = _UnitStat(
                int(item["tokens"]), int(item["documents"]), int(item["bytes_read"]), item["sha256"]
            )
        if journal.get("windows_key") == self.windows_key:
            self.windows = {int(item["draw"]): item for item in journal["windows"]}

    def load_windows(self, draw: int) -> tuple[np.ndarray, ...] | None:
        entry = self.windows.get(draw)
        if entry is None or self.folder is None:
            return None
        path = self.folder / entry["file"]
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            return None
        try:
            return _unpack_windows(np.load(io.BytesIO(data), allow_pickle=False))
        except (ValueError, OSError):
            return None

    def add_unit(self, unit: int, stat: _UnitStat) -> None:
        if unit not in self.units:
            self.units[unit] = stat
            self._dirty = True

    def add_windows(self, draw: int, unit: int, windows: tuple[np.ndarray, ...]) -> None:
        if self.folder is None:
            return
        buffer = io.BytesIO()
        np.save(buffer, _pack_windows(windows), allow_pickle=False)
        data = buffer.getvalue()
        name = f"{WINDOWS_DIR}/draw-{draw:09d}.npy"
        write_bytes_atomic(self.folder / name, data)
        self.windows[draw] = {
            "draw": draw,
            "unit": unit,
            "file": name,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        self._dirty = True

    def save(self, force: bool = False) -> None:
        if self.folder is None or not self._dirty:
            return
        now = time.monotonic()
        if not force and now - self._written_at < _JOURNAL_INTERVAL_S:
            return
        journal = {
            "format": JOURNAL_FORMAT,
            "format_version": JOURNAL_VERSION,
            **self.key,
            "windows_key": self.windows_key,
            "units": [
                {
                    "unit": unit,
                    "tokens": stat.tokens,
                    "documents": stat.documents,
                    "bytes_read": stat.bytes_read,
                    "sha256": stat.sha256,
                }
                for unit, stat in sorted(self.units.items())
            ],
            "windows": [entry for _, entry in sorted(self.windows.items())],
        }
        write_bytes_atomic(
            self.folder / JOURNAL_NAME, (json.dumps(journal, indent=1) + "\n").encode("utf-8")
        )
        self._written_at = now
        self._dirty = False


def _pack_windows(windows: tuple[np.ndarray, ...]) -> np.ndarray:
    """One little-endian int64 array: [count, offsets, context lengths, chunk ids, tokens]."""
    tokens, offsets, context, ids = windows
    count = context.size
    return np.concatenate([[count], offsets, context, ids.reshape(-1), tokens]).astype("<i8")


def _unpack_windows(packed: np.ndarray) -> tuple[np.ndarray, ...]:
    values = np.asarray(packed, dtype=np.int64)
    count = int(values[0])
    offsets = values[1 : count + 2]
    context = values[count + 2 : 2 * count + 2]
    ids = values[2 * count + 2 : 4 * count + 2].reshape(count, 2)
    tokens = values[4 * count + 2 :]
    if offsets.size != count + 1 or tokens.size != int(offsets[-1]):
        raise ValueError("windows file of the wrong length")
    return tokens, offsets, context, ids


def validate_journal(journal: Any, where: str = JOURNAL_NAME) -> None:
    """Raise :class:`DataError` when ``journal`` does not follow its schema."""
    problem = schema_error(journal, "sampled-journal")
    if problem is not None:
        raise DataError(f"{where} is not a valid sampled-mode journal: {problem}")


# --------------------------------------------------------------------------- the run


def _check_settings(units: UnitList, settings: SampledSettings) -> None:
    for name, value, least in (
        ("--accepted-units", settings.accepted_units, 1),
        ("--chunks-per-unit", settings.chunks_per_unit, 1),
        ("--chunk-tokens", settings.chunk_tokens, 1),
        ("--context-tokens", settings.context_tokens, 0),
        ("--seed", settings.seed, 0),
        ("workers", settings.workers, 0),
        ("batch_size", settings.batch_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InvalidInputError(f"must be an integer ≥ {least}, got {value!r}", field=name)
    if settings.max_draws is not None and settings.max_draws < settings.accepted_units:
        raise InvalidInputError(
            f"must be at least --accepted-units ({settings.accepted_units})", field="max_draws"
        )
    positive = units.positive_units
    if positive == 0:
        raise DataError("the dataset's units all have weight 0: it holds no documents")
    if settings.accepted_units > positive:
        raise InvalidInputError(
            f"{settings.accepted_units} accepted units asked of a dataset of {positive} units; "
            "sampled mode needs G ≤ the number of units (more would re-read units and cost "
            "more than tokenizing the whole dataset)",
            field="--accepted-units",
            hint=f"pass --accepted-units {positive} or less, or use --data-mode exact",
        )


def _task(units: UnitList, draw: int, unit: int, threshold: int) -> _Task:
    entry = units.files[int(units.file_index[unit])]
    footer = units.footers.get(int(units.file_index[unit]))
    return _Task(
        draw=draw,
        unit=unit,
        threshold=threshold,
        weight=int(units.weight[unit]),
        name=units.describe(unit),
        kind=entry.kind,
        path=entry.path,
        file_size=entry.size_bytes,
        part=int(units.part[unit]),
        byte_start=int(units.byte_start[unit]),
        byte_stop=int(units.byte_stop[unit]),
        footer=None if footer is None else footer[1],
    )


def sample_units(
    units: UnitList,
    tokenizer: Any,
    settings: SampledSettings,
    *,
    work_dir: str | Path | None = None,
    progress: Progress | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> SampledData:
    """Draw units of ``units`` until ``settings.accepted_units`` are accepted; their windows.

    ``work_dir`` (optional) holds the resume journal. ``progress(accepted, G)`` is called
    after every decided draw. Raises :class:`WeightRuleError` naming the first unit whose
    token count exceeds its weight, :class:`DataError` when draws run past ``max_draws``.
    """
    started = time.monotonic()
    _check_settings(units, settings)
    eos = _eos_token_id(tokenizer)
    tokenizer_hash = tokenizer_sha256(tokenizer)
    key = {"units_sha256": units.units_sha256, "tokenizer_sha256": tokenizer_hash}
    windows_key = {
        "seed": settings.seed,
        "chunks_per_unit": settings.chunks_per_unit,
        "chunk_tokens": settings.chunk_tokens,
        "context_tokens": settings.context_tokens,
    }
    folder = Path(work_dir) if work_dir is not None else None
    journal = _Journal(folder, key, windows_key)
    from_journal = len(journal.units)
    context = _Context(
        tokenizer=tokenizer,
        eos=eos,
        source=units.source,
        revision=units.revision,
        truncation_tokens=units.rule.truncation_tokens if units.rule.kind == "truncate" else None,
        settings=settings,
        token=token,
        endpoint=endpoint,
    )
    runner = _Runner(units, settings, journal, context)
    try:
        draws = runner.run(progress)
    finally:
        runner.close()
        journal.save(force=True)
    record, windows = _assemble(units, settings, tokenizer, tokenizer_hash, eos, journal, draws)
    return SampledData(
        windows=windows,
        record=record,
        draw_units=np.array([draw[0] for draw in draws], dtype=np.int64),
        draw_accepted=np.array([draw[1] is not None for draw in draws], dtype=bool),
        draw_tokens=np.array([journal.units[draw[0]].tokens for draw in draws], dtype=np.int64),
        units_tokenized_now=runner.tokenized_now,
        units_from_journal=from_journal,
        windows_from_journal=runner.windows_reused,
        seconds=time.monotonic() - started,
    )


def sample_source(
    source: str | Path,
    tokenizer: Any,
    settings: SampledSettings,
    *,
    truncate_tokens: int | None = None,
    text_column: str = "text",
    extensions: tuple[str, ...] | list[str] | None = None,
    exclude: tuple[str, ...] | list[str] = (),
    decode_errors: DecodeErrors = "strict",
    block_lines: int = DEFAULT_BLOCK_LINES,
    dataset_config: str | None = None,
    split: str = "train",
    revision: str | None = None,
    work_dir: str | Path | None = None,
    progress: Progress | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> SampledData:
    """Sampled mode in one call: the weight rule, the units of ``source``, the draws.

    The options are exact mode's (``certify tokenize``) plus ``truncate_tokens`` (the
    truncation rule; None: the bytes rule, refused for tokenizers that do not qualify)
    and ``block_lines`` (jsonl lines per unit).
    """
    rule = weight_rule_for(tokenizer, truncate_tokens)
    units = enumerate_units(
        source,
        rule,
        text_column=text_column,
        extensions=extensions,
        exclude=exclude,
        decode_errors=decode_errors,
        block_lines=block_lines,
        dataset_config=dataset_config,
        split=split,
        revision=revision,
        token=token,
        endpoint=endpoint,
    )
    return sample_units(
        units,
        tokenizer,
        settings,
        work_dir=work_dir,
        progress=progress,
        token=token,
        endpoint=endpoint,
    )


class _Runner:
    """Decides draws in order while worker processes tokenize the units ahead.

    Every decision uses only the draw sequence and n_u, so the result does not depend on
    which worker finished first, on the look-ahead, or on the journal.
    """

    def __init__(
        self, units: UnitList, settings: SampledSettings, journal: _Journal, context: _Context
    ) -> None:
        self.units = units
        self.settings = settings
        self.journal = journal
        self.context = context
        self.sequence = _DrawSequence(units.weight, settings.seed)
        self.pool: ProcessPoolExecutor | None = None
        if settings.workers > 0:
            self.pool = ProcessPoolExecutor(
                max_workers=settings.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_set_context,
                initargs=(context,),
            )
        self.lookahead = (
            settings.lookahead if settings.lookahead is not None else 2 * settings.workers
        )
        self.pending: dict[int, Future[dict[str, Any]]] = {}
        self.in_flight: dict[int, int] = {}  # unit -> the pending draw that reads it
        self.fresh: dict[int, tuple[np.ndarray, ...]] = {}  # windows cut in this call
        self.tokenized_now = 0
        self.windows_reused = 0

    def close(self) -> None:
        if self.pool is not None:
            for future in self.pending.values():
                future.cancel()
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def _submit(self, draw: int, unit: int, threshold: int) -> None:
        assert self.pool is not None
        task = _task(self.units, draw, unit, threshold)
        self.pending[draw] = self.pool.submit(_run_task, task)
        self.in_flight.setdefault(unit, draw)

    def _fill(self, current: int) -> None:
        """Start the tasks of the next draws that will need one (look-ahead)."""
        if self.pool is None:
            return
        for draw in range(current, current + 1 + self.lookahead):
            if draw in self.pending or draw in self.fresh:
                continue
            unit, threshold = self.sequence.get(draw)
            stat = self.journal.units.get(unit)
            if stat is None:
                if unit not in self.in_flight:
                    self._submit(draw, unit, threshold)
            elif threshold < stat.tokens and draw not in self.journal.windows:
                self._submit(draw, unit, threshold)

    def _wait(self, draw: int) -> None:
        self._absorb(self.pending.pop(draw).result())

    def _execute(self, draw: int, unit: int, threshold: int) -> None:
        if self.pool is None:
            self._absorb(_run_task(_task(self.units, draw, unit, threshold), self.context))
        else:
            self._submit(draw, unit, threshold)
            self._wait(draw)

    def _absorb(self, result: dict[str, Any]) -> None:
        self.tokenized_now += 1
        unit, draw = int(result["unit"]), int(result["draw"])
        if self.in_flight.get(unit) == draw:
            del self.in_flight[unit]
        if result.get("violation"):
            raise WeightRuleError(
                f"{self.units.describe(unit)} holds {result['tokens']} tokens, more than its "
                f"weight {int(self.units.weight[unit])}: the weight rule does not hold",
                hint="pass --truncate-tokens C; the tokenizer should not have qualified",
            )
        self.journal.add_unit(
            unit,
            _UnitStat(
                result["tokens"], result["documents"], result["bytes_read"], result["sha256"]
            ),
        )
        if result["windows"] is not None:
            windows = tuple(result["windows"])
            self.fresh[draw] = windows
            self.journal.add_windows(draw, unit, windows)
        self.journal.save()

    def _decide(self, draw: int, unit: int, threshold: int) -> tuple[np.ndarray, ...] | None:
        if draw in self.pending:
            self._wait(draw)
        if unit not in self.journal.units:
            if unit in self.in_flight:
                self._wait(self.in_flight[unit])  # a later draw already reads this unit
            else:
                self._execute(draw, unit, threshold)
        if threshold >= self.journal.units[unit].tokens:
            self.fresh.pop(draw, None)
            return None
        if draw in self.fresh:
            return self.fresh.pop(draw)
        stored = self.journal.load_windows(draw)
        if stored is not None:
            self.windows_reused += 1
            return stored
        self._execute(draw, unit, threshold)  # accepted, n_u known: cut this draw's windows
        return self.fresh.pop(draw)

    def run(self, progress: Progress | None) -> list[tuple[int, tuple[np.ndarray, ...] | None]]:
        """(unit, windows or None) of every draw up to the G-th acceptance."""
        goal = self.settings.accepted_units
        limit = self.settings.max_draws or 1000 * goal
        draws: list[tuple[int, tuple[np.ndarray, ...] | None]] = []
        accepted = 0
        draw = 0
        while accepted < goal:
            if draw >= limit:
                rate = accepted / max(draw, 1)
                raise DataError(
                    f"{draw} draws accepted only {accepted} units (rate {rate:.2g}): the weights "
                    "are far above the token counts",
                    hint="lower --truncate-tokens, or raise max_draws",
                )
            self._fill(draw)
            unit, threshold = self.sequence.get(draw)
            windows = self._decide(draw, unit, threshold)
            draws.append((unit, windows))
            if windows is not None:
                accepted += 1
            draw += 1
            if progress is not None:
                progress(accepted, goal)
        return draws


def _assemble(
    units: UnitList,
    settings: SampledSettings,
    tokenizer: Any,
    tokenizer_hash: str,
    eos: int,
    journal: _Journal,
    draws: list[tuple[int, tuple[np.ndarray, ...] | None]],
) -> tuple[SampledDataRecord, TokenWindows]:
    digest = hashlib.sha256()
    tokens: list[np.ndarray] = []
    offsets = [np.zeros(1, dtype=np.int64)]
    contexts: list[np.ndarray] = []
    observation: list[np.ndarray] = []
    chunk_ids: list[np.ndarray] = []
    accepted = 0
    for unit, windows in draws:
        stat = journal.units[unit]
        digest.update(
            np.array([unit, stat.tokens, windows is not None], dtype="<i8").tobytes()
            + bytes.fromhex(stat.sha256)
        )
        if windows is None:
            continue
        window_tokens, window_offsets, window_contexts, ids = windows
        tokens.append(window_tokens)
        offsets.append(window_offsets[1:] + offsets[-1][-1])
        contexts.append(window_contexts)
        count = window_contexts.size
        observation.append(np.full(count, accepted, dtype=np.int64))
        chunk_ids.append(np.column_stack([np.full(count, unit, dtype=np.int64), ids]))
        accepted += 1
    distinct = sorted({unit for unit, _ in draws})
    record = SampledDataRecord(
        source=units.source.get("id") or units.source["path"],
        revision=units.revision,
        source_options=dict(units.source),
        tokenizer_sha256=tokenizer_hash,
        vocab_size=len(tokenizer),
        eos_token_id=eos,
        weight_rule=units.rule.kind,
        truncation_tokens=units.rule.truncation_tokens,
        extra_tokens_per_document=units.rule.extra_tokens_per_document,
        total_weight=units.total_weight,
        units=len(units),
        units_sha256=units.units_sha256,
        accepted=accepted,
        drawn=len(draws),
        chunks_per_unit=settings.chunks_per_unit,
        chunk_tokens=settings.chunk_tokens,
        context_tokens=settings.context_tokens,
        seed=settings.seed,
        tokens_tokenized=sum(journal.units[unit].tokens for unit in distinct),
        documents_tokenized=sum(journal.units[unit].documents for unit in distinct),
        bytes_read=sum(journal.units[unit].bytes_read for unit in distinct),
        draws_sha256=digest.hexdigest(),
    )
    result = TokenWindows(
        tokens=np.concatenate(tokens) if tokens else np.zeros(0, dtype=np.int64),
        offsets=np.concatenate(offsets),
        context_tokens=np.concatenate(contexts) if contexts else np.zeros(0, dtype=np.int64),
        observation=np.concatenate(observation) if observation else np.zeros(0, dtype=np.int64),
        chunk_ids=np.concatenate(chunk_ids) if chunk_ids else np.zeros((0, 3), dtype=np.int64),
    )
    return record, result


# --------------------------------------------------------------------------- verify side


def redraw(
    record: SampledDataRecord,
    tokenizer: Any,
    *,
    workers: int = 0,
    work_dir: str | Path | None = None,
    progress: Progress | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> SampledData:
    """Draw again exactly the windows ``record`` names (``verify --recompute-risk``).

    Re-enumerates the units at the recorded revision, refuses a changed unit list or a
    different tokenizer (:class:`DatasetChangedError`, :class:`DataError`), redraws with the
    recorded seed and settings, and refuses a result whose draws differ from the record
    (another D, G or ``draws_sha256``: the bytes read were not the same).
    """
    if tokenizer_sha256(tokenizer) != record.tokenizer_sha256:
        raise DataError(
            f"the tokenizer has sha256 {tokenizer_sha256(tokenizer)}, but the data were "
            f"sampled with {record.tokenizer_sha256}",
            hint="redraw with the certified model's tokenizer",
        )
    units = enumerate_recorded(record, token=token, endpoint=endpoint)
    problems = compare_units(units, record)
    if problems:
        raise DatasetChangedError(
            f"the units of {record.source} changed since they were recorded: {problems[0]}",
            hint="certify the dataset as it is now, or restore the recorded revision",
        )
    settings = SampledSettings(
        accepted_units=record.accepted,
        chunks_per_unit=record.chunks_per_unit,
        chunk_tokens=record.chunk_tokens,
        context_tokens=record.context_tokens,
        seed=record.seed,
        workers=workers,
        max_draws=max(record.drawn, record.accepted),
    )
    try:
        again = sample_units(
            units,
            tokenizer,
            settings,
            work_dir=work_dir,
            progress=progress,
            token=token,
            endpoint=endpoint,
        )
    except DataError as error:
        if "draws accepted only" in str(error):
            raise DatasetChangedError(
                f"redrawing {record.source} did not reach {record.accepted} acceptances in "
                f"the recorded {record.drawn} draws"
            ) from None
        raise
    if (again.record.drawn, again.record.draws_sha256) != (record.drawn, record.draws_sha256):
        raise DatasetChangedError(
            f"redrawing {record.source} gave {again.record.drawn} draws with draws_sha256 "
            f"{again.record.draws_sha256}, recorded {record.drawn} with {record.draws_sha256}",
            hint="the bytes of a drawn unit changed since the certificate was made",
        )
    return again
