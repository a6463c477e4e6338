"""Caption text: normalisation, tokenisation and the vocabulary (no torch import).

Normalisation follows the paper (section 4.1: lowercase, special characters removed) with these
choices written down:
- Unicode NFKC first, then lowercase, so full-width and compatibility forms become plain letters.
- Letters of any script and digits are kept ("café", "2"); every other character becomes a space,
  so "t-shirt" -> "t shirt" and "hello,world" -> "hello world" (deleting would glue words).
- An apostrophe is kept only inside a word ("man's", "don't"; the typographic ’ counts as one):
  English captions use it for possessives and contractions, and MSR-VTT's vocabulary has them.
  Leading or trailing quotes are dropped.
- Runs of whitespace collapse to one space; the result is stripped.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Iterable, Sequence

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_SPECIAL = re.compile(r"[^\w\s']|_")  # \w is Unicode letters, digits and "_"
_LONE_APOSTROPHE = re.compile(r"(?<![^\W_])'|'(?![^\W_])")  # not between two letters/digits


def normalize(text: str) -> str:
    """Lowercase, special characters stripped, whitespace collapsed (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_APOSTROPHES)
    text = _SPECIAL.sub(" ", text)
    text = _LONE_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())


def tokenize(text: str) -> list[str]:
    """Normalised words of a caption."""
    return normalize(text).split()


class Vocab:
    """Word <-> id. Ids 0-3 are the special tokens; words follow, most common first."""

    PAD, BOS, EOS, UNK = 0, 1, 2, 3
    SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")

    def __init__(self, words: Sequence[str]):
        """words: the whole list including the four specials at ids 0-3 (see :meth:`from_list`)."""
        words = list(words)
        if tuple(words[:4]) != self.SPECIALS:
            raise ValueError(f"a vocabulary must start with {', '.join(self.SPECIALS)}")
        if len(set(words)) != len(words):
            dup = sorted({w for w in words if words.count(w) > 1})[:5]
            raise ValueError(f"duplicate words in the vocabulary: {', '.join(dup)}")
        bad = [w for w in words[4:] if not isinstance(w, str) or not w or w != normalize(w) or " " in w]
        if bad:
            raise ValueError(f"vocabulary entries that are not normalised words: {bad[:5]!r}")
        self._words = tuple(words)
        self._index = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(cls, captions: Iterable[str], max_size: int | None = None, min_count: int = 1) -> Vocab:
        """The max_size most common words (specials not counted) seen at least min_count times.

        Ties are broken alphabetically so the same captions always give the same ids.
        """
        counts = Counter(w for caption in captions for w in tokenize(caption))
        ranked = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[:max_size]
        return cls(list(cls.SPECIALS) + ranked)

    @classmethod
    def from_list(cls, words: Sequence[str]) -> Vocab:
        return cls(words)

    def to_list(self) -> list[str]:
        return list(self._words)

    def __len__(self) -> int:
        return len(self._words)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._words == other._words

    def __hash__(self) -> int:
        return hash(self._words)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} entries)"

    def id(self, word: str) -> int:
        """The id of a normalised word; UNK when it is not in the vocabulary."""
        return self._index.get(word, self.UNK)

    def word(self, index: int) -> str:
        return self._words[index]

    def encode(self, text: str, max_words: int = 30) -> list[int]:
        """``<bos> w1 .. wn <eos>`` with n <= max_words (the paper cuts after the 30th word)."""
        return [self.BOS] + [self.id(w) for w in tokenize(text)[:max_words]] + [self.EOS]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text: stops at <eos>, skips <pad> and <bos>, shows unknown words as <unk>."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.EOS:
                break
            if i in (self.PAD, self.BOS):
                continue
            words.append(self._words[i])
        return " ".join(words)
