"""Full-text ranking on SQLite from memory-mapped posting lists instead of FTS5's bm25 per query.

FTS5 ranks a query by calling ``bm25()`` on every matching row and sorting them all: at 1M
scenes a common word matches a quarter of them and one search took 60-500 ms. Here the FTS5
index is read once into numpy arrays in a file in the user's cache folder
(``~/.cache/tvcaption/text/``, one per database):

- the terms, sorted by their UTF-8 bytes (one blob and offsets: a term is found by binary
  search without loading them);
- per term two posting lists, each sorted by row: every row holding the term in ``text`` or
  ``labels`` (what a search without ``all_captions`` reads), and every row holding it anywhere;
  each posting with the part of bm25 that does not depend on the query,
  ``f x (k1 + 1) / (f + k1 x (1 - b + b x D / avgdl))`` (below; f weighs the term's tokens in
  the row: 1.0 in text, 0.5 in labels, and in the second list 0.25 in hidden), float64;
- per row: its scene id, its place in the order ``recording path, scene start`` and its
  recording (-1 when the scene is gone or its recording is not done).

A query then looks up its terms, intersects their lists (binary search of the shortest list's
rows in the others), multiplies each part by the term's idf, adds them up, and picks the best
``limit`` with ``np.partition``: at 1M scenes a word in 234,000 of them takes ~6 ms, where FTS5's
bm25 took 120-180 ms (bench/results/search_hybrid.json for whole searches).

The tokens are FTS5's own: the index is read through an ``fts5vocab`` table of type 'instance'
(term, row, column of every token FTS5 stored; D counts them per row), and a query's words are turned into tokens by
FTS5 itself (inserted into a TEMP fts5 table with the index's ``tokenize`` option, read back
through its own ``fts5vocab``; remembered per word), so matching is exactly FTS5's: every word
must be in one of the columns searched.

Scores are the numbers ``-bm25(scene_fts, 1.0, 0.5, 0.25)`` gives, bit for bit: SQLite's
``fts5Bm25Function`` (fts5_aux.c) sums over the query's phrases, in their order,
``idf x f x (k1 + 1) / (f + k1 x (1 - b + b x D / avgdl))`` with k1 = 1.2, b = 0.75, f the
weighted frequency in the row, D the row's tokens in all columns, avgdl the table's tokens per
row and ``idf = log((N - n + 0.5) / (n + 0.5))`` (at least 1e-6) over all N rows of the table,
n the rows the phrase matches; with the column filter ``{text labels}`` both f and n count those
columns only (measured: tests/test_text_index.py compares every score with the SQL). The same
operations in the same order in float64 give the same doubles, so ties tie here as in SQLite,
and they are broken as ``build_search``'s ORDER BY does: recording path, then scene start.

What the posting lists cannot answer, :func:`ranking` leaves to the SQL (it returns None):
a CJK run (a phrase of character pairs: needs positions), a word FTS5 splits into several
tokens ("don't", "e-mail": a phrase), a query of words without any token, a database before
migration 0008, an index whose columns or tokenizer option cannot be read, and a connection on
which a TEMP table cannot be written. PostgreSQL always ranks in SQL (``ts_rank`` with AND of
lexemes weighs their positions, which per-term parts cannot reproduce).

The file names the database's text version (migration 0008: triggers count every change of
the index, of a scene's start, of a recording's status or path) and is rebuilt by the first
search that finds another version (1M scenes: 26 s at load average 3.5, a 250 MB file); it is written
beside and renamed over the old one, so a process that has the old one mapped keeps reading it
intact. Where the cache folder cannot be written the lists are built in memory. A process keeps
the lists it opened until the version changes.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from tvcaption.db import search_cache
from tvcaption.db.schema import SEARCH_TABLE

K1, B = 1.2, 0.75  # fts5_aux.c's bm25 constants
MIN_IDF = 1e-6  # fts5_aux.c: an idf at or below 0 counts as this
WEIGHTS = {"text": 1.0, "labels": 0.5, "hidden": 0.25}  # search.TEXT_WEIGHT, LABELS_WEIGHT, HIDDEN_WEIGHT
VISIBLE = ("text", "labels")
MAGIC = b"TVCTXT02"
HEADER = 1 << 16  # bytes before the arrays
WORD_CACHE = 100_000  # words whose tokens a process remembers
_VERSION_SQL = text("SELECT version FROM search_versions WHERE name = 'text'")
_INSTANCES, _TERMS = "tvcaption_fts_instances", "tvcaption_fts_terms"  # TEMP fts5vocab tables over the index
_QUERY, _QUERY_TOKENS = "tvcaption_query", "tvcaption_query_tokens"  # TEMP fts5 table for query words
# name, dtype; the arrays of a file, in this order
ARRAYS = (("terms", "u1"), ("term_at", "<i8"), ("vis_at", "<i8"), ("vis_row", "<i4"), ("vis_part", "<f8"),
          ("all_at", "<i8"), ("all_row", "<i4"), ("all_part", "<f8"),
          ("scene", "<i8"), ("place", "<i8"), ("recording", "<i8"))
_open: dict[str, Postings] = {}  # database key -> the lists this process opened
_tokens: dict[tuple[str, str], tuple[str, ...]] = {}  # (tokenize option, word) -> FTS5's tokens


@dataclass
class Postings:
    """The posting lists of one database's search index at one version (module docstring)."""

    version: int
    rows: int  # N: rows in the FTS5 table (all, whatever their recording's status)
    arrays: dict[str, np.ndarray]
    all_searchable: bool = field(init=False)  # every row's recording is done: no need to look

    def __post_init__(self) -> None:
        self.all_searchable = bool((self.arrays["recording"] >= 0).all())

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.__dict__["arrays"][name]
        except KeyError:
            raise AttributeError(name) from None

    def term(self, token: str) -> int:
        """The term's number, -1 when no row holds it."""
        key = token.encode()
        terms, at = self.arrays["terms"], self.arrays["term_at"]
        lo, hi = 0, len(at) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if terms[at[mid]:at[mid + 1]].tobytes() < key:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < len(at) - 1 and terms[at[lo]:at[lo + 1]].tobytes() == key else -1

    def postings(self, term: int, visible: bool) -> tuple[np.ndarray, np.ndarray]:
        """(rows, bm25 parts) of a term: in text and labels, or in any column."""
        side = "vis" if visible else "all"
        at = self.arrays[f"{side}_at"]
        lo, hi = int(at[term]), int(at[term + 1])
        return self.arrays[f"{side}_row"][lo:hi], self.arrays[f"{side}_part"][lo:hi]


# --------------------------------------------------------------------------------------------
# Searching
# --------------------------------------------------------------------------------------------
def ranking(conn: Connection, words: list[str], limit: int, recording_id: int | None,
            all_captions: bool) -> list[tuple[int, float]] | None:
    """(scene id, score) of the ``limit`` best rows holding every word, best first, as
    ``build_search`` ranks them; None when the SQL must answer (module docstring).

    ``words``: the query's plain words without stop words, as :func:`~tvcaption.db.search.fts5_query`
    quotes them; ``recording_id``: only that recording's scenes."""
    if not words:
        return None
    try:
        option = tokenize_option(conn)
        if option is None:
            return None
        tokens = tokenize(conn, option, words)
        if any(len(t) > 1 for t in tokens) or not any(tokens):
            return None  # a phrase, or no token at all: FTS5's phrase logic, left to the SQL
        found = postings(conn)
    except DBAPIError:
        return None  # e.g. TEMP tables not writable here: the SQL still answers
    if found is None:
        return None
    return rank(found, [t[0] for t in tokens if t], limit, recording_id, not all_captions)


def rank(found: Postings, tokens: list[str], limit: int, recording_id: int | None,
         visible: bool) -> list[tuple[int, float]]:
    """bm25 of the rows holding every token (one phrase each, in order), the ``limit`` best."""
    lists = []
    for token in tokens:
        term = found.term(token)
        if term < 0:
            return []
        lists.append(found.postings(term, visible))
    if any(len(rows) == 0 for rows, _ in lists):
        return []
    # candidates: the shortest list, then every other list's position of each candidate
    first = min(range(len(lists)), key=lambda j: len(lists[j][0]))
    rows = np.asarray(lists[first][0], np.int64)
    where: list[np.ndarray | slice | None] = [None] * len(lists)
    where[first] = slice(None)
    if recording_id is not None or not found.all_searchable:
        owner = found.recording[rows]
        keep = np.flatnonzero(owner >= 0 if recording_id is None else owner == recording_id)
        rows, where[first] = rows[keep], keep
    for j, (others, _) in enumerate(lists):
        if j == first or not len(rows):
            continue
        at = np.minimum(np.searchsorted(others, rows), len(others) - 1)
        hit = others[at] == rows
        rows = rows[hit]
        where = [w if isinstance(w, slice) or w is None else w[hit] for w in where]
        where[j] = at[hit]
        if isinstance(where[first], slice):
            where[first] = hit.nonzero()[0]
    if not len(rows):
        return []
    score = np.zeros(len(rows), np.float64)
    for (postings_rows, part), at in zip(lists, where):
        n = len(postings_rows)
        idf = math.log((found.rows - n + 0.5) / (n + 0.5))
        if idf <= 0.0:
            idf = MIN_IDF
        score += idf * part[at]  # the sum in the query's order, as fts5Bm25Function adds
    best = _best(score, found.place, rows, limit)
    return [(int(s), float(v)) for s, v in zip(found.scene[rows[best]], score[best])]


def _best(score: np.ndarray, place: np.ndarray, rows: np.ndarray, limit: int) -> np.ndarray:
    """Positions of the ``limit`` best scores, best first; equal scores by ``place[rows]``."""
    n = len(score)
    if n > limit:
        kth = np.partition(score, n - limit)[n - limit]  # the limit-th best score
        above = np.flatnonzero(score > kth)
        tied = np.flatnonzero(score == kth)
        need = limit - len(above)
        if len(tied) > need:
            tied = tied[np.argpartition(place[rows[tied]], need - 1)[:need]]
        chosen = np.concatenate([above, tied])
    else:
        chosen = np.arange(n)
    return chosen[np.lexsort((place[rows[chosen]], -score[chosen]))]


def tokenize_option(conn: Connection) -> str | None:
    """The index's ``tokenize`` option as its CREATE statement spells it; None when it has none
    or other columns than those the lists are built for (:data:`WEIGHTS`, in that order)."""
    sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (SEARCH_TABLE,)).scalar()
    columns = r"\s*,\s*".join(WEIGHTS)
    found = re.search(rf"fts5\(\s*{columns}\s*,\s*tokenize\s*=\s*'((?:[^']|'')*)'\s*\)", sql or "")
    return found.group(1).replace("''", "'") if found else None


def tokenize(conn: Connection, option: str, words: list[str]) -> list[tuple[str, ...]]:
    """Each word's tokens as FTS5 makes them with ``option`` (a TEMP fts5 table and its vocabulary)."""
    missing = list(dict.fromkeys(w for w in words if (option, w) not in _tokens))
    if missing:
        quoted = option.replace("'", "''")
        conn.exec_driver_sql(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{_QUERY} USING fts5(word, tokenize = '{quoted}')")
        conn.exec_driver_sql(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{_QUERY_TOKENS} "
                             f"USING fts5vocab(temp, {_QUERY}, instance)")
        conn.exec_driver_sql(f"DELETE FROM temp.{_QUERY}")
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.executemany(f"INSERT INTO temp.{_QUERY} (rowid, word) VALUES (?, ?)", list(enumerate(missing)))
            made: dict[int, list[tuple[int, str]]] = {}
            for doc, offset, term in cursor.execute(f'SELECT doc, "offset", term FROM temp.{_QUERY_TOKENS}'):
                made.setdefault(doc, []).append((offset, term))
            cursor.execute(f"DELETE FROM temp.{_QUERY}")
        finally:
            cursor.close()
        if len(_tokens) + len(missing) > WORD_CACHE:
            _tokens.clear()
        for i, word in enumerate(missing):
            _tokens[(option, word)] = tuple(term for _, term in sorted(made.get(i, [])))
    return [_tokens[(option, w)] for w in words]


# --------------------------------------------------------------------------------------------
# Keeping the lists current
# --------------------------------------------------------------------------------------------
def version(conn: Connection) -> int | None:
    """The database's text version, or None before migration 0008."""
    return search_cache.version(conn, _VERSION_SQL)


def cache_folder() -> Path:
    return search_cache.cache_folder("text")


def postings(conn: Connection) -> Postings | None:
    """The posting lists of the database, current with it; None before migration 0008."""
    current = version(conn)
    if current is None:
        return None
    key = search_cache.database_key(conn, "text")
    held = _open.get(key)
    if held is not None and held.version == current:
        return held
    path = cache_folder() / f"{key}.txt.idx"
    found = _read(path, current)
    if found is None:
        found = build(conn, current)
        _write(path, found)
    _open[key] = found
    return found


def build(conn: Connection, current: int) -> Postings:
    """Read the FTS5 index (every token: term, row, column) into posting lists.

    Each term's tokens come as one string of ``row << 2 | column`` from an ``fts5vocab`` seek on
    the term: fetching the 10M tokens of 1M scenes as rows took 51 s (a Python object each), this
    16 s, both at load average 6 on 2 cores."""
    conn.exec_driver_sql(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{_INSTANCES} "
                         f"USING fts5vocab(main, {SEARCH_TABLE}, instance)")
    conn.exec_driver_sql(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.{_TERMS} USING fts5vocab(main, {SEARCH_TABLE}, row)")
    columns = " ".join(f"WHEN '{name}' THEN {i}" for i, name in enumerate(WEIGHTS))
    sql = (f"SELECT r.term, (SELECT group_concat((i.doc << 2) | CASE i.col {columns} END) "
           f"FROM temp.{_INSTANCES} i WHERE i.term = r.term) FROM temp.{_TERMS} r")
    names: list[str] = []
    packed: list[np.ndarray] = []
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        for name, tokens in cursor.execute(sql):
            names.append(name)
            packed.append(np.fromstring(tokens or "", np.int64, sep=","))
        n_rows = int(cursor.execute(f"SELECT count(*) FROM {SEARCH_TABLE}").fetchone()[0])
        done = cursor.execute("SELECT s.id, s.recording_id FROM scenes s JOIN recordings r ON r.id = s.recording_id "
                              "WHERE r.status = 'done' ORDER BY r.path, s.start, s.id").fetchall()
    finally:
        cursor.close()
    if version(conn) != current:  # written while we read (another transaction): not kept
        current = -1
    both = np.concatenate(packed) if packed else np.zeros(0, np.int64)
    term = np.repeat(np.arange(len(names), dtype=np.int32), [len(p) for p in packed])
    return Postings(current, n_rows, _arrays(names, term, both >> 2, (both & 3).astype(np.int8), n_rows, done))


def _arrays(names: list[str], term: np.ndarray, doc: np.ndarray, col: np.ndarray, n_rows: int,
            done: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """The file's arrays from every token's (term number, row, column) and the searchable scenes
    in ranking order."""
    keys = [name.encode() for name in names]
    order = sorted(range(len(keys)), key=keys.__getitem__)  # FTS5's order is bytewise too; not assumed
    rank = np.empty(len(keys), np.int32)
    rank[order] = np.arange(len(keys), dtype=np.int32)
    term = rank[term] if len(term) else term
    if len(term) > 1 and not np.all((term[1:] > term[:-1]) | ((term[1:] == term[:-1]) & (doc[1:] >= doc[:-1]))):
        by = np.lexsort((doc, term))
        term, doc, col = term[by], doc[by], col[by]
    weight = np.array(list(WEIGHTS.values()))[col]
    scene = np.unique(doc)
    row = np.searchsorted(scene, doc)
    length = np.bincount(row, minlength=len(scene)).astype(np.float64)  # D: tokens in all columns
    avgdl = len(doc) / n_rows if n_rows else 0.0
    starts = np.flatnonzero(np.r_[True, (term[1:] != term[:-1]) | (row[1:] != row[:-1])]) if len(term) else \
        np.zeros(0, np.int64)
    pair_term, pair_row = term[starts], row[starts]
    freq_all = np.add.reduceat(weight, starts) if len(starts) else np.zeros(0)
    freq_vis = np.add.reduceat(np.where(col < len(VISIBLE), weight, 0.0), starts) if len(starts) else np.zeros(0)
    arrays = {"terms": np.frombuffer(b"".join(sorted(keys)), np.uint8).copy(),
              "term_at": np.r_[0, np.cumsum([len(k) for k in sorted(keys)], dtype=np.int64)].astype(np.int64)}
    # fts5_aux.c: k1 * (1 - b + b * D / avgdl), the same operations in the same order
    norm = K1 * ((1 - B) + B * length / avgdl) if avgdl else np.full(len(scene), K1 * (1 - B))
    for side, freq in (("vis", freq_vis), ("all", freq_all)):
        kept = freq > 0  # f: sums of 1, 0.5, 0.25, exact in float64
        arrays[f"{side}_at"] = np.r_[0, np.cumsum(np.bincount(pair_term[kept], minlength=len(keys)))].astype(np.int64)
        arrays[f"{side}_row"] = pair_row[kept].astype(np.int32)
        f = freq[kept]
        # the part of a phrase's score that does not depend on the query: f * (k1 + 1) / (f + norm)
        arrays[f"{side}_part"] = (f * (K1 + 1.0)) / (f + norm[pair_row[kept]])
    arrays["scene"] = scene
    arrays["place"] = np.full(len(scene), np.iinfo(np.int64).max, np.int64)
    arrays["recording"] = np.full(len(scene), -1, np.int64)
    if done and len(scene):
        ids = np.array([d[0] for d in done], np.int64)
        at = np.minimum(np.searchsorted(scene, ids), len(scene) - 1)
        hit = scene[at] == ids
        arrays["place"][at[hit]] = np.flatnonzero(hit)
        arrays["recording"][at[hit]] = np.array([d[1] for d in done], np.int64)[hit]
    return arrays


# --------------------------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------------------------
def _read(path: Path, current: int) -> Postings | None:
    """The file's lists when it holds version ``current``, else None."""
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return None
            head = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        if head.get("version") != current:
            return None
        arrays: dict[str, np.ndarray] = {}
        offset = HEADER
        for name, dt in ARRAYS:
            count = int(head["sizes"][name])
            # a plain ndarray over the map: np.memmap's own __getitem__ costs ~0.1 ms a slice
            # (the term lookup takes twenty); the view keeps the map open through its base
            arrays[name] = np.memmap(path, dt, "r", offset, (count,)).view(np.ndarray) if count else np.zeros(0, dt)
            offset += _padded(count * np.dtype(dt).itemsize)
    except (OSError, ValueError, KeyError):
        return None
    return Postings(current, int(head["rows"]), arrays)


def _padded(size: int) -> int:
    return -(-size // 64) * 64


def _write(path: Path, found: Postings) -> None:
    """Write the lists beside ``path`` and rename it over; nothing when the folder is not writable
    or the lists are not of a version (read while the index changed)."""
    if found.version == -1:
        return
    head = json.dumps({"version": found.version, "rows": found.rows,
                       "sizes": {name: len(found.arrays[name]) for name, _ in ARRAYS}}).encode()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write((MAGIC + len(head).to_bytes(8, "little") + head).ljust(HEADER, b"\0"))
            for name, dt in ARRAYS:
                data = np.ascontiguousarray(found.arrays[name], dt).tobytes()
                f.write(data.ljust(_padded(len(data)), b"\0"))
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
