"""Constants of the simulated kernel: page size, mmap/mprotect/madvise ABI values and flag sets.

ABI values are the x86-64 ones (include/uapi/asm-generic/mman-common.h, arch/x86 mman.h).
`VM` carries the vm_area_struct flag names. The bit values of the flags that 2.6.32 has are
2.6.32's own (include/linux/mm.h); flags that only later kernels have get bits above 32 here,
because modern kernels reused several 2.6.32 bits for other flags. `ksmbook.profiles` knows
each kernel's real numbers and the smaps code of each flag.
"""

from __future__ import annotations

import enum
import functools

__all__ = [
    "PAGE_SHIFT", "PAGE_SIZE", "HPAGE_SIZE", "TASK_SIZE", "MMAP_BASE", "MMAP_MIN_ADDR",
    "PROT", "MAP", "MREMAP", "MADV", "VM", "MMF", "ERRNO_NAMES",
    "ERESTARTSYS", "as_vm", "HZ", "msecs_to_jiffies", "ULONG_MAX",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
#: ULONG_MAX of x86_64: lengths, addresses and sysfs numbers wrap above it, as in C.
ULONG_MAX = (1 << 64) - 1
#: CONFIG_HZ: the timer frequency, the x86 default in 2.6.32 and 6.x (kernel/Kconfig.hz
#: "default HZ_250") and this machine's.
HZ = 250


def msecs_to_jiffies(m: int) -> int:
    """msecs_to_jiffies() (v2.6.32 kernel/time.c 452-466; 6.x the same rule): rounded up to
    whole jiffies; an int-negative value (2**31 and above) means "forever"
    (MAX_JIFFY_OFFSET)."""
    if m >= 1 << 31:
        return ((1 << 63) - 1 >> 1) - 1
    return (m + 1000 // HZ - 1) // (1000 // HZ)
HPAGE_SIZE = 2 << 20
#: x86-64 user address space limit (arch/x86/include/asm/page_64_types.h TASK_SIZE_MAX).
TASK_SIZE = 0x7FFFFFFFF000
#: Where top-down mmap placement starts, as with address space randomisation off.
MMAP_BASE = 0x7FFFF7FFF000
#: /proc/sys/vm/mmap_min_addr default.
MMAP_MIN_ADDR = 0x10000
#: Kernel-internal "restart the system call" code (include/linux/errno.h); user space sees EINTR.
ERESTARTSYS = 512


class PROT(enum.IntFlag):
    """mmap/mprotect protection bits."""

    PROT_NONE = 0x0
    PROT_READ = 0x1
    PROT_WRITE = 0x2
    PROT_EXEC = 0x4
    PROT_SEM = 0x8
    PROT_GROWSDOWN = 0x01000000
    PROT_GROWSUP = 0x02000000


class MAP(enum.IntFlag):
    """mmap flags (x86-64)."""

    MAP_SHARED = 0x01
    MAP_PRIVATE = 0x02
    MAP_SHARED_VALIDATE = 0x03
    MAP_FIXED = 0x10
    MAP_ANONYMOUS = 0x20
    MAP_GROWSDOWN = 0x0100
    MAP_DENYWRITE = 0x0800
    MAP_EXECUTABLE = 0x1000
    MAP_LOCKED = 0x2000
    MAP_NORESERVE = 0x4000
    MAP_POPULATE = 0x8000
    MAP_NONBLOCK = 0x10000
    MAP_STACK = 0x20000
    MAP_HUGETLB = 0x40000
    MAP_FIXED_NOREPLACE = 0x100000


class MREMAP(enum.IntFlag):
    """mremap flags (include/uapi/linux/mman.h; MREMAP_DONTUNMAP since 5.7)."""

    MREMAP_MAYMOVE = 1
    MREMAP_FIXED = 2
    MREMAP_DONTUNMAP = 4


class MADV(enum.IntEnum):
    """madvise advice values (include/uapi/asm-generic/mman-common.h)."""

    MADV_NORMAL = 0
    MADV_RANDOM = 1
    MADV_SEQUENTIAL = 2
    MADV_WILLNEED = 3
    MADV_DONTNEED = 4
    MADV_FREE = 8
    MADV_REMOVE = 9
    MADV_DONTFORK = 10
    MADV_DOFORK = 11
    MADV_MERGEABLE = 12
    MADV_UNMERGEABLE = 13
    MADV_HUGEPAGE = 14
    MADV_NOHUGEPAGE = 15
    MADV_DONTDUMP = 16
    MADV_DODUMP = 17
    MADV_WIPEONFORK = 18
    MADV_KEEPONFORK = 19
    MADV_COLD = 20
    MADV_PAGEOUT = 21
    MADV_POPULATE_READ = 22
    MADV_POPULATE_WRITE = 23
    MADV_DONTNEED_LOCKED = 24
    MADV_COLLAPSE = 25
    MADV_HWPOISON = 100
    MADV_SOFT_OFFLINE = 101
    MADV_GUARD_INSTALL = 102
    MADV_GUARD_REMOVE = 103


class VM(enum.IntFlag):
    """vm_area_struct.vm_flags (2.6.32 bits; flags of later kernels above bit 32)."""

    VM_NONE = 0
    VM_READ = 0x00000001
    VM_WRITE = 0x00000002
    VM_EXEC = 0x00000004
    VM_SHARED = 0x00000008
    VM_MAYREAD = 0x00000010
    VM_MAYWRITE = 0x00000020
    VM_MAYEXEC = 0x00000040
    VM_MAYSHARE = 0x00000080
    VM_GROWSDOWN = 0x00000100
    VM_GROWSUP = 0x00000200
    VM_PFNMAP = 0x00000400
    VM_DENYWRITE = 0x00000800
    VM_EXECUTABLE = 0x00001000
    VM_LOCKED = 0x00002000
    VM_IO = 0x00004000
    VM_SEQ_READ = 0x00008000
    VM_RAND_READ = 0x00010000
    VM_DONTCOPY = 0x00020000
    VM_DONTEXPAND = 0x00040000
    VM_RESERVED = 0x00080000
    VM_ACCOUNT = 0x00100000
    VM_NORESERVE = 0x00200000
    VM_HUGETLB = 0x00400000
    VM_NONLINEAR = 0x00800000
    VM_MAPPED_COPY = 0x01000000
    VM_INSERTPAGE = 0x02000000
    VM_ALWAYSDUMP = 0x04000000
    VM_CAN_NONLINEAR = 0x08000000
    VM_MIXEDMAP = 0x10000000
    VM_SAO = 0x20000000
    VM_PFN_AT_MMAP = 0x40000000
    VM_MERGEABLE = 0x80000000
    # Flags of later kernels (their real bits are in ksmbook.profiles).
    VM_LOCKONFAULT = 1 << 32
    VM_WIPEONFORK = 1 << 33
    VM_DONTDUMP = 1 << 34
    VM_SOFTDIRTY = 1 << 35
    VM_HUGEPAGE = 1 << 36
    VM_NOHUGEPAGE = 1 << 37
    VM_DROPPABLE = 1 << 38
    VM_SYNC = 1 << 39
    VM_MAYBE_GUARD = 1 << 41

    # The kernel's flag arithmetic is C's on an unsigned long: `~` complements all 64 bits.
    # enum's own `~` keeps only the bits of members it can see (~(VM_READ|VM_WRITE|VM_EXEC|
    # VM_CAN_NONLINEAR) loses VM_MERGEABLE), so these compute on ints as C does and look the
    # result up in a cache (`as_vm`).
    def __and__(self, other: object) -> VM:
        return as_vm(int(self) & int(other))  # type: ignore[call-overload]

    def __or__(self, other: object) -> VM:
        return as_vm(int(self) | int(other))  # type: ignore[call-overload]

    def __xor__(self, other: object) -> VM:
        return as_vm(int(self) ^ int(other))  # type: ignore[call-overload]

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    def __invert__(self) -> VM:
        return as_vm(~int(self) & ULONG_MAX)


@functools.cache
def as_vm(value: int) -> VM:
    """The `VM` for plain-int flags (cached). Hot paths compute flags as ints, which costs a
    fraction of an IntFlag operation, and make a `VM` only to store it in a VMA."""
    return VM(value & ULONG_MAX)


class MMF(enum.IntFlag):
    """mm_struct.flags bits that this book uses (include/linux/sched.h, mm_types.h)."""

    MMF_NONE = 0
    MMF_VM_MERGEABLE = 1 << 16
    MMF_VM_MERGE_ANY = 1 << 30


#: errno values of x86-64 Linux, with their names.
ERRNO_NAMES = {
    1: "EPERM", 3: "ESRCH", 4: "EINTR", 9: "EBADF", 11: "EAGAIN", 12: "ENOMEM",
    13: "EACCES", 14: "EFAULT", 16: "EBUSY", 17: "EEXIST", 19: "ENODEV", 22: "EINVAL",
    34: "ERANGE", 38: "ENOSYS", 75: "EOVERFLOW", 95: "EOPNOTSUPP",
}
