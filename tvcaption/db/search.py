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

Scores are higher-is-better bm25 on both backends, one formula (k1 1.2, b 0.75; text weight 1,
labels 0.5, hidden 0.25; :mod:`tvcaption.db.text_index` spells it out): SQLite's is FTS5's own
``-bm25``, PostgreSQL's is written in SQL over the stored tsvector (:func:`_pg_bm25`: weights A,
B, C; its own lexemes, each distinct lexeme once). PostgreSQL ranked by ``ts_rank`` before: with
AND of lexemes it weighs their positions, which per-term parts of posting lists cannot
reproduce, and it had no idf; one formula lets both backends answer from the same posting lists
and rank alike. Scores still differ between backends (their tokens are not the same: porter
tokens, 'english' lexemes). Only recordings whose status is ``done`` are searched.

Ranking in SQL costs work per matching row: at 1M scenes a common word matches a quarter of them.
On archives whose scene ids reach :data:`INDEX_MIN_SCENES` (PostgreSQL: a tenth of it) the ranking therefore comes from
posting lists read once from the index into a memory-mapped file (:mod:`tvcaption.db.text_index`,
kept current by migration 0008's counter, on both backends): the same scenes, the same scores
and the same order as the SQL, which still answers what the lists cannot (CJK phrases; on SQLite
a word FTS5 splits into several tokens). Below that size the SQL takes a few ms on SQLite and
text search imports no numpy; above it numpy's import (~0.1 s) is part of a one-shot
``tvcaption search``. PostgreSQL's SQL bm25 is slower than ``ts_rank`` was (~14 us a match
against ~1.6 us, and a ``ts_stat`` count of the table's tokens, kept per text version by
:func:`text_stats`): fine below INDEX_MIN_SCENES and for the CJK fallback, not at 1M scenes.

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

from sqlalchemy import Engine, Float, Select, bindparam, column, func, literal_column, select, table, text, true
from sqlalchemy.exc import DBAPIError

from tvcaption.db import search_cache
from tvcaption.db.bm25 import (BM25_B, BM25_K1, HIDDEN_WEIGHT, LABELS_WEIGHT, MIN_IDF, TEXT_WEIGHT, TS_CONFIG,
                               is_stop_word)
from tvcaption.db.engine import damage, damaged_error, database_error
from tvcaption.db.paths import find_stored
from tvcaption.db.scenes import annotations_of, text_backend
from tvcaption.db.schema import SEARCH_TABLE, Recording, Scene
from tvcaption.errors import DatabaseError, TvcaptionError
from tvcaption.scene import Annotated, Annotation
from tvcaption.search_terms import SQLITE, Backend, postgresql, query_terms

VISIBLE_WEIGHTS = "{a,b}"  # PostgreSQL: the document's weights an ordinary search reads (C: hidden)
MAX_WORDS = 64  # longer queries are cut: nobody types more, and each word costs a lookup
MAX_LIMIT = 10_000  # more results than anyone reads; larger limits are cut to this
# SQLite archives whose scene ids reach this are ranked from posting lists (module docstring);
# below it FTS5's own bm25 takes a few ms and text search needs no numpy (0.1 s to import)
INDEX_MIN_SCENES = 100_000
# PostgreSQL's from a tenth of that: its SQL bm25 costs ~14 us a match (bench/results/text_index_pg.json),
# so a word in a quarter of 100k scenes would take ~350 ms there; at 10k, ~35 ms
PG_INDEX_FRACTION = 10
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


def split_query(query: str, backend: Backend = SQLITE) -> tuple[list[str], list[str]]:
    """The query as (plain words, CJK phrases): words of :func:`words` folded as ``backend`` does
    not fold them (:func:`~tvcaption.db.scenes.text_backend`), where a run of Chinese, Japanese or
    Korean characters becomes the phrase of its character pairs, simplified
    (:mod:`tvcaption.search_terms`: the index holds those pairs and folded words)."""
    plain: list[str] = []
    phrases: list[str] = []
    for word in words(query):
        more, found = query_terms(word, backend)
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
    return " ".join([quote_fts5(w) for w in plain if not is_stop_word(w)] + [quote_fts5(p) for p in phrases])


def _pg_query(query: str, backend: Backend) -> tuple[str, str, list]:
    """The query as (tsquery SQL, tsvector SQL of its lexemes, bound parameters): plainto_tsquery
    of the plain words AND phraseto_tsquery of each CJK phrase; the same texts through
    to_tsvector hold the same lexemes (what bm25 sums over)."""
    config = f"'{TS_CONFIG}'::regconfig"
    plain, phrases = split_query(query, backend)
    texts = ([("text_query", " ".join(plain), "plainto_tsquery")] if plain else []) + \
        [(f"phrase_{i}", p, "phraseto_tsquery") for i, p in enumerate(phrases)]
    tsquery = "(" + " && ".join(f"{make}({config}, :{name})" for name, _, make in texts) + ")"
    vector = " || ".join(f"to_tsvector({config}, :{name})" for name, _, _ in texts)
    return tsquery, vector, [bindparam(name, value) for name, value, _ in texts]


def _weighted(weights: dict[str, float]) -> str:
    """SQL: the weighted count of a lexeme's positions (``t`` of ``unnest(document)``)."""
    return " + ".join(f"coalesce(cardinality(array_positions(t.weights, '{w}')), 0)::float8 * {value!r}::float8"
                      for w, value in weights.items())


# SQL: the positions of every lexeme of every row (D summed over the table), ts_stat's count (C; 1.6 s
# at 1M scenes where unnesting every row took 6.4 s)
_PG_TOKENS = f"SELECT coalesce(sum(nentry), 0) FROM ts_stat('SELECT document FROM {SEARCH_TABLE}')"
# SQL: a lexeme ``l.lexeme`` as a tsquery string literal ('' and \\ escaped, as tsquery input reads them)
_QUOTED = "'''' || replace(replace(l.lexeme, '\\', '\\\\'), '''', '''''') || ''''"


def _pg_bm25(query: str, all_captions: bool, stats: tuple[int, int] | None, backend: Backend):
    """Every row of ``scene_fts`` the query matches, with its bm25 (module docstring), as a
    subquery (scene_id, score). The user text only in bound parameters; the rest are constants.

    Once per statement: N and avgdl (``stats``: N and the table's tokens at this text version, else
    counted here, :data:`_PG_TOKENS`) and each lexeme's n (a GIN lookup with the lexeme as a tsquery, weights
    A and B unless ``all_captions``). Per match: D its positions, f a lexeme's weighted positions;
    distinct lexemes summed in byte order, each ``idf * ((f * (k1 + 1)) / (f + k1 * ((1 - b) +
    b * D / avgdl)))``: the operations :mod:`tvcaption.db.text_index` does, so both give the same
    doubles. The tsquery is written out in the match (not read from a CTE) so that the planner
    estimates the matches from the GIN index's statistics; the visible-weights test is wrapped in
    coalesce() for the same reason (PostgreSQL guesses 0.5% of rows for ``ts_filter(..) @@ ..``
    and then joined every recording with every match)."""
    tsquery, vector, params = _pg_query(query, backend)
    weights = {"A": TEXT_WEIGHT, "B": LABELS_WEIGHT} | ({"C": HIDDEN_WEIGHT} if all_captions else {})
    visible = "" if all_captions else \
        f" AND coalesce(ts_filter(f.document, '{VISIBLE_WEIGHTS}'::\"char\"[]) @@ {tsquery}, false)"
    only = "" if all_captions else "\\:AB"  # a weight restriction in tsquery syntax (\: is no parameter)
    k1, b, k1_plus_1, one_minus_b = (repr(float(x)) for x in (BM25_K1, BM25_B, BM25_K1 + 1.0, 1 - BM25_B))
    f = _weighted(weights)
    if stats is None:
        counted = f"""SELECT count(*)::float8 AS n_rows, ({_PG_TOKENS})::float8 AS tokens FROM {SEARCH_TABLE}"""
    else:  # (N, tokens) known at this text version (text_stats)
        counted = "SELECT CAST(:bm25_rows AS float8) AS n_rows, CAST(:bm25_tokens AS float8) AS tokens"
        params += [bindparam("bm25_rows", int(stats[0])), bindparam("bm25_tokens", int(stats[1]))]
    sql = f"""WITH tvc_stats AS MATERIALIZED (
    SELECT n_rows, tokens / greatest(n_rows, 1::float8) AS avgdl FROM ({counted}) c
), tvc_terms AS MATERIALIZED (
    SELECT array_agg(l.lexeme ORDER BY l.lexeme COLLATE "C") AS lexemes,
           array_agg(CASE WHEN l.idf <= 0 THEN {MIN_IDF!r}::float8 ELSE l.idf END ORDER BY l.lexeme COLLATE "C") AS idfs
    FROM (SELECT l.lexeme, ln((s.n_rows - c.n + 0.5::float8) / (c.n + 0.5::float8)) AS idf
          FROM unnest(tsvector_to_array({vector})) AS l(lexeme) CROSS JOIN tvc_stats s
          CROSS JOIN LATERAL (SELECT count(*)::float8 AS n FROM {SEARCH_TABLE} g
                              WHERE g.document @@ ({_QUOTED} || '{only}')::tsquery) c) l
)
SELECT f.scene_id, (
    SELECT sum(k.idfs[array_position(k.lexemes, t.lexeme)]
               * ((({f}) * {k1_plus_1}::float8) / (({f}) + {k1}::float8 * ({one_minus_b}::float8 + {b}::float8 * d.dl / s.avgdl)))
               ORDER BY t.lexeme COLLATE "C")
    FROM unnest(f.document) t WHERE t.lexeme = ANY(k.lexemes)
) AS score
FROM {SEARCH_TABLE} f CROSS JOIN tvc_stats s CROSS JOIN tvc_terms k
CROSS JOIN LATERAL (SELECT sum(cardinality(t.positions))::float8 AS dl FROM unnest(f.document) t) d
WHERE f.document @@ {tsquery}{visible}"""
    return text(sql).bindparams(*params).columns(column("scene_id"), column("score", Float)).subquery("tvc_ranked")


_fts = table(SEARCH_TABLE, column("rowid"), column("scene_id"), column("text"),
             column("labels"), column("hidden"), column("document"))
_recordings = Recording.__table__
_scenes = Scene.__table__


def build_search(dialect: str, query: str, limit: int = 20, recording: str | None = None,
                 all_captions: bool = False, stats: tuple[int, int] | None = None,
                 backend: Backend | None = None) -> Select | None:
    """The ranked search as a SELECT (user text only in bound parameters), or None for no words.

    ``recording`` is a path exactly as stored (:func:`search` finds it from any spelling);
    ``limit`` must be at least 1 and is cut to MAX_LIMIT; ``all_captions``: hidden annotations
    (out-of-domain captions) match too; ``stats``: PostgreSQL's (N, tokens) of :func:`text_stats`,
    else the statement counts them (a scan of the table); ``backend``: what the database's
    tokenizer folds (:func:`~tvcaption.db.scenes.text_backend`; by default SQLite's, or a
    PostgreSQL database of a UTF-8 locale).
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
        source, scene_id = _fts, _fts.c.rowid
        if not all_captions:
            expression = f"{{text labels}} : ({expression})"
        match = fts_table.op("MATCH")(bindparam("fts_query", expression))
    elif dialect == "postgresql":
        source = _pg_bm25(query, all_captions, stats, backend or postgresql(unicode_case=True))  # the match is inside
        score, scene_id, match = source.c.score, source.c.scene_id, true()
    else:
        raise DatabaseError(f"{dialect}: full-text search is only implemented for SQLite and PostgreSQL")
    score = score.label("score")
    stmt = (
        select(_recordings.c.path, _scenes.c.start, _scenes.c.end, score, _scenes.c.id)
        .select_from(source)
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
                ranked = sql_ranking(conn, query, limit, stored, all_captions)
            hits = hits_of(conn, ranked)
    except DBAPIError as exc:
        error = _search_error(engine, exc)
        if error is None:
            raise
        raise error from exc
    return hits if all_captions else without_hidden(hits)


def sql_ranking(conn, query: str, limit: int, stored, all_captions: bool) -> list[tuple[int, float]]:
    """(scene id, score) best first from the SQL of :func:`build_search` (PostgreSQL: with N and
    the table's tokens from :func:`text_stats`)."""
    stats = text_stats(conn) if conn.dialect.name == "postgresql" else None
    stmt = build_search(conn.dialect.name, query, limit, stored and stored.path, all_captions, stats,
                        text_backend(conn))
    return [] if stmt is None else [(int(row.id), float(row.score)) for row in conn.execute(stmt)]


_stats: dict[str, tuple[int, int, int]] = {}  # database key -> (text version, N, tokens)


def text_stats(conn) -> tuple[int, int] | None:
    """PostgreSQL: (rows of ``scene_fts``, positions of all their lexemes) at the database's text
    version (migration 0008), counted once per version (~0.2 s at 100,000 scenes) and kept in
    this process and in the user's cache folder; None before migration 0008 (then the statement
    counts them)."""
    import json

    from tvcaption.db import search_cache

    current = search_cache.version(conn, search_cache.TEXT_VERSION_SQL)
    if current is None:
        return None
    key = search_cache.database_key(conn, "text")
    held = _stats.get(key)
    if held is not None and held[0] == current:
        return held[1:]
    path = search_cache.cache_folder("text") / f"{key}.stats.json"
    try:
        kept = json.loads(path.read_text())
        found = (int(kept["rows"]), int(kept["tokens"])) if kept.get("version") == current else None
    except (OSError, ValueError, KeyError, TypeError):
        found = None
    if found is None:
        found = tuple(int(v) for v in conn.execute(text(f"SELECT count(*), ({_PG_TOKENS}) FROM {SEARCH_TABLE}")).one())
        if search_cache.version(conn, search_cache.TEXT_VERSION_SQL) != current:
            return found  # the index changed while we counted: not kept
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"version": current, "rows": found[0], "tokens": found[1]}))
        except OSError:
            pass
    _stats[key] = (current, *found)
    return found


def indexed_ranking(conn, query: str, limit: int, stored, all_captions: bool) -> list[tuple[int, float]] | None:
    """(scene id, score) best first from the posting lists (:mod:`tvcaption.db.text_index`), the
    same as the SQL's; None where they do not answer: an archive whose scene ids stay below
    INDEX_MIN_SCENES, a CJK phrase, and what :func:`tvcaption.db.text_index.ranking` leaves to the SQL."""
    if conn.dialect.name not in ("sqlite", "postgresql") or limit < 1:
        return None
    least = INDEX_MIN_SCENES if conn.dialect.name == "sqlite" else INDEX_MIN_SCENES // PG_INDEX_FRACTION
    if (conn.execute(select(func.max(_scenes.c.id))).scalar() or 0) < least:
        return None
    plain, phrases = split_query(query, text_backend(conn))
    if phrases:
        return None  # CJK: a phrase of character pairs, which needs positions
    from tvcaption.db import text_index

    return text_index.ranking(conn, plain, limit, stored and stored.id, all_captions)


def hits_of(conn, ranked: list[tuple[int, float]]) -> list[Hit]:
    """The hits for (scene id, score) pairs, in their order, with every annotation."""
    if not ranked:
        return []
    ids = [scene_id for scene_id, _ in ranked]
    # the path by a subquery: a join had PostgreSQL hash all recordings for 20 scenes (1 ms at 2,000)
    path = select(_recordings.c.path).where(_recordings.c.id == _scenes.c.recording_id).scalar_subquery()
    rows = {row.id: row for row in conn.execute(
        select(_scenes.c.id, _scenes.c.start, _scenes.c.end, path.label("path")).where(_scenes.c.id.in_(ids)))}
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
