"""The ``tvcaption`` command line: each command parses, loads config, calls one library function, prints.

Heavy modules (torch, decord, scenedetect) are imported inside the commands that need them, so
``tvcaption --help`` and ``tvcaption search`` start fast.
"""

from __future__ import annotations

import functools
import json
import logging
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

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help=(
    "tvcaption.toml to use (default: $TVCAPTION_CONFIG, ./tvcaption.toml, then the one in the user's "
    "config folder)."))]
DbOpt = Annotated[Optional[str], typer.Option("--db", help=(
    "Database: a SQLite file path, sqlite:///FILE or postgresql+psycopg://user@host/db; overrides "
    "[database] url (default: tvcaption.db in the user's data folder)."))]
ModelOpt = Annotated[Optional[Path], typer.Option("--model", "-m", help=(
    "Checkpoint stem, .json or .safetensors; overrides [model] path (default: the shipped model)."))]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts) instead of text for people.")]


class _WarningLines(logging.Handler):
    """The library's warnings (a bad subtitle file, a fallback) as ``warning: ...`` lines on
    stderr, printed through the console so they land above a live progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        err.print(f"[yellow]warning:[/] {escape(record.getMessage())}", highlight=False, soft_wrap=True)


def _show_warnings() -> None:
    logger = logging.getLogger("tvcaption")
    if not any(isinstance(h, _WarningLines) for h in logger.handlers):
        logger.addHandler(_WarningLines(logging.WARNING))
        logger.propagate = False


def friendly(fn: Callable) -> Callable:
    """User errors end in one line on stderr and exit 1, never a traceback; library warnings
    are one line each."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _show_warnings()
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
    return with_overrides(config, "database", url=_db_flag(db))


MAX_RESULTS = 10_000  # search prints at most this many; a larger --limit is clamped to it


def _at_least(flag: str, value: int | None, low: int) -> None:
    if value is not None and value < low:
        raise TvcaptionError(f"{flag} {value}: must be {low} or more")


def _db_flag(db: str | None) -> str | None:
    """--db as given on the command line: a plain path or a relative sqlite:/// URL means a
    SQLite file relative to the working folder (not to the config file)."""
    if db is None:
        return None
    if not db.strip():
        raise TvcaptionError("--db is empty; give a SQLite file path or a postgresql+psycopg:// URL")
    if "://" not in db:
        return f"sqlite:///{Path(db).expanduser().absolute()}"
    prefix = "sqlite:///"
    if db.startswith(prefix) and db != "sqlite:///:memory:" and not db[len(prefix):].startswith("/"):
        return f"{prefix}{Path(db[len(prefix):]).expanduser().absolute()}"
    return db


def _open_existing(cfg: Config, migrate: bool = True):
    """The database for reading: never created here; a missing one is one line saying how to index."""
    from tvcaption.db.store import connect

    return connect(cfg.database_url, create=False, migrate=migrate)


def _with_model(cfg: Config, model: Path | None) -> Config:
    return with_overrides(cfg, "model", path=str(model.expanduser().absolute()) if model else None)


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


@app.command()
@friendly
def caption(
    video: Annotated[Path, typer.Argument(help="A recording (MPEG-TS, MP4, MKV, MXF, AVI, ...).")],
    model: ModelOpt = None,
    beam_size: Annotated[Optional[int], typer.Option(help="Beam width (1 = greedy).")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Split one recording into scenes and caption each scene (nothing is stored)."""
    from tvcaption import views
    from tvcaption.engine import Engine
    from tvcaption.pipeline import caption_recording
    from tvcaption.video import probe

    _at_least("--beam-size", beam_size, 1)
    cfg = _with_model(_config(config), model)
    cfg = with_overrides(cfg, "decoding", beam_size=beam_size)
    # the meaning analyser only makes a vector for search: nothing here is stored or searched
    cfg = with_overrides(cfg, "index", analysers=tuple(a for a in cfg.index.analysers if a != "meaning"))
    info = probe(video)
    engine = Engine(cfg)  # reads the models' descriptions; their weights load beside the decoding
    if as_json:
        result = caption_recording(video, cfg, engine)
        _print_json(result.to_json())
        return
    with views.caption_progress(err, info.duration) as on_progress:
        result = caption_recording(video, cfg, engine, on_progress=on_progress)
    views.print_captions(result, out)


@app.command()
@friendly
def index(
    paths: Annotated[list[Path], typer.Argument(help="Recordings or folders to index.")],
    reindex: Annotated[bool, typer.Option(help="Index again even when already done with the same model.")] = False,
    model: ModelOpt = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    ray: Annotated[bool, typer.Option("--ray", help=(
        "Index on a Ray cluster, one loaded model per worker ([ray] in the config): the one --ray-address "
        "names, else $RAY_ADDRESS, else a cluster of its own started on this machine for the run. Needs "
        "PostgreSQL and the recordings at the same path on every node."))] = False,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", metavar="ADDRESS", help=(
        "The Ray cluster (implies --ray): 'auto' joins the one `ray start` made here, HOST:6379 or "
        "ray://HOST:10001 another, 'local' starts one here."))] = None,
) -> None:
    """Index recordings: scenes and what each analyser says of them (caption, tags, ...) into the
    database; skips what is already done.

    The database is created on first use (default: tvcaption.db in the user's data folder, the
    same from every working folder; `tvcaption db current` shows where)."""
    from tvcaption import views

    cfg = _with_model(_config(config, db), model)
    if ray or ray_address:
        from tvcaption.ray_index import check_database, cluster_address, index_paths_ray

        address = cluster_address(ray_address, paths)  # before anything starts, as is the check below
        check_database(cfg)  # SQLite is refused in one line
        with views.IndexView(err) as view:
            report = index_paths_ray(paths, cfg, address=address, reindex=reindex, on_event=view)
    else:
        from tvcaption.engine import Engine
        from tvcaption.pipeline import index_paths

        engine = Engine(cfg)  # reads the models' descriptions; their weights load beside the decoding
        with views.IndexView(err) as view:
            report = index_paths(paths, cfg, reindex=reindex, engine=engine, on_event=view)
    views.print_summary(report, out, cfg.index.extensions)
    if report.failed:
        raise typer.Exit(1)


@app.command()
@friendly
def search(
    query: Annotated[str, typer.Argument(help="Words to find in what the analysers said: captions, tags, ... "
                                              "(plain text, not SQL).")],
    limit: Annotated[int, typer.Option(help=f"At most this many results (1 to {MAX_RESULTS:,}).")] = 20,
    recording: Annotated[Optional[str], typer.Option(help="Only this recording (any path to it).")] = None,
    mode: Annotated[str, typer.Option(help=(
        "text: the words; meaning: nearest by meaning (\"motorcycle\" finds \"moped\"; needs the meaning "
        "analyser); hybrid: both fused, scenes with the words first."))] = "hybrid",
    all_captions: Annotated[bool, typer.Option("--all-captions", help=(
        "Also search and show captions marked out of domain (scenes unlike the caption model's training "
        "data), marked as such (their words are searched; meaning vectors never hold them)."))] = False,
    as_json: JsonOpt = False,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Find the moments whose captions, tags or other annotations match QUERY, best first."""
    from tvcaption.db.hybrid import check_mode, search as run_search

    _at_least("--limit", limit, 1)
    check_mode(mode)
    cfg = _config(config, db)
    hits = run_search(_open_existing(cfg), query, limit=min(limit, MAX_RESULTS), recording=recording, mode=mode,
                      all_captions=all_captions)
    if as_json:
        _print_json([{"recording": h.recording, "start": round(h.start, 3), "end": round(h.end, 3),
                      "caption": h.caption, "tags": list(h.tags), "score": h.score,
                      "annotations": [a.to_json() for a in h.annotations]} for h in hits])
        return
    from tvcaption import views

    views.print_hits(hits, query, out)


class ExportFormat(str, Enum):
    srt = "srt"
    vtt = "vtt"
    ttml = "ttml"
    json = "json"


@app.command()
@friendly
def export(
    recording: Annotated[Optional[str], typer.Argument(help="A recording as indexed (any path to it).")] = None,
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="srt, vtt (WebVTT descriptions), ttml (EBU-TT-D for playout) or json.")] = ExportFormat.srt,
    out_dir: Annotated[Path, typer.Option("--out", help=(
        "Folder for the files (created if missing); - writes one recording's track to standard output."))] = Path("."),
    all_: Annotated[bool, typer.Option("--all", help="Export every indexed recording.")] = False,
    with_text: Annotated[bool, typer.Option("--with-text", help=(
        "SRT/WebVTT cues also say the text on screen (\"On screen: ...\"), when the text analyser ran. "
        "JSON always has it."))] = False,
    all_captions: Annotated[bool, typer.Option("--all-captions", help=(
        "SRT, WebVTT and TTML also carry captions marked out of domain (left out by default). JSON always has them."))] = False,
    reviewed_only: Annotated[bool, typer.Option("--reviewed-only", help=(
        "Only the scenes a reviewer corrected (tvcaption serve), with their corrected captions; with --all, "
        "recordings without one are not written."))] = False,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Write a recording's scene captions as SRT, WebVTT, EBU-TT-D (TTML) or JSON (with every
    analyser's annotations)."""
    from tvcaption.export import export_all, export_recording

    if all_ and recording is not None:
        raise TvcaptionError(f"export: {recording} and --all both given; name one RECORDING or pass --all alone")
    if not all_ and recording is None:
        raise TvcaptionError("export: name a RECORDING or pass --all")
    if str(out_dir) == "-":
        if all_:
            raise TvcaptionError("export: --out - writes one recording to standard output; name a RECORDING, "
                                 "or give --all a folder")
        _export_to_stdout(_open_existing(_config(config, db)), recording, fmt.value, with_text, all_captions,
                          reviewed_only)
        return
    cfg = _config(config, db)
    engine = _open_existing(cfg)
    left_out: dict[str, int] = {}
    unreviewed: list[str] = []
    written = (export_all(engine, fmt.value, out_dir, with_text, all_captions, left_out, reviewed_only, unreviewed)
               if all_ else [export_recording(engine, recording, fmt.value, out_dir, with_text, all_captions, left_out,
                                              reviewed_only)])
    for path in written:
        out.print(escape(str(path)), highlight=False, soft_wrap=True)
    if unreviewed:
        err.print(f"{len(unreviewed)} recording(s) without a reviewed scene not written", highlight=False,
                  soft_wrap=True)
    if sum(left_out.values()):
        err.print(f"left out {sum(left_out.values())} caption(s) marked out of domain (the caption model was not "
                  "trained on such scenes); --all-captions includes them", highlight=False, soft_wrap=True)


def _export_to_stdout(engine, recording: str, fmt: str, with_text: bool, all_captions: bool,
                      reviewed_only: bool) -> None:
    """One recording's track on standard output (``export --out -``), through a temporary folder:
    the writers write files, and what is printed is exactly what a file would hold."""
    import os
    import sys
    import tempfile

    from tvcaption.export import export_recording

    left_out: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="tvcaption-export-") as tmp:
        path = export_recording(engine, recording, fmt, tmp, with_text, all_captions, left_out, reviewed_only)
        try:
            sys.stdout.buffer.write(path.read_bytes())
            sys.stdout.flush()
        except BrokenPipeError:  # `| head`: the reader has what it wanted; no traceback at exit either
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return
    if sum(left_out.values()):
        err.print(f"left out {sum(left_out.values())} caption(s) marked out of domain (the caption model was not "
                  "trained on such scenes); --all-captions includes them", highlight=False, soft_wrap=True)


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
    import time

    from tvcaption import views_train
    from tvcaption.data import generate_synthtv

    started = time.perf_counter()
    with views_train.count_progress(err, "SynthTV", transient=False) as on_progress:
        path = generate_synthtv(out_dir, train=train, val=val, test=test, seed=seed, background=background.value,
                                size=size, broadcasts=broadcasts, broadcast_seconds=broadcast_seconds, workers=workers,
                                write_videos=videos, position_rule=position_rule.value, on_progress=on_progress)
    views_train.synth_summary(err, path, train + val + test, broadcasts, time.perf_counter() - started)
    out.print(escape(f"SynthTV written to {path}"))


class Pooling(str, Enum):
    att = "att"
    avg = "avg"
    mean = "mean"


@app.command("train")
@friendly
def train_cmd(
    data: Annotated[Optional[Path], typer.Argument(help=(
        "Dataset folder: SynthTV, MSR-VTT (videodatainfo JSON + videos/) or MSVD (none with --from-index)."))] = None,
    out_stem: Annotated[Path, typer.Option("--out", help="Checkpoint stem for the best model (writes OUT.json + OUT.safetensors).")] = Path("models/mine"),
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default from [train]).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Clips per batch (global, across GPUs).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate.")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="rmsprop (the paper's) or adam.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    hidden: Annotated[Optional[int], typer.Option(help="LSTM size (default: the paper's).")] = None,
    attention: Annotated[Optional[int], typer.Option(help="Attention space size (default: the paper's).")] = None,
    embedding: Annotated[Optional[int], typer.Option(help="Word embedding size (default: the paper's).")] = None,
    pooling: Annotated[Optional[Pooling], typer.Option(help="att / avg (L-STAP) or mean (LRCN baseline) "
                                                            "(default: the paper's).")] = None,
    matching: Annotated[Optional[bool], typer.Option("--matching/--no-matching", help=(
        "Add the ranking (matching) loss, eqs 27-28 (default: the paper's)."))] = None,
    frames: Annotated[Optional[int], typer.Option(help="Frames sampled per clip (default: the paper's).")] = None,
    input_rank: Annotated[Optional[int], typer.Option(help="Low-rank input projection size; 0 = full rank "
                                                           "(default: the paper's).")] = None,
    position_bias: Annotated[Optional[bool], typer.Option("--position-bias/--no-position-bias", help=(
        "Learned per-grid-position input bias, so L-STAP knows where things move (not in the paper, "
        "so not by default)."))] = None,
    temporal_delta: Annotated[Optional[bool], typer.Option("--temporal-delta/--no-temporal-delta", help=(
        "Feed each feature beside its change from the clip's mean, so motion stands out (not in the paper, "
        "so not by default)."))] = None,
    val_clips: Annotated[int, typer.Option(help="Validate on at most this many clips per epoch (0 = all).")] = 0,
    select: Annotated[str, typer.Option(help="Validation key that picks the best checkpoint: CIDEr, slots, loss, ...")] = "CIDEr",
    resume: Annotated[bool, typer.Option(help="Continue from OUT.state.json after its last epoch.")] = False,
    amp: Annotated[bool, typer.Option(help="Mixed precision: bf16/fp16 on CUDA, bf16 on CPUs with native bf16 "
                                           "(AVX512-BF16 or AMX; about 2.3x faster there); fp32 elsewhere.")] = True,
    from_index: Annotated[bool, typer.Option("--from-index", help=(
        "Train on the archive instead of a dataset: the scenes reviewers corrected (tvcaption serve) and the "
        "description tracks NAME.ad.srt / NAME.ad.vtt beside indexed recordings (each cue a clip)."))] = False,
    init: Annotated[Optional[Path], typer.Option("--init", help=(
        "With --from-index: fine-tune this checkpoint (stem or .json, or synthtv-lstap for the shipped model; "
        "its vocabulary grows with the new words) instead of training from scratch."))] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Train an L-STAP captioning model (features are cached once per clip and reused).

    Model sizes not given are the paper's (tvcaption.model.ModelDims)."""
    from tvcaption import views_train
    from tvcaption.model.dims import ModelDims
    from tvcaption.train import train

    if from_index and data is not None:
        raise TvcaptionError(f"train: {data} and --from-index both given; --from-index reads the database, not a folder")
    if not from_index and data is None:
        raise TvcaptionError("train: name a DATA folder, or pass --from-index to train on the reviewed archive")
    if not from_index and (init is not None or db is not None):
        raise TvcaptionError("train: --init and --db go with --from-index")
    cfg = _config(config, db)
    cfg = with_overrides(cfg, "train", epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, seed=seed)
    given = {"hidden": hidden, "attention": attention, "embedding": embedding, "frames": frames,
             "input_rank": input_rank, "pooling": pooling.value if pooling else None, "matching": matching,
             "position_bias": position_bias, "temporal_delta": temporal_delta}
    try:
        dims = ModelDims(dropout=cfg.train.dropout, margin=cfg.train.margin, matching_weight=cfg.train.matching_weight,
                         **{name: value for name, value in given.items() if value is not None})
    except ValueError as exc:  # e.g. --hidden 0
        raise TvcaptionError(f"{exc}; pass a valid model size flag or [train] option") from None
    if from_index:
        _train_from_index(cfg, out_stem, init, dims, {k for k, v in given.items() if v is not None}, resume, amp)
        return
    with views_train.TrainView(err) as view:
        result = train(data, out_stem, config=cfg.train, features=cfg.features, dims=dims,
                       cache_dir=cfg.resolve(cfg.features.cache_dir), resume=resume, val_clips=val_clips,
                       select=select, amp=amp, on_event=view)
    out.print(escape(f"best checkpoint {result.checkpoint} (epoch {result.best_epoch}, {result.select} {result.best_score:.4f})"))


def _train_from_index(cfg: Config, out_stem: Path, init: Path | None, dims, sizes_given: set[str], resume: bool,
                      amp: bool) -> None:
    """train --from-index: the reviewed scenes and description tracks of the database in force."""
    from tvcaption import views_train
    from tvcaption.train_from_index import counted, train_from_index

    if resume:
        raise TvcaptionError("train --from-index: --resume is not supported; run it again (features are cached)")
    if init is not None and sizes_given:
        raise TvcaptionError(f"train --from-index --init: the model's sizes come from {init}; drop "
                             f"--{', --'.join(sorted(n.replace('_', '-') for n in sizes_given))}")
    with views_train.TrainView(err) as view:
        def on_event(event) -> None:
            if event.kind != "epoch":
                view(event)
                return
            row = event.row
            err.print(f"epoch {row['epoch']}/{event.epochs} | train {row['train_loss']:.3f} (cap "
                      f"{row['train_caption']:.3f} match {row['train_matching']:.3f}) | {row['seconds']:.1f} s",
                      markup=False, highlight=False, soft_wrap=True)

        result = train_from_index(_open_existing(cfg), out_stem, init=init, config=cfg.train, features=cfg.features,
                                  dims=dims, cache_dir=cfg.resolve(cfg.features.cache_dir), amp=amp, on_event=on_event)
    data = result.data
    out.print(escape(f"checkpoint {result.checkpoint} (card {result.card}): {counted(len(data.clips), 'clip')} from "
                     f"{counted(data.reviewed_scenes, 'reviewed scene')} and "
                     f"{counted(len(data.ad_tracks), 'description track')}, "
                     f"{counted(len(result.vocab_added), 'word')} added; caption loss on them {result.loss_before:.3f} -> "
                     f"{result.loss_after:.3f}"), highlight=False, soft_wrap=True)


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
    from tvcaption import views_train
    from tvcaption.evaluate import evaluate

    _at_least("--beam-size", beam_size, 1)
    cfg = _config(config)
    cfg = with_overrides(cfg, "decoding", beam_size=beam_size)
    with views_train.stage_progress(err) as on_progress:
        result = evaluate(model, data, split, decoding=cfg.decoding, features=cfg.features,
                          cache_dir=cfg.resolve(cfg.features.cache_dir), max_clips=max_clips, floors=floors,
                          captions_out=captions_out, on_progress=None if as_json else on_progress)
    if as_json:
        _print_json(result.to_json())
    else:
        views_train.print_eval(result, out)


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
    """Print which database is in force and its migration revision (never creates one)."""
    from tvcaption.db.migrate import current

    engine = _open_existing(_config(config, db), migrate=False)
    out.print(f"database {engine.url.render_as_string(hide_password=True)}", highlight=False, soft_wrap=True)
    out.print(f"revision {current(engine) or 'empty (no migrations applied)'}", highlight=False)


@app.command()
@friendly
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on. Anything but loopback needs the token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8400,
    reviewer: Annotated[Optional[str], typer.Option(help="Name corrections are stored under (the page can give another).")] = None,
    token: Annotated[Optional[str], typer.Option(help=(
        "Token every request must carry (generated and printed when --host is not loopback)."))] = None,
    prepare: Annotated[bool, typer.Option("--prepare", help=(
        "Make the browser copies of recordings browsers cannot play (MPEG-2, MPEG-TS, ...) in the "
        "background from the start, not when each is first opened."))] = False,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Review in a browser: search, play a scene with its descriptions, correct its caption."""
    from tvcaption.web.app import serve as run_server

    if not 1 <= port <= 65535:
        raise TvcaptionError(f"--port {port}: give a port from 1 to 65535")
    cfg = _config(config, db)
    run_server(_open_existing(cfg), host=host, port=port, reviewer=reviewer, token=token, prepare_all=prepare,
               say=lambda line: err.print(escape(line), highlight=False, soft_wrap=True))


model_app = typer.Typer(help="Manage caption models (checkpoints).", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(model_app, name="model")


@model_app.command("calibrate")
@friendly
def model_calibrate(
    model: Annotated[Path, typer.Option(help="Checkpoint stem or .json to add training-feature statistics to.")],
    data: Annotated[Path, typer.Option(help="The dataset it was trained on (a SynthTV folder made with the same "
                                            "recipe will do): the train split gives the statistics, val the threshold.")],
    train_clips: Annotated[int, typer.Option(help="Use at most this many train clips (0 = all).")] = 0,
    val_clips: Annotated[int, typer.Option(help="Use at most this many val clips (0 = all).")] = 0,
    percentile: Annotated[float, typer.Option(help="Out of domain beyond this percentile of the val distances.")] = 99.0,
    config: ConfigOpt = None,
) -> None:
    """Add the statistics that mark out-of-domain captions to a checkpoint trained without them."""
    from tvcaption import views
    from tvcaption.calibrate import calibrate

    cfg = _config(config)
    with views.status(err, "extracting features and fitting statistics"):
        stats = calibrate(model, data, train_clips=train_clips, val_clips=val_clips, percentile=percentile,
                          features=cfg.features)
    info = stats.info or {}
    out.print(escape(f"{model}: domain statistics from {info.get('train_clips')} train clips, threshold "
                     f"{stats.threshold:.3f} (the {percentile:g}th percentile of {info.get('val_clips')} val clips)"),
              highlight=False, soft_wrap=True)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
