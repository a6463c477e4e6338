"""``tvcaption index --ray``: the recordings of a batch indexed by workers of a Ray cluster.

The driver walks the folders as :func:`~tvcaption.pipeline.index_paths` does and hands each
recording to a worker: a Ray actor holding one loaded :class:`~tvcaption.engine.Engine` (one per
GPU, or per ``[ray] cpus_per_worker`` cores). A worker reads the recording from its path (storage
every node shares) and indexes it exactly as ``index`` does (:func:`~tvcaption.pipeline._index_one`):
a claim on the recording's row, renewed while it works, and the scenes saved in one transaction
that first checks the claim is still its own. So a recording whose worker died (SIGKILL, a lost
node) and that Ray, or the driver, hands out again is never stored twice and never lost:

- the dead worker saved nothing (its transaction never committed), or saved everything (the
  retry then finds it done and skips it);
- its claim is taken over at once: by :func:`~tvcaption.db.workers.worker_is_dead` on its own
  machine, and elsewhere because the driver knows which worker ids of its own actors are gone
  (each actor registers its id; an actor Ray restarted has a new one) and gives such a claim
  back (:func:`_take_over`); a claim held by a live worker of another run is waited for.

Only PostgreSQL: every node must reach the database (SQLite is one file on one machine).
Ray is imported here only, and only when ``--ray`` is used.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tvcaption.config import Config
from tvcaption.errors import DatabaseError, TvcaptionError
from tvcaption.pipeline import IndexEvent, IndexReport, _file_size, walk_report

PROGRESS_EVERY = 0.5  # seconds between the progress events a worker sends to the driver
TICK = 0.2  # seconds the driver waits for a result before it shows progress again


def _import_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the cluster
    try:
        import ray
    except ImportError:
        raise TvcaptionError("--ray needs Ray: pip install 'tvcaption[ray]'") from None
    return ray


def check_database(config: Config) -> str:
    """The database URL, when every node of a cluster can reach it (PostgreSQL); else one line."""
    url = config.database_url
    if not url.startswith("postgresql"):
        raise TvcaptionError("--ray needs a PostgreSQL database every node can reach "
                             "(--db postgresql+psycopg://user@host/db); SQLite is a file on one machine")
    return url


# --------------------------------------------------------------------------- on the workers

class Events:
    """A Ray actor on the driver's side: workers put progress events and their worker ids, the
    driver drains them. Lost events only make a bar lag: results travel as task results."""

    def __init__(self) -> None:
        self.items: list[IndexEvent] = []
        self.workers: dict[str, list[str]] = {}  # Ray actor id -> worker ids it had, oldest first

    def put(self, events: list[IndexEvent]) -> None:
        self.items.extend(events)

    def register(self, actor: str, worker: str) -> None:
        self.workers.setdefault(actor, []).append(worker)

    def drain(self) -> tuple[list[IndexEvent], dict[str, list[str]]]:
        items, self.items = self.items, []
        return items, self.workers


def worker_config(config: Config) -> Config:
    """The config a worker runs with: its torch and OCR threads limited to the cores it holds."""
    cores = max(1, int(config.ray.cpus_per_worker))
    features = config.features if config.features.threads else replace(config.features, threads=cores)
    text = config.text if config.text.threads else replace(config.text, threads=cores)
    return replace(config, features=features, text=text)


class IndexWorker:
    """A Ray actor: one loaded model and one store connection, indexing one recording per call."""

    def __init__(self, config: Config, events: str) -> None:
        import ray

        from tvcaption.db.store import Store, connect, worker_id
        from tvcaption.engine import Engine

        self.config = worker_config(config)
        self.engine = Engine(self.config, background=False)  # a worker that cannot load fails as it starts
        self.store = Store(connect(self.config.database_url, migrate=False),
                           claim_timeout=self.config.database.claim_timeout)
        self.events = ray.get_actor(events)  # by name: a handle as an argument would sit in the object store
        self.worker = worker_id()
        ray.get(self.events.register.remote(ray.get_runtime_context().get_actor_id(), self.worker))

    def whoami(self) -> str:
        return self.worker

    def index(self, path: str, reindex: bool = False, dead: tuple[str, ...] = ()) -> dict:
        """Index one recording as ``index`` does; returns what became of it (``outcome``: done,
        skipped, failed, busy: another worker holds a live claim on it, try again later)."""
        from tvcaption.pipeline import _index_one, recording_key

        if dead:
            _take_over(self.store, recording_key(path), dead)
        report, sender = IndexReport(), _Sender(self.events)
        try:
            _index_one(Path(path), self.store, self.engine, self.config, reindex, report, sender)
        except DatabaseError as exc:
            return {"outcome": "fatal", "message": str(exc)}
        finally:
            sender.flush()
        return _outcome(self.store, report, self.worker)


class _Sender:
    """The worker's side of the progress: file events at once, progress events every PROGRESS_EVERY s."""

    def __init__(self, events: Any) -> None:
        self.events, self.last = events, 0.0
        self.waiting: list[IndexEvent] = []

    def __call__(self, event: IndexEvent) -> None:
        if event.kind not in ("file", "progress"):
            return  # the end of a recording travels as the task's result
        self.waiting.append(event)
        if event.kind == "file" or time.monotonic() - self.last >= PROGRESS_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.waiting:
            self.events.put.remote(self.waiting)
            self.waiting, self.last = [], time.monotonic()


def _outcome(store: Any, report: IndexReport, worker: str) -> dict:
    if report.done:
        (key, scenes, seconds), = report.done
        return {"outcome": "done", "path": key, "scenes": scenes, "seconds": seconds,
                "duration": report.recording_seconds, "worker": worker}
    if report.failed:
        (key, reason), = report.failed
        return {"outcome": "failed", "path": key, "message": reason}
    key = report.skipped[0]
    row = store.get_recording(key)
    if row is not None and row.status == "processing":  # someone else's claim: see it through
        return {"outcome": "busy", "path": key, "holder": row.claimed_by}
    return {"outcome": "skipped", "path": key, "message": "already indexed"}


def _take_over(store: Any, key: str, dead: Iterable[str]) -> None:
    """Give back the claim on ``key`` when it is held by one of ``dead`` (ids of this run's
    workers that are gone): the claim below then takes it at once instead of after claim_timeout."""
    from sqlalchemy import update

    from tvcaption.db.schema import Recording

    recordings_t = Recording.__table__
    with store.engine.begin() as conn:
        conn.execute(update(recordings_t).where(
            recordings_t.c.path == key, recordings_t.c.status == "processing",
            recordings_t.c.claimed_by.in_(list(dead))).values(status="pending", claimed_by=None, claimed_at=None))


# --------------------------------------------------------------------------- on the driver

@dataclass
class _Job:
    path: Path
    deaths: int = 0  # workers that died while indexing it
    holder: str | None = None  # who held the claim when it was last found busy


class _Shown:
    """Feeds :class:`~tvcaption.views.IndexView`, which draws one recording's bar at a time, from
    several workers: the events of one recording until it ends, then of the next one heard from."""

    def __init__(self, emit: Callable[[IndexEvent], None]) -> None:
        self.emit, self.path = emit, None
        self.ended: set[str] = set()  # a late progress event of one of these starts no bar

    def live(self, event: IndexEvent) -> None:
        if event.path in self.ended:
            return
        if self.path is None:
            self.path = event.path
            if event.kind == "progress":
                self.emit(IndexEvent("file", event.path, size=event.size, duration=event.duration))
        if event.path == self.path:
            self.emit(event)

    def end(self, event: IndexEvent) -> None:
        self.path = None  # the view drops its current bar at the end of any recording
        self.ended.add(event.path)
        self.emit(event)


def cluster_address(given: str | None, paths: Sequence[str | Path] = ()) -> str | None:
    """The cluster of ``index --ray [--ray-address ADDRESS]``: ``given``, else ``$RAY_ADDRESS``,
    else None: a cluster of our own on this machine (as ``local`` asks). ``--ray`` takes no value,
    so ``--ray auto FOLDER`` would index a folder named auto: refused in one line when there is none."""
    first = str(paths[0]) if paths else ""
    if given is None and first in ("auto", "local") and not Path(first).exists():
        raise TvcaptionError(f"--ray takes no value: name the cluster with --ray-address {first}")
    address = given or os.environ.get("RAY_ADDRESS") or "local"
    return None if address == "local" else address


def _start_ray(ray: Any, address: str | None, init: dict | None) -> bool:
    """Join the cluster at ``address`` (``auto``: the one ``ray start`` made here) or, when it is
    None, start one of our own (never one that ``ray start`` or $RAY_ADDRESS names); True when
    we connected (and must disconnect, which stops a cluster of our own)."""
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"address": "local", "include_dashboard": False, "log_to_driver": True,
                               "logging_level": "warning"}
    if address:
        options = {"address": address, "log_to_driver": True, "logging_level": "warning"}
    ray.init(**{**options, **(init or {})})
    return True


def _events_here(ray: Any) -> tuple[Any, str]:
    """The Events actor, on the driver's node: it dies with the driver, not with a worker's node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    name = f"tvcaption-events-{os.getpid()}-{time.time_ns()}"
    return ray.remote(Events).options(num_cpus=0, scheduling_strategy=here, name=name).remote(), name


def worker_count(config: Config, resources: dict[str, float]) -> tuple[int, float, float]:
    """(workers, cpus each, gpus each) for a cluster with ``resources`` (``ray.cluster_resources()``)."""
    rc = config.ray
    if rc.workers < 0 or rc.cpus_per_worker <= 0 or rc.gpus_per_worker < 0 or rc.retries < 0:
        raise TvcaptionError(f"[ray] {rc}: workers and retries must be 0 or more, cpus_per_worker more than 0")
    gpus = resources.get("GPU", 0.0) if config.features.device != "cpu" else 0.0
    per_gpu = rc.gpus_per_worker if gpus and rc.gpus_per_worker else 0.0
    fits = int(gpus // per_gpu) if per_gpu else int(resources.get("CPU", 1.0) // rc.cpus_per_worker)
    return (rc.workers or max(1, fits)), rc.cpus_per_worker, per_gpu


class _Pool:
    """The workers, each with at most one recording in flight."""

    def __init__(self, ray: Any, config: Config, events: tuple[Any, str]) -> None:
        self.ray, self.config, (self.events, self.events_name) = ray, config, events
        count, self.cpus, self.gpus = worker_count(config, ray.cluster_resources())
        self.retries = config.ray.retries
        self.current: dict[str, str] = {}  # Ray actor id -> the live worker id of that actor
        self.flight: dict[Any, tuple[Any, _Job]] = {}  # result ref -> (actor, job)
        self.idle = [self._new() for _ in range(count)]

    def _new(self) -> Any:
        actor = self.ray.remote(IndexWorker).options(
            num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=self.retries, max_task_retries=self.retries)
        handle = actor.remote(self.config, self.events_name)
        self.current[handle._actor_id.hex()] = ""
        return handle

    def dead_workers(self, registered: dict[str, list[str]]) -> tuple[str, ...]:
        """Worker ids of this run that are gone: all but the newest of each live actor's."""
        live = {ids[-1] for actor, ids in registered.items() if actor in self.current}
        return tuple(w for ids in registered.values() for w in ids if w not in live)

    def submit(self, job: _Job, reindex: bool, dead: tuple[str, ...]) -> None:
        actor = self.idle.pop()
        take = tuple(w for w in dead if w == job.holder)
        self.flight[actor.index.remote(str(job.path), reindex, take)] = (actor, job)

    def replace(self, actor: Any) -> None:
        """A worker Ray gave up on (it died more than ``retries`` times): a new one in its place."""
        self.current.pop(actor._actor_id.hex(), None)
        self.ray.kill(actor, no_restart=True)
        self.idle.append(self._new())

    def close(self) -> None:
        for actor in self.idle + [a for a, _ in self.flight.values()]:
            self.ray.kill(actor, no_restart=True)


def index_paths_ray(paths: Iterable[str | Path], config: Config, address: str | None = None, reindex: bool = False,
                    on_event: Callable[[IndexEvent], None] | None = None, init: dict | None = None) -> IndexReport:
    """Index every recording under ``paths`` on a Ray cluster (see the module's docstring).

    ``address``: a Ray address, ``auto``, or None to start a local cluster (``init``: more
    ``ray.init`` arguments). Returns the same report as :func:`~tvcaption.pipeline.index_paths`;
    a database that fails stops the batch (:class:`DatabaseError`)."""
    from tvcaption.db.store import Store, connect

    emit = on_event or (lambda event: None)
    Store(connect(check_database(config))).close()  # reachable, and migrated once, before any worker starts
    started = time.perf_counter()
    files, report = walk_report(paths, config, emit)
    ray = _import_ray()
    ours = _start_ray(ray, address, init)
    pool = None
    try:
        events = _events_here(ray)
        pool = _Pool(ray, config, events)
        emit(IndexEvent("start", files=len(files), size=sum(_file_size(f) for f in files)))
        _drive(ray, pool, deque(_Job(f) for f in files), reindex, report, _Shown(emit))
    finally:
        if pool is not None:
            pool.close()
        if ours:
            ray.shutdown()
    report.wall_seconds = time.perf_counter() - started
    return report


def _drive(ray: Any, pool: _Pool, todo: deque, reindex: bool, report: IndexReport, shown: _Shown) -> None:
    """Hand out recordings until every one is done, skipped or failed."""
    later: list[tuple[float, _Job]] = []  # busy elsewhere: asked again at the time given
    registered: dict[str, list[str]] = {}
    wait = min(pool.config.database.claim_timeout / 4, 5.0)
    while todo or later or pool.flight:
        now = time.monotonic()
        todo.extend(job for at, job in later if at <= now)
        later = [(at, job) for at, job in later if at > now]
        if todo and pool.idle:
            registered = _show(ray, pool, shown)
        while todo and pool.idle:
            pool.submit(todo.popleft(), reindex, pool.dead_workers(registered))
        ready = ray.wait(list(pool.flight), num_returns=1, timeout=TICK)[0] if pool.flight else []
        if not pool.flight:
            time.sleep(TICK)
        registered = _show(ray, pool, shown)
        for ref in ready:
            actor, job = pool.flight.pop(ref)
            result = _result(ray, pool, actor, ref, job)
            if result is None:  # its worker died: again, unless it has killed too many
                _again_or_fail(pool, job, todo, report, shown)
            elif result["outcome"] == "busy":
                job.holder = result["holder"]
                later.append((time.monotonic() + wait, job))
            else:
                _record(result, job, report, shown)


def _show(ray: Any, pool: _Pool, shown: _Shown) -> dict[str, list[str]]:
    events, registered = ray.get(pool.events.drain.remote())
    for actor, ids in registered.items():
        if actor in pool.current:
            pool.current[actor] = ids[-1]
    for event in events:
        shown.live(event)
    return registered


def _result(ray: Any, pool: _Pool, actor: Any, ref: Any, job: _Job) -> dict | None:
    """The task's result, or None when its worker died for good (the worker is replaced)."""
    try:
        result = ray.get(ref)
    except ray.exceptions.RayActorError:
        pool.replace(actor)
        return None
    except ray.exceptions.RayTaskError as exc:  # a bug in the worker, not the file's fault alone
        pool.idle.append(actor)
        return {"outcome": "failed", "path": str(job.path),
                "message": f"{job.path}: unexpected error in the worker ({str(exc).splitlines()[-1][:300]})"}
    pool.idle.append(actor)
    if result["outcome"] == "fatal":
        raise DatabaseError(result["message"])
    return result


def _again_or_fail(pool: _Pool, job: _Job, todo: deque, report: IndexReport, shown: _Shown) -> None:
    job.deaths += 1
    if job.deaths <= pool.retries:
        todo.appendleft(job)
        return
    reason = (f"{job.path}: the worker indexing it died {job.deaths} times (out of memory? a crash in a "
              "decoder?); index it alone to see why")
    report.failed.append((str(job.path), reason))
    shown.end(IndexEvent("failed", str(job.path), reason, size=_file_size(job.path)))


def _record(result: dict, job: _Job, report: IndexReport, shown: _Shown) -> None:
    key, size = result["path"], _file_size(job.path)
    if result["outcome"] == "done":
        report.done.append((key, result["scenes"], result["seconds"]))
        report.recording_seconds += result["duration"]
        shown.end(IndexEvent("done", key, scenes=result["scenes"], duration=result["duration"], size=size))
    elif result["outcome"] == "failed":
        report.failed.append((key, result["message"]))
        shown.end(IndexEvent("failed", key, result["message"], size=size))
    else:
        report.skipped.append(key)
        shown.end(IndexEvent("skipped", key, result["message"], size=size))
