"""``tvcaption train --from-index``: the archive's own corrections and description tracks teach the model.

End to end, in-process: SynthTV broadcasts indexed with the toy model, captions corrected through
the review app's HTTP API (Starlette's TestClient), a description track ``NAME.ad.srt`` beside
another recording, ``train --from-index --init <toy>``, then the same recordings indexed again
with the new model: the model's own captions of the corrected scenes must now say what the
reviewers wrote (words the toy model never knew), and the checkpoint's card must say what it
learned from. Also the vocabulary growth on its own: old rows kept exactly, new rows started as
typical words.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
from needs import need_module
from typer.testing import CliRunner

from tvcaption.cli import app
from tvcaption.db.store import Store, connect

pytest_plugins = ["toymodel"]
need_module("starlette.testclient", "corrections are made through the review app's HTTP API (httpx)")
runner = CliRunner()

# What reviewers write: words the toy SynthTV model has never seen, one sentence per scene
# (at most 7 words: the toy config decodes 8 tokens at most).
CORRECTIONS = ["the presenter smiles behind the studio desk", "a weather map of the northern coast",
               "crowds cheer beside the old harbour", "a violinist bows on a dark stage"]


def run(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def overlap(caption: str, reference: str) -> float:
    """Word F1 of a caption against a reference (bags of words)."""
    from collections import Counter

    got, want = Counter(caption.split()), Counter(reference.split())
    common = sum((got & want).values())
    if not common:
        return 0.0
    precision, recall = common / sum(got.values()), common / sum(want.values())
    return 2 * precision * recall / (precision + recall)


def model_caption(scene) -> str:
    return next(a.text for a in scene.annotations if a.analyser == "caption")


def correct_through_the_app(engine, corrections: list[tuple[int, int, str]], cache: Path) -> None:
    from starlette.testclient import TestClient

    from tvcaption.web.app import create_app

    client = TestClient(create_app(engine, cache_dir=cache, allowed_hosts={"testserver"}, reviewer="ann"),
                        raise_server_exceptions=False)
    client.get("/")
    headers = {"X-CSRF-Token": client.cookies.get("tvcaption_csrf"), "Origin": "http://testserver"}
    for recording_id, index, text in corrections:
        reply = client.post(f"/recordings/{recording_id}/scenes/{index}/caption", json={"text": text}, headers=headers)
        assert reply.status_code == 200, reply.text
        assert reply.json()["caption"] == text


def write_ad_track(broadcast: Path) -> list[str]:
    """``bcast_001.ad.srt``: the broadcast's true scene descriptions, one cue per scene, timed as its scenes."""
    from tvcaption.export import SRTWriter

    truth = json.loads(broadcast.with_suffix(".json").read_text())
    stamp = SRTWriter().format_timestamp
    texts = [scene["captions"][0] for scene in truth["scenes"]]
    blocks = [f"{i}\n{stamp(s['start'])} --> {stamp(s['end'])}\n{text}\n" for i, (s, text)
              in enumerate(zip(truth["scenes"], texts), 1)]
    broadcast.with_name(broadcast.stem + ".ad.srt").write_text("\n".join(blocks), encoding="utf-8")
    return texts


@pytest.fixture(scope="module")
def loop(toy, tmp_path_factory) -> dict:
    """index -> correct in the app -> train --from-index --init toy -> index again with the new model."""
    from tvcaption.data import generate_synthtv

    root = tmp_path_factory.mktemp("from-index")
    folder = generate_synthtv(root / "synth", train=0, val=0, test=0, broadcasts=2, broadcast_seconds=12,
                              size=64, seed=11) / "broadcasts"
    url = f"sqlite:///{root / 'archive.db'}"
    config = toy.config(root, url)
    config.write_text(config.read_text() + '[index]\nanalysers = ["caption"]\n'
                      '[train]\nepochs = 150\nbatch_size = 16\nlr = 0.01\noptimizer = "adam"\n')
    cfg = ["--config", str(config)]
    run("index", str(folder), *cfg)
    engine = connect(url)
    store = Store(engine)
    recordings = {Path(r.path).name: r for r in store.recordings(status="done")}
    reviewed = recordings["bcast_000.mp4"]
    before = store.scenes_of(reviewed.id)
    assert 2 <= len(before) <= len(CORRECTIONS)
    corrections = [(reviewed.id, s.index, text) for s, text in zip(before, CORRECTIONS)]
    correct_through_the_app(engine, corrections, root / "cache")
    described = write_ad_track(folder / "bcast_001.mp4")
    out = run("train", "--from-index", "--init", str(toy.model), "--out", str(root / "model" / "archive"), *cfg)
    run("index", str(folder), "--model", str(root / "model" / "archive"), *cfg)  # a new model: indexed again
    after = store.scenes_of(reviewed.id)
    yield {"root": root, "url": url, "store": store, "before": before, "after": after, "out": out,
           "corrections": [text for _, _, text in corrections], "described": described,
           "stem": root / "model" / "archive", "recordings": recordings}
    engine.dispose()


def test_corrected_scenes_are_captioned_as_corrected(loop):
    before, after, corrections = loop["before"], loop["after"], loop["corrections"]
    assert [(s.start, s.end) for s in after] == [(s.start, s.end) for s in before]  # the same scenes
    old = [overlap(model_caption(s), c) for s, c in zip(before, corrections)]
    new = [overlap(model_caption(s), c) for s, c in zip(after, corrections)]
    print("before:", [model_caption(s) for s in before], old)
    print("after: ", [model_caption(s) for s in after], new)
    assert sum(old) / len(old) < 0.35  # the toy model cannot say these words
    assert sum(new) / len(new) >= sum(old) / len(old) + 0.4, (old, new)
    assert all(n > o for o, n in zip(old, new)), (old, new)
    # the corrections themselves are still the scenes' captions (kept across indexing again)
    assert [s.caption for s in after] == corrections
    assert loop["store"].get_recording(loop["recordings"]["bcast_000.mp4"].path).model == "archive"


def test_the_checkpoint_says_what_it_learned_from(loop, toy):
    from tvcaption.checkpoint import load_checkpoint, read_manifest
    from tvcaption.vocab import tokenize

    captioner = load_checkpoint(loop["stem"])
    data, meta = captioner.meta["data"], captioner.meta
    assert data["format"] == "index" and data["database"] == loop["url"]
    assert data["reviewed_scenes"] == len(loop["corrections"])
    assert data["ad_tracks"] == 1 and data["ad_track_files"][0].endswith("bcast_001.ad.srt")
    assert data["ad_cues"] == len(loop["described"]) and data["recordings"] == 2
    assert data["train_clips"] == len(loop["corrections"]) + len(loop["described"])
    toy_model = read_manifest(toy.model)
    assert meta["init"]["sha256"] == toy_model.sha256 and meta["frames"] == toy_model.dims.frames
    new_words = {w for c in loop["corrections"] + loop["described"] for w in tokenize(c)} - set(toy_model.vocab.to_list())
    assert "presenter" in new_words and set(data["words_added"]) == new_words
    assert captioner.vocab.to_list()[:len(toy_model.vocab)] == toy_model.vocab.to_list()  # old ids kept
    assert captioner.dims.vocab_size == len(toy_model.vocab) + len(new_words)
    assert meta["metrics"]["caption"] < meta["metrics"]["caption_before"] - 1.0
    assert captioner.domain is not None and captioner.domain.threshold is not None
    card = loop["stem"].with_name("archive.md").read_text()
    assert f"{len(loop['corrections'])} reviewed scenes" in card and "1 description track beside" in card
    steps = 150 * -(-data["train_clips"] // 16)  # epochs x batches an epoch ([train] in the fixture)
    assert meta["train"]["steps"] == steps and f"({steps} optimizer steps)" in card
    assert loop["url"] in card and "presenter" in card and "checkpoint" in loop["out"]


def test_grown_model_keeps_old_rows_and_starts_new_words_as_typical(toy):
    import torch

    from tvcaption.checkpoint import load_checkpoint
    from tvcaption.train_from_index import grow_model, grow_vocab

    captioner = load_checkpoint(toy.model)
    vocab, added = grow_vocab(captioner.vocab, ["zebra zebra quokka", "a zebra"], max_size=None)
    assert added == ["zebra", "quokka"]  # most common first
    assert vocab.to_list() == captioner.vocab.to_list() + added
    capped, few = grow_vocab(captioner.vocab, ["zebra zebra quokka"], max_size=len(captioner.vocab) - 4 + 1)
    assert few == ["zebra"] and len(capped) == len(captioner.vocab) + 1
    old = captioner.model
    grown = grow_model(old, len(vocab), seed=1)
    n = len(captioner.vocab)
    for name in ("decoder.embed.weight", "decoder.out.weight", "decoder.out.bias"):
        before, after = old.state_dict()[name], grown.state_dict()[name]
        assert after.shape[0] == n + 2 and torch.equal(after[:n], before)
        words = before[4:]
        assert torch.allclose(after[n:].mean(0), words.mean(0), atol=3 * float(words.std()) / 2 ** 0.5 + 1e-6)
    assert torch.equal(grown.state_dict()["decoder.out.bias"][n:], old.state_dict()["decoder.out.bias"][4:].mean().expand(2))
    for name, tensor in old.state_dict().items():
        if tensor.shape == grown.state_dict()[name].shape:
            assert torch.equal(tensor, grown.state_dict()[name]), name
    # the same input gives the same logits for the old words, and the new words are no favourites
    grown.eval()
    local, glob = torch.randn(3, old.dims.frames, 7, 7, old.dims.feature_dim), torch.randn(3, old.dims.global_dim)
    tokens = torch.tensor([[1, 4, 5], [1, 6, 2], [1, 4, 4]])
    with torch.no_grad():
        a, b = old(local, glob, tokens), grown(local, glob, tokens)
    assert torch.allclose(b[..., :n], a, atol=1e-5)
    best_old = a.max(-1).values
    assert bool((b[..., n:].max(-1).values < best_old).all())


def test_too_few_optimizer_steps_are_warned_about(caplog):
    from tvcaption.config import TrainConfig
    from tvcaption.train_from_index import _warn_few_steps

    with caplog.at_level("WARNING", logger="tvcaption.train_from_index"):
        _warn_few_steps(9, TrainConfig(epochs=20, batch_size=64))  # the trial's: one step an epoch
    assert "only 20 optimizer steps (9 clips, batch 64, 20 epochs)" in caplog.text and "--epochs 100" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="tvcaption.train_from_index"):
        _warn_few_steps(9, TrainConfig(epochs=150, batch_size=64))
    assert caplog.text == ""


def test_init_names_the_shipped_model_from_any_folder(tmp_path, monkeypatch):
    from tvcaption.resources import SHIPPED_MODEL, shipped_model
    from tvcaption.train_from_index import _init_checkpoint

    monkeypatch.chdir(tmp_path)  # a user's folder: no models/ here
    captioner = _init_checkpoint(SHIPPED_MODEL)
    assert captioner.path is not None and Path(captioner.path).resolve().parent == shipped_model().resolve().parent


def test_public_url_drops_the_password():
    from sqlalchemy.engine import make_url

    from tvcaption.train_from_index import public_url

    engine = types.SimpleNamespace(url=make_url("postgresql+psycopg://tv:s3cret@db.example:5432/archive"))
    assert public_url(engine) == "postgresql+psycopg://tv@db.example:5432/archive"
    assert public_url(types.SimpleNamespace(url=make_url("sqlite:////tmp/a.db"))) == "sqlite:////tmp/a.db"


def test_too_few_clips_is_one_line(toy, tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    connect(url).dispose()
    result = runner.invoke(app, ["train", "--from-index", "--init", str(toy.model), "--out", str(tmp_path / "m"),
                                 "--db", url, "--config", str(toy.config(tmp_path, url))])
    assert result.exit_code == 1 and "0 training clip(s) found" in result.stderr, result.output
    assert "Traceback" not in result.output and not (tmp_path / "m.json").exists()
    both = runner.invoke(app, ["train", str(tmp_path), "--from-index"])
    assert both.exit_code == 1 and "--from-index" in both.stderr


def test_collect_reads_latest_corrections_and_description_tracks(tmp_path):
    from annotated import annotated

    from tvcaption.train_from_index import collect, parse_span

    store = Store(connect(f"sqlite:///{tmp_path / 'tv.db'}"))
    news, gone = tmp_path / "news.ts", tmp_path / "gone.ts"
    news.write_bytes(b"not read here")  # collect only needs the file to be there
    for path in (news, gone):
        claim = store.claim(str(path), f"hash-{path.stem}", "w", {"duration": 9.0})
        store.save_result(claim.recording_id, [annotated(3.0 * i, 3.0 * i + 3.0, 75 * i, 75 * i + 75, "a toy says")
                                               for i in range(3)], "m")
    ids = {Path(r.path).name: r.id for r in store.recordings()}
    store.add_correction(ids["news.ts"], 1, "an anchor reads the news", "ann")
    store.add_correction(ids["news.ts"], 1, "an anchor reads the evening news", "bob")  # the one in force
    store.add_correction(ids["gone.ts"], 0, "a scene whose file is gone", "ann")
    (tmp_path / "news.ad.vtt").write_text(
        "WEBVTT\n\n00:00.500 --> 00:02.000\nA <i>presenter</i> walks in.\n\n"
        "00:00.500 --> 00:02.000\nSomeone enters the studio.\n\n00:04.000 --> 00:04.050\ntoo short\n\n"
        "00:06.000 --> 00:08.500\nThe map shows rain.\n", encoding="utf-8")
    data = collect(store.engine)
    clips = {(parse_span(c.video)[1:], c.captions) for c in data.clips}
    assert clips == {((3.0, 6.0), ("an anchor reads the evening news",)),
                     ((0.5, 2.0), ("A presenter walks in.", "Someone enters the studio.")),
                     ((6.0, 8.5), ("The map shows rain.",))}
    assert all(parse_span(c.video)[0] == str(news) for c in data.clips)
    assert len({c.id for c in data.clips}) == 3 and all(c.id.count("hash-news") == 1 for c in data.clips)
    assert (data.reviewed_scenes, data.ad_cues, data.recordings) == (1, 3, 1)
    assert data.ad_tracks == [str(tmp_path / "news.ad.vtt")] and data.missing == [str(gone)]
    store.engine.dispose()
