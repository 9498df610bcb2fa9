"""Fixtures: a simulated kernel per profile, and the live-kernel gates.

Shared helper functions live in ``tests/helpers.py`` (``from helpers import ...``).

Live tests are marked ``@pytest.mark.live`` and request ``live_kernel`` (a worker process can
map, advise and read smaps back) or ``live_ksmd`` (this machine's ksmd can be driven: root and
writable /sys/kernel/mm/ksm). Each gate is evaluated only when a test requests it, so a run with
``-m "not live"`` never starts a worker and never opens anything under /sys/kernel/mm/ksm.
A test that uses a live fixture without the ``live`` mark stops the collection (see
``pytest_collection_modifyitems``).

The markers that ``make test-fast`` leaves out (pyproject.toml registers them): ``live``,
``browser`` (Chromium), ``nbgrader`` (nbgrader's own commands on a course folder), ``hub``
(a JupyterHub) and ``slow`` (a nested pytest, a fresh interpreter per check, or a notebook
run). The browser, nbgrader and hub modules are marked here, by file name, so that a new
module of those kinds is marked too.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import ksmbook as kb
from ksmbook.kernel import Process

#: ``pytester`` runs the checks below on made-up test files (tests/test_conftest.py).
pytest_plugins = ["pytester"]

#: Fixtures that reach this machine's kernel: a test using one (directly or through another
#: fixture) must be marked ``live``.
LIVE_FIXTURES = frozenset({"live_kernel", "live_ksmd", "ksm_to_ourselves"})
#: Modules marked by kind (fnmatch patterns on the file name).
MODULE_MARKS = {
    "browser": ("test_browser.py", "test_html_book.py"),
    "nbgrader": ("test_classroom_nbgrader.py", "test_classroom_course.py",
                 "test_classroom_readme.py", "test_grading_*.py"),
    "hub": ("test_classroom_hub.py", "test_hub_*.py"),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the browser, nbgrader and hub modules; refuse a live fixture without ``live``."""
    import fnmatch

    unmarked = []
    for item in items:
        name = item.path.name
        for mark, patterns in MODULE_MARKS.items():
            if any(fnmatch.fnmatch(name, p) for p in patterns):
                item.add_marker(mark)
        used = LIVE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if used and item.get_closest_marker("live") is None:
            unmarked.append(f"{item.nodeid} (uses {', '.join(sorted(used))})")
    if unmarked:
        raise pytest.UsageError("tests that use a live fixture must be marked "
                                "@pytest.mark.live:\n  " + "\n  ".join(unmarked))


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

