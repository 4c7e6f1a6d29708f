"""The typer application object and the helpers every command shares.

Only the ``certify.cli`` package prints, reads the environment and exits.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from certify import __version__
from certify._files import write_text_atomic
from certify.errors import InvalidInputError

HELP = (
    "Compress a causal language model into one file and certify its token-level risk.\n\n"
    "[bold]certify run MODEL --bits 4 --push[/bold] quantizes and arithmetic-codes MODEL "
    "into [cyan]model.certz[/cyan], measures its loss on a sample of the training data, "
    "computes a generalization bound from the file's exact size (Lotfi et al. 2024, "
    "token-level martingale bounds), signs a certificate and publishes everything to the "
    "Hub. Anyone can check it offline with [bold]certify verify[/bold].\n\n"
    "Environment: HF_TOKEN and HF_ENDPOINT (Hub access), CERTIFY_DEBUG=1 (tracebacks), "
    "CERTIFY_KEY_PASSPHRASE (passphrase of the signing key)."
)

app = typer.Typer(
    name="certify",
    help=HELP,
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: normal output (tables, results)
console = Console(highlight=False)
#: progress bars, warnings and errors: stderr, so ``--json`` stdout stays clean
err_console = Console(stderr=True, highlight=False)


def debug_enabled() -> bool:
    """True when CERTIFY_DEBUG asks for tracebacks."""
    return os.environ.get("CERTIFY_DEBUG", "").strip() not in ("", "0", "false", "no")


def print_json(data: Any) -> None:
    """Write ``data`` as indented JSON to stdout (no rich markup, no wrapping)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")
    sys.stdout.flush()


def write_output(path: Path, text: str) -> None:
    """Write a command's ``--output`` file atomically, after checking its folder exists."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InvalidInputError(f"folder {directory} does not exist", field="--output")
    write_text_atomic(path, text)


def env(name: str) -> str | None:
    """Read one environment variable (the CLI is the only place that does)."""
    value = os.environ.get(name)
    return value if value else None


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"certify {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        "-V",
        help="Print the version and exit.",
        callback=_version_callback,
        is_eager=True,
    ),
) -> None:
    """Root options."""
