"""The review app's routes: search, a scene, its media and descriptions, and caption corrections.

Every file sent is found from a recording's id in the database (``/recordings/{id}/...``):
the recording itself or its proxy, its thumbnails, its WebVTT descriptions. No route takes a
path. Endpoints are plain functions (Starlette runs them in its thread pool, beside the event
loop), each a few lines over the library: search is :func:`tvcaption.db.hybrid.search`, as for
``tvcaption search``; the descriptions are :class:`tvcaption.export.VTTWriter`'s; a correction
is :func:`tvcaption.db.reviews.add_correction`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from types import SimpleNamespace
from typing import Any, NamedTuple

from sqlalchemy import select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import Route

from tvcaption.errors import TvcaptionError

log = logging.getLogger("tvcaption.web")

MAX_QUERY = 500  # characters of a search
MAX_BODY = 64 * 1024  # bytes of a correction request
KIND_LABELS = {"text": "on screen", "speech": "said"}
STATIC = {"review.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}


@lru_cache(maxsize=1)
def templates() -> Any:
    import jinja2
    from starlette.templating import Jinja2Templates

    # auto_reload off: the templates are package files, and checking each one's mtime on every use
    # (20 includes a search page) was a stat() per result
    env = jinja2.Environment(loader=jinja2.PackageLoader("tvcaption.web", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, auto_reload=False)
    return Jinja2Templates(env=env)


def _settings(request: Request) -> Any:
    return request.app.state.settings


def _page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    s = _settings(request)
    context.update(csrf=request.state.csrf, reviewer=s.reviewer or "")
    return templates().TemplateResponse(request, name, context, status_code=status)


def _int(value: str | None, what: str, default: int | None = None, low: int = 0, high: int = 10**9) -> int | None:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise HTTPException(400, f"{what} must be a whole number") from None
    if not low <= number <= high:
        raise HTTPException(400, f"{what} must be between {low} and {high}")
    return number


def _recording(request: Request, recording_id: int) -> Any:
    from tvcaption.db.engine import mapped
    from tvcaption.db.store import Store, recordings_t

    engine = _settings(request).engine
    with mapped(engine), engine.connect() as conn:
        row = conn.execute(select(recordings_t).where(recordings_t.c.id == recording_id)).first()
    if row is None or row.status != "done":
        raise HTTPException(404, f"no indexed recording {recording_id}")
    return Store._info(row)


def _scenes(request: Request, recording_id: int) -> list[Any]:
    from tvcaption.db.store import Store

    return Store(_settings(request).engine).scenes_of(recording_id)


def _scene(request: Request) -> tuple[Any, list[Any], Any]:
    recording_id = request.path_params["rid"]
    index = request.path_params["index"]
    recording = _recording(request, recording_id)
    scenes = _scenes(request, recording_id)
    if not 0 <= index < len(scenes):
        raise HTTPException(404, f"recording {recording_id} has no scene {index}")
    return recording, scenes, scenes[index]


# --- views of scenes and hits -----------------------------------------------------------------

def _caption_view(item: Any, show_hidden: bool = False) -> dict[str, Any]:
    """What the pages show of a scene's or hit's caption: the one in force and who corrected it;
    with ``show_hidden``, an out-of-domain caption too (``ood``, marked as such on the page)."""
    from tvcaption.views import timecode

    corrections = item.corrections
    latest = corrections[-1] if corrections else None
    models = [a for a in item.annotations if a.kind == "caption" and a.analyser != "review"]
    hidden = latest is None and bool(models) and models[0].hidden  # out of domain, not corrected: not shown as the caption
    return {
        "caption": "" if hidden else item.caption,
        "ood": models[0].text if hidden and show_hidden else None,
        "draft": item.caption,  # what the edit box starts from (an out-of-domain caption too)
        "corrected": None if latest is None else dict(latest.data or {}),
        "model": [{"text": a.text, "hidden": a.hidden, "score": a.score,
                   "distance": (a.data or {}).get("domain_distance"),
                   "threshold": (a.data or {}).get("domain_threshold")} for a in models],
        "history": [dict(a.data or {}, text=a.text) for a in reversed(corrections)],
        "tags": list(item.tags),
        "others": [(KIND_LABELS.get(kind, kind), texts) for kind, texts in _others(item)],
        "start": timecode(item.start), "end": timecode(item.end),
    }


def _others(item: Any) -> list[tuple[str, list[str]]]:
    grouped: dict[str, list[str]] = {}
    for a in item.annotations:
        if a.kind not in ("caption", "tag") and a.field != "hidden" and a.text:
            grouped.setdefault(a.kind, []).append(a.text)
    return list(grouped.items())


@lru_cache(maxsize=4096)  # every search page lists every recording by name
def _name(path: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in os.path.basename(path) or path)


class Listed(NamedTuple):
    """An indexed recording as the search page lists it (attributes, not a dict: Jinja2 tries an
    attribute first, and a dict's miss costs an exception per lookup; a NamedTuple is made ~5x
    faster than a frozen dataclass, 200 a page)."""

    id: int
    path: str
    name: str
    version: tuple  # (indexed_at, content_hash): changes when the recording is indexed again


def _listed(engine: Any) -> list[Listed]:
    """Every indexed recording by path: four columns (``Store.recordings`` decodes each row's
    probe JSON, 200 of them a page took ~8 ms)."""
    from tvcaption.db.engine import mapped
    from tvcaption.db.store import recordings_t

    r = recordings_t.c
    with mapped(engine), engine.connect() as conn:
        rows = conn.execute(select(r.id, r.path, r.indexed_at, r.content_hash)
                            .where(r.status == "done").order_by(r.path)).all()
    return [Listed(rid, path, _name(path), (indexed_at, digest)) for rid, path, indexed_at, digest in rows]


@lru_cache(maxsize=64)
def _options(recordings: tuple[Listed, ...], chosen: int | None) -> Any:
    """The recording filter's ``<option>``s, rendered once per list of recordings and choice
    (every search page has them: 200 recordings took a few ms of escaping per page)."""
    from markupsafe import Markup

    return Markup(templates().env.get_template("_options.html").render(recordings=recordings, chosen=chosen))


class Places:
    """Where hits are: (recording id, scene index) from the recording's path and the scene's start.

    Each recording's scene starts are read once (one indexed range of its scenes) and kept, keyed
    by the recording's indexing (``Listed.version``), for the most recently used recordings up to
    :data:`SCENES` scenes in all (~100 bytes each). :func:`tvcaption.db.reviews.locate` finds the
    same in one query, but with no index on the start each hit scanned its recording's scenes:
    ~8-16 ms a page at 100,000 scenes."""

    SCENES = 200_000

    def __init__(self) -> None:
        self._starts: OrderedDict[tuple[int, tuple], dict[float, int]] = OrderedDict()
        self._kept = 0  # scenes in _starts
        self._lock = threading.Lock()

    def locate(self, engine: Any, listed: dict[str, Listed], hits: Sequence[Any]) -> list[Any]:
        """A :class:`~tvcaption.db.reviews.SceneRef` per hit, or None where its scene is gone;
        hits of a recording not listed (being indexed again) go through ``reviews.locate``."""
        from tvcaption.db.reviews import SceneRef, locate

        recordings = {hit.recording: listed.get(hit.recording) for hit in hits}
        starts = self._starts_of(engine, [r for r in recordings.values() if r is not None])
        out: list[Any] = []
        others = []
        for position, hit in enumerate(hits):
            recording = recordings[hit.recording]
            if recording is None:
                others.append(position)
                out.append(None)
                continue
            index = starts[recording.id].get(float(hit.start))
            out.append(None if index is None else SceneRef(recording.id, index))
        if others:
            for position, ref in zip(others, locate(engine, [hits[i] for i in others])):
                out[position] = ref
        return out

    def _starts_of(self, engine: Any, recordings: list[Listed]) -> dict[int, dict[float, int]]:
        """Recording id -> {scene start: scene index}; the recordings not kept read in one query."""
        from tvcaption.db.engine import mapped
        from tvcaption.db.scenes import scenes_t

        found: dict[int, dict[float, int]] = {}
        missing: dict[int, Listed] = {}
        with self._lock:
            for recording in recordings:
                key = (recording.id, recording.version)
                if key in self._starts:
                    self._starts.move_to_end(key)
                    found[recording.id] = self._starts[key]
                else:
                    missing[recording.id] = recording
        if not missing:
            return found
        read: dict[int, dict[float, int]] = {rid: {} for rid in missing}
        s = scenes_t.c
        with mapped(engine), engine.connect() as conn:  # .all(): fetched at once, ~10x faster than row by row
            for rid, start, index in conn.execute(select(s.recording_id, s.start, s["index"])
                                                  .where(s.recording_id.in_(list(missing)))).all():
                read[rid][float(start)] = int(index)
        with self._lock:
            for rid, starts in read.items():
                key = (rid, missing[rid].version)
                self._kept += len(starts) - len(self._starts.get(key, ()))
                self._starts[key] = starts
            while self._kept > self.SCENES and len(self._starts) > 1:
                self._kept -= len(self._starts.popitem(last=False)[1])
        return found | read


# --- pages ------------------------------------------------------------------------------------

def search_page(request: Request) -> Response:
    """The search page; a ``Server-Timing`` header says where its time went (search, locating
    the hits' scenes, the rest: listing and template), as a browser's developer tools show it."""
    from tvcaption.db.hybrid import MODES
    from tvcaption.db.hybrid import search as run_search
    from tvcaption.db.search import without_hidden

    began = time.perf_counter()
    s = _settings(request)
    params = request.query_params
    query = params.get("q", "")[:MAX_QUERY]
    mode = params.get("mode", "hybrid")
    if mode not in MODES:
        raise HTTPException(400, f"mode must be one of {', '.join(MODES)}")
    page = _int(params.get("page"), "page", 1, 1, 10_000 // s.per_page)
    show_all = params.get("all") == "1"  # out-of-domain captions too, marked (search --all-captions)
    chosen = _int(params.get("recording"), "recording", None)
    recordings = _listed(s.engine)
    by_id = {r.id: r for r in recordings}
    if chosen is not None and chosen not in by_id:
        raise HTTPException(404, f"no indexed recording {chosen}")
    results, more, problem = [], False, None
    timing = {"search": 0.0, "locate": 0.0}
    if query.strip():
        t = time.perf_counter()
        try:
            hits = run_search(s.engine, query, limit=page * s.per_page + 1, mode=mode, all_captions=show_all,
                              recording=by_id[chosen].path if chosen is not None else None)
            hits = hits if show_all else without_hidden(hits)
        except TvcaptionError as exc:  # e.g. meaning mode without vectors: said on the page
            hits, problem = [], str(exc)
        timing["search"] = time.perf_counter() - t
        more = len(hits) > page * s.per_page
        shown = hits[(page - 1) * s.per_page: page * s.per_page]
        t = time.perf_counter()
        refs = s.places.locate(s.engine, {r.path: r for r in recordings}, shown)
        timing["locate"] = time.perf_counter() - t
        for hit, ref in zip(shown, refs):
            if ref is not None:
                # attributes for Jinja2 (a dict's keys are found only after a failed getattr)
                results.append(SimpleNamespace(**_caption_view(hit, show_all), recording_id=ref.recording_id, index=ref.index,
                                               name=_name(hit.recording), folder=os.path.dirname(hit.recording)))
    response = _page(request, "search.html", query=query, mode=mode, modes=MODES, page=page, more=more,
                     results=results, recordings=recordings, options=_options(tuple(recordings), chosen),
                     chosen=chosen, problem=problem, per_page=s.per_page, searched=bool(query.strip()),
                     show_all=show_all)
    timing["rest"] = time.perf_counter() - began - timing["search"] - timing["locate"]
    response.headers["server-timing"] = ", ".join(f"{k};dur={v * 1000:.2f}" for k, v in timing.items())
    return response


def scene_page(request: Request) -> Response:
    recording, scenes, scene = _scene(request)
    index = scene.index
    view = _caption_view(scene)
    return _page(request, "scene.html", recording={"id": recording.id, "name": _name(recording.path),
                                                   "path": recording.path},
                 index=index, count=len(scenes), scene=view, start=float(scene.start), end=float(scene.end),
                 previous=index - 1 if index > 0 else None, next=index + 1 if index + 1 < len(scenes) else None)


# --- media ------------------------------------------------------------------------------------

def _media_error(exc: Exception) -> HTTPException:
    gone = "no longer there" in str(exc)
    return HTTPException(404 if gone else 500, str(exc))


def _served(request: Request):
    """The recording of the request's id and the file served for it (the file or its proxy)."""
    from tvcaption.web.media import MediaError

    recording = _recording(request, request.path_params["rid"])
    try:
        return recording, _settings(request).media.served(recording)
    except MediaError as exc:
        raise _media_error(exc) from None


def _scene_times(request: Request, recording_id: int, index: int) -> Any:
    from tvcaption.db.engine import mapped
    from tvcaption.db.scenes import scenes_t

    engine = _settings(request).engine
    with mapped(engine), engine.connect() as conn:  # its times only (a page asks for 20 thumbnails at once)
        scene = conn.execute(select(scenes_t.c.start, scenes_t.c.end).where(
            scenes_t.c.recording_id == recording_id, scenes_t.c["index"] == index)).first()
    if scene is None:
        raise HTTPException(404, f"recording {recording_id} has no scene {index}")
    return scene


def media_info(request: Request) -> Response:
    """What the page plays: ``src`` (the recording, or its proxy), ``offset`` (a scene time t plays
    at t + offset), ``proxy``. With ``?scene=N``, a recording whose whole proxy is not made yet
    answers with a proxy of scene N alone (``part``: the span of the recording it holds) at once,
    and has the whole proxy made in the background; without it, the whole proxy is made now."""
    from tvcaption.web.media import MediaError

    index = _int(request.query_params.get("scene"), "scene")
    if index is None:
        recording, served = _served(request)
        return JSONResponse({"src": f"/recordings/{recording.id}/video", "offset": served.offset, "proxy": served.proxy})
    recording = _recording(request, request.path_params["rid"])
    media = _settings(request).media
    scene = _scene_times(request, recording.id, index)  # 404 for a scene it does not have, proxy or not
    try:
        served = media.ready(recording)
        if served is not None:
            return JSONResponse({"src": f"/recordings/{recording.id}/video", "offset": served.offset,
                                 "proxy": served.proxy})
        part = media.scene_part(recording, scene.start, scene.end)
        media.make_later(recording)
    except MediaError as exc:
        raise _media_error(exc) from None
    return JSONResponse({"src": f"/recordings/{recording.id}/scenes/{index}/video", "offset": part.offset,
                         "proxy": True, "part": list(part.part or ())})


def video(request: Request) -> Response:
    _, served = _served(request)
    return FileResponse(served.path, media_type="video/mp4", headers={"cache-control": "private, max-age=3600"})


def scene_video(request: Request) -> Response:
    """The proxy of one scene (what ``media.json?scene=N`` pointed to), made if it is not there."""
    from tvcaption.web.media import MediaError

    recording = _recording(request, request.path_params["rid"])
    scene = _scene_times(request, recording.id, request.path_params["index"])
    try:
        part = _settings(request).media.scene_part(recording, scene.start, scene.end)
    except MediaError as exc:
        raise _media_error(exc) from None
    return FileResponse(part.path, media_type="video/mp4", headers={"cache-control": "private, max-age=3600"})


def thumbnail(request: Request) -> Response:
    from tvcaption.web.media import MediaError

    recording = _recording(request, request.path_params["rid"])
    scene = _scene_times(request, recording.id, request.path_params["index"])
    try:
        path = _settings(request).media.thumbnail(recording, scene)
    except MediaError as exc:
        raise _media_error(exc) from None
    return FileResponse(path, media_type="image/jpeg", headers={"cache-control": "private, max-age=86400"})


def descriptions(request: Request) -> Response:
    """The recording's WebVTT description track, as ``tvcaption export --format vtt`` writes it."""
    from tvcaption.export import Cue, VTTWriter, cue_text

    recording = _recording(request, request.path_params["rid"])
    scenes = _scenes(request, recording.id)
    writer = VTTWriter()
    cues = [Cue(s.start, s.end, cue_text(s)) for s in scenes]
    text = writer.format(writer.prepare(cues, recording.duration))
    return Response(text, media_type="text/vtt; charset=utf-8", headers={"cache-control": "no-store"})


def static(request: Request) -> Response:
    from importlib.resources import files

    name = request.path_params["name"]
    if name not in STATIC:
        raise HTTPException(404, "no such file")
    body = files("tvcaption.web").joinpath("static", name).read_bytes()
    return Response(body, media_type=STATIC[name], headers={"cache-control": "no-cache"})


# --- corrections ------------------------------------------------------------------------------

async def correct(request: Request) -> Response:
    from starlette.concurrency import run_in_threadpool

    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise HTTPException(413, "request too large")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, "request too large")
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise HTTPException(400, "send a JSON object: {\"text\": ..., \"by\": ...}") from None
    if not isinstance(data, dict) or not isinstance(data.get("text"), str) \
            or not isinstance(data.get("by") or "", str):
        raise HTTPException(400, "send a JSON object: {\"text\": ..., \"by\": ...}")
    by = (data.get("by") or "").strip() or _settings(request).reviewer
    if not by:
        raise HTTPException(400, "give your name (the reviewer) with the correction")
    return await run_in_threadpool(_store_correction, request, data["text"], by)


def _store_correction(request: Request, text: str, by: str) -> Response:
    from tvcaption.db.reviews import ReviewError, add_correction

    recording, _, scene = _scene(request)
    try:
        add_correction(_settings(request).engine, recording.id, scene.index, text, by)
    except ReviewError as exc:
        raise HTTPException(400, str(exc)) from None
    view = _caption_view(_scenes(request, recording.id)[scene.index])
    return JSONResponse({"caption": view["caption"], "corrected": view["corrected"], "history": view["history"]})


# --- errors -----------------------------------------------------------------------------------

def _error(request: Request, status: int, message: str) -> Response:
    if "text/html" in request.headers.get("accept", "") and request.method == "GET":
        try:
            return _page(request, "error.html", status=status, status_code=status, message=message)
        except Exception:
            log.exception("error page failed")
    return PlainTextResponse(f"{status}: {message}\n", status_code=status)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return _error(request, exc.status_code, exc.detail or "error")


async def _user_error(request: Request, exc: TvcaptionError) -> Response:
    from tvcaption.errors import DatabaseError

    return _error(request, 503 if isinstance(exc, DatabaseError) else 400, str(exc))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return PlainTextResponse("500: internal error (the server goes on; see its log)\n", status_code=500)


def error_handlers() -> dict[Any, Any]:
    return {HTTPException: _http_error, TvcaptionError: _user_error, Exception: _server_error}


class _IdConvertor(Convertor):
    """A database id or scene index in a path: at most 18 digits, so that it fits the database's
    64-bit integers (a longer number is no route: 404, where ``int`` let the database overflow: 500)."""

    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(int(value))


register_url_convertor("id", _IdConvertor())


def routes() -> list[Route]:
    scene = "/recordings/{rid:id}/scenes/{index:id}"
    return [
        Route("/", search_page),
        Route(scene, scene_page),
        Route(scene + "/thumb.jpg", thumbnail),
        Route(scene + "/video", scene_video),
        Route(scene + "/caption", correct, methods=["POST"]),
        Route("/recordings/{rid:id}/media.json", media_info),
        Route("/recordings/{rid:id}/video", video),
        Route("/recordings/{rid:id}/descriptions.vtt", descriptions),
        Route("/static/{name}", static),
    ]
