"""The side-channel cost model (ksmbook.sidechannel): which fault a write takes, its modelled
latency, the attacker's probe on the simulator, and (live) the calibration on this machine."""

from __future__ import annotations

import errno
import random
import re

import pytest

import ksmbook as kb
from ksmbook import sidechannel as sc
from ksmbook.ksmd import KsmdIdle

P = kb.PAGE_SIZE
RW = kb.PROT_READ | kb.PROT_WRITE
ANON = kb.MAP_PRIVATE | kb.MAP_ANONYMOUS


def area(p: kb.Process, contents: list[int | None], advise: bool = True) -> int:
    a = p.mmap(len(contents) * P, RW, ANON)
    for i, c in enumerate(contents):
        if c is not None:
            p.write_pages(a + i * P, [c])
    if advise:
        p.madvise(a, len(contents) * P, kb.MADV_MERGEABLE)
    return a


def every_kind() -> tuple[kb.Kernel, list[tuple[kb.Process, int, str]]]:
    """One page of each kind, after two full scans with use_zero_pages=1."""
    k = kb.Kernel(profile="modern")
    k.sysfs["use_zero_pages"] = 1
    area(k.spawn("other"), [1])
    p = k.spawn("p")
    a = area(p, [2, 1, 0, None])
    q = k.spawn("q")
    b = area(q, [3], advise=False)
    q.fork("child")
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    return k, [(p, a, sc.NONE), (p, a + P, sc.COW_KSM), (p, a + 2 * P, sc.COW_KSM_ZERO),
               (p, a + 3 * P, sc.FIRST_TOUCH), (q, b, sc.COW)]


def test_classify_every_kind_without_changing_anything() -> None:
    k, cases = every_kind()
    before = {p.pid: dict(p.mm.ptes) for p in k.processes}
    assert [sc.classify(p, addr) for p, addr, _ in cases] == [kind for *_, kind in cases]
    assert {p.pid: dict(p.mm.ptes) for p in k.processes} == before


def test_the_write_does_what_the_class_says() -> None:
    k, cases = every_kind()
    for p, addr, kind in cases:
        old = p.mm.ptes.get(addr >> 12)
        t = sc.timed_write(p, addr, 0x77)
        new = p.mm.ptes[addr >> 12]
        assert t.kind == kind and p.read_page(addr) == 0x77
        assert (new is old) == (kind == sc.NONE), kind     # every fault gives a new page
        assert new.ksm is None and new.mapcount == 1
        assert t.latency_us == sc.LATENCY_US[kind]          # no rng: the median


def test_shared_mappings_and_bad_addresses() -> None:
    k = kb.Kernel(profile="modern")
    p = k.spawn()
    s = p.mmap(2 * P, RW, kb.MAP_SHARED | kb.MAP_ANONYMOUS)
    p.write_pages(s, [5])
    assert sc.classify(p, s) == sc.NONE
    r = p.mmap(P, kb.PROT_READ, ANON)
    for addr in (r, 0x1000):
        with pytest.raises(OSError) as e:
            sc.classify(p, addr)
        assert e.value.errno == errno.EFAULT


def test_the_model_is_the_calibration() -> None:
    lat = sc.LATENCY_US
    assert lat[sc.NONE] < lat[sc.FIRST_TOUCH] < lat[sc.COW] < lat[sc.COW_KSM]
    assert lat[sc.COW_KSM] / lat[sc.NONE] > 3
    # The docstring's table and the constants are the same measurement.
    rows = {m[0]: tuple(float(x) for x in m[1:4])
            for m in re.findall(r"^\s+([a-z-]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+[\d.]+\s+[\d.]+",
                                sc.__doc__ or "", re.M)}
    assert rows == sc.CALIBRATION
    assert "--calibrate" in (sc.__doc__ or "")


def test_noise_is_seeded() -> None:
    a = [sc.model_latency(sc.COW_KSM, random.Random(3)) for _ in range(5)]
    b = [sc.model_latency(sc.COW_KSM, random.Random(3)) for _ in range(5)]
    assert a == b
    rng = random.Random(0)
    draws = sorted(sc.model_latency(sc.NONE, rng) for _ in range(2001))
    assert abs(draws[1000] - sc.LATENCY_US[sc.NONE]) < 0.05
    assert max(draws) < sc.threshold_us() < min(sc.model_latency(sc.COW_KSM, rng)
                                                 for _ in range(2000))


def probe_against(how: str, scans: int = 2) -> sc.Probe:
    k = kb.Kernel(profile="modern")
    v = k.spawn("victim")
    area(v, [42, 7], advise=how == "madvise")
    if how == "prctl":
        v.prctl(67, 1)
    k.sysfs["run"] = 1
    return sc.probe(k.spawn("attacker"), [40, 41, 42, 43], scans=scans, rng=random.Random(5))


def test_probe_finds_only_what_a_victim_offered() -> None:
    assert probe_against("madvise").found == [42]
    assert probe_against("prctl").found == [42]
    assert probe_against("none").found == []
    assert probe_against("madvise", scans=1).found == []     # the checksum gate
    result = probe_against("madvise")
    assert [r.kind for r in result.rows] == ["none", "none", "cow-ksm", "none"]
    assert result.text() == probe_against("madvise").text()   # deterministic


def test_probe_refusals() -> None:
    k = kb.Kernel(profile="modern")
    a = k.spawn()
    with pytest.raises(ValueError, match="differ"):
        sc.probe(a, [1, 1])
    with pytest.raises(KsmdIdle):
        sc.probe(a, [1, 2])                                   # run is 0


def test_smart_scan_can_keep_identical_pages_apart() -> None:
    """Checked live on this machine (Linux 6.18): with the victim's page scanned 12 times
    before, the attacker's copy merged after 2 scans; 9 times, after 14; 13 times, never in
    20 scans: both pages are processed every ninth pass, out of phase."""
    def scans_to_find(age: int, limit: int = 20) -> int | None:
        for scans in range(1, limit + 1):
            k = kb.Kernel(profile="modern")
            k.ksmd.tracing = False
            area(k.spawn("victim"), [99])
            k.sysfs["run"] = 1
            k.ksmd.full_scans(age)
            if sc.probe(k.spawn("attacker"), [99, 98], scans=scans).found:
                return scans
        return None

    assert [scans_to_find(age) for age in (12, 9, 13)] == [2, 14, None]


@pytest.mark.live
@pytest.mark.usefixtures("ksm_to_ourselves")
def test_live_calibration_orders_the_faults_and_restores_everything() -> None:
    from ksmbook import live_ksmd
    knobs = live_ksmd.KsmKnobs.snapshot()
    zero_before = live_ksmd.read_counters().get("ksm_zero_pages", 0)
    result = sc.measure_write_latency(128)
    assert live_ksmd.KsmKnobs.snapshot() == knobs
    # No zero page is left counted (the helper forks before any zero page is merged).
    assert live_ksmd.read_counters().get("ksm_zero_pages", 0) == zero_before
    assert result["ksm_stat"]["ksm_merging_pages"] >= 256
    med = {kind: result[kind]["median"] for kind in sc.CALIBRATION}
    assert med[sc.COW_KSM] > 2 * med[sc.NONE]
    assert med[sc.FIRST_TOUCH] > 1.5 * med[sc.NONE] and med[sc.COW] > 1.5 * med[sc.NONE]
