"""Finding a stored recording by a path as users write it (relative, with ``..``, through a symlink).

The indexer stores a recording under its resolved path; older versions stored other spellings.
Used by :meth:`Store.find_recording <tvcaption.db.store.Store.find_recording>` and by search's
``recording`` filter, on a connection the caller holds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from tvcaption.db.schema import Recording

recordings_t = Recording.__table__


def path_spellings(path: str | os.PathLike[str]) -> list[str]:
    """The stored paths ``path`` may be recorded under, most likely first: resolved (what the
    indexer stores), absolute with ``..`` folded (older versions), absolute as written (older
    versions still, ``Path.absolute``), and as given."""
    given = os.fspath(path)
    if isinstance(given, bytes):
        given = os.fsdecode(given)
    if "\x00" in given:  # no file's path holds a NUL (and PostgreSQL refuses them in text)
        return []
    spellings = [given]
    if given:
        try:
            spellings = [os.path.realpath(given), os.path.abspath(given), str(Path(given).absolute()), given]
        except (OSError, ValueError):
            pass
    return list(dict.fromkeys(spellings))


def find_stored(conn: Connection, path: str | os.PathLike[str]) -> Any:
    """The ``recordings`` row that ``path`` names, or None.

    First the spellings of :func:`path_spellings`; then, when ``path`` is an existing file, any
    stored path that resolves to the same file (an older database kept a symlink's own path).
    """
    spellings = path_spellings(path)
    if not spellings:
        return None
    rows = {row.path: row for row in conn.execute(select(recordings_t).where(recordings_t.c.path.in_(spellings)))}
    for spelling in spellings:
        if spelling in rows:
            return rows[spelling]
    real = spellings[0]
    if not os.path.isfile(real):
        return None
    for recording_id, stored in conn.execute(select(recordings_t.c.id, recordings_t.c.path)).all():
        try:
            same = os.path.realpath(stored) == real
        except (OSError, ValueError):
            continue
        if same:
            return conn.execute(select(recordings_t).where(recordings_t.c.id == recording_id)).first()
    return None
