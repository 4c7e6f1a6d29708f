"""``certify run``: the one place that chains the stages (DESIGN.md "The flow").

resolve → compress (model.certz) → tokenize (cached shards) → decode → evaluate the
DECODED model → bound → certificate.json → card (README.md + plot) → sign
(certificate.dsse.json, then model.sig over every published file: the last write) →
optional push.

Stage reuse. Every stage that writes files also writes a small manifest
``.certify/stages/<stage>.json`` *after* its outputs, holding the sha256 of its inputs
(settings plus the content hashes of the files it read — never file names) and the
sha256 of every output. A rerun recomputes the input hash; when it matches and the
outputs still hash to what the manifest says, the stage is skipped. Because each
stage's inputs include its upstream outputs' hashes, a changed input redoes exactly
the stages downstream of it. All files appear atomically (temp name in the same
folder + ``os.replace``), so an interrupted run (Ctrl-C) leaves finished stages and
nothing half-written; the same command then continues.

``--bits auto`` (``RunSettings.auto_grid``). Each (bits, group_size) of the grid is
compressed and evaluated on a *search* sample (seed derived from ``seed``); the
configuration with the tightest bits bound is kept and then evaluated again on the
certification sample (``seed`` itself). The prior is uniform over the H grid points
times the file prior, so ln 1/P(h) gains ln H: the martingale (complexity) term holds
for every (configuration, file) pair at once, which makes choosing among them after
looking at the data legitimate. The sampling term is only valid for a hypothesis
chosen independently of the sample it uses, hence the fresh certification sample.

Library code: no printing, no environment. Human-readable notes go to ``log``;
progress to ``progress(stage, done, total)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from certify import card, container, hub, risk, signing
from certify import certificate as certificate_module
from certify._files import (
    ARTIFACT_NAME,
    CARD_NAME,
    CERTIFICATE_NAME,
    ENVELOPE_NAME,
    LOG_NAME,
    MODEL_SIGNATURE_NAME,
    PLOT_NAME,
    PUBLIC_KEY_NAME,
    RISK_NAME,
    STATE_DIR,
    atomic_path,
    copy_atomic,
    file_sha256,
    public_name,
    published_files,
    sweep_temp_files,
    write_bytes_atomic,
    write_json_atomic,
)
from certify._jcs import sha256_json
from certify._version import __version__
from certify.bound import bound_result_to_dict, compute_bound, perplexity_bound
from certify.calibration import (
    DEFAULT_WINDOW_TOKENS,
    CalibrationBatch,
    TokenArray,
    calibration_batch,
    check_heldout_calibration,
    draw_calibration_windows,
)
from certify.certificate import Certificate
from certify.data import (
    TokenShards,
    bos_token_id,
    cache_folder,
    cached_tokens,
    load_tokenizer,
    open_shards,
    resolve_mode,
    tokenizer_sha256,
)
from certify.data.sampled import SampledData, SampledSettings, redraw, sample_units
from certify.data.units import UnitList, enumerate_units, weight_rule_for
from certify.errors import (
    CertifyError,
    DataError,
    EvaluationError,
    InterruptedRunError,
    InvalidInputError,
    UsageError,
)
from certify.models import load_source_tokenizer, public_source, resolve_model, tensor_specs
from certify.quantize import GPTQ_METHOD, RTN_METHOD, gptq_quantize_model, gptq_settings
from certify.records import (
    ArtifactRecord,
    BoundInput,
    BoundResult,
    DatasetRecord,
    DataSource,
    EvaluationSettings,
    MetricSummary,
    ModelRecord,
    PushResult,
    QuantizationSettings,
    ResolvedModel,
    RiskRecord,
    RunResult,
    RunSettings,
    SampledDataRecord,
    SampledDraws,
    SearchCandidate,
    StageTiming,
    to_dict,
)
from certify.streams import derive_seed

ProgressCallback = Callable[[str, int, int], None]
LogCallback = Callable[[str], None]

#: bump when a stage's meaning changes, so old manifests stop matching
STAGE_FORMAT_VERSION = 1
#: the public pretraining corpus used when neither --dataset nor the model card names one.
#: FineWeb (HuggingFaceFW, 15T tokens of deduplicated, filtered CommonCrawl) is parquet
#: with row groups of a few thousand documents, so sampled mode counts its documents from
#: the footers and downloads only the drawn row groups. Lotfi et al. used LLM360's Amber
#: for LLaMA-2, but Amber is published as jsonl, whose documents cannot be counted
#: without reading every byte (docs/DATA.md "Sampled mode").
FALLBACK_DATASET = "HuggingFaceFW/fineweb"
#: FineWeb's text column is dictionary-encoded in places, so byte counts cannot bound
#: tokens from the footers: documents are truncated to this many tokens (weight c·m_u)
FALLBACK_TRUNCATE_TOKENS = 4096
#: rough CPU throughput for the time estimate: multiply-adds per second per thread
CPU_FLOPS_PER_THREAD = 2.0e10


# --------------------------------------------------------------------------- stage manifests


class StageStore:
    """Manifests of finished stages under ``<run>/.certify/stages``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.directory = run_dir / STATE_DIR / "stages"

    def _path(self, stage: str) -> Path:
        return self.directory / f"{stage}.json"

    def lookup(self, stage: str, inputs_sha256: str) -> dict[str, Any] | None:
        """The manifest of ``stage`` if its inputs match and its outputs are intact."""
        try:
            manifest = json.loads(self._path(stage).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or manifest.get("inputs_sha256") != inputs_sha256:
            return None
        if manifest.get("format_version") != STAGE_FORMAT_VERSION:
            return None
        for name, expected in manifest.get("outputs", {}).items():
            path = self.run_dir / name
            if not path.is_file() or file_sha256(path) != expected:
                return None
        return manifest

    def store(
        self,
        stage: str,
        inputs_sha256: str,
        outputs: tuple[str, ...],
        record: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write the manifest last: its presence means every output is complete."""
        manifest = {
            "format_version": STAGE_FORMAT_VERSION,
            "stage": stage,
            "inputs_sha256": inputs_sha256,
            "outputs": {name: file_sha256(self.run_dir / name) for name in outputs},
            "record": record or {},
        }
        write_json_atomic(self._path(stage), manifest)
        return manifest

    def output_hash(self, stage: str, name: str) -> str:
        """sha256 recorded for output ``name`` of ``stage`` (after store/lookup)."""
        manifest = json.loads(self._path(stage).read_text(encoding="utf-8"))
        return str(manifest["outputs"][name])


class RunLog:
    """``run.log``: one JSON object per line (stage start/done/reused, notes)."""

    def __init__(self, path: Path, log: LogCallback | None, *, enabled: bool = True) -> None:
        self.path = path
        self.log = log
        self.enabled = enabled  # False on torchrun ranks other than 0

    def event(self, **fields: Any) -> None:
        if not self.enabled:
            return
        line = json.dumps({"time": round(time.time(), 3), **fields}, allow_nan=False) + "\n"
        # one write per line keeps every line whole even when the run is interrupted
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)

    def note(self, message: str) -> None:
        self.event(event="note", message=message)
        if self.log is not None and self.enabled:
            self.log(message)


class _Runner:
    """Times stages, logs them, reports progress and turns Ctrl-C into a clean error."""

    def __init__(self, run_log: RunLog, progress: ProgressCallback | None) -> None:
        self.run_log = run_log
        self.progress = progress
        self.timings: list[StageTiming] = []

    def report(self, stage: str) -> Callable[[int, int], None]:
        def update(done: int, total: int) -> None:
            if self.progress is not None:
                self.progress(stage, int(done), int(total))

        return update

    def reused(self, stage: str) -> None:
        self.timings.append(StageTiming(stage=stage, seconds=0.0, reused=True))
        self.run_log.event(event="reused", stage=stage)
        if self.progress is not None:
            self.progress(stage, 1, 1)

    @contextlib.contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        self.run_log.event(event="start", stage=stage)
        if self.progress is not None:
            self.progress(stage, 0, 0)
        try:
            yield
        except KeyboardInterrupt:
            self.run_log.event(
                event="interrupted", stage=stage, seconds=time.perf_counter() - start
            )
            raise InterruptedRunError(
                f"interrupted during stage {stage}; finished stages are kept and nothing "
                "half-written was left",
                hint="run the same command again to continue",
            ) from None
        except CertifyError as error:
            self.run_log.event(event="failed", stage=stage, error=str(error))
            raise
        seconds = time.perf_counter() - start
        self.timings.append(StageTiming(stage=stage, seconds=seconds, reused=False))
        self.run_log.event(event="done", stage=stage, seconds=round(seconds, 3))
        if self.progress is not None:
            self.progress(stage, 1, 1)


# --------------------------------------------------------------------------- dataset choice


@dataclasses.dataclass(frozen=True)
class DatasetChoice:
    """Which dataset a run uses, why, and what the certificate should say about it."""

    source: str
    max_documents: int | None
    note: str
    assumption: str | None
    defaulted: bool
    #: the model card declares this dataset as training data (held-out mode is refused)
    declared_training_data: bool = False
    #: how it is read: "exact", "sampled" or "auto" (certify.data.resolve_mode)
    mode: Literal["exact", "sampled", "auto"] = "auto"
    #: a truncation certify chose for the fallback corpus (--truncate-tokens overrides it)
    truncate_tokens: int | None = None


def card_datasets(card_text: str) -> list[str]:
    """The ``datasets:`` entries of a model card's YAML front matter (may be empty)."""
    lines = card_text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return []
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
    except StopIteration:
        return []
    try:
        metadata = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError:
        return []
    if not isinstance(metadata, dict):
        return []
    declared = metadata.get("datasets")
    if isinstance(declared, str):
        declared = [declared]
    if not isinstance(declared, list):
        return []
    return [str(entry).strip() for entry in declared if str(entry).strip()]


def _model_card_text(resolved: ResolvedModel, settings: RunSettings) -> str | None:
    local = Path(resolved.local_dir) / "README.md"
    if local.is_file():
        return local.read_text(encoding="utf-8", errors="replace")
    if Path(settings.model).expanduser().exists():
        return None  # a local model without a card
    try:
        folder, _ = hub.download_snapshot(
            settings.model,
            settings.model_revision,
            ["README.md"],
            endpoint=settings.endpoint,
            token=settings.token,
        )
    except CertifyError:
        return None
    card = Path(folder) / "README.md"
    return card.read_text(encoding="utf-8", errors="replace") if card.is_file() else None


def choose_dataset(settings: RunSettings, resolved: ResolvedModel) -> DatasetChoice:
    """``--dataset`` if given, else the card's first ``datasets:`` entry, else the fallback.

    A dataset certify chooses is read whole in sampled mode (no document cap): the
    bound is about the training stream, and sampled mode makes its size affordable.
    """
    card = _model_card_text(resolved, settings)
    declared = card_datasets(card) if card is not None else []
    if settings.dataset is not None:
        return DatasetChoice(
            source=settings.dataset,
            max_documents=settings.max_documents,
            note=f"dataset: {settings.dataset}",
            assumption=None,
            defaulted=False,
            declared_training_data=settings.dataset in declared,
            mode=settings.data_mode,
        )
    if settings.max_documents is not None:
        raise UsageError(
            "--max-documents caps a dataset you name; without --dataset certify reads the "
            "declared training data whole, in sampled mode",
            field="--max-documents",
            hint="pass --dataset SRC with --max-documents, or drop --max-documents",
        )
    if declared:
        source = declared[0]
        return DatasetChoice(
            source=source,
            max_documents=None,
            note=(
                f"no --dataset given: using {source}, the first training dataset the model "
                "card declares, whole, in sampled mode"
            ),
            assumption=(
                f"The dataset was not given; certify used {source}, the first entry of "
                f"`datasets:` in the model card of {settings.model}, read in sampled mode."
            ),
            defaulted=True,
            declared_training_data=True,
            mode="sampled",
        )
    return DatasetChoice(
        source=FALLBACK_DATASET,
        max_documents=None,
        note=(
            f"no --dataset given and the model card declares none: falling back to "
            f"{FALLBACK_DATASET} (a public pretraining corpus in parquet, read in sampled "
            f"mode, documents truncated to {FALLBACK_TRUNCATE_TOKENS} tokens unless "
            "--truncate-tokens says otherwise); pass --dataset for your model's own "
            "training data"
        ),
        assumption=(
            f"No dataset was given or declared by the model card; certify used the public "
            f"pretraining corpus {FALLBACK_DATASET} in sampled mode, which need not be this "
            "model's training data: the bound is about the risk on that stream."
        ),
        defaulted=True,
        mode="sampled",
        truncate_tokens=FALLBACK_TRUNCATE_TOKENS,
    )


# --------------------------------------------------------------------------- helpers


def _check_heldout(settings: RunSettings, choice: DatasetChoice) -> None:
    """Held-out mode asserts the data is independent of the model: never for its own
    declared training data, nor for a dataset certify chose (DESIGN.md "The bound")."""
    if not settings.heldout:
        return
    if GPTQ_METHOD in run_methods(settings) and same_source(
        settings.calibration or choice.source, choice.source
    ):
        raise UsageError(
            "--heldout asserts the data is independent of the model, but GPTQ would be "
            f"calibrated on it ({'by default ' if settings.calibration is None else ''}"
            "the calibration text is the certified dataset)",
            field="--heldout",
            hint="pass --calibration with other text, use --quantizer rtn, or drop --heldout",
        )
    if choice.declared_training_data:
        raise UsageError(
            f"--heldout asserts the data is independent of the model, but the model card "
            f"declares {choice.source} as its training data",
            field="--heldout",
            hint="drop --heldout (the file size is then charged), or pass held-out data",
        )
    if choice.defaulted:
        raise UsageError(
            "--heldout needs the data you assert is independent of the model; certify "
            f"chose {choice.source} itself",
            field="--heldout",
            hint="pass --dataset with data the model never saw",
        )


def run_methods(settings: RunSettings) -> tuple[str, ...]:
    """The quantizers a run uses: ``--bits auto``'s list, else the one chosen."""
    if settings.auto_grid and settings.auto_methods:
        return settings.auto_methods
    return (settings.quantization.method,)


def search_grid(settings: RunSettings) -> tuple[tuple[str, int, int], ...]:
    """``--bits auto``'s configurations (quantizer, bits, group size): H of the prior."""
    return tuple(
        (method, bits, group_size)
        for method in run_methods(settings)
        for bits, group_size in settings.auto_grid
    )


def same_source(first: str, second: str) -> bool:
    """Whether two dataset sources name the same data (local paths compared resolved)."""
    if first == second:
        return True
    a, b = Path(first).expanduser(), Path(second).expanduser()
    return a.exists() and b.exists() and a.resolve() == b.resolve()


def _model_record(resolved: ResolvedModel, artifact: ArtifactRecord) -> ModelRecord:
    config = resolved.config
    vocab_size = config.get("vocab_size")
    if vocab_size is None and isinstance(config.get("text_config"), dict):
        vocab_size = config["text_config"].get("vocab_size")
    return ModelRecord(
        source=public_source(resolved),
        revision=resolved.revision,
        architecture=resolved.architecture,
        parameters=int(artifact.parameters),
        vocab_size=int(vocab_size or 0),
    )


def cpu_estimate_seconds(parameters: int, tokens: int, threads: int) -> float:
    """Rough CPU time of scoring ``tokens`` tokens with a ``parameters``-parameter model."""
    return 2.0 * parameters * tokens / (CPU_FLOPS_PER_THREAD * max(threads, 1))


def _format_minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _public_data(
    data: DatasetRecord | SampledDataRecord,
) -> DatasetRecord | SampledDataRecord:
    """The dataset as published files name it: local paths by their last component only
    (the data's content hashes identify it; the signer's folder layout is nobody's)."""
    if isinstance(data, SampledDataRecord):
        options = dict(data.source_options)
        if "path" in options:
            options["path"] = public_name(str(options["path"]))
        return dataclasses.replace(data, source=public_name(data.source), source_options=options)
    return dataclasses.replace(data, source=public_name(data.source))


def _data_identity(tokens: TokenShards | SampledTokens) -> str:
    """What names the data an evaluation reads: the token stream, or the draws."""
    if isinstance(tokens, SampledTokens):
        return tokens.data.record.draws_sha256
    return tokens.record.shards_sha256


def data_source(settings: RunSettings, choice: DatasetChoice) -> DataSource:
    """The data a run of ``settings`` reads, once :func:`choose_dataset` has chosen it."""
    return DataSource(
        source=choice.source,
        revision=settings.dataset_revision,
        config=settings.dataset_config,
        split=settings.split,
        text_column=settings.text_column,
        max_documents=choice.max_documents,
        extensions=settings.extensions,
        exclude=settings.exclude,
        decode_errors=settings.decode_errors,
        mode=choice.mode,
        accepted_units=settings.accepted_units,
        chunks_per_unit=settings.chunks_per_unit,
        truncate_tokens=settings.truncate_tokens
        if settings.truncate_tokens is not None
        else choice.truncate_tokens,
    )


# --------------------------------------------------------------------------- decoded model → risk


@dataclasses.dataclass(frozen=True)
class SampledTokens:
    """A sampled-mode draw ready to score, and what its default seed was derived from."""

    data: SampledData
    seed_inputs: dict[str, Any] | None


def unit_list(
    dataset: DataSource, tokenizer: Any, *, token: str | None = None, endpoint: str | None = None
) -> UnitList:
    """Sampled mode's units of ``dataset`` and their weights (for ``tokenizer``'s rule)."""
    return enumerate_units(
        dataset.source,
        weight_rule_for(tokenizer, dataset.truncate_tokens),
        text_column=dataset.text_column,
        extensions=dataset.extensions,
        exclude=dataset.exclude,
        decode_errors=dataset.decode_errors,
        dataset_config=dataset.config,
        split=dataset.split,
        revision=dataset.revision,
        token=token,
        endpoint=endpoint,
    )


def sample_tokens(
    dataset: DataSource,
    tokenizer: Any,
    settings: EvaluationSettings,
    cache: str | Path,
    *,
    artifact_sha256: str,
    recorded: SampledDataRecord | None = None,
    workers: int = 0,
    endpoint: str | None = None,
    token: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SampledTokens:
    """Sampled mode's draw (DESIGN.md "sampled mode"): units, weights, then G accepted units.

    The default seed hashes the artifact, the unit list, S, P, G and r (all fixed before
    any unit is read); the search stream hashes that seed once more, so a ``--bits auto``
    search never scores the certification draws. ``recorded`` redraws exactly what a
    certificate names (``verify --recompute-risk``). The resume journal lives in
    ``cache`` (an interrupted draw continues).
    """
    if recorded is not None:
        redrawn = redraw(recorded, tokenizer, workers=workers, token=token, endpoint=endpoint)
        return SampledTokens(data=redrawn, seed_inputs=None)
    units = unit_list(dataset, tokenizer, token=token, endpoint=endpoint)
    seed, inputs = settings.seed, None
    if seed is None:
        inputs = {
            "artifact_sha256": artifact_sha256,
            "units_sha256": units.units_sha256,
            "revision": units.revision,
            "chunk_tokens": settings.chunk_tokens,
            "context_tokens": settings.context_tokens,
            "accepted_units": dataset.accepted_units,
            "chunks_per_unit": dataset.chunks_per_unit,
        }
        seed = derive_seed(inputs)
    if settings.stream == "search":
        seed = derive_seed({"seed": seed, "stream": "search"})
    sampled_settings = SampledSettings(
        accepted_units=dataset.accepted_units,
        chunks_per_unit=dataset.chunks_per_unit,
        chunk_tokens=settings.chunk_tokens,
        context_tokens=settings.context_tokens,
        seed=seed,
        workers=workers,
    )
    work_dir = Path(cache) / "sampled" / units.units_sha256[:16] / f"{seed:016x}"
    drawn = sample_units(
        units,
        tokenizer,
        sampled_settings,
        work_dir=work_dir,
        progress=progress,
        token=token,
        endpoint=endpoint,
    )
    return SampledTokens(data=drawn, seed_inputs=inputs)


def calibration_data(settings: RunSettings, choice: DatasetChoice) -> DataSource:
    """GPTQ's calibration text: ``--calibration`` (read whole, with the run's reading
    options), else the run's own dataset as the run reads it."""
    if settings.calibration is None:
        return data_source(settings, choice)
    return dataclasses.replace(
        data_source(settings, choice), source=settings.calibration, mode="auto", max_documents=None
    )


def draw_calibration(
    dataset: DataSource,
    tokenizer: Any,
    *,
    seed: int,
    total_tokens: int,
    cache: str | Path,
    workers: int = 0,
    endpoint: str | None = None,
    token: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[CalibrationBatch, str]:
    """GPTQ's calibration windows from ``dataset`` and the data's fingerprint.

    Windows of 512 tokens (BOS first, as the scorer starts every window), uniform over
    the token stream, from the child stream CALIBRATION of ``seed`` — never the
    certification stream. A dataset too large to tokenize (sampled mode) contributes
    the windows of units drawn with a seed hashed from ``seed`` and "calibration", so
    they are not the certification draws either. The fingerprint is the token stream's
    ``shards_sha256`` (exact) or the drawn units' ``draws_sha256`` (sampled).
    """
    bos = bos_token_id(tokenizer)
    windows = -(-total_tokens // DEFAULT_WINDOW_TOKENS)
    stream: TokenShards | TokenArray
    if resolve_mode(dataset) == "sampled":
        units = unit_list(dataset, tokenizer, token=token, endpoint=endpoint)
        unit_seed = derive_seed({"seed": seed, "stream": "calibration"})
        drawn = sample_units(
            units,
            tokenizer,
            SampledSettings(
                # material for the windows to fall in, at most every unit once
                accepted_units=max(2, min(2 * windows, len(units))),
                chunks_per_unit=1,
                chunk_tokens=DEFAULT_WINDOW_TOKENS,
                seed=unit_seed,
                workers=workers,
            ),
            work_dir=Path(cache) / "sampled" / units.units_sha256[:16] / f"{unit_seed:016x}",
            progress=progress,
            token=token,
            endpoint=endpoint,
        )
        stream, fingerprint = TokenArray(drawn.windows.tokens), drawn.record.draws_sha256
    else:
        stream = cached_tokens(
            dataset, tokenizer, cache, token=token, endpoint=endpoint, progress=progress
        )
        fingerprint = stream.record.shards_sha256
    # a corpus shorter than one window (tests, tiny folders): windows of all its tokens
    window_tokens = max(2, min(DEFAULT_WINDOW_TOKENS, stream.n_tokens + 1))
    batch = draw_calibration_windows(
        stream,
        seed=seed,
        source=public_name(dataset.source),
        total_tokens=total_tokens,
        window_tokens=window_tokens,
        bos_token_id=bos,
    )
    return batch, fingerprint


def artifact_settings(
    quantization: QuantizationSettings, calibration: CalibrationBatch | None = None
) -> QuantizationSettings:
    """The settings the artifact is made with: ``quantization`` for RTN; for GPTQ its
    bits, groups and kept tensors with GPTQ's defaults and ``calibration`` filled in
    (every value that changes the bytes, hence what the compress stage is keyed on)."""
    if quantization.method != GPTQ_METHOD:
        return quantization
    if calibration is None:
        raise InvalidInputError("GPTQ needs calibration text", field="--calibration")
    return gptq_settings(
        quantization.bits,
        quantization.group_size,
        calibration,
        symmetric=quantization.symmetric,
        high_precision_bits=quantization.high_precision_bits,
        high_precision_tensors=quantization.high_precision_tensors,
    )


def compress_artifact(
    resolved: ResolvedModel,
    quantization: QuantizationSettings,
    out_path: str | Path,
    *,
    calibration: CalibrationBatch | None = None,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    gptq_progress: Callable[[int, int], None] | None = None,
) -> ArtifactRecord:
    """``resolved`` quantized and coded into ``out_path``: RTN, or GPTQ (method "gptq")
    on ``calibration`` (layer by layer on ``device``; "auto": CUDA when there is one,
    else the CPU — never MPS, which lacks the float64 the Hessians use)."""
    settings = artifact_settings(quantization, calibration)
    if calibration is None or settings.method != GPTQ_METHOD:
        return container.compress_model(resolved, settings, out_path, progress=progress)
    with gptq_quantize_model(
        resolved,
        settings,
        calibration,
        device=None if device == "auto" else device,
        progress=gptq_progress,
    ) as result:
        return container.compress_model(
            resolved, result.settings, out_path, progress=progress, quantizer=result.quantizer
        )


def measure_risk(
    artifact: str | Path,
    dataset: DataSource,
    settings: EvaluationSettings,
    cache: str | Path,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    tokens: TokenShards | SampledTokens | None = None,
    model: Any = None,
    device_map: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    checkpoint_path: str | Path | None = None,
    model_identity: str | None = None,
    recorded: SampledDataRecord | None = None,
    workers: int = 0,
) -> RiskRecord:
    """Decoded model → tokens → risk: the one path ``run``, ``evaluate`` and ``verify``
    ``--recompute-risk`` share (DESIGN.md "The flow").

    ``artifact`` is a ``.certz`` file (decoded first: the certificate is about those
    weights), a model folder or a Hub id; its own tokenizer reads ``dataset``: in exact
    mode into the shard cache under ``cache`` (:func:`certify.data.cached_tokens`; a
    token-shard folder is used as is), in sampled mode by drawing units
    (:func:`sample_tokens`, or ``recorded``'s draws again). ``tokens`` and ``model`` pass
    what a caller already opened (the pipeline reuses them across stages). Every input
    starts with BOS (EOS when the tokenizer has none). ``model_identity`` (default: the
    sha256 of a ``.certz`` file) seeds the default sample and keys the checkpoint;
    ``progress(done, total)`` counts scored tokens; ``checkpoint_path`` makes an
    interrupted evaluation resumable.
    """
    tokenizer = load_tokenizer(artifact, endpoint=endpoint, token=token)
    if model_identity is None and Path(artifact).suffix == ".certz":
        model_identity = file_sha256(artifact)
    sampled = recorded is not None or resolve_mode(dataset) == "sampled"
    if tokens is None and sampled:
        tokens = sample_tokens(
            dataset,
            tokenizer,
            settings,
            cache,
            artifact_sha256=model_identity or "",
            recorded=recorded,
            workers=workers,
            endpoint=endpoint,
            token=token,
        )
    elif tokens is None:
        tokens = cached_tokens(dataset, tokenizer, cache, token=token, endpoint=endpoint)
    if model is None:
        model, _ = risk.load_for_evaluation(
            artifact,
            device=settings.device,
            dtype=settings.dtype,
            device_map=device_map,
            endpoint=endpoint,
            token=token,
        )
    if isinstance(tokens, SampledTokens):
        return risk.evaluate_sampled(
            model,
            tokens.data.windows,
            tokens.data.record,
            settings,
            bos_token_id=bos_token_id(tokenizer),
            seed_inputs=tokens.seed_inputs,
            progress=progress,
            checkpoint_path=checkpoint_path,
            model_identity=model_identity,
        )
    return risk.evaluate(
        model,
        tokens,
        settings,
        bos_token_id=bos_token_id(tokenizer),
        tokenizer=tokenizer,
        progress=progress,
        checkpoint_path=checkpoint_path,
        model_identity=model_identity,
    )


# --------------------------------------------------------------------------- stages


class _Stages:
    """hash inputs → reuse or run → store, for every stage, with torchrun's ranks.

    Every rank looks a stage up before any rank writes it; rank 0 alone writes outputs
    and manifests. A stage ``on_all_ranks`` (evaluation) runs on every rank, each doing
    its share; any other stage runs on rank 0 while the others wait for its manifest.
    """

    def __init__(self, store: StageStore, runner: _Runner) -> None:
        self.store = store
        self.runner = runner
        self.rank, self.world = _distributed()

    def barrier(self) -> None:
        """Wait for every rank (a no-op without torchrun)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def run(
        self,
        name: str,
        inputs: Any,
        work: Callable[[], tuple[tuple[str, ...], dict[str, Any]]],
        *,
        on_all_ranks: bool = False,
    ) -> dict[str, Any]:
        """The stage's record: reused when its inputs and outputs are unchanged, else made.

        ``work()`` writes the stage's files (on rank 0) and returns (output file names
        relative to the run folder, the record to keep in the manifest).
        """
        inputs_sha256 = sha256_json(inputs)
        self.barrier()
        manifest = self.store.lookup(name, inputs_sha256)
        self.barrier()  # every rank looked before any rank writes
        if manifest is not None:
            self.runner.reused(name)
            return dict(manifest["record"])
        if self.rank != 0 and not on_all_ranks:
            self.barrier()  # rank 0 runs the stage
            return dict(self._finished(name, inputs_sha256)["record"])
        with self.runner.stage(name):
            outputs, record = work()
            if self.rank == 0:
                self.store.store(name, inputs_sha256, outputs, record)
        self.barrier()
        return record

    def _finished(self, name: str, inputs_sha256: str) -> dict[str, Any]:
        manifest = self.store.lookup(name, inputs_sha256)
        if manifest is None:
            raise EvaluationError(
                f"rank {self.rank}: stage {name} did not finish on rank 0",
                hint="run every rank in the same folder on one shared filesystem",
            )
        return manifest


# --------------------------------------------------------------------------- the run


class _Pipeline:
    def __init__(
        self,
        settings: RunSettings,
        progress: ProgressCallback | None,
        log: LogCallback | None,
    ) -> None:
        self.settings = settings
        self.run_dir = Path(settings.out_dir)
        self.state_dir = self.run_dir / STATE_DIR
        self.store = StageStore(self.run_dir)
        rank, _ = _distributed()
        self.run_log = RunLog(self.run_dir / LOG_NAME, log, enabled=rank == 0)
        self.runner = _Runner(self.run_log, progress)
        self.stages = _Stages(self.store, self.runner)
        self.rank = self.stages.rank
        self._decoded: dict[str, Any] = {}
        self.repo_id: str | None = settings.repo_id
        #: the calibration data's fingerprint, once the calibrate stage ran (GPTQ only)
        self.calibration_fingerprint: str | None = None

    # ---- stages

    def resolve(self) -> ResolvedModel:
        settings = self.settings
        with self.runner.stage("resolve"):
            return resolve_model(
                settings.model,
                settings.model_revision,
                trust_remote_code=settings.trust_remote_code,
                endpoint=settings.endpoint,
                token=settings.token,
            )

    def calibrate(self, resolved: ResolvedModel, choice: DatasetChoice) -> CalibrationBatch:
        """GPTQ's calibration windows (stage "calibrate", kept in .certify/calibration.npy).

        The seed is ``--seed`` or a hash of the model revision, the calibration data and
        its size (fixed before anything is measured); the windows come from the child
        stream CALIBRATION, the certified chunks later from CERTIFICATION.
        """
        settings = self.settings
        dataset = calibration_data(settings, choice)
        seed = settings.evaluation.seed
        if seed is None:
            seed = derive_seed(
                {
                    "model_revision": resolved.revision,
                    "calibration": to_dict(dataclasses.replace(dataset, source="")),
                    "source": public_name(dataset.source),
                    "calibration_tokens": settings.calibration_tokens,
                }
            )
        relative = f"{STATE_DIR}/calibration.npy"

        def work() -> tuple[tuple[str, ...], dict[str, Any]]:
            batch, fingerprint = draw_calibration(
                dataset,
                load_source_tokenizer(resolved),
                seed=seed,
                total_tokens=settings.calibration_tokens,
                cache=self._cache(),
                workers=settings.workers,
                endpoint=settings.endpoint,
                token=settings.token,
                progress=self.runner.report("calibrate"),
            )
            buffer = io.BytesIO()
            np.save(buffer, batch.tokens)
            write_bytes_atomic(self.run_dir / relative, buffer.getvalue())
            record = {"source": batch.source, "seed": seed, "sha256": batch.sha256}
            return (relative,), {**record, "data_fingerprint": fingerprint}

        inputs = {
            "model_revision": resolved.revision,
            "dataset": to_dict(dataset),
            "seed": seed,
            "calibration_tokens": settings.calibration_tokens,
            "tool": __version__,
        }
        record = self.stages.run("calibrate", inputs, work)
        self.calibration_fingerprint = str(record["data_fingerprint"])
        batch = calibration_batch(
            np.load(self.run_dir / relative), source=record["source"], seed=record["seed"]
        )
        if batch.sha256 != record["sha256"]:  # pragma: no cover - the manifest hashes it
            raise DataError(f"{relative} changed since it was drawn; delete it and rerun")
        return batch

    def compress(
        self,
        resolved: ResolvedModel,
        quantization: QuantizationSettings,
        name: str,
        relative: str,
        choice: DatasetChoice,
    ) -> ArtifactRecord:
        """The artifact (RTN, or GPTQ on the calibration windows), written atomically."""
        calibration = (
            self.calibrate(resolved, choice) if quantization.method == GPTQ_METHOD else None
        )

        def work() -> tuple[tuple[str, ...], dict[str, Any]]:
            target = self.run_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            report = self.runner.report(name)
            with atomic_path(target) as temp:
                record = compress_artifact(
                    resolved,
                    quantization,
                    temp,
                    calibration=calibration,
                    device=self.settings.evaluation.device,
                    progress=report,
                    gptq_progress=self.runner.report(name.replace("compress", "gptq")),
                )
            return (relative,), to_dict(dataclasses.replace(record, path=relative))

        inputs = {
            "model_revision": resolved.revision,
            # GPTQ's full settings: a changed default redoes the artifact
            "quantization": to_dict(artifact_settings(quantization, calibration)),
            "tool": __version__,
        }
        return ArtifactRecord(**self.stages.run(name, inputs, work))

    def _cache(self) -> Path:
        folder = self.settings.shard_cache_dir
        return Path(folder) if folder is not None else self.state_dir / "shards"

    def tokenize(
        self,
        artifact: ArtifactRecord,
        choice: DatasetChoice,
        stream: Literal["certification", "search"] = "certification",
        name: str = "tokenize",
    ) -> TokenShards | SampledTokens:
        """The chosen dataset read with the artifact's tokenizer: the exact token stream
        (the shard cache), or in sampled mode the units drawn for this artifact from
        ``stream`` (stage "sample")."""
        settings = self.settings
        dataset = data_source(settings, choice)
        sampled = resolve_mode(dataset) == "sampled"
        if sampled:
            name = name.replace("tokenize", "sample")
        tokenizer = load_tokenizer(self.run_dir / artifact.path)
        cache = self._cache()
        evaluation = dataclasses.replace(settings.evaluation, stream=stream)

        def read(progress: Callable[[int, int], None] | None) -> TokenShards | SampledTokens:
            if sampled:
                return sample_tokens(
                    dataset,
                    tokenizer,
                    evaluation,
                    cache,
                    artifact_sha256=artifact.sha256,
                    workers=settings.workers,
                    endpoint=settings.endpoint,
                    token=settings.token,
                    progress=progress,
                )
            if self.rank != 0:
                folder = cache_folder(dataset, tokenizer_sha256(tokenizer), cache)
                return open_shards(folder, verify_contents=False)
            return cached_tokens(
                dataset,
                tokenizer,
                cache,
                token=settings.token,
                endpoint=settings.endpoint,
                progress=progress,
            )

        self.stages.barrier()
        if self.rank != 0:
            self.stages.barrier()  # rank 0 reads first; the others reuse its cache/journal
            return read(None)
        start = time.perf_counter()
        with self.runner.stage(name):
            tokens = read(self.runner.report(name))
        reused = (
            tokens.data.units_tokenized_now == 0
            if isinstance(tokens, SampledTokens)
            else tokens.reused
        )
        if reused:  # the shards (or every drawn unit) were already there
            self.runner.timings[-1] = StageTiming(
                stage=name, seconds=time.perf_counter() - start, reused=True
            )
        self.stages.barrier()
        return tokens

    def _check_calibration(self, tokens: TokenShards | SampledTokens) -> None:
        """Held-out mode and GPTQ calibrated on these very tokens: refused (the sources
        were compared before any work; this compares the token streams themselves)."""
        if isinstance(tokens, TokenShards):
            check_heldout_calibration(
                self.settings.heldout, self.calibration_fingerprint, tokens.record.shards_sha256
            )

    def _decoded_model(self, artifact_path: Path) -> Any:
        key = str(artifact_path)
        if key not in self._decoded:
            self._decoded.clear()  # one decoded model in memory at a time
            evaluation = self.settings.evaluation
            name = (
                "decode"
                if artifact_path.parent == self.run_dir
                else f"decode[{artifact_path.parent.name}]"
            )
            with self.runner.stage(name):
                self._decoded[key], _ = risk.load_for_evaluation(
                    artifact_path, device=evaluation.device, dtype=evaluation.dtype
                )
        return self._decoded[key]

    def _warn_cpu(self, resolved: ResolvedModel) -> None:
        """Before any slow stage: on a CPU, estimate the evaluation time and suggest less."""
        if not risk.resolve_device(self.settings.evaluation.device).startswith("cpu"):
            return
        import torch

        evaluation = self.settings.evaluation
        parameters = sum(math.prod(spec.shape) for spec in tensor_specs(resolved))
        grid = search_grid(self.settings)
        evaluations = len(grid) + 1 if grid else 1
        per_sample = evaluation.chunk_tokens + evaluation.context_tokens + 1
        tokens = evaluation.samples * per_sample * evaluations
        seconds = cpu_estimate_seconds(parameters, tokens, torch.get_num_threads())
        if seconds < 120:
            return
        self.run_log.note(
            f"evaluating on CPU: about {tokens:,} tokens through a {parameters:,}-parameter "
            f"model, roughly {_format_minutes(seconds)}; for a quick look pass smaller "
            "settings, e.g. --samples 64 --chunk-tokens 256 (a GPU runs the defaults; "
            "README 'GPU and multi-GPU')"
        )

    def evaluate(
        self,
        artifact: ArtifactRecord,
        shards: TokenShards | SampledTokens,
        choice: DatasetChoice,
        *,
        name: str,
        stream: Literal["certification", "search"],
        out_relative: str,
    ) -> RiskRecord:
        evaluation = dataclasses.replace(self.settings.evaluation, stream=stream)
        artifact_path = self.run_dir / artifact.path
        checkpoint = self.state_dir / "checkpoints" / f"{name}.json"

        def work() -> tuple[tuple[str, ...], dict[str, Any]]:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            record = measure_risk(
                artifact_path,
                data_source(self.settings, choice),
                evaluation,
                self._cache(),
                tokens=shards,
                model=self._decoded_model(artifact_path),
                progress=self.runner.report(name),
                checkpoint_path=checkpoint,
                # the artifact's hash: it keys the checkpoint and seeds the default sample
                model_identity=artifact.sha256,
            )
            if record.data is not None:  # risk.json is published: no local paths in it
                record = dataclasses.replace(record, data=_public_data(record.data))
            document = risk.risk_to_dict(record)
            if self.rank == 0:
                write_json_atomic(self.run_dir / out_relative, document)
            return (out_relative,), document

        inputs = {
            "artifact_sha256": artifact.sha256,
            "data_sha256": _data_identity(shards),
            "evaluation": to_dict(evaluation),
            "tool": __version__,
        }
        record = risk.risk_from_dict(self.stages.run(name, inputs, work, on_all_ranks=True))
        if self.rank == 0:
            for leftover in checkpoint.parent.glob(f"{checkpoint.name}*"):
                leftover.unlink(missing_ok=True)
        return record

    def bound(
        self,
        artifact: ArtifactRecord,
        risk_record: RiskRecord,
        configurations: int,
        name: str = "bound",
    ) -> BoundResult:
        settings = self.settings
        with self.runner.stage(name):
            data = risk_record.data
            return compute_bound(
                BoundInput(
                    vocab_size=risk_record.vocab_size,
                    n_tokens=risk_record.n_tokens,
                    sampled=SampledDraws(data.total_weight, data.accepted, data.drawn)
                    if isinstance(data, SampledDataRecord)
                    else None,
                    size_bytes=artifact.size_bytes,
                    metrics=risk_record.metrics,
                    hyperparameter_configurations=configurations,
                    delta=settings.delta,
                    sampling_method="exhaustive" if settings.evaluation.exhaustive else "bernstein",
                    heldout=settings.heldout,
                )
            )

    # ---- the whole run

    def run(self) -> RunResult | None:
        settings = self.settings
        if settings.key_path is not None and not Path(settings.key_path).expanduser().is_file():
            raise InvalidInputError(
                f"{settings.key_path} does not exist",
                field="--key",
                hint="pass a PEM private key made by certify keygen, or omit --key",
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            sweep_temp_files(self.run_dir)
        self.run_log.event(
            event="run",
            model=settings.model,
            dataset=settings.dataset,
            settings=_public_settings(settings),
        )
        try:
            return self._run()
        except KeyboardInterrupt:
            raise InterruptedRunError(
                "interrupted; finished stages are kept and nothing half-written was left",
                hint="run the same command again to continue",
            ) from None
        finally:
            if self.rank == 0:
                sweep_temp_files(self.run_dir)

    def _run(self) -> RunResult | None:
        settings = self.settings
        resolved = self.resolve()
        self._warn_cpu(resolved)
        choice = choose_dataset(settings, resolved)
        _check_heldout(settings, choice)
        if choice.defaulted:
            self.run_log.note(choice.note)
        else:
            self.run_log.event(event="note", message=choice.note)
        if settings.push and self.repo_id is None:
            # ask the Hub before hours of work, not after: no token fails here
            self.repo_id = self._default_repo_id()

        grid = search_grid(settings)
        configurations = max(len(grid), 1)
        search: list[SearchCandidate] = []
        if grid:
            artifact, risk_record, bound_result, search = self._search(resolved, choice, grid)
        else:
            artifact = self.compress(
                resolved, settings.quantization, "compress", ARTIFACT_NAME, choice
            )
            shards = self.tokenize(artifact, choice)
            self._check_calibration(shards)
            risk_record = self.evaluate(
                artifact,
                shards,
                choice,
                name="evaluate",
                stream="certification",
                out_relative=RISK_NAME,
            )
            bound_result = self.bound(artifact, risk_record, configurations)
        self._decoded.clear()
        if self.rank != 0:
            return None  # torchrun worker: it helped evaluate; rank 0 certifies
        dataset_record = risk_record.data
        if dataset_record is None:
            raise DataError("the evaluation did not record its dataset; this is a bug")

        _certificate, fingerprint, key_path, key_created = self._certify(
            resolved, artifact, dataset_record, risk_record, bound_result, choice, grid
        )
        pushed = self._push(key_path) if settings.push else None
        result = self._result(
            _Outcome(
                resolved=resolved,
                artifact=artifact,
                bound=bound_result,
                choice=choice,
                fingerprint=fingerprint,
                key_path=key_path,
                key_created=key_created,
                search=tuple(search),
                pushed=pushed,
            )
        )
        write_json_atomic(self.state_dir / "result.json", result_to_dict(result))
        return result

    def _search(
        self,
        resolved: ResolvedModel,
        choice: DatasetChoice,
        grid: tuple[tuple[str, int, int], ...],
    ) -> tuple[ArtifactRecord, RiskRecord, BoundResult, list[SearchCandidate]]:
        settings = self.settings
        configurations = len(grid)
        scored: list[tuple[float, int, ArtifactRecord]] = []
        shards: TokenShards | SampledTokens | None = None
        for number, (method, bits, group_size) in enumerate(grid):
            label = f"b{bits}-g{group_size}"
            if method != RTN_METHOD:  # RTN keeps the labels (and folders) it always had
                label = f"{method}-{label}"
            quantization = dataclasses.replace(
                settings.quantization, method=method, bits=bits, group_size=group_size
            )
            relative = f"{STATE_DIR}/candidates/{label}/{ARTIFACT_NAME}"
            artifact = self.compress(resolved, quantization, f"compress[{label}]", relative, choice)
            if shards is None or isinstance(shards, SampledTokens):
                # sampled mode draws per artifact (its hash seeds the draw), from SEARCH
                shards = self.tokenize(artifact, choice, "search", f"tokenize[{label}]")
                self._check_calibration(shards)
            risk_record = self.evaluate(
                artifact,
                shards,
                choice,
                name=f"search[{label}]",
                stream="search",
                out_relative=f"{STATE_DIR}/candidates/{label}/{RISK_NAME}",
            )
            result = self.bound(artifact, risk_record, configurations, name=f"bound[{label}]")
            headline = result.summary.get("bits_per_token_bound")
            key = float(headline) if headline is not None else math.inf
            scored.append((key, number, artifact))
        best_key, best_number, best_artifact = min(scored, key=lambda item: (item[0], item[1]))
        self.run_log.note(
            f"--bits auto: kept {best_artifact.quantization.get('method')}, "
            f"{best_artifact.quantization.get('bits')} bits, group size "
            f"{best_artifact.quantization.get('group_size')} of {configurations} configurations "
            f"(search bound {best_key:.4f} bits/token); certifying it on a fresh sample"
        )

        def select() -> tuple[tuple[str, ...], dict[str, Any]]:
            # publish the chosen candidate as the run's artifact (same bytes, same hash)
            copy_atomic(self.run_dir / best_artifact.path, self.run_dir / ARTIFACT_NAME)
            return (ARTIFACT_NAME,), {}

        self.stages.run("select", {"artifact_sha256": best_artifact.sha256}, select)
        artifact = dataclasses.replace(best_artifact, path=ARTIFACT_NAME)
        if shards is None:  # pragma: no cover - RunSettings refuses an empty grid
            raise InvalidInputError("the --bits auto grid is empty", field="auto_grid")
        if isinstance(shards, SampledTokens):
            shards = self.tokenize(artifact, choice)  # the certification draw
        risk_record = self.evaluate(
            artifact,
            shards,
            choice,
            name="evaluate",
            stream="certification",
            out_relative=RISK_NAME,
        )
        bound_result = self.bound(artifact, risk_record, configurations)
        search = [
            SearchCandidate(
                bits=int(candidate.quantization.get("bits", 0)),
                group_size=int(candidate.quantization.get("group_size", 0)),
                size_bytes=candidate.size_bytes,
                bits_per_parameter=candidate.bits_per_parameter,
                bits_per_token_bound=None if math.isinf(key) else key,
                chosen=number == best_number,
                method=str(candidate.quantization.get("method", RTN_METHOD)),
            )
            for key, number, candidate in scored
        ]
        return artifact, risk_record, bound_result, search

    def _certify(
        self,
        resolved: ResolvedModel,
        artifact: ArtifactRecord,
        dataset_record: DatasetRecord | SampledDataRecord,
        risk_record: RiskRecord,
        bound_result: BoundResult,
        choice: DatasetChoice,
        grid: tuple[tuple[str, int, int], ...],
    ) -> tuple[Certificate, str, str, bool]:
        """certificate.json, then the card, then the signatures (the last files written)."""
        model_record = _model_record(resolved, artifact)
        assumptions = []
        if choice.assumption:
            assumptions.append(choice.assumption)
        if grid:
            methods = {method for method, _, _ in grid}
            described = (
                f"(bits, group size) {', '.join(f'({b}, {g})' for _, b, g in grid)}"
                if methods == {RTN_METHOD}  # the sentence RTN-only searches always had
                else "(quantizer, bits, group size) "
                + ", ".join(f"({m}, {b}, {g})" for m, b, g in grid)
            )
            assumptions.append(
                f"--bits auto searched {len(grid)} configurations {described}; "
                "the prior is uniform over them "
                f"(ln {len(grid)} nats added) and the kept one was re-evaluated on a fresh "
                "sample for the sampling term."
            )
        certificate_inputs = {
            "artifact_sha256": artifact.sha256,
            "risk_sha256": self.store.output_hash("evaluate", RISK_NAME),
            "model": to_dict(model_record),
            "data": to_dict(dataset_record),
            "bound": bound_result_to_dict(bound_result),
            "assumptions": assumptions,
            "grid": [list(entry[1:]) if entry[0] == RTN_METHOD else list(entry) for entry in grid],
            "tool": __version__,
        }
        inputs = sha256_json(certificate_inputs)
        name = "certificate"
        manifest = self.store.lookup(name, inputs)
        if manifest is not None:
            self.runner.reused(name)
            certificate = certificate_module.load_certificate(self.run_dir / CERTIFICATE_NAME)
        else:
            with self.runner.stage(name):
                certificate = certificate_module.build_certificate(
                    model_record,
                    artifact,
                    dataset_record,
                    risk_record,
                    bound_result,
                    assumptions=assumptions,
                )
                certificate_module.write_certificate(certificate, self.run_dir / CERTIFICATE_NAME)
                self.store.store(name, inputs, (CERTIFICATE_NAME,))
        certificate_sha = self.store.output_hash(name, CERTIFICATE_NAME)

        key_path, public_pem, key_created = self._signing_key()
        fingerprint = signing.public_key_fingerprint(public_pem)
        # the card first: model.sig, written last, covers README.md and bound.png too
        self._card(certificate, certificate_sha, fingerprint, choice)
        self._sign(certificate, certificate_sha, key_path, fingerprint, artifact)
        return certificate, fingerprint, key_path, key_created

    def _sign(
        self,
        certificate: Certificate,
        certificate_sha: str,
        key_path: str,
        fingerprint: str,
        artifact: ArtifactRecord,
    ) -> None:
        """The one signing path (``signing.sign_run``) as its two reusable halves.

        ``sign``: certificate.dsse.json + the public key, redone when the certificate or
        the key changes; ``model_signing``: model.sig over the published files, redone
        when any of them changes (a card with a new repo id keeps the envelope).
        """
        passphrase = (
            self.settings.key_passphrase.encode("utf-8")
            if self.settings.key_passphrase is not None
            else None
        )
        inputs = sha256_json(
            {"certificate_sha256": certificate_sha, "key_fingerprint": fingerprint}
        )
        if self.store.lookup("sign", inputs) is not None:
            self.runner.reused("sign")
        else:
            with self.runner.stage("sign"):
                signing.sign_certificate(self.run_dir, certificate, key_path, passphrase)
                self.store.store("sign", inputs, (ENVELOPE_NAME, PUBLIC_KEY_NAME))
        published = {
            path.name: artifact.sha256 if path.name == artifact.path else file_sha256(path)
            for path in published_files(self.run_dir)
            if path.name != MODEL_SIGNATURE_NAME
        }
        others = sorted(
            {path.name for path in self.run_dir.iterdir()} - {*published, MODEL_SIGNATURE_NAME}
        )
        inputs = sha256_json(
            {"key_fingerprint": fingerprint, "published": published, "not_published": others}
        )
        if self.store.lookup("model_signing", inputs) is not None:
            self.runner.reused("model_signing")
            return
        with self.runner.stage("model_signing"):
            signing.write_model_signing_bundle(self.run_dir, key_path, passphrase)
            self.store.store("model_signing", inputs, (MODEL_SIGNATURE_NAME,))

    def _signing_key(self) -> tuple[str, bytes, bool]:
        """(private key path, public key PEM, created now) — a key is made on first use."""

        settings = self.settings
        passphrase = (
            settings.key_passphrase.encode("utf-8") if settings.key_passphrase is not None else None
        )
        if settings.key_path is not None:
            private_path = Path(settings.key_path).expanduser()
            if not private_path.is_file():
                raise InvalidInputError(
                    f"{private_path} does not exist",
                    field="--key",
                    hint="pass a PEM private key made by certify keygen, or omit --key",
                )
            created = False
        else:
            private_path = Path(settings.key_dir).expanduser() / signing.PRIVATE_KEY_NAME
            created = not private_path.is_file()
            if created:
                signing.generate_key(private_path.parent, passphrase)
                self.run_log.note(f"created a signing key in {private_path.parent}")
        public_pem = signing.public_key_pem(signing.load_private_key(private_path, passphrase))
        return str(private_path), public_pem, created

    def _card(
        self,
        certificate: Certificate,
        certificate_sha: str,
        fingerprint: str,
        choice: DatasetChoice,
    ) -> None:

        settings = self.settings
        inputs = sha256_json(
            {
                "certificate_sha256": certificate_sha,
                "key_fingerprint": fingerprint,
                "dataset": choice.source,
                "repo_id": self.repo_id,
                "run_folder": card.relative_folder(settings.out_dir),
                "tool": __version__,
            }
        )
        name = "card"
        if self.store.lookup(name, inputs) is not None:
            self.runner.reused(name)
            return
        with self.runner.stage(name):
            text = card.render_card(
                certificate,
                key_fingerprint=fingerprint,
                # base_model comes from the certificate: set only for a Hub model
                base_model=None,
                dataset=choice.source,
                plot_filename=PLOT_NAME,
                repo_id=self.repo_id,
                run_folder=settings.out_dir,
                endpoint=settings.endpoint,
            )
            write_bytes_atomic(self.run_dir / CARD_NAME, text.encode("utf-8"))
            card.plot_bound(certificate, self.run_dir / PLOT_NAME)
            self.store.store(name, inputs, (CARD_NAME, PLOT_NAME))

    def _push(self, key_path: str) -> PushResult:
        """One commit of the run folder; with the run's key, a second one pins the card's
        verify instructions to the first (hub.push_run)."""
        settings = self.settings
        if self.repo_id is None:  # pragma: no cover - _run sets it when pushing
            raise InvalidInputError("no repo id to push to", field="--repo-id")
        with self.runner.stage("push"):
            result = hub.push_run(
                self.run_dir,
                self.repo_id,
                private=settings.private,
                revision=settings.push_branch,
                commit_message="certify run: model.certz + signed certificate",
                endpoint=settings.endpoint,
                token=settings.token,
                signing_key=key_path,
                key_passphrase=settings.key_passphrase.encode("utf-8")
                if settings.key_passphrase is not None
                else None,
            )
        return result

    def _default_repo_id(self) -> str:
        """<your Hub name>/<model name>-certified, when --push comes without --repo-id."""
        settings = self.settings
        user = hub.whoami(endpoint=settings.endpoint, token=settings.token)
        name = Path(settings.model.rstrip("/")).name
        name = name[: -len(".gguf")] if name.lower().endswith(".gguf") else name
        repo_id = f"{user}/{name}-certified"
        self.run_log.note(f"no --repo-id given: pushing to {repo_id}")
        return repo_id

    def _result(self, outcome: _Outcome) -> RunResult:
        metrics = tuple(
            MetricSummary(
                name=metric.name,
                alpha=metric.alpha,
                k=metric.k,
                empirical=metric.sample_mean,
                bound=metric.bound,
                perplexity_bound=(
                    _finite_or_none(perplexity_bound(metric.bound))
                    if metric.name == "bits"
                    else None
                ),
            )
            for metric in outcome.bound.metrics
        )
        timings = tuple(self.runner.timings)
        summary = outcome.bound.summary
        run_dir = self.run_dir
        artifact = outcome.artifact
        return RunResult(
            run_dir=str(run_dir),
            artifact_path=str(run_dir / ARTIFACT_NAME),
            certificate_path=str(run_dir / CERTIFICATE_NAME),
            envelope_path=str(run_dir / ENVELOPE_NAME),
            card_path=str(run_dir / CARD_NAME),
            plot_path=str(run_dir / PLOT_NAME),
            risk_path=str(run_dir / RISK_NAME),
            log_path=str(run_dir / LOG_NAME),
            model_source=outcome.resolved.source,
            dataset_source=outcome.choice.source,
            dataset_note=outcome.choice.note,
            size_bytes=artifact.size_bytes,
            bits_per_parameter=artifact.bits_per_parameter,
            quantization=dict(artifact.quantization),
            metrics=metrics,
            bits_per_token_bound=summary.get("bits_per_token_bound"),
            perplexity_bound=summary.get("perplexity_bound"),
            key_fingerprint=outcome.fingerprint,
            key_path=outcome.key_path,
            public_key_path=str(_public_key_path(Path(outcome.key_path), run_dir)),
            key_created=outcome.key_created,
            stages=timings,
            reused_stages=tuple(timing.stage for timing in timings if timing.reused),
            search=outcome.search,
            pushed=outcome.pushed,
            vacuous=summary.get("vacuous"),
            uniform_bits_per_token=summary.get("uniform_bits_per_token"),
        )


@dataclasses.dataclass(frozen=True)
class _Outcome:
    """What a finished run produced, for its summary (:class:`RunResult`)."""

    resolved: ResolvedModel
    artifact: ArtifactRecord
    bound: BoundResult
    choice: DatasetChoice
    fingerprint: str
    key_path: str
    key_created: bool
    search: tuple[SearchCandidate, ...]
    pushed: PushResult | None


def _public_key_path(private_key_path: Path, run_dir: Path) -> Path:
    """The signer's public key: beside the private key if there, else the run's copy."""
    beside = private_key_path.with_name(PUBLIC_KEY_NAME)
    return beside if beside.is_file() else run_dir / PUBLIC_KEY_NAME


def _distributed() -> tuple[int, int]:
    """(rank, world size) under an initialised torch.distributed (torchrun), else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank()), int(dist.get_world_size())
    return 0, 1


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _public_settings(settings: RunSettings) -> dict[str, Any]:
    """Settings without secrets (for the log)."""
    data = to_dict(settings)
    data.pop("token", None)
    data.pop("key_passphrase", None)
    return data


def run(
    settings: RunSettings,
    *,
    progress: ProgressCallback | None = None,
    log: LogCallback | None = None,
) -> RunResult | None:
    """Run every stage for ``settings`` in ``settings.out_dir``; reuse finished stages.

    ``progress(stage, done, total)`` is called as stages advance (total 0 when unknown;
    ``done == total == 1`` when a stage finished or was reused); ``log(message)`` gets
    notes worth showing a person (dataset choice, CPU time estimate, key creation).
    Raises :class:`~certify.errors.InterruptedRunError` on Ctrl-C after removing any
    half-written file; running again continues from the finished stages.

    Under ``torchrun`` (an initialised process group) every rank evaluates its share
    of the chunks; rank 0 alone writes files and certifies, and the other ranks
    return None after the evaluation.
    """
    return _Pipeline(settings, progress, log).run()


def result_to_dict(result: RunResult) -> dict[str, Any]:
    """JSON-ready summary of a run (what ``certify run --json`` prints)."""
    return to_dict(result)
