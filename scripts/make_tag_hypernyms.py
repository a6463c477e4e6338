#!/usr/bin/env python3
"""Build tvcaption/resources/tag_hypernyms.tsv: the useful WordNet hypernyms of the 1000 ImageNet classes.

    python scripts/make_tag_hypernyms.py                 # writes the shipped file
    python scripts/make_tag_hypernyms.py --check         # exit 1 if the shipped file differs
    python scripts/make_tag_hypernyms.py --wordnet DIR --out FILE

Needed only to regenerate the table; tvcaption itself reads the shipped file. Inputs, all offline:

- WordNet 3.0's noun database, ``data.noun`` (Debian: ``apt-get install wordnet-base``, which
  puts it in /usr/share/wordnet; ``--wordnet`` or ``$WNSEARCHDIR`` names another folder). An
  ImageNet class id (wnid) is ``n`` + the 8-digit offset of its synset in that file.
- The wnids in class-index order: timm ships them (``timm/data/_info/imagenet_synsets.txt``,
  sorted wnids, the order of every ImageNet-1k classifier's logits, torchvision's too).
- The labels tvcaption shows (``tvcaption/features/imagenet_labels.txt``), written alongside.

THE CUT. For each class, every synset above it (hypernyms and instance hypernyms, through every
parent) nearest first, each once, and of each only its first lemma (WordNet's head word:
"motorcycle" of motorcycle/bike, "car" of car/auto/automobile/machine/motorcar; the other
lemmas are often another thing in everyday words: "machine", "bike", "wind" for wind
instrument, "toy" for toy dog). Dropped:

1. ``TOP``: WordNet's upper levels, which say what sort of being a thing is, not what anyone sees
   or searches for (entity, physical entity, object, whole, artifact, instrumentality, living
   thing, organism, matter, abstraction ...).
2. ``CATCH_ALL``: purpose categories spanning things that look nothing alike, whose everyday
   word would find scenes nobody searching it means: "container" (WordNet files every wheeled
   vehicle under it, so every car would be one), covering, device, structure, equipment ...
3. A word equal to the class's own label, or one already given by a nearer synset.

Each dropped synset is named by its offset below, with the number of classes it sits above.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tvcaption" / "resources" / "tag_hypernyms.tsv"
LABELS = REPO / "tvcaption" / "features" / "imagenet_labels.txt"
WORDNET_VERSION = "WordNet 3.0 Copyright 2006 by Princeton University"

TOP = {  # offset: head word (classes above which it sits)
    "00001740": "entity",  # 1000
    "00001930": "physical_entity",  # 997
    "00002684": "object",  # 958
    "00003553": "whole",  # 949
    "00021939": "artifact",  # 522
    "00004258": "living_thing",  # 410
    "00004475": "organism",  # 410
    "03575240": "instrumentality",  # 358
    "00020827": "matter",  # 50
    "00020090": "substance",  # 27
    "00019613": "substance",  # 5
    "15046900": "solid",  # 27
    "00019128": "natural_object",  # 17
    "00002137": "abstraction",  # 8
    "00007347": "causal_agent",  # 7
    "14778436": "agent",  # 4
    "00031921": "relation",  # 5
    "00033020": "communication",  # 2
    "00024264": "attribute",  # 1
    "00027167": "location",  # 1
    "00027807": "shape",  # 1
    "03892891": "part",  # 5
    "13809207": "part",  # 5
    "03932203": "piece",  # 5
    "14580897": "material",  # 1
    "00022903": "article",  # 4
    "03129123": "creation",  # 1
    "04007894": "product",  # 1
}
CATCH_ALL = {
    "03183080": "device",  # 130
    "03094503": "container",  # 100: every wheeled vehicle is one in WordNet
    "03122748": "covering",  # 90
    "03076708": "commodity",  # 63
    "03093574": "consumer_goods",  # 62
    "04341686": "structure",  # 58
    "03294048": "equipment",  # 39
    "03563967": "implement",  # 38
    "03574816": "instrument",  # 28: "a device that requires skill"; musical instruments keep their own
    "03257877": "durables",  # 13
    "03738472": "mechanism",  # 13
    "09349797": "mechanism",  # 1
    "04081844": "restraint",  # 11
    "03839993": "obstruction",  # 10
    "04377057": "system",  # 4
    "04362025": "surface",  # 1
    "03536348": "horizontal_surface",  # 1
    "13086908": "plant_part",  # 16
    "13087625": "plant_organ",  # 16
    "11675842": "reproductive_structure",  # 16: a strawberry's, an acorn's
    "03297735": "establishment",  # 10
    "04599396": "work",  # 1
}
DROPPED = TOP | CATCH_ALL


def default_wordnet() -> Path:
    return Path(os.environ.get("WNSEARCHDIR") or "/usr/share/wordnet")


def default_wnids() -> Path:
    import timm

    return Path(timm.__file__).parent / "data" / "_info" / "imagenet_synsets.txt"


def read_nouns(path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """WordNet's data.noun as offset -> (lemmas, parent offsets: hypernyms, then instance hypernyms)."""
    text = path.read_text("utf-8")
    if WORDNET_VERSION not in text[:3000]:
        raise SystemExit(f"{path}: not WordNet 3.0's data.noun (ImageNet's wnids are WordNet 3.0 offsets)")
    nouns = {}
    for line in text.splitlines():
        if line.startswith("  "):  # the licence at the top
            continue
        fields = line.partition(" | ")[0].split()
        count = int(fields[3], 16)
        lemmas = [fields[4 + 2 * i] for i in range(count)]
        at = 4 + 2 * count
        parents = []
        for i in range(int(fields[at])):
            symbol, offset, pos = fields[at + 1 + 4 * i: at + 4 + 4 * i]
            if symbol in ("@", "@i") and pos == "n":
                parents.append(offset)
        nouns[fields[0]] = (lemmas, parents)
    return nouns


def words(lemma: str) -> str:
    """A lemma as people write it: underscores are spaces; a noun's marker like "(a)" dropped."""
    return lemma.split("(")[0].replace("_", " ").strip()


def hypernyms(nouns: dict, offset: str, label: str) -> list[str]:
    """The kept head words above ``offset``, nearest first (breadth-first, WordNet's parent order)."""
    seen, out, level = {offset}, [], [offset]
    taken = {label.casefold()}
    while level:
        above = []
        for node in level:
            for parent in nouns[node][1]:
                if parent not in seen:
                    seen.add(parent)
                    above.append(parent)
        for parent in above:
            word = words(nouns[parent][0][0])
            if parent not in DROPPED and word.casefold() not in taken:
                taken.add(word.casefold())
                out.append(word)
        level = above
    return out


HEADER = """\
# The WordNet hypernyms of the 1000 ImageNet-1k classes that tag search uses, nearest first.
# index <TAB> wnid <TAB> label <TAB> hypernyms (", "-separated; empty when none is kept).
# Made by scripts/make_tag_hypernyms.py from WordNet 3.0 (its docstring says what is cut);
# do not edit by hand. WordNet 3.0 Copyright 2006 by Princeton University. All rights
# reserved. WordNet is provided "as is" under Princeton's licence, which permits this use.
"""


def table(nouns: dict, wnids: list[str], labels: list[str]) -> str:
    if len(wnids) != 1000 or len(labels) != 1000:
        raise SystemExit(f"expected 1000 wnids and labels, got {len(wnids)} and {len(labels)}")
    lines = [HEADER]
    for index, (wnid, label) in enumerate(zip(wnids, labels)):
        found = hypernyms(nouns, wnid[1:], label)
        if any("," in w or "\t" in w for w in found):
            raise SystemExit(f"{wnid}: a hypernym holds a comma or tab: {found}")
        lines.append(f"{index}\t{wnid}\t{label}\t{', '.join(found)}\n")
    return "".join(lines)


def unmatched(nouns: dict, wnids: Iterable[str], labels: Iterable[str]) -> list[str]:
    """Classes whose label is none of their synset's lemmas: a check that wnids and labels align."""
    return [f"{w} {label!r} {nouns[w[1:]][0]}" for w, label in zip(wnids, labels)
            if label.casefold() not in {words(x).casefold() for x in nouns[w[1:]][0]}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wordnet", type=Path, default=default_wordnet(), help="folder holding data.noun")
    parser.add_argument("--wnids", type=Path, default=None, help="the 1000 wnids in class order (default: timm's)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = parser.parse_args(argv)
    data = args.wordnet / "data.noun"
    if not data.is_file():
        raise SystemExit(f"{data}: WordNet 3.0 not found (apt-get install wordnet-base, or --wordnet DIR)")
    nouns = read_nouns(data)
    wnids = (args.wnids or default_wnids()).read_text("utf-8").split()
    labels = [line for line in LABELS.read_text("utf-8").splitlines() if line]
    odd = unmatched(nouns, wnids, labels)
    if len(odd) > 100:  # torchvision renamed a few (two "crane"s, "maillot"), not most
        raise SystemExit(f"{len(odd)} labels match no lemma of their wnid: are the wnids in class order?")
    text = table(nouns, wnids, labels)
    if args.check:
        same = args.out.is_file() and args.out.read_bytes() == text.encode("utf-8")
        print(f"{args.out}: {'up to date' if same else 'differs from what WordNet gives'}")
        return 0 if same else 1
    args.out.write_bytes(text.encode("utf-8"))
    print(f"{args.out}: 1000 classes, {sum(1 for line in text.splitlines() if line.endswith(chr(9)))} with "
          f"no hypernym kept; {len(odd)} labels are not a lemma of their synset")
    return 0


if __name__ == "__main__":
    sys.exit(main())
