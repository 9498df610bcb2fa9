"""Merging pages (mm/ksm.c): try_to_merge_one_page() and the functions built on it, and
break_cow(), which undoes a merge by faulting a private copy."""

from __future__ import annotations

import errno

from ..ksm import RmapItem, break_ksm
from ..mm import MM, VMA, Page
from .base import WHERE
from .trees import Trees

#: The KSM page of a merge in progress: try_to_merge_one_page() set PageKsm, the stable node
#: is not linked yet (folio_set_stable_node(folio, NULL)).
PENDING = object()


class Merge(Trees):
    """try_to_merge_*() and break_cow()."""

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
        if kpage is None:
            page.ksm = PENDING
            return 0
        if page.content != kpage.content:  # pages_identical()
            return -errno.EFAULT
        return self.replace_page(mm, vpn, page, kpage)

    def replace_page(self, mm: MM, vpn: int, page: Page, kpage: Page) -> int:
        """replace_page(): repoint the pte from `page` to the KSM page (or the zero page)."""
        ks = self.ks
        if mm.ptes.get(vpn) is not page:
            return -errno.EFAULT
        dict.__setitem__(mm.ptes, vpn, kpage)  # the key is there: SortedDict's keys stay
        kpage.mapcount += 1
        if kpage is ks.zero_page:
            ks.map_zero_page(mm)
        page.mapcount -= 1
        return 0

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
        if self.profile.ksm_page_in_place:
            # 2.6.33 "ksm: share anon page without allocating": `page` becomes the KSM page.
            err = self.try_to_merge_with_ksm_page(item, page, None)
            kpage = page
        else:
            # 2.6.32 copies the page into a new kernel page, at most max_kernel_pages of them.
            limit = int(ks.knobs.get("max_kernel_pages", 0))
            if limit and limit <= ks.pages_shared:
                if self._tr is not None:
                    self._note(1, "try_to_merge_two_pages",
                               "max_kernel_pages {} reached: no merge", limit)
                return None
            kpage = Page(page.content, mapcount=0, anon=True)
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
        return None if err else kpage

    def break_cow(self, item: RmapItem) -> None:
        """break_cow(): break_ksm() at the item's address, if it is still mergeable."""
        mm = item.slot.mm
        vma = self.find_mergeable_vma(mm, item.vpn)
        if vma is not None:
            if self._tr is not None:
                self._note(1, "break_cow", WHERE, item)
            break_ksm(mm, vma, item.vpn, self._tr)
