"""Each student's own copy of the book, kept up to date without clobbering their edits.

`sync_book(book, copy)` runs every time a student's server starts (each login after the
server stopped: the hub's Spawner.cmd is this module). A chapter the student does not have
(first login, a new chapter, or one they deleted to get it again) is copied. A chapter the
student has not edited is replaced by the book's current version. A chapter the student has
edited is left alone, and the book's current version is put beside it as NAME.new.ipynb.

Edited means a cell's source changed: running a chapter, saving it, its outputs, execution
counts and metadata do not count (``fingerprint``). The manifest ``.ksmbook-book.json`` in the
copy remembers the fingerprint of what was last copied.

When a newer version is put beside an edited chapter, the student is told where, in
JupyterLab: the chapter gets a note as its first cell (replaced, not repeated, at later
updates), ``BOOK-UPDATES.md`` in the copy lists every such chapter, and JupyterLab opens that
file at that login.

``python -m ksmbook.classroom.bookcopy ARGS...`` syncs ``$KSMBOOK_BOOK`` into
``~/ksmbook-book`` and then runs ``jupyterhub-singleuser ARGS...``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from .export import cell_source, read_notebook
from .variants import write_atomic

__all__ = ["MANIFEST", "NOTICE", "COPY", "Synced", "fingerprint", "sync_book", "prepare",
           "main"]

MANIFEST = ".ksmbook-book.json"
#: The list of chapters with a newer version beside them, in the copy.
NOTICE = "BOOK-UPDATES.md"
#: The copy's folder in the student's home.
COPY = "ksmbook-book"
#: Metadata key of the note cell put at the top of an edited chapter.
_NOTE_KEY = "ksmbook_update_note"


@dataclass(frozen=True)
class Synced:
    """What one sync did, by path relative to the copy."""

    copied: tuple[str, ...]
    updated: tuple[str, ...]
    kept: tuple[str, ...]  # edited by the student, with the book's newer version beside
    placed: tuple[str, ...] = ()  # those of `kept` whose newer version this sync put there


def fingerprint(path: Path) -> str:
    """What counts as the content of `path`: for a notebook, its cells' types and sources
    (not outputs, execution counts or metadata; not the update note); else its bytes."""
    nb = read_notebook(path)[0] if path.suffix == ".ipynb" else None
    if nb is None:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    parts = [[cell.get("cell_type"), cell_source(cell)] for cell in nb["cells"]
             if isinstance(cell, dict) and not cell.get("metadata", {}).get(_NOTE_KEY)]
    return "cells:" + hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _book_files(book: Path) -> list[Path]:
    return sorted(p for p in book.rglob("*") if p.is_file()
                  and not any(part.startswith(".") or part == "__pycache__"
                              for part in p.relative_to(book).parts))


def _newer(dest: Path) -> Path:
    return dest.with_name(f"{dest.stem}.new{dest.suffix}")


def _note(dest: Path, rel_new: str) -> None:
    """Put (or refresh) the update note as the first cell of the edited notebook `dest`."""
    nb = read_notebook(dest)[0]
    if nb is None:
        return
    cells = [c for c in nb["cells"] if not c.get("metadata", {}).get(_NOTE_KEY)]
    name = Path(rel_new).name
    cells.insert(0, {
        "cell_type": "markdown", "id": "ksmbook-update-note",
        "metadata": {_NOTE_KEY: True, "editable": False, "deletable": True},
        "source": (f"**A newer version of this chapter is beside it: [{name}]({name}).** "
                   "You have edited this copy, so the book's update did not replace it; open "
                   f"`{name}` to read the new version, copy what you want from one to the "
                   "other, or delete this chapter and log in again to get the new version in "
                   "its place."),
    })
    nb["cells"] = cells
    write_atomic(dest, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def sync_book(book: Path, copy: Path) -> Synced:
    """Bring `copy` up to date with `book` without overwriting anything the student edited."""
    copy.mkdir(parents=True, exist_ok=True)
    manifest_path = copy / MANIFEST
    try:
        manifest: dict[str, str] = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = {}
    copied: list[str] = []
    updated: list[str] = []
    kept: list[str] = []
    placed: list[str] = []
    for src in _book_files(book):
        rel = src.relative_to(book).as_posix()
        dest = copy / rel
        new = fingerprint(src)
        if not dest.exists():
            copied.append(rel)
        else:
            have = fingerprint(dest)
            if have == new:  # the same sources: nothing to update (their outputs stay)
                manifest[rel] = new
                continue
            # older manifests hold the file's sha256
            last = manifest.get(rel)
            if last is not None and last in (have, hashlib.sha256(
                    dest.read_bytes()).hexdigest()):
                updated.append(rel)
            elif last == new:  # edited, and the book has not changed since: theirs alone
                continue
            else:  # edited by the student: the new version goes beside it
                newer = _newer(dest)
                if not newer.exists() or fingerprint(newer) != new:
                    shutil.copyfile(src, newer)
                    if dest.suffix == ".ipynb":
                        _note(dest, newer.relative_to(copy).as_posix())
                    placed.append(rel)
                kept.append(rel)
                continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        _newer(dest).unlink(missing_ok=True)
        manifest[rel] = new
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    _write_notice(copy, kept)
    return Synced(tuple(copied), tuple(updated), tuple(kept), tuple(placed))


def _write_notice(copy: Path, kept: list[str]) -> None:
    notice = copy / NOTICE
    if not kept:
        notice.unlink(missing_ok=True)
        return
    lines = ["# The book was updated", "",
             "These chapters have a newer version beside your own copy, which you edited "
             "(your copy is unchanged):", ""]
    for rel in kept:
        newer = _newer(Path(rel)).as_posix()
        lines.append(f"- `{rel}`: the new version is [`{newer}`]({newer})")
    lines += ["", "Delete a chapter and log in again (or restart your server from the hub's "
              "control panel) to get its new version in its place."]
    notice.write_text("\n".join(lines) + "\n")


def prepare(book: Path, home: Path) -> tuple[Synced, str | None]:
    """Sync `book` into home/ksmbook-book; the URL JupyterLab should open at this login
    (the notice, when a chapter got a newer version beside it), or None."""
    done = sync_book(book, home / COPY)
    return done, (f"/lab/tree/{COPY}/{NOTICE}" if done.placed else None)


def main(argv: list[str] | None = None) -> None:
    """Sync the book into ~/ksmbook-book, then become jupyterhub-singleuser with `argv`."""
    args = sys.argv[1:] if argv is None else argv
    book = os.environ.get("KSMBOOK_BOOK")
    if book:
        done, url = prepare(Path(book), Path.home())
        print(f"ksmbook: copied {len(done.copied)}, updated {len(done.updated)}, kept "
              f"{len(done.kept)} edited chapters", file=sys.stderr)
        if url:
            os.environ["JUPYTERHUB_DEFAULT_URL"] = url
    exe = Path(sys.executable).with_name("jupyterhub-singleuser")
    os.execv(exe, [str(exe), *args])


if __name__ == "__main__":
    main()
