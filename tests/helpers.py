"""Helpers the test modules share (imported as ``from helpers import ...``): page and protection
shorthands, MAP_FIXED mappings, layouts, errnos and the state a failed call must leave alone;
the folder a test's class hub runs in."""

from __future__ import annotations

import contextlib
import errno as E  # E.EINVAL, E.ENOMEM, ... for the tests
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import ksmbook as kb
from ksmbook.kernel import Process
from ksmbook.procfs import format_maps
from ksmbook.scenario import StepResult

__all__ = ["A", "ANON", "E", "P", "HUB_PROXY", "RW", "VALID", "bounds", "errno_of", "examples",
           "hub_root", "layout", "mapfix", "mismatch", "state"]

P = kb.PAGE_SIZE
RW = kb.PROT_READ | kb.PROT_WRITE
ANON = kb.MAP_PRIVATE | kb.MAP_ANONYMOUS
#: A low, free address for MAP_FIXED mappings (far from the top-down mmap area).
A = 0x10000000
#: Advice values each kernel accepts besides MERGEABLE/UNMERGEABLE (docs/kernel-semantics.md
#: §1 and §4), written out here rather than taken from the profile, so that a wrong profile fails.
VALID = {"seed": frozenset({0, 1, 2, 3, 4, 9, 10, 11}),
         "2.6.32": frozenset({0, 1, 2, 3, 4, 9, 10, 11}),
         "modern": frozenset({0, 1, 2, 3, 4, 8, 9, 10, 11, *range(14, 26), 102, 103})}


def examples(n: int) -> int:
    """How many examples a property test draws: `n`, or a quarter of it (at least 10) where
    KSMBOOK_FAST_EXAMPLES is set (make test-fast)."""
    return max(10, n // 4) if os.environ.get("KSMBOOK_FAST_EXAMPLES") else n


def mapfix(p: Process, start: int, length: int, prot: int = RW, flags: int = ANON,
           file: kb.File | None = None, offset: int = 0) -> int:
    """mmap(start, length, prot, flags | MAP_FIXED); returns the address."""
    got = p.mmap(length, prot, flags | kb.MAP_FIXED, addr=start, file=file, offset=offset)
    assert got == start
    return got


def layout(p: Process) -> list[tuple[int, int, kb.VM]]:
    """The VMAs as (start, end, flags)."""
    return [(v.start, v.end, v.flags) for v in p.vmas]


def bounds(p: Process) -> list[tuple[int, int]]:
    """The VMAs as (start, end)."""
    return [(v.start, v.end) for v in p.vmas]


def errno_of(call: Callable[[], object]) -> int:
    """0 if the call returns, else the errno of the OSError it raises."""
    try:
        call()
    except OSError as e:
        assert e.errno is not None
        return e.errno
    return 0


def state(p: Process) -> tuple:
    """Everything a failed call must leave unchanged: VMAs (with file, pgoff, anon_vma),
    the mm flags and the page table."""
    return (tuple((v.start, v.end, v.flags, v.pgoff, v.file, v.anon_vma) for v in p.vmas),
            p.mm_flags, tuple(p.mm.ptes.items()))


#: The class hub's proxy, as npm installs it.
HUB_PROXY = Path(__file__).resolve().parent.parent / "node_modules" / ".bin" / \
    "configurable-http-proxy"


@contextlib.contextmanager
def hub_root(prefix: str) -> Iterator[Path]:
    """A new folder for a class hub's state, homes and exchange (run_test_hub), reachable by
    the students whose homes are below it; on exit the OS users the hub made for those homes
    go (as root), then the folder, unless KSMBOOK_KEEP_HUB_ROOT is set. Skips without the
    hub's proxy (npm ci)."""
    from ksmbook.classroom.hubclient import remove_hub_users

    if not HUB_PROXY.exists():
        pytest.skip("configurable-http-proxy is not installed (npm ci)")
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        if os.geteuid() == 0:
            remove_hub_users(path)
        if not os.environ.get("KSMBOOK_KEEP_HUB_ROOT"):
            subprocess.run(["rm", "-rf", str(path)], check=False)


#: The start of a child program that makes raw system calls: sc(nr, *args) returns the result
#: or -errno, and the program fills `out`, which is printed as JSON at its end.
_RAW_SYSCALLS = r"""
import ctypes, json, os, sys, tempfile
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def sc(n, *a):
    r = libc.syscall(n, *[ctypes.c_ulong(x % 2**64) for x in a])
    return -ctypes.get_errno() if r == -1 else r
out = {}
"""


def raw_syscalls(body: str) -> dict[str, Any]:
    """`out` of a child process (this machine's kernel) that runs `body` after the prelude
    above, for comparing a live answer with the simulator's."""
    program = _RAW_SYSCALLS + body + "\nprint(json.dumps(out))\n"
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, check=True)
    return dict(json.loads(done.stdout))


#: A Python program that runs pytest with the given arguments under an audit hook
#: (sys.addaudithook) recording every open, listdir or stat of a path under $WATCH_PREFIX and
#: every process started with "--worker" among its arguments (a live worker), one per line in
#: $WATCH_LOG.
WATCHED_PYTEST = '''
import os, sys
prefix, log = os.environ["WATCH_PREFIX"], os.environ["WATCH_LOG"]

def hook(event, args):
    hit = None
    if event in ("open", "os.listdir", "os.scandir", "os.stat") and args and \\
            str(args[0]).startswith(prefix):
        hit = f"{event} {args[0]}"
    elif event == "subprocess.Popen" and "--worker" in [str(a) for a in (args[1] or ())]:
        hit = f"worker {args[1]}"
    if hit:
        with open(log, "a") as f:
            f.write(hit + "\\n")

sys.addaudithook(hook)
import pytest
sys.exit(pytest.main(sys.argv[1:]))
'''


def _rows(entries: list) -> list[tuple]:
    return [(e.start, e.end, e.perms, e.offset, e.path, e.vmflags) for e in entries]


def mismatch(text: str, sim: list[StepResult], live: list[StepResult]) -> str | None:
    """The first step where the simulator's and the live kernel's results, maps, ksmd
    counters or ksm_stat differ, as a report (the scenario, both outcomes, both maps, what
    differs of ksmd's, the simulator's trace); None if none."""
    for step, (s, lv) in enumerate(zip(sim, live, strict=True), 1):
        same_maps = s.maps.keys() == lv.maps.keys() and all(
            _rows(s.maps[k]) == _rows(lv.maps[k]) for k in s.maps)
        ksmd = [(what, a, b) for what, a, b in (("counters", s.counters, lv.counters),
                                                ("ksm_stat", s.ksm_stat, lv.ksm_stat)) if a != b]
        if s.result == lv.result and same_maps and not ksmd:
            continue
        out = [f"step {step}: {s.op}",
               f"  simulator: {s.outcome()}   live: {lv.outcome()}"]
        for what, a, b in ksmd:
            out += [f"  {what} simulator: {a}", f"  {what} live:      {b}"]
        for name in sorted(set(s.maps) | set(lv.maps)):
            out.append(f"  [{name}] simulator:")
            out += ["    " + ln for ln in format_maps(s.maps.get(name, [])).splitlines()]
            out.append(f"  [{name}] live:")
            out += ["    " + ln for ln in format_maps(lv.maps.get(name, [])).splitlines()]
        if s.trace is not None:
            out.append("  simulator trace:")
            out += ["    " + str(step_) for step_ in s.trace.steps]
        return "scenario:\n" + text + "\n".join(out)
    return None
