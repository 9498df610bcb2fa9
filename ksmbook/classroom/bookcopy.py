"""Each student's own copy of the book, kept up to date without clobbering their edits.

`sync_book(book, copy)` runs when a student's server starts. A chapter the student does not
have (first login, a new chapter, or one they deleted to get it again) is copied. A chapter the
student has never changed is replaced by the book's current version. A chapter the student has
edited is left alone, and the book's current version is put beside it as NAME.new.ipynb. The
manifest ``.ksmbook-book.json`` in the copy remembers the hash of what was last copied.

``python -m ksmbook.classroom.bookcopy ARGS...`` syncs ``$KSMBOOK_BOOK`` into
``~/ksmbook-book`` and then runs ``jupyterhub-singleuser ARGS...`` (the hub's Spawner.cmd).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MANIFEST", "Synced", "sync_book", "main"]

MANIFEST = ".ksmbook-book.json"


@dataclass(frozen=True)
class Synced:
    """What one sync did, by path relative to the copy."""

    copied: tuple[str, ...]
    updated: tuple[str, ...]
    kept: tuple[str, ...]


def _hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _book_files(book: Path) -> list[Path]:
    return sorted(p for p in book.rglob("*") if p.is_file()
                  and not any(part.startswith(".") or part == "__pycache__"
                              for part in p.relative_to(book).parts))


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
    for src in _book_files(book):
        rel = src.relative_to(book).as_posix()
        dest = copy / rel
        new = _hash(src)
        if not dest.exists():
            copied.append(rel)
        elif _hash(dest) == new:
            manifest[rel] = new
            continue
        elif _hash(dest) == manifest.get(rel):
            updated.append(rel)
        else:
            if manifest.get(rel) != new:
                shutil.copyfile(src, dest.with_name(f"{dest.stem}.new{dest.suffix}"))
                kept.append(rel)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        manifest[rel] = new
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return Synced(tuple(copied), tuple(updated), tuple(kept))


def main(argv: list[str] | None = None) -> None:
    """Sync the book into ~/ksmbook-book, then become jupyterhub-singleuser with `argv`."""
    args = sys.argv[1:] if argv is None else argv
    book = os.environ.get("KSMBOOK_BOOK")
    if book:
        done = sync_book(Path(book), Path.home() / "ksmbook-book")
        print(f"ksmbook: copied {len(done.copied)}, updated {len(done.updated)}, kept "
              f"{len(done.kept)} edited chapters", file=sys.stderr)
    exe = Path(sys.executable).with_name("jupyterhub-singleuser")
    os.execv(exe, [str(exe), *args])


if __name__ == "__main__":
    main()
