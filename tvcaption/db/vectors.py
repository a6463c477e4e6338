"""Meaning vectors in the database: written with a recording's scenes, searched by a numpy scan.

The meaning analyser (:mod:`tvcaption.analysers.meaning`) hands each scene's vector to the store
inside an ``embedding`` annotation; :func:`take_vectors` takes those out of the scenes before
their annotations are written (a vector is not text: it has its own table) and
:func:`save_vectors` writes them, in the same transaction, as one ``recording_vectors`` row per
recording (scene ids int64 and vectors float32, two blobs; migration 0005).

Search (:func:`nearest`) reads the vectors of every done recording made with the query's model
and ranks them all by cosine similarity (the vectors have unit length: a dot product), in numpy,
on both backends. Why a scan and not an index: SQLite here cannot load extensions (Python's
``sqlite3`` is built without ``enable_load_extension``, so ``sqlite-vec`` cannot be used), and
PostgreSQL's ``pgvector`` has no Debian bookworm package; an exact scan also gives every scene
a rank, which hybrid search needs for the text hits (:mod:`tvcaption.db.hybrid`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from tvcaption.db.schema import Recording, RecordingVectors, Scene as SceneRow
from tvcaption.scene import Scene

if TYPE_CHECKING:  # numpy is imported where vectors are used: storing text-only results needs none
    import numpy as np

ANALYSER, KIND = "meaning", "embedding"  # the annotation that carries a vector to the store
vectors_t = RecordingVectors.__table__
recordings_t = Recording.__table__
scenes_t = SceneRow.__table__


@dataclass(frozen=True)
class SceneVectors:
    """Scene positions in the recording, their vectors (N, dim) float32 and the model's name."""

    positions: list[int]
    vectors: np.ndarray
    model: str


def _is_vector(a) -> bool:
    """The meaning analyser's vector (other analysers' ``embedding`` annotations stay annotations)."""
    return a.analyser == ANALYSER and a.kind == KIND and bool(a.data) and isinstance(a.data.get("vector"), str)


def take_vectors(scenes: Sequence[Scene]) -> tuple[list[Scene], SceneVectors | None]:
    """The scenes without their ``embedding`` annotations, and those annotations' vectors."""
    from tvcaption.analysers.meaning import decode_vector

    if not any(_is_vector(a) for scene in scenes for a in scene.annotations):
        return list(scenes), None
    import numpy as np

    kept: list[Scene] = []
    positions: list[int] = []
    rows: list[np.ndarray] = []
    model = ""
    for i, scene in enumerate(scenes):
        vectors = [a for a in scene.annotations if _is_vector(a)]
        if not vectors:
            kept.append(scene)
            continue
        model = str(vectors[0].data.get("model", ""))
        positions.append(i)
        rows.append(decode_vector(vectors[0].data["vector"]))
        kept.append(replace(scene, annotations=tuple(a for a in scene.annotations if not _is_vector(a))))
    if not rows:
        return kept, None
    return kept, SceneVectors(positions, np.stack(rows).astype("<f4"), model)


def save_vectors(conn: Connection, recording_id: int, found: SceneVectors | None) -> None:
    """Replace the recording's vectors (none: delete them); its scenes are already written."""
    conn.execute(delete(vectors_t).where(vectors_t.c.recording_id == recording_id))
    if found is None:
        return
    import numpy as np

    ids = dict(conn.execute(select(scenes_t.c["index"], scenes_t.c.id)
                            .where(scenes_t.c.recording_id == recording_id)).all())
    scene_ids = np.array([ids[p] for p in found.positions], "<i8")
    conn.execute(insert(vectors_t).values(recording_id=recording_id, model=found.model, dim=found.vectors.shape[1],
                                          scene_ids=scene_ids.tobytes(), vectors=found.vectors.tobytes()))


def refresh_vectors(conn: Connection, recording_id: int, scene_ids: Sequence[int]) -> int:
    """Embed again what the scenes ``scene_ids`` of the recording say now, a reviewer's latest
    correction in place of the model's caption (:func:`~tvcaption.analysers.meaning.reviewed_text`),
    and replace their vectors in the recording's row; returns how many changed. Nothing when the
    recording has no vectors or they come from another model than the packaged one (search by
    meaning would compare vectors of two models)."""
    import numpy as np

    from tvcaption.analysers.meaning import reviewed_text
    from tvcaption.db.scenes import annotations_of
    from tvcaption.embedding import MODEL_NAME, embedder

    row = conn.execute(select(vectors_t).where(vectors_t.c.recording_id == recording_id)).first()
    if row is None or row.model != MODEL_NAME or not scene_ids:
        return 0
    ids = np.frombuffer(row.scene_ids, "<i8")
    vectors = np.frombuffer(row.vectors, "<f4").reshape(len(ids), row.dim).copy()
    wanted = sorted(set(int(i) for i in scene_ids))
    texts = {i: reviewed_text(found) for i, found in annotations_of(conn, wanted).items()}
    texts = {i: t for i, t in texts.items() if t}
    if not texts:
        return 0
    order = list(texts)
    fresh = embedder().embed([texts[i] for i in order])
    where = {int(i): k for k, i in enumerate(ids)}
    added_ids, added = [], []
    for i, vector in zip(order, fresh, strict=True):
        if i in where:
            vectors[where[i]] = vector
        else:  # a scene that had nothing to embed before its correction
            added_ids.append(i)
            added.append(vector)
    if added:
        ids = np.concatenate([ids, np.array(added_ids, "<i8")])
        vectors = np.concatenate([vectors, np.stack(added).astype("<f4")])
    conn.execute(vectors_t.update().where(vectors_t.c.recording_id == recording_id)
                 .values(scene_ids=ids.astype("<i8").tobytes(), vectors=vectors.astype("<f4").tobytes()))
    return len(order)


def has_vectors(conn: Connection) -> bool:
    """Whether any recording has vectors (False also for a schema older than 0005)."""
    from sqlalchemy.exc import DBAPIError

    try:
        with conn.begin_nested():
            return conn.execute(select(vectors_t.c.recording_id).limit(1)).first() is not None
    except DBAPIError:
        return False


def scores(conn: Connection, query: "np.ndarray", model: str,
           recording: str | None = None) -> tuple["np.ndarray", "np.ndarray"]:
    """(scene ids (N,) int64, cosine similarities (N,) float32) of every scene of the done
    recordings made with ``model`` (only the one stored as ``recording``, when given), a
    recording's block at a time: the vectors are never copied into one matrix."""
    import numpy as np

    query = np.asarray(query, np.float32)
    select_rows = (select(vectors_t.c.scene_ids, vectors_t.c.vectors, vectors_t.c.dim)
                   .join(recordings_t, recordings_t.c.id == vectors_t.c.recording_id)
                   .where(vectors_t.c.model == model, recordings_t.c.status == "done"))
    if recording is not None:
        select_rows = select_rows.where(recordings_t.c.path == recording)
    ids: list[np.ndarray] = []
    found: list[np.ndarray] = []
    for row in conn.execute(select_rows):
        ids.append(np.frombuffer(row.scene_ids, "<i8"))
        found.append(np.frombuffer(row.vectors, "<f4").reshape(-1, int(row.dim)) @ query)
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(ids), np.concatenate(found)


@dataclass(frozen=True)
class Ranking:
    """Every scene with a vector, by similarity to the query: ids and scores, best first, for the
    ``top`` best; :meth:`rank_of` gives any scene's 1-based rank among all of them."""

    ids: np.ndarray  # (top,) scene ids, best first
    scores: np.ndarray  # (top,) cosine similarities
    all_ids: np.ndarray
    all_scores: np.ndarray

    def rank_of(self, scene_ids: Sequence[int]) -> dict[int, int]:
        """1-based rank among all scenes of each scene id that has a vector."""
        out: dict[int, int] = {}
        for scene_id in scene_ids:  # a few text hits: a vectorised pass over all scenes each
            where = (self.all_ids == int(scene_id)).nonzero()[0]
            if len(where):
                out[int(scene_id)] = int((self.all_scores > self.all_scores[where[0]]).sum()) + 1
        return out


def nearest(conn: Connection, query: np.ndarray, model: str, top: int, recording: str | None = None) -> Ranking:
    """The ``top`` scenes most similar to the unit vector ``query``, ties by scene id."""
    import numpy as np

    ids, similarity = scores(conn, query, model, recording)
    if not len(ids):
        return Ranking(ids, similarity, ids, similarity)
    top = min(top, len(ids))
    best = np.argpartition(-similarity, top - 1)[:top] if top < len(ids) else np.arange(len(ids))
    best = best[np.lexsort((ids[best], -similarity[best]))]
    return Ranking(ids[best], similarity[best], ids, similarity)
