"""Search by meaning over one contiguous, memory-mapped matrix instead of the database's blobs.

:mod:`tvcaption.db.vectors` stores a recording's vectors as one blob; scanning them meant
fetching and decoding every blob on every query (at 1M scenes, 1.5 GB through the database
driver: most of a hybrid search's 0.6 s). Here they are read once into a file in the user's
cache folder (``~/.cache/tvcaption/vectors/``, one per database and model) laid out for numpy:

- the scene ids (int64) of every done recording's vectors, grouped by recording (row ranges in
  the header, for ``--recording``), and their argsort (a scene id's row by binary search);
- the vectors, float32 (N, dim), exactly as stored: scores are the same numbers as before;
- above :data:`EXACT_MAX` vectors also a coarse copy: the vectors minus their mean, projected
  on their :data:`COARSE_DIM` leading principal directions (float32, (N, 64): a sixth of the
  bytes to stream per query).

The file names the database's vectors version (migration 0007: triggers count every change of
``recording_vectors`` and of a recording's status). A matrix of an older version answers with a
delta: the recordings changed since (migration 0009's ``search_changes``) have their rows left
out (scored :data:`MASKED`) and their vectors read from the database and scored beside them,
the same numbers a rebuilt matrix would give; with more than
:data:`~tvcaption.db.search_cache.MAX_CHANGED` changed recordings or a delta above 2% of the
matrix (at least :data:`~tvcaption.db.search_cache.DELTA_ROWS` rows) the first search rebuilds
it. The file is written beside and renamed over the old one, so a process that has the old one
mapped keeps reading it intact. Where the cache folder cannot be written the matrix is built in
memory. A process keeps the matrix (and its delta) it opened until the version changes.

Ranking: up to :data:`EXACT_MAX` vectors every query is an exact scan (as before). Above it, the
coarse scores pick the ``max(RERANK, 20 x top)`` candidates and those are ranked by their exact
scores; a scene outside them is ranked by its coarse score (on all-MiniLM-L6-v2 vectors the
leading 64 directions carry 75% of the variance, and the exact top 100 of 3,000 captions were
all among the coarse top 500). ``bench/search_latency.py`` measures the overlap with the exact
ranking at 1M scenes.
"""

from __future__ import annotations

import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection

from tvcaption.db import search_cache
from tvcaption.db.schema import Recording, RecordingVectors

EXACT_MAX = 200_000  # vectors up to which each query scans them all exactly
COARSE_DIM = 64  # principal directions in the coarse copy
RERANK = 2_000  # candidates of the coarse scan ranked exactly (at least 20 x the depth asked)
PCA_SAMPLE = 20_000  # vectors the principal directions are computed from
CHUNK = 65_536  # rows per matrix-vector product (two threads share the chunks)
MAGIC = b"TVCVEC01"
ALIGN = 64
vectors_t = RecordingVectors.__table__
recordings_t = Recording.__table__
_VERSION_SQL = text("SELECT version FROM search_versions WHERE name = 'vectors'")
_open: dict[str, Matrix] = {}  # cache file (or database key) -> the matrix this process opened
_pool: ThreadPoolExecutor | None = None
_blas_set = False


@dataclass
class Matrix:
    """Every searchable vector of one database and model, and how to find rows."""

    version: int
    ids: np.ndarray  # (N,) scene ids, grouped by recording
    order: np.ndarray  # (N,) argsort of ids
    vectors: np.ndarray  # (N, dim) float32
    ranges: dict[int, tuple[int, int]]  # recording id -> rows [start, stop)
    mean: np.ndarray | None = None  # (dim,) the coarse copy's centre
    components: np.ndarray | None = None  # (dim, COARSE_DIM)
    coarse: np.ndarray | None = None  # (N, COARSE_DIM)
    # a matrix older than the database: the vectors of the recordings ``changed`` since (sorted
    # ids), read from the database at ``delta_version``; their rows above are left out
    changed: np.ndarray | None = None
    extra_ids: np.ndarray | None = None  # (M,)
    extra_vectors: np.ndarray | None = None  # (M, dim)
    extra_recordings: np.ndarray | None = None  # (M,) each extra vector's recording
    delta_version: int | None = None
    sorted_ids: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.sorted_ids = self.ids[self.order]

    def rows_of(self, scene_ids: np.ndarray) -> np.ndarray:
        """Each scene id's row, -1 where it has no vector."""
        at = np.searchsorted(self.sorted_ids, scene_ids)
        at = np.minimum(at, max(len(self.sorted_ids) - 1, 0))
        found = len(self.sorted_ids) > 0
        hit = (self.sorted_ids[at] == scene_ids) if found else np.zeros(len(scene_ids), bool)
        return np.where(hit, self.order[at] if found else -1, -1)


@dataclass(frozen=True)
class Ranking:
    """The ``top`` best scenes (ids, scores, best first) and each searched scene's score, for
    :meth:`rank_of` (1-based rank among all searched scenes)."""

    ids: np.ndarray
    scores: np.ndarray
    matrix: Matrix | None = None
    rows: slice = field(default_factory=lambda: slice(0, 0))
    all_scores: np.ndarray | None = None  # exact, or coarse with the candidates' exact ones written in
    extra_ids: np.ndarray | None = None  # the delta's scenes searched (Matrix.extra_ids) and their scores
    extra_scores: np.ndarray | None = None

    def rank_of(self, scene_ids) -> dict[int, int]:
        if self.matrix is None or self.all_scores is None or not len(scene_ids):
            return {}
        wanted = np.asarray(list(scene_ids), np.int64)
        own = np.full(len(wanted), np.nan, np.float32)
        rows = self.matrix.rows_of(wanted)
        inside = (rows >= self.rows.start) & (rows < self.rows.stop)
        own[inside] = self.all_scores[rows[inside] - self.rows.start]
        extra = self.extra_ids is not None and len(self.extra_ids)
        if extra:
            at = {int(i): k for k, i in enumerate(self.extra_ids)}
            for j, i in enumerate(wanted.tolist()):
                if i in at:
                    own[j] = self.extra_scores[at[i]]
        known = ~np.isnan(own) & (own > MASKED)
        if not known.any():
            return {}
        ranks = count_greater(self.all_scores, own[known]) + 1
        if extra:
            ranks += count_greater(self.extra_scores, own[known])
        return {int(i): int(r) for i, r in zip(wanted[known], ranks)}


BUCKETS = 4096  # for count_greater: equal-width buckets over the scores' range
MASKED = np.float32(-2.0)  # the score of a row left out (below every cosine similarity)


def _count_greater_by_search(scores: np.ndarray, values: np.ndarray) -> np.ndarray:
    """:func:`count_greater` by a binary search of every score among the values (any floats)."""
    thresholds = np.unique(values)
    below = np.bincount(np.searchsorted(thresholds, scores, side="left"), minlength=len(thresholds) + 1)
    greater = below[::-1].cumsum()[::-1]  # greater[j]: scores above thresholds[j-1]
    return greater[np.searchsorted(thresholds, values) + 1]


def count_greater(scores: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each of ``values`` (any finite floats), how many ``scores`` are strictly greater:
    exact, in one bucketing pass instead of a binary search per score (at 1M scores and 100
    values, a searchsorted of every score took 20-30 ms of a hybrid search). Scores fall into
    :data:`BUCKETS` equal-width buckets by a monotone float computation, so a score in a higher
    bucket than a value is greater than it; only the scores sharing a value's bucket are compared
    one by one."""
    values = np.asarray(values, scores.dtype)
    if not len(values) or not len(scores):
        return np.zeros(len(values), np.int64)
    low, high = scores.min(), scores.max()
    floor = low < -1.0  # rows left out (MASKED): buckets over the cosines' range, those in the first
    if floor:
        low = np.asarray(-1.0, scores.dtype)
    with np.errstate(all="ignore"):
        scale = (np.float32(BUCKETS) / (high - low)).astype(scores.dtype)
    if not (high > low and np.isfinite(scale) and np.isfinite(low) and np.isfinite(high)):
        return _count_greater_by_search(scores, values)  # all equal, or not finite

    def bucket(x: np.ndarray) -> np.ndarray:  # in place where it can: this is the one pass over all scores
        shifted = x - low
        shifted *= scale
        out = shifted.astype(np.int32)
        np.minimum(out, BUCKETS - 1, out=out)
        if floor:
            np.maximum(out, 0, out=out)
        return out

    of_scores = bucket(scores)
    above = np.bincount(of_scores, minlength=BUCKETS)[::-1].cumsum()[::-1]  # above[b]: scores in b or higher
    of_values = np.maximum(bucket(values), 0)  # a value below every score (from another set of scores)
    wanted = np.zeros(BUCKETS, bool)
    wanted[of_values] = True
    shared = wanted[of_scores]  # the scores sharing a bucket with some value: few
    near, near_bucket = scores[shared], of_scores[shared]
    order = np.lexsort((near, near_bucket))
    near, near_bucket = near[order], near_bucket[order]
    out = np.empty(len(values), np.int64)
    for i, (v, b) in enumerate(zip(values, of_values)):
        lo, hi = np.searchsorted(near_bucket, [b, b + 1])
        higher = above[b + 1] if b + 1 < BUCKETS else 0
        out[i] = higher + (hi - lo) - np.searchsorted(near[lo:hi], v, side="right")
    return out


def version(conn: Connection) -> int | None:
    """The database's vectors version, or None before migration 0007."""
    return search_cache.version(conn, _VERSION_SQL)


def cache_folder() -> Path:
    return search_cache.cache_folder("vectors")


def matrix(conn: Connection, model: str) -> Matrix | None:
    """The vectors of ``model`` as a :class:`Matrix`, current with the database; None before
    migration 0007 (the caller scans the blobs as before). A matrix of an older version answers
    with a delta when few recordings changed since (``tvcaption.db.search_cache.delta_fits``; at
    any size: the delta's scores are the same numbers a rebuilt matrix gives); else it is rebuilt."""
    current = version(conn)
    if current is None:
        return None
    key = search_cache.database_key(conn, model)
    held = _open.get(key)
    if held is not None and (held.version if held.changed is None else held.delta_version) == current:
        return held
    path = cache_folder() / f"{key}.vec"
    search_cache.note_source(conn, path)
    base = replace(held, changed=None, extra_ids=None, extra_vectors=None, extra_recordings=None,
                   delta_version=None) if held is not None else _read(path)
    found = None
    if base is not None and base.version == current:
        found = base
    elif base is not None and base.version != -1:
        changed = search_cache.changed_since(conn, "vectors", base.version, current)
        if changed is not None and search_cache.delta_fits(len(changed), 0, len(base.ids)):
            found = _with_delta(conn, model, base, sorted(changed), current)
    if found is None:
        found = _build(conn, model, current, path)
    _open[key] = found
    return found


def _with_delta(conn: Connection, model: str, base: Matrix, recordings: list[int], current: int) -> Matrix | None:
    """``base`` and the vectors of ``recordings`` (changed since it was built) from the database."""
    ids, vectors, owners = [], [], []
    if recordings:
        for row in _rows(conn, model, recordings):
            found = np.frombuffer(row.scene_ids, "<i8")
            ids.append(found)
            vectors.append(np.frombuffer(row.vectors, "<f4").reshape(len(found), int(row.dim)))
            owners.append(np.full(len(found), int(row.recording_id), np.int64))
    dim = base.vectors.shape[1]
    extra_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    if not search_cache.delta_fits(len(recordings), len(extra_ids), len(base.ids)) or any(v.shape[1] != dim for v in vectors):
        return None
    if version(conn) != current:
        return None  # written while we read: rebuild
    return replace(base, changed=np.array(recordings, np.int64), extra_ids=extra_ids,
                   extra_vectors=np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32),
                   extra_recordings=np.concatenate(owners) if owners else np.zeros(0, np.int64),
                   delta_version=current)


# --------------------------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------------------------
def _layout(n: int, dim: int, coarse: bool) -> tuple[list[tuple[str, str, tuple[int, ...]]], int]:
    parts = [("ids", "<i8", (n,)), ("order", "<i8", (n,)), ("vectors", "<f4", (n, dim))]
    if coarse:
        parts += [("mean", "<f4", (dim,)), ("components", "<f4", (dim, COARSE_DIM)), ("coarse", "<f4", (n, COARSE_DIM))]
    size = sum(int(np.prod(shape)) * np.dtype(dt).itemsize for _, dt, shape in parts)
    return parts, size


def _read(path: Path) -> Matrix | None:
    """The file's matrix (of whatever version it holds), or None."""
    try:
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                return None
            head = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        current = int(head["version"])
        arrays: dict[str, np.ndarray] = {}
        offset = head["offset"]
        for name, dt, shape in _layout(head["n"], head["dim"], head["coarse"])[0]:
            count = int(np.prod(shape))
            arrays[name] = (np.memmap(path, dt, "r", offset, shape) if count else np.zeros(shape, dt))
            offset += count * np.dtype(dt).itemsize
    except (OSError, ValueError, KeyError):
        return None
    ranges = {int(r): (int(a), int(b)) for r, a, b in head["ranges"]}
    return Matrix(current, ranges=ranges, **arrays)


def _rows(conn: Connection, model: str, recordings: list[int] | None = None):
    stmt = (select(vectors_t.c.recording_id, vectors_t.c.dim, vectors_t.c.scene_ids, vectors_t.c.vectors)
            .join(recordings_t, recordings_t.c.id == vectors_t.c.recording_id)
            .where(vectors_t.c.model == model, recordings_t.c.status == "done")
            .order_by(vectors_t.c.recording_id))
    if recordings is not None:
        stmt = stmt.where(vectors_t.c.recording_id.in_(recordings))
    return conn.execute(stmt).yield_per(64)


def _build(conn: Connection, model: str, current: int, path: Path) -> Matrix:
    """Read every blob once into the matrix; written to ``path`` when the folder allows."""
    sizes = conn.execute(select(func.sum(func.length(vectors_t.c.scene_ids)), func.max(vectors_t.c.dim))
                         .join(recordings_t, recordings_t.c.id == vectors_t.c.recording_id)
                         .where(vectors_t.c.model == model, recordings_t.c.status == "done")).first()
    n, dim = int(sizes[0] or 0) // 8, int(sizes[1] or 0)
    parts, size = _layout(n, dim, n > EXACT_MAX)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError:
        tmp = None
    arrays, offset = _allocate(tmp, parts, size)
    ranges: list[tuple[int, int, int]] = []
    at = 0
    for row in _rows(conn, model):
        ids = np.frombuffer(row.scene_ids, "<i8")
        arrays["ids"][at:at + len(ids)] = ids
        arrays["vectors"][at:at + len(ids)] = np.frombuffer(row.vectors, "<f4").reshape(len(ids), int(row.dim))
        ranges.append((int(row.recording_id), at, at + len(ids)))
        at += len(ids)
    if at != n:  # written while we read (another transaction): the next search reads it again
        arrays = {k: v[:at] if k in ("ids", "vectors", "order", "coarse") else v for k, v in arrays.items()}
        current = -1
    arrays["order"][:] = np.argsort(arrays["ids"], kind="stable")
    if "coarse" in arrays:
        _fill_coarse(arrays)
    found = Matrix(current, ranges={r: (a, b) for r, a, b in ranges}, **arrays)
    if tmp is not None and current == -1:
        os.unlink(tmp)
    elif tmp is not None:
        head = {"version": current, "n": at, "dim": dim, "coarse": "coarse" in arrays, "offset": offset,
                "ranges": ranges}
        _finish(tmp, path, head, offset, arrays)
    return found


def _allocate(tmp: str | None, parts, size: int) -> tuple[dict[str, np.ndarray], int]:
    """The arrays, in the file ``tmp`` after room for its header (or in memory); their offset."""
    offset = 1 << 20  # room for the header (ranges of many thousand recordings)
    arrays: dict[str, np.ndarray] = {}
    if tmp is not None:
        with open(tmp, "r+b") as f:
            f.truncate(offset + size)
    at = offset
    for name, dt, shape in parts:
        count = int(np.prod(shape))
        if tmp is not None and count:
            arrays[name] = np.memmap(tmp, dt, "r+", at, shape)
        else:
            arrays[name] = np.zeros(shape, dt)
        at += count * np.dtype(dt).itemsize
    return arrays, offset


def _finish(tmp: str, path: Path, head: dict[str, Any], offset: int, arrays: dict[str, np.ndarray]) -> None:
    for array in arrays.values():
        if isinstance(array, np.memmap):
            array.flush()
    blob = json.dumps(head).encode()
    if len(MAGIC) + 8 + len(blob) > offset:  # too many recordings for the header's room: memory only
        os.unlink(tmp)
        return
    with open(tmp, "r+b") as f:
        f.write(MAGIC + len(blob).to_bytes(8, "little") + blob)
    os.replace(tmp, path)


def _fill_coarse(arrays: dict[str, np.ndarray]) -> None:
    """The principal directions of a sample, and every vector's coordinates along them."""
    vectors = arrays["vectors"]
    rng = np.random.default_rng(0)
    sample = vectors[np.sort(rng.choice(len(vectors), min(PCA_SAMPLE, len(vectors)), replace=False))]
    mean = sample.mean(0)
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
    arrays["mean"][:] = mean
    arrays["components"][:] = 0  # fewer samples than directions: the rest stay zero
    arrays["components"][:, :min(COARSE_DIM, len(vt))] = vt[:COARSE_DIM].T
    for lo in range(0, len(vectors), CHUNK):
        arrays["coarse"][lo:lo + CHUNK] = (vectors[lo:lo + CHUNK] - mean) @ arrays["components"]


# --------------------------------------------------------------------------------------------
# Ranking
# --------------------------------------------------------------------------------------------
def one_blas_thread() -> None:
    """Keep numpy's OpenBLAS to one thread in this process (once): a search's products are small
    or split over :func:`_dot`'s own two threads, and on a loaded 2-core machine OpenBLAS's own
    threads wait on each other (a query's embedding took 180-490 ms with them, 37-95 ms without)."""
    global _blas_set
    if _blas_set:
        return
    _blas_set = True
    import ctypes
    from pathlib import Path as _P

    folder = _P(np.__file__).parent.parent / "numpy.libs"
    for lib in sorted(folder.glob("*openblas*")) if folder.is_dir() else []:
        try:
            handle = ctypes.CDLL(str(lib))
        except OSError:
            continue
        for symbol in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads"):
            setter = getattr(handle, symbol, None)
            if setter is not None:
                setter(1)
                return


def _dot(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """rows @ query, a chunk at a time on two threads (one product is bound by one core's reads)."""
    global _pool
    out = np.empty(len(rows), np.float32)
    if len(rows) <= CHUNK:
        np.dot(rows, query, out=out)
        return out
    if _pool is None:
        _pool = ThreadPoolExecutor(2, thread_name_prefix="tvcaption-vectors")
    spans = [(lo, min(lo + CHUNK, len(rows))) for lo in range(0, len(rows), CHUNK)]
    list(_pool.map(lambda s: np.dot(rows[s[0]:s[1]], query, out=out[s[0]:s[1]]), spans))
    return out


def _best(ids: np.ndarray, scores: np.ndarray, top: int) -> np.ndarray:
    """Positions of the ``top`` best scores, best first, ties by scene id."""
    top = min(top, len(scores))
    if top <= 0:
        return np.zeros(0, np.int64)
    best = np.argpartition(-scores, top - 1)[:top] if top < len(scores) else np.arange(len(scores))
    return best[np.lexsort((ids[best], -scores[best]))]


def nearest(found: Matrix, query: np.ndarray, top: int, recording_id: int | None = None) -> Ranking:
    """The ``top`` scenes most similar to the unit vector ``query`` (all, or one recording's).
    A matrix with a delta: the changed recordings' rows score :data:`MASKED` and their vectors
    from the delta are scored exactly beside them."""
    query = np.asarray(query, np.float32)
    rows = slice(0, len(found.ids))
    if recording_id is not None:
        rows = slice(*found.ranges.get(int(recording_id), (0, 0)))
    ids, vectors = found.ids[rows], found.vectors[rows]
    masked = _masked(found, rows)
    extra_ids = extra_scores = None
    if found.changed is not None:
        keep = slice(None) if recording_id is None else found.extra_recordings == int(recording_id)
        extra_ids = found.extra_ids[keep]
        extra_scores = (found.extra_vectors[keep] @ query).astype(np.float32) if len(extra_ids) else \
            np.zeros(0, np.float32)
    if not len(ids):
        scores = np.zeros(0, np.float32)
        best = np.zeros(0, np.int64)
    elif found.coarse is None or len(ids) <= EXACT_MAX:
        scores = _dot(vectors, query)
        for lo, hi in masked:
            scores[lo:hi] = MASKED
        best = _best(ids, scores, top)
    else:
        scores = _dot(found.coarse[rows], (query @ found.components).astype(np.float32))
        scores += np.float32(found.mean @ query)
        for lo, hi in masked:
            scores[lo:hi] = MASKED
        candidates = np.sort(_best(ids, scores, max(RERANK, 20 * top)))
        candidates = candidates[scores[candidates] > MASKED]
        exact = vectors[candidates] @ query
        scores[candidates] = exact
        best = candidates[_best(ids[candidates], exact, top)]
    top_ids, top_scores = ids[best], scores[best]
    if extra_ids is not None and len(extra_ids):
        top_ids, top_scores = np.r_[top_ids, extra_ids], np.r_[top_scores, extra_scores].astype(np.float32)
        order = _best(top_ids, top_scores, top)
        top_ids, top_scores = top_ids[order], top_scores[order]
    if found.changed is not None and len(top_scores):
        keep = top_scores > MASKED
        top_ids, top_scores = top_ids[keep], top_scores[keep]
    return Ranking(top_ids, top_scores, found if len(ids) or extra_ids is not None else None, rows,
                   scores if len(ids) else np.zeros(0, np.float32), extra_ids, extra_scores)


def _masked(found: Matrix, rows: slice) -> list[tuple[int, int]]:
    """The row spans (relative to ``rows``) of the recordings changed since ``found`` was built."""
    if found.changed is None:
        return []
    spans = []
    for recording in found.changed.tolist():
        lo, hi = found.ranges.get(int(recording), (0, 0))
        lo, hi = max(lo, rows.start), min(hi, rows.stop)
        if hi > lo:
            spans.append((lo - rows.start, hi - rows.start))
    return spans
