"""Indexing speed, measured the way a user meets it, against the floor and the peer, in one run.

    python bench/speed.py                    # 10- and 60-minute recordings, writes bench/results/speed.json
    python bench/speed.py --minutes 1 --long 0   # a quick look

On one benchmark recording (720x576 25 fps MPEG-2 in MPEG-TS, from bench/broadcast.py):

* ``tvcaption index`` end to end (a fresh SQLite database, the default model): with analysers
  caption + tags (what the speed target counts: "no slower than PySceneDetect's CLI detecting
  scenes alone") and with every default analyser; caption + tags again with the PyTorch backbone
  (``runtime = "torch"``), with ONNX Runtime, with one OpenVINO stream (the default runs one per
  core), with every core for torch as well (the default leaves one to decoding), with 5 frames a
  scene, and in two passes (detect, then seek). Wall time, real-time factor, peak RSS of each;
* the same stages one after another in this process, each timed alone: probe, decode + scene
  detection + frame sampling (one pass, its three parts timed inside), backbone, each analyser,
  database write; and the backbone's ms a frame in each runtime with 1 thread and every core;
* the floor: decoding every frame with nothing else (ffmpeg to null; decord; PyAV, our decoder);
* the peer: ``scenedetect -i FILE detect-adaptive`` (PySceneDetect's CLI) against tvcaption's
  scene stage (decode + detection, no sampling) on the same file, and whether their cuts agree;
* peak RSS on a 60-minute recording (the 10-minute one six times over, stream-copied): it must
  not grow with length;
* fixed costs: 100 clips of 10 s cut from it, indexed by one ``tvcaption index`` against their
  decoding + scene detection alone; seconds from process start to the first decoded frame of a
  ``tvcaption index`` run (a harness watching the decoder; median of 3); ``tvcaption --help``
  (median of 7 fresh processes) beside a bare interpreter. ``--startup-only`` measures just
  ``--help`` and merges it into an existing results file.

The machine (CPU model and its vector extensions: AVX2, AVX-512, VNNI, bf16, AMX) is recorded.
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

    from machine import cpu_features, cpu_model

    cpu = cpu_model() or ""

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "cpu_features": cpu_features(), "gpu": gpu,
            "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "platform": platform.platform()}


def _timed(cmd: list[str], env: dict | None = None) -> tuple[float, int, str, float]:
    """Wall seconds, peak RSS (bytes) of the command and its children, its stdout, and the CPU
    seconds (user + system) it and its children used: on a machine with few cores, what must fit."""
    probe = ("import resource, subprocess, sys, time, json\n"
             "t = time.perf_counter()\n"
             "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
             "wall = time.perf_counter() - t\n"
             "sys.stderr.write(p.stderr)\n"
             "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
             "print(json.dumps({'rc': p.returncode, 'wall': wall, 'out': p.stdout,\n"
             "  'rss': r.ru_maxrss * 1024, 'cpu': r.ru_utime + r.ru_stime}))\n")
    res = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, env=env)
    if res.returncode:
        raise SystemExit(f"{cmd[0]} failed: {res.stderr[-2000:]}")
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    if doc["rc"]:
        raise SystemExit(f"{' '.join(cmd)} exited {doc['rc']}: {res.stderr[-2000:]}")
    return doc["wall"], doc["rss"], doc["out"], doc["cpu"]


CAPTION_AND_TAGS = {"TVCAPTION_INDEX__ANALYSERS": "caption,tags"}  # what the speed target counts


def _index(recording: Path, work: Path, single_pass: bool = True, **settings: str) -> dict:
    """``tvcaption index`` in a fresh process on a fresh SQLite file; ``settings``: more
    TVCAPTION_* variables (analysers, runtime, threads)."""
    tag = "-".join(f"{k.split('__')[-1].lower()}={v}" for k, v in sorted(settings.items()))
    db = work / f"index-{recording.stem}-{'once' if single_pass else 'twice'}{'-' + tag if tag else ''}.db"
    db.unlink(missing_ok=True)
    env = dict(os.environ, TVCAPTION_DATABASE__URL=f"sqlite:///{db}",
               TVCAPTION_INDEX__SINGLE_PASS="true" if single_pass else "false", **settings)
    exe = [sys.executable, "-m", "tvcaption", "index", str(recording), "-c", str(ROOT / "tvcaption.toml")]
    wall, rss, _, cpu = _timed(exe, env)
    import sqlite3

    with sqlite3.connect(db) as con:
        scenes = con.execute("select count(*) from scenes").fetchone()[0]
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": rss / 2**20, "scenes": scenes}


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


_FIRST_FRAME = """\
import os, sys, time
t0 = float(os.environ["BENCH_T0"])
import tvcaption.video.pyav as pyav
frames = pyav.PyavCursor.frames
def timed(self):
    first = True
    for item in frames(self):
        if first:
            first = False
            print("FIRST_FRAME", time.time() - t0, file=sys.stderr, flush=True)
        yield item
pyav.PyavCursor.frames = timed  # the harness watches the decoder; nothing else changes
from tvcaption.cli import main
sys.argv = ["tvcaption", "index", *sys.argv[1:]]
main()
"""


def _first_frame(recording: Path, work: Path, runs: int = 3, existing: bool = False, **settings: str) -> dict:
    """Seconds from process start (just before the spawn) to the first decoded frame of a
    ``tvcaption index`` run, and to its end; median of ``runs`` fresh processes. Each run writes a
    database of its own: a new file (made and migrated by the run), or with ``existing`` a copy of
    one already migrated (an archive's database, indexing a recording new to it)."""
    import statistics

    template = work / "first-frame-template.db"
    if existing:
        from tvcaption.db.store import connect

        template.unlink(missing_ok=True)
        connect(f"sqlite:///{template}").dispose()
    firsts, walls = [], []
    for i in range(runs):
        db = work / f"first-frame-{i}.db"
        for stale in work.glob(f"first-frame-{i}.db*"):
            stale.unlink()
        if existing:
            shutil.copyfile(template, db)
        env = dict(os.environ, TVCAPTION_DATABASE__URL=f"sqlite:///{db}", **settings)
        env["BENCH_T0"] = repr(time.time())
        t = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", _FIRST_FRAME, str(recording), "-c", str(ROOT / "tvcaption.toml")],
                             env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - t)
        if res.returncode:
            raise SystemExit(f"first-frame run failed: {res.stderr[-2000:]}")
        firsts.append(float(next(l.split()[1] for l in res.stderr.splitlines() if l.startswith("FIRST_FRAME"))))
    return {"first_frame_s": statistics.median(firsts), "wall_s": statistics.median(walls), "runs": runs,
            "file": recording.name, "database": "existing" if existing else "new", "all_s": [round(x, 3) for x in firsts]}


def _short_clips(source: Path, work: Path, count: int = 100, seconds: float = 10.0) -> dict:
    """``count`` clips of ``seconds`` cut (stream copy) from ``source``: index them all in one
    process, against decoding + scene detection of each (tvcaption's scene stage, in this process)."""
    folder = work / f"clips-{count}x{seconds:g}s"
    if len(list(folder.glob("*.ts"))) != count:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(source), "-map", "0", "-c", "copy",
                        "-t", f"{count * seconds}", "-f", "segment", "-segment_time", f"{seconds}",
                        "-reset_timestamps", "1", str(folder / "clip%03d.ts")], check=True)
    clips = sorted(folder.glob("*.ts"))[:count]
    from tvcaption.config import load_config
    from tvcaption.scenes import detect_scenes
    from tvcaption.video import probe

    scenes_config = load_config(ROOT / "tvcaption.toml").scenes
    t = time.perf_counter()
    for clip in clips:
        detect_scenes(probe(clip), scenes_config)
    detect_s = time.perf_counter() - t
    index = _index(folder, work, **CAPTION_AND_TAGS)
    return {"clips": len(clips), "seconds_each": seconds, "decode_detect_s": detect_s, "index": index,
            "index_vs_decode_detect": index["wall_s"] / detect_s}


def _floor(recording: Path) -> dict:
    out: dict = {}
    wall, _, _, _ = _timed(["ffmpeg", "-v", "error", "-nostdin", "-i", str(recording), "-map", "0:v:0", "-f", "null", "-"])
    out["ffmpeg_null_s"] = wall
    code = ("import sys, decord\n"
            "vr = decord.VideoReader(sys.argv[1], num_threads=0)\n"
            "n = 0\n"
            "for i in range(0, len(vr), 64):\n"
            "    n += len(vr.get_batch(list(range(i, min(len(vr), i + 64)))))\n"
            "print(n)\n")
    wall, _, stdout, _ = _timed([sys.executable, "-c", code, str(recording)])
    out["decord_s"], out["decord_frames"] = wall, int(stdout.strip() or 0)
    code = ("import sys, av\n"
            "c = av.open(sys.argv[1]); s = c.streams.video[0]; s.thread_type = 'AUTO'\n"
            "print(sum(1 for _ in c.decode(s)))\n")
    wall, _, stdout, _ = _timed([sys.executable, "-c", code, str(recording)])
    out["pyav_s"], out["pyav_frames"] = wall, int(stdout.strip() or 0)
    return out


def _peer(recording: Path, work: Path) -> dict:
    exe = shutil.which("scenedetect", path=str(Path(sys.executable).parent)) or shutil.which("scenedetect")
    if exe is None:
        return {"error": "scenedetect CLI not found"}
    csv = work / "scenedetect"
    csv.mkdir(exist_ok=True)
    wall, rss, _, cpu = _timed([exe, "-q", "-i", str(recording), "-o", str(csv), "detect-adaptive", "list-scenes", "-s"])
    starts = []
    files = sorted(csv.glob(f"{recording.stem}-Scenes.csv"))
    if files:
        import csv as csvmod

        rows = list(csvmod.reader(files[-1].read_text().splitlines()))
        head = next(i for i, r in enumerate(rows) if r and r[0].startswith("Scene Number"))
        col = rows[head].index("Start Time (seconds)")
        starts = [float(r[col]) for r in rows[head + 1:] if r]
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": rss / 2**20, "scenes": len(starts), "starts": starts}


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
    engine = Engine(config, background=False)  # loaded here, so that this stage is timed alone
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
    sampled = list(stream_scenes(info, config.scenes, engine.frames, stats=stats, shown=engine.keep))
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
    out["backbone_runtime"] = getattr(engine.backbone, "runtime", "torch")
    out["runtimes_ms_per_frame"] = _runtimes(config, np.concatenate([s.frames for s in sampled[:32]]))

    # each analyser alone over the whole recording, on the features above, 16 scenes at a time
    inputs = [engine._input(s.scene, s.times, s.frames, x, s.shown) for s, x in zip(sampled, local.split(engine.frames))]
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


def _runtimes(config, frames) -> dict:
    """ms a frame of each backbone runtime on the same frames (SD, full size: resize included),
    with 1 thread and with every core; the same frames through each."""
    import dataclasses

    import torch

    from tvcaption.features import extract, load_backbone
    from tvcaption.features.onnx_backbone import load_onnx_backbone

    out = {}
    for threads in (1, os.cpu_count() or 1):
        features = dataclasses.replace(config.features, device="cpu", threads=threads)
        for name, load in (("torch", lambda f: load_backbone(f, device="cpu")),
                           ("onnx", lambda f: load_onnx_backbone(f, "onnx")),
                           ("openvino", lambda f: load_onnx_backbone(f, "openvino"))):
            torch.set_num_threads(threads)
            backbone = load(features)
            extract(backbone, frames[:4])  # warm up
            t = time.perf_counter()
            extract(backbone, frames, batch_size=config.features.batch_size)
            out[f"{name}_{threads}t"] = 1e3 * (time.perf_counter() - t) / len(frames)
    torch.set_num_threads(os.cpu_count() or 1)
    return out


def _agreement(ours: list[float], theirs: list[float], tol: float = 0.05) -> dict:
    import numpy as np

    a, b = np.asarray(ours), np.asarray(theirs)
    matched = sum(bool(len(b)) and float(np.min(np.abs(b - x))) <= tol for x in a)
    return {"ours": len(a), "theirs": len(b), "matched_within_s": tol, "matched": int(matched)}


def run(minutes: float, long_minutes: float, work: Path, out: Path, clips: int = 100,
        model: Path | None = None) -> dict:
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
    print("tvcaption index, every default analyser ...", flush=True)
    result["index"] = _index(rec, work)
    runs = {"index_caption_tags": {}, "index_caption_tags_torch": {"TVCAPTION_FEATURES__RUNTIME": "torch"},
            "index_caption_tags_onnx": {"TVCAPTION_FEATURES__RUNTIME": "onnx"},
            "index_caption_tags_all_cores": {"TVCAPTION_FEATURES__THREADS": str(os.cpu_count() or 1)},
            # one OpenVINO stream on the default threads (the default before streams)
            "index_caption_tags_one_stream": {"TVCAPTION_FEATURES__STREAMS": "1"},
            "index_caption_tags_two_pass": {"single_pass": False},
            # what fewer frames a scene would buy (the shipped model was trained on 10: bench/frames.py has the cost)
            "index_caption_tags_5_frames": {"TVCAPTION_MODEL__FRAMES": "5"}}
    if model is not None:  # another checkpoint, with the frames a scene it was trained on
        runs["index_caption_tags_model"] = {"TVCAPTION_MODEL__PATH": str(model.resolve())}
        result["other_model"] = str(model)
    for key, settings in runs.items():
        print(f"tvcaption index, caption + tags ({key}) ...", flush=True)
        single = settings.pop("single_pass", True)
        result[key] = _index(rec, work, single_pass=single, **CAPTION_AND_TAGS, **settings)
    duration = result["stages"]["duration_s"]
    result["recording"]["duration_s"] = duration
    long_rec = rec
    if long_minutes > 0:
        times = max(2, round(long_minutes / minutes))
        long_rec = work / f"broadcast-{minutes * times:g}min.ts"
        if not long_rec.exists():
            repeat(rec, long_rec, times)
        print(f"tvcaption index on {long_rec.name} ...", flush=True)
        result["index_long"] = _index(long_rec, work) | {"minutes": minutes * times}
    if clips:
        if long_rec == rec and clips * 10.0 > minutes * 60:  # no long recording: one long enough to cut them from
            times = int(clips * 10.0 // (minutes * 60)) + 1
            long_rec = work / f"broadcast-{minutes * times:g}min.ts"
            if not long_rec.exists():
                repeat(rec, long_rec, times)
        print(f"{clips} short clips ...", flush=True)
        result["short_clips"] = _short_clips(long_rec, work, clips)
        first = sorted((work / f"clips-{clips}x10s").glob("*.ts"))[0]
        print("start-up to the first decoded frame ...", flush=True)
        result.update(_first_frames(first, work))
    result["summary"] = _summary(result, duration)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def _first_frames(clip: Path, work: Path) -> dict:
    return {"first_frame": _first_frame(clip, work, **CAPTION_AND_TAGS),
            "first_frame_existing_db": _first_frame(clip, work, existing=True, **CAPTION_AND_TAGS),
            "first_frame_all_analysers": _first_frame(clip, work)}


def _summary(result: dict, duration: float) -> dict:
    s, peer = result["stages"], result["peer"].get("wall_s")
    ct = result["index_caption_tags"]["wall_s"]
    return {
        "index_rtf": duration / result["index"]["wall_s"],
        "index_caption_tags_rtf": duration / ct,
        "index_caption_tags_vs_scenedetect_cli": ct / peer if peer else None,  # the target: at most 1
        # CPU seconds, ours over the CLI's: parity on N cores needs at most N x the CLI's wall in all
        "index_caption_tags_cpu_vs_scenedetect_cli_cpu": (result["index_caption_tags"].get("cpu_s", 0)
                                                          / result["peer"]["cpu_s"]) if result["peer"].get("cpu_s") else None,
        "default_vs_torch_index_speedup": result["index_caption_tags_torch"]["wall_s"] / ct,  # (onnx_vs_torch_... before OpenVINO)
        "default_vs_onnx_runtime_index_speedup": result.get("index_caption_tags_onnx", {}).get("wall_s", ct) / ct,
        "default_vs_5_frames_index_speedup": result.get("index_caption_tags_5_frames", {}).get("wall_s", ct) / ct,
        "default_vs_all_cores_threads_speedup": result["index_caption_tags_all_cores"]["wall_s"] / ct,
        "default_vs_other_model_speedup": result.get("index_caption_tags_model", {}).get("wall_s", ct) / ct,
        "default_vs_one_stream_speedup": result.get("index_caption_tags_one_stream", {}).get("wall_s", ct) / ct,
        "single_vs_two_pass_speedup": result["index_caption_tags_two_pass"]["wall_s"] / ct,
        "floor_ffmpeg_rtf": duration / result["floor"]["ffmpeg_null_s"],
        "floor_decord_rtf": duration / result["floor"]["decord_s"],
        "floor_pyav_rtf": duration / result["floor"]["pyav_s"],
        "scene_stage_rtf": duration / s["scene_stage_s"],
        "peer_scenedetect_rtf": duration / peer if peer else None,
        "scene_stage_vs_peer_speedup": peer / s["scene_stage_s"] if peer else None,
        "stages_sum_s": sum(s[k] for k in ("probe_s", "hash_s", "one_pass_s", "backbone_s", "lstap_decode_s",
                                           "tags_s", "database_s")),
        "peak_rss_mb": result["index"]["peak_rss_mb"],
        "peak_rss_caption_tags_mb": result["index_caption_tags"]["peak_rss_mb"],
        "peak_rss_long_mb": result.get("index_long", {}).get("peak_rss_mb"),
        "short_clips_index_vs_decode_detect": result.get("short_clips", {}).get("index_vs_decode_detect"),
        "first_frame_s": result.get("first_frame", {}).get("first_frame_s"),
    }


def table(result: dict) -> str:
    s, m, st = result["summary"], result["machine"], result["stages"]
    d = result["recording"]["duration_s"]

    def row(label: str, wall: float) -> tuple[str, str, str]:
        return label, f"{wall:.1f} s", f"{d / wall:.1f}x"

    rows = [row("`tvcaption index`, caption + tags (the target)", result["index_caption_tags"]["wall_s"]),
            row("... with the PyTorch backbone (`runtime = \"torch\"`)", result["index_caption_tags_torch"]["wall_s"]),
            *([row("... with ONNX Runtime (`runtime = \"onnx\"`)", result["index_caption_tags_onnx"]["wall_s"])]
              if "index_caption_tags_onnx" in result else []),
            *([row("... 5 frames a scene instead of the model's 10 (`[model] frames = 5`)",
                   result["index_caption_tags_5_frames"]["wall_s"])] if "index_caption_tags_5_frames" in result else []),
            *([row(f"... with the model {Path(result['other_model']).name} (its own frames a scene)",
                   result["index_caption_tags_model"]["wall_s"])] if "index_caption_tags_model" in result else []),
            *([row("... one OpenVINO stream (`[features] streams = 1`; default: one per core)",
                   result["index_caption_tags_one_stream"]["wall_s"])] if "index_caption_tags_one_stream" in result else []),
            row(f"... every core for torch and OpenVINO ({m['cores']} threads; default: all but one for torch)",
                result["index_caption_tags_all_cores"]["wall_s"]),
            row("... detect, then seek (two passes)", result["index_caption_tags_two_pass"]["wall_s"]),
            row("`tvcaption index`, every default analyser", result["index"]["wall_s"]),
            row("tvcaption scene stage (decode + detect)", st["scene_stage_s"])]
    if s.get("peer_scenedetect_rtf"):
        rows.append(row("`scenedetect -i FILE detect-adaptive`", result["peer"]["wall_s"]))
    rows += [row("floor: `ffmpeg -i FILE -f null -`", result["floor"]["ffmpeg_null_s"]),
             row("floor: decord, every frame", result["floor"]["decord_s"]),
             row("floor: PyAV, every frame", result["floor"]["pyav_s"])]
    head = (f"{result['recording']['minutes']:g}-minute {result['recording']['format']}, {st['scenes']} scenes; "
            f"{m['cpu']} ({', '.join(m.get('cpu_features', []))}), {m['cores']} cores, torch {m['torch']}, "
            + (f"GPU {m['gpu']}" if m["gpu"] else "no GPU"))
    lines = [head, "", "| what | wall | real-time factor |", "|---|---:|---:|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    if s.get("index_caption_tags_vs_scenedetect_cli"):
        lines += ["", f"caption + tags index / PySceneDetect CLI: {s['index_caption_tags_vs_scenedetect_cli']:.2f} "
                      "(target: at most 1.00)"]
    if s.get("index_caption_tags_cpu_vs_scenedetect_cli_cpu"):
        ours, theirs = result["index_caption_tags"]["cpu_s"], result["peer"]["cpu_s"]
        lines += [f"CPU seconds (user + system): caption + tags index {ours:.1f}, PySceneDetect CLI {theirs:.1f} "
                  f"({s['index_caption_tags_cpu_vs_scenedetect_cli_cpu']:.2f}x); parity on {m['cores']} cores needs "
                  f"at most {m['cores'] * result['peer']['wall_s']:.1f} ({m['cores']} x the CLI's wall), all of it busy"]
    rt = st.get("runtimes_ms_per_frame", {})
    if rt:
        lines += ["", "backbone, ms a frame (SD frames, resize included): " + ", ".join(
            f"{k} {v:.1f}" for k, v in rt.items())]
    lines += ["", f"| stage (run alone, in order; backbone: {st.get('backbone_runtime', 'torch')}) | seconds | share |",
              "|---|---:|---:|"]
    parts = [("probe + content hash", st["probe_s"] + st["hash_s"]),
             ("decode (one pass)", st["one_pass_parts_s"]["decode"]),
             ("scene detection (downscale + detector)", st["one_pass_parts_s"]["detect"]),
             ("frame sampling (pick + RGB)", st["one_pass_parts_s"]["sample"]),
             (f"backbone ({st['backbone_ms_per_frame']:.1f} ms a frame)", st["backbone_s"]),
             ("L-STAP encoder + beam search", st["lstap_decode_s"]),
             ("tags", st["tags_s"]),
             ("database write", st["database_s"])]
    parts += [(f"analyser {k[9:-2]}", v) for k, v in st.items()
              if k.startswith("analyser_") and k not in ("analyser_caption_s", "analyser_tags_s")]
    total = sum(v for _, v in parts)
    lines += [f"| {a} | {v:.1f} | {100 * v / total:.0f}% |" for a, v in parts]
    lines += [f"| sum (index overlaps decoding with the model: {result['index']['wall_s']:.1f} s) | {total:.1f} | |"]
    if "startup" in result:
        lines += ["", f"`tvcaption --help`: {result['startup']['help_s']:.2f} s "
                      f"(a bare `python -c pass`: {result['startup']['python_bare_s']:.2f} s)"]
    if "first_frame" in result:
        ff, fa = result["first_frame"], result["first_frame_all_analysers"]
        lines += [f"process start to first decoded frame: {ff['first_frame_s']:.2f} s caption + tags, "
                  f"{fa['first_frame_s']:.2f} s every default analyser (whole 10 s clip: {ff['wall_s']:.2f} / "
                  f"{fa['wall_s']:.2f} s), new database"]
        if "first_frame_existing_db" in result:
            fe = result["first_frame_existing_db"]
            lines += [f"the same into an existing (migrated) database, caption + tags: {fe['first_frame_s']:.2f} s "
                      f"(whole clip {fe['wall_s']:.2f} s)"]
    if "short_clips" in result:
        sc = result["short_clips"]
        lines += [f"{sc['clips']} clips of {sc['seconds_each']:g} s, caption + tags, one `tvcaption index`: "
                  f"{sc['index']['wall_s']:.1f} s; their decode + scene detection alone: {sc['decode_detect_s']:.1f} s "
                  f"({sc['index_vs_decode_detect']:.2f}x)"]
    long = result.get("index_long")
    rss = (f"peak RSS {s['peak_rss_mb']:.0f} MB (every default analyser), {s['peak_rss_caption_tags_mb']:.0f} MB "
           f"(caption + tags) for {result['recording']['minutes']:g} min")
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
    ap.add_argument("--clips", type=int, default=100, help="short 10 s clips to index in one run (0: skip)")
    ap.add_argument("--table", action="store_true", help="only print the table of an existing --out file")
    ap.add_argument("--model", type=Path, help="also index caption + tags with this checkpoint STEM (a model "
                    "trained on fewer frames a scene)")
    ap.add_argument("--startup-only", action="store_true", help=(
        "measure start-up only (--help, and process start to the first decoded frame of a clip made by an "
        "earlier full run); merge it into --out"))
    args = ap.parse_args(argv)
    if args.startup_only:
        result = json.loads(args.out.read_text()) if args.out.exists() else {}
        result["startup"] = _startup() | {"machine": _machine()}
        clip = next(iter(sorted((args.work / f"clips-{args.clips}x10s").glob("*.ts"))), None)
        if clip is None:
            print(f"no {args.work}/clips-{args.clips}x10s/: run the whole benchmark once for the first-frame figures")
        else:
            result.update(_first_frames(clip, args.work))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result["startup"], indent=1))
        return 0
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return 0
    result = run(args.minutes, args.long, args.work, args.out, args.clips, args.model)
    print(table(result))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
