"""Search latency on a large archive: tvcaption's ranked full-text search against a LIKE scan.

Builds an archive of N captions (default 1,000,000: 2,000 recordings x 500 scenes, 1-3 tags per
scene) on each backend through the project's own schema code: the Alembic migrations run by
``tvcaption.db.migrate`` / ``tvcaption.db.store.connect``, so the FTS5 table (SQLite) and the
tsvector column with its GIN index (PostgreSQL) are the real ones. Captions are sentences from a
small grammar (subjects, verbs, objects, places, topics, times, camera shots, a few thousand
generated proper names and some rare words, Zipf-distributed) drawn with a seeded RNG, so every
run builds the same archive.

How the rows go in (``--fill``):

- ``backfill`` (default, fast): migrate to revision 0001 (plain tables), bulk-insert recordings,
  scenes, captions and tags (SQLite ``executemany``, PostgreSQL ``COPY``, one transaction per
  100 recordings), then migrate to head: revision 0002 creates the search index and fills it,
  and 0003 moves captions and tags into ``annotations`` and rebuilds the index over them, each
  with its own SQL (so ``index_s`` is what upgrading an old archive takes). The index holds
  exactly what the triggers would have written.
- ``triggers``: migrate to head first, then save one recording per transaction, its scenes and
  their annotations (a caption, then tags most probable first) with ``Store.save_result``, as
  ``tvcaption index`` does, so the index triggers fire for every row. Slower; it measures the
  indexing path rather than the search.

PostgreSQL gets ``VACUUM ANALYZE`` after the build (autovacuum would do it on a live server);
SQLite gets nothing (tvcaption never runs ANALYZE).

Queries: a fixed seeded set (``--queries``, default 200) of common words, rare words, two-word
phrases, other word forms (stemming: "danced" finds "dancing"), tag words, and strings with
quotes and FTS operators. Each goes through ``tvcaption.db.search.search`` (what ``tvcaption
search`` runs) with its default limit, after ``--warmup`` untimed queries of another seed; each
call is timed with ``time.perf_counter``. The baseline is the query's first word (stop words
and punctuation skipped) as a plain scan of the captions among the annotations:

- ``like_limit``: ``SELECT scene_id, text FROM annotations WHERE kind = 'caption' AND text LIKE
  '%word%' LIMIT <limit>``
  (unranked; it stops after <limit> matches, so it is fast for common words and scans the whole
  table for rare ones).
- ``like_all``: the same without LIMIT, every matching row fetched (always a full scan; the
  honest counterpart of a ranked search, which must look at every match to rank them).

PostgreSQL's LIKE is case-sensitive, so it uses ILIKE there (SQLite's LIKE ignores ASCII case).
The LIKE baseline sees captions only; search sees captions and tags.

Since issue 15, ``search`` ranks a large archive from posting lists
(``tvcaption/db/text_index.py``; ``first_search_s`` is the first search, which builds them; on
PostgreSQL too since both backends rank by bm25); every query (or the first ``--sql-queries``)
is also timed through the SQL ranking (``search_sql``: FTS5's bm25, PostgreSQL's bm25 in SQL),
in the same loop, and ``same_hits`` counts the queries where both gave the same hits in the
same order. ``--pg-url`` times an archive this script built before on a server kept running
(no build; ``--no-anatomy`` skips the untimed match counts and the slowest searches' breakdown,
which rank in SQL: minutes at 1M on PostgreSQL).

Results: ``--out`` (default ``bench/results/search_latency.json``) and a small table on stdout.
Per backend: build timings and database size, median / p95 / max of ``search``, ``like_limit``
and ``like_all``, their p95 ratios, search by query kind, ``search_cost`` (a least-squares fit
of search time against the number of matching scenes: ranking looks at every match), the
slowest searches (on SQLite with ``anatomy``: the FTS5 match alone and bm25 ranking on the
index alone beside the whole search, best of 3), and every query with its hits, total matches
and times. Machine: CPU, cores, load average (other processes share the cores), Python, SQLite
and PostgreSQL versions.
Target: search p95 < 20 ms on 1M captions in SQLite.

    python bench/search_latency.py                                    # 1M captions, both backends
    python bench/search_latency.py --captions 50000 --backends sqlite # a quick run

Beside it: ``corpus.py`` (the caption grammar), ``search_archive.py`` (the archive's rows and how
they go in), ``search_queries.py`` (the queries), ``search_anatomy.py`` (matches, cost fit and
the slow searches' breakdown), ``search_report.py`` (summaries, machine, table, JSON); the
PostgreSQL server is ``scripts/pgserver.py``'s.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scripts"))  # pgserver: the throwaway PostgreSQL server
sys.path.insert(0, str(HERE))

from corpus import Grammar  # noqa: E402
from search_anatomy import cost_fit, count_matches, slowest  # noqa: E402
from search_archive import build, database_bytes, generate, layout, server_settings, server_version  # noqa: E402
from search_queries import QUERY_MIX, like_word, make_queries  # noqa: E402
from search_report import dumps, load_average, machine, summary, table  # noqa: E402

DEFAULT_OUT = HERE / "results" / "search_latency.json"
TARGET_P95_MS = 20.0  # issue 5: search p95 under 20 ms on 1M captions in SQLite
BACKENDS = ("sqlite", "postgresql")
Queries = list[tuple[str, str]]  # (kind, query)


@dataclass
class Workload:
    """What every backend gets: the same archive (from ``grammar``) and the same queries."""

    grammar: Grammar
    queries: Queries
    warmup: Queries
    words: set[str] = field(default_factory=set)  # every caption word, filled while the archive is built


def search_limit() -> int:
    """``search``'s default limit: what ``tvcaption search`` shows."""
    import inspect

    from tvcaption.db.search import search

    return inspect.signature(search).parameters["limit"].default


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------
class Like:
    """The baseline: the captions holding a word, by a plain LIKE scan (ILIKE on PostgreSQL, whose
    LIKE is case-sensitive), the first ``limit`` of them or all."""

    def __init__(self, engine, limit: int) -> None:
        from sqlalchemy import text

        op = "ILIKE" if engine.dialect.name == "postgresql" else "LIKE"
        base = f"SELECT scene_id, text FROM annotations WHERE kind = 'caption' AND text {op} :pattern ESCAPE '\\'"
        self.engine, self.limited, self.all = engine, text(f"{base} LIMIT {int(limit)}"), text(base)

    def timed(self, stmt, word: str) -> tuple[float, int]:
        """Milliseconds and rows of one scan, connecting included (as ``search`` does)."""
        pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        t = time.perf_counter()
        with self.engine.connect() as conn:
            rows = conn.execute(stmt, {"pattern": pattern}).all()
        return (time.perf_counter() - t) * 1000.0, len(rows)

    def both(self, word: str) -> dict[str, Any]:
        limit_ms, limit_rows = self.timed(self.limited, word)
        all_ms, all_rows = self.timed(self.all, word)
        return {"like_limit_ms": round(limit_ms, 3), "like_limit_rows": limit_rows,
                "like_all_ms": round(all_ms, 3), "like_all_rows": all_rows}


@contextmanager
def sql_ranking():
    """``search`` with the posting lists off (:mod:`tvcaption.db.text_index`): FTS5's bm25 in SQL,
    the path before issue 15, timed in the same run for the ratio."""
    import tvcaption.db.search as text_search

    saved = text_search.INDEX_MIN_SCENES
    text_search.INDEX_MIN_SCENES = 1 << 62
    try:
        yield
    finally:
        text_search.INDEX_MIN_SCENES = saved


def first_search(engine) -> float:
    """Seconds of the first search: on an archive ranked from posting lists it builds (or maps) them."""
    from tvcaption.db.search import search

    t = time.perf_counter()
    search(engine, "warm up")
    return time.perf_counter() - t


def time_queries(engine, queries: Queries, warmup: Queries, limit: int, progress: bool,
                 sql_queries: int = 1 << 30) -> list[dict[str, Any]]:
    """Each query through ``search``, through its SQL ranking (``sql_ranking``; the first
    ``sql_queries`` only) and, for its first word, both LIKE scans, interleaved (so that
    background load hits all alike), after the untimed ``warmup``. ``same_hits``: both rankings
    gave the same scenes in the same order with the same scores."""
    from tvcaption.db.search import search

    like = Like(engine, limit)
    for i, (_kind, q) in enumerate(warmup):
        search(engine, q)
        if i < sql_queries:
            with sql_ranking():
                search(engine, q)
        word = like_word(q)
        if word:
            like.both(word)
    records = []
    gc.collect()
    started = time.perf_counter()
    for i, (kind, q) in enumerate(queries):
        t = time.perf_counter()
        hits = search(engine, q)
        search_ms = (time.perf_counter() - t) * 1000.0
        record = {"query": q, "kind": kind, "hits": len(hits), "search_ms": round(search_ms, 3)}
        if i < sql_queries:
            with sql_ranking():
                t = time.perf_counter()
                sql_hits = search(engine, q)
                sql_ms = (time.perf_counter() - t) * 1000.0
            record.update(search_sql_ms=round(sql_ms, 3), same_hits=[(h.recording, h.start, h.score) for h in hits]
                          == [(h.recording, h.start, h.score) for h in sql_hits])
        word = like_word(q)
        records.append({**record, "like_word": word, **(like.both(word) if word else {})})
        if progress and (i + 1) % 50 == 0:
            print(f"  {engine.dialect.name}: {i + 1}/{len(queries)} queries ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr, flush=True)
    return records


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Median / p95 / max of each method, their p95 ratios, search by query kind and its cost fit."""
    out: dict[str, Any] = {
        "search": summary([r["search_ms"] for r in records]),
        "like_limit": summary([r["like_limit_ms"] for r in records if "like_limit_ms" in r]),
        "like_all": summary([r["like_all_ms"] for r in records if "like_all_ms" in r]),
    }
    out["ratio_p95"] = {
        "like_limit/search": round(out["like_limit"]["p95_ms"] / out["search"]["p95_ms"], 2),
        "like_all/search": round(out["like_all"]["p95_ms"] / out["search"]["p95_ms"], 2),
    }
    with_sql = [r for r in records if "search_sql_ms" in r]
    if with_sql:
        out["search_sql"] = summary([r["search_sql_ms"] for r in with_sql])
        lists = summary([r["search_ms"] for r in with_sql])  # the same queries through the lists
        out["search_on_sql_queries"] = lists
        out["ratio_sql"] = {"p95 search_sql/search": round(out["search_sql"]["p95_ms"] / lists["p95_ms"], 2),
                            "median search_sql/search": round(out["search_sql"]["median_ms"] / lists["median_ms"], 2)}
        out["same_hits"] = sum(r["same_hits"] for r in with_sql)
        out["sql_queries"] = len(with_sql)
    out["search_by_kind"] = {kind: summary([r["search_ms"] for r in records if r["kind"] == kind])
                             for kind, _ in QUERY_MIX if any(r["kind"] == kind for r in records)}
    out["search_cost"] = cost_fit(records, TARGET_P95_MS)
    return out


def bench_backend(url: str, args: argparse.Namespace, work: Workload) -> dict[str, Any]:
    """Build the archive at ``url``, describe it, time the queries, then explain them (untimed)."""
    from sqlalchemy.engine import make_url

    from tvcaption.db.store import connect

    backend, limit, progress = make_url(url).get_backend_name(), search_limit(), not args.quiet
    if progress:
        print(f"{backend}: " + (f"timing the archive at {url}" if args.pg_url and backend == "postgresql"
                                else f"building {args.captions:,} captions ({args.fill})"), file=sys.stderr, flush=True)
    if args.pg_url and backend == "postgresql":  # built before (module docstring): no build
        times = {"build_s": 0.0, "reused": True}  # built by an earlier run
        for _ in generate(work.grammar, args.captions, args.seed, work.words):
            pass  # the words of the archive, as a build collects them
    else:
        times = build(url, generate(work.grammar, args.captions, args.seed, work.words), args.fill)
    engine = connect(url)  # migrated: a no-op check, as every tvcaption command opens it
    try:
        result: dict[str, Any] = {"server_version": server_version(engine), "settings": server_settings(engine),
                                  "build": times, "build_s": times["build_s"], "bytes": database_bytes(engine)}
        result["size_mb"] = round(result["bytes"]["database"] / 1e6, 1)
        if progress:
            print(f"{backend}: built in {times['build_s']:.1f} s, {result['size_mb']} MB; "
                  f"running {len(work.queries)} queries", file=sys.stderr, flush=True)
        result["limit"] = limit
        result["load_average_before_queries"] = load_average()
        result["first_search_s"] = round(first_search(engine), 2)
        records = time_queries(engine, work.queries, work.warmup, limit, progress, args.sql_queries)
        result["load_average_after_queries"] = load_average()
        if not args.no_anatomy:
            for rec in records:  # untimed, after the timing: how many scenes each query matches in all
                rec["matches"] = count_matches(engine, rec["query"])
        result.update(summarise(records))
        if not args.no_anatomy:
            result["slowest_searches"] = slowest(engine, records, limit)  # with the anatomy of each (SQLite)
        result["queries"] = records
    finally:
        engine.dispose()
    if backend == "sqlite":  # the closed database's size (the WAL checkpointed into the file)
        result["bytes"] = database_bytes(engine)
        result["size_mb"] = round(result["bytes"]["database"] / 1e6, 1)
    return result


# --------------------------------------------------------------------------------------------
# Backends and the run
# --------------------------------------------------------------------------------------------
def bench_sqlite(args: argparse.Namespace, work: Workload, workdir: Path) -> dict[str, Any]:
    db = workdir / f"search-{args.captions}-s{args.seed}.db"
    files = (db, Path(f"{db}-wal"), Path(f"{db}-shm"))
    for p in files:
        p.unlink(missing_ok=True)
    try:
        return bench_backend(f"sqlite:///{db}", args, work)
    finally:
        if not args.keep:
            for p in files:
                p.unlink(missing_ok=True)


def bench_postgresql(args: argparse.Namespace, work: Workload) -> dict[str, Any]:
    """On a throwaway server of our own (scripts/pgserver.py), or skipped with the reason."""
    from pgserver import PG_BIN_ENV, LocalServer, find_pg_bin

    if args.pg_url:
        return bench_backend(args.pg_url, args, work)
    bindir = find_pg_bin()
    if bindir is None:
        reason = f"PostgreSQL server binaries (initdb, pg_ctl) not found; install PostgreSQL or set {PG_BIN_ENV}"
        print(f"postgresql: skipped: {reason}", file=sys.stderr)
        return {"skipped": reason}
    server = LocalServer(bindir, settings="-c max_wal_size=4GB", prefix="tvcaption-bench-pg-")
    try:
        server.start()
        return bench_backend(server.url(), args, work)
    finally:
        server.stop("fast")


def run_backends(args: argparse.Namespace, work: Workload) -> dict[str, Any]:
    results: dict[str, Any] = {}
    own_workdir = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="tvcaption-bench-")) if own_workdir else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for backend in args.backends:
            results[backend] = (bench_sqlite(args, work, workdir) if backend == "sqlite"
                                else bench_postgresql(args, work))
    finally:
        if own_workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif own_workdir:
            print(f"kept: {workdir}", file=sys.stderr)
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--captions", type=int, default=1_000_000, help="captions (= scenes) in the archive")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated: sqlite,postgresql")
    p.add_argument("--queries", type=int, default=200, help="timed queries per backend")
    p.add_argument("--warmup", type=int, default=20, help="untimed queries (another seed) first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fill", choices=("backfill", "triggers"), default="backfill",
                   help="how the rows go in (see the module docstring)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    p.add_argument("--workdir", type=Path, default=None,
                   help="folder for the SQLite database (default: a temporary folder, deleted)")
    p.add_argument("--keep", action="store_true", help="keep the SQLite database in --workdir")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--pg-url", default=None,
                   help="PostgreSQL: a database holding an archive this script built before (same --captions "
                        "and --seed); it is timed, not built")
    p.add_argument("--sql-queries", type=int, default=1 << 30,
                   help="time only the first N queries through the SQL ranking too (default: all)")
    p.add_argument("--no-anatomy", action="store_true",
                   help="skip the untimed match counts and the slowest searches' breakdown")
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in args.backends:
        if b not in BACKENDS:
            p.error(f"--backends: unknown backend {b!r} (choose from {', '.join(BACKENDS)})")
    if args.captions < 1 or args.queries < 1:
        p.error("--captions and --queries must be positive")
    return args


def new_report(args: argparse.Namespace, argv: Sequence[str] | None, queries: Queries) -> dict[str, Any]:
    recordings, per = layout(args.captions)
    return {
        "benchmark": "search_latency",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/search_latency.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "config": {"captions": args.captions, "recordings": recordings, "scenes_per_recording": per,
                   "queries": args.queries, "warmup": args.warmup, "seed": args.seed, "fill": args.fill,
                   "limit": search_limit(),
                   "query_mix": {k: sum(1 for kind, _ in queries if kind == k) for k, _ in QUERY_MIX}},
        "machine": machine(),
        "target": {"backend": "sqlite", "p95_ms": TARGET_P95_MS, "captions": 1_000_000},
        "backends": {},
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    grammar = Grammar(args.seed)
    queries = make_queries(grammar, args.queries, args.seed)
    warmup = make_queries(grammar, args.warmup, args.seed + 1) if args.warmup else []
    report = new_report(args, argv, queries)
    work = Workload(grammar, queries, warmup)
    report["backends"] = run_backends(args, work)
    first = next(generate(grammar, min(args.captions, 8), args.seed))
    report["dataset"] = {"distinct_words": len(work.words), "grammar_vocabulary": len(grammar.vocabulary()),
                         "examples": [c[2] for c in first.captions]}
    report["machine"]["load_average_at_end"] = load_average()
    sqlite_result = report["backends"].get("sqlite")
    if sqlite_result and "search" in sqlite_result:
        p95 = sqlite_result["search"]["p95_ms"]
        report["target"].update(measured_p95_ms=p95, at_1m=args.captions >= 1_000_000, met=p95 < TARGET_P95_MS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps(report) + "\n")
    if not args.quiet:
        print(table(report))
    return report


if __name__ == "__main__":
    main()
