"""A small text language for a sequence of operations, its parser, printer and runner.

    kernel modern ksm=y
    file data.bin 16p
    map A 8p rw private anon
    madvise A+2p 4p MERGEABLE        # addresses: a label, plus/minus pages (p) or bytes
    map B 4p r private file=data.bin offset=2p
    fork child
    child: madvise A 8p UNMERGEABLE
    child: exit

Statements: kernel, sysctl, file, device, inject (set-up), and map, munmap, mprotect,
madvise, write, fork, exit (operations, prefixed by a process name and a colon; the first
process is p1). Lengths: 4096, 0x1000, 4p, 16k, 2M, or -1 (which wraps to 2**64-1 as in C).
`parse` reports errors with line and column; `format_scenario` prints the canonical text,
and parse(format_scenario(s)) == s.
"""

from __future__ import annotations

import difflib
import errno
import re
from dataclasses import dataclass, field

from .constants import MADV, MAP, PAGE_SIZE, PROT
from .kernel import DRIVER_STYLES, Kernel, Process
from .mm import File
from .procfs import MapEntry, read_maps
from .profiles import PROFILES
from .trace import Trace, errno_name

__all__ = ["Addr", "Op", "Runner", "Scenario", "ScenarioError", "StepResult", "parse",
           "format_scenario", "format_op", "run", "boot"]

_U64 = 2**64 - 1
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_UNITS = {"p": PAGE_SIZE, "k": 1024, "K": 1024, "M": 1 << 20, "G": 1 << 30}
_OPS = ("map", "munmap", "mprotect", "madvise", "write", "fork", "exit")
_SETUP = ("kernel", "sysctl", "file", "device", "inject")
_SYSCTLS = ("max_map_count", "nr_hugepages")
_FAULTS = ("__ksm_enter", "split_vma", "signal_pending", "break_ksm")


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


@dataclass(frozen=True)
class Op:
    """One statement. `args` holds the statement's fields by name."""

    kind: str
    proc: str = "p1"
    args: tuple[tuple[str, object], ...] = ()
    line: int = field(default=0, compare=False)

    def get(self, name: str, default: object = None) -> object:
        return dict(self.args).get(name, default)


@dataclass(frozen=True)
class Scenario:
    ops: tuple[Op, ...]

    def __str__(self) -> str:
        return format_scenario(self)


@dataclass
class StepResult:
    """What one operation did: the result (or -errno) and each live process's maps after."""

    op: Op
    result: int
    trace: Trace | None
    maps: dict[str, list[MapEntry]]

    @property
    def errno(self) -> int | None:
        return -self.result if self.result < 0 else None

    def outcome(self) -> str:
        if self.result < 0:
            return f"-1 {errno_name(self.result)}"
        return f"{self.result:#x}" if self.result > 0xFFFF else str(self.result)


# -- lexing helpers ---------------------------------------------------------------------

def _length_text(n: int) -> str:
    if n == _U64:
        return "-1"
    if n and n % PAGE_SIZE == 0:
        return f"{n // PAGE_SIZE}p"
    return str(n)


def _prot_text(prot: int) -> str:
    letters = "".join(c for c, bit in (("r", PROT.PROT_READ), ("w", PROT.PROT_WRITE),
                                       ("x", PROT.PROT_EXEC)) if prot & bit)
    return letters or "none"


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
        raise line.fail(f"{what} {text!r} is not a number (4096, 0x1000, 4p, 16k, 2M)", col)
    value = int(m.group(2), 0) * _UNITS.get(m.group(3), 1)
    return -value if m.group(1) else value


def _length(line: _Line, what: str = "a length") -> int:
    text, col = line.take(what)
    value = _number(text, line, col, "length")
    if value < 0:
        if value < -(2**63):
            raise line.fail(f"length {text!r} is out of range", col)
        value &= _U64
    if value > _U64:
        raise line.fail(f"length {text!r} does not fit in 64 bits", col)
    return value


def _addr(line: _Line) -> Addr:
    text, col = line.take("an address")
    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:([+-])(\S+))?", text)
    if m and not re.fullmatch(r"\d", text[0]):
        off = 0
        if m.group(2):
            off = _number(m.group(3), line, col + len(m.group(1)) + 1, "offset")
            off = -off if m.group(2) == "-" else off
        return Addr(m.group(1), off)
    value = _number(text, line, col, "address")
    if not 0 <= value <= _U64:
        raise line.fail(f"address {text!r} is out of range", col)
    return Addr(None, value)


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


# -- parsing ----------------------------------------------------------------------------

def parse(text: str) -> Scenario:
    """Parse scenario text; raises ScenarioError naming the line and column."""
    ops: list[Op] = []
    for number, raw in enumerate(text.splitlines(), 1):
        body = raw.split("#", 1)[0]
        line = _Line(number, body)
        if not line.more():
            continue
        ops.append(_statement(line))
    return Scenario(tuple(ops))


def _statement(line: _Line) -> Op:
    word, col = line.take("a statement")
    proc = "p1"
    if word.endswith(":"):
        proc = word[:-1]
        if not _NAME.match(proc):
            raise line.fail(f"{proc!r} is not a process name", col)
        word, col = line.take("an operation after the process name")
        if word not in _OPS:
            _choice(line, word, col, _OPS, "operation")
    elif word not in _OPS + _SETUP:
        _choice(line, word, col, _OPS + _SETUP, "statement")
    args: dict[str, object] = {}
    if word == "kernel":
        name, c = line.take("a profile")
        args["profile"] = _choice(line, name, c, list(PROFILES), "profile")
        while line.more():
            tok, c = line.take("an option")
            if tok not in ("ksm=y", "ksm=n"):
                raise line.fail(f"unknown kernel option {tok!r} (ksm=y or ksm=n)", c)
            args["ksm"] = tok == "ksm=y"
        args.setdefault("ksm", True)
    elif word == "sysctl":
        tok, c = line.take("name=value")
        name, _, value = tok.partition("=")
        args["name"] = _choice(line, name, c, _SYSCTLS, "sysctl")
        args["value"] = _number(value, line, c + len(name) + 1, "value")
        if args["value"] < 0:  # type: ignore[operator]
            raise line.fail("a sysctl value must not be negative", c)
    elif word == "file":
        args["name"] = _label(line, "a file name", allow_dots=True)
        args["size"] = _length(line, "a size")
        while line.more():
            tok, c = line.take("an option")
            if tok in ("tmpfs", "ext4"):
                args["fs"] = tok
            elif tok == "ro":
                args["ro"] = True
            else:
                raise line.fail(f"unknown file option {tok!r} (tmpfs, ext4, ro)", c)
    elif word == "device":
        args["name"] = _label(line, "a device name", allow_dots=True)
        tok, c = line.take("a driver style")
        args["style"] = _choice(line, tok, c, list(DRIVER_STYLES), "driver style")
    elif word == "inject":
        tok, c = line.take("a fault point")
        args["point"] = _choice(line, tok, c, _FAULTS, "fault point")
        if line.more():
            text, c = line.take("a count")
            args["times"] = _number(text, line, c, "count")
    elif word == "map":
        _map_args(line, args)
    elif word in ("munmap", "mprotect", "madvise"):
        args["addr"] = _addr(line)
        args["len"] = _length(line)
        if word == "mprotect":
            args["prot"] = _prot(line)
        elif word == "madvise":
            args["advice"] = _advice(line)
    elif word == "write":
        args["addr"] = _addr(line)
        values = []
        while line.more():
            text, c = line.take("a page content")
            values.append(_number(text, line, c, "page content"))
        if not values:
            raise line.fail("write needs at least one page content")
        args["values"] = tuple(values)
    elif word == "fork":
        args["child"] = _label(line, "the child's name")
    line.done()
    # Fields in name order, so that options written in any order give equal Ops and
    # parse(format_scenario(s)) == s.
    return Op(word, proc, tuple(sorted(args.items(), key=lambda kv: kv[0])), line.number)


def _label(line: _Line, what: str, allow_dots: bool = False) -> str:
    text, col = line.take(what)
    pattern = r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z" if allow_dots else _NAME.pattern
    if not re.match(pattern, text):
        raise line.fail(f"{text!r} is not a valid name", col)
    return text


def _map_args(line: _Line, args: dict[str, object]) -> None:
    args["name"] = _label(line, "a label for the mapping")
    args["len"] = _length(line)
    args["prot"] = _prot(line)
    tok, col = line.take("private or shared")
    args["type"] = _choice(line, tok, col, ("private", "shared"), "mapping type")
    tok, col = line.take("anon, hugetlb, file=NAME or device=NAME")
    if tok in ("anon", "hugetlb"):
        args["backing"] = tok
    elif tok.startswith(("file=", "device=")):
        args["backing"] = tok
    else:
        raise line.fail(f"{tok!r}: expected anon, hugetlb, file=NAME or device=NAME", col)
    while line.more():
        tok, col = line.take("an option")
        if tok == "at":
            args["at"] = _addr(line)
        elif tok in ("fixed", "noreplace", "noreserve", "locked", "growsdown"):
            args[tok] = True
        elif tok.startswith("offset="):
            sub = _Line(line.number, "")
            sub.tokens = [(tok[7:], col + 7)]
            args["offset"] = _length(sub, "an offset")
        else:
            raise line.fail(f"unknown map option {tok!r} (at ADDR, fixed, noreplace, "
                            "noreserve, locked, growsdown, offset=LEN)", col)
    if (args.get("fixed") or args.get("noreplace")) and "at" not in args:
        raise line.fail("fixed and noreplace need 'at ADDR'")


# -- printing ---------------------------------------------------------------------------

def format_op(op: Op) -> str:
    """The canonical text of one statement."""
    a = dict(op.args)
    prefix = f"{op.proc}: " if op.kind in _OPS and op.proc != "p1" else ""
    k = op.kind
    if k == "kernel":
        body = f"kernel {a['profile']} ksm={'y' if a['ksm'] else 'n'}"
    elif k == "sysctl":
        body = f"sysctl {a['name']}={a['value']}"
    elif k == "file":
        body = f"file {a['name']} {_length_text(a['size'])}"  # type: ignore[arg-type]
        body += f" {a['fs']}" if "fs" in a else ""
        body += " ro" if a.get("ro") else ""
    elif k == "device":
        body = f"device {a['name']} {a['style']}"
    elif k == "inject":
        body = f"inject {a['point']}" + (f" {a['times']}" if "times" in a else "")
    elif k == "map":
        body = (f"map {a['name']} {_length_text(a['len'])} {_prot_text(a['prot'])} "  # type: ignore[arg-type]
                f"{a['type']} {a['backing']}")
        if "at" in a:
            body += f" at {a['at']}"
        for opt in ("fixed", "noreplace", "noreserve", "locked", "growsdown"):
            body += f" {opt}" if a.get(opt) else ""
        if "offset" in a:
            body += f" offset={_length_text(a['offset'])}"  # type: ignore[arg-type]
    elif k in ("munmap", "mprotect", "madvise"):
        body = f"{k} {a['addr']} {_length_text(a['len'])}"  # type: ignore[arg-type]
        if k == "mprotect":
            body += f" {_prot_text(a['prot'])}"  # type: ignore[arg-type]
        elif k == "madvise":
            adv = int(a["advice"])  # type: ignore[call-overload]
            try:
                name = (MADV(adv).name or "").removeprefix("MADV_")
            except ValueError:
                name = str(adv)
            body += f" {name}"
    elif k == "write":
        body = f"write {a['addr']} " + " ".join(str(v) for v in a["values"])  # type: ignore[attr-defined]
    elif k == "fork":
        body = f"fork {a['child']}"
    else:
        body = "exit"
    return prefix + body


def format_scenario(scenario: Scenario) -> str:
    """The canonical text of a scenario (one statement per line)."""
    return "".join(format_op(op) + "\n" for op in scenario.ops)


# -- running ----------------------------------------------------------------------------

def boot(scenario: Scenario, profile: str | None = None,
         config_ksm: bool | None = None) -> Kernel:
    """A kernel as the scenario's `kernel` statement (or the arguments) asks."""
    prof, ksm = "seed", True
    for op in scenario.ops:
        if op.kind == "kernel":
            prof, ksm = str(op.get("profile")), bool(op.get("ksm"))
    return Kernel(profile or prof, ksm if config_ksm is None else config_ksm)


class Runner:
    """Runs statements one at a time on a kept kernel: `step(op)` returns the result or
    -errno; `procs` and `labels` map names to processes and addresses; `snapshot()` reads
    every live process's maps."""

    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel
        self.procs: dict[str, Process] = {}
        self.labels: dict[str, int] = {}
        self.files: dict[str, File] = {}

    def fail(self, op: Op, message: str) -> ScenarioError:
        return ScenarioError(op.line, 1, message)

    def proc(self, op: Op) -> Process:
        if not self.procs and op.proc == "p1":
            self.procs["p1"] = self.k.spawn("p1")
        if op.proc not in self.procs:
            raise self.fail(op, f"no process named {op.proc!r}")
        p = self.procs[op.proc]
        if not p.alive:
            raise self.fail(op, f"process {op.proc!r} has exited")
        return p

    def addr(self, op: Op, a: Addr) -> int:
        if a.label is None:
            return a.offset
        if a.label not in self.labels:
            raise self.fail(op, f"no mapping labelled {a.label!r} yet")
        return (self.labels[a.label] + a.offset) & _U64

    def step(self, op: Op) -> int:
        """Run one statement; returns its result or -errno."""
        k, a = self.k, dict(op.args)
        if op.kind == "kernel":
            return 0
        if op.kind == "sysctl":
            k.sysctl[str(a["name"])] = int(a["value"])  # type: ignore[call-overload]
            return 0
        if op.kind == "file":
            self.files[str(a["name"])] = k.create_file(
                str(a["name"]), int(a["size"]), fs=str(a.get("fs", "ext4")),  # type: ignore[call-overload]
                writable=not a.get("ro"))
            return 0
        if op.kind == "device":
            try:
                self.files[str(a["name"])] = k.create_device(str(a["name"]), str(a["style"]))
            except ValueError as e:
                raise self.fail(op, str(e)) from None
            return 0
        if op.kind == "inject":
            k.inject(str(a["point"]), int(a.get("times", 1)))  # type: ignore[call-overload]
            return 0
        p = self.proc(op)
        try:
            return self._syscall(p, op, a)
        except OSError as e:
            return -(e.errno or errno.EINVAL)

    def _syscall(self, p: Process, op: Op, a: dict[str, object]) -> int:
        if op.kind == "map":
            return self._map(p, op, a)
        if op.kind == "munmap":
            return p.munmap(self.addr(op, a["addr"]), int(a["len"]))  # type: ignore[arg-type, call-overload]
        if op.kind == "mprotect":
            return p.mprotect(self.addr(op, a["addr"]), int(a["len"]), int(a["prot"]))  # type: ignore[arg-type, call-overload]
        if op.kind == "madvise":
            return p.madvise(self.addr(op, a["addr"]), int(a["len"]), int(a["advice"]))  # type: ignore[arg-type, call-overload]
        if op.kind == "write":
            addr = self.addr(op, a["addr"])  # type: ignore[arg-type]
            if addr % PAGE_SIZE:
                raise self.fail(op, f"write: address {addr:#x} is not page aligned")
            p.write_pages(addr, a["values"])  # type: ignore[arg-type]
            return 0
        if op.kind == "fork":
            child = str(a["child"])
            if child in self.procs:
                raise self.fail(op, f"a process named {child!r} exists already")
            c = p.fork(child)
            self.procs[child] = c
            return c.pid
        p.exit()
        return 0

    def _map(self, p: Process, op: Op, a: dict[str, object]) -> int:
        flags = MAP.MAP_PRIVATE if a["type"] == "private" else MAP.MAP_SHARED
        backing = str(a["backing"])
        file = None
        if backing in ("anon", "hugetlb"):
            flags |= MAP.MAP_ANONYMOUS | (MAP.MAP_HUGETLB if backing == "hugetlb" else 0)
        else:
            name = backing.split("=", 1)[1]
            if name not in self.files:
                raise self.fail(op, f"no {backing.split('=')[0]} named {name!r}: "
                                "declare it first with a 'file' or 'device' line")
            file = self.files[name]
        for opt, bit in (("fixed", MAP.MAP_FIXED), ("noreplace", MAP.MAP_FIXED_NOREPLACE),
                         ("noreserve", MAP.MAP_NORESERVE), ("locked", MAP.MAP_LOCKED),
                         ("growsdown", MAP.MAP_GROWSDOWN)):
            if a.get(opt):
                flags |= bit
        at = self.addr(op, a["at"]) if "at" in a else 0  # type: ignore[arg-type]
        addr = p.mmap(int(a["len"]), int(a["prot"]), int(flags), addr=at, file=file,  # type: ignore[call-overload]
                      offset=int(a.get("offset", 0)))  # type: ignore[call-overload]
        self.labels[str(a["name"])] = addr
        return addr

    def snapshot(self) -> dict[str, list[MapEntry]]:
        return {name: read_maps(p.mm) for name, p in self.procs.items() if p.alive}


def run(scenario: Scenario | str, kernel: Kernel | None = None) -> list[StepResult]:
    """Run every operation on `kernel` (default: booted from the scenario)."""
    if isinstance(scenario, str):
        scenario = parse(scenario)
    k = kernel if kernel is not None else boot(scenario)
    r = Runner(k)
    results = []
    for op in scenario.ops:
        last = k.log[-1] if k.log else None
        result = r.step(op)
        trace = k.log[-1] if k.log and k.log[-1] is not last else None
        results.append(StepResult(op, result, trace, r.snapshot()))
    return results
