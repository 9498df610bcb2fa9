"""The explorer: map, advise, protect, fork and exit on a simulated kernel, and watch the VMAs.

Every control builds a statement of the scenario language (`ksmbook.scenario`) from what the
reader typed, parses it with the scenario parser (so numbers follow its rules: 4096, 0x1000,
4p, 16k, 2M; nothing typed is evaluated) and runs it in a `ksmbook.session.Session`, which
keeps the history: undo and redo, the CONFIG_KSM and profile controls (the same history on
another kernel), Reset (back to the cell's starting script) and the script that can be copied
out and pasted back.

Nothing here knows how the kernel behaves: results, errnos and traces come from the simulated
kernel, pictures and tables from `ksmbook.render`. The controls are built in
`explorer_controls`, the range fields kept in line in `ranges`, the live-kernel tab in
`live_panel`.
"""

from __future__ import annotations

import html
import os
from typing import Any

from ..constants import MADV
from ..kernel import Process
from ..profiles import get_profile
from ..render import Snapshot, SpaceFigure, maps_text, snapshot, to_svg
from ..render.text import plural
from ..scenario import (
    Boot,
    ScenarioError,
    Statement,
    parse,
    process_of,
)
from ..session import Session, sentence
from ..trace import Trace
from .common import InputError, guarded, pre
from .explorer_calls import ExplorerCalls
from .explorer_controls import MAP_KINDS, PROTS, advice_label
from .ranges import RangePicker

__all__ = ["Explorer", "MAP_KINDS", "PROTS"]


class Explorer(ExplorerCalls):
    """Widgets to drive one simulated kernel and see its address spaces change.

    `profile` and `config_ksm` choose the kernel; `script` (scenario text) is the starting
    point, run first and again on Reset (its ``kernel`` line, if any, chooses the kernel).
    Display it as a cell's last value, or display `explorer.widget`.
    """

    def __init__(self, profile: str = "seed", config_ksm: bool = True, *,
                 script: str | None = None) -> None:
        get_profile(profile)
        try:
            setup = parse(script or "").ops
        except ScenarioError as e:
            raise InputError(f"The script does not parse: {e}.") from None
        boots = [op for op in setup if isinstance(op, Boot)]
        kernel = boots[-1] if boots else Boot(profile, config_ksm)
        super().__init__(kernel.profile, kernel.ksm)
        self._cache: dict[tuple, Any] = {}
        self.view = SpaceFigure(trace_panel=True, width=9.4)
        self.procs_view = SpaceFigure()
        self.before: Snapshot | None = None
        self.after: Snapshot | None = None
        self.trace: Trace | None = None
        self.ranges = RangePicker(self, self.current_snapshot, lambda: self.session)
        try:
            self.session = Session(setup, kernel=kernel, before=self._snapshot)
        except ScenarioError as e:
            raise InputError(f"The script does not run: {e}.") from None
        self._show_last()
        self._wire()
        self._refresh()

    def _wire(self) -> None:
        self.profile.observe(self._on_kernel_change, "value")
        self.config_ksm.observe(self._on_kernel_change, "value")
        self.process.observe(self._on_process, "value")
        self.range_vma.observe(self._on_vma, "value")
        self.range_pages.observe(self._on_slider, "value")
        self.range_start.observe(self._on_range_text, "value")
        self.range_length.observe(self._on_range_text, "value")
        for button, handler in (
                (self.undo_button, self._on_undo), (self.redo_button, self._on_redo),
                (self.reset_button, self._on_reset), (self.fork_button, self._on_fork),
                (self.exit_button, self._on_exit), (self.map_button, self._on_map),
                (self.apply_button, self._on_madvise), (self.mprotect_button, self._on_mprotect),
                (self.munmap_button, self._on_munmap), (self.mremap_button, self._on_mremap),
                (self.replay_button, self._on_replay), (self.live_button, self._on_live),
                (self.live_yes, self._on_live_yes), (self.live_no, self._on_live_no)):
            button.on_click(handler)

    # -- public state -----------------------------------------------------------------

    @property
    def script_text(self) -> str:
        return self.session.script()

    @property
    def changes_text(self) -> str:
        """The text twin of the diagram: what the last call changed ('' before any call)."""
        return str(self.view.changes) if self.view.changes is not None else ""

    @property
    def maps_text(self) -> str:
        return maps_text(self.after) if self.after is not None else "(no mappings)"

    @property
    def diagram_svg(self) -> str:
        return str(self.diagram.value)

    def current_snapshot(self) -> Snapshot:
        return self._snapshot(self.session.process(self.process_name), self.process_name)

    def _twin(self, after: Snapshot) -> str:
        """The text under the diagram: the last call's changes, if any, then `after`'s maps."""
        twin = self.changes_text if self.trace is not None else ""
        return (twin + "\n\n" if twin else "") + f"[{after.label}]\n" + maps_text(after)

    def picture_lines(self) -> tuple[str, ...]:
        """Short lines shown above the stored picture (the message)."""
        return (self.message,)

    def _ipython_display_(self) -> None:
        """The live widget, with a picture of it for where it cannot run (`snapshot`)."""
        from .snapshot import display_widget

        after = self.after if self.after is not None else self.current_snapshot()
        trace = f"\n\nkernel trace:\n{self.trace}" if self.trace is not None else ""
        display_widget(self.widget, what=self.what, figure=self.view.figure,
                       lines=self.picture_lines(), text=self._twin(after) + trace)

    # -- running and history --------------------------------------------------------------

    def _snapshot(self, proc: Process | None, name: str) -> Snapshot:
        """A process's VMAs now (none when there is no such process); the session calls it
        for the picture before each action."""
        return snapshot(proc, self._cache) if proc is not None else Snapshot(name, 0, ())

    def _show_last(self) -> None:
        """Show the last action's change (or the current VMAs, if none)."""
        s = self.session
        step = s.steps[-1] if s.last_ops and s.steps else None
        if step is None:
            self.before = self.after = None
            self.trace = None
            return
        proc = s.process(process_of(step.op) or "p1")
        self.after = snapshot(proc, self._cache) if proc is not None else None
        self.before = s.before
        self.trace = step.trace

    def _do(self, ops: tuple[Statement, ...], note: str = "") -> None:
        """Run the statements of one action and record them."""
        try:
            self.session.do(ops)
        except ScenarioError as e:
            raise InputError(sentence(e)) from None
        self._show_last()
        self._say(note)
        self._refresh()

    def _history_changed(self, message: str) -> None:
        """After undo, redo, reset, a reboot or a loaded script."""
        self._show_last()
        self._sync_kernel_controls()
        self._say(message)
        self._refresh()

    def _recover(self) -> None:
        """Bring the views back in line with the session (after an interrupted action)."""
        try:
            self._show_last()
            self._refresh()
        except Exception as e:  # noqa: BLE001 - the reader still gets a message
            self.errors.append(e)

    @guarded
    def _on_undo(self, _: object = None) -> None:
        if not self.session.can_undo:
            raise InputError("Nothing to undo.")
        self._history_changed(f"Undone: {self.session.undo()}.")

    @guarded
    def _on_redo(self, _: object = None) -> None:
        if not self.session.can_redo:
            raise InputError("Nothing to redo.")
        self._history_changed(f"Redone: {self.session.redo()}.")

    @guarded
    def _on_reset(self, _: object = None) -> None:
        self.session.reset()
        start = " and the cell's starting script" if self.session.start.setup else ""
        self._history_changed(f"Reset: a freshly booted kernel{start}.")

    @guarded
    def _on_kernel_change(self, _: object = None) -> None:
        op = Boot(str(self.profile.value), bool(self.config_ksm.value))
        try:
            failures = self.session.reboot(op)
        except ScenarioError as e:
            self._sync_kernel_controls()
            raise InputError(f"The history does not run on that kernel: {e.message}.") from None
        k = self.kernel
        said = (f"Booted {k.profile.title} with CONFIG_KSM={'y' if k.config_ksm else 'n'} "
                f"and replayed {plural(len(self.session.history.actions), 'action')}")
        if failures:
            count = len(failures)
            said += (f"; {count} call{' now fails' if count == 1 else 's now fail'}: "
                     + "; ".join(str(f) for f in failures))
        self._history_changed(said + ".")

    @guarded
    def _on_replay(self, _: object = None) -> None:
        try:
            self.session.load(str(self.script.value))
        except ScenarioError as e:
            raise InputError(f"The script does not run: {e}.") from None
        self._history_changed("Replayed the script: "
                              f"{plural(len(self.session.history.actions), 'statement')}.")

    def _sync_kernel_controls(self) -> None:
        with self._quiet():
            self.profile.value = self.session.kernel_op.profile
            self.config_ksm.value = self.session.kernel_op.ksm
        self.config_ksm.description = f"CONFIG_KSM={'y' if self.config_ksm.value else 'n'}"

    # -- the range controls and the process menu --------------------------------------------

    @guarded
    def _on_slider(self, change: dict) -> None:
        with self._quiet():
            self.ranges.from_slider(change["new"])

    @guarded
    def _on_vma(self, change: dict) -> None:
        if change["new"] < 0:
            return
        with self._quiet():
            self.ranges.from_vma(change["new"])
            self.range_vma.value = -1

    @guarded
    def _on_range_text(self, _: object = None) -> None:
        with self._quiet():
            self.ranges.slider_from_text()

    @guarded
    def _on_process(self, _: object = None) -> None:
        self.before = self.after = self.current_snapshot()
        self.trace = None
        self._refresh()

    # -- showing ----------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Bring every view in line with the kernel and the history."""
        s = self.session
        names = s.live_names() or ["p1"]
        with self._quiet():
            self.process.options = names
            if self.process.value not in names:
                self.process.value = names[0]
            self._update_advices()
            snap = self.current_snapshot()
            self.ranges.refresh(snap)
        after = self.after if self.after is not None else snap
        before = self.before if self.before is not None else after
        if self.trace is None:
            self.view.show_rows([after], title=f"{after.label}: no system call yet")
        else:
            self.view.show_change(before, after, self.trace)
        self.diagram.value = to_svg(self.view.figure)
        self._show_outcome()
        self.text_twin.value = pre(self._twin(after), "ksmbook-maps")
        self.trace_box.value = pre(str(self.trace) if self.trace else "(no call yet)")
        rows = [snapshot(p, self._cache) for n in s.live_names()
                if (p := s.process(n)) is not None]
        self.all_maps.value = "".join(pre(f"[{r.label}]\n{maps_text(r)}") for r in rows) or \
            pre("(no processes)")
        if len(rows) > 1:
            self.procs_view.show_rows(rows, title="All processes")
            self.procs_diagram.value = to_svg(self.procs_view.figure)
            self.procs_diagram.layout.display = None
        else:
            self.procs_diagram.layout.display = "none"
        self.script.value = s.script(outcomes=True)
        self.undo_button.disabled = not s.can_undo
        self.redo_button.disabled = not s.can_redo

    def _update_advices(self) -> None:
        k = self.kernel
        current = self.advice.value
        options = [(advice_label(a, k.profile.valid_advice(a, k.config_ksm)), int(a))
                   for a in k.profile.all_advices(True)]
        self.advice.options = options
        values = [v for _, v in options]
        self.advice.value = current if current in values else int(MADV.MADV_MERGEABLE)

    def _show_outcome(self) -> None:
        t = self.trace
        if t is None:
            self.outcome.value = ""
            return
        failed = t.errno is not None
        color = "#D55E00" if failed else "#007a5a"
        why = ""
        if failed:
            reason = t.reason
            text = os.strerror(t.errno or 0)
            if reason is not None:
                text += f": {reason.function}: {reason.message}"
            why = f"<br><span style='font-size:12px;color:#444'>{html.escape(text)}</span>"
        self.outcome.value = (
            f'<div class="ksmbook-outcome" style="font-size:15px"><code>{html.escape(t.call)}'
            f'</code> <b style="color:{color}">{html.escape(t.outcome())}</b>{why}</div>')
