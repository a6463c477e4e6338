"""Validation after each epoch, and which epoch is best.

On the ``val`` clips: the validation loss (one fixed caption per clip), then greedy decoding and
BLEU-1..4 / METEOR / ROUGE-L / CIDEr through pycocoevalcap, plus slot accuracy on SynthTV. The
best epoch by ``select`` (a metric; ``loss`` means the lowest validation loss) becomes the
checkpoint.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import TYPE_CHECKING

import numpy as np
import torch

from tvcaption.clips import SplitFeatures, generate
from tvcaption.train_data import caption_choice

if TYPE_CHECKING:
    from tvcaption.vocab import Vocab

LOWER_IS_BETTER = ("loss",)


def is_better(key: str, new: float, old: float | None) -> bool:
    """Whether score ``new`` beats ``old`` on validation key ``key`` (a NaN never wins)."""
    if old is None or not math.isfinite(old):
        return math.isfinite(new)
    return new < old if key in LOWER_IS_BETTER else new > old


def estimate_loss(model, feats: SplitFeatures, tokens: list[list[list[int]]], batch_size: int,
                  device: torch.device, seed: int, autocast=nullcontext) -> dict[str, float]:
    """Mean validation losses (one fixed caption per clip), in eval mode under no_grad; restores train mode."""
    from tvcaption.model import pad_tokens

    was_training = model.training
    model.eval()
    totals = {"loss": 0.0, "caption": 0.0, "matching": 0.0}
    n = len(feats)
    choice = caption_choice([len(t) for t in tokens], seed, 0)
    with torch.no_grad():
        for lo in range(0, n, batch_size):
            idx = np.arange(lo, min(n, lo + batch_size))
            local, glob = feats.batch(idx, device)
            tok, lengths = pad_tokens([tokens[i][choice[i]] for i in idx], device)
            with autocast():
                losses = model.loss(local, glob, tok, lengths)
            for key, value in (("loss", losses.total), ("caption", losses.caption), ("matching", losses.matching)):
                totals[key] += float(value) * len(idx)
    model.train(was_training)
    return {k: v / max(1, n) for k, v in totals.items()}


def validate(model, vocab: Vocab, feats: SplitFeatures, tokens, batch_size: int, device: torch.device,
             seed: int, max_words: int, autocast=nullcontext) -> dict[str, float]:
    """Validation loss, then greedy captions scored with the real metrics (and slots on SynthTV)."""
    from tvcaption.decoding import DecodingOptions
    from tvcaption.metrics import score_captions
    from tvcaption.slots import score_slots, slot_subsets

    result = estimate_loss(model, feats, tokens, batch_size, device, seed, autocast)
    captions = generate(model, vocab, feats, batch_size, device, DecodingOptions(beam_size=1, max_len=max_words))
    scores = score_captions(captions, {c.id: list(c.captions) for c in feats.clips})
    result.update(scores.corpus)
    slotted = [c for c in feats.clips if c.slots]
    if slotted:
        by_subset, _ = score_slots(captions, slotted, slot_subsets(slotted))
        result["slots"] = by_subset["all"]["overall"]  # mean over clips of the share of their slots right
        single = by_subset["single"]  # what each slot reaches on one-actor clips, to see what is being learned
        for slot in ("kind", "colour", "action"):
            result[f"single_{slot}"] = single[slot]
    return result
