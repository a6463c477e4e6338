"""``tvcaption index --ray`` on a real local Ray cluster (2 CPUs, 2 workers), PostgreSQL and the toy model.

- The same folder through one process and through Ray: the same recordings, scenes and captions.
- A worker killed with SIGKILL while it indexes: Ray restarts it, the recording is indexed again,
  every recording ends indexed exactly once with what a clean run stores.
- Bad files fail one by one (exit code 1); SQLite is refused in one line.
- ``--ray`` alone starts a cluster of its own on this machine; ``--ray-address`` names one.

Skipped with the reason when Ray is not installed; with TVCAPTION_REQUIRE_MEDIA=1 (CI) that fails.
The long fault trials are ``scripts/ray_faults.py`` (``-m slow`` runs a longer version here).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from needs import need_ffmpeg, need_module
from toymodel import make_clip
from typer.testing import CliRunner

pytest_plugins = ["pg", "toymodel"]
CLIPS = (("red", "testsrc2", 3), ("blue", "smptebars", 2), ("green", "rgbtestsrc", 2), ("long", "testsrc", 8))


def ray_config(toy, folder: Path, url: str, claim_timeout: float | None = None) -> Path:
    """The toy model's config with caption and tags only, and 2 workers of one core each."""
    path = toy.config(folder, url, claim_timeout)
    path.write_text(path.read_text() + '[index]\nanalysers = ["caption", "tags"]\n'
                    "[ray]\nworkers = 2\ncpus_per_worker = 1\nretries = 3\n")
    return path


def make_folder(folder: Path) -> Path:
    need_ffmpeg()
    folder.mkdir(parents=True, exist_ok=True)
    for name, source, seconds in CLIPS:
        make_clip(folder / f"{name}.mp4", seconds=seconds, source=f"{source}=size=96x64:rate=10:duration={seconds}")
    return folder


def snapshot(url: str) -> dict[str, list[tuple]]:
    """Every stored recording (by file name) with its scenes: times, caption, tags."""
    from tvcaption.db.store import Store

    with Store(url) as store:
        recordings = store.recordings()
        assert len({r.path for r in recordings}) == len(recordings)
        return {Path(r.path).name: (r.status, [(round(s.start, 3), round(s.end, 3), s.caption, tuple(s.tags))
                                               for s in store.scenes_of(r.path)]) for r in recordings}


@pytest.fixture(scope="module")
def ray_cluster():
    ray = need_module("ray", "tvcaption index --ray runs on it: pip install -e '.[ray]'")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=2, object_store_memory=80 * 1024 * 1024, include_dashboard=False,
             logging_level="warning", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def clean(toy, tmp_path_factory):
    """The folder, and what one ``index`` process stores for it."""
    from tvcaption.config import load_config
    from tvcaption.pipeline import index_paths

    root = tmp_path_factory.mktemp("ray")
    folder = make_folder(root / "clips")
    url = f"sqlite:///{root / 'clean.db'}"
    report = index_paths([folder], load_config(ray_config(toy, root / "cfg", url), env={}))
    assert len(report.done) == len(CLIPS) and not report.failed
    return folder, snapshot(url)


def test_ray_index_stores_what_one_process_stores(toy, clean, ray_cluster, fresh_pg_url, tmp_path):
    from tvcaption.config import load_config
    from tvcaption.ray_index import index_paths_ray

    folder, expected = clean
    url = fresh_pg_url()
    events = []
    report = index_paths_ray([folder], load_config(ray_config(toy, tmp_path, url), env={}), on_event=events.append)
    assert sorted(Path(p).name for p, _, _ in report.done) == sorted(expected) and not report.failed
    assert snapshot(url) == expected
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds.count("done") == len(CLIPS) and "progress" in kinds
    assert report.recording_seconds == pytest.approx(sum(s for _, _, s in CLIPS), abs=0.5)
    again = index_paths_ray([folder], load_config(ray_config(toy, tmp_path, url), env={}))
    assert len(again.skipped) == len(CLIPS) and not again.done  # nothing twice


def kill_workers_while_indexing(url: str, run: threading.Thread, kills: int) -> list[str]:
    """SIGKILL the worker processes holding claims (each a Ray worker on this machine), ``kills``
    times, each while it is captioning a recording; returns the names of the recordings hit."""
    from tvcaption.db.store import Store

    hit: list[str] = []
    with Store(url) as store:
        while run.is_alive() and len(hit) < kills:
            time.sleep(0.05)
            for rec in store.recordings(status="processing"):
                name = Path(rec.path).name
                if rec.claimed_by and name not in hit:
                    os.kill(int(rec.claimed_by.split(":")[1]), signal.SIGKILL)
                    hit.append(name)
                    break
    return hit


@pytest.mark.postgres
@pytest.mark.parametrize("kills", [pytest.param(1), pytest.param(3, marks=pytest.mark.slow)])
def test_a_killed_worker_loses_and_duplicates_nothing(toy, clean, ray_cluster, fresh_pg_url, tmp_path, kills):
    from tvcaption.config import load_config
    from tvcaption.ray_index import index_paths_ray

    folder, expected = clean
    url = fresh_pg_url()
    config = load_config(ray_config(toy, tmp_path, url), env={})
    result: dict = {}
    run = threading.Thread(target=lambda: result.setdefault("report", index_paths_ray([folder], config)))
    run.start()
    hit = kill_workers_while_indexing(url, run, kills)
    run.join(timeout=300)
    assert not run.is_alive()
    report = result["report"]
    assert len(hit) == kills, f"the batch ended before {kills} kills: {hit}"
    assert not report.failed and sorted(Path(p).name for p, _, _ in report.done) == sorted(expected), report
    assert snapshot(url) == expected  # every recording once, the same scenes and captions


def test_ray_cli_reports_bad_files_and_refuses_sqlite(toy, clean, ray_cluster, fresh_pg_url, tmp_path):
    from tvcaption.cli import app

    folder, _ = clean
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.mp4").write_bytes(b"not a video")
    (bad / "one.mp4").symlink_to(folder / "green.mp4")
    config = ray_config(toy, tmp_path / "cfg", fresh_pg_url())
    result = CliRunner().invoke(app, ["index", str(bad), "--ray", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert "broken.mp4" in result.output and "failed" in result.output
    sqlite = CliRunner().invoke(app, ["index", str(bad), "--ray-address", "auto", "--db", str(tmp_path / "x.db")])
    assert sqlite.exit_code == 1 and "PostgreSQL" in sqlite.output and len(sqlite.output.strip().splitlines()) == 1


def test_which_cluster_ray_and_ray_address_name(monkeypatch, tmp_path):
    """``--ray`` alone: $RAY_ADDRESS, else a cluster of our own; ``--ray-address`` names one (and
    implies --ray); the old ``--ray auto FOLDER`` is refused in one line, not read as a folder."""
    from tvcaption import ray_index
    from tvcaption.cli import app
    from tvcaption.errors import TvcaptionError
    from tvcaption.pipeline import IndexReport

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_index.cluster_address(None, [tmp_path]) is None
    assert ray_index.cluster_address("local", [tmp_path]) is None
    assert ray_index.cluster_address("auto", [tmp_path]) == "auto"
    with pytest.raises(TvcaptionError, match="--ray-address auto"):
        ray_index.cluster_address(None, [Path("auto"), tmp_path])
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    assert ray_index.cluster_address(None, [tmp_path]) == "head:6379"
    assert ray_index.cluster_address("local", [tmp_path]) is None
    monkeypatch.delenv("RAY_ADDRESS")

    asked = []

    def index_paths_ray(paths, cfg, address, **kwargs):
        asked.append(address)
        return IndexReport()

    monkeypatch.setattr(ray_index, "index_paths_ray", index_paths_ray)
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    for argv, address in ((["--ray"], None), (["--ray-address", "auto"], "auto"),
                          (["--ray", "--ray-address", "ray://head:10001"], "ray://head:10001")):
        result = CliRunner().invoke(app, ["index", str(tmp_path), *argv, "--db", url])
        assert result.exit_code == 0, result.output
        assert asked.pop() == address
    old = CliRunner().invoke(app, ["index", "--ray", "auto", str(tmp_path), "--db", url])
    assert old.exit_code == 1 and "--ray-address auto" in old.output and not asked
    assert "--ray-address" in CliRunner().invoke(app, ["index", "--help"]).output

    inits = []
    fake = type("FakeRay", (), {"is_initialized": staticmethod(lambda: False),
                                "init": staticmethod(lambda **kw: inits.append(kw))})
    assert ray_index._start_ray(fake, None, None) and inits[-1]["address"] == "local"  # never one ray start made
    assert ray_index._start_ray(fake, "auto", None) and inits[-1]["address"] == "auto"


@pytest.mark.postgres
def test_bare_ray_flag_starts_a_cluster_of_its_own(toy, clean, fresh_pg_url, tmp_path):
    """``tvcaption index FOLDER --ray`` in a process of its own: it starts a local cluster for the
    run (none is running for it), indexes, and stops it."""
    import shutil
    import subprocess

    from toymodel import subprocess_env, tvcaption_exe

    need_module("ray", "tvcaption index --ray runs on it: pip install -e '.[ray]'")
    folder, expected = clean
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(folder / "blue.mp4", one / "blue.mp4")
    url = fresh_pg_url()
    config = ray_config(toy, tmp_path / "cfg", url)
    env = {k: v for k, v in subprocess_env(RAY_USAGE_STATS_ENABLED="0").items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([*tvcaption_exe(), "index", str(one), "--ray", "--config", str(config)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert snapshot(url) == {"blue.mp4": expected["blue.mp4"]}


@pytest.mark.postgres
def test_a_claim_of_a_gone_worker_on_another_host_is_given_back(fresh_pg_url):
    """Across hosts the pid check cannot tell a dead worker: the driver knows which worker ids of
    its own actors are gone (all but the newest of each actor, every one of a replaced actor) and
    the next attempt gives such a claim back; a live worker's claim is left alone."""
    from types import SimpleNamespace

    from tvcaption.db.store import Store
    from tvcaption.ray_index import _Pool, _take_over

    store = Store(fresh_pg_url(), claim_timeout=600)
    gone, alive = "node-7:4242:aaaaaaaaaaaa", "node-8:4343:bbbbbbbbbbbb"
    assert store.claim("/a.ts", "h", gone) and store.claim("/b.ts", "h", alive)
    assert store.claim("/a.ts", "h", "node-9:1:c") is None  # not stale for 600 s
    _take_over(store, "/a.ts", (gone,))
    _take_over(store, "/b.ts", (gone,))
    assert store.claim("/a.ts", "h", "node-9:1:c") is not None
    assert store.claim("/b.ts", "h", "node-9:1:c") is None
    store.close()
    pool = SimpleNamespace(current={"actor1": "", "actor2": ""})
    registered = {"actor1": ["n:1:x", "n:2:x"], "actor2": ["n:3:x"], "replaced": ["n:4:x"]}
    assert set(_Pool.dead_workers(pool, registered)) == {"n:1:x", "n:4:x"}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["worker", "node"])
def test_fault_trials(toy, tmp_path, mode):
    """scripts/ray_faults.py: worker kills, and node kills on a two-node cluster on this machine."""
    import json
    import subprocess
    import sys

    need_module("ray", "tvcaption index --ray runs on it: pip install -e '.[ray]'")
    script = Path(__file__).resolve().parents[1] / "scripts" / "ray_faults.py"
    out = tmp_path / "faults.json"
    proc = subprocess.run([sys.executable, str(script), "--mode", mode, "--trials", "2", "--kills", "1" if mode == "node" else "2",
                           "--model", str(toy.model), "--json", str(out)], check=False, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["failed_trials"] == 0 and summary["kills"] >= 2
