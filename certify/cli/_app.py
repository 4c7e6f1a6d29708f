"""The typer application object and the helpers every command shares.

Only the ``certify.cli`` package prints, reads the environment and exits.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from certify._files import write_text_atomic
from certify._version import __version__
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


_NUMBER_LIST = re.compile(r"^\s*[^,\s]+(\s*,\s*[^,\s]+)*\s*$")


def parse_float_list(text: str, field: str) -> tuple[float, ...]:
    """``"0.001,0.01"`` → (0.001, 0.01); an empty string → ()."""
    if not text.strip():
        return ()
    if not _NUMBER_LIST.match(text):
        raise InvalidInputError(f"expected comma-separated numbers, got {text!r}", field=field)
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise InvalidInputError(
            f"expected comma-separated numbers, got {text!r}", field=field
        ) from None


def parse_int_list(text: str, field: str) -> tuple[int, ...]:
    """``"1,10,100"`` → (1, 10, 100); an empty string → ()."""
    if not text.strip():
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise InvalidInputError(
            f"expected comma-separated whole numbers, got {text!r}", field=field
        ) from None


def certify_home() -> Path | None:
    """$CERTIFY_HOME if set (holds keys/ and cache/)."""
    home = env("CERTIFY_HOME")
    return Path(home).expanduser() if home else None


def default_key_dir() -> Path:
    """Where the signing key is made on first use."""
    home = certify_home()
    return home / "keys" if home else Path("~/.config/certify/keys").expanduser()


def default_shard_cache() -> Path:
    """Token shards are cached here across runs."""
    home = certify_home()
    return home / "cache" / "shards" if home else Path("~/.cache/certify/shards").expanduser()


def start_distributed(device: str) -> tuple[int, int, str]:
    """Join the torchrun process group when WORLD_SIZE > 1; (rank, world, device)."""
    world = int(env("WORLD_SIZE") or "1")
    if world <= 1:
        return 0, 1, device
    import torch
    import torch.distributed as dist

    local_rank = int(env("LOCAL_RANK") or "0")
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
        # Tear the group down while the interpreter is whole: gloo's worker threads
        # outliving it abort the process ("terminate called without an active exception").
        atexit.register(_leave_process_group)
    return int(dist.get_rank()), int(dist.get_world_size()), device


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def sampling_workers() -> int:
    """Tokenizer processes for sampled mode: one per core, at most 8.

    Each worker runs its own tokenizer, so the tokenizers library's thread pool is
    switched off (TOKENIZERS_PARALLELISM=false) before any worker starts: threads times
    processes would oversubscribe the cores.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return max(1, min(8, os.cpu_count() or 1))
