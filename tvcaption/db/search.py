"""Ranked full-text search over what analysers said of each scene.

The index (``scene_fts``, migration 0003) holds one row per scene with two columns: ``text``
(annotations whose search field is 'text': captions, later on-screen text and speech) and
``labels`` (field 'labels': tags). Search reads them without knowing which analyser wrote what;
each hit carries all of its scene's annotations, fetched for the whole page in one more query.

Any user string is searched as words, never as SQL or as the backend's query syntax: the SQL is
built (:func:`build_search`) apart from running it, the user text only ever travels as a bound
parameter, and on SQLite each word is quoted as an FTS5 string (:func:`fts5_query`) so that
``AND``, ``NEAR``, ``*``, ``^``, ``:``, ``-``, quotes and parentheses are plain text. PostgreSQL
gets ``plainto_tsquery``, which parses no operators. All words must match (in the text or the
labels); words are stemmed on both backends (porter / 'english'), so "man singing" finds "a man
sings", and English stop words are ignored on both. NUL characters are dropped because
PostgreSQL rejects them in text.

Chinese, Japanese and Korean text is found by any two or more of its characters in order, typed
in traditional or simplified form: the index holds the pairs of its characters, simplified
(:mod:`tvcaption.search_terms`, migration 0004), and such a run in the query becomes the phrase
of its pairs.

Symbols and emoji are separators on both backends (:func:`words`): SQLite's unicode61 tokenizer
never indexes them, while PostgreSQL's parser, on a server with the C locale, takes every
non-ASCII character for a letter, so "🎤 singing" found the singing scenes on SQLite and nothing
on PostgreSQL. Every non-ASCII character that is not a letter, a digit, a combining accent or
private use is therefore replaced by a space before either backend sees the query.

Scores are higher-is-better on both backends but not comparable between them: SQLite gives
``-bm25`` (text weight 1, labels 0.5), PostgreSQL ``ts_rank`` (text weight A, labels B;
normalised by 1 + log(length): without it every caption holding the word once ties).
Only recordings whose status is ``done`` are searched.

Ranking FTS5's way costs a bm25 call per matching row: at 1M scenes a common word matches a
quarter of them. On SQLite archives whose scene ids reach :data:`INDEX_MIN_SCENES` the ranking
therefore comes from posting lists read once from the FTS5 index into a memory-mapped file
(:mod:`tvcaption.db.text_index`, kept current by migration 0008's counter): the same scenes, the
same scores and the same order as the SQL, which still answers what the lists cannot (CJK
phrases, a word FTS5 splits into several tokens). Below that size the SQL takes a few ms and
text search imports no numpy; above it numpy's import (~0.1 s) is part of a one-shot
``tvcaption search``. PostgreSQL always ranks in SQL (``ts_rank``).

Annotations under the search field 'hidden' (out-of-domain captions, migration 0006) are in the
index's third column but answer a search only with ``all_captions``: SQLite then matches all
columns instead of ``{text labels}`` (weight 0.25), PostgreSQL the whole ``document`` instead of
its weights A and B (``ts_filter``; hidden text is weight C). Without it, hits also leave hidden
annotations out, so a scene found by its tags shows no out-of-domain caption.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Select, bindparam, column, func, literal_column, select, table
from sqlalchemy.exc import DBAPIError

from tvcaption.db.engine import damage, damaged_error, database_error
from tvcaption.db.paths import find_stored
from tvcaption.db.scenes import annotations_of
from tvcaption.db.schema import SEARCH_TABLE, Recording, Scene
from tvcaption.errors import DatabaseError, TvcaptionError
from tvcaption.scene import Annotated, Annotation
from tvcaption.search_terms import query_terms

TEXT_WEIGHT, LABELS_WEIGHT, HIDDEN_WEIGHT = 1.0, 0.5, 0.25  # SQLite bm25 column weights (PostgreSQL: A, B, C)
VISIBLE_WEIGHTS = "{a,b}"  # PostgreSQL: the document's weights an ordinary search reads (C: hidden)
MAX_WORDS = 64  # longer queries are cut: nobody types more, and each word costs a lookup
MAX_LIMIT = 10_000  # more results than anyone reads; larger limits are cut to this
# SQLite archives whose scene ids reach this are ranked from posting lists (module docstring);
# below it FTS5's own bm25 takes a few ms and text search needs no numpy (0.1 s to import)
INDEX_MIN_SCENES = 100_000
TS_CONFIG = "english"
# Unicode categories that are word characters on both backends: letters, digits (N*), combining
# accents (Mn: folded into the letter by unicode61, part of the word for PostgreSQL), private use
# (Co) and unassigned code points (Cn; unicode61 keeps them). Anything else outside ASCII
# (symbols, emoji, punctuation, spacing marks, format characters, lone surrogates) separates words.
_WORD_CATEGORIES = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nd", "Nl", "No", "Mn", "Co", "Cn"})


@dataclass(frozen=True)
class Hit(Annotated):
    """A scene found, with everything analysers said of it (in their order); ``caption`` and
    ``tags`` read from those annotations (:class:`~tvcaption.scene.Annotated`)."""

    recording: str  # the recording's path
    start: float  # seconds from the recording's first frame
    end: float
    score: float  # higher is better; compare only within one backend (not the caption's score)
    annotations: tuple[Annotation, ...] = ()


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


def _is_separator(ch: str) -> bool:
    if ch < "\x80":
        return ch < " " or ch == "\x7f"  # control characters; ASCII punctuation is left to the backends
    return unicodedata.category(ch) not in _WORD_CATEGORIES


def words(query: str) -> list[str]:
    """The query's words, at most MAX_WORDS: split at whitespace, NULs and control characters, and
    at symbols, emoji and other non-ASCII characters that neither backend indexes (module docstring)."""
    out: list[str] = []
    for word in query.split():
        if word.isascii() and word.isprintable():
            out.append(word)
        else:
            out.extend("".join(" " if _is_separator(ch) else ch for ch in word).split())
        if len(out) >= MAX_WORDS:
            break
    return out[:MAX_WORDS]


def check_limit(limit: int) -> int:
    """``limit`` as the number of rows to ask for: at least 1 (else a one-line error), at most MAX_LIMIT."""
    try:
        value = int(limit)
    except (TypeError, ValueError, OverflowError):
        raise TvcaptionError(f"limit {limit!r}: give a whole number of results, at least 1") from None
    if value < 1:
        raise TvcaptionError(f"limit {value}: give at least 1 (the number of results to show, "
                             f"at most {MAX_LIMIT})")
    return min(value, MAX_LIMIT)


def quote_fts5(word: str) -> str:
    """One word as an FTS5 string literal: inside double quotes, nothing is an operator."""
    return '"' + word.replace('"', '""') + '"'


def _is_stop_word(word: str) -> bool:
    return "".join(ch for ch in word.lower() if ch.isalnum()) in STOP_WORDS


def split_query(query: str) -> tuple[list[str], list[str]]:
    """The query as (plain words, CJK phrases): words of :func:`words`, where a run of Chinese,
    Japanese or Korean characters becomes the phrase of its character pairs, simplified
    (:mod:`tvcaption.search_terms`: the index holds those pairs for such text)."""
    plain: list[str] = []
    phrases: list[str] = []
    for word in words(query):
        more, found = query_terms(word)
        plain += more
        phrases += found
    return plain, phrases


def fts5_query(query: str) -> str:
    """The FTS5 MATCH expression for a user query: every word (of :func:`words`) quoted, all
    required; a CJK run as the quoted phrase of its pairs.

    Stop words are dropped; a quoted word the tokenizer finds no token in (``"-"``) is
    ignored by FTS5 itself. An empty result means: nothing to search for.
    """
    plain, phrases = split_query(query)
    return " ".join([quote_fts5(w) for w in plain if not _is_stop_word(w)] + [quote_fts5(p) for p in phrases])


def _pg_tsquery(query: str):
    """plainto_tsquery of the plain words AND phraseto_tsquery of each CJK phrase (bound parameters)."""
    config = literal_column(f"'{TS_CONFIG}'::regconfig")
    plain, phrases = split_query(query)
    parts = [func.plainto_tsquery(config, bindparam("text_query", " ".join(plain)))] if plain else []
    parts += [func.phraseto_tsquery(config, bindparam(f"phrase_{i}", p)) for i, p in enumerate(phrases)]
    tsquery = parts[0]
    for part in parts[1:]:
        tsquery = tsquery.op("&&")(part)
    return tsquery


_fts = table(SEARCH_TABLE, column("rowid"), column("scene_id"), column("text"),
             column("labels"), column("hidden"), column("document"))
_recordings = Recording.__table__
_scenes = Scene.__table__


def build_search(dialect: str, query: str, limit: int = 20, recording: str | None = None,
                 all_captions: bool = False) -> Select | None:
    """The ranked search as a SELECT (user text only in bound parameters), or None for no words.

    ``recording`` is a path exactly as stored (:func:`search` finds it from any spelling);
    ``limit`` must be at least 1 and is cut to MAX_LIMIT; ``all_captions``: hidden annotations
    (out-of-domain captions) match too.
    """
    limit = check_limit(limit)
    terms = words(query)
    if not terms:
        return None
    if dialect == "sqlite":
        expression = fts5_query(query)
        if not expression:
            return None
        # bm25() is smaller for better matches; MATCH must name the table itself
        fts_table = literal_column(SEARCH_TABLE)
        score = -func.bm25(fts_table, TEXT_WEIGHT, LABELS_WEIGHT, HIDDEN_WEIGHT)
        scene_id = _fts.c.rowid
        if not all_captions:
            expression = f"{{text labels}} : ({expression})"
        match = fts_table.op("MATCH")(bindparam("fts_query", expression))
    elif dialect == "postgresql":
        tsquery = _pg_tsquery(query)
        document = _fts.c.document
        match = document.op("@@")(tsquery)  # the GIN index finds the candidates
        if not all_captions:  # ... and only the visible weights may match
            document = func.ts_filter(document, literal_column(f"'{VISIBLE_WEIGHTS}'::\"char\"[]"))
            match = match & document.op("@@")(tsquery)
        score = func.ts_rank(document, tsquery, 1)  # 1: divided by 1 + log(length), so short texts win ties
        scene_id = _fts.c.scene_id
    else:
        raise DatabaseError(f"{dialect}: full-text search is only implemented for SQLite and PostgreSQL")
    score = score.label("score")
    stmt = (
        select(_recordings.c.path, _scenes.c.start, _scenes.c.end, score, _scenes.c.id)
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


def search(engine: Engine | Any, query: str, limit: int = 20,
           recording: str | os.PathLike[str] | None = None, all_captions: bool = False) -> list[Hit]:
    """Scenes whose indexed text or labels contain every word of ``query``, best first.

    ``engine`` is an Engine (or anything with an ``.engine``, such as a Store); ``recording``
    limits the search to one recording, named by any path that resolves to it (relative, with
    ``..``, through a symlink: see :func:`tvcaption.db.paths.find_stored`); a path that names no
    indexed recording finds nothing. An empty or all-whitespace query finds nothing. ``limit``
    below 1 is a :class:`TvcaptionError`; above MAX_LIMIT it is cut to MAX_LIMIT.
    ``all_captions``: out-of-domain captions (hidden annotations) are searched and returned too;
    by default they neither match nor come with the hits.
    """
    engine = getattr(engine, "engine", engine)
    limit = check_limit(limit)
    if not words(query) or (engine.dialect.name == "sqlite" and not fts5_query(query)):
        return []  # what build_search answers with None, without building the statement
    try:
        with engine.connect() as conn:
            stored = find_recording(conn, recording)
            if stored is NOT_INDEXED:
                return []
            ranked = indexed_ranking(conn, query, limit, stored, all_captions)
            if ranked is None:
                stmt = build_search(engine.dialect.name, query, limit, stored and stored.path, all_captions)
                ranked = [(row.id, float(row.score)) for row in conn.execute(stmt)]
            hits = hits_of(conn, ranked)
    except DBAPIError as exc:
        error = _search_error(engine, exc)
        if error is None:
            raise
        raise error from exc
    return hits if all_captions else without_hidden(hits)


def indexed_ranking(conn, query: str, limit: int, stored, all_captions: bool) -> list[tuple[int, float]] | None:
    """(scene id, score) best first from the posting lists (:mod:`tvcaption.db.text_index`), the
    same as the SQL's; None where they do not answer: PostgreSQL, an archive whose scene ids stay
    below INDEX_MIN_SCENES, and what :func:`tvcaption.db.text_index.ranking` leaves to the SQL."""
    if conn.dialect.name != "sqlite" or limit < 1:
        return None
    if (conn.execute(select(func.max(_scenes.c.id))).scalar() or 0) < INDEX_MIN_SCENES:
        return None
    plain, phrases = split_query(query)
    if phrases:
        return None  # CJK: a phrase of character pairs, which needs positions
    from tvcaption.db import text_index

    return text_index.ranking(conn, [w for w in plain if not _is_stop_word(w)], limit,
                              stored and stored.id, all_captions)


def hits_of(conn, ranked: list[tuple[int, float]]) -> list[Hit]:
    """The hits for (scene id, score) pairs, in their order, with every annotation."""
    if not ranked:
        return []
    ids = [scene_id for scene_id, _ in ranked]
    rows = {row.id: row for row in conn.execute(
        select(_scenes.c.id, _scenes.c.start, _scenes.c.end, _recordings.c.path)
        .join(_recordings, _recordings.c.id == _scenes.c.recording_id).where(_scenes.c.id.in_(ids)))}
    annotations = annotations_of(conn, ids)
    return [Hit(recording=rows[i].path, start=rows[i].start, end=rows[i].end, score=score,
                annotations=annotations.get(i, ())) for i, score in ranked if i in rows]


NOT_INDEXED = object()  # find_recording: a recording was named and none is stored at that path


def find_recording(conn, recording: str | os.PathLike[str] | None) -> Any:
    """The ``--recording`` filter of every search mode: None when no recording was named, the
    stored ``recordings`` row that ``recording`` names (any path to it: :func:`find_stored`), or
    :data:`NOT_INDEXED` when it names none (the search then finds nothing)."""
    if recording is None:
        return None
    row = find_stored(conn, recording)
    return NOT_INDEXED if row is None else row


def without_hidden(hits: list[Hit]) -> list[Hit]:
    """The hits without their hidden annotations (out-of-domain captions): what a search shows
    unless asked for all captions."""
    from dataclasses import replace

    return [replace(h, annotations=tuple(a for a in h.annotations if not a.hidden))
            if any(a.hidden for a in h.annotations) else h for h in hits]


def _search_error(engine: Engine, exc: DBAPIError) -> DatabaseError | None:
    """One line for a failed search (a damaged file, a schema without the search index, a server
    gone), or None for errors that are bugs, to be raised as they are."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    reason = damage(exc)
    if reason is not None:
        return damaged_error(engine, reason)
    if not isinstance(exc, (OperationalError, ProgrammingError)):
        return None
    if isinstance(exc, OperationalError) and ("locked" in str(exc.orig) or "busy" in str(exc.orig)):
        return database_error(engine, exc)
    first = (str(exc.orig or exc).strip().splitlines() or [type(exc).__name__])[0]
    label = engine.url.render_as_string(hide_password=True)
    schema = "no such table" in first or "does not exist" in first or "no such column" in first
    return DatabaseError(f"{label}: search failed ({first})" + ("; run tvcaption db upgrade" if schema else ""))
