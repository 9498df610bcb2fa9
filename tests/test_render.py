"""ksmbook.render: snapshots, the text twins and the diagrams' drawn data (never pixels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from matplotlib.colors import to_hex

import ksmbook as kb
import ksmbook.render as kr
from ksmbook.procfs import read_maps

P = kb.PAGE_SIZE
RW = kb.PROT_READ | kb.PROT_WRITE
ANON = kb.MAP_PRIVATE | kb.MAP_ANONYMOUS


def one_region(profile: str = "seed", pages: int = 16) -> tuple[kb.Kernel, kb.Process, int]:
    k = kb.Kernel(profile)
    p = k.spawn()
    return k, p, p.mmap(pages * P, RW, ANON)


def every_kind(profile: str) -> kb.Process:
    """A process with one VMA of each kind the diagrams tell apart."""
    k = kb.Kernel(profile, nr_hugepages=2)
    p = k.spawn()
    f = k.create_file("data.bin", 8 * P)
    dev = k.create_device("fb0", "remap_pfn_range")
    p.mmap(4 * P, RW, ANON)
    p.mmap(4 * P, RW, kb.MAP_SHARED | kb.MAP_ANONYMOUS)
    p.mmap(4 * P, kb.PROT_READ, kb.MAP_PRIVATE, file=f)
    p.mmap(4 * P, RW, kb.MAP_SHARED, file=f)
    p.mmap(4 * P, RW, kb.MAP_SHARED, file=dev)
    p.mmap(kb.HPAGE_SIZE, RW, ANON | kb.MAP_HUGETLB)
    return p


# -- snapshots and the maps table ---------------------------------------------------------

@pytest.mark.parametrize("profile", kb.PROFILES)
def test_maps_text_is_the_process_maps(profile: str) -> None:
    p = every_kind(profile)
    snap = kr.snapshot(p)
    assert kr.maps_text(snap) == p.maps()
    assert {r.kind for r in snap.vmas} == set(kr.KINDS)
    assert [r.kind for r in snap.vmas] == [v.kind for v in p.vmas]


@pytest.mark.parametrize("profile", kb.PROFILES)
def test_kind_from_maps_lines_agrees_with_the_simulator(profile: str) -> None:
    p = every_kind(profile)
    live_like = kr.from_entries(read_maps(p.mm), "p1")
    assert [r.kind for r in live_like.vmas] == [v.kind for v in p.vmas]
    assert live_like.mm_flags is None and live_like.mergeable is None
    assert kr.maps_text(live_like) == p.maps()


def test_snapshot_is_frozen() -> None:
    _, p, a = one_region()
    snap = kr.snapshot(p)
    text = kr.maps_text(snap)
    p.madvise(a + 4 * P, 8 * P, kb.MADV_MERGEABLE)
    assert kr.maps_text(snap) == text and len(snap) == 1
    assert snap.mergeable is False and kr.snapshot(p).mergeable is True


def test_snapshot_cache_gives_the_same_snapshot() -> None:
    _, p, a = one_region()
    cache: dict = {}
    first = kr.snapshot(p, cache)
    p.madvise(a + 4 * P, 8 * P, kb.MADV_MERGEABLE)
    assert kr.snapshot(p, cache) == kr.snapshot(p)
    assert kr.snapshot(p, cache).vmas[0] is kr.snapshot(p, cache).vmas[0]
    assert first.vmas[0] not in kr.snapshot(p, cache).vmas
    # Nothing changed: the very same snapshot, whose maps text is formatted once.
    again = kr.snapshot(p, cache)
    assert again is kr.snapshot(p, cache) and again is not first
    assert again.maps_text is kr.snapshot(p, cache).maps_text


def test_exited_process_has_no_vmas() -> None:
    k, p, _ = one_region()
    c = p.fork()
    c.exit()
    snap = kr.snapshot(c)
    assert not snap.alive and snap.vmas == ()
    assert kr.maps_text(snap) == "(no mappings)"
    assert [s.name for s in kr.snapshots(k)] == ["p1"]


# -- the changes of one call ----------------------------------------------------------------

def test_mergeable_in_the_middle_splits_and_flags() -> None:
    _, p, a = one_region()
    before = kr.snapshot(p)
    p.madvise(a + 4 * P, 8 * P, kb.MADV_MERGEABLE)
    ch = kr.changes(before, kr.snapshot(p), p.last_trace)
    assert (ch.before, ch.after) == (1, 3)
    assert [(c.start, c.end) for c in ch.of("split")] == [(a, a + 16 * P)]
    assert ch.of("split")[0].detail == f"at {a + 4 * P:08x}, {a + 12 * P:08x}"
    assert [(c.start, c.end, c.detail) for c in ch.of("flags")] == [(a + 4 * P, a + 12 * P, "+mg")]
    assert ch.of("merged") == [] and ch.mm_flags == "+MMF_VM_MERGEABLE"
    text = kr.changes_text(before, kr.snapshot(p), p.last_trace)
    assert text.splitlines() == [
        f"madvise({a + 4 * P:#x}, {8 * P}, MADV_MERGEABLE) = 0",
        "VMAs: 1 -> 3",
        f"split    {a:08x}-{a + 16 * P:08x} at {a + 4 * P:08x}, {a + 12 * P:08x}",
        f"flags    {a + 4 * P:08x}-{a + 12 * P:08x} +mg",
        "mm       +MMF_VM_MERGEABLE",
    ]


def test_unmergeable_merges_back() -> None:
    _, p, a = one_region()
    p.madvise(a + 4 * P, 8 * P, kb.MADV_MERGEABLE)
    before = kr.snapshot(p)
    p.madvise(a + 4 * P, 8 * P, kb.MADV_UNMERGEABLE)
    ch = kr.changes(before, kr.snapshot(p), p.last_trace)
    assert [(c.start, c.end, c.detail) for c in ch.of("merged")] == [(a, a + 16 * P, "from 3 VMAs")]
    assert [c.detail for c in ch.of("flags")] == ["-mg"] and ch.of("split") == []


def test_boundary_moved_by_a_merge_with_next() -> None:
    """docs/kernel-semantics.md §3: V=[0x10000,0x14000) next to mergeable W; advising V's top half
    moves the boundary (vma_merge() 'merged with next'); the count stays 2."""
    k = kb.Kernel("seed")
    p = k.spawn()
    p.mmap(4 * P, RW, ANON | kb.MAP_FIXED, addr=0x10000)
    p.mmap(4 * P, RW, ANON | kb.MAP_FIXED, addr=0x14000)
    p.madvise(0x14000, 4 * P, kb.MADV_MERGEABLE)
    before = kr.snapshot(p)
    p.madvise(0x12000, 2 * P, kb.MADV_MERGEABLE)
    ch = kr.changes(before, kr.snapshot(p), p.last_trace)
    assert (ch.before, ch.after) == (2, 2)
    # No split_vma() ran: the twin says the boundary moved, not that V was split.
    assert ch.of("split") == [] and "split_vma" not in str(p.last_trace)
    assert [(c.start, c.detail) for c in ch.of("moved")] == [
        (0x10000, "boundary to 00012000 (vma_merge(), no split_vma())")]
    assert [(c.start, c.end) for c in ch.of("merged")] == [(0x12000, 0x18000)]
    # Without the trace the snapshots alone cannot tell: the cut reads as a split.
    assert [c.start for c in kr.changes(before, kr.snapshot(p)).of("split")] == [0x10000]
    assert [(c.start, c.end, c.detail) for c in ch.of("flags")] == [(0x12000, 0x14000, "+mg")]


def test_munmap_in_the_middle_and_a_merging_mmap() -> None:
    _, p, a = one_region()
    before = kr.snapshot(p)
    p.munmap(a + 4 * P, 2 * P)
    ch = kr.changes(before, kr.snapshot(p), p.last_trace)
    assert ch.of("split")[0].detail == f"at {a + 4 * P:08x}, {a + 6 * P:08x}"
    assert [(c.start, c.end) for c in ch.of("unmapped")] == [(a + 4 * P, a + 6 * P)]
    before = kr.snapshot(p)
    b = p.mmap(4 * P, RW, ANON)  # lands just below, merges with the lowest VMA
    ch = kr.changes(before, kr.snapshot(p), p.last_trace)
    assert b + 4 * P == a
    assert [(c.start, c.end) for c in ch.of("mapped")] == [(b, a)]
    assert ch.of("merged")[0].detail == "from 1 VMA and the new mapping"


def test_failed_call_changes_nothing_and_says_why() -> None:
    k = kb.Kernel("seed", config_ksm=False)
    p = k.spawn()
    a = p.mmap(16 * P, RW, ANON)
    before = kr.snapshot(p)
    with pytest.raises(OSError):
        p.madvise(a + 4 * P, 8 * P, kb.MADV_MERGEABLE)
    ch = kr.changes(before, kr.snapshot(p), p.last_trace)
    assert ch.empty
    assert kr.changes_text(before, kr.snapshot(p), p.last_trace).splitlines() == [
        f"madvise({a + 4 * P:#x}, {8 * P}, MADV_MERGEABLE) = -1 EINVAL (Invalid argument)",
        "VMAs: 1 -> 1",
        "no change to the address space",
    ]


def test_mapping_over_a_mapping_is_replaced() -> None:
    k, p, a = one_region()
    f = k.create_file("f", 4 * P)
    before = kr.snapshot(p)
    p.mmap(4 * P, kb.PROT_READ, kb.MAP_PRIVATE | kb.MAP_FIXED, addr=a + 4 * P, file=f)
    ch = kr.changes(before, kr.snapshot(p), p.last_trace)
    assert [(c.start, c.end, c.detail) for c in ch.of("replaced")] == [
        (a + 4 * P, a + 8 * P, "/tmp/f")]


def test_changes_text_is_deterministic() -> None:
    def once() -> str:
        _, p, a = one_region()
        before = kr.snapshot(p)
        p.madvise(a + 4 * P, 8 * P, kb.MADV_MERGEABLE)
        return kr.changes_text(before, kr.snapshot(p), p.last_trace)
    assert once() == once()


def test_size_text() -> None:
    assert [kr.size_text(n) for n in (P, 255 * P, 256 * P, 3 << 19, 100, 1 << 40)] == [
        "1p", "255p", "1 MiB", "1.5 MiB", "100 B", "1 TiB"]


# -- the layout -------------------------------------------------------------------------------

def test_layout_shortens_long_holes_and_keeps_small_vmas_visible() -> None:
    lay = kr.Layout([(0x10000, 0x11000), (0x11000, 0x211000), (0x7F0000000000, 0x7F0000002000)])
    xs = [lay.x(a) for a in lay.bounds]
    assert xs == sorted(xs) and xs[0] == 0 and xs[-1] == lay.total
    (gap,) = lay.gaps
    assert gap.shortened and lay.shortened == [gap]
    assert gap.x1 - gap.x0 < 0.1 * lay.total
    # 1 page next to 512 pages: widths grow as the square root of the size.
    assert lay.compressed
    assert lay.x(0x211000) - lay.x(0x11000) == pytest.approx(
        (lay.x(0x11000) - lay.x(0x10000)) * 512 ** 0.5)
    assert lay.x(0x12000) == pytest.approx((lay.x(0x11000) * 511 + lay.x(0x211000)) / 512)


def test_layout_is_linear_for_similar_sizes() -> None:
    lay = kr.Layout([(0, 4 * P), (4 * P, 12 * P), (12 * P, 16 * P)])
    assert not lay.compressed and not lay.widened and lay.gaps == []
    assert [lay.x(a) for a in lay.bounds] == [0, 4, 12, 16]


def test_layout_draws_a_one_page_hole() -> None:
    lay = kr.Layout([(0, 1024 * P), (1025 * P, 2048 * P)])
    (gap,) = lay.gaps
    assert not gap.shortened and gap.size == P
    assert gap.x1 - gap.x0 >= 0.01 * lay.total


# -- the diagrams' data ---------------------------------------------------------------------

def test_address_space_draws_one_bar_per_vma_coloured_by_kind() -> None:
    p = every_kind("modern")
    view = kr.view_of(kr.address_space(p))
    (bars,) = view.row_bars
    snap = kr.snapshot(p)
    assert len(bars.get_paths()) == len(snap)
    assert [to_hex(c) for c in bars.get_facecolors()] == [
        kr.KIND_COLORS[r.kind].lower() for r in snap.vmas]
    legend = [t.get_text() for t in view.ax.get_legend().get_texts()]
    assert legend == [kr.KIND_LABELS[k] for k in kr.KINDS]
    # The "special" lane marks the driver's VMA (VM_IO | VM_PFNMAP ...), the hugetlb one
    # (VM_DONTEXPAND in 6.x) too; no VMA is mergeable yet, so that lane is empty.
    texts = [t.get_text() for t in view.ax.texts]
    assert "mergeable  mg" in texts and "special  special" in texts
    assert len(view.lane_marks.get_paths()) == 2
    assert f"{snap.vmas[0].start:08x}" in " ".join(texts) or any(
        t.endswith(f"{snap.vmas[0].start:08x}"[-5:]) for t in texts)


def test_mergeable_lane_marks_exactly_the_mg_vmas() -> None:
    _, p, a = one_region()
    p.madvise(a + 4 * P, 8 * P, kb.MADV_MERGEABLE)
    view = kr.view_of(kr.address_space(p))
    (mark,) = view.lane_marks.get_paths()
    xs = mark.vertices[:, 0]
    assert (xs.min(), xs.max()) == (view.layout.x(a + 4 * P), view.layout.x(a + 12 * P))
    assert any("MMF_VM_MERGEABLE set" in t.get_text() for t in view.ax.texts)


def test_before_after_annotates_splits_flags_and_outcome() -> None:
    _, p, a = one_region()
    before = kr.snapshot(p)
    p.madvise(a + 4 * P, 8 * P, kb.MADV_MERGEABLE)
    view = kr.view_of(kr.before_after(before, kr.snapshot(p), p.last_trace))
    assert [len(b.get_paths()) for b in view.row_bars] == [1, 3]
    assert view.annotations == [("split", a + 4 * P), ("split", a + 12 * P),
                                ("flags +mg", a + 4 * P)]
    texts = [t.get_text() for t in view.ax.texts]
    assert "= 0" in texts and texts.count("split") == 2 and "+mg" in texts
    assert any("MMF_VM_MERGEABLE set (was clear)" in t for t in texts)
    trace_text = "\n".join(t.get_text() for t in view.trace_ax.texts)
    assert "split_vma" in trace_text and "__ksm_enter" in trace_text


def test_before_after_shows_the_errno() -> None:
    k = kb.Kernel("seed", config_ksm=False)
    p = k.spawn()
    a = p.mmap(16 * P, RW, ANON)
    before = kr.snapshot(p)
    with pytest.raises(OSError):
        p.madvise(a, P, kb.MADV_MERGEABLE)
    view = kr.view_of(kr.before_after(before, kr.snapshot(p), p.last_trace))
    texts = [t.get_text() for t in view.ax.texts]
    assert "= -1 EINVAL  (Invalid argument)" in texts
    assert "no change to the address space" in texts and view.annotations == []


def test_processes_after_fork_show_the_mm_flag_of_each() -> None:
    k, p, a = one_region("2.6.32")
    p.madvise(a, 4 * P, kb.MADV_MERGEABLE)
    p.madvise(a + 8 * P, 4 * P, kb.MADV_DONTFORK)
    p.fork("child")
    k.spawn("other").mmap(P, RW, ANON)
    view = kr.view_of(kr.processes(k))
    assert [len(b.get_paths()) for b in view.row_bars] == [4, 3, 1]
    texts = [t.get_text() for t in view.ax.texts]
    assert texts.count("MMF_VM_MERGEABLE set") == 2 and texts.count("MMF_VM_MERGEABLE clear") == 1
    assert "dontcopy  dc" in texts
    assert [r.name for r in view.rows] == ["p1", "child", "other"]


def test_thousands_of_vmas_use_a_few_artists_and_say_what_is_aggregated() -> None:
    k = kb.Kernel("seed")
    p = k.spawn()
    a = p.mmap(3000 * P, RW, ANON)
    for i in range(0, 3000, 2):
        p.mprotect(a + i * P, P, kb.PROT_READ)
    p.madvise(a + 100 * P, 50 * P, kb.MADV_MERGEABLE)
    assert len(p.vmas) >= 2000
    view = kr.view_of(kr.address_space(p))
    assert len(view.row_bars[0].get_paths()) == len(p.vmas)
    assert len(view.ax.get_children()) < 40 and len(view.ax.texts) < 15
    assert any("per-VMA labels left out" in n for n in view.notes)
    # Touching VMAs alternate colour and tint, so the boundaries show without edges.
    colors = {to_hex(c) for c in view.row_bars[0].get_facecolors()}
    assert len(colors) == 2


@pytest.mark.parametrize("split", [False, True])
def test_an_updated_figure_draws_what_a_new_one_draws(split: bool) -> None:
    """Updates reuse the figure's labels, legend and bars; what they draw is what a figure
    made for the same change draws, after changes that add and drop lanes and labels."""
    _, p, a = one_region("modern", 900 if split else 64)
    if split:  # 900 VMAs: a dense row, drawn as a bitmap
        for i in range(1, 900, 2):
            p.mprotect(a + i * P, P, kb.PROT_READ)
    cache: dict = {}
    view = kr.SpaceFigure(trace_panel=True)
    view.show_rows([kr.snapshot(p, cache)], title="start")
    for advice, first, n in ((kb.MADV_MERGEABLE, 4, 8), (kb.MADV_DONTFORK, 20, 4),
                             (kb.MADV_MERGEABLE, 4, 8), (kb.MADV_UNMERGEABLE, 0, 16)):
        before = kr.snapshot(p, cache)
        p.madvise(a + first * P, n * P, advice)
        after = kr.snapshot(p, cache)
        view.show_change(before, after, p.last_trace)
        fresh = kr.view_of(kr.SpaceFigure(trace_panel=True).show_change(before, after,
                                                                          p.last_trace))
        assert [t.get_text() for t in view.ax.texts] == [t.get_text() for t in fresh.ax.texts]
        assert kr.to_svg(view.figure) == kr.to_svg(fresh.figure)


def test_empty_and_exited_rows() -> None:
    k = kb.Kernel("seed")
    p = k.spawn()
    view = kr.view_of(kr.address_space(p))
    assert "(no mappings)" in [t.get_text() for t in view.ax.texts]


def test_svg_is_stable_and_keeps_text() -> None:
    _, p, a = one_region()
    before = kr.snapshot(p)
    p.madvise(a + 4 * P, 8 * P, kb.MADV_MERGEABLE)
    after = kr.snapshot(p)
    fig = kr.before_after(before, after, p.last_trace)
    svg = kr.to_svg(fig)
    assert svg.startswith("<svg") and 'id="ksm-row-1"' in svg and ">split<" in svg
    assert "dc:date" not in svg and 'width="100%"' in svg
    assert kr.to_svg(kr.before_after(before, after, p.last_trace)) == svg


def test_a_figure_updates_in_place() -> None:
    """The explorer's habit: one figure, its collections' data replaced on every update."""
    _, p, a = one_region()
    view = kr.SpaceFigure(trace_panel=True)
    before = kr.snapshot(p)
    view.show_change(before, before)
    bars = list(view.row_bars)
    p.madvise(a + 4 * P, 8 * P, kb.MADV_MERGEABLE)
    fig = view.show_change(before, kr.snapshot(p), p.last_trace)
    assert fig is view.figure and view.row_bars == bars
    assert len(bars[1].get_paths()) == 3


# -- legibility: every figure the book draws, measured --------------------------------------

def _book_figures(notebook: Path) -> list[Any]:
    """Run a notebook's code cells (not those tagged nbval-ignore-output or nbval-skip: the
    widget and live-kernel cells) in an IPython shell and collect every figure it shows."""
    import json

    from IPython.core.interactiveshell import InteractiveShell
    from matplotlib.figure import Figure

    import ksmbook.render.ksm_pages as kpm

    figs: list[Any] = []

    def grab(fig: Any, *args: Any, **kw: Any) -> bytes:
        figs.append(fig)
        return b""

    shell = InteractiveShell.instance()
    shell.reset()
    saved = kpm.png_bytes
    kpm.png_bytes = grab  # type: ignore[assignment]
    try:
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            tags = set(cell.get("metadata", {}).get("tags", []))
            if cell["cell_type"] != "code" or tags & {"nbval-ignore-output", "nbval-skip"}:
                continue
            shell.display_formatter.formatters["image/png"].for_type(Figure, grab)
            result = shell.run_cell("".join(cell["source"]), silent=True)
            assert result.success, f"{notebook.name}: {result.error_in_exec!r}"
    finally:
        kpm.png_bytes = saved  # type: ignore[assignment]
    return figs


BOOK = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]-*.ipynb"))


@pytest.mark.slow  # runs every chapter's code cells
@pytest.mark.parametrize("notebook", BOOK, ids=[p.name[:2] for p in BOOK])
def test_every_figure_of_the_book_is_legible(notebook: Path) -> None:
    """No text under 10 px on screen (PNG at 100 dpi, shown at its size in JupyterLab and in
    the HTML book), none outside its figure, none over another text, no guide line across a
    label. Every address-space diagram also fits the HTML book's text column (wider page
    diagrams scroll there)."""
    from figure_check import COLUMN_PX, PNG_DPI, problems

    found = []
    for i, fig in enumerate(_book_figures(notebook)):
        found += [f"figure {i}: {p}" for p in problems(fig)]
        if isinstance(getattr(fig, "_ksmbook_view", None), kr.SpaceFigure):
            assert fig.get_figwidth() * PNG_DPI <= COLUMN_PX
    assert not found, "\n".join(found)


def test_legibility_of_dense_and_forked_layouts() -> None:
    """The layouts the chapters do not draw: many small VMAs, a fork child with holes, a
    change beside the trace panel."""
    from figure_check import problems

    k = kb.Kernel(profile="modern")
    p = k.spawn()
    a = p.mmap(40 * kb.PAGE_SIZE, kb.PROT_READ | kb.PROT_WRITE,
               kb.MAP_PRIVATE | kb.MAP_ANONYMOUS)
    for i in range(0, 40, 4):
        p.madvise(a + i * kb.PAGE_SIZE, kb.PAGE_SIZE, kb.MADV_MERGEABLE)
    p.madvise(a + 8 * kb.PAGE_SIZE, 8 * kb.PAGE_SIZE, kb.MADV_DONTFORK)
    p.fork("child")
    before = kr.snapshot(p)
    p.mprotect(a + 20 * kb.PAGE_SIZE, kb.PAGE_SIZE, kb.PROT_READ)
    figs = [kr.processes(k),
            kr.before_after(before, kr.snapshot(p), p.last_trace, trace_panel=False),
            kr.before_after(before, kr.snapshot(p), p.last_trace)]
    found = [f"figure {i}: {x}" for i, f in enumerate(figs) for x in problems(f)]
    assert not found, "\n".join(found)


def test_a_fork_child_shows_its_dontfork_hole() -> None:
    k = kb.Kernel(profile="seed")
    p = k.spawn("parent")
    a = p.mmap(8 * kb.PAGE_SIZE, kb.PROT_READ | kb.PROT_WRITE, kb.MAP_PRIVATE | kb.MAP_ANONYMOUS)
    p.madvise(a + 4 * kb.PAGE_SIZE, 4 * kb.PAGE_SIZE, kb.MADV_DONTFORK)
    p.fork("child")
    fig = kr.processes(k)
    from figure_check import texts

    assert [t.get_text() for t in texts(fig)].count("no VMA here") == 1


def _advised(k: kb.Kernel, name: str, contents: list[int]) -> kb.Process:
    p = k.spawn(name)
    a = p.mmap(len(contents) * P, RW, ANON)
    p.write_pages(a, contents)
    p.madvise(a, len(contents) * P, kb.MADV_MERGEABLE)
    return p


def _box_order(fig: Any) -> list[str]:
    """The processes of the slot boxes, top to bottom."""
    view = fig._ksmbook_view
    return [name for name, box in sorted(view.slot_boxes, key=lambda nb: nb[1][1])]


@pytest.mark.parametrize("profile", ["2.6.32", "modern"])
def test_slot_list_shows_ksmd_order_and_cursor_after_a_partial_scan(profile: str) -> None:
    """After a batch that stops inside an mm, the figure and its twin show the slots in
    ksmd's order, the cursor's slot and address, and which rmap_items it has passed; an mm
    registered then goes just before the cursor."""
    from figure_check import problems

    k = kb.Kernel(profile=profile)
    procs = {p.pid: p for p in (_advised(k, "p1", [1, 1, 2]), _advised(k, "p2", [1, 3, 4, 5]))}
    k.sysfs["run"] = 1
    k.sysfs["pages_to_scan"] = 5
    k.ksmd.batch()
    _advised(k, "p3", [6])
    pid, address = k.ksmd.cursor()
    assert pid is not None
    order = [procs[s.pid].name if s.pid in procs else "p3" for s in k.ksmd.mm_slots()]
    under = next(i for i, s in enumerate(k.ksmd.mm_slots()) if s.under_cursor)
    passed = [i.address < address for i in k.ksmd.rmap_items(procs[pid])]

    state = kr.slot_list(k)
    fig = kr.slot_list_diagram(state)
    view = fig._ksmbook_view
    assert _box_order(fig) == order and order[under - 1] == "p3"
    assert state.cursor == under and state.passed(under) == sum(passed)
    # The cursor bar stands right of the last square passed and left of the next one.
    xs = [view.items[(procs[pid].name, i.address)][0] for i in k.ksmd.rmap_items(procs[pid])]
    bar = view.cursor_at[0]
    assert all((x < bar) == before for x, before in zip(xs, passed, strict=True))
    assert view.slot_boxes[under][1][1] < view.cursor_at[1] < view.slot_boxes[under][1][3]
    assert not problems(fig)

    text = kr.slot_list_text(state).splitlines()
    slot_lines = [line for line in text if line.startswith("  ") and ". mm_slot of " in line]
    assert [line.split("mm_slot of ")[1].split(" ")[0] for line in slot_lines] == order
    cursor_line = slot_lines[under]
    assert text[text.index(cursor_line) + 1] == f"     cursor: next address {kr.addr_text(address)}"
    assert [line for line in text if "cursor: " in line] == [text[text.index(cursor_line) + 1]]
    codes = cursor_line.split(": ", 1)[1].split("  ")[1].split()
    assert codes.index("|") == sum(passed)


def test_slot_list_between_passes_and_its_item_states() -> None:
    """At the list head the cursor frames the head; every rmap_item is drawn in the tree
    ksmd holds it in, and the pass-end line counts on from full_scans."""
    from figure_check import problems

    k = kb.Kernel(profile="modern")
    _advised(k, "p1", [1, 1, 2, 3])
    _advised(k, "p2", [1, 2] + list(range(10, 10 + kr.mm_slots.MAX_ITEMS)))
    k.sysfs["run"] = 1
    counters = k.ksmd.full_scans(2)
    assert k.ksmd.cursor() == (None, 0)
    state = kr.slot_list(k)
    fig = kr.slot_list_diagram(state)
    view = fig._ksmbook_view
    assert view.cursor_at is None and state.cursor is None
    assert not problems(fig)
    for item in k.ksmd.rmap_items():
        row = next(r for r in state.slots if r.pid == item.pid)
        assert (item.address, item.state) in row.items
        if (row.process, item.address) in view.items:
            assert row.items.index((item.address, item.state)) < kr.mm_slots.MAX_ITEMS
    text = kr.slot_list_text(state)
    assert text.splitlines()[1] == "  list head  <- cursor: at the list head (between passes)"
    full = counters["full_scans"]
    assert f"the pass ends (full_scans {full} -> {full + 1})" in text
    hidden = len(state.slots[1].items) - kr.mm_slots.MAX_ITEMS
    assert hidden > 0 and text.splitlines()[3].endswith(f"+{hidden}")
    drawn = {s: sum(1 for (proc, _), _xy in view.items.items() if proc == s)
             for s in ("p1", "p2")}
    assert drawn == {"p1": 4, "p2": kr.mm_slots.MAX_ITEMS}


def test_slot_list_of_an_exiting_mm_and_of_an_empty_list() -> None:
    from figure_check import problems

    k = kb.Kernel(profile="modern")
    assert "no mm registered" in kr.slot_list_text(kr.slot_list(k))
    p1 = _advised(k, "p1", [1, 2])
    _advised(k, "p2", [1])
    k.sysfs["run"] = 1
    k.ksmd.full_scans(1)
    p1.exit()
    exiting = [s.exiting for s in k.ksmd.mm_slots()]
    state = kr.slot_list(k)
    assert [r.exiting for r in state.slots] == exiting and any(exiting)
    assert "mm exiting" in kr.slot_list_text(state)
    assert not problems(kr.slot_list_diagram(state))
    assert not problems(kr.slot_list_diagram(kb.Kernel(profile="modern")))
