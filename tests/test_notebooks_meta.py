"""Structure of the chapter notebooks (notebooks/NN-*.ipynb), checked without running them.

nbval re-runs each notebook and compares its outputs; these tests check what nbval cannot: that
every chapter has the parts a chapter needs (a title, learning goals, exercises, a summary,
references to the kernel sources), that the committed notebooks are executed and clean, that
every diagram prints its text twin (nbval never compares images), and that the outputs nbval
cannot compare (widget views, the live kernel) are tagged so that it does not try.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from scripts.strip_notebooks import EMPTY_WIDGET_STATE

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CHAPTERS = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
#: The chapters and the playground notebooks.
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))
#: The chapters this book must have; later ones are checked too when they exist.
REQUIRED = range(7)

IGNORE_TAGS = {"nbval-ignore-output", "nbval-skip"}
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: Calls of ksmbook.render that draw a figure.
DIAGRAM_CALL = re.compile(r"\bkr\.(show|show_change|address_space|before_after|processes)\(")
#: A text twin: a maps-style range (as /proc/PID/maps prints it), a changes_text summary or
#: the mm_slot list (render.slot_list_text).
TWIN = re.compile(r"\b[0-9a-f]{8,}-[0-9a-f]{8,}\b|^VMAs: |^ksmd's mm_slot list, ", re.M)
#: A kernel source file, as the chapters cite them: mm/madvise.c, include/linux/ksm.h, ...
KERNEL_FILE = re.compile(r"\b(?:mm|kernel|include|fs|arch)/[\w/.-]+\.[ch]\b")


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def tags(cell: dict[str, Any]) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def markdown(nb: dict[str, Any]) -> str:
    return "\n\n".join(source(c) for c in nb["cells"] if c["cell_type"] == "markdown")


def headings(cell: dict[str, Any]) -> list[str]:
    """The heading lines of a markdown cell (not lines of its fenced code blocks)."""
    out, fenced = [], False
    for line in source(cell).splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#+ ", line):
            out.append(line)
    return out if cell["cell_type"] == "markdown" else []


def section(nb: dict[str, Any], heading: str) -> list[dict[str, Any]]:
    """The cells from the markdown heading `heading` to the next heading of the same or a
    higher level."""
    level = len(heading.split(" ", 1)[0])
    cells = nb["cells"]
    for i, c in enumerate(cells):
        if heading in headings(c):
            out = [c]
            for d in cells[i + 1:]:
                if any(len(h.split(" ", 1)[0]) <= level for h in headings(d)):
                    break
                out.append(d)
            return out
    return []


def bullets(cells: list[dict[str, Any]]) -> int:
    return sum(1 for c in cells if c["cell_type"] == "markdown"
               for line in source(c).splitlines() if re.match(r"- \S", line))


def stdout(cell: dict[str, Any]) -> str:
    return "".join(
        "".join(o["text"]) if isinstance(o["text"], list) else o["text"]
        for o in cell.get("outputs", []) if o["output_type"] == "stream")


def has_figure(cell: dict[str, Any]) -> bool:
    for o in cell.get("outputs", []):
        data = o.get("data", {})
        if any(k.startswith("image/") for k in data):
            return True
        plain = data.get("text/plain", "")
        if "".join(plain).startswith("<Figure"):
            return True
    return False


def number(path: Path) -> int:
    return int(path.name[:2])


chapter = pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])


def test_required_chapters_exist() -> None:
    assert {number(p) for p in CHAPTERS} >= set(REQUIRED)


@chapter
def test_title(path: Path) -> None:
    first = load(path)["cells"][0]
    assert first["cell_type"] == "markdown"
    title = source(first).splitlines()[0]
    assert re.fullmatch(rf"# Chapter {number(path)}: \S.*", title), title


@chapter
def test_learning_goals(path: Path) -> None:
    goals = section(load(path), "## What you will learn")
    assert goals, "no '## What you will learn' section"
    assert bullets(goals) >= 2


@chapter
def test_summary(path: Path) -> None:
    summary = section(load(path), "## Summary")
    assert summary, "no '## Summary' section"
    assert bullets(summary) >= 2


@chapter
def test_exercises(path: Path) -> None:
    cells = section(load(path), "## Exercises")
    assert cells, "no '## Exercises' section"
    checks = [c for c in cells if c["cell_type"] == "code" and ".check(" in source(c)]
    assert checks, "the exercises section has no cell that checks an answer"


@chapter
def test_cites_kernel_sources(path: Path) -> None:
    assert KERNEL_FILE.search(markdown(load(path))), "no kernel source file is cited"


@chapter
def test_executed_and_clean(path: Path) -> None:
    nb = load(path)
    assert nb["metadata"].get("widgets") == EMPTY_WIDGET_STATE, \
        "widget state committed: run scripts/strip_notebooks.py"
    for c in nb["cells"]:
        if c["cell_type"] != "code":
            continue
        assert "execution" not in c.get("metadata", {}), f"timing metadata in {c.get('id')}"
        if "nbval-skip" in tags(c):
            continue
        assert c.get("execution_count") is not None, f"cell {c.get('id')} was not executed"
        errors = [o for o in c.get("outputs", []) if o["output_type"] == "error"]
        assert not errors, f"cell {c.get('id')} raised {errors[0].get('ename')}"


@chapter
def test_diagrams_print_text_twins(path: Path) -> None:
    for c in load(path)["cells"]:
        if c["cell_type"] != "code" or tags(c) & IGNORE_TAGS:
            continue
        if DIAGRAM_CALL.search(source(c)) or has_figure(c):
            assert c.get("outputs"), f"diagram cell {c.get('id')} has no stored output"
            assert TWIN.search(stdout(c)), f"diagram cell {c.get('id')} prints no text twin"


#: Cells that display one of the book's widgets.
WIDGET_CALL = re.compile(r"\b(Explorer|KsmdStepper)\(")
#: A widget's repr, as a front end without the widget's model would print it.
WIDGET_REPR = re.compile(r"^\w*(Box|Tab|Button|HTML|Dropdown|Text|Checkbox)\(", re.M)
SNAPSHOT = '<div class="ksmbook-snapshot">'


@chapter
def test_widget_cells_are_not_compared(path: Path) -> None:
    for c in load(path)["cells"]:
        if c["cell_type"] != "code":
            continue
        shows_widget = any(SNAPSHOT in "".join(o.get("data", {}).get("text/html", ""))
                           for o in c.get("outputs", []))
        if shows_widget or WIDGET_CALL.search(source(c)):
            assert tags(c) & IGNORE_TAGS, f"widget cell {c.get('id')} is not nbval-ignore-output"


@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_stored_widgets_are_pictures(path: Path) -> None:
    """Opened as stored, a widget cell shows a picture of the widget and says that running
    the cell makes it live: no widget view (its model is not stored), never its repr."""
    for c in load(path)["cells"]:
        if c["cell_type"] != "code":
            continue
        outputs = [o.get("data", {}) for o in c.get("outputs", [])]
        for data in outputs:
            assert WIDGET_MIME not in data, f"widget view stored in {c.get('id')}: make strip"
            plain = "".join(data.get("text/plain", ""))
            assert not WIDGET_REPR.search(plain), f"widget repr stored in {c.get('id')}"
        if WIDGET_CALL.search(source(c)) and "nbval-skip" not in tags(c):
            pictures = ["".join(d.get("text/html", "")) for d in outputs]
            pictures = [h for h in pictures if SNAPSHOT in h]
            assert len(pictures) == 1, f"{c.get('id')} stores no picture of its widget"
            assert "Run the cell to make it live." in pictures[0]
            assert '<img src="data:image/png;base64,' in pictures[0]


@chapter
def test_live_cells_are_not_compared(path: Path) -> None:
    for c in load(path)["cells"]:
        if c["cell_type"] == "code" and re.search(r"\blive\.\w+\(", source(c)):
            assert tags(c) & IGNORE_TAGS, f"live cell {c.get('id')} depends on the machine"


# -- numbers the prose states, checked against the simulator ---------------------------------

def chapter_text(n: int) -> str:
    """The prose of chapter n, with line breaks as spaces."""
    path = next(p for p in CHAPTERS if number(p) == n)
    return " ".join(markdown(load(path)).split())


def _unique_pages(pages: int) -> Any:
    """A modern kernel, ksmd untraced and running, and one process with `pages` pages of
    distinct contents advised MERGEABLE."""
    import ksmbook as kb

    k = kb.Kernel(profile="modern")
    k.ksmd.tracing = False
    p = k.spawn()
    a = p.mmap(pages * kb.PAGE_SIZE, kb.PROT_READ | kb.PROT_WRITE,
               kb.MAP_PRIVATE | kb.MAP_ANONYMOUS)
    p.write_pages(a, list(range(1, pages + 1)))
    p.madvise(a, pages * kb.PAGE_SIZE, kb.MADV_MERGEABLE)
    k.sysfs["run"] = 1
    return k


def batches_per_pass(pages: int) -> tuple[int, float]:
    """Batches of ksmd's first pass over `pages` pages of one process with the default knobs,
    and the simulated seconds it took."""
    k = _unique_pages(pages)
    n = 0
    while True:
        n += 1
        if k.ksmd.batch().pass_ended:
            return n, k.ksmd.clock_ms / 1000


def test_chapter_7_batches_per_pass() -> None:
    """The pass-length rule the prose states (P // pages_to_scan + 1 batches when no page is
    skipped: 11 for 1000 pages, the eleventh of 1050 pages scanning 50) is what the simulated
    ksmd does."""
    text = chapter_text(7)
    assert (r"a pass that processes all of its $P$ pages takes "
            r"$\lfloor P / \mathit{pages\_to\_scan} \rfloor + 1$ batches") in text
    assert r"takes $\lfloor (P - S) / \mathit{pages\_to\_scan} \rfloor + 1$ batches" in text
    assert "for 1000 pages at 100 a batch, ten full batches and an eleventh" in text
    assert "about 11 x 20 ms per pass" in text
    for pages in (1000, 1050, 999):
        assert batches_per_pass(pages)[0] == pages // 100 + 1


def test_chapter_8_pass_over_the_guesses() -> None:
    """"one pass over the 10,000 guesses alone takes 101 batches, about 2 seconds"."""
    assert "one pass over the 10,000 guesses alone takes 101 batches, about 2 seconds" in \
        chapter_text(8)
    batches, seconds = batches_per_pass(10_000)
    assert batches == 101
    assert round(seconds) == 2


def test_chapter_8_write_costs() -> None:
    """The ratio and difference the prose gives are those of the cost model it describes."""
    from ksmbook.sidechannel import LATENCY_US

    text = chapter_text(8)
    ratio = LATENCY_US["cow-ksm"] / LATENCY_US["none"]
    more = LATENCY_US["cow-ksm"] - LATENCY_US["none"]
    assert f"about {ratio:.1f} times a write to a private page" in text
    assert f"about {more:.0f} microseconds more" in text


def smart_scan_processed(pages: int, scans: int) -> list[int]:
    """The full scans (1, 2, ...) in which smart_scan processed, not skipped, `pages` unique
    pages of one process (default knobs)."""
    k = _unique_pages(pages)
    skipped, processed = 0, []
    for scan in range(1, scans + 1):
        now = k.ksmd.full_scans(1)["pages_skipped"]
        if now == skipped:
            processed.append(scan)
        skipped = now
    return processed


def test_smart_scan_schedule_in_the_prose() -> None:
    """Chapters 7 and 8 state smart_scan's schedule; the simulated ksmd follows it."""
    seven, eight = chapter_text(7), chapter_text(8)
    assert "from its fourth visit on it processes the page once, then skips it for 1, 2, 4 " \
        "and then 8 passes at a time" in seven
    assert "the unshared pages of passes 5, 7, 8, 10 to 13 are skipped" in seven
    assert "processed at their visits 1 to 4, 6, 9, 14, and then every ninth visit" in eight
    processed = smart_scan_processed(10, 41)
    assert [s for s in range(1, 15) if s not in processed] == [5, 7, 8, 10, 11, 12, 13]
    assert processed == [1, 2, 3, 4, 6, 9, 14, 23, 32, 41]


def test_chapter_7_counter_history_matches_its_prose() -> None:
    """"ten full scans of 40 pages, 33 of which have twins" and "The 7 pages without a twin":
    the counters the chapter prints after its second scan (which nbval checks against the
    simulator) say the same."""
    path = next(p for p in CHAPTERS if number(p) == 7)
    cell = next(c for c in load(path)["cells"] if "show_counters(history" in source(c))
    lines = stdout(cell).splitlines()
    header = lines[0].split()
    rows = [dict(zip(header, map(int, line.split()), strict=True)) for line in lines[1:]
            if line.split() and line.split()[0].isdigit()]
    assert [r["full_scans"] for r in rows] == list(range(11))
    second = rows[2]
    text = chapter_text(7)
    twins = second["pages_shared"] + second["pages_sharing"]
    alone = second["pages_unshared"] + second["pages_volatile"]
    assert f"ten full scans of {twins + alone} pages, {twins} of which have twins" in text
    assert f"The {alone} pages without a twin" in text
