"""Predict, then run: the explorer in a mode for class use.

`PredictExplorer` is the `Explorer` with one difference: a madvise, mprotect or munmap does
not run when its button is pressed. The reader first predicts what the call returns (0 or
which errno) and the VMAs the pages around the range will be afterwards, typed as page
ranges counted from the mapping (the exercises' page-range form, "0-1 1-3 mg 3-8") or picked as
split points among the candidates (the range's ends, the current VMA boundaries); then the call
runs once, in the explorer's session, the diagram shows what the kernel did, and each
prediction gets the feedback the exercises give (`ksmbook.exercises.ResultProblem` and
`ksmbook.exercises.region.RegionLayoutProblem`, built from that run: what a wrong answer would
mean, never the answer itself). A layout typed without any flags predicts the boundaries
only, and is judged on them.

The prediction is structured (an errno, a tuple of `LayoutEntry`) and is compared with the
kernel's result, its VMAs and the events of the call's trace, as the exercises compare
answers; nothing is read back from text the kernel printed.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as w

from ..constants import ERRNO_NAMES, PAGE_SHIFT, PAGE_SIZE
from ..exercises import AnswerError, Feedback, LayoutEntry, Problem, ResultProblem
from ..exercises.answers import (
    PAGES_EXAMPLE,
    Layout,
    errno_text,
    format_pages,
    layout_of,
    parse_layout,
    parse_pages,
    parse_result,
)
from ..exercises.region import PageRegion, RegionLayoutProblem, region_of
from ..madvise import advice_codes
from ..profiles import get_profile
from ..render import addr_text, snapshot
from ..scenario import Madvise, Mprotect, Munmap, ScenarioError, Statement, process_of
from ..session import sentence
from .common import InputError, button, checkbox, field, guarded
from .explorer import Explorer
from .ranges import addr_words

__all__ = ["PredictExplorer", "Prediction", "PageRegion", "format_pages", "parse_pages",
           "region_of", "split_candidates", "split_pages", "MPROTECT_CODES"]

#: The calls whose outcome the reader predicts before they run.
PREDICTED = (Madvise, Mprotect, Munmap)
#: The smaps VmFlags codes a layout prediction is compared on after an mprotect: the
#: protections. After a madvise: the flags an advice of the kernel can set or clear
#: (``ksmbook.madvise.advice_codes``).
MPROTECT_CODES = ("rd", "wr", "ex")
#: At most this many split-point checkboxes (with more candidates, pages are typed).
_MAX_SPLITS = 32
_CELL = " style='white-space:nowrap;padding-right:12px'"
#: The results offered, the ones madvise, mprotect and munmap most often give first.
_RESULTS = ("0", "EINVAL", "ENOMEM", "EAGAIN", "EPERM", "EACCES") + tuple(
    sorted(set(ERRNO_NAMES.values()) - {"EINVAL", "ENOMEM", "EAGAIN", "EPERM", "EACCES"}))


def split_candidates(now: Layout, first: int, end: int, pages: int) -> tuple[int, ...]:
    """The pages where a VMA may begin or end after a call on pages [first, end): the range's
    ends and the boundaries of the VMAs `now`, inside the region's 0..`pages`."""
    points = {first, end} | {e.start for e in now} | {e.end for e in now}
    return tuple(sorted(p for p in points if 0 < p < pages))


def split_pages(points: Sequence[int], pages: int, typed: Sequence[tuple[int, int, str]]) -> str:
    """The layout text with a VMA boundary at each of `points`: each piece keeps the flags of
    the typed VMA it starts in, and a piece starting where the typed layout has no VMA is left
    out (unmapped); with nothing typed, pieces cover all the pages without flags (a prediction
    of the boundaries only)."""
    edges = [0, *sorted(points), pages]
    out = []
    for a, b in zip(edges, edges[1:], strict=False):
        owner = next((t for t in typed if t[0] <= a < t[1]), None)
        if typed and owner is None:
            continue
        out.append(" ".join([f"{a}-{b}", *(owner[2].split() if owner else [])]))
    return " ".join(out) or "none"


@dataclass(frozen=True)
class Prediction:
    """One predicted call: the pages asked about, what the reader said, what the kernel did,
    and the feedback. `boundaries_only`: the layout was typed without flags, and is judged on
    its boundaries."""

    call: str
    region: PageRegion
    result: int
    layout: Layout
    kernel_result: int
    kernel_layout: Layout
    codes: tuple[str, ...]
    result_feedback: Feedback
    layout_feedback: Feedback
    boundaries_only: bool = False

    @property
    def correct(self) -> bool:
        return bool(self.result_feedback.correct and self.layout_feedback.correct)


@dataclass(frozen=True)
class _Question:
    """A call waiting for the reader's prediction."""

    ops: tuple[Statement, ...]
    proc: str
    region: PageRegion
    splits: tuple[int, ...]
    codes: tuple[str, ...]


def _verdict(problem: Problem, given: Any) -> Feedback:
    """The exercise's verdict, worded for a widget (no hint() or solution() to call)."""
    fb = problem.judge(given)
    if fb.correct:
        return Feedback("correct", f"Right. {problem.why()}".strip())
    return Feedback("incorrect", f"Not quite: {problem.misconception(given)}")


class PredictExplorer(Explorer):
    """The explorer that asks for a prediction before a madvise, mprotect or munmap runs.

    Takes the `Explorer`'s arguments. `predictions` holds every judged `Prediction`;
    `predict_first` (a checkbox) turns the asking off and on.
    """

    what = "explorer in predict mode"

    def __init__(self, profile: str = "seed", config_ksm: bool = True, *,
                 script: str | None = None) -> None:
        self._question: _Question | None = None
        self.predictions: list[Prediction] = []
        self._build_predict_controls()
        super().__init__(profile, config_ksm, script=script)
        children = list(self.widget.children)
        children.insert(children.index(self.outcome), self.predict_panel)
        self.widget.children = tuple(children)
        self.widget.add_class("ksmbook-predict")

    def _build_predict_controls(self) -> None:
        self.predict_first = checkbox("predict before each call", True)
        self.question_box = w.HTML("")
        self.predict_result = field(w.Dropdown, "returns", 170, value="",
                                    options=[("(pick)", "")] + [(r, r) for r in _RESULTS])
        self.predict_layout = field(w.Text, "VMAs after", 340, value="",
                                    placeholder=f"e.g. {PAGES_EXAMPLE}")
        self.submit_button = button("Run and compare", icon="check", button_style="success")
        self.skip_button = button("Run without predicting")
        self.feedback_box = w.HTML("")
        self.question_box.add_class("ksmbook-question")
        self.submit_button.on_click(self._on_submit)
        self.skip_button.on_click(self._on_skip)
        self.split_points = w.HBox([], layout=w.Layout(flex_flow="row wrap"))
        self.split_row = w.HBox([w.HTML("VMA boundaries after the call, at page:"),
                                 self.split_points], layout=w.Layout(display="none"))
        self.ask_row = w.HBox([self.predict_result, self.predict_layout, self.submit_button,
                               self.skip_button], layout=w.Layout(display="none"))
        self.predict_panel = w.VBox([self.predict_first, self.question_box, self.split_row,
                                     self.ask_row, self.feedback_box])

    # -- the hook: a predicted call waits -----------------------------------------------------

    @property
    def pending(self) -> str | None:
        """The call waiting for a prediction, as the script writes it (None if none)."""
        return None if self._question is None else str(self._question.ops[-1])

    def _do(self, ops: tuple[Statement, ...], note: str = "") -> None:
        if self.predict_first.value and isinstance(ops[-1], PREDICTED):
            self._ask(ops)
        else:
            super()._do(ops, note)

    def _refresh(self) -> None:
        """Every change of the kernel or its history withdraws a question not answered."""
        super()._refresh()
        if self._question is not None:
            self._set_question(None)

    def _history_changed(self, message: str) -> None:
        """Another kernel, undo, redo, reset or a loaded script: the feedback on the last
        prediction no longer describes what is shown."""
        self.feedback_box.value = ""
        super()._history_changed(message)

    def picture_lines(self) -> tuple[str, ...]:
        """The stored picture shows the prediction fields too."""
        return ("Predict, then run: press madvise, mprotect or munmap; the call waits until "
                "you pick what it returns (0 or an errno) and type the VMAs the pages around "
                f"the range will form, for example {PAGES_EXAMPLE} (first page, end page "
                "exclusive, then the flags; without flags only the boundaries are judged); "
                "then press Run and compare.", *super().picture_lines())

    def _ask(self, ops: tuple[Statement, ...]) -> None:
        op = ops[-1]
        assert isinstance(op, PREDICTED)
        name = process_of(op) or "p1"
        proc = self.session.process(name)
        if proc is None or not proc.alive:
            self._alive("run a system call")
            raise InputError(f"No process named {name!r}.")
        try:
            start = self.session.addr(op.addr)
        except ScenarioError as e:
            raise InputError(sentence(e)) from None
        entries = snapshot(proc, self._cache).entries
        region = region_of(entries, start, start + op.length)
        codes = MPROTECT_CODES if isinstance(op, Mprotect) else (
            advice_codes(self.session.kernel.profile)
            if isinstance(op, Madvise) else ())
        now = layout_of([e for e in entries if e.start < region.end and e.end > region.start],
                        region.start)
        splits = split_candidates(now, (start - region.start) >> PAGE_SHIFT,
                                  -(-(start + op.length - region.start) // PAGE_SIZE),
                                  region.pages)
        self._set_question(_Question(ops, name, region, splits, codes))
        flags = (f"flags compared: {' '.join(codes)}" if codes
                 else "only the boundaries are compared")
        self._say(f"Predict first: what will {op} return, and what VMAs will "
                  f"pages 0-{region.pages} of {name} be?")
        self.question_box.value = (
            f"<div style='font-size:13px'><b>Predict, then run:</b> "
            f"<code>{html.escape(str(op))}</code><br>"
            f"Pages 0-{region.pages} of {html.escape(name)} (page 0 = "
            f"<code>{addr_text(region.start)}</code>, "
            f"<code>{html.escape(addr_words(self.session, region.start))}</code>) are now: "
            f"<code>{html.escape(format_pages(now, codes))}</code><br>"
            f"<span style='color:#444'>Type each VMA after the call as first-end page (end "
            f"exclusive) with its flags, in the form <code>{PAGES_EXAMPLE}</code>; leave "
            f"unmapped pages out; {html.escape(flags)}; a layout without any flags predicts "
            f"the boundaries only.</span></div>")

    def _set_question(self, question: _Question | None) -> None:
        self._question = question
        self.ask_row.layout.display = None if question is not None else "none"
        boxes = [] if question is None or len(question.splits) > _MAX_SPLITS else [
            checkbox(str(k), False) for k in question.splits]
        for box in boxes:
            box.add_class("ksm-split-point")
            box.observe(self._on_split, "value")
        self.split_points.children = tuple(boxes)
        self.split_row.layout.display = None if boxes else "none"
        if question is None:
            self.question_box.value = ""
        else:
            self.feedback_box.value = ""
            self.predict_result.value, self.predict_layout.value = "", ""

    @guarded
    def _on_split(self, _: object = None) -> None:
        """A split point ticked or cleared: rewrite the typed layout with those boundaries."""
        q = self._question
        if q is None:
            return
        points = [k for k, box in zip(q.splits, self.split_points.children, strict=True)
                  if box.value]
        try:
            typed = parse_pages(str(self.predict_layout.value), q.region.pages)
        except AnswerError:
            typed = []
        self.predict_layout.value = split_pages(points, q.region.pages, typed)

    # -- the answer -------------------------------------------------------------------------

    def _read_prediction(self, q: _Question) -> tuple[int, Layout, bool]:
        """The reader's prediction as the problems read answers, and whether it gives the
        boundaries only (InputError if unreadable)."""
        if not self.predict_result.value:
            raise InputError("Pick the result you predict: 0, or the errno the call fails "
                             "with.")
        text = str(self.predict_layout.value)
        try:
            tuples = parse_pages(text, q.region.pages)
            layout = parse_layout(tuples, q.region.start, get_profile(self.kernel.profile.name))
        except AnswerError as e:
            raise InputError(f"{text.strip()!r}: {e}.") from None
        keep = frozenset(q.codes)
        layout = tuple(LayoutEntry(e.start, e.end, e.codes & keep) for e in layout)
        return (parse_result(str(self.predict_result.value)), layout,
                bool(q.codes) and bool(layout) and not any(flags for _, _, flags in tuples))

    @guarded
    def _on_submit(self, _: object = None) -> None:
        q = self._question
        if q is None:
            raise InputError("No call is waiting for a prediction: choose a range and press "
                             "madvise, mprotect or munmap.")
        result, layout, boundaries_only = self._read_prediction(q)
        super()._do(q.ops)
        s = self.session
        ran = (s.kernel, [*s.steps[:-1], s.with_maps(s.steps[-1])])
        question = f"What does `{q.ops[-1]}` do?"
        result_problem = ResultProblem(s.scenario, question, ran=ran)
        layout_problem = RegionLayoutProblem(s.scenario, question, region=q.region,
                                             codes=q.codes, proc=q.proc, ran=ran)
        expected = layout_problem.answer
        if boundaries_only and [(e.start, e.end) for e in layout] == \
                [(e.start, e.end) for e in expected]:
            layout_fb = Feedback("correct", "Right: the boundaries (you gave no flags, so only "
                                 "they are judged; the kernel's flags are beside).")
        else:
            layout_fb = _verdict(layout_problem, layout)
        prediction = Prediction(
            str(q.ops[-1]), q.region, result, layout, result_problem.answer, expected,
            q.codes, _verdict(result_problem, result), layout_fb, boundaries_only)
        self.predictions.append(prediction)
        self._show_feedback(prediction)

    @guarded
    def _on_skip(self, _: object = None) -> None:
        q = self._question
        if q is None:
            raise InputError("No call is waiting for a prediction.")
        super()._do(q.ops)

    def _show_feedback(self, p: Prediction) -> None:
        right = sum(x.correct for x in self.predictions)
        rows = []
        for what, given, kernel, fb in (
                ("result", errno_text(p.result), errno_text(p.kernel_result),
                 p.result_feedback),
                ("VMAs", format_pages(p.layout, p.codes), format_pages(p.kernel_layout, p.codes),
                 p.layout_feedback)):
            color = "#007a5a" if fb.correct else "#D55E00"
            rows.append(
                f"<tr><td><b>{what}</b></td><td{_CELL}><code>{html.escape(given)}</code></td>"
                f"<td{_CELL}><code>{html.escape(kernel)}</code></td>"
                f"<td style='color:{color};line-height:1.3'>{html.escape(fb.message)}</td></tr>")
        self.feedback_box.value = (
            "<div class='ksmbook-feedback' style='font-size:13px'>"
            f"<b>{html.escape(p.call)}</b>"
            "<table><tr><th></th><th>you predicted</th><th>the kernel</th><th></th></tr>"
            + "".join(rows) + "</table>"
            f"<span style='color:#444'>Predictions right so far: {right} of "
            f"{len(self.predictions)}.</span></div>")
