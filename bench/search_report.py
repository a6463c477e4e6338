"""What the search benchmark (bench/search_latency.py) reports: latency summaries, the machine it
ran on, the table it prints and the JSON it writes."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from machine import cpu_model, proc_field

REPO = Path(__file__).resolve().parents[1]


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    data = sorted(values)
    if not data:
        return float("nan")
    pos = (len(data) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def summary(ms: Sequence[float]) -> dict[str, float]:
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 3), "p95_ms": round(percentile(ms, 95), 3),
            "max_ms": round(max(ms), 3), "mean_ms": round(statistics.fmean(ms), 3)}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    """CPU, cores, memory, load average (other processes share the cores), library versions, commit."""
    import sqlalchemy

    total = proc_field("/proc/meminfo", "MemTotal")  # "24684016 kB"
    info: dict[str, Any] = {
        "cpu": cpu_model() or platform.processor() or None, "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(int(total.split()[0]) / 1024 / 1024, 1) if total else None,
        "load_average_at_start": load_average(), "platform": platform.platform(),
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version, "sqlalchemy": sqlalchemy.__version__}
    try:
        import psycopg

        info["psycopg"] = f"{psycopg.__version__} ({psycopg.pq.__impl__})"
    except ImportError:
        info["psycopg"] = None
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10, check=False)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10, check=False)
        if head.returncode == 0:
            info["git_commit"] = head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def table(report: dict[str, Any]) -> str:
    """The report as a small table: median, p95 and max of each method on each backend, the target."""
    config = report["config"]
    lines = [f"{config['captions']:,} captions, {config['queries']} queries, limit {config['limit']}; times in ms",
             f"{'backend':<11} {'method':<28} {'median':>8} {'p95':>8} {'max':>9}"]
    for backend, r in report["backends"].items():
        if "skipped" in r:
            lines.append(f"{backend:<11} skipped: {r['skipped']}")
            continue
        for key, label in (("search", "search (ranked, FTS)"), ("like_limit", f"LIKE '%w%' LIMIT {r['limit']}"),
                           ("like_all", "LIKE '%w%' (all rows)")):
            s = r[key]
            lines.append(f"{backend:<11} {label:<28} {s['median_ms']:>8.2f} {s['p95_ms']:>8.2f} {s['max_ms']:>9.2f}")
        ratio = r["ratio_p95"]
        lines.append(f"{'':<11} build {r['build_s']:.1f} s, {r['size_mb']} MB; p95 ratio LIKE LIMIT / search "
                     f"{ratio['like_limit/search']}, LIKE all / search {ratio['like_all/search']}")
    target = report["target"]
    if target.get("met") is not None:
        lines.append(f"target: SQLite search p95 < {target['p95_ms']:g} ms on 1M captions: "
                     f"{'met' if target['met'] else 'NOT met'} ({target['measured_p95_ms']} ms"
                     f"{'' if target['at_1m'] else ', measured below 1M captions'})")
    return "\n".join(lines)


def dumps(obj: Any, indent: str = "") -> str:
    """JSON with one line per query record (and per short list), so that the results diff well."""
    inner = indent + " "
    if isinstance(obj, dict) and obj and any(isinstance(v, (dict, list)) and v for v in obj.values()):
        items = [f"{inner}{json.dumps(k)}: {dumps(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(obj, list) and obj and any(isinstance(v, (dict, list)) for v in obj):
        return "[\n" + ",\n".join(inner + dumps(v, inner) for v in obj) + "\n" + indent + "]"
    if isinstance(obj, list) and len(json.dumps(obj)) > 100:
        return "[\n" + ",\n".join(inner + json.dumps(v, ensure_ascii=False) for v in obj) + "\n" + indent + "]"
    return json.dumps(obj, ensure_ascii=False)
