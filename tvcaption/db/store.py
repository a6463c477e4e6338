"""Opening the database and the reads and writes the indexer and exporter need.

SQLite is opened in WAL mode (readers never block the writer), with foreign keys on and a busy
timeout. pysqlite's own transaction handling is switched off (it does not BEGIN before DDL, so
migrations would not be atomic) and replaced by an explicit ``BEGIN``; writes use ``BEGIN
IMMEDIATE`` so a transaction takes the write lock up front instead of failing half-way when
another process committed since it first read. A second writer therefore waits up to
``busy_timeout`` seconds and then gets a :class:`DatabaseError` naming the file, never a
half-written recording. Parallel workers on several machines should use PostgreSQL, where
:meth:`Store.claim` uses ``SELECT ... FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import OperationalError

from tvcaption.db.schema import Caption, Model, Recording, Scene, Tag
from tvcaption.errors import DatabaseError, TvcaptionError

recordings_t = Recording.__table__
scenes_t = Scene.__table__
captions_t = Caption.__table__
tags_t = Tag.__table__
models_t = Model.__table__

ERROR_MAX_CHARS = 10_000


# --- results and inputs -----------------------------------------------------------------------

@dataclass(frozen=True)
class ModelInfo:
    """The captioning model a result came from; sha256 and meta are recorded when given."""

    name: str
    sha256: str | None = None
    meta: dict[str, Any] | None = None


@dataclass(frozen=True)
class SceneRecord:
    """One scene as the indexer hands it over: times in seconds, end exclusive."""

    start: float
    end: float
    start_frame: int
    end_frame: int
    caption: str
    score: float | None = None
    tags: Sequence[tuple[str, float]] = ()


@dataclass(frozen=True)
class StoredScene:
    index: int
    start: float
    end: float
    start_frame: int
    end_frame: int
    caption: str
    score: float | None
    tags: tuple[tuple[str, float], ...]


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
    content_hash: str
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
    captions: int
    tags: int
    models: int
    indexed_seconds: float  # total duration of recordings that are done
    last_indexed_at: datetime | None


# --- engine ---------------------------------------------------------------------------------

def _normalize_url(url: str | URL) -> URL:
    u = make_url(url)
    # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2.
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def _sqlite_file(u: URL) -> Path | None:
    db = u.database
    if not db or db == ":memory:" or db.startswith("file:") or u.query.get("mode") == "memory":
        return None
    return Path(db)


def connect(url: str | URL, *, migrate: bool = True, busy_timeout: float = 5.0) -> Engine:
    """An engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``).

    SQLite gets WAL, foreign keys and ``busy_timeout`` seconds of waiting for a lock, and its
    folder is created. With ``migrate`` (the default) the schema is brought to the newest
    revision on first use; ``tvcaption db upgrade`` does the same explicitly.
    """
    u = _normalize_url(url)
    label = u.render_as_string(hide_password=True)
    backend = u.get_backend_name()
    if backend == "sqlite":
        file = _sqlite_file(u)
        if file is not None:
            try:
                file.expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(f"{file}: cannot create the database folder ({exc.strerror}); "
                                    "set database.url to a writable path") from None
        engine = create_engine(u, connect_args={"timeout": busy_timeout})
        _sqlite_setup(engine, wal=file is not None, busy_timeout=busy_timeout)
    elif backend == "postgresql":
        engine = create_engine(u, pool_pre_ping=True)
    else:
        raise DatabaseError(f"{label}: unsupported database; use sqlite:///path or postgresql+psycopg://...")
    engine.info = {"busy_timeout": busy_timeout}  # read by Store for its error messages
    if migrate:
        from tvcaption.db import migrate as migrations

        try:
            _migrate_once(engine, migrations, patience=max(busy_timeout * 4, 10.0))
        except BaseException:
            engine.dispose()
            raise
    return engine


def _migrate_once(engine: Engine, migrations, patience: float) -> None:
    """Bring the schema to head. Several indexers starting at once on a new SQLite file race to
    create it: one migrates while the others see "database is locked"; they retry until it is done."""
    import time

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


def _sqlite_setup(engine: Engine, *, wal: bool, busy_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see module docstring
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if wal:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("tvcaption_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


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


def _insert_rows(conn: Connection, table, rows: list[dict[str, Any]]) -> None:
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


def process_space() -> str:
    """A short key naming the set of processes whose pids this process can check.

    Two workers share it when they run under the same kernel boot (``boot_id``) in the same pid
    namespace, on a host of the same name. Containers with one hostname on one machine (or on
    two) then get different keys, so one never reads another's pid as its own.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pid_namespace = os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    except OSError:  # not Linux: the host name alone
        boot = pid_namespace = ""
    return hashlib.sha256("\0".join((socket.gethostname(), boot, pid_namespace)).encode()).hexdigest()[:12]


def worker_id() -> str:
    """This process as a claimant: ``hostname:pid:space`` (what ``index_paths`` records in claimed_by)."""
    return f"{socket.gethostname()}:{os.getpid()}:{process_space()}"


def worker_is_dead(worker: str | None) -> bool:
    """True when ``worker`` (``hostname:pid:space``) is a process we can check and it no longer exists.

    A claim by such a worker can be taken at once instead of after ``claim_timeout``: the worker
    was killed (SIGKILL, OOM killer, power cut of a container) and will never save or release it.
    Only a worker of our own process space (:func:`process_space`: same host, kernel boot and pid
    namespace) can be checked. Anything else (another host or container, a worker id of another
    form, a pid that exists or cannot be checked) counts as alive, and its claim goes stale only
    after ``claim_timeout``. A recycled pid only makes us wait for the timeout; it never takes a
    live claim.
    """
    parts = (worker or "").split(":")
    if len(parts) != 3:
        return False
    host, pid, space = parts
    if host != socket.gethostname() or space != process_space() or not pid.isdigit() or int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists, as another user
        return False
    return False


def _probe_dict(probe: Any) -> dict[str, Any] | None:
    if probe is None:
        return None
    if dataclasses.is_dataclass(probe) and not isinstance(probe, type):
        return dataclasses.asdict(probe)
    return dict(probe)


# --- the store ------------------------------------------------------------------------------

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
    def _error(self, exc: OperationalError) -> DatabaseError:
        label = self.engine.url.render_as_string(hide_password=True)
        message = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if "database is locked" in message or "database is busy" in message:
            waited = self.engine.info.get("busy_timeout", 0)
            return DatabaseError(
                f"{label}: database is locked by another writer (waited {waited:g} s); run one "
                "indexer per SQLite file, or use PostgreSQL for parallel workers")
        return DatabaseError(f"{label}: {message}")

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            with self.engine.connect().execution_options(tvcaption_write=True) as conn, conn.begin():
                yield conn
        except OperationalError as exc:
            raise self._error(exc) from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except OperationalError as exc:
            raise self._error(exc) from exc

    # recordings --------------------------------------------------------------------------------
    @staticmethod
    def _info(row: Any) -> RecordingInfo:
        return RecordingInfo(
            id=row.id, path=row.path, content_hash=row.content_hash, status=row.status,
            duration=row.duration, model=row.model, error=row.error, claimed_by=row.claimed_by,
            claimed_at=_utc(row.claimed_at), indexed_at=_utc(row.indexed_at), probe=row.probe,
        )

    def get_recording(self, path: str) -> RecordingInfo | None:
        with self._read() as conn:
            row = conn.execute(select(recordings_t).where(recordings_t.c.path == str(path))).first()
        return None if row is None else self._info(row)

    def recordings(self, status: str | None = None, content_hash: str | None = None) -> list[RecordingInfo]:
        """All recordings by path, optionally only those with a status or content hash."""
        query = select(recordings_t).order_by(recordings_t.c.path)
        if status is not None:
            query = query.where(recordings_t.c.status == status)
        if content_hash is not None:
            query = query.where(recordings_t.c.content_hash == content_hash)
        with self._read() as conn:
            return [self._info(row) for row in conn.execute(query)]

    def claim(self, path: str, content_hash: str, worker: str, probe: Any = None, *,
              model: str | None = None, reindex: bool = False) -> Claim | None:
        """Take ``path`` for indexing, or None when there is nothing to do or someone else is on it.

        None when the recording is done with the same content hash (and ``model``, when given)
        unless ``reindex``, or when another worker's claim is younger than ``claim_timeout``
        (or, on PostgreSQL, another worker is claiming it right now). A claim by a worker of our
        process space whose process is gone (see :func:`worker_is_dead`) is taken at once. ``probe`` is a dict or a
        dataclass such as ``VideoInfo``; its ``duration`` is kept in its own column.
        """
        path = str(path)
        probe_data = _probe_dict(probe)
        duration = probe_data.get("duration") if probe_data else None
        now = _now()
        values = dict(status="processing", content_hash=content_hash, probe=probe_data,
                      duration=duration, claimed_by=worker, claimed_at=now, error=None)
        with self._write() as conn:
            query = select(recordings_t).where(recordings_t.c.path == path)
            postgres = conn.dialect.name == "postgresql"
            if postgres:
                query = query.with_for_update(skip_locked=True)
            row = conn.execute(query).first()
            if row is None:
                stmt = _dialect_insert(conn, recordings_t).values(path=path, **values)
                if postgres:  # the row may exist but be locked by a worker claiming it now
                    stmt = stmt.on_conflict_do_nothing(index_elements=[recordings_t.c.path])
                recording_id = conn.execute(stmt.returning(recordings_t.c.id)).scalar()
                if recording_id is None:
                    return None
            else:
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

    def save_result(self, recording: Claim | int, scenes: Sequence[SceneRecord], model: ModelInfo | str) -> int:
        """Replace the recording's scenes, captions and tags and mark it done, in one transaction.

        ``recording`` is the Claim (or its ``recording_id``). Search sees either the old scenes or
        the new ones, never a mix; a failure anywhere leaves the old state. Rows go in as one
        executemany per table, not one round trip per scene. Returns the number of scenes stored.
        """
        recording_id = recording.recording_id if isinstance(recording, Claim) else int(recording)
        info = model if isinstance(model, ModelInfo) else ModelInfo(model)
        with self._write() as conn:
            mine = recordings_t.c.id == recording_id
            if isinstance(recording, Claim):  # still ours? a stale claim may have been taken over meanwhile
                mine = mine & (recordings_t.c.claimed_by == recording.worker) & (recordings_t.c.status == "processing")
            done = conn.execute(
                update(recordings_t).where(mine).values(
                    status="done", model=info.name, indexed_at=_now(), error=None,
                    claimed_by=None, claimed_at=None))
            if done.rowcount != 1:
                if isinstance(recording, Claim) and conn.execute(
                        select(recordings_t.c.id).where(recordings_t.c.id == recording_id)).first() is not None:
                    raise ClaimLost(f"{recording.path}: another worker took this recording over "
                                    f"(our claim went stale after claim_timeout); its result is kept")
                raise DatabaseError(f"recording {recording_id}: not in the database; claim it before saving")
            self._upsert_model(conn, info)
            conn.execute(delete(scenes_t).where(scenes_t.c.recording_id == recording_id))  # cascades
            if not scenes:
                return 0
            _insert_rows(conn, scenes_t, [
                dict(recording_id=recording_id, index=i, start=float(s.start), end=float(s.end),
                     start_frame=int(s.start_frame), end_frame=int(s.end_frame))
                for i, s in enumerate(scenes)])
            ids = {index: scene_id for index, scene_id in conn.execute(
                select(scenes_t.c["index"], scenes_t.c.id).where(scenes_t.c.recording_id == recording_id))}
            _insert_rows(conn, captions_t, [
                dict(scene_id=ids[i], text=s.caption, model=info.name, score=s.score)
                for i, s in enumerate(scenes)])
            tag_rows = [dict(scene_id=ids[i], label=label, score=float(score))
                        for i, s in enumerate(scenes) for label, score in s.tags]
            _insert_rows(conn, tags_t, tag_rows)
        return len(scenes)

    # reads for export and status --------------------------------------------------------------
    def scenes_of(self, recording: str | int) -> list[StoredScene]:
        """The recording's scenes in order (by path or id); empty when it has none or is unknown."""
        key = (recordings_t.c.id == recording) if isinstance(recording, int) \
            else (recordings_t.c.path == str(recording))
        query = (select(scenes_t.c.id, scenes_t.c["index"].label("position"), scenes_t.c.start, scenes_t.c.end,
                        scenes_t.c.start_frame, scenes_t.c.end_frame, captions_t.c.text, captions_t.c.score)
                 .join(recordings_t, recordings_t.c.id == scenes_t.c.recording_id)
                 .outerjoin(captions_t, captions_t.c.scene_id == scenes_t.c.id)
                 .where(key).order_by(scenes_t.c["index"], captions_t.c.id))
        tag_query = (select(tags_t.c.scene_id, tags_t.c.label, tags_t.c.score)
                     .join(scenes_t, scenes_t.c.id == tags_t.c.scene_id)
                     .join(recordings_t, recordings_t.c.id == scenes_t.c.recording_id)
                     .where(key).order_by(tags_t.c.scene_id, tags_t.c.score.desc(), tags_t.c.id))
        with self._read() as conn:
            rows = conn.execute(query).all()
            tags: dict[int, list[tuple[str, float]]] = {}
            for scene_id, label, score in conn.execute(tag_query):
                tags.setdefault(scene_id, []).append((label, score))
        out: dict[int, StoredScene] = {}
        for row in rows:
            if row.id not in out:  # first caption of the scene, should there be several
                out[row.id] = StoredScene(
                    index=row.position, start=row.start, end=row.end, start_frame=row.start_frame,
                    end_frame=row.end_frame, caption=row.text or "", score=row.score,
                    tags=tuple(tags.get(row.id, ())))
        return list(out.values())

    def stats(self) -> Stats:
        with self._read() as conn:
            by_status = {status: n for status, n in conn.execute(
                select(recordings_t.c.status, func.count()).group_by(recordings_t.c.status))}
            count = {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                     for t in (scenes_t, captions_t, tags_t, models_t)}
            seconds, last = conn.execute(
                select(func.coalesce(func.sum(recordings_t.c.duration), 0.0), func.max(recordings_t.c.indexed_at))
                .where(recordings_t.c.status == "done")).one()
        return Stats(recordings=sum(by_status.values()), by_status=by_status, scenes=count["scenes"],
                     captions=count["captions"], tags=count["tags"], models=count["models"],
                     indexed_seconds=float(seconds), last_indexed_at=_utc(last))
