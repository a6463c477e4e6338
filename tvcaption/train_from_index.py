"""Training from the archive itself: reviewed scenes and description tracks become a checkpoint.

``tvcaption train --from-index`` reads its training set from the database instead of a dataset
folder:

* **Reviewed scenes.** Every scene a reviewer corrected (``tvcaption serve``,
  :mod:`tvcaption.db.reviews`) is a clip of its recording from the scene's start to its end,
  captioned with its latest correction (the earlier ones were replaced by it, so they are not
  references).
* **Description tracks** beside indexed recordings, ``NAME.ad.srt`` / ``NAME.ad.vtt`` next to
  ``NAME.ts`` (audio-description scripts: timed descriptions). Each cue is a clip of that
  recording over the cue's time span, captioned with the cue's text; cues with the same span are
  one clip with several references.

A clip's frames are sampled uniformly over its span, as indexing samples a scene, and go through
the training feature cache (:func:`tvcaption.features.build_cache`, then
:func:`tvcaption.clips.load_features`) under ids made of the recording's content hash and the
span, so a second run reads them back and a replaced file gets fresh ones. The span reaches the
frame reader inside the clip's video string as a media fragment (``/tv/news.ts#t=12.000,15.480``).

The model starts from ``init`` (fine-tuning) or from scratch. Fine-tuning keeps the checkpoint's
architecture, backbone, global descriptor and frames per clip, and grows its vocabulary with the
new words (:func:`grow_vocab`, :func:`grow_model`): the old words keep their ids and rows; a new
word's embedding and output rows start at the mean of the learned words' rows (plus noise of a
tenth of their spread, so new words differ), and its output bias at their mean bias, so each new
word starts as a typical word and the old words' probabilities barely move. The optimisation
steps are the normal training's (:func:`tvcaption.train_loop.train_epoch`: optimiser, mixed
precision, gradient clipping, one reference per clip per epoch). There is no validation split
(reviewed scenes are few and each is worth learning from): the last epoch is the checkpoint, and
its metrics are the losses on the training clips before and after. The out-of-domain statistics
are fitted on the new clips, so the model stands behind captions of scenes like those.

The checkpoint's ``meta["data"]`` (and a card ``OUT.md`` beside it) says what it was trained on:
the database (without its password), the reviewed scenes, the description tracks, the words added.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tvcaption.config import FeaturesConfig, TrainConfig
from tvcaption.errors import TvcaptionError
from tvcaption.vocab import Vocab, normalize, tokenize

if TYPE_CHECKING:
    import torch

    from tvcaption.data import Clip
    from tvcaption.model import CaptionModel
    from tvcaption.model.dims import ModelDims
    from tvcaption.train_loop import EventFn

log = logging.getLogger(__name__)

AD_SUFFIXES = (".ad.srt", ".ad.vtt")  # NAME.ad.srt beside NAME.ts: a description track
FRAGMENT = "#t="  # a clip's video: PATH#t=START,END (seconds from the recording's first frame)
MIN_SPAN = 0.1  # seconds: a shorter cue or scene is no clip
FORMAT = "index"  # meta["data"]["format"] of a checkpoint trained from the index


@dataclass(frozen=True)
class IndexData:
    """The training clips found in the database and beside its recordings."""

    clips: list[Clip]
    reviewed_scenes: int  # scenes with a correction that became clips
    ad_tracks: list[str]  # description tracks read
    ad_cues: int  # their cues that became (or joined) clips
    recordings: int  # recordings that gave at least one clip
    database: str  # the database URL without its password
    missing: list[str] = field(default_factory=list)  # recordings with clips whose file is gone (left out)


@dataclass(frozen=True)
class FromIndexResult:
    checkpoint: Path  # OUT.json
    card: Path  # OUT.md
    data: IndexData
    vocab_added: list[str]  # words the vocabulary grew by (all words when trained from scratch)
    loss_before: float  # caption loss (cross-entropy) on the training clips before training
    loss_after: float  # and after
    seconds: float


def public_url(engine: Any) -> str:
    """The engine's database URL without its password (for cards and logs)."""
    url = engine.url
    if url.password is not None:
        url = url._replace(password=None)  # URL is a named tuple; url.set(password=None) keeps the password
    return url.render_as_string(hide_password=False)


def span_video(path: str, start: float, end: float) -> str:
    return f"{path}{FRAGMENT}{start:.3f},{end:.3f}"


def parse_span(video: str) -> tuple[str, float, float]:
    """``PATH#t=START,END`` -> (PATH, START, END)."""
    path, sep, span = video.rpartition(FRAGMENT)
    if not sep:
        raise ValueError(f"{video}: no {FRAGMENT}START,END span")
    start, end = span.split(",")
    return path, float(start), float(end)


def description_tracks(path: str | os.PathLike[str]) -> list[Path]:
    """``NAME.ad.srt`` / ``NAME.ad.vtt`` beside the recording ``NAME.<ext>``, those that exist."""
    p = Path(path)
    return [p.with_name(p.stem + suffix) for suffix in AD_SUFFIXES if p.with_name(p.stem + suffix).is_file()]


class _ClipSet:
    """Clips keyed by where they come from and their span; the same span twice: more references."""

    def __init__(self) -> None:
        self._clips: dict[str, tuple[str, list[str]]] = {}  # id -> (video, captions)
        self.recordings: set[int] = set()

    def add(self, kind: str, recording: Any, start: float, end: float, text: str) -> bool:
        start, end = round(float(start), 3), round(float(end), 3)
        if not normalize(text) or end - start < MIN_SPAN:
            return False
        source = recording.content_hash or hashlib.sha1(recording.path.encode("utf-8", "surrogateescape")).hexdigest()
        key = f"{kind}:{source[:16]}@{start:.3f}-{end:.3f}"
        _, captions = self._clips.setdefault(key, (span_video(recording.path, start, end), []))
        if text not in captions:
            captions.append(text)
        self.recordings.add(recording.id)
        return True

    def clips(self) -> list[Clip]:
        from tvcaption.data import Clip

        return [Clip(key, video, tuple(captions), "train") for key, (video, captions) in self._clips.items()]


def collect(engine: Any) -> IndexData:
    """The reviewed scenes and the description tracks' cues of the indexed recordings, as clips."""
    from tvcaption.db.store import Store
    from tvcaption.subtitles import read_sidecar

    store = Store(engine)
    reviewed_ids = _reviewed_recordings(store.engine)
    found, reviewed, tracks, cues, missing = _ClipSet(), 0, [], 0, []
    for recording in store.recordings(status="done"):
        wanted = recording.id in reviewed_ids
        ads = description_tracks(recording.path)
        if (wanted or ads) and not os.path.isfile(recording.path):
            missing.append(recording.path)
            continue
        if wanted:
            for scene in store.scenes_of(recording.id):
                if scene.corrections:
                    reviewed += found.add("review", recording, scene.start, scene.end, scene.corrections[-1].text)
        for track in ads:
            tracks.append(str(track))
            cues += sum(found.add("ad", recording, c.start, c.end, c.text)
                        for c in read_sidecar(track, None, recording.duration))
    if missing:
        log.warning("%d recording(s) with corrections or description tracks are no longer where they were "
                    "indexed (%s%s); their clips are left out", len(missing), missing[0],
                    ", ..." if len(missing) > 1 else "")
    return IndexData(found.clips(), reviewed, tracks, cues, len(found.recordings), public_url(store.engine), missing)


def _reviewed_recordings(engine: Any) -> set[int]:
    from sqlalchemy import select

    from tvcaption.db.engine import mapped
    from tvcaption.db.reviews import annotations_t, scenes_t
    from tvcaption.scene import REVIEW

    query = (select(scenes_t.c.recording_id).distinct().join(annotations_t, annotations_t.c.scene_id == scenes_t.c.id)
             .where(annotations_t.c.analyser == REVIEW, annotations_t.c.kind == "caption"))
    with mapped(engine), engine.connect() as conn:
        return {int(r) for r in conn.execute(query).scalars()}


# --- frames and features ------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _probe(path: str) -> Any:
    from tvcaption import video

    return video.probe(path)


def read_span(clip_video: str, frames: int) -> np.ndarray:
    """``frames`` RGB frames sampled uniformly over the clip's span, as indexing samples and reads
    a scene's frames for the CNN (at their coded size)."""
    from tvcaption import video

    path, start, end = parse_span(clip_video)
    return video.read_cnn_frames(_probe(path), video.sample_times(start, end, frames))


def clip_features(clips: list[Clip], features: FeaturesConfig, frames: int, cache_dir: Path,
                  device: torch.device, on_progress: Callable[[int, int], None] | None = None) -> Any:
    """The clips' features through the training cache (extracting the missing ones): a RunFeatures."""
    from tvcaption.clips import load_features
    from tvcaption.features import build_cache
    from tvcaption.features.onnx_backbone import load_inference_backbone
    from tvcaption.train_data import RunFeatures

    t0 = time.perf_counter()
    backbone = load_inference_backbone(features, device)
    build_cache([c.id for c in clips], [c.video for c in clips], backbone, frames, cache_dir,
                batch_size=features.batch_size, read=read_span, on_progress=on_progress).close()
    split = load_features(clips, backbone, frames, features.global_descriptor, cache_dir, build=False)
    info = {"backbone": backbone.name, "global_descriptor": features.global_descriptor, "frames": frames,
            "image_size": backbone.image_size, "weights": backbone.weights_id}
    return RunFeatures(split, None, info, backbone.grid, backbone.channels, time.perf_counter() - t0)


# --- vocabulary and model -----------------------------------------------------------------------

def grow_vocab(vocab: Vocab, captions: list[str], max_size: int | None = None) -> tuple[Vocab, list[str]]:
    """``vocab`` with the captions' new words after its own (most common first, ties alphabetical),
    up to ``max_size`` words (specials not counted; an existing vocabulary is never cut); and the
    words added."""
    counts: dict[str, int] = {}
    for caption in captions:
        for word in tokenize(caption):
            if word not in vocab:
                counts[word] = counts.get(word, 0) + 1
    added = sorted(counts, key=lambda w: (-counts[w], w))
    if max_size is not None:
        added = added[:max(0, max_size - (len(vocab) - len(Vocab.SPECIALS)))]
    return Vocab(vocab.to_list() + added), added


def grow_model(model: CaptionModel, vocab_size: int, seed: int = 0, **dims_changes: Any) -> CaptionModel:
    """A copy of ``model`` with ``vocab_size`` words (at least its own): every tensor copied, the
    vocabulary-sized ones (decoder embedding, output weights and bias) row by row, and the new
    rows started as the module docstring says. ``dims_changes``: other ModelDims fields that do
    not change a tensor's shape (dropout, margin, matching_weight)."""
    import torch

    from tvcaption.model import CaptionModel

    old = model.dims.vocab_size
    if vocab_size < old:
        raise ValueError(f"a model's vocabulary only grows ({old} -> {vocab_size})")
    grown = CaptionModel(dataclasses.replace(model.dims, vocab_size=vocab_size, **dims_changes))
    source, target = model.state_dict(), grown.state_dict()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in target.items():
            src = source[name].to(tensor.device)
            if src.shape == tensor.shape:
                tensor.copy_(src)
                continue
            if src.shape[0] != old or src.shape[1:] != tensor.shape[1:]:
                raise ValueError(f"{name}: {tuple(src.shape)} cannot grow to {tuple(tensor.shape)}")
            tensor[:old] = src
            words = src[len(Vocab.SPECIALS):].float()  # the learned words' rows, not the special tokens'
            mean = words.mean(0)
            spread = words.std(0) if len(words) > 1 else torch.zeros_like(mean)
            noise = torch.randn((vocab_size - old, *mean.shape), generator=generator) if src.dim() > 1 else 0.0
            tensor[old:] = (mean + 0.1 * spread * noise).to(tensor.dtype)
    grown.load_state_dict(target)
    return grown.to(next(model.parameters()).device)


@dataclass
class _Start:
    """The model a run starts from, its vocabulary, and what the card says of the start."""

    model: Any
    vocab: Vocab
    added: list[str]
    init: dict[str, Any] | None  # name, path, sha256 of the checkpoint fine-tuned (None: from scratch)


def _init_checkpoint(init: str | os.PathLike[str] | None) -> Any:
    """The checkpoint ``init`` names: a stem or .json, or the shipped model's name (``synthtv-lstap``,
    which users cannot give as a path: it lives inside the installed package)."""
    if init is None:
        return None
    from tvcaption.checkpoint import load_checkpoint
    from tvcaption.resources import SHIPPED_MODEL, shipped_model

    given = Path(init)
    if str(init) == SHIPPED_MODEL and not given.exists() and not given.with_suffix(".json").exists():
        init = shipped_model()
    return load_checkpoint(init)


MIN_STEPS = 100  # fewer optimizer steps learn next to nothing from a few corrections (tests/test_train_from_index.py takes 150)


def optimizer_steps(clips: int, config: TrainConfig) -> int:
    return config.epochs * math.ceil(clips / max(1, config.batch_size))


def _warn_few_steps(clips: int, config: TrainConfig) -> None:
    steps, per_epoch = optimizer_steps(clips, config), math.ceil(clips / max(1, config.batch_size))
    if steps < MIN_STEPS:
        log.warning("only %s (%s, batch %d, %s): too few to learn the corrections; "
                    "pass --epochs %d or more, or a smaller --batch-size", counted(steps, "optimizer step"),
                    counted(clips, "clip"),
                    config.batch_size, counted(config.epochs, "epoch"), math.ceil(MIN_STEPS / per_epoch))


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _start(captioner: Any, dims: ModelDims | None, config: TrainConfig, captions: list[str], feats: Any) -> _Start:
    """Fine-tune ``captioner`` (its vocabulary grown) or, when None, a new model of ``dims``."""
    import torch

    from tvcaption.model import CaptionModel

    torch.manual_seed(config.seed)
    changes = {"dropout": config.dropout, "margin": config.margin, "matching_weight": config.matching_weight}
    if captioner is None:
        from tvcaption.features import descriptor_dim
        from tvcaption.train import resolve_dims

        vocab = Vocab.build(captions, config.vocab_size)
        global_dim = descriptor_dim(feats.info["global_descriptor"], feats.channels)
        model_dims = resolve_dims(dims, config, feats.channels, global_dim, len(vocab), feats.grid)
        return _Start(CaptionModel(model_dims), vocab, vocab.to_list()[len(Vocab.SPECIALS):], None)
    vocab, added = grow_vocab(captioner.vocab, captions, config.vocab_size)
    model = grow_model(captioner.model, len(vocab), config.seed, **changes)
    from tvcaption.checkpoint import read_manifest

    manifest = read_manifest(captioner.path)
    init = {"name": str(captioner.meta.get("name", manifest.json_path.stem)), "path": str(manifest.json_path),
            "sha256": manifest.sha256, "vocab": len(captioner.vocab)}
    return _Start(model, vocab, added, init)


def train_from_index(
    engine: Any,
    out: str | os.PathLike[str],
    *,
    init: str | os.PathLike[str] | None = None,
    config: TrainConfig = TrainConfig(),
    features: FeaturesConfig = FeaturesConfig(),
    dims: ModelDims | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    warmup: int = 0,
    amp: bool = True,
    on_event: EventFn | None = None,
) -> FromIndexResult:
    """Train on the reviewed scenes and description tracks of the database ``engine`` (an Engine
    or URL); the checkpoint goes to ``out`` (``OUT.json`` + ``OUT.safetensors``, card ``OUT.md``).

    ``init``: a checkpoint to fine-tune (its architecture, backbone and frames win over ``dims``
    and ``features``); None trains a model of ``dims`` from scratch. ``config``: epochs, batch
    size, learning rate, optimizer, ... as for :func:`tvcaption.train.train`. ``on_event``: the
    same :class:`~tvcaption.train_loop.TrainEvent` s as normal training (no validation)."""
    from tvcaption.checkpoint import features_for
    from tvcaption.db.store import connect
    from tvcaption.train_devices import Dist, resolve_device
    from tvcaption.train_loop import TrainEvent

    started = time.perf_counter()
    emit = on_event or (lambda event: None)
    engine = connect(engine, create=False) if isinstance(engine, str) else engine
    data = collect(engine)
    if len(data.clips) < 2:
        raise TvcaptionError(
            f"{data.database}: {len(data.clips)} training clip(s) found ({data.reviewed_scenes} reviewed scenes, "
            f"{len(data.ad_tracks)} description tracks); correct at least 2 scenes in tvcaption serve or put "
            "NAME.ad.srt / NAME.ad.vtt beside indexed recordings")
    if features.threads > 0:
        import torch

        torch.set_num_threads(features.threads)
    captioner = _init_checkpoint(init)
    if captioner is not None:
        features = features_for(captioner.meta, features)
    from tvcaption.model.dims import ModelDims

    frames = captioner.dims.frames if captioner is not None else (dims or ModelDims()).frames
    device = resolve_device(features.device, Dist())
    cache = Path(cache_dir if cache_dir is not None else features.cache_dir)
    feats = clip_features(data.clips, features, frames, cache, device,
                          lambda done, total: emit(TrainEvent("features", split="train", done=done, total=total)))
    start = _start(captioner, dims, config, [c for clip in data.clips for c in clip.captions], feats)
    emit(TrainEvent("data", info={
        "data": (f"{data.database} ({counted(data.reviewed_scenes, 'reviewed scene')}, "
                 f"{counted(len(data.ad_tracks), 'description track')})"),
        "train_clips": len(data.clips), "val_clips": 0, "val_total": 0, "vocab": len(start.vocab),
        "backbone": feats.info["backbone"], "frames": frames, "seconds": feats.seconds, "in_ram": feats.train.in_ram}))
    _warn_few_steps(len(data.clips), config)
    before, after = _fit(start, data, feats, config, device, warmup, amp, emit)
    return _save(out, start, data, feats, config, before, after, time.perf_counter() - started)


def _fit(start: _Start, data: IndexData, feats: Any, config: TrainConfig, device: torch.device, warmup: int,
         amp: bool, emit: EventFn) -> tuple[dict[str, float], dict[str, float]]:
    """The normal training's epochs on the clips; the losses on them before and after."""
    import torch
    from torch.utils.data.distributed import DistributedSampler

    from tvcaption.train_data import TrainData
    from tvcaption.train_devices import Dist, choose_precision
    from tvcaption.train_loop import (
        Objective,
        Run,
        TrainEvent,
        make_optimizer,
        train_epoch,
    )
    from tvcaption.train_state import RunState
    from tvcaption.train_validation import estimate_loss

    model = start.model.to(device)
    tokens = [[start.vocab.encode(c, config.max_words) for c in clip.captions] for clip in data.clips]
    split = TrainData(Path(FORMAT), data.clips, data.clips, [], 0, start.vocab, tokens, [])
    precision = choose_precision(amp, device)
    run = Run(model, Objective(model), make_optimizer(model.parameters(), config), precision, device, Dist(),
              config, split, feats, {}, "last", {}, RunState(), warmup, emit)
    emit(TrainEvent("model", info={
        "pooling": model.dims.pooling, "matching": model.dims.matching, "hidden": model.dims.hidden,
        "parameters": sum(p.numel() for p in model.parameters()), "optimizer": config.optimizer, "lr": config.lr,
        "batch_size": config.batch_size, "ranks": 1, "device": str(device), "amp": precision.name,
        "threads": torch.get_num_threads()}))

    def losses() -> dict[str, float]:
        return estimate_loss(model, feats.train, tokens, config.batch_size, device, config.seed, precision.autocast)

    before = losses()
    sampler = DistributedSampler(range(len(data.clips)), num_replicas=1, rank=0, shuffle=True, seed=config.seed,
                                 drop_last=False)
    model.train()
    for epoch in range(1, config.epochs + 1):
        t_epoch = time.perf_counter()
        row = train_epoch(run, sampler, epoch, t_epoch)
        row["seconds"] = round(time.perf_counter() - t_epoch, 3)
        run.state.history.append(row)
        emit(TrainEvent("epoch", epoch=epoch, epochs=config.epochs, row=row, select="last"))
    after = losses()
    model.eval()
    return before, after


def _save(out: str | os.PathLike[str], start: _Start, data: IndexData, feats: Any, config: TrainConfig,
          before: dict[str, float], after: dict[str, float], seconds: float) -> FromIndexResult:
    from tvcaption.checkpoint import save_checkpoint
    from tvcaption.domain import fit_splits
    from tvcaption.train_state import stem_paths

    stem = stem_paths(out)["best"]
    n = len(data.clips)
    meta = {
        **feats.info, "name": stem.name, "select": "last", "epoch": config.epochs,
        "train": {**dataclasses.asdict(config), "steps": optimizer_steps(n, config)},
        "init": start.init,
        "metrics": {"split": "train", "clips": n, "loss": after["loss"], "caption": after["caption"],
                    "matching": after["matching"], "loss_before": before["loss"], "caption_before": before["caption"]},
        "data": {"path": data.database, "format": FORMAT, "database": data.database,
                 "reviewed_scenes": data.reviewed_scenes, "ad_tracks": len(data.ad_tracks),
                 "ad_track_files": data.ad_tracks[:100], "ad_cues": data.ad_cues, "recordings": data.recordings,
                 "train_clips": n, "val_clips": 0, "val_total": 0, "captions": sum(len(c.captions) for c in data.clips),
                 "vocab": len(start.vocab), "vocab_added": len(start.added), "words_added": start.added[:100]},
    }
    checkpoint = save_checkpoint(stem, start.model, start.vocab, meta, fit_splits(feats.train, None))
    card = write_card(stem, meta)
    return FromIndexResult(checkpoint, card, data, start.added, before["caption"], after["caption"], seconds)


def write_card(stem: Path, meta: dict[str, Any]) -> Path:
    """``STEM.md``: what a checkpoint trained from the index learned from, for people."""
    data, train, init = meta["data"], meta["train"], meta.get("init")
    words = ", ".join(data["words_added"]) + (", ..." if data["vocab_added"] > len(data["words_added"]) else "")
    tracks = "".join(f"\n  - `{t}`" for t in data["ad_track_files"])
    lines = [
        f"# {meta['name']}", "",
        f"Trained by `tvcaption train --from-index` from the archive database `{data['database']}`:", "",
        f"- {counted(data['reviewed_scenes'], 'reviewed scene')} (their corrected captions)",
        f"- {counted(data['ad_tracks'], 'description track')} beside recordings ({counted(data['ad_cues'], 'cue')}){tracks}",
        (f"- {counted(data['train_clips'], 'training clip')} from {counted(data['recordings'], 'recording')}, "
         f"{counted(data['captions'], 'caption')}"),
        f"- vocabulary {data['vocab']} entries; {data['vocab_added']} words added: {words or 'none'}",
        "- started from " + (f"`{init['name']}` ({init['path']}, sha256 {init['sha256'][:12]}...)" if init
                             else "scratch"),
        (f"- {counted(train['epochs'], 'epoch')}, batch {train['batch_size']} ({counted(train['steps'], 'optimizer step')}), "
         f"{train['optimizer']} lr {train['lr']:g}; "
         f"{meta['backbone']} features, {meta['frames']} frames per clip"),
        (f"- caption loss on the training clips: {meta['metrics']['caption_before']:.3f} before, "
         f"{meta['metrics']['caption']:.3f} after (no validation split: the last epoch is this checkpoint)"),
        "- out-of-domain statistics fitted on these clips: scenes unlike them get captions marked out of domain", "",
    ]
    path = stem.with_name(stem.name + ".md")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
