"""The simulated kernel (`Kernel`) and its processes (`Process`), which carry the syscalls.

A syscall builds a `Trace`, runs the kernel functions that model it, stores the trace as
`Process.last_trace` and in `Kernel.log`, and raises OSError (with the kernel's errno) if the
result is negative, as Python's own `mmap.madvise` does.
"""

from __future__ import annotations

import collections
import enum
import errno
import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from .constants import MADV, MAP, MMF, MREMAP, PAGE_SHIFT, PAGE_SIZE, PROT, ULONG_MAX, VM
from .ksm import (
    PR_GET_MEMORY_MERGE,
    PR_SET_MEMORY_MERGE,
    KsmState,
    ksm_exit,
    ksm_fork,
    ksm_vma_flags,
    sys_prctl_memory_merge,
)
from .ksmd import Ksmd, KsmdUnavailable
from .madvise import advice_name, sys_madvise
from .mm import MM, VMA, AnonVma, File, Page, flag_names
from .mremap import sys_mremap
from .procfs import MapEntry, format_maps, read_maps
from .profiles import Profile, get_profile
from .sysfs import KsmSysfs
from .thp import Thp
from .trace import Fault, Kind, Trace, errno_name

if TYPE_CHECKING:
    from .backend import FileBackend

__all__ = ["Kernel", "Process", "DRIVER_STYLES", "KSM_KCONFIG_HELP"]

#: The Kconfig entry the seed patch adds to mm/Kconfig.
KSM_KCONFIG_HELP = "\n".join((
    'config KSM',
    '\tbool "Enable KSM for page merging"',
    '\tdepends on MMU',
    '\thelp',
    '\t  Enable Kernel Samepage Merging: KSM periodically scans those areas',
    "\t  of an application's address space that an app has advised may be",
    '\t  mergeable.  When it finds pages of identical content, it replaces',
    '\t  the many instances by a single resident page with that content, so',
    '\t  saving memory until one or another app needs to modify the content.',
    '\t  Recommended for use with KVM, or with other duplicative applications.',
))

#: How drivers of each kind mark the VMAs their ->mmap() sets up.
DRIVER_STYLES: dict[str, Callable[[Profile], VM]] = {
    "remap_pfn_range": lambda p: p.remap_pfn_flags,
    "vm_insert_mixed": lambda p: VM.VM_MIXEDMAP,
    "vm_insert_page": lambda p: VM.VM_INSERTPAGE,
    "io": lambda p: VM.VM_IO,
    "reserved": lambda p: VM.VM_RESERVED,
    "dontexpand": lambda p: VM.VM_DONTEXPAND,
    "sao": lambda p: VM.VM_SAO,
}

#: The types of an advice that need no _check_ints(): an int, or a MADV member.
_ADVICE_TYPES = (int, MADV)
FAULT_POINTS = ("__ksm_enter", "split_vma", "signal_pending", "break_ksm",
                "write_protect_page", "alloc_rmap_item")


def _oserror(err: int, what: str) -> OSError:
    e = -err if err < 0 else err
    return OSError(e, f"{os.strerror(e)} ({errno_name(e)}) from {what}")


class Kernel:
    """A booted simulated kernel: a profile, CONFIG_KSM, sysctls, processes and KSM state.

    max_map_count defaults to DEFAULT_MAX_MAP_COUNT, USHRT_MAX - MAPCOUNT_ELF_CORE_MARGIN
    (include/linux/mm.h)."""

    def __init__(self, profile: str | Profile = "seed", config_ksm: bool = True, *,
                 max_map_count: int = 65530, nr_hugepages: int = 0) -> None:
        self.profile = get_profile(profile)
        self.config_ksm = bool(config_ksm)
        self.sysctl = {"max_map_count": max_map_count, "nr_hugepages": nr_hugepages}
        self.hugepages_reserved = 0
        self.processes: list[Process] = []
        self.files: dict[str, File] = {}
        #: The most recent system calls' traces, oldest first.
        self.log: collections.deque[Trace] = collections.deque(maxlen=10_000)
        #: The ids of the pages, anon_vmas, processes and inodes this kernel makes, from 1 at each
        #: boot, so that each is numbered alike in every trace and view of the same scenario.
        self.page_ids = itertools.count(1)
        self.anon_vma_ids = itertools.count(1)
        self.pids = itertools.count(1)
        self.inos = itertools.count(1)
        #: The shared zero page (ZERO_PAGE(0), #0 in the views) as a read fault or a THP split
        #: maps it: a special, clean pte (KSM's use_zero_pages maps `KsmState.zero_page`).
        self.zero_page = Page(0, mapcount=0, anon=False, id=0)
        self.ksm = KsmState(self)
        #: Transparent huge pages: /sys/kernel/mm/transparent_hugepage/enabled and the PMD
        #: mappings (ksmbook.thp; kernels with Profile.thp only).
        self.thp = Thp(self)
        #: Injected failures still to come, by fault point (`inject`).
        self.injected: dict[str, int] = {}

    def __repr__(self) -> str:
        return (f"Kernel(profile={self.profile.name!r}, config_ksm={self.config_ksm}, "
                f"processes={[p.pid for p in self.processes]})")

    # -- ksmd and /sys/kernel/mm/ksm (2.6.32 and later) ---------------------------------

    @property
    def ksmd(self) -> Ksmd:
        """The ksmd thread (step it with .batch(), .full_scans(n), .run_for(ms))."""
        if not self.profile.has_ksmd:
            raise KsmdUnavailable(
                f"the {self.profile.name} kernel ({self.profile.title}) has no ksmd and no "
                "/sys/kernel/mm/ksm: its mm/ksm.c only records the advice; boot "
                "Kernel(profile='2.6.32') or Kernel(profile='modern') to watch pages merge")
        if not self.config_ksm:
            raise KsmdUnavailable("CONFIG_KSM is not set: this kernel has no ksmd and no "
                                  "/sys/kernel/mm/ksm")
        if self.ksm.daemon is None:
            self.ksm.daemon = Ksmd(self)
        return self.ksm.daemon

    @property
    def sysfs(self) -> KsmSysfs:
        """/sys/kernel/mm/ksm: ksmd's knobs and counters by file name."""
        daemon = self.ksmd
        if self.ksm.sysfs is None:
            self.ksm.sysfs = KsmSysfs(self, daemon)
        return self.ksm.sysfs

    # -- set-up ---------------------------------------------------------------------------

    def spawn(self, name: str = "") -> Process:
        """A new process with an empty address space."""
        proc = Process(self, MM(self), name)
        self.processes.append(proc)
        return proc

    def create_file(self, name: str, size: int, *, fs: str = "ext4", writable: bool = True,
                    contents: Sequence[int] | None = None) -> File:
        """A file of `size` bytes on `fs` ("ext4" or "tmpfs"), opened read-write unless
        writable=False; contents gives one int per page (default: zeros)."""
        if fs not in ("ext4", "tmpfs"):
            raise ValueError("fs must be 'ext4' or 'tmpfs'")
        if size < 0:
            raise ValueError("size must not be negative")
        path = name if name.startswith("/") else f"/tmp/{name}"
        kind = "shmem" if fs == "tmpfs" else "regular"
        f = File(path, size, kind=kind, fs=fs, writable=writable, ino=next(self.inos))
        for i, c in enumerate(contents or ()):
            f.pages[i] = Page(int(c), mapcount=0, anon=False, id=next(self.page_ids))
        self.files[path] = f
        return f

    def create_device(self, name: str, style: str | VM = "remap_pfn_range",
                      size: int = 1 << 20) -> File:
        """A character device whose ->mmap() marks VMAs as a driver of `style` would
        (one of DRIVER_STYLES, or VM flags)."""
        if isinstance(style, str):
            if style not in DRIVER_STYLES:
                raise ValueError(f"unknown driver style {style!r}; "
                                 f"choose one of {', '.join(DRIVER_STYLES)}")
            flags = DRIVER_STYLES[style](self.profile)
        else:
            flags = VM(style)
        missing = flags & self.profile.missing_flags
        if missing:
            raise ValueError(f"{flag_names(missing)} does not exist in the "
                             f"{self.profile.name} kernel")
        ino = next(self.inos)
        # Device memory of each device at its own physical frames, above 3.75 GiB.
        f = File(f"/dev/{name}", size, kind="device", fs="devtmpfs", vm_flags=flags, ino=ino,
                 remap_pfn=style == "remap_pfn_range", pfn=0xF0000 + (ino << 8))
        self.files[f.path] = f
        return f

    def inject(self, point: str, times: int = 1) -> None:
        """Make the next `times` passes through a fault point fail: "__ksm_enter" and
        "split_vma" (allocation failure, ENOMEM), "break_ksm" (OOM while unmerging),
        "signal_pending" (a signal arrives while unmerging), "write_protect_page" (ksmd finds
        the page it would merge pinned by I/O: an extra reference, no merge) and
        "alloc_rmap_item" (ksmd cannot allocate an rmap_item: its batch ends there)."""
        if point not in FAULT_POINTS:
            raise ValueError(f"unknown fault point {point!r}; choose one of "
                             f"{', '.join(FAULT_POINTS)}")
        self.injected[point] = self.injected.get(point, 0) + times

    def should_fail(self, point: str) -> bool:
        """True (once per injected failure) if the fault point is to fail now."""
        if self.injected.get(point, 0) > 0:
            self.injected[point] -= 1
            return True
        return False

    # -- hooks used by the mm code --------------------------------------------------------

    def file_mapped(self, f: File) -> bool:
        """Whether any VMA of any live process still maps `f`."""
        return any(v.file is f for p in self.processes for v in p.mm.vmas)

    def drop_file_pages(self, f: File, first: int, last: int, even_cows: bool) -> None:
        """unmap_mapping_range(): unmap file pages [first, last) of `f` from every process
        (hole punch). Private mappings lose the page-cache pages they map; with even_cows
        (v2.6.32 vmtruncate_range()) also their private COW copies, which then read zeros."""
        for proc in self.processes:
            mm = proc.mm
            for vma in list(mm.vmas):
                if vma.file is not f:
                    continue
                lo = max(first, vma.pgoff)
                hi = min(last, vma.pgoff + vma.pages)
                if lo >= hi:
                    continue
                start = vma.start + ((lo - vma.pgoff) << PAGE_SHIFT)
                end = vma.start + ((hi - vma.pgoff) << PAGE_SHIFT)
                if vma.flags & VM.VM_SHARED or even_cows:
                    mm.zap_range(start, end)
                    continue
                for vpn in list(mm.ptes.irange(start >> PAGE_SHIFT, (end >> PAGE_SHIFT) - 1)):
                    if not mm.ptes[vpn].anon:
                        mm.zap_range(vpn << PAGE_SHIFT, (vpn + 1) << PAGE_SHIFT)

    def populate(self, mm: MM, vma: VMA, start: int, end: int, write: bool,
                 tr: Trace | None = None) -> None:
        """faultin_page() -> handle_mm_fault() for every page of [start, end), with
        FAULT_FLAG_WRITE (the content stays) or without it (a private anonymous VMA: the zero
        page where nothing is mapped), each fault recorded in `tr` if given."""
        for addr in range(start, end, PAGE_SIZE):
            if write:
                handle_write_fault(mm, vma, addr, None, tr)
            else:
                handle_read_fault(mm, vma, addr, tr)

    def mm_populate(self, mm: MM, start: int, end: int, tr: Trace | None = None) -> None:
        """mm_populate() (2.6.32 make_pages_present()): fault in a MAP_LOCKED or MAP_POPULATE
        range; private writable VMAs take write faults (their pages become anonymous), each
        recorded in `tr` if given."""
        addr = start
        while addr < end and (vma := mm.vma_at(addr)) is not None:
            stop = min(end, vma.end)
            private_write = vma.flags & (VM.VM_WRITE | VM.VM_SHARED) == VM.VM_WRITE
            if private_write or (vma.file is None and vma.flags & VM.VM_READ):
                self.populate(mm, vma, addr, stop, bool(private_write), tr)
            elif vma.file is not None and vma.flags & VM.VM_READ and vma.file.kind != "device":
                for a in range(addr, stop, PAGE_SIZE):
                    if a >> PAGE_SHIFT not in mm.ptes:
                        page = file_page(mm, vma.file, vma.pgoff_at(a))
                        page.mapcount += 1
                        mm.ptes[a >> PAGE_SHIFT] = page
            addr = stop

    def reclaim(self) -> int:
        """Memory pressure: reclaim frees every page MADV_FREE left clean (shrink_folio_list()
        -> try_to_unmap_one() discarding a clean lazyfree anonymous folio); the addresses then
        read zeros. Returns how many page table entries were dropped."""
        dropped = 0
        for proc in self.processes:
            mm = proc.mm
            for vpn in [v for v, page in mm.ptes.items() if page.lazyfree]:
                dropped += mm.zap_range(vpn << PAGE_SHIFT, (vpn + 1) << PAGE_SHIFT)
        return dropped

    def ksm_vma_flags(self, mm: MM, file: File | None, vm_flags: VM, tr: Trace) -> VM:
        """ksm_vma_flags(): a new mapping of an MMF_VM_MERGE_ANY mm is VM_MERGEABLE."""
        if not self.config_ksm:
            return vm_flags
        return ksm_vma_flags(mm, file, vm_flags, tr)


def file_page(mm: MM, f: File, pgoff: int) -> Page:
    """find_or_create_page(): the page-cache page of `f` at pgoff (a hole reads as zeros)."""
    page = f.pages.get(pgoff)
    if page is None:
        page = f.pages[pgoff] = Page(0, mapcount=0, anon=False, id=next(mm.kernel.page_ids))
    return page


def handle_write_fault(mm: MM, vma: VMA, addr: int, content: int | None,
                       tr: Trace | None = None) -> Fault:
    """handle_mm_fault() for a write at `addr`: store `content` (None keeps what is there),
    record in `tr` the path the fault took, and return what it did.

    6.x mm/memory.c handle_pte_fault(): a missing pte goes to do_anonymous_page() (a new
    zeroed page) or do_fault() -> do_cow_fault() / do_shared_fault() (file pages); a present,
    write-protected one to do_wp_page(), which copies in wp_page_copy() a page mapped more than
    once or a KSM page (wp_can_reuse_anon_folio() refuses KSM folios). v2.6.32 mm/memory.c
    handle_pte_fault(): do_anonymous_page(), do_linear_fault() -> __do_fault() (which makes
    the private copy itself), do_wp_page() ("if (PageAnon(old_page) && !PageKsm(old_page))"
    -> reuse_swap_page() and its ``reuse:`` label; else the copy at its ``gotten:`` label).
    A private anonymous page mapped once is written in place: without a fault (NONE), or,
    if fork() write-protected it (`Page.wrprotect`), after do_wp_page() -> wp_page_reuse()
    (REUSE). A write to the zero page that a read mapped gets a new zeroed page (ZERO_COPY):
    6.x wp_page_copy() "if (is_zero_pfn(pte_pfn(vmf->orig_pte)))
    vma_alloc_zeroed_movable_folio()"; v2.6.32 do_wp_page(): vm_normal_page() is NULL for the
    special pte, so ``gotten:`` and alloc_zeroed_user_highpage_movable(). The simulator does
    not write-protect a page elsewhere (mprotect(), ksmd's write_protect_page() on a merge
    that then fails).
    """
    vpn = addr >> PAGE_SHIFT
    if vma.flags & VM.VM_SHARED and vma.file is not None:
        page = file_page(mm, vma.file, vma.pgoff_at(addr))
        if content is not None:
            page.content = content
        if vpn in mm.ptes:
            fault = Fault.NONE
        else:
            page.mapcount += 1
            mm.ptes[vpn] = page
            fault = Fault.FILE_SHARED
    else:
        mm.anon_vma_prepare(vma)
        old = mm.ptes.get(vpn)
        if old is None:
            if vma.file is not None:
                base, fault = file_page(mm, vma.file, vma.pgoff_at(addr)).content, Fault.FILE_COW
                mm.ptes[vpn] = Page(base if content is None else content,
                                    id=next(mm.kernel.page_ids))
            elif mm.kernel.thp.allowable(mm, vma, addr):  # ksmbook.thp (2.6.38 and later)
                sub = mm.kernel.thp.do_huge_pmd_anonymous_page(mm, vma, addr)
                sub.content = 0 if content is None else content
                fault = Fault.HUGE_NEW
            else:
                fault = Fault.ANON_NEW
                mm.ptes[vpn] = Page(0 if content is None else content,
                                    id=next(mm.kernel.page_ids))
        elif old.anon and old.mapcount == 1 and old.ksm is None:
            if content is not None:
                old.content = content
                mm.kernel.ksm.page_written()
            old.lazyfree = False  # the write dirties the pte: reclaim will keep the page
            fault = Fault.REUSE if old.wrprotect else Fault.NONE
            old.wrprotect = False
        elif mm.kernel.thp.huge_zero_pmd(mm, vpn):  # ksmbook.thp
            sub = mm.kernel.thp.do_huge_zero_wp_pmd(mm, vma, addr)
            sub.content = 0 if content is None else content
            fault = Fault.HUGE_ZERO_COPY
        else:
            if old is mm.kernel.ksm.zero_page:
                fault = Fault.KSM_ZERO_COPY
            elif old.id == 0:  # is_zero_pfn(): a read's (or a THP split's) zero page
                fault = Fault.ZERO_COPY
            elif old.ksm is not None:
                fault = Fault.KSM_COPY
            else:
                fault = Fault.COW_COPY
            old.mapcount -= 1
            mm.ptes[vpn] = Page(old.content if content is None else content,
                                id=next(mm.kernel.page_ids))
            mm.kernel.ksm.page_unmapped(mm, old)
    if tr is not None:
        _trace_fault(tr, mm.profile, addr, fault, "write")
    return fault


def handle_read_fault(mm: MM, vma: VMA, addr: int, tr: Trace | None = None) -> tuple[int, Fault]:
    """A read at `addr`: the content there and what the fault handler did (recorded in `tr`).

    A present pte needs no fault. A missing one of a private anonymous VMA: 6.x
    handle_pte_fault() -> do_anonymous_page() maps the shared zero page read-only, before any
    anon_vma_prepare() ("if (!(vmf->flags & FAULT_FLAG_WRITE) &&
    !mm_forbids_zeropage(vma->vm_mm))"; v2.6.32 the same, "if (!(flags & FAULT_FLAG_WRITE))
    { entry = pte_mkspecial(pfn_pte(my_zero_pfn(address), ...)"): `Kernel.zero_page`. In a
    THP-eligible range do_huge_pmd_anonymous_page() maps the huge zero page instead
    (``ksmbook.thp``). do_fault() -> do_read_fault() (v2.6.32 do_linear_fault() ->
    __do_fault()) maps the page-cache page; the simulator reads a file page without mapping it.
    """
    vpn = addr >> PAGE_SHIFT
    page = mm.ptes.get(vpn)
    if page is not None:
        content, fault = page.content, Fault.NONE
    elif vma.file is not None:
        cached = vma.file.pages.get(vma.pgoff_at(addr))
        content, fault = (cached.content if cached is not None else 0), Fault.FILE_READ
    elif mm.kernel.thp.allowable(mm, vma, addr):  # ksmbook.thp (2.6.38 and later)
        mm.anon_vma_prepare(vma)  # vmf_anon_prepare() comes first in the huge fault
        mm.kernel.thp.map_huge_zero_pmd(mm, addr)
        content, fault = 0, Fault.HUGE_ZERO_MAP
    else:
        zero = mm.kernel.zero_page
        zero.mapcount += 1
        mm.ptes[vpn] = zero
        content, fault = 0, Fault.ZERO_MAP
    if tr is not None:
        _trace_fault(tr, mm.profile, addr, fault, "read")
    return content, fault


def _trace_fault(tr: Trace, p: Profile, addr: int, fault: Fault, access: str) -> None:
    """Record the kernel path of one page access and its fault event (see handle_write_fault
    for the 6.x and v2.6.32 function names)."""
    tr.event(Kind.FAULT, addr, addr + PAGE_SIZE, fault)
    if fault is Fault.NONE:
        tr.note("mmu", "{} at {:#x}: the pte is present and allows it: no fault", access, addr)
        return
    with tr.enter("handle_mm_fault", "{} fault at {:#x}", access, addr):
        if fault is Fault.ANON_NEW:
            tr.note("do_anonymous_page", "a new zeroed page, mapped writable")
        elif fault is Fault.HUGE_NEW:
            tr.note("do_huge_pmd_anonymous_page", "a new zeroed 2 MiB huge page, mapped by "
                    "one PMD (ksmbook.thp)")
        elif fault is Fault.ZERO_MAP:
            tr.note("do_anonymous_page", "a read: the shared zero page, mapped read-only")
        elif fault is Fault.HUGE_ZERO_MAP:
            tr.note("do_huge_pmd_anonymous_page", "a read: the huge zero page, mapped "
                    "read-only by one PMD (ksmbook.thp)")
        elif fault is Fault.HUGE_ZERO_COPY:
            with tr.enter("do_huge_pmd_wp_page", "the huge zero page"):
                tr.note("do_huge_zero_wp_pmd", "a new zeroed 2 MiB huge page, mapped by the "
                        "PMD")
        elif fault in (Fault.FILE_COW, Fault.FILE_SHARED, Fault.FILE_READ):
            what = {Fault.FILE_COW: "a private write: copy the page-cache page into a new page",
                    Fault.FILE_SHARED: "a shared write: the page-cache page, mapped writable",
                    Fault.FILE_READ: "a read: the page-cache page, mapped read-only"}[fault]
            if p.fault_handlers_split:  # 3.15, see Profile.fault_handlers_split
                name = {Fault.FILE_COW: "do_cow_fault", Fault.FILE_SHARED: "do_shared_fault",
                        Fault.FILE_READ: "do_read_fault"}[fault]
                with tr.enter("do_fault"):
                    tr.note(name, what)
            else:
                with tr.enter("do_linear_fault"):
                    tr.note("__do_fault", what)
        else:  # do_wp_page(): reuse the page or copy it
            why = {Fault.REUSE: "an anonymous page mapped once (its fork()ed twin is gone)",
                   Fault.KSM_COPY: "a KSM page is never reused",
                   Fault.KSM_ZERO_COPY: "the zero page ksmd mapped (use_zero_pages)",
                   Fault.ZERO_COPY: "the shared zero page (is_zero_pfn())",
                   Fault.COW_COPY: "not an anonymous page mapped once"}[fault]
            what = {Fault.REUSE: "the page is made writable again, no copy",
                    Fault.KSM_ZERO_COPY: "a new zeroed page; ksm_might_unmap_zero_page(): "
                                         "ksm_zero_pages - 1",
                    Fault.ZERO_COPY: "a new zeroed page"}.get(fault, "copy the page into a new "
                                                                 "page")
            if p.wp_page_split:  # 4.1, see Profile.wp_page_split
                with tr.enter("do_wp_page", why):
                    tr.note("wp_page_reuse" if fault is Fault.REUSE else "wp_page_copy", what)
            elif fault is Fault.REUSE:
                tr.note("do_wp_page", "{}: reuse_swap_page(): reuse: made writable, no copy",
                        why)
            else:
                tr.note("do_wp_page", "{}: gotten: {}", why, what)


class Process:
    """A simulated process: its address space and its system calls."""

    def __init__(self, kernel: Kernel, mm: MM, name: str = "") -> None:
        self.kernel = kernel
        self.mm = mm
        self.pid = next(kernel.pids)
        self.name = name or f"p{self.pid}"
        self.alive = True
        self.last_trace: Trace | None = None

    def __repr__(self) -> str:
        state = "" if self.alive else ", exited"
        return f"Process(pid={self.pid}, vmas={len(self.mm.vmas)}{state})"

    @property
    def vmas(self) -> list[VMA]:
        """The VMAs, sorted by address (a copy of the list; the VMAs are live objects)."""
        return list(self.mm.vmas)

    @property
    def mm_flags(self) -> MMF:
        return self.mm.flags

    def maps(self) -> str:
        """/proc/PID/maps with each VMA's smaps VmFlags codes."""
        return format_maps(read_maps(self.mm))

    def map_entries(self) -> list[MapEntry]:
        """/proc/PID/maps with each VMA's smaps VmFlags codes, as records."""
        return read_maps(self.mm)

    def ksm_stat(self) -> dict[str, int | str]:
        """/proc/PID/ksm_stat (``ksmbook.ksmd.Ksmd.ksm_stat``); FileNotFoundError in a kernel
        without that file."""
        return self.kernel.ksmd.ksm_stat(self)

    # -- system calls -------------------------------------------------------------------

    def _syscall(self, call: str, body: Callable[[Trace], int], *args: object) -> int:
        """Run `body` as the system call `call` (a str.format template for `args`, formatted
        only when the trace's `call` is read)."""
        if not self.alive:
            raise ProcessLookupError(errno.ESRCH, f"process {self.pid} has exited")
        tr = Trace(call, self.pid, call_args=args)
        tr.result = body(tr)
        self.last_trace = tr
        self.kernel.log.append(tr)
        if tr.result < 0:
            raise _oserror(tr.result, call.split("(")[0])
        return tr.result

    def mmap(self, length: int, prot: int, flags: int, *, addr: int = 0,
             file: FileBackend | None = None, offset: int = 0) -> int:
        """mmap(2); returns the start address. `file` is one of this kernel's files
        (``create_file``, ``create_device``); any other object is a bad descriptor (EBADF,
        as fget() of an fd this process does not have)."""
        _check_ints(length=length, prot=prot, flags=flags, addr=addr, offset=offset)
        if file is not None and not isinstance(file, File):
            raise _oserror(errno.EBADF, f"mmap: {file!r} is not a file of this kernel")
        call = (f"mmap({addr:#x}, {length}, {_prot_text(prot)}, {_flag_text(MAP, flags)}"
                f"{', ' + file.path if file else ''}{f', {offset:#x}' if offset else ''})")
        return self._syscall(call, lambda tr: self.mm.do_mmap(
            addr, length & ULONG_MAX, prot, flags, file, offset, tr))

    def munmap(self, addr: int, length: int) -> int:
        """munmap(2)."""
        _check_ints(addr=addr, length=length)
        return self._syscall(f"munmap({addr:#x}, {length})",
                             lambda tr: self.mm.do_munmap(addr, length & ULONG_MAX, tr))

    def mprotect(self, addr: int, length: int, prot: int) -> int:
        """mprotect(2)."""
        _check_ints(addr=addr, length=length, prot=prot)
        return self._syscall(f"mprotect({addr:#x}, {length}, {_prot_text(prot)})",
                             lambda tr: self.mm.mprotect(addr, length & ULONG_MAX, prot, tr))

    def mremap(self, old_addr: int, old_size: int, new_size: int, flags: int = 0,
               new_addr: int | None = None) -> int:
        """mremap(2): grow, shrink or move a mapping (its pages move with it); returns the
        new address. flags: MREMAP_MAYMOVE, MREMAP_FIXED (with new_addr), MREMAP_DONTUNMAP
        (6.x)."""
        target = 0 if new_addr is None else new_addr
        _check_ints(old_addr=old_addr, old_size=old_size, new_size=new_size, flags=flags,
                    new_addr=target)
        call = (f"mremap({old_addr:#x}, {old_size}, {new_size}, {_flag_text(MREMAP, flags, '0')}"
                f"{f', {target:#x}' if new_addr is not None else ''})")
        return self._syscall(call, lambda tr: sys_mremap(
            self.mm, old_addr & ULONG_MAX, old_size & ULONG_MAX, new_size & ULONG_MAX,
            flags & ULONG_MAX, target & ULONG_MAX, tr))

    def madvise(self, addr: int, length: int, advice: int) -> int:
        """madvise(2); raises OSError with the kernel's errno (after applying, for holes)."""
        if not (type(addr) is int and type(length) is int and type(advice) in _ADVICE_TYPES):
            _check_ints(addr=addr, length=length, advice=advice)
        return self._syscall("madvise({:#x}, {}, {})", lambda tr: sys_madvise(
            self.mm, addr & ULONG_MAX, length & ULONG_MAX, advice, tr),
            addr, length, advice_name(advice))

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0,
              arg5: int = 0) -> int:
        """prctl(2) with PR_SET_MEMORY_MERGE (67) or PR_GET_MEMORY_MERGE (68), the options this
        book models; returns the result (PR_GET: 0 or 1) or raises OSError."""
        _check_ints(option=option, arg2=arg2, arg3=arg3, arg4=arg4, arg5=arg5)
        if option not in (PR_SET_MEMORY_MERGE, PR_GET_MEMORY_MERGE):
            raise ValueError(f"prctl option {option} is not modelled: only "
                             f"PR_SET_MEMORY_MERGE ({PR_SET_MEMORY_MERGE}) and "
                             f"PR_GET_MEMORY_MERGE ({PR_GET_MEMORY_MERGE})")
        name = "PR_SET_MEMORY_MERGE" if option == PR_SET_MEMORY_MERGE else "PR_GET_MEMORY_MERGE"
        args = (arg2, arg3, arg4, arg5)
        return self._syscall(f"prctl({name}, {arg2}, {arg3}, {arg4}, {arg5})",
                             lambda tr: sys_prctl_memory_merge(self.mm, option, args, tr))

    def fork(self, name: str = "") -> Process:
        """fork(2): copy_process() -> copy_mm() -> dup_mm() -> dup_mmap() (kernel/fork.c):
        copy the VMAs (not VM_DONTCOPY ones) and the page table, then give the child its pid."""
        child: list[Process] = []

        def body(tr: Trace) -> int:
            with tr.enter("copy_process"):
                with tr.enter("copy_mm"), tr.enter("dup_mm"), tr.enter("dup_mmap"):
                    err, mm = self._copy_vmas(tr)
                if mm is None:
                    return err
                child.append(Process(self.kernel, mm, name))
                self.kernel.processes.append(child[0])
                tr.note("copy_process", f"child pid {child[0].pid}")
            return child[0].pid
        self._syscall("fork()", body)
        return child[0]

    def _copy_vmas(self, tr: Trace) -> tuple[int, MM | None]:
        """dup_mmap(): ksm_fork() (first in 2.6.32) and the VMA and page-table copy."""
        k = self.kernel
        p = k.profile
        mm = MM(k)
        # Until 6.12 "fork: only invoke khugepaged, ksm hooks if no error" moved it after the
        # copy, ksm_fork() ran first and its failure failed fork().
        if p.ksm_fork_first:
            err = ksm_fork(mm, self.mm, tr)
            if err:
                tr.note("dup_mmap", "ksm_fork failed: fork fails with ENOMEM")
                return -errno.ENOMEM, None
        mm.flags |= self.mm.flags & MMF.MMF_VM_MERGE_ANY
        for vma in self.mm.vmas:
            if vma.flags & VM.VM_DONTCOPY:
                tr.note("dup_mmap", f"{vma.start:#x}-{vma.end:#x} VM_DONTCOPY: not copied")
                continue
            new = VMA(vma.start, vma.end, vma.flags & ~p.fork_clears, vma.pgoff, vma.file)
            wipe = bool(vma.flags & VM.VM_WIPEONFORK)
            if vma.anon_vma is not None and not wipe:
                # 2.6.34 "mm: change anon_vma linking to fix multi-process server scalability
                # issue" (5beb49305251): anon_vma_fork() gives the child its own anon_vma.
                if p.anon_vma_chain:
                    own = AnonVma(next(k.anon_vma_ids))
                    new.anon_vma, new.chain = own, vma.chain + (own,)
                else:
                    new.anon_vma, new.chain = vma.anon_vma, vma.chain
            mm.insert(new)
            if wipe:
                tr.note("dup_mmap", f"{vma.start:#x}-{vma.end:#x} VM_WIPEONFORK: copied empty")
                continue
            mm.guards.update(v for v in range(vma.start >> PAGE_SHIFT,
                                              vma.end >> PAGE_SHIFT) if v in self.mm.guards)
            cow = not vma.flags & VM.VM_SHARED  # is_cow_mapping(): both ptes write-protected
            for vpn in self.mm.ptes.irange(vma.start >> PAGE_SHIFT,
                                           (vma.end >> PAGE_SHIFT) - 1):
                page = self.mm.ptes[vpn]
                page.mapcount += 1
                if cow and page.anon:
                    page.wrprotect = True
                mm.ptes[vpn] = page
        if k.thp.pmds or k.thp.zero_pmds:
            k.thp.copy_huge_pmds(self.mm, mm)  # copy_huge_pmd() (ksmbook.thp)
        tr.note("dup_mmap", f"{mm.map_count} VMAs copied")
        if not p.ksm_fork_first:  # 6.12 "fork: only invoke khugepaged, ksm hooks if no error"
            ksm_fork(mm, self.mm, tr)
        return 0, mm

    def exit(self) -> None:
        """exit(2): mmput() -> ksm_exit() -> exit_mmap()."""
        def body(tr: Trace) -> int:
            with tr.enter("mmput"):
                ksm_exit(self.mm, tr)
                with tr.enter("exit_mmap", f"{self.mm.map_count} VMAs"):
                    for vma in list(self.mm.vmas):
                        self.mm.zap_range(vma.start, vma.end)
                        self.mm.remove(vma)
                        self.mm.release_file(vma)
                self.mm.mm_users = 0
            return 0
        self._syscall("exit()", body)
        self.alive = False
        self.kernel.processes.remove(self)

    # -- memory access (page faults) -----------------------------------------------------

    def _access_error(self, addr: int, write: bool) -> str | None:
        """Why an access at addr would raise SIGSEGV (arch/x86/mm/fault.c
        do_user_addr_fault() -> bad_area()), or None if a VMA allows it."""
        vma = self.mm.vma_at(addr)
        if addr >> PAGE_SHIFT in self.mm.guards:
            return f"{addr:#x} is a guard page: the access would raise SIGSEGV"
        if vma is None or not vma.flags & (VM.VM_WRITE if write else VM.VM_READ):
            what = "unmapped" if vma is None else f"not {'writable' if write else 'readable'}"
            return f"{addr:#x} is {what}: the access would raise SIGSEGV"
        return None

    def _access(self, call: str, args: tuple[object, ...], body: Callable[[Trace], int],
                addrs: Iterable[int], write: bool) -> int:
        """Run a page access as a traced call; an access that would raise SIGSEGV is
        OSError(EFAULT) saying why (and nothing is written)."""
        why: list[str] = []

        def checked(tr: Trace) -> int:
            for a in addrs:
                reason = self._access_error(a, write)
                if reason is not None:
                    tr.note("do_user_addr_fault", "{}", reason)
                    why.append(reason)
                    return -errno.EFAULT
            return body(tr)
        try:
            return self._syscall(call, checked, *args)
        except OSError as e:
            if why:
                raise OSError(errno.EFAULT, why[0]) from None
            raise e

    def write_pages(self, addr: int, contents: Iterable[int]) -> None:
        """Write one page per int (0 = an all-zero page), from addr on: a traced call whose
        trace has one fault event per page (see handle_write_fault). A write to an unmapped
        or read-only page raises OSError(EFAULT) and writes nothing."""
        values = [int(c) for c in contents]
        _check_ints(addr=addr)
        if addr % PAGE_SIZE:
            raise ValueError(f"address {addr:#x} is not page aligned")
        addrs = [addr + i * PAGE_SIZE for i in range(len(values))]

        def body(tr: Trace) -> int:
            mm = self.mm
            for a, value in zip(addrs, values, strict=True):
                vma = mm.vma_at(a)
                assert vma is not None
                handle_write_fault(mm, vma, a, value, tr)
            return 0
        self._access("write_pages({:#x}, {})", (addr, values), body, addrs, True)

    def read_page(self, addr: int) -> int:
        """The content of the page at addr (0 = all zeros): a traced call whose trace has the
        fault event (see handle_read_fault)."""
        _check_ints(addr=addr)

        def body(tr: Trace) -> int:
            vma = self.mm.vma_at(addr)
            assert vma is not None
            return handle_read_fault(self.mm, vma, addr, tr)[0]
        return self._access("read_page({:#x})", (addr,), body, (addr,), False)


def _check_ints(**values: int) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, not {type(v).__name__}")


def _flag_text(enum_: type[enum.IntFlag], value: int, zero: str | None = None) -> str:
    """The flag names of `value` as strace prints them ("PROT_READ|PROT_WRITE"), else hex;
    `zero` is what 0 prints as, where the call has a name for it."""
    if value == 0 and zero is not None:
        return zero
    try:
        name = enum_(value).name
    except ValueError:
        name = None
    return str(name) if name else f"{value:#x}"


def _prot_text(prot: int) -> str:
    return _flag_text(PROT, prot, "PROT_NONE")
