"""Gate each real run on the machine's speed: wait for the usual speed, repeat a run it left.

This machine is a shared VM whose speed (``simlab.real.speed``) moves between
bands within seconds: about 3,700, 6,300 and 9,500 ops/s of the reference
(docs/real-lab.md, "The speed reference"). A case near saturation is
sensitive to a few per cent of it: in the 23:11 UTC validation of 1 December
thread-per-connection at 420/s served 361, 359 and 291 per s, the last run at
5,600-6,300 ops/s, while the profile's costs were fitted on runs whose
median was 8,890. A run on a slow machine measures the machine, not the
model, so ``gated`` runs each real run only on a machine at its usual speed,
within bounds, and records everything it saw:

- **Before a run** (the real-run lock held, so no other real run is on the
  machine), the reference is measured; while it is under ``floor`` (the
  usual speed times ``1 - margin``) the gate waits ``poll_s`` and measures
  again, for at most ``wait_s``; then the run starts anyway, marked *slow
  machine*.
- **After a run**, when the run's own reference at either end
  (``speed_reference.before_ops_s``/``after_ops_s``, taken inside the lock
  by ``simlab.real.measure``) fell under the floor, the machine left its
  usual speed during the run: the run is repeated (the same seed), at most
  ``retries`` times. The attempt kept is the last one if it held the floor,
  else the one whose slower end was fastest; the others are kept in the
  record with their values and why they were repeated. Nothing is dropped
  unseen.
- **A run the machine stalled in** (``simlab.real.speed.SpeedWatch``: a
  thread at nice ``WATCH_NICE`` that wakes every 0.5 s woke ``STALL_MS``
  late or more) is repeated too, within the same bounds; a kept run that
  stalled says so. A busy core delays that wake-up by milliseconds (7-69 ms
  measured at saturation; 23 ms beside 200 busy children at nice -20); a
  stall of the machine holds every thread back, the server's with it, and
  puts seconds into a p99 (the 05:16 UTC validation of 2 December had a
  thread-pool run whose p99 was 27.6 s against its siblings' 81 and 85 ms).
- The gate's extra time (waits and repeated runs) over a whole validation
  or calibration is bounded by ``budget_s``; once spent, runs are measured
  and marked, neither waited for nor repeated.

The usual speed is the calibration session's median reference (the
profile's ``speed_reference``): the model's costs were fitted on runs at
that speed. With no such reference, or ``margin`` 0, the gate is off and
says so in the record.

Why ``MARGIN`` = 0.25: the reference repeats within 3% while the machine's
speed holds (``REPEATABILITY``), so a floor 8 times that under the usual
speed is never crossed by the reference's own noise; and it sits between the
usual band (about 9,500) and the next one down (about 6,300, 29% under the
calibration's 8,890): 8,890 x 0.75 = 6,668 ops/s. The calibration session's
own runs had 14% of their before-references under it, the 23:11 validation's
30%: the gate aims to bring the validation's runs to the speed the
calibration mostly ran at.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from simlab.errors import UserError

# simlab.real (the lock, the speed reference and its h11) loads when a gate
# runs: the command line's --help builds these options without it.
if TYPE_CHECKING:
    from simlab.journal import Journal

__all__ = [
    "BUDGET_S",
    "MARGIN",
    "RETRIES",
    "WAIT_S",
    "Budget",
    "Gate",
    "add_options",
    "await_speed",
    "from_options",
    "gated",
    "journalled",
    "record",
    "spent",
    "stall_ms",
]

MARGIN = 0.25
# At most this long waiting for the usual speed before one run: the bands
# change within seconds, so a minute sees several of them.
WAIT_S = 60.0
POLL_S = 2.0
RETRIES = 1
# The gate's extra time over a whole validation or calibration (about 100
# runs of 10-20 s): at most about as long again as the runs themselves.
BUDGET_S = 900.0
MAX_MARGIN = 0.9


@dataclass(frozen=True)
class Gate:
    """The gate's parameters; ``reference_ops_s``: the machine's usual speed
    (None: unknown, the gate is off). Checked as the command line's options."""

    reference_ops_s: float | None
    margin: float = MARGIN
    wait_s: float = WAIT_S
    retries: int = RETRIES
    budget_s: float = BUDGET_S
    poll_s: float = POLL_S
    source: str = ""

    def __post_init__(self) -> None:
        checks = (
            ("--gate-margin", self.margin, 0.0, MAX_MARGIN),
            ("--gate-wait", self.wait_s, 0.0, 3600.0),
            ("--gate-budget", self.budget_s, 0.0, 86400.0),
            ("--gate-retries", self.retries, 0, 5),
        )
        for flag, value, low, high in checks:
            if not (
                isinstance(value, int | float) and math.isfinite(value) and low <= value <= high
            ):
                raise UserError(f"{flag}(={value!r}) must be in [{low:g}, {high:g}]")
        if not isinstance(self.retries, int):
            raise UserError(f"--gate-retries(={self.retries!r}) must be an integer")
        if not self.poll_s > 0:
            raise UserError(f"poll_s(={self.poll_s!r}) must be > 0")
        if self.reference_ops_s is not None and not self.reference_ops_s > 0:
            raise UserError(f"reference_ops_s(={self.reference_ops_s!r}) must be > 0")

    @property
    def on(self) -> bool:
        return self.margin > 0 and self.reference_ops_s is not None

    @property
    def floor(self) -> float | None:
        """The speed under which the machine is slower than usual (ops/s)."""
        if not self.on:
            return None
        assert self.reference_ops_s is not None
        return self.reference_ops_s * (1 - self.margin)

    def to_dict(self) -> dict[str, Any]:
        from simlab.real.speed import WORK  # noqa: PLC0415

        return {**asdict(self), "on": self.on, "floor_ops_s": self.floor, "work": WORK}

    @classmethod
    def off(cls, why: str = "--no-gate") -> Gate:
        return cls(None, margin=0.0, source=why)

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any], **options: Any) -> Gate:
        """The gate at a profile's calibration speed (its ``speed_reference``
        median, of the current ``WORK``); off when the profile has none
        (``options`` are checked all the same)."""
        from simlab.real.speed import WORK  # noqa: PLC0415

        ref = profile.get("speed_reference") or {}
        if ref.get("work") != WORK or not ref.get("median_ops_s"):
            why = "the profile records no speed reference of this work"
            return cls(None, source=why, **options)
        runs = ref.get("runs")
        return cls(
            float(ref["median_ops_s"]),
            source=f"the profile's calibration runs' median speed reference ({runs} runs)",
            **options,
        )


def add_options(parser: Any) -> None:
    """The gate's command-line options (``simlab validate``, ``simlab calibrate``)."""
    from simlab.cli import options  # noqa: PLC0415 - the CLI's own checks

    parser.add_argument(
        "--no-gate",
        action="store_true",
        help="measure every run as it comes, whatever the machine's speed",
    )
    parser.add_argument(
        "--gate-margin",
        metavar="FRACTION",
        type=options.nonneg_float,
        default=MARGIN,
        help="run only while the speed reference is within this fraction under the last "
        f"calibration's (0: no gate; default {MARGIN}; cpython's runs)",
    )
    parser.add_argument(
        "--gate-wait",
        metavar="S",
        type=options.nonneg_float,
        default=WAIT_S,
        help=f"seconds to wait for that speed before a run (default {WAIT_S:g})",
    )
    parser.add_argument(
        "--gate-retries",
        metavar="N",
        type=options.nonneg_int,
        default=RETRIES,
        help=f"repeats of a run the machine's speed left (default {RETRIES})",
    )
    parser.add_argument(
        "--gate-budget",
        metavar="S",
        type=options.nonneg_float,
        default=BUDGET_S,
        help=f"seconds of waits and repeats in all (default {BUDGET_S:g})",
    )


def from_options(args: Any, profile: Mapping[str, Any]) -> Gate:
    """The gate the command line asks for, at ``profile``'s speed."""
    if args.no_gate:
        return Gate.off("--no-gate")
    if args.gate_margin == 0:
        return Gate(None, margin=0.0, source="--gate-margin 0")
    return Gate.from_profile(
        profile,
        margin=args.gate_margin,
        wait_s=args.gate_wait,
        retries=args.gate_retries,
        budget_s=args.gate_budget,
    )


@dataclass
class Budget:
    """The gate's extra time (s) over a session: waits and repeated runs."""

    total_s: float
    spent_s: float = 0.0

    @property
    def left(self) -> bool:
        return self.spent_s < self.total_s

    def spend(self, seconds: float) -> None:
        self.spent_s += max(0.0, seconds)


def _reference() -> float:
    from simlab.real.speed import measure_speed  # noqa: PLC0415

    return measure_speed().ops_s


@dataclass
class Clock:
    """Where the gate reads the machine's speed and the time (a test's fakes)."""

    speed: Callable[[], float] = _reference
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], float] = time.monotonic


def await_speed(
    gate: Gate, budget: Budget, clock: Clock | None = None, say: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Measure the reference until it reaches the gate's floor, for at most
    ``gate.wait_s`` (and what is left of ``budget``); what it saw:
    ``{"ops_s": [...], "waited_s", "slow_machine"}`` (None when the gate is off)."""
    c = clock or Clock()
    if not gate.on:
        return {"ops_s": [], "waited_s": 0.0, "slow_machine": None}
    floor = gate.floor
    assert floor is not None
    seen = [c.speed()]
    # The wait counts from the first check's end: a machine at its usual
    # speed costs the one check (about 40 ms), no wait.
    start = c.now()
    told = False
    while seen[-1] < floor:
        waited = c.now() - start
        room = min(gate.wait_s - waited, budget.total_s - budget.spent_s - waited)
        if room <= 0:
            break
        if not told and say is not None:
            say(f"the machine is slow ({seen[-1]:,.0f} ops/s < {floor:,.0f}): waiting")
            told = True
        c.sleep(min(gate.poll_s, room))
        seen.append(c.speed())
    # A machine at its usual speed at the first check was not waited for
    # (the microseconds since that check are no wait).
    waited = c.now() - start if len(seen) > 1 else 0.0
    budget.spend(waited)
    return {"ops_s": seen, "waited_s": waited, "slow_machine": seen[-1] < floor}


def slowest_end(value: Mapping[str, Any]) -> float | None:
    """The slower of a run's two speed references (``speed_reference``), or None."""
    from simlab.real.speed import WORK  # noqa: PLC0415

    ref = value.get("speed_reference")
    if not ref or ref.get("work") != WORK:
        return None
    return float(min(ref["before_ops_s"], ref["after_ops_s"]))


def stall_ms(value: Mapping[str, Any]) -> float | None:
    """The machine's longest stall in a run (``speed_reference.stall_max_ms``,
    ``simlab.real.speed.SpeedWatch``) when it reached ``STALL_MS``, else None.
    Only a watch that ran at ``WATCH_NICE`` tells a stall from the run's own
    busy cores; another's late wake-ups are recorded, not gated on."""
    from simlab.real.speed import STALL_MS, WATCH_NICE  # noqa: PLC0415

    ref = value.get("speed_reference") or {}
    stall = ref.get("stall_max_ms")
    nice = ref.get("watch_nice")
    if stall is None or nice is None or nice > WATCH_NICE:
        return None
    return float(stall) if stall >= STALL_MS else None


def gated(
    gate: Gate,
    run: Callable[[], dict[str, Any]],
    budget: Budget,
    *,
    earlier: Sequence[Mapping[str, Any]] = (),
    on_repeat: Callable[[int, dict[str, Any]], None] | None = None,
    clock: Clock | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``run`` (a real run; it returns a JSON dict with its
    ``speed_reference``) through the gate; its result, with ``gate``: how the
    kept attempt's check went and every attempt repeated, with its values.

    ``earlier``: attempts already repeated (a resumed journal's), each as
    ``on_repeat`` was given it; ``on_repeat(n, attempt)`` is called when
    attempt ``n`` is to be repeated, before the repeat starts."""
    from simlab.real.lock import exclusive  # noqa: PLC0415

    c = clock or Clock()
    attempts = [dict(a) for a in earlier]
    floor = gate.floor
    while True:
        start = c.now()
        with exclusive(say):
            check = await_speed(gate, budget, c, say)
            value = run()
        slowest = slowest_end(value)
        stall = stall_ms(value) if gate.on else None
        attempt: dict[str, Any] = {
            "value": value,
            "check": check,
            "slowest_ops_s": slowest,
            "stall_ms": stall,
            "run_s": c.now() - start - check["waited_s"],
        }
        slow = floor is not None and slowest is not None and slowest < floor
        if (slow or stall is not None) and len(attempts) < gate.retries and budget.left:
            attempt["why"] = _why_repeated(slowest if slow else None, floor, stall)
            budget.spend(attempt["run_s"])
            attempts.append(attempt)
            if on_repeat is not None:
                on_repeat(len(attempts) - 1, attempt)
            continue
        attempts.append(attempt)
        break
    keep = len(attempts) - 1
    if slow or stall is not None:
        # Every attempt stalled or fell under the floor: one that did not
        # stall if any, and of those the one nearest the usual speed.
        keep = max(
            range(len(attempts)),
            key=lambda k: (
                attempts[k].get("stall_ms") is None,
                attempts[k]["slowest_ops_s"] or 0.0,
            ),
        )
    kept = attempts[keep]
    others = [
        {
            **{k: v for k, v in a.items() if k != "value"},
            "values": a["value"],
            "why": a.get("why", "discarded: an attempt nearer the usual speed was kept"),
        }
        for k, a in enumerate(attempts)
        if k != keep
    ]
    kept_slow = floor is not None and (kept["slowest_ops_s"] or math.inf) < floor
    record = {
        "check": kept["check"],
        "slowest_ops_s": kept["slowest_ops_s"],
        "stall_ms": kept.get("stall_ms"),
        "slow_machine": bool(kept_slow or kept["check"]["slow_machine"]) if gate.on else None,
        "attempts": len(attempts),
        "repeated": others,
    }
    return {**kept["value"], "gate": record}


def _why_repeated(slowest: float | None, floor: float | None, stall: float | None) -> str:
    """Why an attempt is repeated: its speed at an end, its stall, or both."""
    why = []
    if slowest is not None and floor is not None:
        why.append(
            f"the speed reference fell to {slowest:,.0f} ops/s at an end of the run, "
            f"under the gate's {floor:,.0f}"
        )
    if stall is not None:
        why.append(f"the machine stalled for {stall:,.0f} ms during the run")
    return "repeated: " + "; ".join(why)


def journalled(
    gate: Gate,
    run: Callable[[], dict[str, Any]],
    key: str,
    journal: Journal,
    budget: Budget,
    *,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """``gated`` for one step of a resumable ``journal``: a repeated attempt
    is journalled as ``KEY repeat N`` before its repeat starts, so that a
    resumed run keeps it (and its count) and goes on with the next attempt."""
    earlier: list[dict[str, Any]] = []
    while f"{key} repeat {len(earlier)}" in journal:
        earlier.append(journal.get(f"{key} repeat {len(earlier)}"))
    return gated(
        gate,
        run,
        budget,
        earlier=earlier,
        on_repeat=lambda n, attempt: journal.put(f"{key} repeat {n}", attempt),
        say=say,
    )


def spent(journal: Journal) -> float:
    """The gate's time already spent in a resumed journal's runs (s): their
    waits and their repeated attempts."""
    spent = 0.0
    for key in journal.steps:
        value = journal.get(key)
        if not isinstance(value, dict):
            continue
        if " repeat " in key:
            spent += float(value["check"]["waited_s"]) + float(value["run_s"])
        elif isinstance(value.get("gate"), dict):
            spent += float(value["gate"]["check"]["waited_s"])
    return spent


def _waited(check: Mapping[str, Any]) -> bool:
    """The gate waited before this run: it checked the speed more than once
    (records made before ``await_speed`` counted no wait as 0 s kept a few
    microseconds after a first check that passed)."""
    return len(check["ops_s"]) > 1


def record(gate: Gate, runs: list[tuple[str, int, dict[str, Any] | None]]) -> dict[str, Any]:
    """The report's record of the gate: its options, and every run it held
    back, marked or repeated (case, run, what it saw, the repeated values)."""
    seen = []
    refs = [(value or {}).get("speed_reference") or {} for _, _, value in runs]
    watched = [x for x in refs if x.get("stall_max_ms") is not None]
    for label, r, value in runs:
        g = (value or {}).get("gate")
        if not g:
            continue
        if _waited(g["check"]) or g["slow_machine"] or g["repeated"] or g.get("stall_ms"):
            seen.append({"case": label, "run": r + 1, **g})
    return {
        "options": gate.to_dict(),
        "runs": len(runs),
        "waited": sum(1 for g in seen if _waited(g["check"])),
        "slow_machine": sum(1 for g in seen if g["slow_machine"]),
        "repeated": sum(1 for g in seen if g["repeated"]),
        "stalled": sum(1 for g in seen if g.get("stall_ms")),
        "waited_s": sum(float(g["check"]["waited_s"]) for g in seen if _waited(g["check"])),
        "held": seen,
        "watch": _watch_record(watched),
    }


def _watch_record(refs: list[Mapping[str, Any]]) -> dict[str, Any] | None:
    """What the kept runs' speed watches saw over the session (None: not watched)."""
    if not refs:
        return None
    during = sorted(float(x["during_ops_s"]) for x in refs if x.get("during_ops_s"))
    steal = [float(x["steal_cores"]) for x in refs if x.get("steal_cores") is not None]
    return {
        "runs": len(refs),
        "during_ops_s_median": during[len(during) // 2] if during else None,
        "steal_cores_max": max(steal) if steal else None,
        "stall_max_ms": max(float(x["stall_max_ms"]) for x in refs),
    }
