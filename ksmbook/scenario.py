"""A small text language for what a reader can do to a kernel, its parser, printer and runner.

    kernel modern ksm=y
    file data.bin 16p
    map A 8p rw private anon
    write A 7 7 9                    # page contents, one number per page (0: all zeros)
    madvise A+2p 4p MERGEABLE        # addresses: a label, plus/minus pages (p) or bytes
    map B 4p r private file=data.bin offset=2p
    fork child
    child: madvise A 8p UNMERGEABLE
    child: exit
    spawn p2
    p2: map C 2p rw private anon
    p2: prctl PR_SET_MEMORY_MERGE 1
    sysfs run=1                      # echo 1 > /sys/kernel/mm/ksm/run
    ksmd scan 2                      # ksmd runs until two more full scans have ended
    p1: read A+1p

One statement per line; ``#`` starts a comment.

Set-up: ``kernel PROFILE [ksm=y|n]`` (the kernel to boot), ``sysctl NAME=VALUE``
(max_map_count, nr_hugepages), ``file NAME SIZE [tmpfs|ext4] [ro]``, ``device NAME STYLE``,
``inject POINT [TIMES]`` (make the next passes through a fault point fail), ``reclaim``
(memory pressure: the pages MADV_FREE left clean are freed).

Processes: ``spawn NAME`` starts a process with an empty address space; the first process,
p1, starts by itself when a statement names it. A statement for a process starts with its
name and a colon (``child: exit``); without one it is p1's. System calls: ``map LABEL LEN
PROT private|shared anon|hugetlb|file=NAME|device=NAME [at ADDR] [fixed] [noreplace]
[noreserve] [locked] [growsdown] [offset=LEN]`` (mmap; the address it returns gets the label),
``munmap ADDR LEN``, ``mremap ADDR OLD_LEN NEW_LEN [maymove] [fixed] [at ADDR] [dontunmap]
[flags=N]`` (the new address; a bare label as ADDR follows the mapping), ``mprotect ADDR LEN
PROT``, ``madvise ADDR LEN ADVICE``, ``fork CHILD``,
``exit``, ``prctl OPTION [ARG2 [ARG3 [ARG4 [ARG5]]]]`` (PR_SET_MEMORY_MERGE,
PR_GET_MEMORY_MERGE). Memory: ``write ADDR V...`` writes one page per value from ADDR on,
``read ADDR`` reads the content of one page.

ksmd and /sys/kernel/mm/ksm (kernels with ksmd): ``ksmd batch [N]`` (N wake-ups of ksmd, 1 if
left out), ``ksmd scan N`` (batches until N more full scans have ended), ``ksmd run MS``
(the thread runs for MS milliseconds of simulated time), ``sysfs NAME=VALUE`` (the exact text
written to the file).

Lengths: 4096, 0x1000, 4p, 16k, 2M; a negative length wraps to 2**64 minus it, as in C (-1 is
2**64-1). Protections: none, r, rw, rx, rwx. Advice: MERGEABLE, MADV_MERGEABLE or 12.

`parse` turns text into a `Scenario` of typed statements (one dataclass per statement) and
reports errors with line and column; `format_scenario` prints the canonical text, and
parse(format_scenario(s)) == s. `Runner` runs statements one at a time on a kernel: a system
call the kernel refuses gives its -errno as the result; a statement that names what does not
exist, or asks ksmd of a kernel without one, raises ScenarioError.
"""

from __future__ import annotations

import difflib
import errno
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import ClassVar, Generic, TypeVar

from .backend import FileBackend, KernelBackend, ProcessBackend
from .constants import MADV, MAP, MREMAP, PAGE_SIZE, PROT, ULONG_MAX
from .kernel import DRIVER_STYLES, FAULT_POINTS, Kernel
from .ksm import PR_GET_MEMORY_MERGE, PR_SET_MEMORY_MERGE
from .ksmd import BatchReport, KsmdIdle, KsmdUnavailable
from .procfs import MapEntry
from .profiles import PROFILES
from .trace import Trace, errno_name

__all__ = ["Addr", "Statement", "Boot", "Sysctl", "CreateFile", "CreateDevice", "Inject", "Reclaim",
           "Spawn", "Map", "Munmap", "Mremap", "Mprotect", "Madvise", "Write", "Read", "Fork",
           "Exit", "Prctl", "KsmdBatch", "KsmdScans", "KsmdRun", "SysfsWrite", "Runner", "Scenario",
           "ScenarioError", "StepResult", "SETUP", "process_of", "parse", "format_scenario",
           "run", "boot"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_UNITS = {"p": PAGE_SIZE, "k": 1024, "K": 1024, "M": 1 << 20, "G": 1 << 30}
_SYSCTLS = ("max_map_count", "nr_hugepages")
_PRCTLS = {"PR_SET_MEMORY_MERGE": PR_SET_MEMORY_MERGE, "PR_GET_MEMORY_MERGE": PR_GET_MEMORY_MERGE}
#: Every file of /sys/kernel/mm/ksm some kernel has (which ones exist depends on the kernel).
_SYSFS_NAMES = tuple(sorted({n for p in PROFILES.values()
                             for n in (*p.ksm_knobs, *p.ksm_counters)}))
_MAP_OPTIONS = ("fixed", "noreplace", "noreserve", "locked", "growsdown")
_MREMAP_WORDS = (("maymove", int(MREMAP.MREMAP_MAYMOVE)), ("fixed", int(MREMAP.MREMAP_FIXED)),
                 ("dontunmap", int(MREMAP.MREMAP_DONTUNMAP)))


class ScenarioError(ValueError):
    """A scenario that does not parse, or refers to what does not exist; says where."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.line, self.column, self.message = line, column, message


@dataclass(frozen=True)
class Addr:
    """An address: a label plus a byte offset, or a number (label None)."""

    label: str | None
    offset: int

    def __str__(self) -> str:
        if self.label is None:
            return f"{self.offset:#x}"
        if self.offset == 0:
            return self.label
        sign = "+" if self.offset > 0 else "-"
        return f"{self.label}{sign}{_length_text(abs(self.offset))}"


def _length_text(n: int) -> str:
    if n > ULONG_MAX // 2:  # a negative length as written, wrapped as in C
        return "-" + _length_text(ULONG_MAX + 1 - n)
    if n and n % PAGE_SIZE == 0:
        return f"{n // PAGE_SIZE}p"
    return str(n)


def _prot_text(prot: int) -> str:
    letters = "".join(c for c, bit in (("r", PROT.PROT_READ), ("w", PROT.PROT_WRITE),
                                       ("x", PROT.PROT_EXEC)) if prot & bit)
    return letters or "none"


def _advice_text(advice: int) -> str:
    try:
        return (MADV(advice).name or "").removeprefix("MADV_")
    except ValueError:
        return str(advice)


#: How a plain statement prints its int fields, by field name (the others: str()).
_TEXT: dict[str, Callable[[int], str]] = {
    "length": _length_text, "prot": _prot_text, "advice": _advice_text}


def _on(proc: str, body: str) -> str:
    return body if proc == "p1" else f"{proc}: {body}"


# -- the statements -----------------------------------------------------------------------
# Each prints as its canonical line: its keyword and its fields in order, each as its name says
# (`_TEXT`; str() for the others), unless the statement says otherwise.

@dataclass(frozen=True)
class _Statement:
    """What every statement has: its keyword and the line it was parsed from."""

    keyword: ClassVar[str]
    not_args: ClassVar[tuple[str, ...]] = ("line",)
    #: The line a statement was parsed from (0: made in code); not part of equality.
    line: int = field(default=0, compare=False, kw_only=True)

    @classmethod
    def arg_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name not in cls.not_args]

    def __str__(self) -> str:
        return " ".join([self.keyword, *(_TEXT.get(name, str)(getattr(self, name))
                                         for name in self.arg_names())])


@dataclass(frozen=True)
class _Call(_Statement):
    """A statement that process `proc` runs: ``[PROC:] KEYWORD ARG...``. A plain one parses
    its fields in order, each as its name says (`_READ`)."""

    not_args = ("line", "proc")
    proc: str

    def __str__(self) -> str:
        return _on(self.proc, super().__str__())


@dataclass(frozen=True)
class Boot(_Statement):
    """``kernel PROFILE ksm=y|n``: the kernel the scenario runs on."""

    profile: str = "seed"
    ksm: bool = True

    def __str__(self) -> str:
        return f"kernel {self.profile} ksm={'y' if self.ksm else 'n'}"


@dataclass(frozen=True)
class Sysctl(_Statement):
    """``sysctl NAME=VALUE``: /proc/sys/vm/NAME."""

    name: str
    value: int

    def __str__(self) -> str:
        return f"sysctl {self.name}={self.value}"


@dataclass(frozen=True)
class CreateFile(_Statement):
    """``file NAME SIZE [tmpfs|ext4] [ro]``: a file to map (fs None: ext4)."""

    name: str
    size: int
    fs: str | None = None
    ro: bool = False

    def __str__(self) -> str:
        return (f"file {self.name} {_length_text(self.size)}" + (f" {self.fs}" if self.fs else "")
                + (" ro" if self.ro else ""))


@dataclass(frozen=True)
class CreateDevice(_Statement):
    """``device NAME STYLE``: a character device whose driver maps memory in STYLE."""

    keyword = "device"
    name: str
    style: str


@dataclass(frozen=True)
class Inject(_Statement):
    """``inject POINT [TIMES]``: the next TIMES passes through a fault point fail."""

    point: str
    times: int = 1

    def __str__(self) -> str:
        return f"inject {self.point}" + (f" {self.times}" if self.times != 1 else "")


@dataclass(frozen=True)
class Reclaim(_Statement):
    """``reclaim``: memory pressure; reclaim frees the pages MADV_FREE left clean (the result
    is how many page table entries went)."""

    keyword = "reclaim"


@dataclass(frozen=True)
class Spawn(_Statement):
    """``spawn NAME``: a new process with an empty address space."""

    keyword = "spawn"
    proc: str


@dataclass(frozen=True)
class Map(_Call):
    """``map LABEL LEN PROT private|shared BACKING [options]``: mmap(2). `backing` is anon,
    hugetlb, file or device; `source` names the file or device."""

    name: str
    length: int
    prot: int
    shared: bool = False
    backing: str = "anon"
    source: str | None = None
    at: Addr | None = None
    fixed: bool = False
    noreplace: bool = False
    noreserve: bool = False
    locked: bool = False
    growsdown: bool = False
    offset: int = 0

    def __str__(self) -> str:
        backing = self.backing if self.source is None else f"{self.backing}={self.source}"
        body = (f"map {self.name} {_length_text(self.length)} {_prot_text(self.prot)} "
                f"{'shared' if self.shared else 'private'} {backing}")
        if self.at is not None:
            body += f" at {self.at}"
        body += "".join(f" {opt}" for opt in _MAP_OPTIONS if getattr(self, opt))
        if self.offset:
            body += f" offset={_length_text(self.offset)}"
        return _on(self.proc, body)


@dataclass(frozen=True)
class Munmap(_Call):
    """``munmap ADDR LEN``: munmap(2)."""

    keyword = "munmap"
    addr: Addr
    length: int


@dataclass(frozen=True)
class Mremap(_Call):
    """``mremap ADDR OLD_LEN NEW_LEN [maymove] [fixed] [at ADDR] [dontunmap] [flags=N]``:
    mremap(2). `flags` holds the MREMAP_* bits (flags=N adds raw ones); `new_addr` is the
    ``at`` address (MREMAP_FIXED's target, or MREMAP_DONTUNMAP's hint)."""

    addr: Addr
    old_size: int
    new_size: int
    flags: int = 0
    new_addr: Addr | None = None

    def __str__(self) -> str:
        words = [f"mremap {self.addr} {_length_text(self.old_size)} "
                 f"{_length_text(self.new_size)}"]
        rest = self.flags
        for word, bit in _MREMAP_WORDS:
            if rest & bit:
                words.append(word)
                rest &= ~bit
            if word == "fixed" and self.new_addr is not None:
                words.append(f"at {self.new_addr}")
        if rest:
            words.append(f"flags={rest:#x}")
        return _on(self.proc, " ".join(words))


@dataclass(frozen=True)
class Mprotect(_Call):
    """``mprotect ADDR LEN PROT``: mprotect(2)."""

    keyword = "mprotect"
    addr: Addr
    length: int
    prot: int


@dataclass(frozen=True)
class Madvise(_Call):
    """``madvise ADDR LEN ADVICE``: madvise(2)."""

    keyword = "madvise"
    addr: Addr
    length: int
    advice: int


@dataclass(frozen=True)
class Write(_Call):
    """``write ADDR V...``: the process writes one page per value (0: an all-zero page)."""

    addr: Addr
    values: tuple[int, ...]

    def __str__(self) -> str:
        return _on(self.proc, f"write {self.addr} " + " ".join(str(v) for v in self.values))


@dataclass(frozen=True)
class Read(_Call):
    """``read ADDR``: the process reads one page; the result is its content."""

    keyword = "read"
    addr: Addr


@dataclass(frozen=True)
class Fork(_Call):
    """``fork CHILD``: fork(2); the child gets the name CHILD."""

    keyword = "fork"
    child: str


@dataclass(frozen=True)
class Exit(_Call):
    """``exit``: the process exits."""

    keyword = "exit"


@dataclass(frozen=True)
class Prctl(_Call):
    """``prctl OPTION [ARG2 ...]``: prctl(2), PR_SET_MEMORY_MERGE or PR_GET_MEMORY_MERGE."""

    option: int
    arg2: int = 0
    arg3: int = 0
    arg4: int = 0
    arg5: int = 0

    def __str__(self) -> str:
        name = next(n for n, v in _PRCTLS.items() if v == self.option)
        args = [self.arg2, self.arg3, self.arg4, self.arg5]
        while args and args[-1] == 0:
            args.pop()
        return _on(self.proc, " ".join(["prctl", name, *map(str, args)]))


@dataclass(frozen=True)
class KsmdBatch(_Statement):
    """``ksmd batch [N]``: N wake-ups of ksmd (ksm_do_scan(pages_to_scan), then sleep)."""

    count: int = 1

    def __str__(self) -> str:
        return "ksmd batch" + (f" {self.count}" if self.count != 1 else "")


@dataclass(frozen=True)
class KsmdScans(_Statement):
    """``ksmd scan N``: ksmd runs until N more full scans have ended."""

    keyword = "ksmd scan"
    count: int


@dataclass(frozen=True)
class KsmdRun(_Statement):
    """``ksmd run MS``: the thread runs for MS milliseconds of simulated time."""

    keyword = "ksmd run"
    ms: int


@dataclass(frozen=True)
class SysfsWrite(_Statement):
    """``sysfs NAME=VALUE``: echo VALUE > /sys/kernel/mm/ksm/NAME (the text as written)."""

    name: str
    value: str

    def __str__(self) -> str:
        return f"sysfs {self.name}={self.value}"


Statement = (Boot | Sysctl | CreateFile | CreateDevice | Inject | Reclaim | Spawn | Map
             | Munmap | Mremap | Mprotect | Madvise | Write | Read | Fork | Exit | Prctl
             | KsmdBatch | KsmdScans | KsmdRun | SysfsWrite)
#: Statements that set up the kernel (no result to show).
SETUP = (Boot, Sysctl, CreateFile, CreateDevice, Inject)


def process_of(op: Statement) -> str | None:
    """The name of the process a statement runs in (None for kernel-wide statements)."""
    proc = getattr(op, "proc", None)
    return proc if isinstance(proc, str) else None


@dataclass(frozen=True)
class Scenario:
    ops: tuple[Statement, ...]

    @property
    def kernel(self) -> Boot:
        """The kernel it runs on: its last ``kernel`` statement (the seed's if none)."""
        return next((op for op in reversed(self.ops) if isinstance(op, Boot)), Boot())

    def __str__(self) -> str:
        return format_scenario(self)


@dataclass
class StepResult:
    """What one statement did: the result (or -errno), its kernel trace, each live process's
    maps after it, and for ksmd and sysfs statements ksmd's counters and each live process's
    /proc/PID/ksm_stat (None in a kernel without that file)."""

    op: Statement
    result: int
    trace: Trace | None
    maps: dict[str, list[MapEntry]]
    counters: dict[str, int] | None = None
    #: Every trace of ksmd's batches during a ksmd statement (`trace` is the last).
    traces: tuple[Trace, ...] = ()
    ksm_stat: dict[str, dict[str, int | str]] | None = None

    @property
    def errno(self) -> int | None:
        return -self.result if self.result < 0 else None

    def outcome(self) -> str:
        if self.result < 0:
            return f"-1 {errno_name(self.result)}"
        return f"{self.result:#x}" if self.result > 0xFFFF else str(self.result)


# -- lexing helpers ---------------------------------------------------------------------

class _Line:
    """The tokens of one line, each with its column, and error reporting."""

    def __init__(self, number: int, text: str) -> None:
        self.number = number
        self.tokens = [(m.group(), m.start() + 1) for m in re.finditer(r"\S+", text)]
        self.pos = 0

    def fail(self, message: str, col: int | None = None) -> ScenarioError:
        if col is None:
            col = self.tokens[self.pos][1] if self.pos < len(self.tokens) else (
                self.tokens[-1][1] + len(self.tokens[-1][0]) if self.tokens else 1)
        return ScenarioError(self.number, col, message)

    def more(self) -> bool:
        return self.pos < len(self.tokens)

    def take(self, what: str) -> tuple[str, int]:
        if not self.more():
            raise self.fail(f"expected {what}")
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def done(self) -> None:
        if self.more():
            raise self.fail(f"unexpected {self.tokens[self.pos][0]!r}")


def _number(text: str, line: _Line, col: int, what: str) -> int:
    m = re.fullmatch(r"(-?)(0x[0-9a-fA-F]+|\d+)([pkKMG]?)", text)
    if not m:
        if re.fullmatch(r"-?\d*\.\d+[pkKMG]?", text):
            raise line.fail(f"{what} {text!r} is not a whole number: the kernel counts whole "
                            "bytes (write 6k or 6144 for 1.5p)", col)
        raise line.fail(f"{what} {text!r} is not a number (4096, 0x1000, 4p, 16k, 2M)", col)
    value = int(m.group(2), 0) * _UNITS.get(m.group(3), 1)
    return -value if m.group(1) else value


def _u64(text: str, line: _Line, col: int, what: str) -> int:
    """A number that must fit an unsigned 64-bit register (an address, flags, a value)."""
    value = _number(text, line, col, what)
    if not 0 <= value <= ULONG_MAX:
        raise line.fail(f"{what} {text!r} is not between 0 and 2**64-1", col)
    return value


def _count(line: _Line, what: str) -> int:
    text, col = line.take(what)
    value = _number(text, line, col, what.removeprefix("a ").removeprefix("an "))
    if value < 0:
        raise line.fail(f"{what} must not be negative", col)
    return value


def _length(line: _Line, what: str = "a length") -> int:
    text, col = line.take(what)
    value = _number(text, line, col, "length")
    if value < 0:
        if value < -(2**63):
            raise line.fail(f"length {text!r} is out of range", col)
        value &= ULONG_MAX
    if value > ULONG_MAX:
        raise line.fail(f"length {text!r} does not fit in 64 bits", col)
    return value


def _addr(line: _Line) -> Addr:
    text, col = line.take("an address")
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:([+-])(\S+))?", text)
    if m:
        off = 0
        if m.group(2):
            off = _number(m.group(3), line, col + len(m.group(1)) + 1, "offset")
            off = -off if m.group(2) == "-" else off
        return Addr(m.group(1), off)
    return Addr(None, _u64(text, line, col, "address"))


def _prot(line: _Line) -> int:
    text, col = line.take("a protection (none, r, rw, rx, rwx)")
    if text == "none":
        return 0
    if not text or set(text) - set("rwx") or len(set(text)) != len(text):
        raise line.fail(f"protection {text!r} is not none or letters from r, w, x", col)
    return sum(bit for c, bit in (("r", PROT.PROT_READ), ("w", PROT.PROT_WRITE),
                                  ("x", PROT.PROT_EXEC)) if c in text)


def _choice(line: _Line, text: str, col: int, options: tuple[str, ...] | list[str],
            what: str) -> str:
    if text in options:
        return text
    close = difflib.get_close_matches(text, options, n=1)
    hint = f" (did you mean {close[0]}?)" if close else f" (one of: {', '.join(options)})"
    raise line.fail(f"unknown {what} {text!r}{hint}", col)


def _advice(line: _Line) -> int:
    text, col = line.take("an advice")
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    names = [m.name for m in MADV if m.name]
    short = [n.removeprefix("MADV_") for n in names]
    up = text.upper()
    name = up if up in names else f"MADV_{up}"
    if name not in names:
        _choice(line, up.removeprefix("MADV_"), col, short, "advice")
    return int(MADV[name])


def _label(line: _Line, what: str, allow_dots: bool = False) -> str:
    text, col = line.take(what)
    pattern = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z" if allow_dots else _NAME.pattern
    if not re.match(pattern, text):
        raise line.fail(f"{text!r} is not a valid name", col)
    return text


def _assignment(line: _Line, what: str) -> tuple[str, str, int]:
    tok, col = line.take(what)
    name, eq, value = tok.partition("=")
    if not eq or not value:
        raise line.fail(f"expected {what}, not {tok!r}", col)
    return name, value, col


# -- parsing ----------------------------------------------------------------------------

def parse(text: str) -> Scenario:
    """Parse scenario text; raises ScenarioError naming the line and column."""
    ops: list[Statement] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = _Line(number, raw.split("#", 1)[0])
        if line.more():
            ops.append(_statement(line))
    return Scenario(tuple(ops))


def _statement(line: _Line) -> Statement:
    word, col = line.take("a statement")
    if word.endswith(":"):
        proc = word[:-1]
        if not _NAME.match(proc):
            raise line.fail(f"{proc!r} is not a process name", col)
        word, col = line.take("an operation after the process name")
        _choice(line, word, col, tuple(_PROC_STATEMENTS), "operation")
        statement = _PROC_STATEMENTS[word](line, proc)
    elif word in _PROC_STATEMENTS:
        statement = _PROC_STATEMENTS[word](line, "p1")
    else:
        _choice(line, word, col, (*_PROC_STATEMENTS, *_STATEMENTS), "statement")
        statement = _STATEMENTS[word](line)
    line.done()
    return statement


def _p_kernel(line: _Line) -> Boot:
    name, c = line.take("a profile")
    profile = _choice(line, name, c, list(PROFILES), "profile")
    ksm = True
    while line.more():
        tok, c = line.take("an option")
        if tok not in ("ksm=y", "ksm=n"):
            raise line.fail(f"unknown kernel option {tok!r} (ksm=y or ksm=n)", c)
        ksm = tok == "ksm=y"
    return Boot(profile, ksm, line=line.number)


def _p_sysctl(line: _Line) -> Sysctl:
    name, value, c = _assignment(line, "name=value")
    _choice(line, name, c, _SYSCTLS, "sysctl")
    number = _number(value, line, c + len(name) + 1, "value")
    if number < 0:
        raise line.fail("a sysctl value must not be negative", c)
    return Sysctl(name, number, line=line.number)


def _p_file(line: _Line) -> CreateFile:
    name = _label(line, "a file name", allow_dots=True)
    size = _length(line, "a size")
    fs, ro = None, False
    while line.more():
        tok, c = line.take("an option")
        if tok in ("tmpfs", "ext4"):
            fs = tok
        elif tok == "ro":
            ro = True
        else:
            raise line.fail(f"unknown file option {tok!r} (tmpfs, ext4, ro)", c)
    return CreateFile(name, size, fs, ro, line=line.number)


def _p_device(line: _Line) -> CreateDevice:
    name = _label(line, "a device name", allow_dots=True)
    tok, c = line.take("a driver style")
    return CreateDevice(name, _choice(line, tok, c, list(DRIVER_STYLES), "driver style"),
                        line=line.number)


def _p_reclaim(line: _Line) -> Reclaim:
    return Reclaim(line=line.number)


def _p_inject(line: _Line) -> Inject:
    tok, c = line.take("a fault point")
    point = _choice(line, tok, c, FAULT_POINTS, "fault point")
    times = _count(line, "a count") if line.more() else 1
    return Inject(point, times, line=line.number)


def _p_spawn(line: _Line) -> Spawn:
    return Spawn(_label(line, "the new process's name"), line=line.number)


def _p_ksmd(line: _Line) -> KsmdBatch | KsmdScans | KsmdRun:
    tok, c = line.take("batch, scan or run")
    what = _choice(line, tok, c, ("batch", "scan", "run"), "ksmd step")
    if what == "batch":
        return KsmdBatch(_count(line, "a number of batches") if line.more() else 1,
                         line=line.number)
    if what == "scan":
        return KsmdScans(_count(line, "a number of full scans"), line=line.number)
    return KsmdRun(_count(line, "a time in milliseconds"), line=line.number)


def _p_sysfs(line: _Line) -> SysfsWrite:
    name, value, c = _assignment(line, "name=value (a file of /sys/kernel/mm/ksm)")
    _choice(line, name, c, _SYSFS_NAMES, "file of /sys/kernel/mm/ksm")
    return SysfsWrite(name, value, line=line.number)


def _p_map(line: _Line, proc: str) -> Map:
    name = _label(line, "a label for the mapping")
    length = _length(line)
    prot = _prot(line)
    tok, col = line.take("private or shared")
    shared = _choice(line, tok, col, ("private", "shared"), "mapping type") == "shared"
    tok, col = line.take("anon, hugetlb, file=NAME or device=NAME")
    backing, eq, source = tok.partition("=")
    if not (tok in ("anon", "hugetlb") or backing in ("file", "device") and eq and source):
        raise line.fail(f"{tok!r}: expected anon, hugetlb, file=NAME or device=NAME", col)
    options: dict[str, bool] = {}
    at, offset = None, 0
    while line.more():
        tok, col = line.take("an option")
        if tok == "at":
            at = _addr(line)
        elif tok in _MAP_OPTIONS:
            options[tok] = True
        elif tok.startswith("offset="):
            sub = _Line(line.number, "")
            sub.tokens = [(tok[7:], col + 7)]
            offset = _length(sub, "an offset")
        else:
            raise line.fail(f"unknown map option {tok!r} (at ADDR, fixed, noreplace, "
                            "noreserve, locked, growsdown, offset=LEN)", col)
    if (options.get("fixed") or options.get("noreplace")) and at is None:
        raise line.fail("fixed and noreplace need 'at ADDR'")
    return Map(proc, name, length, prot, shared, backing, source or None, at, offset=offset,
               line=line.number, **options)


def _p_mremap(line: _Line, proc: str) -> Mremap:
    addr = _addr(line)
    old_size = _length(line, "the old length")
    new_size = _length(line, "the new length")
    words = dict(_MREMAP_WORDS)
    flags = 0
    new_addr = None
    while line.more():
        tok, col = line.take("an option")
        if tok == "at":
            if new_addr is not None:
                raise line.fail("'at' given twice", col)
            new_addr = _addr(line)
        elif tok.startswith("flags="):
            flags |= _u64(tok.partition("=")[2], line, col + 6, "flags")
        else:
            flags |= words[_choice(line, tok, col, (*words, "at", "flags="), "mremap option")]
    return Mremap(proc, addr, old_size, new_size, flags, new_addr, line=line.number)


def _p_write(line: _Line, proc: str) -> Write:
    addr = _addr(line)
    values = []
    while line.more():
        text, c = line.take("a page content")
        values.append(_u64(text, line, c, "page content"))
    if not values:
        raise line.fail("write needs at least one page content")
    return Write(proc, addr, tuple(values), line=line.number)


def _p_prctl(line: _Line, proc: str) -> Prctl:
    tok, c = line.take("an option (PR_SET_MEMORY_MERGE or PR_GET_MEMORY_MERGE)")
    if re.fullmatch(r"\d+", tok):
        by_value = {v: n for n, v in _PRCTLS.items()}
        if int(tok) not in by_value:
            raise line.fail(f"prctl option {tok} is not modelled (PR_SET_MEMORY_MERGE is "
                            f"{PR_SET_MEMORY_MERGE}, PR_GET_MEMORY_MERGE {PR_GET_MEMORY_MERGE})", c)
        tok = by_value[int(tok)]
    option = _PRCTLS[_choice(line, tok.upper(), c, tuple(_PRCTLS), "prctl option")]
    args: list[int] = []
    while line.more() and len(args) < 4:
        text, c = line.take("an argument")
        args.append(_u64(text, line, c, "argument"))
    arg2, arg3, arg4, arg5 = args + [0] * (4 - len(args))
    return Prctl(proc, option, arg2, arg3, arg4, arg5, line=line.number)


#: How a plain statement's fields are read, by field name.
_READ: dict[str, Callable[[_Line], object]] = {
    "addr": _addr, "length": _length, "prot": _prot, "advice": _advice,
    "child": lambda line: _label(line, "the child's name")}
C = TypeVar("C", bound=_Call)


def _plain(cls: type[C]) -> Callable[[_Line, str], C]:
    """The parser of a plain statement: its fields in order, as `_READ` reads them."""
    def parse_fields(line: _Line, proc: str) -> C:
        return cls(proc, *(_READ[name](line) for name in cls.arg_names()), line=line.number)
    return parse_fields


#: Statement keywords: set-up and ksmd statements, and those a process runs ("p2: exit").
_STATEMENTS: dict[str, Callable[[_Line], Statement]] = {
    "kernel": _p_kernel, "sysctl": _p_sysctl, "file": _p_file, "device": _p_device,
    "inject": _p_inject, "reclaim": _p_reclaim, "spawn": _p_spawn, "ksmd": _p_ksmd,
    "sysfs": _p_sysfs}
_PROC_STATEMENTS: dict[str, Callable[[_Line, str], Statement]] = {
    "map": _p_map, "munmap": _plain(Munmap), "mremap": _p_mremap, "mprotect": _plain(Mprotect),
    "madvise": _plain(Madvise), "write": _p_write, "read": _plain(Read), "fork": _plain(Fork),
    "exit": _plain(Exit), "prctl": _p_prctl}


# -- printing ---------------------------------------------------------------------------

def format_scenario(scenario: Scenario) -> str:
    """The canonical text of a scenario (one statement per line)."""
    return "".join(f"{op}\n" for op in scenario.ops)


# -- running ----------------------------------------------------------------------------

def boot(scenario: Scenario, profile: str | None = None,
         config_ksm: bool | None = None) -> Kernel:
    """A kernel as the scenario's `kernel` statement (or the arguments) asks."""
    kernel = scenario.kernel
    return Kernel(profile or kernel.profile, kernel.ksm if config_ksm is None else config_ksm)


P = TypeVar("P", bound=ProcessBackend)


class Runner(Generic[P]):
    """Runs statements one at a time on a kept kernel: `step(op)` returns a `StepResult`
    (the result or -errno, the trace, and with ``maps=True`` every live process's maps).
    `procs`, `labels` and `files` map names to processes, addresses and files; processes
    the kernel already has are known by their names.

    The kernel is any `ksmbook.backend.KernelBackend`: the simulator's ``Kernel`` or this
    machine's (``ksmbook.live.LiveKernel``); `P` is its process type."""

    def __init__(self, kernel: KernelBackend[P], *, maps: bool = True) -> None:
        self.k = kernel
        self.maps = maps
        self.procs: dict[str, P] = {p.name: p for p in kernel.processes}
        self.labels: dict[str, int] = {}
        self.files: dict[str, FileBackend] = {}
        self._traces: list[Trace] = []

    def fail(self, op: Statement, message: str) -> ScenarioError:
        return ScenarioError(op.line, 1, message)

    def proc(self, op: Statement, name: str) -> P:
        if name == "p1" and "p1" not in self.procs:
            self.procs["p1"] = self.k.spawn("p1")
        if name not in self.procs:
            raise self.fail(op, f"no process named {name!r}")
        p = self.procs[name]
        if not p.alive:
            raise self.fail(op, f"process {name!r} has exited")
        return p

    def addr(self, op: Statement, a: Addr) -> int:
        if a.label is None:
            return a.offset
        if a.label not in self.labels:
            raise self.fail(op, f"no mapping labelled {a.label!r} yet")
        return (self.labels[a.label] + a.offset) & ULONG_MAX

    def step(self, op: Statement) -> StepResult:
        """Run one statement: a refused system call gives -errno, a statement naming what
        does not exist (or asking ksmd of a kernel without one) raises ScenarioError."""
        log = self.k.log
        last = log[-1] if log else None
        self._traces = []
        try:
            result = self._run(op)
        except OSError as e:
            result = -(e.errno or errno.EINVAL)
        except (KsmdUnavailable, KsmdIdle) as e:
            raise self.fail(op, str(e)) from None
        trace = log[-1] if log and log[-1] is not last else None
        counters = ksm_stat = None
        if isinstance(op, (KsmdBatch, KsmdScans, KsmdRun, SysfsWrite)):
            counters = dict(self.k.ksmd.counters())
            ksm_stat = self._ksm_stat()
            trace = self._traces[-1] if self._traces else None
        return StepResult(op, result, trace, self.snapshot() if self.maps else {}, counters,
                          tuple(self._traces), ksm_stat)

    def _ksm_stat(self) -> dict[str, dict[str, int | str]] | None:
        """/proc/PID/ksm_stat of every live process (None: the kernel has no such file)."""
        try:
            return {name: p.ksm_stat() for name, p in self.procs.items() if p.alive}
        except FileNotFoundError:
            return None

    def _run(self, op: Statement) -> int:
        """What `op` does; its result."""
        match op:
            case Boot():
                return 0
            case Sysctl():
                self.k.sysctl[op.name] = op.value
                return 0
            case CreateFile():
                self.files[op.name] = self.k.create_file(op.name, op.size, fs=op.fs or "ext4",
                                                         writable=not op.ro)
                return 0
            case CreateDevice():
                try:
                    self.files[op.name] = self.k.create_device(op.name, op.style)
                except ValueError as e:
                    raise self.fail(op, str(e)) from None
                return 0
            case Inject():
                self.k.inject(op.point, op.times)
                return 0
            case Reclaim():
                return self.k.reclaim()
            case Spawn():
                if op.proc in self.procs:
                    raise self.fail(op, f"a process named {op.proc!r} exists already")
                p = self.procs[op.proc] = self.k.spawn(op.proc)
                return p.pid
            case Map():
                p = self.proc(op, op.proc)
                flags = MAP.MAP_SHARED if op.shared else MAP.MAP_PRIVATE
                file = None
                if op.backing in ("anon", "hugetlb"):
                    flags |= MAP.MAP_ANONYMOUS | (MAP.MAP_HUGETLB if op.backing == "hugetlb" else 0)
                elif op.source in self.files:
                    file = self.files[op.source]
                else:
                    raise self.fail(op, f"no {op.backing} named {op.source!r}: declare it first "
                                    "with a 'file' or 'device' line")
                for opt, bit in zip(_MAP_OPTIONS, (MAP.MAP_FIXED, MAP.MAP_FIXED_NOREPLACE,
                                                   MAP.MAP_NORESERVE, MAP.MAP_LOCKED,
                                                   MAP.MAP_GROWSDOWN), strict=True):
                    if getattr(op, opt):
                        flags |= bit
                at = self.addr(op, op.at) if op.at is not None else 0
                addr = p.mmap(op.length, op.prot, int(flags), addr=at, file=file, offset=op.offset)
                self.labels[op.name] = addr
                return addr
            case Munmap():
                return self.proc(op, op.proc).munmap(self.addr(op, op.addr), op.length)
            case Mremap():
                new_addr = self.addr(op, op.new_addr) if op.new_addr is not None else None
                got = self.proc(op, op.proc).mremap(self.addr(op, op.addr), op.old_size,
                                                    op.new_size, op.flags, new_addr)
                if op.addr.label is not None and op.addr.offset == 0:
                    self.labels[op.addr.label] = got
                return got
            case Mprotect():
                return self.proc(op, op.proc).mprotect(self.addr(op, op.addr), op.length, op.prot)
            case Madvise():
                return self.proc(op, op.proc).madvise(self.addr(op, op.addr), op.length, op.advice)
            case Write():
                p = self.proc(op, op.proc)
                addr = self.addr(op, op.addr)
                if addr % PAGE_SIZE:
                    raise self.fail(op, f"write: address {addr:#x} is not page aligned")
                p.write_pages(addr, op.values)
                return 0
            case Read():
                return self.proc(op, op.proc).read_page(self.addr(op, op.addr))
            case Fork():
                p = self.proc(op, op.proc)
                if op.child in self.procs:
                    raise self.fail(op, f"a process named {op.child!r} exists already")
                child = self.procs[op.child] = p.fork(op.child)
                return child.pid
            case Exit():
                self.proc(op, op.proc).exit()
                return 0
            case Prctl():
                return self.proc(op, op.proc).prctl(op.option, op.arg2, op.arg3, op.arg4, op.arg5)
            case KsmdBatch():
                return self._reports([self.k.ksmd.batch() for _ in range(op.count)])
            case KsmdScans():
                ksmd = self.k.ksmd
                first, scanned = ksmd.batches, ksmd.pages_scanned
                ksmd.full_scans(op.count)
                if ksmd.tracing and ksmd.batches > first:  # the log keeps the latest traces
                    self._traces = list(ksmd.log)[-(ksmd.batches - first):]
                return ksmd.pages_scanned - scanned
            case KsmdRun():
                return self._reports(self.k.ksmd.run_for(op.ms))
            case SysfsWrite():
                self.k.sysfs.write(op.name, op.value)
                return 0
            case _:
                raise TypeError(f"not a statement: {op!r}")

    def _reports(self, reports: list[BatchReport]) -> int:
        """Keep the batches' traces; the result is the number of pages they scanned."""
        self._traces = [b.trace for b in reports if b.trace is not None]
        return sum(b.scanned for b in reports)

    def snapshot(self) -> dict[str, list[MapEntry]]:
        return {name: p.map_entries() for name, p in self.procs.items() if p.alive}


def run(scenario: Scenario | str, kernel: Kernel | None = None, *,
        maps: bool = True) -> list[StepResult]:
    """Run every statement on `kernel` (default: booted from the scenario); with
    ``maps=False`` the results carry no maps."""
    if isinstance(scenario, str):
        scenario = parse(scenario)
    r = Runner(kernel if kernel is not None else boot(scenario), maps=maps)
    return [r.step(op) for op in scenario.ops]
