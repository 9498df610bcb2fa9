"""The ksmd stepper's controls: the step, undo, redo and reset buttons, the /sys/kernel/mm/ksm
knobs, the write row, the pictures and the tabs (pages as text, counters over scans, ksmd's
trace, the script).

`StepperControls` only builds the widgets (CSS classes ``ksmd-<name>``);
`ksmbook.widgets.ksmd.KsmdStepper` wires them to its session.
"""

from __future__ import annotations

import ipywidgets as w

from .common import Widget, checkbox, stale_note

__all__ = ["StepperControls", "KNOBS"]

#: The knobs the stepper shows, in the order of its knob row.
KNOBS = ("run", "pages_to_scan", "smart_scan", "use_zero_pages", "max_page_sharing")


class StepperControls(Widget):
    """The stepper's widgets, laid out in `widget`. The number knobs are text fields: what is
    typed is written to the simulated sysfs file as it is, which refuses what the kernel
    refuses."""

    def __init__(self) -> None:
        super().__init__()
        small = w.Layout(width="auto")
        style = {"description_width": "initial"}
        self.batch_button = w.Button(description="one batch", icon="step-forward",
                                     tooltip="ksm_do_scan(pages_to_scan), then sleep",
                                     layout=small)
        self.scan_button = w.Button(description="one full scan", icon="fast-forward",
                                    button_style="primary", layout=small)
        self.undo_button = w.Button(description="Undo", icon="undo", layout=small)
        self.redo_button = w.Button(description="Redo", icon="redo", layout=small)
        self.reset_button = w.Button(description="Reset", icon="trash", layout=small)
        self.run = w.Dropdown(options=[("0 (stop)", 0), ("1 (merge)", 1),
                                       ("2 (unmerge all)", 2)], description="run",
                              style=style, layout=w.Layout(width="170px"))
        self.pages_to_scan = w.Text(value="100", description="pages_to_scan", style=style,
                                    continuous_update=False, layout=w.Layout(width="190px"))
        self.smart_scan = checkbox("smart_scan", True)
        self.use_zero_pages = checkbox("use_zero_pages", False)
        self.max_page_sharing = w.Text(value="256", description="max_page_sharing",
                                       style=style, continuous_update=False,
                                       layout=w.Layout(width="200px"))
        self.process = w.Dropdown(description="write: process", style=style,
                                  layout=w.Layout(width="190px"))
        self.page = w.Dropdown(description="page", style=style, layout=w.Layout(width="420px"))
        self.content = w.Text(value="W", description="new content", style=style,
                              placeholder="a name or a number",
                              layout=w.Layout(width="200px"))
        self.write_button = w.Button(description="write", icon="pencil", layout=small)
        self.diagram = w.HTML("")
        self.diagram.add_class("ksmbook-pages")
        self.table = w.HTML("")
        self.counters_diagram = w.HTML("")
        self.counters_box = w.HTML("")
        self.trace_box = w.HTML("")
        self.script_box = w.Textarea(value="", layout=w.Layout(width="100%", height="180px"))
        self.script_box.add_class("ksmbook-script")
        for name in ("batch_button", "scan_button", "undo_button", "redo_button",
                     "reset_button", "run", "pages_to_scan",
                     "smart_scan", "use_zero_pages", "max_page_sharing", "process", "page",
                     "content", "write_button"):
            getattr(self, name).add_class("ksmd-" + name.replace("_", "-"))
        tabs = w.Tab(children=[self.table, w.VBox([self.counters_diagram, self.counters_box]),
                               self.trace_box,
                               w.VBox([w.HTML("Copy this script out: <code>python -m ksmbook "
                                              "run FILE</code> replays it to the same "
                                              "counters."), self.script_box])])
        for i, title in enumerate(("Pages (text)", "Counters over scans", "ksmd trace",
                                   "Scenario script")):
            tabs.set_title(i, title)
        self.tabs = tabs
        self.knob_row = w.HBox([getattr(self, knob) for knob in KNOBS])
        self.widget = w.VBox([
            stale_note("ksmd stepper"),
            w.HBox([self.batch_button, self.scan_button, self.undo_button, self.redo_button,
                    self.reset_button]),
            self.knob_row,
            w.HBox([self.process, self.page, self.content, self.write_button]),
            self.message_box, self.diagram, tabs])
        self.widget.add_class("ksmbook-ksmd")
        self.widget.add_class("ksmbook-widget")
