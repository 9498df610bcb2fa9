"""The static HTML book (`python -m ksmbook.book html`): built from freshly executed notebooks,
navigable, and rendering its figures and widget snapshots with no network but localhost."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbconvert")

from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook  # noqa: E402

from ksmbook.book import (  # noqa: E402
    CDN_HOSTS,
    REPO,
    BookError,
    build_html,
    chapter_title,
    main,
    offline_violations,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
NODE_MODULES = REPO / "node_modules"
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def need_node_modules() -> None:
    if not (NODE_MODULES / "@jupyter-widgets/html-manager/dist/embed-amd.js").exists():
        message = f"no {NODE_MODULES}: run `npm ci` in {REPO} first (make html does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def write_notebooks(where: Path) -> None:
    """Two small chapters: a figure and two widgets (the slider moved after display), then
    plain text output."""
    figures = new_notebook(metadata={"kernelspec": KERNELSPEC}, cells=[
        new_markdown_cell("# Widgets and *figures*\n\nA test chapter."),
        new_code_cell("import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(3, 2))\n"
                      "ax.plot([0, 1, 2], [0, 1, 4])\nplt.show()"),
        new_code_cell("import ipywidgets as w\n"
                      "s = w.IntSlider(value=3, min=0, max=10, description='pages')\ns"),
        new_code_cell("s.value = 7\nb = w.Button(description='Split')\nb"),
    ])
    second = new_notebook(metadata={"kernelspec": KERNELSPEC}, cells=[
        new_markdown_cell("Some text first.\n\n## The [second](https://example.org) chapter"),
        new_code_cell("print(6 * 7)"),
    ])
    nbformat.write(figures, where / "01-widgets.ipynb")
    nbformat.write(second, where / "02-second.ipynb")
    (where / "notes.ipynb").write_text("not a chapter: no NN- prefix")


def rel_links(page: str, rel: str) -> list[str]:
    """The href of every <a rel=REL> of the page, whatever the attribute order."""
    tags = re.findall(r"<a\s[^>]*>", page)
    return [re.search(r'href="([^"]+)"', t).group(1)  # type: ignore[union-attr]
            for t in tags if f'rel="{rel}"' in t]


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(notebooks dir, output dir) of a book built once for this module."""
    need_node_modules()
    src = tmp_path_factory.mktemp("notebooks")
    write_notebooks(src)
    out = tmp_path_factory.mktemp("build") / "html"
    build_html(src, out)
    yield src, out


# -- the build ------------------------------------------------------------------------------

def test_pages_index_and_static_files(book: tuple[Path, Path]) -> None:
    _, out = book
    assert sorted(p.name for p in out.glob("*.html")) == [
        "01-widgets.html", "02-second.html", "index.html"]
    for asset in ("_static/require.js", "_static/html-manager/embed-amd.js",
                  "_static/book.css"):
        assert (out / asset).stat().st_size > 0, asset
    index = (out / "index.html").read_text()
    links = re.findall(r'<li><a href="([^"]+)">([^<]+)</a></li>', index)
    assert links == [("01-widgets.html", "Widgets and figures"),
                     ("02-second.html", "The second chapter")]


def test_previous_next_links_on_every_page(book: tuple[Path, Path]) -> None:
    _, out = book
    order = ["index.html", "01-widgets.html", "02-second.html"]
    for i, name in enumerate(order):
        page = (out / name).read_text()
        prev, nxt = rel_links(page, "prev"), rel_links(page, "next")
        assert prev == ([order[i - 1]] * (2 if i else 0) if name != "index.html" else [])
        assert nxt == ([order[i + 1]] * (1 if name == "index.html" else 2)
                       if i + 1 < len(order) else [])
        for href in set(prev + nxt):
            assert (out / href).exists()


def test_notebooks_were_executed_fresh_with_widget_state(book: tuple[Path, Path]) -> None:
    src, out = book
    page = (out / "01-widgets.html").read_text()
    assert re.search(r'<img[^>]+src="data:image/png;base64,', page)
    state = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>',
                      page, re.S)
    assert state and '"value": 7' in state.group(1) and '"description": "Split"' in state.group(1)
    assert page.count('<script type="application/vnd.jupyter.widget-view+json">') == 2
    assert "42" in (out / "02-second.html").read_text()
    # The committed notebooks stay as they were: unexecuted, no widget state, nothing added.
    committed = nbformat.read(src / "01-widgets.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in committed.cells if c.cell_type == "code")
    assert "widgets" not in committed.metadata
    assert sorted(p.name for p in src.iterdir()) == ["01-widgets.ipynb", "02-second.ipynb",
                                                     "notes.ipynb"]


def test_no_page_loads_from_a_cdn(book: tuple[Path, Path]) -> None:
    _, out = book
    for page in out.glob("*.html"):
        text = page.read_text()
        assert offline_violations(text) == [], page.name
        assert 'src="_static/require.js"' in text or page.name == "index.html"
        for host in CDN_HOSTS:
            assert host not in text


def test_offline_violations_catches_remote_loads() -> None:
    assert offline_violations('<a href="https://example.org">fine, a link</a>') == []
    assert offline_violations('<script src="_static/x.js"></script>') == []
    assert offline_violations('<script src="https://cdnjs.cloudflare.com/r.js"></script>')
    assert offline_violations('<link rel="stylesheet" href="//fonts.example/x.css">')
    assert offline_violations('<img src="HTTP://example.org/a.png">')
    assert offline_violations('<script>import("https://x.example/m.mjs")</script>')
    assert offline_violations("<style>@import url('https://x.example/a.css');</style>")
    assert offline_violations("<script>var u = 'unpkg.com';</script>") == ["unpkg.com"]


def test_titles() -> None:
    nb = new_notebook(cells=[new_code_cell("# not a heading: code"),
                             new_markdown_cell("text\n\n### The `madvise` **path** ###")])
    assert chapter_title(nb, "x") == "The madvise path"
    assert chapter_title(new_notebook(cells=[new_markdown_cell("no heading")]), "03-x") == "03-x"


def test_build_errors(tmp_path: Path) -> None:
    need_node_modules()
    with pytest.raises(BookError, match="no chapter notebooks"):
        build_html(tmp_path, tmp_path / "out")
    nbformat.write(new_notebook(cells=[new_code_cell("1 / 0")], metadata={"kernelspec":
                                                                          KERNELSPEC}),
                   tmp_path / "01-bad.ipynb")
    failed = r"(?s)01-bad.ipynb: a cell failed.*\nZeroDivisionError: division by zero"
    with pytest.raises(BookError, match=failed):
        build_html(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(BookError, match="npm ci"):
        build_html(tmp_path, tmp_path / "out", node_modules=tmp_path / "nothing")


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need_node_modules()
    nbformat.write(new_notebook(cells=[new_markdown_cell("# One"), new_code_cell("1 + 1")],
                                metadata={"kernelspec": KERNELSPEC}), tmp_path / "00-one.ipynb")
    out = tmp_path / "html"
    out.mkdir()
    (out / "stale.html").write_text("from an earlier build")
    assert main(["html", "--notebooks", str(tmp_path), "--out", str(out)]) == 0
    assert "built 2 pages" in capsys.readouterr().out
    assert not (out / "stale.html").exists()
    assert main(["html", "--notebooks", str(tmp_path / "none"), "--out", str(out)]) == 1
    assert "no chapter notebooks" in capsys.readouterr().err


# -- in a browser, offline -------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="pip install playwright (the Python package only)")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing: install Debian's chromium (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """`directory` on an HTTP server on 127.0.0.1 (pages with _static/ next to them)."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def served(book: tuple[Path, Path]) -> Iterator[str]:
    with serve(book[1]) as url:
        yield url


#: True once every saved widget view on the page has been rendered by the HTML manager.
ALL_VIEWS_RENDERED = """() => Array.from(document.querySelectorAll(
    'script[type="application/vnd.jupyter.widget-view+json"]'))
    .every(s => s.parentElement.querySelector('.lm-Widget'))"""


class Offline:
    """A browser context that lets only localhost, data: and blob: through, and records the
    rest."""

    def __init__(self, browser: object) -> None:
        self.context = browser.new_context()  # type: ignore[attr-defined]
        self.blocked: list[str] = []
        self.requests: list[str] = []
        self.failed: list[str] = []  # local files that were asked for and not there
        self.context.route("**/*", self._route)
        self.context.on("response", lambda r: r.status >= 400
                        and self.failed.append(f"{r.status} {r.url}"))

    def _route(self, route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        self.requests.append(url)
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or parts.hostname in ("127.0.0.1", "localhost"):
            route.continue_()  # type: ignore[attr-defined]
        else:
            self.blocked.append(url)
            route.abort()  # type: ignore[attr-defined]


@pytest.mark.browser
def test_figures_and_widget_snapshots_render_offline(browser: object, served: str) -> None:
    net = Offline(browser)
    page = net.context.new_page()
    page.goto(f"{served}/01-widgets.html")
    page.wait_for_function(ALL_VIEWS_RENDERED, timeout=30_000)
    assert page.locator(".jupyter-widgets .widget-slider").count() == 1
    assert page.locator(".jupyter-widgets .widget-button").count() == 1
    # The snapshot is the state saved at execution time: the slider was moved to 7.
    assert page.inner_text(".widget-slider .widget-readout").strip() == "7"
    assert page.inner_text(".widget-button").strip() == "Split"
    body = page.inner_text("body")
    assert "Loading widget" not in body and "Error displaying widget" not in body
    images = page.evaluate("Array.from(document.images).map(i => [i.src.slice(0, 22), "
                           "i.complete && i.naturalWidth > 0])")
    assert images == [["data:image/png;base64,", True]]
    assert net.blocked == [] and net.failed == []
    assert not [u for u in net.requests if any(h in u for h in CDN_HOSTS)]
    assert any(u.endswith("/_static/html-manager/embed-amd.js") for u in net.requests)
    net.context.close()


@pytest.mark.browser
def test_navigation_in_the_browser(browser: object, served: str) -> None:
    net = Offline(browser)
    page = net.context.new_page()
    page.goto(f"{served}/index.html")
    page.click("text=Widgets and figures")
    page.wait_for_url("**/01-widgets.html")
    page.locator("a[rel=next]").first.click()
    page.wait_for_url("**/02-second.html")
    assert "42" in page.inner_text("body")
    page.locator("a[rel=prev]").first.click()
    page.wait_for_url("**/01-widgets.html")
    assert net.blocked == []
    net.context.close()


@pytest.mark.browser
@pytest.mark.slow
def test_the_real_book(browser: object, tmp_path: Path) -> None:
    """The chapter notebooks of this repository, if there are any yet."""
    need_node_modules()
    if not any(re.match(r"\d\d-", p.name) for p in (REPO / "notebooks").glob("*.ipynb")):
        pytest.skip("no chapter notebooks in notebooks/ yet")
    out = tmp_path / "html"
    chapters = build_html(REPO / "notebooks", out)
    net = Offline(browser)
    page = net.context.new_page()
    with serve(out) as url:
        for chapter in chapters:
            page.goto(f"{url}/{chapter.page}")
            page.wait_for_function(ALL_VIEWS_RENDERED, timeout=30_000)
            body = page.inner_text("body")
            assert "Error displaying widget" not in body, chapter.page
            assert "Loading widget" not in body, chapter.page
            assert offline_violations((out / chapter.page).read_text()) == []
    assert net.blocked == [] and net.failed == []
    net.context.close()
