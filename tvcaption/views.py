"""What the command line shows: progress bars, tables and result lists, drawn with rich.

The library reports progress through callbacks (:class:`~tvcaption.pipeline.IndexEvent`,
``on_progress(seconds, captions)``); only the CLI, through this module, turns them into bars.
Everything here is laid out to stay readable in an 80-column terminal.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


def timecode(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def shown_name(path: str) -> str:
    """A file name as one printable line (a newline in a name must not break the layout)."""
    return "".join(ch if ch.isprintable() else "?" for ch in path)


@contextmanager
def status(console: Console, message: str) -> Iterator[None]:
    """A spinner while something without steps runs (loading the model)."""
    if console.is_terminal:
        with console.status(message):
            yield
    else:
        yield


class IndexView:
    """Draws :func:`~tvcaption.pipeline.index_paths` events: one bar for the batch by bytes (so
    the ETA means something from the first recording on), one for the recording being captioned
    by seconds, and one line per failed or skipped-by-takeover file, printed once."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=20),
                                 TextColumn("{task.fields[files]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=console, transient=False)
        self.batch: TaskID | None = None
        self.current: TaskID | None = None
        self.finished_bytes = 0  # bytes of recordings dealt with
        self.seen = 0
        self.files = 0

    def __enter__(self) -> "IndexView":
        self.progress.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        from tvcaption.errors import ModelLoadError

        self._drop_current()
        if exc_type is not None and issubclass(exc_type, ModelLoadError):
            self.progress.live.transient = True  # nothing was indexed: the error line alone
        self.progress.stop()

    def _drop_current(self) -> None:
        if self.current is not None:
            self.progress.remove_task(self.current)
            self.current = None

    def _advance(self, event) -> None:
        self.seen += 1
        self.finished_bytes += event.size
        self._drop_current()
        if self.batch is not None:
            self.progress.update(self.batch, completed=self.finished_bytes, files=f"{self.seen}/{self.files} files")

    def __call__(self, event) -> None:
        kind = event.kind
        if kind == "start":
            self.files = event.files
            self.batch = self.progress.add_task("indexing", total=max(event.size, 1), files=f"0/{event.files} files")
        elif kind == "file":
            name = shown_name(Path(event.path).name)
            label = "  " + (name if len(name) <= 24 else name[:23] + "\u2026")
            self.current = self.progress.add_task(label, total=max(event.duration, 1e-3), files="0 scenes")
        elif kind == "progress":
            if self.current is not None:
                self.progress.update(self.current, completed=event.done, files=f"{event.scenes} scenes")
            if self.batch is not None and event.duration > 0:
                part = event.size * min(event.done / event.duration, 1.0)
                self.progress.update(self.batch, completed=self.finished_bytes + part)
        elif kind in ("done", "skipped", "failed"):
            if kind == "failed":
                self.console.print(f"[red]failed[/] {escape(shown_name(event.message))}", highlight=False, soft_wrap=True)
            elif kind == "skipped" and "another worker" in event.message:
                self.console.print(f"[yellow]skipped[/] {escape(shown_name(event.message))}", highlight=False,
                                   soft_wrap=True)
            if event.path and (kind != "failed" or self.batch is not None):
                self._advance(event)


def print_summary(report, console: Console, extensions: Sequence[str] = ()) -> None:
    """The end of ``index``: counts in one table; failures were printed as they happened."""
    from rich.table import Table

    table = Table(title="index summary")
    table.add_column("indexed", justify="right")
    table.add_column("scenes", justify="right")
    table.add_column("skipped", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("speed", justify="right")
    rtf = report.recording_seconds / report.wall_seconds if report.wall_seconds else 0.0
    speed = f"{rtf:.1f}x real time" if report.done else "-"  # nothing indexed: no speed to show
    table.add_row(str(len(report.done)), str(sum(n for _, n, _ in report.done)), str(len(report.skipped)),
                  str(len(report.failed)), speed)
    console.print(table)
    if report.failed:
        console.print(f"{len(report.failed)} file(s) failed; each is named above with the fix", highlight=False)
    if report.files == 0 and not report.failed:
        exts = " ".join(extensions)
        console.print(f"no recordings found: tvcaption indexes files ending in {exts} "
                      "(set \\[index] extensions to add others)", highlight=False, soft_wrap=True)


def caption_progress(console: Console, duration: float):
    """A context giving ``on_progress(seconds, captions)`` that draws one bar in seconds."""
    progress = Progress(TextColumn("captioning"), BarColumn(), TextColumn("{task.fields[scenes]} scenes"),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True)
    task = progress.add_task("captioning", total=max(duration, 1e-3), scenes=0)

    def on_progress(seconds: float, captions: list) -> None:
        progress.update(task, completed=seconds, scenes=len(captions))

    class _Ctx:
        def __enter__(self):
            progress.start()
            return on_progress

        def __exit__(self, *exc):
            progress.stop()

    return _Ctx()


def print_captions(result, console: Console) -> None:
    """``tvcaption caption``: the recording on its own line, then one row per scene."""
    from rich.table import Table

    console.print(escape(f"{shown_name(result.recording)} ({timecode(result.duration)})"), soft_wrap=True)
    table = Table()
    table.add_column("#", justify="right")
    table.add_column("start \u2013 end", no_wrap=True)
    table.add_column("caption")
    table.add_column("tags", style="dim")
    for i, scene in enumerate(result.scenes, 1):
        table.add_row(str(i), f"{timecode(scene.start)}\n{timecode(scene.end)}", caption_line(scene),
                      escape(", ".join(scene.tags[:3])))
    console.print(table)


def print_hits(hits, query: str, console: Console, where: str = "") -> None:
    """Search results as a list that reads at 80 columns: rank, file name and the full start and
    end timecodes on the first line, the caption below, then tags and the folder."""
    head = f"{len(hits)} result(s) for {query!r}" + (f" in {where}" if where else "")
    console.print(escape(head), highlight=False, soft_wrap=True)
    for rank, h in enumerate(hits, 1):
        folder, name = os.path.split(shown_name(h.recording))
        console.print()
        console.print(f"[bold]{rank:>3}[/]  [bold cyan]{escape(name)}[/]  {timecode(h.start)} \u2192 {timecode(h.end)}",
                      highlight=False, soft_wrap=True)
        shown = caption_line(h)
        if shown:  # none when the caption is hidden as out of domain, or no caption analyser ran
            console.print(f"     {shown}", highlight=False)
        for kind, texts in other_annotations(h):
            console.print(f"     {escape(KIND_LABELS.get(kind, kind))}: {escape(' | '.join(texts))}", highlight=False)
        if h.tags:
            console.print(f"     [dim]tags: {escape(', '.join(h.tags))}[/]", highlight=False)
        score = f"  score {h.score:.3f}"
        console.print(f"     [dim]in {escape(shorten(folder or '.', console.width - 8 - len(score)))}{score}[/]",
                      highlight=False, soft_wrap=True)


OUT_OF_DOMAIN = "[out of domain]"  # before a caption the model wrote of a scene unlike its training data


def caption_line(item) -> str:
    """The caption as shown (markup): a reviewer's correction with who made it; an out-of-domain
    one (only there with ``--all-captions``) dimmed after the mark, with its distance from the
    training data against the threshold."""
    found = item.of_kind("caption")
    if found and found[0].analyser == "review":  # a reviewer's correction (tvcaption serve), read first
        by = (found[0].data or {}).get("by", "")
        return f"{escape(item.caption)} [dim]{escape(f'(corrected by {by})')}[/]"
    if not found or not found[0].hidden:
        return escape(item.caption)
    data = dict(found[0].data or {})
    how_far = ""
    if "domain_distance" in data and "domain_threshold" in data:
        how_far = f" (distance {data['domain_distance']:.2f} > {data['domain_threshold']:.2f})"
    return f"[yellow]{escape(OUT_OF_DOMAIN)}[/] [dim]{escape(found[0].text)}{escape(how_far)}[/]"


KIND_LABELS = {"text": "on screen", "speech": "said"}  # how a kind of annotation is named where a person reads it


def other_annotations(item) -> list[tuple[str, list[str]]]:
    """What analysers besides caption and tags said, grouped by kind in the order they said it."""
    grouped: dict[str, list[str]] = {}
    for a in item.annotations:
        if a.kind not in ("caption", "tag"):
            grouped.setdefault(a.kind, []).append(a.text)
    return list(grouped.items())


def shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, keeping its end (a folder's last parts say most)."""
    width = max(width, 8)
    return text if len(text) <= width else "\u2026" + text[-(width - 1):]
