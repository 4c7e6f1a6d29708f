"""Resolving models (local folders, Hub ids, refusals) and streaming their tensors."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from certify.errors import CertifyError, ModelError
from certify.models import HUB_ALLOW_PATTERNS, iter_tensors, resolve_model, tensor_specs


def test_local_folder_resolves(toy_model: Path) -> None:
    resolved = resolve_model(str(toy_model))
    assert resolved.source == str(toy_model)
    assert resolved.architecture == "LlamaForCausalLM"
    assert resolved.weight_files == ("model.safetensors",)
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(resolved.tokenizer_files)
    assert resolved.config["model_type"] == "llama"
    assert resolved.revision.startswith("sha256:") and len(resolved.revision) == 7 + 64
    assert resolved.gguf_file is None


def test_content_revision_follows_the_weights(toy_model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(toy_model, copy)
    assert resolve_model(str(copy)).revision == resolve_model(str(toy_model)).revision
    (copy / "tokenizer_config.json").write_text("{}")  # tokenizer files are not weights
    assert resolve_model(str(copy)).revision == resolve_model(str(toy_model)).revision
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(data))
    assert resolve_model(str(copy)).revision != resolve_model(str(toy_model)).revision


def test_iter_tensors_matches_safetensors(toy_model: Path) -> None:
    from safetensors.numpy import load_file

    expected = load_file(str(toy_model / "model.safetensors"))
    resolved = resolve_model(str(toy_model))
    seen = dict(iter_tensors(resolved))
    assert seen.keys() == expected.keys()
    for name, array in seen.items():
        assert np.array_equal(array, expected[name])
    specs = tensor_specs(resolved)
    assert [s.name for s in specs] == list(seen)
    assert all(s.shape == seen[s.name].shape and s.dtype == "float32" for s in specs)


def test_iter_tensors_is_lazy(toy_model: Path) -> None:
    iterator = iter_tensors(resolve_model(str(toy_model)))
    name, array = next(iterator)
    assert isinstance(name, str) and isinstance(array, np.ndarray)


def test_sharded_and_bfloat16_checkpoints(
    toy_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(toy_model_factory("qwen2", tie=True)))
    model.to(torch.bfloat16).save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    resolved = resolve_model(str(tmp_path / "sharded"))
    assert len(resolved.weight_files) > 1
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    specs = tensor_specs(resolved)
    assert {s.dtype for s in specs} == {"bfloat16"}
    seen = dict(iter_tensors(resolved))
    state = model.state_dict()
    assert set(seen) == {s.name for s in specs}
    for name, array in seen.items():
        assert array.dtype == np.float32  # numpy has no bfloat16: exact upcast
        assert torch.equal(torch.from_numpy(array).to(torch.bfloat16), state[name])


def test_missing_shard_is_refused(toy_model_factory: Callable[..., Path], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(toy_model_factory("llama")))
    model.save_pretrained(tmp_path / "m", max_shard_size="100KB")
    shard = sorted((tmp_path / "m").glob("*-of-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(ModelError, match="missing"):
        resolve_model(str(tmp_path / "m"))


@pytest.mark.parametrize("source", ["/no/such/folder", "./nope", "model.gguf", "a/b/c"])
def test_unknown_path_is_refused(source: str) -> None:
    with pytest.raises(ModelError, match="no such model"):
        resolve_model(source)


def test_other_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "weights.txt").write_text("hello")
    with pytest.raises(ModelError, match=r"not a \.gguf"):
        resolve_model(str(tmp_path / "weights.txt"))


def test_pickled_only_model_is_refused_without_unpickling(toy_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bin-only"
    folder.mkdir()
    shutil.copy(toy_model / "config.json", folder / "config.json")
    # not a valid pickle: if anything tried to unpickle it, the error would differ
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 not really a pickle")
    with pytest.raises(ModelError, match=r"only pickled weights .*never unpickles"):
        resolve_model(str(folder))


def test_folder_without_weights_or_config(toy_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"no config\.json"):
        resolve_model(str(tmp_path))
    shutil.copy(toy_model / "config.json", tmp_path / "config.json")
    with pytest.raises(ModelError, match=r"no \*\.safetensors"):
        resolve_model(str(tmp_path))


def test_non_causal_model_is_refused(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32,
    )  # fmt: skip
    BertModel(config).save_pretrained(tmp_path / "bert")
    assert list((tmp_path / "bert").glob("*.safetensors"))
    with pytest.raises(ModelError, match="BertModel, not a causal language model"):
        resolve_model(str(tmp_path / "bert"))


def test_remote_code_needs_consent(toy_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    shutil.copytree(toy_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["FancyForCausalLM"]
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_fancy.FancyForCausalLM"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="trust-remote-code"):
        resolve_model(str(folder))
    assert resolve_model(str(folder), trust_remote_code=True).architecture == "FancyForCausalLM"


def test_already_quantized_checkpoint_is_refused(toy_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "gptq"
    shutil.copytree(toy_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"already quantized \(gptq\)"):
        resolve_model(str(folder))


def test_revision_on_local_folder_is_refused(toy_model: Path) -> None:
    with pytest.raises(ModelError, match="revision"):
        resolve_model(str(toy_model), revision="main")


def test_hub_id_goes_through_hub_download(toy_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import certify.hub

    calls = []

    def fake_download(repo_id, revision, allow_patterns, *, endpoint, token):  # type: ignore[no-untyped-def]
        calls.append((repo_id, revision, tuple(allow_patterns), endpoint, token))
        return toy_model, "a" * 40

    monkeypatch.setattr(certify.hub, "download_snapshot", fake_download)
    resolved = resolve_model("org/tiny", "v1", endpoint="http://127.0.0.1:1", token="hf_x")
    assert resolved.revision == "a" * 40 and resolved.source == "org/tiny"
    assert calls == [("org/tiny", "v1", HUB_ALLOW_PATTERNS, "http://127.0.0.1:1", "hf_x")]
    assert not any(pattern.endswith((".bin", ".pt", "*")) for pattern in HUB_ALLOW_PATTERNS)


def test_unknown_hub_repo_offline_is_one_clear_line() -> None:
    with pytest.raises(CertifyError) as caught:
        resolve_model("certify-tests/no-such-model-anywhere")
    message = str(caught.value)
    assert "no-such-model-anywhere" in message and "\n" not in message


# --------------------------------------------------------------------------- GGUF


def _write_tiny_gguf(path: Path, tokenizer_dir: Path, hidden: int = 16, ffn: int = 32) -> Path:
    """A one-layer Llama-style GGUF (float32 tensors, GPT-2 BPE tokenizer) via GGUFWriter."""
    import gguf

    tokenizer = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    tokens: list[str] = [""] * len(tokenizer["model"]["vocab"])
    for text, index in tokenizer["model"]["vocab"].items():
        tokens[index] = text
    specials = {added["content"] for added in tokenizer.get("added_tokens", [])}
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]
    heads, kv_heads = 2, 1
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(hidden)
    writer.add_block_count(1)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens]
    )
    writer.add_token_merges(merges)
    writer.add_eos_token_id(0)
    writer.add_bos_token_id(1)
    rng = np.random.default_rng(0)
    head_dim = hidden // heads
    shapes = {
        "token_embd.weight": (len(tokens), hidden),
        "output.weight": (len(tokens), hidden),
        "blk.0.attn_q.weight": (hidden, hidden),
        "blk.0.attn_k.weight": (kv_heads * head_dim, hidden),
        "blk.0.attn_v.weight": (kv_heads * head_dim, hidden),
        "blk.0.attn_output.weight": (hidden, hidden),
        "blk.0.ffn_gate.weight": (ffn, hidden),
        "blk.0.ffn_up.weight": (ffn, hidden),
        "blk.0.ffn_down.weight": (hidden, ffn),
    }
    for name, shape in shapes.items():
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.1).astype(np.float32))
    for name in ("output_norm.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"):
        writer.add_tensor(name, (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_file_resolves_and_round_trips(toy_model: Path, tmp_path: Path) -> None:
    """GGUF in (dequantized by transformers), .certz out, same logits as in memory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from certify.container import compress_model, load_model_and_tokenizer, read_header
    from certify.quantize import dequantize, quantize_tensor
    from certify.records import QuantizationSettings

    gguf_path = _write_tiny_gguf(tmp_path / "tiny.gguf", toy_model)
    resolved = resolve_model(str(gguf_path))
    assert resolved.gguf_file == "tiny.gguf" and resolved.architecture == "LlamaForCausalLM"
    assert resolved.revision.startswith("sha256:")
    names = [spec.name for spec in tensor_specs(resolved)]
    assert "model.layers.0.self_attn.q_proj.weight" in names

    settings = QuantizationSettings(bits=4, group_size=16)
    compress_model(resolved, settings, tmp_path / "g.certz")
    assert read_header(tmp_path / "g.certz")["model"]["source"] == "tiny.gguf"
    decoded, tokenizer = load_model_and_tokenizer(tmp_path / "g.certz")

    reference = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="tiny.gguf")
    with torch.no_grad():
        for parameter in reference.state_dict().values():
            if parameter.ndim == 2:
                q = quantize_tensor(parameter.numpy(), settings.bits, settings.group_size)
                parameter.copy_(torch.from_numpy(dequantize(q)))
        ids = torch.tensor([[1, 5, 9, 77, 200, 3]])
        assert torch.equal(decoded(input_ids=ids).logits, reference(input_ids=ids).logits)
    original = AutoTokenizer.from_pretrained(str(tmp_path), gguf_file="tiny.gguf")
    text = "def f(x): return x * 3"
    assert tokenizer(text)["input_ids"] == original(text)["input_ids"]


def test_broken_gguf_is_refused(tmp_path: Path) -> None:
    (tmp_path / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\0" * 16)
    with pytest.raises(ModelError, match="GGUF"):
        resolve_model(str(tmp_path / "broken.gguf"))
