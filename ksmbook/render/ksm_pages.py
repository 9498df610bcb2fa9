"""Page-level views of KSM: every page of the mergeable areas, what ksmd made of it, its two
trees and its counters, as diagrams and as their text twins.

`page_state()` freezes what the simulated ksmd shows through its read-only API
(``Ksmd.pages``, ``rmap_items``, ``stable_tree``, ``unstable_tree``, ``counters``, ``cursor``)
into a `PageState`; everything else here draws or prints that state and never touches the
kernel. A page is in one of these states (mm/ksm.c):

* ``untouched``: no page is mapped (ksmd skips the address for free);
* ``not mergeable``: a page in an area without VM_MERGEABLE (ksmd never looks at it);
* ``unscanned``: a page of a mergeable area that has no rmap_item yet;
* ``volatile``: it has an rmap_item in neither tree (its checksum changed since the last visit,
  or smart_scan skipped it, or it waits for its second visit);
* ``stale``: its rmap_item still hangs in the stable tree, but the address no longer maps that
  KSM page (it was written since: ksmd notices at its next visit);
* ``unstable``: its rmap_item is a node of this pass's unstable tree;
* ``KSM page shared by N``: the address maps a KSM page that N page-table entries map;
* ``KSM zero page``: use_zero_pages mapped the shared zero page in its place (a KSM zero pte,
  counted in ksm_zero_pages and in the process's ksm_stat);
* ``zero page``: a read fault mapped the shared zero page (do_anonymous_page(), or the huge
  zero page of a THP-eligible range), or a THP split did for an all-zero subpage (6.12,
  remap_page() -> try_to_map_unused_to_zeropage()); a clean special pte, in no KSM counter.

The shared zero page (id 0) is no KSM page: it is in neither tree, has no mapcount (its ptes
are special: vm_normal_page() returns NULL), and a write to it takes a new zeroed page
(do_wp_page() -> wp_page_copy()). The views name it "zero page" and draw it apart from the
pages, never as one page shared N times.

Colours are the Okabe-Ito palette (safe for the common colour-vision deficiencies), and every
cell also carries its content's name and a state code, so no information is in colour alone.
Figures are built without pyplot; `show_pages` and `show_counters` display them as PNG (see
`use_png`) and print the text twin, which is what a notebook's stored output is checked
against.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from ..constants import PAGE_SHIFT, PAGE_SIZE, VM
from ..ksmd.views import page_kind
from .snapshot import snapshot
from .text import addr_text, plural

if TYPE_CHECKING:
    from ..kernel import Kernel
    from ..sidechannel import Probe

__all__ = ["PageRow", "AreaView", "KsmNode", "UnstableNode", "PageState", "page_state",
           "pages_text", "counters_text", "counters_table", "page_diagram", "counters_plot",
           "PageFigure", "view_of", "show_pages", "show_counters", "use_png", "png_bytes",
           "probe_plot", "show_probe",
           "STATES", "STATE_CODES", "ZERO_LABELS", "CONTENT_COLORS", "COUNTER_STYLES"]

#: The states of a page, in legend order, and the code printed under each cell.
STATE_CODES = {
    "untouched": "",
    "not mergeable": "-",
    "unscanned": "new",
    "volatile": "V",
    "unstable": "U",
    "stale": "S",
    "KSM page": "K",
    "KSM zero page": "ksmd",
    "zero page": "clean",
}
#: What the two zero-page states say in the table.
ZERO_LABELS = {
    "KSM zero page": "zero page, mapped by ksmd (use_zero_pages): one of ksm_zero_pages",
    "zero page": "zero page (a read, or a THP split): in no KSM counter",
}
STATES = tuple(STATE_CODES)
#: Okabe-Ito colours for page contents (black left out: it carries the text), in order of
#: first appearance; zero-filled pages are light grey. Beyond 7 contents the colours repeat
#: with a hatch. The shared zero page is none of these: a white cell in a thick frame.
CONTENT_COLORS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
_ZERO_COLOR = "#DDDDDD"
_ZERO_PAGE_FACE = "white"
_HATCHES = ("", "///", "...", "xxx", "\\\\\\")
_DARK_TEXT = {"#0072B2", "#D55E00", "#009E73", "#CC79A7"}
_INK, _GREY, _STABLE, _UNSTABLE = "#222222", "#777777", "#0072B2", "#D55E00"
#: How each counter is drawn by `counters_plot`: (colour, line style, marker).
COUNTER_STYLES = {
    "pages_shared": ("#0072B2", "-", "o"),
    "pages_sharing": ("#009E73", "--", "s"),
    "pages_unshared": ("#E69F00", "-.", "^"),
    "pages_volatile": ("#D55E00", ":", "v"),
    "ksm_zero_pages": ("#CC79A7", (0, (5, 1, 1, 1)), "D"),
}
#: Where the text twins say the scan cursor is between passes.
AT_HEAD = "cursor: at the list head (between passes)"
#: Pages shown per area before the rest is summarised.
MAX_PAGES = 32


@dataclass(frozen=True)
class PageRow:
    """One page of an area: where, what it holds, which physical page, and its state."""

    process: str
    pid: int
    address: int
    content: int | None
    page: int | None        # physical page: its id (Page.id), as ksmd's traces name it
    state: str              # one of STATES ("KSM page" also carries `sharers`)
    sharers: int            # page-table entries mapping the page (0: untouched, zero page)

    @property
    def zero(self) -> bool:
        """The address maps the shared zero page."""
        return self.state in ZERO_LABELS

    @property
    def label(self) -> str:
        """The state as the table prints it."""
        if self.zero:
            return ZERO_LABELS[self.state]
        if self.state == "KSM page":
            return f"KSM page shared by {self.sharers}"
        label = self.state
        if self.state == "stale":
            label = "stale: written since, its rmap_item is still in the stable tree"
        if self.state != "untouched" and self.sharers > 1:
            label += f"; one page in {self.sharers} page tables"
        return label


@dataclass(frozen=True)
class AreaView:
    """One VMA shown page by page."""

    process: str
    pid: int
    start: int
    end: int
    perms: str
    mergeable: bool
    rows: tuple[PageRow, ...]
    hidden: int             # pages of the area not shown (beyond max_pages)

    @property
    def header(self) -> str:
        return (f"{self.process} (pid {self.pid})  {addr_text(self.start)}-{addr_text(self.end)}"
                f" {self.perms}{' mg' if self.mergeable else ''}")


@dataclass(frozen=True)
class KsmNode:
    """A KSM page in the stable tree: its content, physical page and the items linked to it."""

    content: int
    page: int
    sharers: tuple[tuple[str, int], ...]   # (process name, address) of each rmap_item
    mapcount: int
    chain: int              # dups in its stable_node chain (0: no chain)


@dataclass(frozen=True)
class UnstableNode:
    """An rmap_item in this pass's unstable tree."""

    content: int
    process: str
    address: int


@dataclass(frozen=True)
class PageState:
    """Everything a page diagram shows, frozen."""

    profile: str
    areas: tuple[AreaView, ...]
    stable: tuple[KsmNode, ...]
    unstable: tuple[UnstableNode, ...]
    counters: Mapping[str, int]
    cursor: tuple[str | None, int]
    names: Mapping[int, str] = field(default_factory=dict)
    has_ksmd: bool = True

    def name(self, content: int | None) -> str:
        """A content as the views print it."""
        if content is None:
            return "-"
        return self.names.get(content, str(content))

    @property
    def rows(self) -> tuple[PageRow, ...]:
        return tuple(r for a in self.areas for r in a.rows)


def page_state(kernel: Kernel, *, names: Mapping[int, str] | None = None,
               mergeable_only: bool = False, max_pages: int = MAX_PAGES) -> PageState:
    """Freeze the pages of every live process and ksmd's view of them.

    Areas shown: every VMA with VM_MERGEABLE, and (unless `mergeable_only`) every private
    anonymous one; at most `max_pages` pages of each are listed. A page is shown by its id
    (`Page.id`), the number ksmd's traces give it too.
    """
    has_ksmd = kernel.profile.has_ksmd and kernel.config_ksm
    ksmd = kernel.ksmd if has_ksmd else None
    pid_names = {p.pid: p.name for p in kernel.processes}
    areas = []
    for proc in kernel.processes:
        if not proc.alive:
            continue
        pages: dict[int, Any]
        if ksmd is not None:
            pages = {v.address: v for v in ksmd.pages(proc)}
            items = {i.address: i.state for i in ksmd.rmap_items(proc)}
        else:
            pages, items = {vpn << PAGE_SHIFT: pg for vpn, pg in proc.mm.ptes.items()}, {}
        for region, vma in zip(snapshot(proc).vmas, proc.vmas, strict=True):
            mergeable = bool(vma.flags & VM.VM_MERGEABLE)
            if not mergeable and (mergeable_only or region.kind != "anon"):
                continue
            end = min(vma.end, vma.start + max_pages * PAGE_SIZE)
            rows = tuple(_row(proc.name, proc.pid, addr, pages.get(addr), items.get(addr),
                              mergeable) for addr in range(vma.start, end, PAGE_SIZE))
            areas.append(AreaView(proc.name, proc.pid, vma.start, vma.end, region.perms,
                                  mergeable, rows, max(0, vma.pages - max_pages)))
    if ksmd is None:
        return PageState(kernel.profile.name, tuple(areas), (), (), {}, (None, 0),
                         dict(names or {}), has_ksmd)

    def who(pid: int | None) -> str:
        return pid_names.get(pid or 0, f"pid {pid}")

    stable = tuple(KsmNode(node.content, node.page,
                           tuple((who(s.pid), s.address) for s in node.sharers),
                           node.mapcount, node.chain_dups) for node in ksmd.stable_tree())
    unstable = tuple(UnstableNode(u.content, who(u.pid), u.address)
                     for u in ksmd.unstable_tree())
    pid, address = ksmd.cursor()
    return PageState(kernel.profile.name, tuple(areas), stable, unstable, dict(ksmd.counters()),
                     (who(pid) if pid is not None else None, address), dict(names or {}),
                     has_ksmd)


def _row(process: str, pid: int, addr: int, page: Any, item: str | None,
         mergeable: bool) -> PageRow:
    if page is None:
        return PageRow(process, pid, addr, None, None, "untouched", 0)
    if hasattr(page, "kind"):  # a PageView from ksmd
        kind, page_id = page.kind, page.page
    else:  # a page-table entry of a kernel without ksmd
        kind, page_id = page_kind(page), page.id
    content, mapcount = page.content, page.mapcount
    if kind in ("ksm-zero", "zero"):
        # The zero page's ptes are special: no mapcount, no sharing to count.
        return PageRow(process, pid, addr, content, page_id,
                       "KSM zero page" if kind == "ksm-zero" else "zero page", 0)
    if kind == "ksm":
        state = "KSM page"
    elif not mergeable:
        state = "not mergeable"
    elif item is None:
        state = "unscanned"
    else:
        state = {"unstable": "unstable", "stable": "stale"}.get(item, "volatile")
    return PageRow(process, pid, addr, content, page_id, state, mapcount)


# -- text twins -----------------------------------------------------------------------------

def counters_text(counters: Mapping[str, int]) -> str:
    """The counters of /sys/kernel/mm/ksm, four to a line."""
    items = [f"{k} {v}" for k, v in counters.items()]
    return "\n".join("  " + ", ".join(items[i:i + 4]) for i in range(0, len(items), 4))


def pages_text(state: PageState) -> str:
    """The text twin of `page_diagram`: each area's pages, the two trees and the counters."""
    out = []
    for area in state.areas:
        out.append(area.header)
        for r in area.rows:
            page = "zero" if r.zero else f"#{r.page}" if r.page is not None else "-"
            out.append(f"  {addr_text(r.address)}  {state.name(r.content):<6} {page:<5} {r.label}")
        if area.hidden:
            out.append(f"  ... {area.hidden} more pages")
    if not state.has_ksmd:
        out.append("(this kernel has no ksmd: nothing is ever merged)")
        return "\n".join(out)
    out.append(f"stable tree: {plural(len(state.stable), 'KSM page')}")
    for node in state.stable:
        who = ", ".join(f"{p} {addr_text(a)}" for p, a in node.sharers)
        chain = f" (dup of a chain of {node.chain})" if node.chain else ""
        out.append(f"  {state.name(node.content):<6} #{node.page:<4} {len(node.sharers)} "
                   f"rmap_items{chain}: {who}")
    out.append(f"unstable tree: {plural(len(state.unstable), 'item')}")
    for u in state.unstable:
        out.append(f"  {state.name(u.content):<6} {u.process} {addr_text(u.address)}")
    proc, address = state.cursor
    out.append(AT_HEAD if proc is None
               else f"cursor: in {proc}, next address {addr_text(address)}")
    out.append("counters:")
    out.append(counters_text(state.counters))
    return "\n".join(out)


def counters_table(history: Sequence[Mapping[str, int]]) -> str:
    """The text twin of `counters_plot`: one line per entry of `history`."""
    if not history:
        return "(no scans yet)"
    cols = ["full_scans", *_plot_keys(history)]
    widths = [max(len(c), 6) for c in cols]
    rows = [dict(zip(cols, cols, strict=True)), *history]
    return "\n".join("  ".join(str(h.get(c, "")).rjust(w) for c, w in zip(cols, widths,
                                                                           strict=True))
                     for h in rows)


def _plot_keys(history: Sequence[Mapping[str, int]]) -> list[str]:
    keys = ["pages_shared", "pages_sharing", "pages_unshared", "pages_volatile"]
    if any(h.get("ksm_zero_pages") for h in history):
        keys.append("ksm_zero_pages")
    if any("pages_skipped" in h for h in history):
        keys.append("pages_skipped")
    return keys


# -- diagrams -------------------------------------------------------------------------------

_CELL, _GAP, _ROW, _LEFT, _RIGHT, _TOP = 0.40, 0.12, 0.78, 1.55, 0.25, 0.45
_TREE_ROW, _NODE_W, _NODE_H = 0.85, 0.62, 0.36
_MAX_NODES = 24


class Canvas:
    """A figure measured in inches from its top left corner, drawn whole again by each update
    (the page and mm_slot diagrams)."""

    #: The width of the figure, in inches, unless what it shows needs more.
    width = 6.8

    def __init__(self) -> None:
        self.figure = Figure(figsize=(self.width, 3.0), dpi=100)
        self.figure._ksmbook_view = self  # type: ignore[attr-defined]
        self.ax = self.figure.add_axes((0, 0, 1, 1))

    def _begin(self, width: float, height: float, title: str) -> Axes:
        """Clear the figure, size it, and write its title."""
        ax = self.ax
        ax.clear()
        ax.set_axis_off()
        self.figure.set_size_inches(width, height)
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.text(0.1, 0.28, title, fontsize=10, weight="bold", color=_INK)
        return ax

    def _text(self, x: float, y: float, s: str, **kw: Any) -> None:
        """A label, 8 pt in ink and centred on y unless `kw` says otherwise."""
        self.ax.text(x, y, s, **{"fontsize": 8, "color": _INK, "va": "center", **kw})


class PageFigure(Canvas):
    """The figure of one `PageState`: pages as cells, the stable and unstable trees as boxes
    linked to the pages that use them. `update()` redraws the same figure for a new state.

    Tests read `cells` (address -> (x, y)), `cell_colors`, `cell_texts` (the text in and
    under each cell), `links` (("stable" | "unstable", address, content) per drawn link),
    `routes` (the points of each link's line, in the order of `links`) and `node_boxes` ((x0,
    y0, x1, y1) of each tree node), not pixels.
    """

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, int], tuple[float, float]] = {}
        self.cell_colors: dict[tuple[str, int], str] = {}
        self.cell_texts: dict[tuple[str, int], tuple[str, str]] = {}
        self.links: list[tuple[str, str, int, int]] = []
        self.routes: list[list[tuple[float, float]]] = []
        self.node_boxes: list[tuple[float, float, float, float]] = []
        #: Colour and hatch of each content drawn so far (a content keeps its colour).
        self._palette: dict[int, tuple[str, str]] = {}

    def _colors(self, state: PageState) -> dict[int, tuple[str, str]]:
        """A colour per content, kept from one update to the next."""
        seen = self._palette
        contents = [r.content for r in state.rows if r.content is not None]
        contents += [n.content for n in state.stable] + [u.content for u in state.unstable]
        for c in contents:
            if c in seen:
                continue
            if c == 0:
                seen[c] = (_ZERO_COLOR, "")
                continue
            i = sum(1 for k in seen if k != 0)
            seen[c] = (CONTENT_COLORS[i % len(CONTENT_COLORS)],
                       _HATCHES[(i // len(CONTENT_COLORS)) % len(_HATCHES)])
        return seen

    def update(self, state: PageState, title: str | None = None) -> Figure:
        """Draw `state` (replacing whatever was drawn)."""
        self.cells, self.cell_colors, self.cell_texts = {}, {}, {}
        self.links, self.routes, self.node_boxes = [], [], []
        colors = self._colors(state)
        ncols = max([len(a.rows) for a in state.areas] + [1])
        nodes = max(len(state.stable), len(state.unstable)) if state.has_ksmd else 0
        # Room on the right for the "+N" of pages not drawn (8 pt digits: 0.075 in each).
        right = max([_RIGHT] + [0.075 * len(f"+{a.hidden}") + 0.1 for a in state.areas
                                if a.hidden])
        width = max(self.width, _LEFT + ncols * (_CELL + _GAP) + right,
                    _LEFT + min(nodes, _MAX_NODES) * (_NODE_W + 0.25) + _RIGHT)
        trees = state.has_ksmd
        height = _TOP + len(state.areas) * _ROW + (2 * _TREE_ROW + 0.6 if trees else 0.55)
        ax = self._begin(width, height, title or "Pages of the mergeable areas and ksmd's trees")

        by_hatch: dict[str, list[list[tuple[float, float]]]] = {}
        faces: dict[str, list[str]] = {}
        empty: list[list[tuple[float, float]]] = []
        zero: list[list[tuple[float, float]]] = []
        y = _TOP
        cursor_proc, cursor_addr = state.cursor
        for area in state.areas:
            self._text(_LEFT - 0.1, y + _CELL / 2, f"{area.process}\n{addr_text(area.start)}"
                       + (" mg" if area.mergeable else ""), ha="right", family="monospace")
            for i, r in enumerate(area.rows):
                x = _LEFT + i * (_CELL + _GAP)
                box = _rect(x, y, _CELL, _CELL)
                key = (r.process, r.address)
                self.cells[key] = (x + _CELL / 2, y + _CELL / 2)
                label = ""
                if r.content is None:
                    empty.append(box)
                    self.cell_colors[key] = "none"
                elif r.zero:
                    zero.append(box)
                    self.cell_colors[key] = _ZERO_PAGE_FACE
                    label = "zero"
                    self._text(x + _CELL / 2, y + _CELL / 2, label, ha="center")
                else:
                    color, hatch = colors[r.content]
                    by_hatch.setdefault(hatch, []).append(box)
                    faces.setdefault(hatch, []).append(color)
                    self.cell_colors[key] = color
                    label = _cell_label(state.name(r.content))
                    self._text(x + _CELL / 2, y + _CELL / 2, label, ha="center", linespacing=0.9,
                               color="white" if color in _DARK_TEXT else _INK, weight="bold")
                code = STATE_CODES[r.state]
                if r.state == "KSM page":
                    code = f"K{r.sharers}"
                elif r.sharers > 1:
                    code += f" x{r.sharers}"
                self.cell_texts[key] = (label, code)
                if code:
                    self._text(x + _CELL / 2, y + _CELL + 0.1, code, ha="center")
                if r.process == cursor_proc and r.address == cursor_addr - PAGE_SIZE:
                    ax.annotate("", (x + _CELL / 2, y - 0.02), (x + _CELL / 2, y - 0.2),
                                arrowprops={"arrowstyle": "-|>", "color": _INK, "lw": 1})
            if area.hidden:
                self._text(_LEFT + len(area.rows) * (_CELL + _GAP), y + _CELL / 2,
                           f"+{area.hidden}", color=_GREY)
            y += _ROW
        for hatch, boxes in by_hatch.items():
            ax.add_collection(PolyCollection(boxes, facecolors=faces[hatch], edgecolors=_INK,
                                             linewidths=0.6, hatch=hatch or None, zorder=2))
        if empty:
            ax.add_collection(PolyCollection(empty, facecolors="white", edgecolors=_GREY,
                                             linewidths=0.6, linestyles="--", zorder=2))
        if zero:
            ax.add_collection(PolyCollection(zero, facecolors=_ZERO_PAGE_FACE, edgecolors=_INK,
                                             linewidths=2.0, zorder=2))
        if trees:
            self._draw_trees(state, colors, y + 0.15)
        self._legend(state, height, hatched=any(h for _, h in colors.values()))
        return self.figure

    def _draw_trees(self, state: PageState, colors: dict[int, tuple[str, str]],
                    y: float) -> None:
        """The two trees, and a link from every page to its node, routed through the gaps
        between the pages and between the stable tree's nodes (never across a box)."""
        ax = self.ax
        ncols = max([len(a.rows) for a in state.areas] + [1])
        span = max(ncols * (_CELL + _GAP), 6 * (_NODE_W + 0.2))
        segs: dict[str, list[list[tuple[float, float]]]] = {"stable": [], "unstable": []}
        tree_rows: tuple[tuple[str, Sequence[KsmNode | UnstableNode], float, str], ...] = (
            ("stable tree", state.stable, y, _STABLE),
            ("unstable tree", state.unstable, y + _TREE_ROW, _UNSTABLE))
        # The stable tree's boxes (x0, x1), which links to the unstable tree go round.
        stable_boxes: list[tuple[float, float]] = []
        # The zero page is in no tree: an rmap_item left in the unstable tree for an address
        # that maps it now gets no link (the tree's next search drops the item).
        zero = {(r.process, r.address) for r in state.rows if r.zero}
        for label, nodes, yy, color in tree_rows:
            self._text(_LEFT - 0.1, yy + _NODE_H / 2, label, ha="right", color=color,
                       weight="bold")
            if not nodes:
                self._text(_LEFT, yy + _NODE_H / 2, "(empty)", color=_GREY)
                if label == "stable tree":
                    stable_boxes.append((_LEFT, _LEFT + 0.5))  # the "(empty)"
                continue
            step = min(_NODE_W + 0.25, span / max(min(len(nodes), _MAX_NODES), 1))
            w = min(_NODE_W, step - 0.05)
            if len(nodes) > _MAX_NODES:
                self._text(_LEFT + _MAX_NODES * step, yy + _NODE_H / 2,
                           f"+{len(nodes) - _MAX_NODES}", color=_GREY)
            for i, node in enumerate(nodes[:_MAX_NODES]):
                x = _LEFT + i * step
                if label == "stable tree":
                    stable_boxes.append((x, x + w))
                face, hatch = colors.get(node.content, ("white", ""))
                ax.add_patch(_box(x, yy, w, face, hatch, color))
                self.node_boxes.append((x, yy, x + w, yy + _NODE_H))
                if isinstance(node, KsmNode):
                    text = f"{_cell_label(state.name(node.content))} #{node.page}"
                    if node.chain:
                        self._text(x + 0.03, yy + _NODE_H + 0.12, f"dup of {node.chain}",
                                   va="baseline")
                    targets = node.sharers
                    kind = "stable"
                else:
                    text = state.name(node.content)
                    targets = ((node.process, node.address),)
                    kind = "unstable"
                self._text(x + w / 2, yy + _NODE_H / 2, text, ha="center", linespacing=0.9,
                           weight="bold", color="white" if face in _DARK_TEXT else _INK)
                for proc, addr in targets:
                    cell = self.cells.get((proc, addr))
                    if cell is None or (proc, addr) in zero:
                        continue
                    n = len(segs["stable"]) + len(segs["unstable"])
                    route = self._route(cell, (x + w / 2, yy), y, stable_boxes, n)
                    segs[kind].append(route)
                    self.routes.append(route)
                    self.links.append((kind, proc, addr, node.content))
        for kind, color, style, alpha in (("stable", _STABLE, "-", 0.7),
                                          ("unstable", _UNSTABLE, "--", 0.8)):
            ax.add_collection(LineCollection(segs[kind], colors=color, linewidths=0.8,
                                             linestyles=style, alpha=alpha, zorder=1))
            if segs[kind]:  # a dot where each link leaves its page
                ax.scatter([s[0][0] for s in segs[kind]], [s[0][1] for s in segs[kind]],
                           s=9, color=color, zorder=3, linewidths=0)

    @staticmethod
    def _route(cell: tuple[float, float], node_top: tuple[float, float], stable_y: float,
               stable_boxes: list[tuple[float, float]], n: int) -> list[tuple[float, float]]:
        """A link from a page (its cell's centre) to a node's top: out of the page's right
        side into the gap beside it, down that gap to the lane above the stable tree, then
        across and down onto the node. A link to the unstable tree passes the stable tree
        where no box is: straight down if its gap is clear there, else beside the nearest
        box. `n` spreads parallel links apart."""
        cx, cy = cell
        shift = ((n % 3) - 1) * _GAP / 4
        x_gap = cx + _CELL / 2 + _GAP / 2 + shift
        head = [(cx + _CELL / 2, cy + _CELL / 4), (x_gap, cy + _CELL / 4)]
        nx, ny = node_top
        lane = stable_y - 0.1 - 0.025 * (n % 4)  # across, above the stable tree
        lane2 = ny - 0.1 - 0.025 * (n % 4)  # across, above the node

        def clear(x: float) -> bool:
            return all(not x0 - 0.04 <= x <= x1 + 0.04 for x0, x1 in stable_boxes)

        if ny > stable_y and clear(x_gap):
            return [*head, (x_gap, lane2), (nx, lane2), (nx, ny)]
        if ny <= stable_y or clear(nx):
            return [*head, (x_gap, lane), (nx, lane), (nx, ny)]
        sides = [x for x0, x1 in stable_boxes for x in (x0 - 0.1, x1 + 0.1)
                 if clear(x) and x > _LEFT]  # the tree's name sits left of _LEFT
        x_pass = min(sides, key=lambda x: abs(x - nx)) + shift
        return [*head, (x_gap, lane), (x_pass, lane), (x_pass, lane2), (nx, lane2), (nx, ny)]

    def _legend(self, state: PageState, height: float, *, hatched: bool) -> None:
        codes = ",  ".join(f"{c} {s}" for s, c in STATE_CODES.items()
                           if c and s != "KSM page" and s not in ZERO_LABELS)
        text = (f"under each page: {codes}\n"
                "KN = KSM page mapped N times,  xN: mapped N times,  dashed box: untouched,  "
                "grey: zero-filled" + (",  hatched: a colour used again for another content"
                                       if hatched else ""))
        base = 2
        if state.has_ksmd:
            text += ("\nsolid blue line: merged into that KSM page (stable tree);  "
                     "dashed orange line: in the unstable tree")
            base += 1
        if any(r.zero for r in state.rows):
            text += ("\nzero (thick frame): the shared zero page (not a KSM page, in no tree), "
                     f"under it {STATE_CODES['KSM zero page']}: mapped by ksmd (use_zero_pages, "
                     f"counted in ksm_zero_pages),  {STATE_CODES['zero page']}: mapped by a "
                     "read or a THP split")
        columns = int((self.figure.get_figwidth() - 0.2) / (8 * 0.56 / 72))
        lines = [w for line in text.split("\n")
                 for w in textwrap.wrap(line, columns, break_on_hyphens=False)]
        extra = 0.14 * max(0, len(lines) - base)
        if extra:
            height += extra
            self.figure.set_size_inches(self.figure.get_figwidth(), height)
            self.ax.set_ylim(height, 0)
        self._text(0.1, height - 0.1, "\n".join(lines), color=_GREY, va="bottom")


def _cell_label(name: str) -> str:
    """A content's name as it fits in a cell: up to 4 characters as they are, longer names
    broken at a space, or after 5 characters, into at most 2 lines of 4."""
    if len(name) <= 4:
        return name
    lines = name.split(" ", 1) if " " in name else [name[:5], name[5:10]]
    return "\n".join(line[:4] for line in lines if line)


def _rect(x: float, y: float, w: float, h: float) -> list[tuple[float, float]]:
    """The corners of a w by h rectangle whose top left corner is (x, y)."""
    return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]


def _box(x: float, y: float, w: float, face: str, hatch: str, edge: str) -> FancyBboxPatch:
    return FancyBboxPatch((x, y), w, _NODE_H, boxstyle="round,pad=0.02,rounding_size=0.05",
                          facecolor=face, edgecolor=edge, linewidth=1.2, hatch=hatch or None,
                          zorder=2)


def view_of(fig: Figure) -> PageFigure:
    """The PageFigure that drew `fig`."""
    view = getattr(fig, "_ksmbook_view", None)
    if not isinstance(view, PageFigure):
        raise ValueError("this figure was not drawn by ksm_pages.page_diagram")
    return view


def page_diagram(state: PageState | Kernel, *, title: str | None = None) -> Figure:
    """A new figure of the pages and ksmd's trees (a `PageState`, or a kernel to freeze)."""
    if not isinstance(state, PageState):
        state = page_state(state)
    return PageFigure().update(state, title)


def counters_plot(history: Sequence[Mapping[str, int]], *, title: str | None = None) -> Figure:
    """The counters after each entry of `history` (dicts of /sys/kernel/mm/ksm counters, one
    per full scan), against full_scans."""
    fig = Figure(figsize=(6.4, 3.0), dpi=100)
    ax = fig.add_axes((0.11, 0.2, 0.58, 0.68))
    xs = [h.get("full_scans", i) for i, h in enumerate(history)]
    for k in (k for k in _plot_keys(history) if k in COUNTER_STYLES):
        color, style, marker = COUNTER_STYLES[k]
        ax.plot(xs, [h.get(k, 0) for h in history], color=color, linestyle=style,
                marker=marker, label=k, linewidth=1.6, markersize=5)
    ax.set_xlabel("full_scans")
    ax.set_ylabel("pages")
    if xs:
        ax.set_xticks(sorted(set(xs)))
    ax.set_title(title or "ksmd's counters after each full scan", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    return fig


def probe_plot(probe: Probe, *, names: Mapping[int, str] | None = None,
               title: str | None = None) -> Figure:
    """The modelled time of each of a probe's writes (``ksmbook.sidechannel.probe``), with
    the attacker's threshold: slow bars are guesses that another mapping holds."""
    labels = [names.get(r.guess, str(r.guess)) if names else str(r.guess) for r in probe.rows]
    # Labels that would not fit side by side are turned (bar pitch ~ 5.5 in / bars).
    turned = max(map(len, labels), default=0) * 7 * 0.6 / 72 > 5.5 / max(len(labels), 1)
    fig = Figure(figsize=(6.4, 3.3 if turned else 2.8), dpi=100)
    ax = fig.add_axes((0.1, 0.3, 0.86, 0.58) if turned else (0.1, 0.2, 0.86, 0.66))
    xs = list(range(len(probe.rows)))
    colors = [_UNSTABLE if r.slow else _STABLE for r in probe.rows]
    ax.bar(xs, [r.latency_us for r in probe.rows], color=colors, edgecolor=_INK,
           linewidth=0.5, hatch=None)
    for x, r in zip(xs, probe.rows, strict=True):
        if r.slow:
            ax.text(x, r.latency_us, "slow", ha="center", va="bottom", fontsize=8, color=_INK)
    ax.axhline(probe.threshold_us, color=_INK, linestyle="--", linewidth=1)
    ax.text(len(xs) - 0.5, probe.threshold_us, " threshold", va="bottom", ha="right",
            fontsize=8, color=_INK)
    ax.set_xticks(xs, labels, fontsize=8, rotation=90 if turned else 0,
                  ha="right" if turned else "center", rotation_mode="anchor")
    ax.set_xlabel("guess (the content the attacker wrote to its page)")
    ax.set_ylabel("write time (us, modelled)")
    ax.set_title(title or f"Timing one write per guess after {probe.scans} full scans",
                 fontsize=10)
    return fig


# -- showing in a notebook ------------------------------------------------------------------

def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG (no creation-software metadata, so the bytes depend only on it)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def use_png() -> bool:
    """Make IPython show every matplotlib Figure as PNG.

    A Figure built without pyplot has no image representation of its own, so a notebook would
    show only "<Figure size ...>"; this registers a PNG formatter for it with the running
    IPython's display_formatter. Returns False outside IPython.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    if ip is None:
        return False
    ip.display_formatter.formatters["image/png"].for_type(Figure, png_bytes)
    return True


def _display(fig: Figure) -> None:
    if use_png():
        from IPython.display import display

        display(fig)


def show_pages(kernel: Kernel | PageState, *, title: str | None = None,
               names: Mapping[int, str] | None = None) -> None:
    """Display the page diagram (PNG) and print its text twin."""
    state = kernel if isinstance(kernel, PageState) else page_state(kernel, names=names)
    _display(page_diagram(state, title=title))
    print(pages_text(state))


def show_counters(history: Sequence[Mapping[str, int]], *, title: str | None = None,
                  kernel: Kernel | None = None) -> None:
    """Display the counters plot (PNG) and print its table; with `kernel`, also the mergeable
    areas that the counters count."""
    _display(counters_plot(history, title=title))
    print(counters_table(history))
    if kernel is not None:
        state = page_state(kernel, mergeable_only=True, max_pages=0)
        print("over the mergeable areas:")
        for area in state.areas:
            print(f"  {area.header} ({(area.end - area.start) // PAGE_SIZE} pages)")


def show_probe(probe: Probe, *, names: Mapping[int, str] | None = None,
               title: str | None = None) -> None:
    """Display a probe's timing plot (PNG) and print its table."""
    _display(probe_plot(probe, names=names, title=title))
    print(probe.text(dict(names) if names else None))
