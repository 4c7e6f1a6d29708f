"""Tests of certify.data.sampled: the draws, their unbiasedness, n_lo, resume, the Hub path."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from certify import data
from certify.data import sampled as S
from certify.data import units as U
from certify.errors import (
    DataError,
    DatasetChangedError,
    InvalidInputError,
    WeightRuleError,
    exit_code_for,
)

FIXTURES = Path(__file__).parent / "fixtures" / "data"
REPO = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(FIXTURES / "tokenizer"), local_files_only=True)


def n_lower(total_weight: int, accepted: int, drawn: int, delta_n: float) -> float:
    """n_lo = W · BetaQuantile(δ_n; G, D − G + 1) (bound.py computes it for certificates)."""
    from scipy.special import betaincinv

    return float(total_weight * betaincinv(accepted, drawn - accepted + 1, delta_n))


def mixed_corpus(root: Path, units: int = 24) -> Path:
    """Text files of two kinds: dense (digits, ~1 token per byte) and sparse (words)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for number in range(units):
        if number % 2:
            text = " ".join(str(int(x)) for x in rng.integers(0, 10**6, size=40 + number * 3))
        else:
            text = " ".join(["the model reads token after token"] * (5 + number))
        (root / f"doc-{number:03d}.txt").write_text(text + "\n", encoding="utf-8")
    return root


def token_losses(tokenizer: Any) -> np.ndarray:
    """A fake per-token loss: 1 for tokens holding a digit, else 0 (EOS 0)."""
    vocabulary = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return np.array([float(any(c.isdigit() for c in token)) for token in vocabulary])


def observations(windows: Any, losses: np.ndarray) -> np.ndarray:
    """Each accepted unit's observation: the mean over its windows of the chunk means."""
    chunk_means = []
    for j in range(windows.count):
        start = windows.offsets[j] + windows.context_tokens[j]
        chunk_means.append(losses[windows.tokens[start : windows.offsets[j + 1]]].mean())
    means = np.array(chunk_means)
    groups = windows.observation
    return np.array([means[groups == g].mean() for g in range(int(groups.max()) + 1)])


# --------------------------------------------------------------------------- the draw sequence


def test_draws_are_proportional_to_weight_and_acceptance_uniform() -> None:
    weights = np.array([1, 0, 5, 10, 84], dtype=np.int64)
    units, thresholds = S.draw_sequence(weights, seed=3, count=200_000)
    frequencies = np.bincount(units, minlength=5) / units.size
    assert frequencies[1] == 0
    assert np.allclose(frequencies, weights / weights.sum(), atol=0.003)
    assert (thresholds < weights[units]).all() and (thresholds >= 0).all()
    # P(threshold < n_u) = n_u / w_u exactly: check for unit 4 with n = 21
    picked = thresholds[units == 4]
    assert abs((picked < 21).mean() - 21 / 84) < 0.01
    again = S.draw_sequence(weights, seed=3, count=5000)
    assert (again[0] == units[:5000]).all() and (again[1] == thresholds[:5000]).all()
    assert not (S.draw_sequence(weights, seed=4, count=5000)[0] == again[0]).all()


def test_windows_follow_documents_and_chunks() -> None:
    documents = [np.arange(10), np.arange(100, 103), np.arange(200, 217)]
    # positions: doc 0 token 9 (chunk 2 of S=4), doc 1 token 0, doc 2 token 16 (chunk 4)
    tokens, offsets, context, ids = S.windows_of(documents, np.array([9, 10, 29]), 4, 3)
    windows = [tokens[offsets[j] : offsets[j + 1]].tolist() for j in range(3)]
    assert windows[0] == [5, 6, 7, 8, 9] and context[0] == 3  # chunk [8,10) + 3 context
    assert windows[1] == [100, 101, 102] and context[1] == 0  # no context across documents
    assert windows[2] == [213, 214, 215, 216] and context[2] == 3
    assert ids.tolist() == [[0, 2], [1, 0], [2, 4]]


# --------------------------------------------------------------------------- local sources


def test_sampled_stream_is_exact_modes_stream(
    tokenizer: Any, sample_texts: tuple[str, ...], tmp_path: Path
) -> None:
    """Σ n_u over all units = exact mode's n, and every window is a slice of its document."""
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.txt").write_text("one text file é 😀\n", encoding="utf-8")
    with open(root / "b.jsonl", "w", encoding="utf-8") as stream:
        for number, text in enumerate(sample_texts[:25]):
            stream.write(json.dumps({"text": text, "n": number}) + "\n")
            if number == 3:
                stream.write("\n")  # a blank line: no document
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"text": list(sample_texts[25:])}),
        root / "c.parquet",
        row_group_size=4,
        use_dictionary=False,
    )
    units = U.enumerate_units(root, U.weight_rule_for(tokenizer), block_lines=6)
    every = S.sample_units(
        units,
        tokenizer,
        S.SampledSettings(
            accepted_units=len(units), chunks_per_unit=3, chunk_tokens=16, context_tokens=5, seed=11
        ),
        work_dir=tmp_path / "work",
    )
    journal = json.loads((tmp_path / "work" / S.JOURNAL_NAME).read_text())
    counted = {item["unit"]: item["tokens"] for item in journal["units"]}
    for seed in range(100, 400):  # tokenize the units no draw reached yet, with more draws
        if len(counted) == len(units):
            break
        more = S.sample_units(
            units,
            tokenizer,
            S.SampledSettings(
                accepted_units=len(units), chunks_per_unit=1, chunk_tokens=16, seed=seed
            ),
            work_dir=tmp_path / "work",
        )
        counted.update(zip(more.draw_units.tolist(), more.draw_tokens.tolist(), strict=True))
    assert len(counted) == len(units)
    exact = data.tokenize_source(root, tokenizer, tmp_path / "exact")
    assert sum(counted.values()) == exact.n_tokens
    assert all(counted[unit] <= units.weight[unit] for unit in counted)
    # every window is its document's tokens [chunk start - context, chunk stop)
    texts = ["one text file é 😀\n", *sample_texts[:25], *sample_texts[25:]]
    journal = json.loads((tmp_path / "work" / S.JOURNAL_NAME).read_text())
    documents = {item["unit"]: item["documents"] for item in journal["units"]}
    assert documents[1] == 5  # the blank line is a line of block 0, not a document
    starts = dict(enumerate(np.cumsum([0] + [documents[u] for u in range(len(units))]).tolist()))
    windows = every.windows
    for j in range(windows.count):
        unit, document, chunk = windows.chunk_ids[j].tolist()
        text = texts[starts[unit] + document]
        stream = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        begin = chunk * 16
        expected = stream[max(0, begin - 5) : begin + 16]
        assert windows.tokens[windows.offsets[j] : windows.offsets[j + 1]].tolist() == expected
        assert windows.context_tokens[j] == begin - max(0, begin - 5)
    assert every.record.accepted == len(units) and every.record.drawn >= len(units)
    assert windows.count == 3 * len(units)


def test_truncation_keeps_the_first_c_tokens(tokenizer: Any, tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    long_text = "word " * 200
    (root / "long.txt").write_text(long_text, encoding="utf-8")
    (root / "short.txt").write_text("hi", encoding="utf-8")
    units = U.enumerate_units(root, U.weight_rule_for(tokenizer, 10))
    for seed in range(100):  # a seed whose draws reach both files
        result = S.sample_units(
            units,
            tokenizer,
            S.SampledSettings(accepted_units=2, chunks_per_unit=2, chunk_tokens=4, seed=seed),
        )
        tokens = dict(zip(result.draw_units.tolist(), result.draw_tokens.tolist(), strict=True))
        if len(tokens) == 2:
            break
    assert tokens[0] == 10  # long: its first 10 tokens, EOS cut off
    short = len(tokenizer("hi", add_special_tokens=False)["input_ids"]) + 1
    assert tokens[1] == short  # short: whole, with its EOS
    for j in range(result.windows.count):
        unit = result.windows.chunk_ids[j, 0]
        window = result.windows.tokens[result.windows.offsets[j] : result.windows.offsets[j + 1]]
        if unit == 0:
            full = tokenizer(long_text, add_special_tokens=False)["input_ids"][:10]
            chunk = int(result.windows.chunk_ids[j, 2])
            assert window.tolist() == full[chunk * 4 : chunk * 4 + 4]


# --------------------------------------------------------------------------- statistics


def test_unit_observations_are_unbiased_and_n_lo_holds(tokenizer: Any, tmp_path: Path) -> None:
    """Mean of unit observations = R̂ (within its margin); n_lo ≤ n at rate ≥ 1 − δ_n.

    Units of two kinds (dense digits with loss 1, sparse words with loss 0) make the wrong
    variants visibly biased: accepting every drawn unit weighs units by bytes, not tokens,
    and W·G/D (the point estimate) is below n about half the time.
    """
    root = mixed_corpus(tmp_path / "corpus")
    losses = token_losses(tokenizer)
    exact = data.tokenize_source(root, tokenizer, tmp_path / "exact")
    stream = exact.read(0, exact.n_tokens)
    empirical_risk = float(losses[stream].mean())
    units = U.enumerate_units(root, U.weight_rule_for(tokenizer))
    work = tmp_path / "work"
    values: list[float] = []
    naive: list[float] = []
    failures_lo = failures_point = 0
    runs, delta_n, goal = 150, 0.1, 8
    unit_tokens: dict[int, int] = {}
    unit_losses: dict[int, float] = {}
    for seed in range(runs):
        result = S.sample_units(
            units,
            tokenizer,
            S.SampledSettings(accepted_units=goal, chunks_per_unit=2, chunk_tokens=8, seed=seed),
            work_dir=work,
        )
        values.extend(observations(result.windows, losses).tolist())
        record = result.record
        failures_lo += n_lower(record.total_weight, record.accepted, record.drawn, delta_n) > (
            exact.n_tokens
        )
        failures_point += record.total_weight * record.accepted / record.drawn > exact.n_tokens
        unit_tokens.update(
            zip(result.draw_units.tolist(), result.draw_tokens.tolist(), strict=True)
        )
        for unit in result.draw_units.tolist():
            if unit not in unit_losses:
                path = root / units.files[units.file_index[unit]].path
                ids = tokenizer(path.read_text(), add_special_tokens=False)["input_ids"]
                unit_losses[unit] = float(losses[ids].sum()) / (len(ids) + 1)
            naive.append(unit_losses[unit])  # wrong: every draw accepted
    mean, spread = float(np.mean(values)), float(np.std(values, ddof=1))
    margin = 4 * spread / np.sqrt(len(values))
    assert abs(mean - empirical_risk) <= margin, (mean, empirical_risk, margin)
    assert abs(float(np.mean(naive)) - empirical_risk) > margin  # the wrong variant is caught
    assert failures_lo / runs <= delta_n + 3 * np.sqrt(delta_n * (1 - delta_n) / runs)
    assert failures_point / runs > 0.25  # a point estimate is no bound
    assert sum(unit_tokens.values()) <= units.total_weight


# --------------------------------------------------------------------------- refusals


def test_weight_violation_names_the_unit(tokenizer: Any, tmp_path: Path) -> None:
    root = mixed_corpus(tmp_path / "corpus", units=4)
    units = U.enumerate_units(root, U.weight_rule_for(tokenizer))
    too_light = dataclasses.replace(units, weight=np.maximum(units.weight // 8, 1))
    with pytest.raises(
        WeightRuleError, match=r"doc-00\d\.txt holds \d+ tokens, more than"
    ) as caught:
        S.sample_units(too_light, tokenizer, S.SampledSettings(accepted_units=2, seed=1))
    assert exit_code_for(caught.value) == 13 and "\n" not in str(caught.value)


def test_g_beyond_the_units_and_hopeless_rates_are_refused(tokenizer: Any, tmp_path: Path):
    root = mixed_corpus(tmp_path / "corpus", units=4)
    units = U.enumerate_units(root, U.weight_rule_for(tokenizer, 100_000))
    with pytest.raises(InvalidInputError, match="--accepted-units") as caught:
        S.sample_units(units, tokenizer, S.SampledSettings(accepted_units=5))
    assert exit_code_for(caught.value) == 3
    with pytest.raises(DataError, match="draws accepted only"):
        S.sample_units(units, tokenizer, S.SampledSettings(accepted_units=4, max_draws=50))


# --------------------------------------------------------------------------- parallel, resume


def test_parallel_run_equals_serial_run(tokenizer: Any, tmp_path: Path) -> None:
    root = mixed_corpus(tmp_path / "corpus", units=30)
    units = U.enumerate_units(root, U.weight_rule_for(tokenizer))
    settings = S.SampledSettings(
        accepted_units=12, chunks_per_unit=3, chunk_tokens=8, context_tokens=4, seed=5
    )
    serial = S.sample_units(units, tokenizer, settings)
    seen: list[tuple[int, int]] = []
    parallel = S.sample_units(
        units,
        tokenizer,
        dataclasses.replace(settings, workers=2, lookahead=6),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert parallel.record == serial.record
    for name in ("tokens", "offsets", "context_tokens", "observation", "chunk_ids"):
        assert np.array_equal(getattr(parallel.windows, name), getattr(serial.windows, name))
    assert seen[-1] == (12, 12) and len(seen) == serial.record.drawn


_INTERRUPTED_RUN = """
import sys, time
from transformers import AutoTokenizer
from certify.data import sampled as S, units as U

def main():
    root, work = sys.argv[1], sys.argv[2]
    tokenizer = AutoTokenizer.from_pretrained({tokenizer!r}, local_files_only=True)
    units = U.enumerate_units(root, U.weight_rule_for(tokenizer))
    settings = S.SampledSettings(accepted_units=20, chunks_per_unit=2, chunk_tokens=8, seed=9)
    S.sample_units(units, tokenizer, settings, work_dir=work,
                   progress=lambda done, total: time.sleep(0.2))
    print("finished")

if __name__ == "__main__":
    main()
"""


def test_resume_after_sigint(tokenizer: Any, tmp_path: Path) -> None:
    root = mixed_corpus(tmp_path / "corpus", units=40)
    script = tmp_path / "run.py"
    script.write_text(_INTERRUPTED_RUN.format(tokenizer=str(FIXTURES / "tokenizer")))
    work = tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, str(script), str(root), str(work)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    journal = work / S.JOURNAL_NAME
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if journal.exists() and len(json.loads(journal.read_text())["units"]) >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode != 0 and b"finished" not in out, err.decode()[-500:]
    assert not list(work.rglob("*.tmp-*"))  # nothing half-written
    done = json.loads(journal.read_text())
    S.validate_journal(done)
    finished_units = {item["unit"] for item in done["units"]}
    assert finished_units
    units = U.enumerate_units(root, U.weight_rule_for(tokenizer))
    settings = S.SampledSettings(accepted_units=20, chunks_per_unit=2, chunk_tokens=8, seed=9)
    resumed = S.sample_units(units, tokenizer, settings, work_dir=work)
    fresh = S.sample_units(units, tokenizer, settings)
    assert resumed.record == fresh.record
    assert np.array_equal(resumed.windows.tokens, fresh.windows.tokens)
    assert resumed.units_from_journal == len(finished_units)
    assert resumed.units_tokenized_now < fresh.units_tokenized_now  # finished units not redone


def test_a_damaged_journal_is_ignored(tokenizer: Any, tmp_path: Path) -> None:
    root = mixed_corpus(tmp_path / "corpus", units=6)
    units = U.enumerate_units(root, U.weight_rule_for(tokenizer))
    settings = S.SampledSettings(accepted_units=3, chunks_per_unit=2, chunk_tokens=8, seed=1)
    first = S.sample_units(units, tokenizer, settings, work_dir=tmp_path / "work")
    (tmp_path / "work" / S.JOURNAL_NAME).write_text('{"format": "something else"}')
    again = S.sample_units(units, tokenizer, settings, work_dir=tmp_path / "work")
    assert again.record == first.record and again.units_from_journal == 0
    # a damaged windows file is recomputed, not trusted
    for path in (tmp_path / "work" / S.WINDOWS_DIR).iterdir():
        path.write_bytes(b"garbage")
    third = S.sample_units(units, tokenizer, settings, work_dir=tmp_path / "work")
    assert third.record == first.record and third.windows_from_journal == 0
    assert np.array_equal(third.windows.tokens, first.windows.tokens)


def test_golden_journal(tokenizer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal of tests/fixtures/data/tiny.jsonl matches the checked-in file."""
    monkeypatch.chdir(FIXTURES)  # the source path is recorded as given
    units = U.enumerate_units("tiny.jsonl", U.weight_rule_for(tokenizer), block_lines=2)
    settings = S.SampledSettings(accepted_units=2, chunks_per_unit=2, chunk_tokens=4, seed=7)
    S.sample_units(units, tokenizer, settings, work_dir=tmp_path / "work")
    written = json.loads((tmp_path / "work" / S.JOURNAL_NAME).read_text())
    golden = json.loads((FIXTURES / "sampled-journal.json").read_text())
    S.validate_journal(golden)
    assert written == golden
    broken = {**golden, "format_version": 2}
    with pytest.raises(DataError, match="format_version"):
        S.validate_journal(broken)


# --------------------------------------------------------------------------- verify side


def test_redraw_reproduces_the_windows(tokenizer: Any, tmp_path: Path) -> None:
    root = mixed_corpus(tmp_path / "corpus", units=10)
    units = U.enumerate_units(root, U.weight_rule_for(tokenizer))
    settings = S.SampledSettings(accepted_units=4, chunks_per_unit=2, chunk_tokens=8, seed=3)
    first = S.sample_units(units, tokenizer, settings)
    again = S.redraw(first.record, tokenizer)
    assert again.record == first.record
    assert np.array_equal(again.windows.tokens, first.windows.tokens)
    # a drawn file edited in place (same size): the unit list still matches, the bytes do not
    drawn = units.files[units.file_index[int(first.draw_units[0])]].path
    content = (root / drawn).read_bytes()
    (root / drawn).write_bytes(content[:-2][::-1] + content[-2:])
    with pytest.raises(DatasetChangedError, match="draws_sha256"):
        S.redraw(first.record, tokenizer)
    (root / drawn).write_bytes(content + b"x")
    with pytest.raises(DatasetChangedError, match="changed since they were recorded"):
        S.redraw(first.record, tokenizer)


# --------------------------------------------------------------------------- the Hub


def test_hub_reads_only_the_drawn_row_groups(
    hub_server: Any,
    tokenizer: Any,
    sample_texts: tuple[str, ...],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the worker processes read the Hub too
    files = {}
    local = tmp_path / "local"
    local.mkdir()
    for number in range(2):
        buffer = io.BytesIO()
        texts = [text * 40 for text in sample_texts[number * 20 : number * 20 + 20]]
        pq.write_table(
            pa.table({"text": texts}),
            buffer,
            row_group_size=2,
            use_dictionary=False,
            compression="none",
        )
        name = f"data/train-{number:05d}-of-00002.parquet"
        files[name] = buffer.getvalue()
        (local / Path(name).name).write_bytes(buffer.getvalue())
    hub_server.create_repo("alice/corpus", repo_type="dataset")
    hub_server.commit_files("alice/corpus", files, repo_type="dataset")
    common = {"endpoint": hub_server.endpoint, "token": hub_server.token}
    units = U.enumerate_units("alice/corpus", U.weight_rule_for(tokenizer), **common)
    assert len(units) == 20
    hub_server.served_ranges.clear()
    settings = S.SampledSettings(
        accepted_units=3, chunks_per_unit=2, chunk_tokens=16, context_tokens=8, seed=4, workers=1
    )
    result = S.sample_units(units, tokenizer, settings, **common)
    drawn = set(result.draw_units.tolist())

    def chunk(unit: int) -> tuple[str, int, int]:
        entry = units.files[units.file_index[unit]]
        return entry.path, int(units.byte_start[unit]), int(units.byte_stop[unit])

    # the look-ahead (2 draws per worker) may read the next draws' units as well
    reachable, _ = S.draw_sequence(units.weight, 4, result.record.drawn + 2)
    served = [(name, start, stop) for _, name, start, stop in hub_server.served_ranges]
    assert {chunk(unit) for unit in drawn} <= set(served)
    assert set(served) <= {chunk(unit) for unit in reachable.tolist()}
    # (a unit first read by a rejected draw is read again when a later draw accepts it)
    assert len(set(reachable.tolist())) < len(units)
    transferred = sum(stop - start for _, start, stop in set(served))
    assert transferred < sum(len(content) for content in files.values()) / 2
    assert result.record.bytes_read == sum(chunk(unit)[2] - chunk(unit)[1] for unit in drawn)
    # the same draws and windows as the same files read locally
    local_units = U.enumerate_units(local, U.weight_rule_for(tokenizer))
    local_result = S.sample_units(local_units, tokenizer, dataclasses.replace(settings, workers=0))
    assert np.array_equal(local_result.windows.tokens, result.windows.tokens)
    assert local_result.record.drawn == result.record.drawn
    assert result.record.revision == units.revision and len(result.record.revision) == 40


def test_sample_source_is_units_then_draws(
    tokenizer: Any, sample_texts: tuple[str, ...], tmp_path: Path
) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text(
        "".join(json.dumps({"body": text}) + "\n" for text in sample_texts), encoding="utf-8"
    )
    settings = S.SampledSettings(accepted_units=3, chunks_per_unit=2, chunk_tokens=8, seed=6)
    one_call = S.sample_source(
        path, tokenizer, settings, truncate_tokens=40, text_column="body", block_lines=5
    )
    units = U.enumerate_units(
        path, U.weight_rule_for(tokenizer, 40), text_column="body", block_lines=5
    )
    assert one_call.record == S.sample_units(units, tokenizer, settings).record
    assert one_call.record.weight_rule == "truncate" and one_call.record.truncation_tokens == 40
    assert one_call.record.source_options["block_lines"] == 5
    with pytest.raises(DataError, match="no column 'text'"):
        S.sample_source(path, tokenizer, settings)
