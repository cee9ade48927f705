"""Platform presets and calibrated profiles.

A preset is a starting point; ``simlab calibrate`` replaces it with a profile
measured on your machine (``$SIMLAB_DATA/profiles/<name>.json``, see
``simlab.paths``). Every number below says where it came from.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from simlab.errors import UserError
from simlab.params import Platform
from simlab.paths import profiles_dir

__all__ = ["PRESETS", "load_platform", "platform_from_profile", "platform_names", "profile_path"]


def ideal() -> Platform:
    """Textbook queues: every time overhead zero, no GIL, unlimited cores.

    Memory sizes are kept at the ``cpython`` values so that the memory columns
    stay meaningful; they never affect timing.
    """
    return Platform(
        name="ideal",
        cores=None,
        gil=False,
        context_switch_us=0.0,
        switch_contention=0.0,
        spawn_us=0.0,
        fork_us=0.0,
        dispatch_us=0.0,
        task_us=0.0,
        parse_us=0.0,
        call_us=0.0,
        front_us=0.0,
        front_byte_ns=0.0,
        hop_us=0.0,
        hop_latency_us=0.0,
    )


def cpython() -> Platform:
    """CPython 3.11 on Linux x86-64, 2 cores (the machine simlab was built on).

    Sources: ``simlab measure memory`` and timing loops run on this machine on
    2026-11-27 (docs/design.md, "Measured on this machine").
    - thread 43 KiB resident: 16 KiB user + 27 KiB kernel for an idle thread
      blocked in recv; 8 MiB reserved stack (the glibc default).
    - connection 9.5 KiB: 5.5 KiB for an idle asyncio stream + 4 KiB kernel.
    - task 1.2 KiB: a bare asyncio Task awaiting.
    - process 21 MiB: RSS of an interpreter with asyncio, socket, threading
      and h11 imported. fork 1200 KiB: 1 MiB private (USS) + 176 KiB kernel.
    - context switch 0.95 us: half a 1.9 us pipe round trip.
    - spawn 33 us (thread create+start+join); fork 860 us (os.fork of a 22 MB
      process); task 9 us (asyncio Task create).
    - dispatch 30 us: queue.Queue hand-off from one thread to a blocked one.
    - parse 37 us: h11 parse of a GET plus building a 200 response.
    - call 18.5 us: caller-thread CPU of a blocking loopback request/response.
    - switch_contention 0.05: a placeholder until calibration fits it; it makes
      a switch with 1,000 runnable threads cost about 50x a bare one, inside the
      indirect-cost range of Li, Ding and Shen (ExpCS 2007).
    """
    return Platform(name="cpython")


def jvm() -> Platform:
    """A JVM server (HotSpot, Linux x86-64): no GIL, 1 MiB reserved stack.

    - stack 1024 KiB: HotSpot's default -Xss on 64-bit Linux.
    - thread 64 KiB resident: kernel 27 KiB (as measured for CPython threads),
      JVM thread structures, and the few stack pages a blocked thread touches.
      An estimate, not a measurement on this machine.
    - process 64 MiB: a small HotSpot server's RSS (heap, metaspace, code cache).
    - connection 8 KiB (NIO channel and buffers plus kernel), task 1 KiB.
    - context switch 1.5 us, contention 0.05 (as cpython: the kernel is the same).
    - spawn 50 us (Thread.start), dispatch 5 us (ThreadPoolExecutor hand-off),
      task 1 us, parse 5 us, call 10 us: typical published figures, to be
      replaced by calibration.
    - fork: the JVM has no fork-per-connection idiom; these are the costs of a
      native process of similar size (1 MiB private, 1 ms).
    """
    return Platform(
        name="jvm",
        gil=False,
        thread_kib=64.0,
        stack_kib=1024.0,
        connection_kib=8.0,
        task_kib=1.0,
        process_kib=65536.0,
        fork_kib=1200.0,
        context_switch_us=1.5,
        spawn_us=50.0,
        fork_us=1000.0,
        dispatch_us=5.0,
        task_us=1.0,
        parse_us=5.0,
        call_us=10.0,
    )


def go() -> Platform:
    """A Go server: the "threads" are goroutines, scheduled in user space.

    - stack: goroutines start with 2 KiB and grow; 8 KiB is typical for a
      blocked network handler, and it is real memory, not a reservation, so
      resident and reserved are both 8 KiB.
    - goroutine switch 0.2 us, creation 1 us, channel hand-off 0.5 us: the
      orders of magnitude the Go runtime is known for.
    - process 8 MiB (a small static binary), connection 8 KiB (netFD, bufio
      reader and kernel), task 2 KiB, parse 3 us, call 8 us.
    """
    return Platform(
        name="go",
        gil=False,
        thread_kib=8.0,
        stack_kib=8.0,
        connection_kib=8.0,
        task_kib=2.0,
        process_kib=8192.0,
        fork_kib=1200.0,
        context_switch_us=0.2,
        spawn_us=1.0,
        fork_us=500.0,
        dispatch_us=0.5,
        task_us=1.0,
        parse_us=3.0,
        call_us=8.0,
    )


PRESETS = {"ideal": ideal, "cpython": cpython, "jvm": jvm, "go": go}


def profile_path(name: str) -> Path:
    """Where the calibrated profile ``name`` lives: ``$SIMLAB_DATA/profiles/NAME.json``."""
    return profiles_dir() / f"{name}.json"


def load_platform(spec: str) -> Platform:
    """A profile name in the data root's ``profiles/``, a preset, or a path to a profile JSON.

    A calibrated profile named like a preset (``$SIMLAB_DATA/profiles/cpython.json``)
    takes its place, for the API and the command line alike; ``NAME-preset``
    always gives the uncalibrated preset.
    """
    if spec.endswith("-preset") and spec.removesuffix("-preset") in PRESETS:
        return PRESETS[spec.removesuffix("-preset")]()
    if spec in PRESETS and not profile_path(spec).exists():
        return PRESETS[spec]()
    path = Path(spec)
    if not path.suffix:
        candidate = profile_path(spec)
        if candidate.exists():
            path = candidate
    if not path.exists():
        raise UserError(
            f"platform: no preset or profile file named {spec!r} (presets: {', '.join(PRESETS)})"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"platform: cannot read profile {str(path)!r}: {exc}") from None
    return platform_from_profile(data, source=str(path))


def platform_from_profile(data: Any, *, source: str = "profile") -> Platform:
    """Build a platform from a profile object.

    Format: ``{"name": ..., "base": <preset, default cpython>, "parameters":
    {field: number | {"value": number, ...}}}``; extra keys (machine, fit
    residuals, uncertainty) are kept in the file for people, not read here.
    """
    if not isinstance(data, dict):
        raise UserError(f"platform: profile {source!r} must be a JSON object")
    base_name = data.get("base", "cpython")
    if base_name not in PRESETS:
        raise UserError(f"platform: profile {source!r} has unknown base {base_name!r}")
    params = data.get("parameters", {})
    if not isinstance(params, dict):
        raise UserError(f"platform: profile {source!r}: 'parameters' must be an object")
    allowed = set(Platform.numeric_fields()) | {"cores", "gil"}
    changes: dict[str, Any] = {}
    for key, raw in params.items():
        if key not in allowed:
            raise UserError(f"platform: profile {source!r} has unknown parameter {key!r}")
        value = raw.get("value") if isinstance(raw, dict) else raw
        if key == "gil":
            if not isinstance(value, bool):
                raise UserError(f"platform: profile {source!r}: gil must be true or false")
        elif key == "cores":
            if value is not None and not isinstance(value, int):
                raise UserError(f"platform: profile {source!r}: cores must be an integer")
        elif not isinstance(value, int | float) or not math.isfinite(value):
            raise UserError(f"platform: profile {source!r}: {key} must be a number")
        changes[key] = value
    name = data.get("name", Path(source).stem)
    try:
        return PRESETS[base_name]().with_(name=str(name), **changes)
    except ValueError as exc:
        raise UserError(f"platform: profile {source!r}: {exc}") from None


def platform_names() -> list[str]:
    """The presets, then the calibrated profiles in the data root that are not presets."""
    names = list(PRESETS)
    folder = profiles_dir()
    if folder.is_dir():
        names += sorted(p.stem for p in folder.glob("*.json") if p.stem not in PRESETS)
    return names


def calibrated(name: str) -> bool:
    """True when ``name`` resolves to a calibrated profile in the data root."""
    return profile_path(name).exists()
