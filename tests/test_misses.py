"""The report's explanations of its big misses (``simlab.misses``): each chosen by
a rule over the rows, and each flips when the rows say otherwise."""

from __future__ import annotations

from typing import Any

from simlab.misses import explain, explain_all
from simlab.real.speed import WORK


def _r(metric: str, predicted: float, measured: float, *, config: str = "N=300 420/s W=32 P=1",
       model: str = "thread-per-connection", rho: float = 0.95, within: bool = False,
       goal: float = 0.25, evidence: bool = True) -> dict[str, Any]:  # fmt: skip
    return {
        "model": model, "config": config, "metric": metric, "rho": rho,
        "predicted": predicted, "measured": measured,
        "rel_error": abs(predicted - measured) / measured, "within_noise": within,
        "goal": goal, "evidence": evidence, "net_error": 0.1, "noise": 0.02,
    }  # fmt: skip


def test_a_latency_miss_follows_a_served_rate_miss() -> None:
    rows = [_r("throughput_rps", 419, 363), _r("latency_p50", 39, 869)]
    why = explain(rows[1], rows)
    assert why["kind"] == "cause" and "queue is shorter" in why["text"]
    # Doctored: the model serves less than the server did, yet its latency is
    # lower: the served rate does not explain it, and near saturation the rule
    # that fires is not the capacity cause.
    rows[0] = _r("throughput_rps", 340, 363)
    assert explain(rows[1], rows)["kind"] != "cause"
    # Served rates within noise at an offered load of 0.95: a hypothesis, with its run.
    rows[0] = _r("throughput_rps", 365, 363, within=True)
    why = explain(rows[1], rows)
    assert why["kind"] == "hypothesis" and "simlab measure" in why["text"]
    # ... and the direction follows the sign of the error.
    assert "higher than the model's" in why["text"]
    assert "lower than the model's" in explain(_r("latency_p50", 900, 869), rows)["text"]


def test_beyond_saturation_the_latency_magnifies_the_served_difference() -> None:
    rows = [_r("throughput_rps", 360, 356, rho=1.04, within=True),
            _r("latency_p50", 313, 464, rho=1.04)]  # fmt: skip
    assert "saturated" in explain(rows[1], rows)["text"]
    rows[1]["rho"] = 0.5  # the same rows at a light load: no rule
    assert explain(rows[1], rows)["kind"] == "unexplained"


def test_a_capacity_miss_names_its_direction() -> None:
    less = explain(_r("throughput_rps", 419, 363), [])
    more = explain(_r("throughput_rps", 340, 363), [])
    assert "above the calibrated" in less["text"] and "below the calibrated" in more["text"]
    assert explain(_r("throughput_rps", 419, 363, rho=0.5), [])["kind"] == "unexplained"


def test_pre_forked_copies_only_when_the_single_process_cases_meet_the_goal() -> None:
    miss = _r("memory_user", 23, 33, config="N=1000 350/s W=32 P=2", model="async", goal=0.15)
    single = _r("memory_user", 23, 25, config="N=3000 300/s W=32 P=1", model="async", goal=0.15)
    rows = [miss, single]
    assert "pre-forked copies" in explain(miss, rows)["text"]
    single["measured"], single["rel_error"] = 33, 0.3  # P=1 misses as much: not the copies
    assert explain(miss, rows)["kind"] == "unexplained"


def test_short_connections_kernel_memory_both_ways() -> None:
    under = explain(_r("memory_kernel", 0.4, 4.0, config="N=9000 100/s P=1 k=1"), [])
    over = explain(_r("memory_kernel", 0.38, 0.26, config="N=100 90/s P=1 k=1"), [])
    assert "not by their sockets" in under["text"] and "longer than the server" in over["text"]
    assert explain(_r("memory_kernel", 0.4, 4.0, config="N=9000 100/s P=1"), [])["kind"] == (
        "unexplained"
    )


def _memory_cases(gaps: dict[int, float], *, model: str = "java-threads",
                  base: float = 60.0, config: str = "100/s W=32 P=1",
                  evidence: bool = True) -> list[dict[str, Any]]:  # fmt: skip
    """memory_user rows of single-process cases at each N, the model at
    ``base`` + 47 KiB a connection, the server that plus each N's gap."""
    rows = []
    for n, gap in gaps.items():
        predicted = base + 47 * n / 1024
        rows.append(_r("memory_user", predicted, predicted + gap, config=f"N={n} {config}",
                       model=model, goal=0.15, evidence=evidence))  # fmt: skip
    return rows


# The server holds 40 KiB a connection more than the model, give or take a MiB.
GROWING = {300: 12.7, 400: 14.9, 800: 32.2, 1600: 61.8, 2500: 98.6}


def _slope_interval(text: str) -> tuple[float, float]:
    low, high = text.split("95% ")[1].split(" KiB)", maxsplit=1)[0].split(" to ")
    return float(low), float(high)


def test_a_memory_gap_that_grows_with_the_connections_is_per_connection() -> None:
    rows = _memory_cases(GROWING)
    miss = rows[2]  # N=800
    why = explain(miss, rows)
    assert why["kind"] == "hypothesis" and why["text"].startswith("per connection")
    assert "over the 4 other" in why["text"] and "holding more in the server" in why["text"]
    assert "simlab measure java-threads --connections 800 --rate 1" in why["text"]
    # Fitted without the miss's own case, the slope's interval still brackets
    # the 40 KiB the rows were made with.
    low, high = _slope_interval(why["text"])
    assert low < 40 < high
    # Doctored: the same gaps at every N (a base, not a cost a connection): no rule.
    flat = _memory_cases({300: 30.0, 400: 31.0, 800: 29.0, 1600: 30.2, 2500: 30.5})
    assert explain(flat[2], flat)["kind"] == "unexplained"
    # The other way: the model over the server, more so the more connections.
    over = _memory_cases({n: -g for n, g in GROWING.items()})
    assert "holding less in the server" in explain(over[2], over)["text"]
    # A gap growing the other way from the miss's (the model under at N=300,
    # over at the rest): the slope does not explain this miss.
    against = _memory_cases({300: 20.0, 400: 5.0, 800: -12.0, 1600: -35.0, 2500: -60.0})
    assert explain(against[0], against)["kind"] == "unexplained"


def test_a_miss_does_not_make_its_own_trend() -> None:
    # As go's N=6000 case: the other cases' gaps are flat, the miss alone at
    # the far end is large. With it in the fit the slope would be clear.
    rows = _memory_cases({300: 1.0, 400: -1.8, 500: -1.6, 1000: -4.3, 3000: -2.1, 6000: 21.5},
                         model="go")  # fmt: skip
    assert explain(rows[-1], rows)["kind"] == "unexplained"


def test_per_connection_needs_enough_other_cases_and_a_span_of_connections() -> None:
    rows = _memory_cases({300: 12.7, 900: 36.0, 2500: 98.6, 800: 32.2})
    assert explain(rows[3], rows)["kind"] == "hypothesis"  # three others, on a line
    assert explain(rows[3], [rows[0], rows[2], rows[3]])["kind"] == "unexplained"  # two others
    narrow = _memory_cases({300: 12.7, 400: 14.9, 500: 20.2, 800: 32.2, 600: 23.0})
    assert explain(narrow[3], narrow)["kind"] == "unexplained"  # the others span 2
    # Only the model's own rows of the same metric, as evidence, single
    # process, persistent connections: the others do not count.
    miss = _memory_cases({800: 32.2})[0]
    for others in (
        _memory_cases({300: 12.7, 900: 36.0, 2500: 98.6}, model="go"),
        _memory_cases({300: 12.7, 900: 36.0, 2500: 98.6}, evidence=False),
        _memory_cases({300: 12.7, 900: 36.0, 2500: 98.6}, config="100/s W=32 P=2"),
        _memory_cases({300: 12.7, 900: 36.0, 2500: 98.6}, config="100/s W=32 P=1 k=1"),
        [dict(r, metric="memory_kernel") for r in
         _memory_cases({300: 12.7, 900: 36.0, 2500: 98.6})],
    ):  # fmt: skip
        assert explain(miss, [miss, *others])["kind"] == "unexplained"
    # Nor is a miss of short connections or of several processes its kind.
    for config in ("100/s W=32 P=1 k=1", "100/s W=32 P=2"):
        short = _memory_cases({300: 12.7, 900: 36.0, 2500: 98.6, 800: 32.2}, config=config)
        assert "per connection" not in explain(short[3], short)["text"]


def test_per_connection_asks_its_slope_for_a_share_of_the_gap() -> None:
    # A steep gap a connection over a large base: at few connections the
    # slope gives under a quarter of the gap, at many most of it.
    gaps = {n: 80.0 + 10 * n / 1024 for n in (300, 400, 900, 1600, 2500, 5000)}
    rows = _memory_cases(gaps)
    assert explain(rows[0], rows)["kind"] == "unexplained"  # N=300: 2.9 of 82.9 MiB
    why = explain(rows[-1], rows)
    assert why["kind"] == "hypothesis" and "a base the model lacks" in why["text"]


def test_explain_all_keeps_each_miss_and_adds_why() -> None:
    rows = [_r("throughput_rps", 419, 363), _r("latency_p50", 39, 869)]
    big = [{k: rows[1][k] for k in ("model", "config", "metric", "rel_error")}]
    (out,) = explain_all(big, rows)
    assert out["metric"] == "latency_p50" and out["why"]["kind"] == "cause"


def _sessions(low: list[float], high: list[float], speeds: tuple = (None, None)) -> dict:
    """The case's spread between two sessions, computed as the report does."""
    from simlab import sessions  # noqa: PLC0415

    h: dict = {}
    for k, runs in enumerate((low, high)):
        refs = [{"ops_s": speeds[k], "work": WORK}] * len(runs) if speeds[k] else []
        rows = [{"model": "async", "config": "N=500 380/s P=1", "metric": "latency_p50",
                 "measured_runs": runs, "speed_reference_runs": refs}]  # fmt: skip
        result = {"rows": rows, "created": f"2026010{k + 1}T000000Z", "git_revision": "abc"}
        h = sessions.add(h, sessions.session_of(result, source="t"))
    row = {"model": "async", "config": "N=500 380/s P=1", "metric": "latency_p50",
           "predicted": 312.0, "evidence": True}  # fmt: skip
    (case,) = sessions.between(h, [row], quick=False)["cases"]
    return case


def test_session_drift_explains_a_miss_the_sessions_bracket() -> None:
    miss = _r("latency_p50", 312, 670, config="N=500 380/s P=1", model="async", rho=0.5)
    assert explain(miss, [miss])["kind"] == "unexplained"  # no history: no rule
    drift = _sessions([280.0, 285.0, 290.0], [660.0, 670.0, 680.0])
    why = explain(miss, [miss], drift)
    assert why["kind"] == "hypothesis" and "session drift" in why["text"]
    assert "20260101T000000Z" in why["text"] and "20260102T000000Z" in why["text"]
    assert "not recorded in 20260101T000000Z and 20260102T000000Z" in why["text"]
    # Doctored: the runs within each session spread over each other: no drift.
    overlap = _sessions([100.0, 285.0, 470.0], [300.0, 670.0, 1040.0])
    assert explain(miss, [miss], overlap)["kind"] == "unexplained"
    # Doctored: the prediction outside the sessions' range: the sessions do not explain it.
    assert explain({**miss, "predicted": 900.0}, [miss], drift)["kind"] == "unexplained"
    # Memory does not follow the machine's speed: not this rule.
    memory = {**miss, "metric": "memory_user"}
    assert explain(memory, [memory], {**drift, "metric": "memory_user"})["kind"] == "unexplained"


def test_session_drift_reads_the_speed_reference_both_ways() -> None:
    miss = _r("latency_p50", 312, 670, config="N=500 380/s P=1", model="async", rho=0.5)
    slower = explain(miss, [miss], _sessions([280.0, 285.0, 290.0], [660.0, 670.0, 680.0],
                                             speeds=(5000.0, 4000.0)))  # fmt: skip
    assert "a ratio of 0.800" in slower["text"]
    assert "slower in the session that measured more: as a speed change" in slower["text"]
    faster = explain(miss, [miss], _sessions([280.0, 285.0, 290.0], [660.0, 670.0, 680.0],
                                             speeds=(4000.0, 5000.0)))  # fmt: skip
    assert "faster in the session that measured more: against what" in faster["text"]
    same = explain(miss, [miss], _sessions([280.0, 285.0, 290.0], [660.0, 670.0, 680.0],
                                           speeds=(5000.0, 5010.0)))  # fmt: skip
    assert "does not explain the move" in same["text"]


def test_a_cause_in_this_sessions_rows_stands_before_drift() -> None:
    rows = [_r("throughput_rps", 419, 363), _r("latency_p50", 300, 670)]
    drift = _sessions([280.0, 285.0, 290.0], [660.0, 670.0, 680.0])
    assert explain(rows[1], rows, drift)["kind"] == "cause"
    big = [{k: rows[1][k] for k in ("model", "config", "metric", "rel_error")}]
    spread = [{**drift, "model": rows[1]["model"], "config": rows[1]["config"]}]
    (out,) = explain_all(big, rows, spread)
    assert out["why"]["kind"] == "cause"
    rows[0] = _r("throughput_rps", 365, 363, within=True, rho=0.5)
    rows[1]["rho"] = 0.5
    (out,) = explain_all(big, rows, spread)
    assert "session drift" in out["why"]["text"]


def test_opposite_quantile_misses_are_a_spread() -> None:
    # The process-per-connection 700/s case: p50 under, p99 over, both outside
    # noise, the served rates within noise (so capacity explains neither).
    cfg = "N=200 700/s cpu=2ms no calls W=32 P=1"
    rows = [
        _r("throughput_rps", 660, 668, config=cfg, model="process-per-connection", rho=0.85,
           within=True),
        _r("latency_p50", 277, 488, config=cfg, model="process-per-connection", rho=0.85),
        _r("latency_p99", 7752, 4730, config=cfg, model="process-per-connection", rho=0.85),
    ]  # fmt: skip
    why = explain(rows[1], rows)
    assert why["kind"] == "hypothesis" and why["text"].startswith("spread")
    assert "wider" in why["text"] and "28.0 times its p50 where the server's is 9.7" in why["text"]
    # Doctored: the p99 under as well: both quantiles low is not a spread.
    rows[2] = _r("latency_p99", 4000, 4730, config=cfg, model="process-per-connection", rho=0.85)
    assert not explain(rows[1], rows)["text"].startswith("spread")
    # ... and with the p99 within noise, neither.
    rows[2] = _r("latency_p99", 7752, 4730, config=cfg, model="process-per-connection",
                 rho=0.85, within=True)  # fmt: skip
    assert not explain(rows[1], rows)["text"].startswith("spread")
    # The other way round (p50 over, p99 under): narrower.
    rows[1] = _r("latency_p50", 600, 488, config=cfg, model="process-per-connection", rho=0.85)
    rows[2] = _r("latency_p99", 3000, 4730, config=cfg, model="process-per-connection", rho=0.85)
    assert "narrower" in explain(rows[1], rows)["text"]


# The 23:11 UTC session of 1 December: process-per-connection with one request
# a connection, three runs, each with the machine's speed at its two ends.
K1 = "N=10000 60/s cpu=1ms 1x10ms seq W=32 P=1 k=1"
K1_SPEEDS = [(9079.0, 6031.0), (7135.0, 7878.0), (6710.0, 6457.0)]
FORK_EXIT = {"fork_exit_us": {"value": 0.0, "estimate": 1537.0, "assumption": "not identified"}}


def _runs(row: dict[str, Any], values: list[float], speeds: list[tuple[float, float]]) -> dict:
    refs = [{"before_ops_s": b, "after_ops_s": a, "ops_s": (a + b) / 2, "work": WORK}
            for b, a in speeds]  # fmt: skip
    return {**row, "measured_runs": values, "speed_reference_runs": refs,
            "resembles": row["model"]}  # fmt: skip


def _k1(metric: str, predicted: float, values: list[float], speeds=K1_SPEEDS) -> dict:
    row = _r(metric, predicted, sum(values) / len(values), config=K1,
             model="process-per-connection", rho=0.26)  # fmt: skip
    return _runs(row, values, speeds)


def test_children_outlive_their_connection_when_fork_exit_is_an_assumption() -> None:
    miss = _k1("threads_peak", 5.0, [13.0, 7.0, 13.0])
    why = explain(miss, [miss], None, FORK_EXIT)
    assert why["kind"] == "hypothesis" and "children outlive their connection" in why["text"]
    assert "an assumption, 0 us" in why["text"] and "1,537 us" in why["text"]
    # The run on the fastest machine (7,135 at its slower end) held the fewest.
    assert "7 at" not in why["text"] and "measured 7, nearest" in why["text"]
    assert "does not order" not in why["text"]
    # Doctored: fork_exit_us identified (no assumption), or set at its estimate: no rule.
    assert "children" not in explain(miss, [miss], None, {})["text"]
    fitted = {"fork_exit_us": {"value": 1537.0, "estimate": 1537.0}}
    assert "children" not in explain(miss, [miss], None, fitted)["text"]
    # Doctored: fewer threads than predicted (ppc at 700/s, 172 against 201): no rule.
    under = _k1("threads_peak", 201.0, [171.0, 165.0, 181.0])
    assert explain(under, [under], None, FORK_EXIT)["kind"] == "unexplained"
    # Doctored: the fastest run held the most: the speed clause flips.
    swapped = _k1("threads_peak", 5.0, [13.0, 14.0, 13.0])
    assert "does not order" in explain(swapped, [swapped], None, FORK_EXIT)["text"]
    # A model whose connections are threads: not a child's lingering.
    threads = {**miss, "model": "thread-per-connection", "resembles": "thread-per-connection"}
    assert "children" not in explain(threads, [threads], None, FORK_EXIT)["text"]


def test_slow_machine_when_the_fastest_run_is_nearest_the_prediction() -> None:
    miss = _k1("latency_p99", 27.6, [117.3, 38.6, 214.7])
    why = explain(miss, [miss])
    assert why["kind"] == "hypothesis" and why["text"].startswith("slow machine")
    assert "7,135 ops/s" in why["text"] and "215 at 6,457" in why["text"]
    # Doctored: the fastest run measured the most: no ordering, unexplained.
    flipped = _k1("latency_p99", 27.6, [117.3, 214.7, 38.6])
    assert explain(flipped, [flipped])["kind"] == "unexplained"
    # The same runs as a memory miss: memory does not follow the speed.
    memory = _k1("memory_user", 27.6, [117.3, 38.6, 214.7])
    assert explain(memory, [memory])["kind"] == "unexplained"
    # Doctored: speeds within the reference's repeatability: not told apart.
    even = [(7000.0, 7100.0), (7050.0, 7060.0), (7020.0, 7030.0)]
    same = _k1("latency_p99", 27.6, [117.3, 38.6, 214.7], speeds=even)
    assert explain(same, [same])["kind"] == "unexplained"
    # The 23:11 session's ppc 150/s p99: its fastest run measured the most
    # (55.1 at 6,681): the speed does not explain it, and nothing else does.
    config = "N=300 150/s cpu=2ms 1x10ms seq W=32 P=1"
    row = _r("latency_p99", 17.9, 41.0, config=config, model="process-per-connection", rho=0.18)
    speeds = [(6636.0, 9322.0), (10688.0, 6173.0), (6690.0, 6681.0)]
    ppc150 = _runs(row, [35.3, 32.6, 55.1], speeds)
    assert explain(ppc150, [ppc150])["kind"] == "unexplained"


def test_the_servers_cpu_a_request_explains_a_latency_miss_below_saturation() -> None:
    """With the served rates agreeing and the model's load under NEAR, a
    latency miss has no rule; the server's CPU a request, measured dearer than
    the model's outside its runs' spread and enough to bring the load near
    saturation, is a hypothesis with its test. Each doctored row flips it."""
    rows = [_r("throughput_rps", 550, 548, rho=0.79, within=True),
            _r("latency_p50", 5.3, 68.0, rho=0.79),
            _r("latency_p99", 12.0, 150.0, rho=0.79)]  # fmt: skip
    assert explain(rows[1], rows)["kind"] == "unexplained"
    miss = {**rows[1], "cpu_ms_runs": [1.61, 1.66, 1.58], "cpu_ms_predicted": 1.35}
    why = explain(miss, rows)
    assert why["kind"] == "hypothesis" and "CPU a request" in why["text"], why
    assert "+20%" in why["text"] and "about 0.95" in why["text"] and "longer" in why["text"]
    assert "scaled by 1.20" in why["text"]

    def silent(changed: dict[str, Any], table: list[dict[str, Any]] = rows) -> bool:
        return "CPU a request" not in explain({**miss, **changed}, table)["text"]

    assert silent({"cpu_ms_runs": [1.30, 1.66, 1.58]})  # the model's cost inside the runs' range
    assert silent({"cpu_ms_runs": [1.37, 1.38, 1.38]})  # within the machine's repeatability
    assert silent({"cpu_ms_runs": [0.0, 0.0, 0.0]})  # no CPU seen: nothing to read
    assert silent({"cpu_ms_runs": None})  # not recorded (reports before the key)
    assert silent({"rho": 0.5})  # +20% of a light load: nowhere near saturation
    assert silent({"cpu_ms_runs": [1.86, 1.90, 1.88]})  # +39%: over 1, yet the rates agree
    # The served rates disagree (the server served more: no capacity cause
    # either), so its CPU a request is not read.
    apart = [_r("throughput_rps", 480, 550, rho=0.79), *rows[1:]]
    assert silent({}, apart) and explain(miss, apart)["kind"] == "unexplained"
    # The p99 missing the other way, outside noise: a spread, not a load.
    spread = [rows[0], rows[1], _r("latency_p99", 150.0, 20.0, rho=0.79)]
    assert silent({}, spread)
    # A cheaper request with the latency lower, near saturation: the shorter queue.
    lower = {**_r("latency_p50", 60.0, 20.0, rho=0.9), "cpu_ms_runs": [1.10, 1.12, 1.11],
             "cpu_ms_predicted": 1.35}  # fmt: skip
    near = [_r("throughput_rps", 550, 548, rho=0.9, within=True), lower]
    assert "shorter" in explain(lower, near)["text"]
    # ... and, at the same load, says nothing of a latency measured higher.
    higher = {**lower, "predicted": 20.0, "measured": 60.0}
    assert "CPU a request" not in explain(higher, [near[0], higher])["text"]


def test_a_served_rate_miss_at_saturation_is_never_put_on_the_cpu_a_request() -> None:
    """At saturation a server's busy cores sit at its bottleneck, so its CPU a
    request is its served rate's inverse: no evidence of why it served less."""
    miss = {**_r("throughput_rps", 421, 291, rho=0.9), "cpu_ms_runs": [2.6, 2.7, 2.65],
            "cpu_ms_predicted": 2.15}  # fmt: skip
    why = explain(miss, [miss])
    assert why["kind"] == "hypothesis" and "CPU a request" not in why["text"]
    assert "cpu_busy_cores" in why["text"]  # the run to make


def test_a_queue_the_model_does_not_reach_below_near_saturation() -> None:
    """Under NEAR with the served rates agreeing, both quantiles far over the
    model's and the spread grown with them: the load the p50's factor implies
    is a hypothesis, with its run. Each doctored row flips it."""
    rows = [_r("throughput_rps", 548, 546, rho=0.785, within=True),
            _r("latency_p50", 12.5, 160.0, rho=0.785),
            _r("latency_p99", 30.6, 458.0, rho=0.785)]  # fmt: skip
    for miss in rows[1:]:
        why = explain(miss, rows)
        assert why["kind"] == "hypothesis" and "does not reach" in why["text"], why
        # 1 - (1 - 0.785) / (160 / 12.5) = 0.983; the spread (458 - 160) / (30.6 - 12.5).
        assert "12.8 times" in why["text"] and "16.5 times" in why["text"]
        assert "at 0.98 or more" in why["text"] and "simlab measure" in why["text"]

    def fires(*changed: dict[str, Any], table: list[dict[str, Any]] = rows) -> bool:
        doctored = [{**r, **c} for r, c in zip(table, changed, strict=False)] + table[
            len(changed) :
        ]
        return "does not reach" in explain(doctored[1], doctored)["text"]

    assert fires()
    # The spread no wider than the model's: a delay shifting the p50, not a queue.
    assert not fires({}, {}, {"measured": 160.0 + 18.1})
    # The p99 within noise, or under the model's: not both quantiles over.
    assert not fires({}, {}, {"within_noise": True})
    assert not fires({}, {}, {"measured": 20.0})
    # The served rates apart: their own rule, not this one.
    assert not fires({"within_noise": False, "predicted": 480.0})
    # A factor too small for the load it implies to reach NEAR:
    # 1 - (1 - 0.5) / 1.8 = 0.72.
    low = [{**r, "rho": 0.5} for r in rows]
    assert not fires({}, {"measured": 22.5}, {"measured": 22.5 + 3 * 18.1}, table=low)
    # ... and at NEAR or over, the near-saturation rule speaks, not this one.
    near = [{**r, "rho": 0.85} for r in rows]
    assert not fires(table=near) and "near saturation" in explain(near[1], near)["text"]
    # The model's latency higher than the measured: no queue to find.
    assert not fires({}, {"predicted": 200.0}, {"predicted": 600.0})
    # The spread wider, but by less than the p50's factor (5 against 12.8).
    assert not fires({}, {}, {"measured": 160.0 + 5 * 18.1})
    # The p50 within noise.
    assert not fires({}, {"within_noise": True})
    # A run whose window was not steady (a stall widens the spread too).
    stalled = {"unsteady_runs": [[], ["the server was still making its threads"], []]}
    assert not fires({}, stalled, stalled)
    assert fires({}, {"unsteady_runs": [[], [], []]}, {"unsteady_runs": [[], [], []]})
    # Under half of NEAR the wait is a small part of the latency: no reading.
    light = [{**r, "rho": 0.3} for r in rows]
    assert not fires(table=light)
    # The capacities said as margins over the offered rate: at most 2% for
    # the server (load 0.983), 27% for the model (load 0.785).
    text = explain(rows[1], rows)["text"]
    assert "at most 2% over the offered rate, where the model's is 27% over" in text


def test_a_threads_peak_finer_than_its_goal() -> None:
    """Small peaks whose model and server runs meet, at a count where one
    thread is over twice the goal: a hypothesis that says which way the
    runs lie; apart runs, or a count the goal resolves, get no such rule."""
    miss = {**_r("threads_peak", 5.667, 6.667, config="N=9000 100/s W=32 P=1 k=1", goal=0.05),
            "predicted_runs": [5.0, 6.0, 6.0], "measured_runs": [7.0, 7.0, 6.0]}  # fmt: skip
    why = explain(miss, [miss])
    assert why["kind"] == "hypothesis" and "finer than its goal" in why["text"], why
    assert "one thread is 15%" in why["text"] and "end too soon" in why["text"]
    mixed = {**miss, "measured_runs": [5.0, 7.0, 8.0]}
    assert "end too" not in explain(mixed, [mixed])["text"]
    under = {**miss, "predicted": 6.667, "measured": 5.667, "predicted_runs": [7.0, 7.0, 6.0],
             "measured_runs": [5.0, 6.0, 6.0]}  # fmt: skip
    assert "end too late" in explain(under, [under])["text"]
    # Runs apart: the model's highest under the server's lowest.
    apart = {**miss, "measured_runs": [7.0, 7.0, 8.0]}
    assert explain(apart, [apart])["kind"] == "unexplained"
    # Runs that meet, but means more than a thread apart: not the count's step.
    wide = {**miss, "predicted": 3.667, "measured": 8.333, "predicted_runs": [2.0, 2.0, 7.0],
            "measured_runs": [7.0, 9.0, 9.0]}  # fmt: skip
    assert explain(wide, [wide])["kind"] == "unexplained"
    assert explain({**miss, "predicted": None}, [miss])["kind"] == "unexplained"
    # A count the goal resolves: one thread in 40 is 2.5%, under twice 5%.
    big = {**miss, "predicted": 38.0, "measured": 40.0, "predicted_runs": [37.0, 38.0, 39.0],
           "measured_runs": [39.0, 40.0, 41.0]}  # fmt: skip
    assert explain(big, [big])["kind"] == "unexplained"
    # Not recorded (reports before the runs' predictions): silent.
    assert explain({**miss, "predicted_runs": None}, [miss])["kind"] == "unexplained"


def _waits(*pairs: tuple[float, float | None]) -> list[dict[str, Any]]:
    return [
        {"wait_ms_per_request": w, "shared_queue_ms_per_request": q, "machine_busy_cores": 1.2,
         "slice_ms": 0.8, "slices_per_request": 4.5}
        for w, q in pairs
    ]  # fmt: skip


def test_waiting_for_a_core_beyond_one_queues_wait() -> None:
    """The process-per-connection N=300 case of 4 December: p50 16.9 against
    14.6 ms, p99 55 against 25.6, the children waiting 4.9 ms a request on
    the run queues where one queue of two cores would make them wait 2.3."""
    config = "N=300 150/s cpu=2ms 1x10ms seq W=32 P=1"

    def case(waits: list[dict[str, Any]], p50: float = 16.9) -> list[dict[str, Any]]:
        rows = [
            _r("throughput_rps", 145.4, 145.5, config=config, rho=0.18, within=True),
            _r("latency_p50", 14.6, p50, config=config, rho=0.18, within=True),
            _r("latency_p99", 25.6, 55.0, config=config, rho=0.18),
        ]
        for row in rows:
            row["model"], row["run_queue_runs"] = "process-per-connection", waits
        return rows

    rows = case(_waits((4.9, 2.3), (5.4, 2.4), (4.6, 2.2)))
    why = explain(rows[2], rows)
    assert why["kind"] == "hypothesis" and why["text"].startswith("waiting for a core")
    assert "4.9 ms a request" in why["text"] and "2.3 ms)" in why["text"]  # the p50's excess
    # Doctored: the excess no longer covers the p50's shift ...
    rows = case(_waits((3.9, 2.3), (4.0, 2.4), (3.8, 2.2)))
    assert explain(rows[2], rows)["kind"] == "unexplained"
    # ... one run waited less than one queue would make it ...
    rows = case(_waits((4.9, 2.3), (2.0, 2.4), (4.6, 2.2)))
    assert explain(rows[2], rows)["kind"] == "unexplained"
    # ... a run read no waits (the threads came and went), or the machine was full ...
    for waits in (
        [*_waits((4.9, 2.3), (5.4, 2.4)), None],
        _waits((4.9, 2.3), (5.4, None), (4.6, 2.2)),
    ):
        rows = case(waits)  # type: ignore[arg-type]
        assert explain(rows[2], rows)["kind"] == "unexplained"
    # ... the measured median is not over the model's ...
    rows = case(_waits((4.9, 2.3), (5.4, 2.4), (4.6, 2.2)), p50=14.0)
    assert explain(rows[2], rows)["kind"] == "unexplained"
    # ... the miss is within noise, the served rates disagree (capacity is
    # the cause), or the load is near saturation (that rule speaks) ...
    rows = case(_waits((4.9, 2.3), (5.4, 2.4), (4.6, 2.2)))
    rows[2]["within_noise"] = True
    assert explain(rows[2], rows)["kind"] == "unexplained"
    rows = case(_waits((4.9, 2.3), (5.4, 2.4), (4.6, 2.2)))
    rows[0].update(predicted=160.0, within_noise=False)
    assert explain(rows[2], rows)["text"].startswith("capacity")
    rows = case(_waits((4.9, 2.3), (5.4, 2.4), (4.6, 2.2)))
    for row in rows:
        row["rho"] = 0.85
    assert explain(rows[2], rows)["text"].startswith("near saturation")
    # ... or the excess is under a tenth of a long median.
    rows = case(_waits((9.9, 2.3), (10.4, 2.4), (9.6, 2.2)), p50=90.0)
    rows[1]["predicted"] = 88.0
    assert explain(rows[2], rows)["kind"] == "unexplained"


# thread-per-connection N=300 420/s, 4 December: each run's served rate, CPU
# a served request (ms) and its threads' scheduler slices a request.
CONVOY = [(338.5, 3.333, 120.5), (347.2, 3.294, 142.4), (366.4, 3.088, 126.7),
          (404.9, 2.483, 44.0), (361.0, 3.022, 92.3), (361.9, 3.025, 102.6),
          (405.2, 2.586, 68.4), (364.2, 3.042, 101.7)]  # fmt: skip
PRESET = {"context_switch_us": {"value": 0.95, "identified": False}}


def _convoy(runs: list[tuple[float, float, float]], predicted: float = 403.0) -> dict[str, Any]:
    served = [t for t, _, _ in runs]
    return {
        **_r("throughput_rps", predicted, sum(served) / len(served), rho=0.97, goal=0.05),
        "measured_runs": served,
        "cpu_ms_runs": [c for _, c, _ in runs],
        "run_queue_runs": [{"slices_per_request": s} for _, _, s in runs],
    }


def test_switches_explain_a_served_rate_miss_when_cpu_follows_the_slices() -> None:
    miss = _convoy(CONVOY)
    why = explain(miss, [miss], assumptions=PRESET)
    assert why["kind"] == "hypothesis" and why["text"].startswith("switches: over its 8 runs")
    assert "an assumption, 0.95 µs" in why["text"]
    # The slope is a few µs a slice: read off the text, not pinned.
    slope = float(why["text"].split("spent ")[1].split(" µs")[0])
    assert 1.0 < slope < 20.0
    # It stands before the sessions' drift (measured in these runs).
    drift = _sessions([280.0, 285.0, 290.0], [415.0, 420.0, 425.0])
    assert explain(miss, [miss], drift)["text"].startswith("switches")
    # Doctored: the same busy cores in every run (CPU a request the served
    # rate's inverse), however the slices move: no cost a slice to read.
    flat = [(t, 1.1 / t * 1000, s) for t, _, s in CONVOY]
    assert "switches" not in explain(_convoy(flat), [], assumptions=PRESET)["text"]
    # Doctored: the runs with more slices served more: not this rule.
    swapped = [(t, c, 200.0 - s) for t, c, s in CONVOY]
    assert "switches" not in explain(_convoy(swapped), [], assumptions=PRESET)["text"]
    # Too few runs to read a line from; a model that serves less; no slices read.
    assert "switches" not in explain(_convoy(CONVOY[:4]), [])["text"]
    assert "switches" not in explain(_convoy(CONVOY, predicted=330.0), [])["text"]
    unread = {**miss, "run_queue_runs": [None] * len(CONVOY)}
    assert "switches" not in explain(unread, [])["text"]


def test_a_backlog_from_the_warm_up_when_every_run_served_more_than_its_arrivals() -> None:
    # java-threads N=300 560/s of 5 December: at 0.83 the model serves what
    # arrives (560 to 564/s on each run's own arrivals), the server served
    # 572 to 600/s, and its latency is twice the model's.
    config = "N=300 560/s cpu=2.5ms 1x5ms seq W=32 P=1"
    thr = _r("throughput_rps", 562, 588, config=config, model="java-threads", rho=0.83)
    thr |= {"measured_runs": [590.25, 600.5, 572.25], "predicted_runs": [564.3, 561.7, 559.9]}
    p50 = _r("latency_p50", 40.3, 85.2, config=config, model="java-threads", rho=0.83)
    rows = [thr, p50]
    why = explain(p50, rows)
    assert why["kind"] == "hypothesis" and why["text"].startswith("backlog from the warm-up")
    assert "590/s, 600/s, 572/s against 564/s, 562/s, 560/s" in why["text"]
    assert "warm-up tripled" in why["text"]
    # Doctored, each one way: a run that served no more than the model did;
    # the model's latency over the server's; the served rates within noise;
    # an offered load where the model need not keep up.
    one_less = thr | {"measured_runs": [590.25, 555.0, 572.25]}
    assert explain(p50, [one_less, p50])["kind"] == "unexplained"
    over = p50 | {"predicted": 90.0, "rel_error": 0.06}
    assert not explain(over, [thr, over])["text"].startswith("backlog")
    within = [thr | {"within_noise": True}, p50]
    assert not explain(p50, within)["text"].startswith("backlog")
    near = [thr | {"rho": 0.95}, p50 | {"rho": 0.95}]
    assert not explain(near[1], near)["text"].startswith("backlog")


def test_connections_not_yet_accepted_when_every_run_peaks_under_the_model() -> None:
    """A thread a connection, persistent connections, beyond saturation: a
    server whose threads peaked under the model's every run had not accepted
    every connection (the 5 December runs of N=1000 400/s). Flips: a run
    over the model, a pool, short connections, below saturation, or within
    noise get no such cause."""
    still = ["the server was still making its threads as the window opened (743 at its start)"]
    miss = {**_r("threads_peak", 1001.0, 792.7, config="N=1000 400/s W=32 P=1", rho=1.09,
                 goal=0.05),
            "predicted_runs": [1001.0, 1001.0, 1001.0], "measured_runs": [781.0, 809.0, 788.0],
            "unsteady_runs": [still, [], still]}  # fmt: skip
    why = explain(miss, [miss])
    assert why["kind"] == "cause" and "connections not yet accepted" in why["text"], why
    assert "in 3 of 3 runs 192 to 220 fewer connections" in why["text"]
    assert "2 of 3 runs' windows" in why["text"] and "*hypothesis*" in why["text"]
    # One run that accepted them all is counted apart; one over the model is no such miss.
    some = {**miss, "measured_runs": [781.0, 1001.0, 788.0]}
    assert "in 2 of 3 runs" in explain(some, [some])["text"]
    over = {**miss, "measured_runs": [781.0, 1002.0, 788.0]}
    assert "not yet accepted" not in explain(over, [over])["text"]
    for other in (
        {**miss, "model": "thread-pool"},  # a pool's threads do not count connections
        {**miss, "config": "N=1000 400/s W=32 P=1 k=1"},  # short connections come and go
        {**miss, "rho": 0.5},  # below saturation the acceptor keeps up
        {**miss, "within_noise": True},
    ):
        assert "not yet accepted" not in explain(other, [other])["text"], other


def test_connections_accepted_sooner_when_every_run_peaks_over_the_model() -> None:
    """A thread a connection, persistent connections, beyond saturation: a
    server whose threads peaked over the model's every run, and under its
    connections, accepted them sooner than the model (the 5 December runs of
    N=2000 800/s P=2); the served rates' order against the threads is read
    from the runs. Flips: a run under the model, every connection accepted,
    short connections, a pool, below saturation, within noise; the order."""
    kw = {"config": "N=2000 800/s W=32 P=2", "rho": 1.13}
    miss = {**_r("threads_peak", 1315.0, 1506.0, goal=0.05, **kw),
            "predicted_runs": [1281.0, 1327.0, 1337.0],
            "measured_runs": [1618.0, 1461.0, 1439.0]}  # fmt: skip
    served = {**_r("throughput_rps", 475.0, 234.0, goal=0.05, **kw),
              "measured_runs": [143.2, 262.0, 296.1]}  # fmt: skip
    why = explain(miss, [miss, served])
    assert why["kind"] == "hypothesis" and "accepted sooner" in why["text"], why
    assert "1,618, 1,461, 1,439 of 2,000 connections" in why["text"], why
    assert "the runs that made more threads served less" in why["text"], why
    more = {**served, "measured_runs": [296.1, 262.0, 143.2]}
    assert "the runs that made more threads served more" in explain(miss, [miss, more])["text"]
    mixed = {**served, "measured_runs": [262.0, 143.2, 296.1]}
    assert "do not follow their threads" in explain(miss, [miss, mixed])["text"]
    # Every run made a thread for every connection (the 6 December runs): the
    # server's acceptors kept up where the model's fell behind.
    kept_up = {**miss, "measured_runs": [2003.0, 2003.0, 2003.0], "measured": 2003.0}
    text = explain(kept_up, [kept_up, served])["text"]
    assert "accepted sooner" in text and "a thread for each of its 2,000 connections" in text
    assert "kept up" in text and "1,281, 1,327, 1,337" in text
    alone = explain(miss, [miss])["text"]  # no served rate measured: no order said
    assert "served less" not in alone and "served more" not in alone and "follow" not in alone
    for other in (
        {**miss, "measured_runs": [1618.0, 1461.0, 1300.0]},  # a run under the model's
        {**miss, "measured_runs": [2000.0, 1461.0, 1439.0]},  # every connection accepted
        {**miss, "config": "N=2000 800/s W=32 P=2 k=1"},  # short connections come and go
        {**miss, "model": "thread-pool"},  # a pool's threads do not count connections
        {**miss, "rho": 0.5},
        {**miss, "within_noise": True},
    ):
        assert "accepted sooner" not in explain(other, [other, served])["text"], other


def test_owners_held_longer_when_the_requests_took_longer() -> None:
    """Short connections, a child each: more children at peak than the model's,
    with the case's requests slower than the model's at both quantiles (the 5
    December runs of N=10000 60/s k=1). Flips: a quantile within noise or
    faster, fewer children than predicted, persistent connections, a pool."""
    kw = {"config": "N=10000 60/s W=32 P=1 k=1", "model": "process-per-connection",
          "rho": 0.2}  # fmt: skip
    miss = {**_r("threads_peak", 5.0, 7.0, goal=0.05, **kw), "measured_runs": [7.0, 7.0, 7.0]}
    rows = [miss, _r("latency_p50", 17.8, 19.8, **kw), _r("latency_p99", 22.3, 32.2, **kw),
            _r("memory_user", 26.6, 33.0, goal=0.15, **kw),
            _r("memory_kernel", 0.92, 1.35, goal=0.15, **kw)]  # fmt: skip
    why = explain(miss, rows)
    assert why["kind"] == "hypothesis" and why["text"].startswith("owners held longer"), why
    assert "a child of its own" in why["text"] and "p99 32.2 against 22.3 ms" in why["text"]
    assert "memory is over the model's too (user 19%, kernel 32%)" in why["text"]
    # The memory within the model's: not said.
    calm = [*rows[:3], _r("memory_user", 33.0, 33.0, within=True, **kw)]
    assert "memory" not in explain(miss, calm)["text"]
    # A quantile within noise, or faster than the model's: not this rule.
    for i, r in ((1, _r("latency_p50", 17.8, 19.8, within=True, **kw)),
                 (2, _r("latency_p99", 40.0, 32.2, **kw))):  # fmt: skip
        doctored = [*rows[:i], r, *rows[i + 1 :]]
        assert "held longer" not in explain(miss, doctored)["text"]
    under = {**miss, "measured": 4.0, "measured_runs": [4.0, 4.0, 4.0]}
    assert "held longer" not in explain(under, [under, *rows[1:]])["text"]
    for other in (
        {**miss, "config": "N=10000 60/s W=32 P=1"},  # persistent: made once
        {**miss, "model": "thread-pool"},  # a pool's threads do not follow requests
    ):
        assert "held longer" not in explain(other, [other, *rows[1:]])["text"], other
