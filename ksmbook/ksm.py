"""The KSM side of the mm interface: ksm_madvise(), __ksm_enter(), __ksm_exit(), and the
fork and exit hooks (mm/ksm.c, include/linux/ksm.h).

The seed's mm/ksm.c is a dummy: __ksm_enter() only sets MMF_VM_MERGEABLE and UNMERGEABLE
unmerges nothing. From 2.6.32 on, __ksm_enter() registers the mm with ksmd (an mm_slot put
just before the scan cursor) and UNMERGEABLE breaks every KSM page in the range first.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from .constants import ERESTARTSYS, MADV, MMF, PAGE_SHIFT, VM
from .mm import MM, VMA, Page, flag_names
from .trace import Trace

if TYPE_CHECKING:
    from .kernel import Kernel

__all__ = ["KsmState", "ksm_madvise", "__ksm_enter", "__ksm_exit", "ksm_fork", "ksm_exit",
           "unmerge_ksm_pages", "break_ksm"]


class KsmState:
    """KSM's global state: the list of registered mms (ksm_mm_head) and the scan cursor."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        #: mm_slot list in scan order; `cursor` is the index of ksm_scan.mm_slot
        #: (len(mm_slots) stands for the list head).
        self.mm_slots: list[MM] = []
        self.cursor = 0

    def insert_before_cursor(self, mm: MM) -> None:
        """list_add_tail(&mm_slot->mm_list, &ksm_scan.mm_slot->mm_list)."""
        self.mm_slots.insert(self.cursor, mm)
        self.cursor += 1

    def remove(self, mm: MM) -> None:
        i = self.mm_slots.index(mm)
        del self.mm_slots[i]
        if i < self.cursor:
            self.cursor -= 1


def ksm_madvise(mm: MM, vma: VMA, start: int, end: int, advice: int, flags: VM,
                tr: Trace) -> tuple[int, VM]:
    """ksm_madvise(): decide the new VM_MERGEABLE bit of [start, end) of `vma`.

    Returns (error, new flags). An ignored advice returns (0, flags unchanged).
    """
    p = mm.profile
    with tr.enter("ksm_madvise", MADV(advice).name):
        if advice == MADV.MADV_MERGEABLE:
            blocking = flags & p.ksm_ignore
            if blocking:
                tr.note("ksm_madvise", f"ignored: {flag_names(blocking)}")
                return 0, flags
            if not mm.flags & MMF.MMF_VM_MERGEABLE:
                err = __ksm_enter(mm, tr)
                if err:
                    # The seed's dummy says -EAGAIN itself; 2.6.32 returns -ENOMEM, which
                    # madvise_behavior() turns into -EAGAIN.
                    return (-errno.EAGAIN if p.name == "seed" else err), flags
            tr.note("ksm_madvise", "VM_MERGEABLE set")
            return 0, flags | VM.VM_MERGEABLE
        if not flags & VM.VM_MERGEABLE:
            tr.note("ksm_madvise", "ignored: VMA is not VM_MERGEABLE")
            return 0, flags
        if p.unmerge_pages and vma.anon_vma is not None:
            err = unmerge_ksm_pages(mm, vma, start, end, tr)
            if err:
                tr.note("ksm_madvise", "unmerge failed: VM_MERGEABLE stays set")
                return err, flags
        elif p.unmerge_pages:
            tr.note("ksm_madvise", "no anon_vma: no page was ever faulted, nothing to unmerge")
        else:
            tr.note("ksm_madvise", "dummy ksm.c: \"Unmerge any merged pages here\" (nothing)")
        tr.note("ksm_madvise", "VM_MERGEABLE cleared")
        return 0, flags & ~VM.VM_MERGEABLE


def __ksm_enter(mm: MM, tr: Trace) -> int:
    """__ksm_enter(): register `mm` with KSM and set MMF_VM_MERGEABLE."""
    k = mm.kernel
    with tr.enter("__ksm_enter"):
        if k.should_fail("__ksm_enter"):
            tr.note("__ksm_enter", "alloc_mm_slot() failed: ENOMEM")
            return -errno.ENOMEM
        if k.profile.has_ksmd:
            was_empty = not k.ksm.mm_slots
            k.ksm.insert_before_cursor(mm)
            tr.note("__ksm_enter", "mm_slot added just before the scan cursor")
            if was_empty:
                tr.note("__ksm_enter", "first mm: wake up ksmd")
        mm.flags |= MMF.MMF_VM_MERGEABLE
        tr.note("__ksm_enter", "set MMF_VM_MERGEABLE")
    return 0


def __ksm_exit(mm: MM, tr: Trace) -> None:
    """__ksm_exit(): the mm is going away; unlink it from KSM."""
    k = mm.kernel
    with tr.enter("__ksm_exit"):
        if k.profile.has_ksmd and mm in k.ksm.mm_slots:
            k.ksmd_exit_mm(mm, tr)
        mm.flags &= ~MMF.MMF_VM_MERGEABLE
        tr.note("__ksm_exit", "clear MMF_VM_MERGEABLE")


def ksm_fork(mm: MM, oldmm: MM, tr: Trace) -> int:
    """ksm_fork(): a child of a registered mm is registered too."""
    if oldmm.flags & MMF.MMF_VM_MERGEABLE:
        with tr.enter("ksm_fork", "parent has MMF_VM_MERGEABLE"):
            err = __ksm_enter(mm, tr)
            if err and not mm.profile.ksm_fork_first:
                tr.note("ksm_fork", "best effort since 6.x: fork goes on unregistered")
                return 0
            return err
    return 0


def ksm_exit(mm: MM, tr: Trace) -> None:
    """ksm_exit(): called from mmput() before exit_mmap()."""
    if mm.flags & MMF.MMF_VM_MERGEABLE:
        __ksm_exit(mm, tr)


def unmerge_ksm_pages(mm: MM, vma: VMA, start: int, end: int, tr: Trace) -> int:
    """unmerge_ksm_pages(): break every KSM page mapped in [start, end)."""
    k = mm.kernel
    broken = 0
    with tr.enter("unmerge_ksm_pages", f"[{start:#x}, {end:#x})"):
        for vpn in list(mm.ptes.irange(start >> PAGE_SHIFT, (end >> PAGE_SHIFT) - 1)):
            if k.should_fail("signal_pending"):
                tr.note("unmerge_ksm_pages", "signal pending: ERESTARTSYS (user sees EINTR)")
                return -ERESTARTSYS
            got = break_ksm(mm, vma, vpn, tr)
            if got < 0:
                return got
            broken += got
        tr.note("unmerge_ksm_pages", f"{broken} KSM pages broken" if broken else "no KSM pages")
    return 0


def break_ksm(mm: MM, vma: VMA, vpn: int, tr: Trace) -> int:
    """break_ksm(): write-fault (6.x: unshare-fault) a KSM page into a private copy.

    Returns 1 if a page was broken, 0 if none was mapped there, or -ENOMEM.
    """
    page = mm.ptes.get(vpn)
    if page is None or page.ksm is None:
        return 0
    k = mm.kernel
    if k.should_fail("break_ksm"):
        tr.note("break_ksm", f"{vpn << PAGE_SHIFT:#x}: VM_FAULT_OOM: ENOMEM")
        return -errno.ENOMEM
    page.mapcount -= 1
    mm.ptes[vpn] = Page(page.content)
    k.page_unmapped(mm, vpn, page)
    tr.note("break_ksm", f"{vpn << PAGE_SHIFT:#x}: KSM page copied to a private page")
    return 1
