"""Address spaces: VMAs, their lookup, split and merge, and mmap, munmap, mprotect.

Models mm/mmap.c (2.6.32) and mm/mmap.c + mm/vma.c + mm/mprotect.c (6.x): find_vma(),
split_vma(), vma_merge() with can_vma_merge_before/after(), do_mmap_pgoff() and mmap_region(),
do_munmap(), mprotect_fixup(). Where the versions differ the code asks the `Profile`.

Kernel functions return 0 or a negative errno, as in C; `Process` turns those into OSError.
The VMA index is a SortedDict (sortedcontainers) of the VMAs by start address, used through
its public API only: a lookup is one irange() of it, a split or merge a store or a delete.
"""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from sortedcontainers import SortedDict

from .constants import (
    HPAGE_SIZE,
    MAP,
    MMAP_BASE,
    MMAP_MIN_ADDR,
    MMF,
    PAGE_SHIFT,
    PAGE_SIZE,
    PROT,
    TASK_SIZE,
    ULONG_MAX,
    VM,
    as_vm,
)
from .trace import Fail, Kind, Trace, errno_name

if TYPE_CHECKING:
    from .kernel import Kernel
    from .profiles import Profile

__all__ = ["AnonVma", "File", "Page", "VMA", "MM", "arch_get_unmapped_area_topdown",
           "thp_get_unmapped_area",
           "calc_vm_prot_bits", "page_align", "round_hint_to_min"]

# Flags tested on every split and merge, as plain ints (an IntFlag operation costs ten times
# an int one).
_VM_HUGETLB = int(VM.VM_HUGETLB)


def page_align(n: int) -> int:
    """PAGE_ALIGN(): round up to a page boundary, wrapping at 2**64 as in C."""
    return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) & ULONG_MAX


def round_hint_to_min(hint: int) -> int:
    """round_hint_to_min() (mm/mmap.c): a mmap hint rounded down to a page, then raised to
    mmap_min_addr unless it is 0 (no hint)."""
    hint &= ~(PAGE_SIZE - 1)
    return MMAP_MIN_ADDR if 0 < hint < MMAP_MIN_ADDR else hint


class _Span(Protocol):
    """A mapped area as placement reads it: a `VMA`, or a live process's from smaps."""

    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...


_S = TypeVar("_S", bound=_Span)


def arch_get_unmapped_area_topdown(length: int, hint: int, align: int,
                                   down: Callable[[int], Iterable[_S]],
                                   find_vma: Callable[[int], _S | None],
                                   start_gap: Callable[[_S], int],
                                   low: int, high: int, limit: int) -> int:
    """arch_get_unmapped_area_topdown() (arch/x86/kernel/sys_x86_64.c): the page-aligned
    hint if `length` bytes fit below `limit` and vm_start_gap() (`start_gap`) of
    find_vma(hint); else unmapped_area_topdown() (vm_unmapped_area()): the highest
    `align`-aligned fit in [low, high) between the areas down(high - 1) gives (those starting
    at or below it, highest first); -ENOMEM if none. Over MM's VMAs or a live arena's."""
    if length > TASK_SIZE:
        return -errno.ENOMEM
    if hint:
        hint = page_align(hint)
        nxt = find_vma(hint)
        if (hint % align == 0 and hint <= limit - length
                and (nxt is None or hint + length <= start_gap(nxt))):
            return hint
    gap_end = high
    for vma in down(high - 1):
        if vma.end <= gap_end:
            addr = (gap_end - length) & ~(align - 1)
            if addr >= vma.end and addr >= low:
                return addr
        gap_end = min(gap_end, start_gap(vma))
    addr = (gap_end - length) & ~(align - 1)
    return addr if addr >= low else -errno.ENOMEM


def thp_get_unmapped_area(length: int, hint: int, thp_aligned: bool,
                          search: Callable[[int, int], int]) -> int:
    """The placement of a mapping without MAP_FIXED: `search(length, hint)`
    (arch_get_unmapped_area_topdown()), unless __get_unmapped_area() gives a private anonymous
    mapping (`thp_aligned`: on a kernel with Profile.thp_aligned_anon) with no hint and a
    length that is a multiple of PMD_SIZE to thp_get_unmapped_area_vmflags(). That is
    __thp_get_unmapped_area() (mm/huge_memory.c; pgoff 0, size PMD_SIZE, top-down): a search
    for length + PMD_SIZE, then ``off_sub = (off - ret) & (size - 1)``: ret + PMD_SIZE if
    off_sub is 0, else ret + off_sub; if the padded length finds no room, `length` itself."""
    if not thp_aligned or hint or length % HPAGE_SIZE or length > TASK_SIZE:
        return search(length, hint)
    ret = search(length + HPAGE_SIZE, 0)
    if ret < 0:
        return search(length, 0)
    off_sub = -ret & (HPAGE_SIZE - 1)
    return ret + (off_sub or HPAGE_SIZE)


def calc_vm_prot_bits(prot: int) -> VM:
    """calc_vm_prot_bits() (include/linux/mman.h): PROT_* to VM_READ/WRITE/EXEC, which are
    the same bits (so _calc_vm_trans() is a mask)."""
    return VM(prot & (PROT.PROT_READ | PROT.PROT_WRITE | PROT.PROT_EXEC))


@dataclass(eq=False)
class AnonVma:
    """struct anon_vma: links the anonymous pages of a VMA (and its fork relatives); `id`
    comes from its kernel's `Kernel.anon_vma_ids`."""

    id: int

    def __repr__(self) -> str:
        return f"anon_vma#{self.id}"


@dataclass(eq=False)
class File:
    """A simulated open file: a regular file, a tmpfs file, a device or a hugetlbfs file.

    kind is "regular", "shmem", "device" or "hugetlb". A device's ->mmap() adds `vm_flags`
    to every VMA that maps it, as drivers do (remap_pfn_range(), vm_insert_page(), ...).
    """

    name: str
    size: int
    kind: str = "regular"
    fs: str = "ext4"
    writable: bool = True
    vm_flags: VM = VM(0)
    vm_ops_close: bool = False
    deleted: bool = False
    ino: int = 0
    #: Page cache: page offset -> Page (absent = a hole, all zeros).
    pages: dict[int, Page] = field(default_factory=dict)
    huge_reserved: int = 0
    #: A device whose ->mmap() calls remap_pfn_range(), and its first page frame number.
    remap_pfn: bool = False
    pfn: int = 0

    @property
    def path(self) -> str:
        """The pathname column of /proc/PID/maps."""
        return f"{self.name} (deleted)" if self.deleted else self.name


@dataclass(eq=False, slots=True)
class Page:
    """A physical page: its content (an int; 0 = all zeros) and how many PTEs map it.

    `id` names the page in every trace and view of its kernel: the next number of
    `Kernel.page_ids` (#1 for the first page a boot allocates), 0 for the shared zero page.
    """

    content: int
    mapcount: int = 1
    anon: bool = True
    #: Set by ksmd when this page becomes a KSM page (its stable-tree node).
    ksm: object | None = None
    #: MADV_FREE marked it clean and lazily freeable (folio_mark_lazyfree()): reclaim may
    #: drop it; a write before that dirties it again and cancels the free.
    lazyfree: bool = False
    #: Its ptes are write-protected although the page is private: fork() write-protected a
    #: private anonymous page in both mms (copy_present_pte()), so the next write takes
    #: do_wp_page() even once the page is mapped only once again (then wp_page_reuse()).
    wrprotect: bool = False
    id: int = field(kw_only=True)


@dataclass(eq=False, slots=True)
class VMA:
    """struct vm_area_struct: [start, end) with flags, file and page offset."""

    start: int
    end: int
    flags: VM
    pgoff: int = 0
    file: File | None = None
    anon_vma: AnonVma | None = None
    #: anon_vma_chain: own anon_vma last, ancestors' (after fork) before it.
    chain: tuple[AnonVma, ...] = ()

    @property
    def pages(self) -> int:
        return (self.end - self.start) >> PAGE_SHIFT

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def kind(self) -> str:
        """anon, shared-anon, file, shared-file, device or hugetlb."""
        if self.flags & VM.VM_HUGETLB:
            return "hugetlb"
        if self.file is None:
            return "anon"
        if self.file.kind == "device":
            return "device"
        if self.file.kind == "shmem" and self.file.deleted:
            return "shared-anon"
        return "shared-file" if self.flags & VM.VM_MAYSHARE else "file"

    @property
    def vm_ops_close(self) -> bool:
        return self.file is not None and self.file.vm_ops_close

    def pgoff_at(self, addr: int) -> int:
        return self.pgoff + ((addr - self.start) >> PAGE_SHIFT)

    def __repr__(self) -> str:
        return f"VMA({self.start:#x}-{self.end:#x} {self.flags!r})"


class MM:
    """struct mm_struct: the VMAs of one address space, its page table and its flags."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        #: The kernel's profile (read on every system call, so a plain attribute).
        self.profile: Profile = kernel.profile
        # vma_merge()'s flag tests as plain ints: VM_SPECIAL, and the bits that must agree.
        self._special = int(kernel.profile.vm_special)
        self._merge_mask = ~int(kernel.profile.merge_ignore) & ULONG_MAX
        self._sticky = int(kernel.profile.sticky_flags)
        #: The VMAs by start address (the kernel's maple tree); `vmas` is its live,
        #: address-ordered view of the VMAs (len, [i], iteration, reversed).
        self._by_start: SortedDict = SortedDict()
        self.vmas = self._by_start.values()
        self.flags = MMF(0)
        #: Page table: virtual page number -> Page.
        self.ptes: SortedDict = SortedDict()
        #: Guard markers (MADV_GUARD_INSTALL): virtual page numbers that fault with SIGSEGV.
        self.guards: set[int] = set()
        self.mm_users = 1

    @property
    def map_count(self) -> int:
        return len(self._by_start)

    # -- lookup -----------------------------------------------------------------------

    def _down(self, addr: int) -> Iterator[VMA]:
        """The VMAs that start at or below addr, the highest first."""
        by_start = self._by_start
        return map(by_start.__getitem__, by_start.irange(maximum=addr, reverse=True))

    def _up(self, addr: int) -> Iterator[VMA]:
        """The VMAs that start above addr, the lowest first."""
        by_start = self._by_start
        return map(by_start.__getitem__, by_start.irange(minimum=addr, inclusive=(False, True)))

    def find_vma(self, addr: int) -> VMA | None:
        """find_vma(): the first VMA with end > addr."""
        below = next(self._down(addr), None)
        if below is not None and below.end > addr:
            return below
        return next(self._up(addr), None)

    def find_vma_prev(self, addr: int) -> tuple[VMA | None, VMA | None]:
        """find_vma_prev(): find_vma() and the VMA before it."""
        down = self._down(addr)
        below = next(down, None)
        if below is None or below.end <= addr:
            return next(self._up(addr), None), below
        return below, next(down, None)

    def prev_vma(self, vma: VMA) -> VMA | None:
        return next(self._down(vma.start - 1), None)

    def next_vma(self, vma: VMA) -> VMA | None:
        return next(self._up(vma.start), None)

    def vmas_from(self, vma: VMA) -> Iterator[VMA]:
        """`vma` and the VMAs above it, in address order."""
        by_start = self._by_start
        return map(by_start.__getitem__, by_start.irange(vma.start))

    def vma_at(self, addr: int) -> VMA | None:
        """The VMA that contains addr, if any."""
        below = next(self._down(addr), None)
        return below if below is not None and below.end > addr else None

    # -- structure changes (the only code that edits VMA bounds) ------------------------

    def insert(self, vma: VMA) -> None:
        self._by_start[vma.start] = vma

    def remove(self, vma: VMA) -> None:
        del self._by_start[vma.start]

    def resize(self, vma: VMA, start: int, end: int) -> None:
        """vma_adjust(): move the bounds of `vma`, keeping pgoff right for its first page."""
        if start != vma.start:
            del self._by_start[vma.start]
            vma.pgoff += (start - vma.start) >> PAGE_SHIFT
            vma.start = start
            self._by_start[start] = vma
        vma.end = end

    # -- split and merge ----------------------------------------------------------------

    def split_vma(self, vma: VMA, addr: int, new_below: bool, tr: Trace,
                  check_count: bool = True) -> int:
        """split_vma(): cut `vma` at addr; the new struct is the lower part if new_below.
        With check_count False it is __split_vma(), which leaves max_map_count to the caller."""
        p = self.profile
        huge_bad = int(vma.flags) & _VM_HUGETLB and addr % HPAGE_SIZE != 0
        too_many = check_count and self.map_count >= self.kernel.sysctl["max_map_count"]
        if huge_bad or too_many:
            # 2.6.32 checks the huge-page alignment first; 2.6.33 "mmap: don't return ENOMEM
            # when mapcount is temporarily exceeded in munmap()" made split_vma() check
            # max_map_count before calling __split_vma().
            count_first = p.split_checks_count_first
            if too_many and (count_first or not huge_bad):
                tr.note("split_vma", "at {:#x}: map_count {} >= max_map_count: ENOMEM", addr,
                        self.map_count)
                tr.event(Kind.FAIL, addr, addr, Fail.MAX_MAP_COUNT)
                return -errno.ENOMEM
            tr.note("split_vma", "at {:#x}: hugetlb VMA, address not huge-page aligned: "
                    "EINVAL", addr)
            tr.event(Kind.FAIL, addr, addr, Fail.HUGETLB_ALIGN)
            return -errno.EINVAL
        if self.kernel.should_fail("split_vma"):
            tr.note("split_vma", f"at {addr:#x}: {p.fn('kmem_cache_alloc')}() failed: ENOMEM")
            tr.event(Kind.FAIL, addr, addr, Fail.VM_AREA_DUP)
            return -errno.ENOMEM
        self.kernel.thp.split_huge_pmd_address(self, addr)  # vma_adjust_trans_huge()
        lo, hi = vma.start, vma.end
        new = VMA(lo, addr, vma.flags, vma.pgoff, vma.file, vma.anon_vma, vma.chain)
        if new_below:
            # The lower part keeps the old start key, `vma` moves up.
            self._by_start[lo] = new
            vma.pgoff += (addr - lo) >> PAGE_SHIFT
            vma.start = addr
            self._by_start[addr] = vma
        else:
            new.start, new.end, new.pgoff = addr, hi, vma.pgoff_at(addr)
            vma.end = addr
            self._by_start[addr] = new
        tr.note("split_vma", "at {:#x}: new VMA {:#x}-{:#x} ({}), map_count {}", addr,
                new.start, new.end, "below" if new_below else "above", self.map_count)
        tr.event(Kind.SPLIT, lo, hi, hex(addr))
        return 0

    def _anon_compatible(self, src: VMA | None, src_anon: AnonVma | None, tgt: VMA) -> bool:
        """is_mergeable_anon_vma(): may `tgt` and the range from `src` share an anon_vma?"""
        if src_anon is None or tgt.anon_vma is None:
            # 3.0 "mmap: avoid merging cloned VMAs" (965f55dea0e3), on 2.6.34's anon_vma_chain.
            if not self.profile.anon_vma_chain:
                return True
            # 6.x: the VMA whose anon_vma would be shared must not have fork parents
            # (vma_had_uncowed_parents(): its anon_vma_chain is not singular; 6.16 "mm/vma:
            # fix incorrectly disallowed anonymous VMA merges" tests that VMA, not the target).
            holder = tgt if tgt.anon_vma is not None else src
            return holder is None or holder.anon_vma is None or len(holder.chain) == 1
        return src_anon is tgt.anon_vma

    def _mergeable(self, vma: VMA, flags: int, file: File | None, ignore_close: bool) -> bool:
        """is_mergeable_vma(): same flags (bar the ignored ones), same file, no ->close."""
        if (int(vma.flags) ^ flags) & self._merge_mask or vma.file is not file:
            return False
        return ignore_close or not vma.vm_ops_close

    def vma_merge(self, prev: VMA | None, start: int, end: int, flags: VM, file: File | None,
                  pgoff: int, anon_vma: AnonVma | None, middle: VMA | None,
                  tr: Trace) -> VMA | None:
        """vma_merge(): join [start, end) with prev and/or next instead of splitting.

        `middle` is the VMA the range lies in (None for a new mapping). Returns the VMA that
        now covers the range, or None when no merge is possible.
        """
        p = self.profile
        fn = "vma_merge" if middle is None else p.fn("vma_merge")
        iflags = int(flags)
        if iflags & self._special:
            tr.note(fn, "no merge: VM_SPECIAL flags")
            return None
        pages = (end - start) >> PAGE_SHIFT
        # 6.12 "mm: rework vm_ops->close() handling on VMA merge" (714965ca8252 "mm/mmap:
        # start distinguishing if vma can be removed in mergeability test" began it).
        modern = p.close_blocks_only_deletion
        if (modern and middle is not None and middle.start == start and middle.end == end
                and middle.vm_ops_close):
            tr.note(fn, "no merge: the VMA would be deleted and has vm_ops->close")
            return None
        left = (prev is not None and prev.end == start
                and self._mergeable(prev, iflags, file, modern)
                and self._anon_compatible(middle, anon_vma, prev)
                and prev.pgoff + ((prev.end - prev.start) >> PAGE_SHIFT) == pgoff)
        nxt = self._by_start.get(end) if middle is None or middle.end == end else None
        right = (nxt is not None
                 and self._mergeable(nxt, iflags, file, modern)
                 and self._anon_compatible(middle, anon_vma, nxt)
                 and nxt.pgoff == pgoff + pages)
        if left and right and prev is not None and nxt is not None:
            if not self._anon_compatible(prev, prev.anon_vma, nxt) or (
                    modern and nxt.vm_ops_close):
                right = False
        if left and prev is not None:
            target = prev
            new_end = nxt.end if right and nxt is not None else end
            if middle is not None:
                if middle.end <= new_end:
                    self.remove(middle)
                else:
                    self.resize(middle, end, middle.end)
            if right and nxt is not None:
                self.remove(nxt)
                self._take_anon(target, nxt)
            self._take_anon(target, middle, anon_vma)
            self.resize(target, target.start, new_end)
            how = "merged with prev and next" if right else "merged with prev"
        elif right and nxt is not None:
            target = nxt
            if middle is not None:
                if middle.start >= start:
                    self.remove(middle)
                else:
                    self.resize(middle, middle.start, start)
            self._take_anon(target, middle, anon_vma)
            self.resize(target, start, target.end)
            how = "merged with next"
        else:
            tr.note(fn, "no merge ({}, {})",
                    "no adjacent prev" if prev is None or prev.end != start
                    else "prev incompatible",
                    "no adjacent next" if nxt is None else "next incompatible")
            return None
        if self._sticky:
            sticky = 0
            for part in (middle, prev if left else None, nxt if right else None):
                if part is not None:
                    sticky |= int(part.flags)
            sticky &= self._sticky
            if sticky:
                target.flags = as_vm(int(target.flags) | sticky)
        tr.note(fn, "{}: now {:#x}-{:#x}", how, target.start, target.end)
        tr.event(Kind.MERGE, target.start, target.end, how)
        return target

    def _take_anon(self, target: VMA, other: VMA | None,
                   anon_vma: AnonVma | None = None) -> None:
        """Give the merged VMA an anon_vma if a part of it had one (dup_anon_vma())."""
        if target.anon_vma is None:
            if other is not None and other.anon_vma is not None:
                target.anon_vma, target.chain = other.anon_vma, other.chain
            elif anon_vma is not None:
                target.anon_vma, target.chain = anon_vma, (anon_vma,)

    def anon_vma_prepare(self, vma: VMA) -> None:
        """anon_vma_prepare(): give the VMA an anon_vma (at its first anonymous page, or when
        guard markers go in), shared with a neighbour it could later merge with."""
        if vma.anon_vma is None:
            vma.anon_vma = (self.find_mergeable_anon_vma(vma)
                            or AnonVma(next(self.kernel.anon_vma_ids)))
            vma.chain = (vma.anon_vma,)

    def find_mergeable_anon_vma(self, vma: VMA) -> AnonVma | None:
        """find_mergeable_anon_vma(): the anon_vma of a neighbour `vma` could merge with
        later (flags equal but for read/write/exec), so that an mprotect can re-merge them."""
        access = VM.VM_READ | VM.VM_WRITE | VM.VM_EXEC | self.profile.merge_ignore
        for near in (self.next_vma(vma), self.prev_vma(vma)):
            if near is None or near.anon_vma is None or near.file is not vma.file:
                continue
            lo, hi = (vma, near) if near.start >= vma.end else (near, vma)
            if lo.end != hi.start or hi.pgoff != lo.pgoff + lo.pages:
                continue
            if (vma.flags ^ near.flags) & ~access:
                continue
            # 2.6.34 "Simplify and comment on anon_vma re-use for anon_vma_prepare()".
            if self.profile.anon_vma_chain and len(near.chain) != 1:
                continue  # reusable_anon_vma(): the neighbour's chain must be singular
            if self.profile.anon_reuse_asks_merge and near.vm_ops_close:
                continue
            return near.anon_vma
        return None

    # -- page table -----------------------------------------------------------------------

    def zap_range(self, start: int, end: int) -> int:
        """zap_page_range(): drop the PTEs of [start, end); returns how many there were."""
        vpns = list(self.ptes.irange(start >> PAGE_SHIFT, (end >> PAGE_SHIFT) - 1))
        for vpn in vpns:
            page = self.ptes.pop(vpn)
            page.mapcount -= 1
            self.kernel.ksm.page_unmapped(self, page)
        return len(vpns)

    # -- mmap, munmap, mprotect -------------------------------------------------------------

    def get_unmapped_area(self, length: int, hint: int, fixed: bool, align: int,
                          anon: bool = False) -> int:
        """__get_unmapped_area(): a fixed address as it is, any other below MMAP_BASE by
        thp_get_unmapped_area(); or -ENOMEM / -EINVAL. `anon`: a private anonymous mapping (no
        file, not MAP_SHARED)."""
        if fixed:
            if hint > TASK_SIZE - length:
                return -errno.ENOMEM
            return -errno.EINVAL if hint % align else hint
        gap = self.profile.stack_guard_gap  # 4.12 "mm: larger stack guard gap, between vmas"

        def search(n: int, h: int) -> int:
            return arch_get_unmapped_area_topdown(
                n, h, align, self._down, self.find_vma,
                lambda v: v.start - gap if v.flags & VM.VM_GROWSDOWN else v.start,
                MMAP_MIN_ADDR, MMAP_BASE, TASK_SIZE)
        return thp_get_unmapped_area(length, hint, anon and self.profile.thp_aligned_anon,
                                     search)

    def _free(self, addr: int, length: int) -> bool:
        vma = self.find_vma(addr)
        return vma is None or vma.start >= addr + length

    def do_munmap(self, start: int, length: int, tr: Trace) -> int:
        """do_munmap(): remove [start, start+len), splitting the VMAs at its ends."""
        p = self.profile
        fn = p.fn("do_munmap")
        if start % PAGE_SIZE or start > TASK_SIZE or length > TASK_SIZE - start:
            tr.note(fn, "start unaligned or range beyond TASK_SIZE: EINVAL")
            return -errno.EINVAL
        length = page_align(length)
        if length == 0:
            tr.note(fn, "len 0: EINVAL")
            return -errno.EINVAL
        end = start + length
        vma = self.find_vma(start)
        if vma is None or vma.start >= end:
            tr.note(fn, "nothing mapped in the range: 0")
            return 0
        with tr.enter(fn, f"[{start:#x}, {end:#x})"):
            if start > vma.start:
                # 2.6.32 split_vma() checks the count itself; 2.6.33 ("mmap: don't return ENOMEM
                # when mapcount is temporarily exceeded in munmap()") moved the check here so
                # that a split at the far end which only removes a VMA is not refused.
                if (not p.munmap_split_checks_count and end < vma.end
                        and self.map_count >= self.kernel.sysctl["max_map_count"]):
                    tr.note(fn, "splitting at both ends would pass max_map_count: ENOMEM")
                    tr.event(Kind.FAIL, start, end, Fail.MAX_MAP_COUNT)
                    return -errno.ENOMEM
                err = self.split_vma(vma, start, False, tr, p.munmap_split_checks_count)
                if err:
                    return err
            last = self.find_vma(end)
            if last is not None and last.start < end < last.end:
                err = self.split_vma(last, end, True, tr, p.munmap_split_checks_count)
                if err:
                    return err
            while (vma := self.find_vma(start)) is not None and vma.start < end:
                self.zap_range(vma.start, vma.end)
                self.guards.difference_update(range(vma.start >> PAGE_SHIFT,
                                                    vma.end >> PAGE_SHIFT))
                self.remove(vma)
                self.release_file(vma)
                tr.note("unmap_region", f"removed {vma.start:#x}-{vma.end:#x}")
                tr.event(Kind.UNMAP, vma.start, vma.end)
        return 0

    def release_file(self, vma: VMA) -> None:
        """Give back a hugetlbfs file's reserved huge pages once no VMA maps it."""
        f = vma.file
        if f is not None and f.huge_reserved and not self.kernel.file_mapped(f):
            self.kernel.hugepages_reserved -= f.huge_reserved
            f.huge_reserved = 0

    def do_mmap(self, addr: int, length: int, prot: int, flags: int, file: File | None,
                offset: int, tr: Trace) -> int:
        """do_mmap_pgoff() + mmap_region(): map a range; returns its address or -errno."""
        p = self.profile
        k = self.kernel
        fn = p.fn("do_mmap_pgoff")
        if offset % PAGE_SIZE:
            tr.note("sys_mmap", "offset not page aligned: EINVAL")
            return -errno.EINVAL
        if flags & MAP.MAP_ANONYMOUS:
            file = None
        elif file is None:
            tr.note("sys_mmap", "no MAP_ANONYMOUS and no file: EBADF")
            return -errno.EBADF
        if not p.hugetlb_in_do_mmap and flags & MAP.MAP_HUGETLB:
            # 6.12 mm/mmap.c ksys_mmap_pgoff(): before do_mmap(), a file must be on hugetlbfs.
            if file is not None and not (p.map_hugetlb_hugetlbfs_files
                                         and file.kind == "hugetlb"):
                tr.note("ksys_mmap_pgoff", "MAP_HUGETLB with a file not on hugetlbfs: EINVAL")
                return -errno.EINVAL
            if file is None:
                length, file = self._hugetlb_file_setup(length, "ksys_mmap_pgoff", tr)
        if length == 0:
            tr.note(fn, "len 0: EINVAL")
            return -errno.EINVAL
        length = page_align(length)
        # 6.12 mm/mmap.c do_mmap() refuses only a len that aligns to 0; __get_unmapped_area()
        # checks TASK_SIZE.
        if length == 0 or (p.mmap_len_checked_in_do_mmap and length > TASK_SIZE):
            # v2.6.32 do_mmap_pgoff(): "if (!len || len > TASK_SIZE) return -ENOMEM;"
            tr.note(fn, "len wraps when page-aligned or exceeds TASK_SIZE: ENOMEM")
            return -errno.ENOMEM
        pgoff = offset >> PAGE_SHIFT
        if pgoff + (length >> PAGE_SHIFT) >= 2**64:
            return -errno.EOVERFLOW
        if self.map_count > k.sysctl["max_map_count"]:
            tr.note(fn, "map_count above max_map_count: ENOMEM")
            return -errno.ENOMEM
        if p.hugetlb_in_do_mmap and flags & MAP.MAP_HUGETLB:
            # v2.6.32 do_mmap_pgoff(): "if (flags & MAP_HUGETLB) { ... if (file) return
            # -EINVAL; ... file = hugetlb_file_setup(...)".
            if file is not None:
                tr.note(fn, "MAP_HUGETLB with a file: EINVAL")
                return -errno.EINVAL
            length, file = self._hugetlb_file_setup(length, fn, tr)
        fixed = bool(flags & MAP.MAP_FIXED)
        # 4.17 "mm: introduce MAP_FIXED_NOREPLACE" (a4ff8e8620d3).
        noreplace = bool(flags & MAP.MAP_FIXED_NOREPLACE) and p.fixed_noreplace
        if not fixed and not noreplace:
            addr = round_hint_to_min(addr)
        huge = file is not None and file.kind == "hugetlb"
        align = HPAGE_SIZE if huge else PAGE_SIZE
        if huge and (fixed or noreplace) and addr % HPAGE_SIZE:
            tr.note("hugetlb_get_unmapped_area", "address not huge-page aligned: EINVAL")
            return -errno.EINVAL
        # __get_unmapped_area(): "if (file) ... else if (flags & MAP_SHARED)" shmem's.
        got = self.get_unmapped_area(length, addr, fixed or noreplace,
                                     PAGE_SIZE if fixed else align,
                                     file is None and not flags & MAP.MAP_SHARED)
        if got < 0:
            tr.note("get_unmapped_area", f"{errno_name(got)}")
            return got
        addr = got
        if noreplace and not self._free(addr, length):
            tr.note(fn, "MAP_FIXED_NOREPLACE and the range is in use: EEXIST")
            return -errno.EEXIST
        if addr < MMAP_MIN_ADDR:
            tr.note(p.fn("security_file_mmap"), f"below mmap_min_addr {MMAP_MIN_ADDR:#x}: EPERM")
            return -errno.EPERM
        vm_flags = (calc_vm_prot_bits(prot) | VM.VM_MAYREAD | VM.VM_MAYWRITE | VM.VM_MAYEXEC)
        if flags & MAP.MAP_GROWSDOWN:
            vm_flags |= VM.VM_GROWSDOWN
        if flags & MAP.MAP_LOCKED:
            vm_flags |= VM.VM_LOCKED
        # MAP_TYPE is 0xf; MAP_SHARED_VALIDATE (3) is a map type from 4.15 ("mm: introduce
        # MAP_SHARED_VALIDATE, a mechanism to safely define new mmap flags", 1c9725974074).
        mtype = flags & 0xF
        shared = mtype == MAP.MAP_SHARED or (mtype == MAP.MAP_SHARED_VALIDATE
                                             and p.map_shared_validate)
        if not shared and mtype != MAP.MAP_PRIVATE:
            tr.note(fn, "neither MAP_SHARED nor MAP_PRIVATE: EINVAL")
            return -errno.EINVAL
        if shared and file is not None and prot & PROT.PROT_WRITE and not file.writable:
            tr.note(fn, "MAP_SHARED, PROT_WRITE, file open read-only: EACCES")
            return -errno.EACCES
        # After the MAP_SHARED checks (EACCES first), as the MAP_PRIVATE case they fall into.
        # 6.12 mm/mmap.c do_mmap(): "if (vm_flags & (VM_GROWSDOWN|VM_GROWSUP))" for a file
        # or shared anonymous mapping.
        if (p.growsdown_private_anon_only and vm_flags & VM.VM_GROWSDOWN
                and (file is not None or shared)):
            what = "file" if file is not None else "shared anonymous"
            tr.note(fn, f"MAP_GROWSDOWN on a {what} mapping: EINVAL")
            return -errno.EINVAL
        if shared:
            vm_flags |= VM.VM_SHARED | VM.VM_MAYSHARE
            if file is None:
                pgoff = 0
            elif not file.writable:
                vm_flags &= ~(VM.VM_MAYWRITE | VM.VM_SHARED)
        elif file is None:
            pgoff = addr >> PAGE_SHIFT
        got = self.mmap_region(file, addr, length, flags, vm_flags, pgoff, tr)
        if got >= 0 and (flags & MAP.MAP_LOCKED or (
                flags & MAP.MAP_POPULATE and not flags & MAP.MAP_NONBLOCK)):
            vma = self.vma_at(got)
            if vma is None or not vma.flags & (VM.VM_IO | VM.VM_PFNMAP):
                k.mm_populate(self, got, got + length, tr)
                tr.note(p.fn("make_pages_present"), "MAP_LOCKED or MAP_POPULATE: pages "
                        "faulted in")
        return got

    def _hugetlb_file_setup(self, length: int, fn: str, tr: Trace) -> tuple[int, File]:
        """hugetlb_file_setup() for MAP_HUGETLB: an unlinked hugetlbfs file, the length
        rounded up to whole huge pages."""
        length = (length + HPAGE_SIZE - 1) // HPAGE_SIZE * HPAGE_SIZE
        file = File("/anon_hugepage", length, kind="hugetlb", fs="hugetlbfs", deleted=True,
                    ino=next(self.kernel.inos))
        tr.note(fn, "MAP_HUGETLB: hugetlb_file_setup(), length rounded to 2 MiB")
        return length, file

    def mmap_region(self, file: File | None, addr: int, length: int, flags: int, vm_flags: VM,
                    pgoff: int, tr: Trace) -> int:
        """mmap_region(): clear old mappings, then merge with a neighbour or add a VMA."""
        k = self.kernel
        end = addr + length
        with tr.enter("mmap_region", f"[{addr:#x}, {end:#x})"):
            if not self._free(addr, length):
                if self.do_munmap(addr, length, tr):
                    return -errno.ENOMEM
            if flags & MAP.MAP_NORESERVE:
                vm_flags |= VM.VM_NORESERVE
            huge = file is not None and file.kind == "hugetlb"
            charged = vm_flags & (VM.VM_NORESERVE | VM.VM_SHARED | VM.VM_WRITE)
            if not huge and charged == VM.VM_WRITE:
                vm_flags |= VM.VM_ACCOUNT  # accountable_mapping()
            # prctl(PR_SET_MEMORY_MERGE): ksm_vma_flags(), before the merge attempt where
            # can_set_ksm_flags_early() (anonymous and shmem mappings, 6.17, "mm: prevent KSM
            # from breaking VMA merging for new VMAs"), else after it.
            merge_any = bool(self.flags & MMF.MMF_VM_MERGE_ANY)
            early = self.profile.merge_any_flags_before_merge and (
                file is None or file.fs == "tmpfs")
            if merge_any and early:
                vm_flags = k.ksm_vma_flags(self, file, vm_flags, tr)
            _, prev = self.find_vma_prev(addr)
            shared_anon = file is None and vm_flags & VM.VM_SHARED
            if not shared_anon:
                merged = self.vma_merge(prev, addr, end, vm_flags, file, pgoff, None, None, tr)
                if merged is not None:
                    return addr
            if file is not None and vm_flags & VM.VM_GROWSDOWN:
                tr.note("mmap_region", "MAP_GROWSDOWN on a file mapping: EINVAL "
                        "(the old mappings are gone already)")
                return -errno.EINVAL
            if shared_anon:
                file = File("/dev/zero", length, kind="shmem", fs="tmpfs", deleted=True,
                            ino=next(k.inos))
                tr.note("shmem_zero_setup", "shared anonymous memory is a tmpfs file")
            elif file is not None and file.kind == "device":
                vm_flags |= file.vm_flags
                tr.note("f_op->mmap", f"driver sets {flag_names(file.vm_flags)}")
                if file.remap_pfn:
                    vm_flags, pgoff = self._remap_pfn_range(file, vm_flags, pgoff, tr)
            elif file is not None and not huge and self.profile.file_mmap_flags:
                vm_flags |= self.profile.file_mmap_flags
                tr.note("f_op->mmap", f"sets {flag_names(self.profile.file_mmap_flags)}")
            elif huge and file is not None:
                # hugetlbfs_file_mmap() -> hugetlb_reserve_pages(), after the old mappings
                # are gone: a failure leaves the range unmapped. VM_NORESERVE reserves none.
                need = 0 if vm_flags & VM.VM_NORESERVE else length // HPAGE_SIZE
                free = k.sysctl["nr_hugepages"] - k.hugepages_reserved
                if free < need:
                    tr.note("hugetlb_reserve_pages",
                            f"{need} huge pages needed, {free} free: ENOMEM")
                    return -errno.ENOMEM
                vm_flags |= self.profile.hugetlb_flags
                file.huge_reserved = need
                k.hugepages_reserved += need
                tr.note("hugetlbfs_file_mmap", f"sets {flag_names(self.profile.hugetlb_flags)}")
            if merge_any and not early:
                vm_flags = k.ksm_vma_flags(self, file, vm_flags, tr)
            vma = VMA(addr, end, vm_flags, pgoff, file)
            self.insert(vma)
            tr.note("vma_link", f"new VMA {addr:#x}-{end:#x}, map_count {self.map_count}")
            tr.event(Kind.MAP, addr, end)
            refused = vm_flags & self.profile.mlock_refused
            if vm_flags & VM.VM_LOCKED and refused:
                vma.flags &= ~VM.VM_LOCKED
                tr.note(self.profile.fn("mlock_vma_pages_range"),
                        f"{flag_names(refused)}: VM_LOCKED cleared (\"and don't come back!\")")
        return addr

    def _remap_pfn_range(self, file: File, vm_flags: VM, pgoff: int,
                         tr: Trace) -> tuple[VM, int]:
        """remap_pfn_range() of the whole VMA from the driver's ->mmap(): pfn is the device's
        first frame plus the file offset. v2.6.32 sets vm_pgoff = pfn and VM_PFN_AT_MMAP
        (already in the profile's remap_pfn_flags); 6.x sets vm_pgoff = pfn only on a COW
        mapping (is_cow_mapping(): private with VM_MAYWRITE)."""
        pfn = file.pfn + pgoff
        cow = vm_flags & (VM.VM_SHARED | VM.VM_MAYWRITE) == VM.VM_MAYWRITE
        # 3.7 "mm, x86, pat: rework linear pfn-mmap tracking": only a COW mapping.
        if self.profile.remap_pfn_pgoff_always or cow:
            tr.note("remap_pfn_range", f"vm_pgoff = pfn {pfn:#x}")
            return vm_flags, pfn
        return vm_flags, pgoff

    def mprotect(self, start: int, length: int, prot: int, tr: Trace) -> int:
        """sys_mprotect() with mprotect_fixup(): change protection up to the first hole.

        PROT_GROWSDOWN extends the change down to the start of a VM_GROWSDOWN VMA;
        PROT_GROWSUP needs VM_GROWSUP, which x86 never sets."""
        p = self.profile
        fn = p.fn("sys_mprotect")
        grows = prot & (PROT.PROT_GROWSDOWN | PROT.PROT_GROWSUP)
        prot &= ~grows
        if grows == PROT.PROT_GROWSDOWN | PROT.PROT_GROWSUP:
            tr.note(fn, "PROT_GROWSDOWN and PROT_GROWSUP together: EINVAL")
            return -errno.EINVAL
        if start % PAGE_SIZE:
            tr.note(fn, "start not page aligned: EINVAL")
            return -errno.EINVAL
        if length == 0:
            tr.note(fn, "len 0: 0")
            return 0
        length = page_align(length)
        end = start + length
        if length == 0 or end > ULONG_MAX:
            tr.note(fn, "range wraps: ENOMEM")
            return -errno.ENOMEM
        if prot & ~(PROT.PROT_READ | PROT.PROT_WRITE | PROT.PROT_EXEC | PROT.PROT_SEM):
            tr.note(fn, "unknown prot bits: EINVAL")
            return -errno.EINVAL
        new_prot = calc_vm_prot_bits(prot)
        vma, prev = self.find_vma_prev(start)
        if vma is None or (vma.start > start and not grows & PROT.PROT_GROWSDOWN) or (
                grows & PROT.PROT_GROWSDOWN and vma.start >= end):
            tr.note(fn, "start is not mapped: ENOMEM")
            return -errno.ENOMEM
        if grows & PROT.PROT_GROWSDOWN:
            start = vma.start
            if not vma.flags & VM.VM_GROWSDOWN:
                tr.note(fn, "PROT_GROWSDOWN on a VMA that is not VM_GROWSDOWN: EINVAL")
                return -errno.EINVAL
        elif grows & PROT.PROT_GROWSUP:
            end = vma.end
            if not vma.flags & VM.VM_GROWSUP:
                tr.note(fn, "PROT_GROWSUP on a VMA that is not VM_GROWSUP: EINVAL")
                return -errno.EINVAL
        if start > vma.start:
            prev = vma
        nstart = start
        with tr.enter(fn, f"[{start:#x}, {end:#x})"):
            while True:
                rwx = VM.VM_READ | VM.VM_WRITE | VM.VM_EXEC
                newflags = new_prot | (vma.flags & ~rwx)
                if (newflags & ~VM(int(newflags) >> 4)) & rwx:
                    tr.note(fn, "asks for a right the VMA's VM_MAY* bits forbid: EACCES")
                    return -errno.EACCES
                tmp = min(vma.end, end)
                err, prev = self.mprotect_fixup(vma, prev, nstart, tmp, newflags, tr)
                if err:
                    return err
                nstart = tmp
                if prev is not None and nstart < prev.end:
                    nstart = prev.end
                if nstart >= end:
                    return 0
                nxt = self.next_vma(prev) if prev is not None else None
                if nxt is None or nxt.start != nstart:
                    tr.note(fn, f"hole at {nstart:#x}: ENOMEM (the part before it is changed)")
                    return -errno.ENOMEM
                vma = nxt

    def mprotect_fixup(self, vma: VMA, prev: VMA | None, start: int, end: int, newflags: VM,
                       tr: Trace) -> tuple[int, VMA | None]:
        """mprotect_fixup(): give [start, end) of `vma` the new flags, merging or splitting."""
        p = self.profile
        old = vma.flags
        if newflags == old:
            tr.note("mprotect_fixup", "flags unchanged")
            return 0, vma
        if newflags & VM.VM_WRITE:
            if not old & (VM.VM_ACCOUNT | VM.VM_WRITE | VM.VM_HUGETLB | VM.VM_SHARED
                          | VM.VM_NORESERVE):
                newflags |= VM.VM_ACCOUNT
                tr.note("mprotect_fixup", "private mapping made writable: charged, VM_ACCOUNT")
        # 6.7 "mm/mprotect: allow unfaulted VMAs to be unaccounted on mprotect()".
        elif (p.mprotect_unaccounts and old & VM.VM_ACCOUNT and vma.file is None
              and vma.anon_vma is None):
            newflags &= ~VM.VM_ACCOUNT
            tr.note("mprotect_fixup", "never-faulted anonymous VMA loses write: VM_ACCOUNT dropped")
        return self.modify_flags(vma, prev, start, end, newflags, tr)

    def modify_flags(self, vma: VMA, prev: VMA | None, start: int, end: int, newflags: VM,
                     tr: Trace) -> tuple[int, VMA | None]:
        """vma_merge() or split_vma() x2, then set the flags (madvise_behavior() tail).

        Returns (error, the new prev). On a split failure the flags are left as they were.
        """
        merged = self.vma_merge(prev, start, end, newflags, vma.file, vma.pgoff_at(start),
                                vma.anon_vma, vma, tr)
        if merged is None:
            prev = vma
            if start != vma.start:
                err = self.split_vma(vma, start, True, tr)
                if err:
                    return err, prev
            if end != vma.end:
                err = self.split_vma(vma, end, False, tr)
                if err:
                    return err, prev
            merged = vma
        before = int(merged.flags)
        sticky = self._sticky
        merged.flags = as_vm(int(newflags) | (before & sticky)) if sticky else newflags
        if before != newflags:
            tr.event(Kind.FLAGS, merged.start, merged.end, _flags_change(before, int(newflags)))
        return 0, merged


@functools.lru_cache(maxsize=4096)
def _flags_change(before: int, after: int) -> str:
    """'-VM_READ +VM_MERGEABLE': the flags a change takes away and adds."""
    return f"{flag_names(before & ~after, '-')} {flag_names(after & ~before, '+')}".strip()


@functools.lru_cache(maxsize=4096)
def flag_names(flags: int, sign: str = "") -> str:
    """'VM_SHARED|VM_MERGEABLE' (with a sign before each name if given)."""
    names = [f"{sign}{f.name}" for f in VM if f and flags & f and f.name]
    return "|".join(names) if not sign else " ".join(names)

