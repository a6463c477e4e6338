"""What the benchmarks record about the machine they ran on (shared by bench/*.py)."""

from __future__ import annotations

from pathlib import Path


def proc_field(file: str, key: str) -> str | None:
    """The value of the first ``key`` line of a /proc file (``model name``, ``MemTotal``), or None."""
    try:
        for line in Path(file).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str | None:
    return proc_field("/proc/cpuinfo", "model name")
