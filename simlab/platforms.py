"""Platform presets and calibrated profiles.

A preset is a starting point; ``simlab calibrate`` replaces it with a profile
measured on your machine (``$SIMLAB_DATA/profiles/<name>.json``, see
``simlab.paths``). Every number below says where it came from.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from pathlib import Path
from typing import Any

from simlab.errors import UserError
from simlab.params import Platform
from simlab.paths import profiles_dir

__all__ = [
    "PRESETS",
    "SOURCES",
    "load_platform",
    "platform_from_profile",
    "platform_names",
    "preset_sources",
    "profile_path",
]


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
    - crowding 0 (a phase slowed by the threads queued for the cores beside
      it): off; only the runtimes' calibration prices it, from open loops
      beyond the cores at two burns (``calibrate_runtime.fit_contention``).
    - loop_event_us, loop_wake_us (an event loop's batching) and fork_call_kib
      (a child's copy-on-write from its first backend call) 0: mechanisms
      only calibration can price on a machine (``simlab.calibrate``
      ``fit_batching`` and ``fit_forks``); at 0 they are off.
    - gil_poll_us and gil_handoff_us (the GIL's waiters' wake-ups and its idle
      hand-off) 0: off until calibration identifies them from the saturated
      thread runs (``fit_thread_costs``).
    - gil_neighbour_share (how often a GIL hand-off made while the lab's
      load generator, backend or probe holds a core waits until it blocks)
      1, an assumption: every such hand-off waits. Linux wakes a thread where
      it ran last when no core is idle (and with the GIL's holder still on
      its core and a neighbour on the other, none is), and a neighbour that
      does not block keeps its core (paced by uvloop's whole-millisecond
      clock, the load generator spun through the last millisecond before
      each send, about 0.5 ms of CPU a request).
      Calibration fits the GIL's other costs and the share from open-loop
      runs beside the load generator in turn (``fit_gil_rounds``), from this
      value; where those runs bound it, the profile's fitted share replaces
      this one (beside the timer's load generator they do not: their
      interval reaches the top of a share). It acts only where
      validation puts the lab's neighbours on the cores: a server with its
      machine to itself is not slowed.
    """
    return Platform(name="cpython", gil_neighbour_share=1.0)


# Where the measured numbers come from, relative to the repository root.
# ``simlab measure memory --runtime R`` wrote the records; experiments/
# jvm_ten_thousand_threads.py wrote the results table (real servers holding 100
# and 10,000 idle connections). A per-unit number is the slope between the two
# sizes, a process number the intercept; tests/test_platforms.py re-derives
# each from these files, so that a preset cannot drift from its source.
JVM_RECORD = "data/measurements/memory-jvm-20261201T041503Z.json"
GO_RECORD = "data/measurements/memory-go-20261201T041515Z.json"
NODE_RECORD = "data/measurements/memory-node-20261201T041530Z.json"
PHP_RECORD = "data/measurements/memory-php-20261201T041539Z.json"
CPYTHON_RECORD = "data/measurements/memory-20261127T112956Z.json"
TEN_K = "data/experiments/jvm_ten_thousand_threads/results.csv"
_ESTIMATE = "estimate (not measured here); calibration replaces it"


def jvm() -> Platform:
    """A JVM server (OpenJDK 17 HotSpot, Linux x86-64): no GIL, 1 MiB reserved stacks.

    Memory is measured on this machine (``SOURCES["jvm"]``): an idle platform
    thread holds 24 KiB resident and 23 KiB of kernel memory (its kernel
    stack and task structures), counted once each; its 1 MiB stack is
    reserved, not resident. The JVM has no fork-per-connection idiom: the
    fork costs are a native process of similar size.
    """
    return Platform(
        name="jvm",
        gil=False,
        thread_kib=24.17,
        thread_kernel_kib=23.3,
        stack_kib=1024.12,
        connection_kib=22.87,
        connection_kernel_kib=4.81,
        task_kib=1.0,
        process_kib=50270.0,
        fork_kib=1200.0,
        context_switch_us=1.5,
        spawn_us=882.46,
        fork_us=1000.0,
        dispatch_us=5.0,
        task_us=1.0,
        parse_us=5.0,
        call_us=10.0,
    )


def go() -> Platform:
    """A Go server (go1.19): the "threads" are goroutines, scheduled in user space.

    A goroutine is not a kernel thread: it carries no thread kernel memory
    (its stack lives in the Go heap, so it is resident, and it reserves
    almost no address space of its own). The runtime's few OS threads
    (GOMAXPROCS) are part of the process. Memory is measured
    (``SOURCES["go"]``); switch and hand-off times are estimates.
    """
    return Platform(
        name="go",
        gil=False,
        thread_kib=2.65,
        thread_kernel_kib=0.0,
        stack_kib=0.06,
        connection_kib=2.63,
        connection_kernel_kib=3.63,
        task_kib=2.0,
        process_kib=5927.0,
        fork_kib=1200.0,
        context_switch_us=0.2,
        spawn_us=6.5,
        fork_us=500.0,
        dispatch_us=0.5,
        task_us=1.0,
        parse_us=3.0,
        call_us=8.0,
        # The Go peer keeps its backend connections in a shared pool, as
        # database/sql does (simlab/real/peers/go/server/main.go).
        backend_pool=True,
    )


def node() -> Platform:
    """A Node.js 20 server: one event loop per process, callbacks and promises.

    A request in flight is a pending promise (or callback), with no thread of
    its own. Memory is measured (``SOURCES["node"]``); the loop's one thread
    costs what a native thread costs (the CPython measurement: the kernel's
    share is the kernel's, not the runtime's). JavaScript runs on one thread
    per process, so ``gil`` is off: there is nothing to share a lock with.
    """
    return Platform(
        name="node",
        gil=False,
        connection_kib=7.71,
        connection_kernel_kib=3.64,
        task_kib=1.17,
        process_kib=47512.0,
        context_switch_us=0.95,
        spawn_us=33.0,
        dispatch_us=5.0,
        task_us=4.36,
        parse_us=5.0,
        call_us=10.0,
    )


def php() -> Platform:
    """PHP-FPM 8.2: a static pool of single-threaded children behind nginx.

    Each child is a fork of the FPM master (``fork_kib`` private, measured);
    the pool's shared pages are in ``process_kib``. Request handling times
    are the CPython preset's until calibration measures PHP's own.
    """
    return Platform(
        name="php",
        gil=False,
        process_kib=17034.0,
        fork_kib=206.87,
        fork_kernel_kib=323.89,
        fork_us=6645.45,
    )


def _slope(record: str, unit: str, key: str) -> str:
    return f"{record}: per_unit_kib.{unit}.{key}"


_CPY_THREAD = f"{CPYTHON_RECORD}: per-thread slope (the kernel's cost of a native thread)"
_CPY = "the cpython preset's value (not measured for this runtime)"

# A preset's numbers with their sources; a number not listed is the Platform
# default, the cpython preset's (see ``cpython``).
SOURCES: dict[str, dict[str, str]] = {
    "jvm": {
        "thread_kib": _slope(JVM_RECORD, "thread", "pss"),
        "thread_kernel_kib": _slope(JVM_RECORD, "thread", "kernel"),
        "stack_kib": _slope(JVM_RECORD, "thread", "vms"),
        "spawn_us": _slope(JVM_RECORD, "thread", "create_us"),
        "connection_kib": f"{TEN_K}: tomcat-nio PSS per connection (no thread of its own)",
        "connection_kernel_kib": f"{TEN_K}: tomcat-nio own kernel memory per connection",
        "process_kib": f"{TEN_K}: java-threads PSS at 0 connections (intercept)",
        "task_kib": _ESTIMATE,
        "fork_kib": _ESTIMATE + " (a native process; no JVM idiom)",
        "fork_us": _ESTIMATE + " (a native process; no JVM idiom)",
        "context_switch_us": _ESTIMATE + " (the kernel's, as cpython)",
        "dispatch_us": _ESTIMATE + " (ThreadPoolExecutor hand-off)",
        "task_us": _ESTIMATE,
        "parse_us": _ESTIMATE,
        "call_us": _ESTIMATE,
    },
    "go": {
        "thread_kib": _slope(GO_RECORD, "goroutine", "pss"),
        "thread_kernel_kib": "0: a goroutine is not a kernel thread "
        f"({_slope(GO_RECORD, 'goroutine', 'kernel')} is within noise of 0)",
        "stack_kib": _slope(GO_RECORD, "goroutine", "vms"),
        "spawn_us": _slope(GO_RECORD, "goroutine", "create_us"),
        "connection_kib": f"{_slope(GO_RECORD, 'goroutine-connection', 'pss')} minus the "
        "goroutine's",
        "connection_kernel_kib": _slope(GO_RECORD, "goroutine-connection", "kernel"),
        "process_kib": f"{TEN_K}: go PSS at 0 connections (intercept)",
        "task_kib": _ESTIMATE,
        "fork_kib": _ESTIMATE,
        "fork_us": _ESTIMATE,
        "context_switch_us": _ESTIMATE + " (a goroutine switch)",
        "dispatch_us": _ESTIMATE + " (a channel hand-off)",
        "task_us": _ESTIMATE,
        "parse_us": _ESTIMATE,
        "call_us": _ESTIMATE,
    },
    "node": {
        "connection_kib": _slope(NODE_RECORD, "connection", "pss"),
        "connection_kernel_kib": _slope(NODE_RECORD, "connection", "kernel"),
        "task_kib": _slope(NODE_RECORD, "promise", "pss"),
        "task_us": _slope(NODE_RECORD, "promise", "create_us"),
        "process_kib": f"{TEN_K}: node PSS at 0 connections (intercept)",
        "thread_kib": _CPY,
        "thread_kernel_kib": _CPY_THREAD,
        "stack_kib": _CPY,
        "context_switch_us": _CPY,
        "spawn_us": _CPY,
        "dispatch_us": _ESTIMATE,
        "parse_us": _ESTIMATE + " (llhttp, as jvm)",
        "call_us": _ESTIMATE + " (as jvm)",
    },
    "php": {
        "fork_kib": _slope(PHP_RECORD, "fpm-child", "pss"),
        "fork_kernel_kib": _slope(PHP_RECORD, "fpm-child", "kernel"),
        "fork_us": _slope(PHP_RECORD, "fpm-child", "create_us"),
        "process_kib": f"{PHP_RECORD}: the pool's PSS at 0 children (intercept)",
        "thread_kib": _CPY,
        "thread_kernel_kib": _CPY_THREAD,
        "connection_kib": _CPY + "; nginx holds the client connections",
        "parse_us": _CPY,
        "call_us": _CPY,
        "task_us": _CPY,
    },
}


def preset_sources(name: str) -> dict[str, str]:
    """Where each number of preset ``name`` comes from (empty: see its docstring)."""
    return dict(SOURCES.get(name, {}))


PRESETS = {"ideal": ideal, "cpython": cpython, "jvm": jvm, "go": go, "node": node, "php": php}


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
        if spec != "ideal":
            _note_uncalibrated(spec)
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
        stat = path.stat()
        # A profile is read once per version of its file: the dashboard builds
        # hundreds of scenarios on one platform for every control change.
        return _load_profile(str(path), stat.st_mtime_ns, stat.st_size)
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"platform: cannot read profile {str(path)!r}: {exc}") from None


@functools.cache
def _note_uncalibrated(name: str) -> None:
    """Say once per process that ``name`` is the uncalibrated preset here: a data
    root without profiles (another directory, a fresh $SIMLAB_DATA) would
    otherwise change every number silently."""
    print(
        f"simlab: no calibrated profile {str(profile_path(name))!r}: "
        f"platform {name!r} is the uncalibrated preset ({name}-preset)",
        file=sys.stderr,
    )


@functools.lru_cache(maxsize=64)
def _load_profile(path: str, mtime_ns: int, size: int) -> Platform:
    """The platform in the profile at ``path`` as it is at (``mtime_ns``, ``size``):
    a frozen value, so every caller can share it."""
    return platform_from_profile(json.loads(Path(path).read_text()), source=path)


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
    allowed = set(Platform.numeric_fields()) | {"cores", "gil", "backend_pool"}
    changes: dict[str, Any] = {}
    for key, raw in params.items():
        if key not in allowed:
            raise UserError(f"platform: profile {source!r} has unknown parameter {key!r}")
        value = raw.get("value") if isinstance(raw, dict) else raw
        if key in ("gil", "backend_pool"):
            if not isinstance(value, bool):
                raise UserError(f"platform: profile {source!r}: {key} must be true or false")
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
