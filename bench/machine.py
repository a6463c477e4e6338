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


def cpu_features() -> list[str]:
    """The vector and matrix instruction sets the CPU reports that matter for inference speed."""
    flags = set((proc_field("/proc/cpuinfo", "flags") or "").split())
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8", "f16c")
    return [f for f in wanted if f in flags]
