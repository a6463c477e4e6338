"""Why a search is slow (bench/search_latency.py), measured after the timed queries.

Ranked search must score every scene that matches before it keeps the best ``limit``, so its
time grows with the number of matches: :func:`count_matches` counts them, :func:`cost_fit` fits
search time against that count, and :func:`anatomy` splits one slow SQLite search into the FTS5
match alone, bm25 ranking on the index alone, and the whole search.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def count_matches(engine, query: str) -> int:
    """How many scenes the query matches (all of them, not just the first page); untimed."""
    from sqlalchemy import func, select

    from tvcaption.db.search import build_search

    stmt = build_search(engine.dialect.name, query, limit=1)
    if stmt is None:
        return 0
    stmt = stmt.order_by(None).limit(None)
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(stmt.subquery())).scalar()


def cost_fit(records: list[dict[str, Any]], target_ms: float) -> dict[str, Any] | None:
    """Least-squares search_ms = fixed + per_match * matches over queries matching 1,000+ scenes:
    what one more matching scene costs (ranking looks at every match), and how many matches fit
    in ``target_ms``."""
    points = [(r["matches"], r["search_ms"]) for r in records if (r.get("matches") or 0) >= 1000]
    if len(points) < 3 or len({m for m, _ in points}) < 2:
        return None
    n = len(points)
    mx = sum(m for m, _ in points) / n
    my = sum(t for _, t in points) / n
    slope = sum((m - mx) * (t - my) for m, t in points) / sum((m - mx) ** 2 for m, _ in points)
    fixed = my - slope * mx
    return {"queries": n, "fixed_ms": round(fixed, 3), "us_per_match": round(slope * 1000, 4),
            "matches_within_target": int((target_ms - fixed) / slope) if slope > 0 and fixed < target_ms
            else None}


def _best_ms(run: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append((time.perf_counter() - t) * 1000.0)
    return round(min(times), 3)


def anatomy(engine, query: str, limit: int, repeats: int = 3) -> dict[str, float] | None:
    """Where one SQLite search spends its time (best of ``repeats``); None on PostgreSQL or for a
    query without words: ``match_ms`` finds every matching rowid in the FTS5 index and stops
    there; ``rank_ms`` also scores each with the same bm25 and keeps the best ``limit`` (no join,
    no caption text); ``search_ms`` is the whole ``search`` call. If rank_ms is most of search_ms,
    the cost is scoring every match, which no join order or index on the other tables can remove."""
    if engine.dialect.name != "sqlite":
        return None
    from sqlalchemy import text

    from tvcaption.db import search as s
    from tvcaption.db.schema import SEARCH_TABLE

    expression = s.fts5_query(query)
    if not expression:
        return None
    weights = f"{s.TEXT_WEIGHT}, {s.LABELS_WEIGHT}"
    match = text(f"SELECT rowid FROM {SEARCH_TABLE} WHERE {SEARCH_TABLE} MATCH :q")
    rank = text(f"SELECT rowid FROM {SEARCH_TABLE} WHERE {SEARCH_TABLE} MATCH :q "
                f"ORDER BY bm25({SEARCH_TABLE}, {weights}) LIMIT {int(limit)}")
    with engine.connect() as conn:
        out = {"match_ms": _best_ms(lambda: conn.execute(match, {"q": expression}).all(), repeats),
               "rank_ms": _best_ms(lambda: conn.execute(rank, {"q": expression}).all(), repeats)}
    out["search_ms"] = _best_ms(lambda: s.search(engine, query, limit), repeats)
    return out


def slowest(engine, records: list[dict[str, Any]], limit: int, count: int = 10) -> list[dict[str, Any]]:
    """The ``count`` slowest searches of ``records``, each with its :func:`anatomy` where it has one."""
    out = []
    for r in sorted(records, key=lambda r: -r["search_ms"])[:count]:
        slow = {k: r[k] for k in ("query", "kind", "matches", "search_ms")}
        parts = anatomy(engine, slow["query"], limit)
        if parts:
            slow["anatomy"] = parts
        out.append(slow)
    return out
