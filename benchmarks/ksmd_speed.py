"""Simulated ksmd vs this machine's ksmd: three full scans of the same pages.

For 4,096 and 65,536 pages of a mix (20 % zero pages, 40 % from 300 repeated patterns, 40 %
unique) both scan with pages_to_scan 100,000 and sleep_millisecs 0. The live time runs from
run=1 until full_scans reaches 3 (``ksmbook.live.ksmd.time_scans``, knobs restored); the
simulated time is the wall time of ``k.ksmd.full_scans(3)`` with default settings (tracing
on, as a reader's kernel runs). Neither counts mapping and writing the pages. Each is the best
of a few runs (the best CPU time of the simulator is printed too, for a loaded machine); the
ratio is simulated / live (below 1: the simulator is faster). Prints "live:
skipped (why)" where the live ksmd cannot be used; ``--sim-only`` leaves the host's ksmd and
/sys/kernel/mm/ksm alone and times the simulator only.

    python3 benchmarks/ksmd_speed.py [--repeat N] [--sim-only]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ksmbook as kb  # noqa: E402
from ksmbook.experiment import page_mix  # noqa: E402
from ksmbook.live import ksmd as live_ksmd  # noqa: E402

SIZES = (4096, 65536)
SCANS = 3



def simulated(contents: list[int]) -> tuple[float, float, dict[str, int]]:
    """Seconds (wall, CPU) for SCANS full scans of the simulated modern ksmd, its counters."""
    k = kb.Kernel(profile="modern")
    p = k.spawn()
    n = len(contents)
    a = p.mmap(n * kb.PAGE_SIZE, kb.PROT_READ | kb.PROT_WRITE, kb.MAP_PRIVATE | kb.MAP_ANONYMOUS)
    p.write_pages(a, contents)
    p.madvise(a, n * kb.PAGE_SIZE, kb.MADV_MERGEABLE)
    k.sysfs["pages_to_scan"] = 100_000
    k.sysfs["sleep_millisecs"] = 0
    k.sysfs["run"] = 1
    t0, c0 = time.perf_counter(), time.process_time()
    counters = k.ksmd.full_scans(SCANS)
    return time.perf_counter() - t0, time.process_time() - c0, counters


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs of each (best is kept)")
    ap.add_argument("--sim-only", action="store_true",
                    help="time the simulator only; do not touch the host's ksmd")
    args = ap.parse_args()
    ok, why = (False, "--sim-only") if args.sim_only else live_ksmd.ksm_available()
    print(f"{'pages':>7} {'simulated':>11} {'live ksmd':>11} {'sim/live':>9}   sim runs (ms)"
          "   live runs (ms)")
    worst = None
    for n in SIZES:
        contents = page_mix(n, seed=n)
        runs = [simulated(contents) for _ in range(args.repeat)]
        sims = [r[0] for r in runs]
        cpu = min(r[1] for r in runs)
        lives: list[float] = []
        if ok:
            for _ in range(args.repeat):
                lives.append(live_ksmd.time_scans(contents, scans=SCANS, pages_to_scan=100_000,
                                                  sleep_millisecs=0)["elapsed"])
        sim = min(sims)
        fmt = " ".join(f"{s * 1000:.0f}" for s in sims) + f" (CPU {cpu * 1000:.0f})"
        if lives:
            live = min(lives)
            ratio = sim / live
            worst = ratio if worst is None else max(worst, ratio)
            print(f"{n:>7} {sim * 1000:>9.1f}ms {live * 1000:>9.1f}ms {ratio:>8.2f}x   {fmt}"
                  f"   {' '.join(f'{x * 1000:.0f}' for x in lives)}")
        else:
            print(f"{n:>7} {sim * 1000:>9.1f}ms   live: skipped ({why})   {fmt}")
        sys.stdout.flush()
    if worst is not None:
        print(f"simulator {'at most as slow as' if worst <= 1 else 'SLOWER than'} the live ksmd "
              f"(worst ratio {worst:.2f}x; median of runs differs by load: "
              f"{statistics.median(sims) * 1000:.0f} ms simulated for {SIZES[-1]} pages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
