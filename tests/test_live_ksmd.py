"""Tests of ksmbook.live.ksmd: the live-ksmd oracle restores every knob and counts like the kernel.

The tests need Linux with KSM and root (the ``live_ksmd`` fixture skips with the reason
otherwise). All together they take a few seconds.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from ksmbook import experiment, live
from ksmbook.live import ksmd as L

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("ksm_to_ourselves")]

X, Y, Z = 1, 2, 3

# Knob values that differ from every default, to prove each one is put back.
CHANGED = {
    "pages_to_scan": 1234,
    "sleep_millisecs": 7,
    "use_zero_pages": 1,
    "smart_scan": 0,
    "max_page_sharing": 100,
    "stable_node_chains_prune_millisecs": 999,
    "advisor_max_cpu": 55,
    "advisor_min_pages_to_scan": 501,
    "advisor_max_pages_to_scan": 30001,
    "advisor_target_scan_time": 201,
}


def measured(contents: list | None, **kwargs: Any) -> dict:
    """``experiment.measure``, skipped if other processes used KSM meanwhile (the counters are
    global): through all its retries (``live.KsmShared``), or unseen but counted (contamination)."""
    try:
        r = experiment.measure(contents, **kwargs)
    except live.KsmShared as e:
        pytest.skip(f"other processes kept using KSM, the counters are global: {e.pids}")
    if r["contamination"]:
        pytest.skip(f"the global counters count other pages: {r['contamination']}")
    return r


def test_ksm_available_gives_a_reason() -> None:
    ok, why = L.ksm_available()
    assert ok and why == ""


# ------------------------------------------------------------------ live kernel

def test_every_knob_restored() -> None:
    before = L.KsmKnobs.snapshot()
    with L.KsmKnobs() as k:
        assert set(k.saved) == set(L.KsmKnobs.writable())
        k.set(**{n: v for n, v in CHANGED.items() if n in k.saved})
        now = L.KsmKnobs.snapshot()
        for n, v in CHANGED.items():
            if n in now:
                assert now[n] == str(v), n
    assert L.KsmKnobs.snapshot() == before


def test_every_knob_restored_after_an_exception_with_ksm_pages() -> None:
    before = L.KsmKnobs.snapshot()
    with pytest.raises(RuntimeError, match="boom"):
        with L.session(max_page_sharing=100, smart_scan=0) as ksmd:
            ksmd.spawn([X, X])
            c = ksmd.scan(2)
            assert c["pages_shared"] >= 1  # KSM pages exist: max_page_sharing now EBUSY
            with pytest.raises(OSError) as busy:
                ksmd.knobs.write("max_page_sharing", 256)
            assert busy.value.errno == 16  # EBUSY
            ksmd.knobs.write("advisor_mode", "scan-time")  # resets pages_to_scan to 500
            raise RuntimeError("boom")
    assert L.KsmKnobs.snapshot() == before
    after = L.read_counters()
    assert after["pages_shared"] == after["pages_sharing"] == 0  # final run=2 cleaned up


def test_nested_knobs_and_run_restored() -> None:
    before = L.KsmKnobs.snapshot()
    with L.KsmKnobs() as outer:
        outer.set(run=1, sleep_millisecs=50, pages_to_scan=777)
        middle = L.KsmKnobs.snapshot()
        with L.KsmKnobs() as inner:  # re-entrant lock, own snapshot
            inner.set(run=0, advisor_mode="scan-time")  # the kernel sets pages_to_scan 500
            assert inner.read("pages_to_scan") == "500"
            with pytest.raises(OSError):  # advisor on: pages_to_scan is not writable
                inner.write("pages_to_scan", 5)
        # restore order: advisor_mode none first (kernel resets pages_to_scan), then 777
        assert L.KsmKnobs.snapshot() == middle
    assert L.KsmKnobs.snapshot() == before


def test_measure_xxy_two_scans() -> None:
    before = L.KsmKnobs.snapshot()
    r = measured([X, X, Y], scans=2)
    assert L.KsmKnobs.snapshot() == before
    first, second = r["history"]
    assert first["full_scans"] == 1 and first["pages_volatile"] == 3
    assert (r["full_scans"], r["pages_shared"], r["pages_sharing"], r["pages_unshared"],
            r["pages_volatile"]) == (2, 1, 1, 1, 0)
    assert r["pages_scanned"] == 6 and r["pages_skipped"] == 0
    # general_profit = (sharing + ksm_zero_pages) * 4096 - rmap_items * sizeof(rmap_item) (64)
    assert r["general_profit"] == 1 * 4096 - 3 * 64
    assert r["ksm_stat"][0]["ksm_rmap_items"] == 3
    assert r["elapsed"] < 5
    # the pages lived in a worker process, never in this one
    mine = L.ksm_stat(os.getpid())
    assert mine.get("ksm_rmap_items", 0) == 0


def test_measure_two_processes() -> None:
    r = measured(None, processes=[[X, X, Y, Z], [X, Y]], scans=2)
    assert r["history"][0]["pages_volatile"] == 6
    assert (r["pages_shared"], r["pages_sharing"], r["pages_unshared"]) == (2, 3, 1)


def test_cow_then_fork() -> None:
    with L.session() as ksmd:
        p1 = ksmd.spawn([X])
        p2 = ksmd.spawn([X])
        assert ksmd.scan(2)["pages_sharing"] == 1
        page = p2.map_entries()[0].start
        assert p2.read_page(page) == X
        p2.write_pages(page, [Y])               # COW copy; counters lag until the next pass
        assert ksmd.counters()["pages_sharing"] == 1
        c = ksmd.scan(1)
        assert (c["pages_shared"], c["pages_sharing"], c["pages_volatile"]) == (1, 0, 1)
        child = p1.fork()                       # the child's KSM page joins on first visit
        assert ksmd.live_processes() == [p1, p2, child]
        c = ksmd.scan(1)
        assert (c["pages_shared"], c["pages_sharing"]) == (1, 1)
        assert [L.ksm_stat(p.worker.pid)["ksm_merging_pages"] for p in (p1, p2, child)] \
            == [1, 0, 1]
        if L.mergeable_mms(exclude=[p.worker.pid for p in ksmd.live_processes()]):
            pytest.skip("other processes use KSM now")

