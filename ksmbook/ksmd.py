"""ksmd: the KSM scanner thread, its two trees and its counters (mm/ksm.c).

One `Ksmd` per simulated kernel (``k.ksmd``). It steps ksm_scan_thread() by batches of
ksm_do_scan(pages_to_scan) or by full scans, on a simulated clock, and records what it did as a
`Trace` per batch. The functions are the kernel's, for both kernels that have ksmd:

* 2.6.32 (final v2.6.32 mm/ksm.c): a stable-tree node is the first rmap_item of its KSM page;
  merging two pages copies them into a newly allocated KSM page (limited by max_kernel_pages);
  a KSM page left with one mapping is broken back into a normal page; the stable tree is
  searched before the checksum gate.
* modern (6.18, which this machine runs; the reference source is 6.12, see
  ``ksmbook.profiles`` for the 6.17/6.18 changes): separate stable_node objects, the scanned page
  becomes the KSM page in place, the checksum gate comes first, max_page_sharing with chains of
  dups, use_zero_pages, smart_scan, the scan-time advisor, pages_scanned / pages_skipped /
  ksm_zero_pages / general_profit.

Contents are symbolic ints (0 is the zero page), so calc_checksum() is a deterministic 32-bit
stand-in for jhash2/xxhash (see `calc_checksum`). Trees are dicts keyed by content (see the note
in ``ksmbook.ksm``). A new rmap_item starts with oldchecksum 0, so its first visit is volatile.

What can go wrong in the real kernel and is not modelled: allocation failures of rmap_items or
stable nodes, page locks held by others (trylock), pages pinned by I/O (write_protect_page()
refusing), NUMA (merge_across_nodes is a knob with its checks, one node), transparent huge pages.
"""

from __future__ import annotations

import collections
import errno
import gc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .constants import MMF, PAGE_SHIFT, PAGE_SIZE, VM
from .ksm import (
    KSM_RUN_MERGE,
    SEQNR_MASK,
    STABLE_FLAG,
    UNSTABLE_FLAG,
    KsmState,
    MmSlot,
    RmapItem,
    StableChain,
    StableNode,
    break_ksm,
    unmerge_ksm_pages,
)
from .mm import MM, VMA, Page
from .trace import Step, Trace

if TYPE_CHECKING:
    from .kernel import Kernel, Process

__all__ = ["Ksmd", "KsmdIdle", "KsmdUnavailable", "BatchReport", "Sharer", "StableNodeView",
           "UnstableItemView", "RmapItemView", "PageView", "SlotView", "calc_checksum",
           "predict", "READ", "UNTOUCHED", "PAGE_COST_US", "BATCH_COST_US"]

#: Page markers for `predict` besides ints (the same as ``ksmbook.live_ksmd``'s): a page only
#: read (it maps the shared zero page: no KSM candidate) and a page never touched.
READ = "read"
UNTOUCHED = None
#: Simulated CPU time of ksmd: per page processed by cmp_and_merge_page() and per batch
#: (pass-start drain, locking). Calibrated on this machine's live ksmd (2 to 5 us per page in
#: a pass that merges, less in one that only hashes or finds KSM pages).
PAGE_COST_US = 2.5
BATCH_COST_US = 50.0

_MASK64 = (1 << 64) - 1
_SEEDS = {"xxhash": 0, "jhash2": 17}
#: The KSM page of a merge in progress: try_to_merge_one_page() set PageKsm, the stable node
#: is not linked yet (folio_set_stable_node(folio, NULL)).
_PENDING = object()
_MERGEABLE = int(VM.VM_MERGEABLE)


def calc_checksum(content: int, algorithm: str = "xxhash") -> int:
    """calc_checksum(): a 32-bit checksum of the page whose content is `content`.

    The kernel hashes the 4096 bytes (jhash2 seed 17 in 2.6.32, xxhash seed 0 later); pages are
    symbolic here, so this is a fixed 64-bit mix (splitmix64) of the content and the seed,
    truncated to 32 bits like the kernel's. Equal contents give equal checksums; different
    contents almost never do; the zero page's checksum is not 0 (as measured live).
    """
    x = ((content ^ (content >> 64)) + 0x9E3779B97F4A7C15 * (_SEEDS.get(algorithm, 0) + 1)) \
        & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (x ^ (x >> 31)) & 0xFFFFFFFF


def _skip_age(age: int) -> int:
    """skip_age(): how many passes smart_scan skips an item of this age."""
    if age <= 3:
        return 1
    if age <= 5:
        return 2
    if age <= 8:
        return 4
    return 8


class KsmdUnavailable(AttributeError):
    """The kernel has no ksmd: the seed's dummy mm/ksm.c, or CONFIG_KSM not set."""


class KsmdIdle(RuntimeError):
    """ksmd cannot finish the pass asked for: ksmd_should_run() is false (run is not 1, or no
    mm is registered) or pages_to_scan is 0."""


@dataclass(frozen=True)
class BatchReport:
    """What one wake-up of ksm_scan_thread() did."""

    #: Batches since boot, this one included.
    batch: int
    #: False when ksmd_should_run() was false and ksmd only waited.
    ran: bool
    #: Pages handed to cmp_and_merge_page() (pages_scanned grew by this much).
    scanned: int
    #: Pages smart_scan skipped (pages_skipped grew by this much).
    skipped: int
    #: The batch ended a full scan (full_scans went up).
    pass_ended: bool
    #: Simulated time after the batch and the sleep that follows it.
    clock_ms: float
    trace: Trace | None


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
    kind: str           # "ksm", "ksm-zero" (use_zero_pages), "anon" or "file"


@dataclass(frozen=True)
class SlotView:
    """An mm_slot in scan order."""

    pid: int | None
    rmap_items: int
    under_cursor: bool
    exiting: bool


class Ksmd:
    """The ksmd thread of a simulated kernel, stepped by hand on a simulated clock.

    ``batch()`` is one wake-up (ksm_do_scan(pages_to_scan), then sleep_millisecs);
    ``full_scans(n)`` runs batches until n more passes have ended; ``run_for(ms)`` runs the
    thread for a span of simulated time. ``tracing`` (default on) records every decision in a
    `Trace` per batch (``last_trace``, ``log``); turn it off for large runs.
    """

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.ks: KsmState = kernel.ksm
        self.profile = kernel.profile
        self.tracing = True
        self.last_trace: Trace | None = None
        self.log: collections.deque[Trace] = collections.deque(maxlen=16)
        self.batches = 0
        self.page_cost_us = PAGE_COST_US
        self.batch_cost_us = BATCH_COST_US
        self._tr: Trace | None = None
        #: Trace depth of the steps of tree functions: 0 while looking for the next page,
        #: 1 while cmp_and_merge_page() works on it.
        self._depth = 0
        self._cand: Iterator[tuple[int, Page]] | None = None
        #: Last VMA found per mm, valid during one batch (VMAs only change between batches).
        self._vma_cache: dict[MM, VMA] = {}
        self._checksums: dict[int, int] = {}
        p = self.profile
        self._modern = p.stable_node_objects
        self._gate_first = p.checksum_before_stable_search
        self._in_place = p.ksm_page_in_place
        self._algorithm = p.ksm_checksum
        self.zero_checksum = calc_checksum(0, p.ksm_checksum)

    def __repr__(self) -> str:
        ks = self.ks
        return (f"Ksmd(run={ks.run}, full_scans={ks.seqnr}, mm_slots={len(ks.slots)}, "
                f"clock_ms={ks.clock_ms:g})")

    # -- the thread ------------------------------------------------------------------------

    @property
    def clock_ms(self) -> float:
        """Simulated milliseconds since boot."""
        return self.ks.clock_ms

    def ksmd_should_run(self) -> bool:
        """ksmd_should_run(): run has KSM_RUN_MERGE and some mm is registered."""
        return bool(self.ks.run & KSM_RUN_MERGE) and bool(self.ks.slots)

    def _why_idle(self) -> str:
        if not self.ks.run & KSM_RUN_MERGE:
            return f"run is {self.ks.run}"
        return "no mm is registered with KSM"

    def batch(self) -> BatchReport:
        """One iteration of ksm_scan_thread(): ksm_do_scan(pages_to_scan) if ksmd should run,
        then sleep sleep_millisecs; otherwise ksmd waits and nothing happens."""
        ks = self.ks
        self.batches += 1
        n = int(ks.knobs["pages_to_scan"])
        tr = Trace(f"ksmd: ksm_do_scan({n})", 0) if self.tracing else None
        if not self.ksmd_should_run():
            if tr is not None:
                tr.note("ksm_scan_thread", f"ksmd_should_run() is false ({self._why_idle()}): "
                        "ksmd waits")
                tr.result = 0
                self._keep(tr)
            return BatchReport(self.batches, False, 0, 0, False, ks.clock_ms, tr)
        scanned, skipped, seqnr = ks.pages_scanned, ks.pages_skipped, ks.seqnr
        self._tr = tr
        # A batch allocates many small objects and frees none in cycles: pausing the cyclic
        # collector keeps its full sweeps of the page tables out of the hot loop.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self.ksm_do_scan(n)
        finally:
            if collecting:
                gc.enable()
            self._tr = None
            self._cand = None
        scanned = ks.pages_scanned - scanned
        skipped = ks.pages_skipped - skipped
        cpu = (scanned * self.page_cost_us + self.batch_cost_us) / 1000
        ks.clock_ms += cpu
        ks.cpu_ms += cpu
        if self.ksmd_should_run():
            ks.clock_ms += int(ks.knobs["sleep_millisecs"])
        if tr is not None:
            tr.result = scanned
            tr.note("ksm_scan_thread", f"{scanned} pages scanned, {skipped} skipped; sleep "
                    f"{ks.knobs['sleep_millisecs']} ms (clock {ks.clock_ms:g} ms)")
            self._keep(tr)
        return BatchReport(self.batches, True, scanned, skipped, ks.seqnr != seqnr,
                           ks.clock_ms, tr)

    def _keep(self, tr: Trace) -> None:
        self.last_trace = tr
        self.log.append(tr)

    def full_scans(self, n: int = 1) -> dict[str, int]:
        """Run batches until `n` more full scans have ended; returns the counters.

        Raises KsmdIdle if ksmd cannot get there (run is not 1, no mm registered,
        pages_to_scan 0): the real thread would wait forever.
        """
        if n < 0:
            raise ValueError("n must not be negative")
        ks = self.ks
        target = ks.seqnr + n
        while ks.seqnr < target:
            if not self.ksmd_should_run():
                raise KsmdIdle(f"ksmd is not scanning ({self._why_idle()}): full_scans stays "
                               f"{ks.seqnr}; write 1 to run and register an mm "
                               "(MADV_MERGEABLE) first")
            if int(ks.knobs["pages_to_scan"]) == 0:
                raise KsmdIdle("pages_to_scan is 0: every batch scans nothing and no pass ends")
            self.batch()
        return self.counters()

    def run_for(self, ms: float) -> list[BatchReport]:
        """Let the thread run for `ms` of simulated time; returns the batches it ran."""
        ks = self.ks
        end = ks.clock_ms + ms
        reports = []
        while ks.clock_ms < end:
            if not self.ksmd_should_run():
                ks.clock_ms = end
                break
            before = ks.clock_ms
            reports.append(self.batch())
            if ks.clock_ms == before:
                raise ValueError("simulated time does not advance: sleep_millisecs, "
                                 "page_cost_us and batch_cost_us are all 0")
        return reports

    # -- ksm_do_scan and the cursor --------------------------------------------------------

    def ksm_do_scan(self, scan_npages: int) -> None:
        """ksm_do_scan(): up to scan_npages candidates; a pass end ends the batch."""
        self._vma_cache.clear()  # VMAs cannot change during a batch, only between batches
        try:
            if self._tr is None and self._modern and self._gate_first:
                self._ksm_do_scan_fast(scan_npages)
            else:
                self._ksm_do_scan(scan_npages)
        finally:
            self._vma_cache.clear()

    def _ksm_do_scan(self, scan_npages: int) -> None:
        ks = self.ks
        tr = self._tr
        rule_a = self.profile.break_unshared_ksm_page
        while scan_npages > 0:
            scan_npages -= 1
            self._depth = 0
            got = self.scan_get_next_rmap_item()
            if got is None:
                return
            item, page = got
            self._depth = 1
            if tr is not None:
                tr.steps.append(Step(0, "cmp_and_merge_page",
                                     f"{self._where(item)}: content {page.content}"
                                     f"{' (KSM page)' if page.ksm is not None else ''}"))
            if rule_a and page.ksm is not None and item.flags == STABLE_FLAG:
                if page.mapcount == 1:
                    # 2.6.32: "Replace now-unshared ksm page by ordinary page."
                    if tr is not None:
                        tr.steps.append(Step(1, "ksm_do_scan", "KSM page mapped only here: "
                                             "break it back to a normal page"))
                    self.break_cow(item)
                    self.remove_rmap_item_from_tree(item)
                    item.oldchecksum = self._checksum(page.content)
                elif tr is not None:
                    tr.steps.append(Step(1, "ksm_do_scan", "KSM page in the stable tree: "
                                         "nothing to do"))
            elif self._gate_first:
                self._cmp_and_merge_page(page, item)
            else:
                self._cmp_and_merge_page_2632(page, item)
            ks.pages_scanned += 1
        self._depth = 0

    def _ksm_do_scan_fast(self, scan_npages: int) -> None:
        """ksm_do_scan() for 6.x without tracing: the common cases of get_next_rmap_item(),
        should_skip_rmap_item() and cmp_and_merge_page() inlined (a reused item, a young
        item, a KSM page already linked, a page failing the checksum gate); everything else
        goes through the functions above. Same decisions, same order."""
        ks = self.ks
        checksums = self._checksums
        smart = bool(ks.knobs.get("smart_scan", 0))
        use_zero = bool(ks.knobs.get("use_zero_pages", 0))
        zero_checksum = self.zero_checksum
        scanned = 0
        try:
            while scan_npages > 0:
                scan_npages -= 1
                item: RmapItem | None = None
                page: Page | None = None
                cand = self._cand
                if cand is not None and ks.cursor < len(ks.slots):
                    slot = ks.slots[ks.cursor]
                    rest = slot.rest
                    nrest = len(rest)
                    done = slot.items
                    for vpn, pg in cand:
                        pos = slot.rest_pos
                        nxt = rest[pos] if pos < nrest else None
                        if nxt is not None and nxt.vpn == vpn:
                            it = nxt
                            slot.rest_pos = pos + 1
                            done.append(it)
                        elif nxt is not None and nxt.vpn < vpn:
                            it = self.get_next_rmap_item(slot, vpn)
                        else:
                            it = RmapItem(slot, vpn)
                            ks.rmap_items += 1
                            slot.nr_items += 1
                            done.append(it)
                        if smart and pg.ksm is None:
                            age = it.age
                            if age < 3:
                                it.age = age + 1
                            elif self.should_skip_rmap_item(it):
                                continue
                        item, page = it, pg
                        break
                if item is None or page is None:
                    self._cand = None
                    got = self.scan_get_next_rmap_item()
                    if got is None:
                        return
                    item, page = got
                scanned += 1
                node = page.ksm
                if node is not None:
                    if item.head is not node:
                        self._cmp_and_merge_page(page, item)
                    continue
                if item.flags:
                    self.remove_rmap_item_from_tree(item)
                content = page.content
                checksum = checksums.get(content)
                if checksum is None:
                    checksum = self._checksum(content)
                if item.oldchecksum != checksum:
                    item.oldchecksum = checksum
                    continue
                if (use_zero and checksum == zero_checksum
                        and not self.try_to_merge_with_zero_page(item, page)):
                    continue
                self._merge_with_trees(page, item, None)
        finally:
            ks.pages_scanned += scanned

    def _checksum_gate(self, item: RmapItem, page: Page, tr: Trace | None) -> int | None:
        """calc_checksum() against item->oldchecksum: a page whose content changed since the
        last visit is volatile (its new checksum is remembered; None); else its checksum."""
        checksum = self._checksum(page.content)
        if item.oldchecksum != checksum:
            if tr is not None:
                tr.steps.append(Step(1, "calc_checksum",
                                     f"{checksum:#010x} != oldchecksum "
                                     f"{item.oldchecksum:#010x}: volatile, remembered"))
            item.oldchecksum = checksum
            return None
        if tr is not None:
            tr.steps.append(Step(1, "calc_checksum", f"{checksum:#010x} unchanged"))
        return checksum

    def scan_get_next_rmap_item(self) -> tuple[RmapItem, Page] | None:
        """scan_get_next_rmap_item(): the next candidate page and its rmap_item, or None at
        the end of a pass (full_scans+1) or when no mm is registered."""
        ks = self.ks
        slots = ks.slots
        if not slots:
            return None
        if ks.cursor >= len(slots):
            self._pass_start()
            ks.cursor = 0
            self._next_mm()
        smart = self._modern and bool(ks.knobs.get("smart_scan", 0))
        while True:
            slot = slots[ks.cursor]
            if self._cand is None:
                self._cand = self._candidates(slot)
            for vpn, page in self._cand:
                item = self.get_next_rmap_item(slot, vpn)
                if smart and page.ksm is None and self.should_skip_rmap_item(item):
                    continue
                return item, page
            self._cand = None
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

    def _next_mm(self) -> None:
        ks = self.ks
        ks.address = 0
        ks.slots[ks.cursor].begin_visit()
        self._cand = None

    def _candidates(self, slot: MmSlot) -> Iterator[tuple[int, Page]]:
        """The VMA walk of scan_get_next_rmap_item() from ksm_scan.address: present anonymous
        pages of VM_MERGEABLE VMAs that have an anon_vma (KSM pages included)."""
        ks = self.ks
        mm = slot.mm
        if mm.mm_users == 0:
            return
        first = mm.find_vma(ks.address)
        if first is None:
            return
        ptes = mm.ptes
        get = ptes.get
        for vma in mm.vmas_from(first):
            if not vma.flags & VM.VM_MERGEABLE:
                continue
            if ks.address < vma.start:
                ks.address = vma.start
            if vma.anon_vma is None:
                ks.address = vma.end
                continue
            for vpn in ptes.irange(ks.address >> PAGE_SHIFT, (vma.end >> PAGE_SHIFT) - 1):
                page = get(vpn)
                if page is not None and page.anon:
                    ks.address = (vpn + 1) << PAGE_SHIFT
                    yield vpn, page
            ks.address = vma.end

    def _pass_start(self) -> None:
        """Start of a full scan: advisor_start_scan(), the unstable tree emptied."""
        ks = self.ks
        if ks.knobs.get("advisor_mode") == "scan-time":
            ks.advisor_start = ks.clock_ms
        ks.unstable.clear()
        if self._tr is not None:
            self._tr.steps.append(Step(0, "scan_get_next_rmap_item",
                                       f"pass {ks.seqnr + 1} starts: unstable tree emptied"))

    def _pass_end(self) -> None:
        """End of a full scan: advisor_stop_scan(), ksm_scan.seqnr++ (full_scans)."""
        ks = self.ks
        if ks.knobs.get("advisor_mode") == "scan-time":
            self._scan_time_advisor()
        ks.seqnr += 1
        if self._tr is not None:
            self._tr.steps.append(Step(0, "scan_get_next_rmap_item",
                                       f"back at the list head: full_scans {ks.seqnr}"))

    def _drop_slot(self, slot: MmSlot) -> None:
        """No VM_MERGEABLE VMA was found (or the mm exited): free the slot as __ksm_exit does."""
        mm = slot.mm
        self.ks.remove(mm)
        mm.flags &= ~MMF.MMF_VM_MERGEABLE
        if not self.profile.slot_drop_keeps_merge_any:
            mm.flags &= ~MMF.MMF_VM_MERGE_ANY
        if self._tr is not None:
            why = "exited" if mm.mm_users == 0 else "has no VM_MERGEABLE area"
            self._tr.steps.append(Step(0, "scan_get_next_rmap_item",
                                       f"pid {self._pid(slot)} {why}: mm_slot freed, "
                                       "MMF_VM_MERGEABLE cleared"))

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
                if self.profile.unlink_unstable_on_revisit and item.flags == UNSTABLE_FLAG:
                    self.remove_rmap_item_from_tree(item)
                return item
            if item.vpn > vpn:
                break
            pos += 1
            self.remove_rmap_item_from_tree(item)
            self._free_rmap_item(item)
        slot.rest_pos = pos
        item = RmapItem(slot, vpn)
        self.ks.rmap_items += 1
        slot.nr_items += 1
        slot.items.append(item)
        return item

    def remove_trailing_rmap_items(self, slot: MmSlot) -> None:
        """remove_trailing_rmap_items(): free the items from the cursor to the list end."""
        for item in slot.rest[slot.rest_pos:]:
            self.remove_rmap_item_from_tree(item)
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
        self.remove_rmap_item_from_tree(item)
        if self._tr is not None:
            self._tr.steps.append(Step(0, "should_skip_rmap_item",
                                       f"{self._where(item)}: age {age}, skipped"))
        return True

    # -- trees -----------------------------------------------------------------------------

    def remove_rmap_item_from_tree(self, item: RmapItem) -> None:
        """remove_rmap_item_from_tree(): unlink the item from the stable or unstable tree."""
        ks = self.ks
        flags = item.flags
        if flags == STABLE_FLAG:
            node = item.head
            assert node is not None
            if self._modern:
                if node.kpage.mapcount <= 0:
                    # ksm_get_folio() finds the KSM page freed: the whole node goes.
                    self.remove_node_from_stable_tree(node)
                    return
                del node.items[item]
                if node.items:
                    ks.pages_sharing -= 1
                else:
                    ks.pages_shared -= 1
            else:
                del node.items[item]
                if node.node_item is item:
                    if node.items:
                        node.node_item = next(reversed(node.items))
                        ks.pages_sharing -= 1
                    else:
                        del ks.stable[node.content]
                        ks.pages_shared -= 1
                else:
                    ks.pages_sharing -= 1
                item.oldchecksum = 0  # 2.6.32: oldchecksum shares storage with ->next
            item.slot.merging_pages -= 1
            item.head = None
            item.flags = 0
            if self._tr is not None:
                self._tr.steps.append(Step(self._depth, "remove_rmap_item_from_tree",
                                           f"{self._where(item)} leaves the stable node of "
                                           f"KSM page #{node.kpage.id}"))
        elif flags == UNSTABLE_FLAG:
            age = (ks.seqnr - item.seqnr) & SEQNR_MASK
            assert age <= 1, "unstable rmap_item older than one pass"
            if age == 0 and ks.unstable.get(item.key) is item:
                del ks.unstable[item.key]
            ks.pages_unshared -= 1
            item.flags = 0
            if self._tr is not None:
                self._tr.steps.append(Step(self._depth, "remove_rmap_item_from_tree",
                                           f"{self._where(item)} leaves the unstable tree: "
                                           "pages_unshared-1"))

    def remove_node_from_stable_tree(self, node: StableNode) -> None:
        """remove_node_from_stable_tree(): drop a stable node and all its items (6.x)."""
        ks = self.ks
        last = len(node.items)
        for i, item in enumerate(node.items, 1):
            if i == last:
                ks.pages_shared -= 1
            else:
                ks.pages_sharing -= 1
            item.slot.merging_pages -= 1
            item.head = None
            item.flags = 0
        node.items.clear()
        chain = node.chain
        if chain is not None:
            chain.dups.remove(node)
            node.chain = None
            ks.stable_node_dups -= 1
        elif ks.stable.get(node.content) is node:
            del ks.stable[node.content]
        if self._tr is not None:
            self._tr.steps.append(Step(2, "remove_node_from_stable_tree",
                                       f"KSM page of content {node.content} is gone: "
                                       f"node and its {last} items dropped"))

    def _stale(self, node: StableNode) -> bool:
        """ksm_get_folio() fails: the KSM page has been freed."""
        return node.kpage.mapcount <= 0

    def _candidate(self, node: StableNode, offset: int = 0) -> bool:
        """__is_page_sharing_candidate(): the node has sharers and room for more."""
        n = len(node.items)
        return bool(n) and n + offset < int(self.ks.knobs["max_page_sharing"])

    def stable_node_dup(self, chain: StableChain, prune: bool) -> StableNode | None:
        """stable_node_dup(): the best dup of a chain to share (pruning stale dups every
        stable_node_chains_prune_millisecs); collapses a chain left with one dup."""
        ks = self.ks
        prune_ms = int(ks.knobs["stable_node_chains_prune_millisecs"])
        if prune and ks.clock_ms >= chain.prune_time + prune_ms:
            chain.prune_time = ks.clock_ms
        else:
            prune = False
        found: StableNode | None = None
        found_len = 0
        for dup in list(chain.dups):
            if self._stale(dup):
                self.remove_node_from_stable_tree(dup)
                continue
            if found is None or (self._candidate(dup) and (
                    not self._candidate(found) or len(dup.items) > found_len)):
                found = dup
                found_len = len(dup.items)
                if not prune and self._candidate(found):
                    break
        if found is not None:
            if len(chain.dups) == 1:
                ks.stable[chain.content] = found
                found.chain = None
                chain.dups.clear()
                ks.stable_node_chains -= 1
                ks.stable_node_dups -= 1
            elif chain.dups[0] is not found and self._candidate(found, 1):
                chain.dups.remove(found)
                chain.dups.insert(0, found)
        else:
            del ks.stable[chain.content]
            ks.stable_node_chains -= 1
        return found

    def _lookup_stable(self, content: int, prune: bool) -> StableNode | None:
        """The node (or best dup) of this content, after dropping stale ones ("goto again")."""
        ks = self.ks
        while True:
            entry = ks.stable.get(content)
            if entry is None:
                return None
            if isinstance(entry, StableChain):
                dup = self.stable_node_dup(entry, prune)
                if dup is None:
                    continue
                return dup
            if self._stale(entry):
                self.remove_node_from_stable_tree(entry)
                continue
            return entry

    def stable_tree_search(self, page: Page) -> Page | None:
        """stable_tree_search(): the KSM page of equal content that can take one more sharer;
        the page itself if it is a KSM page (forked)."""
        tr = self._tr
        if isinstance(page.ksm, StableNode):
            if tr is not None:
                tr.steps.append(Step(1, "stable_tree_search", "ksm page forked: it is its "
                                     "own stable node's page"))
            return page
        node = self._lookup_stable(page.content, True)
        if node is None:
            if tr is not None:
                tr.steps.append(Step(1, "stable_tree_search", "no KSM page of this content"))
            return None
        if not self._candidate(node):
            if tr is not None:
                tr.steps.append(Step(1, "stable_tree_search",
                                     f"KSM page found but full ({len(node.items)} sharers, "
                                     f"max_page_sharing {self.ks.knobs['max_page_sharing']})"))
            return None
        if tr is not None:
            tr.steps.append(Step(1, "stable_tree_search",
                                 f"found KSM page #{node.kpage.id} ({len(node.items)} sharers)"))
        return node.kpage

    def stable_tree_insert(self, kpage: Page) -> StableNode:
        """stable_tree_insert(): a node for a new KSM page; a second KSM page of the same
        content turns the node into a chain of dups (stable_node_chains/dups)."""
        ks = self.ks
        content = kpage.content
        need_chain = self._lookup_stable(content, False) is not None
        node = StableNode(content, kpage)
        if not need_chain:
            ks.stable[content] = node
        else:
            entry = ks.stable[content]
            if isinstance(entry, StableNode):
                chain = StableChain(content, ks.clock_ms)
                ks.stable_node_chains += 1
                ks.stable[content] = chain
                entry.chain = chain
                chain.dups.insert(0, entry)
                ks.stable_node_dups += 1
            else:
                chain = entry
            node.chain = chain
            chain.dups.insert(0, node)
            ks.stable_node_dups += 1
        kpage.ksm = node
        if self._tr is not None:
            how = (f"a new dup under a stable_node chain ({len(node.chain.dups)} dups)"
                   if node.chain is not None else "a new node")
            self._tr.steps.append(Step(1, "stable_tree_insert",
                                       f"KSM page #{kpage.id}: {how}"))
        return node

    def stable_tree_append(self, item: RmapItem, node: StableNode) -> None:
        """stable_tree_append(): hang the item off the node (the first one is "shared", the
        others "sharing")."""
        ks = self.ks
        node.items[item] = None
        item.head = node
        item.flags = STABLE_FLAG
        if len(node.items) > 1:
            ks.pages_sharing += 1
        else:
            ks.pages_shared += 1
        item.slot.merging_pages += 1
        if self._tr is not None:
            counter = "pages_sharing" if len(node.items) > 1 else "pages_shared"
            self._tr.steps.append(Step(1, "stable_tree_append",
                                       f"{self._where(item)} joins KSM page #{node.kpage.id}: "
                                       f"{counter}+1"))

    def unstable_tree_search_insert(self, item: RmapItem, page: Page
                                    ) -> tuple[RmapItem, Page] | None:
        """unstable_tree_search_insert(): an identical page already in the unstable tree, or
        insert this item (pages_unshared+1)."""
        ks = self.ks
        tr = self._tr
        content = page.content
        tree_item = ks.unstable.get(content)
        if tree_item is not None:
            tree_page = self._get_mergeable_page(tree_item)
            if tree_page is None:
                if tr is not None:
                    tr.steps.append(Step(1, "unstable_tree_search_insert",
                                         f"{self._where(tree_item)} is gone: give up"))
                return None
            if tree_page is page:
                if tr is not None:
                    tr.steps.append(Step(1, "unstable_tree_search_insert",
                                         f"{self._where(tree_item)} maps the same physical "
                                         "page (forked): give up"))
                return None
            if tree_page.content == content:
                if tr is not None:
                    tr.steps.append(Step(1, "unstable_tree_search_insert",
                                         f"identical page at {self._where(tree_item)}"))
                return tree_item, tree_page
        item.flags = UNSTABLE_FLAG
        item.seqnr = ks.seqnr & SEQNR_MASK
        item.key = content
        ks.unstable[content] = item
        ks.pages_unshared += 1
        if tr is not None:
            tr.steps.append(Step(1, "unstable_tree_search_insert",
                                 "no identical page: inserted, pages_unshared+1"))
        return None

    # -- merging ---------------------------------------------------------------------------

    def _find_mergeable_vma(self, mm: MM, vpn: int) -> VMA | None:
        """find_mergeable_vma(): the VM_MERGEABLE VMA (with an anon_vma) at the address."""
        if mm.mm_users == 0:
            return None
        addr = vpn << PAGE_SHIFT
        vma = self._vma_cache.get(mm)
        if vma is None or not vma.start <= addr < vma.end:
            vma = mm.vma_at(addr)
            if vma is None:
                return None
            self._vma_cache[mm] = vma
        if not int.__and__(vma.flags, _MERGEABLE) or vma.anon_vma is None:
            return None
        return vma

    def _get_mergeable_page(self, item: RmapItem) -> Page | None:
        """get_mergeable_page(): the anonymous page the item's address maps now."""
        mm = item.slot.mm
        if self._find_mergeable_vma(mm, item.vpn) is None:
            return None
        page = mm.ptes.get(item.vpn)
        return page if page is not None and page.anon else None

    def try_to_merge_one_page(self, mm: MM, vma: VMA, vpn: int, page: Page,
                              kpage: Page | None) -> int:
        """try_to_merge_one_page(): write-protect `page` and map `kpage` instead (kpage None:
        `page` itself becomes a KSM page)."""
        if page is kpage:  # ksm page forked
            return 0
        if not page.anon:
            return -errno.EFAULT
        if kpage is None:
            page.ksm = _PENDING
            return 0
        if page.content != kpage.content:  # pages_identical()
            return -errno.EFAULT
        return self.replace_page(mm, vpn, page, kpage)

    def replace_page(self, mm: MM, vpn: int, page: Page, kpage: Page) -> int:
        """replace_page(): repoint the pte from `page` to the KSM page (or the zero page)."""
        ks = self.ks
        if mm.ptes.get(vpn) is not page:
            return -errno.EFAULT
        mm.ptes[vpn] = kpage
        kpage.mapcount += 1
        if kpage is ks.zero_page:
            ks.map_zero_page(mm)
        page.mapcount -= 1
        return 0

    def try_to_merge_with_ksm_page(self, item: RmapItem, page: Page,
                                   kpage: Page | None) -> int:
        """try_to_merge_with_ksm_page(): merge the item's page into `kpage`."""
        mm = item.slot.mm
        vma = self._find_mergeable_vma(mm, item.vpn)
        if vma is None:
            return -errno.EFAULT
        err = self.try_to_merge_one_page(mm, vma, item.vpn, page, kpage)
        if err:
            return err
        if self._modern:
            self.remove_rmap_item_from_tree(item)
        return 0

    def try_to_merge_with_zero_page(self, item: RmapItem, page: Page) -> int:
        """try_to_merge_with_zero_page() (use_zero_pages): map the shared zero page instead
        of a page with the zero page's checksum. 0 if done (or the VMA went), else -EFAULT."""
        mm = item.slot.mm
        vma = self._find_mergeable_vma(mm, item.vpn)
        if vma is None:
            return 0
        err = self.try_to_merge_one_page(mm, vma, item.vpn, page, self.ks.zero_page)
        if not err and self._tr is not None:
            self._tr.steps.append(Step(1, "try_to_merge_with_zero_page",
                                       "zero-filled: mapped the zero page, ksm_zero_pages+1"))
        return err

    def try_to_merge_two_pages(self, item: RmapItem, page: Page, tree_item: RmapItem,
                               tree_page: Page) -> Page | None:
        """try_to_merge_two_pages(): make one KSM page of two identical pages; 6.x turns
        `page` into the KSM page, 2.6.32 copies it into a new kernel page."""
        ks = self.ks
        tr = self._tr
        if self._in_place:
            err = self.try_to_merge_with_ksm_page(item, page, None)
            kpage = page
        else:
            limit = int(ks.knobs.get("max_kernel_pages", 0))
            if limit and limit <= ks.pages_shared:
                if tr is not None:
                    tr.steps.append(Step(1, "try_to_merge_two_pages",
                                         f"max_kernel_pages {limit} reached: no merge"))
                return None
            kpage = Page(page.content, mapcount=0, anon=True)
            kpage.ksm = _PENDING
            err = self.try_to_merge_with_ksm_page(item, page, kpage)
        if not err:
            err = self.try_to_merge_with_ksm_page(tree_item, tree_page, kpage)
            if err:
                # "we have a ksm page with only one pte pointing to it: so break it."
                self.break_cow(item)
        if tr is not None:
            tr.steps.append(Step(1, "try_to_merge_two_pages",
                                 f"merged into KSM page #{kpage.id}" if not err else "failed"))
        return None if err else kpage

    def break_cow(self, item: RmapItem) -> None:
        """break_cow(): break_ksm() at the item's address, if it is still mergeable."""
        mm = item.slot.mm
        vma = self._find_mergeable_vma(mm, item.vpn)
        if vma is not None:
            if self._tr is not None:
                self._tr.steps.append(Step(1, "break_cow", self._where(item)))
            break_ksm(mm, vma, item.vpn, self._tr)

    # -- cmp_and_merge_page ----------------------------------------------------------------

    def _checksum(self, content: int) -> int:
        got = self._checksums.get(content)
        if got is None:
            got = self._checksums[content] = calc_checksum(content, self._algorithm)
        return got

    def _cmp_and_merge_page(self, page: Page, item: RmapItem) -> None:
        """cmp_and_merge_page() of 6.x (the checksum gate first, then the stable tree)."""
        ks = self.ks
        tr = self._tr
        node = page.ksm
        if isinstance(node, StableNode):
            if item.head is node:
                if tr is not None:
                    tr.steps.append(Step(1, "cmp_and_merge_page",
                                         "KSM page already linked from this item: nothing"))
                return
        else:
            if item.flags:
                self.remove_rmap_item_from_tree(item)
            checksum = self._checksum_gate(item, page, tr)
            if checksum is None:
                return
            if (ks.knobs.get("use_zero_pages") and checksum == self.zero_checksum
                    and not self.try_to_merge_with_zero_page(item, page)):
                return
        self._merge_with_trees(page, item, node)

    def _merge_with_trees(self, page: Page, item: RmapItem, node: object) -> None:
        """The rest of cmp_and_merge_page() (6.x): the stable tree, then the unstable one."""
        if self._tr is None and page.ksm is None and page.content not in self.ks.stable:
            kpage = None  # stable_tree_search() finds no node of this content
        else:
            kpage = self.stable_tree_search(page)
        if kpage is page and item.head is node:
            return
        if item.flags:
            self.remove_rmap_item_from_tree(item)
        if kpage is not None:
            err = self.try_to_merge_with_ksm_page(item, page, kpage)
            if not err:
                assert isinstance(kpage.ksm, StableNode)
                self.stable_tree_append(item, kpage.ksm)
            return
        found = self.unstable_tree_search_insert(item, page)
        if found is not None:
            tree_item, tree_page = found
            merged = self.try_to_merge_two_pages(item, page, tree_item, tree_page)
            if merged is not None:
                new = self.stable_tree_insert(merged)
                self.stable_tree_append(tree_item, new)
                self.stable_tree_append(item, new)

    def _cmp_and_merge_page_2632(self, page: Page, item: RmapItem) -> None:
        """cmp_and_merge_page() of 2.6.32 (the stable tree first, then the checksum gate)."""
        ks = self.ks
        tr = self._tr
        if item.flags == STABLE_FLAG:
            self.remove_rmap_item_from_tree(item)
        found = self._stable_tree_search_2632(page)
        if found is not None:
            node, kpage = found
            if page is kpage and tr is not None:
                tr.steps.append(Step(1, "cmp_and_merge_page", "the same physical page (a "
                                     "forked KSM page): just link it"))
            err = 0 if page is kpage else self.try_to_merge_with_ksm_page(item, page, kpage)
            if not err:
                self._stable_tree_append_2632(item, node)
            return
        if page.ksm is not None:
            # "A ksm page might have got here by fork, but its other references have
            # already been removed from the stable tree": break it.
            self.break_cow(item)
        if self._checksum_gate(item, page, tr) is None:
            return
        got = self.unstable_tree_search_insert(item, page)
        if got is None:
            return
        tree_item, tree_page = got
        kpage2 = self.try_to_merge_two_pages(item, page, tree_item, tree_page)
        if kpage2 is None:
            return
        self.remove_rmap_item_from_tree(tree_item)
        if ks.stable.get(kpage2.content) is not None:
            # stable_tree_insert() met an equal page: both new mappings are broken again.
            self.break_cow(tree_item)
            self.break_cow(item)
            return
        node = StableNode(kpage2.content, kpage2)
        node.node_item = tree_item
        ks.stable[kpage2.content] = node
        kpage2.ksm = node
        node.items[tree_item] = None
        tree_item.head = node
        tree_item.flags = STABLE_FLAG
        tree_item.slot.merging_pages += 1
        ks.pages_shared += 1
        if tr is not None:
            tr.steps.append(Step(1, "stable_tree_insert",
                                 f"{self._where(tree_item)} is the node of KSM page "
                                 f"#{kpage2.id}: pages_shared+1"))
        self._stable_tree_append_2632(item, node)

    def _stable_tree_search_2632(self, page: Page) -> tuple[StableNode, Page] | None:
        """2.6.32 stable_tree_search(): the node's KSM page is found through the node's first
        rmap_item; items whose address no longer maps a KSM page are dropped on the way."""
        ks = self.ks
        tr = self._tr
        while True:
            node = ks.stable.get(page.content)
            if node is None:
                if tr is not None:
                    tr.steps.append(Step(1, "stable_tree_search", "no KSM page of this content"))
                return None
            assert isinstance(node, StableNode) and node.node_item is not None
            first = node.node_item
            kpage = self._get_mergeable_page(first)
            if kpage is not None and kpage.ksm is not None:
                break
            if tr is not None:
                tr.steps.append(Step(1, "stable_tree_search",
                                     f"{self._where(first)} no longer maps a KSM page: "
                                     "dropped from the tree"))
            self.remove_rmap_item_from_tree(first)
        if kpage.content != page.content:
            return None
        if tr is not None:
            tr.steps.append(Step(1, "stable_tree_search", f"found KSM page #{kpage.id}"))
        return node, kpage

    def _stable_tree_append_2632(self, item: RmapItem, node: StableNode) -> None:
        """2.6.32 stable_tree_append(): link the item right after the node (sharing+1)."""
        node.items[item] = None
        item.head = node
        item.flags = STABLE_FLAG
        item.slot.merging_pages += 1
        self.ks.pages_sharing += 1
        if self._tr is not None:
            self._tr.steps.append(Step(1, "stable_tree_append",
                                       f"{self._where(item)} joins KSM page #{node.kpage.id}: "
                                       "pages_sharing+1"))

    # -- run=2 and the knobs that need an empty stable tree --------------------------------

    def unmerge_and_remove_all_rmap_items(self, tr: Trace | None) -> int:
        """unmerge_and_remove_all_rmap_items() (run=2): break every KSM page of every
        mergeable VMA, free every rmap_item, full_scans 0. 0 or -errno (the cursor then goes
        back to the list head and run to 0)."""
        ks = self.ks
        self._cand = None
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
        if self._modern:
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
                    if self._remove_stable_node(dup):
                        return -errno.EBUSY
                if ks.stable.get(entry.content) is entry:
                    del ks.stable[entry.content]
                    ks.stable_node_chains -= 1
            elif self._remove_stable_node(entry):
                return -errno.EBUSY
        return 0

    def _remove_stable_node(self, node: StableNode) -> int:
        """remove_stable_node(): -EBUSY if the KSM page is still mapped."""
        if not self._stale(node):
            return -errno.EBUSY
        self.remove_node_from_stable_tree(node)
        return 0

    def _scan_time_advisor(self) -> None:
        """scan_time_advisor() (6.8): retune pages_to_scan from the last pass's duration and
        ksmd's CPU share, both on the simulated clock."""
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

    # -- views (read only) -----------------------------------------------------------------

    def _pid(self, slot: MmSlot) -> int | None:
        if slot.pid is None:
            slot.pid = self.ks.pid_of(slot.mm)
        return slot.pid

    def _where(self, item: RmapItem) -> str:
        return f"pid {self._pid(item.slot)} {item.address:#x}"

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
                if not self._modern and node.node_item is not None:
                    items.remove(node.node_item)
                    items.insert(0, node.node_item)
                out.append(StableNodeView(content, node.kpage.id, node.kpage.mapcount,
                                          tuple(self._sharer(i) for i in items),
                                          isinstance(entry, StableChain),
                                          len(nodes) if isinstance(entry, StableChain) else 0))
        return out

    def unstable_tree(self) -> list[UnstableItemView]:
        """This pass's unstable tree, by content."""
        return [UnstableItemView(c, self._pid(self.ks.unstable[c].slot),
                                 self.ks.unstable[c].address)
                for c in sorted(self.ks.unstable)]

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
        out = []
        for vpn, page in process.mm.ptes.items():
            kind = ("ksm-zero" if page is zero else "ksm" if page.ksm is not None
                    else "anon" if page.anon else "file")
            out.append(PageView(vpn << PAGE_SHIFT, page.content, page.id, page.mapcount, kind))
        return out

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
                               - ks.rmap_items * self.profile.rmap_item_size),
        }
        return {name: every[name] for name in self.profile.ksm_counters}

    def ksm_stat(self, process: Process) -> dict[str, int | str]:
        """/proc/PID/ksm_stat (6.x): the process's rmap_items, zero pages, merging pages,
        profit, and whether it has MMF_VM_MERGE_ANY / a VM_MERGEABLE area."""
        if "ksm_zero_pages" not in self.profile.ksm_counters:
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
            - items * self.profile.rmap_item_size,
            "ksm_merge_any": "yes" if mm.flags & MMF.MMF_VM_MERGE_ANY else "no",
            "ksm_mergeable": "yes" if any(v.flags & VM.VM_MERGEABLE for v in mm.vmas)
            else "no",
        }


# -- predictions for the live comparison ---------------------------------------------------


def predict(contents: Sequence[Any] | None, *, profile: str = "modern", scans: int = 2,
            use_zero_pages: int = 0, max_page_sharing: int | None = None,
            smart_scan: int | None = None, processes: int | list[list[Any]] = 1
            ) -> dict[str, Any]:
    """The simulator's counters after `scans` full scans of the given pages, in the shape of
    ``ksmbook.live_ksmd.measure`` (same arguments, same keys), so the two can be compared.

    `contents`: one list of page contents (ints; READ = read-touched; None = untouched), mapped
    by each of `processes` processes, or pass one list per process as `processes`.
    """
    from .constants import MADV, MAP, PROT
    from .kernel import Kernel

    if isinstance(processes, list):
        plan = [list(p) for p in processes]
    else:
        plan = [list(contents or ()) for _ in range(int(processes))]
    k = Kernel(profile=profile)
    ksmd = k.ksmd
    ksmd.tracing = False
    procs = []
    for pages in plan:
        p = k.spawn()
        procs.append(p)
        if not pages:
            continue
        a = p.mmap(len(pages) * PAGE_SIZE, PROT.PROT_READ | PROT.PROT_WRITE,
                   MAP.MAP_PRIVATE | MAP.MAP_ANONYMOUS)
        i = 0
        while i < len(pages):  # write runs of ints in one call
            j = i
            while j < len(pages) and isinstance(pages[j], int) and not isinstance(pages[j], bool):
                j += 1
            if j > i:
                p.write_pages(a + i * PAGE_SIZE, pages[i:j])
                i = j
            else:
                if pages[i] == READ:
                    p.read_page(a + i * PAGE_SIZE)
                elif pages[i] is not None:
                    raise ValueError(f"page content must be an int, READ or None: {pages[i]!r}")
                i += 1
        p.madvise(a, len(pages) * PAGE_SIZE, MADV.MADV_MERGEABLE)
    sysfs = k.sysfs
    if use_zero_pages or "use_zero_pages" in sysfs:
        sysfs["use_zero_pages"] = use_zero_pages
    if max_page_sharing is not None:
        sysfs["max_page_sharing"] = max_page_sharing
    if smart_scan is not None:
        sysfs["smart_scan"] = smart_scan
    sysfs["pages_to_scan"] = 10_000_000
    sysfs["sleep_millisecs"] = 0
    sysfs["run"] = 1
    history = [ksmd.full_scans(1) for _ in range(scans)]
    result: dict[str, Any] = dict(history[-1]) if history else ksmd.counters()
    result["history"] = history
    result["ksm_stat"] = [ksmd.ksm_stat(p) for p in procs] if profile == "modern" else []
    return result
