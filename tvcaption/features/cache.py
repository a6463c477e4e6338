"""On-disk feature cache for training: backbone local features computed once per clip.

Layout, one folder per key under ``cache_dir``::

    cache_dir/<key>/features.npy    float16 (num_clips, T, 7, 7, C), memory-mapped (sparse on creation)
    cache_dir/<key>/manifest.json   version, key fields, clip ids, shape (written last on creation)
    cache_dir/<key>/done.npy        bool (num_clips,): clips whose features are on disk

``key`` is a hash of the cache format version, the backbone (name and weights), frames per clip,
image size, feature shape and the ordered clip list: change any of them and a fresh folder is
used (older folders stay until :func:`remove_stale`). A clip is marked done only in ``flush()``,
after its features were flushed, and ``done.npy`` is replaced atomically, so an interrupted
extraction resumes at the first clip not flushed. One writer at a time per folder.

Global descriptors are not stored: compute them from the local features at load time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tvcaption.errors import TvcaptionError

if TYPE_CHECKING:
    from tvcaption.features.backbones import Backbone

CACHE_VERSION = 1
FEATURES = "features.npy"
MANIFEST = "manifest.json"
DONE = "done.npy"


@dataclass(frozen=True)
class CacheKey:
    backbone: str  # backbone name
    weights: str  # backbone.weights_id
    frames: int  # frames sampled per clip
    image_size: int
    channels: int
    grid: int = 7
    resize: str = "float"  # how frames were resized for the CNN: uint8 on CPU, float on CUDA (Backbone.preprocess)

    @classmethod
    def for_backbone(cls, backbone: Backbone, frames: int) -> CacheKey:
        from tvcaption.features.backbones import resizes_uint8

        resize = "uint8" if resizes_uint8(backbone.device) else "float"
        return cls(backbone.name, backbone.weights_id, int(frames), backbone.image_size, backbone.channels,
                   backbone.grid, resize)

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        return (self.frames, self.grid, self.grid, self.channels)


def source_identity(path: str | os.PathLike[str]) -> str:
    """What says a clip's video is the same file: its absolute path, size and mtime."""
    p = Path(path).absolute()
    try:
        st = p.stat()
    except OSError:
        return f"{p}|missing"
    return f"{p}|{st.st_size}|{st.st_mtime_ns}"


def cache_key(key: CacheKey, clip_ids: Sequence[str], sources: Sequence[str] | None = None) -> str:
    """Folder name of a cache: the key, the ordered clip ids and (when known) each video's identity.

    Clip ids alone are not enough: two SynthTV folders generated with different seeds both
    call their clips ``synth000000``...; their videos differ in path, size or mtime.
    """
    doc: dict[str, Any] = {"version": CACHE_VERSION, "key": dataclasses.asdict(key), "clips": list(clip_ids)}
    if sources is not None:
        doc["sources"] = list(sources)
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        np.save(fh, array)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class FeatureCache:
    """Memory-mapped float16 local features for an ordered list of clips."""

    def __init__(self, path: Path, clip_ids: tuple[str, ...], key: CacheKey) -> None:
        self.path = path
        self.clip_ids = clip_ids
        self.key = key
        self.shape = (len(clip_ids), *key.clip_shape)
        self._index = {c: i for i, c in enumerate(clip_ids)}
        done_file = path / DONE
        self._done = np.load(done_file) if done_file.exists() else np.zeros(len(clip_ids), dtype=bool)
        if self._done.shape != (len(clip_ids),) or self._done.dtype != bool:
            self._done = np.zeros(len(clip_ids), dtype=bool)
        self._pending: set[int] = set()
        self._mm: np.memmap | None = None
        self._writable = False

    # -- opening --------------------------------------------------------------------------------
    @classmethod
    def open(cls, cache_dir: str | Path, clip_ids: Sequence[str], key: CacheKey,
             videos: Sequence[str | os.PathLike[str]] | None = None) -> FeatureCache:
        """Open the cache for these clips and key under ``cache_dir``, creating it if needed.

        ``videos`` (the clips' files, in order) tie the cache to those files: another file under the
        same clip id (a dataset regenerated, a video replaced) gets a fresh cache.
        """
        clip_ids = tuple(str(c) for c in clip_ids)
        if len(set(clip_ids)) != len(clip_ids):
            raise ValueError("clip ids must be unique")
        if videos is not None and len(videos) != len(clip_ids):
            raise ValueError("clip_ids and videos must have the same length")
        sources = [source_identity(v) for v in videos] if videos is not None else None
        path = Path(cache_dir) / cache_key(key, clip_ids, sources)
        shape = [len(clip_ids), *key.clip_shape]
        manifest = {
            "version": CACHE_VERSION, "key": dataclasses.asdict(key), "shape": shape,
            "dtype": "float16", "clips": list(clip_ids),
        }
        if sources is not None:
            manifest["sources"] = sources
        if not cls._valid(path, manifest):
            try:
                if path.exists():
                    shutil.rmtree(path)
                path.mkdir(parents=True)
                mm = np.lib.format.open_memmap(path / FEATURES, mode="w+", dtype=np.float16, shape=tuple(shape))
                del mm
                (path / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
            except OSError as exc:
                raise TvcaptionError(f"{path}: cannot create the feature cache ({exc.strerror}); check [features] cache_dir") from None
        return cls(path, clip_ids, key)

    @staticmethod
    def _valid(path: Path, manifest: dict[str, Any]) -> bool:
        try:
            found = json.loads((path / MANIFEST).read_text())
            if found != manifest:
                return False
            arr = np.load(path / FEATURES, mmap_mode="r")
            return arr.dtype == np.float16 and list(arr.shape) == manifest["shape"]
        except (OSError, ValueError):
            return False

    def _array(self, writable: bool = False) -> np.memmap:
        if self._mm is None or (writable and not self._writable):
            self._mm = np.load(self.path / FEATURES, mmap_mode="r+" if writable else "r")
            self._writable = writable
        return self._mm

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers reopen the map themselves
        if self._pending:
            raise RuntimeError("flush() the feature cache before sending it to another process")
        state = self.__dict__.copy()
        state["_mm"] = None
        state["_writable"] = False
        return state

    # -- state ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.clip_ids)

    def index(self, clip_id: str) -> int:
        return self._index[clip_id]

    @property
    def done(self) -> np.ndarray:
        """Bool mask of clips whose features are flushed to disk."""
        return self._done.copy()

    def missing(self) -> np.ndarray:
        """Indices of clips whose features are not flushed yet, in order."""
        return np.flatnonzero(~self._done)

    @property
    def complete(self) -> bool:
        return bool(self._done.all())

    # -- writing --------------------------------------------------------------------------------
    def write(self, index: int, feats: Any) -> None:
        """Store one clip's local features (T, 7, 7, C); they count as done after ``flush()``."""
        arr = feats.detach().cpu().numpy() if hasattr(feats, "detach") else np.asarray(feats)
        if arr.shape != self.shape[1:]:
            raise ValueError(f"clip {index}: features of shape {arr.shape}, expected {self.shape[1:]}")
        self._array(writable=True)[index] = arr.astype(np.float16)
        self._pending.add(int(index))

    def flush(self) -> None:
        """Flush written features to disk, then record those clips as done (atomically)."""
        if not self._pending:
            return
        if self._mm is not None and self._writable:
            self._mm.flush()
        done = self._done.copy()
        done[list(self._pending)] = True
        _atomic_save(self.path / DONE, done)
        self._done = done
        self._pending.clear()

    # -- reading --------------------------------------------------------------------------------
    def read(self, indices: int | Sequence[int] | np.ndarray) -> np.ndarray:
        """float16 (len(indices), T, 7, 7, C) for done clips (a copy, not a view of the map)."""
        idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        if idx.size and not self._done[idx].all():
            bad = int(idx[~self._done[idx]][0])
            raise ValueError(f"clip {self.clip_ids[bad]!r} (index {bad}) has no cached features yet")
        return np.asarray(self._array()[idx])

    def close(self) -> None:
        self.flush()
        self._mm = None
        self._writable = False

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remove_stale(cache_dir: str | Path, keep: FeatureCache) -> list[Path]:
    """Delete the other cache folders under ``cache_dir`` (only folders that hold a cache manifest)."""
    removed = []
    for child in Path(cache_dir).iterdir():
        if child.is_dir() and child != keep.path and (child / MANIFEST).is_file() and (child / FEATURES).exists():
            shutil.rmtree(child)
            removed.append(child)
    return removed


# -- building -----------------------------------------------------------------------------------
ReadFn = Callable[[str, int], np.ndarray]  # (video path, frames) -> uint8 (frames, H, W, 3)


def read_clip(path: str, frames: int) -> np.ndarray:
    """``frames`` RGB frames sampled uniformly over the whole clip, read as indexing reads them for
    the CNN (:func:`tvcaption.video.read_cnn_frames`)."""
    from tvcaption import video

    info = video.probe(path)
    return video.read_cnn_frames(info, video.sample_times(0.0, info.duration, frames))


def _prefetched(fn: Callable[[Any], Any], items: Iterable[Any], ahead: int) -> Iterator[tuple[Any, Any]]:
    """(item, fn(item)) in order, with up to ``ahead`` calls running in threads in advance."""
    if ahead <= 0:
        for item in items:
            yield item, fn(item)
        return
    pool = ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="tvcaption-read")
    try:
        it = iter(items)
        queue: deque = deque()
        for item in it:
            queue.append((item, pool.submit(fn, item)))
            if len(queue) >= ahead:
                break
        while queue:
            item, fut = queue.popleft()
            for nxt in it:
                queue.append((nxt, pool.submit(fn, nxt)))
                break
            yield item, fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def build_cache(
    clip_ids: Sequence[str],
    video_paths: Sequence[str | os.PathLike[str]],
    backbone: Backbone,
    frames: int,
    cache_dir: str | Path,
    *,
    batch_size: int = 32,
    read: ReadFn | None = None,
    prefetch: int = 2,
    flush_every: float = 30.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> FeatureCache:
    """Extract and store the features of every clip not cached yet; returns the open cache.

    Clips are decoded ``prefetch`` ahead in threads (``read(path, frames)``; default: uniform
    sampling over the clip with tvcaption.video) and run through the backbone several clips per
    forward pass (about ``batch_size`` frames). Work done is flushed every ``flush_every`` seconds
    and on any exit, including Ctrl-C, so a rerun resumes where this one stopped.
    ``on_progress(done, total)``: clips extracted by this call so far, of the ``total`` it has
    to extract (called with 0 first; not at all when every clip is cached already).
    """
    from tvcaption.features.backbones import extract

    if len(clip_ids) != len(video_paths):
        raise ValueError("clip_ids and video_paths must have the same length")
    read = read or read_clip
    cache = FeatureCache.open(cache_dir, clip_ids, CacheKey.for_backbone(backbone, frames), video_paths)
    todo = [int(i) for i in cache.missing()]
    if not todo:
        return cache
    per_pass = max(1, batch_size // max(1, frames))
    groups = [todo[i : i + per_pass] for i in range(0, len(todo), per_pass)]

    def load(group: list[int]) -> list[np.ndarray]:
        out = []
        for i in group:
            images = np.asarray(read(str(video_paths[i]), frames))
            if images.ndim != 4 or images.shape[0] != frames or images.shape[-1] != 3:
                raise TvcaptionError(
                    f"{video_paths[i]}: got frames of shape {tuple(images.shape)}, expected ({frames}, H, W, 3)"
                )
            out.append(images)
        return out

    report = on_progress or (lambda done, total: None)
    report(0, len(todo))
    done = 0
    last = time.monotonic()
    stream = _prefetched(load, groups, prefetch)
    try:
        for group, clips in stream:
            if len({c.shape for c in clips}) == 1:  # one forward pass for the whole group
                feats = extract(backbone, np.concatenate(clips), batch_size).cpu()
                per_clip = feats.reshape(len(group), frames, *feats.shape[1:])
            else:  # clips of different frame sizes
                per_clip = [extract(backbone, c, batch_size).cpu() for c in clips]
            for i, f in zip(group, per_clip):
                cache.write(i, f)
            done += len(group)
            report(done, len(todo))
            if time.monotonic() - last >= flush_every:
                cache.flush()
                last = time.monotonic()
    finally:
        stream.close()  # stop the reader threads now, not when the traceback is freed
        cache.flush()
    return cache

