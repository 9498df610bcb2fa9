"""Readers' answers, parsed without eval: results and errnos, counts, yes/no, advices, layouts.

Every parser takes what a reader would type in a notebook cell (a Python value or a string)
and returns a normal form, or raises `AnswerError` with a message that shows the accepted forms.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..constants import ERRNO_NAMES, MADV, PAGE_SHIFT, VM
from ..procfs import MapEntry
from ..profiles import PROFILES, Profile
from ..scenario import Madvise, ScenarioError, parse
from ..trace import errno_text

__all__ = ["AnswerError", "Layout", "LayoutEntry", "parse_result", "parse_count", "parse_yesno",
           "parse_advice", "parse_layout", "parse_pages", "format_pages", "format_layout",
           "layout_of", "errno_text", "ALL_CODES", "PAGES_EXAMPLE"]

#: Every smaps VmFlags code a layout answer may use: those of every kernel.
ALL_CODES = frozenset(c for p in PROFILES.values() for c in p.smaps_codes.values())

_ERRNOS = {name: num for num, name in ERRNO_NAMES.items()}
_STRERROR = {os.strerror(num).lower(): num for num in ERRNO_NAMES}
_PERMS = re.compile(r"[r-][w-][x-][ps]\Z")
_RANGE = re.compile(r"(\d+)-(\d+)\Z")
#: The example of the page-range form (not the answer to any call the book suggests first).
PAGES_EXAMPLE = "0-1 1-3 mg 3-8"
_FORMS = (f"page ranges with their flags ('{PAGES_EXAMPLE}': first page, end page exclusive), "
          "a list of (start_page, end_page, flags) such as [(0, 1, ''), (1, 3, 'mg'), "
          "(3, 8, '')], or maps lines ('10000000-10002000 rw-p ... VmFlags: rd wr mg')")
_MAPS_LINE = re.compile(r"\s*([0-9a-fA-F]+)-([0-9a-fA-F]+)\s+([r-][w-][x-][ps])\b(.*)")


class AnswerError(ValueError):
    """An answer that cannot be read; the message says what forms are accepted."""


@dataclass(frozen=True)
class LayoutEntry:
    """One VMA of a layout answer: pages [start, end) counted from the question's page 0."""

    start: int
    end: int
    codes: frozenset[str]

    def text(self, codes: Iterable[str] | None = None) -> str:
        """'(2, 6, "mg")' with the codes (restricted to `codes`) in smaps order."""
        shown = [c for c in _code_order(self.codes) if codes is None or c in codes]
        return f"({self.start}, {self.end}, {' '.join(shown)!r})"


Layout = tuple[LayoutEntry, ...]


def _code_order(codes: Iterable[str]) -> list[str]:
    order = ["rd", "wr", "ex", "sh", "mr", "mw", "me", "ms", "gd", "pf", "dw", "lo", "io",
             "sr", "rr", "dc", "de", "ac", "nr", "ht", "nl", "mm", "mg"]
    known = [c for c in order if c in codes]
    return known + sorted(set(codes) - set(order))


def parse_result(answer: object) -> int:
    """A syscall result as the kernel returns it: 0, or -errno.

    Accepts 0, an errno name ("ENOMEM", "-ENOMEM", "-1 ENOMEM"), its strerror text ("Cannot
    allocate memory"), a negative number (-12) or a positive errno number (errno.ENOMEM); not
    -1 alone, which is the C return value of every error.
    """
    if isinstance(answer, bool) or not isinstance(answer, (int, str)):
        what = "True/False" if isinstance(answer, bool) else type(answer).__name__
        raise AnswerError(f"a result is 0 or an errno name such as 'ENOMEM', not {what}")
    text = str(answer).strip()
    if text == "-1":
        raise AnswerError("-1 is what the C call returns for every error (and sets errno); "
                          "the question asks which error: answer the errno name, such as "
                          "'ENOMEM' (or 0 if the call succeeds)")
    if isinstance(answer, int):
        return -abs(answer)
    m = re.fullmatch(r"(?:-1\s+|-\s*)?([A-Za-z][A-Za-z0-9]*)", text)
    if m and m.group(1).upper() in _ERRNOS:
        return -_ERRNOS[m.group(1).upper()]
    if re.fullmatch(r"[+-]?\d+", text):
        return -abs(int(text))
    if text.lower().rstrip(".") in _STRERROR:
        return -_STRERROR[text.lower().rstrip(".")]
    raise AnswerError(f"{answer!r} is not a result: answer 0 or an errno name "
                      f"({', '.join(sorted(_ERRNOS))})")


def parse_count(answer: object) -> int:
    """A number of VMAs, splits or merges: a non-negative int or its digits."""
    if isinstance(answer, bool):
        raise AnswerError("a count is a whole number such as 3, not True/False")
    if isinstance(answer, str) and re.fullmatch(r"\s*\d+\s*", answer):
        answer = int(answer)
    if not isinstance(answer, int) or answer < 0:
        raise AnswerError(f"{answer!r} is not a count: answer a whole number such as 3")
    return answer


def parse_yesno(answer: object) -> bool:
    """True/False, or yes/no (also y/n, true/false, set/clear)."""
    if isinstance(answer, bool):
        return answer
    if isinstance(answer, str):
        word = answer.strip().lower()
        if word in ("yes", "y", "true", "set"):
            return True
        if word in ("no", "n", "false", "clear", "not set"):
            return False
    raise AnswerError(f"{answer!r}: answer True or False ('yes' or 'no')")


def parse_advice(answer: object) -> int | Madvise:
    """An advice (MADV value, "MERGEABLE" or "MADV_MERGEABLE"), or a whole scenario line
    ("madvise A+2p 4p MERGEABLE"), which is returned as its parsed `Madvise`."""
    if isinstance(answer, bool):
        raise AnswerError("an advice is a name such as 'MERGEABLE', not True/False")
    if isinstance(answer, int):
        try:
            return int(MADV(answer))
        except ValueError:
            raise AnswerError(f"{answer} is not an advice value") from None
    if not isinstance(answer, str):
        raise AnswerError(f"an advice is a name such as 'MERGEABLE', not {type(answer).__name__}")
    text = answer.strip()
    name = text.upper()
    name = name if name.startswith("MADV_") else f"MADV_{name}"
    if name in MADV.__members__:
        return int(MADV[name])
    if "madvise" in text:
        try:
            ops = parse(text).ops
        except ScenarioError as e:
            raise AnswerError(f"{text!r}: {e.message}") from None
        if len(ops) == 1 and isinstance(ops[0], Madvise):
            return ops[0]
    names = ", ".join(n.removeprefix("MADV_") for n in MADV.__members__)
    raise AnswerError(f"{answer!r} is not an advice: answer one of {names}, or a line such as "
                      "'madvise A+2p 4p MERGEABLE'")


def _codes(flags: object, profile: Profile | None) -> frozenset[str]:
    if isinstance(flags, VM):
        if profile is None:
            raise AnswerError("VM flags need a profile to be turned into codes")
        return frozenset(profile.codes(flags))
    if isinstance(flags, str):
        tokens = flags.replace(",", " ").replace("|", " ").split()
    elif isinstance(flags, Iterable):
        tokens = [str(t) for t in flags]
    else:
        raise AnswerError(f"flags {flags!r}: give smaps codes such as 'mg' or 'rd wr mg'")
    codes: set[str] = set()
    for tok in tokens:
        tok = tok.strip().lower()
        if tok.startswith("vm_") and tok.upper() in VM.__members__ and profile is not None:
            codes.update(profile.codes(VM[tok.upper()]))
        elif tok in ALL_CODES:
            codes.add(tok)
        elif _PERMS.match(tok):
            codes.update(c for c, letter in (("rd", "r"), ("wr", "w"), ("ex", "x"))
                         if letter in tok)
        else:
            raise AnswerError(f"{tok!r} is not an smaps VmFlags code (such as rd, wr, sh, dc, "
                              "ac, mg) nor maps permissions (such as rw-p)")
    return frozenset(codes)


def parse_pages(text: str, pages: int | None = None) -> list[tuple[int, int, str]]:
    """A layout typed as page ranges, "0-1 1-3 mg 3-8" (a VMA's first page, its end page
    exclusive, then its flags), as (start_page, end_page, flags) tuples; "none" for no VMA.
    With `pages`, the pages must lie in 0..pages. AnswerError says what is accepted."""
    words = text.replace(",", " ").split()
    if not words:
        raise AnswerError(f"type the VMAs as page ranges with their flags, for example "
                          f"{PAGES_EXAMPLE} (or none if no VMA is left)")
    if [word.lower() for word in words] == ["none"]:
        return []
    out: list[tuple[int, int, list[str]]] = []
    for word in words:
        m = _RANGE.match(word)
        if m is None:
            if not out:
                raise AnswerError(f"{word!r}: start with a page range such as 0-1 (first page, "
                                  "then the page after the last), then its flags")
            out[-1][2].append(word)
            continue
        first, end = int(m.group(1)), int(m.group(2))
        if pages is not None and end > pages:
            raise AnswerError(f"{word!r}: these pages run from 0 to {pages} (page {pages} is "
                              "the end of the last one)")
        out.append((first, end, []))
    return [(a, b, " ".join(flags)) for a, b, flags in out]


def format_pages(layout: Layout, codes: Iterable[str] | None = None) -> str:
    """'0-1 1-3 mg 3-8' (only `codes` shown, if given); 'none' for no VMA."""
    if not layout:
        return "none"
    keep = None if codes is None else frozenset(codes)
    return " ".join(" ".join([f"{e.start}-{e.end}",
                              *_code_order({c for c in e.codes if keep is None or c in keep})])
                    for e in layout)


def _is_pages(text: str) -> bool:
    words = text.replace(",", " ").split()
    return (len(text.strip().splitlines()) == 1 and bool(words)
            and (bool(_RANGE.match(words[0])) or [w.lower() for w in words] == ["none"]))


def parse_layout(answer: object, base: int, profile: Profile | None = None) -> Layout:
    """A layout answer, pages counted from `base` and end exclusive, flags as smaps codes
    ("mg", "rd wr mg", ""), in any of three forms: page ranges as predict mode takes them
    ("0-1 1-3 mg 3-8"), a list of (start_page, end_page, flags), or maps text
    (`Process.maps()` lines)."""
    if isinstance(answer, str) and _is_pages(answer):
        return parse_layout(parse_pages(answer), base, profile)
    if isinstance(answer, str):
        lines = [ln for ln in answer.splitlines() if ln.strip()]
        if not lines:
            raise AnswerError(f"no layout given: answer with {_FORMS}")
        entries = []
        for ln in lines:
            m = _MAPS_LINE.match(ln)
            if m is None:
                raise AnswerError(f"{ln.strip()!r} is not a layout: answer with {_FORMS}")
            start, end = int(m.group(1), 16), int(m.group(2), 16)
            if start % (1 << PAGE_SHIFT) or end % (1 << PAGE_SHIFT) or start < base:
                raise AnswerError(f"{ln.strip()!r}: addresses must be page aligned and at or "
                                  f"above {base:#x}")
            rest = m.group(4)
            flags = rest.split("VmFlags:", 1)[1] if "VmFlags:" in rest else m.group(3)
            entries.append(LayoutEntry((start - base) >> PAGE_SHIFT, (end - base) >> PAGE_SHIFT,
                                       _codes(flags, profile)))
        return _check_layout(tuple(entries))
    if isinstance(answer, Mapping) or not isinstance(answer, Iterable):
        raise AnswerError(f"not a layout: answer with {_FORMS}")
    entries = []
    for item in answer:
        if isinstance(item, LayoutEntry):
            entries.append(item)
            continue
        if isinstance(item, str) or not isinstance(item, Iterable):
            raise AnswerError(f"{item!r}: each VMA is a tuple (start_page, end_page, flags)")
        parts = list(item)
        if len(parts) == 2:
            parts.append("")
        if len(parts) != 3 or not all(isinstance(p, int) and not isinstance(p, bool)
                                      for p in parts[:2]):
            raise AnswerError(f"{item!r}: each VMA is a tuple (start_page, end_page, flags) "
                              "with whole page numbers")
        entries.append(LayoutEntry(int(parts[0]), int(parts[1]), _codes(parts[2], profile)))
    return _check_layout(tuple(entries))


def _check_layout(layout: Layout) -> Layout:
    for e in layout:
        if e.start >= e.end:
            raise AnswerError(f"({e.start}, {e.end}, ...): a VMA ends after it starts")
    ordered = tuple(sorted(layout, key=lambda e: e.start))
    for a, b in zip(ordered, ordered[1:], strict=False):
        if b.start < a.end:
            raise AnswerError(f"VMAs ({a.start}, {a.end}) and ({b.start}, {b.end}) overlap")
    return ordered


def layout_of(entries: Iterable[MapEntry], base: int) -> Layout:
    """The layout of maps entries (pages counted from `base`)."""
    return tuple(LayoutEntry((e.start - base) >> PAGE_SHIFT, (e.end - base) >> PAGE_SHIFT,
                             frozenset(e.vmflags)) for e in entries)


def format_layout(layout: Layout, codes: Iterable[str] | None = None) -> str:
    """'[(0, 2, ''), (2, 6, 'mg'), (6, 8, '')]', showing only `codes` if given."""
    keep = None if codes is None else frozenset(codes)
    return "[" + ", ".join(e.text(keep) for e in layout) + "]"
