"""The backbone's trunk exported to ONNX and run on CPU by OpenVINO (the default where it is
installed) or ONNX Runtime: both faster than PyTorch eager on every CPU we measured (depthwise
convolutions above all), and quick to start. On the AVX2-only EPYC OpenVINO ran a frame 1.37x
faster than ONNX Runtime (bench/speed.py's backbone rows), with features equal to float rounding.

The first time a backbone is asked for with ``[features] runtime = "openvino"`` or ``"onnx"``
(or ``auto`` on a CPU), the PyTorch backbone is built once from its weights, its trunk exported
to ONNX and its classifier saved beside it, in the user's cache folder
(``$XDG_CACHE_HOME/tvcaption/backbones`` on Linux), written atomically. Every later start reads
the cached graph straight into the runtime: no timm model is built, no state dict is read, which
is most of a run's fixed cost. The cache entry is keyed by the weights (file name, size and
modification time), the torch version (which writes the graph) and the export settings, so new
weights or versions export again.

Preprocessing is :meth:`Backbone.preprocess`, the same code on the same torch tensors, so the
features match the PyTorch runtime's on CPU to float rounding (``tests/test_onnx_backbone.py``
states the tolerance and checks the shipped model's captions are identical). On CPU frames are
resized on their uint8 pixels, on CUDA in float: the two differ by rounding (see
``Backbone.preprocess``). Feature extraction for training uses these runtimes too on CPU (the
features equal PyTorch's, so they share the feature cache's key); the caption model trains in torch.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tvcaption.config import FeaturesConfig
from tvcaption.errors import TvcaptionError

log = logging.getLogger(__name__)
OPSET = 17
# Frames per run: one. A frame's activations stay in the CPU's caches: on the AVX2 EPYC, ms a frame
# one at a time against runs of 8 (bench/run_frames.py): ONNX Runtime 22.8 vs 35.0, OpenVINO
# compiled for one frame 18.3 vs 23.5 (dynamic batch). Nor do many frames' activations hold memory.
RUN_FRAMES = 1
SCRATCH_PREFIX = "tvcaption-backbone-"  # a read-only home's one-run export, deleted once loaded
FORMAT = 1  # bump when what is cached (or how) changes


@dataclass(frozen=True)
class _Card:
    """What a cached export holds besides the graph."""

    name: str
    channels: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_id: str
    image_size: int


class OnnxBackbone:
    """Inference-only stand-in for :class:`~tvcaption.features.backbones.Backbone` on CPU.

    ``forward`` / ``__call__``: uint8 (N, H, W, 3) RGB -> float32 torch (N, 7, 7, C);
    ``classify``: (N, 7, 7, C) -> ImageNet logits, like the PyTorch backbone's.
    ``run``: float32 NCHW (N, 3, S, S) -> (N, C, 7, 7), the exported trunk in ``runtime`` ("onnx":
    ONNX Runtime, "openvino": OpenVINO), RUN_FRAMES frames a run.
    """

    grid = 7
    device = torch.device("cpu")

    def __init__(self, run, runtime: str, card: _Card, head_weight: np.ndarray, head_bias: np.ndarray) -> None:
        self.run, self.runtime = run, runtime
        self.name, self.channels = card.name, card.channels
        self.image_size, self.weights_id = card.image_size, card.weights_id
        self.head_weight = torch.from_numpy(head_weight)
        self.head_bias = torch.from_numpy(head_bias)
        std = torch.tensor(card.std, dtype=torch.float32) * 255.0
        self.scale = (1.0 / std).view(1, 3, 1, 1)
        self.shift = (-torch.tensor(card.mean, dtype=torch.float32) * 255.0 / std).view(1, 3, 1, 1)

    def preprocess(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        from tvcaption.features.backbones import Backbone

        return Backbone.preprocess(self, frames)  # the very same resize and normalisation

    def __call__(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        fmap = self.run(self.preprocess(frames).contiguous().numpy())  # NCHW -> (N, C, 7, 7)
        return torch.from_numpy(fmap).permute(0, 2, 3, 1)

    forward = __call__

    def classify(self, local: torch.Tensor) -> torch.Tensor:
        pooled = local.float().mean(dim=(1, 2))
        return torch.nn.functional.linear(pooled, self.head_weight, self.head_bias)


def cache_folder() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("tvcaption")) / "backbones"


def _weights_stamp(config: FeaturesConfig) -> str:
    """Name, size and mtime of the weights file: a new file exports again."""
    if config.backbone == "efficientnet_lite0":
        from tvcaption.features.backbones import efficientnet_lite0_weights_path

        path = efficientnet_lite0_weights_path()
    elif config.backbone == "resnet152" and config.resnet152_weights:
        path = Path(config.resnet152_weights).expanduser()
    else:
        return config.backbone  # a registered backbone: its loader decides the weights
    st = path.stat()
    return f"{path.name}:{st.st_size}:{st.st_mtime_ns}"


def _entry_key(config: FeaturesConfig) -> str:
    import hashlib

    raw = json.dumps([FORMAT, OPSET, config.backbone, _weights_stamp(config), torch.__version__])
    return f"{config.backbone}-{hashlib.sha256(raw.encode()).hexdigest()[:16]}"


def _export(config: FeaturesConfig, folder: Path) -> None:
    """Build the PyTorch backbone once and write graph, head and card into ``folder``."""
    from tvcaption.features.backbones import load_backbone

    backbone = load_backbone(config, device="cpu")
    size = backbone.image_size
    example = torch.zeros(2, 3, size, size)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.onnx.export's own deprecation notes: nothing a user acts on
        torch.onnx.export(backbone.trunk, (example,), str(folder / "trunk.onnx"), dynamo=False,
                          input_names=["x"], output_names=["fmap"], opset_version=OPSET,
                          dynamic_axes={"x": {0: "n"}, "fmap": {0: "n"}})
    head = backbone.head
    np.savez(folder / "head.npz", weight=head.weight.detach().numpy(), bias=head.bias.detach().numpy())
    card = {"name": backbone.name, "channels": backbone.channels, "mean": backbone.mean, "std": backbone.std,
            "weights_id": backbone.weights_id, "image_size": size}
    (folder / "card.json").write_text(json.dumps(card))


def _cached_entry(config: FeaturesConfig) -> Path:
    """The cache folder for this backbone, exporting it first if it is not there yet."""
    root = cache_folder()
    entry = root / _entry_key(config)
    if (entry / "card.json").is_file():
        _mark_used(entry)
        return entry
    log.info("exporting the %s backbone to ONNX once (cached in %s)", config.backbone, root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=root))
    except OSError:  # a read-only home: export into a temporary folder, for this run only
        scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
        _export(config, scratch)
        return scratch
    _export(config, scratch)
    try:
        os.replace(scratch, entry)  # atomic: another process sees all of it or none
    except OSError:  # another process finished the same export first
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    _sweep(root, keep=entry)
    return entry


UNUSED_DAYS = 30  # an export no run has read for this long is removed when another is made


def _mark_used(entry: Path) -> None:
    """Touch the card: its mtime says when a run last read this export (for :func:`_sweep`)."""
    try:
        os.utime(entry / "card.json")
    except OSError:  # a cache this user cannot write: another user's sweep may remove it (then it exports again)
        pass


def _sweep(root: Path, keep: Path) -> None:
    """Remove the exports (~18 MB each) no run has read for UNUSED_DAYS: each new torch version or
    weights file exports anew, and the old folders were never removed. One still in use (another
    installation sharing the cache) is touched on every load, so it stays."""
    import shutil
    import time

    cutoff = time.time() - UNUSED_DAYS * 86400
    for folder in root.iterdir():
        if folder == keep or not folder.is_dir():
            continue
        card = folder / "card.json"
        try:
            unused = card.stat().st_mtime < cutoff if card.is_file() else folder.stat().st_mtime < cutoff
        except OSError:
            continue
        if unused:  # a finished export, or an export's scratch folder left by a crash
            shutil.rmtree(folder, ignore_errors=True)


def load_onnx_backbone(config: FeaturesConfig, runtime: str = "onnx") -> OnnxBackbone:
    """The configured backbone's exported trunk in ``runtime`` on CPU: ``"onnx"`` (ONNX Runtime) or
    ``"openvino"`` (exported and cached on first use either way)."""
    load = {"onnx": _ort_runner, "openvino": _openvino_runner}[runtime]
    entry = _cached_entry(config)
    try:
        card = _Card(**json.loads((entry / "card.json").read_text()))
        with np.load(entry / "head.npz") as head_file:
            head = {name: head_file[name] for name in ("weight", "bias")}
        return OnnxBackbone(load(entry / "trunk.onnx", config, card.image_size), runtime, card, head["weight"],
                            head["bias"])
    finally:
        if entry.name.startswith(SCRATCH_PREFIX):  # exported for this run only (read-only home): read, so gone
            import shutil

            shutil.rmtree(entry, ignore_errors=True)


def _unloadable(path: Path, exc: Exception) -> TvcaptionError:
    return TvcaptionError(f"{path.parent}: cached backbone cannot be loaded ({type(exc).__name__}); "
                          "delete that folder and run again")


def _ort_runner(path: Path, config: FeaturesConfig, size: int):
    try:
        import onnxruntime as ort
    except ImportError:
        raise TvcaptionError("[features] runtime = \"onnx\" needs onnxruntime: pip install onnxruntime "
                             "(or set runtime = \"torch\")") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.inference_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # idle inference threads sleep instead of spinning: the decoding thread needs those cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = False  # the arena keeps the largest run's activations for good
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # a truncated or foreign file in the cache
        raise _unloadable(path, exc) from None
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return np.concatenate([session.run(None, {name: x[i:i + RUN_FRAMES]})[0] for i in range(0, len(x), RUN_FRAMES)])

    return run


def _openvino_runner(path: Path, config: FeaturesConfig, size: int):
    """Compiled for RUN_FRAMES frames of ``size`` a run (a static shape: faster than the graph's
    dynamic batch on the EPYC), ``config.inference_streams`` runs at once on one thread each."""
    try:
        import openvino
    except ImportError:
        raise TvcaptionError("[features] runtime = \"openvino\" needs OpenVINO: pip install openvino "
                             "(or set runtime = \"onnx\")") from None
    streams = config.inference_streams
    properties = {
        "NUM_STREAMS": streams,
        "INFERENCE_NUM_THREADS": streams if streams > 1 else config.inference_threads,  # one thread a stream
        "INFERENCE_PRECISION_HINT": "f32",  # not bf16 where the CPU has it: the model was trained on float32 features
        "ENABLE_CPU_PINNING": False,  # the decoding thread shares these cores
    }
    core = openvino.Core()
    try:
        model = core.read_model(str(path))
    except Exception as exc:  # a truncated or foreign file in the cache
        raise _unloadable(path, exc) from None
    try:
        model.reshape([RUN_FRAMES, 3, size, size])
        compiled = core.compile_model(model, "CPU", properties)
    except Exception as exc:  # OpenVINO itself (a plugin, a property this CPU refuses): not the cache's fault
        raise TvcaptionError(f"OpenVINO cannot compile the backbone on this CPU ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}); set [features] runtime = "
                             "\"onnx\"") from None
    requests = [compiled.create_infer_request() for _ in range(streams)]
    lock = threading.Lock()  # the requests serve one caller at a time

    def run(x: np.ndarray) -> np.ndarray:
        """Frames start on whichever request is free and are collected oldest first (equal work, so
        in the order they end): a rolling window of ``streams`` runs, no wait for a whole batch.
        Only this thread touches OpenVINO; ``wait`` releases the GIL for the decoding thread.
        (Runs from several Python threads deadlocked on the GIL inside OpenVINO's input copy, and
        AsyncInferQueue's callbacks ran Python in OpenVINO's threads.)"""
        out: list[np.ndarray] = []
        running: deque = deque()
        with lock:
            try:
                for start in range(0, len(x), RUN_FRAMES):
                    free = requests[len(running)] if len(running) < len(requests) else _finished(running.popleft(), out)
                    free.start_async({0: x[start:start + RUN_FRAMES]})  # copies the input
                    running.append(free)
                while running:
                    _finished(running.popleft(), out)
            finally:
                for request in running:  # an error: leave no run behind for the next caller
                    request.wait()
        return np.concatenate(out)

    return run


def _finished(request, out: list[np.ndarray]):
    """Wait for ``request``'s run, append (a copy of) its output to ``out``; the request, now free."""
    request.wait()
    out.append(request.get_output_tensor(0).data.copy())
    return request


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def load_inference_backbone(config: FeaturesConfig, device: str | torch.device | None = None):
    """The backbone indexing (and feature extraction for training, evaluation and calibration)
    runs on ``device`` (default: ``config.device``): on CPU the exported trunk in OpenVINO
    (``runtime`` auto, when installed) or ONNX Runtime (auto without OpenVINO, or onnx); PyTorch
    for ``runtime = "torch"``, a CUDA device, or when neither runtime is installed. Its features
    equal PyTorch's to float rounding, so they share the feature cache's key."""
    from tvcaption.features.backbones import load_backbone, resolve_device

    device = resolve_device(device if device is not None else config.device)
    if config.runtime == "torch" or device.type != "cpu":
        return load_backbone(config, device)
    if config.runtime == "auto":
        for runtime, module in (("openvino", "openvino"), ("onnx", "onnxruntime")):
            if not _importable(module):
                continue
            try:
                return load_onnx_backbone(config, runtime)
            except (ImportError, TvcaptionError) as exc:  # installed but broken here: the next one
                log.warning("%s: %s; trying the next runtime", runtime, exc)
        return load_backbone(config, device)
    return load_onnx_backbone(config, config.runtime)
