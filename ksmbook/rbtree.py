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


def _sides(parent: Any, child: Any) -> tuple[str, str]:
    """The attribute names of `child`'s side of `parent` and of the other side. lib/rbtree.c
    writes each rebalancing case twice, once per side; here one body serves both."""
    return ("rb_right", "rb_left") if parent.rb_right is child else ("rb_left", "rb_right")


def rb_insert_color(node: Any, root: RbRoot) -> None:
    """rb_insert_color() (__rb_insert()); rotations named for parent == gparent->rb_left."""
    parent = node.rb_parent
    while True:
        if parent is None:
            node.rb_red = False
            return
        if not parent.rb_red:
            return
        gparent = parent.rb_parent
        near, far = _sides(gparent, parent)
        tmp = getattr(gparent, far)
        if tmp is not None and tmp.rb_red:  # Case 1: colour flips
            tmp.rb_red = False
            parent.rb_red = False
            node = gparent
            parent = node.rb_parent
            node.rb_red = True
            continue
        tmp = getattr(parent, far)
        if node is tmp:  # Case 2: left rotate at parent
            tmp = getattr(node, near)
            setattr(parent, far, tmp)
            setattr(node, near, parent)
            if tmp is not None:
                tmp.rb_parent = parent
                tmp.rb_red = False
            parent.rb_parent = node
            parent.rb_red = True
            parent = node
            tmp = getattr(node, far)
        # Case 3: right rotate at gparent
        setattr(gparent, near, tmp)
        setattr(parent, far, gparent)
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
    """____rb_erase_color(); rotations named for node == parent->rb_left."""
    node = None
    while True:
        near, far = _sides(parent, node)
        sibling = getattr(parent, far)
        if sibling.rb_red:  # Case 1: left rotate at parent
            tmp1 = getattr(sibling, near)
            setattr(parent, far, tmp1)
            setattr(sibling, near, parent)
            tmp1.rb_parent = parent
            tmp1.rb_red = False
            _rotate_set_parents(parent, sibling, root, True)
            sibling = tmp1
        tmp1 = getattr(sibling, far)
        if tmp1 is None or not tmp1.rb_red:
            tmp2 = getattr(sibling, near)
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
            tmp1 = getattr(tmp2, far)
            setattr(sibling, near, tmp1)
            setattr(tmp2, far, sibling)
            setattr(parent, far, tmp2)
            if tmp1 is not None:
                tmp1.rb_parent = sibling
                tmp1.rb_red = False
            tmp1 = sibling
            sibling = tmp2
        # Case 4: left rotate at parent + colour flips
        tmp2 = getattr(sibling, near)
        setattr(parent, far, tmp2)
        setattr(sibling, near, parent)
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
