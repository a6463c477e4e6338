"""The exported backbone, run by ONNX Runtime and by OpenVINO, against the PyTorch one it is
exported from.

Stated tolerance: on real frames the local features differ by at most 1e-3 absolute (float32
rounding in other kernels; they range over about 0..6, measured max difference ~5e-5), the
ImageNet top-5 tags are the same, and the shipped model writes identical captions on fresh
SynthTV test clips from either runtime's features.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ATOL = 1e-3


@pytest.fixture(scope="module")
def reference():
    from tvcaption.config import FeaturesConfig
    from tvcaption.features import load_backbone

    return load_backbone(FeaturesConfig(device="cpu", threads=1), device="cpu")


@pytest.fixture(scope="module", params=["onnx", "openvino"])
def backbones(request, reference):
    from tvcaption.config import FeaturesConfig
    from tvcaption.features.onnx_backbone import load_onnx_backbone

    exported = load_onnx_backbone(FeaturesConfig(device="cpu", threads=1), request.param)
    assert exported.runtime == request.param
    return reference, exported


def test_onnx_features_and_tags_match_pytorch_on_real_frames(backbones, scenes_dir):
    from tvcaption.features import extract
    from tvcaption.features.cache import read_clip

    reference, onnx = backbones
    clips = ("bikes.mp4", "counter.mp4", "testvideo.mp4", "bigbuckbunny.mp4")
    frames = [read_clip(str(scenes_dir / c), 6) for c in clips]  # each its own size
    ref = torch.cat([extract(reference, f, batch_size=6) for f in frames])
    got = torch.cat([extract(onnx, f, batch_size=4) for f in frames])  # other batch boundaries: same result
    assert got.shape == ref.shape and got.dtype == torch.float32
    diff = (got - ref).abs().max().item()
    print(f"max |{onnx.runtime} - torch| = {diff:.2e} over {len(ref)} frames, features up to {ref.abs().max().item():.2f}")
    assert diff <= ATOL
    top_ref = reference.classify(ref).topk(5).indices
    top_got = onnx.classify(got).topk(5).indices
    assert torch.equal(top_ref, top_got)


def test_openvino_streams_return_every_frame_in_order(scenes_dir):
    """Several frames run at once in OpenVINO (``[features] streams``) and finish in any order: the
    features come back in the frames' order, equal to one stream's (each stream runs the same
    single-thread kernels)."""
    pytest.importorskip("openvino")
    from tvcaption.config import FeaturesConfig
    from tvcaption.features.cache import read_clip
    from tvcaption.features.onnx_backbone import load_onnx_backbone

    frames = read_clip(str(scenes_dir / "bikes.mp4"), 7)
    one = load_onnx_backbone(FeaturesConfig(device="cpu", threads=1, streams=1), "openvino")(frames)
    three = load_onnx_backbone(FeaturesConfig(device="cpu", threads=1, streams=3), "openvino")(frames)
    assert three.shape == one.shape == (7, 7, 7, 1280)
    assert (three - one).abs().max().item() <= 1e-6
    assert (one[0] - one[-1]).abs().max().item() > 0.1  # the frames differ, so order is checked


def test_shipped_model_captions_identical_from_either_runtime(tmp_path, backbones):
    from tvcaption.analysers import AnalyserContext, SceneInput
    from tvcaption.analysers.caption import CaptionAnalyser
    from tvcaption.config import Config
    from tvcaption.data import generate_synthtv
    from tvcaption.features import extract
    from tvcaption.features.cache import read_clip
    from tvcaption.scene import Scene

    reference, onnx = backbones
    captioner = CaptionAnalyser(AnalyserContext(Config()))
    data = generate_synthtv(tmp_path / "synth", train=0, val=0, test=12, seed=777)
    clips = sorted((data / "videos").glob("*.mp4"))[:12] if (data / "videos").is_dir() else sorted(data.rglob("*.mp4"))[:12]
    assert clips, f"no clips written under {data}"
    inputs = {"torch": [], "onnx": []}
    for clip in clips:
        frames = read_clip(str(clip), captioner.frames)
        for name, backbone in (("torch", reference), ("onnx", onnx)):
            inputs[name].append(SceneInput(Scene(0.0, 1.0, 0, 25), np.zeros(len(frames)), features=extract(backbone, frames)))
    captions = {name: [a[0].text for a in captioner.analyse(batch)] for name, batch in inputs.items()}
    print(json.dumps(captions["onnx"][:3]))
    assert captions["torch"] == captions["onnx"]
    assert len(set(captions["onnx"])) > 1  # real captions of different clips, not one constant


def test_cached_backbone_starts_without_building_the_pytorch_model(tmp_path):
    """The second start loads the cached graph: no timm import, no state dict read."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    probe = ("import sys, time; from tvcaption.config import FeaturesConfig\n"
             "from tvcaption.features.onnx_backbone import load_onnx_backbone, cache_folder\n"
             "t = time.perf_counter(); b = load_onnx_backbone(FeaturesConfig(device='cpu'))\n"
             "import numpy as np; x = b(np.zeros((1, 64, 80, 3), np.uint8))\n"
             "print('timm' in sys.modules, tuple(x.shape), len(list(cache_folder().iterdir())))\n")
    runs = [subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
            for _ in range(2)]
    first, second = (r.stdout.split() for r in runs)
    assert first[0] == "True"  # the first start exported from the PyTorch model
    assert second[0] == "False", runs[1].stderr  # the second did not build it
    assert second[1:] == first[1:]  # same output shape, one cache entry (no second export)


def test_runtime_choice(monkeypatch):
    from tvcaption.config import ConfigError, FeaturesConfig
    from tvcaption.features.backbones import Backbone
    from tvcaption.features.onnx_backbone import OnnxBackbone, load_inference_backbone

    default = load_inference_backbone(FeaturesConfig(device="cpu"))
    assert isinstance(default, OnnxBackbone) and default.runtime == "openvino"  # installed with the package
    assert load_inference_backbone(FeaturesConfig(device="cpu", runtime="onnx")).runtime == "onnx"
    assert isinstance(load_inference_backbone(FeaturesConfig(device="cpu", runtime="torch")), Backbone)
    with pytest.raises(ConfigError, match="runtime"):
        FeaturesConfig(runtime="tensorrt")
    assert dataclasses.replace(FeaturesConfig(), runtime="onnx").runtime == "onnx"


def test_a_read_only_cache_exports_for_the_run_and_leaves_nothing_behind(tmp_path, monkeypatch):
    """Where the cache folder cannot be made (a read-only home), the backbone is exported into a
    temporary folder for this run, loaded, and that folder deleted: runs must not pile up copies."""
    import tempfile

    from tvcaption.config import FeaturesConfig
    from tvcaption.features import onnx_backbone

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setattr(onnx_backbone, "cache_folder", lambda: blocker / "backbones")
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_root))
    backbone = onnx_backbone.load_onnx_backbone(FeaturesConfig(device="cpu", threads=1))
    frames = np.zeros((2, 224, 224, 3), np.uint8)
    assert tuple(backbone(frames).shape)[:3] == (2, 7, 7)
    assert not list(scratch_root.glob(onnx_backbone.SCRATCH_PREFIX + "*"))  # (torch keeps its own caches there)


def test_auto_takes_onnx_runtime_when_openvino_fails_here(monkeypatch):
    """OpenVINO installed but unusable on this machine (a plugin or property refused): `auto`
    indexes with ONNX Runtime instead of stopping."""
    from tvcaption.config import FeaturesConfig
    from tvcaption.errors import TvcaptionError
    from tvcaption.features import onnx_backbone

    def refused(*args, **kwargs):
        raise TvcaptionError("OpenVINO cannot compile the backbone on this CPU")

    monkeypatch.setattr(onnx_backbone, "_openvino_runner", refused)
    backbone = onnx_backbone.load_inference_backbone(FeaturesConfig(device="cpu", threads=1))
    assert backbone.runtime == "onnx"
    assert tuple(backbone(np.zeros((1, 64, 80, 3), np.uint8)).shape)[:3] == (1, 7, 7)
    with pytest.raises(TvcaptionError, match="cannot compile"):  # asked for by name: the error, not a fallback
        onnx_backbone.load_inference_backbone(FeaturesConfig(device="cpu", threads=1, runtime="openvino"))


def test_a_new_export_sweeps_exports_no_run_has_read_for_a_month(tmp_path, monkeypatch):
    """Each torch version or weights file exports anew (~18 MB); the old export goes once no run
    has read it for UNUSED_DAYS. One another installation still reads is touched and stays."""
    import time

    from tvcaption.config import FeaturesConfig
    from tvcaption.features import onnx_backbone

    root = tmp_path / "backbones"
    monkeypatch.setattr(onnx_backbone, "cache_folder", lambda: root)
    old_day = time.time() - (onnx_backbone.UNUSED_DAYS + 5) * 86400
    folders = {name: root / name for name in ("efficientnet_lite0-old", "efficientnet_lite0-shared", ".export-crashed")}
    for name, folder in folders.items():
        folder.mkdir(parents=True)
        if not name.startswith("."):
            (folder / "card.json").write_text("{}")
            os.utime(folder / "card.json", (old_day, old_day))
        os.utime(folder, (old_day, old_day))
    monkeypatch.setattr(onnx_backbone, "_entry_key", lambda config: "efficientnet_lite0-shared")
    assert onnx_backbone._cached_entry(FeaturesConfig(device="cpu")) == folders["efficientnet_lite0-shared"]
    assert (folders["efficientnet_lite0-shared"] / "card.json").stat().st_mtime > time.time() - 60  # read: touched
    monkeypatch.setattr(onnx_backbone, "_entry_key", lambda config: "efficientnet_lite0-new")
    entry = onnx_backbone._cached_entry(FeaturesConfig(device="cpu"))  # a real export
    assert (entry / "trunk.onnx").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["efficientnet_lite0-new", "efficientnet_lite0-shared"]
