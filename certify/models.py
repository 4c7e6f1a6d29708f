"""Resolve a model (Hub id, local folder or ``.gguf`` file) and stream its tensors.

:func:`resolve_model` checks that the input is a causal LM that transformers can
build without running unknown code, and pins its revision (Hub commit sha, or a
sha256 of the local weight and config files). :func:`iter_tensors` then yields
one tensor at a time from the safetensors shards, so memory stays bounded by the
largest tensor. Pickled ``.bin`` checkpoints are never opened.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from certify import hub  # only hub.py talks to the network
from certify._files import public_name
from certify.errors import CertifyError, ModelError
from certify.records import ResolvedModel

__all__ = [
    "HUB_ALLOW_PATTERNS",
    "TensorSpec",
    "iter_tensors",
    "load_source_tokenizer",
    "read_support_files",
    "resolve_model",
    "tensor_specs",
]

#: files fetched from the Hub: weights (safetensors only), config, tokenizer
HUB_ALLOW_PATTERNS: tuple[str, ...] = (
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)

#: files copied into the artifact next to the weights (tokenizer + generation defaults)
SUPPORT_FILE_NAMES: tuple[str, ...] = tuple(
    name for name in HUB_ALLOW_PATTERNS if "*" not in name and name != "config.json"
)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

# safetensors dtype tag -> the torch dtype name we record as the "original dtype"
SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and original dtype (torch name, e.g. ``bfloat16``) of one stored tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: str


# --------------------------------------------------------------------------- resolve


def resolve_model(
    source: str,
    revision: str | None = None,
    *,
    trust_remote_code: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
) -> ResolvedModel:
    """Find ``source`` (local folder, ``.gguf`` file or Hub id) and check it is a causal LM.

    Raises :class:`ModelError` for unknown paths or repos, models without safetensors
    weights, non-causal or unsupported architectures, and models that need
    ``trust_remote_code`` when it was not given.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return _resolve_dir(path, source, revision, trust_remote_code)
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return _resolve_gguf(path, source, revision, trust_remote_code)
        raise ModelError(
            f"{source} is a file but not a .gguf file",
            hint="pass a model folder (config.json + *.safetensors), a .gguf file or a Hub id",
        )
    looks_local = (
        source.startswith((".", "/", "~"))
        or source.lower().endswith(".gguf")
        or source.count("/") > 1
        or "\\" in source
    )
    if looks_local or not _HUB_ID.match(source):
        raise ModelError(
            f"no such model folder or file: {source}",
            hint="pass an existing folder, a .gguf file, or a Hub id such as org/name",
        )
    return _resolve_hub(source, revision, trust_remote_code, endpoint, token)


def _resolve_hub(
    repo_id: str,
    revision: str | None,
    trust_remote_code: bool,
    endpoint: str | None,
    token: str | None,
) -> ResolvedModel:
    try:
        local_dir, commit_sha = hub.download_snapshot(
            repo_id, revision, list(HUB_ALLOW_PATTERNS), endpoint=endpoint, token=token
        )
    except CertifyError:
        raise
    except Exception as error:  # hub.py should raise HubError; keep any slip on one line
        raise ModelError(
            f"could not fetch {repo_id}@{revision or 'main'} from the Hub: "
            f"{type(error).__name__}: {error}".replace("\n", " ")
        ) from error
    return _checked(Path(local_dir), repo_id, commit_sha, trust_remote_code, hub=True)


def _resolve_dir(
    path: Path, source: str, revision: str | None, trust_remote_code: bool
) -> ResolvedModel:
    if revision is not None:
        raise ModelError(
            f"--revision {revision} given for the local folder {source}",
            hint="revisions apply to Hub ids; local folders are pinned by a content hash",
        )
    return _checked(path.resolve(), source, None, trust_remote_code, hub=False)


def _checked(
    directory: Path, source: str, revision: str | None, trust_remote_code: bool, *, hub: bool
) -> ResolvedModel:
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ModelError(
            f"{source} has no config.json",
            hint="a model folder needs config.json and *.safetensors weights",
        )
    config = _read_json(config_path, source)
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "unknown")
        raise ModelError(
            f"{source} is already quantized ({method})",
            hint="pass the unquantized (float/bfloat16) checkpoint; certify quantizes it itself",
        )
    weight_files = _weight_files(directory, source)
    architecture = _check_architecture(config, source, trust_remote_code)
    tokenizer_files = tuple(name for name in SUPPORT_FILE_NAMES if (directory / name).is_file())
    if revision is None:
        revision = content_revision(directory, (*weight_files, "config.json"))
    return ResolvedModel(
        source=source,
        revision=revision,
        local_dir=str(directory),
        config=config,
        architecture=architecture,
        weight_files=weight_files,
        tokenizer_files=tokenizer_files,
        gguf_file=None,
    )


def _read_json(path: Path, source: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{source}: cannot read {path.name}: {error}") from error
    if not isinstance(value, dict):
        raise ModelError(f"{source}: {path.name} is not a JSON object")
    return value


def _weight_files(directory: Path, source: str) -> tuple[str, ...]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index, source).get("weight_map", {})
        names = tuple(sorted(set(weight_map.values())))
        missing = [name for name in names if not (directory / name).is_file()]
        if missing:
            raise ModelError(f"{source}: shard {missing[0]} listed in {index.name} is missing")
    else:
        names = tuple(sorted(p.name for p in directory.glob("*.safetensors")))
    if names:
        return names
    pickled = sorted(
        p.name for p in directory.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt")
    )
    if pickled:
        raise ModelError(
            f"{source} has only pickled weights ({', '.join(pickled[:3])}), no *.safetensors",
            hint="certify never unpickles weights; convert them to safetensors first "
            "(e.g. model.save_pretrained(dir, safe_serialization=True) in a trusted session)",
        )
    raise ModelError(
        f"{source} has no *.safetensors weights",
        hint="certify reads only safetensors and never unpickles .bin checkpoints",
    )


def _causal_lm_architectures() -> tuple[set[str], set[str]]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    classes: set[str] = set()
    for value in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        classes.update((value,) if isinstance(value, str) else value)
    return set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES), classes


def _check_architecture(config: dict[str, Any], source: str, trust_remote_code: bool) -> str:
    model_types, classes = _causal_lm_architectures()
    architectures = config.get("architectures") or []
    auto_map = config.get("auto_map") or {}
    model_type = config.get("model_type")
    if "AutoModelForCausalLM" in auto_map:
        if not trust_remote_code:
            raise ModelError(
                f"{source} needs custom code ({auto_map['AutoModelForCausalLM']})",
                hint="pass --trust-remote-code only if you trust the code in that repository",
            )
        return str(architectures[0] if architectures else auto_map["AutoModelForCausalLM"])
    if architectures:
        causal = [name for name in architectures if name in classes]
        if not causal:
            raise ModelError(
                f"{source} is a {', '.join(architectures)}, not a causal language model "
                "that transformers supports",
                hint="certify needs an architecture listed by AutoModelForCausalLM",
            )
        return str(causal[0])
    if model_type in model_types:
        return str(model_type)
    raise ModelError(
        f"{source}: config.json names no supported causal-LM architecture "
        f"(model_type={model_type!r})",
        hint="certify needs an architecture listed by AutoModelForCausalLM",
    )


def content_revision(directory: Path, names: tuple[str, ...]) -> str:
    """``sha256:<hex>`` over the sorted ``name\\tsha256(file)\\n`` lines of ``names``."""
    lines = []
    for name in sorted(names):
        digest = hashlib.sha256()
        with (directory / name).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        lines.append(f"{name}\t{digest.hexdigest()}\n")
    return "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()


def _resolve_gguf(
    path: Path, source: str, revision: str | None, trust_remote_code: bool
) -> ResolvedModel:
    if revision is not None:
        raise ModelError(f"--revision {revision} given for the local file {source}")
    try:
        import gguf  # noqa: F401  (transformers needs it to read GGUF)
        from transformers import AutoConfig
    except ImportError as error:  # pragma: no cover - gguf is a dependency
        raise ModelError("reading .gguf files needs the gguf package (pip install gguf)") from error
    path = path.resolve()
    try:
        config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name).to_dict()
    except Exception as error:
        raise ModelError(
            f"transformers cannot read {source} as GGUF: {error}".replace("\n", " ")
        ) from error
    if not config.get("architectures"):
        # GGUF metadata names only the model type; record the class transformers builds
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        causal = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.get("model_type", ""))
        config["architectures"] = [causal] if isinstance(causal, str) else list(causal or [])
    architecture = _check_architecture(config, source, trust_remote_code)
    return ResolvedModel(
        source=source,
        revision=content_revision(path.parent, (path.name,)),
        local_dir=str(path.parent),
        config=config,
        architecture=architecture,
        weight_files=(path.name,),
        tokenizer_files=(),
        gguf_file=path.name,
    )


# --------------------------------------------------------------------------- tensors


def tensor_specs(resolved: ResolvedModel) -> list[TensorSpec]:
    """Names, shapes and original dtypes of every stored tensor, in file order.

    Reads only the safetensors headers (for GGUF the model is built once).
    """
    if resolved.gguf_file is not None:
        return [
            TensorSpec(name, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."))
            for name, tensor in _gguf_state_dict(resolved).items()
        ]
    from safetensors import safe_open

    specs: list[TensorSpec] = []
    for file_name in resolved.weight_files:
        with safe_open(str(Path(resolved.local_dir) / file_name), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118  (safe_open is not a mapping)
                piece = handle.get_slice(name)
                dtype = piece.get_dtype()
                if dtype not in SAFETENSORS_DTYPES:
                    raise ModelError(
                        f"tensor {name} in {file_name} has dtype {dtype}, which certify "
                        f"does not read (supported: {', '.join(SAFETENSORS_DTYPES)})"
                    )
                specs.append(
                    TensorSpec(
                        name, tuple(int(d) for d in piece.get_shape()), SAFETENSORS_DTYPES[dtype]
                    )
                )
    return specs


def iter_tensors(resolved: ResolvedModel) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(name, array)`` one tensor at a time, in file order.

    bfloat16 tensors come out as float32 (exact); other dtypes unchanged. Only one
    tensor is materialised at a time (GGUF files are dequantized by transformers first).
    """
    if resolved.gguf_file is not None:
        for name, tensor in _gguf_state_dict(resolved).items():
            yield name, _to_numpy(tensor)
        _GGUF_CACHE.clear()  # the whole model was only needed for this pass
        return
    from safetensors import safe_open

    for file_name in resolved.weight_files:
        with safe_open(str(Path(resolved.local_dir) / file_name), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118
                yield name, _to_numpy(handle.get_tensor(name))


def _to_numpy(tensor: Any) -> np.ndarray:
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.to(torch.float32)  # numpy has no bfloat16; the upcast is exact
    return np.ascontiguousarray(tensor.numpy())


_GGUF_CACHE: dict[str, dict[str, Any]] = {}


def _gguf_state_dict(resolved: ResolvedModel) -> dict[str, Any]:
    """The dequantized state dict transformers builds from a GGUF file (cached per file)."""
    key = f"{resolved.local_dir}/{resolved.gguf_file}:{resolved.revision}"
    if key not in _GGUF_CACHE:
        from transformers import AutoModelForCausalLM

        try:
            model = AutoModelForCausalLM.from_pretrained(
                resolved.local_dir, gguf_file=resolved.gguf_file
            )
        except Exception as error:
            raise ModelError(
                f"transformers cannot load {resolved.source}: {error}".replace("\n", " ")
            ) from error
        state = model.state_dict()
        _GGUF_CACHE.clear()  # keep at most one model alive
        _GGUF_CACHE[key] = {name: state[name] for name in state}
    return _GGUF_CACHE[key]


def load_source_tokenizer(resolved: ResolvedModel) -> Any:
    """The tokenizer of the model as found (before compression; the artifact embeds the
    same files, so both have one :func:`certify.data.tokenizer_sha256`)."""
    from transformers import AutoTokenizer

    try:
        if resolved.gguf_file is None:
            return AutoTokenizer.from_pretrained(resolved.local_dir, local_files_only=True)
        return AutoTokenizer.from_pretrained(resolved.local_dir, gguf_file=resolved.gguf_file)
    except Exception as error:
        raise ModelError(
            f"transformers cannot read the tokenizer of {resolved.source}: {error}".replace(
                "\n", " "
            )
        ) from error


def read_support_files(resolved: ResolvedModel) -> dict[str, bytes]:
    """Tokenizer and generation-config files (name -> bytes) that travel with the weights.

    For GGUF inputs the tokenizer is rebuilt by transformers and saved in a temporary
    folder first.
    """
    if resolved.gguf_file is None:
        directory = Path(resolved.local_dir)
        return {name: (directory / name).read_bytes() for name in resolved.tokenizer_files}
    tokenizer = load_source_tokenizer(resolved)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer.save_pretrained(scratch)
        return {
            name: (Path(scratch) / name).read_bytes()
            for name in SUPPORT_FILE_NAMES
            if (Path(scratch) / name).is_file()
        }


def public_source(resolved: ResolvedModel) -> str:
    """How the model is named in published files: a Hub id as given; a local folder or
    GGUF file by its last path component only."""
    if resolved.gguf_file is not None and resolved.source.lower().endswith(".gguf"):
        return Path(resolved.source).name
    local = Path(resolved.local_dir).expanduser().resolve()
    if local == Path(resolved.source).expanduser().resolve():
        return local.name
    return public_name(resolved.source)
