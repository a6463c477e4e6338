"""Self-describing checkpoints: round trip, integrity and clear refusals."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tvcaption.checkpoint import Captioner, load_checkpoint, read_manifest, save_checkpoint
from tvcaption.decoding import DecodingOptions, decode
from tvcaption.errors import CheckpointError
from tvcaption.model import CaptionModel, ModelDims
from tvcaption.vocab import Vocab

META = {
    "backbone": "efficientnet_lite0",
    "global_descriptor": "mean",
    "frames": 3,
    "image_size": 224,
    "metrics": {"val_loss": 1.5},
    "data": {"name": "synthtv", "clips": 2},
}


@pytest.fixture()
def saved(tmp_path: Path):
    vocab = Vocab.build(["a man is singing", "a dog runs on the beach"])
    dims = ModelDims(feature_dim=6, global_dim=5, hidden=12, attention=4, embedding=6, vocab_size=len(vocab), frames=3)
    torch.manual_seed(0)
    model = CaptionModel(dims).eval()
    path = save_checkpoint(tmp_path / "ckpt" / "tiny", model, vocab, META)
    return path, model, vocab


def inputs():
    g = torch.Generator().manual_seed(3)
    return torch.randn(2, 3, 7, 7, 6, generator=g), torch.randn(2, 5, generator=g)


def test_round_trip_gives_identical_outputs(saved):
    path, model, vocab = saved
    assert path.name == "tiny.json" and path.with_suffix(".safetensors").is_file()
    local, glob = inputs()
    tokens = torch.tensor([vocab.encode("a man is singing"), vocab.encode("a dog runs on")])
    with torch.no_grad():
        want = model(local, glob, tokens)
    for ref in (path.with_suffix(""), path, path.with_suffix(".safetensors"), str(path)):
        loaded = load_checkpoint(ref)
        assert isinstance(loaded, Captioner) and not loaded.model.training
        assert loaded.dims == model.dims and loaded.vocab == vocab and loaded.meta == META
        with torch.no_grad():
            assert torch.equal(loaded.model(local, glob, tokens), want)
        opts = DecodingOptions(beam_size=2, max_len=5)
        assert decode(loaded.model, local, glob, opts) == decode(model, local, glob, opts)


def test_json_describes_the_checkpoint(saved):
    path, model, vocab = saved
    doc = json.loads(path.read_text())
    assert doc["format"] == "tvcaption-checkpoint" and doc["format_version"] == 1
    assert doc["dims"] == model.dims.to_dict() and doc["vocab"] == vocab.to_list() and doc["meta"] == META
    assert len(doc["sha256"]) == 64 and doc["created"]
    assert not list(path.parent.glob("*.tmp"))


def test_manifest_reads_without_torch(saved):
    path, _, _ = saved
    code = (
        "import sys; from tvcaption.checkpoint import read_manifest; "
        f"m = read_manifest({str(path)!r}); assert m.dims.hidden == 12, m; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert read_manifest(path).meta["backbone"] == "efficientnet_lite0"


def test_loading_never_unpickles(saved, monkeypatch):
    path, _, _ = saved

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling during checkpoint load")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    load_checkpoint(path)


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_tampered_weights_are_refused(saved):
    path, _, _ = saved
    weights = path.with_suffix(".safetensors")
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    msg = one_line(exc)
    assert str(weights) in msg and "sha256" in msg


def test_missing_files_are_refused(saved, tmp_path):
    path, _, _ = saved
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(tmp_path / "nowhere")
    assert "nowhere.json" in one_line(exc)
    path.with_suffix(".safetensors").unlink()
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert "tiny.safetensors" in one_line(exc) and "not found" in str(exc.value)


@pytest.mark.parametrize("content", ['{"format": "something-else"}', "not json at all", "[1, 2]", '{"a": 1}'])
def test_json_that_is_not_a_checkpoint_is_refused(saved, content):
    path, _, _ = saved
    path.write_text(content)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    msg = one_line(exc)
    assert str(path) in msg and "not a tvcaption checkpoint" in msg


def test_json_for_another_model_is_refused(saved):
    path, _, _ = saved
    doc = json.loads(path.read_text())
    doc["dims"]["hidden"] = 16  # the description of a bigger model next to these weights
    path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    msg = one_line(exc)
    assert "do not match" in msg and "tiny.safetensors" in msg

    doc["dims"]["hidden"] = 12
    doc["dims"]["pooling"] = "avg"  # no attention parameters expected
    path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="unexpected encoder.att"):
        load_checkpoint(path)

    doc["dims"]["pooling"] = "bogus"
    path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(path)


def test_newer_format_is_refused(saved):
    path, _, _ = saved
    doc = json.loads(path.read_text())
    doc["format_version"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="upgrade tvcaption"):
        load_checkpoint(path)


def test_save_refuses_incomplete_meta_and_wrong_vocab(saved, tmp_path):
    _, model, vocab = saved
    with pytest.raises(ValueError, match="image_size"):
        save_checkpoint(tmp_path / "x", model, vocab, {k: v for k, v in META.items() if k != "image_size"})
    with pytest.raises(ValueError, match="vocab_size"):
        save_checkpoint(tmp_path / "x", model, Vocab.build(["a b c"]), META)


def test_renamed_pair_still_loads(saved):
    path, model, _ = saved
    new = path.with_name("renamed.json")
    path.rename(new)
    path.with_suffix(".safetensors").rename(new.with_suffix(".safetensors"))
    assert load_checkpoint(new.with_suffix("")).dims == model.dims


def test_the_checkpoints_backbone_and_descriptor_override_the_config():
    from tvcaption.checkpoint import features_for
    from tvcaption.config import FeaturesConfig

    config = FeaturesConfig(backbone="resnet152", global_descriptor="meanmax", device="cpu", batch_size=7)
    trained = features_for({"backbone": "efficientnet_lite0", "global_descriptor": "mean"}, config)
    assert (trained.backbone, trained.global_descriptor) == ("efficientnet_lite0", "mean")
    assert (trained.device, trained.batch_size) == ("cpu", 7)  # how to run stays the config's
    assert features_for({"frames": 4}, config) == config  # a meta that names no backbone changes nothing
