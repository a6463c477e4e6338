"""Global video descriptor e(V), which initialises the L-STAP encoder state (paper eqs 11-12).

The paper uses I3D logits; no such weights are available offline, so e(V) is pluggable by name.
Built in, computed from the 2D backbone's local features (B, T, 7, 7, C):

* ``mean``: mean over time and the 7x7 grid -> (B, C)
* ``meanmax``: that mean concatenated with the max over time and grid -> (B, 2C)

A new descriptor registers a function of the local features and its output size as a function
of C (``register_descriptor``); checkpoints record the name, so a model trained with one
descriptor is never fed another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from tvcaption.config import ConfigError


@dataclass(frozen=True)
class Descriptor:
    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]  # (B, T, 7, 7, C) -> (B, D)
    dim: Callable[[int], int]  # C -> D


DESCRIPTORS: dict[str, Descriptor] = {}


def register_descriptor(name: str, fn: Callable[[torch.Tensor], torch.Tensor], dim: Callable[[int], int]) -> None:
    DESCRIPTORS[name] = Descriptor(name, fn, dim)


def _get(name: str) -> Descriptor:
    try:
        return DESCRIPTORS[name]
    except KeyError:
        raise ConfigError(
            f"[features] global_descriptor: unknown {name!r}; choose one of {', '.join(sorted(DESCRIPTORS))}"
        ) from None


def _check(local: torch.Tensor) -> torch.Tensor:
    if local.ndim != 5:
        raise ValueError(f"expected local features (B, T, H, W, C), got shape {tuple(local.shape)}")
    return local.float()  # fp16 cache values: reduce in fp32


def _mean(local: torch.Tensor) -> torch.Tensor:
    return _check(local).mean(dim=(1, 2, 3))


def _meanmax(local: torch.Tensor) -> torch.Tensor:
    x = _check(local)
    return torch.cat([x.mean(dim=(1, 2, 3)), x.amax(dim=(1, 2, 3))], dim=-1)


register_descriptor("mean", _mean, lambda c: c)
register_descriptor("meanmax", _meanmax, lambda c: 2 * c)


def global_descriptor(name: str, local: torch.Tensor) -> torch.Tensor:
    """e(V) for a batch of clips: (B, T, 7, 7, C) -> float32 (B, D)."""
    return _get(name).fn(local)


def descriptor_dim(name: str, channels: int) -> int:
    return _get(name).dim(channels)
