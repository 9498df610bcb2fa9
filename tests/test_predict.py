"""Predict, then run, headless: the call waits until the reader's prediction is in, then runs
on the kernel; the prediction is judged by the exercises' problems against the kernel's VMAs
and the call's trace events. Controls are driven by `.value` and `Button.click()`."""

from __future__ import annotations

import errno

import pytest

import ksmbook as kb
import ksmbook.render as kr
from ksmbook.exercises import AnswerError, LayoutEntry, ResultProblem
from ksmbook.exercises.answers import errno_text, layout_of
from ksmbook.madvise import advice_codes
from ksmbook.scenario import Scenario
from ksmbook.widgets import PredictExplorer
from ksmbook.widgets.predict import (
    PageRegion,
    format_pages,
    parse_pages,
    region_of,
    split_candidates,
    split_pages,
)

P = kb.PAGE_SIZE
MERGEABLE, UNMERGEABLE = int(kb.MADV_MERGEABLE), int(kb.MADV_UNMERGEABLE)


def mapped(pages: int = 8, **kwargs: object) -> PredictExplorer:
    ex = PredictExplorer(**kwargs)  # type: ignore[arg-type]
    ex.map_length.value = f"{pages}p"
    ex.map_button.click()  # mmap is not asked about
    assert not ex.errors and ex.pending is None and len(vmas(ex)) == 1
    return ex


def vmas(ex: PredictExplorer) -> list[tuple[int, int, tuple[str, ...]]]:
    proc = next(p for p in ex.kernel.processes if p.name == "p1")
    return [(r.start, r.end, r.vmflags) for r in kr.snapshot(proc).vmas]


def ask(ex: PredictExplorer, start: str, length: str, advice: int = MERGEABLE) -> None:
    ex.range_start.value, ex.range_length.value = start, length
    ex.advice.value = advice
    ex.apply_button.click()


def predict(ex: PredictExplorer, result: str, layout: str) -> None:
    ex.predict_result.value = result
    ex.predict_layout.value = layout
    ex.submit_button.click()


def kernel_layout(ex: PredictExplorer, codes: tuple[str, ...] | None = None) -> tuple:
    """p1's VMAs as read from the explorer's kernel, pages counted from the first VMA; the
    codes compared are those a madvise of that kernel can change unless `codes` says."""
    if codes is None:
        codes = advice_codes(ex.kernel.profile)
    proc = next(p for p in ex.kernel.processes if p.name == "p1")
    entries = kr.snapshot(proc).entries
    keep = frozenset(codes)
    return tuple(LayoutEntry(e.start, e.end, e.codes & keep)
                 for e in layout_of(entries, entries[0].start))


def test_the_call_waits_and_the_diagram_is_withheld_until_the_prediction() -> None:
    ex = mapped()
    before, script, svg, trace = vmas(ex), ex.script_text, ex.diagram_svg, ex.trace
    ask(ex, "A+2p", "4p")
    assert ex.pending == "madvise A+2p 4p MERGEABLE"
    assert vmas(ex) == before and ex.script_text == script
    assert ex.diagram_svg == svg and ex.trace is trace and "madvise" not in ex.outcome.value
    assert ex.ask_row.layout.display is None
    assert "Pages 0-8 of p1" in ex.question_box.value
    assert "are now: <code>0-8</code>" in ex.question_box.value
    assert "Predict first" in ex.message and not ex.predictions

    predict(ex, "0", "0-2 2-6 mg 6-8")
    assert not ex.errors and ex.pending is None and ex.ask_row.layout.display == "none"
    a = before[0][0]
    assert vmas(ex) == [(a, a + 2 * P, ("rd", "wr", "mr", "mw", "me", "ac")),
                        (a + 2 * P, a + 6 * P, ("rd", "wr", "mr", "mw", "me", "ac", "mg")),
                        (a + 6 * P, a + 8 * P, ("rd", "wr", "mr", "mw", "me", "ac"))]
    assert ex.trace is not None and ex.trace.call.startswith(f"madvise({a + 2 * P:#x}, 16384")
    assert ex.diagram_svg != svg and "split" in ex.changes_text
    assert ex.script_text.endswith("madvise A+2p 4p MERGEABLE\n")
    (p,) = ex.predictions
    assert p.correct and p.kernel_result == 0 == ex.trace.result
    assert p.kernel_layout == kernel_layout(ex)
    assert "Right." in ex.feedback_box.value and "1 of 1" in ex.feedback_box.value


def test_wrong_predictions_get_the_exercises_feedback() -> None:
    ex = mapped()
    ask(ex, "A+2p", "4p")
    history = ex.session.scenario
    predict(ex, "ENOMEM", "0-2 2-6 dc 6-8")
    assert not ex.errors
    (p,) = ex.predictions
    assert not p.result_feedback.correct and not p.layout_feedback.correct
    assert (p.result, p.kernel_result) == (-errno.ENOMEM, 0)
    # The exercise of the same call gives the same misconception text.
    problem = ResultProblem(Scenario(history.ops + (ex.session.steps[-1].op,)), "?")
    assert p.result_feedback.message == "Not quite: " + problem.misconception(-errno.ENOMEM)
    assert "part of the range is not mapped" in p.result_feedback.message
    assert "pages 2-6" in p.layout_feedback.message and "mg" in p.layout_feedback.message
    assert format_pages(p.kernel_layout) == "0-2 2-6 mg 6-8"
    shown = ex.feedback_box.value
    assert "you predicted" in shown and "<code>ENOMEM</code>" in shown
    assert "<code>0-2 2-6 mg 6-8</code>" in shown and "0 of 1" in shown
    # The diagram shows what the kernel did, wrong prediction or not.
    assert len(vmas(ex)) == 3 and ex.trace is not None and ex.trace.result == 0


def test_a_range_over_a_hole_widens_the_pages_and_fails_with_enomem() -> None:
    ex = mapped()
    ask(ex, "A+6p", "4p")
    assert "Pages 0-10 of p1" in ex.question_box.value
    predict(ex, "0", "0-6 6-10 mg")
    (p,) = ex.predictions
    assert p.kernel_result == -errno.ENOMEM == -(ex.trace.errno or 0)
    assert format_pages(p.kernel_layout) == "0-6 6-8 mg"
    assert "Compare the range with the maps before the call" in p.result_feedback.message
    assert "a layout of 2 VMAs" not in p.layout_feedback.message
    assert not p.layout_feedback.correct and not ex.errors


def test_config_ksm_n_feedback_points_at_the_kernel_line() -> None:
    ex = mapped(config_ksm=False)
    ask(ex, "A", "8p")
    predict(ex, "0", "0-8 mg")
    (p,) = ex.predictions
    assert p.kernel_result == -errno.EINVAL
    assert "CONFIG_KSM=n" in p.result_feedback.message
    assert "look again at the flags mg" in p.layout_feedback.message
    assert len(vmas(ex)) == 1 and "mg" not in vmas(ex)[0][2]


def test_neighbours_merge_back_and_the_question_covers_them() -> None:
    ex = mapped()
    ask(ex, "A+2p", "4p")
    predict(ex, "0", "0-2 2-6 mg 6-8")
    ask(ex, "A+2p", "4p", UNMERGEABLE)
    assert (ex.predict_result.value, ex.predict_layout.value) == ("", "")  # a fresh question
    assert "are now: <code>0-2 2-6 mg 6-8</code>" in ex.question_box.value
    predict(ex, "0", "0-2 2-6 6-8")
    p = ex.predictions[-1]
    assert p.result_feedback.correct and not p.layout_feedback.correct
    assert format_pages(p.kernel_layout) == "0-8" and len(vmas(ex)) == 1
    assert "a layout of 3 VMAs is too many" in p.layout_feedback.message
    assert "1 of 2" in ex.feedback_box.value


def test_mprotect_compares_protections_and_munmap_boundaries() -> None:
    ex = mapped()
    ex.range_start.value, ex.range_length.value = "A+2p", "2p"
    ex.mprotect_prot.value = "r"
    ex.mprotect_button.click()
    assert ex.pending == "mprotect A+2p 2p r" and "flags compared: rd wr ex" in \
        ex.question_box.value
    predict(ex, "0", "0-2 rw-p 2-4 r--p 4-8 rd wr")  # maps permissions or codes
    assert ex.predictions[-1].correct, ex.predictions[-1]
    assert [c[:2] for _, _, c in vmas(ex)] == [("rd", "wr"), ("rd", "mr"), ("rd", "wr")]
    ex.range_start.value, ex.range_length.value = "A+1p", "2p"
    ex.munmap_button.click()
    assert "only the boundaries are compared" in ex.question_box.value
    predict(ex, "0", "0-1 3-4 4-8")
    assert ex.predictions[-1].correct and len(vmas(ex)) == 3
    assert ex.predictions[-1].kernel_layout == kernel_layout(ex, ())


@pytest.mark.parametrize(("result", "layout", "message"), [
    ("", "0-2 2-6 mg 6-8", "Pick the result you predict"),
    ("0", "", "type the VMAs as page ranges with their flags, for example 0-1 1-3 mg 3-8"),
    ("0", "   ", "type the VMAs as page ranges"),
    ("0", "mg 0-8", "start with a page range such as 0-1"),
    ("0", "0-2 2-6 mg 6-9", "these pages run from 0 to 8"),
    ("0", "0-4 2-6 mg", "overlap"),
    ("0", "4-2", "a VMA ends after it starts"),
    ("0", "0-2 2-6 xx 6-8", "'xx' is not an smaps VmFlags code"),
    ("0", "0-2 2-6 __import__('os') 6-8", "is not an smaps VmFlags code"),
    ("0", "0..2 2..8", "start with a page range"),
])
def test_bad_predictions_get_a_message_and_change_nothing(result: str, layout: str,
                                                          message: str) -> None:
    ex = mapped()
    ask(ex, "A+2p", "4p")
    before, script, svg = vmas(ex), ex.script_text, ex.diagram_svg
    predict(ex, result, layout)
    assert message in ex.message, ex.message
    assert "Traceback" not in ex.message
    assert 'color:#b34700' in ex.message_box.value  # shown as the reader's error
    assert not ex.errors and not ex.predictions
    assert vmas(ex) == before and ex.script_text == script and ex.diagram_svg == svg
    assert ex.pending == "madvise A+2p 4p MERGEABLE"  # still waiting: fix and submit again
    predict(ex, "0", "0-2 2-6 mg 6-8")
    assert ex.predictions[-1].correct and len(vmas(ex)) == 3


def test_a_call_that_cannot_run_is_not_asked_about() -> None:
    ex = mapped()
    ask(ex, "Q+2p", "4p")
    assert "No mapping labelled 'Q'" in ex.message and ex.pending is None
    assert not ex.errors and len(vmas(ex)) == 1


def test_changing_the_kernel_or_history_withdraws_the_question() -> None:
    ex = mapped()
    ask(ex, "A+2p", "4p")
    ex.undo_button.click()
    assert ex.pending is None and ex.ask_row.layout.display == "none"
    assert ex.kernel.processes == []  # Undo took back the mmap; the madvise never ran
    ex.submit_button.click()
    assert "No call is waiting" in ex.message and not ex.errors


def test_skip_and_predicting_off_run_the_call_at_once() -> None:
    ex = mapped()
    ask(ex, "A+2p", "4p")
    ex.skip_button.click()
    assert ex.pending is None and len(vmas(ex)) == 3 and not ex.predictions
    ex.predict_first.value = False
    ask(ex, "A", "8p", UNMERGEABLE)
    assert ex.pending is None and len(vmas(ex)) == 1 and not ex.predictions
    assert not ex.errors


def test_the_profile_switch_keeps_predicting() -> None:
    ex = mapped(profile="modern")
    ask(ex, "A+2p", "4p")
    predict(ex, "0", "0-2 2-6 mg 6-8")
    assert ex.predictions[-1].correct and ex.kernel.profile.name == "modern"
    ex.profile.value = "seed"
    ask(ex, "A+3p", "1p")
    assert "are now: <code>0-2 2-6 mg 6-8</code>" in ex.question_box.value
    predict(ex, "0", "0-2 2-6 mg 6-8")
    assert ex.predictions[-1].correct and not ex.errors


def test_region_of_takes_whole_pages_and_the_contiguous_runs_it_touches() -> None:
    def e(a: int, b: int) -> kb.procfs.MapEntry:
        return kb.procfs.MapEntry(a * P, b * P, "rw-p", 0, "00:00", 0, "", ())

    entries = [e(0, 8), e(8, 12), e(100, 108)]
    assert region_of(entries, 2 * P, 4 * P) == PageRegion(0, 12 * P)
    assert region_of(entries, 12 * P, 14 * P) == PageRegion(0, 14 * P)
    assert region_of(entries, 50 * P + 1, 51 * P) == PageRegion(50 * P, 51 * P)
    assert region_of(entries, 99 * P, 100 * P) == PageRegion(99 * P, 108 * P)
    assert region_of(entries, 2 * P, 2**64 + P) == PageRegion(0, 2**64)
    assert region_of(entries, 2 * P, 4 * P).pages == 12


def test_parse_pages() -> None:
    assert parse_pages("0-2 2-6 mg 6-8", 8) == [(0, 2, ""), (2, 6, "mg"), (6, 8, "")]
    assert parse_pages("0-2, 2-6 rd wr mg", 6) == [(0, 2, ""), (2, 6, "rd wr mg")]
    assert parse_pages("None", 8) == []
    with pytest.raises(AnswerError, match="from 0 to 4"):
        parse_pages("0-5", 4)


ROUND_TRIP = [  # (explorer arguments, set-up script, button, start, length, advice or prot)
    ({}, "map A 8p rw private anon", "madvise", "A+2p", "4p", "MERGEABLE"),
    ({}, "map A 8p rw private anon", "madvise", "A+6p", "4p", "MERGEABLE"),
    ({}, "map A 8p rw private anon", "madvise", "A+1", "4p", "MERGEABLE"),
    ({}, "map A 8p rw private anon", "madvise", "A", "8p", "DONTFORK"),
    ({}, "map A 8p rw private anon\nmadvise A+2p 4p RANDOM", "madvise", "A+4p", "4p",
     "SEQUENTIAL"),
    ({}, "map A 8p rw shared anon", "madvise", "A+2p", "4p", "MERGEABLE"),
    ({"profile": "modern"}, "map A 8p rw shared anon", "madvise", "A+2p", "4p", "MERGEABLE"),
    ({"config_ksm": False}, "map A 8p rw private anon", "madvise", "A", "8p", "MERGEABLE"),
    ({}, "map A 8p rw private anon\nmap B 4p r private anon", "madvise", "A", "8p",
     "MERGEABLE"),
    ({}, "map A 8p rw private anon", "mprotect", "A+3p", "2p", "rx"),
    ({}, "map A 8p rw private anon\nmprotect A+3p 2p r", "mprotect", "A+3p", "2p", "rw"),
    ({}, "map A 8p rw private anon", "munmap", "A", "8p", ""),
    ({}, "map A 8p rw private anon", "munmap", "A+2p", "2p", ""),
]


@pytest.mark.parametrize(("kwargs", "script", "button", "start", "length", "what"), ROUND_TRIP)
def test_the_kernels_own_answer_typed_back_is_right(kwargs: dict, script: str, button: str,
                                                    start: str, length: str,
                                                    what: str) -> None:
    """Whatever the call does, its result and VMAs, typed as the feedback shows them, are
    judged right; and they are what the explorer's kernel holds."""
    def run(answer: tuple[str, str]) -> PredictExplorer:
        ex = PredictExplorer(script=script, **kwargs)
        ex.range_start.value, ex.range_length.value = start, length
        if button == "madvise":
            ex.advice.value = int(kb.MADV[f"MADV_{what}"])
            ex.apply_button.click()
        elif button == "mprotect":
            ex.mprotect_prot.value = what
            ex.mprotect_button.click()
        else:
            ex.munmap_button.click()
        assert ex.pending is not None, ex.message
        predict(ex, *answer)
        assert not ex.errors and ex.pending is None, ex.message
        return ex

    first = run(("EBADF", "none")).predictions[-1]
    assert not first.result_feedback.correct  # none of these calls gives EBADF
    typed = (errno_text(first.kernel_result), format_pages(first.kernel_layout, first.codes))
    ex = run(typed)
    p = ex.predictions[-1]
    assert p.correct, (typed, p)
    assert ex.trace is not None and p.kernel_result == ex.trace.result
    proc = next(q for q in ex.kernel.processes if q.name == "p1")
    inside = [e for e in kr.snapshot(proc).entries
              if e.start < p.region.end and e.end > p.region.start]
    assert p.kernel_layout == tuple(LayoutEntry(e.start, e.end, e.codes & frozenset(p.codes))
                                    for e in layout_of(inside, p.region.start))


def test_split_points_write_the_layout_and_keep_typed_flags() -> None:
    ex = mapped()
    ask(ex, "A+2p", "4p")
    boxes = {b.description: b for b in ex.split_points.children}
    assert list(boxes) == ["2", "6"] and ex.split_row.layout.display is None
    boxes["2"].value = True
    assert ex.predict_layout.value == "0-2 2-8"
    boxes["6"].value = True
    assert ex.predict_layout.value == "0-2 2-6 6-8"
    ex.predict_layout.value = "0-2 2-6 mg 6-8"
    boxes["2"].value = False
    assert ex.predict_layout.value == "0-6 6-8"  # the piece from page 0 keeps page 0's flags
    boxes["2"].value = True
    ex.predict_layout.value = "0-2 2-6 mg 6-8"
    predict(ex, "0", ex.predict_layout.value)
    assert ex.predictions[-1].correct and not ex.errors
    assert ex.split_row.layout.display == "none" and ex.split_points.children == ()
    ask(ex, "A+3p", "1p", UNMERGEABLE)  # candidates: the VMA boundaries and the range's ends
    assert [b.description for b in ex.split_points.children] == ["2", "3", "4", "6"]
    assert not any(b.value for b in ex.split_points.children)


def test_split_candidates_and_split_pages() -> None:
    now = (LayoutEntry(0, 2, frozenset()), LayoutEntry(2, 6, frozenset({"mg"})),
           LayoutEntry(6, 8, frozenset()))
    assert split_candidates(now, 3, 4, 8) == (2, 3, 4, 6)
    assert split_candidates(now, 0, 8, 8) == (2, 6)
    assert split_candidates((), 6, 10, 10) == (6,)
    assert split_pages([2, 6], 8, []) == "0-2 2-6 6-8"
    assert split_pages([], 8, [(0, 8, "mg")]) == "0-8 mg"
    # a typed hole stays a hole
    assert split_pages([2, 4, 6], 8, [(0, 2, ""), (6, 8, "mg")]) == "0-2 6-8 mg"
    assert split_pages([2], 8, [(4, 6, "")]) == "none"


def test_a_call_in_a_forked_child_is_asked_about_the_child() -> None:
    ex = mapped()
    ex.fork_button.click()
    ex.process.value = "c1"
    ask(ex, "A+2p", "4p")
    assert ex.pending == "c1: madvise A+2p 4p MERGEABLE"
    assert "Pages 0-8 of c1" in ex.question_box.value
    predict(ex, "0", "0-2 2-6 mg 6-8")
    assert ex.predictions[-1].correct and not ex.errors
    parent, child = ({p.name: p for p in ex.kernel.processes}[n] for n in ("p1", "c1"))
    assert len(parent.vmas) == 1 and len(child.vmas) == 3


def test_the_example_is_not_the_answer_to_the_first_suggested_call() -> None:
    ex = mapped()
    ask(ex, "A+2p", "4p")
    assert "0-2 2-6 mg 6-8" not in ex.question_box.value + ex.predict_layout.placeholder
    assert "0-1 1-3 mg 3-8" in ex.question_box.value


def test_split_points_predict_the_boundaries_and_are_judged_on_them() -> None:
    ex = mapped()
    ask(ex, "A+2p", "4p")
    for box in ex.split_points.children:
        box.value = box.description in ("2", "6")
    assert ex.predict_layout.value == "0-2 2-6 6-8"
    ex.predict_result.value = "0"
    ex.submit_button.click()
    (p,) = ex.predictions
    assert p.boundaries_only and p.correct and "the boundaries" in p.layout_feedback.message
    ask(ex, "A", "8p")                                 # wrong boundaries stay wrong
    predict(ex, "0", "0-4 4-8")
    assert not ex.predictions[-1].layout_feedback.correct and not ex.errors


def test_the_feedback_goes_when_the_kernel_changes() -> None:
    ex = mapped()
    ask(ex, "A+2p", "4p")
    predict(ex, "0", "0-2 2-6 mg 6-8")
    assert "ksmbook-feedback" in ex.feedback_box.value
    ex.config_ksm.value = False
    assert ex.feedback_box.value == "" and "now fails" in ex.message


def test_the_stored_picture_shows_the_prediction_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython.display

    shown: list = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append(obj))
    ex = mapped()
    ex._ipython_display_()
    bundle, _view = shown
    assert "Predict, then run" in bundle["text/html"] and "Run and compare" in bundle["text/plain"]
    assert "explorer in predict mode" in bundle["text/plain"]


def test_exercises_take_the_predict_mode_form() -> None:
    from ksmbook.exercises import LayoutProblem

    problem = LayoutProblem("map A 8p rw private anon at 0x10000000\nmadvise A+2p 4p MERGEABLE\n",
                            "?")
    assert problem.grade("0-2 2-6 mg 6-8").correct
    bad = problem.grade("pages two to six")
    assert bad.status == "unreadable" and "answer = [(0, 2" in bad.message
    assert "0-1 1-3 mg 3-8" in bad.message
    assert "a layout of 1 VMA " in problem.grade("0-8").message
