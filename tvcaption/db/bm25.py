"""What the text ranking of both backends shares: bm25's constants and the columns' weights, the
stop words a query drops, and the (term, row) pairs a reader of the search index returns
(:mod:`tvcaption.db.search` ranks in SQL, :mod:`tvcaption.db.text_index` from posting lists;
:mod:`tvcaption.db.text_index_fts5` and :mod:`tvcaption.db.text_index_pg` read the index).
Nothing here imports numpy or a database driver."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import numpy as np

TEXT_WEIGHT, LABELS_WEIGHT, HIDDEN_WEIGHT = 1.0, 0.5, 0.25  # bm25 column weights (PostgreSQL: A, B, C)
WEIGHTS = {"text": TEXT_WEIGHT, "labels": LABELS_WEIGHT, "hidden": HIDDEN_WEIGHT}  # the index's columns, in order
VISIBLE = ("text", "labels")  # the columns an ordinary search reads (hidden: out-of-domain captions)
BM25_K1, BM25_B = 1.2, 0.75  # fts5_aux.c's bm25 constants, on both backends
MIN_IDF = 1e-6  # fts5_aux.c: an idf at or below 0 counts as this
TS_CONFIG = "english"  # PostgreSQL's text search configuration

# PostgreSQL's 'english' stop words (snowball english.stop). FTS5 has no stop-word list, so the
# SQLite query drops them too: "the man singing" then means the same on both backends.
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she
her hers herself it its itself they them their theirs themselves what which who whom this that
these those am is are was were be been being have has had having do does did doing a an the and
but if or because as until while of at by for with about against between into through during
before after above below to from up down in out on off over under again further then once here
there when where why how all any both each few more most other some such no nor not only own
same so than too very s t can will just don should now
""".split())


def is_stop_word(word: str) -> bool:
    return "".join(ch for ch in word.lower() if ch.isalnum()) in STOP_WORDS


class Pairs(NamedTuple):
    """What a backend's reader finds in its index: every (term number, row) pair with the pair's
    weighted frequency in text and labels (``f_vis``) and in all columns (``f_all``); ``docs``
    the rows holding any token, sorted, and ``length`` their tokens in all columns (D);
    ``tokens`` all tokens of the table, ``n_rows`` its rows (N, whatever their recording's status)."""

    names: list[str]
    term: np.ndarray
    doc: np.ndarray
    f_vis: np.ndarray
    f_all: np.ndarray
    docs: np.ndarray
    length: np.ndarray
    tokens: int
    n_rows: int
