"""The ``.certz`` artifact, format version 1 (byte-exact spec: docs/FORMAT.md).

Layout::

    magic (8 bytes)  format_version (u32 LE)  header_length (u64 LE)
    header (UTF-8 JSON, header_length bytes)
    header_sha256 (32 bytes, sha256 of every byte before it)
    data section: embedded files, then tensor records, back to back

The header (validated by ``schemas/container-header.schema.json``) names every
record with its offset in the data section, length and sha256, so a reader can
check every byte before it trusts it. Writing streams one tensor at a time into a
spool file next to the output, then writes prelude + header + spool to a temporary
name and ``os.replace``s it, so peak memory is about the largest tensor.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import importlib.metadata
import json
import lzma
import math
import os
import platform
import struct
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from certify._files import atomic_path, temp_path, write_bytes_atomic
from certify._jcs import schema_error
from certify._version import __version__
from certify.codec import centered_codes, codec_parameters, decode_quantized, encode_quantized
from certify.errors import ArtifactFormatError, CertifyError, InvalidInputError, ModelError
from certify.models import iter_tensors, public_source, read_support_files, tensor_specs
from certify.quantize import (
    QuantizedTensor,
    check_quantization_settings,
    dequantize,
    method_library_versions,
    quantize_tensor,
    validate_settings,
)
from certify.records import ArtifactRecord, QuantizationSettings, ResolvedModel, to_dict

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "compress_model",
    "decode_state_dict",
    "decompress_to_dir",
    "iter_records",
    "load_model",
    "load_model_and_tokenizer",
    "load_tokenizer",
    "read_header",
    "verify_artifact",
]

MAGIC = b"\x89CERTZ\r\n"
FORMAT_VERSION = 1
#: magic + u32 version + u64 header length
PRELUDE = struct.Struct("<8sIQ")
CHECKSUM_BYTES = 32
#: what the header's ``format`` field must say
FORMAT_NAME = "certz"
RAW_DTYPES = (
    "float64",
    "float32",
    "float16",
    "bfloat16",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
)
_FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")
#: embedded files: xz, strongest preset, no integrity check (the record's sha256 is one)
_XZ_PRESET = 9 | lzma.PRESET_EXTREME
_COPY_BLOCK_BYTES = 1 << 22

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------- helpers


def _sha256(data: bytes | memoryview | np.ndarray) -> str:
    """Hex sha256 of bytes or of a C-contiguous array's buffer (no copy)."""
    view = np.ascontiguousarray(data).data if isinstance(data, np.ndarray) else data
    return hashlib.sha256(view).hexdigest()


def _header_bytes(header: dict[str, Any]) -> bytes:
    """The canonical header encoding: sorted keys, no spaces, ASCII only."""
    return json.dumps(
        header, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - installed deps
        return "unknown"


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose arithmetic decides the artifact's bytes."""
    return {
        "certify": __version__,
        "numpy": np.__version__,
        "constriction": _version_of("constriction"),
        # the xz encoder of embedded files is the liblzma this Python was built with
        "python": platform.python_version(),
    }


def decoded_line(name: str, dtype: str, shape: tuple[int, ...] | list[int], digest: str) -> str:
    """One line of the decoded-weights manifest (see :func:`decoded_weights_sha256`)."""
    return f"{name}\t{dtype}\t{','.join(str(int(d)) for d in shape)}\t{digest}\n"


def _alias_line(lines: dict[str, str], name: str, target: str) -> str:
    """The manifest line of an alias: the target's line under the alias's name."""
    return name + lines[target][len(target) :]


def decoded_weights_sha256(lines: dict[str, str]) -> str:
    """sha256 of the manifest: one :func:`decoded_line` per state-dict entry, sorted by name.

    Each line is ``name TAB dtype TAB shape(comma-separated) TAB sha256(tensor bytes)``
    where the bytes are the decoded tensor in C order, little-endian, in its decoded
    dtype (float32 for quantized tensors). Aliases (tied weights) get their own line
    with the target's dtype, shape and digest.
    """
    return hashlib.sha256("".join(lines[name] for name in sorted(lines)).encode()).hexdigest()


def _tensor_kind_is_quantized(dtype: str, shape: tuple[int, ...]) -> bool:
    """Every floating matrix (2-D: embeddings, projections, LM head) is quantized."""
    return dtype in _FLOAT_DTYPES and len(shape) == 2 and shape[0] > 0 and shape[1] > 0


def _raw_array(array: np.ndarray, dtype: str) -> np.ndarray:
    """``array`` as the little-endian C-order array whose bytes are stored for ``dtype``.

    bfloat16 (which numpy lacks) becomes its int16 bit pattern, converted by torch.
    """
    if dtype == "bfloat16":
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        return tensor.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2")
    return np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))


def _raw_bytes(array: np.ndarray, dtype: str) -> bytes:
    """Little-endian C-order bytes of ``array`` stored as ``dtype``."""
    return _raw_array(array, dtype).tobytes()


def _raw_tensor(data: bytes, dtype: str, shape: tuple[int, ...]) -> Any:
    """A torch tensor of ``dtype`` and ``shape`` from its stored little-endian bytes."""
    import torch

    if dtype == "bfloat16":
        codes = np.frombuffer(data, dtype="<i2").astype(np.int16)
        return torch.from_numpy(codes.copy()).view(torch.bfloat16).reshape(shape)
    array = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
    return torch.from_numpy(array.copy()).reshape(shape)


def check_settings(settings: QuantizationSettings) -> None:
    """Raise :class:`InvalidInputError` (naming the field) unless ``settings`` are usable."""

    validate_settings(settings.bits, settings.group_size)
    if settings.high_precision_tensors:
        try:
            validate_settings(settings.high_precision_bits, settings.group_size)
        except InvalidInputError as error:
            raise InvalidInputError(
                str(error).replace("bits:", "high_precision_bits:", 1),
                field="high_precision_bits",
            ) from error
    check_quantization_settings(settings)  # the method and its own fields


# --------------------------------------------------------------------------- write


@dataclass
class _Spool:
    """The data section being written: records appended back to back."""

    handle: BinaryIO
    size: int = 0

    def append(self, data: bytes) -> tuple[int, int, str]:
        offset = self.size
        self.handle.write(data)
        self.size += len(data)
        return offset, len(data), _sha256(data)


#: quantizes one tensor: (name, float array, bits) -> integer codes and side information
TensorQuantizer = Callable[[str, np.ndarray, int], QuantizedTensor]


def compress_model(
    resolved: ResolvedModel,
    settings: QuantizationSettings,
    out_path: str | Path,
    progress: Progress | None = None,
    quantizer: TensorQuantizer | None = None,
) -> ArtifactRecord:
    """Quantize, code and write ``resolved`` as one ``.certz`` file at ``out_path``.

    Streams one tensor at a time. ``progress(done_parameters, total_parameters)`` is
    called after each tensor. ``quantizer`` replaces group-wise RTN for the tensors
    that are quantized (a data-dependent quantizer passes its precomputed codes here);
    it must return codes of the same form (``settings.group_size``, ``symmetric``).
    The file appears atomically (temp name + ``os.replace``); nothing is left behind
    on error. Raises :class:`InvalidInputError` for bad settings.

    Steps: check the inputs, then per tensor deduplicate and encode it into a spool
    file, then build the header, then write header + spool to the file.
    """
    out = Path(out_path)
    specs = _check_inputs(resolved, settings, out, quantizer)
    spool_path = temp_path(out.parent / f".{out.name}", ".spool")
    try:
        with spool_path.open("wb") as spool_handle:
            spool = _Spool(spool_handle)
            files = _write_support_files(spool, read_support_files(resolved))
            encoder = _TensorEncoder(settings, quantizer, specs, spool)
            total_parameters = sum(math.prod(spec.shape) for spec in specs.values())
            done = 0
            for name, array in _iter_checked(resolved, specs):
                done += int(array.size)
                encoder.add(name, array)
                del array
                if progress is not None:
                    progress(done, total_parameters)
            spool_handle.flush()
        header = _header(resolved, settings, files, encoder, spool.size)
        sha256 = _write_file(out, _header_bytes_of(resolved, header), spool_path)
    finally:
        spool_path.unlink(missing_ok=True)
    size_bytes = out.stat().st_size
    return ArtifactRecord(
        path=str(out),
        sha256=sha256,
        size_bytes=size_bytes,
        format_version=FORMAT_VERSION,
        quantization=to_dict(settings),
        bits_per_parameter=8.0 * size_bytes / encoder.parameters if encoder.parameters else 0.0,
        decoded_weights_sha256=str(header["decoded_weights_sha256"]),
        parameters=encoder.parameters,
    )


def _check_inputs(
    resolved: ResolvedModel,
    settings: QuantizationSettings,
    out: Path,
    quantizer: TensorQuantizer | None,
) -> dict[str, Any]:
    """The model's tensor specs by name, after refusing settings, paths and patterns."""
    check_settings(settings)
    if settings.method != "rtn-groupwise" and quantizer is None:
        raise InvalidInputError(
            f"method {settings.method!r} needs its precomputed codes",
            field="method",
            hint="pass quantizer=result.quantizer from certify.quantize.gptq_quantize_model",
        )
    if out.is_dir():
        raise InvalidInputError(f"{out} is a folder; pass a file name such as model.certz")
    out.parent.mkdir(parents=True, exist_ok=True)
    specs = {spec.name: spec for spec in tensor_specs(resolved)}
    for pattern in settings.high_precision_tensors:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in specs):
            example = next(iter(specs), "?")
            raise InvalidInputError(
                f"pattern {pattern!r} matches no tensor (names look like {example})",
                field="high_precision_tensors",
            )
    return specs


class _TensorEncoder:
    """Deduplicates and encodes tensors one at a time into the spool; keeps the entries."""

    def __init__(
        self,
        settings: QuantizationSettings,
        quantizer: TensorQuantizer | None,
        specs: dict[str, Any],
        spool: _Spool,
    ) -> None:
        self.settings = settings
        self.quantizer = quantizer
        self.specs = specs
        self.spool = spool
        self.tensors: list[dict[str, Any]] = []
        self.aliases: list[dict[str, str]] = []
        self.manifest: dict[str, str] = {}
        self.parameters = 0
        self._seen: dict[tuple[str, str, tuple[int, ...]], str] = {}
        self._same_layout = Counter((spec.dtype, spec.shape) for spec in specs.values())

    def add(self, name: str, array: np.ndarray) -> None:
        """Store ``name``: as an alias of an identical earlier tensor, or encoded."""
        spec = self.specs[name]
        target = self._duplicate_of(name, array)
        if target is not None:
            self.aliases.append({"name": name, "target": target})
            self.manifest[name] = _alias_line(self.manifest, name, target)
            return
        self.parameters += int(array.size)
        entry: dict[str, Any] = {"name": name, "shape": list(spec.shape), "dtype": spec.dtype}
        if _tensor_kind_is_quantized(spec.dtype, spec.shape):
            payload, bits, decoded_sha = self._quantized(name, array)
            entry.update(encoding="quantized", bits=bits)
            self.manifest[name] = decoded_line(name, "float32", spec.shape, decoded_sha)
        else:
            payload = _raw_bytes(array, spec.dtype)
            entry.update(encoding="raw")
            self.manifest[name] = decoded_line(name, spec.dtype, spec.shape, _sha256(payload))
        offset, length, digest = self.spool.append(payload)
        entry.update(offset=offset, length=length, sha256=digest)
        self.tensors.append(entry)

    def _duplicate_of(self, name: str, array: np.ndarray) -> str | None:
        """An earlier identical tensor (tied embeddings, equal norms), stored once.

        Only tensors whose dtype and shape occur more than once can be identical, so
        only those are hashed.
        """
        spec = self.specs[name]
        if self._same_layout[(spec.dtype, spec.shape)] < 2:
            return None
        key = (spec.dtype, _sha256(_raw_array(array, spec.dtype)), spec.shape)
        if key in self._seen:
            return self._seen[key]
        self._seen[key] = name
        return None

    def _quantized(self, name: str, array: np.ndarray) -> tuple[bytes, int, str]:
        """(payload, bits, sha256 of the decoded float32 values) of a quantized tensor."""
        settings = self.settings
        keep = any(fnmatch.fnmatchcase(name, p) for p in settings.high_precision_tensors)
        bits = settings.high_precision_bits if keep else settings.bits
        quantized = (
            self.quantizer(name, array, bits)
            if self.quantizer is not None
            else quantize_tensor(array, bits, settings.group_size, symmetric=settings.symmetric)
        )
        decoded = np.ascontiguousarray(dequantize(quantized), dtype="<f4")
        return encode_quantized(quantized), bits, _sha256(decoded)


def _header(
    resolved: ResolvedModel,
    settings: QuantizationSettings,
    files: list[dict[str, Any]],
    encoder: _TensorEncoder,
    data_size: int,
) -> dict[str, Any]:
    """The container header (validated against its schema)."""
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": {
            "source": public_source(resolved),
            "revision": resolved.revision,
            "architecture": resolved.architecture,
            "config": resolved.config,
        },
        "quantization": to_dict(settings),
        "codec": codec_parameters(),
        "libraries": {**library_versions(), **method_library_versions(settings)},
        "parameters": encoder.parameters,
        "files": files,
        "tensors": encoder.tensors,
        "aliases": encoder.aliases,
        "decoded_weights_sha256": decoded_weights_sha256(encoder.manifest),
        "data_size_bytes": data_size,
    }
    validate_header(header)
    return header


def _header_bytes_of(resolved: ResolvedModel, header: dict[str, Any]) -> bytes:
    try:
        return _header_bytes(header)
    except (TypeError, ValueError) as error:  # e.g. NaN or objects in config.json
        raise ModelError(
            f"{resolved.source}: the model config cannot be stored as JSON: {error}"
        ) from error


def _write_file(out: Path, header_bytes: bytes, spool_path: Path) -> str:
    """Write prelude, header, checksum and the spooled records to ``out`` atomically;
    returns the file's sha256."""
    prelude = PRELUDE.pack(MAGIC, FORMAT_VERSION, len(header_bytes))
    file_digest = hashlib.sha256()
    with atomic_path(out) as temp, temp.open("wb") as written, spool_path.open("rb") as spooled:
        head = prelude + header_bytes
        head += hashlib.sha256(head).digest()
        written.write(head)
        file_digest.update(head)
        for block in iter(lambda: spooled.read(_COPY_BLOCK_BYTES), b""):
            written.write(block)
            file_digest.update(block)
    return file_digest.hexdigest()


def _iter_checked(
    resolved: ResolvedModel, specs: dict[str, Any]
) -> Iterator[tuple[str, np.ndarray]]:
    for name, array in iter_tensors(resolved):
        spec = specs.get(name)
        if spec is None or tuple(array.shape) != spec.shape:
            raise CertifyError(f"tensor {name} changed while it was read; resolve the model again")
        yield name, array


def _write_support_files(spool: _Spool, contents: dict[str, bytes]) -> list[dict[str, Any]]:
    entries = []
    for name in sorted(contents):
        data = contents[name]
        packed = lzma.compress(
            data, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, preset=_XZ_PRESET
        )
        compression, stored = ("xz", packed) if len(packed) < len(data) else ("none", data)
        offset, length, digest = spool.append(stored)
        entries.append(
            {
                "name": name,
                "compression": compression,
                "size_bytes": len(data),
                "content_sha256": _sha256(data),
                "offset": offset,
                "length": length,
                "sha256": digest,
            }
        )
    return entries


# --------------------------------------------------------------------------- read


def validate_header(header: dict[str, Any]) -> None:
    """Raise :class:`ArtifactFormatError` (naming the field) unless ``header`` fits the schema."""
    problem = schema_error(header, "container-header")
    if problem is not None:
        raise ArtifactFormatError(
            "header" + problem.removeprefix("$"), hint="the header does not fit format v1"
        )


@dataclass(frozen=True)
class _Opened:
    header: dict[str, Any]
    data_offset: int
    size_bytes: int


def _open(handle: BinaryIO, path: Path) -> _Opened:
    size = os.fstat(handle.fileno()).st_size
    prelude = handle.read(PRELUDE.size)
    if len(prelude) < len(MAGIC) or prelude[: len(MAGIC)] != MAGIC:
        if MAGIC.startswith(prelude):
            raise ArtifactFormatError(f"{path} is truncated ({size} bytes, not even a prelude)")
        raise ArtifactFormatError(
            f"{path} is not a .certz file (wrong magic bytes {prelude[:8]!r})",
            field="magic",
        )
    if len(prelude) < PRELUDE.size:
        raise ArtifactFormatError(f"{path} is truncated inside the prelude ({size} bytes)")
    _, version, header_length = PRELUDE.unpack(prelude)
    if version > FORMAT_VERSION:
        raise ArtifactFormatError(
            f"format version {version} is newer than this certify reads ({FORMAT_VERSION})",
            field="format_version",
            hint="upgrade certify",
        )
    if version < 1:
        raise ArtifactFormatError(
            f"format version {version} does not exist", field="format_version"
        )
    data_offset = PRELUDE.size + header_length + CHECKSUM_BYTES
    if data_offset > size:
        raise ArtifactFormatError(
            f"truncated: header of {header_length} bytes plus checksum ends at byte "
            f"{data_offset}, the file has {size}",
            field="header_length",
        )
    header_bytes = handle.read(header_length)
    checksum = handle.read(CHECKSUM_BYTES)
    if hashlib.sha256(prelude + header_bytes).digest() != checksum:
        raise ArtifactFormatError(
            f"checksum mismatch: bytes 0..{data_offset - 1} (prelude + header) are corrupted",
            field="header_sha256",
        )
    try:
        header = json.loads(header_bytes.decode("ascii"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactFormatError(f"not valid JSON: {error}", field="header") from error
    if not isinstance(header, dict):
        raise ArtifactFormatError("not a JSON object", field="header")
    validate_header(header)
    if header["format_version"] != version:
        raise ArtifactFormatError(
            f"says {header['format_version']}, the prelude says {version}",
            field="header.format_version",
        )
    _check_layout(header, size - data_offset)
    return _Opened(header, data_offset, size)


def _check_layout(header: dict[str, Any], data_bytes: int) -> None:
    """Records must tile the data section exactly, in header order."""
    declared = header["data_size_bytes"]
    if declared != data_bytes:
        state = "truncated" if data_bytes < declared else "has trailing bytes"
        raise ArtifactFormatError(
            f"file {state}: the data section has {data_bytes} bytes, the header "
            f"declares {declared}",
            field="header.data_size_bytes",
        )
    position = 0
    names: set[str] = set()
    for group in ("files", "tensors"):
        for index, entry in enumerate(header[group]):
            where = f"header.{group}[{index}] ({entry['name']})"
            if entry["offset"] != position:
                raise ArtifactFormatError(
                    f"offset {entry['offset']} should be {position} (records are back to back)",
                    field=where,
                )
            position += entry["length"]
            if group == "tensors":
                if entry["name"] in names:
                    raise ArtifactFormatError("tensor name appears twice", field=where)
                names.add(entry["name"])
    if position != declared:
        raise ArtifactFormatError(
            f"records cover {position} bytes, the data section has {declared}",
            field="header.data_size_bytes",
        )
    for alias in header["aliases"]:
        if alias["target"] not in names or alias["name"] in names:
            raise ArtifactFormatError(
                f"alias {alias['name']} -> {alias['target']} does not point at a stored tensor",
                field="header.aliases",
            )


def read_header(path: str | Path) -> dict[str, Any]:
    """The checked header of a ``.certz`` file (magic, version, checksum, schema, layout).

    A round trip: compress a tiny model, then decode it back, tensor for tensor.

    >>> import tempfile
    >>> from pathlib import Path
    >>> from certify.models import resolve_model
    >>> from certify.records import QuantizationSettings
    >>> from certify.toy import make_toy_model
    >>> folder = Path(tempfile.mkdtemp())
    >>> model = resolve_model(str(make_toy_model(folder / "toy", "llama")))
    >>> record = compress_model(model, QuantizationSettings(bits=4), folder / "m.certz")
    >>> header = read_header(folder / "m.certz")
    >>> header["parameters"] == record.parameters, verify_artifact(folder / "m.certz") == (
    ...     record.decoded_weights_sha256)
    (True, True)
    """
    path = Path(path)
    with _open_file(path) as handle:
        return _open(handle, path).header


@contextlib.contextmanager
def _open_file(path: Path) -> Iterator[BinaryIO]:
    try:
        handle = path.open("rb")
    except FileNotFoundError as error:
        raise ArtifactFormatError(f"no such file: {path}") from error
    except IsADirectoryError as error:
        raise ArtifactFormatError(f"{path} is a folder, not a .certz file") from error
    with handle:
        yield handle


def _read_record(handle: BinaryIO, opened: _Opened, entry: dict[str, Any], what: str) -> bytes:
    handle.seek(opened.data_offset + entry["offset"])
    data = handle.read(entry["length"])
    if len(data) != entry["length"]:
        raise ArtifactFormatError(f"{what} {entry['name']}: record is truncated")
    if _sha256(data) != entry["sha256"]:
        raise ArtifactFormatError(
            f"{what} {entry['name']}: sha256 mismatch, its record (bytes "
            f"{opened.data_offset + entry['offset']}..) is corrupted"
        )
    return data


def _read_file_entry(handle: BinaryIO, opened: _Opened, entry: dict[str, Any]) -> bytes:
    stored = _read_record(handle, opened, entry, "file")
    if entry["compression"] == "xz":
        try:
            data = lzma.decompress(stored, format=lzma.FORMAT_XZ)
        except lzma.LZMAError as error:
            raise ArtifactFormatError(f"file {entry['name']}: bad xz stream: {error}") from error
    elif entry["compression"] == "zlib":
        try:
            data = zlib.decompress(stored)
        except zlib.error as error:
            raise ArtifactFormatError(f"file {entry['name']}: bad zlib stream: {error}") from error
    else:
        data = stored
    if len(data) != entry["size_bytes"] or _sha256(data) != entry["content_sha256"]:
        raise ArtifactFormatError(f"file {entry['name']}: content does not match its sha256")
    return data


def iter_records(path: str | Path, *, decode: bool = True) -> Iterator[tuple[dict[str, Any], Any]]:
    """Yield ``(tensor entry, value)`` per stored tensor after checking its sha256.

    ``value`` is the decoded torch tensor (``decode=True``), else the codec's
    :class:`~certify.quantize.QuantizedTensor` for quantized records and the raw bytes
    for raw ones.
    """
    import torch

    path = Path(path)
    with _open_file(path) as handle:
        opened = _open(handle, path)
        for entry in opened.header["tensors"]:
            data = _read_record(handle, opened, entry, "tensor")
            shape = tuple(entry["shape"])
            if entry["encoding"] == "quantized":
                try:
                    quantized = decode_quantized(data)
                except CertifyError as error:
                    raise ArtifactFormatError(f"tensor {entry['name']}: {error}") from error
                settings = opened.header["quantization"]
                found = (quantized.shape, quantized.bits, quantized.group_size, quantized.symmetric)
                declared = (shape, entry["bits"], settings["group_size"], settings["symmetric"])
                if found != declared:
                    raise ArtifactFormatError(
                        f"tensor {entry['name']}: payload holds (shape, bits, group size, "
                        f"symmetric) = {found}, the header says {declared}"
                    )
                if not decode:
                    yield entry, quantized
                    continue
                yield entry, torch.from_numpy(dequantize(quantized))
            else:
                expected = int(np.prod(shape, dtype=np.int64)) * _itemsize(entry["dtype"])
                if len(data) != expected:
                    raise ArtifactFormatError(
                        f"tensor {entry['name']}: raw record has {len(data)} bytes, "
                        f"{entry['dtype']}{list(shape)} needs {expected}"
                    )
                yield entry, (_raw_tensor(data, entry["dtype"], shape) if decode else data)


def _itemsize(dtype: str) -> int:
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def decode_state_dict(path: str | Path) -> dict[str, Any]:
    """Decode every tensor: ``{name: torch.Tensor}``, aliases sharing their target.

    Quantized tensors decode to float32 (exactly the dequantized values); raw tensors
    keep their stored dtype (e.g. bfloat16 norms stay bfloat16).
    """
    state: dict[str, Any] = {}
    header = read_header(path)
    for entry, tensor in iter_records(path):
        state[entry["name"]] = tensor
    for alias in header["aliases"]:
        state[alias["name"]] = state[alias["target"]]
    return state


def _tensor_digest(tensor: Any) -> tuple[str, str]:
    """(dtype name, sha256 of the little-endian C-order bytes) of a decoded tensor."""
    import torch

    dtype = str(tensor.dtype).removeprefix("torch.")
    if tensor.dtype == torch.bfloat16:
        data = tensor.contiguous().view(torch.int16).numpy().astype("<i2").tobytes()
    else:
        array = tensor.contiguous().numpy()
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return dtype, _sha256(data)


def verify_artifact(path: str | Path) -> str:
    """Decode everything, check every hash; return the recomputed ``decoded_weights_sha256``.

    Raises :class:`ArtifactFormatError` naming the tensor, file or header field at
    the first inconsistency.
    """
    path = Path(path)
    header = read_header(path)
    with _open_file(path) as handle:
        opened = _open(handle, path)
        for entry in header["files"]:
            _read_file_entry(handle, opened, entry)
    manifest: dict[str, str] = {}
    for entry, tensor in iter_records(path):
        dtype, digest = _tensor_digest(tensor)
        manifest[entry["name"]] = decoded_line(entry["name"], dtype, entry["shape"], digest)
    for alias in header["aliases"]:
        manifest[alias["name"]] = _alias_line(manifest, alias["name"], alias["target"])
    recomputed = decoded_weights_sha256(manifest)
    if recomputed != header["decoded_weights_sha256"]:
        raise ArtifactFormatError(
            f"the decoded weights hash to {recomputed}, the header says "
            f"{header['decoded_weights_sha256']}",
            field="header.decoded_weights_sha256",
        )
    return recomputed


# --------------------------------------------------------------------------- decode to HF


def read_embedded_files(path: str | Path) -> dict[str, bytes]:
    """The embedded tokenizer / generation-config files, checked and decompressed."""
    path = Path(path)
    with _open_file(path) as handle:
        opened = _open(handle, path)
        return {
            entry["name"]: _read_file_entry(handle, opened, entry)
            for entry in opened.header["files"]
        }


def _safe_file_name(name: str) -> str:
    if Path(name).name != name or name in ("", ".", ".."):
        raise ArtifactFormatError(f"embedded file name {name!r} is not a plain file name")
    return name


def decompress_to_dir(path: str | Path, out_dir: str | Path) -> Path:
    """Write a transformers folder (model.safetensors, config.json, tokenizer files).

    Floating tensors are written as float32 (raw bfloat16/float16 tensors are upcast,
    exactly) and ``config.json`` says ``dtype: float32``, so
    ``AutoModelForCausalLM.from_pretrained(out_dir)`` rebuilds the decoded weights
    without rounding. Each file is written to a temp name and renamed.
    """
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    out = Path(out_dir)
    if out.is_dir():
        stale = sorted(
            p.name
            for p in out.iterdir()
            if p.name != "model.safetensors"
            and p.name.endswith((".safetensors", ".bin", ".index.json", ".gguf", ".pt"))
        )
        if stale:  # transformers would prefer e.g. an index.json over our file
            raise InvalidInputError(
                f"{out} already holds other weights ({', '.join(stale[:3])})",
                hint="decompress into an empty or new folder",
            )
    header = read_header(path)
    files = read_embedded_files(path)
    state = decode_state_dict(path)
    tensors = {}
    for name, tensor in state.items():
        # safetensors refuses shared storage; tied copies are cheap for small models
        value = tensor.to(torch.float32) if tensor.is_floating_point() else tensor
        tensors[name] = value.clone() if name in {a["name"] for a in header["aliases"]} else value
    del state
    out.mkdir(parents=True, exist_ok=True)
    config = dict(header["model"]["config"])
    config["dtype"] = "float32"
    if "torch_dtype" in config:
        config["torch_dtype"] = "float32"
    for name, data in files.items():
        write_bytes_atomic(out / _safe_file_name(name), data)
    write_bytes_atomic(
        out / "config.json", (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
    )
    with atomic_path(out / "model.safetensors") as temp:
        save_file(tensors, str(temp), metadata={"format": "pt"})
    return out


def load_model_and_tokenizer(
    path: str | Path, device: Any = None, dtype: Any = None
) -> tuple[Any, Any]:
    """Decode ``path`` and return ``(model, tokenizer)`` (eval mode, float32 by default)."""
    return load_model(path, device=device, dtype=dtype), load_tokenizer(path)


def load_tokenizer(path: str | Path) -> Any:
    """The tokenizer embedded in a ``.certz`` file (its files, loaded from a temp folder)."""
    from transformers import AutoTokenizer

    files = read_embedded_files(path)
    # config.json as well, as in the decoded model folder: AutoTokenizer may read it
    config = read_header(path).get("model", {}).get("config")
    with tempfile.TemporaryDirectory(prefix="certify-tokenizer-") as folder:
        for name, content in files.items():
            if Path(name).name != name:
                continue  # only plain file names are tokenizer files
            (Path(folder) / name).write_bytes(content)
        if isinstance(config, dict) and "config.json" not in files:
            (Path(folder) / "config.json").write_text(json.dumps(config), encoding="utf-8")
        try:
            return AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as error:
            raise ModelError(f"cannot load the tokenizer embedded in {path}: {error}") from None


def load_model(path: str | Path, device: Any = None, dtype: Any = None) -> Any:
    """Decode ``path`` into a transformers causal LM (eval mode, float32 by default)."""
    import torch
    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory(prefix="certify-decoded-") as scratch:
        folder = decompress_to_dir(path, scratch)
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=dtype if dtype is not None else torch.float32
        )
    if device is not None:
        model = model.to(device)
    model.eval()
    return model


# --------------------------------------------------------------------------- inspect

#: tensor kinds reported by :func:`inspect_artifact`, in display order
KINDS = ("embedding", "attention", "mlp", "lm_head", "other", "raw", "overhead")


def tensor_kind(name: str, encoding: str) -> str:
    """Coarse role of a tensor from its name: embedding, attention, mlp, lm_head, other, raw."""
    if encoding == "raw":
        return "raw"
    lowered = name.lower()
    if "lm_head" in lowered or lowered.startswith(("output.", "embed_out")):
        return "lm_head"
    if any(key in lowered for key in ("embed", "wte", "wpe", "tok_emb")):
        return "embedding"
    if any(key in lowered for key in ("attn", "attention", "q_proj", "k_proj", "v_proj")):
        return "attention"
    if any(key in lowered for key in ("mlp", "feed_forward", "ffn", "fc1", "fc2", "experts")):
        return "mlp"
    return "other"


def _entropy_bits(codes: np.ndarray, alphabet_size: int) -> float:
    """Total empirical (zeroth-order) entropy of ``codes`` in bits: n · H(histogram)."""
    counts = np.bincount(codes.reshape(-1), minlength=alphabet_size).astype(np.float64)
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum() * total)


def inspect_artifact(path: str | Path) -> dict[str, Any]:
    """Where the bits of an artifact go: per tensor and per kind (checks every record).

    Per kind: parameters, coded bits (whole records), bits per parameter, the empirical
    (zeroth-order, per-tensor) entropy of the coded integer symbols, i.e. the codes
    centered on their group's zero point (bits per parameter; quantized only) and the
    share of the file. ``overhead`` is prelude + header + checksum + embedded files.
    """
    path = Path(path)
    header = read_header(path)
    size_bytes = path.stat().st_size
    tensors = []
    for entry, value in iter_records(path, decode=False):
        parameters = int(np.prod(entry["shape"], dtype=np.int64))
        entropy = (  # of the symbols the coder actually sees (codes minus zero point)
            _entropy_bits(centered_codes(value), 1 << value.bits)
            if entry["encoding"] == "quantized"
            else None
        )
        tensors.append(
            {
                "name": entry["name"],
                "kind": tensor_kind(entry["name"], entry["encoding"]),
                "encoding": entry["encoding"],
                "dtype": entry["dtype"],
                "shape": entry["shape"],
                "bits": entry.get("bits"),
                "parameters": parameters,
                "coded_bits": 8 * entry["length"],
                "code_entropy_bits": entropy,
            }
        )
    overhead_bytes = (
        size_bytes - header["data_size_bytes"] + sum(entry["length"] for entry in header["files"])
    )
    kinds: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        members = [t for t in tensors if t["kind"] == kind]
        if kind == "overhead":
            coded_bits, parameters, entropy_bits = 8 * overhead_bytes, 0, None
        elif not members:
            continue
        else:
            coded_bits = sum(t["coded_bits"] for t in members)
            parameters = sum(t["parameters"] for t in members)
            quantized = [t for t in members if t["code_entropy_bits"] is not None]
            entropy_bits = sum(t["code_entropy_bits"] for t in quantized) if quantized else None
        kinds[kind] = {
            "tensors": len(members),
            "parameters": parameters,
            "coded_bits": coded_bits,
            "bits_per_parameter": coded_bits / parameters if parameters else None,
            "code_entropy_bits_per_parameter": (
                entropy_bits / parameters if entropy_bits is not None and parameters else None
            ),
            "share_of_file": coded_bits / (8 * size_bytes),
        }
    parameters = header["parameters"]
    return {
        "path": str(path),
        "format_version": header["format_version"],
        "size_bytes": size_bytes,
        "parameters": parameters,
        "bits_per_parameter": 8 * size_bytes / parameters if parameters else None,
        "model": {key: header["model"][key] for key in ("source", "revision", "architecture")},
        "quantization": header["quantization"],
        "decoded_weights_sha256": header["decoded_weights_sha256"],
        "aliases": header["aliases"],
        "overhead": {
            "header_bytes": size_bytes - header["data_size_bytes"],
            "files": {entry["name"]: entry["length"] for entry in header["files"]},
        },
        "kinds": kinds,
        "tensors": tensors,
    }
