"""Full-text ranking from memory-mapped posting lists instead of the database's ranking per query.

Ranking in SQL scores every matching row and sorts them all: at 1M scenes a common word matches
a quarter of them and one search took 60-500 ms on SQLite (FTS5's ``bm25()``), 70-390 ms on
PostgreSQL (``ts_rank`` before it ranked by bm25 too). Here the search index is read once into
numpy arrays in a file in the user's cache folder (``~/.cache/tvcaption/text/``, one per
database), by a reader per backend (:mod:`tvcaption.db.text_index_fts5` reads FTS5's own tokens,
:mod:`tvcaption.db.text_index_pg` PostgreSQL's lexemes from the stored ``tsvector``):

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

The score is bm25 on both backends (one formula, so both rank alike and the lists answer both):
the sum over the query's terms, in their order, of
``idf x f x (k1 + 1) / (f + k1 x (1 - b + b x D / avgdl))`` with k1 = 1.2, b = 0.75, f the
weighted frequency in the row, D the row's tokens in all columns, avgdl the table's tokens per
row and ``idf = log((N - n + 0.5) / (n + 0.5))`` (at least 1e-6) over all N rows of the table,
n the rows the term matches; without ``all_captions`` both f and n count text and labels only.
On SQLite this is FTS5's ``-bm25(scene_fts, 1.0, 0.5, 0.25)`` (fts5_aux.c), terms in the query's
order; on PostgreSQL it is the SQL of :mod:`tvcaption.db.search` (weights A, B, C for text,
labels, hidden; distinct lexemes in byte order). The same operations in the same order in float64
give the same doubles, so the lists' scores are the SQL's bit for bit (tests/test_text_index.py,
tests/test_text_index_pg.py), ties tie here as there, and they are broken as ``build_search``'s
ORDER BY does: recording path, then scene start.

What the posting lists cannot answer, :func:`ranking` leaves to the SQL (it returns None):
a CJK run (a phrase of character pairs: needs positions; :mod:`tvcaption.db.search` never asks),
what a reader cannot turn into terms (on SQLite a word FTS5 splits into several tokens, "don't",
"e-mail": a phrase; a query of words without any token), a database before migration 0008, an
index the reader cannot read, and a connection on which the reader's SQL fails.

The file names the database's text version (migration 0008, both backends: triggers count every
change of the index, of a scene's start, of a recording's status or path). Lists of an older
version answer with a delta (:func:`with_delta`): migration 0009's triggers name the recordings
each change touched (``search_changes``), their rows are read from the database (on SQLite copied
into a TEMP fts5 table with the index's tokenizer; on PostgreSQL their ``tsvector``) into small
lists beside the old ones, whose rows of those recordings are left out. The delta's parts use the
old lists' avgdl, and idf counts N and each term's rows now, so a delta ranks close to the SQL but
not to the last bit; lists below :data:`DELTA_MIN_ROWS` rows (rebuilt in about half a second) are
rebuilt instead, and so are lists with more than ``search_cache.MAX_CHANGED`` changed
recordings or a delta above ``search_cache.DELTA_ROWS`` rows (or 2% of theirs). A rebuild (1M
scenes: 26 s on SQLite at load average 3.5, a 250 MB file; 34 s on PostgreSQL at load 3-4, 178 MB) was what every search
after any change paid before: a correction in the review app, a new recording. The file is
written beside and renamed over the old one, so a process that has the old one mapped keeps
reading it intact. Where the cache folder cannot be written the lists are built in memory. A
process keeps the lists (and their delta) it opened until the version changes.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from tvcaption.db import search_cache
from tvcaption.db.bm25 import BM25_B as B
from tvcaption.db.bm25 import BM25_K1 as K1
from tvcaption.db.bm25 import MIN_IDF, Pairs
MAGIC = b"TVCTXT03"  # 03: "owner"
HEADER = 1 << 16  # bytes before the arrays
# name, dtype; the arrays of a file, in this order
ARRAYS = (("terms", "u1"), ("term_at", "<i8"), ("vis_at", "<i8"), ("vis_row", "<i4"), ("vis_part", "<f8"),
          ("all_at", "<i8"), ("all_row", "<i4"), ("all_part", "<f8"),
          ("scene", "<i8"), ("place", "<i8"), ("recording", "<i8"), ("owner", "<i8"))
_open: dict[str, Postings] = {}  # database key -> the lists this process opened


@dataclass
class Postings:
    """The posting lists of one database's search index at one version (module docstring)."""

    version: int
    rows: int  # N: rows in the FTS5 table (all, whatever their recording's status)
    arrays: dict[str, np.ndarray]
    tokens: int | None = None  # the table's tokens in all columns (avgdl = tokens / rows); None: not known
    # lists older than the database: ``delta`` the rows of the recordings ``changed`` since (sorted
    # ids), read from the database; the rows of those recordings here are left out
    delta: Postings | None = None
    changed: np.ndarray | None = None
    all_searchable: bool = field(init=False)  # every row's recording is done: no need to look
    _counts: dict = field(init=False, repr=False)  # (term, visible) -> rows but the excluded recordings'

    def __post_init__(self) -> None:
        self.all_searchable = bool((self.arrays["recording"] >= 0).all())
        self._counts = {}

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

    def count(self, token: str, visible: bool, excluded: np.ndarray | None = None) -> int:
        """Rows holding ``token`` (in text and labels, or anywhere), but those of the recordings
        ``excluded`` (sorted ids; remembered per token while these lists are held)."""
        term = self.term(token)
        if term < 0:
            return 0
        rows = self.postings(term, visible)[0]
        if excluded is None or not len(excluded):
            return len(rows)
        key = (term, visible)
        if key not in self._counts:
            owner = self.arrays["owner"][rows]
            at = np.minimum(np.searchsorted(excluded, owner), len(excluded) - 1)
            self._counts[key] = len(rows) - int(np.count_nonzero(excluded[at] == owner))
        return self._counts[key]

    def postings(self, term: int, visible: bool) -> tuple[np.ndarray, np.ndarray]:
        """(rows, bm25 parts) of a term: in text and labels, or in any column."""
        side = "vis" if visible else "all"
        at = self.arrays[f"{side}_at"]
        lo, hi = int(at[term]), int(at[term + 1])
        return self.arrays[f"{side}_row"][lo:hi], self.arrays[f"{side}_part"][lo:hi]


# --------------------------------------------------------------------------------------------
# Searching
# --------------------------------------------------------------------------------------------
def reader(conn: Connection):
    """The module that reads this backend's index: text_index_fts5 or text_index_pg; None for others."""
    if conn.dialect.name == "sqlite":
        from tvcaption.db import text_index_fts5 as module
    elif conn.dialect.name == "postgresql":
        from tvcaption.db import text_index_pg as module
    else:
        return None
    return module


def ranking(conn: Connection, words: list[str], limit: int, recording_id: int | None,
            all_captions: bool) -> list[tuple[int, float]] | None:
    """(scene id, score) of the ``limit`` best rows holding every word, best first, as
    ``build_search`` ranks them; None when the SQL must answer (module docstring).

    ``words``: the query's plain words (:func:`~tvcaption.db.search.split_query`; no CJK phrase),
    stop words included (each reader drops them as its SQL does); ``recording_id``: only that
    recording's scenes."""
    module = reader(conn)
    if module is None or not words:
        return None
    try:
        terms = module.query_terms(conn, words)
        if terms is None:
            return None
        if not terms:
            return []  # no term at all: the SQL matches nothing either
        found = postings(conn)
    except DBAPIError:
        return None  # e.g. TEMP tables not writable here: the SQL still answers
    if found is None:
        return None
    return rank(found, terms, limit, recording_id, not all_captions)


def rank(found: Postings, tokens: list[str], limit: int, recording_id: int | None,
         visible: bool) -> list[tuple[int, float]]:
    """bm25 of the rows holding every token (one phrase each, in order), the ``limit`` best.

    Lists older than the database (``found.delta``): the rows of the changed recordings come from
    the delta, theirs in ``found`` are left out (of the ranking, of N and of each term's rows, by
    their ``owner``), and both are scored with N and each term's rows now and ``found``'s avgdl;
    equal scores go to ``found``'s rows first."""
    idf = []
    rows = found.rows if found.delta is None else found.delta.rows  # the delta's: N now (with_delta)
    for token in tokens:
        n = found.count(token, visible) if found.delta is None else \
            found.count(token, visible, found.changed) + found.delta.count(token, visible)
        value = math.log((rows - n + 0.5) / (n + 0.5))
        idf.append(value if value > 0.0 else MIN_IDF)
    ranked = _rank_one(found, tokens, idf, limit, recording_id, visible, found.changed)
    if found.delta is None:
        return ranked
    extra = _rank_one(found.delta, tokens, idf, limit, recording_id, visible, None)
    if not extra:
        return ranked
    both = sorted(ranked + extra, key=lambda hit: -hit[1])  # stable: found's first among equals
    return both[:limit]


def _rank_one(found: Postings, tokens: list[str], idf: list[float], limit: int, recording_id: int | None,
              visible: bool, excluded: np.ndarray | None) -> list[tuple[int, float]]:
    """:func:`rank` in one set of lists, each token weighed by its ``idf``; rows of the
    recordings ``excluded`` (sorted ids) left out."""
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
    if recording_id is not None or not found.all_searchable or (excluded is not None and len(excluded)):
        owner = found.recording[rows]
        keep = owner >= 0 if recording_id is None else owner == recording_id
        if excluded is not None and len(excluded):
            keep &= ~np.isin(owner, excluded)
        keep = np.flatnonzero(keep)
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
    for (_, part), at, weight in zip(lists, where, idf):
        score += weight * part[at]  # the sum in the query's order, as fts5Bm25Function adds
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


# --------------------------------------------------------------------------------------------
# Keeping the lists current
# --------------------------------------------------------------------------------------------
def version(conn: Connection) -> int | None:
    """The database's text version, or None before migration 0008."""
    return search_cache.version(conn, search_cache.TEXT_VERSION_SQL)


def cache_folder() -> Path:
    return search_cache.cache_folder("text")


def postings(conn: Connection) -> Postings | None:
    """The posting lists of the database, current with it; None before migration 0008.

    Lists of an older version answer with a delta (module docstring) when few recordings changed
    since (:func:`tvcaption.db.search_cache.delta_fits`); else they are rebuilt."""
    current = version(conn)
    if current is None:
        return None
    key = search_cache.database_key(conn, "text")
    held = _open.get(key)
    if held is not None and (held.version if held.delta is None else held.delta.version) == current:
        return held
    path = cache_folder() / f"{key}.txt.idx"
    search_cache.note_source(conn, path)
    base = replace(held, delta=None, changed=None) if held is not None else _read(path)
    found = None
    if base is not None and base.version == current:
        found = base
    elif base is not None and base.version != -1 and base.tokens:
        found = with_delta(conn, base, current)
    if found is None:
        found = build(conn, current)
        _write(path, found)
    _open[key] = found
    return found


DELTA_MIN_ROWS = 20_000  # smaller lists are rebuilt (in about half a second), so they rank exactly as the SQL


def with_delta(conn: Connection, base: Postings, current: int) -> Postings | None:
    """``base`` and the rows of the recordings changed since it was built, read from the database
    (:func:`tvcaption.db.search_cache.changed_since`); None when that cannot be told or they are
    too many (:func:`tvcaption.db.search_cache.delta_fits`)."""
    changed = search_cache.changed_since(conn, "text", base.version, current)
    if changed is None or not search_cache.delta_fits(len(changed), 0, base.rows, DELTA_MIN_ROWS):
        return None
    recordings = sorted(changed)
    pairs = reader(conn).read(conn, recordings) if recordings else None
    if pairs is not None and not search_cache.delta_fits(len(recordings), len(pairs.docs), base.rows,
                                                         DELTA_MIN_ROWS):
        return None
    changed_ids = np.array(recordings, np.int64)
    if pairs is None:
        delta = from_pairs(Pairs([], *(np.zeros(0, t) for t in ("i4", "i8", "f8", "f8", "i8", "i8")), 0, 0), [], current)
    else:
        # each row's parts with the lists' avgdl (theirs cannot change), so that the two rank alike
        delta = from_pairs(pairs._replace(tokens=base.tokens, n_rows=base.rows), searchable(conn, recordings), current)
    if version(conn) != current:
        return None  # written while we read: rebuild (which keeps nothing either)
    # N now: the lists' rows but the changed recordings' there (done or not then), and the delta's
    gone = int(np.isin(base.owner, changed_ids).sum()) if len(changed_ids) else 0
    delta = replace(delta, rows=base.rows - gone + len(delta.scene))
    return replace(base, delta=delta, changed=changed_ids)


def build(conn: Connection, current: int) -> Postings:
    """Read the database's index into posting lists (its backend's reader), then the searchable
    scenes; the version -1 when the index changed while it was read (then the lists answer this
    search and are not kept)."""
    pairs = reader(conn).read(conn)
    done = searchable(conn)
    others = unsearchable(conn)
    if version(conn) != current:  # written while we read (another transaction): not kept
        current = -1
    return from_pairs(pairs, done, current, others)


def from_pairs(pairs: Pairs, done: list[tuple[int, int]], current: int,
               others: list[tuple[int, int]] = ()) -> Postings:
    """The lists from the pairs a reader found; ``done`` the searchable scenes (id, recording) in
    ranking order, ``others`` the rest (id, recording): a row's ``recording`` is its searchable
    recording (-1: none), its ``owner`` its recording whatever its status (-1: the scene is gone),
    which a delta needs to leave a changed recording's rows out of N and the terms' counts."""
    names, term, doc, f_vis, f_all, docs, length, tokens, n_rows = pairs
    keys = [name.encode() for name in names]
    order = sorted(range(len(keys)), key=keys.__getitem__)  # the backend's order is bytewise too; not assumed
    rank_of = np.empty(len(keys), np.int32)
    rank_of[order] = np.arange(len(keys), dtype=np.int32)
    term = rank_of[term] if len(term) else np.zeros(0, np.int32)
    row = np.searchsorted(docs, doc)
    if len(term) > 1 and not np.all((term[1:] > term[:-1]) | ((term[1:] == term[:-1]) & (row[1:] > row[:-1]))):
        by = np.lexsort((row, term))
        term, row, f_vis, f_all = term[by], row[by], f_vis[by], f_all[by]
    arrays = {"terms": np.frombuffer(b"".join(sorted(keys)), np.uint8).copy(),
              "term_at": np.r_[0, np.cumsum([len(k) for k in sorted(keys)], dtype=np.int64)].astype(np.int64)}
    avgdl = tokens / n_rows if n_rows else 0.0
    length = np.asarray(length, np.float64)
    # fts5_aux.c: k1 * (1 - b + b * D / avgdl), the same operations in the same order
    norm = K1 * ((1 - B) + B * length / avgdl) if avgdl else np.full(len(docs), K1 * (1 - B))
    for side, freq in (("vis", f_vis), ("all", f_all)):
        kept = freq > 0  # f: sums of 1, 0.5, 0.25, exact in float64
        arrays[f"{side}_at"] = np.r_[0, np.cumsum(np.bincount(term[kept], minlength=len(keys)))].astype(np.int64)
        arrays[f"{side}_row"] = row[kept].astype(np.int32)
        f = np.asarray(freq[kept], np.float64)
        # the part of a term's score that does not depend on the query: f * (k1 + 1) / (f + norm)
        arrays[f"{side}_part"] = (f * (K1 + 1.0)) / (f + norm[row[kept]])
    arrays["scene"] = np.asarray(docs, np.int64)
    arrays["place"] = np.full(len(docs), np.iinfo(np.int64).max, np.int64)
    arrays["recording"] = np.full(len(docs), -1, np.int64)
    if done and len(docs):
        rows, order, recordings = _rows_of(docs, done)
        arrays["place"][rows] = order
        arrays["recording"][rows] = recordings
    arrays["owner"] = arrays["recording"].copy()
    if others and len(docs):
        rows, _, recordings = _rows_of(docs, others)
        arrays["owner"][rows] = recordings
    return Postings(current, n_rows, arrays, tokens)


def _rows_of(docs: np.ndarray, scenes: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the (scene id, recording) pairs ``scenes`` whose scene is among the sorted rows ``docs``:
    (their rows, their places in ``scenes``, their recordings)."""
    ids = np.array([s[0] for s in scenes], np.int64)
    at = np.minimum(np.searchsorted(docs, ids), len(docs) - 1)
    hit = docs[at] == ids
    return at[hit], np.flatnonzero(hit), np.array([s[1] for s in scenes], np.int64)[hit]


def unsearchable(conn: Connection) -> list[tuple[int, int]]:
    """(scene id, recording id) of every scene of a recording not done (being indexed again,
    failed after an earlier index): few, and their rows count in N as FTS5's do."""
    from sqlalchemy import text

    return [tuple(row) for row in conn.execute(text(
        "SELECT s.id, s.recording_id FROM scenes s JOIN recordings r ON r.id = s.recording_id "
        "WHERE r.status <> 'done'"))]


def searchable(conn: Connection, recordings: list[int] | None = None) -> list[tuple[int, int]]:
    """(scene id, recording id) of every scene of a done recording (of ``recordings``), in the
    order equal scores take."""
    from sqlalchemy import bindparam, text

    sql = ("SELECT s.id, s.recording_id FROM scenes s JOIN recordings r ON r.id = s.recording_id "
           "WHERE r.status = 'done' {}ORDER BY r.path, s.start, s.id")
    if recordings is not None:
        stmt = text(sql.format("AND r.id IN :ids ")).bindparams(bindparam("ids", expanding=True))
        return [tuple(row) for row in conn.execute(stmt, {"ids": list(recordings)})]
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(sql.format(""))
        return cursor.fetchall()
    finally:
        cursor.close()


# --------------------------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------------------------
def _read(path: Path) -> Postings | None:
    """The file's lists (of whatever version it holds), or None."""
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return None
            head = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        current = int(head["version"])
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
    return Postings(current, int(head["rows"]), arrays, head.get("tokens"))


def _padded(size: int) -> int:
    return -(-size // 64) * 64


def _write(path: Path, found: Postings) -> None:
    """Write the lists beside ``path`` and rename it over; nothing when the folder is not writable
    or the lists are not of a version (read while the index changed)."""
    if found.version == -1:
        return
    head = json.dumps({"version": found.version, "rows": found.rows, "tokens": found.tokens,
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
