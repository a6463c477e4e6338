"""A seeded grammar of TV-archive captions and tags, for the search benchmark (bench/search_latency.py).

Captions are sentences like "a tired chef is cooking soup in a kitchen at night": subjects,
verbs, objects, places, topics, times, camera shots, a few thousand generated proper names and
some rare words, Zipf-distributed. Tags are 1-3 ImageNet-like labels, most probable first.
Everything is drawn from the ``random.Random`` the caller passes, so a seed gives the same
corpus on every run.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

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
