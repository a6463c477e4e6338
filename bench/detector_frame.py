#!/usr/bin/env python3
"""How the scene detector's small BGR frame is made: its cost a frame, and the cuts it gives.

    python bench/detector_frame.py [--minutes 10] [--out bench/results/detector_frame.json]

PySceneDetect's SceneManager converts every picture to BGR at full size, then shrinks it with
``cv2.resize(INTER_LINEAR)`` (two taps a pixel, no widening of the filter when shrinking).
swscale can convert and shrink in one step: ``FAST_BILINEAR`` (two taps, but not at cv2's
sample positions), ``POINT`` (the nearest pixel), ``BILINEAR`` and ``AREA`` (filters widened
when shrinking: no aliasing, a blurrier frame). Every variant feeds its own adaptive detector
(the default) on the same decoded pictures, one decoding pass per recording (the variants of
each picture timed in a rotated order); reported: ms a frame, the mean absolute difference of
its frame from the ``cv2`` one (grey levels), and its scene starts matched within 50 ms to the
``cv2`` variant's (which finds exactly PySceneDetect CLI's cuts: bench/speed.py).
Recordings: the benchmark broadcast (bench/broadcast.py) and every clip in
../shared/data/scenes (SD to 1080p, H.264 and MPEG-4, one turned on its side).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
SCENES = ROOT.parent / "shared" / "data" / "scenes"
VARIANTS = ("cv2", "POINT", "FAST_BILINEAR", "BILINEAR", "AREA")


def converters(info) -> dict:
    """Picture -> the detector's BGR frame, one per variant (``POINT``: the package's own since this
    benchmark; ``cv2``: before)."""
    from tvcaption.config import ScenesConfig
    from tvcaption.scenes import processing_size
    from tvcaption.video import output_size
    from tvcaption.video.pyav import converter

    w, h = processing_size(info.width, info.height, ScenesConfig())
    size = output_size(info, min(w, h))
    return {name: converter(info, *size, "bgr24", scaler=name) for name in VARIANTS}


def run(path: Path) -> dict:
    from tvcaption.config import ScenesConfig
    from tvcaption.scenes import SceneDetection
    from tvcaption.video import probe
    from tvcaption.video.pyav import PyavCursor

    info = probe(path)
    convert = converters(info)
    detections = {k: SceneDetection(info.fps, ScenesConfig(), source_size=(info.width, info.height)) for k in convert}
    spent = dict.fromkeys(convert, 0.0)
    gap = dict.fromkeys(convert, 0.0)
    names = list(convert)
    frames = 0
    with PyavCursor(info) as cursor:
        for t, picture in cursor.frames():
            smalls = {}
            # each picture's variants in a rotated order: none always gets the picture's data warm from the one before
            for name in names[frames % len(names):] + names[:frames % len(names)]:
                t0 = time.perf_counter()
                smalls[name] = convert[name](picture)
                spent[name] += time.perf_counter() - t0
            for name, small in smalls.items():
                detections[name].push(t, small, bgr=True)
                gap[name] += float(np.abs(small.astype(np.int16) - smalls["cv2"]).mean())
            frames += 1
    starts = {k: [s.start for s in d.finish(info.duration)] for k, d in detections.items()}
    ref = np.asarray(starts["cv2"])
    row = {"size": [info.width, info.height], "frames": frames, "scenes_cv2": len(ref)}
    for name in convert:
        matched = sum(1 for s in starts[name] if np.min(np.abs(ref - s)) <= 0.05)
        row[name] = {"ms_per_frame": round(1e3 * spent[name] / frames, 3), "scenes": len(starts[name]),
                     "matched_cv2": matched, "mean_abs_gap_to_cv2": round(gap[name] / frames, 3)}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the benchmark broadcast")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "detector_frame.json"))
    args = parser.parse_args()

    from broadcast import make_broadcast
    from machine import cpu_features, cpu_model

    result: dict = {"machine": {"cpu": cpu_model(), "cpu_features": cpu_features(), "cores": os.cpu_count(),
                                "python": platform.python_version()}, "recordings": {}}
    with tempfile.TemporaryDirectory(prefix="detector-frame-") as tmp:
        broadcast = Path(tmp) / f"broadcast-{args.minutes:g}min.ts"
        make_broadcast(broadcast, args.minutes)
        clips = sorted(p for p in SCENES.iterdir() if p.suffix in (".mp4", ".avi", ".mkv"))
        for path in [broadcast, *clips]:
            row = result["recordings"][path.name] = run(path)
            print(path.name, json.dumps(row), flush=True)
    rows = list(result["recordings"].values())
    result["all"] = {name: {"scenes": sum(r[name]["scenes"] for r in rows),
                            "matched_cv2": sum(r[name]["matched_cv2"] for r in rows),
                            "mean_abs_gap_to_cv2": round(sum(r[name]["mean_abs_gap_to_cv2"] * r["frames"] for r in rows)
                                                         / sum(r["frames"] for r in rows), 3)} for name in VARIANTS}
    result["all"]["scenes_cv2"] = sum(r["scenes_cv2"] for r in rows)
    print("all", json.dumps(result["all"]))
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
