"""ksmd of the simulator: the reference's worked examples, the counters this machine's 6.18 ksmd
gave in the same experiments (/sys/kernel/mm/ksm, measured with ksmbook.live.ksmd), sysfs
errnos, and properties: merging never changes what a process reads, the counters always agree
with the trees, and tracing never changes a decision.
"""

from __future__ import annotations

import errno
import random

import pytest
from helpers import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ksmbook as kb
from ksmbook.experiment import page_mix, predict
from ksmbook.kernel import Process
from ksmbook.ksm import STABLE_FLAG, UNSTABLE_FLAG, StableChain, StableNode
from ksmbook.ksmd import KsmdIdle, KsmdUnavailable, calc_checksum
from ksmbook.pages import memcmp_key, page_bytes
from ksmbook.profiles import KsmChecksum

P = kb.PAGE_SIZE
RW = kb.PROT_READ | kb.PROT_WRITE
ANON = kb.MAP_PRIVATE | kb.MAP_ANONYMOUS
X, Y, Z, W = 1, 2, 3, 4
KSMD_PROFILES = ("2.6.32", "modern")
SSUV = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile")


def boot(profile: str = "modern", **knobs: int) -> kb.Kernel:
    """A kernel whose ksmd makes one pass per batch, with the given knobs."""
    k = kb.Kernel(profile=profile)
    for name, value in knobs.items():
        k.sysfs[name] = value
    k.sysfs["pages_to_scan"] = 10_000_000
    k.sysfs["sleep_millisecs"] = 0
    return k


def region(p: Process, contents: list[int], advise: bool = True) -> int:
    """mmap a private anonymous region, write one page per content, MADV_MERGEABLE it."""
    a = p.mmap(len(contents) * P, RW, ANON)
    p.write_pages(a, contents)
    if advise:
        p.madvise(a, len(contents) * P, kb.MADV_MERGEABLE)
    return a


def c(k: kb.Kernel, *names: str) -> tuple[int, ...]:
    counters = k.sysfs.counters()
    return tuple(counters[n] for n in names)


def scan(k: kb.Kernel, n: int = 1) -> tuple[int, ...]:
    k.ksmd.full_scans(n)
    return c(k, *SSUV)


# ------------------------------------------------------------------ worked examples


@pytest.mark.parametrize("profile", KSMD_PROFILES)
def test_p1_xxyz_p2_xy(profile: str) -> None:
    k = boot(profile)
    p1, p2 = k.spawn(), k.spawn()
    region(p1, [X, X, Y, Z])
    region(p2, [X, Y])
    k.sysfs["run"] = 1
    assert scan(k) == (0, 0, 0, 6)
    assert scan(k) == (2, 3, 1, 0)
    assert scan(k, 2) == (2, 3, 1, 0)
    assert k.sysfs["full_scans"] == 4
    if "general_profit" in k.profile.ksm_counters:  # as measured, with per-process ksm_stat
        assert k.sysfs["general_profit"] == 11904
        s1, s2 = k.ksmd.ksm_stat(p1), k.ksmd.ksm_stat(p2)
        assert (s1["ksm_rmap_items"], s1["ksm_merging_pages"], s1["ksm_process_profit"]) == \
            (4, 3, 12032)
        assert (s2["ksm_rmap_items"], s2["ksm_merging_pages"], s2["ksm_process_profit"]) == \
            (2, 2, 8064)


def test_thousand_zero_pages() -> None:
    k = boot("2.6.32")
    region(k.spawn(), [0] * 1000)
    k.sysfs["run"] = 1
    assert scan(k, 2) == (1, 999, 0, 0)

    k = boot("modern")
    region(k.spawn(), [0] * 1000)
    k.sysfs["run"] = 1
    assert scan(k, 2) == (4, 996, 0, 0)
    assert c(k, "stable_node_chains", "stable_node_dups", "general_profit") == (1, 4, 4015616)

    k = boot("modern", use_zero_pages=1)
    p = k.spawn()
    a = region(p, [0] * 1000)
    k.sysfs["run"] = 1
    zp = ("ksm_zero_pages", "general_profit")
    assert scan(k) == (0, 0, 0, 1000) and c(k, *zp) == (0, -64000)
    assert scan(k) == (0, 0, 0, 1000) and c(k, *zp) == (1000, 4032000)
    assert scan(k) == (0, 0, 0, 0) and c(k, *zp) == (1000, 4096000)
    assert k.sysfs["pages_scanned"] == 2000  # zero-page ptes are no candidates
    assert all(p.mm.ptes[(a >> 12) + i] is k.ksm.zero_page for i in range(1000))
    assert p.read_page(a + 999 * P) == 0


def _q_r(n: int, m: int) -> tuple[int, int, int, int, int, int]:
    """The reference's prediction for n identical pages, max_page_sharing m (6.12)."""
    q, r = divmod(n, m)
    if r == 0:
        shared, sharing, unshared = q, n - q, 0
    elif r == 1:
        shared, sharing, unshared = q, q * (m - 1), 1
    else:
        shared, sharing, unshared = q + 1, n - q - 1, 0
    chains = 1 if shared >= 2 else 0
    return shared, sharing, unshared, 0, chains, shared if chains else 0


@pytest.mark.parametrize(("n", "m"), [(2, 256), (255, 256), (256, 256), (257, 256),
                                      (258, 256), (511, 256), (512, 256), (513, 256),
                                      (514, 256), (1000, 256), (5, 2), (6, 2), (10, 3),
                                      (31, 10), (100, 10)])
def test_identical_pages_and_max_page_sharing(n: int, m: int) -> None:
    k = boot("modern", max_page_sharing=m)
    region(k.spawn(), [7] * n)
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    got = c(k, *SSUV, "stable_node_chains", "stable_node_dups")
    assert got == _q_r(n, m)
    k.ksmd.full_scans(1)
    assert c(k, *SSUV, "stable_node_chains", "stable_node_dups") == got


def test_257_identical_pages() -> None:
    k = boot("modern")
    region(k.spawn(), [X] * 257)
    k.sysfs["run"] = 1
    assert scan(k, 2) == (1, 255, 1, 0)


def test_singletons_unshared_volatile_schedule_with_smart_scan() -> None:
    """Measured: 1V 2U 3U 4U 5V 6U 7V 8V 9U 10-13V 14U 15-22V 23U 24-31V 32U 33V 34V."""
    k = boot("modern")
    region(k.spawn(), list(range(100, 110)))
    k.sysfs["run"] = 1
    unshared_visits = []
    for visit in range(1, 35):
        scanned, skipped = c(k, "pages_scanned", "pages_skipped")
        shared, sharing, unshared, volatile = scan(k)
        d_scanned = k.sysfs["pages_scanned"] - scanned
        d_skipped = k.sysfs["pages_skipped"] - skipped
        assert (shared, sharing) == (0, 0)
        assert (unshared, volatile) in ((10, 0), (0, 10))
        if unshared:
            unshared_visits.append(visit)
        # a skip costs no scan; from visit 5 on every volatile visit is a skip
        assert (d_scanned, d_skipped) == ((10, 0) if unshared or visit < 5 else (0, 10))
    assert unshared_visits == [2, 3, 4, 6, 9, 14, 23, 32]


def test_singletons_without_smart_scan_stay_unshared() -> None:
    k = boot("modern", smart_scan=0)
    region(k.spawn(), list(range(100, 110)))
    k.sysfs["run"] = 1
    assert scan(k) == (0, 0, 0, 10)
    for _ in range(10):
        assert scan(k) == (0, 0, 10, 0)
    assert k.sysfs["pages_skipped"] == 0


def test_cow_after_merge_modern() -> None:
    """Measured (e8): the lone KSM page stays KSM and counted in pages_shared."""
    k = boot("modern")
    p1, p2 = k.spawn(), k.spawn()
    a1, a2 = region(p1, [X]), region(p2, [X])
    k.sysfs["run"] = 1
    assert scan(k, 2) == (1, 1, 0, 0)
    kpage = p1.mm.ptes[a1 >> 12]
    assert kpage.ksm is not None and p2.mm.ptes[a2 >> 12] is kpage
    p2.write_pages(a2, [W])                      # COW: a private copy for the writer
    assert p2.mm.ptes[a2 >> 12] is not kpage and p2.read_page(a2) == W
    assert p1.read_page(a1) == X
    assert c(k, *SSUV) == (1, 1, 0, 0)           # counters lag until ksmd passes
    assert scan(k) == (1, 0, 0, 1)
    assert scan(k) == (1, 0, 1, 0)
    assert scan(k) == (1, 0, 0, 1) and k.sysfs["pages_skipped"] == 1
    assert k.ksmd.ksm_stat(p1)["ksm_merging_pages"] == 1
    assert k.ksmd.ksm_stat(p1)["ksm_process_profit"] == 4032


def test_cow_with_the_same_bytes_remerges_in_the_next_pass() -> None:
    k = boot("modern")
    p1, p2 = k.spawn(), k.spawn()
    region(p1, [X])
    a2 = region(p2, [X])
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    p2.write_pages(a2, [X])
    assert scan(k) == (1, 1, 0, 0)  # modern oldchecksum survives the stable tree


def test_cow_after_merge_2632_breaks_the_lone_ksm_page() -> None:
    """2.6.32 rule: a KSM page mapped once is turned back into a normal page."""
    k = boot("2.6.32")
    p1, p2 = k.spawn(), k.spawn()
    a1, a2 = region(p1, [X]), region(p2, [X])
    k.sysfs["run"] = 1
    assert scan(k, 2) == (1, 1, 0, 0)
    p2.write_pages(a2, [W])
    assert scan(k) == (0, 0, 0, 2)
    assert p1.mm.ptes[a1 >> 12].ksm is None and p1.read_page(a1) == X
    assert "break_cow" in k.ksmd.last_trace.functions()
    # rule (a) stored P1's checksum; P2's item stored W's when it left the node: both unshared
    assert scan(k) == (0, 0, 2, 0)


@pytest.mark.parametrize("profile", KSMD_PROFILES)
def test_fork_child_joins_on_first_visit(profile: str) -> None:
    """Measured (e9): sh 1 sg 3 un 1 vo 1 after the child's first pass: its KSM pages join
    with no checksum wait, its Y is the parent's physical page and never merges with it."""
    k = boot(profile)
    p = k.spawn()
    region(p, [X, X, Y])
    k.sysfs["run"] = 1
    assert scan(k, 2) == (1, 1, 1, 0)
    child = p.fork()
    assert c(k, *SSUV) == (1, 1, 1, 0)
    assert [s.pid for s in k.ksmd.mm_slots()] == [p.pid, child.pid]
    assert scan(k) == (1, 3, 1, 1)
    assert scan(k) == (1, 3, 1, 1)
    if k.profile.smart_scan:  # pages_scanned and pages_skipped came before it (6.7)
        assert c(k, "pages_scanned", "pages_skipped") == (18, 0)
        assert scan(k) == (1, 3, 1, 1) and c(k, "pages_scanned", "pages_skipped") == (23, 1)
        assert k.ksmd.ksm_stat(child)["ksm_merging_pages"] == 2
        assert k.ksmd.ksm_stat(child)["ksm_process_profit"] == 8000


def test_fork_before_any_pass_and_fork_of_a_full_node() -> None:
    k = boot("modern")
    p = k.spawn()
    region(p, [X, Y])
    p.fork()
    k.sysfs["run"] = 1
    assert [scan(k) for _ in range(4)] == [(0, 0, 0, 4)] + [(0, 0, 2, 2)] * 3
    k = boot("modern")
    p = k.spawn()
    region(p, [X] * 256)
    k.sysfs["run"] = 1
    assert scan(k, 2) == (1, 255, 0, 0)
    p.fork()
    assert scan(k) == (1, 511, 0, 0)  # forked KSM pages may exceed max_page_sharing


def test_zero_pages_are_accounted_at_once() -> None:
    """Measured (e14, e15): ksm_zero_pages moves with the ptes, not with ksmd's passes."""
    k = boot("modern", use_zero_pages=1)
    p = k.spawn()
    a = region(p, [0, 0, 0])
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    assert k.sysfs["ksm_zero_pages"] == 3
    child = p.fork()
    assert k.sysfs["ksm_zero_pages"] == 6
    assert k.ksmd.ksm_stat(child)["ksm_zero_pages"] == 3
    child.write_pages(a, [5])
    assert k.sysfs["ksm_zero_pages"] == 5 and child.read_page(a) == 5 and p.read_page(a) == 0
    p.munmap(a + P, P)
    assert k.sysfs["ksm_zero_pages"] == 4
    child.exit()
    assert c(k, "ksm_zero_pages", "pages_volatile", "general_profit") == (2, 3, 2 * 4096 - 3 * 64)


def test_use_zero_pages_with_two_processes() -> None:
    """Measured (e11): P1 [X,X,Y,Z,0,0,0] + P2 [X,Y], use_zero_pages=1."""
    k = boot("modern", use_zero_pages=1)
    p1, p2 = k.spawn(), k.spawn()
    region(p1, [X, X, Y, Z, 0, 0, 0])
    region(p2, [X, Y])
    k.sysfs["run"] = 1
    want = [((0, 0, 0, 9, 0), (7, 0, 0, -448), (2, 0, 0, -128)),
            ((2, 3, 1, 3, 3), (7, 3, 3, 24128), (2, 0, 2, 8064)),
            ((2, 3, 1, 0, 3), (4, 3, 3, 24320), (2, 0, 2, 8064))]
    fields = ("ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages", "ksm_process_profit")
    for counters, stat1, stat2 in want:
        assert scan(k) + c(k, "ksm_zero_pages") == counters
        assert tuple(k.ksmd.ksm_stat(p1)[f] for f in fields) == stat1
        assert tuple(k.ksmd.ksm_stat(p2)[f] for f in fields) == stat2


def test_a_page_equal_to_a_ksm_page_needs_two_visits() -> None:
    """6.x checks the checksum before the stable tree; 2.6.32 searched it first."""
    for profile, first in (("modern", (1, 1, 0, 1)), ("2.6.32", (1, 2, 0, 0))):
        k = boot(profile)
        region(k.spawn(), [X, X])
        k.sysfs["run"] = 1
        k.ksmd.full_scans(2)
        region(k.spawn(), [X])
        assert scan(k) == first, profile
        assert scan(k) == (1, 2, 0, 0), profile


def test_max_kernel_pages_2632() -> None:
    """Groups completing after the limit stay as 1 unshared + n-1 volatile."""
    k = boot("2.6.32", max_kernel_pages=2)
    region(k.spawn(), [X, X, X, Y, Y, Y, Z, Z, Z])
    k.sysfs["run"] = 1
    assert scan(k, 2) == (2, 4, 1, 2)
    assert scan(k, 3) == (2, 4, 1, 2)
    assert k.sysfs["max_kernel_pages"] == 2
    assert boot("2.6.32").sysfs["max_kernel_pages"] == (24 << 30) // P // 4


@pytest.mark.parametrize("profile", KSMD_PROFILES)
def test_exit_lags_until_the_next_pass(profile: str) -> None:
    k = boot(profile)
    p1, p2 = k.spawn(), k.spawn()
    a1 = region(p1, [X])
    region(p2, [X])
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    p2.exit()
    assert c(k, *SSUV) == (1, 1, 0, 0)
    assert [s.exiting for s in k.ksmd.mm_slots()] == [True, False]  # moved after the cursor
    if not k.profile.break_unshared_ksm_page:
        assert scan(k) == (1, 0, 0, 0)
    else:  # 2.6.32 then breaks P1's now unshared KSM page
        assert scan(k) == (0, 0, 0, 1)
        assert p1.mm.ptes[a1 >> 12].ksm is None
    assert len(k.ksmd.mm_slots()) == 1


def test_exit_without_items_frees_the_slot_at_once() -> None:
    k = boot("modern")
    p = k.spawn()
    region(p, [X])
    assert len(k.ksmd.mm_slots()) == 1
    p.exit()
    assert k.ksmd.mm_slots() == []
    assert "mm_slot freed" in str(p.last_trace)


def test_exit_under_the_cursor_is_left_to_ksmd() -> None:
    k = boot("modern")
    k.sysfs["pages_to_scan"] = 2
    p = k.spawn()
    region(p, [X, Y, Z, W])
    k.sysfs["run"] = 1
    k.ksmd.batch()
    assert k.ksmd.cursor()[0] == p.pid
    p.exit()
    assert k.ksmd.mm_slots()[0].exiting
    assert k.sysfs["pages_volatile"] == 2
    k.ksmd.batch()  # no_vmas: every item freed, slot dropped, pass ends
    assert k.ksmd.mm_slots() == [] and k.sysfs["full_scans"] == 1
    assert c(k, *SSUV) == (0, 0, 0, 0)


def test_unmap_drops_the_slot_then_ksmd_idles() -> None:
    k = boot("modern")
    p1, p2 = k.spawn(), k.spawn()
    a1 = region(p1, [X])
    region(p2, [X])
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    p1.munmap(a1, P)
    assert kb.MMF_VM_MERGEABLE in p1.mm_flags
    k.ksmd.full_scans(1)
    assert kb.MMF_VM_MERGEABLE not in p1.mm_flags
    assert k.ksmd.ksm_stat(p1)["ksm_mergeable"] == "no"
    p2.exit()
    assert scan(k) == (0, 0, 0, 0)
    with pytest.raises(KsmdIdle, match="no mm is registered"):
        k.ksmd.full_scans(1)
    region(p1, [Y])  # MADV_MERGEABLE registers it again
    assert k.ksmd.full_scans(1)["full_scans"] == 5


@pytest.mark.parametrize("profile", KSMD_PROFILES)
def test_run_2_unmerges_everything(profile: str) -> None:
    k = boot(profile)
    p1, p2 = k.spawn(), k.spawn()
    a1 = region(p1, [X, Y, Z])
    region(p2, [X, Y, 0])
    k.sysfs["run"] = 1
    k.ksmd.full_scans(3)
    assert c(k, "pages_shared", "pages_sharing") == (2, 2)
    k.sysfs["run"] = 2
    assert all(v == 0 for n, v in k.sysfs.counters().items() if n != "pages_scanned")
    assert all(p1.mm.ptes[(a1 >> 12) + i].ksm is None for i in range(3))
    assert [p1.read_page(a1 + i * P) for i in range(3)] == [X, Y, Z]
    assert len(k.ksmd.mm_slots()) == 2 and kb.MMF_VM_MERGEABLE in p1.mm_flags
    assert all(kb.VM_MERGEABLE in v.flags for v in p1.vmas)
    assert "break_ksm" in k.sysfs.last_trace.functions()
    if "pages_scanned" in k.profile.ksm_counters:
        assert k.sysfs["pages_scanned"] == 18  # never reset
    k.sysfs["run"] = 2  # 2 -> 2 is no change: nothing happens
    k.sysfs["run"] = 1
    assert scan(k, 2) == (2, 2, 2, 0)


def test_run_2_error_stops_ksmd() -> None:
    k = boot("modern")
    region(k.spawn(), [X, X])
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    k.inject("break_ksm")
    with pytest.raises(OSError) as e:
        k.sysfs["run"] = 2
    assert e.value.errno == errno.ENOMEM
    assert k.sysfs["run"] == 0 and k.ksmd.cursor() == (None, 0)


@pytest.mark.parametrize("profile", KSMD_PROFILES)
def test_unmergeable_breaks_ksm_pages_and_counters_lag(profile: str) -> None:
    k = boot(profile)
    p1, p2 = k.spawn(), k.spawn()
    region(p1, [X, Y])
    a2 = region(p2, [X, Y])
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    p2.madvise(a2, 2 * P, kb.MADV_UNMERGEABLE)
    assert all(p2.mm.ptes[(a2 >> 12) + i].ksm is None for i in range(2))
    assert [p2.read_page(a2), p2.read_page(a2 + P)] == [X, Y]
    assert c(k, *SSUV) == (2, 2, 0, 0)
    want = (0, 0, 0, 2) if k.profile.break_unshared_ksm_page else (2, 0, 0, 0)
    assert scan(k) == want


@pytest.mark.parametrize("profile", KSMD_PROFILES)
def test_unmergeable_errors_keep_vm_mergeable(profile: str) -> None:
    k = boot(profile)
    p1, p2 = k.spawn(), k.spawn()
    region(p1, [X, X])
    a2 = region(p2, [X, X])
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    k.inject("signal_pending")
    with pytest.raises(OSError) as e:
        p2.madvise(a2, 2 * P, kb.MADV_UNMERGEABLE)
    assert e.value.errno == errno.EINTR
    assert kb.VM_MERGEABLE in p2.vmas[0].flags
    k.inject("break_ksm")
    with pytest.raises(OSError) as e:
        p2.madvise(a2, 2 * P, kb.MADV_UNMERGEABLE)
    assert e.value.errno == errno.EAGAIN
    assert kb.VM_MERGEABLE in p2.vmas[0].flags
    assert p2.mm.ptes[a2 >> 12].ksm is not None
    p2.madvise(a2, 2 * P, kb.MADV_UNMERGEABLE)
    assert kb.VM_MERGEABLE not in p2.vmas[0].flags


def test_mid_pass_registration_goes_before_the_slot_being_scanned() -> None:
    """Measured (e12): P2 registered while P1 is half scanned is visited before P1 next."""
    k = boot("modern")
    k.sysfs["pages_to_scan"] = 5
    p1 = k.spawn()
    region(p1, list(range(10, 20)))
    k.sysfs["run"] = 1
    k.ksmd.batch()
    assert k.ksmd.cursor()[0] == p1.pid
    p2 = k.spawn()
    region(p2, [50, 51])
    assert [s.pid for s in k.ksmd.mm_slots()] == [p2.pid, p1.pid]
    k.ksmd.full_scans(1)
    assert k.ksmd.ksm_stat(p2)["ksm_rmap_items"] == 0  # not visited in the current pass
    k.ksmd.batch()
    assert [v.pid for v in k.ksmd.rmap_items()][:2] == [p2.pid, p2.pid]


def test_batches_and_the_lost_budget_at_a_pass_end() -> None:
    """Measured (e12): batches of 12 over 30 KSM pages scan 12, 12, 6 (pass end), 12."""
    k = boot("modern")
    region(k.spawn(), [X] * 30)
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    k.sysfs["pages_to_scan"] = 12
    got = [k.ksmd.batch() for _ in range(4)]
    assert [(b.scanned, b.pass_ended) for b in got] == [(12, False), (12, False), (6, True),
                                                         (12, False)]
    k = boot("2.6.32")
    region(k.spawn(), list(range(100, 125)))  # P = 25 candidates
    k.sysfs["pages_to_scan"] = 5
    k.sysfs["run"] = 1
    before = k.ksmd.batches
    k.ksmd.full_scans(1)
    assert k.ksmd.batches - before == 25 // 5 + 1


def test_simulated_clock() -> None:
    k = kb.Kernel(profile="modern")
    region(k.spawn(), list(range(100, 350)))  # 250 pages: 3 batches of 100
    k.sysfs["run"] = 1
    k.ksmd.page_cost_us = 0
    k.ksmd.batch_cost_us = 0
    k.ksmd.full_scans(1)
    assert k.ksmd.clock_ms == 3 * 20  # (250 // 100 + 1) batches, each followed by 20 ms
    reports = k.ksmd.run_for(100)
    assert len(reports) == 5 and k.ksmd.clock_ms == 160
    k.sysfs["run"] = 0
    assert k.ksmd.run_for(1000) == [] and k.ksmd.clock_ms == 1160
    assert not k.ksmd.batch().ran
    with pytest.raises(KsmdIdle, match="run is 0"):
        k.ksmd.full_scans(1)
    k.sysfs["run"] = 1
    k.sysfs["pages_to_scan"] = 0
    with pytest.raises(KsmdIdle, match="pages_to_scan is 0"):
        k.ksmd.full_scans(1)


def test_stable_node_chain_losing_a_dup_collapses_on_the_next_search() -> None:
    k = boot("modern", max_page_sharing=2)
    p1, p2 = k.spawn(), k.spawn()
    region(p1, [X, X])
    region(p2, [X, X])
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    chain_dups = ("stable_node_chains", "stable_node_dups")
    assert scan(k) == (2, 2, 0, 0) and c(k, *chain_dups) == (1, 2)
    p2.exit()
    assert scan(k) == (1, 1, 0, 0) and c(k, *chain_dups) == (1, 1)  # the chain stays
    region(k.spawn(), [X])
    k.ksmd.full_scans(1)
    assert c(k, *chain_dups) == (1, 1)
    assert scan(k) == (1, 1, 1, 0) and c(k, *chain_dups) == (0, 0)  # collapsed, still full


def test_prctl_memory_merge() -> None:
    k = boot("modern")
    p = k.spawn()
    a = p.mmap(4 * P, RW, ANON)
    b = p.mmap(2 * P, kb.PROT_READ, kb.MAP_SHARED | kb.MAP_ANONYMOUS)
    assert p.prctl(kb.ksm.PR_GET_MEMORY_MERGE) == 0
    assert p.prctl(kb.ksm.PR_SET_MEMORY_MERGE, 2) == 0  # any non-zero arg2 enables
    assert p.prctl(kb.ksm.PR_GET_MEMORY_MERGE) == 1
    assert kb.MMF_VM_MERGE_ANY in p.mm_flags and kb.MMF_VM_MERGEABLE in p.mm_flags
    flags = {v.start: v.flags for v in p.vmas}
    assert kb.VM_MERGEABLE in flags[a] and kb.VM_MERGEABLE not in flags[b]
    n = len(p.vmas)
    c2 = p.mmap(3 * P, RW, ANON, addr=a + 4 * P)  # adjacent: born mergeable, merges
    assert c2 == a + 4 * P and len(p.vmas) == n
    assert p.mm.vma_at(a).end == a + 7 * P
    p.madvise(a + P, 2 * P, kb.MADV_UNMERGEABLE)
    assert len(p.vmas) == n + 2
    p.write_pages(a, [X, X, X, X])
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    assert k.sysfs["pages_sharing"] == 1  # pages 0 and 3: 1 and 2 are not mergeable
    child = p.fork()
    assert child.prctl(kb.ksm.PR_GET_MEMORY_MERGE) == 1
    assert p.prctl(kb.ksm.PR_SET_MEMORY_MERGE, 0) == 0
    assert not any(kb.VM_MERGEABLE in v.flags for v in p.vmas)
    assert all(p.mm.ptes[(a >> 12) + i].ksm is None for i in range(4))
    for args in ((kb.ksm.PR_SET_MEMORY_MERGE, 1, 1), (kb.ksm.PR_GET_MEMORY_MERGE, 1)):
        with pytest.raises(OSError) as e:
            p.prctl(*args)
        assert e.value.errno == errno.EINVAL
    with pytest.raises(ValueError, match="not modelled"):
        p.prctl(15, 0)
    for profile in ("seed", "2.6.32"):
        q = kb.Kernel(profile=profile).spawn()
        with pytest.raises(OSError) as e:
            q.prctl(kb.ksm.PR_SET_MEMORY_MERGE, 1)
        assert e.value.errno == errno.EINVAL


def test_merge_any_survives_ksmd_dropping_the_slot() -> None:
    """Measured on 6.18.44: the slot goes, MMF_VM_MERGE_ANY stays, a new mmap re-registers."""
    k = boot("modern")
    p = k.spawn()
    a = p.mmap(2 * P, RW, ANON)
    p.prctl(kb.ksm.PR_SET_MEMORY_MERGE, 1)
    p.madvise(a, 2 * P, kb.MADV_UNMERGEABLE)
    k.sysfs["run"] = 1
    k.ksmd.full_scans(1)
    assert k.ksmd.mm_slots() == []
    assert kb.MMF_VM_MERGEABLE not in p.mm_flags and p.prctl(kb.ksm.PR_GET_MEMORY_MERGE) == 1
    b = p.mmap(2 * P, RW, ANON)
    assert kb.VM_MERGEABLE in p.mm.vma_at(b).flags and len(k.ksmd.mm_slots()) == 1
    p.write_pages(b, [Y, Y])
    assert scan(k, 2) == (1, 1, 0, 0)


# ------------------------------------------------------------------ sysfs


def test_no_ksmd_in_the_seed_or_without_config_ksm() -> None:
    for k in (kb.Kernel(profile="seed"), kb.Kernel(profile="modern", config_ksm=False)):
        with pytest.raises(KsmdUnavailable):
            k.sysfs  # noqa: B018
        assert not hasattr(k, "ksmd")
    with pytest.raises(KsmdUnavailable, match="seed.*no ksmd"):
        kb.Kernel(profile="seed").ksmd  # noqa: B018


def test_sysfs_files_and_reads() -> None:
    k = kb.Kernel(profile="modern")
    assert list(k.sysfs) == sorted([
        "advisor_max_cpu", "advisor_max_pages_to_scan", "advisor_min_pages_to_scan",
        "advisor_mode", "advisor_target_scan_time", "full_scans", "general_profit",
        "ksm_zero_pages", "max_page_sharing", "merge_across_nodes", "pages_scanned",
        "pages_shared", "pages_sharing", "pages_skipped", "pages_to_scan", "pages_unshared",
        "pages_volatile", "run", "sleep_millisecs", "smart_scan", "stable_node_chains",
        "stable_node_chains_prune_millisecs", "stable_node_dups", "use_zero_pages"])
    assert k.sysfs.knobs() == {
        "advisor_max_cpu": 70, "advisor_max_pages_to_scan": 30000,
        "advisor_min_pages_to_scan": 500, "advisor_mode": "[none] scan-time",
        "advisor_target_scan_time": 200, "max_page_sharing": 256, "merge_across_nodes": 1,
        "pages_to_scan": 100, "run": 0, "sleep_millisecs": 20, "smart_scan": 1,
        "stable_node_chains_prune_millisecs": 2000, "use_zero_pages": 0}
    assert k.sysfs.read("run") == "0\n"
    assert "/sys/kernel/mm/ksm/pages_shared:0" in repr(k.sysfs)
    old = kb.Kernel(profile="2.6.32").sysfs
    assert sorted(old) == ["full_scans", "max_kernel_pages", "pages_shared", "pages_sharing",
                           "pages_to_scan", "pages_unshared", "pages_volatile", "run",
                           "sleep_millisecs"]


def _errno(k: kb.Kernel, name: str, value: int | str) -> int:
    try:
        k.sysfs[name] = value
    except OSError as e:
        assert e.errno is not None
        return e.errno
    return 0


# Measured as root on this machine's 6.18 (see the report): errno of each write.
_LIVE_WRITES = [
    ("sleep_millisecs", " 5", errno.EINVAL), ("sleep_millisecs", "+5", 0),
    ("sleep_millisecs", "-5", errno.EINVAL), ("sleep_millisecs", "5x", errno.EINVAL),
    ("sleep_millisecs", "5\n\n", errno.EINVAL), ("sleep_millisecs", "99999999999", errno.EINVAL),
    ("sleep_millisecs", "0x10", errno.EINVAL), ("sleep_millisecs", "5 ", errno.EINVAL),
    ("sleep_millisecs", "5\n", 0),
    ("run", "3", errno.EINVAL), ("run", "-1", errno.EINVAL), ("run", "abc", errno.EINVAL),
    ("run", "99999999999", errno.EINVAL),
    ("max_page_sharing", "1", errno.EINVAL), ("max_page_sharing", "99999999999", errno.ERANGE),
    ("max_page_sharing", "-3", errno.EINVAL), ("max_page_sharing", "abc", errno.EINVAL),
    ("max_page_sharing", "256", 0),
    ("use_zero_pages", "2", errno.EINVAL), ("use_zero_pages", "yes", 0),
    ("use_zero_pages", "on", 0), ("use_zero_pages", "of", 0), ("use_zero_pages", "t", 0),
    ("merge_across_nodes", "2", errno.EINVAL),
    ("merge_across_nodes", "99999999999999999999", errno.ERANGE),
    ("merge_across_nodes", "abc", errno.EINVAL),
    ("advisor_mode", "bogus", errno.EINVAL), ("advisor_mode", "none\n", 0),
    ("advisor_target_scan_time", "0", errno.EINVAL),
]


@pytest.mark.parametrize(("name", "text", "err"), _LIVE_WRITES)
def test_sysfs_write_errnos_as_on_the_live_kernel(name: str, text: str, err: int) -> None:
    k = kb.Kernel(profile="modern")
    before = dict(k.sysfs.knobs())
    assert _errno(k, name, text) == err
    if err:
        assert k.sysfs.knobs() == before  # a refused write changes nothing


def test_sysfs_values_after_writes() -> None:
    k = kb.Kernel(profile="modern")
    k.sysfs["use_zero_pages"] = "of"
    assert k.sysfs["use_zero_pages"] == 0
    k.sysfs["use_zero_pages"] = "yes"
    assert k.sysfs["use_zero_pages"] == 1
    k.sysfs["sleep_millisecs"] = "+7"
    assert k.sysfs["sleep_millisecs"] == 7
    assert k.sysfs.write("sleep_millisecs", "") == 0 and k.sysfs["sleep_millisecs"] == 7
    k.sysfs["advisor_mode"] = "scan-time"
    assert k.sysfs["advisor_mode"] == "none [scan-time]" and k.sysfs["pages_to_scan"] == 500
    assert _errno(k, "pages_to_scan", 1000) == errno.EINVAL
    k.sysfs["advisor_mode"] = "none"
    assert k.sysfs["pages_to_scan"] == 100
    for counter in ("pages_shared", "full_scans", "general_profit"):
        with pytest.raises(PermissionError) as e:
            k.sysfs[counter] = 1
        assert e.value.errno == errno.EACCES
    with pytest.raises(FileNotFoundError):
        k.sysfs["max_kernel_pages"] = 5  # gone since 2.6.33
    with pytest.raises(TypeError):
        k.sysfs["run"] = 1.0  # type: ignore[assignment]


def test_sysfs_2632_parsing() -> None:
    k = kb.Kernel(profile="2.6.32")
    assert _errno(k, "sleep_millisecs", "+5") == errno.EINVAL  # strict_strtoul: digits only
    assert _errno(k, "sleep_millisecs", "5\n") == 0 and k.sysfs["sleep_millisecs"] == 5
    assert _errno(k, "pages_to_scan", str(1 << 32)) == errno.EINVAL
    assert _errno(k, "max_kernel_pages", "0") == 0  # 0 = no limit
    assert _errno(k, "run", "3") == errno.EINVAL
    assert _errno(k, "pages_volatile", "1") == errno.EACCES


def test_max_page_sharing_busy_while_ksm_pages_exist() -> None:
    """Measured (e13): EBUSY for a change while KSM pages exist; the same value is fine."""
    k = boot("modern")
    p = k.spawn()
    region(p, [X, X])
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    assert _errno(k, "max_page_sharing", 100) == errno.EBUSY
    assert _errno(k, "merge_across_nodes", 0) == errno.EBUSY
    assert _errno(k, "max_page_sharing", 256) == 0
    k.sysfs["run"] = 2
    assert _errno(k, "max_page_sharing", 100) == 0 and k.sysfs["max_page_sharing"] == 100


def test_a_search_meeting_a_vanished_unstable_node_gives_up() -> None:
    """unstable_tree_search_insert() returns NULL when a node on its path has no page behind
    it. A's pages 1, 2, 3 make the unstable tree with root 2; once that page is unmapped, every
    search of B's batch meets it first, so B's pages stay out of the tree (this machine's 6.18
    ksmd: pages_unshared 3, pages_volatile 4)."""
    k = kb.Kernel(profile="modern")
    pa, pb = k.spawn(), k.spawn()
    a = region(pa, [1, 2, 3])
    region(pb, [4, 5, 6, 2])
    k.sysfs["pages_to_scan"] = 3
    k.sysfs["run"] = 1
    k.ksmd.full_scans(1)
    k.ksmd.batch()  # pass 2, A's three pages: the unstable tree holds 1, 2, 3
    pa.munmap(a + P, P)
    k.ksmd.batch()  # B's 4, 5, 6
    assert c(k, "pages_unshared", "pages_volatile") == (3, 4)
    tr = k.ksmd.last_trace
    assert tr is not None
    gone = f"unstable_tree_search_insert: pid {pa.pid} {a + P:#x} is gone: give up"
    assert str(tr).count(gone) == 3


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40)), max_size=120))
@settings(max_examples=examples(60), deadline=None)
def test_rbtree_keeps_order_and_balance(ops: list[tuple[bool, int]]) -> None:
    """lib/rbtree.c's invariants after any inserts and erasures: in order, a black root, no
    red node with a red child, the same number of black nodes on every path."""
    from ksmbook.rbtree import RbRoot, rb_erase, rb_inorder, rb_insert_color, rb_link_node

    class Node:
        def __init__(self, key: int) -> None:
            self.key = key
            self.rb_left = self.rb_right = self.rb_parent = None
            self.rb_red = False

    root, nodes = RbRoot(), {}
    for insert, key in ops:
        if insert and key not in nodes:
            parent, left, node = None, False, root.rb_node
            while node is not None:
                parent, left = node, key < node.key
                node = node.rb_left if left else node.rb_right
            nodes[key] = Node(key)
            rb_link_node(nodes[key], parent, left, root)
            rb_insert_color(nodes[key], root)
        elif not insert and key in nodes:
            rb_erase(nodes.pop(key), root)
    assert [n.key for n in rb_inorder(root)] == sorted(nodes)

    def black_height(node: Node | None, parent: Node | None) -> int:
        if node is None:
            return 1
        assert node.rb_parent is parent
        assert not (node.rb_red and parent is not None and parent.rb_red)
        left, right = black_height(node.rb_left, node), black_height(node.rb_right, node)
        assert left == right
        return left + (not node.rb_red)

    assert root.rb_node is None or not root.rb_node.rb_red
    black_height(root.rb_node, None)


def _stale_tree_under_a_cursor(profile: str) -> tuple[kb.Kernel, Process]:
    """Process B (one page, 3) registered before A (pages 1 1 2 2), two full scans one page a
    batch (two KSM pages, two sharers), then A unmapped: the stable tree's nodes now point at
    freed KSM pages, and ksmd's cursor is about to search for B's page. Returns (kernel, B)."""
    k = kb.Kernel(profile=profile)
    pb, pa = k.spawn(), k.spawn()
    region(pb, [3])
    a = region(pa, [1, 1, 2, 2])
    k.sysfs["pages_to_scan"] = 1
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    assert c(k, "pages_shared", "pages_sharing") == (2, 2)
    pa.munmap(a, 4 * P)
    return k, pb


def test_a_stable_tree_search_removes_the_stale_nodes_it_meets() -> None:
    """stable_tree_search() meeting a node whose KSM page was freed removes it at once (and
    starts again), before ksmd's cursor reaches the rmap_items of the unmapped pages."""
    k, pb = _stale_tree_under_a_cursor("modern")
    k.ksmd.batch()  # pass 3: B's page 3 is searched for in the stable tree
    assert c(k, "pages_shared", "pages_sharing") == (0, 0)
    assert k.ksmd.cursor()[0] == pb.pid and not k.ksm.stable
    _invariants(k)


def test_2632_stable_tree_search_gives_up_at_a_node_left_without_rmap_items() -> None:
    """v2.6.32 stable_tree_search(): a node whose rmap_items no longer map its KSM page loses
    them one by one; once none is left the search returns NULL ("if (!tree_rmap_item) return
    NULL"), leaving the rest of the tree for later walks."""
    k, pb = _stale_tree_under_a_cursor("2.6.32")
    k.ksmd.batch()  # B's page 3: the walk meets the root, content 1, and gives up
    assert c(k, "pages_shared", "pages_sharing") == (1, 1)
    assert [n.content for n in k.ksmd.stable_tree()] == [2]
    _invariants(k)


def test_unstable_tree_walks_after_a_change_in_the_pass() -> None:
    """Once a node's page has changed, the rest of the pass walks the red-black tree, comparing
    with what each node's page holds now (the kernel's "unstable" tree): A's 10, 20, 30, 40, 50
    make a tree with root 20; with that page rewritten to 5, B's 10 turns right at the root
    and misses A's 10."""
    k = kb.Kernel(profile="modern")
    pa, pb = k.spawn(), k.spawn()
    a = region(pa, [10, 20, 30, 40, 50])
    region(pb, [60, 10, 70])
    k.sysfs["pages_to_scan"] = 5
    k.sysfs["run"] = 1
    k.ksmd.full_scans(1)
    k.ksmd.batch()  # pass 2: A's pages are the unstable tree
    pa.write_pages(a + P, [5])
    k.ksmd.batch()
    assert k.ksm.unstable_exact
    assert c(k, "pages_shared", "pages_sharing", "pages_unshared") == (0, 0, 8)
    assert [u.content for u in k.ksmd.unstable_tree()] == [10, 10, 20, 30, 40, 50, 60, 70]
    _invariants(k)


# ------------------------------------------------------------------ traces and views


def test_trace_names_ksmd_functions() -> None:
    k = kb.Kernel(profile="modern")
    p = k.spawn()
    a = region(p, [X, X, Y])
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    tr = k.ksmd.last_trace
    assert tr is not None
    for fn in ("cmp_and_merge_page", "calc_checksum", "stable_tree_search",
               "unstable_tree_search_insert", "try_to_merge_two_pages", "stable_tree_insert",
               "stable_tree_append", "scan_get_next_rmap_item", "ksm_scan_thread"):
        assert fn in tr.functions(), fn
    assert "ksm_do_scan(100)" in str(tr)
    assert f"stable_tree_append: pid {p.pid} {a + P:#x} joins KSM page" in str(tr)
    assert list(k.ksmd.log)[-1] is tr


@given(st.lists(st.integers(0, 2**64 - 1), min_size=2, max_size=8))
@settings(max_examples=examples(50), deadline=None)
def test_memcmp_key_orders_pages_as_memcmp(contents: list[int]) -> None:
    assert sorted(contents, key=memcmp_key) == sorted(contents, key=page_bytes)


def test_page_bytes_rule() -> None:
    assert page_bytes(0) == bytes(P)
    assert page_bytes(0x0102) == (b"\x02\x01" + bytes(6) + b"ksmbook.") * 256
    assert len({page_bytes(c) for c in (1, 2, 256, 2**64 - 1)}) == 4
    with pytest.raises(ValueError):
        page_bytes(2**64)
    with pytest.raises(TypeError):
        memcmp_key(True)
    page_bytes(1)  # cached now: a bool must still be refused, not read as the int 1
    with pytest.raises(TypeError):
        page_bytes(True)


def test_trace_steps_format_when_read() -> None:
    """A step keeps its template and arguments; the text is made when it is read."""
    tr = kb.Trace("call")
    with tr.enter("outer", "{} of {:#x}", 3, 4096):
        tr.note("inner", "braces {kept} without arguments")
    tr.result = 0
    assert tr.steps[0].template == "{} of {:#x}" and tr.steps[0].args == (3, 4096)
    assert [s.message for s in tr.steps] == ["3 of 0x1000", "braces {kept} without arguments"]
    assert str(tr) == "call = 0\n  outer: 3 of 0x1000\n    inner: braces {kept} without arguments"


def test_views_of_the_trees() -> None:
    k = boot("modern")
    p1, p2 = k.spawn(), k.spawn()
    a1 = region(p1, [X, X, Y, Z])
    a2 = region(p2, [X, Y])
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    nodes = k.ksmd.stable_tree()
    assert [(n.content, n.mapcount, len(n.sharers), n.dup) for n in nodes] == \
        [(X, 3, 3, False), (Y, 2, 2, False)]
    assert {(s.pid, s.address) for s in nodes[0].sharers} == \
        {(p1.pid, a1), (p1.pid, a1 + P), (p2.pid, a2)}
    assert [(u.content, u.pid, u.address) for u in k.ksmd.unstable_tree()] == \
        [(Z, p1.pid, a1 + 3 * P)]
    items = k.ksmd.rmap_items(p1)
    assert [i.state for i in items] == ["stable", "stable", "stable", "unstable"]
    assert items[3].oldchecksum == calc_checksum(Z) != 0
    assert [s.pid for s in k.ksmd.mm_slots()] == [p1.pid, p2.pid]
    assert k.ksmd.cursor() == (None, 0)  # at the list head between passes
    assert calc_checksum(0) != 0 and calc_checksum(0, KsmChecksum.JHASH2) != calc_checksum(0)


def test_predict_matches_the_measured_random_mix() -> None:
    """Measured (e6): the 4096-page mix of ksmd-experiments.py mix(4096, seed=4096)."""
    mix = page_mix(4096, seed=4096)
    keys = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile",
            "ksm_zero_pages", "stable_node_chains", "stable_node_dups", "general_profit",
            "pages_scanned", "pages_skipped")
    assert tuple(predict(mix)[k] for k in keys) == \
        (167, 2237, 1692, 0, 0, 1, 4, 8900608, 8192, 0)
    assert tuple(predict(mix, use_zero_pages=1)[k] for k in keys) == \
        (163, 1414, 1692, 827, 827, 0, 0, 8916992, 8192, 0)
    split = predict(None, processes=[mix[:2048], mix[2048:]])
    assert tuple(split[k] for k in keys) == (167, 2237, 1692, 0, 0, 1, 4, 8900608, 8192, 0)


# ------------------------------------------------------------------ properties


class _Draws:
    """The choices of a random program, from hypothesis or from a seeded generator."""

    def __init__(self, data: st.DataObject | None = None, seed: int = 0) -> None:
        self.data = data
        self.rng = random.Random(seed)

    def pick(self, seq: list) -> object:
        if self.data is not None:
            return self.data.draw(st.sampled_from(seq))
        return self.rng.choice(seq)

    def integer(self, lo: int, hi: int) -> int:
        if self.data is not None:
            return self.data.draw(st.integers(lo, hi))
        return self.rng.randint(lo, hi)

    def contents(self, most: int) -> list[int]:
        n = self.integer(1, most)
        return [self.integer(0, 3) for _ in range(n)]


def _invariants(k: kb.Kernel) -> None:
    """The counters agree with the trees and the page tables (white box)."""
    ks = k.ksm
    items = [i for s in ks.slots for i in s.all_items()]
    assert ks.rmap_items == len(items) == sum(s.nr_items for s in ks.slots)
    assert ks.pages_unshared == sum(i.flags == UNSTABLE_FLAG for i in items)
    stable = [i for i in items if i.flags == STABLE_FLAG]
    assert ks.pages_shared + ks.pages_sharing == len(stable)
    for s in ks.slots:
        assert s.merging_pages == sum(i.flags == STABLE_FLAG for i in s.all_items())
    nodes: list[StableNode] = []
    for entry in ks.stable.values():
        if isinstance(entry, StableChain):
            assert all(d.chain is entry for d in entry.dups)
            nodes += entry.dups
        else:
            nodes.append(entry)
    assert all(i.head in nodes for i in stable)
    from ksmbook.rbtree import rb_inorder
    in_tree = list(rb_inorder(ks.stable_root))  # the red-black tree holds the dict's nodes
    assert sorted(map(id, in_tree)) == sorted(map(id, ks.stable.values()))
    assert all(any(n is m for m in nodes) for n in ks.stale_nodes)
    if k.profile.stable_node_objects:
        assert all(n.kpage.mapcount <= 0 for n in ks.stale_nodes)
    if k.profile.stable_node_objects:
        assert ks.pages_shared == sum(bool(n.items) for n in nodes)
        chains = [e for e in ks.stable.values() if isinstance(e, StableChain)]
        assert ks.stable_node_chains == len(chains)
        assert ks.stable_node_dups == sum(len(e.dups) for e in chains)
    else:
        assert ks.pages_shared == len(ks.stable)
    maps: dict[int, int] = {}
    pages = {}
    for proc in k.processes:
        for page in proc.mm.ptes.values():
            maps[id(page)] = maps.get(id(page), 0) + 1
            pages[id(page)] = page
    for key, page in pages.items():
        if page.anon or page is ks.zero_page:
            assert page.mapcount == maps[key]
    assert ks.ksm_zero_pages == maps.get(id(ks.zero_page), 0)


_OPS = ["map", "write", "write", "merge", "unmerge", "fork", "exit", "munmap", "batch",
        "batch", "scan", "knob", "run2", "spawn", "prctl", "dontneed"]


def _program(draw: _Draws, profile: str, tracing: bool, steps: int,
             recheck: bool = False) -> list[tuple]:
    """Run a random program of processes, writes and ksmd steps; after each step check that
    every process reads what it wrote and that the counters agree with the trees."""
    k = kb.Kernel(profile=profile)
    k.ksmd.tracing = tracing
    k.sysfs["pages_to_scan"] = 7
    k.sysfs["run"] = 1
    procs: list[Process] = []
    shadow: dict[int, dict[int, int]] = {}  # pid -> address -> content written
    regions: dict[int, list[tuple[int, int]]] = {}
    seen: list[tuple] = []

    def spawn() -> None:
        p = k.spawn()
        procs.append(p)
        shadow[p.pid], regions[p.pid] = {}, []

    spawn()
    for _ in range(steps):
        op = draw.pick(_OPS)
        live = [p for p in procs if p.alive]
        if not live:
            spawn()
            continue
        p = live[draw.integer(0, len(live) - 1)]
        mapped = regions[p.pid]
        if op == "spawn":
            spawn()
        elif op == "map":
            n = draw.integer(1, 6)
            a = p.mmap(n * P, RW, ANON)
            mapped.append((a, n))
            if draw.integer(0, 1):
                p.madvise(a, n * P, kb.MADV_MERGEABLE)
        elif op == "write" and mapped:
            a, n = mapped[draw.integer(0, len(mapped) - 1)]
            i = draw.integer(0, n - 1)
            values = draw.contents(n - i)
            p.write_pages(a + i * P, values)
            for j, v in enumerate(values):
                shadow[p.pid][a + (i + j) * P] = v
        elif op in ("merge", "unmerge", "dontneed") and mapped:
            a, n = mapped[draw.integer(0, len(mapped) - 1)]
            i = draw.integer(0, n - 1)
            j = draw.integer(i + 1, n)
            advice = {"merge": kb.MADV_MERGEABLE, "unmerge": kb.MADV_UNMERGEABLE,
                      "dontneed": kb.MADV_DONTNEED}[op]
            p.madvise(a + i * P, (j - i) * P, advice)
            if op == "dontneed":  # zapped: the pages read as zeros again
                for x in range(i, j):
                    shadow[p.pid].pop(a + x * P, None)
        elif op == "fork":
            child = p.fork()
            procs.append(child)
            shadow[child.pid] = dict(shadow[p.pid])
            regions[child.pid] = list(mapped)
        elif op == "exit":
            p.exit()
        elif op == "munmap" and mapped:
            a, n = mapped.pop(draw.integer(0, len(mapped) - 1))
            p.munmap(a, n * P)
            for j in range(n):
                shadow[p.pid].pop(a + j * P, None)
        elif op == "batch":
            k.ksm.pages_changed |= recheck
            k.ksmd.batch()
        elif op == "scan" and k.ksmd.ksmd_should_run():
            k.ksm.pages_changed |= recheck
            k.ksmd.full_scans(1)
        elif op == "knob":
            names = [n for n in ("use_zero_pages", "smart_scan", "max_page_sharing",
                                 "max_kernel_pages", "pages_to_scan") if n in k.profile.ksm_knobs]
            name = str(draw.pick(names))
            value = (draw.integer(2, 4) if name in ("max_page_sharing", "max_kernel_pages")
                     else draw.integer(1, 9) if name == "pages_to_scan" else draw.integer(0, 1))
            try:
                k.sysfs[name] = value
            except OSError as e:
                assert e.errno == errno.EBUSY and name == "max_page_sharing"
        elif op == "run2":
            k.sysfs["run"] = 2
            k.sysfs["run"] = 1
        elif op == "prctl" and k.profile.prctl_memory_merge:
            p.prctl(kb.ksm.PR_SET_MEMORY_MERGE, draw.integer(0, 1))
        for q in procs:
            if q.alive:
                for a, n in regions[q.pid]:
                    for j in range(n):
                        assert q.read_page(a + j * P) == shadow[q.pid].get(a + j * P, 0)
        _invariants(k)
        nodes = tuple((n.content, n.mapcount, n.sharers, n.dup, n.chain_dups)
                      for n in k.ksmd.stable_tree())  # page ids are global, not per kernel
        seen.append((tuple(sorted(k.sysfs.counters().items())), nodes,
                     tuple(k.ksmd.unstable_tree()),
                     tuple(k.ksmd.rmap_items()), k.ksmd.cursor()))
        if tracing:  # every step's template formats with its arguments
            for tr in k.ksmd.log:
                assert str(tr).startswith("ksmd: ksm_do_scan(")
    return seen


@pytest.mark.parametrize("profile", KSMD_PROFILES)
@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_merging_never_changes_what_a_process_reads(profile: str, data: st.DataObject) -> None:
    _program(_Draws(data), profile, tracing=False, steps=40)


@pytest.mark.parametrize("profile", KSMD_PROFILES)
@settings(max_examples=examples(30), deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_tracing_never_changes_a_decision(profile: str, seed: int) -> None:
    """The same state after every step, traced or not."""
    traced = _program(_Draws(seed=seed), profile, tracing=True, steps=60)
    untraced = _program(_Draws(seed=seed), profile, tracing=False, steps=60)
    assert traced == untraced


@pytest.mark.parametrize("profile", KSMD_PROFILES)
@settings(max_examples=examples(30), deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_every_change_that_matters_to_the_unstable_tree_is_noticed(profile: str,
                                                                    seed: int) -> None:
    """ksmd checks its unstable tree only after KsmState.pages_changed: checking before every
    batch decides the same."""
    hooked = _program(_Draws(seed=seed), profile, tracing=False, steps=60)
    always = _program(_Draws(seed=seed), profile, tracing=False, steps=60, recheck=True)
    assert hooked == always


def test_scan_scenario_is_what_predict_runs() -> None:
    """predict() and experiment.measure() share one scenario: it prints and parses back, names
    every process, knob and scan, and run by the Runner it gives predict()'s counters."""
    from ksmbook import scenario as sc
    from ksmbook.experiment import READ, predict, scan_results, scan_scenario

    plan = [[7, 7, READ, None, 0, 9], [7, 0, 0]]
    s = scan_scenario(None, processes=plan, scans=3, use_zero_pages=1, max_page_sharing=2)
    text = sc.format_scenario(s)
    assert sc.parse(text) == s
    lines = text.splitlines()
    assert lines[0].startswith("kernel modern")
    assert "p2: madvise A2 3p MERGEABLE" in lines and "sysfs max_page_sharing=2" in lines
    assert lines.count("ksmd scan 1") == 3 and lines.index("sysfs run=1") < lines.index(
        "ksmd scan 1")
    got = scan_results(sc.run(s, maps=False))
    want = predict(None, processes=plan, scans=3, use_zero_pages=1, max_page_sharing=2)
    assert got == want
    assert len(got["history"]) == 3 and got["full_scans"] == 3
    assert got["ksm_zero_pages"] == 3 and got["pages_sharing"] == 1
