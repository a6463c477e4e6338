"""Speech: the subtitle text of a recording (sidecar files and text streams inside it, see
:mod:`tvcaption.subtitles`) attached to the scenes its cues overlap, searchable, with cue times.

It reads no frames (``needs`` is empty): the cues are read once per recording in
:meth:`SpeechAnalyser.start_recording`, and each scene gets, per source, one ``speech``
annotation whose text is its cues' text in order and whose ``data["cues"]`` holds each cue with
its times in seconds from the recording start. A cue spanning a cut goes to both scenes.
Sidecars are its :meth:`~SpeechAnalyser.companions`: editing one makes ``index`` index the
recording again.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from pathlib import Path

from tvcaption.analysers.base import Analyser, SceneInput
from tvcaption.scene import Annotation


EDGE = 0.1  # seconds a cue must share with a scene to be said over it (a cut 1 ms into a cue is not)


def _shared(cue, start: float, end: float) -> float:
    """Seconds the cue (at least 1 ms long) shares with [start, end)."""
    return min(max(cue.end, cue.start + 1e-3), end) - max(cue.start, start)


class SpeechAnalyser(Analyser):
    name = "speech"
    needs = frozenset()

    def __init__(self, context):
        super().__init__(context)
        self._sources: list[tuple[str, list, list[float], float]] = []  # (source, cues, starts, longest cue)

    def _extensions(self) -> tuple[str, ...]:
        index = getattr(self.context.config, "index", None)
        return tuple(getattr(index, "extensions", ()) or ())

    def companions(self, path) -> list[Path]:
        from tvcaption.subtitles import find_sidecars

        return [side for side, _ in find_sidecars(path, self._extensions())]

    def start_recording(self, info) -> None:
        from tvcaption.subtitles import find_sidecars, read_all

        sidecars = find_sidecars(info.path, self._extensions())
        cues = read_all(info.path, sidecars, start_time=info.start_time or 0.0, duration=info.duration or None)
        by_source: dict[str, list] = {}
        for cue in cues:
            by_source.setdefault(cue.source, []).append(cue)
        self._sources = []
        for source, mine in by_source.items():
            mine.sort(key=lambda c: (c.start, c.end))
            self._sources.append((source, mine, [c.start for c in mine], max(c.end - c.start for c in mine)))

    def analyse(self, batch: Sequence[SceneInput]) -> list[list[Annotation]]:
        return [self._of_scene(item.scene.start, item.scene.end) for item in batch]

    def _of_scene(self, start: float, end: float) -> list[Annotation]:
        found = []
        for source, cues, starts, longest in self._sources:
            lo, hi = bisect_left(starts, start - longest - 1e-3), bisect_left(starts, end)
            mine = [c for c in cues[lo:hi] if _shared(c, start, end) > min(EDGE, _shared(c, c.start, c.end) / 2)]
            if mine:
                found.append(Annotation(self.name, "speech", " ".join(c.text for c in mine), None, field="text",
                                        data={"cues": [c.to_json() for c in mine]}))
        return found
