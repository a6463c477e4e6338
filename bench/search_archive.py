"""The search benchmark's archive (bench/search_latency.py): its rows, generated chunk by chunk
from the caption grammar (bench/corpus.py), the same rows for every backend; how they go into a
database through the project's own migrations and store; and what the built database is.

``backfill`` migrates to revision 0001 (plain tables), bulk-inserts the rows (SQLite
``executemany``, PostgreSQL ``COPY``, one transaction per chunk of recordings), then migrates to
head, so the search index is built by the migrations' own SQL. ``triggers`` migrates to head
first and saves each recording with ``Store.save_result`` (what ``tvcaption index`` does), so
the index triggers fire for every row.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from corpus import Grammar

SCENES_PER_RECORDING = 500
RECORDINGS_PER_TRANSACTION = 100
MODEL_NAME = "bench-grammar"
# The tables of revision 0001 that backfill fills; 0003 moves captions and tags into annotations.
OLD_COLUMNS = {
    "recordings": ("id", "path", "content_hash", "duration", "status", "model", "indexed_at"),
    "scenes": ("id", "recording_id", "index", "start", "end", "start_frame", "end_frame"),
    "captions": ("id", "scene_id", "text", "model", "score"),
    "tags": ("id", "scene_id", "label", "score"),
}


@dataclass
class Chunk:
    """The rows of up to RECORDINGS_PER_TRANSACTION recordings, ids given (no lookups needed)."""

    recordings: list[tuple]  # (id, path, content_hash, duration)
    scenes: list[tuple]  # (id, recording_id, index, start, end, start_frame, end_frame)
    captions: list[tuple]  # (id, scene_id, text, model, score)
    tags: list[tuple]  # (id, scene_id, label, score)


def layout(captions: int) -> tuple[int, int]:
    """(recordings, scenes per recording) for ``captions`` captions, one caption per scene."""
    per = min(SCENES_PER_RECORDING, captions)
    return -(-captions // per), per


def generate(grammar: Grammar, captions: int, seed: int, words: set[str] | None = None) -> Iterator[Chunk]:
    """The archive's rows; every recording is 'done'. ``words`` collects every caption word."""
    rng = random.Random(f"archive-{seed}")
    recordings, per = layout(captions)
    scene_id = tag_id = 0
    for first in range(0, recordings, RECORDINGS_PER_TRANSACTION):
        chunk = Chunk([], [], [], [])
        for rec in range(first + 1, min(first + RECORDINGS_PER_TRANSACTION, recordings) + 1):
            n = min(per, captions - (rec - 1) * per)
            t = frame = 0.0
            for index in range(n):
                scene_id += 1
                length = round(2.0 + 10.0 * rng.random(), 2)
                frames = int(length * 25)
                chunk.scenes.append((scene_id, rec, index, round(t, 2), round(t + length, 2), int(frame),
                                     int(frame) + frames))
                t += length
                frame += frames
                text = grammar.caption(rng)
                if words is not None:
                    words.update(text.lower().split())
                chunk.captions.append((scene_id, scene_id, text, MODEL_NAME, round(-0.1 - rng.random(), 4)))
                for label, score in grammar.tags(rng):
                    tag_id += 1
                    chunk.tags.append((tag_id, scene_id, label, score))
            chunk.recordings.append((rec, f"archive/{rec // 100:03d}/recording-{rec:05d}.ts",
                                     f"{rec:064x}", round(t, 2)))
        yield chunk


class Timer:
    """Seconds spent inside an iterator's ``next``: making the rows, apart from writing them."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, items: Iterator[Any]) -> Iterator[Any]:
        while True:
            t = time.perf_counter()
            item = next(items, None)
            self.seconds += time.perf_counter() - t
            if item is None:
                return
            yield item


def build(url: str, chunks: Iterator[Chunk], fill: str) -> dict[str, float]:
    """Create the schema with the project's migrations and fill it (``fill``: backfill | triggers);
    returns the build timings in seconds."""
    from sqlalchemy.engine import make_url

    from tvcaption.db.store import connect

    gen = Timer()
    times = _backfill(url, gen.wrap(chunks)) if fill == "backfill" else _triggers(url, gen.wrap(_as_scenes(chunks)))
    for key in ("insert_s", "insert_and_index_s"):
        if key in times:
            times[key] -= gen.seconds
    if make_url(url).get_backend_name() == "postgresql":  # what autovacuum would do on a live server
        t = time.perf_counter()
        engine = connect(url, migrate=False)
        try:
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        finally:
            engine.dispose()
        times["vacuum_analyze_s"] = time.perf_counter() - t
    times["build_s"] = sum(times.values())
    times["generate_s"] = gen.seconds  # Python making the captions; not part of build_s
    return {k: round(v, 2) for k, v in times.items()}


def _backfill(url: str, chunks: Iterator[Chunk]) -> dict[str, float]:
    from tvcaption.db import migrate
    from tvcaption.db.store import connect

    times: dict[str, float] = {}
    t = time.perf_counter()
    migrate.upgrade(url, "0001")  # the plain tables; 0002 and 0003 (search, annotations) come after the rows
    times["schema_s"] = time.perf_counter() - t
    t = time.perf_counter()
    engine = connect(url, migrate=False)
    try:
        now = datetime.now(timezone.utc)
        if engine.dialect.name == "sqlite":
            _bulk_sqlite(engine, chunks, now)
        else:
            _bulk_postgresql(engine, chunks, now)
    finally:
        engine.dispose()
    times["insert_s"] = time.perf_counter() - t
    t = time.perf_counter()
    migrate.upgrade(url, "head")  # creates the search index and fills it with its own SQL
    times["index_s"] = time.perf_counter() - t
    return times


def _columns(table: str) -> str:
    return ", ".join(f'"{c}"' for c in OLD_COLUMNS[table])


def _old_rows(chunk: Chunk, now: datetime | str) -> dict[str, list[tuple]]:
    return {"recordings": [(*r, "done", MODEL_NAME, now) for r in chunk.recordings],
            "scenes": chunk.scenes, "captions": chunk.captions, "tags": chunk.tags}


def _bulk_sqlite(engine, chunks: Iterator[Chunk], now: datetime) -> None:
    now_text = now.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's SQLite format
    inserts = {table: f"INSERT INTO {table} ({_columns(table)}) VALUES ({', '.join('?' * len(cols))})"
               for table, cols in OLD_COLUMNS.items()}
    raw = engine.raw_connection()
    try:
        cur = raw.driver_connection.cursor()
        for chunk in chunks:
            cur.execute("BEGIN")
            for table, rows in _old_rows(chunk, now_text).items():
                cur.executemany(inserts[table], rows)
            cur.execute("COMMIT")
        cur.close()
    finally:
        raw.close()


def _bulk_postgresql(engine, chunks: Iterator[Chunk], now: datetime) -> None:
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        conn.autocommit = False
        with conn.cursor() as cur:
            for chunk in chunks:
                for table, rows in _old_rows(chunk, now).items():
                    with cur.copy(f"COPY {table} ({_columns(table)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                conn.commit()
            for table in OLD_COLUMNS:  # explicit ids: move the sequences past them
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT coalesce(max(id), 1) FROM {table}))")
            conn.commit()
    finally:
        raw.close()


def _as_scenes(chunks: Iterator[Chunk]) -> Iterator[tuple[list[tuple], dict[int, list]]]:
    """Each chunk as its recordings and, per recording, its scenes as the store takes them: the
    caption analyser's caption, then the tags analyser's tags, most probable first."""
    from tvcaption.scene import Annotation, Scene

    for chunk in chunks:
        notes: dict[int, list[Annotation]] = {}
        for _id, scene_id, text, _model, score in chunk.captions:
            notes[scene_id] = [Annotation("caption", "caption", text, score)]
        for _id, scene_id, label, score in chunk.tags:
            notes[scene_id].append(Annotation("tags", "tag", label, score, field="labels"))
        scenes: dict[int, list[Scene]] = {rec[0]: [] for rec in chunk.recordings}
        for scene_id, rec, _index, start, end, start_frame, end_frame in chunk.scenes:
            scenes[rec].append(Scene(start, end, start_frame, end_frame, annotations=tuple(notes[scene_id])))
        yield chunk.recordings, scenes


def _triggers(url: str, chunks: Iterator[tuple[list[tuple], dict[int, list]]]) -> dict[str, float]:
    """Each chunk's recordings as pending rows, then each recording saved as the indexer saves it:
    ``Store.save_result``, one transaction, the index triggers firing for every row."""
    from tvcaption.db.engine import begin_write
    from tvcaption.db.scenes import insert_rows, recordings_t
    from tvcaption.db.store import Store, connect

    times: dict[str, float] = {}
    t = time.perf_counter()
    engine = connect(url)  # every revision
    times["schema_s"] = time.perf_counter() - t
    t = time.perf_counter()
    store = Store(engine)
    try:
        for recordings, scenes in chunks:
            with begin_write(engine) as conn:
                insert_rows(conn, recordings_t, [{"id": i, "path": path, "content_hash": h, "duration": d}
                                                 for i, path, h, d in recordings])
            for rec_id, rec_scenes in scenes.items():
                store.save_result(rec_id, rec_scenes, MODEL_NAME)
    finally:
        engine.dispose()
    times["insert_and_index_s"] = time.perf_counter() - t
    return times


def database_bytes(engine) -> dict[str, int]:
    """The database's size (SQLite: the file and its WAL, also after ``dispose``; PostgreSQL: the
    database and the search index's table)."""
    from tvcaption.db.engine import sqlite_file
    from tvcaption.db.schema import SEARCH_TABLE

    if engine.dialect.name == "sqlite":
        path = sqlite_file(engine.url)
        return {"database": sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())}
    with engine.connect() as conn:
        db = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
        fts = conn.exec_driver_sql(f"SELECT pg_total_relation_size('{SEARCH_TABLE}')").scalar()
    return {"database": int(db), "search_index_table": int(fts)}


def server_version(engine) -> str:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return conn.exec_driver_sql("SELECT sqlite_version()").scalar()
        return conn.exec_driver_sql("SHOW server_version").scalar()


def server_settings(engine) -> dict[str, str]:
    """The settings that move read latency: caches, sort memory, JIT."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return {n: str(conn.exec_driver_sql(f"PRAGMA {n}").scalar())
                    for n in ("cache_size", "journal_mode", "mmap_size")}
        return {n: conn.exec_driver_sql(f"SHOW {n}").scalar() for n in (
            "shared_buffers", "work_mem", "effective_cache_size", "jit", "max_parallel_workers_per_gather")}
