"""A real run's processes share its nice, across the sessions they are started in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simlab.real.processes import Managed

pytestmark = [pytest.mark.real, pytest.mark.timeout(60)]


def test_a_managed_session_gets_this_process_nice() -> None:
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    with Managed(["sleep", "30"], ready_line=False, name="sleeper") as m:
        group = Path(f"/proc/{m.pid}/autogroup")
        # Linux without scheduler autogroups has no such file, and nothing to share.
        if group.exists():
            assert group.read_text().split()[-1] == str(nice)
        assert os.getsid(m.pid) == m.pid, "a session of its own, as every lab process"
