"""Tests of certify.data: exact token counts, every source type, shards, cache, sampler,
the token index (golden file, schema), refusals, and the ``certify tokenize`` command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from certify import data
from certify.errors import CertifyError, DataError, InvalidInputError

FIXTURES = Path(__file__).parent / "fixtures" / "data"
REPO = Path(__file__).parent.parent


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def tokenizer(toy_model: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(toy_model), local_files_only=True)


@pytest.fixture(scope="module")
def fixture_tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(FIXTURES / "tokenizer"), local_files_only=True)


def naive_stream(tokenizer: Any, documents: list[str] | tuple[str, ...]) -> list[int]:
    """The rule of DESIGN.md, one document at a time: tokens without specials, then EOS."""
    stream: list[int] = []
    for text in documents:
        stream.extend(tokenizer.encode(text, add_special_tokens=False))
        stream.append(tokenizer.eos_token_id)
    return stream


def write_jsonl(path: Path, documents: list[str] | tuple[str, ...], column: str = "text") -> Path:
    with open(path, "w", encoding="utf-8") as stream:
        for number, text in enumerate(documents):
            stream.write(json.dumps({"id": number, column: text}) + "\n")
    return path


def write_parquet(path: Path, documents: list[str] | tuple[str, ...], column: str = "text") -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": list(range(len(documents))), column: list(documents)})
    pq.write_table(table, path, row_group_size=7)
    return path


def mtimes(directory: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in sorted(directory.iterdir())}


# --------------------------------------------------------------------------- tokenizer hash


def test_tokenizer_hash_survives_save_and_reload(tokenizer: Any, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path / "saved")
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path / "saved"), local_files_only=True)
    assert data.tokenizer_sha256(reloaded) == data.tokenizer_sha256(tokenizer)
    assert len(data.tokenizer_sha256(tokenizer)) == 64


def test_tokenizer_hash_differs_between_tokenizers(tokenizer: Any, fixture_tokenizer: Any) -> None:
    assert data.tokenizer_sha256(tokenizer) != data.tokenizer_sha256(fixture_tokenizer)


def test_load_tokenizer_from_folder(toy_model: Path, tokenizer: Any) -> None:
    loaded = data.load_tokenizer(toy_model)
    assert data.tokenizer_sha256(loaded) == data.tokenizer_sha256(tokenizer)


def test_artifact_tokenizer_has_the_same_hash(
    toy_model: Path, tokenizer: Any, tmp_path: Path
) -> None:
    """Shards made with the original model match the tokenizer decoded from its .certz."""
    from certify import container
    from certify.models import resolve_model
    from certify.records import QuantizationSettings

    artifact = tmp_path / "model.certz"
    container.compress_model(resolve_model(str(toy_model)), QuantizationSettings(), artifact)
    from_artifact = data.load_tokenizer(artifact)
    assert data.tokenizer_sha256(from_artifact) == data.tokenizer_sha256(tokenizer)
    _, decoded_tokenizer = container.load_model_and_tokenizer(artifact)
    assert data.tokenizer_sha256(decoded_tokenizer) == data.tokenizer_sha256(tokenizer)


# --------------------------------------------------------------------------- exact n, shards


def test_exact_token_count_matches_naive_loop(
    tokenizer: Any, sample_texts: tuple[str, ...], tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "docs.jsonl", sample_texts)
    shards = data.tokenize_source(source, tokenizer, tmp_path / "out", batch_size=7)
    expected = naive_stream(tokenizer, sample_texts)
    assert shards.n_tokens == len(expected)
    assert shards.record.n_tokens == len(expected)
    assert shards.record.documents == len(sample_texts)
    assert np.array_equal(shards.read(0, shards.n_tokens), expected)
    # one EOS per document
    eos_count = int((shards.read(0, shards.n_tokens) == tokenizer.eos_token_id).sum())
    assert eos_count >= len(sample_texts)


def test_read_crosses_shard_boundaries(
    tokenizer: Any, sample_texts: tuple[str, ...], tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "docs.jsonl", sample_texts)
    shards = data.tokenize_source(source, tokenizer, tmp_path / "out", max_shard_tokens=100)
    expected = np.array(naive_stream(tokenizer, sample_texts))
    assert len(shards.index["shards"]) == -(-len(expected) // 100)
    assert sorted(path.name for path in (tmp_path / "out").glob("tokens-*.bin")) == [
        shard["file"] for shard in shards.index["shards"]
    ]
    for start, stop in [(0, 100), (95, 105), (99, 301), (150, 150), (0, len(expected))]:
        window = shards.read(start, stop)
        assert window.dtype == np.int64
        assert np.array_equal(window, expected[start:stop])
    with pytest.raises(InvalidInputError):
        shards.read(0, len(expected) + 1)
    # the shard files are raw little-endian uint16
    raw = np.fromfile(tmp_path / "out" / "tokens-00001.bin", dtype="<u2")
    assert np.array_equal(raw, expected[100:200])


def test_wide_vocabulary_uses_uint32(tmp_path: Path) -> None:
    class WideTokenizer:
        """A tokenizer with 70,000 ids: every character becomes 65,536 + its code point % 4,000."""

        eos_token_id = 69_999
        bos_token_id = None

        def __len__(self) -> int:
            return 70_000

        def get_vocab(self) -> dict[str, int]:
            return {f"t{i}": i for i in range(70_000)}

        def __call__(self, batch: list[str], **_: Any) -> dict[str, list[list[int]]]:
            return {"input_ids": [[65_536 + ord(c) % 4000 for c in text] for text in batch]}

    (tmp_path / "a.txt").write_text("wide ids", encoding="utf-8")
    shards = data.tokenize_source(tmp_path / "a.txt", WideTokenizer(), tmp_path / "out")
    assert shards.index["dtype"] == "uint32"
    expected = [65_536 + ord(c) % 4000 for c in "wide ids"] + [69_999]
    assert shards.read(0, shards.n_tokens).tolist() == expected
    assert (tmp_path / "out" / "tokens-00000.bin").stat().st_size == 4 * len(expected)


# --------------------------------------------------------------------------- sources


def test_txt_file_is_one_document(tokenizer: Any, tmp_path: Path) -> None:
    text = "line one\nline two\n\nparagraph three"
    (tmp_path / "notes.txt").write_text(text, encoding="utf-8")
    shards = data.tokenize_source(tmp_path / "notes.txt", tokenizer, tmp_path / "out")
    assert shards.record.documents == 1
    assert shards.read(0, shards.n_tokens).tolist() == naive_stream(tokenizer, [text])
    assert shards.index["source"]["kind"] == "file"
    assert shards.record.revision == "sha256:" + shards.index["source"]["fingerprint"]


def test_parquet_rows_are_documents(
    tokenizer: Any, sample_texts: tuple[str, ...], tmp_path: Path
) -> None:
    source = write_parquet(tmp_path / "docs.parquet", sample_texts, column="content")
    shards = data.tokenize_source(
        source, tokenizer, tmp_path / "out", text_column="content", batch_size=5
    )
    assert shards.record.documents == len(sample_texts)
    assert shards.read(0, shards.n_tokens).tolist() == naive_stream(tokenizer, sample_texts)


def test_folder_is_walked_in_sorted_order(
    tokenizer: Any, sample_texts: tuple[str, ...], tmp_path: Path
) -> None:
    root = tmp_path / "corpus"
    (root / "b" / "deep").mkdir(parents=True)
    (root / "a.txt").write_text(sample_texts[0], encoding="utf-8")
    (root / "b" / "deep" / "m.py").write_text(sample_texts[1], encoding="utf-8")
    write_jsonl(root / "b" / "c.jsonl", sample_texts[2:5])
    write_parquet(root / "z.parquet", sample_texts[5:8])
    (root / "ignored.bin").write_bytes(b"\x00\xff")
    (root / "README.md").write_text(sample_texts[8], encoding="utf-8")
    shards = data.tokenize_source(root, tokenizer, tmp_path / "out")
    # sorted relative paths: README.md, a.txt, b/c.jsonl, b/deep/m.py, z.parquet
    order = [sample_texts[8], sample_texts[0], *sample_texts[2:5], sample_texts[1]]
    order += list(sample_texts[5:8])
    assert shards.read(0, shards.n_tokens).tolist() == naive_stream(tokenizer, order)
    assert shards.index["source"]["kind"] == "folder"
    assert shards.index["source"]["files"] == 5
    only_py = data.tokenize_source(root, tokenizer, tmp_path / "py", extensions=["py"])
    assert only_py.read(0, only_py.n_tokens).tolist() == naive_stream(tokenizer, [sample_texts[1]])
    assert only_py.record.revision != shards.record.revision
    no_b = data.tokenize_source(root, tokenizer, tmp_path / "no-b", exclude=["b/*", "*.md"])
    expected = naive_stream(tokenizer, [sample_texts[0], *sample_texts[5:8]])
    assert no_b.read(0, no_b.n_tokens).tolist() == expected
    assert no_b.index["source"]["exclude"] == ["*.md", "b/*"]


def test_fingerprint_follows_contents(tokenizer: Any, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one", encoding="utf-8")
    first = data.tokenize_source(tmp_path / "a.txt", tokenizer, tmp_path / "out1")
    (tmp_path / "a.txt").write_text("two", encoding="utf-8")
    second = data.tokenize_source(tmp_path / "a.txt", tokenizer, tmp_path / "out1")
    assert not second.reused
    assert first.record.revision != second.record.revision
    assert second.read(0, second.n_tokens).tolist() == naive_stream(tokenizer, ["two"])


def test_decode_errors(tokenizer: Any, tmp_path: Path) -> None:
    root = tmp_path / "src"
    root.mkdir()
    (root / "good.txt").write_text("fine text", encoding="utf-8")
    (root / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.txt is not UTF-8.*--decode-errors"):
        data.tokenize_source(root, tokenizer, tmp_path / "strict")
    skipped = data.tokenize_source(root, tokenizer, tmp_path / "skip", decode_errors="skip")
    assert skipped.record.documents == 1
    replaced = data.tokenize_source(root, tokenizer, tmp_path / "rep", decode_errors="replace")
    assert replaced.record.documents == 2
    assert replaced.read(0, replaced.n_tokens).tolist() == naive_stream(
        tokenizer, ["fine text", "caf\ufffd"]
    )


def test_hub_dataset_through_datasets(
    tokenizer: Any, sample_texts: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Hub path, offline: ``open_hub_dataset`` returns a local ``datasets`` dataset."""
    import datasets

    from certify import hub

    parquet = write_parquet(tmp_path / "train.parquet", sample_texts)
    calls: list[dict[str, Any]] = []

    def fake_open(
        dataset_id: str,
        config: str | None,
        split: str,
        revision: str | None,
        *,
        streaming: bool,
        token: str | None = None,
        endpoint: str | None = None,
    ) -> tuple[Any, str]:
        calls.append({"id": dataset_id, "config": config, "split": split, "streaming": streaming})
        loaded = datasets.load_dataset(
            "parquet", data_files={split: str(parquet)}, split=split, streaming=streaming
        )
        return loaded, "c" * 40

    monkeypatch.setattr(hub, "open_hub_dataset", fake_open)
    full = data.tokenize_source("someone/corpus", tokenizer, tmp_path / "full", split="train")
    assert calls[-1] == {
        "id": "someone/corpus",
        "config": None,
        "split": "train",
        "streaming": False,
    }
    assert full.read(0, full.n_tokens).tolist() == naive_stream(tokenizer, sample_texts)
    assert full.record.source == "someone/corpus"
    assert full.record.revision == "c" * 40
    assert full.index["source"]["kind"] == "hub"

    prefix = data.tokenize_source(
        "someone/corpus", tokenizer, tmp_path / "prefix", max_documents=6, dataset_config="x"
    )
    assert calls[-1]["streaming"] is True  # a prefix is streamed, not downloaded whole
    assert prefix.read(0, prefix.n_tokens).tolist() == naive_stream(tokenizer, sample_texts[:6])
    assert prefix.index["source"]["config"] == "x"

    with pytest.raises(DataError, match=r"no column 'body' \(columns: id, text\)"):
        data.tokenize_source("someone/corpus", tokenizer, tmp_path / "bad", text_column="body")


def test_hub_dataset_from_local_hub(
    hub_server: Any,
    tokenizer: Any,
    sample_texts: tuple[str, ...],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real Hub path (hub.open_hub_dataset + datasets) against the local stand-in Hub."""
    import io

    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the stand-in has no Xet
    buffer = io.BytesIO()
    pq.write_table(pa.table({"text": list(sample_texts)}), buffer)
    hub_server.create_repo("alice/corpus", repo_type="dataset")
    commit = hub_server.commit_files(
        "alice/corpus",
        {"data/train-00000-of-00001.parquet": buffer.getvalue()},
        repo_type="dataset",
    )
    common = {"endpoint": hub_server.endpoint, "token": hub_server.token}
    prefix = data.tokenize_source(
        "alice/corpus", tokenizer, tmp_path / "prefix", max_documents=4, **common
    )
    assert prefix.read(0, prefix.n_tokens).tolist() == naive_stream(tokenizer, sample_texts[:4])
    assert prefix.record.revision == commit
    assert prefix.index["source"]["split"] == "train"
    full = data.tokenize_source("alice/corpus", tokenizer, tmp_path / "full", **common)
    assert full.read(0, full.n_tokens).tolist() == naive_stream(tokenizer, sample_texts)
    assert full.record.documents == len(sample_texts)
    with pytest.raises(DataError, match=r"no column 'body' \(columns: text\)"):
        data.tokenize_source(
            "alice/corpus", tokenizer, tmp_path / "bad", text_column="body", **common
        )
    with pytest.raises(DataError, match="nope") as missing_split:
        data.tokenize_source("alice/corpus", tokenizer, tmp_path / "x", split="nope", **common)
    assert "\n" not in str(missing_split.value)


def test_open_hub_dataset_offline_fails_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    from certify.hub import open_hub_dataset

    # open_hub_dataset sets the endpoint on datasets.config; undo that after the test
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", datasets.config.HF_ENDPOINT)
    monkeypatch.setattr(datasets.config, "HUB_DATASETS_URL", datasets.config.HUB_DATASETS_URL)

    with pytest.raises(CertifyError) as caught:
        open_hub_dataset(
            "nobody/no-such-dataset",
            None,
            "train",
            "a" * 40,
            streaming=True,
            endpoint="http://127.0.0.1:9",
        )
    assert "\n" not in str(caught.value)


def test_pretokenized_source_is_checked_and_copied(
    tokenizer: Any, fixture_tokenizer: Any, sample_texts: tuple[str, ...], tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "docs.jsonl", sample_texts)
    first = data.tokenize_source(source, tokenizer, tmp_path / "a", max_shard_tokens=500)
    copy = data.tokenize_source(tmp_path / "a", tokenizer, tmp_path / "b")
    assert copy.record == first.record
    assert np.array_equal(copy.read(0, copy.n_tokens), first.read(0, first.n_tokens))
    with pytest.raises(DataError, match="tokenizer sha256"):
        data.tokenize_source(tmp_path / "a", fixture_tokenizer, tmp_path / "c")


# --------------------------------------------------------------------------- prefix + cache


def test_max_documents_takes_a_deterministic_prefix(
    tokenizer: Any, sample_texts: tuple[str, ...], tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "docs.jsonl", sample_texts)
    one = data.tokenize_source(source, tokenizer, tmp_path / "one", max_documents=9)
    two = data.tokenize_source(source, tokenizer, tmp_path / "two", max_documents=9, batch_size=2)
    assert one.record.documents == 9
    assert one.record.max_documents == 9
    assert one.index["max_documents"] == 9
    assert one.record.shards_sha256 == two.record.shards_sha256
    assert one.read(0, one.n_tokens).tolist() == naive_stream(tokenizer, sample_texts[:9])
    more = data.tokenize_source(source, tokenizer, tmp_path / "more", max_documents=1000)
    assert more.record.documents == len(sample_texts)
    with pytest.raises(InvalidInputError):
        data.tokenize_source(source, tokenizer, tmp_path / "zero", max_documents=0)


def test_cache_reuses_shards_without_rewriting(
    tokenizer: Any, sample_texts: tuple[str, ...], tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "docs.jsonl", sample_texts)
    out = tmp_path / "out"
    first = data.tokenize_source(source, tokenizer, out, max_shard_tokens=300)
    assert not first.reused
    before = mtimes(out)
    calls = 0

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return tokenizer(*args, **kwargs)

    class Counting:
        backend_tokenizer = tokenizer.backend_tokenizer
        eos_token_id = tokenizer.eos_token_id
        bos_token_id = tokenizer.bos_token_id

        def __len__(self) -> int:
            return len(tokenizer)

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return counting(*args, **kwargs)

    second = data.tokenize_source(source, Counting(), out, max_shard_tokens=300)
    assert second.reused
    assert calls == 0
    assert mtimes(out) == before
    assert second.record == first.record
    # another prefix is another dataset: made again, stale shards removed
    third = data.tokenize_source(source, Counting(), out, max_documents=3, max_shard_tokens=300)
    assert not third.reused
    assert calls > 0
    assert sorted(path.name for path in out.glob("tokens-*.bin")) == [
        shard["file"] for shard in third.index["shards"]
    ]
    assert not list(out.glob("*.tmp-*"))


# --------------------------------------------------------------------------- sampler


def test_chunks_cover_the_stream() -> None:
    assert data.chunk_count(1000, 64) == 16
    assert data.chunk_span(0, 1000, 64) == (0, 64)
    assert data.chunk_span(15, 1000, 64) == (960, 1000)
    assert data.chunk_count(1024, 64) == 16
    covered = np.concatenate(
        [np.arange(*data.chunk_span(int(j), 1000, 64)) for j in data.all_chunks(1000, 64)]
    )
    assert np.array_equal(covered, np.arange(1000))  # every token exactly once, in order
    with pytest.raises(InvalidInputError):
        data.chunk_span(16, 1000, 64)
    with pytest.raises(DataError, match="fewer than one chunk"):
        data.chunk_count(10, 64)
    with pytest.raises(InvalidInputError):
        data.chunk_count(10, 0)


def test_sampler_is_reproducible() -> None:
    first = data.sample_chunks(10_000, 128, 500, seed=7)
    assert first.dtype == np.int64
    assert np.array_equal(first, data.sample_chunks(10_000, 128, 500, seed=7))
    assert not np.array_equal(first, data.sample_chunks(10_000, 128, 500, seed=8))
    assert first.min() >= 0 and first.max() < data.chunk_count(10_000, 128)
    with pytest.raises(InvalidInputError):
        data.sample_chunks(10_000, 128, 0, seed=0)
    with pytest.raises(InvalidInputError):
        data.sample_chunks(10_000, 128, 5, seed=-1)


def test_sampler_is_proportional_to_chunk_length() -> None:
    """Chi-square goodness of fit: 1000 tokens, chunks of 64 (the last holds 40)."""
    n_tokens, chunk_tokens, samples = 1000, 64, 200_000
    drawn = data.sample_chunks(n_tokens, chunk_tokens, samples, seed=12345)
    counts = np.bincount(drawn, minlength=16)
    lengths = np.array([np.subtract(*data.chunk_span(j, 1000, 64)[::-1]) for j in range(16)])
    expected = samples * lengths / n_tokens
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    assert chi_square < 37.70  # 0.999 quantile of chi-square with 15 degrees of freedom
    # the short last chunk is drawn less often: 40/1000 of the time, not 1/16
    assert abs(counts[-1] / samples - 0.04) < 0.003
    # a wrong sampler (uniform over chunks) fails the same test
    uniform = np.bincount(np.random.default_rng(0).integers(0, 16, samples), minlength=16)
    assert float(((uniform - expected) ** 2 / expected).sum()) > 37.70


# --------------------------------------------------------------------------- index format


def test_golden_index(
    fixture_tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index for tests/fixtures/data/tiny.jsonl matches the checked-in file (format 2)."""
    golden = json.loads((FIXTURES / "tiny.index.v2.json").read_text(encoding="utf-8"))
    golden_tokens = json.loads((FIXTURES / "tiny.tokens.json").read_text(encoding="utf-8"))
    monkeypatch.chdir(FIXTURES)
    shards = data.tokenize_source(
        "tiny.jsonl", fixture_tokenizer, tmp_path / "out", max_shard_tokens=16
    )
    made = json.loads((tmp_path / "out" / "index.json").read_text(encoding="utf-8"))
    assert set(made["tool"]) >= {"certify", "tokenizers", "transformers", "numpy"}
    made.pop("tool")
    golden.pop("tool")  # library versions are recorded, not compared
    assert made == golden
    assert shards.read(0, shards.n_tokens).tolist() == golden_tokens
    documents = [
        json.loads(line)["text"] for line in (FIXTURES / "tiny.jsonl").open(encoding="utf-8")
    ]
    assert golden_tokens == naive_stream(fixture_tokenizer, documents)
    lengths = [
        len(fixture_tokenizer(text, add_special_tokens=False)["input_ids"]) + 1
        for text in documents
    ]
    assert shards.document_ends().tolist() == np.cumsum(lengths).tolist()
    data.validate_index(json.loads((FIXTURES / "tiny.index.json").read_text(encoding="utf-8")))


def test_format_1_shards_still_open_but_have_no_documents(
    fixture_tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old shard folders (the format-1 golden index) open; version-2 chunks need format 2."""
    monkeypatch.chdir(FIXTURES)
    data.tokenize_source("tiny.jsonl", fixture_tokenizer, tmp_path / "out", max_shard_tokens=16)
    (tmp_path / "out" / "documents.bin").unlink()
    shutil.copyfile(FIXTURES / "tiny.index.json", tmp_path / "out" / "index.json")
    shards = data.open_shards(tmp_path / "out")
    assert shards.index["format_version"] == 1 and shards.record.documents_sha256 is None
    with pytest.raises(DataError, match="format 1"):
        shards.document_ends()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda index: index.pop("n_tokens"), "n_tokens"),
        (lambda index: index.update(dtype="int8"), "dtype"),
        (lambda index: index.update(format_version=3), "format_version"),
        (lambda index: index["shards"][0].update(sha256="xyz"), r"shards\[0\]\.sha256"),
        (lambda index: index.update(extra=1), "extra"),
    ],
)
def test_invalid_index_is_refused(
    fixture_tokenizer: Any, tmp_path: Path, change: Any, message: str
) -> None:
    shards = data.tokenize_source(FIXTURES / "tiny.jsonl", fixture_tokenizer, tmp_path / "out")
    index = dict(shards.index)
    index["shards"] = [dict(shard) for shard in index["shards"]]
    change(index)
    (tmp_path / "out" / "index.json").write_text(json.dumps(index), encoding="utf-8")
    with pytest.raises(DataError, match=f"not a valid token index.*{message}"):
        data.open_shards(tmp_path / "out")


def test_damaged_shards_are_refused(
    tokenizer: Any, sample_texts: tuple[str, ...], tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "docs.jsonl", sample_texts)
    out = tmp_path / "out"
    shards = data.tokenize_source(source, tokenizer, out, max_shard_tokens=500)
    shard_path = out / shards.index["shards"][1]["file"]
    original = shard_path.read_bytes()
    shard_path.write_bytes(original[:-2])
    with pytest.raises(DataError, match=r"has \d+ bytes, expected"):
        data.open_shards(out)
    flipped = bytearray(original)
    flipped[0] ^= 1
    shard_path.write_bytes(bytes(flipped))
    with pytest.raises(DataError, match="does not match its sha256"):
        data.open_shards(out)
    data.open_shards(out, verify_contents=False)  # sizes still agree
    shard_path.write_bytes(original)
    index = json.loads((out / "index.json").read_text(encoding="utf-8"))
    index["shards_sha256"] = "0" * 64
    (out / "index.json").write_text(json.dumps(index), encoding="utf-8")
    with pytest.raises(DataError, match="shards_sha256 does not match"):
        data.open_shards(out)
    (out / "index.json").unlink()
    with pytest.raises(DataError, match=r"holds no index\.json"):
        data.open_shards(out)


def test_tokenizer_mismatch_is_refused_with_both_hashes(
    tokenizer: Any, fixture_tokenizer: Any, tmp_path: Path
) -> None:
    shards = data.tokenize_source(FIXTURES / "tiny.jsonl", fixture_tokenizer, tmp_path / "out")
    data.check_tokenizer(shards, fixture_tokenizer)
    with pytest.raises(DataError) as caught:
        data.check_tokenizer(shards, tokenizer)
    text = str(caught.value)
    assert data.tokenizer_sha256(tokenizer) in text
    assert data.tokenizer_sha256(fixture_tokenizer) in text
    assert "\n" not in text


# --------------------------------------------------------------------------- bad input


def test_bad_sources(tokenizer: Any, tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="holds no documents"):
        data.tokenize_source(tmp_path / "empty.jsonl", tokenizer, tmp_path / "o1")
    write_jsonl(tmp_path / "blank.jsonl", ["", ""])
    with pytest.raises(DataError, match="all are empty"):
        data.tokenize_source(tmp_path / "blank.jsonl", tokenizer, tmp_path / "o2")
    write_jsonl(tmp_path / "other.jsonl", ["x"], column="body")
    with pytest.raises(DataError, match=r"no column 'text' \(columns: body, id\).*--text-column"):
        data.tokenize_source(tmp_path / "other.jsonl", tokenizer, tmp_path / "o3")
    write_parquet(tmp_path / "other.parquet", ["x"], column="body")
    with pytest.raises(DataError, match=r"no column 'text' \(columns: id, body\)"):
        data.tokenize_source(tmp_path / "other.parquet", tokenizer, tmp_path / "o4")
    (tmp_path / "broken.jsonl").write_text('{"text": "a"}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2 is not JSON"):
        data.tokenize_source(tmp_path / "broken.jsonl", tokenizer, tmp_path / "o5")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"cannot read .* as parquet"):
        data.tokenize_source(tmp_path / "bad.parquet", tokenizer, tmp_path / "o6")
    with pytest.raises(DataError, match="does not exist"):
        data.tokenize_source(tmp_path / "missing.txt", tokenizer, tmp_path / "o7")
    with pytest.raises(DataError, match="does not exist"):
        data.tokenize_source("no/such/folder", tokenizer, tmp_path / "o7")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="holds no files"):
        data.tokenize_source(tmp_path / "nothing", tokenizer, tmp_path / "o8")
    # nothing half-written was left behind
    for out in tmp_path.glob("o*"):
        assert not list(out.glob("*")), out


# --------------------------------------------------------------------------- CLI


def test_tokenize_command(
    toy_model: Path,
    sample_texts: tuple[str, ...],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from certify.cli import run_cli

    source = write_jsonl(tmp_path / "docs.jsonl", sample_texts)
    argv = ["tokenize", str(source), "--tokenizer", str(toy_model), "-o", str(tmp_path / "out")]
    assert run_cli([*argv, "--max-documents", "5", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["documents"] == 5
    assert first["max_documents"] == 5
    assert first["reused"] is False
    assert first["n_tokens"] == data.open_shards(tmp_path / "out").n_tokens
    assert run_cli([*argv, "--max-documents", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reused"] is True
    assert run_cli([*argv, "--text-column", "body"]) == 6  # DataError
    assert "no column 'body'" in capsys.readouterr().err
    assert run_cli(["tokenize", "--help"]) == 0
    assert "--max-documents" in capsys.readouterr().out


def test_environment_is_not_read_by_data_module() -> None:
    for path in (REPO / "certify" / "data").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "os.environ" not in text and "getenv" not in text, path
