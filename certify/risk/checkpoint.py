"""Checkpoints: per-batch results kept on disk so an interrupted evaluation resumes.

Format (docs/RISK.md): a first line
``{"format": "certify-risk-checkpoint", "version": 1, "key": <sha256>, "batch_tokens": N}``
then one JSON line per finished batch, ``{"chunks": [...], "results": [[...], ...]}``,
appended and fsynced. A last line without its newline was cut by an interruption and
is ignored. ``chunks`` are chunk keys: the index of each distinct chunk in the sorted
order of the windows' ``chunk_ids`` (the key names the windows, so keys are unambiguous).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from certify._files import write_text_atomic
from certify._jcs import sha256_json
from certify.errors import EvaluationError

#: first line of a checkpoint file, and its version
CHECKPOINT_FORMAT = "certify-risk-checkpoint"
CHECKPOINT_VERSION = 1


def checkpoint_key(model_identity: str, data_identity: str, settings: dict[str, Any]) -> str:
    """sha256 naming one evaluation: the weights, the data (and windows) and every setting."""
    return sha256_json({"model": model_identity, "data": data_identity, "settings": settings})


def read_checkpoint(path: Path, key: str) -> tuple[int | None, dict[int, list[float]]]:
    """(batch tokens, chunk -> [scored, sums...]) from a checkpoint; empty if absent.

    A last line without its newline was cut by an interruption and is ignored.
    """
    if not path.exists():
        return None, {}
    lines = path.read_text(encoding="utf-8").split("\n")
    complete = lines[:-1]  # the text after the last newline is partial (or empty)
    if not complete:
        return None, {}
    try:
        header = json.loads(complete[0])
    except json.JSONDecodeError as error:
        raise EvaluationError(
            f"checkpoint {path} has an unreadable header ({error}); delete it to start over"
        ) from error
    if header.get("format") != CHECKPOINT_FORMAT or header.get("version") != CHECKPOINT_VERSION:
        raise EvaluationError(
            f"{path} is not a certify risk checkpoint of version {CHECKPOINT_VERSION}; "
            "choose another --checkpoint path"
        )
    if header.get("key") != key:
        raise EvaluationError(
            f"checkpoint {path} belongs to another model, dataset or settings; "
            "delete it or choose another --checkpoint path"
        )
    results: dict[int, list[float]] = {}
    for line in complete[1:]:
        if not line:
            continue
        entry = json.loads(line)
        for chunk, values in zip(entry["chunks"], entry["results"], strict=True):
            results[int(chunk)] = [float(value) for value in values]
    batch_tokens = header.get("batch_tokens")
    return (int(batch_tokens) if batch_tokens is not None else None), results


def start_checkpoint(path: Path, key: str, batch_tokens: int) -> None:
    """Write a fresh checkpoint holding only its header (temp file, then ``os.replace``)."""
    header = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "key": key,
        "batch_tokens": batch_tokens,
    }
    write_text_atomic(path, json.dumps(header) + "\n")


def append_checkpoint(path: Path, chunks: list[int], results: list[list[float]]) -> None:
    """Append one batch as one line; a torn last line is dropped on reading."""
    line = json.dumps({"chunks": chunks, "results": results}) + "\n"
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
