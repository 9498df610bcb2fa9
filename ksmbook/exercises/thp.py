"""Problems about KSM and transparent huge pages (chapter 9): what ksmd's counters say after it
has scanned, split and merged the subpages of a huge page (``ksmbook.thp``).

A process maps 2 MiB at a 2 MiB boundary, advises it MADV_HUGEPAGE (or not, or
MADV_NOHUGEPAGE) and MADV_MERGEABLE, and writes a few of its pages; another process may offer
small pages with some of the same contents. The simulated kernel's THP mode is ``madvise``,
as on the machine the book was checked on, so only the advised range gets a huge page.
"""

from __future__ import annotations

import random

from ..constants import MADV, PAGE_SIZE, PROT
from ..profiles import get_profile
from ..scenario import Addr, Madvise, Map, Statement, Write
from ..thp import HPAGE_PMD_NR, HPAGE_PMD_SIZE
from .ksmd import (
    _GATE,
    _GROUPS,
    CountersProblem,
    KsmdProblem,
    ProblemStep,
    content_name,
    map_step,
    scan_step,
)
from .registry import register

__all__ = ["THP_BASE", "huge_step"]

#: Where the 2 MiB range is mapped (MAP_FIXED): 2 MiB aligned, as in chapter 9.
THP_BASE = 0x7FFFE0000000

_ADVICE_TEXT = {MADV.MADV_HUGEPAGE: "madvise(MADV_HUGEPAGE)",
                MADV.MADV_NOHUGEPAGE: "madvise(MADV_NOHUGEPAGE)", None: "no MADV_HUGEPAGE"}


def huge_step(proc: str, writes: dict[int, int], advice: MADV | None) -> ProblemStep:
    """`proc` maps 2 MiB of private anonymous memory at THP_BASE (MAP_FIXED), gives it
    `advice` (MADV_HUGEPAGE, MADV_NOHUGEPAGE or None) and MADV_MERGEABLE, then writes
    `writes` (page index -> content) in page order."""
    label = proc.upper()
    ops: list[Statement] = [Map(proc, label, HPAGE_PMD_SIZE, PROT.PROT_READ | PROT.PROT_WRITE,
                                at=Addr(None, THP_BASE), fixed=True)]
    for adv in (advice, MADV.MADV_MERGEABLE):
        if adv is not None:
            ops.append(Madvise(proc, Addr(label, 0), HPAGE_PMD_SIZE, adv))
    ops += [Write(proc, Addr(label, i * PAGE_SIZE), (c,)) for i, c in sorted(writes.items())]
    written = ", ".join(f"{content_name(c)} to page {i}" for i, c in sorted(writes.items()))
    return ProblemStep(f"{proc}: mmap 2 MiB at a 2 MiB boundary ({HPAGE_PMD_NR} pages), "
                       f"{_ADVICE_TEXT[advice]}, madvise(MADV_MERGEABLE); write {written}",
                       tuple(ops))


_HUGE = ("In THP mode madvise, the first write in an aligned 2 MiB range of a MADV_HUGEPAGE "
         "VMA maps one huge page (do_huge_pmd_anonymous_page()): all 512 subpages are present, "
         "the unwritten ones holding zeros, and ksmd gives each an rmap_item: 512 volatile "
         "after the first pass.")
_SPLIT = ("ksmd merges only 4 KiB pages. In the second pass, the first two identical subpages "
          "it meets (two zero ones, unless written pages come first) belong to the same huge "
          "page: try_to_merge_one_page() cannot split it while ksmd holds both, so "
          "cmp_and_merge_page() splits it afterwards without merging, and (since 6.12) the split "
          "maps every all-zero subpage to the shared zero page, which ksmd no longer scans. The "
          "unstable tree still holds the first of those zero subpages: for the rest of the pass "
          "a search that reaches its node gives up (unstable_tree_search_insert(): "
          "get_mergeable_page() finds no anonymous page there), and the page searched for stays "
          "volatile. The next pass starts with an empty unstable tree.")
_SMALL = ("Without MADV_HUGEPAGE (mode madvise), or with MADV_NOHUGEPAGE, every write fault "
          "maps one 4 KiB page: only the written pages are present, and ksmd treats them as "
          "any small pages.")


@register("ksmd-thp", chapters=(9,), kernel="modern", needs=("run",))
def _ksmd_thp(rng: random.Random, profile: str) -> KsmdProblem:
    p = get_profile(profile)
    if not p.thp:
        raise ValueError(f"ksmd-thp needs transparent huge pages, which the {p.name} kernel "
                         "does not have (they came in 2.6.38)")
    advice = rng.choice((MADV.MADV_HUGEPAGE, MADV.MADV_HUGEPAGE, MADV.MADV_HUGEPAGE,
                         MADV.MADV_NOHUGEPAGE, None))
    letters = rng.randrange(1, 3)
    pages = sorted(rng.sample(range(HPAGE_PMD_NR), rng.randrange(2, 5)))
    writes = {i: rng.randrange(1, letters + 1) for i in pages}
    steps = [huge_step("p1", writes, advice)]
    if rng.random() < 0.5:
        steps.append(map_step("p2", [rng.randrange(1, letters + 2)
                                     for _ in range(rng.randrange(1, 3))], True))
    scans = rng.randrange(1, 4)
    steps.append(scan_step(scans))
    huge = advice == MADV.MADV_HUGEPAGE
    return CountersProblem(
        steps, f"What are pages_shared, pages_sharing, pages_unshared and pages_volatile "
        f"after {'this full scan' if scans == 1 else 'these full scans'}?", profile=profile,
        intro="Transparent huge pages are in mode madvise "
              "(/sys/kernel/mm/transparent_hugepage/enabled), as on the machine the book was "
              "checked on.",
        hints=(_HUGE if huge else _SMALL, _GATE, _SPLIT if huge else _GROUPS),
        why=f"{_HUGE} {_SPLIT}" if huge else f"{_SMALL} {_GROUPS}")
