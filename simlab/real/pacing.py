"""How the load generator times its sends: on the event loop's clock, or on a timer of its own.

uvloop's clock (``loop.time()``) moves in whole milliseconds, and so do its
timers. Paced by it (``"loop"``, as every run before 6 December 2026 was
measured, and the default off Linux), an open loop sleeps to the last
millisecond before each intended send and then yields
(``asyncio.sleep(0)``) until the loop's clock reaches it: the send goes at
the first millisecond tick at or after its time, and the yielding spins
the load generator's core meanwhile, about 0.5 ms of CPU a request
(``benchmarks/loadgen_pacing.py``), taken from the server it measures.
Answers are timed by the same clock.

``"timer"`` times everything by ``time.monotonic()`` (the kernel's
``CLOCK_MONOTONIC``, to the nanosecond) and wakes the loop for each send by
a ``timerfd`` armed at the send's absolute time (``Timer``): the send is
never early, is late by the kernel's wake-up alone, and nothing spins.
Linux only, through libc (Python's ``os.timerfd_create`` is 3.13's); the
default there (``DEFAULT_PACING``).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

__all__ = ["DEFAULT_PACING", "PACINGS", "At", "Timer", "clock"]

PACINGS = ("loop", "timer")
# The timer where there is a timerfd: the loop's spin would take about 0.5 ms
# of CPU a request from the server it measures, and its clock rounds every
# latency to the millisecond.
DEFAULT_PACING = "timer" if sys.platform.startswith("linux") else "loop"

_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1


@cache
def _libc() -> tuple[Any, Any, Any]:
    """libc, and the ``struct timespec`` and ``struct itimerspec`` of
    ``timerfd_settime``: loaded at the first timer (ctypes is not for a
    command that only parses its options)."""
    import ctypes  # noqa: PLC0415
    import ctypes.util  # noqa: PLC0415

    class Timespec(ctypes.Structure):
        _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))

    class Itimerspec(ctypes.Structure):
        _fields_ = (("it_interval", Timespec), ("it_value", Timespec))

    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True), Timespec, Itimerspec


def clock(pacing: str, loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """The clock a pacing times sends and answers by."""
    return time.monotonic if pacing == "timer" else loop.time


class At:
    """``fn(*args)`` once ``now()`` reads ``when`` or later, on the loop's
    timers. With the loop's own clock (``"loop"``) it is ``loop.call_at``, as
    before the timer pacing; with the monotonic clock a loop timer, counted
    in uvloop's whole milliseconds, may come early: it then waits again for
    the rest. ``cancel()`` as a handle's."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        now: Callable[[], float],
        when: float,
        fn: Callable[..., object],
        *args: object,
    ) -> None:
        self.loop, self.now, self.when, self.fn, self.args = loop, now, when, fn, args
        self.exact = now is time.monotonic
        self.handle = loop.call_later(when - now(), self._fire)

    def _fire(self) -> None:
        if self.exact and (left := self.when - self.now()) > 0:
            self.handle = self.loop.call_later(left, self._fire)
            return
        self.fn(*self.args)

    def cancel(self) -> None:
        self.handle.cancel()


class Timer:
    """A ``timerfd`` on ``CLOCK_MONOTONIC`` watched by the loop: ``until(t)``
    returns once ``time.monotonic()`` has reached ``t``. One waiter at a time
    (the open loop's). ``close()`` unregisters and closes the descriptor."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        import ctypes  # noqa: PLC0415 - loaded with libc (``_libc``)

        libc, self._timespec, self._itimerspec = _libc()
        fd = int(libc.timerfd_create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)} (the timer pacing is Linux's)")
        self._settime = libc.timerfd_settime
        self._byref = ctypes.byref
        self._errno = ctypes.get_errno
        self.fd = fd
        self.loop = loop
        self.waiter: asyncio.Future[None] | None = None
        loop.add_reader(fd, self._fired)

    def _fired(self) -> None:
        try:
            os.read(self.fd, 8)  # the expiration count; reading disarms the readiness
        except BlockingIOError:
            return
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def until(self, t: float) -> None:
        """Wait until the monotonic clock reads ``t`` or later."""
        if t <= time.monotonic():
            return
        # Rounded up to the nanosecond: never armed before t.
        sec, nsec = divmod(math.ceil(t * 1e9), 1_000_000_000)
        spec = self._itimerspec(self._timespec(0, 0), self._timespec(sec, nsec))
        if self._settime(self.fd, _TFD_TIMER_ABSTIME, self._byref(spec), None) != 0:
            err = self._errno()
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        os.close(self.fd)
