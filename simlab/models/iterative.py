"""``iterative``: one thread per process serves one connection at a time, start to finish.

The first server of the notes' Python journey: ``accept``, then loop on
``recv``/``send`` until the client hangs up, then ``accept`` again. Other
connections wait in the listen backlog. With persistent connections the
thread never gets past its first client; with one request per connection it
is M/G/1 with connections as customers. Pre-forked copies (``processes``)
take new connections in turn, each with its own single thread.
"""

from __future__ import annotations

from simlab.models.holders import Holders
from simlab.params import Architecture

__all__ = ["Iterative"]


class Iterative(Holders):
    name = "iterative"

    @classmethod
    def holders_for(cls, arch: Architecture) -> int:
        return arch.processes
