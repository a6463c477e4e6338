"""The data flow of one recording: probe -> scenes -> sampled frames -> backbone -> L-STAP -> captions.

``caption_recording`` returns the captions of one file; ``index_paths`` runs it over files and
folders and stores each recording in one database transaction.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from tvcaption.config import Config
from tvcaption.errors import CheckpointError, TvcaptionError

TRAIN_HINT = "train one with `tvcaption synth data/synthtv && tvcaption train data/synthtv --out models/mine`"


@dataclass(frozen=True)
class SceneCaption:
    start: float  # seconds from the first frame
    end: float
    start_frame: int
    end_frame: int
    caption: str
    score: float  # mean log-probability per word of the caption
    tags: tuple[str, ...] = ()
    tag_scores: tuple[float, ...] = ()


@dataclass(frozen=True)
class RecordingCaptions:
    recording: str
    duration: float
    scenes: list[SceneCaption]

    def to_json(self) -> dict:
        return {
            "recording": self.recording,
            "duration": self.duration,
            "scenes": [{"start": s.start, "end": s.end, "caption": s.caption} for s in self.scenes],
        }


class CaptionEngine:
    """The loaded model and backbone, reused across scenes and recordings."""

    def __init__(self, config: Config):
        import torch

        from tvcaption.checkpoint import load_checkpoint, read_manifest
        from tvcaption.decoding import DecodingOptions
        from tvcaption.features import load_backbone

        stem = config.resolve(config.model.path)
        if not (stem.with_suffix(".json").exists() or stem.exists()):
            raise CheckpointError(f"{stem}: no trained model found; set [model] path or {TRAIN_HINT}")
        if config.features.threads:
            torch.set_num_threads(config.features.threads)
        self.config = config
        self.captioner = load_checkpoint(stem)
        meta = self.captioner.meta
        if meta.get("backbone") and meta["backbone"] != config.features.backbone:
            from dataclasses import replace

            config = replace(config, features=replace(config.features, backbone=meta["backbone"]))
        self.backbone = load_backbone(config.features)
        self.device = next(self.backbone.parameters()).device
        self.captioner.model.to(self.device)
        self.descriptor = meta.get("global_descriptor", config.features.global_descriptor)
        self.frames = config.model.frames or int(meta.get("frames", 10))
        self.options = DecodingOptions(
            beam_size=config.decoding.beam_size,
            max_len=config.decoding.max_len,
            length_penalty=config.decoding.length_penalty,
        )
        manifest = read_manifest(stem)
        self.model_name = str(meta.get("name", manifest.json_path.stem))
        self.model_info = {"name": self.model_name, "sha256": manifest.sha256,
                           "meta": {k: meta[k] for k in ("backbone", "frames", "data", "metrics") if k in meta}}

    def caption_scenes(self, info, scenes: Sequence, chunk: int = 16) -> list[SceneCaption]:
        """Caption scenes in chunks: the frames of several scenes share CNN batches.

        Frames are decoded at full size a CNN batch at a time and reduced to 7x7 features at once,
        so memory stays flat whatever the frame size and the number of scenes.
        """
        import numpy as np
        import torch

        from tvcaption.decoding import decode_hypotheses
        from tvcaption.features import extract, global_descriptor, imagenet_labels
        from tvcaption.video import read_frames, sample_times

        labels = imagenet_labels()
        results: list[SceneCaption] = []
        top, batch = self.config.index.tags, self.config.features.batch_size
        for lo in range(0, len(scenes), chunk):
            part = scenes[lo:lo + chunk]
            times = np.concatenate([sample_times(s.start, s.end, self.frames) for s in part])
            with torch.inference_mode():
                local = torch.cat([extract(self.backbone, read_frames(info, times[i:i + batch])[0], batch)
                                   for i in range(0, len(times), batch)])  # (S*T, 7, 7, C)
                probs = self.backbone.classify(local).float().softmax(-1)
                local = local.float().reshape(len(part), self.frames, *local.shape[1:])
                glob = global_descriptor(self.descriptor, local)
                hyps = decode_hypotheses(self.captioner.model, local, glob, self.options)
                scene_probs = probs.reshape(len(part), self.frames, -1).mean(1)
                tag_p, tag_i = scene_probs.topk(top, dim=-1)
            for s, h, tp, ti in zip(part, hyps, tag_p.tolist(), tag_i.tolist()):
                kept = [(labels[i], p) for i, p in zip(ti, tp) if p >= self.config.index.tag_min_score]
                results.append(SceneCaption(
                    s.start, s.end, s.start_frame, s.end_frame, self.captioner.vocab.decode(h.tokens),
                    h.logprob / (len(h.tokens) + 1), tuple(k for k, _ in kept), tuple(round(p, 4) for _, p in kept)))
        return results


def detect(info, config: Config):
    from tvcaption.scenes import detect_scenes, split_long

    return split_long(detect_scenes(info, config.scenes), config.scenes.max_scene_len)


def caption_recording(path: str | Path, config: Config, engine: CaptionEngine | None = None,
                      progress: bool = False) -> RecordingCaptions:
    """Scenes and captions of one recording."""
    from tvcaption.video import probe

    info = probe(path)
    engine = engine or CaptionEngine(config)
    scenes = detect(info, config)
    captions = _with_progress(engine, info, scenes, progress)
    return RecordingCaptions(str(path), info.duration, captions)


def _with_progress(engine: CaptionEngine, info, scenes, progress: bool) -> list[SceneCaption]:
    if not progress or len(scenes) <= 16:
        return engine.caption_scenes(info, scenes)
    from rich.progress import Progress

    done: list[SceneCaption] = []
    with Progress(transient=True) as bar:
        task = bar.add_task("captioning scenes", total=len(scenes))
        for lo in range(0, len(scenes), 16):
            done += engine.caption_scenes(info, scenes[lo:lo + 16])
            bar.advance(task, len(scenes[lo:lo + 16]))
    return done


# ---------------------------------------------------------------- indexing

def content_hash(path: str | Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def walk(paths: Iterable[str | Path], extensions: Sequence[str], recursive: bool = True) -> tuple[list[Path], list[tuple[str, str]]]:
    """Recordings under the given paths, sorted, each once; and (path, error) for paths that do not exist
    or folders that cannot be listed.

    Symlinked folders are not followed (a symlink loop cannot trap the walk); symlinked files are.
    """
    exts = {e.lower() for e in extensions}
    found: dict[str, Path] = {}
    missing: list[tuple[str, str]] = []
    for p in map(Path, paths):
        if p.is_dir():
            def unlisted(exc: OSError) -> None:  # a subfolder we may not read is reported, not skipped silently
                missing.append((str(exc.filename), f"cannot list the folder ({exc.strerror})"))

            walker = os.walk(p, followlinks=False, onerror=unlisted) if recursive else [(str(p), [], os.listdir(p))]
            for folder, dirs, files in walker:
                dirs.sort()
                for name in sorted(files):
                    f = Path(folder) / name
                    if f.suffix.lower() in exts:
                        found.setdefault(str(f.absolute()), f)
        elif p.exists():
            found.setdefault(str(p.absolute()), p)
        else:
            missing.append((str(p), "no such file or folder"))
    return list(found.values()), missing


@dataclass
class IndexReport:
    done: list[tuple[str, int, float]] = field(default_factory=list)  # (path, scenes, seconds)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    recording_seconds: float = 0.0
    wall_seconds: float = 0.0


def index_paths(paths: Iterable[str | Path], config: Config, reindex: bool = False, console=None,
                engine: CaptionEngine | None = None) -> IndexReport:
    """Index every recording under ``paths`` into the configured database; bad files are reported, not fatal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from tvcaption.db.store import ModelInfo, SceneRecord, Store, connect, worker_id
    from tvcaption.errors import DatabaseError
    from tvcaption.video import probe

    console = console or Console(stderr=True)
    started = time.perf_counter()
    files, missing = walk(paths, config.index.extensions, config.index.recursive)
    report = IndexReport(failed=list(missing))
    for path, reason in missing:
        console.print(f"[red]failed[/] {path}: {reason}", highlight=False, soft_wrap=True)
    store = Store(connect(config.database_url), claim_timeout=config.database.claim_timeout)
    engine = engine or CaptionEngine(config)
    worker = worker_id()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[scenes]} scenes"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("indexing", total=len(files), scenes=0)
        total_scenes = 0
        for f in files:
            t0 = time.perf_counter()
            key = str(f.absolute())
            claim = None
            try:
                info = probe(f)  # first: refuses FIFOs, devices and broken links before anything reads them
                digest = content_hash(f)
                claim = store.claim(key, digest, worker, info, model=engine.model_name, reindex=reindex)
                if claim is None:
                    report.skipped.append(key)
                    bar.advance(task)
                    continue
                scenes = engine.caption_scenes(info, detect(info, config))
                store.save_result(claim, [SceneRecord(s.start, s.end, s.start_frame, s.end_frame, s.caption, s.score,
                                                      list(zip(s.tags, s.tag_scores))) for s in scenes],
                                  model=ModelInfo(**engine.model_info))
                claim = None
                total_scenes += len(scenes)
                report.done.append((key, len(scenes), time.perf_counter() - t0))
                report.recording_seconds += info.duration
            except DatabaseError:
                raise  # the database, not this file: stop the batch (the CLI prints one line)
            except Exception as exc:  # noqa: BLE001 - one bad file must not end a batch of thousands
                if isinstance(exc, TvcaptionError):
                    reason = str(exc)
                elif isinstance(exc, OSError):
                    reason = f"{f}: cannot read the file ({exc.strerror or exc})"
                else:
                    detail = " ".join(str(exc).split())[:300]
                    reason = f"{f}: unexpected error ({type(exc).__name__}: {detail}); please report it with this file"
                report.failed.append((key, reason))
                store.mark_failed(key, reason)
                console.print(f"[red]failed[/] {reason}", highlight=False, soft_wrap=True)
            except BaseException:  # Ctrl-C, SystemExit: give the claim back so another run takes it at once
                if claim is not None:
                    try:
                        store.release(claim.recording_id)
                    except Exception:  # noqa: BLE001 - the claim then goes stale after claim_timeout
                        pass
                raise
            bar.update(task, advance=1, scenes=total_scenes)
    report.wall_seconds = time.perf_counter() - started
    return report


def print_summary(report: IndexReport, console) -> None:
    from rich.table import Table

    table = Table(title="index summary")
    table.add_column("recordings indexed", justify="right")
    table.add_column("scenes", justify="right")
    table.add_column("skipped (already indexed)", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("real-time factor", justify="right")
    rtf = report.recording_seconds / report.wall_seconds if report.wall_seconds else 0.0
    table.add_row(str(len(report.done)), str(sum(n for _, n, _ in report.done)), str(len(report.skipped)),
                  str(len(report.failed)), f"{rtf:.1f}x")
    console.print(table)
    for path, reason in report.failed:
        console.print(f"[red]failed:[/] {reason}", highlight=False, soft_wrap=True)
