"""Opening a notebook of the book in JupyterLab, and closing it, changes nothing.

A reader who only reads must not find the chapter "edited" afterwards (the class hub compares
files). JupyterLab writes the kernel's kernelspec and language_info into the notebook when its
kernel starts, and saves what it holds; so the stored metadata must already be what it writes
(scripts/strip_notebooks.py sets the kernelspec; language_info comes from the kernel that
executed the notebook). Each notebook is opened in Debian's Chromium, its kernel left to start,
then saved (as autosave does a moment later) and closed: the file must be byte for byte what
was committed. Runs on a JupyterLab server over copies
(the `lab` fixture of tests/test_browser.py).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from test_browser import ALL_NOTEBOOKS, CHROMIUM, CHROMIUM_ARGS, ROOT, TIMEOUT_MS, lab

__all__ = ["lab"]  # the fixture, imported for pytest

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page(lab: tuple[str, str]) -> Any:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1280, "height": 900})
        pg.set_default_timeout(TIMEOUT_MS)
        yield pg
        browser.close()


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_opening_and_closing_a_notebook_changes_nothing(lab: tuple[str, str], page: Any,
                                                        name: str) -> None:
    import json
    import urllib.request

    base, token = lab
    api = f"{base}/api/contents/{name}?token={token}&content=0"
    with urllib.request.urlopen(api) as r:
        before = json.load(r)["last_modified"]
    page.goto(f"{base}/lab/tree/{name}?token={token}&reset")
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']")
    # JupyterLab marks the notebook as changed once its kernel starts, whatever it holds (it
    # writes kernelspec and language_info again), and autosave then saves it: what it saves
    # must be the committed bytes. Save now, as autosave would.
    page.locator(".jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 20
    while True:
        with urllib.request.urlopen(api) as r:
            if json.load(r)["last_modified"] != before:
                break
        assert time.monotonic() < deadline, f"{name}: Save Notebook did not save"
        time.sleep(0.2)
    # Close it: a notebook JupyterLab thought changed would ask whether to save it.
    page.locator(".jp-mod-current.lm-TabBar-tab .lm-TabBar-tabCloseIcon").first.click()
    page.wait_for_selector(f".lm-TabBar-tab[data-type='document-title']:has-text('{name}')",
                           state="detached")
    assert page.locator(".jp-Dialog").count() == 0, f"{name}: closing it asks to save"
    with urllib.request.urlopen(f"{base}/api/contents/{name}?token={token}&format=text"
                                f"&type=file") as r:
        saved = json.load(r)["content"]
    stored = (ROOT / "notebooks" / name).read_text(encoding="utf-8")
    assert saved == stored, f"{name}: JupyterLab saved other bytes than the committed ones"
