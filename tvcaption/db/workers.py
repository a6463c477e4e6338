"""Who holds a claim: a worker's identity, and whether a worker of this machine is gone.

A worker is ``hostname:pid:space`` (:func:`worker_id`), where ``space`` names the set of
processes whose pids this process can check (:func:`process_space`). :meth:`Store.claim
<tvcaption.db.store.Store.claim>` takes a claim of a dead worker of our own process space at once
(:func:`worker_is_dead`) instead of waiting for ``claim_timeout``.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path


def process_space() -> str:
    """A short key naming the set of processes whose pids this process can check.

    Two workers share it when they run under the same kernel boot (``boot_id``) in the same pid
    namespace, on a host of the same name. Containers with one hostname on one machine (or on
    two) then get different keys, so one never reads another's pid as its own.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pid_namespace = os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    except OSError:  # not Linux: the host name alone
        boot = pid_namespace = ""
    return hashlib.sha256("\0".join((socket.gethostname(), boot, pid_namespace)).encode()).hexdigest()[:12]


def worker_id() -> str:
    """This process as a claimant: ``hostname:pid:space`` (what ``index_paths`` records in claimed_by)."""
    return f"{socket.gethostname()}:{os.getpid()}:{process_space()}"


def worker_is_dead(worker: str | None) -> bool:
    """True when ``worker`` (``hostname:pid:space``) is a process we can check and it no longer exists.

    A claim by such a worker can be taken at once instead of after ``claim_timeout``: the worker
    was killed (SIGKILL, OOM killer, power cut of a container) and will never save or release it.
    Only a worker of our own process space (:func:`process_space`: same host, kernel boot and pid
    namespace) can be checked. Anything else (another host or container, a worker id of another
    form, a pid that exists or cannot be checked) counts as alive, and its claim goes stale only
    after ``claim_timeout``. A recycled pid only makes us wait for the timeout; it never takes a
    live claim.
    """
    parts = (worker or "").split(":")
    if len(parts) != 3:
        return False
    host, pid, space = parts
    if host != socket.gethostname() or space != process_space() or not pid.isdigit() or int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists, as another user
        return False
    return False
