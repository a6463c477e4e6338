"""Shared fixtures: the shared data folder, a quiet torch, temporary config roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
SHARED_DATA = Path(os.environ.get("TVCAPTION_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def scenes_dir(shared_data: Path) -> Path:
    return shared_data / "scenes"


@pytest.fixture(autouse=True, scope="session")
def _quiet_torch():
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
    torch.manual_seed(0)
