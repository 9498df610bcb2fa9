"""Fixtures: a simulated kernel per profile, and the live-kernel gates.

Shared helper functions live in ``tests/helpers.py`` (``from helpers import ...``).

Live tests are marked ``@pytest.mark.live`` and request ``live_kernel`` (a worker process can
map, advise and read smaps back) or ``live_ksmd`` (this machine's ksmd can be driven: root and
writable /sys/kernel/mm/ksm). Each gate is evaluated only when a test requests it, so a run with
``-m "not live"`` never starts a worker and never opens anything under /sys/kernel/mm/ksm.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import ksmbook as kb
from ksmbook.kernel import Process


@pytest.fixture(params=kb.PROFILES)
def profile(request: pytest.FixtureRequest) -> str:
    """Each profile in turn: "seed", "2.6.32", "modern"."""
    return str(request.param)


@pytest.fixture
def kernel(profile: str) -> kb.Kernel:
    """A kernel of the profile, CONFIG_KSM=y."""
    return kb.Kernel(profile=profile, config_ksm=True)


@pytest.fixture
def proc(kernel: kb.Kernel) -> Process:
    """A process with an empty address space."""
    return kernel.spawn()


@pytest.fixture(scope="session")
def live_kernel() -> Iterator[None]:
    """Skip unless live replay works here (Linux x86-64 with KSM and a worker process)."""
    from ksmbook import live

    ok, why = live.available()
    if not ok:
        pytest.skip(f"live kernel unavailable: {why}")
    yield None


@pytest.fixture(scope="session")
def live_ksmd(live_kernel: None) -> Iterator[None]:
    """Skip unless this machine's ksmd can be driven (root, writable /sys/kernel/mm/ksm)."""
    from ksmbook.live import ksmd as live_ksmd

    ok, why = live_ksmd.ksm_available()
    if not ok:
        pytest.skip(f"live ksmd unavailable: {why}")
    yield None


@pytest.fixture
def ksm_to_ourselves(live_ksmd: None) -> Iterator[None]:
    """Hold the live-ksmd lock for the whole test, so that its before and after readings of the
    machine-wide knobs and counters see no other test's session (another pytest-xdist worker)."""
    from ksmbook.live import ksmd as live_ksmd

    with live_ksmd._global_lock():
        yield None
