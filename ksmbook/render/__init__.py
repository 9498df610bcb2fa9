"""Diagrams of simulated address spaces and their text twins.

    import ksmbook.render as kr
    before = kr.snapshot(p)
    p.madvise(a + 2 * kb.PAGE_SIZE, 4 * kb.PAGE_SIZE, kb.MADV_MERGEABLE)
    kr.show_change(before, kr.snapshot(p), p.last_trace)

Views only read state: `snapshot()` copies it, and everything else draws or prints copies.
Every figure has a text twin printed from the same snapshot (`maps_text`, `changes_text`),
which is what a notebook's stored output is checked against.
"""

from __future__ import annotations

from .diagram import KIND_COLORS, KIND_LABELS, LABEL_LIMIT, LANES, Lane, SpaceFigure, view_of
from .ksm_pages import (
    counters_plot,
    page_diagram,
    page_state,
    pages_text,
    show_counters,
    show_pages,
    show_probe,
    use_png,
)
from .layout import Gap, Layout
from .mm_slots import show_slot_list, slot_list, slot_list_diagram, slot_list_text
from .show import address_space, before_after, processes, show, show_change, to_svg
from .snapshot import KINDS, Region, Snapshot, from_entries, kind_of, snapshot, snapshots
from .text import (
                   Change,
                   Changes,
                   addr_text,
                   changes,
                   changes_text,
                   maps_text,
                   outcome_text,
                   size_text,
)

__all__ = [
    "Snapshot", "Region", "snapshot", "snapshots", "from_entries", "kind_of", "KINDS",
    "maps_text", "changes", "changes_text", "Change", "Changes", "addr_text", "size_text",
    "outcome_text", "to_svg", "address_space", "before_after", "processes", "show", "show_change",
    "SpaceFigure", "view_of", "Layout", "Gap", "Lane", "LANES", "KIND_COLORS", "KIND_LABELS",
    "LABEL_LIMIT", "page_state", "pages_text", "page_diagram",
    "counters_plot", "show_pages",
    "show_counters", "show_probe", "use_png", "slot_list", "slot_list_text",
    "slot_list_diagram", "show_slot_list",
]
