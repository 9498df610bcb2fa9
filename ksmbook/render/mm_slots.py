"""ksmd's list of mm_slots and its scan cursor (mm/ksm.c ``ksm_mm_head``, ``ksm_scan``), as a
diagram and as its text twin.

`slot_list()` freezes what the simulated ksmd shows through its read-only API
(``Ksmd.mm_slots``, ``cursor``, ``rmap_items``, ``counters``) into a `SlotList`: the
registered address spaces in scan order, each with its rmap_items in address order (in the
stable tree, in the unstable tree, or in neither: volatile), and where ``ksm_scan`` stands.
`slot_list_diagram` draws it and `slot_list_text` prints it; both show the same things, and
neither touches the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure

from .ksm_pages import AT_HEAD, Canvas, _display, _rect
from .text import addr_text, plural

if TYPE_CHECKING:
    from ..kernel import Kernel

__all__ = ["SlotRow", "SlotList", "slot_list", "slot_list_text", "slot_list_diagram",
           "SlotListFigure", "show_slot_list", "ITEM_CODES", "MAX_ITEMS"]

#: The code of an rmap_item by the tree it is in (the page diagrams use the same letters).
ITEM_CODES = {"stable": "K", "unstable": "U", "volatile": "V"}
#: rmap_items drawn (and printed) per mm_slot before the rest is summarised.
MAX_ITEMS = 12
_ITEM_COLORS = {"stable": "#0072B2", "unstable": "#D55E00", "volatile": "#DDDDDD"}
_INK, _GREY = "#222222", "#777777"


@dataclass(frozen=True)
class SlotRow:
    """One mm_slot: the process whose mm it registers and its rmap_items."""

    process: str
    pid: int | None
    #: (address, "stable" | "unstable" | "volatile") of each rmap_item, in address order.
    items: tuple[tuple[int, str], ...]
    #: The mm has exited (mm_users 0); ksmd frees the slot when its cursor gets there.
    exiting: bool


@dataclass(frozen=True)
class SlotList:
    """The mm_slot list in scan order and the scan cursor, frozen."""

    slots: tuple[SlotRow, ...]
    #: Index in `slots` of ksm_scan.mm_slot; None when the cursor is at the list head.
    cursor: int | None
    #: ksm_scan.address: the next address ksmd looks at in the slot under the cursor.
    address: int
    full_scans: int

    def passed(self, index: int) -> int | None:
        """How many rmap_items of slot `index` the cursor has passed in this visit (None: the
        cursor is not in that slot)."""
        if index != self.cursor:
            return None
        return sum(1 for address, _ in self.slots[index].items if address < self.address)


def slot_list(kernel: Kernel) -> SlotList:
    """Freeze ksmd's mm_slot list and cursor (``ksm_mm_head``, ``ksm_scan``)."""
    ksmd = kernel.ksmd
    names = {p.pid: p.name for p in kernel.processes}
    items: dict[int | None, list[tuple[int, str]]] = {}
    for item in ksmd.rmap_items():
        items.setdefault(item.pid, []).append((item.address, item.state))
    rows = []
    cursor = None
    for i, slot in enumerate(ksmd.mm_slots()):
        mine = tuple(items.get(slot.pid, ()))
        assert len(mine) == slot.rmap_items, "one mm_slot per pid"
        rows.append(SlotRow(names.get(slot.pid or 0, f"pid {slot.pid}"), slot.pid, mine,
                            slot.exiting))
        if slot.under_cursor:
            cursor = i
    address = ksmd.cursor()[1] if cursor is not None else 0
    return SlotList(tuple(rows), cursor, address, ksmd.counters()["full_scans"])


def _items_text(state: SlotList, index: int) -> str:
    """A slot's rmap_items as codes, "|" where the cursor stands, "+N" for those not shown."""
    row = state.slots[index]
    codes = [ITEM_CODES[s] for _, s in row.items[:MAX_ITEMS]]
    passed = state.passed(index)
    if passed is not None and passed <= MAX_ITEMS:
        codes.insert(passed, "|")
    if len(row.items) > MAX_ITEMS:
        codes.append(f"+{len(row.items) - MAX_ITEMS}")
    return " ".join(codes)


def _slot_title(row: SlotRow) -> str:
    pid = f" (pid {row.pid})" if row.pid is not None else ""
    return f"mm_slot of {row.process}{pid}"


def _slot_detail(row: SlotRow) -> str:
    return plural(len(row.items), "rmap_item") + (", mm exiting" if row.exiting else "")


def _cursor_text(state: SlotList) -> str:
    if state.cursor is None:
        return AT_HEAD
    return f"cursor: next address {addr_text(state.address)}"


def slot_list_text(state: SlotList) -> str:
    """The text twin of `slot_list_diagram`: the list from its head, in scan order, each slot
    with its rmap_items' codes and, under the slot the cursor is in, the cursor's address."""
    out = ["ksmd's mm_slot list, in scan order:"]
    out.append("  list head" + ("  <- " + _cursor_text(state) if state.cursor is None else ""))
    for i, row in enumerate(state.slots):
        line = f"  {i + 1}. {_slot_title(row)}: {_slot_detail(row)}"
        codes = _items_text(state, i)
        if codes:
            line += f"  {codes}"
        out.append(line)
        if i == state.cursor:
            out.append(f"     {_cursor_text(state)}")
    if state.slots:
        out.append(f"  back to the list head: the pass ends (full_scans {state.full_scans}"
                   f" -> {state.full_scans + 1})")
    else:
        out.append("  (no mm registered: ksmd has nothing to scan)")
    out.append("K: in the stable tree, U: in the unstable tree, V: in neither (volatile)")
    out.append("|: the scan cursor, before the next rmap_item it looks at")
    return "\n".join(out)


# -- the diagram ----------------------------------------------------------------------------

_X_BOX, _W_BOX, _H_BOX, _H_HEAD = 0.45, 2.2, 0.5, 0.36
_X_ITEMS, _ITEM, _STEP = 2.9, 0.24, 0.3
_X_RETURN, _TOP, _PITCH = 0.2, 0.5, 0.8


class SlotListFigure(Canvas):
    """The figure of one `SlotList`: the list head and one box per mm_slot, top to bottom in
    scan order, linked by arrows, the last back to the head; beside each slot its rmap_items as
    squares; the cursor as a bar between the items it has passed and the next, and a thicker
    frame round its slot (or round the head, between passes).

    Tests read `slot_boxes` ((process, (x0, y0, x1, y1)) per slot, in drawing order),
    `items` ((process, address) -> (x, y) of each square drawn), `cursor_at` ((x, y) of the
    cursor bar's top, None when no bar is drawn) and `guides` (the vertical lines), not pixels.
    """

    def __init__(self) -> None:
        super().__init__()
        self.slot_boxes: list[tuple[str, tuple[float, float, float, float]]] = []
        self.items: dict[tuple[str, int], tuple[float, float]] = {}
        self.cursor_at: tuple[float, float] | None = None
        self.guides = LineCollection([])

    def update(self, state: SlotList, title: str | None = None) -> Figure:
        """Draw `state` (replacing whatever was drawn)."""
        self.slot_boxes, self.items, self.cursor_at = [], {}, None
        n = len(state.slots)
        bottom = _TOP + _H_HEAD + 0.3 + n * _PITCH
        height = bottom + (0.6 if n else 0.4)
        ax = self._begin(self.width, height, title or "ksmd's mm_slot list and its scan cursor")

        boxes: list[list[tuple[float, float]]] = []
        widths: list[float] = []
        arrows: list[tuple[tuple[float, float], tuple[float, float]]] = []
        lines: list[list[tuple[float, float]]] = []
        mid = _X_BOX + _W_BOX / 2
        # The list head.
        y = _TOP
        boxes.append(_rect(_X_BOX, y, _W_BOX, _H_HEAD))
        widths.append(2.0 if state.cursor is None else 1.0)
        self._text(mid, y + _H_HEAD / 2, "list head (ksm_mm_head)", ha="center", fontsize=9)
        if state.cursor is None:
            self._cursor_label(_X_ITEMS - 0.2, y + _H_HEAD / 2, "<- " + _cursor_text(state))
        previous = y + _H_HEAD
        y = previous + 0.3
        squares: dict[str, list[list[tuple[float, float]]]] = {s: [] for s in ITEM_CODES}
        for i, row in enumerate(state.slots):
            arrows.append(((mid, previous), (mid, y)))
            lines.append([(mid, previous), (mid, y)])
            boxes.append(_rect(_X_BOX, y, _W_BOX, _H_BOX))
            widths.append(2.0 if i == state.cursor else 1.0)
            self.slot_boxes.append((row.process, (_X_BOX, y, _X_BOX + _W_BOX, y + _H_BOX)))
            self._text(mid, y + 0.17, _slot_title(row)[:28], ha="center", fontsize=9,
                       weight="bold")
            self._text(mid, y + 0.36, _slot_detail(row), ha="center")
            top = y + 0.04
            for j, (address, item_state) in enumerate(row.items[:MAX_ITEMS]):
                x = _X_ITEMS + j * _STEP
                squares[item_state].append(_rect(x, top, _ITEM, _ITEM))
                self.items[(row.process, address)] = (x + _ITEM / 2, top + _ITEM / 2)
                self._text(x + _ITEM / 2, top + _ITEM / 2, ITEM_CODES[item_state], ha="center",
                           weight="bold", color=_INK if item_state == "volatile" else "white")
            hidden = len(row.items) - MAX_ITEMS
            if hidden > 0:
                self._text(_X_ITEMS + MAX_ITEMS * _STEP, top + _ITEM / 2, f"+{hidden}",
                           color=_GREY)
            if not row.items:
                self._text(_X_ITEMS, top + _ITEM / 2, "(no rmap_items yet)", color=_GREY)
            passed = state.passed(i)
            if passed is not None:
                x = _X_ITEMS + min(passed, MAX_ITEMS) * _STEP - (_STEP - _ITEM) / 2
                if not row.items:
                    x = _X_ITEMS - (_STEP - _ITEM) / 2
                lines.append([(x, top - 0.03), (x, top + _ITEM + 0.03)])
                ax.plot([x, x], [top - 0.03, top + _ITEM + 0.03], color=_INK, linewidth=2.5,
                        solid_capstyle="butt")
                self.cursor_at = (x, top - 0.03)
                self._cursor_label(x, top + _ITEM + 0.13, _cursor_text(state))
            previous = y + _H_BOX
            y += _PITCH
        if state.slots:
            # From the last slot back to the list head: a pass ends there.
            turn = previous + 0.15
            head = _TOP + _H_HEAD / 2
            lines.append([(_X_RETURN, turn), (_X_RETURN, head)])
            ax.add_collection(LineCollection(
                [[(mid, previous), (mid, turn), (_X_RETURN, turn), (_X_RETURN, head)]],
                colors=_INK, linewidths=1))
            arrows.append(((_X_RETURN, head), (_X_BOX, head)))
            self._text(_X_RETURN + 0.15, turn + 0.17, "back to the list head: the pass ends, "
                       f"full_scans {state.full_scans} -> {state.full_scans + 1}")
        else:
            self._text(_X_BOX, previous + 0.12, "no mm registered: ksmd has nothing to scan",
                       color=_GREY)
        for start, end in arrows:
            ax.annotate("", end, start, arrowprops={"arrowstyle": "-|>", "color": _INK,
                                                    "lw": 1, "shrinkA": 0, "shrinkB": 0})
        ax.add_collection(PolyCollection(boxes, facecolors="white", edgecolors=_INK,
                                         linewidths=widths))
        for item_state, polys in squares.items():
            if polys:
                ax.add_collection(PolyCollection(polys, facecolors=_ITEM_COLORS[item_state],
                                                 edgecolors=_INK, linewidths=0.6))
        self.guides = LineCollection(lines, transform=ax.transData)
        self._text(0.1, height - 0.1, "rmap_items: K in the stable tree,  U in the unstable "
                   "tree,  V in neither (volatile)\nbar: the scan cursor (ksm_scan), before the "
                   "next rmap_item it looks at", color=_GREY, va="bottom")
        return self.figure

    def _cursor_label(self, x: float, y: float, text: str) -> None:
        """The cursor's label at (x, y), kept inside the figure."""
        width = len(text) * 8 * 0.6 / 72
        ha = "left" if x + width < self.width - 0.1 else "right"
        self._text(x if ha == "left" else self.width - 0.1, y, text, ha=ha, family="monospace")


def slot_list_diagram(state: SlotList | Kernel, *, title: str | None = None) -> Figure:
    """A new figure of ksmd's mm_slot list and cursor (a `SlotList`, or a kernel to freeze)."""
    if not isinstance(state, SlotList):
        state = slot_list(state)
    return SlotListFigure().update(state, title)


def show_slot_list(kernel: Kernel | SlotList, *, title: str | None = None) -> None:
    """Display the mm_slot list diagram (PNG) and print its text twin."""
    state = kernel if isinstance(kernel, SlotList) else slot_list(kernel)
    _display(slot_list_diagram(state, title=title))
    print(slot_list_text(state))
