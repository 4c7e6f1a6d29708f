"""certify run (pipeline.py + cli/_run.py): end to end on a toy model, stage reuse,
--bits auto, Ctrl-C, exit codes, dataset defaults, and the README's runnable examples."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from certify import pipeline
from certify._files import file_sha256
from certify.calibration import (
    CalibrationBatch,
    calibration_batch,
    calibration_sha256,
    check_heldout_calibration,
)
from certify.cli import run_cli
from certify.data import bos_token_id, cached_tokens, load_tokenizer
from certify.errors import InvalidInputError, UsageError
from certify.records import (
    DataSource,
    EvaluationSettings,
    QuantizationSettings,
    ResolvedModel,
    RunSettings,
)
from certify.streams import derive_seed

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--samples", "6", "--chunk-tokens", "32", "--alphas", "0.01,0.1", "--top-k", "1,10"]


@pytest.fixture
def texts_dir(tmp_path: Path, sample_texts: tuple[str, ...]) -> Path:
    folder = tmp_path / "texts"
    folder.mkdir()
    for number, text in enumerate(sample_texts):
        (folder / f"doc{number:02d}.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CERTIFY_HOME in tmp: keys and shard cache never touch the real home."""
    folder = tmp_path / "certify-home"
    monkeypatch.setenv("CERTIFY_HOME", str(folder))
    monkeypatch.delenv("CERTIFY_KEY_PASSPHRASE", raising=False)
    return folder


def _run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    code = run_cli([*argv, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _public_key(home: Path) -> Path:
    return home / "keys" / "certify-signing-key.pub.pem"


def test_run_verify_push_and_verify_from_hub(
    toy_model: Path,
    texts_dir: Path,
    home: Path,
    tmp_path: Path,
    hub_server,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / "run"
    argv = ["run", str(toy_model), "--dataset", str(texts_dir), *SMALL, "-o", str(run_dir)]
    result = _run_json(capsys, argv)

    for name in (
        "model.certz",
        "certificate.json",
        "certificate.dsse.json",
        "README.md",
        "bound.png",
        "risk.json",
        "run.log",
    ):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.rglob("*.tmp-*"))
    assert result["key_created"] is True
    assert Path(result["public_key_path"]) == _public_key(home)
    assert {metric["name"] for metric in result["metrics"]} == {"bits", "top_k_error"}
    assert result["bits_per_parameter"] > 0
    stages = [timing["stage"] for timing in result["stages"]]
    # GPTQ (the default quantizer) draws its calibration windows first
    assert stages[:6] == ["resolve", "calibrate", "compress", "tokenize", "decode", "evaluate"]
    # the calibration tokenized the dataset into the shard cache; tokenize reuses it
    assert result["reused_stages"] == ["tokenize"]
    assert result["quantization"]["method"] == "gptq"

    certificate = json.loads((run_dir / "certificate.json").read_text())
    assert certificate["artifact"]["size_bytes"] == (run_dir / "model.certz").stat().st_size
    # published files name local sources by their last component, never by a path
    assert certificate["data"]["source"] == texts_dir.name
    assert certificate["model"]["source"] == toy_model.name
    for name in ("certificate.json", "README.md", "risk.json"):
        assert str(tmp_path) not in (run_dir / name).read_text(), name
    assert certificate["bound"]["prior"]["hyperparameter_configurations"] == 1
    log_lines = [json.loads(line) for line in (run_dir / "run.log").read_text().splitlines()]
    assert any(
        line.get("event") == "done" and line.get("stage") == "evaluate" for line in log_lines
    )

    assert run_cli(["verify", str(run_dir), "--key", str(_public_key(home))]) == 0
    capsys.readouterr()

    # push (every stage reused, then one commit), then verify from the repo id
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.endpoint)
    pushed = _run_json(
        capsys,
        [*argv, "--push", "--repo-id", "alice/toy-certified", "--endpoint", hub_server.endpoint],
    )
    assert pushed["pushed"]["repo_id"] == "alice/toy-certified"
    # with the run's key, a second commit pins the card's verify line to the first
    assert pushed["pushed"]["card_commit_oid"] and pushed["pushed"]["commit_oid"]
    assert {"compress", "evaluate", "certificate", "sign"} <= set(pushed["reused_stages"])
    published = set(pushed["pushed"]["files"])
    assert {"model.certz", "certificate.json", "certificate.dsse.json", "README.md"} <= published
    assert not any(name.startswith(".") for name in published)
    code = run_cli(["verify", "alice/toy-certified", "--key", str(_public_key(home))])
    assert code == 0, capsys.readouterr().err


def test_rerun_reuses_stages_and_changes_redo_what_they_affect(
    toy_model: Path, texts_dir: Path, home: Path, tmp_path: Path
) -> None:
    settings = RunSettings(
        model=str(toy_model),
        out_dir=str(tmp_path / "run"),
        key_dir=str(home / "keys"),
        dataset=str(texts_dir),
        evaluation=EvaluationSettings(
            chunk_tokens=32, samples=6, alphas=(0.1,), top_k=(1,), device="cpu"
        ),
    )
    first = pipeline.run(settings)
    assert first.reused_stages == ()
    certificate_bytes = Path(first.certificate_path).read_bytes()

    again = pipeline.run(settings)
    assert set(again.reused_stages) >= {
        "compress",
        "tokenize",
        "evaluate",
        "certificate",
        "sign",
        "card",
    }
    assert "decode" not in {timing.stage for timing in again.stages}
    assert Path(again.certificate_path).read_bytes() == certificate_bytes

    # more samples: the artifact and shards stay, the evaluation and everything after redo
    more = pipeline.run(
        RunSettings(
            **{
                **settings.__dict__,
                "evaluation": EvaluationSettings(
                    chunk_tokens=32, samples=9, alphas=(0.1,), top_k=(1,), device="cpu"
                ),
            }
        )
    )
    assert {"compress", "tokenize"} <= set(more.reused_stages)
    assert not {"evaluate", "certificate", "sign"} & set(more.reused_stages)

    # same file names, different content: the tokenizer sees new data, evaluation redoes
    (texts_dir / "doc00.txt").write_text("changed content " * 50, encoding="utf-8")
    changed = pipeline.run(settings)
    assert "compress" in changed.reused_stages
    assert not {"tokenize", "evaluate"} & set(changed.reused_stages)

    # another bit width: compress and everything downstream redo
    other_bits = pipeline.run(
        RunSettings(**{**settings.__dict__, "quantization": QuantizationSettings(bits=3)})
    )
    assert "compress" not in other_bits.reused_stages
    assert other_bits.quantization["bits"] == 3


def test_bits_auto_counts_its_search(
    toy_model: Path,
    texts_dir: Path,
    home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / "auto"
    result = _run_json(
        capsys,
        [
            "run",
            str(toy_model),
            "--dataset",
            str(texts_dir),
            *SMALL,
            "--bits",
            "auto",
            "--quantizer",
            "rtn",
            "-o",
            str(run_dir),
        ],
    )
    certificate = json.loads((run_dir / "certificate.json").read_text())
    grid_size = len(result["search"])
    assert grid_size == 6
    assert certificate["bound"]["prior"]["hyperparameter_configurations"] == grid_size
    chosen = [candidate for candidate in result["search"] if candidate["chosen"]]
    assert len(chosen) == 1
    assert certificate["artifact"]["quantization"]["bits"] == chosen[0]["bits"]
    assert certificate["artifact"]["quantization"]["group_size"] == chosen[0]["group_size"]
    # the kept candidate had the tightest search bound
    assert chosen[0]["bits_per_token_bound"] == min(
        candidate["bits_per_token_bound"] for candidate in result["search"]
    )
    assert any(
        "--bits auto searched 6 configurations" in text for text in certificate["assumptions"]
    )
    # certified on a sample independent of the search sample: the same derived seed, the
    # certification child stream instead of the search one
    sampling = certificate["data"]["sampling"]
    assert sampling["stream"] == "certification"
    assert sampling["seed"] == derive_seed(sampling["seed_inputs"])
    label = f"b{chosen[0]['bits']}-g{chosen[0]['group_size']}"
    search = json.loads((run_dir / ".certify" / "candidates" / label / "risk.json").read_text())
    assert search["sampling"]["stream"] == "search"
    assert search["sampling"]["seed"] == sampling["seed"]
    assert run_cli(["verify", str(run_dir), "--key", str(_public_key(home))]) == 0


def test_bits_auto_without_quantizer_searches_both(
    toy_model: Path,
    texts_dir: Path,
    home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / "auto"
    argv = ["run", str(toy_model), "--dataset", str(texts_dir), *SMALL, "--bits", "auto",
            "--calibration-tokens", "128", "-o", str(run_dir)]  # fmt: skip
    result = _run_json(capsys, argv)
    certificate = json.loads((run_dir / "certificate.json").read_text())
    methods = [candidate["method"] for candidate in result["search"]]
    assert sorted(set(methods)) == ["gptq", "rtn-groupwise"] and len(methods) == 12
    assert certificate["bound"]["prior"]["hyperparameter_configurations"] == 12
    chosen = next(candidate for candidate in result["search"] if candidate["chosen"])
    assert certificate["artifact"]["quantization"]["method"] == chosen["method"]
    assert any("(quantizer, bits, group size)" in text for text in certificate["assumptions"])
    # one calibration batch serves every GPTQ candidate
    assert (run_dir / ".certify" / "candidates" / "gptq-b4-g128" / "model.certz").is_file()
    assert run_cli(["verify", str(run_dir), "--key", str(_public_key(home))]) == 0


def test_gptq_run_records_its_calibration_and_verifies(
    toy_model: Path,
    texts_dir: Path,
    home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / "gptq"
    argv = ["run", str(toy_model), "--dataset", str(texts_dir), *SMALL, "--quantizer", "gptq",
            "--calibration-tokens", "300", "-o", str(run_dir)]  # fmt: skip
    result = _run_json(capsys, argv)
    certificate = json.loads((run_dir / "certificate.json").read_text())
    quantization = certificate["artifact"]["quantization"]
    assert result["quantization"]["method"] == quantization["method"] == "gptq"
    # the calibration is named (no local path), fingerprinted and seeded in the certificate
    assert quantization["calibration_source"] == "texts"
    windows = np.load(run_dir / ".certify" / "calibration.npy")
    assert windows.size == quantization["calibration_tokens"] >= 300
    assert calibration_sha256(windows) == quantization["calibration_sha256"]
    # the calibration draw and the certified draw come from different child streams
    assert certificate["data"]["sampling"]["stream"] == "certification"
    assert isinstance(quantization["calibration_seed"], int)
    assert run_cli(["verify", str(run_dir), "--key", str(_public_key(home))]) == 0
    capsys.readouterr()
    # the same command again reuses the calibration and the artifact
    first_sha256 = file_sha256(run_dir / "model.certz")
    again = _run_json(capsys, argv)
    assert {"calibrate", "compress"} <= set(again["reused_stages"])
    assert file_sha256(run_dir / "model.certz") == first_sha256


def test_gptq_with_heldout_refuses_calibration_on_the_certified_data(
    toy_model: Path, texts_dir: Path, home: Path, tmp_path: Path, sample_texts: tuple[str, ...]
) -> None:
    run_dir = tmp_path / "r"
    argv = ["run", str(toy_model), "--dataset", str(texts_dir), *SMALL, "--heldout",
            "--quantizer", "gptq", "-o", str(run_dir)]  # fmt: skip
    assert run_cli(argv) == 2  # by default GPTQ calibrates on the run's dataset
    same = str(texts_dir / ".." / texts_dir.name)  # the same folder, spelled otherwise
    assert run_cli([*argv, "--calibration", same]) == 2
    assert not (run_dir / "model.certz").exists()  # refused before any work
    other = tmp_path / "other.txt"
    other.write_text(sample_texts[0], encoding="utf-8")
    settings = RunSettings(
        model=str(toy_model),
        out_dir=str(run_dir),
        key_dir="k",
        dataset=str(texts_dir),
        heldout=True,
        quantization=QuantizationSettings(method="gptq"),
        calibration=str(other),
    )
    choice = pipeline.choose_dataset(settings, _resolved(toy_model))
    pipeline._check_heldout(settings, choice)  # other calibration text: allowed
    # RTN uses no data: held-out is fine with it whatever --calibration would say
    pipeline._check_heldout(
        RunSettings(**{**settings.__dict__, "quantization": QuantizationSettings()}), choice
    )
    # and when the token streams themselves are equal, the fingerprint check refuses
    with pytest.raises(UsageError, match="calibrated"):
        check_heldout_calibration(True, "abc", "abc")
    check_heldout_calibration(False, "abc", "abc")


@pytest.mark.parametrize("mode", ["exact", "sampled"])
def test_calibration_draw_is_seeded_and_apart_from_the_certified_draw(
    toy_model: Path, texts_dir: Path, tmp_path: Path, mode: str
) -> None:
    tokenizer = load_tokenizer(toy_model)
    data = DataSource(source=str(texts_dir), mode=mode, accepted_units=4, chunks_per_unit=1)  # type: ignore[arg-type]

    def draw(seed: int) -> tuple[CalibrationBatch, str]:
        return pipeline.draw_calibration(
            data, tokenizer, seed=seed, total_tokens=200, cache=tmp_path / "cache"
        )

    batch, fingerprint = draw(7)
    again, _ = draw(7)
    assert batch.sha256 == again.sha256 and batch.n_tokens >= 200
    assert (batch.tokens[:, 0] == bos_token_id(tokenizer)).all()  # windows start as scored ones
    assert draw(8)[0].sha256 != batch.sha256
    assert batch.source == "texts" and batch.seed == 7
    if mode == "exact":
        shards = cached_tokens(data, tokenizer, tmp_path / "cache")
        assert fingerprint == shards.record.shards_sha256
    else:  # the calibration units are not the certification draw of the same seed
        certified = pipeline.sample_tokens(
            data,
            tokenizer,
            EvaluationSettings(seed=7, chunk_tokens=32, samples=4),
            tmp_path / "cache",
            artifact_sha256="0" * 64,
        )
        assert fingerprint != certified.data.record.draws_sha256


def test_artifact_settings_carry_every_gptq_value_the_stage_is_keyed_on() -> None:
    batch = calibration_batch([np.arange(1, 9), np.arange(2, 10)], source="t", seed=5)
    rtn = QuantizationSettings(bits=3, group_size=64)
    assert pipeline.artifact_settings(rtn) is rtn
    gptq = pipeline.artifact_settings(dataclasses.replace(rtn, method="gptq"), batch)
    assert (gptq.bits, gptq.group_size, gptq.calibration_sha256) == (3, 64, batch.sha256)
    assert gptq.act_order is True and gptq.damping is not None  # the defaults, recorded
    with pytest.raises(InvalidInputError, match="calibration"):
        pipeline.artifact_settings(gptq)


def test_sigint_leaves_nothing_half_written_and_rerun_completes(
    toy_model: Path, home: Path, tmp_path: Path, sample_texts: tuple[str, ...]
) -> None:
    data = tmp_path / "big.txt"  # long enough that exhaustive evaluation takes a while
    data.write_text("\n".join(sample_texts) * 3, encoding="utf-8")
    run_dir = tmp_path / "run"
    argv = [
        "run", str(toy_model), "--dataset", str(data), "--exhaustive", "--chunk-tokens", "64",
        "--alphas", "0.01", "--top-k", "1", "--device", "cpu", "-o", str(run_dir),
    ]  # fmt: skip
    env = {**os.environ, "CERTIFY_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "certify", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = run_dir / "run.log"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            # decode, then evaluate: a few seconds of work in which to interrupt
            if log.is_file() and '"stage": "decode"' in log.read_text():
                break
            time.sleep(0.05)
        assert process.poll() is None, (
            "the run ended before the evaluate stage could be interrupted"
        )
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not list(run_dir.rglob("*.tmp-*"))
    assert not (run_dir / "certificate.json").exists()
    assert not (run_dir / "risk.json").exists()
    # every stage manifest left behind describes complete outputs
    for manifest_path in (run_dir / ".certify" / "stages").glob("*.json"):
        manifest = json.loads(manifest_path.read_text())
        for name, digest in manifest["outputs"].items():
            assert file_sha256(run_dir / name) == digest
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(event.get("event") == "interrupted" for event in events)

    assert run_cli(argv) == 0
    assert run_cli(["verify", str(run_dir), "--key", str(_public_key(home))]) == 0


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        (["--bits", "9"], 3),
        (["--bits", "many"], 3),
        (["--delta", "1.5"], 3),
        (["--alphas", "0.1,x"], 3),
        (["--top-k", "0"], 3),
        (["--samples", "1"], 3),
        (["--private"], 2),
        (["--repo-id", "alice/x"], 2),
        (["--samples", "lots"], 2),
        (["--key", "/no/such/key.pem"], 3),
    ],
)
def test_bad_arguments_give_documented_exit_codes(
    toy_model: Path, texts_dir: Path, home: Path, tmp_path: Path, extra: list[str], code: int
) -> None:
    argv = ["run", str(toy_model), "--dataset", str(texts_dir), *SMALL, "-o", str(tmp_path / "r")]
    assert run_cli([*argv, *extra]) == code


def test_missing_model_and_dataset_exit_codes(toy_model: Path, home: Path, tmp_path: Path) -> None:
    assert run_cli(["run", str(tmp_path / "nope"), "-o", str(tmp_path / "r")]) == 4
    missing_data = ["run", str(toy_model), "--dataset", str(tmp_path / "none.txt"), *SMALL]
    assert run_cli([*missing_data, "-o", str(tmp_path / "r")]) == 6


# --------------------------------------------------------------------------- dataset choice


def _resolved(folder: Path) -> ResolvedModel:
    return ResolvedModel(
        source=str(folder),
        revision="sha256:0",
        local_dir=str(folder),
        config={},
        architecture="LlamaForCausalLM",
        weight_files=(),
        tokenizer_files=(),
    )


def test_card_datasets_reads_front_matter() -> None:
    card = "---\nlicense: mit\ndatasets:\n- org/first\n- org/second\n---\n# Model\n"
    assert pipeline.card_datasets(card) == ["org/first", "org/second"]
    assert pipeline.card_datasets("---\ndatasets: org/only\n---\n") == ["org/only"]
    assert pipeline.card_datasets("# no front matter\ndatasets: [x]\n") == []
    assert pipeline.card_datasets("---\n: [broken\n---\n") == []


def test_dataset_default_uses_card_then_fallback(tmp_path: Path) -> None:
    settings = RunSettings(model=str(tmp_path), out_dir=str(tmp_path / "r"), key_dir="k")
    fallback = pipeline.choose_dataset(settings, _resolved(tmp_path))
    assert fallback.source == pipeline.FALLBACK_DATASET
    # issue 12: a dataset certify chooses is read whole, in sampled mode
    assert fallback.defaulted and fallback.max_documents is None and fallback.mode == "sampled"
    assert fallback.truncate_tokens == pipeline.FALLBACK_TRUNCATE_TOKENS
    assert "sampled mode" in fallback.note and fallback.assumption

    (tmp_path / "README.md").write_text("---\ndatasets:\n- org/pretrain\n---\n")
    declared = pipeline.choose_dataset(settings, _resolved(tmp_path))
    assert declared.source == "org/pretrain"
    assert "model card" in declared.note and declared.assumption
    assert declared.mode == "sampled" and declared.declared_training_data
    with pytest.raises(UsageError, match="max-documents"):
        pipeline.choose_dataset(
            RunSettings(**{**settings.__dict__, "max_documents": 5}), _resolved(tmp_path)
        )

    given = pipeline.choose_dataset(
        RunSettings(**{**settings.__dict__, "dataset": "mine.txt", "max_documents": 5}),
        _resolved(tmp_path),
    )
    assert (given.source, given.max_documents, given.defaulted) == ("mine.txt", 5, False)


def test_stage_store_rejects_changed_outputs(tmp_path: Path) -> None:
    store = pipeline.StageStore(tmp_path)
    (tmp_path / "out.bin").write_bytes(b"abc")
    store.store("stage", "inputs-1", ("out.bin",))
    assert store.lookup("stage", "inputs-1") is not None
    assert store.lookup("stage", "inputs-2") is None
    (tmp_path / "out.bin").write_bytes(b"abd")
    assert store.lookup("stage", "inputs-1") is None


def test_cpu_runs_get_a_time_estimate_up_front(toy_model: Path, tmp_path: Path) -> None:
    from certify.models import resolve_model

    notes: list[str] = []
    heavy = RunSettings(
        model=str(toy_model),
        out_dir=str(tmp_path / "r"),
        key_dir=str(tmp_path / "k"),
        evaluation=EvaluationSettings(samples=10**7, chunk_tokens=1024, device="cpu"),
    )
    (tmp_path / "r").mkdir()
    pipeline._Pipeline(heavy, None, notes.append)._warn_cpu(resolve_model(str(toy_model)))
    assert len(notes) == 1 and "evaluating on CPU" in notes[0] and "--samples" in notes[0]
    light = RunSettings(**{**heavy.__dict__, "evaluation": EvaluationSettings(samples=4)})
    notes.clear()
    pipeline._Pipeline(light, None, notes.append)._warn_cpu(resolve_model(str(toy_model)))
    assert notes == []


def test_cpu_estimate_scales_with_work() -> None:
    small = pipeline.cpu_estimate_seconds(10**8, 10**4, 2)
    assert pipeline.cpu_estimate_seconds(10**8, 10**5, 2) == pytest.approx(10 * small)
    assert pipeline.cpu_estimate_seconds(10**8, 10**4, 4) == pytest.approx(small / 2)


# --------------------------------------------------------------------------- README + CLI docs


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def runnable_blocks(markdown: str) -> list[list[str]]:
    """Command lines of the ```sh blocks preceded by ``<!-- runnable -->``."""
    blocks = re.findall(r"<!-- runnable -->\s*```(?:sh|bash|console)\n(.*?)```", markdown, re.S)
    commands = []
    for block in blocks:
        lines = [line.removeprefix("$ ").strip() for line in block.splitlines()]
        commands.append([line for line in lines if line and not line.startswith("#")])
    return commands


def test_readme_runnable_examples_run(
    toy_model_factory: Callable[..., Path],
    texts_dir: Path,
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The README's runnable examples, run in a folder holding ./tiny-model and ./texts."""
    import shutil

    workdir = tmp_path / "work"
    workdir.mkdir()
    shutil.copytree(toy_model_factory("llama"), workdir / "tiny-model")
    shutil.copytree(texts_dir, workdir / "texts")
    monkeypatch.chdir(workdir)
    blocks = runnable_blocks(_readme())
    assert blocks, "README.md has no <!-- runnable --> example"
    ran = 0
    for block in blocks:
        for line in block:
            words = shlex.split(line)
            assert words[0] == "certify", f"runnable README lines call certify: {line}"
            assert run_cli(words[1:]) == 0, line
            ran += 1
    assert ran >= 2


def test_readme_and_cli_name_the_same_commands() -> None:
    """Every command in the app has a line in README's reference, and README uses no other."""
    import typer.main

    from certify.cli import app

    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    readme = _readme()
    used = set(re.findall(r"^(?:\$ )?certify ([a-z][a-z-]*)", readme, re.M))
    assert used, "README.md shows no certify command"
    assert used <= commands, f"README uses commands the CLI lacks: {sorted(used - commands)}"
    listed = set(re.findall(r"^\| `certify ([a-z][a-z-]*)`", readme, re.M))
    assert listed == commands, (
        f"README's command table differs from the CLI: missing {sorted(commands - listed)}, "
        f"extra {sorted(listed - commands)}"
    )


def cli_reference() -> str:
    """docs/CLI.md: every command's options, generated from the typer app."""
    import typer.main

    from certify.cli import app

    group = typer.main.get_command(app)
    lines = [
        "# CLI reference",
        "",
        "Generated from the typer app by `tests/test_pipeline.py::cli_reference`; regenerate "
        "with `CERTIFY_UPDATE_DOCS=1 pytest tests/test_pipeline.py -k cli_reference`. "
        "`certify COMMAND --help` shows the same with examples.",
        "",
    ]
    for name in sorted(group.commands):  # type: ignore[attr-defined]
        command = group.commands[name]  # type: ignore[attr-defined]
        summary = (command.help or "").strip().split("\n")[0]
        summary = re.sub(r"\[/?[a-z ]+\]", "", summary)
        lines += [
            f"## certify {name}",
            "",
            summary,
            "",
            "| option | default | meaning |",
            "|---|---|---|",
        ]
        for param in command.params:
            if param.param_type_name == "argument":
                label = f"`{param.metavar or str(param.name).upper()}`"
                default = "required" if param.required else ""
            else:
                label = ", ".join(f"`{opt}`" for opt in param.opts)
                default = (
                    "" if param.default is None or param.default is False else f"`{param.default}`"
                )
            meaning = (getattr(param, "help", None) or "").replace("|", "\\|")
            lines.append(f"| {label} | {default} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def test_cli_reference_is_current() -> None:
    path = ROOT / "docs" / "CLI.md"
    expected = cli_reference()
    if os.environ.get("CERTIFY_UPDATE_DOCS"):
        path.write_text(expected, encoding="utf-8")
    assert path.is_file() and path.read_text(encoding="utf-8") == expected, (
        "docs/CLI.md is stale: run "
        "CERTIFY_UPDATE_DOCS=1 pytest tests/test_pipeline.py -k cli_reference"
    )


def test_push_without_repo_id_or_token_fails_before_any_work(
    toy_model: Path,
    texts_dir: Path,
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no stored token either
    run_dir = tmp_path / "r"
    argv = ["run", str(toy_model), "--dataset", str(texts_dir), *SMALL, "-o", str(run_dir)]
    assert run_cli([*argv, "--push"]) == 12
    err = capsys.readouterr().err
    assert "--repo-id" in err and "Traceback" not in err
    assert not (run_dir / "model.certz").exists()  # nothing was compressed first
