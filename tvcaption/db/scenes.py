"""A recording's scenes and their annotations as rows: written in three statements, read as Scenes.

Every analyser's output goes into one table, ``annotations``, the same way: a scene's
annotations in their order (``position``), each with its analyser, kind, text, score, search
field and JSON data. Nothing here knows which analysers exist. The full-text index follows the
rows by itself (triggers, migration 0003), inside the writing transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from tvcaption.db import schema
from tvcaption.scene import Annotation, Scene
from tvcaption.search_terms import SQLITE, Backend, folded_terms, index_terms, postgresql

recordings_t = schema.Recording.__table__
scenes_t = schema.Scene.__table__
annotations_t = schema.Annotation.__table__


def insert_rows(conn: Connection, table, rows: list[dict[str, Any]]) -> None:
    """One executemany (a compiled statement reused, no round trip per row).

    On PostgreSQL, RETURNING makes SQLAlchemy send the rows as multi-row INSERTs
    ("insertmanyvalues", 1000 a statement), so the search index's statement-level triggers run
    once per batch; a plain executemany would run them once per row.
    """
    if not rows:
        return
    stmt = insert(table)
    if conn.dialect.name == "postgresql":
        stmt = stmt.returning(table.c.id)
    conn.execute(stmt, rows)


# An annotation's data may list broader words it also answers to (a tag's WordNet hypernyms):
# they are indexed after its text, in its search field, and shown with it in JSON.
HYPERNYMS = "hypernyms"


def hypernym_terms(a: Annotation, indexed: set[str] | None = None) -> str | None:
    """The words of ``a.data["hypernyms"]`` to index: those not in its text and not in ``indexed``
    (the scene's hypernym words indexed so far, updated here), each once, in order; then their
    CJK terms (:func:`index_terms`). None when there are none.

    Each word counts once per scene, so a hypernym never outweighs a word said in a caption by
    repetition: "vehicle" of "motor vehicle" and "wheeled vehicle", "dog" of three dog breeds.
    """
    listed = (a.data or {}).get(HYPERNYMS)
    if not isinstance(listed, (list, tuple)):
        return None
    phrases = [p for p in listed if isinstance(p, str) and p.strip()]
    indexed = set() if indexed is None else indexed
    own = {w.casefold() for w in (a.text or "").split()}
    words = []
    for word in " ".join(phrases).split():
        key = word.casefold()
        if key not in own and key not in indexed:
            indexed.add(key)
            words.append(word)
    found = [part for part in (" ".join(words), index_terms(" ".join(phrases))) if part]
    return " ".join(found) or None


_backends: dict[str, Backend] = {}  # database URL -> what its full-text tokenizer folds


def text_backend(conn: Connection) -> Backend:
    """What the database's full-text search folds by itself (:class:`tvcaption.search_terms.Backend`):
    SQLite's unicode61 folds Latin accents and every capital; PostgreSQL's ``english`` configuration
    no accent, and capitals beyond ASCII only where the database's LC_CTYPE is a UTF-8 locale
    (asked once per database)."""
    if conn.dialect.name != "postgresql":
        return SQLITE
    key = conn.engine.url.render_as_string(hide_password=True)
    if key not in _backends:
        _backends[key] = postgresql(bool(conn.exec_driver_sql("SELECT lower('ΑЁ') = 'αё'").scalar()))
    return _backends[key]


def annotation_row(scene_id: int, position: int, a: Annotation, indexed: set[str] | None = None,
                   backend: Backend = SQLITE) -> dict[str, Any]:
    """The row of one annotation. ``terms``, indexed after its text (annotations with a search
    field only): CJK character pairs of the text and its words folded as ``backend`` does not
    fold them (:mod:`tvcaption.search_terms`; :func:`text_backend`), and its hypernyms
    (:func:`hypernym_terms`; ``indexed``: the scene's hypernym words so far)."""
    terms = None
    if a.field is not None:
        terms = " ".join(t for t in (index_terms(a.text), folded_terms(a.text, backend), hypernym_terms(a, indexed))
                         if t) or None
    return dict(scene_id=scene_id, analyser=a.analyser, kind=a.kind, position=position, text=a.text,
                score=None if a.score is None else float(a.score), field=a.field,
                data=None if a.data is None else dict(a.data), terms=terms)


def insert_scenes(conn: Connection, recording_id: int, scenes: Sequence[Scene]) -> None:
    """Add ``scenes`` (numbered 0, 1, ... in the order given) and all their annotations to the
    recording: one executemany for the scenes, one query for their ids, one executemany for the
    annotations. The caller has removed the recording's old scenes in the same transaction."""
    if not scenes:
        return
    insert_rows(conn, scenes_t, [
        dict(recording_id=recording_id, index=i, start=float(s.start), end=float(s.end),
             start_frame=int(s.start_frame), end_frame=int(s.end_frame))
        for i, s in enumerate(scenes)])
    ids = dict(conn.execute(select(scenes_t.c["index"], scenes_t.c.id)
                            .where(scenes_t.c.recording_id == recording_id)).all())
    rows = []
    backend = text_backend(conn)
    for i, s in enumerate(scenes):
        indexed: set[str] = set()  # the scene's hypernym words indexed so far: each counts once
        rows += [annotation_row(ids[i], position, a, indexed, backend) for position, a in enumerate(s.annotations)]
    insert_rows(conn, annotations_t, rows)


def _annotation(row: Any) -> Annotation:
    return Annotation(analyser=row.analyser, kind=row.kind, text=row.text, score=row.score,
                      field=row.field, data=row.data)


def annotations_of(conn: Connection, scene_ids: Sequence[int]) -> dict[int, tuple[Annotation, ...]]:
    """Scene id -> its annotations in position order, for every id given, in one query."""
    if not scene_ids:
        return {}
    a = annotations_t
    query = (select(a.c.scene_id, a.c.analyser, a.c.kind, a.c.text, a.c.score, a.c.field, a.c.data)
             .where(a.c.scene_id.in_(list(dict.fromkeys(scene_ids))))
             .order_by(a.c.scene_id, a.c.position, a.c.id))
    found: dict[int, list[Annotation]] = {}
    for row in conn.execute(query):
        found.setdefault(row.scene_id, []).append(_annotation(row))
    return {scene_id: tuple(annotations) for scene_id, annotations in found.items()}


def read_scenes(conn: Connection, recording_id: int) -> list[Scene]:
    """The recording's scenes in order, each with ``index`` and its annotations in position order.

    One query (scenes outer-joined to their annotations), so that it reads one snapshot even on
    PostgreSQL, where each statement of a READ COMMITTED transaction may see a newer save."""
    a = annotations_t
    query = (select(scenes_t.c.id, scenes_t.c["index"].label("number"), scenes_t.c.start, scenes_t.c.end,
                    scenes_t.c.start_frame, scenes_t.c.end_frame, a.c.id.label("annotation_id"),
                    a.c.analyser, a.c.kind, a.c.text, a.c.score, a.c.field, a.c.data)
             .outerjoin(a, a.c.scene_id == scenes_t.c.id)
             .where(scenes_t.c.recording_id == recording_id)
             .order_by(scenes_t.c["index"], a.c.position, a.c.id))
    scenes: dict[int, tuple[Any, list[Annotation]]] = {}
    for row in conn.execute(query):
        _, annotations = scenes.setdefault(row.id, (row, []))
        if row.annotation_id is not None:
            annotations.append(_annotation(row))
    return [Scene(start=row.start, end=row.end, start_frame=row.start_frame, end_frame=row.end_frame,
                  index=row.number, annotations=tuple(annotations)) for row, annotations in scenes.values()]
