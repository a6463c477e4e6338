"""Model dimensions: one frozen dataclass every module is built from (no torch import here).

The defaults are the paper's sizes (Francis & Huet 2019, section 4.2) with ResNet-152 features;
a checkpoint stores these fields in its JSON so the model can be rebuilt without any code that
knows how it was trained.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

POOLINGS = ("att", "avg", "mean")


@dataclass(frozen=True)
class ModelDims:
    feature_dim: int = 2048  # C: channels of the CNN's last convolutional map x(t)_ij
    grid: int = 7  # the map is grid x grid positions (7x7 for ResNet-152 / EfficientNet at 224 px)
    global_dim: int = 2048  # size of the global video descriptor e(V) (eqs 11-12)
    hidden: int = 1024  # encoder LSTM, decoder LSTM and sentence LSTM size
    attention: int = 256  # spatial (eq 9) and temporal (eq 16) attention spaces
    embedding: int = 300  # word embeddings W_emb (eq 18), shared with the sentence encoder
    vocab_size: int = 15001  # output classes; set to len(vocab) when training
    pooling: str = "att"  # att: L-STAP eqs 9-10 | avg: L-STAP eq 8 | mean: LRCN baseline (grid mean, then LSTM)
    matching: bool = True  # sentence encoder + ranking loss (eqs 27-28); False: cross-entropy only
    dropout: float = 0.5  # before the output layer W_d (eq 25)
    margin: float = 0.2  # alpha in the ranking loss (eq 27)
    matching_weight: float = 0.4  # lambda in eq 28
    frames: int = 30  # T the model was trained with (informational: the model accepts any T)
    input_rank: int = 0  # 0: full-rank W_x (the paper); r > 0: W_x = W'_x R with a shared learned R (C -> r), see lstap.py
    position_bias: bool = False  # True: a learned vector per grid position added to x(t)_ij (not in the paper), see lstap.py
    temporal_delta: bool = False  # True: x(t)_ij is fed with x(t)_ij minus its mean over the clip (not in the paper)

    def __post_init__(self) -> None:
        for name in ("feature_dim", "grid", "global_dim", "hidden", "attention", "embedding", "vocab_size", "frames"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ModelDims.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.input_rank, int) or isinstance(self.input_rank, bool) or self.input_rank < 0:
            raise ValueError(f"ModelDims.input_rank must be an integer >= 0, got {self.input_rank!r}")
        if self.vocab_size < 5:
            raise ValueError(f"ModelDims.vocab_size must cover the 4 special tokens and a word, got {self.vocab_size}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"ModelDims.pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if not isinstance(self.temporal_delta, bool):
            raise ValueError(f"ModelDims.temporal_delta must be true or false, got {self.temporal_delta!r}")
        if not isinstance(self.position_bias, bool):
            raise ValueError(f"ModelDims.position_bias must be true or false, got {self.position_bias!r}")
        if not isinstance(self.matching, bool):
            raise ValueError(f"ModelDims.matching must be true or false, got {self.matching!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelDims.dropout must be in [0, 1), got {self.dropout!r}")
        if self.margin < 0 or self.matching_weight < 0:
            raise ValueError("ModelDims.margin and ModelDims.matching_weight must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelDims:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing keys take the defaults."""
        if not isinstance(values, dict):
            raise ValueError(f"model dims must be a JSON object, got {type(values).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown model dims field(s): {', '.join(unknown)}")
        coerced = {}
        for key, value in values.items():
            # JSON has one number type: accept 1 for a float field, never a float for an int field.
            if known[key].type in ("float", float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            coerced[key] = value
        return cls(**coerced)
