"""The address space on every profile: mmap placement, merging and its errnos, munmap,
mprotect (with VM_ACCOUNT) and fork's copy of the VMAs.

References: mm/mmap.c (2.6.32 do_mmap_pgoff(), mmap_region(), do_munmap(), vma_merge();
6.x do_mmap(), __mmap_region(), do_vmi_align_munmap()), mm/mprotect.c mprotect_fixup(),
kernel/fork.c dup_mmap().
"""

from __future__ import annotations

import pytest
from helpers import ANON, RW, A, E, P, bounds, errno_of, layout, mapfix, state

import ksmbook as kb
from ksmbook.constants import MMAP_BASE, MMAP_MIN_ADDR
from ksmbook.kernel import Process

R = kb.PROT_READ
FIXED = kb.MAP_FIXED
NONE = kb.PROT.PROT_NONE


# -- mmap --------------------------------------------------------------------------------------

def test_vm_flag_arithmetic_is_c_unsigned_long() -> None:
    """~ complements all 64 bits, as C's ~ on vm_flags does, whatever built the operand."""
    access = kb.VM.VM_READ | kb.VM.VM_WRITE | kb.VM.VM_EXEC | kb.VM.VM_CAN_NONLINEAR
    assert int(~access) == ~int(access) & (2**64 - 1)
    assert (kb.VM.VM_MERGEABLE ^ kb.VM.VM_NONE) & ~access == kb.VM.VM_MERGEABLE
    assert int(~kb.VM.VM_MERGEABLE) == 2**64 - 1 - 0x80000000


def test_writes_after_the_advice_keep_the_seed_anon_vmas_apart() -> None:
    """find_mergeable_anon_vma(): a neighbour whose flags differ in VM_MERGEABLE lends no
    anon_vma, so after UNMERGEABLE the three VMAs cannot merge (chapter 2)."""
    q = kb.Kernel(profile="seed").spawn()
    b = q.mmap(8 * P, RW, ANON)
    q.madvise(b + 2 * P, 4 * P, kb.MADV_MERGEABLE)
    q.write_pages(b, [1] * 8)
    assert len({v.anon_vma for v in q.vmas}) == 3
    q.madvise(b, 8 * P, kb.MADV_UNMERGEABLE)
    assert len(q.vmas) == 3


def test_placement_is_top_down_below_mmap_base(proc: Process) -> None:
    a = proc.mmap(4 * P, RW, ANON)
    b = proc.mmap(2 * P, R, ANON)
    assert a == MMAP_BASE - 4 * P
    assert b == a - 2 * P
    assert bounds(proc) == [(b, a), (a, MMAP_BASE)]


def test_successive_anonymous_mmaps_merge_into_one_vma(proc: Process) -> None:
    a = proc.mmap(4 * P, RW, ANON)
    b = proc.mmap(2 * P, RW, ANON)
    c = proc.mmap(P, RW, ANON)
    assert (b, c) == (a - 2 * P, a - 3 * P)
    assert bounds(proc) == [(c, a + 4 * P)]
    assert proc.vmas[0].pgoff == c // P  # anonymous pgoff is the address
    assert "merged with next" in str(proc.last_trace)


def test_a_new_mapping_between_two_merges_with_both(proc: Process) -> None:
    mapfix(proc, A, 2 * P)
    mapfix(proc, A + 4 * P, 2 * P)
    mapfix(proc, A + 2 * P, 2 * P)
    assert bounds(proc) == [(A, A + 6 * P)]


def test_anonymous_mappings_with_different_flags_stay_apart(proc: Process) -> None:
    mapfix(proc, A, 2 * P)
    mapfix(proc, A + 2 * P, 2 * P, prot=R)
    mapfix(proc, A + 4 * P, 2 * P, flags=ANON | kb.MAP_NORESERVE)
    assert len(proc.vmas) == 3


def test_shared_anonymous_mappings_never_merge(proc: Process) -> None:
    flags = kb.MAP_SHARED | kb.MAP_ANONYMOUS
    mapfix(proc, A, 2 * P, flags=flags)
    mapfix(proc, A + 2 * P, 2 * P, flags=flags)
    assert len(proc.vmas) == 2
    assert all(v.kind == "shared-anon" for v in proc.vmas)
    assert proc.vmas[0].file is not proc.vmas[1].file  # each has its own /dev/zero object


def test_file_mappings_merge_when_contiguous_in_the_file(proc: Process) -> None:
    f = proc.kernel.create_file("data.bin", 16 * P)
    mapfix(proc, A, 2 * P, prot=R, flags=kb.MAP_PRIVATE, file=f, offset=4 * P)
    mapfix(proc, A + 2 * P, 2 * P, prot=R, flags=kb.MAP_PRIVATE, file=f, offset=6 * P)
    mapfix(proc, A + 4 * P, 2 * P, prot=R, flags=kb.MAP_PRIVATE, file=f, offset=0)
    assert [(v.start, v.end, v.pgoff) for v in proc.vmas] == [(A, A + 4 * P, 4),
                                                              (A + 4 * P, A + 6 * P, 0)]


def test_map_fixed_replaces_what_was_there(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    proc.write_pages(A, [1, 2, 3, 4])
    mapfix(proc, A + P, 2 * P, prot=R)
    assert layout(proc)[1][:2] == (A + P, A + 3 * P)
    assert [proc.read_page(A + i * P) for i in range(4)] == [1, 0, 0, 4]
    assert len(proc.vmas) == 3


def test_map_fixed_noreplace(proc: Process) -> None:
    """MAP_FIXED_NOREPLACE (4.17): EEXIST on a used range; older kernels take it as a hint."""
    mapfix(proc, A, 4 * P)
    before = state(proc)
    call = lambda: proc.mmap(P, RW, ANON | kb.MAP_FIXED_NOREPLACE, addr=A + P)  # noqa: E731
    if proc.kernel.profile.fixed_noreplace:
        assert errno_of(call) == E.EEXIST
        assert state(proc) == before
        assert proc.mmap(P, RW, ANON | kb.MAP_FIXED_NOREPLACE, addr=A + 8 * P) == A + 8 * P
    else:
        got = call()
        assert got != A + P and bounds(proc)[0] == (A, A + 4 * P)
        assert proc.mmap(P, RW, ANON | kb.MAP_FIXED_NOREPLACE, addr=A + 8 * P) == A + 8 * P


def test_mmap_min_addr(proc: Process) -> None:
    assert errno_of(lambda: proc.mmap(P, RW, ANON | FIXED, addr=MMAP_MIN_ADDR - P)) == E.EPERM
    assert proc.vmas == []
    assert proc.mmap(P, RW, ANON, addr=P) == MMAP_MIN_ADDR  # a low hint is raised to it
    assert proc.mmap(P, R, ANON | FIXED, addr=MMAP_MIN_ADDR + P) == MMAP_MIN_ADDR + P


def test_hint_is_used_when_free(proc: Process) -> None:
    """round_hint_to_min() rounds the hint down to a page first: one below a page is none."""
    assert proc.mmap(2 * P, RW, ANON, addr=A) == A
    assert proc.mmap(2 * P, RW, ANON, addr=A) != A  # taken now: placed elsewhere
    assert proc.mmap(P, RW, ANON, addr=A + 4 * P + 1) == A + 4 * P
    assert proc.mmap(P, R, ANON, addr=1) == MMAP_BASE - 3 * P  # below the second map


def test_placement_keeps_the_stack_guard_gap(proc: Process) -> None:
    """From 4.12 neither the hint nor the top-down search comes within stack_guard_gap below
    a MAP_GROWSDOWN VMA (vm_start_gap()); the hint is measured against find_vma(hint) alone,
    as x86's arch_get_unmapped_area_topdown() does (tests/test_live.py asks the kernel)."""
    gap = proc.kernel.profile.stack_guard_gap
    stack = MMAP_BASE - 4 * P
    mapfix(proc, stack, 4 * P, flags=ANON | kb.MAP_GROWSDOWN)
    assert proc.mmap(P, RW, ANON) == stack - gap - P
    stack = A + 2 * P
    mapfix(proc, stack, P, flags=ANON | kb.MAP_GROWSDOWN)
    assert proc.mmap(P, R, ANON, addr=stack - gap - P) == stack - gap - P
    if gap:
        assert proc.mmap(P, R, ANON, addr=stack - P) != stack - P  # inside the gap
    mapfix(proc, A + 64 * P, P)  # between the hint and another stack's gap
    mapfix(proc, A + 66 * P, P, flags=ANON | kb.MAP_GROWSDOWN)
    assert proc.mmap(P, R, ANON, addr=A + 63 * P) == A + 63 * P


def test_pmd_multiple_private_anonymous_mapping_is_thp_aligned(proc: Process) -> None:
    """From 6.13 (`Profile.thp_aligned_anon`) a private anonymous mapping without a hint whose
    length is a multiple of 2 MiB is placed by __thp_get_unmapped_area(): a search for
    length + 2 MiB, rounded up to 2 MiB, or its top 2 MiB higher if already aligned. Not
    2 MiB + 4 KiB, not with a hint, not MAP_SHARED, not a file; an mremap move too
    (vrm_set_new_addr()). tests/test_live.py compares this kernel."""
    H = kb.HPAGE_SIZE
    thp = proc.kernel.profile.thp_aligned_anon
    a = proc.mmap(2 * H, RW, ANON)
    assert a == ((MMAP_BASE - 3 * H + H - 1) & -H if thp else MMAP_BASE - 2 * H)
    b = proc.mmap(2 * H, RW, ANON)  # the padded fit is aligned: ret + PMD_SIZE, adjacent
    assert b == a - 2 * H
    c = proc.mmap(2 * H + P, RW, ANON)
    assert c == b - 2 * H - P
    shared = proc.mmap(2 * H, RW, kb.MAP_SHARED | kb.MAP_ANONYMOUS)
    assert shared == c - 2 * H
    f = proc.kernel.create_file("data.bin", 2 * H)
    assert proc.mmap(2 * H, RW, kb.MAP_PRIVATE, file=f) == shared - 2 * H
    assert proc.mmap(2 * H, RW, ANON, addr=A + P) == A + P  # a hint is taken as it is
    d = proc.mmap(4 * H, RW, ANON)
    assert d == (((shared - 7 * H) + H - 1) & -H if thp else shared - 6 * H)
    e = d - P
    mapfix(proc, e, P)
    mapfix(proc, A + P + 2 * H, P)  # the hinted VMA cannot grow in place: it moves
    moved = proc.mremap(A + P, 2 * H, 6 * H, kb.MREMAP_MAYMOVE)
    assert moved == (d - 7 * H if thp else e - 6 * H)  # (e - 7 * H) rounded up


def test_shared_writable_map_of_a_read_only_file_is_eacces(proc: Process) -> None:
    f = proc.kernel.create_file("ro.bin", 4 * P, writable=False)
    assert errno_of(lambda: proc.mmap(P, RW, kb.MAP_SHARED, file=f)) == E.EACCES
    a = proc.mmap(P, RW, kb.MAP_PRIVATE, file=f)  # a private copy may be written
    b = proc.mmap(P, R, kb.MAP_SHARED, file=f)
    flags = {v.start: v.flags for v in proc.vmas}
    assert flags[a] & kb.VM_MAYWRITE
    assert flags[b] & kb.VM_MAYSHARE and not flags[b] & (kb.VM_SHARED | kb.VM_MAYWRITE)


def test_mmap_argument_errors(proc: Process) -> None:
    f = proc.kernel.create_file("data.bin", 4 * P)
    assert errno_of(lambda: proc.mmap(0, RW, ANON)) == E.EINVAL
    assert errno_of(lambda: proc.mmap(P, RW, kb.MAP_PRIVATE, file=f, offset=100)) == E.EINVAL
    assert errno_of(lambda: proc.mmap(P, RW, kb.MAP_PRIVATE)) == E.EBADF  # no file, no ANON
    assert errno_of(lambda: proc.mmap(P, RW, kb.MAP_ANONYMOUS)) == E.EINVAL  # no type
    assert errno_of(lambda: proc.mmap(2**64 - 1, RW, ANON)) == E.ENOMEM
    assert proc.vmas == []


def test_hugetlb_needs_reserved_huge_pages(proc: Process) -> None:
    k = proc.kernel
    assert errno_of(lambda: proc.mmap(kb.HPAGE_SIZE, RW, ANON | kb.MAP_HUGETLB)) == E.ENOMEM
    assert "hugetlb_reserve_pages" in proc.last_trace.functions()  # type: ignore[union-attr]
    k.sysctl["nr_hugepages"] = 1
    a = proc.mmap(P, RW, ANON | kb.MAP_HUGETLB)  # the length is rounded up to 2 MiB
    assert a % kb.HPAGE_SIZE == 0 and bounds(proc) == [(a, a + kb.HPAGE_SIZE)]
    assert proc.vmas[0].flags & kb.VM_HUGETLB
    assert errno_of(lambda: proc.mmap(P, RW, ANON | kb.MAP_HUGETLB)) == E.ENOMEM  # reserved
    proc.munmap(a, kb.HPAGE_SIZE)
    assert proc.mmap(P, RW, ANON | kb.MAP_HUGETLB) % kb.HPAGE_SIZE == 0


def test_hugetlb_reservation_failure_comes_after_the_old_mappings_are_gone(
        proc: Process) -> None:
    """hugetlbfs_file_mmap() reserves the huge pages inside mmap_region(), after MAP_FIXED
    has unmapped what was there: the failed call leaves a hole. MAP_NORESERVE reserves
    nothing, so it maps even with no huge pages (a fault would SIGBUS)."""
    mapfix(proc, A, 4 * P)
    huge = ANON | kb.MAP_HUGETLB | FIXED
    assert errno_of(lambda: proc.mmap(kb.HPAGE_SIZE, RW, huge, addr=A)) == E.ENOMEM
    assert proc.vmas == []
    assert proc.mmap(kb.HPAGE_SIZE, RW, huge | kb.MAP_NORESERVE, addr=A) == A
    (vma,) = proc.vmas
    assert vma.flags & kb.VM_HUGETLB and vma.flags & kb.VM_NORESERVE
    assert proc.kernel.hugepages_reserved == 0


def test_hugetlb_vma_splits_only_at_huge_page_boundaries(profile: str) -> None:
    k = kb.Kernel(profile, nr_hugepages=2)
    p = k.spawn()
    a = p.mmap(2 * kb.HPAGE_SIZE, RW, ANON | kb.MAP_HUGETLB)
    assert errno_of(lambda: p.munmap(a + P, P)) == E.EINVAL
    assert errno_of(lambda: p.mprotect(a + P, P, R)) == E.EINVAL
    assert p.mprotect(a, kb.HPAGE_SIZE, R) == 0
    assert bounds(p) == [(a, a + kb.HPAGE_SIZE), (a + kb.HPAGE_SIZE, a + 2 * kb.HPAGE_SIZE)]


def test_growsdown_on_shared_or_file_mappings(proc: Process) -> None:
    """6.x do_mmap() refuses MAP_GROWSDOWN for file and shared anonymous mappings; 2.6.32
    refuses it for files only (in mmap_region())."""
    f = proc.kernel.create_file("data.bin", 4 * P)
    shared = kb.MAP_SHARED | kb.MAP_ANONYMOUS | kb.MAP_GROWSDOWN
    want = E.EINVAL if proc.kernel.profile.growsdown_private_anon_only else 0
    assert errno_of(lambda: proc.mmap(P, RW, shared | FIXED, addr=A)) == want
    for flags in (kb.MAP_PRIVATE, kb.MAP_SHARED):
        call = lambda fl=flags: proc.mmap(  # noqa: E731
            P, R, fl | kb.MAP_GROWSDOWN | FIXED, addr=A + 4 * P, file=f)
        assert errno_of(call) == E.EINVAL
    ro = proc.kernel.create_file("ro.bin", 4 * P, writable=False)
    call = lambda: proc.mmap(  # noqa: E731
        P, RW, kb.MAP_SHARED | kb.MAP_GROWSDOWN | FIXED, addr=A + 4 * P, file=ro)
    assert errno_of(call) == E.EACCES  # the MAP_SHARED checks come first
    assert proc.mmap(P, RW, ANON | kb.MAP_GROWSDOWN | FIXED, addr=A + 8 * P) == A + 8 * P
    assert proc.vmas[-1].flags & kb.VM_GROWSDOWN


def test_vm_account_marks_private_writable_memory(proc: Process) -> None:
    f = proc.kernel.create_file("data.bin", 4 * P)
    cases = [(RW, ANON, True), (R, ANON, False), (RW, ANON | kb.MAP_NORESERVE, False),
             (RW, kb.MAP_SHARED | kb.MAP_ANONYMOUS, False), (RW, kb.MAP_PRIVATE, True)]
    for i, (prot, flags, charged) in enumerate(cases):
        file = f if not flags & kb.MAP_ANONYMOUS else None
        mapfix(proc, A + 4 * i * P, P, prot=prot, flags=flags, file=file)
        assert bool(proc.vmas[-1].flags & kb.VM_ACCOUNT) == charged, i
    assert bool(proc.vmas[2].flags & kb.VM_NORESERVE)


def test_map_locked_faults_private_writable_pages_in(proc: Process) -> None:
    mapfix(proc, A, 2 * P, flags=ANON | kb.MAP_LOCKED)
    mapfix(proc, A + 4 * P, 2 * P, prot=R, flags=ANON | kb.MAP_LOCKED)
    locked, readonly = proc.vmas
    assert locked.flags & kb.VM_LOCKED and locked.anon_vma is not None
    # The read-only one read-faults in the zero page: nothing anonymous, no anon_vma.
    zero = [proc.mm.ptes[v] for v in range(readonly.start >> 12, readonly.end >> 12)]
    assert len(proc.mm.ptes) == 4 and zero == [proc.kernel.zero_page] * 2
    assert readonly.anon_vma is None


# -- munmap ------------------------------------------------------------------------------------

def test_munmap_errnos(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    before = state(proc)
    assert errno_of(lambda: proc.munmap(A, 0)) == E.EINVAL
    assert errno_of(lambda: proc.munmap(A + 1, P)) == E.EINVAL
    assert errno_of(lambda: proc.munmap(A, 2**64 - A)) == E.EINVAL
    assert proc.munmap(A + 8 * P, P) == 0  # nothing mapped there: still success
    assert state(proc) == before


def test_munmap_splits_at_both_ends(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    proc.write_pages(A, [1, 2, 3, 4])
    assert proc.munmap(A + P, 2 * P) == 0
    assert bounds(proc) == [(A, A + P), (A + 3 * P, A + 4 * P)]
    assert sorted(proc.mm.ptes) == [A // P, A // P + 3]
    with pytest.raises(OSError):
        proc.read_page(A + P)


def test_munmap_across_vmas_and_holes(proc: Process) -> None:
    mapfix(proc, A, 2 * P)
    mapfix(proc, A + 3 * P, 2 * P, prot=R)
    mapfix(proc, A + 6 * P, 2 * P)
    assert proc.munmap(A + P, 6 * P) == 0
    assert bounds(proc) == [(A, A + P), (A + 7 * P, A + 8 * P)]


def test_munmap_at_max_map_count(profile: str) -> None:
    """Cutting a VMA in two past the limit is ENOMEM (not EAGAIN). 2.6.32's split_vma()
    refuses even a split that only trims a VMA; from 2.6.33 only the cut in two is refused."""
    for offset, middle in [(P, True), (3 * P, False), (0, False)]:
        k = kb.Kernel(profile, max_map_count=1)
        p = k.spawn()
        mapfix(p, A, 4 * P)
        before = state(p)
        got = errno_of(lambda o=offset, q=p: q.munmap(A + o, P))
        if middle or p.kernel.profile.munmap_split_checks_count:
            assert got == E.ENOMEM, offset
            assert state(p) == before
        else:
            assert got == 0, offset
            assert p.mm.map_count == 1


def test_munmap_of_everything_leaves_an_empty_mm(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    mapfix(proc, A + 8 * P, 4 * P)
    proc.munmap(A, 12 * P)
    assert proc.vmas == [] and proc.mm.map_count == 0 and not proc.mm.ptes


# -- mprotect ------------------------------------------------------------------------------------

def test_mprotect_splits_and_merges_back(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    assert proc.mprotect(A + P, 2 * P, R) == 0
    assert [v.flags & (kb.VM_READ | kb.VM_WRITE) for v in proc.vmas] == [
        kb.VM_READ | kb.VM_WRITE, kb.VM_READ, kb.VM_READ | kb.VM_WRITE]
    assert proc.mprotect(A + P, 2 * P, RW) == 0
    assert bounds(proc) == [(A, A + 4 * P)]


def test_mprotect_beyond_the_may_bits_is_eacces(proc: Process) -> None:
    f = proc.kernel.create_file("ro.bin", 4 * P, writable=False)
    mapfix(proc, A, 2 * P, prot=R, flags=kb.MAP_SHARED, file=f)
    before = state(proc)
    assert errno_of(lambda: proc.mprotect(A, 2 * P, RW)) == E.EACCES
    assert state(proc) == before
    assert proc.mprotect(A, 2 * P, R | kb.PROT_EXEC) == 0  # VM_MAYEXEC is there


def test_mprotect_changes_the_part_before_a_hole_then_enomem(proc: Process) -> None:
    mapfix(proc, A, 2 * P)
    mapfix(proc, A + 3 * P, 2 * P)
    assert errno_of(lambda: proc.mprotect(A, 5 * P, R)) == E.ENOMEM
    prot = [v.flags & (kb.VM_READ | kb.VM_WRITE) for v in proc.vmas]
    assert prot == [kb.VM_READ, kb.VM_READ | kb.VM_WRITE]


def test_mprotect_of_an_unmapped_start_is_enomem(proc: Process) -> None:
    mapfix(proc, A + P, 2 * P)
    before = state(proc)
    assert errno_of(lambda: proc.mprotect(A, 3 * P, R)) == E.ENOMEM
    assert state(proc) == before


def test_mprotect_argument_checks(proc: Process) -> None:
    mapfix(proc, A, 2 * P)
    before = state(proc)
    assert errno_of(lambda: proc.mprotect(A + 1, P, R)) == E.EINVAL
    assert proc.mprotect(A + 8 * P, 0, R) == 0       # len 0: nothing examined
    assert errno_of(lambda: proc.mprotect(A, P, 0x40)) == E.EINVAL  # unknown prot bit
    assert errno_of(lambda: proc.mprotect(A, 2**64 - P, R)) == E.ENOMEM  # wraps
    assert state(proc) == before


def test_mprotect_grows_bits(proc: Process) -> None:
    """PROT_GROWSDOWN changes a VM_GROWSDOWN VMA from its start; on any other VMA it is
    EINVAL, and so is PROT_GROWSUP (x86 has no VM_GROWSUP VMA). Both together: EINVAL
    before any other check."""
    gd, gu = kb.PROT.PROT_GROWSDOWN, kb.PROT.PROT_GROWSUP
    mapfix(proc, A, 4 * P)
    mapfix(proc, A + 8 * P, 4 * P, flags=ANON | kb.MAP_GROWSDOWN)
    before = state(proc)
    assert errno_of(lambda: proc.mprotect(A + P, P, R | gd)) == E.EINVAL
    assert errno_of(lambda: proc.mprotect(A + P, P, R | gu)) == E.EINVAL
    assert errno_of(lambda: proc.mprotect(A + 1, 0, gd | gu)) == E.EINVAL
    assert errno_of(lambda: proc.mprotect(A + 5 * P, P, R | gd)) == E.ENOMEM  # below it
    assert state(proc) == before
    assert proc.mprotect(A + 10 * P, P, R | gd) == 0
    assert [(v.start, v.end, bool(v.flags & kb.VM_WRITE)) for v in proc.vmas] == [
        (A, A + 4 * P, True), (A + 8 * P, A + 11 * P, False), (A + 11 * P, A + 12 * P, True)]


def test_mprotect_making_private_memory_writable_charges_it(proc: Process) -> None:
    mapfix(proc, A, 2 * P, prot=R)
    assert not proc.vmas[0].flags & kb.VM_ACCOUNT
    proc.mprotect(A, 2 * P, RW)
    assert proc.vmas[0].flags & kb.VM_ACCOUNT
    proc.mprotect(A, 2 * P, R)  # touched or not, the charge is kept... except below
    assert bool(proc.vmas[0].flags & kb.VM_ACCOUNT) == (not proc.kernel.profile.mprotect_unaccounts)


def test_mprotect_read_only_drops_vm_account_of_untouched_anon_memory_on_modern(
        proc: Process) -> None:
    mapfix(proc, A, 2 * P)
    mapfix(proc, A + 4 * P, 2 * P)
    proc.write_pages(A + 4 * P, [1])
    proc.mprotect(A, 2 * P, R)
    proc.mprotect(A + 4 * P, 2 * P, R)
    untouched, touched = (bool(v.flags & kb.VM_ACCOUNT) for v in proc.vmas)
    assert touched
    assert untouched == (not proc.kernel.profile.mprotect_unaccounts)


def test_mprotect_back_to_writable_merges_only_if_vm_account_agrees(proc: Process) -> None:
    """The VM_ACCOUNT rule decides re-merging: on modern the untouched middle comes back
    charged, so it merges again; on 2.6.32 it never lost the charge."""
    mapfix(proc, A, 4 * P)
    proc.mprotect(A + P, 2 * P, R)
    proc.mprotect(A + P, 2 * P, RW)
    assert bounds(proc) == [(A, A + 4 * P)]


# -- fork and exit ----------------------------------------------------------------------------

def test_fork_copies_vmas_except_dontcopy_and_clears_locked(proc: Process) -> None:
    mapfix(proc, A, 2 * P, flags=ANON | kb.MAP_LOCKED)
    mapfix(proc, A + 4 * P, 2 * P)
    mapfix(proc, A + 8 * P, 2 * P)
    proc.madvise(A + 8 * P, 2 * P, kb.MADV_DONTFORK)
    proc.madvise(A + 4 * P, 2 * P, kb.MADV_MERGEABLE)
    child = proc.fork()
    assert bounds(child) == [(A, A + 2 * P), (A + 4 * P, A + 6 * P)]
    locked, merge = child.vmas
    assert not locked.flags & kb.VM_LOCKED and proc.vmas[0].flags & kb.VM_LOCKED
    assert merge.flags == proc.vmas[1].flags  # VM_MERGEABLE is copied
    assert child.mm_flags & kb.MMF_VM_MERGEABLE
    assert child.pid != proc.pid and child in proc.kernel.processes


def test_fork_shares_pages_until_written(proc: Process) -> None:
    mapfix(proc, A, 2 * P)
    proc.write_pages(A, [1, 2])
    child = proc.fork()
    assert child.mm.ptes[A // P] is proc.mm.ptes[A // P]
    child.write_pages(A, [9])
    assert [proc.read_page(A), child.read_page(A)] == [1, 9]
    assert child.mm.ptes[A // P + 1] is proc.mm.ptes[A // P + 1]


def test_forked_vmas_keep_their_layout_without_merging(proc: Process) -> None:
    """dup_mmap() copies VMA by VMA: two parent VMAs that differ only in VM_LOCKED become
    two child VMAs with equal flags, side by side and not merged."""
    mapfix(proc, A, 2 * P, flags=ANON | kb.MAP_LOCKED)
    mapfix(proc, A + 2 * P, 2 * P)
    child = proc.fork()
    a, b = child.vmas
    assert a.flags == b.flags and a.end == b.start


def test_anon_vma_after_fork(proc: Process) -> None:
    """2.6.32: the child's VMA shares the parent's anon_vma; 6.x (anon_vma_chain, 2.6.34):
    it gets its own, chained to the parent's."""
    mapfix(proc, A, 2 * P)
    proc.write_pages(A, [1])
    child = proc.fork()
    parent_vma, child_vma = proc.vmas[0], child.vmas[0]
    if proc.kernel.profile.anon_vma_chain:
        assert child_vma.anon_vma is not parent_vma.anon_vma
        assert child_vma.chain == (parent_vma.anon_vma, child_vma.anon_vma)
    else:
        assert child_vma.anon_vma is parent_vma.anon_vma


def test_fork_of_an_unregistered_mm_does_not_register_the_child(proc: Process) -> None:
    mapfix(proc, A, 2 * P)
    proc.kernel.inject("__ksm_enter")
    child = proc.fork()
    assert not child.mm_flags & kb.MMF_VM_MERGEABLE
    assert "ksm_fork" not in child.kernel.log[-1].functions()


def test_fork_when_ksm_enter_fails(proc: Process) -> None:
    """2.6.32 ksm_fork() runs before the copy and its failure fails fork with ENOMEM;
    6.x registers after the copy, best effort."""
    k = proc.kernel
    mapfix(proc, A, 2 * P)
    proc.madvise(A, 2 * P, kb.MADV_MERGEABLE)
    count = len(k.processes)
    k.inject("__ksm_enter")
    if not k.profile.ksm_fork_first:
        child = proc.fork()
        assert not child.mm_flags & kb.MMF_VM_MERGEABLE
        assert child.vmas[0].flags & kb.VM_MERGEABLE
        assert len(k.processes) == count + 1
    else:
        assert errno_of(proc.fork) == E.ENOMEM
        assert len(k.processes) == count
        assert "ksm_fork" in proc.last_trace.functions()  # type: ignore[union-attr]


def test_exit_clears_the_mm_flag_and_removes_the_process(proc: Process) -> None:
    k = proc.kernel
    mapfix(proc, A, 2 * P)
    proc.madvise(A, 2 * P, kb.MADV_MERGEABLE)
    proc.exit()
    assert not proc.alive and proc not in k.processes
    assert not proc.mm_flags & kb.MMF_VM_MERGEABLE
    assert proc.vmas == []
    fns = k.log[-1].functions()
    assert fns.index("__ksm_exit") < fns.index("exit_mmap")  # mmput(): ksm_exit() first
    with pytest.raises(ProcessLookupError):
        proc.madvise(A, P, kb.MADV_MERGEABLE)


def test_exit_of_an_unregistered_mm_skips_ksm(proc: Process) -> None:
    mapfix(proc, A, 2 * P)
    proc.exit()
    assert "__ksm_exit" not in proc.kernel.log[-1].functions()


# -- arguments that are not ints ----------------------------------------------------------------

@pytest.mark.parametrize("bad", [1.0, "4096", None, True])
def test_syscalls_refuse_non_int_arguments(proc: Process, bad: object) -> None:
    with pytest.raises(TypeError):
        proc.madvise(A, bad, kb.MADV_MERGEABLE)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        proc.mmap(bad, RW, ANON)  # type: ignore[arg-type]
    assert proc.vmas == []


def test_none_protection_mappings(proc: Process) -> None:
    mapfix(proc, A, 2 * P, prot=NONE)
    assert layout(proc)[0][2] & (kb.VM_READ | kb.VM_WRITE | kb.VM_EXEC) == kb.VM(0)
    with pytest.raises(OSError) as exc:
        proc.write_pages(A, [1])
    assert exc.value.errno == E.EFAULT
    assert not proc.mm.ptes


def test_every_constant_is_exported_at_the_top_level() -> None:
    """The design's public API: kb.VM_MERGEABLE, kb.PROT_NONE, kb.MAP_SHARED_VALIDATE, ..."""
    for enum_ in (kb.PROT, kb.MAP, kb.MADV, kb.VM, kb.MMF):
        for name, member in enum_.__members__.items():
            assert getattr(kb, name) is member and name in kb.__all__, name
    assert kb.PROT_NONE == 0 and kb.MAP_SHARED_VALIDATE == 3
