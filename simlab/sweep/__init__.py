"""What-if sweeps over any workload, platform or architecture option.

``load_spec`` reads and checks a sweep file (``simlab.sweep.spec``);
``sweep`` runs it in local processes or on Dask, resumably
(``simlab.sweep.run``).
"""

from __future__ import annotations

from simlab.sweep.run import SweepResult, run_one, sweep
from simlab.sweep.spec import SweepError, SweepSpec, load_spec, parse_spec

__all__ = ["SweepError", "SweepResult", "SweepSpec", "load_spec", "parse_spec", "run_one", "sweep"]
