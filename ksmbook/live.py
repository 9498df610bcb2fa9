"""Replay mmap/mprotect/madvise/fork on this machine's real kernel and read the layout back.

The simulator answers "what would the kernel do"; this module asks the kernel itself, so the book
and the tests can put both answers side by side. It drives the real system calls (``mmap``,
``munmap``, ``mprotect``, ``madvise``, ``prctl``, ``fork``) through ctypes and reads each VMA back
from ``/proc/PID/smaps`` (``fs/proc/task_mmu.c``: ``show_smap()``, ``show_smap_vma_flags()``).

How it stays out of harm's way:

* **Workers, not the caller.** Every operation runs in a *worker*: a fresh ``python3 -I -S``
  process running this file, talking JSON over an ``AF_UNIX`` socketpair. The caller's own
  address space (a notebook kernel, pytest) is never mapped, advised or registered with KSM.
  ``Worker.fork()`` makes the worker call ``fork()``; the child talks to the controller over a
  socket passed to the parent worker with ``SCM_RIGHTS`` just before the fork.
* **An arena.** A worker only touches one far-away virtual range, by default
  ``[0x200000000000, +1 TiB)``. At start-up the worker proves the range free with one
  ``MAP_FIXED_NOREPLACE`` PROT_NONE reservation, then unmaps all of it except one PROT_NONE
  ``MAP_NORESERVE`` guard page at each end, one page away from the arena, so that no mapping
  outside the scenario can ever be *adjacent* to a scenario mapping (adjacent means mergeable).
  Holes made by a scenario's ``munmap`` are real holes: madvise's ENOMEM over a hole and
  mprotect's ENOMEM at a hole are what the book is about, so nothing refills them.
* **Why Python's own memory never lands in the arena.** The default top-down allocator
  (``mm/mmap.c``, ``vm_unmapped_area()`` top-down) hands out the highest free gap below
  ``mmap_base`` (just under the stack, near ``0x7fxxxxxxxxxx``): it would have to exhaust ~96 TiB
  before reaching ``0x2000_0000_0000 + 1 TiB``. ``brk`` grows up from the executable (PIE at
  ``0x55..``-``0x56..`` with ASLR, above the arena; a non-PIE binary near ``0x400000`` would need
  32 TiB of heap). The legacy bottom-up layout (``ulimit -s unlimited``) starts at
  TASK_SIZE/3 ~ ``0x2aaaaaaab000``, above the arena's end. ``tests/test_live.py`` checks this after
  a worker has allocated 64 MiB.
* **Every address is checked in the worker.** A call whose range is not inside the arena is
  refused (:class:`LiveRefused`) before any system call, except calls the kernel rejects at entry
  without looking at any mapping (a rounded length or an end that wraps past 2**64), which are
  passed through so their errno can be observed. ``MADV_HWPOISON`` (100) and
  ``MADV_SOFT_OFFLINE`` (101) are always refused: they act on physical memory.
  ``mmap`` without ``MAP_FIXED`` is sent as ``MAP_FIXED_NOREPLACE`` at the requested (translated)
  address: the caller (the simulator) decides placement, and the arena keeps it there.
* **Writes and reads never fault.** Page contents move with ``process_vm_writev``/``readv`` on
  the worker's own pid: an unmapped, PROT_NONE or read-only page gives EFAULT instead of SIGSEGV.
  (The kernel pins pages with FOLL_WRITE but without FOLL_FORCE, so a read-only page is refused.)

Two levels of use. :class:`LiveSession` / :class:`Worker` are the raw calls on live addresses
(``w.mmap(addr, length, prot, flags)``, ``w.madvise(...)``, ``w.layout()``, ``w.fork()``).
:func:`replay` runs a :mod:`ksmbook.scenario` text and returns what ``ksmbook.scenario.run``
returns, in simulator addresses (translated by a constant :class:`Arena` offset), so each step can
be compared with the ``modern`` profile.

What can go wrong: the platform is not Linux/x86_64 or has no KSM (:func:`available` says which);
the arena is already in use (a sanitizer, a huge heap) and the worker refuses to start; a worker
crashes or hangs (every call has a timeout; a dead worker gives :class:`WorkerDied`, a silent one
is killed and gives :class:`WorkerTimeout`). ``MAP_LOCKED`` needs RLIMIT_MEMLOCK or root;
``MAP_HUGETLB`` needs reserved huge pages (``vm.nr_hugepages``).
"""

from __future__ import annotations

import base64
import ctypes
import dataclasses
import functools
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the worker runs this file as a script and imports nothing of ksmbook
    from ksmbook.procfs import MapEntry
    from ksmbook.scenario import Map, Scenario, Statement, StepResult, Write

__all__ = [
    "DEFAULT_ARENA_BASE",
    "DEFAULT_ARENA_SIZE",
    "SIM_MMAP_TOP",
    "FORBIDDEN_ADVICE",
    "Arena",
    "LiveVMA",
    "Worker",
    "LiveSession",
    "LiveError",
    "LiveRefused",
    "WorkerDied",
    "WorkerTimeout",
    "available",
    "parse_smaps",
    "read_ksm_sysfs",
    "replay",
]

# The x86_64 ABI values the worker needs (include/uapi/asm-generic/mman-common.h, mman.h). The
# worker runs this file as a plain script with ``-I -S`` and imports nothing of ksmbook, so it keeps
# its own copy; tests/test_live.py checks that they equal ksmbook.constants.
_PAGE = 4096
_PROT_NONE = 0x0
_MAP_PRIVATE = 0x02
_MAP_FIXED = 0x10
_MAP_ANONYMOUS = 0x20
_MAP_NORESERVE = 0x4000
_MAP_FIXED_NOREPLACE = 0x100000
_MADV_HWPOISON = 100
_MADV_SOFT_OFFLINE = 101
_PR_SET_MEMORY_MERGE = 67
_PR_GET_MEMORY_MERGE = 68
_ALLOWED_PRCTL = frozenset({_PR_SET_MEMORY_MERGE, _PR_GET_MEMORY_MERGE})
_U64 = 1 << 64
_NR_MOVE_PAGES = 279  # arch/x86/entry/syscalls/syscall_64.tbl
_MPOL_MF_MOVE = 1 << 1
_EFAULT, _ENOMEM = 14, 12

#: Advice values a worker refuses: they poison or offline *physical* pages.
FORBIDDEN_ADVICE = frozenset({_MADV_HWPOISON, _MADV_SOFT_OFFLINE})
#: Default arena: far below mmap_base and below the legacy TASK_UNMAPPED_BASE (see docstring).
DEFAULT_ARENA_BASE = 0x2000_0000_0000
DEFAULT_ARENA_SIZE = 0x100_0000_0000  # 1 TiB
#: Where the simulator's top-down placement starts (x86_64 mmap_base without ASLR).
SIM_MMAP_TOP = 0x7FFF_F7FF_F000
_GIB = 1 << 30
_DEFAULT_TIMEOUT = 10.0


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
class LiveError(RuntimeError):
    """Live replay failed for a reason other than a system call's errno."""


class LiveRefused(LiveError, ValueError):
    """The call was refused before reaching the kernel (outside the arena, forbidden advice)."""


class WorkerDied(LiveError):
    """The worker process went away (crash, signal, or it already exited)."""


class WorkerTimeout(LiveError):
    """The worker did not answer in time; it has been killed."""


# --------------------------------------------------------------------------------------------
# Arena and address translation
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Arena:
    """The live virtual range ``[base, base + size)`` and its translation from simulator addresses.

    ``live = sim + (base - sim_origin)``. The offset is a multiple of 1 GiB, so a simulator
    address keeps its alignment to 4 KiB, 2 MiB (THP) and 1 GiB boundaries when replayed.
    """

    base: int = DEFAULT_ARENA_BASE
    size: int = DEFAULT_ARENA_SIZE
    sim_origin: int = SIM_MMAP_TOP - DEFAULT_ARENA_SIZE // 2 - (SIM_MMAP_TOP % _GIB)

    def __post_init__(self) -> None:
        if self.base % _GIB or self.size % _GIB or self.size <= 0:
            raise ValueError("Arena base and size must be positive multiples of 1 GiB")
        if (self.base - self.sim_origin) % _GIB:
            raise ValueError("Arena base - sim_origin must be a multiple of 1 GiB")
        if self.base < 2 * _PAGE or self.end + 2 * _PAGE > 1 << 47:
            raise ValueError("Arena must lie inside the 47-bit user address space")

    @property
    def end(self) -> int:
        """First address past the arena."""
        return self.base + self.size

    @property
    def offset(self) -> int:
        """``live - sim`` for every translated address."""
        return self.base - self.sim_origin

    def contains(self, addr: int, length: int = 0) -> bool:
        """Whether ``[addr, addr + length)`` lies inside the arena."""
        return self.base <= addr and addr + length <= self.end

    def to_live(self, sim_addr: int) -> int:
        """Translate a simulator address; refuse one that lands outside ``[base, end]``."""
        live = sim_addr + self.offset
        if not self.base <= live <= self.end:
            raise LiveRefused(
                f"simulator address {sim_addr:#x} maps to {live:#x}, outside the live arena "
                f"[{self.base:#x}, {self.end:#x}); the replay never touches memory outside it"
            )
        return live

    def to_sim(self, live_addr: int) -> int:
        """Translate a live address back into the simulator's address space."""
        if not self.base <= live_addr <= self.end:
            raise LiveRefused(f"live address {live_addr:#x} is outside the arena")
        return live_addr - self.offset

    @classmethod
    def for_sim_range(
        cls, lo: int, hi: int, base: int = DEFAULT_ARENA_BASE, size: int = DEFAULT_ARENA_SIZE
    ) -> Arena:
        """An arena whose middle holds the simulator range ``[lo, hi)``."""
        if hi - lo > size // 2:
            raise LiveRefused(
                f"simulator range [{lo:#x}, {hi:#x}) is too wide for a {size:#x} arena"
            )
        mid_sim = (lo + (hi - lo) // 2) // _GIB * _GIB
        return cls(base=base, size=size, sim_origin=mid_sim - size // 2)


# --------------------------------------------------------------------------------------------
# smaps parsing (controller side)
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LiveVMA:
    """One VMA as /proc/PID/smaps shows it. ``counters`` are the smaps ``kB`` lines (in kB)."""

    start: int
    end: int
    perms: str
    offset: int
    path: str
    vmflags: tuple[str, ...]
    dev: str = dataclasses.field(default="00:00", compare=False)
    inode: int = dataclasses.field(default=0, compare=False)
    counters: dict[str, int] = dataclasses.field(default_factory=dict, compare=False, hash=False)

    @property
    def size(self) -> int:
        """Length in bytes."""
        return self.end - self.start

    @property
    def flags(self) -> str:
        """VmFlags as smaps prints them, e.g. ``"rd wr mr mw me ac mg"``."""
        return " ".join(self.vmflags)

    def shifted(self, delta: int) -> LiveVMA:
        """The same VMA moved by ``delta`` bytes (for translating into simulator addresses)."""
        return dataclasses.replace(self, start=self.start + delta, end=self.end + delta)

    def __str__(self) -> str:
        return (f"{self.start:012x}-{self.end:012x} {self.perms} {self.offset:08x} "
                f"{self.path:<20} {self.flags}")


_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) (\S+) (\d+)\s*(.*)$")


def parse_smaps(text: str) -> list[LiveVMA]:
    """Parse the text of /proc/PID/smaps into :class:`LiveVMA` records, in address order."""
    vmas: list[LiveVMA] = []
    cur: dict[str, Any] | None = None

    def flush() -> None:
        if cur is not None:
            vmas.append(LiveVMA(**cur))

    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            flush()
            cur = dict(
                start=int(m[1], 16), end=int(m[2], 16), perms=m[3], offset=int(m[4], 16),
                dev=m[5], inode=int(m[6]), path=m[7], vmflags=(), counters={},
            )
            continue
        if cur is None or ":" not in line:
            continue
        key, _, value = line.partition(":")
        if key == "VmFlags":
            cur["vmflags"] = tuple(value.split())
        else:
            parts = value.split()
            if parts and parts[0].isdigit():
                cur["counters"][key] = int(parts[0])
    flush()
    return vmas


def read_ksm_sysfs() -> dict[str, str]:
    """The files of /sys/kernel/mm/ksm as strings (read only; this module never writes knobs)."""
    out: dict[str, str] = {}
    root = "/sys/kernel/mm/ksm"
    for name in sorted(os.listdir(root)):
        try:
            with open(os.path.join(root, name)) as f:
                out[name] = f.read().strip()
        except OSError:
            continue
    return out


# --------------------------------------------------------------------------------------------
# Wire protocol: 4-byte length + JSON, bytes as {"b64": ...}
# --------------------------------------------------------------------------------------------
def _encode(obj: Any) -> bytes:
    def default(o: Any) -> Any:
        if isinstance(o, (bytes, bytearray, memoryview)):
            return {"b64": base64.b64encode(bytes(o)).decode()}
        raise TypeError(f"cannot send {type(o).__name__}")

    body = json.dumps(obj, default=default).encode()
    return struct.pack("!I", len(body)) + body


def _decode_bytes(value: Any) -> bytes:
    return base64.b64decode(value["b64"])


def _recv_exact(sock: socket.socket, n: int, fds: list[int] | None = None) -> bytes:
    buf = b""
    while len(buf) < n:
        if fds is not None and not buf:
            chunk, got, _, _ = socket.recv_fds(sock, n, 4)
            fds.extend(got)
        else:
            chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def _recv_msg(sock: socket.socket, fds: list[int] | None = None) -> Any:
    (n,) = struct.unpack("!I", _recv_exact(sock, 4, fds))
    return json.loads(_recv_exact(sock, n))


# --------------------------------------------------------------------------------------------
# The worker (runs as ``python3 -I -S live.py --worker FD BASE SIZE``)
# --------------------------------------------------------------------------------------------
class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Libc:
    """The libc wrappers the worker calls, with errno kept."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        vp, sz, i, lg = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_long
        ul, ss = ctypes.c_ulong, ctypes.c_ssize_t
        self.mmap = libc.mmap
        self.mmap.restype, self.mmap.argtypes = vp, [vp, sz, i, i, i, lg]
        self.munmap = libc.munmap
        self.munmap.restype, self.munmap.argtypes = i, [vp, sz]
        self.mprotect = libc.mprotect
        self.mprotect.restype, self.mprotect.argtypes = i, [vp, sz, i]
        self.madvise = libc.madvise
        self.madvise.restype, self.madvise.argtypes = i, [vp, sz, i]
        self.prctl = libc.prctl
        self.prctl.restype, self.prctl.argtypes = i, [i, ul, ul, ul, ul]
        iov = ctypes.POINTER(_IOVec)
        self.vm_writev = libc.process_vm_writev
        self.vm_writev.restype, self.vm_writev.argtypes = ss, [i, iov, ul, iov, ul, ul]
        self.vm_readv = libc.process_vm_readv
        self.vm_readv.restype, self.vm_readv.argtypes = ss, [i, iov, ul, iov, ul, ul]
        self.syscall = libc.syscall
        self.syscall.restype = lg


def _check(ret: int, what: str) -> int:
    if ret == -1:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def _load_page_bytes() -> Any:
    """ksmbook.pages.page_bytes for the worker, which runs this file with ``-I -S``: the
    package's directory stands in for ``ksmbook`` without running its ``__init__`` (the whole
    simulator), so only pages.py and what it imports (constants.py, standard library) load."""
    import importlib
    import types

    package = types.ModuleType("ksmbook")
    package.__path__ = [os.path.dirname(os.path.abspath(__file__))]
    sys.modules.setdefault("ksmbook", package)
    return importlib.import_module("ksmbook.pages").page_bytes


class _Server:
    """Worker side: executes one request at a time, never touching memory outside the arena."""

    def __init__(self, sock: socket.socket, base: int, size: int) -> None:
        self.sock, self.base, self.end = sock, base, base + size
        self.c = _Libc()
        self.page_bytes = _load_page_bytes()
        #: One open file per (path, read-only): every mmap of a scenario file shares one
        #: struct file, as in a program that maps one fd several times. vma_merge() compares
        #: vm_file pointers, so separate opens of one file never merge. A fork child inherits
        #: these descriptors, as it would in C.
        self.files: dict[tuple[str, bool], int] = {}

    # -- arena -------------------------------------------------------------------------------
    def reserve_arena(self) -> None:
        """Prove the arena (plus a page and a guard page each side) free, then keep the guards."""
        lo, hi = self.base - 2 * _PAGE, self.end + 2 * _PAGE
        flags = _MAP_PRIVATE | _MAP_ANONYMOUS | _MAP_NORESERVE | _MAP_FIXED_NOREPLACE
        got = self.c.mmap(lo, hi - lo, _PROT_NONE, flags, -1, 0)
        if got is None or got == 2**64 - 1:
            e = ctypes.get_errno()
            raise LiveError(f"arena [{lo:#x}, {hi:#x}) is not free: {os.strerror(e)}")
        if got != lo:  # a kernel without MAP_FIXED_NOREPLACE treats the address as a hint
            self.c.munmap(got, hi - lo)
            raise LiveError("MAP_FIXED_NOREPLACE not honoured (kernel older than 4.17?)")
        _check(self.c.munmap(lo + _PAGE, hi - lo - 2 * _PAGE), "munmap")

    def _range(self, start: int, length: int, what: str) -> None:
        """Refuse a range outside the arena unless the kernel rejects it before any lookup."""
        if not 0 <= start < _U64 or not 0 <= length < _U64:
            raise LiveRefused(f"{what}: start and length must fit in 64 bits")
        rounded = (length + _PAGE - 1) // _PAGE * _PAGE
        if rounded >= _U64 or start + rounded >= _U64:
            if self.base <= start <= self.end:
                return  # the length or the end wraps: EINVAL/ENOMEM at entry, no VMA examined
        if not (self.base <= start and start + rounded <= self.end):
            raise LiveRefused(
                f"{what}({start:#x}, {length:#x}) reaches outside the arena "
                f"[{self.base:#x}, {self.end:#x}); refused"
            )

    # -- operations ----------------------------------------------------------------------------
    def op_ping(self) -> int:
        return os.getpid()

    def op_mmap(self, addr: int, length: int, prot: int, flags: int,
                path: str | None = None, offset: int = 0, readonly: bool = False) -> int:
        if addr % _PAGE:
            raise LiveRefused(f"mmap: address {addr:#x} is not page aligned")
        self._range(addr, length, "mmap")
        if not flags & (_MAP_FIXED | _MAP_FIXED_NOREPLACE):
            flags |= _MAP_FIXED_NOREPLACE  # placement is the caller's; keep it in the arena
        fd = -1
        if path is not None:
            fd = self.files.get((path, readonly), -1)
            if fd < 0:
                fd = self.files[(path, readonly)] = os.open(
                    path, os.O_RDONLY if readonly else os.O_RDWR)
        got = self.c.mmap(addr, length, prot, flags, fd, offset)
        err = ctypes.get_errno()
        if got is None or got == 2**64 - 1:
            raise OSError(err, f"mmap: {os.strerror(err)}")
        if got != addr:
            self.c.munmap(got, length)
            raise LiveError(f"mmap placed {got:#x} instead of {addr:#x}; unmapped it")
        return got

    def op_munmap(self, addr: int, length: int) -> int:
        self._range(addr, length, "munmap")
        return _check(self.c.munmap(addr, length), "munmap")

    def op_mprotect(self, addr: int, length: int, prot: int) -> int:
        self._range(addr, length, "mprotect")
        return _check(self.c.mprotect(addr, length, prot), "mprotect")

    def op_madvise(self, addr: int, length: int, advice: int) -> int:
        if advice in FORBIDDEN_ADVICE:
            raise LiveRefused(f"madvise advice {advice} (HWPOISON/SOFT_OFFLINE) is never sent")
        self._range(addr, length, "madvise")
        return _check(self.c.madvise(addr, length, advice), "madvise")

    def op_prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0,
                 arg5: int = 0) -> int:
        if option not in _ALLOWED_PRCTL:
            allowed = sorted(_ALLOWED_PRCTL)
            raise LiveRefused(f"prctl option {option} is not on the allowed list {allowed}")
        return _check(self.c.prctl(option, arg2, arg3, arg4, arg5), "prctl")

    def op_write(self, addr: int, data: Any) -> int:
        return self._write(addr, _decode_bytes(data))

    def _write(self, addr: int, raw: bytes) -> int:
        self._range(addr, len(raw), "write")
        buf = ctypes.create_string_buffer(raw, len(raw))
        local = _IOVec(ctypes.addressof(buf), len(raw))
        remote = _IOVec(addr, len(raw))
        n = _check(self.c.vm_writev(os.getpid(), local, 1, remote, 1, 0), "process_vm_writev")
        if n != len(raw):
            raise OSError(_EFAULT, f"process_vm_writev: wrote {n} of {len(raw)} bytes, then EFAULT")
        return n

    def op_read(self, addr: int, length: int) -> Any:
        self._range(addr, length, "read")
        buf = ctypes.create_string_buffer(length)
        local = _IOVec(ctypes.addressof(buf), length)
        remote = _IOVec(addr, length)
        n = _check(self.c.vm_readv(os.getpid(), local, 1, remote, 1, 0), "process_vm_readv")
        if n != length:
            raise OSError(_EFAULT, f"process_vm_readv: read {n} of {length} bytes, then EFAULT")
        return buf.raw[:n]

    def op_fill(self, addr: int, contents: list[Any]) -> int:
        """Give consecutive pages from ``addr`` their contents: an int is written with
        ``page_bytes`` (process_vm_writev, one call per run of ints), "read" is read-faulted
        (an anonymous page maps the shared zero page), None is left untouched."""
        self._range(addr, len(contents) * _PAGE, "fill")
        i = 0
        while i < len(contents):
            j = i
            while j < len(contents) and isinstance(contents[j], int):
                j += 1
            if j > i:
                self._write(addr + i * _PAGE, b"".join(self.page_bytes(c)
                                                       for c in contents[i:j]))
                i = j
                continue
            if contents[i] == "read":
                self.op_read(addr + i * _PAGE, 1)
            elif contents[i] is not None:
                raise LiveRefused(f"page content must be an int, 'read' or None: {contents[i]!r}")
            i += 1
        return len(contents)

    def op_drain(self, addr: int) -> int:
        """move_pages() of one present page of this worker to node 0 (where it is already):
        the call drains every CPU's LRU caches first (lru_cache_disable() in do_pages_move()),
        dropping the extra page references that make ksmd refuse a just-written page."""
        self._range(addr, _PAGE, "drain")
        pages = (ctypes.c_void_p * 1)(addr)
        nodes = (ctypes.c_int * 1)(0)
        status = (ctypes.c_int * 1)(0)
        _check(self.c.syscall(_NR_MOVE_PAGES, 0, 1, pages, nodes, status, _MPOL_MF_MOVE),
               "move_pages")
        if status[0] < 0:
            raise OSError(-status[0], f"move_pages: page status {os.strerror(-status[0])}")
        return status[0]

    def op_time_writes(self, addrs: list[int], seed: int = 0) -> list[int]:
        """Write one byte to each address, in a shuffled order, and time each write with
        time.perf_counter_ns() (nanoseconds, in the order given). The pages must be mapped
        writable: this is the one call that touches memory directly."""
        import gc
        import random
        import time

        for a in addrs:
            self._range(a, 1, "time_writes")
        order = list(range(len(addrs)))
        random.Random(seed).shuffle(order)
        clock, memset = time.perf_counter_ns, ctypes.memset
        for _ in range(2000):  # warm the interpreter's path up
            clock()
        out = [0] * len(addrs)
        gc.disable()
        try:
            for i in order:
                t0 = clock()
                memset(addrs[i], 0x5A, 1)
                out[i] = clock() - t0
        finally:
            gc.enable()
        return out

    def op_smaps(self) -> str:
        return self._read_proc("/proc/self/smaps")

    def op_proc(self, name: str) -> str:
        if name not in ("maps", "smaps", "ksm_stat", "ksm_merging_pages", "status"):
            raise LiveRefused(f"/proc/self/{name} is not offered")
        return self._read_proc(f"/proc/self/{name}")

    @staticmethod
    def _read_proc(path: str) -> str:
        fd = os.open(path, os.O_RDONLY)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks).decode()

    def op_allocate(self, nbytes: int) -> int:
        """Test hook: let Python allocate memory, to show it lands outside the arena."""
        self._ballast = [bytearray(nbytes // 64) for _ in range(64)]
        return nbytes

    # -- loop ---------------------------------------------------------------------------------
    def serve(self) -> None:
        while True:
            fds: list[int] = []
            try:
                req = _recv_msg(self.sock, fds)
            except (EOFError, ConnectionError):
                os._exit(0)
            op, args = req["op"], req.get("args", {})
            if op == "exit":
                try:
                    self.sock.sendall(_encode({"ok": 0}))
                except OSError:
                    pass  # the controller may close without waiting for the answer
                os._exit(int(args.get("status", 0)))
            if op == "fork":
                self._fork(fds)
                continue
            for fd in fds:
                os.close(fd)
            try:
                value = getattr(self, "op_" + op)(**args)
                reply: dict[str, Any] = {"ok": value}
            except LiveRefused as e:
                reply = {"refused": str(e)}
            except OSError as e:
                reply = {"errno": e.errno, "msg": e.strerror or ""}
            except Exception as e:  # report, never die silently
                reply = {"error": f"{type(e).__name__}: {e}"}
            self.sock.sendall(_encode(reply))

    def _fork(self, fds: list[int]) -> None:
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            self.sock.sendall(_encode({"error": "fork needs exactly one socket"}))
            return
        pid = os.fork()
        if pid == 0:
            self.sock.close()
            self.sock = socket.socket(fileno=fds[0])
            self.sock.sendall(_encode({"ok": os.getpid()}))
            return
        os.close(fds[0])
        self.sock.sendall(_encode({"ok": pid}))


def _worker_main(argv: Sequence[str]) -> None:
    fd, base, size = int(argv[0]), int(argv[1], 0), int(argv[2], 0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forked children are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a notebook goes to the controller
    sock = socket.socket(fileno=fd)
    server = _Server(sock, base, size)
    try:
        server.reserve_arena()
    except Exception as e:
        sock.sendall(_encode({"error": str(e)}))
        os._exit(1)
    sock.sendall(_encode({"ok": os.getpid()}))
    server.serve()


# --------------------------------------------------------------------------------------------
# Controller side
# --------------------------------------------------------------------------------------------
class Worker:
    """A handle on one worker process. Methods take and return raw ints (live addresses).

    ``pid`` is the real pid; ``parent`` is the Worker that forked this one (None if spawned).
    """

    def __init__(self, session: LiveSession, sock: socket.socket, pid: int,
                 popen: subprocess.Popen[bytes] | None, parent: Worker | None) -> None:
        self.session, self.sock, self.pid = session, sock, pid
        self.popen, self.parent = popen, parent
        self.pidfd: int | None = None
        self.exited = False
        try:
            self.pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self.pidfd = None

    def __repr__(self) -> str:
        state = "exited" if self.exited else "running"
        return f"<Worker pid={self.pid} {state}>"

    @property
    def arena(self) -> Arena:
        """The session's arena."""
        return self.session.arena

    # -- transport ----------------------------------------------------------------------------
    def _call(self, op: str, fds: Sequence[int] = (), **args: Any) -> Any:
        if self.exited:
            raise WorkerDied(f"worker {self.pid} has exited")
        msg = _encode({"op": op, "args": args})
        try:
            if fds:
                socket.send_fds(self.sock, [msg], list(fds))
            else:
                self.sock.sendall(msg)
            reply = self._recv()
        except (BrokenPipeError, ConnectionError, EOFError) as e:
            self.exited = True
            raise WorkerDied(f"worker {self.pid} died during {op}{self._status()}") from e
        return self._unwrap(op, reply)

    def _recv(self) -> Any:
        self.sock.settimeout(self.session.timeout)
        try:
            return _recv_msg(self.sock)
        except TimeoutError:
            self.kill()
            raise WorkerTimeout(
                f"worker {self.pid} did not answer within {self.session.timeout} s; killed"
            ) from None

    def _status(self) -> str:
        if self.popen is not None:
            try:
                rc = self.popen.wait(timeout=1)
            except subprocess.TimeoutExpired:
                return ""
            if rc < 0:
                return f" (killed by {signal.Signals(-rc).name})"
            return f" (exit status {rc})"
        return ""

    @staticmethod
    def _unwrap(op: str, reply: dict[str, Any]) -> Any:
        if "ok" in reply:
            return reply["ok"]
        if "errno" in reply:
            e = reply["errno"]
            raise OSError(e, f"{reply.get('msg') or os.strerror(e)} (live {op})")
        if "refused" in reply:
            raise LiveRefused(reply["refused"])
        raise LiveError(f"worker failed in {op}: {reply.get('error')}")

    # -- system calls -------------------------------------------------------------------------
    def mmap(self, addr: int, length: int, prot: int, flags: int, path: str | None = None,
             offset: int = 0, readonly: bool = False) -> int:
        """mmap at ``addr`` (always explicit; without MAP_FIXED it is sent as MAP_FIXED_NOREPLACE).

        With ``path``, the worker opens the file O_RDWR (O_RDONLY if ``readonly``) for the call.
        """
        return self._call("mmap", addr=addr, length=length, prot=prot, flags=flags,
                          path=path, offset=offset, readonly=readonly)

    def munmap(self, addr: int, length: int) -> int:
        """munmap(2); 0 or OSError."""
        return self._call("munmap", addr=addr, length=length)

    def mprotect(self, addr: int, length: int, prot: int) -> int:
        """mprotect(2); 0 or OSError."""
        return self._call("mprotect", addr=addr, length=length, prot=prot)

    def madvise(self, addr: int, length: int, advice: int) -> int:
        """madvise(2); 0 or OSError. HWPOISON/SOFT_OFFLINE are refused here and in the worker."""
        if advice in FORBIDDEN_ADVICE:
            raise LiveRefused(f"madvise advice {advice} (HWPOISON/SOFT_OFFLINE) is never sent")
        return self._call("madvise", addr=addr, length=length, advice=advice)

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
        """prctl(2), only PR_SET_MEMORY_MERGE (67) and PR_GET_MEMORY_MERGE (68)."""
        return self._call("prctl", option=option, arg2=arg2, arg3=arg3, arg4=arg4, arg5=arg5)

    def write(self, addr: int, data: bytes) -> int:
        """Write ``data`` at ``addr`` with process_vm_writev: EFAULT, never SIGSEGV."""
        return self._call("write", addr=addr, data=bytes(data))

    def fill(self, addr: int, contents: Sequence[int | str | None]) -> int:
        """Give consecutive pages their contents (``ksmbook.pages.page_bytes`` for an int, a
        read fault for "read", nothing for None); EFAULT, never SIGSEGV."""
        return self._call("fill", addr=addr, contents=list(contents))

    def drain(self, addr: int) -> int:
        """Drain every CPU's LRU caches (move_pages() on this worker's present page ``addr``)."""
        return self._call("drain", addr=addr)

    def time_writes(self, addrs: Sequence[int], seed: int = 0) -> list[int]:
        """Nanoseconds of a one-byte write to each address (shuffled order, timed in the
        worker). The pages must be mapped writable, else the worker dies (WorkerDied)."""
        return self._call("time_writes", addrs=list(addrs), seed=seed)

    def read(self, addr: int, length: int = _PAGE) -> bytes:
        """Read ``length`` bytes at ``addr`` with process_vm_readv: EFAULT, never SIGSEGV."""
        return _decode_bytes(self._call("read", addr=addr, length=length))

    def fork(self) -> Worker:
        """fork(2) in the worker; returns the handle of the child (a real fork() child)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = self._call("fork", fds=[theirs.fileno()])
        finally:
            theirs.close()
        child = Worker(self.session, ours, pid, None, self)
        try:
            hello = child._recv()
        except EOFError:
            raise WorkerDied(f"forked child {pid} never said hello") from None
        if hello.get("ok") != pid:
            raise LiveError(f"forked child said {hello!r}, expected pid {pid}")
        self.session._workers.append(child)
        return child

    def exit(self, status: int = 0) -> None:
        """Make the worker call _exit(status); its mm goes away (and with it its KSM slot)."""
        if self.exited:
            return
        try:
            self._call("exit", status=status)
        except WorkerDied:
            pass  # gone already: that is what exit() asked for
        finally:
            self.exited = True
            self.sock.close()
            self._reap(timeout=self.session.timeout)

    # -- inspection ---------------------------------------------------------------------------
    def smaps(self) -> str:
        """The worker's whole /proc/self/smaps text."""
        return self._call("smaps")

    def proc(self, name: str) -> str:
        """/proc/self/NAME of the worker (maps, smaps, status, ksm_stat, ksm_merging_pages)."""
        return self._call("proc", name=name)

    def layout(self, lo: int | None = None, hi: int | None = None) -> list[LiveVMA]:
        """The worker's VMAs intersecting ``[lo, hi)`` (default: the arena), from smaps."""
        lo = self.arena.base if lo is None else lo
        hi = self.arena.end if hi is None else hi
        return [v for v in parse_smaps(self.smaps()) if v.start < hi and v.end > lo]

    def sim_layout(self) -> list[LiveVMA]:
        """The arena's VMAs translated into simulator addresses."""
        return [v.shifted(-self.arena.offset) for v in self.layout()]

    def map_count(self) -> int:
        """mm->map_count: the VMAs of the whole process (what vm.max_map_count limits); the
        [vsyscall] line of /proc/PID/maps is the gate area, not a VMA."""
        return sum("[vsyscall]" not in line for line in self.proc("maps").splitlines())

    # -- cleanup ------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        """Whether the worker process still exists."""
        if self.popen is not None:
            return self.popen.poll() is None
        if self.pidfd is not None:
            return not select.select([self.pidfd], [], [], 0)[0]
        return not self.exited

    def kill(self) -> None:
        """SIGKILL the worker (via its pidfd, so a recycled pid is never hit)."""
        self.exited = True
        try:
            if self.popen is not None:
                self.popen.kill()
            elif self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except (ProcessLookupError, OSError):
            pass
        self._reap(timeout=5)

    def _reap(self, timeout: float) -> bool:
        if self.popen is not None:
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return False
        elif self.pidfd is not None:
            if not select.select([self.pidfd], [], [], timeout)[0]:
                return False
        return True

    def _close(self) -> None:
        if not self.exited:
            try:
                self.sock.settimeout(1.0)
                self.sock.sendall(_encode({"op": "exit", "args": {"status": 0}}))
            except OSError:
                pass
            self.exited = True
        self.sock.close()
        if not self._reap(timeout=2):
            self.kill()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


class LiveSession:
    """Owns the workers and scratch files of one live replay; use it as a context manager.

    ``with LiveSession() as s: w = s.spawn(); w.mmap(...)``. On exit (or an exception) every
    worker is told to exit, then killed if it does not; scratch files are deleted.
    """

    def __init__(self, arena: Arena | None = None, timeout: float = _DEFAULT_TIMEOUT) -> None:
        self.arena = arena or Arena()
        self.timeout = timeout
        self._workers: list[Worker] = []
        self._tmpdirs: dict[str, str] = {}
        self._closed = False

    def __enter__(self) -> LiveSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def workers(self) -> list[Worker]:
        """Workers started or forked in this session that have not exited."""
        return [w for w in self._workers if not w.exited]

    def spawn(self) -> Worker:
        """Start a fresh worker process (an empty scenario address space inside the arena)."""
        if self._closed:
            raise LiveError("session is closed")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cmd = [sys.executable, "-I", "-S", os.path.abspath(__file__), "--worker",
               str(theirs.fileno()), hex(self.arena.base), hex(self.arena.size)]
        try:
            popen = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                     close_fds=True)
        finally:
            theirs.close()
        w = Worker(self, ours, popen.pid, popen, None)
        self._workers.append(w)
        try:
            hello = w._recv()
        except EOFError:
            w.exited = True
            raise WorkerDied(f"worker {popen.pid} died at start-up{w._status()}") from None
        if "ok" not in hello:
            w.kill()
            raise LiveError(f"worker could not start: {hello.get('error')}")
        return w

    def scratch_dir(self, fs: str = "shm") -> str:
        """A private directory on tmpfs (``fs="shm"``: /dev/shm) or /tmp (``fs="tmp"``)."""
        if fs not in self._tmpdirs:
            root = {"shm": "/dev/shm", "tmp": tempfile.gettempdir()}[fs]
            self._tmpdirs[fs] = tempfile.mkdtemp(prefix="ksmbook-live-", dir=root)
        return self._tmpdirs[fs]

    def create_file(self, name: str, size: int, fs: str = "shm", fill: bytes = b"") -> str:
        """Create a scratch file of ``size`` bytes (zeros, or ``fill`` repeated); return its
        path."""
        if os.sep in name or name in ("", ".", ".."):
            raise ValueError(f"bad file name {name!r}")
        path = os.path.join(self.scratch_dir(fs), name)
        with open(path, "wb") as f:
            if fill:
                f.write((fill * (-(-size // len(fill))))[:size])
            else:
                f.truncate(size)
        return path

    def close(self) -> None:
        """Stop every worker (exit, then SIGKILL after a grace period) and delete scratch files."""
        self._closed = True
        for w in reversed(self._workers):
            try:
                w._close()
            except Exception:
                w.kill()
        for d in self._tmpdirs.values():
            shutil.rmtree(d, ignore_errors=True)
        self._tmpdirs.clear()

    def pids(self) -> list[int]:
        """Pids of every worker this session started or forked (exited ones included)."""
        return [w.pid for w in self._workers]


# --------------------------------------------------------------------------------------------
# Scenario replay
# --------------------------------------------------------------------------------------------
_STACK_GUARD_GAP = 256 * _PAGE  # mm/mmap.c stack_guard_gap default (256 pages)
_HPAGE = 2 << 20
_MAP_SHARED = 0x01
_MAP_GROWSDOWN = 0x0100
_MAP_LOCKED = 0x2000
_MAP_HUGETLB = 0x40000
_MMAP_MIN_ADDR = 0x10000  # /proc/sys/vm/mmap_min_addr default, as the simulator


def _scenario_arena(scenario: Scenario) -> Arena:
    """The default arena if it holds every numeric address of the scenario, else one centred
    on them; refuse a scenario whose addresses cannot all be translated."""
    from ksmbook.scenario import Map

    nums: list[int] = []
    topdown = False
    for op in scenario.ops:
        for key in ("at", "addr"):
            addr = getattr(op, key, None)
            if addr is not None and addr.label is None:
                nums.append(int(addr.offset))
        if isinstance(op, Map) and not (op.fixed or op.noreplace):
            topdown = True
    default = Arena()
    if all(default.base <= n + default.offset <= default.end for n in nums):
        return default
    if topdown:
        nums.append(SIM_MMAP_TOP)
    lo, hi = min(nums), max(nums)
    try:
        return Arena.for_sim_range(lo, hi)
    except LiveRefused:
        raise LiveRefused(
            f"the scenario's addresses span [{lo:#x}, {hi:#x}]: too wide to replay inside one "
            f"{DEFAULT_ARENA_SIZE >> 30} GiB arena (mix no fixed low addresses with top-down maps)"
        ) from None


class _Replayer:
    """Mirror of ksmbook.scenario's runner, acting on live workers instead of a Kernel."""

    def __init__(self, session: LiveSession) -> None:
        self.s = session
        self.arena = session.arena
        self.procs: dict[str, Worker] = {}
        self.pids: dict[str, int] = {}
        self.next_pid = 1
        self.labels: dict[str, int] = {}  # simulator addresses
        self.files: dict[str, tuple[str, bool]] = {}  # name -> (live path, writable)
        self.sim_paths: dict[str, str] = {}  # live path -> simulator path

    def fail(self, op: Statement, message: str) -> Exception:
        from ksmbook.scenario import ScenarioError

        return ScenarioError(op.line, 1, message)

    def proc(self, op: Statement, name: str) -> Worker:
        if name == "p1" and "p1" not in self.procs:
            self.procs["p1"] = self.s.spawn()
            self.pids["p1"] = self._pid()
        if name not in self.procs:
            raise self.fail(op, f"no process named {name!r}")
        w = self.procs[name]
        if w.exited:
            raise self.fail(op, f"process {name!r} has exited")
        return w

    def _pid(self) -> int:
        self.next_pid += 1
        return self.next_pid - 1

    def sim_addr(self, op: Statement, a: Any) -> int:
        if a.label is None:
            return int(a.offset)
        if a.label not in self.labels:
            raise self.fail(op, f"no mapping labelled {a.label!r} yet")
        return (self.labels[a.label] + a.offset) % _U64

    def live_addr(self, op: Statement, a: Any) -> int:
        return self.arena.to_live(self.sim_addr(op, a))

    def step(self, op: Statement) -> int:
        from ksmbook import scenario as sc

        if isinstance(op, sc.Boot):
            if not op.ksm:
                raise LiveRefused("this machine's kernel has CONFIG_KSM=y: cannot replay ksm=n")
            return 0
        if isinstance(op, sc.Sysctl):
            with open(f"/proc/sys/vm/{op.name}") as f:
                current = int(f.read())
            if current != op.value:
                raise LiveRefused(
                    f"sysctl {op.name}={op.value}: the live replay never changes a global "
                    f"sysctl (this machine has {current})"
                )
            return 0
        if isinstance(op, (sc.CreateDevice, sc.Inject, sc.Reclaim)):
            raise LiveRefused(f"'{op}': such statements exist only in the simulator")
        if isinstance(op, (sc.KsmdBatch, sc.KsmdScans, sc.KsmdRun, sc.SysfsWrite)):
            raise LiveRefused(f"'{op}': the live replay never drives this machine's ksmd")
        if isinstance(op, sc.CreateFile):
            fs = "shm" if op.fs == "tmpfs" else "tmp"
            path = self.s.create_file(op.name.replace("/", "_"), op.size, fs=fs)
            self.files[op.name] = (path, not op.ro)
            self.sim_paths[path] = op.name if op.name.startswith("/") else f"/tmp/{op.name}"
            return 0
        if isinstance(op, sc.Spawn):
            if op.proc in self.procs:
                raise self.fail(op, f"a process named {op.proc!r} exists already")
            self.procs[op.proc] = self.s.spawn()
            self.pids[op.proc] = self._pid()
            return self.pids[op.proc]
        w = self.proc(op, op.proc)
        try:
            return self._syscall(w, op)
        except OSError as e:
            return -(e.errno or 22)

    def _syscall(self, w: Worker, op: Statement) -> int:
        from ksmbook import scenario as sc

        if isinstance(op, sc.Map):
            return self._map(w, op)
        if isinstance(op, sc.Munmap):
            return w.munmap(self.live_addr(op, op.addr), op.length)
        if isinstance(op, sc.Mprotect):
            return w.mprotect(self.live_addr(op, op.addr), op.length, op.prot)
        if isinstance(op, sc.Madvise):
            return w.madvise(self.live_addr(op, op.addr), op.length, op.advice)
        if isinstance(op, sc.Write):
            return self._write(w, op)
        if isinstance(op, sc.Fork):
            if op.child in self.procs:
                raise self.fail(op, f"a process named {op.child!r} exists already")
            self.procs[op.child] = w.fork()
            self.pids[op.child] = self._pid()
            return self.pids[op.child]
        if isinstance(op, sc.Exit):
            w.exit()
            return 0
        raise LiveRefused(f"'{op}': the live replay does not run this statement")

    def _write(self, w: Worker, op: Write) -> int:
        """Like the simulator: every page must be mapped writable, else EFAULT and no write."""
        start = self.live_addr(op, op.addr)
        values = list(op.values)
        if start % _PAGE:
            raise LiveRefused(f"write: address {start:#x} is not page aligned")
        end = start + len(values) * _PAGE
        vmas = w.layout(start, end)
        for page in range(start, end, _PAGE):
            if not any(v.start <= page < v.end and "w" in v.perms for v in vmas):
                return -_EFAULT
        w.fill(start, values)
        return 0

    def _map(self, w: Worker, op: Map) -> int:
        flags = _MAP_SHARED if op.shared else _MAP_PRIVATE
        path, readonly = None, False
        if op.backing in ("anon", "hugetlb"):
            flags |= _MAP_ANONYMOUS | (_MAP_HUGETLB if op.backing == "hugetlb" else 0)
        elif op.backing == "file":
            if op.source not in self.files:
                raise self.fail(op, f"no file named {op.source!r}: declare it first with a "
                                "'file' line")
            path, writable = self.files[op.source]
            readonly = not writable
        else:
            raise LiveRefused(f"{op.backing}={op.source}: devices exist only in the simulator")
        for on, bit in ((op.fixed, _MAP_FIXED), (op.noreplace, _MAP_FIXED_NOREPLACE),
                        (op.noreserve, _MAP_NORESERVE), (op.locked, _MAP_LOCKED),
                        (op.growsdown, _MAP_GROWSDOWN)):
            if on:
                flags |= bit
        length = op.length
        hint = self.live_addr(op, op.at) if op.at is not None else 0
        if flags & (_MAP_FIXED | _MAP_FIXED_NOREPLACE):
            addr = hint
        else:
            align = _HPAGE if flags & _MAP_HUGETLB else _PAGE
            found = self._unmapped_area(w, length, hint, align)
            if found is None:
                return -_ENOMEM  # no room below the translated mmap_base (emulated placement)
            addr = found
        live = w.mmap(addr, length, op.prot, flags, path=path, offset=op.offset,
                      readonly=readonly)
        sim = self.arena.to_sim(live)
        self.labels[op.name] = sim
        return sim

    def _unmapped_area(self, w: Worker, length: int, hint: int, align: int) -> int | None:
        """arch_get_unmapped_area_topdown() inside the arena, below the translated mmap_base.

        A placement the real kernel cannot be asked for (it would place the mapping next to
        Python's own): the hint if it is free, else the highest gap that fits, keeping
        stack_guard_gap below a MAP_GROWSDOWN mapping. Length 0 or a wrapping length is left
        for the kernel to refuse."""
        rounded = -(-length // align) * align  # hugetlb lengths round up to 2 MiB
        top = SIM_MMAP_TOP + self.arena.offset
        if not self.arena.base < top <= self.arena.end:
            top = self.arena.end
        floor = max(self.arena.base, _MMAP_MIN_ADDR + self.arena.offset)
        if rounded == 0 or rounded >= _U64:
            return top - _PAGE
        vmas = w.layout(floor, self.arena.end)

        def gap_start(v: LiveVMA) -> int:
            return v.start - (_STACK_GUARD_GAP if "gd" in v.vmflags else 0)

        if hint:
            hint = -(-hint // _PAGE) * _PAGE
            if hint % align == 0 and floor <= hint and hint + rounded <= self.arena.end and all(
                v.end <= hint or gap_start(v) >= hint + rounded for v in vmas
            ):
                return hint
        high = top
        for v in reversed(vmas):
            if v.start >= top:
                continue
            if v.end <= high:
                addr = (high - rounded) // align * align
                if addr >= v.end and addr >= floor:
                    return addr
            high = min(high, gap_start(v))
        addr = (high - rounded) // align * align
        return addr if addr >= floor else None

    def snapshot(self) -> dict[str, list[MapEntry]]:
        from ksmbook.procfs import MapEntry

        out: dict[str, list[MapEntry]] = {}
        for name, w in self.procs.items():
            if w.exited:
                continue
            out[name] = [
                MapEntry(self.arena.to_sim(v.start), self.arena.to_sim(v.end), v.perms, v.offset,
                         v.dev, v.inode, self.sim_paths.get(v.path, v.path), v.vmflags)
                for v in w.layout()
            ]
        return out


def replay(scenario: Scenario | str, session: LiveSession | None = None) -> list[StepResult]:
    """Run a scenario on the real kernel; returns what ksmbook.scenario.run returns.

    Each StepResult has the operation, its result (an address or pid, 0, or -errno; addresses
    translated back into simulator addresses, pids numbered 1, 2, ... as the simulator does),
    ``trace=None``, and the maps of each live process (arena only, in simulator addresses,
    files under their simulator names). Mappings without ``fixed`` are placed top-down below
    the translated mmap_base (see ``_Replayer._unmapped_area``). Statements the real kernel
    cannot honour safely (``ksm=n``, a different sysctl value, devices, fault injection)
    raise :class:`LiveRefused`. With ``session``, the workers stay alive for inspection.
    """
    from ksmbook.scenario import StepResult, parse

    if isinstance(scenario, str):
        scenario = parse(scenario)
    own = session is None
    sess = session if session is not None else LiveSession(arena=_scenario_arena(scenario))
    try:
        r = _Replayer(sess)
        results = []
        for op in scenario.ops:
            result = r.step(op)
            results.append(StepResult(op, result, None, r.snapshot()))
        return results
    finally:
        if own:
            sess.close()


@functools.lru_cache(maxsize=1)
def available() -> tuple[bool, str]:
    """Whether live replay can run here, and if not, why (the reason is fit for pytest.skip).

    Looks only at the platform and /proc: it starts no worker and opens nothing under
    /sys/kernel/mm/ksm. A worker that then cannot start raises LiveError."""
    if not sys.platform.startswith("linux"):
        return False, f"not Linux (platform {sys.platform})"
    machine = os.uname().machine
    if machine != "x86_64":
        return False, f"live replay uses x86_64 ABI values; this machine is {machine}"
    if not os.path.exists("/proc/self/smaps"):
        return False, "no /proc/self/smaps (procfs not mounted?)"
    if not os.path.exists("/proc/self/ksm_stat"):
        return False, "no /proc/self/ksm_stat: kernel built without CONFIG_KSM (or older than 6.1)"
    return True, "ok"


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2:])
    else:
        ok, why = available()
        print("live replay available" if ok else f"live replay unavailable: {why}")
