"""ksmd's two trees (mm/ksm.c): the stable tree of KSM pages and the unstable tree of pages
that stayed unchanged for one pass.

The kernel's trees are red-black trees ordered by memcmp() of the pages. The unstable tree is
modelled as such (``ksmbook.rbtree``, ordered by ``ksmbook.pages.memcmp_key``; see below); the
stable tree is a dict keyed by content (see the note in ``ksmbook.ksm`` on what that changes).
A stable-tree node is a `StableNode`: a separate struct stable_node since 2.6.33, the first
rmap_item of the KSM page (``node_item``) in 2.6.32.
"""

from __future__ import annotations

from ..constants import PAGE_SHIFT, VM
from ..ksm import SEQNR_MASK, STABLE_FLAG, UNSTABLE_FLAG, RmapItem, StableChain, StableNode
from ..mm import MM, VMA, Page
from ..pages import CONTENT_LIMIT, memcmp_key
from ..rbtree import RbRoot, rb_erase, rb_inorder, rb_insert_color, rb_link_node, rb_replace_node
from ..trace import StepForm
from .base import WHERE, KsmdBase

_MERGEABLE = int(VM.VM_MERGEABLE)


def _order(content: int) -> int:
    """memcmp() order of the pages (``ksmbook.pages.memcmp_key``); an int outside the page
    rule (no bytes behind it) sorts before (negative) or after every page, by value."""
    if 0 <= content < CONTENT_LIMIT:
        return memcmp_key(content)
    return content - 1 if content < 0 else content + CONTENT_LIMIT


_JOINS = StepForm(1, "stable_tree_append", WHERE + " joins KSM page #{1}: {2}+1", 3)
#: By depth (see `Trees.remove_rmap_item_from_tree`).
_LEAVES_UNSTABLE = tuple(StepForm(depth, "remove_rmap_item_from_tree",
                                  WHERE + " leaves the unstable tree: pages_unshared-1", 1)
                         for depth in (0, 1))
_NO_KSM_PAGE = StepForm(1, "stable_tree_search", "no KSM page of this content")
_FOUND = StepForm(1, "stable_tree_search", "found KSM page #{} ({} sharers)", 2)
_FORKED = WHERE + " maps the same physical page (forked): give up"
_IDENTICAL = "identical page at " + WHERE
_INSERTED = StepForm(1, "unstable_tree_search_insert", "no identical page: inserted, "
                     "pages_unshared+1")


class Trees(KsmdBase):
    """The stable and unstable trees and the lookups that feed them."""

    # -- the page behind an rmap_item ------------------------------------------------------

    def find_mergeable_vma(self, mm: MM, vpn: int) -> VMA | None:
        """find_mergeable_vma(): the VM_MERGEABLE VMA (with an anon_vma) at the address."""
        if mm.mm_users == 0:
            return None
        addr = vpn << PAGE_SHIFT
        vma = self._vma_cache.get(mm)
        if vma is None or not vma.start <= addr < vma.end:
            vma = mm.vma_at(addr)
            if vma is None:
                return None
            self._vma_cache[mm] = vma
        if not int.__and__(vma.flags, _MERGEABLE) or vma.anon_vma is None:
            return None
        return vma

    def get_mergeable_page(self, item: RmapItem) -> Page | None:
        """get_mergeable_page(): the anonymous page the item's address maps now."""
        mm = item.slot.mm
        if self.find_mergeable_vma(mm, item.vpn) is None:
            return None
        page = mm.ptes.get(item.vpn)
        return page if page is not None and page.anon else None

    # -- removing ----------------------------------------------------------------------------

    def remove_rmap_item_from_tree(self, item: RmapItem, depth: int = 1) -> None:
        """remove_rmap_item_from_tree(): unlink the item from the stable or unstable tree
        (`depth`: of its trace step, 0 while ksmd looks for the next page, 1 in
        cmp_and_merge_page())."""
        ks = self.ks
        flags = item.flags
        if flags == STABLE_FLAG:
            node = item.head
            assert node is not None
            # 2.6.33 "ksm: stable_node point to page and back" (08beca44dfb0).
            if self.profile.stable_node_objects:
                if node.kpage.mapcount <= 0:
                    # ksm_get_folio() finds the KSM page freed: the whole node goes.
                    self.remove_node_from_stable_tree(node)
                    return
                del node.items[item]
                if node.items:
                    ks.pages_sharing -= 1
                else:
                    ks.pages_shared -= 1
            else:
                # 2.6.32: the node is its first rmap_item; when that one leaves, the next
                # item takes its place in the tree ("ksm: separate stable_node", 2.6.33,
                # made the node a struct of its own).
                del node.items[item]
                if node.node_item is item:
                    if node.items:
                        node.node_item = next(reversed(node.items))
                        ks.pages_sharing -= 1
                    else:
                        self._stable_unlink(node)
                        ks.pages_shared -= 1
                else:
                    ks.pages_sharing -= 1
                item.oldchecksum = 0  # 2.6.32: oldchecksum shares storage with ->next
            item.slot.merging_pages -= 1
            item.head = None
            item.flags = 0
            if self._tr is not None:
                self._note(depth, "remove_rmap_item_from_tree",
                           WHERE + " leaves the stable node of KSM page #{1}",
                           item, node.kpage.id)
        elif flags == UNSTABLE_FLAG:
            age = (ks.seqnr - item.seqnr) & SEQNR_MASK
            assert age <= 1, "unstable rmap_item older than one pass"
            if age == 0:
                self._unstable_erase(item)
            ks.pages_unshared -= 1
            item.flags = 0
            if self._tr is not None:
                self._tr.records += (_LEAVES_UNSTABLE[depth], item)

    def remove_node_from_stable_tree(self, node: StableNode) -> None:
        """remove_node_from_stable_tree(): drop a stable node and all its items."""
        ks = self.ks
        last = len(node.items)
        for i, item in enumerate(node.items, 1):
            if i == last:
                ks.pages_shared -= 1
            else:
                ks.pages_sharing -= 1
            item.slot.merging_pages -= 1
            item.head = None
            item.flags = 0
        node.items.clear()
        ks.stale_nodes.discard(node)
        chain = node.chain
        if chain is not None:
            chain.dups.remove(node)
            node.chain = None
            ks.stable_node_dups -= 1
        elif ks.stable.get(node.content) is node:
            self._stable_unlink(node)
        if self._tr is not None:
            self._note(2, "remove_node_from_stable_tree",
                       "KSM page of content {} is gone: node and its {} items dropped",
                       node.content, last)

    # -- the stable tree -------------------------------------------------------------------
    #
    # The stable tree is kept as a dict by content and, with the same nodes, as the kernel's
    # red-black tree. While no KSM page in it has been freed, a search ends where a lookup by
    # content ends; once one has (``KsmState.stale_nodes``), searches walk the red-black tree
    # as stable_tree_search() and stable_tree_insert() do, removing each stale node they meet
    # and starting again. (The kernel's walk also prunes every stable_node chain it passes;
    # the lookup by content prunes only the chain it looks up.)

    def _stable_link(self, entry: StableNode | StableChain) -> None:
        """rb_link_node() + rb_insert_color() of the node of a content new to the tree."""
        ks = self.ks
        root = ks.stable_root
        key = _order(entry.content)
        parent, left, node = None, False, root.rb_node
        while node is not None:
            parent, left = node, key < _order(node.content)
            node = node.rb_left if left else node.rb_right
        rb_link_node(entry, parent, left, root)
        rb_insert_color(entry, root)
        ks.stable[entry.content] = entry

    def _stable_replace(self, old: StableNode | StableChain,
                        new: StableNode | StableChain) -> None:
        """rb_replace_node(): a node becomes a chain, or a chain collapses into its dup."""
        rb_replace_node(old, new, self.ks.stable_root)
        self.ks.stable[new.content] = new

    def _stable_unlink(self, entry: StableNode | StableChain) -> None:
        """rb_erase() of a node (or chain) of the tree."""
        rb_erase(entry, self.ks.stable_root)
        del self.ks.stable[entry.content]
        if isinstance(entry, StableNode):
            self.ks.stale_nodes.discard(entry)

    def _stable_walk(self, content: int, prune: bool) -> StableNode | None:
        """The node (or best dup) of `content` as the kernel's walk finds it: a stale node
        met on the way is removed and the walk starts again ("goto again"), and each chain
        met is pruned (chain_prune() when searching, chain() when inserting)."""
        ks = self.ks
        key = _order(content)
        node = ks.stable_root.rb_node
        while node is not None:
            if isinstance(node, StableChain):
                dup = self.stable_node_dup(node, prune)
                if dup is None:  # every dup was stale: the chain is gone
                    node = ks.stable_root.rb_node
                    continue
                here: StableNode | StableChain = node if ks.stable.get(node.content) is node \
                    else dup  # a chain left with one dup collapsed into it
                found = dup
            else:
                if self._stale(node):
                    self.remove_node_from_stable_tree(node)
                    node = ks.stable_root.rb_node
                    continue
                here = found = node
            here_key = _order(here.content)
            if key == here_key:
                return found
            node = here.rb_left if key < here_key else here.rb_right
        return None

    @staticmethod
    def _stale(node: StableNode) -> bool:
        """ksm_get_folio() fails: the KSM page has been freed."""
        return node.kpage.mapcount <= 0

    def stable_node_dup(self, chain: StableChain, prune: bool) -> StableNode | None:
        """stable_node_dup(): the best dup of a chain to share (pruning stale dups every
        stable_node_chains_prune_millisecs); collapses a chain left with one dup."""
        ks = self.ks
        prune_ms = int(ks.knobs["stable_node_chains_prune_millisecs"])
        if prune and ks.clock_ms >= chain.prune_time + prune_ms:
            chain.prune_time = ks.clock_ms
        else:
            prune = False
        # __is_page_sharing_candidate(dup): it has sharers and fewer than max_page_sharing.
        limit = int(ks.knobs["max_page_sharing"])
        found: StableNode | None = None
        found_len = 0
        dups = chain.dups
        i = 0
        while i < len(dups):
            dup = dups[i]
            if dup.kpage.mapcount <= 0:  # stale: it leaves `dups`
                self.remove_node_from_stable_tree(dup)
                continue
            i += 1
            n = len(dup.items)
            if found is None or (n and n < limit and (
                    not (found_len and found_len < limit) or n > found_len)):
                found = dup
                found_len = n
                if not prune and n and n < limit:
                    break
        if found is not None:
            if len(dups) == 1:
                self._stable_replace(chain, found)
                found.chain = None
                dups.clear()
                ks.stable_node_chains -= 1
                ks.stable_node_dups -= 1
            elif dups[0] is not found and found_len and found_len + 1 < limit:
                dups.remove(found)
                dups.insert(0, found)
        else:
            self._stable_unlink(chain)
            ks.stable_node_chains -= 1
        return found

    def _lookup_stable(self, content: int, prune: bool) -> StableNode | None:
        """The node (or best dup) of this content, after dropping stale ones ("goto again")."""
        ks = self.ks
        if ks.stale_nodes:
            return self._stable_walk(content, prune)
        while True:
            entry = ks.stable.get(content)
            if entry is None:
                return None
            if isinstance(entry, StableChain):
                dup = self.stable_node_dup(entry, prune)
                if dup is None:
                    continue
                return dup
            if self._stale(entry):
                self.remove_node_from_stable_tree(entry)
                continue
            return entry

    def stable_tree_search(self, page: Page) -> Page | None:
        """stable_tree_search(): the KSM page of equal content that can take one more sharer
        (its node is ``kpage.ksm``); the page itself if it is a forked KSM page."""
        # 2.6.33 "ksm: separate stable_node" (7b6ba2c7d3ba); the forked-page shortcut is
        # "ksm: stable_node point to page and back" (08beca44dfb0).
        if not self.profile.stable_node_objects:
            return self._stable_tree_search_rmap_item(page)
        tr = self._tr
        if type(page.ksm) is StableNode:
            if tr is not None:
                self._note(1, "stable_tree_search",
                           "ksm page forked: it is its own stable node's page")
            return page
        ks = self.ks
        entry = ks.stable.get(page.content)
        node: StableNode | None
        if ks.stale_nodes:
            node = self._lookup_stable(page.content, True)
        elif entry is None:
            node = None
        elif type(entry) is StableNode and entry.kpage.mapcount > 0:
            node = entry  # _lookup_stable()'s common cases: a node, a chain with a dup
        else:
            node = self.stable_node_dup(entry, True) if type(entry) is StableChain else None
            if node is None:
                node = self._lookup_stable(page.content, True)
        if node is None:
            if tr is not None:
                tr.records.append(_NO_KSM_PAGE)
            return None
        n = len(node.items)
        if not n or n >= int(ks.knobs["max_page_sharing"]):  # !__is_page_sharing_candidate()
            if tr is not None:
                self._note(1, "stable_tree_search",
                           "KSM page found but full ({} sharers, max_page_sharing {})",
                           len(node.items), self.ks.knobs["max_page_sharing"])
            return None
        if tr is not None:
            tr.records += (_FOUND, node.kpage.id, n)
        return node.kpage

    def _node_kpage_rmap_item(self, node: StableNode) -> Page | None:
        """The inner loop of 2.6.32's walks, whose tree nodes are rmap_items: get_ksm_page()
        of the node's rmap_item, dropping each one whose address no longer maps a KSM page
        (the next one takes its place in the tree); None once none is left."""
        while True:
            first = node.node_item
            assert first is not None
            kpage = self.get_mergeable_page(first)
            if kpage is not None and kpage.ksm is not None:
                return kpage
            if self._tr is not None:
                self._note(1, "stable_tree_search",
                           WHERE + " no longer maps a KSM page: dropped from the tree", first)
            self.remove_rmap_item_from_tree(first)
            if self.ks.stable.get(node.content) is not node:
                return None

    def _walk_rmap_items(self, content: int) -> tuple[bool, Page | None]:
        """2.6.32's walk of the stable tree to `content`: (False, None) when a node on the
        way had no rmap_item left ("if (!tree_rmap_item) return NULL"), else (True, the KSM
        page of that content or None)."""
        key = _order(content)
        node = self.ks.stable_root.rb_node
        while node is not None:
            kpage = self._node_kpage_rmap_item(node)
            if kpage is None:
                return False, None
            here = _order(kpage.content)
            if key == here:
                return True, kpage
            node = node.rb_left if key < here else node.rb_right
        return True, None

    def _stable_tree_search_rmap_item(self, page: Page) -> Page | None:
        """stable_tree_search() of 2.6.32, whose nodes are rmap_items: the KSM page is found
        through the node's address, and a node whose address no longer maps a KSM page is
        dropped on the way. While no KSM page lost a mapping (``KsmState.stale_nodes``), the
        walk ends where a lookup by content ends."""
        ks = self.ks
        tr = self._tr
        if ks.stale_nodes:
            _, kpage = self._walk_rmap_items(page.content)
            if tr is not None:
                if kpage is None:
                    tr.records.append(_NO_KSM_PAGE)
                else:
                    self._note(1, "stable_tree_search", "found KSM page #{}", kpage.id)
            return kpage
        while True:
            node = ks.stable.get(page.content)
            if node is None:
                if tr is not None:
                    tr.records.append(_NO_KSM_PAGE)
                return None
            assert isinstance(node, StableNode) and node.node_item is not None
            first = node.node_item
            kpage = self.get_mergeable_page(first)
            if kpage is not None and kpage.ksm is not None:
                break
            if tr is not None:
                self._note(1, "stable_tree_search",
                           WHERE + " no longer maps a KSM page: dropped from the tree",
                           first)
            self.remove_rmap_item_from_tree(first)
        if kpage.content != page.content:
            return None
        if tr is not None:
            self._note(1, "stable_tree_search", "found KSM page #{}", kpage.id)
        return kpage

    def stable_tree_insert(self, kpage: Page, tree_item: RmapItem) -> StableNode | None:
        """stable_tree_insert(): a node for a new KSM page; None if the tree already has a
        page of its content (2.6.32). Since 2.6.33 the node is a new struct stable_node, and
        since 4.13 a second KSM page of the same content turns the node into a chain of dups
        (stable_node_chains/dups); in 2.6.32 the node is `tree_item` itself."""
        ks = self.ks
        content = kpage.content
        if not self.profile.stable_node_objects:
            if ks.stale_nodes and not self._walk_rmap_items(content)[0]:
                return None  # a node on the way lost its last rmap_item
            if ks.stable.get(content) is not None:
                return None
            node = StableNode(content, kpage)
            node.node_item = tree_item
            self._stable_link(node)
            kpage.ksm = node
            node.items[tree_item] = None
            tree_item.head = node
            tree_item.flags = STABLE_FLAG
            tree_item.slot.merging_pages += 1
            ks.pages_shared += 1
            if self._tr is not None:
                self._note(1, "stable_tree_insert",
                           WHERE + " is the node of KSM page #{1}: pages_shared+1",
                           tree_item, kpage.id)
            return node
        need_chain = self._lookup_stable(content, False) is not None
        node = StableNode(content, kpage)
        if not need_chain:
            self._stable_link(node)
        else:
            entry = ks.stable[content]
            if isinstance(entry, StableNode):
                chain = StableChain(content, ks.clock_ms)
                ks.stable_node_chains += 1
                self._stable_replace(entry, chain)
                entry.chain = chain
                chain.dups.insert(0, entry)
                ks.stable_node_dups += 1
            else:
                chain = entry
            node.chain = chain
            chain.dups.insert(0, node)
            ks.stable_node_dups += 1
        kpage.ksm = node
        if self._tr is not None:
            if node.chain is not None:
                self._note(1, "stable_tree_insert",
                           "KSM page #{}: a new dup under a stable_node chain ({} dups)",
                           kpage.id, len(node.chain.dups))
            else:
                self._note(1, "stable_tree_insert", "KSM page #{}: a new node", kpage.id)
        return node

    def stable_tree_append(self, item: RmapItem, node: StableNode) -> None:
        """stable_tree_append(): hang the item off the node (the first one is "shared", the
        others "sharing")."""
        ks = self.ks
        items = node.items
        items[item] = None
        item.head = node
        item.flags = STABLE_FLAG
        if len(items) > 1:
            ks.pages_sharing += 1
            counter = "pages_sharing"
        else:
            ks.pages_shared += 1
            counter = "pages_shared"
        item.slot.merging_pages += 1
        tr = self._tr
        if tr is not None:
            tr.records += (_JOINS, item, node.kpage.id, counter)

    # -- the unstable tree -----------------------------------------------------------------
    #
    # The kernel's unstable tree is a red-black tree of rmap_items ordered by memcmp() of their
    # pages as they are *now*: a search compares with each node's current page and gives up
    # at a node whose page has gone. While every node's page is still there with the content
    # it was inserted with, that walk ends where a lookup by content ends, so the tree is kept
    # as a dict by content plus the pass's log of inserts and erasures. The first search of a
    # batch after a page or a mergeable area changed (``KsmState.pages_changed``) checks that
    # still holds (nothing changes during a batch but through ksmd); once a
    # node's page has gone or changed, the log is replayed into the red-black tree the kernel
    # has built, and the rest of the pass walks it as the kernel does.

    def _unstable_still_exact(self) -> bool:
        """Every node of the unstable tree still maps the page it was inserted with."""
        for content, tree_item in self.ks.unstable.items():
            tree_page = self.get_mergeable_page(tree_item)
            if tree_page is None or tree_page.content != content:
                return False
        return True

    def _unstable_build_rbtree(self) -> None:
        """Replay this pass's inserts and erasures into the kernel's red-black tree."""
        ks = self.ks
        root = ks.unstable_root = RbRoot()
        for entry in ks.unstable_log:
            if isinstance(entry, tuple):
                rb_erase(entry[0], root)
                continue
            key = _order(entry.key)
            parent, left, node = None, False, root.rb_node
            while node is not None:
                parent = node
                left = key < _order(node.key)
                node = node.rb_left if left else node.rb_right
            rb_link_node(entry, parent, left, root)
            rb_insert_color(entry, root)
        ks.unstable_log = []
        ks.unstable.clear()
        ks.unstable_exact = True

    def unstable_tree_search_insert(self, item: RmapItem, page: Page
                                    ) -> tuple[RmapItem, Page] | None:
        """unstable_tree_search_insert(): an identical page already in the unstable tree, or
        insert this item (pages_unshared+1); None also when the search meets a node whose
        page has gone, or the same physical page (forked)."""
        ks = self.ks
        if not ks.unstable_exact and not self._unstable_checked:
            self._unstable_checked = True
            if ks.pages_changed:
                ks.pages_changed = False
                if ks.unstable and not self._unstable_still_exact():
                    self._unstable_build_rbtree()
        if ks.unstable_exact:
            return self._unstable_walk(item, page)
        tr = self._tr
        content = page.content
        tree_item = ks.unstable.get(content)
        if tree_item is not None:
            tree_page = self.get_mergeable_page(tree_item)
            if tree_page is None or tree_page.content != content:
                # Changed since this batch's check: only ksmd acts during a batch, and it
                # takes items out of the tree before it touches their pages.
                self._unstable_build_rbtree()
                return self._unstable_walk(item, page)
            if tree_page is page:
                if tr is not None:
                    self._note(1, "unstable_tree_search_insert", _FORKED, tree_item)
                return None
            if tr is not None:
                self._note(1, "unstable_tree_search_insert", _IDENTICAL, tree_item)
            return tree_item, tree_page
        item.flags = UNSTABLE_FLAG
        item.seqnr = ks.seqnr & SEQNR_MASK
        item.key = content
        ks.unstable[content] = item
        ks.unstable_log.append(item)
        ks.pages_unshared += 1
        if tr is not None:
            tr.records.append(_INSERTED)
        return None

    def _unstable_walk(self, item: RmapItem, page: Page) -> tuple[RmapItem, Page] | None:
        """unstable_tree_search_insert() on the red-black tree, node by node."""
        ks = self.ks
        tr = self._tr
        root = ks.unstable_root
        key = _order(page.content)
        parent, left, node = None, False, root.rb_node
        while node is not None:
            tree_page = self.get_mergeable_page(node)
            if tree_page is None:
                if tr is not None:
                    self._note(1, "unstable_tree_search_insert", WHERE + " is gone: give up",
                               node)
                return None
            if tree_page is page:
                if tr is not None:
                    self._note(1, "unstable_tree_search_insert", _FORKED, node)
                return None
            tree_key = _order(tree_page.content)
            if key == tree_key:
                if tr is not None:
                    self._note(1, "unstable_tree_search_insert", _IDENTICAL, node)
                return node, tree_page
            parent, left = node, key < tree_key
            node = node.rb_left if left else node.rb_right
        item.flags = UNSTABLE_FLAG
        item.seqnr = ks.seqnr & SEQNR_MASK
        item.key = page.content
        rb_link_node(item, parent, left, root)
        rb_insert_color(item, root)
        ks.pages_unshared += 1
        if tr is not None:
            tr.records.append(_INSERTED)
        return None

    def _unstable_erase(self, item: RmapItem) -> None:
        """rb_erase() of an item inserted in this pass."""
        ks = self.ks
        if ks.unstable_exact:
            rb_erase(item, ks.unstable_root)
        else:
            del ks.unstable[item.key]
            ks.unstable_log.append((item,))

    def unstable_reset(self) -> None:
        """root_unstable_tree = RB_ROOT: the start of a pass empties the unstable tree."""
        ks = self.ks
        ks.unstable.clear()
        ks.unstable_log = []
        ks.unstable_root = RbRoot()
        ks.unstable_exact = False

    def unstable_items(self) -> list[RmapItem]:
        """The items of this pass's unstable tree, in tree order."""
        ks = self.ks
        if ks.unstable_exact:
            return list(rb_inorder(ks.unstable_root))
        return sorted(ks.unstable.values(), key=lambda i: _order(i.key))
