"""SynthTV's caption grammar: slot vocabularies with synonyms, paraphrase generation, parsing.

A clip's ground truth is one or two *events*, each a dict of slots
``{kind, colour, size, action, position}``. :func:`paraphrases` writes many reference captions
for it (synonyms, word orders, connectors); :func:`parse_caption` reads any caption back into
events with the same synonyms, and :func:`slot_accuracy` scores a caption against the slots.
Captions are lowercase; parsing also works after punctuation has been stripped.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

# canonical slot value -> surface forms (the first is the plain one)
KINDS: dict[str, tuple[str, ...]] = {
    "cat": ("cat", "kitten", "kitty"),
    "cup": ("cup", "mug", "coffee cup"),
    "rocket": ("rocket", "missile", "space rocket"),
    "astronaut": ("astronaut", "spacewoman", "woman in a spacesuit"),
    "cameraman": ("cameraman", "photographer", "man with a camera"),
    "horse": ("horse", "pony", "stallion"),
    "coin": ("coin", "medallion"),
    "motorcycle": ("motorcycle", "motorbike", "bike"),
    "planet": ("planet", "globe", "orb"),
    "flag": ("flag", "banner", "striped flag"),
}
COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "scarlet"),
    "green": ("green",),
    "blue": ("blue",),
    "yellow": ("yellow", "golden"),
    "white": ("white",),
    "purple": ("purple", "violet"),
}
SIZES: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "big": ("big", "large", "huge"),
}
# action -> (present tense, -ing form) pairs
ACTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "move_left": (("moves left", "moving left"), ("moves to the left", "moving to the left"),
                  ("slides left", "sliding left"), ("goes left", "going left"),
                  ("travels to the left", "travelling to the left")),
    "move_right": (("moves right", "moving right"), ("moves to the right", "moving to the right"),
                   ("slides right", "sliding right"), ("goes right", "going right"),
                   ("travels to the right", "travelling to the right")),
    "move_up": (("moves up", "moving up"), ("rises", "rising"), ("goes up", "going up"),
                ("slides upward", "sliding upward"), ("floats up", "floating up")),
    "move_down": (("moves down", "moving down"), ("falls", "falling"), ("goes down", "going down"),
                  ("slides downward", "sliding downward"), ("sinks", "sinking")),
    "grow": (("grows", "growing"), ("gets bigger", "getting bigger"), ("expands", "expanding"),
             ("enlarges", "enlarging")),
    "shrink": (("shrinks", "shrinking"), ("gets smaller", "getting smaller"), ("contracts", "contracting")),
    "spin": (("spins", "spinning"), ("rotates", "rotating"), ("turns around", "turning around"),
             ("twirls", "twirling")),
    "bounce": (("bounces", "bouncing"), ("hops", "hopping"), ("jumps up and down", "jumping up and down")),
    "appear": (("appears", "appearing"), ("shows up", "showing up"), ("fades in", "fading in"),
               ("materializes", "materializing")),
    "disappear": (("disappears", "disappearing"), ("vanishes", "vanishing"), ("fades away", "fading away"),
                  ("fades out", "fading out")),
    "shake": (("shakes", "shaking"), ("wobbles", "wobbling"), ("jiggles", "jiggling"),
              ("trembles", "trembling")),
}
POSITIONS: dict[str, tuple[str, ...]] = {
    "top_left": ("in the top left corner", "in the upper left corner", "at the top left"),
    "top_right": ("in the top right corner", "in the upper right corner", "at the top right"),
    "bottom_left": ("in the bottom left corner", "in the lower left corner", "at the bottom left"),
    "bottom_right": ("in the bottom right corner", "in the lower right corner", "at the bottom right"),
    "center": ("in the center", "in the middle", "in the centre of the screen"),
    "top": ("along the top", "at the top", "near the top of the screen"),
    "bottom": ("along the bottom", "at the bottom", "near the bottom of the screen"),
    "left": ("on the left", "on the left side", "along the left edge"),
    "right": ("on the right", "on the right side", "along the right edge"),
}
# where each action can happen (position slot values)
IN_PLACE_POSITIONS = ("top_left", "top_right", "bottom_left", "bottom_right", "center")
HORIZONTAL_POSITIONS = ("top", "center", "bottom")
VERTICAL_POSITIONS = ("left", "center", "right")


def positions_for(action: str) -> tuple[str, ...]:
    if action in ("move_left", "move_right"):
        return HORIZONTAL_POSITIONS
    if action in ("move_up", "move_down"):
        return VERTICAL_POSITIONS
    return IN_PLACE_POSITIONS


SLOT_NAMES = ("kind", "colour", "size", "action", "position", "order")

# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------

# Single-event templates. {a} article, {s} size, {c} colour, {k} kind, {v} present verb phrase,
# {g} -ing phrase, {p} position phrase ("" when the position is not said); "present" ones can be
# used inside "X after Y" / "X before Y".
_TEMPLATES = (
    ("{a} {s} {c} {k} {v}{P}", True),
    ("{a} {s} {c} {k}{P} {v}", True),
    ("{Pc}{a} {s} {c} {k} {v}", True),
    ("{a} {s} {c} {k} is {g}{P}", False),
    ("there is {a} {s} {c} {k} {g}{P}", False),
    ("{a} {c} {k} that is {s} {v}{P}", True),
    ("{a} {s} {k} in {c} {v}{P}", True),
    ("we see {a} {s} {c} {k} that {v}{P}", False),
    ("{a} {k}, {s} and {c}, {v}{P}", True),
    ("{a} {s} {k} colored {c} {v}{P}", True),
    ("{Pc}{a} {s} {c} {k} is {g}", False),
    ("{G}{P} is {a} {s} {c} {k}", False),
)
_CONNECTORS = (
    "{1}, then {2}",
    "{1} and then {2}",
    "first {1}, then {2}",
    "{1}; after that, {2}",
    "{1}, and afterwards {2}",
    "{2} after {1}",
    "{1} before {2}",
)


def _article(next_word: str, definite: bool) -> str:
    if definite:
        return "the"
    return "an" if next_word[:1] in "aeiou" else "a"


def _clause(event: dict, say_position: bool, rng: np.random.Generator, present_only: bool = False) -> str:
    options = [t for t, present in _TEMPLATES if present or not present_only]
    template = options[int(rng.integers(len(options)))]
    k = _pick(KINDS[event["kind"]], rng)
    c = _pick(COLOUR_WORDS[event["colour"]], rng)
    s = _pick(SIZES[event["size"]], rng)
    v, g = ACTIONS[event["action"]][int(rng.integers(len(ACTIONS[event["action"]])))]
    p = _pick(POSITIONS[event["position"]], rng) if say_position else ""
    text = template.format(a="{a}", s=s, c=c, k=k, v=v, g=g, G=g, P=(" " + p) if p else "",
                           Pc=(p + ", ") if p else "")
    # article agrees with the word after it; "the" sometimes
    head = text.split("{a}", 1)[1].split()[0].strip(",") if "{a}" in text else ""
    text = text.replace("{a}", _article(head, definite=rng.random() < 0.2), 1)
    return " ".join(text.split())


def _pick(options: tuple[str, ...], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def caption(events: list[dict], say_position: bool, rng: np.random.Generator) -> str:
    """One random caption for one or two events (in temporal order)."""
    if len(events) == 1:
        return _clause(events[0], say_position, rng)
    conn = _pick(_CONNECTORS, rng)
    present_only = " after " in conn or " before " in conn
    c1 = _clause(events[0], say_position, rng, present_only)
    c2 = _clause(events[1], say_position, rng, present_only)
    return conn.replace("{1}", c1).replace("{2}", c2)


MAX_WORDS = 30  # the model's caption length (paper: captions cut at 30 words)


def paraphrases(events: list[dict], say_position: bool, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct reference captions of at most MAX_WORDS words (fewer only if the grammar
    cannot make that many)."""
    seen: dict[str, None] = {}
    tries = 0
    while len(seen) < n and tries < n * 50:
        text = caption(events, say_position, rng)
        if len(text.split()) <= MAX_WORDS:
            seen.setdefault(text, None)
        tries += 1
    return list(seen)


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _norm(text: str) -> str:
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^a-z0-9 ]+", " ", text)
    return " ".join(text.split())


@lru_cache(maxsize=None)
def _lexicon(table: str) -> list[tuple[str, str]]:
    """(surface phrase, canonical) pairs, longest phrase first."""
    if table == "kind":
        src = KINDS
    elif table == "colour":
        src = COLOUR_WORDS
    elif table == "size":
        src = SIZES
    elif table == "action":
        src = {a: tuple(p for pair in forms for p in pair) for a, forms in ACTIONS.items()}
    elif table == "position":
        src = POSITIONS
    else:  # pragma: no cover
        raise KeyError(table)
    pairs = [(_norm(s), canon) for canon, forms in src.items() for s in forms]
    return sorted(pairs, key=lambda p: -len(p[0]))


def _take(clause: str, table: str) -> tuple[str | None, str]:
    """Find the first (leftmost, then longest) phrase of ``table`` in ``clause``; blank it out."""
    best: tuple[int, int, str] | None = None
    for phrase, canon in _lexicon(table):
        m = re.search(r"(?<![a-z0-9])" + re.escape(phrase) + r"(?![a-z0-9])", clause)
        if m and (best is None or m.start() < best[0] or (m.start() == best[0] and m.end() > best[1])):
            best = (m.start(), m.end(), canon)
    if best is None:
        return None, clause
    start, end, canon = best
    return canon, clause[:start] + " " * (end - start) + clause[end:]


def parse_clause(text: str) -> dict:
    """Slots of one event clause; a slot the clause does not name is None."""
    clause = " " + _norm(text) + " "
    out: dict[str, str | None] = {}
    # positions and multi-word kinds first: they contain words the other tables use
    for table in ("position", "kind", "action", "colour", "size"):
        out[table], clause = _take(clause, table)
    return out


_SPLIT = re.compile(r"\b(?:and then|then|after that|and afterwards|afterwards|before|after)\b")


def parse_caption(text: str) -> list[dict]:
    """Events named by a caption, in the temporal order the caption states."""
    norm = _norm(text)
    norm = re.sub(r"^first\b", "", norm).strip()
    m = _SPLIT.search(norm)
    if not m:
        return [parse_clause(norm)] if norm else []
    left, right = norm[: m.start()], norm[m.end():]
    left = re.sub(r"\band\s*$", "", left.strip())
    if m.group(0) == "after":
        clauses = [right, left]
    else:
        clauses = [left, right]
    events = [parse_clause(c) for c in clauses if c.strip()]
    # a third event: keep the rest parsed too (rarely produced by a model)
    if len(clauses) == 2 and _SPLIT.search(clauses[1]):
        events = [events[0]] + parse_caption(clauses[1])
    return events


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


def events_of(slots: dict) -> list[dict]:
    """The stored slots' events, in temporal order."""
    first = {k: slots.get(k) for k in ("kind", "colour", "size", "action", "position")}
    second = slots.get("second")
    return [first] + ([dict(second)] if second else [])


def _match(parsed: list[dict], refs: list[dict]) -> int:
    return sum(
        int(p.get(s) is not None and p.get(s) == r.get(s))
        for p, r in zip(parsed, refs)
        for s in ("kind", "colour", "size", "action")
    )


def slot_accuracy(caption_text: str, slots: dict) -> dict[str, bool | None]:
    """Score a caption against a clip's stored slots.

    Returns ``{kind, colour, size, action, position, order}``: True/False for each slot the clip
    has; ``None`` where a slot does not apply (``order`` for one-event clips whose caption names
    one event; ``position`` when the references do not say it and the caption does not either).
    With two events, kind/colour/size/action must be right for both, under the better of the two
    event alignments; ``order`` says whether the caption's order is the true one.
    """
    refs = events_of(slots)
    parsed = parse_caption(caption_text)
    aligned = parsed[: len(refs)]
    order: bool | None = None
    if len(refs) == 2:
        if len(parsed) < 2:
            order = False
        else:
            straight = _match(aligned, refs)
            swapped = _match(aligned[::-1], refs)
            same = _match([refs[1], refs[0]], refs) == _match(refs, refs)  # indistinguishable events
            order = straight > swapped or (straight == swapped and same and straight > 0)
            if swapped > straight:
                aligned = aligned[::-1]
    elif len(parsed) > 1:
        order = False
    result: dict[str, bool | None] = {}
    for s in ("kind", "colour", "size", "action"):
        result[s] = len(aligned) == len(refs) and all(
            p.get(s) is not None and p.get(s) == r.get(s) for p, r in zip(aligned, refs)
        )
    said = [p.get("position") for p in aligned]
    if slots.get("says_position"):
        result["position"] = len(aligned) == len(refs) and all(
            p == r.get("position") for p, r in zip(said, refs)
        )
    elif any(p is not None for p in said):
        # the caption states a place the references left out: right if that is where it happened
        result["position"] = all(p is None or p == r.get("position") for p, r in zip(said, refs))
    else:
        result["position"] = None
    result["order"] = order
    return result
