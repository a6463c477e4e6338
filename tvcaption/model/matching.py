"""Sentence encoder psi(Y) and the video-sentence ranking loss (paper eqs 27-28).

psi(Y) is the last hidden state of an LSTM over the caption's word embeddings (the decoder's
W_emb, shared), taken at each sentence's true length so padding never enters it. Its size is the
encoder's hidden size H, so S(phi(V), psi(Y)) is a cosine between two H-vectors with no extra
projection: the paper compares h(T) and psi(Y) directly, and this keeps the "skip connection"
from the sentence to the decoder's initial state that section 4.4 credits for the gain.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tvcaption.model.dims import ModelDims


class SentenceEncoder(nn.Module):
    def __init__(self, dims: ModelDims):
        super().__init__()
        self.lstm = nn.LSTM(dims.embedding, dims.hidden, batch_first=True)

    def forward(self, embedded: Tensor, lengths: Tensor) -> Tensor:
        """embedded (B, L, E) word embeddings, lengths (B,) >= 1 -> psi(Y) (B, H).

        The LSTM is causal, so the output at position length-1 is the last hidden state of the
        unpadded sentence (what packing would give, without a host copy of the lengths).
        """
        outputs, _ = self.lstm(embedded)  # (B, L, H)
        index = (lengths.to(outputs.device).long() - 1).clamp(min=0)
        return outputs[torch.arange(outputs.shape[0], device=outputs.device), index]


def ranking_loss(video: Tensor, sentence: Tensor, margin: float, groups: Tensor | None = None) -> Tensor:
    """Max-of-hinges ranking loss (eq 27, VSE++): the hardest negative in the batch, both ways.

    video (B, H) phi(V), sentence (B, H) psi(Y); row i of each is a matching pair. groups (B,)
    optional clip ids: pairs from the same clip are never each other's negatives (a batch may
    hold several captions of one video). Returns the batch mean of
    max_j [m - S(V_i, Y_i) + S(V_i, Y_j)]_+ + max_j [m - S(V_i, Y_i) + S(V_j, Y_i)]_+ ; 0 when
    no pair has a negative.
    """
    sim = F.normalize(video, dim=-1) @ F.normalize(sentence, dim=-1).T  # (B, B) cosine S(V_i, Y_j)
    positive = sim.diagonal()
    if groups is None:
        same = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    else:
        groups = groups.to(sim.device)
        same = groups.unsqueeze(0) == groups.unsqueeze(1)
    cost_sentence = (margin - positive.unsqueeze(1) + sim).clamp(min=0).masked_fill(same, 0)  # negatives Y_j for V_i
    cost_video = (margin - positive.unsqueeze(0) + sim).clamp(min=0).masked_fill(same, 0)  # negatives V_j for Y_i
    return (cost_sentence.max(dim=1).values + cost_video.max(dim=0).values).mean()
