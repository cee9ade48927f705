"""What every experiment script shares: its output folder, its table, figures and findings.

An experiment (``experiments/<name>.py``) collects rows, draws figures and
writes findings whose numbers are formatted from the rows. ``Experiment``
gives each row the experiment's parameters, seed, git revision and machine,
and writes everything into a temporary folder beside the target, renamed
into place only when the whole experiment has finished: an interrupted run
leaves the previous results (or nothing), never half of a new one.

    with Experiment("c10k_idle_connections", seed=SEED, quick=args.quick, params={...}) as ex:
        ex.add(model="async", connections=100, threads=1, ...)
        ex.figure("threads", fig)              # a matplotlib figure -> threads.png
        ex.html("threads", plotly_fig)          # an interactive version -> threads.html
        ex.findings(text)                       # markdown, numbers from ex.table()
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import pandas as pd

from simlab.paths import experiments_dir
from simlab.provenance import git_revision, json_safe, machine, utc_stamp

__all__ = ["Experiment", "arguments"]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def arguments(doc: str) -> argparse.Namespace:
    """The options every experiment takes: ``--quick`` and ``--out``.

    Also makes SIGTERM and SIGHUP stop the experiment the way Ctrl-C does, so
    that the servers and load it started are stopped and no partial output stays.
    """
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small, fast version (tests)")
    parser.add_argument(
        "--out", type=Path, help="output folder (default $SIMLAB_DATA/experiments/NAME)"
    )
    return parser.parse_args()


class Experiment:
    """One experiment's outputs, written atomically as a folder."""

    def __init__(
        self,
        name: str,
        *,
        seed: int,
        quick: bool,
        params: dict[str, Any],
        out: Path | None = None,
    ) -> None:
        self.name = name
        self.seed = seed
        self.quick = quick
        self.params = params
        self.target = out if out is not None else experiments_dir() / name
        self.rows: list[dict[str, Any]] = []
        self._tmp: Path | None = None
        self._started = time.perf_counter()
        self._revision = git_revision()
        self._machine = machine()

    def __enter__(self) -> Experiment:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        # A run killed outright (SIGKILL, power loss) leaves its temporary folder.
        for stale in self.target.parent.glob(f".{self.name}.*"):
            shutil.rmtree(stale, ignore_errors=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.name}.", dir=self.target.parent))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tmp is not None
        if exc_type is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            return
        self._write_table()
        meta = {
            "experiment": self.name,
            "seed": self.seed,
            "quick": self.quick,
            "params": self.params,
            "git_revision": self._revision,
            "machine": self._machine,
            "finished": utc_stamp(),
            "wall_s": time.perf_counter() - self._started,
            "rows": len(self.rows),
        }
        (self._tmp / "meta.json").write_text(json.dumps(json_safe(meta), indent=2) + "\n")
        # Swap the finished folder in: the old one is moved aside first, then removed.
        old = None
        if self.target.exists():
            old = self.target.with_name(f".{self.name}.old.{os.getpid()}")
            self.target.rename(old)
        self._tmp.rename(self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    @property
    def folder(self) -> Path:
        assert self._tmp is not None, "use Experiment as a context manager"
        return self._tmp

    def add(self, **row: Any) -> None:
        """One result row; parameters, seed, revision and machine are added on write."""
        self.rows.append(row)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def _write_table(self) -> None:
        df = self.table()
        df.insert(0, "experiment", self.name)
        df["seed"] = self.seed
        df["quick"] = self.quick
        df["git_revision"] = self._revision
        df["machine"] = f"{self._machine['cpu']} x{self._machine['cores']}"
        for key, value in self.params.items():
            if key not in df.columns and isinstance(value, int | float | str | bool):
                df[f"param_{key}"] = value
        df.to_csv(self.folder / "results.csv", index=False)

    def figure(self, stem: str, fig: Any) -> Path:
        """Save a matplotlib figure as ``stem.png``."""
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        path = self.folder / f"{stem}.png"
        path.write_bytes(buf.getvalue())
        return path

    def html(self, stem: str, fig: Any) -> Path:
        """Save a plotly figure as a self-contained ``stem.html``."""
        path = self.folder / f"{stem}.html"
        path.write_text(fig.to_html(include_plotlyjs="cdn", full_html=True))
        return path

    def findings(self, text: str) -> None:
        """The findings, in markdown, their numbers formatted from the data."""
        header = (
            f"<!-- generated by experiments/{self.name}.py from results.csv; "
            f"seed {self.seed}{', quick' if self.quick else ''} -->\n"
        )
        (self.folder / "findings.md").write_text(header + text.strip() + "\n")
