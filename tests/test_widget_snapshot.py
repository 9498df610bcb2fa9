"""The widgets' output carries a picture of them, and stripping a notebook keeps only that.

A notebook opened as stored has no kernel and no widget models: it must show a picture of the
widget as it was when it ran, with a line saying that running the cell makes it live, never
the widget's repr (``VBox(children=...``) or "model not found".
"""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from ksmbook.widgets import Explorer
from ksmbook.widgets.ksmd import KsmdStepper
from ksmbook.widgets.snapshot import LIVE_NOTE, PICTURE_CSS, WIDGET_MIME, picture_bundle
from scripts.strip_notebooks import EMPTY_WIDGET_STATE, WIDGET_NOTE, strip_notebook

REPR = re.compile(r"^\w*(Box|Tab|Button|HTML|Dropdown)\(", re.M)


def shown(widget: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What displaying `widget` as a cell's value sends to the front end: two outputs, its
    picture and then its view (returned merged, as one dict, with the view's model id)."""
    import IPython.display

    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(IPython.display, "display",
                        lambda obj, raw=False: sent.append(obj if raw else {}))
    widget._ipython_display_()
    assert len(sent) == 2
    picture_out, view_out = sent
    assert set(picture_out) == {"text/html", "text/plain"}
    assert set(view_out) == {WIDGET_MIME, "text/plain"} and view_out["text/plain"] == ""
    assert PICTURE_CSS in picture_out["text/html"]
    return {**picture_out, WIDGET_MIME: view_out[WIDGET_MIME]}


def picture(bundle: dict[str, Any]) -> bytes:
    found = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', bundle["text/html"])
    assert found, bundle["text/html"][:300]
    return base64.b64decode(found.group(1))


def test_explorer_shows_its_picture(monkeypatch: pytest.MonkeyPatch) -> None:
    e = Explorer(profile="seed", script="map A 4p rw private anon\nmadvise A 4p MERGEABLE\n")
    bundle = shown(e, monkeypatch)
    assert bundle[WIDGET_MIME]["model_id"] == e.widget.model_id
    note = LIVE_NOTE.format(what="explorer")
    assert note in bundle["text/html"] and bundle["text/plain"].startswith(note)
    assert picture(bundle).startswith(b"\x89PNG\r\n\x1a\n")
    # The text twin of the last call and the maps of the process, as the widget shows them.
    assert e.changes_text.splitlines()[0] in bundle["text/plain"]
    assert e.maps_text in bundle["text/plain"]
    assert str(e.trace) in bundle["text/plain"]  # the trace as text, not only in the picture
    assert "mg" in e.maps_text
    assert not REPR.search(bundle["text/plain"])


def test_stepper_shows_its_picture(monkeypatch: pytest.MonkeyPatch) -> None:
    s = KsmdStepper()
    s.scan_button.click()
    s.scan_button.click()
    bundle = shown(s, monkeypatch)
    assert bundle[WIDGET_MIME]["model_id"] == s.widget.model_id
    assert LIVE_NOTE.format(what="ksmd stepper") in bundle["text/html"]
    assert s.message and s.message in bundle["text/plain"]
    assert s.pages_text in bundle["text/plain"]
    assert "KSM page" in s.pages_text
    assert picture(bundle).startswith(b"\x89PNG")


def notebook(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"widgets": {"state": {}}}, "cells": [
        {"cell_type": "code", "execution_count": 3, "metadata": {}, "source": "x",
         "outputs": outputs}]}


def test_strip_keeps_the_picture_and_drops_the_view(monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython.display

    e = Explorer()
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: sent.append(obj))
    e._ipython_display_()
    nb = strip_notebook(notebook([{"output_type": "display_data", "metadata": {},
                                   "data": dict(bundle)} for bundle in sent]))
    (out,) = nb["cells"][0]["outputs"]
    assert set(out["data"]) == {"text/html", "text/plain"}
    assert out["data"]["text/html"] == sent[0]["text/html"]
    assert out["data"] == picture_bundle(what="explorer", figure=e.view.figure,
                                         text=out["data"]["text/plain"].split("\n", 1)[1])
    assert nb["metadata"]["widgets"] == EMPTY_WIDGET_STATE


def test_strip_replaces_a_bare_widget_view_with_a_note() -> None:
    import ipywidgets as w

    bare = w.VBox([w.Button(description="x")])._repr_mimebundle_()
    assert REPR.search(bare["text/plain"])
    nb = strip_notebook(notebook([{"output_type": "display_data", "metadata": {},
                                   "data": dict(bare)}]))
    assert nb["cells"][0]["outputs"][0]["data"] == {"text/plain": WIDGET_NOTE}


def test_strip_joins_a_stream_flushed_in_pieces() -> None:
    def stream(name: str, *lines: str) -> dict[str, Any]:
        return {"output_type": "stream", "name": name, "text": list(lines)}

    picture = {"output_type": "display_data", "metadata": {}, "data": {"text/plain": "p"}}
    nb = strip_notebook(notebook([stream("stdout", "a\n", "b"), stream("stdout", "\n", "c\n"),
                                  stream("stderr", "e\n"), picture, stream("stdout", "d\n")]))
    assert nb["cells"][0]["outputs"] == [stream("stdout", "a\n", "b\n", "c\n"),
                                         stream("stderr", "e\n"), picture,
                                         stream("stdout", "d\n")]
