"""Red-black trees as lib/rbtree.c builds them: rb_link_node() + rb_insert_color(), rb_erase(),
rb_replace_node().

The nodes are the objects themselves (ksmd's rmap_items and stable nodes), with the fields
``rb_left``, ``rb_right``, ``rb_parent`` and ``rb_red``; the tree is an `RbRoot`. The
rebalancing follows __rb_insert() and __rb_erase_augmented() / ____rb_erase_color() case by
case, so a sequence of insertions and erasures gives the kernel's shape, and a search walks the
nodes the kernel's walks.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class RbRoot:
    """struct rb_root."""

    __slots__ = ("rb_node",)

    def __init__(self) -> None:
        self.rb_node: Any = None


def _change_child(old: Any, new: Any, parent: Any, root: RbRoot) -> None:
    """__rb_change_child()."""
    if parent is not None:
        if parent.rb_left is old:
            parent.rb_left = new
        else:
            parent.rb_right = new
    else:
        root.rb_node = new


def _rotate_set_parents(old: Any, new: Any, root: RbRoot, red: bool) -> None:
    """__rb_rotate_set_parents(): `new` takes `old`'s place and colour; `old` gets `red`."""
    parent = old.rb_parent
    new.rb_parent = parent
    new.rb_red = old.rb_red
    old.rb_parent = new
    old.rb_red = red
    _change_child(old, new, parent, root)


def rb_link_node(node: Any, parent: Any, left: bool, root: RbRoot) -> None:
    """rb_link_node(): hang a new red leaf under `parent` (None: as the root)."""
    node.rb_parent = parent
    node.rb_left = node.rb_right = None
    node.rb_red = True
    if parent is None:
        root.rb_node = node
    elif left:
        parent.rb_left = node
    else:
        parent.rb_right = node


def rb_insert_color(node: Any, root: RbRoot) -> None:
    """rb_insert_color() (__rb_insert())."""
    parent = node.rb_parent
    while True:
        if parent is None:
            node.rb_red = False
            return
        if not parent.rb_red:
            return
        gparent = parent.rb_parent
        tmp = gparent.rb_right
        if parent is not tmp:  # parent == gparent->rb_left
            if tmp is not None and tmp.rb_red:  # Case 1: colour flips
                tmp.rb_red = False
                parent.rb_red = False
                node = gparent
                parent = node.rb_parent
                node.rb_red = True
                continue
            tmp = parent.rb_right
            if node is tmp:  # Case 2: left rotate at parent
                tmp = node.rb_left
                parent.rb_right = tmp
                node.rb_left = parent
                if tmp is not None:
                    tmp.rb_parent = parent
                    tmp.rb_red = False
                parent.rb_parent = node
                parent.rb_red = True
                parent = node
                tmp = node.rb_right
            # Case 3: right rotate at gparent
            gparent.rb_left = tmp
            parent.rb_right = gparent
            if tmp is not None:
                tmp.rb_parent = gparent
                tmp.rb_red = False
            _rotate_set_parents(gparent, parent, root, True)
            return
        tmp = gparent.rb_left
        if tmp is not None and tmp.rb_red:  # Case 1
            tmp.rb_red = False
            parent.rb_red = False
            node = gparent
            parent = node.rb_parent
            node.rb_red = True
            continue
        tmp = parent.rb_left
        if node is tmp:  # Case 2: right rotate at parent
            tmp = node.rb_right
            parent.rb_left = tmp
            node.rb_right = parent
            if tmp is not None:
                tmp.rb_parent = parent
                tmp.rb_red = False
            parent.rb_parent = node
            parent.rb_red = True
            parent = node
            tmp = node.rb_left
        # Case 3: left rotate at gparent
        gparent.rb_right = tmp
        parent.rb_left = gparent
        if tmp is not None:
            tmp.rb_parent = gparent
            tmp.rb_red = False
        _rotate_set_parents(gparent, parent, root, True)
        return


def rb_erase(node: Any, root: RbRoot) -> None:
    """rb_erase(): __rb_erase_augmented(), then ____rb_erase_color() if a black went."""
    child = node.rb_right
    tmp = node.rb_left
    if tmp is None:
        parent = node.rb_parent
        _change_child(node, child, parent, root)
        if child is not None:
            child.rb_parent = parent
            child.rb_red = node.rb_red
            rebalance = None
        else:
            rebalance = None if node.rb_red else parent
    elif child is None:
        parent = node.rb_parent
        tmp.rb_parent = parent
        tmp.rb_red = node.rb_red
        _change_child(node, tmp, parent, root)
        rebalance = None
    else:
        successor = child
        tmp = child.rb_left
        if tmp is None:
            # Case 2: the successor is node's right child.
            parent = successor
            child2 = successor.rb_right
        else:
            # Case 3: the successor is the leftmost node under node's right child.
            while True:
                parent = successor
                successor = tmp
                tmp = tmp.rb_left
                if tmp is None:
                    break
            child2 = successor.rb_right
            parent.rb_left = child2
            successor.rb_right = child
            child.rb_parent = successor
        tmp = node.rb_left
        successor.rb_left = tmp
        tmp.rb_parent = successor
        _change_child(node, successor, node.rb_parent, root)
        if child2 is not None:
            child2.rb_parent = parent
            child2.rb_red = False
            rebalance = None
        else:
            rebalance = None if successor.rb_red else parent
        successor.rb_parent = node.rb_parent
        successor.rb_red = node.rb_red
    node.rb_parent = node.rb_left = node.rb_right = None
    if rebalance is not None:
        _erase_color(rebalance, root)


def _erase_color(parent: Any, root: RbRoot) -> None:
    """____rb_erase_color()."""
    node = None
    while True:
        sibling = parent.rb_right
        if node is not sibling:  # node == parent->rb_left
            if sibling.rb_red:  # Case 1: left rotate at parent
                tmp1 = sibling.rb_left
                parent.rb_right = tmp1
                sibling.rb_left = parent
                tmp1.rb_parent = parent
                tmp1.rb_red = False
                _rotate_set_parents(parent, sibling, root, True)
                sibling = tmp1
            tmp1 = sibling.rb_right
            if tmp1 is None or not tmp1.rb_red:
                tmp2 = sibling.rb_left
                if tmp2 is None or not tmp2.rb_red:  # Case 2: sibling colour flip
                    sibling.rb_red = True
                    if parent.rb_red:
                        parent.rb_red = False
                    else:
                        node = parent
                        parent = node.rb_parent
                        if parent is not None:
                            continue
                    return
                # Case 3: right rotate at sibling
                tmp1 = tmp2.rb_right
                sibling.rb_left = tmp1
                tmp2.rb_right = sibling
                parent.rb_right = tmp2
                if tmp1 is not None:
                    tmp1.rb_parent = sibling
                    tmp1.rb_red = False
                tmp1 = sibling
                sibling = tmp2
            # Case 4: left rotate at parent + colour flips
            tmp2 = sibling.rb_left
            parent.rb_right = tmp2
            sibling.rb_left = parent
            tmp1.rb_parent = sibling
            tmp1.rb_red = False
            if tmp2 is not None:
                tmp2.rb_parent = parent
            _rotate_set_parents(parent, sibling, root, False)
            return
        sibling = parent.rb_left
        if sibling.rb_red:  # Case 1: right rotate at parent
            tmp1 = sibling.rb_right
            parent.rb_left = tmp1
            sibling.rb_right = parent
            tmp1.rb_parent = parent
            tmp1.rb_red = False
            _rotate_set_parents(parent, sibling, root, True)
            sibling = tmp1
        tmp1 = sibling.rb_left
        if tmp1 is None or not tmp1.rb_red:
            tmp2 = sibling.rb_right
            if tmp2 is None or not tmp2.rb_red:  # Case 2
                sibling.rb_red = True
                if parent.rb_red:
                    parent.rb_red = False
                else:
                    node = parent
                    parent = node.rb_parent
                    if parent is not None:
                        continue
                return
            # Case 3: left rotate at sibling
            tmp1 = tmp2.rb_left
            sibling.rb_right = tmp1
            tmp2.rb_left = sibling
            parent.rb_left = tmp2
            if tmp1 is not None:
                tmp1.rb_parent = sibling
                tmp1.rb_red = False
            tmp1 = sibling
            sibling = tmp2
        # Case 4: right rotate at parent + colour flips
        tmp2 = sibling.rb_right
        parent.rb_left = tmp2
        sibling.rb_right = parent
        tmp1.rb_parent = sibling
        tmp1.rb_red = False
        if tmp2 is not None:
            tmp2.rb_parent = parent
        _rotate_set_parents(parent, sibling, root, False)
        return


def rb_replace_node(victim: Any, new: Any, root: RbRoot) -> None:
    """rb_replace_node(): `new` takes `victim`'s place and colour; no rebalancing."""
    parent = victim.rb_parent
    new.rb_left, new.rb_right, new.rb_parent, new.rb_red = \
        victim.rb_left, victim.rb_right, parent, victim.rb_red
    if victim.rb_left is not None:
        victim.rb_left.rb_parent = new
    if victim.rb_right is not None:
        victim.rb_right.rb_parent = new
    _change_child(victim, new, parent, root)
    victim.rb_parent = victim.rb_left = victim.rb_right = None


def rb_inorder(root: RbRoot) -> Iterator[Any]:
    """The nodes from rb_first() on, by rb_next()."""
    stack: list[Any] = []
    node = root.rb_node
    while stack or node is not None:
        while node is not None:
            stack.append(node)
            node = node.rb_left
        node = stack.pop()
        yield node
        node = node.rb_right
