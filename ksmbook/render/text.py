"""Text twins of the diagrams: the maps table and what one call changed, as plain text.

Both are printed from the same snapshots the diagrams draw, and both are deterministic, so a
notebook's stored output can be compared by nbval (which never compares images).
`changes()` compares two snapshots piece by piece: a boundary that appears inside a VMA is a
split (split_vma()), or, when the call's trace shows no split_vma() there, a boundary that
vma_merge() moved; a VMA made of several former pieces is a merge (vma_merge()), and a piece
whose VmFlags or permissions differ had its flags changed.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from itertools import pairwise

from ..constants import MMF, PAGE_SIZE, VM
from ..trace import Kind, Trace
from .snapshot import Region, Snapshot

__all__ = ["Change", "Changes", "maps_text", "changes", "changes_text", "size_text",
           "addr_text", "outcome_text", "plural"]


def addr_text(addr: int) -> str:
    """An address as /proc/PID/maps prints it: bare hex, at least 8 digits."""
    return f"{addr:08x}"


def plural(n: int, noun: str) -> str:
    """'1 VMA', '3 VMAs'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def size_text(size: int) -> str:
    """'4p' for whole pages under 256 pages, else '2 MiB', '1.5 GiB'; bytes otherwise."""
    if size % PAGE_SIZE:
        return f"{size} B"
    pages = size // PAGE_SIZE
    if pages < 256:
        return f"{pages}p"
    unit, shift = next((u, s) for u, s in (("TiB", 40), ("GiB", 30), ("MiB", 20)) if size >= 1 << s)
    value = size / (1 << shift)
    return f"{value:.0f} {unit}" if value == int(value) or value >= 100 else f"{value:.1f} {unit}"


def maps_text(snap: Snapshot) -> str:
    """The maps table of a snapshot (the same text as `Process.maps()` gave at the time)."""
    return snap.maps_text


def outcome_text(trace: Trace | None) -> str:
    """'madvise(0x7ffff7ff9000, 16384, MADV_MERGEABLE) = -1 EINVAL (Invalid argument)'."""
    if trace is None:
        return ""
    text = f"{trace.call} {trace.outcome()}"
    if trace.errno is not None:
        text += f" ({os.strerror(trace.errno)})"
    return text


@dataclass(frozen=True)
class Change:
    """One change: kind is split, moved, merged, flags, mapped, unmapped or replaced."""

    kind: str
    start: int
    end: int
    #: split: the addresses cut at; moved: where the boundary went; merged: how many pieces;
    #: flags: "+mg -dc".
    detail: str = ""

    def __str__(self) -> str:
        head = f"{self.kind:<8} {addr_text(self.start)}-{addr_text(self.end)}"
        return f"{head} {self.detail}".rstrip()


@dataclass(frozen=True)
class Changes:
    """What differs between two snapshots of one process, and the call that made it so."""

    before: int
    after: int
    items: tuple[Change, ...] = ()
    mm_flags: str = ""
    outcome: str = ""
    exited: bool = False

    def of(self, kind: str) -> list[Change]:
        return [c for c in self.items if c.kind == kind]

    @property
    def empty(self) -> bool:
        return not self.items and not self.mm_flags and not self.exited

    def __str__(self) -> str:
        lines = [self.outcome] if self.outcome else []
        if self.exited:
            lines.append("process exited: its address space is gone")
        lines.append(f"VMAs: {self.before} -> {self.after}")
        lines += [str(c) for c in self.items]
        if self.mm_flags:
            lines.append(f"mm       {self.mm_flags}")
        if not self.items and not self.mm_flags:
            lines.append("no change to the address space")
        return "\n".join(lines)


def _covering(regions: tuple[Region, ...], starts: list[int], lo: int, hi: int) -> Region | None:
    i = bisect.bisect_right(starts, lo) - 1
    if i >= 0 and regions[i].start <= lo and hi <= regions[i].end:
        return regions[i]
    return None


def _names(sign: str, flags: VM | MMF) -> list[str]:
    """'+VM_MERGEABLE' for each flag set in `flags`, in the enum's order."""
    return [f"{sign}{f.name}" for f in type(flags) if f and flags & f and f.name]


def _flag_delta(old: Region, new: Region) -> str:
    """'+mg', '-wr +ac', or the VM names when the codes say nothing (2.6.32-only flags)."""
    added = [c for c in new.vmflags if c not in old.vmflags]
    gone = [c for c in old.vmflags if c not in new.vmflags]
    parts = [f"-{c}" for c in gone] + [f"+{c}" for c in added]
    if not parts and old.flags is not None and new.flags is not None and old.flags != new.flags:
        parts = _names("-", VM(old.flags & ~new.flags)) + _names("+", VM(new.flags & ~old.flags))
    if old.perms != new.perms:
        parts.insert(0, f"{old.perms}->{new.perms}")
    return " ".join(parts)


def _replaced(old: Region, new: Region, addr: int) -> bool:
    """Whether the page at addr is backed by something else now (a mapping over a mapping)."""
    if (old.kind, old.path, old.dev, old.inode) != (new.kind, new.path, new.dev, new.inode):
        return True
    return bool(new.path) and old.offset - old.start != new.offset - new.start


def changes(before: Snapshot, after: Snapshot, trace: Trace | None = None) -> Changes:
    """What the call (`trace`) changed between `before` and `after` of one process."""
    bv, av = before.vmas, after.vmas
    bstarts, astarts = [r.start for r in bv], [r.start for r in av]
    bounds = sorted({a for r in bv + av for a in (r.start, r.end)})
    new_maps = [(e.start, e.end) for e in trace.events if e.kind is Kind.MAP] if trace else []
    pieces = [(lo, hi, _covering(bv, bstarts, lo, hi), _covering(av, astarts, lo, hi))
              for lo, hi in pairwise(bounds)]
    items: list[Change] = []
    # A before-VMA is split where the after-VMA covering it changes inside it (split_vma());
    # an after-VMA is merged if its pieces come from two or more sources (vma_merge()).
    cuts: dict[int, list[int]] = {}
    sources: dict[int, set[int]] = {}
    for (lo, _, b, a), prev in zip(pieces, [None, *pieces], strict=False):
        if b is not None and prev is not None and prev[2] is b and prev[3] is not a:
            cuts.setdefault(id(b), []).append(lo)
        if a is not None:
            sources.setdefault(id(a), set()).add(id(b) if b is not None else 0)
    # With the trace at hand, a cut that no split_vma() made is a boundary that vma_merge()
    # moved: the VMA shrank and a neighbour grew over the piece.
    splits = [e for e in trace.events if e.kind is Kind.SPLIT] if trace is not None else None
    for r in bv:
        if id(r) in cuts:
            at = ", ".join(addr_text(c) for c in cuts[id(r)])
            if splits is None or any(r.start <= e.start and e.end <= r.end for e in splits):
                items.append(Change("split", r.start, r.end, "at " + at))
            else:
                items.append(Change("moved", r.start, r.end,
                                    f"boundary to {at} (vma_merge(), no split_vma())"))
    for r in av:
        src = sources.get(id(r), set())
        if len(src) >= 2:
            what = f"from {plural(len(src - {0}), 'VMA')}"
            items.append(Change("merged", r.start, r.end,
                                what + (" and the new mapping" if 0 in src else "")))
    # Pieces: flags changed, mapped, unmapped, replaced; adjacent equal changes are joined.
    runs: list[Change] = []
    for lo, hi, b, a in pieces:
        covered = any(m[0] <= lo and hi <= m[1] for m in new_maps)
        if (b is None and a is None) or (b is a and not covered):
            continue  # (an unchanged VMA is the very same Region in both snapshots)
        if b is None:
            change = Change("mapped", lo, hi)
        elif a is None:
            change = Change("unmapped", lo, hi)
        elif covered or _replaced(b, a, lo):
            change = Change("replaced", lo, hi, a.path or a.kind)
        else:
            delta = _flag_delta(b, a)
            if not delta:
                continue
            change = Change("flags", lo, hi, delta)
        last = runs[-1] if runs else None
        if last and last.kind == change.kind and last.end == lo and last.detail == change.detail:
            runs[-1] = Change(last.kind, last.start, hi, last.detail)
        else:
            runs.append(change)
    items += runs
    mm_text = ""
    if before.mm_flags is not None and after.mm_flags is not None:
        mm_text = " ".join(_names("+", MMF(after.mm_flags & ~before.mm_flags))
                           + _names("-", MMF(before.mm_flags & ~after.mm_flags)))
    exited = before.alive and not after.alive
    order = {"split": 0, "moved": 0, "merged": 1, "unmapped": 2, "mapped": 3, "replaced": 4,
             "flags": 5}
    items.sort(key=lambda c: (order[c.kind], c.start))
    return Changes(len(bv), len(av), tuple(items), mm_text, outcome_text(trace), exited)


def changes_text(before: Snapshot, after: Snapshot, trace: Trace | None = None) -> str:
    """The changes as text: the call and its result, then one line per change."""
    return str(changes(before, after, trace))
