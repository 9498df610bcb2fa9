"""The ksmd stepper's controls: the step, undo, redo and reset buttons, the /sys/kernel/mm/ksm
knobs, the write row, the pictures and the tabs (pages as text, counters over scans, ksmd's
trace, the script).

`StepperControls` only builds the widgets (CSS classes ``ksmd-<name>``);
`ksmbook.widgets.ksmd.KsmdStepper` wires them to its session.
"""

from __future__ import annotations

import ipywidgets as w

from .common import Widget, button, checkbox, field, stale_note, tag_controls

__all__ = ["StepperControls", "KNOBS"]

#: The knobs the stepper shows, in the order of its knob row.
KNOBS = ("run", "pages_to_scan", "smart_scan", "use_zero_pages", "max_page_sharing")


class StepperControls(Widget):
    """The stepper's widgets, laid out in `widget`. The number knobs are text fields: what is
    typed is written to the simulated sysfs file as it is, which refuses what the kernel
    refuses."""

    #: What the widget's picture and its note call it.
    what = "ksmd stepper"

    def __init__(self) -> None:
        super().__init__()
        self.batch_button = button("one batch", icon="step-forward",
                                   tooltip="ksm_do_scan(pages_to_scan), then sleep")
        self.scan_button = button("one full scan", icon="fast-forward", button_style="primary")
        self.undo_button = button("Undo", icon="undo")
        self.redo_button = button("Redo", icon="redo")
        self.reset_button = button("Reset", icon="trash")
        self.run = field(w.Dropdown, "run", 170, options=[("0 (stop)", 0), ("1 (merge)", 1),
                                                          ("2 (unmerge all)", 2)])
        self.pages_to_scan = field(w.Text, "pages_to_scan", 190, value="100",
                                   continuous_update=False)
        self.smart_scan = checkbox("smart_scan", True)
        self.use_zero_pages = checkbox("use_zero_pages", False)
        self.max_page_sharing = field(w.Text, "max_page_sharing", 200, value="256",
                                      continuous_update=False)
        self.process = field(w.Dropdown, "write: process", 190)
        self.page = field(w.Dropdown, "page", 420)
        self.content = field(w.Text, "new content", 200, value="W",
                             placeholder="a name or a number")
        self.write_button = button("write", icon="pencil")
        self.diagram = w.HTML("")
        self.diagram.add_class("ksmbook-pages")
        self.table = w.HTML("")
        self.counters_diagram = w.HTML("")
        self.counters_box = w.HTML("")
        self.trace_box = w.HTML("")
        self.script_box = w.Textarea(value="", layout=w.Layout(width="100%", height="180px"))
        self.script_box.add_class("ksmbook-script")
        tag_controls(self, "ksmd")
        copy = w.HTML("Copy this script out: <code>python -m ksmbook run FILE</code> replays it "
                      "to the same counters.")
        self.tabs = tabs = w.Tab(
            children=[self.table, w.VBox([self.counters_diagram, self.counters_box]),
                      self.trace_box, w.VBox([copy, self.script_box])],
            titles=("Pages (text)", "Counters over scans", "ksmd trace", "Scenario script"))
        self.knob_row = w.HBox([getattr(self, knob) for knob in KNOBS])
        self.widget = w.VBox([
            stale_note(self.what),
            w.HBox([self.batch_button, self.scan_button, self.undo_button, self.redo_button,
                    self.reset_button]),
            self.knob_row,
            w.HBox([self.process, self.page, self.content, self.write_button]),
            self.message_box, self.diagram, tabs])
        self.widget.add_class("ksmbook-ksmd")
        self.widget.add_class("ksmbook-widget")
