"""Golden tests for the seed and 2.6.32 kernels: the worked examples of the reference
(docs/kernel-semantics.md §1-§5, §7), checked as exact maps text or VMA tuples.

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
from ksmbook.scenario import parse, run

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
    assert ("unmerge_ksm_pages" in fns) == p.kernel.profile.unmerge_pages
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
        assert ("split_vma" in fns) == k.profile.munmap_split_checks_count


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
    if not k.profile.unmerge_pages:
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
    if p.kernel.profile.has_ksmd:
        want = ["mm_slot added just before the scan cursor", *want, "first mm: wake up ksmd"]
    assert notes == want
    p.fork()
    steps = [(s.depth, s.function) for s in p.last_trace.steps[:4]]  # type: ignore[union-attr]
    assert steps == [(0, "copy_process"), (1, "copy_mm"), (2, "dup_mm"), (3, "dup_mmap")]
    last = p.last_trace.steps[-1]  # type: ignore[union-attr]
    assert (last.depth, last.function, last.message) == (1, "copy_process", "child pid 2")


# -- v2.6.32 ksmd and sysfs, read line by line from pristine v2.6.32 (sndrzt/linux-2.6.32,
# ae8292a5 "linux-2.6.32 original source code"): mm/ksm.c, mm/rmap.c, include/linux/ksm.h,
# fs/sysfs/file.c, lib/vsprintf.c. The seed's dummy mm/ksm.c has neither ksmd nor sysfs.

#: A forked child's KSM page whose stable node has gone meets a new KSM page of its content.
STRAY_KSM_PAGE = """\
map A 8p rw private anon
write A 1 1 2 2 3 3 7 7
madvise A 8p MERGEABLE
spawn pq
pq: map Q 2p rw private anon
pq: write Q 50 51
pq: madvise Q 2p MERGEABLE
sysfs run=1
ksmd scan 2
sysfs pages_to_scan=8
ksmd batch 1
pq: write Q 7 7
write A+2p 20 21
write A+4p 30 31
ksmd batch 1
fork c
write A+6p 70 71
ksmd scan 1
ksmd scan 1
"""

#: The same stray KSM page, kept by a failing break_ksm(), as the unstable tree's node.
STRAY_KSM_PAGE_UNSTABLE = """\
map A 2p rw private anon
write A 5 5
madvise A 2p MERGEABLE
sysfs run=1
ksmd scan 2
fork c
write A 6 7
spawn q
q: map Q 1p rw private anon
q: write Q 5
q: madvise Q 1p MERGEABLE
inject break_ksm 4
ksmd scan 1
ksmd scan 1
"""

COUNTERS = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile")


def _ksmd_2632(profile: str) -> None:
    if not kb.get_profile(profile).has_ksmd:
        pytest.skip("the seed's dummy mm/ksm.c has no ksmd and no /sys/kernel/mm/ksm")


def _counts(step: object) -> tuple[int, ...]:
    counters = step.counters  # type: ignore[attr-defined]
    return tuple(counters[n] for n in COUNTERS)


def test_a_ksm_page_is_never_merged_again(profile: str) -> None:
    """v2.6.32 include/linux/ksm.h 34-42: a KSM page "is a PageAnon page, with NULL anon_vma";
    so try_to_merge_one_page() (mm/ksm.c 770) -> write_protect_page() -> page_address_in_vma()
    (mm/ksm.c 622-624; mm/rmap.c 250-253: vma->anon_vma != the page's NULL anon_vma) fails with
    -EFAULT for it. The child's KSM pages of content 7 (their node left with A+6p, A+7p) meet
    pq's new KSM page of 7 in the stable tree (cmp_and_merge_page() 1093-1111): no merge, no
    stable_tree_append(), the child stays on its old page, counted volatile. By hand: after
    the last two scans 2/4/0/12, then 2/4/6/6 (shared/sharing/unshared/volatile)."""
    _ksmd_2632(profile)
    steps = run(parse(f"kernel {profile}\n" + STRAY_KSM_PAGE))
    assert [_counts(s) for s in steps[-2:]] == [(2, 4, 0, 12), (2, 4, 6, 6)]
    notes = [str(s) for t in steps[-1].traces for s in t.steps
             if s.function == "write_protect_page"]
    assert len(notes) == 2 and all("page_address_in_vma" in n for n in notes)


def test_a_stray_ksm_page_as_the_unstable_trees_node(profile: str) -> None:
    """The same cause on the unstable tree: break_ksm() fails (injected OOM) for the child's
    KSM page at cmp_and_merge_page()'s "if (PageKsm(page)) break_cow()" (mm/ksm.c 1119-1120),
    so on the next pass the KSM page is inserted as a node of the unstable tree (1134,
    1044-1049). q's page of the same content finds it: try_to_merge_two_pages() merges q's
    page into a new kernel page (854), then try_to_merge_with_ksm_page() of the tree page
    fails in write_protect_page() (858), and "we have a ksm page with only one pte pointing to
    it: so break it" (863-864): q gets a private copy back. By hand, after the two scans:
    0/0/0/5 then 0/0/3/2 (A's two pages and the child's first unshared; the child's second
    page and q's volatile)."""
    _ksmd_2632(profile)
    steps = run(parse(f"kernel {profile}\n" + STRAY_KSM_PAGE_UNSTABLE))
    assert [_counts(s) for s in steps[-2:]] == [(0, 0, 0, 5), (0, 0, 3, 2)]
    text = "\n".join(str(t) for t in steps[-1].traces)
    assert "page_address_in_vma" in text and "try_to_merge_two_pages: failed" in text
    assert "KSM page copied to a private page" in text  # break_cow() of q's page


def test_sysfs_write_stops_at_a_nul_byte(profile: str) -> None:
    """v2.6.32 fs/sysfs/file.c fill_write_buffer() NUL-terminates the buffer at count (181)
    and the store functions get count (209) and return it (mm/ksm.c 1506, 1529, 1576);
    strict_strtoul() (lib/vsprintf.c 162-183) measures the string with strlen() (169) and
    accepts a tail of "\\0" (176): the value ends at the first NUL byte."""
    _ksmd_2632(profile)
    s = kb.Kernel(profile).sysfs
    assert s.write("run", "1\0") == 2
    assert s["run"] == 1
    assert s.write("pages_to_scan", "5\0junk") == 6
    assert s["pages_to_scan"] == 5
    assert s.write("sleep_millisecs", "44\n\0x") == 5       # "44\n": one trailing newline
    assert s["sleep_millisecs"] == 44
    assert errno_of(lambda: s.write("sleep_millisecs", "\0")) == E.EINVAL  # strlen() 0
    assert errno_of(lambda: s.write("sleep_millisecs", "7 \0")) == E.EINVAL


def test_sysfs_keeps_4095_bytes_of_one_write(profile: str) -> None:
    """v2.6.32 fs/sysfs/file.c 175-176: "if (count >= PAGE_SIZE) count = PAGE_SIZE - 1;", and
    sysfs_write_file() returns that count (241-247): "0" * 4095 + "1" leaves run at 0 and
    the write returns 4095. kernfs (3.14 on; this machine's 6.18, checked live in
    tests/test_live_sysfs.py) keeps 4096 bytes: the same write sets run to 1, returns 4096."""
    _ksmd_2632(profile)
    for name, (kept, run_after) in ((profile, (4095, 0)), ("modern", (4096, 1))):
        s = kb.Kernel(name).sysfs
        assert s.write("run", "0" * 4095 + "1") == kept, name
        assert s["run"] == run_after, name
        assert s.write("sleep_millisecs", "0" * 4094 + "41") == kept, name
        assert s["sleep_millisecs"] == (4 if kept == 4095 else 41), name


def test_a_pinned_page_is_not_merged(profile: str) -> None:
    """v2.6.32 write_protect_page() (mm/ksm.c 645-652): "Check that no O_DIRECT or similar I/O
    is in progress on the page": page_mapcount + 2 != page_count leaves the pte as it was and
    fails. ``inject write_protect_page`` gives the next such check an extra reference: the
    identical pair is not merged in that pass, and merges in the next."""
    _ksmd_2632(profile)
    text = (f"kernel {profile}\nmap A 2p rw private anon\nwrite A 4 4\n"
            "madvise A 2p MERGEABLE\nsysfs run=1\nksmd scan 1\ninject write_protect_page\n"
            "ksmd scan 1\nksmd scan 1\n")
    steps = run(parse(text))
    assert [_counts(steps[i]) for i in (-4, -2, -1)] == [(0, 0, 0, 2), (0, 0, 1, 1),
                                                          (1, 1, 0, 0)]
    assert "extra reference" in "\n".join(str(t) for t in steps[-2].traces)


def test_rmap_item_allocation_failure_ends_the_batch(profile: str) -> None:
    """v2.6.32 get_next_rmap_item() (1190-1197) returns NULL when alloc_rmap_item() fails;
    scan_get_next_rmap_item() returns it (1249-1255) with ksm_scan.address still on the page,
    and ksm_do_scan() returns at once (1321-1323): the batch ends early and the next one
    starts at that page again."""
    _ksmd_2632(profile)
    text = (f"kernel {profile}\nmap A 4p rw private anon\nwrite A 1 2 3 4\n"
            "madvise A 4p MERGEABLE\nsysfs run=1\ninject alloc_rmap_item\nksmd batch 1\n"
            "ksmd batch 1\n")
    k = kb.Kernel(profile)
    steps = run(parse(text), k)
    assert [s.result for s in steps[-2:]] == [0, 4]   # pages scanned by each batch
    assert k.ksm.rmap_items == 4 and k.ksm.seqnr == 1


def test_ksmd_sleeps_whole_jiffies(profile: str) -> None:
    """v2.6.32 ksm_scan_thread() (mm/ksm.c 1353-1355): schedule_timeout_interruptible(
    msecs_to_jiffies(ksm_thread_sleep_millisecs)), and msecs_to_jiffies() (kernel/time.c
    452-466) rounds up to whole jiffies: at HZ=250 (kernel/Kconfig.hz 7) a sleep of 1 ms is
    4 ms, 5 ms is 8 ms, 20 ms stays 20 ms. (6.18 the same; on this machine, HZ=250, one full
    scan of a single page took ~10 ms for sleep_millisecs 1, 2 and 4 alike, ~14 for 5.)"""
    _ksmd_2632(profile)
    for ms, slept in ((0, 0), (1, 4), (4, 4), (5, 8), (20, 20), (3601, 3604)):
        k = kb.Kernel(profile)
        p = k.spawn()
        mapfix(p, 0x10000, P)
        p.write_pages(0x10000, [1])
        p.madvise(0x10000, P, M)
        k.sysfs["run"] = 1
        k.sysfs["sleep_millisecs"] = ms
        before = k.ksmd.clock_ms
        k.ksmd.page_cost_us = k.ksmd.batch_cost_us = 0
        k.ksmd.batch()
        assert k.ksmd.clock_ms - before == slept, ms
