"""What every part of ksmd shares: the kernel it runs in, the trace of the current batch, and
the caches of one batch (mm/ksm.c's file-scope state lives in ``ksmbook.ksm.KsmState``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..constants import ULONG_MAX
from ..ksm import KsmState, MmSlot
from ..mm import MM, VMA
from ..profiles import KsmChecksum
from ..trace import Step, Trace

if TYPE_CHECKING:
    from ..kernel import Kernel

#: "pid P 0xADDR": where an rmap_item (argument 0) is, at the front of many step templates.
#: The trace keeps the item; its pid and address never change.
WHERE = "pid {0.slot.pid} {0.address:#x}"

_GOLDEN = 0x9E3779B97F4A7C15


def calc_checksum(content: int, algorithm: KsmChecksum = KsmChecksum.XXHASH) -> int:
    """calc_checksum(): a 32-bit checksum of the page whose content is `content`.

    The kernel hashes the 4096 bytes (jhash2 seed 17 in 2.6.32, xxhash seed 0 later); pages are
    symbolic here, so this is a fixed 64-bit mix (splitmix64) of the content and the seed,
    truncated to 32 bits like the kernel's. Equal contents give equal checksums; different
    contents almost never do; the zero page's checksum is not 0 (as measured live).
    """
    # The algorithm's seed, mixed: golden ratio * (seed + 1).
    x = ((content ^ (content >> 64)) + _GOLDEN * (algorithm.value + 1)) & ULONG_MAX
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & ULONG_MAX
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & ULONG_MAX
    return (x ^ (x >> 31)) & 0xFFFFFFFF


class Checksums(dict[int, int]):
    """calc_checksum() of each content met, computed on first use: ``checksums[content]``
    (a page's checksum depends on its content alone)."""

    def __init__(self, algorithm: KsmChecksum) -> None:
        super().__init__()
        self.algorithm = algorithm

    def __missing__(self, content: int) -> int:
        checksum = self[content] = calc_checksum(content, self.algorithm)
        return checksum


class KsmdBase:
    """The state the scan, the trees and the views of one ksmd share."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.ks: KsmState = kernel.ksm
        self.profile = kernel.profile
        #: The trace of the batch running now (None: not tracing).
        self._tr: Trace | None = None
        #: Last VMA found per mm, valid during one batch (VMAs only change between batches).
        self._vma_cache: dict[MM, VMA] = {}
        self.checksums = Checksums(self.profile.ksm_checksum)
        #: The unstable tree was checked in this batch (see `Trees.unstable_tree_search_insert`).
        self._unstable_checked = False
        self.zero_checksum = self.checksums[0]

    def _note(self, depth: int, function: str, template: str, *args: Any) -> None:
        """Record a step of the current batch's trace (the caller checks that there is one)."""
        assert self._tr is not None
        self._tr.records.append(Step(depth, function, template, args))

    def _pid(self, slot: MmSlot) -> int | None:
        if slot.pid is None:
            slot.pid = self.ks.pid_of(slot.mm)
        return slot.pid
