"""Tags that generalise: each ImageNet tag carries its WordNet hypernyms (shipped table), the store
indexes them, so "vehicle" finds a moped and "dog" a golden retriever, below scenes that say the word."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from tvcaption.analysers.tags import class_hypernyms, tag_annotation
from tvcaption.db.search import search
from tvcaption.db.store import Store, connect
from tvcaption.scene import Annotation, Scene

pytest_plugins = ["pg"]

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "tvcaption" / "resources" / "tag_hypernyms.tsv"
LABELS = [line for line in (REPO / "tvcaption" / "features" / "imagenet_labels.txt").read_text("utf-8").splitlines() if line]
WORDNET = Path("/usr/share/wordnet/data.noun")

# What WordNet 3.0 puts above these classes, nearest first, after the cut (scripts/make_tag_hypernyms.py).
EXPECTED = {
    "moped": ["minibike", "motorcycle", "motor vehicle", "self-propelled vehicle", "wheeled vehicle",
              "vehicle", "conveyance"],
    "minivan": ["passenger van", "car", "van", "motor vehicle", "truck", "self-propelled vehicle",
                "wheeled vehicle", "vehicle", "conveyance"],
    "golden retriever": ["retriever", "sporting dog", "hunting dog", "dog", "canine", "domestic animal",
                         "carnivore", "animal", "placental", "mammal", "vertebrate", "chordate"],
    "lipstick": ["makeup", "cosmetic", "toiletry"],
    "stage": ["platform"],
}
TOO_ABSTRACT = {"entity", "physical entity", "abstraction", "object", "whole", "artifact", "instrumentality",
                "organism", "living thing", "matter", "container", "device", "covering", "structure"}


def label_index(label: str) -> int:
    return LABELS.index(label)


def hypernyms_of(label: str) -> list[str]:
    return list(class_hypernyms()[label_index(label)][1])


def test_the_shipped_table_has_every_class_in_order():
    rows = class_hypernyms()
    assert len(rows) == 1000
    assert [label for label, _ in rows] == LABELS
    lines = [line.split("\t") for line in SHIPPED.read_text("utf-8").splitlines() if not line.startswith("#")]
    assert [int(cols[0]) for cols in lines] == list(range(1000))
    assert all(cols[1].startswith("n") and len(cols[1]) == 9 for cols in lines)  # wnids
    assert lines[label_index("moped")][1] == "n03785016" and lines[label_index("golden retriever")][1] == "n02099601"
    assert sum(1 for _, words in rows if words) > 950  # a few catch-alls alone above them (remote control: device)


@pytest.mark.parametrize("label", sorted(EXPECTED))
def test_hypernyms_are_what_wordnet_gives(label):
    assert hypernyms_of(label) == EXPECTED[label]


def test_the_abstract_top_and_catch_alls_are_cut():
    found = {word for _, words in class_hypernyms() for word in words}
    assert not found & TOO_ABSTRACT
    assert {"animal", "dog", "vehicle", "bird", "food", "person", "fruit"} <= found
    assert all(label.casefold() not in {w.casefold() for w in words} for label, words in class_hypernyms())


def test_a_tag_carries_its_hypernyms_to_json():
    tag = tag_annotation(label_index("moped"), 0.61234, LABELS)
    assert (tag.analyser, tag.kind, tag.text, tag.score, tag.field) == ("tags", "tag", "moped", 0.6123, "labels")
    assert tag.to_json()["data"] == {"hypernyms": EXPECTED["moped"]}
    assert tag_annotation(label_index("remote control"), 0.2, LABELS).data is None  # nothing kept above it


def scene(i: int, caption: str, tags: list[str]) -> Scene:
    notes = [Annotation("caption", "caption", caption, -0.3)]
    notes += [tag_annotation(label_index(label), 0.5 / (n + 1), LABELS) for n, label in enumerate(tags)]
    return Scene(3.0 * i, 3.0 * i + 3.0, 75 * i, 75 * i + 75).with_annotations(notes)


ARCHIVE = [  # caption, tags
    ("a man talks to the camera in a studio", ["moped", "minivan", "cab"]),  # vehicles only as hypernyms
    ("a red vehicle waits at the traffic lights", ["traffic light", "parking meter"]),  # says "vehicle"
    ("a woman walks in the park", ["golden retriever", "Labrador retriever", "park bench"]),
    ("a dog runs on the beach", ["seashore", "sandbar"]),  # says "dog"
    ("a singer on a stage", ["stage", "microphone"]),
    ("close up of a face", ["lipstick"]),
]


@pytest.fixture
def archive(db_url):
    engine = connect(db_url)
    store = Store(engine)
    claim = store.claim("/archive/news.ts", "hash-news", "w")
    store.save_result(claim, [scene(i, c, t) for i, (c, t) in enumerate(ARCHIVE)], "m")
    yield store
    engine.dispose()


def captions(hits) -> list[str]:
    return [h.caption for h in hits]


def test_search_finds_a_tag_by_its_hypernyms(archive):
    moped = ARCHIVE[0][0]
    for query in ("vehicle", "motor vehicle", "vehicles", "motorcycle", "conveyance", "truck"):
        assert moped in captions(search(archive, query)), query
    assert captions(search(archive, "retriever")) == [ARCHIVE[2][0]]
    assert captions(search(archive, "makeup")) == captions(search(archive, "cosmetic")) == ["close up of a face"]
    for query in ("container", "entity", "artifact", "organism", "whole"):  # cut: find nothing
        assert search(archive, query) == [], query


def test_a_word_said_ranks_above_the_same_word_as_a_hypernym(archive):
    # the studio scene has "vehicle" as a hypernym of three tags, the traffic scene in its caption
    assert captions(search(archive, "vehicle")) == [ARCHIVE[1][0], ARCHIVE[0][0]]
    # both retrievers have "dog" above them (indexed once for the scene); the beach caption says it
    assert captions(search(archive, "dog")) == [ARCHIVE[3][0], ARCHIVE[2][0]]


def test_each_hypernym_word_is_indexed_once_per_scene(archive):
    with archive.engine.connect() as conn:
        rows = conn.execute(text("SELECT a.text, a.terms FROM annotations a JOIN scenes s ON s.id = a.scene_id "
                                 "WHERE s.\"index\" = 0 AND a.kind = 'tag' ORDER BY a.position")).all()
    terms = " ".join(row.terms or "" for row in rows).split()
    assert terms.count("vehicle") == 1 and terms.count("motor") == 1
    assert rows[0].terms.split()[:2] == ["minibike", "motorcycle"]
    assert {"passenger", "van", "car", "truck"} <= set(rows[1].terms.split())


def test_export_json_shows_the_hypernyms(archive, tmp_path):
    from tvcaption.export import export_recording

    written = export_recording(archive, "/archive/news.ts", "json", tmp_path)
    first = json.loads(Path(written).read_text("utf-8"))[0]
    tags = [a for a in first["annotations"] if a["kind"] == "tag"]
    assert first["tags"] == ["moped", "minivan", "cab"]
    assert tags[0]["data"] == {"hypernyms": EXPECTED["moped"]}
    assert tags[1]["data"]["hypernyms"] == EXPECTED["minivan"]  # each tag keeps its whole list in JSON


@pytest.mark.skipif(not WORDNET.is_file(), reason=f"WordNet 3.0 not installed ({WORDNET}: apt-get install wordnet-base)")
def test_the_generator_rebuilds_the_shipped_table_byte_for_byte(tmp_path):
    pytest.importorskip("timm", reason="the generator reads the wnid list timm ships")
    out = tmp_path / "tag_hypernyms.tsv"
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "make_tag_hypernyms.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == SHIPPED.read_bytes()
