"""Greedy and beam search on tiny random models: agreement, optimality, stopping, options."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from tvcaption.decoding import (
    DecodingOptions,
    beam_search,
    decode,
    decode_hypotheses,
    greedy_search,
    score_sequences,
)
from tvcaption.model import CaptionModel, ModelDims
from tvcaption.vocab import Vocab

EOS = Vocab.EOS


def random_model(vocab_size: int = 12, eos_bias: float = 1.5, seed: int = 0) -> CaptionModel:
    """A random tiny model; the <eos> bias makes its captions end after a few words."""
    torch.manual_seed(seed)
    dims = ModelDims(feature_dim=6, grid=7, global_dim=5, hidden=16, attention=8, embedding=8,
                     vocab_size=vocab_size, frames=3)
    model = CaptionModel(dims).eval()
    with torch.no_grad():
        model.decoder.out.weight.mul_(8.0)  # peaky distributions: greedy and beam differ more often
        model.decoder.out.bias[EOS] += eos_bias
    return model


def clips(n: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 7, 7, 6, generator=g), torch.randn(n, 5, generator=g)


def test_options_are_frozen_and_validated():
    opts = DecodingOptions()
    assert (opts.beam_size, opts.max_len, opts.length_penalty) == (3, 30, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.beam_size = 5  # type: ignore[misc]
    with pytest.raises(ValueError):
        DecodingOptions(beam_size=0)


def test_beam_of_one_is_greedy():
    model = random_model()
    local, glob = clips()
    opts = DecodingOptions(beam_size=1, max_len=8, length_penalty=0.0)
    with torch.no_grad():
        enc = model.encode(local, glob)
        greedy, beam = greedy_search(model, enc, opts), beam_search(model, enc, opts)
    assert [h.tokens for h in beam] == [h.tokens for h in greedy]
    assert [h.finished for h in beam] == [h.finished for h in greedy]
    for a, b in zip(beam, greedy):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-9)


def test_hypothesis_log_probabilities_are_the_models():
    model = random_model()
    local, glob = clips()
    for beam_size in (1, 4):
        hyps = decode_hypotheses(model, local, glob, DecodingOptions(beam_size=beam_size, max_len=8, length_penalty=0.0))
        for row, h in enumerate(hyps):
            want = score_sequences(model, local[row:row + 1], glob[row:row + 1], [h.tokens], eos=h.finished)
            assert h.logprob == pytest.approx(want.item(), abs=1e-4)
            assert h.score == pytest.approx(h.logprob)


def test_beam_finds_a_caption_at_least_as_likely_as_greedy():
    local, glob = clips(n=8)
    gains = []
    for eos_bias in (0.0, 0.25, 1.5):  # long, mixed and short greedy captions
        model = random_model(eos_bias=eos_bias)
        greedy = decode_hypotheses(model, local, glob, DecodingOptions(beam_size=1, max_len=10, length_penalty=0.0))
        beam = decode_hypotheses(model, local, glob, DecodingOptions(beam_size=5, max_len=10, length_penalty=0.0))
        gains += [b.logprob - g.logprob for b, g in zip(beam, greedy)]
    assert min(gains) >= -1e-6
    assert max(gains) > 1e-3  # the models are ones where the two searches differ


def test_wide_beam_is_exhaustive_search():
    """With a beam wider than the number of prefixes, beam search returns the most likely caption."""
    model = random_model(vocab_size=7, eos_bias=0.5)  # words: ids 3-6 (<unk> included)
    local, glob = clips(n=3)
    max_len = 3
    words = [3, 4, 5, 6]
    found = decode_hypotheses(model, local, glob, DecodingOptions(beam_size=100, max_len=max_len, length_penalty=0.0))
    for row in range(3):
        lc, gl = local[row:row + 1], glob[row:row + 1]
        candidates = [(seq, True) for n in range(max_len) for seq in itertools.product(words, repeat=n)]
        candidates += [(seq, False) for seq in itertools.product(words, repeat=max_len)]  # cut at max_len
        best = max(candidates, key=lambda c: score_sequences(model, lc, gl, [c[0]], eos=c[1]).item())
        assert (found[row].tokens, found[row].finished) == best


def test_length_penalty_normalises_scores():
    model = random_model()
    local, glob = clips()
    for h in decode_hypotheses(model, local, glob, DecodingOptions(beam_size=3, max_len=8, length_penalty=0.7)):
        length = len(h.tokens) + (1 if h.finished else 0)
        assert h.score == pytest.approx(h.logprob / length**0.7)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_stops_at_eos_and_at_max_len(beam_size):
    local, glob = clips(n=2)
    opts = DecodingOptions(beam_size=beam_size, max_len=4)
    model = random_model(eos_bias=100.0)
    assert decode(model, local, glob, opts) == [[], []]
    model = random_model(eos_bias=-100.0)
    hyps = decode_hypotheses(model, local, glob, opts)
    assert all(len(h.tokens) == 4 and not h.finished for h in hyps)
    assert all(t not in (Vocab.PAD, Vocab.BOS, EOS) for h in hyps for t in h.tokens)


def test_encoder_runs_once_per_batch_and_mode_is_restored():
    model = random_model().train()
    calls = []
    model.encoder.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    local, glob = clips(n=4)
    first = decode(model, local, glob, DecodingOptions(beam_size=4, max_len=6))
    assert calls == [4]
    assert model.training
    assert decode(model, local, glob, DecodingOptions(beam_size=4, max_len=6)) == first  # no dropout while decoding


def test_batched_beam_search_equals_one_clip_at_a_time():
    model = random_model()
    local, glob = clips(n=4)
    opts = DecodingOptions(beam_size=3, max_len=8)
    batched = decode(model, local, glob, opts)
    single = [decode(model, local[i:i + 1], glob[i:i + 1], opts)[0] for i in range(4)]
    assert batched == single
