"""The analysers of a run, loaded once, fed scenes in batches: frames through the CNN when an
analyser needs features, then every analyser on a batch of scenes; memory stays flat.

:class:`Engine` is what the pipeline holds across recordings; it knows the analysers only
through their interface (:mod:`tvcaption.analysers.base`).
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from tvcaption.analysers import AnalyserContext, SceneInput, load_analysers
from tvcaption.config import Config
from tvcaption.scene import Scene

ProgressFn = Callable[[float, list[Scene]], None]  # (seconds of the recording done, scenes so far)
DEFAULT_FRAMES = 10  # frames sampled per scene when no analyser asks for a number
CAPTION_AND_TAGS = ("caption", "tags")  # stored as the caption model's name alone, as before analysers existed


class Engine:
    """The configured analysers (``[index] analysers``) and the CNN backbone they share."""

    def __init__(self, config: Config, background: bool = True):
        """Analysers built (cheap: what a claim and the decoder need). With ``background`` their
        models load in a thread of their own from :meth:`start_loading` on (the pipeline calls
        it as a recording's decoding starts: the connection, probe and claim before it are not
        slowed by the import of torch, and a run with nothing to index never loads them);
        otherwise here. Everything that runs a model waits for them (:meth:`wait_loaded`)."""
        from tvcaption.memory import map_big_blocks

        map_big_blocks()  # frames and batches come and go: keep them out of the heap
        self.config = config
        self.context = AnalyserContext(config)
        self.analysers = load_analysers(config.index.analysers, self.context)
        self.needs = frozenset().union(*(a.needs for a in self.analysers))
        self.frames = max((a.frames for a in self.analysers), default=0) or config.model.frames or DEFAULT_FRAMES
        wanted = [a.keep_frames for a in self.analysers if "frames" in a.needs]
        self.keep = 0 if not wanted else self.frames if None in wanted else min(self.frames, max(wanted))
        names = tuple(a.name for a in self.analysers)
        identities = [a.identity for a in self.analysers]
        # what the store records as "indexed with": every analyser's identity (the caption model
        # alone for caption and tags, as before analysers existed); another set indexes again
        self.model_name = identities[0] if names == CAPTION_AND_TAGS else "+".join(identities)
        infos = [a.model_info() for a in self.analysers if a.model_info()]
        base = infos[0] if infos else {"name": self.model_name}
        self.model_info = {**base, "name": self.model_name}
        if not background:
            self.wait_loaded()

    def start_loading(self) -> None:
        """Start loading the models in the background (once)."""
        if not self.context.loading_started:
            self.context.load_in_background(self.analysers, backbone="features" in self.needs)

    def wait_loaded(self) -> None:
        """Return once every model is loaded (starting that if it has not started); a failure to
        load is a :class:`~tvcaption.errors.ModelLoadError` (no recording can be indexed)."""
        self.start_loading()
        self.context.wait_loaded()

    @property
    def backbone(self):
        self.wait_loaded()
        return self.context.backbone

    def features(self, frames):
        """RGB frames (N, H, W, 3) of any size -> local features (N, 7, 7, C), a CNN batch at a time."""
        from tvcaption.features import extract

        self.wait_loaded()
        return extract(self.context.backbone, frames, self.config.features.batch_size)

    def companions(self, path) -> list:
        """Every file beside the recording that an analyser reads (sorted, each once)."""
        return sorted({str(f): f for a in self.analysers for f in a.companions(path)}.values(), key=str)

    def start_recording(self, info) -> None:
        """Tell every analyser that the scenes of this probed recording come next."""
        for analyser in self.analysers:
            analyser.start_recording(info)

    def analyse(self, inputs: Sequence[SceneInput]) -> list[Scene]:
        """Every analyser on the batch; the scenes with their annotations, in analyser order.
        Each analyser's scenes hold what the analysers before it said (``scene.annotations``)."""
        self.wait_loaded()
        from dataclasses import replace

        found: list[list] = [[] for _ in inputs]
        for analyser in self.analysers:
            seen = [replace(item, scene=item.scene.with_annotations(mine)) if mine else item
                    for item, mine in zip(inputs, found)]
            for mine, theirs in zip(found, analyser.analyse(seen), strict=True):
                mine.extend(theirs)
        return [item.scene.with_annotations(annotations) for item, annotations in zip(inputs, found)]

    def analyse_scenes(self, info, scenes: Sequence[Scene], chunk: int = 16) -> list[Scene]:
        """Two passes: scenes already detected, their frames read by seeking, a chunk at a time."""
        import numpy as np

        from tvcaption.video import read_cnn_frames, read_frames, sample_times, shown_picks

        results: list[Scene] = []
        for lo in range(0, len(scenes), chunk):
            part = scenes[lo:lo + chunk]
            times = [sample_times(s.start, s.end, self.frames) for s in part]
            frames = np.split(read_cnn_frames(info, np.concatenate(times)), len(part))  # as the single pass
            shown: list = [None] * len(part)
            if self.keep:  # the pictures analysers read, display-shaped (square pixels: the same frames)
                picks = shown_picks(self.frames, self.keep)
                shown = [f[picks] for f in frames] if info.square_pixels else \
                    np.split(read_frames(info, np.concatenate([t[picks] for t in times]))[0], len(part))
            results += self._run(part, times, frames, shown)
        return results

    def _run(self, scenes: Sequence[Scene], times: Sequence, frames: Sequence, shown: Sequence) -> list[Scene]:
        """Features for the scenes' frames (if needed), then the analysers."""
        features = [None] * len(scenes)
        if "features" in self.needs:
            import numpy as np

            batch = self.config.features.batch_size
            flat = np.concatenate(frames)
            import torch

            local = torch.cat([self.features(flat[i:i + batch]) for i in range(0, len(flat), batch)])
            features = list(local.split([len(f) for f in frames]))
        return self.analyse([self._input(*args) for args in zip(scenes, times, frames, features, shown)])

    def _input(self, scene: Scene, times, frames, features, shown=None) -> SceneInput:
        """What the analysers get of a scene: its display-shaped pictures ``shown`` (the frames at
        :func:`~tvcaption.video.shown_picks`) when an analyser reads pictures, and how many of its
        sampled frames (as the CNN read them) are blank (:mod:`tvcaption.blank`)."""
        from tvcaption.blank import blank_share

        blank = blank_share(frames)
        if not self.keep:
            return SceneInput(scene, times, None, None, features, blank)
        import numpy as np

        from tvcaption.video import shown_picks

        picks = shown_picks(len(frames), self.keep)
        if shown is None or len(shown) != len(picks):
            raise ValueError(f"{len(frames)} frames of a scene came with "
                             f"{'no' if shown is None else len(shown)} pictures for {len(picks)} to show")
        return SceneInput(scene, times, shown, np.asarray(times)[picks], features, blank)

    def analyse_stream(self, sampled: Iterable, chunk: int = 8, on_progress: ProgressFn | None = None) -> list[Scene]:
        """Analyse :class:`~tvcaption.stream.SampledScene` items as they come.

        Frames of consecutive scenes share CNN batches; only the scenes' features (and frames,
        when an analyser needs them) wait until ``chunk`` scenes are analysed together, so memory
        does not grow with the recording. ``on_progress(seconds, scenes)`` is called after every
        CNN batch with the end of the last scene through it and every analysed scene so far.
        """
        import numpy as np

        results: list[Scene] = []
        batch = max(self.frames, self.config.features.batch_size)
        waiting: list = []  # scenes whose frames are not through the CNN yet
        ready: list[SceneInput] = []  # scenes ready for the analysers
        cnn = "features" in self.needs

        def run_cnn() -> None:
            if waiting:
                local = self.features(np.concatenate([w.frames for w in waiting])) if cnn else None
                parts = local.split([len(w.frames) for w in waiting]) if cnn else [None] * len(waiting)
                ready.extend(self._input(w.scene, w.times, w.frames, x, w.shown) for w, x in zip(waiting, parts))
                waiting.clear()

        def run_analysers() -> None:
            if ready:
                results.extend(self.analyse(ready))
                ready.clear()

        for item in sampled:
            waiting.append(item)
            if len(waiting) * self.frames >= batch:
                run_cnn()
                if len(ready) >= chunk:
                    run_analysers()
                if on_progress:
                    on_progress(ready[-1].scene.end if ready else results[-1].end, results)
        run_cnn()
        run_analysers()
        if on_progress and results:
            on_progress(results[-1].end, results)
        return results

