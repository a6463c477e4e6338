"""The 1000 ImageNet class names (torchvision's spelling), shipped as ``imagenet_labels.txt``."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import torch


@lru_cache(maxsize=1)
def _labels() -> tuple[str, ...]:
    text = resources.files("tvcaption.features").joinpath("imagenet_labels.txt").read_text("utf-8")
    names = tuple(line for line in text.splitlines() if line)
    if len(names) != 1000:
        raise RuntimeError(f"imagenet_labels.txt holds {len(names)} names, expected 1000: reinstall tvcaption")
    return names


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names in logit order."""
    return list(_labels())


def top_labels(logits: torch.Tensor, k: int = 5, min_score: float = 0.0) -> list[list[tuple[str, float]]]:
    """Per row of (N, 1000) logits: up to ``k`` (label, probability) pairs with probability >= min_score."""
    names = _labels()
    probs = logits.detach().float().softmax(dim=-1).cpu()
    values, indices = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return [
        [(names[i], float(v)) for v, i in zip(vs.tolist(), ix.tolist()) if v >= min_score]
        for vs, ix in zip(values, indices)
    ]
