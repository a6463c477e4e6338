"""The L-STAP caption: the checkpoint's encoder and decoder on a scene's 7x7 local features.

The checkpoint decides the backbone (it was trained on its features) and how many frames a
scene gets (``[model] frames`` may override). Its name and sha256 are the model identity the
store records, so a recording indexed with another model is indexed again.
"""

from __future__ import annotations

from typing import Any, Sequence

from tvcaption.analysers.base import Analyser, AnalyserContext, SceneInput
from tvcaption.errors import CheckpointError
from tvcaption.scene import Annotation

TRAIN_HINT = "train one with `tvcaption synth data/synthtv && tvcaption train data/synthtv --out models/mine`"


class CaptionAnalyser(Analyser):
    name = "caption"
    needs = frozenset({"features"})

    def __init__(self, context: AnalyserContext):
        super().__init__(context)
        from tvcaption.checkpoint import features_for, load_checkpoint, read_manifest

        config = context.config
        stem = config.model_path
        if not (stem.with_name(stem.name + ".json").exists() or stem.exists()):
            raise CheckpointError(f"{stem}: no trained model found; pass --model, set [model] path or {TRAIN_HINT}")
        self.captioner = load_checkpoint(stem)
        meta = self.captioner.meta
        context.features_config = features_for(meta, context.features_config)  # before the backbone loads
        self.captioner.model.to(context.device)
        self.descriptor = meta.get("global_descriptor", config.features.global_descriptor)
        self.frames = config.model.frames or int(meta.get("frames", 10))
        manifest = read_manifest(stem)
        self.model_name = str(meta.get("name", manifest.json_path.stem))
        self._info = {"name": self.model_name, "sha256": manifest.sha256,
                      "meta": {k: meta[k] for k in ("backbone", "frames", "data", "metrics") if k in meta}}

    @property
    def identity(self) -> str:
        return self.model_name

    def model_info(self) -> dict[str, Any]:
        return self._info

    def analyse(self, batch: Sequence[SceneInput]) -> list[list[Annotation]]:
        import torch

        from tvcaption.decoding import decode_hypotheses
        from tvcaption.features import global_descriptor

        with torch.inference_mode():
            local = torch.stack([item.features for item in batch]).float()  # (B, T, 7, 7, C)
            glob = global_descriptor(self.descriptor, local)
            hyps = decode_hypotheses(self.captioner.model, local, glob, self.context.config.decoding)
        vocab = self.captioner.vocab
        return [[Annotation(self.name, "caption", vocab.decode(h.tokens), h.logprob / (len(h.tokens) + 1))]
                for h in hyps]


