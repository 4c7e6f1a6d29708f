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

from certify.cli import _bound  # noqa: F401  (registers commands)
from certify.cli._app import app, debug_enabled, err_console
from certify.errors import CertifyError, exit_code_for

try:  # typer >= 0.20 vendors click; older releases use the click package
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

__all__ = ["app", "main"]

for _module in ("_artifact", "_data", "_verify", "_hub", "_run"):
    try:
        __import__(f"certify.cli.{_module}")
    except ModuleNotFoundError as _missing:  # a command group not written yet
        if _missing.name != f"certify.cli.{_module}":
            raise


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
        return _fail(str(error), exit_code_for(error))
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
