"""What training reads: the splits, the vocabulary and tokens, the cached features, the batches.

* **One reference caption per clip per epoch**, drawn from ``(seed, epoch)``
  (:func:`caption_choice`). An epoch is one pass over the clips (so the epoch count means the
  same on MSVD's ~40 captions per clip and on MSR-VTT's 20), every batch holds distinct videos,
  and the ranking loss (eq 27) gets its negatives only from other videos, as the paper asks. The
  draw is a pure function of ``(seed, epoch)``: a resumed run sees the same captions as an
  uninterrupted one.
* **Features**: the backbone runs once per clip into :mod:`tvcaption.features.cache` (fp16,
  memory-mapped); see :func:`tvcaption.clips.load_features`. Rank 0 builds the cache, the other
  ranks wait and open it.
* **Validation** clips: at most ``val_clips`` of the ``val`` split, the first ones in dataset
  order, so every epoch scores the same clips.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tvcaption.clips import SplitFeatures, load_features, split_clips
from tvcaption.errors import TvcaptionError

if TYPE_CHECKING:
    from tvcaption.config import FeaturesConfig, TrainConfig
    from tvcaption.data import Clip
    from tvcaption.train_devices import Dist
    from tvcaption.train_state import SavedState
    from tvcaption.vocab import Vocab

SplitProgressFn = Callable[[str, int, int], None]  # (split, clips extracted, clips to extract)


def caption_choice(counts: Sequence[int] | np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """Index of the reference caption each clip trains on in ``epoch``: a pure function of (seed, epoch)."""
    counts = np.asarray(counts, dtype=np.int64)
    rng = np.random.default_rng([seed, epoch, 17])
    return np.minimum((rng.random(len(counts)) * counts).astype(np.int64), counts - 1)


def epoch_batches(order: np.ndarray, per_rank: int) -> list[np.ndarray]:
    """This rank's clip order cut into batches; a last batch of one clip joins the one before
    (a lone clip has no negative for eq 27)."""
    batches = [order[i:i + per_rank] for i in range(0, len(order), per_rank)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches[-2] = np.concatenate(batches[-2:])
        batches.pop()
    return batches


@dataclass
class TrainData:
    """The clips of a run and, once :func:`tokenize` ran, their vocabulary and tokens."""

    path: Path
    train: list[Clip]  # the clips trained on
    cached: list[Clip]  # the whole train split: its features are cached together
    val: list[Clip]  # the clips validated on
    val_total: int  # clips in the val split
    vocab: Vocab | None = None
    train_tokens: list[list[list[int]]] = field(default_factory=list)  # clip -> its captions' token ids
    val_tokens: list[list[list[int]]] = field(default_factory=list)

    @property
    def counts(self) -> list[int]:
        """Reference captions per training clip."""
        return [len(t) for t in self.train_tokens]


def read_splits(data: Path, val_clips: int = 0, max_train_clips: int = 0) -> TrainData:
    """The train and val clips of the dataset at ``data``; a clear error when either is empty."""
    from tvcaption.data import read_dataset

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
    return TrainData(data, train_clips, cache_clips, val_set, len(val_all))


def tokenize(data: TrainData, config: TrainConfig, saved: SavedState | None, state_path: Path) -> None:
    """Fill in the vocabulary (built from the training captions, or the saved run's) and the tokens."""
    from tvcaption.vocab import Vocab

    if saved is not None:
        vocab = Vocab.from_list(saved.doc["vocab"])
        if saved.doc.get("data", {}).get("train_clips") != len(data.train):
            raise TvcaptionError(f"{state_path}: saved for another dataset "
                                 f"({saved.doc.get('data', {}).get('path')}); resume with the same data")
    else:
        vocab = Vocab.build((c for clip in data.train for c in clip.captions), config.vocab_size)
    data.vocab = vocab
    data.train_tokens = [[vocab.encode(c, config.max_words) for c in clip.captions] for clip in data.train]
    data.val_tokens = [[vocab.encode(c, config.max_words) for c in clip.captions] for clip in data.val]


@dataclass
class RunFeatures:
    """The features a run trains and validates on, and the backbone facts its checkpoints keep."""

    train: SplitFeatures
    val: SplitFeatures | None  # None on ranks > 0 (only rank 0 validates)
    info: dict[str, Any]  # backbone, global_descriptor, frames, image_size, weights
    grid: int
    channels: int
    seconds: float  # wall time to extract (or open) them


def load_run_features(data: TrainData, features: FeaturesConfig, frames: int, cache: Path, device: torch.device,
                      dist: Dist, in_ram: bool | None = None,
                      on_progress: SplitProgressFn | None = None) -> RunFeatures:
    """Rank 0 extracts what the cache lacks (``on_progress(split, done, total)``) and loads the
    features; under torchrun the other ranks wait for it, then open the cache."""
    from tvcaption.features.onnx_backbone import load_inference_backbone

    descriptor = features.global_descriptor
    backbone = load_inference_backbone(features, device)
    info = {"backbone": backbone.name, "global_descriptor": descriptor, "frames": frames,
            "image_size": backbone.image_size, "weights": backbone.weights_id}
    t0 = time.perf_counter()

    def progress(split: str) -> Callable[[int, int], None] | None:
        return (lambda done, total: on_progress(split, done, total)) if on_progress else None

    val_feats = None
    if dist.main:
        train_feats = load_features(data.cached, backbone, frames, descriptor, cache, in_ram=in_ram,
                                    batch_size=features.batch_size, on_progress=progress("train"))
        val_feats = load_features(data.val, backbone, frames, descriptor, cache, in_ram=in_ram,
                                  batch_size=features.batch_size, on_progress=progress("val"))
    if dist.world > 1:
        torch.distributed.barrier()
    if not dist.main:
        train_feats = load_features(data.cached, backbone, frames, descriptor, cache, in_ram=in_ram, build=False)
    if len(data.train) < len(data.cached):
        train_feats = train_feats.head(data.train)
    grid, channels = backbone.grid, backbone.channels
    del backbone
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return RunFeatures(train_feats, val_feats, info, grid, channels, time.perf_counter() - t0)
