"""What the review app plays and shows: a browser-playable copy of each recording, and thumbnails.

Browsers play H.264 (with AAC or MP3 sound) in MP4, progressive. An indexed recording in that
form is served as it is; any other (MPEG-2 in MPEG-TS, MXF, AVI, interlaced H.264, Matroska, ...)
gets a proxy made once with ffmpeg: H.264 (yuv420p, square pixels, deinterlaced where the frames
say they are interlaced, a key frame every 2 s for seeking) and stereo AAC in MP4 with its index
at the front (``+faststart``), so playback starts before the whole file has come. Thumbnails are
one JPEG per scene, 320 px wide, from the scene's middle.

A whole proxy takes a while (a quarter of an hour for an hour of MPEG-2 on two cores), so the
scene view does not wait for it: until it is there, a scene is played from a *part*, a proxy of
the scene alone (a second before it to a second after, at most :data:`PART_MAX` s), made in
about a third of its length, while one background thread (:meth:`Media.make_later`, at a lower
CPU priority, outside the interactive ffmpeg slots) makes the whole proxy, which later openings
then use.

Both live in the user's cache folder (``~/.cache/tvcaption/`` on Linux, by ``platformdirs``),
named after the recording's content hash, so a replaced file gets new ones and a moved one keeps
them; each is written to a temporary name and renamed, so a reader never sees half a file.
Files are only ever found from a recording stored in the database (by its id, in the routes),
never from a path in a request. At most :data:`JOBS` ffmpeg processes run at once.

``offset`` maps the recording's time to the served file's timeline: a scene time ``t`` (scene
times count from the first video frame) plays at ``t + offset``. For a whole file it is where the
first video frame sits (in a proxy of an MPEG-TS whose sound starts first it comes a little later);
for a part, which starts at 0, it is negative (minus the part's start). The page seeks to a
scene's start plus it and shifts the description track's cues by it. (A part keeping the
recording's times, ffmpeg's ``-output_ts_offset``, would be simpler for the page, but Chromium
misreads an MP4 that starts late by an edit list: tried, its duration and seeks came out wrong.)
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tvcaption.errors import TvcaptionError

JOBS = 2  # ffmpeg processes at once (thumbnails of a page of results, a proxy)
PROXY_VERSION = 1  # part of the proxy's name: a change in how proxies are made makes new ones
PART_VERSION = 1  # the same for scene parts
PART_LEAD = 1.0  # seconds of a part before its scene's start (a seek lands on a decoded frame; context)
PART_TAIL = 1.0  # and after its end
PART_MAX = 60.0  # seconds a part holds at most (a longer scene plays its first minute until the whole proxy is made)
BACKGROUND_NICE = 10  # the whole proxy made in the background yields the CPU to the page's own ffmpeg runs
THUMB_WIDTH = 320
PLAYABLE_FORMATS = {"mov", "mp4", "m4a", "3gp", "3g2", "mj2"}  # ffprobe's names for the MP4 family
PLAYABLE_AUDIO = {"aac", "mp3"}
TIMEOUT = 3600  # seconds any one ffmpeg run may take


class MediaError(TvcaptionError):
    """The recording's file cannot be served (gone, unreadable, or ffmpeg failed on it)."""


@dataclass(frozen=True)
class Served:
    path: Path  # the file to send
    proxy: bool  # a copy made for the browser (else the recording itself)
    offset: float  # a scene time t plays at t + offset on the file's timeline
    part: tuple[float, float] | None = None  # for a part: the span of the recording it holds (scene times)


def cache_root() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("tvcaption"))


def _probe(path: Path) -> dict[str, Any]:
    cmd = ["ffprobe", "-v", "error", "-show_entries",
           "format=format_name,start_time:stream=codec_type,codec_name,pix_fmt,field_order,start_time",
           "-of", "json", str(path)]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MediaError(f"{path}: cannot probe it with ffprobe ({exc}); is ffmpeg installed?") from None
    if done.returncode != 0:
        first = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["unreadable"])[0]
        raise MediaError(f"{path}: ffprobe cannot read it ({first})")
    return json.loads(done.stdout or b"{}")


def playable(info: dict[str, Any]) -> bool:
    """Whether a browser plays the file ffprobe described as it is."""
    formats = set((info.get("format") or {}).get("format_name", "").split(","))
    streams = info.get("streams") or []
    video = [s for s in streams if s.get("codec_type") == "video"]
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    if not (formats & PLAYABLE_FORMATS) or not video:
        return False
    v = video[0]
    progressive = v.get("field_order") in (None, "unknown", "progressive")
    # a file whose first frame is not at 0 (a capture that started late) is proxied: Chromium keeps
    # that time on its timeline, where the description track's cues (from the first frame) would be late
    return (v.get("codec_name") == "h264" and v.get("pix_fmt") in ("yuv420p", "yuvj420p") and progressive
            and video_offset(info) < 0.001 and all(a.get("codec_name") in PLAYABLE_AUDIO for a in audio))


def video_offset(info: dict[str, Any]) -> float:
    """Where the first video frame is on a browser's timeline: its time in the file (Chromium keeps
    an MP4's first timestamp, measured: a clip starting at 1.5 s opens at currentTime 1.5); 0 when unknown."""
    video = next((s for s in info.get("streams") or [] if s.get("codec_type") == "video"), {})
    try:
        return max(0.0, round(float(video.get("start_time")), 3))
    except (TypeError, ValueError):
        return 0.0


def _start(entry: dict[str, Any]) -> float:
    try:
        return float(entry.get("start_time"))
    except (TypeError, ValueError):
        return 0.0


class Media:
    """Proxies and thumbnails of recordings, cached under ``folder`` (default: the user's cache folder)."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder) if folder is not None else cache_root()
        self._jobs = threading.BoundedSemaphore(JOBS)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._served: dict[tuple[str, str], Served] = {}
        self._infos: dict[tuple[str, str], dict[str, Any]] = {}
        self._parts: dict[Path, Served] = {}
        self._background_slot = threading.Lock()  # the whole proxies made in the background: one at a time
        self._queue: queue.Queue[Any] = queue.Queue()
        self._asked: set[str] = set()
        self._worker: threading.Thread | None = None
        self._children: set[subprocess.Popen] = set()
        self._closed = False

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    @staticmethod
    def _key(recording: Any) -> str:
        """The recording's content hash (or a hash of its path when it has none), safe as a file name."""
        seed = recording.content_hash or f"path:{recording.path}"
        return hashlib.sha256(seed.encode("utf-8", "surrogateescape")).hexdigest()[:32]

    @staticmethod
    def source(recording: Any) -> Path:
        path = Path(recording.path)
        if not path.is_file():
            raise MediaError(f"{recording.path}: the recording is no longer there; index it again where it is now")
        return path

    def _info(self, source: Path, key: str) -> dict[str, Any]:
        """ffprobe's view of the recording, probed once per file."""
        memo = (key, str(source))
        if memo not in self._infos:
            self._infos[memo] = _probe(source)
        return self._infos[memo]

    def _proxy_path(self, key: str) -> Path:
        return self.folder / "proxies" / f"{key}.v{PROXY_VERSION}.mp4"

    def ready(self, recording: Any) -> Served | None:
        """What :meth:`served` gives when that needs no ffmpeg run now (the recording itself, or
        its proxy already made); None while the proxy is still to be made."""
        source = self.source(recording)
        key = self._key(recording)
        memo = (key, str(source))
        known = self._served.get(memo)
        if known is not None and known.path.is_file():
            return known
        info = self._info(source, key)
        if playable(info):
            served = Served(source, False, video_offset(info))
        else:
            proxy = self._proxy_path(key)
            if not proxy.is_file():
                return None
            served = Served(proxy, True, video_offset(_probe(proxy)))
        self._served[memo] = served
        return served

    def served(self, recording: Any, background: bool = False) -> Served:
        """The file to play for ``recording``: itself when a browser can play it, else its proxy
        (made now if missing; this can take a while for a long recording). ``background``: make it
        at a lower priority, outside the interactive ffmpeg slots."""
        made = self.ready(recording)
        if made is not None:
            return made
        source, key = self.source(recording), self._key(recording)
        with self._lock("video:" + key):
            if self.ready(recording) is None:
                self._make_proxy(source, self._info(source, key), self._proxy_path(key), background)
        made = self.ready(recording)
        assert made is not None, "a proxy just made is there"
        return made

    def make_later(self, recording: Any) -> None:
        """Have the whole proxy made by the background thread (one at a time, in the order asked;
        nothing when it is there or already asked for)."""
        key = self._key(recording)
        with self._guard:
            if key in self._asked or self._closed:
                return
            self._asked.add(key)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="tvcaption-proxies", daemon=True)
                self._worker.start()
        self._queue.put(recording)

    def _work(self) -> None:
        import logging

        while True:
            recording = self._queue.get()
            if recording is None:
                return
            try:
                self.served(recording, background=True)
            except MediaError as exc:
                if not self._closed:  # else stopped on purpose
                    logging.getLogger(__name__).warning("%s", exc)
            finally:
                with self._guard:
                    self._asked.discard(self._key(recording))

    def scene_part(self, recording: Any, start: float, end: float) -> Served:
        """A proxy of the scene ``start``-``end`` alone (with :data:`PART_LEAD` s before and
        :data:`PART_TAIL` after, at most :data:`PART_MAX` s), made once; its ``offset`` is negative."""
        source, key = self.source(recording), self._key(recording)
        begin = max(0.0, round(float(start) - PART_LEAD, 3))
        stop = round(min(float(end) + PART_TAIL, begin + PART_MAX), 3)
        out = self.folder / "proxies" / "parts" / key / f"{round(begin * 1000)}-{round(stop * 1000)}.v{PART_VERSION}.mp4"
        known = self._parts.get(out)
        if known is not None and out.is_file():
            return known  # asked again for each range request of the player
        with self._lock(f"part:{out}"):
            if not out.is_file():
                info = self._info(source, key)
                # ffmpeg's -ss counts from the file's start; scene times from its first video frame
                first = _start(next((x for x in info.get("streams") or [] if x.get("codec_type") == "video"), {}))
                lead = max(0.0, first - _start(info.get("format") or {}))
                self._make_proxy(source, info, out, seek=(begin + lead, stop - begin))
            part = Served(out, True, round(video_offset(_probe(out)) - begin, 3), (begin, stop))
        self._parts[out] = part
        return part

    def _make_proxy(self, source: Path, info: dict[str, Any], out: Path, background: bool = False,
                    seek: tuple[float, float] | None = None) -> None:
        has_audio = any(s.get("codec_type") == "audio" for s in info.get("streams") or [])
        video = ("yadif=deint=interlaced,scale=trunc(iw*sar/2)*2:trunc(ih/2)*2,setsar=1")
        cmd = ["-ss", f"{seek[0]:.3f}"] if seek else []
        cmd += ["-i", str(source)] + (["-t", f"{seek[1]:.3f}"] if seek else [])
        cmd += ["-map", "0:v:0", "-sn", "-dn", "-vf", video,
                "-c:v", "libx264", "-preset", "ultrafast", "-crf", "23", "-pix_fmt", "yuv420p",
                "-g", "50", "-keyint_min", "25", "-sc_threshold", "0"]
        if has_audio:
            cmd += ["-map", "0:a:0", "-c:a", "aac", "-b:a", "128k", "-ac", "2"]
        cmd += ["-movflags", "+faststart", "-f", "mp4"]
        self._ffmpeg(cmd, out, background=background)

    def thumbnail(self, recording: Any, scene: Any) -> Path:
        """A JPEG of the scene's middle frame, 320 px wide, made once."""
        source = self.source(recording)
        at = max(0.0, (float(scene.start) + float(scene.end)) / 2)
        out = self.folder / "thumbs" / self._key(recording) / f"{round(at * 1000)}.jpg"
        if out.is_file():
            return out
        with self._lock(f"thumb:{out}"):
            if not out.is_file():
                scale = f"scale=trunc(iw*sar/2)*2:ih,setsar=1,scale={THUMB_WIDTH}:-2"
                self._ffmpeg(["-ss", f"{at:.3f}", "-i", str(source), "-frames:v", "1", "-vf", scale,
                              "-q:v", "5", "-f", "image2", "-c:v", "mjpeg"], out, retry_at_start=True)
        return out

    def _ffmpeg(self, args: list[str], out: Path, retry_at_start: bool = False, background: bool = False) -> None:
        """Run ffmpeg writing ``out`` through a temporary file; MediaError when it fails.
        ``background``: at a lower CPU priority, without taking one of the :data:`JOBS` slots."""
        if shutil.which("ffmpeg") is None:
            raise MediaError("ffmpeg not found on PATH; install it (apt-get install ffmpeg)")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with self._background_slot if background else self._jobs:
                done = self._run(args, tmp, background)
                if (done.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0) and retry_at_start:
                    done = self._run(["-ss", "0"] + args[2:], tmp)  # past the end (a short last scene)
            if done.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
                first = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
                raise MediaError(f"{out.name}: ffmpeg failed ({first})")
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)

    def _run(self, args: list[str], tmp: Path, background: bool = False) -> subprocess.CompletedProcess:
        if self._closed:
            raise MediaError(f"{tmp.name}: the server is stopping")
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-threads", "2", *args, str(tmp)]
        nice = (lambda: os.nice(BACKGROUND_NICE)) if background and hasattr(os, "nice") else None
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=nice)  # noqa: PLW1509
        with self._guard:
            self._children.add(process)
        try:
            out, err = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise MediaError(f"{tmp.name}: ffmpeg took more than {TIMEOUT} s") from None
        finally:
            with self._guard:
                self._children.discard(process)
        return subprocess.CompletedProcess(cmd, process.returncode, out, err)

    def tidy(self) -> int:
        """Remove the scene parts of recordings whose whole proxy is made (they are never played
        again: every scene plays from the whole proxy then); how many folders went. Called when a
        server starts, when no part is being played."""
        parts = self.folder / "proxies" / "parts"
        gone = 0
        try:
            folders = [p for p in parts.iterdir() if p.is_dir()]
        except OSError:
            return 0
        for folder in folders:
            if self._proxy_path(folder.name).is_file():
                shutil.rmtree(folder, ignore_errors=True)
                gone += not folder.exists()
        return gone

    def close(self) -> None:
        """Stop making proxies: the background thread ends, running ffmpeg processes are stopped
        (their temporary files removed by the runs that started them)."""
        with self._guard:
            self._closed = True
            children = list(self._children)
        self._queue.put(None)
        for process in children:
            process.terminate()
        if self._worker is not None:
            self._worker.join(timeout=10)
