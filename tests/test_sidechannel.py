"""The side-channel cost model (ksmbook.sidechannel): which fault a write takes, its modelled
latency, the attacker's probe on the simulator, and (live) the calibration on this machine."""

from __future__ import annotations

import errno
import os
import random
import re
from pathlib import Path

import pytest

import ksmbook as kb
from ksmbook import sidechannel as sc
from ksmbook.ksmd import KsmdIdle
from ksmbook.scenario import Runner
from ksmbook.trace import Fault, Kind

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


def every_kind() -> tuple[kb.Kernel, list[tuple[kb.Process, int, Fault]]]:
    """One page of each kind, after two full scans with use_zero_pages=1."""
    k = kb.Kernel(profile="modern")
    k.sysfs["use_zero_pages"] = 1
    area(k.spawn("other"), [1])
    p = k.spawn("p")
    a = area(p, [2, 1, 0, None])
    q = k.spawn("q")
    b = area(q, [3], advise=False)
    q.fork("child")
    r = k.spawn("r")
    c = area(r, [4], advise=False)
    r.fork("gone").exit()                   # r's page: write-protected, mapped once again
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    return k, [(p, a, Fault.NONE), (p, a + P, Fault.KSM_COPY), (p, a + 2 * P, Fault.KSM_ZERO_COPY),
               (p, a + 3 * P, Fault.ANON_NEW), (q, b, Fault.COW_COPY), (r, c, Fault.REUSE)]


def test_each_write_records_the_fault_it_took() -> None:
    k, cases = every_kind()
    zero_pages = k.sysfs["ksm_zero_pages"]
    for p, addr, kind in cases:
        old = p.mm.ptes.get(addr >> 12)
        t = sc.timed_write(p, addr, 0x77)
        new = p.mm.ptes[addr >> 12]
        trace = p.last_trace
        assert trace is not None and trace.faults() == [kind] == [t.kind]
        assert [(e.start, e.end) for e in trace.events] == [(addr, addr + P)]
        assert p.read_page(addr) == 0x77
        assert (new is old) == (kind in (Fault.NONE, Fault.REUSE)), kind  # else a new page
        assert new.ksm is None and new.mapcount == 1
        assert t.latency_us == sc.LATENCY_US[kind]          # no rng: the median
        assert k.log[-2] is trace and k.log[-1] is p.last_trace   # the read is traced too
        assert not new.wrprotect
    assert k.sysfs["ksm_zero_pages"] == zero_pages - 1   # ksm_might_unmap_zero_page()


PATHS = {
    "modern": {
        Fault.ANON_NEW: ["handle_mm_fault", "do_anonymous_page"],
        Fault.KSM_COPY: ["handle_mm_fault", "do_wp_page", "wp_page_copy"],
        Fault.COW_COPY: ["handle_mm_fault", "do_wp_page", "wp_page_copy"],
        Fault.FILE_COW: ["handle_mm_fault", "do_fault", "do_cow_fault"],
        Fault.FILE_SHARED: ["handle_mm_fault", "do_fault", "do_shared_fault"],
        Fault.REUSE: ["handle_mm_fault", "do_wp_page", "wp_page_reuse"],
        Fault.NONE: ["mmu"],
    },
    # v2.6.32 mm/memory.c: no wp_page_copy() (the copy is do_wp_page()'s gotten: label) and
    # no do_cow_fault()/do_shared_fault() (do_linear_fault() -> __do_fault()).
    "2.6.32": {
        Fault.ANON_NEW: ["handle_mm_fault", "do_anonymous_page"],
        Fault.KSM_COPY: ["handle_mm_fault", "do_wp_page"],
        Fault.COW_COPY: ["handle_mm_fault", "do_wp_page"],
        Fault.FILE_COW: ["handle_mm_fault", "do_linear_fault", "__do_fault"],
        Fault.FILE_SHARED: ["handle_mm_fault", "do_linear_fault", "__do_fault"],
        Fault.REUSE: ["handle_mm_fault", "do_wp_page"],
        Fault.NONE: ["mmu"],
    },
}


@pytest.mark.parametrize("profile", ["2.6.32", "modern"])
def test_the_fault_path_names_the_kernel_functions(profile: str) -> None:
    k = kb.Kernel(profile=profile)
    p = k.spawn()
    f = k.create_file("data.bin", 2 * P, contents=[5, 6])
    a = area(p, [1, 1, 2, None])
    priv = p.mmap(P, RW, kb.MAP_PRIVATE, file=f)
    shared = p.mmap(P, RW, kb.MAP_SHARED, file=f, offset=P)
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    child = p.fork("child")
    seen = {}
    # untouched, merged, fork-shared, private file, shared file, then the first page again
    for addr in (a + 3 * P, a, a + 2 * P, priv, shared, a + 3 * P):
        p.write_pages(addr, [9])
        trace = p.last_trace
        assert trace is not None
        seen[trace.faults()[0]] = trace.functions()
    child.write_pages(a + 2 * P, [8])       # the child's copy is its own again: reused
    assert child.last_trace is not None
    seen[child.last_trace.faults()[0]] = child.last_trace.functions()
    assert seen == PATHS[profile]
    assert f.pages[1].content == 9 and f.pages[0].content == 5   # shared written, private copied


def test_reads_are_traced_and_an_anonymous_read_maps_the_zero_page() -> None:
    k = kb.Kernel(profile="modern")
    p = k.spawn()
    f = k.create_file("data.bin", P, contents=[5])
    a = area(p, [None, 3], advise=False)
    b = p.mmap(P, kb.PROT_READ, kb.MAP_PRIVATE, file=f)
    got = []
    for addr in (a, a + P, b):
        value = p.read_page(addr)
        assert p.last_trace is not None
        got.append((value, p.last_trace.faults(), p.last_trace.call))
    assert got == [(0, [Fault.ZERO_MAP], f"read_page({a:#x})"),
                   (3, [Fault.NONE], f"read_page({a + P:#x})"),
                   (5, [Fault.FILE_READ], f"read_page({b:#x})")]
    assert sorted(p.mm.ptes) == [a >> 12, (a + P) >> 12]     # the file page is not mapped
    assert p.mm.ptes[a >> 12] is k.zero_page
    p.write_pages(a, [4])
    assert p.last_trace is not None and p.last_trace.faults() == [Fault.ZERO_COPY]
    c = area(p, [None], advise=False)
    p.read_page(c)
    timing = sc.timed_write(p, c, 1)            # the calibration's "cow-zero" row
    assert (timing.kind, timing.latency_us) == (Fault.ZERO_COPY, sc.LATENCY_US[Fault.ZERO_COPY])


def test_madv_populate_write_records_its_faults() -> None:
    """MADV_POPULATE_WRITE write-faults each page (faultin_page() -> handle_mm_fault()): the
    madvise trace has a fault event per page, nested under madvise_populate."""
    k = kb.Kernel(profile="modern")
    p = k.spawn()
    a = area(p, [None, 5, None], advise=False)
    p.madvise(a, 3 * P, kb.MADV_POPULATE_WRITE)
    trace = p.last_trace
    assert trace is not None
    assert trace.faults() == [Fault.ANON_NEW, Fault.NONE, Fault.ANON_NEW]
    assert [e.start for e in trace.events if e.kind is Kind.FAULT] == [a, a + P, a + 2 * P]
    assert [p.read_page(a + i * P) for i in range(3)] == [0, 5, 0]


def test_map_populate_and_map_locked_record_their_faults() -> None:
    """mm_populate() (2.6.32 make_pages_present()) write-faults a private writable mapping:
    mmap's trace has one fault per page."""
    for profile, flag in (("modern", kb.MAP_POPULATE), ("2.6.32", kb.MAP_LOCKED)):
        k = kb.Kernel(profile=profile)
        p = k.spawn()
        a = p.mmap(3 * P, RW, ANON | flag)
        assert p.last_trace is not None
        assert p.last_trace.faults() == [Fault.ANON_NEW] * 3, profile
        assert [e.start for e in p.last_trace.events if e.kind is Kind.FAULT] == \
            [a, a + P, a + 2 * P]


def test_shared_mappings_and_bad_addresses() -> None:
    k = kb.Kernel(profile="modern")
    p = k.spawn()
    s = p.mmap(2 * P, RW, kb.MAP_SHARED | kb.MAP_ANONYMOUS)
    p.write_pages(s, [5])
    assert p.last_trace is not None and p.last_trace.faults() == [Fault.FILE_SHARED]
    assert sc.timed_write(p, s, 6).kind == Fault.NONE
    r = p.mmap(P, kb.PROT_READ, ANON)
    before = len(k.log)
    for addr in (r, 0x1000):
        with pytest.raises(OSError, match="SIGSEGV") as e:
            p.write_pages(addr, [1])
        assert e.value.errno == errno.EFAULT
        assert p.last_trace is not None and p.last_trace.errno == errno.EFAULT
        assert p.last_trace.faults() == [] and "do_user_addr_fault" in p.last_trace.functions()
    assert len(k.log) == before + 2
    with pytest.raises(OSError, match="is unmapped: the access would raise SIGSEGV"):
        sc.timed_write(p, 0x1000, 1)
    with pytest.raises(OSError):                  # a bad page anywhere: nothing is written
        p.write_pages(s, [7, 8, 9])
    assert p.read_page(s) == 6


def test_a_write_to_an_uncalibrated_fault_has_no_modelled_latency() -> None:
    k = kb.Kernel(profile="modern")
    p = k.spawn()
    f = k.create_file("data.bin", P)
    with pytest.raises(ValueError, match="no calibration"):
        sc.timed_write(p, p.mmap(P, RW, kb.MAP_PRIVATE, file=f), 1)


def test_one_copy_of_the_copy_on_write_decision() -> None:
    """Which fault a write takes is decided in one place, the fault handler
    (ksmbook.kernel.handle_write_fault): the side channel, the ksmd stepper and the ksmd
    exercises read it from the write's trace and never look at page tables themselves."""
    import ksmbook.exercises.ksmd
    import ksmbook.widgets.ksmd

    for module in (sc, ksmbook.widgets.ksmd, ksmbook.exercises.ksmd):
        source = Path(module.__file__ or "").read_text()
        for peek in (".ptes", "mapcount", ".ksm is", "ksm.zero_page", "wrprotect"):
            assert peek not in source, (module.__name__, peek)


def test_the_model_is_the_calibration() -> None:
    lat = sc.LATENCY_US
    assert lat[Fault.NONE] < lat[Fault.ANON_NEW] < lat[Fault.COW_COPY] < lat[Fault.KSM_COPY]
    assert lat[Fault.KSM_COPY] / lat[Fault.NONE] > 3
    # The docstring's table and the constants are the same measurement.
    rows = {m[0]: tuple(float(x) for x in m[1:4])
            for m in re.findall(r"^\s+([a-z-]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+[\d.]+\s+[\d.]+",
                                sc.__doc__ or "", re.M)}
    assert rows == sc.CALIBRATION
    assert "--calibrate" in (sc.__doc__ or "")


def test_noise_is_seeded() -> None:
    a = [sc.model_latency(Fault.KSM_COPY, random.Random(3)) for _ in range(5)]
    b = [sc.model_latency(Fault.KSM_COPY, random.Random(3)) for _ in range(5)]
    assert a == b
    rng = random.Random(0)
    draws = sorted(sc.model_latency(Fault.NONE, rng) for _ in range(2001))
    assert abs(draws[1000] - sc.LATENCY_US[Fault.NONE]) < 0.05
    assert max(draws) < sc.threshold_us() < min(sc.model_latency(Fault.KSM_COPY, rng)
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
    assert [r.kind for r in result.rows] == [Fault.NONE, Fault.NONE, Fault.KSM_COPY, Fault.NONE]
    assert result.text() == probe_against("madvise").text()   # deterministic


def test_the_probe_is_its_statements_run_by_the_runner() -> None:
    """probe() runs probe_statements() through the scenario Runner: the same statements as
    text, replayed by ksmbook.scenario.run, take the same faults; the chapter 8 exercises
    build their probe from the same statements."""
    from ksmbook.exercises.ksmd import probe_step
    from ksmbook.scenario import (
        Addr,
        Boot,
        Madvise,
        Map,
        Scenario,
        Spawn,
        SysfsWrite,
        Write,
        format_scenario,
        parse,
        run,
    )

    statements = sc.probe_statements("attacker", [40, 41, 42, 43], 2)
    assert probe_step("attacker", [40, 41, 42, 43], 2).statements == (Spawn("attacker"),
                                                                       *statements)
    victim = (Spawn("victim"), Map("victim", "V", 2 * P, RW),
              Write("victim", Addr("V", 0), (42, 7)),
              Madvise("victim", Addr("V", 0), 2 * P, kb.MADV_MERGEABLE))
    text = format_scenario(Scenario((Boot("modern", True), *victim, SysfsWrite("run", "1"),
                                     Spawn("attacker"), *statements)))
    results = run(parse(text), maps=False)
    faults = [sc.fault_of(r.trace) for r in results[-4:]]
    assert faults == [r.kind for r in probe_against("madvise").rows]
    assert [str(r.op) for r in results[-4:]] == [f"attacker: write ATTACKER+{i}p {g ^ 0x5A5A}"
                                                 .replace("+0p", "") for i, g in
                                                 enumerate([40, 41, 42, 43])]


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
    from ksmbook.live import ksmd as live_ksmd
    knobs = live_ksmd.KsmKnobs.snapshot()
    zero_before = live_ksmd.read_counters().get("ksm_zero_pages", 0)
    result = sc.measure_write_latency(128)
    assert live_ksmd.KsmKnobs.snapshot() == knobs
    # No zero page is left counted (the helper forks before any zero page is merged).
    assert live_ksmd.read_counters().get("ksm_zero_pages", 0) == zero_before
    assert result["ksm_stat"]["ksm_merging_pages"] >= 256
    med = {kind: result[kind]["median"] for kind in sc.CALIBRATION}
    assert med[Fault.KSM_COPY] > 2 * med[Fault.NONE]
    assert med[Fault.ANON_NEW] > 1.5 * med[Fault.NONE]
    assert med[Fault.COW_COPY] > 1.5 * med[Fault.NONE]
    assert med[Fault.NONE] < med[Fault.REUSE] < med[Fault.ANON_NEW]


@pytest.mark.live
@pytest.mark.usefixtures("ksm_to_ourselves")
def test_the_same_probe_on_the_live_kernel_finds_the_secret() -> None:
    """probe_live() replays the probe's statements on this machine's kernel (its ksmd driven,
    every knob restored) and times the writes for real: it finds what the simulator finds."""
    from ksmbook.live import ksmd as live_ksmd
    from ksmbook.scenario import Addr, Madvise, Map, Spawn, Write

    knobs = live_ksmd.KsmKnobs.snapshot()
    secret = (os.getpid() << 20) + 42      # a content no other process on the machine has
    guesses = [secret - 2, secret - 1, secret, secret + 1]
    victim = (Spawn("victim"), Map("victim", "V", 2 * P, RW),
              Write("victim", Addr("V", 0), (secret, secret + 7)),
              Madvise("victim", Addr("V", 0), 2 * P, kb.MADV_MERGEABLE))
    live = sc.probe_live(victim, guesses, scans=2)
    assert live_ksmd.KsmKnobs.snapshot() == knobs
    k = kb.Kernel(profile="modern")
    runner = Runner(k, maps=False)
    for op in victim:
        runner.step(op)
    k.sysfs["run"] = 1
    simulated = sc.probe(k.spawn("attacker"), guesses, scans=2)
    assert simulated.found == [secret]
    # The first store of the timing loop is slower (1 to 2 us more, measured here), so a
    # fast page can come out over the threshold; the merged one is the slowest by far.
    assert secret in live.found, live.text()
    assert max(live.rows, key=lambda r: r.latency_us).guess == secret, live.text()
    assert [r.address for r in live.rows] == [r.address for r in simulated.rows]
    assert all(r.kind is None for r in live.rows) and "?" in live.text()


def test_run_trace_shows_the_fault_of_each_labelled_write(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The replay a chapter 8 exercise prints, run with ``python -m ksmbook run --trace``,
    shows the kernel path of each write: the slow ones copy a KSM page in wp_page_copy()."""
    from ksmbook.__main__ import main
    from ksmbook.exercises.ksmd import _slow_writes
    from ksmbook.scenario import format_scenario

    problem = _slow_writes(random.Random(3), "modern")
    path = tmp_path / "slow-writes.ksm"
    path.write_text(format_scenario(problem.scenario))
    assert main(["run", "--trace", str(path)]) == 0
    out = capsys.readouterr().out
    copies = out.count("do_wp_page: a KSM page is never reused\n        wp_page_copy:")
    assert copies == len(problem.answer) > 0
    assert out.count("do_wp_page: not an anonymous page mapped once") == \
        sum(kind is Fault.COW_COPY for kind in problem.run.faults.values())
