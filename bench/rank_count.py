"""How long hybrid search takes to rank its text hits among all meaning scores.

Hybrid search (tvcaption/db/hybrid.py) gives every text hit its rank among all N vector scores.
This times :func:`tvcaption.db.vector_index.count_greater` (one bucketing pass) against the
binary search of every score it replaced (``_count_greater_by_search``), alternating, on N
seeded scores shaped like cosine similarities and ``--hits`` values drawn from them, and checks
both give the same counts.

    python bench/rank_count.py [--scores 1000000] [--hits 100] [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from machine import cpu_features, cpu_model  # noqa: E402

from tvcaption.db.vector_index import _count_greater_by_search, count_greater  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scores", type=int, default=1_000_000)
    ap.add_argument("--hits", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "rank_count.json")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    scores = rng.normal(0.1, 0.1, size=args.scores).astype(np.float32)
    values = scores[rng.integers(0, len(scores), size=args.hits)]
    assert np.array_equal(count_greater(scores, values), _count_greater_by_search(scores, values))
    times: dict[str, list[float]] = {"bucketed": [], "binary_search": []}
    for _ in range(args.rounds):
        for name, fn in (("bucketed", count_greater), ("binary_search", _count_greater_by_search)):
            t = time.perf_counter()
            fn(scores, values)
            times[name].append((time.perf_counter() - t) * 1000)
    med = {k: statistics.median(v) for k, v in times.items()}
    report = {"cpu": cpu_model(), "cpu_features": cpu_features(), "cores": os.cpu_count(),
              "load_average": [round(x, 2) for x in os.getloadavg()], "scores": args.scores, "hits": args.hits,
              "rounds": args.rounds, "median_ms": {k: round(v, 2) for k, v in med.items()},
              "bucketed_over_binary_search": round(med["bucketed"] / med["binary_search"], 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
