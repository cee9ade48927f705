"""Where simlab keeps its data: one root, ``$SIMLAB_DATA``, default ``./data``.

Everything simlab reads or writes lives under it: calibrated profiles
(``profiles/``), real measurements (``measurements/``), validation reports
(``validation/``), experiment results (``experiments/``), USL studies
(``usl/``) and sweeps (``sweeps/``). The root also decides whether a
calibrated profile replaces a preset: ``--platform cpython`` (and the API's
``load_platform("cpython")``) uses ``$SIMLAB_DATA/profiles/cpython.json``
when that file exists, and the uncalibrated preset otherwise.

The root is read at each call, not at import, so a test or a script can
point it elsewhere by setting the environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "DATA_ENV",
    "data_root",
    "experiments_dir",
    "measurements_dir",
    "profiles_dir",
    "shown",
    "sweeps_dir",
    "usl_dir",
    "validation_dir",
]

DATA_ENV = "SIMLAB_DATA"


def data_root() -> Path:
    """``$SIMLAB_DATA``, or ``data`` in the current directory."""
    return Path(os.environ.get(DATA_ENV) or "data").absolute()


def profiles_dir() -> Path:
    return data_root() / "profiles"


def measurements_dir() -> Path:
    return data_root() / "measurements"


def validation_dir() -> Path:
    return data_root() / "validation"


def experiments_dir() -> Path:
    return data_root() / "experiments"


def usl_dir() -> Path:
    return data_root() / "usl"


def sweeps_dir() -> Path:
    return data_root() / "sweeps"


def shown(path: Path) -> str:
    """A path as a user should see it: relative to the current directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
