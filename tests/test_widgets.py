"""The explorer, headless: every control driven by setting `.value` and `Button.click()`;
assertions on the kernel, the history, the messages and the drawn data, never on an Output."""

from __future__ import annotations

from pathlib import Path

import pytest

import ksmbook as kb
import ksmbook.render as kr
from ksmbook.scenario import format_scenario, parse
from ksmbook.widgets import MAP_KINDS, Explorer, KsmdStepper

P = kb.PAGE_SIZE


def mapped(profile: str = "seed", config_ksm: bool = True, length: str = "16p") -> Explorer:
    ex = Explorer(profile=profile, config_ksm=config_ksm)
    ex.map_length.value = length
    ex.map_button.click()
    assert not ex.errors and ex.message == ""
    return ex


def madvise(ex: Explorer, start: str, length: str, advice: int) -> None:
    ex.range_start.value = start
    ex.range_length.value = length
    ex.advice.value = advice
    ex.apply_button.click()


def vmas(ex: Explorer, name: str = "p1") -> list[tuple[int, int, tuple[str, ...]]]:
    proc = next(p for p in ex.kernel.processes if p.name == name)
    snap = kr.snapshot(proc)
    return [(r.start, r.end, r.vmflags) for r in snap.vmas]


def test_map_then_mergeable_in_the_middle() -> None:
    ex = mapped()
    (p,) = ex.kernel.processes
    (a0,) = [v.start for v in p.vmas]
    assert p.vmas[0].size == 16 * P
    assert ex.script_text == "kernel seed ksm=y\nmap A 16p rw private anon\n"
    madvise(ex, "A+4p", "8p", int(kb.MADV_MERGEABLE))
    assert [(v.start - a0, v.end - a0) for v in p.vmas] == [(0, 4 * P), (4 * P, 12 * P),
                                                            (12 * P, 16 * P)]
    assert [bool(v.flags & kb.VM_MERGEABLE) for v in p.vmas] == [False, True, False]
    assert p.mm_flags & kb.MMF_VM_MERGEABLE
    assert ex.trace is p.last_trace and ex.trace.result == 0
    assert "split" in ex.changes_text and "+mg" in ex.changes_text
    assert ex.maps_text == p.maps()
    assert [len(b.get_paths()) for b in ex.view.row_bars[:2]] == [1, 3]
    assert ex.diagram_svg.count("<use") + ex.diagram_svg.count("<path") > 4
    assert "= 0" in ex.outcome.value
    assert ex.script_text.endswith("madvise A+4p 8p MERGEABLE\n")


def test_the_slider_and_the_vma_menu_write_the_range_fields() -> None:
    ex = mapped()
    a0 = ex.kernel.processes[0].vmas[0].start
    lo = ex.ranges.window()[0]
    ex.range_pages.value = ((a0 - lo) // P + 2, (a0 - lo) // P + 5)
    assert (ex.range_start.value, ex.range_length.value) == ("A+2p", "3p")
    assert "3p" in ex.range_readout.value
    ex.range_vma.value = 0
    assert (ex.range_start.value, ex.range_length.value) == ("A", "16p")
    assert ex.range_pages.value == ((a0 - lo) // P, (a0 - lo) // P + 16)
    ex.range_start.value = f"{a0 + 4 * P:#x}"
    ex.range_length.value = "0x2000"
    assert ex.range_pages.value == ((a0 - lo) // P + 4, (a0 - lo) // P + 6)
    ex.apply_button.click()
    assert ex.trace is not None and ex.trace.call.startswith(f"madvise({a0 + 4 * P:#x}, 8192")


def test_config_ksm_off_reboots_replays_and_gives_einval() -> None:
    ex = mapped()
    madvise(ex, "A+4p", "8p", int(kb.MADV_MERGEABLE))
    assert len(ex.kernel.processes[0].vmas) == 3
    ex.config_ksm.value = False
    assert ex.kernel.config_ksm is False
    assert ex.script_text.startswith("kernel seed ksm=n\n")
    # The same history on a kernel without KSM: the madvise fails, nothing is split.
    assert len(ex.kernel.processes[0].vmas) == 1
    assert ex.session.steps[-1].result == -22
    assert "CONFIG_KSM=n" in ex.message and ex.config_ksm.description == "CONFIG_KSM=n"
    assert "Enable KSM for page merging" in ex.kconfig.value
    label = dict((v, k) for k, v in ex.advice.options)[int(kb.MADV_MERGEABLE)]
    assert "CONFIG_KSM=n" in label
    before = ex.kernel.processes[0].maps()
    ex.apply_button.click()
    assert ex.trace is not None and ex.trace.errno == 22
    assert ex.kernel.processes[0].maps() == before
    assert "EINVAL" in ex.outcome.value and "EINVAL" in ex.changes_text
    ex.config_ksm.value = True
    assert len(ex.kernel.processes[0].vmas) == 3 and ex.session.steps[-1].result == 0


@pytest.mark.parametrize("profile", kb.PROFILES)
def test_every_advice_of_the_profile(profile: str) -> None:
    ex = mapped(profile, length="64p")
    prof = kb.get_profile(profile)
    offered = [v for _, v in ex.advice.options]
    assert offered == [int(a) for a in prof.all_advices(True)]
    for i, advice in enumerate(offered):
        madvise(ex, f"A+{i % 60}p", "2p", advice)
        assert not ex.errors, ex.errors
        assert ex.trace is not None and ex.trace.call.startswith("madvise(")
        assert ex.session.steps[-1].result in (0, -9, -13, -22, -38, -12, -11)
    assert len(ex.session.steps) == 1 + len(offered)


def test_profile_selector_replays_on_another_kernel() -> None:
    ex = mapped()
    ex.profile.value = "modern"
    assert ex.kernel.profile.name == "modern"
    assert ex.script_text.startswith("kernel modern ksm=y\n")
    assert int(kb.MADV_COLD) in [v for _, v in ex.advice.options]
    assert len(ex.kernel.processes[0].vmas) == 1


@pytest.mark.parametrize("kind", list(MAP_KINDS))
def test_every_kind_of_mapping(kind: str) -> None:
    ex = Explorer(profile="2.6.32")
    ex.map_kind.value = kind
    ex.map_length.value = "2M" if "hugetlb" in kind else "8p"
    ex.map_button.click()
    assert not ex.errors
    (p,) = ex.kernel.processes
    (v,) = p.vmas
    expected = {"private anonymous": "anon", "shared anonymous": "shared-anon",
                "private file": "file", "shared file": "shared-file",
                "hugetlb (2 MiB pages)": "hugetlb"}.get(kind, "device")
    assert v.kind == expected
    if expected == "hugetlb":
        assert "sysctl nr_hugepages=1" in ex.script_text and "huge pages" in ex.message
    assert parse(ex.script_text) == ex.session.scenario


def test_driver_style_missing_from_a_kernel_is_a_message() -> None:
    ex = Explorer(profile="modern")
    ex.map_kind.value = "driver: reserved"
    ex.map_button.click()
    assert "does not exist in the modern kernel" in ex.message
    assert ex.kernel.processes == [] or not ex.kernel.processes[0].vmas
    assert ex.script_text == "kernel modern ksm=y\n" and not ex.errors


def test_mprotect_munmap_fork_exit() -> None:
    ex = mapped()
    a0 = ex.kernel.processes[0].vmas[0].start
    ex.range_start.value, ex.range_length.value = "A+2p", "2p"
    ex.mprotect_prot.value = "r"
    ex.mprotect_button.click()
    assert [v.end - v.start for v in ex.kernel.processes[0].vmas] == [2 * P, 2 * P, 12 * P]
    ex.range_start.value, ex.range_length.value = "A+8p", "4p"
    ex.munmap_button.click()
    assert (a0 + 8 * P) not in [v.start for v in ex.kernel.processes[0].vmas]
    assert "unmapped" in ex.changes_text
    ex.fork_button.click()
    assert list(ex.process.options) == ["p1", "c1"]
    assert ex.procs_diagram.layout.display is None
    assert [s.name for s in ex.procs_view.rows] == ["p1", "c1"]
    ex.process.value = "c1"
    ex.exit_button.click()
    assert list(ex.process.options) == ["p1"] and ex.process.value == "p1"
    assert ex.procs_diagram.layout.display == "none"
    assert "c1: exit" in ex.script_text


def test_undo_redo_reset() -> None:
    ex = mapped()
    madvise(ex, "A+4p", "8p", int(kb.MADV_MERGEABLE))
    assert not ex.undo_button.disabled and ex.redo_button.disabled
    ex.undo_button.click()
    assert len(ex.kernel.processes[0].vmas) == 1
    assert ex.script_text == "kernel seed ksm=y\nmap A 16p rw private anon\n"
    assert not ex.redo_button.disabled
    ex.redo_button.click()
    assert len(ex.kernel.processes[0].vmas) == 3
    assert ex.before is not None and len(ex.before) == 1 and len(ex.after or ()) == 3
    ex.reset_button.click()
    assert ex.kernel.processes == [] and ex.script_text == "kernel seed ksm=y\n"
    ex.undo_button.click()                               # Reset is undone too
    assert len(ex.kernel.processes[0].vmas) == 3 and ex.message == "Undone: reset."
    ex.undo_button.click()
    ex.undo_button.click()
    assert ex.kernel.processes == [] and ex.undo_button.disabled
    ex.undo_button.click()
    assert ex.message == "Nothing to undo." and not ex.errors


def test_undo_after_two_actions_replays_the_cells_starting_script() -> None:
    """A history is rebuilt from the cell's script and then the actions: undo of the second
    of two actions leaves the first, on the mapping the script made."""
    ex = Explorer(script="map A 16p rw private anon")
    madvise(ex, "A+4p", "8p", int(kb.MADV_MERGEABLE))
    after_one = vmas(ex)
    madvise(ex, "A", "2p", int(kb.MADV_MERGEABLE))
    ex.undo_button.click()
    assert vmas(ex) == after_one and ex.message == "Undone: madvise A 2p MERGEABLE."
    assert ex.script_text.startswith("kernel seed ksm=y\nmap A 16p rw private anon\n")
    ex.redo_button.click()
    assert len(vmas(ex)) == 4 and not ex.errors


def test_undo_undoes_the_kernel_switch() -> None:
    ex = mapped()
    ex.config_ksm.value = False
    assert not ex.kernel.config_ksm and ex.script_text.startswith("kernel seed ksm=n\n")
    ex.undo_button.click()
    assert ex.kernel.config_ksm and ex.config_ksm.value
    assert ex.config_ksm.description == "CONFIG_KSM=y"
    assert ex.script_text == "kernel seed ksm=y\nmap A 16p rw private anon\n"
    ex.redo_button.click()
    assert not ex.kernel.config_ksm and not ex.config_ksm.value
    ex.profile.value = "modern"
    ex.undo_button.click()
    assert ex.profile.value == "seed" and ex.kernel.profile.name == "seed"
    assert len(ex.kernel.processes[0].vmas) == 1 and not ex.errors


def test_the_script_round_trips_and_replays() -> None:
    ex = mapped()
    madvise(ex, "A+4p", "8p", int(kb.MADV_MERGEABLE))
    ex.fork_button.click()
    shown = ex.script.value
    assert "# = -1" not in shown and "# = 0" in shown
    assert parse(shown) == ex.session.scenario
    other = Explorer()
    other.script.value = shown
    other.replay_button.click()
    assert format_scenario(other.session.scenario) == ex.script_text
    assert [p.maps() for p in other.kernel.processes] == [p.maps() for p in ex.kernel.processes]
    assert list(other.process.options) == ["p1", "c1"]
    # Pasting a script sets the kernel controls from its kernel line.
    other.script.value = "kernel modern ksm=n\nmap A 4p rw private anon\n"
    other.replay_button.click()
    assert (other.profile.value, other.config_ksm.value) == ("modern", False)


def test_a_bad_script_changes_nothing() -> None:
    ex = mapped()
    text, maps = ex.script_text, ex.kernel.processes[0].maps()
    for bad, says in (("map A 4q rw private anon", "line 1, column 7"),
                      ("madvise B 4p MERGEABLE", "no mapping labelled 'B'"),
                      ("kernel nonsense", "unknown profile")):
        ex.script.value = bad
        ex.replay_button.click()
        assert says in ex.message, ex.message
        assert ex.script_text == text and ex.kernel.processes[0].maps() == maps
    assert not ex.errors


@pytest.mark.parametrize("start, length, says", [
    ("A+4p", "abc", "Length 'abc' is not a number"),
    ("A+4p", "4 p", "must be one word"),
    ("A+4p", "", "Enter a length"),
    ("", "4p", "Enter a start address"),
    ("A+4p", "99999999999999999999999", "does not fit in 64 bits"),
    ("0xZZ", "4p", "is not a number"),
    ("A+2q", "4p", "is not a number"),
    ("A", "1.5p", "Length '1.5p' is not a whole number"),
    ("A", "-4p", "A length cannot be negative ('-4p')"),
    ("A", "-4096", "A length cannot be negative"),
    ("Q", "4p", "No mapping labelled 'Q' yet"),
    ("A+4p", "4p\nmap X 1p rw private anon", "must be one word"),
    ("A#+4p", "4p", "must be one word"),
    ("p1:", "4p", "must be one word"),
])
def test_bad_input_is_a_message_and_changes_nothing(start: str, length: str, says: str) -> None:
    ex = mapped()
    text, maps = ex.script_text, ex.kernel.processes[0].maps()
    madvise(ex, start, length, int(kb.MADV_MERGEABLE))
    assert says in ex.message, ex.message
    assert ex.script_text == text and ex.kernel.processes[0].maps() == maps
    assert not ex.errors


@pytest.mark.parametrize("length, err", [("-1", "EINVAL"), ("0", None)])
def test_lengths_the_kernel_judges(length: str, err: str | None) -> None:
    """-1 wraps to 2**64-1 as in C and the kernel gives its errno; len 0 is a no-op."""
    ex = mapped()
    maps = ex.kernel.processes[0].maps()
    madvise(ex, "A+4p", length, int(kb.MADV_MERGEABLE))
    assert ex.trace is not None
    assert (kb.errno_name(ex.trace.errno) if ex.trace.errno else None) == err
    assert ex.kernel.processes[0].maps() == maps and not ex.errors


def test_unaligned_start_is_einval() -> None:
    ex = mapped()
    madvise(ex, "A+100", "4p", int(kb.MADV_MERGEABLE))
    assert ex.trace is not None and ex.trace.errno == 22
    assert "EINVAL" in ex.outcome.value
    assert "Invalid argument: " in ex.outcome.value
    assert "not page aligned: EINVAL" in ex.outcome.value


def test_map_input_errors() -> None:
    ex = Explorer()
    for length, says in (("ten", "is not a number"), ("", "Enter a length")):
        ex.map_length.value = length
        ex.map_button.click()
        assert says in ex.message
    ex.map_length.value = "4p"
    ex.map_fixed.value = True
    ex.map_button.click()
    assert "MAP_FIXED needs an address" in ex.message
    assert ex.kernel.processes == [] and ex.script_text == "kernel seed ksm=y\n"
    ex.map_at.value = "0x10000000"
    ex.map_button.click()
    assert [v.start for v in ex.kernel.processes[0].vmas] == [0x10000000]
    assert "map A 4p rw private anon at 0x10000000 fixed" in ex.script_text


def test_nothing_typed_is_evaluated(tmp_path: Path) -> None:
    ex = mapped()
    marker = tmp_path / "evaluated"
    for text in (f"__import__('pathlib').Path('{marker}').touch()", "1+1", "len([])"):
        madvise(ex, text, "4p", int(kb.MADV_MERGEABLE))
        madvise(ex, "A", text, int(kb.MADV_MERGEABLE))
    assert not marker.exists()
    assert len(ex.session.steps) == 1


def test_a_callback_error_is_shown_and_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    ex = mapped()
    text, maps = ex.script_text, ex.kernel.processes[0].maps()

    def broken(*args: object) -> None:
        raise RuntimeError("boom")
    monkeypatch.setattr(ex.session.runner, "step", broken)
    madvise(ex, "A+4p", "8p", int(kb.MADV_MERGEABLE))
    assert "could not do that (RuntimeError: boom)" in ex.message
    assert "Traceback" not in ex.message_box.value
    assert ex.script_text == text and ex.kernel.processes[0].maps() == maps
    assert len(ex.errors) == 1
    madvise(ex, "A+4p", "8p", int(kb.MADV_MERGEABLE))  # the rebuilt kernel works
    assert ex.session.steps[-1].result == 0


def test_explorer_starts_from_a_script() -> None:
    ex = Explorer(script="kernel 2.6.32 ksm=y\nmap A 8p rw private anon\n"
                         "madvise A+2p 4p MERGEABLE\n")
    assert ex.profile.value == "2.6.32" and len(ex.kernel.processes[0].vmas) == 3
    assert "+mg" in ex.changes_text


@pytest.mark.live
def test_live_button_compares_with_the_real_kernel() -> None:
    from ksmbook import live

    ok, why = live.available()
    if not ok:
        pytest.skip(why)
    ex = mapped("modern")
    madvise(ex, "A+4p", "8p", int(kb.MADV_MERGEABLE))
    ex.live_button.click()
    assert "Linux kernel" in ex.live_confirm.value and not ex.live_box.value
    ex.live_yes.click()
    assert not ex.errors
    assert "Same results and the same VMAs." in ex.live_box.value, ex.live_box.value
    assert ex.live_box.value.count("VmFlags: rd wr mr mw me ac mg") == 2


def test_live_button_says_why_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from ksmbook import live

    monkeypatch.setattr(live, "available", lambda: (False, "no KSM in this test"))
    ex = mapped()
    ex.live_button.click()
    assert "Linux kernel" in ex.live_confirm.value and not ex.live_box.value
    ex.live_yes.click()
    assert not ex.errors
    assert ex.live_box.value == "<pre" + ex.live_box.value[4:] and \
        "The live kernel cannot run here: no KSM in this test" in ex.live_box.value


@pytest.mark.live
def test_live_button_explains_a_refusal() -> None:
    """A kernel without KSM cannot be replayed live; the reason is shown, not raised."""
    ex = mapped(config_ksm=False)
    ex.live_button.click()
    assert "Linux kernel" in ex.live_confirm.value and not ex.live_box.value
    ex.live_yes.click()
    assert not ex.errors
    assert ex.live_box.value.startswith("<pre") and (
        "refused" in ex.live_box.value or "cannot run here" in ex.live_box.value)


def test_a_history_another_kernel_cannot_run_keeps_the_kernel() -> None:
    """VM_RESERVED (a 2.6.32 driver style) does not exist in modern Linux."""
    ex = Explorer(profile="seed")
    ex.map_kind.value = "driver: reserved"
    ex.map_button.click()
    assert ex.kernel.processes[0].vmas[0].kind == "device"
    ex.profile.value = "modern"
    assert "does not run on that kernel" in ex.message
    assert ex.profile.value == "seed" and ex.kernel.profile.name == "seed"
    assert ex.script_text.startswith("kernel seed ksm=y\ndevice d1 reserved\n")
    assert not ex.errors


# -- the ksmd stepper -------------------------------------------------------------------------

def test_stepper_session_replays_as_a_script(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Every action is a statement; the script replays to the same counters and pages."""
    import io
    import sys

    from ksmbook.__main__ import main
    from ksmbook.scenario import run
    from ksmbook.widgets import KsmdStepper

    w = KsmdStepper()
    w.batch_button.click()
    w.pages_to_scan.value = "3"
    w.scan_button.click()
    w.scan_button.click()
    w.max_page_sharing.value = "10"                 # refused (EBUSY): replayed as refused
    assert "EBUSY" in w.message
    w.process.value = "p2"
    w.page.value = w.page.options[0][1]
    w.content.value = "Q"
    w.write_button.click()
    w.scan_button.click()
    w.run.value = 0
    w.scan_button.click()                          # ksmd cannot get there: not recorded
    assert "does not scan" in w.message and not w.errors
    script = w.script
    assert script.endswith("ksmd batch\nsysfs pages_to_scan=3\nksmd scan 1\nksmd scan 1\n"
                           "sysfs max_page_sharing=10\n"
                           f"p2: write {w.page.value:#x} 257\nksmd scan 1\nsysfs run=0\n")
    results = run(script)
    assert results[-2].counters == w.kernel.ksmd.counters() == w.history[-1]
    assert results[-4].errno == 16                 # EBUSY, as the widget showed
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    assert main(["run", "-"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert dict(word.split("=") for word in last.split()) == {
        k: str(v) for k, v in w.kernel.ksmd.counters().items()}


def test_stepper_header_says_scan_or_scans() -> None:
    from ksmbook.widgets import KsmdStepper

    w = KsmdStepper()
    assert "after 0 full scans" in w.diagram.value
    w.scan_button.click()
    assert "after 1 full scan" in w.diagram.value and "after 1 full scans" not in w.diagram.value
    w.scan_button.click()
    assert "after 2 full scans" in w.diagram.value


def test_the_slider_spans_the_neighbourhood_of_the_range() -> None:
    """A mapping far away does not stretch the slider over billions of pages."""
    ex = mapped()
    near = ex.range_pages.max
    ex.map_length.value = "4p"
    ex.map_at.value = "0x10000000"
    ex.map_fixed.value = True
    ex.map_button.click()
    assert not ex.errors and len(ex.kernel.processes[0].vmas) == 2
    assert ex.range_pages.max == near == 16 + 4
    ex.range_vma.value = 0                               # the far VMA, B at 0x10000000
    assert (ex.range_start.value, ex.range_length.value) == ("B", "4p")
    assert ex.range_pages.max == 4 + 4 and ex.range_pages.value == (2, 6)
    ex.range_pages.value = (3, 5)
    assert (ex.range_start.value, ex.range_length.value) == ("B+1p", "2p")
    ex.range_start.value = "A+4p"
    assert ex.range_pages.max == 20 and ex.range_pages.value == (6, 8)


def test_a_failed_call_does_not_use_up_a_label() -> None:
    ex = Explorer()
    ex.map_length.value = "0"
    ex.map_button.click()
    assert ex.session.steps[-1].errno == 22 and "map A 0 rw private anon" in ex.script_text
    ex.map_length.value = "4p"
    ex.map_button.click()
    assert ex.script_text.endswith("map A 4p rw private anon\n")
    ex.map_button.click()
    assert ex.script_text.endswith("map B 4p rw private anon\n") and not ex.errors


def test_checkbox_labels_fit() -> None:
    """ipywidgets cuts a label that does not fit its box to "...": CONFIG_KSM=y must show."""
    import ipywidgets as w

    from ksmbook.widgets import KsmdStepper
    from ksmbook.widgets.common import CHAR_PX, CHECKBOX_PX

    ex, stepper = Explorer(), KsmdStepper()
    boxes = [c for c in (*vars(ex).values(), *vars(stepper).values()) if isinstance(c, w.Checkbox)]
    assert {c.description for c in boxes} == {"CONFIG_KSM=y", "MAP_FIXED", "smart_scan",
                                              "use_zero_pages"}
    for c in boxes:
        assert int(c.layout.width.removesuffix("px")) >= CHECKBOX_PX + CHAR_PX * len(
            c.description), c.description
    ex.config_ksm.value = False
    assert ex.config_ksm.description == "CONFIG_KSM=n"
    assert int(ex.config_ksm.layout.width.removesuffix("px")) >= 32 + 9 * len("CONFIG_KSM=n")


def test_stepper_pages_nobody_touched_keep_colour_and_number() -> None:
    from ksmbook.widgets import KsmdStepper

    def cells(w: KsmdStepper) -> dict[tuple[str, int], tuple[str, int | None]]:
        assert w.state is not None
        numbers = {(r.process, r.address): r.page for r in w.state.rows}
        return {key: (color, numbers[key]) for key, color in w.view.cell_colors.items()}

    w = KsmdStepper()
    w.scan_button.click()
    w.scan_button.click()
    before = cells(w)
    w.process.value = "p1"
    written = w.page.options[2][1]                     # p1's Y
    w.page.value = written
    w.content.value = "Q"
    w.write_button.click()
    after = cells(w)
    assert after[("p1", written)] != before[("p1", written)]
    assert {k: v for k, v in after.items() if k != ("p1", written)} == {
        k: v for k, v in before.items() if k != ("p1", written)}
    assert not w.errors


def test_stepper_trace_names_the_ksm_pages_the_diagram_shows() -> None:
    import re

    from ksmbook.widgets import KsmdStepper

    w = KsmdStepper()
    w.scan_button.click()
    w.scan_button.click()
    assert w.state is not None
    shown = {n.page for n in w.state.stable}
    named = {int(n) for n in re.findall(r"KSM page #(\d+)", w.trace_box.value)}
    assert named and named <= shown
    assert {r.page for r in w.state.rows if r.state == "KSM page"} == shown


@pytest.mark.parametrize(("knob", "typed", "errname", "why"), [
    ("pages_to_scan", "-5", "EINVAL", "kstrtouint()"),
    ("pages_to_scan", "99999999999", "EINVAL", "below 2**32"),
    ("max_page_sharing", "1", "EINVAL", "at least 2"),
    ("max_page_sharing", "99999999999", "ERANGE", "kstrtoint()"),
])
def test_stepper_knobs_are_refused_as_the_kernel_refuses(knob: str, typed: str, errname: str,
                                                         why: str) -> None:
    from ksmbook.widgets import KsmdStepper

    w = KsmdStepper()
    before = w.kernel.sysfs[knob]
    getattr(w, knob).value = typed
    assert f"refused it with {errname}" in w.message and why in w.message
    assert w.kernel.sysfs[knob] == before and getattr(w, knob).value == str(before)
    assert f"sysfs {knob}={typed}\n" in w.script and not w.errors


def test_stepper_explains_ebusy_and_keeps_one_series_per_reset_of_full_scans() -> None:
    from ksmbook.render.ksm_pages import counters_table
    from ksmbook.widgets import KsmdStepper

    w = KsmdStepper()
    w.scan_button.click()
    w.scan_button.click()
    w.max_page_sharing.value = "10"
    assert "EBUSY" in w.message and "set run to 2 (unmerge all) first" in w.message
    w.run.value = 2
    assert "full_scans starts again from 0" in w.message
    w.run.value = 1
    w.scan_button.click()
    w.scan_button.click()
    assert [h["full_scans"] for h in w.history] == [0, 1, 2]
    assert [[h["full_scans"] for h in s] for s in w.earlier] == [[0, 1, 2]]
    rows = counters_table(w.history).splitlines()[1:]
    assert len(rows) == len(set(rows)) == 3
    assert "run=2" in w.counters_box.value and not w.errors


def _stepper_views(w: KsmdStepper) -> tuple[object, ...]:
    """What the stepper shows and holds: counters, pages, every view, the knobs, the script."""
    return (dict(w.kernel.ksmd.counters()), w.pages_text, w.diagram.value, w.table.value,
            w.counters_diagram.value, w.counters_box.value, w.trace_box.value,
            w.script_box.value, w.history, w.earlier, w.last_write, w.pages_to_scan.value,
            w.run.value, [p.name for p in w.kernel.processes])


def test_stepper_undo_and_redo_redraw_every_view_from_the_session() -> None:
    """Undo puts counters, pages and every view back exactly as they were before the step;
    Redo does the step again; a new step after Undo drops what Redo would have done. The
    buttons are disabled when there is nothing to undo or redo."""
    w = KsmdStepper()
    assert w.undo_button.disabled and w.redo_button.disabled
    start = _stepper_views(w)
    w.scan_button.click()
    w.scan_button.click()
    assert w.history[-1]["pages_sharing"] > 0 and not w.undo_button.disabled
    merged = _stepper_views(w)
    w.pages_to_scan.value = "3"
    w.process.value = "p2"
    w.page.value = w.page.options[0][1]
    w.content.value = "Q"
    w.write_button.click()
    w.scan_button.click()
    later = _stepper_views(w)
    assert later != merged and w.last_write is not None
    for _ in range(3):                                # the scan, the write, the knob
        w.undo_button.click()
    assert w.message == "Undone: sysfs pages_to_scan=3."
    assert _stepper_views(w) == merged and not w.redo_button.disabled
    for _ in range(3):
        w.redo_button.click()
    assert _stepper_views(w) == later and w.redo_button.disabled
    w.reset_button.click()
    assert _stepper_views(w) == start
    w.undo_button.click()                             # Undo takes the reset back too
    assert _stepper_views(w) == later
    for _ in range(5):
        w.undo_button.click()
    assert _stepper_views(w) == start and w.undo_button.disabled
    w.redo_button.click()
    w.batch_button.click()                            # a new step: nothing left to redo
    assert w.redo_button.disabled and not w.session.can_redo
    assert w.script.endswith("ksmd scan 1\nksmd batch\n") and not w.errors


def test_stepper_copies_its_session_out_and_models_no_timing() -> None:
    from ksmbook.widgets import KsmdStepper
    from ksmbook.widgets.ksmd import demo_kernel

    w = KsmdStepper()
    w.scan_button.click()
    w.scan_button.click()
    w.process.value = "p2"
    w.page.value = w.page.options[0][1]
    w.content.value = "Y"
    w.write_button.click()
    assert "on this machine" not in w.message and "nothing is timed here" in w.message
    assert w.script_box.value.startswith("kernel modern ksm=y\nmap A 4p")
    assert "ksmd scan 1" in w.script_box.value
    coded = KsmdStepper(lambda: demo_kernel("modern"))
    assert "cannot replay" in coded.script


def test_a_reboot_names_the_calls_that_now_fail() -> None:
    ex = mapped()
    madvise(ex, "A+4p", "8p", int(kb.MADV_MERGEABLE))
    madvise(ex, "A", "2p", int(kb.MADV_MERGEABLE))
    ex.config_ksm.value = False
    assert "replayed 3 actions; 2 calls now fail" in ex.message, ex.message
    assert "madvise A+4p 8p MERGEABLE -> EINVAL" in ex.message
    ex.config_ksm.value = True
    assert "now fail" not in ex.message and not ex.errors


def test_an_exited_process_names_the_way_forward() -> None:
    ex = mapped()
    ex.exit_button.click()
    for button in (ex.map_button, ex.fork_button):
        button.click()
        assert "p1 has exited" in ex.message and "Undo" in ex.message and "Reset" in ex.message
    ex.undo_button.click()
    ex.fork_button.click()
    ex.exit_button.click()                          # p1 exits, c1 runs
    assert list(ex.process.options) == ["c1"] and not ex.errors


def test_reset_keeps_the_cells_starting_script() -> None:
    ex = Explorer(script="map A 8p rw private anon\n")
    madvise(ex, "A+2p", "4p", int(kb.MADV_MERGEABLE))
    ex.reset_button.click()
    assert len(ex.kernel.processes[0].vmas) == 1
    assert ex.script_text == "kernel seed ksm=y\nmap A 8p rw private anon\n"
    assert "starting script" in ex.message and not ex.errors


def test_the_live_replay_asks_first() -> None:
    ex = mapped()
    assert "Run this script on this machine" in ex.live_button.description
    ex.live_button.click()
    assert ex.live_ask.layout.display is None and "Linux kernel" in ex.live_confirm.value
    ex.live_no.click()
    assert ex.live_ask.layout.display == "none" and "Nothing was run" in ex.live_box.value
