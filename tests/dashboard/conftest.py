"""The dashboard's tests share one process with the rest of a run."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _unfreeze_at_the_end() -> Iterator[None]:
    """The dashboard freezes what is alive after its first page, once per process
    (``simlab.dashboard._freeze``): right for a server, which lives as long as
    those objects. A test process goes on after its last test, and
    ``gc.get_referrers`` no longer sees frozen referrers: Hypothesis, imported
    by its plugin at the end of a run that collected none of its tests, then
    warns (an error here) that trio's module-level Random has no referrer. So
    the frozen objects go back to the collector when the session ends."""
    yield
    gc.unfreeze()
