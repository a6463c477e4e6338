"""The data flow of one recording: probe -> scenes + sampled frames (one pass) -> analysers
(:class:`~tvcaption.engine.Engine`: the CNN's features, the L-STAP caption, tags, ...) -> the store.

``caption_recording`` returns the analysed scenes of one file; ``index_paths`` runs it over files
and folders and stores each recording in one database transaction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tvcaption.config import Config
from tvcaption.engine import Engine, ProgressFn
from tvcaption.errors import TvcaptionError
from tvcaption.scene import Scene

from tvcaption.background import in_background  # noqa: E402,F401 (re-exported: tests and benchmarks use it)

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class RecordingCaptions:
    recording: str
    duration: float
    scenes: list[Scene]

    def to_json(self) -> dict:
        return {"recording": self.recording, "duration": round(self.duration, 3),
                "scenes": [s.to_json() for s in self.scenes]}


def detect(info, config: Config):
    from tvcaption.scenes import detect_scenes, split_long

    return split_long(detect_scenes(info, config.scenes), config.scenes.max_scene_len)


def caption_recording(path: str | Path, config: Config, engine: Engine | None = None,
                      on_progress: ProgressFn | None = None) -> RecordingCaptions:
    """Scenes and captions of one recording; ``on_progress(seconds, captions)`` as in :func:`captions_of`."""
    from tvcaption.video import probe

    info = probe(path)
    engine = engine or Engine(config)
    return RecordingCaptions(str(path), info.duration, captions_of(info, config, engine, on_progress))


def preimport_detector(options) -> None:
    """Import what the scene detector needs (PySceneDetect and OpenCV, ~0.35 s, which also runs
    ``ffmpeg`` once to find it) in this thread, before the models' loading thread starts:
    imported beside torch's import, both take longer (they share the GIL), and the first frame
    waits for the detector, not for the models."""
    from tvcaption.scenes import resolve_detector

    if resolve_detector(options) != "transnetv2":
        import scenedetect.detectors  # noqa: F401


def captions_of(info, config: Config, engine: Engine, on_progress: ProgressFn | None = None) -> list[Scene]:
    """Captions of every scene of a probed recording: one decoding pass (see :mod:`tvcaption.stream`)
    with decoding in a worker thread, or two passes when ``index.single_pass`` is off.

    ``on_progress(seconds, captions)``: seconds of the recording through the CNN, and every
    caption so far (after a fall-back to two passes the list starts again, so a count taken
    from it never counts a scene twice)."""
    engine.start_recording(info)
    preimport_detector(config.scenes)  # before the models' thread starts importing torch beside it
    engine.start_loading()  # the models load while this recording is decoded
    if config.index.single_pass:
        from tvcaption.stream import StreamMismatch, stream_scenes

        try:
            # frames as coded for the CNN; display-shaped pictures too for analysers that read them
            sampled = stream_scenes(info, config.scenes, engine.frames, shown=engine.keep)
            return engine.analyse_stream(in_background(sampled), on_progress=on_progress)
        except StreamMismatch as exc:
            log.warning("%s; captioning it again in two passes", exc)
    captions = engine.analyse_scenes(info, detect(info, config))
    if on_progress and captions:
        on_progress(captions[-1].end, captions)
    return captions


# ---------------------------------------------------------------- indexing

def content_hash(path: str | Path, chunk: int = 8 << 20, stop: threading.Event | None = None) -> str:
    """SHA-256 of the file's bytes (``stop``: give up at the next chunk, returning "")."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            if stop is not None and stop.is_set():
                return ""
            digest.update(block)
    return digest.hexdigest()


class Hashing:
    """:func:`content_hash` of a regular file in a thread of its own, so that reading the file
    (0.25 s for ten minutes of MPEG-2 from the page cache; far longer from a cold disk) overlaps
    the probe (hashlib lets go of the GIL while it hashes). :meth:`result` waits and re-raises
    the thread's error; :meth:`cancel` stops it at its next chunk."""

    def __init__(self, path: Path) -> None:
        self._stop = threading.Event()
        self._digest: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(path,), name="tvcaption-hash", daemon=True)
        self._thread.start()

    def _run(self, path: Path) -> None:
        try:
            self._digest = content_hash(path, stop=self._stop)
        except BaseException as exc:  # noqa: BLE001 - handed to result()
            self._error = exc

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._digest is not None
        return self._digest

    def cancel(self) -> None:
        self._stop.set()


def file_stamp(path: Path, companions: Sequence[Path] = ()) -> dict | None:
    """Size and modification time of a regular file (None for anything else: probe() judges it),
    and, under ``companions``, those of the files beside it that analysers read (subtitles), if any."""
    try:
        st = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    stamp: dict = {"file_size": st.st_size, "file_mtime_ns": st.st_mtime_ns}
    beside = {p.name: [s["file_size"], s["file_mtime_ns"]] for p in companions if (s := file_stamp(p))}
    return {**stamp, "companions": beside} if beside else stamp


def _companions_changed(known, stamp: dict | None) -> bool:
    """True when the files beside a stored recording are not those it was indexed with (added, edited, removed)."""
    return bool(known is not None and known.probe and stamp
                and (known.probe.get("companions") or {}) != (stamp.get("companions") or {}))


def unchanged(known, stamp: dict, model: str) -> bool:
    """True when ``known`` (a stored recording) was indexed by ``model`` from a file with this size and mtime.

    Re-running ``index`` over a large archive then stats files instead of hashing them; a file
    rewritten in place gets a new mtime and is hashed (and indexed again if its content changed).
    """
    if known is None or known.status != "done" or known.model != model or not known.probe:
        return False
    return all(known.probe.get(k) == v for k, v in stamp.items()) and not _companions_changed(known, stamp)


def walk(paths: Iterable[str | Path], extensions: Sequence[str], recursive: bool = True) -> tuple[list[Path], list[tuple[str, str]]]:
    """Recordings under the given paths, sorted, each once; and (path, error) for paths that do not exist
    or folders that cannot be listed.

    Symlinked folders are not followed (a symlink loop cannot trap the walk); symlinked files are.
    """
    exts = {e.lower() for e in extensions}
    found: dict[str, Path] = {}
    missing: list[tuple[str, str]] = []
    for p in map(Path, paths):
        if p.is_dir():
            def unlisted(exc: OSError) -> None:  # a subfolder we may not read is reported, not skipped silently
                missing.append((str(exc.filename), f"cannot list the folder ({exc.strerror})"))

            walker = os.walk(p, followlinks=False, onerror=unlisted) if recursive else [(str(p), [], os.listdir(p))]
            for folder, dirs, files in walker:
                dirs.sort()
                for name in sorted(files):
                    f = Path(folder) / name
                    if f.suffix.lower() in exts:
                        found.setdefault(str(f.absolute()), f)
        elif p.exists():
            found.setdefault(str(p.absolute()), p)
        else:
            missing.append((str(p), "no such file or folder"))
    return list(found.values()), missing


@dataclass
class IndexReport:
    done: list[tuple[str, int, float]] = field(default_factory=list)  # (path, scenes, seconds)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason naming the path)
    recording_seconds: float = 0.0
    wall_seconds: float = 0.0
    files: int = 0  # recordings found under the paths given


@dataclass(frozen=True)
class IndexEvent:
    """What :func:`index_paths` is doing, for whoever shows it (the CLI draws progress bars).

    kind: ``start`` (files, size: all of them), ``file`` (path, size, duration: captioning
    begins), ``progress`` (path, done: seconds of the recording captioned, duration, scenes),
    ``done`` (path, scenes), ``skipped`` (path, message), ``failed`` (path, message: one line
    naming the file and the fix).
    """

    kind: str
    path: str = ""
    message: str = ""
    files: int = 0
    size: int = 0
    done: float = 0.0
    duration: float = 0.0
    scenes: int = 0


def recording_key(path: str | Path) -> str:
    """How a recording is stored: its absolute path with symlinks and ``..`` resolved (a broken
    link keeps its own name: its failure is reported under the name the user gave)."""
    return os.path.realpath(path) if os.path.exists(path) else os.path.abspath(path)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _failure(f: Path, exc: Exception) -> str:
    if isinstance(exc, TvcaptionError):
        reason = str(exc)
        return reason if str(f) in reason or f.name in reason else f"{f}: {reason}"
    if isinstance(exc, OSError):
        return f"{f}: cannot read the file ({exc.strerror or exc})"
    detail = " ".join(str(exc).split())[:300]
    return f"{f}: unexpected error ({type(exc).__name__}: {detail}); please report it with this file"


def walk_report(paths: Iterable[str | Path], config: Config,
                emit: Callable[[IndexEvent], None]) -> tuple[list[Path], IndexReport]:
    """The recordings under ``paths`` and a report that already holds (and has emitted) the
    paths that could not be walked."""
    files, missing = walk(paths, config.index.extensions, config.index.recursive)
    report = IndexReport(files=len(files))
    for path, reason in missing:
        report.failed.append((path, f"{path}: {reason}"))
        emit(IndexEvent("failed", path, f"{path}: {reason}"))
    return files, report


def index_paths(paths: Iterable[str | Path], config: Config, reindex: bool = False,
                engine: Engine | None = None,
                on_event: Callable[[IndexEvent], None] | None = None) -> IndexReport:
    """Index every recording under ``paths`` into the configured database; bad files are reported, not fatal."""
    from tvcaption.db.store import Store, connect

    emit = on_event or (lambda event: None)
    started = time.perf_counter()
    files, report = walk_report(paths, config, emit)
    store = Store(connect(config.database_url), claim_timeout=config.database.claim_timeout)
    emit(IndexEvent("start", files=len(files), size=sum(_file_size(f) for f in files)))
    engine = engine or Engine(config)
    for f in files:
        _index_one(f, store, engine, config, reindex, report, emit)
    report.wall_seconds = time.perf_counter() - started
    return report


def _index_one(f: Path, store, engine: Engine, config: Config, reindex: bool,
               report: IndexReport, emit: Callable[[IndexEvent], None]) -> None:
    """Caption one recording and save it in one transaction; failures are recorded, not raised."""
    from tvcaption.db.store import HASH_NEEDED, ClaimLost, worker_id
    from tvcaption.errors import DatabaseError, ModelLoadError
    from tvcaption.video import probe

    t0 = time.perf_counter()
    key = recording_key(f)
    claim = None
    hashing: Hashing | None = None
    try:
        known = store.find_recording(f)  # also finds the spelling an older tvcaption stored
        if known is not None and known.path != key and store.rename_recording(known.path, key):
            known = store.find_recording(key)
        stamp = file_stamp(f, engine.companions(f))
        if not reindex and stamp and unchanged(known, stamp, engine.model_name):
            report.skipped.append(key)  # same size and mtime as when it was indexed: no need to hash it
            emit(IndexEvent("skipped", key, "already indexed", size=stamp["file_size"]))
            return
        # a regular file is hashed while it is probed; anything else is probed first, which refuses
        # FIFOs, devices and broken links before anything reads them
        hashing = Hashing(f) if stamp else None
        info = probe(f)
        probe_data = {**dataclasses.asdict(info), **(stamp or {})}
        again = reindex or _companions_changed(known, stamp)
        if hashing is not None and (again or known is None or known.status != "done"):
            digest = None  # the claim needs no hash (none to compare with): it is saved with the result
        else:
            digest = hashing.result() if hashing is not None else content_hash(f)
            hashing = None
        claim = store.claim(key, digest, worker_id(), probe_data, model=engine.model_name, reindex=again)
        if claim is HASH_NEEDED and hashing is not None:  # another worker indexed it since we looked
            digest, hashing = hashing.result(), None
            claim = store.claim(key, digest, worker_id(), probe_data, model=engine.model_name, reindex=again)
        if not claim:
            if hashing is not None:
                hashing.cancel()
            report.skipped.append(key)
            emit(IndexEvent("skipped", key, "already indexed or being indexed", size=_file_size(f)))
            return
        scenes, info = _caption_and_save(f, key, info, stamp, claim, store, engine, config, emit, hashing)
        claim = None
        report.done.append((key, scenes, time.perf_counter() - t0))
        report.recording_seconds += info.duration
        emit(IndexEvent("done", key, scenes=scenes, duration=info.duration, size=_file_size(f)))
    except ClaimLost as exc:  # another worker redid it after our claim went stale: its result stands
        claim = None
        report.skipped.append(key)
        emit(IndexEvent("skipped", key, str(exc), size=_file_size(f)))
    except DatabaseError:
        raise  # the database, not this file: stop the batch (the CLI prints one line)
    except ModelLoadError:  # the models, not this file: give the claim back and stop the batch
        if claim is not None:
            store.release(claim.recording_id)
        raise
    except Exception as exc:  # noqa: BLE001 - one bad file must not end a batch of thousands
        if hashing is not None:
            hashing.cancel()
        reason = _failure(f, exc)
        report.failed.append((key, reason))
        store.mark_failed(key, reason)
        emit(IndexEvent("failed", key, reason, size=_file_size(f)))
    except BaseException:  # Ctrl-C, SystemExit: give the claim back so another run takes it at once
        if hashing is not None:
            hashing.cancel()
        if claim is not None:
            try:
                store.release(claim.recording_id)
            except Exception:  # noqa: BLE001 - the claim then goes stale after claim_timeout
                pass
        raise


GROWING_RETRIES = 1  # a file that changes while it is captioned is captioned once more, then refused


def _caption_and_save(f: Path, key: str, info, stamp, claim, store, engine: Engine, config: Config,
                      emit: Callable[[IndexEvent], None], hashing: Hashing | None = None):
    """Caption the claimed recording and save it; returns (scenes saved, the probe saved).
    ``hashing``: the file's hash, still being made (the claim needed none), saved with the result.

    A file still being written (its size or mtime changed while it was captioned) is probed,
    hashed and captioned again, so what is stored describes the file as it is; if it is still
    changing after that, it fails with a message saying to index it once it is complete."""
    from tvcaption.db.store import ClaimLost, ModelInfo
    from tvcaption.video import probe

    with store.keep_alive(claim) as beat:  # renewed until saved: a recording longer than claim_timeout stays ours
        for attempt in range(GROWING_RETRIES + 1):
            size = _file_size(f)
            emit(IndexEvent("file", key, size=size, duration=info.duration))

            def shown(seconds: float, done: list[Scene]) -> None:
                if beat.lost.is_set():  # stop early: another worker is redoing this recording
                    raise ClaimLost(f"{key}: another worker took this recording over; its result is kept")
                emit(IndexEvent("progress", key, done=seconds, duration=info.duration, scenes=len(done), size=size))

            scenes = captions_of(info, config, engine, shown)
            after = file_stamp(f, engine.companions(f))
            if after == stamp:
                break
            if attempt == GROWING_RETRIES:
                raise TvcaptionError(f"{f}: the file changed while it was being indexed (still being written?); "
                                     "index it again once it is complete")
            stamp, info = after, probe(f)
        probe_data = {**dataclasses.asdict(info), **(stamp or {})}
        digest = content_hash(f) if attempt else hashing.result() if hashing is not None else None
        store.save_result(claim, scenes, model=ModelInfo(**engine.model_info),
                          content_hash=digest, probe=probe_data if attempt else None)
    return len(scenes), info
