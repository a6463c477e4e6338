"""A dataset split's clips and their cached backbone features, shared by training and evaluation.

:func:`split_clips` picks a split's clips, :func:`load_features` gives their local features
(extracted once into :mod:`tvcaption.features.cache`) and e(V), and :func:`generate` captions
every clip of a :class:`SplitFeatures`. torch is imported inside the functions, so picking a
split (:func:`split_clips`) stays light.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tvcaption.errors import TvcaptionError

if TYPE_CHECKING:
    import torch

    from tvcaption.data import Clip
    from tvcaption.vocab import Vocab

VAL_SPLITS = ("val", "validate", "validation", "valid", "dev")
ProgressFn = Callable[[int, int], None]  # (clips done, clips to do)


def split_clips(clips: Sequence[Clip], split: str) -> list[Clip]:
    """Clips of one split; ``val`` also matches MSR-VTT's ``validate`` and other spellings."""
    names = VAL_SPLITS if split in VAL_SPLITS else (split,)
    return [c for c in clips if (c.split or "").lower() in names]


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
        import torch

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

    def head(self, clips: Sequence[Clip]) -> SplitFeatures:
        """The features of the first ``len(clips)`` clips (a view: nothing is copied or read)."""
        n = len(clips)
        return SplitFeatures(list(clips), self.local[:n] if self.in_ram else self.local, self.glob[:n], self.in_ram)


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
    on_progress: ProgressFn | None = None,
    build: bool = True,
) -> SplitFeatures:
    """Cached local features of ``clips`` (extracting the missing ones) and their e(V).

    ``in_ram``: True copies the features into RAM, False reads batches from the memory map,
    None decides by size (RAM when they take less than half the available memory).
    ``on_progress(done, total)``: clips extracted so far, while the cache is being built.
    ``build=False`` only opens a cache another process built (DDP ranks > 0).
    """
    import torch

    from tvcaption.features import CacheKey, FeatureCache, build_cache, global_descriptor

    ids = [c.id for c in clips]
    no_video = [c.id for c in clips if not c.video]
    if no_video:
        raise TvcaptionError(f"clip {no_video[0]!r}: no video file found ({len(no_video)} clips without one); put the "
                             "videos where the dataset reader looks (videos/, YouTubeClips/ next to the captions)")
    if build:
        cache = build_cache(ids, [c.video for c in clips], backbone, frames, cache_dir, batch_size=batch_size,
                            on_progress=on_progress)
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


def generate(model, vocab: Vocab, feats: SplitFeatures, batch_size: int, device: torch.device,
             options: Any = None, on_progress: ProgressFn | None = None) -> dict[str, str]:
    """Captions for every clip of ``feats`` (greedy unless ``options`` says otherwise): clip id -> text.

    ``on_progress(done, total)``: clips captioned so far, after every batch.
    """
    from tvcaption.decoding import DecodingOptions, decode

    options = options or DecodingOptions(beam_size=1)
    out: dict[str, str] = {}
    n = len(feats)
    for lo in range(0, n, batch_size):
        idx = np.arange(lo, min(n, lo + batch_size))
        local, glob = feats.batch(idx, device)
        for i, ids in zip(idx, decode(model, local, glob, options)):
            out[feats.clips[i].id] = vocab.decode(ids)
        if on_progress is not None:
            on_progress(lo + len(idx), n)
    return out
