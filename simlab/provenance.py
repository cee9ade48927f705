"""Where a result came from, and writing it without ever leaving a partial file.

Every saved result records its parameters, seed, git revision and machine;
``atomic_write`` writes to a temporary file in the same directory and
renames it over the target, so a crash or Ctrl-C leaves either the old file
or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write",
    "atomic_write_json",
    "git_revision",
    "json_safe",
    "machine",
    "utc_stamp",
]

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = (
    "simpy",
    "numpy",
    "scipy",
    "pandas",
    "h11",
    "httptools",
    "psutil",
    "uvloop",
    "gunicorn",
    "uvicorn",
)


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    import tempfile  # noqa: PLC0415 - a simulation that writes nothing does not load it

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the usual mode.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def git_revision() -> str:
    import subprocess  # noqa: PLC0415 - only a run that records its revision needs it

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out + ("-dirty" if dirty.strip() else "")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    # importlib.metadata loads the email package (about 20 ms): only a run
    # that records its machine pays for it, not every command's start.
    from importlib import metadata  # noqa: PLC0415

    versions: dict[str, str | None] = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    return {
        "hostname": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "libraries": versions,
    }


def json_safe(obj: Any) -> Any:
    """JSON-ready: numpy scalars to Python numbers, non-finite floats to None."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    # A numpy scalar can only exist if numpy is loaded: this module does not load it.
    np = sys.modules.get("numpy")
    if np is not None and isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float) or (np is not None and isinstance(obj, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def utc_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
