"""The kernel versions the simulator can boot, and every way in which they differ.

This is the only module that knows versions differ: everything else asks a `Profile`.
Three profiles:

* ``seed``: 2.6.32-rc with commit f8af4da3b4c1 "ksm: the mm interface to ksm", whose
  mm/ksm.c is a dummy (no ksmd, UNMERGEABLE unmerges nothing).
* ``2.6.32``: the v2.6.32 release, with the real mm/ksm.c.
* ``modern``: Linux 6.x as this machine runs it (checked against 6.18; the reference source
  is 6.12, with later changes noted where they are made).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .constants import MADV, VM

__all__ = ["Profile", "PROFILES", "get_profile", "KsmChecksum", "KsmNumberParser"]

V = VM

_BASE_ADVICES = frozenset({
    MADV.MADV_NORMAL, MADV.MADV_RANDOM, MADV.MADV_SEQUENTIAL, MADV.MADV_WILLNEED,
    MADV.MADV_DONTNEED, MADV.MADV_REMOVE, MADV.MADV_DONTFORK, MADV.MADV_DOFORK,
})
_KSM_ADVICES = frozenset({MADV.MADV_MERGEABLE, MADV.MADV_UNMERGEABLE})
_MODERN_ADVICES = _BASE_ADVICES | frozenset({
    MADV.MADV_FREE, MADV.MADV_HUGEPAGE, MADV.MADV_NOHUGEPAGE, MADV.MADV_DONTDUMP,
    MADV.MADV_DODUMP, MADV.MADV_WIPEONFORK, MADV.MADV_KEEPONFORK, MADV.MADV_COLD,
    MADV.MADV_PAGEOUT, MADV.MADV_POPULATE_READ, MADV.MADV_POPULATE_WRITE,
    MADV.MADV_DONTNEED_LOCKED, MADV.MADV_COLLAPSE, MADV.MADV_GUARD_INSTALL,
    MADV.MADV_GUARD_REMOVE,
})

# The seed's ksm_madvise() "be somewhat over-protective for now" list, kept in v2.6.32.
_KSM_IGNORE_2632 = (V.VM_MERGEABLE | V.VM_SHARED | V.VM_MAYSHARE | V.VM_PFNMAP | V.VM_IO
                    | V.VM_DONTEXPAND | V.VM_RESERVED | V.VM_HUGETLB | V.VM_INSERTPAGE
                    | V.VM_MIXEDMAP | V.VM_SAO)
# 6.12 vma_ksm_compatible(); VM_MERGEABLE itself is an earlier, separate no-op check.
_KSM_IGNORE_MODERN = (V.VM_MERGEABLE | V.VM_SHARED | V.VM_MAYSHARE | V.VM_PFNMAP | V.VM_IO
                      | V.VM_DONTEXPAND | V.VM_HUGETLB | V.VM_MIXEDMAP | V.VM_DROPPABLE)

_OLD_ONLY = (V.VM_EXECUTABLE | V.VM_RESERVED | V.VM_NONLINEAR | V.VM_MAPPED_COPY
             | V.VM_INSERTPAGE | V.VM_ALWAYSDUMP | V.VM_CAN_NONLINEAR | V.VM_SAO
             | V.VM_PFN_AT_MMAP | V.VM_DENYWRITE | V.VM_GROWSUP)
_NEW_ONLY = (V.VM_LOCKONFAULT | V.VM_WIPEONFORK | V.VM_DONTDUMP | V.VM_SOFTDIRTY
             | V.VM_HUGEPAGE | V.VM_NOHUGEPAGE | V.VM_DROPPABLE | V.VM_SYNC
             | V.VM_MAYBE_GUARD)

# smaps VmFlags codes (fs/proc/task_mmu.c show_smap_vma_flags(); the line appeared in 3.8).
_CODES_COMMON = {
    V.VM_READ: "rd", V.VM_WRITE: "wr", V.VM_EXEC: "ex", V.VM_SHARED: "sh",
    V.VM_MAYREAD: "mr", V.VM_MAYWRITE: "mw", V.VM_MAYEXEC: "me", V.VM_MAYSHARE: "ms",
    V.VM_GROWSDOWN: "gd", V.VM_PFNMAP: "pf", V.VM_LOCKED: "lo", V.VM_IO: "io",
    V.VM_SEQ_READ: "sr", V.VM_RAND_READ: "rr", V.VM_DONTCOPY: "dc", V.VM_DONTEXPAND: "de",
    V.VM_ACCOUNT: "ac", V.VM_NORESERVE: "nr", V.VM_HUGETLB: "ht", V.VM_MIXEDMAP: "mm",
    V.VM_MERGEABLE: "mg",
}
# 2.6.32 printed no VmFlags. Its flags get the 3.8 codes ("dw", "nl"); those that were gone by
# 3.8 and so never had a code are spelt out.
_CODES_2632 = {**_CODES_COMMON, V.VM_DENYWRITE: "dw", V.VM_NONLINEAR: "nl",
               V.VM_GROWSUP: "gu", V.VM_EXECUTABLE: "executable", V.VM_RESERVED: "reserved",
               V.VM_MAPPED_COPY: "mapped_copy", V.VM_INSERTPAGE: "insertpage",
               V.VM_ALWAYSDUMP: "alwaysdump", V.VM_CAN_NONLINEAR: "can_nonlinear",
               V.VM_SAO: "sao", V.VM_PFN_AT_MMAP: "pfn_at_mmap"}
_CODES_MODERN = {**_CODES_COMMON, V.VM_LOCKONFAULT: "lf", V.VM_SYNC: "sf",
                 V.VM_WIPEONFORK: "wf", V.VM_DONTDUMP: "dd", V.VM_SOFTDIRTY: "sd",
                 V.VM_HUGEPAGE: "hg", V.VM_NOHUGEPAGE: "nh", V.VM_DROPPABLE: "dp",
                 V.VM_MAYBE_GUARD: "gu"}

# Real bit values where they differ from ksmbook's (include/linux/mm.h of 6.12).
_BITS_MODERN = {V.VM_LOCKONFAULT: 0x80000, V.VM_SYNC: 0x800000, V.VM_WIPEONFORK: 0x2000000,
                V.VM_DONTDUMP: 0x4000000, V.VM_SOFTDIRTY: 0x8000000,
                V.VM_HUGEPAGE: 0x20000000, V.VM_NOHUGEPAGE: 0x40000000,
                V.VM_DROPPABLE: 1 << 40, V.VM_MAYBE_GUARD: 0x800}


_CODES_CACHE: dict[tuple[str, int], tuple[str, ...]] = {}


class KsmNumberParser(enum.Enum):
    """How mm/ksm.c's *_store() functions read a number."""

    #: strict_strtoul(s, 10) (2.6.32): decimal digits and at most one trailing newline.
    STRICT_STRTOUL = "strict_strtoul"
    #: kstrtouint() and the other kstrto*() (2.6.39 and later): an optional "+", ERANGE on
    #: overflow.
    KSTRTOX = "kstrtox"


class KsmChecksum(enum.Enum):
    """calc_checksum()'s hash of a page; the value is the hash's seed."""

    #: jhash2(page, PAGE_SIZE / 4, 17) (2.6.32).
    JHASH2 = 17
    #: xxhash(page, PAGE_SIZE, 0) truncated to 32 bits (later kernels).
    XXHASH = 0


# Every field of a Profile says where its difference comes from, in its metadata (checked by
# tests/test_profiles.py):
# * a behaviour one commit introduced or changed names the Linux version and that commit (a
#   12-digit hash, or the commit's subject in double quotes);
# * a set, mask or table that many commits built up names the sources its values were read
#   from, per profile: no single commit introduced it;
# * a behaviour whose introducing commit was not traced names the source read, and the test
#   lists it as an exception, so a new field cannot join it unnoticed.
# The profile's name and title are its identity. No field has a default: a profile that leaves
# one out does not construct.

def _since(version: str, commit: str) -> Any:
    """A field whose difference came with `commit` in Linux `version`."""
    return field(metadata={"since": version, "commit": commit})


def _accumulated(version: str, source: str) -> Any:
    """A set, mask or table built up over many commits, read from `source` (up to Linux
    `version`)."""
    return field(metadata={"accumulated_to": version, "source": source})


def _read(version: str, source: str) -> Any:
    """A behaviour read from `source` in Linux `version` (the introducing commit not traced)."""
    return field(metadata={"read_in": version, "source": source})


def _identity() -> Any:
    """The profile's name or title: no kernel behaviour."""
    return field(metadata={"identity": True})


@dataclass(frozen=True, slots=True)
class Profile:
    """One kernel version's behaviour, as data."""

    name: str = _identity()
    title: str = _identity()
    #: madvise_behavior_valid(): advices other than MERGEABLE/UNMERGEABLE.
    advices: frozenset[int] = _accumulated(
        '6.12', 'v2.6.32 and v6.12 mm/madvise.c madvise_behavior_valid()')
    #: ksm_madvise(): MADV_MERGEABLE is ignored on a VMA with any of these flags.
    ksm_ignore: VM = _since('2.6.32', 'f8af4da3b4c1')
    #: ksm_madvise(): UNMERGEABLE breaks KSM pages (unmerge_ksm_pages(), 2.6.32, "ksm: Kernel
    #: SamePage Merging", 31dbd01f3143); the seed's is a comment.
    unmerge_pages: bool = _since('2.6.32', '31dbd01f3143')
    #: mm/ksm.c has ksmd, sysfs knobs and counters (2.6.32, "ksm: Kernel SamePage Merging",
    #: 31dbd01f3143).
    has_ksmd: bool = _since('2.6.32', '31dbd01f3143')
    #: ksm_fork() runs before dup_mmap() copies the VMAs and its failure fails fork(); 6.12
    #: ("fork: only invoke khugepaged, ksm hooks if no error") runs it after, best effort.
    ksm_fork_first: bool = _since('6.12', '"fork: only invoke khugepaged, ksm hooks if no error"')
    #: VM_SPECIAL: vma_merge() never merges such a VMA.
    vm_special: VM = _since('3.7', '"mm: kill vma flag VM_RESERVED and mm->reserved_vm counter"')
    #: Flags vma_merge() leaves out of the comparison (VM_CAN_NONLINEAR; later VM_SOFTDIRTY).
    merge_ignore: VM = _accumulated(
        '6.12', 'v2.6.32 mm/mmap.c is_mergeable_vma(), v6.12 mm/vma.c is_mergeable_vma()')
    #: Flags a merged VMA keeps if any part had them (VM_STICKY: VM_MAYBE_GUARD, "mm: introduce
    #: VM_MAYBE_GUARD and make visible in /proc/$pid/smaps", 6.19; in the 6.18 kernel modelled).
    sticky_flags: VM = _since(
        '6.19', '"mm: introduce VM_MAYBE_GUARD and make visible in /proc/$pid/smaps"')
    #: anon_vma_chain (2.6.34, "mm: change anon_vma linking to fix multi-process server
    #: scalability issue", 5beb49305251): a fork child's VMA links to its own and its parent's
    #: anon_vma, and a VMA without anon_vma merges only with one whose chain is singular (3.0,
    #: "mmap: avoid merging cloned VMAs", 965f55dea0e3).
    anon_vma_chain: bool = _since('2.6.34', '5beb49305251')
    #: find_mergeable_anon_vma() asks can_vma_merge_before()/after(), so a neighbour with
    #: vm_ops->close lends no anon_vma (2.6.32); reusable_anon_vma()'s anon_vma_compatible()
    #: ("Simplify and comment on anon_vma re-use for anon_vma_prepare()", 2.6.34) does not ask.
    anon_reuse_asks_merge: bool = _since(
        '2.6.34', '"Simplify and comment on anon_vma re-use for anon_vma_prepare()"')
    #: vm_ops->close blocks only merges that would delete that VMA, not every merge (6.12, "mm:
    #: rework vm_ops->close() handling on VMA merge"; first relaxed by 714965ca8252 "mm/mmap:
    #: start distinguishing if vma can be removed in mergeability test").
    close_blocks_only_deletion: bool = _since('6.12', '714965ca8252')
    #: mprotect_fixup() drops VM_ACCOUNT when a never-faulted private anonymous VMA loses write
    #: (6.7, "mm/mprotect: allow unfaulted VMAs to be unaccounted on mprotect()").
    mprotect_unaccounts: bool = _since(
        '6.7', '"mm/mprotect: allow unfaulted VMAs to be unaccounted on mprotect()"')
    #: split_vma() checks max_map_count before __split_vma()'s hugetlb alignment check, not
    #: after (2.6.33, "mmap: don't return ENOMEM when mapcount is temporarily exceeded in
    #: munmap()").
    split_checks_count_first: bool = _since(
        '2.6.33', '"mmap: don\'t return ENOMEM when mapcount is temporarily exceeded in munmap()"')
    #: MADV_WILLNEED on an anonymous VMA: EBADF (2.6.32) or swap-in readahead, 0 (3.9, "mm: make
    #: madvise(MADV_WILLNEED) support swap file prefetch", 1998cc048901).
    willneed_anon_ebadf: bool = _since('3.9', '1998cc048901')
    #: VM flags dup_mmap() clears in the child: VM_LOCKED, and VM_LOCKONFAULT with it (4.4,
    #: "mm: introduce VM_LOCKONFAULT", de60f5f10c58; VM_LOCKED_MASK in 6.x).
    fork_clears: VM = _since('4.4', 'de60f5f10c58')
    #: Flags set by hugetlbfs_file_mmap().
    hugetlb_flags: VM = _accumulated(
        '6.12', 'v2.6.32 and v6.12 fs/hugetlbfs/inode.c hugetlbfs_file_mmap()')
    #: Flags set by remap_pfn_range(), the usual way a driver maps device memory.
    remap_pfn_flags: VM = _accumulated(
        '6.12', 'v2.6.32 and v6.12 mm/memory.c remap_pfn_range()')
    #: Flags this kernel does not have.
    missing_flags: VM = _accumulated('6.12', 'v2.6.32 and v6.12 include/linux/mm.h')
    smaps_codes: Mapping[VM, str] = _accumulated(
        '6.12', 'v6.12 fs/proc/task_mmu.c show_smap_vma_flags()')
    #: MAP_FIXED_NOREPLACE exists (4.17, "mm: introduce MAP_FIXED_NOREPLACE", a4ff8e8620d3);
    #: older kernels ignore the bit, so it is only a hint.
    fixed_noreplace: bool = _since('4.17', 'a4ff8e8620d3')
    #: MAP_SHARED_VALIDATE (3) is a map type (4.15, "mm: introduce MAP_SHARED_VALIDATE, a
    #: mechanism to safely define new mmap flags", 1c9725974074); before, EINVAL.
    map_shared_validate: bool = _since('4.15', '1c9725974074')
    #: do_munmap() splits with split_vma(), which refuses at max_map_count (2.6.32); from
    #: 2.6.33 ("mmap: don't return ENOMEM when mapcount is temporarily exceeded in munmap()")
    #: it calls __split_vma() and checks the count only when it cuts a VMA in two.
    munmap_split_checks_count: bool = _since(
        '2.6.33', '"mmap: don\'t return ENOMEM when mapcount is temporarily exceeded in munmap()"')
    #: Stack guard gap kept below a VM_GROWSDOWN VMA by placement (4.12, "mm: larger stack
    #: guard gap, between vmas", 1be7107fbe18: 256 pages; 0 before).
    stack_guard_gap: int = _since('4.12', '1be7107fbe18')
    #: __get_unmapped_area() places a private anonymous mapping with no hint whose length is
    #: a multiple of PMD_SIZE on a 2 MiB boundary (thp_get_unmapped_area_vmflags()). 6.7
    #: efa7df3e3bb5 "mm: align larger anonymous mappings on THP boundaries" aligned every
    #: private anonymous mapping of at least PMD_SIZE; 6.12 d4148aeab412 "mm, mmap: limit THP
    #: alignment of anonymous mappings to PMD-aligned sizes" kept PMD-multiple lengths; 6.13
    #: 249608ee4713 "mm: respect mmap hint address when aligning for THP" left out a call
    #: with a hint, which made the 6.18 rule "!file && !addr && IS_ALIGNED(len, PMD_SIZE)".
    thp_aligned_anon: bool = _since('6.13', '249608ee4713')
    #: MAP_GROWSDOWN is refused (EINVAL) on shared and file mappings before an address is
    #: chosen (6.12 mm/mmap.c do_mmap(): "if (vm_flags & (VM_GROWSDOWN|VM_GROWSUP)) return
    #: -EINVAL;"). v2.6.32 to v3.0.82 mmap_region() refuses only a file mapping, after
    #: clearing the range; a shared anonymous one was refused there too by 3.3-rc6 (Hugh
    #: Dickins, "mmap: EINVAL not ENOMEM when rejecting VM_GROWS", linux-mm, 6 Mar 2012);
    #: a later do_mmap_pgoff() checks both before get_unmapped_area(). Neither commit is found.
    growsdown_private_anon_only: bool = _read(
        '6.12', 'v2.6.32, v3.0.82 mm/mmap.c mmap_region(), v6.12 mm/mmap.c do_mmap()')
    #: MADV_REMOVE needs VM_SHARED|VM_WRITE (2.6.32) rather than VM_SHARED|VM_MAYWRITE
    #: (vma_is_shared_maywrite(), 6.7, "mm: drop the assumption that VM_SHARED always implies
    #: writable"), and works only where the filesystem can punch holes: tmpfs (2.6.32
    #: truncate_range), or any fallocate(PUNCH_HOLE) filesystem (3.5, see remove_by_fallocate).
    remove_needs_write: bool = _since(
        '6.7', '"mm: drop the assumption that VM_SHARED always implies writable"')
    remove_filesystems: frozenset[str] = _since('3.5', '3f31d07571ee')
    #: Flags that make MADV_REMOVE EINVAL: VM_LOCKED|VM_NONLINEAR|VM_HUGETLB (2.6.32
    #: madvise_remove()); VM_LOCKED alone once VM_NONLINEAR went (4.0) and hugetlbfs could
    #: punch holes ("mm/madvise: allow remove operation for hugetlbfs", 4.3).
    remove_refused: VM = _since('4.3', '"mm/madvise: allow remove operation for hugetlbfs"')
    #: MADV_REMOVE calls vfs_fallocate(PUNCH_HOLE) ("mm/fs: route MADV_REMOVE to
    #: FALLOC_FL_PUNCH_HOLE", 3f31d07571ee, 3.5): EOPNOTSUPP where the filesystem cannot,
    #: ENODEV for a device. Before, vmtruncate_range(): ENOSYS without ->truncate_range.
    remove_by_fallocate: bool = _since('3.5', '3f31d07571ee')
    #: madvise_dontneed_free_valid_vma() (5.18, "mm: madvise: MADV_DONTNEED_LOCKED" and
    #: "mm: enable MADV_DONTNEED for hugetlb mappings"): VM_LOCKED only without _LOCKED,
    #: hugetlb ranges cut to 2 MiB, VM_PFNMAP refused, MADV_FREE anonymous only. Before,
    #: madvise_dontneed() refused VM_LOCKED|VM_HUGETLB|VM_PFNMAP outright.
    dontneed_valid_vma: bool = _since('5.18', '"mm: madvise: MADV_DONTNEED_LOCKED"')
    #: Kernel function names that this kernel calls by another name.
    renamed: Mapping[str, str] = _accumulated(
        '6.12', 'v2.6.32 and v6.12 mm/madvise.c, mm/mmap.c, mm/vma.c')
    # -- v2.6.32 source reading (mm/mmap.c, mm/memory.c, mm/mlock.c, mm/filemap.c) ----------
    #: MADV_REMOVE zaps every mapping of the punched range, private COW copies included:
    #: 2.6.32 vmtruncate_range() -> unmap_mapping_range(mapping, offset, len, 1) (even_cows);
    #: shmem_fallocate(PUNCH_HOLE) passes even_cows = 0, so COW copies keep their data (3.5,
    #: "tmpfs: support fallocate FALLOC_FL_PUNCH_HOLE": "hole-punching leaves COWed pages").
    remove_zaps_cows: bool = _since('3.5', '"tmpfs: support fallocate FALLOC_FL_PUNCH_HOLE"')
    #: handle_pte_fault() hands a missing file page to do_read_fault(), do_cow_fault() or
    #: do_shared_fault() (3.15, "mm: introduce do_read_fault()" e655fb29074a, "mm: introduce
    #: do_cow_fault()" ec47c3b95430, "mm: introduce do_shared_fault() and drop do_fault()"
    #: f0c6d4d295e4); before, do_linear_fault() -> __do_fault() did all three.
    fault_handlers_split: bool = _since('3.15', 'e655fb29074a')
    #: do_wp_page() calls wp_page_reuse() and wp_page_copy() (4.1, "mm: refactor do_wp_page,
    #: extract the reuse case" 4e047f897771, "mm: refactor do_wp_page, extract the page copy
    #: flow" 2f38ab2c3c7f); before, do_wp_page() reused at its reuse: label and copied at
    #: gotten: itself (v2.6.32 mm/memory.c).
    wp_page_split: bool = _since('4.1', '4e047f897771')
    #: mmap_region() drops VM_LOCKED again for these VMAs and for hugetlb ones: 2.6.32
    #: mlock_vma_pages_range() ("and don't come back!"), 6.x the VM_SPECIAL test after
    #: the mapping is set up.
    mlock_refused: VM = _accumulated(
        '6.12', 'v2.6.32 mm/mlock.c mlock_vma_pages_range(), v6.12 mm/vma.c __mmap_region()')
    #: MAP_HUGETLB is handled inside do_mmap_pgoff() after the length and map_count checks
    #: and refuses any file with EINVAL (v2.6.32); from 2.6.33 sys_mmap_pgoff() (6.x
    #: ksys_mmap_pgoff()) handles it before do_mmap_pgoff(). Read in v2.6.32 and v2.6.33.3
    #: mm/mmap.c; 2.6.33-rc2 already had it in mm/util.c sys_mmap_pgoff() (Hugh Dickins, "mm:
    #: move sys_mmap_pgoff from util.c", linux-mm, 30 Dec 2009). The moving commit is not found.
    hugetlb_in_do_mmap: bool = _read(
        '2.6.33', 'v2.6.32 mm/mmap.c do_mmap_pgoff(), v2.6.33.3 mm/mmap.c sys_mmap_pgoff()')
    #: sys_mmap_pgoff() maps a hugetlbfs file given with MAP_HUGETLB, where it refused every
    #: file (3.11, "mmap: allow MAP_HUGETLB for hugetlbfs files v2", 493af578040e: hash and
    #: subject paired in a CentOS 7 backport list; the patch on linux-mm, 19 Jun 2013).
    map_hugetlb_hugetlbfs_files: bool = _since('3.11', '493af578040e')
    #: do_mmap_pgoff() itself returns ENOMEM for len > TASK_SIZE (v2.6.32); from 2.6.33
    #: get_unmapped_area() does, beside arch_mmap_check(), which moved there with it (v2.6.32
    #: and v2.6.33.3 mm/mmap.c read). The commit is the 2.6.33 one of that name in the
    #: CVE-2010-0291 series, its subject as RHEL 5's changelog gives it (Oracle
    #: ELSA-2011-0017); its diff was not seen.
    mmap_len_checked_in_do_mmap: bool = _since(
        '2.6.33', '"take arch_mmap_check into get_unmapped_area"')
    #: Flags generic_file_mmap()/ext4_file_mmap()/shmem_mmap() set on a file VMA (2.6.32:
    #: VM_CAN_NONLINEAR; gone in 3.7, "mm: kill vma flag VM_CAN_NONLINEAR").
    file_mmap_flags: VM = _since('3.7', '"mm: kill vma flag VM_CAN_NONLINEAR"')
    #: remap_pfn_range() of the whole VMA sets vm_pgoff = pfn and VM_PFN_AT_MMAP (2.6.32);
    #: from 3.7 ("mm, x86, pat: rework linear pfn-mmap tracking") it sets vm_pgoff = pfn only
    #: on a COW (private, VM_MAYWRITE) mapping.
    remap_pfn_pgoff_always: bool = _since('3.7', '"mm, x86, pat: rework linear pfn-mmap tracking"')
    # -- mremap (mm/mremap.c) ----------------------------------------------------------------
    #: move_vma() calls ksm_madvise(MADV_UNMERGEABLE) on the range before moving it, leaving
    #: vm_flags as they were ("ksm: prevent mremap move poisoning", 1ff829957316, after the
    #: seed; still in 6.18 prep_move_vma()).
    mremap_ksm_hook: bool = _since('2.6.32', '1ff829957316')
    #: MREMAP_DONTUNMAP exists (5.7, "mm/mremap: add MREMAP_DONTUNMAP to mremap()",
    #: e346b3813067).
    mremap_dontunmap: bool = _since('5.7', 'e346b3813067')
    #: do_mremap() looks the VMA up (vma_lookup()) before anything is unmapped: nothing
    #: mapped at addr is EFAULT even for a shrink (5.16, 550a7d60bd5e, the commit of
    #: mremap_hugetlb; Niels Dossche's EFAULT-sign fix shows the lookup). v2.6.32 looks it up
    #: only to grow or move, after the destination and the shrunk tail are unmapped.
    mremap_vma_lookup_first: bool = _since('5.16', '550a7d60bd5e')
    #: A move to a new address checks the source (remap_is_valid() in check_prep_vma())
    #: before it unmaps the destination, so a refused move leaves the destination mapped (6.17,
    #: "mm/mremap: check remap conditions earlier", a85dc37186a5: hash in a push's revlist
    #: beside 3215eaceca87; v2 of the patch, 10 Jul 2025, moves remap_is_valid() out of
    #: mremap_to()). Before, mremap_to() (v2.6.32 do_mremap()) checked after unmapping it.
    mremap_checks_source_first: bool = _since('6.17', 'a85dc37186a5')
    #: mremap() moves a hugetlb VMA, its lengths rounded up to whole huge pages (growing it is
    #: EINVAL), where it refused one with EINVAL (5.16, "mm, hugepages: add mremap() support
    #: for hugepage backed vma", 550a7d60bd5e, "just merged in 5.16-rc1" in a linux-mm
    #: review). The same commit looks the VMA up first (mremap_vma_lookup_first).
    mremap_hugetlb: bool = _since('5.16', '550a7d60bd5e')
    #: old_len 0 of a private mapping is EINVAL, where it made a fresh unrelated mapping (4.14,
    #: "mm/mremap: fail map duplication attempts for private mappings", dba58d3b8c50:
    #: committed 6 Sep 2017, after v4.13, in mmotm's since-4.13 shortlog; 6.18
    #: check_prep_vma()).
    mremap_refuses_private_dup: bool = _since('4.14', 'dba58d3b8c50')
    #: A move to a new address is ENOMEM before anything is unmapped when map_count + 2 >=
    #: max_map_count - 3 (5.1, "mm,mremap: bail out earlier in mremap_to under map
    #: pressure", ea2c3f6f5545: the hash from a git blame of mm/mremap.c on the lines the
    #: patch adds, Oscar Salvador 2019-03-05; the patch on linux-mm, 26 Feb 2019). Before,
    #: only move_vma() checked, after the destination was unmapped.
    mremap_map_count_first: bool = _since('5.1', 'ea2c3f6f5545')
    #: new_len > TASK_SIZE is EINVAL for every call, in check_mremap_params() (6.17,
    #: "mm/mremap: refactor initial parameter sanity checks", 3215eaceca87: hash and subject
    #: in the Fixes: tag of Carlos Llamas' fix, "from 6.17-rc1" in its review). Before, only
    #: a move to a new address tested it; a grow past TASK_SIZE found no room (ENOMEM).
    mremap_new_len_checked_first: bool = _since('6.17', '3215eaceca87')
    #: Growing in place merges with a compatible next VMA (6.0, "mm: add merging after mremap
    #: resize"; 6.18 vma_merge_extend()); 2.6.32's vma_adjust() only moves vm_end.
    mremap_expand_merges: bool = _since('6.0', '"mm: add merging after mremap resize"')
    #: MREMAP_FIXED moves of an unresized range may span several VMAs and gaps (6.17,
    #: "mm/mremap: permit mremap() move of multiple VMAs": remap_move()).
    mremap_multi_vma: bool = _since('6.17', '"mm/mremap: permit mremap() move of multiple VMAs"')
    real_bits: Mapping[VM, int] = _accumulated('6.12', 'v6.12 include/linux/mm.h')
    # -- ksmd (mm/ksm.c); the seed has none ------------------------------------------------
    #: Writable files of /sys/kernel/mm/ksm with their boot values, in ksm_attrs[] order.
    #: None stands for "totalram_pages / 4" (2.6.32 max_kernel_pages).
    ksm_knobs: Mapping[str, int | str | None] = _accumulated(
        '6.18', 'v2.6.32 and v6.18 mm/ksm.c ksm_attrs[]')
    #: Read-only files of /sys/kernel/mm/ksm (the counters), in ksm_attrs[] order.
    ksm_counters: tuple[str, ...] = _accumulated(
        '6.18', 'v2.6.32 and v6.18 mm/ksm.c ksm_attrs[]')
    #: How the *_store() functions parse numbers: strict_strtoul() (2.6.32: digits and one
    #: trailing newline) or the kstrto*() functions (an optional "+", ERANGE on overflow), which
    #: strict_strtoul() itself became (2.6.39, "kstrto*: converting strings to integers done
    #: (hopefully) right", 33ee3b2e2eb9; 6.12 calls kstrtouint() and kstrtoul()).
    ksm_number_parser: KsmNumberParser = _since('2.6.39', '33ee3b2e2eb9')
    #: calc_checksum(): jhash2(seed 17) in 2.6.32, xxhash(seed 0) truncated to 32 bits from 5.0
    #: ("ksm: replace jhash2 with xxhash").
    ksm_checksum: KsmChecksum = _since('5.0', '"ksm: replace jhash2 with xxhash"')
    #: cmp_and_merge_page() computes the checksum of a non-KSM page *before* searching the
    #: stable tree (6.11, "mm/ksm: don't waste time searching stable tree for fast changing
    #: page"; 6.1 and 2.6.32 searched the stable tree first).
    checksum_before_stable_search: bool = _since(
        '6.11', '"mm/ksm: don\'t waste time searching stable tree for fast changing page"')
    #: Separate struct stable_node objects (2.6.33, "ksm: separate stable_node", 7b6ba2c7d3ba,
    #: and "ksm: stable_node point to page and back", 08beca44dfb0); in 2.6.32 a stable-tree
    #: node is the first rmap_item of the KSM page, and nodes are found stale through their
    #: items' addresses.
    stable_node_objects: bool = _since('2.6.33', '7b6ba2c7d3ba')
    #: The scanned page itself becomes the KSM page (2.6.33, "ksm: share anon page without
    #: allocating", 80e148226028); 2.6.32 copies it into a newly allocated kernel page, limited
    #: by max_kernel_pages.
    ksm_page_in_place: bool = _since('2.6.33', '80e148226028')
    #: try_to_merge_two_pages() merges nothing more once pages_shared reaches the
    #: max_kernel_pages knob (0: no limit; boots as totalram_pages / 4). Removed, knob and
    #: all, in 2.6.33 ("ksm: remove unswappable max_kernel_pages").
    max_kernel_pages: bool = _since('2.6.33', '"ksm: remove unswappable max_kernel_pages"')
    #: ksm_do_scan() rule of 2.6.32: a KSM page whose item is in the stable tree and that is
    #: mapped only once is broken back into a normal page. Later kernels keep it a KSM page:
    #: gone by v2.6.33.3 (both read). Of Hugh Dickins' 2.6.33 KSM patches as posted to
    #: linux-mm, "ksm: three remove_rmap_item_from_tree cleanups", "ksm: remove redundancies
    #: when merging page", "ksm: stable_node point to page and back", "ksm: hold anon_vma in
    #: rmap_item" and "ksm: share anon page without allocating" leave it; the commit is not
    #: found.
    break_unshared_ksm_page: bool = _read('2.6.33', 'v2.6.32 and v2.6.33.3 mm/ksm.c ksm_do_scan()')
    #: get_next_rmap_item() unlinks a reused item from the unstable tree (2.6.32); from 2.6.33
    #: ("ksm: three remove_rmap_item_from_tree cleanups") cmp_and_merge_page() does it (and
    #: later should_skip_rmap_item()).
    unlink_unstable_on_revisit: bool = _since(
        '2.6.33', '"ksm: three remove_rmap_item_from_tree cleanups"')
    #: prctl(PR_SET_MEMORY_MERGE / PR_GET_MEMORY_MERGE) exist (6.4, "mm: add new api to enable
    #: ksm per process", d7597f59d1d3).
    prctl_memory_merge: bool = _since('6.4', 'd7597f59d1d3')
    #: Under MMF_VM_MERGE_ANY a new anonymous or shmem mmap gets VM_MERGEABLE *before*
    #: vma_merge(), so it merges with mergeable neighbours (6.17, "mm: prevent KSM from
    #: breaking VMA merging for new VMAs"); before 6.17 ksm_add_vma() marked it afterwards.
    merge_any_flags_before_merge: bool = _since(
        '6.17', '"mm: prevent KSM from breaking VMA merging for new VMAs"')
    #: ksmd dropping a slot clears only MMF_VM_MERGEABLE, keeping MMF_VM_MERGE_ANY, and a later
    #: mmap re-registers the mm ("mm/ksm: fix exec/fork inheritance support for prctl",
    #: 6.19, in 6.18.y stable; 6.12 cleared both bits).
    slot_drop_keeps_merge_any: bool = _since(
        '6.19', '"mm/ksm: fix exec/fork inheritance support for prctl"')
    #: try_to_merge_with_ksm_page() unlinks the merged rmap_item from its tree ("Unstable nid
    #: is in union with stable anon_vma: remove first", 3.9 "ksm: shrink 32-bit rmap_item back
    #: to 32 bytes", bc56620b4934).
    merge_unlinks_rmap_item: bool = _since('3.9', 'bc56620b4934')
    #: /proc/PID/ksm_stat exists (6.1, "ksm: count allocated ksm rmap_items for each process",
    #: cb4df4cae4f2).
    proc_ksm_stat: bool = _since('6.1', 'cb4df4cae4f2')
    #: ksm_madvise() answers a failed __ksm_enter() with -EAGAIN itself (the seed); v2.6.32
    #: returns __ksm_enter()'s -ENOMEM, which madvise_behavior() turns into -EAGAIN ("ksm: fix
    #: endless loop on oom").
    ksm_madvise_enter_eagain: bool = _since('2.6.32', '"ksm: fix endless loop on oom"')
    #: try_to_merge_one_page() fails (-EFAULT) when the page it would replace is already a KSM
    #: page: a v2.6.32 KSM page has a NULL anon_vma (include/linux/ksm.h 34-42, PageKsm()), so
    #: write_protect_page()'s page_address_in_vma() fails for it (v2.6.32 mm/ksm.c 622-624 and
    #: 770-772; mm/rmap.c 250-253). Gone in 2.6.33 with "ksm: stable_node point to page and
    #: back" (08beca44dfb0): a KSM page is found as its own stable node's page, and
    #: try_to_merge_one_page() returns 0 at once for page == kpage, never meeting another one.
    merge_refuses_ksm_page: bool = _since('2.6.33', '08beca44dfb0')
    #: The longest sysfs write a store function sees, in bytes: v2.6.32 fs/sysfs/file.c
    #: fill_write_buffer() keeps PAGE_SIZE - 1 (175-176) and the write returns that many; the
    #: kernfs write path keeps PAGE_SIZE (3.14, 414985ae23c0 "sysfs, kernfs: move file core
    #: code to fs/kernfs/file.c"; 6.18 kernfs_fop_write_iter(): len = min(len, PAGE_SIZE)).
    #: Either way the buffer is NUL-terminated after the bytes kept, so the store functions
    #: parse up to the first NUL byte (v2.6.32 fs/sysfs/file.c 181, lib/vsprintf.c 169 and
    #: 176: strict_strtoul() stops at strlen()).
    sysfs_write_max: int = _since('3.14', '414985ae23c0')
    #: Transparent huge pages of anonymous memory (2.6.38, "thp: transparent hugepage core",
    #: 71e3aac0724f; ksmbook.thp): a first write fault in an eligible aligned 2 MiB range maps
    #: a huge page, which ksmd splits before merging one of its subpages.
    thp: bool = _since('2.6.38', '71e3aac0724f')
    # -- features that used to be told by a proxy (a knob's presence, a renamed function) -
    #: madvise flags are computed in madvise_vma_behavior() and applied in
    #: madvise_update_vma() (5.17, "mm: rearrange madvise code to allow for reuse",
    #: ac1e9acc5acf); 2.6.32 does both in madvise_behavior().
    madvise_update_vma: bool = _since('5.17', 'ac1e9acc5acf')
    #: MADV_GUARD_INSTALL marks the whole VMA VM_MAYBE_GUARD (6.19, in the 6.18 modelled).
    guard_marks_vma: bool = _since(
        '6.19', '"mm: introduce VM_MAYBE_GUARD and make visible in /proc/$pid/smaps"')
    #: ksmd's smart_scan: skip pages that did not merge, more often the older they are
    #: (/sys/kernel/mm/ksm/smart_scan; 6.7, "mm/ksm: add "smart" page scanning mode",
    #: 5e924ff54d08).
    smart_scan: bool = _since('6.7', '5e924ff54d08')
    #: ksmd can map the shared zero page for an all-zero page
    #: (/sys/kernel/mm/ksm/use_zero_pages; 4.11, "mm/ksm: improve deduplication of zero pages
    #: with colouring", e86c59b1b12d).
    use_zero_pages: bool = _since('4.11', 'e86c59b1b12d')
    #: ksmd's scan-time advisor sets pages_to_scan (/sys/kernel/mm/ksm/advisor_*; 6.8,
    #: "mm/ksm: add ksm advisor", 4e5fa4f5eff6).
    scan_time_advisor: bool = _since('6.8', '4e5fa4f5eff6')
    #: The profile of the kernel this machine runs (Linux 6.18): a live replay's results and
    #: VmFlags codes can match this profile's exactly, not only its VMA bounds.
    checkable_live: bool = _identity()

    def fn(self, name: str) -> str:
        """`name` as this kernel spells the function."""
        return self.renamed.get(name, name)

    def valid_advice(self, advice: int, config_ksm: bool) -> bool:
        """madvise_behavior_valid()."""
        return advice in self.advices or (config_ksm and advice in _KSM_ADVICES)

    def all_advices(self, config_ksm: bool) -> list[MADV]:
        """The advices this kernel accepts, in numeric order."""
        return sorted(MADV(a) for a in self.advices | (_KSM_ADVICES if config_ksm else set()))

    def codes(self, flags: VM) -> list[str]:
        """smaps VmFlags codes of `flags`, in bit order as the kernel prints them."""
        key = (self.name, int(flags))
        if key not in _CODES_CACHE:
            order = sorted(self.smaps_codes.items(), key=lambda kv: self.real_bit(kv[0]))
            _CODES_CACHE[key] = tuple(code for flag, code in order if flags & flag)
        return list(_CODES_CACHE[key])

    def real_bit(self, flag: VM) -> int:
        """The flag's bit value in this kernel's include/linux/mm.h."""
        return self.real_bits.get(flag, int(flag))

    def real_value(self, flags: VM) -> int:
        """vm_flags as this kernel would store them."""
        return sum(self.real_bit(f) for f in VM if f and flags & f)


_SEED = Profile(
    name="seed",
    title="2.6.32-rc, seed commit f8af4da3b4c1 (dummy mm/ksm.c)",
    advices=_BASE_ADVICES,
    ksm_ignore=_KSM_IGNORE_2632,
    unmerge_pages=False,
    has_ksmd=False,
    ksm_fork_first=True,
    vm_special=V.VM_IO | V.VM_DONTEXPAND | V.VM_RESERVED | V.VM_PFNMAP,
    merge_ignore=V.VM_CAN_NONLINEAR,
    sticky_flags=V.VM_NONE,
    anon_vma_chain=False,
    anon_reuse_asks_merge=True,
    close_blocks_only_deletion=False,
    mprotect_unaccounts=False,
    split_checks_count_first=False,
    willneed_anon_ebadf=True,
    fork_clears=V.VM_LOCKED,
    hugetlb_flags=V.VM_HUGETLB | V.VM_RESERVED,
    remap_pfn_flags=V.VM_IO | V.VM_RESERVED | V.VM_PFNMAP | V.VM_PFN_AT_MMAP,
    missing_flags=_NEW_ONLY,
    smaps_codes=MappingProxyType(_CODES_2632),
    fixed_noreplace=False,
    map_shared_validate=False,
    munmap_split_checks_count=True,
    stack_guard_gap=0,
    thp_aligned_anon=False,
    growsdown_private_anon_only=False,
    remove_needs_write=True,
    remove_filesystems=frozenset({"tmpfs"}),
    remove_refused=V.VM_LOCKED | V.VM_NONLINEAR | V.VM_HUGETLB,
    remove_by_fallocate=False,
    dontneed_valid_vma=False,
    ksm_madvise_enter_eagain=True,
    # v2.6.32 mm/memory.c vmtruncate_range(): unmap_mapping_range(mapping, offset,
    # 1 + end - offset, 1).
    remove_zaps_cows=True,
    # v2.6.32 mm/mlock.c mlock_vma_pages_range(): VM_IO|VM_PFNMAP go to no_mlock at once;
    # VM_DONTEXPAND|VM_RESERVED and hugetlb are made present, then lose VM_LOCKED too.
    mlock_refused=V.VM_IO | V.VM_PFNMAP | V.VM_DONTEXPAND | V.VM_RESERVED | V.VM_HUGETLB,
    # v2.6.32 mm/mmap.c do_mmap_pgoff(): "if (flags & MAP_HUGETLB) { ... if (file) return
    # -EINVAL;" after "if (!len || len > TASK_SIZE) return -ENOMEM;".
    hugetlb_in_do_mmap=True,
    map_hugetlb_hugetlbfs_files=False,
    mmap_len_checked_in_do_mmap=True,
    # v2.6.32 mm/filemap.c generic_file_mmap(), fs/ext4/file.c ext4_file_mmap(),
    # mm/shmem.c shmem_mmap(): vma->vm_flags |= VM_CAN_NONLINEAR.
    file_mmap_flags=V.VM_CAN_NONLINEAR,
    # v2.6.32 mm/memory.c remap_pfn_range(): "if (addr == vma->vm_start && end ==
    # vma->vm_end) { vma->vm_pgoff = pfn; vma->vm_flags |= VM_PFN_AT_MMAP; }".
    remap_pfn_pgoff_always=True,
    mremap_ksm_hook=False,
    # The seed's tree is 2.6.32-rc: the same fs/sysfs/file.c, and no ksmd to merge anything.
    merge_refuses_ksm_page=True,
    sysfs_write_max=4095,
    thp=False,
    renamed=MappingProxyType({}),
    fault_handlers_split=False,
    wp_page_split=False,
    mremap_dontunmap=False,
    mremap_vma_lookup_first=False,
    mremap_checks_source_first=False,
    mremap_hugetlb=False,
    mremap_refuses_private_dup=False,
    mremap_map_count_first=False,
    mremap_new_len_checked_first=False,
    mremap_expand_merges=False,
    mremap_multi_vma=False,
    real_bits=MappingProxyType({}),
    ksm_knobs=MappingProxyType({}),
    ksm_counters=(),
    # The seed has no ksmd; its ksmd fields are those of the 2.6.32 release.
    ksm_number_parser=KsmNumberParser.STRICT_STRTOUL,
    ksm_checksum=KsmChecksum.JHASH2,
    checksum_before_stable_search=False,
    stable_node_objects=False,
    ksm_page_in_place=False,
    max_kernel_pages=True,
    break_unshared_ksm_page=True,
    unlink_unstable_on_revisit=True,
    prctl_memory_merge=False,
    merge_any_flags_before_merge=False,
    slot_drop_keeps_merge_any=False,
    merge_unlinks_rmap_item=False,
    proc_ksm_stat=False,
    madvise_update_vma=False,
    guard_marks_vma=False,
    smart_scan=False,
    use_zero_pages=False,
    scan_time_advisor=False,
    checkable_live=False,
)

# 2.6.32 mm/ksm.c: ksm_attrs[] and the store functions' strict_strtoul().
_KSM_2632: dict[str, Any] = {
    "ksm_knobs": MappingProxyType({"sleep_millisecs": 20, "pages_to_scan": 100, "run": 0,
                                   "max_kernel_pages": None}),
    "ksm_counters": ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile",
                     "full_scans"),
    "ksm_number_parser": KsmNumberParser.STRICT_STRTOUL,
    "ksm_checksum": KsmChecksum.JHASH2,
    "checksum_before_stable_search": False,
    "stable_node_objects": False,
    "ksm_page_in_place": False,
    "max_kernel_pages": True,
    "break_unshared_ksm_page": True,
    "unlink_unstable_on_revisit": True,
    "ksm_madvise_enter_eagain": False,
    "merge_refuses_ksm_page": True,
    "sysfs_write_max": 4095,
}

_V2632 = dataclasses.replace(_SEED, name="2.6.32", title="Linux 2.6.32 (mm/ksm.c with ksmd)",
                             mremap_ksm_hook=True, unmerge_pages=True, has_ksmd=True,
                             **_KSM_2632)

_MODERN = Profile(
    name="modern",
    title="Linux 6.x (checked against a live 6.18 kernel)",
    fault_handlers_split=True,
    wp_page_split=True,
    advices=_MODERN_ADVICES,
    ksm_ignore=_KSM_IGNORE_MODERN,
    unmerge_pages=True,
    has_ksmd=True,
    ksm_fork_first=False,
    # 6.x VM_SPECIAL: VM_RESERVED is gone (3.7, "mm: kill vma flag VM_RESERVED and
    # mm->reserved_vm counter"), VM_MIXEDMAP joined.
    vm_special=V.VM_IO | V.VM_DONTEXPAND | V.VM_PFNMAP | V.VM_MIXEDMAP,
    # 6.18: MADV_GUARD_INSTALL marks the whole VMA VM_MAYBE_GUARD ("gu"); it never blocks a
    # merge and survives one.
    merge_ignore=V.VM_SOFTDIRTY | V.VM_MAYBE_GUARD,
    sticky_flags=V.VM_MAYBE_GUARD,
    anon_vma_chain=True,
    anon_reuse_asks_merge=False,
    close_blocks_only_deletion=True,
    mprotect_unaccounts=True,
    split_checks_count_first=True,
    willneed_anon_ebadf=False,
    fork_clears=V.VM_LOCKED | V.VM_LOCKONFAULT,
    hugetlb_flags=V.VM_HUGETLB | V.VM_DONTEXPAND,
    remap_pfn_flags=V.VM_IO | V.VM_PFNMAP | V.VM_DONTEXPAND | V.VM_DONTDUMP,
    missing_flags=_OLD_ONLY,
    smaps_codes=MappingProxyType(_CODES_MODERN),
    fixed_noreplace=True,
    map_shared_validate=True,
    munmap_split_checks_count=False,
    stack_guard_gap=256 << 12,
    thp_aligned_anon=True,
    growsdown_private_anon_only=True,
    remove_needs_write=False,
    remove_filesystems=frozenset({"tmpfs", "ext4", "hugetlbfs"}),
    remove_refused=V.VM_LOCKED,
    remove_by_fallocate=True,
    dontneed_valid_vma=True,
    # 6.12 mm/shmem.c shmem_fallocate(): unmap_mapping_range(mapping, ..., 0).
    remove_zaps_cows=False,
    # 6.12 mm/vma.c __mmap_region(): "if ((vm_flags & VM_SPECIAL) || vma_is_dax(vma) ||
    # is_vm_hugetlb_page(vma) || ...) vm_flags_clear(vma, VM_LOCKED_MASK);".
    mlock_refused=V.VM_IO | V.VM_DONTEXPAND | V.VM_PFNMAP | V.VM_MIXEDMAP | V.VM_HUGETLB,
    hugetlb_in_do_mmap=False,
    map_hugetlb_hugetlbfs_files=True,
    mmap_len_checked_in_do_mmap=False,
    file_mmap_flags=V(0),
    remap_pfn_pgoff_always=False,
    mremap_ksm_hook=True,
    mremap_dontunmap=True,
    mremap_vma_lookup_first=True,
    mremap_checks_source_first=True,
    mremap_hugetlb=True,
    mremap_refuses_private_dup=True,
    mremap_map_count_first=True,
    mremap_new_len_checked_first=True,
    mremap_expand_merges=True,
    mremap_multi_vma=True,
    renamed=MappingProxyType({
        "sys_madvise": "do_madvise", "madvise_vma": "madvise_vma_behavior",
        "madvise_behavior": "madvise_update_vma", "vma_merge": "vma_modify_flags",
        "sys_mprotect": "do_mprotect_pkey", "do_mmap_pgoff": "do_mmap",
        "sys_munmap": "do_vmi_munmap", "do_munmap": "do_vmi_align_munmap",
        # 2.6.32 names of the mmap path and of fork's VMA copy (v2.6.32 mm/mmap.c
        # do_mmap_pgoff(), security_file_mmap(), make_pages_present(), split_vma()'s
        # kmem_cache_alloc(vm_area_cachep)).
        "security_file_mmap": "security_mmap_addr", "make_pages_present": "mm_populate",
        "kmem_cache_alloc": "vm_area_dup", "mlock_vma_pages_range": "__mmap_region",
    }),
    real_bits=MappingProxyType(_BITS_MODERN),
    # 6.18 mm/ksm.c ksm_attrs[] (checked against /sys/kernel/mm/ksm of this machine).
    ksm_knobs=MappingProxyType({
        "sleep_millisecs": 20, "pages_to_scan": 100, "run": 0, "merge_across_nodes": 1,
        "max_page_sharing": 256, "stable_node_chains_prune_millisecs": 2000,
        "use_zero_pages": 0, "smart_scan": 1, "advisor_mode": "none", "advisor_max_cpu": 70,
        "advisor_min_pages_to_scan": 500, "advisor_max_pages_to_scan": 30000,
        "advisor_target_scan_time": 200,
    }),
    ksm_counters=("pages_scanned", "pages_shared", "pages_sharing", "pages_unshared",
                  "pages_volatile", "pages_skipped", "ksm_zero_pages", "full_scans",
                  "stable_node_chains", "stable_node_dups", "general_profit"),
    ksm_number_parser=KsmNumberParser.KSTRTOX,
    ksm_checksum=KsmChecksum.XXHASH,
    checksum_before_stable_search=True,
    stable_node_objects=True,
    ksm_page_in_place=True,
    max_kernel_pages=False,
    break_unshared_ksm_page=False,
    unlink_unstable_on_revisit=False,
    prctl_memory_merge=True,
    merge_any_flags_before_merge=True,
    slot_drop_keeps_merge_any=True,
    merge_unlinks_rmap_item=True,
    proc_ksm_stat=True,
    merge_refuses_ksm_page=False,
    # Checked live on 6.18: a 5001-byte write to pages_to_scan returns 4096.
    sysfs_write_max=4096,
    thp=True,
    ksm_madvise_enter_eagain=False,
    madvise_update_vma=True,
    guard_marks_vma=True,
    smart_scan=True,
    use_zero_pages=True,
    scan_time_advisor=True,
    checkable_live=True,
)

PROFILES: Mapping[str, Profile] = MappingProxyType(
    {p.name: p for p in (_SEED, _V2632, _MODERN)})


def get_profile(name: str | Profile) -> Profile:
    """The profile called `name` (one of ``PROFILES``)."""
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
