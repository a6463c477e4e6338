"""Search by meaning over the memory-mapped matrix (tvcaption.db.vector_index): the same ranking
as the scan of the database's blobs, two-stage ranking above EXACT_MAX, the cache file, and a
matrix that follows every change of the vectors (a recording added, indexed again, no longer
done, deleted) on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import delete, update

from tvcaption.analysers.meaning import encode_vector
from tvcaption.db import vector_index
from tvcaption.db.schema import Recording
from tvcaption.db.store import Store, connect
from tvcaption.db.vectors import nearest as blob_nearest
from tvcaption.scene import Annotation, Scene

pytest_plugins = ["pg"]
MODEL = "all-MiniLM-L6-v2"
DIM = 384


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def scenes_with(vectors: np.ndarray) -> list[Scene]:
    out = []
    for i, v in enumerate(vectors):
        said = (Annotation("caption", "caption", f"scene {i}", -1.0),
                Annotation("meaning", "embedding", MODEL, field=None, data={"model": MODEL, "vector": encode_vector(v)}))
        out.append(Scene(float(i), i + 1.0, i * 25, i * 25 + 25).with_annotations(list(said)))
    return out


def store(url: str, path: str, vectors: np.ndarray) -> None:
    with Store(url) as s:
        claim = s.claim(path, f"hash-{path}-{vectors[0, 0]:.6f}", "w1")  # new content: indexed again
        s.save_result(claim, scenes_with(vectors), "toy+meaning")


@pytest.fixture(autouse=True)
def fresh_process_cache():
    vector_index._open.clear()
    yield
    vector_index._open.clear()


def ranked(url: str, query: np.ndarray, top: int, recording: str | None = None):
    """(matrix ranking, blob-scan ranking) for ``query``."""
    engine = connect(url, create=False)
    try:
        with engine.connect() as conn:
            found = vector_index.matrix(conn, MODEL)
            rec_id = None
            if recording is not None:
                rec_id = conn.execute(Recording.__table__.select().where(Recording.path == recording)).first().id
            return vector_index.nearest(found, query, top, rec_id), blob_nearest(conn, query, MODEL, top, recording)
    finally:
        engine.dispose()


def assert_same(mine, theirs) -> None:
    assert mine.ids.tolist() == theirs.ids.tolist()
    assert np.allclose(mine.scores, theirs.scores, atol=1e-6)
    some = theirs.all_ids[::7].tolist()
    assert mine.rank_of(some) == theirs.rank_of(some)


def test_the_matrix_ranks_as_the_scan_of_the_blobs(db_url):
    rng = np.random.default_rng(1)
    store(db_url, "/a.ts", unit(rng, 40))
    store(db_url, "/b.ts", unit(rng, 25))
    for query in unit(rng, 5):
        assert_same(*ranked(db_url, query, 10))
        assert_same(*ranked(db_url, query, 100))  # deeper than there are scenes
        assert_same(*ranked(db_url, query, 5, recording="/b.ts"))


def test_the_matrix_follows_every_change_of_the_vectors(db_url):
    rng = np.random.default_rng(2)
    a, b, b2 = unit(rng, 30), unit(rng, 20), unit(rng, 20)
    store(db_url, "/a.ts", a)
    query = b[3]
    mine, _ = ranked(db_url, query, 5)
    assert mine.scores[0] < 0.99  # b not there yet
    store(db_url, "/b.ts", b)  # added
    mine, theirs = ranked(db_url, query, 5)
    assert_same(mine, theirs) and mine.scores[0] == pytest.approx(1.0, abs=1e-5)
    store(db_url, "/b.ts", b2)  # indexed again with other vectors
    mine, theirs = ranked(db_url, query, 5)
    assert_same(mine, theirs) and mine.scores[0] < 0.99
    mine, theirs = ranked(db_url, b2[7], 5)
    assert mine.scores[0] == pytest.approx(1.0, abs=1e-5)
    engine = connect(db_url, create=False)
    with engine.begin() as conn:  # no longer done: not searched
        conn.execute(update(Recording.__table__).where(Recording.path == "/b.ts").values(status="pending"))
    mine, theirs = ranked(db_url, b2[7], 5)
    assert_same(mine, theirs) and mine.scores[0] < 0.99
    with engine.begin() as conn:  # deleted (its vectors with it)
        conn.execute(delete(Recording.__table__).where(Recording.path == "/a.ts"))
    engine.dispose()
    mine, theirs = ranked(db_url, a[0], 5)
    assert len(mine.ids) == 0 and len(theirs.ids) == 0


def test_the_cache_file_is_read_again_instead_of_the_blobs(db_url, monkeypatch):
    rng = np.random.default_rng(3)
    store(db_url, "/a.ts", unit(rng, 30))
    query = unit(rng, 1)[0]
    ranked(db_url, query, 10)
    assert list(vector_index.cache_folder().glob("*.vec"))
    vector_index._open.clear()  # as a new process

    def no_build(*args):
        raise AssertionError("the blobs were read again")

    monkeypatch.setattr(vector_index, "_build", no_build)
    again, theirs = ranked(db_url, query, 10)
    assert isinstance(again.matrix.vectors, np.memmap)
    assert_same(again, theirs)


def test_without_a_writable_cache_the_matrix_is_built_in_memory(db_url, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setattr(vector_index, "cache_folder", lambda: blocker / "vectors")
    rng = np.random.default_rng(4)
    store(db_url, "/a.ts", unit(rng, 30))
    for query in unit(rng, 3):
        assert_same(*ranked(db_url, query, 10))


def test_two_stage_ranking_above_exact_max(db_url, monkeypatch):
    """Coarse scores pick the candidates, exact scores rank them: with 60 vectors the 64 leading
    directions hold all of them, so the result is the exact one even with few candidates."""
    monkeypatch.setattr(vector_index, "EXACT_MAX", 10)
    monkeypatch.setattr(vector_index, "RERANK", 12)
    rng = np.random.default_rng(5)
    vectors = unit(rng, 60)
    store(db_url, "/a.ts", vectors)
    for query in [vectors[9], *unit(rng, 3)]:
        mine, theirs = ranked(db_url, query, 5)
        assert mine.matrix.coarse is not None
        assert mine.ids.tolist() == theirs.ids.tolist()
        assert mine.rank_of(theirs.ids.tolist()) == theirs.rank_of(theirs.ids.tolist())


def test_count_greater_is_exact_with_ties_and_equal_scores():
    """Hybrid ranks every text hit among all vectors: the bucketed count must equal a plain count
    of the scores strictly above each value, ties and all-equal scores included."""
    from tvcaption.db.vector_index import _count_greater_by_search, count_greater

    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 5000))
        scores = rng.normal(0.2, 0.15, size=n).astype(np.float32)
        if trial % 3 == 0:
            scores = np.round(scores, 2).astype(np.float32)  # many ties, some across bucket edges
        if trial % 11 == 0:
            scores[:] = 0.25
        values = scores[rng.integers(0, n, size=int(rng.integers(1, 120)))]
        if trial % 5 == 1:  # rows left out by a delta (MASKED), and values from the delta's own scores
            scores[rng.integers(0, n, size=max(1, n // 10))] = vector_index.MASKED
            values = np.r_[values, rng.uniform(-1.0, 1.0, size=7).astype(np.float32)]
        want = np.array([(scores > v).sum() for v in values])
        assert np.array_equal(count_greater(scores, values), want), trial
        assert np.array_equal(_count_greater_by_search(scores, values), want), trial
    assert len(count_greater(np.zeros(0, np.float32), np.zeros(0, np.float32))) == 0
