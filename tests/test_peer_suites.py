"""Peer test suites ported to the simulator: the Linux Test Project's madvise tests
(testcases/kernel/syscalls/madvise/) and the kernel's KSM selftests
(tools/testing/selftests/mm/ksm_functional_tests.c), where the simulator can express them.

Each test names the file and the case it ports. Sizes are the originals' where the simulator
is quick enough (ksm_functional_tests.c maps 2 MiB); LTP's temporary files are simulated files.
"""

from __future__ import annotations

import pytest
from helpers import ANON, RW, E, P, errno_of, mapfix

import ksmbook as kb
from ksmbook.kernel import Process

A = 0x10000000
MIB = 1 << 20


def _range_maps_duplicates(p: Process, addr: int, size: int) -> bool:
    """ksm_functional_tests.c range_maps_duplicates(): do two pages of the range map the same
    physical page (pagemap PFNs equal)?"""
    pages = [p.mm.ptes.get(v) for v in range(addr >> 12, (addr + size) >> 12)]
    ids = [pg.id for pg in pages if pg is not None]
    return len(ids) != len(set(ids))


def _mmap_and_merge_range(k: kb.Kernel, p: Process, val: int, size: int,
                          prctl: bool = False) -> int:
    """ksm_functional_tests.c mmap_and_merge_range(): map, fill every page with `val`, enable
    KSM on the range (MADV_MERGEABLE or PR_SET_MEMORY_MERGE), run ksmd for two full scans."""
    if prctl:
        p.prctl(kb.PR_SET_MEMORY_MERGE, 1)
    addr = p.mmap(size, RW, ANON)
    p.write_pages(addr, [val] * (size // P))
    if not prctl:
        p.madvise(addr, size, kb.MADV_MERGEABLE)
    k.sysfs["pages_to_scan"] = size // P
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    return addr


@pytest.fixture
def modern() -> tuple[kb.Kernel, Process]:
    k = kb.Kernel("modern")
    return k, k.spawn()


# -- kernel selftests: tools/testing/selftests/mm/ksm_functional_tests.c ---------------------


def test_ksm_functional_unmerge(modern: tuple[kb.Kernel, Process]) -> None:
    """test_unmerge(): 2 MiB of 0xcf pages merge; MADV_UNMERGEABLE leaves no duplicates."""
    k, p = modern
    addr = _mmap_and_merge_range(k, p, 0xCF, 2 * MIB)
    assert _range_maps_duplicates(p, addr, 2 * MIB)
    assert p.madvise(addr, 2 * MIB, kb.MADV_UNMERGEABLE) == 0
    assert not _range_maps_duplicates(p, addr, 2 * MIB)


def test_ksm_functional_unmerge_zero_pages(modern: tuple[kb.Kernel, Process]) -> None:
    """test_unmerge_zero_pages(): with use_zero_pages, zero pages become KSM zero pages
    (ksm_zero_pages counts them); unmerging half, then writing the other half, leaves none."""
    k, p = modern
    k.sysfs["use_zero_pages"] = 1
    size = 2 * MIB
    addr = _mmap_and_merge_range(k, p, 0, size)
    assert k.sysfs["ksm_zero_pages"] == size // P
    assert p.madvise(addr, size // 2, kb.MADV_UNMERGEABLE) == 0
    assert k.sysfs["ksm_zero_pages"] == size // 2 // P
    p.write_pages(addr + size // 2, range(1, size // 2 // P + 1))
    assert k.sysfs["ksm_zero_pages"] == 0
    assert not _range_maps_duplicates(p, addr, size)


def test_ksm_functional_unmerge_discarded(modern: tuple[kb.Kernel, Process]) -> None:
    """test_unmerge_discarded(): MADV_DONTNEED on half (pte_none() entries), then
    MADV_UNMERGEABLE on all of it succeeds and leaves no duplicates."""
    k, p = modern
    addr = _mmap_and_merge_range(k, p, 0xCF, 2 * MIB)
    assert p.madvise(addr, MIB, kb.MADV_DONTNEED) == 0
    assert p.madvise(addr, 2 * MIB, kb.MADV_UNMERGEABLE) == 0
    assert not _range_maps_duplicates(p, addr, 2 * MIB)


def test_ksm_functional_prctl(modern: tuple[kb.Kernel, Process]) -> None:
    """test_prctl(): PR_SET_MEMORY_MERGE 1 then PR_GET_MEMORY_MERGE is 1; set 0, get 0."""
    _, p = modern
    assert p.prctl(kb.PR_SET_MEMORY_MERGE, 1) == 0
    assert p.prctl(kb.PR_GET_MEMORY_MERGE) == 1
    assert p.prctl(kb.PR_SET_MEMORY_MERGE, 0) == 0
    assert p.prctl(kb.PR_GET_MEMORY_MERGE) == 0


def test_ksm_functional_prctl_fork(modern: tuple[kb.Kernel, Process]) -> None:
    """test_prctl_fork(): the PR_SET_MEMORY_MERGE value is inherited by a forked child."""
    _, p = modern
    p.prctl(kb.PR_SET_MEMORY_MERGE, 1)
    child = p.fork()
    assert child.prctl(kb.PR_GET_MEMORY_MERGE) == 1


def test_ksm_functional_prctl_unmerge(modern: tuple[kb.Kernel, Process]) -> None:
    """test_prctl_unmerge(): merged through PR_SET_MEMORY_MERGE, then PR_SET_MEMORY_MERGE 0
    unmerges everything."""
    k, p = modern
    addr = _mmap_and_merge_range(k, p, 0xCF, 2 * MIB, prctl=True)
    assert _range_maps_duplicates(p, addr, 2 * MIB)
    assert p.prctl(kb.PR_SET_MEMORY_MERGE, 0) == 0
    assert not _range_maps_duplicates(p, addr, 2 * MIB)


# -- LTP: testcases/kernel/syscalls/madvise/ ------------------------------------------------


@pytest.mark.parametrize("profile", ["2.6.32", "modern"])
def test_ltp_madvise02_error_cases(profile: str) -> None:
    """madvise02.c (the 2013 version): (1) start not page aligned: EINVAL; (2) advice 1212:
    EINVAL; (3) MADV_DONTNEED on mlocked pages: EINVAL; (4) a range over an unmapped part:
    ENOMEM; (5) MADV_WILLNEED on anonymous memory: EBADF (2.6.32; 6.x swaps in: 0)."""
    k = kb.Kernel(profile)
    p = k.spawn()
    f = k.create_file("madvise02-out", 16 * P)
    size = 16 * P
    file = p.mmap(size, kb.PROT_READ, kb.MAP_SHARED, file=f)
    assert errno_of(lambda: p.madvise(file + 100, size, kb.MADV_NORMAL)) == E.EINVAL
    assert errno_of(lambda: p.madvise(file, size, 1212)) == E.EINVAL
    locked = p.mmap(size, kb.PROT_READ, kb.MAP_SHARED | kb.MAP_LOCKED, file=f)
    assert errno_of(lambda: p.madvise(locked, size, kb.MADV_DONTNEED)) == E.EINVAL
    p.munmap(locked, size)
    p.munmap(file, size)
    low = p.mmap(size // 2, kb.PROT_READ, kb.MAP_SHARED, file=f)
    high = p.mmap(size // 2, kb.PROT_READ, kb.MAP_SHARED, file=f, offset=size // 2)
    low, high = min(low, high), max(low, high)
    p.munmap(high, size // 2)
    assert errno_of(lambda: p.madvise(low, high - low + P, kb.MADV_NORMAL)) == E.ENOMEM
    p.munmap(low, size // 2)
    heap = p.mmap(5 * P, RW, ANON)
    want = E.EBADF if profile == "2.6.32" else 0
    assert errno_of(lambda: p.madvise(heap, 5 * P, kb.MADV_WILLNEED)) == want


@pytest.mark.parametrize("advice", [kb.MADV_NORMAL, kb.MADV_RANDOM, kb.MADV_SEQUENTIAL,
                                    kb.MADV_WILLNEED, kb.MADV_DONTNEED])
def test_ltp_madvise01_file_advices(advice: int) -> None:
    """madvise01.c: each of MADV_NORMAL, RANDOM, SEQUENTIAL, WILLNEED and DONTNEED on a
    private mapping of a file succeeds."""
    k = kb.Kernel("modern")
    p = k.spawn()
    f = k.create_file("madvise01", 16 * P)
    addr = p.mmap(16 * P, RW, kb.MAP_PRIVATE, file=f)
    assert p.madvise(addr, 16 * P, advice) == 0


def test_ltp_madvise09_madv_free_pages_are_not_freed_immediately() -> None:
    """madvise09.c: MADV_FREE pages keep their contents until memory pressure; reclaim then
    frees the pages that were not written to since, and those read zeros; pages written
    after MADV_FREE keep the new data."""
    k = kb.Kernel("modern")
    p = k.spawn()
    pages = 8
    addr = p.mmap(pages * P, RW, ANON)
    p.write_pages(addr, [0xAA] * pages)
    assert p.madvise(addr, pages * P, kb.MADV_FREE) == 0
    assert [p.read_page(addr + i * P) for i in range(pages)] == [0xAA] * pages
    p.write_pages(addr, [0xBB, 0xBB])              # the first two are dirtied again
    assert k.reclaim() == pages - 2
    assert [p.read_page(addr + i * P) for i in range(pages)] == [0xBB] * 2 + [0] * 6
    assert k.reclaim() == 0


def test_madv_free_skips_shared_pages_and_is_einval_on_files() -> None:
    """madvise_free_pte_range(): a page mapped twice (after fork) is not marked; MADV_FREE on
    a file mapping is EINVAL (madvise_free_single_vma(): !vma_is_anonymous())."""
    k = kb.Kernel("modern")
    p = k.spawn()
    addr = p.mmap(2 * P, RW, ANON)
    p.write_pages(addr, [1, 2])
    child = p.fork()
    assert p.madvise(addr, 2 * P, kb.MADV_FREE) == 0
    assert k.reclaim() == 0
    assert [child.read_page(addr), p.read_page(addr + P)] == [1, 2]
    f = k.create_file("data.bin", 2 * P)
    fm = p.mmap(2 * P, RW, kb.MAP_PRIVATE, file=f)
    assert errno_of(lambda: p.madvise(fm, 2 * P, kb.MADV_FREE)) == E.EINVAL


def test_ltp_madvise10_wipeonfork() -> None:
    """madvise10.c: after MADV_WIPEONFORK the child sees zeros; after MADV_KEEPONFORK it sees
    the parent's data; WIPEONFORK on a shared mapping is EINVAL."""
    k = kb.Kernel("modern")
    p = k.spawn()
    addr = p.mmap(4 * P, RW, ANON)
    p.write_pages(addr, [9] * 4)
    assert p.madvise(addr, 4 * P, kb.MADV_WIPEONFORK) == 0
    assert [p.fork().read_page(addr + i * P) for i in range(4)] == [0] * 4
    assert p.madvise(addr, 4 * P, kb.MADV_KEEPONFORK) == 0
    assert [p.fork().read_page(addr + i * P) for i in range(4)] == [9] * 4
    shared = p.mmap(P, RW, kb.MAP_SHARED | kb.MAP_ANONYMOUS)
    assert errno_of(lambda: p.madvise(shared, P, kb.MADV_WIPEONFORK)) == E.EINVAL


def test_madv_free_before_2632_does_not_exist() -> None:
    p = kb.Kernel("2.6.32").spawn()
    mapfix(p, A, P)
    assert errno_of(lambda: p.madvise(A, P, kb.MADV_FREE)) == E.EINVAL


def test_reclaim_statement() -> None:
    import ksmbook.scenario as sc

    s = sc.parse("kernel modern\nmap A 4p rw private anon\nwrite A 1 2 3 4\n"
                 "madvise A 4p FREE\nwrite A 5\nreclaim\nread A\nread A+1p\n")
    assert sc.parse(sc.format_scenario(s)) == s
    assert [r.outcome() for r in sc.run(s)][-3:] == ["3", "5", "0"]
