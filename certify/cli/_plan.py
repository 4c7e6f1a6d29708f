"""``certify plan``: what a run will produce and cost, before any heavy work (certify/plan.py).

:func:`plan_run` computes the plan of a :class:`~certify.records.RunSettings` (the model's
metadata, the dataset ``certify run`` would choose, the bound over assumed losses);
``certify run`` calls :func:`preflight` with it before its first heavy stage.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import typer
from rich.table import Table

from certify import pipeline, plan
from certify.cli import _options as options
from certify.cli._app import (
    app,
    console,
    default_key_dir,
    env,
    err_console,
    parse_float_list,
    print_json,
    sampling_workers,
)
from certify.container import check_settings
from certify.errors import CertifyError, HopelessPlanError
from certify.records import (
    DEFAULT_AUTO_GRID,
    QUANTIZER_METHODS,
    Plan,
    QuantizationSettings,
    RunSettings,
    to_dict,
)

PLAN_HELP = """Say what [bold]certify run[/bold] would produce and cost, before any heavy work.

From metadata only — no weight is read, no dataset is tokenized:

1. the expected size of [cyan]model.certz[/cyan] (bytes, bits per parameter) from the
   tensor shapes (safetensors headers, GGUF metadata) at --bits/--group-size: an
   estimate, with a low end for heavy-tailed weights (docs/PLAN.md says how close it came
   on the models measured);
2. the dataset's size: units, total weight W and documents (sampled mode), a byte count
   (exact mode), or n from a token-shard index; the n the bound will use;
3. the bits bound each α would give (the real v2 bound, certify bound's math) over a grid
   of [bold]assumed[/bold] per-token losses and spreads (--losses, --spreads; defaults
   measured on SmolLM2-135M, not on this model);
4. the n needed for a non-vacuous bound (below log2 V) and for --target-bits;
5. the tokens, bytes and time the run will cost, at documented rates.

The same options as [bold]certify run[/bold] choose the model, data and evaluation.

[bold]Examples[/bold]

  certify plan meta-llama/Llama-2-7b-hf --dataset HuggingFaceFW/fineweb --truncate-tokens 4096

  certify plan ./my-model --dataset ./texts/ --bits 3 --target-bits 4 --json
"""


# --------------------------------------------------------------------------- shared with run


def plan_run(
    settings: RunSettings,
    *,
    losses: tuple[float, ...] = plan.DEFAULT_LOSSES_BITS,
    spreads: tuple[float, ...] = plan.DEFAULT_SPREADS_BITS2,
    target_bits: float | None = None,
    tokens_per_byte: float = plan.DEFAULT_TOKENS_PER_BYTE,
    n_tokens: int | None = None,
) -> Plan:
    """The plan of a ``certify run`` with ``settings`` (metadata only)."""
    facts = plan.describe_model(
        settings.model, settings.model_revision, endpoint=settings.endpoint, token=settings.token
    )
    choice = pipeline.choose_dataset(settings, facts.resolved)
    # --bits auto makes an artifact per (quantizer, bits, group size); a plain run one
    grid = pipeline.search_grid(settings)
    methods = [method for method, _, _ in grid] or [settings.quantization.method]
    return plan.make_plan(
        facts,
        pipeline.data_source(settings, choice),
        settings.evaluation,
        settings.quantization,
        delta=settings.delta,
        heldout=settings.heldout,
        auto_grid=settings.auto_grid,
        hyperparameter_configurations=len(methods),
        gptq_configurations=methods.count(QUANTIZER_METHODS[1]),
        calibration_tokens=settings.calibration_tokens,
        losses=losses,
        spreads=spreads,
        target_bits=target_bits,
        tokens_per_byte=tokens_per_byte,
        n_tokens=n_tokens,
        threads=os.cpu_count() or 1,
        workers=settings.workers,
        token=settings.token,
        endpoint=settings.endpoint,
    )


def hopeless_message(result: Plan) -> str:
    """Why ``--require-nonvacuous`` stops a run (one line)."""
    best = min(result.scenarios, key=lambda s: (s.loss_bits, s.square_mean))
    needed = best.tokens_for_nonvacuous
    need = (
        f"it needs about n ≥ {_count(needed)} tokens"
        if needed is not None
        else f"even 10^16 tokens would not do: the assumed loss plus the sampling term of "
        f"s = {result.samples:,} observations stays above log2 V (more --samples or "
        "--accepted-units shrink that term)"
    )
    return (
        f"the plan says the bound cannot be non-vacuous: even at an assumed loss of "
        f"{best.loss_bits:g} bits/token and the low size estimate "
        f"({_bytes(result.artifact.size_bytes_low)}) the best bits bound is "
        f"{result.optimistic_bits_bound:.3f} ≥ log2 V = {result.uniform_bits:.3f}; {need} "
        f"(this data: n ≈ {_count(result.data.n_tokens)})"
    )


def preflight(
    settings: RunSettings,
    *,
    require_nonvacuous: bool,
    log: Callable[[str], None],
) -> Plan | None:
    """``certify run``'s plan: printed concisely to stderr before the heavy stages.

    With ``require_nonvacuous`` raises :class:`HopelessPlanError` (exit code 15) when the
    plan says no assumed loss makes the bound non-vacuous. A plan that cannot be computed
    is reported and the run goes on (the run's own checks then speak).
    """
    try:
        result = plan_run(settings)
    except CertifyError as error:
        log(f"no plan: {error}")
        return None
    for line in summary_lines(result):
        err_console.print(f"[cyan]plan:[/cyan] {line}", soft_wrap=True)
    if require_nonvacuous and not result.can_be_nonvacuous:
        raise HopelessPlanError(
            hopeless_message(result),
            hint="use more data, fewer bits or a smaller model, or drop --require-nonvacuous",
        )
    return result


# --------------------------------------------------------------------------- formatting


def _count(value: float | None) -> str:
    """1,234 below a million, else 40M / 2.8B / 1.3T (two or three significant digits)."""
    if value is None:
        return "-"
    if value < 1e6:
        return f"{value:,.0f}"
    for suffix, size in (("T", 1e12), ("B", 1e9), ("M", 1e6)):
        if value >= size:
            scaled = value / size
            if scaled >= 1000:
                return f"{value:.1e}".replace("e+", "e")
            return f"{scaled:.3g}{suffix}"
    return f"{value:,.0f}"  # pragma: no cover - every value ≥ 1e6 has a suffix


def _bytes(value: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.0f} B"


def _seconds(value: float) -> str:
    if value < 1:
        return "< 1 s"
    if value < 90:
        return f"≈ {value:.0f} s"
    if value < 5400:
        return f"≈ {value / 60:.0f} min"
    if value < 2 * 86400:
        return f"≈ {value / 3600:.1f} h"
    return f"≈ {value / 86400:.1f} days"


def _artifact_line(result: Plan) -> str:
    artifact = result.artifact
    return (
        f"model.certz ≈ {_bytes(artifact.size_bytes)} ({artifact.bits_per_parameter:.2f} "
        f"bits/param; low end {_bytes(artifact.size_bytes_low)}), an estimate for "
        f"{_count(artifact.parameters)} parameters at {artifact.bits} bits, group "
        f"{artifact.group_size}"
    )


def _data_line(result: Plan) -> str:
    data = result.data
    basis = {
        "token_shards": "exact, from the token shards",
        "given": "given",
        "bytes_estimate": (
            f"estimated from {_bytes(data.text_bytes)} of text at {data.tokens_per_byte:g} "
            "tokens/byte"
            if data.text_bytes is not None
            else f"estimated at {data.tokens_per_byte:g} tokens/byte, "
            f"{plan.ASSUMED_DOCUMENT_TOKENS} tokens per document where bytes are unknown"
        ),
    }[data.n_tokens_basis]
    line = f"{data.mode} mode, n ≈ {_count(data.n_tokens)} tokens ({basis})"
    if data.mode == "sampled":
        line += (
            f"; W = {_count(data.total_weight)} over {_count(data.units)} units "
            f"({data.weight_rule} rule); G = {data.accepted_units}, expected draws "
            f"{_count(data.expected_draws)} → n_lo ≈ {_count(data.n_lower_bound)}"
        )
    elif data.documents is not None:
        line += f"; {_count(data.documents)} documents"
    return line


def _cost_line(result: Plan) -> str:
    cost = result.cost
    parts = [f"compress {_seconds(cost.compress_seconds)}"]
    if cost.tokens_tokenized:
        parts.append(
            f"tokenize {_count(cost.tokens_tokenized)} tokens {_seconds(cost.tokenize_seconds)}"
        )
    parts.append(
        f"evaluate {_count(cost.evaluation_tokens)} tokens: "
        f"{_seconds(cost.evaluate_seconds_cpu)} on CPU, {_seconds(cost.evaluate_seconds_gpu)} "
        "on a GPU"
    )
    download = cost.dataset_download_bytes + cost.model_download_bytes
    if download:
        parts.append(f"download ≈ {_bytes(download)}")
    return "; ".join(parts)


def _bound_line(result: Plan) -> str:
    bounds = [scenario.bits_bound for scenario in result.scenarios]
    losses = sorted({scenario.loss_bits for scenario in result.scenarios})
    line = (
        f"bits bound {min(bounds):.3f}–{max(bounds):.3f} at assumed losses "
        f"{losses[0]:g}–{losses[-1]:g} bits/token (uniform: {result.uniform_bits:.3f})"
    )
    if not result.can_be_nonvacuous:
        needed = [s.tokens_for_nonvacuous for s in result.scenarios]
        known = [n for n in needed if n is not None]
        return line + (
            f": vacuous; non-vacuous needs n ≥ {_count(min(known))} tokens "
            f"(this data: n ≈ {_count(result.data.n_tokens)})"
            if known
            else f": vacuous at any n with s = {result.samples:,} observations"
        )
    vacuous = sum(scenario.vacuous for scenario in result.scenarios)
    if vacuous:
        return line + f": vacuous in {vacuous} of {len(result.scenarios)} cases"
    return line + ": non-vacuous"


def summary_lines(result: Plan) -> list[str]:
    """The concise plan ``certify run`` prints first."""
    return [_artifact_line(result), _data_line(result), _cost_line(result), _bound_line(result)]


def bound_table(result: Plan) -> Table:
    """Rows: assumed (loss, V̂); columns: the bound at each α, the best, the n needed."""
    table = Table(
        title=f"Bits bound by assumed loss (uniform guess: {result.uniform_bits:.3f} bits/token)",
        title_justify="left",
        caption="n needed: dataset tokens for a bound below log2 V"
        + ("" if result.target_bits is None else f" (and for one ≤ {result.target_bits:g})"),
        caption_justify="left",
    )
    table.add_column("loss", justify="right")
    table.add_column("V̂", justify="right")
    for alpha in result.alphas:
        table.add_column(f"α={alpha:g}", justify="right")
    table.add_column("best", justify="right", style="bold")
    table.add_column("n needed", justify="right")
    if result.target_bits is not None:
        table.add_column(f"n for ≤ {result.target_bits:g}", justify="right")
    for scenario in result.scenarios:
        row = [f"{scenario.loss_bits:g}", f"{scenario.square_mean:g}"]
        row += [f"{bound.bound:.4g}" for bound in scenario.bounds]
        best = f"{scenario.bits_bound:.4g}"
        row.append(f"[red]{best}[/red]" if scenario.vacuous else f"[green]{best}[/green]")
        row.append(
            _count(scenario.tokens_for_nonvacuous) if scenario.tokens_for_nonvacuous else "never"
        )
        if result.target_bits is not None:
            row.append(
                _count(scenario.tokens_for_target) if scenario.tokens_for_target else "never"
            )
        table.add_row(*row)
    return table


def print_plan(result: Plan) -> None:
    """The human-readable plan (stdout)."""
    console.print(
        f"[bold]Plan[/bold] for {result.model} ({result.architecture}, V = {result.vocab_size:,}); "
        f"δ = {result.delta:g}, {result.statements} statements, s = {result.samples:,} "
        f"({result.sampling_method}), H = {result.hyperparameter_configurations}",
        soft_wrap=True,
    )
    for label, line in zip(
        ("artifact", "data", "cost"),
        (_artifact_line(result), _data_line(result), _cost_line(result)),
        strict=True,
    ):
        console.print(f"  [cyan]{label:<8}[/cyan] {line}", soft_wrap=True)
    console.print(bound_table(result))
    verdict = _bound_line(result)
    console.print(
        ("[green]" if result.can_be_nonvacuous else "[red]") + verdict + "[/]", soft_wrap=True
    )
    console.print("[dim]Estimates, not measurements of this model:[/dim]")
    for note in result.assumptions:
        console.print(f"[dim]  - {note}[/dim]", soft_wrap=True)


# --------------------------------------------------------------------------- the command


@app.command("plan", help=PLAN_HELP)
def plan_command(
    model: str = typer.Argument(..., metavar="MODEL", help="Hub id, model folder or .gguf file."),
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        "-d",
        help="Dataset as for certify run (default: the model card's, else the fallback corpus).",
    ),
    bits: str = options.BITS,
    group_size: int = options.GROUP_SIZE,
    quantizer: str | None = options.QUANTIZER,
    calibration_tokens: int = options.CALIBRATION_TOKENS,
    target_bits: float | None = typer.Option(
        None, "--target-bits", help="Also find the n that brings the bits bound to this value."
    ),
    losses: str = typer.Option(
        ",".join(f"{x:g}" for x in plan.DEFAULT_LOSSES_BITS),
        "--losses",
        help="Assumed per-token losses in bits (before smoothing).",
    ),
    spreads: str = typer.Option(
        ",".join(f"{x:g}" for x in plan.DEFAULT_SPREADS_BITS2),
        "--spreads",
        help="Assumed V̂, the mean squared distance of the loss from its centre (bits²).",
    ),
    tokens: int | None = typer.Option(
        None, "--tokens", help="The dataset's n if you know it (replaces the estimate)."
    ),
    tokens_per_byte: float = typer.Option(
        plan.DEFAULT_TOKENS_PER_BYTE, "--tokens-per-byte", help="Tokens per byte of text assumed."
    ),
    samples: int = options.SAMPLES,
    chunk_tokens: int = options.CHUNK_TOKENS,
    context_tokens: int = options.CONTEXT_TOKENS,
    alphas: str = options.ALPHAS,
    top_k: str = options.TOP_K,
    delta: float = options.DELTA,
    heldout: bool = options.HELDOUT,
    exhaustive: bool = options.EXHAUSTIVE,
    data_mode: str = options.DATA_MODE,
    accepted_units: int = options.ACCEPTED_UNITS,
    chunks_per_unit: int = options.CHUNKS_PER_UNIT,
    truncate_tokens: int | None = options.TRUNCATE_TOKENS,
    max_documents: int | None = options.MAX_DOCUMENTS,
    text_column: str = options.TEXT_COLUMN,
    dataset_config: str | None = options.DATASET_CONFIG,
    split: str = options.SPLIT,
    extensions: str = options.EXTENSIONS,
    exclude: list[str] = options.EXCLUDE,
    decode_errors: str = options.DECODE_ERRORS,
    revision: str | None = options.MODEL_REVISION,
    dataset_revision: str | None = options.DATASET_REVISION,
    endpoint: str | None = options.ENDPOINT,
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Print the plan (see PLAN_HELP)."""
    parsed_bits = options.parse_bits(bits)
    method, auto_methods = options.parse_quantizers(quantizer, auto=parsed_bits is None)
    quantization = QuantizationSettings(
        bits=parsed_bits if parsed_bits is not None else 4, group_size=group_size
    )
    check_settings(quantization)
    quantization = dataclasses.replace(quantization, method=method)
    evaluation = options.evaluation_settings(
        chunk_tokens=chunk_tokens,
        context_tokens=context_tokens,
        samples=samples,
        exhaustive=exhaustive,
        alphas=alphas,
        top_k=top_k,
    )
    settings = RunSettings(
        model=model,
        out_dir=str(Path("runs") / "plan"),
        key_dir=str(default_key_dir()),
        dataset=dataset,
        model_revision=revision,
        dataset_revision=dataset_revision,
        text_column=text_column,
        max_documents=max_documents,
        quantization=quantization,
        auto_grid=DEFAULT_AUTO_GRID if parsed_bits is None else (),
        auto_methods=auto_methods,
        calibration_tokens=calibration_tokens,
        evaluation=evaluation,
        delta=delta,
        heldout=heldout,
        endpoint=endpoint or env("HF_ENDPOINT"),
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
        token=env("HF_TOKEN"),
    )
    with err_console.status("planning (metadata only)…", spinner="dots"):
        result = plan_run(
            settings,
            losses=parse_float_list(losses, "--losses"),
            spreads=parse_float_list(spreads, "--spreads"),
            target_bits=target_bits,
            tokens_per_byte=tokens_per_byte,
            n_tokens=tokens,
        )
    if as_json:
        print_json(to_dict(result))
        return
    print_plan(result)
