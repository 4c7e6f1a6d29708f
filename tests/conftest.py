"""Shared fixtures: tiny models built in-process, small texts, a CLI runner."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

# Nothing in the test suite may reach the network: huggingface_hub and transformers
# are told to stay offline unless a test points them at the local stand-in Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SAMPLE_TEXTS: tuple[str, ...] = tuple(
    f"Document {i}: the model reads token after token and predicts the next one. "
    f"def f_{i}(x):\n    return x * {i} + {i % 7}\n"
    + ("A longer paragraph repeats itself to give the tokenizer something to merge. " * (i % 5))
    for i in range(40)
)


@pytest.fixture(scope="session")
def sample_texts() -> tuple[str, ...]:
    """A few dozen short documents of mixed prose and code."""
    return SAMPLE_TEXTS


@pytest.fixture(scope="session")
def toy_model_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``make(arch="llama", tie=False, **overrides) -> Path`` of a saved tiny model (cached)."""
    from certify.toy import make_toy_model

    cache: dict[tuple[object, ...], Path] = {}

    def make(architecture: str = "llama", tie: bool = False, **overrides: object) -> Path:
        key = (architecture, tie, tuple(sorted(overrides.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"toy-{architecture}-{'tied' if tie else 'untied'}")
            cache[key] = make_toy_model(
                out,
                architecture,  # type: ignore[arg-type]
                texts=SAMPLE_TEXTS,
                tie_word_embeddings=tie,
                **overrides,
            )
        return cache[key]

    return make


@pytest.fixture(scope="session")
def toy_model(toy_model_factory: Callable[..., Path]) -> Path:
    """A tiny untied Llama-style model directory."""
    return toy_model_factory("llama")
