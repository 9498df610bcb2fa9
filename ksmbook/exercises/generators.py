"""The generators of chapters 0-6: scenarios of mmap, mprotect, munmap, madvise and fork, and a
question about their last operation (answered by `ksmbook.exercises.vma`).
"""

from __future__ import annotations

import random

from ..profiles import get_profile
from .registry import register
from .vma import (
    BASE,
    AdviceProblem,
    CountProblem,
    LayoutProblem,
    MmfProblem,
    ResultProblem,
    ScenarioProblem,
)

__all__: list[str] = []


# -- helpers ----------------------------------------------------------------------------------

def _kernel(profile: str, ksm: bool = True) -> str:
    return f"kernel {profile} ksm={'y' if ksm else 'n'}"


def _first(name: str, pages: int, how: str = "rw private anon") -> str:
    return f"map {name} {pages}p {how} at {BASE:#x} fixed"


def _range(rng: random.Random, pages: int, inner: bool = False) -> tuple[int, int]:
    """A sub-range [i, i+j) of `pages` pages (strictly inside if inner and possible)."""
    if inner and pages >= 3:
        i = rng.randrange(1, pages - 1)
        return i, rng.randrange(1, pages - i)
    i = rng.randrange(0, pages)
    return i, rng.randrange(1, pages - i + 1)


def _at(label: str, pages: int) -> str:
    return label if pages == 0 else f"{label}+{pages}p"


_MAPPED_PAGES = "Pages are counted from page 0; a VMA (start, end) covers pages start..end-1."
_HOLE = ("A hole is an unmapped gap between VMAs. Ask what madvise does with the mapped "
         "parts of the range, and what it returns.")
_SPLIT = ("A flag-changing advice on part of a VMA splits it at the range's start and end; "
          "pieces whose flags become equal to a neighbour's merge back (vma_merge()).")
_IGNORE = ("ksm_madvise() ignores MADV_MERGEABLE on some VMAs (shared memory, driver "
           "mappings, hugetlb, ...): it returns 0 and leaves the flags alone.")
_MMF = ("MMF_VM_MERGEABLE is a bit in the mm (the whole address space), set by __ksm_enter() "
        "the first time one of its VMAs becomes VM_MERGEABLE.")
_ENTRY = ("sys_madvise() checks its arguments in a fixed order before it looks at any VMA: "
          "is the advice known (MERGEABLE needs CONFIG_KSM), is start page aligned, does the "
          "rounded length wrap, is len 0.")


# -- chapter 0: how to use the book -----------------------------------------------------------

@register("warmup", chapters=(0,))
def _warmup(rng: random.Random, profile: str) -> ScenarioProblem:
    n = rng.randrange(4, 9)
    i, j = _range(rng, n)
    sc = [_kernel(profile), _first("A", n), f"madvise {_at('A', i)} {j}p MERGEABLE"]
    return ResultProblem("\n".join(sc), "What does the madvise call return?",
                    intro="A process maps anonymous memory and offers part of it to KSM.",
                    hints=("All of the range lies inside the mapping A.",))


# -- chapter 1: address spaces and VMAs -------------------------------------------------------

@register("mmap-merge", chapters=(1,))
def _mmap_merge(rng: random.Random, profile: str) -> ScenarioProblem:
    n = rng.randrange(3, 5)
    sc = [_kernel(profile)]
    offset = 0
    for k, name in enumerate("ABCD"[:n]):
        pages = rng.randrange(1, 5)
        prot = rng.choice(("rw", "rw", "rw", "r"))
        if k == 0:
            sc.append(_first(name, pages, f"{prot} private anon"))
        else:
            offset += rng.choice((0, 0, 1))
            sc.append(f"map {name} {pages}p {prot} private anon at {_at('A', offset)} fixed")
        offset += pages
    return CountProblem("\n".join(sc), "How many VMAs does p1 have after these mmaps?",
                    measure="vmas", show_before=False,
                    intro="Each map line asks for anonymous memory at a fixed address "
                          "(MAP_FIXED); nothing was mapped there before.",
                    hints=("Look at which mappings touch each other and whether their flags "
                           "(protection, VM_ACCOUNT) are the same.",))


@register("mprotect-layout", chapters=(1,))
def _mprotect_layout(rng: random.Random, profile: str) -> ScenarioProblem:
    n = rng.randrange(5, 10)
    i, j = _range(rng, n)
    sc = [_kernel(profile), _first("A", n), f"mprotect {_at('A', i)} {j}p r"]
    if rng.random() < 0.5:
        i2, j2 = _range(rng, n)
        sc.append(f"mprotect {_at('A', i2)} {j2}p {rng.choice(('rw', 'none'))}")
    return LayoutProblem("\n".join(sc), "What are p1's VMAs after the last mprotect?",
                    codes=("rd", "wr"), intro="mprotect changes the protection of a range "
                    "of pages; the VMAs have to follow.",
                    hints=(_MAPPED_PAGES + " mprotect splits and merges VMAs as madvise "
                           "does.",))


@register("munmap-count", chapters=(1,))
def _munmap_count(rng: random.Random, profile: str) -> ScenarioProblem:
    n = rng.randrange(4, 10)
    i, j = _range(rng, n)
    sc = [_kernel(profile), _first("A", n), f"munmap {_at('A', i)} {j}p"]
    if rng.random() < 0.5:
        k = rng.randrange(1, j + 1)
        sc.append(f"map B {k}p rw private anon at {_at('A', i)} fixed")
    return CountProblem("\n".join(sc), "How many VMAs does p1 have at the end?",
                    measure="vmas", show_before=False,
                    hints=("munmap of the middle of a VMA leaves two VMAs; a new mapping next "
                           "to an old one with the same flags merges with it.",))


# -- chapter 2: the madvise path --------------------------------------------------------------

def _hole_scenario(rng: random.Random, profile: str) -> tuple[list[str], int, int, int]:
    a, g, b = rng.randrange(2, 6), rng.randrange(1, 4), rng.randrange(2, 6)
    sc = [_kernel(profile), _first("A", a),
          f"map B {b}p rw private anon at {_at('A', a + g)} fixed"]
    return sc, a, g, b


@register("hole-result", chapters=(2,))
def _hole_result(rng: random.Random, profile: str) -> ScenarioProblem:
    sc, a, g, b = _hole_scenario(rng, profile)
    total = a + g + b
    case = rng.choice(("across", "across", "into-hole", "from-hole", "inside"))
    if case == "across":
        i = rng.randrange(0, a)
        j = rng.randrange(a + g - i + 1, total - i + 1)
    elif case == "into-hole":
        i = rng.randrange(0, a)
        j = rng.randrange(a - i + 1, a + g - i + 1)
    elif case == "from-hole":
        i = rng.randrange(a, a + g)
        j = rng.randrange(a + g - i + 1, total - i + 1)
    else:
        i, j = _range(rng, a)
    sc.append(f"madvise {_at('A', i)} {j}p MERGEABLE")
    return ResultProblem("\n".join(sc), "What does the last madvise return?",
                    intro="Two mappings with a gap between them.", hints=(_HOLE,))


def _split_scenario(rng: random.Random, profile: str) -> list[str]:
    n = rng.randrange(4, 11)
    sc = [_kernel(profile), _first("A", n)]
    if rng.random() < 0.4:
        i0, j0 = _range(rng, n)
        sc.append(f"madvise {_at('A', i0)} {j0}p MERGEABLE")
    i, j = _range(rng, n, inner=rng.random() < 0.5)
    sc.append(f"madvise {_at('A', i)} {j}p MERGEABLE")
    return sc


@register("split-layout", chapters=(2,))
def _split_layout(rng: random.Random, profile: str) -> ScenarioProblem:
    sc = _split_scenario(rng, profile)
    return LayoutProblem("\n".join(sc), "What are p1's VMAs after the last madvise?",
                    codes=("mg",), hints=(_MAPPED_PAGES, _SPLIT))


@register("split-count", chapters=(2,))
def _split_count(rng: random.Random, profile: str) -> ScenarioProblem:
    sc = _split_scenario(rng, profile)
    return CountProblem("\n".join(sc), "How many times does the last madvise call "
                    "split_vma()?", measure="splits", hints=(_SPLIT,))


@register("remerge-count", chapters=(2,))
def _remerge_count(rng: random.Random, profile: str) -> ScenarioProblem:
    n = rng.randrange(4, 11)
    i, j = _range(rng, n, inner=True)
    sc = [_kernel(profile), _first("A", n), f"madvise {_at('A', i)} {j}p MERGEABLE"]
    if rng.random() < 0.6:
        i2, j2 = i, j
    else:
        i2, j2 = _range(rng, n)
    sc.append(f"madvise {_at('A', i2)} {j2}p UNMERGEABLE")
    return CountProblem("\n".join(sc), "How many VMAs does p1 have after the "
                    "UNMERGEABLE call?", measure="vmas", hints=(_SPLIT,))


_REVERSE_ADVICES = ("MERGEABLE", "UNMERGEABLE", "DONTFORK", "DOFORK", "RANDOM", "SEQUENTIAL")


@register("reverse-advice", chapters=(2, 3))
def _reverse_advice(rng: random.Random, profile: str) -> ScenarioProblem:
    for _ in range(50):
        n = rng.randrange(4, 9)
        sc = [_kernel(profile), _first("A", n)]
        if rng.random() < 0.6:
            i0, j0 = _range(rng, n)
            sc.append(f"madvise {_at('A', i0)} {j0}p {rng.choice(_REVERSE_ADVICES)}")
        i, j = _range(rng, n)
        sc.append(f"madvise {_at('A', i)} {j}p {rng.choice(_REVERSE_ADVICES)}")
        ex = AdviceProblem("\n".join(sc), "Which advice did the last madvise give?",
                      codes=("mg", "dc", "rr", "sr"),
                      intro="Compare the maps before and after the last call.",
                      hints=("The smaps codes show the flags: mg = VM_MERGEABLE, dc = "
                             "VM_DONTCOPY, rr = VM_RAND_READ, sr = VM_SEQ_READ.",))
        before = ex.results[-2].maps["p1"]
        if ex.results[-1].maps["p1"] != before:
            return ex
    raise AssertionError("reverse-advice: no scenario that changes the maps")


# -- chapter 3: the KSM mm interface ----------------------------------------------------------

_IGNORED_KINDS = ("shared anon", "shared file", "device")


def _ignored_region(rng: random.Random, name: str, pages: int, at: str) -> list[str]:
    kind = rng.choice(_IGNORED_KINDS)
    if kind == "shared anon":
        return [f"map {name} {pages}p rw shared anon at {at} fixed"]
    if kind == "shared file":
        return [f"file data.bin {pages}p",
                f"map {name} {pages}p rw shared file=data.bin at {at} fixed"]
    return ["device gpu remap_pfn_range",
            f"map {name} {pages}p rw shared device=gpu at {at} fixed"]


@register("ignored-count", chapters=(3,))
def _ignored_count(rng: random.Random, profile: str) -> ScenarioProblem:
    a, s = rng.randrange(2, 6), rng.randrange(2, 6)
    sc = [_kernel(profile), _first("A", a)] + _ignored_region(rng, "S", s, _at("A", a))
    i = rng.randrange(0, a)
    j = rng.randrange(a - i + 1, a + s - i + 1)
    if rng.random() < 0.3:
        i, j = a + rng.randrange(0, s - 1), 1
    sc.append(f"madvise {_at('A', i)} {j}p MERGEABLE")
    return CountProblem("\n".join(sc), "How many VMAs does p1 have after the madvise?",
                    measure="vmas", hints=(_IGNORE,))


@register("mmf-flag", chapters=(3,))
def _mmf_flag(rng: random.Random, profile: str) -> ScenarioProblem:
    case = rng.choice(("ignored", "unmergeable", "hole-first", "all-hole", "munmap", "repeat"))
    a = rng.randrange(2, 6)
    sc = [_kernel(profile), _first("A", a)]
    if case == "ignored":
        sc += _ignored_region(rng, "S", 3, _at("A", a + 2))
        sc.append(f"madvise {_at('S', rng.randrange(0, 2))} 1p MERGEABLE")
    elif case == "unmergeable":
        i, j = _range(rng, a)
        sc += [f"madvise {_at('A', i)} {j}p MERGEABLE", f"madvise A {a}p UNMERGEABLE"]
    elif case == "hole-first":
        sc.append(f"madvise {_at('A', rng.randrange(0, a))} {a + 3}p MERGEABLE")
    elif case == "all-hole":
        sc.append(f"madvise {_at('A', a + rng.randrange(0, 3))} 2p MERGEABLE")
    elif case == "munmap":
        sc += [f"madvise A {a}p MERGEABLE", f"munmap A {a}p"]
    else:
        sc += [f"madvise A {a}p UNMERGEABLE", f"madvise A {a}p DONTFORK"]
    return MmfProblem("\n".join(sc), "Is MMF_VM_MERGEABLE set in p1's mm at the end?",
                    hints=(_MMF,))


@register("repeat-splits", chapters=(3,))
def _repeat_splits(rng: random.Random, profile: str) -> ScenarioProblem:
    n = rng.randrange(6, 11)
    i, j = _range(rng, n, inner=True)
    sc = [_kernel(profile), _first("A", n), f"madvise {_at('A', i)} {j}p MERGEABLE"]
    case = rng.choice(("same", "extend", "disjoint", "inside"))
    if case == "disjoint" and i < 2 and i + j + 1 >= n:
        case = "inside"
    advice = "MERGEABLE"
    if case == "same":
        i2, j2 = i, j
    elif case == "extend":
        i2 = rng.randrange(i, i + j + 1)
        j2 = rng.randrange(i + j - i2 + 1, n - i2 + 1)
    elif case == "disjoint":
        if i + j + 1 < n and (i < 2 or rng.random() < 0.5):
            i2 = rng.randrange(i + j + 1, n)
            j2 = rng.randrange(1, n - i2 + 1)
        else:
            i2 = rng.randrange(0, i - 1)
            j2 = rng.randrange(1, i - i2)
    else:
        i2, j2 = _range(rng, j)
        i2 += i
        advice = "UNMERGEABLE"
    sc.append(f"madvise {_at('A', i2)} {j2}p {advice}")
    return CountProblem("\n".join(sc), "How many times does the second madvise call "
                    "split_vma()?", measure="splits",
                    hints=("Part of the range may have the new flags already.", _SPLIT))


# -- chapter 4: errors as design --------------------------------------------------------------

@register("entry-errors", chapters=(4,))
def _entry_errors(rng: random.Random, profile: str) -> ScenarioProblem:
    case = rng.choice(("no-ksm", "no-ksm-len0", "unaligned", "len0", "wrap", "past-end",
                       "unknown-advice"))
    a = rng.randrange(2, 6)
    sc = [_kernel(profile, ksm=not case.startswith("no-ksm")), _first("A", a)]
    if case == "no-ksm":
        sc.append(f"madvise A {a}p MERGEABLE")
    elif case == "no-ksm-len0":
        sc.append("madvise A 0 MERGEABLE")
    elif case == "unaligned":
        sc.append(f"madvise A+{rng.choice((1, 100, 512, 2048, 4095))} 1p MERGEABLE")
    elif case == "len0":
        sc.append(f"madvise {_at('A', a + rng.randrange(1, 4))} 0 MERGEABLE")
    elif case == "wrap":
        sc.append(f"madvise {_at('A', rng.randrange(0, a))} -1 MERGEABLE")
    elif case == "past-end":
        sc.append(f"madvise {_at('A', rng.randrange(0, a))} {a + rng.randrange(1, 4)}p "
                  "UNMERGEABLE")
    else:
        sc.append(f"madvise A {a}p {rng.choice((5, 6, 7))}")
    return ResultProblem("\n".join(sc), "What does the last madvise return?",
                    hints=(_ENTRY,))


@register("partial-layout", chapters=(2, 4))
def _partial_layout(rng: random.Random, profile: str) -> ScenarioProblem:
    sc, a, g, b = _hole_scenario(rng, profile)
    i = rng.randrange(0, a)
    j = rng.randrange(a + g - i + 1, a + g + b - i + 1)
    sc.append(f"madvise {_at('A', i)} {j}p MERGEABLE")
    return LayoutProblem("\n".join(sc), "The call returns ENOMEM. What are p1's VMAs "
                    "after it?", codes=("mg",), hints=(_HOLE, _SPLIT))


def _eagain(rng: random.Random, profile: str, cases: tuple[str, ...]) -> ScenarioProblem:
    n = rng.randrange(4, 9)
    case = rng.choice(cases)
    sc = [_kernel(profile), _first("A", n)]
    if case == "enter":
        sc.append("inject __ksm_enter")
        i, j = _range(rng, n)
    else:
        sc.append("sysctl max_map_count=1")
        if case == "limit-middle":
            i, j = _range(rng, n, inner=True)
        elif case == "limit-edge":
            j = rng.randrange(1, n)
            i = rng.choice((0, n - j))
        else:
            i, j = 0, n
    sc.append(f"madvise {_at('A', i)} {j}p MERGEABLE")
    return ResultProblem("\n".join(sc), "What does the last madvise return?",
                         intro="`sysctl max_map_count=N` caps the number of VMAs per process; "
                               "`inject F` makes the next call of kernel function F fail to "
                               "allocate memory.",
                         hints=("Which kernel function needs memory or a new VMA here, and "
                                "what does madvise_behavior() do with an ENOMEM?",))


_EAGAIN_CASES = ("limit-middle", "limit-edge", "limit-whole", "enter")


@register("eagain", chapters=(4,))
def _eagain_v1(rng: random.Random, profile: str) -> ScenarioProblem:
    return _eagain(rng, profile, _EAGAIN_CASES)


@register("eagain", chapters=(4,), version=2)
def _eagain_v2(rng: random.Random, profile: str) -> ScenarioProblem:
    """Version 2 injects a failure of __ksm_enter() only into a kernel whose __ksm_enter()
    allocates (one with ksmd and its mm_slots); the seed's dummy cannot fail."""
    can_fail = get_profile(profile).has_ksmd
    return _eagain(rng, profile, _EAGAIN_CASES if can_fail else _EAGAIN_CASES[:-1])


# -- chapter 5: fork, exit and the mm flag ----------------------------------------------------

def _fork_scenario(rng: random.Random, profile: str) -> list[str]:
    n = rng.randrange(5, 10)
    sc = [_kernel(profile), _first("A", n)]
    i, j = _range(rng, n)
    sc.append(f"madvise {_at('A', i)} {j}p DONTFORK")
    if rng.random() < 0.8:
        i2, j2 = _range(rng, n)
        sc.append(f"madvise {_at('A', i2)} {j2}p MERGEABLE")
    sc.append("fork child")
    return sc


@register("fork-layout", chapters=(5,))
def _fork_layout(rng: random.Random, profile: str) -> ScenarioProblem:
    sc = _fork_scenario(rng, profile)
    return LayoutProblem("\n".join(sc), "What are the child's VMAs right after fork?",
                    proc="child", codes=("mg", "dc"), show_before=False,
                    hints=("dup_mmap() copies every VMA except the VM_DONTCOPY ones, with "
                           "their flags.",))


@register("fork-mmf", chapters=(5,))
def _fork_mmf(rng: random.Random, profile: str) -> ScenarioProblem:
    n = rng.randrange(4, 9)
    case = rng.choice(("dontcopy-only", "none", "ignored", "unmerged"))
    sc = [_kernel(profile), _first("A", n)]
    if case == "dontcopy-only":
        i, j = _range(rng, n)
        sc += [f"madvise {_at('A', i)} {j}p DONTFORK", f"madvise {_at('A', i)} {j}p MERGEABLE"]
    elif case == "none":
        sc.append(f"madvise A {n}p DONTFORK")
    elif case == "ignored":
        sc += _ignored_region(rng, "S", 2, _at("A", n + 1))
        sc.append("madvise S 2p MERGEABLE")
    else:
        sc += [f"madvise A {n}p MERGEABLE", f"madvise A {n}p UNMERGEABLE"]
    sc.append("fork child")
    return MmfProblem("\n".join(sc), "Is MMF_VM_MERGEABLE set in the child's mm?",
                    proc="child", hints=(_MMF, "ksm_fork() runs in fork."))


@register("fork-count", chapters=(5,))
def _fork_count(rng: random.Random, profile: str) -> ScenarioProblem:
    sc = _fork_scenario(rng, profile)
    return CountProblem("\n".join(sc), "How many VMAs does the child have?",
                    measure="vmas", proc="child", show_before=False,
                    hints=("dup_mmap() copies every VMA except the VM_DONTCOPY ones.",))


# -- chapter 6: then and now (the same problem on two kernels) --------------------------------

def _then_now(advice: str, question: str, hint: str) -> None:
    """Register then-now-ADVICE: what `advice` on part of an anonymous mapping returns."""

    @register(f"then-now-{advice.lower()}", chapters=(6,))
    def make(rng: random.Random, profile: str) -> ScenarioProblem:
        n = rng.randrange(2, 8)
        i, j = _range(rng, n)
        sc = [_kernel(profile), _first("A", n), f"madvise {_at('A', i)} {j}p {advice}"]
        return ResultProblem("\n".join(sc), f"On the {profile} kernel, {question}",
                             hints=(hint,))


_then_now("WILLNEED", "what does MADV_WILLNEED on anonymous memory return?",
          "2.6.32's madvise_willneed() only knew file read-ahead; later kernels read "
          "anonymous memory back from swap.")
_then_now("FREE", "what does madvise(MADV_FREE) return?",
          "Each kernel accepts only the advices it knows (madvise_behavior_valid()); "
          "MADV_FREE came in Linux 4.5.")


@register("then-now-account", chapters=(6,))
def _then_now_account(rng: random.Random, profile: str) -> ScenarioProblem:
    a, b = rng.randrange(2, 6), rng.randrange(1, 4)
    sc = [_kernel(profile), _first("A", a), f"mprotect A {a}p r",
          f"map B {b}p r private anon at {_at('A', a)} fixed"]
    return CountProblem("\n".join(sc), f"On the {profile} kernel, how many VMAs does p1 "
                    "have at the end?", measure="vmas", show_before=False,
                    hints=("A writable private mapping is charged (VM_ACCOUNT, smaps 'ac'); "
                           "a read-only one is not. Does mprotect to read-only drop the "
                           "charge of memory that was never touched?",))
