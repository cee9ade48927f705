"""Where a claim's evidence comes from: the committed data under the data root.

Every reader raises ``MissingFileError`` naming the file it needed when that file is
absent, so that a claim whose experiment has not landed yet is reported as
"not yet measured" from the file's absence, never from a list typed by hand.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from simlab.params import Platform
from simlab.paths import data_root

__all__ = ["Evidence", "MissingFileError", "fixed_seconds"]


class MissingFileError(Exception):
    """The file a claim's evidence lives in does not exist (yet)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class Evidence:
    """Reads the data root's experiments, measurements and profiles, each once.

    Paths are reported relative to the data root's parent (``data/...``) so
    that a row names the file the way the repository does.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or data_root()).absolute()
        self.used: list[str] = []

    def shown(self, path: Path) -> str:
        try:
            return str(Path(self.root.name) / path.relative_to(self.root))
        except ValueError:
            return str(path)

    def results(self, experiment: str) -> pd.DataFrame:
        """``experiments/<experiment>/results.csv`` as a table."""
        return self._csv(self.root / "experiments" / experiment / "results.csv")

    def has_results(self, experiment: str) -> bool:
        return (self.root / "experiments" / experiment / "results.csv").exists()

    def meta(self, experiment: str) -> dict[str, Any]:
        return self._json(self.root / "experiments" / experiment / "meta.json")

    def profile(self, name: str = "cpython") -> dict[str, Any]:
        """A calibrated profile's JSON (``profiles/<name>.json``)."""
        return self._json(self.root / "profiles" / f"{name}.json")

    def platform(self, name: str = "cpython") -> Platform:
        """The calibrated profile ``name`` of this data root, as a platform."""
        from simlab.platforms import platform_from_profile  # noqa: PLC0415

        path = self.root / "profiles" / f"{name}.json"
        return platform_from_profile(self.profile(name), source=str(path))

    def measurements(self) -> list[dict[str, Any]]:
        """The summaries of every real run in ``measurements/`` (not the memory runs),
        the newest last, each with the file it came from under ``"_file"``."""
        folder = self.root / "measurements"
        files = sorted(p for p in folder.glob("*.json") if not p.name.startswith("memory"))
        if not files:
            raise MissingFileError(self.shown(folder / "<target>-<stamp>-seed<N>.json"))
        out = []
        for path in files:
            data = _read_json(path)
            summary = data.get("summary")
            if isinstance(summary, dict):
                out.append({**summary, "_file": self.shown(path)})
        self.used.append(self.shown(folder))
        return out

    def _csv(self, path: Path) -> pd.DataFrame:
        if not path.exists():
            raise MissingFileError(self.shown(path))
        self.used.append(self.shown(path))
        return _read_csv(path).copy()

    def _json(self, path: Path) -> dict[str, Any]:
        if not path.exists():
            raise MissingFileError(self.shown(path))
        self.used.append(self.shown(path))
        return _read_json(path)


@cache
def _read_csv_cached(path: Path, mtime: float) -> pd.DataFrame:
    return pd.read_csv(path)


def _read_csv(path: Path) -> pd.DataFrame:
    # Keyed on the modification time, so a doctored table is read afresh.
    return _read_csv_cached(path, path.stat().st_mtime)


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


_FIXED = re.compile(r"^Fixed\(([-+0-9.eE]+)\)$")


def fixed_seconds(text: Any) -> float | None:
    """The value of a distribution written ``Fixed(0.001)``, else None."""
    m = _FIXED.match(str(text))
    return float(m.group(1)) if m else None
