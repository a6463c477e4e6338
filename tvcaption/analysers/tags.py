"""ImageNet tags: the backbone's classifier on a scene's frames, averaged, top ``[index] tags``
labels at or above ``[index] tag_min_score``. Reuses the features the captioner already needs."""

from __future__ import annotations

from typing import Sequence

from tvcaption.analysers.base import Analyser, SceneInput
from tvcaption.scene import Annotation


class TagsAnalyser(Analyser):
    name = "tags"
    needs = frozenset({"features"})

    def analyse(self, batch: Sequence[SceneInput]) -> list[list[Annotation]]:
        import torch

        from tvcaption.features import imagenet_labels

        labels = imagenet_labels()
        index = self.context.config.index
        sizes = [len(item.features) for item in batch]
        with torch.inference_mode():  # one classifier pass for the batch, then each scene's mean
            probs = self.context.backbone.classify(torch.cat([item.features for item in batch])).float().softmax(-1)
            tops = [p.mean(0).topk(index.tags) for p in probs.split(sizes)]
        return [[Annotation(self.name, "tag", labels[i], round(p, 4), field="labels")
                 for p, i in zip(top_p.tolist(), top_i.tolist()) if p >= index.tag_min_score]
                for top_p, top_i in tops]
