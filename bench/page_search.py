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

The code's own account of the page (its ``Server-Timing`` header: search, locating the hits'
scenes, the rest), where it sends one, is summarised as ``in_page``. The first page (the model,
templates and search's files loaded; after ``warm_up``, as ``tvcaption serve`` does at start,
where the code has it) is timed once, before the warm-up queries.

Beside those, the query's embedding alone (``embedder().embed([query])``, as hybrid search calls
it, with OpenBLAS on one thread as search sets it) is timed for every query: ``embedding``.

``--no-working-tree`` leaves the working tree out (only revisions: others' uncommitted edits
then change nothing). ``--db FILE`` keeps the archive (built when missing, reused when its ``FILE.json`` says it was
built with the same ``--scenes`` and ``--seed``); each measurement runs on a fresh copy of it, in
its own Python process. ``--compare REV`` measures the code of git revision REV first (its
``tvcaption/`` and ``migrations/``, extracted with ``git archive`` under bench/work/), then the
working tree's, on the same archive, back to back: a before and after on one machine at one load.
The archive is then built by REV's code (a newer tree migrates its copy forward).

Results: ``--out`` (default ``bench/results/page_search.json``): machine, build, per measurement
median / p95 / max of the page and of the search alone, the slowest pages, every query, the
load average before and after each code tree's run.
Target (issue 16): page p95 under 150 ms on 100,000 scenes on this CPU.

    python bench/page_search.py                         # 100,000 scenes, 200 queries
    python bench/page_search.py --scenes 20000 --queries 40 --out bench/work/page.json   # a quick run
    python bench/page_search.py --db bench/work/page/archive.db --compare 3de8333   # before/after
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
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
from search_archive import build, generate, layout  # noqa: E402
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


def forget_queries() -> None:
    """Drop the embedder's remembered query vectors, where the code has any, so that every timed
    page and search embeds its query (a reader paging through results would not)."""
    from tvcaption.embedding import embedder

    forget = getattr(embedder(), "forget", None)
    if forget is not None:
        forget()


def time_pages(client: Any, engine: Any, queries: list[tuple[str, str]], mode: str, page: int) -> list[dict[str, Any]]:
    """Each query's page (ms, results shown) and the search alone with the page's limit (ms)."""
    from tvcaption.db.hybrid import search

    records = []
    for kind, query in queries:
        forget_queries()
        t = time.perf_counter()
        reply = client.get("/", params={"q": query, "mode": mode, "page": page})
        page_ms = (time.perf_counter() - t) * 1000.0
        if reply.status_code != 200:
            raise SystemExit(f"{query!r}: the page answered {reply.status_code}: {reply.text[:200]}")
        forget_queries()
        t = time.perf_counter()
        hits = search(engine, query, limit=page * PER_PAGE + 1, mode=mode)
        search_ms = (time.perf_counter() - t) * 1000.0
        records.append({"kind": kind, "query": query, "page_ms": round(page_ms, 3), "search_ms": round(search_ms, 3),
                        "results": reply.text.count('class="result"'), "hits": len(hits),
                        **({"server": server} if (server := server_timing(reply)) else {})})
    return records


def server_timing(reply: Any) -> dict[str, float]:
    """The page's own ``Server-Timing`` parts in ms (search, locate, rest), where the code sends them."""
    parts = {}
    for item in reply.headers.get("server-timing", "").split(","):
        name, _, duration = item.strip().partition(";dur=")
        if duration:
            parts[name] = float(duration)
    return parts


def time_embedding(queries: list[tuple[str, str]]) -> dict[str, Any]:
    """The query's embedding alone, as hybrid search makes it (one BLAS thread), per query."""
    import numpy as np

    from tvcaption.db.vector_index import one_blas_thread
    from tvcaption.embedding import embedder

    one_blas_thread()
    model = embedder()
    ms = []
    for _, query in queries:
        forget_queries()
        t = time.perf_counter()
        vector = model.embed([query])[0]
        ms.append((time.perf_counter() - t) * 1000.0)
        assert vector.shape == (model.dim,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-4
    return summary(ms)


def measure(url: str, args: argparse.Namespace, queries: list[tuple[str, str]],
            warmup: list[tuple[str, str]]) -> dict[str, Any]:
    from starlette.testclient import TestClient

    from tvcaption.db.store import connect
    from tvcaption.web.app import create_app

    engine = connect(url)
    cache = Path(url.removeprefix("sqlite:///")).parent / "app-cache"  # thumbnails (none are asked for)
    client = TestClient(create_app(engine, cache_dir=cache, allowed_hosts={"testserver"}, per_page=PER_PAGE),
                        raise_server_exceptions=True)
    # entered: one event loop (the test client's portal thread) for every request, as uvicorn
    # runs the app; outside a with block the client starts a thread and a loop per request
    client.__enter__()
    runs = {"hybrid p1": ("hybrid", 1, queries), "text p1": ("text", 1, queries),
            "hybrid p3": ("hybrid", 3, queries[:max(1, len(queries) // 4)])}
    out: dict[str, Any] = {}
    try:
        from tvcaption.web import app as web

        if hasattr(web, "warm_up"):  # what tvcaption serve does at start, in the background
            out["warm_up_s"] = round(web.warm_up(client.app.settings), 3)
        t = time.perf_counter()
        client.get("/", params={"q": (warmup or queries)[0][1]})
        out["first_page_ms"] = round((time.perf_counter() - t) * 1000.0, 1)  # after warm_up where there is one
        for mode in ("hybrid", "text"):
            time_pages(client, engine, warmup, mode, 1)  # untimed: the model loaded, caches warm
        for name, (mode, page, chosen) in runs.items():
            if not args.quiet:
                print(f"{name}: {len(chosen)} queries", file=sys.stderr, flush=True)
            records = time_pages(client, engine, chosen, mode, page)
            out[name] = {"mode": mode, "page_number": page, "page": summary([r["page_ms"] for r in records]),
                         "search_alone": summary([r["search_ms"] for r in records]),
                         # the page's parts as it timed them itself (Server-Timing), where it does
                         "in_page": {part: summary([r["server"][part] for r in records])
                                     for part in records[0].get("server", {})},
                         "empty_pages": sum(r["results"] == 0 for r in records),
                         "slowest": sorted(records, key=lambda r: -r["page_ms"])[:5], "queries": records}
        out["embedding"] = time_embedding(queries)
    finally:
        client.__exit__(None, None, None)
        engine.dispose()
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=100_000, help="scenes (one caption each) in the archive")
    p.add_argument("--queries", type=int, default=200, help="timed queries per measurement")
    p.add_argument("--warmup", type=int, default=20, help="untimed queries (another seed) first, per mode")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--db", type=Path, help="the archive's SQLite file: built when missing, else reused "
                                           "(default: a temporary one)")
    p.add_argument("--compare", metavar="REV", action="append", default=[],
                   help="measure git revision REV's code (repeatable), then the working tree's")
    p.add_argument("--rounds", type=int, default=1, help="measure every tree this many times, the order "
                                                        "reversed each round (A B, B A: load drift shows)")
    p.add_argument("--no-working-tree", action="store_true",
                   help="measure only the --compare revisions (others' uncommitted edits left out)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--stage", choices=("build", "measure"), help=argparse.SUPPRESS)  # a child process's part
    args = p.parse_args(argv)
    if args.scenes < 1 or args.queries < 1:
        p.error("--scenes and --queries must be positive")
    if args.rounds < 1:
        p.error("--rounds must be positive")
    if args.no_working_tree and not args.compare:
        p.error("--no-working-tree needs --compare REV")
    return args


def table(report: dict[str, Any]) -> str:
    lines = [(f"{report['config']['scenes']:,} scenes, SQLite; times in ms (page: the whole GET; search: the "
              "function alone)")]
    for label, run in report["runs"].items():
        lines.append(f"{label} (load {run['load_average_before']} -> {run['load_average_after']})")
        lines.append(f"  {'':<11} {'page median':>11} {'page p95':>9} {'page max':>9} {'search med':>11} {'search p95':>11}")
        for name, r in run["results"].items():
            if not isinstance(r, dict) or "page" not in r:
                continue
            lines.append(f"  {name:<11} {r['page']['median_ms']:>11.1f} {r['page']['p95_ms']:>9.1f} "
                         f"{r['page']['max_ms']:>9.1f} {r['search_alone']['median_ms']:>11.1f} "
                         f"{r['search_alone']['p95_ms']:>11.1f}")
        for name, r in run["results"].items():
            if isinstance(r, dict) and r.get("in_page"):
                lines.append(f"  {name:<11} in the page (median / p95): " + ", ".join(
                    f"{part} {v['median_ms']:.1f} / {v['p95_ms']:.1f}" for part, v in r["in_page"].items()))
        e = run["results"]["embedding"]
        lines.append(f"  query embedding: median {e['median_ms']:.1f}, p95 {e['p95_ms']:.1f}, max {e['max_ms']:.1f}; "
                     f"first page {run['results']['first_page_ms']} ms"
                     + (f" after warm_up {run['results']['warm_up_s']} s" if "warm_up_s" in run["results"] else ""))
    target = report["target"]
    lines.append(f"target: page p95 < {target['p95_ms']:g} ms: {'met' if target['met'] else 'NOT met'} "
                 f"(worst p95 {target['measured_p95_ms']} ms, {target['worst']}, {target['run']})")
    return "\n".join(lines)


def code_tree(rev: str) -> tuple[str, Path]:
    """(short commit, folder) holding REV's ``tvcaption/`` and ``migrations/`` (extracted once)."""
    root = HERE.parent
    commit = subprocess.run(["git", "rev-parse", "--short", rev + "^{commit}"], cwd=root, capture_output=True,
                            text=True, check=False)
    if commit.returncode != 0:
        raise SystemExit(f"--compare {rev}: not a git revision here ({commit.stderr.strip()})")
    short = commit.stdout.strip()
    folder = HERE / "work" / f"code-{short}"
    if not (folder / "tvcaption" / "__init__.py").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", short, "tvcaption", "migrations"], cwd=root,
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return short, folder


def child(stage: str, args: argparse.Namespace, db: Path, code: Path | None, out: Path) -> dict[str, Any]:
    """Run one stage in a fresh Python process whose ``tvcaption`` comes from ``code`` (None: this tree)."""
    env = dict(os.environ, XDG_CACHE_HOME=str(db.parent / "cache"))
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", stage, "--db", str(db), "--out", str(out),
           "--scenes", str(args.scenes), "--queries", str(args.queries), "--warmup", str(args.warmup),
           "--seed", str(args.seed)] + (["--quiet"] if args.quiet else [])
    subprocess.run(cmd, env=env, check=True)
    return json.loads(out.read_text())


def stage(args: argparse.Namespace) -> None:
    """A child's part: ``build`` the archive at ``--db``, or ``measure`` the pages on it; JSON to ``--out``."""
    import tvcaption

    url = f"sqlite:///{args.db}"
    grammar = Grammar(args.seed)
    if args.stage == "build":
        result = {"build": build(url, generate(grammar, args.scenes, args.seed), "backfill"),
                  "vectors": add_vectors(url, grammar, args.scenes, args.seed)}
    else:
        queries = make_queries(grammar, args.queries, args.seed)
        warmup = make_queries(grammar, args.warmup, args.seed + 1) if args.warmup else []
        before = load_average()
        results = measure(url, args, queries, warmup)
        result = {"load_average_before": before, "load_average_after": load_average(), "results": results}
    result["code"] = str(Path(tvcaption.__file__).resolve().parent)
    args.out.write_text(json.dumps(result))


def archive(args: argparse.Namespace, work: Path, code: Path | None) -> tuple[Path, dict[str, Any]]:
    """The archive's file (built by ``code`` unless ``--db`` names one built with the same settings)."""
    db = (args.db or work / "archive.db").resolve()
    made = db.with_name(db.name + ".json")
    wanted = {"scenes": args.scenes, "seed": args.seed}
    if db.is_file() and made.is_file() and json.loads(made.read_text()).get("config") == wanted:
        return db, json.loads(made.read_text())
    for stale in (db, made, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)
    db.parent.mkdir(parents=True, exist_ok=True)
    if not args.quiet:
        print(f"building {args.scenes:,} scenes in {db}", file=sys.stderr, flush=True)
    built = child("build", args, db, code, db.with_name(db.name + ".build.json"))
    built["config"] = wanted
    made.write_text(json.dumps(built))
    return db, built


def slim(report: dict[str, Any], final: str) -> None:
    """Every query's record kept for the newest code's runs only (the others keep their summaries
    and slowest pages): six runs' records made a 430 kB file."""
    for run in report["runs"].values():
        if run["code"] != final:
            for result in run["results"].values():
                if isinstance(result, dict):
                    result.pop("queries", None)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.stage:
        stage(args)
        return {}
    recordings, per = layout(args.scenes)
    report: dict[str, Any] = {
        "benchmark": "page_search", "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/page_search.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "config": {"scenes": args.scenes, "recordings": recordings, "scenes_per_recording": per,
                   "queries": args.queries, "warmup": args.warmup, "seed": args.seed, "per_page": PER_PAGE},
        "machine": machine(),
    }
    trees: list[tuple[str, Path | None]] = [code_tree(rev) for rev in args.compare]
    if not args.no_working_tree:
        trees.append(("working tree", None))
    with tempfile.TemporaryDirectory(prefix="tvcaption-page-bench-") as temp:
        db, built = archive(args, Path(temp), trees[0][1])
        report["build"], report["vectors"] = built["build"], built["vectors"]
        report["runs"] = {}
        for round_ in range(1, args.rounds + 1):
            for label, code in (trees if round_ % 2 else trees[::-1]):
                name = label if round_ == 1 else f"{label} #{round_}"
                # a fresh copy per run: each starts from the same file (a newer tree may migrate it)
                run_dir = Path(temp) / name.replace(" ", "-").replace("#", "")
                run_dir.mkdir()
                copy = run_dir / db.name
                shutil.copyfile(db, copy)
                if not args.quiet:
                    print(f"measuring the code of {name}", file=sys.stderr, flush=True)
                report["runs"][name] = dict(child("measure", args, copy, code, run_dir / "result.json"), code=label)
        report["size_mb"] = round(db.stat().st_size / 1e6, 1)
    report["machine"]["load_average_at_end"] = load_average()
    final = trees[-1][0]  # the newest code: the target is its worst p95 over its runs and pages
    p95, worst, run = max((r["results"][k]["page"]["p95_ms"], k, name) for name, r in report["runs"].items()
                          if r["code"] == final for k, v in r["results"].items() if isinstance(v, dict) and "page" in v)
    report["target"] = {"p95_ms": TARGET_P95_MS, "scenes": 100_000, "measured_p95_ms": p95, "worst": worst,
                        "run": run, "at_100k": args.scenes >= 100_000, "met": p95 < TARGET_P95_MS}
    slim(report, final)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps(report) + "\n")
    if not args.quiet:
        print(table(report))
    return report


if __name__ == "__main__":
    main()
