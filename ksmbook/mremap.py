"""mremap(2), as mm/mremap.c does it: resize a mapping in place, or move it with its pages.

2.6.32 do_mremap(): flags, alignment and length checks; with MREMAP_FIXED the overlap checks
and do_munmap() of the destination; a shrink is a do_munmap() of the tail; to grow or move,
find_vma() (EFAULT), the hugetlb refusal (EINVAL), the VMA-boundary and VM_DONTEXPAND|VM_PFNMAP
checks (EFAULT), growth in place when the next VMA leaves room, else with MREMAP_MAYMOVE
get_unmapped_area() and move_vma(). Since 5.16 the VMA is looked up before anything else
(vma_lookup(), `Profile.mremap_vma_lookup_first`); since 6.17 every parameter is checked first
(check_mremap_params()), the source before the destination is unmapped
(`Profile.mremap_checks_source_first`), and a range spanning several VMAs moves (remap_move()).

move_vma() first calls ksm_madvise(MADV_UNMERGEABLE) on the range (v2.6.32: "Advise KSM to
break any KSM pages in the area to be moved: it would be confusing if they were to turn up at
the new location, where they happen to coincide with different KSM pages recently unmapped.
But leave vma->vm_flags as it was, so KSM can come around to merge on vma and new_vma
afterwards."; 6.18 prep_move_vma() keeps the same call), then copy_vma() (which may merge the
new range with its neighbours), move_page_tables() and do_munmap() of the old range.
"""

from __future__ import annotations

import errno

from .constants import ERESTARTSYS, HPAGE_SIZE, MADV, MREMAP, PAGE_SHIFT, PAGE_SIZE, TASK_SIZE, VM
from .ksm import ksm_madvise
from .mm import MM, VMA, page_align
from .trace import Kind, Trace, errno_name

__all__ = ["sys_mremap"]

_MAYMOVE, _FIXED, _DONTUNMAP = (int(f) for f in MREMAP)


def sys_mremap(mm: MM, addr: int, old_len: int, new_len: int, flags: int, new_addr: int,
               tr: Trace) -> int:
    """sys_mremap() -> do_mremap(): returns the (new) address or -errno."""
    with tr.enter("do_mremap"):
        ret = _do_mremap(mm, addr, old_len, new_len, flags, new_addr, tr)
    if ret == -ERESTARTSYS:
        return -errno.EINTR
    return ret


def _fail(tr: Trace, fn: str, why: str, err: int) -> int:
    tr.note(fn, "{}: {}", why, errno_name(err))
    return err


def _do_mremap(mm: MM, addr: int, old_len: int, new_len: int, flags: int, new_addr: int,
               tr: Trace) -> int:
    """do_mremap() (v2.6.32; 6.18 with check_mremap_params(), mremap_to() and mremap_at()):
    the parameters, a move's destination unmapped, a shrink, then the VMA looked up and
    checked to grow in place or move. Where the lookup and the source's checks come is the
    profile's (`Profile.mremap_vma_lookup_first`, `Profile.mremap_checks_source_first`)."""
    p = mm.profile
    fn = "check_mremap_params" if p.mremap_new_len_checked_first else "do_mremap"
    if flags & ~(_FIXED | _MAYMOVE | (_DONTUNMAP if p.mremap_dontunmap else 0)):
        return _fail(tr, fn, "unknown flags", -errno.EINVAL)
    if addr % PAGE_SIZE:
        return _fail(tr, fn, "addr not page aligned", -errno.EINVAL)
    old_len, new_len = page_align(old_len), page_align(new_len)
    if not new_len:
        return _fail(tr, fn, "new_len 0", -errno.EINVAL)
    if p.mremap_new_len_checked_first and new_len > TASK_SIZE:
        return _fail(tr, fn, "new_len beyond TASK_SIZE", -errno.EINVAL)
    to = bool(flags & (_FIXED | _DONTUNMAP))
    if to:
        beyond = new_len > TASK_SIZE or new_addr > TASK_SIZE - new_len
        if beyond and p.mremap_new_len_checked_first:  # 6.17: first; v2.6.32: third
            return _fail(tr, fn, "new range beyond TASK_SIZE", -errno.EINVAL)
        if new_addr % PAGE_SIZE:
            return _fail(tr, fn, "new_addr not page aligned", -errno.EINVAL)
        if not flags & _MAYMOVE:
            return _fail(tr, fn, "a new address without MREMAP_MAYMOVE", -errno.EINVAL)
        if beyond:
            return _fail(tr, fn, "new range beyond TASK_SIZE", -errno.EINVAL)
        if flags & _DONTUNMAP and old_len != new_len:
            return _fail(tr, fn, "MREMAP_DONTUNMAP cannot resize", -errno.EINVAL)
        if _overlaps(addr, old_len, new_addr, new_len):
            return _fail(tr, fn, "new range overlaps the old one", -errno.EINVAL)
        if _map_count_too_close(mm):
            return _fail(tr, fn, "map_count too close to max_map_count", -errno.ENOMEM)
    lookup = "vma_lookup" if p.mremap_vma_lookup_first else "find_vma"
    vma = mm.vma_at(addr)
    if p.mremap_vma_lookup_first:
        # 5.16 550a7d60bd5e: vma_lookup() before anything is unmapped, a shrink included.
        if vma is None:
            return _fail(tr, lookup, f"nothing mapped at {addr:#x}", -errno.EFAULT)
        err, old_len, new_len = _hugetlb_lengths(mm, vma, addr, old_len, new_len, new_addr, tr)
        if err:
            return err
    if p.mremap_multi_vma and flags & _FIXED and old_len == new_len:
        return _remap_move(mm, addr, old_len, new_addr, flags, tr)
    checked = False
    if to and vma is not None and p.mremap_checks_source_first:
        # 6.17 a85dc37186a5: the source is checked, as it will be after a shrink, before the
        # destination is unmapped; before, a refused move had already unmapped it.
        err = _check_prep_vma(mm, vma, addr, min(old_len, new_len), new_len, flags, tr)
        if err:
            return err
        checked = True
    if flags & _FIXED:
        err = mm.do_munmap(new_addr, new_len, tr)
        if err:
            return err
    if old_len >= new_len:
        err = mm.do_munmap(addr + new_len, old_len - new_len, tr) if old_len > new_len else 0
        if err:
            return err
        if not to:
            tr.note("do_mremap", "shrunk in place" if old_len > new_len
                    else "same size: nothing to do")
            return addr
        old_len = new_len
    vma = mm.vma_at(addr)
    if vma is None:
        return _fail(tr, lookup, f"nothing mapped at {addr:#x}", -errno.EFAULT)
    if not p.mremap_vma_lookup_first:
        err, old_len, new_len = _hugetlb_lengths(mm, vma, addr, old_len, new_len, new_addr, tr)
        if err:
            return err
    if not checked:
        err = _check_prep_vma(mm, vma, addr, old_len, new_len, flags, tr)
        if err:
            return err
    if not to and vma.end - addr == old_len and _vma_expandable(mm, vma, new_len - old_len):
        return _expand_in_place(mm, vma, addr, old_len, new_len, tr)
    if not flags & _MAYMOVE:
        return _fail(tr, "do_mremap", "no room to grow in place and no MREMAP_MAYMOVE",
                     -errno.ENOMEM)
    return _move_to_free_area(mm, vma, addr, old_len, new_len, new_addr if to else 0,
                              bool(flags & _FIXED), flags, tr)


def _hugetlb_lengths(mm: MM, vma: VMA, addr: int, old_len: int, new_len: int, new_addr: int,
                     tr: Trace) -> tuple[int, int, int]:
    """(err, old_len, new_len) for a hugetlb VMA: v2.6.32 do_mremap() refuses it; 5.16
    (`Profile.mremap_hugetlb`) rounds both lengths up to huge pages (6.18 align_hugetlb())."""
    if not vma.flags & VM.VM_HUGETLB:
        return 0, old_len, new_len
    if not mm.profile.mremap_hugetlb:
        return _fail(tr, "do_mremap", "hugetlb VMA", -errno.EINVAL), old_len, new_len
    old_len = -(-old_len // HPAGE_SIZE) * HPAGE_SIZE
    new_len = -(-new_len // HPAGE_SIZE) * HPAGE_SIZE
    if addr % HPAGE_SIZE or new_addr % HPAGE_SIZE or new_len > old_len:
        return (_fail(tr, "align_hugetlb", "unaligned or growing hugetlb range", -errno.EINVAL),
                old_len, new_len)
    return 0, old_len, new_len


def _remap_move(mm: MM, addr: int, length: int, new_addr: int, flags: int, tr: Trace) -> int:
    """remap_move() (6.17): move every VMA piece of [addr, addr + length) to the same offset
    from new_addr; gaps stay gaps. An error stops the walk; pieces moved stay moved."""
    end = addr + length
    with tr.enter("remap_move", "[{:#x}, {:#x})", addr, end):
        pieces = []
        vma = mm.find_vma(addr)
        while vma is not None and vma.start < end:
            pieces.append((max(vma.start, addr), min(vma.end, end)))
            vma = mm.next_vma(vma)
        for start, stop in pieces:
            piece = mm.vma_at(start)
            if piece is None:
                return _fail(tr, "remap_move", f"{start:#x} no longer mapped", -errno.EFAULT)
            dest = new_addr + (start - addr)
            size = stop - start
            err = _check_prep_vma(mm, piece, start, size, size, flags, tr)
            if not err:
                err = mm.do_munmap(dest, size, tr)
            if err:
                return err
            piece = mm.vma_at(start)
            assert piece is not None
            got = move_vma(mm, piece, start, size, size, dest, flags, tr)
            if got < 0:
                return got
    return new_addr


def _check_prep_vma(mm: MM, vma: VMA, addr: int, old_len: int, new_len: int, flags: int,
                    tr: Trace) -> int:
    """6.18 check_prep_vma() (6.16 remap_is_valid(); v2.6.32 inline in do_mremap()): can
    [addr, addr + old_len) of `vma` become new_len bytes?"""
    fn = "check_prep_vma" if mm.profile.mremap_checks_source_first else "do_mremap"
    if (not old_len and mm.profile.mremap_refuses_private_dup
            and not vma.flags & (VM.VM_SHARED | VM.VM_MAYSHARE)):
        return _fail(tr, fn, "old_len 0 would duplicate a private mapping", -errno.EINVAL)
    if flags & _DONTUNMAP and vma.flags & (VM.VM_DONTEXPAND | VM.VM_PFNMAP):
        return _fail(tr, fn, "MREMAP_DONTUNMAP of a VM_DONTEXPAND or VM_PFNMAP VMA",
                     -errno.EINVAL)
    if old_len > vma.end - addr:
        return _fail(tr, fn, "old range crosses the end of its VMA", -errno.EFAULT)
    if new_len <= old_len:
        return 0
    if vma.pgoff_at(addr) + (new_len >> PAGE_SHIFT) >= 2**64:
        return _fail(tr, fn, "file offset would wrap", -errno.EINVAL)
    if vma.flags & (VM.VM_DONTEXPAND | VM.VM_PFNMAP):
        return _fail(tr, fn, "VM_DONTEXPAND or VM_PFNMAP VMA cannot grow", -errno.EFAULT)
    return 0


def _expand_in_place(mm: MM, vma: VMA, addr: int, old_len: int, new_len: int,
                     tr: Trace) -> int:
    """Grow `vma`, which [addr, addr + old_len) ends, to addr + new_len where it lies."""
    if mm.profile.mremap_expand_merges:
        # 6.0 "mm: add merging after mremap resize" (6.18 vma_merge_extend()): the grown VMA
        # merges with a compatible next one; a VMA that cannot merge cannot grow.
        grown = mm.vma_merge(vma, vma.end, addr + new_len, vma.flags, vma.file,
                             vma.pgoff_at(vma.end), vma.anon_vma, None, tr)
        if grown is None:
            return _fail(tr, "vma_merge_extend", "cannot extend the VMA", -errno.ENOMEM)
        tr.note("expand_vma_in_place", "grown in place to {:#x}-{:#x}", grown.start, grown.end)
    else:
        # v2.6.32 do_mremap(): vma_adjust() moves vm_end, nothing more.
        grown = vma
        mm.resize(vma, vma.start, addr + new_len)
        tr.note("vma_adjust", "grown in place to {:#x}-{:#x}", vma.start, vma.end)
        tr.event(Kind.RESIZE, vma.start, vma.end, "grown")
    if grown.flags & VM.VM_LOCKED:
        mm.kernel.mm_populate(mm, addr + old_len, addr + new_len, tr)
    return addr


def _vma_expandable(mm: MM, vma: VMA, delta: int) -> bool:
    """vma_expandable(): nothing mapped in [vm_end, vm_end + delta), still below TASK_SIZE."""
    end = vma.end + delta
    nxt = mm.next_vma(vma)
    return end <= TASK_SIZE and (nxt is None or nxt.start >= end)


def _map_count_too_close(mm: MM) -> bool:
    """Before anything is unmapped, room for both ranges to be cut in three and move_vma()'s
    4 spare maps (5.1 mremap_to(), `Profile.mremap_map_count_first`)."""
    return (mm.profile.mremap_map_count_first
            and mm.map_count + 2 >= mm.kernel.sysctl["max_map_count"] - 3)


def _overlaps(addr: int, old_len: int, new_addr: int, new_len: int) -> bool:
    """The old and the new range share an address (v2.6.32's two tests, 6.x vrm_overlaps())."""
    return addr + old_len > new_addr and new_addr + new_len > addr


def _move_to_free_area(mm: MM, vma: VMA, addr: int, old_len: int, new_len: int, hint: int,
                       fixed: bool, flags: int, tr: Trace) -> int:
    """get_unmapped_area() for the new location (huge-page aligned for hugetlb), then
    move_vma() there."""
    align = HPAGE_SIZE if vma.flags & VM.VM_HUGETLB else PAGE_SIZE
    # 6.18 vrm_set_new_addr(): get_unmapped_area(vma->vm_file, ..., MAP_SHARED if VM_MAYSHARE).
    got = mm.get_unmapped_area(new_len, hint, fixed, align,
                               vma.file is None and not vma.flags & VM.VM_MAYSHARE)
    if got < 0:
        return _fail(tr, "get_unmapped_area", "no room", got)
    return move_vma(mm, vma, addr, old_len, new_len, got, flags, tr)


def move_vma(mm: MM, vma: VMA, old_addr: int, old_len: int, new_len: int, new_addr: int,
             flags: int, tr: Trace) -> int:
    """move_vma(): break KSM pages, copy_vma() to new_addr (merging if it can), move the page
    table entries, then unmap the old range (MREMAP_DONTUNMAP: keep it, empty)."""
    p = mm.profile
    k = mm.kernel
    with tr.enter("move_vma", "[{:#x}, {:#x}) to {:#x}", old_addr, old_addr + old_len,
                  new_addr):
        if mm.map_count >= k.sysctl["max_map_count"] - 3:
            return _fail(tr, "move_vma", "map_count too close to max_map_count",
                         -errno.ENOMEM)
        # 2.6.32 "ksm: prevent mremap move poisoning" (1ff829957316): unmerge, keep the flag.
        if p.mremap_ksm_hook:
            err, _ = ksm_madvise(mm, vma, old_addr, old_addr + old_len,
                                 MADV.MADV_UNMERGEABLE, vma.flags, tr)
            if err:
                return err
        pgoff = vma.pgoff_at(old_addr)
        if vma.file is None and vma.anon_vma is None:
            pgoff = new_addr >> PAGE_SHIFT  # copy_vma(): an unfaulted VMA follows its address
        flags_now, file, anon_vma, chain = vma.flags, vma.file, vma.anon_vma, vma.chain
        _, prev = mm.find_vma_prev(new_addr)
        new = mm.vma_merge(prev, new_addr, new_addr + new_len, flags_now, file, pgoff,
                           anon_vma, None, tr)
        if new is None:
            new = VMA(new_addr, new_addr + new_len, flags_now, pgoff, file, anon_vma, chain)
            mm.insert(new)
            tr.note("copy_vma", "new VMA {:#x}-{:#x}", new.start, new.end)
            tr.event(Kind.MAP, new.start, new.end)
        moved = _move_page_tables(mm, old_addr, new_addr, old_len)
        tr.note("move_page_tables", "{} pages moved", moved)
        if flags & _DONTUNMAP:
            src = mm.vma_at(old_addr)
            if src is not None:
                src.flags &= ~(VM.VM_LOCKED | VM.VM_LOCKONFAULT)
                if src.start == old_addr and src.end == old_addr + old_len and src is not new:
                    src.anon_vma, src.chain = None, ()
            tr.note("dontunmap_complete", "old range kept, empty")
        else:
            mm.do_munmap(old_addr, old_len, tr)
        if flags_now & VM.VM_LOCKED and new_len > old_len:
            k.mm_populate(mm, new_addr + old_len, new_addr + new_len, tr)
    return new_addr


def _move_page_tables(mm: MM, old_addr: int, new_addr: int, length: int) -> int:
    """move_page_tables(): the PTEs (and guard markers) of the old range, to the new one."""
    first, last = old_addr >> PAGE_SHIFT, (old_addr + length) >> PAGE_SHIFT
    delta = (new_addr - old_addr) >> PAGE_SHIFT
    vpns = list(mm.ptes.irange(first, last - 1))
    pages = [mm.ptes.pop(v) for v in vpns]
    for vpn, page in zip(vpns, pages, strict=True):
        mm.ptes[vpn + delta] = page
    guards = [v for v in mm.guards if first <= v < last]
    mm.guards.difference_update(guards)
    mm.guards.update(v + delta for v in guards)
    return len(vpns)
