"""The ``tvcaption`` command line: each command parses, loads config, calls one library function, prints.

Heavy modules (torch, decord, scenedetect) are imported inside the commands that need them, so
``tvcaption --help`` and ``tvcaption search`` start fast.
"""

from __future__ import annotations

import functools
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape  # paths and messages are text: "[bbc] news.ts" is not a style tag

from tvcaption.config import Config, load_config, with_overrides
from tvcaption.errors import TvcaptionError

app = typer.Typer(
    help="Describe, index and search TV recordings with scene captions (L-STAP).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help strings name config sections like [train]: not markup
)
db_app = typer.Typer(help="Manage the database schema (Alembic migrations).", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="tvcaption.toml to use (default: ./tvcaption.toml).")]
DbOpt = Annotated[Optional[str], typer.Option("--db", help="Database URL; overrides [database] url.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def friendly(fn: Callable) -> Callable:
    """User errors end in one line on stderr and exit 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TvcaptionError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def _config(path: Path | None, db: str | None = None) -> Config:
    config = load_config(path)
    return with_overrides(config, "database", url=db)


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def timecode(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


@app.command()
@friendly
def caption(
    video: Annotated[Path, typer.Argument(help="A recording (MPEG-TS, MP4, MKV, MXF, AVI, ...).")],
    model: Annotated[Optional[Path], typer.Option(help="Checkpoint stem; overrides [model] path.")] = None,
    beam_size: Annotated[Optional[int], typer.Option(help="Beam width (1 = greedy).")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Split one recording into scenes and caption each scene."""
    from tvcaption.pipeline import caption_recording

    cfg = _config(config)
    cfg = with_overrides(cfg, "model", path=str(model) if model else None)
    cfg = with_overrides(cfg, "decoding", beam_size=beam_size)
    result = caption_recording(video, cfg, progress=not as_json)
    if as_json:
        _print_json(result.to_json())
        return
    from rich.table import Table

    # the path goes on a line of its own: as a table title it would be wrapped at the table's width
    out.print(escape(f"{video} ({timecode(result.duration)})"), soft_wrap=True)
    table = Table()
    table.add_column("#", justify="right")
    table.add_column("start")
    table.add_column("end")
    table.add_column("caption")
    table.add_column("tags", style="dim")
    for i, scene in enumerate(result.scenes, 1):
        table.add_row(str(i), timecode(scene.start), timecode(scene.end), escape(scene.caption),
                      escape(", ".join(scene.tags[:3])))
    out.print(table)


@app.command()
@friendly
def index(
    paths: Annotated[list[Path], typer.Argument(help="Recordings or folders to index.")],
    reindex: Annotated[bool, typer.Option(help="Index again even when already done with the same model.")] = False,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Index recordings: scenes, captions and tags into the database (skips what is already done)."""
    from tvcaption.pipeline import index_paths, print_summary

    cfg = _config(config, db)
    report = index_paths(paths, cfg, reindex=reindex, console=err)
    print_summary(report, out)
    if report.failed:
        raise typer.Exit(1)


@app.command()
@friendly
def search(
    query: Annotated[str, typer.Argument(help="Words to find in captions and tags (plain text, not SQL).")],
    limit: Annotated[int, typer.Option(help="At most this many results.")] = 20,
    recording: Annotated[Optional[str], typer.Option(help="Only this recording (its path).")] = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Find the moments whose captions or tags match QUERY, best first."""
    from tvcaption.db.search import search as run_search
    from tvcaption.db.store import connect

    cfg = _config(config, db)
    hits = run_search(connect(cfg.database_url), query, limit=limit, recording=recording)
    if as_json:
        _print_json([{"recording": h.recording, "start": h.start, "end": h.end, "caption": h.caption,
                      "tags": list(h.tags), "score": h.score} for h in hits])
        return
    from rich.table import Table

    table = Table(title=escape(f"{len(hits)} result(s) for {query!r}"))
    for col in ("recording", "time", "caption", "tags", "score"):
        table.add_column(col)
    for h in hits:
        table.add_row(escape(h.recording), f"{timecode(h.start)}-{timecode(h.end)}", escape(h.caption),
                      escape(", ".join(h.tags[:3])), f"{h.score:.3f}")
    out.print(table)


class ExportFormat(str, Enum):
    srt = "srt"
    vtt = "vtt"
    json = "json"


@app.command()
@friendly
def export(
    recording: Annotated[Optional[str], typer.Argument(help="Recording path as indexed.")] = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="srt, vtt (WebVTT descriptions) or json.")] = ExportFormat.srt,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the files.")] = Path("."),
    all_: Annotated[bool, typer.Option("--all", help="Export every indexed recording.")] = False,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Write a recording's scene captions as SRT, WebVTT or JSON."""
    from tvcaption.db.store import connect
    from tvcaption.export import export_all, export_recording

    if not all_ and recording is None:
        raise TvcaptionError("export: name a RECORDING or pass --all")
    cfg = _config(config, db)
    engine = connect(cfg.database_url)
    written = export_all(engine, fmt.value, out_dir) if all_ else [export_recording(engine, recording, fmt.value, out_dir)]
    for path in written:
        out.print(escape(str(path)))


class PositionRule(str, Enum):
    random = "random"
    offcentre = "offcentre"


class Background(str, Enum):
    plain = "plain"
    gradient = "gradient"
    textured = "textured"
    panning = "panning"
    mixed = "mixed"


@app.command()
@friendly
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write SynthTV into (videos/ + videodatainfo.json).")],
    train: Annotated[int, typer.Option(help="Training clips.")] = 10000,
    val: Annotated[int, typer.Option(help="Validation clips.")] = 500,
    test: Annotated[int, typer.Option(help="Test clips.")] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 0,
    background: Annotated[Background, typer.Option(help="Background difficulty.")] = Background.plain,
    size: Annotated[int, typer.Option(help="Frame width and height in pixels.")] = 128,
    broadcasts: Annotated[int, typer.Option(help="Also write this many long recordings of scenes joined by hard cuts.")] = 0,
    broadcast_seconds: Annotated[float, typer.Option(help="Length of each broadcast in seconds.")] = 180.0,
    workers: Annotated[int, typer.Option(help="Processes rendering clips.")] = 1,
    videos: Annotated[bool, typer.Option(help="Write video files (--no-videos: annotations only).")] = True,
    position_rule: Annotated[PositionRule, typer.Option(
        help="Which captions name where the action happens: 'offcentre' (every clip whose action is "
             "away from the centre) or 'random' (40% of clips by a coin the video does not show; the "
             "rule the ablation in the README was run with).")] = PositionRule.offcentre,
) -> None:
    """Generate SynthTV, a procedural video-captioning benchmark with ground-truth slots."""
    from tvcaption.data import generate_synthtv

    path = generate_synthtv(out_dir, train=train, val=val, test=test, seed=seed, background=background.value,
                            size=size, broadcasts=broadcasts, broadcast_seconds=broadcast_seconds, workers=workers,
                            progress=True, write_videos=videos, position_rule=position_rule.value)
    out.print(escape(f"SynthTV written to {path}"))


class Pooling(str, Enum):
    att = "att"
    avg = "avg"
    mean = "mean"


@app.command("train")
@friendly
def train_cmd(
    data: Annotated[Path, typer.Argument(help="Dataset folder: SynthTV, MSR-VTT (videodatainfo JSON + videos/) or MSVD.")],
    out_stem: Annotated[Path, typer.Option("--out", help="Checkpoint stem for the best model (writes OUT.json + OUT.safetensors).")] = Path("models/mine"),
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default from [train]).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Clips per batch (global, across GPUs).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate.")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="rmsprop (the paper's) or adam.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    hidden: Annotated[int, typer.Option(help="LSTM size (paper: 1024).")] = 1024,
    attention: Annotated[int, typer.Option(help="Attention space size (paper: 256).")] = 256,
    embedding: Annotated[int, typer.Option(help="Word embedding size (paper: 300).")] = 300,
    pooling: Annotated[Pooling, typer.Option(help="att / avg (L-STAP) or mean (LRCN baseline).")] = Pooling.att,
    matching: Annotated[bool, typer.Option(help="Add the ranking (matching) loss, eqs 27-28.")] = True,
    frames: Annotated[int, typer.Option(help="Frames sampled per clip (paper: 30).")] = 30,
    input_rank: Annotated[int, typer.Option(help="Low-rank input projection size; 0 = full rank (paper).")] = 0,
    position_bias: Annotated[bool, typer.Option(help="Learned per-grid-position input bias, so L-STAP knows where "
                                                     "things move (not in the paper).")] = False,
    temporal_delta: Annotated[bool, typer.Option(help="Feed each feature beside its change from the clip's mean, "
                                                      "so motion stands out (not in the paper).")] = False,
    val_clips: Annotated[int, typer.Option(help="Validate on at most this many clips per epoch (0 = all).")] = 0,
    select: Annotated[str, typer.Option(help="Validation key that picks the best checkpoint: CIDEr, slots, loss, ...")] = "CIDEr",
    resume: Annotated[bool, typer.Option(help="Continue from OUT.state.json after its last epoch.")] = False,
    amp: Annotated[bool, typer.Option(help="Mixed precision: bf16/fp16 on CUDA, bf16 on CPUs with native bf16 "
                                           "(AVX512-BF16 or AMX; about 2.3x faster there); fp32 elsewhere.")] = True,
    config: ConfigOpt = None,
) -> None:
    """Train an L-STAP captioning model (features are cached once per clip and reused)."""
    from tvcaption.model.dims import ModelDims
    from tvcaption.train import train

    cfg = _config(config)
    cfg = with_overrides(cfg, "train", epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed)
    dims = ModelDims(hidden=hidden, attention=attention, embedding=embedding, pooling=pooling.value,
                     matching=matching, frames=frames, input_rank=input_rank,
                     position_bias=position_bias, temporal_delta=temporal_delta, dropout=cfg.train.dropout,
                     margin=cfg.train.margin, matching_weight=cfg.train.matching_weight)
    result = train(data, out_stem, config=cfg.train, features=cfg.features, dims=dims,
                   cache_dir=cfg.resolve(cfg.features.cache_dir), resume=resume, val_clips=val_clips,
                   select=select, amp=amp, console=err)
    out.print(escape(f"best checkpoint {result.checkpoint} (epoch {result.best_epoch}, {result.select} {result.best_score:.4f})"))


@app.command("evaluate")
@friendly
def evaluate_cmd(
    model: Annotated[Path, typer.Option(help="Checkpoint stem or .json to score.")],
    data: Annotated[Path, typer.Option(help="Dataset folder (SynthTV, MSR-VTT or MSVD).")],
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    beam_size: Annotated[Optional[int], typer.Option(help="Beam width (default from [decoding]).")] = None,
    max_clips: Annotated[int, typer.Option(help="Score only the first N clips (0 = all).")] = 0,
    floors: Annotated[bool, typer.Option(help="Also score a constant and a random training caption.")] = True,
    captions_out: Annotated[Optional[Path], typer.Option(help="Write each clip's generated caption to this file.")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Score a model: BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap); slot accuracy on SynthTV."""
    from tvcaption.decoding import DecodingOptions
    from tvcaption.evaluate import evaluate, print_eval

    cfg = _config(config)
    cfg = with_overrides(cfg, "decoding", beam_size=beam_size)
    options = DecodingOptions(cfg.decoding.beam_size, cfg.decoding.max_len, cfg.decoding.length_penalty)
    result = evaluate(model, data, split, decoding=options, features=cfg.features,
                      cache_dir=cfg.resolve(cfg.features.cache_dir), max_clips=max_clips, floors=floors,
                      captions_out=captions_out, progress=not as_json)
    if as_json:
        _print_json(result.to_json())
    else:
        print_eval(result, out)


@db_app.command("upgrade")
@friendly
def db_upgrade(revision: str = "head", db: DbOpt = None, config: ConfigOpt = None) -> None:
    """Migrate the database up to REVISION (default: head)."""
    from tvcaption.db.migrate import current, upgrade

    cfg = _config(config, db)
    upgrade(cfg.database_url, revision)
    out.print(f"at revision {current(cfg.database_url)}")


@db_app.command("downgrade")
@friendly
def db_downgrade(revision: str, db: DbOpt = None, config: ConfigOpt = None) -> None:
    """Migrate the database down to REVISION (e.g. -1 or base)."""
    from tvcaption.db.migrate import current, downgrade

    cfg = _config(config, db)
    downgrade(cfg.database_url, revision)
    out.print(f"at revision {current(cfg.database_url)}")


@db_app.command("current")
@friendly
def db_current(db: DbOpt = None, config: ConfigOpt = None) -> None:
    """Print the database's current migration revision."""
    from tvcaption.db.migrate import current

    cfg = _config(config, db)
    out.print(current(cfg.database_url) or "empty (no migrations applied)")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
