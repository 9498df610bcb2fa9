"""The Explorer's range: typed as a start and a length (the statements are built from those),
picked from a VMA menu or dragged on a page slider, which write the typed fields.

Reading what the reader typed: one word each, parsed by the scenario parser (4096, 0x1000,
4p, 16k, 2M, A+4p); nothing typed is evaluated.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from itertools import count
from string import ascii_uppercase

from ..constants import PAGE_SIZE
from ..render import Snapshot, addr_text, size_text
from ..scenario import Addr, Munmap, ScenarioError, Statement, parse
from ..session import Session, sentence
from .common import InputError
from .explorer_controls import ExplorerControls

__all__ = ["RangePicker", "word", "length", "statements", "fresh_label", "fresh_name"]

_WORD = re.compile(r"[^\s#:]+\Z")
_WINDOW_MARGIN = 2  # pages shown beyond the first and last VMA on the range slider
_NEIGHBOURHOOD = 256  # VMAs fewer pages apart share the range slider


def word(value: str, what: str, example: str) -> str:
    """One typed word (InputError naming `what` and an `example` if empty or several)."""
    text = value.strip()
    if not text:
        raise InputError(f"Enter {what} (for example {example}).")
    if not _WORD.match(text):
        raise InputError(f"{what.capitalize()} {text!r} must be one word, for example {example}.")
    return text


def length(value: str) -> str:
    """A typed length: one word, not negative (but -1, C's (size_t)-1, the largest)."""
    text = word(value, "a length", "4096, 0x1000, 4p, 16k or 2M")
    if text.startswith("-") and text != "-1":
        raise InputError(f"A length cannot be negative ({text!r}): the kernel takes an "
                         "unsigned size_t. Type -1 for the largest length, 2**64-1.")
    return text


def statements(text: str) -> tuple[Statement, ...]:
    """Parse generated statements; a parse error is the reader's input error."""
    try:
        return parse(text).ops
    except ScenarioError as e:
        raise InputError(sentence(e)) from None


def fresh_label(taken: set[str]) -> str:
    """A, B, ..., Z, then A2, B2, ...: the first label not taken."""
    names = (f"{letter}{n if n > 1 else ''}" for n in count(1) for letter in ascii_uppercase)
    return next(name for name in names if name not in taken)


def fresh_name(stem: str, taken: set[str]) -> str:
    """stem1, stem2, ...: the first name not taken."""
    return next(f"{stem}{n}" for n in count(1) if f"{stem}{n}" not in taken)


def addr_words(session: Session, addr: int) -> str:
    """addr as the script writes it: the nearest label at or below it, plus pages."""
    below = [(name, base) for name, base in session.labels.items() if base <= addr]
    if not below:
        return f"{addr:#x}"
    name, base = max(below, key=lambda nb: nb[1])
    return str(Addr(name, addr - base))


class RangePicker:
    """Keeps the range controls of `c` in line: the VMA menu and the slider write the typed
    fields; the typed fields move the slider and the readout. `snapshot` gives the shown
    process's VMAs, `session` the session whose labels the typed start may name."""

    def __init__(self, c: ExplorerControls, snapshot: Callable[[], Snapshot],
                 session: Callable[[], Session]) -> None:
        self.c, self._snapshot, self._session = c, snapshot, session

    def words(self) -> tuple[str, str]:
        """The typed start and length (InputError if missing or not one word)."""
        start = word(self.c.range_start.value, "a start address", "A+4p or 0x7ffff7ff3000")
        return start, length(self.c.range_length.value)

    def typed(self) -> tuple[int, int] | None:
        """The typed range as addresses [start, end), or None if it cannot be read."""
        try:
            start, size = self.words()
            op = parse(f"munmap {start} {size}").ops[0]
            assert isinstance(op, Munmap)
            addr = self._session().addr(op.addr)
        except (InputError, ScenarioError):
            return None
        return addr, addr + op.length

    def window(self) -> tuple[int, int]:
        """The pages the slider spans: the neighbourhood of the typed range (the VMAs less
        than _NEIGHBOURHOOD pages apart around it, or around the nearest), plus a margin."""
        snap = self._snapshot()
        if not snap.vmas:
            return 0, 0
        rng = self.typed()
        anchor = rng[0] if rng is not None else snap.vmas[0].start
        groups: list[tuple[int, int]] = []
        for r in snap.vmas:
            if groups and r.start - groups[-1][1] < _NEIGHBOURHOOD * PAGE_SIZE:
                groups[-1] = (groups[-1][0], r.end)
            else:
                groups.append((r.start, r.end))
        lo, hi = min(groups, key=lambda g: max(g[0] - anchor, anchor - g[1] + 1, 0))
        return max(lo - _WINDOW_MARGIN * PAGE_SIZE, 0), hi + _WINDOW_MARGIN * PAGE_SIZE

    def set(self, start: int, end: int) -> None:
        """Write a range into the text fields."""
        self.c.range_start.value = addr_words(self._session(), start)
        size = end - start
        self.c.range_length.value = size_text(size) \
            if size % PAGE_SIZE == 0 and size < 256 * PAGE_SIZE else str(size)

    def from_slider(self, pages: tuple[int, int]) -> None:
        lo, _ = self.window()
        a, b = pages
        if b > a:
            self.set(lo + a * PAGE_SIZE, lo + b * PAGE_SIZE)
        self.show_readout()

    def from_vma(self, index: int) -> None:
        snap = self._snapshot()
        if 0 <= index < len(snap.vmas):
            r = snap.vmas[index]
            self.set(r.start, r.end)
            self.slider_from_text()

    def slider_from_text(self) -> None:
        """Move the slider to the typed range when it is valid and inside the window."""
        rng = self.typed()
        lo, hi = self.window()
        self.c.range_pages.max = max((hi - lo) // PAGE_SIZE, 1)
        if rng is not None and lo <= rng[0] < rng[1] <= hi and not rng[0] % PAGE_SIZE:
            self.c.range_pages.value = ((rng[0] - lo) // PAGE_SIZE,
                                        -(-(rng[1] - lo) // PAGE_SIZE))
        self.show_readout()

    def show_readout(self) -> None:
        rng = self.typed()
        if rng is None:
            self.c.range_readout.value = ""
            return
        self.c.range_readout.value = (
            f"<code>{addr_text(rng[0])}-{addr_text(rng[1] % 2**64)}</code>"
            f" ({html.escape(size_text(rng[1] - rng[0]))})")

    def refresh(self, snap: Snapshot) -> None:
        """After a change: the VMA menu lists `snap`'s VMAs; an empty range field gets the
        middle half of the first VMA."""
        self.c.range_vma.options = [("(pick a VMA)", -1)] + [
            (f"{addr_text(r.start)}-{addr_text(r.end)} {r.perms} {size_text(r.size)}", i)
            for i, r in enumerate(snap.vmas[:500])]
        self.c.range_vma.value = -1
        if not self.c.range_start.value and snap.vmas:
            r = snap.vmas[0]
            quarter = max(r.pages // 4, 1) if r.pages >= 3 else 0
            self.set(r.start + quarter * PAGE_SIZE, r.end - quarter * PAGE_SIZE)
        self.slider_from_text()
