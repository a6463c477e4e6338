#!/usr/bin/env python3
"""Where the scene stage's time goes, a frame at a time (issue 17).

    python bench/scene_stage.py [--minutes 10] [--frames 1500] [--reps 3] [--out FILE]

On the benchmark broadcast (bench/broadcast.py: 720x576 25 fps MPEG-2 in MPEG-TS), CPU time a
frame (``time.process_time``: every thread of the process, FFmpeg's and OpenCV's too), medians of
``--reps`` alternated passes:

- decoding (PyAV, as the one-pass reader opens the stream);
- the detector's frame: the full-size YUV picture to BGR, then ``cv2.resize`` to PySceneDetect's
  processing size (tvcaption.scenes.small_converter, the CLI's pixels);
- the adaptive detector's ``process_frame`` on those frames: PySceneDetect's own class against
  the one :func:`tvcaption.scenes.make_detector` returns (its score summed in OpenCV), and
  whether every frame's score is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)  # bench/speed.py's recording
    parser.add_argument("--frames", type=int, default=1500)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--work", default=str(HERE / "work"))
    parser.add_argument("--out", default="")
    args = parser.parse_args()

    from broadcast import make_broadcast
    from machine import cpu_features, cpu_model
    from scenedetect.common import FrameTimecode
    from scenedetect.detectors import AdaptiveDetector

    from tvcaption.config import ScenesConfig
    from tvcaption.scenes import make_detector, small_converter
    from tvcaption.video import probe
    from tvcaption.video.pyav import PyavCursor

    rec = Path(args.work) / f"broadcast-{args.minutes:g}min.ts"
    if not rec.exists():
        rec.parent.mkdir(parents=True, exist_ok=True)
        make_broadcast(rec, args.minutes)
    info = probe(str(rec))
    convert, _ = small_converter(info, ScenesConfig())

    def pictures():
        with PyavCursor(info) as cursor:
            for i, (_, picture) in enumerate(cursor.frames()):
                if i >= args.frames:
                    return
                yield picture

    def cpu(fn) -> float:
        t = time.process_time()
        n = fn()
        return 1e3 * (time.process_time() - t) / n

    times: dict[str, list[float]] = {"decode": [], "small_frame": [], "detector_pyscenedetect": [],
                                      "detector_tvcaption": []}
    small = [convert(p) for p in pictures()]
    scores: dict[str, list[float]] = {}
    for _ in range(args.reps):
        times["decode"].append(cpu(lambda: sum(1 for _ in pictures())))
        kept = list(pictures())
        times["small_frame"].append(cpu(lambda: sum(1 for p in kept if convert(p) is not None)))
        del kept
        for name, make in (("pyscenedetect", lambda: AdaptiveDetector(min_scene_len=15)),
                           ("tvcaption", lambda: make_detector(ScenesConfig(), info.fps))):
            detector, seen = make(), []

            def run():
                for i, frame in enumerate(small):
                    detector.process_frame(FrameTimecode(i, fps=info.fps), frame)
                    seen.append(detector._frame_score)
                return len(small)

            times[f"detector_{name}"].append(cpu(run))
            scores[name] = seen
    result = {"machine": {"cpu": cpu_model(), "cpu_features": cpu_features(), "cores": os.cpu_count()},
              "recording": rec.name, "frames": len(small), "size": list(small[0].shape[:2][::-1]),
              "cpu_ms_per_frame": {k: round(statistics.median(v), 3) for k, v in times.items()},
              "scores_identical": scores["pyscenedetect"] == scores["tvcaption"]}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
