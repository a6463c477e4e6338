"""The first search after a correction at 1M scenes: the search caches' delta against a rebuild.

Before migration 0009 any change of the archive (a correction saved in the review app, a new
recording) made the next search rebuild the posting lists and the vector matrix whole; now the
changed recordings are read beside the old caches (``tvcaption/db/text_index.py``,
``tvcaption/db/vector_index.py``). On an archive ``bench/search_hybrid.py`` prepared (its
vectors added), in one run:

1. a hybrid search, untimed, so that the caches are current;
2. ``--rounds`` times: a correction of a random scene through ``tvcaption.db.reviews.add_correction``
   (what the review app's Save does: the new caption, its re-embedded vector), then, timed,
   ``first``: the next hybrid search in this process (it reads the changed recording beside the
   caches), ``next``: ``--queries`` more hybrid searches (the delta held), and ``new_process``:
   a search after forgetting what this process holds (the files mapped again, the delta read
   again; the embedding model stays loaded, as it is not what is measured);
3. ``rebuild``: after one more correction, the first search with a delta forbidden
   (``MAX_CHANGED`` below zero): what every first search after a change cost before.

The archive is changed: each round adds a correction (the reviewer "bench").

    python bench/search_after_change.py --db bench/work/search-1000000-s0.db
    python bench/search_after_change.py --db postgresql+psycopg://postgres@127.0.0.1:PORT/DB
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "scripts"))

from corpus import Grammar  # noqa: E402
from search_queries import make_queries  # noqa: E402
from search_report import load_average, machine  # noqa: E402


def timed(fn, *args, **kwargs) -> float:
    t = time.perf_counter()
    fn(*args, **kwargs)
    return (time.perf_counter() - t) * 1000


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", required=True, help="SQLite file or database URL of a search_hybrid archive")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--queries", type=int, default=10, help="searches timed after each round's first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results" / "search_after_change.json")
    args = p.parse_args(argv)
    from sqlalchemy import text

    from tvcaption.db import search_cache, text_index, vector_index
    from tvcaption.db.hybrid import search
    from tvcaption.db.reviews import add_correction
    from tvcaption.db.store import connect

    url = args.db if "://" in args.db else f"sqlite:///{args.db}"
    engine = connect(url)
    rng = random.Random(args.seed)
    queries = [q for _, q in make_queries(Grammar(args.seed), args.rounds * (args.queries + 2) + 2, args.seed)]
    with engine.connect() as conn:
        recordings = [int(r) for r in conn.execute(text("SELECT id FROM recordings WHERE status = 'done'")).scalars()]
        scenes = int(conn.execute(text("SELECT count(*) FROM scenes")).scalar())

    def correct() -> None:
        rec = rng.choice(recordings)
        with engine.connect() as conn:
            count = int(conn.execute(text("SELECT count(*) FROM scenes WHERE recording_id = :r"), {"r": rec}).scalar())
        add_correction(engine, rec, rng.randrange(count), f"a reviewer's caption {rng.randrange(10**6)}", "bench")

    def forget() -> None:
        text_index._open.clear()
        vector_index._open.clear()

    report: dict = {"benchmark": "search_after_change", "command": "python bench/search_after_change.py "
                    + " ".join(sys.argv[1:] if argv is None else argv), "machine": machine(), "scenes": scenes}
    t = time.perf_counter()
    search(engine, queries.pop(), mode="hybrid")  # the caches current, the model loaded
    report["warm_s"] = round(time.perf_counter() - t, 2)
    report["load_average_before"] = load_average()
    first, after, fresh = [], [], []
    for _ in range(args.rounds):
        correct()
        first.append(timed(search, engine, queries.pop(), mode="hybrid"))
        after += [timed(search, engine, queries.pop(), mode="hybrid") for _ in range(args.queries)]
        forget()
        fresh.append(timed(search, engine, queries.pop(), mode="hybrid"))
    correct()
    saved = search_cache.MAX_CHANGED
    search_cache.MAX_CHANGED = -1  # no delta: the caches are rebuilt, as before migration 0009
    try:
        rebuild = timed(search, engine, queries.pop(), mode="hybrid")
    finally:
        search_cache.MAX_CHANGED = saved
    report["load_average_after"] = load_average()
    report["ms"] = {"first": [round(x, 1) for x in first], "next": [round(x, 1) for x in after],
                    "new_process": [round(x, 1) for x in fresh], "rebuild": round(rebuild, 1)}
    report["median_ms"] = {"first": round(statistics.median(first), 1), "next": round(statistics.median(after), 1),
                           "new_process": round(statistics.median(fresh), 1), "rebuild": round(rebuild, 1)}
    report["rebuild_over_first"] = round(rebuild / statistics.median(first), 1)
    engine.dispose()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("scenes", "median_ms", "rebuild_over_first", "load_average_before",
                                             "load_average_after")}, indent=1))
    return report


if __name__ == "__main__":
    main()
