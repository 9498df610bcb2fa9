#!/usr/bin/env python3
"""Strip run-to-run noise from notebooks in place, KEEPING their outputs (nbval compares them).

Removed:
- notebook ``metadata.signature``, and the saved ipywidgets state: ``metadata.widgets`` becomes
  the empty state that JupyterLab writes on saving a notebook with no live widget when
  widget-state saving is on (the book turns it off, ``jupyter-config/``, and JupyterLab then
  keeps what the file holds), so opening and saving changes nothing either way;
- per-cell execution timing (``metadata.execution`` from JupyterLab, ``metadata.ExecuteTime``)
  and view-only cell metadata (``collapsed``, ``scrolled``);
- widget views (``application/vnd.jupyter.widget-view+json``) from outputs: their models are
  not stored, so a front end would say "model not found". The widgets of ksmbook display a
  picture of themselves as an output of its own (``text/html``, with a note that running the
  cell makes them live), which stays, and their view output (an empty ``text/plain``) goes.
  Any other output that was only a widget view (and its repr) becomes a note, never the repr;
- where a stream was flushed: adjacent outputs of one stream become one;
- execution-count noise: the counts of the code cells that ran are renumbered 1, 2, 3, ... in
  cell order (and their ``execute_result`` outputs with them), so re-running a cell by hand or
  restarting the kernel does not churn the diff. They are NOT nulled: nbval fails a cell whose
  stored count is null but that has outputs ("Unrun reference cell has outputs"), which is what
  ``nbstripout --keep-output`` without ``--keep-count`` does.

Set: ``metadata.kernelspec`` to what JupyterLab writes when it opens the notebook with the
book's kernel (ipykernel's ``python3``, "Python 3 (ipykernel)"), so that opening and closing a
notebook changes nothing (``metadata.language_info`` is what that kernel reported when the
notebook was executed; it stays).

Kept: every output, cell tags (``nbval-ignore-output`` and friends), cell ids.

Usage:
    python scripts/strip_notebooks.py notebooks/*.ipynb          # rewrite in place
    python scripts/strip_notebooks.py --check notebooks/*.ipynb  # exit 1 if any would change

The file is written as JupyterLab writes it (nbformat's JSON layout), so a notebook saved from
JupyterLab and then stripped differs only by the noise above.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["strip_notebook", "strip_file", "main"]

NOTEBOOK_METADATA_KEYS = ("widgets", "signature")
#: ``metadata.widgets`` as JupyterLab saves it when no widget is live.
EMPTY_WIDGET_STATE = {"application/vnd.jupyter.widget-state+json": {
    "state": {}, "version_major": 2, "version_minor": 0}}
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: What an output that was only a widget view says once the view is removed.
WIDGET_NOTE = "A widget was shown here when this notebook was executed. Run the cell to show it."
CELL_METADATA_KEYS = ("execution", "ExecuteTime", "collapsed", "scrolled")
#: The kernelspec JupyterLab records for the book's kernel (ipykernel's kernel.json).
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def strip_notebook(nb: dict[str, Any]) -> dict[str, Any]:
    """Strip ``nb`` (a parsed .ipynb) in place and return it."""
    meta = nb.get("metadata", {})
    for key in NOTEBOOK_METADATA_KEYS:
        meta.pop(key, None)
    if nb.get("metadata") is not None:
        meta["kernelspec"] = dict(KERNELSPEC)
        meta["widgets"] = json.loads(json.dumps(EMPTY_WIDGET_STATE))
    count = 0
    for cell in nb.get("cells", []):
        cmeta = cell.get("metadata", {})
        for key in CELL_METADATA_KEYS:
            cmeta.pop(key, None)
        if cell.get("cell_type") != "code":
            continue
        if cell.get("execution_count") is None and not cell.get("outputs"):
            continue  # never run: stays unrun
        count += 1
        cell["execution_count"] = count
        for out in cell.get("outputs", []):
            if out.get("output_type") == "execute_result":
                out["execution_count"] = count
        cell["outputs"] = coalesce_streams(
            [out for out in cell.get("outputs", []) if strip_widget_view(out)])
    return nb


def coalesce_streams(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adjacent outputs of one stream (stdout, stderr) made one, as JupyterLab's output area
    shows and saves them: where the kernel flushed a print is timing, not content."""
    out: list[dict[str, Any]] = []
    for o in outputs:
        prev = out[-1] if out else None
        if prev is not None and o.get("output_type") == "stream" == prev.get("output_type") \
                and o.get("name") == prev.get("name"):
            text = "".join(prev["text"]) + "".join(o["text"])
            prev["text"] = text.splitlines(keepends=True)
        else:
            out.append(o)
    return out


def strip_widget_view(out: dict[str, Any]) -> bool:
    """Remove a widget view from one output, keeping its picture (or leaving a note); False:
    the output was only the view of a widget that displays its picture as another output
    (its text/plain is empty), and goes."""
    data = out.get("data", {})
    if WIDGET_MIME not in data:
        return True
    del data[WIDGET_MIME]
    out.get("metadata", {}).pop(WIDGET_MIME, None)
    if not set(data) - {"text/plain"}:
        if not "".join(data.get("text/plain", "")):
            return False
        data["text/plain"] = WIDGET_NOTE
    return True


def dumps(nb: dict[str, Any]) -> str:
    """Serialise like nbformat.writes (indent 1, sorted keys, UTF-8, final newline)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def strip_file(path: str | Path, *, check: bool = False) -> bool:
    """Strip one notebook file; return True if it changed (or, with check, would change)."""
    path = Path(path)
    before = path.read_text(encoding="utf-8")
    after = dumps(strip_notebook(json.loads(before)))
    if after == before:
        return False
    if not check:
        path.write_text(after, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help=".ipynb files (default: notebooks/*.ipynb)")
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a notebook needs stripping"
    )
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.notebooks]
    if not paths:
        paths = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
    # An unmatched shell glob (no notebooks yet) arrives literally: nothing to do.
    paths = [p for p in paths if p.exists() or "*" not in str(p)]
    changed = [p for p in paths if p.suffix == ".ipynb" and strip_file(p, check=args.check)]
    for p in changed:
        print(f"{'needs stripping' if args.check else 'stripped'}: {p}")
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
