"""A read fault maps the shared zero page (do_anonymous_page(); the huge zero page in a
THP-eligible range), and a write to it takes a new page: the simulator on every profile, and
the same scenarios replayed on this machine's kernel, compared statement by statement (results,
maps, KSM counters, ksm_stat, Rss, Anonymous, AnonHugePages) and, as root, by the PFNs of
/proc/PID/pagemap.
"""

from __future__ import annotations

import contextlib
import os
import struct

import pytest
from helpers import mismatch

import ksmbook as kb
from ksmbook.procfs import smaps_rss
from ksmbook.scenario import Runner, StepResult, boot, parse
from ksmbook.thp import HPAGE_PMD_SIZE, anon_huge_pages_kb
from ksmbook.trace import Fault

P = kb.PAGE_SIZE
RW = kb.PROT_READ | kb.PROT_WRITE
ANON = kb.MAP_PRIVATE | kb.MAP_ANONYMOUS
A = 0x7FFFE0000000  # 2 MiB aligned
PROFILES = ("seed", "2.6.32", "modern")

#: The kernel path of a write to the zero page a read mapped: 6.x wp_page_copy() from the
#: zero pfn; v2.6.32 do_wp_page()'s gotten: label (the seed is 2.6.32's fault code).
WRITE_PATH = {"seed": ["handle_mm_fault", "do_wp_page"],
              "2.6.32": ["handle_mm_fault", "do_wp_page"],
              "modern": ["handle_mm_fault", "do_wp_page", "wp_page_copy"]}

#: Reads, writes to read pages, fork, MADV_MERGEABLE, ksmd's scans and unmerging, on small
#: pages (no MADV_HUGEPAGE: THP mode madvise leaves them small).
SMALL = """\
kernel modern
map A 8p rw private anon
read A
read A+1p
read A+2p
read A+3p
read A+6p
write A+2p 5
write A+4p 5
write A+5p 0
madvise A 8p MERGEABLE
fork c
c: read A+7p
c: write A+3p 7
sysfs pages_to_scan=1000
sysfs run=1
ksmd scan 1
ksmd scan 1
c: write A+1p 5
ksmd scan 1
madvise A 8p UNMERGEABLE
c: madvise A+6p 1p DONTNEED
ksmd scan 1
c: munmap A 2p
"""

#: Only read (and MADV_POPULATE_READ) pages in a MERGEABLE VMA: no anon_vma, ksmd has nothing
#: to scan; then use_zero_pages, and writes to zero ptes that give the VMA its anon_vma.
READ_ONLY = """\
kernel modern
sysfs use_zero_pages=1
map A 4p rw private anon
read A
read A+1p
madvise A+3p 1p POPULATE_READ
madvise A 4p MERGEABLE
sysfs pages_to_scan=1000
sysfs run=1
ksmd scan 1
write A+2p 0
ksmd scan 1
ksmd scan 1
write A 0
write A+3p 0
ksmd scan 1
ksmd scan 1
"""

#: A THP-eligible range: a read maps the huge zero page, a write replaces it by a huge page;
#: a zap of one page splits the huge zero PMD, and a write then copies 4 KiB.
HUGE = """\
kernel modern
map A 1536p rw private anon at 0x7fffe0000000 fixed
madvise A 1536p HUGEPAGE
read A
read A+5p
write A+5p 3
read A+512p
madvise A+512p 1p DONTNEED
write A+513p 4
read A+1024p
fork c
c: write A+1030p 6
madvise A 1536p MERGEABLE
sysfs pages_to_scan=2000
sysfs run=1
ksmd scan 1
ksmd scan 1
"""

#: mprotect() of one page cuts the VMA inside the huge zero PMD's range and splits it; the
#: VMAs merge back, the PMD does not: the write copies 4 KiB (also for a huge page).
HUGE_MPROTECT = """\
kernel modern
map A 1024p rw private anon at 0x7fffe0000000 fixed
madvise A 1024p HUGEPAGE
read A
mprotect A+1p 1p r
mprotect A+1p 1p rw
write A+5p 3
write A+512p 4
mprotect A+513p 1p r
mprotect A+513p 1p rw
write A+514p 5
"""


def _memory(procs: dict[str, kb.Process]) -> dict[str, tuple[int, int, int]]:
    return {name: (*smaps_rss(p.mm).values(), anon_huge_pages_kb(p.mm))
            for name, p in procs.items() if p.alive}


def _sim(text: str) -> tuple[list[StepResult], list[dict[str, tuple[int, int, int]]]]:
    sc = parse(text)
    r = Runner(boot(sc))
    steps, memory = [], []
    for op in sc.ops:
        steps.append(r.step(op))
        memory.append(_memory(r.procs))  # type: ignore[arg-type]
    return steps, memory


# -- the simulator ---------------------------------------------------------------------------

@pytest.mark.parametrize("profile", PROFILES)
def test_a_read_maps_the_zero_page_and_a_write_copies_it(profile: str) -> None:
    k = kb.Kernel(profile)
    p = k.spawn()
    a = p.mmap(4 * P, RW, ANON)
    assert p.read_page(a) == 0
    assert p.last_trace is not None and p.last_trace.faults() == [Fault.ZERO_MAP]
    assert p.last_trace.functions() == ["handle_mm_fault", "do_anonymous_page"]
    assert p.mm.ptes[a >> 12] is k.zero_page and p.vmas[0].anon_vma is None
    assert smaps_rss(p.mm) == {"Rss": 0, "Anonymous": 0}
    p.read_page(a)
    assert p.last_trace.faults() == [Fault.NONE]
    p.write_pages(a, [0])
    assert p.last_trace.faults() == [Fault.ZERO_COPY]
    assert p.last_trace.functions() == WRITE_PATH[profile]
    assert "a new zeroed page" in str(p.last_trace)
    assert p.mm.ptes[a >> 12].id > 0 and p.vmas[0].anon_vma is not None
    assert smaps_rss(p.mm) == {"Rss": 4, "Anonymous": 4}
    assert Fault.ZERO_COPY.text.startswith("do_wp_page() -> wp_page_copy()")


@pytest.mark.parametrize("profile", PROFILES)
def test_fork_zap_mremap_and_exit_treat_the_zero_page_as_a_pte(profile: str) -> None:
    k = kb.Kernel(profile)
    p = k.spawn()
    a = p.mmap(4 * P, RW, ANON)
    for i in range(3):
        p.read_page(a + i * P)
    c = p.fork()
    zero = k.zero_page
    assert [c.mm.ptes.get((a >> 12) + i) for i in range(4)] == [zero, zero, zero, None]
    c.write_pages(a, [9])
    assert c.last_trace is not None and c.last_trace.faults() == [Fault.ZERO_COPY]
    assert p.mm.ptes[a >> 12] is zero and p.read_page(a) == 0
    p.madvise(a + P, P, kb.MADV_DONTNEED)
    assert (a + P) >> 12 not in p.mm.ptes
    b = c.mremap(a, 4 * P, 8 * P, kb.MREMAP_MAYMOVE | kb.MREMAP_FIXED, a + 64 * P)
    assert [c.mm.ptes.get((b >> 12) + i) for i in range(3)][1:] == [zero, zero]
    assert c.read_page(b) == 9
    p.munmap(a, 4 * P)
    c.exit()
    p.exit()
    assert zero.mapcount == 0     # every pte that mapped it is gone


@pytest.mark.parametrize(("profile", "use_zero_pages"),
                         [("2.6.32", 0), ("modern", 0), ("modern", 1)])  # use_zero_pages: 4.11
def test_ksmd_skips_read_only_zero_ptes(profile: str, use_zero_pages: int) -> None:
    """scan_get_next_rmap_item(): follow_page() gives the zero page, which is not PageAnon
    (6.x folio_walk_start() without FW_ZEROPAGE gives nothing): no rmap_item, no counter;
    unmerging leaves the read's zero page alone (it is not KSM's)."""
    k = kb.Kernel(profile)
    if use_zero_pages:
        k.sysfs["use_zero_pages"] = 1
    k.sysfs["run"] = 1
    p = k.spawn()
    a = p.mmap(8 * P, RW, ANON)
    for i in range(6):
        p.read_page(a + i * P)
    p.write_pages(a + 6 * P, [3, 3])
    p.madvise(a, 8 * P, kb.MADV_MERGEABLE)
    k.ksmd.full_scans(3)
    counters = k.ksmd.counters()
    got = {n: counters.get(n, 0) for n in ("pages_shared", "pages_sharing", "pages_unshared",
                                            "pages_volatile", "ksm_zero_pages")}
    assert got == {"pages_shared": 1, "pages_sharing": 1, "pages_unshared": 0,
                   "pages_volatile": 0, "ksm_zero_pages": 0}
    assert [v.address for v in k.ksmd.rmap_items()] == [a + 6 * P, a + 7 * P]
    p.madvise(a, 8 * P, kb.MADV_UNMERGEABLE)
    assert all(p.mm.ptes[(a >> 12) + i] is k.zero_page for i in range(6))
    assert all(p.mm.ptes[(a >> 12) + i].ksm is None for i in (6, 7))  # the KSM page broken


def test_populate_of_a_read_only_range_maps_the_zero_page() -> None:
    """mm_populate() of a read-only private range and MADV_POPULATE_READ read-fault it."""
    k = kb.Kernel("modern")
    p = k.spawn()
    a = p.mmap(2 * P, kb.PROT_READ, ANON | kb.MAP_POPULATE)
    assert p.last_trace is not None and p.last_trace.faults() == [Fault.ZERO_MAP] * 2
    assert [p.mm.ptes[(a >> 12) + i] for i in range(2)] == [k.zero_page] * 2
    b = p.mmap(3 * P, RW, ANON)
    p.write_pages(b + P, [4])
    p.madvise(b, 3 * P, kb.MADV_POPULATE_READ)
    assert p.last_trace.faults() == [Fault.ZERO_MAP, Fault.NONE, Fault.ZERO_MAP]
    p.write_pages(b, [1])
    assert p.last_trace.faults() == [Fault.ZERO_COPY]


def test_a_read_in_a_thp_range_maps_the_huge_zero_page() -> None:
    steps, memory = _sim(HUGE)
    faults = [s.trace.faults() for s in steps[3:10]]  # type: ignore[union-attr]
    assert faults == [[Fault.HUGE_ZERO_MAP], [Fault.NONE], [Fault.HUGE_ZERO_COPY],
                      [Fault.HUGE_ZERO_MAP], [], [Fault.ZERO_COPY], [Fault.HUGE_ZERO_MAP]]
    assert steps[3].trace.functions() == [  # type: ignore[union-attr]
        "handle_mm_fault", "do_huge_pmd_anonymous_page"]
    assert steps[5].trace.functions() == [  # type: ignore[union-attr]
        "handle_mm_fault", "do_huge_pmd_wp_page", "do_huge_zero_wp_pmd"]
    # (Rss kB, Anonymous kB, AnonHugePages kB) after the read, the write, the split + write
    assert memory[3]["p1"] == (0, 0, 0)
    assert memory[5]["p1"] == (2048, 2048, 2048)
    assert memory[8]["p1"] == (2052, 2052, 2048)
    # fork copies the huge zero PMD; the child's write replaces its own by a huge page
    assert memory[11] == {"p1": (2052, 2052, 2048), "c": (4100, 4100, 4096)}


def test_a_vma_cut_splits_the_pmd_for_good() -> None:
    steps, memory = _sim(HUGE_MPROTECT)
    assert [s.trace.faults() for s in steps[6:8]] == [  # type: ignore[union-attr]
        [Fault.ZERO_COPY], [Fault.HUGE_NEW]]
    assert memory[6]["p1"] == (4, 4, 0)
    assert memory[7]["p1"] == (2052, 2052, 2048)
    assert memory[10]["p1"] == (2052, 2052, 0)   # the huge page is mapped by ptes now


def test_sidechannel_calibration_is_keyed_by_the_fault() -> None:
    from ksmbook import sidechannel

    assert Fault.ZERO_COPY in sidechannel.KINDS and "read-zero" not in sidechannel.CALIBRATION
    assert str(Fault.ZERO_COPY) == "cow-zero"


# -- the live kernel -------------------------------------------------------------------------

def _pfns(pid: int, addrs: list[int]) -> list[int | None]:
    """The PFN of each page in /proc/PID/pagemap (None if not present); PFNs read as 0
    without CAP_SYS_ADMIN."""
    out: list[int | None] = []
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        for addr in addrs:
            f.seek((addr >> 12) * 8)
            (entry,) = struct.unpack("<Q", f.read(8))
            out.append(entry & ((1 << 55) - 1) if entry >> 63 else None)
    return out


def _live(text: str, probe: tuple[str, int, int] | None = None
          ) -> tuple[list[StepResult], list[dict[str, tuple[int, int, int]]],
                     list[int | None]]:
    """Replay `text` on this machine (ksmd driven, every knob restored): the step results,
    each process's (Rss, Anonymous, AnonHugePages) in kB after each step, and, for `probe`
    (process, sim address, pages), the PFNs of those pages at the end."""
    from ksmbook.live import LiveKernel, LiveRunner, LiveSession
    from ksmbook.live.replay import _ksmd_backend, _scenario_arena

    sc = parse(text)
    steps, memory = [], []
    pfns: list[int | None] = []
    with contextlib.ExitStack() as stack:
        backend = _ksmd_backend(stack)
        session = stack.enter_context(LiveSession(arena=_scenario_arena(sc)))
        runner = LiveRunner(LiveKernel(session, backend))
        for op in sc.ops:
            steps.append(runner.step(op))
            mem = {}
            for name, task in runner.procs.items():
                if task.alive:  # type: ignore[attr-defined]
                    vmas = task.worker.layout()  # type: ignore[attr-defined]
                    mem[name] = tuple(sum(v.counters.get(key, 0) for v in vmas)
                                      for key in ("Rss", "Anonymous", "AnonHugePages"))
            memory.append(mem)
        if probe is not None:
            name, addr, n = probe
            worker = runner.procs[name].worker  # type: ignore[attr-defined]
            pfns = _pfns(worker.pid, [worker.arena.to_live(addr + i * P) for i in range(n)])
    return steps, memory, pfns  # type: ignore[return-value]


def _compare(text: str, probe: tuple[str, int, int] | None = None) -> list[int | None]:
    sim, sim_mem = _sim(text)
    live, live_mem, pfns = _live(text, probe)
    report = mismatch(text, sim, live)
    assert report is None, report
    for op, s, lv in zip(parse(text).ops, sim_mem, live_mem, strict=True):
        assert s == lv, f"{op}: (Rss, Anonymous, AnonHugePages) simulator {s}, live {lv}"
    return pfns


@pytest.mark.live
@pytest.mark.usefixtures("ksm_to_ourselves")
def test_live_reads_writes_fork_and_ksmd_on_small_pages() -> None:
    """Every statement of SMALL gives the same result, maps, counters, ksm_stat and memory
    figures here as in the simulator; as root, the parent's pages that were only read have
    the PFN of one page (the zero page) and the written ones their own."""
    sim, _ = _sim(SMALL)
    base = sim[1].result
    pfns = _compare(SMALL, ("p1", base, 8))
    if os.geteuid() != 0 or not any(pfns):
        pytest.skip("pagemap shows PFNs to CAP_SYS_ADMIN only")
    read_only = [pfns[i] for i in (0, 1, 3, 6)]
    written = [pfns[i] for i in (2, 4, 5)]
    assert len(set(read_only)) == 1 and None not in read_only
    assert read_only[0] not in written and len(set(written)) == 3
    assert pfns[7] is None                          # never touched by the parent


@pytest.mark.live
@pytest.mark.usefixtures("ksm_to_ourselves")
def test_live_read_only_pages_and_use_zero_pages() -> None:
    _compare(READ_ONLY)


@pytest.mark.live
@pytest.mark.usefixtures("ksm_to_ourselves")
def test_live_huge_zero_page() -> None:
    """do_huge_pmd_anonymous_page() maps the huge zero page on a read, and this kernel's
    do_huge_pmd_wp_page() -> do_huge_zero_wp_pmd() replaces it by a huge page on a write."""
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
        mode = f.read().split("[")[1].split("]")[0]
    with open("/sys/kernel/mm/transparent_hugepage/use_zero_page") as f:
        use_zero_page = f.read().strip()
    if mode != "madvise" or use_zero_page != "1":
        pytest.skip(f"written for THP mode madvise with use_zero_page 1, not {mode}, "
                    f"{use_zero_page}")
    assert HPAGE_PMD_SIZE == 512 * P
    _compare(HUGE)
    _compare(HUGE_MPROTECT)
