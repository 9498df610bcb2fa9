"""Merging pages (mm/ksm.c): try_to_merge_one_page() and the functions built on it, and
break_cow(), which undoes a merge by faulting a private copy."""

from __future__ import annotations

import errno

from ..ksm import RmapItem, break_ksm
from ..mm import MM, VMA, Page
from ..thp import HugePage
from .base import WHERE
from .trees import Trees

#: The KSM page of a merge in progress: try_to_merge_one_page() set PageKsm, the stable node
#: is not linked yet (folio_set_stable_node(folio, NULL)).
PENDING = object()


class Merge(Trees):
    """try_to_merge_*() and break_cow()."""

    #: The huge page of the unstable tree's page while try_to_merge_two_pages() merges the
    #: scanned page: ksmd's reference to it makes splitting that huge page fail.
    _pinned_huge: HugePage | None = None

    def try_to_merge_one_page(self, mm: MM, vma: VMA, vpn: int, page: Page,
                              kpage: Page | None) -> int:
        """try_to_merge_one_page(): write-protect `page` and map `kpage` instead (kpage None:
        `page` itself becomes a KSM page)."""
        if page is kpage:  # ksm page forked
            return 0
        if not page.anon:
            return -errno.EFAULT
        if page.ksm is not None and self.profile.merge_refuses_ksm_page:
            # v2.6.32 mm/ksm.c 770: write_protect_page() -> page_address_in_vma() (mm/rmap.c
            # 250-253) compares the VMA's anon_vma with the page's, NULL for a KSM page.
            if self._tr is not None:
                self._note(1, "write_protect_page", "page_address_in_vma(): a KSM page has "
                           "no anon_vma: -EFAULT, not merged")
            return -errno.EFAULT
        k = self.kernel
        thp = k.thp
        if thp.large:
            huge = thp.folio_of(page)
            if huge is not None:
                # 6.18 try_to_merge_one_page(): "if (folio_test_large(folio)) { if
                # (split_huge_page(page)) goto out_unlock;" (ksmbook.thp).
                if huge is self._pinned_huge:
                    if self._tr is not None:
                        self._note(1, "split_huge_page", "fails: ksmd holds a second reference "
                                   "to this huge page (the unstable tree's page)")
                    return -errno.EFAULT
                self._note_split(huge.start, thp.split_huge_page(mm, huge))
        if k.injected and k.should_fail("write_protect_page"):
            # write_protect_page(): "Check that no O_DIRECT or similar I/O is in progress on
            # the page": page_mapcount + 2 (+1 swapcache) != page_count (v2.6.32 mm/ksm.c
            # 645-652; 6.18 folio_mapcount() + 1 + swapped != folio_ref_count()).
            if self._tr is not None:
                self._note(1, "write_protect_page", "the page has an extra reference (I/O in "
                           "progress): -EFAULT, not merged")
            return -errno.EFAULT
        if mm.ptes.get(vpn) is not page:
            # write_protect_page(): page_vma_mapped_walk() finds the page no longer mapped
            # there (a split just mapped the zero page in its place).
            return -errno.EFAULT
        if kpage is None:
            page.ksm = PENDING
            return 0
        if page.content != kpage.content:  # pages_identical()
            return -errno.EFAULT
        self.replace_page(mm, vpn, page, kpage)
        return 0

    def _note_split(self, start: int, zeroed: int) -> None:
        if self.ks.unstable and not self.ks.unstable_exact:
            # Pages of unstable-tree nodes may have become the zero page mid-batch: the rest
            # of the pass walks the kernel's red-black tree.
            self._unstable_build_rbtree()
        if self._tr is not None:
            self._note(1, "split_huge_page", "the huge page at {:#x} is split into 512 small "
                       "pages; its {} all-zero ones now map the zero page", start, zeroed)

    def replace_page(self, mm: MM, vpn: int, page: Page, kpage: Page) -> None:
        """replace_page(): repoint the pte from `page` to the KSM page (or the zero page). Its
        pte_same() check cannot fail here: nothing runs since write_protect_page()'s."""
        ks = self.ks
        mm.ptes[vpn] = kpage
        kpage.mapcount += 1
        if kpage is ks.zero_page:
            ks.map_zero_page(mm)
        page.mapcount -= 1

    def try_to_merge_with_ksm_page(self, item: RmapItem, page: Page,
                                   kpage: Page | None) -> int:
        """try_to_merge_with_ksm_page(): merge the item's page into `kpage`."""
        mm = item.slot.mm
        vpn = item.vpn
        vma = self.find_mergeable_vma(mm, vpn)
        if vma is None:
            return -errno.EFAULT
        err = self.try_to_merge_one_page(mm, vma, vpn, page, kpage)
        if err:
            return err
        if item.flags and self.profile.merge_unlinks_rmap_item:
            # 3.9 "ksm: shrink 32-bit rmap_item back to 32 bytes" (bc56620b4934): "Unstable
            # nid is in union with stable anon_vma: remove first".
            self.remove_rmap_item_from_tree(item)
        return 0

    def try_to_merge_with_zero_page(self, item: RmapItem, page: Page) -> int:
        """try_to_merge_with_zero_page() (use_zero_pages): map the shared zero page instead
        of a page with the zero page's checksum. 0 if done (or the VMA went), else -EFAULT."""
        mm = item.slot.mm
        vma = self.find_mergeable_vma(mm, item.vpn)
        if vma is None:
            return 0
        err = self.try_to_merge_one_page(mm, vma, item.vpn, page, self.ks.zero_page)
        if not err and self._tr is not None:
            self._note(1, "try_to_merge_with_zero_page",
                       "zero-filled: mapped the zero page, ksm_zero_pages+1")
        return err

    def try_to_merge_two_pages(self, item: RmapItem, page: Page, tree_item: RmapItem,
                               tree_page: Page) -> Page | None:
        """try_to_merge_two_pages(): make one KSM page of two identical pages."""
        ks = self.ks
        if self.profile.max_kernel_pages:
            # 2.6.32: "The number of nodes in the stable tree is the number of kernel pages that
            # we hold"; gone in 2.6.33 ("ksm: remove unswappable max_kernel_pages").
            limit = int(ks.knobs["max_kernel_pages"])
            if limit and limit <= ks.pages_shared:
                if self._tr is not None:
                    self._note(1, "try_to_merge_two_pages",
                               "max_kernel_pages {} reached: no merge", limit)
                return None
        thp = self.kernel.thp
        # ksmd holds a reference to tree_page too: if it is a subpage of the same huge page as
        # `page`, the split for `page` fails (ksmbook.thp).
        pinned = thp.folio_of(tree_page)
        if self.profile.ksm_page_in_place:
            # 2.6.33 "ksm: share anon page without allocating": `page` becomes the KSM page.
            self._pinned_huge = pinned
            try:
                err = self.try_to_merge_with_ksm_page(item, page, None)
            finally:
                self._pinned_huge = None
            kpage = page
        else:
            # 2.6.32 copies the page into a newly allocated kernel page.
            kpage = Page(page.content, mapcount=0, anon=True, id=next(self.kernel.page_ids))
            kpage.ksm = PENDING
            err = self.try_to_merge_with_ksm_page(item, page, kpage)
        if not err:
            err = self.try_to_merge_with_ksm_page(tree_item, tree_page, kpage)
            if err:
                # "we have a ksm page with only one pte pointing to it: so break it."
                self.break_cow(item)
        if self._tr is not None:
            if err:
                self._note(1, "try_to_merge_two_pages", "failed")
            else:
                self._note(1, "try_to_merge_two_pages", "merged into KSM page #{}", kpage.id)
        if err and pinned is not None and thp.folio_of(page) is pinned:
            # 6.18 cmp_and_merge_page(): "If both pages we tried to merge belong to the same
            # compound page ... split_huge_page failed. ... We will split the page now, but no
            # merging will take place."
            zeroed = thp.split_huge_page(item.slot.mm, pinned)
            self._note_split(pinned.start, zeroed)
        return None if err else kpage

    def break_cow(self, item: RmapItem) -> None:
        """break_cow(): break_ksm() at the item's address, if it is still mergeable."""
        mm = item.slot.mm
        vma = self.find_mergeable_vma(mm, item.vpn)
        if vma is not None:
            if self._tr is not None:
                self._note(1, "break_cow", WHERE, item)
            break_ksm(mm, vma, item.vpn, self._tr)
