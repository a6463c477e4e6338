#!/usr/bin/env python3
"""Write tvcaption/resources/sqlite_head.sql: the statements that make a new SQLite database at
the newest revision without Alembic (see tvcaption/db/sqlite_snapshot.py).

    python scripts/make_sqlite_snapshot.py            # writes the shipped file
    python scripts/make_sqlite_snapshot.py --check    # exit 1 if the shipped file differs

Run it after adding a migration (tests/test_migrations.py fails until then).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
from pathlib import Path


def generate() -> str:
    """Migrate a new file to head through Alembic and dump it."""
    from tvcaption.db import migrate, sqlite_snapshot
    from tvcaption.db.engine import open_engine

    with tempfile.TemporaryDirectory(prefix="tvcaption-snapshot-") as folder:
        db = Path(folder) / "head.db"
        engine = open_engine(f"sqlite:///{db}", create=True)
        try:
            migrate.upgrade(engine, "head", snapshot=False)
        finally:
            engine.dispose()
        with sqlite3.connect(db) as conn:
            revision, statements = sqlite_snapshot.dump(conn)
        conn.close()
    return sqlite_snapshot.render(revision, statements)


def main(argv: list[str] | None = None) -> int:
    from tvcaption.db import sqlite_snapshot

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only compare with the shipped file")
    args = ap.parse_args(argv)
    made, target = generate(), sqlite_snapshot.path()
    if args.check:
        same = target.is_file() and target.read_text(encoding="utf-8") == made
        print(f"{target}: " + ("up to date" if same else "differs; run python scripts/make_sqlite_snapshot.py"))
        return 0 if same else 1
    target.write_text(made, encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
