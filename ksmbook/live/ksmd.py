"""The live ksmd of this machine, driven one full scan or one batch at a time (mm/ksm.c,
/sys/kernel/mm/ksm): the oracle whose counters the simulated ksmd must give.

It puts pages with chosen contents into workers of the one live harness (``ksmbook.live``: the
same ``LiveTask`` processes, arena and page bytes as the scenario replay), lets the real ksmd
make an exact number of full scans or batches over them, and reads every counter of
/sys/kernel/mm/ksm and every worker's /proc/PID/ksm_stat. Nothing runs in the caller's process:
no test runner or notebook kernel gets VM_MERGEABLE areas, KSM pages or an mm_slot of its own.

The protocol that gives reproducible counters (see ``LiveKsmd`` and
``ksmbook.experiment.measure``):

1. Stop ksmd (run=0), then unmerge everything (run=2). run=2 frees every rmap_item, breaks every
   KSM page and sets full_scans to 0, and leaves the scan cursor at the list head. Writing run=2
   when run is already 2 does nothing (run_store() acts only on a change), hence the 0 first.
2. With ksmd stopped, the workers write their pages and madvise(MADV_MERGEABLE), one after the
   other. __ksm_enter() puts each new mm_slot just before the cursor, which is the list head,
   so the slots sit in registration order and the *first* pass visits every page.
3. ``scan()``: pages_to_scan far above the number of pages, so one batch of ksm_do_scan() is
   exactly the rest of a pass (a pass end always ends the batch). ``batch()``: pages_to_scan
   N, so a batch is N pages or the rest of the pass. sleep_millisecs is an hour, so after each
   batch ksmd parks in ksm_scan_thread()'s timed wait and no counter moves.
4. One more batch = write a *different* sleep_millisecs (alternating two values;
   sleep_millisecs_store() wakes the timed wait; the first batch also needs run=1), then poll
   until pages_scanned grew by N or full_scans grew, then wait until ksmd is parked again
   (state S, wchan ksm_scan_thread) before reading counters. Waking ksmd only when it is parked
   avoids the one race: a new sleep value written after the batch ended but before ksmd read
   the old one would be lost and ksmd would sleep an hour.
5. Stepping batches while the world changes (``LiveKsmd.stepping``): one *keeper* worker holds an
   untouched mergeable page, so ksmd's mm list never empties (ksmd_should_run() stays true and
   an exit or munmap does not idle it), and before each batch a move_pages() call on one of the
   keeper's own pages drains every CPU's LRU caches: a page just copied on write still holds a
   per-CPU cache reference, and the kernel refuses to merge a page with extra references.

The counters pages_scanned and pages_skipped are never reset (not even by run=2); they are
reported relative to the reset, as is ksm_zero_pages (see ``_relative``).

What can go wrong:

- ksmd is machine-wide. Any other process registered with KSM while ksmd runs here is scanned
  too, and its pages are counted. The replay raises ``KsmShared`` when it sees one;
  ``ksmbook.experiment.measure`` (the scenario of ``predict``, replayed) also checks that the global
  counters equal the sums of its processes' /proc/PID/ksm_stat, repeats the experiment
  otherwise, and reports "foreign_mms" and "contamination".
- Users of this module serialize on an flock (/run/lock/ksmbook-live-ksmd.lock); other programs
  that write /sys/kernel/mm/ksm do not.
- max_page_sharing and merge_across_nodes give EBUSY while a KSM page exists, even briefly
  after run=2 if a process is exiting right then; writes of them unmerge first and retry.
- If no mm is registered, ksmd does not run and full_scans never moves: ``LiveKsmd.scan`` raises
  ``KsmdIdle`` instead of waiting.

Linux versions: written against Linux 6.18 (x86-64). KsmKnobs reads whatever writable files the
kernel has, so older kernels without smart_scan/advisor_* work too.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..constants import MADV, MAP, PAGE_SIZE, PROT
from ..ksmd import BatchReport, KsmdIdle
from ..sysfs import KSM_DIR
from ..trace import Trace
from .harness import (
    LiveKernel,
    LiveRefused,
    LiveSession,
    LiveTask,
    available,
    ksm_stat,
)

__all__ = [
    "KSM_DIR", "COUNTERS", "KNOB_ORDER", "PARK_MS", "ksm_available", "read_counters",
    "KsmKnobs", "KsmdIdle", "LiveKsmd", "session", "contamination",
    "time_scans", "map_pages", "mergeable_mms", "ksm_stat", "read_ksm_sysfs",
]

#: Read-only files of /sys/kernel/mm/ksm on Linux 6.18 (general_profit may be negative).
COUNTERS = (
    "full_scans", "pages_shared", "pages_sharing", "pages_unshared", "pages_volatile",
    "pages_scanned", "pages_skipped", "ksm_zero_pages", "stable_node_chains",
    "stable_node_dups", "general_profit",
)
#: Restore order of the writable knobs. advisor_mode first (writing it resets pages_to_scan to a
#: default, set_advisor_defaults()), pages_to_scan after it (EINVAL unless advisor_mode is none),
#: max_page_sharing / merge_across_nodes need no KSM pages (EBUSY), run last.
KNOB_ORDER = (
    "max_page_sharing", "merge_across_nodes",
    "advisor_mode", "advisor_max_cpu", "advisor_min_pages_to_scan", "advisor_max_pages_to_scan",
    "advisor_target_scan_time",
    "pages_to_scan", "use_zero_pages", "smart_scan", "stable_node_chains_prune_millisecs",
    "sleep_millisecs", "run",
)
#: Knobs that the kernel refuses to change (EBUSY) while any KSM page exists.
_NEEDS_UNMERGE = ("max_page_sharing", "merge_across_nodes")
#: sleep_millisecs while ksmd is parked between stepped passes (one hour).
PARK_MS = 3_600_000
#: Budget per batch while stepping whole passes: far above any page count used here.
_BIG_BUDGET = 10_000_000

_LOCK_PATH = os.path.join("/run/lock" if os.path.isdir("/run/lock") else "/tmp",
                          "ksmbook-live-ksmd.lock")
_lock_depth = 0
_lock_fd = -1


# --------------------------------------------------------------------------- sysfs helpers

def _path(name: str) -> str:
    return os.path.join(KSM_DIR, name)


def _read(name: str) -> str:
    with open(_path(name)) as f:
        return f.read().strip()


def _write(name: str, value: object) -> None:
    """Write one knob; the kernel's errno comes back as OSError (EBUSY, EINVAL, ...)."""
    with open(_path(name), "wb", buffering=0) as f:  # one write(2)
        f.write(f"{value}\n".encode())


def _uint(name: str, text: str) -> int:
    """The value of a knob written as text, or EINVAL as kstrtouint() gives."""
    if not text.isdigit():
        raise OSError(_errno.EINVAL, f"writing {text!r} to {KSM_DIR}/{name}: Invalid argument")
    return int(text)


def read_ksm_sysfs() -> dict[str, str]:
    """The readable files of /sys/kernel/mm/ksm as text."""
    out: dict[str, str] = {}
    for name in sorted(os.listdir(KSM_DIR)):
        with contextlib.suppress(OSError):
            out[name] = _read(name)
    return out


def read_counters() -> dict[str, int]:
    """Every counter of /sys/kernel/mm/ksm (COUNTERS) as an int."""
    return {n: int(v) for n, v in read_ksm_sysfs().items() if n in COUNTERS}


def ksm_available() -> tuple[bool, str]:
    """(True, "") when the live ksmd can be driven here, else (False, why not). Opens nothing
    for writing; call it only where a live test or measurement is about to run."""
    ok, why = available()
    if not ok:
        return False, why
    if not os.path.exists(_path("run")):
        return False, f"{KSM_DIR}/run missing (kernel built without CONFIG_KSM or no sysfs)"
    if os.geteuid() != 0 or not os.access(_path("run"), os.W_OK):
        return False, "not root: the knobs in /sys/kernel/mm/ksm cannot be written"
    if _ksmd_pid() is None:
        return False, "no ksmd kernel thread found"
    return True, ""


def mergeable_mms(exclude: Sequence[int] = ()) -> list[int]:
    """PIDs (thread-group leaders) whose mm is registered with KSM, from /proc/PID/ksm_stat."""
    pids = [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) not in exclude]
    return [pid for pid in pids if (st := ksm_stat(pid)).get("ksm_mergeable") == "yes"
            or st.get("ksm_rmap_items", 0)]


def _unmerge_all() -> None:
    """run 0 -> 2 -> 0: stop ksmd, then unmerge every KSM page and free every rmap_item
    (run_store() acts only on a change, hence the 0 first); ksmd stays stopped."""
    for value in (0, 2, 0):
        _write("run", value)


def _write_unmerged(name: str, value: object, tries: int = 40) -> None:
    """Write max_page_sharing or merge_across_nodes, which give EBUSY while any KSM page exists:
    unmerge first (run 0 -> 2 -> 0, run stays 0) and retry on EBUSY, which a process exiting
    right then (between ksm_exit() and exit_mmap(), see remove_stable_node()) can still cause."""
    for attempt in range(tries):
        _unmerge_all()
        try:
            _write(name, value)
            return
        except OSError as e:
            if e.errno != _errno.EBUSY or attempt == tries - 1:
                raise
            time.sleep(0.05)


# --------------------------------------------------------------------------- locking

def _open_lock(path: str) -> int:
    """A descriptor to flock, for whichever user runs: the lock file is opened read-only
    (flock needs no write access, so a file another user created serves every user), and
    created world-readable (fchmod 0644 whatever the umask) only if it does not exist yet.
    An existing file is never opened with O_CREAT: in a sticky world-writable directory
    such as /run/lock, fs.protected_regular refuses O_CREAT on another user's file."""
    while True:
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            continue  # another process created it meanwhile: open it as it is
        os.fchmod(fd, 0o644)
        return fd


@contextlib.contextmanager
def _global_lock() -> Iterator[None]:
    """Serialize users of the global knobs (pytest-xdist workers, notebooks, benchmarks) with
    flock; re-entrant within one process. Works for every user: see `_open_lock`."""
    import fcntl  # POSIX only: imported here so that this module imports anywhere

    global _lock_depth, _lock_fd
    if _lock_depth == 0:
        _lock_fd = _open_lock(_LOCK_PATH)
        fcntl.flock(_lock_fd, fcntl.LOCK_EX)
    _lock_depth += 1
    try:
        yield
    finally:
        _lock_depth -= 1
        if _lock_depth == 0:
            fcntl.flock(_lock_fd, fcntl.LOCK_UN)
            os.close(_lock_fd)
            _lock_fd = -1


# --------------------------------------------------------------------------- knobs

class KsmKnobs:
    """Snapshot every writable knob of /sys/kernel/mm/ksm on enter, restore them all on exit.

    ``with KsmKnobs() as k: k.set(pages_to_scan=1000, smart_scan=0); read_counters()``

    Restoring (also when the body raised) goes: run=0; if max_page_sharing or merge_across_nodes
    differ, unmerge (run=2) and write them; advisor_mode, advisor_*, pages_to_scan, the other
    knobs, sleep_millisecs; run last, back to its original value. If the original advisor_mode
    was scan-time, pages_to_scan cannot be written (EINVAL) and is left to the advisor.
    """

    def __init__(self) -> None:
        self.saved: dict[str, str] = {}

    @staticmethod
    def writable() -> list[str]:
        """Names of the writable files, in restore order (unknown future knobs before run)."""
        names = [n for n in os.listdir(KSM_DIR)
                 if os.stat(_path(n)).st_mode & 0o200 and n not in COUNTERS]
        known = [n for n in KNOB_ORDER if n in names]
        extra = sorted(n for n in names if n not in KNOB_ORDER)
        return known[:-1] + extra + known[-1:] if known and known[-1] == "run" else known + extra

    @staticmethod
    def read(name: str) -> str:
        """A knob's value as text, advisor_mode's the selected word ("[none] scan-time": none)."""
        text = _read(name)
        if name == "advisor_mode":
            return next((w.strip("[]") for w in text.split() if w.startswith("[")), text)
        return text

    @staticmethod
    def snapshot() -> dict[str, str]:
        """Current value of every writable knob, as text (advisor_mode as "none"/"scan-time")."""
        return {n: KsmKnobs.read(n) for n in KsmKnobs.writable()}

    def __enter__(self) -> KsmKnobs:
        self._lock = _global_lock()
        self._lock.__enter__()
        self.saved = self.snapshot()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.restore()
        finally:
            self._lock.__exit__(None, None, None)

    def restore(self) -> None:
        """Put every knob back to the snapshot; raise the first error after trying them all."""
        errors: list[BaseException] = []

        def attempt(name: str, value: str, write: Callable[[str, str], None] = _write) -> None:
            try:
                write(name, value)
            except OSError as e:
                errors.append(OSError(e.errno, f"restoring {name}={value}: {e.strerror}"))

        saved = self.saved
        attempt("run", "0")
        for n in _NEEDS_UNMERGE:
            if n in saved and self.read(n) != saved[n]:
                attempt(n, saved[n], _write_unmerged)
        for n in self.writable():
            if n in _NEEDS_UNMERGE or n == "run" or n not in saved:
                continue
            if n == "pages_to_scan" and saved.get("advisor_mode", "none") != "none":
                continue  # advisor-managed: writes give EINVAL
            if self.read(n) != saved[n]:
                attempt(n, saved[n])
        if saved.get("run", "0") != "0":
            attempt("run", saved["run"])
        if errors:
            raise errors[0]

    def write(self, name: str, value: object) -> None:
        """One raw write; the kernel's refusal comes back as OSError."""
        _write(name, value)

    def set(self, **knobs: object) -> None:
        """Write knobs in a safe order: advisor_mode first; max_page_sharing and
        merge_across_nodes, if they change, after an unmerge (run 0 -> 2 -> 0; run then stays
        0); run last. None values are ignored."""
        knobs = {k: v for k, v in knobs.items() if v is not None}
        unknown = set(knobs) - set(self.writable())
        if unknown:
            raise KeyError(f"not a writable KSM knob here: {sorted(unknown)}")
        for n in _NEEDS_UNMERGE:
            if n in knobs and self.read(n) != str(knobs[n]):
                _write_unmerged(n, knobs[n])
        for n in KsmKnobs.writable():
            if n in knobs and n not in _NEEDS_UNMERGE and n != "run":
                _write(n, knobs[n])
        if "run" in knobs:
            _write("run", knobs["run"])


# --------------------------------------------------------------------------- ksmd

_ksmd_pid_cache: int | None = None


def _ksmd_pid() -> int | None:
    global _ksmd_pid_cache
    if _ksmd_pid_cache is not None and os.path.exists(f"/proc/{_ksmd_pid_cache}"):
        return _ksmd_pid_cache
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == "ksmd":
                        _ksmd_pid_cache = int(entry)
                        return _ksmd_pid_cache
            except OSError:
                continue
    return None


def _ksmd_parked() -> bool:
    """ksmd sleeps in one of ksm_scan_thread()'s two waits (state S, wchan ksm_scan_thread)."""
    pid = _ksmd_pid()
    if pid is None:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/wchan") as f:
            wchan = f.read().strip()
    except OSError:
        return True
    if wchan in ("", "0"):  # no wchan support: state alone
        return state in ("S", "I")
    return state in ("S", "I") and wchan == "ksm_scan_thread"


def _progress() -> tuple[int, int]:
    """(full_scans, pages_scanned): what moves when ksmd runs a batch."""
    return int(_read("full_scans")), int(_read("pages_scanned"))


class LiveKsmd:
    """The live ksmd, driven one full scan or one batch at a time over the pages of worker
    processes (see the module docstring), behind the simulated ksmd and sysfs API that
    ``ksmbook.scenario.Runner`` calls (``batch()``, ``full_scans(n)``, ``counters()``,
    ``write(name, value)`` as sysfs).

    Use through ``session()``: ``ksmd.spawn(contents)`` registers a worker's pages, then
    ``scan(n)``; or, after ``stepping(n)``, the statements ``ksmd batch``, ``ksmd scan N`` and
    ``sysfs`` (``ksmbook.live.replay(..., ksmd=True)``). For them ``run`` is kept here, as the
    simulated kernel keeps it, and ksmd is only woken by a statement: ``run=1`` makes the next
    batch run, ``run=0`` keeps ksmd parked, ``run=2`` unmerges everything. sleep_millisecs is
    checked but never written (ksmd stays parked between statements); every other knob is
    written as the statement says (the session restores them all).
    """

    def __init__(self, knobs: KsmKnobs, *, timeout: float = 120.0) -> None:
        self.knobs = knobs
        self.timeout = timeout
        self.live = LiveSession(timeout=timeout)
        #: The workers as processes (``ksmbook.live.LiveTask``: the simulator's Process API).
        self.kernel = LiveKernel(self.live)
        self.base: dict[str, int] = {}
        self.keeper: LiveTask | None = None
        self._drain_at = 0
        self._budget = _BIG_BUDGET
        self._park = PARK_MS
        self.tracing = False
        self.batches = 0
        #: No traces: the real ksmd does not say what it did.
        self.log: list[Trace] = []
        self.run = 0

    def reset(self) -> None:
        """run 0 -> 2 -> 0: unmerge all, free every rmap_item, full_scans 0, cursor at head;
        advisor off, pages_to_scan huge, sleep_millisecs parked."""
        _unmerge_all()
        self.knobs.set(advisor_mode="none")
        _write("pages_to_scan", _BIG_BUDGET)
        self._park = PARK_MS if int(_read("sleep_millisecs")) != PARK_MS else PARK_MS + 1
        _write("sleep_millisecs", self._park)

    def stepping(self, pages_to_scan: int) -> LiveTask:
        """Prepare batch stepping: pages_to_scan = N for every batch, and the keeper worker
        (registered now, so call this before spawning the others): one untouched mergeable
        page keeps ksmd's list non-empty, one private written page serves ``drain()``.
        Returns the keeper."""
        self.set_budget(pages_to_scan)
        keeper = self.spawn([None])
        self._drain_at = map_pages(keeper, [1], madvise=False)
        self.keeper = keeper
        return keeper

    def set_budget(self, pages_to_scan: int) -> None:
        """pages_to_scan for the following batches (written while ksmd sleeps)."""
        self._budget = pages_to_scan
        _write("pages_to_scan", pages_to_scan)

    def drain(self) -> None:
        """Drain every CPU's LRU caches (move_pages() on the keeper's private page)."""
        if self.keeper is not None:
            self.keeper.drain(self._drain_at)

    def _wait_parked(self, deadline: float) -> None:
        while not _ksmd_parked():
            if time.monotonic() > deadline:
                raise TimeoutError("ksmd did not go back to sleep")
            time.sleep(0.0005)

    def _go(self) -> None:
        self._park = PARK_MS + 1 if self._park == PARK_MS else PARK_MS
        _write("sleep_millisecs", self._park)  # wakes the timed wait (ksm_iter_wait)
        if _read("run") != "1":
            _write("run", 1)  # wakes the idle wait (ksm_thread_wait)

    def _one_batch(self, deadline: float,
                   done: Callable[[tuple[int, int], tuple[int, int]], bool]) -> None:
        """Wake ksmd once and wait until ``done(before, now)`` holds and ksmd is parked."""
        self._wait_parked(deadline)
        before = _progress()
        self._go()
        parked_since: float | None = None
        delay = 0.0002
        while not done(before, _progress()):
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"ksmd made no progress in {self.timeout} s")
            if _ksmd_parked():  # still (or again) asleep and no progress
                parked_since = parked_since or now
                if now - parked_since > 0.3:
                    if not mergeable_mms():
                        raise KsmdIdle("no mm is registered with KSM: ksmd has nothing "
                                       "to scan and full_scans stays")
                    self._go()  # a wake-up lost to the race in the module docstring
                    parked_since = None
            else:
                parked_since = None
            time.sleep(delay)
            delay = min(delay * 1.5, 0.005)
        self._wait_parked(deadline)

    def scan(self, n: int = 1) -> dict[str, int]:
        """Let ksmd make exactly *n* more full scans; return the counters after the last one,
        relative to ``base``."""
        if self._budget != _BIG_BUDGET:
            _write("pages_to_scan", _BIG_BUDGET)
        try:
            for _ in range(n):
                self._one_batch(time.monotonic() + self.timeout, lambda b, now: now[0] > b[0])
        finally:
            if self._budget != _BIG_BUDGET:
                _write("pages_to_scan", self._budget)
        return self.counters()

    def batch(self) -> BatchReport:
        """One wake-up: if run is 1, exactly one batch of ksm_do_scan(pages_to_scan)
        (``stepping(n)`` set the budget), over when pages_scanned grew by N or full_scans grew
        (a pass end ends a batch early); every CPU's LRU caches are drained first."""
        self.batches += 1
        if self.run != 1:
            return BatchReport(self.batches, False, 0, 0, False, 0.0, None)
        before, n = self.counters(), self._budget
        self.drain()
        self._one_batch(time.monotonic() + self.timeout,
                        lambda b, now: now[0] > b[0] or now[1] >= b[1] + n)
        after = self.counters()
        return BatchReport(self.batches, True, after["pages_scanned"] - before["pages_scanned"],
                           after["pages_skipped"] - before["pages_skipped"],
                           after["full_scans"] > before["full_scans"], 0.0, None)

    def full_scans(self, n: int = 1) -> dict[str, int]:
        """n more full scans (the rest of the current pass counts as one), for a statement."""
        if self.run != 1:
            raise KsmdIdle("run is not 1: ksmd only waits and no full scan ends")
        self.batches += n
        return self.scan(n)

    def run_for(self, ms: float) -> list[BatchReport]:
        raise LiveRefused(f"ksmd run {ms}: the live ksmd is stepped by batches and full scans, "
                          "not by time")

    def write(self, name: str, value: int | str) -> int:
        """echo VALUE > /sys/kernel/mm/ksm/NAME, as the simulated sysfs takes it."""
        text = str(value).strip()
        if name == "run":
            if text not in ("0", "1", "2"):
                raise OSError(_errno.EINVAL, f"writing {text!r} to {KSM_DIR}/run")
            if text == "2" and self.run != 2:
                _write("run", 0)
                _write("run", 2)
            elif text != "2" and self.run == 2:
                _write("run", 0)
            self.run = int(text)
        elif name == "pages_to_scan":
            self.set_budget(_uint(name, text))
        elif name == "sleep_millisecs":
            _uint(name, text)
        else:
            _write(name, text)
        return len(text)

    @property
    def pages_scanned(self) -> int:
        """pages_scanned of /sys/kernel/mm/ksm, relative to the reset."""
        return self.counters()["pages_scanned"]

    def foreign_mms(self, own: Sequence[int]) -> list[int]:
        """PIDs registered with KSM now other than `own` and this session's workers: ksmd
        scans their pages too, and the global counters count them."""
        return mergeable_mms(exclude=[*own, *(p.worker.pid for p in self.live_processes())])

    def stop(self) -> None:
        """run=0 (ksmd stays asleep; counters keep their values)."""
        _write("run", 0)

    def counters(self) -> dict[str, int]:
        """Counters now, relative to ``base`` (the reset)."""
        return _relative(read_counters(), self.base)

    def live_processes(self) -> list[LiveTask]:
        """This session's workers still running, forked children included."""
        return [p for p in self.kernel.processes if p.alive]

    def spawn(self, contents: Sequence[int | str | None] | None = None, *,
              madvise: bool = True) -> LiveTask:
        """A new worker (ended with this session), optionally mapping *contents*
        (``map_pages``)."""
        p = self.kernel.spawn()
        if contents is not None:
            map_pages(p, contents, madvise=madvise)
        return p

    def close(self) -> None:
        """Stop ksmd, end the workers, unmerge everything (run 0 -> 2 -> 0)."""
        with contextlib.suppress(OSError):
            _write("run", 0)
        self.live.close()
        self.kernel.processes.clear()
        self.keeper = None
        _unmerge_all()


# --------------------------------------------------------------------------- worker processes

def map_pages(task: LiveTask, contents: Sequence[int | str | None], *,
              madvise: bool = True) -> int:
    """mmap a private anonymous area in *task*, give each page its content (``LiveTask.fill``:
    an int, "read" or None), then (by default) madvise(MADV_MERGEABLE); returns its address."""
    length = len(contents) * PAGE_SIZE
    addr = task.mmap(length, PROT.PROT_READ | PROT.PROT_WRITE, MAP.MAP_PRIVATE | MAP.MAP_ANONYMOUS)
    task.fill(addr, contents)
    if madvise:
        task.madvise(addr, length, MADV.MADV_MERGEABLE)
    return addr


# --------------------------------------------------------------------------- experiments

@contextlib.contextmanager
def session(*, timeout: float = 300.0, **knobs: object) -> Iterator[LiveKsmd]:
    """A clean live-ksmd experiment: knobs snapshotted (``KsmKnobs``), ksmd reset (run 0 -> 2
    -> 0), the given knobs set (None = leave), then yield a ``LiveKsmd``; create workers with
    ``ksmd.spawn(contents)`` and step with ``ksmd.scan(n)``. On exit the workers exit, a final
    run=2 leaves no KSM state behind, and every knob is restored, also after an exception.

    ``with session(smart_scan=0) as ksmd: p = ksmd.spawn([1, 1, 2]); c = ksmd.scan(2)``
    """
    with KsmKnobs() as k:
        ksmd = LiveKsmd(k, timeout=timeout)
        try:
            ksmd.reset()
            k.set(**knobs)
            ksmd.base = read_counters()
            yield ksmd
        finally:
            ksmd.close()


def contamination(counters: dict[str, Any], stats: Sequence[dict[str, Any]]) -> str:
    """"" when the global counters (relative to the reset) are exactly the sums over the
    processes' /proc/PID/ksm_stat, else what differs: pages of another process (or of one that
    exited and ksmd has not cleaned up yet) are being counted."""
    glob = {
        "rmap_items": counters["pages_shared"] + counters["pages_sharing"]
        + counters["pages_unshared"] + counters["pages_volatile"],
        "merging_pages": counters["pages_shared"] + counters["pages_sharing"],
        "zero_pages": counters.get("ksm_zero_pages", 0),
    }
    mine = {k: sum(s.get(f"ksm_{k}", 0) for s in stats) for k in glob}
    return "; ".join(f"{k}: global {glob[k]} != the processes' {mine[k]}"
                     for k in mine if mine[k] != glob[k])


def _relative(counters: dict[str, int], base: dict[str, int]) -> dict[str, int]:
    """Counters with what the reset did not clear taken out: pages_scanned and pages_skipped
    are never reset, and ksm_zero_pages can carry KSM zero pages that no process owns (6.18's
    ksm_fork() counts a parent's zero pages in VM_DONTCOPY areas for the child too, and
    nothing takes them off again), which also shifts general_profit."""
    out = dict(counters)
    for name in ("pages_scanned", "pages_skipped", "ksm_zero_pages"):
        if name in counters:
            out[name] = counters[name] - base.get(name, 0)
    if "general_profit" in counters:
        out["general_profit"] -= base.get("ksm_zero_pages", 0) * PAGE_SIZE
    return out


def time_scans(contents: Sequence[Any], *, scans: int = 3, pages_to_scan: int = 100_000,
               sleep_millisecs: int = 0, smart_scan: int | None = None,
               timeout: float = 600.0) -> dict[str, Any]:
    """Wall time of *scans* full scans of *contents* (one worker) with ksmd running freely (not
    parked between batches) at the given pages_to_scan / sleep_millisecs, in a ``session``
    (the lock, every knob restored, ksmd reset first, run=0 at its end). Returns {"elapsed",
    "scan_ends" (seconds from run=1 to each full_scans step), "pages"}."""
    with session(timeout=timeout, advisor_mode="none", smart_scan=smart_scan) as ksmd:
        ksmd.spawn(list(contents))
        deadline = time.monotonic() + timeout
        _write("pages_to_scan", pages_to_scan)
        start = _progress()[0]
        ends: list[float] = []
        t0 = time.monotonic()
        _write("sleep_millisecs", sleep_millisecs)  # also ends a parked (timed) sleep
        _write("run", 1)
        while len(ends) < scans:
            done = _progress()[0] - start
            if done > len(ends):
                ends.extend([time.monotonic() - t0] * (min(done, scans) - len(ends)))
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"{scans} full scans took more than {timeout} s")
            time.sleep(0.0005)
    return {"elapsed": ends[-1], "scan_ends": ends, "pages": len(contents)}
