"""Tiny causal language models built from configs, with a tokenizer trained in-process.

Used by the test suite and by the demo's offline fallback. Nothing here downloads
anything: the tokenizer is a byte-level BPE trained on text given by the caller
(or a built-in paragraph), the weights are random (seeded). Models made here are
**random weights** and say so in their config (``certify_toy: true``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

Architecture = Literal["llama", "gpt2", "qwen2", "mistral"]
ARCHITECTURES: tuple[Architecture, ...] = ("llama", "gpt2", "qwen2", "mistral")

_DEFAULT_TEXT = (
    "The quick brown fox jumps over the lazy dog. A generalization bound says how far "
    "the risk on unseen data can be from the risk measured on the data we have. "
    "def add(a, b):\n    return a + b\n\nclass Point:\n    x: int\n    y: int\n"
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 and punctuation: ,.;:!?()[]{}<>\"'"
)


def train_tokenizer(
    out_dir: str | Path,
    texts: Iterable[str] | None = None,
    vocab_size: int = 384,
    with_bos: bool = True,
) -> Any:
    """Train a byte-level BPE tokenizer on ``texts`` and save it to ``out_dir``.

    Returns the ``PreTrainedTokenizerFast``. Special tokens: ``<|endoftext|>`` (EOS,
    also PAD) and, when ``with_bos``, ``<s>`` (BOS).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = list(texts) if texts is not None else [_DEFAULT_TEXT] * 4
    specials = ["<|endoftext|>"] + (["<s>"] if with_bos else [])
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        bos_token="<s>" if with_bos else None,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return fast


def make_config(
    architecture: Architecture,
    vocab_size: int,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate_size: int = 128,
    max_positions: int = 256,
    tie_word_embeddings: bool = False,
    bos_token_id: int | None = None,
    eos_token_id: int = 0,
) -> Any:
    """A transformers config for a tiny model of the given architecture."""
    from transformers import GPT2Config, LlamaConfig, MistralConfig, Qwen2Config

    common: dict[str, Any] = {
        "vocab_size": vocab_size,
        "tie_word_embeddings": tie_word_embeddings,
        "eos_token_id": eos_token_id,
        "bos_token_id": bos_token_id if bos_token_id is not None else eos_token_id,
        "pad_token_id": eos_token_id,
    }
    if architecture == "gpt2":
        return GPT2Config(
            n_embd=hidden_size,
            n_layer=layers,
            n_head=heads,
            n_inner=intermediate_size,
            n_positions=max_positions,
            **common,
        )
    config_class = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig}[
        architecture
    ]
    return config_class(
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_positions,
        **common,
    )


def make_toy_model(
    out_dir: str | Path,
    architecture: Architecture = "llama",
    texts: Iterable[str] | None = None,
    vocab_size: int = 384,
    seed: int = 0,
    tie_word_embeddings: bool = False,
    with_bos: bool = True,
    **config_overrides: Any,
) -> Path:
    """Write a tiny random-weight model (safetensors, config, tokenizer) to ``out_dir``.

    Returns ``out_dir``. Deterministic for a given ``seed`` and text.
    """
    import torch
    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    tokenizer = train_tokenizer(out, texts, vocab_size=vocab_size, with_bos=with_bos)
    config = make_config(
        architecture,
        vocab_size=len(tokenizer),
        tie_word_embeddings=tie_word_embeddings,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        **config_overrides,
    )
    config.certify_toy = True
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    return out
