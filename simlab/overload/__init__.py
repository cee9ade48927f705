"""Overload dynamics: time-varying load, client timeouts and retries, bounded
queues and load shedding, a backend with limits, blocking inside the loop,
and deadline fan-out (issue 15).

Every option defaults to off and then changes nothing: a run without them
is the same, byte for byte, as before they existed.
"""

from simlab.overload.policy import Backend, Clients, Limits, Mix
from simlab.overload.schedule import Schedule, parse_rate, read_schedule

__all__ = ["Backend", "Clients", "Limits", "Mix", "Schedule", "parse_rate", "read_schedule"]
