"""The record of what the simulated kernel did during one system call.

Each `Step` names the kernel function it models and the decision taken there, nested as the
calls nest. `Event` records the structural changes (a split, a merge, a flag change, a VMA
added or removed) that the diagrams annotate.

A step stores a `str.format` template and its arguments, not text: ``tr.note("f", "{} pages",
n)`` costs one tuple, and the message is formatted only when someone reads it (``step.message``,
``str(step)``, ``str(trace)``). The arguments are values taken when the step is recorded (ints,
strings), so a step reads the same whenever it is formatted. A template without arguments is
the message as it stands (braces in it are not special).

Code that records many steps (ksmd's per-page work) adds them to ``Trace.records`` as a flat
run of plain values, ``records += (depth, function, template, len(args), *args)``: no object
per step is kept, so nothing new is left for the cyclic garbage collector to sweep, and
`Trace.steps` makes them `Step`s when it is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .constants import ERRNO_NAMES

__all__ = ["Step", "Event", "Trace", "errno_name"]


def errno_name(err: int) -> str:
    """'EINVAL' for 22 (the sign is ignored)."""
    return ERRNO_NAMES.get(abs(err), f"errno {abs(err)}")


class Step(NamedTuple):
    """One decision inside one kernel function: `template` formatted with `args`."""

    depth: int
    function: str
    template: str
    args: tuple[Any, ...] = ()

    @property
    def message(self) -> str:
        """The decision, as text."""
        return self.template.format(*self.args) if self.args else self.template

    def __str__(self) -> str:
        text = f"{'  ' * self.depth}{self.function}"
        message = self.message
        return f"{text}: {message}" if message else text


class Event(NamedTuple):
    """What a call did, for readers that need more than the text of its steps.

    A change to the address space: split, merge, flags, map, unmap or resize. A decision:
    fail (a check refused the call; detail names it: advice, config_ksm, unaligned, len, wrap,
    max_map_count, hugetlb_align, vm_area_dup, __ksm_enter), hole (nothing mapped in
    [start, end)), ignored (ksm_madvise() left the flags alone; detail says why), unchanged
    (the flags were already as asked) or empty (len 0).
    """

    kind: str
    start: int
    end: int
    detail: str = ""


# Steps and events are built with tuple.__new__ directly: a NamedTuple's own __new__ is a
# Python function, and a system call records several of each.
_tuple_new = tuple.__new__


@dataclass
class Trace:
    """What one system call did, in order; `result` is its return value or -errno.

    The call as written (`call`) is `call_format` formatted with `call_args`, like a step's
    message: formatted when read."""

    call_format: str
    pid: int = 0
    #: The steps as recorded: `Step`s, and flat runs depth, function, template, n, n args.
    records: list[Any] = field(default_factory=list, repr=False)
    events: list[Event] = field(default_factory=list)
    result: int | None = None
    _depth: int = 0
    _formed: int = field(default=0, repr=False, compare=False)
    call_args: tuple[Any, ...] = field(default=(), repr=False)

    @property
    def call(self) -> str:
        """The system call as written: 'madvise(0x7ffff7f80000, 4096, MADV_MERGEABLE)'."""
        return self.call_format.format(*self.call_args) if self.call_args else self.call_format

    @property
    def steps(self) -> list[Step]:
        """The steps, in order (records made `Step`s in place on first reading)."""
        records = self.records
        i, end = self._formed, len(records)
        if i < end:
            steps: list[Step] = []
            while i < end:
                r = records[i]
                if type(r) is Step:
                    steps.append(r)
                    i += 1
                else:
                    n = records[i + 3]
                    steps.append(Step(r, records[i + 1], records[i + 2],
                                      tuple(records[i + 4:i + 4 + n])))
                    i += 4 + n
            records[self._formed:] = steps
            self._formed = len(records)
        return records

    def enter(self, function: str, template: str = "", *args: Any) -> Trace:
        """Record entering `function`; steps recorded inside the `with` block nest under it."""
        self.records.append(_tuple_new(Step, (self._depth, function, template, args)))
        return self

    def __enter__(self) -> None:
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1

    def note(self, function: str, template: str, *args: Any) -> None:
        """Record a decision taken in `function` (`template` formatted with `args` when read)."""
        self.records.append(_tuple_new(Step, (self._depth, function, template, args)))

    def event(self, kind: str, start: int, end: int, detail: str = "") -> None:
        """Record a change to the address space."""
        self.events.append(_tuple_new(Event, (kind, start, end, detail)))

    @property
    def errno(self) -> int | None:
        """The errno the call failed with, or None."""
        return -self.result if self.result is not None and self.result < 0 else None

    def functions(self) -> list[str]:
        """The kernel functions visited, in order."""
        return [s.function for s in self.steps]

    def outcome(self) -> str:
        """'= 0', '= 0x7ffff7ff7000' or '= -1 EINVAL'."""
        if self.result is None:
            return "(running)"
        if self.result < 0:
            return f"= -1 {errno_name(self.result)}"
        return f"= {self.result:#x}" if self.result > 0xFFFF else f"= {self.result}"

    def __str__(self) -> str:
        lines = [f"{self.call} {self.outcome()}"]
        lines += [f"  {s}" for s in self.steps]
        return "\n".join(lines)
