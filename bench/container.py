"""End-to-end .certz throughput and peak memory: compress_model, verify_artifact, load.

Measures (results: bench/results/container.json), each case in its own subprocess so
that its peak resident memory (ru_maxrss) belongs to it alone:

* ``synthetic``: a Llama-2-7B-shaped slice written as safetensors: a 32000x4096
  embedding (tied LM head), one 11008x4096 and one 4096x11008 MLP matrix, two norms
  (221 M parameters; --quick: a quarter of each dimension). Compress at 4 bits,
  groups of 128: parameters per second of the whole streaming write (read,
  quantize, code, hash, spool, atomic rename) and of ``verify_artifact`` (read, check,
  decode, dequantize, hash); peak RSS against the target 3 x largest tensor + 1 GiB.
* ``smollm2``: the demo model's GGUF, if present under .cache/models/smollm2/ (it is
  dequantized by transformers, so the whole model is in memory; the memory target
  applies to safetensors inputs): file size, bits per parameter, what the header
  and the embedded tokenizer cost, compress and verify seconds, load_model seconds.

Run:  .venv/bin/python bench/container.py [--quick] [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2_GGUF = ROOT / ".cache" / "models" / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _peak_rss_bytes() -> int:
    """Peak resident memory of this process image.

    VmHWM (Linux) rather than ru_maxrss: ru_maxrss survives fork + exec, so a worker
    would report its parent's peak (here: the process that generated the weights).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_synthetic(folder: Path, scale: int) -> int:
    """Write the synthetic model; returns the largest tensor's float32 size in bytes."""
    import numpy as np
    from safetensors.numpy import save_file

    hidden, inner, vocab = 4096 // scale, 11008 // scale, 32000 // scale
    rng = np.random.default_rng(0)

    def weights(*shape: int) -> Any:
        # heavy-tailed like trained weights (Student-t, 5 dof), std about 0.02
        return (rng.standard_t(5, size=shape) * 0.0155).astype(np.float32)

    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            "model.embed_tokens.weight": weights(vocab, hidden),
            "model.layers.0.mlp.up_proj.weight": weights(inner, hidden),
            "model.layers.0.mlp.down_proj.weight": weights(hidden, inner),
            "model.layers.0.input_layernorm.weight": np.ones(hidden, np.float32),
            "model.norm.weight": (1 + 0.01 * rng.standard_normal(hidden)).astype(np.float32),
        },
        str(folder / "model.safetensors"),
        metadata={"format": "pt"},
    )
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": inner,
        "num_hidden_layers": 1,
        "num_attention_heads": 32 // scale,
        "num_key_value_heads": 32 // scale,
        "vocab_size": vocab,
        "tie_word_embeddings": True,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return vocab * hidden * 4


def worker(case: str, source: str, out: str) -> dict[str, Any]:
    """Compress + verify one model in this process; report times and peak RSS."""
    from certify.container import compress_model, inspect_artifact, load_model, verify_artifact
    from certify.models import resolve_model
    from certify.records import QuantizationSettings

    group_size = 32 if case == "smollm2" else 128
    resolved = resolve_model(source)
    before = _peak_rss_bytes()
    start = time.perf_counter()
    record = compress_model(resolved, QuantizationSettings(bits=4, group_size=group_size), out)
    compress_seconds = time.perf_counter() - start
    compress_peak = _peak_rss_bytes()
    start = time.perf_counter()
    verify_artifact(out)
    verify_seconds = time.perf_counter() - start
    result: dict[str, Any] = {
        "bits": 4,
        "group_size": group_size,
        "parameters": record.parameters,
        "size_bytes": record.size_bytes,
        "bits_per_parameter": record.bits_per_parameter,
        "compress_seconds": compress_seconds,
        "compress_parameters_per_second": record.parameters / compress_seconds,
        "verify_seconds": verify_seconds,
        "verify_parameters_per_second": record.parameters / verify_seconds,
        "rss_before_compress_bytes": before,
        "peak_rss_compress_bytes": compress_peak,
        "peak_rss_after_verify_bytes": _peak_rss_bytes(),
    }
    report = inspect_artifact(out)
    result["overhead"] = report["overhead"]
    result["kinds"] = {
        kind: {key: row[key] for key in ("parameters", "bits_per_parameter", "share_of_file")}
        | {"code_entropy_bits_per_parameter": row["code_entropy_bits_per_parameter"]}
        for kind, row in report["kinds"].items()
    }
    if case == "smollm2":
        start = time.perf_counter()
        load_model(out)
        result["load_model_seconds"] = time.perf_counter() - start
    return result


def _run_worker(case: str, source: Path, out: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--worker", case, str(source), str(out)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"},
    )
    if done.returncode != 0:
        raise SystemExit(f"{case} worker failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="quarter-size synthetic model")
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/container.json")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0

    results: dict[str, Any] = {"quick": args.quick, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="certify-bench-") as scratch:
        folder = Path(scratch) / "synthetic"
        largest = make_synthetic(folder, 4 if args.quick else 1)
        synthetic = _run_worker("synthetic", folder, Path(scratch) / "synthetic.certz")
        limit = 3 * largest + (1 << 30)
        synthetic |= {
            "largest_tensor_bytes": largest,
            "peak_rss_limit_bytes": limit,
            "peak_rss_within_limit": synthetic["peak_rss_compress_bytes"] <= limit,
        }
        results["synthetic"] = synthetic
        print(
            f"synthetic: {synthetic['parameters'] / 1e6:.1f} M parameters, "
            f"{synthetic['bits_per_parameter']:.4f} bits/param, compress "
            f"{synthetic['compress_parameters_per_second'] / 1e6:.1f} M/s, verify "
            f"{synthetic['verify_parameters_per_second'] / 1e6:.1f} M/s, peak RSS "
            f"{synthetic['peak_rss_compress_bytes'] / 2**30:.2f} GiB "
            f"(limit {limit / 2**30:.2f} GiB)"
        )
        if SMOLLM2_GGUF.is_file() and not args.quick:
            smol = _run_worker("smollm2", SMOLLM2_GGUF, Path(scratch) / "smollm2.certz")
            results["smollm2"] = smol
            print(
                f"smollm2 (GGUF): {smol['size_bytes']:,} bytes, "
                f"{smol['bits_per_parameter']:.4f} bits/param, header "
                f"{smol['overhead']['header_bytes']:,} B, embedded files "
                f"{sum(smol['overhead']['files'].values()):,} B, compress "
                f"{smol['compress_seconds']:.1f} s, load {smol['load_model_seconds']:.1f} s"
            )
        else:
            results["smollm2"] = None
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temp = args.output.with_name(f"{args.output.name}.tmp-{os.getpid()}")
    temp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(temp, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
