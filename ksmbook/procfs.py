"""/proc/PID/maps and the VmFlags line of /proc/PID/smaps (fs/proc/task_mmu.c
show_map_vma(), show_smap_vma_flags()), for the simulator and for the live kernel alike.

`smaps_rss` gives the simulator's Rss and Anonymous lines. `MapEntry` is the structure both
sides produce, so that they can be printed side by side and
compared. 2.6.32 had no VmFlags line; for its profiles the codes are those later kernels
print (see `ksmbook.profiles`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .constants import PAGE_SHIFT, PAGE_SIZE, VM

if TYPE_CHECKING:
    from .mm import MM, VMA
    from .profiles import Profile

__all__ = ["MapEntry", "map_entry", "read_maps", "format_maps", "format_entry", "smaps_rss"]


@dataclass(frozen=True)
class MapEntry:
    """One line of /proc/PID/maps plus its smaps VmFlags codes."""

    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str
    vmflags: tuple[str, ...]

    @property
    def pages(self) -> int:
        return (self.end - self.start) >> PAGE_SHIFT


def _perms(flags: VM) -> str:
    return "".join((
        "r" if flags & VM.VM_READ else "-",
        "w" if flags & VM.VM_WRITE else "-",
        "x" if flags & VM.VM_EXEC else "-",
        "s" if flags & VM.VM_MAYSHARE else "p",
    ))


def map_entry(vma: VMA, profile: Profile) -> MapEntry:
    """show_map_vma() for one VMA."""
    f = vma.file
    if f is None:
        offset, dev, ino, path = 0, "00:00", 0, ""
    else:
        dev = {"regular": "08:01", "shmem": "00:01", "hugetlb": "00:0f"}.get(f.kind, "00:05")
        offset, ino, path = vma.pgoff << PAGE_SHIFT, f.ino, f.path
    return MapEntry(vma.start, vma.end, _perms(vma.flags), offset, dev, ino, path,
                    tuple(profile.codes(vma.flags)))


def read_maps(mm: MM) -> list[MapEntry]:
    """Every VMA of `mm` as a MapEntry, in address order."""
    return [map_entry(v, mm.profile) for v in mm.vmas]


def format_entry(e: MapEntry) -> str:
    """'7ffff7ff7000-7ffff7fff000 rw-p 00000000 00:00 0   VmFlags: rd wr mr mw me ac'."""
    head = f"{e.start:08x}-{e.end:08x} {e.perms} {e.offset:08x} {e.dev} {e.inode}"
    if e.path:
        head = f"{head:<73}{e.path}"
    return f"{head:<{73 + 24 if e.path else 73}} VmFlags: {' '.join(e.vmflags)}".rstrip()


def format_maps(entries: list[MapEntry]) -> str:
    """The maps table, one line per VMA ("(no mappings)" when empty)."""
    return "\n".join(format_entry(e) for e in entries) or "(no mappings)"


def smaps_rss(mm: MM, vma: VMA | None = None) -> dict[str, int]:
    """The Rss and Anonymous lines of /proc/PID/smaps for `vma` (of smaps_rollup for the
    whole mm), in kB. smaps_pte_entry() counts only the pages vm_normal_page() returns: a
    zero-page pte is special (a read's, a THP split's, KSM's use_zero_pages; the huge zero
    PMD too) and counts in neither; Anonymous counts anonymous pages, KSM pages among them."""
    vpns = (mm.ptes.irange(vma.start >> PAGE_SHIFT, (vma.end >> PAGE_SHIFT) - 1)
            if vma is not None else mm.ptes)
    rss = anon = 0
    for vpn in vpns:
        page = mm.ptes[vpn]
        if page.id:
            rss += 1
            anon += page.anon
    kb = PAGE_SIZE >> 10
    return {"Rss": rss * kb, "Anonymous": anon * kb}
