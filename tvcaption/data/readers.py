"""Dataset readers: MSR-VTT, MSVD (three layouts) and SynthTV, all to a list of :class:`Clip`.

Captions are returned raw (as the files hold them); normalisation is :mod:`tvcaption.vocab`'s job.
``Clip.video`` is the path of the clip's video file when it was found, else ``""`` (caption-only
corpora such as the MSVD TSV files without ``YouTubeClips/``). Splits are ``train``, ``val``,
``test`` (MSR-VTT's ``validate`` becomes ``val``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from tvcaption.errors import TvcaptionError

__all__ = ["Clip", "read_msrvtt", "read_msvd", "read_tvcaption", "read_dataset", "VIDEO_EXTENSIONS"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".ts", ".mpg", ".mpeg", ".m4v", ".flv", ".mxf")
_SPLITS = {"train": "train", "training": "train", "validate": "val", "validation": "val", "val": "val",
           "valid": "val", "test": "test", "testing": "test"}
# MSVD's standard split (Venugopalan et al. 2015): the first 1200 videos train, next 100 val, last 670 test
MSVD_SPLIT = (1200, 100, 670)


@dataclass(frozen=True)
class Clip:
    id: str
    video: str
    captions: tuple[str, ...]
    split: str
    slots: dict | None = None
    hard: bool = False


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _video_index(dirs: list[Path]) -> dict[str, str]:
    """Map a video's stem (and full name) to its path, for every video file in ``dirs``."""
    index: dict[str, str] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        with os.scandir(d) as it:
            for entry in it:
                name = entry.name
                stem, ext = os.path.splitext(name)
                if ext.lower() in VIDEO_EXTENSIONS and entry.is_file():
                    index.setdefault(stem, str(Path(d) / name))
                    index.setdefault(name, str(Path(d) / name))
    return index


def _load_json(path: Path) -> object:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise TvcaptionError(f"{path}: file not found; give the dataset's annotation file or root folder") from None
    except json.JSONDecodeError as exc:
        raise TvcaptionError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg}); is the file complete?") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TvcaptionError(f"{path}: cannot be read ({exc}); check the path and its permissions") from None


def _split(value: object, where: Path) -> str:
    split = _SPLITS.get(str(value).lower())
    if split is None:
        raise TvcaptionError(f"{where}: unknown split {value!r}; expected train, validate (val) or test")
    return split


# --------------------------------------------------------------------------------------------
# MSR-VTT and SynthTV
# --------------------------------------------------------------------------------------------


def _msrvtt_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if (path / "videodatainfo.json").is_file():
        return [path / "videodatainfo.json"]
    files = sorted(path.glob("*videodatainfo*.json"))
    if not files and (path / "annotation").is_dir():
        files = sorted((path / "annotation").glob("*videodatainfo*.json"))
    return files


def _is_videodatainfo(obj: object) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("videos"), list) and isinstance(obj.get("sentences"), list)


def read_msrvtt(json_path_or_root: str | Path, videos_dir: str | Path | None = None) -> list[Clip]:
    """MSR-VTT's ``*videodatainfo.json`` (one file, or all of them in a root folder) + its videos.

    Videos are looked up in ``videos_dir`` or, by default, next to the JSON in ``videos/``,
    ``TrainValVideo/``, ``TestVideo/`` and the folder itself. Clips keep the file's order.
    """
    path = Path(json_path_or_root)
    if not path.exists():
        raise TvcaptionError(f"{path}: not found; give an MSR-VTT videodatainfo JSON or the folder holding it")
    files = _msrvtt_files(path)
    if not files:
        raise TvcaptionError(f"{path}: no *videodatainfo.json here; give MSR-VTT's annotation file or its folder")
    root = files[0].parent
    if videos_dir is not None:
        dirs = [Path(videos_dir)]
    else:
        dirs = [root / "videos", root / "TrainValVideo", root / "TestVideo", root / "video", root]
        if root.name == "annotation":
            dirs += [root.parent / "videos", root.parent / "TrainValVideo", root.parent / "TestVideo"]
    index = _video_index(dirs)

    clips: dict[str, dict] = {}
    for file in files:
        data = _load_json(file)
        if not _is_videodatainfo(data):
            raise TvcaptionError(f"{file}: not an MSR-VTT videodatainfo file (needs 'videos' and 'sentences' lists)")
        for v in data["videos"]:
            try:
                vid = str(v["video_id"])
                split = _split(v["split"], file)
            except KeyError as exc:
                raise TvcaptionError(f"{file}: a video entry lacks {exc.args[0]!r}; is this MSR-VTT's format?") from None
            if vid not in clips:
                clips[vid] = {"split": split, "slots": v.get("slots"), "hard": bool(v.get("hard", False)),
                              "captions": []}
        for s in data["sentences"]:
            try:
                vid, cap = str(s["video_id"]), s["caption"]
            except KeyError as exc:
                raise TvcaptionError(f"{file}: a sentence lacks {exc.args[0]!r}; is this MSR-VTT's format?") from None
            if vid in clips:
                clips[vid]["captions"].append((s.get("sen_id", 0), cap))
    return [
        Clip(id=vid, video=index.get(vid, ""),
             captions=tuple(c for _, c in sorted(c["captions"], key=lambda x: x[0])),
             split=c["split"], slots=c["slots"], hard=c["hard"])
        for vid, c in clips.items()
    ]


def read_tvcaption(root: str | Path) -> list[Clip]:
    """A SynthTV folder (``generate_synthtv``'s output): MSR-VTT's format plus slots and the hard flag."""
    root = Path(root)
    file = root / "videodatainfo.json" if root.is_dir() else root
    if not file.is_file():
        raise TvcaptionError(f"{root}: no videodatainfo.json; generate one with `tvcaption synth OUT`")
    clips = read_msrvtt(file, file.parent / "videos")
    if clips and all(c.slots is None for c in clips):
        raise TvcaptionError(f"{file}: no 'slots' in its videos; this is plain MSR-VTT, read it with read_msrvtt")
    return clips


# --------------------------------------------------------------------------------------------
# MSVD
# --------------------------------------------------------------------------------------------

_MSVD_TSV = re.compile(r"MSVD_(train|val|test)\.tsv$", re.IGNORECASE)


def _read_msvd_tsv(file: Path) -> list[tuple[str, list[str]]]:
    rows = []
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TvcaptionError(f"{file}: cannot be read ({exc}); check the path") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise TvcaptionError(f"{file}:{n}: expected 'caption, caption, ...<TAB>video_id'; is this an MSVD TSV?")
        caps, vid = line.rsplit("\t", 1)
        captions = [c.strip() for c in caps.split(", ")]
        rows.append((vid.strip(), [c.strip(" ,") for c in captions if c.strip(" ,")]))
    return rows


def _read_all_descriptions(file: Path) -> list[tuple[str, list[str]]]:
    """MSVD's official ``AllVideoDescriptions.txt``: ``VIDEOID_START_END caption words``, # comments."""
    order: dict[str, list[str]] = {}
    try:
        lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise TvcaptionError(f"{file}: cannot be read ({exc}); check the path") from None
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) < 2:
            continue
        order.setdefault(parts[0], []).append(parts[1].strip())
    return list(order.items())


def _standard_splits(n: int) -> list[str]:
    a, b, _ = MSVD_SPLIT
    return ["train" if i < a else "val" if i < a + b else "test" for i in range(n)]


def read_msvd(root_or_file: str | Path, videos: str | Path | None = None) -> list[Clip]:
    """MSVD in any of its layouts.

    - ``MSVD_{train,val,test}.tsv`` (one file, or a folder of them): rows ``cap1, cap2, ...<TAB>id``;
    - the official ``AllVideoDescriptions.txt`` (file or its folder) + ``YouTubeClips/*.avi``; splits
      are the standard 1200/100/670 in the file's order of first appearance;
    - a folder of clips with ``captions.json`` (``{"captions": {file name: [captions]}}``): split
      ``test``.

    ``videos``: the folder of ``VIDEOID_START_END.avi`` clips; by default ``YouTubeClips/`` next
    to the caption file, else the caption file's own folder.
    """
    path = Path(root_or_file)
    if not path.exists():
        raise TvcaptionError(f"{path}: not found; give an MSVD caption file (TSV, AllVideoDescriptions.txt) or folder")
    folder = path if path.is_dir() else path.parent
    dirs = [Path(videos)] if videos is not None else [folder / "YouTubeClips", folder / "videos", folder]
    index = _video_index(dirs)

    def clip(vid: str, caps: list[str], split: str) -> Clip:
        return Clip(id=vid, video=index.get(vid, ""), captions=tuple(caps), split=split)

    if path.is_file() and path.suffix.lower() == ".tsv":
        m = _MSVD_TSV.search(path.name)
        split = m.group(1).lower() if m else "train"
        return [clip(vid, caps, split) for vid, caps in _read_msvd_tsv(path)]
    if path.is_file() and path.suffix.lower() == ".json":
        return _read_captions_json(path, index)
    if path.is_file():  # AllVideoDescriptions.txt or another file in its format
        rows = _read_all_descriptions(path)
        if not rows:
            raise TvcaptionError(f"{path}: no 'VIDEOID_START_END caption' lines; is this MSVD's AllVideoDescriptions.txt?")
        return [clip(vid, caps, s) for (vid, caps), s in zip(rows, _standard_splits(len(rows)))]
    tsvs = sorted(p for p in path.iterdir() if _MSVD_TSV.search(p.name))
    if tsvs:
        rank = {"train": 0, "val": 1, "test": 2}
        tsvs.sort(key=lambda p: rank[_MSVD_TSV.search(p.name).group(1).lower()])
        out: list[Clip] = []
        for t in tsvs:
            split = _MSVD_TSV.search(t.name).group(1).lower()
            out += [clip(vid, caps, split) for vid, caps in _read_msvd_tsv(t)]
        return out
    if (path / "AllVideoDescriptions.txt").is_file():
        return read_msvd(path / "AllVideoDescriptions.txt", videos)
    if (path / "captions.json").is_file():
        return _read_captions_json(path / "captions.json", index)
    raise TvcaptionError(
        f"{path}: no MSVD captions here (MSVD_*.tsv, AllVideoDescriptions.txt or captions.json); give the MSVD folder")


def _read_captions_json(file: Path, index: dict[str, str]) -> list[Clip]:
    data = _load_json(file)
    caps = data.get("captions") if isinstance(data, dict) else None
    if not isinstance(caps, dict):
        raise TvcaptionError(f"{file}: expected {{\"captions\": {{file name: [captions]}}}}; not a captioned-clips file")
    out = []
    for name, lst in caps.items():
        stem = os.path.splitext(name)[0]
        video = index.get(name) or index.get(stem, "")
        out.append(Clip(id=stem, video=video, captions=tuple(str(c) for c in lst), split="test"))
    return out


# --------------------------------------------------------------------------------------------
# detection
# --------------------------------------------------------------------------------------------


def detect_format(path: str | Path) -> str:
    """'tvcaption', 'msrvtt' or 'msvd' for a dataset file or folder; TvcaptionError otherwise."""
    path = Path(path)
    if not path.exists():
        raise TvcaptionError(f"{path}: not found; give a dataset folder (SynthTV, MSR-VTT or MSVD) or its caption file")
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".tsv"):
            return "msvd"
        if name.endswith(".json"):
            data = _load_json(path)
            if _is_videodatainfo(data):
                return "tvcaption" if any(isinstance(v, dict) and "slots" in v for v in data["videos"]) else "msrvtt"
            if isinstance(data, dict) and isinstance(data.get("captions"), dict):
                return "msvd"
        elif name.endswith(".txt") and _looks_like_descriptions(path):
            return "msvd"
    else:
        files = _msrvtt_files(path)
        if files:
            return detect_format(files[0])
        if any(_MSVD_TSV.search(p.name) for p in path.iterdir()):
            return "msvd"
        if (path / "AllVideoDescriptions.txt").is_file() or (path / "captions.json").is_file():
            return "msvd"
    raise TvcaptionError(
        f"{path}: not a known dataset layout; expected a SynthTV folder (videodatainfo.json + videos/), "
        "MSR-VTT (*videodatainfo.json), or MSVD (MSVD_*.tsv, AllVideoDescriptions.txt, captions.json)")


def _looks_like_descriptions(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    return bool(re.match(r"^\S+_\d+_\d+\s+\S", line))
    except OSError:
        return False
    return False


def read_dataset(path: str | Path) -> list[Clip]:
    """Read any supported dataset, detecting its format (see :func:`detect_format`)."""
    fmt = detect_format(path)
    if fmt == "tvcaption":
        return read_tvcaption(path)
    if fmt == "msrvtt":
        return read_msrvtt(path)
    return read_msvd(path)
