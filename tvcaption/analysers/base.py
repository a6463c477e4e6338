"""The analyser interface: what a scene analyser gets, what it returns, and what it may share.

An analyser is built once per run from an :class:`AnalyserContext` and then called with batches
of :class:`SceneInput`: the scene (times), and what it declared in ``needs``: the sampled RGB
frames (``"frames"``) and the backbone's 7x7 local features of those frames (``"features"``).
Before a recording's first scene it hears :meth:`Analyser.start_recording`.
It returns, for each scene of the batch, a list of :class:`~tvcaption.scene.Annotation` s. It
knows nothing of decoding, the database, search or export: the pipeline runs it, the store keeps
its annotations, search and export read them by kind and field.

    class Shouting(Analyser):
        name = "shouting"
        needs = frozenset({"frames"})

        def analyse(self, batch):
            return [[Annotation(self.name, "label", "bright")] if b.frames.mean() > 200 else []
                    for b in batch]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from tvcaption.scene import Annotation, Scene

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor

    from pathlib import Path

    from tvcaption.config import Config
    from tvcaption.video import VideoInfo

NEEDS = frozenset({"frames", "features"})


@dataclass(frozen=True)
class SceneInput:
    """One scene handed to analysers; ``scene.annotations`` holds what the analysers listed
    before this one in ``[index] analysers`` said of it (the meaning analyser embeds those)."""

    scene: Scene
    times: "np.ndarray"  # (T,) seconds of the sampled frames
    frames: "np.ndarray | None" = None  # (K, H, W, 3) uint8 RGB, full size, when an analyser needs "frames"
    frame_times: "np.ndarray | None" = None  # (K,) seconds of those frames (K <= T: see Analyser.keep_frames)
    features: "Tensor | None" = None  # (T, 7, 7, C) backbone local features, when one needs "features"


class AnalyserContext:
    """What analysers of one run share: the configuration and, loaded once when first asked
    for, the CNN backbone (its features feed the captioner, its classifier the tags)."""

    def __init__(self, config: "Config"):
        self.config = config
        self.features_config = config.features
        self._backbone = None

    @property
    def backbone(self):
        if self._backbone is None:
            from tvcaption.features.onnx_backbone import load_inference_backbone

            self._backbone = load_inference_backbone(self.features_config)
        return self._backbone

    @property
    def device(self):
        return self.backbone.device


class Analyser:
    """Base class; subclasses set ``name`` and ``needs`` and implement :meth:`analyse`.

    ``frames``: how many frames per scene it wants sampled (the most any analyser asks for is
    sampled; 0: no wish). ``keep_frames``: with ``"frames"`` in ``needs``, how many of them it
    reads at full size (the engine keeps that many per scene until the analysers run, spread
    evenly, not all: full-size frames are big). ``identity``: what, besides its name, makes its output differ (a model
    checksum); a recording indexed with other analysers or identities is indexed again.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    frames: int = 0
    keep_frames: int | None = None  # with "frames": how many of the sampled frames it reads (evenly spread); None: all

    def __init__(self, context: AnalyserContext):
        self.context = context

    @property
    def identity(self) -> str:
        return self.name

    def companions(self, path: "Path") -> list["Path"]:
        """Files beside the recording at ``path`` that this analyser reads (subtitle sidecars):
        ``index`` checks them, with the recording, for changes. Default: none."""
        return []

    def start_recording(self, info: "VideoInfo") -> None:
        """Called once before a recording's scenes reach :meth:`analyse` (``info.path`` names
        it), for what an analyser reads of the whole recording (its subtitle tracks). Default:
        nothing."""

    def model_info(self) -> dict[str, Any] | None:
        """For the store's models table: {"name", "sha256", "meta"}, or None."""
        return None

    def analyse(self, batch: Sequence[SceneInput]) -> list[list[Annotation]]:
        raise NotImplementedError
