"""``make demo`` leaves a checkout clean: everything bench/demo.py writes is git-ignored.

The demo itself takes minutes and a download, so this checks the paths it writes to
(``bench/demo.py``'s :func:`output_paths`, which the script uses for every write), not
a run of it.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("certify_demo", ROOT / "bench" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def _ignored(path: Path) -> bool:
    """git ignores ``path`` (and, for a folder, anything inside it)."""
    relative = path.relative_to(ROOT).as_posix()
    probes = [relative, f"{relative}/any-file.json"] if path.suffix == "" else [relative]
    return all(_git("check-ignore", "-q", "--no-index", probe).returncode == 0 for probe in probes)


def _tracked(path: Path) -> list[str]:
    return _git("ls-files", "--", path.relative_to(ROOT).as_posix()).stdout.split()


def test_every_path_the_demo_writes_is_git_ignored() -> None:
    demo = _demo()
    for argv in ([], ["--quick"], ["--offline-model"], ["--quick", "--offline-model"]):
        paths = demo.output_paths(demo.parse_args(argv))
        assert {"models", "dataset", "certify_home", "run", "record"} <= set(paths)
        for role, path in paths.items():
            assert path.is_relative_to(ROOT), (argv, role, path)
            assert _ignored(path), f"make demo {argv} writes {role} to tracked {path}"
            assert _tracked(path) == [], (role, path)
        assert not any(path.is_relative_to(ROOT / "bench") for path in paths.values())


def test_only_record_writes_the_tracked_results() -> None:
    demo = _demo()
    paths = demo.output_paths(demo.parse_args(["--record"]))
    recorded = paths.pop("recorded")
    assert recorded == ROOT / "bench" / "results" / "demo.json"
    assert not _ignored(recorded)  # tracked on purpose, updated only with --record
    assert all(_ignored(path) for path in paths.values())
    assert demo.output_paths(demo.parse_args(["--record", "--quick"]))["recorded"].name == (
        "demo-quick.json"
    )


def test_the_script_writes_through_output_paths_only() -> None:
    """No write in bench/demo.py names a tracked place directly (the record, the run)."""
    source = (ROOT / "bench" / "demo.py").read_text(encoding="utf-8")
    assert '"bench" / "results"' in source.split("def output_paths")[0]  # the constant only
    main = source.split("def main(")[1]
    assert "bench" not in main.replace("paths['recorded']", "").replace('paths["recorded"]', "")
    assert "options.out" not in main  # the run folder comes from output_paths
