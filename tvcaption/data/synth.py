"""SynthTV: a procedural video-captioning benchmark with ground-truth slots.

Each clip (2-4 s) shows one *actor* performing one action among 0-6 distractors that often
share its colour or kind but never act (static, or a slow drift); a third of the clips hold two
events in sequence. Actors are tinted cut-outs of scikit-image's sample photographs (see
:mod:`synth_render`), captions come from a grammar with synonyms (see :mod:`synth_grammar`).

On disk (MSR-VTT's ``videodatainfo`` format, read back by :func:`tvcaption.data.read_dataset`)::

    OUT/videos/<video_id>.mp4          H.264 yuv420p
    OUT/videodatainfo.json             videos (+ "slots", "hard", "novel"), sentences, info
    OUT/broadcasts/bcast_XXX.mp4|json  long recordings: scenes joined by hard cuts, true times
    OUT/generation.json                timing of the run (not part of the deterministic output)

Every clip draws from its own random stream ``SeedSequence([seed, 0, index])``, so the output
depends on the seed and the split sizes only, not on ``workers``.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tvcaption.data.synth_grammar import (
    ACTIONS,
    COLOUR_WORDS,
    KINDS,
    POSITIONS,
    SIZES,
    events_of,
    paraphrases,
    positions_for,
    slot_accuracy,
)
from tvcaption.errors import TvcaptionError

__all__ = [
    "generate_synthtv",
    "slot_accuracy",
    "sample_clip",
    "heldout_pairs",
    "is_hard",
    "KINDS",
    "COLOUR_WORDS",
    "SIZES",
    "ACTIONS",
    "POSITIONS",
    "BACKGROUND_CHOICES",
]

BACKGROUND_CHOICES = ("plain", "gradient", "textured", "panning", "mixed")
CATEGORY = 8  # MSR-VTT category "animation"
MIN_CAPTIONS = 10
POSITION_RULES = ("random", "offcentre")
HARD_SHARED = 3  # hard: at least this many distractors share a colour or a kind with an actor

_POS_XY = {
    "top_left": (0.25, 0.25),
    "top_right": (0.75, 0.25),
    "bottom_left": (0.25, 0.75),
    "bottom_right": (0.75, 0.75),
    "center": (0.5, 0.5),
}
_BAND = {"top": 0.22, "center": 0.5, "bottom": 0.78, "left": 0.22, "right": 0.78}


def heldout_pairs(seed: int) -> list[tuple[str, str]]:
    """Colour-kind pairs kept out of train and val (each colour once, on six different kinds)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    kinds = list(KINDS)
    colours = list(COLOUR_WORDS)
    chosen_kinds = [kinds[i] for i in rng.permutation(len(kinds))[: len(colours)]]
    chosen_colours = [colours[i] for i in rng.permutation(len(colours))]
    return sorted(zip(chosen_kinds, chosen_colours))


def is_hard(slots: dict) -> bool:
    """True when at least 3 distractors share a colour or a kind with an actor."""
    actors = events_of(slots)
    shared = sum(
        1
        for d in slots.get("distractors", [])
        if any(d["kind"] == a["kind"] or d["colour"] == a["colour"] for a in actors)
    )
    return shared >= HARD_SHARED


# --------------------------------------------------------------------------------------------
# Sampling a clip's content (slots + render plan)
# --------------------------------------------------------------------------------------------


def _pick(seq, rng):
    return seq[int(rng.integers(len(seq)))]


def _pair(rng, allowed: list[tuple[str, str]]) -> tuple[str, str]:
    return allowed[int(rng.integers(len(allowed)))]


def _event_xy(action: str, position: str, rng) -> tuple[float, float]:
    """Fractional (x, y) where an event happens (for moves: the band's coordinate)."""
    j = lambda: rng.uniform(-0.03, 0.03)  # noqa: E731
    if action in ("move_left", "move_right"):
        return 0.5, _BAND[position] + j()
    if action in ("move_up", "move_down"):
        return _BAND[position] + j(), 0.5
    x, y = _POS_XY[position]
    return x + j(), y + j()


def sample_clip(rng: np.random.Generator, *, size: int, fps: int, duration: float | None = None,
                background: str = "plain", forbidden: frozenset = frozenset(),
                novel: list[tuple[str, str]] | None = None, novel_rate: float = 0.0,
                two_event_rate: float = 1 / 3, position_rate: float = 0.4,
                position_rule: str = "offcentre", n_captions: int = 15) -> dict:
    """Draw one clip: slots, the render plan and reference captions (a JSON-able dict).

    ``position_rule`` decides which clips' captions name where the action happens: ``offcentre``
    (every clip with an event away from the centre, as a describer would: the centre goes
    unsaid) or ``random`` (a ``position_rate`` share of clips, by a coin the video does not show;
    the rule of SynthTV before 2026-11-24, kept to reproduce the ablation). The coin is drawn
    either way, so the rule changes the captions and never the video.
    """
    from tvcaption.data.synth_render import BACKGROUNDS

    # The draws from rng happen in a fixed order (the seed reproduces the clip): the number of
    # events, the duration, the novel-pair coin, the events, the position coin, their timing,
    # the distractors, the background, its seed, the captions' seed.
    two = rng.random() < two_event_rate
    if duration is None:
        duration = rng.uniform(3.0, 4.0) if two else rng.uniform(2.0, 4.0)
    frames = max(2, int(round(duration * fps)))
    duration = frames / fps
    allowed = [(k, c) for k in KINDS for c in COLOUR_WORDS if (k, c) not in forbidden]
    use_novel = bool(novel) and rng.random() < novel_rate
    events = _draw_events(rng, 2 if two else 1, allowed, novel if use_novel else None)
    says_position = bool(rng.random() < position_rate)
    if position_rule == "offcentre":
        says_position = any(ev["position"] != "center" for ev in events)
    _draw_timing(rng, events, duration)
    distractors = _draw_distractors(rng, events, forbidden, size, fps, duration)
    bg = background if background != "mixed" else _pick(list(BACKGROUNDS), rng)
    slots = {
        **{k: events[0][k] for k in ("kind", "colour", "size", "action", "position")},
        "says_position": says_position,
        "second": ({k: events[1][k] for k in ("kind", "colour", "size", "action", "position")}
                   if two else None),
        "events": events,
        "distractors": distractors,
        "background": bg,
        "background_seed": int(rng.integers(2**31)),
        "novel_pair": any((ev["kind"], ev["colour"]) in set(novel or ()) for ev in events),
        "duration": round(duration, 6),
        "frames": frames,
        "fps": fps,
        "frame_size": size,
    }
    slots["hard"] = is_hard(slots)
    caption_rng = np.random.default_rng(int(rng.integers(2**63)))
    public_events = [{k: ev[k] for k in ("kind", "colour", "size", "action", "position")} for ev in events]
    captions = paraphrases(public_events, says_position, n_captions, caption_rng)
    return {"slots": slots, "captions": captions}


def _draw_events(rng, count: int, allowed: list[tuple[str, str]],
                 novel: list[tuple[str, str]] | None) -> list[dict]:
    """``count`` events (actor, action, position); the first from the ``novel`` pairs when given."""
    events: list[dict] = []
    for e in range(count):
        action = _pick(list(ACTIONS), rng)
        size_name = "small" if action == "grow" else "big" if action == "shrink" else _pick(list(SIZES), rng)
        kind, colour = _pair(rng, novel) if (novel and e == 0) else _pair(rng, allowed)
        choices = [p for p in positions_for(action) if not events or p != events[0]["position"]]
        events.append({"kind": kind, "colour": colour, "size": size_name, "action": action,
                       "position": _pick(choices, rng)})
    return events


def _draw_timing(rng, events: list[dict], duration: float) -> None:
    """Each event's start and end (one window per event), place and motion seed, in place."""
    windows = [(0.08, 0.92)] if len(events) == 1 else [(0.05, 0.47), (0.53, 0.95)]
    for ev, (a, b) in zip(events, windows):
        a, b = a * duration, b * duration
        if ev["action"] in ("appear", "disappear"):
            fade = min(0.6, 0.5 * (b - a))
            t0 = a + rng.uniform(0.2, 0.6) * (b - a - fade)
            t1 = t0 + fade
        else:
            t0 = a + rng.uniform(0.0, 0.05) * duration
            t1 = b - rng.uniform(0.0, 0.05) * duration
        ev["start"], ev["end"] = round(t0, 4), round(t1, 4)
        x, y = _event_xy(ev["action"], ev["position"], rng)
        ev["x"], ev["y"] = round(x, 4), round(y, 4)
        ev["motion_seed"] = int(rng.integers(2**31))


def _draw_distractors(rng, events: list[dict], forbidden: frozenset, size: int, fps: int,
                      duration: float) -> list[dict]:
    """Objects that never act, away from the actors' paths; often sharing an actor's colour or kind."""
    from tvcaption.data.synth_render import SIZE_FRACTION

    kinds, colours = list(KINDS), list(COLOUR_WORDS)
    n_distractors = int(rng.integers(0, 7))
    occupancy = _actor_occupancy(events, size, fps, duration)
    distractors: list[dict] = []
    grid = occupancy.shape[0]
    for _ in range(n_distractors):
        ref = _pick(events, rng)
        for _try in range(30):
            kind = ref["kind"] if rng.random() < 0.4 else _pick(kinds, rng)
            colour = ref["colour"] if rng.random() < 0.4 else _pick(colours, rng)
            if (kind, colour) in forbidden:
                continue
            size_name = _pick(list(SIZES), rng)
            half = SIZE_FRACTION[size_name] / 2
            x, y = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9)
            box = _grid_box(x, y, half, grid)
            area = occupancy[box]
            if area.size == 0 or area.mean() > 0.2:
                continue
            drifting = rng.random() < 0.5
            speed = rng.uniform(0.004, 0.012) if drifting else 0.0  # fraction of the frame per second
            ang = rng.uniform(0, 2 * math.pi)
            distractors.append({"kind": kind, "colour": colour, "size": size_name, "x": round(x, 4),
                                "y": round(y, 4), "vx": round(speed * math.cos(ang), 5),
                                "vy": round(speed * math.sin(ang), 5)})
            occupancy[box] += 0.6
            break
    return distractors


def _grid_box(x: float, y: float, half: float, grid: int):
    x0, x1 = int(max(0, (x - half) * grid)), int(min(grid, math.ceil((x + half) * grid)))
    y0, y1 = int(max(0, (y - half) * grid)), int(min(grid, math.ceil((y + half) * grid)))
    return slice(y0, y1), slice(x0, x1)


def _objects(slots: dict, size: int, only_actors: bool = False):
    """Render objects (distractors first, actors on top) from the stored plan."""
    from tvcaption.data.synth_render import Obj, action_state, drift_state, sprite_side

    objs = []
    if not only_actors:
        for d in slots["distractors"]:
            objs.append(Obj(d["kind"], d["colour"], sprite_side(d["kind"], d["size"], size),
                            drift_state(d["x"] * size, d["y"] * size, d["vx"] * size, d["vy"] * size)))
    for ev in slots["events"]:
        rng = np.random.default_rng(ev["motion_seed"])
        state = action_state(ev["action"], ev["x"] * size, ev["y"] * size, ev["start"], ev["end"],
                             (size, size), rng)
        objs.append(Obj(ev["kind"], ev["colour"], sprite_side(ev["kind"], ev["size"], size), state))
    return objs


def _actor_occupancy(events: list[dict], size: int, fps: int, duration: float, grid: int = 32) -> np.ndarray:
    """Coarse map of where actors go during the clip (to keep distractors off their path)."""
    slots = {"distractors": [], "events": events}
    occ = np.zeros((grid, grid), np.float32)
    for obj in _objects(slots, size, only_actors=True):
        for t in np.linspace(0, duration, 16):
            cx, cy, scale, angle, _alpha = obj.state(float(t))
            half = obj.side * scale * (0.71 if angle else 0.5) / size
            occ[_grid_box(cx / size, cy / size, half, grid)] = 1.0
    return occ


def render_clip(slots: dict, path: Path) -> int:
    """Render a clip's slots to an H.264 MP4; returns the number of frames written."""
    from tvcaption.data.synth_render import H264Writer, make_background, render_frames

    size, fps, frames = slots["frame_size"], slots["fps"], slots["frames"]
    bg_rng = np.random.default_rng(slots["background_seed"])
    kw = {}
    if "background_hue" in slots:
        kw = {"hue": slots["background_hue"], "value": tuple(slots["background_value"])}
    background = make_background(slots["background"], size, size, frames, bg_rng, **kw)
    with H264Writer(path, size, size, fps) as writer:
        return writer.write_all(render_frames(background, _objects(slots, size), frames, fps))


# --------------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------------


def _split_of(index: int, train: int, val: int) -> str:
    return "train" if index < train else "validate" if index < train + val else "test"


def _clip_task(args: tuple) -> dict:
    index, out, cfg = args
    split = _split_of(index, cfg["train"], cfg["val"])
    rng = np.random.default_rng(np.random.SeedSequence([cfg["seed"], 0, index]))
    heldout = [tuple(p) for p in cfg["heldout"]]
    clip = sample_clip(
        rng, size=cfg["size"], fps=cfg["fps"], background=cfg["background"],
        forbidden=frozenset(heldout) if split != "test" else frozenset(),
        novel=heldout if split == "test" else None, novel_rate=cfg["novel_rate"],
        two_event_rate=cfg["two_event_rate"], position_rate=cfg["position_rate"],
        position_rule=cfg["position_rule"], n_captions=cfg["captions_per_clip"],
    )
    video_id = f"synth{index:06d}"
    if cfg["write_videos"]:
        render_clip(clip["slots"], Path(out) / "videos" / f"{video_id}.mp4")
    return {"index": index, "video_id": video_id, "split": split, **clip}


def _broadcast_task(args: tuple) -> dict:
    """One long recording: scenes of 3-8 s with alternating backgrounds, joined by hard cuts."""
    from tvcaption.data.synth_render import BACKGROUNDS, H264Writer, make_background, render_frames

    b, out, cfg = args
    rng = np.random.default_rng(np.random.SeedSequence([cfg["seed"], 1, b]))
    size, fps = cfg["size"], cfg["fps"]
    target = cfg["broadcast_seconds"]
    name = f"bcast_{b:03d}"
    scenes = []
    frame = 0
    prev_bg, hue = None, rng.random()
    path = Path(out) / "broadcasts" / f"{name}.mp4"
    with H264Writer(path, size, size, fps) as writer:
        remaining = float(target)
        while remaining > 0.5 or not scenes:
            # scenes of 3-8 s; the last one lands the total near broadcast_seconds
            dur = max(3.0, remaining) if remaining <= 8.0 else rng.uniform(3.0, min(8.0, remaining - 3.0))
            bg = _pick([k for k in BACKGROUNDS if k != prev_bg], rng)
            hue = (hue + rng.uniform(0.3, 0.7)) % 1.0
            value = (0.12, 0.25) if len(scenes) % 2 == 0 else (0.38, 0.55)
            clip = sample_clip(rng, size=size, fps=fps, duration=dur, background=bg,
                               two_event_rate=cfg["two_event_rate"], position_rate=cfg["position_rate"],
                               position_rule=cfg["position_rule"],
                               n_captions=cfg["captions_per_clip"])
            slots = clip["slots"]
            slots["background_hue"], slots["background_value"] = round(hue, 6), list(value)
            background = make_background(bg, size, size, slots["frames"],
                                         np.random.default_rng(slots["background_seed"]), hue=hue, value=value)
            n = writer.write_all(render_frames(background, _objects(slots, size), slots["frames"], fps)) - frame
            scenes.append({"index": len(scenes), "start": frame / fps, "end": (frame + n) / fps,
                           "start_frame": frame, "end_frame": frame + n, "background": bg,
                           "captions": clip["captions"], "slots": slots})
            frame += n
            remaining -= n / fps
            prev_bg = bg
    info = {"video": f"{name}.mp4", "fps": fps, "width": size, "height": size, "frames": frame,
            "duration": frame / fps, "seed": cfg["seed"], "scenes": scenes}
    (Path(out) / "broadcasts" / f"{name}.json").write_text(json.dumps(info, indent=1))
    return {"name": name, "frames": frame, "scenes": len(scenes)}


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def generate_synthtv(out: Path | str, train: int = 10000, val: int = 500, test: int = 1000, seed: int = 0,
                     background: str = "plain", size: int = 128, fps: int = 25, broadcasts: int = 0,
                     workers: int = 1, *, captions_per_clip: int = 15,
                     broadcast_seconds: float = 180.0, two_event_rate: float = 1 / 3,
                     position_rate: float = 0.4, position_rule: str = "offcentre", novel_rate: float = 0.3,
                     write_videos: bool = True, on_progress: Callable[[int, int], None] | None = None) -> Path:
    """Generate SynthTV into ``out``; returns ``out``. Deterministic for given arguments (any ``workers``).

    ``background``: plain | gradient | textured | panning | mixed (random per clip).
    ``broadcasts``: number of long recordings (~``broadcast_seconds`` each) in ``out/broadcasts``.
    ``novel_rate``: share of test clips whose actor has a colour-kind pair never seen in train/val.
    ``position_rule``: random | offcentre, which clips' captions name a position (see sample_clip).
    ``write_videos=False`` writes the annotations only (same content as with videos).
    ``on_progress(done, total)``: clips and broadcasts written so far, of all (0 first).
    """
    out = Path(out)
    if background not in BACKGROUND_CHOICES:
        raise TvcaptionError(f"background {background!r}: unknown; use one of {', '.join(BACKGROUND_CHOICES)}")
    if size < 64 or size % 2:
        raise TvcaptionError(f"size {size}: SynthTV frames need an even side of at least 64 pixels (default 128)")
    if min(train, val, test, broadcasts) < 0 or train + val + test + broadcasts == 0:
        raise TvcaptionError("SynthTV split sizes must be >= 0 and not all zero")
    if position_rule not in POSITION_RULES:
        raise TvcaptionError(f"position rule {position_rule!r}: unknown; use one of {', '.join(POSITION_RULES)}")
    if captions_per_clip < MIN_CAPTIONS:
        raise TvcaptionError(f"captions_per_clip {captions_per_clip}: SynthTV writes at least {MIN_CAPTIONS}")
    if not 1 <= fps <= 120:
        raise TvcaptionError(f"fps {fps}: use a frame rate between 1 and 120 (default 25)")
    try:
        (out / "videos").mkdir(parents=True, exist_ok=True)
        if broadcasts:
            (out / "broadcasts").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TvcaptionError(
            f"{out}: cannot create the output folder ({exc.strerror}); choose a writable path") from None

    total = train + val + test
    held = heldout_pairs(seed)
    cfg = {"train": train, "val": val, "seed": seed, "size": size, "fps": fps, "background": background,
           "heldout": held, "novel_rate": novel_rate, "two_event_rate": two_event_rate,
           "position_rate": position_rate, "position_rule": position_rule, "captions_per_clip": captions_per_clip,
           "broadcast_seconds": broadcast_seconds, "write_videos": write_videos}
    _remove_stale(out, total, broadcasts)

    started = time.perf_counter()
    clip_tasks = [(i, str(out), cfg) for i in range(total)]
    bcast_tasks = [(b, str(out), cfg) for b in range(broadcasts)]
    results = _run(clip_tasks, bcast_tasks, workers, on_progress)
    clip_results = sorted((r for r in results if "video_id" in r), key=lambda r: r["index"])

    videos, sentences = [], []
    sen_id = 0
    for r in clip_results:
        slots = r["slots"]
        videos.append({
            "category": CATEGORY, "url": "", "video_id": r["video_id"], "start time": 0.0,
            "end time": slots["duration"], "split": r["split"], "id": r["index"],
            "slots": slots, "hard": slots["hard"], "novel": slots["novel_pair"],
        })
        for c in r["captions"]:
            sentences.append({"caption": c, "video_id": r["video_id"], "sen_id": sen_id})
            sen_id += 1
    info = {
        "year": "2026", "version": "1.0", "description": "SynthTV: procedural video captioning with slots",
        "contributor": "tvcaption", "data_created": "", "generator": "tvcaption.data.synth",
        "seed": seed, "size": size, "fps": fps, "background": background, "position_rule": position_rule,
        "splits": {"train": train, "validate": val, "test": test},
        "heldout_pairs": [list(p) for p in held],
        "kinds": list(KINDS), "colours": list(COLOUR_WORDS), "sizes": list(SIZES),
        "actions": list(ACTIONS), "positions": list(POSITIONS), "hard_shared": HARD_SHARED,
    }
    tmp = out / "videodatainfo.json.tmp"
    tmp.write_text(json.dumps({"info": info, "videos": videos, "sentences": sentences}))
    os.replace(tmp, out / "videodatainfo.json")
    elapsed = time.perf_counter() - started
    stats = {"clips": total, "broadcasts": broadcasts, "broadcast_seconds": broadcast_seconds if broadcasts else 0,
             "size": size, "workers": workers, "videos": write_videos, "seconds": round(elapsed, 3),
             "clips_per_second": round(total / elapsed, 2) if total and not broadcasts else None}
    (out / "generation.json").write_text(json.dumps(stats, indent=1))
    return out


def _remove_stale(out: Path, total: int, broadcasts: int) -> None:
    """Delete clips/broadcasts of an earlier, larger run in the same folder (our names only)."""
    for p in (out / "videos").glob("synth*.mp4"):
        m = re.fullmatch(r"synth(\d{6})\.mp4", p.name)
        if m and int(m.group(1)) >= total:
            p.unlink()
    bdir = out / "broadcasts"
    if bdir.is_dir():
        for p in bdir.glob("bcast_*"):
            m = re.fullmatch(r"bcast_(\d{3})\.(mp4|json)", p.name)
            if m and int(m.group(1)) >= broadcasts:
                p.unlink()


def _run(clip_tasks: list, bcast_tasks: list, workers: int,
         on_progress: Callable[[int, int], None] | None) -> list[dict]:
    tasks = [(_broadcast_task, t) for t in bcast_tasks] + [(_clip_task, t) for t in clip_tasks]
    report = on_progress or (lambda done, total: None)
    results: list[dict] = []
    report(0, len(tasks))
    if workers <= 1 or len(tasks) <= 1:
        for fn, t in tasks:
            results.append(fn(t))
            report(len(results), len(tasks))
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        with ctx.Pool(workers) as pool:
            chunk = max(1, min(16, len(tasks) // (workers * 8)))
            for r in pool.imap_unordered(_call, tasks, chunksize=chunk):
                results.append(r)
                report(len(results), len(tasks))
    return results


def _call(item):
    fn, t = item
    return fn(t)

