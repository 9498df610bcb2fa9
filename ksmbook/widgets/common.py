"""What the widgets share: the reader's input errors, callbacks that never raise, the message
line and preformatted text."""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, TypeVar, cast

__all__ = ["InputError", "Widget", "button", "checkbox", "field", "guarded", "message_html",
           "pre", "stale_note", "tag_controls"]

#: Room a checkbox needs: the box and its gap, and the widest character of a 13 px label.
CHECKBOX_PX, CHAR_PX = 32, 9

F = TypeVar("F", bound=Callable[..., Any])


class InputError(ValueError):
    """Something the reader typed or asked that cannot be used; the message says why."""


class Widget:
    """The state every widget keeps: errors caught in callbacks (for tests), the message shown
    (`message`, in `message_box`) and whether views are being brought in line (`_syncing`,
    when the controls' callbacks must not act)."""

    def __init__(self) -> None:
        import ipywidgets as w

        self.errors: list[Exception] = []
        self.message = ""
        self.message_box = w.HTML("")
        self._syncing = False

    def _say(self, text: str, error: bool = False) -> None:
        self.message = text
        self.message_box.value = message_html(text, error)

    @contextmanager
    def _quiet(self) -> Iterator[None]:
        """While views are brought in line: the controls' callbacks do not act."""
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def _recover(self) -> None:
        """Bring the widget back in line with its history after a callback failed."""


def guarded(method: F) -> F:
    """Run a callback; any error becomes a message in the widget, never a traceback."""
    @wraps(method)
    def run(self: Widget, *args: Any) -> None:
        if self._syncing:
            return
        try:
            method(self, *args)
        except InputError as e:
            self._say(str(e), error=True)
        except Exception as e:  # noqa: BLE001 - shown to the reader, state rebuilt
            self.errors.append(e)
            self._recover()
            self._say(f"The widget could not do that ({type(e).__name__}: {e}). Nothing was "
                      "changed.", error=True)
    return cast(F, run)


def checkbox(description: str, value: bool) -> Any:
    """A checkbox wide enough for its label (an ipywidgets label that does not fit is cut to
    "..."), sized for the longest label it will show (CONFIG_KSM=y and =n are as long)."""
    import ipywidgets as w

    return w.Checkbox(value=value, description=description, indent=False,
                      layout=w.Layout(width=f"{CHECKBOX_PX + CHAR_PX * len(description)}px"))


def button(description: str, **kw: Any) -> Any:
    """A button as wide as its label."""
    import ipywidgets as w

    return w.Button(description=description, layout=w.Layout(width="auto"), **kw)


def field(kind: Any, description: str, width: int, **kw: Any) -> Any:
    """A control of `kind` (w.Text, w.Dropdown, ...) `width` px wide, its label as wide as the
    label needs."""
    import ipywidgets as w

    return kind(description=description, style={"description_width": "initial"},
                layout=w.Layout(width=f"{width}px"), **kw)


def tag_controls(widget: object, prefix: str) -> None:
    """Give each button, field, menu, checkbox and slider of `widget` the CSS class
    ``<prefix>-<its attribute name>``, by which the browser tests find it."""
    import ipywidgets as w

    for name, control in vars(widget).items():
        if isinstance(control, (w.Button, w.Checkbox, w.Dropdown, w.IntRangeSlider, w.Text)):
            control.add_class(f"{prefix}-{name.replace('_', '-')}")


def message_html(text: str, error: bool = False) -> str:
    """A widget's message line as HTML (escaped; orange for errors); "" for no message."""
    color = "#b34700" if error else "#444"
    return (f'<div class="ksmbook-message" style="color:{color}">{html.escape(text)}</div>'
            if text else "")


def pre(text: str, cls: str = "") -> str:
    """Preformatted text as HTML (escaped), scrolling sideways rather than wrapping."""
    return (f'<pre class="{cls}" style="font-size:11px;line-height:1.3;margin:2px 0;'
            f'white-space:pre;overflow-x:auto">{html.escape(text)}</pre>')


#: Where JupyterLab draws a widget from the state saved with the notebook, with no kernel
#: behind it, ipywidgets marks every control "disconnected" (a red broken-chain icon each).
#: Inside the book's widgets that mark gives way to one line saying what the reader sees.
_STALE_CSS = (
    ".ksmbook-widget .jupyter-widgets-disconnected::before,"
    ".ksmbook-widget.jupyter-widgets-disconnected::before{display:none}"
    ".ksmbook-stale{display:none;font-style:italic;color:#555;margin:2px 0 6px}"
    ".jupyter-widgets-disconnected .ksmbook-stale{display:block}")


def stale_note(what: str) -> Any:
    """An HTML widget shown only while the widget is not connected to a kernel (drawn from
    the saved notebook, or after the kernel stopped): it says that this is a picture of the
    `what` as saved, and that running the cell makes it live."""
    import ipywidgets as w

    note = (f"A picture of the {what} as it was when the notebook was saved: it does not "
            "respond. Run the cell to make it live.")
    widget = w.HTML(f"<style>{_STALE_CSS}</style>"
                    f'<div class="ksmbook-stale">{html.escape(note)}</div>')
    widget.add_class("ksmbook-stale-note")
    return widget
