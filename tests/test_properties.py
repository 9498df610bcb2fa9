"""Property tests (hypothesis) of the address space after any sequence of operations on any
profile, of madvise against a page-by-page model, and of the scenario round trip.

What holds, and why:

* Always, in every process: VMAs sorted, non-overlapping, page aligned, non-empty, below
  TASK_SIZE; map_count == len(vmas) <= max_map_count + 1 (mmap_region() links a new VMA when
  map_count == max_map_count; only splits check ">=").
* A call refused by an entry check changes nothing (madvise's EINVALs, munmap's EINVAL,
  mprotect's checks before the walk, mmap's errors other than ENOMEM, a fork that fails).
* No two adjacent VMAs that vma_merge() would join -- but only where every change went
  through an operation that tries to merge. It does not hold in general: dup_mmap() copies
  VMA by VMA (a child gets side-by-side twins once VM_LOCKED is cleared), and a madvise or
  mprotect whose second split is refused keeps its first split (no rollback). So it is checked
  in single-process runs below the map_count limit without injected failures. Pieces that
  differ only in their anon_vma are not joinable, and do occur (a gap mapped between two
  written VMAs merges with one side only).
* madvise's effect on flags is page-by-page: splitting and merging are invisible at page
  granularity, holes give ENOMEM after every mapped page was advised, and the mm is
  registered iff some page became VM_MERGEABLE.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable

from helpers import ANON, VALID, A, P, examples, state
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import ksmbook as kb
from ksmbook import scenario as sc
from ksmbook.constants import TASK_SIZE
from ksmbook.kernel import Process

U64 = 2**64
SLOTS = 12
FAST = settings(max_examples=examples(150), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ADVICES = [int(a) for a in kb.MADV if a not in (kb.MADV_HWPOISON, kb.MADV_SOFT_OFFLINE)]
FLAG_ADVICES = [kb.MADV_NORMAL, kb.MADV_RANDOM, kb.MADV_SEQUENTIAL, kb.MADV_DONTFORK,
                kb.MADV_DOFORK, kb.MADV_MERGEABLE, kb.MADV_UNMERGEABLE]

slot = st.integers(0, SLOTS - 1)
npages = st.integers(1, 6)
length = st.one_of(npages.map(lambda n: n * P), st.sampled_from([0, 1, P + 1, U64 - 1]),
                   st.integers(1, 8 * P))
address = st.one_of(slot.map(lambda s: A + s * P), slot.map(lambda s: A + s * P + 8))
prot = st.sampled_from([0, 1, 3, 5, 7])


# -- the invariants ------------------------------------------------------------------------------

def check_structure(p: Process) -> None:
    vmas = p.vmas
    assert p.mm.map_count == len(vmas) <= p.kernel.sysctl["max_map_count"] + 1
    for v in vmas:
        assert v.start % P == 0 and v.end % P == 0 and v.start < v.end <= TASK_SIZE, v
    for a, b in zip(vmas, vmas[1:], strict=False):
        assert a.end <= b.start, (a, b)
    for vpn in p.mm.ptes:
        assert p.mm.vma_at(vpn * P) is not None, f"page {vpn * P:#x} mapped outside a VMA"


def joinable(p: Process, a: kb.VMA, b: kb.VMA) -> bool:
    """Would vma_merge() join two adjacent VMAs? (docs/kernel-semantics.md §3, from 2.6.32 and 6.12
    is_mergeable_vma(), is_mergeable_anon_vma(), can_vma_merge_before/after())"""
    prof = p.kernel.profile
    if a.end != b.start or (a.flags ^ b.flags) & ~prof.merge_ignore:
        return False
    if a.flags & prof.vm_special or a.file is not b.file or a.pgoff + a.pages != b.pgoff:
        return False
    if a.anon_vma is not None and b.anon_vma is not None:
        return a.anon_vma is b.anon_vma
    other = a if a.anon_vma is not None else b
    return other.anon_vma is None or not prof.anon_vma_chain or len(other.chain) == 1


def check_merged(p: Process) -> None:
    vmas = p.vmas
    for a, b in zip(vmas, vmas[1:], strict=False):
        assert not joinable(p, a, b), f"{a} and {b} should have been merged"


def madvise_entry_result(p: Process, start: int, length: int, advice: int) -> int | None:
    """The result of sys_madvise()'s entry checks, or None when the walk runs."""
    k = p.kernel
    valid = VALID[k.profile.name] | ({12, 13} if k.config_ksm else set())
    if advice not in valid or start % P:
        return -errno.EINVAL
    rounded = (length + P - 1) // P * P % U64
    if (length and not rounded) or start + rounded >= U64:
        return -errno.EINVAL
    return 0 if rounded == 0 else None


# -- operations on a kernel ------------------------------------------------------------------------

def do(call: Callable[[], object]) -> int:
    """The call's result (0 for None) or -errno."""
    try:
        result = call()
    except OSError as e:
        assert e.errno is not None
        return -e.errno
    return 0 if result is None else int(result)  # type: ignore[call-overload]


@st.composite
def operation(draw: st.DrawFn, with_fork: bool) -> tuple:
    kinds = ["map"] * 3 + ["madvise"] * 5 + ["mprotect", "munmap", "write"]
    if with_fork:
        kinds += ["fork", "exit", "inject"]
    kind = draw(st.sampled_from(kinds))
    who = draw(st.integers(0, 3))
    if kind == "map":
        flags = draw(st.sampled_from([
            ANON, ANON, kb.MAP_SHARED | kb.MAP_ANONYMOUS, ANON | kb.MAP_NORESERVE,
            ANON | kb.MAP_LOCKED, ANON | kb.MAP_GROWSDOWN, kb.MAP_PRIVATE, kb.MAP_SHARED]))
        fixed = draw(st.sampled_from([kb.MAP_FIXED] * 4 + [0]))
        return ("map", who, draw(slot), draw(npages) * P, draw(prot), flags | fixed,
                draw(st.integers(0, 4)))
    if kind == "madvise":
        advice = draw(st.sampled_from(FLAG_ADVICES * 3 + ADVICES + [5, 99, -1]))
        return ("madvise", who, draw(address), draw(length), advice)
    if kind == "mprotect":
        return ("mprotect", who, draw(address), draw(length), draw(prot))
    if kind == "munmap":
        return ("munmap", who, draw(address), draw(length))
    if kind == "write":
        return ("write", who, draw(slot), draw(st.lists(st.integers(0, 3), min_size=1,
                                                        max_size=3)))
    if kind == "inject":
        return ("inject", who, draw(st.sampled_from(["__ksm_enter", "split_vma"])))
    return (kind, who)


def apply(k: kb.Kernel, f: kb.File, op: tuple) -> None:
    """Run one operation on a live process and check what must hold after it."""
    live = [p for p in k.processes if p.alive]
    if not live:
        return
    kind, p = op[0], live[op[1] % len(live)]
    before = {q.pid: state(q) for q in live}
    if kind == "map":
        _, _, s, n, prot_, flags, off = op
        file = None if flags & kb.MAP_ANONYMOUS else f
        if file is not None:
            flags &= ~kb.MAP_GROWSDOWN
        r = do(lambda: p.mmap(n, prot_, flags, addr=A + s * P, file=file, offset=off * P))
        if r < 0 and r != -errno.ENOMEM:
            assert state(p) == before[p.pid], op
    elif kind == "madvise":
        _, _, start, n, advice = op
        entry = madvise_entry_result(p, start, n, advice)
        r = do(lambda: p.madvise(start, n, advice))
        if entry is not None:
            assert r == entry, op
            assert state(p) == before[p.pid], op
    elif kind == "mprotect":
        _, _, start, n, prot_ = op
        unmapped = p.mm.vma_at(start) is None
        r = do(lambda: p.mprotect(start, n, prot_))
        if start % P or n == 0 or (start + n) % U64 < start or unmapped:
            assert state(p) == before[p.pid], op
        if start % P == 0 and n and unmapped and start + n < U64:
            assert r == -errno.ENOMEM, op
    elif kind == "munmap":
        _, _, start, n = op
        r = do(lambda: p.munmap(start, n))
        if r == -errno.EINVAL:
            assert state(p) == before[p.pid], op
    elif kind == "write":
        _, _, s, values = op
        do(lambda: p.write_pages(A + s * P, values))
    elif kind == "fork":
        count = len(k.processes)
        r = do(lambda: p.fork().pid)
        assert len(k.processes) == count + (r >= 0)
        assert state(p) == before[p.pid]
    elif kind == "exit":
        if len(live) > 1:
            p.exit()
            assert not p.alive and p not in k.processes
    elif kind == "inject":
        k.inject(op[2])
    t = p.last_trace
    if t is not None and t.reason is not None:  # the step that decided the errno ends it
        assert (kb.errno_name(t.errno or 0) in t.reason.message
                or t.reason.function == "do_user_addr_fault"), (op, t.reason)
    for q in k.processes:
        if q.alive:
            check_structure(q)


@FAST
@given(profile=st.sampled_from(kb.PROFILES), config_ksm=st.booleans(),
       max_map_count=st.sampled_from([65530, 3, 6]),
       ops=st.lists(operation(with_fork=True), min_size=1, max_size=30))
def test_address_space_invariants(profile: str, config_ksm: bool, max_map_count: int,
                                  ops: list[tuple]) -> None:
    k = kb.Kernel(profile, config_ksm=config_ksm, max_map_count=max_map_count,
                  nr_hugepages=1)
    f = k.create_file("data.bin", 16 * P)
    k.spawn()
    for op in ops:
        apply(k, f, op)


@FAST
@given(profile=st.sampled_from(kb.PROFILES), ops=st.lists(operation(with_fork=False),
                                                          min_size=1, max_size=30))
def test_no_joinable_neighbours_where_every_change_tried_to_merge(
        profile: str, ops: list[tuple]) -> None:
    k = kb.Kernel(profile)
    f = k.create_file("data.bin", 16 * P)
    p = k.spawn()
    for op in ops:
        apply(k, f, op)
        check_merged(p)


# -- madvise against a page-by-page model --------------------------------------------------------

def model_flags(advice: int, flags: kb.VM, ignore: kb.VM) -> kb.VM:
    """What one page's flags become (madvise_behavior(), ksm_madvise()), page by page."""
    if advice == kb.MADV_NORMAL:
        return flags & ~(kb.VM_RAND_READ | kb.VM_SEQ_READ)
    if advice == kb.MADV_RANDOM:
        return (flags & ~kb.VM_SEQ_READ) | kb.VM_RAND_READ
    if advice == kb.MADV_SEQUENTIAL:
        return (flags & ~kb.VM_RAND_READ) | kb.VM_SEQ_READ
    if advice == kb.MADV_DONTFORK:
        return flags | kb.VM_DONTCOPY
    if advice == kb.MADV_DOFORK:
        return flags & ~kb.VM_DONTCOPY
    if advice == kb.MADV_MERGEABLE:
        return flags if flags & ignore else flags | kb.VM_MERGEABLE
    if advice == kb.MADV_UNMERGEABLE:
        return flags & ~kb.VM_MERGEABLE
    return flags


@st.composite
def page_ops(draw: st.DrawFn) -> tuple:
    kind = draw(st.sampled_from(["map", "map", "munmap", "madvise", "madvise", "madvise"]))
    if kind == "map":
        flags = draw(st.sampled_from([ANON, ANON, kb.MAP_SHARED | kb.MAP_ANONYMOUS]))
        return ("map", draw(slot), draw(npages), draw(prot), flags)
    if kind == "munmap":
        return ("munmap", draw(slot), draw(npages))
    return ("madvise", draw(slot), draw(st.integers(0, 10)),
            draw(st.sampled_from(FLAG_ADVICES + [kb.MADV_DONTNEED])))


def pages_of(p: Process) -> dict[int, kb.VM]:
    return {addr: v.flags for v in p.vmas for addr in range(v.start, v.end, P)}


@FAST
@given(profile=st.sampled_from(kb.PROFILES), ops=st.lists(page_ops(), min_size=1, max_size=25))
def test_madvise_acts_page_by_page(profile: str, ops: list[tuple]) -> None:
    k = kb.Kernel(profile)
    p = k.spawn()
    ignore = k.profile.ksm_ignore
    for op in ops:
        if op[0] == "map":
            _, s, n, prot_, flags = op
            p.mmap(n * P, prot_, flags | kb.MAP_FIXED, addr=A + s * P)
            continue
        if op[0] == "munmap":
            p.munmap(A + op[1] * P, op[2] * P)
            continue
        _, s, n, advice = op
        model = pages_of(p)
        start, end = A + s * P, A + (s + n) * P
        registered = bool(p.mm_flags & kb.MMF_VM_MERGEABLE)
        r = do(lambda a=start, n=n, adv=advice: p.madvise(a, n * P, adv))
        want = {a: model_flags(advice, f, ignore) if start <= a < end else f
                for a, f in model.items()}
        assert pages_of(p) == want, op
        hole = any(a not in model for a in range(start, end, P))
        assert r == (-errno.ENOMEM if hole and n else 0), op
        newly = any(want[a] & kb.VM_MERGEABLE and not model[a] & kb.VM_MERGEABLE
                    for a in want)
        assert bool(p.mm_flags & kb.MMF_VM_MERGEABLE) == (registered or newly), op
        check_merged(p)


# -- the scenario round trip ---------------------------------------------------------------------

name = st.sampled_from(["A", "b", "_x", "Data2", "m_1", "Z9"])
number = st.integers(0, 2**40)


@st.composite
def length_text(draw: st.DrawFn) -> str:
    n = draw(st.integers(0, 64))
    return draw(st.sampled_from([f"{n}p", str(n * P), hex(n * P), f"{n * 4}k", "-1", str(n)]))


@st.composite
def addr_text(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return hex(draw(number))
    label = draw(name)
    off = draw(st.sampled_from(["", f"+{draw(st.integers(1, 9))}p", f"-{draw(number)}",
                                f"+{hex(draw(number))}"]))
    return label + off


@st.composite
def statement(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(["", "", f"{draw(name)}: "]))
    kind = draw(st.sampled_from(["map", "munmap", "mprotect", "madvise", "write", "fork",
                                 "exit", "kernel", "sysctl", "file", "device", "inject"]))
    protection = draw(st.sampled_from(["none", "r", "rw", "wr", "rx", "rwx", "xwr"]))
    if kind == "map":
        options = draw(st.lists(st.sampled_from(
            ["noreserve", "locked", "growsdown", "noreplace", f"offset={draw(length_text())}"]),
            unique=True, max_size=3))
        options.append(f"at {draw(addr_text())}")
        if draw(st.booleans()):
            options.append("fixed")
        options = draw(st.permutations(options))
        backing = draw(st.sampled_from(["anon", "hugetlb", f"file={draw(name)}",
                                        f"device={draw(name)}"]))
        typ = draw(st.sampled_from(["private", "shared"]))
        return (f"{prefix}map {draw(name)} {draw(length_text())} {protection} {typ} "
                f"{backing} {' '.join(options)}")
    if kind in ("munmap", "mprotect", "madvise"):
        tail = {"munmap": "", "mprotect": f" {protection}",
                "madvise": " " + draw(st.sampled_from(
                    [m.name or "" for m in kb.MADV] + ["mergeable", "madv_unmergeable",
                                                       "12", "99", "-5"]))}[kind]
        return f"{prefix}{kind} {draw(addr_text())} {draw(length_text())}{tail}"
    if kind == "write":
        values = draw(st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=4))
        return f"{prefix}write {draw(addr_text())} {' '.join(map(str, values))}"
    if kind == "fork":
        return f"{prefix}fork {draw(name)}"
    if kind == "exit":
        return f"{prefix}exit"
    if kind == "kernel":
        return f"kernel {draw(st.sampled_from(kb.PROFILES))} " + draw(
            st.sampled_from(["", "ksm=y", "ksm=n"]))
    if kind == "sysctl":
        return f"sysctl {draw(st.sampled_from(['max_map_count', 'nr_hugepages']))}={draw(number)}"
    if kind == "file":
        opts = draw(st.lists(st.sampled_from(["tmpfs", "ext4", "ro"]), unique=True))
        return f"file {draw(name)}.bin {draw(length_text())} {' '.join(opts)}"
    if kind == "device":
        return f"device {draw(name)} {draw(st.sampled_from(list(kb.DRIVER_STYLES)))}"
    return f"inject {draw(st.sampled_from(['__ksm_enter', 'split_vma', 'break_ksm']))} " + (
        str(draw(st.integers(1, 9))) if draw(st.booleans()) else "")


@settings(max_examples=examples(300), deadline=None)
@given(lines=st.lists(statement(), max_size=12), comments=st.booleans())
def test_scenario_round_trip(lines: list[str], comments: bool) -> None:
    text = "\n".join(f"{ln}   # note" if comments else ln for ln in lines)
    s = sc.parse(text)
    canonical = sc.format_scenario(s)
    assert sc.parse(canonical) == s
    assert sc.format_scenario(sc.parse(canonical)) == canonical
    assert len(s.ops) == len(lines)


@settings(max_examples=examples(200), deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list("map A 4p rw:+-#\nx0123456789fixed")),
                    max_size=60))
def test_parser_reports_errors_and_never_crashes(text: str) -> None:
    try:
        s = sc.parse(text)
    except sc.ScenarioError as e:
        lines = text.splitlines()
        assert 1 <= e.line <= max(1, len(lines))
        assert 1 <= e.column <= len(lines[e.line - 1]) + 1 if lines else e.column == 1
        assert re.match(r"line \d+, column \d+: ", str(e))
        return
    assume(s.ops)
    assert sc.parse(sc.format_scenario(s)) == s
