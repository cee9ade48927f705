"""Ciw on the same M/M/c (M/M/100, lambda = 90/s, mean service 1 s).

Runs until N customers have arrived; prints the mean wait of those served.
Run: ``python ciw_mmc.py N``.
"""

import sys

import ciw

LAM, MEAN_S, SERVERS, SEED = 90.0, 1.0, 100, 1


def main(n: int) -> None:
    net = ciw.create_network(
        arrival_distributions=[ciw.dists.Exponential(rate=LAM)],
        service_distributions=[ciw.dists.Exponential(rate=1 / MEAN_S)],
        number_of_servers=[SERVERS],
    )
    ciw.seed(SEED)
    sim = ciw.Simulation(net)
    sim.simulate_until_max_customers(n, method="Arrive")
    waits = [r.waiting_time for r in sim.get_all_records()]
    print(f"{len(waits)} customers, mean wait {sum(waits) / max(len(waits), 1):.6f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]))
