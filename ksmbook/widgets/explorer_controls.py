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
from .common import Widget, checkbox, pre, stale_note

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
_COMPACT = {"description_width": "initial"}


def advice_label(advice: MADV, accepted: bool) -> str:
    text = f"{advice.name} ({int(advice)})"
    return text if accepted else f"{text} (CONFIG_KSM=n: invalid)"


class ExplorerControls(Widget):
    """The Explorer's widgets, laid out in `widget`: the kernel row, the map row, the range
    rows (a VMA menu, a page slider and the typed start and length), the calls, the outcome
    and message lines, the diagrams and the tabs (trace, all processes, script, CONFIG_KSM,
    live kernel)."""

    def __init__(self, profile: str, config_ksm: bool) -> None:
        super().__init__()
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
        self.live_button = w.Button(description="Run this script on this machine's kernel...",
                                    icon="microchip", layout=small,
                                    tooltip="asks first, then replays the script in a child "
                                            "process on the real Linux kernel")
        self.live_confirm = w.HTML("")
        self.live_yes = w.Button(description="Yes, run it", button_style="warning",
                                 layout=small)
        self.live_no = w.Button(description="Cancel", layout=small)
        self.live_ask = w.VBox([self.live_confirm, w.HBox([self.live_yes, self.live_no])],
                               layout=w.Layout(display="none"))
        self.live_box = w.HTML("")

        for name in ("profile", "config_ksm", "undo_button", "redo_button", "reset_button",
                     "process", "fork_button", "exit_button", "map_length", "map_prot",
                     "map_kind", "map_at", "map_fixed", "map_button", "range_vma",
                     "range_start", "range_length", "range_pages", "advice", "apply_button",
                     "mprotect_prot", "mprotect_button", "munmap_button", "mremap_length",
                     "mremap_flags", "mremap_to", "mremap_button", "replay_button",
                     "live_button", "live_yes", "live_no"):
            getattr(self, name).add_class("ksm-" + name.replace("_", "-"))
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
            self.kconfig, w.VBox([self.live_button, self.live_ask, self.live_box])])
        for i, title in enumerate(("Kernel trace", "All processes", "Scenario script",
                                   "CONFIG_KSM", "Live kernel")):
            tabs.set_title(i, title)
        self.tabs = tabs
        self.stale = stale_note("explorer")
        self.widget = w.VBox([self.stale, controls, self.outcome, self.message_box,
                              self.diagram, self.text_twin, self.procs_diagram, tabs])
        self.widget.add_class("ksmbook-explorer")
        self.widget.add_class("ksmbook-widget")
