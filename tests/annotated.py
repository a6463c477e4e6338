"""Scenes as the analysers would hand them to the store: a caption and tags as annotations."""

from __future__ import annotations

from collections.abc import Sequence

from tvcaption.scene import Annotation, Scene


def annotated(start: float, end: float, start_frame: int, end_frame: int, caption: str = "",
              score: float | None = None, tags: Sequence[tuple[str, float]] = ()) -> Scene:
    notes = [Annotation("caption", "caption", caption, score)] if caption else []
    notes += [Annotation("tags", "tag", label, p, field="labels") for label, p in tags]
    return Scene(start, end, start_frame, end_frame).with_annotations(notes)
