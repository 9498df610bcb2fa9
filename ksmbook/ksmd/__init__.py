"""ksmd: the KSM scanner thread, its two trees and its counters (mm/ksm.c).

One `Ksmd` per simulated kernel (``k.ksmd``). It steps ksm_scan_thread() by batches of
ksm_do_scan(pages_to_scan) or by full scans, on a simulated clock, and records what it did as a
`Trace` per batch. The parts, each the part of mm/ksm.c it models:

* ``scan``: ksm_do_scan(), scan_get_next_rmap_item() and smart_scan, cmp_and_merge_page(),
  run=2 (unmerge_and_remove_all_rmap_items()) and the scan-time advisor;
* ``trees``: the stable and unstable trees, red-black trees ordered by memcmp() of the pages
  (``ksmbook.rbtree``, ``ksmbook.pages``) whose walks stop and prune where the kernel's do;
* ``merge``: try_to_merge_*() and break_cow();
* ``views``: the counters, /proc/PID/ksm_stat and read-only records for diagrams;
* ``base``: what they share (the kernel, the batch's trace, calc_checksum());
* this module: the thread (ksm_scan_thread()) and its clock.

The same experiment on the simulator and on this machine's ksmd is ``ksmbook.experiment``.

Every difference between kernels is a feature of the `Profile` (``ksmbook.profiles``), tested
where the code branches: 2.6.32 (final v2.6.32 mm/ksm.c) has no separate stable_node objects,
copies merged pages into new KSM pages (max_kernel_pages) and breaks a KSM page left with one
mapping; the modern profile (6.18, which this machine runs) adds max_page_sharing chains,
use_zero_pages, smart_scan, the scan-time advisor and more counters.

Contents are symbolic ints (0 is the zero page), so calc_checksum() is a deterministic 32-bit
stand-in for jhash2/xxhash. A new rmap_item starts with oldchecksum 0, so its first visit is
volatile.

What can go wrong in the real kernel and is not modelled: allocation failures of rmap_items or
stable nodes, page locks held by others (trylock), pages pinned by I/O (write_protect_page()
refusing), NUMA (merge_across_nodes is a knob with its checks, one node), transparent huge pages.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..constants import HZ, msecs_to_jiffies
from ..ksm import KSM_RUN_MERGE
from ..trace import Trace
from .base import calc_checksum
from .scan import Scan
from .views import PageView, RmapItemView, Sharer, SlotView, StableNodeView, UnstableItemView, Views

if TYPE_CHECKING:
    from ..kernel import Kernel

__all__ = ["Ksmd", "KsmdIdle", "KsmdUnavailable", "BatchReport", "Sharer", "StableNodeView",
           "UnstableItemView", "RmapItemView", "PageView", "SlotView", "calc_checksum",
           "PAGE_COST_US", "BATCH_COST_US"]

#: Simulated CPU time of ksmd: per page processed by cmp_and_merge_page() and per batch
#: (pass-start drain, locking). Calibrated on this machine's live ksmd (2 to 5 us per page in
#: a pass that merges, less in one that only hashes or finds KSM pages).
PAGE_COST_US = 2.5
BATCH_COST_US = 50.0


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


class Ksmd(Scan, Views):
    """The ksmd thread of a simulated kernel, stepped by hand on a simulated clock.

    ``batch()`` is one wake-up (ksm_do_scan(pages_to_scan), then sleep_millisecs);
    ``full_scans(n)`` runs batches until n more passes have ended; ``run_for(ms)`` runs the
    thread for a span of simulated time. ``tracing`` (default on) records every decision in a
    `Trace` per batch (``last_trace``, ``log``).
    """

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel)
        self.tracing = True
        self.last_trace: Trace | None = None
        self.log: collections.deque[Trace] = collections.deque(maxlen=16)
        self.batches = 0
        self.page_cost_us = PAGE_COST_US
        self.batch_cost_us = BATCH_COST_US

    def __repr__(self) -> str:
        ks = self.ks
        return (f"Ksmd(run={ks.run}, full_scans={ks.seqnr}, mm_slots={len(ks.slots)}, "
                f"clock_ms={ks.clock_ms:g})")

    @property
    def pages_scanned(self) -> int:
        """Pages handed to cmp_and_merge_page() since boot (ksm_pages_scanned), also in a
        kernel whose sysfs shows no pages_scanned."""
        return self.ks.pages_scanned

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
                tr.note("ksm_scan_thread", "ksmd_should_run() is false ({}): ksmd waits",
                        self._why_idle())
                tr.result = 0
                self._keep(tr)
            return BatchReport(self.batches, False, 0, 0, False, ks.clock_ms, tr)
        scanned, skipped, seqnr = ks.pages_scanned, ks.pages_skipped, ks.seqnr
        self._tr = tr
        try:
            self.ksm_do_scan(n)
        finally:
            self._tr = None
            self._walk = None
        scanned = ks.pages_scanned - scanned
        skipped = ks.pages_skipped - skipped
        cpu = (scanned * self.page_cost_us + self.batch_cost_us) / 1000
        ks.clock_ms += cpu
        ks.cpu_ms += cpu
        # ksm_scan_thread() sleeps msecs_to_jiffies(sleep_millisecs): whole jiffies, 4 ms at
        # HZ=250 (v2.6.32 mm/ksm.c 1354-1355; 6.x wait_event_freezable_timeout()).
        slept = msecs_to_jiffies(int(ks.knobs["sleep_millisecs"])) * 1000 // HZ
        if self.ksmd_should_run():
            ks.clock_ms += slept
        if tr is not None:
            tr.result = scanned
            tr.note("ksm_scan_thread", "{} pages scanned, {} skipped; sleep {} ms (clock {:g} ms)",
                    scanned, skipped, slept, ks.clock_ms)
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
