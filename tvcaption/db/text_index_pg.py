"""The PostgreSQL reader of :mod:`tvcaption.db.text_index`: PostgreSQL's own lexemes, read from
the stored ``tsvector`` (``scene_fts.document``: text at weight A, labels B, hidden C).

The index: one statement unnests every row's ``document`` (lexeme, positions, weights) and groups
by lexeme, each lexeme's rows and counts coming as two strings (``string_agg``) that numpy reads
in one call (a Python object per posting would take minutes at 1M scenes). A lexeme's f in a row
is its positions at weight A x 1.0 + B x 0.5 (+ C x 0.25 for the list of all columns), D the
row's positions of every lexeme, N the rows of ``scene_fts``.

A query's lexemes are PostgreSQL's for the query text, exactly as :mod:`tvcaption.db.search`
builds its tsquery: ``to_tsvector('english', words)`` has the lexemes ``plainto_tsquery`` ANDs
(stop words dropped, "e-mail" as 'e-mail', 'e' and 'mail'), so the lists match what the SQL
matches: every lexeme in weight A or B (anywhere with ``all_captions``). Each distinct lexeme
counts once, in byte order, as the SQL sums them (:func:`tvcaption.db.search.build_search`).
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import bindparam, func, literal_column, select
from sqlalchemy.engine import Connection

from tvcaption.db import search_cache
from tvcaption.db.schema import SEARCH_TABLE
from tvcaption.db.bm25 import HIDDEN_WEIGHT, LABELS_WEIGHT, TEXT_WEIGHT, TS_CONFIG, Pairs

QUERY_CACHE = 10_000  # query texts whose lexemes a process remembers
WORK_MEM = "256MB"  # for the one grouping statement of a build (the default 4 MB spills to disk)
_lexemes: dict[tuple[str, str], list[str]] = {}  # (database key, words) -> lexemes in byte order
# a lexeme's positions at each weight, packed in one number: A, B, C and all of them (each <= 256)
_COUNTS = " + ".join(f"coalesce(cardinality({what}), 0)::bigint * {1 << (9 * i)}" for i, what in enumerate(
    ("array_positions(t.weights, 'A')", "array_positions(t.weights, 'B')", "array_positions(t.weights, 'C')",
     "t.positions")))
_READ = (f"SELECT t.lexeme, string_agg(f.scene_id::text, ','), string_agg(({_COUNTS})::text, ',') "
         f"FROM {SEARCH_TABLE} f CROSS JOIN LATERAL unnest(f.document) t {{}}GROUP BY t.lexeme")
_OF_RECORDINGS = "WHERE f.scene_id IN (SELECT id FROM scenes WHERE recording_id = ANY(%s)) "


def query_terms(conn: Connection, words: list[str]) -> list[str]:
    """The distinct lexemes of the query's words in byte order (empty: only stop words)."""
    query = " ".join(words)
    key = (search_cache.database_key(conn, "text"), query)
    found = _lexemes.get(key)
    if found is None:
        config = literal_column(f"'{TS_CONFIG}'::regconfig")
        made = conn.execute(select(func.tsvector_to_array(func.to_tsvector(config, bindparam("q", query))))).scalar()
        found = sorted(set(made or ()), key=str.encode)
        if len(_lexemes) >= QUERY_CACHE:
            _lexemes.clear()
        _lexemes[key] = found
    return found


def read(conn: Connection, recordings: list[int] | None = None) -> Pairs:
    """Every (lexeme, row) of ``scene_fts.document`` (module docstring); with ``recordings``,
    only the rows of those recordings' scenes."""
    names: list[str] = []
    rows: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    with conn.begin_nested():  # a failure leaves the transaction usable for the SQL's answer
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.execute("SELECT set_config('work_mem', %s, true)", (WORK_MEM,))  # this transaction only
            if recordings is None:
                cursor.execute(_READ.format(""))
            else:
                cursor.execute(_READ.format(_OF_RECORDINGS), (list(recordings),))
            for name, scene_ids, packed in cursor:
                names.append(name)
                rows.append(np.fromstring(scene_ids, np.int64, sep=","))
                counts.append(np.fromstring(packed, np.int64, sep=","))
            n_rows = 0  # a delta's N is the lists' (text_index.with_delta): not counted again
            if recordings is None:
                cursor.execute(f"SELECT count(*) FROM {SEARCH_TABLE}")
                n_rows = int(cursor.fetchone()[0])
        finally:
            cursor.close()
    doc = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    packed = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    term = np.repeat(np.arange(len(names), dtype=np.int32), [len(r) for r in rows])
    a, b, c, total = ((packed >> (9 * i)) & 511 for i in range(4))
    f_vis = a * TEXT_WEIGHT + b * LABELS_WEIGHT  # sums of 1, 0.5 and 0.25: exact in float64
    f_all = f_vis + c * HIDDEN_WEIGHT
    docs, inverse = np.unique(doc, return_inverse=True)
    length = np.bincount(inverse, weights=total, minlength=len(docs)) if len(doc) else np.zeros(0)
    return Pairs(names, term, doc, f_vis, f_all, docs, length, int(total.sum()), n_rows)
