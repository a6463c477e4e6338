"""Scene captions as subtitle tracks: SRT, WebVTT (a ``kind="descriptions"`` track) and JSON.

The writers are tiny subclasses of one base that differ in a few class attributes (extension,
decimal marker, header, numbering), as in openai/whisper. Before writing, the subtitle writers
lay the cues out by the usual subtitle conventions (:func:`layout_cues`):

- Timecodes are the scene times (to the millisecond); cues never overlap (an overlapping scene
  is cut at the next one's start) and come in time order.
- At most 2 lines of at most 42 characters, wrapped at word boundaries and balanced (top line
  no longer than the bottom one); a single word longer than a line is cut.
- A cue shorter than 1 s is extended to 1 s into the gap after it, but only when that does not
  reach the next cue (or pass the recording's end); otherwise it keeps the scene time.
- A caption too long for 2 lines is split into consecutive cues within the scene's span, timed
  by their length, when each part gets at least 1 s; otherwise it is cut at a word boundary
  with an ellipsis. Splitting keeps every word when there is time to read it.
- Text is UTF-8 (no BOM), whitespace collapsed; ``-->`` cannot appear in a cue.

JSON is for machines: the scene times and the full captions, not laid out.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tvcaption.errors import TvcaptionError

MAX_LINE = 42  # characters per line
MAX_LINES = 2
MIN_DURATION = 1.0  # seconds a cue stays on screen when there is room
ELLIPSIS = "\u2026"


@dataclass(frozen=True)
class Cue:
    start: float  # seconds from the recording's first frame
    end: float
    text: str


# --- text layout ------------------------------------------------------------------------------

def _words(text: str, width: int = MAX_LINE) -> list[str]:
    """Whitespace-separated words; a word longer than a line is cut into line-sized pieces."""
    out: list[str] = []
    for word in text.replace("-->", "\u2192").split():
        out += [word[i:i + width] for i in range(0, len(word), width)]
    return out


def balance(words: Sequence[str], width: int = MAX_LINE) -> list[str] | None:
    """The words on one line, or on two balanced lines (top no longer), or None if they do not fit."""
    one = " ".join(words)
    if len(one) <= width:
        return [one] if one else []
    best: tuple[int, int, list[str]] | None = None
    for k in range(1, len(words)):
        top, bottom = " ".join(words[:k]), " ".join(words[k:])
        if len(top) <= width and len(bottom) <= width:
            key = (max(len(top), len(bottom)), 0 if len(top) <= len(bottom) else 1)
            if best is None or key < best[:2]:
                best = (*key, [top, bottom])
    return None if best is None else best[2]


def pages(text: str, width: int = MAX_LINE, lines: int = MAX_LINES) -> list[list[str]]:
    """The text as consecutive cue pages of at most ``lines`` lines of ``width`` characters."""
    words = _words(text, width)
    greedy: list[list[str]] = []  # words per greedily filled line
    for word in words:
        if greedy and len(" ".join(greedy[-1] + [word])) <= width:
            greedy[-1].append(word)
        else:
            greedy.append([word])
    out = []
    for i in range(0, len(greedy), lines):
        chunk = [w for line in greedy[i:i + lines] for w in line]
        out.append(balance(chunk, width) or [" ".join(line) for line in greedy[i:i + lines]])
    return out


def truncate(text: str, width: int = MAX_LINE) -> list[str]:
    """The longest start of the text that fits on two lines with an ellipsis, cut between words."""
    words = _words(text, width)
    for n in range(len(words), 0, -1):
        head = words[:n]
        if n < len(words):
            head = head[:-1] + [head[-1] + ELLIPSIS]
        fitted = balance(head, width)
        if fitted is not None:
            return fitted
    return []


def layout_cues(cues: Iterable[Cue], duration: float | None = None) -> list[Cue]:
    """Cues by the subtitle conventions in the module docstring; ``duration`` bounds extension."""
    items = sorted((Cue(max(0.0, float(c.start)), float(c.end), " ".join(c.text.split())) for c in cues),
                   key=lambda c: (c.start, c.end))
    items = [c for c in items if c.text]
    out: list[Cue] = []
    for i, cue in enumerate(items):
        following = items[i + 1].start if i + 1 < len(items) else (duration if duration else float("inf"))
        start, end = cue.start, min(cue.end, following)
        if round(end * 1000) <= round(start * 1000):
            continue  # nothing left of it after removing the overlap
        if end - start < MIN_DURATION and start + MIN_DURATION <= following:
            end = start + MIN_DURATION
        parts = pages(cue.text)
        if len(parts) <= 1:
            out.append(Cue(start, end, "\n".join(parts[0] if parts else [])))
        elif (end - start) / len(parts) >= MIN_DURATION:
            out += _split(start, end, parts)
        else:
            out.append(Cue(start, end, "\n".join(truncate(cue.text))))
    return out


def _split(start: float, end: float, parts: list[list[str]]) -> list[Cue]:
    """Consecutive cues for the pages, timed by their length (each at least MIN_DURATION)."""
    sizes = [sum(len(line) for line in page) for page in parts]
    span = end - start
    shares = [span * s / sum(sizes) for s in sizes]
    if min(shares) < MIN_DURATION:
        shares = [span / len(parts)] * len(parts)
    cues, t = [], start
    for k, (page, share) in enumerate(zip(parts, shares)):
        t_next = end if k == len(parts) - 1 else t + share
        cues.append(Cue(t, t_next, "\n".join(page)))
        t = t_next
    return cues


# --- writers ----------------------------------------------------------------------------------

class SubtitleWriter:
    """Base writer: blocks of ``[number] / start --> end / text``; subclasses set attributes."""

    extension: ClassVar[str] = ""
    decimal_marker: ClassVar[str] = "."
    header: ClassVar[str] = ""
    numbered: ClassVar[bool] = False
    escapes: ClassVar[tuple[tuple[str, str], ...]] = ()

    def format_timestamp(self, seconds: float) -> str:
        ms = max(0, round(seconds * 1000))
        hours, ms = divmod(ms, 3_600_000)
        minutes, ms = divmod(ms, 60_000)
        secs, ms = divmod(ms, 1000)
        return f"{hours:02d}:{minutes:02d}:{secs:02d}{self.decimal_marker}{ms:03d}"

    def prepare(self, cues: Iterable[Cue], duration: float | None = None) -> list[Cue]:
        return layout_cues(cues, duration)

    def escape(self, text: str) -> str:
        for old, new in self.escapes:
            text = text.replace(old, new)
        return text

    def format(self, cues: Sequence[Cue]) -> str:
        blocks = []
        for number, cue in enumerate(cues, 1):
            timing = f"{self.format_timestamp(cue.start)} --> {self.format_timestamp(cue.end)}"
            blocks.append("\n".join(([str(number)] if self.numbered else []) + [timing, self.escape(cue.text)]))
        return self.header + "".join(block + "\n\n" for block in blocks)

    def write(self, cues: Iterable[Cue], out: str | Path, duration: float | None = None) -> Path:
        """Lay out and write ``cues`` to ``out`` (UTF-8, replaced atomically); returns the path."""
        out = Path(out)
        content = self.format(self.prepare(cues, duration))
        tmp = out.with_name(f".{out.name}.tmp")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(content, encoding="utf-8", newline="\n")
            os.replace(tmp, out)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise TvcaptionError(f"{out}: cannot write the {self.extension} file ({exc.strerror}); "
                                 "choose a writable output folder") from None
        return out


class SRTWriter(SubtitleWriter):
    extension = "srt"
    decimal_marker = ","
    numbered = True


class VTTWriter(SubtitleWriter):
    """WebVTT, usable as ``<track kind="descriptions">`` (cue text is escaped, no markup)."""

    extension = "vtt"
    header = "WEBVTT\n\n"
    escapes = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))


class JSONWriter(SubtitleWriter):
    """``[{"start": s, "end": s, "text": caption}, ...]``: scene times and whole captions."""

    extension = "json"

    def prepare(self, cues: Iterable[Cue], duration: float | None = None) -> list[Cue]:
        return sorted(cues, key=lambda c: (c.start, c.end))

    def format(self, cues: Sequence[Cue]) -> str:
        rows = [{"start": round(c.start, 3), "end": round(c.end, 3), "text": c.text} for c in cues]
        return json.dumps(rows, ensure_ascii=False, indent=1) + "\n"


WRITERS: dict[str, type[SubtitleWriter]] = {w.extension: w for w in (SRTWriter, VTTWriter, JSONWriter)}


def get_writer(fmt: str) -> SubtitleWriter:
    key = fmt.lower().lstrip(".")
    key = {"webvtt": "vtt"}.get(key, key)
    if key not in WRITERS:
        raise TvcaptionError(f"{fmt}: unknown export format; use one of {', '.join(WRITERS)}")
    return WRITERS[key]()


def write_srt(cues: Iterable[Cue], out: str | Path) -> Path:
    return SRTWriter().write(cues, out)


def write_vtt(cues: Iterable[Cue], out: str | Path) -> Path:
    return VTTWriter().write(cues, out)


def write_json(cues: Iterable[Cue], out: str | Path) -> Path:
    return JSONWriter().write(cues, out)


# --- from the database ------------------------------------------------------------------------

def _store(store_or_engine: Any):
    from tvcaption.db.store import Store

    return store_or_engine if isinstance(store_or_engine, Store) else Store(store_or_engine)


def _export(store, recording, writer: SubtitleWriter, out: Path) -> Path:
    cues = [Cue(s.start, s.end, s.caption) for s in store.scenes_of(recording.id)]
    return writer.write(cues, out, duration=recording.duration)


def export_recording(store_or_engine: Any, recording_path: str | Path, fmt: str, out_dir: str | Path) -> Path:
    """Write ``out_dir/<recording stem>.<fmt>`` from the stored scenes; returns its path.

    ``store_or_engine``: a Store, an Engine or a database URL. The recording must be indexed.
    """
    writer = get_writer(fmt)
    store = _store(store_or_engine)
    path = str(recording_path)
    recording = store.get_recording(path)
    if recording is None:
        raise TvcaptionError(f"{path}: not in the database; index it first (tvcaption index)")
    if recording.status != "done":
        why = f": {recording.error.splitlines()[0]}" if recording.error else ""
        raise TvcaptionError(f"{path}: not indexed (status {recording.status}{why}); run tvcaption index on it")
    return _export(store, recording, writer, Path(out_dir) / f"{Path(path).stem}.{writer.extension}")


def export_all(store_or_engine: Any, fmt: str, out_dir: str | Path) -> list[Path]:
    """Export every indexed recording into ``out_dir``; returns the files written.

    Files are named after the recording; two recordings with the same name get a short hash of
    their path appended, so none overwrites another.
    """
    writer = get_writer(fmt)
    store = _store(store_or_engine)
    done = store.recordings(status="done")
    stems = [Path(r.path).stem for r in done]
    written = []
    for recording, stem in zip(done, stems):
        if stems.count(stem) > 1:
            stem += "-" + hashlib.sha1(recording.path.encode()).hexdigest()[:8]
        written.append(_export(store, recording, writer, Path(out_dir) / f"{stem}.{writer.extension}"))
    return written
