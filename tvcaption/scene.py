"""The one scene type, from detection to the store, search and export, and what analysers say of it.

A :class:`Scene` starts as times from scene detection; analysers add :class:`Annotation` s to it
(:meth:`Scene.with_annotations`: a new scene, fields added, none copied by hand); the store saves
it and gives it back with its ``index``; search and export read its annotations without knowing
which analyser wrote them. This module imports nothing heavy: the CLI's search path loads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

# Where an annotation's text goes in the full-text index: "text" (ranked first: captions,
# on-screen text, speech) or "labels" (ranked at half weight: tags), or "hidden" (indexed, found
# only when a search asks for it: out-of-domain captions, migration 0006). None: stored, not searched.
SEARCH_FIELDS = ("text", "labels", "hidden")


@dataclass(frozen=True)
class Annotation:
    """One thing an analyser says about a scene."""

    analyser: str  # who said it: "caption", "tags", ... (the registry name)
    kind: str  # what it is: "caption", "tag", "text", "speech", ... (what readers select by)
    text: str  # what a person reads and searches
    score: float | None = None  # the analyser's confidence, higher is surer (its own scale)
    field: str | None = "text"  # search field, one of SEARCH_FIELDS, or None
    data: Mapping[str, Any] | None = None  # JSON-able details (a box, a language, a model name)

    def __post_init__(self) -> None:
        if self.field is not None and self.field not in SEARCH_FIELDS:
            raise ValueError(f"annotation field {self.field!r}: use one of {SEARCH_FIELDS} or None")

    @property
    def hidden(self) -> bool:
        """Stored under the 'hidden' search field: kept, but not shown unless asked for."""
        return self.field == "hidden"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"analyser": self.analyser, "kind": self.kind, "text": self.text}
        if self.score is not None:
            out["score"] = round(float(self.score), 4)
        if self.data:
            out["data"] = dict(self.data)
        return out


# A person's correction of a caption is an annotation of this analyser, kind "caption", field
# "text", data {"by", "at", "replaces"} (tvcaption.db.reviews); the model's caption stays beside it.
REVIEW = "review"


class Annotated:
    """Reading a thing's annotations by kind: a scene, a search hit (both hold ``annotations``)."""

    annotations: tuple[Annotation, ...]

    def of_kind(self, kind: str) -> list[Annotation]:
        """The annotations of ``kind`` in their order, except that corrections by a reviewer come
        first, latest first: whoever reads the first caption reads the corrected one."""
        found = [a for a in self.annotations if a.kind == kind]
        reviewed = [a for a in found if a.analyser == REVIEW]
        if not reviewed:
            return found
        return reviewed[::-1] + [a for a in found if a.analyser != REVIEW]

    @property
    def corrections(self) -> list[Annotation]:
        """A reviewer's corrections of the caption, oldest first (the history)."""
        return [a for a in self.annotations if a.analyser == REVIEW and a.kind == "caption"]

    @property
    def caption(self) -> str:
        """The description (the latest correction, else the first ``caption`` annotation), or ''."""
        found = self.of_kind("caption")
        return found[0].text if found else ""

    @property
    def tags(self) -> tuple[str, ...]:
        """The tag labels, most probable first."""
        return tuple(a.text for a in self.of_kind("tag"))

    @property
    def tag_scores(self) -> tuple[float, ...]:
        return tuple(float(a.score or 0.0) for a in self.of_kind("tag"))


@dataclass(frozen=True)
class Scene(Annotated):
    """A span of a recording: seconds from its first frame (end exclusive), frame indices
    (display order, end exclusive), its position once stored, and its annotations in order."""

    start: float
    end: float
    start_frame: int
    end_frame: int
    index: int | None = None  # position in the recording, set by the store
    annotations: tuple[Annotation, ...] = field(default=(), compare=False)

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def score(self) -> float | None:
        """The caption's score (mean log-probability per word), or None."""
        found = self.of_kind("caption")
        return found[0].score if found else None

    def with_annotations(self, annotations: tuple[Annotation, ...] | list[Annotation]) -> "Scene":
        return replace(self, annotations=self.annotations + tuple(annotations))

    def to_json(self) -> dict[str, Any]:
        """Times to the millisecond, the caption and tags, and every annotation."""
        return {"start": round(self.start, 3), "end": round(self.end, 3), "caption": self.caption,
                "tags": list(self.tags), "annotations": [a.to_json() for a in self.annotations]}
