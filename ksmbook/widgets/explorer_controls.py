"""The Explorer's controls: every input, button and view it shows, and their layout.

`ExplorerControls` only builds the widgets (one attribute each, named as the tests and the
browser's CSS classes name them, ``ksm-<name>``); `ksmbook.widgets.explorer.Explorer` wires
them to the session.
"""

from __future__ import annotations

import ipywidgets as w

from ..constants import MADV
from ..kernel import DRIVER_STYLES, KSM_KCONFIG_HELP
from ..profiles import PROFILES
from .common import Widget, button, checkbox, field, pre, stale_note, tag_controls

__all__ = ["ExplorerControls", "MAP_KINDS", "PROTS", "advice_label"]

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


def advice_label(advice: MADV, accepted: bool) -> str:
    text = f"{advice.name} ({int(advice)})"
    return text if accepted else f"{text} (CONFIG_KSM=n: invalid)"


class ExplorerControls(Widget):
    """The Explorer's widgets, laid out in `widget`: the kernel row, the map row, the range
    rows (a VMA menu, a page slider and the typed start and length), the calls, the outcome
    and message lines, the diagrams and the tabs (trace, all processes, script, CONFIG_KSM,
    live kernel)."""

    #: What the widget's picture and its note call it.
    what = "explorer"

    def __init__(self, profile: str, config_ksm: bool) -> None:
        super().__init__()
        self.profile = field(w.Dropdown, "kernel", 160, options=list(PROFILES), value=profile)
        self.config_ksm = checkbox(f"CONFIG_KSM={'y' if config_ksm else 'n'}", config_ksm)
        self.undo_button = button("Undo", icon="undo")
        self.redo_button = button("Redo", icon="redo")
        self.reset_button = button("Reset", icon="trash")
        self.process = field(w.Dropdown, "process", 150, options=["p1"], value="p1")
        self.fork_button = button("fork")
        self.exit_button = button("exit")

        self.map_length = field(w.Text, "mmap length", 150, value="16p")
        self.map_prot = field(w.Dropdown, "prot", 105, options=list(PROTS), value="rw")
        self.map_kind = field(w.Dropdown, "kind", 280, options=list(MAP_KINDS),
                              value="private anonymous")
        self.map_at = field(w.Text, "at", 180, value="", placeholder="kernel's choice")
        self.map_fixed = checkbox("MAP_FIXED", False)
        self.map_button = button("mmap", button_style="primary")

        self.range_vma = field(w.Dropdown, "range: VMA", 420, options=[("(pick a VMA)", -1)],
                               value=-1)
        self.range_start = field(w.Text, "range start", 250, value="",
                                 placeholder="A+4p or 0x7ffff7ff3000")
        self.range_length = field(w.Text, "length", 130, value="", placeholder="4p")
        self.range_pages = field(w.IntRangeSlider, "pages", 330, value=(0, 0), min=0, max=1,
                                 step=1, readout=False, continuous_update=False)
        self.range_readout = w.HTML("", layout=w.Layout(width="300px"))
        self.advice = field(w.Dropdown, "advice", 400)
        self.apply_button = button("madvise", button_style="primary")
        self.mprotect_prot = field(w.Dropdown, "range: new prot", 170, options=list(PROTS),
                                   value="r")
        self.mprotect_button = button("mprotect")
        self.munmap_button = button("munmap")
        self.mremap_length = field(w.Text, "range: new length", 220, value="", placeholder="8p")
        flags = ("maymove", "maymove fixed", "maymove dontunmap", "maymove fixed dontunmap")
        self.mremap_flags = field(w.Dropdown, "flags", 260, value="maymove",
                                  options=[("in place only", ""), *((f, f) for f in flags)])
        self.mremap_to = field(w.Text, "to", 200, value="", placeholder="0x20000000")
        self.mremap_button = button("mremap")

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
        self.replay_button = button("Replay this script", icon="play")
        self.kconfig = w.HTML(pre(KSM_KCONFIG_HELP))
        self.live_button = button("Run this script on this machine's kernel...",
                                  icon="microchip", tooltip="asks first, then replays the "
                                  "script in a child process on the real Linux kernel")
        self.live_confirm = w.HTML("")
        self.live_yes = button("Yes, run it", button_style="warning")
        self.live_no = button("Cancel")
        self.live_ask = w.VBox([self.live_confirm, w.HBox([self.live_yes, self.live_no])],
                               layout=w.Layout(display="none"))
        self.live_box = w.HTML("")

        tag_controls(self, "ksm")
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
        self.tabs = tabs = w.Tab(
            children=[self.trace_box, self.all_maps, w.VBox([self.script, self.replay_button]),
                      self.kconfig, w.VBox([self.live_button, self.live_ask, self.live_box])],
            titles=("Kernel trace", "All processes", "Scenario script", "CONFIG_KSM",
                    "Live kernel"))
        self.widget = w.VBox([stale_note(self.what), controls, self.outcome, self.message_box,
                              self.diagram, self.text_twin, self.procs_diagram, tabs])
        self.widget.add_class("ksmbook-explorer")
        self.widget.add_class("ksmbook-widget")
