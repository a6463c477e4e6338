"""Training: the paper's recipe (section 4.2) on cached backbone features, validated with the real metrics.

Read :func:`train` top to bottom: data -> features -> model -> epochs (train, validate, save).
Each concern has its module:

* :mod:`tvcaption.train_data`: splits, vocabulary and tokens, features, one caption per clip per
  epoch, batches;
* :mod:`tvcaption.train_state`: the run's files and the resumable state;
* :mod:`tvcaption.train_devices`: torchrun ranks, devices, mixed precision;
* :mod:`tvcaption.train_validation`: validation metrics and the best epoch;
* :mod:`tvcaption.train_loop`: optimisation steps, epochs, the events reported.

Recipe (every value configurable through :class:`~tvcaption.config.TrainConfig` and
:class:`~tvcaption.model.ModelDims`): RMSProp (decay 0.9, momentum 0, eps 1e-10), lr 1e-4
constant, batch 64, gradient norm clipped at 5, dropout 0.5, loss = cross-entropy + 0.4 *
ranking loss. When the split's features fit in half of the available memory they are copied
into RAM once (fp16) and batches are gathered from there; otherwise batches are read from the
map. e(V) is computed once per clip at load time, not per batch. Before the first epoch, the
training features' statistics (:mod:`tvcaption.domain`) are fitted; every checkpoint carries
them, so its captions of unlike scenes are marked out of domain. Nothing here prints: progress
goes to ``on_event`` (:class:`~tvcaption.train_loop.TrainEvent`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tvcaption.clips import VAL_SPLITS, SplitFeatures, available_memory, generate, load_features, split_clips
from tvcaption.config import FeaturesConfig, TrainConfig
from tvcaption.errors import ConfigError
from tvcaption.model.dims import ModelDims
from tvcaption.train_data import RunFeatures, TrainData, caption_choice, load_run_features, read_splits, tokenize
from tvcaption.train_devices import (Dist, choose_precision, cpu_has_native_bf16, resolve_device, setup_distributed,
                                     wrap_for_ranks)
from tvcaption.train_loop import EventFn, Objective, Run, TrainEvent, get_lr, make_optimizer, run_epochs
from tvcaption.train_state import (STATE_FORMAT, STATE_VERSION, RunState, SavedState, flatten_optimizer, load_state,
                                   resume_from, save_state, stem_paths, unflatten_optimizer)
from tvcaption.train_validation import LOWER_IS_BETTER, estimate_loss, is_better, validate

__all__ = [  # the names callers import from here; each lives in the module of its concern
    "LOWER_IS_BETTER", "STATE_FORMAT", "STATE_VERSION", "VAL_SPLITS", "Dist", "EventFn", "SplitFeatures",
    "TrainEvent", "TrainResult", "available_memory", "caption_choice", "cpu_has_native_bf16", "estimate_loss",
    "flatten_optimizer", "generate", "get_lr", "is_better", "load_features", "load_state", "make_optimizer",
    "resolve_dims", "save_state", "split_clips", "stem_paths", "train", "unflatten_optimizer", "validate",
]


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path  # best checkpoint (STEM.json)
    last: Path  # last epoch's checkpoint (STEM.last.json)
    state: Path  # resumable state (STEM.state.json)
    best_epoch: int  # 0 when no epoch was validated
    best_score: float
    select: str  # the validation key the best checkpoint was chosen by
    epochs: int  # epochs completed in total (including those before a resume)
    history: tuple[dict[str, Any], ...] = field(default=())  # one row per epoch: losses, metrics, seconds
    seconds: float = 0.0  # wall time of this call


def resolve_dims(dims: ModelDims | None, config: TrainConfig, feature_dim: int, global_dim: int,
                 vocab_size: int, grid: int = 7) -> ModelDims:
    """The architecture from ``dims`` (hidden, attention, embedding, pooling, matching, frames),
    the data-dependent sizes from the data, and dropout / margin / lambda from TrainConfig."""
    dims = dims or ModelDims()
    return dataclasses.replace(dims, feature_dim=feature_dim, global_dim=global_dim, grid=grid,
                               vocab_size=vocab_size, dropout=config.dropout, margin=config.margin,
                               matching_weight=config.matching_weight)


def check_options(config: TrainConfig, select: str) -> None:
    """ConfigError for options no run can use, before anything is read."""
    from tvcaption.metrics import METRIC_KEYS

    if select not in (*METRIC_KEYS, "slots", "loss"):
        raise ConfigError(f"select {select!r}: choose one of {', '.join(METRIC_KEYS)}, slots or loss")
    if config.optimizer not in ("rmsprop", "adam"):
        raise ConfigError(f"[train] optimizer: unknown {config.optimizer!r}; use rmsprop or adam")
    if config.epochs < 1 or config.batch_size < 1:
        raise ConfigError("[train] epochs and batch_size must be at least 1")


def train(
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    config: TrainConfig = TrainConfig(),
    features: FeaturesConfig = FeaturesConfig(),
    dims: ModelDims | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    val_clips: int = 0,
    max_train_clips: int = 0,
    select: str = "CIDEr",
    warmup: int = 0,
    amp: bool = True,
    in_ram: bool | None = None,
    on_event: EventFn | None = None,
) -> TrainResult:
    """Train a captioning model on the dataset at ``data``; the best checkpoint goes to ``out``.

    ``config``: optimisation (epochs, batch_size, lr, optimizer, grad_clip, dropout,
    matching_weight, margin, max_words, vocab_size, seed). ``features``: backbone, global
    descriptor, device, threads and (when ``cache_dir`` is None) the cache folder.
    ``dims``: architecture (hidden, attention, embedding, pooling, matching, frames; the
    paper's by default); feature and vocabulary sizes come from the data. ``resume``: continue
    from ``OUT.state.json`` after its last completed epoch (until ``config.epochs``).
    ``val_clips``: validate on at most this many val clips (0 = all). ``max_train_clips``: train on
    the first N train clips only (0 = all), reading them from the whole split's feature cache
    (so a smaller run, e.g. an ablation, reuses the features already extracted). ``select``: the
    validation key that picks the best checkpoint (a metric name, ``slots`` or ``loss``).
    ``warmup``: linear learning-rate warm-up steps (0: constant, as the paper). ``in_ram``: as
    :func:`~tvcaption.clips.load_features`. ``on_event``: called with each
    :class:`~tvcaption.train_loop.TrainEvent` (on rank 0 only).
    """
    started = time.perf_counter()
    check_options(config, select)
    paths = stem_paths(out)
    if features.threads > 0:
        torch.set_num_threads(features.threads)
    dist, created_group = setup_distributed(features.device)
    emit = on_event if dist.main else None
    try:
        device = resolve_device(features.device, dist)
        split, feats, saved, saved_dims = _load(Path(data), paths, config, features, dims, cache_dir, resume,
                                                val_clips, max_train_clips, in_ram, device, dist, emit)
        run = _setup(split, feats, saved, saved_dims or _dims_for(dims, config, split, feats), paths, config,
                     select, warmup, amp, device, dist, emit)
        del saved  # the saved tensors are in the model and optimizer now
        completed = run_epochs(run)
        state = run.state
        if emit and completed < state.start_epoch:
            emit(TrainEvent("nothing", epochs=config.epochs,
                            info={"state": str(paths["state_json"]), "epoch": state.start_epoch - 1}))
        return TrainResult(
            checkpoint=Path(f"{paths['best']}.json"), last=Path(f"{paths['last']}.json"),
            state=paths["state_json"], best_epoch=state.best_epoch,
            best_score=float(state.best_score) if state.best_score is not None else float("nan"), select=select,
            epochs=completed, history=tuple(state.history), seconds=time.perf_counter() - started)
    finally:
        if created_group:
            torch.distributed.destroy_process_group()


def _load(data: Path, paths: dict[str, Path], config: TrainConfig, features: FeaturesConfig, dims: ModelDims | None,
          cache_dir: str | os.PathLike[str] | None, resume: bool, val_clips: int, max_train_clips: int,
          in_ram: bool | None, device: torch.device, dist: Dist,
          emit: EventFn | None) -> tuple[TrainData, RunFeatures, SavedState | None, ModelDims | None]:
    """The clips, tokens and features of the run, and what a resumed run saved (or None)."""
    from tvcaption.checkpoint import features_for

    split = read_splits(data, val_clips, max_train_clips)
    saved = load_state(paths) if resume else None
    saved_dims = ModelDims.from_dict(saved.doc["dims"]) if saved is not None else None
    tokenize(split, config, saved, paths["state_json"])
    if saved is not None:  # the features the saved model learned from, whatever the config says
        features = features_for(saved.doc["features"], features)
    frames = saved_dims.frames if saved_dims else (dims or ModelDims()).frames
    cache = Path(cache_dir if cache_dir is not None else features.cache_dir)

    def progress(name: str, done: int, total: int) -> None:
        emit(TrainEvent("features", split=name, done=done, total=total))

    feats = load_run_features(split, features, frames, cache, device, dist, in_ram, progress if emit else None)
    if emit:
        emit(TrainEvent("data", info={
            "data": str(data), "train_clips": len(split.train), "val_clips": len(split.val),
            "val_total": split.val_total, "vocab": len(split.vocab), "backbone": feats.info["backbone"],
            "frames": frames, "seconds": feats.seconds, "in_ram": feats.train.in_ram}))
    return split, feats, saved, saved_dims


def _dims_for(dims: ModelDims | None, config: TrainConfig, split: TrainData, feats: RunFeatures) -> ModelDims:
    from tvcaption.features import descriptor_dim

    global_dim = descriptor_dim(feats.info["global_descriptor"], feats.channels)
    return resolve_dims(dims, config, feats.channels, global_dim, len(split.vocab), feats.grid)


def _setup(split: TrainData, feats: RunFeatures, saved: SavedState | None, model_dims: ModelDims,
           paths: dict[str, Path], config: TrainConfig, select: str, warmup: int, amp: bool,
           device: torch.device, dist: Dist, emit: EventFn | None) -> Run:
    """The model (resumed when ``saved``), its optimizer and precision, ready for the epochs."""
    from tvcaption.data import detect_format
    from tvcaption.model import CaptionModel

    torch.manual_seed(config.seed + dist.rank)
    model = CaptionModel(model_dims).to(device)
    optimizer = make_optimizer(model.parameters(), config)
    state = RunState()
    if saved is not None:
        state = resume_from(saved, model, optimizer, lr=config.lr, select=select, rank=dist.rank, seed=config.seed)
        if emit:
            emit(TrainEvent("resumed", info={"state": str(paths["state_json"]), "epoch": state.start_epoch - 1,
                                             "step": state.step}))
    objective = wrap_for_ranks(Objective(model), dist, device)
    precision = choose_precision(amp, device)
    if emit:
        emit(TrainEvent("model", info={
            "pooling": model_dims.pooling, "matching": model_dims.matching, "hidden": model_dims.hidden,
            "parameters": sum(p.numel() for p in model.parameters()), "optimizer": config.optimizer,
            "lr": config.lr, "batch_size": config.batch_size, "ranks": dist.world, "device": str(device),
            "amp": precision.name, "threads": torch.get_num_threads()}))
    data = split.path
    meta_base = {**feats.info, "name": paths["best"].name, "select": select, "train": dataclasses.asdict(config),
                 "data": {"path": str(data), "format": detect_format(data), "train_clips": len(split.train),
                          "val_clips": len(split.val), "val_total": split.val_total, "captions": sum(split.counts)}}
    domain = None
    if dist.main:  # the training features' statistics, threshold from the validation clips
        from tvcaption.domain import fit_splits

        domain = fit_splits(feats.train, feats.val)
    return Run(model, objective, optimizer, precision, device, dist, config, split, feats, paths, select,
               meta_base, state, warmup, emit, domain)
