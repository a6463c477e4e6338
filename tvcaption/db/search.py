"""Ranked full-text search over scene captions and tags.

Any user string is searched as words, never as SQL or as the backend's query syntax: the SQL is
built (:func:`build_search`) apart from running it, the user text only ever travels as a bound
parameter, and on SQLite each word is quoted as an FTS5 string (:func:`fts5_query`) so that
``AND``, ``NEAR``, ``*``, ``^``, ``:``, ``-``, quotes and parentheses are plain text. PostgreSQL
gets ``plainto_tsquery``, which parses no operators. All words must match (in the caption or
the tags); words are stemmed on both backends (porter / 'english'), so "man singing" finds "a man
sings", and English stop words are ignored on both. NUL characters are dropped because
PostgreSQL rejects them in text.

Scores are higher-is-better on both backends but not comparable between them: SQLite gives
``-bm25`` (caption weight 1, tags 0.5), PostgreSQL ``ts_rank`` (caption weight A, tags B;
normalised by 1 + log(length): without it every caption holding the word once ties).
Only recordings whose status is ``done`` are searched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Select, bindparam, column, func, literal_column, select, table
from sqlalchemy.exc import OperationalError, ProgrammingError

from tvcaption.db.schema import SEARCH_TABLE, Recording, Scene, Tag
from tvcaption.errors import DatabaseError

CAPTION_WEIGHT, TAGS_WEIGHT = 1.0, 0.5  # SQLite bm25 column weights (PostgreSQL: A and B)
MAX_WORDS = 64  # longer queries are cut: nobody types more, and each word costs a lookup
TS_CONFIG = "english"


@dataclass(frozen=True)
class Hit:
    recording: str  # the recording's path
    start: float  # seconds from the recording's first frame
    end: float
    caption: str
    tags: tuple[str, ...]  # labels, most probable first
    score: float  # higher is better; compare only within one backend


# PostgreSQL's 'english' stop words (snowball english.stop). FTS5 has no stop-word list, so the
# SQLite query drops them too: "the man singing" then means the same on both backends.
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she
her hers herself it its itself they them their theirs themselves what which who whom this that
these those am is are was were be been being have has had having do does did doing a an the and
but if or because as until while of at by for with about against between into through during
before after above below to from up down in out on off over under again further then once here
there when where why how all any both each few more most other some such no nor not only own
same so than too very s t can will just don should now
""".split())


def words(query: str) -> list[str]:
    """The query's whitespace-separated words, NULs dropped, at most MAX_WORDS."""
    return query.replace("\x00", " ").split()[:MAX_WORDS]


def quote_fts5(word: str) -> str:
    """One word as an FTS5 string literal: inside double quotes, nothing is an operator."""
    return '"' + word.replace('"', '""') + '"'


def _is_stop_word(word: str) -> bool:
    return "".join(ch for ch in word.lower() if ch.isalnum()) in STOP_WORDS


def fts5_query(query: str) -> str:
    """The FTS5 MATCH expression for a user query: every word quoted, all required.

    Stop words are dropped; a quoted word the tokenizer finds no token in (``"-"``) is
    ignored by FTS5 itself. An empty result means: nothing to search for.
    """
    return " ".join(quote_fts5(w) for w in words(query) if not _is_stop_word(w))


_fts = table(SEARCH_TABLE, column("rowid"), column("scene_id"), column("caption"),
             column("tags"), column("document"))
_recordings = Recording.__table__
_scenes = Scene.__table__
_tags = Tag.__table__


def build_search(dialect: str, query: str, limit: int = 20, recording: str | None = None) -> Select | None:
    """The ranked search as a SELECT (user text only in bound parameters), or None for no words."""
    terms = words(query)
    if not terms or limit <= 0:
        return None
    if dialect == "sqlite":
        expression = fts5_query(query)
        if not expression:
            return None
        # bm25() is smaller for better matches; MATCH must name the table itself
        fts_table = literal_column(SEARCH_TABLE)
        score = -func.bm25(fts_table, CAPTION_WEIGHT, TAGS_WEIGHT)
        scene_id = _fts.c.rowid
        match = fts_table.op("MATCH")(bindparam("fts_query", expression))
    elif dialect == "postgresql":
        tsquery = func.plainto_tsquery(literal_column(f"'{TS_CONFIG}'::regconfig"),
                                       bindparam("text_query", " ".join(terms)))
        score = func.ts_rank(_fts.c.document, tsquery, 1)  # 1: divided by 1 + log(length), so short captions win ties
        scene_id = _fts.c.scene_id
        match = _fts.c.document.op("@@")(tsquery)
    else:
        raise DatabaseError(f"{dialect}: full-text search is only implemented for SQLite and PostgreSQL")
    score = score.label("score")
    stmt = (
        select(_recordings.c.path, _scenes.c.start, _scenes.c.end, _fts.c.caption, score, _scenes.c.id)
        .select_from(_fts)
        .join(_scenes, _scenes.c.id == scene_id)
        .join(_recordings, _recordings.c.id == _scenes.c.recording_id)
        .where(match, _recordings.c.status == "done")
        .order_by(score.desc(), _recordings.c.path, _scenes.c.start)
        .limit(limit)
    )
    if recording is not None:
        stmt = stmt.where(_recordings.c.path == str(recording))
    return stmt


def search(engine: Engine | Any, query: str, limit: int = 20, recording: str | None = None) -> list[Hit]:
    """Scenes whose caption or tags contain every word of ``query``, best first.

    ``engine`` is an Engine (or anything with an ``.engine``, such as a Store); ``recording``
    limits the search to one recording path. An empty or all-whitespace query finds nothing.
    """
    engine = getattr(engine, "engine", engine)
    stmt = build_search(engine.dialect.name, query, limit, recording)
    if stmt is None:
        return []
    try:
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
            scene_ids = [row.id for row in rows]
            tags: dict[int, list[str]] = {}
            if scene_ids:
                tag_rows = conn.execute(
                    select(_tags.c.scene_id, _tags.c.label).where(_tags.c.scene_id.in_(scene_ids))
                    .order_by(_tags.c.scene_id, _tags.c.score.desc(), _tags.c.id))
                for scene_id, label in tag_rows:
                    tags.setdefault(scene_id, []).append(label)
    except (OperationalError, ProgrammingError) as exc:
        label = engine.url.render_as_string(hide_password=True)
        first = str(exc.orig or exc).strip().splitlines()[0]
        raise DatabaseError(f"{label}: search failed ({first}); run tvcaption db upgrade") from exc
    return [Hit(recording=row.path, start=row.start, end=row.end, caption=row.caption or "",
                tags=tuple(tags.get(row.id, ())), score=float(row.score)) for row in rows]
