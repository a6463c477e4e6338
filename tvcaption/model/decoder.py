"""Caption decoder: an LSTM with temporal attention over the encoder states (paper eqs 13-25).

Shapes: B sequences, T frames, L steps, H hidden, A attention, E embedding, V vocabulary.

At step l the previous decoder state h^d(l-1) attends over h(1..T) (eqs 15-17, softmax over the
T frames); the input is x_l = [W_emb y(l-1); context] (eqs 18-19); the cell is a standard LSTM
(the paper's eqs 20-24 are lost in its text: the usual i, f, g, o gates on x_l and h^d(l-1));
dropout precedes the output layer W_d (eq 25, given a bias here as usual).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tvcaption.model.dims import ModelDims
from tvcaption.model.lstap import Encoded


@dataclass(frozen=True)
class DecoderState:
    h: Tensor  # (B, H) h^d(l)
    c: Tensor  # (B, H) c^d(l)

    def index_select(self, index: Tensor) -> DecoderState:
        """Reorder or repeat rows (beam search)."""
        return DecoderState(self.h.index_select(0, index), self.c.index_select(0, index))


@dataclass(frozen=True)
class Memory:
    """The encoder states the decoder attends to, with their attention projection done once."""

    states: Tensor  # (B, T, H) h(1..T)
    keys: Tensor  # (B, T, A) W_be h(t) + b_b, constant over decoding steps

    def index_select(self, index: Tensor) -> Memory:
        return Memory(self.states.index_select(0, index), self.keys.index_select(0, index))


@dataclass(frozen=True)
class StepOutput:
    logits: Tensor  # (B, V) W_d h^d(l), before the softmax of eq 25
    state: DecoderState  # (h^d(l), c^d(l))
    beta: Tensor  # (B, T) temporal attention weights used at this step, rows sum to 1


class AttentionDecoder(nn.Module):
    def __init__(self, dims: ModelDims):
        super().__init__()
        self.dims = dims
        H, A, E = dims.hidden, dims.attention, dims.embedding
        self.embed = nn.Embedding(dims.vocab_size, E, padding_idx=0)  # W_emb (eq 18); PAD = 0
        # eq 16: beta~ = w_b^T tanh(W_be h(t) + W_bh h^d(l-1) + b_b)
        self.att_e = nn.Linear(H, A)
        self.att_h = nn.Linear(H, A, bias=False)
        self.att_w = nn.Linear(A, 1, bias=False)
        self.cell = nn.LSTMCell(E + H, H)
        self.dropout = nn.Dropout(dims.dropout)
        self.out = nn.Linear(H, dims.vocab_size)  # W_d (eq 25)

    def start(self, encoded: Encoded) -> tuple[DecoderState, Memory]:
        """Eqs 13-14: c^d(0) = c(T), h^d(0) = h(T); and the attention keys of h(1..T)."""
        return DecoderState(encoded.h, encoded.c), Memory(encoded.states, self.att_e(encoded.states))

    def _advance(self, embedded: Tensor, state: DecoderState, memory: Memory) -> tuple[DecoderState, Tensor]:
        """Eqs 15-24 on embedded y(l-1) (B, E): the state at l and the attention beta (B, T)."""
        scores = self.att_w(torch.tanh(memory.keys + self.att_h(state.h).unsqueeze(1))).squeeze(-1)
        beta = torch.softmax(scores, dim=-1)  # eq 17, over t = 1..T
        context = torch.bmm(beta.unsqueeze(1), memory.states).squeeze(1)  # eq 15, (B, H)
        h, c = self.cell(torch.cat([embedded, context], dim=-1), (state.h, state.c))  # eqs 19-24
        return DecoderState(h, c), beta

    def step(self, tokens: Tensor, state: DecoderState, memory: Memory) -> StepOutput:
        """One step: y(l-1) ids (B,) and the state at l-1 -> logits for y(l) (B, V)."""
        state, beta = self._advance(self.embed(tokens), state, memory)
        return StepOutput(self.out(self.dropout(state.h)), state, beta)

    def forward(self, encoded: Encoded, inputs: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher forcing: inputs (B, L) = y(0..L-1) -> logits (B, L, V), betas (B, L, T).

        Same arithmetic as calling :meth:`step` L times; the embedding and the output layer run
        once over all steps.
        """
        state, memory = self.start(encoded)
        embedded = self.embed(inputs)  # (B, L, E), eq 18
        hs, betas = [], []
        for l in range(inputs.shape[1]):
            state, beta = self._advance(embedded[:, l], state, memory)
            hs.append(state.h)
            betas.append(beta)
        logits = self.out(self.dropout(torch.stack(hs, 1)))  # eq 25
        return logits, torch.stack(betas, 1)
