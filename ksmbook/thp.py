"""Transparent huge pages of anonymous memory, and what KSM does to them (modern profile).

Linux has had THP since 2.6.38 ("thp: transparent hugepage core", 71e3aac0724f); 2.6.32 and
the seed have none, so only a kernel whose profile has ``thp`` gets huge pages here.

* /sys/kernel/mm/transparent_hugepage/enabled of the *simulated* kernel: ``k.thp.enabled``
  ("always", "madvise" as on this machine, or "never"); ``k.thp.write("always")`` parses as
  enabled_store() does. The host's file is only ever read.
* A write fault on an untouched page of a private anonymous VMA whose aligned 2 MiB range
  lies inside the VMA and has no page table yet, in mode "always" or in mode "madvise" with
  VM_HUGEPAGE (MADV_HUGEPAGE; VM_NOHUGEPAGE forbids it), allocates one zeroed huge page that
  a single PMD maps: do_huge_pmd_anonymous_page() (6.18 mm/huge_memory.c, via
  __handle_mm_fault() -> create_huge_pmd() when thp_vma_allowable_order() says so). Its 512
  subpages are the simulator's pages of that range; the fault is ``trace.Fault.HUGE_NEW``.
* ksmd scans every subpage of a huge page (folio_walk_start() gives the subpage; each is an
  anonymous candidate), and try_to_merge_one_page() splits the huge page before it merges one
  of them ("if (folio_test_large(folio)) { if (split_huge_page(page)) goto out_unlock;").
  Since 6.12 ("mm: remap unused subpages to shared zeropage when splitting isolated thp",
  b1f202060afe) a split maps every all-zero subpage to the shared zero page, which is no KSM
  candidate: on this machine a huge page with three written subpages keeps 12 kB of Rss
  after ksmd merged two of them.
* ``AnonHugePages`` (smaps, ``anon_huge_pages_kb``) counts the huge pages still mapped by a
  PMD: 2048 kB each.

* A read fault there maps the huge zero page read-only by one PMD (do_huge_pmd_anonymous_page()
  with transparent_hugepage/use_zero_page = 1, the default; its anon_vma is prepared first):
  ``Fault.HUGE_ZERO_MAP``. A write to it allocates a zeroed huge page in its place
  (do_huge_pmd_wp_page() -> do_huge_zero_wp_pmd(), "mm: Allocate THP on hugezeropage
  wp-fault"): ``Fault.HUGE_ZERO_COPY``. Once the PMD is split (munmap, MADV_DONTNEED or
  mprotect of part of it: __split_huge_zero_page_pmd()), its ptes are zero-page ptes and a
  write copies 4 KiB (``Fault.ZERO_COPY``); a VMA cut inside a PMD's range splits it for good
  (split_huge_pmd_address()). The huge zero page is in no Rss, no AnonHugePages and no KSM
  counter.

Not modelled (see notebooks/09-ksm-and-huge-pages.ipynb): khugepaged collapsing small pages
into huge ones later; the use_zero_page knob (always 1); mTHP sizes; defrag and allocation
failure (every huge page allocation succeeds); the deferred split queue (a huge page whose PMD
was split stays one folio until ksmd splits it); mremap moving a huge page (or the huge zero
PMD).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from .constants import PAGE_SHIFT, VM
from .mm import MM, VMA, Page

if TYPE_CHECKING:
    from .kernel import Kernel

__all__ = ["HPAGE_PMD_NR", "HPAGE_PMD_SIZE", "THP_MODES", "HugePage", "Thp",
           "anon_huge_pages_kb"]

HPAGE_PMD_SHIFT = 21
HPAGE_PMD_SIZE = 1 << HPAGE_PMD_SHIFT
HPAGE_PMD_NR = HPAGE_PMD_SIZE >> PAGE_SHIFT  # 512
_SUB = HPAGE_PMD_SHIFT - PAGE_SHIFT
THP_MODES = ("always", "madvise", "never")
THP_DIR = "/sys/kernel/mm/transparent_hugepage"


class HugePage:
    """An anonymous huge page (a PMD-size folio) and its 512 subpages, in address order."""

    __slots__ = ("hpn", "pages")

    def __init__(self, hpn: int, pages: list[Page]) -> None:
        self.hpn = hpn          # address >> 21 of the range it backs
        self.pages = pages

    @property
    def start(self) -> int:
        return self.hpn << HPAGE_PMD_SHIFT

    def __repr__(self) -> str:
        return f"HugePage({self.start:#x})"


class Thp:
    """The simulated kernel's THP state: the ``enabled`` mode and the PMD-mapped huge pages
    of each mm."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.enabled = "madvise"   # this machine's /sys/kernel/mm/transparent_hugepage/enabled
        self.pmds: dict[MM, dict[int, HugePage]] = {}
        #: Every subpage of a huge page not split yet (mapped by a PMD or, after a PMD split
        #: by munmap, mprotect, a COW fault, by ptes), by Page.id: folio_test_large().
        self.large: dict[int, HugePage] = {}
        #: The huge zero page (huge_zero_folio): its 512 subpages, #0 in the views.
        self.huge_zero = [Page(0, mapcount=0, anon=False, id=0) for _ in range(HPAGE_PMD_NR)]
        #: The PMDs that map the huge zero page, by mm: address >> 21 of each range.
        self.zero_pmds: dict[MM, set[int]] = {}
        self.splits = 0            # thp_split_page in /proc/vmstat
        self.faults = 0            # thp_fault_alloc in /proc/vmstat

    # -- /sys/kernel/mm/transparent_hugepage/enabled ----------------------------------------

    def read(self) -> str:
        """The file's text: "always [madvise] never"."""
        return " ".join(f"[{m}]" if m == self.enabled else m for m in THP_MODES) + "\n"

    def write(self, text: str) -> int:
        """enabled_store(): one of the three words (sysfs_streq(): one trailing newline)."""
        word = text.removesuffix("\n")
        if word not in THP_MODES:
            raise OSError(errno.EINVAL, f"Invalid argument: writing {text!r} to "
                          f"{THP_DIR}/enabled")
        self.enabled = word
        return len(text.encode())

    # -- the fault -----------------------------------------------------------------------

    def allowable(self, mm: MM, vma: VMA, addr: int) -> bool:
        """thp_vma_allowable_order() + thp_vma_suitable_order() for a PMD at `addr`, and the
        PMD still empty (no page table below it: no small page in the range)."""
        if not self.kernel.profile.thp or self.enabled == "never":
            return False
        flags = vma.flags
        if vma.file is not None or flags & (VM.VM_SHARED | VM.VM_HUGETLB | VM.VM_NOHUGEPAGE):
            return False
        if self.enabled == "madvise" and not flags & VM.VM_HUGEPAGE:
            return False
        hpn = addr >> HPAGE_PMD_SHIFT
        start = hpn << HPAGE_PMD_SHIFT
        if start < vma.start or start + HPAGE_PMD_SIZE > vma.end:
            return False
        first = start >> PAGE_SHIFT
        return not any(True for _ in mm.ptes.irange(first, first + HPAGE_PMD_NR - 1))

    def do_huge_pmd_anonymous_page(self, mm: MM, vma: VMA, addr: int) -> Page:
        """do_huge_pmd_anonymous_page(): a zeroed huge page mapped by one PMD; returns the
        subpage at `addr`."""
        hpn = addr >> HPAGE_PMD_SHIFT
        first = hpn << _SUB
        ids = self.kernel.page_ids
        pages = [Page(0, id=next(ids)) for _ in range(HPAGE_PMD_NR)]
        hp = HugePage(hpn, pages)
        for i, page in enumerate(pages):
            mm.ptes[first + i] = page
            self.large[page.id] = hp
        self.pmds.setdefault(mm, {})[hpn] = hp
        self.faults += 1
        return pages[(addr >> PAGE_SHIFT) - first]

    def map_huge_zero_pmd(self, mm: MM, addr: int) -> None:
        """set_huge_zero_folio() from do_huge_pmd_anonymous_page() on a read: one PMD maps
        the huge zero page."""
        hpn = addr >> HPAGE_PMD_SHIFT
        first = hpn << _SUB
        for i, page in enumerate(self.huge_zero):
            page.mapcount += 1
            mm.ptes[first + i] = page
        self.zero_pmds.setdefault(mm, set()).add(hpn)

    def huge_zero_pmd(self, mm: MM, vpn: int) -> bool:
        """is_huge_zero_pmd() for the PMD over `vpn` (a record whose range changed since, by
        munmap, MADV_DONTNEED or a VMA split, is dropped: the kernel split that PMD into ptes
        of the zero page then)."""
        hpns = self.zero_pmds.get(mm)
        hpn = vpn >> _SUB
        if not hpns or hpn not in hpns:
            return False
        if self._pmd_maps(mm, hpn, self.huge_zero):
            return True
        hpns.discard(hpn)
        return False

    def split_huge_pmd_address(self, mm: MM, addr: int) -> None:
        """split_huge_pmd_address() from vma_adjust_trans_huge(): a VMA cut at `addr` inside
        a PMD's range splits that PMD into ptes (of the huge page, or of the zero page), for
        good: VMAs merged back later do not make it a PMD again."""
        if addr & (HPAGE_PMD_SIZE - 1) and (self.pmds or self.zero_pmds):
            hpn = addr >> HPAGE_PMD_SHIFT
            self.pmds.get(mm, {}).pop(hpn, None)
            self.zero_pmds.get(mm, set()).discard(hpn)

    def do_huge_zero_wp_pmd(self, mm: MM, vma: VMA, addr: int) -> Page:
        """do_huge_zero_wp_pmd(): a write to the huge zero page maps a new zeroed huge page in
        its place; returns the subpage at `addr`."""
        hpn = addr >> HPAGE_PMD_SHIFT
        self.zero_pmds[mm].discard(hpn)
        for page in self.huge_zero:
            page.mapcount -= 1
        return self.do_huge_pmd_anonymous_page(mm, vma, addr)

    # -- what is PMD-mapped ------------------------------------------------------------------

    def folio_of(self, page: Page) -> HugePage | None:
        """The huge page `page` is a subpage of, while it is not split (folio_test_large())."""
        return self.large.get(page.id) if self.large else None

    def huge_page_of(self, mm: MM, vpn: int) -> HugePage | None:
        """The huge page that maps `vpn` in `mm` through a PMD, if any (a record whose range
        changed since, by munmap, a COW copy or a VMA split, is dropped: the kernel split that
        PMD then)."""
        pmds = self.pmds.get(mm, {})
        hp = pmds.get(vpn >> _SUB)
        if hp is None or self._pmd_maps(mm, hp.hpn, hp.pages):
            return hp
        del pmds[hp.hpn]
        return None

    def _pmd_maps(self, mm: MM, hpn: int, pages: list[Page]) -> bool:
        """The 2 MiB range `hpn` lies in one VMA of `mm`, and its ptes still map `pages`."""
        start = hpn << HPAGE_PMD_SHIFT
        vma = mm.vma_at(start)
        if vma is None or vma.end < start + HPAGE_PMD_SIZE:
            return False
        get, first = mm.ptes.get, hpn << _SUB
        return all(get(first + i) is page for i, page in enumerate(pages))

    def huge_pages(self, mm: MM) -> list[HugePage]:
        """The huge pages PMD-mapped in `mm`, in address order."""
        pmds = self.pmds.get(mm, {})
        return [hp for hpn in sorted(pmds) if (hp := self.huge_page_of(mm, hpn << _SUB))]

    def copy_huge_pmds(self, old: MM, new: MM) -> None:
        """copy_huge_pmd() from dup_mmap(): the child's PMD maps the parent's huge page too
        (write-protected in both; a later write splits the writer's PMD and copies 4 KiB), or
        the huge zero page."""
        for hp in self.huge_pages(old):
            if self._pmd_maps(new, hp.hpn, hp.pages):
                self.pmds.setdefault(new, {})[hp.hpn] = hp
        for hpn in sorted(self.zero_pmds.get(old, ())):
            if self.huge_zero_pmd(old, hpn << _SUB):
                self.zero_pmds.setdefault(new, set()).add(hpn)

    # -- ksmd's split --------------------------------------------------------------------------

    def split_huge_page(self, mm: MM, hp: HugePage) -> int:
        """split_huge_page(): the huge page becomes 512 small pages mapped by ptes in every mm
        that maps it; since 6.12 each all-zero one is replaced by the shared zero page
        (remap_page() with RMP_USE_SHARED_ZEROPAGE -> try_to_map_unused_to_zeropage()).
        Returns how many ptes of `mm` now map the zero page."""
        self.splits += 1
        for page in hp.pages:
            self.large.pop(page.id, None)
        for pmds in self.pmds.values():
            if pmds.get(hp.hpn) is hp:
                del pmds[hp.hpn]
        zeroed = 0
        for proc in self.kernel.processes:
            if proc.alive:
                count = self._remap_zero_subpages(proc.mm, hp)
                if proc.mm is mm:
                    zeroed = count
        self.kernel.ksm.pages_changed = True
        return zeroed

    def _remap_zero_subpages(self, mm: MM, hp: HugePage) -> int:
        vma = mm.vma_at(hp.start)
        if vma is None or vma.flags & VM.VM_LOCKED or vma.anon_vma is None:
            return 0
        first = hp.hpn << _SUB
        zero = self.kernel.zero_page
        ptes = mm.ptes
        zeroed = 0
        for i, page in enumerate(hp.pages):
            if page.content == 0 and ptes.get(first + i) is page:
                ptes[first + i] = zero
                page.mapcount -= 1
                zero.mapcount += 1
                zeroed += 1
        return zeroed


def anon_huge_pages_kb(mm: MM, vma: VMA | None = None) -> int:
    """AnonHugePages of smaps in kB: 2048 for each huge page mapped by a PMD (in `vma`, or in
    the whole mm as /proc/PID/smaps_rollup)."""
    thp: Thp = mm.kernel.thp
    pages = thp.huge_pages(mm)
    if vma is not None:
        pages = [hp for hp in pages if vma.start <= hp.start < vma.end]
    return len(pages) * (HPAGE_PMD_SIZE >> 10)
