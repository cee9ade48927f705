"""The model registry: one list of architectures, each class owning its knowledge,
and one deal of connections to processes for the DES, the fast engine and the
analytic side."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import simlab
from simlab import Architecture, Workload
from simlab.distributions import Exponential, Fixed
from simlab.models import MODELS, get_model
from simlab.real.options import SERVER_MODELS
from simlab.registry import ENTRIES, MODEL_NAMES
from simlab.streams import Deal, Dealer, deal, run_salts
from simlab.theory import relaxation_time

SIMLAB = Path(simlab.__file__).resolve().parent
IDEAL = simlab.load_platform("ideal")


def test_one_list_of_architectures() -> None:
    assert tuple(MODELS) == MODEL_NAMES == SERVER_MODELS
    for e in ENTRIES:
        assert MODELS[e.name].name == e.name
        assert (SIMLAB / "real" / f"{e.server}.py").exists(), e.server
    with pytest.raises(ValueError, match="choose from"):
        get_model("nosuch")


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a module that is not a docstring."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
    ]


def test_no_model_name_is_spelled_outside_the_models_and_the_real_lab() -> None:
    # Whatever differs between architectures is asked of the model's class:
    # a model's name written out elsewhere means its knowledge leaked.
    allowed = {SIMLAB / "registry.py"}
    found = []
    for path in SIMLAB.rglob("*.py"):
        part = path.relative_to(SIMLAB).parts[0]
        if part in ("models", "real") or path in allowed:
            continue
        for line, text in _string_literals(path):
            if text in MODEL_NAMES:
                found.append(f"{path.relative_to(SIMLAB)}:{line}: {text!r}")
    assert not found, "\n".join(found)


def test_des_fast_and_analytic_deal_connections_alike() -> None:
    # 40 connections on 4 processes: the DES's lookup, the vectorised deal the
    # fast engine uses and the analytic shares all put each connection on
    # the same process, replication by replication.
    salts = run_salts(seed=1, replications=3)
    shares = Deal(salts).shares(40, 4)
    for salt, share in zip(salts, shares, strict=True):
        dealer = Dealer(4, salt)
        des = [dealer(c) for c in range(40)]
        fast = deal(np.arange(40), 4, salt).tolist()
        assert des == fast
        assert share == [des.count(p) / 40 for p in range(4)]
    # The simulation's own records carry those salts, and its processes agree.
    w = Workload(connections=40, rate=50.0, cpu=Fixed(0.001), io=Fixed(0.01))
    r = simlab.simulate(
        "reactor-pool", w, IDEAL, Architecture(workers=4, processes=4),
        duration=5.0, warmup=0.0, replications=3, seed=1,
    )  # fmt: skip
    for (rep, group), salt in zip(r.requests.groupby("replication"), salts, strict=True):
        expected = deal(group["connection"].to_numpy(), 4, salt)
        assert (group["process"].to_numpy() == expected).all(), rep
    # And the stability verdict's busiest share is the deal's busiest.
    busiest = max(max(s) for s in shares)
    rho = r.summary.stability.offered_load["workers"]
    svc = 0.001 + 0.01
    assert rho == pytest.approx(50.0 * busiest * svc / 4)


def test_the_fast_kernel_deals_as_the_des_does_with_processes() -> None:
    w = Workload(connections=500, rate=300.0, cpu=Fixed(0.001), io=Fixed(0.02))
    arch = Architecture(workers=3, processes=3)
    des = simlab.simulate("reactor-pool", w, IDEAL, arch, engine="des", duration=3, warmup=0,
                          replications=2)  # fmt: skip
    fast = simlab.simulate("reactor-pool", w, IDEAL, arch, engine="fast", duration=3, warmup=0,
                           replications=2)  # fmt: skip
    assert (des.requests["process"] == fast.requests["process"]).all()


@pytest.mark.parametrize("model", list(MODELS))
def test_each_model_says_what_a_request_costs(model: str) -> None:
    # The same counts the DES charges and calibration fits: four backend calls
    # cost four call_us on every model, and a thread per request wakes once
    # per call too (none on a loop).
    cls = get_model(model)
    one = cls.request_cost(Workload(calls=1, rate=1.0))
    four = cls.request_cost(Workload(calls=4, rate=1.0))
    terms1, terms4 = one.terms(0.0), four.terms(0.0)
    assert terms4["call_us"] - terms1["call_us"] == 3
    assert terms1["parse_us"] == 1
    assert (terms4["context_switch_us"] - terms1["context_switch_us"]) in (0, 3)
    assert (terms1["context_switch_us"] == 0) == cls.busy_on_cpu


def test_each_model_names_its_bottleneck_as_a_queue() -> None:
    """The bottleneck is the resource slowest to settle, with the queue the
    model's offered load implies: servers, service time and utilisation."""
    deal = Deal.of_run(1, 5)
    w = Workload(connections=10_000_000, rate=95.0, cpu=Exponential(0.1), calls=0)
    pool = get_model("reactor-pool").bottleneck(w, IDEAL, Architecture(workers=10), deal)
    assert pool is not None
    assert (pool.resource, pool.servers) == ("workers", 10)
    assert (pool.rho, pool.service_s, pool.scv) == pytest.approx((0.95, 0.1, 1.0))
    assert pool.relaxation_s == pytest.approx(relaxation_time(0.95, 0.1, 10))
    # One request per connection: thread-pool's holders are the same M/M/10.
    short = w.with_(requests_per_connection=1)
    holders = get_model("thread-pool").bottleneck(short, IDEAL, Architecture(workers=10), deal)
    assert holders is not None and (holders.resource, holders.servers) == ("holders", 10)
    assert holders.relaxation_s == pytest.approx(pool.relaxation_s)
    # A single loop at rho 0.9 takes longer to settle than 100 workers at 0.95.
    loop = get_model("async").bottleneck(w.with_(rate=9.0), IDEAL, Architecture(), deal)
    assert loop is not None and (loop.resource, loop.servers) == ("loop", 1)
    assert loop.relaxation_s > pool.relaxation_s
    # Saturated (nothing settles) or closed arrivals (no rate): no bottleneck to size by.
    assert get_model("reactor-pool").bottleneck(w, IDEAL, Architecture(workers=9), deal) is None
    closed = Workload(connections=10, think=Fixed(1.0))
    assert get_model("async").bottleneck(closed, IDEAL, Architecture(), deal) is None
