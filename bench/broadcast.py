"""Build a broadcast-like benchmark recording from the real clips in ../shared/data/scenes.

720x576, 25 fps, MPEG-2 video + MP2 audio in MPEG-TS (what a DVB capture holds), made of the
sample clips in a seeded order (every other repeat mirrored so repeats are not identical
pictures), letterboxed to 4:3 PAL. Every join between clips is a hard cut, on top of the cuts
inside the clips. A longer recording is the short one repeated (stream copy, so the 60-minute
file costs seconds): its content per minute is the same, which is what a memory test wants.

    python bench/broadcast.py OUT.ts --minutes 10
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENES = ROOT.parent / "shared" / "data" / "scenes"
CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "counter.mp4", "fades.mp4", "goldeneye-vfr-drop3.mp4",
         "issue-134-rotate.mp4", "issue-195-aspect-ratio.mp4", "testvideo.mp4", "issue-236-split-copy.mkv",
         "megamind_test.avi")


def _duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip())


def make_broadcast(out: Path, minutes: float = 10.0, seed: int = 0, scenes_dir: Path = SCENES) -> dict:
    """Write the recording; returns {"path", "duration", "joins"} (joins: seconds of each clip change)."""
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg not found; install it (apt-get install -y ffmpeg)")
    clips = [scenes_dir / c for c in CLIPS if (scenes_dir / c).exists()]
    if not clips:
        raise SystemExit(f"{scenes_dir}: no sample clips; put ../shared beside the repo")
    lengths = {c: _duration(c) for c in clips}
    rng = random.Random(seed)
    target = minutes * 60.0
    plan: list[tuple[Path, bool]] = []
    total, rep = 0.0, 0
    while total < target:
        order = clips[:]
        rng.shuffle(order)
        for c in order:
            if total >= target:
                break
            plan.append((c, rep % 2 == 1))
            total += lengths[c]
        rep += 1
    inputs: list[str] = []
    chains: list[str] = []
    for i, (c, mirror) in enumerate(plan):
        inputs += ["-i", str(c)]
        flip = ",hflip" if mirror else ""
        chains.append(f"[{i}:v:0]scale=720:576:force_original_aspect_ratio=decrease,pad=720:576:(ow-iw)/2:(oh-ih)/2,"
                      f"setsar=16/15,fps=25,format=yuv420p{flip},setpts=PTS-STARTPTS[v{i}]")
    graph = ";".join(chains) + ";" + "".join(f"[v{i}]" for i in range(len(plan))) + f"concat=n={len(plan)}:v=1:a=0[v]"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".part.ts")
    cmd = ["ffmpeg", "-y", "-v", "error", *inputs, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
           "-filter_complex", graph, "-map", "[v]", "-map", f"{len(plan)}:a", "-t", f"{target:.3f}",
           "-c:v", "mpeg2video", "-b:v", "5M", "-maxrate", "8M", "-bufsize", "1835k", "-g", "12", "-bf", "2",
           "-c:a", "mp2", "-b:a", "192k", "-f", "mpegts", str(tmp)]
    subprocess.run(cmd, check=True)
    tmp.replace(out)
    joins, t = [], 0.0
    for c, _ in plan[:-1]:
        t += round(lengths[c] * 25) / 25
        joins.append(round(t, 3))
    return {"path": str(out), "duration": _duration(out), "clips": len(plan), "joins": joins}


def repeat(src: Path, out: Path, times: int) -> Path:
    """``src`` played ``times`` times in a row, stream-copied (timestamps continue)."""
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{src.resolve()}'\n" for _ in range(times)))
    subprocess.run(["ffmpeg", "-y", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing),
                    "-map", "0", "-c", "copy", "-f", "mpegts", str(out)], check=True)
    listing.unlink()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    info = make_broadcast(args.out, args.minutes, args.seed)
    print(json.dumps({k: v for k, v in info.items() if k != "joins"} | {"joins": len(info["joins"])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
