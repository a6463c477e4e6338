"""Configuration: frozen dataclasses, layered defaults < tvcaption.toml < env < flags.

Every field here appears, documented, at its default in the repository's ``tvcaption.toml``.
The config file is the first of: ``--config``, ``$TVCAPTION_CONFIG``, ``./tvcaption.toml``, the
user's config folder (``~/.config/tvcaption/tvcaption.toml`` on Linux). Data lives where users
expect it, whatever folder a command runs from: the default database is in the user's data
folder (``~/.local/share/tvcaption/tvcaption.db``) and the default model is the one shipped
inside the package.
Environment variables override a field as ``TVCAPTION_<SECTION>__<FIELD>`` (for example
``TVCAPTION_DATABASE__URL``). Command-line flags override last, through :func:`with_overrides`.
This module imports nothing heavy: ``tvcaption --help`` loads it.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tvcaption.decoding import DecodingOptions
from tvcaption.errors import ConfigError

DecodingConfig = DecodingOptions  # [decoding] is the decoder's own options: one definition, validated there

APP = "tvcaption"
CONFIG_ENV = "TVCAPTION_CONFIG"
CONFIG_NAME = "tvcaption.toml"


@dataclass(frozen=True)
class ScenesConfig:
    detector: str = "adaptive"  # adaptive | content | threshold | hash | histogram | transnetv2 | auto
    threshold: float | None = None  # None: the detector's own default
    min_scene_len: float = 0.6  # seconds; shorter cuts are merged
    max_scene_len: float = 20.0  # seconds; longer scenes are split evenly so a caption stays watchable
    downscale: int = 0  # 0: PySceneDetect's automatic downscale for the frame size

    def __post_init__(self) -> None:
        known = ("adaptive", "content", "threshold", "hash", "histogram", "transnetv2", "auto")  # scenes.DETECTORS
        if str(self.detector).strip().lower() not in known:
            raise ConfigError(f"[scenes] detector = {self.detector!r}: unknown detector; use one of "
                              f"{', '.join(known)}")


@dataclass(frozen=True)
class FeaturesConfig:
    backbone: str = "efficientnet_lite0"  # efficientnet_lite0 | resnet152
    resnet152_weights: str = ""  # path to torchvision ResNet-152 ImageNet weights (.pth); required for resnet152
    global_descriptor: str = "mean"  # e(V): mean | meanmax (from the 2D backbone)
    batch_size: int = 32  # frames per CNN forward pass
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # inference threads on CPU (torch and ONNX Runtime); 0 = all cores but one, left to decoding
    streams: int = 0  # OpenVINO: frames run at once, one thread each; 0 = `threads` when set, else one per core
    # auto (OpenVINO, else ONNX Runtime on CPU; PyTorch on CUDA) | openvino | onnx | torch; also what extracts
    # features for training on CPU (the model itself trains in torch)
    runtime: str = "auto"
    cache_dir: str = "features"  # feature cache for training, relative to the config file

    def __post_init__(self) -> None:
        if self.runtime not in ("auto", "openvino", "onnx", "torch"):
            raise ConfigError(f"[features] runtime = {self.runtime!r}: use auto, openvino, onnx or torch")

    @property
    def inference_threads(self) -> int:
        """``threads``, or every core but one: indexing decodes in a thread of its own beside the
        CNN, and on 2 cores two inference threads measured slower than one (bench/speed.py)."""
        return inference_threads(self.threads)

    @property
    def inference_streams(self) -> int:
        """OpenVINO's parallel single-thread runs: ``streams``, else ``threads`` when set, else one
        per core. Unlike one run on several threads (whose threads meet after every layer and so
        wait for the decoding thread whenever it holds a core), independent runs fill whatever
        core is free: the decoding thread and the CNN share the cores without leaving one idle."""
        if self.streams > 0:
            return self.streams
        if self.threads > 0:
            return self.threads
        # one per usable core, at most the frames one call brings (a CNN batch): more would never run
        return max(1, min(usable_cores(), self.batch_size))


def usable_cores() -> int:
    """The cores this process may run on, not the host's count: its CPU affinity (``taskset``,
    ``docker --cpuset-cpus``), capped by a cgroup v2 CPU quota (``docker --cpus=4``, Kubernetes
    limits), rounded up."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, quota) if quota else cores)


def _cgroup_quota(path: str = "/sys/fs/cgroup/cpu.max") -> int | None:
    """Cores a cgroup v2 quota allows ("400000 100000": 4; "150000 100000": 2), None without one."""
    try:
        limit, period = open(path, encoding="ascii").read().split()[:2]
        return max(1, -(-int(limit) // int(period))) if limit != "max" and int(period) > 0 else None
    except (OSError, ValueError):
        return None


def inference_threads(threads: int) -> int:
    """A ``threads`` option: itself when set, else every usable core but one (decoding runs beside inference)."""
    return threads if threads > 0 else max(1, usable_cores() - 1)


@dataclass(frozen=True)
class ModelConfig:
    path: str = ""  # checkpoint stem (.safetensors + .json), relative to the config file; "" = the shipped model
    frames: int = 0  # frames sampled per scene; 0 = what the checkpoint was trained with


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = ""  # "" = SQLite in the user's data folder; relative SQLite paths resolve next to the config file
    claim_timeout: float = 600.0  # seconds without renewal before a worker's claim on a recording goes stale

    def __post_init__(self) -> None:
        if not self.claim_timeout > 0:  # a worker renews its claim every claim_timeout / 4
            raise ConfigError(f"[database] claim_timeout = {self.claim_timeout}: must be more than 0 seconds "
                              "(600 is the default)")


@dataclass(frozen=True)
class IndexConfig:
    extensions: tuple[str, ...] = (
        ".ts", ".m2ts", ".mts", ".mp4", ".m4v", ".mov", ".mkv", ".avi", ".mxf", ".mpg", ".mpeg", ".webm",
    )
    recursive: bool = True
    tags: int = 5  # ImageNet labels stored per scene
    tag_min_score: float = 0.05  # tags below this probability are dropped
    single_pass: bool = True  # decode each recording once for scene detection and frame sampling
    analysers: tuple[str, ...] = ("caption", "tags", "text", "speech", "meaning")  # run on every scene, in order


@dataclass(frozen=True)
class TextConfig:
    """On-screen text (the ``text`` analyser, RapidOCR)."""

    frames: int = 3  # frames per scene it may read; a frame whose picture barely changed is skipped
    interval: float = 4.0  # seconds: one frame offered per this much of a scene (at least one, at most `frames`)
    min_score: float = 0.6  # recognition confidence below which a text is dropped as noise
    min_chars: int = 2  # texts shorter than this (after trimming) are dropped
    det_side: int = 544  # text is found on frames scaled down to this longer side (smaller: faster, misses small text), read at full size
    threads: int = 0  # onnxruntime threads; 0 = every core but one


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-4
    optimizer: str = "rmsprop"  # rmsprop (paper: decay 0.9, momentum 0, eps 1e-10) | adam
    grad_clip: float = 5.0
    dropout: float = 0.5
    matching_weight: float = 0.4  # lambda in eq 28
    margin: float = 0.2  # alpha in eq 27
    max_words: int = 30
    vocab_size: int = 15000
    seed: int = 0


@dataclass(frozen=True)
class RayConfig:
    """``tvcaption index --ray``: one worker (a loaded model) per GPU, or per ``cpus_per_worker`` cores."""

    workers: int = 0  # 0: one per gpus_per_worker GPUs of the cluster, or without GPUs one per cpus_per_worker cores
    cpus_per_worker: float = 2.0  # cores each worker holds (its torch and OCR threads)
    gpus_per_worker: float = 1.0  # GPUs each worker holds, on a cluster that has GPUs
    retries: int = 3  # times a recording is tried again after the worker indexing it died


@dataclass(frozen=True)
class Config:
    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    text: TextConfig = field(default_factory=TextConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    root: Path = Path(".")  # directory relative paths resolve against (the config file's folder)

    def resolve(self, path: str | Path) -> Path:
        """A path from the config, made absolute against the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.root / p)

    @property
    def model_path(self) -> Path:
        """The checkpoint stem in force: ``[model] path``, or the model shipped in the package."""
        if self.model.path:
            return self.resolve(self.model.path)
        from tvcaption.resources import shipped_model

        return shipped_model()

    @property
    def database_url(self) -> str:
        url = self.database.url or default_database_url()
        prefix = "sqlite:///"
        if url.startswith(prefix) and url != "sqlite:///:memory:":
            rest = url[len(prefix):]
            if not rest.startswith("/"):
                return prefix + str(self.resolve(rest).absolute())
        return url


SECTIONS = {f.name: f.type for f in fields(Config) if f.name != "root"}


def _coerce(cls: type, name: str, value: Any, where: str) -> Any:
    """Convert a TOML or env value to the field's declared type."""
    default = next(f for f in fields(cls) if f.name == name).default
    if isinstance(value, str) and not isinstance(default, str):
        if isinstance(default, bool):
            low = value.strip().lower()
            if low not in {"1", "0", "true", "false", "yes", "no"}:
                raise ConfigError(f"{where}: expected true or false, got {value!r}")
            return low in {"1", "true", "yes"}
        if isinstance(default, tuple):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        try:
            if isinstance(default, int):
                return int(value)
            if isinstance(default, float) or default is None:
                return None if value.strip().lower() in {"", "none"} else float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _section(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(sorted(unknown))}; see tvcaption.toml")
    return cls(**{k: _coerce(cls, k, v, f"{where}.{k}") for k, v in values.items()})


def user_config_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir(APP))


def user_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir(APP))


def default_database_url() -> str:
    """SQLite in the user's data folder: ``index`` and ``search`` meet from any working folder."""
    return f"sqlite:///{user_data_dir() / 'tvcaption.db'}"


def find_config_file(explicit: str | Path | None = None, env: dict[str, str] | None = None) -> Path | None:
    """The config file in force: --config, $TVCAPTION_CONFIG, ./tvcaption.toml, or the user's one."""
    env = os.environ if env is None else env
    for candidate in (explicit, env.get(CONFIG_ENV)):
        if candidate:
            path = Path(candidate).expanduser()
            if not path.is_file():
                raise ConfigError(f"{path}: config file not found; pass an existing tvcaption.toml")
            return path
    for folder in (Path.cwd(), user_config_dir()):
        if (folder / CONFIG_NAME).is_file():
            return folder / CONFIG_NAME
    return None


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Defaults, then the TOML file, then TVCAPTION_<SECTION>__<FIELD> environment variables."""
    env = dict(os.environ if env is None else env)
    file = find_config_file(path, env)
    raw: dict[str, dict[str, Any]] = {}
    root = Path.cwd()
    if file is not None:
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML ({exc})") from None
        root = file.resolve().parent
        unknown = set(raw) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"{file}: unknown section(s) {', '.join(sorted(unknown))}")
    for key, value in env.items():
        if not key.startswith("TVCAPTION_") or "__" not in key:
            continue
        section, _, name = key[len("TVCAPTION_"):].lower().partition("__")
        if section not in SECTIONS:
            raise ConfigError(f"{key}: unknown section {section!r}")
        raw.setdefault(section, {})[name] = value
    parts = {name: _section(cls, raw.get(name, {}), f"{file or 'env'}[{name}]")
             for name, cls in ((f.name, f.default_factory) for f in fields(Config) if f.name != "root")}
    weights = parts["features"].resnet152_weights
    if weights and not Path(weights).expanduser().is_absolute():  # a path in the file is relative to the file
        parts["features"] = replace(parts["features"], resnet152_weights=str(root / weights))
    return Config(**parts, root=root)


def with_overrides(config: Config, section: str, **values: Any) -> Config:
    """Flags win: replace the non-None values in one section."""
    values = {k: v for k, v in values.items() if v is not None}
    if not values:
        return config
    return replace(config, **{section: replace(getattr(config, section), **values)})


def as_dict(config: Config) -> dict[str, Any]:
    out = dataclasses.asdict(config)
    out.pop("root")
    return out
