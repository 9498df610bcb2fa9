"""Frozen copies of address spaces, so that a view drawn later needs no kernel access.

A `Snapshot` is what /proc/PID/maps and the VmFlags lines of /proc/PID/smaps show of one
process (fs/proc/task_mmu.c show_map_vma(), show_smap_vma_flags()), plus what the simulator
knows beyond them: each VMA's `VM` flags and the mm's `MMF` flags. A snapshot made from maps
text alone (the live kernel, a scenario's `StepResult.maps`) has the same shape with
`flags` and `mm_flags` set to None.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..constants import MMF, VM
from ..procfs import MapEntry, format_maps, map_entry

if TYPE_CHECKING:
    from ..kernel import Kernel, Process

__all__ = ["KINDS", "Region", "Snapshot", "snapshot", "snapshots", "from_entries", "kind_of"]

#: The kinds of VMA the diagrams tell apart, in legend order.
KINDS = ("anon", "shared-anon", "file", "shared-file", "device", "hugetlb")

# smaps codes that mark a driver's special mapping (VM_IO, VM_PFNMAP, VM_MIXEDMAP, ...).
_SPECIAL_CODES = frozenset({"io", "pf", "mm", "reserved", "insertpage", "sao"})


@dataclass(frozen=True)
class Region(MapEntry):
    """One VMA as a view sees it: its maps line and VmFlags codes (``MapEntry``), the kind
    the diagrams tell apart and (simulated) flags."""

    kind: str
    flags: VM | None = None

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def entry(self) -> MapEntry:
        """The /proc/PID/maps line of this VMA."""
        return MapEntry(self.start, self.end, self.perms, self.offset, self.dev, self.inode,
                        self.path, self.vmflags)


@dataclass(frozen=True, eq=True)
class Snapshot:
    """The VMAs of one process at one moment, and its mm flags."""

    name: str
    pid: int
    vmas: tuple[Region, ...]
    mm_flags: MMF | None = None
    alive: bool = True

    def __len__(self) -> int:
        return len(self.vmas)

    @property
    def mergeable(self) -> bool | None:
        """MMF_VM_MERGEABLE (None when the snapshot came from maps text)."""
        if self.mm_flags is None:
            return None
        return bool(self.mm_flags & MMF.MMF_VM_MERGEABLE)

    @property
    def entries(self) -> list[MapEntry]:
        return [r.entry for r in self.vmas]

    @functools.cached_property
    def maps_text(self) -> str:
        """The maps table (computed once per snapshot)."""
        return format_maps(self.entries)

    @property
    def label(self) -> str:
        """'p1 (pid 1)', or the name alone when the pid is unknown."""
        return f"{self.name} (pid {self.pid})" if self.pid else self.name


def kind_of(entry: MapEntry) -> str:
    """The kind of a VMA known only by its maps line and VmFlags codes."""
    codes = set(entry.vmflags)
    shared = entry.perms.endswith("s")
    if "ht" in codes or entry.path.startswith("/anon_hugepage"):
        return "hugetlb"
    if codes & _SPECIAL_CODES or (entry.path.startswith("/dev/")
                                  and not entry.path.startswith("/dev/zero")):
        return "device"
    if not entry.path or entry.path.startswith("["):
        return "shared-anon" if shared else "anon"
    if entry.path.startswith(("/dev/zero", "/SYSV", "/memfd:")) and shared:
        return "shared-anon"
    return "shared-file" if shared else "file"


def snapshot(process: Process, cache: dict[tuple, Any] | None = None) -> Snapshot:
    """A frozen copy of `process`'s VMAs and mm flags (an exited process has none).

    `cache` (a dict kept by the caller) reuses the Region of a VMA that has not changed since
    the last snapshot, and the Snapshot itself when nothing in it has changed (so its maps
    text is formatted once), which keeps repeated snapshots of thousands of VMAs cheap.
    """
    mm = process.mm
    profile = mm.profile
    cache = {} if cache is None else cache
    out = []
    for v in mm.vmas if process.alive else ():
        f = v.file
        key = (profile.name, v.start, v.end, int(v.flags), v.pgoff,
               (f.path, f.ino, f.kind) if f is not None else None)
        r = cache.get(key)
        if r is None:
            r = cache[key] = _region(map_entry(v, profile), v.kind, v.flags)
        out.append(r)
    regions = tuple(out)
    snap = Snapshot(process.name, process.pid, regions, MMF(mm.flags), process.alive)
    # The cached Snapshot holds its Regions, so their ids in the key stay theirs.
    same = ("snapshot", snap.name, snap.pid, int(mm.flags), snap.alive, tuple(map(id, regions)))
    return cache.setdefault(same, snap)


def snapshots(kernel: Kernel) -> list[Snapshot]:
    """One snapshot per live process of `kernel`, in pid order."""
    return [snapshot(p) for p in sorted(kernel.processes, key=lambda p: p.pid)]


def from_entries(entries: Iterable[MapEntry], name: str = "") -> Snapshot:
    """A snapshot from maps lines alone (live replay, `StepResult.maps`): no pid, no VM or MMF
    flags."""
    regions = tuple(_region(e, kind_of(e), None) for e in sorted(entries, key=lambda e: e.start))
    return Snapshot(name, 0, regions)


def _region(e: MapEntry, kind: str, flags: VM | None) -> Region:
    return Region(e.start, e.end, e.perms, e.offset, e.dev, e.inode, e.path,
                  tuple(e.vmflags), kind, None if flags is None else VM(flags))
