"""Grounded slot accuracy of generated captions on SynthTV, per subset of clips.

Used by validation during training and by :func:`tvcaption.evaluate.evaluate`. Light: numpy and
the SynthTV caption grammar only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tvcaption.data import Clip

SLOT_NAMES = ("kind", "colour", "size", "action", "position", "order")


def slot_subsets(clips: Sequence[Clip]) -> dict[str, tuple[str, ...]]:
    """Named subsets of the clips with slots: all, hard, single (one actor, one event), novel."""
    slotted = [c for c in clips if c.slots]
    subsets = {
        "all": tuple(c.id for c in slotted),
        "hard": tuple(c.id for c in slotted if c.hard or c.slots.get("hard")),
        "single": tuple(c.id for c in slotted if not c.slots.get("second")),
    }
    novel = tuple(c.id for c in slotted if c.slots.get("novel_pair"))
    if novel:
        subsets["novel"] = novel
    return subsets


def score_slots(captions: dict[str, str], clips: Sequence[Clip],
                subsets: dict[str, tuple[str, ...]]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Slot accuracy per subset and the per-clip accuracy.

    Per subset: ``clips``; ``overall`` (mean over clips of the share of applicable slots right);
    ``exact`` (share of clips with every applicable slot right); one accuracy per slot over the
    clips where it applies (NaN when it applies to none); ``position_named``: of the clips where
    the position applies, the share whose caption names any position at all (right or wrong),
    which tells a model that omits positions from one that misplaces them.
    """
    from tvcaption.data import parse_caption, slot_accuracy

    judged = {c.id: slot_accuracy(captions[c.id], c.slots) for c in clips if c.slots}
    named = {cid: any(e.get("position") for e in parse_caption(captions[cid]))
             for cid, j in judged.items() if j.get("position") is not None}
    per_clip = {cid: float(np.mean([v for v in j.values() if v is not None])) for cid, j in judged.items()}
    out: dict[str, dict[str, float]] = {}
    for name, ids in subsets.items():
        row: dict[str, float] = {"clips": len(ids)}
        row["overall"] = float(np.mean([per_clip[i] for i in ids])) if ids else float("nan")
        row["exact"] = float(np.mean([all(v for v in judged[i].values() if v is not None) for i in ids])) if ids else float("nan")
        for slot in SLOT_NAMES:
            values = [judged[i][slot] for i in ids if judged[i].get(slot) is not None]
            row[slot] = float(np.mean(values)) if values else float("nan")
        applies = [named[i] for i in ids if i in named]
        row["position_named"] = float(np.mean(applies)) if applies else float("nan")
        out[name] = row
    return out, per_clip
