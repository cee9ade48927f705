"""Random streams and the deal of connections to processes: one layout for every engine.

A replication's ``SeedSequence`` is split into named child streams, always
in the same order, so that request k gets the same demand whatever the
architecture (common random numbers across configurations) and whatever the
engine (the DES and the fast engine draw the same numbers). Adding a stream
later must append to ``STREAMS``, which leaves the earlier ones unchanged.

Which pre-forked process serves a connection is up to the kernel, and it is
uneven: round-robin would flatter the design. ``deal`` hashes connection ids
(splitmix64, salted per replication) onto processes: deterministic for a
seed, and across replications as uneven as chance. The DES, the fast engine
and the analytic process shares all call it, so they deal identically.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = [
    "HAND_OFF_BATCH", "STREAMS", "Deal", "Dealer", "HandOffs", "RacingDealer", "Streams", "deal",
    "hand_off_draws",
    "run_salts", "salt_of",
]  # fmt: skip

STREAMS = (
    "arrival", "connection", "cpu", "io", "think", "slack", "client", "mix", "hedge", "slow",
    "gil", "place",
)  # fmt: skip

# The GIL's hand-off uniforms are drawn from the ``gil`` stream this many at a
# time; drawing doubles one batch after another gives the same numbers as one
# long draw, so any engine can draw them ahead in multiples of it.
HAND_OFF_BATCH = 8192

# splitmix64's constants (Steele, Lea and Flood, OOPSLA 2014).
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xBF58476D1CE4E5B9)
_MUL2 = np.uint64(0x94D049BB133111EB)


@dataclass(frozen=True)
class Streams:
    """One replication's generators, by what they draw."""

    arrival: np.random.Generator  # gaps between open arrivals
    connection: np.random.Generator  # which connection sends each open arrival
    cpu: np.random.Generator  # each request's CPU demand
    io: np.random.Generator  # each backend call's delay
    think: np.random.Generator  # closed-loop think times
    slack: np.random.Generator  # the platform's per-call latency on top of the delay
    salt: int  # the deal of connections to processes
    # Appended for overload dynamics (``simlab.overload``): a client's retry
    # jitter; which requests are heavy or blocking; a hedged call's latency.
    client: np.random.Generator | None = None
    mix: np.random.Generator | None = None
    hedge: np.random.Generator | None = None
    # Appended for slow clients: their send and receive times.
    slow: np.random.Generator | None = None
    # Appended for the GIL's hand-off: which waiting thread the OS wakes.
    gil: np.random.Generator | None = None
    # Appended for the GIL's hand-off beside the lab's neighbours: on which
    # core the OS wakes its waiter (``Platform.gil_neighbour_share``).
    place: np.random.Generator | None = None

    @classmethod
    def of(cls, seed: np.random.SeedSequence) -> Streams:
        # spawn(n) keys child k by k alone, so an appended stream leaves the others as they were.
        arrival, connection, cpu, io, think, slack, client, mix, hedge, slow, gil, place = (
            np.random.default_rng(s) for s in seed.spawn(len(STREAMS))
        )
        return cls(
            arrival, connection, cpu, io, think, slack, salt=salt_of(seed),
            client=client, mix=mix, hedge=hedge, slow=slow, gil=gil, place=place,
        )  # fmt: skip


class HandOffs:
    """The uniforms that choose who gets a GIL handed out of order, read in order.

    A replication's GIL hand-offs (all its processes') read one stream of
    uniforms, one per contended hand-off, drawn ``HAND_OFF_BATCH`` at a time
    from the ``gil`` stream. Drawn ahead instead of asked for one at a time,
    they are the same numbers for an engine that reads them from an array
    (``simlab.fast_events``), so both pick the same waiter at every hand-off.
    ``pick`` says which waiter the next uniform picks.
    """

    __slots__ = ("_at", "_rng", "_u", "fifo")

    def __init__(self, rng: np.random.Generator, fifo: float) -> None:
        self._rng = rng
        self._u: list[float] = []
        self._at = 0
        self.fifo = fifo

    def pick(self, waiting: int) -> int:
        """The place in line (0: the oldest) of the waiter that gets the GIL,
        among ``waiting`` (at least 2): the oldest when the uniform u falls
        below ``fifo``, else place floor((u - fifo) / (1 - fifo) * waiting),
        uniform over the line."""
        if self._at == len(self._u):
            self._u = self._rng.random(HAND_OFF_BATCH).tolist()
            self._at = 0
        u = self._u[self._at]
        self._at += 1
        fifo = self.fifo
        if u < fifo:
            return 0
        # The same arithmetic as the compiled loop's, so the same place.
        return min(int((u - fifo) / (1.0 - fifo) * waiting), waiting - 1)


def hand_off_draws(rng: np.random.Generator, at_least: int) -> np.ndarray:
    """The first uniforms ``HandOffs`` reads from ``rng``: at least ``at_least``,
    a whole number of batches (one more batch from ``rng`` continues them)."""
    batches = max(1, -(-at_least // HAND_OFF_BATCH))
    return rng.random(batches * HAND_OFF_BATCH)


def salt_of(seed: np.random.SeedSequence) -> int:
    """The deal's salt for a replication: a fresh deal per replication."""
    return int(seed.generate_state(1, np.uint64)[0])


def run_salts(seed: int, replications: int) -> tuple[int, ...]:
    """The salts of the replications ``simulate(seed=..., replications=...)`` runs."""
    return tuple(salt_of(s) for s in np.random.SeedSequence(seed).spawn(replications))


def deal(keys: np.ndarray, processes: int, salt: int) -> np.ndarray:
    """The process each key (a connection id, or an accept's index) lands on."""
    if processes == 1:
        return np.zeros(len(keys), dtype=np.int64)
    with np.errstate(over="ignore"):
        z = (keys.astype(np.uint64) ^ np.uint64(salt)) + _GAMMA
        z = (z ^ (z >> np.uint64(30))) * _MUL1
        z = (z ^ (z >> np.uint64(27))) * _MUL2
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(processes)).astype(np.int64)


# The racing deal's own stream of the replication's salt.
RACE_STREAM = 0x7ACE

# Beyond this many connections a process's share is 1/P: the deviation of a
# hashed share, about sqrt(P/N), is then under 0.2%, and counting a deal of
# millions would cost more than it tells.
EXACT_UP_TO = 1_000_000


@functools.lru_cache(maxsize=512)
def _counts(n: int, processes: int, salt: int) -> tuple[int, ...]:
    dealt = deal(np.arange(n, dtype=np.uint64), processes, salt)
    return tuple(int(c) for c in np.bincount(dealt, minlength=processes))


@dataclass(frozen=True)
class Deal:
    """The deals of a set of replications (one salt each), for the analytic side.

    A model's offered load and textbook reduction depend on how many
    connections its busiest process gets; built from the salts of the
    replications that will be simulated, they describe the same runs.
    """

    salts: tuple[int, ...]

    @classmethod
    def of_run(cls, seed: int = 1, replications: int = 5) -> Deal:
        return cls(run_salts(seed, replications))

    def counts(self, n: int, processes: int) -> list[tuple[int, ...]]:
        """Connections per process, one tuple per replication."""
        if processes == 1:
            return [(n,)] * len(self.salts)
        if n > EXACT_UP_TO:
            even = tuple([n // processes] * processes)
            return [even] * len(self.salts)
        return [_counts(n, processes, s) for s in self.salts]

    def shares(self, n: int, processes: int) -> list[list[float]]:
        """Each process's share of the connections (so of the load), per replication."""
        if processes == 1:
            return [[1.0]] * len(self.salts)
        if n > EXACT_UP_TO:
            return [[1.0 / processes] * processes] * len(self.salts)
        return [[c / n for c in counts] for counts in self.counts(n, processes)]

    def busiest(self, n: int, processes: int) -> float:
        """The largest share any process gets in any replication."""
        return max(max(s) for s in self.shares(n, processes))

    def busiest_count(self, n: int, processes: int) -> int:
        """The most connections any process gets in any replication."""
        if processes > 1 and n > EXACT_UP_TO:
            return -(-n // processes)
        return max(max(c) for c in self.counts(n, processes))


class Dealer:
    """The DES's lookup of a connection's process: the shared ``deal``, computed
    in blocks on first use, so a run over ten million connections pays only
    for the blocks its requests touch."""

    __slots__ = ("_blocks", "processes", "salt")
    BLOCK = 1 << 14

    def __init__(self, processes: int, salt: int) -> None:
        self.processes = processes
        self.salt = salt
        self._blocks: dict[int, list[int]] = {}

    def __call__(self, key: int) -> int:
        if self.processes == 1:
            return 0
        b, k = divmod(key, self.BLOCK)
        block = self._blocks.get(b)
        if block is None:
            keys = np.arange(b * self.BLOCK, (b + 1) * self.BLOCK, dtype=np.uint64)
            block = deal(keys, self.processes, self.salt).tolist()
            self._blocks[b] = block
        return block[k]


class RacingDealer:
    """Copies that race for connections opening together (``Architecture.accept
    = "race"``): the replication's shares drawn from Dirichlet(1, ..., 1) by
    its salt (or as given: a real run's measured shares), then each
    connection to a copy by its hashed uniform, so the same salt gives the
    same deal; or each connection to the copy a real run measured it on
    (``dealt``), where one was given."""

    __slots__ = ("bounds", "dealt", "processes", "salt")
    BLOCK = Dealer.BLOCK

    def __init__(
        self,
        processes: int,
        salt: int,
        shares: tuple[float, ...] | None = None,
        dealt: tuple[int, ...] | None = None,
    ) -> None:
        self.processes = processes
        self.salt = salt
        self.dealt = dealt
        drawn = (
            np.random.default_rng([salt, RACE_STREAM]).dirichlet(np.ones(processes))
            if shares is None
            else np.asarray(shares, dtype=float)
        )
        self.bounds = np.cumsum(drawn)[:-1].tolist()

    def __call__(self, key: int) -> int:
        if self.processes == 1:
            return 0
        if self.dealt is not None and 0 <= key < len(self.dealt):
            return self.dealt[key]
        # A uniform from the same splitmix64 hash as ``deal`` (2**20 steps).
        u = int(deal(np.array([key], dtype=np.uint64), 1 << 20, self.salt)[0]) / (1 << 20)
        return int(np.searchsorted(self.bounds, u, side="right"))
