"""Confidence and domain: captions of scenes unlike the caption model's training data are stored
marked, hidden from search and subtitles unless asked for, kept in JSON (tvcaption.domain)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from tvcaption.analysers.base import AnalyserContext, SceneInput
from tvcaption.analysers.caption import CaptionAnalyser
from tvcaption.checkpoint import (
    add_domain,
    checkpoint_paths,
    file_sha256,
    load_checkpoint,
    read_manifest,
    save_checkpoint,
)
from tvcaption.cli import app
from tvcaption.config import load_config, with_overrides
from tvcaption.db.search import search
from tvcaption.db.store import Store, connect
from tvcaption.domain import DomainStats, auroc, ledoit_wolf
from tvcaption.scene import Annotation, Scene

pytest_plugins = ["pg", "toymodel"]

runner = CliRunner()


def gaussian(n: int, dims: int = 48, seed: int = 0, shift: float = 0.0) -> np.ndarray:
    """Rows from one fixed correlated Gaussian (the same mixing matrix for every seed)."""
    mixing = np.random.default_rng(99).normal(size=(dims, dims)) / np.sqrt(dims)
    x = np.random.default_rng(seed).normal(size=(n, dims)) @ mixing
    return x + shift


def test_in_distribution_features_lie_below_the_threshold_and_shifted_ones_above():
    stats = DomainStats.fit(gaussian(1500, seed=1), rank=16).with_threshold(gaussian(400, seed=2), 99)
    fresh = stats.distance(gaussian(1000, seed=3))
    assert np.mean(fresh > stats.threshold) <= 0.04  # ~1% expected at the 99th percentile
    shifted = stats.distance(gaussian(200, seed=4, shift=1.0))
    assert np.all(shifted > stats.threshold)
    assert auroc(fresh, shifted) > 0.99
    assert stats.out_of_domain(float(shifted[0])) is True and stats.out_of_domain(float(np.median(fresh))) is False


def test_ledoit_wolf_shrinks_more_when_there_are_fewer_samples():
    few, many = ledoit_wolf(gaussian(30)), ledoit_wolf(gaussian(3000))
    assert 0 < many[2] < few[2] <= 1
    assert np.all(np.linalg.eigvalsh(few[1]) > 0)  # 30 samples in 48 dimensions: still invertible


def test_auroc_counts_ties_as_half():
    assert auroc([0, 1], [2, 3]) == 1.0 and auroc([2, 3], [0, 1]) == 0.0 and auroc([1, 1], [1, 1]) == 0.5


def test_training_writes_statistics_and_they_round_trip_through_a_checkpoint(toy, tmp_path):
    trained = load_checkpoint(toy.model)
    assert trained.domain is not None and trained.domain.threshold is not None  # tvcaption train wrote them
    assert trained.domain.mean.shape == (trained.dims.feature_dim,)
    stem = tmp_path / "copy"
    for src, dst in zip(checkpoint_paths(toy.model), checkpoint_paths(stem)):
        shutil.copy(src, dst)
    stats = DomainStats.fit(gaussian(300, dims=trained.dims.feature_dim), rank=8).with_threshold(
        gaussian(100, dims=trained.dims.feature_dim, seed=5))
    add_domain(stem, stats)
    manifest = read_manifest(stem)
    assert manifest.sha256 == file_sha256(manifest.weights_path)  # the JSON follows the rewritten weights
    loaded = load_checkpoint(stem)
    assert np.allclose(loaded.domain.mean, stats.mean, atol=1e-6)
    assert np.allclose(loaded.domain.components, stats.components, atol=1e-6)
    assert loaded.domain.threshold == pytest.approx(stats.threshold)
    probe = gaussian(5, dims=trained.dims.feature_dim, seed=6, shift=0.5)
    assert np.allclose(loaded.domain.distance(probe), stats.distance(probe), rtol=1e-4)
    for name, tensor in trained.model.state_dict().items():  # the model itself is untouched
        assert bool((loaded.model.state_dict()[name] == tensor).all()), name


def test_a_checkpoint_without_statistics_captions_unmarked_and_says_so_once(toy, tmp_path):
    import logging

    import torch

    stem = tmp_path / "bare"
    captioner = load_checkpoint(toy.model)
    meta = {k: v for k, v in captioner.meta.items() if k != "domain"}
    save_checkpoint(stem, captioner.model, captioner.vocab, meta)
    assert load_checkpoint(stem).domain is None
    config = load_config(toy.config(tmp_path / "cfg", f"sqlite:///{tmp_path / 'x.db'}"))
    config = with_overrides(config, "model", path=str(stem))
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("tvcaption.analysers.caption")  # the CLI stops "tvcaption" propagating
    logger.addHandler(handler)
    try:
        analyser = CaptionAnalyser(AnalyserContext(config))
        analyser.load()  # what the engine's loading thread does
    finally:
        logger.removeHandler(handler)
    assert sum("no training-feature statistics" in r.getMessage() for r in records) == 1
    dims = captioner.dims
    item = SceneInput(Scene(0, 1, 0, 10), np.zeros(2), features=torch.rand(2, dims.grid, dims.grid, dims.feature_dim))
    (annotation,) = analyser.analyse([item])[0]
    assert annotation.field == "text" and "out_of_domain" not in annotation.data
    assert annotation.score == pytest.approx(annotation.data["confidence"], abs=1e-4) and annotation.score <= 0


# --- storage and search: hidden captions on both backends -------------------------------------

def stored_scenes() -> list[Scene]:
    hidden = {"confidence": -0.3, "domain_distance": 9.5, "domain_threshold": 1.4, "out_of_domain": True}
    return [
        Scene(0.0, 4.0, 0, 100).with_annotations([
            Annotation("caption", "caption", "a tiny white horse moves to the right", -0.3, "hidden", hidden),
            Annotation("tags", "tag", "bicycle", 0.8, "labels"),
            Annotation("speech", "speech", "the race starts now", None, "text")]),
        Scene(4.0, 8.0, 100, 200).with_annotations([
            Annotation("caption", "caption", "a grey horse is jumping", -0.2, "text",
                       {"confidence": -0.2, "domain_distance": 1.0, "domain_threshold": 1.4, "out_of_domain": False}),
            Annotation("tags", "tag", "sorrel", 0.7, "labels")]),
    ]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('domain') / 'tv.db'}"
    else:
        request.getfixturevalue("pg_url")
        import pg

        url = pg.cluster().url(pg.cluster().create("domain", pg.migrated_template()))
    engine = connect(url)
    store = Store(engine)
    store.save_result(store.claim("/tv/race.ts", "h", "w"), stored_scenes(), "m")
    return engine


def test_an_out_of_domain_caption_answers_only_a_search_for_all_captions(engine):
    assert [h.start for h in search(engine, "horse")] == [4.0]  # the in-domain caption only
    assert search(engine, "white horse") == []
    assert sorted(h.start for h in search(engine, "horse", all_captions=True)) == [0.0, 4.0]
    (hit,) = search(engine, "white horse", all_captions=True)
    assert hit.of_kind("caption")[0].hidden and hit.of_kind("caption")[0].data["out_of_domain"] is True


def test_the_scene_stays_searchable_by_its_tags_and_speech_without_its_caption(engine):
    for query in ("bicycle", "race starts"):
        (hit,) = search(engine, query)
        assert hit.start == 0.0 and hit.caption == "" and hit.tags == ("bicycle",)
    (hit,) = search(engine, "bicycle", all_captions=True)
    assert hit.caption == "a tiny white horse moves to the right"
    assert search(engine, "bicycle horse") == [] and len(search(engine, "bicycle horse", all_captions=True)) == 1


def test_the_store_gives_the_caption_back_marked(engine):
    store = Store(engine)
    (scene, _) = store.scenes_of(store.find_recording("/tv/race.ts").id)
    (caption,) = scene.of_kind("caption")
    assert caption.hidden and caption.score == pytest.approx(-0.3) and caption.data["domain_distance"] == 9.5


# --- the whole path with a real (toy) model ----------------------------------------------------

@pytest.fixture(scope="module")
def indexed(toy, tmp_path_factory, scenes_dir):
    root = tmp_path_factory.mktemp("domain-index")
    config = toy.config(root, f"sqlite:///{root / 'tv.db'}")
    config.write_text(config.read_text() + '[index]\nanalysers = ["caption", "tags"]\n')
    media = root / "bikes.mp4"
    shutil.copy(scenes_dir / "bikes.mp4", media)
    result = runner.invoke(app, ["index", str(media), "--config", str(config)])
    assert result.exit_code == 0, result.output
    return config, media


def test_a_real_clip_gets_out_of_domain_captions_from_a_synthtv_toy(indexed):
    config, media = indexed
    store = Store(connect(f"sqlite:///{config.parent / 'tv.db'}"))
    scenes = store.scenes_of(store.find_recording(str(media)).id)
    captions = [s.of_kind("caption")[0] for s in scenes]
    assert captions and all(c.hidden and c.data["out_of_domain"] for c in captions)
    assert all(c.data["domain_distance"] > c.data["domain_threshold"] for c in captions)


def test_search_hides_them_and_all_captions_shows_them_marked(indexed):
    config, media = indexed
    store = Store(connect(f"sqlite:///{config.parent / 'tv.db'}"))
    tag = store.scenes_of(store.find_recording(str(media)).id)[0].tags[0].split()[-1]
    shown = runner.invoke(app, ["search", tag, "--config", str(config)])
    assert shown.exit_code == 0 and "bikes.mp4" in shown.output and "out of domain" not in shown.output
    hits = json.loads(runner.invoke(app, ["search", tag, "--json", "--config", str(config)]).output)
    assert hits and all(h["caption"] == "" for h in hits)
    everything = runner.invoke(app, ["search", tag, "--all-captions", "--config", str(config)])
    assert everything.exit_code == 0 and "[out of domain]" in everything.output


def test_srt_leaves_them_out_with_one_stderr_line_and_json_keeps_them(indexed, tmp_path):
    config, media = indexed
    result = runner.invoke(app, ["export", str(media), "--out", str(tmp_path), "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "out of domain" in line]
    assert len(lines) == 1 and "--all-captions" in lines[0] and "left out" in lines[0]
    assert not (tmp_path / "bikes.tvcaption.srt").read_text().strip()  # every caption was out of domain
    assert runner.invoke(app, ["export", str(media), "--out", str(tmp_path / "all"), "--all-captions",
                               "--config", str(config)]).exit_code == 0
    assert "-->" in (tmp_path / "all" / "bikes.tvcaption.srt").read_text()
    assert runner.invoke(app, ["export", str(media), "--format", "json", "--out", str(tmp_path),
                               "--config", str(config)]).exit_code == 0
    rows = json.loads((tmp_path / "bikes.tvcaption.json").read_text())
    captions = [a for row in rows for a in row["annotations"] if a["kind"] == "caption"]
    assert captions and all(a["data"]["out_of_domain"] and "score" in a for a in captions)


def test_the_shipped_model_marks_a_real_clip_out_of_domain(scenes_dir, tmp_path):
    import dataclasses

    from tvcaption.pipeline import caption_recording

    config = load_config(None, env={})
    config = dataclasses.replace(config, index=dataclasses.replace(config.index, analysers=("caption",)),
                                 features=dataclasses.replace(config.features, device="cpu"))
    assert read_manifest(config.model_path).meta.get("domain"), "the shipped model has no domain statistics"
    result = caption_recording(scenes_dir / "bikes.mp4", config)
    captions = [s.of_kind("caption")[0] for s in result.scenes]
    assert len(captions) >= 5 and all(c.data["out_of_domain"] for c in captions)


@pytest.mark.parametrize("beam", [1, 3])
def test_confidence_is_the_decoded_sentence_log_probability_per_token(toy, beam):
    import torch

    from tvcaption.decoding import DecodingOptions, decode_hypotheses, score_sequences

    captioner = load_checkpoint(toy.model)
    d = captioner.dims
    local = torch.rand(4, 2, d.grid, d.grid, d.feature_dim, generator=torch.Generator().manual_seed(beam))
    glob = local.mean(dim=(1, 2, 3))
    hyps = decode_hypotheses(captioner.model, local, glob, DecodingOptions(beam_size=beam, max_len=12))
    for i, h in enumerate(hyps):  # teacher-forced again: <eos> counted when it was generated
        (logp,) = score_sequences(captioner.model, local[i:i + 1], glob[i:i + 1], [h.tokens], eos=h.finished).tolist()
        assert h.confidence == pytest.approx(logp / (len(h.tokens) + h.finished), abs=1e-4)
        assert h.confidence <= 0


def _frames_at(path, times: list[float]) -> np.ndarray:
    """RGB frames of a real recording nearest to ``times`` (PyAV, every frame decoded)."""
    import av

    best: list = [(float("inf"), None)] * len(times)
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            t = float(frame.time)
            for i, want in enumerate(times):
                if abs(t - want) < best[i][0]:
                    best[i] = (abs(t - want), frame)
            if t > max(times) + 1:
                break
    return np.stack([frame.to_ndarray(format="rgb24") for _, frame in best])


def test_black_seconds_of_a_real_clip_are_blank_and_its_pictures_are_not(scenes_dir):
    """testvideo.mp4 fades through black (with a copyright line) between its shots: those frames
    are blank; its shots' frames (a dim one halfway through a fade too) and counter.mp4's large
    digit on a plain card are not; fades.mp4's flat grey is."""
    from tvcaption.blank import blank_share, is_blank

    black = _frames_at(scenes_dir / "testvideo.mp4", [0.3, 6.5, 12.5, 23.6])
    pictures = _frames_at(scenes_dir / "testvideo.mp4", [3.0, 9.0, 15.0, 20.0, 7.4, 13.4])
    assert blank_share(black) == 1.0 and blank_share(pictures) == 0.0
    assert blank_share(_frames_at(scenes_dir / "counter.mp4", [0.5, 1.5, 2.5])) == 0.0
    assert blank_share(_frames_at(scenes_dir / "fades.mp4", [2.0, 5.0, 8.0])) == 1.0
    assert is_blank(blank_share(np.concatenate([black[:4], pictures[:1]])))  # 4 of 5: still blank
    assert not is_blank(blank_share(np.concatenate([black[:3], pictures[:2]])))
    assert blank_share(np.zeros((0, 8, 8, 3), np.uint8)) == 0.0


def test_a_black_scene_gets_its_caption_hidden_as_blank(toy, tmp_path, scenes_dir):
    """Two seconds of black before a real clip, indexed: the black scene's caption is stored
    hidden with ``blank``; no scene with a picture is called blank."""
    import subprocess

    from tvcaption.engine import Engine
    from tvcaption.pipeline import index_paths

    clip = tmp_path / "clips" / "black-then-bikes.mp4"
    clip.parent.mkdir()
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "color=black:size=640x360:rate=25:duration=2",
                    "-i", str(scenes_dir / "bikes.mp4"), "-filter_complex",
                    "[1:v]scale=640:360,setsar=1,fps=25,trim=duration=4[b];[0:v][b]concat=n=2:v=1[v]", "-map", "[v]",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip)], check=True, timeout=120)
    config_path = toy.config(tmp_path, f"sqlite:///{tmp_path / 'tv.db'}")
    config_path.write_text(config_path.read_text() + '[index]\nanalysers = ["caption"]\n')
    config = load_config(config_path)
    assert index_paths([clip.parent], config, engine=Engine(config)).done
    store = Store(connect(f"sqlite:///{tmp_path / 'tv.db'}"))
    scenes = store.scenes_of(store.find_recording(str(clip)).id)
    first = scenes[0].of_kind("caption")[0]
    assert scenes[0].end <= 2.1 and first.hidden and first.data["blank"] is True and first.data["out_of_domain"]
    assert len(scenes) > 1 and not any(s.of_kind("caption")[0].data.get("blank") for s in scenes[1:])
    store.engine.dispose()
