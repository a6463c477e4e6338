"""``tvcaption model calibrate``: add training-feature statistics to an existing checkpoint.

A checkpoint trained before :mod:`tvcaption.domain` existed has no statistics, so its captions
get no out-of-domain mark. This reads the checkpoint's own training data again (the same
dataset recipe: its backbone, frames and global descriptor come from the checkpoint), extracts
or reuses the cached features of the train split (or its first ``train_clips``) and of the val
split, fits :class:`~tvcaption.domain.DomainStats` on the first, sets the threshold on the
second and writes both into the checkpoint (:func:`~tvcaption.checkpoint.add_domain`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tvcaption.config import FeaturesConfig
from tvcaption.domain import DEFAULT_PERCENTILE, DEFAULT_RANK, DomainStats
from tvcaption.errors import CheckpointError

ProgressFn = Callable[[str, int, int], None]  # (split, clips extracted, clips to extract)


def calibrate(model: str | os.PathLike[str], data: str | os.PathLike[str], *, train_clips: int = 0,
              val_clips: int = 0, percentile: float = DEFAULT_PERCENTILE, rank: int = DEFAULT_RANK,
              features: FeaturesConfig | None = None, cache_dir: str | os.PathLike[str] | None = None,
              on_progress: ProgressFn | None = None) -> DomainStats:
    """Fit the statistics of ``model``'s training features on the dataset at ``data`` and save
    them into the checkpoint; returns them. ``train_clips``/``val_clips``: at most this many
    clips of each split (0 = all)."""
    from tvcaption.checkpoint import add_domain, features_for, read_manifest
    from tvcaption.clips import load_features
    from tvcaption.domain import fit_splits
    from tvcaption.features.onnx_backbone import load_inference_backbone
    from tvcaption.train_data import read_splits

    if not 0 < percentile <= 100:
        raise CheckpointError(f"percentile {percentile}: give a number above 0 and at most 100")
    manifest = read_manifest(model)
    meta = manifest.meta
    features = features_for(meta, features or FeaturesConfig())
    frames = int(meta.get("frames", manifest.dims.frames))
    split = read_splits(Path(data), val_clips, train_clips)
    backbone = load_inference_backbone(features)
    cache = Path(cache_dir if cache_dir is not None else features.cache_dir)

    def progress(name: str):
        return (lambda done, total: on_progress(name, done, total)) if on_progress else None

    loaded = {name: load_features(clips, backbone, frames, features.global_descriptor, cache,
                                  batch_size=features.batch_size, on_progress=progress(name))
              for name, clips in (("train", split.train), ("val", split.val))}
    stats = fit_splits(loaded["train"], loaded["val"], percentile, rank)
    stats = DomainStats(stats.mean, stats.components, stats.variances, stats.residual, stats.threshold,
                        {**(stats.info or {}), "data": str(data), "backbone": backbone.name})
    add_domain(model, stats)
    return stats
