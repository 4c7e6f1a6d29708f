"""Options several commands share: one definition each, so that ``run``, ``plan`` and
``evaluate`` spell, default and explain them the same way (typer reads an option's
definition without changing it, so one object can serve many commands). Ranges are
left to the settings records, which check them once and name the flag (exit code 3)."""

from __future__ import annotations

from typing import Any

import typer

from certify.cli._app import parse_float_list, parse_int_list
from certify.errors import InvalidInputError
from certify.records import DEFAULT_CALIBRATION_TOKENS, QUANTIZER_METHODS, EvaluationSettings

#: what --quantizer accepts, and the method each names
QUANTIZER_NAMES = {"rtn": QUANTIZER_METHODS[0], "gptq": QUANTIZER_METHODS[1]}
#: the quantizer when --quantizer is not given: GPTQ beats RTN at every bits/group size
#: measured, at equal file size (bench/results/quantize.json; issue 14's targets are
#: still unmet on the demo model)
DEFAULT_QUANTIZER = "gptq"

# --------------------------------------------------------------------------- the model

MODEL_REVISION: Any = typer.Option(None, "--revision", help="Model revision on the Hub.")
BITS: Any = typer.Option("4", "--bits", "-b", help="Bits per weight (2..8) or 'auto'.")
GROUP_SIZE: Any = typer.Option(128, "--group-size", "-g", help="Weights per scale.")
QUANTIZER: Any = typer.Option(
    None,
    "--quantizer",
    help="rtn (round to nearest) or gptq (Hessian-aware, calibrated on text; the default). "
    "With --bits auto and no --quantizer, both are searched.",
)
CALIBRATION: Any = typer.Option(
    None,
    "--calibration",
    help="GPTQ's calibration text: any source certify tokenize reads (default: a seeded "
    "sample of the run's dataset, drawn apart from the certified sample).",
)
CALIBRATION_TOKENS: Any = typer.Option(
    DEFAULT_CALIBRATION_TOKENS,
    "--calibration-tokens",
    help="Calibration tokens for GPTQ (windows of 512).",
)
ENDPOINT: Any = typer.Option(
    None, "--endpoint", help="Hub endpoint (default $HF_ENDPOINT or huggingface.co)."
)
DEVICE: Any = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N or mps.")
DTYPE: Any = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16.")

# --------------------------------------------------------------------------- the data

TEXT_COLUMN: Any = typer.Option(
    "text", "--text-column", help="Text field of the dataset (.jsonl, .parquet, Hub)."
)
MAX_DOCUMENTS: Any = typer.Option(
    None, "--max-documents", help="Read only the first N documents of the dataset."
)
DATASET_CONFIG: Any = typer.Option(
    None, "--dataset-config", help="Configuration (subset) of a Hub dataset."
)
SPLIT: Any = typer.Option("train", "--split", help="Split of a Hub dataset.")
DATASET_REVISION: Any = typer.Option(
    None, "--dataset-revision", help="Dataset revision on the Hub."
)
EXTENSIONS: Any = typer.Option(
    "txt,md,py,jsonl,parquet", "--extensions", help="File extensions read from a folder."
)
EXCLUDE: Any = typer.Option(
    [], "--exclude", metavar="PATTERN", help="Skip folder files matching (repeatable)."
)
DECODE_ERRORS: Any = typer.Option(
    "strict", "--decode-errors", help="Non-UTF-8 text files: strict, replace or skip."
)
DATA_MODE: Any = typer.Option(
    "auto",
    "--data-mode",
    help="exact (tokenize everything, n counted), sampled (draw units, n bounded "
    "below) or auto (sampled for a Hub dataset or a local one of 1 GiB or more).",
)
ACCEPTED_UNITS: Any = typer.Option(
    1000, "--accepted-units", help="Sampled mode: G, the units accepted (observations)."
)
CHUNKS_PER_UNIT: Any = typer.Option(
    4, "--chunks-per-unit", help="Sampled mode: r, chunks scored in each accepted unit."
)
TRUNCATE_TOKENS: Any = typer.Option(
    None,
    "--truncate-tokens",
    help="Sampled mode: keep each document's first c tokens (weight c per document); "
    "needed for tokenizers whose tokens may cover no byte.",
)

# --------------------------------------------------------------------------- the evaluation

SAMPLES: Any = typer.Option(10000, "--samples", "-s", help="Chunks drawn for the risk estimate.")
CHUNK_TOKENS: Any = typer.Option(1024, "--chunk-tokens", help="Tokens per chunk (S).")
CONTEXT_TOKENS: Any = typer.Option(
    0, "--context-tokens", help="Unscored context tokens before a chunk (P)."
)
ALPHAS: Any = typer.Option(
    "0.001,0.01,0.1,0.5", "--alphas", help="Smoothing values α of the bits loss."
)
TOP_K: Any = typer.Option("1,10,100", "--top-k", help="k values of the top-k error.")
EXHAUSTIVE: Any = typer.Option(
    False, "--exhaustive", help="Score every chunk once (no sampling term)."
)
SEED: Any = typer.Option(
    None,
    "--seed",
    min=0,
    help="Seed of the chunk sample (default: derived from the model, data, S, P and s).",
)

# --------------------------------------------------------------------------- the bound

DELTA: Any = typer.Option(0.05, "--delta", help="Failure probability of the certificate.")
HELDOUT: Any = typer.Option(
    False, "--heldout", help="Assert the data is independent of the model (drops file size)."
)


def parse_bits(text: str) -> int | None:
    """``--bits``: a whole number (checked later against 2..8), or ``auto`` (None)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidInputError(
            f"expected a whole number of bits or 'auto', got {text!r}", field="--bits"
        ) from None


def parse_extensions(text: str) -> tuple[str, ...]:
    """``--extensions``: a comma-separated list; empty items dropped."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parse_quantizers(text: str | None, auto: bool) -> tuple[str, tuple[str, ...]]:
    """``--quantizer``: (the method for a fixed --bits, the methods --bits auto searches).

    Without the option, a fixed --bits uses :data:`DEFAULT_QUANTIZER` and --bits auto
    searches every quantizer (each one counted in the prior).
    """
    if text is None:
        return QUANTIZER_NAMES[DEFAULT_QUANTIZER], (tuple(QUANTIZER_NAMES.values()) if auto else ())
    name = text.strip().lower()
    if name not in QUANTIZER_NAMES:
        raise InvalidInputError(
            f"expected {' or '.join(QUANTIZER_NAMES)}, got {text!r}", field="--quantizer"
        )
    method = QUANTIZER_NAMES[name]
    return method, ((method,) if auto else ())


def evaluation_settings(
    *,
    chunk_tokens: int,
    context_tokens: int,
    samples: int,
    exhaustive: bool,
    alphas: str,
    top_k: str,
    **placement: Any,
) -> EvaluationSettings:
    """The evaluation record from the options ``run``, ``plan`` and ``evaluate`` share
    (``--alphas`` and ``--top-k`` parsed here); ``placement`` holds what only some
    commands take (seed, device, dtype, batch_size)."""
    return EvaluationSettings(
        chunk_tokens=chunk_tokens,
        context_tokens=context_tokens,
        samples=samples,
        exhaustive=exhaustive,
        alphas=parse_float_list(alphas, "--alphas"),
        top_k=parse_int_list(top_k, "--top-k"),
        **placement,
    )
