"""Golden tests for the seed and 2.6.32 kernels: the worked examples of the reference
(kernel-semantics.md §1-§5, §7), checked as exact maps text or VMA tuples.

Every expected value below was derived by hand from the rules of the 2.6.32 sources the
reference cites (mm/madvise.c sys_madvise() and madvise_behavior(), mm/mmap.c vma_merge()
and split_vma(), mm/ksm.c ksm_madvise()), not from the simulator's output.
"""

from __future__ import annotations

import pytest
from conftest import ANON, RW, E, P, errno_of, mapfix

import ksmbook as kb
from ksmbook.kernel import Process

pytestmark = pytest.mark.parametrize("profile", ["seed", "2.6.32"])

M, U = kb.MADV_MERGEABLE, kb.MADV_UNMERGEABLE
F = "rd wr mr mw me ac"          # a private anonymous read-write VMA: 0x00100073
FM = F + " mg"                   # ... that is VM_MERGEABLE: 0x80100073


def anon_line(start: int, end: int, flags: str, perms: str = "rw-p") -> str:
    """One line of the maps view for an anonymous VMA."""
    return f"{start:08x}-{end:08x} {perms} 00000000 00:00 0".ljust(73) + f" VmFlags: {flags}"


def maps(*lines: tuple[int, int, str]) -> str:
    return "\n".join(anon_line(*line) for line in lines)


def spawn(profile: str) -> Process:
    return kb.Kernel(profile).spawn()


def test_typical_anonymous_flags(profile: str) -> None:
    """§3: typical 2.6.32 anon private RW flags are 0x00100073."""
    p = spawn(profile)
    mapfix(p, 0x10000, 0x4000)
    prof = p.kernel.profile
    assert prof.real_value(p.vmas[0].flags) == 0x00100073
    p.madvise(0x10000, 0x4000, M)
    assert prof.real_value(p.vmas[0].flags) == 0x80100073
    assert p.maps() == maps((0x10000, 0x14000, FM))


def test_section_2_holes(profile: str) -> None:
    """§2: VMAs [0x10000,0x12000) and [0x14000,0x16000)."""
    p = spawn(profile)
    mapfix(p, 0x10000, 0x2000)
    mapfix(p, 0x14000, 0x2000)
    assert p.maps() == maps((0x10000, 0x12000, F), (0x14000, 0x16000, F))
    assert errno_of(lambda: p.madvise(0x12000, 0x2000, M)) == E.ENOMEM  # the hole only
    assert errno_of(lambda: p.madvise(0x17000, 0x1000, M)) == E.ENOMEM  # past the last VMA
    assert p.madvise(0x10000, 0, M) == 0
    assert p.maps() == maps((0x10000, 0x12000, F), (0x14000, 0x16000, F))
    assert p.mm_flags == kb.MMF(0)
    assert errno_of(lambda: p.madvise(0x10000, 0x6000, M)) == E.ENOMEM  # flags both
    assert p.maps() == maps((0x10000, 0x12000, FM), (0x14000, 0x16000, FM))
    assert p.mm_flags == kb.MMF_VM_MERGEABLE


def test_section_3_split_and_merge_back(profile: str) -> None:
    """§3: VMA [A,A+16K); madvise(A+4K, 8K, MERGEABLE) splits in three; UNMERGEABLE on the
    same range merges all three back; MERGEABLE on the whole VMA flags it in place."""
    a = 0x20000
    p = spawn(profile)
    mapfix(p, a, 0x4000)
    p.madvise(a + 0x1000, 0x2000, M)
    assert p.maps() == maps((a, a + 0x1000, F), (a + 0x1000, a + 0x3000, FM),
                            (a + 0x3000, a + 0x4000, F))
    assert p.mm.map_count == 3
    p.madvise(a + 0x1000, 0x2000, U)
    assert p.maps() == maps((a, a + 0x4000, F))
    assert p.mm.map_count == 1
    p.madvise(a, 0x4000, M)
    assert p.maps() == maps((a, a + 0x4000, FM))
    assert p.mm.map_count == 1


def test_section_3_merge_into_a_mergeable_next(profile: str) -> None:
    """§3: V=[0x10000,0x14000) F next to W=[0x14000,0x18000) F|M; madvise(0x12000, 0x2000,
    MERGEABLE) moves the boundary: V=[0x10000,0x12000), W=[0x12000,0x18000)."""
    p = spawn(profile)
    mapfix(p, 0x10000, 0x8000)
    p.madvise(0x14000, 0x4000, M)
    assert p.maps() == maps((0x10000, 0x14000, F), (0x14000, 0x18000, FM))
    p.madvise(0x12000, 0x2000, M)
    assert p.maps() == maps((0x10000, 0x12000, F), (0x12000, 0x18000, FM))
    assert p.mm.map_count == 2


def test_section_1_config_ksm_off(profile: str) -> None:
    """§1: without CONFIG_KSM, 12 and 13 are EINVAL before anything else."""
    p = kb.Kernel(profile, config_ksm=False).spawn()
    mapfix(p, 0x10000, 0x2000)
    assert [errno_of(lambda a=a: p.madvise(0x10001, 0, a)) for a in (M, U)] == [E.EINVAL] * 2
    assert errno_of(lambda: p.madvise(0x10001, 0, kb.MADV_NORMAL)) == E.EINVAL  # unaligned
    assert p.madvise(0x10000, 0, kb.MADV_NORMAL) == 0
    assert p.maps() == maps((0x10000, 0x12000, F))


def test_section_4_advice_table(profile: str) -> None:
    """§4: WILLNEED on anon EBADF; DONTNEED on VM_LOCKED EINVAL; REMOVE on anon EINVAL;
    values 5-8 invalid; DOFORK on VM_IO EINVAL."""
    k = kb.Kernel(profile)
    p = k.spawn()
    mapfix(p, 0x10000, 0x2000)
    mapfix(p, 0x14000, 0x2000, flags=ANON | kb.MAP_LOCKED)
    got = [errno_of(lambda a=a: p.madvise(0x10000, 0x2000, a))
           for a in (kb.MADV_WILLNEED, kb.MADV_REMOVE, 5, 6, 7, 8)]
    assert got == [E.EBADF, E.EINVAL, E.EINVAL, E.EINVAL, E.EINVAL, E.EINVAL]
    assert errno_of(lambda: p.madvise(0x14000, 0x2000, kb.MADV_DONTNEED)) == E.EINVAL
    dev = k.create_device("io0", "io")
    p.mmap(0x2000, RW, kb.MAP_SHARED | kb.MAP_FIXED, addr=0x18000, file=dev)
    assert errno_of(lambda: p.madvise(0x18000, 0x2000, kb.MADV_DOFORK)) == E.EINVAL


def test_section_5_ignore_list_on_real_mappings(profile: str) -> None:
    """§5: MERGEABLE is ignored on shared anonymous memory, on a remap_pfn_range() driver
    mapping (VM_IO|VM_RESERVED|VM_PFNMAP) and on hugetlb; nothing is split, the mm is not
    registered."""
    k = kb.Kernel(profile, nr_hugepages=1)
    p = k.spawn()
    dev = k.create_device("mem", "remap_pfn_range")
    mapfix(p, 0x10000, 0x4000, flags=kb.MAP_SHARED | kb.MAP_ANONYMOUS)
    p.mmap(0x4000, RW, kb.MAP_SHARED | kb.MAP_FIXED, addr=0x20000, file=dev)
    h = p.mmap(kb.HPAGE_SIZE, RW, ANON | kb.MAP_HUGETLB)
    for start in (0x10000, 0x20000, h):
        assert p.madvise(start + P, P, M) == 0
    assert [(v.start, v.end) for v in p.vmas] == [(0x10000, 0x14000), (0x20000, 0x24000),
                                                  (h, h + kb.HPAGE_SIZE)]
    codes = [line.split("VmFlags: ")[1] for line in p.maps().splitlines()]
    assert codes == ["rd wr sh mr mw me ms",
                     "rd wr sh mr mw me ms pf io reserved",
                     "rd wr mr mw me reserved ht"]
    assert p.mm_flags == kb.MMF(0)


def test_section_5_seed_unmergeable_unmerges_nothing(profile: str) -> None:
    """§5: the seed's UNMERGEABLE only clears the flag; 2.6.32 calls unmerge_ksm_pages()
    when the VMA has an anon_vma."""
    p = spawn(profile)
    mapfix(p, 0x10000, 0x2000)
    p.write_pages(0x10000, [1])
    p.madvise(0x10000, 0x2000, M)
    p.madvise(0x10000, 0x2000, U)
    fns = p.last_trace.functions()  # type: ignore[union-attr]
    assert ("unmerge_ksm_pages" in fns) == (profile == "2.6.32")
    assert p.maps() == maps((0x10000, 0x12000, F))


def test_section_7_fork(profile: str) -> None:
    """§7: the child gets every VMA but the VM_DONTCOPY ones, VM_LOCKED cleared, flags
    (VM_MERGEABLE too) kept, and MMF_VM_MERGEABLE through ksm_fork()."""
    p = spawn(profile)
    mapfix(p, 0x10000, 0x2000, flags=ANON | kb.MAP_LOCKED)
    mapfix(p, 0x14000, 0x2000)
    mapfix(p, 0x18000, 0x2000)
    p.madvise(0x14000, 0x2000, M)
    p.madvise(0x18000, 0x2000, kb.MADV_DONTFORK)
    assert p.maps() == maps((0x10000, 0x12000, "rd wr mr mw me lo ac"),
                            (0x14000, 0x16000, FM), (0x18000, 0x1A000, "rd wr mr mw me dc ac"))
    c = p.fork()
    assert c.maps() == maps((0x10000, 0x12000, F), (0x14000, 0x16000, FM))
    assert c.mm_flags == kb.MMF_VM_MERGEABLE


def test_the_seed_example_path(profile: str) -> None:
    """The kernel functions of madvise(a+2p, 4p, MERGEABLE) on an 8-page VMA, in order."""
    p = spawn(profile)
    a = p.mmap(8 * P, RW, ANON)
    p.madvise(a + 2 * P, 4 * P, M)
    calls = [s.function for s in p.last_trace.steps]  # type: ignore[union-attr]
    seen = [f for i, f in enumerate(calls) if f not in calls[:i]]
    assert seen == ["sys_madvise", "madvise_vma", "madvise_behavior", "ksm_madvise",
                    "__ksm_enter", "vma_merge", "split_vma"]
    assert calls.count("split_vma") == 2
    assert p.maps() == maps((a, a + 2 * P, F), (a + 2 * P, a + 6 * P, FM),
                            (a + 6 * P, a + 8 * P, F))
