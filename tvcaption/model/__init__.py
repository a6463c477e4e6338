"""The L-STAP captioning model. ``ModelDims`` imports without torch; the rest loads torch lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tvcaption.model.dims import ModelDims

if TYPE_CHECKING:
    from tvcaption.model.captioner import CaptionModel, Losses, pad_tokens
    from tvcaption.model.lstap import Encoded

__all__ = ["CaptionModel", "Encoded", "Losses", "ModelDims", "pad_tokens"]

_LAZY = {"CaptionModel": "captioner", "Losses": "captioner", "pad_tokens": "captioner", "Encoded": "lstap"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"tvcaption.model.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'tvcaption.model' has no attribute {name!r}")
