"""PostgreSQL full-text ranking from posting lists (tvcaption.db.text_index, read by
tvcaption.db.text_index_pg) against the SQL of build_search, and both against bm25 computed here
from the raw tsvectors: the same scenes in the same order with the same scores, for random
captions, tags, hidden captions and queries, with and without all_captions and a recording
filter; lists that follow every change; what is left to the SQL."""

from __future__ import annotations

import math
import random
import re

import pytest
from sqlalchemy import delete, text, update
from test_text_index import STOP, WORDS, archive, execute, find, put, queries

from tvcaption.db import search as search_module
from tvcaption.db import text_index, text_index_pg
from tvcaption.db.hybrid import search as hybrid_search
from tvcaption.db.scenes import text_backend
from tvcaption.db.schema import Recording
from tvcaption.db.search import build_search, find_recording, indexed_ranking, search
from tvcaption.db.store import Store, connect
from tvcaption.scene import Annotation, Scene

pytest_plugins = ["pg"]
pytestmark = pytest.mark.postgres

K1, B = 1.2, 0.75
WEIGHT = {"A": 1.0, "B": 0.5, "C": 0.25}


@pytest.fixture(autouse=True)
def fresh_process_cache(monkeypatch):
    text_index._open.clear()
    text_index_pg._lexemes.clear()
    monkeypatch.setattr(search_module, "INDEX_MIN_SCENES", 0)  # every archive is large enough
    yield
    text_index._open.clear()


@pytest.fixture
def url(fresh_pg_url) -> str:
    return fresh_pg_url()


def tsquery_lexemes(conn, query: str) -> set[str]:
    """The lexemes of the SQL's own tsquery (plainto_tsquery's text, parsed): what must match."""
    plain, _ = search_module.split_query(query, text_backend(conn))
    shown = conn.execute(text("SELECT plainto_tsquery('english', :q)::text"), {"q": " ".join(plain)}).scalar()
    assert re.fullmatch(r"('(?:[^']|'')*'( & )?)*", shown), shown  # nothing but AND of lexemes
    return {m.replace("''", "'") for m in re.findall(r"'((?:[^']|'')*)'", shown)}


def reference(conn, query: str, limit: int, recording: str | None, all_captions: bool) -> list[tuple[int, float]]:
    """bm25 from the stored tsvectors, in plain Python (the formula of tvcaption.db.text_index)."""
    weights = WEIGHT if all_captions else {"A": 1.0, "B": 0.5}
    lexemes = sorted(tsquery_lexemes(conn, query), key=str.encode)
    rows: dict[int, dict[str, float]] = {}
    length: dict[int, int] = {}
    for scene_id, lexeme, positions, marks in conn.execute(text(
            "SELECT f.scene_id, t.lexeme, t.positions, t.weights FROM scene_fts f, unnest(f.document) t")):
        length[scene_id] = length.get(scene_id, 0) + len(positions)
        f = sum(weights.get(w, 0.0) for w in marks)
        if f > 0:
            rows.setdefault(scene_id, {})[lexeme] = f
    n_rows = conn.execute(text("SELECT count(*) FROM scene_fts")).scalar()
    if not lexemes or not n_rows:
        return []
    avgdl = sum(length.values()) / n_rows
    idf = {}
    for lexeme in lexemes:
        n = sum(lexeme in held for held in rows.values())
        value = math.log((n_rows - n + 0.5) / (n + 0.5))
        idf[lexeme] = value if value > 0 else 1e-6
    order = {r.id: (r.path, r.start) for r in conn.execute(text(
        "SELECT s.id, r.path, s.start FROM scenes s JOIN recordings r ON r.id = s.recording_id "
        "WHERE r.status = 'done'" + (" AND r.path = :p" if recording else "")), {"p": recording})}
    scored = []
    for scene_id, held in rows.items():
        if scene_id in order and all(lx in held for lx in lexemes):
            score = 0.0
            for lx in lexemes:
                f = held[lx]
                score += idf[lx] * ((f * (K1 + 1.0)) / (f + K1 * ((1 - B) + B * length[scene_id] / avgdl)))
            scored.append((scene_id, score))
    scored.sort(key=lambda p: (-p[1], order[p[0]]))
    return scored[:limit]


def three(url, query: str, limit: int, recording: str | None = None, all_captions: bool = False):
    """(posting lists' ranking or None, the SQL's ranking, the reference), on one connection;
    ``url`` may be an open engine."""
    engine = connect(url, create=False) if isinstance(url, str) else url
    try:
        with engine.connect() as conn:
            stored = find_recording(conn, recording)
            mine = indexed_ranking(conn, query, limit, stored, all_captions)
            stmt = build_search("postgresql", query, limit, stored and stored.path, all_captions,
                                 backend=text_backend(conn))
            theirs = [] if stmt is None else [(row.id, float(row.score)) for row in conn.execute(stmt)]
            return mine, theirs, reference(conn, query, limit, recording, all_captions)
    finally:
        if isinstance(url, str):
            engine.dispose()


def assert_same(mine, theirs, ours=None) -> None:
    """The same scenes in the same order with the same scores, bit for bit."""
    assert mine is not None
    assert mine == theirs
    if ours is not None:
        assert [i for i, _ in theirs] == [i for i, _ in ours]
        assert [s for _, s in theirs] == pytest.approx([s for _, s in ours], rel=1e-12)


def test_the_lists_the_sql_and_the_reference_agree(url):
    archive(url)
    rng = random.Random(7)
    engine = connect(url, create=False)
    try:
        for q in queries(rng, 40):
            for limit in (1, 5, 1000):
                for all_captions in (False, True):
                    for recording in (None, "/a/film.ts"):
                        assert_same(*three(engine, q, limit, recording, all_captions))
    finally:
        engine.dispose()
    mine, _, _ = three(url, "man", 1000)
    assert len({s for _, s in mine}) < len(mine)  # ties, ordered by path then start
    assert three(url, "the of", 5)[:2] == ([], [])  # only stop words: nothing, either way


def test_hidden_captions_match_only_with_all_captions(url):
    with Store(url) as store:
        claim = store.claim("/a.ts", "h", "w1")
        store.save_result(claim, [
            Scene(0.0, 1.0, 0, 25).with_annotations([Annotation("caption", "caption", "zebra runs", -1.0, field="hidden"),
                                                     Annotation("tags", "tag", "horse", 0.5, field="labels")]),
            Scene(1.0, 2.0, 25, 50).with_annotations([Annotation("caption", "caption", "a zebra eats zebra grass", -1.0)]),
        ], "m")
    mine, theirs, ours = three(url, "zebra", 10)
    assert_same(mine, theirs, ours) and len(mine) == 1
    mine, theirs, ours = three(url, "zebras", 10, all_captions=True)
    assert_same(mine, theirs, ours) and len(mine) == 2
    assert three(url, "zebra horse", 10)[:2] == ([], [])
    assert_same(*three(url, "zebra horse", 10, all_captions=True))


def test_the_lists_follow_every_change(url):
    put(url, "/a.ts", 1, 30)
    assert_same(*three(url, "man", 100))
    put(url, "/b.ts", 2, 30)  # a new recording
    assert_same(*three(url, "man", 100))
    put(url, "/a.ts", 3, 20)  # indexed again, other scenes
    assert_same(*three(url, "man", 100))
    with Store(url) as store:  # a reviewer's correction: its words are found, the model's are not
        recording_id = store.engine.connect().execute(text("SELECT id FROM recordings WHERE path = '/a.ts'")).scalar()
        store.add_correction(recording_id, 0, "a purple kangaroo on the news desk", "Ann")
    mine, theirs, ours = three(url, "kangaroo", 10)
    assert_same(mine, theirs, ours) and len(mine) == 1
    assert_same(*three(url, "man", 100))
    # no longer done: not searched, still counted by bm25's idf
    execute(url, update(Recording.__table__).where(Recording.path == "/b.ts").values(status="failed"))
    mine, theirs, ours = three(url, "man", 100)
    assert_same(mine, theirs, ours) and len(mine) < 40
    # a recording moved: ties order by its new path
    execute(url, update(Recording.__table__).where(Recording.path == "/a.ts").values(path="/z.ts", status="done"),
            update(Recording.__table__).where(Recording.path == "/b.ts").values(status="done"))
    assert_same(*three(url, "man", 100))
    execute(url, delete(Recording.__table__).where(Recording.path == "/z.ts"))  # deleted
    assert_same(*three(url, "man", 100))
    assert_same(*three(url, "dog stage", 100, all_captions=True))


def test_search_and_hybrid_return_the_same_hits_either_way(url, monkeypatch):
    archive(url)
    for q in ("man sings", "guitar", "café", "the dog", "e-mail"):
        for all_captions in (False, True):
            indexed = search(url_engine := connect(url, create=False), q, limit=7, all_captions=all_captions)
            by_text = hybrid_search(url_engine, q, mode="hybrid", limit=7, all_captions=all_captions)  # no vectors: text
            monkeypatch.setattr(search_module, "INDEX_MIN_SCENES", 10**12)
            plain = search(url_engine, q, limit=7, all_captions=all_captions)
            monkeypatch.setattr(search_module, "INDEX_MIN_SCENES", 0)
            url_engine.dispose()
            assert [(h.recording, h.start, h.annotations, h.score) for h in indexed] == \
                [(h.recording, h.start, h.annotations, h.score) for h in plain] == \
                [(h.recording, h.start, h.annotations, h.score) for h in by_text]


def test_the_cache_file_is_read_instead_of_the_index(url, monkeypatch):
    archive(url)
    assert_same(*three(url, "man", 50))
    assert list(text_index.cache_folder().glob("*.txt.idx"))
    text_index._open.clear()  # as a new process

    def no_build(*args):
        raise AssertionError("the tsvectors were read again")

    monkeypatch.setattr(text_index, "build", no_build)
    assert_same(*three(url, "man guitar", 50))
    engine = connect(url, create=False)
    with engine.connect() as conn:
        assert isinstance(text_index.postings(conn).scene.base, text_index.np.memmap)
    engine.dispose()


def test_what_the_lists_cannot_answer_goes_to_the_sql(url):
    with Store(url) as store:
        claim = store.claim("/a.ts", "h", "w1")
        store.save_result(claim, [
            Scene(0.0, 1.0, 0, 25).with_annotations([Annotation("ocr", "text", "新闻联播 e-mail don't stop", 1.0)]),
            Scene(1.0, 2.0, 25, 50).with_annotations([Annotation("caption", "caption", "mail stop", -1.0)]),
        ], "m")
    engine = connect(url, create=False)
    with engine.connect() as conn:
        assert indexed_ranking(conn, "新闻", 10, None, False) is None  # a CJK phrase: positions
    engine.dispose()
    assert [h.start for h in find(url, "新闻")] == [0.0]
    assert [h.start for h in find(url, "新闻 stop")] == [0.0]
    assert [h.start for h in find(url, "新闻 mail")] == [0.0]
    assert_same(*three(url, "e-mail", 10))  # 'e-mail' & 'e' & 'mail': the lists answer it
    assert_same(*three(url, "mail stop", 10))
    assert three(url, "don't", 10)[:2] == ([], [])  # 'don' and 't' are stop words


def test_small_archives_use_the_sql(url, monkeypatch):
    put(url, "/a.ts", 1, 20)
    monkeypatch.setattr(search_module, "INDEX_MIN_SCENES", 10**12)
    engine = connect(url, create=False)
    with engine.connect() as conn:
        assert indexed_ranking(conn, "man", 10, None, False) is None
    engine.dispose()
    assert find(url, "man")


def test_many_words_and_odd_lexemes(url):
    """Lexemes with quotes and backslashes (the SQL quotes each as a tsquery), many words."""
    with Store(url) as store:
        claim = store.claim("/a.ts", "h", "w1")
        store.save_result(claim, [
            Scene(float(i), i + 1.0, 25 * i, 25 * i + 25).with_annotations(
                [Annotation("ocr", "text", t, 1.0)]) for i, t in enumerate(
                ["O'Neil said \\ back\\slash", "it's o'neil's", "a\\b c'd", " ".join(WORDS), "man " * 300])
        ], "m")
    engine = connect(url, create=False)
    try:
        for q in ("o'neil", "back\\slash", "a\\b", "c'd", " ".join(WORDS[:12]), "man", "man dog"):
            for all_captions in (False, True):
                assert_same(*three(engine, q, 10, all_captions=all_captions))
    finally:
        engine.dispose()
    assert not set(STOP) & set(WORDS)


def test_the_sql_counts_n_and_tokens_once_per_text_version(url, monkeypatch):
    """text_stats: the statement's own counts, kept per text version (process and cache folder)."""
    monkeypatch.setattr(search_module, "_stats", {})

    def counted(conn):
        return tuple(conn.execute(text(
            "SELECT count(*), (SELECT sum(cardinality(t.positions)) FROM scene_fts f, unnest(f.document) t) "
            "FROM scene_fts")).one())

    engine = connect(url, create=False)
    try:
        put(url, "/a.ts", 1, 30)
        with engine.connect() as conn:
            assert search_module.text_stats(conn) == counted(conn)
        put(url, "/b.ts", 2, 20)
        with engine.connect() as conn:
            now = counted(conn)
            assert search_module.text_stats(conn) == now and now[0] == 50
        search_module._stats.clear()  # as a new process: from the cache folder
        monkeypatch.setattr(search_module, "_PG_TOKENS", "SELECT 1 / 0")
        with engine.connect() as conn:
            assert search_module.text_stats(conn) == now
    finally:
        engine.dispose()
    monkeypatch.undo()
    monkeypatch.setattr(search_module, "INDEX_MIN_SCENES", 10**12)  # the SQL, with the kept counts
    with_counts = find(url, "man", limit=50)
    monkeypatch.setattr(search_module, "INDEX_MIN_SCENES", 0)
    assert [(h.recording, h.start, h.score) for h in with_counts] == \
        [(h.recording, h.start, h.score) for h in find(url, "man", limit=50)]
