"""Tests of certify.quantize.layerwise: GPTQ over a whole model, into a real .certz file."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from certify.calibration import CalibrationBatch, calibration_batch
from certify.container import compress_model, load_model, read_header, verify_artifact
from certify.errors import InvalidInputError, ModelError
from certify.models import resolve_model
from certify.quantize import (
    GPTQResult,
    dequantize,
    gptq_quantize_model,
    gptq_settings,
    layer_output_error,
    quantize_tensor,
)
from certify.records import QuantizationSettings

BITS, GROUP = 3, 32


def _calibration(
    vocab: int, windows: int = 16, length: int = 64, seed: int = 0
) -> CalibrationBatch:
    rng = np.random.default_rng(seed)
    rows = [np.concatenate([[1], rng.integers(2, vocab, length - 1)]) for _ in range(windows)]
    return calibration_batch(rows, source="random test tokens", seed=seed)


def _vocab(folder: Path) -> int:
    return int(json.loads((folder / "config.json").read_text())["vocab_size"])


@pytest.fixture(scope="module")
def quantized(toy_model: Path) -> Iterator[tuple[Path, CalibrationBatch, GPTQResult]]:
    batch = _calibration(_vocab(toy_model))
    settings = gptq_settings(BITS, GROUP, batch)
    with gptq_quantize_model(resolve_model(str(toy_model)), settings, batch) as result:
        yield toy_model, batch, result


def _original(folder: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()


def _dequantized_in_memory(folder: Path, quantizer: Callable[..., Any], bits: int) -> Any:
    """The original model with every 2-D weight replaced by its decoded codes."""
    model = _original(folder)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim == 2:
                codes = quantizer(name, parameter.detach().numpy(), bits)
                parameter.copy_(torch.from_numpy(dequantize(codes)))
    return model


@pytest.mark.parametrize(
    ("architecture", "tie"), [("llama", False), ("llama", True), ("gpt2", False)]
)
def test_round_trip_logits_are_bit_exact(
    architecture: str, tie: bool, toy_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    """The .certz decodes to exactly the model GPTQ's codes define (gpt2: Conv1D; tied:
    the LM head's GPTQ codes are the embedding's too)."""
    folder = toy_model_factory(architecture, tie=tie)
    batch = _calibration(_vocab(folder))
    resolved = resolve_model(str(folder))
    with gptq_quantize_model(resolved, gptq_settings(4, GROUP, batch), batch) as result:
        record = compress_model(
            resolved, result.settings, tmp_path / "m.certz", quantizer=result.quantizer
        )
        in_memory = _dequantized_in_memory(folder, result.quantizer, 4)
        # every linear of the 2 blocks, and the LM head
        linears = 2 * (7 if architecture == "llama" else 4)
        embedding = (
            "model.embed_tokens.weight" if architecture == "llama" else "transformer.wte.weight"
        )
        if tie:
            assert embedding in result.gptq_tensors and len(result.gptq_tensors) >= linears + 1
            assert embedding not in result.settings.rtn_tensors
        else:
            assert len(result.gptq_tensors) == linears + 1
            assert "lm_head.weight" in result.gptq_tensors
            assert embedding in result.settings.rtn_tensors
    decoded = load_model(tmp_path / "m.certz")
    tokens = torch.from_numpy(batch.tokens[:4].copy())
    with torch.no_grad():
        assert torch.equal(decoded(tokens).logits, in_memory(tokens).logits)
    assert verify_artifact(tmp_path / "m.certz") == record.decoded_weights_sha256


def test_scale_search_round_trips_and_is_recorded(
    toy_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    """With the scale search on, the file still decodes bit-exactly to the model the
    codes define, and the header (schema-checked on read) records both settings."""
    folder = toy_model_factory("llama", tie=False)
    batch = _calibration(_vocab(folder))
    resolved = resolve_model(str(folder))
    settings = gptq_settings(4, GROUP, batch, scale_search_steps=4, scale_search_price=0.5)
    with gptq_quantize_model(resolved, settings, batch) as result:
        compress_model(resolved, result.settings, tmp_path / "m.certz", quantizer=result.quantizer)
        in_memory = _dequantized_in_memory(folder, result.quantizer, 4)
    recorded = read_header(tmp_path / "m.certz")["quantization"]
    assert (recorded["scale_search_steps"], recorded["scale_search_price"]) == (4, 0.5)
    tokens = torch.from_numpy(batch.tokens[:4].copy())
    with torch.no_grad():
        assert torch.equal(
            load_model(tmp_path / "m.certz")(tokens).logits, in_memory(tokens).logits
        )


def test_header_records_the_settings(
    quantized: tuple[Path, CalibrationBatch, GPTQResult], tmp_path: Path
) -> None:
    folder, batch, result = quantized
    compress_model(
        resolve_model(str(folder)),
        result.settings,
        tmp_path / "m.certz",
        quantizer=result.quantizer,
    )
    header = read_header(tmp_path / "m.certz")  # validated against the schema
    recorded = header["quantization"]
    assert recorded["method"] == "gptq"
    assert recorded["calibration_sha256"] == batch.sha256
    assert recorded["calibration_tokens"] == batch.n_tokens == 16 * 64
    assert recorded["calibration_window_tokens"] == 64
    assert recorded["calibration_seed"] == 0
    assert recorded["compute_device"] == "cpu"
    assert (recorded["damping"], recorded["block_size"], recorded["act_order"]) == (
        0.01,
        128,
        True,  # act order by default (bench/results/quantize.json)
    )
    assert recorded["true_sequential"] is True
    assert recorded["rtn_tensors"] == ["model.embed_tokens.weight"]
    assert recorded["first_token_weight"] == 64.0
    assert recorded["rate_lambda"] == 0.2  # rate-aware rounding by default
    assert "scale_search_steps" not in recorded  # no scale search by default (measured)
    assert header["libraries"]["torch"] == torch.__version__
    quantized_names = {t["name"] for t in header["tensors"] if t["encoding"] == "quantized"}
    assert quantized_names == set(result.gptq_tensors) | set(recorded["rtn_tensors"])


def test_rtn_fallback_codes_are_rtn(quantized: tuple[Path, CalibrationBatch, GPTQResult]) -> None:
    folder, _, result = quantized
    embedding = _original(folder).get_input_embeddings().weight.detach().numpy()
    assert result.quantizer("model.embed_tokens.weight", embedding, BITS) == quantize_tensor(
        embedding, BITS, GROUP
    )


def _first_block_inputs(folder: Path, batch: CalibrationBatch) -> np.ndarray:
    """Inputs of block 0's q/k/v projections on the calibration tokens ([tokens, hidden])."""
    model = _original(folder)
    captured: list[np.ndarray] = []

    def keep(_module: Any, args: Any) -> None:
        captured.append(args[0].reshape(-1, args[0].shape[-1]).numpy().copy())

    handle = model.model.layers[0].self_attn.q_proj.register_forward_pre_hook(keep)
    with torch.no_grad():
        model(torch.from_numpy(batch.tokens))
    handle.remove()
    return np.concatenate(captured)


def test_layer_output_error_below_rtn(quantized: tuple[Path, CalibrationBatch, GPTQResult]) -> None:
    """On the calibration data, each first-stage linear's output error is below RTN's."""
    folder, batch, result = quantized
    inputs = _first_block_inputs(folder, batch).astype(np.float64)
    hessian = 2.0 * inputs.T @ inputs / inputs.shape[0]
    model = _original(folder)
    attention = model.model.layers[0].self_attn
    for name in ("q_proj", "k_proj", "v_proj"):
        weights = getattr(attention, name).weight.detach().numpy()
        full = f"model.layers.0.self_attn.{name}.weight"
        gptq = dequantize(result.quantizer(full, weights, BITS))
        rtn = dequantize(quantize_tensor(weights, BITS, GROUP))
        assert layer_output_error(weights, gptq, hessian) < layer_output_error(
            weights, rtn, hessian
        ), name


def test_model_output_error_below_rtn(quantized: tuple[Path, CalibrationBatch, GPTQResult]) -> None:
    """The whole quantized model is closer to the original than RTN on calibration data."""
    folder, batch, result = quantized
    tokens = torch.from_numpy(batch.tokens)
    with torch.no_grad():
        reference = _original(folder)(tokens).logits
        gptq = _dequantized_in_memory(folder, result.quantizer, BITS)(tokens).logits

        def rtn(_name: str, weights: np.ndarray, bits: int) -> Any:
            return quantize_tensor(weights, bits, GROUP)

        plain = _dequantized_in_memory(folder, rtn, BITS)(tokens).logits
    assert float(((gptq - reference) ** 2).mean()) < float(((plain - reference) ** 2).mean())


def test_same_inputs_same_bytes(toy_model: Path, tmp_path: Path) -> None:
    batch = _calibration(_vocab(toy_model), seed=3)
    resolved = resolve_model(str(toy_model))
    digests = []
    for attempt in range(2):
        settings = gptq_settings(4, 64, batch, act_order=True)
        with gptq_quantize_model(resolved, settings, batch) as result:
            path = tmp_path / f"{attempt}.certz"
            compress_model(resolved, result.settings, path, quantizer=result.quantizer)
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    other = _calibration(_vocab(toy_model), seed=4)
    with gptq_quantize_model(
        resolved, gptq_settings(4, 64, other, act_order=True), other
    ) as result:
        compress_model(
            resolved, result.settings, tmp_path / "other.certz", quantizer=result.quantizer
        )
    assert hashlib.sha256((tmp_path / "other.certz").read_bytes()).hexdigest() != digests[0]


def test_progress_per_block_and_high_precision(toy_model: Path) -> None:
    batch = _calibration(_vocab(toy_model), windows=4)
    calls: list[tuple[int, int]] = []
    settings = gptq_settings(2, GROUP, batch, high_precision_tensors=("*.down_proj.weight",))
    with gptq_quantize_model(
        resolve_model(str(toy_model)), settings, batch, progress=lambda d, t: calls.append((d, t))
    ) as result:
        assert calls == [(1, 3), (2, 3), (3, 3)]  # two blocks, then the LM head
        assert result.load("model.layers.1.mlp.down_proj.weight").bits == 8
        assert result.load("model.layers.1.mlp.up_proj.weight").bits == 2


def test_sequential_and_batched_stages_differ(toy_model: Path) -> None:
    """true_sequential=False calibrates every stage on the unquantized block (one pass)."""
    batch = _calibration(_vocab(toy_model), windows=4)
    resolved = resolve_model(str(toy_model))
    name = "model.layers.0.mlp.down_proj.weight"
    with gptq_quantize_model(resolved, gptq_settings(3, GROUP, batch), batch) as a:
        sequential = a.load(name)
        # the first stage (q/k/v) sees the same inputs either way
        first = a.load("model.layers.0.self_attn.q_proj.weight")
    settings = gptq_settings(3, GROUP, batch, true_sequential=False)
    with gptq_quantize_model(resolved, settings, batch) as b:
        assert b.settings.true_sequential is False
        assert b.load("model.layers.0.self_attn.q_proj.weight") == first
        assert b.load(name) != sequential


def test_mismatches_are_refused(
    quantized: tuple[Path, CalibrationBatch, GPTQResult], tmp_path: Path
) -> None:
    folder, batch, result = quantized
    name = "model.layers.0.mlp.up_proj.weight"
    weights = _original(folder).model.layers[0].mlp.up_proj.weight.detach().numpy()
    with pytest.raises(ModelError, match="differ"):
        result.quantizer(name, weights + 1.0, BITS)
    with pytest.raises(ModelError, match="bits"):
        result.quantizer(name, weights, BITS + 1)
    other = _calibration(_vocab(folder), seed=9)
    with pytest.raises(InvalidInputError, match="calibration"):
        gptq_quantize_model(resolve_model(str(folder)), gptq_settings(BITS, GROUP, batch), other)
    with pytest.raises(InvalidInputError, match="method"):
        gptq_quantize_model(resolve_model(str(folder)), QuantizationSettings(), batch)
    # the container refuses GPTQ settings without GPTQ codes, and RTN settings with GPTQ fields
    with pytest.raises(InvalidInputError, match="precomputed codes"):
        compress_model(resolve_model(str(folder)), result.settings, tmp_path / "x.certz")
    with pytest.raises(InvalidInputError, match="method"):
        compress_model(
            resolve_model(str(folder)),
            dataclasses.replace(result.settings, method="rtn-groupwise"),
            tmp_path / "x.certz",
        )
    assert not list(tmp_path.iterdir())


def test_calibration_outside_the_vocabulary_is_refused(toy_model: Path) -> None:
    vocab = _vocab(toy_model)
    batch = calibration_batch([np.array([1, vocab + 5])], source="bad")
    with pytest.raises(InvalidInputError, match="vocabulary"):
        gptq_quantize_model(resolve_model(str(toy_model)), gptq_settings(4, GROUP, batch), batch)


def test_spool_is_removed(toy_model: Path) -> None:
    batch = _calibration(_vocab(toy_model), windows=2)
    result = gptq_quantize_model(
        resolve_model(str(toy_model)), gptq_settings(4, GROUP, batch), batch
    )
    spool = Path(result._spool.name)
    assert any(spool.iterdir())
    result.close()
    assert not spool.exists()


_MEMORY_PROBE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    from certify.calibration import calibration_batch
    from certify.models import resolve_model
    from certify.quantize import gptq_quantize_model, gptq_settings

    def status(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    folder, vocab, small = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rng = np.random.default_rng(0)
    batch = calibration_batch([rng.integers(0, vocab, 256) for _ in range(8)], source="t")
    # import the modelling code on a tiny model of the same architecture first
    with gptq_quantize_model(resolve_model(small), gptq_settings(4, 128, batch), batch):
        pass
    resolved = resolve_model(folder)
    settings = gptq_settings(4, 128, batch)
    Path("/proc/self/clear_refs").write_text("5")
    baseline = status("VmRSS:")
    with gptq_quantize_model(resolved, settings, batch):
        peak = status("VmHWM:")
    print(json.dumps({"baseline": baseline, "peak": peak}))
    """
)


def _peak_growth(folder: Path, small: Path) -> int:
    """Peak resident memory above the start, in a fresh process, while GPTQ runs."""
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(folder), str(_vocab(folder)), str(small)],
        capture_output=True,
        text=True,
        check=True,
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return int(measured["peak"] - measured["baseline"])


def test_memory_bound_holds_with_large_layers(
    toy_model_factory: Callable[..., Path], toy_model: Path
) -> None:
    """Peak memory is one block plus its Hessians and the activations, not the model.

    Two models of the same (large) blocks, 8 and 32 of them (75 and 300 MB of float32
    weights): the peak resident memory (VmHWM of a fresh process) must not grow with
    the number of blocks, and must stay within one block + Hessian temporaries +
    activations + a fixed allowance.
    """
    hidden, inner = 512, 1024
    shape = {"hidden_size": hidden, "intermediate_size": inner, "heads": 8, "kv_heads": 8}
    deep = toy_model_factory("llama", layers=32, **shape)
    shallow = toy_model_factory("llama", layers=8, **shape)
    deep_bytes = sum(f.stat().st_size for f in deep.glob("*.safetensors"))
    shallow_bytes = sum(f.stat().st_size for f in shallow.glob("*.safetensors"))
    block_bytes = 4 * (4 * hidden * hidden + 3 * hidden * inner)
    hessian_bytes = 8 * inner * inner
    tokens = 8 * 256
    activation_bytes = 4 * tokens * (2 * hidden + 4 * inner)  # block in/out + MLP temporaries
    # a peak is noisy (allocator arenas, thread timing): the smaller of two fresh
    # processes; growth that follows the model's size shows in every run
    deep_growth = min(_peak_growth(deep, toy_model), _peak_growth(deep, toy_model))
    shallow_growth = _peak_growth(shallow, toy_model)
    assert deep_bytes - shallow_bytes > 200 << 20
    # 24 more blocks (225 MB more weights) cost a small fraction of that (allocator
    # fragmentation leaves ~1-2 MB per block; measured 36 MB here)
    extra_weights = deep_bytes - shallow_bytes
    assert deep_growth < shallow_growth + extra_weights / 4, (deep_growth, shallow_growth)
    bound = 2 * block_bytes + 6 * hessian_bytes + 2 * activation_bytes + (96 << 20)
    assert deep_growth < bound, (deep_growth, bound)
