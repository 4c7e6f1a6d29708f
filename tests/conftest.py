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


@pytest.fixture
def hub_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A local stand-in Hub (tests/hubserver.py) on 127.0.0.1 with an ephemeral port.

    Yields a ``HubServer`` with ``.endpoint``, ``.token`` (user "alice"; "bob" has
    ``.tokens`` entry "hf_test_bob"), ``.repo_dir(repo_id)``, ``.files(repo_id)``,
    ``.head(repo_id)``, ``.fail(...)`` (fault injection) and ``.lfs_threshold_bytes``.
    For this test only it lets huggingface_hub (2.x) go online again: HF_HUB_OFFLINE and
    HF_ENDPOINT are read at import, so the module constants are patched
    (``constants.HF_HUB_OFFLINE = False``; ``constants.ENDPOINT`` and the resolve URL template
    point at the server, so a forgotten endpoint never reaches the internet) and the
    download cache and token file point into ``tmp_path`` so no real login is used.
    Pass ``endpoint=hub_server.endpoint`` explicitly anyway; subprocesses need
    HF_ENDPOINT, HF_HUB_OFFLINE=0 and HF_HOME in their environment.
    """
    import sys

    from huggingface_hub import constants

    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from hubserver import HubServer
    finally:
        sys.path.pop(0)

    server = HubServer(
        tmp_path / "hub-server", tokens={"hf_test_alice": "alice", "hf_test_bob": "bob"}
    ).start()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # ENDPOINT and the URL template derived from it at import must change together:
    # hf_hub_url swaps in an explicit endpoint only where the template starts with ENDPOINT.
    monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
    monkeypatch.setattr(
        constants,
        "HUGGINGFACE_CO_URL_TEMPLATE",
        server.endpoint + "/{repo_id}/resolve/{revision}/{filename}",
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-hf-token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    try:
        yield server
    finally:
        server.stop()
