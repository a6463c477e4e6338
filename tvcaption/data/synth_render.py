"""SynthTV rendering: natural-image actors, backgrounds, per-frame compositing, H.264 writing.

Actors are cut-outs of the photographs scikit-image ships (a cat, a cup, a rocket, ...), so that
frozen ImageNet features can tell their kinds apart; each is tinted towards one colour so that
colour is visible too. Everything here is a pure function of its arguments and of a
``numpy.random.Generator``: the same seed gives the same pixels.
"""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from tvcaption.errors import TvcaptionError

# --------------------------------------------------------------------------------------------
# Actor kinds: (skimage loader, crop rows, crop cols, mask) in the source image's pixels.
# mask: "ellipse" (soft ellipse inscribed in the crop), "squircle" (|x|^4 + |y|^4 <= 1: keeps more
# of the corners), "rect" (the crop, soft edges) or
# "silhouette" (binary image, dark = object).
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KindSource:
    image: str
    rows: tuple[int, int]
    cols: tuple[int, int]
    mask: str = "ellipse"


KIND_SOURCES: dict[str, KindSource] = {
    "cat": KindSource("chelsea", (10, 300), (70, 420)),
    "cup": KindSource("coffee", (0, 400), (40, 590)),
    "rocket": KindSource("rocket", (110, 427), (215, 425)),
    "astronaut": KindSource("astronaut", (0, 330), (40, 330)),
    "cameraman": KindSource("camera", (40, 512), (110, 430), "squircle"),
    "horse": KindSource("horse", (0, 328), (0, 400), "silhouette"),
    "coin": KindSource("coins", (13, 75), (302, 364)),
    "motorcycle": KindSource("stereo_motorcycle", (70, 465), (80, 700), "squircle"),
    "planet": KindSource("retina", (0, 1411), (0, 1411)),
    "flag": KindSource("astronaut", (0, 250), (0, 104), "rect"),
}

# RGB of each colour name (0-255).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 30, 30),
    "green": (40, 200, 50),
    "blue": (40, 90, 240),
    "yellow": (240, 220, 30),
    "white": (250, 250, 250),
    "purple": (160, 50, 210),
}

BACKGROUNDS = ("plain", "gradient", "textured", "panning")
BASE_SIDE = 192  # longest side of the cached cut-outs


def _skimage_image(name: str) -> np.ndarray:
    try:
        import skimage.data as skdata
    except ImportError:  # pragma: no cover - depends on the environment
        raise TvcaptionError(
            "SynthTV needs scikit-image (its sample photographs are the actors): pip install scikit-image"
        ) from None
    img = getattr(skdata, name)()
    if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity)
        img = img[0]
    return np.asarray(img)


def _soft_ellipse(h: int, w: int, edge: float = 0.08, power: float = 2.0) -> np.ndarray:
    """Soft-edged ellipse (power 2) or squircle (power 4) inscribed in an h x w box."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy = np.abs((yy + 0.5 - h / 2) / (h / 2))
    dx = np.abs((xx + 0.5 - w / 2) / (w / 2))
    r = (dx**power + dy**power) ** (1.0 / power)
    return np.clip((1.0 - r) / edge, 0.0, 1.0)


def _soft_rect(h: int, w: int, edge: int = 3) -> np.ndarray:
    y = np.minimum(np.arange(h) + 1, h - np.arange(h)).astype(np.float32)
    x = np.minimum(np.arange(w) + 1, w - np.arange(w)).astype(np.float32)
    return np.clip(np.minimum(y[:, None], x[None, :]) / edge, 0.0, 1.0)


@functools.lru_cache(maxsize=None)
def base_cutout(kind: str) -> np.ndarray:
    """RGBA float32 (H, W, 4) in [0, 1], longest side BASE_SIDE: the untinted cut-out of ``kind``."""
    from PIL import Image

    src = KIND_SOURCES[kind]
    img = _skimage_image(src.image)
    if src.mask == "silhouette":
        crop = img[src.rows[0] : src.rows[1], src.cols[0] : src.cols[1]]
        obj = ~crop.astype(bool)  # skimage's horse: True = background
        h, w = obj.shape
        shade = 0.55 + 0.35 * np.linspace(1, 0, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
        rng = np.random.default_rng(1234)
        shade = np.clip(shade + rng.normal(0, 0.04, (h, w)).astype(np.float32), 0, 1)
        rgb = np.repeat(shade[..., None], 3, axis=2)
        alpha = obj.astype(np.float32)
    else:
        crop = img[src.rows[0] : src.rows[1], src.cols[0] : src.cols[1]]
        if crop.ndim == 2:
            crop = np.repeat(crop[..., None], 3, axis=2)
        rgb = crop[..., :3].astype(np.float32) / 255.0
        if src.mask == "rect":
            alpha = _soft_rect(*crop.shape[:2])
        else:
            alpha = _soft_ellipse(*crop.shape[:2], power=4.0 if src.mask == "squircle" else 2.0)
    rgba = np.concatenate([rgb, alpha[..., None]], axis=2)
    h, w = rgba.shape[:2]
    scale = BASE_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    im = Image.fromarray((rgba * 255).astype(np.uint8), "RGBA").resize(size, Image.LANCZOS)
    return np.asarray(im).astype(np.float32) / 255.0


@functools.lru_cache(maxsize=256)
def tinted_sprite(kind: str, colour: str, side: int) -> np.ndarray:
    """RGBA uint8 sprite of ``kind`` tinted ``colour``, longest side ``side`` pixels."""
    from PIL import Image

    base = base_cutout(kind)
    rgb, alpha = base[..., :3], base[..., 3]
    lum = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    inside = lum[alpha > 0.5]
    lo, hi = (np.percentile(inside, [2, 98]) if inside.size else (0.0, 1.0))
    lum = np.clip((lum - lo) / max(hi - lo, 1e-3), 0, 1)
    col = np.array(COLOURS[colour], np.float32) / 255.0
    tint = col[None, None, :] * (0.3 + 0.7 * lum[..., None])
    out = 0.82 * tint + 0.18 * rgb
    rgba = np.concatenate([out, alpha[..., None]], axis=2)
    h, w = rgba.shape[:2]
    scale = side / max(h, w)
    size = (max(2, round(w * scale)), max(2, round(h * scale)))
    im = Image.fromarray(np.clip(rgba * 255 + 0.5, 0, 255).astype(np.uint8), "RGBA").resize(size, Image.LANCZOS)
    return np.asarray(im)


SIZE_FRACTION = {"small": 0.22, "big": 0.38}  # sqrt(sprite area) / frame side


def sprite_side(kind: str, size_name: str, frame_side: int) -> int:
    """Longest side in pixels of a 'small' or 'big' ``kind``: sizes are by area, so wide or tall
    kinds (motorcycle, flag) are as big as round ones."""
    h, w = base_cutout(kind).shape[:2]
    aspect = max(h, w) / min(h, w)
    return max(4, round(frame_side * SIZE_FRACTION[size_name] * math.sqrt(aspect)))


# --------------------------------------------------------------------------------------------
# Backgrounds
# --------------------------------------------------------------------------------------------


def _muted(rng: np.random.Generator, hue: float | None = None,
           value: tuple[float, float] = (0.18, 0.5)) -> np.ndarray:
    h = rng.random() if hue is None else hue % 1.0
    s = rng.uniform(0.1, 0.4)
    v = rng.uniform(*value)
    return np.array(colorsys.hsv_to_rgb(h, s, v), np.float32)


@functools.lru_cache(maxsize=None)
def _texture(name: str) -> np.ndarray:
    img = _skimage_image(name).astype(np.float32)
    if img.ndim == 3:
        img = img[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    img = img / 255.0
    lo, hi = np.percentile(img, [1, 99])
    return np.clip((img - lo) / max(hi - lo, 1e-3), 0, 1)


TEXTURES = ("brick", "grass", "gravel", "moon")


@dataclass
class Background:
    """A background: ``frame(i)`` gives the float32 RGB (H, W, 3) image of frame i."""

    kind: str
    image: np.ndarray  # float32 (H', W', 3), larger than the frame when panning
    width: int
    height: int
    velocity: tuple[float, float] = (0.0, 0.0)  # pixels per frame (x, y) when panning
    origin: tuple[float, float] = (0.0, 0.0)
    hue: float = 0.0

    def frame(self, i: int) -> np.ndarray:
        if self.kind != "panning":
            return self.image
        x = int(round(self.origin[0] + self.velocity[0] * i))
        y = int(round(self.origin[1] + self.velocity[1] * i))
        x = min(max(x, 0), self.image.shape[1] - self.width)
        y = min(max(y, 0), self.image.shape[0] - self.height)
        return self.image[y : y + self.height, x : x + self.width]


def make_background(kind: str, width: int, height: int, frames: int, rng: np.random.Generator,
                    hue: float | None = None, value: tuple[float, float] = (0.18, 0.5)) -> Background:
    from PIL import Image

    hue = rng.random() if hue is None else hue % 1.0
    if kind == "plain":
        img = np.broadcast_to(_muted(rng, hue, value), (height, width, 3)).copy()
    elif kind == "gradient":
        a, b = _muted(rng, hue, value), _muted(rng, hue + rng.uniform(0.15, 0.4), value)
        ang = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        t = (xx / width - 0.5) * math.cos(ang) + (yy / height - 0.5) * math.sin(ang)
        t = np.clip(t / 1.42 + 0.5, 0, 1)[..., None]
        img = a * (1 - t) + b * t
    elif kind in ("textured", "panning"):
        tex = _texture(TEXTURES[int(rng.integers(len(TEXTURES)))])
        pad = 1.0 if kind == "textured" else 1.6
        tw, th = int(width * pad), int(height * pad)
        scale = max(tw / tex.shape[1], th / tex.shape[0]) * rng.uniform(1.0, 1.5)
        big = np.asarray(
            Image.fromarray((tex * 255).astype(np.uint8)).resize(
                (max(tw, round(tex.shape[1] * scale)), max(th, round(tex.shape[0] * scale))), Image.BILINEAR
            )
        ).astype(np.float32) / 255.0
        y0 = int(rng.integers(0, big.shape[0] - th + 1))
        x0 = int(rng.integers(0, big.shape[1] - tw + 1))
        big = big[y0 : y0 + th, x0 : x0 + tw]
        base = _muted(rng, hue, value)
        img = base[None, None, :] * (0.55 + 0.75 * big[..., None])
        img = np.clip(img, 0, 1)
        if kind == "panning":
            room_x, room_y = tw - width, th - height
            speed = rng.uniform(0.4, 0.9) * min(room_x, room_y) / max(frames - 1, 1)
            ang = rng.uniform(0, 2 * math.pi)
            vx, vy = speed * math.cos(ang), speed * math.sin(ang)
            ox = room_x / 2 - vx * (frames - 1) / 2
            oy = room_y / 2 - vy * (frames - 1) / 2
            return Background(kind, img.astype(np.float32), width, height, (vx, vy), (ox, oy), hue)
    else:
        raise TvcaptionError(f"background {kind!r}: unknown; use one of {', '.join(BACKGROUNDS)} or mixed")
    return Background(kind, img.astype(np.float32), width, height, hue=hue)


# --------------------------------------------------------------------------------------------
# Objects and their motion
# --------------------------------------------------------------------------------------------


@dataclass
class Obj:
    """One object on screen: appearance plus a state function of time."""

    kind: str
    colour: str
    side: int  # sprite's longest side in pixels at scale 1
    state: Callable[[float], tuple[float, float, float, float, float]]  # t -> (cx, cy, scale, angle, alpha)


def _smooth(u: float) -> float:
    u = min(max(u, 0.0), 1.0)
    return u * u * (3 - 2 * u)


def action_state(action: str, cx: float, cy: float, t0: float, t1: float, frame: tuple[int, int],
                 rng: np.random.Generator) -> Callable[[float], tuple[float, float, float, float, float]]:
    """State function of an actor performing ``action`` during [t0, t1] seconds from (cx, cy)."""
    w, h = frame
    side = min(w, h)
    dur = max(t1 - t0, 1e-3)

    def prog(t: float) -> float:
        return min(max((t - t0) / dur, 0.0), 1.0)

    if action in ("move_left", "move_right", "move_up", "move_down"):
        dist = rng.uniform(0.5, 0.6)
        sign = -1.0 if action in ("move_left", "move_up") else 1.0
        horizontal = action in ("move_left", "move_right")
        full = w if horizontal else h
        start = (0.5 - sign * dist / 2) * full
        end = (0.5 + sign * dist / 2) * full

        def f(t: float):
            p = start + (end - start) * _smooth(prog(t))
            return (p, cy, 1.0, 0.0, 1.0) if horizontal else (cx, p, 1.0, 0.0, 1.0)

        return f
    if action == "grow":
        return lambda t: (cx, cy, 1.0 + 0.75 * _smooth(prog(t)), 0.0, 1.0)
    if action == "shrink":
        return lambda t: (cx, cy, 1.0 - 0.45 * _smooth(prog(t)), 0.0, 1.0)
    if action == "spin":
        turns = float(rng.choice([1.0, 1.5, 2.0])) * float(rng.choice([-1, 1]))
        return lambda t: (cx, cy, 1.0, 360.0 * turns * prog(t), 1.0)
    if action == "bounce":
        hops = int(rng.integers(2, 4))
        amp = 0.17 * side

        def f(t: float):
            p = prog(t)
            return (cx, cy - amp * abs(math.sin(math.pi * hops * p)), 1.0, 0.0, 1.0)

        return f
    if action == "shake":
        amp = 0.05 * side
        freq = rng.uniform(5.0, 7.0)

        def f(t: float):
            p = prog(t)
            env = math.sin(math.pi * p)
            return (cx + amp * env * math.sin(2 * math.pi * freq * (t - t0)), cy, 1.0, 0.0, 1.0)

        return f
    if action == "appear":
        return lambda t: (cx, cy, 1.0, 0.0, _smooth(prog(t)))
    if action == "disappear":
        return lambda t: (cx, cy, 1.0, 0.0, 1.0 - _smooth(prog(t)))
    raise ValueError(f"unknown action {action!r}")


def drift_state(cx: float, cy: float, vx: float, vy: float):
    return lambda t: (cx + vx * t, cy + vy * t, 1.0, 0.0, 1.0)


def _transformed(sprite: np.ndarray, scale: float, angle: float) -> np.ndarray:
    if abs(scale - 1.0) < 1e-3 and abs(angle) < 1e-3:
        return sprite
    from PIL import Image

    im = Image.fromarray(sprite, "RGBA")
    if abs(scale - 1.0) >= 1e-3:
        im = im.resize((max(2, round(im.width * scale)), max(2, round(im.height * scale))), Image.BILINEAR)
    if abs(angle) >= 1e-3:
        im = im.rotate(angle, resample=Image.BILINEAR, expand=True)
    return np.asarray(im)


def composite(canvas: np.ndarray, sprite: np.ndarray, cx: float, cy: float, alpha: float) -> None:
    """Alpha-blend an RGBA uint8 sprite centred at (cx, cy) onto a float32 RGB canvas in place."""
    if alpha <= 0.0:
        return
    h, w = sprite.shape[:2]
    x0 = int(round(cx - w / 2))
    y0 = int(round(cy - h / 2))
    H, W = canvas.shape[:2]
    sx0, sy0 = max(0, -x0), max(0, -y0)
    dx0, dy0 = max(0, x0), max(0, y0)
    dx1, dy1 = min(W, x0 + w), min(H, y0 + h)
    if dx1 <= dx0 or dy1 <= dy0:
        return
    patch = sprite[sy0 : sy0 + (dy1 - dy0), sx0 : sx0 + (dx1 - dx0)].astype(np.float32) * (1.0 / 255.0)
    a = patch[..., 3:4] * alpha
    region = canvas[dy0:dy1, dx0:dx1]
    region *= 1.0 - a
    region += patch[..., :3] * a


def render_frames(background: Background, objects: list[Obj], frames: int, fps: float) -> Iterator[np.ndarray]:
    """Yield RGB uint8 (H, W, 3) frames: background, then objects in list order (last on top)."""
    for i in range(frames):
        t = i / fps
        canvas = background.frame(i).copy()
        for obj in objects:
            cx, cy, scale, angle, alpha = obj.state(t)
            if alpha <= 0.0:
                continue
            sprite = tinted_sprite(obj.kind, obj.colour, obj.side)
            composite(canvas, _transformed(sprite, scale, angle), cx, cy, alpha)
        yield np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Video writing
# --------------------------------------------------------------------------------------------


class H264Writer:
    """Write RGB frames to an H.264 (yuv420p) MP4 with PyAV; single-threaded so bytes are reproducible."""

    def __init__(self, path: Path, width: int, height: int, fps: int, crf: int = 20, preset: str = "fast"):
        from fractions import Fraction

        import av
        from av.video.reformatter import VideoReformatter

        if width % 2 or height % 2:
            raise TvcaptionError(f"{path}: H.264 yuv420p needs even frame sizes, got {width}x{height}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._av = av
        self.container = av.open(str(self.path), mode="w")
        self.stream = self.container.add_stream("libx264", rate=Fraction(int(fps), 1))
        self.stream.width = width
        self.stream.height = height
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.thread_count = 1
        self.stream.codec_context.time_base = Fraction(1, int(fps))
        self.stream.options = {"preset": preset, "crf": str(crf), "threads": "1"}
        self.count = 0
        self._reformatter = VideoReformatter()  # keeps its swscale context between frames

    def write(self, frame: np.ndarray) -> None:
        vf = self._reformatter.reformat(self._av.VideoFrame.from_ndarray(frame, format="rgb24"), format="yuv420p")
        vf.pts = self.count
        self.count += 1
        for packet in self.stream.encode(vf):
            self.container.mux(packet)

    def write_all(self, frames: Iterable[np.ndarray]) -> int:
        for f in frames:
            self.write(f)
        return self.count

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()

    def __enter__(self) -> "H264Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
