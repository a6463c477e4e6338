"""Video encoder: L-STAP (paper eqs 1-12) and the LRCN mean-pooling baseline.

Shapes: B clips, T frames, P = grid*grid positions, C feature channels, H hidden, A attention.

L-STAP runs one LSTM step per frame. At frame t every position ij gets its own gates from its
own input x(t)_ij but the *shared* previous state (h(t-1), c(t-1)) (eqs 1-5), giving P local
states (h(t)_ij, c(t)_ij); these are pooled with weights alpha(t)_ij into the next shared state
(eqs 6-7): uniform 1/P ("avg", eq 8) or soft attention on x(t)_ij and h(t-1) ("att", eqs 9-10).

The input projections W_*x x(t)_ij (and W_ax x(t)_ij) for all positions and frames are one
batched matrix product before the loop; only W_*h h(t-1) is recurrent.

Optional low-rank input projection (``input_rank = r > 0``): every input matrix W_*x and W_ax is
factored as W'_*x R through one shared learned R (C -> r). Eqs 1-10 are unchanged (W_*x just has
rank <= r); the up-front matmul costs B*T*P*(C*r + r*(4H+A)) instead of B*T*P*C*(4H+A), which is
what makes CPU training of the default model practical (about 2-4x faster at C = 1280, H = 256).

Optional position bias (``position_bias``, not in the paper): a learned vector p_ij per grid
position is added to x(t)_ij (after R when ``input_rank`` is set), i.e. a per-position bias in
eqs 1-4 and 9. The LSTM weights are shared across positions and eqs 6-7 pool the local states,
so without it h(t) knows *what* was attended but not *where*: "moves left" and "moves right"
then differ only through the CNN's weak border effects. Ignored by "mean" (the grid is averaged).

Optional temporal delta (``temporal_delta``, not in the paper): each local feature is fed as
[x(t)_ij ; x(t)_ij - mean_t x(t)_ij], the feature beside its change from the clip's average at
that position. Frozen ImageNet features are dominated by what is in view; what happens is a
small change on top (bench/action_probe.py: a GRU on grid means reads SynthTV's action in 30% of
clips from the raw features, 73% from the changes). Applies to "mean" too (before its pooling).

The LRCN baseline ("mean") averages each frame's grid first and runs a standard LSTM over frames.
That is the same recurrence with a single position whose weight is 1, so it shares the code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tvcaption.model.dims import ModelDims


@dataclass(frozen=True)
class Encoded:
    """What the encoder hands to the decoder and to the matching loss."""

    states: Tensor  # (B, T, H) pooled hidden states h(1..T), attended by the decoder (eq 15)
    h: Tensor  # (B, H) h(T): initial decoder hidden state (eq 14) and phi(V) (eq 27)
    c: Tensor  # (B, H) c(T): initial decoder memory cell (eq 13)
    alpha: Tensor  # (B, T, P) pooling weights alpha(t)_ij, rows sum to 1 (P = 1 for "mean")


class LSTAPEncoder(nn.Module):
    """Eqs 1-12. Gate order in ``x_proj``/``h_proj`` rows is PyTorch's: i, f, g (= c~), o."""

    def __init__(self, dims: ModelDims):
        super().__init__()
        self.dims = dims
        H, A = dims.hidden, dims.attention
        # eqs 11-12: c0 = tanh(W^e_c e(V) + b^e_c), h0 = tanh(W^e_h e(V) + b^e_h)
        self.init_c = nn.Linear(dims.global_dim, H)
        self.init_h = nn.Linear(dims.global_dim, H)
        C = dims.feature_dim * (2 if dims.temporal_delta else 1)
        if dims.input_rank:
            self.x_reduce = nn.Linear(C, dims.input_rank, bias=False)  # R: shared factor of every W_*x
            C = dims.input_rank
        if dims.position_bias and dims.pooling != "mean":
            # p_ij, added to x(t)_ij; random at the start so positions differ from step one (started at
            # zero, Adam left them at ~1% of |x| after 5 epochs and the model stayed position-blind)
            self.position = nn.Parameter(torch.randn(dims.grid * dims.grid, C))
        # eqs 1-4: [W_ix; W_fx; W_cx; W_ox] x + [b_i; b_f; b_c; b_o]  and  [W_ih; ...] h(t-1)
        self.x_proj = nn.Linear(C, 4 * H)
        self.h_proj = nn.Linear(H, 4 * H, bias=False)
        if dims.pooling == "att":
            # eq 9: alpha~ = w^T tanh(W_ax x_ij + W_ah h(t-1) + b_a)
            self.att_x = nn.Linear(C, A)
            self.att_h = nn.Linear(H, A, bias=False)
            self.att_w = nn.Linear(A, 1, bias=False)

    def initial_state(self, glob: Tensor) -> tuple[Tensor, Tensor]:
        """e(V) (B, G) -> (h0, c0), each (B, H) (eqs 11-12)."""
        return torch.tanh(self.init_h(glob)), torch.tanh(self.init_c(glob))

    def forward(self, local: Tensor, glob: Tensor) -> Encoded:
        """local (B, T, grid, grid, C) CNN maps, glob (B, G) e(V) -> :class:`Encoded`."""
        B, T = local.shape[:2]
        x = local.reshape(B, T, -1, local.shape[-1])  # (B, T, P, C)
        if self.dims.pooling == "mean":
            x = x.mean(dim=2, keepdim=True)  # LRCN: average pooling of the grid (commutes with the delta)
        if self.dims.temporal_delta and self.dims.input_rank and not torch.is_autocast_enabled(x.device.type):
            # R [x ; x - m] = (R_x + R_d) x - R_d m with m = mean_t x: the same map as the
            # concatenation below without building it, half the multiply-adds for T >> 1 (the
            # largest matmul in captioning a scene; test_model checks it equals the concatenation).
            # Not under bf16/fp16 autocast (training): there the small change x - m would be the
            # difference of two rounded products, so the concatenation keeps it exact.
            r_x, r_d = self.x_reduce.weight.split(x.shape[-1], dim=1)
            x = F.linear(x, r_x + r_d) - F.linear(x.mean(dim=1, keepdim=True), r_d)  # (B, T, P, r)
        else:
            if self.dims.temporal_delta:
                x = torch.cat([x, x - x.mean(dim=1, keepdim=True)], dim=-1)  # (B, T, P, 2C)
            if self.dims.input_rank:
                x = self.x_reduce(x)  # (B, T, P, r)
        if hasattr(self, "position"):
            x = x + self.position  # (P, C') broadcast over B and T
        P = x.shape[2]
        gates_x = self.x_proj(x)  # (B, T, P, 4H): one matmul for all frames and positions
        att_x = self.att_x(x) if self.dims.pooling == "att" else None  # (B, T, P, A)
        uniform = x.new_full((B, P), 1.0 / P)

        h, c = self.initial_state(glob)
        states, alphas = [], []
        for t in range(T):
            if att_x is not None:  # eqs 9-10, from h(t-1): softmax over the P positions
                scores = self.att_w(torch.tanh(att_x[:, t] + self.att_h(h).unsqueeze(1))).squeeze(-1)
                alpha = torch.softmax(scores, dim=-1)  # (B, P)
            else:  # eq 8 (avg), or the single position of "mean"
                alpha = uniform
            gates = gates_x[:, t] + self.h_proj(h).unsqueeze(1)  # (B, P, 4H), eqs 1-4
            i, f, g, o = gates.chunk(4, dim=-1)
            c_local = torch.sigmoid(f) * c.unsqueeze(1) + torch.sigmoid(i) * torch.tanh(g)  # eq 4
            h_local = torch.sigmoid(o) * torch.tanh(c_local)  # eq 5
            w = alpha.unsqueeze(-1)
            c = (w * c_local).sum(dim=1)  # eq 6
            h = (w * h_local).sum(dim=1)  # eq 7
            states.append(h)
            alphas.append(alpha)
        return Encoded(states=torch.stack(states, 1), h=h, c=c, alpha=torch.stack(alphas, 1))
