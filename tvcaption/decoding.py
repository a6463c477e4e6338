"""Caption decoding: greedy and beam search behind one interface, :func:`decode`.

The encoder runs once per clip; beam search repeats its output per beam and reorders only the
decoder state. <pad> and <bos> are never generated (they are never training targets either).
torch is imported inside the functions: ``DecodingOptions`` is light enough for the CLI.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

from tvcaption.errors import CheckpointError, ConfigError
from tvcaption.vocab import Vocab

if TYPE_CHECKING:
    from torch import Tensor

    from tvcaption.model.captioner import CaptionModel
    from tvcaption.model.decoder import DecoderState, Memory
    from tvcaption.model.lstap import Encoded

BOS, EOS, PAD = Vocab.BOS, Vocab.EOS, Vocab.PAD
SUPPRESSED = (PAD, BOS)


@dataclass(frozen=True)
class DecodingOptions:
    beam_size: int = 3  # hypotheses kept per clip; 1 = greedy search
    max_len: int = 30  # most words per caption, <eos> not counted; longer captions are cut here
    length_penalty: float = 1.0  # finished beams ranked by log p / len**length_penalty (len counts <eos>); 0 = log p

    def __post_init__(self) -> None:
        if self.beam_size < 1 or self.max_len < 1:
            raise ConfigError(f"[decoding] beam_size = {self.beam_size}, max_len = {self.max_len}: both must be "
                              "1 or more (beam_size 1 is greedy decoding)")
        if self.length_penalty < 0:
            raise ConfigError(f"[decoding] length_penalty = {self.length_penalty}: must be 0 or more")


@dataclass(frozen=True)
class Hypothesis:
    tokens: tuple[int, ...]  # word ids, without <bos> and <eos>
    logprob: float  # sum of the log-probabilities of the words and of <eos> when it was generated
    score: float  # logprob / length**length_penalty, length = words (+1 for <eos>); ranks beams
    finished: bool  # True: ended with <eos>; False: cut at max_len

    @property
    def confidence(self) -> float:
        """The model's confidence in the sentence: log p per generated token (the words, and
        <eos> when it was generated), whatever length penalty ranked the beams. 0 is certain."""
        return self.logprob / max(1, len(self.tokens) + (1 if self.finished else 0))


def decode(model: CaptionModel, local: Tensor, glob: Tensor, options: DecodingOptions = DecodingOptions()) -> list[list[int]]:
    """local (B, T, grid, grid, C), glob (B, G) -> one caption per clip as word ids."""
    return [list(h.tokens) for h in decode_hypotheses(model, local, glob, options)]


def decode_hypotheses(
    model: CaptionModel, local: Tensor, glob: Tensor, options: DecodingOptions = DecodingOptions()
) -> list[Hypothesis]:
    """As :func:`decode`, with each caption's log-probability and score (eval mode, inference_mode)."""
    import torch

    with _evaluating(model), torch.inference_mode():
        encoded = model.encode(*_to_model(model, local, glob))
        search = greedy_search if options.beam_size == 1 else beam_search
        return search(model, encoded, options)


def greedy_search(model: CaptionModel, encoded: Encoded, options: DecodingOptions) -> list[Hypothesis]:
    """The most probable next word at every step, until <eos> or max_len words."""
    import torch

    state, memory = model.start(encoded)
    B = encoded.h.shape[0]
    tokens = torch.full((B,), BOS, dtype=torch.long, device=encoded.h.device)
    logprob = torch.zeros(B, dtype=torch.float64, device=tokens.device)
    done = torch.zeros(B, dtype=torch.bool, device=tokens.device)
    steps = []
    for _ in range(options.max_len):
        logp, state = _next_logprobs(model, tokens, state, memory)
        best, tokens = logp.max(dim=-1)
        logprob += torch.where(done, 0.0, best.double())
        steps.append(torch.where(done, PAD, tokens))
        done |= tokens == EOS
        if bool(done.all()):
            break
    hyps = []
    for row, lp in zip(torch.stack(steps, 1).tolist(), logprob.tolist()):
        finished = EOS in row
        words = tuple(row[: row.index(EOS)] if finished else row)
        hyps.append(_hypothesis(words, lp, finished, options))
    return hyps


def beam_search(model: CaptionModel, encoded: Encoded, options: DecodingOptions) -> list[Hypothesis]:
    """Beam search (batched over clips): keep the beam_size best prefixes by log p; a clip is done
    when beam_size hypotheses have ended with <eos>; the best by length-normalised score wins."""
    import torch

    k = options.beam_size
    B = encoded.h.shape[0]
    device = encoded.h.device
    state, memory = model.start(encoded)
    repeat = torch.arange(B, device=device).repeat_interleave(k)
    state, memory = state.index_select(repeat), memory.index_select(repeat)  # (B*k, ...)
    scores = [[0.0] + [-math.inf] * (k - 1) for _ in range(B)]  # one live beam per clip at first
    prefixes: list[list[tuple[int, ...]]] = [[()] * k for _ in range(B)]
    tokens = torch.full((B * k,), BOS, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B

    for step in range(options.max_len):
        logp, state = _next_logprobs(model, tokens, state, memory)  # (B*k, V)
        V = logp.shape[-1]
        total = (torch.tensor(scores, dtype=torch.float64, device=device).view(-1, 1) + logp.double()).view(B, k * V)
        top_scores, top_index = total.topk(min(2 * k, k * V), dim=-1)  # enough to find k live ones
        top_scores, top_index = top_scores.tolist(), top_index.tolist()
        sources, next_tokens = [], []
        for b in range(B):
            live: list[tuple[float, int, int]] = []
            if not done[b]:
                for s, flat in zip(top_scores[b], top_index[b]):
                    if s == -math.inf:
                        break
                    beam, token = divmod(flat, V)
                    if token == EOS:
                        if len(finished[b]) < k:
                            finished[b].append(_hypothesis(prefixes[b][beam], s, True, options))
                    else:
                        live.append((s, beam, token))
                        if len(live) == k:
                            break
                done[b] = len(finished[b]) >= k
            live += [(-math.inf, 0, PAD)] * (k - len(live))  # dead rows keep the batch rectangular
            scores[b] = [s for s, _, _ in live]
            prefixes[b] = [prefixes[b][beam] + (token,) for _, beam, token in live]
            sources += [b * k + beam for _, beam, _ in live]
            next_tokens += [token for _, _, token in live]
        if all(done):
            break
        index = torch.tensor(sources, device=device)
        state = state.index_select(index)
        tokens = torch.tensor(next_tokens, dtype=torch.long, device=device)

    results = []
    for b in range(B):
        if not done[b]:  # cut at max_len: the live prefixes compete with what finished
            finished[b] += [
                _hypothesis(p, s, False, options) for s, p in zip(scores[b], prefixes[b]) if s > -math.inf
            ]
        if not finished[b]:  # every score was NaN: the weights cannot describe anything
            raise CheckpointError("the model gave no finite word scores (its weights are damaged or were "
                                  "trained to diverge); re-copy the checkpoint or re-train")
        results.append(max(finished[b], key=lambda h: h.score))
    return results


def score_sequences(model: CaptionModel, local: Tensor, glob: Tensor, sequences: Sequence[Sequence[int]], eos: bool = True) -> Tensor:
    """Log-probability (B,) of given word-id sequences under the decoding distribution (teacher
    forcing, <pad>/<bos> suppressed), with <eos> appended when eos is True."""
    import torch

    from tvcaption.model.captioner import pad_tokens

    with _evaluating(model), torch.inference_mode():
        local, glob = _to_model(model, local, glob)
        tokens, lengths = pad_tokens([[BOS, *s, EOS] for s in sequences], device=model.device)
        logits = model(local, glob, tokens).float()
        logits[..., list(SUPPRESSED)] = -math.inf
        logp = torch.log_softmax(logits, dim=-1).gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)
        counted = torch.arange(tokens.shape[1] - 1, device=tokens.device) < (lengths - 1 - (0 if eos else 1)).unsqueeze(1)
        return (logp * counted).sum(dim=1).double()


def _next_logprobs(model: CaptionModel, tokens: Tensor, state: DecoderState, memory: Memory) -> tuple[Tensor, DecoderState]:
    import torch

    out = model.step(tokens, state, memory)
    logits = out.logits.float()
    logits[:, list(SUPPRESSED)] = -math.inf
    return torch.log_softmax(logits, dim=-1), out.state


def _hypothesis(words: tuple[int, ...], logprob: float, finished: bool, options: DecodingOptions) -> Hypothesis:
    length = max(1, len(words) + (1 if finished else 0))
    return Hypothesis(tuple(words), float(logprob), float(logprob) / length**options.length_penalty, finished)


def _to_model(model: CaptionModel, local: Tensor, glob: Tensor) -> tuple[Tensor, Tensor]:
    param = next(model.parameters())
    return local.to(param.device, param.dtype), glob.to(param.device, param.dtype)


@contextlib.contextmanager
def _evaluating(model: CaptionModel) -> Iterator[None]:
    """Dropout off while decoding; the caller's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
