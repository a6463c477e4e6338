"""Files that ship inside the installed package: the default model and the Alembic migrations.

In the source tree they live at the top level (``models/``, ``migrations/``); ``pyproject.toml``
maps those folders into the package as ``tvcaption.resources.models`` and
``tvcaption.resources.migrations``, so a wheel carries them and an editable install finds them
in the checkout. Both are found with :mod:`importlib.resources`, never relative to the working
folder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from tvcaption.errors import TvcaptionError

SHIPPED_MODEL = "synthtv-lstap"


def _folder(package: str, probe: str) -> Path:
    """The folder of a resource package, checked to hold ``probe``."""
    try:
        path = Path(str(resources.files(package)))
    except ModuleNotFoundError:
        path = None
    if path is not None and (path / probe).exists():
        return path
    raise TvcaptionError(f"{package}: the files shipped with tvcaption are missing ({probe}); "
                         "reinstall tvcaption (pip install --force-reinstall tvcaption)")


def shipped_model() -> Path:
    """The checkpoint stem of the model shipped in the package (``.json`` + ``.safetensors``)."""
    return _folder("tvcaption.resources.models", f"{SHIPPED_MODEL}.json") / SHIPPED_MODEL


def migrations_dir() -> Path:
    """The Alembic script folder (``env.py`` and ``versions/``)."""
    return _folder("tvcaption.resources.migrations", "env.py")
