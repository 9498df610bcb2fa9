"""The madvise(2) path, function by function as in mm/madvise.c.

2.6.32: sys_madvise() -> madvise_vma() -> madvise_behavior() | madvise_willneed() |
madvise_dontneed() | madvise_remove(). 6.x: do_madvise() -> madvise_walk_vmas() ->
madvise_vma_behavior(), with the same entry checks, walk and split/merge. The trace uses each
kernel's own function names (`Profile.fn`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
from collections.abc import Mapping
from types import MappingProxyType

from .constants import ERESTARTSYS, HPAGE_SIZE, MADV, PAGE_SHIFT, PAGE_SIZE, ULONG_MAX, VM
from .ksm import ksm_madvise
from .mm import MM, VMA, flag_names
from .profiles import Profile
from .trace import Fail, Kind, Trace, errno_name

__all__ = ["sys_madvise", "madvise_vma", "madvise_behavior", "ADVICE_FLAGS", "advice_codes"]

# Advice sets as plain ints: sys_madvise() turns the advice into a plain int, and an int
# finds an int in a set faster than it compares equal to an IntEnum member.
_KSM_ADVICES = frozenset((int(MADV.MADV_MERGEABLE), int(MADV.MADV_UNMERGEABLE)))
_POPULATE_ADVICES = frozenset((int(MADV.MADV_POPULATE_READ), int(MADV.MADV_POPULATE_WRITE)))


#: What each advice that changes vm_flags sets and clears, besides MERGEABLE/UNMERGEABLE
#: (ksm_madvise()) and GUARD_INSTALL (Profile.guard_marks_vma): 2.6.32 madvise_behavior(),
#: 6.12 madvise_vma_behavior().
ADVICE_FLAGS: Mapping[MADV, tuple[VM, VM]] = MappingProxyType({
    MADV.MADV_NORMAL: (VM(0), VM.VM_RAND_READ | VM.VM_SEQ_READ),
    MADV.MADV_SEQUENTIAL: (VM.VM_SEQ_READ, VM.VM_RAND_READ),
    MADV.MADV_RANDOM: (VM.VM_RAND_READ, VM.VM_SEQ_READ),
    MADV.MADV_DONTFORK: (VM.VM_DONTCOPY, VM(0)),
    MADV.MADV_DOFORK: (VM(0), VM.VM_DONTCOPY),
    MADV.MADV_HUGEPAGE: (VM.VM_HUGEPAGE, VM.VM_NOHUGEPAGE),
    MADV.MADV_NOHUGEPAGE: (VM.VM_NOHUGEPAGE, VM.VM_HUGEPAGE),
    MADV.MADV_DONTDUMP: (VM.VM_DONTDUMP, VM(0)),
    MADV.MADV_DODUMP: (VM(0), VM.VM_DONTDUMP),
    MADV.MADV_WIPEONFORK: (VM.VM_WIPEONFORK, VM(0)),
    MADV.MADV_KEEPONFORK: (VM(0), VM.VM_WIPEONFORK),
})
#: The advices that change vm_flags.
_FLAG_ADVICES = frozenset(map(int, ADVICE_FLAGS)) | _KSM_ADVICES


def advice_codes(profile: Profile, config_ksm: bool = True) -> tuple[str, ...]:
    """The smaps VmFlags codes of the flags an advice this kernel takes can set or clear, in
    the order the kernel prints them ("mg", "dc", "rr", "sr", ...)."""
    flags = VM(0)
    for advice in profile.all_advices(config_ksm):
        if advice in ADVICE_FLAGS:
            sets, clears = ADVICE_FLAGS[advice]
            flags |= sets | clears
        elif advice in _KSM_ADVICES:
            flags |= VM.VM_MERGEABLE
        elif advice == MADV.MADV_GUARD_INSTALL and profile.guard_marks_vma:
            flags |= VM.VM_MAYBE_GUARD
    return tuple(profile.codes(flags))


@functools.lru_cache(maxsize=512)
def advice_name(advice: int) -> str:
    """'MADV_MERGEABLE' for 12; the number itself for an unknown advice."""
    try:
        return MADV(advice).name or str(advice)
    except ValueError:
        return str(advice)


def sys_madvise(mm: MM, start: int, len_in: int, advice: int, tr: Trace) -> int:
    """sys_madvise() / do_madvise(): entry checks in the kernel's order, then the VMA walk.

    The advice is the syscall's `int behavior` (SYSCALL_DEFINE3(madvise, unsigned long,
    start, size_t, len_in, int, behavior) in v2.6.32 and 6.x): only its low 32 bits count,
    as a signed int, so (1 << 32) | 12 is MADV_MERGEABLE."""
    p = mm.profile
    k = mm.kernel
    fn = p.fn("sys_madvise")
    advice = ((advice & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000
    with tr.enter(fn):
        if not p.valid_advice(advice, k.config_ksm):
            no_ksm = advice in _KSM_ADVICES
            why = "CONFIG_KSM is not set" if no_ksm else "not an advice this kernel knows"
            tr.note("madvise_behavior_valid", f"{advice_name(advice)}: {why}: EINVAL")
            tr.event(Kind.FAIL, start, start, Fail.CONFIG_KSM if no_ksm else Fail.ADVICE)
            return -errno.EINVAL
        if start & (PAGE_SIZE - 1):
            tr.note(fn, f"start {start:#x} not page aligned: EINVAL")
            tr.event(Kind.FAIL, start, start, Fail.UNALIGNED)
            return -errno.EINVAL
        length = (len_in + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) & ULONG_MAX
        if len_in and not length:
            tr.note(fn, "len rounds up past 2**64 to 0: EINVAL")
            tr.event(Kind.FAIL, start, start, Fail.LEN)
            return -errno.EINVAL
        end = start + length
        if end > ULONG_MAX:
            tr.note(fn, "start + len wraps: EINVAL")
            tr.event(Kind.FAIL, start, start, Fail.WRAP)
            return -errno.EINVAL
        if end == start:
            tr.note(fn, "len 0: nothing to do, 0")
            tr.event(Kind.EMPTY, start, start)
            return 0
        if advice in _POPULATE_ADVICES:
            return madvise_populate(mm, start, end, advice, tr)
        return madvise_walk(mm, start, end, advice, tr)


def madvise_walk(mm: MM, start: int, end: int, advice: int, tr: Trace) -> int:
    """The VMA walk of sys_madvise() (6.x madvise_walk_vmas()): holes give ENOMEM at the
    end, any other error stops the walk at once with no rollback."""
    vma, prev = mm.find_vma_prev(start)
    if vma is not None and start > vma.start:
        prev = vma
    unmapped_error = 0
    while True:
        if vma is None:
            tr.note("find_vma", f"nothing mapped at or above {start:#x}: ENOMEM")
            tr.event(Kind.HOLE, start, end)
            return -errno.ENOMEM
        if start < vma.start:
            tr.note("find_vma", f"hole [{start:#x}, {min(vma.start, end):#x}): "
                    "remember ENOMEM, go on")
            tr.event(Kind.HOLE, start, min(vma.start, end))
            unmapped_error = -errno.ENOMEM
            start = vma.start
            if start >= end:
                return unmapped_error
        tmp = min(vma.end, end)
        err, prev = madvise_vma(mm, vma, prev, start, tmp, advice, tr)
        if err:
            if err == -ERESTARTSYS:
                return -errno.EINTR
            return err
        start = tmp
        if prev is not None and start < prev.end:
            start = prev.end
        if start >= end:
            if unmapped_error:
                tr.note(mm.profile.fn("sys_madvise"), "advice applied where mapped; ENOMEM "
                        "for the hole")
            return unmapped_error
        vma = mm.next_vma(prev) if prev is not None else mm.find_vma(start)


def madvise_vma(mm: MM, vma: VMA, prev: VMA | None, start: int, end: int, advice: int,
                tr: Trace) -> tuple[int, VMA | None]:
    """madvise_vma(): one VMA piece; returns (error, new prev)."""
    p = mm.profile
    with tr.enter(p.fn("madvise_vma"), "{} [{:#x}, {:#x}) of VMA {:#x}-{:#x}",
                  advice_name(advice), start, end, vma.start, vma.end):
        if advice in _FLAG_ADVICES:
            return madvise_behavior(mm, vma, prev, start, end, advice, tr)
        if advice == MADV.MADV_REMOVE:
            return madvise_remove(mm, vma, start, end, tr), None
        if advice == MADV.MADV_WILLNEED:
            return madvise_willneed(mm, vma, start, end, tr)
        if advice in (MADV.MADV_DONTNEED, MADV.MADV_DONTNEED_LOCKED, MADV.MADV_FREE):
            return madvise_dontneed_free(mm, vma, start, end, advice, tr), vma
        if advice in (MADV.MADV_COLD, MADV.MADV_PAGEOUT):
            if vma.flags & (VM.VM_LOCKED | VM.VM_PFNMAP | VM.VM_HUGETLB):
                tr.note("can_madv_lru_vma", "VM_LOCKED, VM_PFNMAP or VM_HUGETLB: EINVAL")
                return -errno.EINVAL, vma
            tr.note("madvise_cold_or_pageout", "pages moved to the inactive list")
            return 0, vma
        if advice == MADV.MADV_COLLAPSE:
            return madvise_collapse(mm, vma, start, end, tr), vma
        if advice in (MADV.MADV_GUARD_INSTALL, MADV.MADV_GUARD_REMOVE):
            return madvise_guard(mm, vma, start, end, advice, tr), vma
        return madvise_behavior(mm, vma, prev, start, end, advice, tr)


def madvise_behavior(mm: MM, vma: VMA, prev: VMA | None, start: int, end: int, advice: int,
                     tr: Trace) -> tuple[int, VMA | None]:
    """madvise_behavior() (6.x madvise_vma_behavior() + madvise_update_vma()).

    Computes the new flags; equal flags end here (no split, no merge). Otherwise vma_merge()
    or split_vma() at start and end, then the flags are set. ENOMEM becomes EAGAIN.
    """
    # 2.6.32 does all of this in madvise_behavior(); 6.x computes the flags in
    # madvise_vma_behavior() and applies them in madvise_update_vma().
    legacy = not mm.profile.madvise_update_vma
    with tr.enter("madvise_behavior") if legacy else contextlib.nullcontext():
        new = vma.flags
        err = 0
        if advice in _KSM_ADVICES:
            err, new = ksm_madvise(mm, vma, start, end, advice, new, tr)
        else:
            if advice == MADV.MADV_DOFORK and vma.flags & VM.VM_IO:
                tr.note("madvise_behavior", "MADV_DOFORK on a VM_IO VMA: EINVAL")
                return -errno.EINVAL, prev
            if (advice == MADV.MADV_DODUMP and not vma.flags & VM.VM_HUGETLB
                    and new & mm.profile.vm_special):
                tr.note("madvise_vma_behavior", "MADV_DODUMP on a VM_SPECIAL VMA: EINVAL")
                return -errno.EINVAL, prev
            if advice == MADV.MADV_WIPEONFORK and (vma.file is not None
                                                   or vma.flags & VM.VM_SHARED):
                tr.note("madvise_vma_behavior", "MADV_WIPEONFORK needs private anonymous "
                        "memory: EINVAL")
                return -errno.EINVAL, prev
            if advice == MADV.MADV_KEEPONFORK and vma.flags & VM.VM_DROPPABLE:
                return -errno.EINVAL, prev
            sets, clears = ADVICE_FLAGS[MADV(advice)]
            new = (new & ~clears) | sets
        fn = mm.profile.fn("madvise_behavior")
        if not err:
            if new == vma.flags:
                tr.note(fn, "flags unchanged: no split, no merge")
                tr.event(Kind.UNCHANGED, start, end)
                return 0, vma
            with contextlib.nullcontext() if legacy else tr.enter(fn):
                err, prev = mm.modify_flags(vma, prev, start, end, new, tr)
        if err == -errno.ENOMEM:
            tr.note(fn, "ENOMEM becomes EAGAIN")
            err = -errno.EAGAIN
        return err, prev


def madvise_willneed(mm: MM, vma: VMA, start: int, end: int,
                     tr: Trace) -> tuple[int, VMA | None]:
    """madvise_willneed(): read ahead a file range (6.x: also swap in anonymous memory)."""
    if vma.file is None:
        # 3.9 "mm: make madvise(MADV_WILLNEED) support swap file prefetch" (1998cc048901).
        if mm.profile.willneed_anon_ebadf:
            tr.note("madvise_willneed", "anonymous VMA has no file: EBADF")
            return -errno.EBADF, None
        tr.note("madvise_willneed", "anonymous VMA: swap-in readahead")
        return 0, vma
    tr.note("madvise_willneed", "force_page_cache_readahead()")
    return 0, vma


def madvise_dontneed_free(mm: MM, vma: VMA, start: int, end: int, advice: int,
                          tr: Trace) -> int:
    """madvise_dontneed() (6.x madvise_dontneed_free()): drop the pages of the range."""
    p = mm.profile
    name = advice_name(advice).lower()
    # 5.18 "mm: madvise: MADV_DONTNEED_LOCKED" and "mm: enable MADV_DONTNEED for hugetlb
    # mappings" (90e7e7f5ef3f).
    if not p.dontneed_valid_vma:
        if vma.flags & (VM.VM_LOCKED | VM.VM_HUGETLB | VM.VM_PFNMAP):
            tr.note("madvise_dontneed", "VM_LOCKED, VM_HUGETLB or VM_PFNMAP: EINVAL")
            return -errno.EINVAL
    else:  # 5.18 madvise_dontneed_free_valid_vma()
        locked_ok = advice == MADV.MADV_DONTNEED_LOCKED
        if vma.flags & VM.VM_LOCKED and not locked_ok:
            tr.note("madvise_dontneed_free_valid_vma", "VM_LOCKED: EINVAL")
            return -errno.EINVAL
        if vma.flags & VM.VM_HUGETLB:
            if advice == MADV.MADV_FREE or start % HPAGE_SIZE:
                tr.note("madvise_dontneed_free_valid_vma", "hugetlb: EINVAL")
                return -errno.EINVAL
            end = end // HPAGE_SIZE * HPAGE_SIZE
        elif vma.flags & VM.VM_PFNMAP:
            tr.note("madvise_dontneed_free_valid_vma", "VM_PFNMAP: EINVAL")
            return -errno.EINVAL
        if advice == MADV.MADV_FREE and vma.file is not None:
            tr.note("madvise_free_single_vma", "not anonymous memory: EINVAL")
            return -errno.EINVAL
    if advice == MADV.MADV_FREE:
        return madvise_free(mm, start, end, tr)
    dropped = mm.zap_range(start, end)
    tr.note(f"madvise_{name.removeprefix('madv_')}", f"zap_page_range: {dropped} pages dropped")
    return 0


def madvise_free(mm: MM, start: int, end: int, tr: Trace) -> int:
    """madvise_free_single_vma() -> madvise_free_pte_range(): the range's anonymous pages that
    only this mapping maps are marked clean and lazily freeable (folio_mark_lazyfree()). They
    keep their contents until reclaim frees them (`Kernel.reclaim()`); a write before that
    makes a page dirty again and it stays. Shared (mapcount > 1) and KSM pages are skipped."""
    marked = 0
    for vpn in mm.ptes.irange(start >> PAGE_SHIFT, (end >> PAGE_SHIFT) - 1):
        page = mm.ptes[vpn]
        if page.anon and page.mapcount == 1 and page.ksm is None and not page.lazyfree:
            page.lazyfree = True
            marked += 1
    tr.note("madvise_free_pte_range", "{} pages marked lazily freeable", marked)
    return 0


def madvise_remove(mm: MM, vma: VMA, start: int, end: int, tr: Trace) -> int:
    """madvise_remove(): punch a hole in the file behind a shared writable mapping."""
    p = mm.profile
    if vma.flags & p.remove_refused:
        tr.note("madvise_remove", f"{flag_names(vma.flags & p.remove_refused)}: EINVAL")
        return -errno.EINVAL
    f = vma.file
    if f is None:
        tr.note("madvise_remove", "no file behind the VMA: EINVAL")
        return -errno.EINVAL
    # 6.7 "mm: drop the assumption that VM_SHARED always implies writable":
    # vma_is_shared_maywrite() replaced the VM_SHARED|VM_WRITE test.
    need = VM.VM_SHARED | (VM.VM_WRITE if p.remove_needs_write else VM.VM_MAYWRITE)
    if vma.flags & need != need:
        tr.note("madvise_remove", f"not {'|'.join(n.name or '' for n in VM if n & need)}: "
                "EACCES")
        return -errno.EACCES
    # 3.5 "mm/fs: route MADV_REMOVE to FALLOC_FL_PUNCH_HOLE" (3f31d07571ee).
    if f.fs not in p.remove_filesystems:
        err = -errno.ENOSYS if not p.remove_by_fallocate else (
            -errno.ENODEV if f.kind == "device" else -errno.EOPNOTSUPP)
        how = "vfs_fallocate" if p.remove_by_fallocate else "vmtruncate_range"
        tr.note(how, f"{f.fs} cannot punch holes: {errno_name(err)}")
        return err
    first, last = vma.pgoff_at(start), vma.pgoff_at(end)
    for pgoff in [o for o in f.pages if first <= o < last]:
        del f.pages[pgoff]
    # even_cows 0 since 3.5 "tmpfs: support fallocate FALLOC_FL_PUNCH_HOLE".
    mm.kernel.drop_file_pages(f, first, last, even_cows=p.remove_zaps_cows)
    # vfs_fallocate() from 3.5, as above.
    how = "vfs_fallocate(PUNCH_HOLE)" if p.remove_by_fallocate else "vmtruncate_range"
    tr.note(how, f"file pages {first}..{last - 1} freed")
    return 0


def madvise_populate(mm: MM, start: int, end: int, advice: int, tr: Trace) -> int:
    """madvise_populate(): fault the whole range in; a hole or a forbidden VMA stops it."""
    write = advice == MADV.MADV_POPULATE_WRITE
    addr = start
    with tr.enter("madvise_populate", "write" if write else "read"):
        while addr < end:
            vma = mm.vma_at(addr)
            if vma is None:
                tr.note("faultin_page_range", f"{addr:#x} not mapped: ENOMEM")
                return -errno.ENOMEM
            need = VM.VM_WRITE if write else VM.VM_READ
            if vma.flags & (VM.VM_IO | VM.VM_PFNMAP) or not vma.flags & need:
                tr.note("check_vma_flags", "VM_IO/VM_PFNMAP or not permitted: EINVAL")
                return -errno.EINVAL
            stop = min(end, vma.end)
            if write or (vma.file is None and not vma.flags & VM.VM_SHARED):
                mm.kernel.populate(mm, vma, addr, stop, write, tr)
            tr.note("faultin_page_range", f"[{addr:#x}, {stop:#x}) faulted in")
            addr = stop
    return 0


def madvise_collapse(mm: MM, vma: VMA, start: int, end: int, tr: Trace) -> int:
    """madvise_collapse(): collapse each whole, populated 2 MiB range into a huge page.

    thp_vma_allowable_order() first: the VMA must be able to hold an aligned huge page.
    A huge-page range that is not fully populated fails (madvise_collapse_errno(): EINVAL).
    """
    huge = HPAGE_SIZE
    first_huge = (vma.start + huge - 1) // huge * huge
    if (vma.flags & (mm.profile.vm_special | VM.VM_HUGETLB | VM.VM_NOHUGEPAGE)
            or (vma.file is not None and vma.file.kind != "shmem")
            or first_huge + huge > vma.end):
        tr.note("thp_vma_allowable_order", "VMA cannot hold an aligned huge page: EINVAL")
        return -errno.EINVAL
    hstart, hend = (start + huge - 1) // huge * huge, end // huge * huge
    for h in range(hstart, hend, huge):
        present = len(list(mm.ptes.irange(h >> PAGE_SHIFT, ((h + huge) >> PAGE_SHIFT) - 1)))
        if present < huge >> PAGE_SHIFT:
            tr.note("hpage_collapse_scan_pmd", f"{h:#x}: {present} of 512 pages present: EINVAL")
            return -errno.EINVAL
    tr.note("madvise_collapse", f"{(hend - hstart) // huge if hend > hstart else 0} huge pages")
    return 0


def madvise_guard(mm: MM, vma: VMA, start: int, end: int, advice: int, tr: Trace) -> int:
    """madvise_guard_install() / madvise_guard_remove() (6.13+): guard markers in the page
    table. Installing marks the whole VMA VM_MAYBE_GUARD (6.18), without a split."""
    disallowed = mm.profile.vm_special | VM.VM_HUGETLB
    if advice == MADV.MADV_GUARD_INSTALL:
        disallowed |= VM.VM_LOCKED
    if vma.flags & disallowed:
        tr.note("is_valid_guard_vma", "special, hugetlb or locked VMA: EINVAL")
        return -errno.EINVAL
    vpns = range(start >> PAGE_SHIFT, end >> PAGE_SHIFT)
    if advice == MADV.MADV_GUARD_INSTALL:
        if vma.file is None:  # vma_is_anonymous(): page tables need an anon_vma
            mm.anon_vma_prepare(vma)
        # "mm: introduce VM_MAYBE_GUARD and make visible in /proc/$pid/smaps" (6.19; in the
        # 6.18 kernel modelled).
        if mm.profile.guard_marks_vma:
            vma.flags |= VM.VM_MAYBE_GUARD
        mm.zap_range(start, end)
        mm.guards.update(vpns)
        tr.note("madvise_guard_install", f"{len(vpns)} guard markers installed")
    else:
        mm.guards.difference_update(vpns)
        tr.note("madvise_guard_remove", "guard markers removed")
    return 0
