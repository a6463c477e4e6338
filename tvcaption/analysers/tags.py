"""ImageNet tags: the backbone's classifier on a scene's frames, averaged, top ``[index] tags``
labels at or above ``[index] tag_min_score``. Reuses the features the captioner already needs.

Each tag carries the broader words WordNet puts above its class (``data["hypernyms"]``, nearest
first: "moped" -> minibike, motorcycle, motor vehicle, ..., vehicle), so that search for
"vehicle" finds a moped and "dog" a golden retriever. They come from a table shipped in the
package (``tvcaption/resources/tag_hypernyms.tsv``, made once from WordNet 3.0 by
``scripts/make_tag_hypernyms.py``, which says what is cut); nothing is looked up at run time.
The store indexes them with the label (:func:`tvcaption.db.scenes.annotation_row`).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Sequence

from tvcaption.analysers.base import Analyser, SceneInput
from tvcaption.errors import TvcaptionError
from tvcaption.scene import Annotation

HYPERNYMS_FILE = "tag_hypernyms.tsv"
CLASSES = 1000


@lru_cache(maxsize=1)
def class_hypernyms() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Per ImageNet class index: (its label, its WordNet hypernyms nearest first), from the shipped table."""
    try:
        text = resources.files("tvcaption.resources").joinpath(HYPERNYMS_FILE).read_text("utf-8")
    except (FileNotFoundError, ModuleNotFoundError):
        text = ""
    rows = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            index, _wnid, label, words = line.split("\t")
            if int(index) != len(rows):
                break
            rows.append((label, tuple(w for w in words.split(", ") if w)))
    if len(rows) != CLASSES:
        raise TvcaptionError(f"tvcaption/resources/{HYPERNYMS_FILE}: {len(rows)} classes in order, expected "
                             f"{CLASSES}; reinstall tvcaption (pip install --force-reinstall tvcaption)")
    return tuple(rows)


def tag_annotation(index: int, score: float, labels: Sequence[str]) -> Annotation:
    """The tag for ImageNet class ``index`` with probability ``score``, with its hypernyms."""
    label, hypernyms = class_hypernyms()[index]
    if label != labels[index]:
        raise TvcaptionError(f"tvcaption/resources/{HYPERNYMS_FILE}: class {index} is {label!r} there and "
                             f"{labels[index]!r} in imagenet_labels.txt; reinstall tvcaption")
    return Annotation(TagsAnalyser.name, "tag", labels[index], round(score, 4), field="labels",
                      data={"hypernyms": list(hypernyms)} if hypernyms else None)


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
        return [[tag_annotation(i, p, labels) for p, i in zip(top_p.tolist(), top_i.tolist()) if p >= index.tag_min_score]
                for top_p, top_i in tops]
