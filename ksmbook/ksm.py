"""The KSM side of the mm interface and KSM's global state (mm/ksm.c, include/linux/ksm.h).

The mm-facing calls live here: ksm_madvise(), __ksm_enter(), __ksm_exit(), the fork and exit
hooks, unmerge_ksm_pages()/break_ksm(), and the prctl(PR_SET_MEMORY_MERGE) helpers
ksm_enable_merge_any()/ksm_disable_merge_any()/ksm_vma_flags(). ksmd itself (the scanner and
its trees) is `ksmbook.ksmd`; /sys/kernel/mm/ksm is `ksmbook.sysfs`.

The seed's mm/ksm.c is a dummy: __ksm_enter() only sets MMF_VM_MERGEABLE and UNMERGEABLE
unmerges nothing. From 2.6.32 on, __ksm_enter() registers the mm with ksmd (an mm_slot put
just before the scan cursor) and UNMERGEABLE breaks every KSM page in the range first.

`KsmState` holds what mm/ksm.c keeps in static variables: the mm_slot list and the scan
cursor (ksm_scan), the stable and unstable trees, the counters and the knobs. The unstable tree
is the kernel's: a red-black tree ordered by memcmp() of the pages (``ksmbook.pages``), whose
searches give up at a node whose page has gone (see ``ksmbook.ksmd.trees``). The stable tree is
a dict keyed by content: a lookup finds the node of equal content directly. The kernel's walk
of the stable tree also meets nodes of *other* contents and prunes the stale ones it meets; the
simulator prunes a stale node when its own content is looked up or one of its items is
visited. Every stale node is met by the end of a pass either way, so the counters after each
pass are the kernel's; mid-pass values can differ when KSM pages are unmapped between two
batches of one pass.
"""

from __future__ import annotations

import contextlib
import errno
from typing import TYPE_CHECKING

from .constants import ERESTARTSYS, MADV, MMF, PAGE_SHIFT, VM, as_vm
from .mm import MM, VMA, File, Page, flag_names
from .rbtree import RbRoot
from .trace import Fail, Kind, Trace

if TYPE_CHECKING:
    from .kernel import Kernel
    from .ksmd import Ksmd
    from .sysfs import KsmSysfs

__all__ = ["KsmState", "MmSlot", "RmapItem", "StableNode", "StableChain",
           "ksm_madvise", "__ksm_enter", "__ksm_exit", "ksm_fork", "ksm_exit",
           "unmerge_ksm_pages", "break_ksm", "vma_ksm_compatible", "ksm_vma_flags",
           "ksm_enable_merge_any", "ksm_disable_merge_any", "sys_prctl_memory_merge",
           "PR_SET_MEMORY_MERGE", "PR_GET_MEMORY_MERGE", "KSM_RUN_STOP", "KSM_RUN_MERGE",
           "KSM_RUN_UNMERGE", "UNSTABLE_FLAG", "STABLE_FLAG", "SEQNR_MASK", "TOTALRAM_PAGES"]

#: prctl() options (include/uapi/linux/prctl.h, 6.4).
PR_SET_MEMORY_MERGE = 67
PR_GET_MEMORY_MERGE = 68
#: Values of /sys/kernel/mm/ksm/run (ksm_run).
KSM_RUN_STOP = 0
KSM_RUN_MERGE = 1
KSM_RUN_UNMERGE = 2
#: rmap_item->address low bits: seqnr of the pass that inserted an unstable item, and the flags.
SEQNR_MASK = 0xFF
UNSTABLE_FLAG = 0x100
STABLE_FLAG = 0x200
#: The simulated machine's RAM in pages (24 GiB, like this machine): 2.6.32's max_kernel_pages
#: boots as totalram_pages / 4.
TOTALRAM_PAGES = (24 << 30) >> PAGE_SHIFT


class RmapItem:
    """struct ksm_rmap_item (2.6.32 struct rmap_item): ksmd's record of one scanned address.

    `flags` is 0, UNSTABLE_FLAG (a node of the unstable tree, under content `key`, inserted in
    the pass whose seqnr low byte is `seqnr`) or STABLE_FLAG (hanging off stable node `head`).
    `age` and `remaining_skips` are smart_scan's (6.7). `key`, `seqnr` and the struct rb_node
    of the unstable tree (``ksmbook.rbtree``) are set when the item is inserted there.
    """

    __slots__ = ("slot", "vpn", "oldchecksum", "flags", "seqnr", "head", "key", "age",
                 "remaining_skips", "rb_left", "rb_right", "rb_parent", "rb_red")
    seqnr: int
    key: int
    rb_left: RmapItem | None
    rb_right: RmapItem | None
    rb_parent: RmapItem | None
    rb_red: bool

    def __init__(self, slot: MmSlot, vpn: int) -> None:
        self.slot = slot
        self.vpn = vpn
        self.oldchecksum = 0  # kmem_cache_zalloc(): "oldchecksum starts at 0"
        self.flags = 0
        self.head: StableNode | None = None
        self.age = 0
        self.remaining_skips = 0

    @property
    def mm(self) -> MM:
        return self.slot.mm

    @property
    def address(self) -> int:
        return self.vpn << PAGE_SHIFT

    def __repr__(self) -> str:
        state = {0: "", UNSTABLE_FLAG: " unstable", STABLE_FLAG: " stable"}[self.flags]
        return f"RmapItem({self.address:#x}{state})"


class StableNode:
    """struct ksm_stable_node: one KSM page (`kpage`) and the rmap_items that map it.

    `items` keeps insertion order (oldest first; the kernel's hlist is newest first). In
    2.6.32 there is no separate node object: the node *is* `node_item`, the first rmap_item.
    `chain` is the stable_node chain this node is a dup of, if any. Its struct rb_node is set
    when it is linked into the stable tree (rb_link_node(), rb_replace_node()).
    """

    __slots__ = ("content", "kpage", "items", "chain", "node_item", "rb_left", "rb_right",
                 "rb_parent", "rb_red")
    rb_left: StableNode | StableChain | None
    rb_right: StableNode | StableChain | None
    rb_parent: StableNode | StableChain | None
    rb_red: bool

    def __init__(self, content: int, kpage: Page) -> None:
        self.content = content
        self.kpage = kpage
        self.items: dict[RmapItem, None] = {}
        self.chain: StableChain | None = None
        self.node_item: RmapItem | None = None

    def __repr__(self) -> str:
        return f"StableNode(content={self.content}, sharers={len(self.items)})"


class StableChain:
    """A stable_node chain (4.13): the KSM pages ("dups") of one content, when
    max_page_sharing made more than one necessary. `dups` is in hlist order (head first). Its
    struct rb_node is set when it takes its first dup's place (rb_replace_node())."""

    __slots__ = ("content", "dups", "prune_time", "rb_left", "rb_right", "rb_parent", "rb_red")
    rb_left: StableNode | StableChain | None
    rb_right: StableNode | StableChain | None
    rb_parent: StableNode | StableChain | None
    rb_red: bool

    def __init__(self, content: int, prune_time: float) -> None:
        self.content = content
        self.dups: list[StableNode] = []
        self.prune_time = prune_time

    def __repr__(self) -> str:
        return f"StableChain(content={self.content}, dups={len(self.dups)})"


class MmSlot:
    """struct ksm_mm_slot: a registered mm and its rmap_items, sorted by address.

    While ksmd's cursor is inside this mm, `items` holds the items already passed in this visit
    and `rest[rest_pos:]` the ones still ahead (the kernel's ksm_scan.rmap_list pointer).
    """

    __slots__ = ("mm", "items", "rest", "rest_pos", "nr_items", "merging_pages", "pid")

    def __init__(self, mm: MM, pid: int | None) -> None:
        self.mm = mm
        self.items: list[RmapItem] = []
        self.rest: list[RmapItem] = []
        self.rest_pos = 0
        self.nr_items = 0          # mm->ksm_rmap_items
        self.merging_pages = 0     # mm->ksm_merging_pages
        self.pid = pid

    def all_items(self) -> list[RmapItem]:
        """Every rmap_item of the mm, in address order."""
        return self.items + self.rest[self.rest_pos:]

    def begin_visit(self) -> None:
        """ksm_scan.rmap_list = &mm_slot->rmap_list: the cursor enters this mm."""
        self.rest = self.all_items()
        self.rest_pos = 0
        self.items = []

    def __repr__(self) -> str:
        return f"MmSlot(pid={self.pid}, items={self.nr_items})"


class KsmState:
    """KSM's global state: mm_slots and the scan cursor, trees, counters, knobs.

    `slots` is ksm_mm_head's list in scan order; `cursor` is the index of ksm_scan.mm_slot,
    len(slots) standing for the list head. `address` is ksm_scan.address and `seqnr`
    ksm_scan.seqnr (= full_scans).
    """

    __slots__ = ("kernel", "slots", "by_mm", "cursor", "address", "seqnr", "stable",
                 "stable_root", "stale_nodes", "unstable", "unstable_log", "unstable_root",
                 "unstable_exact", "pages_changed", "pages_shared", "pages_sharing",
                 "pages_unshared", "rmap_items", "stable_node_chains", "stable_node_dups",
                 "pages_scanned", "pages_skipped", "ksm_zero_pages", "mm_zero_pages", "knobs",
                 "zero_page", "clock_ms", "advisor_start", "advisor_scan_time", "advisor_change",
                 "advisor_cpu_ms", "cpu_ms", "daemon", "sysfs")

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        p = kernel.profile
        self.slots: list[MmSlot] = []
        self.by_mm: dict[MM, MmSlot] = {}
        self.cursor = 0
        self.address = 0
        self.seqnr = 0
        #: Stable tree: content -> node (or chain of dups), and the same nodes as the kernel's
        #: red-black tree; `stale_nodes` are those whose KSM page is no longer mapped (2.6.32:
        #: that lost a mapping, so that an rmap_item of theirs may no longer map it).
        self.stable: dict[int, StableNode | StableChain] = {}
        self.stable_root = RbRoot()
        self.stale_nodes: set[StableNode] = set()
        #: Unstable tree (see ``ksmbook.ksmd.trees``): content -> item while every node's page
        #: is as inserted, with the inserts and erasures of this pass in `unstable_log`; the
        #: red-black tree `unstable_root` once a node's page has gone or changed.
        self.unstable: dict[int, RmapItem] = {}
        self.unstable_log: list[RmapItem | tuple[RmapItem]] = []
        self.unstable_root = RbRoot()
        self.unstable_exact = False
        #: A page or a mergeable area may have changed since ksmd last looked (set by the
        #: hooks below, cleared when ksmd checks its unstable tree).
        self.pages_changed = False
        # Counters (the static variables behind the read-only sysfs files).
        self.pages_shared = 0
        self.pages_sharing = 0
        self.pages_unshared = 0
        self.rmap_items = 0
        self.stable_node_chains = 0
        self.stable_node_dups = 0
        self.pages_scanned = 0
        self.pages_skipped = 0
        self.ksm_zero_pages = 0
        #: mm->ksm_zero_pages (6.10).
        self.mm_zero_pages: dict[MM, int] = {}
        #: Knobs: the writable files of /sys/kernel/mm/ksm.
        self.knobs: dict[str, int | str] = {
            name: (TOTALRAM_PAGES // 4 if value is None else value)
            for name, value in p.ksm_knobs.items()}
        #: The shared zero page (ZERO_PAGE(0), #0 in the views), as mapped by KSM's
        #: use_zero_pages (a special, dirty pte).
        self.zero_page = Page(0, mapcount=0, anon=False, id=0)
        #: Simulated time (milliseconds since boot) and the scan-time advisor's context.
        self.clock_ms = 0.0
        self.advisor_start = 0.0
        self.advisor_scan_time = 0.0
        self.advisor_change = 0
        self.advisor_cpu_ms = 0.0
        self.cpu_ms = 0.0
        self.daemon: Ksmd | None = None
        self.sysfs: KsmSysfs | None = None

    # -- the mm_slot list ----------------------------------------------------------------

    @property
    def run(self) -> int:
        return int(self.knobs.get("run", 0))

    def pid_of(self, mm: MM) -> int | None:
        for proc in self.kernel.processes:
            if proc.mm is mm:
                return proc.pid
        slot = self.by_mm.get(mm)
        return slot.pid if slot is not None else None

    def insert_before_cursor(self, mm: MM) -> MmSlot:
        """mm_slot_insert() + list_add_tail(&slot->mm_node, &ksm_scan.mm_slot->mm_node)."""
        slot = MmSlot(mm, self.pid_of(mm))
        self.slots.insert(self.cursor, slot)
        self.cursor += 1
        self.by_mm[mm] = slot
        return slot

    def remove(self, mm: MM) -> None:
        """hash_del() + list_del(): unlink the mm's slot (its items must be gone)."""
        slot = self.by_mm.pop(mm)
        i = self.slots.index(slot)
        del self.slots[i]
        if i < self.cursor:
            self.cursor -= 1

    def exit_mm(self, mm: MM, tr: Trace) -> None:
        """__ksm_exit(): free the slot at once if that is straightforward (not under the
        cursor, no rmap_items); otherwise move it just after the cursor and leave it to ksmd."""
        slot = self.by_mm.get(mm)
        if slot is None:
            return
        self.pages_changed = True
        slot.pid = self.pid_of(mm)
        under_cursor = self.cursor < len(self.slots) and self.slots[self.cursor] is slot
        if under_cursor:
            tr.note("__ksm_exit", "mm_slot is under ksmd's cursor: ksmd frees it")
            return
        if not slot.nr_items:
            self.remove(mm)
            mm.flags &= ~(MMF.MMF_VM_MERGE_ANY | MMF.MMF_VM_MERGEABLE)
            tr.note("__ksm_exit", "no rmap_items: mm_slot freed, MMF_VM_MERGEABLE cleared")
            return
        i = self.slots.index(slot)
        del self.slots[i]
        if i < self.cursor:
            self.cursor -= 1
        if self.cursor == len(self.slots):  # cursor at the head: "after it" is the front
            self.slots.insert(0, slot)
            self.cursor += 1
        else:
            self.slots.insert(self.cursor + 1, slot)
        tr.note("__ksm_exit", "{} rmap_items: mm_slot moved just after the cursor; ksmd frees "
                "them on its next visit", slot.nr_items)

    # -- the zero page ---------------------------------------------------------------------

    def page_written(self) -> None:
        """A present anonymous page was written in place: its content changed."""
        self.pages_changed = True

    def map_zero_page(self, mm: MM) -> None:
        """ksm_map_zero_page(): one more KSM-placed zero-page pte."""
        self.ksm_zero_pages += 1
        self.mm_zero_pages[mm] = self.mm_zero_pages.get(mm, 0) + 1

    def page_unmapped(self, mm: MM, page: Page) -> None:
        """A pte of `page` was zapped or COW-broken: ksm_might_unmap_zero_page() for a KSM
        zero page; a KSM page left unmapped is stale (ksm_get_folio() will find it freed)."""
        self.pages_changed = True
        if page is self.zero_page:
            self.ksm_zero_pages -= 1
            self.mm_zero_pages[mm] = self.mm_zero_pages.get(mm, 0) - 1
        elif isinstance(page.ksm, StableNode) and (
                page.ksm.chain is not None or self.stable.get(page.content) is page.ksm):
            # 2.6.33 "ksm: separate stable_node" (7b6ba2c7d3ba) and "ksm: stable_node point to
            # page and back" (08beca44dfb0): the node holds its KSM page.
            if not self.kernel.profile.stable_node_objects:
                self.stale_nodes.add(page.ksm)  # 2.6.32: an rmap_item of it may be stale
            elif page.mapcount <= 0:
                self.stale_nodes.add(page.ksm)  # ksm_get_folio() will find it freed


def vma_ksm_compatible(mm: MM, flags: VM, file: File | None = None) -> bool:
    """vma_ksm_compatible() / ksm_compatible(): may KSM merge pages of a VMA with these flags?"""
    return not flags & (mm.profile.ksm_ignore & ~VM.VM_MERGEABLE)


# The bits ksm_madvise() tests on every call, as plain ints (see constants.as_vm).
_MADV_MERGEABLE = int(MADV.MADV_MERGEABLE)
_VM_MERGEABLE = int(VM.VM_MERGEABLE)
_MMF_VM_MERGEABLE = int(MMF.MMF_VM_MERGEABLE)


def ksm_madvise(mm: MM, vma: VMA, start: int, end: int, advice: int, flags: VM,
                tr: Trace) -> tuple[int, VM]:
    """ksm_madvise(): decide the new VM_MERGEABLE bit of [start, end) of `vma`.

    Returns (error, new flags). An ignored advice returns (0, flags unchanged).
    """
    p = mm.profile
    merge = advice == _MADV_MERGEABLE
    with tr.enter("ksm_madvise", "MADV_MERGEABLE" if merge else "MADV_UNMERGEABLE"):
        if merge:
            blocking = int(flags) & int(p.ksm_ignore)
            if blocking:
                tr.note("ksm_madvise", "ignored: {}", flag_names(as_vm(blocking)))
                tr.event(Kind.IGNORED, start, end, flag_names(as_vm(blocking)))
                return 0, flags
            if not int(mm.flags) & _MMF_VM_MERGEABLE:
                err = __ksm_enter(mm, tr)
                if err:
                    # 2.6.32 "ksm: fix endless loop on oom" returns __ksm_enter()'s error.
                    if p.ksm_madvise_enter_eagain:
                        # The seed: "if (__ksm_enter(mm) < 0) return -EAGAIN;"
                        return -errno.EAGAIN, flags
                    return err, flags  # v2.6.32: madvise_behavior() makes -ENOMEM -EAGAIN
            tr.note("ksm_madvise", "VM_MERGEABLE set")
            return 0, as_vm(int(flags) | _VM_MERGEABLE)
        mm.kernel.ksm.pages_changed = True
        if not int(flags) & _VM_MERGEABLE:
            tr.note("ksm_madvise", "ignored: VMA is not VM_MERGEABLE")
            tr.event(Kind.IGNORED, start, end, "VMA is not VM_MERGEABLE")
            return 0, flags
        # 2.6.32 "ksm: Kernel SamePage Merging" (31dbd01f3143) added unmerge_ksm_pages().
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
        return 0, as_vm(int(flags) & ~_VM_MERGEABLE)


def __ksm_enter(mm: MM, tr: Trace) -> int:
    """__ksm_enter(): register `mm` with KSM and set MMF_VM_MERGEABLE."""
    k = mm.kernel
    with tr.enter("__ksm_enter"):
        if k.should_fail("__ksm_enter"):
            # ksmd and the mm_slot list: 2.6.32 "ksm: Kernel SamePage Merging" (31dbd01f3143).
            why = ("injected failure (the seed's dummy cannot fail)" if not k.profile.has_ksmd
                   else "alloc_mm_slot() failed")
            tr.note("__ksm_enter", "{}: ENOMEM", why)
            tr.event(Kind.FAIL, 0, 0, Fail.KSM_ENTER)
            return -errno.ENOMEM
        # v2.6.32 mm/ksm.c __ksm_enter(): list_add_tail() of the mm_slot, set_bit(
        # MMF_VM_MERGEABLE), atomic_inc(&mm->mm_count), then wake_up_interruptible() if the
        # list was empty (6.x: the same order, mmgrab() for the atomic_inc()).
        was_empty = not k.ksm.slots
        if k.profile.has_ksmd:
            k.ksm.insert_before_cursor(mm)
            tr.note("__ksm_enter", "mm_slot added just before the scan cursor")
        mm.flags |= MMF.MMF_VM_MERGEABLE
        tr.note("__ksm_enter", "set MMF_VM_MERGEABLE")
        if k.profile.has_ksmd and was_empty:
            tr.note("__ksm_enter", "first mm: wake up ksmd")
    return 0


def __ksm_exit(mm: MM, tr: Trace) -> None:
    """__ksm_exit(): the mm is going away; unlink it from KSM (2.6.32 on: at once if that is
    easy, else ksmd frees the slot and the rmap_items on its next visit)."""
    k = mm.kernel
    with tr.enter("__ksm_exit"):
        if k.profile.has_ksmd:
            k.ksm.exit_mm(mm, tr)
            return
        mm.flags &= ~MMF.MMF_VM_MERGEABLE
        tr.note("__ksm_exit", "clear MMF_VM_MERGEABLE")


def ksm_fork(mm: MM, oldmm: MM, tr: Trace) -> int:
    """ksm_fork(): a child of a registered mm is registered too. Since 6.10 the child's
    inherited KSM zero-page ptes (its copied mm->ksm_zero_pages) join ksm_zero_pages."""
    ks = mm.kernel.ksm
    inherited = ks.mm_zero_pages.get(oldmm, 0)
    if inherited:
        ks.mm_zero_pages[mm] = inherited  # dup_mm() copies the whole mm_struct
    if oldmm.flags & MMF.MMF_VM_MERGEABLE:
        with tr.enter("ksm_fork", "parent has MMF_VM_MERGEABLE"):
            if inherited:
                ks.ksm_zero_pages += inherited
                tr.note("ksm_fork", "{} inherited KSM zero pages added to ksm_zero_pages",
                        inherited)
            err = __ksm_enter(mm, tr)
            # 6.12 "fork: only invoke khugepaged, ksm hooks if no error": best effort.
            if err and not mm.profile.ksm_fork_first:
                tr.note("ksm_fork", "best effort since 6.x: fork goes on unregistered")
                return 0
            return err
    return 0


def ksm_exit(mm: MM, tr: Trace) -> None:
    """ksm_exit(): called from mmput() before exit_mmap()."""
    if mm.flags & MMF.MMF_VM_MERGEABLE:
        __ksm_exit(mm, tr)


def unmerge_ksm_pages(mm: MM, vma: VMA, start: int, end: int, tr: Trace | None) -> int:
    """unmerge_ksm_pages(): break every KSM page (and KSM zero page) mapped in [start, end)."""
    k = mm.kernel
    broken = 0
    ctx = (tr.enter("unmerge_ksm_pages", "[{:#x}, {:#x})", start, end) if tr is not None
           else contextlib.nullcontext())
    with ctx:
        # The loop tests signal_pending() at every address before break_ksm() (v2.6.32 and
        # 6.18 alike), so a pending signal stops it at the first address, mapped or not.
        if start < end and mm.mm_users and k.should_fail("signal_pending"):
            if tr is not None:
                tr.note("unmerge_ksm_pages", "{:#x}: signal pending: ERESTARTSYS (user sees "
                        "EINTR)", start)
            return -ERESTARTSYS
        for vpn in list(mm.ptes.irange(start >> PAGE_SHIFT, (end >> PAGE_SHIFT) - 1)):
            if mm.mm_users == 0:
                break
            got = break_ksm(mm, vma, vpn, tr)
            if got < 0:
                return got
            broken += got
        if tr is not None:
            if broken:
                tr.note("unmerge_ksm_pages", "{} KSM pages broken", broken)
            else:
                tr.note("unmerge_ksm_pages", "no KSM pages")
    return 0


def break_ksm(mm: MM, vma: VMA, vpn: int, tr: Trace | None) -> int:
    """break_ksm(): fault a KSM page (6.x: also a KSM-placed zero page) into a private copy;
    a write fault in 2.6.32, an unshare fault since 5.19.

    Returns 1 if a page was broken, 0 if none was mapped there, or -ENOMEM.
    """
    page = mm.ptes.get(vpn)
    k = mm.kernel
    if page is None or (page.ksm is None and page is not k.ksm.zero_page):
        return 0
    if k.should_fail("break_ksm"):
        if tr is not None:
            tr.note("break_ksm", "{:#x}: VM_FAULT_OOM: ENOMEM", vpn << PAGE_SHIFT)
        return -errno.ENOMEM
    page.mapcount -= 1
    mm.ptes[vpn] = Page(page.content, id=next(k.page_ids))
    k.ksm.page_unmapped(mm, page)
    if tr is not None:
        what = "KSM zero page" if page is k.ksm.zero_page else "KSM page"
        tr.note("break_ksm", "{:#x}: {} copied to a private page", vpn << PAGE_SHIFT, what)
    return 1


# -- prctl(PR_SET_MEMORY_MERGE) ------------------------------------------------------------


def ksm_vma_flags(mm: MM, file: File | None, vm_flags: VM, tr: Trace) -> VM:
    """ksm_vma_flags() (6.17): under MMF_VM_MERGE_ANY a new compatible mapping is born
    VM_MERGEABLE; an mm that ksmd had dropped meanwhile is registered again (6.18.y)."""
    if not mm.flags & MMF.MMF_VM_MERGE_ANY or vm_flags & VM.VM_MERGEABLE:
        return vm_flags
    if not vma_ksm_compatible(mm, vm_flags, file):
        return vm_flags
    tr.note("ksm_vma_flags", "MMF_VM_MERGE_ANY: new VMA is VM_MERGEABLE")
    # 6.19 "mm/ksm: fix exec/fork inheritance support for prctl" (in 6.18.y stable).
    if mm.profile.slot_drop_keeps_merge_any and not mm.flags & MMF.MMF_VM_MERGEABLE:
        __ksm_enter(mm, tr)
    return vm_flags | VM.VM_MERGEABLE


def _ksm_add_vmas(mm: MM, tr: Trace) -> None:
    """ksm_add_vmas(): mark every compatible VMA VM_MERGEABLE, whole (no split, no merge)."""
    for vma in mm.vmas:
        if not vma.flags & VM.VM_MERGEABLE and vma_ksm_compatible(mm, vma.flags, vma.file):
            vma.flags |= VM.VM_MERGEABLE
            tr.event(Kind.FLAGS, vma.start, vma.end, "+VM_MERGEABLE")


def _ksm_del_vmas(mm: MM, tr: Trace) -> int:
    """ksm_del_vmas(): unmerge and clear VM_MERGEABLE on every VMA (madvised ones too)."""
    mm.kernel.ksm.pages_changed = True
    for vma in mm.vmas:
        if not vma.flags & VM.VM_MERGEABLE:
            continue
        if vma.anon_vma is not None:
            err = unmerge_ksm_pages(mm, vma, vma.start, vma.end, tr)
            if err:
                return err
        vma.flags &= ~VM.VM_MERGEABLE
        tr.event(Kind.FLAGS, vma.start, vma.end, "-VM_MERGEABLE")
    return 0


def ksm_enable_merge_any(mm: MM, tr: Trace) -> int:
    """ksm_enable_merge_any(): register the mm, set MMF_VM_MERGE_ANY, mark every VMA."""
    with tr.enter("ksm_enable_merge_any"):
        if mm.flags & MMF.MMF_VM_MERGE_ANY:
            tr.note("ksm_enable_merge_any", "MMF_VM_MERGE_ANY already set: 0")
            return 0
        if not mm.flags & MMF.MMF_VM_MERGEABLE:
            err = __ksm_enter(mm, tr)
            if err:
                return err
        mm.flags |= MMF.MMF_VM_MERGE_ANY
        _ksm_add_vmas(mm, tr)
        tr.note("ksm_enable_merge_any", "set MMF_VM_MERGE_ANY; every compatible VMA is "
                "VM_MERGEABLE")
    return 0


def ksm_disable_merge_any(mm: MM, tr: Trace) -> int:
    """ksm_disable_merge_any(): unmerge everything and clear VM_MERGEABLE on all VMAs; on
    failure mark them again and return the error."""
    with tr.enter("ksm_disable_merge_any"):
        if not mm.flags & MMF.MMF_VM_MERGE_ANY:
            tr.note("ksm_disable_merge_any", "MMF_VM_MERGE_ANY not set: 0")
            return 0
        err = _ksm_del_vmas(mm, tr)
        if err:
            _ksm_add_vmas(mm, tr)
            tr.note("ksm_disable_merge_any", "unmerge failed: VMAs marked again")
            return err
        mm.flags &= ~MMF.MMF_VM_MERGE_ANY
        tr.note("ksm_disable_merge_any", "cleared MMF_VM_MERGE_ANY and every VM_MERGEABLE")
    return 0


def sys_prctl_memory_merge(mm: MM, option: int, args: tuple[int, int, int, int],
                           tr: Trace) -> int:
    """prctl(PR_SET_MEMORY_MERGE / PR_GET_MEMORY_MERGE) (kernel/sys.c, 6.4)."""
    k = mm.kernel
    arg2, arg3, arg4, arg5 = args
    name = "PR_SET_MEMORY_MERGE" if option == PR_SET_MEMORY_MERGE else "PR_GET_MEMORY_MERGE"
    with tr.enter("sys_prctl", name):
        # 6.4 "mm: add new api to enable ksm per process" (d7597f59d1d3).
        if not (k.profile.prctl_memory_merge and k.config_ksm):
            why = ("CONFIG_KSM is not set" if k.profile.prctl_memory_merge
                   else f"the {k.profile.name} kernel has no such option (added in 6.4)")
            tr.note("sys_prctl", "{}: {}: EINVAL", name, why)
            return -errno.EINVAL
        if option == PR_GET_MEMORY_MERGE:
            if arg2 or arg3 or arg4 or arg5:
                tr.note("sys_prctl", "arg2..arg5 must be 0: EINVAL")
                return -errno.EINVAL
            return 1 if mm.flags & MMF.MMF_VM_MERGE_ANY else 0
        if arg3 or arg4 or arg5:
            tr.note("sys_prctl", "arg3..arg5 must be 0: EINVAL")
            return -errno.EINVAL
        if arg2:
            return ksm_enable_merge_any(mm, tr)
        return ksm_disable_merge_any(mm, tr)
