"""Are SynthTV's actions in the frozen backbone features, and can a position-blind encoder see them?

Trains three small direct classifiers (action label, not a caption) on the cached local features
of single-actor SynthTV training clips and reports held-out accuracy:

    grid-mean + GRU         each frame's 7x7 grid averaged, then a GRU over time (what LRCN sees)
    per-cell + max + GRU    a shared per-cell layer, max over the grid, GRU over time: weights shared
                            across positions, like L-STAP without a position bias (position-blind)
    3-D conv                convolutions over (time, 7, 7): sees where things are and how they move
    grid-mean changes + GRU the first, fed each frame's difference from the clip's mean frame
                            (what the captioner's ``temporal_delta`` option adds)

The first four see the features projected to 48 dimensions by a fixed random matrix (cheap on
CPU); the last two see each frame's full-size grid mean, as it is and minus the clip's mean frame.
If the 3-D conv is far above the position-blind ones, direction needs position; if all are far
above the captioner's action accuracy, the information is there and the captioner fails to use it.

    python bench/action_probe.py --data data/synthtv --cache features --clips 4000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def load(data: Path, cache: Path, clips: int, frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    from tvcaption.config import FeaturesConfig
    from tvcaption.data import read_dataset
    from tvcaption.features import load_backbone
    from tvcaption.clips import load_features, split_clips

    train = split_clips(read_dataset(data), "train")
    feats = load_features(train, load_backbone(FeaturesConfig(device="cpu")), frames, "mean", cache, in_ram=False)
    rows = [i for i, c in enumerate(train) if c.slots and not c.slots.get("second")][:clips]
    actions = sorted({train[i].slots["action"] for i in rows})
    y = torch.tensor([actions.index(train[i].slots["action"]) for i in rows])
    g = torch.Generator().manual_seed(0)
    proj = torch.randn(feats.local.shape[-1], 48, generator=g) / feats.local.shape[-1] ** 0.5
    parts, means = [], []
    for i in range(0, len(rows), 200):
        block = torch.from_numpy(feats.local.read(rows[i:i + 200]).astype(np.float32))
        parts.append(block @ proj)
        means.append(block.mean((2, 3)))  # full-size grid means (N, T, C), as they are
    x = torch.cat(parts)
    return (x - x.mean()) / x.std(), torch.cat(means), y, actions


class GridMeanGRU(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.gru, self.out = nn.GRU(48, 64, batch_first=True), nn.Linear(64, classes)

    def forward(self, x):
        return self.out(self.gru(x.mean((2, 3)))[0][:, -1])


class SeqGRU(nn.Module):
    """A GRU over per-frame vectors (N, T, D)."""

    def __init__(self, classes: int, dim: int):
        super().__init__()
        self.gru, self.out = nn.GRU(dim, 64, batch_first=True), nn.Linear(64, classes)

    def forward(self, x):
        return self.out(self.gru(x)[0][:, -1])


class CellMaxGRU(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.cell = nn.Sequential(nn.Linear(48, 64), nn.ReLU())
        self.gru, self.out = nn.GRU(64, 64, batch_first=True), nn.Linear(64, classes)

    def forward(self, x):
        return self.out(self.gru(self.cell(x).amax((2, 3)))[0][:, -1])


class Conv3D(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv3d(48, 64, 3, padding=1), nn.ReLU(), nn.Conv3d(64, 64, 3, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(64, classes))

    def forward(self, x):
        return self.net(x.permute(0, 4, 1, 2, 3))


def fit(model: nn.Module, x, y, n_train: int, epochs: int, seed: int) -> float:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n_train)
        for k in range(0, n_train, 64):
            b = perm[k:k + 64]
            loss = nn.functional.cross_entropy(model(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return float((model(x[n_train:]).argmax(-1) == y[n_train:]).float().mean())


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="SynthTV folder")
    ap.add_argument("--cache", type=Path, default=Path("features"), help="feature cache folder")
    ap.add_argument("--clips", type=int, default=4000, help="single-actor training clips used (80%% fit, 20%% held out)")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    x, grid_means, y, actions = load(args.data, args.cache, args.clips, args.frames)
    n_train = int(0.8 * len(y))
    result = {"clips": len(y), "held_out": len(y) - n_train, "actions": actions,
              "chance": float(np.bincount(y.numpy()).max() / len(y)), "accuracy": {}}
    changes = x - x.mean(dim=1, keepdim=True)
    C = grid_means.shape[-1]
    runs = (("grid-mean + GRU", lambda: GridMeanGRU(len(actions)), x),
            ("per-cell + max + GRU (position-blind)", lambda: CellMaxGRU(len(actions)), x),
            ("3-D conv (sees position)", lambda: Conv3D(len(actions)), x),
            ("grid-mean changes + GRU", lambda: GridMeanGRU(len(actions)), changes),
            (f"full {C}-d grid means + GRU", lambda: SeqGRU(len(actions), C), grid_means),
            (f"full {C}-d grid-mean changes + GRU", lambda: SeqGRU(len(actions), C),
             grid_means - grid_means.mean(dim=1, keepdim=True)))
    for name, make, inputs in runs:
        t = time.perf_counter()
        result["accuracy"][name] = fit(make(), inputs, y, n_train, args.epochs, seed=0)
        print(f"{name}: held-out action accuracy {result['accuracy'][name]:.3f} ({time.perf_counter() - t:.0f} s)",
              flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
