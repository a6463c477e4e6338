"""Search caches that follow the database by a delta (migration 0009's ``search_changes``).

The triggers name every recording whose searchable content changed, on SQLite and PostgreSQL;
posting lists and the vector matrix older than the database answer with the changed recordings
read from the database beside them, instead of being rebuilt whole by the next search: a new
recording, a correction, a recording no longer done, a deleted one. The matrix's delta gives the
same numbers as a rebuilt matrix; the lists' delta ranks with the old lists' avgdl, so it is
compared with the SQL's ranking by its hits and roughly by its scores.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from sqlalchemy import delete, text, update
from test_search_vectors import MODEL, ranked, unit
from test_text_index import execute

from tvcaption.db import search as search_module
from tvcaption.db import search_cache, text_index, vector_index
from tvcaption.db.reviews import add_correction
from tvcaption.db.schema import Recording
from tvcaption.db.search import build_search, find_recording, indexed_ranking, sql_ranking
from tvcaption.db.store import Store, connect
from tvcaption.scene import Annotation, Scene

pytest_plugins = ["pg"]
WORDS = ["man", "woman", "dog", "guitar", "stage", "street", "singing", "kitchen", "chef", "news", "horse"]


def scenes(seed: int, count: int) -> list[Scene]:
    from tvcaption.analysers.meaning import encode_vector

    rng, vectors = random.Random(seed), unit(np.random.default_rng(seed), count)
    out = []
    for i in range(count):
        said = [Annotation("caption", "caption", " ".join(rng.choices(WORDS, k=rng.randint(2, 6))), -1.0),
                Annotation("tags", "tag", rng.choice(WORDS), 0.5, field="labels"),
                Annotation("meaning", "embedding", MODEL, field=None,
                           data={"model": MODEL, "vector": encode_vector(vectors[i])})]
        out.append(Scene(i * 2.0, i * 2.0 + 2.0, i * 50, i * 50 + 50).with_annotations(said))
    return out


def put(url: str, path: str, seed: int, count: int = 30) -> int:
    with Store(url) as store:
        claim = store.claim(path, f"hash-{path}-{seed}", "w1")
        store.save_result(claim, scenes(seed, count), "toy+meaning")
        return next(r.id for r in store.recordings() if r.path == path)


def versions(url: str) -> dict[str, int]:
    engine = connect(url, create=False)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(text("SELECT name, version FROM search_versions")).all())
    finally:
        engine.dispose()


def changed(url: str, since: dict[str, int]) -> dict[str, frozenset[int] | None]:
    now = versions(url)
    engine = connect(url, create=False)
    try:
        with engine.connect() as conn:
            return {name: search_cache.changed_since(conn, name, since[name], now[name]) for name in ("text", "vectors")}
    finally:
        engine.dispose()


@pytest.fixture(autouse=True)
def fresh_process_caches(monkeypatch):
    text_index._open.clear()
    vector_index._open.clear()
    monkeypatch.setattr(search_module, "INDEX_MIN_SCENES", 0)  # every archive ranks from the lists
    monkeypatch.setattr(text_index, "DELTA_MIN_ROWS", 0)  # and answers with a delta
    yield
    text_index._open.clear()
    vector_index._open.clear()


def test_the_triggers_name_each_changed_recording(db_url):
    a = put(db_url, "/a.ts", 1)
    b = put(db_url, "/b.ts", 2)
    before = versions(db_url)
    assert changed(db_url, before) == {"text": frozenset(), "vectors": frozenset()}
    c = put(db_url, "/c.ts", 3)  # a new recording
    assert changed(db_url, before) == {"text": {c}, "vectors": {c}}
    before = versions(db_url)
    engine = connect(db_url, create=False)
    add_correction(engine, a, 2, "a horse on a beach", "ana")  # its words and its vector
    engine.dispose()
    assert changed(db_url, before) == {"text": {a}, "vectors": {a}}
    before = versions(db_url)
    execute(db_url, text("UPDATE scenes SET start = start + 0.01 WHERE recording_id = :r").bindparams(r=b))
    assert changed(db_url, before) == {"text": {b}, "vectors": frozenset()}  # the order of ties
    before = versions(db_url)
    execute(db_url, update(Recording.__table__).where(Recording.id == b).values(status="failed"))
    assert changed(db_url, before) == {"text": {b}, "vectors": {b}}
    before = versions(db_url)
    execute(db_url, update(Recording.__table__).where(Recording.id == a).values(path="/z.ts"))  # the order of ties
    assert changed(db_url, before) == {"text": {a}, "vectors": frozenset()}
    before = versions(db_url)
    execute(db_url, update(Recording.__table__).where(Recording.id == c).values(claimed_by="w2"))  # not searched
    assert changed(db_url, before) == {"text": frozenset(), "vectors": frozenset()}
    assert versions(db_url) == before  # and the counters stay: the caches stay current
    execute(db_url, delete(Recording.__table__).where(Recording.id == c))
    assert changed(db_url, before) == {"text": {c}, "vectors": {c}}
    if db_url.startswith("postgresql"):  # TRUNCATE: every recording, so the caches are rebuilt
        before = versions(db_url)
        execute(db_url, text("TRUNCATE recording_vectors"))
        assert changed(db_url, before)["vectors"] is None
    # a cache older than the log's start, or newer than the counter (another database's): unknown
    now = versions(db_url)
    engine = connect(db_url, create=False)
    with engine.connect() as conn:
        start = conn.execute(text("SELECT version FROM search_changes WHERE name = 'text' AND recording_id = -1")).scalar()
        assert search_cache.changed_since(conn, "text", start - 1, now["text"]) is None
        assert search_cache.changed_since(conn, "text", now["text"] + 5, now["text"]) is None
        assert search_cache.changed_since(conn, "text", now["text"], now["text"]) == frozenset()
    engine.dispose()


def lists_and_sql(url: str, query: str, limit: int = 1000, all_captions: bool = False, recording: str | None = None):
    engine = connect(url, create=False)
    try:
        with engine.connect() as conn:
            stored = find_recording(conn, recording)
            mine = indexed_ranking(conn, query, limit, stored, all_captions)
            if conn.dialect.name == "sqlite":
                stmt = build_search("sqlite", query, limit, recording, all_captions)
                theirs = [(row.id, float(row.score)) for row in conn.execute(stmt)]
            else:
                theirs = sql_ranking(conn, query, limit, stored, all_captions)
            return mine, theirs
    finally:
        engine.dispose()


def assert_exact(mine, theirs) -> None:
    assert mine is not None and [i for i, _ in mine] == [i for i, _ in theirs] and mine
    assert [s for _, s in mine] == pytest.approx([s for _, s in theirs], rel=1e-9)


def assert_close(mine, theirs) -> None:
    """The same hits (every match: the limit is above them), scores within a few percent."""
    assert mine is not None
    assert sorted(i for i, _ in mine) == sorted(i for i, _ in theirs) and mine
    expected = dict(theirs)
    for scene_id, score in mine:
        assert score == pytest.approx(expected[scene_id], rel=0.1)


def test_the_posting_lists_answer_with_a_delta(db_url, monkeypatch):
    a = put(db_url, "/a.ts", 1, 60)
    b = put(db_url, "/b.ts", 2, 60)
    assert_exact(*lists_and_sql(db_url, "man"))  # builds the lists

    def no_build(*args):
        raise AssertionError("the whole index was read again")

    monkeypatch.setattr(text_index, "build", no_build)
    c = put(db_url, "/c.ts", 3, 30)  # a new recording
    for query in ("man", "guitar stage", "horse", "chef kitchen"):
        assert_close(*lists_and_sql(db_url, query))
    add_correction(connect(db_url, create=False), a, 5, "a zebra crossing", "ana")  # new words, old ones gone
    mine, theirs = lists_and_sql(db_url, "zebra")
    assert_close(mine, theirs)
    assert len(mine) == 1
    assert_close(*lists_and_sql(db_url, "man"))
    text_index._open.clear()  # a new process: the old file and the delta
    assert_close(*lists_and_sql(db_url, "zebra"))
    execute(db_url, update(Recording.__table__).where(Recording.id == b).values(status="failed"))
    mine, theirs = lists_and_sql(db_url, "man")
    assert_close(mine, theirs)
    for path in ("/a.ts", "/c.ts"):  # one recording: changed (a, c) or not
        assert_close(*lists_and_sql(db_url, "man", recording=path))
    execute(db_url, delete(Recording.__table__).where(Recording.id == c))
    assert_close(*lists_and_sql(db_url, "guitar"))
    mine, _ = lists_and_sql(db_url, "man")
    engine = connect(db_url, create=False)
    with engine.connect() as conn:
        owners = dict(conn.execute(text("SELECT id, recording_id FROM scenes")).all())
    engine.dispose()
    assert {owners[i] for i, _ in mine} == {a}  # b failed, c deleted
    # too many changes: rebuilt whole
    monkeypatch.setattr(search_cache, "MAX_CHANGED", 0)
    put(db_url, "/d.ts", 4, 10)
    with pytest.raises(AssertionError, match="read again"):
        lists_and_sql(db_url, "man")


def test_a_delta_counts_rows_and_terms_as_a_rebuild(db_url):
    """N and each term's rows of a delta are a rebuild's, also for a recording that was not done
    when the lists were built (its rows counted in N then, under no searchable recording)."""
    put(db_url, "/a.ts", 1, 60)
    b = put(db_url, "/b.ts", 2, 60)
    execute(db_url, update(Recording.__table__).where(Recording.id == b).values(status="failed"))
    lists_and_sql(db_url, "man")  # builds the lists: b's rows in N, not searchable
    put(db_url, "/b.ts", 5, 40)  # b indexed again: new scenes, done
    put(db_url, "/c.ts", 3, 30)
    engine = connect(db_url, create=False)
    try:
        with engine.connect() as conn:
            found = text_index.postings(conn)
            assert found.delta is not None
            fresh = text_index.build(conn, text_index.version(conn))
            tokens = text_index.reader(conn).query_terms(conn, WORDS)  # the index's own terms
        assert len(tokens) == len(WORDS) and all(fresh.count(t, False) for t in tokens)
        for visible in (True, False):
            for token in tokens:
                n = found.count(token, visible, found.changed) + found.delta.count(token, visible)
                assert n == fresh.count(token, visible), (token, visible)
        assert found.delta.rows == fresh.rows
    finally:
        engine.dispose()


def test_below_delta_min_rows_the_lists_are_rebuilt_and_exact(db_url, monkeypatch):
    monkeypatch.setattr(text_index, "DELTA_MIN_ROWS", 10_000)
    put(db_url, "/a.ts", 1, 40)
    lists_and_sql(db_url, "man")
    put(db_url, "/b.ts", 2, 40)
    assert_exact(*lists_and_sql(db_url, "man"))  # ids and scores as the SQL's


def assert_same_ranking(mine, theirs) -> None:
    assert mine.ids.tolist() == theirs.ids.tolist()
    assert np.allclose(mine.scores, theirs.scores, atol=1e-6)
    some = theirs.all_ids[::3].tolist()
    assert mine.rank_of(some) == theirs.rank_of(some)


@pytest.mark.parametrize("two_stage", [False, True], ids=["exact", "two-stage"])
def test_the_matrix_answers_with_a_delta(db_url, monkeypatch, two_stage):
    if two_stage:  # coarse scores pick the candidates: the masked rows must never be among them
        monkeypatch.setattr(vector_index, "EXACT_MAX", 10)
        monkeypatch.setattr(vector_index, "RERANK", 500)
    put(db_url, "/a.ts", 1, 40)
    b = put(db_url, "/b.ts", 2, 40)
    query = unit(np.random.default_rng(2), 40)[7]  # /b.ts's scene 7
    mine, theirs = ranked(db_url, query, 10)  # builds the matrix
    assert_same_ranking(mine, theirs)
    assert mine.scores[0] == pytest.approx(1.0, abs=1e-5)
    built = []
    real_build = vector_index._build
    monkeypatch.setattr(vector_index, "_build", lambda *a: built.append(1) or real_build(*a))
    put(db_url, "/b.ts", 5, 40)  # indexed again: other vectors
    put(db_url, "/c.ts", 2, 40)  # /b.ts's old vectors, now /c.ts's
    for q in (query, unit(np.random.default_rng(5), 40)[3]):
        mine, theirs = ranked(db_url, q, 10)
        assert_same_ranking(mine, theirs)
        assert mine.scores[0] == pytest.approx(1.0, abs=1e-5)
        assert_same_ranking(*ranked(db_url, q, 5, recording="/b.ts"))
        assert_same_ranking(*ranked(db_url, q, 5, recording="/a.ts"))
    vector_index._open.clear()  # a new process: the old file and the delta
    assert_same_ranking(*ranked(db_url, query, 10))
    execute(db_url, update(Recording.__table__).where(Recording.id == b).values(status="failed"))
    assert_same_ranking(*ranked(db_url, query, 10))
    assert built == []


def test_a_cache_the_log_does_not_cover_is_rebuilt(tmp_path):
    """Caches built before migration 0009 (its changes were never logged), and caches of another
    database that was at the same path, are rebuilt instead of patched."""
    from tvcaption.db import migrate

    url = f"sqlite:///{tmp_path / 'tv.db'}"
    engine = connect(url, migrate=False)
    migrate.upgrade(engine, "0008")
    Store(engine).save_result(Store(engine).claim("/a.ts", "ha", "w"), scenes(1, 20), "toy+meaning")
    query = unit(np.random.default_rng(2), 20)[7]  # /b.ts's scene 7, below
    with engine.connect() as conn:
        vector_index.matrix(conn, MODEL)  # the cache, at 0008
    Store(engine).save_result(Store(engine).claim("/b.ts", "hb", "w"), scenes(2, 20), "toy+meaning")  # not logged
    migrate.upgrade(engine)
    vector_index._open.clear()  # a new process: the file
    mine, theirs = ranked(url, query, 5)
    assert_same_ranking(mine, theirs)
    assert mine.scores[0] == pytest.approx(1.0, abs=1e-5)  # /b.ts is found
    engine.dispose()
    # another database at the same path: the old one's cache is not patched into it
    for leftover in tmp_path.glob("tv.db*"):
        leftover.unlink()
    put(url, "/c.ts", 3, 5)
    vector_index._open.clear()
    mine, theirs = ranked(url, query, 5)
    assert_same_ranking(mine, theirs)
    assert len(mine.ids) == 5 and mine.scores[0] < 0.99


def test_caches_of_deleted_sqlite_databases_are_swept(tmp_path):
    """Each SQLite database's cache files say which database they are; when a database is seen
    for the first time, the files of databases that are gone are removed (theirs only)."""
    def caches(url: str) -> None:
        engine = connect(url, create=False)
        try:
            with engine.connect() as conn:
                assert text_index.postings(conn) is not None and vector_index.matrix(conn, MODEL) is not None
        finally:
            engine.dispose()

    urls = {name: f"sqlite:///{tmp_path / name}.db" for name in ("gone", "kept", "new")}
    for name in ("gone", "kept"):
        put(urls[name], f"/{name}.ts", 1, 10)
        caches(urls[name])
    engine = connect(urls["gone"], create=False)
    with engine.connect() as conn:
        gone_key, vec_key = search_cache.database_key(conn, "text"), search_cache.database_key(conn, MODEL)
    engine.dispose()
    files = [text_index.cache_folder() / f"{gone_key}.txt.idx", vector_index.cache_folder() / f"{vec_key}.vec"]
    assert all(f.is_file() for f in files) and all(f.with_name(f.name.split(".")[0] + ".source").is_file() for f in files)
    engine = connect(urls["kept"], create=False)
    with engine.connect() as conn:
        kept = [text_index.cache_folder() / f"{search_cache.database_key(conn, 'text')}.txt.idx",
                vector_index.cache_folder() / f"{search_cache.database_key(conn, MODEL)}.vec"]
    engine.dispose()
    assert all(f.is_file() for f in kept)
    (tmp_path / "gone.db").unlink()
    put(urls["new"], "/new.ts", 2, 10)
    caches(urls["new"])  # a database seen for the first time: the folders are swept
    assert not any(f.exists() or f.with_name(f.name.split(".")[0] + ".source").exists() for f in files)
    assert all(f.is_file() for f in kept)  # the kept database's files stay
