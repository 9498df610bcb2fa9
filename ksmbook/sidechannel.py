"""Deduplication as a side channel: what a write costs, and what that tells another process.

A page that KSM has merged is mapped read-only into every process that shares it. A write to it
takes a page fault and gets a private copy: do_wp_page() never reuses a KSM page for a write
(2.6.32 mm/memory.c: the reuse branch requires ``!PageKsm(old_page)``; 6.x:
wp_can_reuse_anon_folio() refuses KSM folios), so it goes on to wp_page_copy(), which allocates
a page, copies 4 KiB and changes the page table. A write to a private page that is mapped only
once needs no fault at all. The difference is large and easy to time, and it only exists
because *some other mapping had the same content*: that is the side channel.

Which fault a write took is not worked out here: the simulated kernel's fault handler records
it (``Process.write_pages`` is a traced call with one ``fault`` event per page, its detail a
`ksmbook.trace.Fault`; `fault_of` reads it). `LATENCY_US` gives each kind of fault the latency
measured on this machine; `timed_write` performs a write on the simulator and returns the
latency modelled for the fault its trace recorded, with noise from a seeded `random.Random`,
so a notebook that uses it prints the same numbers on every run. The attack (map pages
holding guesses, advise them MERGEABLE, let ksmd scan, time a write to each) is written once,
as statements of the scenario language (`probe_statements`, which the chapter 8 exercises use
too): `probe` runs them through the scenario Runner on the simulator, `probe_live` replays
them on this machine's kernel (``ksmbook.live.replay``) and times the writes for real.

Calibration: this machine (Linux 6.18.44 x86-64, AMD EPYC, 2 vCPUs), measured with::

    python3 -m ksmbook.sidechannel --calibrate --pages 2048   (root, KSM built in)

A ``ksmbook.live`` worker maps 2048 pages of each kind and forks a child that keeps the
fork-shared ones (and, for the reuse row, a second child that exits at once); the live ksmd
merges the mergeable ones (two exact full scans through ``ksmbook.live.ksmd.session``:
pages_to_scan 10,000,000, use_zero_pages 1, smart_scan 0, ksmd parked between scans and
stopped while timing; every knob restored afterwards); the merges are
checked in /proc/PID/ksm_stat; then the worker writes one byte to each page, in a shuffled
order, between two ``time.perf_counter_ns()``. Microseconds; "- none" subtracts the first row,
which is the cost of the timing itself (a ctypes call) plus a write that needs no fault::

    kind          median    p10    p90  - none    p99   what the write does
    none            0.86   0.73   1.03    0.00   2.79   private page mapped once: no fault
    first-touch     2.90   2.64   3.21    2.04  10.67   do_anonymous_page(): a zeroed page
    cow-zero        3.21   2.96   3.58    2.35  10.91   wp_page_copy() from the zero page
    reuse           2.31   2.10   2.56    1.45   3.06   wp_page_reuse(): fork()ed twin gone
    cow             3.58   3.33   4.14    2.72  11.01   wp_page_copy(): page shared by fork()
    cow-ksm         3.85   3.40   4.71    2.99  11.38   wp_page_copy(): a KSM page
    cow-ksm-zero    3.21   2.96   3.62    2.35  10.78   wp_page_copy(): a KSM-placed zero page

Over twelve runs (1024 and 2048 pages per kind) the medians moved by less than 0.25 us and the
ratio cow-ksm / none stayed between 4.3 and 5.2; the p99 (interrupts and the like) between 6
and 11 us. A write to a merged page costs about 4.5 times a write to a private one here (3 us
more). It costs a little more than a copy after fork() (0.3 us), so the attacker's real signal
is "fault or no fault": the attacker's own pages were written before, so any fault on them
means ksmd merged them. With use_zero_pages=1, a zero page that ksmd replaced by the zero page
costs what any zero page costs (cow-ksm-zero = cow-zero, the write to a page only read
before): the write tells only that the page was all zeros and had been scanned.

The reuse row was measured later, by the same command on the same machine, busier then: in
its two runs "none" took 1.05 us and the other medians 0.15-0.4 us more than in the table, so
a write that reuses its page (fork()ed to a child that has exited since) costs about 2.1 us
here, between no fault and a new page.

What the model leaves out: THP, swap, NUMA, caches that a real attacker must also defeat, and
everything before the write: the attacker also pays for waiting until ksmd has scanned its
pages twice.
"""

from __future__ import annotations

import errno
import json
import math
import os
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .constants import MADV, PAGE_SIZE, PROT
from .ksmd import KsmdIdle
from .scenario import (
    Addr,
    Boot,
    KsmdScans,
    Madvise,
    Map,
    Runner,
    Scenario,
    Spawn,
    Statement,
    SysfsWrite,
    Write,
)
from .trace import Fault, Trace

if TYPE_CHECKING:
    from .kernel import Kernel, Process

__all__ = ["KINDS", "LATENCY_US", "SPREAD", "CALIBRATION", "fault_of", "model_latency",
           "WriteTiming", "timed_write", "ProbeRow", "Probe", "probe_statements", "probe",
           "probe_live", "threshold_us",
           "measure_write_latency", "calibration_text", "main"]

#: The measured calibration (microseconds): kind -> (median, p10, p90), keyed by the `Fault`
#: names of the table in the module docstring (see it for the command and the machine).
CALIBRATION: dict[Fault, tuple[float, float, float]] = {
    Fault.NONE: (0.86, 0.73, 1.03),
    Fault.ANON_NEW: (2.90, 2.64, 3.21),
    Fault.ZERO_COPY: (3.21, 2.96, 3.58),
    Fault.REUSE: (2.31, 2.10, 2.56),
    Fault.COW_COPY: (3.58, 3.33, 4.14),
    Fault.KSM_COPY: (3.85, 3.40, 4.71),
    Fault.KSM_ZERO_COPY: (3.21, 2.96, 3.62),
}
#: The faults a write can take that the calibration measured (their `Fault.text` says what
#: each does, in the kernel's words).
KINDS = tuple(CALIBRATION)
#: Modelled typical latency of each kind of write fault (the measured medians), microseconds.
LATENCY_US: dict[Fault, float] = {kind: CALIBRATION[kind][0] for kind in KINDS}
#: The spread of each kind: sigma of a log-normal fitted to the measured median and p90.
SPREAD: dict[Fault, float] = {
    kind: math.log(CALIBRATION[kind][2] / CALIBRATION[kind][0]) / 1.2816 for kind in KINDS}


# -- the cost model -------------------------------------------------------------------------

def fault_of(trace: Trace | None) -> Fault:
    """The fault that a one-page write or read took, from its trace's fault event
    (``Process.write_pages`` records one per page: see ``ksmbook.kernel.handle_write_fault``)."""
    faults = trace.faults() if trace is not None else []
    if len(faults) != 1:
        raise ValueError(f"not the trace of a one-page access: {len(faults)} fault events")
    return faults[0]


def model_latency(kind: Fault, rng: random.Random | None = None) -> float:
    """A modelled latency (us) for a write taking fault `kind` (one of KINDS): the measured
    median, or with `rng` a draw from a log-normal around it with the measured spread."""
    if kind not in LATENCY_US:
        raise ValueError(f"no calibration for a write that takes {kind.text}: the calibration "
                         f"measured {', '.join(KINDS)}")
    median = LATENCY_US[kind]
    if rng is None:
        return median
    return median * math.exp(SPREAD[kind] * rng.gauss(0.0, 1.0))


def threshold_us() -> float:
    """Where an attacker puts the line between "no fault" and "some fault": the geometric mean
    of the two medians."""
    return math.sqrt(LATENCY_US[Fault.NONE] * LATENCY_US[Fault.ANON_NEW])


@dataclass(frozen=True)
class WriteTiming:
    """One timed write: where, the fault it took and its modelled latency (us)."""

    pid: int
    address: int
    kind: Fault
    latency_us: float


def _runner(process: Process) -> Runner[Process]:
    """A Runner on the process's kernel, where the statements naming the process reach it."""
    runner = Runner(process.kernel, maps=False)
    if runner.procs.get(process.name) is not process:
        raise ValueError(f"another process is named {process.name!r}: the statements name "
                         "the process")
    return runner


def timed_write(process: Process, addr: int, content: int,
                rng: random.Random | None = None) -> WriteTiming:
    """Write one page with `content` on the simulator (a ``write`` statement run by the
    scenario Runner) and return the fault its trace recorded, with a modelled latency for it
    (a seeded `rng` adds noise). A write that would raise SIGSEGV raises OSError(EFAULT)."""
    result = _runner(process).step(Write(process.name, Addr(None, addr), (content,)))
    if result.result < 0:
        why = result.trace.steps[-1].message if result.trace is not None else ""
        raise OSError(-result.result, why or os.strerror(-result.result))
    kind = fault_of(result.trace)
    return WriteTiming(process.pid, addr, kind, model_latency(kind, rng))


@dataclass(frozen=True)
class ProbeRow:
    """One guess of a probe: the page that held it, the write's fault and time, the verdict."""

    guess: int
    address: int
    #: The fault the write took (None on the live kernel, which does not say).
    kind: Fault | None
    latency_us: float
    slow: bool


@dataclass(frozen=True)
class Probe:
    """The result of `probe`: one row per guess, the passes ksmd made and the threshold."""

    rows: tuple[ProbeRow, ...]
    scans: int
    threshold_us: float
    area: tuple[int, int]

    @property
    def found(self) -> list[int]:
        """The guesses whose write was slow: contents that some other mapping holds."""
        return [r.guess for r in self.rows if r.slow]

    def text(self, names: dict[int, str] | None = None) -> str:
        """The probe as a table (the text twin of its plot)."""
        def name(c: int) -> str:
            return names.get(c, str(c)) if names else str(c)
        start, end = self.area
        lines = [f"probe area {start:08x}-{end:08x} ({len(self.rows)} pages, one guess each)",
                 f"{'guess':>8}  {'address':>12}  {'fault':<13} {'time':>8}  verdict"]
        for r in self.rows:
            lines.append(f"{name(r.guess):>8}  {r.address:>12x}  {r.kind or '?':<13} "
                         f"{r.latency_us:6.2f}us  {'SLOW: someone has it' if r.slow else 'fast'}")
        lines.append(f"threshold {self.threshold_us:.2f}us after {self.scans} full scans; "
                     f"found: {', '.join(name(c) for c in self.found) or 'nothing'}")
        return "\n".join(lines)


def probe_statements(proc: str, guesses: Sequence[int], scans: int, *,
                     label: str = "") -> tuple[Statement, ...]:
    """The attack of Suzaki et al. as statements of the scenario language: `proc` maps one
    page per guess (labelled `label`, default `proc` in capitals), writes the guesses,
    advises them MADV_MERGEABLE, lets ksmd make `scans` full scans, then writes a new content
    to each page once: those last ``len(guesses)`` writes are the timed ones.

    Guesses must differ from each other (equal guesses would merge with each other)."""
    if not guesses:
        raise ValueError("no guesses")
    if len(set(guesses)) != len(guesses):
        raise ValueError("the guesses must differ from each other: equal pages of the "
                         "attacker merge with each other and would all look slow")
    area = label or proc.upper()
    length = len(guesses) * PAGE_SIZE
    return (Map(proc, area, length, int(PROT.PROT_READ | PROT.PROT_WRITE)),
            Write(proc, Addr(area, 0), tuple(guesses)),
            Madvise(proc, Addr(area, 0), length, int(MADV.MADV_MERGEABLE)),
            KsmdScans(scans),
            *(Write(proc, Addr(area, i * PAGE_SIZE), (g ^ 0x5A5A,))
              for i, g in enumerate(guesses)))


def _probe(guesses: Sequence[int], base: int, kinds: Sequence[Fault | None],
           latencies: Sequence[float], scans: int) -> Probe:
    """The probe of the guesses written from `base` on, judged by `threshold_us`."""
    line = threshold_us()
    rows = tuple(ProbeRow(g, base + i * PAGE_SIZE, kind, t, t > line)
                 for i, (g, kind, t) in enumerate(zip(guesses, kinds, latencies, strict=True)))
    return Probe(rows, scans, line, (base, base + len(rows) * PAGE_SIZE))


def probe(attacker: Process, guesses: Sequence[int], *, scans: int = 2,
          rng: random.Random | None = None) -> Probe:
    """The probe (`probe_statements`) run by the scenario Runner on the simulator, as process
    `attacker` (known to the Runner by its name): a slow write means the page had been merged,
    some other mergeable mapping holds the same content. Each timed write's latency is modelled
    from the fault its trace recorded (`fault_of`, `model_latency`; a seeded `rng` adds
    noise). ksmd must be running (run=1): KsmdIdle before anything is mapped if it is not."""
    statements = probe_statements(attacker.name, guesses, scans)
    kernel: Kernel = attacker.kernel
    if int(kernel.sysfs["run"]) != 1:  # (a kernel without ksmd raises KsmdUnavailable)
        raise KsmdIdle(f"ksmd is not running (run={kernel.sysfs['run']}): write 1 to "
                       "/sys/kernel/mm/ksm/run before the probe")
    runner = _runner(attacker)
    n = len(guesses)
    for op in statements[:-n]:
        runner.step(op)
    kinds = [fault_of(runner.step(op).trace) for op in statements[-n:]]
    base = runner.labels[attacker.name.upper()]
    return _probe(guesses, base, kinds, [model_latency(kind, rng) for kind in kinds], scans)


def probe_live(victim: Sequence[Statement], guesses: Sequence[int], *, scans: int = 2,
               proc: str = "attacker", seed: int = 0) -> Probe:
    """The same probe on this machine's kernel (root, KSM built in): the statements of
    `victim` (its set-up, without ksmd statements), then ``spawn`` `proc` and the probe's
    statements up to its timed writes, replayed by ``ksmbook.live.replay`` with this machine's
    ksmd driven (knobs saved and restored, ``run=1`` written before the scans). The timed
    writes are then one-byte stores at the addresses those write statements name, timed in
    the attacker's worker (``Worker.time_writes``, shuffled order, `seed`): the real kernel
    does not say which fault a store took, so each row's `kind` is None and its time is
    measured, not modelled."""
    from .live.harness import LiveSession
    from .live.replay import replay

    statements = probe_statements(proc, guesses, scans)
    n = len(guesses)
    set_up = statements[:-n]
    scenario = Scenario((Boot("modern", True), *victim, Spawn(proc), *set_up[:-1],
                         SysfsWrite("run", "1"), *set_up[-1:]))
    with LiveSession() as session:
        results = replay(scenario, session, ksmd=True, maps=False)
        mapped = [r for r in results if r.op == set_up[0]]
        base = mapped[-1].result
        live = session.arena.to_live(base)
        attacker = next(w for w in session.workers if w.layout(live, live + PAGE_SIZE))
        times = attacker.time_writes([live + i * PAGE_SIZE for i in range(n)], seed=seed)
    return _probe(guesses, base, [None] * n, [t / 1000 for t in times], scans)


# -- measuring the real thing ----------------------------------------------------------------

def _percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def measure_write_latency(pages: int = 1024, *, seed: int = 0) -> dict[str, Any]:
    """Time one write to each of `pages` pages of every kind on the live kernel (root, KSM
    built in): private pages, untouched ones, read-only-touched ones (the zero page), pages
    whose fork()ed twin is gone, pages shared after fork(), KSM pages, and zero pages that
    ksmd replaced by the zero page, as the module docstring's calibration says. Returns
    {kind: {"median", "p10", "p90", "p99", "mean", "n"} in us, ..., "ksm_stat": ...,
    "machine": ...}."""
    from .live import ksmd as live_ksmd

    ok, why = live_ksmd.ksm_available()
    if not ok:
        raise OSError(errno.EOPNOTSUPP, f"cannot drive the live ksmd here: {why}")
    tag = os.getpid() & 0xFFFF  # keeps the contents apart from any other process's pages
    # kind -> (contents, MADV_MERGEABLE); every region but "cow" is MADV_DONTFORK
    plan: dict[str, tuple[list[int | str | None], bool]] = {
        Fault.KSM_COPY: ([tag * 2**32 + i // 2 for i in range(2 * pages)], True),
        Fault.NONE: ([tag * 2**32 + 2**20 + i for i in range(pages)], True),
        Fault.ANON_NEW: ([None] * pages, True),
        Fault.ZERO_COPY: (["read"] * pages, True),
        Fault.COW_COPY: ([tag * 2**32 + 2**21 + i for i in range(pages)], False),
        Fault.KSM_ZERO_COPY: ([0] * pages, True),
        Fault.REUSE: ([tag * 2**32 + 2**22 + i for i in range(pages)], False),
    }
    with live_ksmd.session(use_zero_pages=1, smart_scan=0) as ksmd:
        helper = ksmd.spawn()
        areas = {}
        for kind, (contents, mergeable) in plan.items():
            areas[kind] = live_ksmd.map_pages(helper, contents, madvise=mergeable)
            if kind != Fault.COW_COPY:
                helper.madvise(areas[kind], len(contents) * PAGE_SIZE, MADV.MADV_DONTFORK)
        # fork() before ksmd places any zero page: 6.18's ksm_fork() adds the parent's
        # whole ksm_zero_pages count to the global counter, also for zero pages in
        # MADV_DONTFORK areas that the child never gets, and nothing takes it back. The
        # child keeps the fork-shared pages until the session ends.
        helper.fork()
        # The "reuse" pages: fork()ed to a second child that exits at once, so they are
        # mapped once again but write-protected (do_wp_page() -> wp_page_reuse()).
        reuse = areas[Fault.REUSE]
        helper.madvise(reuse, pages * PAGE_SIZE, MADV.MADV_DOFORK)
        helper.fork().exit()
        helper.madvise(reuse, pages * PAGE_SIZE, MADV.MADV_DONTFORK)
        ksmd.scan(2)
        ksmd.stop()
        stat = live_ksmd.ksm_stat(helper.worker.pid)
        if stat.get("ksm_merging_pages", 0) < 2 * pages or \
                stat.get("ksm_zero_pages", 0) < pages:
            raise RuntimeError(f"ksmd did not merge the helper's pages: {stat}")
        targets = [(kind, areas[kind] + i * PAGE_SIZE) for kind in KINDS for i in range(pages)]
        times = helper.time_writes([a for _, a in targets], seed=seed)
    ns: dict[str, list[int]] = {}
    for (kind, _), t in zip(targets, times, strict=True):
        ns.setdefault(kind, []).append(t)
    result: dict[str, Any] = {}
    for kind, values in ns.items():
        us = [v / 1000 for v in values]
        result[kind] = {"median": _percentile(us, 0.5), "p10": _percentile(us, 0.1),
                        "p90": _percentile(us, 0.9), "p99": _percentile(us, 0.99),
                        "mean": sum(us) / len(us), "n": len(us)}
    result["ksm_stat"] = stat
    result["machine"] = f"{os.uname().sysname} {os.uname().release} {os.uname().machine}, " \
                        f"{os.cpu_count()} CPUs"
    return result


def calibration_text(result: dict[str, Any] | None = None) -> str:
    """A table of latencies (us): `result` from measure_write_latency(), or the model's."""
    def row(kind: Fault) -> tuple[float, float, float]:
        if result is None:
            return CALIBRATION[kind]
        r = result[kind]
        return r["median"], r["p10"], r["p90"]

    base = row(Fault.NONE)[0]
    lines = [f"{'kind':<13} {'median':>7} {'p10':>7} {'p90':>7} {'- none':>7}"
             + ("     p99" if result is not None else "")]
    for kind in KINDS:
        med, p10, p90 = row(kind)
        lines.append(f"{kind:<13} {med:7.2f} {p10:7.2f} {p90:7.2f} {med - base:7.2f}"
                     + (f" {result[kind]['p99']:7.2f}" if result is not None else ""))
    lines.append(f"cow-ksm / none: {row(Fault.KSM_COPY)[0] / base:.1f} times")
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> int:
    """``python3 -m ksmbook.sidechannel --calibrate [--pages N]``: measure this machine."""
    import argparse

    parser = argparse.ArgumentParser(prog="python3 -m ksmbook.sidechannel",
                                     description="Write latency of merged and unmerged pages.")
    parser.add_argument("--calibrate", action="store_true",
                        help="measure on the live kernel (root, KSM built in)")
    parser.add_argument("--pages", type=int, default=1024, help="pages per kind")
    parser.add_argument("--json", action="store_true", help="print the raw result as JSON")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if not args.calibrate:
        print("the model's latencies (us), measured with --calibrate:")
        print(calibration_text())
        return 0
    result = measure_write_latency(args.pages)
    print(json.dumps(result, indent=1) if args.json else calibration_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
