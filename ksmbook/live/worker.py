"""The live worker: a process that runs system calls for ``ksmbook.live`` inside its arena.

Run as ``python3 -I -S worker.py FD BASE SIZE``: it imports nothing of ksmbook (only
``ksmbook/pages.py``, loaded by path, for the bytes of a page content), proves the arena
``[BASE, BASE + SIZE)`` free, keeps a guard page each side, then serves requests on the
AF_UNIX socket FD, one at a time: 4-byte length + JSON, bytes as {"b64": ...}. Every address
is checked against the arena before any system call (see ``ksmbook.live``).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import signal
import socket
import struct
import sys
from collections.abc import Sequence
from typing import Any

# The x86_64 ABI values the worker needs (include/uapi/asm-generic/mman-common.h, mman.h). The
# worker runs as a plain script with ``-I -S`` and imports nothing of ksmbook, so it keeps its
# own copy; tests/test_live.py checks that they equal ksmbook.constants.
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
_NR_MREMAP = 25  # arch/x86/entry/syscalls/syscall_64.tbl
_NR_MOVE_PAGES = 279  # arch/x86/entry/syscalls/syscall_64.tbl
_MREMAP_FIXED, _MREMAP_DONTUNMAP = 2, 4
_MPOL_MF_MOVE = 1 << 1
_EFAULT = 14

#: Advice values a worker refuses: they poison or offline *physical* pages.
FORBIDDEN_ADVICE = frozenset({_MADV_HWPOISON, _MADV_SOFT_OFFLINE})


# Errors
class LiveError(RuntimeError):
    """Live replay failed for a reason other than a system call's errno."""


class LiveRefused(LiveError):
    """The call was refused before reaching the kernel (outside the arena, forbidden advice)."""


class WorkerDied(LiveError):
    """The worker process went away (crash, signal, or it already exited)."""


class WorkerTimeout(LiveError):
    """The worker did not answer in time; it has been killed."""


# Wire protocol: 4-byte length + JSON, bytes as {"b64": ...}
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


# The worker (runs as ``python3 -I -S worker.py FD BASE SIZE``)
class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


def _libc() -> ctypes.CDLL:
    """libc with the prototypes of the calls the worker makes, errno kept."""
    libc = ctypes.CDLL(None, use_errno=True)
    vp, sz, i, ul = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_ulong
    iov = ctypes.POINTER(_IOVec)
    for name, restype, argtypes in (
            ("mmap", ctypes.c_long, [vp, sz, i, i, i, ctypes.c_long]), ("munmap", i, [vp, sz]),
            ("mprotect", i, [vp, sz, i]), ("madvise", i, [vp, sz, i]),
            ("prctl", i, [i, ul, ul, ul, ul]),
            ("process_vm_writev", ctypes.c_ssize_t, [i, iov, ul, iov, ul, ul]),
            ("process_vm_readv", ctypes.c_ssize_t, [i, iov, ul, iov, ul, ul])):
        fn = getattr(libc, name)
        fn.restype, fn.argtypes = restype, argtypes
    libc.syscall.restype = ctypes.c_long
    return libc


def _check(ret: int, what: str) -> int:
    if ret == -1:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def _load_page_bytes() -> Any:
    """ksmbook.pages.page_bytes for the worker, which runs as a script with ``-I -S``: the
    package's directory stands in for ``ksmbook`` without running its ``__init__`` (the whole
    simulator), so only pages.py and what it imports (constants.py, standard library) load."""
    import importlib
    import types

    package = types.ModuleType("ksmbook")
    package.__path__ = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    sys.modules.setdefault("ksmbook", package)
    return importlib.import_module("ksmbook.pages").page_bytes


class _Server:
    """Worker side: executes one request at a time, never touching memory outside the arena."""

    def __init__(self, sock: socket.socket, base: int, size: int) -> None:
        self.sock, self.base, self.end = sock, base, base + size
        self.c = _libc()
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
        if got == -1:
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
        got = _check(self.c.mmap(addr, length, prot, flags, fd, offset), "mmap")
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

    def op_mremap(self, addr: int, old_size: int, new_size: int, flags: int,
                  new_addr: int) -> int:
        """mremap(2) of a range of the arena; a target (MREMAP_FIXED, MREMAP_DONTUNMAP's hint)
        must lie in the arena too. A move the kernel placed outside it is undone (unmapped)
        and reported: the caller sends such moves with MREMAP_FIXED."""
        self._range(addr, old_size, "mremap")
        if flags & (_MREMAP_FIXED | _MREMAP_DONTUNMAP):
            self._range(new_addr, new_size, "mremap")
        ul = ctypes.c_ulong
        got = _check(self.c.syscall(_NR_MREMAP, ul(addr), ul(old_size), ul(new_size), ul(flags),
                                    ul(new_addr)), "mremap") % _U64
        if not self.base <= got < self.end:
            self.c.munmap(got, new_size)
            raise LiveError(f"mremap placed {got:#x}, outside the arena; unmapped it")
        return got

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
        return self._vm_rw("process_vm_writev", addr, buf, len(raw))

    def op_read(self, addr: int, length: int) -> Any:
        self._range(addr, length, "read")
        buf = ctypes.create_string_buffer(length)
        self._vm_rw("process_vm_readv", addr, buf, length)
        return buf.raw

    def _vm_rw(self, call: str, addr: int, buf: Any, length: int) -> int:
        """Move `length` bytes between `buf` and `addr` of this process with `call`
        (process_vm_writev or process_vm_readv): EFAULT where a page is missing, no SIGSEGV."""
        local, remote = _IOVec(ctypes.addressof(buf), length), _IOVec(addr, length)
        n = _check(getattr(self.c, call)(os.getpid(), local, 1, remote, 1, 0), call)
        if n != length:
            raise OSError(_EFAULT, f"{call}: moved {n} of {length} bytes, then EFAULT")
        return n

    def op_fill(self, addr: int, contents: list[Any]) -> int:
        """Give consecutive pages from ``addr`` their contents: an int is written with
        ``page_bytes`` (process_vm_writev, one call per run of ints), "read" is read-faulted
        (an anonymous page maps the shared zero page), None is left untouched."""
        self._range(addr, len(contents) * _PAGE, "fill")
        run: list[int] = []  # consecutive ints, written in one call where the run ends
        for i, c in enumerate([*contents, None]):
            if isinstance(c, int):
                run.append(c)
                continue
            if run:
                self._write(addr + (i - len(run)) * _PAGE, b"".join(map(self.page_bytes, run)))
                run = []
            if c == "read":
                self.op_read(addr + i * _PAGE, 1)
            elif c is not None:
                raise LiveRefused(f"page content must be an int, 'read' or None: {c!r}")
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
        scratch = ctypes.create_string_buffer(1)
        out = [0] * len(addrs)
        gc.disable()
        try:
            for _ in range(2000):  # warm the loop up: a first memset() call costs ~10 us more
                t0 = clock()
                memset(scratch, 0x5A, 1)
                out[0] = clock() - t0
            for i in order:
                t0 = clock()
                memset(addrs[i], 0x5A, 1)
                out[i] = clock() - t0
        finally:
            gc.enable()
        return out

    def op_time_madvise(self, addr: int, length: int, advices: list[int], repeat: int,
                        rounds: int) -> list[float]:
        """Call madvise(addr, length, advice) for each advice in turn, `repeat` times, and time
        it with time.process_time() (user plus system CPU time of this worker: the kernel's
        own work counts, other processes do not); one figure per round, in seconds per
        repeat. A failing call raises its OSError."""
        import gc
        import time

        for advice in advices:
            if advice in FORBIDDEN_ADVICE:
                raise LiveRefused(f"madvise advice {advice} (HWPOISON/SOFT_OFFLINE) is never sent")
        self._range(addr, length, "time_madvise")
        madvise, clock = self.c.madvise, time.process_time
        out = []
        gc.disable()
        try:
            for _ in range(rounds):
                t0 = clock()
                for _ in range(repeat):
                    for advice in advices:
                        if madvise(addr, length, advice):
                            _check(-1, "madvise")
                out.append((clock() - t0) / repeat)
        finally:
            gc.enable()
        return out

    def op_smaps(self) -> str:
        with open("/proc/self/smaps", "rb") as f:
            return f.read().decode()

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
                with contextlib.suppress(OSError):  # the controller may not wait for the answer
                    self.sock.sendall(_encode({"ok": 0}))
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


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
