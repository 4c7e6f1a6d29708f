"""Tiny models from configs load in transformers and are deterministic."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from certify.toy import ARCHITECTURES, make_toy_model


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_toy_model_loads(architecture: str, toy_model_factory) -> None:  # type: ignore[no-untyped-def]
    directory = toy_model_factory(architecture)
    model = AutoModelForCausalLM.from_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    ids = tokenizer("def f(x): return x", return_tensors="pt").input_ids
    logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tokenizer))
    assert model.config.certify_toy is True


def test_toy_model_is_deterministic(tmp_path: Path) -> None:
    first = make_toy_model(tmp_path / "a", "llama", seed=3)
    second = make_toy_model(tmp_path / "b", "llama", seed=3)
    assert (first / "model.safetensors").read_bytes() == (second / "model.safetensors").read_bytes()
    other = make_toy_model(tmp_path / "c", "llama", seed=4)
    assert (first / "model.safetensors").read_bytes() != (other / "model.safetensors").read_bytes()
    assert torch.equal(
        torch.tensor(list((first / "tokenizer.json").read_bytes())),
        torch.tensor(list((second / "tokenizer.json").read_bytes())),
    )
