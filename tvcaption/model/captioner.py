"""CaptionModel: the L-STAP encoder, the attention decoder and the matching loss in one module.

Token layout (see :mod:`tvcaption.vocab`): a caption is ``<bos> w1 .. wn <eos>`` padded with
``<pad>`` = 0 to the batch's longest, tokens (B, L). Teacher forcing feeds tokens[:, :-1] and
predicts tokens[:, 1:].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tvcaption.model.decoder import AttentionDecoder, DecoderState, Memory, StepOutput
from tvcaption.model.dims import ModelDims
from tvcaption.model.lstap import Encoded, LSTAPEncoder
from tvcaption.model.matching import SentenceEncoder, ranking_loss

PAD = 0


@dataclass(frozen=True)
class Losses:
    total: Tensor  # () caption + matching_weight * matching (eq 28)
    caption: Tensor  # () cross-entropy per predicted token, padding ignored (eq 26, averaged)
    matching: Tensor  # () ranking loss (eq 27); 0 when dims.matching is False


def pad_tokens(sequences: Sequence[Sequence[int]], device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Token id lists -> (tokens (B, L) right-padded with PAD, lengths (B,))."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    tokens = torch.full((len(sequences), int(lengths.max()) if len(sequences) else 0), PAD, dtype=torch.long)
    for row, seq in enumerate(sequences):
        tokens[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
    return tokens.to(device), lengths.to(device)


class CaptionModel(nn.Module):
    def __init__(self, dims: ModelDims):
        super().__init__()
        self.dims = dims
        self.encoder = LSTAPEncoder(dims)
        self.decoder = AttentionDecoder(dims)
        self.sentence = SentenceEncoder(dims) if dims.matching else None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _check(self, local: Tensor, glob: Tensor) -> None:
        d = self.dims
        if local.dim() != 5 or local.shape[2:] != (d.grid, d.grid, d.feature_dim):
            raise ValueError(
                f"local features must be (B, T, {d.grid}, {d.grid}, {d.feature_dim}) for this model, got {tuple(local.shape)}"
            )
        if glob.shape != (local.shape[0], d.global_dim):
            raise ValueError(f"global descriptor must be (B, {d.global_dim}) for this model, got {tuple(glob.shape)}")

    def encode(self, local: Tensor, glob: Tensor) -> Encoded:
        """local (B, T, grid, grid, C), glob (B, G) -> Encoded (states (B, T, H), h, c (B, H), alpha)."""
        self._check(local, glob)
        return self.encoder(local, glob)

    def start(self, encoded: Encoded) -> tuple[DecoderState, Memory]:
        """Decoder state at l = 0 and the attention memory, for step-by-step decoding."""
        return self.decoder.start(encoded)

    def step(self, tokens: Tensor, state: DecoderState, memory: Memory) -> StepOutput:
        """y(l-1) (B,) -> logits (B, V) for y(l), the new state and the temporal attention."""
        return self.decoder.step(tokens, state, memory)

    def forward(self, local: Tensor, glob: Tensor, tokens: Tensor) -> Tensor:
        """Teacher forcing: tokens (B, L) from <bos> -> logits (B, L-1, V) for tokens[:, 1:]."""
        logits, _ = self.decoder(self.encode(local, glob), tokens[:, :-1])
        return logits

    def loss(
        self,
        local: Tensor,
        glob: Tensor,
        tokens: Tensor,
        lengths: Tensor | None = None,
        groups: Tensor | None = None,
    ) -> Losses:
        """Eq 28 on a batch of (clip, caption) pairs.

        tokens (B, L) ``<bos> .. <eos> <pad>..``; lengths (B,) non-pad tokens per row (derived
        from PAD when None); groups (B,) optional clip ids so that two captions of one clip are
        not each other's negatives in the ranking loss.
        """
        encoded = self.encode(local, glob)
        logits, _ = self.decoder(encoded, tokens[:, :-1])
        targets = tokens[:, 1:]
        caption = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=PAD)
        if self.sentence is None:
            matching = caption.new_zeros(())
        else:
            if lengths is None:
                lengths = (tokens != PAD).sum(dim=1)
            # psi(Y) reads the words and <eos> (never empty), stopping at the true length
            psi = self.sentence(self.decoder.embed(targets), lengths.to(tokens.device) - 1)
            matching = ranking_loss(encoded.h, psi, self.dims.margin, groups)
        return Losses(total=caption + self.dims.matching_weight * matching, caption=caption, matching=matching)
