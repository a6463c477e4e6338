"""Extra index terms, the same on both backends: scripts written without spaces (Chinese, Japanese,
Korean), and words without their accents where the backend keeps them.

SQLite's unicode61 tokenizer and PostgreSQL's parser both take a run of Chinese characters for
one word, so "台湾" inside the headline "台湾总统大选今日开票" finds nothing. Such text gets extra
terms when it is stored (:func:`index_terms`, kept in ``annotations.terms`` and indexed with the
text): every character of each CJK run and every pair of neighbouring characters, in order.
A query's CJK run becomes the phrase of its pairs (:func:`query_terms`), so any substring of two
characters or more is found, in order; one character is found as itself.

Traditional and simplified characters meet: Chinese text is converted to simplified (OpenCC
``t2s``) on both sides before the pairs are made, so "臺灣" finds "台湾" and the other way round;
the text a person reads is kept as it was. Hiragana, katakana and hangul get pairs too, unconverted.
OpenCC is imported only when a text holds Han characters.

Accents: SQLite's tokenizer (unicode61, remove_diacritics 2) folds the accents of Latin letters
but not of Greek ones or Cyrillic ё, and PostgreSQL's ``english`` configuration folds none, so
"ΑΘΗΝΑ" (on-screen text is often in capitals, which Greek writes without accents) did not find
"Αθήνα", nor "елка" "ёлка", nor on PostgreSQL "cafe" "café" (and in a PostgreSQL database of the
C locale, "αθηνα" not "ΑΘΗΝΑ": it lowercases ASCII only). A word that :func:`folded` changes is
indexed folded too (:func:`folded_terms`), and a query's words are folded (:func:`query_terms`),
so either spelling finds both. What the backend folds itself (:class:`Backend`) is left to it: a
second token for the same word would count it twice.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_KANA_HANGUL = "\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"
_HAN_RE = re.compile(f"[{_HAN}]")
_RUN_RE = re.compile(f"[{_HAN}{_KANA_HANGUL}]+")


def has_cjk(text: str) -> bool:
    return _RUN_RE.search(text) is not None


@lru_cache(maxsize=1)
def _converter():
    import opencc

    return opencc.OpenCC("t2s")


def simplified(text: str) -> str:
    """Chinese text in simplified characters (unchanged when it holds no Han character)."""
    return _converter().convert(text) if _HAN_RE.search(text) else text


def runs(text: str) -> list[str]:
    """The CJK runs of ``text``, simplified, in order."""
    return _RUN_RE.findall(simplified(text)) if has_cjk(text) else []


def pairs(run: str) -> list[str]:
    return [run[i:i + 2] for i in range(len(run) - 1)]


def index_terms(text: str | None) -> str | None:
    """Extra index terms for ``text``: for each CJK run, its characters, then its pairs; None
    when the text has no CJK character (nothing to add)."""
    found = runs(text) if text else []
    if not found:
        return None
    return " ".join(" ".join([*run, *pairs(run)]) for run in found)


def _is_greek(ch: str) -> bool:
    return "\u0370" <= ch <= "\u03ff" or "\u1f00" <= ch <= "\u1fff"


def _is_latin(ch: str) -> bool:
    return ch.isascii() or unicodedata.name(ch, "").startswith("LATIN ")


@dataclass(frozen=True)
class Backend:
    """What a backend's full-text tokenizer folds by itself; :func:`folded` folds the rest."""

    latin_accents: bool = True  # "café" as "cafe" (SQLite's unicode61 with remove_diacritics)
    final_sigma: bool = True  # "ς" as "σ" (unicode61)
    unicode_case: bool = True  # capitals of every script, not ASCII only (PostgreSQL: not in the C locale)

    def form(self, word: str) -> str:
        """``word`` as the backend folds it, as far as :func:`folded` can change it."""
        word = "".join(c.lower() if self.unicode_case or c.isascii() else c for c in word)  # a letter at a time
        return word.replace("ς", "σ") if self.final_sigma else word


SQLITE = Backend()


def postgresql(unicode_case: bool) -> Backend:
    """PostgreSQL's ``english`` configuration: no accent is folded; capitals beyond ASCII are when
    the database's LC_CTYPE is a UTF-8 locale (``unicode_case``), not in the C locale."""
    return Backend(latin_accents=False, final_sigma=False, unicode_case=unicode_case)


def folded(word: str, backend: Backend = SQLITE) -> str:
    """``word`` without the accents of its Greek letters (tonos, dialytika, breathings), with
    Cyrillic ё as е and Greek final ς as σ; and what ``backend`` does not fold itself: the
    accents of Latin letters, capitals. Other letters (й, ї, ł, ...) are left as they are."""
    if word.isascii():
        return word
    out: list[str] = []
    for ch in unicodedata.normalize("NFD", word):
        if out and unicodedata.combining(ch):
            base = out[-1]
            if _is_greek(base) or (ch == "\u0308" and base in "еЕ") or \
                    (not backend.latin_accents and _is_latin(base)):
                continue
        out.append(ch)
    word = unicodedata.normalize("NFC", "".join(out))
    return (word if backend.unicode_case else word.lower()).replace("ς", "σ")  # lower() makes a final Σ ς


def folded_terms(text: str | None, backend: Backend = SQLITE) -> str | None:
    """The words of ``text`` that ``backend`` would index otherwise than :func:`folded` makes
    them, folded, each once; None when there are none."""
    if not text or text.isascii():
        return None
    found = []
    for word in text.split():
        fold = folded(word, backend)
        if backend.form(fold) != backend.form(word) and fold not in found:
            found.append(fold)
    return " ".join(found) or None


def query_terms(word: str, backend: Backend = SQLITE) -> tuple[list[str], list[str]]:
    """A query word split into (words for the backend, folded for it (:func:`folded`), CJK
    phrases): each phrase is a run's pairs joined by spaces (or the one character of a
    one-character run)."""
    if not has_cjk(word):
        return [folded(word, backend)], []
    text = simplified(word)
    plain = [folded(w, backend) for w in _RUN_RE.split(text) if w.strip()]
    phrases = [" ".join(pairs(run)) if len(run) > 1 else run for run in _RUN_RE.findall(text)]
    return plain, phrases
