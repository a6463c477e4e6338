"""One ``tvcaption index`` run of a recording with a given set of analysers, into a fresh SQLite
database, in a process of its own (shared by bench/text.py and bench/meaning.py)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def index_run(recording: Path, work: Path, analysers: str) -> dict:
    """Wall time, scenes and annotations by kind of ``tvcaption index RECORDING`` with
    ``[index] analysers = analysers`` (comma-separated) and the repository's tvcaption.toml."""
    db = work / f"index-{analysers.replace(',', '-')}.db"
    db.unlink(missing_ok=True)
    env = dict(os.environ, TVCAPTION_DATABASE__URL=f"sqlite:///{db}", TVCAPTION_INDEX__ANALYSERS=analysers)
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "tvcaption", "index", str(recording), "-c", str(ROOT / "tvcaption.toml")],
                         env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode:
        raise SystemExit(f"index with {analysers} failed: {res.stderr[-2000:]}")
    with sqlite3.connect(db) as con:
        scenes = con.execute("select count(*) from scenes").fetchone()[0]
        kinds = dict(con.execute("select kind, count(*) from annotations group by kind").fetchall())
    return {"analysers": analysers, "wall_s": wall, "scenes": scenes, "kinds": kinds, "db": str(db)}
