"""What a widget leaves in a notebook: a picture of it, and the live view.

A widget's view needs a running kernel: JupyterLab saves no widget state with the book's
notebooks (jupyter-config/ksmbook-widget-state.json; with state saved, a reopened notebook is
marked changed and autosave rewrites it without the state). A notebook opened as stored (the
committed chapters, a static viewer, the HTML book), or reopened after a run, has no kernel
behind its widgets, and the view alone would say "Error displaying widget: model not found".
So a widget displays two outputs:

1. its picture (``text/html``: a note that this is the widget as it was when the cell ran and
   that running the cell makes it live, the diagram as a PNG image, which survives the HTML
   sanitizers of untrusted notebooks where inline SVG does not, and its text twin;
   ``text/plain``: the note and the text twin);
2. the widget view (``application/vnd.jupyter.widget-view+json``), with an empty
   ``text/plain`` for front ends without widgets.

In JupyterLab the picture's style sheet hides the picture while the widget is drawn in the
same cell, and hides the widget's output while it cannot be drawn
(the picture then stands in for it). ``scripts/strip_notebooks.py`` drops the view output
from committed notebooks (its model is not stored), which leaves the picture.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from matplotlib.figure import Figure

from ..render.ksm_pages import png_bytes

__all__ = ["WIDGET_MIME", "LIVE_NOTE", "PICTURE_CSS", "picture_bundle", "view_bundle",
           "display_widget"]

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

#: The line above every picture of a widget.
LIVE_NOTE = ("A picture of the {what} as it was when this notebook was executed. "
             "Run the cell to make it live.")

#: JupyterLab only (its class names): the picture's output is followed by the widget's. Where
#: that output draws one of the book's widgets (`.ksmbook-widget`), live or from saved state,
#: the picture gives way to it; where it cannot ("Loading widget...", "model not found"), it
#: gives way to the picture. (Other outputs carry data-mime-type, the widget renderer does not:
#: an output printed after the widget is never hidden.)
PICTURE_CSS = (
    ".jp-OutputArea-child:has(.ksmbook-snapshot):has(+ .jp-OutputArea-child .ksmbook-widget)"
    "{display:none}"
    ".jp-OutputArea-child:has(.ksmbook-snapshot) + .jp-OutputArea-child"
    ":not(:has(.ksmbook-widget)):not(:has([data-mime-type])){display:none}")


def picture_bundle(*, what: str, figure: Figure, text: str,
                   lines: tuple[str, ...] = ()) -> dict[str, Any]:
    """The mime bundle of a widget's picture: `figure` (its diagram), `lines` (short lines
    shown above the diagram: a call and its result, a message) and `text` (the diagram's text
    twin). `what` names the widget in the note."""
    note = LIVE_NOTE.format(what=what)
    alt = text.splitlines()[0] if text else what
    shown = "".join(f"<div>{html.escape(line)}</div>" for line in lines if line)
    png = base64.b64encode(png_bytes(figure)).decode("ascii")
    return {
        "text/html": (
            f'<div class="ksmbook-snapshot"><style>{PICTURE_CSS}</style>'
            f'<p style="font-style:italic;color:#555">{html.escape(note)}</p>{shown}'
            f'<img src="data:image/png;base64,{png}" alt="{html.escape(alt)}" '
            f'style="max-width:100%">'
            f'<pre style="font-size:11px;line-height:1.3">{html.escape(text)}</pre></div>'),
        "text/plain": "\n".join([note, *(line for line in lines if line), text]),
    }


def view_bundle(widget: Any) -> dict[str, Any]:
    """The mime bundle of `widget`'s live view (an ipywidgets widget), with an empty
    text/plain (its picture is the other output)."""
    bundle = {k: v for k, v in widget._repr_mimebundle_().items() if k == WIDGET_MIME}
    bundle["text/plain"] = ""
    return bundle


def display_widget(widget: Any, **picture: Any) -> None:
    """Display the picture of `widget` (the arguments of `picture_bundle`), then `widget`."""
    from IPython.display import display

    display(picture_bundle(**picture), raw=True)
    display(view_bundle(widget), raw=True)
