"""Cost of one madvise pair on the simulator and on this machine's kernel, by VMA count.

The pair: MADV_MERGEABLE on one page in the middle of a 4-page VMA (split_vma() twice: the
VMA becomes three), then MADV_UNMERGEABLE on the same page (vma_merge() with both
neighbours: one VMA again). The address space holds N VMAs, made by alternating protections
(read-write, read-only) over one big private anonymous mapping, as a program would get them.

The live side runs in a worker of the live harness (``ksmbook.live.ksmd.session``: the
project's lock, a worker confined to its arena, ksmd reset and every knob restored), which
times the pairs itself (``LiveTask.time_madvise``), so this process is never registered with
KSM. Both sides are timed in CPU time (time.process_time(): user plus system time of the
timing process, so the kernel's own work counts), which other processes competing for the
CPUs do not inflate as they do wall time. It needs Linux with CONFIG_KSM, root (the session
resets ksmd) and vm.max_map_count above N plus the worker's own mappings; rows that cannot
run say why. No sysctl is touched.

    python benchmarks/madvise_pair.py [--counts 64,1024,16384,60000] [--profile modern]
                                      [--pairs 2000] [--rounds 3] [--cprofile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ksmbook as kb  # noqa: E402
from ksmbook.backend import ProcessBackend  # noqa: E402
from ksmbook.live import ksmd as live_ksmd  # noqa: E402

P = kb.PAGE_SIZE
CHUNK = 4  # pages per VMA
COUNTS = (64, 1024, 16384, 60000)

def build(task: ProcessBackend, n: int) -> tuple[int, list[int]]:
    """n VMAs of CHUNK pages in `task` (a simulated or a live process: one Process API), made
    by alternating protections; returns the page the pair advises and the VMA counts after the
    build, after MERGEABLE and after UNMERGEABLE on it."""
    a = task.mmap(n * CHUNK * P, kb.PROT_READ | kb.PROT_WRITE,
                  kb.MAP_PRIVATE | kb.MAP_ANONYMOUS | kb.MAP_NORESERVE)
    for i in range(1, n, 2):
        task.mprotect(a + i * CHUNK * P, CHUNK * P, kb.PROT_READ)
    mid = a + (n // 2) * CHUNK * P + P
    counts = [len(task.map_entries())]
    for advice in (kb.MADV_MERGEABLE, kb.MADV_UNMERGEABLE):
        task.madvise(mid, P, advice)
        counts.append(len(task.map_entries()))
    return mid, counts


def sim_pair(profile: str, n: int, pairs: int, rounds: int,
             profiler: cProfile.Profile | None) -> dict:
    """Build n VMAs in a simulated process; the best of `rounds` timings of `pairs` pairs."""
    p = kb.Kernel(profile).spawn()
    mid, counts = build(p, n)
    times = []
    for _ in range(rounds):
        if profiler is not None:
            profiler.enable()
        t = time.process_time()
        for _ in range(pairs):
            p.madvise(mid, P, kb.MADV_MERGEABLE)
            p.madvise(mid, P, kb.MADV_UNMERGEABLE)
        times.append((time.process_time() - t) / pairs)
        if profiler is not None:
            profiler.disable()
    return {"counts": counts, "pair": min(times)}


def live_pair(n: int, pairs: int, rounds: int) -> dict:
    """The best of `rounds` timings of the same pair on this machine's kernel, in a worker of
    the live harness (``ksmbook.live.ksmd.session``: the lock, the arena, knobs restored)."""
    ok, why = live_ksmd.ksm_available()
    if not ok:
        return {"error": why}
    try:
        limit = int(Path("/proc/sys/vm/max_map_count").read_text())
    except OSError:
        limit = 65530
    if n + 1000 > limit:
        return {"error": f"vm.max_map_count is {limit}: too low for {n} VMAs"}
    advices = (int(kb.MADV_MERGEABLE), int(kb.MADV_UNMERGEABLE))
    with live_ksmd.session(timeout=600) as ksmd:
        task = ksmd.spawn()
        mid, counts = build(task, n)
        pair = min(task.time_madvise(mid, P, advices, pairs, rounds))
        empty = min(task.time_madvise(mid, 0, advices, pairs, rounds))
    return {"counts": counts, "pair": pair, "empty_pair": empty}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default=",".join(map(str, COUNTS)),
                    help="VMA counts, comma separated")
    ap.add_argument("--profile", default="modern", choices=list(kb.PROFILES))
    ap.add_argument("--pairs", type=int, default=2000, help="pairs timed on the simulator")
    ap.add_argument("--live-pairs", type=int, default=20000, help="pairs timed live")
    ap.add_argument("--rounds", type=int, default=3, help="timings per side; the best counts")
    ap.add_argument("--cprofile", action="store_true",
                    help="profile the simulator's pairs at the largest count")
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",")]

    print(f"madvise pair (MERGEABLE on one page mid-VMA, then UNMERGEABLE), {CHUNK}-page VMAs")
    print(f"simulator profile {args.profile!r}, {args.pairs} pairs; live kernel "
          f"{os.uname().release}, {args.live_pairs} pairs; best of {args.rounds} rounds\n")
    head = (f"{'VMAs':>7} {'sim µs/pair':>12} {'live µs/pair':>13} {'ratio':>7} "
            f"{'sim vs first':>13} {'live vs first':>14} {'live len 0':>11}  checks")
    print(head)
    print("-" * len(head))
    profiler = cProfile.Profile() if args.cprofile else None
    first: tuple[float, float | None] | None = None
    worst_ratio = 0.0
    status = 0
    for n in counts:
        prof = profiler if profiler is not None and n == max(counts) else None
        sim = sim_pair(args.profile, n, args.pairs, args.rounds, prof)
        live = live_pair(n, args.live_pairs, args.rounds)
        sim_us = sim["pair"] * 1e6
        live_us = live["pair"] * 1e6 if "pair" in live else None
        if first is None:
            first = (sim_us, live_us)
        checks = ["sim " + "->".join(map(str, sim["counts"]))]
        if live_us is not None:
            # The arena's VMAs only (the worker's own mappings lie outside it).
            base, split, merged = live["counts"]
            checks.append(f"live +{split - base}/+{merged - base}")
            ratio = sim_us / live_us
            worst_ratio = max(worst_ratio, ratio)
            live_col, ratio_col = f"{live_us:13.2f}", f"{ratio:6.1f}x"
            live_growth = (f"{live_us / first[1]:13.2f}x" if first[1] else f"{'':>14}")
            floor = f"{live['empty_pair'] * 1e6:11.2f}"
        else:
            live_col, ratio_col, live_growth = f"{'-':>13}", f"{'-':>7}", f"{'-':>14}"
            floor = f"{'-':>11}"
            checks.append(f"live skipped: {live['error']}")
        print(f"{n:>7} {sim_us:12.2f} {live_col} {ratio_col} {sim_us / first[0]:12.2f}x "
              f"{live_growth} {floor}  {'; '.join(checks)}")
        if sim["counts"] != [n, n + 2, n] or (
                live_us is not None and (split - base, merged - base) != (2, 0)):
            print("  !! the pair did not split into three and merge back")
            status = 1
    if live_us is not None:
        print(f"\nsimulator/live at {counts[-1]} VMAs: {ratio:.1f}x "
              f"(aim: within 8x); worst ratio {worst_ratio:.1f}x")
    print("(live times include the ctypes call overhead, about the 'live len 0' column: the "
          "same pair with length 0;\n the simulator's include building each call's trace)")
    if profiler is not None:
        print(f"\nprofile of the simulator at {max(counts)} VMAs:")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
    return status


if __name__ == "__main__":
    sys.exit(main())
