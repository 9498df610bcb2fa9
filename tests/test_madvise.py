"""madvise(2) on every profile: the entry checks in the kernel's order, the per-VMA walk over
holes and errors, split and merge of the flag-changing advices, EAGAIN, the KSM ignore list,
UNMERGEABLE's unmerge errors, and the errnos of the other advices.

References: mm/madvise.c (2.6.32 sys_madvise(), madvise_vma(), madvise_behavior(); 6.x
do_madvise(), madvise_walk_vmas(), madvise_vma_behavior()), mm/ksm.c ksm_madvise().
"""

from __future__ import annotations

import pytest
from helpers import ANON, RW, VALID, A, E, P, bounds, errno_of, layout, mapfix, state

import ksmbook as kb
from ksmbook.kernel import Process
from ksmbook.trace import Kind

M, U = kb.MADV_MERGEABLE, kb.MADV_UNMERGEABLE
U64 = 2**64

# Flag-changing advice, the flag it sets, and the advice that clears it again.
FLAG_ADVICE = [
    (kb.MADV_RANDOM, kb.VM_RAND_READ, kb.MADV_NORMAL),
    (kb.MADV_SEQUENTIAL, kb.VM_SEQ_READ, kb.MADV_NORMAL),
    (kb.MADV_DONTFORK, kb.VM_DONTCOPY, kb.MADV_DOFORK),
    (kb.MADV_MERGEABLE, kb.VM_MERGEABLE, kb.MADV_UNMERGEABLE),
]


def mergeable(p: Process) -> list[bool]:
    return [bool(v.flags & kb.VM_MERGEABLE) for v in p.vmas]


# -- entry checks ------------------------------------------------------------------------

@pytest.mark.parametrize("config_ksm", [True, False])
def test_which_advices_are_valid(profile: str, config_ksm: bool) -> None:
    """madvise_behavior_valid(): checked before anything else, so len 0 tells valid from not."""
    p = kb.Kernel(profile, config_ksm=config_ksm).spawn()
    valid = VALID[profile] | ({12, 13} if config_ksm else set())
    for advice in [*range(0, 110), 1000, 2**31 - 1, -1]:
        want = 0 if advice in valid else E.EINVAL
        assert errno_of(lambda a=advice: p.madvise(A, 0, a)) == want, advice


@pytest.mark.parametrize("advice", [M, U])
def test_ksm_advice_without_config_ksm_is_einval_before_any_range_check(
        profile: str, advice: int) -> None:
    p = kb.Kernel(profile, config_ksm=False).spawn()
    mapfix(p, A, 4 * P)
    before = state(p)
    for addr, length in [(A, 0), (A + 1, 0), (A + 1, P), (A, U64 - 1), (A, 4 * P)]:
        assert errno_of(lambda a=addr, n=length: p.madvise(a, n, advice)) == E.EINVAL
        assert p.last_trace is not None
        assert p.last_trace.functions()[-1] == "madvise_behavior_valid"
        assert "CONFIG_KSM is not set" in str(p.last_trace)
    assert state(p) == before


def test_unaligned_start_is_einval(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    before = state(proc)
    for length in (0, P, 1):
        assert errno_of(lambda n=length: proc.madvise(A + 8, n, M)) == E.EINVAL
        assert "not page aligned" in str(proc.last_trace)
    assert state(proc) == before


def test_start_is_checked_before_the_length(proc: Process) -> None:
    """An unaligned start with a wrapping length: the start check speaks first."""
    assert errno_of(lambda: proc.madvise(A + 1, U64 - 1, M)) == E.EINVAL
    assert "not page aligned" in str(proc.last_trace)


@pytest.mark.parametrize("length", [U64 - 1, U64 - P + 1])
def test_len_rounding_up_to_zero_is_einval(proc: Process, length: int) -> None:
    mapfix(proc, A, 4 * P)
    before = state(proc)
    assert errno_of(lambda: proc.madvise(A, length, M)) == E.EINVAL
    assert "len rounds up" in str(proc.last_trace)
    assert state(proc) == before


def test_start_plus_len_wrapping_is_einval(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    before = state(proc)
    assert errno_of(lambda: proc.madvise(A, U64 - A, M)) == E.EINVAL  # end is 2**64: wraps to 0
    assert errno_of(lambda: proc.madvise(A, U64 - P, M)) == E.EINVAL
    assert "wraps" in str(proc.last_trace)
    assert state(proc) == before


def test_len_zero_is_success_without_looking_at_mappings(proc: Process) -> None:
    assert proc.madvise(A, 0, M) == 0                # nothing is mapped at all
    assert "find_vma" not in proc.last_trace.functions()  # type: ignore[union-attr]
    assert proc.mm_flags == kb.MMF(0)


def test_unaligned_length_rounds_up_to_a_page(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    proc.madvise(A, 1, kb.MADV_DONTFORK)
    assert bounds(proc) == [(A, A + P), (A + P, A + 4 * P)]


def test_huge_length_that_does_not_wrap_advises_everything_above_then_enomem(
        proc: Process) -> None:
    mapfix(proc, A, 2 * P)
    mapfix(proc, A + 4 * P, 2 * P)
    assert errno_of(lambda: proc.madvise(A, U64 - A - P, kb.MADV_DONTFORK)) == E.ENOMEM
    assert all(v.flags & kb.VM_DONTCOPY for v in proc.vmas)


# -- the walk over VMAs: holes and errors ------------------------------------------------------

def test_holes_give_enomem_after_advising_every_mapped_part(proc: Process) -> None:
    mapfix(proc, 0x10000, 0x2000)
    mapfix(proc, 0x14000, 0x2000)
    mapfix(proc, 0x18000, 0x2000)
    assert errno_of(lambda: proc.madvise(0x11000, 0x8000, M)) == E.ENOMEM
    assert bounds(proc) == [(0x10000, 0x11000), (0x11000, 0x12000), (0x14000, 0x16000),
                            (0x18000, 0x19000), (0x19000, 0x1A000)]
    assert mergeable(proc) == [False, True, True, True, False]
    assert proc.mm_flags & kb.MMF_VM_MERGEABLE


def test_range_entirely_in_a_hole_changes_nothing(proc: Process) -> None:
    mapfix(proc, 0x10000, 0x2000)
    mapfix(proc, 0x14000, 0x2000)
    before = state(proc)
    assert errno_of(lambda: proc.madvise(0x12000, 0x2000, M)) == E.ENOMEM
    assert state(proc) == before


def test_range_past_the_last_vma_and_empty_mm_are_enomem(proc: Process) -> None:
    assert errno_of(lambda: proc.madvise(0x10000, P, M)) == E.ENOMEM
    mapfix(proc, 0x10000, 0x2000)
    assert errno_of(lambda: proc.madvise(0x17000, P, M)) == E.ENOMEM
    assert proc.mm_flags == kb.MMF(0)


def test_other_errors_stop_the_walk_without_rollback(proc: Process) -> None:
    """DOFORK: the first VMA is changed, the VM_IO one fails, the third is never reached."""
    k = proc.kernel
    dev = k.create_device("io0", "io")
    mapfix(proc, A, 2 * P)
    proc.mmap(2 * P, RW, kb.MAP_SHARED | kb.MAP_FIXED, addr=A + 2 * P, file=dev)
    mapfix(proc, A + 4 * P, 2 * P)
    proc.madvise(A, 2 * P, kb.MADV_DONTFORK)
    proc.madvise(A + 4 * P, 2 * P, kb.MADV_DONTFORK)
    assert errno_of(lambda: proc.madvise(A, 6 * P, kb.MADV_DOFORK)) == E.EINVAL
    dontcopy = [bool(v.flags & kb.VM_DONTCOPY) for v in proc.vmas]
    assert dontcopy == [False, False, True]
    assert "VM_IO" in str(proc.last_trace)


def test_an_error_after_a_hole_replaces_enomem(proc: Process) -> None:
    dev = proc.kernel.create_device("io0", "io")
    mapfix(proc, A, 2 * P)
    proc.mmap(2 * P, RW, kb.MAP_SHARED | kb.MAP_FIXED, addr=A + 4 * P, file=dev)
    proc.madvise(A, 2 * P, kb.MADV_DONTFORK)
    assert errno_of(lambda: proc.madvise(A, 6 * P, kb.MADV_DOFORK)) == E.EINVAL
    assert not proc.vmas[0].flags & kb.VM_DONTCOPY


def test_dontneed_stops_at_a_locked_vma(proc: Process) -> None:
    mapfix(proc, A, 2 * P)
    mapfix(proc, A + 2 * P, 2 * P, flags=ANON | kb.MAP_LOCKED)
    mapfix(proc, A + 4 * P, 2 * P, prot=kb.PROT_READ | kb.PROT_WRITE | kb.PROT_EXEC)
    proc.write_pages(A, [1, 2])
    proc.write_pages(A + 4 * P, [5, 6])
    assert errno_of(lambda: proc.madvise(A, 6 * P, kb.MADV_DONTNEED)) == E.EINVAL
    assert [proc.read_page(A + i * P) for i in (0, 1, 4, 5)] == [0, 0, 5, 6]


# -- split and merge ---------------------------------------------------------------------------

@pytest.mark.parametrize(("advice", "flag", "undo"), FLAG_ADVICE)
def test_advice_in_the_middle_splits_in_three_and_the_undo_merges_back(
        proc: Process, advice: int, flag: kb.VM, undo: int) -> None:
    mapfix(proc, A, 4 * P)
    (_, _, base), = layout(proc)
    assert proc.madvise(A + P, 2 * P, advice) == 0
    assert layout(proc) == [(A, A + P, base), (A + P, A + 3 * P, base | flag),
                            (A + 3 * P, A + 4 * P, base)]
    assert proc.mm.map_count == 3
    assert proc.madvise(A + P, 2 * P, undo) == 0
    assert layout(proc) == [(A, A + 4 * P, base)]
    assert proc.mm.map_count == 1


def test_split_at_start_only_and_at_end_only(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    proc.madvise(A + 2 * P, 2 * P, kb.MADV_RANDOM)
    assert bounds(proc) == [(A, A + 2 * P), (A + 2 * P, A + 4 * P)]
    mapfix(proc, A + 8 * P, 4 * P)
    proc.madvise(A + 8 * P, P, kb.MADV_RANDOM)
    assert bounds(proc)[2:] == [(A + 8 * P, A + 9 * P), (A + 9 * P, A + 12 * P)]


def test_whole_vma_changes_in_place(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    vma = proc.vmas[0]
    proc.madvise(A, 4 * P, M)
    assert proc.vmas == [vma] and vma.flags & kb.VM_MERGEABLE
    assert "split_vma" not in proc.last_trace.functions()  # type: ignore[union-attr]


def test_split_file_mapping_keeps_each_piece_at_its_file_offset(proc: Process) -> None:
    f = proc.kernel.create_file("data.bin", 16 * P)
    proc.mmap(6 * P, kb.PROT_READ, kb.MAP_PRIVATE | kb.MAP_FIXED, addr=A, file=f,
              offset=2 * P)
    proc.madvise(A + P, 3 * P, kb.MADV_SEQUENTIAL)
    assert [(v.start, v.pgoff) for v in proc.vmas] == [(A, 2), (A + P, 3), (A + 4 * P, 6)]
    proc.madvise(A, 6 * P, kb.MADV_NORMAL)
    assert [(v.start, v.end, v.pgoff) for v in proc.vmas] == [(A, A + 6 * P, 2)]


def test_merge_into_next_from_inside_a_vma(proc: Process) -> None:
    """docs/kernel-semantics.md §3: V=[0x10000,0x14000) next to mergeable W=[0x14000,0x18000)."""
    mapfix(proc, 0x10000, 0x8000)
    proc.madvise(0x14000, 0x4000, M)
    assert proc.madvise(0x12000, 0x2000, M) == 0
    assert bounds(proc) == [(0x10000, 0x12000), (0x12000, 0x18000)]
    assert mergeable(proc) == [False, True]
    assert "merged with next" in str(proc.last_trace)


def test_merge_into_prev(proc: Process) -> None:
    mapfix(proc, 0x10000, 0x8000)
    proc.madvise(0x10000, 0x4000, M)
    assert proc.madvise(0x14000, 0x2000, M) == 0
    assert bounds(proc) == [(0x10000, 0x16000), (0x16000, 0x18000)]
    assert mergeable(proc) == [True, False]
    assert "merged with prev" in str(proc.last_trace)


def test_whole_vma_merges_into_next(proc: Process) -> None:
    """Right-only merge of a whole VMA: it grows over next, next is removed."""
    mapfix(proc, 0x10000, 0x8000)
    proc.madvise(0x10000, 0x2000, kb.MADV_DONTFORK)
    proc.madvise(0x14000, 0x4000, M)
    assert bounds(proc) == [(0x10000, 0x12000), (0x12000, 0x14000), (0x14000, 0x18000)]
    proc.madvise(0x12000, 0x2000, M)
    assert bounds(proc) == [(0x10000, 0x12000), (0x12000, 0x18000)]
    assert mergeable(proc) == [False, True]
    assert "split_vma" not in proc.last_trace.functions()  # type: ignore[union-attr]


def test_merge_with_prev_and_next(proc: Process) -> None:
    mapfix(proc, 0x10000, 0x6000)
    proc.madvise(0x10000, 0x6000, M)
    proc.madvise(0x12000, 0x2000, U)
    assert len(proc.vmas) == 3
    proc.madvise(0x12000, 0x2000, M)
    assert bounds(proc) == [(0x10000, 0x16000)]
    assert "merged with prev and next" in str(proc.last_trace)


def test_no_merge_when_other_flags_differ(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    proc.madvise(A, 2 * P, kb.MADV_DONTFORK)
    proc.madvise(A, 2 * P, M)
    proc.madvise(A + 2 * P, 2 * P, M)
    assert bounds(proc) == [(A, A + 2 * P), (A + 2 * P, A + 4 * P)]
    assert mergeable(proc) == [True, True]


@pytest.mark.parametrize(("offset2", "merges"), [(2, True), (8, False)])
def test_file_pieces_merge_only_when_their_offsets_are_contiguous(
        proc: Process, offset2: int, merges: bool) -> None:
    f = proc.kernel.create_file("data.bin", 16 * P)
    flags = kb.MAP_PRIVATE | kb.MAP_FIXED
    proc.mmap(2 * P, kb.PROT_READ, flags, addr=A, file=f, offset=0)
    proc.madvise(A, 2 * P, kb.MADV_DONTFORK)
    proc.mmap(2 * P, kb.PROT_READ, flags, addr=A + 2 * P, file=f, offset=offset2 * P)
    assert len(proc.vmas) == 2
    proc.madvise(A + 2 * P, 2 * P, kb.MADV_DONTFORK)
    assert len(proc.vmas) == (1 if merges else 2)


def test_pieces_of_different_files_never_merge(proc: Process) -> None:
    k = proc.kernel
    f, g = k.create_file("f", 4 * P), k.create_file("g", 4 * P)
    flags = kb.MAP_PRIVATE | kb.MAP_FIXED
    proc.mmap(2 * P, kb.PROT_READ, flags, addr=A, file=f)
    proc.mmap(2 * P, kb.PROT_READ, flags, addr=A + 2 * P, file=g, offset=2 * P)
    proc.madvise(A, 4 * P, kb.MADV_RANDOM)
    assert len(proc.vmas) == 2


def _two_anon_vmas(p: Process) -> None:
    """[A, A+4p) and [A+4p, A+6p): same flags, adjacent, different anon_vmas.

    Each written half gets its own anon_vma; the gap mapped last merges into its left
    neighbour only, since vma_merge() will not join two different anon_vmas."""
    mapfix(p, A, 2 * P)
    p.write_pages(A, [1])
    mapfix(p, A + 4 * P, 2 * P)
    p.write_pages(A + 4 * P, [2])
    mapfix(p, A + 2 * P, 2 * P)


def test_vmas_with_different_anon_vmas_never_merge(proc: Process) -> None:
    _two_anon_vmas(proc)
    a, b = proc.vmas
    assert bounds(proc) == [(A, A + 4 * P), (A + 4 * P, A + 6 * P)]
    assert a.flags == b.flags and a.anon_vma is not b.anon_vma
    proc.madvise(A, 6 * P, M)
    proc.madvise(A, 6 * P, U)
    assert bounds(proc) == [(A, A + 4 * P), (A + 4 * P, A + 6 * P)]


def test_special_vmas_never_merge(proc: Process) -> None:
    dev = proc.kernel.create_device("mem", "remap_pfn_range")
    flags = kb.MAP_SHARED | kb.MAP_FIXED
    proc.mmap(2 * P, kb.PROT_READ, flags, addr=A, file=dev)
    proc.mmap(2 * P, kb.PROT_READ, flags, addr=A + 2 * P, file=dev, offset=2 * P)
    assert len(proc.vmas) == 2
    proc.madvise(A, 4 * P, kb.MADV_RANDOM)
    proc.madvise(A, 4 * P, kb.MADV_NORMAL)
    assert len(proc.vmas) == 2
    assert "VM_SPECIAL" in str(proc.last_trace)


# -- EAGAIN --------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["constructor", "sysctl"])
def test_split_refused_at_max_map_count_is_eagain(profile: str, how: str) -> None:
    if how == "constructor":
        k = kb.Kernel(profile, max_map_count=1)
    else:
        k = kb.Kernel(profile)
        k.sysctl["max_map_count"] = 1
    p = k.spawn()
    mapfix(p, A, 4 * P)
    before = state(p)
    assert errno_of(lambda: p.madvise(A + P, 2 * P, M)) == E.EAGAIN
    assert state(p)[0] == before[0]
    # ksm_madvise() registered the mm before the split was refused: no undo
    assert p.mm_flags & kb.MMF_VM_MERGEABLE
    assert "ENOMEM becomes EAGAIN" in str(p.last_trace)
    assert p.madvise(A, 4 * P, M) == 0  # no split needed: fine at the limit


def test_second_split_refused_keeps_the_first(profile: str) -> None:
    k = kb.Kernel(profile, max_map_count=2)
    p = k.spawn()
    mapfix(p, A, 4 * P)
    flags = p.vmas[0].flags
    assert errno_of(lambda: p.madvise(A + P, 2 * P, kb.MADV_RANDOM)) == E.EAGAIN
    assert layout(p) == [(A, A + P, flags), (A + P, A + 4 * P, flags)]


def test_split_allocation_failure_is_eagain(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    proc.kernel.inject("split_vma")
    before = state(proc)
    assert errno_of(lambda: proc.madvise(A + P, P, kb.MADV_DONTFORK)) == E.EAGAIN
    assert state(proc) == before
    assert proc.madvise(A + P, P, kb.MADV_DONTFORK) == 0  # the injected failure was one


def test_ksm_enter_failure_is_eagain(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    proc.kernel.inject("__ksm_enter")
    before = state(proc)
    assert errno_of(lambda: proc.madvise(A + P, P, M)) == E.EAGAIN
    assert state(proc) == before
    assert not proc.mm_flags & kb.MMF_VM_MERGEABLE
    assert "__ksm_enter" in proc.last_trace.functions()  # type: ignore[union-attr]
    assert proc.madvise(A + P, P, M) == 0 and proc.mm_flags & kb.MMF_VM_MERGEABLE


def test_ksm_enter_runs_once_per_mm(proc: Process) -> None:
    mapfix(proc, A, 8 * P)
    proc.madvise(A, P, M)
    proc.kernel.inject("__ksm_enter")  # would fail, but the mm is registered already
    assert proc.madvise(A + 4 * P, P, M) == 0
    assert "__ksm_enter" not in proc.last_trace.functions()  # type: ignore[union-attr]


# -- the KSM ignore list -------------------------------------------------------------------

def _produce(flag: kb.VM, k: kb.Kernel, p: Process) -> tuple[int, int]:
    """Map something whose VMA carries `flag`, the way mmap or a driver would; returns
    (address, length)."""
    if flag == kb.VM_MERGEABLE:
        mapfix(p, A, 4 * P)
        p.madvise(A, 4 * P, M)
        return A, 4 * P
    if flag == kb.VM_SHARED:                            # shmem_zero_setup()
        mapfix(p, A, 4 * P, flags=kb.MAP_SHARED | kb.MAP_ANONYMOUS)
        return A, 4 * P
    if flag == kb.VM_MAYSHARE:                          # MAP_SHARED of a file opened O_RDONLY
        f = k.create_file("ro.bin", 4 * P, writable=False)
        mapfix(p, A, 4 * P, prot=kb.PROT_READ, flags=kb.MAP_SHARED, file=f)
        return A, 4 * P
    if flag == kb.VM_HUGETLB:                           # MAP_HUGETLB with a reserved huge page
        k.sysctl["nr_hugepages"] = 1
        return p.mmap(kb.HPAGE_SIZE, RW, ANON | kb.MAP_HUGETLB), kb.HPAGE_SIZE
    style = {kb.VM_PFNMAP: "remap_pfn_range", kb.VM_IO: "io", kb.VM_RESERVED: "reserved",
             kb.VM_DONTEXPAND: "dontexpand", kb.VM_INSERTPAGE: "vm_insert_page",
             kb.VM_MIXEDMAP: "vm_insert_mixed", kb.VM_SAO: "sao"}.get(flag)
    # VM_DROPPABLE comes from MAP_DROPPABLE (6.11), which the simulator's mmap lacks: a
    # device that sets the flag stands in for it.
    dev = k.create_device("dev0", style if style is not None else flag)
    mapfix(p, A, 4 * P, flags=kb.MAP_SHARED, file=dev)
    return A, 4 * P


def _ignore_cases() -> list[tuple[str, kb.VM]]:
    return [(name, flag) for name in kb.PROFILES
            for flag in kb.VM if flag and kb.get_profile(name).ksm_ignore & flag]


def test_the_ignore_lists_are_the_kernels() -> None:
    """docs/kernel-semantics.md §5: the seed's list (kept in 2.6.32) and 6.12
    vma_ksm_compatible()."""
    old = {"VM_MERGEABLE", "VM_SHARED", "VM_MAYSHARE", "VM_PFNMAP", "VM_IO", "VM_DONTEXPAND",
           "VM_RESERVED", "VM_HUGETLB", "VM_INSERTPAGE", "VM_MIXEDMAP", "VM_SAO"}
    new = {"VM_MERGEABLE", "VM_SHARED", "VM_MAYSHARE", "VM_PFNMAP", "VM_IO", "VM_DONTEXPAND",
           "VM_HUGETLB", "VM_MIXEDMAP", "VM_DROPPABLE"}
    names = {n: {f.name for f in kb.VM if f and kb.get_profile(n).ksm_ignore & f}
             for n in kb.PROFILES}
    assert names == {"seed": old, "2.6.32": old, "modern": new}


@pytest.mark.parametrize(("profile_name", "flag"), _ignore_cases(),
                         ids=[f"{n}-{f.name}" for n, f in _ignore_cases()])
def test_mergeable_is_silently_ignored(profile_name: str, flag: kb.VM) -> None:
    k = kb.Kernel(profile_name)
    p = k.spawn()
    addr, length = _produce(flag, k, p)
    vma = p.mm.vma_at(addr)
    assert vma is not None and vma.flags & flag
    before = state(p)
    # a piece in the middle: ignoring it means no split either
    assert p.madvise(addr + P, P, M) == 0
    assert p.madvise(addr, length, M) == 0
    assert state(p) == before
    text = str(p.last_trace)
    assert "ignored" in text and flag.name in text
    assert "split_vma" not in p.last_trace.functions()  # type: ignore[union-attr]
    if flag != kb.VM_MERGEABLE:
        assert not p.mm_flags & kb.MMF_VM_MERGEABLE
        assert not vma.flags & kb.VM_MERGEABLE


def test_what_is_not_on_the_list_is_marked(proc: Process) -> None:
    """VM_LOCKED, VM_DONTCOPY, stacks and private file mappings are never excluded."""
    k = proc.kernel
    f = k.create_file("data.bin", 4 * P)
    mapfix(proc, A, 2 * P, flags=ANON | kb.MAP_LOCKED)
    mapfix(proc, A + 4 * P, 2 * P, flags=ANON | kb.MAP_GROWSDOWN)
    mapfix(proc, A + 8 * P, 2 * P, prot=kb.PROT_READ, flags=kb.MAP_PRIVATE, file=f)
    mapfix(proc, A + 12 * P, 2 * P, prot=kb.PROT.PROT_NONE)
    proc.madvise(A + 12 * P, 2 * P, kb.MADV_DONTFORK)
    assert errno_of(lambda: proc.madvise(A, 14 * P, M)) == E.ENOMEM  # the holes
    assert mergeable(proc) == [True] * 4


def test_unmergeable_on_a_vma_that_is_not_mergeable_is_ignored(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    before = state(proc)
    assert proc.madvise(A + P, P, U) == 0
    assert state(proc) == before
    assert "ignored: VMA is not VM_MERGEABLE" in str(proc.last_trace)


def test_unmergeable_keeps_the_mm_registered(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    proc.madvise(A, 4 * P, M)
    proc.madvise(A, 4 * P, U)
    assert mergeable(proc) == [False]
    assert proc.mm_flags & kb.MMF_VM_MERGEABLE  # only ksmd (or exit) drops the registration


# -- UNMERGEABLE's unmerge and its errors (2.6.32, modern) -----------------------------------------

def _ksm_pages(k: kb.Kernel) -> Process:
    """A process whose [A, A+4p) holds two KSM pages, made by ksmd itself."""
    p = k.spawn()
    mapfix(p, A, 4 * P)
    p.write_pages(A, [7, 7, 8, 8])
    p.madvise(A, 4 * P, M)
    k.sysfs["run"] = 1
    k.ksmd.full_scans(3)
    k.sysfs["run"] = 0
    assert sum(1 for vpn in range(A // P, A // P + 4) if p.mm.ptes[vpn].ksm is not None) == 4
    return p


@pytest.mark.parametrize("profile_name", ["2.6.32", "modern"])
@pytest.mark.parametrize(("point", "err"), [("break_ksm", E.EAGAIN),
                                            ("signal_pending", E.EINTR)])
def test_unmerge_errors_leave_vm_mergeable_set(profile_name: str, point: str, err: int) -> None:
    k = kb.Kernel(profile_name)
    p = _ksm_pages(k)
    k.inject(point)
    assert errno_of(lambda: p.madvise(A, 4 * P, U)) == err
    assert mergeable(p) == [True]
    assert p.madvise(A, 4 * P, U) == 0
    assert mergeable(p) == [False]
    assert all(p.mm.ptes[vpn].ksm is None for vpn in range(A // P, A // P + 4))
    assert [p.read_page(A + i * P) for i in range(4)] == [7, 7, 8, 8]


@pytest.mark.parametrize("profile_name", ["2.6.32", "modern"])
def test_unmerge_of_a_part_splits_and_breaks_only_that_part(profile_name: str) -> None:
    k = kb.Kernel(profile_name)
    p = _ksm_pages(k)
    assert p.madvise(A + 2 * P, 2 * P, U) == 0
    assert mergeable(p) == [True, False]
    ksm = [p.mm.ptes[vpn].ksm is not None for vpn in range(A // P, A // P + 4)]
    assert ksm == [True, True, False, False]


def test_injected_unmerge_failures_need_ksm_pages(profile: str) -> None:
    """Without KSM pages there is nothing to break, so neither fault point is reached."""
    k = kb.Kernel(profile)
    p = k.spawn()
    mapfix(p, A, 4 * P)
    p.write_pages(A, [1, 1])
    p.madvise(A, 4 * P, M)
    k.inject("break_ksm")
    assert p.madvise(A, 4 * P, U) == 0
    assert mergeable(p) == [False]


# -- the other advices' errnos -----------------------------------------------------------------

def test_willneed_on_anonymous_memory(proc: Process) -> None:
    """2.6.32 madvise_willneed(): EBADF without a file; 6.x reads swap ahead (0)."""
    mapfix(proc, A, 2 * P)
    want = E.EBADF if proc.kernel.profile.willneed_anon_ebadf else 0
    assert errno_of(lambda: proc.madvise(A, 2 * P, kb.MADV_WILLNEED)) == want
    f = proc.kernel.create_file("data.bin", 4 * P)
    mapfix(proc, A + 4 * P, 2 * P, prot=kb.PROT_READ, flags=kb.MAP_PRIVATE, file=f)
    assert proc.madvise(A + 4 * P, 2 * P, kb.MADV_WILLNEED) == 0


def test_dontneed_drops_anonymous_pages(proc: Process) -> None:
    mapfix(proc, A, 2 * P)
    proc.write_pages(A, [3, 4])
    assert proc.madvise(A + P, P, kb.MADV_DONTNEED) == 0
    assert [proc.read_page(A), proc.read_page(A + P)] == [3, 0]
    assert len(proc.vmas) == 1  # never splits


def test_dontneed_on_a_private_file_mapping_shows_the_file_again(proc: Process) -> None:
    f = proc.kernel.create_file("data.bin", 2 * P, contents=[5, 6])
    mapfix(proc, A, 2 * P, flags=kb.MAP_PRIVATE, file=f)
    proc.write_pages(A, [9])
    assert proc.read_page(A) == 9
    proc.madvise(A, 2 * P, kb.MADV_DONTNEED)
    assert [proc.read_page(A), proc.read_page(A + P)] == [5, 6]


def test_dontneed_on_locked_memory_is_einval(proc: Process) -> None:
    mapfix(proc, A, 2 * P, flags=ANON | kb.MAP_LOCKED)
    assert errno_of(lambda: proc.madvise(A, 2 * P, kb.MADV_DONTNEED)) == E.EINVAL


def test_dontneed_on_pfnmap_is_einval(proc: Process) -> None:
    dev = proc.kernel.create_device("mem", "remap_pfn_range")
    proc.mmap(2 * P, kb.PROT_READ, kb.MAP_SHARED | kb.MAP_FIXED, addr=A, file=dev)
    assert errno_of(lambda: proc.madvise(A, 2 * P, kb.MADV_DONTNEED)) == E.EINVAL


def test_remove_errnos(proc: Process) -> None:
    """madvise_remove(): no file EINVAL, not shared-writable EACCES, 2.6.32 ext4 ENOSYS."""
    k = proc.kernel
    mapfix(proc, A, 2 * P)
    assert errno_of(lambda: proc.madvise(A, 2 * P, kb.MADV_REMOVE)) == E.EINVAL
    ext4 = k.create_file("data.bin", 4 * P)
    shm = k.create_file("shm.bin", 4 * P, fs="tmpfs")
    mapfix(proc, A + 4 * P, 2 * P, prot=kb.PROT_READ, flags=kb.MAP_PRIVATE, file=shm)
    assert errno_of(lambda: proc.madvise(A + 4 * P, 2 * P, kb.MADV_REMOVE)) == E.EACCES
    # shared but mapped read-only: 2.6.32 wants VM_WRITE, 6.x only VM_MAYWRITE
    mapfix(proc, A + 8 * P, 2 * P, prot=kb.PROT_READ, flags=kb.MAP_SHARED, file=shm)
    want = E.EACCES if k.profile.remove_needs_write else 0
    assert errno_of(lambda: proc.madvise(A + 8 * P, 2 * P, kb.MADV_REMOVE)) == want
    mapfix(proc, A + 12 * P, 2 * P, flags=kb.MAP_SHARED, file=ext4)
    want = 0 if "ext4" in k.profile.remove_filesystems else E.ENOSYS  # 2.6.32: only tmpfs
    assert errno_of(lambda: proc.madvise(A + 12 * P, 2 * P, kb.MADV_REMOVE)) == want
    mapfix(proc, A + 16 * P, 2 * P, flags=kb.MAP_SHARED, file=shm)
    proc.write_pages(A + 16 * P, [4, 5])
    assert proc.madvise(A + 16 * P, P, kb.MADV_REMOVE) == 0
    assert [proc.read_page(A + 16 * P), proc.read_page(A + 17 * P)] == [0, 5]


def test_remove_on_locked_memory_is_einval_first(proc: Process) -> None:
    shm = proc.kernel.create_file("shm.bin", 4 * P, fs="tmpfs")
    mapfix(proc, A, 2 * P, flags=kb.MAP_SHARED | kb.MAP_LOCKED, file=shm)
    assert errno_of(lambda: proc.madvise(A, 2 * P, kb.MADV_REMOVE)) == E.EINVAL


def test_dofork_on_vm_io_is_einval_and_dontfork_is_not(proc: Process) -> None:
    dev = proc.kernel.create_device("io0", "io")
    proc.mmap(4 * P, RW, kb.MAP_SHARED | kb.MAP_FIXED, addr=A, file=dev)
    assert errno_of(lambda: proc.madvise(A, 4 * P, kb.MADV_DOFORK)) == E.EINVAL
    assert proc.madvise(A + P, P, kb.MADV_DONTFORK) == 0
    assert [bool(v.flags & kb.VM_DONTCOPY) for v in proc.vmas] == [False, True, False]


def test_guard_install_gives_an_anonymous_vma_its_anon_vma() -> None:
    """6.18 madvise_guard_install(): anon_vma_prepare() on an anonymous VMA, so a
    never-written VMA then keeps VM_ACCOUNT when made read-only."""
    p = kb.Kernel("modern").spawn()
    mapfix(p, A, 4 * P)
    assert p.madvise(A, 2 * P, kb.MADV_GUARD_INSTALL) == 0
    assert p.vmas[0].anon_vma is not None
    p.mprotect(A, 4 * P, kb.PROT_READ)
    assert p.vmas[0].flags & kb.VM_ACCOUNT


def test_repeated_advice_is_a_no_op(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    proc.madvise(A + P, P, kb.MADV_RANDOM)
    before = state(proc)
    assert proc.madvise(A + P, P, kb.MADV_RANDOM) == 0
    assert state(proc) == before
    assert "flags unchanged" in str(proc.last_trace)


def test_random_and_sequential_replace_each_other(proc: Process) -> None:
    mapfix(proc, A, P)
    proc.madvise(A, P, kb.MADV_SEQUENTIAL)
    proc.madvise(A, P, kb.MADV_RANDOM)
    flags = proc.vmas[0].flags
    assert flags & kb.VM_RAND_READ and not flags & kb.VM_SEQ_READ


# -- the trace -------------------------------------------------------------------------------

def _subsequence(needles: list[str], haystack: list[str]) -> bool:
    it = iter(haystack)
    return all(n in it for n in needles)


def test_trace_of_the_issue_example_on_the_seed() -> None:
    k = kb.Kernel("seed")
    p = k.spawn()
    a = p.mmap(8 * P, RW, ANON)
    p.madvise(a + 2 * P, 4 * P, M)
    tr = p.last_trace
    assert tr is not None and tr.result == 0
    path = ["sys_madvise", "madvise_vma", "madvise_behavior", "ksm_madvise", "__ksm_enter",
            "vma_merge", "split_vma", "split_vma"]
    assert _subsequence(path, tr.functions())
    assert tr.functions().count("split_vma") == 2
    depth = {s.function: s.depth for s in tr.steps}
    assert depth["sys_madvise"] < depth["madvise_vma"] < depth["madvise_behavior"] < (
        depth["ksm_madvise"]) < depth["__ksm_enter"]
    assert [e.kind for e in tr.events] == [Kind.SPLIT, Kind.SPLIT, Kind.FLAGS]
    assert str(tr).startswith(f"madvise({a + 2 * P:#x}, {4 * P}, MADV_MERGEABLE) = 0")


def test_trace_names_each_kernels_own_functions() -> None:
    p = kb.Kernel("modern").spawn()
    a = p.mmap(8 * P, RW, ANON)
    p.madvise(a + 2 * P, 4 * P, M)
    fns = p.last_trace.functions()  # type: ignore[union-attr]
    assert _subsequence(["do_madvise", "madvise_vma_behavior", "ksm_madvise", "__ksm_enter",
                         "split_vma", "split_vma"], fns)
    assert "sys_madvise" not in fns


def test_trace_says_why_advice_was_ignored(proc: Process) -> None:
    mapfix(proc, A, 4 * P, flags=kb.MAP_SHARED | kb.MAP_ANONYMOUS)
    proc.madvise(A, 4 * P, M)
    notes = [s.message for s in proc.last_trace.steps  # type: ignore[union-attr]
             if s.function == "ksm_madvise"]
    assert any(m.startswith("ignored:") and "VM_SHARED" in m for m in notes)


def test_trace_of_a_failed_call_records_the_errno(proc: Process) -> None:
    with pytest.raises(OSError) as exc:
        proc.madvise(A, P, M)
    assert exc.value.errno == E.ENOMEM
    assert proc.last_trace is not None and proc.last_trace.errno == E.ENOMEM
    assert str(proc.last_trace).splitlines()[0].endswith("= -1 ENOMEM")
