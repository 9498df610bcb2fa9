"""The page-level views of KSM (ksmbook.render.ksm_pages) and the ksmd stepping widget.

The views only read the simulated kernel through ksmd's read-only API; these tests compare what
they show (the text twin, the figure's recorded cells, colours and links) with the kernel's own
state, and drive the widget headless: set `.value`, `click()`, then assert on the kernel and on
the rendered data, never on an Output widget.
"""

from __future__ import annotations

import itertools
import re

import pytest
from figure_check import problems
from test_ksmd_live import BIG, mapped, prelude, scans
from test_thp import ZERO_PAGES

import ksmbook as kb
from ksmbook.render import ksm_pages as kp
from ksmbook.render.text import addr_text
from ksmbook.scenario import Runner, boot, parse
from ksmbook.sidechannel import probe
from ksmbook.trace import Fault
from ksmbook.widgets.ksmd import KsmdStepper, demo_kernel

P = kb.PAGE_SIZE
RW = kb.PROT_READ | kb.PROT_WRITE
ANON = kb.MAP_PRIVATE | kb.MAP_ANONYMOUS
NAMES = {1: "X", 2: "Y", 3: "Z"}
OKABE_ITO = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"}


def offer(k: kb.Kernel, contents: list[int], name: str = "", advise: bool = True
          ) -> tuple[kb.Process, int]:
    p = k.spawn(name)
    a = p.mmap(len(contents) * P, RW, ANON)
    p.write_pages(a, contents)
    if advise:
        p.madvise(a, len(contents) * P, kb.MADV_MERGEABLE)
    return p, a


def example(profile: str = "modern") -> tuple[kb.Kernel, kb.Process, kb.Process, int, int]:
    """p1 [X, X, Y, Z] and p2 [X, Y], advised, ksmd running."""
    k = kb.Kernel(profile=profile)
    p1, a1 = offer(k, [1, 1, 2, 3], "p1")
    p2, a2 = offer(k, [1, 2], "p2")
    k.sysfs["run"] = 1
    return k, p1, p2, a1, a2


def states(state: kp.PageState) -> dict[tuple[str, int], str]:
    return {(r.process, r.address): r.label for r in state.rows}


# -- the frozen state ------------------------------------------------------------------------

def test_states_follow_the_passes() -> None:
    k, p1, p2, a1, a2 = example()
    assert set(states(kp.page_state(k)).values()) == {"unscanned"}
    k.ksmd.full_scans(1)
    assert set(states(kp.page_state(k)).values()) == {"volatile"}
    k.ksmd.full_scans(1)
    s = states(kp.page_state(k))
    assert s[("p1", a1)] == s[("p1", a1 + P)] == s[("p2", a2)] == "KSM page shared by 3"
    assert s[("p1", a1 + 2 * P)] == s[("p2", a2 + P)] == "KSM page shared by 2"
    assert s[("p1", a1 + 3 * P)] == "unstable"


def test_state_agrees_with_ksmd() -> None:
    k, p1, p2, a1, a2 = example()
    k.ksmd.full_scans(2)
    state = kp.page_state(k, names=NAMES)
    assert state.counters == k.ksmd.counters()
    assert [(n.content, len(n.sharers)) for n in state.stable] == \
        [(v.content, len(v.sharers)) for v in k.ksmd.stable_tree()]
    assert [(u.content, u.address) for u in state.unstable] == \
        [(u.content, u.address) for u in k.ksmd.unstable_tree()]
    # A page is shown by its id (Page.id): equal numbers are one physical page.
    rows = {(r.process, r.address): r.page for r in state.rows}
    assert rows == {(p.name, vpn * P): page.id
                    for p in (p1, p2) for vpn, page in p.mm.ptes.items()}
    stable = {n.content: n.page for n in state.stable}
    assert rows[("p1", a1)] == rows[("p2", a2)] == stable[1]
    assert rows[("p1", a1 + 2 * P)] == rows[("p2", a2 + P)] == stable[2] != stable[1]


def test_untouched_not_mergeable_stale_and_zero_pages() -> None:
    k = kb.Kernel(profile="modern")
    k.sysfs["use_zero_pages"] = 1
    p = k.spawn("p")
    a = p.mmap(4 * P, RW, ANON)
    p.write_pages(a, [0, 1])
    p.madvise(a, 3 * P, kb.MADV_MERGEABLE)        # page 3 stays without VM_MERGEABLE
    p.write_pages(a + 3 * P, [1])
    _, b = offer(k, [1], "q")
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    s = states(kp.page_state(k))
    assert s[("p", a)] == kp.ZERO_LABELS["KSM zero page"]
    assert s[("p", a + P)] == "KSM page shared by 2"
    assert s[("p", a + 2 * P)] == "untouched"
    assert s[("p", a + 3 * P)] == "not mergeable"
    q = next(x for x in k.processes if x.name == "q")
    q.write_pages(b, [5])                          # COW: the item is now stale
    assert states(kp.page_state(k))[("q", b)].startswith("stale")
    k.ksmd.full_scans(1)
    assert states(kp.page_state(k))[("q", b)] == "volatile"


def test_fork_shared_pages_say_how_often_they_are_mapped() -> None:
    k = kb.Kernel(profile="modern")
    p, a = offer(k, [7], "p")
    p.fork("c")
    assert states(kp.page_state(k))[("p", a)] == "unscanned; one page in 2 page tables"


def test_text_twin_is_deterministic_and_complete() -> None:
    texts = []
    for _ in range(2):
        k, *_ = example()
        k.ksmd.full_scans(2)
        texts.append(kp.pages_text(kp.page_state(k, names=NAMES)))
    assert texts[0] == texts[1]
    text = texts[0]
    # The nbval checks need a maps-style range in every diagram's twin.
    assert re.search(r"\b[0-9a-f]{8,}-[0-9a-f]{8,}\b", text)
    assert "stable tree: 2 KSM pages" in text
    assert "unstable tree: 1 item" in text
    assert "pages_sharing 3" in text and "general_profit 11904" in text
    assert "cursor: at the list head" in text


def test_long_areas_are_cut_and_kernels_without_ksmd_are_shown() -> None:
    k = kb.Kernel(profile="modern")
    offer(k, list(range(1, 41)), "big")
    state = kp.page_state(k, max_pages=8)
    assert len(state.rows) == 8 and state.areas[0].hidden == 32
    assert "... 32 more pages" in kp.pages_text(state)
    seed = kb.Kernel(profile="seed")
    offer(seed, [1, 1], "p")
    text = kp.pages_text(kp.page_state(seed))
    assert "no ksmd" in text and "unscanned" in text


# -- the shared zero page -------------------------------------------------------------------

def run_sim(text: str) -> Runner[kb.Process]:
    """A scenario run on the simulator."""
    scenario = parse(text)
    runner = Runner(boot(scenario))
    for op in scenario.ops:
        runner.step(op)
    return runner


def check_zero_pages(k: kb.Kernel, procs: dict[str, kb.Process]) -> kp.PageState:
    """Every address mapping the shared zero page shows as a zero page, never as a page
    shared N times, in no tree, in the table and the figure alike; the KSM-placed ones are
    what ksm_zero_pages and each process's ksm_stat count."""
    state = kp.page_state(k, max_pages=1024)
    zero = {(p.name, vpn * P) for p in procs.values() if p.alive
            for vpn, page in p.mm.ptes.items() if page.id == 0}
    assert zero and {(r.process, r.address) for r in state.rows if r.zero} == zero
    ksm_zero = [r for r in state.rows if r.state == "KSM zero page"]
    assert len(ksm_zero) == state.counters["ksm_zero_pages"]
    for name, p in procs.items():
        if p.alive:
            assert sum(r.process == name for r in ksm_zero) == \
                k.ksmd.ksm_stat(p)["ksm_zero_pages"]
    assert all(r.page == 0 and r.sharers == 0 for r in state.rows if r.zero)
    assert 0 not in {n.page for n in state.stable}
    lines = kp.pages_text(state).splitlines()
    assert not [line for line in lines if "#0 " in line]
    assert [line for line in lines if " zero  zero page" in line] == \
        [f"  {addr_text(r.address)}  {state.name(r.content):<6} zero  {r.label}"
         for r in state.rows if r.zero]
    view = kp.view_of(kp.page_diagram(state))
    for r in state.rows:
        if r.zero:
            assert view.cell_texts[(r.process, r.address)] == ("zero", kp.STATE_CODES[r.state])
    assert not [link for link in view.links if (link[1], link[2]) in zero]
    assert "the shared zero page" in "".join(t.get_text() for t in view.ax.texts)
    assert not problems(view.figure)
    return state


def test_zero_pages_ksmd_mapped_are_shown_as_the_zero_page() -> None:
    """use_zero_pages=1 on the modern kernel: ksmd maps the zero page for four zero-filled
    pages; fork() copies those ptes, and a write to one takes a new page (do_wp_page() ->
    wp_page_copy()). The statements are those of test_ksmd_live's
    test_zero_pages_fork_and_write, which compares the counters and ksm_stat after each with
    this machine's kernel."""
    lines = [*prelude(BIG, use_zero_pages=1), *mapped("p1", "A", [0, 0, 0, 0, 1, 1]),
             *scans(3), "p1: fork c"]
    r = run_sim("\n".join(lines) + "\n")
    a = r.labels["A"]
    state = check_zero_pages(r.k, r.procs)
    assert {(row.process, row.state) for row in state.rows if row.zero} == \
        {("p1", "KSM zero page"), ("c", "KSM zero page")}
    r.procs["c"].write_pages(a, [5])
    fault = r.procs["c"].last_trace.events[0].detail  # type: ignore[union-attr]
    assert fault is Fault.KSM_ZERO_COPY
    state = check_zero_pages(r.k, r.procs)
    row = next(x for x in state.rows if (x.process, x.address) == ("c", a))
    assert not row.zero and row.page not in (None, 0) and row.content == 5


def test_thp_split_zero_subpages_are_shown_as_the_zero_page() -> None:
    """ksmd's split of a huge page maps the zero page for its all-zero subpages (6.12): zero
    pages in no KSM counter, beside another process's zero page that ksmd mapped; a write to
    one takes a new page. The
    scenario is test_thp's ZERO_PAGES, which test_live_thp_and_ksmd_step_by_step runs on this
    machine's kernel too (counters and ksm_zero_pages compared after each statement)."""
    r = run_sim(ZERO_PAGES)
    state = check_zero_pages(r.k, r.procs)
    assert {(row.process, row.state) for row in state.rows if row.zero} == \
        {("p1", "zero page"), ("p2", "KSM zero page")}
    assert not problems(kp.page_diagram(kp.page_state(r.k)))
    # A write to one takes a new page; the others stay the zero page.
    a = next(row.address for row in state.rows if row.state == "zero page")
    r.procs["p1"].write_pages(a, [8])
    state = check_zero_pages(r.k, r.procs)
    row = next(x for x in state.rows if (x.process, x.address) == ("p1", a))
    assert not row.zero and row.page not in (None, 0) and row.content == 8


# -- figures ---------------------------------------------------------------------------------

def test_figure_links_are_the_trees() -> None:
    k, p1, p2, a1, a2 = example()
    k.ksmd.full_scans(2)
    state = kp.page_state(k, names=NAMES)
    view = kp.view_of(kp.page_diagram(state))
    stable = sorted((proc, addr) for kind, proc, addr, _ in view.links if kind == "stable")
    want = sorted((s[0], s[1]) for n in state.stable for s in n.sharers)
    assert stable == want
    assert [(proc, addr) for kind, proc, addr, _ in view.links if kind == "unstable"] == \
        [("p1", a1 + 3 * P)]
    assert set(view.cells) == {(r.process, r.address) for r in state.rows}


def test_links_run_round_every_box() -> None:
    """No link's line passes through a page (its own included, but for where it leaves its
    page's edge) or a tree node (but for where it ends on its node's top): each is routed
    through the gaps. Four processes, two trees, several dozen links."""
    k = kb.Kernel(profile="modern")
    for contents in ([1, 2, 5, 3], [1, 6, 2, 7, 8], [9, 3, 1, 10], [11, 2, 12, 3, 13]):
        offer(k, contents)
    k.sysfs["run"] = 1
    k.ksmd.full_scans(2)
    view = kp.view_of(kp.page_diagram(kp.page_state(k)))
    assert {kind for kind, *_ in view.links} == {"stable", "unstable"}
    assert len(view.routes) == len(view.links) >= 15
    half = 0.2 - 1e-6  # half a page cell (0.40 in), a hair inside
    boxes = [(x - half, y - half, x + half, y + half) for x, y in view.cells.values()]
    boxes += [(x0 + 1e-6, y0 + 1e-6, x1 - 1e-6, y1 - 1e-6) for x0, y0, x1, y1 in view.node_boxes]

    def crosses(a: tuple[float, float], b: tuple[float, float],
                box: tuple[float, float, float, float]) -> bool:
        (xa, ya), (xb, yb) = a, b
        x0, y0, x1, y1 = box
        assert xa == xb or ya == yb, "links are drawn as horizontal and vertical pieces"
        return max(xa, xb) > x0 and min(xa, xb) < x1 and max(ya, yb) > y0 and min(ya, yb) < y1

    for route in view.routes:
        for a, b in itertools.pairwise(route):
            hit = [box for box in boxes if crosses(a, b, box)]
            assert not hit, (route, a, b, hit)


def test_colours_are_okabe_ito_and_follow_content() -> None:
    k = kb.Kernel(profile="modern")
    _, a = offer(k, [1, 2, 1, 0, 3], "p")
    view = kp.view_of(kp.page_diagram(kp.page_state(k)))
    c = [view.cell_colors[("p", a + i * P)] for i in range(5)]
    assert c[0] == c[2] and len({c[0], c[1], c[4]}) == 3
    assert {c[0], c[1], c[4]} <= OKABE_ITO and set(kp.CONTENT_COLORS) == OKABE_ITO
    assert c[3] not in OKABE_ITO                      # zero pages are grey


def test_update_redraws_the_same_figure() -> None:
    k, *_ = example()
    view = kp.PageFigure()
    fig = view.update(kp.page_state(k))
    k.ksmd.full_scans(2)
    assert view.update(kp.page_state(k)) is fig
    assert any(kind == "stable" for kind, *_ in view.links)


def test_counters_plot_and_table() -> None:
    k, *_ = example()
    history = [k.ksmd.counters()] + [k.ksmd.full_scans(1) for _ in range(3)]
    fig = kp.counters_plot(history)
    assert [line.get_label() for line in fig.axes[0].lines] == \
        ["pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "pages_skipped"][:4]
    table = kp.counters_table(history).splitlines()
    assert table[0].split()[:5] == ["full_scans", "pages_shared", "pages_sharing",
                                    "pages_unshared", "pages_volatile"]
    assert table[2].split()[:5] == ["1", "0", "0", "0", "6"]
    assert table[3].split()[:5] == ["2", "2", "3", "1", "0"]


def test_probe_plot_marks_the_slow_writes() -> None:
    import random

    k = kb.Kernel(profile="modern")
    offer(k, [101], "victim")
    k.sysfs["run"] = 1
    result = probe(k.spawn("attacker"), [100, 101, 102], rng=random.Random(1))
    fig = kp.probe_plot(result)
    bars = fig.axes[0].patches
    assert len(bars) == 3
    assert [b.get_height() for b in bars] == [r.latency_us for r in result.rows]
    assert "probe area" in result.text() and re.search(r"[0-9a-f]{8}-[0-9a-f]{8}", result.text())


def test_png_formatter_for_ipython(capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython
    from IPython.core.interactiveshell import InteractiveShell

    k, *_ = example()
    fig = kp.page_diagram(k)
    assert kp.png_bytes(fig) == kp.png_bytes(fig)        # stable bytes
    assert kp.png_bytes(fig)[:8] == b"\x89PNG\r\n\x1a\n"
    with monkeypatch.context() as m:    # no IPython running (another test's shell may be)
        m.setattr(IPython, "get_ipython", lambda: None)
        assert not kp.use_png()
    shell = InteractiveShell.instance()
    try:
        assert kp.use_png()
        data, _ = shell.display_formatter.format(fig)
        assert "image/png" in data and data["text/plain"].startswith("<Figure size")
        kp.show_pages(k, names=NAMES)
        assert "p1 (pid 1)" in capsys.readouterr().out
    finally:
        InteractiveShell.clear_instance()


# -- the widget ------------------------------------------------------------------------------

def test_widget_steps_ksmd() -> None:
    w = KsmdStepper()
    assert w.kernel.sysfs["pages_to_scan"] == 2 and w.pages_to_scan.value == "2"
    w.batch_button.click()
    assert w.kernel.ksmd.counters()["pages_scanned"] == 2
    assert "2 pages scanned" in w.message
    w.scan_button.click()
    w.scan_button.click()
    assert w.kernel.ksmd.counters()["pages_sharing"] == 3
    assert [h["full_scans"] for h in w.history] == [0, 1, 2]
    assert "stable tree: 2 KSM pages" in w.pages_text
    assert "<svg" in w.diagram.value and "<svg" in w.counters_diagram.value
    assert "cmp_and_merge_page" in w.trace_box.value
    assert not w.errors


def test_widget_write_breaks_a_merge() -> None:
    w = KsmdStepper()
    w.scan_button.click()
    w.scan_button.click()
    w.process.value = "p2"
    addr = w.page.options[0][1]
    w.page.value = addr
    w.content.value = "Y"
    w.write_button.click()
    p2 = next(p for p in w.kernel.processes if p.name == "p2")
    assert p2.read_page(addr) == 2
    assert w.last_write is Fault.KSM_COPY
    assert "copy a KSM page" in w.message
    assert "stale" in w.pages_text                       # ksmd has not looked yet
    w.content.value = "Q"                                # a new name: a new content
    w.write_button.click()
    assert w.last_write is Fault.NONE and w.names[p2.read_page(addr)] == "Q"
    assert not w.errors


@pytest.mark.parametrize("typed", ["__import__('os').system('true')", "1+1", "X Y", "",
                                   str(2**64)])
def test_widget_never_evaluates_input(typed: str) -> None:
    w = KsmdStepper()
    before = w.pages_text
    w.content.value = typed
    w.write_button.click()
    assert w.message.startswith("Cannot use")
    assert w.pages_text == before and not w.errors


def test_widget_knobs_show_the_kernels_errno() -> None:
    w = KsmdStepper()
    w.scan_button.click()
    w.scan_button.click()
    w.max_page_sharing.value = "10"                       # KSM pages exist: EBUSY
    assert "EBUSY" in w.message
    assert w.max_page_sharing.value == "256" and 256 == w.kernel.sysfs["max_page_sharing"]
    w.run.value = 0
    w.scan_button.click()
    assert "does not scan" in w.message
    w.run.value = 2
    assert w.kernel.ksmd.counters()["pages_sharing"] == 0
    assert w.history[-1]["full_scans"] == 0
    w.reset_button.click()
    assert w.kernel.sysfs["run"] == 1 and w.run.value == 1
    assert w.kernel.ksmd.counters()["full_scans"] == 0
    assert not w.errors


def test_widget_on_2632_hides_the_modern_knobs() -> None:
    w = KsmdStepper(lambda: demo_kernel("2.6.32"))
    assert w.smart_scan.layout.display == "none" and w.max_page_sharing.layout.display == "none"
    w.scan_button.click()
    w.scan_button.click()
    assert w.kernel.ksmd.counters()["pages_sharing"] == 3
    assert not w.errors
