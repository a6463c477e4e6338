"""A throwaway PostgreSQL server: for the test suite (tests/pg.py), the search benchmark
(bench/search_latency.py) and trying the PostgreSQL backend by hand.

initdb + ``pg_ctl start`` in a folder, listening on 127.0.0.1 with its socket in that folder,
user ``postgres`` with trust authentication, durability off (fsync, synchronous_commit,
full_page_writes: nothing here must survive a crash). PostgreSQL refuses to run as root, so as
root the server runs as an unprivileged user (``nobody``).

    python scripts/pgserver.py start DIR [--port N]   # prints the URL; the server keeps running
    python scripts/pgserver.py stop DIR

``TVCAPTION_PG_BIN`` names the folder holding initdb and pg_ctl when they are neither on PATH
nor in /usr/lib/postgresql/*/bin.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

PG_BIN_ENV = "TVCAPTION_PG_BIN"
UNPRIVILEGED_USER = "nobody"
DURABILITY_OFF = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c log_min_messages=warning"


def find_pg_bin() -> Path | None:
    """The folder with initdb and pg_ctl: $TVCAPTION_PG_BIN, PATH, or the newest Debian install."""
    candidates: list[Path] = []
    if os.environ.get(PG_BIN_ENV):
        candidates.append(Path(os.environ[PG_BIN_ENV]))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    """A server of our own in ``root`` (a new temporary folder by default), removed by ``stop``
    unless ``keep``. ``settings``: extra ``-c name=value`` server options."""

    def __init__(self, bindir: Path, root: Path | None = None, settings: str = "", keep: bool = False,
                 prefix: str = "tvcaption-pg-") -> None:
        self.bindir = bindir
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix=prefix))
        self.root.mkdir(parents=True, exist_ok=True)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.settings = f"{DURABILITY_OFF} {settings}".strip()
        self.keep = keep
        self.host, self.port, self.user = "127.0.0.1", 0, "postgres"
        self._run_as: dict = {}
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            entry = pwd.getpwnam(UNPRIVILEGED_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self._run_as = dict(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
        self._started = False

    def pg(self, *args: str, timeout: float = 120) -> None:
        """Run one of the server's programs (initdb, pg_ctl) as the server's user."""
        proc = subprocess.run([str(self.bindir / args[0]), *args[1:]], capture_output=True, text=True,
                              timeout=timeout, cwd=self.root, env={**os.environ, "LC_ALL": "C"}, **self._run_as)
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip()}\n{log}")

    def start(self, port: int = 0) -> LocalServer:
        """initdb (unless the folder already holds a cluster), then start on ``port`` (0: a free one)."""
        if not (self.data / "PG_VERSION").is_file():
            self.pg("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                    "--no-locale", "--no-sync", "--no-instructions")
        for attempt in range(3):  # a free port may be taken between finding it and binding it
            self.port = port or free_port()
            options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} {self.settings}"
            try:
                self.pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o", options, "start")
                break
            except RuntimeError:
                if attempt == 2 or port:
                    raise
        self._started = True
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (``immediate``: no shutdown checkpoint) and, unless ``keep``, delete it."""
        if self._started or self.keep:
            self._started = False
            try:
                self.pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Start or stop a throwaway PostgreSQL server in DIR.")
    ap.add_argument("command", choices=("start", "stop"))
    ap.add_argument("dir", type=Path, help="folder for the cluster, its socket and log")
    ap.add_argument("--port", type=int, default=54329)
    args = ap.parse_args(argv)
    bindir = find_pg_bin()
    if bindir is None:
        print(f"PostgreSQL server binaries (initdb, pg_ctl) not found: install PostgreSQL or set {PG_BIN_ENV}",
              file=sys.stderr)
        return 1
    server = LocalServer(bindir, root=args.dir.resolve(), keep=True)
    if args.command == "start":
        print(server.start(args.port).url())
    else:
        server.stop("fast")
    return 0


if __name__ == "__main__":
    sys.exit(main())
