"""The mm side of KSM: MMF_VM_MERGEABLE, __ksm_enter() and the mm_slot list, the fork and
exit hooks (ksm_fork(), ksm_exit() -> __ksm_exit()), and what the seed's dummy does not have.

References: the seed commit's mm/ksm.c and include/linux/ksm.h; 2.6.32 mm/ksm.c
__ksm_enter(), __ksm_exit(); kernel/fork.c dup_mmap(); 6.x include/linux/ksm.h ksm_fork().
"""

from __future__ import annotations

import pytest
from helpers import ANON, RW, A, E, P, errno_of, mapfix

import ksmbook as kb
from ksmbook.kernel import Process
from ksmbook.ksmd import KsmdUnavailable

M, U = kb.MADV_MERGEABLE, kb.MADV_UNMERGEABLE
WITH_KSMD = ["2.6.32", "modern"]


def registered(p: Process) -> bool:
    return bool(p.mm_flags & kb.MMF_VM_MERGEABLE)


def slot_pids(k: kb.Kernel) -> list[int | None]:
    return [s.pid for s in k.ksmd.mm_slots()]


def mergeable_process(k: kb.Kernel, contents: list[int] | None = None) -> Process:
    p = k.spawn()
    mapfix(p, A, 4 * P)
    if contents:
        p.write_pages(A, contents)
    p.madvise(A, 4 * P, M)
    return p


# -- what each kernel has --------------------------------------------------------------------

def test_the_seed_has_no_ksmd() -> None:
    k = kb.Kernel("seed")
    with pytest.raises(KsmdUnavailable, match="no ksmd"):
        _ = k.ksmd
    with pytest.raises(KsmdUnavailable):
        _ = k.sysfs
    p = mergeable_process(k)
    assert registered(p)  # the dummy __ksm_enter() only sets the bit
    assert p.last_trace is not None
    assert [s.message for s in p.last_trace.steps if s.function == "__ksm_enter"] == [
        "", "set MMF_VM_MERGEABLE"]


def test_without_config_ksm_there_is_no_ksmd(profile: str) -> None:
    k = kb.Kernel(profile, config_ksm=False)
    with pytest.raises(KsmdUnavailable, match="no ksmd"):
        _ = k.sysfs


@pytest.mark.parametrize("profile_name", WITH_KSMD)
def test_sysfs_knob_defaults(profile_name: str) -> None:
    """docs/kernel-semantics.md §6: pages_to_scan 100, sleep_millisecs 20, run 0."""
    s = kb.Kernel(profile_name).sysfs
    assert (s["run"], s["pages_to_scan"], s["sleep_millisecs"]) == (0, 100, 20)


# -- MMF_VM_MERGEABLE and __ksm_enter() ---------------------------------------------------------

def test_first_mergeable_advice_registers_the_mm_once(proc: Process) -> None:
    mapfix(proc, A, 8 * P)
    assert not registered(proc)
    proc.madvise(A, P, M)
    assert registered(proc)
    assert "__ksm_enter" in proc.last_trace.functions()  # type: ignore[union-attr]
    proc.madvise(A + 4 * P, P, M)
    assert "__ksm_enter" not in proc.last_trace.functions()  # type: ignore[union-attr]


def test_only_ignored_advice_leaves_the_mm_unregistered(proc: Process) -> None:
    mapfix(proc, A, 4 * P, flags=kb.MAP_SHARED | kb.MAP_ANONYMOUS)
    proc.madvise(A, 4 * P, M)
    assert not registered(proc)
    assert "__ksm_enter" not in proc.last_trace.functions()  # type: ignore[union-attr]


def test_unmergeable_of_everything_leaves_the_mm_registered(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    proc.madvise(A, 4 * P, M)
    proc.madvise(A, 4 * P, U)
    proc.munmap(A, 4 * P)
    assert registered(proc)


@pytest.mark.parametrize("profile_name", WITH_KSMD)
def test_ksm_enter_adds_an_mm_slot_and_wakes_ksmd_for_the_first(profile_name: str) -> None:
    k = kb.Kernel(profile_name)
    p1 = mergeable_process(k)
    assert "first mm: wake up ksmd" in str(p1.last_trace)
    p2 = mergeable_process(k)
    assert "wake up ksmd" not in str(p2.last_trace)
    assert slot_pids(k) == [p1.pid, p2.pid]


@pytest.mark.parametrize("profile_name", WITH_KSMD)
def test_ksm_enter_inserts_just_before_the_scan_cursor(profile_name: str) -> None:
    """A mm registered mid-pass sits just before the cursor: first visited next pass."""
    k = kb.Kernel(profile_name)
    p1 = mergeable_process(k, [1, 2, 3, 4])
    p2 = mergeable_process(k, [5, 6, 7, 8])
    k.sysfs["pages_to_scan"] = 5
    k.sysfs["run"] = 1
    k.ksmd.batch()  # four pages of p1 and one of p2
    assert k.ksmd.cursor()[0] == p2.pid
    p3 = mergeable_process(k, [9])
    assert slot_pids(k) == [p1.pid, p3.pid, p2.pid]
    assert [s.under_cursor for s in k.ksmd.mm_slots()] == [False, False, True]


@pytest.mark.parametrize("profile_name", WITH_KSMD)
def test_ksm_enter_failure_registers_nothing(profile_name: str) -> None:
    k = kb.Kernel(profile_name)
    p = k.spawn()
    mapfix(p, A, 4 * P)
    k.inject("__ksm_enter")
    assert errno_of(lambda: p.madvise(A, 4 * P, M)) == E.EAGAIN
    assert k.ksmd.mm_slots() == [] and not registered(p)


# -- fork --------------------------------------------------------------------------------------

def test_fork_registers_the_child_of_a_registered_mm(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    proc.madvise(A, 4 * P, M)
    child = proc.fork()
    assert registered(child)
    fns = proc.kernel.log[-1].functions()
    assert "ksm_fork" in fns and "__ksm_enter" in fns


def test_fork_order_of_ksm_fork_and_the_copy(proc: Process) -> None:
    """2.6.32 calls ksm_fork() before copying the VMAs; 6.x after."""
    mapfix(proc, A, 4 * P)
    proc.madvise(A, 4 * P, M)
    proc.fork()
    steps = proc.kernel.log[-1].steps
    ksm_at = next(i for i, s in enumerate(steps) if s.function == "ksm_fork")
    copied_at = next(i for i, s in enumerate(steps) if "VMAs copied" in s.message)
    assert (ksm_at < copied_at) == proc.kernel.profile.ksm_fork_first


def test_child_whose_mergeable_vmas_were_dontcopy_is_still_registered(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    proc.madvise(A, 4 * P, M)
    proc.madvise(A, 4 * P, kb.MADV_DONTFORK)
    child = proc.fork()
    assert child.vmas == [] and registered(child)


@pytest.mark.parametrize("profile_name", WITH_KSMD)
def test_forked_child_gets_its_own_slot(profile_name: str) -> None:
    k = kb.Kernel(profile_name)
    parent = mergeable_process(k)
    child = parent.fork()
    assert slot_pids(k) == [parent.pid, child.pid]


def test_child_of_an_unregistered_parent_is_not_registered(proc: Process) -> None:
    mapfix(proc, A, 4 * P, flags=ANON)
    child = proc.fork()
    assert not registered(child)


def test_child_inherits_vm_mergeable_and_can_unmerge_on_its_own(proc: Process) -> None:
    mapfix(proc, A, 4 * P)
    proc.madvise(A, 4 * P, M)
    child = proc.fork()
    child.madvise(A, 2 * P, U)
    assert [bool(v.flags & kb.VM_MERGEABLE) for v in child.vmas] == [False, True]
    assert [bool(v.flags & kb.VM_MERGEABLE) for v in proc.vmas] == [True]


# -- exit ----------------------------------------------------------------------------------------

def test_exit_runs_ksm_exit_only_for_registered_mms(proc: Process) -> None:
    k = proc.kernel
    mapfix(proc, A, 4 * P)
    other = k.spawn()
    mapfix(other, A, 4 * P, prot=RW)
    proc.madvise(A, 4 * P, M)
    proc.exit()
    assert "__ksm_exit" in k.log[-1].functions()
    assert not registered(proc)
    other.exit()
    assert "__ksm_exit" not in k.log[-1].functions()


@pytest.mark.parametrize("profile_name", WITH_KSMD)
def test_exit_frees_an_idle_slot_at_once(profile_name: str) -> None:
    k = kb.Kernel(profile_name)
    p1 = mergeable_process(k)
    p2 = mergeable_process(k)
    p1.exit()
    assert slot_pids(k) == [p2.pid]
    assert "mm_slot freed" in str(k.log[-1])


@pytest.mark.parametrize("profile_name", WITH_KSMD)
def test_exit_with_rmap_items_leaves_the_slot_to_ksmd(profile_name: str) -> None:
    k = kb.Kernel(profile_name)
    p1 = mergeable_process(k, [1, 1, 2, 3])
    p2 = mergeable_process(k, [1, 4])
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    assert k.sysfs["pages_sharing"] >= 1
    p1.exit()
    slots = k.ksmd.mm_slots()
    assert [s.pid for s in slots] == [p1.pid, p2.pid] and slots[0].exiting
    assert registered(p1)  # cleared by ksmd when it frees the slot
    k.ksmd.full_scans(1)
    assert slot_pids(k) == [p2.pid]
    assert not registered(p1)
