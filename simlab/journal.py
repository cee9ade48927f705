"""Resume a long run of real measurements where it stopped.

Calibration, validation and the real experiments run tens of real
measurements, each tens of seconds long. A ``Journal`` keeps each finished
step's result, one JSON line appended and flushed to disk, so that a run
interrupted by Ctrl-C, a crash or a reboot starts again at the first
unfinished step instead of the first step.

A journal belongs to one plan: its ``fingerprint`` (the steps and their
options). A journal left by another plan is not trusted; it is replaced.
The code's git revision is recorded when a journal starts; a run resumed
at another revision says so on stderr (``resumed_from``), since a commit
of docs or findings should not throw away half an hour of measurements,
but a user who changed a server should know. A torn last
line (a crash in mid-write) is ignored. The journal lives under the data
root's ``.journal/`` and is removed once the run's results are written, so
that ``data/`` never holds a half-finished result.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from simlab.paths import data_root
from simlab.provenance import git_revision, json_safe

__all__ = ["Journal", "journal_dir"]


def journal_dir() -> Path:
    return data_root() / ".journal"


class Journal:
    """The finished steps of one plan, by key."""

    def __init__(self, name: str, fingerprint: dict[str, Any]) -> None:
        self.path = journal_dir() / f"{name}.jsonl"
        self.fingerprint = hashlib.sha256(
            json.dumps(json_safe(fingerprint), sort_keys=True).encode()
        ).hexdigest()
        self.revision = git_revision()
        # The revision the journal's first steps were measured at (None: a fresh start).
        self.resumed_from: str | None = None
        self.steps: dict[str, Any] = {}
        self.resumed = self._load()
        if not self.resumed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write_line(self._head(self.revision), mode="w")
        elif self.steps:
            print(
                f"simlab: resuming {name}: {len(self.steps)} finished steps kept "
                f"(measured at revision {self.resumed_from}, now {self.revision})",
                file=sys.stderr,
            )

    def _head(self, revision: str | None) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "git_revision": revision}

    def _load(self) -> bool:
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            return False
        try:
            head = json.loads(lines[0]) if lines else {}
        except ValueError:
            return False
        if head.get("fingerprint") != self.fingerprint:
            return False
        self.resumed_from = head.get("git_revision")
        for line in lines[1:]:
            try:
                entry = json.loads(line)
            except ValueError:
                break  # a torn last line: everything before it stands
            self.steps[entry["key"]] = entry["value"]
        # Rewrite without the torn line, so that new steps append cleanly.
        body = [self._head(self.resumed_from)] + [
            {"key": k, "value": v} for k, v in self.steps.items()
        ]
        text = "".join(json.dumps(e, allow_nan=False) + "\n" for e in body)
        self.path.write_text(text)
        return True

    def _write_line(self, entry: dict[str, Any], mode: str = "a") -> None:
        with self.path.open(mode) as fh:
            fh.write(json.dumps(json_safe(entry), allow_nan=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def __contains__(self, key: str) -> bool:
        return key in self.steps

    def get(self, key: str) -> Any:
        return self.steps.get(key)

    def put(self, key: str, value: Any) -> None:
        """Record a finished step (its value must be JSON)."""
        self.steps[key] = json_safe(value)
        self._write_line({"key": key, "value": self.steps[key]})

    def done(self) -> None:
        """The run's results are written: the journal has served."""
        self.path.unlink(missing_ok=True)
