"""The store: claims on recordings, their results written in one transaction, and reads.

Every write is one transaction (:func:`~tvcaption.db.engine.begin_write`: on SQLite it takes
the write lock up front). A recording's result, its scenes with every analyser's annotations,
replaces the old one in a single transaction, so search sees either the old scenes or the new
ones, never a mix. Parallel workers on several machines should use PostgreSQL, where
:meth:`Store.claim` uses ``SELECT ... FOR UPDATE SKIP LOCKED`` and never waits for a row another
worker has locked (claiming or saving it).

:func:`connect` opens a database (:func:`tvcaption.db.engine.open_engine`) and brings its schema
to the newest revision on first use (:mod:`tvcaption.db.migrate`). Commands that only read open
with ``connect(url, create=False)``, which never creates a database. Recordings are stored under
their resolved path; :meth:`Store.find_recording` finds one by any path that leads to it.

The names other modules used to import from here (``worker_id``, ``find_stored``, ``damage``,
...) are re-exported from :mod:`~tvcaption.db.workers`, :mod:`~tvcaption.db.paths` and
:mod:`~tvcaption.db.engine`.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import IntegrityError

from tvcaption.db import migrate as migrations
from tvcaption.db.engine import (  # noqa: F401 - re-exported for callers of tvcaption.db.store
    INDEX_HINT,
    begin_write,
    damage,
    damaged_error,
    database_error,
    db_label,
    mapped,
    open_engine,
)
from tvcaption.db.paths import find_stored, path_spellings  # noqa: F401 - re-exported
from tvcaption.db.reviews import add_correction, kept_corrections, restore_corrections
from tvcaption.db.scenes import annotations_t, insert_scenes, read_scenes, scenes_t
from tvcaption.db.schema import Model, Recording
from tvcaption.db.vectors import save_vectors, take_vectors
from tvcaption.db.workers import process_space, worker_id, worker_is_dead  # noqa: F401 - re-exported
from tvcaption.errors import DatabaseError, TvcaptionError
from tvcaption.scene import Scene

recordings_t = Recording.__table__
models_t = Model.__table__

ERROR_MAX_CHARS = 10_000
_TAKEN = object()  # Store._row_to_claim: the row is locked by another transaction


class _HashNeeded:
    """What :meth:`Store.claim` returns for a claim without a hash on a recording found done:
    another worker indexed it meanwhile, and only the hash tells whether it is this content."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "HASH_NEEDED"


HASH_NEEDED = _HashNeeded()


@dataclass(frozen=True)
class ModelInfo:
    """The captioning model a result came from; sha256 and meta are recorded when given."""

    name: str
    sha256: str | None = None
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class RecordingInfo:
    id: int
    path: str
    content_hash: str | None
    status: str
    duration: float | None
    model: str | None
    error: str | None
    claimed_by: str | None
    claimed_at: datetime | None
    indexed_at: datetime | None
    probe: dict[str, Any] | None


class ClaimLost(TvcaptionError):
    """save_result on a claim another worker has taken over: nothing was written."""


@dataclass(frozen=True)
class Claim:
    """A worker's right to index one recording until it saves, fails or the claim goes stale."""

    recording_id: int
    path: str
    content_hash: str | None  # None: the file is hashed while it is captioned
    worker: str
    claimed_at: datetime


class Heartbeat(threading.Thread):
    """The thread behind :meth:`Store.keep_alive`. A failed renewal (database busy or briefly
    unreachable) is tried again at the next beat; the claim then lives until ``claim_timeout``."""

    def __init__(self, store: Store, claim: Claim, every: float) -> None:
        super().__init__(name="tvcaption-claim", daemon=True)
        self.store, self.claim, self.every = store, claim, max(every, 0.01)
        self.lost = threading.Event()  # another worker owns the recording now
        self.renewals = 0
        self._quit = threading.Event()

    def run(self) -> None:
        while not self._quit.wait(self.every):
            try:
                if not self.store.renew(self.claim):
                    self.lost.set()
                    return
                self.renewals += 1
            except Exception:  # noqa: BLE001 - try again at the next beat
                continue

    def stop(self) -> None:
        self._quit.set()
        self.join()


@dataclass(frozen=True)
class Stats:
    recordings: int
    by_status: dict[str, int]
    scenes: int
    annotations: dict[str, int]  # how many of each kind ("caption", "tag", ...)
    models: int
    indexed_seconds: float  # total duration of recordings that are done
    last_indexed_at: datetime | None

    @property
    def captions(self) -> int:
        return self.annotations.get("caption", 0)

    @property
    def tags(self) -> int:
        return self.annotations.get("tag", 0)


def connect(url: str | URL, *, migrate: bool = True, busy_timeout: float = 5.0, create: bool = True) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``), migrated to head.

    :func:`~tvcaption.db.engine.open_engine` opens it (SQLite: WAL, foreign keys,
    ``busy_timeout`` seconds of waiting for a lock, its folder created). With ``migrate`` (the
    default) the schema is brought to the newest revision on first use; ``tvcaption db upgrade``
    does the same explicitly.

    ``create=False`` is for commands that only read (search, export, db current): they must
    never leave a new database behind. A SQLite file that does not exist raises
    :class:`~tvcaption.errors.MissingDatabaseError`; a PostgreSQL server or database that cannot
    be reached raises :class:`DatabaseError`. With ``migrate`` too, a database that holds no
    tvcaption schema (an empty file, a new PostgreSQL database) is not migrated but refused in
    one line; one at an older revision is brought forward as usual.
    """
    engine = open_engine(url, busy_timeout=busy_timeout, create=create, schema=migrate)
    if migrate:
        try:
            _migrate_once(engine, patience=max(busy_timeout * 4, 10.0))
        except BaseException:
            engine.dispose()
            raise
    return engine


def _migrate_once(engine: Engine, patience: float) -> None:
    """Bring the schema to head. Several indexers starting at once on a new SQLite file race to
    create it: one migrates while the others see "database is locked"; they retry until it is done."""
    deadline = time.monotonic() + patience
    while True:
        try:
            if not migrations.is_current(engine):
                migrations.upgrade(engine)
            return
        except DatabaseError as exc:
            if engine.dialect.name != "sqlite" or "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything we store is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _dialect_insert(conn: Connection, table):
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(table)


def _probe_dict(probe: Any) -> dict[str, Any] | None:
    if probe is None:
        return None
    if dataclasses.is_dataclass(probe) and not isinstance(probe, type):
        return dataclasses.asdict(probe)
    return dict(probe)


class Store:
    """Reads and writes for the indexer and exporter; every write is one transaction."""

    def __init__(self, engine: Engine | str, claim_timeout: float = 600.0) -> None:
        self._owns_engine = not isinstance(engine, Engine)
        self.engine: Engine = connect(engine) if self._owns_engine else engine
        self.claim_timeout = claim_timeout

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # transactions ------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction; database failures as one line (:func:`~tvcaption.db.engine.mapped`)."""
        with mapped(self.engine), begin_write(self.engine) as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with mapped(self.engine), self.engine.connect() as conn:
            yield conn

    # recordings --------------------------------------------------------------------------------
    @staticmethod
    def _info(row: Any) -> RecordingInfo:
        return RecordingInfo(
            id=row.id, path=row.path, content_hash=row.content_hash, status=row.status,
            duration=row.duration, model=row.model, error=row.error, claimed_by=row.claimed_by,
            claimed_at=_utc(row.claimed_at), indexed_at=_utc(row.indexed_at), probe=row.probe,
        )

    def get_recording(self, path: str) -> RecordingInfo | None:
        """The recording stored under exactly ``path``; see :meth:`find_recording` for paths as users write them."""
        if "\x00" in str(path):
            return None
        with self._read() as conn:
            row = conn.execute(select(recordings_t).where(recordings_t.c.path == str(path))).first()
        return None if row is None else self._info(row)

    def find_recording(self, path: str | os.PathLike[str]) -> RecordingInfo | None:
        """The recording that ``path`` names, however it is written, or None.

        ``path`` may be relative, hold ``..`` or go through symlinks: see :func:`find_stored`.
        """
        with self._read() as conn:
            row = find_stored(conn, path)
        return None if row is None else self._info(row)

    def rename_recording(self, old_path: str, new_path: str) -> bool:
        """Store the recording at ``old_path`` under ``new_path`` (e.g. its resolved path, when an
        older tvcaption stored another spelling). False when there is no ``old_path`` or another
        recording is stored as ``new_path`` already; nothing changes then."""
        if old_path == new_path:
            return False
        try:
            with self._write() as conn:
                if conn.execute(select(recordings_t.c.id).where(recordings_t.c.path == new_path)).first():
                    return False
                moved = conn.execute(update(recordings_t).where(recordings_t.c.path == old_path)
                                     .values(path=new_path, updated_at=func.now()))
        except IntegrityError:  # another worker stored new_path in between
            return False
        return moved.rowcount == 1

    def recordings(self, status: str | None = None, content_hash: str | None = None) -> list[RecordingInfo]:
        """All recordings by path, optionally only those with a status or content hash."""
        query = select(recordings_t).order_by(recordings_t.c.path)
        if status is not None:
            query = query.where(recordings_t.c.status == status)
        if content_hash is not None:
            query = query.where(recordings_t.c.content_hash == content_hash)
        with self._read() as conn:
            return [self._info(row) for row in conn.execute(query)]

    def claim(self, path: str, content_hash: str | None, worker: str, probe: Any = None, *,
              model: str | None = None, reindex: bool = False) -> Claim | None:
        """Take ``path`` for indexing, or None when there is nothing to do or someone else is on it.

        None when the recording is done with the same content hash (and ``model``, when given)
        unless ``reindex``; ``content_hash`` None: not known yet (a new file, hashed while it is
        captioned, whose hash :meth:`save_result` records), and :data:`HASH_NEEDED` (falsy)
        when the recording turns out done (another worker finished it since): claim again
        with the hash, or when another worker's claim is younger than ``claim_timeout``. A
        claim by a worker of our process space whose process is gone (see :func:`worker_is_dead`)
        is taken at once. ``probe`` is a dict or a dataclass such as ``VideoInfo``; its
        ``duration`` is kept in its own column.

        On PostgreSQL a recording whose row another transaction has locked (a worker claiming it,
        or saving its result) is skipped at once, never waited for (:meth:`_row_to_claim`).
        """
        path = str(path)
        probe_data = _probe_dict(probe)
        duration = probe_data.get("duration") if probe_data else None
        now = _now()
        values = dict(status="processing", content_hash=content_hash, probe=probe_data,
                      duration=duration, claimed_by=worker, claimed_at=now, error=None)
        with self._write() as conn:
            row = self._row_to_claim(conn, path)
            if row is _TAKEN:
                return None
            if row is None:
                stmt = _dialect_insert(conn, recordings_t).values(path=path, **values)
                if conn.dialect.name == "postgresql":  # another claimant may be inserting it right now
                    stmt = stmt.on_conflict_do_nothing(index_elements=[recordings_t.c.path])
                recording_id = conn.execute(stmt.returning(recordings_t.c.id)).scalar()
                if recording_id is None:
                    return None
            else:
                if row.status == "done" and not reindex and content_hash is None:
                    return HASH_NEEDED  # indexed by another worker since we looked: compare hashes first
                if row.status == "done" and not reindex and row.content_hash == content_hash \
                        and (model is None or row.model == model):
                    if probe_data is not None and row.probe != probe_data:  # e.g. a touched file's new mtime
                        conn.execute(update(recordings_t).where(recordings_t.c.id == row.id).values(probe=probe_data))
                    return None
                claimed_at = _utc(row.claimed_at)
                if row.status == "processing" and row.claimed_by != worker and claimed_at is not None \
                        and now - claimed_at < timedelta(seconds=self.claim_timeout) \
                        and not worker_is_dead(row.claimed_by):
                    return None
                recording_id = row.id
                conn.execute(update(recordings_t).where(recordings_t.c.id == row.id).values(**values))
        return Claim(recording_id=recording_id, path=path, content_hash=content_hash, worker=worker, claimed_at=now)

    @staticmethod
    def _row_to_claim(conn: Connection, path: str) -> Any:
        """``path``'s row, locked for this transaction; None when there is none; ``_TAKEN`` when
        another transaction holds its lock (a worker claiming it, renewing its claim or saving its
        result): not ours to take, and never waited for.

        On SQLite the write transaction holds the database's lock. On PostgreSQL the row is read
        ``FOR UPDATE SKIP LOCKED``, which cannot tell a locked row from a missing one: a plain read
        tells. (An INSERT ... ON CONFLICT in its place waited for the lock, so a claim used to wait
        for a save's whole transaction.)"""
        query = select(recordings_t).where(recordings_t.c.path == path)
        if conn.dialect.name != "postgresql":
            return conn.execute(query).first()
        row = conn.execute(query.with_for_update(skip_locked=True)).first()
        if row is None and conn.execute(select(recordings_t.c.id).where(recordings_t.c.path == path)).first():
            return _TAKEN
        return row

    def release(self, recording_id: int) -> None:
        """Give a claim back unfinished (interrupted worker): the recording is pending again."""
        with self._write() as conn:
            conn.execute(update(recordings_t)
                         .where(recordings_t.c.id == recording_id, recordings_t.c.status == "processing")
                         .values(status="pending", claimed_by=None, claimed_at=None))

    def renew(self, claim: Claim) -> bool:
        """Refresh ``claim`` so that it does not go stale; False when another worker has taken it over."""
        with self._write() as conn:
            kept = conn.execute(update(recordings_t).where(
                recordings_t.c.id == claim.recording_id, recordings_t.c.claimed_by == claim.worker,
                recordings_t.c.status == "processing").values(claimed_at=_now()))
        return kept.rowcount == 1

    @contextmanager
    def keep_alive(self, claim: Claim, every: float | None = None) -> Iterator[Heartbeat]:
        """Renew ``claim`` every ``every`` seconds (default: a quarter of ``claim_timeout``) in a
        thread while the block runs, so a recording that takes longer than ``claim_timeout`` to
        caption is not taken over by another worker. ``lost`` is set when it was taken anyway."""
        beat = Heartbeat(self, claim, self.claim_timeout / 4 if every is None else every)
        beat.start()
        try:
            yield beat
        finally:
            beat.stop()

    def mark_failed(self, path: str, error: str) -> None:
        """Record that indexing ``path`` failed (the recording row is created if it is new)."""
        values = dict(status="failed", error=str(error)[:ERROR_MAX_CHARS], claimed_by=None, claimed_at=None)
        with self._write() as conn:
            stmt = _dialect_insert(conn, recordings_t).values(path=str(path), **values)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=[recordings_t.c.path], set_=dict(values, updated_at=func.now())))

    def register_model(self, model: ModelInfo | str) -> None:
        with self._write() as conn:
            self._upsert_model(conn, model if isinstance(model, ModelInfo) else ModelInfo(model))

    @staticmethod
    def _upsert_model(conn: Connection, model: ModelInfo) -> None:
        stmt = _dialect_insert(conn, models_t).values(name=model.name, sha256=model.sha256, meta=model.meta)
        changes = {k: v for k, v in (("sha256", model.sha256), ("meta", model.meta)) if v is not None}
        if changes:
            stmt = stmt.on_conflict_do_update(index_elements=[models_t.c.name], set_=changes)
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=[models_t.c.name])
        conn.execute(stmt)

    def save_result(self, recording: Claim | int, scenes: Sequence[Scene], model: ModelInfo | str, *,
                    content_hash: str | None = None, probe: Any = None) -> int:
        """Replace the recording's scenes and their annotations and mark it done, in one transaction.

        ``recording`` is the Claim (or its ``recording_id``); ``scenes`` are
        :class:`tvcaption.scene.Scene` s in the recording's order, each with every annotation its
        analysers gave, kept in that order. Search sees either the old scenes or the new ones,
        never a mix; a failure anywhere leaves the old state. Rows go in as one executemany per
        table, not one round trip per scene. Returns the number of scenes stored.

        ``content_hash`` and ``probe`` (a dict or dataclass, as for :meth:`claim`), when given,
        replace what the claim recorded: the file as it was when captioning finished, should it
        have changed (grown) since it was claimed. ``probe`` also sets ``duration``.
        """
        recording_id = recording.recording_id if isinstance(recording, Claim) else int(recording)
        info = model if isinstance(model, ModelInfo) else ModelInfo(model)
        final: dict[str, Any] = {}
        if content_hash is not None:
            final["content_hash"] = content_hash
        if probe is not None:
            final["probe"] = _probe_dict(probe)
            final["duration"] = final["probe"].get("duration")
        with self._write() as conn:
            self._mark_done(conn, recording, recording_id, info.name, final)
            self._upsert_model(conn, info)
            kept = kept_corrections(conn, recording_id)  # reviewers' corrections outlive a re-index
            conn.execute(delete(scenes_t).where(scenes_t.c.recording_id == recording_id))  # cascades
            scenes, vectors = take_vectors(scenes)  # meaning vectors go to their own table
            insert_scenes(conn, recording_id, scenes)
            save_vectors(conn, recording_id, vectors)
            restore_corrections(conn, recording_id, kept)
        return len(scenes)

    @staticmethod
    def _mark_done(conn: Connection, recording: Claim | int, recording_id: int, model: str,
                   final: dict[str, Any]) -> None:
        """Mark the recording done, if the claim is still ours (a stale one may have been taken over)."""
        mine = recordings_t.c.id == recording_id
        if isinstance(recording, Claim):
            mine = mine & (recordings_t.c.claimed_by == recording.worker) & (recordings_t.c.status == "processing")
        done = conn.execute(update(recordings_t).where(mine).values(
            status="done", model=model, indexed_at=_now(), error=None, claimed_by=None, claimed_at=None, **final))
        if done.rowcount == 1:
            return
        if isinstance(recording, Claim) and conn.execute(
                select(recordings_t.c.id).where(recordings_t.c.id == recording_id)).first() is not None:
            raise ClaimLost(f"{recording.path}: another worker took this recording over "
                            f"(our claim went stale after claim_timeout); its result is kept")
        raise DatabaseError(f"recording {recording_id}: not in the database; claim it before saving")

    # reads for export and status --------------------------------------------------------------
    def scenes_of(self, recording: str | int) -> list[Scene]:
        """The recording's scenes in order (by path as stored, or id), each with its ``index`` and
        its annotations in the order the analysers gave them; empty when it has none or is unknown."""
        with self._read() as conn:
            if isinstance(recording, int):
                recording_id = recording
            else:
                recording_id = conn.execute(select(recordings_t.c.id)
                                            .where(recordings_t.c.path == str(recording))).scalar()
                if recording_id is None:
                    return []
            return read_scenes(conn, recording_id)

    def add_correction(self, recording_id: int, index: int, text: str, by: str, at: datetime | None = None):
        """A reviewer's caption for scene ``index``, stored beside the model's in one transaction
        (:func:`tvcaption.db.reviews.add_correction`); returns the annotation."""
        return add_correction(self.engine, recording_id, index, text, by, at)

    def stats(self) -> Stats:
        with self._read() as conn:
            by_status = {status: n for status, n in conn.execute(
                select(recordings_t.c.status, func.count()).group_by(recordings_t.c.status))}
            by_kind = {kind: n for kind, n in conn.execute(
                select(annotations_t.c.kind, func.count()).group_by(annotations_t.c.kind))}
            count = {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                     for t in (scenes_t, models_t)}
            seconds, last = conn.execute(
                select(func.coalesce(func.sum(recordings_t.c.duration), 0.0), func.max(recordings_t.c.indexed_at))
                .where(recordings_t.c.status == "done")).one()
        return Stats(recordings=sum(by_status.values()), by_status=by_status, scenes=count["scenes"],
                     annotations=by_kind, models=count["models"],
                     indexed_seconds=float(seconds), last_indexed_at=_utc(last))
