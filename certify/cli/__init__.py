"""Command-line interface: ``certify <command>``.

Each command group lives in its own module (``_bound``, ``_artifact``, ``_data``,
``_verify``, ``_hub``, ``_run``) and registers itself on :data:`app`. :func:`main`
turns every :class:`~certify.errors.CertifyError` into one ``error:`` line and the
exit code from :data:`certify.errors.EXIT_CODES`; tracebacks only with CERTIFY_DEBUG=1.
"""

from __future__ import annotations

import sys
import traceback

import typer

# every command module registers its commands on ``app`` when imported
from certify.cli import _artifact, _bound, _data, _hub, _plan, _run, _verify  # noqa: F401
from certify.cli._app import app, debug_enabled, err_console
from certify.errors import CertifyError, exit_code_for

try:  # typer >= 0.20 vendors click; older releases use the click package
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

__all__ = ["app", "main"]

#: settings fields (records.py) and the flag that sets each; errors name the flag
_FLAGS = {
    "chunk_tokens": "--chunk-tokens",
    "context_tokens": "--context-tokens",
    "samples": "--samples",
    "seed": "--seed",
    "alphas": "--alphas",
    "top_k": "--top-k",
    "batch_size": "--batch-size",
    "bits": "--bits",
    "group_size": "--group-size",
    "high_precision_bits": "--high-precision-bits",
    "delta": "--delta",
    "auto_grid": "--bits auto",
    "max_documents": "--max-documents",
    "decode_errors": "--decode-errors",
    "mode": "--data-mode",
    "accepted_units": "--accepted-units",
    "chunks_per_unit": "--chunks-per-unit",
    "truncate_tokens": "--truncate-tokens",
}
#: commands whose errors name fields of an input file, not flags
_FILE_FIELDS = frozenset({"bound"})


def flag_for(field: str) -> str:
    """The command-line flag of a settings field: ``chunk_tokens`` → ``--chunk-tokens``.

    Any other field (``metrics[0].alpha``, ``--seed``) is kept as it is.
    """
    return _FLAGS.get(field, field)


def _message(error: CertifyError, argv: list[str]) -> str:
    """The error's one line, naming the flag instead of the library's field name."""
    command = next((arg for arg in argv if not arg.startswith("-")), "")
    if error.field is None or command in _FILE_FIELDS or flag_for(error.field) == error.field:
        return str(error)
    text = f"{flag_for(error.field)}: {error.message.removeprefix(error.field + ': ')}"
    return f"{text} ({error.hint})" if error.hint else text


def _fail(message: str, code: int) -> int:
    err_console.print(f"[bold red]error:[/bold red] {message}", markup=True, soft_wrap=True)
    return code


def run_cli(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return the exit code instead of exiting."""
    try:
        result = app(args=argv, prog_name="certify", standalone_mode=False)
    except CertifyError as error:
        if debug_enabled():
            traceback.print_exc()
        return _fail(_message(error, argv or sys.argv[1:]), exit_code_for(error))
    except typer.Exit as done:
        return int(done.exit_code)
    except typer.Abort:
        return _fail("interrupted", 130)
    except KeyboardInterrupt:
        return _fail("interrupted; no partial output was kept", 130)
    except click_exceptions.ClickException as error:
        if debug_enabled():
            traceback.print_exc()
        error.show(file=sys.stderr)
        return int(error.exit_code)
    except Exception as error:  # a bug: say so plainly, trace only on request
        if debug_enabled():
            traceback.print_exc()
        return _fail(
            f"unexpected {type(error).__name__}: {error} "
            "(this is a bug in certify; rerun with CERTIFY_DEBUG=1 for a traceback)",
            1,
        )
    return int(result) if isinstance(result, int) else 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run_cli(sys.argv[1:]))
