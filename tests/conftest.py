"""Shared fixtures: a simulated kernel per profile, helpers to map at fixed addresses and read
the layout back, and the live-kernel skip logic.

Live tests are marked ``@pytest.mark.live`` and request the ``live_kernel`` fixture, which skips
them with the reason `ksmbook.live.available()` gives (not Linux/x86-64, no KSM, no worker).
"""

from __future__ import annotations

import errno as E  # E.EINVAL, E.ENOMEM, ... for the tests
from collections.abc import Callable, Iterator

import pytest

import ksmbook as kb
from ksmbook.kernel import Process

__all__ = ["A", "ANON", "E", "P", "RW", "VALID", "bounds", "errno_of", "layout", "mapfix",
           "state"]

P = kb.PAGE_SIZE
RW = kb.PROT_READ | kb.PROT_WRITE
ANON = kb.MAP_PRIVATE | kb.MAP_ANONYMOUS
#: A low, free address for MAP_FIXED mappings (far from the top-down mmap area).
A = 0x10000000
#: Advice values each kernel accepts besides MERGEABLE/UNMERGEABLE (reference §1 and §4),
#: written out here rather than taken from the profile, so that a wrong profile fails.
VALID = {"seed": frozenset({0, 1, 2, 3, 4, 9, 10, 11}),
         "2.6.32": frozenset({0, 1, 2, 3, 4, 9, 10, 11}),
         "modern": frozenset({0, 1, 2, 3, 4, 8, 9, 10, 11, *range(14, 26), 102, 103})}


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


def mapfix(p: Process, start: int, length: int, prot: int = RW, flags: int = ANON,
           file: kb.File | None = None, offset: int = 0) -> int:
    """mmap(start, length, prot, flags | MAP_FIXED); returns the address."""
    got = p.mmap(length, prot, flags | kb.MAP_FIXED, addr=start, file=file, offset=offset)
    assert got == start
    return got


def layout(p: Process) -> list[tuple[int, int, kb.VM]]:
    """The VMAs as (start, end, flags)."""
    return [(v.start, v.end, v.flags) for v in p.vmas]


def bounds(p: Process) -> list[tuple[int, int]]:
    """The VMAs as (start, end)."""
    return [(v.start, v.end) for v in p.vmas]


def errno_of(call: Callable[[], object]) -> int:
    """0 if the call returns, else the errno of the OSError it raises."""
    try:
        call()
    except OSError as e:
        assert e.errno is not None
        return e.errno
    return 0


def state(p: Process) -> tuple:
    """Everything a failed call must leave unchanged: VMAs (with file, pgoff, anon_vma),
    the mm flags and the page table."""
    return (tuple((v.start, v.end, v.flags, v.pgoff, v.file, v.anon_vma) for v in p.vmas),
            p.mm_flags, tuple(p.mm.ptes.items()))



@pytest.fixture(scope="session")
def live_kernel() -> Iterator[None]:
    """Skip unless live replay works here (Linux x86-64 with KSM and a worker process)."""
    from ksmbook import live

    ok, why = live.available()
    if not ok:
        pytest.skip(f"live kernel unavailable: {why}")
    yield None
