"""The data flow of one recording: probe -> scenes -> sampled frames -> backbone -> L-STAP -> captions.

``caption_recording`` returns the captions of one file; ``index_paths`` runs it over files and
folders and stores each recording in one database transaction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from tvcaption.config import Config
from tvcaption.errors import CheckpointError, TvcaptionError

from tvcaption.background import in_background  # noqa: E402,F401 (re-exported: tests and benchmarks use it)

log = logging.getLogger(__name__)

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

    def features(self, frames):
        """RGB frames (N, H, W, 3) of any size -> local features (N, 7, 7, C), a CNN batch at a time."""
        from tvcaption.features import extract

        return extract(self.backbone, frames, self.config.features.batch_size)

    def caption_features(self, scenes: Sequence, local) -> list[SceneCaption]:
        """Captions and tags of scenes from their local features (len(scenes) * frames, 7, 7, C)."""
        import torch

        from tvcaption.decoding import decode_hypotheses
        from tvcaption.features import global_descriptor, imagenet_labels

        labels = imagenet_labels()
        top = self.config.index.tags
        with torch.inference_mode():
            probs = self.backbone.classify(local).float().softmax(-1)
            local = local.float().reshape(len(scenes), self.frames, *local.shape[1:])
            glob = global_descriptor(self.descriptor, local)
            hyps = decode_hypotheses(self.captioner.model, local, glob, self.options)
            tag_p, tag_i = probs.reshape(len(scenes), self.frames, -1).mean(1).topk(top, dim=-1)
        results = []
        for s, h, tp, ti in zip(scenes, hyps, tag_p.tolist(), tag_i.tolist()):
            kept = [(labels[i], p) for i, p in zip(ti, tp) if p >= self.config.index.tag_min_score]
            results.append(SceneCaption(
                s.start, s.end, s.start_frame, s.end_frame, self.captioner.vocab.decode(h.tokens),
                h.logprob / (len(h.tokens) + 1), tuple(k for k, _ in kept), tuple(round(p, 4) for _, p in kept)))
        return results

    def caption_scenes(self, info, scenes: Sequence, chunk: int = 16) -> list[SceneCaption]:
        """Two-pass captioning of scenes already detected: their frames are read by seeking.

        Frames are decoded at full size a CNN batch at a time and reduced to 7x7 features at once,
        so memory stays flat whatever the frame size and the number of scenes.
        """
        import numpy as np
        import torch

        from tvcaption.video import read_frames, sample_times

        results: list[SceneCaption] = []
        batch = self.config.features.batch_size
        for lo in range(0, len(scenes), chunk):
            part = scenes[lo:lo + chunk]
            times = np.concatenate([sample_times(s.start, s.end, self.frames) for s in part])
            local = torch.cat([self.features(read_frames(info, times[i:i + batch])[0])
                               for i in range(0, len(times), batch)])
            results += self.caption_features(part, local)
        return results

    def caption_stream(self, sampled: Iterable, chunk: int = 16,
                       on_scenes: Callable[[list[SceneCaption]], None] | None = None) -> list[SceneCaption]:
        """Caption :class:`~tvcaption.stream.SampledScene` items as they come.

        Frames of consecutive scenes share CNN batches; only their 7x7 features are kept until
        ``chunk`` scenes are captioned together, so memory does not grow with the recording.
        ``on_scenes`` is called with every caption so far each time some are added.
        """
        import numpy as np
        import torch

        results: list[SceneCaption] = []
        batch = max(self.frames, self.config.features.batch_size)
        waiting: list = []  # scenes whose frames are not through the CNN yet
        ready: list = []  # scenes with features
        feats: list = []

        def run_cnn() -> None:
            if waiting:
                feats.append(self.features(np.concatenate([w.frames for w in waiting])))
                ready.extend(w.scene for w in waiting)
                waiting.clear()

        def run_decoder() -> None:
            if ready:
                results.extend(self.caption_features(ready, torch.cat(feats)))
                if on_scenes:
                    on_scenes(results)
                ready.clear()
                feats.clear()

        for item in sampled:
            waiting.append(item)
            if len(waiting) * self.frames >= batch:
                run_cnn()
                if len(ready) >= chunk:
                    run_decoder()
        run_cnn()
        run_decoder()
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
    if not progress:
        return RecordingCaptions(str(path), info.duration, captions_of(info, config, engine))
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("captioning", total=max(info.duration, 1e-3))
        captions = captions_of(info, config, engine, lambda done: bar.update(task, completed=done[-1].end))
    return RecordingCaptions(str(path), info.duration, captions)


def captions_of(info, config: Config, engine: CaptionEngine,
                on_scenes: Callable[[list[SceneCaption]], None] | None = None) -> list[SceneCaption]:
    """Captions of every scene of a probed recording: one decoding pass (see :mod:`tvcaption.stream`)
    with decoding in a worker thread, or two passes when ``index.single_pass`` is off.

    ``on_scenes(captions)``: progress, called with every caption so far (after a fall-back to two
    passes the list starts again, so a count taken from it never counts a scene twice)."""
    if config.index.single_pass:
        from tvcaption.stream import StreamMismatch, stream_scenes

        try:
            return engine.caption_stream(in_background(stream_scenes(info, config.scenes, engine.frames)),
                                         on_scenes=on_scenes)
        except StreamMismatch as exc:
            log.warning("%s; captioning it again in two passes", exc)
    captions = engine.caption_scenes(info, detect(info, config))
    if on_scenes and captions:
        on_scenes(captions)
    return captions


# ---------------------------------------------------------------- indexing

def content_hash(path: str | Path, chunk: int = 8 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_stamp(path: Path) -> dict[str, int] | None:
    """Size and modification time of a regular file (None for anything else: probe() judges it)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return {"file_size": st.st_size, "file_mtime_ns": st.st_mtime_ns} if stat.S_ISREG(st.st_mode) else None


def unchanged(known, stamp: dict[str, int], model: str) -> bool:
    """True when ``known`` (a stored recording) was indexed by ``model`` from a file with this size and mtime.

    Re-running ``index`` over a large archive then stats files instead of hashing them; a file
    rewritten in place gets a new mtime and is hashed (and indexed again if its content changed).
    """
    if known is None or known.status != "done" or known.model != model or not known.probe:
        return False
    return all(known.probe.get(k) == v for k, v in stamp.items())


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
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from tvcaption.db.store import ClaimLost, ModelInfo, SceneRecord, Store, connect, worker_id
    from tvcaption.errors import DatabaseError
    from tvcaption.video import probe

    console = console or Console(stderr=True)
    started = time.perf_counter()
    files, missing = walk(paths, config.index.extensions, config.index.recursive)
    report = IndexReport(failed=list(missing))
    for path, reason in missing:
        console.print(f"[red]failed[/] {escape(f'{path}: {reason}')}", highlight=False, soft_wrap=True)
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
                stamp = file_stamp(f)
                if not reindex and stamp and unchanged(store.get_recording(key), stamp, engine.model_name):
                    report.skipped.append(key)  # same size and mtime as when it was indexed: no need to hash it
                    bar.advance(task)
                    continue
                info = probe(f)  # first: refuses FIFOs, devices and broken links before anything reads them
                digest = content_hash(f)
                probe_data = {**dataclasses.asdict(info), **(stamp or {})}
                claim = store.claim(key, digest, worker, probe_data, model=engine.model_name, reindex=reindex)
                if claim is None:
                    report.skipped.append(key)
                    bar.advance(task)
                    continue
                current = bar.add_task(escape(f"  {f.name}"[:40]), total=max(info.duration, 1e-3), scenes=0)

                def shown(done: list[SceneCaption]) -> None:  # a long recording shows its own progress
                    if beat.lost.is_set():  # stop early: another worker is redoing this recording
                        raise ClaimLost(f"{key}: another worker took this recording over; its result is kept")
                    bar.update(task, scenes=total_scenes + len(done))
                    bar.update(current, completed=done[-1].end, scenes=len(done))

                try:
                    with store.keep_alive(claim) as beat:  # a recording longer than claim_timeout stays ours
                        scenes = captions_of(info, config, engine, shown)
                finally:
                    bar.remove_task(current)
                store.save_result(claim, [SceneRecord(s.start, s.end, s.start_frame, s.end_frame, s.caption, s.score,
                                                      list(zip(s.tags, s.tag_scores))) for s in scenes],
                                  model=ModelInfo(**engine.model_info))
                claim = None
                total_scenes += len(scenes)
                report.done.append((key, len(scenes), time.perf_counter() - t0))
                report.recording_seconds += info.duration
            except ClaimLost as exc:  # another worker redid it after our claim went stale: its result stands
                claim = None
                report.skipped.append(key)
                console.print(f"[yellow]skipped[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
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
                console.print(f"[red]failed[/] {escape(reason)}", highlight=False, soft_wrap=True)
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
    from rich.markup import escape
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
        console.print(f"[red]failed:[/] {escape(reason)}", highlight=False, soft_wrap=True)
