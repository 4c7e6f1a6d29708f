"""``certify tokenize`` (and ``certify evaluate``): the data side of the bound."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from certify.cli import _options as options
from certify.cli._app import (
    app,
    console,
    default_shard_cache,
    env,
    err_console,
    print_json,
    sampling_workers,
    start_distributed,
    write_output,
)
from certify.data import load_tokenizer, tokenize_source
from certify.errors import InvalidInputError
from certify.pipeline import measure_risk
from certify.records import DataSource, to_dict
from certify.risk import resolve_device, risk_to_dict, validate_risk

# --- tokenize

TOKENIZE_HELP = "\n\n".join(
    [
        "Tokenize a dataset once into token shards for [bold]certify evaluate[/bold].",
        "SOURCE is a [cyan].txt[/cyan] file (one document), a [cyan].jsonl[/cyan] file "
        "(one document per record, field --text-column), a [cyan].parquet[/cyan] file (one "
        "per row), a folder (every file with one of --extensions, recursively, in sorted path "
        "order; .jsonl and .parquet files as above, any other file is one document), a "
        "Hugging Face dataset id, or a folder of token shards made before (checked, reused).",
        "Each document is tokenized without the tokenizer's special tokens and followed by "
        "one EOS; the exact token count n goes into DIR/index.json with the tokenizer's "
        "sha256 and a fingerprint of the source (docs/DATA.md). Running the same command "
        "again reuses DIR.",
        "[bold]Examples[/bold]",
        "  certify tokenize notes.txt --tokenizer ./my-model -o shards/",
        "  certify tokenize /usr/lib/python3.12 --extensions py --tokenizer model.certz -o stdlib/",
        "  certify tokenize HuggingFaceFW/fineweb --dataset-config sample-10BT "
        "--max-documents 20000 --tokenizer Qwen/Qwen2.5-0.5B -o fineweb/ --json",
    ]
)


def _tokenize_progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("documents"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )


@app.command("tokenize", help=TOKENIZE_HELP)
def tokenize_command(
    source: str = typer.Argument(
        ..., metavar="SOURCE", help="File, folder, Hub dataset id or token-shard folder."
    ),
    tokenizer_source: str = typer.Option(
        ...,
        "--tokenizer",
        "-t",
        metavar="MODEL",
        help="Model folder, .certz artifact or Hub model id whose tokenizer to use.",
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the shards."),
    text_column: str = typer.Option(
        "text", "--text-column", help="Field holding the text (.jsonl, .parquet, Hub)."
    ),
    max_documents: int | None = typer.Option(
        None,
        "--max-documents",
        min=1,
        help="Keep only the first N documents (Hub datasets are then streamed).",
    ),
    dataset_config: str | None = typer.Option(
        None, "--dataset-config", help="Configuration (subset) of a Hub dataset."
    ),
    split: str = typer.Option("train", "--split", help="Split of a Hub dataset."),
    revision: str | None = typer.Option(
        None, "--revision", help="Branch, tag or commit of a Hub dataset."
    ),
    extensions: str = typer.Option(
        "txt,md,py,jsonl,parquet",
        "--extensions",
        help="Comma-separated file extensions read from a folder.",
    ),
    exclude: list[str] = typer.Option(
        [],
        "--exclude",
        metavar="PATTERN",
        help="Skip folder files whose relative path matches (repeatable), e.g. 'test/*'.",
    ),
    decode_errors: str = typer.Option(
        "strict",
        "--decode-errors",
        help="Text files that are not UTF-8: strict (refuse), replace (U+FFFD) or skip.",
    ),
    max_shard_tokens: int = typer.Option(
        1 << 27, "--max-shard-tokens", min=1, help="Tokens per shard file at most."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the dataset record as JSON."),
) -> None:
    """Tokenize a dataset (see TOKENIZE_HELP)."""

    if decode_errors not in ("strict", "replace", "skip"):
        raise InvalidInputError(
            f"must be strict, replace or skip, got {decode_errors!r}", field="--decode-errors"
        )
    endpoint, token = env("HF_ENDPOINT"), env("HF_TOKEN")
    with err_console.status(f"loading the tokenizer of {tokenizer_source}"):
        tokenizer = load_tokenizer(tokenizer_source, endpoint=endpoint, token=token)
    with _tokenize_progress() as bar:
        task = bar.add_task("tokenizing", total=None)

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        shards = tokenize_source(
            source,
            tokenizer,
            output,
            text_column=text_column,
            max_documents=max_documents,
            dataset_config=dataset_config,
            split=split,
            revision=revision,
            extensions=[item for item in extensions.split(",") if item.strip()],
            exclude=exclude,
            decode_errors=decode_errors,  # type: ignore[arg-type]
            max_shard_tokens=max_shard_tokens,
            token=token,
            endpoint=endpoint,
            progress=report,
        )
    summary: dict[str, Any] = {
        **to_dict(shards.record),
        "directory": str(shards.directory),
        "reused": shards.reused,
        "vocab_size": shards.vocab_size,
        "dtype": shards.index["dtype"],
        "shards": len(shards.index["shards"]),
    }
    if as_json:
        print_json(summary)
        return
    verb = "reused" if shards.reused else "wrote"
    console.print(
        f"{verb} [cyan]{shards.directory}[/cyan]: [bold]{shards.n_tokens:,} tokens[/bold] "
        f"from {shards.record.documents:,} documents in {summary['shards']} shard(s) "
        f"({summary['dtype']})",
        soft_wrap=True,
    )
    console.print(f"tokenizer sha256 {shards.record.tokenizer_sha256}", soft_wrap=True)
    console.print(f"shards sha256    {shards.record.shards_sha256}", soft_wrap=True)


# --- evaluate

EVALUATE_HELP = "\n\n".join(
    [
        "Measure a model's token-level losses on chunks of a dataset (input of "
        "[bold]certify bound[/bold]).",
        "MODEL is a [cyan].certz[/cyan] artifact (decoded first: the certificate is about "
        "those weights), a model folder or a Hub id. SRC is a folder of token shards from "
        "[bold]certify tokenize[/bold], or any source that command reads (tokenized on the "
        "fly into --shards-dir, reused next time); shards made with another tokenizer are "
        "refused.",
        "The stream is cut into chunks of --chunk-tokens; --samples chunks are drawn with "
        "probability proportional to length (seeded, with replacement), or every chunk once "
        "with --exhaustive. Each chunk is fed after one BOS token and --context-tokens tokens "
        "of the text before it, which are not scored (docs/RISK.md). For every α of "
        "--alphas the smoothed loss in bits, and for every k of --top-k the top-k error, "
        "come from the same forward passes. The output (-o, --json) has exactly the input "
        "shape of certify bound.",
        "With --data-mode sampled (auto picks it for a Hub dataset or a local one of 1 GiB or "
        "more) nothing is tokenized in full: --accepted-units units are drawn and "
        "--chunks-per-unit chunks scored in each; the output records the draws, from which "
        "certify bound takes its lower bound on n (docs/DATA.md).",
        "Runs on CUDA, then MPS, then CPU (bf16 on a GPU, fp32 on CPU); --checkpoint makes "
        "an interrupted run resumable with identical numbers. Under torchrun each process "
        "evaluates a share of the chunks.",
        "[bold]Examples[/bold]",
        "  certify evaluate model.certz --dataset shards/ -o risk.json",
        "  certify evaluate ./my-model --dataset notes.txt --samples 2000 --chunk-tokens 512 "
        "--context-tokens 256 --json",
        "  torchrun --nproc_per_node 8 -m certify evaluate model.certz --dataset shards/ "
        "--checkpoint risk.ckpt -o risk.json",
        "  certify evaluate model.certz --dataset HuggingFaceFW/fineweb --data-mode sampled "
        "--truncate-tokens 4096 -o risk.json",
        "  certify bound risk.json --artifact model.certz",
    ]
)


def _evaluate_progress() -> Progress:
    class TokensPerSecond(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("? tokens/s" if speed is None else f"{speed:,.0f} tokens/s")

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tokens"),
        TokensPerSecond(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )


@app.command("evaluate", help=EVALUATE_HELP)
def evaluate_command(
    model_source: str = typer.Argument(
        ..., metavar="MODEL_OR_CERTZ", help=".certz artifact, model folder or Hub id."
    ),
    dataset: str = typer.Option(
        ..., "--dataset", "-d", metavar="SRC", help="Token-shard folder or a source to tokenize."
    ),
    samples: int = options.SAMPLES,
    chunk_tokens: int = options.CHUNK_TOKENS,
    context_tokens: int = options.CONTEXT_TOKENS,
    alphas: str = options.ALPHAS,
    top_k: str = options.TOP_K,
    exhaustive: bool = options.EXHAUSTIVE,
    seed: int | None = options.SEED,
    device: str = options.DEVICE,
    dtype: str = options.DTYPE,
    batch_size: str = typer.Option(
        "auto", "--batch-size", help="Sequences per forward pass, or auto."
    ),
    device_map: str | None = typer.Option(
        None, "--device-map", help="'auto' spreads a large model over GPUs with accelerate."
    ),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="File keeping partial results; rerun to resume."
    ),
    shards_dir: Path | None = typer.Option(
        None,
        "--shards-dir",
        help="Where a non-shard SRC is tokenized (default: a cache folder per source).",
    ),
    text_column: str = options.TEXT_COLUMN,
    max_documents: int | None = options.MAX_DOCUMENTS,
    data_mode: str = options.DATA_MODE,
    accepted_units: int = options.ACCEPTED_UNITS,
    chunks_per_unit: int = options.CHUNKS_PER_UNIT,
    truncate_tokens: int | None = options.TRUNCATE_TOKENS,
    dataset_config: str | None = options.DATASET_CONFIG,
    split: str = options.SPLIT,
    dataset_revision: str | None = options.DATASET_REVISION,
    extensions: str = options.EXTENSIONS,
    exclude: list[str] = options.EXCLUDE,
    decode_errors: str = options.DECODE_ERRORS,
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the risk JSON here."),
    as_json: bool = typer.Option(False, "--json", help="Print the risk JSON to stdout."),
) -> None:
    """Measure losses (see EVALUATE_HELP)."""
    if batch_size != "auto" and not batch_size.isdigit():
        raise InvalidInputError(
            f"expected a positive integer or auto, got {batch_size!r}", field="--batch-size"
        )
    if device_map not in (None, "auto"):
        raise InvalidInputError(
            f"only 'auto' is supported, got {device_map!r}", field="--device-map"
        )
    rank, _world, placed = start_distributed(resolve_device(device))
    settings = options.evaluation_settings(
        chunk_tokens=chunk_tokens,
        context_tokens=context_tokens,
        samples=samples,
        exhaustive=exhaustive,
        alphas=alphas,
        top_k=top_k,
        seed=seed,
        device=placed,
        dtype=dtype,
        batch_size=None if batch_size == "auto" else int(batch_size),
    )
    quiet = rank != 0
    started = time.perf_counter()
    with _evaluate_progress() as bar:
        task = bar.add_task(f"evaluating {model_source}", total=None, visible=not quiet)

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        record = measure_risk(
            model_source,
            DataSource(
                source=dataset,
                revision=dataset_revision,
                config=dataset_config,
                split=split,
                text_column=text_column,
                max_documents=max_documents,
                extensions=options.parse_extensions(extensions),
                exclude=tuple(exclude),
                decode_errors=decode_errors,  # type: ignore[arg-type]
                mode=data_mode,  # type: ignore[arg-type]
                accepted_units=accepted_units,
                chunks_per_unit=chunks_per_unit,
                truncate_tokens=truncate_tokens,
            ),
            settings,
            shards_dir if shards_dir is not None else default_shard_cache(),
            endpoint=env("HF_ENDPOINT"),
            token=env("HF_TOKEN"),
            device_map=device_map,
            progress=report,
            checkpoint_path=checkpoint,
            workers=sampling_workers(),
        )
    if quiet:
        return
    document = risk_to_dict(record)
    validate_risk(document)
    if output is not None:
        write_output(output, json.dumps(document, indent=2, allow_nan=False) + "\n")
    if as_json:
        print_json(document)
        return
    table = Table(title=f"token-level risk of {model_source}", title_justify="left")
    for column in ("loss", "α / k", "mean", "std. error", "samples"):
        table.add_column(column, justify="left" if column == "loss" else "right")
    for metric in record.metrics:
        stderr = (metric.sample_variance / metric.samples) ** 0.5
        parameter = f"{metric.alpha:g}" if metric.name == "bits" else str(metric.k)
        unit = "bits/token" if metric.name == "bits" else "error rate"
        table.add_row(
            f"{metric.name} ({unit})",
            parameter,
            f"{metric.sample_mean:.4f}",
            f"{stderr:.4f}",
            f"{metric.samples:,}",
        )
    console.print(table)
    of_n = (
        f"n = {record.n_tokens:,}"
        if record.n_tokens is not None
        else "sampled units (n is bounded below by certify bound)"
    )
    console.print(
        f"{record.tokens_scored:,} tokens scored of {of_n} on "
        f"{record.device} ({record.dtype}) in {record.seconds:.1f} s "
        f"({record.tokens_scored / max(record.seconds, 1e-9):,.0f} tokens/s; "
        f"{time.perf_counter() - started:.1f} s in all)",
        soft_wrap=True,
    )
    if output is not None:
        console.print(
            f"wrote [cyan]{output}[/cyan]; next: certify bound {output} --artifact MODEL.certz",
            soft_wrap=True,
        )
