"""Sampled mode, part 1: a dataset as an ordered list of units with weights ≥ their tokens.

DESIGN.md "Corpora too large to tokenize: sampled mode". A unit is

- a file of a local folder whose documents are whole files (``.txt``, ``.md``, ``.py``, …),
- a block of ``block_lines`` consecutive lines of a ``.jsonl`` file (the last block of a
  file may be shorter), found by one newline-counting pass over the file,
- a row group of a ``.parquet`` file, local or on the Hub (its footer alone gives the
  row count; on the Hub the footer is read by HTTP range requests, pinned to a commit).

Every unit gets a weight w_u, known before anything is tokenized and guaranteed to be at
least n_u, the unit's exact token count under the exact-mode rule (each document without
automatic special tokens, followed by one EOS):

- ``truncate`` (rule a): each document is cut to the first c tokens of (its tokens + EOS),
  so a document holds at most c tokens and w_u = c·m_u, with m_u the unit's document count
  (an upper bound for jsonl: its line count);
- ``bytes`` (rule b): w_u = bytes_u + e·m_u, where bytes_u bounds the UTF-8 bytes of the
  unit's texts and e is the number of tokens per document that cover no byte of it (EOS,
  a SentencePiece-style prefix). Only tokenizers for which every other token provably
  covers at least one byte qualify (:func:`bytes_rule_extra_tokens`).

The list is fingerprinted (``units_sha256``) so that a resumed run and ``certify verify``
can tell whether the dataset changed. Nothing here tokenizes.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
import rfc8785

from certify import hub
from certify.data import (
    DecodeErrors,
    _extensions,
    _file_kind,
    _local_files,
    _looks_like_hub_id,
    _relative_name,
    _text_of,
)
from certify.errors import DataError, DatasetChangedError, InvalidInputError, WeightRuleError

__all__ = [
    "DEFAULT_BLOCK_LINES",
    "UNITS_FORMAT_VERSION",
    "UnitList",
    "WeightRule",
    "bytes_rule_extra_tokens",
    "check_unit_list",
    "compare_units",
    "enumerate_recorded",
    "enumerate_units",
    "parquet_column_chunk",
    "require_same_units",
    "weight_rule_for",
]

#: lines of a .jsonl file per unit (the last block of a file may hold fewer)
DEFAULT_BLOCK_LINES = 1000
#: version of the canonical unit list that ``units_sha256`` hashes (docs/DATA.md)
UNITS_FORMAT_VERSION = 1
_READ_BLOCK_BYTES = 16 << 20
#: how a unit's decoded text may be longer than its bytes on disk: ``--decode-errors
#: replace`` turns each undecodable byte into U+FFFD, 3 bytes of UTF-8
_REPLACE_EXPANSION = 3
#: parquet encodings whose uncompressed size is at least the values' bytes (no dictionary,
#: no prefix sharing): PLAIN and DELTA_LENGTH_BYTE_ARRAY store every value's bytes whole,
#: RLE/BIT_PACKED only encode levels
_BYTE_PRESERVING_ENCODINGS = frozenset({"PLAIN", "DELTA_LENGTH_BYTE_ARRAY", "RLE", "BIT_PACKED"})

UnitKind = Literal["text", "jsonl", "parquet"]


# --------------------------------------------------------------------------- weight rules


@dataclass(frozen=True)
class WeightRule:
    """How unit weights are made: ``truncate`` (c tokens per document) or ``bytes``."""

    kind: Literal["truncate", "bytes"]
    truncation_tokens: int | None = None
    extra_tokens_per_document: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "truncation_tokens": self.truncation_tokens,
            "extra_tokens_per_document": self.extra_tokens_per_document,
        }


def weight_rule_for(tokenizer: Any, truncate_tokens: int | None = None) -> WeightRule:
    """The weight rule for ``tokenizer``: truncation when ``truncate_tokens`` is given,
    else the bytes rule (refused with :class:`WeightRuleError` for tokenizers that do not
    qualify, see :func:`bytes_rule_extra_tokens`)."""
    if truncate_tokens is not None:
        if isinstance(truncate_tokens, bool) or truncate_tokens < 1:
            raise InvalidInputError(
                f"must be at least 1, got {truncate_tokens}", field="--truncate-tokens"
            )
        return WeightRule("truncate", int(truncate_tokens), 0)
    return WeightRule("bytes", None, bytes_rule_extra_tokens(tokenizer))


_PREFIX_CHAR = "▁"
_SPLITTING_PRE_TOKENIZERS = frozenset(
    {"Split", "Digits", "Punctuation", "Whitespace", "WhitespaceSplit", "UnicodeScripts"}
)


def bytes_rule_extra_tokens(tokenizer: Any) -> int:
    """e of the bytes rule: tokens per document beyond one per byte of its UTF-8 text.

    Qualifies: a fast tokenizer whose model is BPE and whose normalizer and pre-tokenizer
    can only split the text, map a space to ``▁`` (in the vocabulary) or add one prefix
    (``▁`` or a space) per piece. BPE starts from one symbol per byte (ByteLevel) or per
    character (others; an unknown character becomes one ``<unk>`` or its UTF-8 bytes with
    byte fallback) and merges only, so a piece of b bytes gives at most b tokens, plus one
    for its prefix. e = 1 (EOS) + 1 when a prefix is added. When the prefix is added to
    every piece between added tokens (not only the first), every added token must be at
    least 2 characters long so that its own bytes pay for the next piece's prefix.
    Raises :class:`WeightRuleError` naming what disqualifies the tokenizer.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        _refuse("it is not a fast (tokenizers) tokenizer, whose rules certify can inspect")
    content: dict[str, Any] = json.loads(backend.to_str())
    model = content.get("model") or {}
    if model.get("type") != "BPE":
        _refuse(f"its model is {model.get('type')}, not BPE")
    vocab = model.get("vocab") or {}
    prefix = _Prefix()
    _check_normalizer(content.get("normalizer"), vocab, prefix)
    byte_level = _check_pre_tokenizer(content.get("pre_tokenizer"), vocab, prefix)
    if byte_level and model.get("byte_fallback"):
        from tokenizers import pre_tokenizers

        missing = [char for char in pre_tokenizers.ByteLevel.alphabet() if char not in vocab]
        if missing:
            _refuse("it falls back to bytes for byte-level symbols missing from its vocabulary")
    if prefix.every_piece:
        short = [
            token.get("content", "")
            for token in content.get("added_tokens") or []
            if len(token.get("content", "")) < 2
        ]
        if short:
            _refuse(
                f"it adds a prefix after every added token and added token {short[0]!r} is "
                "shorter than 2 characters"
            )
    return 1 + (1 if prefix.every_piece or prefix.first_piece else 0)


@dataclass
class _Prefix:
    first_piece: bool = False
    every_piece: bool = False


def _refuse(reason: str) -> NoReturn:
    raise WeightRuleError(
        f"the bytes weight rule cannot be proven for this tokenizer: {reason}",
        hint="pass --truncate-tokens C (documents cut to C tokens; weights C per document)",
    )


def _check_normalizer(normalizer: Any, vocab: dict[str, int], prefix: _Prefix) -> None:
    if normalizer is None:
        return
    kind = normalizer.get("type")
    if kind == "Sequence":
        for item in normalizer.get("normalizers") or []:
            _check_normalizer(item, vocab, prefix)
        return
    if kind == "Replace":
        pattern = normalizer.get("pattern") or {}
        if pattern.get("String") == " " and normalizer.get("content") == _PREFIX_CHAR:
            if _PREFIX_CHAR not in vocab:
                _refuse(f"it maps spaces to {_PREFIX_CHAR!r}, which is not in its vocabulary")
            return
        _refuse(f"its normalizer replaces {pattern} with {normalizer.get('content')!r}")
    if kind == "Prepend" and normalizer.get("prepend") == _PREFIX_CHAR:
        if _PREFIX_CHAR not in vocab:
            _refuse(f"it prepends {_PREFIX_CHAR!r}, which is not in its vocabulary")
        prefix.every_piece = True  # normalizers run on every piece between added tokens
        return
    _refuse(f"its normalizer {kind} can make a text longer than its bytes")


def _check_pre_tokenizer(pre: Any, vocab: dict[str, int], prefix: _Prefix) -> bool:
    """Checks ``pre``; True when it holds a ByteLevel step."""
    if pre is None:
        return False
    kind = pre.get("type")
    if kind == "Sequence":
        found = False
        for item in pre.get("pretokenizers") or []:
            found = _check_pre_tokenizer(item, vocab, prefix) or found
        return found
    if kind == "ByteLevel":
        if pre.get("add_prefix_space"):
            prefix.every_piece = True
        return True
    if kind == "Metaspace":
        replacement = pre.get("replacement", _PREFIX_CHAR)
        if replacement not in vocab:
            _refuse(f"it maps spaces to {replacement!r}, which is not in its vocabulary")
        scheme = pre.get("prepend_scheme", "always" if pre.get("add_prefix_space") else "never")
        if scheme == "first":
            prefix.first_piece = True
        elif scheme == "always":
            prefix.every_piece = True
        return False
    if kind in _SPLITTING_PRE_TOKENIZERS:
        return False
    _refuse(f"its pre-tokenizer {kind} is not one certify can bound")
    return False


# --------------------------------------------------------------------------- the unit list


@dataclass(frozen=True)
class UnitFile:
    """One file of the source: path (relative to the folder, or in the Hub repo)."""

    path: str
    kind: UnitKind
    size_bytes: int


@dataclass(frozen=True, eq=False)
class UnitList:
    """The ordered units of one source and their weights (int64 arrays, one row per unit).

    ``byte_start``/``byte_stop`` delimit what a unit reads: the whole file (text), its
    lines (jsonl) or the text column's chunk in the row group (parquet). ``documents`` is
    m_u (exact, or an upper bound for jsonl: lines), ``text_bytes`` an upper bound on the
    UTF-8 bytes of its texts (-1 when the metadata cannot bound it), ``weight`` w_u.
    ``footers`` keeps each parquet file's tail (footer) so drawn row groups are read
    without asking for it again.
    """

    source: dict[str, Any]
    revision: str
    rule: WeightRule
    files: tuple[UnitFile, ...]
    file_index: np.ndarray
    part: np.ndarray
    byte_start: np.ndarray
    byte_stop: np.ndarray
    documents: np.ndarray
    text_bytes: np.ndarray
    weight: np.ndarray
    units_sha256: str
    footers: dict[int, tuple[int, bytes]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.weight.size)

    @property
    def total_weight(self) -> int:
        """W = Σ w_u."""
        return int(self.weight.sum())

    @property
    def positive_units(self) -> int:
        """Units with a positive weight (the only ones that can be drawn)."""
        return int((self.weight > 0).sum())

    def describe(self, unit: int) -> str:
        """A unit's name for messages: ``path`` / ``path lines a-b`` / ``path row group k``."""
        entry = self.files[int(self.file_index[unit])]
        part = int(self.part[unit])
        if entry.kind == "jsonl":
            return (
                f"{entry.path} block {part} (bytes {self.byte_start[unit]}-{self.byte_stop[unit]})"
            )
        if entry.kind == "parquet":
            return f"{entry.path} row group {part}"
        return entry.path


def _fingerprint(
    source: dict[str, Any],
    revision: str,
    rule: WeightRule,
    files: list[UnitFile],
    rows: np.ndarray,
) -> str:
    """sha256 of the canonical unit list (docs/DATA.md "The unit list").

    A local source's path is left out (its files are named relative to it): the same
    files at another place, on the verifier's machine, are the same units.
    """
    header: dict[str, Any] = {
        "format": "certify-units",
        "format_version": UNITS_FORMAT_VERSION,
        "source": {key: value for key, value in source.items() if key != "path"},
        "revision": revision,
        "weight_rule": rule.to_json(),
        "files": [[entry.path, entry.kind, entry.size_bytes] for entry in files],
        "columns": [
            "file_index",
            "part",
            "byte_start",
            "byte_stop",
            "documents",
            "text_bytes",
            "weight",
        ],
    }
    digest = hashlib.sha256(rfc8785.dumps(header))
    digest.update(np.ascontiguousarray(rows, dtype="<i8").tobytes())
    return digest.hexdigest()


def _weights(rule: WeightRule, documents: np.ndarray, text_bytes: np.ndarray) -> np.ndarray:
    if rule.kind == "truncate":
        assert rule.truncation_tokens is not None
        return documents * np.int64(rule.truncation_tokens)
    return text_bytes + documents * np.int64(rule.extra_tokens_per_document)


def enumerate_units(
    source: str | Path,
    rule: WeightRule,
    *,
    text_column: str = "text",
    extensions: tuple[str, ...] | list[str] | None = None,
    exclude: tuple[str, ...] | list[str] = (),
    decode_errors: DecodeErrors = "strict",
    block_lines: int = DEFAULT_BLOCK_LINES,
    dataset_config: str | None = None,
    split: str = "train",
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> UnitList:
    """The units of ``source`` with weights under ``rule``, from metadata only.

    Local sources follow exact mode's file rules (``extensions``, ``exclude``: the same
    files, in the same order). A jsonl file costs one pass counting newlines (its bytes
    are read, not parsed); a parquet file costs its footer; a text file costs a ``stat``.
    A Hub dataset (``source`` an id) is resolved to a commit, its parquet files for
    ``split`` listed and their footers read by range requests. Raises
    :class:`WeightRuleError` when the bytes rule cannot bound a unit from metadata.
    """
    if block_lines < 1:
        raise InvalidInputError(f"must be at least 1, got {block_lines}", field="block_lines")
    if decode_errors not in ("strict", "replace", "skip"):
        raise InvalidInputError(
            f"must be strict, replace or skip, got {decode_errors!r}", field="--decode-errors"
        )
    text = str(source)
    local = Path(text)
    if local.exists():
        return _local_units(
            text,
            rule,
            text_column,
            _extensions(extensions),
            tuple(sorted(set(exclude))),
            decode_errors,
            block_lines,
        )
    if not _looks_like_hub_id(text):
        raise DataError(
            f"{text} does not exist",
            hint="check the path; a Hub dataset id looks like NAME or OWNER/NAME",
        )
    return _hub_units(text, rule, text_column, dataset_config, split, revision, token, endpoint)


_Row = tuple[int, int, int, int, int, int]  # part, start, stop, documents, text bytes, 0


def _local_units(
    source: str,
    rule: WeightRule,
    text_column: str,
    extensions: tuple[str, ...],
    exclude: tuple[str, ...],
    decode_errors: DecodeErrors,
    block_lines: int,
) -> UnitList:
    root = Path(source)
    if root.is_dir() and (root / "index.json").is_file():
        raise DataError(
            f"{root} holds token shards (index.json); sampled mode reads raw documents",
            hint="use --data-mode exact with pre-tokenized shards",
        )
    paths = _local_files(root, extensions, exclude)
    if not paths:
        raise DataError(
            f"{root} holds no files with the extensions {', '.join(extensions)}"
            + (f" outside {', '.join(exclude)}" if exclude else ""),
            hint="pass --extensions (and --exclude) to choose which files are documents",
        )
    files: list[UnitFile] = []
    rows: list[list[int]] = []
    footers: dict[int, tuple[int, bytes]] = {}
    for number, path in enumerate(paths):
        kind: UnitKind = _file_kind(path)  # type: ignore[assignment]
        try:
            size = path.stat().st_size
        except OSError as error:
            raise DataError(f"cannot read {path}: {error.strerror}") from None
        files.append(UnitFile(_relative_name(root, path), kind, size))
        if kind == "text":
            factor = _REPLACE_EXPANSION if decode_errors == "replace" else 1
            rows.append([number, 0, 0, size, 1, size * factor])
        elif kind == "jsonl":
            for part, start, stop, lines in _jsonl_blocks(path, block_lines, text_column):
                rows.append([number, part, start, stop, lines, stop - start])
        else:
            tail = _local_tail(path, size)
            footers[number] = (size, tail)
            for part, start, stop, count, value_bytes in parquet_row_groups(
                tail, text_column, str(path)
            ):
                rows.append([number, part, start, stop, count, value_bytes])
    description = {
        "kind": "folder" if root.is_dir() else "file",
        "path": source,
        "text_column": text_column,
        "extensions": list(extensions) if root.is_dir() else None,
        "exclude": list(exclude) if root.is_dir() else None,
        "decode_errors": decode_errors,
        "block_lines": block_lines,
    }
    return _finish(description, "", rule, files, rows, footers)


def _finish(
    description: dict[str, Any],
    revision: str,
    rule: WeightRule,
    files: list[UnitFile],
    rows: list[list[int]],
    footers: dict[int, tuple[int, bytes]],
) -> UnitList:
    table = np.array(rows, dtype=np.int64).reshape(-1, 6)
    documents, text_bytes = table[:, 4], table[:, 5]
    if rule.kind == "bytes":
        unknown = np.flatnonzero(text_bytes < 0)
        if unknown.size:
            entry = files[int(table[unknown[0], 0])]
            raise WeightRuleError(
                f"{entry.path} row group {int(table[unknown[0], 1])}: the parquet footer cannot "
                "bound the text's bytes (the column is dictionary- or prefix-encoded)",
                hint="pass --truncate-tokens C (weights C per document, from row counts only)",
            )
    weight = _weights(rule, documents, np.maximum(text_bytes, 0))
    full = np.column_stack([table, weight])
    if not revision:  # a local source: the list itself is its revision (metadata only)
        revision = "units:" + _fingerprint(description, "", rule, files, full)
    return UnitList(
        source=description,
        revision=revision,
        rule=rule,
        files=tuple(files),
        file_index=full[:, 0].copy(),
        part=full[:, 1].copy(),
        byte_start=full[:, 2].copy(),
        byte_stop=full[:, 3].copy(),
        documents=full[:, 4].copy(),
        text_bytes=full[:, 5].copy(),
        weight=full[:, 6].copy(),
        units_sha256=_fingerprint(description, revision, rule, files, full),
        footers=footers,
    )


def _jsonl_blocks(
    path: Path, block_lines: int, text_column: str
) -> list[tuple[int, int, int, int]]:
    """(block, byte start, byte stop, lines) of ``path``, cut every ``block_lines`` lines.

    One pass over the bytes counting newlines with numpy (I/O bound). A last line without
    a newline counts as a line. Also checks that the first non-blank line is a JSON object
    with ``text_column``, so a wrong column fails before any draw.
    """
    ends: list[int] = []  # byte offset just past every full block's last newline
    offset = 0
    lines_in_block = 0  # newlines seen in the block being cut
    last_byte = b"\n"
    try:
        with open(path, "rb") as stream:
            for raw_line in stream:
                if raw_line.strip():
                    _check_first_record(path, raw_line, text_column)
                    break
            stream.seek(0)
            while block := stream.read(_READ_BLOCK_BYTES):
                newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
                # the newline that closes the current block is its (block_lines - seen)-th
                index = block_lines - lines_in_block - 1
                while index < newlines.size:
                    ends.append(offset + int(newlines[index]) + 1)
                    index += block_lines
                lines_in_block = (lines_in_block + newlines.size) % block_lines
                offset += len(block)
                last_byte = block[-1:]
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    blocks: list[tuple[int, int, int, int]] = []
    start = 0
    for part, stop in enumerate(ends):
        blocks.append((part, start, stop, block_lines))
        start = stop
    if start < offset:  # a last, shorter block; a last line without newline counts too
        blocks.append((len(ends), start, offset, lines_in_block + (0 if last_byte == b"\n" else 1)))
    return blocks


def _check_first_record(path: Path, line: bytes, text_column: str) -> None:
    if not line.strip():
        return
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path} line 1 is not JSON: {error}") from None
    _text_of(record, text_column, f"{path} line 1")


def _local_tail(path: Path, size: int) -> bytes:
    try:
        with open(path, "rb") as stream:
            take = min(size, hub.PARQUET_TAIL_BYTES)
            stream.seek(size - take)
            tail = stream.read(take)
            if size < 12 or tail[-4:] != b"PAR1":
                raise DataError(f"{path} is not a parquet file (no PAR1 footer)")
            needed = int.from_bytes(tail[-8:-4], "little") + 8
            if needed > size - 4:
                raise DataError(f"{path}: the parquet footer length is invalid")
            if needed > len(tail):
                stream.seek(size - needed)
                tail = stream.read(needed)
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    return _trim_tail(tail)


def _trim_tail(tail: bytes) -> bytes:
    """Only the footer, its length and the magic (what a row group read needs)."""
    return tail[len(tail) - 8 - int.from_bytes(tail[-8:-4], "little") :]


def parse_footer(tail: bytes, where: str) -> Any:
    """pyarrow ``FileMetaData`` from a file's tail (footer + length + ``PAR1``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    footer_length = int.from_bytes(tail[-8:-4], "little")
    footer = tail[len(tail) - 8 - footer_length :]
    try:
        return pq.read_metadata(pa.BufferReader(b"PAR1" + footer))
    except Exception as error:  # pyarrow raises several types for bad footers
        raise DataError(f"cannot read the parquet footer of {where}: {error}") from None


def parquet_column_chunk(metadata: Any, row_group: int, column: int) -> tuple[int, int]:
    """[start, stop) file bytes of one column chunk (dictionary page included)."""
    chunk = metadata.row_group(row_group).column(column)
    start = chunk.data_page_offset
    if chunk.has_dictionary_page and chunk.dictionary_page_offset is not None:
        start = min(start, chunk.dictionary_page_offset)
    return int(start), int(start + chunk.total_compressed_size)


def parquet_text_column(metadata: Any, text_column: str, where: str) -> int:
    """Index of the top-level string column ``text_column`` in a parquet schema."""
    schema = metadata.schema
    names = [schema.column(i).path for i in range(len(schema))]
    if text_column not in names:
        top = sorted({name.split(".")[0] for name in names})
        raise DataError(
            f"{where} has no column {text_column!r} (columns: {', '.join(top) or 'none'})",
            hint="pass --text-column with one of them",
        )
    index = names.index(text_column)
    if schema.column(index).physical_type != "BYTE_ARRAY":
        raise DataError(
            f"{where}: column {text_column!r} holds {schema.column(index).physical_type}, "
            "expected text"
        )
    return index


def parquet_row_groups(
    tail: bytes, text_column: str, where: str
) -> list[tuple[int, int, int, int, int]]:
    """(row group, chunk start, chunk stop, rows, value bytes or -1) from a footer.

    The value bytes bound the UTF-8 bytes of the texts only when the column chunk is
    stored without a dictionary and without prefix sharing (PLAIN or
    DELTA_LENGTH_BYTE_ARRAY pages): then its uncompressed size holds every value whole.
    Otherwise -1 (unknown): the bytes rule cannot be used for that file.
    """
    metadata = parse_footer(tail, where)
    column = parquet_text_column(metadata, text_column, where)
    out = []
    for group in range(metadata.num_row_groups):
        chunk = metadata.row_group(group).column(column)
        start, stop = parquet_column_chunk(metadata, group, column)
        encodings = set(chunk.encodings)
        value_bytes = (
            int(chunk.total_uncompressed_size)
            if encodings <= _BYTE_PRESERVING_ENCODINGS and not chunk.has_dictionary_page
            else -1
        )
        out.append((group, start, stop, int(metadata.row_group(group).num_rows), value_bytes))
    return out


def _hub_units(
    dataset_id: str,
    rule: WeightRule,
    text_column: str,
    dataset_config: str | None,
    split: str,
    revision: str | None,
    token: str | None,
    endpoint: str | None,
) -> UnitList:
    commit = hub.resolve_dataset_revision(dataset_id, revision, token=token, endpoint=endpoint)
    listed = hub.dataset_parquet_files(
        dataset_id, commit, dataset_config, split, token=token, endpoint=endpoint
    )

    def footer(item: tuple[str, int]) -> tuple[int, bytes]:
        size, tail = hub.read_parquet_footer(
            dataset_id, commit, item[0], size=item[1], token=token, endpoint=endpoint
        )
        return size, _trim_tail(tail)

    # footers are small and independent: a few requests in flight hide the latency
    with ThreadPoolExecutor(max_workers=8) as pool:
        tails = list(pool.map(footer, listed))
    files: list[UnitFile] = []
    rows: list[list[int]] = []
    footers: dict[int, tuple[int, bytes]] = {}
    for number, ((path, size), (read_size, tail)) in enumerate(zip(listed, tails, strict=True)):
        if read_size != size:
            raise DatasetChangedError(
                f"dataset {dataset_id}@{commit[:12]}: {path} is {read_size} bytes, listed as {size}"
            )
        files.append(UnitFile(path, "parquet", size))
        footers[number] = (size, tail)
        where = f"dataset {dataset_id} file {path}"
        for part, start, stop, count, value_bytes in parquet_row_groups(tail, text_column, where):
            rows.append([number, part, start, stop, count, value_bytes])
    description = {
        "kind": "hub",
        "id": dataset_id,
        "config": dataset_config,
        "split": split,
        "text_column": text_column,
    }
    if not rows:
        raise DataError(f"dataset {dataset_id} split {split!r} holds no row groups")
    return _finish(description, commit, rule, files, rows, footers)


# --------------------------------------------------------------------------- verify side


def enumerate_recorded(
    record: Any, *, token: str | None = None, endpoint: str | None = None
) -> UnitList:
    """Enumerate the units a :class:`~certify.records.SampledDataRecord` names (metadata only)."""
    options = dict(record.source_options)
    rule = WeightRule(
        record.weight_rule, record.truncation_tokens, int(record.extra_tokens_per_document)
    )
    if options.get("kind") == "hub":
        return enumerate_units(
            record.source,
            rule,
            text_column=options["text_column"],
            dataset_config=options.get("config"),
            split=options.get("split") or "train",
            revision=record.revision,
            token=token,
            endpoint=endpoint,
        )
    return enumerate_units(
        record.source,
        rule,
        text_column=options["text_column"],
        extensions=options.get("extensions"),
        exclude=options.get("exclude") or (),
        decode_errors=options.get("decode_errors", "strict"),
        block_lines=int(options.get("block_lines", DEFAULT_BLOCK_LINES)),
    )


def check_unit_list(
    record: Any, *, token: str | None = None, endpoint: str | None = None
) -> list[str]:
    """What differs between the recorded units and the dataset now (empty: nothing).

    Re-enumerates from metadata at the recorded revision (a Hub dataset is pinned to the
    recorded commit) and compares the revision, the number of units, W and
    ``units_sha256``. Raises :class:`~certify.errors.HubError` when the Hub cannot be
    reached, :class:`DataError` when the dataset is gone.
    """
    return compare_units(enumerate_recorded(record, token=token, endpoint=endpoint), record)


def require_same_units(
    record: Any, *, token: str | None = None, endpoint: str | None = None
) -> UnitList:
    """The recorded units, or :class:`DatasetChangedError` naming the first difference."""
    units = enumerate_recorded(record, token=token, endpoint=endpoint)
    problems = compare_units(units, record)
    if problems:
        raise DatasetChangedError(
            f"the units of {record.source} changed since they were recorded: {problems[0]}",
            hint="certify the dataset as it is now, or restore the recorded revision",
        )
    return units


def compare_units(units: UnitList, record: Any) -> list[str]:
    """Differences between ``units`` and what ``record`` names (empty: none)."""
    problems = []
    if units.revision != record.revision:
        problems.append(f"revision is {units.revision}, recorded {record.revision}")
    if len(units) != record.units:
        problems.append(f"{len(units)} units, recorded {record.units}")
    if units.total_weight != record.total_weight:
        problems.append(f"total weight {units.total_weight}, recorded {record.total_weight}")
    if units.units_sha256 != record.units_sha256:
        problems.append(f"units_sha256 {units.units_sha256}, recorded {record.units_sha256}")
    return problems
