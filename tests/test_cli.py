"""The CLI skeleton: version, help, error handling and exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from certify import __version__
from certify.cli import run_cli
from certify.errors import EXIT_CODES, CertifyError, InvalidInputError, exit_code_for


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["--help"]) == 0
    out = capsys.readouterr().out
    assert "certify run" in out and "bound" in out


def test_unknown_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["no-such-command"]) == 2


def test_exit_codes_are_distinct() -> None:
    codes = [code for _, code in EXIT_CODES]
    assert len(codes) == len(set(codes))
    assert all(code not in (0,) for code in codes)


def test_exit_code_table_prefers_subclass() -> None:
    assert exit_code_for(InvalidInputError("x", field="delta")) == 3
    assert exit_code_for(CertifyError("x")) == 1
    assert exit_code_for(ValueError("x")) == 1


def test_error_names_field() -> None:
    error = InvalidInputError("must lie in (0, 1)", field="delta")
    assert str(error) == "delta: must lie in (0, 1)"


def test_module_entry_point_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "certify", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert __version__ in done.stdout
