"""Sweep files: a base scenario, a grid or a one-parameter what-if range, and the models.

A sweep file is TOML::

    name = "c10k-io"                 # optional: the file's stem
    models = ["reactor-pool", "async"]   # optional: all six
    seed = 1                         # optional: 1; every point runs with it

    [base]                           # any option of `simlab simulate`
    scenario = "c10k"
    duration = 20
    workers = 16

    [grid]                           # every combination of these lists
    io_ms = [10, 50, 200]
    rate = [100, 200]

or, instead of ``[grid]``, a what-if range over one parameter::

    [whatif]
    parameter = "io_ms"
    from = 10
    to = 3000
    points = 8
    scale = "log"                    # or "linear"; or give values = [...]

Parameters are named as the command-line options, with ``_`` or ``-``:
workload (``connections``, ``rate``, ``think_ms``, ``cpu_ms``, ``cpu_dist``,
``io_ms``, ``io_dist``, ``calls``, ``fanout``, ``requests_per_connection``,
``scenario``), platform (``platform``, ``cores``, ``gil`` and every platform
number such as ``stack_kib``), architecture (``workers``, ``processes``,
``backlog``) and run (``duration``, ``warmup``, ``replications``, ``seed``).
Every error names the file and the line.
"""

from __future__ import annotations

import itertools
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simlab.errors import UserError
from simlab.registry import MODEL_NAMES
from simlab.scenario import OPTIONS, build

__all__ = ["SweepError", "SweepSpec", "load_spec", "parse_spec"]

MAX_POINTS = 100_000


class SweepError(UserError):
    """A bad sweep file: the message names the file and the line."""


# Every scenario option (``simlab.scenario.OPTIONS``), checked the same way as
# on the command line.
PARAMETERS = OPTIONS


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep: the base, the varied parameters and their values, the models."""

    name: str
    models: tuple[str, ...]
    base: dict[str, Any]
    varied: dict[str, list[Any]]
    seed: int = 1
    source: str = "<sweep>"
    kind: str = "grid"
    extra: dict[str, Any] = field(default_factory=dict)

    def points(self) -> list[dict[str, Any]]:
        """Every combination of the varied values over the base, in file order."""
        names = list(self.varied)
        return [
            {"seed": self.seed, **self.base, **dict(zip(names, combo, strict=True))}
            for combo in itertools.product(*(self.varied[n] for n in names))
        ]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "models": list(self.models),
            "base": self.base,
            "varied": self.varied,
            "seed": self.seed,
            "kind": self.kind,
            "source": self.source,
        }


def _normal(key: str) -> str:
    return key.replace("-", "_")


def _line_of(text: str, table: str | None, key: str) -> int | None:
    """The line where ``key`` is set (in ``[table]``, or at the top when None)."""
    current: str | None = None
    pattern = re.compile(rf"""^\s*["']?{re.escape(key)}["']?\s*=""")
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"^\s*\[\s*([^\]]+?)\s*\]", line)
        if header:
            current = header.group(1).strip()
            continue
        if current == table and pattern.match(line):
            return number
    return None


def _table_line(text: str, table: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf"^\s*\[\s*{re.escape(table)}\s*\]", line):
            return number
    return None


def load_spec(path: Path | str) -> SweepSpec:
    """Read and check a sweep file; a problem raises ``SweepError`` naming its line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SweepError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_spec(text, source=str(path), default_name=path.stem)


# Each key of the file is checked in the file's order, so that the first error
# reported is the first one in the file: one branch per key.
def parse_spec(  # noqa: PLR0912
    text: str, *, source: str = "<sweep>", default_name: str = "sweep"
) -> SweepSpec:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = "" if "line" in str(exc) else f" (line {len(text.splitlines())}, the last)"
        raise SweepError(f"{source}: not valid TOML: {exc}{where}") from None

    def fail(message: str, table: str | None = None, key: str | None = None) -> SweepError:
        line = None
        if key is not None:
            line = _line_of(text, table, key)
        elif table is not None:
            line = _table_line(text, table)
        where = f"{source}, line {line}" if line is not None else source
        return SweepError(f"{where}: {message}")

    allowed_top = {"name", "models", "seed", "base", "grid", "whatif", "description"}
    for key in doc:
        if key not in allowed_top:
            raise fail(
                f"unknown key {key!r} (expected: name, models, seed, [base], [grid] or [whatif])",
                None,
                key,
            )
    name = doc.get("name", default_name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise fail(f"name must be letters, digits, '-', '_' or '.', got {name!r}", None, "name")
    models = doc.get("models", list(MODEL_NAMES))
    if isinstance(models, str):
        models = [models]
    if not isinstance(models, list) or not models:
        raise fail("models must be a non-empty list of model names", None, "models")
    for m in models:
        if m not in MODEL_NAMES:
            raise fail(
                f"unknown model {m!r} (choose from: {', '.join(MODEL_NAMES)})", None, "models"
            )
    seed = _check_param("seed", doc.get("seed", 1), lambda m: fail(m, None, "seed"))

    base_raw = doc.get("base", {})
    if not isinstance(base_raw, dict):
        raise fail("[base] must be a table of parameters", None, "base")
    base = {}
    for key, value in base_raw.items():

        def in_base(message: str, key: str = key) -> SweepError:
            return fail(message, "base", key)

        base[_normal(key)] = _check_param(key, value, in_base)

    if ("grid" in doc) == ("whatif" in doc):
        raise fail("give exactly one of [grid] (combinations) or [whatif] (one parameter range)")
    if "grid" in doc:
        varied = _grid(doc["grid"], fail)
        kind = "grid"
    else:
        varied = _whatif(doc["whatif"], fail)
        kind = "whatif"
    count = math.prod(len(v) for v in varied.values()) * len(models)
    if count > MAX_POINTS:
        raise fail(f"the sweep has {count:,} runs, over the limit of {MAX_POINTS:,}")
    spec = SweepSpec(
        name=name,
        models=tuple(models),
        base=base,
        varied=varied,
        seed=seed,
        source=source,
        kind=kind,
    )
    # Build every point once now, so that a value that is valid alone but not
    # in combination (a trace of the wrong size, a profile that is missing)
    # fails before anything runs.
    for point in spec.points():
        try:
            build(point)
        except UserError as exc:
            bad = next((k for k in point if k in str(exc)), None)
            table = "grid" if bad in varied and kind == "grid" else "base"
            raise fail(f"{exc} (at {_short(point, varied)})", table, bad) from None
    return spec


def _short(point: Mapping[str, Any], varied: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={point[k]!r}" for k in varied) or "the base"


def _check_param(key: str, value: Any, fail: Callable[[str], SweepError]) -> Any:
    name = _normal(key)
    option = PARAMETERS.get(name)
    if option is None:
        raise fail(f"unknown parameter {key!r}") from None
    try:
        return option.check(value)
    except UserError as exc:
        raise fail(f"{key} {str(exc).removeprefix(option.flag + ': ')}") from None


def _grid(
    grid: Any, fail: Callable[[str, str | None, str | None], SweepError]
) -> dict[str, list[Any]]:
    if not isinstance(grid, dict):
        raise fail("[grid] must be a table of parameter = [values]", None, "grid")
    if not grid:
        raise fail("[grid] is empty: give at least one parameter = [values]", "grid", None)
    varied: dict[str, list[Any]] = {}
    for key, given in grid.items():
        values = given if isinstance(given, list) else [given]
        if not values:
            raise fail(f"{key} has no values: the grid would be empty", "grid", key)

        def located(message: str, key: str = key) -> SweepError:
            return fail(message, "grid", key)

        checked = [_check_param(key, v, located) for v in values]
        if len({repr(v) for v in checked}) != len(checked):
            raise fail(f"{key} repeats a value", "grid", key)
        varied[_normal(key)] = checked
    return varied


def _whatif(  # noqa: PLR0912 - one branch per key, in the order they are reported
    spec: Any, fail: Callable[[str, str | None, str | None], SweepError]
) -> dict[str, list[Any]]:
    if not isinstance(spec, dict):
        raise fail("[whatif] must be a table", None, "whatif")
    known = {"parameter", "values", "from", "to", "points", "scale"}
    for key in spec:
        if key not in known:
            raise fail(f"unknown key {key!r} in [whatif] (one of: {', '.join(sorted(known))})",
                       "whatif", key)  # fmt: skip
    param = spec.get("parameter")
    if not isinstance(param, str):
        raise fail('[whatif] needs parameter = "NAME"', "whatif", None)
    if _normal(param) not in PARAMETERS:
        raise fail(f"unknown parameter {param!r}", "whatif", "parameter")
    if "values" in spec:
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise fail("values must be a non-empty list", "whatif", "values")
    else:
        for key in ("from", "to", "points"):
            if key not in spec:
                raise fail(f"[whatif] needs values = [...] or from, to and points (no {key})",
                           "whatif", None)  # fmt: skip
        lo, hi, n = spec["from"], spec["to"], spec["points"]
        scale = spec.get("scale", "linear")
        if scale not in ("linear", "log"):
            raise fail(f"scale must be 'linear' or 'log', got {scale!r}", "whatif", "scale")
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise fail(f"points must be an integer >= 2, got {n!r}", "whatif", "points")
        for key, v in (("from", lo), ("to", hi)):
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise fail(f"{key} must be a number, got {v!r}", "whatif", key)
        if scale == "log" and (lo <= 0 or hi <= 0):
            raise fail("a log scale needs from and to > 0", "whatif", "scale")
        grid = np.geomspace(lo, hi, n) if scale == "log" else np.linspace(lo, hi, n)
        integer = isinstance(lo, int) and isinstance(hi, int)
        values = sorted({round(float(x)) for x in grid}) if integer else [float(x) for x in grid]
    checked = [_check_param(param, v, lambda m: fail(m, "whatif", "parameter")) for v in values]
    return {_normal(param): checked}
