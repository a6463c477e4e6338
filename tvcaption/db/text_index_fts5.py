"""The SQLite reader of :mod:`tvcaption.db.text_index`: FTS5's own tokens, for the index and the query.

The index is read through an ``fts5vocab`` table of type 'instance' (term, row, column of every
token FTS5 stored; D counts them per row), and a query's words are turned into tokens by FTS5
itself (inserted into a fts5 table with the index's ``tokenize`` option in an in-memory database
of the process, read back through its own ``fts5vocab``; remembered per word), so matching is exactly FTS5's: every word must be in
one of the columns searched. Terms are summed in the query's order, as ``fts5Bm25Function`` adds
its phrases (a word given twice counts twice, as in FTS5).

Left to the SQL (:func:`query_terms` returns None): a word FTS5 splits into several tokens
("don't", "e-mail": a phrase), a query of words without any token, an index whose columns or
tokenizer option cannot be read.
"""

from __future__ import annotations

import re
import sqlite3
import threading

import numpy as np
from sqlalchemy.engine import Connection

from tvcaption.db.schema import SEARCH_TABLE
from tvcaption.db.bm25 import VISIBLE, WEIGHTS, Pairs, is_stop_word

WORD_CACHE = 100_000  # words whose tokens a process remembers
_INSTANCES, _TERMS = "tvcaption_fts_instances", "tvcaption_fts_terms"  # TEMP fts5vocab tables over the index
_DELTA, _DELTA_INSTANCES, _DELTA_TERMS = "tvcaption_delta", "tvcaption_delta_instances", "tvcaption_delta_terms"
_tokens: dict[tuple[str, str], tuple[str, ...]] = {}  # (tokenize option, word) -> FTS5's tokens
_tokenizer_db: sqlite3.Connection | None = None  # query words are tokenized here (:func:`tokenize`)
_tokenizer_tables: dict[str, str] = {}  # tokenize option -> its fts5 table there
_tokenizer_lock = threading.Lock()


def query_terms(conn: Connection, words: list[str]) -> list[str] | None:
    """The query's tokens in its order (one per word, stop words dropped as ``fts5_query`` drops
    them), or None when the SQL must answer."""
    words = [w for w in words if not is_stop_word(w)]
    if not words:
        return None
    option = tokenize_option(conn)
    if option is None:
        return None
    tokens = tokenize(option, words)
    if any(len(t) > 1 for t in tokens) or not any(tokens):
        return None  # a phrase, or no token at all: FTS5's phrase logic, left to the SQL
    return [t[0] for t in tokens if t]


def tokenize_option(conn: Connection) -> str | None:
    """The index's ``tokenize`` option as its CREATE statement spells it; None when it has none
    or other columns than those the lists are built for (:data:`WEIGHTS`, in that order)."""
    sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (SEARCH_TABLE,)).scalar()
    columns = r"\s*,\s*".join(WEIGHTS)
    found = re.search(rf"fts5\(\s*{columns}\s*,\s*tokenize\s*=\s*'((?:[^']|'')*)'\s*\)", sql or "")
    return found.group(1).replace("''", "'") if found else None


def tokenize(option: str, words: list[str]) -> list[tuple[str, ...]]:
    """Each word's tokens as FTS5 makes them with ``option``: a fts5 table with that option and
    its vocabulary in a database of the process's own in memory (the tokenizer needs no data).

    Not in a TEMP table of the search's connection: a search runs in a transaction that ends in
    a rollback, which took the TEMP table with it, so every search made it again (2-3 ms on a
    query of new words at 1M scenes, ~0.1 ms to tokenize them)."""
    missing = list(dict.fromkeys(w for w in words if (option, w) not in _tokens))
    if missing:
        with _tokenizer_lock:
            db, table = _tokenizer(option)
            db.executemany(f"INSERT INTO {table} (rowid, word) VALUES (?, ?)", list(enumerate(missing)))
            made: dict[int, list[tuple[int, str]]] = {}
            try:
                for doc, offset, term in db.execute(f'SELECT doc, "offset", term FROM {table}_tokens'):
                    made.setdefault(doc, []).append((offset, term))
            finally:
                db.execute(f"DELETE FROM {table}")
        if len(_tokens) + len(missing) > WORD_CACHE:
            _tokens.clear()
        for i, word in enumerate(missing):
            _tokens[(option, word)] = tuple(term for _, term in sorted(made.get(i, [])))
    return [_tokens[(option, w)] for w in words]


def _tokenizer(option: str) -> tuple[sqlite3.Connection, str]:
    """The in-memory database and the name of its fts5 table for ``option`` (made on first use;
    the caller holds ``_tokenizer_lock``)."""
    global _tokenizer_db
    if _tokenizer_db is None:
        _tokenizer_db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    table = _tokenizer_tables.get(option)
    if table is None:
        table = f"query_{len(_tokenizer_tables)}"
        quoted = option.replace("'", "''")
        _tokenizer_db.execute(f"CREATE VIRTUAL TABLE {table} USING fts5(word, tokenize = '{quoted}')")
        _tokenizer_db.execute(f"CREATE VIRTUAL TABLE {table}_tokens USING fts5vocab({table}, instance)")
        _tokenizer_tables[option] = table
    return _tokenizer_db, table


def read(conn: Connection, recordings: list[int] | None = None) -> Pairs:
    """Read the FTS5 index (every token: term, row, column) into (term, row) pairs; with
    ``recordings``, only the rows of those recordings' scenes (their columns copied into a TEMP
    fts5 table with the index's ``tokenize`` option and read there: the index's own vocabulary
    cannot be read by row without reading all of it).

    Each term's tokens come as one string of ``row << 2 | column`` from an ``fts5vocab`` seek on
    the term: fetching the 10M tokens of 1M scenes as rows took 51 s (a Python object each), this
    16 s, both at load average 6 on 2 cores."""
    if recordings is None:
        schema, table = "main", SEARCH_TABLE
    else:
        schema, table = "temp", _copy(conn, recordings)
    instances, terms = (_INSTANCES, _TERMS) if recordings is None else (_DELTA_INSTANCES, _DELTA_TERMS)
    conn.exec_driver_sql(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{instances} "
                         f"USING fts5vocab({schema}, {table}, instance)")
    conn.exec_driver_sql(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{terms} USING fts5vocab({schema}, {table}, row)")
    columns = " ".join(f"WHEN '{name}' THEN {i}" for i, name in enumerate(WEIGHTS))
    sql = (f"SELECT r.term, (SELECT group_concat((i.doc << 2) | CASE i.col {columns} END) "
           f"FROM temp.{instances} i WHERE i.term = r.term) FROM temp.{terms} r")
    names: list[str] = []
    packed: list[np.ndarray] = []
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        for name, tokens in cursor.execute(sql):
            names.append(name)
            packed.append(np.fromstring(tokens or "", np.int64, sep=","))
        n_rows = int(cursor.execute(f"SELECT count(*) FROM {schema}.{table}").fetchone()[0])
    finally:
        cursor.close()
    both = np.concatenate(packed) if packed else np.zeros(0, np.int64)
    term = np.repeat(np.arange(len(names), dtype=np.int32), [len(p) for p in packed])
    doc, col = both >> 2, both & 3
    # every token -> every (term, row) pair: its weighted frequency in text and labels, and in all
    if len(term) > 1 and not np.all((term[1:] > term[:-1]) | ((term[1:] == term[:-1]) & (doc[1:] >= doc[:-1]))):
        by = np.lexsort((doc, term))
        term, doc, col = term[by], doc[by], col[by]
    weight = np.array(list(WEIGHTS.values()))[col]
    starts = np.flatnonzero(np.r_[True, (term[1:] != term[:-1]) | (doc[1:] != doc[:-1])]) if len(term) else \
        np.zeros(0, np.int64)
    f_all = np.add.reduceat(weight, starts) if len(starts) else np.zeros(0)
    f_vis = np.add.reduceat(np.where(col < len(VISIBLE), weight, 0.0), starts) if len(starts) else np.zeros(0)
    docs, length = np.unique(doc, return_counts=True)
    return Pairs(names, term[starts], doc[starts], f_vis, f_all, docs, length, len(doc), n_rows)


def _copy(conn: Connection, recordings: list[int]) -> str:
    """The index's rows of ``recordings``' scenes, copied into the TEMP fts5 table (emptied first)."""
    option = tokenize_option(conn)
    if option is None:
        raise ValueError(f"{SEARCH_TABLE}: its columns or tokenize option cannot be read")
    quoted = option.replace("'", "''")
    conn.exec_driver_sql(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{_DELTA} USING fts5({', '.join(WEIGHTS)}, "
                         f"tokenize = '{quoted}')")
    conn.exec_driver_sql(f"DELETE FROM temp.{_DELTA}")
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        rows = cursor.execute(f"SELECT rowid, {', '.join(WEIGHTS)} FROM main.{SEARCH_TABLE} WHERE rowid IN "
                              f"(SELECT id FROM scenes WHERE recording_id IN ({', '.join('?' * len(recordings))}))",
                              recordings).fetchall()  # one statement: 56 ms for 10,000 rows at 1M, a seek each 210
        cursor.executemany(f"INSERT INTO temp.{_DELTA} (rowid, {', '.join(WEIGHTS)}) VALUES (?, ?, ?, ?)", rows)
    finally:
        cursor.close()
    return _DELTA
