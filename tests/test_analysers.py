"""The analyser interface end to end: an analyser written here, in the test, with no change to
the pipeline, the store, search or export, is run by ``index``, found by ``search`` and written
by ``export``; and the built-in caption and tags go through the same interface."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tvcaption.analysers import Analyser, AnalyserContext, SceneInput, analyser_class, load_analysers
from tvcaption.cli import app
from tvcaption.errors import ConfigError
from tvcaption.scene import Annotation, Scene

pytest_plugins = ["toymodel"]
runner = CliRunner()


class Brightness(Analyser):
    """Says how light a scene is, from its frames: a word search finds and export writes."""

    name = "brightness"
    needs = frozenset({"frames"})

    def analyse(self, batch):
        out = []
        for item in batch:
            level = float(np.mean(item.frames))
            word = "luminous" if level > 100 else "gloomy"
            out.append([Annotation(self.name, "light", f"{word} picture", score=level / 255, data={"mean": round(level, 1)})])
        return out


def test_an_analyser_from_outside_is_indexed_searched_and_exported(toy, tmp_path):
    from toymodel import make_clip

    media = tmp_path / "media"
    media.mkdir()
    bright = make_clip(media / "bright.mp4", source="color=c=white:size=96x64:rate=10:duration=1")
    dark = make_clip(media / "dark.mp4", source="color=c=black:size=96x64:rate=10:duration=1")
    config = toy.config(tmp_path / "cfg", f"sqlite:///{tmp_path / 'a.db'}")
    config.write_text(config.read_text() + '[index]\nanalysers = ["caption", "tags", "test_analysers:Brightness"]\n')

    assert runner.invoke(app, ["index", str(media), "--config", str(config)]).exit_code == 0
    found = runner.invoke(app, ["search", "luminous", "--json", "--config", str(config)])
    assert found.exit_code == 0, found.output
    hits = json.loads(found.output)
    assert [h["recording"] for h in hits] == [str(bright.resolve())]
    assert any(a["analyser"] == "brightness" for a in hits[0]["annotations"])
    shown = runner.invoke(app, ["search", "luminous", "--config", str(config)]).output
    assert "light: luminous picture" in shown, shown
    gloomy = json.loads(runner.invoke(app, ["search", "gloomy", "--json", "--config", str(config)]).output)
    assert [h["recording"] for h in gloomy] == [str(dark.resolve())]

    out = tmp_path / "out"
    assert runner.invoke(app, ["export", str(bright), "--format", "json", "--out", str(out), "--config", str(config)]).exit_code == 0
    (row,) = json.loads((out / "bright.tvcaption.json").read_text())
    notes = {a["analyser"]: a for a in row["annotations"]}
    assert notes["brightness"]["text"] == "luminous picture" and notes["brightness"]["data"]["mean"] > 200
    assert notes["caption"]["kind"] == "caption" and row["text"] == notes["caption"]["text"]
    assert row["tags"] == [a["text"] for a in row["annotations"] if a["kind"] == "tag"]


def test_caption_and_tags_are_analysers(toy, tmp_path):
    from tvcaption.config import load_config, with_overrides
    from tvcaption.engine import Engine
    from toymodel import make_clip
    from tvcaption.pipeline import caption_recording

    config = load_config(toy.config(tmp_path / "cfg", f"sqlite:///{tmp_path / 'a.db'}"))
    engine = Engine(config)
    assert [a.name for a in engine.analysers] == ["caption", "tags", "text", "speech", "meaning"]  # the default
    assert engine.model_name.startswith(f"{toy.model.name}+tags+text:rapidocr-")
    assert engine.model_name.endswith("+speech+meaning:all-MiniLM-L6-v2")
    engine = Engine(with_overrides(config, "index", analysers=("caption", "tags")))
    assert engine.model_name == toy.model.name  # caption and tags: the caption model's name, as before analysers
    result = caption_recording(make_clip(tmp_path / "c.mp4"), config, engine)
    (scene,) = result.scenes
    assert [a.analyser for a in scene.annotations][:1] == ["caption"] and scene.caption
    assert all(a.kind == "tag" and a.field == "labels" for a in scene.annotations[1:])
    assert list(scene.tag_scores) == sorted(scene.tag_scores, reverse=True)


def test_another_analyser_set_is_another_identity(toy, tmp_path):
    from tvcaption.config import load_config, with_overrides
    from tvcaption.engine import Engine

    config = load_config(toy.config(tmp_path / "cfg", f"sqlite:///{tmp_path / 'a.db'}"))
    engine = Engine(with_overrides(config, "index", analysers=("caption", "tags", "test_analysers:Brightness")))
    assert engine.model_name == f"{toy.model.name}+tags+brightness"
    assert engine.needs == {"frames", "features"}


def test_unknown_or_wrong_analysers_are_one_line():
    with pytest.raises(ConfigError, match="unknown analyser 'nope'"):
        analyser_class("nope")
    with pytest.raises(ConfigError, match="cannot load"):
        analyser_class("no.such.module:Thing")
    with pytest.raises(ConfigError, match="not an Analyser"):
        analyser_class("test_analysers:test_unknown_or_wrong_analysers_are_one_line")
    with pytest.raises(ConfigError, match="empty"):
        from tvcaption.config import Config

        load_analysers((), AnalyserContext(Config()))


def test_scene_annotations_are_added_not_copied():
    scene = Scene(1.0, 2.5, 25, 62)
    more = scene.with_annotations([Annotation("caption", "caption", "a man sings", -0.5)])
    assert scene.annotations == () and more.caption == "a man sings" and more.start == 1.0 and more.duration == 1.5
    with pytest.raises(ValueError, match="field"):
        Annotation("x", "y", "z", field="everywhere")
    item = SceneInput(scene, np.zeros(2))
    assert item.frames is None and item.features is None


class FrameShapes(Analyser):
    """Records the size of the frames it is given (the pipeline picks the size by what analysers read)."""

    name = "shapes"
    needs = frozenset({"frames"})
    seen: list = []

    def analyse(self, batch):
        FrameShapes.seen += [item.frames.shape[1:3] for item in batch]
        return [[] for _ in batch]


def test_the_cnn_reads_frames_as_coded_and_analysers_see_them_as_shown(scenes_dir):
    """Whatever else runs: adding an analyser that reads pictures (OCR) must not change what the
    CNN reads, so not the captions and tags either."""
    from tvcaption.config import Config, with_overrides
    from tvcaption.engine import Engine
    from tvcaption.pipeline import captions_of
    from tvcaption.video import probe

    info = probe(scenes_dir / "issue-195-aspect-ratio.mp4")  # coded 704x576, shown 1024x576 (SAR 16:11)
    cnn_inputs: list = []
    said = []
    for analysers in (["caption", "tags", "test_analysers:FrameShapes"], ["caption", "tags"]):
        for single_pass in (True, False):
            config = with_overrides(Config(), "index", analysers=analysers, single_pass=single_pass)
            engine = Engine(config)
            features = engine.features
            engine.features = lambda frames: cnn_inputs.append(frames.shape[1:3]) or features(frames)
            cnn_inputs.clear()
            FrameShapes.seen = []
            scenes = captions_of(info, config, engine)
            assert cnn_inputs and set(cnn_inputs) == {(576, 704)}  # as coded, always
            if "test_analysers:FrameShapes" in analysers:  # OCR and the like see the picture as shown
                assert FrameShapes.seen and set(FrameShapes.seen) == {(576, 1024)}
            said.append([(s.start, s.caption, s.tags) for s in scenes])
    assert all(s == said[0] for s in said[1:])
