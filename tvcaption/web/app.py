"""``tvcaption serve``: the review app (Starlette on uvicorn), its settings and its guards.

:func:`create_app` builds the ASGI app over a database engine; :func:`serve` runs it with
uvicorn. Pages are rendered on the server (Jinja2, every value escaped); one small script
(``static/review.js``) plays scenes and saves corrections. Routes are in :mod:`.routes`, media
(proxies, thumbnails) in :mod:`.media`.

Guards (:class:`Guard`, an ASGI middleware in front of every route):

- **Token.** Bound to anything but a loopback address, every request needs the token (given
  with ``--token`` or generated and printed at start-up): once as ``?token=...`` in the address,
  which sets an HttpOnly, SameSite=Lax cookie (sent when the link is opened from mail or a chat, where
  a Strict one is not) and redirects to the same address without it,
  or as an ``X-Tvcaption-Token`` header. On loopback a ``--token`` is enforced the same way.
- **Cross-site requests.** A POST must carry the page's CSRF value (a random cookie per browser,
  echoed by the page in an ``X-CSRF-Token`` header) and JSON; an ``Origin`` (or ``Referer``)
  other than the app's own, or ``Sec-Fetch-Site: cross-site``, is refused.
- **Host.** On loopback, a ``Host`` other than the loopback names is refused (DNS rebinding).
- **Headers.** A Content-Security-Policy allowing scripts, styles and media from the app only
  (no inline script), ``nosniff``, no framing.
- **Errors.** Bad input is 400, an unknown thing 404; anything unexpected is a plain 500 page
  without a traceback. The server goes on.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from sqlalchemy import Engine

from tvcaption.errors import TvcaptionError

log = logging.getLogger("tvcaption.web")

TOKEN_COOKIE = "tvcaption_token"
CSRF_COOKIE = "tvcaption_csrf"
TOKEN_HEADER = "x-tvcaption-token"
CSRF_HEADER = "x-csrf-token"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class Settings:
    engine: Engine
    reviewer: str | None = None  # the name edits are stored under unless the page gives one
    token: str | None = None  # required on every request when set
    host: str = "127.0.0.1"
    allowed_hosts: set[str] = field(default_factory=set)  # Host names accepted on loopback (tests add theirs)
    media: Any = None  # tvcaption.web.media.Media
    per_page: int = 20
    places: Any = None  # tvcaption.web.routes.Places: where hits' scenes are, cached per recording


def _cookies(scope: dict) -> dict[str, str]:
    jar = SimpleCookie()
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # noqa: BLE001, S110 - a malformed cookie header is no cookie
                pass
    return {k: m.value for k, m in jar.items()}


def _headers(scope: dict) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


class Guard:
    """ASGI middleware: token, host and cross-site checks, the CSRF cookie, security headers."""

    def __init__(self, app: Callable, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers, cookies = _headers(scope), _cookies(scope)
        refusal = self._refusal(scope, headers, cookies)
        if refusal is not None:
            from starlette.responses import PlainTextResponse, RedirectResponse

            status, message = refusal
            if status == 303:  # a good ?token=: remember it, and take it out of the address
                response = RedirectResponse(message, status_code=303)
                response.set_cookie(TOKEN_COOKIE, self.settings.token or "", httponly=True, samesite="lax")
            else:
                response = PlainTextResponse(message + "\n", status_code=status)
            await self._with_headers(response, scope, receive, send, cookies)
            return
        csrf = cookies.get(CSRF_COOKIE)
        fresh = None
        if not csrf or len(csrf) < 20:
            csrf = fresh = secrets.token_urlsafe(24)
        scope.setdefault("state", {})["csrf"] = csrf

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                         (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]
                if fresh is not None:
                    extra.append((b"set-cookie", f"{CSRF_COOKIE}={fresh}; Path=/; HttpOnly; SameSite=Strict".encode()))
                message = dict(message, headers=list(message.get("headers", [])) + extra)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _with_headers(self, response: Any, scope: dict, receive: Callable, send: Callable,
                            cookies: dict[str, str]) -> None:
        response.headers["content-security-policy"] = CSP
        response.headers["x-content-type-options"] = "nosniff"
        await response(scope, receive, send)

    def _refusal(self, scope: dict, headers: dict[str, str], cookies: dict[str, str]) -> tuple[int, str] | None:
        """(status, message) for a request to refuse, (303, address) to drop a good ?token=, or None."""
        s = self.settings
        host = headers.get("host", "")
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if is_loopback(s.host) and hostname not in LOOPBACK_NAMES | s.allowed_hosts:
            return 421, f"this server answers to localhost only, not {hostname!r}"
        if s.token:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            given = query.get("token") or headers.get(TOKEN_HEADER) or cookies.get(TOKEN_COOKIE) or ""
            if not secrets.compare_digest(given.encode(), s.token.encode()):
                return 403, "a token is needed: open the address tvcaption serve printed (it ends in ?token=...)"
            if "token" in query and scope["method"] in ("GET", "HEAD"):
                rest = urlencode([(k, v) for k, v in parse_qsl(scope["query_string"].decode("latin-1")) if k != "token"])
                path = "/" + scope["path"].lstrip("/")  # never "//host/...": a browser would leave for that host
                return 303, path + (f"?{rest}" if rest else "")
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            return self._cross_site(headers, cookies, host)
        return None

    @staticmethod
    def _cross_site(headers: dict[str, str], cookies: dict[str, str], host: str) -> tuple[int, str] | None:
        if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            return 403, "cross-site request refused"
        origin = headers.get("origin") or headers.get("referer")
        if origin and origin != "null":
            parts = urlsplit(origin)
            if parts.netloc != host:
                return 403, f"request from another site ({parts.scheme}://{parts.netloc}) refused"
        elif origin == "null":
            return 403, "request from an opaque origin refused"
        csrf = cookies.get(CSRF_COOKIE, "")
        if not csrf or not secrets.compare_digest(headers.get(CSRF_HEADER, "").encode(), csrf.encode()):
            return 403, "missing or wrong CSRF token: reload the page and try again"
        if not headers.get("content-type", "").startswith("application/json"):
            return 415, "send JSON (Content-Type: application/json)"
        return None


def create_app(engine: Engine | str, *, reviewer: str | None = None, token: str | None = None,
               host: str = "127.0.0.1", cache_dir: str | Path | None = None,
               allowed_hosts: set[str] | None = None, per_page: int = 20) -> Any:
    """The review app over ``engine`` (or a database URL, opened without creating anything)."""
    from starlette.applications import Starlette

    from tvcaption.web.media import Media
    from tvcaption.web.routes import Places, error_handlers, routes

    if isinstance(engine, str):
        from tvcaption.db.store import connect

        engine = connect(engine, create=False)
    settings = Settings(engine=engine, reviewer=reviewer or None, token=token or None, host=host,
                        allowed_hosts=set(allowed_hosts or ()), media=Media(cache_dir), per_page=per_page,
                        places=Places())
    app = Starlette(routes=routes(), exception_handlers=error_handlers())
    app.state.settings = settings
    return Guard(app, settings)


def prepare(settings: Settings, say: Callable[[str], None] = print) -> int:
    """Make every indexed recording's browser proxy now, one at a time, at a lower priority than the
    page's own ffmpeg runs; returns how many are ready. A recording that cannot be served is said
    and skipped."""
    from tvcaption.db.store import Store
    from tvcaption.web.media import MediaError

    ready = 0
    for recording in Store(settings.engine).recordings(status="done"):
        try:
            settings.media.served(recording, background=True)
            ready += 1
        except MediaError as exc:
            say(f"warning: {exc}")
    return ready


def warm_up(settings: Settings) -> float:
    """Load now what the first search would (the templates, the embedding model, search's own
    files: the meaning vectors' matrix, the text postings) by making one search; returns the
    seconds it took. A failure is only logged: the first real search says what is wrong."""
    import time

    began = time.perf_counter()
    try:
        import tvcaption.db.reviews  # noqa: F401 - where hits are, corrections
        import tvcaption.views  # noqa: F401 - the pages' timecodes; it imports rich (~0.3 s)
        from tvcaption.db.hybrid import search
        from tvcaption.web.routes import _caption_view, _listed, templates

        for name in ("search.html", "scene.html", "_options.html", "_caption.html"):
            templates().env.get_template(name)
        listed = {r.path: r for r in _listed(settings.engine)}
        hits = search(settings.engine, "warm up", limit=1)
        if settings.places is not None:
            settings.places.locate(settings.engine, listed, hits)
        for hit in hits:
            _caption_view(hit)
    except Exception as exc:  # noqa: BLE001 - a warm-up must never stop the server
        log.info("warm-up search failed (the first search will say why): %s", exc)
    return time.perf_counter() - began


def _listen(host: str, port: int):
    """A socket listening on ``host``:``port``, or a one-line error naming the fix."""
    import socket

    try:
        family = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:  # in use, not an address of this machine, an unknown name
        raise TvcaptionError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pass another --port, "
                             "or a --host this machine has") from None


def serve(engine: Engine, *, host: str = "127.0.0.1", port: int = 8400, reviewer: str | None = None,
          token: str | None = None, say: Callable[[str], None] = print, prepare_all: bool = False) -> None:
    """Run the app with uvicorn until interrupted. Bound to anything but loopback without a
    token, one is generated; the address to open (with the token) is said once. ``prepare_all``:
    make the proxies of recordings browsers cannot play in a background thread from the start.
    The first search's loading (:func:`warm_up`) is done in a background thread at start."""
    import threading

    import uvicorn

    listening = _listen(host, port)  # first: a port in use is one line, not uvicorn's after the address
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(18)
    app = create_app(engine, reviewer=reviewer, token=token, host=host)
    app.settings.media.tidy()  # scene parts of recordings whose whole proxy was made since
    threading.Thread(target=warm_up, args=(app.settings,), name="tvcaption-warm-up", daemon=True).start()
    if prepare_all:
        threading.Thread(target=prepare, args=(app.settings, say), name="tvcaption-proxies", daemon=True).start()
    shown = host
    if host in ("0.0.0.0", "::", ""):  # every interface: name this machine, which others can reach
        import socket

        shown = socket.gethostname()
    shown = f"[{shown}]" if ":" in shown else shown
    address = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    say(f"tvcaption review app on {address} (Ctrl-C stops it)")
    try:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", server_header=False)
        uvicorn.Server(config).run(sockets=[listening])
    finally:
        app.settings.media.close()  # stop the proxies being made; their half-written files go
