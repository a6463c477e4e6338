"""On-screen text: lower thirds, headlines, tickers, burnt-in subtitles, read with RapidOCR.

RapidOCR (``rapidocr-onnxruntime``) ships PP-OCRv4's text detector and its recogniser for Latin
and Chinese script as ONNX models and runs them on onnxruntime: offline, no torch, a few hundred
milliseconds a frame on a CPU. Per scene it reads up to ``[text] frames`` of the sampled frames
(evenly spread, the middle one first) and skips a frame whose picture barely changed since the
last one read, or whose text regions did not: text on screen usually stays for the whole shot. The same text seen in several
frames is kept once (its best reading), each text with its confidence and its box (fractions
of the frame's width and height, so they hold for any size); readings below ``[text]
min_score`` or shorter than ``min_chars`` are dropped as noise. Texts come top to bottom, then
left to right, as a person reads a screen.
"""

from __future__ import annotations

import math
import re

from dataclasses import dataclass
from importlib.metadata import version
from typing import TYPE_CHECKING, Sequence

from tvcaption.analysers.base import Analyser, AnalyserContext, SceneInput
from tvcaption.scene import Annotation

if TYPE_CHECKING:
    import numpy as np

CHANGED = 6.0  # mean absolute difference (grey levels, 0-255) of the THUMB thumbnails that counts as a new picture
# spaces the recogniser drops: after , ; : ! ? before a Latin, Greek or Cyrillic letter
# ("Markets:DAX"), and between a number and a word of 3+ letters ("1.2percent"); "14:30",
# "12th", "4K", "http://" and Chinese punctuation stay as they are
_GLUED = re.compile("(?<=[,;:!?])(?=[A-Za-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff])|(?<=[0-9])(?=[a-z]{3,})")


@dataclass
class Reading:
    text: str
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the frame
    time: float  # seconds: when it was first seen
    seen: int = 1  # frames it was read in


def _key(text: str) -> str:
    """What makes two readings the same text: letters and digits, case-folded, without accents
    (the OCR drops some: "Mélenchon" is read "Melenchon"; SQLite's search ignores them too),
    Chinese in simplified form."""
    import unicodedata

    from tvcaption.search_terms import simplified

    def plain(ch: str) -> str:  # accents off alphabetic scripts only (kana's voicing marks stay)
        return unicodedata.normalize("NFKD", ch) if ord(ch) < 0x2000 else ch

    return "".join(c for ch in unicodedata.normalize("NFKC", simplified(text)).casefold() for c in plain(ch) if c.isalnum())


def merge(readings: Sequence[Reading]) -> list[Reading]:
    """One reading per distinct text (the most confident spelling, the count of frames), in
    reading order: top to bottom, then left to right."""
    best: dict[str, Reading] = {}
    for r in readings:
        key = _key(r.text)
        if key in best:
            kept = best[key]
            winner = r if r.score > kept.score else kept
            best[key] = Reading(winner.text, winner.score, winner.box, min(kept.time, r.time), kept.seen + 1)
        else:
            best[key] = r
    return sorted(best.values(), key=lambda r: (round(r.box[1], 2), r.box[0]))


class TextAnalyser(Analyser):
    name = "text"
    needs = frozenset({"frames"})

    def __init__(self, context: AnalyserContext):
        super().__init__(context)
        self.options = context.config.text
        self.keep_frames = max(1, self.options.frames)
        self._ocr = None

    @property
    def identity(self) -> str:
        return f"text:rapidocr-{version('rapidocr-onnxruntime')}"

    def load(self) -> None:
        self.ocr  # noqa: B018 - its models, in the engine's loading thread

    @property
    def ocr(self):
        if self._ocr is None:
            from rapidocr_onnxruntime import RapidOCR

            # RapidOCR's "max" limit only ever shrinks past 960 px and its "min" one enlarges a PAL
            # frame: frames are scaled in read_frame instead; the thread count is the global one
            # (RapidOCR copies it over the per-model ones); 0: every core but one, as for the CNN
            from tvcaption.config import inference_threads

            self._ocr = RapidOCR(det_limit_type="max", intra_op_num_threads=inference_threads(self.options.threads))
        return self._ocr

    def analyse(self, batch: Sequence[SceneInput]) -> list[list[Annotation]]:
        out = []
        for item in batch:
            found = merge(self.read_scene(item.frames, item.frame_times, item.scene.end - item.scene.start))
            out.append([Annotation(self.name, "text", r.text, round(r.score, 4), data={
                "box": [round(v, 3) for v in r.box], "time": round(r.time, 3), "frames": r.seen}) for r in found])
        return out

    def read_scene(self, frames: "np.ndarray", times: "np.ndarray", span: float | None = None) -> list[Reading]:
        """Readings of the frames worth reading, of a scene ``span`` seconds long.

        One frame per ``[text] interval`` seconds of the scene is offered (at least one, evenly
        spread; all of ``frames`` when the span is not given): the middle one first; then each
        other one unless its picture is unchanged since the last frame read, or that frame had
        text and every text region is unchanged (the lower third stays while the person in front
        moves)."""
        import numpy as np

        offered = len(frames)
        if span is not None and offered > 1:
            offered = min(offered, max(1, math.ceil(span / self.options.interval - 1e-9)))
        chosen = [len(frames) // 2] if offered == 1 else np.unique(np.linspace(0, len(frames) - 1, offered).round().astype(int))
        order = sorted((int(i) for i in chosen), key=lambda i: abs(i - (len(frames) - 1) / 2))
        readings: list[Reading] = []
        last: tuple["np.ndarray", list[Reading]] | None = None
        for i in order:
            thumb = _thumbnail(frames[i])
            if last is not None and _unchanged(last[0], thumb, [r.box for r in last[1]]):
                continue
            found = self.read_frame(frames[i], float(times[i]))
            readings += found
            last = (thumb, found)
        return readings

    def read_frame(self, frame: "np.ndarray", time: float) -> list[Reading]:
        """The texts RapidOCR reads in one RGB frame, noise dropped.

        Text is found on the frame scaled down to ``[text] det_side`` (detection is most of the
        cost) and read from the full-size frame: recognised from small crops, the spaces between
        Latin words are lost ("AngelaMerkel"), and search needs them."""
        import cv2
        import numpy as np

        ocr = self.ocr
        full = np.ascontiguousarray(frame[:, :, ::-1])  # BGR, as OpenCV
        h, w = full.shape[:2]
        scale = min(1.0, self.options.det_side / max(h, w))
        small = cv2.resize(full, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else full
        boxes, _ = ocr.text_det(small)
        if boxes is None or len(boxes) == 0:
            return []
        boxes = [np.asarray(b, dtype=np.float32) / scale for b in ocr.sorted_boxes(boxes)]
        lines, _ = ocr.text_rec(ocr.get_crop_img_list(full, boxes))  # no angle classifier: TV text stands upright
        found = []
        for points, (text, score, *_) in zip(boxes, lines):
            text = _GLUED.sub(" ", " ".join(str(text).split()))
            if float(score) < self.options.min_score or sum(ch.isalnum() for ch in text) < self.options.min_chars:
                continue
            xs, ys = points[:, 0], points[:, 1]
            box = (max(0.0, float(xs.min()) / w), max(0.0, float(ys.min()) / h),
                   min(1.0, float(xs.max()) / w), min(1.0, float(ys.max()) / h))
            found.append(Reading(text, float(score), box, time))
        return found


THUMB = (160, 90)  # width, height of the grey thumbnails that frames are compared on


def _thumbnail(frame: "np.ndarray") -> "np.ndarray":
    import cv2
    import numpy as np

    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, THUMB, interpolation=cv2.INTER_AREA).astype(np.float32)


def _unchanged(before: "np.ndarray", after: "np.ndarray", boxes: Sequence[tuple[float, float, float, float]]) -> bool:
    """The whole picture barely changed, or text was there and no text region changed."""
    diff = abs(after - before)
    if diff.mean() < CHANGED:
        return True
    if not boxes:
        return False
    w, h = THUMB
    regions = [diff[int(y0 * h):max(int(y0 * h) + 1, round(y1 * h)), int(x0 * w):max(int(x0 * w) + 1, round(x1 * w))]
               for x0, y0, x1, y1 in boxes]
    return all(r.mean() < CHANGED for r in regions)
