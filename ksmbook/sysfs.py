"""/sys/kernel/mm/ksm of the simulated kernel: the knobs and counters of ksmd (mm/ksm.c,
the *_show() / *_store() functions of its sysfs attribute group).

``k.sysfs["run"] = 1`` writes a knob as ``echo 1 > /sys/kernel/mm/ksm/run`` would: the value
is turned into text and parsed by the kernel's own rules, and a refused write raises OSError
with the kernel's errno (EINVAL, ERANGE, EBUSY; EACCES for a read-only counter, as opening it
for writing gives even to root). ``k.sysfs["pages_sharing"]`` reads a file as an int
(advisor_mode as its text). ``k.sysfs.read(name)`` gives the file's exact text.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from .constants import ULONG_MAX
from .ksm import KSM_RUN_UNMERGE, KsmState
from .profiles import KsmNumberParser
from .trace import Trace

if TYPE_CHECKING:
    from .kernel import Kernel
    from .ksmd import Ksmd

__all__ = ["KsmSysfs", "KSM_DIR"]

KSM_DIR = "/sys/kernel/mm/ksm"
_UINT_MAX = (1 << 32) - 1
_INT_MAX = (1 << 31) - 1


#: The knobs whose *_store() only parses the value and stores it, and how it parses:
#: sleep_millisecs_store(), stable_node_chains_prune_millisecs_store(), max_kernel_pages_store()
#: (0 means no limit; 2.6.32 only, gone in 2.6.33 "ksm: remove unswappable max_kernel_pages"),
#: advisor_{min,max}_pages_to_scan_store(); use_zero_pages_store() and smart_scan_store() take
#: kstrtobool(). Every other knob has its own _store_<name>() below.
_PLAIN_STORES = {
    "sleep_millisecs": "uint", "stable_node_chains_prune_millisecs": "uint",
    "max_kernel_pages": "ulong", "advisor_min_pages_to_scan": "ulong",
    "advisor_max_pages_to_scan": "ulong", "use_zero_pages": "bool", "smart_scan": "bool",
}


class _Refused(Exception):
    def __init__(self, err: int) -> None:
        self.err = err


def _digits(text: str) -> int:
    """Decimal digits and at most one trailing newline, else EINVAL."""
    digits = text[:-1] if text.endswith("\n") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        raise _Refused(errno.EINVAL)
    return int(digits)


def _parse_ull(s: str) -> int:
    """_kstrtoull(s, 10): decimal digits and one optional trailing newline."""
    value = _digits(s)
    if value > ULONG_MAX:
        raise _Refused(errno.ERANGE)
    return value


def _kstrtoull(text: str) -> int:
    """kstrtoull(s, 10): an optional "+", then as _kstrtoull()."""
    return _parse_ull(text[1:] if text.startswith("+") else text)


def _kstrtouint(text: str) -> int:
    value = _kstrtoull(text)
    if value > _UINT_MAX:
        raise _Refused(errno.ERANGE)
    return value


def _kstrtoint(text: str) -> int:
    if text.startswith("-"):
        value = _parse_ull(text[1:])
        if value > _INT_MAX + 1:
            raise _Refused(errno.ERANGE)
        return -value
    value = _kstrtoull(text)
    if value > _INT_MAX:
        raise _Refused(errno.ERANGE)
    return value


def _kstrtobool(text: str) -> bool:
    """kstrtobool(): y/Y/t/T/1 and on -> true; n/N/f/F/0 and off -> false (first letters)."""
    first = text[:1]
    if first in ("o", "O"):  # "on" or "off": the second letter decides
        first = {"n": "1", "N": "1", "f": "0", "F": "0"}.get(text[1:2], "")
    if first in ("y", "Y", "t", "T", "1"):
        return True
    if first in ("n", "N", "f", "F", "0"):
        return False
    raise _Refused(errno.EINVAL)


def _strict_strtoul(text: str) -> int:
    """2.6.32 strict_strtoul(s, 10): decimal digits and at most one trailing newline (the
    value wraps at 2**64 as simple_strtoul() does)."""
    return _digits(text) & ULONG_MAX


def _sysfs_streq(a: str, b: str) -> bool:
    """sysfs_streq(): equal but for one trailing newline on either side."""
    return a.removesuffix("\n") == b.removesuffix("\n")


class KsmSysfs(Mapping[str, int | str]):
    """/sys/kernel/mm/ksm: a mapping from file name to value; assignment writes a knob."""

    def __init__(self, kernel: Kernel, ksmd: Ksmd) -> None:
        self.kernel = kernel
        self.ksmd = ksmd
        self.ks: KsmState = kernel.ksm
        p = kernel.profile
        self._knobs = tuple(p.ksm_knobs)
        self._counters = p.ksm_counters
        self._names = tuple(sorted(self._knobs + self._counters))
        self.last_trace: Trace | None = None

    # -- reading ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __getitem__(self, name: str) -> int | str:
        if name in self._counters:
            return self.ksmd.counters()[name]
        if name in self._knobs:
            value = self.ks.knobs[name]
            if name == "advisor_mode":
                return "none [scan-time]" if value == "scan-time" else "[none] scan-time"
            return int(value)
        raise KeyError(name)

    def _file(self, name: str) -> str:
        """`name` if the file exists, else FileNotFoundError as open() gives."""
        if name not in self._names:
            raise FileNotFoundError(errno.ENOENT, f"No such file or directory: {KSM_DIR}/{name}")
        return name

    def read(self, name: str) -> str:
        """The text of the file, as cat prints it."""
        return f"{self[self._file(name)]}\n"

    def mode(self, name: str) -> int:
        """The file's permission bits: 0644 for a knob, 0444 for a counter, owned by root
        (v2.6.32 mm/ksm.c KSM_ATTR() "__ATTR(_name, 0644, ...)" and KSM_ATTR_RO(); 6.18 the
        same). Only root may write a knob; opening one for writing as any other user gives
        EACCES (generic_permission())."""
        return 0o444 if self._file(name) in self._counters else 0o644

    def knobs(self) -> dict[str, int | str]:
        """The writable files and their values."""
        return {n: self[n] for n in self._names if n in self._knobs}

    def counters(self) -> dict[str, int]:
        """The read-only files (the counters) and their values."""
        return self.ksmd.counters()

    def __repr__(self) -> str:
        return "\n".join(f"{KSM_DIR}/{n}:{self[n]}" for n in self._names)

    # -- writing ---------------------------------------------------------------------------

    def __setitem__(self, name: str, value: int | str) -> None:
        self.write(name, value)

    def write(self, name: str, value: int | str, *, uid: int = 0) -> int:
        """Write `value` (an int, or the exact text) to the file; returns the bytes written.

        Raises FileNotFoundError for an unknown file, PermissionError (EACCES) for a counter,
        OSError with the store function's errno for a refused value. Writing nothing ("")
        calls no store function and changes nothing, as on the live kernel. One write keeps
        at most ``profile.sysfs_write_max`` bytes (4095 in 2.6.32, 4096 since kernfs) and
        returns how many it kept; the value is parsed up to the first NUL byte. `uid` is the
        writer's: only root (0) may open a knob for writing (`mode`).
        """
        self._file(name)
        if uid != 0:
            raise PermissionError(errno.EACCES, f"{os.strerror(errno.EACCES)}: {KSM_DIR}/{name} "
                                  f"is mode {self.mode(name):04o}, owned by root")
        if name in self._counters:
            raise PermissionError(errno.EACCES, f"{os.strerror(errno.EACCES)}: {KSM_DIR}/{name} "
                                  "is read-only")
        if isinstance(value, int):
            text = str(int(value))
        elif isinstance(value, str):
            text = value
        else:
            raise TypeError(f"write an int or a str, not {type(value).__name__}")
        data = text.encode()
        # v2.6.32 fs/sysfs/file.c fill_write_buffer() 175-176 keeps PAGE_SIZE - 1 bytes of one
        # write, 6.x kernfs_fop_write_iter() PAGE_SIZE; the store function gets that count and
        # returns it, so a longer write is a short write.
        count = min(len(data), self.kernel.profile.sysfs_write_max)
        if not count:
            return 0
        # Both NUL-terminate the buffer after the bytes kept (v2.6.32 fill_write_buffer() 181)
        # and the parsers stop at the first NUL (strict_strtoul()'s strlen(), kstrtox's end
        # of string), so "1\0junk" is read as "1".
        parsed = data[:count].split(b"\0", 1)[0].decode(errors="replace")
        try:
            kind = _PLAIN_STORES.get(name)
            if kind is None:
                getattr(self, f"_store_{name}")(parsed)
            elif kind == "bool":
                self.ks.knobs[name] = int(_kstrtobool(parsed))
            else:
                self.ks.knobs[name] = self._number_or_einval(parsed, kind)
        except _Refused as e:
            raise OSError(e.err, f"{os.strerror(e.err)}: writing {text!r} to "
                          f"{KSM_DIR}/{name}") from None
        return count

    def _number(self, text: str, kind: str = "uint") -> int:
        """Parse as the profile's kernel does; the store functions map errors to errnos."""
        # v2.6.32 mm/ksm.c *_store(): strict_strtoul(); 6.12: kstrtouint() and kstrtoul().
        if self.kernel.profile.ksm_number_parser is KsmNumberParser.STRICT_STRTOUL:
            value = _strict_strtoul(text)
            if kind == "uint" and value > _UINT_MAX:
                raise _Refused(errno.EINVAL)
            return value
        if kind == "uint":
            return _kstrtouint(text)
        if kind == "int":
            return _kstrtoint(text)
        return _kstrtoull(text)

    def _number_or_einval(self, text: str, kind: str) -> int:
        try:
            return self._number(text, kind)
        except _Refused:
            raise _Refused(errno.EINVAL) from None

    def _store_pages_to_scan(self, text: str) -> None:
        """pages_to_scan_store(): refused while the scan-time advisor sets it."""
        if self.kernel.profile.scan_time_advisor and self.ks.knobs["advisor_mode"] != "none":
            raise _Refused(errno.EINVAL)
        self.ks.knobs["pages_to_scan"] = self._number_or_einval(text, "uint")

    def _store_run(self, text: str) -> None:
        """run_store(): 0 stop, 1 merge, 2 unmerge everything (only on a change of value)."""
        flags = self._number_or_einval(text, "uint")
        if flags > KSM_RUN_UNMERGE:
            raise _Refused(errno.EINVAL)
        ks = self.ks
        if ks.knobs["run"] == flags:
            return
        ks.knobs["run"] = flags
        if flags & KSM_RUN_UNMERGE:
            tr = Trace("write 2 > /sys/kernel/mm/ksm/run", 0)
            with tr.enter("unmerge_and_remove_all_rmap_items"):
                err = self.ksmd.unmerge_and_remove_all_rmap_items(tr)
            tr.result = err
            self.last_trace = tr
            if err:
                ks.knobs["run"] = 0
                raise _Refused(-err if err != -512 else errno.EINTR)

    def _needs_no_ksm_pages(self, name: str, value: int) -> None:
        """The EBUSY rule of max_page_sharing / merge_across_nodes: a change needs every
        stable node gone (remove_all_stable_nodes())."""
        ks = self.ks
        if ks.knobs[name] == value:
            return
        if ks.pages_shared or self.ksmd.remove_all_stable_nodes():
            raise _Refused(errno.EBUSY)
        ks.knobs[name] = value

    def _store_merge_across_nodes(self, text: str) -> None:
        """merge_across_nodes_store() (one NUMA node here: both values merge alike)."""
        knob = self._number(text, "ulong")
        if knob > 1:
            raise _Refused(errno.EINVAL)
        self._needs_no_ksm_pages("merge_across_nodes", knob)

    def _store_max_page_sharing(self, text: str) -> None:
        """max_page_sharing_store(): at least 2."""
        knob = self._number(text, "int")
        if knob < 2:
            raise _Refused(errno.EINVAL)
        self._needs_no_ksm_pages("max_page_sharing", knob)

    def _store_advisor_mode(self, text: str) -> None:
        """advisor_mode_store(): "none" or "scan-time"; a change resets pages_to_scan
        (set_advisor_defaults())."""
        ks = self.ks
        if _sysfs_streq("scan-time", text):
            mode = "scan-time"
        elif _sysfs_streq("none", text):
            mode = "none"
        else:
            raise _Refused(errno.EINVAL)
        if ks.knobs["advisor_mode"] == mode:
            return
        ks.knobs["advisor_mode"] = mode
        if mode == "none":
            ks.knobs["pages_to_scan"] = 100
        else:
            ks.advisor_scan_time = 0
            ks.advisor_change = 0
            ks.advisor_cpu_ms = 0
            ks.advisor_start = 0
            ks.knobs["pages_to_scan"] = int(ks.knobs["advisor_min_pages_to_scan"])

    def _store_advisor_max_cpu(self, text: str) -> None:
        self.ks.knobs["advisor_max_cpu"] = self._number_or_einval(text, "ulong") & _UINT_MAX

    def _store_advisor_target_scan_time(self, text: str) -> None:
        value = self._number_or_einval(text, "ulong")
        if value < 1:
            raise _Refused(errno.EINVAL)
        self.ks.knobs["advisor_target_scan_time"] = value
