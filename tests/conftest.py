"""Shared fixtures: the shared data folder, ffmpeg and Java, a quiet torch, temporary config roots.

Without ffmpeg, Java or ``../shared/data`` the tests that need them skip with the reason;
``TVCAPTION_REQUIRE_MEDIA=1`` (CI) makes them fail instead (tests/needs.py).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from needs import SHARED_DATA, need, need_ffmpeg, need_java

try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:
    pass
else:
    # The default suite gates every merge, so its property tests draw the same examples on every
    # run: a red CI then means a change broke something, not that the dice rolled differently.
    # `pytest --hypothesis-profile=explore` (and the slow tests' thousands of examples) searches anew.
    _hypothesis_settings.register_profile("repeatable", derandomize=True)
    _hypothesis_settings.register_profile("explore", derandomize=False)
    _hypothesis_settings.load_profile("repeatable")

REPO = Path(__file__).resolve().parents[1]

# The user's own config and data folders are never touched by the tests: tvcaption's defaults
# (a database in the user's data folder, a tvcaption.toml in the config folder) point into a
# fresh folder per test process, inherited by every tvcaption the tests start.
_USER_HOME = Path(tempfile.mkdtemp(prefix="tvcaption-user-"))
# removed when the test process ends: CI machines run the suite hundreds of times, and each
# process's folder holds an exported ONNX backbone (~18 MB) and the search caches
atexit.register(shutil.rmtree, _USER_HOME, ignore_errors=True)
os.environ["XDG_CONFIG_HOME"] = str(_USER_HOME / "config")
os.environ["XDG_DATA_HOME"] = str(_USER_HOME / "data")
os.environ["XDG_CACHE_HOME"] = str(_USER_HOME / "cache")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    need(SHARED_DATA.is_dir(), f"shared test data not found at {SHARED_DATA} (set TVCAPTION_SHARED_DATA to its folder)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def scenes_dir(shared_data: Path) -> Path:
    need((shared_data / "scenes").is_dir(), f"shared clips not found at {shared_data / 'scenes'}")
    return shared_data / "scenes"


@pytest.fixture(scope="session")
def needs_ffmpeg() -> None:
    """For tests that run the ffmpeg CLI (``pytest.mark.usefixtures("needs_ffmpeg")``)."""
    need_ffmpeg()


@pytest.fixture(scope="session")
def needs_java() -> None:
    """For tests that score with pycocoevalcap's PTB tokenizer or METEOR."""
    need_java()


@pytest.fixture(autouse=True, scope="session")
def _quiet_torch():
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
    torch.manual_seed(0)
