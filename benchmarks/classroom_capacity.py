"""How many students one machine serves: the class hub in test mode, N students at once.

For each N (default 1, 5, 10, 20) the hub starts afresh (classroom/jupyterhub_config.py,
KSMBOOK_HUB_MODE=test); N students log in and start their servers together; then each opens a
kernel and executes every code cell of chapter 2 (notebooks/02-madvise.ipynb), all students at
the same time, through the kernel websocket API. Printed per N: seconds until every server is
ready, chapter time per student (median and worst), resident memory per student (their server
and kernel: RSS mean and largest, and PSS, which counts shared library pages once) and of the
hub (the hub, its proxy and the idle culler).

    .venv/bin/python benchmarks/classroom_capacity.py [--students 1 5 10 20]

Needs the classroom extra and configurable-http-proxy (`npm ci`). Everything runs on the
simulator (chapter 2 does not touch this machine's KSM). Run as root, the hub runs each
student's server as an OS user of their own, as a class would; the users are removed after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import psutil
from tornado.httpclient import AsyncHTTPClient

from ksmbook.classroom.hubclient import Student, hub_env, remove_hub_users, run_test_hub

REPO = Path(__file__).resolve().parent.parent
CHAPTER = REPO / "notebooks" / "02-madvise.ipynb"
MiB = 1024 * 1024


def _memory_below(folder: Path) -> tuple[int, int]:
    """(resident, proportional) bytes of the processes whose working directory is below
    `folder`; PSS shares each library page among the processes that map it."""
    rss = pss = 0
    for p in psutil.process_iter(["pid"]):
        try:
            if Path(p.cwd()).is_relative_to(folder):
                full = p.memory_full_info()
                rss, pss = rss + full.rss, pss + full.pss
        except (psutil.Error, OSError):
            continue
    return rss, pss


def _rss_tree(pid: int, exclude: Path) -> int:
    """Resident bytes of `pid` and its descendants, except students' processes."""
    root = psutil.Process(pid)
    total = 0
    for p in [root, *root.children(recursive=True)]:
        try:
            if not Path(p.cwd()).is_relative_to(exclude):
                total += p.memory_info().rss
        except (psutil.Error, OSError):
            continue
    return total


async def _chapter(student: Student, cells: list[str]) -> float:
    kernel = await student.kernel()
    await kernel.execute("import os; os.chdir('ksmbook-book')")
    t0 = time.monotonic()
    for code in cells:
        r = await kernel.execute(code)
        if r.status != "ok":
            raise RuntimeError(f"{student.name}: a cell of chapter 2 failed: {r.error}")
    return time.monotonic() - t0


def measure(n: int, cells: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ksmbook-capacity-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # as root, every student's server runs as their own OS user
        homes = root / "homes"
        env = {**hub_env(root, REPO), "KSMBOOK_HUB_ADMIN": f"bench{os.getpid()}"}
        try:
            return _measure(n, cells, root, homes, env)
        finally:
            if os.geteuid() == 0:
                remove_hub_users(root)


def _measure(n: int, cells: list[str], root: Path, homes: Path,
             env: dict[str, str]) -> dict[str, float]:
    with run_test_hub(root, REPO, timeout=120, env=env) as (hub, proc):
        async def run() -> dict[str, float]:
            AsyncHTTPClient.configure(None, max_clients=4 * n + 10)
            names = [f"s{os.getpid()}-{i:02d}" for i in range(1, n + 1)]
            students = await asyncio.gather(*(hub.login(s, "pw") for s in names))
            t0 = time.monotonic()
            await asyncio.gather(*(s.start(timeout=600) for s in students))
            ready = time.monotonic() - t0
            times = await asyncio.gather(*(_chapter(s, cells) for s in students))
            per_student, pss = zip(*(_memory_below(homes / s) for s in names),
                                   strict=True)
            hub_rss = _rss_tree(proc.pid, homes)
            return {"ready": ready, "median": statistics.median(times),
                    "worst": max(times), "rss_mean": statistics.mean(per_student) / MiB,
                    "rss_max": max(per_student) / MiB,
                    "pss_mean": statistics.mean(pss) / MiB, "hub": hub_rss / MiB}
        return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, nargs="+", default=[1, 5, 10, 20])
    args = parser.parse_args(argv)
    nb = nbformat.read(CHAPTER, as_version=4)
    cells = [c.source for c in nb.cells if c.cell_type == "code"]
    mem = psutil.virtual_memory().total / 2**30
    print(f"# chapter 2: {len(cells)} code cells; {os.cpu_count()} cores, {mem:.0f} GiB; "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'students':>8} {'ready s':>8} {'median s':>9} {'worst s':>8} "
          f"{'RSS/student':>12} {'max RSS':>8} {'PSS/student':>12} {'hub RSS':>8}   (MiB)")
    for n in args.students:
        r = measure(n, cells)
        print(f"{n:>8} {r['ready']:>8.1f} {r['median']:>9.1f} {r['worst']:>8.1f} "
              f"{r['rss_mean']:>12.0f} {r['rss_max']:>8.0f} {r['pss_mean']:>12.0f} "
              f"{r['hub']:>8.0f}", flush=True)
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
