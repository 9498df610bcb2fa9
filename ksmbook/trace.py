"""The record of what the simulated kernel did during one system call.

Each `Step` names the kernel function it models and the decision taken there, nested as the
calls nest. `Event` records the structural changes (a split, a merge, a flag change, a VMA
added or removed) that the diagrams annotate, the decisions (a failed check, a hole), and what
the fault handler did for each page a call touched (`Fault`): a `Kind` names which.

A step stores a `str.format` template and its arguments, not text: ``tr.note("f", "{} pages",
n)`` costs one tuple, and the message is formatted only when someone reads it (``step.message``,
``str(step)``, ``str(trace)``). The arguments are values taken when the step is recorded (ints,
strings), so a step reads the same whenever it is formatted. A template without arguments is
the message as it stands (braces in it are not special).

Code that records many steps of a few kinds (ksmd's per-page work) declares each kind once,
as a `StepForm` (depth, function, template, number of arguments), and adds a step to
``Trace.records`` as that form followed by its arguments: ``records += (FORM, *args)``. No
object per step is kept, so nothing new is left for the cyclic garbage collector to sweep, and
`Trace.steps` makes them `Step`s when it is read.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .constants import ERRNO_NAMES

__all__ = ["Step", "StepForm", "Event", "Kind", "Fail", "Fault", "Trace", "errno_name",
           "errno_text"]


def errno_name(err: int) -> str:
    """'EINVAL' for 22 (the sign is ignored)."""
    return ERRNO_NAMES.get(abs(err), f"errno {abs(err)}")


def errno_text(result: int) -> str:
    """'0' for a result that is no error, else the errno's name: 'ENOMEM' for -ENOMEM."""
    return "0" if result >= 0 else errno_name(result)


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


class StepForm(NamedTuple):
    """A kind of step recorded many times: in ``Trace.records`` it is followed by its `nargs`
    arguments, and makes a `Step` with them."""

    depth: int
    function: str
    template: str
    nargs: int = 0


class Kind(enum.StrEnum):
    """What an `Event` records; the value is the name the views print."""

    #: split_vma(): [start, end) is one of the two halves; detail: the split address.
    SPLIT = "split"
    #: vma_merge(): [start, end) is the merged VMA; detail: which neighbours it took.
    MERGE = "merge"
    #: A new VMA (mmap_region(), or mremap's move).
    MAP = "map"
    #: A VMA removed (munmap and the unmapped parts of mmap and mremap).
    UNMAP = "unmap"
    #: A VMA grown in place by mremap; detail: "grown".
    RESIZE = "resize"
    #: The VMA's flags changed; detail: the change ("+VM_MERGEABLE").
    FLAGS = "flags"
    #: A check refused the call; detail: the `Fail` naming the check.
    FAIL = "fail"
    #: Nothing is mapped in [start, end).
    HOLE = "hole"
    #: ksm_madvise() left the flags alone; detail: why (the flags that keep KSM away).
    IGNORED = "ignored"
    #: The flags were already as asked.
    UNCHANGED = "unchanged"
    #: len 0: nothing to do.
    EMPTY = "empty"
    #: One page accessed: [start, start + PAGE_SIZE); detail: the `Fault` outcome.
    FAULT = "fault"


class Fail(enum.StrEnum):
    """The check named by a `Kind.FAIL` event; the value is the kernel's name for it."""

    #: madvise_behavior_valid() does not know the advice.
    ADVICE = "advice"
    #: Without CONFIG_KSM, madvise_behavior_valid() does not know MADV_(UN)MERGEABLE.
    CONFIG_KSM = "config_ksm"
    #: start is not page aligned.
    UNALIGNED = "unaligned"
    #: len rounds up past the top of the address space.
    LEN = "len"
    #: start + len wraps around.
    WRAP = "wrap"
    #: split_vma() (or mmap) would pass vm.max_map_count.
    MAX_MAP_COUNT = "max_map_count"
    #: A hugetlb VMA cannot be split off a huge page boundary.
    HUGETLB_ALIGN = "hugetlb_align"
    #: split_vma() cannot allocate the new VMA (vm_area_dup(); 2.6.32 kmem_cache_alloc()).
    VM_AREA_DUP = "vm_area_dup"
    #: __ksm_enter() cannot allocate the mm_slot.
    KSM_ENTER = "__ksm_enter"


class Fault(enum.StrEnum):
    """What the page-fault handler did for one page that a write or a read touched
    (mm/memory.c handle_mm_fault() -> handle_pte_fault()); the value is its short name.

    Each member's `text` says what the kernel does, in its function names (6.x; 2.6.32 names
    in the docstrings of ``ksmbook.kernel.handle_write_fault`` and ``handle_read_fault``). A
    read of a file page maps nothing in the simulator (FILE_READ).
    """

    #: The pte allows the access: no fault (a shared page, or a private one mapped once that
    #: fork() did not write-protect).
    NONE = "none"
    #: do_anonymous_page(): a write to an untouched anonymous page gets a new zeroed page.
    ANON_NEW = "first-touch"
    #: do_cow_fault() (2.6.32 do_linear_fault() -> __do_fault()): a write to an untouched page
    #: of a private file mapping gets a private copy of the page-cache page.
    FILE_COW = "file-cow"
    #: do_shared_fault() (2.6.32 do_linear_fault() -> __do_fault()): a write to an untouched
    #: page of a shared mapping maps the page-cache page itself, writable.
    FILE_SHARED = "file-shared"
    #: do_wp_page() -> wp_page_reuse(): a private anonymous page that fork() write-protected,
    #: mapped only once again (the other mapping wrote its own copy, unmapped it or exited):
    #: the pte is made writable, nothing is copied.
    REUSE = "reuse"
    #: do_wp_page() -> wp_page_copy(): the page is mapped more than once (shared after fork(),
    #: or the page-cache page of a private file mapping): the writer gets a copy.
    COW_COPY = "cow"
    #: do_wp_page() -> wp_page_copy(): a KSM page is never reused, the writer gets a copy.
    KSM_COPY = "cow-ksm"
    #: do_wp_page() -> wp_page_copy(): the zero page that ksmd mapped (use_zero_pages) is
    #: replaced by a new zeroed page, and ksm_zero_pages goes down.
    KSM_ZERO_COPY = "cow-ksm-zero"
    #: do_anonymous_page() for a read of an untouched anonymous page: the shared zero page,
    #: mapped read-only (a special pte: no mapcount, not in Rss, no KSM candidate).
    ZERO_MAP = "zero-map"
    #: do_wp_page() -> wp_page_copy(): a write to the zero page that a read (or a THP split)
    #: mapped gets a new zeroed page.
    ZERO_COPY = "cow-zero"
    #: do_huge_pmd_anonymous_page() for a read of an untouched page of a THP-eligible range:
    #: the huge zero page, mapped read-only by one PMD (transparent_hugepage/use_zero_page).
    HUGE_ZERO_MAP = "zero-map-huge"
    #: do_huge_pmd_wp_page() -> do_huge_zero_wp_pmd() ("mm: Allocate THP on hugezeropage
    #: wp-fault"; before it, a split and a 4 KiB copy): a write to the huge zero page replaces
    #: it by a new zeroed 2 MiB huge page, mapped by the PMD.
    HUGE_ZERO_COPY = "cow-huge-zero"
    #: do_read_fault() (2.6.32 __do_fault()): a read of an untouched file page; the kernel maps
    #: the page-cache page, the simulator reads it without mapping it.
    FILE_READ = "file-read"
    #: do_huge_pmd_anonymous_page(): a write to an untouched page of a THP-eligible range gets
    #: a zeroed 2 MiB huge page mapped by one PMD (ksmbook.thp; 2.6.38 and later).
    HUGE_NEW = "first-touch-huge"

    @property
    def text(self) -> str:
        """What the fault did, in the kernel's words."""
        return _FAULT_TEXT[self]


_FAULT_TEXT = {
    Fault.NONE: "no fault: the page is mapped and the access is allowed",
    Fault.ANON_NEW: "do_anonymous_page(): a new zeroed page",
    Fault.FILE_COW: "do_cow_fault(): a private copy of the page-cache page",
    Fault.FILE_SHARED: "do_shared_fault(): the page-cache page, mapped writable",
    Fault.REUSE: "do_wp_page() -> wp_page_reuse(): the page, mapped once again, made writable",
    Fault.COW_COPY: "do_wp_page() -> wp_page_copy(): copy a page mapped more than once",
    Fault.KSM_COPY: "do_wp_page() -> wp_page_copy(): copy a KSM page",
    Fault.KSM_ZERO_COPY: "do_wp_page() -> wp_page_copy(): a new page for a KSM-placed zero page",
    Fault.ZERO_MAP: "do_anonymous_page(): a read maps the shared zero page read-only",
    Fault.ZERO_COPY: "do_wp_page() -> wp_page_copy(): a new zeroed page for the zero page",
    Fault.HUGE_ZERO_MAP: "do_huge_pmd_anonymous_page(): a read maps the huge zero page",
    Fault.HUGE_ZERO_COPY: "do_huge_pmd_wp_page() -> do_huge_zero_wp_pmd(): a new zeroed 2 MiB "
                          "huge page for the huge zero page",
    Fault.FILE_READ: "do_read_fault(): a read of the page-cache page",
    Fault.HUGE_NEW: "do_huge_pmd_anonymous_page(): a new zeroed 2 MiB huge page",
}


class Event(NamedTuple):
    """What a call did, for readers that need more than the text of its steps: a `Kind`
    (a change to the address space, a decision, or a page access), the range it concerns, and
    a detail: the `Fail` check of a FAIL event, the `Fault` outcome of a FAULT event, else
    text (see each `Kind` member)."""

    kind: Kind
    start: int
    end: int
    detail: str | Fail | Fault = ""


@dataclass
class Trace:
    """What one system call did, in order; `result` is its return value or -errno.

    The call as written (`call`) is `call_format` formatted with `call_args`, like a step's
    message: formatted when read."""

    call_format: str
    pid: int = 0
    #: The steps as recorded: `Step`s, and `StepForm`s each followed by its arguments.
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
                    i += 1
                    n = r.nargs
                    steps.append(Step(r.depth, r.function, r.template, tuple(records[i:i + n])))
                    i += n
            records[self._formed:] = steps
            self._formed = len(records)
        return records

    def enter(self, function: str, template: str = "", *args: Any) -> Trace:
        """Record entering `function`; steps recorded inside the `with` block nest under it."""
        self.records.append(Step(self._depth, function, template, args))
        return self

    def __enter__(self) -> None:
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1

    def note(self, function: str, template: str, *args: Any) -> None:
        """Record a decision taken in `function` (`template` formatted with `args` when read)."""
        self.records.append(Step(self._depth, function, template, args))

    def event(self, kind: Kind, start: int, end: int, detail: str | Fail | Fault = "") -> None:
        """Record a change to the address space."""
        self.events.append(Event(kind, start, end, detail))

    def faults(self) -> list[Fault]:
        """The outcome of each page access the call made, in order."""
        return [e.detail for e in self.events if isinstance(e.detail, Fault)]

    @property
    def errno(self) -> int | None:
        """The errno the call failed with, or None."""
        return -self.result if self.result is not None and self.result < 0 else None

    @property
    def reason(self) -> Step | None:
        """The step that decided the errno of a failed call (every failing path records its
        decision last), or None."""
        return self.steps[-1] if self.errno is not None and self.records else None

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
