"""``certify bound``: the certificate's bound object from measured statistics."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from certify.bound import (
    bound_input_from_dict,
    bound_result_to_dict,
    compute_bound,
    confidence_text,
    round_up_text,
)
from certify.cli._app import app, console, err_console, print_json, write_output
from certify.errors import InvalidInputError

BOUND_HELP = """Compute the token-level generalization bound from measured statistics.

INPUT is a JSON file with [cyan]vocab_size[/cyan], [cyan]n_tokens[/cyan] (exact n),
[cyan]size_bytes[/cyan] (the artifact's exact size), optional
[cyan]hyperparameter_configurations[/cyan] (1), [cyan]delta[/cyan] (0.05),
[cyan]delta_split[/cyan] (0.5, share of delta for the complexity term),
[cyan]sampling_method[/cyan] (bernstein | hoeffding | exhaustive), [cyan]heldout[/cyan]
(false), [cyan]bound_version[/cyan] (2; 1 recomputes version-1 certificates), and
[cyan]metrics[/cyan]: a list of
{"name": "bits", "alpha": 0.01, "sample_mean": 2.1, "sample_variance": 0.3, "samples": 10000,
"square_mean": 11.8, "square_variance": 2.0} or {"name": "top_k_error", "k": 1, ...}.
[cyan]square_mean[/cyan] / [cyan]square_variance[/cyan] (the chunk-mean statistics of
q = (loss - centre)^2, for every metric or for none) enable the variance-adaptive
Freedman form; each statement then gets the smaller of the Azuma and Freedman forms.
Sampled mode: [cyan]sampled[/cyan] {"total_weight": W, "accepted": G, "drawn": D} and
optional [cyan]delta_n[/cyan] (delta/10) instead of n_tokens; n is then bounded below
by W times the delta_n-quantile of Beta(G, D - G + 1). The risk.json written by
[bold]certify evaluate[/bold] is a valid INPUT.

With probability at least 1 - delta, every printed bound holds at once for the
conditional next-token risk along the dataset (docs/MATH.md says exactly what is claimed).

[bold]Examples[/bold]

  certify bound stats.json

  certify bound risk.json --artifact model.certz --json

  certify bound stats.json -o bound.json
"""


def _read_input(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInputError(
            f"{path} does not exist", hint="pass the JSON file with the measured statistics"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"cannot read {path}: {error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInputError(
            f"{path} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _upper(value: float | None, digits: int = 4) -> str:
    """A bound as printed: rounded up (never to nearest), so the text is still a bound."""
    return "-" if value is None else round_up_text(value, decimals=digits)


def _table(bound: dict[str, Any]) -> Table:
    """One row per statement: bound = empirical + sampling + complexity; fits 80 columns.

    Version 2 adds which form certified the row (the Freedman form with its λ, or the
    Azuma form); both forms' values are in ``--json``.
    """
    version_2 = bound.get("bound_version", 1) >= 2
    table = Table(title="Token-level risk bound", title_justify="left")
    table.add_column("statement", no_wrap=True)
    for header in ("empirical", "sampling", "complexity"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("bound", justify="right", style="bold", no_wrap=True)
    if version_2:
        table.add_column("form", no_wrap=True)
    for metric in bound["metrics"]:
        name = (
            f"bits α={metric['alpha']:g}"
            if metric["name"] == "bits"
            else f"top-{metric['k']} error"
        )
        cells = [
            name,
            _number(metric["sample_mean"]),
            _number(metric["sampling_term"]),
            _number(metric["complexity_term"]),
            _upper(metric["bound"]),
        ]
        if version_2:
            form = "Azuma"
            if metric["certified_by"] == "freedman":
                form = f"Freedman λ={metric['freedman_lambda']:.3g}"
            cells.append(form)
        table.add_row(*cells)
    return table


def _headline(bound: dict[str, Any]) -> str:
    summary = bound["summary"]
    confidence = (
        f"probability ≥ {confidence_text(bound['delta'])}, "
        f"{bound['statements']} statement(s) at once"
    )
    lines = []
    if summary.get("bits_per_token_bound") is not None:
        perplexity = summary.get("perplexity_bound")
        perplexity_text = (
            "overflows" if perplexity is None else round_up_text(perplexity, significant=4)
        )
        vacuous = (
            f"  [yellow](vacuous: uniform guessing scores "
            f"{summary['uniform_bits_per_token']:.3f})[/yellow]"
            if summary.get("vacuous")
            else ""
        )
        form = summary.get("certified_by")
        form_text = f", {form.capitalize()} form" if form else ""
        lines.append(
            f"[bold]bits per token ≤ {_upper(summary['bits_per_token_bound'])}[/bold] "
            f"(α={summary['alpha']:g}{form_text}), perplexity ≤ {perplexity_text}{vacuous}"
        )
    for entry in summary.get("top_k", []):
        mark = "  [yellow](vacuous)[/yellow]" if entry["vacuous"] else ""
        lines.append(f"top-{entry['k']} error ≤ {_upper(entry['bound'])}{mark}")
    lines.append(
        f"({confidence}; prior {bound['prior']['nats']:.6g} nats"
        f"{', held-out data' if bound['heldout'] else ''})"
    )
    sampled = bound.get("sampled")
    if sampled:
        lines.append(
            f"sampled mode: n ≥ {bound['n_lower_bound']:,} tokens (total weight "
            f"{sampled['total_weight']:,} × {bound['acceptance_lower_bound']:.6g}, the "
            f"δ_n = {bound['delta_n']:g} quantile from {sampled['accepted']:,} accepted of "
            f"{sampled['drawn']:,} drawn units; rounded down)"
        )
    authors = (summary.get("comparison") or {}).get("authors_formula")
    if authors and authors.get("bits_per_token_bound") is not None:
        lines.append(
            f"for comparison, the authors' formula gives "
            f"{_upper(authors['bits_per_token_bound'])} "
            "bits per token on the same statistics"
        )
    return "\n".join(lines)


@app.command("bound", help=BOUND_HELP)
def bound_command(
    input_path: Path = typer.Argument(
        ..., metavar="INPUT.json", help="Measured statistics (or certify evaluate's risk.json)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the bound object as JSON."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Also write the bound object to this JSON file (atomically)."
    ),
    artifact: Path | None = typer.Option(
        None,
        "--artifact",
        help="Take size_bytes from this file's real size (overrides the input's size_bytes).",
    ),
) -> None:
    """Compute the bound (see BOUND_HELP)."""
    data = _read_input(input_path)
    size_note: dict[str, Any] | None = None
    if artifact is not None:
        try:
            size_bytes = os.stat(artifact).st_size
        except OSError as error:
            raise InvalidInputError(
                f"cannot read the artifact's size: {error.strerror}", field="--artifact"
            ) from None
        size_note = {
            "artifact": str(artifact),
            "size_bytes": size_bytes,
            "input_size_bytes": data.get("size_bytes"),
        }
        data = {**data, "size_bytes": size_bytes}
    result = compute_bound(bound_input_from_dict(data))
    bound = bound_result_to_dict(result)
    if size_note is not None:
        bound["summary"]["size_bytes_from"] = size_note
    if output is not None:
        write_output(output, json.dumps(bound, indent=2, allow_nan=False) + "\n")
    if size_note is not None and not as_json:
        replaced = size_note["input_size_bytes"]
        previous = "" if replaced is None else f" (input said {replaced})"
        err_console.print(
            f"size_bytes = {size_note['size_bytes']} from {artifact}{previous}", soft_wrap=True
        )
    if as_json:
        print_json(bound)
        return
    console.print(_table(bound))
    console.print(_headline(bound), soft_wrap=True)
    if output is not None:
        err_console.print(f"wrote {output}", soft_wrap=True)
