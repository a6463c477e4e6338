"""How long a reviewer waits for a scene of a long recording browsers cannot play.

The recording is the benchmark broadcast (bench/broadcast.py: 720x576 MPEG-2 + MP2 in MPEG-TS,
scenes at its known clip joins), stored in a fresh SQLite archive through the Store; the review
app is driven in-process (Starlette's TestClient), with a fresh proxy cache. Measured, in one run:

- ``first_open``: ``media.json?scene=N`` for scenes near 10%, 50% and 90% of the recording, with
  no proxy made yet: what the scene view waits before it can play (a proxy of the scene alone);
  the second and third while the whole proxy is being made in the background;
- ``whole_proxy``: from the first opening until the whole proxy is there (background, lower
  priority), and the ratio of it to the first opening;
- ``after``: ``media.json?scene=N`` once the whole proxy is there.

    python bench/scene_open.py [--minutes 10] [--recording FILE.ts --joins FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from broadcast import make_broadcast  # noqa: E402
from search_report import load_average, machine  # noqa: E402


def _archive(recording: Path, joins: list[float], duration: float, db: str):
    from tvcaption.db.store import Store, connect
    from tvcaption.scene import Annotation, Scene

    engine = connect(db)
    store = Store(engine)
    cuts = [0.0, *joins, duration]
    scenes = [Scene(a, b, round(a * 25), round(b * 25), annotations=(Annotation("caption", "caption", "a scene", -0.5),))
              for a, b in zip(cuts, cuts[1:], strict=False) if b > a]
    store.save_result(store.claim(str(recording), f"bench-{recording.stat().st_size}", "bench"), scenes, "bench",
                      probe={"duration": duration})
    return engine, next(iter(store.recordings(status="done"))).id, scenes


def run(recording: Path, joins: list[float], duration: float, work: Path) -> dict:
    from starlette.testclient import TestClient

    from tvcaption.web.app import create_app

    engine, rid, scenes = _archive(recording, joins, duration, f"sqlite:///{work / 'archive.db'}")
    app = create_app(engine, cache_dir=work / "cache", allowed_hosts={"testserver"})
    client = TestClient(app)
    picks = [min(range(len(scenes)), key=lambda i: abs(scenes[i].start - f * duration)) for f in (0.1, 0.5, 0.9)]
    began = time.perf_counter()
    first = []
    for index in picks:
        t0 = time.perf_counter()
        info = client.get(f"/recordings/{rid}/media.json?scene={index}").json()
        first.append({"scene": index, "start": scenes[index].start, "length": round(scenes[index].end - scenes[index].start, 2),
                      "seconds": round(time.perf_counter() - t0, 3), "part": info.get("part")})
    proxies = work / "cache" / "proxies"
    while not list(proxies.glob("*.mp4")):
        time.sleep(0.2)
    whole = time.perf_counter() - began
    after = []
    for index in picks:
        t0 = time.perf_counter()
        info = client.get(f"/recordings/{rid}/media.json?scene={index}").json()
        assert "part" not in info, info
        after.append({"scene": index, "seconds": round(time.perf_counter() - t0, 3)})
    app.settings.media.close()
    engine.dispose()
    return {"first_open": first, "whole_proxy_seconds": round(whole, 1),
            "whole_over_first_open": round(whole / first[0]["seconds"], 1), "after": after}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--recording", type=Path, help="an existing broadcast (with --joins: its make_broadcast JSON)")
    ap.add_argument("--joins", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "scene_open.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tvcaption-scene-open-") as tmp:
        work = Path(tmp)
        if args.recording:
            made = json.loads(args.joins.read_text())
            recording = args.recording
        else:
            made = make_broadcast(work / "broadcast.ts", args.minutes)
            recording = Path(made["path"])
        before = load_average()
        result = run(recording, made["joins"], made["duration"], work)
    report = {"machine": machine(), "recording": {"minutes": round(made["duration"] / 60, 2),
                                                 "kind": "720x576 MPEG-2 + MP2 in MPEG-TS (bench/broadcast.py)"},
              "load_average_before": before, "load_average_after": load_average(), **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
