"""Search page latency of the review app (``tvcaption serve``) on a 100,000-scene archive.

The archive is bench/search_latency.py's (``search_archive.build``: the project's own migrations,
200 recordings x 500 scenes of grammar captions with 1-3 tags each, SQLite), plus a meaning
vector per scene, as the default analysers store them: all-MiniLM-L6-v2's embedding of the scene's
first tag (:func:`add_vectors`; the meaning analyser embeds caption, tags and text together, which
for 100,000 scenes would take minutes; what hybrid search costs is the scan of every vector
either way). The query is embedded by the same model, in numpy, as ``tvcaption search`` does.

Each query GETs the search page through the app in-process (Starlette's TestClient: routing, the
search, the scene lookups, the Jinja2 template, the response; no socket), timed with
``time.perf_counter`` around the request, after ``--warmup`` untimed queries of another seed:

- ``hybrid p1``: mode hybrid (the page's default), page 1 (20 results), every query;
- ``text p1``: mode text, page 1, every query;
- ``hybrid p3``: mode hybrid, page 3 (the page asks for 61 hits), the first quarter of the queries.

Beside each page, the search function alone (``tvcaption.db.hybrid.search`` with the page's
limit) is timed on the same query, so the page's own cost (scene lookups, template) shows.
Queries: bench/search_queries.py's seeded mix (common and rare words, phrases, other word forms,
tag words, operators and quotes).

Results: ``--out`` (default ``bench/results/page_search.json``): machine, build, per measurement
median / p95 / max of the page and of the search alone, the slowest pages, every query.
Target (issue 16): page p95 under 150 ms on 100,000 scenes on this CPU.

    python bench/page_search.py                         # 100,000 scenes, 200 queries
    python bench/page_search.py --scenes 20000 --queries 40 --out bench/work/page.json   # a quick run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from corpus import Grammar  # noqa: E402
from search_archive import build, database_bytes, generate, layout  # noqa: E402
from search_queries import make_queries  # noqa: E402
from search_report import dumps, load_average, machine, summary  # noqa: E402

DEFAULT_OUT = HERE / "results" / "page_search.json"
TARGET_P95_MS = 150.0  # issue 16: page search p95 under 150 ms on a 100k-scene database
PER_PAGE = 20  # the app's default


def add_vectors(url: str, grammar: Grammar, scenes: int, seed: int) -> dict[str, Any]:
    """One meaning vector per scene, one ``recording_vectors`` row per recording (as the store
    writes them): the real model's embedding of the scene's first tag (the archive's rows made
    again from the same seed; a few hundred distinct labels, so it takes seconds, where embedding
    every caption would take minutes; similar scenes get similar vectors, so meaning finds them)."""
    import numpy as np
    from sqlalchemy import insert

    from tvcaption.db.store import connect
    from tvcaption.db.vectors import vectors_t
    from tvcaption.embedding import embedder

    model = embedder()
    t = time.perf_counter()
    cache: dict[str, np.ndarray] = {}
    engine = connect(url)
    count = 0
    with engine.begin() as conn:
        for chunk in generate(grammar, scenes, seed):
            first_tag: dict[int, str] = {}
            for _, scene_id, label, _ in chunk.tags:
                first_tag.setdefault(scene_id, label)
            missing = sorted({label for label in first_tag.values() if label not in cache})
            if missing:
                cache.update(zip(missing, model.embed(missing).astype("<f4")))
            by_recording: dict[int, list[int]] = {}
            for scene_id, recording_id, *_ in chunk.scenes:
                by_recording.setdefault(recording_id, []).append(scene_id)
            for recording_id, ids in by_recording.items():
                vectors = np.stack([cache[first_tag[i]] for i in ids]).astype("<f4")
                conn.execute(insert(vectors_t).values(
                    recording_id=recording_id, model=model.name, dim=vectors.shape[1],
                    scene_ids=np.array(ids, "<i8").tobytes(), vectors=vectors.tobytes()))
                count += len(ids)
    engine.dispose()
    return {"model": model.name, "vectors": count, "distinct_texts": len(cache),
            "seconds": round(time.perf_counter() - t, 2)}


def time_pages(client: Any, engine: Any, queries: list[tuple[str, str]], mode: str, page: int) -> list[dict[str, Any]]:
    """Each query's page (ms, results shown) and the search alone with the page's limit (ms)."""
    from tvcaption.db.hybrid import search

    records = []
    for kind, query in queries:
        t = time.perf_counter()
        reply = client.get("/", params={"q": query, "mode": mode, "page": page})
        page_ms = (time.perf_counter() - t) * 1000.0
        if reply.status_code != 200:
            raise SystemExit(f"{query!r}: the page answered {reply.status_code}: {reply.text[:200]}")
        t = time.perf_counter()
        hits = search(engine, query, limit=page * PER_PAGE + 1, mode=mode)
        search_ms = (time.perf_counter() - t) * 1000.0
        records.append({"kind": kind, "query": query, "page_ms": round(page_ms, 3), "search_ms": round(search_ms, 3),
                        "results": reply.text.count('class="result"'), "hits": len(hits)})
    return records


def measure(url: str, args: argparse.Namespace, queries: list[tuple[str, str]],
            warmup: list[tuple[str, str]]) -> dict[str, Any]:
    from starlette.testclient import TestClient

    from tvcaption.db.store import connect
    from tvcaption.web.app import create_app

    engine = connect(url)
    cache = Path(url.removeprefix("sqlite:///")).parent / "app-cache"  # thumbnails (none are asked for)
    client = TestClient(create_app(engine, cache_dir=cache, allowed_hosts={"testserver"}, per_page=PER_PAGE),
                        raise_server_exceptions=True)
    runs = {"hybrid p1": ("hybrid", 1, queries), "text p1": ("text", 1, queries),
            "hybrid p3": ("hybrid", 3, queries[:max(1, len(queries) // 4)])}
    out: dict[str, Any] = {}
    try:
        for mode in ("hybrid", "text"):
            time_pages(client, engine, warmup, mode, 1)  # untimed: the model loaded, caches warm
        for name, (mode, page, chosen) in runs.items():
            if not args.quiet:
                print(f"{name}: {len(chosen)} queries", file=sys.stderr, flush=True)
            records = time_pages(client, engine, chosen, mode, page)
            out[name] = {"mode": mode, "page_number": page, "page": summary([r["page_ms"] for r in records]),
                         "search_alone": summary([r["search_ms"] for r in records]),
                         "empty_pages": sum(r["results"] == 0 for r in records),
                         "slowest": sorted(records, key=lambda r: -r["page_ms"])[:5], "queries": records}
    finally:
        client.close()
        engine.dispose()
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=100_000, help="scenes (one caption each) in the archive")
    p.add_argument("--queries", type=int, default=200, help="timed queries per measurement")
    p.add_argument("--warmup", type=int, default=20, help="untimed queries (another seed) first, per mode")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    if args.scenes < 1 or args.queries < 1:
        p.error("--scenes and --queries must be positive")
    return args


def table(report: dict[str, Any]) -> str:
    lines = [(f"{report['config']['scenes']:,} scenes, SQLite; times in ms (page: the whole GET; search: the "
              "function alone)"), f"{'':<11} {'page median':>11} {'page p95':>9} {'page max':>9} {'search p95':>11}"]
    for name, r in report["results"].items():
        lines.append(f"{name:<11} {r['page']['median_ms']:>11.1f} {r['page']['p95_ms']:>9.1f} "
                     f"{r['page']['max_ms']:>9.1f} {r['search_alone']['p95_ms']:>11.1f}")
    target = report["target"]
    lines.append(f"target: page p95 < {target['p95_ms']:g} ms: {'met' if target['met'] else 'NOT met'} "
                 f"(worst p95 {target['measured_p95_ms']} ms, {target['worst']})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    grammar = Grammar(args.seed)
    queries = make_queries(grammar, args.queries, args.seed)
    warmup = make_queries(grammar, args.warmup, args.seed + 1) if args.warmup else []
    recordings, per = layout(args.scenes)
    report: dict[str, Any] = {
        "benchmark": "page_search", "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/page_search.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "config": {"scenes": args.scenes, "recordings": recordings, "scenes_per_recording": per,
                   "queries": args.queries, "warmup": args.warmup, "seed": args.seed, "per_page": PER_PAGE},
        "machine": machine(),
    }
    with tempfile.TemporaryDirectory(prefix="tvcaption-page-bench-") as work:
        # search's caches (the meaning vectors' matrix file) go with the archive, not into the user's folder
        os.environ["XDG_CACHE_HOME"] = str(Path(work) / "cache")
        url = f"sqlite:///{Path(work) / 'archive.db'}"
        if not args.quiet:
            print(f"building {args.scenes:,} scenes", file=sys.stderr, flush=True)
        report["build"] = build(url, generate(grammar, args.scenes, args.seed), "backfill")
        report["vectors"] = add_vectors(url, grammar, args.scenes, args.seed)
        report["load_average_before_queries"] = load_average()
        report["results"] = measure(url, args, queries, warmup)
        from tvcaption.db.store import connect

        engine = connect(url)
        report["size_mb"] = round(database_bytes(engine)["database"] / 1e6, 1)
        engine.dispose()
    report["machine"]["load_average_at_end"] = load_average()
    worst = max(report["results"], key=lambda k: report["results"][k]["page"]["p95_ms"])
    p95 = report["results"][worst]["page"]["p95_ms"]
    report["target"] = {"p95_ms": TARGET_P95_MS, "scenes": 100_000, "measured_p95_ms": p95, "worst": worst,
                        "at_100k": args.scenes >= 100_000, "met": p95 < TARGET_P95_MS}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps(report) + "\n")
    if not args.quiet:
        print(table(report))
    return report


if __name__ == "__main__":
    main()
