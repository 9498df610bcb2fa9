"""Differential tests: the `modern` profile against this machine's kernel, compared after every
step (result or errno, then each process's VMAs inside the arena: bounds, permissions, file
offset, path and smaps VmFlags).

The live side is `ksmbook.live`: a worker process per simulated process, mappings at a
far-away arena, writes with process_vm_writev. Hypothesis draws scenarios in the scenario
language (MAP_FIXED maps of private/shared anonymous memory and of files, munmap, mprotect,
madvise with every advice and bad ranges, writes, a fork), so a failure prints a scenario that
`python -m ksmbook run` replays. Hand-written scenarios pin the rules the book leans on.

Budget: KSMBOOK_DIFF_EXAMPLES random scenarios (default 120, about 20 s). They are
derandomized so that CI sees the same ones every run; KSMBOOK_DIFF_RANDOM=1 explores new ones.
When a step differs, the kernel source decides which side is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from helpers import mismatch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ksmbook as kb
import ksmbook.scenario as sc
from ksmbook import live
from ksmbook.constants import MADV
from ksmbook.procfs import map_entry

pytestmark = pytest.mark.live

#: Simulator address of slot 0; inside the default live arena's translation window.
BASE = 0x7FF0_0000_0000
SLOTS = 24
EXAMPLES = int(os.environ.get("KSMBOOK_DIFF_EXAMPLES", "120"))
RANDOM = os.environ.get("KSMBOOK_DIFF_RANDOM", "") not in ("", "0")

#: Advices drawn for madvise. HWPOISON and SOFT_OFFLINE act on physical memory: never sent.
ADVICES = [
    MADV.MADV_NORMAL, MADV.MADV_RANDOM, MADV.MADV_SEQUENTIAL, MADV.MADV_WILLNEED,
    MADV.MADV_DONTNEED, MADV.MADV_FREE, MADV.MADV_REMOVE, MADV.MADV_DONTFORK, MADV.MADV_DOFORK,
    MADV.MADV_MERGEABLE, MADV.MADV_UNMERGEABLE, MADV.MADV_HUGEPAGE, MADV.MADV_NOHUGEPAGE,
    MADV.MADV_DONTDUMP, MADV.MADV_DODUMP, MADV.MADV_WIPEONFORK, MADV.MADV_KEEPONFORK,
    MADV.MADV_COLD, MADV.MADV_PAGEOUT, MADV.MADV_DONTNEED_LOCKED, MADV.MADV_POPULATE_READ,
    MADV.MADV_POPULATE_WRITE, MADV.MADV_COLLAPSE, MADV.MADV_GUARD_INSTALL,
    MADV.MADV_GUARD_REMOVE,
]
#: Values that are not advices on any kernel (EINVAL before anything else).
BAD_ADVICES = [5, 6, 7, 26, 99, 104, 1000]
#: The KSM pair and the range errors get extra weight: they are what the book is about.
KSM_ADVICES = [MADV.MADV_MERGEABLE, MADV.MADV_UNMERGEABLE]

FILES = ("file data.bin 32p\n"          # ext4 (/tmp), opened read-write
         "file shm.bin 32p tmpfs\n"     # tmpfs (/dev/shm), opened read-write
         "file ro.bin 32p ro\n")        # ext4, opened read-only


def _addr(slot: int, extra: int = 0) -> str:
    return f"{BASE + slot * 4096 + extra:#x}"


slot = st.integers(0, SLOTS - 1) | st.integers(4, 12)
pages = st.integers(1, 8)
prot = st.sampled_from(["none", "r", "rw", "rx", "rwx"])
content = st.integers(0, 3)


@st.composite
def lengths(draw: st.DrawFn) -> str:
    """Mostly whole pages; sometimes 0, an unaligned byte count or -1 (wraps)."""
    kind = draw(st.sampled_from(["pages"] * 8 + ["zero", "bytes", "wrap"]))
    if kind == "zero":
        return "0"
    if kind == "bytes":
        return str(draw(st.integers(1, 6 * 4096)))
    if kind == "wrap":
        return "-1"
    return f"{draw(pages)}p"


@st.composite
def addresses(draw: st.DrawFn) -> str:
    """A slot address; rarely an unaligned one."""
    extra = draw(st.sampled_from([0] * 12 + [100]))
    return _addr(draw(slot), extra)


@st.composite
def map_op(draw: st.DrawFn, label: str) -> str:
    backing = draw(st.sampled_from(
        ["anon"] * 6 + ["file=data.bin", "file=shm.bin", "file=ro.bin", "hugetlb"]))
    kind = draw(st.sampled_from(["private"] * 3 + ["shared"]))
    options = f" offset={draw(st.integers(0, 8))}p" if backing.startswith("file") else ""
    options += draw(st.sampled_from([""] * 12 + [" noreserve", " locked", " growsdown"]))
    placement = draw(st.sampled_from(["fixed"] * 5 + ["noreplace"]))
    return (f"map {label} {draw(pages)}p {draw(prot)} {kind} {backing} "
            f"at {_addr(draw(slot))} {placement}{options}")


@st.composite
def madvise_op(draw: st.DrawFn) -> str:
    pool = draw(st.sampled_from(["ksm"] * 3 + ["any"] * 4 + ["bad"]))
    if pool == "ksm":
        advice = draw(st.sampled_from(KSM_ADVICES))
    elif pool == "bad":
        return f"madvise {draw(addresses())} {draw(lengths())} {draw(st.sampled_from(BAD_ADVICES))}"
    else:
        advice = draw(st.sampled_from(ADVICES))
    name = MADV(advice).name.removeprefix("MADV_")  # type: ignore[union-attr]
    return f"madvise {draw(addresses())} {draw(lengths())} {name}"


@st.composite
def scenarios(draw: st.DrawFn) -> str:
    """A scenario of 1-24 operations on p1 (and maybe a forked child c)."""
    lines = ["kernel modern ksm=y", FILES.rstrip("\n")]
    procs = ["p1"]
    forked = exited = False
    n_maps = 0
    for i in range(draw(st.integers(1, 24))):
        who = draw(st.sampled_from(procs)) if not exited else "p1"
        prefix = "" if who == "p1" else f"{who}: "
        kind = draw(st.sampled_from(
            ["map"] * 4 + ["madvise"] * 6 + ["mprotect"] * 2 + ["munmap", "write", "write"]
            + (["fork"] if not forked else (["exit"] if not exited else []))))
        if i == 0:
            kind = "map"
        if kind == "map":
            n_maps += 1
            lines.append(prefix + draw(map_op(f"M{n_maps}")))
        elif kind == "madvise":
            lines.append(prefix + draw(madvise_op()))
        elif kind == "mprotect":
            lines.append(f"{prefix}mprotect {draw(addresses())} {draw(lengths())} {draw(prot)}")
        elif kind == "munmap":
            lines.append(f"{prefix}munmap {draw(addresses())} {draw(lengths())}")
        elif kind == "write":
            values = " ".join(str(draw(content)) for _ in range(draw(st.integers(1, 4))))
            lines.append(f"{prefix}write {_addr(draw(slot))} {values}")
        elif kind == "fork":
            forked = True
            procs.append("c")
            lines.append(f"{prefix}fork c")
        else:
            exited = True
            lines.append("c: exit")
    return "\n".join(lines) + "\n"


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=scenarios())
def test_modern_profile_matches_live_kernel(live_kernel: object, text: str) -> None:
    scenario = sc.parse(text)
    sim = sc.run(scenario)
    real = live.replay(scenario)
    report = mismatch(text, sim, real)
    assert report is None, report


# -- hand-written scenarios: the rules the book leans on, each checked against the kernel ----------

B = f"{BASE:#x}"
NAMED = {
    "split in three and merge back": f"""
        map A 8p rw private anon at {B} fixed
        madvise A+2p 4p MERGEABLE
        madvise A+2p 4p UNMERGEABLE
        madvise A 8p MERGEABLE
        madvise A+1p 1p UNMERGEABLE""",
    "holes: advised where mapped, then ENOMEM": f"""
        map A 2p rw private anon at {B} fixed
        map B 2p rw private anon at A+4p fixed
        madvise A 6p MERGEABLE
        madvise A+2p 2p UNMERGEABLE
        madvise A+7p 1p MERGEABLE
        madvise A 0 MERGEABLE""",
    "different anon_vmas never merge": f"""
        map A 2p rw private anon at {B} fixed
        write A 1
        map B 2p rw private anon at A+4p fixed
        write B 2
        map C 2p rw private anon at A+2p fixed
        madvise A 6p MERGEABLE
        madvise A 6p UNMERGEABLE""",
    "fork: the child's VMAs carry the parent's anon_vma in their chain": f"""
        map A 4p rw private anon at {B} fixed
        write A 1
        fork c
        c: map B 2p rw private anon at A+4p fixed
        c: madvise A 6p MERGEABLE
        map B 2p rw private anon at A+4p fixed
        madvise A 6p MERGEABLE""",
    "VM_ACCOUNT decides re-merging after mprotect": f"""
        map A 4p rw private anon at {B} fixed
        mprotect A+1p 2p r
        mprotect A+1p 2p rw
        map T 4p rw private anon at A+8p fixed
        write T 1 1 1 1
        mprotect T+1p 2p r
        mprotect T+1p 2p rw""",
    "file pieces merge when contiguous in the same open file": f"""
        file data.bin 32p
        map A 2p r private file=data.bin at {B} fixed offset=4p
        map B 2p r private file=data.bin at A+2p fixed offset=6p
        map C 2p r private file=data.bin at A+4p fixed offset=0
        madvise A 6p RANDOM
        madvise A 6p NORMAL""",
    "shared and special mappings: MERGEABLE ignored, no split": f"""
        file shm.bin 8p tmpfs
        map S 4p rw shared anon at {B} fixed
        map F 4p rw shared file=shm.bin at S+8p fixed
        map R 4p r shared file=shm.bin at S+16p fixed
        madvise S+1p 1p MERGEABLE
        madvise F+1p 1p MERGEABLE
        madvise R 4p MERGEABLE""",
    "entry checks in the kernel's order": f"""
        map A 4p rw private anon at {B} fixed
        madvise A+1 0 MERGEABLE
        madvise A -1 MERGEABLE
        madvise A 0xfffffffffffff000 MERGEABLE
        madvise A+1 4p 7
        madvise A 0 MERGEABLE
        madvise A 1 MERGEABLE""",
    "per-VMA errors stop the walk": f"""
        file data.bin 8p
        map A 2p rw private anon at {B} fixed locked
        map B 2p rw private anon at A+2p fixed
        write B 1 2
        madvise B 2p DONTNEED
        madvise A 4p DONTNEED
        map F 2p rw private file=data.bin at A+8p fixed
        madvise A+6p 4p REMOVE
        madvise A 4p WILLNEED""",
    "hugetlb: huge pages are reserved after MAP_FIXED cleared the range": f"""
        map A 1p rw private anon at {B} fixed
        map H 1p rw private hugetlb at A fixed
        map N 2M rw private hugetlb at A fixed noreserve
        madvise N+1p 1p MERGEABLE
        madvise N 2M MERGEABLE""",
    "guard markers give an anonymous VMA its anon_vma": f"""
        map A 5p rwx private anon at {B} fixed
        madvise A 3p GUARD_INSTALL
        mprotect A 1p none
        madvise A 3p GUARD_REMOVE
        mprotect A 5p rw""",
    "munmap and MAP_FIXED cut VMAs": f"""
        map A 8p rw private anon at {B} fixed
        madvise A 8p MERGEABLE
        munmap A+2p 2p
        map B 2p r private anon at A+5p fixed
        munmap A 0
        munmap A+1 1p
        munmap A+20p 4p""",
}


@pytest.mark.parametrize("name", list(NAMED))
def test_named_scenario_matches_live_kernel(live_kernel: object, name: str) -> None:
    text = "kernel modern ksm=y\n" + "\n".join(
        ln.strip() for ln in NAMED[name].strip().splitlines()) + "\n"
    scenario = sc.parse(text)
    report = mismatch(text, sc.run(scenario), live.replay(scenario))
    assert report is None, report


def _result(fn: Callable[..., object], *args: int) -> int:
    """fn(*args), or -errno."""
    try:
        return int(fn(*args) or 0)  # type: ignore[call-overload]
    except OSError as e:
        return -(e.errno or 0)


def test_which_advices_are_valid_matches_live_kernel(live_kernel: object) -> None:
    """madvise(addr, 0, advice) on both kernels for every advice value up to 110 (HWPOISON
    and SOFT_OFFLINE are never sent to the live kernel)."""
    p = kb.Kernel("modern").spawn()
    with live.LiveSession() as s:
        w = s.spawn()
        for advice in range(0, 111):
            if advice not in live.FORBIDDEN_ADVICE:
                assert _result(p.madvise, BASE, 0, advice) == _result(
                    w.madvise, s.arena.base, 0, advice), advice


def test_mprotect_grows_bits_match_live_kernel(live_kernel: object) -> None:
    """PROT_GROWSDOWN / PROT_GROWSUP, which the scenario language cannot spell."""
    gd, gu, page = 0x01000000, 0x02000000, 4096
    p = kb.Kernel("modern").spawn()
    calls = [(BASE, 4 * page, 1 | gd), (BASE, 4 * page, 1 | gu), (BASE + 1, 0, gd | gu),
             (BASE + 12 * page, page, 1 | gd), (BASE + 20 * page, page, 1 | gd),
             (BASE + 16 * page, 8 * page, 3 | gd), (BASE + 2 * page, 8 * page, 1)]
    with live.LiveSession() as s:
        t = live.LiveKernel(s).spawn()
        for addr, flags in ((BASE, 0x32), (BASE + 16 * page, 0x132)):  # the second GROWSDOWN
            assert p.mmap(8 * page, 3, flags, addr=addr) == addr
            assert t.mmap(8 * page, 3, flags, addr=addr) == addr
        for addr, length, prot in calls:
            sim = _result(p.mprotect, addr, length, prot)
            real = _result(t.mprotect, addr, length, prot)
            assert sim == real, (hex(addr), length, hex(prot))
            assert [map_entry(v, p.kernel.profile) for v in p.vmas] == t.map_entries(), \
                (hex(addr), length, hex(prot))
