"""Chinese, Japanese and Korean text found by a few of its characters, in either Chinese script,
on both backends; and migration 0004 indexing what was stored before it."""

from __future__ import annotations

import pytest

from tvcaption.db import migrate
from tvcaption.db.search import fts5_query, search
from tvcaption.db.store import Store, connect
from tvcaption.scene import Annotation, Scene
from tvcaption.search_terms import index_terms, query_terms, simplified

pytest_plugins = ["pg"]

# What OCR and subtitles give: headlines in traditional and in simplified characters, Japanese,
# Korean, and a Latin lower third for contrast.
TEXTS = [
    "臺灣總統大選今日開票",  # traditional (Taiwan)
    "香港天文台发出红色暴雨警告",  # simplified
    "ニュース速報 東京で地震",  # Japanese
    "서울 날씨 맑음",  # Korean
    "Angela Merkel, Berlin",
]


def scenes() -> list[Scene]:
    return [Scene(4.0 * i, 4.0 * i + 4.0, 100 * i, 100 * i + 100).with_annotations(
                [Annotation("caption", "caption", "a person talks", -0.5),
                 Annotation("text", "text", text, 0.9)]) for i, text in enumerate(TEXTS)]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('cjk') / 'tv.db'}"
    else:
        request.getfixturevalue("pg_url")
        import pg

        url = pg.cluster().url(pg.cluster().create("cjk", pg.migrated_template()))
    engine = connect(url)
    store = Store(engine)
    store.save_result(store.claim("/tv/headlines.ts", "h", "w"), scenes(), "m")
    return engine


def starts(engine, query: str) -> list[float]:
    return [hit.start for hit in search(engine, query)]


@pytest.mark.parametrize("query, start", [
    ("台灣", 0.0), ("臺灣", 0.0), ("台湾", 0.0),  # two characters of a traditional headline, any form
    ("總統", 0.0), ("总统", 0.0), ("大選今日", 0.0), ("选", 0.0),  # inside the run; one character
    ("暴雨", 4.0), ("暴雨警告", 4.0), ("紅色暴雨", 4.0), ("天文臺", 4.0),  # a simplified headline, typed traditional
    ("地震", 8.0), ("ニュース", 8.0), ("速報", 8.0),  # Japanese kana and kanji
    ("날씨", 12.0), ("서울", 12.0),  # Korean
    ("Merkel", 16.0), ("berlin", 16.0),
    ("台灣 開票", 0.0), ("person 暴雨", 4.0),  # mixed with other words: all must match
])
def test_a_few_characters_find_the_text(engine, query: str, start: float):
    assert starts(engine, query) == [start]


@pytest.mark.parametrize("query", ["灣總統選", "票開", "警告暴雨", "台湾 地震", "東京大選", "맑음서울"])
def test_characters_out_of_order_or_from_two_texts_find_nothing(engine, query: str):
    assert starts(engine, query) == []


def test_the_text_a_person_reads_is_kept_as_it_was(engine):
    (hit,) = search(engine, "臺灣")
    assert [a.text for a in hit.of_kind("text")] == [TEXTS[0]]


def test_terms_are_pairs_of_simplified_characters():
    assert simplified("臺灣") == "台湾"
    assert index_terms("臺灣 大選") == "台 湾 台湾 大 选 大选"
    assert index_terms("plain text only") is None
    assert query_terms("台灣總統") == ([], ["台湾 湾总 总统"])
    assert query_terms("x台") == (["x"], ["台"])
    assert fts5_query("台灣 man") == '"man" "台湾"'


def test_migration_0004_indexes_what_was_stored_before_it(tmp_path):
    """A database at 0003 holding Chinese text: after upgrading, two characters find it."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = connect(url)
    migrate.downgrade(engine, "0003")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO recordings (path, status) VALUES ('/tv/old.ts', 'done')")
        conn.exec_driver_sql("INSERT INTO scenes (recording_id, \"index\", start, \"end\", start_frame, end_frame) "
                             "VALUES (1, 0, 0.0, 4.0, 0, 100)")
        conn.exec_driver_sql("INSERT INTO annotations (scene_id, analyser, kind, position, text, field) "
                             "VALUES (1, 'text', 'text', 0, '臺灣總統大選今日開票', 'text')")
    assert search(engine, "總統") == []  # 0003: the whole run is one word
    migrate.upgrade(engine)
    assert [h.start for h in search(engine, "总统")] == [0.0]
    migrate.downgrade(engine, "0003")
    with engine.connect() as conn:  # 0003's index again: the text alone, no pairs
        assert conn.exec_driver_sql("SELECT text FROM scene_fts").scalars().all() == ["臺灣總統大選今日開票"]
    assert search(engine, "總統") == []
