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
    blank: float | None = None  # share of the sampled frames that are blank (tvcaption.blank); None: not measured


class AnalyserContext:
    """What analysers of one run share: the configuration and, loaded once, the CNN backbone
    (its features feed the captioner, its classifier the tags).

    :meth:`load_in_background` loads torch, every analyser's model (:meth:`Analyser.load`) and
    the backbone in a thread of their own, so that the first recording is decoded meanwhile
    (about 2 s of imports and weights on a 2-core CPU); whatever needs a model waits for it
    (:meth:`wait_loaded`; the ``backbone`` property does)."""

    def __init__(self, config: "Config"):
        self.config = config
        self.features_config = config.features
        self._backbone = None
        self._loaded: "threading.Event | None" = None
        self._load_error: BaseException | None = None

    def load_in_background(self, analysers: Sequence["Analyser"], backbone: bool) -> None:
        import threading

        self._loaded = threading.Event()

        def work() -> None:
            try:
                import torch

                torch.set_num_threads(self.config.features.inference_threads)
                for analyser in analysers:
                    analyser.load()
                if backbone and self._backbone is None:
                    self._backbone = self._load_backbone()
            except BaseException as exc:  # noqa: BLE001 - raised in the thread that waits
                self._load_error = exc
            finally:
                self._loaded.set()

        threading.Thread(target=work, name="tvcaption-load", daemon=True).start()

    @property
    def loading_started(self) -> bool:
        return self._loaded is not None

    @property
    def loaded(self) -> bool:
        """True once the background loading is over."""
        return self._loaded is not None and self._loaded.is_set()

    def wait_loaded(self) -> None:
        """Wait for the background loading, if one was started; its failure raised here as a
        :class:`ModelLoadError` (without one, the backbone loads when first asked for)."""
        if self._loaded is None:
            return
        self._loaded.wait()
        if self._load_error is not None:
            from tvcaption.errors import ModelLoadError, TvcaptionError

            exc = self._load_error
            reason = str(exc) if isinstance(exc, TvcaptionError) else f"{type(exc).__name__}: {exc}"
            raise ModelLoadError(reason) from exc

    def _load_backbone(self):
        from tvcaption.features.onnx_backbone import load_inference_backbone

        return load_inference_backbone(self.features_config)

    @property
    def backbone(self):
        self.wait_loaded()
        if self._backbone is None:
            self._backbone = self._load_backbone()
        return self._backbone

    @property
    def device(self):
        """The torch device models run on (what the backbone is loaded for; no need to wait for it)."""
        from tvcaption.features.backbones import resolve_device

        return self._backbone.device if self._backbone is not None else resolve_device(self.features_config.device)


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
        """Cheap: what the engine must know before the first recording (``frames``,
        ``identity``, ``model_info``); the weights are read by :meth:`load`."""
        self.context = context

    def load(self) -> None:
        """Load what :meth:`analyse` needs (model weights), once, in the engine's loading
        thread, before any :meth:`analyse`. Default: nothing."""

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
