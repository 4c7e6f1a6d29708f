"""The .certz container: round trips, determinism, golden fixture, corruption, CLI."""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from certify.cli import run_cli
from certify.container import (
    FORMAT_VERSION,
    MAGIC,
    PRELUDE,
    check_settings,
    compress_model,
    decode_state_dict,
    decompress_to_dir,
    inspect_artifact,
    iter_records,
    load_model,
    load_model_and_tokenizer,
    read_header,
    verify_artifact,
)
from certify.errors import ArtifactFormatError, InvalidInputError
from certify.models import iter_tensors, resolve_model
from certify.quantize import dequantize, quantize_tensor
from certify.records import QuantizationSettings

FIXTURES = Path(__file__).parent / "fixtures" / "container"
REPO = Path(__file__).resolve().parent.parent
SETTINGS = QuantizationSettings(bits=4, group_size=32)

# (architecture, tied embeddings): every family the issue names, tied and untied
MODELS = [("llama", False), ("llama", True), ("gpt2", True), ("qwen2", True), ("mistral", False)]


@pytest.fixture(scope="module")
def compressed(
    toy_model_factory: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., tuple[Path, Any]]:
    """``get(arch, tie) -> (artifact path, ArtifactRecord)``, cached per module."""
    cache: dict[tuple[str, bool], tuple[Path, Any]] = {}

    def get(architecture: str, tie: bool) -> tuple[Path, Any]:
        if (architecture, tie) not in cache:
            source = toy_model_factory(architecture, tie=tie)
            out = tmp_path_factory.mktemp("certz") / f"{architecture}-{tie}.certz"
            record = compress_model(resolve_model(str(source)), SETTINGS, out)
            cache[(architecture, tie)] = (out, record)
        return cache[(architecture, tie)]

    return get


def _dequantized_reference(source: Path, settings: QuantizationSettings) -> Any:
    """The original model with every quantized matrix replaced in memory (no file)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32).eval()
    originals = dict(iter_tensors(resolve_model(str(source))))
    state = model.state_dict()
    with torch.no_grad():
        for name, array in originals.items():
            if array.ndim == 2 and name in state:
                q = quantize_tensor(array, settings.bits, settings.group_size, settings.symmetric)
                state[name].copy_(torch.from_numpy(dequantize(q)))
    if model.config.tie_word_embeddings:
        model.tie_weights()
    return model


def _logits(model: Any) -> torch.Tensor:
    ids = torch.arange(1, 33, dtype=torch.long).reshape(2, 16) % model.config.vocab_size
    with torch.no_grad():
        return model(input_ids=ids).logits


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(("architecture", "tie"), MODELS)
def test_codes_round_trip_bit_exact(
    architecture: str,
    tie: bool,
    toy_model_factory: Callable[..., Path],
    compressed: Callable[..., tuple[Path, Any]],
) -> None:
    path, record = compressed(architecture, tie)
    originals = dict(iter_tensors(resolve_model(str(toy_model_factory(architecture, tie=tie)))))
    header = read_header(path)
    stored = set()
    for entry, value in iter_records(path, decode=False):
        stored.add(entry["name"])
        original = originals[entry["name"]]
        if entry["encoding"] == "quantized":
            assert value == quantize_tensor(original, SETTINGS.bits, SETTINGS.group_size)
        else:
            assert value == np.ascontiguousarray(original, dtype="<f4").tobytes()
    aliased = {alias["name"] for alias in header["aliases"]}
    assert stored | aliased == set(originals)
    assert not stored & aliased
    assert record.parameters == sum(originals[name].size for name in stored)
    assert verify_artifact(path) == record.decoded_weights_sha256


@pytest.mark.parametrize(("architecture", "tie"), MODELS)
def test_decoded_logits_equal_in_memory_dequantized(
    architecture: str,
    tie: bool,
    toy_model_factory: Callable[..., Path],
    compressed: Callable[..., tuple[Path, Any]],
    tmp_path: Path,
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, _ = compressed(architecture, tie)
    expected = _logits(_dequantized_reference(toy_model_factory(architecture, tie=tie), SETTINGS))
    folder = decompress_to_dir(path, tmp_path / "decoded")
    from_folder = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    assert from_folder.dtype == torch.float32
    assert torch.equal(_logits(from_folder), expected)
    assert torch.equal(_logits(load_model(path)), expected)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    original = AutoTokenizer.from_pretrained(str(toy_model_factory(architecture, tie=tie)))
    assert (
        tokenizer("def f(x): return x")["input_ids"] == original("def f(x): return x")["input_ids"]
    )


def test_public_load_and_dtype(compressed: Callable[..., tuple[Path, Any]]) -> None:
    import certify

    path, _ = compressed("qwen2", True)
    model = certify.load(path, dtype=torch.bfloat16, device="cpu")
    assert model.dtype == torch.bfloat16 and not model.training
    assert torch.equal(_logits(certify.load(path)), _logits(load_model(path)))


def test_decompress_refuses_folder_with_other_weights(
    compressed: Callable[..., tuple[Path, Any]], tmp_path: Path
) -> None:
    path, _ = compressed("llama", False)
    (tmp_path / "model.safetensors.index.json").write_text("{}")
    with pytest.raises(InvalidInputError, match="already holds other weights"):
        decompress_to_dir(path, tmp_path)
    decompress_to_dir(path, tmp_path / "fresh")
    decompress_to_dir(path, tmp_path / "fresh")  # overwriting its own output is fine


def test_size_bytes_and_sha256_describe_the_file(
    compressed: Callable[..., tuple[Path, Any]],
) -> None:
    import hashlib

    path, record = compressed("llama", False)
    assert record.size_bytes == os.path.getsize(path)
    assert record.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record.format_version == FORMAT_VERSION
    assert record.bits_per_parameter == pytest.approx(8 * record.size_bytes / record.parameters)
    assert record.quantization["bits"] == 4 and record.quantization["group_size"] == 32


def test_compressing_twice_gives_identical_bytes(
    toy_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    resolved = resolve_model(str(toy_model_factory("gpt2", tie=True)))
    first = compress_model(resolved, SETTINGS, tmp_path / "a.certz")
    second = compress_model(resolved, SETTINGS, tmp_path / "b.certz")
    assert (tmp_path / "a.certz").read_bytes() == (tmp_path / "b.certz").read_bytes()
    assert first.sha256 == second.sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.certz", "b.certz"]  # no leftovers


def test_tied_lm_head_stored_once(tmp_path: Path, toy_model_factory: Callable[..., Path]) -> None:
    """A checkpoint that stores lm_head.weight next to an identical embedding."""
    from safetensors.numpy import save_file

    source = tmp_path / "both"
    shutil.copytree(toy_model_factory("llama", tie=True), source)
    tensors = dict(iter_tensors(resolve_model(str(source))))
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].copy()
    save_file(tensors, str(source / "model.safetensors"), metadata={"format": "pt"})
    record = compress_model(resolve_model(str(source)), SETTINGS, tmp_path / "t.certz")
    header = read_header(tmp_path / "t.certz")
    pair = {"lm_head.weight", "model.embed_tokens.weight"}
    tied = [a for a in header["aliases"] if {a["name"], a["target"]} == pair]
    assert len(tied) == 1  # the first in file order is stored, the other aliases it
    assert tied[0]["name"] not in {entry["name"] for entry in header["tensors"]}
    state = decode_state_dict(tmp_path / "t.certz")
    assert state["lm_head.weight"] is state["model.embed_tokens.weight"]
    assert record.parameters == sum(tensors[e["name"]].size for e in header["tensors"])


def test_bfloat16_model_keeps_raw_dtype(
    tmp_path: Path, toy_model_factory: Callable[..., Path]
) -> None:
    from transformers import AutoModelForCausalLM

    source = tmp_path / "bf16"
    model = AutoModelForCausalLM.from_pretrained(str(toy_model_factory("qwen2", tie=True)))
    model.to(torch.bfloat16).save_pretrained(source)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(toy_model_factory("qwen2", tie=True) / name, source / name)
    resolved = resolve_model(str(source))
    record = compress_model(resolved, SETTINGS, tmp_path / "bf16.certz")
    header = read_header(tmp_path / "bf16.certz")
    assert {entry["dtype"] for entry in header["tensors"]} == {"bfloat16"}
    state = decode_state_dict(tmp_path / "bf16.certz")
    raw = [e["name"] for e in header["tensors"] if e["encoding"] == "raw"]
    assert raw and all(state[name].dtype == torch.bfloat16 for name in raw)
    originals = dict(iter_tensors(resolved))
    for name in raw:  # bf16 -> float32 (reading) -> bf16 (stored) is exact
        assert torch.equal(state[name].float(), torch.from_numpy(originals[name]))
    assert verify_artifact(tmp_path / "bf16.certz") == record.decoded_weights_sha256


def test_keep_pattern_uses_high_precision_bits(
    toy_model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    settings = QuantizationSettings(bits=2, group_size=32, high_precision_tensors=("lm_head*",))
    compress_model(resolve_model(str(toy_model_factory("llama"))), settings, tmp_path / "k.certz")
    bits = {e["name"]: e.get("bits") for e in read_header(tmp_path / "k.certz")["tensors"]}
    assert bits["lm_head.weight"] == 8
    assert bits["model.embed_tokens.weight"] == 2
    assert read_header(tmp_path / "k.certz")["quantization"]["high_precision_tensors"] == [
        "lm_head*"
    ]


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        (QuantizationSettings(bits=1), "bits"),
        (QuantizationSettings(bits=9), "bits"),
        (QuantizationSettings(group_size=0), "group_size"),
        (QuantizationSettings(group_size=-32), "group_size"),
        (
            QuantizationSettings(high_precision_bits=12, high_precision_tensors=("lm_head*",)),
            "high_precision_bits",
        ),
        (QuantizationSettings(method="gptq"), "method"),
    ],
)
def test_bad_settings_are_refused(
    settings: QuantizationSettings, field: str, toy_model: Path, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match=field):
        check_settings(settings)
    with pytest.raises(InvalidInputError, match=field):
        compress_model(resolve_model(str(toy_model)), settings, tmp_path / "x.certz")
    assert not list(tmp_path.iterdir())


def test_keep_pattern_matching_nothing_is_refused(toy_model: Path, tmp_path: Path) -> None:
    settings = QuantizationSettings(high_precision_tensors=("no_such_tensor*",))
    with pytest.raises(InvalidInputError, match="no_such_tensor"):
        compress_model(resolve_model(str(toy_model)), settings, tmp_path / "x.certz")


def test_progress_reports_all_parameters(toy_model: Path, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    compress_model(
        resolve_model(str(toy_model)),
        SETTINGS,
        tmp_path / "p.certz",
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls and calls[-1][0] == calls[-1][1]
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


# --------------------------------------------------------------------------- golden fixture


def _portable(header: dict[str, Any]) -> dict[str, Any]:
    """The header minus what may change with library versions (docs/FORMAT.md, Versioning):
    version fields, and the xz bytes of embedded files (so also record offsets)."""
    copy = json.loads(json.dumps(header))
    copy.pop("libraries")
    copy.pop("data_size_bytes")
    copy["codec"].pop("constriction_version", None)
    copy["model"]["config"].pop("transformers_version", None)
    for entry in copy["files"] + copy["tensors"]:
        entry.pop("offset")
    for entry in copy["files"]:
        for key in ("length", "sha256"):
            entry.pop(key)
    return copy


def _tensor_records(path: Path) -> dict[str, bytes]:
    data = path.read_bytes()
    _, _, header_length = PRELUDE.unpack(data[: PRELUDE.size])
    start = PRELUDE.size + header_length + 32
    return {
        e["name"]: data[start + e["offset"] : start + e["offset"] + e["length"]]
        for e in read_header(path)["tensors"]
    }


def test_golden_fixture_reads_and_verifies() -> None:
    golden = FIXTURES / f"v{FORMAT_VERSION}" / "golden.certz"
    header = read_header(golden)
    assert header == json.loads((golden.parent / "header.json").read_text())
    assert verify_artifact(golden) == header["decoded_weights_sha256"]


def test_golden_fixture_regenerates_identically(tmp_path: Path) -> None:
    """Same source + settings must give the same bytes (else bump FORMAT_VERSION)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fixture", FIXTURES / "make_fixture.py")
    assert spec is not None and spec.loader is not None
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    golden = FIXTURES / f"v{FORMAT_VERSION}" / "golden.certz"
    source = tmp_path / "source"  # same folder name: the header records only the name
    shutil.copytree(golden.parent / "source", source)
    out = tmp_path / "again.certz"
    compress_model(resolve_model(str(source)), QuantizationSettings(**maker.GOLDEN_SETTINGS), out)
    assert _portable(read_header(out)) == _portable(read_header(golden))
    assert _tensor_records(out) == _tensor_records(golden)
    if read_header(out)["libraries"] == read_header(golden)["libraries"]:
        assert out.read_bytes() == golden.read_bytes()


def test_every_committed_version_is_read_or_refused_clearly() -> None:
    """Old-version rule: fixture folders are kept forever; readers handle each one."""
    folders = sorted(FIXTURES.glob("v*/golden.certz"))
    assert FIXTURES / f"v{FORMAT_VERSION}" / "golden.certz" in folders
    for golden in folders:
        version = int(golden.parent.name[1:])
        if version <= FORMAT_VERSION:
            assert read_header(golden)["format_version"] == version
            verify_artifact(golden)
        else:  # pragma: no cover - only once a newer fixture is committed by mistake
            with pytest.raises(ArtifactFormatError, match="newer"):
                read_header(golden)


# --------------------------------------------------------------------------- corruption


@pytest.fixture()
def golden_copy(tmp_path: Path) -> Path:
    target = tmp_path / "copy.certz"
    shutil.copy(FIXTURES / f"v{FORMAT_VERSION}" / "golden.certz", target)
    return target


def _flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x40
    path.write_bytes(bytes(data))


def _layout(path: Path) -> tuple[dict[str, Any], int]:
    header = read_header(path)
    _, _, header_length = PRELUDE.unpack(path.read_bytes()[: PRELUDE.size])
    return header, PRELUDE.size + header_length + 32


def test_wrong_magic_is_refused(golden_copy: Path) -> None:
    golden_copy.write_bytes(b"PK\x03\x04" + golden_copy.read_bytes()[4:])
    with pytest.raises(ArtifactFormatError, match="magic"):
        read_header(golden_copy)


def test_future_version_is_refused(golden_copy: Path) -> None:
    data = bytearray(golden_copy.read_bytes())
    data[len(MAGIC) : len(MAGIC) + 4] = struct.pack("<I", FORMAT_VERSION + 1)
    golden_copy.write_bytes(bytes(data))
    with pytest.raises(ArtifactFormatError, match="newer than this certify reads"):
        read_header(golden_copy)


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.3, 0.5, 0.8, 0.999])
def test_truncation_is_refused(golden_copy: Path, fraction: float) -> None:
    data = golden_copy.read_bytes()
    golden_copy.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ArtifactFormatError, match=r"truncated|magic"):
        verify_artifact(golden_copy)


def test_truncation_at_every_boundary_is_refused(golden_copy: Path) -> None:
    header, data_offset = _layout(golden_copy)
    data = golden_copy.read_bytes()
    cuts = {len(MAGIC), PRELUDE.size, PRELUDE.size + 10, data_offset - 1, data_offset}
    cuts |= {data_offset + e["offset"] for e in header["tensors"] + header["files"]}
    for cut in sorted(cuts):
        golden_copy.write_bytes(data[:cut])
        with pytest.raises(ArtifactFormatError, match="truncated"):
            read_header(golden_copy)


def test_trailing_bytes_are_refused(golden_copy: Path) -> None:
    golden_copy.write_bytes(golden_copy.read_bytes() + b"\0")
    with pytest.raises(ArtifactFormatError, match="trailing"):
        read_header(golden_copy)


@pytest.mark.parametrize("where", ["prelude_length", "header_start", "header_middle", "checksum"])
def test_flipped_header_byte_is_refused(golden_copy: Path, where: str) -> None:
    _, data_offset = _layout(golden_copy)
    position = {
        "prelude_length": len(MAGIC) + 4,
        "header_start": PRELUDE.size + 1,
        "header_middle": (PRELUDE.size + data_offset) // 2,
        "checksum": data_offset - 5,
    }[where]
    _flip(golden_copy, position)
    with pytest.raises(ArtifactFormatError, match=r"header_sha256|header_length|truncated"):
        read_header(golden_copy)


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_flipped_byte_in_each_tensor_names_it(golden_copy: Path, where: str) -> None:
    header, data_offset = _layout(golden_copy)
    pristine = golden_copy.read_bytes()
    for entry in header["tensors"]:
        offset = {"first": 0, "middle": entry["length"] // 2, "last": entry["length"] - 1}[where]
        golden_copy.write_bytes(pristine)
        _flip(golden_copy, data_offset + entry["offset"] + offset)
        with pytest.raises(ArtifactFormatError, match=f"tensor {entry['name']}: sha256"):
            verify_artifact(golden_copy)
        with pytest.raises(ArtifactFormatError, match=entry["name"]):
            decode_state_dict(golden_copy)


def test_flipped_byte_in_each_embedded_file_names_it(golden_copy: Path) -> None:
    header, data_offset = _layout(golden_copy)
    assert {e["name"] for e in header["files"]} >= {"tokenizer.json", "tokenizer_config.json"}
    pristine = golden_copy.read_bytes()
    for entry in header["files"]:
        golden_copy.write_bytes(pristine)
        _flip(golden_copy, data_offset + entry["offset"] + entry["length"] // 2)
        with pytest.raises(ArtifactFormatError, match=f"file {entry['name']}"):
            verify_artifact(golden_copy)


def test_consistent_but_wrong_header_is_refused(golden_copy: Path) -> None:
    """A header rewritten with a valid checksum but inconsistent fields."""
    import hashlib

    data = golden_copy.read_bytes()
    _, _, header_length = PRELUDE.unpack(data[: PRELUDE.size])
    header = json.loads(data[PRELUDE.size : PRELUDE.size + header_length])
    tail = data[PRELUDE.size + header_length + 32 :]

    def rewrite(mutate: Callable[[dict[str, Any]], None]) -> None:
        changed = json.loads(json.dumps(header))
        mutate(changed)
        body = json.dumps(changed, sort_keys=True, separators=(",", ":")).encode()
        head = PRELUDE.pack(MAGIC, FORMAT_VERSION, len(body)) + body
        golden_copy.write_bytes(head + hashlib.sha256(head).digest() + tail)

    rewrite(lambda h: h["tensors"][1].update(offset=h["tensors"][1]["offset"] + 1))
    with pytest.raises(ArtifactFormatError, match=r"tensors\[1\]"):
        read_header(golden_copy)
    rewrite(lambda h: h["tensors"][0].update(shape=[3, 5]))
    with pytest.raises(ArtifactFormatError, match=header["tensors"][0]["name"]):
        verify_artifact(golden_copy)
    rewrite(lambda h: h.update(decoded_weights_sha256="0" * 64))
    with pytest.raises(ArtifactFormatError, match="decoded_weights_sha256"):
        verify_artifact(golden_copy)
    rewrite(lambda h: h["quantization"].update(bits=11))
    with pytest.raises(ArtifactFormatError, match=r"header\.quantization\.bits"):
        read_header(golden_copy)
    rewrite(lambda h: h["aliases"].append({"name": "x", "target": "missing"}))
    with pytest.raises(ArtifactFormatError, match="aliases"):
        read_header(golden_copy)
    rewrite(lambda h: h["files"][0].update(name="../evil"))
    with pytest.raises(ArtifactFormatError, match="files"):
        read_header(golden_copy)


def test_missing_file_and_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactFormatError, match="no such file"):
        read_header(tmp_path / "absent.certz")
    with pytest.raises(ArtifactFormatError, match="folder"):
        read_header(tmp_path)


# --------------------------------------------------------------------------- inspect + CLI


def test_inspect_accounts_for_every_bit(compressed: Callable[..., tuple[Path, Any]]) -> None:
    path, record = compressed("llama", False)
    report = inspect_artifact(path)
    kinds = report["kinds"]
    assert set(kinds) >= {"embedding", "attention", "mlp", "lm_head", "raw", "overhead"}
    assert sum(k["coded_bits"] for k in kinds.values()) == 8 * record.size_bytes
    assert sum(k["share_of_file"] for k in kinds.values()) == pytest.approx(1.0)
    assert sum(k["parameters"] for k in kinds.values()) == record.parameters
    for kind in ("embedding", "attention", "mlp", "lm_head"):
        entropy = kinds[kind]["code_entropy_bits_per_parameter"]
        assert 0 < entropy <= SETTINGS.bits
        assert kinds[kind]["bits_per_parameter"] > entropy  # side information costs bits


def test_cli_compress_inspect_decompress(
    toy_model_factory: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.certz"
    source = str(toy_model_factory("mistral"))
    argv = ["compress", source, "--bits", "3", "-g", "32", "--keep", "lm_head*", "-o", str(out)]
    assert run_cli([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["size_bytes"] == os.path.getsize(out)
    assert summary["quantization"]["high_precision_tensors"] == ["lm_head*"]
    assert summary["model"]["architecture"] == "MistralForCausalLM"
    assert run_cli(["inspect", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["size_bytes"] == summary["size_bytes"]
    assert run_cli(["inspect", str(out)]) == 0
    assert "lm_head" in capsys.readouterr().out
    assert run_cli(["decompress", str(out), "-o", str(tmp_path / "dir")]) == 0
    assert (tmp_path / "dir" / "model.safetensors").is_file()
    model, tokenizer = load_model_and_tokenizer(out)
    assert type(model).__name__ == "MistralForCausalLM" and len(tokenizer) > 0


def test_cli_compress_with_gptq_records_the_calibration(
    toy_model_factory: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "calibration.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    out = tmp_path / "gptq.certz"
    source = str(toy_model_factory("llama"))
    argv = ["compress", source, "--quantizer", "gptq", "--calibration", str(text),
            "--calibration-tokens", "256", "--seed", "3", "-o", str(out), "--json"]  # fmt: skip
    assert run_cli(argv) == 0
    quantization = json.loads(capsys.readouterr().out)["quantization"]
    assert quantization["method"] == "gptq" and quantization["calibration_seed"] == 3
    assert quantization["calibration_source"] == "calibration.txt"
    assert (
        read_header(out)["quantization"]["calibration_sha256"]
        == (quantization["calibration_sha256"])
    )
    assert run_cli(["compress", source, "--quantizer", "gptq", "-o", str(out)]) == 2
    assert run_cli(["compress", source, "--calibration", str(text), "-o", str(out)]) == 2


@pytest.mark.parametrize(
    ("argv", "code", "text"),
    [
        (["compress", "MODEL", "--bits", "9"], 3, "bits"),
        (["compress", "MODEL", "--group-size", "0"], 3, "--group-size: must be between"),
        (["compress", "/no/such/model"], 4, "no such model"),
        (["inspect", "/no/such.certz"], 5, "no such file"),
    ],
)
def test_cli_errors(
    argv: list[str],
    code: int,
    text: str,
    toy_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [str(toy_model) if item == "MODEL" else item for item in argv]
    assert (
        run_cli([*argv, "-o", str(tmp_path / "x.certz")] if argv[0] == "compress" else argv) == code
    )
    err = capsys.readouterr().err
    assert text in err and len(err.strip().splitlines()) == 1
