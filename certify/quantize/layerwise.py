"""Run GPTQ over a whole model, one decoder block at a time, and hand the codes to the container.

:func:`gptq_quantize_model` builds the model's skeleton with empty (meta) weights, loads
only the embeddings to compute the calibration windows' inputs to the first decoder
block, then for each block in turn: loads the block's weights, and for each *stage* of
linears that read the same input (for Llama: q/k/v, then o, then gate/up, then down)
runs the calibration inputs through the block (stopping right after the stage), adds
``2/N · Σ w_t x_t x_tᵀ`` of the stage's inputs to a float64 Hessian (``w_t`` is
``first_token_weight`` for each window's first token, else 1), quantizes the stage's
linears with :func:`certify.quantize.gptq.gptq_quantize_matrix` and writes their
*decoded* weights back, so every later stage and block sees the quantized model's
activations ("true sequential"; ``true_sequential=False`` collects all of a block's
Hessians in one pass). The block's outputs are the next block's inputs; its weights are
then dropped. Last, the LM head is quantized with the Hessian of its inputs (the last
block's outputs after the final norm); with tied embeddings its codes are the
embedding's too. Peak memory: one block's weights, one pass's Hessians and their
factorization temporaries, the calibration activations (block inputs and outputs), the
LM head while it is quantized and, for GGUF inputs only, the dequantized checkpoint,
which transformers cannot read lazily.

Codes are spooled to a temporary folder (one ``.npz`` per tensor) and served by
:meth:`GPTQResult.quantizer` to :func:`certify.container.compress_model`, which codes
and writes them as it writes RTN codes. Tensors GPTQ does not see (untied embeddings,
linears the forward never calls) are quantized with RTN and listed in the returned
settings' ``rtn_tensors``.

Usage::

    settings = gptq_settings(4, 128, batch)
    with gptq_quantize_model(resolved, settings, batch) as result:
        compress_model(resolved, result.settings, "model.certz", quantizer=result.quantizer)
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fnmatch
import gc
import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from certify.calibration import CalibrationBatch
from certify.errors import InvalidInputError, ModelError
from certify.models import iter_tensors, tensor_specs
from certify.quantize.gptq import (
    DEFAULT_ACT_ORDER,
    DEFAULT_BLOCK_SIZE,
    DEFAULT_DAMPING,
    DEFAULT_FIRST_TOKEN_WEIGHT,
    DEFAULT_RATE_LAMBDA,
    DEFAULT_SCALE_SEARCH_STEPS,
    GPTQ_METHOD,
    GPTQNumericalError,
    check_gptq_options,
    gptq_quantize_matrix,
)
from certify.quantize.rtn import QuantizedTensor, dequantize, quantize_tensor
from certify.records import QuantizationSettings, ResolvedModel

__all__ = [
    "BATCH_TOKENS",
    "GPTQResult",
    "gptq_quantize_model",
    "gptq_settings",
    "quantized_tensor_names",
]

Progress = Callable[[int, int], None]

#: calibration windows per forward batch: as many as fit in this many tokens (at least 1).
#: Part of the algorithm (batching can change float rounding), so not a setting.
BATCH_TOKENS = 4096
_FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")


def gptq_settings(
    bits: int,
    group_size: int,
    calibration: CalibrationBatch,
    *,
    symmetric: bool = False,
    damping: float = DEFAULT_DAMPING,
    block_size: int = DEFAULT_BLOCK_SIZE,
    act_order: bool = DEFAULT_ACT_ORDER,
    true_sequential: bool = True,
    first_token_weight: float = DEFAULT_FIRST_TOKEN_WEIGHT,
    rate_lambda: float | None = DEFAULT_RATE_LAMBDA,
    scale_search_steps: int = DEFAULT_SCALE_SEARCH_STEPS,
    scale_search_price: float = 0.0,
    high_precision_bits: int = 8,
    high_precision_tensors: tuple[str, ...] = (),
) -> QuantizationSettings:
    """GPTQ settings for ``calibration``; :func:`gptq_quantize_model` adds the rest.

    The returned settings lack ``compute_device`` and ``rtn_tensors``, which the model
    walker fills in; pass ``result.settings`` to the container.
    """
    settings = QuantizationSettings(
        method=GPTQ_METHOD,
        bits=bits,
        group_size=group_size,
        symmetric=symmetric,
        high_precision_bits=high_precision_bits,
        high_precision_tensors=tuple(high_precision_tensors),
        damping=float(damping),
        block_size=block_size,
        act_order=act_order,
        true_sequential=true_sequential,
        first_token_weight=float(first_token_weight),
        rate_lambda=None if not rate_lambda else float(rate_lambda),
        scale_search_steps=scale_search_steps or None,
        scale_search_price=float(scale_search_price) if scale_search_price else None,
        calibration_source=calibration.source,
        calibration_sha256=calibration.sha256,
        calibration_seed=calibration.seed,
        calibration_tokens=calibration.n_tokens,
        calibration_window_tokens=calibration.window_tokens,
    )
    check_gptq_options(settings)
    return settings


def quantized_tensor_names(resolved: ResolvedModel) -> list[str]:
    """Names of the tensors the container quantizes: every 2-D floating-point tensor.

    The same rule as docs/FORMAT.md, "Records" (``certify.container`` applies it).
    """
    return [
        spec.name
        for spec in tensor_specs(resolved)
        if spec.dtype in _FLOAT_DTYPES and len(spec.shape) == 2 and min(spec.shape) > 0
    ]


@dataclass
class GPTQResult:
    """Spooled GPTQ codes of one model; use as a context manager (removes the spool).

    ``settings`` are the complete settings to record (``compute_device`` and
    ``rtn_tensors`` filled in); ``gptq_tensors`` the names quantized by GPTQ;
    ``seconds`` the wall time; ``blocks`` the number of decoder blocks.
    """

    settings: QuantizationSettings
    gptq_tensors: tuple[str, ...]
    seconds: float
    blocks: int
    _spool: tempfile.TemporaryDirectory[str]
    _files: dict[str, str]

    def load(self, name: str) -> QuantizedTensor:
        """The GPTQ codes of tensor ``name`` (a name in :attr:`gptq_tensors`)."""
        with np.load(Path(self._spool.name) / self._files[name]) as stored:
            meta = json.loads(bytes(stored["meta"]).decode())
            return QuantizedTensor(
                shape=tuple(meta["shape"]),
                bits=meta["bits"],
                group_size=meta["group_size"],
                symmetric=meta["symmetric"],
                codes=stored["codes"],
                scale_exponent=meta["scale_exponent"],
                scale_codes=stored["scale_codes"],
                zero_points=stored["zero_points"],
            )

    def source_sha256(self, name: str) -> str:
        """sha256 of the float32 weights GPTQ quantized for ``name`` (C order)."""
        with np.load(Path(self._spool.name) / self._files[name]) as stored:
            return str(json.loads(bytes(stored["meta"]).decode())["source_sha256"])

    def quantizer(self, name: str, weights: np.ndarray, bits: int) -> QuantizedTensor:
        """The container's tensor quantizer: GPTQ codes where computed, else RTN.

        Raises :class:`ModelError` when the container's weights or bits for ``name`` are
        not the ones GPTQ quantized (a different checkpoint or settings).
        """
        if name not in self._files:
            return quantize_tensor(
                weights, bits, self.settings.group_size, symmetric=self.settings.symmetric
            )
        quantized = self.load(name)
        if quantized.bits != bits or quantized.shape != tuple(weights.shape):
            raise ModelError(
                f"{name}: GPTQ quantized it as {quantized.shape} at {quantized.bits} bits, "
                f"the container asks for {tuple(weights.shape)} at {bits} bits"
            )
        if _sha256_float32(weights) != self.source_sha256(name):
            raise ModelError(
                f"{name}: the weights differ from the ones GPTQ quantized "
                "(was the checkpoint changed between the two steps?)"
            )
        return quantized

    def close(self) -> None:
        """Remove the spooled codes."""
        self._spool.cleanup()

    def __enter__(self) -> GPTQResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sha256_float32(array: Any) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype="<f4").tobytes()).hexdigest()


# --------------------------------------------------------------------------- weights


class _Weights:
    """Random access to the checkpoint's tensors by name, as float32 torch tensors."""

    def __init__(self, resolved: ResolvedModel) -> None:
        self.resolved = resolved
        self._files: dict[str, str] = {}
        self._loaded: dict[str, np.ndarray] = {}
        if resolved.gguf_file is not None:
            # transformers dequantizes a GGUF file as a whole; keep its float tensors
            self._loaded = dict(iter_tensors(resolved))
            self.names = set(self._loaded)
            return
        from safetensors import safe_open

        for file_name in resolved.weight_files:
            path = str(Path(resolved.local_dir) / file_name)
            with safe_open(path, framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118  (safe_open is not a mapping)
                    self._files[key] = path
        self.names = set(self._files)

    def get(self, name: str) -> Any:
        import torch

        if name in self._loaded:
            return torch.from_numpy(np.array(self._loaded[name], dtype=np.float32))
        from safetensors import safe_open

        with safe_open(self._files[name], framework="pt") as handle:
            return handle.get_tensor(name).to(torch.float32)


def _checkpoint_name(parameter: str, names: set[str], prefix: str) -> str | None:
    """The checkpoint's name of model parameter ``parameter`` (base-model prefix optional)."""
    candidates = [parameter]
    if prefix and parameter.startswith(prefix + "."):
        candidates.append(parameter[len(prefix) + 1 :])
    elif prefix:
        candidates.append(f"{prefix}.{parameter}")
    return next((name for name in candidates if name in names), None)


def _set_parameter(module: Any, name: str, value: Any) -> None:
    import torch

    *path, leaf = name.split(".")
    owner = module
    for part in path:
        owner = getattr(owner, part)
    owner._parameters[leaf] = torch.nn.Parameter(value, requires_grad=False)


def _buffers_to(model: Any, device: Any) -> None:
    """Move the (real, non-meta) buffers, e.g. rotary frequencies, to ``device``."""
    for name, buffer in list(model.named_buffers()):
        if buffer.device != device:
            *path, leaf = name.split(".")
            owner = model
            for part in path:
                owner = getattr(owner, part)
            owner._buffers[leaf] = buffer.to(device)


def _release_freed_memory() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    A block's tensors below glibc's mmap threshold (up to 32 MiB) come from the heap;
    without a trim, fragmentation grows the resident size by about one block per block,
    so the peak would follow the model's size instead of one block's.
    """
    gc.collect()  # tensors kept alive only by reference cycles go first
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _unload(module: Any) -> None:
    """Put ``module``'s parameters back on the meta device (frees their memory)."""
    import torch

    for name, parameter in list(module.named_parameters()):
        _set_parameter(module, name, torch.empty(parameter.shape, device="meta"))


def _load(
    module: Any, prefix: str, weights: _Weights, base_prefix: str, device: Any
) -> dict[str, str]:
    """Load ``module``'s parameters from the checkpoint; returns {parameter: checkpoint name}."""
    names = {}
    for name, parameter in list(module.named_parameters()):
        full = f"{prefix}{name}"
        checkpoint = _checkpoint_name(full, weights.names, base_prefix)
        if checkpoint is None:
            raise ModelError(
                f"{weights.resolved.source}: the checkpoint has no tensor for {full}",
                hint="GPTQ needs every weight of the decoder blocks; try --quantizer rtn",
            )
        value = weights.get(checkpoint)
        if tuple(value.shape) != tuple(parameter.shape):
            raise ModelError(
                f"{checkpoint}: shape {tuple(value.shape)}, model expects {tuple(parameter.shape)}"
            )
        _set_parameter(module, name, value.to(device))
        names[name] = checkpoint
    return names


# --------------------------------------------------------------------------- model


def _skeleton(resolved: ResolvedModel) -> Any:
    """The model with parameters on the meta device and real buffers (float32)."""
    import accelerate
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = dict(resolved.config)
    if config.get("auto_map"):
        raise ModelError(
            f"{resolved.source} uses custom code; GPTQ runs only architectures that "
            "transformers implements",
            hint="use --quantizer rtn",
        )
    model_type = config.pop("model_type", None)
    if not model_type:
        raise ModelError(f"{resolved.source}: config.json has no model_type")
    config_object = AutoConfig.for_model(model_type, **config)
    with accelerate.init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config_object, dtype=torch.float32)
    model.eval()
    return model


def _decoder_blocks(model: Any) -> tuple[str, Any]:
    """(qualified name, ModuleList) of the decoder blocks."""
    import torch

    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    count = getattr(config or model.config, "num_hidden_layers", None)
    candidates = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.ModuleList) and len(module) == count and len(module) > 0
    ]
    if not candidates:
        raise ModelError(
            f"cannot find the {count} decoder blocks of {type(model).__name__}",
            hint="use --quantizer rtn for this architecture",
        )
    preferred = [c for c in candidates if c[0].split(".")[-1] in ("layers", "h", "blocks")]
    return (preferred or candidates)[0]


def _linears(block: Any) -> dict[str, tuple[Any, bool]]:
    """{relative name: (module, transposed)} of the block's linear layers."""
    import torch
    from transformers.pytorch_utils import Conv1D

    found: dict[str, tuple[Any, bool]] = {}
    for name, module in block.named_modules():
        if isinstance(module, torch.nn.Linear):
            found[name] = (module, False)
        elif isinstance(module, Conv1D):
            found[name] = (module, True)
    return found


class _Captured(Exception):
    """Raised by the catcher once the first block's inputs are recorded."""


class _StageDone(Exception):
    """Raised by a hook once the last linear of the current stage has seen its input."""


def _block_output(output: Any) -> Any:
    return output[0] if isinstance(output, tuple | list) else output


def _first_block_inputs(
    model: Any, blocks: Any, batches: list[Any]
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Hidden states entering block 0 and the keyword arguments it gets, per batch."""
    import torch

    hidden: list[Any] = []
    arguments: list[dict[str, Any]] = []

    class Catcher(torch.nn.Module):
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            state = args[0] if args else kwargs.pop("hidden_states")
            hidden.append(state)
            arguments.append(kwargs)
            raise _Captured

    original = blocks[0]
    blocks[0] = Catcher()
    try:
        for batch in batches:
            with contextlib.suppress(_Captured):
                model(input_ids=batch, use_cache=False)
    finally:
        blocks[0] = original
    if len(hidden) != len(batches):
        raise ModelError("the model's forward did not reach its first decoder block")
    return hidden, arguments


def _stages(
    block: Any, linears: dict[str, tuple[Any, bool]], state: Any, kwargs: Any
) -> list[list[str]]:
    """Linears in call order, grouped into stages of consecutive calls on equal inputs."""
    import torch

    calls: list[tuple[str, Any]] = []
    handles = [
        module.register_forward_pre_hook(
            lambda _m, args, name=name: calls.append((name, args[0].detach()))
        )
        for name, (module, _) in linears.items()
    ]
    try:
        block(state, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    stages: list[list[str]] = []
    seen: set[str] = set()
    previous = None
    for name, value in calls:
        if name in seen:
            continue
        seen.add(name)
        if (
            stages
            and previous is not None
            and previous.shape == value.shape
            and bool(torch.equal(previous, value))
        ):
            stages[-1].append(name)
        else:
            stages.append([name])
        previous = value
    return stages


def _bits_for(name: str, settings: QuantizationSettings) -> int:
    keep = any(fnmatch.fnmatchcase(name, p) for p in settings.high_precision_tensors)
    return settings.high_precision_bits if keep else settings.bits


def gptq_quantize_model(
    resolved: ResolvedModel,
    settings: QuantizationSettings,
    calibration: CalibrationBatch,
    *,
    device: Any = None,
    progress: Progress | None = None,
) -> GPTQResult:
    """Quantize every linear of ``resolved``'s decoder blocks with GPTQ (module doc).

    ``settings`` come from :func:`gptq_settings` for this ``calibration``; ``device`` is
    a torch device (default: CUDA when available, else CPU). ``progress(done, total)``
    is called after each decoder block. Returns a :class:`GPTQResult` whose
    ``settings`` and ``quantizer`` go to :func:`certify.container.compress_model`.
    Raises :class:`InvalidInputError` for settings that do not match the calibration,
    :class:`ModelError` for models it cannot walk.
    """
    import torch

    started = time.perf_counter()
    if settings.method != GPTQ_METHOD:
        raise InvalidInputError(f"expected method 'gptq', got {settings.method!r}", field="method")
    check_gptq_options(settings)
    if settings.calibration_sha256 != calibration.sha256 or (
        settings.calibration_tokens != calibration.n_tokens
    ):
        raise InvalidInputError(
            "the settings record another calibration batch than the one given",
            field="calibration_sha256",
            hint="make the settings with gptq_settings(bits, group_size, calibration)",
        )
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)

    quantized_names = quantized_tensor_names(resolved)
    quantized = set(quantized_names)
    weights = _Weights(resolved)
    model = _skeleton(resolved)
    vocab = int(model.get_input_embeddings().num_embeddings)
    if int(calibration.tokens.max()) >= vocab:
        raise InvalidInputError(
            f"calibration token id {int(calibration.tokens.max())} is outside the model's "
            f"vocabulary of {vocab}",
            field="calibration",
            hint="tokenize the calibration data with this model's tokenizer",
        )
    base_prefix = str(getattr(model, "base_model_prefix", "") or "")
    blocks_name, blocks = _decoder_blocks(model)
    head_checkpoints = _head_names(model, weights, base_prefix)[1]  # before any reloading
    sequential = bool(settings.true_sequential)
    windows_per_batch = max(1, BATCH_TOKENS // calibration.window_tokens)
    tokens = torch.from_numpy(np.array(calibration.tokens, dtype=np.int64))
    batches = [
        tokens[i : i + windows_per_batch].to(device)
        for i in range(0, calibration.windows, windows_per_batch)
    ]
    spool = tempfile.TemporaryDirectory(prefix="certify-gptq-")
    files: dict[str, str] = {}
    try:
        with torch.no_grad():
            loaded = _load_outside(model, blocks, weights, base_prefix, device)
            _buffers_to(model, device)
            hidden, arguments = _first_block_inputs(model, blocks, batches)
            _unload_loaded(loaded)

            gptq_names: list[str] = []
            stages: list[list[str]] | None = None
            total = len(blocks) + 1  # the blocks, then the output head
            returns_tuple = False
            for index, block in enumerate(blocks):
                prefix = f"{blocks_name}.{index}."
                checkpoint_of = _load(block, prefix, weights, base_prefix, device)
                linears = _linears(block)
                if stages is None:
                    stages = _stages(block, linears, hidden[0], arguments[0])
                # true sequential: each stage sees the quantized stages before it
                passes = [[stage] for stage in stages] if sequential else [stages]
                for group in passes:
                    _quantize_stages(
                        block, group, linears, hidden, arguments, settings, device,
                        checkpoint_of, quantized, files, spool.name, gptq_names,
                    )  # fmt: skip
                outputs = []
                for state, kwargs in zip(hidden, arguments, strict=True):
                    raw = block(state, **kwargs)
                    returns_tuple = isinstance(raw, tuple | list)
                    outputs.append(_block_output(raw))
                hidden = outputs
                del outputs
                _unload(block)
                _release_freed_memory()
                if progress is not None:
                    progress(index + 1, total)
            _quantize_head(
                model, blocks, batches, hidden, returns_tuple, head_checkpoints, weights,
                base_prefix, settings, device, quantized, files, spool.name, gptq_names,
            )  # fmt: skip
            del hidden
            if progress is not None:
                progress(total, total)
        rtn = tuple(sorted(set(quantized_names) - set(gptq_names)))
        final = dataclasses.replace(settings, compute_device=device.type, rtn_tensors=rtn)
        return GPTQResult(
            settings=final,
            gptq_tensors=tuple(gptq_names),
            seconds=time.perf_counter() - started,
            blocks=len(blocks),
            _spool=spool,
            _files=files,
        )
    except BaseException:
        spool.cleanup()
        raise


class _Hessian:
    """``Σ w_t x_t x_tᵀ`` over calibration tokens, float64, with weight ``w`` on position 0.

    Each batch's Gram matrix is computed in float32 and added in float64, in batch order.
    """

    def __init__(self, size: int, first_token_weight: float, device: Any) -> None:
        import torch

        self.sum = torch.zeros((size, size), dtype=torch.float64, device=device)
        self.weight = float(first_token_weight)
        self.total = 0.0

    def add(self, inputs: Any) -> None:
        import torch

        values = inputs.detach().to(torch.float32)
        flat = values.reshape(-1, values.shape[-1])
        self.sum.add_((flat.T @ flat).to(torch.float64))
        self.total += flat.shape[0]
        if self.weight != 1.0 and values.ndim == 3:
            first = values[:, 0]  # the window's first token: BOS, which every token attends to
            self.sum.add_((first.T @ first).to(torch.float64), alpha=self.weight - 1.0)
            self.total += (self.weight - 1.0) * first.shape[0]

    def result(self) -> Any:
        """``H = 2 / (weighted count) · Σ w_t x_t x_tᵀ`` (None when nothing was added)."""
        if self.total == 0:
            return None
        return self.sum.mul_(2.0 / self.total)


def _quantize_stages(
    block: Any,
    stages: list[list[str]],
    linears: dict[str, tuple[Any, bool]],
    hidden: list[Any],
    arguments: list[dict[str, Any]],
    settings: QuantizationSettings,
    device: Any,
    checkpoint_of: dict[str, str],
    quantized_names: set[str],
    files: dict[str, str],
    spool_dir: str,
    gptq_names: list[str],
) -> None:
    """One pass of the calibration data through ``block`` up to the last of ``stages``,
    collecting each stage's Hessian; then GPTQ on the stages' linears."""
    import torch

    weight = float(settings.first_token_weight or 1.0)

    hessians: list[_Hessian] = []
    handles = []
    shared: list[Any] = [None] * len(stages)

    def accumulate(index: int) -> Callable[[Any, Any], None]:
        def hook(_module: Any, args: Any) -> None:
            shared[index] = args[0]
            hessians[index].add(args[0])

        return hook

    def same_input(index: int) -> Callable[[Any, Any], None]:
        def hook(_module: Any, args: Any) -> None:
            first = shared[index]
            if first is None or not (args[0] is first or bool(torch.equal(args[0], first))):
                raise ModelError(
                    f"linears {', '.join(stages[index])} did not get one shared input",
                    hint="use --quantizer rtn for this architecture",
                )

        return hook

    def stop(_module: Any, _args: Any, _output: Any) -> None:
        raise _StageDone

    try:
        for index, stage in enumerate(stages):
            first_module, first_transposed = linears[stage[0]]
            in_features = int(first_module.weight.shape[0 if first_transposed else 1])
            hessians.append(_Hessian(in_features, weight, device))
            handles.append(first_module.register_forward_pre_hook(accumulate(index)))
            handles.extend(
                linears[name][0].register_forward_pre_hook(same_input(index)) for name in stage[1:]
            )
        handles.append(linears[stages[-1][-1]][0].register_forward_hook(stop))
        for state, kwargs in zip(hidden, arguments, strict=True):
            with contextlib.suppress(_StageDone):
                block(state, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    shared.clear()
    for stage, accumulated in zip(stages, hessians, strict=True):
        hessian = accumulated.result()
        if hessian is not None:
            _quantize_linears(
                stage, hessian, linears, settings, device, checkpoint_of, quantized_names,
                files, spool_dir, gptq_names,
            )  # fmt: skip


def _quantize_linears(
    stage: list[str],
    hessian: Any,
    linears: dict[str, tuple[Any, bool]],
    settings: QuantizationSettings,
    device: Any,
    checkpoint_of: dict[str, str],
    quantized_names: set[str],
    files: dict[str, str],
    spool_dir: str,
    gptq_names: list[str],
) -> None:
    """GPTQ on the linears of one stage (those the container quantizes), weights decoded."""
    members = [name for name in stage if checkpoint_of.get(f"{name}.weight") in quantized_names]
    for name in members:
        module, transposed = linears[name]
        checkpoint = checkpoint_of[f"{name}.weight"]
        decoded = _gptq_and_spool(
            module.weight.detach(), transposed, hessian, [checkpoint], settings, device,
            files, spool_dir, gptq_names,
        )  # fmt: skip
        if decoded is not None:
            _set_parameter(module, "weight", decoded)


def _gptq_and_spool(
    original: Any,
    transposed: bool,
    hessian: Any,
    checkpoints: list[str],
    settings: QuantizationSettings,
    device: Any,
    files: dict[str, str],
    spool_dir: str,
    gptq_names: list[str],
) -> Any:
    """GPTQ one matrix, spool its codes under ``checkpoints``; returns the decoded weights
    (None when the Hessian is unusable: the tensor is then left to RTN)."""
    import torch

    bits = int(_bits_for(checkpoints[0], settings))
    source_sha256 = _sha256_float32(original.cpu().numpy())
    try:
        quantized = gptq_quantize_matrix(
            original,
            hessian,
            bits,
            settings.group_size,
            symmetric=settings.symmetric,
            damping=float(settings.damping or DEFAULT_DAMPING),
            block_size=int(settings.block_size or DEFAULT_BLOCK_SIZE),
            act_order=bool(settings.act_order),
            transposed=transposed,
            rate_lambda=float(settings.rate_lambda or 0.0),
            scale_search_steps=int(settings.scale_search_steps or 0),
            scale_search_price=float(settings.scale_search_price or 0.0),
            device=device,
        )
    except GPTQNumericalError:
        return None  # left to RTN, and listed in rtn_tensors
    file_name = f"{len(files):06d}.npz"
    meta = {
        "shape": list(quantized.shape),
        "bits": quantized.bits,
        "group_size": quantized.group_size,
        "symmetric": quantized.symmetric,
        "scale_exponent": quantized.scale_exponent,
        "source_sha256": source_sha256,
    }
    np.savez(
        Path(spool_dir) / file_name,
        codes=quantized.codes,
        scale_codes=quantized.scale_codes,
        zero_points=quantized.zero_points,
        meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
    )
    for checkpoint in checkpoints:
        files[checkpoint] = file_name
        gptq_names.append(checkpoint)
    return torch.from_numpy(dequantize(quantized)).to(device)


def _head_names(model: Any, weights: _Weights, base_prefix: str) -> tuple[str, list[str]]:
    """(model name of the output head's weight, checkpoint names that store it).

    With tied embeddings the input embedding's tensor is the head's weight too, so its
    checkpoint name is included (the container stores one of the identical tensors).
    """
    head = model.get_output_embeddings()
    head_name = next(name for name, module in model.named_modules() if module is head)
    names = [f"{head_name}.weight"]
    embedding = model.get_input_embeddings()
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    tied = bool(getattr(config or model.config, "tie_word_embeddings", False))
    if embedding is not None and (tied or embedding.weight is head.weight):
        embedding_name = next(n for n, m in model.named_modules() if m is embedding)
        names.append(f"{embedding_name}.weight")
    found = [_checkpoint_name(name, weights.names, base_prefix) for name in names]
    return names[0], [name for name in found if name is not None]


def _quantize_head(
    model: Any,
    blocks: Any,
    batches: list[Any],
    final_hidden: list[Any],
    returns_tuple: bool,
    head_checkpoints: list[str],
    weights: _Weights,
    base_prefix: str,
    settings: QuantizationSettings,
    device: Any,
    quantized_names: set[str],
    files: dict[str, str],
    spool_dir: str,
    gptq_names: list[str],
) -> None:
    """GPTQ on the LM head, with the Hessian of its inputs: the quantized model's last
    block outputs after the final norm. The model's own forward applies whatever comes
    between the blocks and the head: every block is replaced by a module that hands on
    the recorded last-block outputs, and a hook on the head stops the forward."""
    import torch

    checkpoints = [name for name in head_checkpoints if name in quantized_names]
    head = model.get_output_embeddings()
    if not checkpoints or not isinstance(head, torch.nn.Linear):
        return
    batch_index = [0]

    class Replay(torch.nn.Module):
        def __init__(self, first: bool) -> None:
            super().__init__()
            self.first = first

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            state = (
                final_hidden[batch_index[0]]
                if self.first
                else (args[0] if args else kwargs["hidden_states"])
            )
            return (state,) if returns_tuple else state

    hessian = _Hessian(int(head.in_features), float(settings.first_token_weight or 1.0), device)

    def accumulate(_module: Any, args: Any) -> None:
        hessian.add(args[0])
        raise _StageDone

    originals = list(blocks)
    loaded = _load_outside(model, blocks, weights, base_prefix, device)
    handle = head.register_forward_pre_hook(accumulate)
    try:
        for index in range(len(blocks)):
            blocks[index] = Replay(index == 0)
        for index, batch in enumerate(batches):
            batch_index[0] = index
            with contextlib.suppress(_StageDone):
                model(input_ids=batch, use_cache=False)
    finally:
        handle.remove()
        for index, block in enumerate(originals):
            blocks[index] = block
        _unload_loaded(loaded)
    matrix = hessian.result()
    if matrix is None:
        return
    by_bits: dict[int, list[str]] = {}
    for name in checkpoints:
        by_bits.setdefault(int(_bits_for(name, settings)), []).append(name)
    original = weights.get(checkpoints[0]).to(device)
    for names in by_bits.values():
        _gptq_and_spool(
            original, False, matrix, names, settings, device, files, spool_dir, gptq_names
        )


def _load_outside(
    model: Any, blocks: Any, weights: _Weights, base_prefix: str, device: Any
) -> list[Any]:
    """Load every parameter outside the decoder blocks but the output head's (embeddings,
    final norm); returns what to unload afterwards."""
    output_head = model.get_output_embeddings()
    block_ids = {id(p) for p in blocks.parameters()}
    loaded: list[Any] = []
    for child_name, child in model.named_children():
        if child is output_head:
            continue
        for name, parameter in list(child.named_parameters()):
            if id(parameter) in block_ids:
                continue
            full = f"{child_name}.{name}"
            checkpoint = _checkpoint_name(full, weights.names, base_prefix)
            if checkpoint is None:
                raise ModelError(f"{weights.resolved.source}: the checkpoint has no tensor {full}")
            _set_parameter(child, name, weights.get(checkpoint).to(device))
            loaded.append((child, name, parameter.shape))
    return loaded


def _unload_loaded(loaded: list[Any]) -> None:
    import torch

    for module, name, shape in loaded:
        _set_parameter(module, name, torch.empty(shape, device="meta"))
