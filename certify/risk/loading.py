"""Devices, dtypes and loading a model (and its tokenizer) for evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from certify import container
from certify.errors import InvalidInputError, ModelError
from certify.models import resolve_model

if TYPE_CHECKING:
    import torch

# --------------------------------------------------------------------------- device


def pick_device() -> str:
    """The best available device: ``"cuda"``, then ``"mps"``, then ``"cpu"``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


_DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16"}
_DTYPES.update({"float32": "float32", "fp32": "float32"})


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    """``dtype`` as a torch dtype; ``"auto"`` is bf16 on a GPU and fp32 on CPU."""
    import torch

    if dtype == "auto":
        return torch.float32 if device.split(":")[0] == "cpu" else torch.bfloat16
    if dtype not in _DTYPES:
        raise InvalidInputError(
            f"unknown dtype {dtype!r}; expected auto, bfloat16, float16 or float32",
            field="dtype",
        )
    return getattr(torch, _DTYPES[dtype])  # type: ignore[no-any-return]


def resolve_device(device: str) -> str:
    """``device`` with ``"auto"`` replaced by :func:`pick_device`."""
    return pick_device() if device == "auto" else device


def load_for_evaluation(
    source: str | Path,
    *,
    device: str = "auto",
    dtype: str = "auto",
    device_map: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer) from a ``.certz`` file, a model folder or a Hub id.

    A ``.certz`` is decoded by ``certify.container`` (the certificate is about those
    weights); a Hub id is fetched by ``certify.models.resolve_model`` (``endpoint``,
    ``token``). ``device_map="auto"`` spreads a large model over the available GPUs (and
    CPU) with accelerate instead of moving it to one ``device``.
    """
    path = Path(source)
    resolved_device = resolve_device(device)
    torch_dtype = pick_dtype(dtype, resolved_device)
    if path.suffix == ".certz":
        if not path.is_file():
            raise ModelError(f"{path} does not exist; pass a .certz file or a model folder")
        return container.load_model_and_tokenizer(  # type: ignore[no-any-return]
            path, device=resolved_device, dtype=torch_dtype
        )
    if not path.is_dir():
        resolved = resolve_model(str(source), endpoint=endpoint, token=token)
        if resolved.gguf_file is not None:
            raise ModelError(
                f"{source} is a GGUF model; evaluate its .certz instead "
                "(certify compress makes one)"
            )
        path = Path(resolved.local_dir)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        kwargs: dict[str, Any] = {"dtype": torch_dtype}
        if device_map is not None:
            kwargs["device_map"] = device_map
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)  # type: ignore[arg-type]
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load a causal LM from {path}: {error}") from error
    if device_map is None:
        model.to(resolved_device)  # type: ignore[arg-type]
    model.eval()
    return model, tokenizer
