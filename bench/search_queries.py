"""The search benchmark's queries (bench/search_latency.py): a fixed, seeded mix of kinds drawn
from the caption grammar (bench/corpus.py), and the word each gives the LIKE baseline."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from typing import Any

from corpus import (
    IRREGULAR_PAST,
    IRREGULAR_PLURAL,
    OBJECTS,
    PLACES,
    RARE_WORDS,
    SUBJECTS,
    TAG_LABELS,
    TOPICS,
    VERBS,
    Grammar,
    gerund,
    past,
    plural,
)

OPERATOR_QUERIES = ['"man" "singing"', "man AND dog", "NEAR(man dog)", "car*", "-news", "man OR woman",
                    "anchor: weather", "(dog)", "man's guitar", "^chef", "caption:stage", '"red car"',
                    "café", "NOT crowd", "dog + park", "{caption tags}: microphone"]
QUERY_MIX = (("common", 0.25), ("rare", 0.2), ("phrase", 0.2), ("stemmed", 0.15), ("tag", 0.1),
             ("operators", 0.1))


class Deck:
    """Draws without replacement, reshuffled when used up: no word is queried twice before all were."""

    def __init__(self, items: Sequence[Any], rng: random.Random) -> None:
        self.items, self.rng, self.left = list(items), rng, []

    def __call__(self) -> Any:
        if not self.left:
            self.left = self.items[:]
            self.rng.shuffle(self.left)
        return self.left.pop()


def _drawers(grammar: Grammar, rng: random.Random) -> dict[str, Callable[[], str]]:
    """One function per query kind, all drawing from ``rng``."""
    common = Deck(SUBJECTS[:15] + [gerund(v) for v, _ in VERBS[:12]] + OBJECTS["thing"][:5] + OBJECTS["food"][:3]
                  + PLACES[:10] + TOPICS[:5], rng)
    rare = Deck([w for words in RARE_WORDS.values() for w in words] + grammar.names[len(grammar.names) // 3:], rng)
    regular = Deck([v for v, _ in VERBS if v not in IRREGULAR_PAST][:40], rng)
    nouns = Deck([w for w in SUBJECTS[:25] if w not in IRREGULAR_PLURAL], rng)

    def phrase() -> str:
        r = rng.random()
        if r < 0.4:
            return f"{grammar.subject(rng)} {gerund(grammar.verb(rng)[0])}"
        if r < 0.7:
            return f"{grammar.adjective(rng)} {grammar.subject(rng)}"
        return f"{grammar.subject(rng)} {grammar.place(rng)}"

    def stemmed() -> str:
        r = rng.random()
        return past(regular()) if r < 0.5 else (regular() if r < 0.8 else plural(nouns()))

    return {"common": common, "rare": rare, "phrase": phrase, "stemmed": stemmed,
            "tag": Deck([t.lower() for t in TAG_LABELS], rng), "operators": Deck(OPERATOR_QUERIES, rng)}


def make_queries(grammar: Grammar, count: int, seed: int) -> list[tuple[str, str]]:
    """(kind, query) pairs: a fixed mix of kinds, the words drawn with a seeded RNG.

    common: the 50 most frequent words of the grammar's lists (each once per 50); rare: the rare
    object words and the less frequent two thirds of the generated names; phrase: two words
    (subject + verb, adjective + subject, subject + place); stemmed: past tenses, base forms and
    plurals of words the captions hold in other forms; tag: tag labels; operators: FTS syntax.
    """
    rng = random.Random(f"queries-{seed}")
    draw = _drawers(grammar, rng)
    kinds: list[str] = []
    for kind, share in QUERY_MIX:
        kinds += [kind] * round(share * count)
    kinds = (kinds + ["common"] * count)[:count]
    out = [(kind, draw[kind]()) for kind in kinds]
    rng.shuffle(out)
    return out


def like_word(query: str) -> str | None:
    """The query's first word for the LIKE baseline: letters and digits only, stop words skipped."""
    from tvcaption.db.bm25 import STOP_WORDS

    for token in re.findall(r"[^\W_]+", query.lower()):
        if token not in STOP_WORDS:
            return token
    return None
