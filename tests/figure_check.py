"""Measure the text of a figure as a reader sees it: size on screen, overlaps, overflow.

Used by tests/test_render.py. A figure is measured with matplotlib's Agg renderer
(`Text.get_window_extent`) at the resolution the book shows it: PNG at 100 dpi, shown at its
own size in JupyterLab and in the HTML book (book/_static/ksmbook.css keeps the theme from
scaling figures down to its 688 px text column: a wider one scrolls sideways).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

#: Resolution of the PNG the book stores (ksmbook.render.ksm_pages.png_bytes).
PNG_DPI = 100
#: Width of the HTML book's text column in CSS px at 100 % zoom (sphinx-book-theme in Chromium,
#: 1280 px wide window). Figures of the chapters fit it; wider ones scroll (see above).
COLUMN_PX = 688
#: The smallest text a reader should have to read, in CSS px.
MIN_PX = 10.0


def texts(fig: Figure) -> list[Text]:
    """The texts a reader sees (tick labels of ticks outside an axis's view are not drawn)."""
    hidden = set()
    for ax in fig.axes:
        for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            lo, hi = min(lo, hi), max(lo, hi)
            if not ax.axison:
                hidden.update(id(t) for t in axis.get_majorticklabels()
                              + axis.get_minorticklabels())
                continue
            for loc, lab in zip(axis.get_majorticklocs(), axis.get_majorticklabels(),
                                strict=False):
                if not ax.axison or not lo - 1e-9 <= loc <= hi + 1e-9:
                    hidden.add(id(lab))
    return [t for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip() and id(t) not in hidden]


def problems(fig: Figure) -> list[str]:
    """What is wrong with the text of `fig` as shown at its own size (JupyterLab, and the HTML
    book): too small, outside the figure, overlapping another text, or crossed by a guide
    line."""
    fig.set_dpi(PNG_DPI)
    canvas = FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    fig.draw(renderer)
    out: list[str] = []
    boxes = []
    for t in texts(fig):
        px = t.get_fontsize() * PNG_DPI / 72
        label = repr(t.get_text()[:40])
        if px < MIN_PX - 1e-6:
            out.append(f"{label}: {px:.1f} px on screen (< {MIN_PX})")
        bb = t.get_window_extent(renderer)
        if bb.x0 < 0 or bb.y0 < 0 or bb.x1 > fig.bbox.x1 or bb.y1 > fig.bbox.y1:
            out.append(f"{label}: outside the figure ({bb.x0:.0f},{bb.y0:.0f})-"
                       f"({bb.x1:.0f},{bb.y1:.0f}) of {fig.bbox.x1:.0f}x{fig.bbox.y1:.0f}")
        boxes.append((t, bb))
    for (t1, b1), (t2, b2) in combinations(boxes, 2):
        w = min(b1.x1, b2.x1) - max(b1.x0, b2.x0)
        h = min(b1.y1, b2.y1) - max(b1.y0, b2.y0)
        if w > 1.5 and h > 1.5:
            out.append(f"{t1.get_text()[:30]!r} overlaps {t2.get_text()[:30]!r}")
    view = getattr(fig, "_ksmbook_view", None)
    guides = getattr(view, "guides", None)
    if guides is not None:
        for seg in guides.get_segments():
            pts = guides.get_transform().transform(np.asarray(seg))
            (x0, y0), (x1, y1) = pts[0], pts[-1]
            if abs(x1 - x0) > 0.5:
                continue  # horizontal brackets sit under their own labels
            lo, hi = sorted((y0, y1))
            for t, bb in boxes:
                if bb.x0 + 1 < x0 < bb.x1 - 1 and lo < bb.y1 - 1 and hi > bb.y0 + 1:
                    out.append(f"a guide line at x={x0:.0f} crosses {t.get_text()[:30]!r}")
    return out
