"""Opening a notebook of the book in JupyterLab, and closing it, changes nothing.

A reader who only reads must not find the chapter "edited" afterwards (the class hub compares
files). JupyterLab writes the kernel's kernelspec and language_info into the notebook when its
kernel starts, and saves what it holds; so the stored metadata must already be what it writes
(scripts/strip_notebooks.py sets the kernelspec; language_info comes from the kernel that
executed the notebook). Each notebook is opened in Debian's Chromium, its kernel left to start,
then saved (as autosave does a moment later) and closed: the file must be byte for byte what
was committed. Runs on a JupyterLab server over copies (the `lab` fixture of
tests/test_browser.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_browser import (
    ALL_NOTEBOOKS,
    ROOT,
    close_tab,
    lab,
    lab_page,
    open_notebook,
    save_notebook,
)

__all__ = ["lab"]  # the fixture, imported for pytest

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page(lab: tuple[str, str]) -> Iterator[Any]:
    with lab_page("notebook-open", height=900) as pg:
        yield pg


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_opening_and_closing_a_notebook_changes_nothing(lab: tuple[str, str], page: Any,
                                                        name: str) -> None:
    open_notebook(page, lab, name)
    # JupyterLab writes kernelspec and language_info again once the kernel starts, and
    # autosave then saves the notebook: what it saves must be the committed bytes.
    saved = save_notebook(page, lab, name)
    close_tab(page, name)
    stored = (ROOT / "notebooks" / name).read_text(encoding="utf-8")
    assert saved == stored, f"{name}: JupyterLab saved other bytes than the committed ones"
