"""The search latency benchmark (bench/search_latency.py and the modules beside it) on tiny
archives: it runs, its JSON has every field, the archive it builds is searchable through
tvcaption's own search, and both ways of filling it give the same index on both backends."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
pytest_plugins = ["pg"]


@functools.cache
def _bench_module():
    spec = importlib.util.spec_from_file_location("search_latency", REPO / "bench" / "search_latency.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["search_latency"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_search_latency_smoke_run(tmp_path):
    bench = _bench_module()
    out = tmp_path / "results" / "search_latency.json"
    report = bench.main(["--captions", "2000", "--backends", "sqlite", "--out", str(out),
                         "--workdir", str(tmp_path / "db"), "--keep", "--quiet"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))

    assert report["config"]["captions"] == 2000 and report["config"]["recordings"] == 4
    assert report["config"]["queries"] == 200 and report["config"]["limit"] == 20
    for key in ("cpu", "cores", "python", "sqlite"):
        assert report["machine"][key]
    assert set(report["backends"]) == {"sqlite"}
    sqlite = report["backends"]["sqlite"]
    assert sqlite["build_s"] > 0 and sqlite["size_mb"] > 0 and sqlite["server_version"]
    for method in ("search", "like_limit", "like_all"):
        stats = sqlite[method]
        assert 0 < stats["median_ms"] <= stats["p95_ms"] <= stats["max_ms"]
    assert set(sqlite["ratio_p95"]) == {"like_limit/search", "like_all/search"}
    assert report["target"]["at_1m"] is False and "met" in report["target"]
    assert report["dataset"]["distinct_words"] > 500

    queries = sqlite["queries"]
    assert len(queries) == 200 and {q["kind"] for q in queries} == {k for k, _ in bench.QUERY_MIX}
    assert all(q["hits"] > 0 for q in queries if q["kind"] == "common" and q["matches"])
    assert all(q["hits"] == min(q["matches"], 20) for q in queries)
    for slow in sqlite["slowest_searches"]:  # where the slow ones spend their time
        parts = slow.get("anatomy")
        if parts:  # only queries with words left after the stop words have one
            assert 0 < parts["match_ms"] and 0 < parts["rank_ms"] and 0 < parts["search_ms"]
    assert any("anatomy" in slow for slow in sqlite["slowest_searches"])

    # the kept archive answers tvcaption's search: "man" is the grammar's most frequent subject
    from tvcaption.db.search import search
    from tvcaption.db.store import connect

    (db,) = (tmp_path / "db").glob("*.db")
    engine = connect(f"sqlite:///{db}")
    try:
        hits = search(engine, "man")
        assert len(hits) == 20 and all("man" in hit.caption.split() for hit in hits)
        assert search(engine, "danced") and search(engine, "zzzyzzx") == []
    finally:
        engine.dispose()


def test_backfill_and_triggers_build_the_same_index(db_backend, request, tmp_path):
    """Bulk rows indexed by the migrations find exactly what rows saved through the store do."""
    bench = _bench_module()
    args = bench.parse_args(["--captions", "1200", "--queries", "40", "--warmup", "2", "--quiet"])
    grammar = bench.Grammar(args.seed)
    queries = bench.make_queries(grammar, args.queries, args.seed)
    results = {}
    for fill in ("backfill", "triggers"):
        if db_backend == "sqlite":
            url = f"sqlite:///{tmp_path / fill}.db"
        else:
            url = request.getfixturevalue("fresh_pg_url")(migrated=False)
        args.fill = fill
        results[fill] = bench.bench_backend(url, args, bench.Workload(grammar, queries, []))

    def found(result):
        return [(q["query"], q["hits"], q["matches"], q.get("like_all_rows")) for q in result["queries"]]

    backfill, triggers = results["backfill"], results["triggers"]
    assert found(backfill) == found(triggers)
    assert sum(q["matches"] > 0 for q in backfill["queries"]) > len(queries) // 2
    assert {"schema_s", "insert_s", "index_s"} <= set(backfill["build"])
    assert "insert_and_index_s" in triggers["build"] and "index_s" not in triggers["build"]
    anatomies = [s for r in results.values() for s in r["slowest_searches"] if "anatomy" in s]
    if db_backend == "sqlite":
        assert anatomies and set(backfill["settings"]) == {"cache_size", "journal_mode", "mmap_size"}
    else:  # the breakdown is FTS5's; PostgreSQL reports its index table and is vacuumed
        assert not anatomies and backfill["bytes"]["search_index_table"] > 0
        assert "vacuum_analyze_s" in backfill["build"] and backfill["settings"]["work_mem"]
