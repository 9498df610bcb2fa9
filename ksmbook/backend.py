"""What the scenario Runner needs of a kernel: the backend contract, as typing Protocols.

Two backends implement it: the simulator (``ksmbook.kernel.Kernel`` and ``Process``,
``ksmbook.ksmd.Ksmd``, ``ksmbook.sysfs.KsmSysfs``) and this machine's kernel
(``ksmbook.live.LiveKernel`` and ``LiveTask``, ``ksmbook.live.ksmd.LiveKsmd``). The Runner
(``ksmbook.scenario.Runner``) is typed against these Protocols alone, and mypy checks that both
backends fit them, so a statement runs by the same code on either.

The contract is the public API of the book (``p.mmap(...)``, ``k.ksmd.full_scans(n)``,
``k.sysfs.write(name, value)``) and nothing more: no backend's private state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, Self, TypeVar

if TYPE_CHECKING:
    from .ksmd import BatchReport
    from .procfs import MapEntry
    from .trace import Trace

__all__ = ["FileBackend", "ProcessBackend", "KsmdBackend", "SysfsBackend", "SysctlBackend",
           "KernelBackend"]


class FileBackend(Protocol):
    """A file a scenario's ``file`` or ``device`` statement created, to be mapped."""

    @property
    def path(self) -> str: ...


class ProcessBackend(Protocol):
    """A process: its name and pid, and the system calls a statement makes."""

    @property
    def name(self) -> str: ...

    @property
    def pid(self) -> int: ...

    @property
    def alive(self) -> bool: ...

    def mmap(self, length: int, prot: int, flags: int, *, addr: int = 0,
             file: FileBackend | None = None, offset: int = 0) -> int: ...

    def munmap(self, addr: int, length: int) -> int: ...

    def mremap(self, old_addr: int, old_size: int, new_size: int, flags: int = 0,
               new_addr: int | None = None) -> int: ...

    def mprotect(self, addr: int, length: int, prot: int) -> int: ...

    def madvise(self, addr: int, length: int, advice: int) -> int: ...

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0,
              arg5: int = 0) -> int: ...

    def write_pages(self, addr: int, contents: Sequence[int]) -> None: ...

    def read_page(self, addr: int) -> int: ...

    def fork(self, name: str = "") -> Self: ...

    def exit(self) -> None: ...

    def map_entries(self) -> list[MapEntry]:
        """/proc/PID/maps (with smaps VmFlags) as records."""
        ...

    def ksm_stat(self) -> dict[str, int | str]:
        """/proc/PID/ksm_stat; FileNotFoundError in a kernel without that file."""
        ...


class KsmdBackend(Protocol):
    """The ksmd thread, stepped by statements."""

    #: Whether each batch records a Trace (kept in `log`).
    tracing: bool

    @property
    def batches(self) -> int:
        """Wake-ups of the thread so far."""
        ...

    @property
    def log(self) -> Sequence[Trace]:
        """The latest batches' traces (none if the backend does not trace)."""
        ...

    @property
    def pages_scanned(self) -> int:
        """Pages handed to cmp_and_merge_page() (ksm_pages_scanned), also in a kernel whose
        sysfs shows no pages_scanned."""
        ...

    def batch(self) -> BatchReport: ...

    def full_scans(self, n: int = 1) -> Mapping[str, int]: ...

    def run_for(self, ms: float) -> list[BatchReport]: ...

    def counters(self) -> Mapping[str, int]:
        """Every counter of /sys/kernel/mm/ksm."""
        ...


class SysfsBackend(Protocol):
    """/sys/kernel/mm/ksm as a ``sysfs NAME=VALUE`` statement writes it."""

    def write(self, name: str, value: int | str) -> int: ...


class SysctlBackend(Protocol):
    """/proc/sys/vm as a ``sysctl NAME=VALUE`` statement writes it."""

    def __setitem__(self, name: str, value: int, /) -> None: ...


P_co = TypeVar("P_co", bound=ProcessBackend, covariant=True)


class KernelBackend(Protocol[P_co]):
    """A kernel: its processes, files, sysctls, ksmd and sysfs, and what the set-up
    statements do. `P_co` is its process type."""

    @property
    def log(self) -> Sequence[Trace]:
        """The traces of the system calls so far (none if the backend does not trace)."""
        ...

    @property
    def processes(self) -> Sequence[P_co]: ...

    @property
    def sysctl(self) -> SysctlBackend: ...

    @property
    def ksmd(self) -> KsmdBackend: ...

    @property
    def sysfs(self) -> SysfsBackend: ...

    def spawn(self, name: str = "") -> P_co: ...

    def create_file(self, name: str, size: int, *, fs: str = "ext4",
                    writable: bool = True) -> FileBackend: ...

    def create_device(self, name: str, style: str) -> FileBackend: ...

    def inject(self, point: str, times: int = 1) -> None: ...

    def reclaim(self) -> int: ...
