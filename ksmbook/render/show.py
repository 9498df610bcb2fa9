"""The diagram functions the book calls, and `show`, which also prints the text twin."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import matplotlib
from matplotlib.figure import Figure

from ..trace import Trace
from .diagram import SpaceFigure
from .ksm_pages import _display, use_png
from .snapshot import Snapshot, snapshot, snapshots
from .text import changes_text, maps_text

if TYPE_CHECKING:
    from ..kernel import Kernel, Process

__all__ = ["address_space", "before_after", "processes", "show", "show_change", "to_svg"]


def _snap(obj: Process | Snapshot) -> Snapshot:
    return obj if isinstance(obj, Snapshot) else snapshot(obj)


def address_space(process: Process | Snapshot, *, title: str | None = None) -> Figure:
    """One process's VMAs as bars along the address axis, with their flag lanes."""
    return SpaceFigure().show_rows([_snap(process)], title=title)


def before_after(before: Snapshot, after: Snapshot, trace: Trace | None = None, *,
                 title: str | None = None, trace_panel: bool = True) -> Figure:
    """One call: the VMAs before and after, what was split, merged or re-flagged, the
    result or errno, and (with `trace_panel`) the kernel trace beside it."""
    fig = SpaceFigure(trace_panel=True, width=11.0) if trace_panel else SpaceFigure()
    return fig.show_change(before, after, trace, title=title)


def processes(kernel_or_list: Kernel | Iterable[Process | Snapshot], *,
              title: str | None = None) -> Figure:
    """Several processes (a parent and its children after fork) on one address axis,
    each with its MMF_VM_MERGEABLE flag."""
    if isinstance(kernel_or_list, Iterable):
        rows = [_snap(p) for p in kernel_or_list]
    else:
        rows = snapshots(kernel_or_list)
    return SpaceFigure().show_rows(rows, title=title)


use_png()


def show(process: Process | Snapshot, *, title: str | None = None) -> None:
    """Display the address-space diagram and print its maps table."""
    snap = _snap(process)
    _display(address_space(snap, title=title))
    print(maps_text(snap))


def show_change(before: Snapshot, after: Snapshot, trace: Trace | None = None) -> None:
    """Display the before/after diagram of one call and print its changes as text, then the
    kernel trace (as text, readable at any size, rather than inside the figure)."""
    _display(before_after(before, after, trace, trace_panel=False))
    print(changes_text(before, after, trace))
    if trace is not None:
        print(f"\nkernel trace:\n{trace}")


def to_svg(fig: Figure) -> str:
    """The figure as inline SVG that scales down to its container: text stays text (so a
    browser, and a browser test, can read it) and ids are stable from one render to the next."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "ksmbook"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    return re.sub(r'<svg([^>]*?) width="([\d.]+)pt" height="[\d.]+pt"',
                  r'<svg\1 width="100%" style="max-width:\2pt;height:auto"', text, count=1)
