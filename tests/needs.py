"""What a test needs from the machine, and what happens when it is missing: skip, or fail in CI.

A test that needs ffmpeg, Java (pycocoevalcap's PTB tokenizer and METEOR), the shared clips in
``../shared/data`` (``$TVCAPTION_SHARED_DATA``) or an installed test extra asks for it through the
``shared_data``, ``scenes_dir``, ``needs_ffmpeg`` and ``needs_java`` fixtures of conftest.py (or
media.py's ``media``), which call :func:`need`, or through :func:`need_module` / :func:`need`.
When it is missing the test is skipped with the reason, so a laptop without the shared data
still runs the rest; with ``TVCAPTION_REQUIRE_MEDIA=1`` (set by ``.ci/run``) it fails instead,
so CI cannot go green by skipping. ``TVCAPTION_REQUIRE_PG`` does the same for PostgreSQL
(tests/pg.py).
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType

import pytest

REQUIRE_MEDIA_ENV = "TVCAPTION_REQUIRE_MEDIA"
SHARED_DATA_ENV = "TVCAPTION_SHARED_DATA"
SHARED_DATA = Path(os.environ.get(SHARED_DATA_ENV, Path(__file__).resolve().parents[2] / "shared" / "data"))


def media_required() -> bool:
    """True when a missing tool or data must fail the test (CI), not skip it."""
    return os.environ.get(REQUIRE_MEDIA_ENV, "") not in ("", "0")


def need(available: object, reason: str) -> None:
    """Go on when ``available`` is true; otherwise skip with ``reason``, or fail with it when
    ``TVCAPTION_REQUIRE_MEDIA`` is set."""
    __tracebackhide__ = True  # -rs shows the test's line, not this one
    if available:
        return
    if media_required():
        pytest.fail(f"{reason} ({REQUIRE_MEDIA_ENV} is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)  # at module level (need_module) it skips the module


def need_ffmpeg(why: str = "it makes the test media") -> None:
    __tracebackhide__ = True
    need(shutil.which("ffmpeg"), f"ffmpeg not on PATH; {why}")


def need_java() -> None:
    __tracebackhide__ = True
    need(shutil.which("java"), "java not on PATH; pycocoevalcap's PTB tokenizer and METEOR run on it")


def need_module(name: str, why: str = "") -> ModuleType:
    """The imported module ``name`` (``pytest.importorskip`` that fails under the switch)."""
    __tracebackhide__ = True
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        need(False, f"cannot import {name} ({exc}){'; ' + why if why else ''}; "
                    "install the test extras: pip install -e '.[test]'")
        raise  # not reached: need() skipped or failed
