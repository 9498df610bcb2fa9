"""The scan (mm/ksm.c): ksm_do_scan() and its cursor, scan_get_next_rmap_item(), smart_scan's
skips, cmp_and_merge_page(), the end of a pass, and run=2's unmerge of everything.

A batch is ksm_do_scan(pages_to_scan); its trace records, per page, the decisions below as
`Step` templates with their arguments (formatted only when read).
"""

from __future__ import annotations

import errno
import itertools
from collections.abc import Iterator

from ..constants import MMF, PAGE_SHIFT, VM
from ..ksm import (
    STABLE_FLAG,
    UNSTABLE_FLAG,
    MmSlot,
    RmapItem,
    StableChain,
    StableNode,
    unmerge_ksm_pages,
)
from ..mm import Page
from ..trace import StepForm, Trace
from .base import WHERE
from .merge import Merge

_CMP = StepForm(0, "cmp_and_merge_page", WHERE + ": content {1}", 2)
_CMP_KSM = StepForm(0, "cmp_and_merge_page", WHERE + ": content {1} (KSM page)", 2)
_LINKED = StepForm(1, "cmp_and_merge_page", "KSM page already linked from this item: nothing")
_VOLATILE = StepForm(1, "calc_checksum", "{:#010x} != oldchecksum {:#010x}: volatile, remembered",
                     2)
_UNCHANGED = StepForm(1, "calc_checksum", "{:#010x} unchanged", 1)


def _skip_age(age: int) -> int:
    """skip_age(): how many passes smart_scan skips an item of this age."""
    if age <= 3:
        return 1
    if age <= 5:
        return 2
    if age <= 8:
        return 4
    return 8


class _NoRmapItem(Exception):
    """alloc_rmap_item() failed (injected): scan_get_next_rmap_item() returns NULL."""


class Scan(Merge):
    """ksm_do_scan() and what it calls."""

    #: The walk of the mm under the cursor (see `_rmap_walk`), for the rest of one batch.
    _walk: Iterator[tuple[RmapItem, Page]] | None = None

    def ksm_do_scan(self, scan_npages: int) -> None:
        """ksm_do_scan(): up to scan_npages candidates; a pass end ends the batch."""
        ks = self.ks
        # 2.6.32 only: "Replace now-unshared ksm page by ordinary page" (gone with 2.6.33's
        # "ksm: share anon page without allocating": a KSM page may be mapped once).
        unshare = self.profile.break_unshared_ksm_page
        tr = self._tr
        records = tr.records if tr is not None else None
        self._vma_cache.clear()  # VMAs cannot change during a batch, only between batches
        self._unstable_checked = False
        cmp_and_merge_page = self.cmp_and_merge_page
        budget = scan_npages
        item = None  # the page of the walk under way (ksm_scan.address is past it), or None
        try:
            while scan_npages > 0:
                # scan_get_next_rmap_item() gives the first page of a walk of an mm; the rest
                # of the walk (the next pages of this mm, its common case) follows here.
                got = self.scan_get_next_rmap_item()
                if got is None:
                    return
                walk = self._walk
                assert walk is not None
                for item, page in itertools.chain((got,), walk):
                    if records is not None:
                        records += (_CMP if page.ksm is None else _CMP_KSM, item, page.content)
                    if unshare and page.ksm is not None and item.flags == STABLE_FLAG:
                        if page.mapcount == 1:
                            if tr is not None:
                                self._note(1, "ksm_do_scan", "KSM page mapped only here: "
                                           "break it back to a normal page")
                            self.break_cow(item)
                            self.remove_rmap_item_from_tree(item)
                            item.oldchecksum = self.checksums[page.content]
                        elif tr is not None:
                            self._note(1, "ksm_do_scan",
                                       "KSM page in the stable tree: nothing to do")
                    else:
                        cmp_and_merge_page(page, item)
                    scan_npages -= 1
                    if not scan_npages:
                        break
                else:
                    item = None  # the walk ended: it set ksm_scan.address
        except _NoRmapItem:
            # ksm_do_scan(): "if (!rmap_item) return;" with ksm_scan.address left on the page:
            # the next batch starts again there.
            self._walk = None
            if tr is not None:
                self._note(0, "get_next_rmap_item", "alloc_rmap_item() failed: the batch ends "
                           "here, the next one starts again at this page")
        finally:
            if item is not None:
                ks.address = (item.vpn + 1) << PAGE_SHIFT
            ks.pages_scanned += budget - scan_npages
            self._vma_cache.clear()

    # -- the cursor --------------------------------------------------------------------------

    def scan_get_next_rmap_item(self) -> tuple[RmapItem, Page] | None:
        """scan_get_next_rmap_item(): the next candidate page and its rmap_item, or None at
        the end of a pass (full_scans+1) or when no mm is registered."""
        ks = self.ks
        slots = ks.slots
        walk = self._walk
        if walk is not None:
            got = next(walk, None)
            if got is not None:
                return self._at(got)
            self._walk = None
            done: MmSlot | None = slots[ks.cursor]
        else:
            if not slots:
                return None
            if ks.cursor >= len(slots):
                self._pass_start()
                ks.cursor = 0
                self._next_mm()
            done = None
        while True:
            if done is None:
                walk = self._walk = self._rmap_walk(slots[ks.cursor])
                got = next(walk, None)
                if got is not None:
                    return self._at(got)
                self._walk = None
                done = slots[ks.cursor]
            # Every page of this mm seen: its leftover rmap_items go.
            slot, done = done, None
            mm = slot.mm
            if mm.mm_users == 0:
                # no_vmas: the whole rmap_list goes.
                ks.address = 0
                slot.rest = slot.all_items()
                slot.rest_pos = 0
                slot.items = []
            self.remove_trailing_rmap_items(slot)
            if ks.address == 0:
                self._drop_slot(slot)
            else:
                ks.cursor += 1
            if ks.cursor >= len(slots):
                self._pass_end()
                return None
            self._next_mm()

    def _at(self, got: tuple[RmapItem, Page]) -> tuple[RmapItem, Page]:
        """ksm_scan.address past the page the walk has just given."""
        self.ks.address = (got[0].vpn + 1) << PAGE_SHIFT
        return got

    def _next_mm(self) -> None:
        ks = self.ks
        ks.address = 0
        ks.slots[ks.cursor].begin_visit()
        self._walk = None

    def _rmap_walk(self, slot: MmSlot) -> Iterator[tuple[RmapItem, Page]]:
        """The VMA walk of scan_get_next_rmap_item() from ksm_scan.address: for each present
        anonymous page of a VM_MERGEABLE VMA that has an anon_vma (KSM pages included), its
        rmap_item from get_next_rmap_item(), unless should_skip_rmap_item() skips it.

        ksm_scan.address is set at each VMA's start and end; past a page the walk yields, it
        is its consumer's to set (`_at`)."""
        ks = self.ks
        mm = slot.mm
        if mm.mm_users == 0:
            return
        self._pid(slot)  # for the trace, which names items by pid
        first = mm.find_vma(ks.address)
        if first is None:
            return
        # smart_scan (6.7, "mm/ksm: add "smart" page scanning mode"; Profile.smart_scan).
        smart = self.profile.smart_scan and ks.knobs["smart_scan"]
        unlink = self.profile.unlink_unstable_on_revisit
        rest = slot.rest
        nrest = len(rest)
        passed = slot.items.append
        ptes = mm.ptes
        get = ptes.get
        address = ks.address
        for vma in mm.vmas_from(first):
            if not vma.flags & VM.VM_MERGEABLE:
                continue
            if address < vma.start:
                address = ks.address = vma.start
            if vma.anon_vma is None:
                address = ks.address = vma.end
                continue
            for vpn in ptes.irange(address >> PAGE_SHIFT, (vma.end >> PAGE_SHIFT) - 1):
                page = get(vpn)
                if page is None or not page.anon:
                    continue
                pos = slot.rest_pos
                if pos >= nrest:
                    # get_next_rmap_item() past the end of the list: a new item.
                    item = self.alloc_rmap_item(slot, vpn)
                    passed(item)
                else:
                    item = rest[pos]
                    # unlink: v2.6.32 get_next_rmap_item(), as in that method.
                    if item.vpn == vpn and not (unlink and item.flags == UNSTABLE_FLAG):
                        # get_next_rmap_item()'s common case: the item is the next one.
                        slot.rest_pos = pos + 1
                        passed(item)
                    else:
                        item = self.get_next_rmap_item(slot, vpn)
                if smart and page.ksm is None:
                    age = item.age
                    if age < 3:
                        item.age = age + 1  # should_skip_rmap_item(): too young to skip
                    elif self.should_skip_rmap_item(item):
                        continue
                yield item, page
            address = ks.address = vma.end

    def _pass_start(self) -> None:
        """Start of a full scan: advisor_start_scan(), the unstable tree emptied."""
        ks = self.ks
        if self.profile.scan_time_advisor and ks.knobs["advisor_mode"] == "scan-time":
            ks.advisor_start = ks.clock_ms
        self.unstable_reset()
        if self._tr is not None:
            self._note(0, "scan_get_next_rmap_item", "pass {} starts: unstable tree emptied",
                       ks.seqnr + 1)

    def _pass_end(self) -> None:
        """End of a full scan: advisor_stop_scan(), ksm_scan.seqnr++ (full_scans)."""
        ks = self.ks
        if self.profile.scan_time_advisor and ks.knobs["advisor_mode"] == "scan-time":
            self._scan_time_advisor()
        ks.seqnr += 1
        if self._tr is not None:
            self._note(0, "scan_get_next_rmap_item", "back at the list head: full_scans {}",
                       ks.seqnr)

    def _drop_slot(self, slot: MmSlot) -> None:
        """No VM_MERGEABLE VMA was found (or the mm exited): free the slot as __ksm_exit does."""
        mm = slot.mm
        self.ks.remove(mm)
        mm.flags &= ~MMF.MMF_VM_MERGEABLE
        # 6.19 "mm/ksm: fix exec/fork inheritance support for prctl" keeps MMF_VM_MERGE_ANY.
        if not self.profile.slot_drop_keeps_merge_any:
            mm.flags &= ~MMF.MMF_VM_MERGE_ANY
        if self._tr is not None:
            why = "exited" if mm.mm_users == 0 else "has no VM_MERGEABLE area"
            self._note(0, "scan_get_next_rmap_item",
                       "pid {} {}: mm_slot freed, MMF_VM_MERGEABLE cleared", self._pid(slot), why)

    def get_next_rmap_item(self, slot: MmSlot, vpn: int) -> RmapItem:
        """get_next_rmap_item(): the item for vpn, freeing the items of addresses passed over."""
        rest = slot.rest
        pos = slot.rest_pos
        n = len(rest)
        while pos < n:
            item = rest[pos]
            if item.vpn == vpn:
                slot.rest_pos = pos + 1
                slot.items.append(item)
                # v2.6.32 mm/ksm.c get_next_rmap_item() unlinks a reused unstable item.
                if item.flags == UNSTABLE_FLAG and self.profile.unlink_unstable_on_revisit:
                    self.remove_rmap_item_from_tree(item, 0)
                return item
            if item.vpn > vpn:
                break
            pos += 1
            self.remove_rmap_item_from_tree(item, 0)
            self._free_rmap_item(item)
        slot.rest_pos = pos
        item = self.alloc_rmap_item(slot, vpn)
        slot.items.append(item)
        return item

    def alloc_rmap_item(self, slot: MmSlot, vpn: int) -> RmapItem:
        """alloc_rmap_item() (kmem_cache_zalloc() may fail: an injected fault) and the
        mm's count of its items, for the address vpn."""
        k = self.kernel
        if k.injected and k.should_fail("alloc_rmap_item"):
            raise _NoRmapItem
        self.ks.rmap_items += 1
        slot.nr_items += 1
        return RmapItem(slot, vpn)

    def remove_trailing_rmap_items(self, slot: MmSlot) -> None:
        """remove_trailing_rmap_items(): free the items from the cursor to the list end."""
        for item in slot.rest[slot.rest_pos:]:
            self.remove_rmap_item_from_tree(item, 0)
            self._free_rmap_item(item)
        slot.rest = []
        slot.rest_pos = 0

    def _free_rmap_item(self, item: RmapItem) -> None:
        """free_rmap_item()."""
        self.ks.rmap_items -= 1
        item.slot.nr_items -= 1

    def should_skip_rmap_item(self, item: RmapItem) -> bool:
        """should_skip_rmap_item() (smart_scan, 6.7): skip a page that has not merged for a
        while; a skip costs no budget and removes the item from the unstable tree."""
        age = item.age
        if age != 255:
            item.age = age + 1
        if age < 3:
            return False
        if not item.remaining_skips:
            item.remaining_skips = _skip_age(age)
            return False
        self.ks.pages_skipped += 1
        item.remaining_skips -= 1
        self.remove_rmap_item_from_tree(item, 0)
        if self._tr is not None:
            self._note(0, "should_skip_rmap_item", WHERE + ": age {1}, skipped",
                       item, age)
        return True

    # -- cmp_and_merge_page ------------------------------------------------------------------

    def cmp_and_merge_page(self, page: Page, item: RmapItem) -> None:
        """cmp_and_merge_page(): first see if the page can merge into the stable tree, else
        into the unstable tree, else insert it there; a page whose checksum changed since the
        last visit is volatile and merges nowhere."""
        p = self.profile
        objects = p.stable_node_objects
        node = page.ksm
        stable_node = node if type(node) is StableNode else None
        if objects:
            # 2.6.33 "ksm: separate stable_node": page_stable_node() tells whether the page
            # is a KSM page already linked from this rmap_item.
            if stable_node is not None and item.head is stable_node:
                tr = self._tr
                if tr is not None:
                    tr.records.append(_LINKED)
                return
        elif item.flags == STABLE_FLAG:
            self.remove_rmap_item_from_tree(item)
        gate_first = p.checksum_before_stable_search
        if gate_first and stable_node is None:
            # 6.11 "mm/ksm: don't waste time searching stable tree for fast changing page":
            # the checksum gate moved before the stable-tree search.
            if item.flags:
                self.remove_rmap_item_from_tree(item)
            if not self._gate_passes(item, page):
                return
        kpage = self.stable_tree_search(page)
        if objects:  # 2.6.33 "ksm: stable_node point to page and back" (08beca44dfb0)
            if kpage is page and item.head is stable_node:
                return
            if item.flags:
                self.remove_rmap_item_from_tree(item)
        if kpage is not None:
            if kpage is page:
                err = 0
                if not objects and self._tr is not None:
                    self._note(1, "cmp_and_merge_page",
                               "the same physical page (a forked KSM page): just link it")
            else:
                err = self.try_to_merge_with_ksm_page(item, page, kpage)
            if not err:
                node = kpage.ksm
                assert type(node) is StableNode
                self.stable_tree_append(item, node)
            return
        if not objects and page.ksm is not None:
            # 2.6.32: "A ksm page might have got here by fork, but its other references have
            # already been removed from the stable tree": break it. (2.6.33 on, a forked KSM
            # page is found through its own stable node above.)
            self.break_cow(item)
        if not gate_first and not self._gate_passes(item, page):
            return
        found = self.unstable_tree_search_insert(item, page)
        if found is None:
            return
        tree_item, tree_page = found
        kpage = self.try_to_merge_two_pages(item, page, tree_item, tree_page)
        if kpage is None:
            return
        if not p.merge_unlinks_rmap_item:
            # 2.6.32: "As soon as we merge this page, we want to remove the rmap_item of the
            # page we have merged with from the unstable tree, and insert it instead as new
            # node in the stable tree." (Until 3.9 "ksm: shrink 32-bit rmap_item back to 32
            # bytes" moved the unlink into try_to_merge_with_ksm_page().)
            self.remove_rmap_item_from_tree(tree_item)
        new = self.stable_tree_insert(kpage, tree_item)
        if new is None:
            # stable_tree_insert() met an equal page: both new mappings are broken again.
            self.break_cow(tree_item)
            self.break_cow(item)
            return
        if objects:  # 2.6.33 "ksm: separate stable_node": "_two_ stable_tree_append()s"
            self.stable_tree_append(tree_item, new)
        self.stable_tree_append(item, new)

    def _gate_passes(self, item: RmapItem, page: Page) -> bool:
        """calc_checksum() against item->oldchecksum, then, with use_zero_pages (4.5), the
        zero-page merge: True if the page goes on to the trees. A page whose content changed
        since the last visit is volatile: its new checksum is remembered."""
        checksum = self.checksums[page.content]
        old = item.oldchecksum
        tr = self._tr
        if old != checksum:
            item.oldchecksum = checksum
            if tr is not None:
                tr.records += (_VOLATILE, checksum, old)
            return False
        if tr is not None:
            tr.records += (_UNCHANGED, checksum)
        if (checksum == self.zero_checksum and self.profile.use_zero_pages
                and self.ks.knobs["use_zero_pages"]
                and not self.try_to_merge_with_zero_page(item, page)):
            return False
        return True

    # -- run=2 and the knobs that need an empty stable tree --------------------------------

    def unmerge_and_remove_all_rmap_items(self, tr: Trace | None) -> int:
        """unmerge_and_remove_all_rmap_items() (run=2): break every KSM page of every
        mergeable VMA, free every rmap_item, full_scans 0. 0 or -errno (the cursor then goes
        back to the list head and run to 0)."""
        ks = self.ks
        self._walk = None
        self._vma_cache.clear()
        ks.cursor = 0
        while ks.cursor < len(ks.slots):
            slot = ks.slots[ks.cursor]
            mm = slot.mm
            if mm.mm_users:
                for vma in list(mm.vmas):
                    if not vma.flags & VM.VM_MERGEABLE or vma.anon_vma is None:
                        continue
                    err = unmerge_ksm_pages(mm, vma, vma.start, vma.end, tr)
                    if err:
                        ks.cursor = len(ks.slots)
                        return err
            slot.rest = slot.all_items()
            slot.rest_pos = 0
            slot.items = []
            self.remove_trailing_rmap_items(slot)
            if mm.mm_users == 0:
                self._drop_slot(slot)
            else:
                ks.cursor += 1
        if self.profile.stable_node_objects:
            # 2.6.33 "ksm: separate stable_node": nodes can outlive their rmap_items.
            self.remove_all_stable_nodes()
        ks.seqnr = 0
        return 0

    def remove_all_stable_nodes(self) -> int:
        """remove_all_stable_nodes(): drop every stable node whose KSM page is no longer
        mapped; -EBUSY (stopping there) if one still is."""
        ks = self.ks
        for entry in list(ks.stable.values()):
            if isinstance(entry, StableChain):
                for dup in list(entry.dups):
                    if self.remove_stable_node(dup):
                        return -errno.EBUSY
                if ks.stable.get(entry.content) is entry:
                    self._stable_unlink(entry)
                    ks.stable_node_chains -= 1
            elif self.remove_stable_node(entry):
                return -errno.EBUSY
        return 0

    def remove_stable_node(self, node: StableNode) -> int:
        """remove_stable_node(): -EBUSY if the KSM page is still mapped."""
        if not self._stale(node):
            return -errno.EBUSY
        self.remove_node_from_stable_tree(node)
        return 0

    def _scan_time_advisor(self) -> None:
        """scan_time_advisor() (6.8, "mm/ksm: add ksm advisor"): retune pages_to_scan from the
        last pass's duration and ksmd's CPU share, both on the simulated clock."""
        ks = self.ks
        knobs = ks.knobs
        scan_time = int((ks.clock_ms - ks.advisor_start) // 1000) or 1
        cpu_diff_ms = int(ks.cpu_ms - ks.advisor_cpu_ms)
        cpu_percent = (cpu_diff_ms * 100) // (scan_time * 1000) or 1
        last = int(ks.advisor_scan_time) or scan_time
        factor = int(knobs["advisor_target_scan_time"]) * 100 // scan_time or 1
        change = scan_time * 100 // last or 1
        change = ((100 - 30) * ks.advisor_change + 30 * change) // 100
        pages_to_scan = int(knobs["pages_to_scan"])
        pages = pages_to_scan * 100 // factor
        pages = pages * change // 100
        per_page_cost = pages_to_scan // cpu_percent or 1
        pages = min(pages, per_page_cost * int(knobs["advisor_max_cpu"]))
        pages = max(pages, per_page_cost * 10)
        pages = min(pages, int(knobs["advisor_max_pages_to_scan"]))
        ks.advisor_change = change
        ks.advisor_scan_time = scan_time
        ks.advisor_cpu_ms = ks.cpu_ms
        knobs["pages_to_scan"] = pages
