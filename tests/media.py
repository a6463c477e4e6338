"""Test media: copies of the shared clips in the containers a TV archive holds, made with ffmpeg.

Files are made on first use into one session folder and reused by every test module (a second
module's fixture instance finds them already there). Everything stays small: a few seconds.
Also an independent reference reader (plain PyAV decoding) for comparisons.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from needs import need_ffmpeg  # tests/ is on sys.path: conftest.py imports it from there

TS_OFFSET = 36000  # seconds: DVB captures start hours from timestamp zero

# name -> (source clip in the shared scenes folder or None, ffmpeg arguments between input and output)
RECIPES: dict[str, tuple[str | None, list[str]]] = {
    "bikes-remux.ts": ("bikes.mp4", ["-c", "copy", "-f", "mpegts", "-output_ts_offset", str(TS_OFFSET)]),
    "bikes-mpeg2.ts": ("bikes.mp4", ["-an", "-c:v", "mpeg2video", "-q:v", "4", "-f", "mpegts",
                                     "-output_ts_offset", str(TS_OFFSET)]),
    "goldeneye-remux.ts": ("goldeneye-vfr-drop3.mp4", ["-c", "copy", "-f", "mpegts",
                                                       "-output_ts_offset", str(TS_OFFSET)]),
    "goldeneye-mpeg2.ts": ("goldeneye-vfr-drop3.mp4", ["-an", "-c:v", "mpeg2video", "-q:v", "4", "-f", "mpegts",
                                                       "-output_ts_offset", str(TS_OFFSET)]),
    # a capture across the 33-bit PTS wrap (2^33 / 90 kHz = 95443.7 s): timestamps jump back to 0 at 3.7 s
    "bikes-wrap.ts": ("bikes.mp4", ["-c", "copy", "-f", "mpegts", "-output_ts_offset", "95440"]),
    # Matroska stores the end time as the duration when it starts late (3610 s for 10 s at 3600)
    "bikes-offset.mkv": ("bikes.mp4", ["-c", "copy", "-output_ts_offset", "3600"]),
    "bikes-offset.webm": ("bikes.mp4", ["-t", "3", "-an", "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8",
                                        "-output_ts_offset", "3600"]),
    # MXF needs a legal frame rate and size: PAL 720x576 at 25 fps; 4 s keep it small.
    "bikes.mxf": ("bikes.mp4", ["-t", "4", "-an", "-vf", "scale=720:576", "-r", "25", "-c:v", "mpeg2video",
                                "-q:v", "4", "-f", "mxf"]),
    "audio-only.m4a": (None, ["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac"]),
}


class Media:
    """``media("bikes-remux.ts")`` -> path of that file, made with ffmpeg on first use."""

    def __init__(self, root: Path, scenes_dir: Path):
        self.root = root
        self.scenes_dir = scenes_dir
        root.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str) -> Path:
        out = self.root / name
        if out.exists():
            return out
        if name.endswith("-cut.ts"):  # a capture that starts mid-GOP: the last 2/3 of the bytes
            data = self(name[: -len("-cut.ts")] + ".ts").read_bytes()
            tmp = out.with_name(f".{os.getpid()}.{name}")
            tmp.write_bytes(data[(len(data) // 3) // 188 * 188:])  # on a 188-byte TS packet boundary
            tmp.replace(out)
            return out
        source, args = RECIPES[name]
        inputs = ["-i", str(self.scenes_dir / source)] if source else []
        tmp = out.with_name(f".{os.getpid()}.{name}")
        cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", *inputs, *args, str(tmp)]
        subprocess.run(cmd, check=True, timeout=120, capture_output=True)
        tmp.replace(out)
        return out


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory, scenes_dir: Path) -> Media:
    need_ffmpeg("needed to make the MPEG-TS/MXF test copies")  # scenes_dir: the shared clips, checked there
    return Media(tmp_path_factory.getbasetemp() / "tvcaption-media", scenes_dir)


def reference_decode(path: str | Path, keep: Iterable[int] = ()) -> tuple[dict[int, np.ndarray], np.ndarray, dict]:
    """Plain PyAV: the frames at output indices ``keep`` as coded (RGB, no rotation, no aspect
    correction), the times of all frames from the first one, and stream facts.

    Times are the frames' PTS labels sorted and handed out in output order: decoders emit frames
    in display order, but AVI with packed B-frames labels them 1,2,3,5,4,6...
    """
    import av

    keep = set(keep)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames, pts = {}, []
        for i, frame in enumerate(container.decode(stream)):
            if i in keep:
                frames[i] = frame.to_ndarray(format="rgb24")
            pts.append(frame.pts)
        tb = Fraction(stream.time_base.numerator, stream.time_base.denominator)
    labels = sorted(pts)
    times = np.array([float((p - labels[0]) * tb) for p in labels])
    return frames, times, {"start": float(labels[0] * tb)}
