"""``certify tokenize`` (and ``certify evaluate``): the data side of the bound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from certify.cli._app import app, console, env, err_console, print_json
from certify.records import to_dict

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
    from certify.data import load_tokenizer, tokenize_source
    from certify.errors import InvalidInputError

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
