"""ksmd as a reader sees it: the counters of /sys/kernel/mm/ksm, /proc/PID/ksm_stat, and
read-only records of the trees, the rmap_items, the pages and the mm_slot list."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..constants import MMF, PAGE_SHIFT, PAGE_SIZE, VM
from ..ksm import STABLE_FLAG, UNSTABLE_FLAG, RmapItem, StableChain
from .trees import Trees

if TYPE_CHECKING:
    from ..kernel import Process
    from ..mm import Page

#: sizeof(struct ksm_rmap_item) on x86_64, what general_profit subtracts per item: 64 bytes in
#: 2.6.32 (struct rmap_item) and 6.12 alike, so no profile field.
RMAP_ITEM_SIZE = 64


@dataclass(frozen=True)
class Sharer:
    """One rmap_item of a stable node: the process and address that map the KSM page."""

    pid: int | None
    address: int


@dataclass(frozen=True)
class StableNodeView:
    """A KSM page in the stable tree, for diagrams (read only).

    `dup` is True for a dup under a stable_node chain (max_page_sharing); `chain_dups` is the
    number of dups of that chain. In 2.6.32 the node is the rmap_item `sharers[0]`.
    """

    content: int
    page: int
    mapcount: int
    sharers: tuple[Sharer, ...]
    dup: bool
    chain_dups: int


@dataclass(frozen=True)
class UnstableItemView:
    """An rmap_item in this pass's unstable tree."""

    content: int
    pid: int | None
    address: int


@dataclass(frozen=True)
class RmapItemView:
    """An rmap_item: where, in which tree, and its checksum/smart_scan state."""

    pid: int | None
    address: int
    state: str          # "stable", "unstable" or "volatile"
    content: int | None  # what the address maps now (None: nothing / not anonymous)
    oldchecksum: int
    age: int
    remaining_skips: int


@dataclass(frozen=True)
class PageView:
    """A present page of a process: its content and the physical page behind it."""

    address: int
    content: int
    page: int           # identity of the physical page (equal ids: one shared page)
    mapcount: int
    kind: str           # see page_kind()


def page_kind(page: Page, ksm_zero: Page | None = None) -> str:
    """What a pte maps: "ksm-zero" (`ksm_zero`, the zero page ksmd placed with use_zero_pages:
    is_ksm_zero_pte()), "zero" (the zero page a read or a THP split mapped: is_zero_pfn()),
    "ksm" (a KSM page), "anon" or "file"."""
    if page is ksm_zero:
        return "ksm-zero"
    if page.id == 0:
        return "zero"
    return "ksm" if page.ksm is not None else "anon" if page.anon else "file"


@dataclass(frozen=True)
class SlotView:
    """An mm_slot in scan order."""

    pid: int | None
    rmap_items: int
    under_cursor: bool
    exiting: bool


class Views(Trees):
    """Read-only views of ksmd's state."""

    def _sharer(self, item: RmapItem) -> Sharer:
        return Sharer(self._pid(item.slot), item.address)

    def stable_tree(self) -> list[StableNodeView]:
        """The stable tree's KSM pages by content (dups of a chain in chain order)."""
        out = []
        for content in sorted(self.ks.stable):
            entry = self.ks.stable[content]
            nodes = entry.dups if isinstance(entry, StableChain) else [entry]
            for node in nodes:
                items = list(node.items)
                if node.node_item is not None:  # 2.6.32: the node is this rmap_item
                    items.remove(node.node_item)
                    items.insert(0, node.node_item)
                out.append(StableNodeView(content, node.kpage.id, node.kpage.mapcount,
                                          tuple(self._sharer(i) for i in items),
                                          isinstance(entry, StableChain),
                                          len(nodes) if isinstance(entry, StableChain) else 0))
        return out

    def unstable_tree(self) -> list[UnstableItemView]:
        """This pass's unstable tree, by content."""
        return sorted((UnstableItemView(i.key, self._pid(i.slot), i.address)
                       for i in self.unstable_items()), key=lambda v: v.content)

    def rmap_items(self, process: Process | None = None) -> list[RmapItemView]:
        """Every rmap_item (of one process, or of all in scan order)."""
        slots = self.ks.slots
        if process is not None:
            slot = self.ks.by_mm.get(process.mm)
            slots = [slot] if slot is not None else []
        out = []
        for slot in slots:
            mm = slot.mm
            for item in slot.all_items():
                page = mm.ptes.get(item.vpn)
                state = ("stable" if item.flags == STABLE_FLAG else
                         "unstable" if item.flags == UNSTABLE_FLAG else "volatile")
                out.append(RmapItemView(self._pid(slot), item.address, state,
                                        page.content if page is not None and page.anon
                                        else None,
                                        item.oldchecksum, item.age, item.remaining_skips))
        return out

    def pages(self, process: Process) -> list[PageView]:
        """The process's present pages in address order (untouched pages have none)."""
        zero = self.ks.zero_page
        return [PageView(vpn << PAGE_SHIFT, page.content, page.id, page.mapcount,
                         page_kind(page, zero))
                for vpn, page in process.mm.ptes.items()]

    def mm_slots(self) -> list[SlotView]:
        """The mm_slot list in scan order; ``under_cursor`` marks ksm_scan.mm_slot (none
        when the cursor is at the list head, between passes)."""
        ks = self.ks
        return [SlotView(self._pid(s), s.nr_items, i == ks.cursor, s.mm.mm_users == 0)
                for i, s in enumerate(ks.slots)]

    def cursor(self) -> tuple[int | None, int]:
        """(pid under the cursor or None at the list head, ksm_scan.address)."""
        ks = self.ks
        if ks.cursor >= len(ks.slots):
            return None, 0
        return self._pid(ks.slots[ks.cursor]), ks.address

    def counters(self) -> dict[str, int]:
        """Every read-only file of /sys/kernel/mm/ksm, as ints."""
        ks = self.ks
        volatile = max(0, ks.rmap_items - ks.pages_shared - ks.pages_sharing
                       - ks.pages_unshared)
        every = {
            "pages_scanned": ks.pages_scanned, "pages_shared": ks.pages_shared,
            "pages_sharing": ks.pages_sharing, "pages_unshared": ks.pages_unshared,
            "pages_volatile": volatile, "pages_skipped": ks.pages_skipped,
            "ksm_zero_pages": ks.ksm_zero_pages, "full_scans": ks.seqnr,
            "stable_node_chains": ks.stable_node_chains,
            "stable_node_dups": ks.stable_node_dups,
            "general_profit": ((ks.pages_sharing + ks.ksm_zero_pages) * PAGE_SIZE
                               - ks.rmap_items * RMAP_ITEM_SIZE),
        }
        return {name: every[name] for name in self.profile.ksm_counters}

    def ksm_stat(self, process: Process) -> dict[str, int | str]:
        """/proc/PID/ksm_stat (6.x): the process's rmap_items, zero pages, merging pages,
        profit, and whether it has MMF_VM_MERGE_ANY / a VM_MERGEABLE area."""
        # 6.1 "ksm: count allocated ksm rmap_items for each process" (cb4df4cae4f2).
        if not self.profile.proc_ksm_stat:
            raise FileNotFoundError(errno.ENOENT, f"/proc/{process.pid}/ksm_stat does not "
                                    f"exist in the {self.profile.name} kernel")
        mm = process.mm
        slot = self.ks.by_mm.get(mm)
        items = slot.nr_items if slot is not None else 0
        merging = slot.merging_pages if slot is not None else 0
        zero = self.ks.mm_zero_pages.get(mm, 0)
        return {
            "ksm_rmap_items": items,
            "ksm_zero_pages": zero,
            "ksm_merging_pages": merging,
            "ksm_process_profit": (merging + zero) * PAGE_SIZE
            - items * RMAP_ITEM_SIZE,
            "ksm_merge_any": "yes" if mm.flags & MMF.MMF_VM_MERGE_ANY else "no",
            "ksm_mergeable": "yes" if any(v.flags & VM.VM_MERGEABLE for v in mm.vmas)
            else "no",
        }
