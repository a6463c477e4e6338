"""What ``synth``, ``train`` and ``evaluate`` show: progress bars, log lines and result tables (rich).

The library reports progress through callbacks: ``on_progress(done, total)`` from
:func:`~tvcaption.data.generate_synthtv` and :func:`~tvcaption.features.build_cache`,
``on_progress(stage, done, total)`` from :func:`~tvcaption.evaluate.evaluate`, and
:class:`~tvcaption.train_loop.TrainEvent` from :func:`~tvcaption.train.train`. Only the CLI
(and the benchmarks), through this module, turns them into bars and lines. Bars are drawn on a
terminal only; log lines are printed everywhere, so a training log in a file reads the same.
Without a terminal (``nohup ... > log``) a bar becomes a line a minute while it runs, so an
hour of feature extraction is not silent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

if TYPE_CHECKING:
    from tvcaption.evaluate import EvalResult
    from tvcaption.train_loop import TrainEvent

EPOCH_METRICS = (("B4", "Bleu_4"), ("M", "METEOR"), ("R", "ROUGE_L"), ("C", "CIDEr"), ("slots", "slots"),
                 ("kind", "single_kind"), ("colour", "single_colour"), ("action", "single_action"))
STAGES = {"features": "features", "captions": "captioning"}


class Bar:
    """One rich progress bar at a time, replaced when the thing it counts changes (a terminal);
    elsewhere a plain line every ``every`` seconds while it runs (none for shorter work)."""

    def __init__(self, console: Console, transient: bool = True, loss: bool = False, every: float = 60.0):
        self.console = console
        self.enabled = console.is_terminal
        self.transient = transient
        self.loss = loss
        self.every = every
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._key: Any = None
        self._line: tuple[Any, float, float] | None = None  # key, started, last line printed (monotonic)

    def update(self, key: Any, description: str, done: int, total: int, loss: float | None = None) -> None:
        """Show ``done`` of ``total`` for ``key``; a new key starts a new bar, a full bar is put away."""
        if not self.enabled:
            self._print_line(key, description, done, total, loss)
            return
        if key != self._key or self._progress is None:
            self.close()
            self._start(key, description, total)
        fields = {"loss": loss} if loss is not None else {}
        self._progress.update(self._task, completed=done, total=max(total, 1), **fields)
        if done >= total:
            self.close()

    def _start(self, key: Any, description: str, total: int) -> None:
        columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
        if self.loss:
            columns.append(TextColumn("loss {task.fields[loss]:.3f}"))
        columns += [TimeElapsedColumn(), TimeRemainingColumn()]
        self._progress = Progress(*columns, console=self.console, transient=self.transient)
        self._task = self._progress.add_task(description, total=max(total, 1), loss=float("nan"))
        self._progress.start()
        self._key = key

    def _print_line(self, key: Any, description: str, done: int, total: int, loss: float | None) -> None:
        now = time.monotonic()
        if self._line is None or self._line[0] != key:
            self._line = (key, now, now)
            return
        _, started, last = self._line
        finished = done >= total
        # a line a minute; the closing one only for work that ran as long: short work stays quiet
        due = now - last >= self.every or (finished and now - started >= self.every)
        self._line = None if finished else (key, started, now) if due else self._line  # finished: the key is new work again
        if not due:
            return
        elapsed = now - started
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{description}: {done}/{total} ({100.0 * done / max(total, 1):.0f}%)"]
        if loss is not None and not math.isnan(loss):
            parts.append(f"loss {loss:.3f}")
        parts.append(f"{_duration(elapsed)}" if finished else
                     f"{rate:.1f} a second, ~{_duration((total - done) / rate)} left" if rate > 0 else "starting")
        self.console.print(escape(", ".join(parts)), highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress, self._task, self._key = None, None, None


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min" if seconds >= 3600 else \
        f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


@contextmanager
def count_progress(console: Console, description: str, transient: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A context giving ``on_progress(done, total)`` that draws one bar (synth, feature extraction)."""
    bar = Bar(console, transient=transient)
    try:
        yield lambda done, total: bar.update(description, description, done, total)
    finally:
        bar.close()


@contextmanager
def stage_progress(console: Console) -> Iterator[Callable[[str, int, int], None]]:
    """A context giving ``on_progress(stage, done, total)`` (evaluate): one bar per stage."""
    bar = Bar(console)
    try:
        yield lambda stage, done, total: bar.update(stage, STAGES.get(stage, stage), done, total)
    finally:
        bar.close()


def synth_summary(console: Console, out: Path, clips: int, broadcasts: int, seconds: float) -> None:
    console.print(escape(f"SynthTV: {clips} clips, {broadcasts} broadcasts in {seconds:.1f} s -> {out}"),
                  highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------
# Training: one line per stage and per epoch, a bar while features are extracted and epochs run
# ---------------------------------------------------------------------------------------------
def epoch_line(row: dict[str, Any], epochs: int, select: str) -> str:
    """One epoch's history row as one log line: losses, validation metrics, speed, best."""
    val = row.get("val", {})
    metrics = " ".join(f"{label} {val[k]:.3f}" for label, k in EPOCH_METRICS if k in val)
    return (f"epoch {row['epoch']}/{epochs} | train {row['train_loss']:.3f} (cap {row['train_caption']:.3f} "
            f"match {row['train_matching']:.3f}) | val {val.get('loss', float('nan')):.3f} {metrics} | "
            f"lr {row['lr']:.1e} | {row['seconds']:.1f} s (train {row['train_seconds']:.1f} s, "
            f"{row['clips_per_second']:.1f} clips/s; val {row.get('val_seconds', 0):.1f} s)"
            f"{f' | best {select}' if row.get('best') else ''}")


def train_line(event: TrainEvent) -> str | None:
    """The log line of a training event (None for the events drawn as bars)."""
    info = event.info
    if event.kind == "data":
        of = f" (of {info['val_total']})" if info["val_clips"] < info["val_total"] else ""
        return (f"data {info['data']}: {info['train_clips']} train clips, {info['val_clips']} val clips{of}, "
                f"vocabulary {info['vocab']}; features {info['backbone']} x {info['frames']} frames ready in "
                f"{info['seconds']:.1f} s ({'RAM' if info['in_ram'] else 'memory map'})")
    if event.kind == "resumed":
        return f"resumed from {info['state']} after epoch {info['epoch']} (step {info['step']})"
    if event.kind == "model":
        ranks = f" ({info['ranks']} ranks)" if info["ranks"] > 1 else ""
        amp = f" amp {info['amp']}" if info["amp"] else ""
        return (f"model {info['pooling']}{'+matching' if info['matching'] else ''}: "
                f"{info['parameters'] / 1e6:.2f} M parameters, hidden {info['hidden']}, {info['optimizer']} "
                f"lr {info['lr']:g}, batch {info['batch_size']}{ranks}, device {info['device']}{amp}, "
                f"threads {info['threads']}")
    if event.kind == "epoch":
        return epoch_line(event.row, event.epochs, event.select)
    if event.kind == "nothing":
        return f"nothing to do: {info['state']} already reached epoch {info['epoch']} of {event.epochs}"
    return None


class TrainView:
    """Draws :func:`~tvcaption.train.train`'s events: a bar while features are extracted, a bar
    per epoch with the running loss, and one line per stage and per epoch."""

    def __init__(self, console: Console):
        self.console = console
        self.features = Bar(console)
        self.batches = Bar(console, loss=True)

    def __enter__(self) -> TrainView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.features.close()
        self.batches.close()

    def __call__(self, event: TrainEvent) -> None:
        if event.kind == "features":
            self.features.update(event.split, f"features ({event.split})", event.done, event.total)
        elif event.kind == "batch":
            self.batches.update(event.epoch, f"epoch {event.epoch}/{event.epochs}", event.done, event.total, event.loss)
        else:
            line = train_line(event)
            if line is not None:
                self.console.print(line, markup=False, highlight=False, soft_wrap=True)  # paths may hold brackets


# ---------------------------------------------------------------------------------------------
# Evaluation tables
# ---------------------------------------------------------------------------------------------
def print_eval(result: EvalResult, console: Console | None = None) -> None:
    """Rich tables: metrics (model and floors side by side), then slot accuracy per subset."""
    from rich import box
    from rich.table import Table

    from tvcaption.metrics import METRIC_KEYS
    from tvcaption.slots import SLOT_NAMES

    console = console or Console()
    names = ["model", *result.floors]
    table = Table(title=escape(f"{Path(result.model).name} on {result.split} ({result.clips} clips)"))
    table.add_column("metric")
    for name in names:
        table.add_column(name, justify="right", style="bold" if name == "model" else "dim")
    rows = [(k, [result.metrics.get(k)] + [f.metrics.get(k) for f in result.floors.values()]) for k in METRIC_KEYS]
    if result.slots:
        for subset in result.slots:
            values = [result.slots[subset]["overall"]] + [(f.slots or {}).get(subset, {}).get("overall")
                                                          for f in result.floors.values()]
            rows.append((f"slots ({subset}, {result.slots[subset]['clips']:.0f})", values))
    for key, values in rows:
        table.add_row(key, *[_fmt(v) for v in values])
    console.print(table)
    if result.slots:
        # percentages and no vertical rules: 12 columns fit an 80-column terminal
        detail = Table(title="slot accuracy of the model, % (pos named: names a position at all)",
                       box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
        detail.add_column("subset")
        detail.add_column("clips", justify="right")
        columns = ("overall", "exact", *SLOT_NAMES, "position_named")
        for col in columns:
            detail.add_column({"overall": "slots", "position": "pos", "position_named": "pos named"}.get(col, col),
                              justify="right")
        for subset, row in result.slots.items():
            detail.add_row(subset, f"{row['clips']:.0f}", *[_percent(row[c]) for c in columns])
        console.print(detail)
    if "constant" in result.floors:
        caption = next(iter(result.floors["constant"].captions.values()), "")
        console.print(f"constant floor caption: [italic]{escape(caption)}[/]", highlight=False)


def _percent(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.3f}"
