"""Words found with or without their accents on both backends: Greek (capitals carry none),
Cyrillic ё, and on PostgreSQL Latin too (SQLite's tokenizer folds Latin itself); the posting
lists as the SQL; and migration 0010 folding what was stored before it."""

from __future__ import annotations

import pytest

from tvcaption.db import migrate
from tvcaption.db.search import fts5_query, search, split_query
from tvcaption.db.store import Store, connect
from tvcaption.scene import Annotation, Scene
from tvcaption.search_terms import folded, folded_terms, postgresql

pytest_plugins = ["pg"]

# What subtitles and on-screen text give: Greek in lower case with accents and in capitals
# without, Russian with ё, French with accents, and a name OCR read without its accent.
TEXTS = [
    "Η Αθήνα σήμερα το πρωί",
    "ΕΙΔΗΣΕΙΣ ΑΠΟ ΤΗ ΘΕΣΣΑΛΟΝΙΚΗ",
    "Новогодняя ёлка в Москве",
    "Un café près de la gare",
    "Melenchon parle aux journalistes",
    "Ο λόγος του προέδρου",
]


def scenes() -> list[Scene]:
    return [Scene(4.0 * i, 4.0 * i + 4.0, 100 * i, 100 * i + 100).with_annotations(
                [Annotation("caption", "caption", "a person talks", -0.5),
                 Annotation("speech", "speech", text, None, field="text")]) for i, text in enumerate(TEXTS)]


def make(url: str):
    engine = connect(url)
    store = Store(engine)
    store.save_result(store.claim("/tv/news.ts", "h", "w"), scenes(), "m")
    return engine


def pg_url(name: str, locale: str | None = None) -> str:
    import pg

    if locale is None:
        return pg.cluster().url(pg.cluster().create(name, pg.migrated_template()))
    try:
        made = pg.cluster().create(name, "template0", locale)
    except Exception as exc:  # the server's system has no such locale
        pytest.skip(f"PostgreSQL cannot make a database of the {locale} locale: {exc}")
    return pg.cluster().url(made)


# PostgreSQL: the tests' server is of the C locale (it lowercases ASCII only); C.UTF-8 lowercases
# every script, as the UTF-8 locales most servers run in
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
            pytest.param("postgres-utf8", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    if request.param == "sqlite":
        return make(f"sqlite:///{tmp_path_factory.mktemp('accents') / 'tv.db'}")
    request.getfixturevalue("pg_url")
    return make(pg_url("accents", "C.UTF-8" if request.param == "postgres-utf8" else None))


def starts(engine, query: str) -> list[float]:
    return [hit.start for hit in search(engine, query)]


@pytest.mark.parametrize("query, start", [
    ("Αθήνα", 0.0), ("ΑΘΗΝΑ", 0.0), ("αθηνα", 0.0), ("ΣΗΜΕΡΑ Αθηνα", 0.0),  # accents or capitals
    ("Θεσσαλονίκη", 4.0), ("ειδήσεις", 4.0), ("θεσσαλονικη", 4.0),  # capitals found by the accented word
    ("ΛΟΓΟΣ", 20.0), ("λογος", 20.0), ("λόγος προέδρου", 20.0),  # final sigma either way
    ("ёлка", 8.0), ("елка", 8.0), ("ЁЛКА", 8.0), ("Москве", 8.0),
    ("café", 12.0), ("cafe", 12.0), ("CAFÉ", 12.0), ("pres", 12.0),  # Latin: on PostgreSQL too now
    ("Mélenchon", 16.0), ("melenchon", 16.0),  # an accent OCR dropped
])
def test_a_word_is_found_with_or_without_its_accents(engine, query: str, start: float):
    assert starts(engine, query) == [start]


@pytest.mark.parametrize("query", ["Αθήνα ΘΕΣΣΑΛΟΝΙΚΗ", "ёлка café", "йолка", "Αθηνών"])
def test_other_words_still_find_nothing(engine, query: str):
    assert starts(engine, query) == []


def test_the_text_a_person_reads_is_kept_as_it_was(engine):
    (hit,) = search(engine, "ΑΘΗΝΑ")
    assert [a.text for a in hit.of_kind("speech")] == [TEXTS[0]]


def test_folding():
    assert folded("Ἀθῆναι") == "Αθηναι" and folded("ΑΘΗΝΑ") == "ΑΘΗΝΑ" and folded("λόγος") == "λογοσ"
    assert folded("Ёлка") == "Елка" and folded("йод") == "йод" and folded("Її") == "Її"  # й, ї are letters
    pg, pg_c = postgresql(unicode_case=True), postgresql(unicode_case=False)
    assert folded("café") == "café" and folded("café", pg) == "cafe"  # Latin: PostgreSQL only
    assert folded("ΑΘΉΝΑ", pg) == "ΑΘΗΝΑ" and folded("ΑΘΉΝΑ", pg_c) == "αθηνα"  # the C locale keeps capitals
    assert folded_terms("Η Αθήνα, η πόλη") == "Αθηνα, πολη"
    assert folded_terms("plain ascii") is None and folded_terms("ΑΘΗΝΑ πας") is None  # nothing to fold
    assert folded_terms("un café", pg) == "cafe" and folded_terms("un café") is None
    assert folded_terms("πας", pg) == "πασ"  # PostgreSQL keeps the final sigma
    assert folded_terms("ΑΘΗΝΑ Ёлка", pg) == "Елка" and folded_terms("ΑΘΗΝΑ Ёлка", pg_c) == "αθηνα елка"
    assert split_query("ΑΘΉΝΑ café") == (["ΑΘΗΝΑ", "café"], [])
    assert split_query("ΑΘΉΝΑ café", pg) == (["ΑΘΗΝΑ", "cafe"], [])
    assert fts5_query("Αθήνα") == '"Αθηνα"'


def _old_database(url: str):
    """A database at 0009 holding accented text stored as 0009's tvcaption stored it (no folded terms)."""
    engine = connect(url)
    migrate.downgrade(engine, "0009")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO recordings (path, status) VALUES ('/tv/old.ts', 'done')")
        conn.exec_driver_sql('INSERT INTO scenes (recording_id, "index", start, "end", start_frame, end_frame) '
                             "VALUES (1, 0, 0.0, 4.0, 0, 100)")
        conn.exec_driver_sql("INSERT INTO annotations (scene_id, analyser, kind, position, text, field) "
                             "VALUES (1, 'speech', 'speech', 0, 'Η Αθήνα και η ёлка, un café', 'text')")
    return engine


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_0010_folds_what_was_stored_before_it(backend, tmp_path, request):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        request.getfixturevalue("pg_url")
        url = pg_url("accents_old", "C.UTF-8" if backend == "postgres-utf8" else None)
    engine = _old_database(url)
    for query in ("ΑΘΗΝΑ", "елка"):
        assert starts(engine, query) == []  # 0009: the accented words only
    migrate.upgrade(engine)
    for query in ("ΑΘΗΝΑ", "Αθήνα", "елка", "ёлка", "cafe", "café"):
        assert starts(engine, query) == [0.0], query
