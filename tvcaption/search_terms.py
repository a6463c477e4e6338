"""Index terms for scripts written without spaces (Chinese, Japanese, Korean), the same on both backends.

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
"""

from __future__ import annotations

import re
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


def query_terms(word: str) -> tuple[list[str], list[str]]:
    """A query word split into (words for the backend as they are, CJK phrases): each phrase is
    a run's pairs joined by spaces (or the one character of a one-character run)."""
    if not has_cjk(word):
        return [word], []
    text = simplified(word)
    plain = [w for w in _RUN_RE.split(text) if w.strip()]
    phrases = [" ".join(pairs(run)) if len(run) > 1 else run for run in _RUN_RE.findall(text)]
    return plain, phrases
