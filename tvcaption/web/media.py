"""What the review app plays and shows: a browser-playable copy of each recording, and thumbnails.

Browsers play H.264 (with AAC or MP3 sound) in MP4, progressive. An indexed recording in that
form is served as it is; any other (MPEG-2 in MPEG-TS, MXF, AVI, interlaced H.264, Matroska, ...)
gets a proxy made once with ffmpeg on first request: H.264 (yuv420p, square pixels,
deinterlaced where the frames say they are interlaced, a key frame every 2 s for seeking) and
stereo AAC in MP4 with its index at the front (``+faststart``), so playback starts before the
whole file has come. Thumbnails are one JPEG per scene, 320 px wide, from the scene's middle.

Both live in the user's cache folder (``~/.cache/tvcaption/`` on Linux, by ``platformdirs``),
named after the recording's content hash, so a replaced file gets new ones and a moved one keeps
them; each is written to a temporary name and renamed, so a reader never sees half a file.
Files are only ever found from a recording stored in the database (by its id, in the routes),
never from a path in a request. At most :data:`JOBS` ffmpeg processes run at once.

``offset`` is where the first video frame sits on the served file's timeline (scene times count
from the first video frame; in a proxy of an MPEG-TS whose sound starts first it comes a little
later): the page seeks to a scene's start plus it and shifts the description track's cues by it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tvcaption.errors import TvcaptionError

JOBS = 2  # ffmpeg processes at once (thumbnails of a page of results, a proxy)
PROXY_VERSION = 1  # part of the proxy's name: a change in how proxies are made makes new ones
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
    offset: float  # seconds from the file's start to the first video frame


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


class Media:
    """Proxies and thumbnails of recordings, cached under ``folder`` (default: the user's cache folder)."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder) if folder is not None else cache_root()
        self._jobs = threading.BoundedSemaphore(JOBS)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._served: dict[tuple[str, str], Served] = {}

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

    def served(self, recording: Any) -> Served:
        """The file to play for ``recording``: itself when a browser can play it, else its proxy
        (made now if missing; this can take a while for a long recording)."""
        source = self.source(recording)
        key = self._key(recording)
        memo = (key, str(source))
        if memo in self._served and self._served[memo].path.is_file():
            return self._served[memo]
        with self._lock("video:" + key):
            info = _probe(source)
            if playable(info):
                served = Served(source, False, video_offset(info))
            else:
                proxy = self.folder / "proxies" / f"{key}.v{PROXY_VERSION}.mp4"
                if not proxy.is_file():
                    self._make_proxy(source, info, proxy)
                served = Served(proxy, True, video_offset(_probe(proxy)))
            self._served[memo] = served
            return served

    def _make_proxy(self, source: Path, info: dict[str, Any], out: Path) -> None:
        has_audio = any(s.get("codec_type") == "audio" for s in info.get("streams") or [])
        video = ("yadif=deint=interlaced,scale=trunc(iw*sar/2)*2:trunc(ih/2)*2,setsar=1")
        cmd = ["-i", str(source), "-map", "0:v:0", "-sn", "-dn", "-vf", video,
               "-c:v", "libx264", "-preset", "ultrafast", "-crf", "23", "-pix_fmt", "yuv420p",
               "-g", "50", "-keyint_min", "25", "-sc_threshold", "0"]
        if has_audio:
            cmd += ["-map", "0:a:0", "-c:a", "aac", "-b:a", "128k", "-ac", "2"]
        cmd += ["-movflags", "+faststart", "-f", "mp4"]
        self._ffmpeg(cmd, out)

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

    def _ffmpeg(self, args: list[str], out: Path, retry_at_start: bool = False) -> None:
        """Run ffmpeg writing ``out`` through a temporary file; MediaError when it fails."""
        if shutil.which("ffmpeg") is None:
            raise MediaError("ffmpeg not found on PATH; install it (apt-get install ffmpeg)")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with self._jobs:
                done = self._run(args, tmp)
                if (done.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0) and retry_at_start:
                    done = self._run(["-ss", "0"] + args[2:], tmp)  # past the end (a short last scene)
            if done.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
                first = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
                raise MediaError(f"{out.name}: ffmpeg failed ({first})")
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _run(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-threads", "2", *args, str(tmp)]
        try:
            return subprocess.run(cmd, capture_output=True, timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise MediaError(f"{tmp.name}: ffmpeg took more than {TIMEOUT} s") from None
