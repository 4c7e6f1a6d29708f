"""Tests of certify.data.units: sampled mode's units, weights, weight rules and fingerprints."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from certify import data
from certify.data import units as U
from certify.errors import (
    DataError,
    DatasetChangedError,
    HubError,
    InvalidInputError,
    WeightRuleError,
    exit_code_for,
)

FIXTURES = Path(__file__).parent / "fixtures" / "data"


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(FIXTURES / "tokenizer"), local_files_only=True)


def write_parquet(path: Path, texts: list[str], *, rows: int = 7, dictionary: bool = False) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": list(range(len(texts))), "text": texts})
    pq.write_table(table, path, row_group_size=rows, use_dictionary=dictionary)
    return path


def write_jsonl(path: Path, texts: list[str], *, final_newline: bool = True) -> Path:
    lines = [json.dumps({"id": i, "text": text}) for i, text in enumerate(texts)]
    path.write_text("\n".join(lines) + ("\n" if final_newline else ""), encoding="utf-8")
    return path


def corpus(root: Path, sample_texts: tuple[str, ...]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "a.txt").write_text("plain text, one document\n", encoding="utf-8")
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "b.md").write_text("# heading\n\nbody é ü 😀\n", encoding="utf-8")
    write_jsonl(root / "c.jsonl", list(sample_texts[:23]), final_newline=False)
    write_parquet(root / "d.parquet", list(sample_texts[23:]))
    (root / "skip.log").write_text("not a document", encoding="utf-8")
    return root


# --------------------------------------------------------------------------- units per source


def test_folder_units_follow_exact_mode_files(
    tokenizer: Any, sample_texts: tuple[str, ...], tmp_path: Path
) -> None:
    root = corpus(tmp_path / "corpus", sample_texts)
    rule = U.weight_rule_for(tokenizer)
    units = U.enumerate_units(root, rule, block_lines=10)
    assert [entry.path for entry in units.files] == ["a.txt", "c.jsonl", "d.parquet", "sub/b.md"]
    names = [units.describe(i) for i in range(len(units))]
    assert names[0] == "a.txt" and names[-1] == "sub/b.md"
    # jsonl: 23 lines in blocks of 10 -> 10, 10, 3 (the last line has no newline)
    jsonl = [i for i in range(len(units)) if units.files[units.file_index[i]].kind == "jsonl"]
    assert units.documents[jsonl].tolist() == [10, 10, 3]
    raw = (root / "c.jsonl").read_bytes()
    assert units.byte_start[jsonl[0]] == 0 and units.byte_stop[jsonl[-1]] == len(raw)
    assert raw[units.byte_stop[jsonl[0]] - 1 : units.byte_stop[jsonl[0]]] == b"\n"
    assert raw[: units.byte_stop[jsonl[0]]].count(b"\n") == 10
    # parquet: 17 rows in row groups of 7 -> 7, 7, 3
    parquet = [i for i in range(len(units)) if units.files[units.file_index[i]].kind == "parquet"]
    assert units.documents[parquet].tolist() == [7, 7, 3]
    assert units.part[parquet].tolist() == [0, 1, 2]
    # text files: one document, their size in bytes
    assert units.text_bytes[0] == (root / "a.txt").stat().st_size
    # the bytes rule: w = bytes + e·m with e = 1 (EOS) for a byte-level BPE
    assert (units.weight == units.text_bytes + units.documents).all()
    assert units.total_weight == int(units.weight.sum())
    # exclude and extensions as in exact mode
    fewer = U.enumerate_units(root, rule, exclude=["sub/*"], extensions=["txt", "jsonl"])
    assert [entry.path for entry in fewer.files] == ["a.txt", "c.jsonl"]
    assert fewer.units_sha256 != units.units_sha256


def test_truncation_rule_weights(tokenizer: Any, sample_texts: tuple[str, ...], tmp_path: Path):
    root = corpus(tmp_path / "corpus", sample_texts)
    units = U.enumerate_units(root, U.weight_rule_for(tokenizer, 50), block_lines=10)
    assert units.rule == U.WeightRule("truncate", 50, 0)
    assert (units.weight == 50 * units.documents).all()
    with pytest.raises(InvalidInputError, match="--truncate-tokens"):
        U.weight_rule_for(tokenizer, 0)


def test_jsonl_blocks_count_every_line(tokenizer: Any, tmp_path: Path) -> None:
    rule = U.weight_rule_for(tokenizer, 10)
    for count, final_newline in [(1, True), (1, False), (20, True), (21, False), (40, True)]:
        path = write_jsonl(
            tmp_path / f"x{count}{final_newline}.jsonl", ["t"] * count, final_newline=final_newline
        )
        units = U.enumerate_units(path, rule, block_lines=20)
        assert int(units.documents.sum()) == count
        assert units.byte_stop[-1] == path.stat().st_size
        assert (units.byte_start[1:] == units.byte_stop[:-1]).all()


def test_missing_text_column_fails_before_any_draw(
    tokenizer: Any, sample_texts: tuple[str, ...], tmp_path: Path
) -> None:
    rule = U.weight_rule_for(tokenizer, 64)
    write_parquet(tmp_path / "p.parquet", list(sample_texts))
    with pytest.raises(DataError, match=r"no column 'body' \(columns: id, text\)") as caught:
        U.enumerate_units(tmp_path / "p.parquet", rule, text_column="body")
    assert exit_code_for(caught.value) == 6
    write_jsonl(tmp_path / "j.jsonl", list(sample_texts))
    with pytest.raises(DataError, match="no column 'body'"):
        U.enumerate_units(tmp_path / "j.jsonl", rule, text_column="body")


def test_dictionary_encoded_parquet_cannot_use_the_bytes_rule(
    tokenizer: Any, sample_texts: tuple[str, ...], tmp_path: Path
) -> None:
    path = write_parquet(tmp_path / "dict.parquet", list(sample_texts), dictionary=True)
    with pytest.raises(WeightRuleError, match=r"row group 0.*--truncate-tokens") as caught:
        U.enumerate_units(path, U.weight_rule_for(tokenizer))
    assert exit_code_for(caught.value) == 13
    assert "\n" not in str(caught.value)
    units = U.enumerate_units(path, U.weight_rule_for(tokenizer, 64))
    assert int(units.documents.sum()) == len(sample_texts)


def test_plain_parquet_bytes_bound_the_texts(sample_texts: tuple[str, ...], tmp_path: Path) -> None:
    """The uncompressed size of a PLAIN chunk is at least the UTF-8 bytes of its values."""
    texts = [text * (1 + i % 4) + " é😀" * i for i, text in enumerate(sample_texts)]
    path = write_parquet(tmp_path / "p.parquet", texts, rows=5)
    rows = U.parquet_row_groups(path.read_bytes()[-65536:], "text", "p")
    for group, _, _, count, value_bytes in rows:
        chunk = texts[group * 5 : group * 5 + count]
        assert value_bytes >= sum(len(text.encode("utf-8")) for text in chunk)


def test_replace_decoding_triples_text_file_bytes(tokenizer: Any, tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"ok \xff\xfe\xfd end")
    rule = U.weight_rule_for(tokenizer)
    strict = U.enumerate_units(tmp_path / "bad.txt", rule)
    replaced = U.enumerate_units(tmp_path / "bad.txt", rule, decode_errors="replace")
    assert replaced.text_bytes[0] == 3 * strict.text_bytes[0]
    decoded = (tmp_path / "bad.txt").read_bytes().decode("utf-8", errors="replace")
    assert len(decoded.encode("utf-8")) <= replaced.text_bytes[0]


def test_shard_folders_are_not_units(tokenizer: Any, tmp_path: Path) -> None:
    shards = data.tokenize_source(FIXTURES / "tiny.jsonl", tokenizer, tmp_path / "shards")
    with pytest.raises(DataError, match="token shards"):
        U.enumerate_units(shards.directory, U.weight_rule_for(tokenizer, 10))


# --------------------------------------------------------------------------- tokenizers


def _tokenizer(
    model: Any, *, normalizer: Any = None, pre_tokenizer: Any = None, added: tuple[str, ...] = ()
) -> Any:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(model)
    if normalizer is not None:
        backend.normalizer = normalizer
    if pre_tokenizer is not None:
        backend.pre_tokenizer = pre_tokenizer
    backend.add_special_tokens(["</s>", *added])
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>")


def _sentencepiece_vocab() -> dict[str, int]:
    vocab = {"<unk>": 0, "▁": 1}
    for char in "abcdefghijklmnopqrstuvwxyz":
        vocab[char] = len(vocab)
    for value in range(256):
        vocab[f"<0x{value:02X}>"] = len(vocab)
    return vocab


def test_which_tokenizers_qualify_for_the_bytes_rule(tokenizer: Any) -> None:
    from tokenizers import models, normalizers, pre_tokenizers

    # byte-level BPE (GPT-2, Llama-3, Qwen2, SmolLM2): EOS only
    assert U.bytes_rule_extra_tokens(tokenizer) == 1
    vocab = _sentencepiece_vocab()

    def bpe() -> Any:
        return models.BPE(vocab=dict(vocab), merges=[], unk_token="<unk>", byte_fallback=True)

    # Llama-2 / Mistral (legacy tokenizer.json): prepend ▁, spaces to ▁: EOS + prefix
    llama2 = _tokenizer(
        bpe(),
        normalizer=normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]),
    )
    assert U.bytes_rule_extra_tokens(llama2) == 2
    # newer conversions: Metaspace, prefix on the first piece only
    metaspace = _tokenizer(
        bpe(), pre_tokenizer=pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    )
    assert U.bytes_rule_extra_tokens(metaspace) == 2
    # Gemma-like: spaces to ▁, no prefix
    gemma = _tokenizer(bpe(), normalizer=normalizers.Replace(" ", "▁"))
    assert U.bytes_rule_extra_tokens(gemma) == 1
    # byte-level with a prefix space
    prefixed = _tokenizer(
        models.BPE(vocab={"a": 0}, merges=[]),
        pre_tokenizer=pre_tokenizers.ByteLevel(add_prefix_space=True),
    )
    assert U.bytes_rule_extra_tokens(prefixed) == 2


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda m, n, p: _tokenizer(m.WordPiece(vocab={"[UNK]": 0, "a": 1})), "not BPE"),
        (
            lambda m, n, p: _tokenizer(m.BPE(vocab={"a": 0}, merges=[]), normalizer=n.NFKC()),
            "normalizer NFKC",
        ),
        (
            lambda m, n, p: _tokenizer(
                m.BPE(vocab={"a": 0}, merges=[]), normalizer=n.Replace(" ", "▁")
            ),
            "not in its vocabulary",
        ),
        (
            lambda m, n, p: _tokenizer(
                m.BPE(vocab={"a": 0, "▁": 1}, merges=[]),
                normalizer=n.Prepend("▁"),
                added=("#",),
            ),
            "shorter than 2 characters",
        ),
        (
            lambda m, n, p: _tokenizer(
                m.BPE(vocab={"a": 0}, merges=[]), pre_tokenizer=p.CharDelimiterSplit("x")
            ),
            "pre-tokenizer CharDelimiterSplit",
        ),
    ],
)
def test_other_tokenizers_are_refused_in_one_line(build: Any, reason: str) -> None:
    from tokenizers import models, normalizers, pre_tokenizers

    with pytest.raises(WeightRuleError, match=reason) as caught:
        U.weight_rule_for(build(models, normalizers, pre_tokenizers))
    message = str(caught.value)
    assert "--truncate-tokens" in message and "\n" not in message
    assert exit_code_for(caught.value) == 13


def test_bytes_rule_holds_on_hostile_text(tokenizer: Any) -> None:
    """Every document's tokens + EOS fit in its UTF-8 bytes + e (the bound is what we use)."""
    texts = [
        "",
        " ",
        "\n\n\n",
        "é" * 50,
        "😀🤖" * 20,
        "中文字符测试" * 5,
        "a" * 1000,
        "<|endoftext|> inside <s> text",
        "\u0301\u0300 combining",
        "\x00\x01 control",
    ]
    extra = U.bytes_rule_extra_tokens(tokenizer)
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(ids) + 1 <= len(text.encode("utf-8")) + extra, text


# --------------------------------------------------------------------------- fingerprints, verify


def test_fingerprint_and_recorded_units(
    tokenizer: Any, sample_texts: tuple[str, ...], tmp_path: Path
) -> None:
    root = corpus(tmp_path / "corpus", sample_texts)
    rule = U.weight_rule_for(tokenizer)
    first = U.enumerate_units(root, rule)
    again = U.enumerate_units(root, rule)
    assert first.units_sha256 == again.units_sha256 and first.revision == again.revision
    assert first.revision.startswith("units:")
    record = _record_of(first)
    assert U.check_unit_list(record) == []
    assert U.require_same_units(record).units_sha256 == first.units_sha256
    # another rule is another list
    assert U.enumerate_units(root, U.weight_rule_for(tokenizer, 9)).units_sha256 != (
        first.units_sha256
    )
    # a file that grows changes the list
    with open(root / "a.txt", "a", encoding="utf-8") as stream:
        stream.write("more")
    problems = U.check_unit_list(record)
    assert any("total weight" in problem for problem in problems)
    with pytest.raises(DatasetChangedError, match="changed since they were recorded") as caught:
        U.require_same_units(record)
    assert exit_code_for(caught.value) == 14


def _record_of(units: U.UnitList) -> Any:
    from certify.records import SampledDataRecord

    return SampledDataRecord(
        source=units.source.get("id") or units.source["path"],
        revision=units.revision,
        source_options=dict(units.source),
        tokenizer_sha256="0" * 64,
        vocab_size=1,
        eos_token_id=0,
        weight_rule=units.rule.kind,
        truncation_tokens=units.rule.truncation_tokens,
        extra_tokens_per_document=units.rule.extra_tokens_per_document,
        total_weight=units.total_weight,
        units=len(units),
        units_sha256=units.units_sha256,
        accepted=1,
        drawn=1,
        chunks_per_unit=1,
        chunk_tokens=1,
        context_tokens=0,
        seed=0,
        tokens_tokenized=0,
        documents_tokenized=0,
        bytes_read=0,
        draws_sha256="0" * 64,
    )


# --------------------------------------------------------------------------- the Hub


def publish_parquet(hub_server: Any, files: dict[str, bytes]) -> str:
    hub_server.create_repo("alice/corpus", repo_type="dataset")
    return str(hub_server.commit_files("alice/corpus", files, repo_type="dataset"))


def parquet_bytes(texts: list[str], rows: int) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(
        pa.table({"text": texts}),
        buffer,
        row_group_size=rows,
        use_dictionary=False,
        compression="none",
    )
    return buffer.getvalue()


def hub_ready(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # for worker processes


def test_hub_units_from_footers_only(
    hub_server: Any,
    tokenizer: Any,
    sample_texts: tuple[str, ...],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub_ready(monkeypatch, tmp_path)
    texts = [text * 60 for text in sample_texts]  # files of a few hundred KiB
    files = {
        "data/train-00000-of-00002.parquet": parquet_bytes(texts[:25], 4),
        "data/train-00001-of-00002.parquet": parquet_bytes(texts[25:], 4),
        "data/test-00000-of-00001.parquet": parquet_bytes(texts[:3], 4),
    }
    commit = publish_parquet(hub_server, files)
    hub_server.served_ranges.clear()
    common = {"endpoint": hub_server.endpoint, "token": hub_server.token}
    units = U.enumerate_units("alice/corpus", U.weight_rule_for(tokenizer), **common)
    assert units.revision == commit
    assert [entry.path for entry in units.files] == sorted(
        name for name in files if "/train-" in name
    )
    assert units.documents.tolist() == [4] * 6 + [1] + [4] * 3 + [3]
    # the same row groups and weights as the same files read locally
    local = tmp_path / "local"
    local.mkdir()
    for name, content in files.items():
        if "/train-" in name:
            (local / Path(name).name).write_bytes(content)
    local_units = U.enumerate_units(local, U.weight_rule_for(tokenizer))
    assert (local_units.weight == units.weight).all()
    assert (local_units.byte_start == units.byte_start).all()
    # only the files' tails were transferred: footers, never the row groups
    for repo, name, start, stop in hub_server.served_ranges:
        assert repo == "alice/corpus" and "/train-" in name
        assert len(files[name]) - start <= U.hub.PARQUET_TAIL_BYTES and stop == len(files[name])
    served = sum(stop - start for _, _, start, stop in hub_server.served_ranges)
    assert served < sum(len(content) for name, content in files.items() if "/train-" in name) / 4
    # the record's revision pins the commit: a later commit leaves the check green
    record = _record_of(units)
    hub_server.commit_files(
        "alice/corpus",
        {"data/train-00002-of-00002.parquet": files["data/test-00000-of-00001.parquet"]},
        repo_type="dataset",
    )
    assert U.check_unit_list(record, **common) == []
    # a wrong column, a missing split, an unreachable Hub: one line each
    with pytest.raises(DataError, match="no column 'body'"):
        U.enumerate_units(
            "alice/corpus", U.weight_rule_for(tokenizer), text_column="body", **common
        )
    with pytest.raises(DataError, match="no split 'nope'"):
        U.enumerate_units("alice/corpus", U.weight_rule_for(tokenizer), split="nope", **common)
    with pytest.raises(HubError) as caught:
        U.enumerate_units(
            "alice/corpus",
            U.weight_rule_for(tokenizer),
            endpoint="http://127.0.0.1:9",
            token=hub_server.token,
        )
    assert exit_code_for(caught.value) == 11 and "\n" not in str(caught.value)


def test_distinct_exit_codes() -> None:
    errors = [
        DataError("x"),
        WeightRuleError("x"),
        DatasetChangedError("x"),
        InvalidInputError("x"),
        HubError("x"),
    ]
    assert len({exit_code_for(error) for error in errors}) == len(errors)


def test_unit_arrays_are_consistent(tokenizer: Any, sample_texts: tuple[str, ...], tmp_path: Path):
    root = corpus(tmp_path / "corpus", sample_texts)
    units = U.enumerate_units(root, U.weight_rule_for(tokenizer, 7), block_lines=4)
    columns = [units.file_index, units.part, units.byte_start, units.byte_stop, units.documents]
    assert all(column.dtype == np.int64 and column.size == len(units) for column in columns)
    assert (units.byte_stop >= units.byte_start).all()
    shifted = dataclasses.replace(units, weight=units.weight + 1)
    assert shifted.total_weight == units.total_weight + len(units)
