"""A widget to step ksmd by hand: one batch or one full scan at a time, with its knobs, and a
write to any page to watch copy-on-write break a merge.

Nothing here knows how ksmd behaves: every action is a statement of the scenario language
(``ksmd batch``, ``ksmd scan 1``, ``sysfs NAME=VALUE``, ``p2: write ADDR V``) run in a
`ksmbook.session.Session` (a knob's text is written as typed, and a value the kernel refuses
comes back with its errno, shown as a message that says which check refused it); the
fault a write took is the one its trace records, and the pictures and tables come from
``ksmbook.render.ksm_pages``. The set-up and every action form `script`, which
``python -m ksmbook run`` replays to the same counters. Undo, Redo and Reset change the
session's history, and every view (the counters over scans, ksmd's last trace, the last write's
fault) is drawn again from the session's statements and their results. Typed contents are
parsed (a name or a number), never evaluated; an error in a callback becomes a message in the
widget, never a traceback. The controls are built in `ksmd_controls`.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as w

from ..kernel import Kernel, Process
from ..render import to_svg
from ..render.ksm_pages import (
    PageFigure,
    PageState,
    counters_plot,
    counters_table,
    page_state,
    pages_text,
)
from ..render.text import addr_text, plural
from ..scenario import (
    Addr,
    KsmdBatch,
    KsmdScans,
    ScenarioError,
    Statement,
    StepResult,
    SysfsWrite,
    Write,
    boot,
    parse,
    run,
)
from ..session import Session
from ..sidechannel import LATENCY_US, fault_of
from ..trace import Fault, Trace, errno_name
from .common import InputError, guarded, pre
from .ksmd_controls import KNOBS, StepperControls

__all__ = ["KsmdStepper", "demo_script", "demo_kernel", "DEMO_NAMES"]

#: Names of the demo's page contents.
DEMO_NAMES = {1: "X", 2: "Y", 3: "Z"}
_TRACE_LINES = 120
_NUMBER = re.compile(r"(0x[0-9a-fA-F]+|\d+)\Z")
_WORD = re.compile(r"[^\s#=:]+\Z")


def demo_script(profile: str = "modern") -> str:
    """The reference example: p1 writes [X, X, Y, Z], p2 writes [X, Y], both advise their
    pages MADV_MERGEABLE; run=1, pages_to_scan=2 (so that a batch is a part of a pass)."""
    return (f"kernel {profile} ksm=y\n"
            "map A 4p rw private anon\nwrite A 1 1 2 3\nmadvise A 4p MERGEABLE\n"
            "spawn p2\n"
            "p2: map B 2p rw private anon\np2: write B 1 2\np2: madvise B 2p MERGEABLE\n"
            "sysfs run=1\nsysfs pages_to_scan=2\n")


def demo_kernel(profile: str = "modern") -> Kernel:
    """A kernel after `demo_script`."""
    scenario = parse(demo_script(profile))
    kernel = boot(scenario)
    run(scenario, kernel)
    return kernel


#: Why the kernel refuses a value, by knob and errno (the store functions of mm/ksm.c).
REFUSALS = {
    ("run", errno.EINVAL): "run_store() takes 0 (stop), 1 (merge) or 2 (unmerge all), parsed "
                           "by kstrtouint()",
    ("pages_to_scan", errno.EINVAL): "pages_to_scan_store() parses the text with "
                                     "kstrtouint(): an unsigned decimal number below 2**32; a "
                                     "minus sign or a larger number is refused with EINVAL",
    ("max_page_sharing", errno.EINVAL): "max_page_sharing_store() takes an int of at least 2 "
                                        "(kstrtoint())",
    ("max_page_sharing", errno.ERANGE): "max_page_sharing_store() parses an int: kstrtoint() "
                                        "refuses a number above 2**31-1 with ERANGE",
    ("max_page_sharing", errno.EBUSY): "max_page_sharing_store() refuses to change the limit "
                                       "while KSM pages exist (remove_all_stable_nodes() "
                                       "cannot remove them): set run to 2 (unmerge all) first",
}
#: How the stepper words the fault cost: a figure of the side-channel model, not a timing.
COST = ("the side-channel model (ksmbook.sidechannel) puts a fault of this kind at about "
        "{us:.1f} us, the median of its calibration run; nothing is timed here")


class KsmdStepper(StepperControls):
    """Step the simulated ksmd and watch pages merge; write a page and watch the merge break.

    ``setup`` is the scenario text to start from (and again on Reset), default `demo_script`;
    a function returning a `Kernel` also works, but then `script` cannot replay it. ``names``
    gives page contents names (default: X, Y, Z for 1, 2, 3). Display it as a cell's last
    value. For tests: `kernel`, `session` (a `ksmbook.session.Session`), `script` (the set-up
    and every action since, as scenario text), `history` (counters after each full scan since
    the last reset of full_scans), `earlier` (the series before it: run=2 sets full_scans back
    to 0), `state`, `pages_text`, `view`, `message`, `last_write` (the fault kind of the last
    write), `traces` (ksmd's traces of its last step).
    """

    def __init__(self, setup: str | Callable[[], Kernel] | None = None, *,
                 names: Mapping[int, str] | None = None) -> None:
        super().__init__()
        setup = demo_script() if setup is None else setup
        self.names = dict(DEMO_NAMES if names is None else names)
        self.state: PageState | None = None
        self.view = PageFigure()
        if isinstance(setup, str):
            self.session = Session(setup)
        else:
            self.session = Session(factory=setup)
        #: The counters after the set-up (every rebuild of the session runs the same set-up).
        self.setup_counters = dict(self.kernel.ksmd.counters())
        self._wire()
        self._start()

    def _wire(self) -> None:
        self.batch_button.on_click(self._on_batch)
        self.scan_button.on_click(self._on_scan)
        self.undo_button.on_click(self._on_undo)
        self.redo_button.on_click(self._on_redo)
        self.reset_button.on_click(self._on_reset)
        self.write_button.on_click(self._on_write)
        for knob in KNOBS:
            getattr(self, knob).observe(self._on_knob, "value")
        self.process.observe(self._on_process, "value")

    # -- public state -----------------------------------------------------------------

    @property
    def kernel(self) -> Kernel:
        return self.session.kernel

    @property
    def pages_text(self) -> str:
        return pages_text(self.state) if self.state is not None else ""

    @property
    def script(self) -> str:
        """The set-up and every statement run since, as `python -m ksmbook run` reads it."""
        return self.session.script()

    def _actions(self) -> list[StepResult]:
        """The results of the statements run since the set-up."""
        return self.session.steps[len(self.session.history.setup):]

    def series(self) -> list[list[dict[str, int]]]:
        """The counters after the set-up and after each full scan since, one series per reset
        of full_scans to 0 (run=2)."""
        out = [[self.setup_counters]]
        for step in self._actions():
            c, last = step.counters, out[-1][-1]["full_scans"]
            if c is not None and c["full_scans"] != last:
                if c["full_scans"] < last:
                    out.append([])
                out[-1].append(c)
        return out

    @property
    def history(self) -> list[dict[str, int]]:
        return self.series()[-1]

    @property
    def earlier(self) -> list[list[dict[str, int]]]:
        return self.series()[:-1]

    @property
    def traces(self) -> list[Trace]:
        return next((list(s.traces) for s in reversed(self._actions())
                     if isinstance(s.op, (KsmdBatch, KsmdScans))), [])

    @property
    def last_write(self) -> Fault | None:
        return next((fault_of(s.trace) for s in reversed(self._actions())
                     if isinstance(s.op, Write)), None)

    def _ipython_display_(self) -> None:
        """The live widget, with a picture of it for where it cannot run (`snapshot`)."""
        from .snapshot import display_widget

        display_widget(self.widget, what=self.what, figure=self.view.figure,
                       lines=(self.message,), text=self.pages_text)

    # -- actions ----------------------------------------------------------------------

    def _start(self) -> None:
        modern = "smart_scan" in self.kernel.sysfs
        for name in ("smart_scan", "use_zero_pages", "max_page_sharing"):
            getattr(self, name).layout.display = None if modern else "none"
        self._refresh()

    def _recover(self) -> None:
        self._refresh()

    def _step(self, op: Statement) -> StepResult:
        """Run one statement in the session; a statement the runner cannot run (ksmd cannot
        get there) is the reader's error and is not kept."""
        try:
            (result,) = self.session.do((op,))
        except ScenarioError as e:
            raise InputError(e.message) from None
        return result

    @guarded
    def _on_batch(self, _: object = None) -> None:
        ksmd = self.kernel.ksmd
        ran = ksmd.ksmd_should_run()
        before = ksmd.counters()
        result = self._step(KsmdBatch(1))
        if not ran:
            self._say("ksmd waited: ksmd_should_run() is false (run is not 1, or no mm is "
                      "registered with KSM).")
        else:
            assert result.counters is not None
            end = (" and ended a full scan"
                   if result.counters["full_scans"] != before["full_scans"] else "")
            self._say(f"One batch: {result.result} pages scanned, "
                      f"{result.counters['pages_skipped'] - before['pages_skipped']} "
                      f"skipped{end}.")
        self._refresh()

    @guarded
    def _on_scan(self, _: object = None) -> None:
        try:
            result = self._step(KsmdScans(1))
        except InputError as e:
            self._refresh()
            raise InputError(f"ksmd does not scan: {e}") from None
        assert result.counters is not None
        self._say(f"Full scan {result.counters['full_scans']} done.")
        self._refresh()

    @guarded
    def _on_reset(self, _: object = None) -> None:
        self.session.reset()
        self._start()
        self._say("Back to the start (Undo goes back to where you were).")

    @guarded
    def _on_undo(self, _: object = None) -> None:
        if not self.session.can_undo:
            raise InputError("Nothing to undo.")
        self._say(f"Undone: {self.session.undo()}.")
        self._refresh()

    @guarded
    def _on_redo(self, _: object = None) -> None:
        if not self.session.can_redo:
            raise InputError("Nothing to redo.")
        self._say(f"Redone: {self.session.redo()}.")
        self._refresh()

    @guarded
    def _on_knob(self, change: dict[str, Any]) -> None:
        name = change["owner"].description
        new = change["new"]
        value = str(int(new)) if isinstance(new, (bool, int)) else str(new).strip()
        if not _WORD.match(value):
            self._refresh()
            raise InputError(f"Type one number for {name} (what you type is written to "
                             f"/sys/kernel/mm/ksm/{name} as it is).")
        result = self._step(SysfsWrite(name, value))
        if result.result < 0:
            why = REFUSALS.get((name, -result.result), "")
            self._say(f"The kernel refused it with {errno_name(result.result)} "
                      f"({os.strerror(-result.result)}): echo {value} > "
                      f"/sys/kernel/mm/ksm/{name}" + (f". {why}." if why else "."),
                      error=True)
        elif name == "run" and value == "2":
            self._say("echo 2 > /sys/kernel/mm/ksm/run: every KSM page is unmerged, and "
                      "full_scans starts again from 0 (unmerge_and_remove_all_rmap_items() "
                      "resets the scan's sequence number); the chart starts a new series.")
        else:
            self._say(f"echo {value} > /sys/kernel/mm/ksm/{name}")
        self._refresh()

    @guarded
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
            if p.name == self.process.value and p.alive:
                return p
        raise InputError("Pick a process to write to.")

    @guarded
    def _on_write(self, _: object = None) -> None:
        if self.page.value is None:
            raise InputError("Pick a page to write to.")
        p = self._process()
        addr = int(self.page.value)
        content = self._content()
        result = self._step(Write(p.name, Addr(None, addr), (content,)))
        if result.result < 0:
            raise InputError(f"The write failed with {errno_name(result.result)}.")
        kind = fault_of(result.trace)
        name = self.names.get(content, str(content))
        cost = f" ({COST.format(us=LATENCY_US[kind])})" if kind in LATENCY_US else ""
        self._say(f"{p.name} wrote {name} at {addr_text(addr)}: {kind.text}{cost}. ksmd's "
                  "trees and counters notice at its next visit of the page.")
        self._refresh()

    # -- views ------------------------------------------------------------------------

    def _sync_knobs(self) -> None:
        sysfs = self.kernel.sysfs
        for name in KNOBS:
            if name in sysfs:
                control = getattr(self, name)
                value = int(sysfs[name])
                control.value = (bool(value) if isinstance(control, w.Checkbox)
                                 else value if isinstance(control, w.Dropdown) else str(value))

    def _sync_pages(self) -> None:
        state = self.state
        if state is None:
            return
        rows = [r for r in state.rows if r.process == self.process.value]
        options = [(f"{addr_text(r.address)}  {state.name(r.content)}  {r.label}", r.address)
                   for r in rows]
        current = self.page.value
        with self._quiet():
            self.page.options = options
            values = [v for _, v in options]
            self.page.value = current if current in values else (values[0] if values else None)

    def _refresh(self) -> None:
        """Bring every view in line with the kernel."""
        k = self.kernel
        self.state = page_state(k, names=self.names)
        with self._quiet():
            self._sync_knobs()
            names = [p.name for p in k.processes if p.alive]
            self.process.options = names
            if self.process.value not in names:
                self.process.value = names[0] if names else None
        self._sync_pages()
        scans = plural(k.ksmd.counters()["full_scans"], "full scan")
        self.diagram.value = to_svg(self.view.update(
            self.state, title=f"{k.profile.title}: after {scans}"))
        self.table.value = pre(pages_text(self.state), "ksmbook-text")
        series = self.series()
        self.counters_diagram.value = to_svg(counters_plot(series[-1]))
        self.counters_box.value = pre(
            "\n-- run=2: every page unmerged, full_scans back to 0 --\n".join(
                counters_table(h) for h in series))
        self.script_box.value = self.session.script(outcomes=True)
        self.undo_button.disabled = not self.session.can_undo
        self.redo_button.disabled = not self.session.can_redo
        traces = self.traces
        if not traces:
            self.trace_box.value = pre("(no ksmd step yet)")
        else:
            lines = "\n".join(map(str, traces)).splitlines()
            more = len(lines) - _TRACE_LINES
            self.trace_box.value = pre("\n".join(lines[:_TRACE_LINES])
                                        + (f"\n... {more} more lines" if more > 0 else ""))
