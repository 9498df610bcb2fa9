"""Explorer latency: from a click on "madvise" to the updated diagram, at 10, 200, 2,000 VMAs.

Each click runs the statement on the simulated kernel, snapshots the process, computes the
changes, updates the figure's artists and encodes the SVG that the browser shows; the time is
measured around `Button.click()`, which does all of that before it returns. (Sending the SVG
to the browser and drawing it there come on top; tests/test_browser.py covers that path.)
The clicks alternate MADV_MERGEABLE and MADV_UNMERGEABLE over the same range, so the VMA count
stays put. The same figure is also encoded as PNG, the alternative to inline SVG, for
comparison. The CPU time of each click is printed too: on a shared machine the wall time
grows with the load, the CPU time much less.

    python benchmarks/widget_latency.py [--clicks 50]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ksmbook as kb  # noqa: E402
from ksmbook.widgets import Explorer  # noqa: E402

TARGET_MS = 100.0  # median at 2,000 VMAs


def explorer_with(vmas: int) -> Explorer:
    """An explorer whose process has `vmas` VMAs: one mapping, every other page read-only."""
    pages = vmas  # mprotect of every other page of `vmas` pages gives `vmas` VMAs
    lines = ["kernel seed ksm=y", f"map A {pages}p rw private anon"]
    lines += [f"mprotect A+{i}p 1p r" for i in range(1, pages, 2)]
    ex = Explorer(script="\n".join(lines) + "\n")
    assert not ex.errors and ex.message.startswith(("", "Replayed")), ex.message
    middle = (pages // 2) & ~1
    ex.range_start.value = f"A+{middle}p"
    ex.range_length.value = "4p"
    return ex


def clicks(ex: Explorer, n: int, cpu: list[float] | None = None) -> list[float]:
    """Milliseconds per click, n clicks alternating MERGEABLE and UNMERGEABLE (with `cpu`,
    the CPU milliseconds of each click are appended to it)."""
    times = []
    advices = (int(kb.MADV_MERGEABLE), int(kb.MADV_UNMERGEABLE))
    for i in range(n):
        ex.advice.value = advices[i % 2]
        t0, c0 = time.perf_counter(), time.process_time()
        ex.apply_button.click()
        times.append((time.perf_counter() - t0) * 1e3)
        if cpu is not None:
            cpu.append((time.process_time() - c0) * 1e3)
        assert ex.trace is not None and ex.trace.result == 0 and not ex.errors
    return times


def png_ms(ex: Explorer, n: int = 10) -> float:
    """Median milliseconds to encode the explorer's current figure as PNG."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        ex.view.figure.savefig(io.BytesIO(), format="png")
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=50)
    args = parser.parse_args()
    print(f"{'VMAs':>6} {'median ms':>10} {'worst ms':>9} {'median/target':>14} "
          f"{'CPU median ms':>14} {'PNG instead, ms':>16}")
    verdict = 0
    for vmas in (10, 200, 2000):
        ex = explorer_with(vmas)
        count = len(ex.kernel.processes[0].vmas)
        clicks(ex, 3)  # warm caches (fonts, the snapshot cache)
        cpu: list[float] = []
        times = clicks(ex, args.clicks, cpu)
        med, worst = statistics.median(times), max(times)
        print(f"{count:>6} {med:>10.1f} {worst:>9.1f} {med / TARGET_MS:>14.2f} "
              f"{statistics.median(cpu):>14.1f} {png_ms(ex):>16.1f}")
        if vmas == 2000 and med > TARGET_MS:
            verdict = 1
    print(f"target: median under {TARGET_MS:.0f} ms at 2,000 VMAs "
          f"({'met' if verdict == 0 else 'NOT met'})")
    return verdict


if __name__ == "__main__":
    sys.exit(main())
