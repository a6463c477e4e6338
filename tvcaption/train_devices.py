"""Where training runs: torchrun's process group, one device per rank, and mixed precision.

* **Multi-GPU** through ``torchrun`` (``WORLD_SIZE`` > 1): the process group is joined here
  (NCCL on CUDA, gloo on CPU) and each rank takes the GPU of its ``LOCAL_RANK``.
* **Mixed precision** (``amp``): on CUDA bf16 where supported, else fp16 with a gradient
  scaler; on a CPU with native bf16 (AVX512-BF16 or AMX) bf16 autocast, elsewhere fp32.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_spec: str) -> tuple[Dist, bool]:
    """Join the torchrun process group when WORLD_SIZE > 1; returns (dist, whether we created it)."""
    import torch.distributed as td

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), False
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    created = False
    if not td.is_initialized():
        cuda = torch.cuda.is_available() and device_spec != "cpu"
        td.init_process_group(backend="nccl" if cuda else "gloo")
        created = True
    return Dist(rank, world, local_rank), created


def resolve_device(spec: str, dist: Dist) -> torch.device:
    """The features' device rule (auto | cpu | cuda | cuda:N), with one GPU per rank under torchrun."""
    from tvcaption.features import resolve_device as features_device

    device = features_device(spec)
    if device.type == "cuda":
        if dist.world > 1:
            device = torch.device("cuda", dist.local_rank)
        elif device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 parts outside autocast
        torch.backends.cudnn.allow_tf32 = True
    return device


def wrap_for_ranks(module: torch.nn.Module, dist: Dist, device: torch.device) -> torch.nn.Module:
    """``module`` as DistributedDataParallel when several ranks train together, else as it is."""
    if dist.world <= 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX): only then is CPU autocast
    to bf16 a speed-up; elsewhere PyTorch emulates it and fp32 is faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True, eq=False)
class Precision:
    """The autocast dtype (None: fp32) and the gradient scaler (active for fp16 only)."""

    device_type: str
    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler

    @property
    def name(self) -> str:
        """``bfloat16``, ``float16``, or ``""`` for fp32."""
        return str(self.dtype).split(".")[-1] if self.dtype else ""

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.dtype) if self.dtype else nullcontext()


def choose_precision(amp: bool, device: torch.device) -> Precision:
    """Mixed precision where it pays (see the module's docstring); fp32 when ``amp`` is off."""
    dtype = None
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif amp and device.type == "cpu" and cpu_has_native_bf16():
        dtype = torch.bfloat16  # a training step 2.3x faster than fp32 on AVX512-BF16 (bench/cpu_bf16.py)
    return Precision(device.type, dtype, torch.amp.GradScaler("cuda", enabled=dtype == torch.float16))
