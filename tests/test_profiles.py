"""The profiles rule, checked: every field of a Profile says where its difference comes from
and has a value in every profile; features are fields, not proxies."""

from __future__ import annotations

import dataclasses
import re

import pytest
from helpers import RW, E, P, errno_of, raw_syscalls

import ksmbook as kb
from ksmbook.constants import MADV, TASK_SIZE
from ksmbook.madvise import advice_codes
from ksmbook.profiles import PROFILES, Profile

FIELDS = dataclasses.fields(Profile)
VERSION = re.compile(r"^(2\.6\.\d+|[3-9]\.\d+)$")
#: A 12-to-40-digit commit hash, or the commit's subject line in double quotes.
COMMIT = re.compile(r'^([0-9a-f]{12,40}|".+")$')
#: A kernel source file ("mm/ksm.c", "include/linux/mm.h"), usually with its function.
SOURCE = re.compile(r"\b(mm|fs|kernel|include|lib)/\S+\.[ch]\b")


#: Types that hold many values at once (a set of advices, a mask of VM flags, a table of
#: knobs): many commits built them up, and they may cite the sources read instead of a commit.
COLLECTIONS = {"frozenset", "VM", "tuple"}
#: Behaviours whose introducing commit has not been traced (what was tried is in the notes of
#: issue 18): the only scalar fields that may cite the source read instead of a commit.
UNTRACED = {
    "growsdown_private_anon_only", "hugetlb_in_do_mmap", "break_unshared_ksm_page",
}


def _is_collection(f: dataclasses.Field[object]) -> bool:
    kind = str(f.type)
    return kind.startswith("Mapping[") or kind.split("[")[0] in COLLECTIONS


@pytest.mark.parametrize("f", FIELDS, ids=[f.name for f in FIELDS])
def test_every_field_names_where_it_comes_from(f: dataclasses.Field[object]) -> None:
    """A behaviour names the version and commit that introduced it; only a collection may
    name the sources it was read from instead."""
    meta = dict(f.metadata)
    if meta.get("identity"):
        assert f.name in ("name", "title", "checkable_live")
        return
    if "since" in meta:
        assert VERSION.match(meta["since"]), meta
        assert COMMIT.match(meta["commit"]), meta
    elif "accumulated_to" in meta:
        assert _is_collection(f), f"{f.name} ({f.type}) is one behaviour: cite its commit"
        assert VERSION.match(meta["accumulated_to"]), meta
        assert SOURCE.search(meta["source"]), meta
    else:
        assert f.name in UNTRACED, f"{f.name}: no since/commit: {meta}"
        assert VERSION.match(meta["read_in"]), meta
        assert SOURCE.search(meta["source"]), meta


def test_the_untraced_list_is_current() -> None:
    """A field whose commit is found leaves UNTRACED with it."""
    read = {f.name for f in FIELDS if "read_in" in f.metadata}
    assert read == UNTRACED


@pytest.mark.parametrize("f", FIELDS, ids=[f.name for f in FIELDS])
def test_every_field_is_a_difference(f: dataclasses.Field[object]) -> None:
    """A value that is the same in every profile is no version difference, so no field."""
    if f.metadata.get("identity"):
        return
    values = [getattr(p, f.name) for p in PROFILES.values()]
    assert any(v != values[0] for v in values[1:]), f"{f.name} is {values[0]!r} everywhere"


def test_no_field_has_a_default() -> None:
    """A profile that leaves a field out fails to construct instead of taking a default."""
    assert [f.name for f in FIELDS
            if f.default is not dataclasses.MISSING
            or f.default_factory is not dataclasses.MISSING] == []
    values = {f.name: getattr(PROFILES["modern"], f.name) for f in FIELDS}
    del values["thp"]
    with pytest.raises(TypeError, match="thp"):
        Profile(**values)


@pytest.mark.parametrize("profile", PROFILES.values(), ids=list(PROFILES))
def test_features_agree_with_the_knobs_they_add(profile: Profile) -> None:
    """A knob of /sys/kernel/mm/ksm exists exactly where its feature does: the code tests the
    feature, and the knob table must not say otherwise."""
    knobs = profile.ksm_knobs
    assert profile.smart_scan == ("smart_scan" in knobs)
    assert profile.use_zero_pages == ("use_zero_pages" in knobs)
    assert profile.scan_time_advisor == ("advisor_mode" in knobs)
    assert profile.has_ksmd == bool(knobs)
    if profile.has_ksmd:
        assert profile.max_kernel_pages == ("max_kernel_pages" in knobs)


@pytest.mark.parametrize("profile", PROFILES.values(), ids=list(PROFILES))
def test_the_advice_codes_come_from_the_profile(profile: Profile) -> None:
    codes = advice_codes(profile)
    assert set(codes) <= set(profile.smaps_codes.values())
    assert "mg" in codes and ("gu" in codes) == profile.guard_marks_vma
    assert ("hg" in codes) == (MADV.MADV_HUGEPAGE in profile.all_advices(True))


# -- fields traced to a commit, each one honoured -------------------------------------------
# The expected results are written out per profile, not read from the profile, so that a
# wrong value fails as surely as a simulator that ignores the field.

def _hugetlbfs_file() -> kb.File:
    """A hugetlbfs file of one huge page, as memfd_create(MFD_HUGETLB) makes one."""
    return kb.File("/memfd:huge (deleted)", kb.HPAGE_SIZE, kind="hugetlb", fs="hugetlbfs",
                   deleted=True)


HUGETLBFS_WITH_MAP_HUGETLB = {"seed": E.EINVAL, "2.6.32": E.EINVAL, "modern": 0}
HUGE_SHARED = kb.MAP_SHARED | kb.MAP_HUGETLB | kb.MAP_NORESERVE


def test_map_hugetlb_maps_a_hugetlbfs_file(profile: str) -> None:
    """map_hugetlb_hugetlbfs_files: v2.6.32 do_mmap_pgoff() refuses MAP_HUGETLB with any
    file; 3.11's sys_mmap_pgoff() maps a hugetlbfs one (MAP_NORESERVE: nothing reserved)."""
    p = kb.Kernel(profile).spawn()
    got = errno_of(lambda: p.mmap(kb.HPAGE_SIZE, RW, HUGE_SHARED, file=_hugetlbfs_file()))
    assert got == HUGETLBFS_WITH_MAP_HUGETLB[profile]
    assert [bool(v.flags & kb.VM_HUGETLB) for v in p.vmas] == ([] if got else [True])


LEN_CHECKED_BY = {"seed": "do_mmap_pgoff", "2.6.32": "do_mmap_pgoff",
                  "modern": "get_unmapped_area"}


def test_len_beyond_task_size_is_enomem_where_the_kernel_checks_it(profile: str) -> None:
    """mmap_len_checked_in_do_mmap: the ENOMEM for len > TASK_SIZE comes from v2.6.32
    do_mmap_pgoff(), and from 2.6.33 get_unmapped_area()."""
    p = kb.Kernel(profile).spawn()
    got = errno_of(lambda: p.mmap(TASK_SIZE + P, RW, kb.MAP_PRIVATE | kb.MAP_ANONYMOUS))
    assert got == E.ENOMEM
    assert p.last_trace.steps[-1].function == LEN_CHECKED_BY[profile]  # type: ignore[union-attr]


HUGETLB_MREMAP = {"seed": (E.EINVAL, E.EINVAL), "2.6.32": (E.EINVAL, E.EINVAL),
                  "modern": (E.EINVAL, 0)}
HUGE_PRIVATE = kb.MAP_PRIVATE | kb.MAP_ANONYMOUS | kb.MAP_HUGETLB | kb.MAP_NORESERVE
#: A huge-page aligned address with nothing mapped near it.
HUGE_DEST = 0x40000000


def _hugetlb_mremap(p: kb.Process) -> tuple[int, int]:
    """mremap() of a one-page hugetlb mapping: grown in place, then moved (old_len one small
    page, which 5.16 rounds up to the huge page)."""
    h = p.mmap(kb.HPAGE_SIZE, RW, HUGE_PRIVATE)
    grow = errno_of(lambda: p.mremap(h, kb.HPAGE_SIZE, 2 * kb.HPAGE_SIZE, kb.MREMAP_MAYMOVE))
    move = errno_of(lambda: p.mremap(h, P, P, kb.MREMAP_MAYMOVE | kb.MREMAP_FIXED, HUGE_DEST))
    return grow, move


def test_mremap_moves_a_hugetlb_vma_from_5_16(profile: str) -> None:
    """mremap_hugetlb: v2.6.32 do_mremap() refuses a hugetlb VMA; 5.16 moves it, the lengths
    rounded to 2 MiB, but never grows it."""
    p = kb.Kernel(profile).spawn()
    assert _hugetlb_mremap(p) == HUGETLB_MREMAP[profile]
    starts = [v.start for v in p.vmas if v.flags & kb.VM_HUGETLB]
    assert len(starts) == 1 and (starts[0] == HUGE_DEST) == (HUGETLB_MREMAP[profile][1] == 0)


PRIVATE_DUP = {"seed": 0, "2.6.32": 0, "modern": E.EINVAL}


def test_mremap_old_len_0_of_a_private_mapping(profile: str) -> None:
    """mremap_refuses_private_dup: old_len 0 asks for a second mapping of the same pages;
    of a private mapping, v2.6.32 makes a fresh, unrelated one, and 4.14 refuses (EINVAL)."""
    p = kb.Kernel(profile).spawn()
    a = p.mmap(2 * P, RW, kb.MAP_PRIVATE | kb.MAP_ANONYMOUS)
    p.write_pages(a, [7])
    got = errno_of(lambda: p.mremap(a, 0, 2 * P, kb.MREMAP_MAYMOVE))
    assert got == PRIVATE_DUP[profile]
    assert len(p.vmas) == (2 if got == 0 else 1)


MAP_COUNT_FIRST = {"seed": 0, "2.6.32": 0, "modern": E.ENOMEM}


def test_mremap_to_checks_map_count_before_unmapping(profile: str) -> None:
    """mremap_map_count_first: with 3 maps and max_map_count 8, a move to a new address
    passes v2.6.32's move_vma() test (3 < 8 - 3) and happens; 5.1's mremap_to() first asks
    for room to cut both ranges in three (3 + 2 >= 8 - 3): ENOMEM, nothing touched."""
    k = kb.Kernel(profile, max_map_count=8)
    p = k.spawn()
    for i in range(3):
        p.mmap(P, RW, kb.MAP_PRIVATE | kb.MAP_ANONYMOUS | kb.MAP_FIXED, addr=0x10000000 + 2 * i * P)
    got = errno_of(lambda: p.mremap(0x10000000, P, P, kb.MREMAP_MAYMOVE | kb.MREMAP_FIXED,
                                    0x20000000))
    assert got == MAP_COUNT_FIRST[profile]
    assert (0x20000000 in [v.start for v in p.vmas]) == (got == 0)


NEW_LEN_BEYOND_TASK_SIZE = {"seed": E.ENOMEM, "2.6.32": E.ENOMEM, "modern": E.EINVAL}


def test_mremap_new_len_beyond_task_size(profile: str) -> None:
    """mremap_new_len_checked_first: growing past TASK_SIZE without a new address finds no
    room in v2.6.32 (ENOMEM); 6.17's check_mremap_params() refuses it first (EINVAL)."""
    p = kb.Kernel(profile).spawn()
    a = p.mmap(P, RW, kb.MAP_PRIVATE | kb.MAP_ANONYMOUS)
    got = errno_of(lambda: p.mremap(a, P, TASK_SIZE + P, kb.MREMAP_MAYMOVE))
    assert got == NEW_LEN_BEYOND_TASK_SIZE[profile]


SHRINK_OF_NOTHING = {"seed": 0, "2.6.32": 0, "modern": E.EFAULT}


def test_mremap_shrink_where_nothing_is_mapped(profile: str) -> None:
    """mremap_vma_lookup_first: v2.6.32 do_mremap() shrinks by unmapping the tail, which
    finds nothing and returns addr; 5.16's vma_lookup() first refuses it (EFAULT)."""
    p = kb.Kernel(profile).spawn()
    assert errno_of(lambda: p.mremap(HUGE_DEST, 2 * P, P, 0)) == SHRINK_OF_NOTHING[profile]


#: A move whose old range crosses the end of its VMA: the errno, then mprotect() of the
#: destination (ENOMEM once it is unmapped).
BAD_SOURCE_MOVE = {"seed": (E.EFAULT, E.ENOMEM), "2.6.32": (E.EFAULT, E.ENOMEM),
                   "modern": (E.EFAULT, 0)}


def _bad_source_move(p: kb.Process) -> tuple[int, int]:
    """mremap(MREMAP_FIXED) of 8 pages from a 4-page VMA, growing to 12 onto a mapped
    destination; then whether the destination is still mapped."""
    fixed = kb.MAP_PRIVATE | kb.MAP_ANONYMOUS | kb.MAP_FIXED
    src = p.mmap(4 * P, RW, fixed, addr=0x10000000)
    dest = p.mmap(12 * P, RW, fixed, addr=0x20000000)
    got = errno_of(lambda: p.mremap(src, 8 * P, 12 * P, kb.MREMAP_MAYMOVE | kb.MREMAP_FIXED,
                                    dest))
    return got, errno_of(lambda: p.mprotect(dest, P, RW))


def test_mremap_to_checks_the_source_before_unmapping(profile: str) -> None:
    """mremap_checks_source_first: v2.6.32 do_mremap() unmaps the destination, then finds
    the old range crosses its VMA's end (EFAULT), the destination gone; 6.17's
    check_prep_vma() refuses the move first, the destination still mapped."""
    assert _bad_source_move(kb.Kernel(profile).spawn()) == BAD_SOURCE_MOVE[profile]


LIVE_CHILD = r"""
MMAP, MPROTECT, MUNMAP, MREMAP, MEMFD_CREATE, MFD_HUGETLB = 9, 10, 11, 25, 319, 4
H = 2 << 20
name = ctypes.create_string_buffer(b"huge")
fd = sc(MEMFD_CREATE, ctypes.addressof(name), MFD_HUGETLB)
os.ftruncate(fd, H)
a = sc(MMAP, 0, H, 3, 0x01 | 0x40000 | 0x4000, fd, 0)
out["hugetlbfs_with_map_hugetlb"] = min(a, 0)
out["len_beyond_task_size"] = sc(MMAP, 0, 1 << 47, 3, 0x22, -1, 0)     # TASK_SIZE + 4096
h = sc(MMAP, 0, H, 3, 0x22 | 0x40000 | 0x4000, -1, 0)
free = sc(MMAP, 0, 4 * H, 0, 0x22, -1, 0)       # a huge-page aligned destination, unmapped
dest = (free + H - 1) // H * H
sc(MUNMAP, free, 4 * H)
grow = sc(MREMAP, h, H, 2 * H, 1, 0)
move = sc(MREMAP, h, 4096, 4096, 3, dest)
out["hugetlb_mremap"] = [min(grow, 0), min(move, 0)]
out["shrink_of_nothing"] = min(sc(MREMAP, free + 3 * H, 2 * 4096, 4096, 0, 0), 0)
b = sc(MMAP, 0, 2 * 4096, 3, 0x22, -1, 0)
out["private_dup"] = min(sc(MREMAP, b, 0, 2 * 4096, 1, 0), 0)
out["new_len_beyond_task_size"] = min(sc(MREMAP, b, 4096, 1 << 47, 1, 0), 0)
src = sc(MMAP, 0, 8 * 4096, 3, 0x22, -1, 0)     # 4 pages, then a hole of 4
sc(MUNMAP, src + 4 * 4096, 4 * 4096)
dest = sc(MMAP, 0, 12 * 4096, 3, 0x22, -1, 0)
bad = sc(MREMAP, src, 8 * 4096, 12 * 4096, 3, dest)
out["bad_source_move"] = [min(bad, 0), min(sc(MPROTECT, dest, 4096, 3), 0)]
"""


@pytest.mark.live
def test_traced_fields_match_this_kernel(live_kernel: None) -> None:
    """The modern values of the fields above, against this machine's kernel (one child
    process, raw syscalls; memfd_create(MFD_HUGETLB) makes the hugetlbfs file)."""
    live = raw_syscalls(LIVE_CHILD)
    p = kb.Kernel("modern").spawn()
    sim = {"hugetlbfs_with_map_hugetlb":
           -errno_of(lambda: p.mmap(kb.HPAGE_SIZE, RW, HUGE_SHARED, file=_hugetlbfs_file())),
           "len_beyond_task_size":
           -errno_of(lambda: p.mmap(TASK_SIZE + P, RW, kb.MAP_PRIVATE | kb.MAP_ANONYMOUS)),
           "hugetlb_mremap": [-e for e in _hugetlb_mremap(p)],
           "private_dup": -errno_of(lambda: p.mremap(p.mmap(2 * P, RW, kb.MAP_PRIVATE
                                                             | kb.MAP_ANONYMOUS),
                                                      0, 2 * P, kb.MREMAP_MAYMOVE)),
           "new_len_beyond_task_size": -errno_of(lambda: p.mremap(
               p.mmap(P, RW, kb.MAP_PRIVATE | kb.MAP_ANONYMOUS), P, TASK_SIZE + P,
               kb.MREMAP_MAYMOVE)),
           "shrink_of_nothing": -errno_of(lambda: p.mremap(HUGE_DEST + 2 * kb.HPAGE_SIZE,
                                                           2 * P, P, 0)),
           "bad_source_move": [-e for e in _bad_source_move(p)]}
    assert sim == live == {"hugetlbfs_with_map_hugetlb": -HUGETLBFS_WITH_MAP_HUGETLB["modern"],
                           "len_beyond_task_size": -E.ENOMEM,
                           "hugetlb_mremap": [-e for e in HUGETLB_MREMAP["modern"]],
                           "private_dup": -PRIVATE_DUP["modern"],
                           "new_len_beyond_task_size": -NEW_LEN_BEYOND_TASK_SIZE["modern"],
                           "shrink_of_nothing": -SHRINK_OF_NOTHING["modern"],
                           "bad_source_move": [-e for e in BAD_SOURCE_MOVE["modern"]]}
