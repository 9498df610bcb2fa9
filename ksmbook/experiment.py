"""One ksmd experiment for the simulator and for this machine's ksmd.

`scan_scenario` writes the experiment as statements of the scenario language: processes map
pages with chosen contents and advise them MERGEABLE, the knobs are set, ksmd makes a number
of full scans. `predict` runs it on the simulator (the scenario Runner), `measure` replays it
on the live kernel (``ksmbook.live.replay(..., ksmd=True)``), and both return `scan_results`:
the counters after the last scan, after each scan, and each process's /proc/PID/ksm_stat, so
the two answers can be compared key by key.

This module sits above the scenario language and the live package; nothing below imports it.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Sequence
from typing import Any

from . import scenario as sc
from .constants import MADV, PAGE_SIZE, PROT
from .live import KsmShared, replay
from .live.ksmd import contamination
from .profiles import get_profile

__all__ = ["READ", "page_mix", "scan_scenario", "scan_results", "predict", "measure"]

#: Page marker besides ints and None (never touched): a page only read (it maps the shared
#: zero page: no KSM candidate).
READ = "read"


def page_mix(n: int, seed: int, zero: float = 0.2, repeated: float = 0.4, patterns: int = 300,
             first_unique: int = 1_000_001) -> list[int]:
    """n page contents drawn from a seeded generator: a share `zero` of all-zero pages, a share
    `repeated` of `patterns` contents (500,001 on, the i-th with weight 1/(i+1)), and the rest
    unique (first_unique, first_unique + 1, ...)."""
    rng = random.Random(seed)
    pool = range(500_001, 500_001 + patterns)
    weights = [1.0 / (i + 1) for i in range(patterns)]
    unique = itertools.count(first_unique)
    out = []
    for _ in range(n):
        x = rng.random()
        if x < zero:
            out.append(0)
        elif x < zero + repeated:
            out.append(rng.choices(pool, weights)[0])
        else:
            out.append(next(unique))
    return out


def _plan(contents: Sequence[Any] | None, processes: int | list[list[Any]]) -> list[list[Any]]:
    """The pages of each process: `processes` as a list of lists, `contents` as one, or
    `contents` (one list) in each of `processes` processes."""
    if isinstance(processes, list):
        return [list(p) for p in processes]
    if contents and isinstance(contents[0], (list, tuple)):
        return [list(p) for p in contents]
    return [list(contents or ()) for _ in range(int(processes))]


def scan_scenario(contents: Sequence[Any] | None, *, profile: str = "modern", scans: int = 2,
                  use_zero_pages: int = 0, max_page_sharing: int | None = None,
                  smart_scan: int | None = None, processes: int | list[list[Any]] = 1
                  ) -> sc.Scenario:
    """The scenario of `predict` and `measure`: one process per list of
    pages (p1, p2, ... in that order), each mapping its pages, writing the ints (runs of them
    in one ``write``), reading the READ pages, leaving None untouched and advising the whole
    area MERGEABLE; then the knobs, ``sysfs run=1`` and one ``ksmd scan 1`` per full scan.

    `contents`: one list of page contents, mapped by each of `processes` processes; or one
    list per process, as `contents` or as `processes`.
    """
    ops: list[sc.Statement] = [sc.Boot(profile)]
    for n, pages in enumerate(_plan(contents, processes), 1):
        proc, area = f"p{n}", f"A{n}"
        ops.append(sc.Spawn(proc))
        if not pages:
            continue
        length = len(pages) * PAGE_SIZE
        ops.append(sc.Map(proc, area, length, int(PROT.PROT_READ | PROT.PROT_WRITE)))
        i = 0
        while i < len(pages):
            j = i
            while j < len(pages) and isinstance(pages[j], int) and not isinstance(pages[j], bool):
                j += 1
            if j > i:
                ops.append(sc.Write(proc, sc.Addr(area, i * PAGE_SIZE), tuple(pages[i:j])))
                i = j
                continue
            if pages[i] == READ:
                ops.append(sc.Read(proc, sc.Addr(area, i * PAGE_SIZE)))
            elif pages[i] is not None:
                raise ValueError(f"page content must be an int, READ or None: {pages[i]!r}")
            i += 1
        ops.append(sc.Madvise(proc, sc.Addr(area, 0), length, int(MADV.MADV_MERGEABLE)))
    has_zero_pages = get_profile(profile).use_zero_pages
    knobs = {"use_zero_pages": use_zero_pages if use_zero_pages or has_zero_pages else None,
             "max_page_sharing": max_page_sharing, "smart_scan": smart_scan,
             "pages_to_scan": 10_000_000, "sleep_millisecs": 0, "run": 1}
    ops += [sc.SysfsWrite(name, str(value)) for name, value in knobs.items() if value is not None]
    ops += [sc.KsmdScans(1) for _ in range(scans)]
    return sc.Scenario(tuple(ops))


def scan_results(steps: Sequence[sc.StepResult]) -> dict[str, Any]:
    """What `predict` and `measure` return, from the steps of a
    `scan_scenario`: the counters after the last statement, "history" (the counters after each
    ``ksmd scan``) and "ksm_stat" (each process's /proc/PID/ksm_stat, [] in a kernel without
    that file). A refused statement raises its OSError."""
    for step in steps:
        if step.errno is not None:
            raise OSError(step.errno, f"{step.op}: {os.strerror(step.errno)}")
    last = [s for s in steps if s.counters is not None][-1]
    result: dict[str, Any] = dict(last.counters or {})
    result["history"] = [s.counters for s in steps if isinstance(s.op, sc.KsmdScans)]
    result["ksm_stat"] = list((last.ksm_stat or {}).values())
    return result


def predict(contents: Sequence[Any] | None, *, profile: str = "modern", scans: int = 2,
            use_zero_pages: int = 0, max_page_sharing: int | None = None,
            smart_scan: int | None = None, processes: int | list[list[Any]] = 1
            ) -> dict[str, Any]:
    """The simulator's counters after `scans` full scans of the given pages, in the shape of
    `measure` (same arguments, same scenario, same keys), so the two can
    be compared: `scan_scenario` run by the scenario Runner, ksmd untraced; see `scan_results`.
    """
    scenario = scan_scenario(contents, profile=profile, scans=scans,
                             use_zero_pages=use_zero_pages, max_page_sharing=max_page_sharing,
                             smart_scan=smart_scan, processes=processes)
    kernel = sc.boot(scenario)
    kernel.ksmd.tracing = False
    return scan_results(sc.run(scenario, kernel, maps=False))


def measure(contents: Sequence[Any] | None, *, use_zero_pages: int = 0,
            max_page_sharing: int | None = None, smart_scan: int | None = None,
            scans: int = 2, processes: int | list[list[Any]] = 1,
            retries: int = 3) -> dict[str, Any]:
    """Counters of the live ksmd after exactly *scans* full scans of the given pages: the
    scenario of `predict` (`scan_scenario`, same arguments),
    replayed on this machine (``ksmbook.live.replay(..., ksmd=True)``).

    *contents*: one list of page contents (ints, READ or None), mapped by each of *processes*
    worker processes, or a list of lists (one per process; or pass that list as *processes*).
    Processes register in list order, after a reset, with ksmd stopped, so scan 1 is a full
    first visit of every page. Knobs are restored afterwards and a final run=2 leaves no KSM
    state behind.

    Returns what ``predict`` returns (the counters after the last scan, relative to the reset,
    "history" and "ksm_stat"), plus: "elapsed" (wall time of the replay that gave them),
    "contamination" ("" when the global counters equal the sums of the processes' own
    ksm_stat), "foreign_mms" (PIDs of other processes registered with KSM that made an
    earlier replay start again) and "attempts". ksmd is global: a replay during which another
    process used KSM (``ksmbook.live.KsmShared``) or whose counters are contaminated is repeated, up
    to *retries* times; ``KsmShared`` comes out of the last one.
    """
    scenario = scan_scenario(contents, scans=scans, use_zero_pages=use_zero_pages,
                             max_page_sharing=max_page_sharing, smart_scan=smart_scan,
                             processes=processes)
    foreign: set[int] = set()
    result: dict[str, Any] = {}
    for attempt in range(retries + 1):
        t0 = time.monotonic()
        try:
            steps = replay(scenario, ksmd=True, maps=False)
        except KsmShared as e:
            if attempt == retries:
                raise
            foreign.update(e.pids)
            time.sleep(0.2)
            continue
        result = scan_results(steps)
        result["elapsed"] = time.monotonic() - t0
        result["contamination"] = contamination(result, result["ksm_stat"])
        result["foreign_mms"] = sorted(foreign)
        result["attempts"] = attempt + 1
        if not result["contamination"]:
            break
        time.sleep(0.2)
    return result
