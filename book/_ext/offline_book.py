"""Sphinx extension for the HTML book (loaded by book/_config.yml).

Offline: MathJax (npm ``mathjax``), requirejs and the ipywidgets HTML manager
(``@jupyter-widgets/html-manager``) are copied from node_modules/ (``npm ci``, pinned by
package-lock.json) into the build's ``_static/``; _config.yml points ``mathjax_path`` and
``nb_ipywidgets_js`` there. The build fails if a page would still load anything from another
host.

Static pages: nothing runs in the HTML book, so the pictures of widgets do not invite the reader
to "run the cell" (they say where the widget is live instead), and under each exercise whose
stored output is "Not answered yet" a folded "Show the answer" gives the answer with its trace,
computed at build time by ``ksmbook.exercises`` from the exercise the page shows.

Alt text: every figure in the book is followed by its text twin (``ksmbook.render``): a figure a
cell displays, by the text the cell prints next; the picture of a widget (an HTML output), by
the ``<pre>`` right after its ``<img>``. The figure's alt text is that text.
"""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

BOOK = Path(__file__).resolve().parent.parent
NODE_MODULES = BOOK.parent / "node_modules"

#: (what node_modules holds, where it goes under _static/, which files of it are left behind)
VENDORED = (
    # MathJax's components and fonts, and of its combined bundles only tex-chtml.js.
    ("mathjax/es5", "mathjax", ("*.md", "latest.js", "node-main.js", "tex-mml-*.js",
                                "tex-svg*.js", "tex-chtml-*.js", "mml-*.js")),
    ("@jupyter-widgets/html-manager/dist", "html-manager",
     ("*.map", "*.md", "embed.js", "libembed-amd.js")),
    ("requirejs/require.js", "require.js", ()),
)
#: Hosts the default configuration of Jupyter Book's parts would load from.
CDN_HOSTS = ("cdn.jsdelivr.net", "unpkg.com", "cdnjs.cloudflare.com")
_FONTS = (".woff", ".woff2", ".ttf", ".eot", ".svg")


def _check_node_modules(app: Sphinx) -> None:
    for source, _, _ in VENDORED:
        if not (NODE_MODULES / source).exists():
            raise ExtensionError(
                f"{NODE_MODULES / source} is missing: run `npm ci` in {NODE_MODULES.parent} "
                "(`make html` does; package.json lists what the HTML book serves)")


def _static_path(app: Sphinx, config: object) -> None:
    app.config.html_static_path.append(str(BOOK / "_static"))
    app.add_css_file("ksmbook.css")


def _vendor(static: Path) -> None:
    """Copy what VENDORED lists into `static`."""
    for source, target, leave in VENDORED:
        src, dst = NODE_MODULES / source, static / target
        if dst.exists():
            shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*leave))
        else:
            shutil.copy2(src, dst)
    # The widget bundles are AMD modules named "@jupyter-widgets/..."; webpack resolves their
    # fonts against the module's URL, which requirejs derives from baseUrl (html-manager/, set
    # by widgets-config.js) and the module name.
    manager = static / "html-manager"
    fonts = [f for f in manager.iterdir() if f.suffix in _FONTS]
    for sub in ("@jupyter-widgets", "@jupyter-widgets/html-manager/dist"):
        (manager / sub).mkdir(parents=True)
        for f in fonts:
            shutil.copy2(f, manager / sub / f.name)


# -- alt text -----------------------------------------------------------------------------------

def _is_stream(node: nodes.Node) -> bool:
    return isinstance(node, nodes.literal_block) and "stream" in node.get("classes", ())


def text_twins(doctree: nodes.document) -> Iterator[tuple[nodes.image, str]]:
    """(image, text) for each image of a cell's output followed directly by printed text."""
    for image in list(doctree.findall(nodes.image)):
        parent = image.parent
        if parent is None or "cell_output" not in parent.get("classes", ()):
            continue
        following = parent.children[parent.index(image) + 1:]
        if following and _is_stream(following[0]):
            yield image, following[0].astext().strip()


#: An <img> with a <pre> right after it, in an HTML output: groups (img up to its alt value),
#: (its alt value), (the rest of the img and the pre's start tag), (the pre's text).
_IMG_THEN_PRE = re.compile(r'(<img\b[^>]*?\balt=")([^"]*)("[^>]*>\s*<pre\b[^>]*>)(.*?)(?=</pre>)',
                           re.S)


def alt_from_pre(page: str) -> str:
    """`page` (HTML) with each <img> followed by a <pre> described by the pre's text."""
    return _IMG_THEN_PRE.sub(
        lambda m: m[1] + html.escape(html.unescape(m[4]).strip()) + m[3] + m[4], page)


#: What a widget's picture (or the note left where a widget was) says in a notebook, and what
#: it says in the HTML book, where no cell runs.
RUN_NOTES = (
    ("Run the cell to make it live.",
     "In the notebook, opened in JupyterLab, running the cell makes it live."),
    ("Run the cell to show it.",
     "In the notebook, opened in JupyterLab, running the cell shows it."),
)


def static_wording(text: str) -> str:
    for notebook, book in RUN_NOTES:
        text = text.replace(notebook, book)
    return text


def _static_pictures(doctree: nodes.document) -> None:
    for raw in list(doctree.findall(nodes.raw)):
        fixed = static_wording(raw.astext())
        if fixed != raw.astext():
            raw.replace_self(nodes.raw(fixed, fixed, **raw.attributes))
    for block in list(doctree.findall(nodes.literal_block)):
        fixed = static_wording(block.astext())
        if fixed != block.astext():
            block.replace_self(nodes.literal_block(fixed, fixed, **block.attributes))


_EXERCISE = re.compile(r"^Exercise (\d+)\.(\d+)\s+\[([^\]]+)\]")


def exercise_answer(chapter: int, number: int, title: str) -> str | None:
    """The answer and trace of exercise `chapter`.`number` as ``solution()`` prints it, or None
    when the exercise the registry gives is not the one the page shows (`title`: its id)."""
    import contextlib
    import io

    from ksmbook.exercises import chapter_exercises

    try:
        problems = chapter_exercises(chapter)
    except ValueError:  # a chapter whose exercises are not in the registry's chapter sets
        return None
    if not 0 < number <= len(problems):
        return None
    problem = problems[number - 1]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        problem.show()
    m = _EXERCISE.match(out.getvalue())
    if m is None or m[3] != title:
        return None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        problem.solution()
    return out.getvalue().strip()


def _folded_answers(doctree: nodes.document) -> None:
    """After the "Not answered yet" output of each exercise, its answer in a <details>."""
    shown: tuple[int, int, str] | None = None
    for block in list(doctree.findall(nodes.literal_block)):
        if not _is_stream(block):
            continue
        text = block.astext()
        m = _EXERCISE.match(text)
        if m:
            shown = (int(m[1]), int(m[2]), m[3])
            continue
        if shown is None or not text.startswith("Not answered yet"):
            continue
        answer = exercise_answer(*shown)
        shown = None
        if answer is None:
            continue
        folded = ('<details class="ksm-answer"><summary>Show the answer</summary>'
                  f'<pre>{html.escape(answer)}</pre></details>')
        parent = block.parent
        parent.insert(parent.index(block) + 1, nodes.raw("", folded, format="html"))


def _set_alt(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    _static_pictures(doctree)
    _folded_answers(doctree)
    for image, text in text_twins(doctree):
        image["alt"] = text
    for raw in list(doctree.findall(nodes.raw)):
        if raw.get("format") == "html" and "<img" in raw.astext():
            fixed = alt_from_pre(raw.astext())
            if fixed != raw.astext():
                raw.replace_self(nodes.raw(fixed, fixed, **raw.attributes))


# -- offline check ------------------------------------------------------------------------------

class _Loads(HTMLParser):
    """Collects the URLs a page loads (not the ones it merely links to) and its inline code."""

    _ATTRS = {"script": "src", "img": "src", "iframe": "src", "source": "src", "embed": "src",
              "audio": "src", "video": "src", "link": "href", "object": "data"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self.code: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        want = self._ATTRS.get(tag)
        rel = dict(attrs).get("rel") or ""
        for name, value in attrs:
            if not value:
                continue
            if tag == "link" and not re.search(r"stylesheet|icon|preload|modulepreload", rel):
                continue
            if name == want or name == "data-jupyter-widgets-cdn":
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
    """What an HTML page would fetch from another host: script/img/stylesheet/... URLs,
    imports and url() in inline code, and any mention of a CDN host."""
    parser = _Loads()
    parser.feed(page)
    bad = [u for u in parser.urls if re.match(r"(?i)\s*(https?:)?//", u)]
    code = "\n".join(parser.code)
    bad += re.findall(r"(?i)(?:import\s*\(\s*|url\(\s*)['\"]?((?:https?:)?//[^'\")\s]+)", code)
    bad += [h for h in CDN_HOSTS if h in page]
    return bad


def _finish(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir)
    _vendor(out / "_static")
    for page in sorted(out.rglob("*.html")):
        bad = offline_violations(page.read_text(encoding="utf-8"))
        if bad:
            raise ExtensionError(f"{page.relative_to(out)} would load from other hosts: "
                                 f"{sorted(set(bad))}")


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("config-inited", _static_path)
    app.connect("builder-inited", _check_node_modules)
    app.connect("doctree-resolved", _set_alt)
    app.connect("build-finished", _finish)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
