"""Replay mmap/mprotect/madvise/fork on this machine's real kernel and read the layout back.

The simulator answers "what would the kernel do"; this module asks the kernel itself, so the book
and the tests can put both answers side by side. It drives the real system calls (``mmap``,
``munmap``, ``mprotect``, ``madvise``, ``prctl``, ``fork``) through ctypes and reads each VMA back
from ``/proc/PID/smaps`` (``fs/proc/task_mmu.c``: ``show_smap()``, ``show_smap_vma_flags()``).

How it stays out of harm's way:

* **Workers, not the caller.** Every operation runs in a *worker*: a fresh ``python3 -I -S``
  process running ``worker.py``, talking JSON over an ``AF_UNIX`` socketpair. The caller's own
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

Two levels of use. :class:`LiveSession` / :class:`Worker` make the raw calls on live addresses.
:class:`LiveKernel` and :class:`LiveTask` put this machine's kernel behind the simulator's
``Kernel``/``Process`` API, in simulator addresses (a constant :class:`Arena` offset), whoever
drives it: the scenario replay, ``ksmbook.live.ksmd`` or the side-channel probe. Page contents
are written as ``ksmbook.pages.page_bytes`` gives them, the one rule the simulator uses too.

What can go wrong: the platform is not Linux/x86_64 or has no KSM (:func:`available` says which);
the arena is already in use (a sanitizer, a huge heap) and the worker refuses to start; a worker
crashes or hangs (every call has a timeout; a dead worker gives :class:`WorkerDied`, a silent one
is killed and gives :class:`WorkerTimeout`). ``MAP_LOCKED`` needs RLIMIT_MEMLOCK or root;
``MAP_HUGETLB`` needs reserved huge pages (``vm.nr_hugepages``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any, NoReturn, Protocol

from ..backend import FileBackend, KsmdBackend, SysfsBackend
from ..constants import (
    HPAGE_SIZE,
    MAP,
    MMAP_BASE,
    MMAP_MIN_ADDR,
    MREMAP,
    PAGE_SIZE,
    TASK_SIZE,
    ULONG_MAX,
)
from ..mm import arch_get_unmapped_area_topdown, round_hint_to_min, thp_get_unmapped_area
from ..pages import page_bytes
from ..procfs import MapEntry
from ..profiles import get_profile
from ..trace import Trace
from .worker import (
    FORBIDDEN_ADVICE,
    LiveError,
    LiveRefused,
    WorkerDied,
    WorkerTimeout,
    _decode_bytes,
    _encode,
    _recv_msg,
)

__all__ = ["DEFAULT_ARENA_BASE", "DEFAULT_ARENA_SIZE", "SIM_MMAP_TOP", "FORBIDDEN_ADVICE", "Arena",
           "KsmShared", "LiveFile", "LiveKernel", "LiveTask", "LiveVMA", "Worker", "LiveSession",
           "LiveError", "LiveRefused", "WorkerDied", "WorkerTimeout", "available", "parse_smaps",
           "ksm_stat", "LiveKsmdBackend"]

#: Default arena: far below mmap_base and below the legacy TASK_UNMAPPED_BASE (see docstring).
DEFAULT_ARENA_BASE = 0x2000_0000_0000
DEFAULT_ARENA_SIZE = 0x100_0000_0000  # 1 TiB
#: Where the simulator's top-down placement starts (x86_64 mmap_base without ASLR).
SIM_MMAP_TOP = MMAP_BASE
_GIB = 1 << 30
_DEFAULT_TIMEOUT = 10.0
#: The worker program (run as a script, ``python3 -I -S worker.py FD BASE SIZE``).
_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")


# Arena and address translation
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
        if self.base < 2 * PAGE_SIZE or self.end + 2 * PAGE_SIZE > 1 << 47:
            raise ValueError("Arena must lie inside the 47-bit user address space")

    @property
    def end(self) -> int:
        """First address past the arena."""
        return self.base + self.size

    @property
    def offset(self) -> int:
        """``live - sim`` for every translated address."""
        return self.base - self.sim_origin

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


# smaps parsing (controller side)
@dataclasses.dataclass(frozen=True)
class LiveVMA(MapEntry):
    """One VMA as /proc/PID/smaps shows it: its maps line and VmFlags codes, and ``counters``,
    the smaps ``kB`` lines (in kB)."""

    counters: dict[str, int] = dataclasses.field(default_factory=dict, compare=False, hash=False)


_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) (\S+) (\d+) *(.*)$", re.M)


def parse_smaps(text: str, lo: int = 0, hi: int = 1 << 64) -> list[LiveVMA]:
    """Parse the text of /proc/PID/smaps into :class:`LiveVMA` records, in address order: the
    VMAs intersecting ``[lo, hi)`` (default: all; the others' lines are not read)."""
    heads = list(_HEADER.finditer(text))
    vmas: list[LiveVMA] = []
    for i, m in enumerate(heads):
        start, end = int(m[1], 16), int(m[2], 16)
        if not (start < hi and end > lo):
            continue
        vmflags: tuple[str, ...] = ()
        counters: dict[str, int] = {}
        body_end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        for line in text[m.end():body_end].splitlines():
            key, colon, value = line.partition(":")
            if not colon:
                continue
            if key == "VmFlags":
                vmflags = tuple(value.split())
            else:
                parts = value.split()
                if parts and parts[0].isdigit():
                    counters[key] = int(parts[0])
        vmas.append(LiveVMA(start=start, end=end, perms=m[3], offset=int(m[4], 16), path=m[7],
                            vmflags=vmflags, dev=m[5], inode=int(m[6]), counters=counters))
    return vmas


# Controller side
class Worker:
    """A handle on one worker process (``pid``, its real pid). Methods take and return raw
    ints (live addresses)."""

    def __init__(self, session: LiveSession, sock: socket.socket, pid: int,
                 popen: subprocess.Popen[bytes] | None) -> None:
        self.session, self.sock, self.pid, self.popen = session, sock, pid, popen
        self.exited = False
        try:
            self.pidfd: int | None = os.pidfd_open(pid)
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
        if "ok" in reply:
            return reply["ok"]
        if "errno" in reply:
            err = reply["errno"]
            raise OSError(err, f"{reply.get('msg') or os.strerror(err)} (live {op})")
        if "refused" in reply:
            raise LiveRefused(reply["refused"])
        raise LiveError(f"worker failed in {op}: {reply.get('error')}")

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

    # -- system calls -------------------------------------------------------------------------
    def mmap(self, addr: int, length: int, prot: int, flags: int, path: str | None = None,
             offset: int = 0, readonly: bool = False) -> int:
        """mmap at ``addr`` (without MAP_FIXED, sent as MAP_FIXED_NOREPLACE), of the file
        ``path`` if given, opened O_RDWR (O_RDONLY if ``readonly``)."""
        return self._call("mmap", addr=addr, length=length, prot=prot, flags=flags,
                          path=path, offset=offset, readonly=readonly)

    def munmap(self, addr: int, length: int) -> int:
        """munmap(2); 0 or OSError."""
        return self._call("munmap", addr=addr, length=length)

    def mprotect(self, addr: int, length: int, prot: int) -> int:
        """mprotect(2); 0 or OSError."""
        return self._call("mprotect", addr=addr, length=length, prot=prot)

    def madvise(self, addr: int, length: int, advice: int) -> int:
        """madvise(2); 0 or OSError. The worker refuses HWPOISON/SOFT_OFFLINE."""
        return self._call("madvise", addr=addr, length=length, advice=advice)

    def mremap(self, addr: int, old_size: int, new_size: int, flags: int, new_addr: int) -> int:
        """mremap(2) inside the arena; the new address or OSError."""
        return self._call("mremap", addr=addr, old_size=old_size, new_size=new_size,
                          flags=flags, new_addr=new_addr)

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
        """prctl(2), only PR_SET_MEMORY_MERGE (67) and PR_GET_MEMORY_MERGE (68)."""
        return self._call("prctl", option=option, arg2=arg2, arg3=arg3, arg4=arg4, arg5=arg5)

    def write(self, addr: int, data: bytes) -> int:
        """Write ``data`` at ``addr`` with process_vm_writev: EFAULT, never SIGSEGV."""
        return self._call("write", addr=addr, data=bytes(data))

    def fill(self, addr: int, contents: Sequence[int | str | None]) -> int:
        """Give consecutive pages their contents (the worker's ``op_fill``); EFAULT, never
        SIGSEGV."""
        return self._call("fill", addr=addr, contents=list(contents))

    def drain(self, addr: int) -> int:
        """Drain every CPU's LRU caches (move_pages() on this worker's present page ``addr``)."""
        return self._call("drain", addr=addr)

    def time_writes(self, addrs: Sequence[int], seed: int = 0) -> list[int]:
        """Nanoseconds of a one-byte write to each address, timed in the worker, which dies
        (WorkerDied) where a page is not mapped writable."""
        return self._call("time_writes", addrs=list(addrs), seed=seed)

    def time_madvise(self, addr: int, length: int, advices: Sequence[int], repeat: int,
                     rounds: int = 1) -> list[float]:
        """CPU seconds per repeat of the madvise calls, one figure per round (timed in the
        worker)."""
        return self._call("time_madvise", addr=addr, length=length, advices=list(advices),
                          repeat=repeat, rounds=rounds)

    def read(self, addr: int, length: int = PAGE_SIZE) -> bytes:
        """Read ``length`` bytes at ``addr`` with process_vm_readv: EFAULT, never SIGSEGV."""
        return _decode_bytes(self._call("read", addr=addr, length=length))

    def fork(self) -> Worker:
        """fork(2) in the worker; returns the handle of the child (a real fork() child)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = self._call("fork", fds=[theirs.fileno()])
        finally:
            theirs.close()
        child = Worker(self.session, ours, pid, None)
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
    def layout(self, lo: int | None = None, hi: int | None = None) -> list[LiveVMA]:
        """The worker's VMAs intersecting ``[lo, hi)`` (default: the arena), from smaps."""
        lo = self.arena.base if lo is None else lo
        hi = self.arena.end if hi is None else hi
        return parse_smaps(self._call("smaps"), lo, hi)

    # -- cleanup ------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        """Whether the worker process still exists."""
        if self.popen is None and self.pidfd is None:
            return not self.exited
        return not self._reap(timeout=0)

    def kill(self) -> None:
        """SIGKILL the worker (via its pidfd, so a recycled pid is never hit)."""
        self.exited = True
        with contextlib.suppress(OSError):
            if self.popen is not None:
                self.popen.kill()
            elif self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        self._reap(timeout=5)

    def _reap(self, timeout: float) -> bool:
        """Wait until the worker has ended; whether it has (True if it cannot be waited for)."""
        if self.popen is not None:
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        return self.pidfd is None or bool(select.select([self.pidfd], [], [], timeout)[0])

    def _close(self) -> None:
        if not self.exited:
            with contextlib.suppress(OSError):
                self.sock.settimeout(1.0)
                self.sock.sendall(_encode({"op": "exit", "args": {"status": 0}}))
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
        cmd = [sys.executable, "-I", "-S", _WORKER,
               str(theirs.fileno()), hex(self.arena.base), hex(self.arena.size)]
        try:
            popen = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                     close_fds=True)
        finally:
            theirs.close()
        w = Worker(self, ours, popen.pid, popen)
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

    def create_file(self, name: str, size: int, fs: str = "shm") -> str:
        """Create a scratch file of ``size`` zero bytes in a private directory on tmpfs
        (``fs="shm"``: /dev/shm) or /tmp (``fs="tmp"``); return its path."""
        if os.sep in name or name in ("", ".", ".."):
            raise ValueError(f"bad file name {name!r}")
        if fs not in self._tmpdirs:
            root = {"shm": "/dev/shm", "tmp": tempfile.gettempdir()}[fs]
            self._tmpdirs[fs] = tempfile.mkdtemp(prefix="ksmbook-live-", dir=root)
        path = os.path.join(self._tmpdirs[fs], name)
        with open(path, "wb") as f:
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


# The simulator's Kernel/Process API on live workers
_STACK_GUARD_GAP = get_profile("modern").stack_guard_gap  # this kernel's default
_THP_ALIGNED_ANON = get_profile("modern").thp_aligned_anon  # this kernel's (6.13 and later)


@dataclasses.dataclass(frozen=True)
class LiveFile:
    """A scratch file standing for a scenario's ``file``: where it is, and whether the
    scenario may write it."""

    path: str
    writable: bool


class LiveKsmdBackend(KsmdBackend, SysfsBackend, Protocol):
    """What a ``LiveKernel`` needs of this machine's ksmd (``ksmbook.live.ksmd.LiveKsmd``,
    a layer above this module): the ksmd and sysfs backends, and who else uses KSM."""

    def foreign_mms(self, own: Sequence[int]) -> list[int]:
        """PIDs registered with KSM other than `own` and the driver's own workers."""
        ...


def ksm_stat(pid: int) -> dict[str, Any]:
    """/proc/PID/ksm_stat (``proc_pid_ksm_stat()``) as a dict, ints where numeric; {} if
    unreadable."""
    try:
        with open(f"/proc/{pid}/ksm_stat") as f:
            text = f.read()
    except OSError:
        return {}
    out: dict[str, Any] = {}
    for line in text.splitlines():
        key, _, val = line.partition(" ")
        val = val.strip()
        out[key.rstrip(":")] = int(val) if val.lstrip("-").isdigit() else val
    return out


class _LiveSysctl:
    """/proc/sys/vm as the scenario's ``sysctl`` sees it: a write is accepted only if it asks
    for the value this machine has (the live side never changes a global sysctl)."""

    def __setitem__(self, name: str, value: int) -> None:
        with open(f"/proc/sys/vm/{name}") as f:
            current = int(f.read())
        if current != value:
            raise LiveRefused(f"sysctl {name}={value}: the live replay never changes a global "
                              f"sysctl (this machine has {current})")


class LiveTask:
    """A worker behind the simulator's ``Process`` API, in simulator addresses (translated by
    the arena), so that ``ksmbook.scenario.Runner`` runs statements on it unchanged."""

    def __init__(self, kernel: LiveKernel, worker: Worker, name: str) -> None:
        self.kernel, self.worker, self.name = kernel, worker, name
        self.pid = kernel.next_pid()
        kernel.processes.append(self)

    @property
    def alive(self) -> bool:
        return not self.worker.exited

    def _live(self, addr: int) -> int:
        return self.kernel.arena.to_live(addr)

    def mmap(self, length: int, prot: int, flags: int, addr: int = 0,
             file: FileBackend | None = None, offset: int = 0) -> int:
        """mmap(2). Without MAP_FIXED(_NOREPLACE) the address is chosen as the simulator
        chooses it (``_unmapped_area``) and sent with MAP_FIXED_NOREPLACE. `file` is one of
        this kernel's files (``LiveKernel.create_file``); any other object gives EBADF."""
        if file is not None and not isinstance(file, LiveFile):
            raise OSError(errno.EBADF, f"mmap: {file!r} is not a file of the live kernel")
        placed = not flags & (MAP.MAP_FIXED | MAP.MAP_FIXED_NOREPLACE)
        if placed:
            addr = round_hint_to_min(addr)  # as do_mmap() does before placing
        live = self._live(addr) if addr else 0
        if placed:
            align = HPAGE_SIZE if flags & MAP.MAP_HUGETLB else PAGE_SIZE
            anon = file is None and not flags & (MAP.MAP_SHARED | MAP.MAP_HUGETLB)
            live = self._unmapped_area(length, live, align, "mmap", anon)
        path = None if file is None else file.path
        readonly = file is not None and not file.writable
        got = self.worker.mmap(live, length, prot, flags, path=path, offset=offset,
                               readonly=readonly)
        return self.kernel.arena.to_sim(got)

    def _unmapped_area(self, length: int, hint: int, align: int, what: str,
                       anon: bool = False) -> int:
        """The simulator's placement (``ksmbook.mm.thp_get_unmapped_area()``, as
        ``MM.get_unmapped_area`` does; `anon`: a private anonymous mapping) over the worker's
        VMAs, inside the arena and below the translated mmap_base: the real kernel cannot be
        asked (it would place the mapping next to Python's own). Length 0 or a wrapping length
        is left for the kernel to refuse."""
        arena = self.kernel.arena
        rounded = -(-length // align) * align  # hugetlb lengths round up to 2 MiB
        top = MMAP_BASE + arena.offset
        if not arena.base < top <= arena.end:
            top = arena.end
        floor = max(arena.base, MMAP_MIN_ADDR + arena.offset)
        if rounded == 0 or rounded > ULONG_MAX:
            return top - PAGE_SIZE
        vmas = self.worker.layout(floor, arena.end)

        def search(n: int, h: int) -> int:
            return arch_get_unmapped_area_topdown(
                n, h, align, lambda a: (v for v in reversed(vmas) if v.start <= a),
                lambda a: next((v for v in vmas if v.end > a), None),
                lambda v: v.start - (_STACK_GUARD_GAP if "gd" in v.vmflags else 0),
                floor, top, min(arena.end, TASK_SIZE + arena.offset))
        addr = thp_get_unmapped_area(rounded, hint, anon and _THP_ALIGNED_ANON, search)
        if addr < 0:
            raise OSError(errno.ENOMEM, f"{what}: no room in the arena below mmap_base")
        return addr

    def munmap(self, addr: int, length: int) -> int:
        return self.worker.munmap(self._live(addr), length)

    def mremap(self, old_addr: int, old_size: int, new_size: int, flags: int = 0,
               new_addr: int | None = None) -> int:
        """mremap(2). A move whose place the kernel chooses (MREMAP_MAYMOVE growth that cannot
        expand in place; MREMAP_DONTUNMAP without MREMAP_FIXED) is sent with MREMAP_FIXED to
        the place the simulator chooses (``_unmapped_area``), as mmap is: the real kernel
        would put it next to Python's own mappings."""
        live = self._live(old_addr)
        target = 0
        if flags & (MREMAP.MREMAP_FIXED | MREMAP.MREMAP_DONTUNMAP) and new_addr is not None:
            target = self._live(new_addr)
        if not flags & MREMAP.MREMAP_FIXED:
            align = self._kernel_places_move(live, old_size, new_size, flags, target)
            if align:
                target = self._unmapped_area(new_size, target, align, "mremap",
                                             self._private_anon(live))
                flags |= MREMAP.MREMAP_FIXED
        return self.kernel.arena.to_sim(
            self.worker.mremap(live, old_size, new_size, flags, target))

    def _private_anon(self, addr: int) -> bool:
        """Whether the VMA at `addr` is private anonymous (no file, not shared), as 6.18
        vrm_set_new_addr() passes it to get_unmapped_area()."""
        vma = next((v for v in self.worker.layout(addr, addr + 1) if v.start <= addr < v.end),
                   None)
        return vma is not None and vma.inode == 0 and "sh" not in vma.vmflags

    def _kernel_places_move(self, addr: int, old_size: int, new_size: int, flags: int,
                            hint: int) -> int:
        """The alignment of the move if this call (without MREMAP_FIXED) moves the range to a
        place of the kernel's choosing, else 0 (6.x do_mremap(): a shrink or a grow that
        vma_expandable() allows stays; an invalid call fails before any placement, and
        check_mremap_params() checks MREMAP_DONTUNMAP's hint as it checks a fixed target)."""
        if not flags & MREMAP.MREMAP_MAYMOVE or addr % PAGE_SIZE:
            return 0
        old_len = -(-old_size // PAGE_SIZE) * PAGE_SIZE
        new_len = -(-new_size // PAGE_SIZE) * PAGE_SIZE
        vma = next((v for v in self.worker.layout(addr, addr + 1) if v.start <= addr < v.end),
                   None)
        if vma is None or addr + old_len > vma.end:
            return 0
        align = HPAGE_SIZE if "ht" in vma.vmflags else PAGE_SIZE
        if flags & MREMAP.MREMAP_DONTUNMAP:
            overlaps = addr < hint + new_len and hint < addr + old_len
            return align if old_len == new_len and not hint % PAGE_SIZE and not overlaps else 0
        if new_len <= old_len:
            return 0
        if addr + old_len == vma.end and not self.worker.layout(vma.end, addr + new_len):
            return 0  # vma_expandable(): grown in place
        return align

    def mprotect(self, addr: int, length: int, prot: int) -> int:
        return self.worker.mprotect(self._live(addr), length, prot)

    def madvise(self, addr: int, length: int, advice: int) -> int:
        return self.worker.madvise(self._live(addr), length, advice)

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0,
              arg5: int = 0) -> int:
        return self.worker.prctl(option, arg2, arg3, arg4, arg5)

    def write_pages(self, addr: int, values: Sequence[int]) -> None:
        """Like the simulator: every page must be mapped writable, else EFAULT and no write."""
        start = self._live(addr)
        end = start + len(values) * PAGE_SIZE
        vmas = self.worker.layout(start, end)
        for page in range(start, end, PAGE_SIZE):
            if not any(v.start <= page < v.end and "w" in v.perms for v in vmas):
                raise OSError(errno.EFAULT, f"write: {self.kernel.arena.to_sim(page):#x} is not "
                              "mapped writable")
        self.fill(addr, values)

    def fill(self, addr: int, contents: Sequence[int | str | None]) -> None:
        """Give the pages from addr on their contents in one call (``Worker.fill``), unchecked:
        a page that cannot be written gives EFAULT part way."""
        self.worker.fill(self._live(addr), list(contents))

    def drain(self, addr: int) -> None:
        """Drain every CPU's LRU caches (move_pages() on this process's present page addr)."""
        self.worker.drain(self._live(addr))

    def time_writes(self, addrs: Sequence[int], seed: int = 0) -> list[int]:
        """Nanoseconds of a one-byte write to each address (``Worker.time_writes``)."""
        return self.worker.time_writes([self._live(a) for a in addrs], seed=seed)

    def time_madvise(self, addr: int, length: int, advices: Sequence[int], repeat: int,
                     rounds: int = 1) -> list[float]:
        """CPU seconds per repeat of the madvise calls (``Worker.time_madvise``)."""
        return self.worker.time_madvise(self._live(addr), length, advices, repeat, rounds)

    def read_page(self, addr: int) -> int:
        """The content of the page at addr: its bytes read back through ``page_bytes``."""
        data = self.worker.read(self._live(addr) // PAGE_SIZE * PAGE_SIZE, PAGE_SIZE)
        content = int.from_bytes(data[:8], "little")
        if data != page_bytes(content if any(data) else 0):
            raise LiveError(f"page at {addr:#x} holds bytes that are no page content")
        return content

    def fork(self, name: str = "") -> LiveTask:
        return LiveTask(self.kernel, self.worker.fork(), name)

    def exit(self) -> None:
        self.worker.exit()

    def ksm_stat(self) -> dict[str, int | str]:
        """/proc/PID/ksm_stat of the worker."""
        return ksm_stat(self.worker.pid)

    def map_entries(self) -> list[MapEntry]:
        """The arena's VMAs as the simulator's maps entries (simulator addresses and paths)."""
        arena, paths = self.kernel.arena, self.kernel.sim_paths
        return [MapEntry(arena.to_sim(v.start), arena.to_sim(v.end), v.perms, v.offset, v.dev,
                         v.inode, paths.get(v.path, v.path), v.vmflags)
                for v in self.worker.layout()]


class LiveKernel:
    """This machine's kernel behind the simulator's ``Kernel`` API (processes, files,
    sysctl), for ``ksmbook.scenario.Runner``. What the live side must not do raises
    :class:`LiveRefused`: devices, fault injection, reclaim, and ksmd and /sys/kernel/mm/ksm
    unless ``ksmd`` (a ``ksmbook.live.ksmd.LiveKsmd``) is given."""

    def __init__(self, session: LiveSession, ksmd: LiveKsmdBackend | None = None) -> None:
        self.session = session
        self._ksmd = ksmd
        self.arena = session.arena
        self.processes: list[LiveTask] = []
        self.log: list[Trace] = []  # no traces: the real kernel does not say what it did
        self.sysctl = _LiveSysctl()
        self.sim_paths: dict[str, str] = {}  # live path -> simulator path
        self._pids = 0

    def next_pid(self) -> int:
        """Pids numbered 1, 2, ... as the simulator numbers them."""
        self._pids += 1
        return self._pids

    def spawn(self, name: str = "") -> LiveTask:
        return LiveTask(self, self.session.spawn(), name)

    def create_file(self, name: str, size: int, fs: str = "ext4",
                    writable: bool = True) -> LiveFile:
        path = self.session.create_file(name.replace("/", "_"), size,
                                        fs="shm" if fs == "tmpfs" else "tmp")
        self.sim_paths[path] = name if name.startswith("/") else f"/tmp/{name}"
        return LiveFile(path, writable)

    def create_device(self, name: str, style: str) -> NoReturn:
        raise LiveRefused(f"device {name} {style}: devices exist only in the simulator")

    def inject(self, point: str, times: int = 1) -> NoReturn:
        raise LiveRefused(f"inject {point}: fault injection exists only in the simulator")

    def reclaim(self) -> NoReturn:
        raise LiveRefused("reclaim: the live replay never puts this machine under memory "
                          "pressure")

    @property
    def ksmd(self) -> LiveKsmdBackend:
        """``ksmbook.live.ksmd.LiveKsmd`` when the replay was asked to drive ksmd."""
        if self._ksmd is None:
            raise LiveRefused("the live replay drives this machine's ksmd only when asked "
                              "(replay(..., ksmd=True))")
        return self._ksmd

    @property
    def sysfs(self) -> LiveKsmdBackend:
        """/sys/kernel/mm/ksm, written through the live ksmd (which restores every knob)."""
        return self.ksmd


class KsmShared(LiveError):
    """Other processes were registered with KSM during a replay that drives ksmd: the
    counters of /sys/kernel/mm/ksm are global, so the live ones are not the scenario's."""

    def __init__(self, pids: list[int]) -> None:
        super().__init__(f"other processes use KSM, the global counters are shared: {pids}")
        self.pids = pids


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

