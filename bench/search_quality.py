"""Search quality by mode: recall@5 and MRR of text, meaning and hybrid search on labelled queries.

The queries (bench/queries.json) name the moments that should come first, judged by hand over
the real clips of ../shared/data and one SynthTV broadcast. Index them first, with the meaning
analyser:

    tvcaption synth bench/work/quality/synth --train 0 --val 0 --test 0 --broadcasts 1 --broadcast-seconds 120
    TVCAPTION_INDEX__ANALYSERS=caption,tags,text,speech,meaning tvcaption index \\
        ../shared/data/scenes ../shared/data/captioned/msvd bench/work/quality/synth/broadcasts --db bench/work/quality/quality.db
    python bench/search_quality.py --db bench/work/quality/quality.db [--json out.json]

recall@5: of a query's relevant scenes (at most 5 counted), the share in its first 5 results.
MRR: the mean over queries of 1 / the rank of the first relevant result (0 when none in the first
``--depth``). A scene is relevant when it holds one of the query's labelled moments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tvcaption.db.hybrid import MODES, search  # noqa: E402
from tvcaption.db.store import connect  # noqa: E402

QUERIES = Path(__file__).with_name("queries.json")


def relevant_hit(hit, moments: list[tuple[str, float]]) -> bool:
    name = Path(hit.recording).name
    return any(name == file and hit.start <= at < hit.end for file, at in moments)


def n_relevant(engine, moments: list[tuple[str, float]]) -> int:
    """How many distinct scenes of the index hold the labelled moments."""
    from sqlalchemy import text

    found = set()
    with engine.connect() as conn:
        for file, at in moments:
            row = conn.execute(text("SELECT s.id FROM scenes s JOIN recordings r ON r.id = s.recording_id "
                                    "WHERE r.path LIKE :p AND s.start <= :t AND s.\"end\" > :t"),
                               {"p": "%/" + file, "t": at}).first()
            if row is not None:
                found.add(row[0])
    return len(found)


def score(engine, item: dict, mode: str, depth: int, sets: dict[str, set[str]]) -> dict:
    """One query's scores, over the recordings of its set only (the real clips, or the broadcast):
    a SynthTV cat is a right answer to "animal", but not one the real-clip labels can judge."""
    moments = [(file, float(at)) for file, at in item["relevant"]]
    mine = sets[item.get("set", "real")]
    started = time.perf_counter()
    hits = [h for h in search(engine, item["query"], limit=4 * depth, mode=mode)
            if Path(h.recording).name in mine][:depth]
    took = time.perf_counter() - started
    flags = [relevant_hit(h, moments) for h in hits]
    total = max(1, min(5, n_relevant(engine, moments)))
    first = next((i for i, ok in enumerate(flags, 1) if ok), None)
    return {"recall@5": sum(flags[:5]) / total, "rr": 1 / first if first else 0.0, "seconds": took,
            "top": [f"{Path(h.recording).name}@{h.start:.1f}" for h in hits[:5]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="database indexed with the meaning analyser (see module docstring)")
    parser.add_argument("--queries", type=Path, default=QUERIES)
    parser.add_argument("--depth", type=int, default=50, help="results read per query for MRR")
    parser.add_argument("--json", type=Path, help="write every query's scores here")
    parser.add_argument("--verbose", action="store_true", help="print each query's top 5 per mode")
    args = parser.parse_args(argv)
    url = args.db if "://" in args.db else f"sqlite:///{Path(args.db).resolve()}"
    engine = connect(url, create=False)
    queries = json.loads(args.queries.read_text())["queries"]
    search(engine, "warm up", limit=1, mode="meaning")  # load the model once, outside the timings
    with engine.connect() as conn:
        names = {Path(p).name for (p,) in conn.exec_driver_sql("SELECT path FROM recordings")}
    synth = {file for q in queries if q.get("set") == "synth" for file, _ in q["relevant"]}
    sets = {"synth": synth, "real": names - synth}
    results = {mode: [score(engine, q, mode, args.depth, sets) for q in queries] for mode in MODES}
    engine.dispose()
    print(f"{len(queries)} queries ({args.queries.name}); recall@5, MRR@{args.depth}, mean seconds per query")
    print(f"{'set':<6} {'mode':<8} {'recall@5':>9} {'MRR':>6} {'s/query':>8}")
    for subset in ("real", "synth", "all"):
        keep = [i for i, q in enumerate(queries) if subset == "all" or q.get("set") == subset]
        for mode in MODES:
            rows = [results[mode][i] for i in keep]
            mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("recall@5", "rr", "seconds")}
            print(f"{subset:<6} {mode:<8} {mean['recall@5']:>9.3f} {mean['rr']:>6.3f} {mean['seconds']:>8.3f}")
    if args.verbose:
        for i, q in enumerate(queries):
            print(f"\n{q['query']!r} ({q.get('set')})")
            for mode in MODES:
                r = results[mode][i]
                print(f"  {mode:<8} R@5 {r['recall@5']:.2f} RR {r['rr']:.2f}  {', '.join(r['top'])}")
    if args.json:
        args.json.write_text(json.dumps({"queries": queries, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
