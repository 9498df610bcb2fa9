"""A widget to step ksmd by hand: one batch or one full scan at a time, with its knobs, and a
write to any page to watch copy-on-write break a merge.

Nothing here knows how ksmd behaves: the steps are ``k.ksmd.batch()`` and
``k.ksmd.full_scans(1)``, the knobs are writes to ``k.sysfs`` (refused values come back with
the kernel's errno, shown as a message), writes are ``Process.write_pages``, the fault a
write takes is ``ksmbook.sidechannel.classify``, and the pictures and tables come from
``ksmbook.render.ksm_pages``. Typed contents are parsed (a name or a number), never evaluated;
an error in a callback becomes a message in the widget, never a traceback.
"""

from __future__ import annotations

import errno
import html
import re
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, TypeVar

import ipywidgets as w

from ..constants import MADV, MAP, PAGE_SIZE, PROT
from ..kernel import Kernel, Process
from ..ksmd import KsmdIdle
from ..render import to_svg
from ..render.ksm_pages import (
    PageFigure,
    PageState,
    counters_plot,
    counters_table,
    page_state,
    pages_text,
)
from ..render.text import addr_text
from ..sidechannel import KIND_TEXT, LATENCY_US, classify
from .explorer import message_html

__all__ = ["KsmdStepper", "InputError", "demo_kernel", "DEMO_NAMES"]

#: Names of the demo's page contents.
DEMO_NAMES = {1: "X", 2: "Y", 3: "Z"}
_TRACE_LINES = 120
_NUMBER = re.compile(r"(0x[0-9a-fA-F]+|\d+)\Z")

F = TypeVar("F", bound=Callable[..., Any])


class InputError(ValueError):
    """Something the reader typed that cannot be used; the message says why."""


def demo_kernel(profile: str = "modern") -> Kernel:
    """The reference example: p1 writes [X, X, Y, Z], p2 writes [X, Y], both advise their
    pages MADV_MERGEABLE; run=1, pages_to_scan=2 (so that a batch is a part of a pass)."""
    k = Kernel(profile=profile)
    rw, anon = PROT.PROT_READ | PROT.PROT_WRITE, MAP.MAP_PRIVATE | MAP.MAP_ANONYMOUS
    for contents in ([1, 1, 2, 3], [1, 2]):
        p = k.spawn()
        a = p.mmap(len(contents) * PAGE_SIZE, rw, anon)
        p.write_pages(a, contents)
        p.madvise(a, len(contents) * PAGE_SIZE, MADV.MADV_MERGEABLE)
    k.sysfs["run"] = 1
    k.sysfs["pages_to_scan"] = 2
    return k


def _guarded(method: F) -> F:
    """Run a callback; any error becomes a message in the widget, never a traceback."""
    @wraps(method)
    def run(self: KsmdStepper, *args: Any) -> None:
        if self._syncing:
            return
        try:
            method(self, *args)
        except InputError as e:
            self._say(str(e), error=True)
        except KsmdIdle as e:
            self._say(f"ksmd does not scan: {e}", error=True)
            self._refresh()
        except OSError as e:
            name = errno.errorcode.get(e.errno or 0, str(e.errno))
            self._say(f"Refused with {name}: {e.strerror or e}", error=True)
            self._refresh()
        except Exception as e:  # noqa: BLE001 - shown to the reader, never raised
            self.errors.append(e)
            self._say(f"That did not work ({type(e).__name__}: {e}).", error=True)
            self._refresh()
    return run  # type: ignore[return-value]


def _pre(text: str, cls: str = "") -> str:
    return f'<pre class="{cls}" style="font-size:11px;line-height:1.25">{html.escape(text)}</pre>'


class KsmdStepper:
    """Step the simulated ksmd and watch pages merge; write a page and watch the merge break.

    ``setup`` makes the kernel to start from (and again on Reset); default `demo_kernel`.
    ``names`` gives page contents names (default: X, Y, Z for 1, 2, 3). Display it as a cell's
    last value. For tests: `kernel`, `history` (counters after each full scan), `state`,
    `pages_text`, `view`, `message`, `last_write` (the fault kind of the last write), `traces`
    (ksmd's traces of the last step).
    """

    def __init__(self, setup: Callable[[], Kernel] | None = None, *,
                 names: Mapping[int, str] | None = None) -> None:
        self._setup = setup or demo_kernel
        self.names = dict(DEMO_NAMES if names is None else names)
        self.errors: list[Exception] = []
        self.message = ""
        self.last_write: str | None = None
        self.traces: list[Any] = []
        self.view = PageFigure()
        self.state: PageState | None = None
        self._syncing = False
        self._build_controls()
        self._start()

    # -- public state -----------------------------------------------------------------

    @property
    def kernel(self) -> Kernel:
        return self._kernel

    @property
    def pages_text(self) -> str:
        return pages_text(self.state) if self.state is not None else ""

    # -- controls ---------------------------------------------------------------------

    def _build_controls(self) -> None:
        small = w.Layout(width="auto")
        style = {"description_width": "initial"}
        self.batch_button = w.Button(description="one batch", icon="step-forward",
                                     tooltip="ksm_do_scan(pages_to_scan), then sleep",
                                     layout=small)
        self.scan_button = w.Button(description="one full scan", icon="fast-forward",
                                    button_style="primary", layout=small)
        self.reset_button = w.Button(description="Reset", icon="undo", layout=small)
        self.run = w.Dropdown(options=[("0 (stop)", 0), ("1 (merge)", 1),
                                       ("2 (unmerge all)", 2)], description="run",
                              style=style, layout=w.Layout(width="170px"))
        self.pages_to_scan = w.BoundedIntText(value=100, min=0, max=10_000_000,
                                              description="pages_to_scan", style=style,
                                              layout=w.Layout(width="190px"))
        self.smart_scan = w.Checkbox(value=True, description="smart_scan", indent=False,
                                     layout=w.Layout(width="110px"))
        self.use_zero_pages = w.Checkbox(value=False, description="use_zero_pages",
                                         indent=False, layout=w.Layout(width="135px"))
        self.max_page_sharing = w.BoundedIntText(value=256, min=0, max=1 << 30,
                                                 description="max_page_sharing", style=style,
                                                 layout=w.Layout(width="200px"))
        self.process = w.Dropdown(description="write: process", style=style,
                                  layout=w.Layout(width="190px"))
        self.page = w.Dropdown(description="page", style=style, layout=w.Layout(width="420px"))
        self.content = w.Text(value="W", description="new content", style=style,
                              placeholder="a name or a number",
                              layout=w.Layout(width="200px"))
        self.write_button = w.Button(description="write", icon="pencil", layout=small)
        self.message_box = w.HTML("")
        self.diagram = w.HTML("")
        self.diagram.add_class("ksmbook-pages")
        self.table = w.HTML("")
        self.counters_diagram = w.HTML("")
        self.counters_box = w.HTML("")
        self.trace_box = w.HTML("")
        for name in ("batch_button", "scan_button", "reset_button", "run", "pages_to_scan",
                     "smart_scan", "use_zero_pages", "max_page_sharing", "process", "page",
                     "content", "write_button"):
            getattr(self, name).add_class("ksmd-" + name.replace("_", "-"))
        self.batch_button.on_click(self._on_batch)
        self.scan_button.on_click(self._on_scan)
        self.reset_button.on_click(self._on_reset)
        self.write_button.on_click(self._on_write)
        for knob in ("run", "pages_to_scan", "smart_scan", "use_zero_pages", "max_page_sharing"):
            getattr(self, knob).observe(self._on_knob, "value")
        self.process.observe(self._on_process, "value")
        tabs = w.Tab(children=[self.table, w.VBox([self.counters_diagram, self.counters_box]),
                               self.trace_box])
        for i, title in enumerate(("Pages (text)", "Counters over scans", "ksmd trace")):
            tabs.set_title(i, title)
        self.tabs = tabs
        self.knob_row = w.HBox([self.run, self.pages_to_scan, self.smart_scan,
                                self.use_zero_pages, self.max_page_sharing])
        self.widget = w.VBox([
            w.HBox([self.batch_button, self.scan_button, self.reset_button]),
            self.knob_row,
            w.HBox([self.process, self.page, self.content, self.write_button]),
            self.message_box, self.diagram, tabs])
        self.widget.add_class("ksmbook-ksmd")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # -- actions ----------------------------------------------------------------------

    def _start(self) -> None:
        self._kernel = self._setup()
        self.history: list[dict[str, int]] = [dict(self._kernel.ksmd.counters())]
        self.last_write = None
        self.traces = []
        modern = "smart_scan" in self._kernel.sysfs
        for name in ("smart_scan", "use_zero_pages", "max_page_sharing"):
            getattr(self, name).layout.display = None if modern else "none"
        self._refresh()

    def _record(self, before: int) -> None:
        counters = dict(self.kernel.ksmd.counters())
        if counters["full_scans"] != before:
            self.history.append(counters)

    @_guarded
    def _on_batch(self, _: object = None) -> None:
        k = self.kernel
        before = k.ksmd.counters()["full_scans"]
        report = k.ksmd.batch()
        self.traces = [report.trace] if report.trace is not None else []
        self._record(before)
        if not report.ran:
            self._say("ksmd waited: ksmd_should_run() is false (run is not 1, or no mm is "
                      "registered with KSM).")
        else:
            end = " and ended a full scan" if report.pass_ended else ""
            self._say(f"One batch: {report.scanned} pages scanned, {report.skipped} skipped"
                      f"{end}.")
        self._refresh()

    @_guarded
    def _on_scan(self, _: object = None) -> None:
        k = self.kernel
        batches = k.ksmd.batches
        counters = k.ksmd.full_scans(1)
        self.traces = list(k.ksmd.log)[-(k.ksmd.batches - batches):]
        self.history.append(dict(counters))
        self._say(f"Full scan {counters['full_scans']} done.")
        self._refresh()

    @_guarded
    def _on_reset(self, _: object = None) -> None:
        self._start()
        self._say("Back to the start.")

    @_guarded
    def _on_knob(self, change: dict[str, Any]) -> None:
        name = change["owner"].description
        value = change["new"]
        self.kernel.sysfs[name] = int(value)
        self._say(f"echo {int(value)} > /sys/kernel/mm/ksm/{name}")
        if name == "run" and int(value) == 2:
            self.history.append(dict(self.kernel.ksmd.counters()))
        self._refresh()

    @_guarded
    def _on_process(self, _: object = None) -> None:
        self._sync_pages()

    def _content(self) -> int:
        text = self.content.value.strip()
        by_name = {v: c for c, v in self.names.items()}
        if text in by_name:
            return by_name[text]
        if _NUMBER.match(text):
            value = int(text, 0)
            if value < 1 << 64:
                return value
        if len(text) == 1 and text.isalpha() and text.isupper():
            # A new name: the next free content number.
            value = max([*self.names, 0x100]) + 1
            self.names[value] = text
            return value
        known = ", ".join(self.names.values())
        raise InputError(f"Cannot use {text!r} as a page content: type a name ({known}, or a "
                         "new capital letter) or a number below 2**64 (0 is an all-zero page).")

    def _process(self) -> Process:
        for p in self.kernel.processes:
            if p.name == self.process.value:
                return p
        raise InputError("Pick a process to write to.")

    @_guarded
    def _on_write(self, _: object = None) -> None:
        if self.page.value is None:
            raise InputError("Pick a page to write to.")
        p = self._process()
        addr = int(self.page.value)
        content = self._content()
        kind = classify(p, addr)
        p.write_pages(addr, [content])
        self.last_write = kind
        name = self.names.get(content, str(content))
        self._say(f"{p.name} wrote {name} at {addr_text(addr)}: {KIND_TEXT[kind]} (about "
                  f"{LATENCY_US[kind]:.1f} us on this machine). ksmd's trees and counters "
                  "notice at its next visit of the page.")
        self._refresh()

    # -- views ------------------------------------------------------------------------

    def _say(self, text: str, error: bool = False) -> None:
        self.message = text
        self.message_box.value = message_html(text, error)

    def _sync_knobs(self) -> None:
        sysfs = self.kernel.sysfs
        for name in ("run", "pages_to_scan", "smart_scan", "use_zero_pages",
                     "max_page_sharing"):
            if name in sysfs:
                control = getattr(self, name)
                value = int(sysfs[name])
                control.value = bool(value) if isinstance(control, w.Checkbox) else value

    def _sync_pages(self) -> None:
        state = self.state
        if state is None:
            return
        rows = [r for r in state.rows if r.process == self.process.value]
        options = [(f"{addr_text(r.address)}  {state.name(r.content)}  {r.label}", r.address)
                   for r in rows]
        current = self.page.value
        self._syncing = True
        try:
            self.page.options = options
            values = [v for _, v in options]
            self.page.value = current if current in values else (values[0] if values else None)
        finally:
            self._syncing = False

    def _refresh(self) -> None:
        """Bring every view in line with the kernel."""
        k = self.kernel
        self.state = page_state(k, names=self.names)
        self._syncing = True
        try:
            self._sync_knobs()
            names = [p.name for p in k.processes if p.alive]
            self.process.options = names
            if self.process.value not in names:
                self.process.value = names[0] if names else None
        finally:
            self._syncing = False
        self._sync_pages()
        full = k.ksmd.counters()["full_scans"]
        self.diagram.value = to_svg(self.view.update(
            self.state, title=f"{k.profile.title}: after {full} full scans"))
        self.table.value = _pre(pages_text(self.state), "ksmbook-text")
        self.counters_diagram.value = to_svg(counters_plot(self.history))
        self.counters_box.value = _pre(counters_table(self.history))
        if not self.traces:
            self.trace_box.value = _pre("(no ksmd step yet)")
        else:
            lines = "\n".join(str(t) for t in self.traces).splitlines()
            more = len(lines) - _TRACE_LINES
            self.trace_box.value = _pre("\n".join(lines[:_TRACE_LINES])
                                        + (f"\n... {more} more lines" if more > 0 else ""))
