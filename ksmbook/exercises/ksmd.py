"""Problems about what ksmd does with the advice (chapter 7) and about the side channel that
deduplication opens (chapter 8).

A problem is a list of `ProblemStep`s: each is one line of the question ("p1: mmap 4 pages,
write [A A B B], madvise(MADV_MERGEABLE)") and the scenario statements that do it, run through
``ksmbook.scenario.Runner`` on a kernel with ksmd running (run=1). The answer comes from that
run: the counters of /sys/kernel/mm/ksm (`CountersProblem`, `KsmdCountProblem`), the fault a
labelled write takes (its trace's fault event; `ChoiceProblem`), or the fewest scans
after which an attacker's probe finds a secret (`ScansProblem`). The solution prints the
statements, which ``python -m ksmbook run`` replays.
"""

from __future__ import annotations

import functools
import itertools
import random
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..constants import MADV, PAGE_SIZE, PROT
from ..kernel import Kernel
from ..ksm import PR_SET_MEMORY_MERGE
from ..profiles import get_profile
from ..render.ksm_pages import page_state, pages_text
from ..scenario import (
    Addr,
    Boot,
    Fork,
    KsmdScans,
    Madvise,
    Map,
    Prctl,
    Runner,
    Scenario,
    Spawn,
    Statement,
    SysfsWrite,
    Write,
    boot,
)
from ..sidechannel import fault_of, probe_statements
from ..trace import Fault
from .answers import AnswerError
from .problem import Problem
from .registry import register

__all__ = ["ProblemStep", "KsmdProblem", "CountersProblem", "KsmdCountProblem", "ChoiceProblem",
           "ScansProblem", "content_name", "COUNTER_SHORT"]

#: Short names accepted for counters in answers.
COUNTER_SHORT = {"shared": "pages_shared", "sharing": "pages_sharing",
                 "unshared": "pages_unshared", "volatile": "pages_volatile",
                 "zero": "ksm_zero_pages", "profit": "general_profit"}
_SHORT = {v: k for k, v in COUNTER_SHORT.items()}
_LETTERS = "ABCDEFGHJKLMNPQRSTUVW"
_FOUR = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile")
#: The faults a reader sees as a slow write: copy-on-write of a page KSM placed.
_SLOW = (Fault.KSM_COPY, Fault.KSM_ZERO_COPY)


def content_name(content: int) -> str:
    """How the exercises name page contents: 0 is the zero page, 1, 2, ... are A, B, ..."""
    if content == 0:
        return "0"
    if 0 < content <= len(_LETTERS):
        return _LETTERS[content - 1]
    return str(content)


# -- steps: a line of the question and the statements that do it ---------------------------------

@dataclass(frozen=True)
class ProblemStep:
    """One line of the question and the scenario statements that do it; `labels` names the
    writes the question picks out (aligned with `statements`, "" for the others)."""

    text: str
    statements: tuple[Statement, ...]
    labels: tuple[str, ...] = ()

    def labelled(self) -> Iterator[tuple[Statement, str]]:
        """Each statement with its label ("" for none)."""
        return zip(self.statements, self.labels or ("",) * len(self.statements), strict=True)


def _area(proc: str) -> str:
    """The label of the pages a process maps (its child after fork() has them too)."""
    return proc.upper()


def _page(owner: str, index: int) -> Addr:
    return Addr(_area(owner), index * PAGE_SIZE)


def _fill(proc: str, contents: Sequence[int | None]) -> list[Write]:
    """Writes of `contents` from page 0 of `proc`'s pages on, one per run of touched pages."""
    out: list[Write] = []
    page = 0
    for touched, group in itertools.groupby(contents, key=lambda c: c is not None):
        run = list(group)
        if touched:
            out.append(Write(proc, _page(proc, page), tuple(c for c in run if c is not None)))
        page += len(run)
    return out


def _spawn(proc: str) -> tuple[Statement, ...]:
    """``spawn`` `proc`, unless it is p1 (which starts by itself)."""
    return () if proc == "p1" else (Spawn(proc),)


def map_step(proc: str, contents: Sequence[int | None], advise: bool) -> ProblemStep:
    """A new process `proc` (p1 starts by itself) maps private anonymous pages, writes
    `contents` (None: untouched) and, if `advise`, madvises them MADV_MERGEABLE."""
    n = len(contents)
    names = " ".join("." if c is None else content_name(c) for c in contents)
    how = ", madvise(MADV_MERGEABLE)" if advise else " (no madvise)"
    advice: list[Statement] = [Madvise(proc, Addr(_area(proc), 0), n * PAGE_SIZE,
                                       MADV.MADV_MERGEABLE)] if advise else []
    return ProblemStep(f"{proc}: mmap {n} page{'s' if n != 1 else ''}, write [{names}]{how}",
                (*_spawn(proc), Map(proc, _area(proc), n * PAGE_SIZE,
                                    PROT.PROT_READ | PROT.PROT_WRITE),
                 *_fill(proc, contents), *advice))


def write_step(proc: str, index: int, content: int, label: str = "",
               owner: str = "") -> ProblemStep:
    """`proc` writes `content` to page `index` of its pages (mapped by `owner`, if a parent)."""
    text = f"{proc}: write {content_name(content)} to its page {index}"
    return ProblemStep(f"({label}) {text}" if label else text,
                (Write(proc, _page(owner or proc, index), (content,)),), (label,))


def fork_step(proc: str, child: str) -> ProblemStep:
    return ProblemStep(f"{proc}: fork() -> {child}", (Fork(proc, child),))


def merge_any_step(proc: str) -> ProblemStep:
    return ProblemStep(f"{proc}: prctl(PR_SET_MEMORY_MERGE, 1)",
                       (Prctl(proc, PR_SET_MEMORY_MERGE, 1),))


def knob_step(name: str, value: int) -> ProblemStep:
    return ProblemStep(f"echo {value} > /sys/kernel/mm/ksm/{name}", (SysfsWrite(name, str(value)),))


def scan_step(scans: int) -> ProblemStep:
    return ProblemStep(f"ksmd: {scans} full scan{'s' if scans != 1 else ''}", (KsmdScans(scans),))


def probe_step(proc: str, guesses: Sequence[int], scans: int, shown: str = "") -> ProblemStep:
    """The attack of Suzaki et al. (``ksmbook.sidechannel.probe_statements``, the statements
    ``sidechannel.probe`` runs): `proc` maps one page per guess, writes the guesses, advises
    them, lets ksmd make `scans` full scans, then writes each page once; the writes are
    labelled with the guesses' names."""
    statements = (*_spawn(proc), *probe_statements(proc, guesses, scans, label=_area(proc)))
    names = [content_name(g) for g in guesses]
    return ProblemStep(f"{proc}: probe [{' '.join(names)}]: mmap, write the guesses, madvise, ksmd "
                f"makes {shown or scans} full scans, then time a write to each",
                statements, ("",) * (len(statements) - len(names)) + tuple(names))


# -- running the steps ------------------------------------------------------------------------

@dataclass
class ProblemRun:
    """The simulator's run of a problem's steps: the kernel at the end, ksmd's counters after
    each step, and the fault each labelled write took."""

    kernel: Kernel
    after: list[dict[str, int]] = field(default_factory=list)
    faults: dict[str, Fault] = field(default_factory=dict)

    def slow(self) -> tuple[str, ...]:
        """The labelled writes that took a copy-on-write fault of a KSM page."""
        return tuple(sorted(label for label, kind in self.faults.items() if kind in _SLOW))


def _setup(profile: str) -> tuple[Statement, ...]:
    return (Boot(profile, True), SysfsWrite("run", "1"))


def _execute(steps: Sequence[ProblemStep], profile: str) -> ProblemRun:
    """Run the steps through the scenario runner on a fresh kernel of `profile`, ksmd running
    (run=1), keeping the fault each labelled write's trace recorded."""
    setup = _setup(profile)
    kernel = boot(Scenario(setup))
    runner = Runner(kernel, maps=False)
    for op in setup:
        runner.step(op)
    run = ProblemRun(kernel)
    for step in steps:
        for op, label in step.labelled():
            result = runner.step(op)
            if label:
                run.faults[label] = fault_of(result.trace)
        run.after.append(dict(kernel.ksmd.counters()))
    return run


def _ints(answer: object, what: str) -> list[int]:
    if isinstance(answer, bool):
        raise AnswerError(f"{answer!r} is not {what}")
    if isinstance(answer, int):
        return [answer]
    if isinstance(answer, (tuple, list)):
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in answer):
            raise AnswerError(f"{answer!r}: {what} must be whole numbers")
        return list(answer)
    if isinstance(answer, str):
        found = re.findall(r"-?\d+", answer)
        if found and not re.sub(r"[-\d\s,;:()\[\]a-z_]", "", answer.lower()):
            return [int(x) for x in found]
    raise AnswerError(f"{answer!r} is not {what}")


# -- the kinds ------------------------------------------------------------------------------

#: What the question says above its steps.
STEPS_LEGEND = ("Steps (each process maps its own private anonymous pages; A, B, ... are page "
                "contents, 0 an all-zero page, . a page never touched):")


class KsmdProblem(Problem):
    """A question about ksmd, or about the fault a write takes, after the steps `steps`.

    `why` explains the answer (the correct message and the solution show it); `legend` is
    the line above the steps.
    """

    def __init__(self, steps: Sequence[ProblemStep], question: str, *, profile: str, why: str = "",
                 intro: str = "", hints: Iterable[str] = (), legend: str = STEPS_LEGEND,
                 title: str = "Exercise", ident: str = "") -> None:
        super().__init__(question, profile=profile, intro=intro, hints=tuple(hints),
                         title=title, ident=ident)
        if not get_profile(self.profile).has_ksmd:
            raise ValueError(f"the {self.profile} kernel has no ksmd: ksmd exercises need a "
                             "kernel with ksmd")
        self.steps, self._why, self.legend = tuple(steps), why, legend
        _ = self.answer  # run now: a broken problem fails where it is made

    def run_steps(self) -> Sequence[ProblemStep]:
        """The steps the simulator runs (`steps`, unless a kind fills in a number)."""
        return self.steps

    @functools.cached_property
    def run(self) -> ProblemRun:
        """The simulator's run of the steps."""
        return _execute(self.run_steps(), self.profile)

    @property
    def scenario(self) -> Scenario:
        """The statements of the run, as ``python -m ksmbook run`` replays them."""
        return Scenario((*_setup(self.profile),
                         *(op for step in self.run_steps() for op in step.statements)))

    # -- the question ---------------------------------------------------------------------

    def kernel_line(self) -> str:
        return (f"Kernel: {get_profile(self.profile).title}; ksmd running (run=1) with its "
                "default knobs unless a step changes one")

    def setting(self) -> list[str]:
        return ["", self.legend, *(f"    {step.text}" for step in self.steps)]

    def why(self) -> str:
        return self._why

    # -- hints and solution ---------------------------------------------------------------

    def trace_hints(self) -> list[str]:
        return ["The counters after each step:\n" + "\n".join(
            f"  {step.text:<60} " + " ".join(f"{_SHORT[f]} {c[f]}" for f in _FOUR)
            for step, c in zip(self.run_steps(), self.run.after, strict=True))]

    def shown_counters(self) -> list[str]:
        return ["full_scans", *_FOUR]

    def work(self) -> list[str]:
        out = ["The simulator's run (counters after each step):"]
        shown = self.shown_counters()
        for step, c in zip(self.run_steps(), self.run.after, strict=True):
            out.append(f"  {step.text}")
            out.append("      " + ", ".join(f"{f} {c[f]}" for f in shown))
        if self.run.faults:
            out += ["", "The fault each labelled write took:"]
            out += [f"  ({label}) {kind.text}" for label, kind in self.run.faults.items()]
        names = {c: content_name(c) for c in range(len(_LETTERS) + 1)}
        out += ["", "The pages at the end:", pages_text(page_state(self.run.kernel,
                                                                  names=names))]
        out += ["", "Replay it (contents are numbers: A = 1, B = 2, ...):",
                "    python -m ksmbook run - <<'EOF'",
                *(f"    {op}" for op in _setup(self.profile))]
        for step in self.run_steps():
            out += [f"    {op}" + (f"   # ({label})" if label else "")
                    for op, label in step.labelled()]
        return [*out, "    EOF"]


class CountersProblem(KsmdProblem):
    """What are the counters `fields` of /sys/kernel/mm/ksm after the steps? An answer is a
    tuple of ints in that order, a dict of counter names (short names too), or the numbers as
    text."""

    kind = "counters"

    def __init__(self, steps: Sequence[ProblemStep], question: str, *,
                 fields: Sequence[str] = _FOUR, **kwargs: Any) -> None:
        self.fields = tuple(fields)
        super().__init__(steps, question, **kwargs)

    @property
    def answer(self) -> tuple[int, ...]:
        return tuple(self.run.after[-1][f] for f in self.fields)

    def answer_text(self) -> str:
        return "(" + ", ".join(str(x) for x in self.answer) + ")"

    def form(self) -> list[str]:
        return ["Answer with the numbers in this order: " + ", ".join(self.fields) + "."]

    def example(self) -> str:
        made_up = (2, 3, 1, 0, 4, 1, 5)
        numbers = ", ".join(str(made_up[i % len(made_up)]) for i in range(len(self.fields)))
        return f"answer = ({numbers})   # {len(self.fields)} numbers, in the order above"

    def shown_counters(self) -> list[str]:
        return super().shown_counters() + [f for f in self.fields if f not in _FOUR]

    def parse(self, answer: object) -> tuple[int, ...]:
        if isinstance(answer, Mapping):
            try:
                named = {COUNTER_SHORT.get(str(k), str(k)): v for k, v in answer.items()}
                return tuple(_ints(named[f], "a counter")[0] for f in self.fields)
            except KeyError as e:
                raise AnswerError(f"the answer has no value for {e.args[0]}") from None
        values = _ints(answer, "a list of counters")
        if len(values) != len(self.fields):
            raise AnswerError(f"give {len(self.fields)} numbers ({', '.join(self.fields)}), "
                              f"not {len(values)}")
        return tuple(values)

    def misconception(self, given: tuple[int, ...]) -> str:
        expected = self.answer
        off = [f"{f} {g} is too {'high' if g > e else 'low'}"
               for f, g, e in zip(self.fields, given, expected, strict=True) if g != e]
        text = "; ".join(off) + "."
        if set(self.fields) == set(_FOUR) and sum(given) != sum(expected):
            text += (" Your four counters add up to " + str(sum(given)) + ": together they "
                     "count ksmd's rmap_items, one for every page it has visited (an item "
                     "whose page has gone stays until the next visit).")
        return text


class KsmdCountProblem(KsmdProblem):
    """One counter of /sys/kernel/mm/ksm (`field`) after the steps."""

    kind = "count"

    def __init__(self, steps: Sequence[ProblemStep], question: str, *, field: str,
                 **kwargs: Any) -> None:
        self.field = field
        super().__init__(steps, question, **kwargs)

    @property
    def answer(self) -> int:
        return self.run.after[-1][self.field]

    def parse(self, answer: object) -> int:
        values = _ints(answer, "a number")
        if len(values) != 1:
            raise AnswerError("answer one number")
        return values[0]

    def misconception(self, given: int) -> str:
        return f"{self.field} {given} is too {'high' if given > self.answer else 'low'}."


class ScansProblem(KsmdCountProblem):
    """How many full scans must an attacker let ksmd make, at least, before its probe finds
    what it looks for? `probe(scans)` is the probe step for a number of scans; the steps run
    are `steps` and the probe with the answer's scans; `probe(scans, "some")` is the line the
    question shows."""

    def __init__(self, steps: Sequence[ProblemStep], probe: Callable[[int, str], ProblemStep],
                 question: str, **kwargs: Any) -> None:
        self.probe = probe
        super().__init__(steps, question, field="scans", **kwargs)

    @functools.cached_property
    def answer(self) -> int:
        """The fewest scans that make the probe find (replaying from scratch for each)."""
        for scans in range(1, 40):
            if _execute([*self.steps, self.probe(scans, "")], self.profile).slow():
                return scans
        raise ValueError("the probe never finds what it looks for")

    def run_steps(self) -> Sequence[ProblemStep]:
        return [*self.steps, self.probe(self.answer, "")]

    def setting(self) -> list[str]:
        return super().setting() + [f"    {self.probe(self.answer, 'some').text}"]

    def misconception(self, given: int) -> str:
        return f"{given} full scans are too {'many' if given > self.answer else 'few'}."


class ChoiceProblem(KsmdProblem):
    """Which of the labelled writes take a copy-on-write fault of a KSM page (the slow writes
    of the side channel)? The labels are letters: (a), (b), ... or the probe's guesses."""

    kind = "choice"

    @property
    def labels(self) -> list[str]:
        return [label for step in self.steps for label in step.labels if label]

    @property
    def answer(self) -> tuple[str, ...]:
        return self.run.slow()

    def answer_text(self) -> str:
        return " ".join(self.answer) if self.answer else "none"

    def example(self) -> str:
        return "answer = 'a c'   # the letters, or 'none'"

    def parse(self, answer: object) -> tuple[str, ...]:
        if isinstance(answer, str):
            words = answer.replace(",", " ").split()
            if [w.lower() for w in words] in (["none"], ["nothing"], []):
                return ()
        elif isinstance(answer, (list, tuple, set)):
            words = [str(x) for x in answer]
        else:
            raise AnswerError(f"{answer!r}: answer with the letters, such as 'a c', or 'none'")
        allowed = {label.lower(): label for label in self.labels}
        unknown = sorted(w for w in words if w.lower() not in allowed)
        if unknown:
            raise AnswerError(f"{', '.join(unknown)} is not one of the choices "
                              f"({', '.join(sorted(allowed.values()))})")
        return tuple(sorted({allowed[w.lower()] for w in words}))

    def misconception(self, given: tuple[str, ...]) -> str:
        extra = sorted(set(given) - set(self.answer))
        missing = sorted(set(self.answer) - set(given))
        parts = []
        if extra:
            parts.append(f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not slow")
        if missing:
            parts.append(f"you left out {'one' if len(missing) == 1 else 'some'} that "
                         f"{'is' if len(missing) == 1 else 'are'}")
        return "; ".join(parts) + "."


# -- generators -------------------------------------------------------------------------------

#: The /sys/kernel/mm/ksm files every ksmd problem needs (a kernel with ksmd).
_KSMD = ("run",)


_GATE = ("A page's first visit only stores its checksum: a new rmap_item starts with "
         "oldchecksum 0, so the page is volatile until a second visit finds the checksum "
         "unchanged (cmp_and_merge_page()).")
_GROUPS = ("Group the pages by content, across processes. A group of n >= 2 identical pages "
           "becomes one KSM page: pages_shared +1, pages_sharing +(n-1). A page with no twin "
           "goes into the unstable tree: pages_unshared +1.")


def _mix(rng: random.Random, letters: int, n: int) -> list[int]:
    return [rng.randrange(1, letters + 1) for _ in range(n)]


@register("ksmd-mix", chapters=(7,), kernel="modern", needs=_KSMD)
def _ksmd_mix(rng: random.Random, profile: str) -> KsmdProblem:
    letters = rng.randrange(2, 5)
    p1 = _mix(rng, letters, rng.randrange(3, 6))
    p2 = _mix(rng, letters, rng.randrange(2, 5))
    scans = rng.choice((1, 2, 2, 3))
    steps = [map_step("p1", p1, True), map_step("p2", p2, True), scan_step(scans)]
    return CountersProblem(
        steps, f"What are pages_shared, pages_sharing, pages_unshared and "
        f"pages_volatile after {'this full scan' if scans == 1 else 'these full scans'}?",
        profile=profile,
        intro="Two processes offer their pages to KSM; ksmd scans them.",
        hints=(_GATE, _GROUPS),
        why=_GROUPS if scans > 1 else _GATE)


@register("ksmd-cow", chapters=(7, 8), kernel="modern", needs=_KSMD)
def _ksmd_cow(rng: random.Random, profile: str) -> KsmdProblem:
    extra = rng.randrange(0, 3)
    p1 = [1] + [2 + i for i in range(extra)]
    writer = rng.choice(("p1", "p2"))
    steps = [map_step("p1", p1, True), map_step("p2", (1,), True), scan_step(2),
             write_step(writer, 0, 9), scan_step(1)]
    old = get_profile(profile).break_unshared_ksm_page
    why = ("In 2.6.32, ksm_do_scan() breaks a KSM page that is left with one mapping back "
           "into a normal page, so the merge disappears entirely." if old else
           "Since 2.6.33 a KSM page left with one mapping stays a KSM page: it still counts in "
           "pages_shared, while the written page is a new page, volatile at its first visit.")
    return CountersProblem(
        steps, "What are pages_shared, pages_sharing, pages_unshared and "
        "pages_volatile after the last full scan?", profile=profile,
        intro=f"p1 and p2 share a page A; then {writer} writes to its copy.",
        hints=("A write to a merged page always takes a copy-on-write fault: the writer gets a "
               "private copy (do_wp_page() never reuses a KSM page), and the KSM page keeps "
               "the other mapping.", why),
        why=why)


@register("ksmd-max-sharing", chapters=(7,), kernel="modern",
          needs=("max_page_sharing", "stable_node_chains", "stable_node_dups"))
def _ksmd_max_sharing(rng: random.Random, profile: str) -> KsmdProblem:
    m = rng.randrange(2, 5)
    n = rng.randrange(m + 1, 4 * m + 2)
    steps = [knob_step("max_page_sharing", m), map_step("p1", (1,) * n, True), scan_step(2)]
    rule = (f"A KSM page takes at most max_page_sharing = {m} mappings. With n = {n} "
            f"identical pages: q = n // m = {n // m} full KSM pages; the r = {n % m} left "
            "over make one more KSM page if r >= 2, or stay unshared if r = 1 "
            "(stable_node_chain with dups).")
    return CountersProblem(
        steps, "What are pages_shared, pages_sharing, pages_unshared, "
        "stable_node_chains and stable_node_dups after two full scans?", profile=profile,
        fields=("pages_shared", "pages_sharing", "pages_unshared", "stable_node_chains",
                "stable_node_dups"),
        intro=f"One process maps {n} pages with the same content.",
        hints=(f"max_page_sharing = {m}: how many page-table entries can one KSM page have?",
               rule, "A content that needs two or more KSM pages gets a stable_node chain: "
               "stable_node_chains +1 and stable_node_dups + the number of its KSM pages."),
        why=rule)


@register("ksmd-profit", chapters=(7,), kernel="modern",
          needs=("use_zero_pages", "general_profit"))
def _ksmd_profit(rng: random.Random, profile: str) -> KsmdProblem:
    letters = rng.randrange(2, 4)
    pages = _mix(rng, letters, rng.randrange(4, 8)) + [0] * rng.randrange(1, 4)
    rng.shuffle(pages)
    zero = rng.choice((0, 1))
    steps = [knob_step("use_zero_pages", zero), map_step("p1", pages, True), scan_step(2)]
    rule = ("general_profit = (pages_sharing + ksm_zero_pages) * 4096 - rmap_items * 64: "
            "every page ksmd visited costs a 64-byte rmap_item, and only the extra mappings "
            "of KSM pages (and, with use_zero_pages, the zero-filled pages mapped to the zero "
            "page) save a page.")
    return KsmdCountProblem(
        steps, "What does /sys/kernel/mm/ksm/general_profit say after two full scans?",
        profile=profile, field="general_profit",
        intro="A process offers a mix of pages, some of them all zeros, to KSM.",
        hints=(_GROUPS, "use_zero_pages=1 maps zero-filled pages to the kernel's zero page: "
               "they count in ksm_zero_pages, not in pages_shared/pages_sharing.", rule),
        why=rule)


@register("ksmd-smart-scan", chapters=(7,), kernel="modern",
          needs=("smart_scan", "pages_skipped"))
def _ksmd_smart_scan(rng: random.Random, profile: str) -> KsmdProblem:
    n = rng.randrange(2, 6)
    scans = rng.randrange(4, 10)
    steps = [map_step("p1", range(1, n + 1), True), scan_step(scans)]
    rule = ("smart_scan skips a page that keeps failing to merge: from its 4th visit on, "
            "should_skip_rmap_item() processes it once, then skips it 1, 2, 4 and then 8 "
            "passes between processings. A skipped page leaves the unstable tree, so it counts "
            "as volatile: unshared after visits 2, 3, 4, 6, 9, 14, ...; volatile after 5, 7, "
            "8, 10-13, ...")
    return CountersProblem(
        steps, f"What are pages_unshared, pages_volatile and pages_skipped after "
        f"{scans} full scans?", profile=profile,
        fields=("pages_unshared", "pages_volatile", "pages_skipped"),
        intro=f"One process offers {n} pages, all different, to KSM (smart_scan is on by "
              "default).",
        hints=("No page has a twin: nothing ever merges. Which tree is each page in after "
               "each pass?", rule),
        why=rule)


@register("slow-writes", chapters=(8,), kernel="modern", needs=_KSMD)
def _slow_writes(rng: random.Random, profile: str) -> KsmdProblem:
    victim = [1, 2, 3]
    attacker = [1, 4, None, 3] if rng.random() < 0.5 else [2, 5, None, 1]
    rng.shuffle(attacker)
    steps = [map_step("victim", victim, True), map_step("attacker", attacker, True),
             fork_step("attacker", "child"), scan_step(2)]
    order = list(range(len(attacker)))
    rng.shuffle(order)
    labels = "abcd"
    writes = [write_step("attacker", i, 10 + j, labels[j]) for j, i in enumerate(order)]
    rule = ("Only a page that ksmd merged is a KSM page; a write to it always takes a "
            "copy-on-write fault. The attacker's pages merged only where another mapping "
            "(the victim's) had the same content; after fork() the child maps the same "
            "physical pages, but a COW-shared page never merges with itself, and an untouched "
            "page is never scanned.")
    return ChoiceProblem(
        steps + writes, "Which of the writes (a)-(d) take a copy-on-write fault of a "
        "KSM page? (A write to a page the child still shares faults too, and costs about as "
        "much: timing alone would not tell the attacker which is which.)",
        profile=profile,
        intro="A victim and an attacker offer pages to KSM; the attacker forks a child (which "
              "keeps running) before ksmd scans.",
        hints=("Which contents does the victim have? A page of the attacker merges only with "
               "a page of the same content in another mapping.",
               "The child shares the attacker's pages after fork(): a write by the attacker to "
               "a page it never merged is a COW fault too, but not of a KSM page "
               "(the write's trace tells the kinds apart).", rule),
        why=rule)


@register("probe-guess", chapters=(8,), kernel="modern", needs=_KSMD)
def _probe_guess(rng: random.Random, profile: str) -> KsmdProblem:
    secret = rng.randrange(1, 7)
    ways = ("madvise", "none", "prctl") if get_profile(profile).prctl_memory_merge \
        else ("madvise", "none")
    how = rng.choice(ways)
    steps = [map_step("victim", (secret, 7), how == "madvise")]
    if how == "prctl":
        steps.append(merge_any_step("victim"))
    steps.append(probe_step("attacker", range(1, 7), 2))
    rule = {"madvise": "The victim advised its pages MADV_MERGEABLE: its secret page is a "
                       "candidate, and the attacker's copy of it merges.",
            "none": "The victim never advised its pages and did not opt in with prctl: ksmd "
                    "never looks at them, so none of the attacker's guesses can merge. Only "
                    "areas a process offers to KSM can leak this way.",
            "prctl": "prctl(PR_SET_MEMORY_MERGE, 1) makes every compatible area of the victim "
                     "mergeable (MMF_VM_MERGE_ANY): its secret page is a candidate, although "
                     "the application never advised it."}[how]
    return ChoiceProblem(
        steps, "Which of the attacker's guesses come out slow (found)?",
        profile=profile,
        intro="The victim holds a secret page (one of A-F) and a page G. The attacker tries "
              "every possible secret.",
        hints=("Which of the victim's pages can ksmd see at all? Look at how the victim "
               "mapped them.", rule),
        why=rule)


@register("probe-scans", chapters=(8,), kernel="modern", needs=_KSMD)
def _probe_scans(rng: random.Random, profile: str) -> KsmdProblem:
    age = rng.randrange(1, 10)
    steps = [map_step("victim", (1,), True), scan_step(age)]
    rule = ("The attacker's page needs two visits (the checksum gate), and the merge happens "
            "in a pass where both pages are processed: one is in the unstable tree when ksmd "
            "reaches the other. smart_scan skips the victim's lone page in some passes "
            f"(after {age} visits its next visits are "
            "processed/skipped by the schedule 4 processed, 5 skipped, 6 processed, 7-8 "
            "skipped, 9 processed, 10-13 skipped, ...), and in those passes nothing can merge "
            "with it.")
    return ScansProblem(
        steps, lambda scans, shown: probe_step("attacker", (1, 2, 3), scans, shown),
        "How many full scans must the attacker let ksmd make, at least, before "
        "its write to the page holding A is slow?", profile=profile,
        intro=f"A victim's page A has been scanned {age} times when the attacker maps its "
              "guesses and advises them.",
        hints=(_GATE, rule),
        why=rule)
