"""What a widget leaves in a notebook: the live view, and a picture of it for where it cannot run.

A widget's view needs a running kernel. A notebook opened as stored (JupyterLab before any cell
ran, a static viewer, the HTML book) has none, and would show the widget's Python repr or
"model not found". So the widgets display one output with three representations:

- the widget view (``application/vnd.jupyter.widget-view+json``), which a live front end draws;
- ``text/html``: a note that the picture is of the widget as it was when the cell ran and that
  running the cell makes it live, the diagram as a PNG image (an ``<img>`` survives the HTML
  sanitizers of untrusted notebooks, inline SVG does not), and its text twin;
- ``text/plain``: the note and the text twin, for front ends without HTML.

``scripts/strip_notebooks.py`` removes the widget view from stored outputs (its model is not
stored), which leaves the picture.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from matplotlib.figure import Figure

__all__ = ["WIDGET_MIME", "LIVE_NOTE", "widget_bundle", "display_widget"]

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

#: The line above every picture of a widget.
LIVE_NOTE = ("A picture of the {what} as it was when this notebook was executed. "
             "Run the cell to make it live.")


def _png(figure: Figure) -> str:
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def widget_bundle(widget: Any, *, what: str, figure: Figure, text: str,
                  lines: tuple[str, ...] = ()) -> dict[str, Any]:
    """The mime bundle of `widget` (an ipywidgets widget) with a picture of it: `figure` (its
    diagram), `lines` (short lines shown above the diagram: a call and its result, a message)
    and `text` (the diagram's text twin). `what` names the widget in the note."""
    note = LIVE_NOTE.format(what=what)
    alt = text.splitlines()[0] if text else what
    shown = "".join(f"<div>{html.escape(line)}</div>" for line in lines if line)
    bundle = {k: v for k, v in widget._repr_mimebundle_().items() if k == WIDGET_MIME}
    bundle["text/html"] = (
        f'<div class="ksmbook-snapshot">'
        f'<p style="font-style:italic;color:#555">{html.escape(note)}</p>{shown}'
        f'<img src="data:image/png;base64,{_png(figure)}" alt="{html.escape(alt)}" '
        f'style="max-width:100%">'
        f'<pre style="font-size:11px;line-height:1.3">{html.escape(text)}</pre></div>')
    bundle["text/plain"] = "\n".join([note, *(line for line in lines if line), text])
    return bundle


def display_widget(widget: Any, **picture: Any) -> None:
    """Display `widget` with its picture (the arguments of `widget_bundle`)."""
    from IPython.display import display

    display(widget_bundle(widget, **picture), raw=True)
