"""Self-describing checkpoints: ``STEM.safetensors`` (weights) + ``STEM.json`` (everything else).

The JSON holds the format tag and version, the model dims, the vocabulary, the caller's meta
(backbone, global descriptor, frames, image size, metrics, data), the creation time and the
sha256 of the weights file. Loading reads JSON and safetensors only (nothing is unpickled),
checks the hash and checks every tensor's name and shape against the dims before building the
model. No code outside this module needs to know the layout.

A checkpoint may also carry the training features' statistics (:mod:`tvcaption.domain`): their
arrays as ``domain.*`` tensors in the same weights file (so the sha256 covers them) and their
scalars under ``meta["domain"]``. :func:`add_domain` adds them to an existing checkpoint; one
without them loads as before (``Captioner.domain`` is None).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvcaption import __version__
from tvcaption.errors import CheckpointError
from tvcaption.model.dims import ModelDims
from tvcaption.vocab import Vocab

if TYPE_CHECKING:
    from tvcaption.config import FeaturesConfig
    from tvcaption.domain import DomainStats
    from tvcaption.model.captioner import CaptionModel

FORMAT = "tvcaption-checkpoint"
FORMAT_VERSION = 1
REQUIRED_META = ("backbone", "global_descriptor", "frames", "image_size", "metrics", "data")


@dataclass(frozen=True)
class Manifest:
    """The parsed ``STEM.json`` (no weights loaded)."""

    json_path: Path
    weights_path: Path
    dims: ModelDims
    vocab: Vocab
    meta: dict[str, Any]
    sha256: str
    created: str
    format_version: int


@dataclass(frozen=True, eq=False)
class Captioner:
    """A loaded checkpoint: the model in eval mode and what it needs to caption."""

    model: CaptionModel
    vocab: Vocab
    meta: dict[str, Any]
    dims: ModelDims
    path: Path | None = field(default=None)  # the JSON it was loaded from
    domain: DomainStats | None = field(default=None)  # training feature statistics, when saved


def features_for(meta: Mapping[str, Any], features: FeaturesConfig) -> FeaturesConfig:
    """``features`` with the backbone and global descriptor a checkpoint's ``meta`` was trained
    on: a model only reads the features it learned from, whatever the configuration says."""
    trained_on = {key: meta[key] for key in ("backbone", "global_descriptor") if meta.get(key)}
    return dataclasses.replace(features, **trained_on) if trained_on else features


def checkpoint_paths(stem_or_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(STEM.json, STEM.safetensors) from the stem, the .json or the .safetensors path."""
    text = os.fspath(stem_or_path)
    for suffix in (".json", ".safetensors"):
        if text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    return Path(text + ".json"), Path(text + ".safetensors")


def save_checkpoint(stem: str | os.PathLike[str], model: CaptionModel, vocab: Vocab, meta: dict[str, Any],
                    domain: DomainStats | None = None) -> Path:
    """Write STEM.safetensors then STEM.json (each atomically); returns the JSON path.
    ``domain``: the training features' statistics, saved with the weights."""
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"checkpoint meta lacks {', '.join(missing)}")
    if len(vocab) != model.dims.vocab_size:
        raise ValueError(f"vocabulary has {len(vocab)} entries but the model's vocab_size is {model.dims.vocab_size}")
    json_path, weights_path = checkpoint_paths(stem)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    if domain is not None:
        tensors.update(domain.tensors())
        meta = {**meta, "domain": domain.meta()}
    _write_weights(weights_path, tensors, model.dims)
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tvcaption_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "weights": weights_path.name,
        "sha256": file_sha256(weights_path),
        "dims": model.dims.to_dict(),
        "meta": meta,
        "vocab": vocab.to_list(),
    }
    _write_json(json_path, document)
    return json_path


def _write_weights(weights_path: Path, tensors: dict[str, Any], dims: ModelDims) -> None:
    from safetensors.torch import save_file

    tmp = weights_path.with_name(weights_path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "dims": json.dumps(dims.to_dict(), sort_keys=True)})
    os.chmod(tmp, 0o644)  # readable by all, as a file copied into place would be
    os.replace(tmp, weights_path)


def _write_json(json_path: Path, document: dict[str, Any]) -> None:
    text = json.dumps(document, indent=1, ensure_ascii=False)  # raises TypeError on non-JSON meta
    tmp = json_path.with_name(json_path.name + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, json_path)


def add_domain(stem_or_path: str | os.PathLike[str], domain: DomainStats) -> Path:
    """Put ``domain`` into an existing checkpoint (replacing statistics it had): the weights file
    is rewritten with the ``domain.*`` tensors, the JSON gets ``meta["domain"]`` and the new
    sha256; the model's tensors, vocabulary, dims and creation time stay as they were."""
    captioner = load_checkpoint(stem_or_path)  # verifies the hash and the weights first
    json_path, weights_path = checkpoint_paths(stem_or_path)
    document = json.loads(json_path.read_text(encoding="utf-8"))
    tensors = {name: t.detach().contiguous() for name, t in captioner.model.state_dict().items()}
    tensors.update(domain.tensors())
    _write_weights(weights_path, tensors, captioner.dims)
    document["meta"] = {**document.get("meta", {}), "domain": domain.meta()}
    document["sha256"] = file_sha256(weights_path)
    _write_json(json_path, document)
    return json_path


def read_manifest(stem_or_path: str | os.PathLike[str]) -> Manifest:
    """Parse and validate STEM.json without touching the weights (no torch import)."""
    json_path, weights_path = checkpoint_paths(stem_or_path)
    if not json_path.is_file():
        raise CheckpointError(
            f"{json_path}: checkpoint description not found; pass the stem, .json or .safetensors of a checkpoint saved by tvcaption"
        )
    not_ours = f"{json_path}: not a tvcaption checkpoint; pass a STEM.json written by tvcaption train"
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(not_ours) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(not_ours)
    version = doc.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{json_path}: checkpoint format {version!r} is newer than this tvcaption reads ({FORMAT_VERSION}); upgrade tvcaption"
        )
    try:
        dims = ModelDims.from_dict(doc["dims"])
        vocab = Vocab.from_list(doc["vocab"])
        sha = doc["sha256"]
        meta = doc.get("meta", {})
        if not isinstance(sha, str) or not isinstance(meta, dict):
            raise ValueError("sha256 must be a string and meta an object")
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise CheckpointError(f"{json_path}: damaged tvcaption checkpoint description ({detail}); re-copy or re-train it") from None
    if len(vocab) != dims.vocab_size:
        raise CheckpointError(
            f"{json_path}: vocabulary has {len(vocab)} entries but dims.vocab_size is {dims.vocab_size}; re-copy or re-train it"
        )
    # The weights are always the sibling with the same stem (the recorded name is informational),
    # so a renamed pair of files still loads; the sha256 ties them together.
    return Manifest(json_path, weights_path, dims, vocab, meta, sha, str(doc.get("created", "")), version)


def load_checkpoint(stem_or_path: str | os.PathLike[str], device: str = "cpu") -> Captioner:
    """Load a checkpoint for inference: hash checked, weights matched to the dims, eval mode.

    Every problem a user can cause (missing file, changed or corrupt weights, a JSON that is not
    ours, weights of another model) is a :class:`CheckpointError` naming the file and the fix.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from tvcaption.model.captioner import CaptionModel

    manifest = read_manifest(stem_or_path)
    weights = manifest.weights_path
    if not weights.is_file():
        raise CheckpointError(f"{weights}: checkpoint weights not found next to {manifest.json_path.name}; copy both files together")
    if file_sha256(weights) != manifest.sha256:
        raise CheckpointError(
            f"{weights}: sha256 differs from the one recorded in {manifest.json_path.name} (file changed or corrupt); re-copy the checkpoint or re-train"
        )
    try:
        tensors = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: unreadable safetensors file ({exc}); re-copy the checkpoint") from None
    from tvcaption.domain import TENSOR_PREFIX, DomainStats

    extra = {k: tensors.pop(k) for k in [k for k in tensors if k.startswith(TENSOR_PREFIX)]}
    try:
        domain = DomainStats.from_checkpoint(extra, manifest.meta.get("domain"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{manifest.json_path}: damaged domain statistics ({exc}); run tvcaption model "
                              "calibrate again or re-train") from None
    model = CaptionModel(manifest.dims)
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in tensors]
    problems += [f"unexpected {k}" for k in tensors if k not in expected]
    problems += [
        f"{k} is {tuple(tensors[k].shape)} not {tuple(v.shape)}"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise CheckpointError(
            f"{weights}: weights do not match the model described in {manifest.json_path.name} ({shown}); use the JSON saved with these weights"
        )
    broken = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if broken:
        raise CheckpointError(
            f"{weights}: weights hold NaN or infinite values ({', '.join(broken[:3])}); the file is damaged, "
            "re-copy the checkpoint or re-train"
        )
    model.load_state_dict(tensors, strict=True)
    model.to(torch.device(device)).eval()
    return Captioner(model=model, vocab=manifest.vocab, meta=manifest.meta, dims=manifest.dims,
                     path=manifest.json_path, domain=domain)


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
