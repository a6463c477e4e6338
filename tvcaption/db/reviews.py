"""Reviewers' corrections of captions, stored beside the model's, and lookups of scenes by id.

A correction is one more annotation of the scene, as every analyser's output is: analyser
``review`` (:data:`tvcaption.scene.REVIEW`), kind ``caption``, search field ``text`` (so search
finds the corrected words, and it is never hidden as out of domain), score None, data
``{"by": who, "at": ISO 8601 UTC time, "replaces": the caption shown before it}``. The model's
caption is never changed; every correction is kept (the history), and readers take the latest
(:meth:`tvcaption.scene.Annotated.of_kind`). :func:`add_correction` writes one in a single
transaction on SQLite or PostgreSQL; the full-text index follows by its triggers, and the scene's
meaning vector is embedded again from the corrected caption in the same transaction
(:func:`tvcaption.db.vectors.refresh_vectors`), so search by meaning finds the correction too.

A recording indexed again (``--reindex``, other analysers) gets new scenes; its corrections are
carried over to them (:func:`kept_corrections`, :func:`restore_corrections`, called by
:meth:`Store.save_result <tvcaption.db.store.Store.save_result>`) when its content is the same,
each to the new scene that overlaps its old scene most.

:func:`locate` maps search hits to (recording id, scene index), for links that name a scene by
id and never by a path from a request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select
from sqlalchemy.engine import Connection

from tvcaption.db import schema
from tvcaption.db.engine import begin_write, mapped
from tvcaption.db.scenes import annotation_row, insert_rows, text_backend
from tvcaption.db.vectors import refresh_vectors
from tvcaption.errors import TvcaptionError
from tvcaption.scene import REVIEW, Annotation

recordings_t = schema.Recording.__table__
scenes_t = schema.Scene.__table__
annotations_t = schema.Annotation.__table__

MAX_TEXT = 2000  # characters of a corrected caption
MAX_NAME = 100  # characters of a reviewer's name


class ReviewError(TvcaptionError):
    """A correction that cannot be stored as asked (no such scene, empty text, no name)."""


@dataclass(frozen=True)
class SceneRef:
    recording_id: int
    index: int


def _clean(text: str, limit: int, what: str) -> str:
    if not isinstance(text, str):
        raise ReviewError(f"{what}: give text")
    text = " ".join(text.replace("\x00", " ").split())  # one line, as captions are
    if not text:
        raise ReviewError(f"{what} is empty")
    if len(text) > limit:
        raise ReviewError(f"{what} is {len(text)} characters long; at most {limit}")
    return text


def _current_caption(conn: Connection, scene_id: int) -> tuple[str, int]:
    """The caption a reader sees now (latest correction, else the model's first) and the next position."""
    a = annotations_t
    rows = conn.execute(select(a.c.analyser, a.c.kind, a.c.text, a.c.position)
                        .where(a.c.scene_id == scene_id).order_by(a.c.position, a.c.id)).all()
    captions = [r for r in rows if r.kind == "caption"]
    reviewed = [r for r in captions if r.analyser == REVIEW]
    shown = reviewed[-1].text if reviewed else (captions[0].text if captions else "")
    return shown, max((r.position for r in rows), default=-1) + 1


def add_correction(engine: Engine | Any, recording_id: int, index: int, text: str, by: str,
                   at: datetime | None = None) -> Annotation:
    """Store ``text`` as the caption of scene ``index`` of recording ``recording_id``, corrected by
    ``by`` at ``at`` (now, UTC), in one transaction; returns the annotation stored.

    Whitespace is collapsed; an empty text or name, or one too long, is a :class:`ReviewError`,
    and so is a scene that does not exist (or a recording not indexed)."""
    engine = getattr(engine, "engine", engine)
    text = _clean(text, MAX_TEXT, "the caption")
    by = _clean(by, MAX_NAME, "the reviewer's name")
    when = (at or datetime.now(UTC)).astimezone(UTC)
    with mapped(engine), begin_write(engine) as conn:
        found = conn.execute(
            select(scenes_t.c.id, recordings_t.c.content_hash)
            .join(recordings_t, recordings_t.c.id == scenes_t.c.recording_id)
            .where(scenes_t.c.recording_id == int(recording_id), scenes_t.c["index"] == int(index),
                   recordings_t.c.status == "done")).first()
        if found is None:
            raise ReviewError(f"recording {recording_id} has no indexed scene {index}")
        scene_id = found.id
        replaces, position = _current_caption(conn, scene_id)
        data = {"by": by, "at": when.isoformat(timespec="seconds"), "replaces": replaces}
        if found.content_hash:  # carried over to new scenes only while the file's content is the same
            data["content_hash"] = found.content_hash
        note = Annotation(analyser=REVIEW, kind="caption", text=text, score=None, field="text", data=data)
        insert_rows(conn, annotations_t, [annotation_row(scene_id, position, note, backend=text_backend(conn))])
        refresh_vectors(conn, int(recording_id), [scene_id])  # search by meaning finds the corrected words
    return note


def locate(engine: Engine | Any, hits: Sequence[Any]) -> list[SceneRef | None]:
    """(recording id, scene index) of each hit (anything with ``recording``, ``start``), in one
    query; None for a hit whose scene is gone."""
    engine = getattr(engine, "engine", engine)
    if not hits:
        return []
    keys = list({(h.recording, float(h.start)) for h in hits})
    query = (select(recordings_t.c.path, scenes_t.c.start, scenes_t.c.recording_id, scenes_t.c["index"])
             .join(recordings_t, recordings_t.c.id == scenes_t.c.recording_id)
             .where(or_(*[and_(recordings_t.c.path == path, scenes_t.c.start == start) for path, start in keys])))
    with mapped(engine), engine.connect() as conn:
        found = {(row.path, float(row.start)): SceneRef(row.recording_id, row.index) for row in conn.execute(query)}
    return [found.get((h.recording, float(h.start))) for h in hits]


# --- carried over when a recording is indexed again -------------------------------------------

@dataclass(frozen=True)
class KeptCorrection:
    start: float
    end: float
    text: str
    data: dict[str, Any]


def kept_corrections(conn: Connection, recording_id: int) -> list[KeptCorrection]:
    """The recording's corrections with their scenes' times, oldest first (before its scenes go)."""
    a = annotations_t
    rows = conn.execute(select(scenes_t.c.start, scenes_t.c.end, a.c.text, a.c.data)
                        .join(scenes_t, scenes_t.c.id == a.c.scene_id)
                        .where(scenes_t.c.recording_id == recording_id, a.c.analyser == REVIEW)
                        .order_by(a.c.id)).all()
    return [KeptCorrection(float(r.start), float(r.end), r.text, dict(r.data or {})) for r in rows]


def restore_corrections(conn: Connection, recording_id: int, kept: Sequence[KeptCorrection]) -> int:
    """Attach ``kept`` to the recording's new scenes, each to the one overlapping its old scene
    most (a scene whose times did not change gets its own back), unless it was made on other
    content (the file was replaced), and embed those scenes' meaning again with their corrected
    captions; returns how many corrections were attached."""
    if not kept:
        return 0
    current = conn.execute(select(recordings_t.c.content_hash).where(recordings_t.c.id == recording_id)).scalar()
    kept = [k for k in kept if k.data.get("content_hash") in (None, current)]
    if not kept:
        return 0
    scenes = conn.execute(select(scenes_t.c.id, scenes_t.c.start, scenes_t.c.end)
                          .where(scenes_t.c.recording_id == recording_id).order_by(scenes_t.c["index"])).all()
    if not scenes:
        return 0
    ids = [s.id for s in scenes]
    next_position = dict(conn.execute(select(annotations_t.c.scene_id, func.max(annotations_t.c.position))
                                      .where(annotations_t.c.scene_id.in_(ids))
                                      .group_by(annotations_t.c.scene_id)).all())
    rows = []
    for k in kept:
        best = max(scenes, key=lambda s: (min(s.end, k.end) - max(s.start, k.start), -abs(s.start - k.start)))
        position = next_position.get(best.id, -1) + 1
        next_position[best.id] = position
        note = Annotation(analyser=REVIEW, kind="caption", text=k.text, field="text", data=k.data)
        rows.append(annotation_row(best.id, position, note, backend=text_backend(conn)))
    insert_rows(conn, annotations_t, rows)
    refresh_vectors(conn, recording_id, [row["scene_id"] for row in rows])
    return len(rows)

