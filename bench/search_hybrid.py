"""Hybrid and meaning search latency at 1M scenes, beside text search, in one run.

Takes an archive that ``bench/search_latency.py --keep --workdir DIR --backends sqlite`` built
(or a PostgreSQL URL holding one), gives every scene a meaning vector, and times
``tvcaption.db.hybrid.search`` in text, meaning and hybrid mode on the same seeded queries,
interleaved (background load hits all modes alike), after an untimed first search that builds
the memory-mapped matrix (:mod:`tvcaption.db.vector_index`; its build time is reported).

The vectors: all-MiniLM-L6-v2 cannot embed a million captions on this machine in reasonable
time (~19 ms a scene), so each caption's vector is the normalised sum of vectors of its words,
drawn once per word from a 48-dimensional latent space plus noise (a spectrum like real sentence
embeddings': a few directions carry most of the variance). Queries are embedded by the real
model (timed: it is part of every hybrid search). ``overlap`` compares the two-stage ranking
(coarse scan + exact re-rank) with the exact scan on the same vectors: the share of the exact
top-100 that the two-stage top-100 holds, averaged over the queries.

Text and hybrid search rank a large archive's words from posting lists
(``tvcaption/db/text_index.py``, issue 15; ``first_text_search_s`` builds them; on SQLite and on
PostgreSQL, both ranking by bm25); ``text_sql`` and ``hybrid_sql`` are the same searches through
the SQL ranking (FTS5's bm25; PostgreSQL's bm25 in SQL: seconds a common word at 1M scenes, so
``--sql-queries N`` times only the first N queries that way), timed in the same loop, and
``ratio_sql`` compares them on those queries.

    python bench/search_hybrid.py --db bench/work/search-1000000-s0.db
    python bench/search_hybrid.py --db postgresql+psycopg://postgres@127.0.0.1:PORT/DB --sql-queries 30
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from corpus import Grammar  # noqa: E402
from search_queries import make_queries  # noqa: E402
from search_latency import sql_ranking  # noqa: E402
from search_report import load_average, machine, summary  # noqa: E402

MODEL = "all-MiniLM-L6-v2"
DIM, LATENT = 384, 48


def add_vectors(engine, seed: int = 0) -> float:
    """A vector per scene from its caption's words (module docstring); seconds taken."""
    from sqlalchemy import delete, insert, select, text

    from tvcaption.db.schema import RecordingVectors

    t = time.perf_counter()
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((LATENT, DIM)).astype(np.float32)
    words: dict[str, np.ndarray] = {}
    table = RecordingVectors.__table__
    with engine.begin() as conn:
        conn.execute(delete(table))
        recs = [r[0] for r in conn.execute(select(text("id")).select_from(text("recordings")).order_by(text("id")))]
        for rec in recs:
            rows = conn.execute(text("SELECT s.id, a.text FROM scenes s JOIN annotations a ON a.scene_id = s.id "
                                     "WHERE s.recording_id = :r AND a.kind = 'caption' ORDER BY s.id"), {"r": rec}).all()
            vectors = np.zeros((len(rows), DIM), np.float32)
            for i, (_, caption) in enumerate(rows):
                for w in caption.lower().split():
                    if w not in words:
                        words[w] = rng.standard_normal(LATENT).astype(np.float32) @ basis + \
                            0.5 * rng.standard_normal(DIM).astype(np.float32)
                    vectors[i] += words[w]
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            conn.execute(insert(table).values(recording_id=rec, model=MODEL, dim=DIM,
                                              scene_ids=np.array([r[0] for r in rows], "<i8").tobytes(),
                                              vectors=vectors.astype("<f4").tobytes()))
    return time.perf_counter() - t


def overlap(engine, queries, top: int = 100) -> float:
    """Mean share of the exact top ``top`` that the two-stage ranking finds."""
    from tvcaption.db import vector_index
    from tvcaption.embedding import embedder

    with engine.connect() as conn:
        found = vector_index.matrix(conn, MODEL)
    shares = []
    for _, q in queries:
        v = embedder().embed([q])[0]
        exact = set(found.ids[np.argsort(-(found.vectors @ v))[:top]].tolist())
        shares.append(len(exact & set(vector_index.nearest(found, v, top).ids.tolist())) / top)
    return float(np.mean(shares))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", required=True, help="SQLite file or database URL of a search_latency archive")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results" / "search_hybrid.json")
    p.add_argument("--keep-vectors", action="store_true", help="the archive already has them")
    p.add_argument("--sql-queries", type=int, default=1 << 30,
                   help="time only the first N queries through the SQL ranking too (default: all)")
    p.add_argument("--modes", default="text,meaning,hybrid",
                   help="comma-separated modes to time (e.g. text alone: no other mode's scan between its queries)")
    args = p.parse_args(argv)
    from tvcaption.db import vector_index
    from tvcaption.db.hybrid import search
    from tvcaption.db.store import connect

    url = args.db if "://" in args.db else f"sqlite:///{args.db}"
    engine = connect(url)
    report: dict = {"benchmark": "search_hybrid", "command": "python bench/search_hybrid.py " + " ".join(sys.argv[1:]),
                    "machine": machine()}
    if not args.keep_vectors:
        report["add_vectors_s"] = round(add_vectors(engine, args.seed), 1)
    grammar = Grammar(args.seed)
    queries = make_queries(grammar, args.queries, args.seed)
    t = time.perf_counter()
    search(engine, "warm up", mode="text")  # builds (or maps) the posting lists
    report["first_text_search_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    search(engine, "warm up", mode="meaning")  # builds (or maps) the matrix, loads the model
    report["first_meaning_search_s"] = round(time.perf_counter() - t, 2)
    with engine.connect() as conn:
        report["vectors"] = len(vector_index.matrix(conn, MODEL).ids)
    modes = set(args.modes.split(","))
    times: dict[str, list[float]] = {name: [] for name in ("text", "text_sql", "meaning", "hybrid", "hybrid_sql")
                                     if name.partition("_")[0] in modes}
    gc.collect()
    report["load_average_before"] = load_average()
    for i, (_, q) in enumerate(queries):
        for name in times:
            mode, _, sql = name.partition("_")
            if sql and i >= args.sql_queries:
                continue
            with sql_ranking() if sql else contextlib.nullcontext():
                t = time.perf_counter()
                search(engine, q, mode=mode)
                times[name].append((time.perf_counter() - t) * 1000)
    report["load_average_after"] = load_average()
    report["modes"] = {mode: summary(ms) for mode, ms in times.items() if ms}
    with_sql = [mode for mode in ("text", "hybrid") if times.get(f"{mode}_sql")]
    n_sql = min((len(times[f"{mode}_sql"]) for mode in with_sql), default=0)  # the lists' times on the same queries
    report["sql_queries"] = n_sql
    report["modes_on_sql_queries"] = {mode: summary(times[mode][:n_sql]) for mode in with_sql}
    report["ratio_sql"] = {f"{mode} {stat} sql/lists": round(report["modes"][f"{mode}_sql"][f"{stat}_ms"]
                                                              / report["modes_on_sql_queries"][mode][f"{stat}_ms"], 2)
                           for mode in with_sql for stat in ("median", "p95")}
    report["two_stage_overlap_top100"] = round(overlap(engine, queries[:50]), 4)
    engine.dispose()
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1))
    return report


if __name__ == "__main__":
    main()
