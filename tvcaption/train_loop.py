"""The epochs: optimisation steps over the batches, then (rank 0) validation and saving.

Recipe (every value configurable through :class:`~tvcaption.config.TrainConfig`): RMSProp
(decay 0.9, momentum 0, eps 1e-10; torch's RMSprop, whose mean square starts at 0 where
TensorFlow 1 started it at 1) or Adam, lr constant after an optional linear warm-up, gradient
norm clipped at ``grad_clip``. What happens is reported as :class:`TrainEvent` to whoever
listens (the CLI draws it); nothing here prints.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from tvcaption.errors import ConfigError
from tvcaption.train_data import caption_choice, epoch_batches
from tvcaption.train_state import save_state
from tvcaption.train_validation import is_better, validate

if TYPE_CHECKING:
    from tvcaption.config import TrainConfig
    from tvcaption.train_data import RunFeatures, TrainData
    from tvcaption.train_devices import Dist, Precision
    from tvcaption.train_state import RunState


@dataclass(frozen=True)
class TrainEvent:
    """What :func:`tvcaption.train.train` is doing, for whoever shows it (rank 0 only).

    kind: ``features`` (split, done, total: clips extracted into the cache), ``data`` (info:
    data, train_clips, val_clips, val_total, vocab, backbone, frames, seconds, in_ram),
    ``resumed`` (info: state, epoch, step), ``model`` (info: pooling, matching, parameters,
    hidden, optimizer, lr, batch_size, ranks, device, amp, threads), ``batch`` (epoch, epochs,
    done, total: batches; loss: the epoch's running mean every 10th batch, else None),
    ``epoch`` (epoch, epochs, row: the history row, select), ``nothing`` (info: state, epoch,
    epochs: a resumed run that had already reached its last epoch).
    """

    kind: str
    epoch: int = 0
    epochs: int = 0
    done: int = 0
    total: int = 0
    loss: float | None = None
    split: str = ""
    select: str = ""
    row: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


EventFn = Callable[[TrainEvent], None]


def get_lr(step: int, lr: float, warmup: int = 0) -> float:
    """Learning rate at optimizer step ``step`` (0-based): linear warm-up over ``warmup`` steps,
    then constant (the paper trains at a constant 1e-4)."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    return lr


def make_optimizer(params, config: TrainConfig):
    if config.optimizer == "rmsprop":  # paper: decay 0.9, momentum 0, epsilon 1e-10
        return torch.optim.RMSprop(params, lr=config.lr, alpha=0.9, eps=1e-10, momentum=0.0)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr)
    raise ConfigError(f"[train] optimizer: unknown {config.optimizer!r}; use rmsprop or adam")


class Objective(nn.Module):
    """CaptionModel.loss as a module's forward: DistributedDataParallel synchronises gradients
    only through ``forward``. Returns (total, caption, matching), the last two detached."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.inner = model

    def forward(self, local, glob, tokens, lengths):
        losses = self.inner.loss(local, glob, tokens, lengths)
        return losses.total, losses.caption.detach(), losses.matching.detach()


@dataclass
class Run:
    """Everything the epochs share; ``state`` advances as they go."""

    model: nn.Module
    objective: nn.Module  # Objective(model), wrapped in DistributedDataParallel under torchrun
    optimizer: torch.optim.Optimizer
    precision: Precision
    device: torch.device
    dist: Dist
    config: TrainConfig
    data: TrainData
    feats: RunFeatures
    paths: dict[str, Path]
    select: str
    meta_base: dict[str, Any]  # what every checkpoint's meta holds (plus epoch and metrics)
    state: RunState
    warmup: int = 0
    on_event: EventFn | None = None
    domain: Any = None  # DomainStats of the training features (rank 0), saved in every checkpoint

    def emit(self, event: TrainEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)


def train_step(run: Run, idx: np.ndarray, choice: np.ndarray, lr: float) -> torch.Tensor:
    """One optimizer step on the clips at ``idx``; returns (total, caption, matching) x clips and
    the clip count, on the device (no host sync)."""
    from tvcaption.model import pad_tokens

    optimizer, scaler = run.optimizer, run.precision.scaler
    for group in optimizer.param_groups:
        group["lr"] = lr
    local, glob = run.feats.train.batch(idx, run.device, pin=True)
    tokens, lengths = pad_tokens([run.data.train_tokens[i][choice[i]] for i in idx], run.device)
    with run.precision.autocast():
        total, caption, matching = run.objective(local, glob, tokens, lengths)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    if run.config.grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.config.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    n = len(idx)
    return torch.stack([total.detach() * n, caption * n, matching * n, total.new_tensor(n)]).double()


def train_epoch(run: Run, sampler, epoch: int, t_epoch: float) -> dict[str, Any]:
    """One pass over this rank's share of the clips (the epoch began at ``t_epoch``, a
    ``perf_counter`` time); returns the epoch's history row so far."""
    config, state = run.config, run.state
    sampler.set_epoch(epoch)
    order = np.fromiter(iter(sampler), dtype=np.int64)
    batches = epoch_batches(order, max(1, config.batch_size // run.dist.world))
    choice = caption_choice(run.data.counts, config.seed, epoch)
    sums = torch.zeros(4, dtype=torch.float64, device=run.device)  # total, caption, matching (x clips), clips
    lr = config.lr
    for done, idx in enumerate(batches, 1):
        lr = get_lr(state.step, config.lr, run.warmup)
        sums += train_step(run, idx, choice, lr)  # accumulated on the device: no host sync per step
        state.step += 1
        if run.on_event is not None:
            loss = float(sums[0] / sums[3]) if done % 10 == 1 else None  # a host sync on CUDA: not every batch
            run.emit(TrainEvent("batch", epoch=epoch, epochs=config.epochs, done=done, total=len(batches), loss=loss))
    if run.dist.world > 1:  # the mean over all ranks' clips
        torch.distributed.all_reduce(sums)
    seen = int(sums[3])
    train_losses = (sums[:3] / max(1, seen)).tolist()
    t_train = time.perf_counter() - t_epoch
    return {"epoch": epoch, "step": state.step, "lr": lr, "train_loss": float(train_losses[0]),
            "train_caption": float(train_losses[1]), "train_matching": float(train_losses[2]),
            "train_seconds": round(t_train, 3), "clips_per_second": round(seen / max(t_train, 1e-9), 2)}


def validate_and_save(run: Run, row: dict[str, Any], t_epoch: float) -> None:
    """Rank 0 after an epoch: validate, save the best and the last checkpoints and the state."""
    from tvcaption.checkpoint import save_checkpoint

    config, state, paths, vocab = run.config, run.state, run.paths, run.data.vocab
    epoch = row["epoch"]
    t_val = time.perf_counter()
    val = validate(run.model, vocab, run.feats.val, run.data.val_tokens, config.batch_size, run.device,
                   config.seed, config.max_words, run.precision.autocast)
    row["val"] = {k: float(v) for k, v in val.items()}
    row["val_seconds"] = round(time.perf_counter() - t_val, 3)
    score = float(val[run.select])
    improved = is_better(run.select, score, state.best_score)
    metrics = {**row["val"], "split": "val", "clips": len(run.data.val)}
    if improved:
        state.best_score, state.best_epoch = score, epoch
        save_checkpoint(paths["best"], run.model, vocab, {**run.meta_base, "epoch": epoch, "metrics": metrics},
                        run.domain)
    row["best"] = improved
    state.history.append(row)
    save_checkpoint(paths["last"], run.model, vocab, {**run.meta_base, "epoch": epoch, "metrics": metrics},
                    run.domain)
    save_state(paths, run.model, run.optimizer, vocab, {
        "epoch": epoch, "step": state.step, "history": state.history, "features": run.feats.info,
        "best": {"key": run.select, "score": state.best_score, "epoch": state.best_epoch},
        "train_config": dataclasses.asdict(config), "data": run.meta_base["data"]})
    row["seconds"] = round(time.perf_counter() - t_epoch, 3)
    run.emit(TrainEvent("epoch", epoch=epoch, epochs=config.epochs, row=row, select=run.select))


def run_epochs(run: Run) -> int:
    """Train from ``run.state.start_epoch`` to ``config.epochs``; returns the epochs completed."""
    from torch.utils.data.distributed import DistributedSampler

    dist = run.dist
    sampler = DistributedSampler(range(len(run.feats.train)), num_replicas=dist.world, rank=dist.rank,
                                 shuffle=True, seed=run.config.seed, drop_last=False)
    run.model.train()
    completed = run.state.start_epoch - 1
    for epoch in range(run.state.start_epoch, run.config.epochs + 1):
        t_epoch = time.perf_counter()
        row = train_epoch(run, sampler, epoch, t_epoch)
        if dist.main:
            validate_and_save(run, row, t_epoch)
        if dist.world > 1:
            torch.distributed.barrier()
        completed = epoch
    return completed

