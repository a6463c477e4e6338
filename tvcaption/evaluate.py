"""Evaluation of a checkpoint on a dataset split: caption metrics, grounded slots, two floors.

:func:`evaluate` decodes one caption per clip of the split and scores it with
BLEU-1..4, METEOR, ROUGE-L and CIDEr (pycocoevalcap, keys as pycocoevalcap names them). On
SynthTV (clips with ground-truth slots) it also reports grounded slot accuracy
(:func:`tvcaption.data.slot_accuracy`: kind, colour, size, action, position, event order) on
all clips, the hard subset, the single-event clips and, when present, the novel colour-kind
pairs. Per-clip scores are kept for paired comparisons (``bench/ablation.py``).

Two floors put the numbers in context, scored exactly like the model:

* ``constant``: every clip gets the most frequent normalised training caption (ties broken
  alphabetically);
* ``random``: every clip gets a random training caption (a random training clip, then one of
  its captions), from ``numpy.random.default_rng(seed)``.

Training captions come from the evaluated dataset's ``train`` split, or, when it has none (a
test-only folder), from the dataset the checkpoint was trained on (its ``meta.data.path``).

Nothing here prints: progress goes to ``on_progress`` and the CLI draws an :class:`EvalResult`
with :func:`tvcaption.views_train.print_eval`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tvcaption.clips import split_clips
from tvcaption.config import FeaturesConfig
from tvcaption.errors import TvcaptionError
from tvcaption.slots import SLOT_NAMES, score_slots, slot_subsets

__all__ = [  # SLOT_NAMES, score_slots and slot_subsets live in tvcaption.slots, shared with training
    "SLOT_NAMES", "EvalResult", "Scored", "constant_caption", "evaluate", "json_safe", "random_captions",
    "score_set", "score_slots", "slot_subsets", "write_captions",
]

if TYPE_CHECKING:
    from tvcaption.data import Clip
    from tvcaption.decoding import DecodingOptions

StageProgressFn = Callable[[str, int, int], None]  # (stage: "features" | "captions", clips done, clips in all)


# ---------------------------------------------------------------------------------------------
# Floors
# ---------------------------------------------------------------------------------------------
def constant_caption(train_captions: Sequence[Sequence[str]]) -> str:
    """The most frequent normalised training caption (ties: alphabetical first)."""
    from tvcaption.vocab import normalize

    counts = Counter(normalize(c) for caps in train_captions for c in caps)
    counts.pop("", None)
    if not counts:
        raise ValueError("no training captions for the constant floor")
    return min(counts, key=lambda c: (-counts[c], c))


def random_captions(ids: Sequence[str], train_captions: Sequence[Sequence[str]], seed: int) -> dict[str, str]:
    """A random training caption per clip: a random training clip, then one of its captions."""
    pools = [caps for caps in train_captions if caps]
    if not pools:
        raise ValueError("no training captions for the random floor")
    rng = np.random.default_rng(seed)
    out = {}
    for cid in ids:
        caps = pools[int(rng.integers(len(pools)))]
        out[cid] = caps[int(rng.integers(len(caps)))]
    return out


# ---------------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scored:
    """One set of captions scored: the model's, or a floor's."""

    name: str  # model | constant | random
    captions: dict[str, str]  # clip id -> caption
    metrics: dict[str, float]  # pycocoevalcap key -> corpus score
    slots: dict[str, dict[str, float]] | None  # subset -> slot accuracies (SynthTV only)
    per_clip: dict[str, dict[str, float]]  # clip id -> metric key (and "slots") -> score

    def to_json(self, per_clip: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"metrics": self.metrics, "slots": self.slots}
        if self.name == "constant" and self.captions:
            out["caption"] = next(iter(self.captions.values()))
        if per_clip:
            out["per_clip"] = self.per_clip
        return out


@dataclass(frozen=True)
class EvalResult:
    model: str  # checkpoint JSON evaluated
    data: str  # dataset path
    split: str
    clips: int
    decoding: dict[str, Any]  # DecodingOptions used
    metrics: dict[str, float]  # Bleu_1..Bleu_4, METEOR, ROUGE_L, CIDEr
    slots: dict[str, dict[str, float]] | None  # subset (all, hard, single, novel) -> accuracies; None off SynthTV
    floors: dict[str, Scored]  # constant, random (empty when no training captions were found)
    captions: dict[str, str]  # clip id -> generated caption
    per_clip: dict[str, dict[str, float]]  # clip id -> metric key (and "slots") -> score
    subsets: dict[str, tuple[str, ...]] = field(default_factory=dict)  # subset -> clip ids
    seconds: float = 0.0

    def to_json(self, per_clip: bool = False) -> dict[str, Any]:
        """A JSON-able dict (NaN as null); ``per_clip`` adds captions and per-clip scores."""
        out: dict[str, Any] = {
            "model": self.model, "data": self.data, "split": self.split, "clips": self.clips,
            "decoding": self.decoding, "metrics": self.metrics, "slots": self.slots,
            "floors": {k: v.to_json(per_clip) for k, v in self.floors.items()},
            "seconds": round(self.seconds, 3),
        }
        if per_clip:
            out["captions"] = self.captions
            out["per_clip"] = self.per_clip
            out["subsets"] = {k: list(v) for k, v in self.subsets.items()}
        return json_safe(out)


def json_safe(obj: Any) -> Any:
    """The object with non-finite floats as None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------
# Scoring a set of captions
# ---------------------------------------------------------------------------------------------
def score_set(name: str, captions: dict[str, str], clips: Sequence[Clip],
              subsets: dict[str, tuple[str, ...]]) -> Scored:
    """Caption metrics (and slots, when the clips have them) of one caption per clip."""
    from tvcaption.metrics import score_captions

    scores = score_captions(captions, {c.id: list(c.captions) for c in clips})
    per_clip = {cid: dict(v) for cid, v in scores.per_clip.items()}
    slots = None
    if subsets.get("all"):
        slots, slot_clip = score_slots(captions, clips, subsets)
        for cid, value in slot_clip.items():
            per_clip[cid]["slots"] = value
    return Scored(name, dict(captions), scores.corpus, slots, per_clip)


def write_captions(path: str | os.PathLike[str], result: EvalResult, clips: Sequence[Clip]) -> Path:
    """Generated captions per clip: ``.tsv``/``.txt`` as ``id<TAB>caption`` lines; otherwise JSON
    (a list of {id, caption, references, scores})."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".tsv", ".txt"):
        text = "".join(f"{c.id}\t{result.captions[c.id]}\n" for c in clips)
    else:
        rows = [{"id": c.id, "caption": result.captions[c.id], "references": list(c.captions),
                 "scores": result.per_clip.get(c.id, {})} for c in clips]
        text = json.dumps(json_safe(rows), indent=1, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")
    return path


def _training_captions(clips: Sequence[Clip], meta: dict[str, Any], data: Path) -> list[tuple[str, ...]]:
    from tvcaption.data import read_dataset

    train = split_clips(clips, "train")
    if not train:
        source = (meta.get("data") or {}).get("path")
        if source and Path(source).exists() and Path(source).resolve() != data.resolve():
            try:
                train = split_clips(read_dataset(source), "train")
            except TvcaptionError:
                train = []
    return [c.captions for c in train]


# ---------------------------------------------------------------------------------------------
# evaluate()
# ---------------------------------------------------------------------------------------------
def evaluate(
    model_path: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    split: str = "test",
    *,
    decoding: DecodingOptions | None = None,
    features: FeaturesConfig = FeaturesConfig(),
    cache_dir: str | os.PathLike[str] | None = None,
    max_clips: int = 0,
    floors: bool = True,
    captions_out: str | os.PathLike[str] | None = None,
    seed: int = 0,
    batch_size: int = 32,
    on_progress: StageProgressFn | None = None,
) -> EvalResult:
    """Score the checkpoint at ``model_path`` on the ``split`` clips of the dataset at ``data_path``.

    ``decoding``: search options (default :class:`~tvcaption.decoding.DecodingOptions`: beam 3).
    ``features``: device, threads, batch size, and the cache folder when ``cache_dir`` is None;
    the backbone, global descriptor and frame count always come from the checkpoint.
    ``max_clips``: score only the first N clips of the split (0 = all). ``floors``: also score
    the constant and random-caption floors. ``captions_out``: write the generated captions there.
    ``on_progress(stage, done, total)``: clips through the stage so far, ``features`` (extracted
    into the cache: only clips not cached yet) then ``captions`` (decoded).
    """
    from tvcaption.decoding import DecodingOptions

    started = time.perf_counter()
    data = Path(data_path)
    decoding = decoding or DecodingOptions()
    all_clips, clips = _clips_to_score(data, split, max_clips)
    captioner, captions = _caption_clips(model_path, clips, features, cache_dir, batch_size, decoding, on_progress)
    subsets = slot_subsets(clips)
    scored = score_set("model", captions, clips, subsets)
    floor_results = _score_floors(all_clips, clips, captioner.meta, data, subsets, seed) if floors else {}
    result = EvalResult(
        model=str(captioner.path or model_path), data=str(data), split=split, clips=len(clips),
        decoding=dataclasses.asdict(decoding), metrics=scored.metrics, slots=scored.slots,
        floors=floor_results, captions=captions, per_clip=scored.per_clip,
        subsets=subsets if subsets.get("all") else {}, seconds=time.perf_counter() - started)
    if captions_out is not None:
        write_captions(captions_out, result, clips)
    return result


def _clips_to_score(data: Path, split: str, max_clips: int) -> tuple[list[Clip], list[Clip]]:
    """All the dataset's clips, and the (first ``max_clips``) clips of ``split``."""
    from tvcaption.data import read_dataset

    all_clips = read_dataset(data)
    clips = split_clips(all_clips, split)
    if not clips:
        found = sorted({c.split for c in all_clips})
        raise TvcaptionError(f"{data}: no clips in the {split!r} split (splits here: {', '.join(found) or 'none'}); "
                             "pass --split with one of them")
    return all_clips, clips[:max_clips] if max_clips > 0 else clips


def _caption_clips(model_path: str | os.PathLike[str], clips: list[Clip], features: FeaturesConfig,
                   cache_dir: str | os.PathLike[str] | None, batch_size: int, decoding: DecodingOptions,
                   on_progress: StageProgressFn | None) -> tuple[Any, dict[str, str]]:
    """The loaded checkpoint and its caption of every clip (features from the checkpoint's backbone)."""
    import torch

    from tvcaption.checkpoint import features_for, load_checkpoint
    from tvcaption.clips import generate, load_features
    from tvcaption.features.onnx_backbone import load_inference_backbone

    def stage(name: str) -> Callable[[int, int], None] | None:
        return (lambda done, total: on_progress(name, done, total)) if on_progress else None

    if features.threads > 0:
        torch.set_num_threads(features.threads)
    captioner = load_checkpoint(model_path)
    meta = captioner.meta
    features = features_for(meta, features)
    backbone = load_inference_backbone(features)
    device = backbone.device
    cache = Path(cache_dir if cache_dir is not None else features.cache_dir)
    feats = load_features(clips, backbone, int(meta["frames"]), features.global_descriptor, cache,
                          batch_size=features.batch_size, on_progress=stage("features"))
    del backbone
    model = captioner.model.to(device)
    return captioner, generate(model, captioner.vocab, feats, batch_size, device, decoding, stage("captions"))


def _score_floors(all_clips: Sequence[Clip], clips: Sequence[Clip], meta: dict[str, Any], data: Path,
                  subsets: dict[str, tuple[str, ...]], seed: int) -> dict[str, Scored]:
    """The constant and random-caption floors (none when no training captions are found)."""
    train_caps = _training_captions(all_clips, meta, data)
    if not train_caps:
        return {}
    ids = [c.id for c in clips]
    constant = constant_caption(train_caps)
    return {"constant": score_set("constant", {i: constant for i in ids}, clips, subsets),
            "random": score_set("random", random_captions(ids, train_caps, seed), clips, subsets)}
