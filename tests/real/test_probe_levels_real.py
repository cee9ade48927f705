"""A memory cgroup's task lists count a real tree's threads and processes as
the probe's samples of the tree do (root, cgroup memory controller)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from simlab.real.kernel import KernelAccount
from simlab.real.probe import Probe

pytestmark = [pytest.mark.real, pytest.mark.timeout(60)]

# A server-like tree: four threads waiting, two children asleep, and one
# child that has exited and is never reaped (a zombie: no thread).
TREE = """
import os, threading, time
stop = threading.Event()
for _ in range(4):
    threading.Thread(target=stop.wait, daemon=True).start()
for _ in range(2):
    if os.fork() == 0:
        time.sleep(30)
        os._exit(0)
pid = os.fork()
if pid == 0:
    os._exit(0)
# Until the third child has exited, left unreaped (WNOWAIT): a zombie.
os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
print("ready", flush=True)
time.sleep(30)
"""


def test_the_groups_levels_are_the_probes() -> None:
    account, why = KernelAccount.create()
    if account is None:
        pytest.fail(f"this test needs a memory cgroup: {why}")
    tree = subprocess.Popen(
        [sys.executable, "-c", TREE],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=account.preexec,  # noqa: PLW1509  (async-signal-safe: KernelAccount.preexec)
        start_new_session=True,
    )
    try:
        assert tree.stdout is not None
        assert tree.stdout.readline().strip() == "ready"
        seen = Probe(tree.pid).sample(full=False).values
        levels = account.levels()
    finally:
        os.killpg(tree.pid, signal.SIGKILL)
        tree.wait()
        if tree.stdout is not None:
            tree.stdout.close()
        account.close()
    assert (seen["threads"], seen["processes"]) == (7, 3)
    assert levels == (7, 3)
