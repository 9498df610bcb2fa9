"""One exercise: a scenario, a question about its last operation, and the simulator's answer.

The answer is never written by hand: `Exercise` runs the scenario (`ksmbook.scenario.run`) and
reads the result, the VMAs or the mm flags from the simulated kernel. `check()` compares the
reader's answer with it and, when they differ, names the misconception the trace points to
(a hole, an ignored advice, a re-merge, an entry check); `hint()` tells a little more at each
call; `solution()` prints the answer with the state after each step and the kernel path.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..constants import MADV, MMF
from ..kernel import Kernel
from ..procfs import MapEntry, format_maps
from ..profiles import get_profile
from ..scenario import Op, Scenario, ScenarioError, StepResult, boot, format_op, parse, run
from ..trace import Trace
from .answers import (
    AnswerError,
    Layout,
    LayoutEntry,
    errno_text,
    format_layout,
    layout_of,
    parse_advice,
    parse_count,
    parse_layout,
    parse_result,
    parse_yesno,
)

__all__ = ["Exercise", "Feedback", "Facts", "BASE", "KINDS", "MEASURES"]

#: Where generated scenarios place their first mapping: page 0 of layout answers.
BASE = 0x10000000
#: What an exercise asks for.
KINDS = ("result", "count", "yesno", "advice", "layout")
#: What a count or yes/no exercise measures.
MEASURES = {"count": ("vmas", "splits", "merges"), "yesno": ("mmf",)}

_EXAMPLES = {
    "result": "answer = 0   (or an errno name such as 'EPERM')",
    "count": "answer = 3",
    "yesno": "answer = True   (or False)",
    "advice": "answer = 'NORMAL'   (an advice name)",
    "layout": "answer = [(0, 2, ''), (2, 6, 'mg'), (6, 8, '')]",
}


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer: status is correct, incorrect, unreadable or unattempted."""

    status: str
    message: str

    @property
    def correct(self) -> bool | None:
        """True or False; None when there was no answer to judge."""
        if self.status in ("correct", "incorrect"):
            return self.status == "correct"
        return None

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Facts:
    """What the trace of the last operation shows, for feedback and hints."""

    hole: bool = False
    ignored: tuple[str, ...] = ()
    unchanged: bool = False
    splits: int = 0
    merges: int = 0
    mmap_merges: int = 0
    all_splits: int = 0
    all_merges: int = 0
    ksm_off: bool = False
    len0: bool = False
    eagain: str = ""
    error_note: str = ""

    @classmethod
    def of(cls, results: Sequence[StepResult]) -> Facts:
        """Read the facts out of the step results (the last one is the asked operation)."""
        last = results[-1].trace
        steps = last.steps if last is not None else []
        msgs = [(s.function, s.message) for s in steps]
        name = errno_text(results[-1].result)
        error_note = ""
        if results[-1].result < 0:
            for fn, msg in reversed(msgs):
                if name in msg:
                    error_note = f"{fn}: {msg}"
                    break
        traces = [r.trace for r in results if r.trace is not None]
        return cls(
            hole=any(fn == "find_vma" and ("hole" in m or "nothing mapped" in m)
                     for fn, m in msgs),
            ignored=tuple(dict.fromkeys(m.removeprefix("ignored: ") for fn, m in msgs
                                        if fn == "ksm_madvise" and m.startswith("ignored"))),
            unchanged=any("flags unchanged" in m for _, m in msgs),
            splits=_events(last, "split"),
            merges=_events(last, "merge"),
            mmap_merges=sum(_events(t, "merge") for t in traces if t.call.startswith("mmap")),
            all_splits=sum(_events(t, "split") for t in traces),
            all_merges=sum(_events(t, "merge") for t in traces),
            ksm_off=any("CONFIG_KSM is not set" in m for _, m in msgs),
            len0=any(m.startswith("len 0") for _, m in msgs),
            eagain=next((f"{fn}: {m}" for fn, m in msgs if "ENOMEM" in m and fn in (
                "split_vma", "__ksm_enter")), ""),
            error_note=error_note,
        )


def _picture(maps: dict[str, list[MapEntry]]) -> dict[str, list[tuple[object, ...]]]:
    """What a reader sees of the maps, inode numbers left out."""
    return {name: [(e.start, e.end, e.perms, e.offset, e.path, e.vmflags) for e in entries]
            for name, entries in maps.items()}


def _events(trace: Trace | None, kind: str) -> int:
    return 0 if trace is None else sum(1 for e in trace.events if e.kind == kind)


def _indent(text: str, by: str = "    ") -> str:
    return "\n".join(by + line if line else line for line in text.splitlines())



def read_answer(answer: object, parse: Callable[[object], Any], example: str) -> Any:
    """The parsed answer, or the Feedback for an unattempted or unreadable one."""
    if answer is None or answer is Ellipsis:
        return Feedback("unattempted", "Not answered yet: replace ... with your answer "
                        f"({example}) and run the cell again.")
    try:
        return parse(answer)
    except AnswerError as e:
        return Feedback("unreadable", f"Cannot read that answer: {e}")

class Exercise:
    """A question about the last operation of a scenario, answered by the simulator.

    kind: "result" (return value or errno), "count" (measure "vmas", "splits" or "merges"),
    "yesno" (measure "mmf": is MMF_VM_MERGEABLE set), "advice" (which advice did the last
    madvise give; any advice that yields the same result and maps is right) or "layout" (the
    VMAs of `proc`, compared on the smaps codes in `codes`).
    """

    def __init__(self, kind: str, scenario: Scenario | str, question: str, *,
                 profile: str | None = None, config_ksm: bool | None = None,
                 measure: str = "", proc: str = "p1", codes: Iterable[str] = ("mg",),
                 base: int = BASE, intro: str = "", show_before: bool = True,
                 hints: Iterable[str] = (), title: str = "Exercise", ident: str = "") -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown exercise kind {kind!r}; choose one of {', '.join(KINDS)}")
        if measure not in MEASURES.get(kind, ("",)):
            raise ValueError(f"a {kind} exercise measures one of {MEASURES.get(kind, ())}")
        sc = parse(scenario) if isinstance(scenario, str) else scenario
        ops = [op for op in sc.ops if op.kind != "kernel"]
        if not ops or ops[-1].kind in ("kernel", "sysctl", "file", "device", "inject"):
            raise ValueError("an exercise asks about the scenario's last operation: "
                             "the scenario must end with one")
        if kind == "advice" and ops[-1].kind != "madvise":
            raise ValueError("an advice exercise needs a scenario that ends with madvise")
        prof, ksm = "seed", True
        for op in sc.ops:
            if op.kind == "kernel":
                prof, ksm = str(op.get("profile")), bool(op.get("ksm"))
        self.profile = get_profile(profile or prof).name
        self.config_ksm = ksm if config_ksm is None else bool(config_ksm)
        kernel_op = Op("kernel", args=(("profile", self.profile), ("ksm", self.config_ksm)))
        #: The whole scenario, starting with its kernel line; replayable with
        #: `python -m ksmbook run`.
        self.scenario = Scenario((kernel_op, *ops))
        self.kind, self.measure, self.proc = kind, measure, proc
        self.codes = tuple(codes)
        self.question, self.intro, self.base = question, intro, base
        self.show_before, self.title, self.ident = show_before, title, ident
        self._hints = tuple(hints)
        self._hints_given = 0
        self.attempts: list[Feedback] = []
        _ = self.results  # run now: a broken problem fails where it is made

    def __repr__(self) -> str:
        return f"<Exercise {self.title!r} {self.kind} {self.ident}>"

    # -- the simulator's answer -------------------------------------------------------------

    @functools.cached_property
    def _run(self) -> tuple[Kernel, list[StepResult]]:
        kernel = boot(self.scenario)
        return kernel, run(self.scenario, kernel)

    @property
    def results(self) -> list[StepResult]:
        """What each operation of the scenario did (ksmbook.scenario.StepResult)."""
        return self._run[1]

    @functools.cached_property
    def facts(self) -> Facts:
        return Facts.of(self.results)

    def _measure(self, kernel: Kernel, results: list[StepResult]) -> object:
        last = results[-1]
        if self.kind == "result":
            return last.result
        if self.kind == "count":
            if self.measure == "vmas":
                return len(last.maps.get(self.proc, []))
            return _events(last.trace, self.measure.removesuffix("s"))
        if self.kind == "yesno":
            procs = [p for p in kernel.processes if p.name == self.proc]
            return bool(procs and procs[0].mm_flags & MMF.MMF_VM_MERGEABLE)
        if self.kind == "advice":
            return int(last.op.get("advice"))  # type: ignore[call-overload]
        return self._layout(last.maps.get(self.proc, []))

    def _layout(self, entries: list[MapEntry]) -> Layout:
        keep = frozenset(self.codes)
        return tuple(LayoutEntry(e.start, e.end, e.codes & keep)
                     for e in layout_of(entries, self.base))

    @property
    def answer(self) -> object:
        """The expected answer: an int result (0 or -errno), a count, a bool, an advice value
        or a layout (tuple of LayoutEntry with only the asked codes)."""
        return self._measure(*self._run)

    def answer_text(self) -> str:
        """The expected answer as a reader would write it."""
        a = self.answer
        if self.kind == "result":
            return errno_text(int(a))  # type: ignore[call-overload]
        if self.kind == "advice":
            return (MADV(a).name or str(a)).removeprefix("MADV_")  # type: ignore[arg-type]
        if self.kind == "layout":
            return format_layout(a)  # type: ignore[arg-type]
        return str(a)

    # -- the question ---------------------------------------------------------------------

    def _scenario_lines(self) -> list[str]:
        lines = [format_op(op) for op in self.scenario.ops]
        if self.kind == "advice":
            last = lines[-1]
            lines[-1] = last[:last.rfind(" ")] + " ???"
        return lines

    def text(self) -> str:
        """The question, as `show()` prints it (deterministic)."""
        prof = get_profile(self.profile)
        out = [f"{self.title}" + (f"  [{self.ident}]" if self.ident else ""),
               f"Kernel: {prof.title}, CONFIG_KSM={'y' if self.config_ksm else 'n'}"]
        if self.intro:
            out += ["", self.intro]
        out += ["", f"Scenario (page 0 = {self.base:#x}; p1 is the first process):"]
        out += [f"    {line}" for line in self._scenario_lines()]
        before = self.results[-2].maps.get(self.proc) if len(self.results) > 1 else None
        if self.show_before and before is not None:
            out += ["", f"{self.proc}'s maps before the last operation:",
                    _indent(self._maps_text(before))]
        if self.kind == "advice":
            out += ["", f"The last operation returned {errno_text(self.results[-1].result)}; "
                    f"{self.proc}'s maps after it:",
                    _indent(self._maps_text(self.results[-1].maps.get(self.proc, [])))]
        out += ["", f"Question: {self.question}"]
        if self.kind == "layout":
            out += [f"Answer as a list of (start_page, end_page, flags), end exclusive, flags "
                    f"as smaps codes; only {' '.join(self.codes)} are compared."]
        out += [f"Example: {_EXAMPLES[self.kind]}"]
        return "\n".join(out)

    @functools.cached_property
    def _inodes(self) -> dict[int, int]:
        """Inode numbers renumbered 1, 2, ... in order of appearance, so that the text does
        not depend on what else this Python process simulated before."""
        seen: dict[int, int] = {}
        for r in self.results:
            for entries in r.maps.values():
                for e in entries:
                    if e.inode and e.inode not in seen:
                        seen[e.inode] = len(seen) + 1
        return seen

    def _maps_text(self, entries: list[MapEntry]) -> str:
        return format_maps([dataclasses.replace(e, inode=self._inodes.get(e.inode, e.inode))
                            for e in entries])

    def show(self) -> None:
        """Print the question."""
        print(self.text())

    # -- checking -------------------------------------------------------------------------

    def grade(self, answer: object) -> Feedback:
        """Judge `answer` without printing; `check()` prints this."""
        given = read_answer(answer, self._parse, _EXAMPLES[self.kind])
        if isinstance(given, Feedback):
            return given
        if self.kind == "advice":
            return self._grade_advice(given)
        expected = self.answer
        if given == expected:
            return Feedback("correct", f"Correct. {self._why()}".strip())
        return Feedback("incorrect", "Not quite. " + self._misconception(given, expected)
                        + " (hint() tells more; solution() shows the kernel's answer.)")

    def _parse(self, answer: object) -> object:
        if self.kind == "result":
            return parse_result(answer)
        if self.kind == "count":
            return parse_count(answer)
        if self.kind == "yesno":
            return parse_yesno(answer)
        if self.kind == "advice":
            return parse_advice(answer)
        layout = parse_layout(answer, self.base, get_profile(self.profile))
        keep = frozenset(self.codes)
        return tuple(LayoutEntry(e.start, e.end, e.codes & keep) for e in layout)

    def check(self, answer: object = None) -> None:
        """Print whether `answer` is right, and if not, what was probably overlooked."""
        fb = self.grade(answer)
        self.attempts.append(fb)
        print(fb.message)

    def _why(self) -> str:
        f = self.facts
        if self.kind == "yesno":
            return self._why_mmf()
        if f.ksm_off:
            return "Without CONFIG_KSM, madvise_behavior_valid() rejects the KSM advice first."
        if f.error_note:
            return f"The deciding step: {f.error_note}."
        if f.ignored:
            return f"ksm_madvise() ignored the advice ({'; '.join(f.ignored)})."
        if f.hole:
            return "The mapped parts were advised; the hole makes the call return ENOMEM."
        return ""

    def _why_mmf(self) -> str:
        entered = [r.op.proc for r in self.results if r.trace is not None
                   and any(s.function == "__ksm_enter" for s in r.trace.steps)]
        forked = next((r.op for r in self.results if r.op.kind == "fork"
                       and r.op.get("child") == self.proc), None)
        if forked is not None:
            if self.answer:
                return (f"ksm_fork() registered {self.proc}: its parent {forked.proc} had "
                        "MMF_VM_MERGEABLE at fork time.")
            return (f"{forked.proc} had no MMF_VM_MERGEABLE at fork time, so ksm_fork() did "
                    "nothing.")
        if self.answer:
            return ("__ksm_enter() set it when the first VMA became VM_MERGEABLE; only the "
                    "mm's exit (or ksmd, once no mergeable VMA is left) clears it.")
        if self.proc in entered:
            return "The mm was registered, then unregistered (__ksm_exit())."
        return "__ksm_enter() never ran: no VMA of this mm became VM_MERGEABLE."

    def _misconception(self, given: object, expected: object) -> str:
        if self.kind == "result":
            return _result_feedback(int(given), int(expected), self.facts)  # type: ignore[call-overload]
        if self.kind == "count":
            return _count_feedback(self.measure, int(given), int(expected),  # type: ignore[call-overload]
                                   self.facts, self.proc)
        if self.kind == "yesno":
            return _mmf_feedback(bool(given), self.facts, self.scenario, self.proc)
        return _layout_feedback(given, expected, self.facts, self.proc)  # type: ignore[arg-type]

    def _grade_advice(self, given: object) -> Feedback:
        last = self.scenario.ops[-1]
        if isinstance(given, Op):
            op = Op("madvise", last.proc, given.args)
        else:
            op = Op("madvise", last.proc, tuple((k, given if k == "advice" else v)
                                                for k, v in last.args))
        trial = Scenario(self.scenario.ops[:-1] + (op,))
        try:
            kernel = boot(trial)
            results = run(trial, kernel)
        except ScenarioError as e:
            return Feedback("unreadable", f"Cannot replay that call: {e.message}")
        want, got = self.results[-1], results[-1]
        name = format_op(op)
        if got.result == want.result and _picture(got.maps) == _picture(want.maps):
            same = "" if int(op.get("advice")) == self.answer else (  # type: ignore[call-overload]
                f" (the scenario used {self.answer_text()}, which has the same effect here)")
            return Feedback("correct", f"Correct: {name} gives exactly this picture{same}.")
        if got.result != want.result:
            diff = (f"`{name}` returns {errno_text(got.result)}, but the call returned "
                    f"{errno_text(want.result)}")
        else:
            diff = (f"`{name}` returns the same, but leaves {self.proc}'s maps as "
                    f"{format_layout(self._layout(got.maps.get(self.proc, [])))}, with "
                    f"different flags or boundaries (compare the VmFlags codes: mg = "
                    "VM_MERGEABLE, dc = VM_DONTCOPY, rr/sr = random/sequential read)")
        return Feedback("incorrect", f"Not quite: {diff}. (hint() tells more.)")

    # -- hints and solution ---------------------------------------------------------------

    def hints(self) -> list[str]:
        """Every hint, least detailed first."""
        out = list(self._hints)
        last = self.results[-1].trace
        if last is not None:
            path = list(dict.fromkeys(s.function for s in last.steps))
            out.append("The kernel functions the last call goes through: "
                       + " -> ".join(path) + ".")
            key = [str(s).strip() for s in last.steps
                   if any(w in s.message for w in ("hole", "ignored", "merged", "split",
                                                   "EINVAL", "ENOMEM", "EAGAIN", "EBADF",
                                                   "unchanged", "not copied", "len 0"))]
            if key:
                out.append("The decisions that matter:\n" + "\n".join(f"  {k}" for k in key))
        return out

    def hint(self) -> None:
        """Print the next hint (each call gives more detail)."""
        all_hints = self.hints()
        if not all_hints:
            print("No hint for this one: try solution().")
            return
        i = min(self._hints_given, len(all_hints) - 1)
        more = i < len(all_hints) - 1
        self._hints_given = i + 1
        print(f"Hint {i + 1}/{len(all_hints)}: {all_hints[i]}"
              + ("" if more else "\n(That was the last hint; solution() shows the answer.)"))

    def solution_text(self) -> str:
        """The answer, why, and the step trace: state after each operation, kernel path of
        the last one."""
        out = [f"Answer: {self.answer_text()}"]
        why = self._why()
        if why:
            out.append(f"Why: {why}")
        out += ["", "Step trace (replay it: python -m ksmbook run FILE --maps --trace):"]
        for i, r in enumerate(self.results):
            if r.op.kind == "kernel":
                continue
            out.append(f"  {format_op(r.op):<44} = {r.outcome()}")
            if r.trace is not None and i == len(self.results) - 1:
                out += [f"      {s}" for s in r.trace.steps]
            if r.op.kind in ("sysctl", "file", "device", "inject"):
                continue
            for name, entries in r.maps.items():
                out.append(f"    [{name}]")
                out.append(_indent(self._maps_text(entries), "      "))
        return "\n".join(out)

    def solution(self) -> None:
        """Print the answer with the step trace."""
        print(self.solution_text())


# -- feedback aimed at misconceptions ---------------------------------------------------------

def _result_feedback(given: int, expected: int, f: Facts) -> str:
    g, e = errno_text(given), errno_text(expected)
    if f.ksm_off:
        return ("This kernel was built without CONFIG_KSM: madvise_behavior_valid() rejects "
                "MADV_MERGEABLE/MADV_UNMERGEABLE as unknown advice before any other check, "
                "so it fails even with len 0 or on unmapped memory.")
    if e == "ENOMEM" and f.hole and g == "0":
        return ("The advice was applied to the mapped parts, but a hole in the range makes "
                "madvise return ENOMEM: the walk remembers the hole and reports it at the end.")
    if e == "ENOMEM" and g == "EINVAL":
        return ("EINVAL is for arguments that are wrong in themselves (advice, alignment, "
                "length), checked before any VMA is looked at. Memory that is not mapped "
                "gives ENOMEM.")
    if e == "EINVAL" and f.error_note:
        return (f"The entry checks come first, before the mappings are looked at; one of "
                f"them fails here ({f.error_note.split(': ', 1)[-1].removesuffix(': EINVAL')}).")
    if e == "EAGAIN":
        where = f" Here it is {f.eagain.split(':', 1)[0]}." if f.eagain else ""
        return ("An ENOMEM inside madvise_behavior() (split_vma() at the map_count limit, or "
                "__ksm_enter() failing to allocate) is turned into EAGAIN: 'try again'. Only a "
                f"hole in the range gives ENOMEM.{where}")
    if e == "0" and f.len0:
        return "With len 0 madvise returns 0 before it looks at any mapping."
    if e == "0" and f.ignored:
        return ("An ignored MADV_MERGEABLE is not an error: ksm_madvise() leaves the flags as "
                f"they are ({'; '.join(f.ignored)}) and madvise returns 0.")
    if e == "0" and g == "ENOMEM":
        return "Every page of the range is mapped: no hole, so no ENOMEM."
    if e == "ENOMEM" and not f.hole:
        return "Nothing is mapped in (part of) the range: that is ENOMEM."
    if f.error_note:
        return f"Follow the call to the step that decides ({f.error_note.split(':', 1)[0]})."
    return "Follow the call through the entry checks and the VMA walk."


def _count_feedback(measure: str, given: int, expected: int, f: Facts, proc: str) -> str:
    if measure == "splits":
        if given > expected and f.ignored:
            return (f"MADV_MERGEABLE here is ignored ({'; '.join(f.ignored)}): the flags do "
                    "not change, so nothing is split.")
        if given > expected and f.unchanged:
            return ("Where the new flags equal the old ones, madvise_behavior() stops: no "
                    "split, no merge.")
        if given > expected and f.merges:
            return ("vma_merge() is tried before split_vma(): where the range touches a "
                    "neighbour that already has the new flags, the neighbour grows over the "
                    "range instead.")
        if given < expected:
            return ("A range strictly inside a VMA needs two splits (at its start and at its "
                    "end); one touching an edge of the VMA needs one; every VMA the range "
                    "touches is handled on its own.")
        return "Count the split_vma() calls of the last operation only."
    if measure == "merges":
        return "Count the vma_merge() calls that succeeded in the last operation."
    if given > expected and f.mmap_merges:
        return ("A new anonymous mapping right next to one with the same flags does not make "
                "a new VMA: mmap_region() calls vma_merge() and the old VMA grows.")
    if given > expected and f.all_merges:
        return ("You forgot the re-merge: when the advice gives a piece the same flags as its "
                "neighbour again, vma_merge() folds them back into one VMA.")
    if given > expected and f.ignored:
        return (f"MADV_MERGEABLE on this VMA is ignored ({'; '.join(f.ignored)}): the flags "
                "do not change, so there is no split.")
    if given < expected and f.hole:
        return ("A hole does not stop the walk: the mapped parts are advised (and split) "
                "before madvise returns ENOMEM.")
    if given < expected and f.all_splits:
        return ("Each split_vma() adds a VMA: advice on the middle of a VMA cuts it in three.")
    return f"Count {proc}'s VMAs after every operation, one step at a time."


def _mmf_feedback(given: bool, f: Facts, scenario: Scenario, proc: str) -> str:
    ops = scenario.ops
    forked = any(op.kind == "fork" and op.get("child") == proc for op in ops)
    if given is False:
        if forked:
            return ("ksm_fork() registers the child whenever the parent has MMF_VM_MERGEABLE, "
                    "whatever VMAs are copied (even if the mergeable ones were VM_DONTCOPY).")
        if any(op.kind == "madvise" and op.get("advice") == MADV.MADV_UNMERGEABLE
               for op in ops):
            return ("MADV_UNMERGEABLE clears VM_MERGEABLE on the VMAs, not MMF_VM_MERGEABLE on "
                    "the mm: the mm stays registered with KSM until it exits (ksmd may drop it "
                    "later, in kernels that have ksmd).")
        return ("__ksm_enter() sets MMF_VM_MERGEABLE the first time a VMA of this mm becomes "
                "VM_MERGEABLE, even if the call then returns ENOMEM for a hole.")
    if f.ksm_off or "EINVAL" in f.error_note:
        return "madvise failed its entry checks: no VMA and no mm flag was touched."
    if forked:
        return ("ksm_fork() registers the child only if the parent's mm has MMF_VM_MERGEABLE "
                "at fork time; the VM_MERGEABLE VMAs alone do not make it.")
    return ("__ksm_enter() runs only when a VMA actually becomes VM_MERGEABLE; an ignored "
            "MADV_MERGEABLE (shared memory, device memory, ...) or a range with nothing "
            "mapped never calls it.")


def _layout_feedback(given: Layout, expected: Layout, f: Facts, proc: str) -> str:
    if len(given) != len(expected):
        more = "more" if len(given) > len(expected) else "fewer"
        return (f"You have {more} VMAs than the kernel. "
                + _count_feedback("vmas", len(given), len(expected), f, proc))
    for g, e in zip(given, expected, strict=True):
        if (g.start, g.end) != (e.start, e.end):
            return (f"The VMA boundaries differ from page {min(g.start, e.start)} on: the kernel "
                    "splits exactly at the start and end of the range (rounded to pages) and "
                    "merges neighbours whose flags become equal.")
    for g, e in zip(given, expected, strict=True):
        if g.codes != e.codes:
            extra, missing = sorted(g.codes - e.codes), sorted(e.codes - g.codes)
            where = f"Pages {e.start}-{e.end}"
            if "mg" in extra and f.ignored:
                return (f"{where}: MADV_MERGEABLE was ignored there ({'; '.join(f.ignored)}), "
                        "so no mg.")
            if "mg" in missing and f.hole:
                return (f"{where}: the call returned ENOMEM, but the mapped parts of the range "
                        "were advised before the hole was reported.")
            text = ", ".join([f"not {c}" for c in extra] + [f"{c}" for c in missing])
            return f"{where}: the flags differ (the kernel has: {text})."
    return "Compare your layout with the maps after the last step."

