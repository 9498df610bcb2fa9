"""The HTML book (`make html`: Jupyter Book 1 over notebooks/ as committed): every page of the
table of contents, search, previous/next, MathJax and widget snapshots served from the build,
figures described by their text twins, no cell ever run; in Chromium with only localhost
reachable. Also the CI workflow that runs the README's commands."""

from __future__ import annotations

import base64
import contextlib
import functools
import html
import http.server
import importlib.util
import io
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest

yaml = pytest.importorskip("yaml")
nbformat = pytest.importorskip("nbformat")

from nbformat.v4 import (  # noqa: E402
    new_code_cell,
    new_markdown_cell,
    new_notebook,
    new_output,
)

REPO = Path(__file__).resolve().parent.parent
NODE_MODULES = REPO / "node_modules"
SCREENSHOTS = REPO / "build" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: What a page must never show where a widget is: its repr, or the manager's failures.
WIDGET_FAILURES = ("Error displaying widget", "model not found", "VBox(children=",
                   "HBox(children=", "Loading widget")


def extension() -> ModuleType:
    """book/_ext/offline_book.py, the Sphinx extension the book's config loads."""
    pytest.importorskip("sphinx")
    spec = importlib.util.spec_from_file_location("offline_book",
                                                  REPO / "book" / "_ext" / "offline_book.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def toc_files(toc: Path) -> list[str]:
    """The files of a jb-book table of contents, in reading order."""
    data = yaml.safe_load(toc.read_text())
    files = [data["root"]]
    for part in data.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    files += [c["file"] for c in data.get("chapters", [])]
    return files


def make_html(source: Path, toc: Path, out: Path) -> None:
    """`make html` with another source, table of contents and output directory; the venv and
    node_modules are taken as they are (never reinstalled from here)."""
    if not (NODE_MODULES / "mathjax" / "es5" / "tex-chtml.js").exists():
        message = f"no {NODE_MODULES}/mathjax: run `npm ci` in {REPO} first (make html does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    venv = Path(sys.prefix)
    cmd = ["make", "-s", "-o", f"{venv}/.installed-ksmbook",
           "-o", "node_modules/.package-lock.json", "html",
           f"VENV={venv}", f"BOOK_SOURCE={source}", f"BOOK_TOC={toc}",
           f"HTML_DIR={out}", f"HTML_WORK={out.parent / (out.name + '-work')}"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"{' '.join(cmd)}\n{run.stdout}\n{run.stderr}"


class _ImgThenPre(HTMLParser):
    """The text of the <pre> that follows each <img> of an HTML output."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.twins: list[str] = []
        self._waiting = self._in_pre = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.twins.append("")
            self._waiting = True
        elif tag == "pre" and self._waiting:
            self._in_pre, self._waiting = True, False

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._in_pre = False

    def handle_data(self, data: str) -> None:
        if self._in_pre:
            self.twins[-1] += data


def twins_in_notebook(nb: Any) -> list[str]:
    """For each figure the page of a notebook shows, in order, the text twin the notebook's
    stored outputs print with it (empty if none): what the page must give as its alt text.
    A figure is an image output, followed by the text the cell prints next, or an image in an
    HTML output (a widget's picture), followed by a <pre>."""
    twins = []
    for cell in nb.cells:
        outputs = cell.get("outputs", []) if cell.cell_type == "code" else []
        for i, out in enumerate(outputs):
            data = out.get("data", {})
            if "text/html" in data:  # shown before a widget view or an image (_config.yml)
                parser = _ImgThenPre()
                parser.feed(data["text/html"])
                twins += parser.twins
            elif "image/png" in data and WIDGET_VIEW not in data:
                after = outputs[i + 1] if i + 1 < len(outputs) else None
                twins.append(after.text if after and after.output_type == "stream" else "")
    return [" ".join(t.split()) for t in twins]


def alts_on_page(page: str) -> list[str]:
    return [" ".join(html.unescape(a).split())
            for a in re.findall(r'<img\b[^>]*?\balt="([^"]*)"', page)]


# -- the books ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The book of this repository, built once for this module by `make html`."""
    out = tmp_path_factory.mktemp("real") / "html"
    make_html(REPO / "notebooks", REPO / "book" / "_toc.yml", out)
    return out


def _png() -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1), dpi=50)
    ax.plot([0, 1, 2], [0, 1, 4])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _slider_state() -> tuple[dict[str, Any], dict[str, Any]]:
    """(widget state, view) of an IntSlider moved to 7, as ipywidgets saves them."""
    import ipywidgets
    from ipywidgets.embed import embed_data

    slider = ipywidgets.IntSlider(value=3, min=0, max=10, description="pages")
    slider.value = 7
    data = embed_data(views=[slider])
    return data["manager_state"], data["view_specs"][0]


@pytest.fixture(scope="module")
def sample_book(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(source, output) of a two-page book with math, a figure with its text twin, a saved
    widget, and a cell that would leave a file behind if the build ran it."""
    src = tmp_path_factory.mktemp("sample")
    state, view = _slider_state()
    png = base64.b64encode(_png()).decode()
    figure = new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"})
    twin = new_output("stream", name="stdout", text="VMAs: 1 -> 3\nsplit    at 7ffff7ff9000\n")
    widget = new_output("display_data",
                        data={WIDGET_VIEW: view, "text/plain": "IntSlider(value=7)"})
    picture = new_output("display_data", data={  # a widget's view with a picture of it
        WIDGET_VIEW: view, "text/plain": "the picture's note and twin",
        "text/html": f'<p>A picture.</p><img src="data:image/png;base64,{png}" alt="short">'
                     '<pre>pages: 7\n&lt;one line&gt;</pre>'})
    first = new_notebook(metadata={"kernelspec": KERNELSPEC,
                                   "widgets": {WIDGET_STATE: state}}, cells=[
        new_markdown_cell("# Sample chapter\n\nA pass takes $\\lceil P / n \\rceil$ batches:\n\n"
                          "$$\\sum_{i=1}^{n} p_i = P$$"),
        new_code_cell("show()", outputs=[figure, twin], execution_count=1),
        new_code_cell("slider", outputs=[widget], execution_count=2),
        new_code_cell("explorer", outputs=[picture], execution_count=3),
        new_code_cell("open('EXECUTED', 'w').write('the build ran a cell')", execution_count=4),
    ])
    second = new_notebook(metadata={"kernelspec": KERNELSPEC}, cells=[
        new_markdown_cell("# Second chapter\n\nUnmergeable pages and ksmd.")])
    nbformat.write(first, src / "01-sample.ipynb")
    nbformat.write(second, src / "02-second.ipynb")
    toc = src / "_toc.yml"
    toc.write_text("format: jb-book\nroot: 01-sample\nchapters:\n  - file: 02-second\n")
    out = tmp_path_factory.mktemp("sample-build") / "html"
    make_html(src, toc, out)
    return src, out


# -- the build ------------------------------------------------------------------------------

def test_every_page_of_the_table_of_contents_is_built(real_book: Path) -> None:
    files = toc_files(REPO / "book" / "_toc.yml")
    chapters = sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb"))
    chapters = sorted(chapters + [p.stem for p in (REPO / "notebooks").glob("*.md")])
    # Every notebook (the playgrounds and the appendix too) and the glossary is in the book.
    assert sorted(files) == chapters
    for name in files:
        assert (real_book / f"{name}.html").stat().st_size > 0, name
    assert f'url={files[0]}.html' in (real_book / "index.html").read_text()
    assert (real_book / "search.html").exists() and (real_book / "searchindex.js").exists()
    for asset in ("mathjax/tex-chtml.js", "mathjax/output/chtml/fonts/woff-v2",
                  "html-manager/embed-amd.js", "require.js", "widgets-config.js"):
        assert (real_book / "_static" / asset).exists(), asset


def test_no_page_loads_from_another_host(real_book: Path, sample_book: tuple[Path, Path]
                                         ) -> None:
    offline_violations = extension().offline_violations
    for out in (real_book, sample_book[1]):
        for page in out.rglob("*.html"):
            assert offline_violations(page.read_text()) == [], page


def test_offline_violations_catches_remote_loads() -> None:
    offline_violations = extension().offline_violations
    assert offline_violations('<a href="https://example.org">fine, a link</a>') == []
    assert offline_violations('<link rel="canonical" href="https://example.org/">') == []
    assert offline_violations('<script src="_static/x.js"></script>') == []
    assert offline_violations('<script src="https://cdnjs.cloudflare.com/r.js"></script>')
    assert offline_violations('<link rel="stylesheet" href="//fonts.example/x.css">')
    assert offline_violations('<img src="HTTP://example.org/a.png">')
    assert offline_violations('<script>import("https://x.example/m.mjs")</script>')
    assert offline_violations("<style>@import url('https://x.example/a.css');</style>")
    assert offline_violations("<script>var u = 'unpkg.com';</script>") == ["unpkg.com"]
    assert offline_violations('<script src="x.js" data-jupyter-widgets-cdn="https://a.b/">'
                              '</script>')


def test_every_figure_has_its_text_twin_as_alt_text(real_book: Path) -> None:
    figures = 0
    for name in toc_files(REPO / "book" / "_toc.yml"):
        if not (REPO / "notebooks" / f"{name}.ipynb").exists():
            continue  # a markdown page (the glossary) has no figures
        twins = twins_in_notebook(nbformat.read(REPO / "notebooks" / f"{name}.ipynb", 4))
        assert all(twins), f"{name}: a figure with no text printed after it"
        assert alts_on_page((real_book / f"{name}.html").read_text()) == twins, name
        figures += len(twins)
    assert figures > 0


def test_the_build_runs_no_cell_and_keeps_the_stored_outputs(sample_book: tuple[Path, Path]
                                                              ) -> None:
    src, out = sample_book
    assert not list(src.rglob("EXECUTED")) and not list(out.parent.rglob("EXECUTED"))
    assert not (REPO / "EXECUTED").exists()
    page = (out / "01-sample.html").read_text()
    assert alts_on_page(page) == ["VMAs: 1 -> 3 split at 7ffff7ff9000", "pages: 7 <one line>"]
    # A widget's view is drawn where the widget has no picture; the picture is shown otherwise.
    assert page.count(f'<script type="{WIDGET_VIEW}">') == 1
    state = re.search(rf'<script type="{re.escape(WIDGET_STATE)}">(.*?)</script>', page, re.S)
    assert state and '"value": 7' in state.group(1)
    assert 'src="_static/html-manager/embed-amd.js"' in page
    # A page without widgets loads no widget manager.
    assert "embed-amd.js" not in (out / "02-second.html").read_text()


# -- the CI workflow --------------------------------------------------------------------------

def _readme_commands() -> set[str]:
    readme = (REPO / "README.md").read_text()
    return set(re.findall(r"`(make [a-z-]+)`", readme)) | set(
        re.findall(r"^(make [a-z-]+)\b", readme, re.M))


def test_static_pages_invite_no_run_and_fold_an_answer_under_each_exercise(
        real_book: Path) -> None:
    """Nothing runs in the HTML book: no picture says "Run the cell"; every exercise that the
    stored notebook leaves unanswered has its answer folded under it, the answer that
    ``solution()`` gives for the exercise the page shows."""
    import json

    from ksmbook.exercises import chapter_exercises

    pages = sorted(real_book.glob("[0-9][0-9]-*.html"))
    assert [int(page.name[:2]) for page in pages] == list(range(len(pages)))
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "Run the cell" not in text, page.name
        nb = json.loads((REPO / "notebooks" / f"{page.stem}.ipynb").read_text())
        unanswered = sum("Not answered yet" in "".join(o.get("text", ""))
                         for c in nb["cells"] for o in c.get("outputs", []))
        assert unanswered > 0, page.name
        assert text.count("<summary>Show the answer</summary>") == unanswered, page.name
        for exercise in chapter_exercises(int(page.name[:2])):  # every one, chapter 9's too
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exercise.solution()
            first = out.getvalue().strip().splitlines()[0]  # "Answer: ..."
            assert html.escape(first) in text, (page.name, exercise.title)


def test_ci_workflow_runs_the_readme_commands_and_publishes_the_book() -> None:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "book.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert {"push", "pull_request"} <= set(triggers)
    jobs = workflow["jobs"]
    steps = [s for job in jobs.values() for s in job.get("steps", [])]
    runs = [line.strip() for s in steps if "run" in s for line in s["run"].splitlines()]
    makes = [r for r in runs if r.startswith("make")]
    assert makes == ["make test", "make html"]
    assert set(makes) <= _readme_commands()
    # What make installs from Debian for the tests (scripts/system_deps.sh), the workflow
    # installs too.
    deps = (REPO / "scripts" / "system_deps.sh").read_text()
    wanted = {pkg for group in re.findall(r"need\+=\(([^)]*)\)", deps) for pkg in group.split()}
    apt = {p for r in runs if r.startswith("apt-get install") for p in r.split()[2:]
           if not p.startswith("-")}
    assert wanted and wanted <= apt
    uses = {s["uses"].split("@")[0]: s for s in steps if "uses" in s}
    assert uses["actions/upload-pages-artifact"]["with"]["path"] == "build/html"
    deploy = [j for j in jobs.values()
              if any(s.get("uses", "").startswith("actions/deploy-pages@") for s in j["steps"])]
    assert len(deploy) == 1
    assert "refs/heads/main" in deploy[0]["if"]
    assert deploy[0]["permissions"] == {"pages": "write", "id-token": "write"}


# -- in a browser, offline --------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
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
    """`directory` over HTTP on 127.0.0.1."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Offline:
    """A browser context that lets only localhost, data: and blob: through, and counts the
    rest (blocked) and the local files asked for and not there (failed)."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.blocked: list[str] = []
        self.failed: list[str] = []
        self.requests: list[str] = []
        self.context.route("**/*", self._route)
        self.context.on("response", lambda r: r.status >= 400
                        and self.failed.append(f"{r.status} {r.url}"))

    def _route(self, route: Any) -> None:
        url = route.request.url
        self.requests.append(url)
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or parts.hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


#: The prose of the page's article without code: where raw TeX would show if math were not
#: rendered.
PROSE = """() => { const a = document.querySelector('article').cloneNode(true);
    a.querySelectorAll('pre, code, script, mjx-container').forEach(e => e.remove());
    return a.innerText; }"""
RAW_TEX = re.compile(r"\$\$|\$[^$\s][^$]*\$|\\\(|\\\[")
#: True once every saved widget view on the page has been rendered by the HTML manager.
ALL_VIEWS_RENDERED = f"""() => Array.from(document.querySelectorAll(
    'script[type="{WIDGET_VIEW}"]')).every(s => s.parentElement.querySelector('.lm-Widget'))"""


@pytest.mark.browser
def test_every_page_offline(browser: Any, real_book: Path) -> None:
    files = toc_files(REPO / "book" / "_toc.yml")
    net = Offline(browser)
    page = net.context.new_page()
    with serve(real_book) as url:
        page.goto(f"{url}/index.html")
        page.wait_for_url(f"**/{files[0]}.html")
        for i, name in enumerate(files):
            if i:
                page.goto(f"{url}/{name}.html")
            page.wait_for_load_state("load")
            # The table of contents lists every page.
            toc = page.eval_on_selector_all("nav.bd-docs-nav a", "as => as.map(a => "
                                            "new URL(a.href).pathname.split('/').pop())")
            assert {f"{f}.html" for f in files} <= set(toc), name
            prev = page.locator(".prev-next-area a.left-prev")
            nxt = page.locator(".prev-next-area a.right-next")
            assert prev.count() == (1 if i else 0), name
            assert nxt.count() == (1 if i + 1 < len(files) else 0), name
            if i + 1 < len(files):
                assert nxt.get_attribute("href") == f"{files[i + 1]}.html"
            source = REPO / "notebooks" / f"{name}.ipynb"
            nb = nbformat.read(source, 4) if source.exists() else nbformat.v4.new_notebook()
            if nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state"):
                page.wait_for_function(ALL_VIEWS_RENDERED, timeout=30_000)
            body = page.inner_text("body")
            for failure in WIDGET_FAILURES:
                assert failure not in body, (name, failure)
            assert not RAW_TEX.search(page.evaluate(PROSE)), name
            images = page.evaluate("Array.from(document.querySelectorAll('article img'))"
                                   ".map(i => [i.alt, i.complete && i.naturalWidth > 0])")
            assert all(alt.strip() and loaded for alt, loaded in images), name
            assert len(images) == len(twins_in_notebook(nb)), name
        page.goto(f"{url}/{files[2]}.html")
        shot(page, "chapter-top")
        page.locator("article img").first.scroll_into_view_if_needed()
        shot(page, "chapter-figure")
        page.locator(".prev-next-area a.right-next").click()
        page.wait_for_url(f"**/{files[3]}.html")
        page.goto(f"{url}/{files[-1]}.html")
        if page.locator("article img").count():
            page.locator("article img").last.scroll_into_view_if_needed()
        shot(page, "playground")
    assert net.blocked == [] and net.failed == []
    net.context.close()


@pytest.mark.browser
def test_search_finds_a_word(browser: Any, real_book: Path) -> None:
    net = Offline(browser)
    page = net.context.new_page()
    with serve(real_book) as url:
        page.goto(f"{url}/02-madvise.html")
        page.locator("button.search-button-field").first.click()
        box = page.locator("input[name=q]:visible")
        box.fill("ksmd")
        box.press("Enter")
        page.wait_for_url("**/search.html?q=ksmd*")
        results = page.locator("#search-results ul.search li")
        results.first.wait_for(timeout=30_000)
        assert results.count() >= 3
        hrefs = results.evaluate_all("ls => ls.map(l => l.querySelector('a').getAttribute("
                                     "'href'))")
        assert any(h.startswith("07-what-ksm-does-with-the-advice.html") for h in hrefs)
        shot(page, "search")
    assert net.blocked == [] and net.failed == []
    net.context.close()


@pytest.mark.browser
def test_math_and_widget_snapshot_render_offline(browser: Any,
                                                sample_book: tuple[Path, Path]) -> None:
    _, out = sample_book
    net = Offline(browser)
    page = net.context.new_page()
    with serve(out) as url:
        page.goto(f"{url}/01-sample.html")
        page.locator("mjx-container").first.wait_for(timeout=30_000)
        assert page.locator("mjx-container").count() == 2
        assert page.locator("mjx-container[display=true]").count() == 1
        assert not RAW_TEX.search(page.evaluate(PROSE))
        page.wait_for_function(ALL_VIEWS_RENDERED, timeout=30_000)
        # The snapshot is the saved state: the slider was moved to 7.
        assert page.inner_text(".widget-slider .widget-readout").strip() == "7"
        assert page.inner_text(".widget-slider .widget-label").strip() == "pages"
        body = page.inner_text("body")
        for failure in WIDGET_FAILURES:
            assert failure not in body, failure
        assert page.get_attribute("article img", "alt") == "VMAs: 1 -> 3 split    at 7ffff7ff9000"
        shot(page, "math-and-widget")
    assert net.blocked == [] and net.failed == []
    assert any(u.endswith("/_static/mathjax/tex-chtml.js") for u in net.requests)
    assert any(u.endswith("/_static/html-manager/embed-amd.js") for u in net.requests)
    net.context.close()
