"""The display axis of the diagrams: where each address is drawn.

Addresses are not drawn to one linear scale: a 4 KiB VMA next to a 1 GiB one would vanish, and
the empty space between mmap areas would fill the picture. Instead every elementary piece
between two VMA boundaries gets a width of its own: a mapped piece its size in pages (at least
a small fraction of the whole, so that nothing vanishes; the square root of its size when sizes
differ too much for one linear scale), a hole its size too unless it is long, in which case it
is shortened to a fixed width and drawn with a break mark. `Layout` says what
it has shortened or widened, so that a figure can tell the reader.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain

import numpy as np

from ..constants import PAGE_SIZE

__all__ = ["Layout", "Gap"]

#: A hole wider than this fraction of the mapped width is shortened to it.
GAP_FRACTION = 0.1
#: When the biggest mapped piece is more than this many times the smallest, widths grow as
#: the square root of the size instead.
COMPRESS_SPREAD = 32
#: Nothing (VMA piece or hole) is drawn narrower than this fraction of the mapped width.
MIN_FRACTION = 0.003
#: Holes are drawn at least this wide, so that a one-page hole next to a big VMA is seen.
MIN_GAP_FRACTION = 0.015


@dataclass(frozen=True)
class Gap:
    """A hole between mappings: its addresses, where it is drawn, and if it was shortened."""

    start: int
    end: int
    x0: float
    x1: float
    shortened: bool

    @property
    def size(self) -> int:
        return self.end - self.start


class Layout:
    """Address -> display x for a set of address ranges (the VMAs of one or more rows)."""

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        spans = np.fromiter(chain.from_iterable(ranges), dtype=np.uint64).reshape(-1, 2)
        spans = spans[spans[:, 1] > spans[:, 0]]
        b = np.unique(spans)
        self.bounds: list[int] = b.tolist()
        n = max(len(self.bounds) - 1, 0)
        sizes = (np.diff(b) / PAGE_SIZE).astype(float)
        # A piece between two bounds is mapped when some range covers it.
        depth = np.zeros(len(b) + 1, dtype=np.int64)
        np.add.at(depth, np.searchsorted(b, spans[:, 0]), 1)
        np.add.at(depth, np.searchsorted(b, spans[:, 1]), -1)
        mapped = np.cumsum(depth)[:n] > 0
        widths = sizes.copy()
        spread = sizes[mapped].max() / sizes[mapped].min() if mapped.any() else 1.0
        #: Mapped pieces are drawn with widths that grow as the square root of their size,
        #: because their sizes differ too much for one linear scale (the figure says so).
        self.compressed = bool(spread > COMPRESS_SPREAD)
        if self.compressed:
            widths[mapped] = np.sqrt(sizes[mapped])
        total = float(widths[mapped].sum()) or 1.0
        min_w = total * MIN_FRACTION
        small = mapped & (widths < min_w)
        widths[small] = min_w
        #: Some VMA pieces are drawn wider than their size (the figure says so).
        self.widened = bool(small.any() and (mapped & ~small).any())
        cap = max(total * GAP_FRACTION, min_w)
        gaps = ~mapped
        long_gap = gaps & (widths > cap)
        widths[long_gap] = cap
        short_gap = gaps & ~long_gap
        if self.compressed:
            widths[short_gap] = np.sqrt(widths[short_gap])
        widths[short_gap] = np.maximum(widths[short_gap], total * MIN_GAP_FRACTION)
        self.xs = np.concatenate([[0.0], np.cumsum(widths)]) if n else np.array([0.0, 1.0])
        self.total = float(self.xs[-1])
        self.gaps = [Gap(self.bounds[i], self.bounds[i + 1], float(self.xs[i]),
                         float(self.xs[i + 1]), bool(long_gap[i]))
                     for i in range(n) if gaps[i]]
        self._at = dict(zip(self.bounds, self.xs.tolist(), strict=False))

    @property
    def shortened(self) -> list[Gap]:
        return [g for g in self.gaps if g.shortened]

    def x(self, addr: int) -> float:
        """Where addr is drawn (addresses outside the layout are clamped to its ends)."""
        exact = self._at.get(addr)
        if exact is not None:
            return exact
        b = self.bounds
        if not b or addr <= b[0]:
            return 0.0
        if addr >= b[-1]:
            return self.total
        i = bisect.bisect_right(b, addr) - 1
        frac = (addr - b[i]) / (b[i + 1] - b[i])
        return float(self.xs[i] + frac * (self.xs[i + 1] - self.xs[i]))

    def xs_of(self, addrs: Iterable[int]) -> np.ndarray:
        """x of many addresses at once."""
        at, x = self._at, self.x
        return np.array([at[a] if a in at else x(a) for a in addrs], dtype=float)
