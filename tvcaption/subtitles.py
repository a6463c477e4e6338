"""Subtitle text of a recording: sidecar files beside it and text streams inside it, as cues.

Sidecars are ``NAME.srt``, ``NAME.vtt``, ``NAME.ass``/``NAME.ssa`` and the same with a language
(``NAME.en.srt``, ``NAME.pt-BR.vtt``, ``NAME.fr.forced.srt``) beside ``NAME.<ext>``. Embedded text
streams (mov_text, subrip, webvtt, ass) are demuxed with PyAV; bitmap streams (DVB, PGS, DVD) are
reported as skipped. Every cue time is in seconds from the recording's first video frame, like a
scene's, also for an MPEG-TS whose first PTS is hours in (or wraps).

Whatever is wrong with a sidecar (not UTF-8, broken timing lines, cues past the end, no cues)
is one warning naming the file; what can be read of it is kept.
"""

from __future__ import annotations

import html
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SIDECAR_SUFFIXES = (".srt", ".vtt", ".ass", ".ssa")
# the part between NAME. and the suffix: a language tag and/or flags ("en", "pt-BR", "en.forced")
_TAG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
_FLAGS = {"forced", "sdh", "cc", "hi", "default", "full"}
# NAME.ad.srt is a description track (audio description: what is seen, not what is said), which
# `train --from-index` learns from; "ad" is no ISO 639 language, so it is never speech
_DESCRIPTION = "ad"
_EXPORTED = "tvcaption"  # NAME.tvcaption.srt: tvcaption's own export (tvcaption.export.EXPORT_TAG)
_ISO639_2 = {  # the three-letter codes of stream metadata, as the two-letter ones of file names
    "eng": "en", "fra": "fr", "fre": "fr", "deu": "de", "ger": "de", "spa": "es", "ita": "it", "por": "pt",
    "nld": "nl", "dut": "nl", "rus": "ru", "zho": "zh", "chi": "zh", "jpn": "ja", "kor": "ko", "ara": "ar",
    "swe": "sv", "nor": "no", "nob": "nb", "dan": "da", "fin": "fi", "pol": "pl", "ces": "cs", "cze": "cs",
    "tur": "tr", "ell": "el", "gre": "el", "heb": "he", "hin": "hi", "hun": "hu", "ron": "ro", "rum": "ro",
    "ukr": "uk", "cym": "cy", "wel": "cy", "gle": "ga", "cat": "ca", "eus": "eu", "baq": "eu", "glg": "gl",
}
_TIMING = re.compile(r"^\s*(?P<a>(?:\d+:)?\d{1,2}:\d{1,2}(?:[.,:]\d{1,3})?)\s*-->\s*"
                     r"(?P<b>(?:\d+:)?\d{1,2}:\d{1,2}(?:[.,:]\d{1,3})?)(?:\s.*)?$")
_TIME = re.compile(r"(?:(?P<h>\d+):)?(?P<m>\d{1,2}):(?P<s>\d{1,2})(?:[.,:](?P<f>\d{1,3}))?")
_TIMING_LIKE = re.compile(r"^\s*\d+:\d+\S*\s*(?:-+\s*>|=+>|—>|→)")  # a timing line with a mistyped arrow
_ASS_BLOCK = re.compile(r"\{[^}]*\}")
_TAGS = re.compile(r"</?[A-Za-z0-9][^<>]*>")
_SPACE = re.compile(r"\s+")
MPEGTS_WRAP = 2 ** 33 / 90000  # seconds: the 33-bit 90 kHz PTS of MPEG-TS wraps after ~26.5 h


@dataclass(frozen=True)
class Cue:
    """One subtitle: seconds from the recording start, the plain text, where it came from."""

    start: float
    end: float
    text: str
    source: str  # the sidecar's file name, or "stream N"
    language: str | None = None

    def to_json(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text,
                "source": self.source, "language": self.language}


def normalise_language(code: str | None) -> str | None:
    """'en', 'en-US', 'eng' -> 'en', 'en-us', 'en'; '' and 'und' -> None."""
    code = (code or "").strip().replace("_", "-").lower()
    if not code or code in ("und", "unk", "mis", "zxx", "mul"):
        return None
    head, _, rest = code.partition("-")
    head = _ISO639_2.get(head, head)
    return f"{head}-{rest}" if rest else head


def clean_text(text: str, ass: bool = False) -> str:
    """Plain text of a cue: no <i>/<v Name>/<00:01.000> tags, no {\\an8} or ASS override blocks,
    entities decoded, line breaks and runs of spaces as one space."""
    text = text.replace("\\N", " ").replace("\\n", " ").replace("\\h", " ")
    text = _ASS_BLOCK.sub("", text) if ass else re.sub(r"\{\\[^}]*\}", "", text)
    text = html.unescape(_TAGS.sub("", text))
    return _SPACE.sub(" ", text).strip()


# ---------------------------------------------------------------- sidecars

def find_sidecars(path: str | Path, video_extensions: Iterable[str] = ()) -> list[tuple[Path, str | None]]:
    """Subtitle files beside the recording at ``path`` and the language their names give, sorted.

    ``NAME.x.srt`` is not taken when ``NAME.x.<a video extension>`` is beside it: it belongs to that
    recording (``show.mp4`` and ``show.part.mp4`` each keep their own).
    """
    path = Path(path)
    folder, stem = path.parent, path.stem
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    videos = {e.lower() for e in video_extensions}
    others = {n[len(stem) + 1:].rsplit(".", 1)[0] for n in names
              if n.startswith(stem + ".") and os.path.splitext(n)[1].lower() in videos and n != path.name}
    found = []
    for name in sorted(names):
        base, suffix = os.path.splitext(name)
        if suffix.lower() not in SIDECAR_SUFFIXES or not (base == stem or base.startswith(stem + ".")):
            continue
        middle = base[len(stem) + 1:]
        parts = middle.split(".") if middle else []
        if middle in others or not all(_TAG.match(p) or p.lower() in _FLAGS for p in parts):
            continue
        if any(p.lower() in (_DESCRIPTION, _EXPORTED) for p in parts):
            continue
        language = next((p for p in parts if p.lower() not in _FLAGS), None)
        if (folder / name).is_file():
            found.append((folder / name, normalise_language(language)))
    return found


# the Windows code page (or national encoding) of subtitle files that are not Unicode, by the
# language their file name gives: what files from before UTF-8 were written in
LEGACY_ENCODINGS = {
    "el": "cp1253", "ru": "cp1251", "uk": "cp1251", "bg": "cp1251", "sr": "cp1251", "mk": "cp1251", "be": "cp1251",
    "ar": "cp1256", "fa": "cp1256", "ur": "cp1256", "he": "cp1255", "yi": "cp1255", "tr": "cp1254", "az": "cp1254",
    "pl": "cp1250", "cs": "cp1250", "sk": "cp1250", "hu": "cp1250", "sl": "cp1250", "hr": "cp1250", "ro": "cp1250",
    "bs": "cp1250", "sq": "cp1250", "et": "cp1257", "lv": "cp1257", "lt": "cp1257", "vi": "cp1258", "th": "cp874",
    "zh": "gb18030", "zh-tw": "big5", "zh-hk": "big5", "ja": "cp932", "ko": "cp949",
}
_NAMES = {"cp1250": "Windows-1250", "cp1251": "Windows-1251", "cp1252": "Windows-1252", "cp1253": "Windows-1253",
          "cp1254": "Windows-1254", "cp1255": "Windows-1255", "cp1256": "Windows-1256", "cp1257": "Windows-1257",
          "cp1258": "Windows-1258", "cp874": "Windows-874", "gb18030": "GB18030", "big5": "Big5",
          "cp932": "Shift JIS (Windows-31J)", "cp949": "Windows-949 (Korean)"}


def _legacy(data: bytes, language: str | None) -> tuple[str, str] | None:
    """(text, what was assumed) of a file in a legacy encoding: the one of the language its name
    gives; else, when charset-normalizer finds a non-Latin script (Greek, Cyrillic, CJK ...), its
    guess; None to read it as Windows-1252 (Western European, and what a guess of another Latin
    code page gets wrong as often as right on a few lines)."""
    tag = (language or "").lower()
    codec = LEGACY_ENCODINGS.get(tag) or LEGACY_ENCODINGS.get(tag.split("-")[0])
    if codec:
        try:
            return data.decode(codec), f"not UTF-8; read as {_NAMES.get(codec, codec)} (the file name says {language})"
        except UnicodeDecodeError:
            pass
    try:
        from charset_normalizer import from_bytes
    except ImportError:
        return None
    matches = list(from_bytes(data))  # least "chaos" first
    best = matches[0] if matches else None
    if best is not None and len(str(best)) == len(data):  # a code page of one byte a letter
        # on a line or two the statistics say little (a Greek line came out as mac_latin2); a wrong
        # code page writes letters of mixed case inside a word and symbols between them: fewest wins
        single = [m for m in matches if len(str(m)) == len(data)]
        # equal: the Windows code pages first (what subtitle files before UTF-8 were written in)
        best = min(single, key=lambda m: (_anomalies(str(m)), not m.encoding.startswith("cp125"), single.index(m)))
    if best is None or best.encoding in ("ascii", "utf_8", "cp1252", "latin_1"):
        return None
    text = str(best)
    letters = [ch for ch in text if ch.isalpha() and ord(ch) > 0x7F]
    if not letters or sum(0x0250 > ord(ch) for ch in letters) > len(letters) // 2:
        return None  # mostly Latin letters: Windows-1252 below
    name = _NAMES.get(best.encoding, best.encoding)
    return text, f"not UTF-8; read as {name} (guessed; a name like NAME.el.srt says which language it is)"


def _anomalies(text: str) -> int:
    """What a wrong code page makes of words: a capital after a small letter, a symbol between letters."""
    count = 0
    for word in text.split():
        for a, b, c in zip(word, word[1:], word[2:]):
            if a.isalpha() and c.isalpha() and not b.isalpha() and b not in "'’-·.":
                count += 1
        count += sum(1 for a, b in zip(word, word[1:]) if a.islower() and b.isupper())
    return count


def decode_text(data: bytes, language: str | None = None) -> tuple[str, str | None]:
    """The text of a subtitle file and, when it was not UTF-8 (or marked by a BOM), what was
    assumed; ``language`` (from the file name) picks the legacy code page (:func:`_legacy`)."""
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
                       (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            return data.decode(codec, errors="replace"), None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    sample = data[:4000]
    if sample.count(0) > len(sample) // 4:  # UTF-16 without a BOM: every other byte of ASCII is 0
        codec = "utf-16-le" if sample[1::2].count(0) > sample[0::2].count(0) else "utf-16-be"
        return data.decode(codec, errors="replace"), f"{codec.upper()} without a byte-order mark"
    legacy = _legacy(data, language)
    if legacy is not None:
        return legacy
    try:
        return data.decode("cp1252"), "not UTF-8; read as Windows-1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "not UTF-8; read as Latin-1"


def parse_time(text: str) -> float:
    """'01:02:03,450', '02:03.450', '1:02:03.45' (ASS centiseconds) -> seconds; ValueError if not a time."""
    match = _TIME.fullmatch(text.strip())
    if not match or int(match["m"]) > 59 or int(match["s"]) > 59:
        raise ValueError(text)
    frac = match["f"] or ""
    return int(match["h"] or 0) * 3600 + int(match["m"]) * 60 + int(match["s"]) + (int(frac) / 10 ** len(frac) if frac else 0.0)


def parse_srt_vtt(text: str) -> tuple[list[tuple[float, float, str]], list[str]]:
    """Cues of SubRip or WebVTT text as (start, end, raw text), and what was wrong with it.

    A line with ``-->`` opens a cue; its text runs to the next blank line. Numbers, cue
    identifiers, NOTE/STYLE blocks and the WEBVTT header are outside cues and ignored.
    """
    cues: list[tuple[float, float, str]] = []
    broken: list[int] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    current: list[str] | None = None
    times = (0.0, 0.0)
    skipping = False  # inside a WebVTT NOTE, STYLE or REGION block
    for number, line in enumerate(lines + [""], 1):
        if current is None and line.startswith(("NOTE", "STYLE", "REGION")):
            skipping = True
        elif skipping or (not line.strip() and current is None):
            skipping = skipping and bool(line.strip())
        elif "-->" in line or _TIMING_LIKE.match(line):
            if current and current[-1].strip().isdigit():  # no blank line before this cue: that was its number
                current.pop()
            if current:
                cues.append((*times, "\n".join(current)))
            current = None
            match = _TIMING.match(line)
            try:
                times = (parse_time(match["a"]), parse_time(match["b"])) if match else None
            except ValueError:
                times = None
            if times is None or times[1] < times[0]:
                broken.append(number)
            else:
                current = []
        elif not line.strip():
            if current:
                cues.append((*times, "\n".join(current)))
            current = None
        elif current is not None:
            current.append(line)
    problems = []
    if broken:
        problems.append(f"{len(broken)} broken timing line{'s' * (len(broken) > 1)} skipped "
                        f"(line {', '.join(map(str, broken[:3]))}{', ...' if len(broken) > 3 else ''})")
    return cues, problems


def parse_ass(text: str) -> tuple[list[tuple[float, float, str]], list[str]]:
    """Dialogue lines of an ASS/SSA script as (start, end, raw text), and what was wrong with it."""
    fields = ["layer", "start", "end", "style", "name", "marginl", "marginr", "marginv", "effect", "text"]
    cues, broken = [], 0
    for line in text.replace("\r", "\n").split("\n"):
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "format":
            fields = [f.strip().lower() for f in value.split(",")]
        elif key == "dialogue":
            values = value.strip().split(",", len(fields) - 1)
            row = dict(zip(fields, values))
            try:
                start, end = parse_time(row["start"]), parse_time(row["end"])
            except (KeyError, ValueError, TypeError):
                broken += 1
                continue
            if end < start:
                broken += 1
                continue
            cues.append((start, end, row.get("text", "")))
    return cues, [f"{broken} broken Dialogue line{'s' * (broken > 1)} skipped"] if broken else []


def read_sidecar(path: Path, language: str | None, duration: float | None) -> list[Cue]:
    """The cues of one sidecar, cleaned and within the recording; one warning line for what was wrong."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.warning("%s: cannot read the subtitle file (%s); its text is left out", path, exc.strerror or exc)
        return []
    problems: list[str] = []
    text, assumed = decode_text(data, language)
    if assumed:
        problems.append(assumed)
    ass = path.suffix.lower() in (".ass", ".ssa")
    raw, found = (parse_ass if ass else parse_srt_vtt)(text)
    problems += found
    cues = [Cue(s, e, clean_text(t, ass), path.name, language) for s, e, t in raw]
    cues = [c for c in cues if c.text]
    if duration:
        cues, past = within(cues, duration)
        if past:
            problems.append(f"{past} cue{'s' * (past > 1)} past the end of the recording ({duration:.1f} s) left out")
    if not cues:
        problems.append("empty file" if not data.strip() else "no subtitle cues found")
    if problems:
        log.warning("%s: %s", path, "; ".join(problems))
    return sorted(cues, key=lambda c: (c.start, c.end))


def within(cues: Sequence[Cue], duration: float) -> tuple[list[Cue], int]:
    """Cues starting before ``duration`` (their ends cut to it) and how many started after it."""
    kept = [c if c.end <= duration else Cue(c.start, duration, c.text, c.source, c.language)
            for c in cues if c.start < duration]
    return kept, len(cues) - len(kept)


# ---------------------------------------------------------------- streams inside the container

def read_streams(path: str | Path, start_time: float = 0.0, duration: float | None = None) -> list[Cue]:
    """Cues of the text subtitle streams inside the recording, times from ``start_time`` (the
    first video PTS); bitmap streams are reported as skipped in one warning line."""
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        log.warning("%s: cannot read its subtitle streams (%s)", path, exc)
        return []
    with container:
        streams = list(container.streams.subtitles)
        text = [s for s in streams if _is_text(s)]
        skipped = [s for s in streams if s not in text]
        if skipped:
            log.warning("%s: %s not read (bitmap subtitles are not OCRed; only text subtitles are indexed)", path,
                        ", ".join(f"stream {s.index} ({_codec_name(s)})" for s in skipped))
        if not text:
            return []
        wrap = MPEGTS_WRAP if "mpegts" in container.format.name else None
        cues = _demux(container, text, start_time, wrap)
    if duration:
        cues, past = within(cues, duration)
        if past:
            log.warning("%s: %d cue%s of its subtitle streams past the end of the video (%.1f s) left out", path,
                        past, "s" * (past > 1), duration)
    return sorted(cues, key=lambda c: (c.start, c.end, c.source))


def _codec_name(stream) -> str:
    try:
        return stream.codec_context.codec.canonical_name  # "dvb_subtitle", "hdmv_pgs_subtitle", as ffprobe names them
    except Exception:  # noqa: BLE001 - no decoder in this FFmpeg
        return "unknown codec"


def _is_text(stream) -> bool:
    try:
        codec = stream.codec_context.codec
        return bool(codec.text_sub) and not codec.bitmap_sub
    except Exception:  # noqa: BLE001 - no decoder for it in this FFmpeg (e.g. teletext without libzvbi)
        return False


def _demux(container, streams, start_time: float, wrap: float | None) -> list[Cue]:
    """Decoded text of every packet of ``streams``; times from ``start_time`` (a wrapped PTS fixed)."""
    import av

    cues: list[Cue] = []
    languages = {s.index: normalise_language(s.metadata.get("language")) for s in streams}
    try:
        for packet in container.demux(streams):
            if packet.pts is None or not packet.size:
                continue
            start = float(packet.pts * packet.time_base) - start_time
            if wrap and start < -wrap / 2:
                start += wrap
            length = float(packet.duration * packet.time_base) if packet.duration else 0.0
            try:
                rects = packet.stream.codec_context.decode(packet)
            except av.FFmpegError:
                continue
            words = " ".join(clean_text(_rect_text(r), ass=True) for r in rects).strip()
            if words and start + length > 0:
                cues.append(Cue(max(start, 0.0), start + length, words, f"stream {packet.stream.index}",
                                languages[packet.stream.index]))
    except av.FFmpegError as exc:  # a damaged tail: keep what was read
        log.warning("%s: subtitle streams read only in part (%s)", container.name, exc)
    return cues


def _rect_text(rect) -> str:
    dialogue = getattr(rect, "dialogue", b"") or b""
    plain = getattr(rect, "text", b"") or b""
    value = dialogue or plain
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def read_all(path: str | Path, sidecars: Sequence[tuple[Path, str | None]], start_time: float = 0.0,
             duration: float | None = None, streams: bool = True) -> list[Cue]:
    """Every cue of a recording: its sidecars', then its text streams'."""
    cues = [c for side, language in sidecars for c in read_sidecar(side, language, duration)]
    return cues + (read_streams(path, start_time, duration) if streams else [])
