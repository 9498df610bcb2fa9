"""Problems about one scenario's last operation: its result, a count, the mm flag, the advice
it gave, or the VMAs it leaves.

The answer is never written by hand: a `ScenarioProblem` runs its scenario
(`ksmbook.scenario.run`) and reads the result, the VMAs or the mm flags from the simulated
kernel. A wrong answer gets feedback chosen from what that answer would mean and from the
structured events of the call's trace (a hole, an ignored advice, a failed check, a split, a
merge), never from the trace's text.
"""

from __future__ import annotations

import dataclasses
import functools
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..constants import MADV, MMF
from ..kernel import Kernel
from ..procfs import MapEntry, format_maps
from ..profiles import get_profile
from ..scenario import (
    SETUP,
    Boot,
    Fork,
    Madvise,
    Map,
    Scenario,
    ScenarioError,
    Statement,
    StepResult,
    boot,
    format_scenario,
    parse,
    process_of,
    run,
)
from ..trace import Event, Fail, Kind, Trace
from .answers import (
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
from .problem import Feedback, Problem

__all__ = ["ScenarioProblem", "ResultProblem", "CountProblem", "MmfProblem", "AdviceProblem",
           "LayoutProblem", "Facts", "BASE"]

#: Where generated scenarios place their first mapping: page 0 of layout answers.
BASE = 0x10000000

#: What the check named by a "fail" event refuses, for feedback.
_FAILED = {
    Fail.ADVICE: "madvise_behavior_valid() does not know the advice",
    Fail.CONFIG_KSM: "without CONFIG_KSM, madvise_behavior_valid() does not know "
                     "MADV_MERGEABLE/MADV_UNMERGEABLE",
    Fail.UNALIGNED: "start is not page aligned",
    Fail.LEN: "len rounds up past the top of the address space",
    Fail.WRAP: "start + len wraps around",
    Fail.MAX_MAP_COUNT: "split_vma() would pass max_map_count",
    Fail.HUGETLB_ALIGN: "a hugetlb VMA cannot be split off a huge page boundary",
    Fail.VM_AREA_DUP: "split_vma() cannot allocate the new VMA",
    Fail.KSM_ENTER: "__ksm_enter() cannot allocate the mm_slot",
}
_ENTRY_CHECKS = (Fail.ADVICE, Fail.CONFIG_KSM, Fail.UNALIGNED, Fail.LEN, Fail.WRAP)
_NO_MEMORY = (Fail.MAX_MAP_COUNT, Fail.VM_AREA_DUP, Fail.KSM_ENTER)


def _events(trace: Trace | None, kind: Kind) -> list[Event]:
    return [] if trace is None else [e for e in trace.events if e.kind is kind]


@dataclass(frozen=True)
class Facts:
    """What the events of the scenario's calls show, for feedback and explanations."""

    hole: bool = False
    ignored: tuple[str, ...] = ()
    unchanged: bool = False
    merges: int = 0
    mmap_merges: int = 0
    all_splits: int = 0
    all_merges: int = 0
    failed: Fail | None = None
    empty: bool = False

    @classmethod
    def of(cls, results: Sequence[StepResult]) -> Facts:
        """Read the facts out of the step results (the last one is the asked operation)."""
        last = results[-1].trace
        failed = [e.detail for e in _events(last, Kind.FAIL) if isinstance(e.detail, Fail)]
        return cls(
            hole=bool(_events(last, Kind.HOLE)),
            ignored=tuple(dict.fromkeys(str(e.detail) for e in _events(last, Kind.IGNORED))),
            unchanged=bool(_events(last, Kind.UNCHANGED)),
            merges=len(_events(last, Kind.MERGE)),
            mmap_merges=sum(len(_events(r.trace, Kind.MERGE)) for r in results
                            if isinstance(r.op, Map)),
            all_splits=sum(len(_events(r.trace, Kind.SPLIT)) for r in results),
            all_merges=sum(len(_events(r.trace, Kind.MERGE)) for r in results),
            failed=failed[-1] if failed and results[-1].result < 0 else None,
            empty=bool(_events(last, Kind.EMPTY)),
        )


def _picture(maps: dict[str, list[MapEntry]]) -> dict[str, list[tuple[object, ...]]]:
    """What a reader sees of the maps, inode numbers left out."""
    return {name: [(e.start, e.end, e.perms, e.offset, e.path, e.vmflags) for e in entries]
            for name, entries in maps.items()}


def _only(layout: Layout, codes: Iterable[str]) -> Layout:
    """`layout` with only `codes` kept."""
    keep = frozenset(codes)
    return tuple(LayoutEntry(e.start, e.end, e.codes & keep) for e in layout)


def _event_text(e: Event) -> str:
    where = f"[{e.start:#x}, {e.end:#x})" if e.end > e.start else f"at {e.start:#x}"
    detail = _FAILED[e.detail] if isinstance(e.detail, Fail) else e.detail
    return f"{e.kind} {where}" + (f": {detail}" if detail else "")


class ScenarioProblem(Problem):
    """A question about the last operation of a scenario, answered by the simulator.

    `proc` is the process asked about; `base` is page 0 of layout answers; `show_before`
    prints `proc`'s maps before the last operation under the scenario. `ran` gives the
    kernel and the results of every statement after the kernel line, if the scenario has
    been run already (a widget's session), so that it is not run again.
    """

    def __init__(self, scenario: Scenario | str, question: str, *,
                 profile: str | None = None, config_ksm: bool | None = None,
                 proc: str = "p1", base: int = BASE, intro: str = "",
                 show_before: bool = True, hints: Iterable[str] = (), title: str = "Exercise",
                 ident: str = "", ran: tuple[Kernel, Sequence[StepResult]] | None = None) -> None:
        sc = parse(scenario) if isinstance(scenario, str) else scenario
        ops = [op for op in sc.ops if not isinstance(op, Boot)]
        if not ops or isinstance(ops[-1], SETUP):
            raise ValueError("an exercise asks about the scenario's last operation: "
                             "the scenario must end with one")
        self.check_last(ops[-1])
        super().__init__(question, profile=profile or sc.kernel.profile, intro=intro,
                         hints=tuple(hints), title=title, ident=ident)
        self.config_ksm = sc.kernel.ksm if config_ksm is None else bool(config_ksm)
        kernel_op = Boot(self.profile, self.config_ksm)
        #: The whole scenario, starting with its kernel line; replayable with
        #: `python -m ksmbook run`.
        self.scenario = Scenario((kernel_op, *ops))
        self.proc, self.base, self.show_before = proc, base, show_before
        if ran is not None:  # already run (a widget's session): the kernel and the results
            kernel, results = ran
            boot_step = StepResult(self.scenario.ops[0], 0, None, {})
            self.__dict__["_run"] = (kernel, [boot_step, *results])
        _ = self.results  # run now: a broken problem fails where it is made

    def check_last(self, op: Statement) -> None:
        """Refuse a scenario whose last operation this kind cannot ask about."""

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

    @property
    def last(self) -> StepResult:
        return self.results[-1]

    def maps_of(self, result: StepResult) -> list[MapEntry]:
        return result.maps.get(self.proc, [])

    # -- the question ---------------------------------------------------------------------

    def scenario_lines(self) -> list[str]:
        return [str(op) for op in self.scenario.ops]

    def kernel_line(self) -> str:
        return (f"Kernel: {get_profile(self.profile).title}, "
                f"CONFIG_KSM={'y' if self.config_ksm else 'n'}")

    def setting(self) -> list[str]:
        out = ["", f"Scenario (page 0 = {self.base:#x}; p1 is the first process):"]
        out += [f"    {line}" for line in self.scenario_lines()]
        before = self.results[-2].maps.get(self.proc) if len(self.results) > 1 else None
        if self.show_before and before is not None:
            out += ["", f"{self.proc}'s maps before the last operation:",
                    textwrap.indent(self.maps_text(before), "    ")]
        return out

    @functools.cached_property
    def _inodes(self) -> dict[int, int]:
        """Inode numbers renumbered 1, 2, ... in order of appearance, so that the text does
        not depend on what else this Python process simulated before."""
        seen = dict.fromkeys(e.inode for r in self.results for entries in r.maps.values()
                             for e in entries if e.inode)
        return {inode: n for n, inode in enumerate(seen, 1)}

    def maps_text(self, entries: list[MapEntry]) -> str:
        return format_maps([dataclasses.replace(e, inode=self._inodes.get(e.inode, e.inode))
                            for e in entries])

    # -- hints and solution ---------------------------------------------------------------

    def trace_hints(self) -> list[str]:
        trace = self.last.trace
        if trace is None:
            return []
        out = ["The kernel functions the last call goes through: "
               + " -> ".join(dict.fromkeys(trace.functions())) + "."]
        if trace.events:
            out.append("What the last call did:\n"
                       + "\n".join(f"  {_event_text(e)}" for e in trace.events))
        return out

    def why(self) -> str:
        f = self.facts
        if f.failed is not None and f.failed in _NO_MEMORY and \
                errno_text(self.last.result) == "EAGAIN":
            return (f"{_FAILED[f.failed]}; madvise reports that ENOMEM as EAGAIN (try "
                    "again), keeping ENOMEM for a range that is not all mapped.")
        if f.failed is not None:
            return f"The deciding check: {_FAILED[f.failed]}."
        if f.ignored:
            return f"ksm_madvise() ignored the advice ({'; '.join(f.ignored)})."
        if f.hole:
            return "The mapped parts were advised; the hole makes the call return ENOMEM."
        return ""

    def work(self) -> list[str]:
        out = ["Step trace; replay it with:",
               "    python -m ksmbook run - --maps --trace <<'EOF'"]
        out += [f"    {line}" for line in format_scenario(self.scenario).splitlines()]
        out += ["    EOF", ""]
        for i, r in enumerate(self.results):
            if isinstance(r.op, Boot):
                continue
            out.append(f"  {r.op!s:<44} = {r.outcome()}")
            if r.trace is not None and i == len(self.results) - 1:
                out += [f"      {s}" for s in r.trace.steps]
            if isinstance(r.op, SETUP):
                continue
            for name, entries in r.maps.items():
                out.append(f"    [{name}]")
                out.append(textwrap.indent(self.maps_text(entries), "      "))
        return out


class ResultProblem(ScenarioProblem):
    """What does the last operation return: 0 or an errno name."""

    kind = "result"

    @property
    def answer(self) -> int:
        return self.last.result

    def answer_text(self) -> str:
        return errno_text(self.answer)

    def example(self) -> str:
        return "answer = 'EPERM'   # an errno name, or 0 for success"

    def parse(self, answer: object) -> int:
        return parse_result(answer)

    def misconception(self, given: int) -> str:
        return _result_feedback(errno_text(given), errno_text(self.answer), self.facts)


#: The event each counted measure of a CountProblem counts.
_COUNTED = {"splits": Kind.SPLIT, "merges": Kind.MERGE}


class CountProblem(ScenarioProblem):
    """How many VMAs does `proc` have at the end (measure "vmas"), or how many splits or
    merges does the last operation make ("splits", "merges")."""

    kind = "count"
    MEASURES = ("vmas", "splits", "merges")

    def __init__(self, scenario: Scenario | str, question: str, *, measure: str,
                 **kwargs: Any) -> None:
        if measure not in self.MEASURES:
            raise ValueError(f"a count exercise measures one of {self.MEASURES}")
        self.measure = measure
        super().__init__(scenario, question, **kwargs)

    @property
    def answer(self) -> int:
        if self.measure == "vmas":
            return len(self.maps_of(self.last))
        return len(_events(self.last.trace, _COUNTED[self.measure]))

    def parse(self, answer: object) -> int:
        return parse_count(answer)

    def misconception(self, given: int) -> str:
        return _count_feedback(self.measure, given, self.answer, self.facts, self.proc)


class MmfProblem(ScenarioProblem):
    """Is MMF_VM_MERGEABLE set in `proc`'s mm at the end?"""

    kind = "yesno"

    @property
    def answer(self) -> bool:
        procs = [p for p in self._run[0].processes if p.name == self.proc]
        return bool(procs and procs[0].mm_flags & MMF.MMF_VM_MERGEABLE)

    def example(self) -> str:
        return "answer = True   # or False"

    def parse(self, answer: object) -> bool:
        return parse_yesno(answer)

    def forked_by(self) -> Fork | None:
        """The fork that made `proc`, if any."""
        return next((r.op for r in self.results if isinstance(r.op, Fork)
                     and r.op.child == self.proc), None)

    def why(self) -> str:
        entered = [process_of(r.op) for r in self.results
                   if r.trace is not None and "__ksm_enter" in r.trace.functions()]
        forked = self.forked_by()
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

    def misconception(self, given: bool) -> str:
        ops = self.scenario.ops
        forked = self.forked_by() is not None
        if given is False:
            if forked:
                return ("False would mean ksm_fork() did not register the child. What does "
                        "ksm_fork() look at: the VMAs it copies, or the parent's mm?")
            if any(isinstance(op, Madvise) and op.advice == MADV.MADV_UNMERGEABLE
                   for op in ops):
                return ("False would mean something cleared the bit. MADV_UNMERGEABLE works "
                        "on VMAs: which flag does it clear, VM_MERGEABLE or "
                        "MMF_VM_MERGEABLE?")
            return ("False would mean __ksm_enter() never ran. Did any VMA of this mm become "
                    "VM_MERGEABLE, even for a moment, even in a call that failed?")
        if self.facts.failed in _ENTRY_CHECKS:
            return ("True would need __ksm_enter() to run; did the last madvise get past its "
                    "entry checks?")
        if forked:
            return ("True would mean ksm_fork() registered the child; it does so only when "
                    "the parent's mm has MMF_VM_MERGEABLE at fork time. Had it?")
        return ("True would mean __ksm_enter() ran: a VMA of this mm became VM_MERGEABLE. "
                "Did the advice apply to any VMA (look at the mg codes after each step)?")


class LayoutProblem(ScenarioProblem):
    """What are `proc`'s VMAs at the end, compared on the smaps codes in `codes`."""

    kind = "layout"

    def __init__(self, scenario: Scenario | str, question: str, *,
                 codes: Iterable[str] = ("mg",), **kwargs: Any) -> None:
        self.codes = tuple(codes)
        super().__init__(scenario, question, **kwargs)

    @property
    def answer(self) -> Layout:
        return _only(layout_of(self.maps_of(self.last), self.base), self.codes)

    def answer_text(self) -> str:
        return format_layout(self.answer)

    def form(self) -> list[str]:
        return ["Answer as a list of (start_page, end_page, flags), end exclusive, flags as "
                "smaps codes, or as page ranges the way predict mode takes them ('0-1 1-3 mg "
                f"3-8'); only {' '.join(self.codes)} are compared."]

    def example(self) -> str:
        outer = " ".join(c for c in self.codes if c in ("rd", "wr"))
        inner = self.codes[0]
        return f"answer = [(0, 2, {outer!r}), (2, 6, {inner!r}), (6, 8, {outer!r})]"

    def parse(self, answer: object) -> Layout:
        return _only(parse_layout(answer, self.base, get_profile(self.profile)), self.codes)

    def misconception(self, given: Layout) -> str:
        return _layout_feedback(given, self.answer, self.facts, self.proc)


class AdviceProblem(ScenarioProblem):
    """Which advice did the last madvise give? Any advice (or whole madvise line) that gives
    the same result and the same maps is right."""

    kind = "advice"

    def __init__(self, scenario: Scenario | str, question: str, *,
                 codes: Iterable[str] = ("mg", "dc", "rr", "sr"), **kwargs: Any) -> None:
        self.codes = tuple(codes)
        super().__init__(scenario, question, **kwargs)

    def check_last(self, op: Statement) -> None:
        if not isinstance(op, Madvise):
            raise ValueError("an advice exercise needs a scenario that ends with madvise")

    @property
    def answer(self) -> int:
        last = self.scenario.ops[-1]
        assert isinstance(last, Madvise)
        return last.advice

    def answer_text(self) -> str:
        return (MADV(self.answer).name or str(self.answer)).removeprefix("MADV_")

    def example(self) -> str:
        return "answer = 'NORMAL'   # an advice name"

    def scenario_lines(self) -> list[str]:
        lines = super().scenario_lines()
        lines[-1] = lines[-1][:lines[-1].rfind(" ")] + " ???"
        return lines

    def setting(self) -> list[str]:
        return super().setting() + [
            "", f"The last operation returned {errno_text(self.last.result)}; "
            f"{self.proc}'s maps after it:",
            textwrap.indent(self.maps_text(self.maps_of(self.last)), "    ")]

    def parse(self, answer: object) -> int | Madvise:
        return parse_advice(answer)

    def call(self, given: int | Madvise) -> Madvise:
        """The madvise line the answer stands for."""
        last = self.scenario.ops[-1]
        assert isinstance(last, Madvise)
        if isinstance(given, Madvise):
            return dataclasses.replace(given, proc=last.proc)
        return dataclasses.replace(last, advice=given)

    def replay(self, given: int | Madvise) -> StepResult:
        """The last step with the answer's call in place of the scenario's."""
        trial = Scenario(self.scenario.ops[:-1] + (self.call(given),))
        return run(trial, boot(trial))[-1]

    def judge(self, given: int | Madvise) -> Feedback:
        try:
            got = self.replay(given)
        except ScenarioError as e:
            return Feedback("unreadable", f"Cannot replay that call: {e.message}")
        if got.result == self.last.result and _picture(got.maps) == _picture(self.last.maps):
            op = self.call(given)
            same = "" if op.advice == self.answer else (
                f" (the scenario used {self.answer_text()}, which has the same effect here)")
            return Feedback("correct", f"Correct: {op} gives exactly this "
                            f"picture{same}.")
        return Feedback("incorrect", f"Not quite: {self.misconception(given)} "
                        "(hint() tells more.)")

    def misconception(self, given: int | Madvise) -> str:
        got, name = self.replay(given), str(self.call(given))
        if got.result != self.last.result:
            return (f"`{name}` returns {errno_text(got.result)}, but the call returned "
                    f"{errno_text(self.last.result)}.")
        return (f"`{name}` returns the same, but leaves {self.proc}'s maps as "
                f"{format_layout(_only(layout_of(self.maps_of(got), self.base), self.codes))}, "
                "with different flags or boundaries (compare the VmFlags codes: mg = "
                "VM_MERGEABLE, dc = VM_DONTCOPY, rr/sr = random/sequential read).")


# -- feedback: what the given answer would mean --------------------------------------------------

def _result_feedback(g: str, e: str, f: Facts) -> str:
    """Feedback on the wrong result `g` (expected `e`): what `g` would mean, and where to look,
    without naming `e`."""
    if f.failed is Fail.CONFIG_KSM:
        return (f"{g} would mean the advice got past madvise_behavior_valid(). Look at the "
                "kernel line: which advices does a kernel built with CONFIG_KSM=n know? That "
                "check comes before every other, even before len 0 and the mappings.")
    if g == "EINVAL":
        return ("EINVAL would mean the call was refused for its arguments (an unknown advice, "
                "an unaligned start, a length that wraps) or for a VMA the advice cannot apply "
                "to; these arguments pass sys_madvise()'s entry checks.")
    if f.failed in _ENTRY_CHECKS:
        return (f"{g} would mean the call got past sys_madvise()'s entry checks. Check the "
                "arguments against them one by one, in the kernel's order: the advice, the "
                "alignment of start, the rounded length.")
    if g == "0":
        if f.hole:
            return ("0 would mean every page of the range is mapped. Compare the range with "
                    "the maps before the call, page by page.")
        if f.failed in _NO_MEMORY:
            return ("0 would mean every step of the call succeeded. Read the set-up lines "
                    "(sysctl, inject): which step of this call do they make fail?")
        return ("0 would mean the advice applied to every VMA of the range. What does this "
                "kernel do with this advice on this kind of VMA?")
    if g == "ENOMEM":
        if f.failed in _NO_MEMORY:
            return ("madvise returns ENOMEM only for a range that is not all mapped, and every "
                    "page of this range is mapped. A step that runs out of memory inside the "
                    "call is reported to user space differently.")
        if f.empty:
            return "ENOMEM comes from the VMA walk. Does this call get as far as the walk?"
        return ("ENOMEM would mean part of the range is not mapped; here every page of the "
                "range is mapped.")
    if g == "EAGAIN":
        return ("EAGAIN would mean a step inside the call could not get memory (a split past "
                "max_map_count, a failed allocation); nothing here is short of memory.")
    if f.ignored:
        return (f"{g} would mean a step of the call failed. Does ksm_madvise() refuse the "
                "advice here, or does it only leave the flags alone?")
    return (f"{g} is not what this call fails with, if it fails. Follow it through the entry "
            "checks and the VMA walk (hint() shows the path).")


def _count_feedback(measure: str, given: int, expected: int, f: Facts, proc: str,
                    vmas: str = "") -> str:
    """Feedback on the wrong count `given`; `vmas` names a wrong number of VMAs
    ("{given} VMAs" unless given)."""
    more = given > expected
    vmas = vmas or f"{given} VMA{'' if given == 1 else 's'}"
    splits = f"{given} split{'' if given == 1 else 's'}"
    if measure == "splits":
        if more and f.ignored:
            return (f"{splits} is too many. Does MADV_MERGEABLE change the flags of "
                    "every VMA it is given?")
        if more and f.unchanged:
            return (f"{splits} is too many: what does madvise do with a part of the "
                    "range whose flags already are the new ones?")
        if more and f.merges:
            return (f"{splits} is too many: a neighbour that already has the new flags "
                    "can take the range over without a split (vma_merge() is tried first).")
        if not more:
            return (f"{splits} is too few: count the cuts at the range's start and at "
                    "its end, for every VMA the range touches.")
        return f"{splits} is too many: count only the last operation's split_vma() calls."
    if measure == "merges":
        return (f"{given} is too {'many' if more else 'few'}: count the vma_merge() calls "
                "that succeeded in the last operation.")
    if more and f.mmap_merges:
        return (f"{vmas} is too many: does a new anonymous mapping always make a new "
                "VMA? Look at its neighbours' flags.")
    if more and f.all_merges:
        return (f"{vmas} is too many: after a split, can two pieces with equal flags "
                "become one VMA again?")
    if more and f.ignored:
        return (f"{vmas} is too many: does the advice change every VMA it is given? "
                "Without a flag change there is no split.")
    if not more and f.hole:
        return (f"{vmas} is too few: does the walk stop at the hole, or go on over the "
                "mapped parts?")
    if not more and f.all_splits:
        return (f"{vmas} is too few: how many pieces does a flag change in the middle "
                "of a VMA leave?")
    return (f"{vmas} is too {'many' if more else 'few'}: count {proc}'s VMAs after "
            "every operation, one step at a time.")


def _layout_feedback(given: Layout, expected: Layout, f: Facts, proc: str) -> str:
    if len(given) != len(expected):
        return _count_feedback("vmas", len(given), len(expected), f, proc,
                               f"a layout of {len(given)} VMA{'' if len(given) == 1 else 's'}")
    for g, e in zip(given, expected, strict=True):
        if (g.start, g.end) != (e.start, e.end):
            return (f"the VMA boundaries differ from page {min(g.start, e.start)} on: where "
                    "exactly does the kernel split, and which neighbours merge again?")
    for g, e in zip(given, expected, strict=True):
        if g.codes != e.codes:
            extra, missing = sorted(g.codes - e.codes), sorted(e.codes - g.codes)
            where = f"pages {e.start}-{e.end}"
            if "mg" in extra and f.ignored:
                return (f"{where}: you have mg there. Does ksm_madvise() set VM_MERGEABLE on "
                        "that kind of VMA?")
            if "mg" in missing and f.hole:
                return (f"{where}: you have no mg there. The call fails for the hole; does it "
                        "leave the mapped parts of the range alone?")
            wrong = ", ".join(extra + missing)
            return f"{where}: look again at the flags {wrong}."
    return "compare your layout with the maps after the last step."
