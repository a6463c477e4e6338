"""The L-STAP model against its equations (paper eqs 1-28), on tiny dims."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from tvcaption.model import CaptionModel, ModelDims, pad_tokens
from tvcaption.model.matching import ranking_loss
from tvcaption.vocab import Vocab

B, T, GRID, C, G = 2, 3, 7, 6, 5


def tiny(**kw) -> ModelDims:
    base = dict(feature_dim=C, grid=GRID, global_dim=G, hidden=8, attention=4, embedding=5, vocab_size=11, frames=T)
    return ModelDims(**{**base, **kw})


def features(seed: int = 0, batch: int = B, frames: int = T) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, GRID, GRID, C, generator=g), torch.randn(batch, G, generator=g)


def hand_encoder(enc, local, glob, pooling):
    """Eqs 1-12 written out position by position, one frame at a time, from the raw weights."""
    H = enc.dims.hidden
    W_x, b_x, W_h = enc.x_proj.weight, enc.x_proj.bias, enc.h_proj.weight
    h = torch.tanh(glob @ enc.init_h.weight.T + enc.init_h.bias)  # eq 12
    c = torch.tanh(glob @ enc.init_c.weight.T + enc.init_c.bias)  # eq 11
    x = local.reshape(local.shape[0], local.shape[1], -1, local.shape[-1])
    P = x.shape[2]
    states, alphas = [], []
    for t in range(x.shape[1]):
        h_loc, c_loc, scores = [], [], []
        for p in range(P):
            xp = x[:, t, p]
            z = xp @ W_x.T + b_x + h @ W_h.T
            i, f, g, o = (z[:, k * H:(k + 1) * H] for k in range(4))  # eqs 1-3, then 4-5
            cp = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            c_loc.append(cp)
            h_loc.append(torch.sigmoid(o) * torch.tanh(cp))
            if pooling == "att":  # eq 9
                a = torch.tanh(xp @ enc.att_x.weight.T + enc.att_x.bias + h @ enc.att_h.weight.T)
                scores.append((a @ enc.att_w.weight.T).squeeze(-1))
        if pooling == "att":
            s = torch.stack(scores, 1)
            alpha = torch.exp(s) / torch.exp(s).sum(1, keepdim=True)  # eq 10
        else:
            alpha = torch.full((x.shape[0], P), 1.0 / P)  # eq 8
        h = sum(alpha[:, p:p + 1] * h_loc[p] for p in range(P))  # eq 7
        c = sum(alpha[:, p:p + 1] * c_loc[p] for p in range(P))  # eq 6
        states.append(h)
        alphas.append(alpha)
    return torch.stack(states, 1), h, c, torch.stack(alphas, 1)


# --- encoder, eqs 1-12 ---------------------------------------------------------------------------

def test_initial_state_is_tanh_of_linear_in_global_descriptor():
    model = CaptionModel(tiny())
    _, glob = features()
    h0, c0 = model.encoder.initial_state(glob)
    enc = model.encoder
    torch.testing.assert_close(h0, torch.tanh(glob @ enc.init_h.weight.T + enc.init_h.bias))
    torch.testing.assert_close(c0, torch.tanh(glob @ enc.init_c.weight.T + enc.init_c.bias))


@pytest.mark.parametrize("pooling", ["avg", "att"])
def test_encoder_matches_equations_computed_by_hand(pooling):
    model = CaptionModel(tiny(pooling=pooling))
    local, glob = features()
    with torch.no_grad():
        out = model.encode(local, glob)
        states, h, c, alpha = hand_encoder(model.encoder, local, glob, pooling)
    torch.testing.assert_close(out.states, states)
    torch.testing.assert_close(out.h, h)
    torch.testing.assert_close(out.c, c)
    torch.testing.assert_close(out.alpha, alpha)
    assert out.states.shape == (B, T, 8) and out.alpha.shape == (B, T, GRID * GRID)


def test_avg_pooled_state_is_the_mean_of_the_local_states():
    """One step with uniform alpha: h(1), c(1) are the plain means of the 49 local LSTM states."""
    model = CaptionModel(tiny(pooling="avg"))
    local, glob = features(frames=1)
    enc = model.encoder
    with torch.no_grad():
        out = model.encode(local, glob)
        h0, c0 = enc.initial_state(glob)
        cell = torch.nn.LSTMCell(C, 8)  # PyTorch's own LSTM cell with the encoder's weights
        cell.weight_ih.copy_(enc.x_proj.weight)
        cell.bias_ih.copy_(enc.x_proj.bias)
        cell.weight_hh.copy_(enc.h_proj.weight)
        cell.bias_hh.zero_()
        cells = [cell(local[:, 0, i, j], (h0, c0)) for i in range(GRID) for j in range(GRID)]
    torch.testing.assert_close(out.h, torch.stack([h for h, _ in cells]).mean(0))
    torch.testing.assert_close(out.c, torch.stack([c for _, c in cells]).mean(0))
    torch.testing.assert_close(out.alpha, torch.full((B, 1, 49), 1 / 49))


def test_attention_weights_sum_to_one_and_follow_the_previous_state():
    model = CaptionModel(tiny(pooling="att"))
    local, glob = features()
    local[:, 1] = local[:, 0]  # the same frame twice: only h(t-1) differs between t=1 and t=2
    with torch.no_grad():
        alpha = model.encode(local, glob).alpha
        alpha_other_init = model.encode(local, glob + 1.0).alpha
    torch.testing.assert_close(alpha.sum(-1), torch.ones(B, T))
    assert (alpha > 0).all()
    assert not torch.allclose(alpha[:, 0], alpha[:, 1], atol=1e-5)
    assert not torch.allclose(alpha[:, 0], alpha_other_init[:, 0], atol=1e-5)


def test_lrcn_baseline_is_a_standard_lstm_over_grid_means():
    model = CaptionModel(tiny(pooling="mean"))
    local, glob = features()
    enc = model.encoder
    lstm = torch.nn.LSTM(C, 8, batch_first=True)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(enc.x_proj.weight)
        lstm.bias_ih_l0.copy_(enc.x_proj.bias)
        lstm.weight_hh_l0.copy_(enc.h_proj.weight)
        lstm.bias_hh_l0.zero_()
        h0, c0 = enc.initial_state(glob)
        ref, (hT, cT) = lstm(local.mean(dim=(2, 3)), (h0[None], c0[None]))
        out = model.encode(local, glob)
    torch.testing.assert_close(out.states, ref)
    torch.testing.assert_close(out.h, hT[0])
    torch.testing.assert_close(out.c, cT[0])
    assert not hasattr(enc, "att_x")


def test_wrong_feature_shape_is_a_clear_error():
    model = CaptionModel(tiny())
    local, glob = features()
    with pytest.raises(ValueError, match="local features"):
        model.encode(local[..., :-1], glob)
    with pytest.raises(ValueError, match="global descriptor"):
        model.encode(local, glob[:, :-1])


# --- decoder, eqs 13-25 --------------------------------------------------------------------------

def test_decoder_starts_from_encoder_state_and_attention_sums_to_one_over_frames():
    model = CaptionModel(tiny()).eval()
    local, glob = features()
    tokens, _ = pad_tokens([[1, 4, 5, 6, 2], [1, 7, 2]])
    with torch.no_grad():
        enc = model.encode(local, glob)
        state, memory = model.start(enc)
        assert state.h is enc.h and state.c is enc.c  # eqs 13-14
        logits, betas = model.decoder(enc, tokens[:, :-1])
        assert betas.shape == (B, 4, T)
        torch.testing.assert_close(betas.sum(-1), torch.ones(B, 4))
        stepped = []
        for l in range(4):  # teacher forcing equals step-by-step decoding
            out = model.step(tokens[:, l], state, memory)
            state = out.state
            stepped.append(out.logits)
            torch.testing.assert_close(out.beta, betas[:, l])
        # eq 16 by hand at l = 1, from h^d(0) = h(T)
        d = model.decoder
        s = torch.tanh(enc.states @ d.att_e.weight.T + d.att_e.bias + (enc.h @ d.att_h.weight.T)[:, None]) @ d.att_w.weight.T
        torch.testing.assert_close(betas[:, 0], torch.softmax(s.squeeze(-1), -1))
    torch.testing.assert_close(torch.stack(stepped, 1), logits)
    torch.testing.assert_close(model(local, glob, tokens), logits)


def hand_decoder(dec, encoded, inputs):
    """Eqs 13-25 written out step by step, frame by frame, from the raw weights (no nn.LSTMCell, no
    nn.Linear): teacher forcing on ``inputs`` = y(0..L-1) (B, L). Returns the output layer's
    logits W_d h^d(l) + b_d, the word distributions y~(l) of eq 25 and the attention beta(l).

    The paper's eqs 20-24 (the LSTM cell) are lost in its text; docs/DESIGN.md says: a standard
    LSTM cell on x^d(l) and h^d(l-1), gates i, f, g, o (PyTorch's row order in the weights).
    Eq 17 as printed sums over k = 1..L; the softmax runs over the frames t = 1..T (DESIGN.md).
    """
    H, V = dec.dims.hidden, dec.dims.vocab_size
    W_emb = dec.embed.weight  # (V, E), eq 18
    W_be, b_b, W_bh, w_b = dec.att_e.weight, dec.att_e.bias, dec.att_h.weight, dec.att_w.weight[0]  # eq 16
    W_x, W_hh, b = dec.cell.weight_ih, dec.cell.weight_hh, dec.cell.bias_ih + dec.cell.bias_hh  # eqs 20-24
    W_d, b_d = dec.out.weight, dec.out.bias  # eq 25
    h_enc = encoded.states  # h(1..T), (B, T, H)
    frames = h_enc.shape[1]
    c, h = encoded.c, encoded.h  # eqs 13-14: c^d(0) = c(T), h^d(0) = h(T)
    logits, probs, betas = [], [], []
    for l in range(inputs.shape[1]):
        scores = torch.stack([torch.tanh(h_enc[:, t] @ W_be.T + h @ W_bh.T + b_b) @ w_b
                              for t in range(frames)], 1)  # eq 16, (B, T)
        beta = torch.exp(scores) / torch.exp(scores).sum(1, keepdim=True)  # eq 17
        phi = sum(beta[:, t:t + 1] * h_enc[:, t] for t in range(frames))  # eq 15, (B, H)
        y_prev = torch.nn.functional.one_hot(inputs[:, l], V).to(W_emb.dtype)  # y(l-1) as a one-hot vector
        w = y_prev @ W_emb  # eq 18
        x = torch.cat([w, phi], 1)  # eq 19
        z = x @ W_x.T + h @ W_hh.T + b
        i, f, g, o = (z[:, k * H:(k + 1) * H] for k in range(4))
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)  # eqs 20-24: the gates,
        c = f * c + i * g  # the memory cell c^d(l)
        h = o * torch.tanh(c)  # and the hidden state h^d(l)
        logit = h @ W_d.T + b_d  # eq 25 (dropout before W_d is off in eval mode)
        logits.append(logit)
        probs.append(torch.exp(logit) / torch.exp(logit).sum(1, keepdim=True))  # eq 25: y~(l)
        betas.append(beta)
    return torch.stack(logits, 1), torch.stack(probs, 1), torch.stack(betas, 1)


def test_decoder_matches_equations_computed_by_hand():
    """Eqs 13-25 by hand against both of the decoder's paths (teacher forcing and step by step)."""
    from tvcaption.model.lstap import Encoded

    model = CaptionModel(tiny()).eval()
    g = torch.Generator().manual_seed(3)
    H = model.dims.hidden
    encoded = Encoded(states=torch.randn(B, T, H, generator=g), h=torch.randn(B, H, generator=g),
                      c=torch.randn(B, H, generator=g), alpha=torch.full((B, T, GRID * GRID), 1 / GRID**2))
    inputs = torch.tensor([[1, 4, 5, 6, 0], [1, 7, 10, 3, 9]])  # y(0..4): <bos> first; a <pad> (0) too
    with torch.no_grad():
        for p in model.decoder.parameters():  # default init leaves some biases tiny; make every term count
            p.add_(0.3 * torch.randn(p.shape, generator=g))
        model.decoder.embed.weight[0] = 0  # <pad> embeds to zeros, as nn.Embedding(padding_idx=0) keeps it
        want_logits, want_probs, want_betas = hand_decoder(model.decoder, encoded, inputs)
        logits, betas = model.decoder(encoded, inputs)
        state, memory = model.start(encoded)
        stepped = []
        for l in range(inputs.shape[1]):
            out = model.step(inputs[:, l], state, memory)
            state = out.state
            stepped.append((out.logits, out.beta))
    torch.testing.assert_close(logits, want_logits)
    torch.testing.assert_close(betas, want_betas)
    torch.testing.assert_close(torch.softmax(logits, -1), want_probs)
    torch.testing.assert_close(torch.stack([s for s, _ in stepped], 1), want_logits)
    torch.testing.assert_close(torch.stack([b for _, b in stepped], 1), want_betas)
    # the attention really moves with the decoder state: it differs from step to step
    assert not torch.allclose(want_betas[:, 0], want_betas[:, 1], atol=1e-4)

    # in training mode dropout acts only before W_d (eq 25): the recurrence and its attention are the same
    model.train()
    with torch.no_grad():
        torch.manual_seed(0)
        train_logits, train_betas = model.decoder(encoded, inputs)
    torch.testing.assert_close(train_betas, want_betas)
    assert not torch.allclose(train_logits, want_logits)  # dropout 0.5 did act on the output layer's input


# --- losses, eqs 26-28 ---------------------------------------------------------------------------

@pytest.mark.parametrize("pooling", ["att", "avg", "mean"])
def test_every_parameter_gets_a_gradient_from_the_combined_loss(pooling):
    model = CaptionModel(tiny(pooling=pooling, margin=2.0))  # margin 2: every hinge is active
    local, glob = features(batch=3)
    tokens, lengths = pad_tokens([[1, 4, 5, 6, 2], [1, 7, 2], [1, 8, 9, 2]])
    model.loss(local, glob, tokens, lengths).total.backward()
    names = {n for n, _ in model.named_parameters()}
    assert ("encoder.att_x.weight" in names) == (pooling == "att")
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_ranking_loss_zero_when_pairs_beat_negatives_by_the_margin():
    v = torch.eye(3, 4)  # matched pairs: cosine 1; negatives: cosine 0 < 1 - 0.2
    assert ranking_loss(v, v.clone(), margin=0.2).item() == 0.0
    assert ranking_loss(v, v.clone(), margin=1.5).item() > 0  # margin larger than the gap


def test_ranking_loss_is_the_hardest_negative_both_ways():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    video, sentence = torch.stack([e1, e2]), torch.stack([e1, e1])  # S = [[1, 1], [0, 0]]
    # sentence negatives: V0 vs Y1: 0.2 - 1 + 1; V1 vs Y0: 0.2 - 0 + 0
    # video negatives:    Y0 vs V1: [0.2 - 1 + 0]_+ = 0; Y1 vs V0: 0.2 - 0 + 1
    loss = ranking_loss(video, sentence, margin=0.2)
    torch.testing.assert_close(loss, torch.tensor((0.2 + 0.2 + 0.0 + 1.2) / 2))
    assert ranking_loss(video, sentence, 0.2, groups=torch.tensor([7, 7])).item() == 0.0  # same clip: no negatives
    assert ranking_loss(video[:1], sentence[:1], 0.2).item() == 0.0  # a batch of one has no negatives


def test_caption_loss_ignores_padding_and_matches_cross_entropy():
    model = CaptionModel(tiny(matching=False)).eval()
    local, glob = features()
    tokens, lengths = pad_tokens([[1, 4, 5, 6, 2], [1, 7, 2]])
    padded = torch.cat([tokens, torch.zeros(B, 3, dtype=torch.long)], 1)
    with torch.no_grad():
        a, b = model.loss(local, glob, tokens, lengths), model.loss(local, glob, padded)
        logits = model(local, glob, tokens)
        logp = torch.log_softmax(logits, -1)
        want = -(logp[0, torch.arange(4), tokens[0, 1:]].sum() + logp[1, torch.arange(2), tokens[1, 1:3]].sum()) / 6
    torch.testing.assert_close(a.caption, want)
    torch.testing.assert_close(b.caption, a.caption)
    assert a.matching.item() == 0.0 and torch.equal(a.total, a.caption)
    assert model.sentence is None and not any(n.startswith("sentence.") for n, _ in model.named_parameters())


def test_sentence_embedding_is_taken_at_the_true_length():
    model = CaptionModel(tiny())
    words = torch.tensor([[4, 5, 2, 0, 0], [6, 7, 8, 9, 2]])
    with torch.no_grad():
        emb = model.decoder.embed(words)
        psi = model.sentence(emb, torch.tensor([3, 5]))
        alone = model.sentence(emb[:1, :3], torch.tensor([3]))
    torch.testing.assert_close(psi[:1], alone)


def test_total_loss_weights_matching_by_lambda():
    model = CaptionModel(tiny(dropout=0.0, matching_weight=0.4))
    local, glob = features()
    tokens, lengths = pad_tokens([[1, 4, 5, 2], [1, 7, 2]])
    losses = model.loss(local, glob, tokens, lengths)
    torch.testing.assert_close(losses.total, losses.caption + 0.4 * losses.matching)
    assert losses.matching.item() > 0


# --- dims ----------------------------------------------------------------------------------------

def test_dims_defaults_are_the_papers_and_round_trip():
    d = ModelDims()
    assert (d.hidden, d.attention, d.embedding, d.feature_dim, d.global_dim, d.frames) == (1024, 256, 300, 2048, 2048, 30)
    assert (d.pooling, d.matching, d.dropout, d.margin, d.matching_weight) == ("att", True, 0.5, 0.2, 0.4)
    assert ModelDims.from_dict(d.to_dict()) == d
    assert ModelDims.from_dict({"margin": 1}).margin == 1.0
    with pytest.raises(ValueError, match="unknown"):
        ModelDims.from_dict({"hiden": 3})
    with pytest.raises(ValueError, match="pooling"):
        ModelDims(pooling="max")


# --- end to end ----------------------------------------------------------------------------------

def test_tiny_model_overfits_two_clips():
    from tvcaption.decoding import DecodingOptions, decode

    captions = ["a man is playing a guitar", "two brown dogs run on the beach"]
    vocab = Vocab.build(captions)
    dims = ModelDims(feature_dim=16, global_dim=8, hidden=48, attention=16, embedding=16,
                     vocab_size=len(vocab), frames=4, dropout=0.1)
    torch.manual_seed(0)
    model = CaptionModel(dims)
    g = torch.Generator().manual_seed(1)
    local, glob = torch.randn(2, 4, 7, 7, 16, generator=g), torch.randn(2, 8, generator=g)
    tokens, lengths = pad_tokens([vocab.encode(c) for c in captions])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    start = time.perf_counter()
    first = None
    for _ in range(300):
        losses = model.loss(local, glob, tokens, lengths)
        opt.zero_grad()
        losses.total.backward()
        opt.step()
        first = first if first is not None else losses.caption.item()
    assert time.perf_counter() - start < 60
    assert losses.caption.item() < 0.01 * first, (first, losses.caption.item())
    for beam in (1, 3):
        got = [vocab.decode(ids) for ids in decode(model, local, glob, DecodingOptions(beam_size=beam))]
        assert got == captions
    assert model.training  # decode restored the caller's mode


def test_low_rank_input_is_eq1_with_factored_wx():
    """input_rank r: the encoder equals a full-rank one whose W_x (and W_ax) are W'_x R."""
    import torch

    from tvcaption.model.dims import ModelDims
    from tvcaption.model.lstap import LSTAPEncoder

    torch.manual_seed(0)
    low = LSTAPEncoder(ModelDims(feature_dim=12, global_dim=6, hidden=8, attention=5, vocab_size=9, input_rank=4))
    full = LSTAPEncoder(ModelDims(feature_dim=12, global_dim=6, hidden=8, attention=5, vocab_size=9))
    state = {k: v for k, v in low.state_dict().items() if not k.startswith("x_reduce")}
    R = low.x_reduce.weight
    state["x_proj.weight"] = low.x_proj.weight @ R
    state["att_x.weight"] = low.att_x.weight @ R
    full.load_state_dict(state)
    local, glob = torch.randn(2, 3, 7, 7, 12), torch.randn(2, 6)
    a, b = low(local, glob), full(local, glob)
    torch.testing.assert_close(a.states, b.states, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.alpha, b.alpha, rtol=1e-4, atol=1e-5)


def test_position_bias_lets_the_encoder_tell_where_things_are():
    """Without it L-STAP is blind to where a feature sits (moving an object across the grid gives the
    same states); with it (learned p_ij added to x_ij) the same object at another cell gives other states."""
    import torch

    from tvcaption.model.dims import ModelDims
    from tvcaption.model.lstap import LSTAPEncoder

    torch.manual_seed(0)
    local = torch.zeros(1, 2, 7, 7, 12)
    local[0, 0, 1, 1] = local[0, 1, 1, 5] = 3.0  # an object moving right
    mirrored = torch.zeros(1, 2, 7, 7, 12)
    mirrored[0, 0, 1, 5] = mirrored[0, 1, 1, 1] = 3.0  # the same object moving left
    glob = torch.randn(1, 6)
    for pooling in ("att", "avg"):
        dims = ModelDims(feature_dim=12, global_dim=6, hidden=8, attention=5, vocab_size=9, pooling=pooling)
        blind = LSTAPEncoder(dims)
        torch.testing.assert_close(blind(local, glob).h, blind(mirrored, glob).h)
        seeing = LSTAPEncoder(dataclasses.replace(dims, position_bias=True))
        with torch.no_grad():
            seeing.position.normal_()
        assert not torch.allclose(seeing(local, glob).h, seeing(mirrored, glob).h, atol=1e-4)
        assert seeing.position.shape == (49, 12)
    mean = LSTAPEncoder(ModelDims(feature_dim=12, global_dim=6, hidden=8, attention=5, vocab_size=9, pooling="mean",
                                  position_bias=True))
    assert not hasattr(mean, "position")  # the grid is averaged before the LSTM: nothing to place


def test_temporal_delta_feeds_each_feature_beside_its_change():
    """temporal_delta: the encoder sees [x ; x - mean_t x]; for a static clip the second half is zero, so the
    encoder then equals one whose weights for the change half are anything (here: zeroed)."""
    import torch

    from tvcaption.model.dims import ModelDims
    from tvcaption.model.lstap import LSTAPEncoder

    torch.manual_seed(0)
    for pooling in ("att", "mean"):
        dims = ModelDims(feature_dim=12, global_dim=6, hidden=8, attention=5, vocab_size=9, pooling=pooling,
                         temporal_delta=True, input_rank=4)
        enc = LSTAPEncoder(dims)
        assert enc.x_reduce.weight.shape == (4, 24)
        frame = torch.randn(1, 1, 7, 7, 12)
        static, glob = frame.expand(1, 3, 7, 7, 12).clone(), torch.randn(1, 6)
        before = enc(static, glob).states
        with torch.no_grad():
            enc.x_reduce.weight[:, 12:] = 0  # the change half: static clips never use it
        torch.testing.assert_close(enc(static, glob).states, before)
        moving = static.clone()
        moving[0, 2] += 1.0  # the last frame changes: now the change half matters
        restored = LSTAPEncoder(dims)
        restored.load_state_dict({k: v.clone() for k, v in enc.state_dict().items()})
        with torch.no_grad():
            restored.x_reduce.weight[:, 12:] = 1.0
        assert not torch.allclose(enc(moving, glob).states, restored(moving, glob).states)


@pytest.mark.parametrize("pooling,autocast", [("att", False), ("avg", False), ("mean", False), ("att", True)])
def test_temporal_delta_with_low_rank_equals_the_explicit_concatenation(pooling, autocast):
    """The encoder applies R to [x ; x - mean_t x] without building the concatenation; the result is R applied
    to it, computed here the direct way (float rounding apart). Under bf16 autocast (training) it builds the
    concatenation, so the small change x - m is not the difference of two rounded products: exactly equal."""
    import contextlib

    import torch

    from tvcaption.model.dims import ModelDims
    from tvcaption.model.lstap import LSTAPEncoder

    torch.manual_seed(0)
    dims = ModelDims(feature_dim=12, global_dim=6, hidden=8, attention=5, vocab_size=9, pooling=pooling,
                     temporal_delta=True, input_rank=4, position_bias=True)
    enc = LSTAPEncoder(dims)
    local, glob = torch.randn(2, 5, 7, 7, 12), torch.randn(2, 6)
    local = local + 20.0  # features far from zero: what makes the fold's rounding show in bf16
    mode = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if autocast else contextlib.nullcontext
    with mode():
        got = enc(local, glob)

        x = local.reshape(2, 5, 49, 12)
        x = torch.cat([x, x - x.mean(dim=1, keepdim=True)], dim=-1)
        if pooling == "mean":
            x = x.mean(dim=2, keepdim=True)
        reduced = enc.x_reduce(x)
        enc.x_reduce.forward = lambda _: reduced  # the reference input, fed through the same recurrence
        enc.dims = dataclasses.replace(dims, temporal_delta=False)
        want = enc(local.new_zeros(2, 5, 7, 7, 24), glob)
    if autocast:
        assert torch.equal(got.states, want.states) and torch.equal(got.alpha, want.alpha)
    else:
        torch.testing.assert_close(got.states, want.states, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.alpha, want.alpha, rtol=1e-4, atol=1e-5)
