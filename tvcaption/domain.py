"""Is a scene like what the caption model was trained on? A distance to its training features.

The caption model only knows the pictures it was trained on: on anything else (the shipped
SynthTV model on real TV) it still writes a fluent sentence of its training grammar. This module
measures how far a scene's *pooled* backbone features (the mean of the local features over its
frames and the 7x7 grid, one C-vector) lie from the training clips' distribution:

* **Fit** (:meth:`DomainStats.fit`, at training time or by ``tvcaption model calibrate``): the
  mean and covariance of the training clips' pooled features, the covariance shrunk towards a
  scaled identity by the Ledoit-Wolf formula (C = 1280 dimensions from a few thousand clips is
  otherwise singular). Only its ``rank`` leading eigenvectors are kept; the remaining
  directions share one variance, the mean of the remaining eigenvalues (a probabilistic-PCA
  form of the same covariance), so the statistics are small enough to ship in the checkpoint.
* **Distance** (:meth:`DomainStats.distance`): the Mahalanobis distance under that covariance,
  divided by sqrt(C), so that training clips lie near 1.
* **Threshold** (:meth:`DomainStats.with_threshold`): a percentile (99th by default) of the
  distances of the *validation* clips, which the fit never saw. A scene farther than it is out
  of domain: its caption is stored but marked, hidden from search and left out of subtitles.

Statistics travel in the checkpoint (:mod:`tvcaption.checkpoint`): the arrays as tensors named
``domain.*`` in the weights file, the scalars under ``meta["domain"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

TENSOR_PREFIX = "domain."
METHOD = "mahalanobis-ledoit-wolf"
DEFAULT_RANK = 128
DEFAULT_PERCENTILE = 99.0


def pooled(local: Tensor | np.ndarray) -> np.ndarray:
    """Local features (B, T, grid, grid, C) -> their mean over frames and grid, float64 (B, C)."""
    if hasattr(local, "detach"):
        local = local.detach().float().cpu().numpy()
    array = np.asarray(local)
    if array.ndim != 5:
        raise ValueError(f"expected local features (B, T, H, W, C), got shape {array.shape}")
    return array.astype(np.float64, copy=False).mean(axis=(1, 2, 3))


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, shrunk covariance, shrinkage) of rows ``x`` (N, D): the Ledoit-Wolf (2004) estimate
    (1 - s) S + s mu I, with mu = trace(S) / D and the shrinkage s that minimises the expected
    squared error."""
    n, d = x.shape
    mean = x.mean(axis=0)
    xc = x - mean
    sample = xc.T @ xc / n
    mu = float(np.trace(sample)) / d
    delta = float(((sample - mu * np.eye(d)) ** 2).sum()) / d
    norms4 = float(((xc ** 2).sum(axis=1) ** 2).sum())  # sum over clips of |x|^4
    beta_bar = (norms4 / n - float((sample ** 2).sum())) / (n * d)
    beta = min(beta_bar, delta)
    shrink = 0.0 if delta == 0 else beta / delta
    cov = (1.0 - shrink) * sample + shrink * mu * np.eye(d)
    return mean, cov, shrink


@dataclass(frozen=True)
class DomainStats:
    """The training distribution of pooled features, and the out-of-domain threshold."""

    mean: np.ndarray  # (C,)
    components: np.ndarray  # (k, C) leading eigenvectors of the shrunk covariance, as rows
    variances: np.ndarray  # (k,) their eigenvalues
    residual: float  # the variance of every other direction (mean of the other eigenvalues)
    threshold: float | None = None  # distances above it are out of domain; None: not calibrated
    info: dict[str, Any] | None = None  # how it was made: clips, shrinkage, percentile, ...

    @classmethod
    def fit(cls, features: np.ndarray, rank: int = DEFAULT_RANK) -> DomainStats:
        """Statistics of the pooled training features (N, C), N >= 2."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"need pooled features (N >= 2, C), got shape {x.shape}")
        mean, cov, shrink = ledoit_wolf(x)
        values, vectors = np.linalg.eigh(cov)  # ascending
        values, vectors = values[::-1], vectors[:, ::-1]
        k = max(1, min(rank, x.shape[1] - 1))
        floor = max(float(values[0]) * 1e-9, 1e-12)
        residual = max(float(values[k:].mean()), floor)
        info = {"method": METHOD, "train_clips": len(x), "dims": int(x.shape[1]), "rank": int(k),
                "shrinkage": round(float(shrink), 6)}
        return cls(mean, vectors[:, :k].T.copy(), np.maximum(values[:k], residual), residual, None, info)

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance / sqrt(C) of pooled features (N, C) or (C,): (N,) or a float."""
        x = np.asarray(features, dtype=np.float64)
        single = x.ndim == 1
        xc = np.atleast_2d(x) - self.mean
        proj = xc @ self.components.T  # (N, k)
        inside = (proj ** 2 / self.variances).sum(axis=1)
        outside = np.maximum((xc ** 2).sum(axis=1) - (proj ** 2).sum(axis=1), 0.0) / self.residual
        d = np.sqrt((inside + outside) / x.shape[-1])
        return float(d[0]) if single else d

    def with_threshold(self, val_features: np.ndarray, percentile: float = DEFAULT_PERCENTILE) -> DomainStats:
        """These statistics with the threshold at ``percentile`` of the validation distances."""
        d = self.distance(np.atleast_2d(val_features))
        threshold = float(np.percentile(d, percentile))
        info = {**(self.info or {}), "percentile": float(percentile), "val_clips": len(d),
                "val_median": round(float(np.median(d)), 4), "threshold": round(threshold, 4)}
        return replace(self, threshold=threshold, info=info)

    def out_of_domain(self, distance: float) -> bool | None:
        """True beyond the threshold; None when there is no threshold."""
        return None if self.threshold is None else bool(distance > self.threshold)

    # --- in a checkpoint ----------------------------------------------------------------------

    def tensors(self) -> dict[str, Tensor]:
        """The arrays as float32 tensors named ``domain.*`` (for the weights file)."""
        import torch

        arrays = {"mean": self.mean, "components": self.components, "variances": self.variances}
        return {TENSOR_PREFIX + k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in arrays.items()}

    def meta(self) -> dict[str, Any]:
        """The scalars, JSON-able (for the checkpoint's ``meta["domain"]``)."""
        return {**(self.info or {}), "residual": self.residual, "threshold": self.threshold}

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, Tensor], meta: dict[str, Any] | None) -> DomainStats | None:
        """The statistics saved by :meth:`tensors` and :meth:`meta`, or None if there are none."""
        names = [TENSOR_PREFIX + k for k in ("mean", "components", "variances")]
        if not meta or not all(n in tensors for n in names):
            return None
        mean, components, variances = (tensors[n].double().numpy() for n in names)
        if components.ndim != 2 or components.shape != (len(variances), len(mean)):
            raise ValueError(f"domain statistics of mismatched shapes {tuple(mean.shape)}, "
                             f"{tuple(components.shape)}, {tuple(variances.shape)}")
        threshold = meta.get("threshold")
        info = {k: v for k, v in meta.items() if k not in ("residual", "threshold")}
        return cls(mean, components, variances, float(meta["residual"]),
                   None if threshold is None else float(threshold), info)


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of a score meant to be higher for ``positives`` (ties count half)."""
    neg, pos = np.asarray(negatives, dtype=np.float64), np.asarray(positives, dtype=np.float64)
    if not len(neg) or not len(pos):
        return float("nan")
    allv = np.concatenate([neg, pos])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    i = 0
    while i < len(allv):  # average ranks over ties
        j = i
        while j + 1 < len(allv) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = ranks[len(neg):].sum()
    return float((rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(neg) * len(pos)))


def split_pooled(feats: Any, chunk: int = 256) -> np.ndarray:
    """Pooled features (N, C) of a :class:`~tvcaption.clips.SplitFeatures` (in RAM or memory-mapped)."""
    n = len(feats)
    parts = []
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        local = feats.local[lo:hi] if feats.in_ram else feats.local.read(np.arange(lo, hi))
        parts.append(pooled(local))
    return np.concatenate(parts) if parts else np.empty((0, 0))


def fit_splits(train: Any, val: Any | None, percentile: float = DEFAULT_PERCENTILE,
               rank: int = DEFAULT_RANK) -> DomainStats:
    """Statistics of the training split's features, with the threshold from the validation split
    (without one, from the training split itself, which :attr:`DomainStats.info` records)."""
    stats = DomainStats.fit(split_pooled(train), rank)
    if val is not None and len(val) >= 2:
        return stats.with_threshold(split_pooled(val), percentile)
    calibrated = stats.with_threshold(split_pooled(train), percentile)
    return replace(calibrated, info={**(calibrated.info or {}), "threshold_from": "train"})
