"""The meaning analyser's cost: model load, embedding per scene, and index speed with it on.

    python bench/meaning.py                  # a 3-minute benchmark broadcast (bench/broadcast.py)
    python bench/meaning.py --minutes 10     # the 10-minute one of bench/text.py

* ``tvcaption index`` of the broadcast with the default analysers (caption, tags, text, speech)
  and with ``meaning`` added, alternating (``--runs``; the fastest of each counts), fresh SQLite
  databases: wall time and the ratio.
* The embedding alone: loading all-MiniLM-L6-v2 (numpy), and milliseconds per scene for the
  texts the analyser embeds (:func:`tvcaption.analysers.meaning.scene_text` of the scenes just
  stored), in batches of 16 scenes as the engine hands them over.

Results go to bench/results/meaning.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from broadcast import make_broadcast  # noqa: E402
from index_run import index_run  # noqa: E402
from machine import cpu_model  # noqa: E402

RESULTS = HERE / "results" / "meaning.json"
DEFAULT = "caption,tags,text,speech"


def index(recording: Path, work: Path, analysers: str) -> dict:
    run = index_run(recording, work, analysers)
    return {k: run[k] for k in ("analysers", "wall_s", "scenes", "db")}


def embedding_cost(db: str) -> dict:
    from tvcaption.analysers.meaning import scene_text
    from tvcaption.db.store import Store
    from tvcaption.embedding import Embedder

    t = time.perf_counter()
    model = Embedder()
    load = time.perf_counter() - t
    with Store(f"sqlite:///{db}") as store:
        scenes = [s for r in store.recordings() for s in store.scenes_of(r.path)]
    texts = [scene_text(s) for s in scenes]
    t = time.perf_counter()
    for lo in range(0, len(texts), 16):
        model.embed(texts[lo:lo + 16])
    took = time.perf_counter() - t
    tokens = sum(len(model.tokenizer.encode(x).ids) for x in texts)
    return {"load_s": load, "scenes": len(texts), "ms_per_scene": 1000 * took / max(len(texts), 1),
            "tokens_per_scene": tokens / max(len(texts), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tvcaption-meaning-") as tmp:
        work = Path(tmp)
        rec = work / f"broadcast-{args.minutes:g}min.ts"
        make_broadcast(rec, args.minutes)
        runs: dict[str, list[dict]] = {"without": [], "with": []}
        for _ in range(args.runs):
            runs["without"].append(index(rec, work, DEFAULT))
            runs["with"].append(index(rec, work, DEFAULT + ",meaning"))
        without, with_meaning = (min(runs[k], key=lambda r: r["wall_s"]) for k in ("without", "with"))
        result = {"cpu": cpu_model(), "cores": os.cpu_count(), "minutes": args.minutes,
                  "index": {"without": without, "with": with_meaning, "ratio": with_meaning["wall_s"] / without["wall_s"],
                            "runs": {k: [round(r["wall_s"], 1) for r in v] for k, v in runs.items()}},
                  "embedding": embedding_cost(without["db"])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    ix, em = result["index"], result["embedding"]
    print(f"index {args.minutes:g}-min broadcast: {ix['without']['wall_s']:.1f} s ({DEFAULT}), "
          f"{ix['with']['wall_s']:.1f} s with meaning ({ix['ratio']:.3f}x), {ix['without']['scenes']} scenes")
    print(f"embedding: model load {em['load_s']:.2f} s, {em['ms_per_scene']:.1f} ms per scene "
          f"({em['tokens_per_scene']:.0f} tokens per scene, {em['scenes']} scenes); {result['cpu']}, {result['cores']} cores")


if __name__ == "__main__":
    main()
