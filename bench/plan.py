"""How close ``certify plan``'s artifact-size estimate comes to the real ``model.certz``.

For each model and (bits, group size): the plan's estimate (``size_bytes``, normal-weight
pricing) and low end (``size_bytes_low``, Student-t(5) pricing) from metadata only, then
the real file written by ``certify.container.compress_model``, and the ratios. Models:
the tiny random-weight toys of certify/toy.py (built in-process) and, when
``.cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` exists (``make demo`` or
``bench/compress.py`` fetch it), SmolLM2-135M. Also the wall time of the plan's metadata
step. Results: bench/results/plan.json (docs/PLAN.md "Accuracy").

Run:  .venv/bin/python bench/plan.py            (~6 min on 2 cores with SmolLM2)
      .venv/bin/python bench/plan.py --quick    (toys only, ~1 min)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from certify import container, models, plan
from certify.records import QuantizationSettings
from certify.toy import make_toy_model

ROOT = Path(__file__).resolve().parents[1]
SMOLLM2 = ROOT / ".cache" / "models" / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CONFIGS = ((2, 32), (2, 128), (3, 64), (4, 32), (4, 128), (8, 128))
TOYS = (("llama", False), ("llama", True), ("gpt2", False), ("qwen2", True))


def measure(source: str, scratch: Path, configs: tuple[tuple[int, int], ...]) -> dict[str, Any]:
    started = time.perf_counter()
    facts = plan.describe_model(source)
    describe_seconds = time.perf_counter() - started
    resolved = models.resolve_model(source)
    rows = []
    for bits, group_size in configs:
        settings = QuantizationSettings(bits=bits, group_size=group_size)
        started = time.perf_counter()
        estimate = plan.estimate_artifact(facts, settings)
        estimate_seconds = time.perf_counter() - started
        out = scratch / "model.certz"
        real = container.compress_model(resolved, settings, out)
        header = container.read_header(out)
        quantized = sum(t["length"] for t in header["tensors"] if t["encoding"] == "quantized")
        rows.append(
            {
                "bits": bits,
                "group_size": group_size,
                "estimate_bytes": estimate.size_bytes,
                "low_bytes": estimate.size_bytes_low,
                "real_bytes": real.size_bytes,
                "estimate_over_real": estimate.size_bytes / real.size_bytes,
                "low_over_real": estimate.size_bytes_low / real.size_bytes,
                "quantized_estimate_bytes": estimate.quantized_bytes,
                "quantized_real_bytes": quantized,
                "quantized_estimate_over_real": estimate.quantized_bytes / quantized,
                "parameters_estimate": estimate.parameters,
                "parameters_real": real.parameters,
                "estimate_seconds": estimate_seconds,
            }
        )
        print(
            f"{source} {bits}/{group_size}: estimate {estimate.size_bytes:,} "
            f"low {estimate.size_bytes_low:,} real {real.size_bytes:,} "
            f"({estimate.size_bytes / real.size_bytes - 1:+.2%})",
            flush=True,
        )
    return {"source": source, "describe_seconds": describe_seconds, "settings": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy models only")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "plan.json"))
    args = parser.parse_args()
    results: dict[str, Any] = {
        "benchmark": "plan",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "python": sys.version.split()[0],
        "definitions": {
            "estimate_bytes": "plan.estimate_artifact(...).size_bytes (normal-weight pricing)",
            "low_bytes": "size_bytes_low (Student-t(5) pricing)",
            "real_bytes": "container.compress_model(...).size_bytes",
            "quantized_*": "bytes of the quantized tensors' payloads only",
        },
        "models": [],
    }
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        for architecture, tie in TOYS:
            folder = scratch / f"toy-{architecture}-{'tied' if tie else 'untied'}"
            make_toy_model(folder, architecture, tie_word_embeddings=tie)  # type: ignore[arg-type]
            entry = measure(str(folder), scratch, CONFIGS)
            entry["source"] = f"toy {architecture} ({'tied' if tie else 'untied'}, random init)"
            results["models"].append(entry)
        if not args.quick and SMOLLM2.is_file():
            entry = measure(str(SMOLLM2), scratch, CONFIGS)
            entry["source"] = "SmolLM2-135M-Instruct.Q4_1.gguf"
            results["models"].append(entry)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
