"""Indexing speed, measured the way a user meets it, against the floor and the peer, in one run.

    python bench/speed.py                    # 10- and 60-minute recordings, writes bench/results/speed.json
    python bench/speed.py --minutes 1 --long 0   # a quick look

On one benchmark recording (720x576 25 fps MPEG-2 in MPEG-TS, from bench/broadcast.py):

* ``tvcaption index`` end to end (a fresh SQLite database, the default model, default config):
  wall time, real-time factor (recording seconds per wall second), peak RSS; once with the
  default single pass and once with ``index.single_pass = false`` (detect, then seek);
* the same stages one after another in this process, each timed alone: probe, decode + scene
  detection + frame sampling (one pass, its three parts timed inside), backbone, L-STAP encoder
  + caption decoding, tags, database write. Their sum against the index wall time shows what
  running decoding beside the model buys;
* the floor: decoding every frame with nothing else (ffmpeg to null; decord; PyAV, our decoder);
* the peer: ``scenedetect -i FILE detect-adaptive`` (PySceneDetect's CLI) against tvcaption's
  scene stage (decode + detection, no sampling) on the same file, and whether their cuts agree;
* peak RSS of ``tvcaption index`` on the 10-minute and a 60-minute recording (the 10-minute one
  six times over, stream-copied): it must not grow with length;
* start-up: ``tvcaption --help`` (the installed console script, a fresh process each time,
  median of 7) and ``python -c pass`` beside it; ``--startup-only`` measures just this and
  merges it into an existing results file.

Every figure is measured in this one run on this machine; compare ratios, not absolute times,
across machines. Results go to a JSON file; ``--table`` prints the README table from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from broadcast import make_broadcast, repeat  # noqa: E402


def _machine() -> dict:
    import torch

    from machine import cpu_model

    cpu = cpu_model() or ""

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "platform": platform.platform()}


def _timed(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes) of the command and its children, and its stdout."""
    probe = ("import resource, subprocess, sys, time, json\n"
             "t = time.perf_counter()\n"
             "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "wall = time.perf_counter() - t\n"
             "sys.stderr.write(p.stderr)\n"
             "print(json.dumps({'rc': p.returncode, 'wall': wall, 'out': p.stdout,\n"
             "  'rss': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))\n")
    res = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, env=env)
    if res.returncode:
        raise SystemExit(f"{cmd[0]} failed: {res.stderr[-2000:]}")
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    if doc["rc"]:
        raise SystemExit(f"{' '.join(cmd)} exited {doc['rc']}: {res.stderr[-2000:]}")
    return doc["wall"], doc["rss"], doc["out"]


def _index(recording: Path, work: Path, single_pass: bool) -> dict:
    db = work / f"index-{recording.stem}-{'once' if single_pass else 'twice'}.db"
    db.unlink(missing_ok=True)
    env = dict(os.environ, TVCAPTION_DATABASE__URL=f"sqlite:///{db}",
               TVCAPTION_INDEX__SINGLE_PASS="true" if single_pass else "false")
    exe = [sys.executable, "-m", "tvcaption", "index", str(recording), "-c", str(ROOT / "tvcaption.toml")]
    wall, rss, _ = _timed(exe, env)
    import sqlite3

    with sqlite3.connect(db) as con:
        scenes = con.execute("select count(*) from scenes").fetchone()[0]
    return {"wall_s": wall, "peak_rss_mb": rss / 2**20, "scenes": scenes}


def _startup(runs: int = 7) -> dict:
    """Wall seconds of ``tvcaption --help`` (median of ``runs`` fresh processes) and of a bare
    interpreter, whose start-up is in every figure."""
    import statistics

    exe = shutil.which("tvcaption", path=str(Path(sys.executable).parent)) or shutil.which("tvcaption")

    def median(cmd: list[str]) -> float:
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    return {"help_s": median([exe, "--help"]), "python_bare_s": median([sys.executable, "-c", "pass"]), "runs": runs}


def _floor(recording: Path) -> dict:
    out: dict = {}
    wall, _, _ = _timed(["ffmpeg", "-v", "error", "-nostdin", "-i", str(recording), "-map", "0:v:0", "-f", "null", "-"])
    out["ffmpeg_null_s"] = wall
    code = ("import sys, decord\n"
            "vr = decord.VideoReader(sys.argv[1], num_threads=0)\n"
            "n = 0\n"
            "for i in range(0, len(vr), 64):\n"
            "    n += len(vr.get_batch(list(range(i, min(len(vr), i + 64)))))\n"
            "print(n)\n")
    wall, _, stdout = _timed([sys.executable, "-c", code, str(recording)])
    out["decord_s"], out["decord_frames"] = wall, int(stdout.strip() or 0)
    code = ("import sys, av\n"
            "c = av.open(sys.argv[1]); s = c.streams.video[0]; s.thread_type = 'AUTO'\n"
            "print(sum(1 for _ in c.decode(s)))\n")
    wall, _, stdout = _timed([sys.executable, "-c", code, str(recording)])
    out["pyav_s"], out["pyav_frames"] = wall, int(stdout.strip() or 0)
    return out


def _peer(recording: Path, work: Path) -> dict:
    exe = shutil.which("scenedetect", path=str(Path(sys.executable).parent)) or shutil.which("scenedetect")
    if exe is None:
        return {"error": "scenedetect CLI not found"}
    csv = work / "scenedetect"
    csv.mkdir(exist_ok=True)
    wall, rss, _ = _timed([exe, "-q", "-i", str(recording), "-o", str(csv), "detect-adaptive", "list-scenes", "-s"])
    starts = []
    files = sorted(csv.glob(f"{recording.stem}-Scenes.csv"))
    if files:
        import csv as csvmod

        rows = list(csvmod.reader(files[-1].read_text().splitlines()))
        head = next(i for i, r in enumerate(rows) if r and r[0].startswith("Scene Number"))
        col = rows[head].index("Start Time (seconds)")
        starts = [float(r[col]) for r in rows[head + 1:] if r]
    return {"wall_s": wall, "peak_rss_mb": rss / 2**20, "scenes": len(starts), "starts": starts}


def _stages(recording: Path, frames_budget: dict) -> dict:
    """The index stages run one after another in this process, each timed alone."""
    import numpy as np
    import torch

    from tvcaption.config import load_config
    from tvcaption.db.store import ModelInfo, Store, connect, worker_id
    from tvcaption.engine import Engine
    from tvcaption.pipeline import content_hash
    from tvcaption.scenes import detect_scenes
    from tvcaption.stream import StreamStats, stream_scenes
    from tvcaption.video import probe

    config = load_config(ROOT / "tvcaption.toml")
    out: dict = {}
    t = time.perf_counter()
    engine = Engine(config)
    out["load_model_s"] = time.perf_counter() - t

    t = time.perf_counter()
    info = probe(recording)
    out["probe_s"] = time.perf_counter() - t
    t = time.perf_counter()
    digest = content_hash(recording)
    out["hash_s"] = time.perf_counter() - t

    t = time.perf_counter()
    scenes_only = detect_scenes(info, config.scenes)
    out["scene_stage_s"] = time.perf_counter() - t  # decode + detect: what scenedetect's CLI does
    out["scene_starts"] = [s.start for s in scenes_only]

    stats = StreamStats()
    t = time.perf_counter()
    sampled = list(stream_scenes(info, config.scenes, engine.frames, stats=stats))
    out["one_pass_s"] = time.perf_counter() - t
    out["one_pass_parts_s"] = {"decode": stats.decode_s, "detect": stats.detect_s, "sample": stats.sample_s}
    out["frames_decoded"] = stats.frames
    out["scenes"] = len(sampled)
    frames_budget["scenes"] = len(sampled)

    t = time.perf_counter()
    local = torch.cat([engine.features(np.concatenate([s.frames for s in sampled[i:i + 16]]))
                       for i in range(0, len(sampled), 16)])
    out["backbone_s"] = time.perf_counter() - t
    out["backbone_ms_per_frame"] = 1e3 * out["backbone_s"] / max(1, len(local))

    # each analyser alone over the whole recording, on the features above, 16 scenes at a time
    from tvcaption.analysers import SceneInput

    inputs = [SceneInput(s.scene, s.times, None, x) for s, x in zip(sampled, local.split(engine.frames))]
    annotated = [s.scene for s in sampled]
    for analyser in engine.analysers:
        t = time.perf_counter()
        found = [a for i in range(0, len(inputs), 16) for a in analyser.analyse(inputs[i:i + 16])]
        out[f"analyser_{analyser.name}_s"] = time.perf_counter() - t
        annotated = [scene.with_annotations(a) for scene, a in zip(annotated, found)]
    out["lstap_decode_s"] = out.get("analyser_caption_s", 0.0)
    out["tags_s"] = out.get("analyser_tags_s", 0.0)

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(connect(f"sqlite:///{tmp}/stages.db"))
        t = time.perf_counter()
        claim = store.claim(str(recording), digest, worker_id(), info, model=engine.model_name)
        store.save_result(claim, annotated, model=ModelInfo(**engine.model_info))
        out["database_s"] = time.perf_counter() - t
    out["duration_s"] = info.duration
    return out


def _agreement(ours: list[float], theirs: list[float], tol: float = 0.05) -> dict:
    import numpy as np

    a, b = np.asarray(ours), np.asarray(theirs)
    matched = sum(bool(len(b)) and float(np.min(np.abs(b - x))) <= tol for x in a)
    return {"ours": len(a), "theirs": len(b), "matched_within_s": tol, "matched": int(matched)}


def run(minutes: float, long_minutes: float, work: Path, out: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    rec = work / f"broadcast-{minutes:g}min.ts"
    if not rec.exists():
        print(f"making {rec} ...", flush=True)
        make_broadcast(rec, minutes)
    result: dict = {"machine": _machine(), "recording": {"file": rec.name, "minutes": minutes,
                    "format": "720x576 25 fps MPEG-2 + MP2 in MPEG-TS (bench/broadcast.py)"}}
    print("start-up: tvcaption --help ...", flush=True)
    result["startup"] = _startup()
    print("floor: decoding only ...", flush=True)
    result["floor"] = _floor(rec)
    print("peer: scenedetect CLI ...", flush=True)
    result["peer"] = _peer(rec, work)
    print("stages one by one ...", flush=True)
    result["stages"] = _stages(rec, {})
    result["scene_agreement"] = _agreement(result["stages"].pop("scene_starts"), result["peer"].pop("starts", []))
    print("tvcaption index (single pass) ...", flush=True)
    result["index"] = _index(rec, work, single_pass=True)
    print("tvcaption index (two passes) ...", flush=True)
    result["index_two_pass"] = _index(rec, work, single_pass=False)
    duration = result["stages"]["duration_s"]
    result["recording"]["duration_s"] = duration
    if long_minutes > 0:
        times = max(2, round(long_minutes / minutes))
        long_rec = work / f"broadcast-{minutes * times:g}min.ts"
        if not long_rec.exists():
            repeat(rec, long_rec, times)
        print(f"tvcaption index on {long_rec.name} ...", flush=True)
        result["index_long"] = _index(long_rec, work, single_pass=True) | {"minutes": minutes * times}
    s = result["stages"]
    result["summary"] = {
        "index_rtf": duration / result["index"]["wall_s"],
        "index_two_pass_rtf": duration / result["index_two_pass"]["wall_s"],
        "single_vs_two_pass_speedup": result["index_two_pass"]["wall_s"] / result["index"]["wall_s"],
        "floor_ffmpeg_rtf": duration / result["floor"]["ffmpeg_null_s"],
        "floor_decord_rtf": duration / result["floor"]["decord_s"],
        "floor_pyav_rtf": duration / result["floor"]["pyav_s"],
        "scene_stage_rtf": duration / s["scene_stage_s"],
        "peer_scenedetect_rtf": duration / result["peer"]["wall_s"] if "wall_s" in result["peer"] else None,
        "scene_stage_vs_peer_speedup": result["peer"]["wall_s"] / s["scene_stage_s"] if "wall_s" in result["peer"] else None,
        "stages_sum_s": sum(s[k] for k in ("probe_s", "hash_s", "one_pass_s", "backbone_s", "lstap_decode_s",
                                           "tags_s", "database_s")),
        "peak_rss_mb": result["index"]["peak_rss_mb"],
        "peak_rss_long_mb": result.get("index_long", {}).get("peak_rss_mb"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def table(result: dict) -> str:
    s, m, st = result["summary"], result["machine"], result["stages"]
    d = result["recording"]["duration_s"]
    rows = [
        ("`tvcaption index`, one pass (default)", f"{result['index']['wall_s']:.1f} s", f"{s['index_rtf']:.1f}x"),
        ("`tvcaption index`, detect then seek", f"{result['index_two_pass']['wall_s']:.1f} s", f"{s['index_two_pass_rtf']:.1f}x"),
        ("tvcaption scene stage (decode + detect)", f"{st['scene_stage_s']:.1f} s", f"{s['scene_stage_rtf']:.1f}x"),
    ]
    if s.get("peer_scenedetect_rtf"):
        rows.append(("`scenedetect -i FILE detect-adaptive`", f"{result['peer']['wall_s']:.1f} s", f"{s['peer_scenedetect_rtf']:.1f}x"))
    rows += [
        ("floor: `ffmpeg -i FILE -f null -`", f"{result['floor']['ffmpeg_null_s']:.1f} s", f"{s['floor_ffmpeg_rtf']:.1f}x"),
        ("floor: decord, every frame", f"{result['floor']['decord_s']:.1f} s", f"{s['floor_decord_rtf']:.1f}x"),
        ("floor: PyAV, every frame", f"{result['floor']['pyav_s']:.1f} s", f"{s['floor_pyav_rtf']:.1f}x"),
    ]
    lines = [f"{result['recording']['minutes']:g}-minute {result['recording']['format']}, "
             f"{st['scenes']} scenes; {m['cpu']}, {m['cores']} cores, torch {m['torch']}, no GPU" if not m["gpu"] else "",
             "", "| what | wall | real-time factor |", "|---|---:|---:|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += ["", "| stage (run alone, in order) | seconds | share |", "|---|---:|---:|"]
    parts = [("probe + content hash", st["probe_s"] + st["hash_s"]),
             ("decode (one pass)", st["one_pass_parts_s"]["decode"]),
             ("scene detection (downscale + detector)", st["one_pass_parts_s"]["detect"]),
             ("frame sampling (pick + RGB)", st["one_pass_parts_s"]["sample"]),
             (f"backbone ({st['backbone_ms_per_frame']:.1f} ms a frame)", st["backbone_s"]),
             ("L-STAP encoder + beam search", st["lstap_decode_s"]),
             ("tags", st["tags_s"]),
             ("database write", st["database_s"])]
    total = sum(v for _, v in parts)
    lines += [f"| {a} | {v:.1f} | {100 * v / total:.0f}% |" for a, v in parts]
    lines += [f"| sum (index overlaps decoding with the model: {result['index']['wall_s']:.1f} s) | {total:.1f} | |"]
    if "startup" in result:
        lines += ["", f"`tvcaption --help`: {result['startup']['help_s']:.2f} s "
                      f"(a bare `python -c pass`: {result['startup']['python_bare_s']:.2f} s)"]
    long = result.get("index_long")
    rss = f"peak RSS {s['peak_rss_mb']:.0f} MB for {result['recording']['minutes']:g} min"
    if long:
        rss += f", {long['peak_rss_mb']:.0f} MB for {long['minutes']:g} min ({d * long['minutes'] / result['recording']['minutes'] / long['wall_s']:.1f}x real time)"
    lines += ["", rss + f"; scene starts matching PySceneDetect's CLI within 50 ms: "
              f"{result['scene_agreement']['matched']}/{result['scene_agreement']['ours']} "
              f"(CLI found {result['scene_agreement']['theirs']})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the benchmark recording")
    ap.add_argument("--long", type=float, default=60.0, help="length of the memory-test recording (0: skip)")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work", help="where recordings and databases go")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "speed.json")
    ap.add_argument("--table", action="store_true", help="only print the table of an existing --out file")
    ap.add_argument("--startup-only", action="store_true", help="measure start-up only; merge it into --out")
    args = ap.parse_args(argv)
    if args.startup_only:
        result = json.loads(args.out.read_text()) if args.out.exists() else {}
        result["startup"] = _startup() | {"machine": _machine()}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result["startup"], indent=1))
        return 0
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return 0
    result = run(args.minutes, args.long, args.work, args.out)
    print(table(result))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
