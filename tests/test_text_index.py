"""Full-text ranking from posting lists (tvcaption.db.text_index) against FTS5's own bm25 (the SQL
of build_search) on real SQLite databases written by the store: the same scenes in the same order
with the same scores, for random captions, tags, hidden captions and queries; lists that follow
every change; a cache folder that cannot be written; what is left to the SQL."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import delete, update

from tvcaption.db import search as search_module
from tvcaption.db import text_index
from tvcaption.db.hybrid import search as hybrid_search
from tvcaption.db.schema import Recording
from tvcaption.db.search import build_search, find_recording, indexed_ranking, search
from tvcaption.db.store import Store, connect
from tvcaption.scene import Annotation, Scene

# few words, Zipf-drawn: common words match most scenes and many scores tie
WORDS = ("man sings singing sang dog runs running park stage woman dances guitar crowd night "
         "café news anchor weather map red car street rain kitchen chef cooks pasta tiny").split()
TAGS = ("microphone", "golden retriever", "guitar", "car", "street sign", "stage", "umbrella", "pasta")
STOP = ("the", "a", "of", "and", "in")


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS + list(STOP), weights=[1 / (i + 1) for i in range(len(WORDS) + len(STOP))], k=n))


def scenes(rng: random.Random, count: int) -> list[Scene]:
    out = []
    for i in range(count):
        said = [Annotation("caption", "caption", sentence(rng, rng.randint(2, 6)), -1.0)]
        if rng.random() < 0.2:  # an out-of-domain caption: hidden
            said = [Annotation("caption", "caption", sentence(rng, rng.randint(2, 5)), -1.0, field="hidden")]
        said += [Annotation("tags", "tag", t, 0.5, field="labels") for t in rng.sample(TAGS, rng.randint(0, 2))]
        if rng.random() < 0.1:
            said.append(Annotation("ocr", "text", rng.choice(["don't stop", "e-mail us", "BREAKING NEWS"]), 1.0))
        out.append(Scene(i * 2.0, i * 2.0 + 2.0, i * 50, i * 50 + 50).with_annotations(said))
    return out


def put(url: str, path: str, seed: int, count: int) -> None:
    with Store(url) as store:
        claim = store.claim(path, f"hash-{path}-{seed}", "w1")
        store.save_result(claim, scenes(random.Random(seed), count), "m")


def queries(rng: random.Random, n: int) -> list[str]:
    out = ["man", "singing", "sings man", "café", "cafe", "guitar stage", "the man", "MAN Dog",
           "retriever", "golden", "nothing-here", "man -", "tiny pasta chef", "sign street", "news"]
    for _ in range(n):
        out.append(" ".join(rng.choices(WORDS + list(STOP) + ["unknownword"], k=rng.randint(1, 3))))
    return out


@pytest.fixture(autouse=True)
def fresh_process_cache(monkeypatch):
    text_index._open.clear()
    monkeypatch.setattr(search_module, "INDEX_MIN_SCENES", 0)  # every archive is large enough
    yield
    text_index._open.clear()


@pytest.fixture
def url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'tv.db'}"
    connect(url).dispose()
    return url


def both(url, query: str, limit: int, recording: str | None = None, all_captions: bool = False):
    """(posting lists' ranking or None, the SQL's ranking), on one connection; ``url`` may be an
    open engine (many queries)."""
    engine = connect(url, create=False) if isinstance(url, str) else url
    try:
        with engine.connect() as conn:
            stored = find_recording(conn, recording)
            mine = indexed_ranking(conn, query, limit, stored, all_captions)
            stmt = build_search("sqlite", query, limit, stored and stored.path, all_captions)
            theirs = [] if stmt is None else [(row.id, float(row.score)) for row in conn.execute(stmt)]
            return mine, theirs
    finally:
        if isinstance(url, str):
            engine.dispose()


def find(url: str, query: str, mode: str | None = None, **options):
    """``search`` (or the hybrid search in ``mode``) on a fresh engine."""
    engine = connect(url, create=False)
    try:
        if mode is None:
            return search(engine, query, **options)
        return hybrid_search(engine, query, mode=mode, **options)
    finally:
        engine.dispose()


def execute(url: str, *statements) -> None:
    """Run ``statements`` in one transaction on a fresh engine (as another process would)."""
    engine = connect(url, create=False)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(statement)
    finally:
        engine.dispose()


def assert_same(mine, theirs) -> None:
    assert mine is not None
    assert [i for i, _ in mine] == [i for i, _ in theirs]
    assert [s for _, s in mine] == pytest.approx([s for _, s in theirs], rel=1e-9, abs=1e-12)


def archive(url: str) -> None:
    put(url, "/b/news.ts", 1, 60)
    put(url, "/a/film.ts", 2, 50)  # a later id, an earlier path: ties go to it
    put(url, "/c/show.ts", 3, 40)


def test_the_lists_rank_as_fts5_bm25(url):
    archive(url)
    rng = random.Random(7)
    fallbacks = 0
    engine = connect(url, create=False)
    for q in queries(rng, 60):
        for limit in (1, 5, 1000):
            for all_captions in (False, True):
                mine, theirs = both(engine, q, limit, all_captions=all_captions)
                if mine is None:  # only what must be left to the SQL
                    fallbacks += 1
                    assert q == "nothing-here" or not [w for w in q.split() if w.lower() not in STOP]
                    continue
                assert_same(mine, theirs)
    engine.dispose()
    assert fallbacks < 40
    assert both(url, "man -", 5)[0] is not None  # a word without a token: FTS5 ignores it, so do the lists


def test_hidden_captions_match_only_with_all_captions(url):
    with Store(url) as store:
        claim = store.claim("/a.ts", "h", "w1")
        store.save_result(claim, [
            Scene(0.0, 1.0, 0, 25).with_annotations([Annotation("caption", "caption", "zebra runs", -1.0, field="hidden"),
                                                     Annotation("tags", "tag", "horse", 0.5, field="labels")]),
            Scene(1.0, 2.0, 25, 50).with_annotations([Annotation("caption", "caption", "a zebra eats zebra grass", -1.0)]),
        ], "m")
    mine, theirs = both(url, "zebra", 10)
    assert_same(mine, theirs) and len(mine) == 1
    mine, theirs = both(url, "zebra", 10, all_captions=True)
    assert_same(mine, theirs) and len(mine) == 2
    mine, theirs = both(url, "zebra horse", 10)
    assert mine == theirs == []


def test_recording_filter_and_ties_in_path_order(url):
    archive(url)
    for path in ("/a/film.ts", "/c/show.ts"):
        for q in ("man", "stage guitar", "sings", "microphone"):
            for limit in (3, 100):
                assert_same(*both(url, q, limit, recording=path))
    hits = find(url, "man", limit=1000)
    keyed = [(-h.score, h.recording, h.start) for h in hits]
    assert keyed == sorted(keyed) and len({h.score for h in hits}) < len(hits)  # ties, ordered by path, start


def test_search_returns_the_same_hits_either_way(url, monkeypatch):
    archive(url)
    for q in ("man sings", "guitar", "café", "the dog"):
        for all_captions in (False, True):
            indexed = find(url, q, limit=7, all_captions=all_captions)
            monkeypatch.setattr(search_module, "INDEX_MIN_SCENES", 10**12)
            plain = find(url, q, limit=7, all_captions=all_captions)
            monkeypatch.setattr(search_module, "INDEX_MIN_SCENES", 0)
            assert [(h.recording, h.start, h.annotations) for h in indexed] == \
                [(h.recording, h.start, h.annotations) for h in plain]
            assert [h.score for h in indexed] == pytest.approx([h.score for h in plain], rel=1e-9)


def test_the_lists_follow_every_change(url):
    put(url, "/a.ts", 1, 30)
    assert_same(*both(url, "man", 100))
    put(url, "/b.ts", 2, 30)  # a new recording
    assert_same(*both(url, "man", 100))
    put(url, "/a.ts", 3, 20)  # indexed again, other scenes
    mine, theirs = both(url, "man", 100)
    assert_same(mine, theirs)
    # no longer done: not searched, still counted by bm25's idf
    execute(url, update(Recording.__table__).where(Recording.path == "/b.ts").values(status="failed"))
    mine, theirs = both(url, "man", 100)
    assert_same(mine, theirs) and len(mine) < 40
    # a recording moved: ties order by its new path
    execute(url, update(Recording.__table__).where(Recording.path == "/a.ts").values(path="/z.ts", status="done"),
            update(Recording.__table__).where(Recording.path == "/b.ts").values(status="done"))
    assert_same(*both(url, "man", 100))
    execute(url, delete(Recording.__table__).where(Recording.path == "/z.ts"))  # deleted
    assert_same(*both(url, "man", 100))
    assert_same(*both(url, "dog stage", 100))


def test_the_cache_file_is_read_instead_of_the_index(url, monkeypatch):
    archive(url)
    assert_same(*both(url, "man", 50))
    assert list(text_index.cache_folder().glob("*.txt.idx"))
    text_index._open.clear()  # as a new process

    def no_build(*args):
        raise AssertionError("the FTS5 index was read again")

    monkeypatch.setattr(text_index, "build", no_build)
    mine, theirs = both(url, "man guitar", 50)
    assert_same(mine, theirs)
    engine = connect(url, create=False)
    with engine.connect() as conn:
        assert isinstance(text_index.postings(conn).scene.base, text_index.np.memmap)
    engine.dispose()


def test_without_a_writable_cache_the_lists_are_built_in_memory(url, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setattr(text_index, "cache_folder", lambda: blocker / "text")
    archive(url)
    for q in ("man", "stage sings", "café"):
        assert_same(*both(url, q, 10))
    assert list(tmp_path.glob("**/*.tmp")) == []


def test_what_the_lists_cannot_answer_goes_to_the_sql(url):
    with Store(url) as store:
        claim = store.claim("/a.ts", "h", "w1")
        store.save_result(claim, [
            Scene(0.0, 1.0, 0, 25).with_annotations([Annotation("ocr", "text", "新闻联播 don't stop", 1.0)]),
            Scene(1.0, 2.0, 25, 50).with_annotations([Annotation("caption", "caption", "don stop t", -1.0)]),
        ], "m")
    for q in ("新闻", "don't", "-"):  # a CJK phrase, a word of two tokens, no token at all
        mine, theirs = both(url, q, 10)
        assert mine is None
    assert [h.start for h in find(url, "新闻")] == [0.0]
    assert [h.start for h in find(url, "don't")] == [0.0]
    assert_same(*both(url, "stop", 10))


def test_small_archives_use_the_sql(url, monkeypatch):
    put(url, "/a.ts", 1, 20)
    monkeypatch.setattr(search_module, "INDEX_MIN_SCENES", 10**12)
    engine = connect(url, create=False)
    with engine.connect() as conn:
        assert indexed_ranking(conn, "man", 10, None, False) is None
    engine.dispose()
    assert find(url, "man")
