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


def test_errors_name_the_flag_not_the_library_field(capsys: pytest.CaptureFixture[str]) -> None:
    """Settings validate themselves once (records.py); the CLI shows their flags."""
    from certify.cli import flag_for

    assert flag_for("chunk_tokens") == "--chunk-tokens"
    assert flag_for("mode") == "--data-mode"
    assert flag_for("metrics[0].alpha") == "metrics[0].alpha"
    cases = [
        (["run", "m", "--chunk-tokens", "0"], "--chunk-tokens: must be an integer ≥ 1"),
        (["run", "m", "--samples", "1"], "--samples: must be an integer ≥ 2"),
        (["run", "m", "--bits", "1"], "--bits: must be between 2 and 8"),
        (["run", "m", "--data-mode", "fast"], "--data-mode: must be exact, sampled or auto"),
        (["evaluate", "m", "--dataset", "d", "--alphas", "1.5"], "--alphas: every α"),
    ]
    for argv, expected in cases:
        assert run_cli(argv) == 3, argv
        assert expected in capsys.readouterr().err, argv
