"""Search by words, by meaning, or both fused: ``tvcaption search --mode text|meaning|hybrid``.

- ``text``: full-text search (:mod:`tvcaption.db.search`), unchanged; it loads no model and
  imports no torch, and no numpy below ``search.INDEX_MIN_SCENES`` scenes (above, the ranking
  comes from numpy posting lists on SQLite and PostgreSQL: :mod:`tvcaption.db.text_index`; so
  does hybrid's text ranking, else the SQL's, :func:`tvcaption.db.search.sql_ranking`).
- ``meaning``: the query's sentence embedding (:mod:`tvcaption.embedding`, numpy, no torch)
  against every scene's meaning vector, best cosine similarity first, scenes below
  :data:`MIN_SIMILARITY` left out. "motorcycle" finds "moped, motor scooter". The vectors are
  read from one memory-mapped matrix kept current with the database
  (:mod:`tvcaption.db.vector_index`; before migration 0007, the blobs of :mod:`tvcaption.db.vectors`).
- ``hybrid`` (the default): reciprocal rank fusion (Cormack et al., SIGIR 2009) of the two
  rankings: a scene scores the sum of ``1 / (RRF_K + rank)`` over the rankings it is in. Every
  text hit also gets its rank among all vectors (the scan ranks them all), so the best text hit
  scores more than ``1 / (RRF_K + 1)``, which no scene found by meaning alone can reach: a scene
  holding the query's words always comes first; scenes found by meaning alone follow the text
  hits they outrank by meaning.

``all_captions`` (``--all-captions``) in any mode: out-of-domain captions are searched by their
words (the text ranking; no vector holds them) and every hit shows them, marked.
``recording`` is resolved as in text search (:func:`tvcaption.db.search.find_recording`).

A database without meaning vectors (the meaning analyser never ran) gives hybrid the text
results and ``meaning`` a one-line error saying how to add them; the model is then not loaded.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from tvcaption.db.search import (
    NOT_INDEXED,
    Hit,
    _search_error,
    check_limit,
    find_recording,
    hits_of,
    indexed_ranking,
    sql_ranking,
    without_hidden,
    words,
)
from tvcaption.db.search import search as text_search
from tvcaption.db.vectors import has_vectors, nearest
from tvcaption.errors import TvcaptionError

MODES = ("text", "meaning", "hybrid")
RRF_K = 60  # the constant of reciprocal rank fusion: ranks 1 and 2 differ little, 1 and 50 much
CANDIDATES = 100  # how deep each ranking is read for fusion
MIN_SIMILARITY = 0.2  # cosine below which a scene is not found by meaning (unrelated texts score ~0-0.15)
NO_VECTORS = ("no meaning vectors in this database: add \"meaning\" to [index] analysers "
              "(after the others) and run tvcaption index again, or search with --mode text")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise TvcaptionError(f"search mode {mode!r}: use one of {', '.join(MODES)}")
    return mode


def search(engine: Engine | Any, query: str, limit: int = 20, recording: str | os.PathLike[str] | None = None,
           mode: str = "hybrid", all_captions: bool = False) -> list[Hit]:
    """Scenes for ``query`` by ``mode`` (module docstring), best first; ``score`` is the cosine
    similarity (meaning) or the fused score (hybrid). Arguments as :func:`tvcaption.db.search.search`;
    ``all_captions``: out-of-domain captions (only in the word index) are searched by the words
    and shown, marked, with every hit; without it hits come without them."""
    check_mode(mode)
    if mode == "text":
        return text_search(engine, query, limit, recording, all_captions)
    engine = getattr(engine, "engine", engine)
    limit = check_limit(limit)
    if not words(query):
        return []
    try:
        with engine.connect() as conn:
            stored = find_recording(conn, recording)
            if stored is NOT_INDEXED:
                return []
            if not has_vectors(conn):
                if mode == "meaning":
                    raise TvcaptionError(NO_VECTORS)
                return text_search(engine, query, limit, recording, all_captions)
            ranked = _ranked(conn, query, limit, stored, mode, all_captions)
            hits = hits_of(conn, ranked)
    except DBAPIError as exc:
        error = _search_error(engine, exc)
        if error is None:
            raise
        raise error from exc
    return hits if all_captions else without_hidden(hits)


def _meaning(conn, query: str, top: int, stored) -> tuple[list[tuple[int, float]], Any]:
    """The scenes nearest ``query`` by meaning, (id, similarity) best first above MIN_SIMILARITY,
    and the ranking (for the ranks of text hits): from the memory-mapped matrix
    (:mod:`tvcaption.db.vector_index`), or the blobs before migration 0007."""
    from tvcaption.db import vector_index
    from tvcaption.embedding import embedder

    vector_index.one_blas_thread()
    model = embedder()
    vector = model.embed([query])[0]
    found = vector_index.matrix(conn, model.name)
    if found is None:
        ranking = nearest(conn, vector, model.name, top, stored and stored.path)
    else:
        ranking = vector_index.nearest(found, vector, top, stored and stored.id)
    by_meaning = [(int(i), float(s)) for i, s in zip(ranking.ids, ranking.scores) if s >= MIN_SIMILARITY]
    return by_meaning, ranking


def _ranked(conn, query: str, limit: int, stored, mode: str, all_captions: bool) -> list[tuple[int, float]]:
    """(scene id, score) best first, at most ``limit``."""
    by_meaning, ranking = _meaning(conn, query, max(limit, CANDIDATES), stored)
    if mode == "meaning":
        return by_meaning[:limit]
    depth = max(limit, CANDIDATES)
    indexed = indexed_ranking(conn, query, depth, stored, all_captions)
    if indexed is None:
        indexed = sql_ranking(conn, query, depth, stored, all_captions)
    by_text = [scene_id for scene_id, _ in indexed]
    return fuse(by_text, by_meaning, ranking.rank_of(by_text))[:limit]


def fuse(by_text: list[int], by_meaning: list[tuple[int, float]], text_hit_ranks: dict[int, int]) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: ``by_text`` scene ids best first, ``by_meaning`` (id, similarity)
    best first, ``text_hit_ranks`` each text hit's rank among all vectors (when it has one).
    Ties go to the better text rank, then the lower scene id."""
    score: dict[int, float] = {}
    for rank, scene_id in enumerate(by_text, 1):
        score[scene_id] = 1 / (RRF_K + rank) + 1 / (RRF_K + text_hit_ranks[scene_id]) \
            if scene_id in text_hit_ranks else 1 / (RRF_K + rank)
    for rank, (scene_id, _) in enumerate(by_meaning, 1):
        score.setdefault(scene_id, 1 / (RRF_K + rank))
    text_rank = {scene_id: rank for rank, scene_id in enumerate(by_text, 1)}
    order = sorted(score, key=lambda s: (-score[s], text_rank.get(s, len(by_text) + 1), s))
    return [(scene_id, score[scene_id]) for scene_id in order]
