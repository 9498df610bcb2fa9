"""Layout questions about one region of an address space: the pages a call can change.

Predict mode (`ksmbook.widgets.PredictExplorer`) asks these about the call the reader is about
to make: `region_of` widens the call's range to the runs of contiguous VMAs it touches or
borders (the VMAs a split_vma() or vma_merge() of the call can change), and
`RegionLayoutProblem` judges a layout of those pages only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..constants import PAGE_SHIFT, PAGE_SIZE, ULONG_MAX
from ..procfs import MapEntry
from ..scenario import Scenario, StepResult
from .vma import LayoutProblem

__all__ = ["PageRegion", "region_of", "RegionLayoutProblem"]


@dataclass(frozen=True)
class PageRegion:
    """The pages a layout question is about: [start, end), page 0 at `start`."""

    start: int
    end: int

    @property
    def pages(self) -> int:
        return (self.end - self.start) >> PAGE_SHIFT


def region_of(entries: Sequence[MapEntry], start: int, end: int) -> PageRegion:
    """The range [start, end) widened to whole pages and to every run of contiguous VMAs it
    touches or borders: the VMAs a split_vma() or vma_merge() of the call can change."""
    lo = start & ~(PAGE_SIZE - 1)
    hi = min(-(-end // PAGE_SIZE) * PAGE_SIZE, ULONG_MAX + 1)
    runs: list[list[int]] = []
    for e in sorted(entries, key=lambda e: e.start):
        if runs and runs[-1][1] == e.start:
            runs[-1][1] = e.end
        else:
            runs.append([e.start, e.end])
    for run_start, run_end in runs:
        if run_start <= hi and lo <= run_end:
            lo, hi = min(lo, run_start), max(hi, run_end)
    return PageRegion(lo, hi)


class RegionLayoutProblem(LayoutProblem):
    """A layout question about one region of `proc`'s address space (other mappings of the
    process are not asked about)."""

    def __init__(self, scenario: Scenario | str, question: str, *, region: PageRegion,
                 **kwargs: Any) -> None:
        self.region = region
        super().__init__(scenario, question, base=region.start, **kwargs)

    def maps_of(self, result: StepResult) -> list[MapEntry]:
        return [e for e in super().maps_of(result)
                if e.start < self.region.end and e.end > self.region.start]
