"""mremap(2) on every profile, and the modern profile against this machine's kernel.

The unit tests follow v2.6.32 mm/mremap.c do_mremap()/move_vma() and 6.18's do_mremap()
(check_mremap_params(), mremap_to(), remap_move(), check_prep_vma(), move_vma()). The live test
replays seeded random programs (KSMBOOK_MREMAP_PROGRAMS, default 200) of mmap, munmap,
mprotect, mremap, write and read, written as scenarios: the scenario Runner runs each on the
simulator and ``live.replay`` on this machine (a worker process, no KSM, no sysfs), comparing
every result and the maps after every statement.
"""

from __future__ import annotations

import os
import random

import pytest
from helpers import ANON, RW, E, P, errno_of, mapfix, mismatch, state

import ksmbook as kb
import ksmbook.scenario as sc
from ksmbook import live
from ksmbook.kernel import Process

MAY, FIX, DONT = kb.MREMAP_MAYMOVE, kb.MREMAP_FIXED, kb.MREMAP_DONTUNMAP
A = 0x10000000


def spawn(profile: str, **kw: int) -> Process:
    return kb.Kernel(profile, **kw).spawn()


def test_grow_in_place_shrink_and_move(profile: str) -> None:
    p = spawn(profile)
    mapfix(p, A, 4 * P)
    p.write_pages(A, [1, 2, 3, 4])
    assert p.mremap(A, 4 * P, 8 * P) == A               # nothing above: grows in place
    assert [(v.start, v.end) for v in p.vmas] == [(A, A + 8 * P)]
    assert p.mremap(A, 8 * P, 2 * P) == A               # shrink: the tail is unmapped
    assert [(v.start, v.end) for v in p.vmas] == [(A, A + 2 * P)]
    mapfix(p, A + 3 * P, P)                             # blocks growth
    assert errno_of(lambda: p.mremap(A, 2 * P, 4 * P)) == E.ENOMEM
    new = p.mremap(A, 2 * P, 4 * P, MAY)
    assert new not in (A, 0)
    assert [p.read_page(new + i * P) for i in range(4)] == [1, 2, 0, 0]
    assert p.mm.vma_at(A) is None
    assert p.mm.vma_at(new) is not None and p.mm.vma_at(new).end == new + 4 * P


def test_fixed_move_takes_the_pages_and_replaces_the_target(profile: str) -> None:
    p = spawn(profile)
    mapfix(p, A, 4 * P)
    p.write_pages(A, [5, 6, 7, 8])
    mapfix(p, A + 0x100000, 2 * P)
    p.write_pages(A + 0x100000, [9])
    got = p.mremap(A + P, 2 * P, 2 * P, MAY | FIX, A + 0x100000)
    assert got == A + 0x100000
    assert [p.read_page(got), p.read_page(got + P)] == [6, 7]
    assert [(v.start, v.end) for v in p.vmas] == [(A, A + P), (A + 3 * P, A + 4 * P),
                                                  (got, got + 2 * P)]
    assert p.read_page(A) == 5 and p.read_page(A + 3 * P) == 8


@pytest.mark.parametrize("call, want", [
    ((A, P, P, 8, 0), E.EINVAL),                   # unknown flag
    ((A + 1, P, P, MAY, 0), E.EINVAL),             # unaligned addr
    ((A, P, 0, MAY, 0), E.EINVAL),                 # new_len 0
    ((A, P, P, FIX, A + 0x100000), E.EINVAL),      # FIXED without MAYMOVE
    ((A, P, P, MAY | FIX, A + 0x100001), E.EINVAL),  # unaligned new_addr
    ((A, 2 * P, 2 * P, MAY | FIX, A + P), E.EINVAL),  # overlap
    ((A + 0x200000, P, 2 * P, MAY, 0), E.EFAULT),  # nothing mapped there
    ((A, 8 * P, 16 * P, MAY, 0), E.EFAULT),        # crosses the end of the VMA
])
def test_errnos(profile: str, call: tuple[int, ...], want: int) -> None:
    p = spawn(profile)
    mapfix(p, A, 4 * P)
    before = state(p)
    assert errno_of(lambda: p.mremap(*call)) == want
    assert state(p) == before


def test_grow_in_place_merges_with_next_only_on_modern(profile: str) -> None:
    p = spawn(profile)
    mapfix(p, A, 4 * P)
    mapfix(p, A + 8 * P, 4 * P)
    assert p.mremap(A, 4 * P, 8 * P) == A
    want = ([(A, A + 12 * P)] if p.kernel.profile.mremap_expand_merges
            else [(A, A + 8 * P), (A + 8 * P, A + 12 * P)])
    assert [(v.start, v.end) for v in p.vmas] == want


def test_move_next_to_a_compatible_vma_merges(profile: str) -> None:
    """copy_vma() -> vma_merge() at the new place (an unfaulted anonymous VMA's pgoff
    follows its address, so it merges)."""
    p = spawn(profile)
    mapfix(p, A, 4 * P)
    mapfix(p, A + 0x10000 - 4 * P, 4 * P)
    assert p.mremap(A, 4 * P, 4 * P, MAY | FIX, A + 0x10000) == A + 0x10000
    assert [(v.start, v.end) for v in p.vmas] == [(A + 0x10000 - 4 * P, A + 0x10000 + 4 * P)]


def test_hugetlb(profile: str) -> None:
    """2.6.32: a hugetlb VMA cannot grow or move (EINVAL). 6.x aligns the lengths to 2 MiB
    and moves it, but never grows it."""
    p = spawn(profile, nr_hugepages=2)
    h = p.mmap(kb.HPAGE_SIZE, RW, ANON | kb.MAP_HUGETLB)
    assert errno_of(lambda: p.mremap(h, kb.HPAGE_SIZE, 2 * kb.HPAGE_SIZE, MAY)) == E.EINVAL
    dest = 0x40000000
    got = errno_of(lambda: p.mremap(h, kb.HPAGE_SIZE, kb.HPAGE_SIZE, MAY | FIX, dest))
    assert got == (0 if p.kernel.profile.mremap_hugetlb else E.EINVAL)


def test_dontunmap_only_on_modern(profile: str) -> None:
    p = spawn(profile)
    mapfix(p, A, 4 * P)
    p.write_pages(A, [1, 2, 3, 4])
    if not p.kernel.profile.mremap_dontunmap:
        assert errno_of(lambda: p.mremap(A, 4 * P, 4 * P, MAY | DONT)) == E.EINVAL
        return
    assert errno_of(lambda: p.mremap(A, 4 * P, 8 * P, MAY | DONT)) == E.EINVAL  # resizes
    got = p.mremap(A, 4 * P, 4 * P, MAY | DONT | FIX, A + 0x100000)
    assert [p.read_page(got + i * P) for i in range(4)] == [1, 2, 3, 4]
    assert [p.read_page(A + i * P) for i in range(4)] == [0, 0, 0, 0]  # kept, empty
    assert p.mm.vma_at(A) is not None and p.mm.vma_at(A).anon_vma is None


def test_modern_moves_several_vmas_with_gaps(profile: str) -> None:
    """6.17 remap_move(): an unresized MREMAP_FIXED move may span VMAs and gaps."""
    p = spawn(profile)
    mapfix(p, A, 2 * P)
    mapfix(p, A + 3 * P, P, prot=kb.PROT_READ)
    got = errno_of(lambda: p.mremap(A, 4 * P, 4 * P, MAY | FIX, A + 0x100000))
    if not p.kernel.profile.mremap_multi_vma:
        assert got == E.EFAULT
        return
    assert got == 0
    assert [(v.start - A, v.end - A) for v in p.vmas] == [(0x100000, 0x100000 + 2 * P),
                                                          (0x100000 + 3 * P, 0x100000 + 4 * P)]


def test_move_breaks_ksm_pages_but_keeps_vm_mergeable(profile: str) -> None:
    """move_vma(): ksm_madvise(vma, old_addr, old_addr + old_len, MADV_UNMERGEABLE, &vm_flags)
    on a local copy of the flags (2.6.32; 6.18 prep_move_vma() with a dummy): KSM pages are
    broken into private copies, VM_MERGEABLE stays. The seed has no such hook."""
    k = kb.Kernel(profile)
    p, q = k.spawn(), k.spawn()
    for proc in (p, q):
        mapfix(proc, A, 2 * P)
        proc.write_pages(A, [7, 7])
        proc.madvise(A, 2 * P, kb.MADV_MERGEABLE)
    if k.profile.mremap_ksm_hook:
        k.sysfs["run"] = 1
        k.ksmd.full_scans(3)
        assert p.mm.ptes[A >> 12].ksm is not None
    got = p.mremap(A, 2 * P, 2 * P, MAY | FIX, A + 0x100000)
    fns = p.last_trace.functions()  # type: ignore[union-attr]
    assert ("ksm_madvise" in fns) == k.profile.mremap_ksm_hook
    assert p.vmas[0].flags & kb.VM_MERGEABLE
    assert [p.read_page(got), p.read_page(got + P)] == [7, 7]
    if k.profile.mremap_ksm_hook:
        assert all(p.mm.ptes[v].ksm is None for v in ((got >> 12), (got >> 12) + 1))
        assert "unmerge_ksm_pages" in fns


def test_pending_signal_interrupts_the_ksm_hook(profile: str) -> None:
    k = kb.Kernel(profile)
    p = k.spawn()
    mapfix(p, A, 2 * P)
    p.write_pages(A, [1])
    p.madvise(A, 2 * P, kb.MADV_MERGEABLE)
    k.inject("signal_pending")
    before = state(p)
    got = errno_of(lambda: p.mremap(A, 2 * P, 2 * P, MAY | FIX, A + 0x100000))
    if not k.profile.mremap_ksm_hook:
        assert got == 0
    else:
        assert got == E.EINTR
        assert state(p) == before


def test_move_vma_map_count_limit(profile: str) -> None:
    """move_vma(): "if (mm->map_count >= sysctl_max_map_count - 3) return -ENOMEM;" (6.x
    refuses MREMAP_FIXED earlier: map_count + 2 >= max_map_count - 3)."""
    p = spawn(profile, max_map_count=4)
    mapfix(p, A, 2 * P)
    before = state(p)
    assert errno_of(lambda: p.mremap(A, 2 * P, 2 * P, MAY | FIX, A + 0x100000)) == E.ENOMEM
    assert state(p) == before


# -- live: the modern profile against this machine's kernel ---------------------------------

#: The programs work in [REGION, REGION + SIZE), inside the default live arena's window.
REGION = 0x7FF0_0000_0000
SIZE = 64 * P
PROTS = ["none", "r", "rw"]
FLAG_CHOICES = [0, MAY, MAY, MAY | FIX, MAY | FIX, MAY | DONT, MAY | DONT | FIX, FIX, DONT, 8]


def _flag_words(flags: int, target: int) -> str:
    words = [w for w, bit in (("maymove", MAY), ("fixed", FIX), ("dontunmap", DONT))
             if flags & bit]
    if flags & (FIX | DONT):
        words.append(f"at {target:#x}")
    if flags & ~(MAY | FIX | DONT):
        words.append(f"flags={flags & ~(MAY | FIX | DONT):#x}")
    return " ".join(words)


def _program(rng: random.Random) -> str:
    """A seeded program in the scenario language: a PROT_NONE region, then 3-9 of mmap
    (MAP_FIXED, private or shared anonymous), munmap, mprotect, mremap (every flag mix, odd
    lengths and addresses), write and read."""
    at = lambda off: f"{REGION + off:#x}"  # noqa: E731
    lines = ["kernel modern ksm=y", f"map R {SIZE} none private anon at {at(0)} fixed",
             f"map M0 {8 * P} rw private anon at {at(4 * P)} fixed"]
    for i in range(1, rng.randint(3, 9) + 1):
        kind = rng.choice(["mmap", "munmap", "mprotect", "mremap", "mremap", "mremap",
                           "write", "read"])
        off = rng.randrange(0, 48) * P
        n = rng.randint(1, 8) * P
        if kind == "mmap":
            lines.append(f"map M{i} {n} {rng.choice(PROTS)} "
                         f"{rng.choice(['private', 'shared'])} anon at {at(off)} fixed")
        elif kind == "munmap":
            lines.append(f"munmap {at(off)} {n}")
        elif kind == "mprotect":
            lines.append(f"mprotect {at(off)} {n} {rng.choice(PROTS)}")
        elif kind == "mremap":
            old = rng.choice([n, n, 0, n + 1, n - 1])
            new = rng.choice([n, n, 2 * n, max(P, n // 2), n + 5])
            target = REGION + rng.choice([rng.randrange(0, 60) * P, off, off + P, 0x100001])
            flags = int(rng.choice(FLAG_CHOICES))
            lines.append(f"mremap {at(off + rng.choice([0, 0, 0, 1]))} {old} {new} "
                         f"{_flag_words(flags, target)}".rstrip())
        elif kind == "write":
            lines.append(f"write {at(off)} {rng.randrange(1, 1 << 20)}")
        else:
            lines.append(f"read {at(off)}")
    return "\n".join(lines) + "\n"


#: Seeded programs per run (KSMBOOK_MREMAP_PROGRAMS, default 200; KSMBOOK_MREMAP_SEED
#: changes the seed to explore new ones).
PROGRAMS = int(os.environ.get("KSMBOOK_MREMAP_PROGRAMS", "200"))
SEED = int(os.environ.get("KSMBOOK_MREMAP_SEED", "20091203"))


@pytest.mark.live
def test_mremap_matches_this_kernel(live_kernel: None) -> None:
    """Each program runs through the scenario Runner on the simulator and, by
    ``live.replay``, on this machine: equal results and maps after every statement."""
    rng = random.Random(SEED)
    for _ in range(PROGRAMS):
        text = _program(rng)
        report = mismatch(text, sc.run(text), live.replay(text))
        assert report is None, report


# -- the scenario statement ---------------------------------------------------------------------


def test_scenario_mremap_statement_round_trips_and_runs() -> None:
    import ksmbook.scenario as sc

    text = ("kernel modern\nmap A 4p rw private anon at 0x10000000 fixed\nwrite A 1 2 3 4\n"
            "mremap A 4p 8p maymove\n"
            "mremap A 8p 8p dontunmap at 0x20000000 fixed maymove\n"
            "read A+3p\nmremap A 4p 2p flags=8\np2: mremap 0x1000 1p 1p\n")
    s = sc.parse(text)
    canon = sc.format_scenario(s)
    assert "mremap A 8p 8p maymove fixed at 0x20000000 dontunmap\n" in canon
    assert sc.parse(canon) == s
    results = [r.outcome() for r in sc.run(sc.parse(canon.replace("p2: mremap 0x1000 1p 1p\n",
                                                                   "")))]
    assert results[3:] == ["0x10000000", "0x20000000", "4", "-1 EINVAL"]


@pytest.mark.parametrize("bad, message", [
    ("mremap A 4p", "expected the new length"),
    ("mremap A 4p 8p maymvoe", "did you mean maymove"),
    ("mremap A 4p 8p at", "expected an address"),
    ("mremap A 4p 8p at 1 at 2", "'at' given twice"),
])
def test_scenario_mremap_errors(bad: str, message: str) -> None:
    import ksmbook.scenario as sc

    with pytest.raises(sc.ScenarioError, match=message):
        sc.parse(bad)


def test_explorer_mremap_control() -> None:
    from ksmbook.widgets import Explorer

    ex = Explorer(profile="modern")
    ex.map_length.value = "4p"
    ex.map_button.click()
    start = ex.kernel.processes[0].vmas[0].start
    ex.range_start.value, ex.range_length.value = "A", "4p"
    ex.mremap_length.value, ex.mremap_flags.value = "8p", "maymove fixed"
    ex.mremap_button.click()
    assert "needs an address" in ex.message
    ex.mremap_to.value = "0x20000000"
    ex.mremap_button.click()
    assert [(v.start, v.end) for v in ex.kernel.processes[0].vmas] == [
        (0x20000000, 0x20000000 + 8 * P)]
    assert "mremap A 4p 8p maymove fixed at 0x20000000" in ex.script_text
    assert start != 0x20000000 and not ex.errors
    ex.mremap_length.value = "-4p"
    ex.mremap_button.click()
    assert "cannot be negative" in ex.message
