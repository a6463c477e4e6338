"""Scene captions as subtitle tracks: SRT, WebVTT (a ``kind="descriptions"`` track), EBU-TT-D
(TTML, for playout) and JSON.

The writers are tiny subclasses of one base that differ in a few class attributes (extension,
decimal marker, header, numbering), as in openai/whisper. Before writing, the subtitle writers
lay the cues out by these rules (:func:`layout_cues`):

1. No text is dropped: every word of every caption is shown, in scene order. Whitespace is
   collapsed, ``-->`` becomes ``→``; UTF-8 without a byte-order mark.
2. A cue has 1 or 2 lines of at most 42 characters, broken between words (only a word longer
   than a line is broken inside it) and balanced: the top line no longer than the bottom one,
   except that a cue holding the captions of several scenes breaks its lines between two
   captions when they fit that way.
3. A caption too long for 2 lines is split in time into consecutive cues, each shown for at
   least 1 s and longer parts for longer.
4. A cue is shown from its scene's start to its end, and for at least 1 s (1 s per part when
   rule 3 splits it): the cue of a short scene runs on into the gap after it, up to the next
   scene's start.
5. Consecutive scenes with the same caption (touching or less than 1 s apart) are one cue.
6. A scene whose cue cannot last long enough before the next scene starts is shown together
   with the next scene, in one cue covering both (captions separated by a line break, or by
   "; " on a shared line), and with the one after that too if still needed. A scene at the
   end with no time left joins the cue before it (and the one before that if still needed).
7. Cues never overlap (a scene that overlaps the next one is cut at the next one's start),
   come in time order, and never run past the recording's end when its duration is known.
8. So no cue is shorter than 1 s, except when the whole recording is too short for its text
   at 1 s per cue (a 0.6 s clip, say): then all of it is one cue (or one cue per part, rule 3)
   that starts earlier than its scene if that helps, from 0 s at the earliest, and runs to the
   recording's end. (Only a recording shorter than 1 ms per cue gets cues of 1 ms past its end.)
9. Times are whole milliseconds.

Out-of-domain captions (the caption model's training data is unlike the scene,
:mod:`tvcaption.domain`; stored under the hidden search field) are left out of SRT and WebVTT
unless ``all_captions`` is given: a viewer who cannot see the picture would take them for a
description. The export functions count what they left out (``left_out``); JSON keeps them,
with their confidence and domain scores in the annotations.

``reviewed_only`` exports only the scenes a reviewer corrected (``tvcaption serve``), with the
corrected caption, in every format: a track of what people have checked. The cue rules apply to
those scenes alone, so a short reviewed scene's cue may run on into an unreviewed scene after it
(rule 4). A recording with no reviewed scene has nothing to export (:func:`export_all` skips it).

JSON is for machines and is not laid out: one row per scene, with the exact scene times
(rounded to the millisecond), the full caption, the scene's tags (labels, most probable first)
and every analyser's annotations.

Exported files are named after the recording: ``news.srt`` for ``news.ts``. When two
recordings would get the same name, both use their whole file name (``bikes.mkv.srt`` and
``bikes.mxf.srt``); if that is still the same (the same name in two folders), the parent
folder's name comes first (``monday_news.ts.srt``), and a short hash of the path only as a last
resort. Control characters and path separators in a name become ``_``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tvcaption.errors import TvcaptionError

MAX_LINE = 42  # characters per line
MAX_LINES = 2
MIN_DURATION = 1.0  # seconds every cue stays on screen (rule 8 is the only exception)
SEPARATOR = ";"  # between two captions joined in one cue, when they share a line
_MIN_MS = round(MIN_DURATION * 1000)
_ENDS_SENTENCE = tuple(".,;:!?\u2026")
_NAME_BYTES = 200  # longest exported file name (bytes), leaving room for the temporary file's


@dataclass(frozen=True)
class Cue:
    start: float  # seconds from the recording's first frame
    end: float
    text: str
    tags: tuple[str, ...] = ()  # the scene's tag labels, most probable first (JSON only)
    annotations: tuple[Any, ...] = ()  # every analyser's annotations of the scene (JSON only)


# --- text layout ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Token:
    text: str  # the word as shown inside a line (with SEPARATOR added after a caption's end)
    separated: bool = False  # SEPARATOR was added: dropped when the word ends a line
    last: bool = False  # the last word of a caption (a good place to break a line)


def _words(text: str, width: int = MAX_LINE) -> list[str]:
    """Whitespace-separated words; a word longer than a line is cut into line-sized pieces."""
    out: list[str] = []
    for word in text.replace("-->", "\u2192").split():
        out += [word[i:i + width] for i in range(0, len(word), width)]
    return out


def _line(tokens: Sequence[_Token]) -> str:
    text = " ".join(t.text for t in tokens)
    return text[:-len(SEPARATOR)] if tokens and tokens[-1].separated else text


def _two_lines(tokens: Sequence[_Token], width: int, breaks: Iterable[int]) -> list[str] | None:
    """The best two lines broken before one of ``breaks``: the most even, then the top line shorter."""
    best: tuple[int, int, list[str]] | None = None
    for k in breaks:
        top, bottom = _line(tokens[:k]), _line(tokens[k:])
        if len(top) <= width and len(bottom) <= width:
            key = (max(len(top), len(bottom)), 0 if len(top) <= len(bottom) else 1)
            if best is None or key < best[:2]:
                best = (*key, [top, bottom])
    return None if best is None else best[2]


def _balance(tokens: Sequence[_Token], width: int) -> list[str] | None:
    # captions of several scenes start a line each when they fit that way; else as one text
    between = _two_lines(tokens, width, [k for k in range(1, len(tokens)) if tokens[k - 1].last])
    if between is not None:
        return between
    one = _line(tokens)
    if len(one) <= width:
        return [one] if one else []
    return _two_lines(tokens, width, range(1, len(tokens)))


def balance(words: Sequence[str], width: int = MAX_LINE) -> list[str] | None:
    """The words on one line, or on two balanced lines (top no longer), or None if they do not fit."""
    return _balance([_Token(w) for w in words], width)


def pages(text: str | Sequence[str], width: int = MAX_LINE, lines: int = MAX_LINES) -> list[list[str]]:
    """A caption (or several, shown in order) as consecutive cue pages of at most ``lines`` lines
    of ``width`` characters; every word is on a page.

    Lines are filled greedily and paired into pages (balanced); with several captions, a caption
    starts a new page unless its first page fits on the page before it.
    """
    book = _Pages(width, lines)
    for caption in [text] if isinstance(text, str) else text:
        book.add(caption)
    return book.render()


class _Pages:
    """Pages built caption by caption (so a run of scenes is paginated in linear time)."""

    def __init__(self, width: int = MAX_LINE, lines: int = MAX_LINES):
        self.width, self.lines = width, lines
        self.pages: list[list[_Token]] = []  # tokens per page
        self._open = False  # the last caption added got a separator (another caption may follow)

    def add(self, caption: str) -> None:
        words = _words(caption, self.width)
        if not words:
            return
        if self._open:  # the caption before is not the last: it ends with a separator
            prev = self.pages[-1][-1]
            if not prev.text.endswith(_ENDS_SENTENCE):
                self.pages[-1][-1] = _Token(prev.text + SEPARATOR, separated=True, last=True)
        tokens = [_Token(w) for w in words[:-1]] + [_Token(words[-1], last=True)]
        greedy: list[list[_Token]] = []  # tokens per greedily filled line
        for token in tokens:
            if greedy and len(_line(greedy[-1] + [token])) <= self.width:
                greedy[-1].append(token)
            else:
                greedy.append([token])
        for i in range(0, len(greedy), self.lines):
            page = [t for line in greedy[i:i + self.lines] for t in line]
            if i == 0 and self.pages and _fit(self.pages[-1] + page, self.width, self.lines) is not None:
                self.pages[-1] = self.pages[-1] + page
            else:
                self.pages.append(page)
        self._open = True

    def __len__(self) -> int:
        return len(self.pages)

    def render(self) -> list[list[str]]:
        return [_fit(page, self.width, self.lines) or [_line(page)] for page in self.pages]


def _fit(tokens: Sequence[_Token], width: int, lines: int) -> list[str] | None:
    """The tokens on at most ``lines`` lines (balanced when 2), or None if they do not fit."""
    if lines == 2:
        return _balance(tokens, width)
    greedy: list[list[_Token]] = []
    for token in tokens:
        if greedy and len(_line(greedy[-1] + [token])) <= width:
            greedy[-1].append(token)
        else:
            greedy.append([token])
    return [_line(line) for line in greedy] if len(greedy) <= lines else None


def _ms(seconds: float) -> int:
    return round(float(seconds) * 1000)


@dataclass
class _Scene:  # a scene (or consecutive scenes with the same caption) in whole milliseconds
    start: int
    end: int
    text: str


def layout_cues(cues: Iterable[Cue], duration: float | None = None) -> list[Cue]:
    """Cues laid out by the rules in the module docstring; ``duration`` (seconds) is the recording's end."""
    limit = _ms(duration) if duration is not None and math.isfinite(duration) and duration > 0 else None
    rows = []
    for c in sorted((c for c in cues if math.isfinite(c.start) and math.isfinite(c.end)),
                    key=lambda c: (c.start, c.end)):
        text = " ".join(c.text.split())
        if not text:
            continue
        start = max(0, _ms(c.start))
        end = max(start, _ms(c.end))
        if limit is not None:
            start, end = min(start, limit), min(end, limit)
        rows.append((start, end, text))
    scenes: list[_Scene] = []
    for i, (start, end, text) in enumerate(rows):
        if i + 1 < len(rows):
            end = min(end, rows[i + 1][0])  # rule 7: cut at the next scene's start
        if scenes and scenes[-1].text == text and start - scenes[-1].end < _MIN_MS:
            scenes[-1].end = max(scenes[-1].end, end)  # rule 5
        else:
            scenes.append(_Scene(start, end, text))
    if not scenes:
        return []
    n = len(scenes)
    far = limit if limit is not None else math.inf

    def window_end(j: int) -> float:  # how far the cue of a block ending with scene j may run
        return scenes[j + 1].start if j + 1 < n else far

    blocks: list[tuple[int, int, int]] = []  # (first scene, last scene, cues needed) of each cue (rule 6)
    i = 0
    while i < n:
        book, j = _Pages(), i
        book.add(scenes[i].text)
        while j + 1 < n and window_end(j) - scenes[i].start < len(book) * _MIN_MS:
            j += 1
            book.add(scenes[j].text)
        blocks.append((i, j, len(book)))
        i = j + 1
    # The last cue, with no time left, joins the one(s) before it. The pages of two runs of scenes
    # together are at most the sum of each run's pages, so the sum is a safe measure of the need.
    while len(blocks) > 1:
        first, last, need = blocks[-1]
        if far - scenes[first].start >= need * _MIN_MS:
            break
        before = blocks.pop(-2)
        blocks[-1] = (before[0], last, before[2] + need)

    out: list[Cue] = []
    for i, j, _ in blocks:
        parts = pages([s.text for s in scenes[i:j + 1]])
        start = scenes[i].start
        need = len(parts) * _MIN_MS
        end = min(window_end(j), max(scenes[j].end, start + need))
        if end - start < need:  # rule 8: all of the text in one cue, no time left after it: start earlier
            start = max(0, min(start, int(end) - need))
            if end - start < len(parts):  # not even 1 ms a part (a recording of a few ms)
                end = start + len(parts)
        out += _timed(int(start), int(end), parts)
    return out


def _timed(start: int, end: int, parts: list[list[str]]) -> list[Cue]:
    """Consecutive cues for the pages over [start, end] ms: 1 s each, the rest shared by length."""
    sizes = [max(1, sum(len(line) for line in page)) for page in parts]
    span, total = end - start, sum(sizes)
    floor = _MIN_MS if span >= len(parts) * _MIN_MS else span // len(parts)
    spare = span - floor * len(parts)
    cues, t, used = [], start, 0
    for k, page in enumerate(parts):
        used += sizes[k]
        t_next = end if k == len(parts) - 1 else start + floor * (k + 1) + spare * used // total
        cues.append(Cue(t / 1000, t_next / 1000, "\n".join(page)))
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
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
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
    """``[{"start": s, "end": s, "text": caption, "tags": [label, ...], "annotations": [...]}, ...]``:
    scene times (to the millisecond), whole captions, tags and every analyser's annotations
    (``{"analyser", "kind", "text", "score"?, "data"?}``), one row per scene."""

    extension = "json"

    def prepare(self, cues: Iterable[Cue], duration: float | None = None) -> list[Cue]:
        return sorted(cues, key=lambda c: (c.start, c.end))

    def format(self, cues: Sequence[Cue]) -> str:
        rows = [{"start": _ms(c.start) / 1000, "end": _ms(c.end) / 1000, "text": c.text, "tags": list(c.tags),
                 "annotations": [a.to_json() for a in c.annotations]} for c in cues]
        return json.dumps(rows, ensure_ascii=False, indent=1) + "\n"


class TTMLWriter(SubtitleWriter):
    """EBU-TT-D (TTML, IMSC1 text) for broadcast playout: the same cues as SRT and WebVTT, written
    as a TTML document by :mod:`tvcaption.export_ttml` (ttconv)."""

    extension = "ttml"

    def format(self, cues: Sequence[Cue]) -> str:
        from tvcaption.export_ttml import ttml_document

        return ttml_document((c.start, c.end, c.text) for c in cues)


WRITERS: dict[str, type[SubtitleWriter]] = {w.extension: w for w in (SRTWriter, VTTWriter, TTMLWriter, JSONWriter)}


def get_writer(fmt: str) -> SubtitleWriter:
    key = fmt.lower().lstrip(".")
    key = {"webvtt": "vtt", "ebu-tt-d": "ttml", "ebuttd": "ttml", "imsc": "ttml", "xml": "ttml"}.get(key, key)
    if key not in WRITERS:
        raise TvcaptionError(f"{fmt}: unknown export format; use one of {', '.join(WRITERS)}")
    return WRITERS[key]()


def write_srt(cues: Iterable[Cue], out: str | Path, duration: float | None = None) -> Path:
    return SRTWriter().write(cues, out, duration)


def write_vtt(cues: Iterable[Cue], out: str | Path, duration: float | None = None) -> Path:
    return VTTWriter().write(cues, out, duration)


def write_json(cues: Iterable[Cue], out: str | Path) -> Path:
    return JSONWriter().write(cues, out)


# --- file names -------------------------------------------------------------------------------

def safe_name(name: str) -> str:
    """``name`` usable as one file name: control characters and path separators become ``_``."""
    out = "".join("_" if ch in "/\\" or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") else ch
                  for ch in name)
    return out or "_"


def _short_hash(path: str) -> str:
    return hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _base_name(path: str, level: int) -> str:
    """The file name (without extension) for ``path``: 0 stem, 1 file name, 2 folder_file name, 3 + hash."""
    name = os.path.basename(path.rstrip("/")) or path
    stem = Path(name).stem or name
    parent = os.path.basename(os.path.dirname(path.rstrip("/")))
    base = [stem, name, f"{parent}_{name}" if parent else name][min(level, 2)]
    base = safe_name(base)
    if level >= 3 or len(base.encode("utf-8", "surrogateescape")) > _NAME_BYTES:
        while len(base.encode("utf-8", "surrogateescape")) > _NAME_BYTES - 9:
            base = base[:-1]
        base = f"{base}-{_short_hash(path)}"
    return base


def output_names(paths: Iterable[str], extension: str) -> dict[str, str]:
    """A distinct file name (``<name>.<extension>``) per recording path, as the module docstring says.

    Names differ ignoring case too, for case-insensitive file systems.
    """
    level = {str(p): 0 for p in paths}
    while True:
        names = {p: f"{_base_name(p, lvl)}.{extension}" for p, lvl in level.items()}
        groups: dict[str, list[str]] = {}
        for p, name in names.items():
            groups.setdefault(name.casefold(), []).append(p)
        clashing = [p for group in groups.values() if len(group) > 1 for p in group if level[p] < 3]
        if not clashing:
            return names
        for p in clashing:
            level[p] += 1


def _out_folder(out_dir: str | Path) -> Path:
    """``out_dir`` if it is (or can become) a folder; a one-line error naming it otherwise."""
    out = Path(out_dir)
    for folder in (out, *out.parents):
        if folder.exists():
            if not folder.is_dir():
                raise TvcaptionError(f"{folder}: is a file, not a folder; give --out a folder "
                                     "(an existing one or a new name)")
            break
    return out


# --- from the database ------------------------------------------------------------------------

def _store(store_or_engine: Any):
    from tvcaption.db.store import Store

    return store_or_engine if isinstance(store_or_engine, Store) else Store(store_or_engine)


def caption_hidden(scene: Any) -> bool:
    """Whether the scene's caption is out of domain (stored under the hidden search field)."""
    found = scene.of_kind("caption")
    return bool(found) and found[0].hidden


def cue_text(scene: Any, with_text: bool = False, all_captions: bool = False) -> str:
    """What a cue says of a scene: its caption (none when out of domain, unless ``all_captions``);
    with ``with_text``, then the text on screen (the ``text`` analyser's readings, top to
    bottom) as "On screen: A; B"."""
    caption = "" if caption_hidden(scene) and not all_captions else scene.caption
    if not with_text:
        return caption
    seen = [a.text for a in scene.of_kind("text")]
    shown = f"On screen: {'; '.join(seen)}" if seen else ""
    return " ".join(part for part in (caption, shown) if part)


def _export(store, recording, writer: SubtitleWriter, out: Path, with_text: bool = False,
            all_captions: bool = False, left_out: dict[str, int] | None = None,
            reviewed_only: bool = False) -> Path | None:
    """Write one recording's track; None (nothing written) when ``reviewed_only`` finds no reviewed scene."""
    scenes = store.scenes_of(recording.id)
    if reviewed_only:
        scenes = [s for s in scenes if s.corrections]
        if not scenes:
            return None
    keep = all_captions or isinstance(writer, JSONWriter)  # SRT, WebVTT, TTML: out-of-domain captions left out
    cues = [Cue(s.start, s.end, cue_text(s, with_text, keep), s.tags, s.annotations) for s in scenes]
    if left_out is not None and not keep:
        left_out[recording.path] = sum(caption_hidden(s) for s in scenes)
    return writer.write(cues, out, duration=recording.duration)


EXPORT_TAG = "tvcaption"  # exported files are NAME.tvcaption.srt (.vtt, .ttml, .json)


def export_extension(writer: Any) -> str:
    """``tvcaption.srt`` and so on: an export is never ``NAME.srt`` beside its recording, which
    is the recording's own subtitle file (the speech analyser reads it; exporting from the
    recordings' folder would overwrite it, and the next index would read the descriptions back as
    speech). ``NAME.tvcaption.srt`` is read by neither the speech analyser nor ``train
    --from-index`` (whose description tracks are people's: ``NAME.ad.srt``)."""
    return f"{EXPORT_TAG}.{writer.extension}"


def export_recording(store_or_engine: Any, recording_path: str | Path, fmt: str, out_dir: str | Path,
                     with_text: bool = False, all_captions: bool = False,
                     left_out: dict[str, int] | None = None, reviewed_only: bool = False) -> Path:
    """Write ``out_dir/<name>.<fmt>`` from the stored scenes; returns its path.

    ``store_or_engine``: a Store, an Engine or a database URL. The recording must be indexed.
    The name is the one :func:`export_all` gives the recording (the stem, unless another
    indexed recording has the same one), so exporting one by one never overwrites another.
    ``with_text``: cues also say the text on screen (:func:`cue_text`). ``all_captions``: SRT
    and WebVTT keep out-of-domain captions too; else ``left_out`` (when given) gets the number
    of captions left out, by recording path. ``reviewed_only``: only the scenes a reviewer
    corrected; a recording without any is a one-line error.
    """
    writer = get_writer(fmt)
    folder = _out_folder(out_dir)
    store = _store(store_or_engine)
    path = str(recording_path)
    # any spelling of an indexed recording's path (relative, .., symlink) where the Store can find it
    recording = store.find_recording(path)
    if recording is None:
        raise TvcaptionError(f"{path}: not in the database; index it first (tvcaption index)")
    if recording.status == "failed":
        why = recording.error.splitlines()[0] if recording.error else "no reason stored"
        raise TvcaptionError(f"{path}: not indexed (status failed: {why}); nothing to export until the file "
                             "is fixed and indexed again")
    if recording.status != "done":
        raise TvcaptionError(f"{path}: not indexed yet (status {recording.status}); run tvcaption index on it")
    others = [r.path for r in store.recordings(status="done")]
    names = output_names({*others, recording.path}, export_extension(writer))
    written = _export(store, recording, writer, folder / names[recording.path], with_text, all_captions, left_out,
                      reviewed_only)
    if written is None:
        raise TvcaptionError(f"{path}: no reviewed scene to export; correct captions in tvcaption serve first, "
                             "or export without --reviewed-only")
    return written


def export_all(store_or_engine: Any, fmt: str, out_dir: str | Path, with_text: bool = False,
               all_captions: bool = False, left_out: dict[str, int] | None = None, reviewed_only: bool = False,
               unreviewed: list[str] | None = None) -> list[Path]:
    """Export every indexed recording into ``out_dir``; returns the files written.

    Files are named after the recordings, distinct names by the rules in the module docstring,
    so none overwrites another. ``all_captions`` and ``left_out``: as :func:`export_recording`.
    ``reviewed_only``: only reviewed scenes; recordings without one are not written (their
    paths are added to ``unreviewed`` when given).
    """
    writer = get_writer(fmt)
    folder = _out_folder(out_dir)
    store = _store(store_or_engine)
    done = store.recordings(status="done")
    names = output_names([r.path for r in done], export_extension(writer))
    written = []
    for recording in done:
        path = _export(store, recording, writer, folder / names[recording.path], with_text, all_captions, left_out,
                       reviewed_only)
        if path is not None:
            written.append(path)
        elif unreviewed is not None:
            unreviewed.append(recording.path)
    return written
