"""The widgets in a real JupyterLab, driven by Debian's Chromium through playwright.

A JupyterLab server is started on 127.0.0.1 (a free port, a random token) over temporary copies
of the notebooks, so the committed notebooks are never executed or saved.

Every notebook is first opened as stored, running nothing, as a reader first sees it: each
widget cell must show the picture of its widget with the line saying that running the cell
makes it live, never the widget's repr or "Error displaying widget". The widget tests then run
all cells from the Run menu.

The explorer test maps a region, advises its middle MADV_MERGEABLE, sees three VMAs in the
diagram and in the maps table, switches CONFIG_KSM off, advises again and sees EINVAL. The
ksmd test steps two full scans, writes a new content into a merged page, steps again and
undoes that step; the counters the page shows must be those the simulator gives for the
notebook's own set-up, run here through the ksmbook API. The reopen test runs a chapter, saves
it, reopens it with a fresh kernel and closes it: the pictures show and the file is unchanged.
Screenshots go to build/screenshots/. Every wait is on a selector or a condition; the page
set-up is `lab_page` and `open_notebook`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "build" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 30_000
#: How a notebook stores widget state and a widget's view.
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: Every notebook of the book, opened as stored by test_notebooks_as_stored.
ALL_NOTEBOOKS = tuple(sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_server(url: str, proc: subprocess.Popen, deadline: float) -> None:
    """Poll the server's status API until it answers (or the server dies, or time is up)."""
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"jupyter lab did not answer {url}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A JupyterLab server over copies of the widget notebooks: (base URL, token)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's browser with "
                    "`apt-get install chromium` (playwright's own download cannot work here)")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (the package only)")
    pytest.importorskip("jupyterlab", reason="pip install jupyterlab")
    work = tmp_path_factory.mktemp("lab")
    root = work / "root"
    root.mkdir()
    for name in ALL_NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, root / name)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"),
        "JUPYTERLAB_SETTINGS_DIR": str(work / "settings"),
        "MPLBACKEND": "agg",
    })
    # No "get notified about Jupyter news?" pop-up, and no "Select Kernel" dialog: the
    # notebook's own kernel starts by itself.
    settings = work / "settings" / "@jupyterlab"
    for plugin, value in (("apputils-extension/notification", {"fetchNews": "false"}),
                          ("notebook-extension/tracker", {"autoStartDefaultKernel": True,
                                                          # every cell in the page, so that
                                                          # counts do not depend on scrolling
                                                          "windowingMode": "none"})):
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    log = open(work / "lab.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
         "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", "--ServerApp.open_browser=False",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{base}/api/status?token={token}", proc, time.monotonic() + 90)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        # The kernels' own notebook copies are thrown away with the temporary directory.
        for name in ALL_NOTEBOOKS:
            stored = json.loads((root / name).read_text())
            assert stored["cells"], f"the served copy of {name} is a notebook"


@contextlib.contextmanager
def lab_page(name: str, height: int = 1000) -> Iterator[Any]:
    """A page of Debian's Chromium, 1400 px wide, whose waits (and playwright's expect) give up
    after TIMEOUT_MS; if the block fails, the page as it was goes to
    build/screenshots/`name`-failure.png."""
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": height})
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            try:
                yield page
            except Exception:
                page.screenshot(path=str(SHOTS / f"{name}-failure.png"), full_page=True)
                raise
        finally:
            browser.close()


def open_notebook(page: Any, lab: tuple[str, str], name: str) -> None:
    """Open notebook `name` alone (a fresh workspace) and wait until its kernel is idle."""
    base, token = lab
    page.goto(f"{base}/lab/tree/{name}?reset&token={token}")
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()


def close_notebooks(page: Any, lab: tuple[str, str]) -> None:
    """Close every notebook (a fresh workspace with none open)."""
    base, token = lab
    page.goto(f"{base}/lab?reset&token={token}")
    page.locator(".jp-Launcher, .jp-LabShell").first.wait_for()


def _run_all_cells(page,  # type: ignore[no-untyped-def]
                   widget: str = ".ksmbook-explorer") -> None:
    """Run > Run All Cells, then wait for the live widget (a CSS selector) to be drawn (a
    stored picture of it does not match the selector).

    Right after a kernel starts, JupyterLab can run nothing (the code cell keeps its empty
    prompt) or show "Error displaying widget: model not found" (the widget manager was not
    yet listening when the widget's comm opened). A reader would run the cells again; so does
    this, at most three times. The test's end checks that no such error text remains.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    prompt = page.locator(".jp-CodeCell .jp-InputPrompt").first
    for attempt in range(3):
        ran = prompt.inner_text().strip()
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        try:  # until the cell has run again ([N] changed) and shows the widget or an error
            state = page.wait_for_function(
                """([prompt, ran, widget]) => {
                    if (document.querySelector(widget)) return 'ok';
                    const now = prompt.textContent.trim();
                    if (now === ran || now.includes('*')) return null;
                    return document.body.innerText.includes('Error displaying widget')
                        ? 'error' : null;
                }""", arg=[prompt.element_handle(), ran, widget], timeout=20_000).json_value()
        except PlaywrightTimeout:
            state = "nothing ran"
        if state == "ok":
            return
        if attempt == 2:
            raise AssertionError(f"{widget} did not appear after Run All Cells: {state}")


def _bars(page, row: int):  # type: ignore[no-untyped-def]
    """The VMA bars of a diagram row: one <path>, or one <use> of a <path> kept in <defs>,
    per VMA (matplotlib's SVG writer picks either)."""
    return page.locator(f".ksmbook-diagram g#ksm-row-{row} > path, "
                        f".ksmbook-diagram g#ksm-row-{row} use")


#: What a stored widget output must never show.
WIDGET_FAILURES = ("VBox(children", "Error displaying widget", "model not found",
                   "Loading widget")


def test_notebooks_as_stored(lab: tuple[str, str]) -> None:
    from playwright.sync_api import expect

    expected = {}
    for name in ALL_NOTEBOOKS:
        nb = json.loads((ROOT / "notebooks" / name).read_text(encoding="utf-8"))
        expected[name] = sum('<div class="ksmbook-snapshot">' in "".join(
            o.get("data", {}).get("text/html", "")) for c in nb["cells"]
            for o in c.get("outputs", []))
        calls = sum(bool(re.search(r"\b(Explorer|KsmdStepper)\(", "".join(c["source"])))
                    for c in nb["cells"] if c["cell_type"] == "code")
        assert expected[name] >= min(calls, 1), f"{name}: a widget cell stores no picture"
    with lab_page("stored") as page:
        for name in ALL_NOTEBOOKS:
            open_notebook(page, lab, name)
            pictures = page.locator(".jp-OutputArea-output .ksmbook-snapshot")
            expect(pictures).to_have_count(expected[name])
            for i in range(expected[name]):
                picture = pictures.nth(i)
                picture.scroll_into_view_if_needed()
                expect(picture).to_contain_text("Run the cell to make it live.")
                img = picture.locator("img")
                expect(img).to_be_visible()
                page.wait_for_function("img => img.complete && img.naturalWidth > 100",
                                       arg=img.element_handle())
                if i == 0:
                    picture.screenshot(path=str(SHOTS / f"stored-{Path(name).stem}.png"))
            body = page.locator("body").inner_text()
            for failure in WIDGET_FAILURES:
                assert failure not in body, f"{name} shows {failure!r} as stored"


def test_explorer_in_jupyterlab(lab: tuple[str, str]) -> None:
    from playwright.sync_api import expect

    with lab_page("explorer") as page:
        open_notebook(page, lab, "explorer.ipynb")

        _run_all_cells(page)
        expect(page.locator(".ksm-map-button")).to_be_visible()
        page.screenshot(path=str(SHOTS / "explorer-1-start.png"), full_page=True)

        # Map 16 pages, private anonymous, read-write (the defaults), with length typed in.
        page.locator(".ksm-map-length input").fill("16p")
        page.locator(".ksm-map-button").click()
        expect(page.locator(".ksmbook-outcome")).to_contain_text("mmap(")
        expect(page.locator(".ksmbook-text")).to_contain_text("[p1 (pid 1)]")
        expect(_bars(page, 1)).to_have_count(1)

        # MADV_MERGEABLE on the middle half: three VMAs, the middle one "mg".
        page.locator(".ksm-range-start input").fill("A+4p")
        page.locator(".ksm-range-length input").fill("8p")
        page.locator(".ksm-advice select").select_option(label="MADV_MERGEABLE (12)")
        page.locator(".ksm-apply-button").click()
        expect(page.locator(".ksmbook-outcome")).to_contain_text("MADV_MERGEABLE")
        expect(page.locator(".ksmbook-outcome")).to_contain_text("= 0")
        expect(_bars(page, 1)).to_have_count(3)
        expect(_bars(page, 0)).to_have_count(1)
        maps = page.locator(".ksmbook-text pre").inner_text()
        rows = [line for line in maps.splitlines() if "VmFlags:" in line]
        assert len(rows) == 3, maps
        assert [r.split("VmFlags:")[1].split().count("mg") for r in rows] == [0, 1, 0]
        expect(page.locator(".ksmbook-diagram")).to_contain_text("split")
        page.locator(".ksmbook-diagram").screenshot(
            path=str(SHOTS / "explorer-2-mergeable.png"))

        # CONFIG_KSM off: the kernel is rebuilt without KSM and the history replayed.
        page.locator(".ksm-config-ksm input").click()
        expect(page.locator(".ksmbook-message")).to_contain_text("CONFIG_KSM=n")
        page.locator(".ksm-apply-button").click()
        expect(page.locator(".ksmbook-outcome")).to_contain_text("EINVAL")
        expect(page.locator(".ksmbook-diagram")).to_contain_text("EINVAL")
        page.screenshot(path=str(SHOTS / "explorer-3-einval.png"), full_page=True)

        body = page.locator("body").inner_text()
        assert "Error displaying widget" not in body
        assert "Loading widget" not in body


def _notebook_stepper(name: str) -> Any:
    """The KsmdStepper that notebooks/`name` makes (its code cells run here, not in the lab,
    up to the one that displays the stepper), whatever its set-up: a script or a function."""
    nb = json.loads((ROOT / "notebooks" / name).read_text(encoding="utf-8"))
    namespace: dict[str, Any] = {}
    for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        source = "".join(cell["source"])
        exec(compile(source, f"{name}[{i}]", "exec"), namespace)
        if "KsmdStepper(" in source:
            break
    from ksmbook.widgets import KsmdStepper

    return next(v for v in namespace.values() if isinstance(v, KsmdStepper))


def _shown_counters(text: str) -> dict[str, int]:
    """The counters the pages text prints after its "counters:" line, by name."""
    return {name: int(value) for name, value in
            re.findall(r"(\w+) (-?\d+)", text.split("counters:", 1)[1])}


def _table_row(text: str) -> dict[str, int]:
    """The last row of a counters table (one column per counter), by column name."""
    lines = text.strip().splitlines()
    return dict(zip(lines[0].split(), map(int, lines[-1].split()), strict=True))


def test_ksmd_stepper_in_jupyterlab(lab: tuple[str, str]) -> None:
    from playwright.sync_api import expect

    from ksmbook.render.ksm_pages import page_state
    from ksmbook.render.text import addr_text
    from ksmbook.sidechannel import fault_of

    # What the simulator predicts for the notebook's set-up: two full scans, a write of a new
    # content into p2's first (merged) page, one more full scan.
    k = _notebook_stepper("ksmd-stepper.ipynb").kernel  # a fresh one, built as the notebook does
    k.ksmd.full_scans(2)
    merged = dict(k.ksmd.counters())
    assert merged["pages_sharing"] > 0, merged
    rows = page_state(k).rows
    p1_rows = [r for r in rows if r.process == "p1"]
    p2_rows = [r for r in rows if r.process == "p2"]
    assert len(p1_rows) != len(p2_rows), "the page list must show which process is picked"
    target = p2_rows[0]
    assert target.label.startswith("KSM page"), target
    p2 = next(p for p in k.processes if p.name == "p2")
    fresh = 1 + max(r.content for r in rows)
    p2.write_pages(target.address, [fresh])
    fault = fault_of(p2.last_trace).text
    written = dict(k.ksmd.counters())
    k.ksmd.full_scans(1)
    stepped = dict(k.ksmd.counters())
    assert stepped["pages_sharing"] < merged["pages_sharing"], (merged, stepped)

    with lab_page("ksmd", height=1600) as page:
        open_notebook(page, lab, "ksmd-stepper.ipynb")

        _run_all_cells(page, ".ksmbook-ksmd")
        widget = page.locator(".ksmbook-ksmd")
        message = widget.locator(".ksmbook-message")
        text = widget.locator("pre.ksmbook-text")
        expect(widget.locator(".ksmd-scan-button")).to_be_visible()
        expect(text).to_contain_text("pages_sharing 0,")
        page.screenshot(path=str(SHOTS / "ksmd-1-start.png"), full_page=True)

        # Two full scans: the first only takes checksums, the second merges.
        for n in (1, 2):
            widget.locator(".ksmd-scan-button").click()
            expect(message).to_have_text(f"Full scan {n} done.")
        expect(text).to_contain_text(f"pages_sharing {merged['pages_sharing']},")
        assert _shown_counters(text.inner_text()) == merged
        widget.screenshot(path=str(SHOTS / "ksmd-2-merged.png"))

        # p2 writes a new content W into its first page, a KSM page: copy-on-write.
        widget.locator(".ksmd-process select").select_option(label="p2")
        expect(widget.locator(".ksmd-page select option")).to_have_count(len(p2_rows))
        option = widget.locator(".ksmd-page select option",
                                has_text=f"{target.address:x}")
        widget.locator(".ksmd-page select").select_option(
            value=option.get_attribute("value"))
        widget.locator(".ksmd-content input").fill("W")
        widget.locator(".ksmd-write-button").click()
        expect(message).to_contain_text(
            f"p2 wrote W at {addr_text(target.address)}: {fault}")
        assert _shown_counters(text.inner_text()) == written  # ksmd has not looked yet

        # One more full scan: ksmd finds the page changed and drops it from the KSM page.
        widget.locator(".ksmd-scan-button").click()
        expect(message).to_have_text("Full scan 3 done.")
        expect(text).to_contain_text(f"pages_sharing {stepped['pages_sharing']},")
        assert _shown_counters(text.inner_text()) == stepped
        p2_text = text.inner_text().split("p2 (pid", 1)[1]
        assert re.search(rf"\b{target.address:x}\s+W\b", p2_text), p2_text
        # The counters' plot and table are redrawn after the message and the pages: wait
        # until the kernel has sent every update of the step.
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
        widget.get_by_role("tab", name="Counters over scans").click()
        table = widget.locator("pre", has_text=re.compile(r"^\s*full_scans\s+pages_shared"))
        expect(table).to_be_visible()
        shown = _table_row(table.inner_text())
        assert shown == {key: stepped[key] for key in shown}, shown
        assert shown["full_scans"] == 3, shown
        widget.screenshot(path=str(SHOTS / "ksmd-3-cow.png"))

        # Undo the third scan: the pages and the counters table are back to after the write,
        # and Redo is offered.
        redo = widget.locator(".ksmd-redo-button")
        expect(redo).to_be_disabled()
        widget.locator(".ksmd-undo-button").click()
        expect(message).to_have_text("Undone: ksmd scan 1.")
        expect(redo).to_be_enabled()
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
        assert _table_row(table.inner_text())["full_scans"] == 2
        widget.get_by_role("tab", name="Pages (text)").click()
        assert _shown_counters(text.inner_text()) == written
        widget.screenshot(path=str(SHOTS / "ksmd-4-undone.png"))

        body = page.locator("body").inner_text()
        assert "Error displaying widget" not in body
        assert "Loading widget" not in body


def test_predict_then_run_in_jupyterlab(lab: tuple[str, str]) -> None:
    """A notebook made here shows the predict explorer on 8 mapped pages; the reader asks
    for MADV_MERGEABLE on pages 2-6, ticks the split points, types a page past the mapping
    (a message, nothing runs), then predicts ENOMEM and the right VMAs, and sees the
    kernel's 0, three VMAs, and the feedback on each prediction."""
    from playwright.sync_api import expect

    base, token = lab
    source = ("from ksmbook.widgets import PredictExplorer\n"
              "PredictExplorer(script='map A 8p rw private anon')")
    notebook = {"cells": [{"cell_type": "code", "metadata": {}, "source": source,
                           "outputs": [], "execution_count": None}],
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                            "language": "python"}},
                "nbformat": 4, "nbformat_minor": 5}
    request = urllib.request.Request(
        f"{base}/api/contents/predict.ipynb", method="PUT",
        data=json.dumps({"type": "notebook", "content": notebook}).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status in (200, 201)
    with lab_page("predict") as page:
        open_notebook(page, lab, "predict.ipynb")
        _run_all_cells(page, ".ksmbook-predict")
        widget = page.locator(".ksmbook-predict")
        outcome = widget.locator(".ksmbook-outcome")

        # The range fields start on the middle half of A: pages 2-6.
        expect(widget.locator(".ksm-range-start input")).to_have_value("A+2p")
        widget.locator(".ksm-apply-button").click()
        question = widget.locator(".ksmbook-question")
        expect(question).to_contain_text("madvise A+2p 4p MERGEABLE")
        expect(question).to_contain_text("Pages 0-8 of p1")
        expect(outcome).to_contain_text("mmap(")  # the kernel's answer is not shown yet
        expect(_bars(page, 1)).to_have_count(1)  # the diagram still shows the mmap

        # Tick the candidate split points 2 and 6: the layout is written from them.
        layout = widget.locator(".ksm-predict-layout input")
        for page_no in ("2", "6"):
            widget.locator(".ksm-split-point", has_text=page_no).locator("input").check()
        expect(layout).to_have_value("0-2 2-6 6-8")
        widget.screenshot(path=str(SHOTS / "predict-0-question.png"))

        widget.locator(".ksm-predict-result select").select_option("ENOMEM")
        widget.locator(".ksm-predict-layout input").fill("0-2 2-6 mg 6-9")
        widget.locator(".ksm-submit-button").click()
        expect(widget.locator(".ksmbook-message")).to_contain_text(
            "these pages run from 0 to 8")
        expect(outcome).not_to_contain_text("madvise")

        widget.locator(".ksm-predict-layout input").fill("0-2 2-6 mg 6-8")
        widget.locator(".ksm-submit-button").click()
        expect(outcome).to_contain_text("MADV_MERGEABLE")
        expect(outcome).to_contain_text("= 0")
        expect(_bars(page, 1)).to_have_count(3)
        expect(_bars(page, 0)).to_have_count(1)
        feedback = widget.locator("div.ksmbook-feedback")
        expect(feedback).to_contain_text("Not quite: ENOMEM would mean part of the range "
                                         "is not mapped")
        expect(feedback).to_contain_text("Right.")
        expect(feedback).to_contain_text("Predictions right so far: 0 of 1.")
        expect(question).to_have_text("")
        widget.screenshot(path=str(SHOTS / "predict-1-feedback.png"))

        body = page.locator("body").inner_text()
        for failure in (*WIDGET_FAILURES, "Traceback"):
            assert failure not in body


def _api(base: str, token: str, path: str, method: str = "GET") -> Any:
    """A call of the Jupyter server's REST API (JSON answer, or None)."""
    request = urllib.request.Request(f"{base}/api/{path}", method=method,
                                     headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        body = r.read()
    return json.loads(body) if body else None


def _raw(base: str, token: str, name: str) -> str:
    """The notebook file as stored on disk, byte for byte (as text)."""
    return str(_api(base, token, f"contents/{name}?type=file&format=text&content=1")["content"])


def _until(condition: Any, what: str, seconds: float = 30) -> Any:
    """Poll `condition()` until it gives a true value (AssertionError naming `what`)."""
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
    return value


def _shut_down(base: str, token: str, name: str) -> None:
    """Shut down the kernel of notebook `name` (the reader closes it and its kernel)."""
    for session in _api(base, token, "sessions"):
        if session["path"] == name:
            _api(base, token, f"sessions/{session['id']}", "DELETE")


def _last_modified(base: str, token: str, name: str) -> str:
    return str(_api(base, token, f"contents/{name}?content=0")["last_modified"])


def save_notebook(page: Any, lab: tuple[str, str], name: str) -> str:
    """Save the notebook shown (Ctrl+S, as autosave would) and wait until the file changed
    and is whole; returns the file as saved."""
    base, token = lab
    before = _last_modified(base, token, name)

    def saved() -> str | None:
        if _last_modified(base, token, name) == before:
            return None
        raw = _raw(base, token, name)
        try:
            json.loads(raw)
        except json.JSONDecodeError:
            return None  # JupyterLab is still writing it
        # nbformat writes the JSON, then its final newline: the JSON can be whole before that
        return raw if raw.endswith("\n") else None

    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    return str(_until(saved, f"{name} saved"))


def close_tab(page: Any, name: str) -> None:
    """Close the notebook's tab as a reader does; a notebook JupyterLab thinks changed would
    ask whether to save it (AssertionError)."""
    page.locator(".jp-mod-current.lm-TabBar-tab .lm-TabBar-tabCloseIcon").first.click()
    page.wait_for_selector(f".lm-TabBar-tab[data-type='document-title']:has-text('{name}')",
                           state="detached")
    assert page.locator(".jp-Dialog").count() == 0, f"{name}: closing it asks to save"


def test_a_run_notebook_reopened_shows_its_pictures_and_is_left_unchanged(
        lab: tuple[str, str]) -> None:
    """Run All in a chapter, save, close it and shut its kernel down, reopen it with a fresh
    kernel: each widget cell shows its picture, nothing says "model not found", and closed
    again the notebook is byte for byte what the save wrote.

    JupyterLab saves no widget state (jupyter-config/ksmbook-widget-state.json). With it on,
    the widget manager (jupyterlab_widgets 3.0) marks a reopened notebook changed as it
    registers each model of the saved state (register_model() -> setDirty()), and autosave
    then writes it again without them (get_state_sync() keeps only models with a live comm,
    and a fresh kernel has none): the reopened notebook was rewritten, its widget state gone.
    """
    from playwright.sync_api import expect

    base, token = lab
    name, widgets = "02-madvise.ipynb", 2
    _shut_down(base, token, name)  # a kernel an earlier test left running
    with lab_page("reopen") as page:
        open_notebook(page, lab, name)
        _run_all_cells(page)
        expect(page.locator(".ksmbook-explorer")).to_have_count(widgets, timeout=60_000)
        page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for()
        expect(page.locator(".ksmbook-stale:visible")).to_have_count(0)  # live: no note
        # The pictures are there, hidden while their widgets are drawn.
        expect(page.locator(".jp-OutputArea-output .ksmbook-snapshot")).to_have_count(
            widgets)
        expect(page.locator(".ksmbook-snapshot:visible")).to_have_count(0)
        saved = save_notebook(page, lab, name)
        stored = json.loads(saved)
        assert stored["metadata"]["widgets"][WIDGET_STATE]["state"] == {}
        views = [o for c in stored["cells"] for o in c.get("outputs", [])
                 if WIDGET_VIEW in o.get("data", {})]
        assert len(views) == widgets  # the run's widget views, whose models are not saved
        _shut_down(base, token, name)
        close_notebooks(page, lab)

        open_notebook(page, lab, name)
        # The widget manager says "model not found" only once it has restored what the
        # notebook holds (where saved models would mark the notebook changed); the picture's
        # style sheet hides those outputs.
        page.wait_for_function(
            """n => [...document.querySelectorAll('.jp-OutputArea-child')].filter(
                e => e.textContent.includes('model not found')).length === n""", arg=widgets)
        pictures = page.locator(".ksmbook-snapshot:visible")
        expect(pictures).to_have_count(widgets)
        for i in range(widgets):
            pictures.nth(i).scroll_into_view_if_needed()
            expect(pictures.nth(i).locator("img")).to_be_visible()
            expect(pictures.nth(i)).to_contain_text("Run the cell to make it live.")
            pictures.nth(i).screenshot(path=str(SHOTS / f"reopened-{i}.png"))
        expect(page.locator(".ksmbook-explorer")).to_have_count(0)
        body = page.locator("body").inner_text()
        for failure in WIDGET_FAILURES:
            assert failure not in body, f"{name} shows {failure!r} after a reopen"
        expect(page.locator(".lm-TabBar-tab.jp-mod-current")).not_to_have_class(
            re.compile(r"jp-mod-dirty"))
        close_tab(page, name)
        _shut_down(base, token, name)
        assert _raw(base, token, name) == saved
