"""Tests of ksmbook.live itself: the worker, the arena, its refusals and its clean-up.

The live tests need Linux with KSM and /proc (they skip elsewhere with available()'s reason).
They touch no sysctl and no /sys/kernel/mm/ksm knob.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import WATCHED_PYTEST

import ksmbook as kb
from ksmbook import constants
from ksmbook import live as lv
from ksmbook.pages import page_bytes

P = 4096
RW = constants.PROT.PROT_READ | constants.PROT.PROT_WRITE
ANON = constants.MAP.MAP_PRIVATE | constants.MAP.MAP_ANONYMOUS
M, U = constants.MADV.MADV_MERGEABLE, constants.MADV.MADV_UNMERGEABLE


@pytest.fixture
def session(live_kernel):
    with lv.LiveSession(timeout=10) as s:
        yield s


def _gone(pid: int) -> bool:
    """True when pid no longer exists (or is a zombie nobody will see as a worker)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


# -- pure helpers (no live kernel needed) ------------------------------------------------------

# Lines as the kernel prints them, trailing blanks included.
SMAPS = "".join(line + "\n" for line in [
    "200000010000-200000011000 rw-p 00000000 00:00 0 ",
    "Size:                  4 kB",
    "Rss:                   4 kB",
    "KSM:                   0 kB",
    "THPeligible:           0",
    "VmFlags: rd wr mr mw me ac mg ",
    "7f0000000000-7f0000001000 rw-s 00000000 00:01 1234                       /dev/zero (deleted)",
    "Size:                  4 kB",
    "VmFlags: rd wr sh mr mw me ms ",
])


def test_parse_smaps():
    a, b = lv.parse_smaps(SMAPS)
    assert (a.start, a.end, a.perms, a.path, a.vmflags) == (
        0x200000010000, 0x200000011000, "rw-p", "", ("rd", "wr", "mr", "mw", "me", "ac", "mg"))
    assert a.counters == {"Size": 4, "Rss": 4, "KSM": 0, "THPeligible": 0}
    assert b.path == "/dev/zero (deleted)" and b.inode == 1234 and "sh" in b.vmflags
    assert lv.parse_smaps(SMAPS, 0x200000011000, 0x7f0000000001) == [b]


def test_arena_translation_and_refusal():
    arena = lv.Arena()
    top = lv.SIM_MMAP_TOP
    assert arena.to_sim(arena.to_live(top)) == top
    assert (arena.to_live(top) - top) % (1 << 30) == 0  # alignment survives translation
    with pytest.raises(lv.LiveRefused, match="outside the live arena"):
        arena.to_live(0x10000)
    low = lv.Arena.for_sim_range(0x10000, 0x20000)
    assert low.base <= low.to_live(0x10000) < low.end
    with pytest.raises(lv.LiveRefused):
        lv.Arena.for_sim_range(0x10000, top)


_MMAPS = """\
import ctypes, json, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                      ctypes.c_long]
out = []
for addr, length, flags in json.loads(sys.argv[1]):
    with open("/proc/self/maps") as f:
        before = f.read()
    got = libc.mmap(addr, length, 3, flags, -1, 0)
    out.append([before, -ctypes.get_errno() if got == ctypes.c_void_p(-1).value else got])
print(json.dumps(out))
"""


def _kernel_mmaps(calls: list[tuple[int, int, int]], *launch: str) -> list[tuple[str, int]]:
    """This kernel's answer to each mmap(addr, length, PROT_READ|PROT_WRITE, flags) of
    `calls`, made in turn by a throwaway process (run under `launch`), with its
    /proc/self/maps just before the call."""
    out = subprocess.run([*launch, sys.executable, "-c", _MMAPS, json.dumps(calls)], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return [(before, got) for before, got in json.loads(out)]


@pytest.mark.live
def test_hint_placement_is_the_kernels(live_kernel):
    """The kernel's own answer to a hint near MAP_GROWSDOWN VMAs (a throwaway process, no
    arena: nothing else is placed) is the simulator's: refused within stack_guard_gap below
    the stack, taken just below it, and taken when only another VMA's gap covers it; a hint
    rounds down to a page (round_hint_to_min())."""
    noreplace, gd = constants.MAP.MAP_FIXED_NOREPLACE, constants.MAP.MAP_GROWSDOWN
    x, y = 0x3000_0000_0000, 0x3100_0000_0000
    gap = 256 * P
    calls = [(x, 4 * P, ANON | noreplace | gd), (y + 8 * P, P, ANON | noreplace),
             (y + 16 * P, P, ANON | noreplace | gd),
             (x - P, P, ANON), (x - gap - P, P, ANON), (y, P, ANON), (y - 2 * P + 1, P, ANON),
             (1, P, ANON)]
    kernel = [got for _, got in _kernel_mmaps(calls)]
    sim = kb.Kernel("modern").spawn()
    ours = [sim.mmap(n, constants.PROT.PROT_READ | constants.PROT.PROT_WRITE, f, addr=a)
            for a, n, f in calls]
    assert kernel[:3] == ours[:3] == [x, y + 8 * P, y + 16 * P]
    assert kernel[3] != x - P and ours[3] != x - P
    assert kernel[4:7] == ours[4:7] == [x - gap - P, y, y - 2 * P]  # a hint rounds down
    assert constants.MMAP_MIN_ADDR not in (kernel[7], ours[7])  # below a page: no hint


@pytest.mark.live
def test_live_placement_is_the_simulators(session):
    """``LiveTask`` places a mapping as the simulator does (one
    ``ksmbook.mm.arch_get_unmapped_area_topdown()``), stack guard gap included."""
    rw = constants.PROT.PROT_READ | constants.PROT.PROT_WRITE
    stack = lv.SIM_MMAP_TOP - 4 * P
    calls = [(4 * P, ANON | constants.MAP.MAP_FIXED | constants.MAP.MAP_GROWSDOWN, stack),
             (P, ANON, 0), (P, ANON, stack - P), (P, ANON, stack - 300 * P), (2 * P, ANON, 0),
             (P, ANON, stack - 400 * P + 1)]
    live, sim = lv.LiveKernel(session).spawn(), kb.Kernel("modern").spawn()
    got = [live.mmap(n, rw, f, addr=a) for n, f, a in calls]
    assert got == [sim.mmap(n, rw, f, addr=a) for n, f, a in calls]
    assert got == [stack, stack - 257 * P, stack - 258 * P, stack - 300 * P, stack - 260 * P,
                   stack - 400 * P]


def _replay_layout(maps: str) -> kb.Process:
    """A modern simulated task holding the VMAs of a /proc/PID/maps text ([stack] grows down)."""
    task = kb.Kernel("modern").spawn()
    fixed = ANON | constants.MAP.MAP_FIXED
    for line in maps.splitlines():
        span, *rest = line.split()
        start, end = (int(x, 16) for x in span.split("-"))
        if end <= constants.TASK_SIZE:
            gd = constants.MAP.MAP_GROWSDOWN if rest[-1] == "[stack]" else 0
            task.mmap(end - start, constants.PROT.PROT_NONE, fixed | gd, addr=start)
    return task


@pytest.mark.live
def test_thp_aligned_placement_is_the_kernels(live_kernel):
    """This kernel (without address randomization, so its mmap_base is the simulator's
    MMAP_BASE) places each mapping where the modern simulator, given the same VMAs, does:
    a private anonymous mapping without a hint whose length is a multiple of 2 MiB on a
    2 MiB boundary (thp_get_unmapped_area_vmflags()), not 2 MiB + 4 KiB, not with a hint
    (even one whose padded length does not fit), not MAP_SHARED (shmem_enabled never)."""
    with open("/sys/kernel/mm/transparent_hugepage/shmem_enabled") as f:
        shmem_never = "[never]" in f.read()
    mib = 1 << 20
    shared = constants.MAP.MAP_SHARED | constants.MAP.MAP_ANONYMOUS
    hint = 0x3000_0000_0000 + P
    calls = [(0, 2 * mib, ANON), (0, 4 * mib, ANON), (0, 2 * mib + P, ANON), (0, 6 * mib, ANON),
             (hint, 2 * mib, ANON), (hint + 4 * mib, mib, ANON | constants.MAP.MAP_FIXED),
             (hint + 2 * mib, 2 * mib, ANON), (0, 4 * mib, ANON)]
    if shmem_never:
        calls += [(0, 2 * mib, shared), (0, 4 * mib, shared), (0, 2 * mib + P, shared),
                  (0, 6 * mib, shared)]
    rw = constants.PROT.PROT_READ | constants.PROT.PROT_WRITE
    kernel, ours = [], []
    for (addr, length, flags), (before, got) in zip(calls, _kernel_mmaps(calls, "setarch", "-R"),
                                                    strict=True):
        kernel.append(got)
        ours.append(_replay_layout(before).mmap(length, rw, flags, addr=addr))
    assert kernel == ours
    huge = constants.HPAGE_SIZE
    assert [a % huge == 0 for a in kernel[:4]] == [True, True, False, True]
    assert kernel[4] == hint and kernel[6] == hint + 2 * mib  # a hint is taken as it is
    assert kernel[7] % huge == 0


@pytest.mark.live
def test_live_thp_aligned_placement_is_the_simulators(session):
    """``LiveTask`` (the arena, whose offset is a multiple of 1 GiB) places a PMD-multiple
    private anonymous mapping and an mremap move of one as ``MM.get_unmapped_area`` does."""
    rw = constants.PROT.PROT_READ | constants.PROT.PROT_WRITE
    mib = 1 << 20
    shared = constants.MAP.MAP_SHARED | constants.MAP.MAP_ANONYMOUS
    calls = [(2 * mib + P, ANON), (4 * mib, ANON), (P, ANON), (2 * mib, ANON), (2 * mib, shared),
             (6 * mib, ANON)]
    live, sim = lv.LiveKernel(session).spawn(), kb.Kernel("modern").spawn()
    got = [live.mmap(n, rw, f) for n, f in calls]
    assert got == [sim.mmap(n, rw, f) for n, f in calls]
    assert [a % constants.HPAGE_SIZE == 0 for a in got] == [False, True, False, True, True, True]
    grow = constants.MREMAP.MREMAP_MAYMOVE
    moved = live.mremap(got[2], P, 4 * mib, grow)
    assert moved == sim.mremap(got[2], P, 4 * mib, grow) and moved % constants.HPAGE_SIZE == 0


def test_private_constants_agree_with_ksmbook_constants():
    w = lv.worker
    assert w._PAGE == constants.PAGE_SIZE
    assert w._MAP_PRIVATE == constants.MAP.MAP_PRIVATE
    assert w._MAP_FIXED == constants.MAP.MAP_FIXED
    assert w._MAP_ANONYMOUS == constants.MAP.MAP_ANONYMOUS
    assert w._MAP_NORESERVE == constants.MAP.MAP_NORESERVE
    assert w._MAP_FIXED_NOREPLACE == constants.MAP.MAP_FIXED_NOREPLACE
    assert (w._MREMAP_FIXED, w._MREMAP_DONTUNMAP) == (
        constants.MREMAP.MREMAP_FIXED, constants.MREMAP.MREMAP_DONTUNMAP)
    assert lv.FORBIDDEN_ADVICE == {constants.MADV.MADV_HWPOISON, constants.MADV.MADV_SOFT_OFFLINE}


def test_page_bytes_is_the_one_rule():
    assert page_bytes(0) == bytes(P)
    assert page_bytes(7) == ((7).to_bytes(8, "little") + b"ksmbook.") * 256
    assert page_bytes(2**64 - 1)[:16] == b"\xff" * 8 + b"ksmbook."
    pages = {page_bytes(c) for c in (1, 2, 3, 255, 256, 2**32, 2**64 - 1)}
    assert len(pages) == 7 and all(len(p) == P and any(p) for p in pages)
    for bad, error in ((-1, ValueError), (2**64, ValueError), ("1", TypeError)):
        with pytest.raises(error):
            page_bytes(bad)


# -- live --------------------------------------------------------------------------------------

def test_available_says_why():
    ok, why = lv.available()
    assert isinstance(ok, bool) and why


@pytest.mark.live
def test_map_madvise_layout(session):
    w = session.spawn()
    a = session.arena.base + 0x10000
    assert w.mmap(a, 4 * P, RW, ANON) == a
    assert [v.vmflags for v in w.layout()] == [("rd", "wr", "mr", "mw", "me", "ac")]
    assert w.madvise(a + P, 2 * P, M) == 0
    got = [(v.start - a, v.end - a, " ".join(v.vmflags)) for v in w.layout()]
    assert got == [(0, P, "rd wr mr mw me ac"), (P, 3 * P, "rd wr mr mw me ac mg"),
                   (3 * P, 4 * P, "rd wr mr mw me ac")]
    assert w.madvise(a + P, 2 * P, U) == 0
    assert [(v.start, v.end) for v in w.layout()] == [(a, a + 4 * P)]
    # a hole: advice applied to the mapped part, then ENOMEM
    w.munmap(a + 3 * P, P)
    with pytest.raises(OSError) as e:
        w.madvise(a, 4 * P, M)
    assert e.value.errno == errno.ENOMEM
    assert [v.vmflags for v in w.layout()] == [("rd", "wr", "mr", "mw", "me", "ac", "mg")]
    # entry checks reach the kernel even with a wrapping length (no VMA is examined)
    with pytest.raises(OSError) as e:
        w.madvise(a, 2**64 - 1, M)
    assert e.value.errno == errno.EINVAL


@pytest.mark.live
def test_fork_child_layout(session):
    w = session.spawn()
    a = session.arena.base + 0x10000
    w.mmap(a, 8 * P, RW, ANON)
    w.fill(a, [1] * 8)
    w.madvise(a, 2 * P, M)
    w.madvise(a + 4 * P, 2 * P, constants.MADV.MADV_DONTFORK)
    c = w.fork()
    with open(f"/proc/{c.pid}/status") as f:
        assert f"PPid:\t{w.pid}\n" in f.read()  # a real fork() child of the worker
    parent = w.layout()
    expect = [v for v in parent if "dc" not in v.vmflags]
    assert len(expect) == len(parent) - 1
    assert c.layout() == expect
    assert "mg" in c.layout()[0].vmflags
    assert c.read(a, 16) == page_bytes(1)[:16]
    c.exit()
    assert w.read(a, 16) == page_bytes(1)[:16]  # the parent is unaffected by the child's exit


@pytest.mark.live
def test_write_efault_keeps_worker_alive(session):
    w = session.spawn()
    a = session.arena.base + 0x10000
    w.mmap(a, 2 * P, RW, ANON)
    w.write(a, b"hello")
    w.mprotect(a, P, constants.PROT.PROT_READ)
    with pytest.raises(OSError) as e:
        w.write(a, b"x")
    assert e.value.errno == errno.EFAULT
    with pytest.raises(OSError) as e:
        w.write(a + 2 * P, b"x")  # unmapped
    assert e.value.errno == errno.EFAULT
    w.mprotect(a + P, P, constants.PROT.PROT_NONE)
    with pytest.raises(OSError) as e:
        w.read(a + P, 1)
    assert e.value.errno == errno.EFAULT
    assert w.read(a, 5) == b"hello" and w.alive


@pytest.mark.live
def test_refuses_outside_arena(session):
    w = session.spawn()
    lo, hi = session.arena.base, session.arena.end
    w.mmap(lo, P, RW, ANON)
    for call in (lambda: w.madvise(lo - P, P, M), lambda: w.munmap(hi, P),
                 lambda: w.mprotect(lo, hi - lo + P, RW), lambda: w.mmap(hi - P, 2 * P, RW, ANON),
                 lambda: w.madvise(lo, 2**46, M),  # huge but not wrapping: would reach Python
                 lambda: w.write(hi - 2, b"abcd"), lambda: w.prctl(constants.MADV.MADV_DONTNEED)):
        with pytest.raises(lv.LiveRefused):
            call()
    assert [v.start for v in w.layout()] == [lo] and w.alive


@pytest.mark.live
def test_refuses_hwpoison(session):
    w = session.spawn()
    a = session.arena.base
    w.mmap(a, P, RW, ANON)
    for advice in (100, 101):
        with pytest.raises(lv.LiveRefused, match="HWPOISON"):
            w.madvise(a, P, advice)
        with pytest.raises(lv.LiveRefused, match="HWPOISON"):  # the worker refuses too
            w._call("madvise", addr=a, length=P, advice=advice)
    assert w.alive


@pytest.mark.live
def test_python_allocations_stay_out_of_the_arena(session):
    w = session.spawn()
    w._call("allocate", nbytes=64 << 20)
    assert w.layout() == []
    lo, hi = session.arena.base, session.arena.end
    near = [v for v in w.layout(lo - 2 * P, hi + 2 * P)]
    # only the two guard pages, each one page away from the arena
    assert [(v.start, v.end, v.perms) for v in near] == [
        (lo - 2 * P, lo - P, "---p"), (hi + P, hi + 2 * P, "---p")]


@pytest.mark.live
def test_arena_in_use_refuses_to_start(session):
    with open("/proc/self/maps") as f:
        exe = int(f.read().split("-", 1)[0], 16)  # a PIE python sits at 0x55..-0x56..
    if not 0x550000000000 <= exe < 0x570000000000:
        pytest.skip("python is not a PIE mapped at 0x55..-0x56..")
    busy = lv.Arena(base=0x550000000000, size=0x20000000000, sim_origin=0x550000000000)
    with lv.LiveSession(busy) as s, pytest.raises(lv.LiveError, match="is not free"):
        s.spawn()


@pytest.mark.live
def test_prctl_memory_merge(session):
    w = session.spawn()
    a = session.arena.base
    assert w.prctl(68) == 0
    assert w.prctl(67, 1) == 0 and w.prctl(68) == 1
    w.mmap(a, P, RW, ANON)
    assert "mg" in w.layout()[0].vmflags
    with pytest.raises(OSError) as e:
        w.prctl(67, 1, 1)
    assert e.value.errno == errno.EINVAL


@pytest.mark.live
def test_cleanup_leaves_no_workers(live_kernel):
    with pytest.raises(RuntimeError, match="boom"):
        with lv.LiveSession() as s:
            w = s.spawn()
            c = w.fork()
            gc = c.fork()
            pids = s.pids()
            assert len(pids) == 3 and all(not _gone(p) for p in pids)
            assert gc.alive
            raise RuntimeError("boom")
    deadline = time.monotonic() + 5
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(_gone(p) for p in pids)


@pytest.mark.live
def test_dead_or_stuck_worker_gives_clear_errors(live_kernel):
    with lv.LiveSession(timeout=0.5) as s:
        w = s.spawn()
        os.kill(w.pid, signal.SIGKILL)
        with pytest.raises(lv.WorkerDied, match="SIGKILL"):
            w.madvise(s.arena.base, P, M)
        w2 = s.spawn()
        os.kill(w2.pid, signal.SIGSTOP)
        t = time.monotonic()
        with pytest.raises(lv.WorkerTimeout):
            w2.mmap(s.arena.base, P, RW, ANON)
        assert time.monotonic() - t < 5
        assert not w2.alive


@pytest.mark.live
def test_replay_scenario(session):
    pytest.importorskip("ksmbook.scenario")
    text = """\
kernel modern ksm=y
map A 4p rw private anon
madvise A+1p 2p MERGEABLE
write A 1 2
fork child
child: madvise A 4p UNMERGEABLE
munmap A+3p 1p
madvise A 4p MERGEABLE
child: exit
"""
    res = lv.replay(text, session=session)
    assert [r.result for r in res[1:]] == [
        lv.SIM_MMAP_TOP - 4 * P, 0, 0, 2, 0, 0, -errno.ENOMEM, 0]
    after_fork = res[4].maps
    assert set(after_fork) == {"p1", "child"}
    assert [e.vmflags[-1] for e in after_fork["child"]] == ["ac", "mg", "ac"]
    # The child's three pieces do not merge back. Pages A and A+1p were first written after the
    # split, when their VMAs' flags differed, so each piece got an anon_vma of its own
    # (anon_vma_prepare() reuses a neighbour's only if the flags match); in the child, fork()
    # gave every copied VMA a new anon_vma anyway, and the untouched third piece cannot join one
    # whose anon_vma chain is not singular.
    assert [len(r.maps.get("child", [])) for r in res[5:]] == [3, 3, 3, 0]
    # Same reason in the parent: both pieces are mergeable again, yet they stay two VMAs.
    assert [(e.end - e.start, e.vmflags[-1]) for e in res[-1].maps["p1"]] == [
        (P, "mg"), (2 * P, "mg")]
    assert session.workers == [session._workers[0]]  # the child has exited


@pytest.mark.live
def test_fill_writes_reads_and_leaves_pages(session):
    """An int is its page_bytes, "read" read-faults the page (it maps the shared zero page,
    which smaps does not count: vm_normal_page() gives no page for it), None leaves the page
    absent; a bad content is refused before the write."""
    w = session.spawn()
    a = session.arena.base + 0x10000
    w.mmap(a, 4 * P, RW, ANON)
    assert w.fill(a, [5, 0, "read", None]) == 4
    assert w.read(a, 2 * P) == page_bytes(5) + page_bytes(0)
    (vma,) = w.layout()
    assert vma.counters["Rss"] == 8 and vma.counters["Anonymous"] == 8
    assert w.read(a + 2 * P, P) == bytes(P)
    with pytest.raises(lv.LiveRefused, match="page content"):
        w.fill(a, [[1]])
    with pytest.raises(OSError) as e:
        w.fill(a + 3 * P, [1, 2])  # the second page is unmapped
    assert e.value.errno == errno.EFAULT


@pytest.mark.live
def test_drain_and_time_writes(session):
    w = session.spawn()
    a = session.arena.base + 0x10000
    w.mmap(a, 2 * P, RW, ANON)
    w.fill(a, [1, None])
    assert w.drain(a) == 0  # the page is on node 0 already
    with pytest.raises(OSError) as e:
        w.drain(a + P)  # not present: move_pages() reports -ENOENT for the page
    assert e.value.errno == errno.ENOENT
    ns = w.time_writes([a, a + P])
    assert len(ns) == 2 and all(t > 0 for t in ns)
    assert w.read(a, 1) == b"\x5a" and w.read(a + P, 1) == b"\x5a"


def _watched(args: list[str], prefix: str, tmp_path) -> tuple[int, list[str]]:
    """Run pytest in a subprocess under the audit hook of helpers.WATCHED_PYTEST."""
    log = tmp_path / "touched.log"
    env = dict(os.environ, WATCH_PREFIX=prefix, WATCH_LOG=str(log))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", WATCHED_PYTEST, *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=240)
    touched = log.read_text().splitlines() if log.exists() else []
    return done.returncode, touched


@pytest.mark.slow
def test_not_live_never_touches_ksm_sysfs_or_starts_a_worker(tmp_path):
    """`-m "not live"` collects every test module and runs the tests that lie next to the live
    ones, and nothing opens, lists or stats /sys/kernel/mm/ksm or starts a live worker."""
    here = "tests/test_live.py::test_not_live_never_touches_ksm_sysfs_or_starts_a_worker"
    rc, touched = _watched(["-q", "-p", "no:cacheprovider", "-m", "not live", "--collect-only",
                            "tests"], "/sys/kernel/mm/ksm", tmp_path)
    assert rc == 0 and touched == []
    rc, touched = _watched(
        ["-q", "-p", "no:cacheprovider", "-m", "not live", "--deselect", here,
         "tests/test_live.py", "tests/test_live_ksmd.py", "tests/test_ksmd_live.py",
         "tests/test_sidechannel.py", "tests/test_differential.py",
         "tests/test_widgets.py::test_live_button_explains_a_refusal"],
        "/sys/kernel/mm/ksm", tmp_path)
    assert rc == 0 and touched == []


@pytest.mark.slow
def test_the_watch_sees_what_it_looks_for(tmp_path):
    """The audit hook of the test above does catch a touch and a worker (a control run: the
    watched prefix is a scratch directory, and the "worker" is a Python that does nothing)."""
    (tmp_path / "knob").write_text("0")
    probe = tmp_path / "test_probe.py"
    probe.write_text("import subprocess, sys\n"
                     "def test_touch():\n"
                     f"    open({str(tmp_path / 'knob')!r}).read()\n"
                     "    subprocess.run([sys.executable, '-c', 'pass', '--worker'])\n")
    rc, touched = _watched(["-q", "-p", "no:cacheprovider", str(probe)], str(tmp_path / "kn"),
                           tmp_path)
    assert rc == 0 and len(touched) == 2
    assert touched[0] == f"open {tmp_path / 'knob'}" and touched[1].startswith("worker ")


@pytest.mark.live
def test_replay_runs_the_runner_statements(session):
    """The live backend runs the scenario Runner's own code: read, prctl and spawn work, a
    statement the live side must not run (ksmd, sysfs, devices) is refused."""
    text = """\
kernel modern ksm=y
spawn q
q: prctl PR_SET_MEMORY_MERGE 1
q: map A 2p rw private anon
q: write A 7 0
q: read A
q: read A+1p
q: prctl PR_GET_MEMORY_MERGE
"""
    res = lv.replay(text, session=session)
    assert [r.result for r in res] == [0, 1, 0, lv.SIM_MMAP_TOP - 2 * P, 0, 7, 0, 1]
    assert res[3].maps["q"][0].vmflags[-1] == "mg"  # MMF_VM_MERGE_ANY: every new VMA
    for line in ("ksmd batch", "sysfs run=1", "device d0 remap_pfn_range", "inject split_vma",
                 "reclaim"):
        with pytest.raises(lv.LiveRefused):
            lv.replay("kernel modern ksm=y\n" + line + "\n", session=session)
