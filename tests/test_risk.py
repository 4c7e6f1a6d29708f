"""Tests of certify.risk: losses against a plain-transformers reference, ties, slicing,
resume, exhaustive coverage, determinism, torch.distributed, bad inputs, the CLI."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from certify import data, risk
from certify.errors import DataError, EvaluationError, InvalidInputError
from certify.records import DatasetRecord, EvaluationSettings
from certify.risk.checkpoint import read_checkpoint
from certify.risk.evaluate import _probe_batch_tokens
from certify.risk.scoring import Scorer

ALPHAS = (0.001, 0.01, 0.1, 0.5)
TOP_K = (1, 2, 10, 100)


class ArrayShards:
    """An in-memory token stream with the interface of ``data.TokenShards``."""

    def __init__(self, tokens: np.ndarray, shards_sha256: str = "0" * 64) -> None:
        self.tokens = np.asarray(tokens, dtype=np.int64)
        self.record = DatasetRecord(
            source="memory",
            revision="none",
            tokenizer_sha256="1" * 64,
            n_tokens=len(self.tokens),
            documents=1,
            shards_sha256=shards_sha256,
        )

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.tokens[start:stop].copy()


@pytest.fixture(scope="module")
def toy(toy_model_factory: Callable[..., Path]) -> tuple[Any, Any, Path]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = toy_model_factory("llama")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(path), path


@pytest.fixture(scope="module")
def stream() -> ArrayShards:
    generator = np.random.default_rng(7)
    return ArrayShards(generator.integers(0, 384, size=403))


def settings(**overrides: Any) -> EvaluationSettings:
    values: dict[str, Any] = {
        "chunk_tokens": 24,
        "context_tokens": 0,
        "samples": 12,
        "seed": 3,
        "alphas": ALPHAS,
        "top_k": TOP_K,
        "batch_size": 4,
        "bound_version": 1,  # these tests pin the version-1 rules; version 2 is tested below
    }
    values.update(overrides)
    return EvaluationSettings(**values)


def naive_chunk_losses(
    model: Any, tokens: np.ndarray, chunk: int, config: EvaluationSettings, bos: int
) -> np.ndarray:
    """Per-token losses [metric, token] of one chunk from ``model(input_ids).logits``."""
    start, stop = data.chunk_span(chunk, len(tokens), config.chunk_tokens)
    context_start = max(0, start - config.context_tokens)
    ids = torch.tensor([[bos, *tokens[context_start:stop].tolist()]])
    with torch.no_grad():
        logits = model(ids).logits[0].double()
    log_probs = torch.log_softmax(logits, dim=-1)
    vocab = logits.shape[-1]
    rows = []
    for position in range(start - context_start, stop - context_start):
        target = int(ids[0, position + 1])
        p = math.exp(float(log_probs[position, target]))
        bits = [-math.log2((1 - a) * p + a / vocab) for a in config.alphas]
        greater = int((logits[position] > logits[position, target]).sum())
        rows.append(bits + [float(greater >= k) for k in config.top_k])
    return np.array(rows).T


def naive_metrics(
    model: Any, shards: ArrayShards, config: EvaluationSettings, bos: int
) -> tuple[np.ndarray, np.ndarray]:
    """(sample means, sample variances) per metric, the slow and obvious way."""
    n = shards.n_tokens
    if config.exhaustive:
        chunks = list(data.all_chunks(n, config.chunk_tokens))
    else:
        chunks = list(data.sample_chunks(n, config.chunk_tokens, config.samples, config.seed))
    per_chunk = {c: naive_chunk_losses(model, shards.tokens, c, config, bos) for c in set(chunks)}
    draws = np.array([per_chunk[c].mean(axis=1) for c in chunks])
    if config.exhaustive:
        means = np.concatenate([per_chunk[c] for c in chunks], axis=1).mean(axis=1)
    else:
        means = draws.mean(axis=0)
    return means, draws.var(axis=0, ddof=1)


def values(record: Any) -> list[tuple[Any, ...]]:
    return [
        (m.name, m.alpha, m.k, m.sample_mean, m.sample_variance, m.samples) for m in record.metrics
    ]


# --------------------------------------------------------------------------- core math


def test_sliced_log_softmax_equals_full() -> None:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(70, 16, generator=generator)
    weight = torch.randn(1000, 16, generator=generator)
    bias = torch.randn(1000, generator=generator)
    targets = torch.randint(0, 1000, (70,), generator=generator)
    logits = hidden @ weight.T + bias
    reference = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
    reference_rank = (logits > logits.gather(1, targets[:, None])).sum(dim=-1)
    for vocab_slice, elements in ((None, 1 << 20), (1000, 3000), (37, 37 * 20), (333, 333)):
        logprob, rank = risk.target_logprob_and_rank(
            hidden, weight, targets, bias=bias, vocab_slice=vocab_slice, logit_elements=elements
        )
        torch.testing.assert_close(logprob, reference, rtol=0, atol=1e-5)
        assert torch.equal(rank, reference_rank)
        logprob, rank = risk.logprob_and_rank_from_logits(
            logits, targets, vocab_slice=vocab_slice, logit_elements=elements
        )
        torch.testing.assert_close(logprob, reference, rtol=0, atol=1e-5)
        assert torch.equal(rank, reference_rank)


def test_top_k_ties_count_in_the_targets_favour() -> None:
    logits = torch.tensor(
        [
            [1.0, 2.0, 2.0, 3.0, 2.0],  # target 1: one logit (3.0) strictly greater
            [1.0, 2.0, 2.0, 3.0, 2.0],  # target 4: the same
            [5.0, 5.0, 5.0, 5.0, 5.0],  # all tied: nothing is strictly greater
            [1.0, 2.0, 2.0, 3.0, 2.0],  # target 0: four strictly greater
        ]
    )
    targets = torch.tensor([1, 4, 2, 0])
    for vocab_slice in (None, 2, 1):
        _, rank = risk.logprob_and_rank_from_logits(
            logits, targets, vocab_slice=vocab_slice, logit_elements=8
        )
        assert rank.tolist() == [1, 1, 0, 4]
    errors = risk.topk_errors(np.array([1, 1, 0, 4]), (1, 2, 4, 5))
    assert errors.tolist() == [
        [1.0, 1.0, 0.0, 1.0],
        [0.0, 0.0, 0.0, 1.0],
        [0.0, 0.0, 0.0, 1.0],
        [0.0, 0.0, 0.0, 0.0],
    ]


def test_smoothed_bits_matches_the_formula_over_the_whole_grid() -> None:
    logprob = np.array([0.0, -0.5, -30.0, -800.0, -np.inf])
    bits = risk.smoothed_bits(logprob, ALPHAS, 50_000)
    for row, alpha in enumerate(ALPHAS):
        for column, value in enumerate(logprob):
            expected = -math.log2((1 - alpha) * math.exp(value) + alpha / 50_000)
            assert bits[row, column] == pytest.approx(expected, rel=1e-12)
    ceiling = math.log2(50_000 / ALPHAS[0])
    assert bits[0, -1] == pytest.approx(ceiling, rel=1e-12)  # p = 0 stays finite


# --------------------------------------------------------------------------- evaluate


@pytest.mark.parametrize("context_tokens", [0, 7])
def test_losses_equal_a_naive_transformers_reference(
    toy: tuple[Any, Any, Path], stream: ArrayShards, context_tokens: int
) -> None:
    model, tokenizer, _ = toy
    config = settings(context_tokens=context_tokens)
    record = risk.evaluate(model, stream, config, bos_token_id=tokenizer.bos_token_id)
    means, variances = naive_metrics(model, stream, config, tokenizer.bos_token_id)
    assert [m.name for m in record.metrics] == ["bits"] * 4 + ["top_k_error"] * 4
    assert [m.alpha for m in record.metrics[:4]] == list(ALPHAS)
    assert [m.k for m in record.metrics[4:]] == list(TOP_K)
    for metric, mean, variance in zip(record.metrics, means, variances, strict=True):
        assert metric.samples == config.samples
        assert metric.sample_mean == pytest.approx(mean, rel=1e-5, abs=1e-9)
        assert metric.sample_variance == pytest.approx(variance, rel=1e-4, abs=1e-9)
    assert record.vocab_size == model.config.vocab_size
    assert record.n_tokens == stream.n_tokens
    assert record.sampling.method == "length_proportional_with_replacement"


def test_hidden_state_path_and_logits_fallback_agree(
    toy: tuple[Any, Any, Path], stream: ArrayShards, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tokenizer, _ = toy
    config = settings(context_tokens=5)
    fast = risk.evaluate(model, stream, config, bos_token_id=tokenizer.bos_token_id)
    monkeypatch.setattr(Scorer, "_hidden_path_matches", lambda self: False)
    slow = risk.evaluate(model, stream, config, bos_token_id=tokenizer.bos_token_id, vocab_slice=50)
    for a, b in zip(fast.metrics, slow.metrics, strict=True):
        assert a.sample_mean == pytest.approx(b.sample_mean, rel=1e-5, abs=1e-9)


def test_exhaustive_scores_every_token_once(
    toy: tuple[Any, Any, Path], stream: ArrayShards
) -> None:
    model, tokenizer, _ = toy
    config = settings(exhaustive=True, context_tokens=3)
    record = risk.evaluate(model, stream, config, bos_token_id=tokenizer.bos_token_id)
    assert record.tokens_scored == stream.n_tokens
    assert record.sampling.method == "exhaustive"
    assert record.metrics[0].samples == data.chunk_count(stream.n_tokens, config.chunk_tokens)
    means, _ = naive_metrics(model, stream, config, tokenizer.bos_token_id)
    for metric, mean in zip(record.metrics, means, strict=True):
        assert metric.sample_mean == pytest.approx(mean, rel=1e-5, abs=1e-9)


def test_deterministic_for_a_seed_and_batch_size_only_changes_rounding(
    toy: tuple[Any, Any, Path], stream: ArrayShards
) -> None:
    model, tokenizer, _ = toy
    bos = tokenizer.bos_token_id
    first = risk.evaluate(model, stream, settings(), bos_token_id=bos)
    again = risk.evaluate(model, stream, settings(), bos_token_id=bos)
    assert values(first) == values(again)
    other_seed = risk.evaluate(model, stream, settings(seed=4), bos_token_id=bos)
    assert values(other_seed) != values(first)
    auto_batch = risk.evaluate(model, stream, settings(batch_size=None), bos_token_id=bos)
    for a, b in zip(first.metrics, auto_batch.metrics, strict=True):
        assert a.sample_mean == pytest.approx(b.sample_mean, rel=1e-6, abs=1e-12)


class Interrupt(Exception):
    pass


def test_resume_after_an_interruption_gives_identical_numbers(
    toy: tuple[Any, Any, Path], stream: ArrayShards, tmp_path: Path
) -> None:
    model, tokenizer, _ = toy
    bos = tokenizer.bos_token_id
    config = settings(samples=20, batch_size=2)
    uninterrupted = risk.evaluate(model, stream, config, bos_token_id=bos)
    checkpoint = tmp_path / "risk.ckpt"
    calls = []

    def stop_after_two_batches(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        risk.evaluate(
            model,
            stream,
            config,
            bos_token_id=bos,
            checkpoint_path=checkpoint,
            progress=stop_after_two_batches,
        )
    lines = checkpoint.read_text().splitlines()
    assert len(lines) == 3  # header + two batches
    with open(checkpoint, "a") as handle:  # a write torn by the interruption
        handle.write('{"chunks": [1')
    resumed_progress: list[tuple[int, int]] = []
    resumed = risk.evaluate(
        model,
        stream,
        config,
        bos_token_id=bos,
        checkpoint_path=checkpoint,
        progress=lambda done, total: resumed_progress.append((done, total)),
    )
    assert values(resumed) == values(uninterrupted)
    assert resumed_progress[0][0] == calls[-1]  # started where it stopped
    with pytest.raises(EvaluationError, match="another model, dataset or settings"):
        risk.evaluate(model, stream, settings(seed=9), bos_token_id=bos, checkpoint_path=checkpoint)


DISTRIBUTED_SCRIPT = """
import json, sys
import numpy as np
import torch
import torch.distributed as dist
from transformers import AutoModelForCausalLM
from certify import risk
from certify.records import DatasetRecord, EvaluationSettings

class ArrayShards:
    def __init__(self, tokens):
        self.tokens = tokens
        self.n_tokens = len(tokens)
        self.record = DatasetRecord("memory", "none", "1" * 64, len(tokens), 1, "0" * 64)
    def read(self, start, stop):
        return self.tokens[start:stop].copy()

dist.init_process_group("gloo")
torch.set_num_threads(1)
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32).eval()
settings = EvaluationSettings(**json.loads(sys.argv[3]))
record = risk.evaluate(
    model, ArrayShards(np.load(sys.argv[2])), settings, bos_token_id=int(sys.argv[4]),
    checkpoint_path=sys.argv[5],
)
if dist.get_rank() == 0:
    with open(sys.argv[6], "w") as handle:
        json.dump(risk.risk_to_dict(record), handle)
# Both ranks leave together: destroying a gloo group while the peer still works on it
# can abort the process (seen once in CI as SIGABRT on rank 0).
dist.barrier()
dist.destroy_process_group()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_two_process_distributed_run_matches_one_process(
    toy: tuple[Any, Any, Path], stream: ArrayShards, tmp_path: Path
) -> None:
    model, tokenizer, path = toy
    config = settings(samples=10, batch_size=2, context_tokens=4)
    single = risk.evaluate(model, stream, config, bos_token_id=tokenizer.bos_token_id)
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(DISTRIBUTED_SCRIPT))
    tokens = tmp_path / "tokens.npy"
    np.save(tokens, stream.tokens)
    out = tmp_path / "risk.json"
    settings_json = json.dumps({**config.__dict__, "alphas": ALPHAS, "top_k": TOP_K})
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        str(script),
        str(path),
        str(tokens),
        settings_json,
        str(tokenizer.bos_token_id),
        str(tmp_path / "ckpt"),
        str(out),
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert finished.returncode == 0, finished.stderr[-3000:]
    document = json.loads(out.read_text())
    assert (tmp_path / "ckpt.rank0-of-2").exists() and (tmp_path / "ckpt.rank1-of-2").exists()
    for metric, entry in zip(single.metrics, document["metrics"], strict=True):
        assert entry["samples"] == metric.samples
        assert entry["sample_mean"] == pytest.approx(metric.sample_mean, rel=1e-6, abs=1e-12)
        assert entry["sample_variance"] == pytest.approx(
            metric.sample_variance, rel=1e-5, abs=1e-12
        )
    assert document["tokens_scored"] == single.tokens_scored


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_are_refused(toy: tuple[Any, Any, Path], stream: ArrayShards) -> None:
    model, tokenizer, _ = toy
    bos = tokenizer.bos_token_id
    with pytest.raises(DataError, match="no tokens"):
        risk.evaluate(model, ArrayShards(np.zeros(0)), settings(), bos_token_id=bos)
    with pytest.raises(DataError, match="fewer than one chunk"):
        risk.evaluate(model, ArrayShards(np.arange(10)), settings(), bos_token_id=bos)
    positions = model.config.max_position_embeddings
    with pytest.raises(InvalidInputError, match="positions"):
        risk.evaluate(
            model,
            stream,
            settings(chunk_tokens=positions - 3, context_tokens=4),
            bos_token_id=bos,
        )
    with pytest.raises(InvalidInputError, match="alphas"):
        risk.evaluate(model, stream, settings(alphas=(0.0,)), bos_token_id=bos)
    with pytest.raises(InvalidInputError, match="top_k"):
        risk.evaluate(model, stream, settings(top_k=(0,)), bos_token_id=bos)
    too_large = ArrayShards(np.full(100, model.config.vocab_size + 5))
    with pytest.raises(DataError, match="another tokenizer"):
        risk.evaluate(model, too_large, settings(), bos_token_id=bos)


def test_non_finite_losses_name_the_chunk(
    toy_model_factory: Callable[..., Path], stream: ArrayShards
) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(toy_model_factory("llama")).eval()
    with torch.no_grad():
        model.get_output_embeddings().weight[5].fill_(float("nan"))
    with pytest.raises(EvaluationError, match=r"chunk \d+ \(tokens \d+\.\.\d+\)"):
        risk.evaluate(model, stream, settings(), bos_token_id=1)


# --------------------------------------------------------------------------- JSON


def test_risk_dict_round_trips_and_feeds_the_bound(
    toy: tuple[Any, Any, Path], stream: ArrayShards
) -> None:
    from certify.bound import bound_input_from_dict

    model, tokenizer, _ = toy
    record = risk.evaluate(model, stream, settings(), bos_token_id=tokenizer.bos_token_id)
    document = risk.risk_to_dict(record)
    assert risk.risk_from_dict(json.loads(json.dumps(document))) == record
    bound_input = bound_input_from_dict({**document, "size_bytes": 1000})
    assert bound_input.metrics == record.metrics
    assert bound_input.n_tokens == stream.n_tokens


# --------------------------------------------------------------------------- CLI


def test_evaluate_cli_output_feeds_certify_bound(
    toy: tuple[Any, Any, Path],
    toy_model_factory: Callable[..., Path],
    sample_texts: tuple[str, ...],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from certify.cli import run_cli

    _, tokenizer, model_dir = toy
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": text}) + "\n" for text in sample_texts))
    shards = data.tokenize_source(corpus, tokenizer, tmp_path / "shards")
    out = tmp_path / "risk.json"
    common = ["--samples", "6", "--chunk-tokens", "32", "--top-k", "1,5", "--alphas", "0.01,0.1"]
    code = run_cli(
        ["evaluate", str(model_dir), "--dataset", str(shards.directory), *common, "-o", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    assert "top_k_error" in capsys.readouterr().out  # the summary table
    document = json.loads(out.read_text())
    assert document["n_tokens"] == shards.n_tokens
    assert document["data"]["shards_sha256"] == shards.record.shards_sha256
    assert [(m["name"], m.get("alpha"), m.get("k")) for m in document["metrics"]] == [
        ("bits", 0.01, None),
        ("bits", 0.1, None),
        ("top_k_error", None, 1),
        ("top_k_error", None, 5),
    ]
    # the same run as a library call gives the same numbers (the same derived seed)
    record = risk.evaluate(
        toy[0],
        shards,
        EvaluationSettings(chunk_tokens=32, samples=6, alphas=(0.01, 0.1), top_k=(1, 5)),
        bos_token_id=tokenizer.bos_token_id,
    )
    assert document["sampling"]["seed"] == record.sampling.seed
    assert [m["sample_mean"] for m in document["metrics"]] == pytest.approx(
        [m.sample_mean for m in record.metrics], rel=1e-6
    )

    artifact = tmp_path / "fake.certz"
    artifact.write_bytes(b"x" * 1234)
    code = run_cli(["bound", str(out), "--artifact", str(artifact), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    bound = json.loads(captured.out)
    assert bound["n_tokens"] == shards.n_tokens
    assert bound["prior"]["size_bytes"] == 1234

    # a raw source is tokenized on the fly into --shards-dir; --json prints the document
    code = run_cli(
        [
            "evaluate",
            str(model_dir),
            "--dataset",
            str(corpus),
            *common,
            "--json",
            "--shards-dir",
            str(tmp_path / "cache"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["metrics"] == document["metrics"]

    # sampled mode from the command line: units drawn, n bounded below by certify bound
    sampled_out = tmp_path / "risk.sampled.json"
    folder = tmp_path / "texts"  # one unit per file (a small jsonl file is a single unit)
    folder.mkdir()
    for number, text in enumerate(sample_texts):
        (folder / f"{number:03d}.txt").write_text(text)
    code = run_cli(
        [
            "evaluate",
            str(model_dir),
            "--dataset",
            str(folder),
            *common,
            "--data-mode",
            "sampled",
            "--accepted-units",
            "3",
            "--chunks-per-unit",
            "2",
            "--truncate-tokens",
            "64",
            "--shards-dir",
            str(tmp_path / "cache"),
            "-o",
            str(sampled_out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "sampled units" in captured.out
    sampled_document = json.loads(sampled_out.read_text())
    assert "n_tokens" not in sampled_document  # not counted in sampled mode
    assert sampled_document["data"]["accepted"] == 3
    code = run_cli(["bound", str(sampled_out), "--artifact", str(artifact), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    sampled_bound = json.loads(captured.out)
    assert 1 <= sampled_bound["n_lower_bound"] <= sampled_document["data"]["total_weight"]

    # shards made with another tokenizer are refused (exit code of DataError)
    other = toy_model_factory("llama", vocab_size=320)
    code = run_cli(["evaluate", str(other), "--dataset", str(shards.directory), *common])
    assert code == 6
    assert "tokenizer" in capsys.readouterr().err


# --------------------------------------------------------------------------- formats

FIXTURES = Path(__file__).parent / "fixtures" / "risk"


def test_golden_risk_json_reads_validates_and_writes_back_identically() -> None:
    text = (FIXTURES / "risk.json").read_text()
    document = json.loads(text)
    record = risk.risk_from_dict(document)
    assert record.metrics[2].name == "top_k_error" and record.metrics[2].k == 1
    assert record.data is not None and record.data.max_documents == 1000
    written = risk.risk_to_dict(record)
    written["certify_version"] = document["certify_version"]
    assert json.dumps(written, indent=2) + "\n" == text
    broken = {**document, "metrics": [{**document["metrics"][0], "alpha": 1.5}]}
    with pytest.raises(InvalidInputError, match="risk"):
        risk.risk_from_dict(broken)
    newer = {**document, "evaluation": {"format_version": 3}}
    with pytest.raises(InvalidInputError):
        risk.risk_from_dict(newer)


def test_golden_checkpoint_reads_and_ignores_a_torn_last_line(tmp_path: Path) -> None:
    batch_tokens, results = read_checkpoint(FIXTURES / "checkpoint.jsonl", "c" * 64)
    assert batch_tokens == 8192
    assert results == {
        3: [1024.0, 2048.5, 100.0],
        7: [1024.0, 3072.25, 512.0],
        1205: [647.0, 1294.0, 0.0],
    }
    with pytest.raises(EvaluationError, match="another model"):
        read_checkpoint(FIXTURES / "checkpoint.jsonl", "d" * 64)
    not_ours = tmp_path / "other.jsonl"
    not_ours.write_text('{"format": "something-else"}\n')
    with pytest.raises(EvaluationError, match="not a certify risk checkpoint"):
        read_checkpoint(not_ours, "c" * 64)


def test_automatic_gpu_batch_halves_on_out_of_memory() -> None:
    class FakeScorer:
        input_device = torch.device("cpu")

        def __init__(self) -> None:
            self.shapes: list[tuple[int, ...]] = []

        def score(self, ids: torch.Tensor, first: int, targets: torch.Tensor) -> None:
            self.shapes.append(tuple(ids.shape))
            if ids.shape[0] > 3:
                raise torch.cuda.OutOfMemoryError("out of memory")

    scorer = FakeScorer()
    tokens = _probe_batch_tokens(scorer, 100, 4096)  # type: ignore[arg-type]
    assert tokens // 100 <= 3
    assert [shape[0] for shape in scorer.shapes] == [40, 20, 10, 5, 2]
    assert all(shape[1] == 100 for shape in scorer.shapes)

    class NothingFits(FakeScorer):
        def score(self, ids: torch.Tensor, first: int, targets: torch.Tensor) -> None:
            raise torch.cuda.OutOfMemoryError("out of memory")

    with pytest.raises(EvaluationError, match="does not fit"):
        _probe_batch_tokens(NothingFits(), 100, 400)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- version 2


class ArrayDocuments(ArrayShards):
    """In-memory documents with the interface of format-2 token shards."""

    def __init__(self, documents: list[np.ndarray]) -> None:
        super().__init__(np.concatenate(documents))
        self.ends = np.cumsum([len(document) for document in documents]).astype(np.uint64)
        self.documents = [np.asarray(document, dtype=np.int64) for document in documents]
        self.record = DatasetRecord(
            source="memory",
            revision="none",
            tokenizer_sha256="1" * 64,
            n_tokens=len(self.tokens),
            documents=len(documents),
            shards_sha256="0" * 64,
            documents_sha256="2" * 64,
        )

    def document_ends(self) -> np.ndarray:
        return self.ends


@pytest.fixture(scope="module")
def documents() -> ArrayDocuments:
    generator = np.random.default_rng(11)
    lengths = [5, 61, 24, 130, 1, 47]
    return ArrayDocuments([generator.integers(0, 384, size=length) for length in lengths])


def naive_v2_chunk(
    model: Any, document: np.ndarray, chunk: int, config: EvaluationSettings, bos: int
) -> np.ndarray:
    """Per-token [losses..., squares...] of chunk ``chunk`` of one document, in float64."""
    start = chunk * config.chunk_tokens
    stop = min(start + config.chunk_tokens, len(document))
    context_start = max(0, start - config.context_tokens)
    ids = torch.tensor([[bos, *document[context_start:stop].tolist()]])
    with torch.no_grad():
        logits = model(ids).logits[0].double()
    probabilities = torch.softmax(logits, dim=-1)
    vocab = logits.shape[-1]
    rows = []
    for position in range(start - context_start, stop - context_start):
        target = int(ids[0, position + 1])
        p = probabilities[position]
        losses, centres = [], []
        for a in config.alphas:
            losses.append(-math.log2((1 - a) * float(p[target]) + a / vocab))
            centres.append(float(-(p * torch.log2((1 - a) * p + a / vocab)).sum()))
        others = int((logits[position] >= logits[position, target]).sum()) - 1
        ordered = torch.sort(p, descending=True).values
        for k in config.top_k:
            losses.append(float(others >= k))
            centres.append(float(1.0 - ordered[:k].sum()))
        squares = [(loss - centre) ** 2 for loss, centre in zip(losses, centres, strict=True)]
        rows.append(losses + squares)
    return np.array(rows).T


def test_version_2_exhaustive_matches_a_naive_reference(
    toy: tuple[Any, Any, Path], documents: ArrayDocuments
) -> None:
    """Chunks aligned with documents, context within the document, ties against the
    model, centres and squares: R-hat and V-hat equal a float64 reference."""
    model, tokenizer, _ = toy
    config = settings(bound_version=2, exhaustive=True, chunk_tokens=16, context_tokens=8)
    record = risk.evaluate(model, documents, config, bos_token_id=tokenizer.bos_token_id)
    per_token = np.concatenate(
        [
            naive_v2_chunk(model, document, chunk, config, tokenizer.bos_token_id)
            for document in documents.documents
            for chunk in range(-(-len(document) // config.chunk_tokens))
        ],
        axis=1,
    )
    expected = per_token.mean(axis=1)
    statements = len(config.alphas) + len(config.top_k)
    assert record.bound_version == 2 and record.tokens_scored == documents.n_tokens
    for column, metric in enumerate(record.metrics):
        assert metric.sample_mean == pytest.approx(expected[column], rel=2e-5, abs=1e-6)
        assert metric.square_mean == pytest.approx(
            expected[statements + column], rel=2e-4, abs=1e-5
        )
    # the centres make q small against the loss's own spread (a calibrated-ish model)
    bits = record.metrics[0]
    assert bits.square_mean is not None and bits.square_variance is not None


def test_version_2_sample_uses_the_certification_child_stream(
    toy: tuple[Any, Any, Path], documents: ArrayDocuments
) -> None:
    from certify.data.windows import sample_document_chunks
    from certify.streams import Stream, child_generator

    model, tokenizer, _ = toy
    config = settings(bound_version=2, chunk_tokens=16, samples=9, seed=5)
    record = risk.evaluate(model, documents, config, bos_token_id=tokenizer.bos_token_id)
    pairs = sample_document_chunks(documents.ends, 16, 9, child_generator(5, Stream.CERTIFICATION))
    draws = np.array(
        [
            naive_v2_chunk(model, documents.documents[d], c, config, tokenizer.bos_token_id).mean(
                axis=1
            )
            for d, c in pairs.tolist()
        ]
    )
    statements = len(config.alphas) + len(config.top_k)
    for column, metric in enumerate(record.metrics):
        assert metric.sample_mean == pytest.approx(draws[:, column].mean(), rel=2e-5, abs=1e-6)
        assert metric.sample_variance == pytest.approx(
            draws[:, column].var(ddof=1), rel=1e-3, abs=1e-6
        )
        assert metric.square_variance == pytest.approx(
            draws[:, statements + column].var(ddof=1), rel=2e-3, abs=1e-5
        )
    assert record.sampling.stream == "certification" and record.sampling.seed == 5
    search = risk.evaluate(
        model,
        documents,
        settings(bound_version=2, chunk_tokens=16, samples=9, seed=5, stream="search"),
        bos_token_id=tokenizer.bos_token_id,
    )
    assert values(search) != values(record)  # another, independent sample


def test_default_seed_is_derived_from_the_inputs(
    toy: tuple[Any, Any, Path], documents: ArrayDocuments
) -> None:
    from certify.streams import derive_seed

    model, tokenizer, _ = toy
    config = settings(bound_version=2, chunk_tokens=16, samples=4, seed=None)
    record = risk.evaluate(
        model, documents, config, bos_token_id=tokenizer.bos_token_id, model_identity="f" * 64
    )
    inputs = record.sampling.seed_inputs
    assert inputs is not None and inputs["artifact_sha256"] == "f" * 64
    assert inputs["samples"] == 4 and inputs["chunk_tokens"] == 16
    assert record.sampling.seed == derive_seed(inputs)


def test_constant_logits_give_top_k_error_one_under_version_2() -> None:
    from certify.risk.scoring import TokenRules, scores_from_logits

    logits = torch.zeros((3, 10))
    targets = torch.tensor([0, 4, 9])
    rules = TokenRules(ties_count_against=True, centre_alphas=(0.5,), centre_ks=(1, 3))
    scores = scores_from_logits(logits, targets, rules)
    assert scores.rank.tolist() == [9, 9, 9]  # every other token ties with the target
    assert risk.topk_errors(scores.rank.numpy(), (1, 9)).tolist() == [[1, 1, 1], [1, 1, 1]]
    assert scores.centres is not None
    # uniform p: expected smoothed bits = log2 V for any α; mass outside top-k = 1 − k/V
    assert scores.centres[:, 0].tolist() == pytest.approx([math.log2(10)] * 3)
    assert scores.centres[:, 1].tolist() == pytest.approx([0.9] * 3)
    assert scores.centres[:, 2].tolist() == pytest.approx([0.7] * 3)
    old_rank = risk.logprob_and_rank_from_logits(logits, targets)[1]
    assert old_rank.tolist() == [0, 0, 0]  # version 1: ties favour the target


def test_sliced_centres_equal_full_centres() -> None:
    from certify.risk.scoring import TokenRules, scores_from_logits

    generator = torch.Generator().manual_seed(3)
    logits = torch.randn((40, 700), generator=generator) * 3
    logits[:, 5] = logits[:, 6]  # a tie
    targets = torch.randint(0, 700, (40,), generator=generator)
    targets[0] = 5
    rules = TokenRules(ties_count_against=True, centre_alphas=(0.001, 0.5), centre_ks=(1, 10))
    full = scores_from_logits(logits, targets, rules)
    sliced = scores_from_logits(logits, targets, rules, vocab_slice=64, logit_elements=64 * 8)
    assert torch.equal(full.rank, sliced.rank)
    assert torch.allclose(full.logprob, sliced.logprob, atol=1e-5)
    assert full.centres is not None and sliced.centres is not None
    assert torch.allclose(full.centres, sliced.centres, rtol=1e-5, atol=1e-6)
