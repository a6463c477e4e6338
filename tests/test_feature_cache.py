"""The on-disk feature cache: fp16 round trip, resume after interruption, invalidation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from needs import need
from tvcaption.features import Backbone, CacheKey, FeatureCache, build_cache, extract, remove_stale

FRAMES = 3


def tiny_backbone(weights: str = "tiny-1") -> Backbone:
    """A real Backbone with a one-layer trunk: 224x224 -> 7x7x8, deterministic."""
    torch.manual_seed(0)
    trunk = torch.nn.Conv2d(3, 8, kernel_size=32, stride=32)
    head = torch.nn.Linear(8, 1000)
    backbone = Backbone("tiny", trunk, head, channels=8, mean=(0.5,) * 3, std=(0.5,) * 3, weights_id=weights)
    return backbone.eval().requires_grad_(False)


def fake_frames(path: str, frames: int) -> np.ndarray:
    """Deterministic frames per 'video path' (no decoding)."""
    seed = sum(path.encode())
    return np.random.default_rng(seed).integers(0, 256, (frames, 48, 64, 3), dtype=np.uint8)


class Reader:
    def __init__(self, fail_at: str | None = None) -> None:
        self.fail_at = fail_at
        self.calls: list[str] = []

    def __call__(self, path: str, frames: int) -> np.ndarray:
        if path == self.fail_at:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C while this clip decoded
        self.calls.append(path)
        return fake_frames(path, frames)


CLIPS = [f"clip{i}" for i in range(6)]
PATHS = [f"/videos/{c}.mp4" for c in CLIPS]


def key(**changes) -> CacheKey:
    fields = dict(backbone="tiny", weights="tiny-1", frames=FRAMES, image_size=224, channels=8)
    return CacheKey(**{**fields, **changes})


def test_values_round_trip_in_fp16(tmp_path) -> None:
    cache = FeatureCache.open(tmp_path, ["a", "b"], key())
    assert list(cache.missing()) == [0, 1] and not cache.complete
    feats = np.random.default_rng(1).normal(0, 3, (FRAMES, 7, 7, 8)).astype(np.float32)
    cache.write(1, torch.from_numpy(feats))
    cache.flush()
    again = FeatureCache.open(tmp_path, ["a", "b"], key())
    assert again.path == cache.path and list(again.missing()) == [0]
    out = again.read([1])
    assert out.dtype == np.float16 and out.shape == (1, FRAMES, 7, 7, 8)
    np.testing.assert_array_equal(out[0], feats.astype(np.float16))
    with pytest.raises(ValueError, match="'a'"):
        again.read([0, 1])
    with pytest.raises(ValueError, match="expected"):
        again.write(0, np.zeros((FRAMES, 7, 7, 9)))


def test_unflushed_writes_are_not_done(tmp_path) -> None:
    cache = FeatureCache.open(tmp_path, ["a", "b"], key())
    cache.write(0, np.ones((FRAMES, 7, 7, 8)))
    del cache  # a crash before flush
    assert list(FeatureCache.open(tmp_path, ["a", "b"], key()).missing()) == [0, 1]


def test_build_resumes_after_interruption(tmp_path) -> None:
    backbone = tiny_backbone()
    first = Reader(fail_at=PATHS[3])
    with pytest.raises(KeyboardInterrupt):
        build_cache(CLIPS, PATHS, backbone, FRAMES, tmp_path, batch_size=FRAMES, read=first)
    cache = FeatureCache.open(tmp_path, CLIPS, CacheKey.for_backbone(backbone, FRAMES), PATHS)
    assert list(cache.missing()) == [3, 4, 5]  # clips 0-2 were flushed on the way out

    second = Reader()
    calls: list[tuple[int, int]] = []
    cache = build_cache(CLIPS, PATHS, backbone, FRAMES, tmp_path, batch_size=2 * FRAMES, read=second,
                        on_progress=lambda done, total: calls.append((done, total)))
    assert sorted(second.calls) == PATHS[3:]  # only the missing clips were decoded again (in threads)
    assert calls == [(0, 3), (2, 3), (3, 3)]  # two clips per forward pass
    assert cache.complete
    expected = extract(backbone, np.concatenate([fake_frames(p, FRAMES) for p in PATHS]), 8)
    expected = expected.reshape(len(CLIPS), FRAMES, 7, 7, 8).numpy().astype(np.float16)
    np.testing.assert_allclose(cache.read(range(len(CLIPS))).astype(np.float32), expected.astype(np.float32), atol=2e-3)

    third = Reader()  # everything cached: no decoding at all, nothing to report
    build_cache(CLIPS, PATHS, backbone, FRAMES, tmp_path, read=third, on_progress=lambda *a: calls.append(a))
    assert third.calls == [] and calls[-1] == (3, 3)


def test_same_clip_ids_from_other_videos_get_their_own_cache(tmp_path) -> None:
    """Two SynthTV folders (other seeds) both name their clips synth000000...: ids are not enough."""
    import os

    videos_a, videos_b = tmp_path / "a", tmp_path / "b"
    for folder in (videos_a, videos_b):
        folder.mkdir()
        for c in CLIPS:
            (folder / f"{c}.mp4").write_bytes(folder.name.encode())
    a = [str(videos_a / f"{c}.mp4") for c in CLIPS]
    b = [str(videos_b / f"{c}.mp4") for c in CLIPS]
    backbone = tiny_backbone()
    cache_a = build_cache(CLIPS, a, backbone, FRAMES, tmp_path / "cache", read=Reader())
    reader = Reader()
    cache_b = build_cache(CLIPS, b, backbone, FRAMES, tmp_path / "cache", read=reader)
    assert cache_b.path != cache_a.path and sorted(reader.calls) == sorted(b)  # b's videos were read
    assert not np.array_equal(cache_a.read([0]), cache_b.read([0]))
    again = Reader()
    assert build_cache(CLIPS, a, backbone, FRAMES, tmp_path / "cache", read=again).path == cache_a.path
    assert again.calls == []
    st = os.stat(a[0])
    os.utime(a[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a video replaced (or touched)
    assert build_cache(CLIPS, a, backbone, FRAMES, tmp_path / "cache", read=Reader()).path != cache_a.path


def test_key_changes_invalidate(tmp_path) -> None:
    base = FeatureCache.open(tmp_path, CLIPS, key())
    base.write(0, np.zeros((FRAMES, 7, 7, 8)))
    base.flush()
    variants = [
        FeatureCache.open(tmp_path, CLIPS, key(frames=FRAMES + 1)),
        FeatureCache.open(tmp_path, CLIPS, key(weights="tiny-2")),
        FeatureCache.open(tmp_path, CLIPS, key(backbone="other")),
        FeatureCache.open(tmp_path, CLIPS, key(image_size=256)),
        FeatureCache.open(tmp_path, CLIPS[:-1], key()),
        FeatureCache.open(tmp_path, CLIPS[::-1], key()),
    ]
    assert len({v.path for v in variants} | {base.path}) == len(variants) + 1
    assert all(len(v.missing()) == len(v) for v in variants)
    assert variants[0].shape == (len(CLIPS), FRAMES + 1, 7, 7, 8)
    assert list(FeatureCache.open(tmp_path, CLIPS, key()).missing()) == [1, 2, 3, 4, 5]
    removed = remove_stale(tmp_path, base)
    assert len(removed) == len(variants) and [p.name for p in tmp_path.iterdir()] == [base.path.name]


def test_a_damaged_cache_is_rebuilt(tmp_path) -> None:
    cache = FeatureCache.open(tmp_path, ["a"], key())
    cache.write(0, np.ones((FRAMES, 7, 7, 8)))
    cache.flush()
    (cache.path / "features.npy").write_bytes(b"not an array")
    again = FeatureCache.open(tmp_path, ["a"], key())
    assert list(again.missing()) == [0]


def test_cache_pickles_for_dataloader_workers(tmp_path) -> None:
    cache = FeatureCache.open(tmp_path, ["a", "b"], key())
    cache.write(0, np.full((FRAMES, 7, 7, 8), 2.5))
    with pytest.raises(RuntimeError, match="flush"):
        pickle.dumps(cache)
    cache.flush()
    cache.read([0])
    clone = pickle.loads(pickle.dumps(cache))
    assert float(clone.read(0)[0, 0, 0, 0, 0]) == 2.5


def test_build_from_real_msvd_clips(shared_data, tmp_path) -> None:
    videos = sorted((shared_data / "captioned" / "msvd").glob("*.avi"))[:2]
    need(len(videos) == 2, f"two MSVD clips (*.avi) not found in {shared_data / 'captioned' / 'msvd'}")
    backbone = tiny_backbone()
    ids = [v.stem for v in videos]
    cache = build_cache(ids, [str(v) for v in videos], backbone, 2, tmp_path)
    assert cache.complete and cache.shape == (2, 2, 7, 7, 8)
    feats = cache.read([0, 1]).astype(np.float32)
    assert np.isfinite(feats).all() and not np.allclose(feats[0], feats[1])


def test_cache_key_says_which_resize_made_the_features() -> None:
    """On CPU frames are resized on their uint8 pixels, on CUDA in float: their features differ by
    rounding, so a cache made by one is not taken for the other's."""
    from types import SimpleNamespace

    from tvcaption.features.cache import cache_key

    cpu = SimpleNamespace(name="tiny", weights_id="tiny-1", image_size=224, channels=8, grid=7, device=torch.device("cpu"))
    cuda = SimpleNamespace(**{**vars(cpu), "device": torch.device("cuda")})
    on_cpu, on_cuda = CacheKey.for_backbone(cpu, FRAMES), CacheKey.for_backbone(cuda, FRAMES)
    assert (on_cpu.resize, on_cuda.resize) == ("uint8", "float")
    assert cache_key(on_cpu, CLIPS) != cache_key(on_cuda, CLIPS)
