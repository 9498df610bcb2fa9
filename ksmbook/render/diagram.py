"""Address-space diagrams: VMAs as bars along the address axis, coloured by kind, with a lane
under each row for the flags the book is about (VM_MERGEABLE first).

Every VMA of every row goes into one `PolyCollection`, every flag mark into another, so a figure
holds a handful of artists whether it shows 3 VMAs or 3,000. `SpaceFigure` builds its figure
once and each update changes the collections' data and updates the few text labels in place,
which is what the explorer widget does on every click. Figures come from `matplotlib.figure.Figure`,
not pyplot: no global state, and a figure shown as a cell's value appears once.
"""

from __future__ import annotations

import os
import textwrap
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.patches import Patch
from matplotlib.text import Text

from ..trace import Trace
from .layout import Gap, Layout
from .snapshot import KINDS, Region, Snapshot
from .text import Changes, addr_text, changes, outcome_text, plural, size_text

__all__ = ["KIND_COLORS", "KIND_LABELS", "LANES", "LABEL_LIMIT", "RASTER_LIMIT", "Lane",
           "SpaceFigure", "view_of"]

#: Okabe-Ito colours, one per kind of VMA (safe for the common colour-vision deficiencies).
KIND_COLORS = {
    "anon": "#0072B2", "shared-anon": "#56B4E9", "file": "#E69F00",
    "shared-file": "#D55E00", "device": "#CC79A7", "hugetlb": "#F0E442",
}
KIND_LABELS = {
    "anon": "private anonymous", "shared-anon": "shared anonymous", "file": "private file",
    "shared-file": "shared file", "device": "driver (special)", "hugetlb": "hugetlb",
}
_TEXT_ON = {"anon": "white"}


def _tint(color: str, amount: float = 0.28) -> str:
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * amount):02x}" for c in rgb)


_TINTS = {k: _tint(c) for k, c in KIND_COLORS.items()}
#: Per-VMA labels (addresses, sizes) are drawn for rows of at most this many VMAs.
LABEL_LIMIT = 24
#: Rows of more VMAs than this are drawn as a bitmap inside SVG and PDF output.
RASTER_LIMIT = 400
_ERR, _OK, _GREY, _INK = "#D55E00", "#009E73", "#6b6b6b", "#222222"


@dataclass(frozen=True)
class Lane:
    """A row of marks under the bars: the VMAs whose VmFlags show one of `codes`."""

    name: str
    codes: tuple[str, ...]
    label: str
    color: str


LANES = (
    Lane("mg", ("mg",), "mergeable", _OK),
    Lane("dc", ("dc",), "dontcopy", _INK),
    Lane("sr/rr", ("sr", "rr"), "seq/rand read", _INK),
    Lane("lo", ("lo",), "locked", _INK),
    Lane("special", ("io", "pf", "de", "mm", "reserved", "insertpage", "sao"),
         "special", _INK),
)

# Vertical geometry, in inches (the axes' y unit is one inch, downwards from 0).
_TITLE, _BAR, _LANE, _LANE_MARK, _ROW_GAP, _BAND = 0.27, 0.46, 0.14, 0.09, 0.14, 0.40
_LEFT, _RIGHT, _WIDTH = 1.45, 0.45, 6.8
_CHAR_IN = 7.5 * 0.6 / 72  # width of one 7.5 pt character, in inches
_TRACE_PT = 7.5
_NBSP = "\u00a0"


def _lanes_for(rows: Sequence[Snapshot]) -> list[Lane]:
    """The mergeable lane always; the others when some VMA has the flag."""
    codes = {c for snap in rows for r in snap.vmas for c in r.vmflags}
    return [lane for lane in LANES if lane.name == "mg" or codes & set(lane.codes)]


def _common_prefix(texts: list[str]) -> str:
    """The leading digits all addresses share (at least 4 digits are left to each)."""
    if len(texts) < 2 or len({len(t) for t in texts}) != 1:
        return ""
    n = 0
    while n < len(texts[0]) - 4 and len({t[n] for t in texts}) == 1:
        n += 1
    return texts[0][:n]


_EMPTY = np.zeros((0, 4, 2))  # no rectangles
_RGBA = {c: to_rgba(c) for c in (*KIND_COLORS.values(), *_TINTS.values(), _GREY)}


def _rects(x0: np.ndarray, x1: np.ndarray, y0: float, y1: float) -> np.ndarray:
    """Rectangles x0[i]..x1[i] by y0..y1, as an (n, 4, 2) array of corners."""
    out = np.empty((len(x0), 4, 2))
    out[:, (0, 3), 0] = x0[:, None]
    out[:, (1, 2), 0] = x1[:, None]
    out[:, (0, 1), 1] = y0
    out[:, (2, 3), 1] = y1
    return out


#: Every property that a diagram's labels set, at the value a new Text has unless told.
_TEXT_DEFAULTS = {"fontsize": 7.5, "color": _INK, "ha": "left", "va": "baseline",
                  "family": "sans-serif", "weight": "normal", "style": "normal",
                  "rotation": 0.0, "linespacing": "normal"}


class SpaceFigure:
    """A figure of one or more address-space rows on a shared axis; with `before_after`, two
    rows (before, after) with the changes annotated and a panel for the kernel trace."""

    def __init__(self, *, trace_panel: bool = False, width: float = _WIDTH) -> None:
        self.figure = Figure(figsize=(width, 2.0), dpi=100)
        self.figure._ksmbook_view = self  # type: ignore[attr-defined]
        self.width = width
        self.diagram_width = width * (0.64 if trace_panel else 1.0)
        self.ax = self.figure.add_axes((0, 0, self.diagram_width / width, 1))
        self.ax.set_axis_off()
        #: One collection of bars per row (gid "ksm-row-N" in SVG output), made as needed.
        self.row_bars: list[PolyCollection] = []
        self._bar_verts: dict[int, np.ndarray] = {}  # the corners each row's bars were given
        self.lane_marks = PolyCollection([], linewidths=0, zorder=2)
        self.guides = LineCollection([], linewidths=1.3, zorder=3)
        self.breaks = LineCollection([], linewidths=1.1, colors=_INK, zorder=3)
        for artist in (self.lane_marks, self.guides, self.breaks):
            self.ax.add_collection(artist)
        self.trace_ax = None
        if trace_panel:
            self.trace_ax = self.figure.add_axes((self.diagram_width / width, 0,
                                                  1 - self.diagram_width / width, 1))
            self.trace_ax.set_axis_off()
        self._texts: list[Text] = []
        self._spare: dict[object, list[Text]] = {}  # labels to use again, per axes
        self._legend: Legend | None = None
        self._legend_key: tuple | None = None  # what the legend shows, and where
        #: What the last update drew, for tests and for the explorer's caption.
        self.rows: list[Snapshot] = []
        self.layout = Layout([])
        self.notes: list[str] = []
        self.annotations: list[tuple[str, int]] = []
        #: The changes drawn by the last show_change() (None after show_rows()).
        self.changes: Changes | None = None
        self.header = ""

    # -- text helpers --------------------------------------------------------------------

    def _text(self, x: float, y: float, s: str, *, ax: Axes | None = None, **kw: Any) -> None:
        """A label on `ax` (the diagram's unless told): the next one of the last drawing's
        labels there, updated, or a new one (making a Text, and measuring it, costs more than
        updating one)."""
        ax = self.ax if ax is None else ax
        props: dict[str, Any] = {**_TEXT_DEFAULTS, **kw}
        spare = self._spare.get(ax)
        if spare:
            text = spare.pop(0)
            text.set_position((x, y))
            text.set_text(s)
            text.update(props)
        else:
            text = Text(x, y, s, transform=ax.transData, clip_on=False, **props)
            ax.add_artist(text)
        self._texts.append(text)

    def _clear(self) -> None:
        self._spare = {}
        for t in self._texts:
            self._spare.setdefault(t.axes, []).append(t)
        self._texts = []

    def _drop_spares(self) -> None:
        """Remove the labels of the last drawing that this one did not use again."""
        for texts in self._spare.values():
            for t in texts:
                t.remove()
        self._spare = {}

    # -- public updates ------------------------------------------------------------------

    def show_rows(self, rows: Sequence[Snapshot], *, title: str | None = None) -> Figure:
        """Draw each snapshot as a row (one process, or several after fork)."""
        self._clear()
        self.changes = None
        self.header = title if title is not None else ""
        top = 0.62 if self.header else 0.36
        self._draw(list(rows), [r.label for r in rows], top, None, None)
        return self.figure

    def show_change(self, before: Snapshot, after: Snapshot, trace: Trace | None = None,
                    *, title: str | None = None) -> Figure:
        """Draw before and after of one call, its changes, its outcome and its trace."""
        self._clear()
        ch = self.changes = changes(before, after, trace)
        self.header = title if title is not None else (outcome_text(trace) or "")
        self._draw([before, after], [f"before: {before.label}", f"after: {after.label}"],
                   0.95, ch, trace)
        return self.figure

    # -- drawing ---------------------------------------------------------------------------

    def _draw(self, rows: list[Snapshot], names: list[str], top: float,
              ch: Changes | None, trace: Trace | None) -> None:
        self.rows = rows
        self.layout = layout = Layout((r.start, r.end) for snap in rows for r in snap.vmas)
        lanes = _lanes_for(rows)
        bar_in = self.diagram_width - _LEFT - _RIGHT
        upi = layout.total / bar_in  # display units per inch
        self.notes = []
        self.annotations = []
        verts: list[list[np.ndarray]] = []
        colors: list[list[tuple[float, ...]]] = []
        lane_verts: list[np.ndarray] = [_EMPTY]
        lane_colors: list[str] = []
        breaks: list = []
        guides: list = []
        guide_colors: list[str] = []
        y = -top
        kinds: set[str] = set()
        for i, (snap, name) in enumerate(zip(rows, names, strict=True)):
            if ch is not None and i == 1:
                y = self._draw_band(rows[0], snap, ch, y, upi, guides, guide_colors)
            was = rows[0].mergeable if ch is not None and i == 1 else None
            verts.append([])
            colors.append([])
            y = self._draw_row(snap, name, y, lanes, upi, verts[-1], colors[-1], lane_verts,
                               lane_colors, breaks, was, holes=ch is None and len(rows) > 1)
            kinds |= {r.kind for r in snap.vmas}
        while len(self.row_bars) < len(rows):
            bars = PolyCollection([], edgecolors="white", zorder=2)
            bars.set_gid(f"ksm-row-{len(self.row_bars)}")
            self.ax.add_collection(bars)
            self.row_bars.append(bars)
        for i, bars in enumerate(self.row_bars):
            row_verts = np.concatenate(verts[i]) if i < len(rows) else _EMPTY
            # Bars where they were last time keep their paths (making paths is the cost).
            if not np.array_equal(row_verts, self._bar_verts.get(i, _EMPTY)):
                bars.set_verts(row_verts)  # type: ignore[arg-type]
                self._bar_verts[i] = row_verts
            rgba = np.array(colors[i] if i < len(rows) else [], dtype=float).reshape(-1, 4)
            bars.set_facecolor(rgba)  # type: ignore[arg-type]
            bars.set_linewidth(1.2 if len(row_verts) <= LABEL_LIMIT else 0.0)
            # Vector output (SVG, PDF) embeds a bitmap of a row of very many VMAs.
            bars.set_rasterized(len(row_verts) > RASTER_LIMIT)
        marks = np.concatenate(lane_verts)
        self.lane_marks.set_verts(marks)  # type: ignore[arg-type]
        self.lane_marks.set_facecolor(lane_colors)
        self.lane_marks.set_rasterized(len(marks) > RASTER_LIMIT)
        self.breaks.set_segments(breaks)
        self.guides.set_segments(guides)
        self.guides.set_color(guide_colors)
        if layout.compressed:
            self.notes.append("widths grow with the square root of the size (sizes differ "
                              "too much for one scale)")
        elif layout.widened:
            self.notes.append("small VMAs are drawn wider than to scale")
        if layout.shortened:
            self.notes.append("long holes are shortened (marked //, with their real size)")
        if any(len(snap.vmas) > LABEL_LIMIT for snap in rows):
            self.notes.append(f"per-VMA labels left out in rows of more than {LABEL_LIMIT} "
                              "VMAs (the maps table lists every VMA)")
        if self.notes:
            width = int((self.diagram_width - 0.2) / (7.5 * 0.55 / 72))
            lines = textwrap.wrap("Note: " + "; ".join(self.notes) + ".", width)
            self._text(-_LEFT * upi + 0.05 * upi, y - 0.04, "\n".join(lines), color=_GREY,
                       va="top", style="italic")
            y -= 0.1 + 0.145 * len(lines)
        height = -y + 0.08
        trace_lines = self._trace_lines(trace) if self.trace_ax is not None else []
        if self.trace_ax is not None:
            height = max(height, top + 0.2 + 0.134 * min(len(trace_lines), 60))
        self.figure.set_size_inches(self.width, height)
        self.ax.set_xlim(-_LEFT * upi, layout.total + _RIGHT * upi)
        self.ax.set_ylim(-height, 0)
        self._draw_header(kinds, ch, trace, upi, top)
        if self.trace_ax is not None:
            self._draw_trace(trace_lines, height, top)
        self._drop_spares()

    def _draw_header(self, kinds: set[str], ch: Changes | None, trace: Trace | None,
                     upi: float, top: float) -> None:
        x0 = -_LEFT * upi + 0.05 * upi
        if ch is not None and trace is not None:
            self._text(x0, -0.1, trace.call, fontsize=9, family="monospace", va="top")
            why = f"  ({os.strerror(trace.errno)})" if trace.errno is not None else ""
            self._text(x0, -0.36, trace.outcome() + why, fontsize=14, weight="bold",
                       color=_ERR if why else _OK, va="top")
        elif self.header:
            self._text(x0, -0.1, self.header, fontsize=10, weight="bold", va="top")
        handles = [Patch(facecolor=KIND_COLORS[k], label=KIND_LABELS[k])
                   for k in KINDS if k in kinds]
        # Below the header: beside a call it could run into the call's text.
        below = 0.6 if ch is not None and trace is not None else \
            0.28 if self.header else 0.0
        anchor = (1, 1 - below / self.figure.get_figheight())
        key = (tuple(h.get_label() for h in handles), anchor)
        if key == self._legend_key:
            return  # the legend drawn last time says the same
        if self._legend is not None:
            self._legend.remove()
            self._legend = None
        self._legend_key = key
        if handles:
            self._legend = self.ax.legend(
                handles=handles, loc="upper right", ncol=len(handles), fontsize=7.5,
                frameon=False, handlelength=1.2, columnspacing=1.0, borderaxespad=0.1,
                bbox_to_anchor=anchor)

    def _draw_row(self, snap: Snapshot, name: str, y: float, lanes: list[Lane], upi: float,
                  verts: list, colors: list, lane_verts: list, lane_colors: list[str],
                  breaks: list, was_mergeable: bool | None = None,
                  holes: bool = False) -> float:
        """One process: title, bars, lanes, addresses. Returns the y below it."""
        layout = self.layout
        n = len(snap.vmas)
        title = f"{name}: {plural(n, 'VMA')}"
        self._text(-_LEFT * upi + 0.05 * upi, y - 0.04, title, fontsize=8.5, weight="bold",
                   va="top")
        if snap.mergeable is not None:
            on = snap.mergeable
            was = "" if was_mergeable in (None, on) else (" (was clear)" if on else " (was set)")
            self._text(-_LEFT * upi + 0.05 * upi + (len(title) * 0.085 + 0.25) * upi,
                       y - 0.045, "MMF_VM_MERGEABLE " + ("set" if on else "clear") + was,
                       va="top", color=_OK if on else _GREY, weight="bold" if on else "normal",
                       family="monospace")
        y -= _TITLE
        bar_top, bar_bot = y, y - _BAR
        if not snap.vmas:
            self._text(layout.total / 2, (bar_top + bar_bot) / 2,
                       "(no mappings)" if snap.alive else "(exited)", ha="center",
                       va="center", color=_GREY, fontsize=8)
        xs0 = layout.xs_of(r.start for r in snap.vmas)
        xs1 = layout.xs_of(r.end for r in snap.vmas)
        verts.append(_rects(xs0, xs1, bar_bot, bar_top))
        prev: Region | None = None
        alt = False
        dense = n > LABEL_LIMIT
        for r in snap.vmas:
            # In a row too dense for the white separators to show, touching VMAs of one kind
            # alternate between the colour and a tint of it.
            alt = (not alt) if dense and prev is not None and prev.end == r.start and \
                prev.kind == r.kind else False
            colors.append(_RGBA[(_TINTS if alt else KIND_COLORS).get(r.kind, _GREY)])
            prev = r
        labelled = n <= LABEL_LIMIT
        if labelled:
            for r, x0, x1 in zip(snap.vmas, xs0, xs1, strict=True):
                self._bar_label(r, x0, x1, bar_top, bar_bot, upi)
        if holes and snap.vmas:
            self._row_holes(snap, bar_top, bar_bot, upi, breaks)
        lo, hi = (snap.vmas[0].start, snap.vmas[-1].end) if snap.vmas else (0, 0)
        for gap in layout.gaps:
            if lo <= gap.start < gap.end <= hi:
                self._gap_mark(gap, bar_top, bar_bot, upi, breaks)
        y = bar_bot
        for lane in lanes:
            y -= _LANE
            codes = frozenset(lane.codes)
            marked = np.fromiter((not codes.isdisjoint(r.vmflags) for r in snap.vmas),
                                 dtype=bool, count=n)
            lane_verts.append(_rects(xs0[marked], xs1[marked], y, y + _LANE_MARK))
            lane_colors += [lane.color] * int(marked.sum())
            self._text(-0.08 * upi, y + _LANE_MARK / 2, f"{lane.label}  {lane.name}",
                       ha="right", va="center", color=lane.color if lane.name == "mg" else _GREY)
        y = self._addresses(snap, labelled, y, upi)
        return y - _ROW_GAP

    def _row_holes(self, snap: Snapshot, top: float, bot: float, upi: float,
                   breaks: list) -> None:
        """Where another row has a VMA and this one none (a fork child's VM_DONTCOPY areas,
        an area one process unmapped): an outline with "no VMA" in it."""
        layout = self.layout
        gap_starts = {g.start for g in layout.gaps}
        starts = [r.start for r in snap.vmas]
        pieces: list[list[int]] = []
        for a, b in pairwise(layout.bounds):
            if a in gap_starts:
                continue
            i = bisect_right(starts, a) - 1
            if i >= 0 and snap.vmas[i].end >= b:
                continue
            if pieces and pieces[-1][1] == a:
                pieces[-1][1] = b
            else:
                pieces.append([a, b])
        for a, b in pieces:
            x0, x1 = layout.x(a), layout.x(b)
            breaks += [[(x0, top), (x1, top)], [(x1, top), (x1, bot)],
                       [(x1, bot), (x0, bot)], [(x0, bot), (x0, top)]]
            if (x1 - x0) / upi >= 7 * _CHAR_IN:
                self._text((x0 + x1) / 2, (top + bot) / 2, "no VMA here", ha="center",
                           va="center", color=_GREY, style="italic")

    def _bar_label(self, r: Region, x0: float, x1: float, top: float, bot: float,
                   upi: float) -> None:
        width_in = (x1 - x0) / upi
        size = size_text(r.size)
        color = _TEXT_ON.get(r.kind, "black")
        mid = (x0 + x1) / 2
        if width_in >= (len(size) + 1) * _CHAR_IN and width_in >= 4 * _CHAR_IN:
            two = width_in >= 5 * _CHAR_IN
            self._text(mid, (top + bot) / 2 + (0.07 if two else 0), size, ha="center",
                       va="center", color=color, weight="bold")
            if two:
                self._text(mid, (top + bot) / 2 - 0.09, r.perms, ha="center", va="center",
                           color=color, family="monospace")

    def _gap_mark(self, gap: Gap, top: float, bot: float, upi: float, breaks: list) -> None:
        """A hole's size under the row, and a break mark on a hole drawn shortened."""
        x0, x1, shortened = gap.x0, gap.x1, gap.shortened
        mid = (x0 + x1) / 2
        if shortened:
            d = 0.04 * upi
            for off in (-d, d):
                breaks.append([(mid + off - d, top - 0.2), (mid + off + d, top - 0.02)])
        text = size_text(gap.size)
        if (x1 - x0) / upi >= len(text) * _CHAR_IN * 0.9 or shortened:
            self._text(mid, bot + 0.06, text, ha="center", va="bottom", color=_GREY,
                       style="italic")

    def _addresses(self, snap: Snapshot, labelled: bool, y: float, upi: float) -> float:
        """Boundary addresses under the row: level, staggered or upright as room allows."""
        if not snap.vmas:
            return y - 0.1
        if labelled:
            addrs = sorted({a for r in snap.vmas for a in (r.start, r.end)})
        else:
            addrs = sorted({snap.vmas[0].start, snap.vmas[-1].end}
                           | {a for g in self.layout.shortened for a in (g.start, g.end)
                              if snap.vmas[0].start <= a <= snap.vmas[-1].end})
        xs = self.layout.xs_of(addrs)
        gaps = [(b - a) / upi for a, b in pairwise(xs)]
        full = [addr_text(a) for a in addrs]
        prefix = _common_prefix(full)
        least = min(gaps) if gaps else 10.0
        y -= 0.05

        def need(texts: list[str]) -> float:
            return (max(len(t) for t in texts) + 1) * _CHAR_IN

        # In full if they fit level or staggered; else after their common prefix.
        texts, pre = (full, "") if least >= need(full) / 2 else (
            [t[len(prefix):] for t in full], prefix)
        if pre:
            self._text(-0.08 * upi, y, f"{pre}…", ha="right", va="top", family="monospace",
                       color=_GREY)
        if least >= need(texts) / 2:
            stagger = least < need(texts)
            for i, (t, x) in enumerate(zip(texts, xs, strict=True)):
                self._text(x, y - 0.14 * (i % 2 if stagger else 0), t, ha="center",
                           va="top", family="monospace")
            return y - (0.30 if stagger else 0.16)
        last = None
        for t, x in zip(texts, xs, strict=True):
            if last is not None and (x - last) / upi < 0.12:
                continue
            last = x
            self._text(x, y, t, ha="center", va="top", rotation=90, family="monospace")
        return y - 0.1 - 0.075 * max(len(t) for t in texts)

    def _draw_band(self, before: Snapshot, after: Snapshot, ch: Changes, y: float, upi: float,
                   guides: list, guide_colors: list[str]) -> float:
        """The band between the before and after rows: what changed, and where."""
        layout = self.layout
        y -= 0.04
        band_top, band_bot = y, y - _BAND
        bar_bot = band_bot - _TITLE - _BAR
        after_bounds = {a for r in after.vmas for a in (r.start, r.end)}
        before_bounds = {a for r in before.vmas for a in (r.start, r.end)}
        placed: list[tuple[float, float, float]] = []  # (x0, x1, y) of labels drawn
        lo_x, hi_x = -_LEFT * upi, layout.total + _RIGHT * upi
        pad = 0.04 * upi

        marks = [(c.kind, cut, _ERR if c.kind == "split" else _OK)
                 for kind in ("split", "moved") for c in ch.of(kind)
                 for cut in sorted(after_bounds)
                 if c.start < cut < c.end and cut not in before_bounds]
        marks += [("merged", gone, _OK) for c in ch.of("merged") for gone in sorted(before_bounds)
                  if c.start < gone < c.end and gone not in after_bounds]
        cut_xs = [layout.x(addr) for _, addr, _ in marks]

        def label(texts: list[str], x: float, yy: float, span: tuple[float, float] | None,
                  **kw: Any) -> bool:
            """Draw the first of `texts` that fits: centred on x (inside `span`, a bracket,
            when it has one), else beside the bracket; never over another label, never across
            a guide line, never outside the figure."""
            if len(placed) >= LABEL_LIMIT:
                return False
            for text in texts:
                w = (len(text) + 1) * _CHAR_IN * upi
                spots = [(x - w / 2, x + w / 2, "center", x)]
                if span is not None:
                    lo, hi = span
                    if w > hi - lo:
                        spots = [(hi + pad, hi + pad + w, "left", hi + pad),
                                 (lo - pad - w, lo - pad, "right", lo - pad)]
                for x0, x1, ha, at in spots:
                    if x0 < lo_x or x1 > hi_x:
                        continue
                    if any(abs(py - yy) < 0.16 and x0 < px1 and px0 < x1
                           for px0, px1, py in placed):
                        continue
                    if span is not None and any(x0 < g < x1 for g in cut_xs):
                        continue
                    placed.append((x0, x1, yy))
                    self._text(at, yy, text, ha=ha, **kw)
                    return True
            return False

        unlabelled = 0
        title_top = band_bot
        for what, addr, color in marks:
            x = layout.x(addr)
            # Two pieces: around the after row's title line, never across it.
            guides += [[(x, band_top - 0.16), (x, title_top)],
                       [(x, title_top - _TITLE), (x, bar_bot)]]
            guide_colors += [color, color]
            self.annotations.append((what, addr))
            if not label([what], x, band_top - 0.02, None, va="top", color=color, weight="bold"):
                unlabelled += 1
        yb = band_bot + 0.08
        tick = 0.05
        for c in [c for kind in ("flags", "mapped", "unmapped", "replaced") for c in ch.of(kind)]:
            x0, x1 = layout.x(c.start), layout.x(c.end)
            guides += [[(x0, yb), (x1, yb)], [(x0, yb - tick), (x0, yb + tick)],
                       [(x1, yb - tick), (x1, yb + tick)]]
            guide_colors += [_INK] * 3
            text = c.detail if c.kind == "flags" else c.kind
            self.annotations.append((f"{c.kind} {text}".strip(), c.start))
            # A flags change reads "rw-p->r--p -wr"; its last word alone ("-wr") where the
            # whole does not fit.
            forms = [text] + ([text.split()[-1]] if c.kind == "flags" and " " in text else [])
            if not label(forms, (x0 + x1) / 2, yb + 0.04, (x0, x1), va="bottom", weight="bold",
                         family="monospace", color=_OK if "+mg" in text else _INK):
                unlabelled += 1
        if unlabelled:
            self.notes.append(f"{unlabelled} more changes are marked without a label "
                              "(see the changes text)")
        if ch.empty:
            self._text(layout.total / 2, (band_top + band_bot) / 2,
                       "no change to the address space", ha="center", va="center",
                       fontsize=8, color=_GREY, style="italic")
        return band_bot

    def _trace_lines(self, trace: Trace | None) -> list[str]:
        if trace is None:
            return ["(no kernel trace)"]
        columns = int((self.width - self.diagram_width - 0.1) * 72 / (_TRACE_PT * 0.6))
        lines: list[str] = []
        for step in trace.steps:
            text = str(step)
            depth = len(text) - len(text.lstrip())
            wrapped = textwrap.wrap(text.lstrip(), columns - depth - 2,
                                    break_on_hyphens=False) or [""]
            # No-break spaces: an SVG viewer would collapse ordinary leading spaces.
            lines += [_NBSP * depth + wrapped[0]] + [_NBSP * (depth + 2) + w for w in wrapped[1:]]
        return lines

    def _draw_trace(self, lines: list[str], height: float, top: float) -> None:
        ax = self.trace_ax
        assert ax is not None
        ax.set_xlim(0, 1)
        ax.set_ylim(-height, 0)
        limit = max(int((height - top - 0.25) / 0.134), 4)
        shown = lines if len(lines) <= limit else lines[:limit - 1] + [
            f"... {len(lines) - limit + 1} more lines"]
        self._text(0.02, -top + 0.02, "kernel trace", ax=ax, fontsize=8, weight="bold", va="bottom")
        self._text(0.02, -top - 0.08, "\n".join(shown), ax=ax, fontsize=_TRACE_PT,
                   family="monospace", va="top", linespacing=1.25)


def view_of(fig: Figure) -> SpaceFigure:
    """The `SpaceFigure` that drew `fig` (its rows, layout, annotations and artists)."""
    view = getattr(fig, "_ksmbook_view", None)
    if not isinstance(view, SpaceFigure):
        raise ValueError("not a figure drawn by ksmbook.render")
    return view
