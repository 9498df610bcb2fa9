"""Transparent huge pages and KSM (ksmbook.thp): the simulator's rules, and the same scenarios
stepped batch by batch on this machine's kernel (THP mode madvise, 6.18).

The live scenarios are deterministic: each huge page comes from a first-touch write fault in an
aligned 2 MiB range advised MADV_HUGEPAGE (no khugepaged involved), and ksmd is stepped one
batch at a time. khugepaged could still collapse a range of ours asynchronously; a run during
which its pages_collapsed moved is skipped rather than compared.
"""

from __future__ import annotations

import contextlib
import errno
import os

import pytest
from helpers import errno_of

import ksmbook as kb
from ksmbook.scenario import Runner, boot, parse
from ksmbook.thp import HPAGE_PMD_SIZE, anon_huge_pages_kb
from ksmbook.trace import Fault

P = kb.PAGE_SIZE
A = 0x7FFFE0000000  # 2 MiB aligned
RW = kb.PROT_READ | kb.PROT_WRITE
ANON = kb.MAP_PRIVATE | kb.MAP_ANONYMOUS
COUNTERS = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile")
LIVE_COUNTERS = (*COUNTERS, "ksm_zero_pages")

#: One huge page, three written subpages: ksmd's first merge is of two subpages of the same
#: huge page, whose split fails under ksmd's two references and is done afterwards.
SAME_HUGE_PAGE = """\
kernel modern
map A 1024p rw private anon at 0x7fffe0000000 fixed
madvise A 1024p HUGEPAGE
madvise A 1024p MERGEABLE
write A 1 1 2
sysfs pages_to_scan=1000
sysfs run=1
ksmd scan 1
ksmd scan 1
ksmd scan 1
"""

#: A huge page's subpage merges with another process's small page (the split succeeds inside
#: try_to_merge_one_page()); a NOHUGEPAGE area stays small; ksmd stepped batch by batch.
ACROSS_PROCESSES = """\
kernel modern
map A 512p rw private anon at 0x7fffe0000000 fixed
madvise A 512p HUGEPAGE
madvise A 512p MERGEABLE
write A+5p 7
spawn p2
p2: map B 4p rw private anon at 0x7fffd0000000 fixed
p2: write B 7 9
p2: madvise B 4p MERGEABLE
map C 512p rw private anon at 0x7fffc0000000 fixed
madvise C 512p NOHUGEPAGE
madvise C 512p MERGEABLE
write C 3
sysfs pages_to_scan=200
sysfs run=1
ksmd batch 1
ksmd batch 1
ksmd batch 1
ksmd batch 1
ksmd batch 1
ksmd batch 1
"""

#: tools/testing/selftests/mm/ksm_tests.c -H -s 4 (ksm_merge_hugepages_time(); see
#: tests/test_peer_suites.py): two huge pages touched first, all 1024 pages then written alike.
KSM_TESTS_HUGE = f"""\
kernel modern
sysfs sleep_millisecs=0
sysfs pages_to_scan=10
map A 1024p rw private anon at 0x7fffe0000000 fixed noreserve
madvise A 1024p HUGEPAGE
write A 1
write A+512p 1
write A {" ".join(["42"] * 1024)}
madvise A 1024p MERGEABLE
sysfs run=1
ksmd scan 1
ksmd scan 1
"""

#: fork() shares the PMD (copy_huge_pmd()); the child's write splits its own PMD only; ksmd's
#: split of the (still large) folio maps the zero page for its all-zero subpages in both.
FORKED = """\
kernel modern
map A 512p rw private anon at 0x7fffe0000000 fixed
madvise A 512p HUGEPAGE
madvise A 512p MERGEABLE
write A 5 6
fork c
sysfs pages_to_scan=1000
sysfs run=1
ksmd scan 1
c: write A+300p 9
ksmd scan 1
ksmd scan 1
"""

#: MADV_MERGEABLE on half of a huge page's VMA splits the VMA, and with it the PMD; the folio
#: stays one until ksmd splits it, and then all its zero subpages, in both halves, go.
HALF_ADVISED = """\
kernel modern
map A 512p rw private anon at 0x7fffe0000000 fixed
madvise A 512p HUGEPAGE
write A 5 5 7
madvise A+256p 256p MERGEABLE
write A+256p 5 5
sysfs pages_to_scan=1000
sysfs run=1
ksmd scan 1
ksmd scan 1
ksmd scan 1
"""

#: use_zero_pages: a zero-filled small page of another process becomes the zero page
#: (ksm_zero_pages), the huge page's all-zero subpages go to the zero page by the split.
ZERO_PAGES = """\
kernel modern
sysfs use_zero_pages=1
map A 512p rw private anon at 0x7fffe0000000 fixed
madvise A 512p HUGEPAGE
madvise A 512p MERGEABLE
write A 5 0 6
spawn p2
p2: map B 2p rw private anon
p2: write B 6 0
p2: madvise B 2p MERGEABLE
sysfs pages_to_scan=1000
sysfs run=1
ksmd scan 1
ksmd scan 1
ksmd scan 1
"""

#: Per step of ACROSS_PROCESSES's ksmd batches: pages scanned, AnonHugePages (kB) and
#: shared/sharing/unshared/volatile, as this machine's 6.18 gave them.
ACROSS_EXPECTED = [
    (200, {"p1": 2048, "p2": 0}, (0, 0, 0, 200)),
    (200, {"p1": 2048, "p2": 0}, (0, 0, 0, 400)),
    (115, {"p1": 2048, "p2": 0}, (0, 0, 0, 515)),
    (6, {"p1": 0, "p2": 0}, (1, 1, 3, 1)),
    (4, {"p1": 0, "p2": 0}, (1, 1, 2, 0)),
    (4, {"p1": 0, "p2": 0}, (1, 1, 2, 0)),
]


def _sim_steps(text: str, fields: tuple[str, ...] = COUNTERS
               ) -> list[tuple[int, object, tuple[int, ...] | None]]:
    sc = parse(text)
    r = Runner(boot(sc))
    out = []
    for op in sc.ops:
        res = r.step(op)
        huge = {name: anon_huge_pages_kb(p.mm) for name, p in r.procs.items() if p.alive}
        out.append((res.result, huge.get("p1") if len(huge) < 2 else huge,
                    res.counters and tuple(res.counters[n] for n in fields)))
    return out


# -- the simulator -------------------------------------------------------------------------


def test_first_touch_maps_a_huge_page_in_madvise_mode() -> None:
    k = kb.Kernel("modern")
    assert k.thp.read() == "always [madvise] never\n"
    p = k.spawn()
    p.mmap(2 * HPAGE_PMD_SIZE, RW, ANON | kb.MAP_FIXED, addr=A)
    p.write_pages(A, [1])                          # no MADV_HUGEPAGE: a small page
    assert anon_huge_pages_kb(p.mm) == 0
    assert p.last_trace.events[0].detail is Fault.ANON_NEW  # type: ignore[union-attr]
    p.madvise(A, 2 * HPAGE_PMD_SIZE, kb.MADV_HUGEPAGE)
    assert "hg" in p.maps().split("VmFlags: ")[1].split()
    p.write_pages(A + HPAGE_PMD_SIZE + 3 * P, [5, 6])  # the second 2 MiB range: huge
    assert [e.detail for e in p.last_trace.events] == [Fault.HUGE_NEW, Fault.NONE]  # type: ignore[union-attr]
    assert "do_huge_pmd_anonymous_page" in p.last_trace.functions()  # type: ignore[union-attr]
    assert anon_huge_pages_kb(p.mm) == 2048
    assert p.read_page(A + HPAGE_PMD_SIZE) == 0 and p.read_page(A + HPAGE_PMD_SIZE + 4 * P) == 6
    p.madvise(A + HPAGE_PMD_SIZE, P, kb.MADV_DONTNEED)  # zaps part: the PMD is split
    assert anon_huge_pages_kb(p.mm) == 0


def test_eligibility() -> None:
    """thp_vma_allowable_order(): mode, VM_HUGEPAGE / VM_NOHUGEPAGE, the aligned range inside
    the VMA; 2.6.32 has no THP at all (2.6.38)."""
    for profile, mode, advice, length, huge in (
            ("modern", "always", None, HPAGE_PMD_SIZE, True),
            ("modern", "always", kb.MADV_NOHUGEPAGE, HPAGE_PMD_SIZE, False),
            ("modern", "never", kb.MADV_HUGEPAGE, HPAGE_PMD_SIZE, False),
            ("modern", "madvise", kb.MADV_HUGEPAGE, HPAGE_PMD_SIZE - P, False),
            ("2.6.32", "always", None, HPAGE_PMD_SIZE, False)):
        k = kb.Kernel(profile)
        k.thp.write(mode)
        p = k.spawn()
        p.mmap(length, RW, ANON | kb.MAP_FIXED, addr=A)
        if advice is not None:
            p.madvise(A, length, advice)
        p.write_pages(A, [1])
        assert (anon_huge_pages_kb(p.mm) == 2048) is huge, (profile, mode, advice, length)
    assert errno_of(lambda: kb.Kernel("modern").thp.write("sometimes")) == errno.EINVAL


def test_ksmd_splits_the_huge_page_it_merges_from() -> None:
    """Two subpages of one huge page: the first try fails (ksmd holds both, so the split
    fails), cmp_and_merge_page() splits it afterwards; the all-zero subpages become the zero
    page (6.12) and their rmap_items go; the merge happens on the next pass."""
    steps = _sim_steps(SAME_HUGE_PAGE)
    assert steps[-3:] == [(512, 2048, (0, 0, 0, 512)), (3, 0, (0, 0, 2, 1)),
                          (3, 0, (1, 1, 1, 0))]


def test_across_processes_batch_by_batch() -> None:
    steps = _sim_steps(ACROSS_PROCESSES)[-len(ACROSS_EXPECTED):]
    assert steps == ACROSS_EXPECTED


# -- the live kernel -----------------------------------------------------------------------

def _host_thp_mode() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            text = f.read()
    except OSError as e:
        pytest.skip(f"no transparent huge pages here: {e}")
    return text.split("[")[1].split("]")[0]


def _collapsed() -> int:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/khugepaged/pages_collapsed") as f:
            return int(f.read())
    except OSError:
        return 0


@pytest.mark.live
@pytest.mark.usefixtures("ksm_to_ourselves")
@pytest.mark.parametrize("text", [SAME_HUGE_PAGE, ACROSS_PROCESSES, KSM_TESTS_HUGE, FORKED,
                                  HALF_ADVISED, ZERO_PAGES],
                         ids=["same-huge-page", "across-processes", "ksm_tests-H", "forked",
                              "half-advised", "use_zero_pages"])
def test_live_thp_and_ksmd_step_by_step(text: str) -> None:
    """Each statement, and each ksmd batch, gives the same result, AnonHugePages of each
    process and KSM counters (ksm_zero_pages too) on this machine as in the simulator."""
    from ksmbook.live import LiveKernel, LiveRunner, LiveSession
    from ksmbook.live.replay import _ksmd_backend, _scenario_arena

    if _host_thp_mode() != "madvise":
        pytest.skip("this check is written for THP mode madvise (this machine's)")
    sim = _sim_steps(text, LIVE_COUNTERS)
    sc = parse(text)
    collapsed = _collapsed()
    got = []
    with contextlib.ExitStack() as stack:
        backend = _ksmd_backend(stack)
        session = stack.enter_context(LiveSession(arena=_scenario_arena(sc)))
        runner = LiveRunner(LiveKernel(session, backend))
        for op in sc.ops:
            res = runner.step(op)
            huge = {name: sum(v.counters.get("AnonHugePages", 0)
                              for v in p.worker.layout())  # type: ignore[attr-defined]
                    for name, p in runner.procs.items() if p.alive}
            got.append((res.result, huge.get("p1") if len(huge) < 2 else huge,
                        res.counters and tuple(res.counters[n] for n in LIVE_COUNTERS)))
    if _collapsed() != collapsed:
        pytest.skip("khugepaged collapsed pages during the check (pid-agnostic counter)")
    for op, s, lv in zip(sc.ops, sim, got, strict=True):
        assert s == lv, f"{op}: simulator {s}, live {lv}"


def test_never_writes_the_hosts_thp_mode() -> None:
    before = os.stat("/sys/kernel/mm/transparent_hugepage/enabled").st_mtime \
        if os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled") else None
    k = kb.Kernel("modern")
    k.thp.write("always")
    assert k.thp.read() == "[always] madvise never\n"
    if before is not None:
        assert os.stat("/sys/kernel/mm/transparent_hugepage/enabled").st_mtime == before


def test_fork_shares_the_pmd_and_ksmd_splits_the_folio_everywhere() -> None:
    steps = _sim_steps(FORKED)
    assert steps[5][1] == {"p1": 2048, "c": 2048}          # after fork
    assert steps[9][1] == {"p1": 2048, "c": 0}             # the child's COW write
    assert steps[-2:] == [(7, {"p1": 0, "c": 0}, (0, 0, 3, 4)),
                          (5, {"p1": 0, "c": 0}, (0, 0, 3, 2))]


def test_half_advised_huge_page() -> None:
    steps = _sim_steps(HALF_ADVISED)
    assert steps[4][1] == 0                                # the VMA split split the PMD
    assert steps[-3:] == [(256, 0, (0, 0, 0, 256)), (2, 0, (0, 0, 1, 1)), (2, 0, (1, 1, 0, 0))]
