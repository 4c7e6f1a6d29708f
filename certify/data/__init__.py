"""Tokenize a dataset once into token shards, and draw chunks of it.

The rule (DESIGN.md "The bound"): every document is tokenized without the tokenizer's
automatic special tokens and followed by one EOS; the documents, in order, form one
token stream x_1..x_n, with n counted exactly. The stream lives in raw little-endian
memmaps (``uint16`` when the vocabulary fits, else ``uint32``) described by an
``index.json`` (docs/DATA.md, schemas/token-index.schema.json).

Sources: a ``.txt`` (or any text) file is one document, a ``.jsonl`` record or a
``.parquet`` row is one document, a folder is walked recursively in sorted order, a
Hugging Face dataset is streamed through :func:`certify.hub.open_hub_dataset`, and a
folder that already holds an ``index.json`` is used as is (pre-tokenized).

The sampler cuts the stream into consecutive chunks of S tokens (the last may be
shorter) and draws chunks i.i.d. with probability proportional to their length,
which is the same as drawing a token uniformly and taking its chunk.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rfc8785

from certify import container, hub, models
from certify._files import copy_atomic, file_sha256, temp_path, write_json_atomic
from certify._jcs import schema_error, sha256_json
from certify._version import __version__
from certify.errors import DataError, InvalidInputError, ModelError
from certify.records import DatasetRecord, DataSource, to_dict

FORMAT_NAME = "certify-token-shards"
#: 2 adds ``document_ends`` (version-2 windows are aligned with documents); 1 still opens
FORMAT_VERSION = 2
INDEX_NAME = "index.json"
#: cumulative end offsets of the documents, one little-endian uint64 each (format 2)
DOCUMENTS_NAME = "documents.bin"
SHARD_PATTERN = "tokens-{:05d}.bin"
#: default shard size: 2**27 tokens (256 MiB as uint16, 512 MiB as uint32)
DEFAULT_MAX_SHARD_TOKENS = 1 << 27
#: default file extensions taken from a folder (documented in docs/DATA.md)
DEFAULT_EXTENSIONS: tuple[str, ...] = ("txt", "md", "py", "jsonl", "parquet")
#: documents per tokenizer call, and characters per call at most (bounds memory)
DEFAULT_BATCH_DOCUMENTS = 1000
_BATCH_CHARACTERS = 2 << 20
_READ_BLOCK_BYTES = 1 << 20

DecodeErrors = Literal["strict", "replace", "skip"]
Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------- tokenizer identity


def _tokenizer_identity(tokenizer: Any) -> dict[str, Any]:
    """What decides the token ids this module writes (and the BOS/EOS the model input uses).

    For fast tokenizers: the backend's ``normalizer``, ``pre_tokenizer``, ``model`` and
    ``added_tokens``. Left out on purpose: ``post_processor`` (never used, we encode with
    ``add_special_tokens=False``), ``decoder``, ``truncation`` and ``padding`` (runtime
    settings that transformers may change when it loads a tokenizer).
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    identity: dict[str, Any] = {
        "bos_token_id": getattr(tokenizer, "bos_token_id", None),
        "eos_token_id": getattr(tokenizer, "eos_token_id", None),
        "vocab_size": len(tokenizer),
    }
    if backend is not None:
        content = json.loads(backend.to_str())
        for key in ("normalizer", "pre_tokenizer", "model", "added_tokens"):
            identity[key] = content.get(key)
    else:  # a slow (Python) tokenizer: its class and vocabulary are what we can see
        identity["class"] = type(tokenizer).__name__
        identity["vocab"] = dict(sorted(tokenizer.get_vocab().items()))
    return identity


def tokenizer_sha256(tokenizer: Any) -> str:
    """sha256 (hex) of the RFC 8785 canonical JSON of the tokenizer's behaviour.

    Stable for a tokenizer saved and loaded again, so shards made from the original model
    match the tokenizer decoded from a ``.certz`` file.
    """
    return hashlib.sha256(rfc8785.dumps(_tokenizer_identity(tokenizer))).hexdigest()


def check_tokenizer(shards: TokenShards, tokenizer: Any) -> None:
    """Refuse shards made with another tokenizer than ``tokenizer`` (compares hashes)."""
    expected = tokenizer_sha256(tokenizer)
    found = shards.record.tokenizer_sha256
    if found != expected:
        raise DataError(
            f"the shards in {shards.directory} were made with tokenizer sha256 {found}, "
            f"but the model's tokenizer has sha256 {expected}",
            hint="run certify tokenize again with --tokenizer set to this model",
        )


def load_tokenizer(
    model: str | Path, *, endpoint: str | None = None, token: str | None = None
) -> Any:
    """The tokenizer of a local model folder, a ``.certz`` artifact or a Hub model id."""
    path = Path(model)
    if path.suffix == ".certz" and path.is_file():
        return container.load_tokenizer(path)
    from transformers import AutoTokenizer

    if path.is_dir():
        try:
            return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as error:
            raise ModelError(f"cannot load a tokenizer from {path}: {error}") from None
    if path.exists():
        raise ModelError(
            f"{path} is neither a model folder nor a .certz file",
            hint="pass a folder with tokenizer files, a .certz artifact or a Hub model id",
        )
    resolved = models.resolve_model(str(model), endpoint=endpoint, token=token)
    try:
        return AutoTokenizer.from_pretrained(resolved.local_dir, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load the tokenizer of {model}: {error}") from None


def bos_token_id(tokenizer: Any) -> int:
    """The token that starts every input: BOS, or EOS when the tokenizer has no BOS.

    The one rule (DESIGN.md "The bound"); raises ModelError when there is neither.
    """
    for value in (
        getattr(tokenizer, "bos_token_id", None),
        getattr(tokenizer, "eos_token_id", None),
    ):
        if value is not None:
            return int(value)
    raise ModelError(
        "the tokenizer has neither a BOS nor an EOS token; certify needs one to start inputs"
    )


def _eos_token_id(tokenizer: Any) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise DataError(
            "the tokenizer has no EOS token, so documents cannot be joined",
            hint="use a model whose tokenizer defines eos_token",
        )
    return int(eos)


# --------------------------------------------------------------------------- shards


def validate_index(index: Any, where: str = INDEX_NAME) -> None:
    """Raise :class:`DataError` when ``index`` does not follow the token-index schema."""
    problem = schema_error(index, "token-index")
    if problem is not None:
        raise DataError(
            f"{where} is not a valid token index: {problem}",
            hint="make it again with certify tokenize",
        )


def combine_shard_hashes(shard_hashes: list[str]) -> str:
    """``shards_sha256``: sha256 over the raw 32-byte digests of the shards, in order."""
    digest = hashlib.sha256()
    for value in shard_hashes:
        digest.update(bytes.fromhex(value))
    return digest.hexdigest()


def _record_of(index: dict[str, Any]) -> DatasetRecord:
    source = index["source"]
    return DatasetRecord(
        source=source["id"] if source["kind"] == "hub" else source["path"],
        revision=source["revision"],
        tokenizer_sha256=index["tokenizer_sha256"],
        n_tokens=index["n_tokens"],
        documents=index["documents"],
        shards_sha256=index["shards_sha256"],
        max_documents=index["max_documents"],
        documents_sha256=(index.get("document_ends") or {}).get("sha256"),
    )


@dataclass(frozen=True)
class TokenShards:
    """An opened shard folder: the token stream x_1..x_n as memmaps.

    ``read(start, stop)`` returns tokens [start, stop) of the whole stream as int64,
    across shard boundaries.
    """

    directory: Path
    index: dict[str, Any] = field(repr=False)
    record: DatasetRecord
    _arrays: tuple[np.ndarray, ...] = field(repr=False, compare=False)
    _offsets: np.ndarray = field(repr=False, compare=False)
    #: True when tokenize_source found these shards already made and left them untouched
    reused: bool = field(default=False, compare=False)
    #: cumulative end offset of every document (format 2), None for format-1 shards
    _document_ends: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def n_tokens(self) -> int:
        """n, the exact number of tokens of the stream."""
        return int(self.index["n_tokens"])

    @property
    def vocab_size(self) -> int:
        """V of the tokenizer the shards were made with."""
        return int(self.index["vocab_size"])

    @property
    def eos_token_id(self) -> int:
        """The EOS id that ends every document."""
        return int(self.index["eos_token_id"])

    def document_ends(self) -> np.ndarray:
        """End offset (exclusive) of every document in the stream (uint64, read-only).

        Raises DataError for shards of format 1, which did not record documents.
        """
        if self._document_ends is None:
            raise DataError(
                f"the shards in {self.directory} are of format 1 and do not record where "
                "documents end, which version-2 chunks need",
                hint="tokenize the source again (certify tokenize, or delete the cache folder)",
            )
        return self._document_ends

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) of the stream as a new int64 array."""
        if not 0 <= start <= stop <= self.n_tokens:
            raise InvalidInputError(
                f"token range [{start}, {stop}) is outside the stream of {self.n_tokens} tokens"
            )
        out = np.empty(stop - start, dtype=np.int64)
        # shard k holds tokens [offsets[k], offsets[k+1])
        first = int(np.searchsorted(self._offsets, start, side="right")) - 1
        position = start
        shard = max(first, 0)
        while position < stop:
            shard_start = int(self._offsets[shard])
            shard_stop = int(self._offsets[shard + 1])
            take_stop = min(stop, shard_stop)
            if take_stop > position:
                out[position - start : take_stop - start] = self._arrays[shard][
                    position - shard_start : take_stop - shard_start
                ]
                position = take_stop
            shard += 1
        return out


def open_shards(directory: str | Path, *, verify_contents: bool = True) -> TokenShards:
    """Open a shard folder made by :func:`tokenize_source`, checking it first.

    Always checks: the index against its schema, every shard file's size, that
    ``shards_sha256`` combines the listed shard hashes and that the token counts add up.
    With ``verify_contents`` (default) every shard file is hashed as well (about 1 s/GB).
    """
    folder = Path(directory)
    index_path = folder / INDEX_NAME
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"{folder} holds no {INDEX_NAME}",
            hint="make token shards with certify tokenize SOURCE --tokenizer MODEL -o DIR",
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"cannot read {index_path}: {error}") from None
    validate_index(index, str(index_path))
    dtype = np.dtype(index["dtype"]).newbyteorder("<")
    shard_hashes = [shard["sha256"] for shard in index["shards"]]
    if combine_shard_hashes(shard_hashes) != index["shards_sha256"]:
        raise DataError(
            f"{index_path}: shards_sha256 does not match the listed shard hashes",
            hint="the index was edited or damaged; make the shards again",
        )
    total = sum(shard["n_tokens"] for shard in index["shards"])
    if total != index["n_tokens"]:
        raise DataError(
            f"{index_path}: the shards hold {total} tokens but n_tokens says {index['n_tokens']}"
        )
    arrays = []
    for shard in index["shards"]:
        path = folder / shard["file"]
        expected_bytes = shard["n_tokens"] * dtype.itemsize
        try:
            size_bytes = path.stat().st_size
        except OSError as error:
            raise DataError(f"cannot read shard {path}: {error.strerror}") from None
        if size_bytes != expected_bytes:
            raise DataError(
                f"shard {path} has {size_bytes} bytes, expected {expected_bytes} "
                f"({shard['n_tokens']} tokens of {dtype.name})",
                hint="the shard is truncated or replaced; make the shards again",
            )
        if verify_contents and file_sha256(path) != shard["sha256"]:
            raise DataError(
                f"shard {path} does not match its sha256 in {INDEX_NAME}",
                hint="the shard was modified; make the shards again",
            )
        if shard["n_tokens"] == 0:
            arrays.append(np.zeros(0, dtype=dtype))
        else:
            arrays.append(np.memmap(path, dtype=dtype, mode="r", shape=(shard["n_tokens"],)))
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([shard["n_tokens"] for shard in index["shards"]])
    return TokenShards(
        directory=folder,
        index=index,
        record=_record_of(index),
        _arrays=tuple(arrays),
        _offsets=offsets,
        _document_ends=_open_document_ends(folder, index, verify_contents),
    )


def _open_document_ends(
    folder: Path, index: dict[str, Any], verify_contents: bool
) -> np.ndarray | None:
    """The documents' end offsets of a format-2 folder, checked; None for format 1."""
    entry = index.get("document_ends")
    if entry is None:
        return None
    path = folder / entry["file"]
    documents = int(index["documents"])
    try:
        size_bytes = path.stat().st_size
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    if size_bytes != 8 * documents:
        raise DataError(
            f"{path} has {size_bytes} bytes, expected {8 * documents} (one uint64 per document)",
            hint="make the shards again",
        )
    if verify_contents and file_sha256(path) != entry["sha256"]:
        raise DataError(f"{path} does not match its sha256 in {INDEX_NAME}")
    ends = np.memmap(path, dtype="<u8", mode="r", shape=(documents,))
    if (
        int(ends[-1]) != int(index["n_tokens"])
        or not bool(np.all(np.diff(ends) > 0))
        or ends[0] < 1
    ):
        raise DataError(
            f"{path}: document ends must rise strictly and end at n = {index['n_tokens']}",
            hint="make the shards again",
        )
    return ends


def is_shard_dir(path: str | Path) -> bool:
    """True when ``path`` is a folder holding a token index."""
    return (Path(path) / INDEX_NAME).is_file()


class _ShardWriter:
    """Appends token ids to numbered shard files, hashing as it goes (bounded memory)."""

    def __init__(self, directory: Path, dtype: np.dtype, max_shard_tokens: int) -> None:
        self.directory = directory
        self.dtype = dtype
        self.max_shard_tokens = max_shard_tokens
        self.shards: list[dict[str, Any]] = []
        self.n_tokens = 0
        self._stream: Any = None
        self._digest: Any = None
        self._count = 0
        self._temp: Path | None = None
        self.temp_files: list[Path] = []

    def _open(self) -> None:
        name = SHARD_PATTERN.format(len(self.shards))
        self._temp = temp_path(self.directory / name)
        self.temp_files.append(self._temp)
        self._stream = open(self._temp, "wb")  # noqa: SIM115  (closed in _close)
        self._digest = hashlib.sha256()
        self._count = 0
        self.shards.append({"file": name, "n_tokens": 0, "sha256": ""})

    def _close(self) -> None:
        if self._stream is None:
            return
        self._stream.flush()
        os.fsync(self._stream.fileno())
        self._stream.close()
        self._stream = None
        self.shards[-1]["n_tokens"] = self._count
        self.shards[-1]["sha256"] = self._digest.hexdigest()

    def write(self, tokens: np.ndarray) -> None:
        data = np.ascontiguousarray(tokens, dtype=self.dtype)
        position = 0
        while position < len(data):
            if self._stream is None or self._count >= self.max_shard_tokens:
                self._close()
                self._open()
            take = min(len(data) - position, self.max_shard_tokens - self._count)
            block = data[position : position + take].tobytes()
            self._stream.write(block)
            self._digest.update(block)
            self._count += take
            self.n_tokens += take
            position += take

    def finish(self) -> list[dict[str, Any]]:
        """Close the last shard and move every shard to its final name."""
        self._close()
        for shard, temp in zip(self.shards, self.temp_files, strict=True):
            os.replace(temp, self.directory / shard["file"])
        self.temp_files = []
        return self.shards

    def abort(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        for temp in self.temp_files:
            temp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Source:
    """A source made concrete: how to iterate its documents and what identifies it."""

    description: dict[str, Any]
    documents: Callable[[], Iterator[str]]
    total_documents: int | None


def _extensions(extensions: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    chosen = DEFAULT_EXTENSIONS if extensions is None else tuple(extensions)
    cleaned = tuple(sorted({item.strip().lstrip(".").lower() for item in chosen if item.strip()}))
    if not cleaned:
        raise InvalidInputError("no file extensions given", field="--extensions")
    return cleaned


def _local_files(root: Path, extensions: tuple[str, ...], exclude: tuple[str, ...]) -> list[Path]:
    if root.is_file():
        return [root]
    files = [
        path
        for path in root.rglob("*")
        if path.is_file()
        and path.suffix.lstrip(".").lower() in extensions
        and not _excluded(path.relative_to(root).as_posix(), exclude)
    ]
    # sorted by relative POSIX path: the same order on every platform
    return sorted(files, key=lambda path: path.relative_to(root).as_posix())


def _excluded(relative: str, patterns: tuple[str, ...]) -> bool:
    """fnmatch-style patterns on the relative POSIX path (``*`` also matches ``/``)."""
    return any(fnmatch.fnmatchcase(relative, pattern) for pattern in patterns)


def _relative_name(root: Path, path: Path) -> str:
    return path.name if root.is_file() else path.relative_to(root).as_posix()


def _fingerprint_files(root: Path, files: list[Path]) -> tuple[str, int | None]:
    """sha256 over (relative path, size, contents) of every file, and a document count."""
    digest = hashlib.sha256()
    documents: int | None = 0
    for path in files:
        name = _relative_name(root, path).encode("utf-8")
        try:
            size = path.stat().st_size
            digest.update(len(name).to_bytes(8, "little") + name + size.to_bytes(8, "little"))
            lines = 0
            with open(path, "rb") as stream:
                while block := stream.read(_READ_BLOCK_BYTES):
                    digest.update(block)
                    lines += block.count(b"\n")
        except OSError as error:
            raise DataError(f"cannot read {path}: {error.strerror}") from None
        kind = _file_kind(path)
        if documents is not None:
            if kind == "text":
                documents += 1
            elif kind == "parquet":
                documents += _parquet_rows(path)
            else:  # jsonl: an upper bound (blank lines are skipped); fine for progress
                documents += lines + 1
    return digest.hexdigest(), documents


def _file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return "jsonl"
    if suffix == ".parquet":
        return "parquet"
    return "text"


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception as error:  # pyarrow raises several types for bad files
        raise DataError(f"cannot read {path} as parquet: {error}") from None


def decode_text(data: bytes, decode_errors: str, where: str) -> str | None:
    """A text file's bytes as UTF-8 text under ``--decode-errors``: refused (strict),
    U+FFFD for bad bytes (replace), or None, the file left out (skip)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        if decode_errors == "replace":
            return data.decode("utf-8", errors="replace")
        if decode_errors == "skip":
            return None
        raise DataError(
            f"{where} is not UTF-8 (byte {error.start})",
            hint="fix the file, or pass --decode-errors replace or skip",
        ) from None


def _read_text(path: Path, decode_errors: DecodeErrors) -> str | None:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    return decode_text(data, decode_errors, str(path))


def _jsonl_documents(path: Path, text_column: str) -> Iterator[str]:
    try:
        stream = open(path, encoding="utf-8")  # noqa: SIM115  (closed below)
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    with stream:
        try:
            for number, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(f"{path} line {number} is not JSON: {error.msg}") from None
                yield _text_of(record, text_column, f"{path} line {number}")
        except UnicodeDecodeError as error:
            raise DataError(f"{path} is not UTF-8 (byte {error.start})") from None


def _text_of(record: Any, text_column: str, where: str) -> str:
    if not isinstance(record, dict):
        raise DataError(f"{where} is a JSON {type(record).__name__}, expected an object")
    if text_column not in record:
        columns = ", ".join(sorted(record)) or "none"
        raise DataError(
            f"{where} has no column {text_column!r} (columns: {columns})",
            hint="pass --text-column with one of them",
        )
    value = record[text_column]
    if not isinstance(value, str):
        raise DataError(
            f"{where}: column {text_column!r} holds {type(value).__name__}, expected text"
        )
    return value


def _parquet_documents(path: Path, text_column: str, batch_rows: int) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:
        raise DataError(f"cannot read {path} as parquet: {error}") from None
    names = parquet.schema_arrow.names
    if text_column not in names:
        raise DataError(
            f"{path} has no column {text_column!r} (columns: {', '.join(names) or 'none'})",
            hint="pass --text-column with one of them",
        )
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=[text_column]):
        for number, value in enumerate(batch.column(0).to_pylist()):
            if not isinstance(value, str):
                raise DataError(
                    f"{path}: column {text_column!r} holds {type(value).__name__} "
                    f"(row {number} of a batch), expected text"
                )
            yield value


def _local_source(
    source: str,
    text_column: str,
    extensions: tuple[str, ...],
    exclude: tuple[str, ...],
    decode_errors: DecodeErrors,
    batch_size: int,
) -> _Source:
    root = Path(source)
    files = _local_files(root, extensions, exclude)
    if not files:
        raise DataError(
            f"{root} holds no files with the extensions {', '.join(extensions)}"
            + (f" outside {', '.join(exclude)}" if exclude else ""),
            hint="pass --extensions (and --exclude) to choose which files are documents",
        )
    fingerprint, total = _fingerprint_files(root, files)

    def documents() -> Iterator[str]:
        for path in files:
            kind = _file_kind(path)
            if kind == "jsonl":
                yield from _jsonl_documents(path, text_column)
            elif kind == "parquet":
                yield from _parquet_documents(path, text_column, batch_size)
            else:
                text = _read_text(path, decode_errors)
                if text is not None:
                    yield text

    description = {
        "kind": "folder" if root.is_dir() else "file",
        "path": source,
        "revision": f"sha256:{fingerprint}",
        "fingerprint": fingerprint,
        "text_column": text_column,
        "extensions": list(extensions) if root.is_dir() else None,
        "exclude": list(exclude) if root.is_dir() else None,
        "decode_errors": decode_errors,
        "files": len(files),
    }
    return _Source(description=description, documents=documents, total_documents=total)


def _hub_source(
    source: str,
    text_column: str,
    dataset_config: str | None,
    split: str,
    revision: str | None,
    streaming: bool,
    token: str | None,
    endpoint: str | None,
) -> _Source:

    dataset, commit = hub.open_hub_dataset(
        source, dataset_config, split, revision, streaming=streaming, token=token, endpoint=endpoint
    )
    columns = _dataset_columns(dataset)
    if columns is not None and text_column not in columns:
        raise DataError(
            f"dataset {source} has no column {text_column!r} (columns: {', '.join(columns)})",
            hint="pass --text-column with one of them",
        )
    fingerprint = hashlib.sha256(
        json.dumps(
            [source, commit, dataset_config, split, text_column], separators=(",", ":")
        ).encode("utf-8")
    ).hexdigest()

    def documents() -> Iterator[str]:
        for number, row in enumerate(dataset):
            yield _text_of(row, text_column, f"dataset {source} row {number}")

    total = getattr(dataset, "num_rows", None)
    description = {
        "kind": "hub",
        "id": source,
        "revision": commit,
        "requested_revision": revision,
        "config": dataset_config,
        "split": split,
        "fingerprint": fingerprint,
        "text_column": text_column,
    }
    return _Source(
        description=description,
        documents=documents,
        total_documents=int(total) if isinstance(total, int) else None,
    )


def _dataset_columns(dataset: Any) -> list[str] | None:
    names = getattr(dataset, "column_names", None)
    return list(names) if isinstance(names, list | tuple) else None


# --------------------------------------------------------------------------- tokenize


def _batches(documents: Iterator[str], batch_size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    characters = 0
    for text in documents:
        batch.append(text)
        characters += len(text)
        if len(batch) >= batch_size or characters >= _BATCH_CHARACTERS:
            yield batch
            batch, characters = [], 0
    if batch:
        yield batch


def _encode_batch(tokenizer: Any, batch: list[str]) -> list[list[int]]:
    # fast tokenizers encode a batch on several threads (Rust, rayon) unless
    # TOKENIZERS_PARALLELISM=false; verbose=False silences the "longer than
    # model_max_length" warning, which does not apply: nothing is truncated here.
    encoded = tokenizer(
        batch,
        add_special_tokens=False,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )
    return encoded["input_ids"]  # type: ignore[no-any-return]


def _cached(
    out: Path, source: dict[str, Any], tokenizer_hash: str, max_documents: int | None
) -> TokenShards | None:
    if not is_shard_dir(out):
        return None
    try:
        index = json.loads((out / INDEX_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if (
        index.get("format_version") != FORMAT_VERSION
        or index.get("tokenizer_sha256") != tokenizer_hash
        or index.get("max_documents") != max_documents
        or index.get("source") != source
    ):
        return None
    try:
        return dataclasses.replace(open_shards(out), reused=True)
    except DataError:
        return None  # damaged: make it again


def _tool_versions() -> dict[str, str]:
    versions = {"certify": __version__}
    for name in ("tokenizers", "transformers", "numpy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:  # pragma: no cover - all are dependencies
            versions[name] = "unknown"
    return versions


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_FILE_SUFFIXES = (".txt", ".md", ".py", ".jsonl", ".json", ".parquet", ".csv")


def _looks_like_hub_id(source: str) -> bool:
    """NAME or OWNER/NAME, and not a file name (a missing local file is an error, not an id)."""
    return bool(_HUB_ID.match(source)) and not source.lower().endswith(_FILE_SUFFIXES)


def tokenize_source(
    source: str | Path,
    tokenizer: Any,
    out_dir: str | Path,
    *,
    text_column: str = "text",
    max_documents: int | None = None,
    dataset_config: str | None = None,
    split: str = "train",
    revision: str | None = None,
    extensions: tuple[str, ...] | list[str] | None = None,
    exclude: tuple[str, ...] | list[str] = (),
    decode_errors: DecodeErrors = "strict",
    batch_size: int = DEFAULT_BATCH_DOCUMENTS,
    max_shard_tokens: int = DEFAULT_MAX_SHARD_TOKENS,
    token: str | None = None,
    endpoint: str | None = None,
    progress: Progress | None = None,
) -> TokenShards:
    """Tokenize ``source`` with ``tokenizer`` into shards + ``index.json`` in ``out_dir``.

    ``source`` is a local file or folder, a folder of existing shards, or else a Hugging
    Face dataset id (``dataset_config``, ``split``, ``revision``; streamed when
    ``max_documents`` is set). A folder contributes its files whose extension is in
    ``extensions`` and whose relative path matches none of the ``exclude`` patterns
    (fnmatch, ``*`` also matches ``/``); text files that are not UTF-8 follow
    ``decode_errors``. ``max_documents`` keeps the first N documents. When
    ``out_dir`` already holds shards of the same source, tokenizer and ``max_documents``
    they are reused untouched. ``progress(documents_done, documents_total)`` is called
    after every batch (total 0 when unknown).
    """
    if max_documents is not None and max_documents < 1:
        raise InvalidInputError(f"must be at least 1, got {max_documents}", field="--max-documents")
    if batch_size < 1:
        raise InvalidInputError(f"must be at least 1, got {batch_size}", field="batch_size")
    if max_shard_tokens < 1:
        raise InvalidInputError(
            f"must be at least 1, got {max_shard_tokens}", field="max_shard_tokens"
        )
    if decode_errors not in ("strict", "replace", "skip"):
        raise InvalidInputError(
            f"must be strict, replace or skip, got {decode_errors!r}", field="--decode-errors"
        )
    out = Path(out_dir)
    tokenizer_hash = tokenizer_sha256(tokenizer)
    source_text = str(source)
    local = Path(source_text)
    if local.is_dir() and is_shard_dir(local):
        return _reuse_shards(local, out, tokenizer)
    if local.exists():
        concrete = _local_source(
            source_text,
            text_column,
            _extensions(extensions),
            tuple(sorted(set(exclude))),
            decode_errors,
            batch_size,
        )
    elif not _looks_like_hub_id(source_text):
        raise DataError(
            f"{source_text} does not exist",
            hint="check the path; a Hub dataset id looks like NAME or OWNER/NAME",
        )
    else:
        concrete = _hub_source(
            source_text,
            text_column,
            dataset_config,
            split,
            revision,
            streaming=max_documents is not None,
            token=token,
            endpoint=endpoint,
        )
    cached = _cached(out, concrete.description, tokenizer_hash, max_documents)
    if cached is not None:
        return cached
    return _write_shards(
        concrete,
        tokenizer,
        tokenizer_hash,
        out,
        max_documents,
        batch_size,
        max_shard_tokens,
        progress,
    )


def _write_shards(
    concrete: _Source,
    tokenizer: Any,
    tokenizer_hash: str,
    out: Path,
    max_documents: int | None,
    batch_size: int,
    max_shard_tokens: int,
    progress: Progress | None,
) -> TokenShards:
    eos = _eos_token_id(tokenizer)
    vocab_size = len(tokenizer)
    dtype = np.dtype("<u2") if vocab_size <= 65535 else np.dtype("<u4")
    limit = np.iinfo(dtype).max
    out.mkdir(parents=True, exist_ok=True)
    # the index is the commit point: without it the folder holds no valid shards
    (out / INDEX_NAME).unlink(missing_ok=True)
    total = concrete.total_documents or 0
    if max_documents is not None:
        total = min(total, max_documents) if total else max_documents
    writer = _ShardWriter(out, dtype, max_shard_tokens)
    ends_temp = temp_path(out / DOCUMENTS_NAME)
    ends_digest = hashlib.sha256()
    documents = 0
    text_tokens = 0
    ends_file = open(ends_temp, "wb")  # noqa: SIM115  (closed below, also on error)
    try:
        stream = concrete.documents()
        if max_documents is not None:
            stream = _take(stream, max_documents)
        for batch in _batches(stream, batch_size):
            ids = _encode_batch(tokenizer, batch)
            joined: list[int] = []
            for item in ids:  # each document followed by one EOS
                joined.extend(item)
                joined.append(eos)
            flat = np.array(joined, dtype=np.int64)
            batch_text_tokens = len(flat) - len(ids)
            if len(flat) and (flat.min() < 0 or flat.max() > limit):
                raise DataError(
                    f"token id {int(flat.max())} does not fit {dtype.name} for a vocabulary of "
                    f"{vocab_size}",
                    hint="the tokenizer's length does not cover its ids",
                )
            ends = writer.n_tokens + np.cumsum([len(item) + 1 for item in ids], dtype=np.int64)
            writer.write(flat)
            block = ends.astype("<u8").tobytes()
            ends_file.write(block)
            ends_digest.update(block)
            documents += len(ids)
            text_tokens += batch_text_tokens
            if progress is not None:
                progress(documents, max(total, documents))
        if documents == 0:
            raise DataError(
                f"{_describe(concrete)} holds no documents",
                hint="check the source, --split, --extensions or --max-documents",
            )
        if text_tokens == 0:
            raise DataError(
                f"{_describe(concrete)} holds {documents} document(s) but all are empty",
                hint="check --text-column",
            )
        shards = writer.finish()
        ends_file.flush()
        os.fsync(ends_file.fileno())
        ends_file.close()
        os.replace(ends_temp, out / DOCUMENTS_NAME)
    except BaseException:
        writer.abort()
        if not ends_file.closed:
            ends_file.close()
        ends_temp.unlink(missing_ok=True)
        raise
    index = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "n_tokens": writer.n_tokens,
        "documents": documents,
        "dtype": dtype.name,
        "byte_order": "little",
        "shards": shards,
        "shards_sha256": combine_shard_hashes([shard["sha256"] for shard in shards]),
        "document_ends": {"file": DOCUMENTS_NAME, "sha256": ends_digest.hexdigest()},
        "tokenizer_sha256": tokenizer_hash,
        "vocab_size": vocab_size,
        "eos_token_id": eos,
        "bos_token_id": getattr(tokenizer, "bos_token_id", None),
        "source": concrete.description,
        "max_documents": max_documents,
        "tool": _tool_versions(),
    }
    validate_index(index)
    write_json_atomic(out / INDEX_NAME, index)
    keep = {shard["file"] for shard in shards}
    for stale in out.glob("tokens-*.bin"):
        if stale.name not in keep:
            stale.unlink()
    return open_shards(out, verify_contents=False)


def _take(documents: Iterator[str], count: int) -> Iterator[str]:
    for number, text in enumerate(documents):
        if number >= count:
            return
        yield text


def _describe(concrete: _Source) -> str:
    description = concrete.description
    return f"dataset {description['id']}" if description["kind"] == "hub" else description["path"]


def _reuse_shards(source: Path, out: Path, tokenizer: Any) -> TokenShards:
    """A pre-tokenized source: check it, and copy it to ``out`` when that is elsewhere."""
    shards = open_shards(source)
    check_tokenizer(shards, tokenizer)
    if out.resolve() == source.resolve():
        return shards
    out.mkdir(parents=True, exist_ok=True)
    (out / INDEX_NAME).unlink(missing_ok=True)
    for shard in shards.index["shards"]:
        copy_atomic(source / shard["file"], out / shard["file"])
    if "document_ends" in shards.index:
        name = shards.index["document_ends"]["file"]
        copy_atomic(source / name, out / name)
    write_json_atomic(out / INDEX_NAME, shards.index)
    return open_shards(out)


# --------------------------------------------------------------------------- the shard cache


def cache_folder(data: DataSource, tokenizer_hash: str, cache_root: str | Path) -> Path:
    """The folder of ``data``'s shards under ``cache_root`` (one key for every caller).

    The key covers everything that changes the tokens: the source (a local path made
    absolute), every reading option and the tokenizer's hash. A local source whose files
    changed is tokenized again in the same folder (tokenize_source compares fingerprints).
    """
    local = Path(data.source).expanduser()
    source = str(local.resolve()) if local.exists() else data.source
    reading = {key: value for key, value in to_dict(data).items() if key not in _PLAN_FIELDS}
    key = sha256_json({**reading, "source": source, "tokenizer_sha256": tokenizer_hash})
    return Path(cache_root) / key[:24]


#: DataSource fields that choose how to sample, not which tokens the source holds
_PLAN_FIELDS = frozenset({"mode", "accepted_units", "chunks_per_unit", "truncate_tokens"})
#: --data-mode auto samples a local source from this many bytes on (~2.5e8 tokens: about
#: 15 minutes of exact tokenization on 2 CPU cores at 250k tokens/s per core)
AUTO_SAMPLED_BYTES = 1 << 30


def resolve_mode(data: DataSource) -> Literal["exact", "sampled"]:
    """``data.mode`` with "auto" decided: sampled for a Hub dataset or a local source of at
    least :data:`AUTO_SAMPLED_BYTES`, exact otherwise (token shards are always exact)."""
    if data.mode != "auto":
        return data.mode
    local = Path(data.source).expanduser()
    if is_shard_dir(local):
        return "exact"
    if not local.exists():
        return "sampled" if _looks_like_hub_id(data.source) else "exact"
    files = [local] if local.is_file() else [path for path in local.rglob("*") if path.is_file()]
    size_bytes = sum(path.stat().st_size for path in files)
    return "sampled" if size_bytes >= AUTO_SAMPLED_BYTES else "exact"


def cached_tokens(
    data: DataSource,
    tokenizer: Any,
    cache_root: str | Path,
    *,
    token: str | None = None,
    endpoint: str | None = None,
    progress: Progress | None = None,
) -> TokenShards:
    """``data`` tokenized with ``tokenizer``: a shard folder as is, else cached shards.

    A token-shard folder is opened (and checked against the tokenizer); any other source
    is tokenized once into :func:`cache_folder` and reused afterwards.
    """
    if is_shard_dir(data.source):
        shards = open_shards(data.source)
        check_tokenizer(shards, tokenizer)
        return shards
    return tokenize_source(
        data.source,
        tokenizer,
        cache_folder(data, tokenizer_sha256(tokenizer), cache_root),
        text_column=data.text_column,
        max_documents=data.max_documents,
        dataset_config=data.config,
        split=data.split,
        revision=data.revision,
        extensions=data.extensions,
        exclude=data.exclude,
        decode_errors=data.decode_errors,
        token=token,
        endpoint=endpoint,
        progress=progress,
    )


# --------------------------------------------------------------------------- chunks + sampler


def chunk_count(n_tokens: int, chunk_tokens: int) -> int:
    """Number of chunks of ``chunk_tokens`` (the last may be shorter) in ``n_tokens``.

    Refuses a stream shorter than one chunk (the chunk length would be meaningless).
    """
    if chunk_tokens < 1:
        raise InvalidInputError(f"must be at least 1, got {chunk_tokens}", field="--chunk-tokens")
    if n_tokens < 1:
        raise DataError("the dataset holds no tokens", hint="tokenize a non-empty source")
    if n_tokens < chunk_tokens:
        raise DataError(
            f"the dataset holds {n_tokens} tokens, fewer than one chunk of {chunk_tokens}",
            hint=f"pass --chunk-tokens {n_tokens} or less, or use more data",
        )
    return math.ceil(n_tokens / chunk_tokens)


def chunk_span(j: int, n_tokens: int, chunk_tokens: int) -> tuple[int, int]:
    """Token range [start, stop) of chunk ``j``."""
    count = chunk_count(n_tokens, chunk_tokens)
    if not 0 <= j < count:
        raise InvalidInputError(f"chunk {j} does not exist; there are {count} chunks")
    start = j * chunk_tokens
    return start, min(start + chunk_tokens, n_tokens)


def sample_chunks(n_tokens: int, chunk_tokens: int, samples: int, seed: int) -> np.ndarray:
    """``samples`` chunk indices drawn i.i.d. with probability ∝ chunk length (int64).

    Draws a token uniformly from [0, n) with ``numpy.random.Generator(PCG64(seed))``
    and takes its chunk, which gives each chunk probability length/n exactly.
    """
    chunk_count(n_tokens, chunk_tokens)
    if samples < 1:
        raise InvalidInputError(f"must be at least 1, got {samples}", field="--samples")
    if seed < 0:
        raise InvalidInputError(f"must be 0 or more, got {seed}", field="--seed")
    generator = np.random.Generator(np.random.PCG64(seed))
    tokens = generator.integers(0, n_tokens, size=samples, dtype=np.int64)
    return tokens // chunk_tokens


def all_chunks(n_tokens: int, chunk_tokens: int) -> np.ndarray:
    """Every chunk index once, in order (exhaustive evaluation)."""
    return np.arange(chunk_count(n_tokens, chunk_tokens), dtype=np.int64)
