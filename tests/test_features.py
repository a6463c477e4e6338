"""Backbones on real photos, the ResNet-152 weights path, e(V), labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from needs import need_module
from tvcaption.config import ConfigError, FeaturesConfig
from tvcaption.errors import TvcaptionError
from tvcaption.features import (
    Backbone,
    descriptor_dim,
    extract,
    global_descriptor,
    imagenet_labels,
    load_backbone,
    register_descriptor,
    top_labels,
)
from tvcaption.features import descriptor
from tvcaption.features.backbones import zip_state_dict

skdata = need_module("skimage.data", "the photos these tests classify")


@pytest.fixture(scope="module")
def lite0() -> Backbone:
    return load_backbone(FeaturesConfig(), device="cpu")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {"chelsea": skdata.chelsea(), "coffee": skdata.coffee(), "rocket": skdata.rocket()}


def test_lite0_is_frozen_channels_last_on_cpu(lite0: Backbone) -> None:
    assert (lite0.name, lite0.channels, lite0.grid, lite0.image_size) == ("efficientnet_lite0", 1280, 7, 224)
    assert not lite0.training and lite0.device.type == "cpu"
    assert all(not p.requires_grad for p in lite0.parameters())
    stem = lite0.trunk.m.conv_stem.weight
    assert stem.is_contiguous(memory_format=torch.channels_last)


def test_lite0_classifies_real_photos(lite0: Backbone, photos: dict[str, np.ndarray]) -> None:
    expected = {
        "chelsea": {"tabby", "tiger cat", "Egyptian cat"},
        "coffee": {"espresso", "cup", "coffee mug"},
        "rocket": {"missile", "projectile", "space shuttle"},
    }
    for name, image in photos.items():  # different sizes: one frame per call
        local = extract(lite0, image[None], batch_size=8)
        assert local.shape == (1, 7, 7, 1280) and local.dtype == torch.float32
        labels = [label for label, _ in top_labels(lite0.classify(local), k=5)[0]]
        assert expected[name] & set(labels), (name, labels)
        if name != "rocket":  # an unambiguous photo: the top-1 is right
            assert labels[0] in expected[name], (name, labels)


def test_extract_batches_and_returns_a_normal_tensor(lite0: Backbone, photos: dict[str, np.ndarray]) -> None:
    frames = np.stack([photos["chelsea"]] * 3)
    frames[1] = frames[1, ::-1]  # a different frame in the middle
    whole = extract(lite0, frames, batch_size=3)
    split = extract(lite0, frames, batch_size=2)  # 2 + 1
    assert split.shape == (3, 7, 7, 1280)
    torch.testing.assert_close(whole, split, atol=1e-4, rtol=1e-4)
    assert not whole.is_inference()  # usable as an input when training without the cache
    torch.testing.assert_close(whole[0], whole[2])
    assert extract(lite0, frames[:0], 4).shape == (0, 7, 7, 1280)


def test_classify_equals_the_full_timm_forward(lite0: Backbone, photos: dict[str, np.ndarray]) -> None:
    image = photos["coffee"][None]
    with torch.inference_mode():
        full = lite0.trunk.m(lite0.preprocess(image))
        torch.testing.assert_close(lite0.classify(lite0(image)), full, atol=1e-4, rtol=1e-4)


def test_zip_state_dict_refuses_mismatched_shapes() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    good = {f"x{i}": v.clone() for i, v in enumerate(model.state_dict().values())}
    assert list(zip_state_dict(model, good, "w.pth")) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    bad = dict(good, x1=torch.zeros(5))
    with pytest.raises(TvcaptionError, match="x1"):
        zip_state_dict(model, bad, "w.pth")
    with pytest.raises(TvcaptionError, match="3 tensors"):
        zip_state_dict(model, dict(list(good.items())[:3]), "w.pth")


@pytest.mark.parametrize("weights", ["", "missing.pth"])
def test_resnet152_without_weights_is_refused(tmp_path, weights: str) -> None:
    path = str(tmp_path / weights) if weights else ""
    with pytest.raises(TvcaptionError) as err:
        load_backbone(FeaturesConfig(backbone="resnet152", resnet152_weights=path), device="cpu")
    message = str(err.value)
    assert "\n" not in message
    assert "set [features] resnet152_weights to a torchvision ResNet-152 .pth file" in message


def test_resnet152_rejects_a_foreign_state_dict(tmp_path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(TvcaptionError, match="not a ResNet-152 state dict"):
        load_backbone(FeaturesConfig(backbone="resnet152", resnet152_weights=str(path)), device="cpu")


def test_resnet152_with_a_weights_file(tmp_path) -> None:
    import torchvision

    path = tmp_path / "resnet152.pth"
    state = {k: v.half() if v.is_floating_point() else v for k, v in torchvision.models.resnet152().state_dict().items()}
    torch.save(state, path)
    del state
    backbone = load_backbone(FeaturesConfig(backbone="resnet152", resnet152_weights=str(path)), device="cpu")
    assert (backbone.name, backbone.channels) == ("resnet152", 2048)
    assert backbone.weights_id.startswith("resnet152-")
    frame = np.random.default_rng(0).integers(0, 256, (1, 96, 128, 3), dtype=np.uint8)
    local = extract(backbone, frame, batch_size=1)
    assert local.shape == (1, 7, 7, 2048) and torch.isfinite(local).all()
    assert backbone.classify(local).shape == (1, 1000)


def test_unknown_backbone_and_device_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="efficientnet_lite0"):
        load_backbone(FeaturesConfig(backbone="vgg"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            load_backbone(FeaturesConfig(device="cuda"))


def test_global_descriptors() -> None:
    local = torch.arange(2 * 3 * 7 * 7 * 4, dtype=torch.float32).reshape(2, 3, 7, 7, 4)
    mean = global_descriptor("mean", local)
    assert mean.shape == (2, descriptor_dim("mean", 4)) == (2, 4)
    torch.testing.assert_close(mean, local.reshape(2, -1, 4).mean(1))
    meanmax = global_descriptor("meanmax", local.half())
    assert meanmax.shape == (2, descriptor_dim("meanmax", 4)) == (2, 8) and meanmax.dtype == torch.float32
    torch.testing.assert_close(meanmax[:, 4:], local.reshape(2, -1, 4).amax(1))
    with pytest.raises(ConfigError, match="meanmax"):
        descriptor_dim("i3d", 4)


def test_a_descriptor_can_be_registered(monkeypatch) -> None:
    monkeypatch.setattr(descriptor, "DESCRIPTORS", dict(descriptor.DESCRIPTORS))
    register_descriptor("first_frame_test", lambda x: x[:, 0].mean(dim=(1, 2)), lambda c: c)
    local = torch.randn(2, 3, 7, 7, 5)
    assert global_descriptor("first_frame_test", local).shape == (2, descriptor_dim("first_frame_test", 5))


def test_imagenet_labels() -> None:
    labels = imagenet_labels()
    assert len(labels) == 1000 == len(set(labels))
    assert labels[0] == "tench" and labels[281] == "tabby" and labels[967] == "espresso"
    labels.append("x")  # a copy: the shipped list is untouched
    assert len(imagenet_labels()) == 1000


def test_top_labels_respects_min_score() -> None:
    logits = torch.full((1, 1000), -10.0)
    logits[0, 967] = 10.0
    assert top_labels(logits, k=3, min_score=0.5) == [[("espresso", pytest.approx(1.0, abs=1e-3))]]
