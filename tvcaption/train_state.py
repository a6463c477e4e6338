"""The files of a training run and the state that ``resume`` continues from.

For ``out = models/mine``: ``mine.json/.safetensors`` the best checkpoint;
``mine.last.json/.safetensors`` the last epoch's checkpoint; ``mine.state.json/.safetensors``
what ``resume=True`` needs (model and optimizer tensors, torch RNG states in safetensors; epoch,
step, history, vocabulary, optimizer hyper-parameters, NumPy/Python RNG states, config in JSON;
nothing pickled). The state is self-contained, so a crash between writing the last checkpoint
and the state leaves a consistent previous state.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tvcaption.errors import CheckpointError

if TYPE_CHECKING:
    from tvcaption.vocab import Vocab

STATE_FORMAT = "tvcaption-train-state"
STATE_VERSION = 1


def stem_paths(out: str | os.PathLike[str]) -> dict[str, Path]:
    """The files of one training run, from the output stem (``models/mine`` or ``models/mine.json``)."""
    text = os.fspath(out)
    for suffix in (".json", ".safetensors"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    return {
        "best": Path(text),
        "last": Path(text + ".last"),
        "state_json": Path(text + ".state.json"),
        "state_tensors": Path(text + ".state.safetensors"),
    }


@dataclass
class RunState:
    """Where a run stands: the next epoch, optimizer steps taken, the history, the best so far."""

    start_epoch: int = 1
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: float | None = None
    best_epoch: int = 0


@dataclass(frozen=True)
class SavedState:
    """A training state read back from disk: the JSON document and the tensors."""

    doc: dict[str, Any]
    tensors: dict[str, torch.Tensor]


def flatten_optimizer(optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """optimizer.state_dict() as safetensors-able tensors + JSON (no pickle)."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "state": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten_optimizer`: a state dict for ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, entry in doc.get("state", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    return {"state": state, "param_groups": doc["param_groups"]}


def save_state(paths: dict[str, Path], model, optimizer, vocab: Vocab, doc: dict[str, Any]) -> Path:
    """Write STEM.state.safetensors (tensors) then STEM.state.json (the rest, with the sha256)."""
    from safetensors.torch import save_file

    from tvcaption.checkpoint import file_sha256

    tensors = {f"model.{k}": v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    optim_tensors, optim_doc = flatten_optimizer(optimizer)
    tensors.update(optim_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    paths["state_tensors"].parent.mkdir(parents=True, exist_ok=True)
    tmp = paths["state_tensors"].with_name(paths["state_tensors"].name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": STATE_FORMAT})
    os.replace(tmp, paths["state_tensors"])
    py_state = random.getstate()
    document = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        **doc,
        "dims": model.dims.to_dict(),
        "vocab": vocab.to_list(),
        "optimizer": optim_doc,
        "rng": {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
                "python": [py_state[0], list(py_state[1]), py_state[2]]},
        "tensors": paths["state_tensors"].name,
        "sha256": file_sha256(paths["state_tensors"]),
    }
    tmp = paths["state_json"].with_name(paths["state_json"].name + ".tmp")
    tmp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, paths["state_json"])
    return paths["state_json"]


def load_state(paths: dict[str, Path]) -> SavedState:
    """The JSON document and tensors of a saved training state; CheckpointError when unusable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from tvcaption.checkpoint import file_sha256

    js, st = paths["state_json"], paths["state_tensors"]
    if not js.is_file():
        raise CheckpointError(f"{js}: no training state to resume; run without --resume to start afresh")
    try:
        doc = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{js}: unreadable training state; delete it and run without --resume") from None
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT or doc.get("version") != STATE_VERSION:
        raise CheckpointError(f"{js}: not a tvcaption training state (version {STATE_VERSION}); run without --resume")
    if not st.is_file() or file_sha256(st) != doc.get("sha256"):
        raise CheckpointError(f"{st}: missing or does not match {js.name} (interrupted copy?); run without --resume")
    try:
        tensors = load_file(str(st), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{st}: unreadable ({exc}); run without --resume") from None
    return SavedState(doc, tensors)


def restore_rng(doc: dict[str, Any], tensors: dict[str, torch.Tensor], rank: int, seed: int, epoch: int) -> None:
    """The random streams as they were when the state was saved (rank 0's; other ranks reseed)."""
    if rank != 0:  # the state holds rank 0's streams; other ranks get their own, reproducibly
        torch.manual_seed(seed + 7919 * epoch + rank)
        return
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, gauss = doc["rng"]["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = doc["rng"]["python"]
    random.setstate((version, tuple(internal), gauss_next))


def resume_from(saved: SavedState, model, optimizer, *, lr: float, select: str, rank: int, seed: int) -> RunState:
    """Load the saved model and optimizer into ``model`` and ``optimizer``, restore the random
    streams, and say where the run stands. The configured ``lr`` wins over the saved one; a best
    score chosen by another key than ``select`` does not compare and is forgotten."""
    doc, tensors = saved.doc, saved.tensors
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    optimizer.load_state_dict(unflatten_optimizer(tensors, doc["optimizer"]))
    for group in optimizer.param_groups:
        group["lr"] = lr
    state = RunState(start_epoch=int(doc["epoch"]) + 1, step=int(doc["step"]), history=list(doc.get("history", [])))
    saved_best = doc.get("best", {})
    if saved_best.get("key") == select:
        state.best_score, state.best_epoch = saved_best.get("score"), int(saved_best.get("epoch", 0))
    restore_rng(doc, tensors, rank, seed, state.start_epoch)
    return state
