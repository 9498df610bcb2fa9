"""The explorer: map, advise, protect, fork and exit on a simulated kernel, and watch the VMAs.

Every control builds a statement of the scenario language (`ksmbook.scenario`) from what the
reader typed, parses it with the scenario parser (so numbers follow its rules: 4096, 0x1000,
4p, 16k, 2M; nothing typed is evaluated) and runs it. The history of those statements IS a
`Scenario`: undo and redo edit it, the CONFIG_KSM and profile controls change its ``kernel``
line, and each of those boots a fresh kernel and replays it. The script can be copied out and
pasted back.

Nothing here knows how the kernel behaves: results, errnos and traces come from the simulated
kernel, pictures and tables from `ksmbook.render`.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as w

from ..constants import HPAGE_SIZE, MADV, PAGE_SIZE
from ..kernel import DRIVER_STYLES, KSM_KCONFIG_HELP, Kernel, Process
from ..profiles import PROFILES, get_profile
from ..render import (
    Snapshot,
    SpaceFigure,
    addr_text,
    from_entries,
    maps_text,
    size_text,
    snapshot,
    to_svg,
)
from ..scenario import (
    SETUP,
    Addr,
    Boot,
    CreateDevice,
    CreateFile,
    Map,
    Munmap,
    Runner,
    Scenario,
    ScenarioError,
    Statement,
    StepResult,
    boot,
    format_op,
    format_scenario,
    parse,
    process_of,
)
from ..trace import Trace, errno_name
from .common import InputError, Widget, checkbox, guarded, pre

__all__ = ["Explorer", "MAP_KINDS", "PROTS"]

#: Protections offered, in the scenario language's spelling.
PROTS = ("none", "r", "rw", "rx", "rwx")
#: What the "kind" menu of the map controls offers: label -> (type, backing).
MAP_KINDS: dict[str, tuple[str, str]] = {
    "private anonymous": ("private", "anon"),
    "shared anonymous": ("shared", "anon"),
    "private file": ("private", "file"),
    "shared file": ("shared", "file"),
    "hugetlb (2 MiB pages)": ("private", "hugetlb"),
    **{f"driver: {style}": ("shared", f"device:{style}") for style in DRIVER_STYLES},
}
_WORD = re.compile(r"[^\s#:]+\Z")
_WINDOW_MARGIN = 2  # pages shown beyond the first and last VMA on the range slider
_NEIGHBOURHOOD = 256  # VMAs fewer pages apart share the range slider
_COMPACT = {"description_width": "initial"}

def _outcome(step: StepResult) -> str:
    """What a statement returned, as the script shows it ("" for set-up statements)."""
    return "" if isinstance(step.op, SETUP) else step.outcome()


class _Machine:
    """A kernel booted from a `kernel` statement and the statements run on it so far."""

    def __init__(self, kernel_op: Boot) -> None:
        self.kernel: Kernel = boot(Scenario((kernel_op,)))
        self.runner = Runner(self.kernel, maps=False)
        self.steps: list[StepResult] = []

    def run(self, op: Statement) -> StepResult:
        """Run one statement (ScenarioError if it names what does not exist)."""
        step = self.runner.step(op)
        self.steps.append(step)
        return step

    def process(self, name: str) -> Process | None:
        return self.runner.procs.get(name)

    @property
    def labels(self) -> dict[str, int]:
        return self.runner.labels

    def live_names(self) -> list[str]:
        return [n for n, p in self.runner.procs.items() if p.alive]


def _fresh_label(taken: set[str]) -> str:
    """A, B, ..., Z, then A2, B2, ...: the first label not taken."""
    n = 1
    while True:
        for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
            name = letter if n == 1 else f"{letter}{n}"
            if name not in taken:
                return name
        n += 1


def _fresh_name(stem: str, taken: set[str]) -> str:
    """stem1, stem2, ...: the first name not taken."""
    n = 1
    while f"{stem}{n}" in taken:
        n += 1
    return f"{stem}{n}"


def _advice_label(advice: MADV, accepted: bool) -> str:
    text = f"{advice.name} ({int(advice)})"
    return text if accepted else f"{text} (CONFIG_KSM=n: invalid)"



@dataclass(frozen=True)
class _State:
    """The explorer's history at one moment (what undo and redo go back to)."""

    kernel: Boot
    actions: tuple[tuple[Statement, ...], ...]
    change: str


class Explorer(Widget):
    """Widgets to drive one simulated kernel and see its address spaces change.

    `profile` and `config_ksm` choose the kernel; `script` (scenario text) is replayed first.
    Display it as a cell's last value, or display `explorer.widget`.
    """

    def __init__(self, profile: str = "seed", config_ksm: bool = True, *,
                 script: str | None = None) -> None:
        get_profile(profile)
        super().__init__()
        self._kernel_op = Boot(profile, config_ksm)
        self._actions: list[tuple[Statement, ...]] = []
        #: Earlier and undone states of the history, each with what changed it.
        self._undo: list[_State] = []
        self._redo: list[_State] = []
        self._cache: dict[tuple, Any] = {}
        self.view = SpaceFigure(trace_panel=True, width=9.4)
        self.procs_view = SpaceFigure()
        self.before: Snapshot | None = None
        self.after: Snapshot | None = None
        self.trace: Trace | None = None
        self._build_controls(profile, config_ksm)
        self._machine = _Machine(self._kernel_op)
        if script is not None:
            self._load_script(script)
        self._refresh()

    # -- public state -----------------------------------------------------------------

    @property
    def kernel(self) -> Kernel:
        return self._machine.kernel

    @property
    def history(self) -> Scenario:
        """The kernel line and every statement run, as a scenario."""
        return Scenario((self._kernel_op,) + tuple(op for a in self._actions for op in a))

    @property
    def script_text(self) -> str:
        return format_scenario(self.history)

    @property
    def steps(self) -> list[StepResult]:
        return list(self._machine.steps)

    @property
    def process_name(self) -> str:
        return str(self.process.value)

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

    # -- controls -------------------------------------------------------------------------

    def _build_controls(self, profile: str, config_ksm: bool) -> None:
        small = w.Layout(width="auto")
        self.profile = w.Dropdown(options=list(PROFILES), value=profile, description="kernel",
                                  style=_COMPACT, layout=w.Layout(width="160px"))
        self.config_ksm = checkbox(f"CONFIG_KSM={'y' if config_ksm else 'n'}", config_ksm)
        self.undo_button = w.Button(description="Undo", icon="undo", layout=small)
        self.redo_button = w.Button(description="Redo", icon="redo", layout=small)
        self.reset_button = w.Button(description="Reset", icon="trash", layout=small)
        self.process = w.Dropdown(options=["p1"], value="p1", description="process",
                                  style=_COMPACT, layout=w.Layout(width="150px"))
        self.fork_button = w.Button(description="fork", layout=small)
        self.exit_button = w.Button(description="exit", layout=small)

        self.map_length = w.Text(value="16p", description="mmap length", style=_COMPACT,
                                 layout=w.Layout(width="150px"))
        self.map_prot = w.Dropdown(options=list(PROTS), value="rw", description="prot",
                                   style=_COMPACT, layout=w.Layout(width="105px"))
        self.map_kind = w.Dropdown(options=list(MAP_KINDS), value="private anonymous",
                                   description="kind", style=_COMPACT,
                                   layout=w.Layout(width="280px"))
        self.map_at = w.Text(value="", placeholder="kernel's choice", description="at",
                             style=_COMPACT, layout=w.Layout(width="180px"))
        self.map_fixed = checkbox("MAP_FIXED", False)
        self.map_button = w.Button(description="mmap", button_style="primary", layout=small)

        self.range_vma = w.Dropdown(options=[("(pick a VMA)", -1)], value=-1,
                                    description="range: VMA", style=_COMPACT,
                                    layout=w.Layout(width="420px"))
        self.range_start = w.Text(value="", placeholder="A+4p or 0x7ffff7ff3000",
                                  description="range start", style=_COMPACT,
                                  layout=w.Layout(width="250px"))
        self.range_length = w.Text(value="", placeholder="4p", description="length",
                                   style=_COMPACT, layout=w.Layout(width="130px"))
        self.range_pages = w.IntRangeSlider(value=(0, 0), min=0, max=1, step=1,
                                            description="pages", readout=False,
                                            continuous_update=False, style=_COMPACT,
                                            layout=w.Layout(width="330px"))
        self.range_readout = w.HTML("", layout=w.Layout(width="300px"))
        self.advice = w.Dropdown(description="advice", style=_COMPACT,
                                 layout=w.Layout(width="400px"))
        self.apply_button = w.Button(description="madvise", button_style="primary",
                                     layout=small)
        self.mprotect_prot = w.Dropdown(options=list(PROTS), value="r",
                                        description="range: new prot", style=_COMPACT,
                                        layout=w.Layout(width="170px"))
        self.mprotect_button = w.Button(description="mprotect", layout=small)
        self.munmap_button = w.Button(description="munmap", layout=small)
        self.mremap_length = w.Text(value="", placeholder="8p", description="range: new length",
                                    style=_COMPACT, layout=w.Layout(width="220px"))
        self.mremap_flags = w.Dropdown(options=[("in place only", ""), ("maymove", "maymove"),
                                                ("maymove fixed", "maymove fixed"),
                                                ("maymove dontunmap", "maymove dontunmap"),
                                                ("maymove fixed dontunmap",
                                                 "maymove fixed dontunmap")],
                                       value="maymove", description="flags", style=_COMPACT,
                                       layout=w.Layout(width="260px"))
        self.mremap_to = w.Text(value="", placeholder="0x20000000", description="to",
                                style=_COMPACT, layout=w.Layout(width="200px"))
        self.mremap_button = w.Button(description="mremap", layout=small)

        self.outcome = w.HTML("")
        self.diagram = w.HTML("")
        self.diagram.add_class("ksmbook-diagram")
        self.procs_diagram = w.HTML("", layout=w.Layout(display="none"))
        self.procs_diagram.add_class("ksmbook-processes")
        self.text_twin = w.HTML("")
        self.text_twin.add_class("ksmbook-text")
        self.trace_box = w.HTML("")
        self.all_maps = w.HTML("")
        self.script = w.Textarea(value="", layout=w.Layout(width="100%", height="180px"))
        self.script.add_class("ksmbook-script")
        self.replay_button = w.Button(description="Replay this script", icon="play",
                                      layout=small)
        self.kconfig = w.HTML(pre(KSM_KCONFIG_HELP))
        self.live_button = w.Button(description="Replay on this machine's kernel",
                                    icon="microchip", layout=small)
        self.live_box = w.HTML("")

        for name in ("profile", "config_ksm", "undo_button", "redo_button", "reset_button",
                     "process", "fork_button", "exit_button", "map_length", "map_prot",
                     "map_kind", "map_at", "map_fixed", "map_button", "range_vma",
                     "range_start", "range_length", "range_pages", "advice", "apply_button",
                     "mprotect_prot", "mprotect_button", "munmap_button", "mremap_length",
                     "mremap_flags", "mremap_to", "mremap_button", "replay_button",
                     "live_button"):
            getattr(self, name).add_class("ksm-" + name.replace("_", "-"))
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
                (self.replay_button, self._on_replay),
                (self.live_button, self._on_live)):
            button.on_click(handler)

        row = w.HBox
        controls = w.VBox([
            row([self.profile, self.config_ksm, self.process, self.fork_button,
                 self.exit_button, self.undo_button, self.redo_button, self.reset_button]),
            row([self.map_length, self.map_prot, self.map_kind, self.map_at, self.map_fixed,
                 self.map_button]),
            row([self.range_vma, self.range_pages, self.range_readout]),
            row([self.range_start, self.range_length, self.advice, self.apply_button]),
            row([self.mprotect_prot, self.mprotect_button, self.munmap_button]),
            row([self.mremap_length, self.mremap_flags, self.mremap_to, self.mremap_button]),
        ])
        tabs = w.Tab(children=[
            self.trace_box, self.all_maps, w.VBox([self.script, self.replay_button]),
            self.kconfig, w.VBox([self.live_button, self.live_box])])
        for i, title in enumerate(("Kernel trace", "All processes", "Scenario script",
                                   "CONFIG_KSM", "Live kernel")):
            tabs.set_title(i, title)
        self.tabs = tabs
        self.widget = w.VBox([controls, self.outcome, self.message_box, self.diagram,
                              self.text_twin, self.procs_diagram, tabs])
        self.widget.add_class("ksmbook-explorer")

    def _ipython_display_(self) -> None:
        """The live widget, with a picture of it for where it cannot run (`snapshot`)."""
        from .snapshot import display_widget

        after = self.after if self.after is not None else self.current_snapshot()
        twin = self.changes_text if self.trace is not None else ""
        trace = f"\n\nkernel trace:\n{self.trace}" if self.trace is not None else ""
        display_widget(
            self.widget, what="explorer", figure=self.view.figure, lines=(self.message,),
            text=(twin + "\n\n" if twin else "") + f"[{after.label}]\n" + maps_text(after)
            + trace)

    # -- reading what the reader typed ----------------------------------------------------

    @staticmethod
    def _word(value: str, what: str, example: str) -> str:
        text = value.strip()
        if not text:
            raise InputError(f"Enter {what} (for example {example}).")
        if not _WORD.match(text):
            raise InputError(f"{what.capitalize()} {text!r} must be one word, "
                             f"for example {example}.")
        return text

    @classmethod
    def _length(cls, value: str) -> str:
        """A typed length: one word, not negative (but -1, C's (size_t)-1, the largest)."""
        text = cls._word(value, "a length", "4096, 0x1000, 4p, 16k or 2M")
        if text.startswith("-") and text != "-1":
            raise InputError(f"A length cannot be negative ({text!r}): the kernel takes an "
                             "unsigned size_t. Type -1 for the largest length, 2**64-1.")
        return text

    @staticmethod
    def _statements(text: str) -> tuple[Statement, ...]:
        """Parse generated statements; a parse error is the reader's input error."""
        try:
            return parse(text).ops
        except ScenarioError as e:
            raise InputError(e.message[0].upper() + e.message[1:] + ".") from None

    def _prefix(self) -> str:
        return f"{self.process_name}: "

    def _range_words(self) -> tuple[str, str]:
        start = self._word(self.range_start.value, "a start address", "A+4p or 0x7ffff7ff3000")
        return start, self._length(self.range_length.value)

    def _resolve(self, addr: Addr) -> int:
        if addr.label is None:
            return addr.offset
        if addr.label not in self._machine.labels:
            known = ", ".join(sorted(self._machine.labels)) or "none yet"
            raise InputError(f"No mapping is labelled {addr.label!r} (labels: {known}).")
        return (self._machine.labels[addr.label] + addr.offset) & (2**64 - 1)

    def _addr_words(self, addr: int) -> str:
        """addr as the script writes it: the nearest label at or below it, plus pages."""
        best = None
        for name, base in self._machine.labels.items():
            if base <= addr and (best is None or base > best[1]):
                best = (name, base)
        if best is None:
            return f"{addr:#x}"
        return str(Addr(best[0], addr - best[1]))

    # -- operations -----------------------------------------------------------------------

    @guarded
    def _on_map(self, _: object = None) -> None:
        length = self._length(self.map_length.value)
        mtype, backing = MAP_KINDS[str(self.map_kind.value)]
        label = _fresh_label(set(self._machine.labels))
        at = self.map_at.value.strip()
        options = ""
        if at:
            options = f" at {self._word(at, 'an address', '0x7ffff7ff3000 or A+4p')}"
            options += " fixed" if self.map_fixed.value else ""
        elif self.map_fixed.value:
            raise InputError("MAP_FIXED needs an address: fill in 'at'.")
        files = {op.name for a in self._actions for op in a
                 if isinstance(op, (CreateFile, CreateDevice))}
        setup = ""
        if backing == "file":
            name = _fresh_name("f", files)
            setup = f"file {name} {length}\n"
            backing = f"file={name}"
        elif backing.startswith("device:"):
            name = _fresh_name("d", files)
            setup = f"device {name} {backing.split(':', 1)[1]}\n"
            backing = f"device={name}"
        statement = f"{self._prefix()}map {label} {length} {self.map_prot.value} {mtype} {backing}"
        ops = self._statements(setup + statement + options)
        note = ""
        if backing == "hugetlb":
            ops, note = self._reserve_huge_pages(ops)
        self._do(ops, note)

    def _reserve_huge_pages(self, ops: tuple[Statement, ...]) -> tuple[tuple[Statement, ...], str]:
        """Put `sysctl nr_hugepages=N` before a hugetlb map that needs more huge pages than
        are free (it shows in the script like any other statement)."""
        k = self.kernel
        last = ops[-1]
        assert isinstance(last, Map)
        need = -(-last.length // HPAGE_SIZE)
        free = k.sysctl["nr_hugepages"] - k.hugepages_reserved
        if 0 < need <= 1 << 20 and need > free:
            total = k.sysctl["nr_hugepages"] + need - free
            return (self._statements(f"sysctl nr_hugepages={total}") + ops,
                    f"Reserved huge pages first: sysctl nr_hugepages={total}.")
        return ops, ""

    @guarded
    def _on_madvise(self, _: object = None) -> None:
        start, length = self._range_words()
        advice = MADV(int(self.advice.value)).name.removeprefix("MADV_")
        self._do(self._statements(f"{self._prefix()}madvise {start} {length} {advice}"))

    @guarded
    def _on_mprotect(self, _: object = None) -> None:
        start, length = self._range_words()
        self._do(self._statements(
            f"{self._prefix()}mprotect {start} {length} {self.mprotect_prot.value}"))

    @guarded
    def _on_munmap(self, _: object = None) -> None:
        start, length = self._range_words()
        self._do(self._statements(f"{self._prefix()}munmap {start} {length}"))

    @guarded
    def _on_mremap(self, _: object = None) -> None:
        """mremap the range to the new length; with fixed (or as dontunmap's hint) to 'to'."""
        start, length = self._range_words()
        new = self._length(self.mremap_length.value)
        words = self.mremap_flags.value
        at = ""
        if self.mremap_to.value.strip():
            at = " at " + self._word(self.mremap_to.value, "a target address", "0x20000000")
        elif "fixed" in words:
            raise InputError("MREMAP_FIXED needs an address: fill in 'to'.")
        self._do(self._statements(
            f"{self._prefix()}mremap {start} {length} {new} {words}{at}".rstrip()))

    @guarded
    def _on_fork(self, _: object = None) -> None:
        child = _fresh_name("c", set(self._machine.runner.procs))
        self._do(self._statements(f"{self._prefix()}fork {child}"))

    @guarded
    def _on_exit(self, _: object = None) -> None:
        self._do(self._statements(f"{self._prefix()}exit"))

    def _do(self, ops: tuple[Statement, ...], note: str = "") -> None:
        """Run the statements of one action on the current kernel and record them."""
        for op in ops:
            proc_name = process_of(op)
            if proc_name not in (None, "p1") and self._machine.process(proc_name) is None:
                raise InputError(f"No process named {proc_name!r}.")
        name = process_of(ops[-1]) or "p1"
        proc = self._machine.process(name)
        before = snapshot(proc, self._cache) if proc is not None else Snapshot(name, 0, ())
        step = None
        try:
            for op in ops:
                step = self._machine.run(op)
        except ScenarioError as e:
            self._recover()
            raise InputError(e.message[0].upper() + e.message[1:] + ".") from None
        self._push("; ".join(format_op(op) for op in ops))
        self._actions.append(ops)
        proc = self._machine.process(name)
        assert proc is not None and step is not None
        self.before, self.after, self.trace = before, snapshot(proc, self._cache), step.trace
        self._say(note)
        self._refresh()

    # -- history --------------------------------------------------------------------------

    def _replay(self, kernel_op: Boot, actions: Sequence[tuple[Statement, ...]]) -> None:
        """Boot a kernel from `kernel_op` and run every action; on success it becomes the
        explorer's kernel and history (a ScenarioError leaves everything as it was)."""
        machine = _Machine(kernel_op)
        before = after = None
        trace = None
        last = actions[-1] if actions else ()
        for i, action in enumerate(actions):
            if i == len(actions) - 1:
                proc = machine.process(process_of(last[-1]) or "p1")
                before = snapshot(proc, self._cache) if proc is not None else None
            for op in action:
                step = machine.run(op)
                trace = step.trace
        if last:
            proc = machine.process(process_of(last[-1]) or "p1")
            after = snapshot(proc, self._cache) if proc is not None else None
            if before is None and after is not None:
                before = Snapshot(after.name, after.pid, (), after.mm_flags, after.profile,
                                  after.config_ksm)
        self._machine, self._kernel_op, self._actions = machine, kernel_op, list(actions)
        self.before, self.after, self.trace = before, after, trace

    def _recover(self) -> None:
        """Rebuild the kernel from the recorded history (after an interrupted action)."""
        try:
            self._replay(self._kernel_op, self._actions)
            self._refresh()
        except Exception as e:  # noqa: BLE001 - the reader still gets a message
            self.errors.append(e)

    def _state(self, change: str) -> _State:
        return _State(self._kernel_op, tuple(self._actions), change)

    def _push(self, change: str) -> None:
        """Remember the history as it is before `change`, for Undo (and forget what Redo
        could bring back)."""
        self._undo.append(self._state(change))
        self._redo.clear()

    def _go_to(self, state: _State) -> None:
        self._replay(state.kernel, state.actions)
        self._sync_kernel_controls()

    @guarded
    def _on_undo(self, _: object = None) -> None:
        if not self._undo:
            raise InputError("Nothing to undo.")
        state = self._undo.pop()
        self._redo.append(self._state(state.change))
        self._go_to(state)
        self._say(f"Undone: {state.change}")
        self._refresh()

    @guarded
    def _on_redo(self, _: object = None) -> None:
        if not self._redo:
            raise InputError("Nothing to redo.")
        state = self._redo.pop()
        self._undo.append(self._state(state.change))
        self._go_to(state)
        self._say(f"Redone: {state.change}")
        self._refresh()

    @guarded
    def _on_reset(self, _: object = None) -> None:
        state = self._state("reset")
        self._replay(self._kernel_op, [])
        self._undo.append(state)
        self._redo.clear()
        self._say("Reset: a freshly booted kernel.")
        self._refresh()

    @guarded
    def _on_kernel_change(self, _: object = None) -> None:
        op = Boot(str(self.profile.value), bool(self.config_ksm.value))
        state = self._state(f"{self._kernel_op} -> {op}")
        try:
            self._replay(op, self._actions)
        except ScenarioError as e:
            raise InputError(f"The history does not run on that kernel: {e.message}.") from None
        finally:
            self._sync_kernel_controls()
        self._undo.append(state)
        self._redo.clear()
        k = self.kernel
        self._say(f"Booted {k.profile.title} with CONFIG_KSM={'y' if k.config_ksm else 'n'} "
                  f"and replayed {len(self._actions)} actions.")
        self._refresh()

    def _load_script(self, text: str) -> None:
        try:
            ops = parse(text).ops
        except ScenarioError as e:
            raise InputError(f"The script does not parse: {e}.") from None
        kernel_ops = [op for op in ops if isinstance(op, Boot)]
        kernel_op = kernel_ops[-1] if kernel_ops else self._kernel_op
        actions = [(op,) for op in ops if not isinstance(op, Boot)]
        try:
            self._replay(kernel_op, actions)
        except ScenarioError as e:
            raise InputError(f"The script does not run: {e}.") from None
        self._sync_kernel_controls()

    @guarded
    def _on_replay(self, _: object = None) -> None:
        state = self._state("replay the script")
        self._load_script(str(self.script.value))
        self._undo.append(state)
        self._redo.clear()
        self._say(f"Replayed the script: {len(self._actions)} statements.")
        self._refresh()

    def _sync_kernel_controls(self) -> None:
        self._syncing = True
        try:
            self.profile.value = self._kernel_op.profile
            self.config_ksm.value = self._kernel_op.ksm
        finally:
            self._syncing = False
        self.config_ksm.description = f"CONFIG_KSM={'y' if self.config_ksm.value else 'n'}"

    # -- the range controls ---------------------------------------------------------------

    def _window(self) -> tuple[int, int]:
        """The pages the slider spans: the neighbourhood of the typed range (the VMAs less
        than _NEIGHBOURHOOD pages apart around it, or around the nearest), plus a margin."""
        snap = self.current_snapshot()
        if not snap.vmas:
            return 0, 0
        rng = self._typed_range()
        anchor = rng[0] if rng is not None else snap.vmas[0].start
        groups: list[tuple[int, int]] = []
        for r in snap.vmas:
            if groups and r.start - groups[-1][1] < _NEIGHBOURHOOD * PAGE_SIZE:
                groups[-1] = (groups[-1][0], r.end)
            else:
                groups.append((r.start, r.end))
        lo, hi = min(groups, key=lambda g: max(g[0] - anchor, anchor - g[1] + 1, 0))
        return max(lo - _WINDOW_MARGIN * PAGE_SIZE, 0), hi + _WINDOW_MARGIN * PAGE_SIZE

    def current_snapshot(self) -> Snapshot:
        proc = self._machine.process(self.process_name)
        if proc is None:
            return Snapshot(self.process_name, 0, ())
        return snapshot(proc, self._cache)

    def _set_range(self, start: int, end: int) -> None:
        """Write a range into the text fields (the statements are built from those)."""
        self.range_start.value = self._addr_words(start)
        self.range_length.value = size_text(end - start).replace(" ", "") \
            if (end - start) % PAGE_SIZE == 0 and end - start < 256 * PAGE_SIZE \
            else str(end - start)

    @guarded
    def _on_slider(self, change: dict) -> None:
        if self._syncing:
            return
        lo, _ = self._window()
        a, b = change["new"]
        self._syncing = True
        try:
            if b > a:
                self._set_range(lo + a * PAGE_SIZE, lo + b * PAGE_SIZE)
            self._show_readout()
        finally:
            self._syncing = False

    @guarded
    def _on_vma(self, change: dict) -> None:
        if self._syncing or change["new"] < 0:
            return
        snap = self.current_snapshot()
        if change["new"] < len(snap.vmas):
            r = snap.vmas[change["new"]]
            self._syncing = True
            try:
                self._set_range(r.start, r.end)
                self._slider_from_text()
            finally:
                self._syncing = False
                self.range_vma.value = -1

    def _on_range_text(self, _: object = None) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            self._slider_from_text()
        finally:
            self._syncing = False

    def _slider_from_text(self) -> None:
        """Move the slider to the typed range when it is valid and inside the window."""
        rng = self._typed_range()
        lo, hi = self._window()
        self.range_pages.max = max((hi - lo) // PAGE_SIZE, 1)
        if rng is not None and lo <= rng[0] < rng[1] <= hi and not rng[0] % PAGE_SIZE:
            self.range_pages.value = ((rng[0] - lo) // PAGE_SIZE,
                                      -(-(rng[1] - lo) // PAGE_SIZE))
        self._show_readout()

    def _typed_range(self) -> tuple[int, int] | None:
        try:
            start, length = self._range_words()
            op = parse(f"munmap {start} {length}").ops[0]
            assert isinstance(op, Munmap)
            addr = self._resolve(op.addr)
        except (InputError, ScenarioError):
            return None
        return addr, addr + op.length

    def _show_readout(self) -> None:
        rng = self._typed_range()
        if rng is None:
            self.range_readout.value = ""
            return
        self.range_readout.value = (
            f"<code>{addr_text(rng[0])}-{addr_text(rng[1] % 2**64)}</code>"
            f" ({html.escape(size_text(rng[1] - rng[0]))})")

    # -- showing ----------------------------------------------------------------------------

    def _on_process(self, _: object = None) -> None:
        if self._syncing:
            return
        snap = self.current_snapshot()
        self.before = self.after = snap
        self.trace = None
        self._refresh()

    def _refresh(self) -> None:
        """Bring every view in line with the kernel and the history."""
        m = self._machine
        names = m.live_names() or ["p1"]
        self._syncing = True
        try:
            if self.process.value not in names:
                self.process.options = names
                self.process.value = names[0]
            else:
                self.process.options = names
            self._update_advices()
            snap = self.current_snapshot()
            self.range_vma.options = [("(pick a VMA)", -1)] + [
                (f"{addr_text(r.start)}-{addr_text(r.end)} {r.perms} {size_text(r.size)}", i)
                for i, r in enumerate(snap.vmas[:500])]
            self.range_vma.value = -1
            if not self.range_start.value and snap.vmas:
                r = snap.vmas[0]
                quarter = max(r.pages // 4, 1) if r.pages >= 3 else 0
                self._set_range(r.start + quarter * PAGE_SIZE, r.end - quarter * PAGE_SIZE)
            self._slider_from_text()
        finally:
            self._syncing = False
        after = self.after if self.after is not None else snap
        before = self.before if self.before is not None else after
        if self.trace is None:
            self.view.show_rows([after], title=f"{after.label}: no system call yet")
        else:
            self.view.show_change(before, after, self.trace)
        self.diagram.value = to_svg(self.view.figure)
        self._show_outcome()
        twin = self.changes_text if self.trace is not None else ""
        self.text_twin.value = pre(
            (twin + "\n\n" if twin else "") + f"[{after.label}]\n" + maps_text(after),
            "ksmbook-maps")
        self.trace_box.value = pre(str(self.trace) if self.trace else "(no call yet)")
        rows = [snapshot(p, self._cache) for p in m.runner.procs.values() if p.alive]
        self.all_maps.value = "".join(pre(f"[{s.label}]\n{maps_text(s)}") for s in rows) or \
            pre("(no processes)")
        if len(rows) > 1:
            self.procs_view.show_rows(rows, title="All processes")
            self.procs_diagram.value = to_svg(self.procs_view.figure)
            self.procs_diagram.layout.display = None
        else:
            self.procs_diagram.layout.display = "none"
        self.script.value = self._script_with_outcomes()
        self.undo_button.disabled = not self._undo
        self.redo_button.disabled = not self._redo

    def _update_advices(self) -> None:
        k = self.kernel
        current = self.advice.value
        options = [(_advice_label(a, k.profile.valid_advice(a, k.config_ksm)), int(a))
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
            name = errno_name(t.errno or 0)
            reason = next((s for s in reversed(t.steps) if name in s.message), None)
            text = os.strerror(t.errno or 0)
            if reason is not None:
                text += f": {reason.function}: {reason.message}"
            why = f"<br><span style='font-size:12px;color:#444'>{html.escape(text)}</span>"
        self.outcome.value = (
            f'<div class="ksmbook-outcome" style="font-size:15px"><code>{html.escape(t.call)}'
            f'</code> <b style="color:{color}">{html.escape(t.outcome())}</b>{why}</div>')

    def _script_with_outcomes(self) -> str:
        lines = [format_op(self._kernel_op)]
        for step in self._machine.steps:
            text = format_op(step.op)
            out = _outcome(step)
            lines.append(f"{text:<44} # = {out}" if out else text)
        return "\n".join(lines) + "\n"

    # -- the live kernel ------------------------------------------------------------------

    @guarded
    def _on_live(self, _: object = None) -> None:
        from .. import live

        ok, why = live.available()
        if not ok:
            self.live_box.value = pre(f"The live kernel cannot run here: {why}")
            return
        try:
            results = live.replay(self.history)
        except live.LiveRefused as e:
            self.live_box.value = pre(f"The live kernel refused this script: {e}")
            return
        except live.LiveError as e:
            self.live_box.value = pre(f"The live replay failed: {e}")
            return
        self.live_box.value = self._compare_live(results)

    def _compare_live(self, results: list) -> str:
        """Side by side: each statement's result here and on the real kernel, then the
        final maps of each process from both, and a diagram with both as rows."""
        lines = [f"{'statement':<44} {'simulator':>16} {'live kernel':>16}"]
        differ = 0
        live_steps = [r for r in results if not isinstance(r.op, Boot)]
        for s, r in zip(self._machine.steps, live_steps, strict=False):
            ours = _outcome(s)
            live_out = r.outcome() if ours else ""
            mark = "" if live_out == ours else "  <- differs"
            differ += bool(mark)
            lines.append(f"{format_op(s.op):<44} {ours:>16} {live_out:>16}{mark}")
        final = results[-1].maps if results else {}
        rows: list[Snapshot] = []
        blocks = []
        for name in self._machine.live_names():
            proc = self._machine.process(name)
            assert proc is not None
            mine = snapshot(proc, self._cache)
            theirs = from_entries(final.get(name, []), f"live {name}")
            rows += [mine, theirs]
            if self.kernel.profile.checkable_live:
                same = mine.entries == theirs.entries
            else:  # other kernels' VmFlags codes cannot match this machine's
                same = [(e.start, e.end, e.perms) for e in mine.entries] == \
                    [(e.start, e.end, e.perms) for e in theirs.entries]
            differ += not same
            blocks.append(
                '<div style="display:flex;gap:12px">'
                + pre(f"simulator [{name}]\n{maps_text(mine)}")
                + pre(f"live kernel [{name}]\n{maps_text(theirs)}") + "</div>")
        k = self.kernel
        verdict = ("Same results and the same VMAs." if not differ
                   else f"{differ} difference(s) (marked).")
        note = "" if k.profile.checkable_live else (
            f" The simulator runs the {k.profile.name} profile; the live kernel is modern "
            "Linux, so differences may be version differences.")
        fig = SpaceFigure()
        fig.show_rows(rows, title="simulator and live kernel")
        return (f"<div class='ksmbook-live'><b>{html.escape(verdict)}</b>{html.escape(note)}"
                + pre("\n".join(lines)) + "".join(blocks) + to_svg(fig.figure) + "</div>")
