"""The static HTML book: ``python -m ksmbook.book html`` (``make html``).

Every chapter notebook (``notebooks/NN-*.ipynb``) is executed afresh in memory with nbconvert's
ExecutePreprocessor, saving the widget state (``store_widget_state=True``); the committed
notebooks are never written. Each is exported with nbconvert's HTML exporter into
``build/html/NN-*.html`` with previous/next links, and an ``index.html`` lists the chapters by
the first heading of each notebook.

The pages work offline. nbconvert's templates load requirejs, MathJax, Mermaid and the widget
HTML manager from CDNs; here requirejs and ``@jupyter-widgets/html-manager`` come from npm
(``npm ci`` into ``node_modules/``, pinned by the committed package-lock.json) and are copied into
``build/html/_static/``. The page template points the script tags there, drops the MathJax and
Mermaid loaders (a page shows TeX source instead), and names a local directory as the widget
manager's fallback "CDN", so an unknown widget module fails on this host instead of reaching
out. The build refuses to finish if a page still loads anything from another host.
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

__all__ = ["BookError", "Chapter", "build_html", "chapter_title", "offline_violations",
           "main", "REPO", "STATIC"]

#: The repository (where package.json and node_modules/ live).
REPO = Path(__file__).resolve().parent.parent
#: Where the copied JavaScript goes, relative to the output directory.
STATIC = "_static"
_LEFT, _RIGHT = "\u2190", "\u2192"
_NOTEBOOK = re.compile(r"\d\d-.+\.ipynb\Z")
_HTML_MANAGER = "@jupyter-widgets/html-manager/dist"
_REQUIREJS = "requirejs/require.js"
#: Hosts nbconvert's templates and the widget manager would load from.
CDN_HOSTS = ("cdn.jsdelivr.net", "unpkg.com", "cdnjs.cloudflare.com")

_TEMPLATE = """\
{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}
<script src="_static/require.js" data-jupyter-widgets-cdn="_static/widget-modules/"></script>
<script>require.config({baseUrl: "_static/html-manager/"});</script>
{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<link rel="stylesheet" href="_static/book.css">
{%- endblock extra_css -%}
{%- block body_header -%}
{{ super() }}
{{ resources.book_nav }}
{%- endblock body_header -%}
{% block body_footer %}
{{ resources.book_nav }}
</main>
</body>
{% endblock body_footer %}
"""

_CSS = """\
nav.book-nav { display: flex; justify-content: space-between; gap: 1em; margin: 0.5em 0 1em;
  padding: 0.5em 0; border-bottom: 1px solid #ccc; font-family: sans-serif; font-size: 0.95em; }
nav.book-nav + * { margin-top: 0; }
main > nav.book-nav:last-child { border-bottom: none; border-top: 1px solid #ccc; margin-top: 2em; }
nav.book-nav a { text-decoration: none; }
nav.book-nav .prev, nav.book-nav .next { flex: 1; }
nav.book-nav .next { text-align: right; }
.jupyter-widgets { font-family: var(--jp-ui-font-family, sans-serif);
  font-size: var(--jp-ui-font-size1, 13px); }
body.book-index { max-width: 48em; margin: 2em auto; font-family: sans-serif; line-height: 1.5; }
body.book-index ol { padding-left: 1.5em; }
"""


class BookError(RuntimeError):
    """The book cannot be built; the message says what to do."""


@dataclass(frozen=True)
class Chapter:
    """One page of the book."""

    source: Path
    title: str

    @property
    def page(self) -> str:
        return self.source.with_suffix(".html").name


def chapter_title(nb: Any, fallback: str) -> str:
    """The text of the notebook's first Markdown heading (any level), else `fallback`."""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            m = re.match(r"\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", line)
            if m:
                text = re.sub(r"[*_`]", "", m.group(1))
                return re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).strip()
    return fallback


def _nav(chapters: Sequence[Chapter], i: int | None) -> str:
    """Previous / contents / next links for page i (None: the index page)."""
    pages = [("index.html", "Contents")] + [(c.page, c.title) for c in chapters]
    here = 0 if i is None else i + 1

    def link(j: int, cls: str, arrow: str) -> str:
        if not 0 <= j < len(pages):
            return f'<span class="{cls}"></span>'
        href, title = pages[j]
        text = (f"{arrow} {html.escape(title)}" if arrow == _LEFT
                else f"{html.escape(title)} {arrow}")
        return f'<a class="{cls}" rel="{cls}" href="{href}">{text}</a>'

    middle = '<a class="contents" href="index.html">Contents</a>' if here > 1 else ""
    return (f'<nav class="book-nav">{link(here - 1, "prev", _LEFT)}{middle}'
            f'{link(here + 1, "next", _RIGHT)}</nav>')


def _index_page(chapters: Sequence[Chapter], title: str) -> str:
    items = "\n".join(f'  <li><a href="{c.page}">{html.escape(c.title)}</a></li>'
                      for c in chapters)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{html.escape(title)}</title>
<link rel="stylesheet" href="{STATIC}/book.css">
</head>
<body class="book-index">
<main>
{_nav(chapters, None)}
<h1>{html.escape(title)}</h1>
<ol start="0">
{items}
</ol>
</main>
</body>
</html>
"""


class _Loads(HTMLParser):
    """Collects the URLs a page loads (not the ones it merely links to)."""

    _ATTRS = {"script": "src", "img": "src", "iframe": "src", "source": "src", "embed": "src",
              "audio": "src", "video": "src", "link": "href", "object": "data"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self._in: str | None = None
        self.code: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        want = self._ATTRS.get(tag)
        for name, value in attrs:
            if value and (name == want or name.startswith("data-jupyter-widgets-cdn")):
                self.urls.append(value)
        if tag in ("script", "style"):
            self._in = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.code.append(data)


def offline_violations(page: str) -> list[str]:
    """What in an HTML page would be fetched from another host: script/img/link/... URLs,
    imports and url() in inline code, and any mention of a CDN host."""
    parser = _Loads()
    parser.feed(page)
    bad = [u for u in parser.urls if re.match(r"(?i)(https?:)?//", u.strip())]
    code = "\n".join(parser.code)
    bad += re.findall(r"(?i)(?:import\s*\(\s*|url\(\s*)['\"]?((?:https?:)?//[^'\")\s]+)", code)
    bad += [h for h in CDN_HOSTS if h in page]
    return bad


def _vendor(node_modules: Path, static: Path) -> None:
    """Copy the widget HTML manager and requirejs from node_modules into _static."""
    manager, requirejs = node_modules / _HTML_MANAGER, node_modules / _REQUIREJS
    for needed in (manager / "embed-amd.js", requirejs):
        if not needed.exists():
            raise BookError(f"{needed} is missing: run `npm ci` in {node_modules.parent} "
                            "(package.json and package-lock.json list what the HTML book "
                            "serves: @jupyter-widgets/html-manager and requirejs)")
    shutil.copytree(manager, static / "html-manager",
                    ignore=shutil.ignore_patterns("*.map", "embed.js", "embed.js.*",
                                                  "libembed-amd.js", "*.md"))
    # The widget bundles are AMD modules named "@jupyter-widgets/..."; webpack resolves their
    # fonts against the module's URL, which requirejs derives from baseUrl (the page template
    # sets it to html-manager/) and the module name.
    fonts = [f for f in (static / "html-manager").iterdir()
             if f.suffix in (".woff", ".woff2", ".ttf", ".eot", ".svg")]
    for sub in ("@jupyter-widgets", "@jupyter-widgets/html-manager/dist"):
        (static / "html-manager" / sub).mkdir(parents=True)
        for f in fonts:
            shutil.copy2(f, static / "html-manager" / sub / f.name)
    shutil.copy2(requirejs, static / "require.js")
    (static / "widget-modules").mkdir()
    (static / "book.css").write_text(_CSS, encoding="utf-8")


def _execute(nb: Any, cwd: Path, timeout: int) -> Any:
    """Run every cell of `nb` (in memory) in `cwd`, saving the widget state."""
    from nbconvert.preprocessors import CellExecutionError, ExecutePreprocessor

    ep = ExecutePreprocessor(timeout=timeout, kernel_name="python3", store_widget_state=True)
    try:
        ep.preprocess(nb, {"metadata": {"path": str(cwd)}})
    except CellExecutionError as e:
        raise BookError("a cell failed:\n" + re.sub(r"\x1b\[[0-9;]*m", "", str(e))) from None
    return nb


def build_html(notebooks: Path, out: Path, *, node_modules: Path | None = None,
               timeout: int = 300, title: str = "ksmbook", log: Any = None) -> list[Chapter]:
    """Build the book from `notebooks` into `out` (replaced); returns the chapters."""
    import nbformat
    from nbconvert import HTMLExporter

    say = log or (lambda *_: None)
    sources = sorted(p for p in notebooks.glob("*.ipynb") if _NOTEBOOK.match(p.name))
    if not sources:
        raise BookError(f"no chapter notebooks (NN-name.ipynb) in {notebooks}")
    node_modules = node_modules or REPO / "node_modules"

    with tempfile.TemporaryDirectory(prefix="ksmbook-html-") as tmp:
        stage = Path(tmp) / "html"
        static = stage / STATIC
        static.mkdir(parents=True)
        _vendor(node_modules, static)
        templates = Path(tmp) / "templates"
        templates.mkdir()
        (templates / "book.html.j2").write_text(_TEMPLATE, encoding="utf-8")

        executed = []
        for src in sources:
            t0 = time.monotonic()
            nb = nbformat.read(src, as_version=4)
            try:
                _execute(nb, src.parent, timeout)
            except BookError as e:
                raise BookError(f"{src}: {e}") from None
            executed.append((src, nb))
            say(f"executed {src.name} in {time.monotonic() - t0:.1f} s")
        chapters = [Chapter(src, chapter_title(nb, src.stem)) for src, nb in executed]

        exporter = HTMLExporter(template_name="lab",
                                template_file=str(templates / "book.html.j2"),
                                widget_renderer_url=f"{STATIC}/html-manager/embed-amd.js")
        for i, (chapter, (_, nb)) in enumerate(zip(chapters, executed, strict=True)):
            nb.metadata["title"] = chapter.title
            body, _ = exporter.from_notebook_node(nb, resources={"book_nav": _nav(chapters, i)})
            (stage / chapter.page).write_text(body, encoding="utf-8")
        (stage / "index.html").write_text(_index_page(chapters, title), encoding="utf-8")

        for page in sorted(stage.glob("*.html")):
            bad = offline_violations(page.read_text(encoding="utf-8"))
            if bad:
                raise BookError(f"{page.name} would load from other hosts: {sorted(set(bad))}")
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(stage, out)
    return chapters


def _summary(out: Path) -> str:
    pages = sorted(out.glob("*.html"))
    text = "".join(p.read_text(encoding="utf-8") for p in pages)
    views = text.count('<script type="application/vnd.jupyter.widget-view+json">')
    images = len(re.findall(r'<img[^>]+src="data:image/', text))
    return f"{len(pages)} pages ({images} images, {views} widget views) in {out}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ksmbook.book",
                                     description="Build the book from its notebooks.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("html", help="execute the notebooks and write a static HTML book",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--notebooks", type=Path, default=REPO / "notebooks",
                   help="the chapter notebooks (default: notebooks/)")
    p.add_argument("--out", type=Path, default=REPO / "build" / "html",
                   help="output directory, replaced (default: build/html/)")
    p.add_argument("--node-modules", type=Path, default=REPO / "node_modules",
                   help="where `npm ci` installed the JavaScript (default: node_modules/)")
    p.add_argument("--timeout", type=int, default=300, help="seconds per cell (default 300)")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    try:
        build_html(args.notebooks, args.out, node_modules=args.node_modules,
                   timeout=args.timeout, log=print)
    except BookError as e:
        print(f"book: {e}", file=sys.stderr)
        return 1
    print(f"built {_summary(args.out)} in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

