"""Search latency on a large archive: tvcaption's ranked full-text search against a LIKE scan.

Builds an archive of N captions (default 1,000,000: 2,000 recordings x 500 scenes, 1-3 tags per
scene) on each backend through the project's own schema code: the Alembic migrations run by
``tvcaption.db.migrate`` / ``tvcaption.db.store.connect``, so the FTS5 table (SQLite) and the
tsvector column with its GIN index (PostgreSQL) are the real ones. Captions are sentences from a
small grammar (subjects, verbs, objects, places, topics, times, camera shots, a few thousand
generated proper names and some rare words, Zipf-distributed) drawn with a seeded RNG, so every
run builds the same archive.

How the rows go in (``--fill``):

- ``backfill`` (default, fast): migrate to revision 0001 (plain tables), bulk-insert recordings,
  scenes, captions and tags (SQLite ``executemany``, PostgreSQL ``COPY``, one transaction per
  100 recordings), then migrate to head: revision 0002 creates the search index, its triggers
  and fills the index from the rows already there with its own SQL. The index holds exactly what
  the triggers would have written.
- ``triggers``: migrate to head first, then insert one recording per transaction (what
  ``Store.save_result`` does), so the index triggers fire for every row. Slower; it measures the
  indexing path rather than the search.

PostgreSQL gets ``VACUUM ANALYZE`` after the build (autovacuum would do it on a live server);
SQLite gets nothing (tvcaption never runs ANALYZE).

Queries: a fixed seeded set (``--queries``, default 200) of common words, rare words, two-word
phrases, other word forms (stemming: "danced" finds "dancing"), tag words, and strings with
quotes and FTS operators. Each goes through ``tvcaption.db.search.search`` (what ``tvcaption
search`` runs) with its default limit, after ``--warmup`` untimed queries of another seed; each
call is timed with ``time.perf_counter``. The baseline is the query's first word (stop words
and punctuation skipped) as a plain scan of the captions table:

- ``like_limit``: ``SELECT scene_id, text FROM captions WHERE text LIKE '%word%' LIMIT <limit>``
  (unranked; it stops after <limit> matches, so it is fast for common words and scans the whole
  table for rare ones).
- ``like_all``: the same without LIMIT, every matching row fetched (always a full scan; the
  honest counterpart of a ranked search, which must look at every match to rank them).

PostgreSQL's LIKE is case-sensitive, so it uses ILIKE there (SQLite's LIKE ignores ASCII case).
The LIKE baseline sees captions only; search sees captions and tags.

Results: ``--out`` (default ``bench/results/search_latency.json``) and a small table on stdout.
Per backend: build timings and database size, median / p95 / max of ``search``, ``like_limit``
and ``like_all``, their p95 ratios, search by query kind, ``search_cost`` (a least-squares fit
of search time against the number of matching scenes: ranking looks at every match), the
slowest searches (on SQLite with ``anatomy``: the FTS5 match alone and bm25 ranking on the
index alone beside the whole search, best of 3), and every query with its hits, total matches
and times. Machine: CPU, cores, load average (other processes share the cores), Python, SQLite
and PostgreSQL versions.
Target: search p95 < 20 ms on 1M captions in SQLite.

    python bench/search_latency.py                                    # 1M captions, both backends
    python bench/search_latency.py --captions 50000 --backends sqlite # a quick run
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_OUT = HERE / "results" / "search_latency.json"
TARGET_P95_MS = 20.0  # issue 5: search p95 under 20 ms on 1M captions in SQLite
SCENES_PER_RECORDING = 500
RECORDINGS_PER_TRANSACTION = 100
MODEL_NAME = "bench-grammar"
BACKENDS = ("sqlite", "postgresql")

# --------------------------------------------------------------------------------------------
# The caption grammar
# --------------------------------------------------------------------------------------------
SUBJECTS = """
man woman boy girl reporter crowd player chef dog child singer soldier teacher doctor farmer
driver student politician presenter dancer cat horse fisherman musician athlete cyclist nurse
scientist firefighter pilot worker couple family team band audience guard judge lawyer priest
baker sailor actor actress journalist commentator referee goalkeeper runner swimmer skier
climber tourist vendor shopkeeper mechanic engineer artist painter photographer cameraman host
guest interviewer protester spokesperson minister mayor king queen prince monkey elephant bird
lion bear cow sheep goat penguin dolphin robot waiter gardener carpenter plumber electrician
surgeon astronaut magician clown juggler acrobat boxer wrestler jockey
""".split()
ADJECTIVES = """
young old elderly tall small smiling angry happy tired blond bearded masked red blue green
yellow black white grey brown orange purple pink famous local foreign nervous excited quiet
loud busy lonely wet muddy injured uniformed hooded barefoot cheerful serious worried confident
curious sleepy hungry proud shy brave calm strong elegant dusty sunburnt freckled
""".split()
THING_ADJECTIVES = """
red blue green yellow black white old new small large wooden broken shiny heavy golden silver
plastic metal paper tiny huge dirty clean empty full striped
""".split()
# (base form, what it takes as an object or None); the "-ed" forms feed the stemming queries
VERBS = [
    ("talk", None), ("walk", "animal"), ("sing", "song"), ("run", None), ("dance", None), ("cook", "food"),
    ("play", "instrument|ball"), ("speak", None), ("drive", "vehicle"), ("ride", "vehicle|animal"),
    ("swim", None), ("jump", None), ("read", "text"), ("write", "text"), ("paint", "thing|animal"),
    ("laugh", None), ("cry", None), ("shout", None), ("wave", "thing"), ("point", None), ("clap", None),
    ("eat", "food"), ("drink", "drink"), ("sleep", None), ("sit", None), ("stand", None),
    ("climb", "climb"), ("throw", "ball|thing"), ("catch", "ball|animal"), ("kick", "ball"),
    ("push", "vehicle|thing"), ("pull", "thing"), ("carry", "thing|food"), ("hold", "thing|instrument"),
    ("open", "thing"), ("watch", "person|animal"), ("listen", None), ("smile", None), ("argue", None),
    ("celebrate", None), ("explain", "topic"), ("interview", "person"), ("report", "topic"),
    ("present", "topic"), ("announce", "topic"), ("perform", "song"), ("practise", "instrument|song"),
    ("train", None), ("repair", "vehicle|thing"), ("build", "thing"), ("clean", "vehicle|thing"),
    ("wash", "vehicle|animal"), ("cut", "food"), ("fish", None), ("chase", "animal|ball"),
    ("hug", "person|animal"), ("greet", "person"), ("visit", "person"), ("cross", "cross"),
    ("follow", "person|animal"), ("win", "prize"), ("score", "goal"), ("fly", "fly"), ("sail", None),
    ("row", "boat"), ("paddle", None), ("skate", None), ("ski", None), ("surf", None), ("dive", None),
    ("march", None), ("protest", None), ("pray", None), ("vote", None), ("sign", "text"),
    ("deliver", "text|food"), ("sell", "food|thing"), ("buy", "food|thing"), ("pack", "thing"),
    ("load", "vehicle"), ("plant", "crop"), ("harvest", "crop"), ("feed", "animal"),
    ("examine", "thing|animal"), ("inspect", "vehicle|thing"), ("test", "vehicle|thing"),
    ("measure", "thing"), ("mix", "food"), ("pour", "drink"), ("bake", "food"), ("fry", "food"),
    ("grill", "food"), ("serve", "food|drink"), ("taste", "food|drink"), ("juggle", "ball|thing"),
    ("knit", "knit"), ("whistle", "song"), ("yawn", None), ("stretch", None), ("kneel", None),
    ("salute", None), ("yodel", None), ("hum", "song"), ("rehearse", "song"), ("sketch", "thing|person"),
    ("polish", "thing|vehicle"),
]
IRREGULAR_PAST = {"sing": "sang", "run": "ran", "speak": "spoke", "drive": "drove", "ride": "rode",
                  "swim": "swam", "read": "read", "write": "wrote", "eat": "ate", "drink": "drank",
                  "sleep": "slept", "sit": "sat", "stand": "stood", "throw": "threw", "catch": "caught",
                  "hold": "held", "build": "built", "cut": "cut", "win": "won", "fly": "flew",
                  "sell": "sold", "buy": "bought", "feed": "fed", "kneel": "knelt"}
DOUBLED = {"run", "swim", "clap", "sit", "cut", "hug", "win", "knit", "hum"}
# objects by kind, common first; "person" objects are the subjects. The rare words of a kind
# come up in about 3% of its objects.
OBJECTS = {
    "song": "song anthem ballad lullaby hymn chorus melody",
    "instrument": "guitar piano violin drum trumpet flute saxophone cello harmonica",
    "ball": "ball football basketball frisbee volleyball",
    "food": "cake pizza bread soup rice noodles salad fish pasta sandwich omelette vegetables pie",
    "drink": "coffee tea wine water juice beer lemonade milk",
    "vehicle": "car bicycle truck bus tractor motorcycle van scooter ambulance",
    "boat": "boat canoe yacht raft",
    "animal": "dog horse cat sheep cow goat pony donkey parrot",
    "text": "book letter newspaper poem report map menu contract postcard",
    "thing": ("box bag suitcase umbrella hat kite flag sign banner camera phone microphone laptop ladder "
              "rope basket lamp mirror clock candle chair table fence wall door window poster painting "
              "trophy helmet scarf blanket"),
    "climb": "ladder tree wall mountain hill staircase rope",
    "cross": "bridge street river road square border",
    "prize": "trophy medal match race game title cup",
    "goal": "goal point try basket",
    "crop": "tree corn wheat grapes potatoes flowers tulips apples",
    "knit": "scarf sweater hat blanket sock",
    "fly": "kite plane drone glider",
}
OBJECTS = {kind: words.split() for kind, words in OBJECTS.items()}
MASS_NOUNS = {"bread", "soup", "rice", "noodles", "salad", "fish", "pasta", "vegetables", "coffee", "tea",
              "wine", "water", "juice", "beer", "lemonade", "milk", "corn", "wheat", "grapes", "potatoes",
              "flowers", "tulips", "apples"}
RARE_WORDS = {
    "instrument": ("accordion harpsichord sousaphone xylophone theremin didgeridoo dulcimer mandolin ukulele "
                   "zither tambourine clarinet bassoon oboe harp banjo piccolo bagpipes"),
    "animal": ("marmoset tarantula ocelot quokka narwhal platypus armadillo axolotl chameleon iguana pangolin "
               "pelican vulture walrus flamingo hedgehog anteater llama"),
    "thing": ("origami periscope sextant abacus barometer compass crossbow kaleidoscope monocle hourglass "
              "metronome stethoscope telescope sundial quiver gramophone chandelier scarecrow"),
    "vehicle": "zeppelin bobsleigh dirigible hovercraft unicycle toboggan rickshaw",
    "boat": "gondola kayak catamaran trimaran dinghy",
    "food": "risotto goulash baklava ratatouille sauerkraut tiramisu couscous",
}
RARE_WORDS = {kind: words.split() for kind, words in RARE_WORDS.items()}
PLACES = """
stage park kitchen studio field stadium street market beach forest classroom office hospital
airport station bridge church museum library garden farm factory restaurant bar concert
courtroom parliament mountain desert river lake harbour village city square rooftop tunnel
highway subway stairway corridor warehouse gym pool rink track arena temple castle palace zoo
aquarium laboratory bakery cafe prison barracks vineyard orchard meadow glacier volcano canyon
cathedral lighthouse windmill monastery observatory
""".split()
PLACE_PREPOSITION = {**{p: "on" for p in "stage field street beach bridge mountain rooftop track highway farm "
                        "glacier square".split()},
                     **{p: "at" for p in "airport station concert zoo".split()}}
IRREGULAR_PLURAL = {"man": "men", "woman": "women", "child": "children", "fisherman": "fishermen",
                    "sheep": "sheep", "spokesperson": "spokespeople", "cameraman": "cameramen",
                    "audience": "audiences", "family": "families"}
TOPICS = """
weather election economy football budget floods wildfire strike vaccine inflation traffic
tourism festival earthquake drought harvest housing pensions taxes trade immigration energy
climate tennis cricket olympics parliament referendum protest summit ceasefire storm heatwave
hurricane pandemic unemployment education healthcare transport railways airlines oil prices
markets banking technology science space archaeology fashion music cinema theatre literature
""".split()
TIMES = ["at night", "at sunset", "in the morning", "during the day", "at dawn", "in winter",
         "in summer", "during a storm", "after the match", "before the show", "in the evening",
         "at midnight", "in autumn", "in spring", "during the rush hour"]
SHOTS = ["close-up of", "aerial view of", "wide shot of", "slow motion of", "black and white footage of",
         "archive footage of", "split screen of", "time-lapse of", "handheld shot of", "tracking shot of"]
TAG_LABELS = """
microphone|stage|television|golden retriever|soccer ball|stadium|park bench|jersey|suit|Windsor tie|
sunglasses|cowboy hat|umbrella|bicycle|mountain bike|sports car|taxi|school bus|trolleybus|
passenger car|airliner|warplane|speedboat|canoe|lakeside|seashore|alp|volcano|valley|cliff|pizza|
cheeseburger|espresso|wine bottle|plate|restaurant|grocery store|library|church|palace|monastery|
barn|greenhouse|fountain|suspension bridge|steel arch bridge|dam|pier|traffic light|street sign|
scoreboard|basketball|volleyball|tennis ball|racket|ski|snowmobile|tractor|harvester|ox|sorrel|
tabby|Egyptian cat|Labrador retriever|German shepherd|African elephant|lion|brown bear|gorilla|
macaw|flamingo|goldfish|great white shark|grand piano|acoustic guitar|electric guitar|violin|drum|
trombone|cornet|accordion|harmonica|laptop|desktop computer|monitor|cellular telephone|notebook|
envelope|book jacket|comic book|web site|menu|military uniform|lab coat|apron|academic gown|wig|
mask|crash helmet|football helmet|pickelhaube|abaya|kimono|poncho|sweatshirt|cardigan|trench coat|
fur coat|bow tie|stole|bulletproof vest|bannister|window shade|studio couch|desk|dining table|
throne|barber chair|rocking chair|altar|pulpit|stretcher|ambulance|fire engine|police van|
""".replace("\n", "").strip("|").split("|")
SYLLABLES = """ka ro mi ta ve lo su ni ra de bo ga li mo te za fi no pa lu ri sa ko be da
mu ne to vi ha jo ke ma di so ru ba le yu""".split()
NAMES = 3000  # generated proper names: people and towns, the long tail of the vocabulary


def zipf(n: int, s: float = 1.0) -> list[float]:
    return [1.0 / (i + 1) ** s for i in range(n)]


class Choice:
    """Items drawn with fixed weights (the first items most often when weights are Zipf)."""

    def __init__(self, items: Sequence[Any], weights: Sequence[float] | None = None) -> None:
        self.items = list(items)
        weights = list(weights) if weights is not None else [1.0] * len(self.items)
        self.cum: list[float] = []
        total = 0.0
        for w in weights:
            total += w
            self.cum.append(total)
        self.total = total

    def __call__(self, rng: random.Random) -> Any:
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.total)]


def third_person(verb: str) -> str:
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def gerund(verb: str) -> str:
    if verb in DOUBLED:
        return verb + verb[-1] + "ing"
    if verb.endswith("e") and not verb.endswith("ee"):
        return verb[:-1] + "ing"
    return verb + "ing"


def past(verb: str) -> str:
    if verb in IRREGULAR_PAST:
        return IRREGULAR_PAST[verb]
    if verb in DOUBLED:
        return verb + verb[-1] + "ed"
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2] not in "aeiou":
        return verb[:-1] + "ied"
    return verb + "ed"


def plural(noun: str) -> str:
    if noun in IRREGULAR_PLURAL:
        return IRREGULAR_PLURAL[noun]
    return third_person(noun)  # the same spelling rules


def make_names(rng: random.Random, count: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        name = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 3, 3, 4))))
        name = name + rng.choice(("", "", "n", "r", "s", "k", "l"))
        if name not in seen:
            seen.add(name)
            names.append(name.capitalize())
    return names


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


@dataclass
class Grammar:
    """Sentences like "a tired chef is cooking soup in a kitchen at night"."""

    seed: int
    names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.names = make_names(random.Random(f"names-{self.seed}"), NAMES)
        self.subject = Choice(SUBJECTS, zipf(len(SUBJECTS), 1.0))
        self.adjective = Choice(ADJECTIVES, zipf(len(ADJECTIVES), 0.7))
        self.thing_adjective = Choice(THING_ADJECTIVES, zipf(len(THING_ADJECTIVES), 0.7))
        self.verb = Choice(VERBS, zipf(len(VERBS), 0.8))
        self.objects = {kind: Choice(words, zipf(len(words), 0.9)) for kind, words in OBJECTS.items()}
        self.objects["person"] = self.subject
        self.rare = {kind: Choice(words, zipf(len(words), 1.2)) for kind, words in RARE_WORDS.items()}
        self.place = Choice(PLACES, zipf(len(PLACES), 0.9))
        self.topic = Choice(TOPICS, zipf(len(TOPICS), 0.9))
        self.time = Choice(TIMES)
        self.shot = Choice(SHOTS, zipf(len(SHOTS), 1.0))
        self.name = Choice(self.names, zipf(len(self.names), 1.1))
        self.tag = Choice(TAG_LABELS, zipf(len(TAG_LABELS), 1.0))
        self.templates = Choice(
            (self._progressive, self._simple, self._pair, self._named, self._news, self._view,
             self._interview, self._group),
            (30, 20, 8, 10, 10, 8, 6, 8))

    # pieces ----------------------------------------------------------------------------------
    def _np(self, rng: random.Random, adjective: float = 0.4) -> str:
        noun = self.subject(rng)
        words = f"{self.adjective(rng)} {noun}" if rng.random() < adjective else noun
        return f"{article(words)} {words}"

    def _obj(self, rng: random.Random, kinds: str) -> str:
        kind = rng.choice(kinds.split("|"))
        if kind == "topic":
            return f" the {self.topic(rng)}"
        if kind in self.rare and rng.random() < 0.03:
            noun = self.rare[kind](rng)
        else:
            noun = self.objects[kind](rng)
        if kind == "person":
            return " " + self._np(rng, 0.3) if rng.random() < 0.8 else f" {self.name(rng)}"
        if noun in MASS_NOUNS:
            return f" {noun}"
        if rng.random() < 0.2:
            noun = f"{self.thing_adjective(rng)} {noun}"
        return f" {rng.choice((article(noun), article(noun), 'the'))} {noun}"

    def _where(self, rng: random.Random) -> str:
        r = rng.random()
        if r < 0.45:
            place = self.place(rng)
            return f" {PLACE_PREPOSITION.get(place, 'in')} {article(place)} {place}"
        if r < 0.6:
            return f" in {self.name(rng)}"
        return ""

    def _when(self, rng: random.Random) -> str:
        return f" {self.time(rng)}" if rng.random() < 0.15 else ""

    def _shot(self, rng: random.Random) -> str:
        return f"{self.shot(rng)} " if rng.random() < 0.1 else ""

    def _verb_object(self, rng: random.Random, form: Callable[[str], str]) -> str:
        verb, kinds = self.verb(rng)
        return form(verb) + (self._obj(rng, kinds) if kinds and rng.random() < 0.75 else "")

    # templates -------------------------------------------------------------------------------
    def _progressive(self, rng):
        shot = self._shot(rng)  # "close-up of a man singing", "a man is singing"
        return (f"{shot}{self._np(rng)} {'' if shot else 'is '}{self._verb_object(rng, gerund)}"
                f"{self._where(rng)}{self._when(rng)}")

    def _simple(self, rng):
        return f"{self._np(rng)} {self._verb_object(rng, third_person)}{self._where(rng)}{self._when(rng)}"

    def _pair(self, rng):
        return f"{self._np(rng)} and {self._np(rng, 0.2)} are {self._verb_object(rng, gerund)}{self._where(rng)}"

    def _named(self, rng):
        return f"{self.name(rng)} {self._verb_object(rng, third_person)}{self._where(rng)}{self._when(rng)}"

    def _news(self, rng):
        anchor = rng.choice(("a news anchor", "a presenter", "a reporter", "a weather presenter"))
        return f"{anchor} talks about the {self.topic(rng)} in {self.name(rng)}"

    def _view(self, rng):
        place = self.place(rng)
        return f"{rng.choice(SHOTS)} {article(place)} {place}{self._when(rng) or ' ' + self.time(rng)}"

    def _interview(self, rng):
        return f"interview with {self._np(rng, 0.6)} about the {self.topic(rng)}"

    def _group(self, rng):
        return (f"a group of {plural(self.subject(rng))} are {self._verb_object(rng, gerund)}"
                f"{self._where(rng)}")

    # output ----------------------------------------------------------------------------------
    def caption(self, rng: random.Random) -> str:
        return self.templates(rng)(rng)

    def tags(self, rng: random.Random) -> list[tuple[str, float]]:
        labels: list[str] = []
        for _ in range(rng.choice((1, 2, 2, 3))):
            label = self.tag(rng)
            if label not in labels:
                labels.append(label)
        score = 0.3 + 0.6 * rng.random()
        out = []
        for label in labels:
            out.append((label, round(score, 4)))
            score *= 0.2 + 0.5 * rng.random()
        return out

    def vocabulary(self) -> set[str]:
        """Every word a caption or tag can contain."""
        words: set[str] = set()
        lists = [SUBJECTS, [plural(w) for w in SUBJECTS], ADJECTIVES, THING_ADJECTIVES, PLACES, TOPICS, self.names,
                 *OBJECTS.values(), *RARE_WORDS.values()]
        for item in lists:
            words.update(w.lower() for w in item)
        for verb, _ in VERBS:
            words.update((verb, third_person(verb), gerund(verb)))
        for phrase in (*TIMES, *SHOTS, *TAG_LABELS, "a an the and is are of in on at near outside with about",
                       "talks group interview news anchor presenter reporter weather"):
            words.update(phrase.lower().split())
        return words


# --------------------------------------------------------------------------------------------
# The archive: rows generated chunk by chunk (the same rows for every backend)
# --------------------------------------------------------------------------------------------
@dataclass
class Chunk:
    recordings: list[tuple]  # (id, path, content_hash, duration)
    scenes: list[tuple]  # (id, recording_id, index, start, end, start_frame, end_frame)
    captions: list[tuple]  # (id, scene_id, text, model, score)
    tags: list[tuple]  # (id, scene_id, label, score)


def layout(captions: int, per_recording: int = SCENES_PER_RECORDING) -> tuple[int, int]:
    """(recordings, scenes per recording) for ``captions`` captions, one caption per scene."""
    per = min(per_recording, captions)
    recordings = -(-captions // per)
    return recordings, per


def generate(grammar: Grammar, captions: int, seed: int, words: set[str] | None = None) -> Iterator[Chunk]:
    """Every recording is 'done'; ids are given so that the rows can go in without lookups."""
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


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------
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


def make_queries(grammar: Grammar, count: int, seed: int) -> list[tuple[str, str]]:
    """(kind, query) pairs: a fixed mix of kinds, the words drawn with a seeded RNG.

    common: the 50 most frequent words of the grammar's lists (each once per 50); rare: the rare
    object words and the less frequent two thirds of the generated names; phrase: two words
    (subject + verb, adjective + subject, subject + place); stemmed: past tenses, base forms and
    plurals of words the captions hold in other forms; tag: tag labels; operators: FTS syntax.
    """
    rng = random.Random(f"queries-{seed}")
    common = Deck(SUBJECTS[:15] + [gerund(v) for v, _ in VERBS[:12]] + OBJECTS["thing"][:5] + OBJECTS["food"][:3]
                  + PLACES[:10] + TOPICS[:5], rng)
    rare = Deck([w for words in RARE_WORDS.values() for w in words] + grammar.names[len(grammar.names) // 3:], rng)
    regular = Deck([v for v, _ in VERBS if v not in IRREGULAR_PAST][:40], rng)
    nouns = Deck([w for w in SUBJECTS[:25] if w not in IRREGULAR_PLURAL], rng)
    tags = Deck([t.lower() for t in TAG_LABELS], rng)
    operators = Deck(OPERATOR_QUERIES, rng)
    kinds: list[str] = []
    for kind, share in QUERY_MIX:
        kinds += [kind] * round(share * count)
    kinds = (kinds + ["common"] * count)[:count]
    out = []
    for kind in kinds:
        if kind == "common":
            q = common()
        elif kind == "rare":
            q = rare()
        elif kind == "phrase":
            r = rng.random()
            if r < 0.4:
                q = f"{grammar.subject(rng)} {gerund(grammar.verb(rng)[0])}"
            elif r < 0.7:
                q = f"{grammar.adjective(rng)} {grammar.subject(rng)}"
            else:
                q = f"{grammar.subject(rng)} {grammar.place(rng)}"
        elif kind == "stemmed":
            r = rng.random()
            q = past(regular()) if r < 0.5 else (regular() if r < 0.8 else plural(nouns()))
        elif kind == "tag":
            q = tags()
        else:
            q = operators()
        out.append((kind, q))
    rng.shuffle(out)
    return out


def like_word(query: str) -> str | None:
    """The query's first word for the LIKE baseline: letters and digits only, stop words skipped."""
    from tvcaption.db.search import STOP_WORDS

    for token in re.findall(r"[^\W_]+", query.lower()):
        if token not in STOP_WORDS:
            return token
    return None


# --------------------------------------------------------------------------------------------
# Statistics and machine
# --------------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    data = sorted(values)
    if not data:
        return float("nan")
    pos = (len(data) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def summary(ms: Sequence[float]) -> dict[str, float]:
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 3), "p95_ms": round(percentile(ms, 95), 3),
            "max_ms": round(max(ms), 3), "mean_ms": round(statistics.fmean(ms), 3)}


def cost_fit(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Least-squares search_ms = fixed + per_match * matches over queries matching 1,000+ scenes:
    what one more matching scene costs (ranking looks at every match), and how many matches fit
    in the target."""
    points = [(r["matches"], r["search_ms"]) for r in records if (r.get("matches") or 0) >= 1000]
    if len(points) < 3 or len({m for m, _ in points}) < 2:
        return None
    n = len(points)
    mx = sum(m for m, _ in points) / n
    my = sum(t for _, t in points) / n
    slope = sum((m - mx) * (t - my) for m, t in points) / sum((m - mx) ** 2 for m, _ in points)
    fixed = my - slope * mx
    return {"queries": n, "fixed_ms": round(fixed, 3), "us_per_match": round(slope * 1000, 4),
            "matches_within_target": int((TARGET_P95_MS - fixed) / slope) if slope > 0 and fixed < TARGET_P95_MS
            else None}


def machine() -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import cpu_model, proc_field

    cpu = cpu_model()
    total = proc_field("/proc/meminfo", "MemTotal")  # "24684016 kB"
    mem = round(int(total.split()[0]) / 1024 / 1024, 1) if total else None
    import sqlalchemy

    info = {"cpu": cpu or platform.processor() or None, "cores": os.cpu_count(),
            "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "memory_gib": mem, "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "platform": platform.platform(), "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "sqlalchemy": sqlalchemy.__version__}
    try:
        import psycopg

        info["psycopg"] = f"{psycopg.__version__} ({psycopg.pq.__impl__})"
    except ImportError:
        info["psycopg"] = None
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10)
        if head.returncode == 0:
            info["git_commit"] = head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return info


# --------------------------------------------------------------------------------------------
# Building the archive
# --------------------------------------------------------------------------------------------
COLUMNS = {
    "recordings": ("id", "path", "content_hash", "duration", "status", "model", "indexed_at"),
    "scenes": ("id", "recording_id", "index", "start", "end", "start_frame", "end_frame"),
    "captions": ("id", "scene_id", "text", "model", "score"),
    "tags": ("id", "scene_id", "label", "score"),
}


def _rows(chunk: Chunk, now: datetime | str) -> dict[str, list[tuple]]:
    return {"recordings": [(*r, "done", MODEL_NAME, now) for r in chunk.recordings],
            "scenes": chunk.scenes, "captions": chunk.captions, "tags": chunk.tags}


def _insert_sql(table: str) -> str:
    cols = ", ".join(f'"{c}"' for c in COLUMNS[table])
    return f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(COLUMNS[table]))})"


@dataclass
class Timer:
    seconds: float = 0.0

    def wrap(self, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        while True:
            t = time.perf_counter()
            try:
                chunk = next(chunks)
            except StopIteration:
                self.seconds += time.perf_counter() - t
                return
            self.seconds += time.perf_counter() - t
            yield chunk


def build(backend: str, url: str, chunks: Iterator[Chunk], fill: str) -> dict[str, float]:
    """Create the schema with the project's migrations and fill it; returns the build timings."""
    from tvcaption.db import migrate
    from tvcaption.db.store import connect

    now = datetime.now(timezone.utc)
    gen = Timer()
    chunks = gen.wrap(chunks)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    if fill == "backfill":
        migrate.upgrade(url, "0001")  # the plain tables; 0002 (search) comes after the rows
        times["schema_s"] = time.perf_counter() - t0
        t = time.perf_counter()
        engine = connect(url, migrate=False)
        try:
            if backend == "sqlite":
                _bulk_sqlite(engine, chunks, now)
            else:
                _bulk_postgresql(engine, chunks, now)
        finally:
            engine.dispose()
        times["insert_s"] = time.perf_counter() - t - gen.seconds
        t = time.perf_counter()
        migrate.upgrade(url, "head")  # creates the search index and fills it with its own SQL
        times["index_s"] = time.perf_counter() - t
    else:
        engine = connect(url)  # every revision: the triggers fire for each row below
        times["schema_s"] = time.perf_counter() - t0
        t = time.perf_counter()
        try:
            _per_recording(engine, chunks, now)
        finally:
            engine.dispose()
        times["insert_and_index_s"] = time.perf_counter() - t - gen.seconds
    if backend == "postgresql":
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


def _bulk_sqlite(engine, chunks: Iterator[Chunk], now: datetime) -> None:
    now_text = now.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")  # SQLAlchemy's SQLite format
    raw = engine.raw_connection()
    try:
        cur = raw.driver_connection.cursor()
        for chunk in chunks:
            cur.execute("BEGIN")
            for table, rows in _rows(chunk, now_text).items():
                cur.executemany(_insert_sql(table), rows)
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
                for table, rows in _rows(chunk, now).items():
                    cols = ", ".join(f'"{c}"' for c in COLUMNS[table])
                    with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                conn.commit()
            for table in COLUMNS:  # explicit ids: move the sequences past them
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT coalesce(max(id), 1) FROM {table}))")
            conn.commit()
    finally:
        raw.close()


def _per_recording(engine, chunks: Iterator[Chunk], now: datetime) -> None:
    """One transaction per recording, an executemany per table (as Store.save_result writes)."""
    from sqlalchemy import insert

    from tvcaption.db.schema import Base

    tables = {name: Base.metadata.tables[name] for name in COLUMNS}
    for chunk in chunks:
        rows = _rows(chunk, now)
        by_rec: dict[int, dict[str, list[dict]]] = {}
        scene_rec = {}
        for r in rows["recordings"]:
            by_rec[r[0]] = {"recordings": [dict(zip(COLUMNS["recordings"], r))], "scenes": [], "captions": [],
                            "tags": []}
        for s in rows["scenes"]:
            scene_rec[s[0]] = s[1]
            by_rec[s[1]]["scenes"].append(dict(zip(COLUMNS["scenes"], s)))
        for table in ("captions", "tags"):
            for row in rows[table]:
                by_rec[scene_rec[row[1]]][table].append(dict(zip(COLUMNS[table], row)))
        for rec_rows in by_rec.values():
            with engine.connect().execution_options(tvcaption_write=True) as conn, conn.begin():
                for name, values in rec_rows.items():
                    stmt = insert(tables[name])
                    if conn.dialect.name == "postgresql":  # multi-row INSERTs, as store._insert_rows
                        stmt = stmt.returning(tables[name].c.id)
                    conn.execute(stmt, values)


def database_bytes(backend: str, url: str, engine) -> dict[str, int]:
    if backend == "sqlite":
        from sqlalchemy.engine import make_url

        path = Path(make_url(url).database)
        total = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
        return {"database": total}
    with engine.connect() as conn:
        db = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
        fts = conn.exec_driver_sql("SELECT pg_total_relation_size('scene_fts')").scalar()
    return {"database": int(db), "search_index_table": int(fts)}


def server_version(backend: str, engine) -> str:
    if backend == "sqlite":
        return sqlite3.sqlite_version
    with engine.connect() as conn:
        return conn.exec_driver_sql("SHOW server_version").scalar()


def server_settings(backend: str, engine) -> dict[str, str]:
    """The settings that move read latency: caches, sort memory, JIT."""
    names = (("cache_size", "journal_mode", "mmap_size") if backend == "sqlite" else
             ("shared_buffers", "work_mem", "effective_cache_size", "jit", "max_parallel_workers_per_gather"))
    with engine.connect() as conn:
        if backend == "sqlite":
            return {n: str(conn.exec_driver_sql(f"PRAGMA {n}").scalar()) for n in names}
        return {n: conn.exec_driver_sql(f"SHOW {n}").scalar() for n in names}


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------
def count_matches(backend: str, engine, query: str) -> int | None:
    """How many scenes the query matches (all of them, not just the first page); untimed."""
    from sqlalchemy import func, select

    from tvcaption.db import search as s

    stmt = s.build_search(backend, query, limit=1)
    if stmt is None:
        return 0
    stmt = stmt.order_by(None).limit(None)
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(stmt.subquery())).scalar()


def anatomy(backend: str, engine, query: str, limit: int, repeats: int = 3) -> dict[str, float] | None:
    """Where one slow SQLite search spends its time (best of ``repeats``, untimed otherwise):
    ``match_ms`` finds every matching rowid in the FTS5 index and stops there; ``rank_ms`` also
    scores each with the same bm25 and keeps the best ``limit`` (no join, no caption text);
    ``search_ms`` is the whole ``search`` call. If rank_ms is most of search_ms, the cost is
    scoring every match, which no join order or index on the other tables can remove."""
    if backend != "sqlite":
        return None
    from sqlalchemy import text

    from tvcaption.db import search as s
    from tvcaption.db.schema import SEARCH_TABLE

    expression = s.fts5_query(query)
    if not expression:
        return None
    weights = f"{s.CAPTION_WEIGHT}, {s.TAGS_WEIGHT}"
    match = text(f"SELECT rowid FROM {SEARCH_TABLE} WHERE {SEARCH_TABLE} MATCH :q")
    rank = text(f"SELECT rowid FROM {SEARCH_TABLE} WHERE {SEARCH_TABLE} MATCH :q "
                f"ORDER BY bm25({SEARCH_TABLE}, {weights}) LIMIT {int(limit)}")

    def best(run) -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            run()
            times.append((time.perf_counter() - t) * 1000.0)
        return round(min(times), 3)

    with engine.connect() as conn:
        out = {"match_ms": best(lambda: conn.execute(match, {"q": expression}).all()),
               "rank_ms": best(lambda: conn.execute(rank, {"q": expression}).all())}
    out["search_ms"] = best(lambda: s.search(engine, query, limit))
    return out


def like_statements(backend: str, limit: int):
    from sqlalchemy import text

    op = "ILIKE" if backend == "postgresql" else "LIKE"
    base = f"SELECT scene_id, text FROM captions WHERE text {op} :pattern ESCAPE '\\'"
    return text(f"{base} LIMIT {int(limit)}"), text(base)


def run_queries(backend: str, engine, queries: list[tuple[str, str]], warmup: list[tuple[str, str]],
                limit: int, progress: bool) -> dict[str, Any]:
    from tvcaption.db.search import search

    like_limit, like_all = like_statements(backend, limit)

    def timed_like(stmt, word: str) -> tuple[float, int]:
        pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        t = time.perf_counter()
        with engine.connect() as conn:
            rows = conn.execute(stmt, {"pattern": pattern}).all()
        return (time.perf_counter() - t) * 1000.0, len(rows)

    for _kind, q in warmup:
        search(engine, q)
        word = like_word(q)
        if word:
            timed_like(like_limit, word)
            timed_like(like_all, word)

    records = []
    gc.collect()
    started = time.perf_counter()
    for i, (kind, q) in enumerate(queries):  # interleaved, so that background load hits all three alike
        t = time.perf_counter()
        hits = search(engine, q)
        search_ms = (time.perf_counter() - t) * 1000.0
        rec: dict[str, Any] = {"query": q, "kind": kind, "hits": len(hits), "search_ms": round(search_ms, 3)}
        word = like_word(q)
        rec["like_word"] = word
        if word:
            rec["like_limit_ms"], rec["like_limit_rows"] = timed_like(like_limit, word)
            rec["like_all_ms"], rec["like_all_rows"] = timed_like(like_all, word)
            rec["like_limit_ms"] = round(rec["like_limit_ms"], 3)
            rec["like_all_ms"] = round(rec["like_all_ms"], 3)
        records.append(rec)
        if progress and (i + 1) % 50 == 0:
            print(f"  {backend}: {i + 1}/{len(queries)} queries ({time.perf_counter() - started:.0f} s)",
                  file=sys.stderr, flush=True)
    for rec in records:  # untimed, after the timing: how many scenes each query matches in all
        rec["matches"] = count_matches(backend, engine, rec["query"])

    out: dict[str, Any] = {
        "search": summary([r["search_ms"] for r in records]),
        "like_limit": summary([r["like_limit_ms"] for r in records if "like_limit_ms" in r]),
        "like_all": summary([r["like_all_ms"] for r in records if "like_all_ms" in r]),
    }
    out["ratio_p95"] = {
        "like_limit/search": round(out["like_limit"]["p95_ms"] / out["search"]["p95_ms"], 2),
        "like_all/search": round(out["like_all"]["p95_ms"] / out["search"]["p95_ms"], 2),
    }
    out["search_by_kind"] = {kind: summary([r["search_ms"] for r in records if r["kind"] == kind])
                             for kind, _ in QUERY_MIX if any(r["kind"] == kind for r in records)}
    out["search_cost"] = cost_fit(records)
    out["slowest_searches"] = [{k: r[k] for k in ("query", "kind", "matches", "search_ms")}
                               for r in sorted(records, key=lambda r: -r["search_ms"])[:10]]
    for slow in out["slowest_searches"]:  # untimed above: best-of-3 breakdown of each slow search
        parts = anatomy(backend, engine, slow["query"], limit)
        if parts:
            slow["anatomy"] = parts
    out["queries"] = records
    return out


def bench_backend(backend: str, url: str, args, grammar: Grammar, queries, warmup,
                  words: set[str] | None) -> dict[str, Any]:
    from tvcaption.db.search import search
    from tvcaption.db.store import connect

    limit = search.__defaults__[0]  # the function's default limit: what `tvcaption search` uses
    progress = not args.quiet
    if progress:
        print(f"{backend}: building {args.captions:,} captions ({args.fill})", file=sys.stderr, flush=True)
    times = build(backend, url, generate(grammar, args.captions, args.seed, words), args.fill)
    engine = connect(url)  # migrated: a no-op check, as every tvcaption command opens it
    try:
        result: dict[str, Any] = {"server_version": server_version(backend, engine),
                                  "settings": server_settings(backend, engine), "build": times,
                                  "build_s": times["build_s"]}
        result["bytes"] = database_bytes(backend, url, engine)
        result["size_mb"] = round(result["bytes"]["database"] / 1e6, 1)
        if progress:
            print(f"{backend}: built in {times['build_s']:.1f} s, {result['size_mb']} MB; "
                  f"running {len(queries)} queries", file=sys.stderr, flush=True)
        result["limit"] = limit
        result["load_average_before_queries"] = [round(x, 2) for x in os.getloadavg()]
        result.update(run_queries(backend, engine, queries, warmup, limit, progress))
    finally:
        engine.dispose()
    if backend == "sqlite":  # the closed database's size (the WAL checkpointed into the file)
        result["bytes"] = database_bytes(backend, url, None)
        result["size_mb"] = round(result["bytes"]["database"] / 1e6, 1)
    return result


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
def table(report: dict[str, Any]) -> str:
    lines = [f"{report['config']['captions']:,} captions, {report['config']['queries']} queries, "
             f"limit {report['config']['limit']}; times in ms",
             f"{'backend':<11} {'method':<28} {'median':>8} {'p95':>8} {'max':>9}"]
    for backend, r in report["backends"].items():
        if "skipped" in r:
            lines.append(f"{backend:<11} skipped: {r['skipped']}")
            continue
        for key, label in (("search", "search (ranked, FTS)"), ("like_limit", f"LIKE '%w%' LIMIT {r['limit']}"),
                           ("like_all", "LIKE '%w%' (all rows)")):
            s = r[key]
            lines.append(f"{backend:<11} {label:<28} {s['median_ms']:>8.2f} {s['p95_ms']:>8.2f} {s['max_ms']:>9.2f}")
        ratio = r["ratio_p95"]
        lines.append(f"{'':<11} build {r['build_s']:.1f} s, {r['size_mb']} MB; p95 ratio LIKE LIMIT / search "
                     f"{ratio['like_limit/search']}, LIKE all / search {ratio['like_all/search']}")
    target = report["target"]
    if target.get("met") is not None:
        lines.append(f"target: SQLite search p95 < {target['p95_ms']:g} ms on 1M captions: "
                     f"{'met' if target['met'] else 'NOT met'} ({target['measured_p95_ms']} ms"
                     f"{'' if target['at_1m'] else ', measured below 1M captions'})")
    return "\n".join(lines)


def dumps(obj: Any, indent: str = "") -> str:
    """JSON with one line per query record (and per short list), so that the results diff well."""
    inner = indent + " "
    if isinstance(obj, dict) and obj and any(isinstance(v, (dict, list)) and v for v in obj.values()):
        items = [f"{inner}{json.dumps(k)}: {dumps(v, inner)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(obj, list) and obj and any(isinstance(v, (dict, list)) for v in obj):
        return "[\n" + ",\n".join(inner + dumps(v, inner) for v in obj) + "\n" + indent + "]"
    if isinstance(obj, list) and len(json.dumps(obj)) > 100:
        return "[\n" + ",\n".join(inner + json.dumps(v, ensure_ascii=False) for v in obj) + "\n" + indent + "]"
    return json.dumps(obj, ensure_ascii=False)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--captions", type=int, default=1_000_000, help="captions (= scenes) in the archive")
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated: sqlite,postgresql")
    p.add_argument("--queries", type=int, default=200, help="timed queries per backend")
    p.add_argument("--warmup", type=int, default=20, help="untimed queries (another seed) first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fill", choices=("backfill", "triggers"), default="backfill",
                   help="how the rows go in (see the module docstring)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    p.add_argument("--workdir", type=Path, default=None,
                   help="folder for the SQLite database (default: a temporary folder, deleted)")
    p.add_argument("--keep", action="store_true", help="keep the SQLite database in --workdir")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in args.backends:
        if b not in BACKENDS:
            p.error(f"--backends: unknown backend {b!r} (choose from {', '.join(BACKENDS)})")
    if args.captions < 1 or args.queries < 1:
        p.error("--captions and --queries must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from tvcaption.db.search import search

    grammar = Grammar(args.seed)
    queries = make_queries(grammar, args.queries, args.seed)
    warmup = make_queries(grammar, args.warmup, args.seed + 1) if args.warmup else []
    recordings, per = layout(args.captions)
    report: dict[str, Any] = {
        "benchmark": "search_latency",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/search_latency.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "config": {"captions": args.captions, "recordings": recordings, "scenes_per_recording": per,
                   "queries": args.queries, "warmup": args.warmup, "seed": args.seed, "fill": args.fill,
                   "limit": search.__defaults__[0],
                   "query_mix": {k: sum(1 for kind, _ in queries if kind == k) for k, _ in QUERY_MIX}},
        "machine": machine(),
        "target": {"backend": "sqlite", "p95_ms": TARGET_P95_MS, "captions": 1_000_000},
        "backends": {},
    }
    words: set[str] = set()
    workdir = args.workdir
    own_workdir = workdir is None
    if own_workdir:
        workdir = Path(tempfile.mkdtemp(prefix="tvcaption-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for backend in args.backends:
            if backend == "sqlite":
                db = workdir / f"search-{args.captions}-s{args.seed}.db"
                for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
                    p.unlink(missing_ok=True)
                report["backends"]["sqlite"] = bench_backend(
                    "sqlite", f"sqlite:///{db}", args, grammar, queries, warmup, words)
                if not args.keep:
                    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
                        p.unlink(missing_ok=True)
            else:
                sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
                from pgserver import PG_BIN_ENV, LocalServer, find_pg_bin

                bindir = find_pg_bin()
                if bindir is None:
                    reason = (f"PostgreSQL server binaries (initdb, pg_ctl) not found; install PostgreSQL "
                              f"or set {PG_BIN_ENV}")
                    print(f"postgresql: skipped: {reason}", file=sys.stderr)
                    report["backends"]["postgresql"] = {"skipped": reason}
                    continue
                server = LocalServer(bindir, settings="-c max_wal_size=4GB", prefix="tvcaption-bench-pg-")
                try:
                    server.start()
                    report["backends"]["postgresql"] = bench_backend(
                        "postgresql", server.url(), args, grammar, queries, warmup, words)
                finally:
                    server.stop("fast")
    finally:
        if own_workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif own_workdir and args.keep:
            print(f"kept: {workdir}", file=sys.stderr)
    report["dataset"] = {"distinct_words": len(words), "grammar_vocabulary": len(grammar.vocabulary()),
                         "examples": [c[2] for c in next(generate(grammar, min(args.captions, 8), args.seed)).captions]}
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    sqlite_result = report["backends"].get("sqlite")
    if sqlite_result and "search" in sqlite_result:
        p95 = sqlite_result["search"]["p95_ms"]
        report["target"].update(measured_p95_ms=p95, at_1m=args.captions >= 1_000_000, met=p95 < TARGET_P95_MS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps(report) + "\n")
    if not args.quiet:
        print(table(report))
    return report


if __name__ == "__main__":
    main()
