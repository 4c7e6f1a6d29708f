"""``certify run``: the whole job in one command (see certify/pipeline.py)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import typer
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from certify import pipeline
from certify.cli import _options as options
from certify.cli._app import (
    app,
    console,
    default_key_dir,
    default_shard_cache,
    env,
    err_console,
    print_json,
    sampling_workers,
    start_distributed,
)
from certify.cli._plan import preflight
from certify.container import check_settings
from certify.errors import UsageError
from certify.quantize import GPTQ_METHOD, RTN_METHOD
from certify.records import (
    DEFAULT_AUTO_GRID,
    QuantizationSettings,
    RunResult,
    RunSettings,
)
from certify.risk import resolve_device

RUN_HELP = """Compress MODEL, measure its risk on data, bound it, sign and publish — one command.

Stages: resolve MODEL → compress to [cyan]model.certz[/cyan] → tokenize the dataset →
decode the artifact → evaluate the [bold]decoded[/bold] model on sampled chunks → bound →
[cyan]certificate.json[/cyan] → sign ([cyan]certificate.dsse.json[/cyan]) → model card
([cyan]README.md[/cyan] + [cyan]bound.png[/cyan]) → optional push to the Hub. Everything
lands in RUN_DIR (default [cyan]runs/<model name>[/cyan]), with [cyan]risk.json[/cyan] and
[cyan]run.log[/cyan] (one JSON line per stage, with timings).

Re-running the same command reuses finished stages (checked by content hashes);
changing an input redoes only the stages it affects. Ctrl-C leaves nothing
half-written: run the same command again to continue.

Without --dataset, the first [cyan]datasets:[/cyan] entry of the model card is read whole
in sampled mode; with none declared, the public pretraining corpus HuggingFaceFW/fineweb
(sampled, documents cut to 4096 tokens). The certificate records which, and says the
data is not known to be the training data unless the card declares it. Sampled mode
draws --accepted-units units and scores --chunks-per-unit chunks in each; n is then
bounded below from the draws instead of counted (docs/DATA.md).

The weights are quantized with GPTQ (Hessian-aware rounding, layer by layer) calibrated
on --calibration-tokens tokens drawn from the dataset with their own random stream (never
the certified sample), or from --calibration text; --quantizer rtn rounds to nearest and
needs no data. The artifact records the calibration's source, sha256 and seed. With
--heldout, GPTQ must be calibrated on other text (--calibration) or replaced by RTN.

[cyan]--bits auto[/cyan] tries bits {2,3,4} × group size {32,128} × quantizer
{rtn, gptq} (only the one given with --quantizer, if any), keeps the tightest bits bound
and counts the 12 (or 6) configurations in the prior (ln 12 nats), so the certificate
stays valid.

The defaults (10000 samples of 1024 tokens) suit a GPU; on a CPU certify prints an
estimate of the time — use e.g. --samples 64 --chunk-tokens 256 for a quick look.
The signing key is made on first use in $CERTIFY_HOME/keys (default
~/.config/certify/keys); CERTIFY_KEY_PASSPHRASE encrypts it. HF_TOKEN and
HF_ENDPOINT are used for the Hub.

[bold]Examples[/bold]

  certify run meta-llama/Llama-2-7b-hf --bits 4 --push --repo-id me/llama-2-7b-certified

  certify run ./my-model --dataset ./texts/ --samples 64 --chunk-tokens 256 -o runs/mine

  certify run model.gguf --dataset data.jsonl --bits auto --json

  torchrun --nproc_per_node 8 -m certify run meta-llama/Llama-2-7b-hf -o runs/llama
  (every GPU evaluates a share of the chunks; rank 0 writes, signs and pushes)
"""


def default_run_dir(model: str) -> Path:
    """runs/<last part of the model name, without .gguf>."""
    name = Path(model.rstrip("/")).name or "model"
    if name.lower().endswith(".gguf"):
        name = name[: -len(".gguf")]
    return Path("runs") / re.sub(r"[^\w.\-]+", "-", name)


class _StageProgress:
    """One rich progress row per stage, created as stages start."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        task = self.tasks.get(stage)
        if task is None:
            task = self.progress.add_task(stage, total=None)
            self.tasks[stage] = task
        if total > 0:
            self.progress.update(task, completed=done, total=total)
        if done == 1 and total == 1:
            self.progress.update(task, completed=1, total=1, description=f"{stage} ✓")


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary_table(result: RunResult) -> Table:
    """Per metric: empirical risk, bound, perplexity bound."""
    table = Table(title="Certified token-level risk", title_justify="left")
    table.add_column("metric")
    table.add_column("α / k", justify="right")
    table.add_column("empirical", justify="right")
    table.add_column("bound", justify="right", style="bold")
    table.add_column("perplexity bound", justify="right")
    for metric in result.metrics:
        if metric.name == "bits":
            name, label = "bits/token", f"α={metric.alpha:g}"
        else:
            name, label = "top-k error", f"k={metric.k}"
        perplexity = "-" if metric.perplexity_bound is None else f"{metric.perplexity_bound:.4g}"
        table.add_row(name, label, _number(metric.empirical), _number(metric.bound), perplexity)
    return table


def stage_table(result: RunResult) -> Table:
    """Time per stage (reused stages marked)."""
    table = Table(title="Stages", title_justify="left")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("")
    for timing in result.stages:
        table.add_row(timing.stage, f"{timing.seconds:.1f}", "reused" if timing.reused else "")
    table.add_row("[bold]total[/bold]", f"{sum(t.seconds for t in result.stages):.1f}", "")
    return table


def _headline(result: RunResult) -> str:
    quantization = result.quantization
    lines = [
        f"model.certz: {result.size_bytes:,} bytes, {result.bits_per_parameter:.3f} bits/param "
        f"({quantization.get('method')}, {quantization.get('bits')} bits, "
        f"group size {quantization.get('group_size')})"
    ]
    if result.bits_per_token_bound is not None:
        perplexity = (
            "overflows" if result.perplexity_bound is None else f"{result.perplexity_bound:.4g}"
        )
        vacuous = (
            f"  [yellow](vacuous: a uniform guess scores {result.uniform_bits_per_token:.3f}; "
            "more data or a smaller file tightens it)[/yellow]"
            if result.vacuous and result.uniform_bits_per_token is not None
            else ""
        )
        lines.append(
            f"[bold]bits per token ≤ {result.bits_per_token_bound:.4f}, "
            f"perplexity ≤ {perplexity}[/bold]{vacuous}"
        )
    if result.search:
        tried = ", ".join(
            ("gptq " if c.method == GPTQ_METHOD else "")
            + f"{c.bits}b/g{c.group_size}"
            + ("" if c.bits_per_token_bound is None else f" {c.bits_per_token_bound:.3f}")
            + (" ←" if c.chosen else "")
            for c in result.search
        )
        lines.append(f"--bits auto searched {len(result.search)} configurations: {tried}")
    lines.append(
        f"signed with key {result.key_fingerprint}"
        + (f" (created {result.key_path})" if result.key_created else "")
    )
    if result.pushed:
        lines.append(f"pushed: {result.pushed.commit_url or result.pushed.repo_url}")
    lines.append(
        f"run folder: {result.run_dir}  (check it: certify verify {result.run_dir} "
        f"--key {result.public_key_path})"
    )
    return "\n".join(lines)


def _quiet_transformers() -> None:
    """transformers' own loading bars would interleave with certify's progress display."""
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    transformers_logging.disable_progress_bar()


@app.command("run", help=RUN_HELP)
def run_command(
    model: str = typer.Argument(..., metavar="MODEL", help="Hub id, model folder or .gguf file."),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        "-d",
        help="Hub dataset id, text/jsonl/parquet file or folder, or a token-shard folder.",
    ),
    bits: str = options.BITS,
    group_size: int = options.GROUP_SIZE,
    quantizer: str | None = options.QUANTIZER,
    calibration: str | None = options.CALIBRATION,
    calibration_tokens: int = options.CALIBRATION_TOKENS,
    samples: int = options.SAMPLES,
    chunk_tokens: int = options.CHUNK_TOKENS,
    context_tokens: int = options.CONTEXT_TOKENS,
    alphas: str = options.ALPHAS,
    top_k: str = options.TOP_K,
    delta: float = options.DELTA,
    heldout: bool = options.HELDOUT,
    exhaustive: bool = options.EXHAUSTIVE,
    seed: int | None = options.SEED,
    max_documents: int | None = options.MAX_DOCUMENTS,
    text_column: str = options.TEXT_COLUMN,
    data_mode: str = options.DATA_MODE,
    accepted_units: int = options.ACCEPTED_UNITS,
    chunks_per_unit: int = options.CHUNKS_PER_UNIT,
    truncate_tokens: int | None = options.TRUNCATE_TOKENS,
    dataset_config: str | None = options.DATASET_CONFIG,
    split: str = options.SPLIT,
    extensions: str = options.EXTENSIONS,
    exclude: list[str] = options.EXCLUDE,
    decode_errors: str = options.DECODE_ERRORS,
    revision: str | None = options.MODEL_REVISION,
    dataset_revision: str | None = options.DATASET_REVISION,
    key: Path | None = typer.Option(
        None, "--key", help="Signing key (PEM); default: made on first use in the key folder."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Run folder (default runs/<model name>)."
    ),
    push: bool = typer.Option(False, "--push", help="Publish the run folder to the Hub."),
    repo_id: str | None = typer.Option(None, "--repo-id", help="Hub repo to push to (NS/NAME)."),
    private: bool = typer.Option(False, "--private", help="Create the pushed repo private."),
    push_revision: str | None = typer.Option(
        None, "--push-branch", help="Branch to push to (default main)."
    ),
    endpoint: str | None = options.ENDPOINT,
    device: str = options.DEVICE,
    dtype: str = options.DTYPE,
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help="Allow models whose code lives on the Hub."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
    show_plan: bool = typer.Option(
        True, "--plan/--no-plan", help="Print certify plan's estimates first (metadata only)."
    ),
    require_nonvacuous: bool = typer.Option(
        False,
        "--require-nonvacuous",
        help="Stop before the heavy stages (exit code 15) when the plan says the bound "
        "cannot be non-vacuous for any assumed loss.",
    ),
) -> None:
    """Run every stage (see RUN_HELP)."""
    parsed_bits = options.parse_bits(bits)
    if (private or push_revision is not None) and not push:
        raise UsageError("--private and --push-branch only make sense with --push", field="--push")
    if repo_id is not None and not push:
        raise UsageError("--repo-id given without --push", field="--repo-id")
    method, auto_methods = options.parse_quantizers(quantizer, auto=parsed_bits is None)
    quantization = QuantizationSettings(
        method=RTN_METHOD,  # checked as RTN; GPTQ adds its calibration fields later
        bits=parsed_bits if parsed_bits is not None else 4,
        group_size=group_size,
    )
    check_settings(quantization)  # before any download: --bits 1 fails here, not later
    quantization = dataclasses.replace(quantization, method=method)
    if calibration is not None and GPTQ_METHOD not in (method, *auto_methods):
        raise UsageError("--calibration is only used by --quantizer gptq", field="--calibration")
    evaluation = options.evaluation_settings(
        chunk_tokens=chunk_tokens,
        context_tokens=context_tokens,
        samples=samples,
        exhaustive=exhaustive,
        alphas=alphas,
        top_k=top_k,
        seed=seed,
        device=device,
        dtype=dtype,
    )
    if int(env("WORLD_SIZE") or "1") > 1:  # under torchrun: join the process group
        rank, _, device = start_distributed(resolve_device(device))
        if rank != 0:
            err_console.quiet = True
        evaluation = dataclasses.replace(evaluation, device=device)
    token = env("HF_TOKEN")
    endpoint = endpoint or env("HF_ENDPOINT")
    settings = RunSettings(
        model=model,
        out_dir=str(output if output is not None else default_run_dir(model)),
        key_dir=str(default_key_dir()),
        dataset=dataset,
        model_revision=revision,
        dataset_revision=dataset_revision,
        text_column=text_column,
        max_documents=max_documents,
        quantization=quantization,
        auto_grid=DEFAULT_AUTO_GRID if parsed_bits is None else (),
        auto_methods=auto_methods,
        calibration=calibration,
        calibration_tokens=calibration_tokens,
        evaluation=evaluation,
        delta=delta,
        heldout=heldout,
        key_path=str(key) if key is not None else None,
        push=push,
        repo_id=repo_id,
        private=private,
        push_branch=push_revision,
        endpoint=endpoint,
        trust_remote_code=trust_remote_code,
        shard_cache_dir=str(default_shard_cache()),
        dataset_config=dataset_config,
        split=split,
        extensions=options.parse_extensions(extensions),
        exclude=tuple(exclude),
        decode_errors=decode_errors,  # type: ignore[arg-type]
        data_mode=data_mode,  # type: ignore[arg-type]
        accepted_units=accepted_units,
        chunks_per_unit=chunks_per_unit,
        truncate_tokens=truncate_tokens,
        workers=sampling_workers(),
        token=token,
        key_passphrase=env("CERTIFY_KEY_PASSPHRASE"),
    )

    def log(message: str) -> None:
        err_console.print(f"[cyan]note:[/cyan] {message}", soft_wrap=True)

    progress = Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    _quiet_transformers()
    # --- plan first (certify/cli/_plan.py): estimates from metadata, and the
    # --require-nonvacuous gate, before any heavy stage
    if show_plan or require_nonvacuous:
        preflight(settings, require_nonvacuous=require_nonvacuous, log=log)
    # --- end plan
    with progress:
        result = pipeline.run(settings, progress=_StageProgress(progress), log=log)
    if result is None:  # a torchrun worker (rank > 0): rank 0 reports
        return
    if as_json:
        print_json(pipeline.result_to_dict(result))
        return
    console.print(summary_table(result))
    console.print(stage_table(result))
    console.print(_headline(result), soft_wrap=True)
