"""The L-STAP caption: the checkpoint's encoder and decoder on a scene's 7x7 local features.

The checkpoint decides the backbone (it was trained on its features) and how many frames a
scene gets (``[model] frames`` may override). Its name and sha256 are the model identity the
store records, so a recording indexed with another model is indexed again.

Each caption's ``score`` is the model's confidence: the length-normalised log-probability of
the decoded sentence (log p / (words + 1), <eos> counted), from greedy or beam decoding. When the
checkpoint holds its training features' statistics (:mod:`tvcaption.domain`), the caption's
``data`` also says how far the scene lies from them (``domain_distance``, ``domain_threshold``)
and ``out_of_domain``; an out-of-domain caption is stored under the search field ``hidden``
(found only by ``search --all-captions``, left out of SRT/WebVTT unless asked). A checkpoint
without statistics captions as before, with one warning per run and no domain mark. A scene
whose picture is blank (black, a flat fade: :mod:`tvcaption.blank`) gets its caption hidden the
same way, with ``blank: true``, whatever the distance says.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from tvcaption.analysers.base import Analyser, AnalyserContext, SceneInput
from tvcaption.errors import CheckpointError
from tvcaption.scene import Annotation

log = logging.getLogger(__name__)
TRAIN_HINT = "train one with `tvcaption synth data/synthtv && tvcaption train data/synthtv --out models/mine`"


class CaptionAnalyser(Analyser):
    name = "caption"
    needs = frozenset({"features"})

    def __init__(self, context: AnalyserContext):
        super().__init__(context)
        from tvcaption.checkpoint import features_for, read_manifest

        config = context.config
        stem = config.model_path
        if not (stem.with_name(stem.name + ".json").exists() or stem.exists()):
            raise CheckpointError(f"{stem}: no trained model found; pass --model, set [model] path or {TRAIN_HINT}")
        manifest = read_manifest(stem)  # the JSON only: the weights load in the engine's loading thread
        if not manifest.weights_path.is_file():
            raise CheckpointError(f"{manifest.weights_path}: checkpoint weights not found next to "
                                  f"{manifest.json_path.name}; copy both files together")
        self._stem = stem
        meta = manifest.meta
        context.features_config = features_for(meta, context.features_config)  # before the backbone loads
        self.descriptor = meta.get("global_descriptor", config.features.global_descriptor)
        self.frames = config.model.frames or int(meta.get("frames", 10))
        self.model_name = str(meta.get("name", manifest.json_path.stem))
        self._info = {"name": self.model_name, "sha256": manifest.sha256,
                      "meta": {k: meta[k] for k in ("backbone", "frames", "data", "metrics", "domain") if k in meta}}
        self._captioner = None
        self._domain = None

    def load(self) -> None:
        from tvcaption.checkpoint import load_checkpoint

        if self._captioner is not None:
            return
        captioner = load_checkpoint(self._stem)  # the sha256 checked against the JSON read above
        captioner.model.to(self.context.device)
        domain = captioner.domain
        if domain is None or domain.threshold is None:
            log.warning("model %s has no training-feature statistics: captions get no out-of-domain mark; "
                        "add them with tvcaption model calibrate --model STEM --data DATASET", self.model_name)
            domain = None
        self._domain, self._captioner = domain, captioner

    @property
    def captioner(self):
        """The loaded checkpoint (loaded here if the engine has not loaded it yet)."""
        if self._captioner is None:
            self.load()
        return self._captioner

    @property
    def domain(self):
        """The training-feature statistics with a threshold, or None."""
        self.load()
        return self._domain

    @property
    def identity(self) -> str:
        return self.model_name

    def model_info(self) -> dict[str, Any]:
        return self._info

    def analyse(self, batch: Sequence[SceneInput]) -> list[list[Annotation]]:
        import torch

        from tvcaption.decoding import decode_hypotheses
        from tvcaption.domain import pooled
        from tvcaption.features import global_descriptor

        with torch.inference_mode():
            local = torch.stack([item.features for item in batch]).float()  # (B, T, 7, 7, C)
            glob = global_descriptor(self.descriptor, local)
            hyps = decode_hypotheses(self.captioner.model, local, glob, self.context.config.decoding)
        distances = self.domain.distance(pooled(local)) if self.domain is not None else [None] * len(hyps)
        return [[self._annotation(h, d, item.blank)] for h, d, item in zip(hyps, distances, batch)]

    def _annotation(self, hyp, distance: float | None, blank: float | None = None) -> Annotation:
        from tvcaption.blank import is_blank

        confidence = hyp.confidence
        data: dict[str, Any] = {"confidence": round(confidence, 4), "words": len(hyp.tokens)}
        field = "text"
        if distance is not None:
            out = self.domain.out_of_domain(float(distance))
            data.update(domain_distance=round(float(distance), 4), domain_threshold=round(self.domain.threshold, 4),
                        out_of_domain=out)
            field = "hidden" if out else "text"
        if is_blank(blank):  # a black or flat picture: nothing the sentence could be about
            data.update(blank=True, out_of_domain=True)
            field = "hidden"
        return Annotation(self.name, "caption", self.captioner.vocab.decode(hyp.tokens), confidence, field, data)


