"""``certify compress``, ``certify decompress`` and ``certify inspect``: the .certz artifact."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from certify import pipeline
from certify.cli import _options as options
from certify.cli._app import app, console, default_shard_cache, env, err_console, print_json
from certify.container import check_settings, decompress_to_dir, inspect_artifact
from certify.errors import UsageError
from certify.models import load_source_tokenizer, resolve_model
from certify.quantize import GPTQ_METHOD
from certify.records import DataSource, QuantizationSettings, to_dict

COMPRESS_HELP = """Quantize and arithmetic-code MODEL into one .certz file.

MODEL is a Hub id (org/name, fetched at --revision; HF_TOKEN and HF_ENDPOINT are \
honoured), a local folder with config.json and *.safetensors, or a .gguf file. Every 2-D \
weight matrix (embeddings and LM head included) is quantized group-wise with \
round-to-nearest (or, with --quantizer gptq, the decoder blocks' linears and the LM head \
with GPTQ on --calibration text) and entropy-coded; norms and biases are stored raw. \
Tied weights are stored once. The file also carries the config and tokenizer, so it \
alone rebuilds the model.

[bold]Examples[/bold]

  certify compress HuggingFaceTB/SmolLM2-135M --bits 4 --group-size 32 -o smol.certz

  certify compress ./my-model --bits 3 --keep 'lm_head*' --keep-bits 8

  certify compress ./my-model --quantizer gptq --calibration ./texts/ -o mine.certz

  certify compress model.gguf --bits 4 --json
"""

DECOMPRESS_HELP = """Decode a .certz file into a transformers folder.

The folder holds model.safetensors (float32), config.json and the tokenizer files, so \
AutoModelForCausalLM.from_pretrained(DIR) and AutoTokenizer.from_pretrained(DIR) load \
exactly the decoded model. Every hash is checked first.

[bold]Example[/bold]

  certify decompress model.certz -o decoded/
"""

INSPECT_HELP = """Show where the bits of a .certz file go.

Per tensor kind (embedding, attention, mlp, lm_head, raw norms/biases, and the header + \
tokenizer overhead): parameters, coded bits, bits per parameter, the empirical entropy of \
the integer codes (as coded: minus their group's zero point; what an ideal coder without \
side information would need) and the share of the file. Every record's sha256 is checked \
on the way.

[bold]Examples[/bold]

  certify inspect model.certz

  certify inspect model.certz --json | jq '.kinds'
"""


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )


@app.command("compress", help=COMPRESS_HELP)
def compress_command(
    model: str = typer.Argument(..., metavar="MODEL", help="Hub id, model folder or .gguf file."),
    bits: int = typer.Option(4, "--bits", "-b", help="Bits per weight, 2 to 8."),
    group_size: int = typer.Option(
        128, "--group-size", "-g", help="Weights per group sharing a scale and zero point."
    ),
    symmetric: bool = typer.Option(
        False, "--symmetric", help="Symmetric quantization (fixed zero point) instead of min-max."
    ),
    keep: list[str] = typer.Option(
        [],
        "--keep",
        metavar="PATTERN",
        help="Glob of tensor names kept at --keep-bits (repeatable), e.g. 'lm_head*'.",
    ),
    keep_bits: int = typer.Option(8, "--keep-bits", help="Bits for tensors matched by --keep."),
    quantizer: str = typer.Option(
        "rtn", "--quantizer", help="rtn (round to nearest) or gptq (needs --calibration)."
    ),
    calibration: str | None = typer.Option(
        None, "--calibration", help="GPTQ's calibration text (any source certify tokenize reads)."
    ),
    calibration_tokens: int = options.CALIBRATION_TOKENS,
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the calibration windows."),
    device: str = options.DEVICE,
    revision: str | None = typer.Option(
        None, "--revision", help="Hub branch, tag or commit (Hub ids only)."
    ),
    trust_remote_code: bool = typer.Option(
        False,
        "--trust-remote-code",
        help="Allow architectures that need custom code from the model repository.",
    ),
    output: Path = typer.Option(Path("model.certz"), "--output", "-o", help="Output file."),
    as_json: bool = typer.Option(False, "--json", help="Print the artifact record as JSON."),
) -> None:
    """Compress a model (see COMPRESS_HELP)."""

    settings = QuantizationSettings(
        bits=bits,
        group_size=group_size,
        symmetric=symmetric,
        high_precision_bits=keep_bits,
        high_precision_tensors=tuple(keep),
    )
    check_settings(settings)  # fail before any download
    method, _ = options.parse_quantizers(quantizer, auto=False)
    if (method == GPTQ_METHOD) != (calibration is not None):
        raise UsageError(
            "--quantizer gptq and --calibration go together",
            field="--calibration",
            hint="pass --quantizer gptq --calibration SRC, or neither (RTN)",
        )
    settings = dataclasses.replace(settings, method=method)
    with err_console.status(f"resolving {model}"):
        resolved = resolve_model(
            model,
            revision,
            trust_remote_code=trust_remote_code,
            endpoint=env("HF_ENDPOINT"),
            token=env("HF_TOKEN"),
        )
    with _progress() as bar:
        task = bar.add_task(f"compressing {resolved.architecture}", total=None)

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        batch = None
        if calibration is not None:
            batch, _ = pipeline.draw_calibration(
                DataSource(source=calibration),
                load_source_tokenizer(resolved),
                seed=seed,
                total_tokens=calibration_tokens,
                cache=default_shard_cache(),
                endpoint=env("HF_ENDPOINT"),
                token=env("HF_TOKEN"),
            )
        record = pipeline.compress_artifact(
            resolved,
            settings,
            output,
            calibration=batch,
            device=device,
            progress=report,
        )
    summary: dict[str, Any] = {
        **to_dict(record),
        "model": {
            "source": resolved.source,
            "revision": resolved.revision,
            "architecture": resolved.architecture,
        },
    }
    if as_json:
        print_json(summary)
        return
    console.print(
        f"wrote [cyan]{record.path}[/cyan]: {record.size_bytes:,} bytes, "
        f"{record.parameters:,} parameters, "
        f"[bold]{record.bits_per_parameter:.4f} bits/parameter[/bold]",
        soft_wrap=True,
    )
    console.print(f"sha256 {record.sha256}", soft_wrap=True)
    console.print(f"decoded weights sha256 {record.decoded_weights_sha256}", soft_wrap=True)


@app.command("decompress", help=DECOMPRESS_HELP)
def decompress_command(
    artifact: Path = typer.Argument(..., metavar="MODEL.certz", help="The artifact to decode."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write (created)."),
    as_json: bool = typer.Option(False, "--json", help="Print the written files as JSON."),
) -> None:
    """Decode an artifact into a transformers folder (see DECOMPRESS_HELP)."""

    with err_console.status(f"decoding {artifact}"):
        folder = decompress_to_dir(artifact, output)
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    if as_json:
        print_json({"path": str(folder), "files": files})
        return
    console.print(f"wrote [cyan]{folder}[/cyan]: {', '.join(files)}", soft_wrap=True)


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@app.command("inspect", help=INSPECT_HELP)
def inspect_command(
    artifact: Path = typer.Argument(..., metavar="MODEL.certz", help="The artifact to inspect."),
    as_json: bool = typer.Option(
        False, "--json", help="Print everything (per kind and per tensor) as JSON."
    ),
) -> None:
    """Per-kind breakdown of an artifact (see INSPECT_HELP)."""

    with err_console.status(f"reading {artifact}"):
        report = inspect_artifact(artifact)
    if as_json:
        print_json(report)
        return
    table = Table(title=f"{report['path']}  ({report['model']['architecture']})")
    for column in ("kind", "tensors", "parameters", "coded bits", "bits/param", "entropy/param"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    table.add_column("share", justify="right")
    for kind, row in report["kinds"].items():
        table.add_row(
            "header+tokenizer" if kind == "overhead" else kind,
            str(row["tensors"]) if kind != "overhead" else "-",
            f"{row['parameters']:,}",
            f"{row['coded_bits']:,}",
            _number(row["bits_per_parameter"]),
            _number(row["code_entropy_bits_per_parameter"]),
            f"{100 * row['share_of_file']:.2f}%",
        )
    console.print(table)
    quantization = report["quantization"]
    console.print(
        f"{report['size_bytes']:,} bytes, {report['parameters']:,} parameters, "
        f"[bold]{report['bits_per_parameter']:.4f} bits/parameter[/bold] "
        f"(format v{report['format_version']}, {quantization['bits']} bits, "
        f"groups of {quantization['group_size']}"
        f"{', symmetric' if quantization['symmetric'] else ''})",
        soft_wrap=True,
    )
