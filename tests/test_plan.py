"""certify plan: the size estimate, the data survey, the bound grid, the n solver, the CLI."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from certify import container, models, plan
from certify.bound import compute_bound, n_lower_bound
from certify.cli import _plan as cli_plan
from certify.cli import run_cli
from certify.data import tokenize_source
from certify.data.units import enumerate_units, weight_rule_for
from certify.errors import CertifyError, InvalidInputError
from certify.records import (
    DEFAULT_AUTO_GRID,
    BoundInput,
    DataSource,
    EvaluationSettings,
    MetricSample,
    PlanArtifact,
    PlanCost,
    PlanData,
    QuantizationSettings,
    RunSettings,
    SampledDraws,
    to_dict,
)

ROOT = Path(__file__).resolve().parent.parent
#: the size estimate (normal-weight pricing) lies within this fraction of the real file
#: for the toy models; the low end (Student-t(5) pricing) is never above the real size by
#: more than LOW_SLACK (docs/PLAN.md "Accuracy")
SIZE_TOLERANCE = 0.06
LOW_SLACK = 0.01
SMALL_EVALUATION = EvaluationSettings(
    samples=16, chunk_tokens=64, alphas=(0.01, 0.1, 0.5), top_k=(1, 10)
)
MANY_SAMPLES = dataclasses.replace(SMALL_EVALUATION, samples=4000)


@pytest.fixture
def texts_dir(tmp_path: Path, sample_texts: tuple[str, ...]) -> Path:
    folder = tmp_path / "texts"
    folder.mkdir()
    for number, text in enumerate(sample_texts):
        (folder / f"doc{number:02d}.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "certify-home"
    monkeypatch.setenv("CERTIFY_HOME", str(folder))
    return folder


def _plan(model: Path, data: DataSource, **options: Any) -> Any:
    return plan.make_plan(
        plan.describe_model(str(model)),
        data,
        options.pop("evaluation", SMALL_EVALUATION),
        options.pop("quantization", QuantizationSettings(bits=4, group_size=128)),
        **options,
    )


# --------------------------------------------------------------------------- artifact size


@pytest.mark.parametrize(
    ("tie", "bits", "group_size"), [(False, 4, 128), (False, 2, 32), (True, 3, 64), (True, 8, 128)]
)
def test_size_estimate_is_close_to_the_real_artifact(
    toy_model_factory: Callable[..., Path], tmp_path: Path, tie: bool, bits: int, group_size: int
) -> None:
    model = toy_model_factory("llama", tie=tie)
    settings = QuantizationSettings(bits=bits, group_size=group_size)
    estimate = plan.estimate_artifact(plan.describe_model(str(model)), settings)
    real = container.compress_model(
        models.resolve_model(str(model)), settings, tmp_path / "m.certz"
    )
    header = container.read_header(tmp_path / "m.certz")
    quantized = [t for t in header["tensors"] if t["encoding"] == "quantized"]
    assert estimate.quantized_parameters == sum(math.prod(t["shape"]) for t in quantized)
    assert estimate.parameters >= real.parameters  # equal raw tensors (norms) may alias
    assert abs(estimate.size_bytes - real.size_bytes) <= SIZE_TOLERANCE * real.size_bytes, (
        estimate.size_bytes,
        real.size_bytes,
    )
    assert estimate.size_bytes_low <= estimate.size_bytes
    assert estimate.size_bytes_low <= (1 + LOW_SLACK) * real.size_bytes
    # the embedded files are compressed exactly as the container does
    assert estimate.support_file_bytes == sum(entry["length"] for entry in header["files"])


@pytest.mark.parametrize(("architecture", "tie"), [("gpt2", False), ("qwen2", True)])
def test_quantized_tensors_are_priced_within_two_percent(
    toy_model_factory: Callable[..., Path], tmp_path: Path, architecture: str, tie: bool
) -> None:
    """The coded matrices alone (no header, no raw tensors: random-init toys have many
    equal zero biases and unit norms, which the container stores once)."""
    model = toy_model_factory(architecture, tie=tie)
    settings = QuantizationSettings(bits=3, group_size=64)
    estimate = plan.estimate_artifact(plan.describe_model(str(model)), settings)
    container.compress_model(models.resolve_model(str(model)), settings, tmp_path / "m.certz")
    header = container.read_header(tmp_path / "m.certz")
    real = sum(t["length"] for t in header["tensors"] if t["encoding"] == "quantized")
    assert abs(estimate.quantized_bytes - real) <= 0.02 * real, (estimate.quantized_bytes, real)


def test_a_tied_head_is_counted_once(toy_model_factory: Callable[..., Path]) -> None:
    tied = plan.describe_model(str(toy_model_factory("llama", tie=True)))
    untied = plan.describe_model(str(toy_model_factory("llama", tie=False)))
    settings = QuantizationSettings()
    head = next(spec for spec in untied.specs if spec.name.endswith("lm_head.weight"))
    difference = (
        plan.estimate_artifact(untied, settings).quantized_parameters
        - plan.estimate_artifact(tied, settings).quantized_parameters
    )
    assert difference == math.prod(head.shape)


def test_simulated_cost_matches_the_measured_student_t_rows() -> None:
    """bench/results/compress.json measured RTN on Student-t(5) matrices of 45M weights;
    the plan's 2^18-element simulation of the same law prices them within 1%."""
    measured = json.loads((ROOT / "bench" / "results" / "compress.json").read_text())
    rows = [row for matrix in measured["matrices"][:1] for row in matrix["settings"]]
    assert rows
    for row in rows:
        cost = plan.quantization_cost(row["bits"], row["group_size"], False, "student_t5")
        assert cost.code_bits_per_parameter == pytest.approx(
            row["code_entropy_bits_per_parameter"], rel=0.01
        )
        side = row["side_information_bits_per_parameter"]["log8_scale_zero_entropy"]
        assert cost.side_bits_per_group / row["group_size"] == pytest.approx(side, rel=0.05)


def test_normal_weights_cost_more_than_heavy_tailed_ones() -> None:
    for bits, group_size in ((2, 32), (4, 128), (6, 64)):
        normal = plan.quantization_cost(bits, group_size)
        heavy = plan.quantization_cost(bits, group_size, weights="student_t5")
        assert heavy.code_bits_per_parameter < normal.code_bits_per_parameter <= bits
    with pytest.raises(InvalidInputError):
        plan.quantization_cost(4, 128, weights="uniform")  # type: ignore[arg-type]


def test_gguf_specs_come_from_the_header(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("token_embd.weight", np.zeros((384, 64), dtype=np.float32))
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(64, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    specs, _ = plan._gguf_specs(path)
    assert [(s.name, s.shape, s.dtype) for s in specs] == [
        ("token_embd.weight", (384, 64), "float32"),
        ("blk.0.attn_norm.weight", (64,), "float32"),
    ]


# --------------------------------------------------------------------------- the data


def test_exact_mode_estimates_n_from_bytes(toy_model: Path, texts_dir: Path) -> None:
    result = _plan(toy_model, DataSource(source=str(texts_dir), mode="exact"))
    files = sorted(texts_dir.iterdir())
    size = sum(path.stat().st_size for path in files)
    assert result.data.mode == "exact"
    assert result.data.n_tokens_basis == "bytes_estimate"
    assert result.data.documents == len(files)
    assert result.data.file_bytes == size
    assert result.data.n_tokens == round(plan.DEFAULT_TOKENS_PER_BYTE * size + len(files))
    assert result.data.martingale_tokens == result.data.n_tokens
    assert result.cost.tokens_tokenized == result.data.n_tokens
    assert result.cost.dataset_download_bytes == 0 and result.cost.model_download_bytes == 0


def test_token_shards_give_the_exact_n(toy_model: Path, texts_dir: Path, tmp_path: Path) -> None:
    tokenizer = models_tokenizer(toy_model)
    shards = tokenize_source(str(texts_dir), tokenizer, tmp_path / "shards")
    result = _plan(toy_model, DataSource(source=str(tmp_path / "shards")))
    assert result.data.n_tokens_basis == "token_shards"
    assert result.data.n_tokens == shards.record.n_tokens
    assert result.cost.tokens_tokenized == 0


def models_tokenizer(model: Path) -> Any:
    return plan.describe_model(str(model)).tokenizer


def test_sampled_mode_uses_n_lo_at_the_expected_draws(toy_model: Path, texts_dir: Path) -> None:
    data = DataSource(source=str(texts_dir), mode="sampled", accepted_units=8, chunks_per_unit=2)
    result = _plan(toy_model, data, delta=0.05)
    tokenizer = models_tokenizer(toy_model)
    units = enumerate_units(str(texts_dir), weight_rule_for(tokenizer))
    assert result.data.mode == "sampled"
    assert result.data.total_weight == units.total_weight
    assert result.data.units == len(units)
    rate = result.data.n_tokens / units.total_weight
    assert result.data.acceptance_rate == pytest.approx(rate)
    assert result.data.expected_draws == math.ceil(8 / rate)
    n_lo, _ = n_lower_bound(units.total_weight, 8, result.data.expected_draws, 0.005)
    assert result.data.n_lower_bound == n_lo == result.data.martingale_tokens
    assert result.samples == 8
    assert result.cost.evaluation_tokens == 8 * 2 * (1 + 64)
    # a unit is read (and tokenized) once however often it is drawn
    share = units.weight / units.total_weight
    read = 1.0 - (1.0 - share) ** result.data.expected_draws
    assert result.cost.units_read == round(read.sum()) <= min(result.data.expected_draws, 40)
    sizes = (units.byte_stop - units.byte_start).astype(float)
    assert result.cost.bytes_read == round(float((read * sizes).sum()))
    assert 0 < result.cost.tokens_tokenized <= result.data.n_tokens
    # the bound table is the real sampled-mode bound at those draws
    scenario = result.scenarios[0]
    metrics = plan.scenario_metrics(
        scenario.loss_bits, scenario.square_mean, (0.01, 0.1, 0.5), (1, 10), 384, 8
    )
    direct = compute_bound(
        BoundInput(
            vocab_size=result.vocab_size,
            n_tokens=None,
            size_bytes=result.artifact.size_bytes,
            metrics=metrics,
            sampled=SampledDraws(units.total_weight, 8, result.data.expected_draws),
        )
    )
    assert scenario.bits_bound == direct.summary["bits_per_token_bound"]
    assert [b.bound for b in scenario.bounds] == [m.bound for m in direct.metrics[:3]]


def test_too_many_accepted_units_is_refused(toy_model: Path, texts_dir: Path) -> None:
    data = DataSource(source=str(texts_dir), mode="sampled", accepted_units=1000)
    with pytest.raises(InvalidInputError, match="accepted"):
        _plan(toy_model, data)


# --------------------------------------------------------------------------- the bound and n


def _metrics(samples: int = 64) -> tuple[MetricSample, ...]:
    return plan.scenario_metrics(3.0, 9.0, (0.01, 0.1, 0.5), (1,), 32000, samples)


def _direct(n_tokens: int, size_bytes: int = 10**6) -> float:
    bound_input = BoundInput(
        vocab_size=32000, n_tokens=n_tokens, size_bytes=size_bytes, metrics=_metrics()
    )
    return float(compute_bound(bound_input).summary["bits_per_token_bound"])


@pytest.mark.parametrize("above_floor", [10.0, 3.0, 0.5])
def test_tokens_needed_is_the_smallest_n_by_direct_computation(above_floor: float) -> None:
    target = _direct(plan.MAX_TOKENS) + above_floor
    needed = plan.tokens_needed(_direct, target)
    assert needed is not None and needed > 1
    assert _direct(needed) <= target < _direct(needed - 1)


def test_tokens_needed_strict_and_unreachable() -> None:
    limit = _direct(plan.MAX_TOKENS)
    # below the sampling floor: unreachable up to the plan's limit
    assert plan.tokens_needed(_direct, limit - 1e-6, max_tokens=plan.MAX_TOKENS) is None
    needed = plan.tokens_needed(_direct, 12.0, strict=True)
    assert needed is not None and _direct(needed) < 12.0 <= _direct(needed - 1)


def test_the_bound_falls_with_n_over_the_whole_range() -> None:
    values = [_direct(int(n)) for n in np.logspace(0, 16, 60)]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(values))


def test_tokens_needed_refuses_a_bound_that_rises_with_n() -> None:
    def rising(n: int) -> float:  # falls, rises between 8 and 10^15, then falls again
        return 1.0 if n >= 10**15 else 4.0 if n >= 8 else 3.0 if n >= 4 else 5.0

    with pytest.raises(CertifyError, match="monotone"):
        plan.tokens_needed(rising, 2.0, max_tokens=plan.MAX_TOKENS)


def test_tokens_needed_starts_at_min_tokens() -> None:
    # a search that may not probe n = 1 (a sampled certificate's n_lo is at least 2)
    probed: list[int] = []

    def falling(n: int) -> float:
        probed.append(n)
        return 10.0 / n

    assert plan.tokens_needed(falling, 100.0, min_tokens=2) == 2
    assert plan.tokens_needed(falling, 1.0, min_tokens=2) == 10
    assert min(probed) == 2


def test_sampled_template_at_n_lo_is_the_sampled_bound() -> None:
    """bound_input_at turns sampled mode into the exact form at n = n_lo; same numbers."""
    draws = SampledDraws(total_weight=5 * 10**9, accepted=1000, drawn=4100)
    sampled = BoundInput(
        vocab_size=32000, n_tokens=None, size_bytes=10**6, metrics=_metrics(1000), sampled=draws
    )
    reference = compute_bound(sampled)
    assert reference.n_lower_bound is not None
    same = compute_bound(plan.bound_input_at(sampled, reference.n_lower_bound, sampled=True))
    assert same.delta_c == pytest.approx(reference.delta_c, rel=1e-15)
    assert same.delta_s == pytest.approx(reference.delta_s, rel=1e-15)
    for ours, theirs in zip(same.metrics, reference.metrics, strict=True):
        assert ours.bound == pytest.approx(theirs.bound, rel=1e-14)


def test_scenario_means_follow_the_smoothing_limit() -> None:
    metrics = plan.scenario_metrics(2.0, 7.0, (0.001, 0.5), (1, 50), 1000, 100)
    assert metrics[0].sample_mean == pytest.approx(2.0 - math.log2(0.999))
    assert metrics[1].sample_mean == pytest.approx(3.0)
    assert [m.k for m in metrics[2:]] == [1, 50]
    assert metrics[3].sample_mean == plan.TOP_K_MEASURED[10][0]  # k=50 priced as k=10


# --------------------------------------------------------------------------- the whole plan


def test_plan_of_a_toy_model(toy_model: Path, texts_dir: Path) -> None:
    result = _plan(
        toy_model, DataSource(source=str(texts_dir)), target_bits=8.0, evaluation=MANY_SAMPLES
    )
    assert result.vocab_size == 384 and result.uniform_bits == pytest.approx(math.log2(384))
    assert result.statements == 5 and result.samples == 4000
    assert len(result.scenarios) == len(plan.DEFAULT_LOSSES_BITS) * len(plan.DEFAULT_SPREADS_BITS2)
    for scenario in result.scenarios:
        assert [b.alpha for b in scenario.bounds] == [0.01, 0.1, 0.5]
        assert scenario.bits_bound == min(b.bound for b in scenario.bounds)
        assert scenario.vacuous == (scenario.bits_bound >= result.uniform_bits)
        if scenario.tokens_for_nonvacuous is not None and scenario.tokens_for_target is not None:
            assert scenario.tokens_for_target >= scenario.tokens_for_nonvacuous  # 8 < log2 384
    # 2,6k tokens cannot pay for a 60 kB file
    assert result.best_bits_bound > result.uniform_bits and not result.can_be_nonvacuous
    # the bound is the real one: recompute one cell directly
    first = result.scenarios[0]
    metrics = plan.scenario_metrics(
        first.loss_bits, first.square_mean, (0.01, 0.1, 0.5), (1, 10), 384, 4000
    )
    direct = compute_bound(
        BoundInput(
            vocab_size=384,
            n_tokens=result.data.n_tokens,
            size_bytes=result.artifact.size_bytes,
            metrics=metrics,
        )
    )
    assert first.bits_bound == direct.summary["bits_per_token_bound"]
    needed = first.tokens_for_nonvacuous
    assert needed is not None
    at = BoundInput(
        vocab_size=384, n_tokens=needed, size_bytes=result.artifact.size_bytes, metrics=metrics
    )
    assert compute_bound(at).summary["bits_per_token_bound"] < result.uniform_bits


def test_more_data_makes_the_plan_hopeful(toy_model: Path, texts_dir: Path) -> None:
    hopeless = _plan(toy_model, DataSource(source=str(texts_dir)), n_tokens=10**9)
    assert not hopeless.can_be_nonvacuous  # s = 16 chunks: the sampling term alone is vacuous
    result = _plan(
        toy_model, DataSource(source=str(texts_dir)), n_tokens=10**9, evaluation=MANY_SAMPLES
    )
    assert result.data.n_tokens == 10**9 and result.data.n_tokens_basis == "given"
    assert result.can_be_nonvacuous and result.optimistic_bits_bound < result.uniform_bits


def test_auto_bits_plans_the_smallest_grid_entry(toy_model: Path, texts_dir: Path) -> None:
    grid = ((2, 32), (4, 128))
    result = _plan(toy_model, DataSource(source=str(texts_dir)), auto_grid=grid)
    assert result.hyperparameter_configurations == 2
    facts = plan.describe_model(str(toy_model))
    sizes = [
        plan.estimate_artifact(facts, QuantizationSettings(bits=b, group_size=g)).size_bytes
        for b, g in grid
    ]
    assert result.artifact.size_bytes == min(sizes)


# --------------------------------------------------------------------------- the CLI

PLAN_KEYS = {
    "model",
    "architecture",
    "vocab_size",
    "uniform_bits",
    "artifact",
    "data",
    "cost",
    "delta",
    "statements",
    "samples",
    "sampling_method",
    "hyperparameter_configurations",
    "heldout",
    "alphas",
    "top_k",
    "scenarios",
    "target_bits",
    "best_bits_bound",
    "optimistic_bits_bound",
    "can_be_nonvacuous",
    "assumptions",
    "plan_version",
}


def test_plan_json_shape(
    toy_model: Path, texts_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["plan", str(toy_model), "--dataset", str(texts_dir), "--samples", "16"]
    code = run_cli([*argv, "--losses", "2,4", "--spreads", "8", "--target-bits", "7", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert set(result) == PLAN_KEYS
    assert result["plan_version"] == 1
    assert set(result["artifact"]) == {f.name for f in dataclasses.fields(PlanArtifact)}
    assert set(result["data"]) == {f.name for f in dataclasses.fields(PlanData)}
    assert set(result["cost"]) == {f.name for f in dataclasses.fields(PlanCost)}
    assert [(s["loss_bits"], s["square_mean"]) for s in result["scenarios"]] == [(2, 8), (4, 8)]
    assert result["target_bits"] == 7
    assert all(len(s["bounds"]) == 4 for s in result["scenarios"])  # the default α grid
    assert result["data"]["mode"] == "exact"


def test_plan_prints_a_table(
    toy_model: Path, texts_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["plan", str(toy_model), "--dataset", str(texts_dir), "--target-bits", "6"]) == 0
    out = capsys.readouterr().out
    assert "model.certz ≈" in out and "exact mode" in out and "n needed" in out
    assert "not measurements of this model" in out


@pytest.mark.parametrize(
    ("extra", "code", "says"),
    [
        (["--tokens-per-byte", "2"], 3, "--tokens-per-byte"),
        (["--bits", "9"], 3, "--bits"),
        (["--losses", "a,b"], 3, "--losses"),
        (["--alphas", ""], 2, "--alphas"),
        (["--target-bits", "-1"], 3, "--target-bits"),
    ],
)
def test_plan_bad_input_is_one_line(
    toy_model: Path,
    texts_dir: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    code: int,
    says: str,
) -> None:
    assert run_cli(["plan", str(toy_model), "--dataset", str(texts_dir), *extra]) == code
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_plan_of_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["plan", str(tmp_path / "nothing"), "--dataset", str(tmp_path)]) == 4
    assert "no such model" in capsys.readouterr().err


def test_require_nonvacuous_stops_a_hopeless_run_before_compressing(
    toy_model: Path, texts_dir: Path, tmp_path: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    argv = ["run", str(toy_model), "--dataset", str(texts_dir), "--samples", "6"]
    assert (
        run_cli([*argv, "--chunk-tokens", "32", "-o", str(run_dir), "--require-nonvacuous"]) == 15
    )
    err = capsys.readouterr().err
    assert "plan:" in err and "cannot be non-vacuous" in err and "Traceback" not in err
    assert "sampling term of s = 6 observations" in err  # 6 chunks: no n is enough
    assert not (run_dir / "model.certz").exists()
    assert not home.exists()  # not even a signing key was made


def test_hub_model_plan_reads_only_headers(
    toy_model: Path, texts_dir: Path, hub_server: Any
) -> None:
    hub_server.create_repo("alice/toy")
    files = {path.name: path.read_bytes() for path in toy_model.iterdir() if path.is_file()}
    hub_server.commit_files("alice/toy", files)
    hub_server.served_ranges.clear()
    facts = plan.describe_model("alice/toy", endpoint=hub_server.endpoint, token=hub_server.token)
    local = plan.describe_model(str(toy_model))
    assert [(s.name, s.shape, s.dtype) for s in sorted(facts.specs, key=lambda s: s.name)] == [
        (s.name, s.shape, s.dtype) for s in sorted(local.specs, key=lambda s: s.name)
    ]
    weights = [r for r in hub_server.served_ranges if r[1].endswith(".safetensors")]
    assert weights, "the headers were read from the server"
    size = len(files["model.safetensors"])
    assert sum(stop - start for _, _, start, stop in weights) < size / 2
    assert facts.hub and facts.resolved.revision == hub_server.head("alice/toy")
    settings = QuantizationSettings()
    hub_artifact = plan.estimate_artifact(facts, settings)
    local_artifact = plan.estimate_artifact(local, settings)
    assert hub_artifact.quantized_bytes == local_artifact.quantized_bytes
    result = plan.make_plan(facts, DataSource(source=str(texts_dir)), SMALL_EVALUATION, settings)
    assert result.cost.model_download_bytes > 0


def test_plan_record_round_trips_to_json(toy_model: Path, texts_dir: Path) -> None:
    result = _plan(toy_model, DataSource(source=str(texts_dir)))
    text = json.dumps(to_dict(result), allow_nan=False)
    assert json.loads(text)["artifact"]["size_bytes"] == result.artifact.size_bytes


def _run_settings(model: Path, dataset: str, tmp_path: Path, **options: Any) -> RunSettings:
    return RunSettings(
        model=str(model),
        out_dir=str(tmp_path / "run"),
        key_dir=str(tmp_path / "keys"),
        dataset=dataset,
        evaluation=options.pop("evaluation", SMALL_EVALUATION),
        **options,
    )


def test_preflight_lets_a_hopeful_run_through(
    toy_model: Path, texts_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hopeful = _plan(
        toy_model, DataSource(source=str(texts_dir)), n_tokens=10**9, evaluation=MANY_SAMPLES
    )
    monkeypatch.setattr(cli_plan, "plan_run", lambda settings: hopeful)
    notes: list[str] = []
    settings = _run_settings(toy_model, str(texts_dir), tmp_path)
    assert cli_plan.preflight(settings, require_nonvacuous=True, log=notes.append) is hopeful
    assert notes == []


def test_preflight_without_a_plan_says_so_and_goes_on(toy_model: Path, tmp_path: Path) -> None:
    notes: list[str] = []
    settings = _run_settings(toy_model, str(tmp_path / "no-such-data"), tmp_path)
    assert cli_plan.preflight(settings, require_nonvacuous=True, log=notes.append) is None
    assert len(notes) == 1 and notes[0].startswith("no plan:")


def test_hopeless_message_names_the_bound_and_the_n(toy_model: Path, texts_dir: Path) -> None:
    result = _plan(toy_model, DataSource(source=str(texts_dir)), evaluation=MANY_SAMPLES)
    assert not result.can_be_nonvacuous
    message = cli_plan.hopeless_message(result)
    assert f"{result.optimistic_bits_bound:.3f}" in message
    assert "needs about n ≥" in message and "\n" not in message


def test_gptq_is_priced(
    toy_model: Path, texts_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A GPTQ artifact adds its calibration passes to the compress estimate; an RTN one
    does not; --bits auto prices only the grid's GPTQ half."""
    argv = ["plan", str(toy_model), "--dataset", str(texts_dir), "--json"]
    seconds = {}
    for name, extra in {
        "rtn": ["--quantizer", "rtn"],
        "gptq": ["--quantizer", "gptq", "--calibration-tokens", "4096"],
        "auto": ["--bits", "auto", "--calibration-tokens", "4096"],
    }.items():
        assert run_cli([*argv, *extra]) == 0
        result = json.loads(capsys.readouterr().out)
        seconds[name] = result["cost"]["compress_seconds"]
        parameters, threads = result["artifact"]["parameters"], result["cost"]["cpu_threads"]
    one_gptq = parameters * 4096 * plan.GPTQ_THREAD_SECONDS_PER_PARAMETER_TOKEN / threads
    assert seconds["gptq"] == pytest.approx(seconds["rtn"] + one_gptq, rel=1e-9)
    grid = len(DEFAULT_AUTO_GRID)
    assert seconds["auto"] == pytest.approx(
        2 * grid * parameters / plan.COMPRESS_PARAMETERS_PER_SECOND + grid * one_gptq, rel=1e-9
    )
