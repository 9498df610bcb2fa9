"""Peer test suites ported to the simulator: the Linux Test Project's madvise tests
(testcases/kernel/syscalls/madvise/) and the kernel's KSM selftests
(tools/testing/selftests/mm/ksm_functional_tests.c and ksm_tests.c), where the simulator can
express them.

Each test names the file and the case it ports. Sizes are the originals' where the simulator
is quick enough (ksm_functional_tests.c maps 2 MiB); LTP's temporary files are simulated files.

Not ported, because the simulator has no way to express them: LTP madvise06.c (swap-in under a
memory cgroup limit and SwapCached), madvise11.c (MADV_SOFT_OFFLINE racing page allocation:
no memory-failure handling), madvise07.c beyond its CONFIG_MEMORY_FAILURE=n path, madvise08.c's
core dump itself (its VMA flags are ported), and ksm_tests.c -N (NUMA: the simulated machine has
one node, where the original skips too); the timings of ksm_tests.c -P, -H, -D and -C are
replaced by the counters and faults they imply.
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
    want = E.EBADF if p.kernel.profile.willneed_anon_ebadf else 0
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


# -- LTP madvise03-08, 12 -------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["seed", "2.6.32", "modern"])
def test_ltp_madvise03_dontneed_zero_fills(profile: str) -> None:
    """madvise03.c: after MADV_DONTNEED an anonymous private mapping reads zeros
    (zero-fill-on-demand); MAP_SIZE is 8 KiB."""
    p = kb.Kernel(profile).spawn()
    addr = p.mmap(2 * P, RW, ANON)
    p.write_pages(addr, [1, 1])
    assert p.madvise(addr, 2 * P, kb.MADV_DONTNEED) == 0
    assert [p.read_page(addr), p.read_page(addr + P)] == [0, 0]


@pytest.mark.parametrize("profile", ["2.6.32", "modern"])
def test_ltp_madvise04_dontdump_dodump_on_a_shared_file(profile: str) -> None:
    """madvise04.c (the 2012 version): MADV_DONTDUMP then MADV_DODUMP on a read-only
    MAP_SHARED mapping of a 40 KiB file both succeed (3.4 and later); 2.6.32 has neither
    advice (EINVAL; the original is TCONF there)."""
    k = kb.Kernel(profile)
    p = k.spawn()
    f = k.create_file("madvise04-out", 10 * P)
    addr = p.mmap(10 * P, kb.PROT_READ, kb.MAP_SHARED, file=f)
    if kb.MADV_DONTDUMP not in k.profile.advices:
        assert errno_of(lambda: p.madvise(addr, 10 * P, kb.MADV_DONTDUMP)) == E.EINVAL
        return
    assert p.madvise(addr, 10 * P, kb.MADV_DONTDUMP) == 0
    assert "dd" in p.maps().split("VmFlags: ")[1].split()
    assert p.madvise(addr, 10 * P, kb.MADV_DODUMP) == 0
    assert "dd" not in p.maps().split("VmFlags: ")[1].split()


@pytest.mark.parametrize("profile", ["2.6.32", "modern"])
def test_ltp_madvise05_willneed_after_mprotect_none(profile: str) -> None:
    """madvise05.c: 32 MiB of PROT_READ MAP_POPULATE anonymous memory, mprotect(PROT_NONE),
    then MADV_WILLNEED: 0 (the regression of ee53664bda16 was an Oops). 2.6.32 answers EBADF
    for anonymous memory, the original's TCONF ("CONFIG_SWAP=n")."""
    p = kb.Kernel(profile).spawn()
    size = 32 * MIB
    addr = p.mmap(size, kb.PROT_READ, ANON | kb.MAP_POPULATE)
    assert p.mprotect(addr, size, kb.PROT_NONE) == 0
    want = E.EBADF if p.kernel.profile.willneed_anon_ebadf else 0
    assert errno_of(lambda: p.madvise(addr, size, kb.MADV_WILLNEED)) == want


def test_ltp_madvise07_hwpoison_without_memory_failure() -> None:
    """madvise07.c: MADV_HWPOISON (100) on a written page; the simulated kernels have no
    CONFIG_MEMORY_FAILURE, so madvise_behavior_valid() refuses it: EINVAL, the original's
    TCONF ("CONFIG_MEMORY_FAILURE probably not set in kconfig")."""
    for profile in ("2.6.32", "modern"):
        p = kb.Kernel(profile).spawn()
        addr = p.mmap(P, RW, ANON)
        p.write_pages(addr, [ord("L")])
        assert errno_of(lambda q=p, a=addr: q.madvise(a, P, 100)) == E.EINVAL, profile


def test_ltp_madvise08_dontdump_in_the_child_only() -> None:
    """madvise08.c: the child marks the parent's written memory MADV_DONTDUMP (its core dump
    then lacks it) and, in the second case, MADV_DODUMP again; the flag is the child's VMA's
    (smaps dd), the parent's VMA keeps none."""
    k = kb.Kernel("modern")
    p = k.spawn()
    size = 0x502
    addr = p.mmap(size, RW, ANON)
    p.write_pages(addr, [ord("y")])
    child = p.fork()
    assert child.madvise(addr, size, kb.MADV_DONTDUMP) == 0
    assert "dd" in child.maps().split("VmFlags: ")[1].split()
    assert "dd" not in p.maps().split("VmFlags: ")[1].split()
    assert child.madvise(addr, size, kb.MADV_DODUMP) == 0
    assert "dd" not in child.maps().split("VmFlags: ")[1].split()


def test_ltp_madvise12_guard_pages() -> None:
    """madvise12.c: memory zeroed, MADV_GUARD_INSTALL, a write in a child is SIGSEGV (the
    simulator's write raises EFAULT saying so); MADV_GUARD_REMOVE; the content is unchanged
    (zeros) and a new child may write it."""
    k = kb.Kernel("modern")
    p = k.spawn()
    size = 16 * P
    addr = p.mmap(size, RW, ANON)
    p.write_pages(addr, [0] * 16)
    assert p.madvise(addr, size, kb.MADV_GUARD_INSTALL) == 0
    child = p.fork()
    with pytest.raises(OSError) as e:
        child.write_pages(addr, [ord("a")] * 16)
    assert e.value.errno == E.EFAULT and "SIGSEGV" in str(e.value)
    assert p.madvise(addr, size, kb.MADV_GUARD_REMOVE) == 0
    assert {p.read_page(addr + i * P) for i in range(16)} == {0}
    p.fork().write_pages(addr, [ord("b")] * 16)   # no signal


# -- kernel selftests: tools/testing/selftests/mm/ksm_tests.c ------------------------------


def _ksm_tests_kernel(profile: str, page_count: int = 10) -> kb.Kernel:
    """main(): run=2, sleep_millisecs=0, merge_across_nodes=1, pages_to_scan=page_count."""
    k = kb.Kernel(profile)
    k.sysfs["run"] = 2
    k.sysfs["sleep_millisecs"] = 0
    if "merge_across_nodes" in k.sysfs:
        k.sysfs["merge_across_nodes"] = 1
    k.sysfs["pages_to_scan"] = page_count
    return k


def _allocate_memory(p: Process, prot: int, data: int, pages: int) -> int:
    """allocate_memory(): mmap PROT_WRITE, memset(data), mprotect(prot)."""
    addr = p.mmap(pages * P, kb.PROT_WRITE, ANON)
    p.write_pages(addr, [data] * pages)
    assert p.mprotect(addr, pages * P, prot) == 0
    return addr


def _ksm_merge_pages(k: kb.Kernel, p: Process, merge_type: str, addr: int, size: int) -> None:
    """ksm_merge_pages(): MADV_MERGEABLE or PR_SET_MEMORY_MERGE, run=1, two full scans."""
    if merge_type == "madvise":
        assert p.madvise(addr, size, kb.MADV_MERGEABLE) == 0
    else:
        assert p.prctl(kb.PR_SET_MEMORY_MERGE, 1) == 0
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)


def _assert_ksm_pages_count(k: kb.Kernel, dupl_page_count: int) -> bool:
    """assert_ksm_pages_count(), with max_page_sharing (2.6.32: none, i.e. unbounded)."""
    shared, sharing = int(k.sysfs["pages_shared"]), int(k.sysfs["pages_sharing"])
    m = int(k.sysfs["max_page_sharing"]) if "max_page_sharing" in k.sysfs else 1 << 62
    if dupl_page_count % m in (0, 1):
        return shared == dupl_page_count // m and sharing == shared * (m - 1)
    return shared == dupl_page_count // m + 1 and sharing == dupl_page_count - shared


MERGE_CASES = [("modern", "madvise"), ("modern", "prctl"), ("2.6.32", "madvise")]


@pytest.mark.parametrize(("profile", "merge_type"), MERGE_CASES)
@pytest.mark.parametrize(("prot", "page_count"), [(RW, 10), (kb.PROT_READ, 10), (RW, 257),
                                                  (RW, 600)])
def test_ksm_tests_check_ksm_merge(profile: str, merge_type: str, prot: int,
                                   page_count: int) -> None:
    """check_ksm_merge() (-M, with -a rw / -a r and -p N): page_count pages of '*' merge into
    ceil(N / max_page_sharing) KSM pages, a remainder of 1 left unmerged."""
    k = _ksm_tests_kernel(profile, page_count)
    p = k.spawn()
    addr = _allocate_memory(p, prot, ord("*"), page_count)
    _ksm_merge_pages(k, p, merge_type, addr, page_count * P)
    assert _assert_ksm_pages_count(k, page_count)


@pytest.mark.parametrize(("profile", "merge_type"), MERGE_CASES)
def test_ksm_tests_check_ksm_unmerge(profile: str, merge_type: str) -> None:
    """check_ksm_unmerge() (-U): two merged pages, one byte changed in each; after one more
    full scan no page is merged (pages_shared and pages_sharing 0)."""
    k = _ksm_tests_kernel(profile)
    p = k.spawn()
    addr = _allocate_memory(p, RW, ord("*"), 2)
    _ksm_merge_pages(k, p, merge_type, addr, 2 * P)
    assert _assert_ksm_pages_count(k, 2)
    p.write_pages(addr, [ord("-"), ord("+")])
    k.ksmd.full_scans(1)
    assert _assert_ksm_pages_count(k, 0)


@pytest.mark.parametrize("merge_type", ["madvise", "prctl"])
@pytest.mark.parametrize("use_zero_pages", [0, 1])
def test_ksm_tests_check_ksm_zero_page_merge(merge_type: str, use_zero_pages: int) -> None:
    """check_ksm_zero_page_merge() (-Z, -z 0/1): pages memset to 0 merge as any others with
    use_zero_pages 0, and are replaced by the zero page (no KSM page counted) with 1."""
    k = _ksm_tests_kernel("modern")
    k.sysfs["use_zero_pages"] = use_zero_pages
    p = k.spawn()
    addr = _allocate_memory(p, RW, 0, 10)
    _ksm_merge_pages(k, p, merge_type, addr, 10 * P)
    assert _assert_ksm_pages_count(k, 0 if use_zero_pages else 10)
    assert k.sysfs["ksm_zero_pages"] == (10 if use_zero_pages else 0)


def test_ksm_tests_merge_time_and_unmerge_time() -> None:
    """ksm_merge_time() (-P -s 1) and ksm_unmerge_time() (-D -s 1): 1 MiB of '*' merges (256
    pages: one full KSM page), then MADV_UNMERGEABLE unmerges all of it; the original times
    both, the port checks what they did."""
    k = _ksm_tests_kernel("modern")
    p = k.spawn()
    addr = _allocate_memory(p, RW, ord("*"), 256)
    _ksm_merge_pages(k, p, "madvise", addr, MIB)
    assert _assert_ksm_pages_count(k, 256)
    assert _range_maps_duplicates(p, addr, MIB)
    assert p.madvise(addr, MIB, kb.MADV_UNMERGEABLE) == 0
    assert not _range_maps_duplicates(p, addr, MIB)


def test_ksm_tests_cow_time() -> None:
    """ksm_cow_time() (-C): 4000 pages; a write to every other page before merging takes no
    fault; 2000 pairs of distinct duplicates merge (2000 KSM pages, 2000 sharing); then a
    write to the first page of each pair copies a KSM page (do_wp_page -> wp_page_copy)."""
    from ksmbook.trace import Fault

    k = _ksm_tests_kernel("modern")
    p = k.spawn()
    n = 4000
    addr = _allocate_memory(p, RW, ord("*"), n)
    p.write_pages(addr, [ord("-")])
    assert p.last_trace.events[0].detail is Fault.NONE  # type: ignore[union-attr]
    for i in range(0, n - 1, 2):
        p.write_pages(addr + i * P, [1000 + i, 1000 + i])   # memset('+', i / 2 + 1): distinct
    _ksm_merge_pages(k, p, "madvise", addr, n * P)
    assert (k.sysfs["pages_shared"], k.sysfs["pages_sharing"]) == (2000, 2000)
    faults = set()
    for i in range(0, n - 1, 2):
        p.write_pages(addr + i * P, [ord("-")])
        faults.add(p.last_trace.events[0].detail)  # type: ignore[union-attr]
    assert faults == {Fault.KSM_COPY}


def test_ksm_tests_merge_hugepages() -> None:
    """ksm_merge_hugepages_time() (-H -s 4): 4 MiB aligned, MADV_HUGEPAGE, each 2 MiB touched
    by allocate_transhuge() (both huge), memset('*'), merged by madvise and two full scans at
    pages_to_scan 10. The original prints the time; the counters are those of this machine's
    6.18 for the same steps (tests/test_thp.py replays them live): the huge pages are split,
    1019 pages share 4 KSM pages (max_page_sharing 256), one page of the first huge page is
    left volatile (its merge was tried while ksmd held two of its subpages)."""
    from ksmbook.thp import anon_huge_pages_kb

    k = _ksm_tests_kernel("modern")
    p = k.spawn()
    a = 0x7FFFE0000000
    p.mmap(4 * MIB, RW, ANON | kb.MAP_NORESERVE | kb.MAP_FIXED, addr=a)
    assert p.madvise(a, 4 * MIB, kb.MADV_HUGEPAGE) == 0
    p.write_pages(a, [1])
    p.write_pages(a + 2 * MIB, [1])
    assert anon_huge_pages_kb(p.mm) == 4096                   # n_huge_pages 2, n_normal 0
    p.write_pages(a, [42] * 1024)
    _ksm_merge_pages(k, p, "madvise", a, 4 * MIB)
    assert anon_huge_pages_kb(p.mm) == 0
    counters = k.ksmd.counters()
    assert [counters[n] for n in ("pages_shared", "pages_sharing", "pages_unshared",
                                  "pages_volatile")] == [4, 1019, 0, 1]
