"""Golden tests for the seed and 2.6.32 kernels: the worked examples of the reference
(kernel-semantics.md §1-§5, §7), checked as exact maps text or VMA tuples.

Every expected value below was derived by hand from the rules of the 2.6.32 sources the
reference cites (mm/madvise.c sys_madvise() and madvise_behavior(), mm/mmap.c vma_merge()
and split_vma(), mm/ksm.c ksm_madvise()), not from the simulator's output.
"""

from __future__ import annotations

import pytest
from helpers import ANON, RW, E, P, errno_of, mapfix

import ksmbook as kb
from ksmbook.constants import TASK_SIZE
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
                     "rd wr sh mr mw me ms pf io reserved pfn_at_mmap",
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


# -- v2.6.32 source reading: behaviour that differs from 6.x ---------------------------------
# Each test cites the v2.6.32 function that decides it; the 6.x contrast cites 6.12/6.18.


def test_madv_remove_zaps_private_cow_copies(profile: str) -> None:
    """v2.6.32 mm/memory.c vmtruncate_range() -> unmap_mapping_range(mapping, offset, len, 1):
    even_cows = 1, so a private mapping's COW copy of the punched page is zapped as well and
    reads zeros. 6.x shmem_fallocate() passes even_cows = 0: the COW copy keeps its data."""
    for name, cow_after in ((profile, 0), ("modern", 7)):
        k = kb.Kernel(name)
        p = k.spawn()
        f = k.create_file("shm.bin", 2 * P, fs="tmpfs", contents=[5, 6])
        mapfix(p, 0x10000, 2 * P, flags=kb.MAP_SHARED, file=f)
        mapfix(p, 0x20000, 2 * P, flags=kb.MAP_PRIVATE, file=f)
        mapfix(p, 0x30000, 2 * P, prot=kb.PROT_READ, flags=kb.MAP_PRIVATE | kb.MAP_POPULATE,
               file=f)                          # maps the page-cache pages
        p.write_pages(0x20000, [7])            # private COW copy of page 0
        assert [p.read_page(0x20000), p.read_page(0x20000 + P)] == [7, 6]
        assert p.madvise(0x10000, 2 * P, kb.MADV_REMOVE) == 0
        assert [p.read_page(0x10000), p.read_page(0x10000 + P)] == [0, 0]
        # Page-cache pages are unmapped from private mappings in every kernel.
        assert [p.read_page(0x30000), p.read_page(0x30000 + P)] == [0, 0]
        assert [p.read_page(0x20000), p.read_page(0x20000 + P)] == [cow_after, 0], name


def test_map_locked_is_dropped_on_special_and_hugetlb_vmas(profile: str) -> None:
    """v2.6.32 mm/mlock.c mlock_vma_pages_range(), called by mmap_region() for VM_LOCKED:
    VM_IO|VM_PFNMAP "goto no_mlock", VM_DONTEXPAND|VM_RESERVED and hugetlb are made present,
    then "vma->vm_flags &= ~VM_LOCKED; /* and don't come back! */". So MADV_DONTNEED on such a
    VMA is not refused for VM_LOCKED, and MADV_REMOVE goes on to vmtruncate_range()."""
    k = kb.Kernel(profile, nr_hugepages=1)
    p = k.spawn()
    dev = k.create_device("fb0", "dontexpand")
    p.mmap(2 * P, RW, kb.MAP_SHARED | kb.MAP_FIXED | kb.MAP_LOCKED, addr=0x10000, file=dev)
    h = p.mmap(kb.HPAGE_SIZE, RW, ANON | kb.MAP_HUGETLB | kb.MAP_LOCKED)
    mapfix(p, 0x30000, 2 * P, flags=ANON | kb.MAP_LOCKED)
    codes = [line.split("VmFlags: ")[1] for line in p.maps().splitlines()]
    assert codes == ["rd wr sh mr mw me ms de", "rd wr mr mw me lo ac",
                     "rd wr mr mw me reserved ht"]
    assert "mlock_vma_pages_range" in p.kernel.log[-3].functions()
    assert p.madvise(0x10000, 2 * P, kb.MADV_DONTNEED) == 0
    assert errno_of(lambda: p.madvise(0x10000, 2 * P, kb.MADV_REMOVE)) == E.ENOSYS
    assert errno_of(lambda: p.madvise(h, kb.HPAGE_SIZE, kb.MADV_DONTNEED)) == E.EINVAL
    assert errno_of(lambda: p.madvise(0x30000, 2 * P, kb.MADV_DONTNEED)) == E.EINVAL


def test_munmap_inside_hugetlb_at_max_map_count(profile: str) -> None:
    """v2.6.32 do_munmap() has no map_count check of its own (2.6.33 added one); its
    split_vma() tests the huge-page alignment first: EINVAL. 6.x do_vmi_align_munmap()
    refuses the cut in two at the limit first: ENOMEM."""
    for name, want in ((profile, E.EINVAL), ("modern", E.ENOMEM)):
        k = kb.Kernel(name, nr_hugepages=1, max_map_count=1)
        p = k.spawn()
        h = p.mmap(kb.HPAGE_SIZE, RW, ANON | kb.MAP_HUGETLB)
        assert errno_of(lambda q=p, a=h: q.munmap(a + P, P)) == want, name
        assert len(p.vmas) == 1
        fns = p.last_trace.functions()  # type: ignore[union-attr]
        assert ("split_vma" in fns) == (name != "modern")


def test_mmap_of_a_file_with_map_hugetlb(profile: str) -> None:
    """v2.6.32 do_mmap_pgoff(): after "if (!len || len > TASK_SIZE) return -ENOMEM;" and the
    map_count check, "if (flags & MAP_HUGETLB) { ... if (file) return -EINVAL;". 6.x
    ksys_mmap_pgoff() refuses a non-hugetlbfs file before do_mmap() is reached."""
    k = kb.Kernel(profile)
    p = k.spawn()
    f = k.create_file("data.bin", 4 * P)
    flags = kb.MAP_PRIVATE | kb.MAP_HUGETLB
    assert errno_of(lambda: p.mmap(4 * P, RW, flags, file=f)) == E.EINVAL
    assert p.last_trace.steps[-1].function == "do_mmap_pgoff"  # type: ignore[union-attr]
    big = TASK_SIZE + P
    assert errno_of(lambda: p.mmap(big, RW, flags, file=f)) == E.ENOMEM
    m = kb.Kernel("modern").spawn()
    g = m.kernel.create_file("data.bin", 4 * P)
    assert errno_of(lambda: m.mmap(big, RW, flags, file=g)) == E.EINVAL
    assert m.last_trace.steps[-1].function == "ksys_mmap_pgoff"  # type: ignore[union-attr]
    assert p.vmas == [] and m.vmas == []


def test_len_beyond_task_size_is_do_mmap_pgoffs_enomem(profile: str) -> None:
    """v2.6.32 do_mmap_pgoff(): "if (!len || len > TASK_SIZE) return -ENOMEM;"."""
    p = spawn(profile)
    assert errno_of(lambda: p.mmap(TASK_SIZE + P, RW, ANON)) == E.ENOMEM
    assert p.last_trace.steps[-1].function == "do_mmap_pgoff"  # type: ignore[union-attr]


def test_pending_signal_stops_unmergeable_at_the_first_address(profile: str) -> None:
    """v2.6.32 unmerge_ksm_pages(): "if (signal_pending(current)) err = -ERESTARTSYS;" is
    tested at every address of the range, mapped or not, so a pending signal ends the call
    at once (EINTR to a handler without SA_RESTART) and is delivered then: a later call is
    not interrupted. The seed's dummy ksm.c unmerges nothing and never looks."""
    k = kb.Kernel(profile)
    p = k.spawn()
    mapfix(p, 0x10000, 8 * P)
    p.write_pages(0x10000, [1])                # the VMA gets an anon_vma
    p.madvise(0x10000, 8 * P, M)
    k.inject("signal_pending")
    got = errno_of(lambda: p.madvise(0x10000 + 4 * P, 4 * P, U))  # no page there
    if profile == "seed":
        assert got == 0
        assert p.maps() == maps((0x10000, 0x14000, FM), (0x14000, 0x18000, F))
        return
    assert got == E.EINTR
    assert p.maps() == maps((0x10000, 0x18000, FM))
    assert p.madvise(0x10000, 8 * P, U) == 0   # the signal was consumed
    assert p.maps() == maps((0x10000, 0x18000, F))


def test_advice_is_the_syscalls_int(profile: str) -> None:
    """v2.6.32 SYSCALL_DEFINE3(madvise, unsigned long, start, size_t, len_in, int, behavior):
    the upper 32 bits of the advice are dropped, so (1 << 32) | 12 is MADV_MERGEABLE."""
    p = spawn(profile)
    mapfix(p, 0x10000, 2 * P)
    assert p.madvise(0x10000, 2 * P, (1 << 32) | M) == 0
    assert p.maps() == maps((0x10000, 0x12000, FM))
    assert errno_of(lambda: p.madvise(0x10000, 2 * P, (1 << 32) | 5)) == E.EINVAL


def test_file_vmas_can_nonlinear_and_remap_pfn_pgoff(profile: str) -> None:
    """v2.6.32 generic_file_mmap()/ext4_file_mmap()/shmem_mmap() set VM_CAN_NONLINEAR;
    remap_pfn_range() of the whole VMA sets vm_pgoff = pfn and VM_PFN_AT_MMAP."""
    k = kb.Kernel(profile)
    p = k.spawn()
    f = k.create_file("data.bin", 4 * P)
    s = k.create_file("shm.bin", 4 * P, fs="tmpfs")
    dev = k.create_device("mem", "remap_pfn_range")
    mapfix(p, 0x10000, 2 * P, flags=kb.MAP_PRIVATE, file=f)
    mapfix(p, 0x12000, 2 * P, flags=kb.MAP_PRIVATE, file=f, offset=2 * P)  # merges
    mapfix(p, 0x20000, 2 * P, flags=kb.MAP_SHARED, file=s)
    p.mmap(2 * P, RW, kb.MAP_SHARED | kb.MAP_FIXED, addr=0x30000, file=dev, offset=P)
    lines = p.maps().splitlines()
    assert len(lines) == 3
    assert lines[0].split("VmFlags: ")[1] == "rd wr mr mw me ac can_nonlinear"
    assert lines[1].split("VmFlags: ")[1] == "rd wr sh mr mw me ms can_nonlinear"
    assert lines[2].split("VmFlags: ")[1] == "rd wr sh mr mw me ms pf io reserved pfn_at_mmap"
    assert p.vmas[2].pgoff == dev.pfn + 1
    assert lines[2].split()[2] == f"{(dev.pfn + 1) << 12:08x}"


def test_trace_names_are_2632s(profile: str) -> None:
    """2.6.32 has no security_mmap_addr(), mm_populate(), vm_area_dup() or sys_mmap_pgoff():
    do_mmap_pgoff() calls security_file_mmap(), make_pages_present(), and split_vma()
    allocates with kmem_cache_alloc(vm_area_cachep)."""
    k = kb.Kernel(profile, nr_hugepages=1)
    p = k.spawn()
    assert errno_of(lambda: p.mmap(P, RW, ANON | kb.MAP_FIXED, addr=0x1000)) == E.EPERM
    assert p.last_trace.steps[-1].function == "security_file_mmap"  # type: ignore[union-attr]
    p.mmap(2 * P, RW, ANON | kb.MAP_POPULATE)
    assert "make_pages_present" in p.last_trace.functions()  # type: ignore[union-attr]
    p.mmap(P, RW, ANON | kb.MAP_HUGETLB)
    assert p.last_trace.steps[0].function == "do_mmap_pgoff"  # type: ignore[union-attr]
    mapfix(p, 0x10000, 4 * P)
    k.inject("split_vma")
    assert errno_of(lambda: p.munmap(0x11000, P)) == E.ENOMEM
    assert "kmem_cache_alloc() failed" in str(p.last_trace)
    text = "\n".join(str(t) for t in k.log)
    for modern_only in ("sys_mmap_pgoff", "security_mmap_addr", "mm_populate", "vm_area_dup"):
        assert modern_only not in text


def test_munmap_count_check_is_split_vmas(profile: str) -> None:
    """v2.6.32 do_munmap() calls split_vma(), which checks max_map_count itself."""
    k = kb.Kernel(profile, max_map_count=1)
    p = k.spawn()
    mapfix(p, 0x10000, 4 * P)
    assert errno_of(lambda: p.munmap(0x11000, P)) == E.ENOMEM
    last = p.last_trace.steps[-1]  # type: ignore[union-attr]
    assert last.function == "split_vma" and "max_map_count" in last.message


def test_ksm_enter_order_and_fork_nesting(profile: str) -> None:
    """v2.6.32 __ksm_enter(): list_add_tail(), set_bit(MMF_VM_MERGEABLE), atomic_inc(), then
    wake_up_interruptible(); fork is copy_process() -> copy_mm() -> dup_mm() -> dup_mmap()."""
    p = spawn(profile)
    mapfix(p, 0x10000, 2 * P)
    p.madvise(0x10000, 2 * P, M)
    notes = [s.message for s in p.last_trace.steps  # type: ignore[union-attr]
             if s.function == "__ksm_enter" and s.message]
    want = ["set MMF_VM_MERGEABLE"]
    if profile == "2.6.32":
        want = ["mm_slot added just before the scan cursor", *want, "first mm: wake up ksmd"]
    assert notes == want
    p.fork()
    steps = [(s.depth, s.function) for s in p.last_trace.steps[:4]]  # type: ignore[union-attr]
    assert steps == [(0, "copy_process"), (1, "copy_mm"), (2, "dup_mm"), (3, "dup_mmap")]
    last = p.last_trace.steps[-1]  # type: ignore[union-attr]
    assert (last.depth, last.function, last.message) == (1, "copy_process", "child pid 2")
