"""Training: the paper's recipe (section 4.2) on cached backbone features, validated with the real metrics.

Read :func:`train` top to bottom: data -> features -> model -> epochs (train, validate, save).

Recipe (every value configurable through :class:`~tvcaption.config.TrainConfig` and
:class:`~tvcaption.model.ModelDims`): RMSProp (decay 0.9, momentum 0, eps 1e-10; torch's
RMSprop, whose mean square starts at 0 where TensorFlow 1 started it at 1), lr 1e-4 constant,
batch 64, gradient norm clipped at 5, dropout 0.5, loss = cross-entropy + 0.4 * ranking loss.

Choices written down:

* **One reference caption per clip per epoch**, drawn from ``(seed, epoch)``. An epoch is one
  pass over the clips (so the epoch count means the same on MSVD's ~40 captions per clip and on
  MSR-VTT's 20), every batch holds distinct videos, and the ranking loss (eq 27) gets its
  negatives only from other videos, as the paper asks. The draw is a pure function of
  ``(seed, epoch)``: a resumed run sees the same captions as an uninterrupted one.
* **Features**: the backbone runs once per clip into :mod:`tvcaption.features.cache` (fp16,
  memory-mapped). When the split's features fit in half of the available memory they are copied
  into RAM once (fp16) and batches are gathered from there; otherwise batches are read from the
  map. e(V) is computed once per clip at load time, not per batch.
* **Validation** after each epoch on the ``val`` split (at most ``val_clips`` clips, the first ones
  in dataset order, so every epoch scores the same clips): validation loss, then greedy decoding
  and BLEU-1..4 / METEOR / ROUGE-L / CIDEr through pycocoevalcap, plus slot accuracy on SynthTV.
  The best epoch by ``select`` (default CIDEr; ``loss`` means the lowest validation loss) is
  saved as the checkpoint ``OUT``.
* **Files** for ``out = models/mine``: ``mine.json/.safetensors`` the best checkpoint;
  ``mine.last.json/.safetensors`` the last epoch's checkpoint; ``mine.state.json/.safetensors``
  what ``resume=True`` needs (model and optimizer tensors, torch RNG states in safetensors;
  epoch, step, history, vocabulary, optimizer hyper-parameters, NumPy/Python RNG states, config
  in JSON; nothing pickled). The state is self-contained, so a crash between writing the last
  checkpoint and the state leaves a consistent previous state.
* **Multi-GPU** through ``torchrun`` (``WORLD_SIZE`` > 1): DistributedDataParallel, a
  DistributedSampler, ``batch_size`` is the global batch (each rank takes its share), rank 0
  builds the feature cache, validates and saves. CPU runs use the gloo backend.
* **Mixed precision** (``amp``, on by default): on CUDA bf16 where supported, else fp16 with a
  gradient scaler; on a CPU with native bf16 (AVX512-BF16 or AMX) bf16 autocast, elsewhere fp32.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from tvcaption.config import ConfigError, FeaturesConfig, TrainConfig
from tvcaption.errors import CheckpointError, TvcaptionError
from tvcaption.model.dims import ModelDims

if TYPE_CHECKING:
    from rich.console import Console

    from tvcaption.data import Clip
    from tvcaption.vocab import Vocab

STATE_FORMAT = "tvcaption-train-state"
STATE_VERSION = 1
VAL_SPLITS = ("val", "validate", "validation", "valid", "dev")
LOWER_IS_BETTER = ("loss",)


# ---------------------------------------------------------------------------------------------
# Results and small pure helpers
# ---------------------------------------------------------------------------------------------
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


def get_lr(step: int, lr: float, warmup: int = 0) -> float:
    """Learning rate at optimizer step ``step`` (0-based): linear warm-up over ``warmup`` steps,
    then constant (the paper trains at a constant 1e-4)."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    return lr


def caption_choice(counts: Sequence[int] | np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """Index of the reference caption each clip trains on in ``epoch``: a pure function of (seed, epoch)."""
    counts = np.asarray(counts, dtype=np.int64)
    rng = np.random.default_rng([seed, epoch, 17])
    return np.minimum((rng.random(len(counts)) * counts).astype(np.int64), counts - 1)


def stem_paths(out: str | os.PathLike[str]) -> dict[str, Path]:
    """The files of one training run, from the output stem (``models/mine`` or ``models/mine.json``)."""
    text = os.fspath(out)
    for suffix in (".json", ".safetensors"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    return {
        "best": Path(text),
        "last": Path(text + ".last"),
        "state_json": Path(text + ".state.json"),
        "state_tensors": Path(text + ".state.safetensors"),
    }


def is_better(key: str, new: float, old: float | None) -> bool:
    if old is None or not math.isfinite(old):
        return math.isfinite(new)
    return new < old if key in LOWER_IS_BETTER else new > old


# ---------------------------------------------------------------------------------------------
# Data: clips -> cached features -> tensors
# ---------------------------------------------------------------------------------------------
@dataclass
class SplitFeatures:
    """The features of one split, clip i at row i."""

    clips: list[Clip]
    local: Any  # (N, T, 7, 7, C) float16: a torch tensor in RAM, or the FeatureCache (memory map)
    glob: torch.Tensor  # (N, D) float32 global descriptors e(V)
    in_ram: bool

    def __len__(self) -> int:
        return len(self.clips)

    def batch(self, index: Sequence[int] | np.ndarray, device: torch.device, pin: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 (B, T, 7, 7, C) local features and (B, D) e(V) for the clips at ``index``."""
        idx = np.asarray(index, dtype=np.int64)
        if self.in_ram:
            local = self.local.index_select(0, torch.from_numpy(idx))
        else:
            order = np.argsort(idx)  # sorted reads from the map, then back to the batch order
            rows = self.local.read(idx[order])
            local = torch.from_numpy(rows[np.argsort(order)])
        glob = self.glob.index_select(0, torch.from_numpy(idx))
        if pin and device.type == "cuda":
            local, glob = local.pin_memory(), glob.pin_memory()
        return (local.to(device, non_blocking=True).float(), glob.to(device, non_blocking=True))


def available_memory() -> int:
    """Bytes of memory available to new allocations (Linux MemAvailable; else a conservative guess)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def load_features(
    clips: Sequence[Clip],
    backbone: Any,
    frames: int,
    descriptor: str,
    cache_dir: str | Path,
    *,
    batch_size: int = 32,
    in_ram: bool | None = None,
    progress: bool = False,
    build: bool = True,
) -> SplitFeatures:
    """Cached local features of ``clips`` (extracting the missing ones) and their e(V).

    ``in_ram``: True copies the features into RAM, False reads batches from the memory map,
    None decides by size (RAM when they take less than half the available memory).
    ``build=False`` only opens a cache another process built (DDP ranks > 0).
    """
    from tvcaption.features import CacheKey, FeatureCache, build_cache, global_descriptor

    ids = [c.id for c in clips]
    no_video = [c.id for c in clips if not c.video]
    if no_video:
        raise TvcaptionError(f"clip {no_video[0]!r}: no video file found ({len(no_video)} clips without one); put the "
                             "videos where the dataset reader looks (videos/, YouTubeClips/ next to the captions)")
    if build:
        cache = build_cache(ids, [c.video for c in clips], backbone, frames, cache_dir, progress,
                            batch_size=batch_size)
    else:
        cache = FeatureCache.open(cache_dir, ids, CacheKey.for_backbone(backbone, frames), [c.video for c in clips])
        if not cache.complete:
            raise TvcaptionError(f"{cache.path}: feature cache incomplete; rank 0 should have built it")
    n = len(ids)
    nbytes = int(np.prod(cache.shape)) * 2
    if in_ram is None:
        in_ram = nbytes < available_memory() // 2
    local = torch.empty(cache.shape, dtype=torch.float16) if in_ram else None
    globs = []
    chunk = max(1, (256 << 20) // max(1, nbytes // max(1, n)))  # ~256 MB of fp16 per read
    for lo in range(0, n, chunk):
        part = torch.from_numpy(cache.read(np.arange(lo, min(n, lo + chunk))))
        if local is not None:
            local[lo:lo + len(part)] = part
        globs.append(global_descriptor(descriptor, part).float())
    glob = torch.cat(globs) if globs else torch.empty(0, 0)
    return SplitFeatures(list(clips), local if local is not None else cache, glob, bool(in_ram))


def split_clips(clips: Sequence[Clip], split: str) -> list[Clip]:
    """Clips of one split; ``val`` also matches MSR-VTT's ``validate`` and other spellings."""
    names = VAL_SPLITS if split in VAL_SPLITS else (split,)
    return [c for c in clips if (c.split or "").lower() in names]


# ---------------------------------------------------------------------------------------------
# Model, optimizer, state
# ---------------------------------------------------------------------------------------------
def make_optimizer(params, config: TrainConfig):
    if config.optimizer == "rmsprop":  # paper: decay 0.9, momentum 0, epsilon 1e-10
        return torch.optim.RMSprop(params, lr=config.lr, alpha=0.9, eps=1e-10, momentum=0.0)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr)
    raise ConfigError(f"[train] optimizer: unknown {config.optimizer!r}; use rmsprop or adam")


def _flatten_optimizer(optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """optimizer.state_dict() as safetensors-able tensors + JSON (no pickle)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "state": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, entry in doc.get("state", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    return {"state": state, "param_groups": doc["param_groups"]}


def save_state(paths: dict[str, Path], model, optimizer, vocab: Vocab, doc: dict[str, Any]) -> Path:
    """Write STEM.state.safetensors (tensors) then STEM.state.json (the rest, with the sha256)."""
    from safetensors.torch import save_file

    from tvcaption.checkpoint import _sha256

    tensors = {f"model.{k}": v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    optim_tensors, optim_doc = _flatten_optimizer(optimizer)
    tensors.update(optim_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    paths["state_tensors"].parent.mkdir(parents=True, exist_ok=True)
    tmp = paths["state_tensors"].with_name(paths["state_tensors"].name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": STATE_FORMAT})
    os.replace(tmp, paths["state_tensors"])
    py_state = random.getstate()
    document = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        **doc,
        "dims": model.dims.to_dict(),
        "vocab": vocab.to_list(),
        "optimizer": optim_doc,
        "rng": {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
                "python": [py_state[0], list(py_state[1]), py_state[2]]},
        "tensors": paths["state_tensors"].name,
        "sha256": _sha256(paths["state_tensors"]),
    }
    tmp = paths["state_json"].with_name(paths["state_json"].name + ".tmp")
    tmp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, paths["state_json"])
    return paths["state_json"]


def load_state(paths: dict[str, Path]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The JSON document and tensors of a saved training state; CheckpointError when unusable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from tvcaption.checkpoint import _sha256

    js, st = paths["state_json"], paths["state_tensors"]
    if not js.is_file():
        raise CheckpointError(f"{js}: no training state to resume; run without --resume to start afresh")
    try:
        doc = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{js}: unreadable training state; delete it and run without --resume") from None
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT or doc.get("version") != STATE_VERSION:
        raise CheckpointError(f"{js}: not a tvcaption training state (version {STATE_VERSION}); run without --resume")
    if not st.is_file() or _sha256(st) != doc.get("sha256"):
        raise CheckpointError(f"{st}: missing or does not match {js.name} (interrupted copy?); run without --resume")
    try:
        tensors = load_file(str(st), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{st}: unreadable ({exc}); run without --resume") from None
    return doc, tensors


def _restore_rng(doc: dict[str, Any], tensors: dict[str, torch.Tensor], rank: int, seed: int, epoch: int) -> None:
    if rank != 0:  # the state holds rank 0's streams; other ranks get their own, reproducibly
        torch.manual_seed(seed + 7919 * epoch + rank)
        return
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, gauss = doc["rng"]["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = doc["rng"]["python"]
    random.setstate((version, tuple(internal), gauss_next))


class _Objective(nn.Module):
    """CaptionModel.loss as a module's forward: DistributedDataParallel synchronises gradients
    only through ``forward``. Returns (total, caption, matching), the last two detached."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.inner = model

    def forward(self, local, glob, tokens, lengths):
        losses = self.inner.loss(local, glob, tokens, lengths)
        return losses.total, losses.caption.detach(), losses.matching.detach()


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
def estimate_loss(model, feats: SplitFeatures, tokens: list[list[list[int]]], batch_size: int,
                  device: torch.device, seed: int, autocast=nullcontext) -> dict[str, float]:
    """Mean validation losses (one fixed caption per clip), in eval mode under no_grad; restores train mode."""
    from tvcaption.model import pad_tokens

    was_training = model.training
    model.eval()
    totals = {"loss": 0.0, "caption": 0.0, "matching": 0.0}
    n = len(feats)
    choice = caption_choice([len(t) for t in tokens], seed, 0)
    with torch.no_grad():
        for lo in range(0, n, batch_size):
            idx = np.arange(lo, min(n, lo + batch_size))
            local, glob = feats.batch(idx, device)
            tok, lengths = pad_tokens([tokens[i][choice[i]] for i in idx], device)
            with autocast():
                losses = model.loss(local, glob, tok, lengths)
            for key, value in (("loss", losses.total), ("caption", losses.caption), ("matching", losses.matching)):
                totals[key] += float(value) * len(idx)
    model.train(was_training)
    return {k: v / max(1, n) for k, v in totals.items()}


def generate(model, vocab: Vocab, feats: SplitFeatures, batch_size: int, device: torch.device,
             options: Any = None) -> dict[str, str]:
    """Captions for every clip of ``feats`` (greedy unless ``options`` says otherwise): clip id -> text."""
    from tvcaption.decoding import DecodingOptions, decode

    options = options or DecodingOptions(beam_size=1)
    out: dict[str, str] = {}
    n = len(feats)
    for lo in range(0, n, batch_size):
        idx = np.arange(lo, min(n, lo + batch_size))
        local, glob = feats.batch(idx, device)
        for i, ids in zip(idx, decode(model, local, glob, options)):
            out[feats.clips[i].id] = vocab.decode(ids)
    return out


def validate(model, vocab: Vocab, feats: SplitFeatures, tokens, batch_size: int, device: torch.device,
             seed: int, max_words: int, autocast=nullcontext) -> dict[str, float]:
    """Validation loss, then greedy captions scored with the real metrics (and slots on SynthTV)."""
    from tvcaption.decoding import DecodingOptions
    from tvcaption.metrics import score_captions

    result = estimate_loss(model, feats, tokens, batch_size, device, seed, autocast)
    captions = generate(model, vocab, feats, batch_size, device, DecodingOptions(beam_size=1, max_len=max_words))
    scores = score_captions(captions, {c.id: list(c.captions) for c in feats.clips})
    result.update(scores.corpus)
    slotted = [c for c in feats.clips if c.slots]
    if slotted:
        from tvcaption.evaluate import score_slots, slot_subsets

        by_subset, _ = score_slots(captions, slotted, slot_subsets(slotted))
        result["slots"] = by_subset["all"]["overall"]  # mean over clips of the share of their slots right
        single = by_subset["single"]  # what each slot reaches on one-actor clips, to see what is being learned
        for slot in ("kind", "colour", "action"):
            result[f"single_{slot}"] = single[slot]
    return result


# ---------------------------------------------------------------------------------------------
# Distributed helpers
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device_spec: str) -> tuple[Dist, bool]:
    """Join the torchrun process group when WORLD_SIZE > 1; returns (dist, whether we created it)."""
    import torch.distributed as td

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), False
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    created = False
    if not td.is_initialized():
        cuda = torch.cuda.is_available() and device_spec != "cpu"
        td.init_process_group(backend="nccl" if cuda else "gloo")
        created = True
    return Dist(rank, world, local_rank), created


def _resolve_device(spec: str, dist: Dist) -> torch.device:
    """The features' device rule (auto | cpu | cuda | cuda:N), with one GPU per rank under torchrun."""
    from tvcaption.features import resolve_device

    device = resolve_device(spec)
    if device.type == "cuda":
        if dist.world > 1:
            device = torch.device("cuda", dist.local_rank)
        elif device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 parts outside autocast
        torch.backends.cudnn.allow_tf32 = True
    return device


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX): only then is CPU autocast
    to bf16 a speed-up; elsewhere PyTorch emulates it and fp32 is faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# ---------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------
def resolve_dims(dims: ModelDims | None, config: TrainConfig, feature_dim: int, global_dim: int,
                 vocab_size: int, grid: int = 7) -> ModelDims:
    """The architecture from ``dims`` (hidden, attention, embedding, pooling, matching, frames),
    the data-dependent sizes from the data, and dropout / margin / lambda from TrainConfig."""
    dims = dims or ModelDims()
    return dataclasses.replace(dims, feature_dim=feature_dim, global_dim=global_dim, grid=grid,
                               vocab_size=vocab_size, dropout=config.dropout, margin=config.margin,
                               matching_weight=config.matching_weight)


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
    progress: bool = True,
    console: Console | None = None,
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
    ``warmup``: linear learning-rate warm-up steps (0: constant, as the paper).
    """
    from tvcaption.checkpoint import save_checkpoint
    from tvcaption.data import detect_format, read_dataset
    from tvcaption.features import descriptor_dim, load_backbone
    from tvcaption.metrics import METRIC_KEYS
    from tvcaption.model import CaptionModel, pad_tokens
    from tvcaption.vocab import Vocab

    started = time.perf_counter()
    if select not in (*METRIC_KEYS, "slots", "loss"):
        raise ConfigError(f"select {select!r}: choose one of {', '.join(METRIC_KEYS)}, slots or loss")
    if config.optimizer not in ("rmsprop", "adam"):
        raise ConfigError(f"[train] optimizer: unknown {config.optimizer!r}; use rmsprop or adam")
    if config.epochs < 1 or config.batch_size < 1:
        raise ConfigError("[train] epochs and batch_size must be at least 1")
    data = Path(data)
    paths = stem_paths(out)
    if features.threads > 0:
        torch.set_num_threads(features.threads)
    dist, created_group = _setup_distributed(features.device)
    log = _Logger(console, enabled=dist.main)
    try:
        device = _resolve_device(features.device, dist)
        # -- data: clips, vocabulary, tokens ---------------------------------------------------
        clips = read_dataset(data)
        train_clips = split_clips(clips, "train")
        cache_clips = train_clips  # the features are cached for the whole split
        if train_clips and 0 < max_train_clips < len(train_clips):
            train_clips = train_clips[:max_train_clips]
        val_all = split_clips(clips, "val")
        if not train_clips:
            raise TvcaptionError(f"{data}: no clips in the train split; check the dataset's split labels")
        if not val_all:
            raise TvcaptionError(f"{data}: no clips in the val split; training validates every epoch on it")
        val_set = val_all[:val_clips] if val_clips > 0 else val_all

        state_doc, state_tensors = load_state(paths) if resume else (None, None)
        if state_doc is not None:
            vocab = Vocab.from_list(state_doc["vocab"])
            saved_dims = ModelDims.from_dict(state_doc["dims"])
            if state_doc.get("data", {}).get("train_clips") != len(train_clips):
                raise TvcaptionError(f"{paths['state_json']}: saved for another dataset "
                                     f"({state_doc.get('data', {}).get('path')}); resume with the same data")
        else:
            vocab = Vocab.build((c for clip in train_clips for c in clip.captions), config.vocab_size)
            saved_dims = None
        train_tokens = [[vocab.encode(c, config.max_words) for c in clip.captions] for clip in train_clips]
        val_tokens = [[vocab.encode(c, config.max_words) for c in clip.captions] for clip in val_set]

        # -- features (rank 0 builds the cache, the others wait and open it) ------------------
        frames = saved_dims.frames if saved_dims else (dims or ModelDims()).frames
        descriptor = state_doc["features"]["global_descriptor"] if state_doc else features.global_descriptor
        if state_doc:
            features = dataclasses.replace(features, backbone=state_doc["features"]["backbone"])
        cache = Path(cache_dir if cache_dir is not None else features.cache_dir)
        backbone = load_backbone(features, device=device)
        feature_info = {"backbone": backbone.name, "global_descriptor": descriptor, "frames": frames,
                        "image_size": backbone.image_size, "weights": backbone.weights_id}
        t0 = time.perf_counter()
        if dist.main:
            train_feats = load_features(cache_clips, backbone, frames, descriptor, cache, in_ram=in_ram,
                                        batch_size=features.batch_size, progress=progress and log.live)
            val_feats = load_features(val_set, backbone, frames, descriptor, cache, in_ram=in_ram,
                                      batch_size=features.batch_size, progress=progress and log.live)
        if dist.world > 1:
            torch.distributed.barrier()
        if not dist.main:
            train_feats = load_features(cache_clips, backbone, frames, descriptor, cache, in_ram=in_ram, build=False)
            val_feats = None
        if len(train_clips) < len(cache_clips):
            n = len(train_clips)
            train_feats = SplitFeatures(train_clips, train_feats.local[:n] if train_feats.in_ram else train_feats.local,
                                        train_feats.glob[:n], train_feats.in_ram)
        grid, channels = backbone.grid, backbone.channels
        del backbone
        if device.type == "cuda":
            torch.cuda.empty_cache()
        log.line(f"data {data}: {len(train_clips)} train clips, {len(val_set)} val clips"
                 f"{f' (of {len(val_all)})' if len(val_set) < len(val_all) else ''}, vocabulary {len(vocab)}; "
                 f"features {feature_info['backbone']} x {frames} frames ready in {time.perf_counter() - t0:.1f} s "
                 f"({'RAM' if train_feats.in_ram else 'memory map'})")

        # -- model and optimizer ----------------------------------------------------------------
        model_dims = saved_dims or resolve_dims(dims, config, channels, descriptor_dim(descriptor, channels),
                                                len(vocab), grid)
        torch.manual_seed(config.seed + dist.rank)
        model = CaptionModel(model_dims).to(device)
        optimizer = make_optimizer(model.parameters(), config)
        start_epoch, step, history = 1, 0, []
        best_score, best_epoch = None, 0
        if state_doc is not None:
            model.load_state_dict({k[len("model."):]: v for k, v in state_tensors.items() if k.startswith("model.")})
            optimizer.load_state_dict(_unflatten_optimizer(state_tensors, state_doc["optimizer"]))
            for group in optimizer.param_groups:  # the configured lr wins over the saved one
                group["lr"] = config.lr
            start_epoch = int(state_doc["epoch"]) + 1
            step = int(state_doc["step"])
            history = list(state_doc.get("history", []))
            saved_best = state_doc.get("best", {})
            if saved_best.get("key") == select:  # a best by another key does not compare
                best_score, best_epoch = saved_best.get("score"), int(saved_best.get("epoch", 0))
            _restore_rng(state_doc, state_tensors, dist.rank, config.seed, start_epoch)
            log.line(f"resumed from {paths['state_json']} after epoch {start_epoch - 1} (step {step})")
            del state_tensors
        objective = _Objective(model)
        if dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            objective = DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None)
        amp_dtype = None
        if amp and device.type == "cuda":
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif amp and device.type == "cpu" and cpu_has_native_bf16():
            amp_dtype = torch.bfloat16  # a training step 2.3x faster than fp32 on AVX512-BF16 (bench/cpu_bf16.py)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

        def autocast():
            return torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()

        n_params = sum(p.numel() for p in model.parameters())
        log.line(f"model {model_dims.pooling}{'+matching' if model_dims.matching else ''}: {n_params / 1e6:.2f} M parameters, "
                 f"hidden {model_dims.hidden}, {config.optimizer} lr {config.lr:g}, batch {config.batch_size}"
                 f"{f' ({dist.world} ranks)' if dist.world > 1 else ''}, device {device}"
                 f"{f' amp {str(amp_dtype).split(chr(46))[-1]}' if amp_dtype else ''}, "
                 f"threads {torch.get_num_threads()}")

        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(range(len(train_feats)), num_replicas=dist.world, rank=dist.rank,
                                     shuffle=True, seed=config.seed, drop_last=False)
        per_rank = max(1, config.batch_size // dist.world)
        counts = [len(t) for t in train_tokens]
        meta_base = {**feature_info, "name": paths["best"].name, "select": select,
                     "train": dataclasses.asdict(config),
                     "data": {"path": str(data), "format": detect_format(data), "train_clips": len(train_clips),
                              "val_clips": len(val_set), "val_total": len(val_all), "captions": sum(counts)}}

        # -- epochs ------------------------------------------------------------------------------
        model.train()
        completed = start_epoch - 1
        for epoch in range(start_epoch, config.epochs + 1):
            t_epoch = time.perf_counter()
            sampler.set_epoch(epoch)
            order = np.fromiter(iter(sampler), dtype=np.int64)
            batches = [order[i:i + per_rank] for i in range(0, len(order), per_rank)]
            if len(batches) > 1 and len(batches[-1]) < 2:  # a lone clip has no negative for eq 27
                batches[-2] = np.concatenate(batches[-2:])
                batches.pop()
            choice = caption_choice(counts, config.seed, epoch)
            sums = torch.zeros(4, dtype=torch.float64, device=device)  # total, caption, matching (x clips), clips
            with log.progress(f"epoch {epoch}/{config.epochs}", len(batches), enabled=progress) as bar:
                for idx in batches:
                    lr = get_lr(step, config.lr, warmup)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    local, glob = train_feats.batch(idx, device, pin=True)
                    tokens, lengths = pad_tokens([train_tokens[i][choice[i]] for i in idx], device)
                    with autocast():
                        total, caption, matching = objective(local, glob, tokens, lengths)
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(total).backward()
                    if config.grad_clip > 0:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    step += 1
                    n = len(idx)  # accumulate on the device: no host sync per step
                    sums += torch.stack([total.detach() * n, caption * n, matching * n, total.new_tensor(n)]).double()
                    bar.advance(lambda: float(sums[0] / sums[3]))
            if dist.world > 1:  # the mean over all ranks' clips
                torch.distributed.all_reduce(sums)
            seen = int(sums[3])
            train_losses = (sums[:3] / max(1, seen)).tolist()
            t_train = time.perf_counter() - t_epoch

            # -- validate and save (rank 0) --------------------------------------------------
            row: dict[str, Any] = {"epoch": epoch, "step": step, "lr": lr, "train_loss": float(train_losses[0]),
                                   "train_caption": float(train_losses[1]), "train_matching": float(train_losses[2]),
                                   "train_seconds": round(t_train, 3), "clips_per_second": round(seen / max(t_train, 1e-9), 2)}
            if dist.main:
                t_val = time.perf_counter()
                val = validate(model, vocab, val_feats, val_tokens, config.batch_size, device, config.seed,
                               config.max_words, autocast)
                row["val"] = {k: float(v) for k, v in val.items()}
                row["val_seconds"] = round(time.perf_counter() - t_val, 3)
                score = float(val[select])
                improved = is_better(select, score, best_score)
                if improved:
                    best_score, best_epoch = score, epoch
                    meta = {**meta_base, "epoch": epoch, "metrics": {**row["val"], "split": "val", "clips": len(val_set)}}
                    save_checkpoint(paths["best"], model, vocab, meta)
                row["best"] = improved
                history.append(row)
                save_checkpoint(paths["last"], model, vocab,
                                {**meta_base, "epoch": epoch, "metrics": {**row["val"], "split": "val", "clips": len(val_set)}})
                save_state(paths, model, optimizer, vocab, {
                    "epoch": epoch, "step": step, "history": history, "features": feature_info,
                    "best": {"key": select, "score": best_score, "epoch": best_epoch},
                    "train_config": dataclasses.asdict(config), "data": meta_base["data"]})
                row["seconds"] = round(time.perf_counter() - t_epoch, 3)
                log.epoch(row, config.epochs, select)
            if dist.world > 1:
                torch.distributed.barrier()
            completed = epoch
        if dist.main and completed < start_epoch:
            log.line(f"nothing to do: {paths['state_json']} already reached epoch {start_epoch - 1} of {config.epochs}")
        return TrainResult(
            checkpoint=Path(f"{paths['best']}.json"), last=Path(f"{paths['last']}.json"),
            state=paths["state_json"], best_epoch=best_epoch,
            best_score=float(best_score) if best_score is not None else float("nan"), select=select,
            epochs=completed,
            history=tuple(history), seconds=time.perf_counter() - started)
    finally:
        if created_group:
            torch.distributed.destroy_process_group()


# ---------------------------------------------------------------------------------------------
# Output: one line per epoch, a rich progress bar while it runs
# ---------------------------------------------------------------------------------------------
class _Logger:
    def __init__(self, console: Console | None, enabled: bool):
        from rich.console import Console

        self.console = console or Console()
        self.enabled = enabled

    @property
    def live(self) -> bool:
        return self.enabled and self.console.is_terminal

    def line(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)  # paths may hold brackets

    def epoch(self, row: dict[str, Any], epochs: int, select: str) -> None:
        val = row.get("val", {})
        shown = [("B4", "Bleu_4"), ("M", "METEOR"), ("R", "ROUGE_L"), ("C", "CIDEr"), ("slots", "slots"),
                 ("kind", "single_kind"), ("colour", "single_colour"), ("action", "single_action")]
        metrics = " ".join(f"{label} {val[k]:.3f}" for label, k in shown if k in val)
        self.line(
            f"epoch {row['epoch']}/{epochs} | train {row['train_loss']:.3f} (cap {row['train_caption']:.3f} "
            f"match {row['train_matching']:.3f}) | val {val.get('loss', float('nan')):.3f} {metrics} | "
            f"lr {row['lr']:.1e} | {row['seconds']:.1f} s (train {row['train_seconds']:.1f} s, "
            f"{row['clips_per_second']:.1f} clips/s; val {row.get('val_seconds', 0):.1f} s)"
            f"{f' | best {select}' if row.get('best') else ''}")

    def progress(self, description: str, total: int, enabled: bool):
        return _Bar(self.console, description, total, enabled and self.live)


class _Bar:
    def __init__(self, console, description: str, total: int, enabled: bool):
        self.enabled = enabled
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn(),
                                      console=console, transient=True)
            self._task = self._progress.add_task(description, total=total, loss=float("nan"))

    def __enter__(self) -> _Bar:
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._progress.stop()

    def advance(self, loss: Callable[[], float]) -> None:
        """One batch done; ``loss()`` (the running mean, a host sync on CUDA) is read every 10 batches."""
        if self.enabled:
            self._steps = getattr(self, "_steps", 0) + 1
            fields = {"loss": loss()} if self._steps % 10 == 1 else {}
            self._progress.update(self._task, advance=1, **fields)
