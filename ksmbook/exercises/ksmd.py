"""Problems about what ksmd does with the advice (chapter 7) and about the side channel that
deduplication opens (chapter 8).

Every answer comes from running the simulator: a `KsmdProblem` replays its steps (map and
write pages, madvise, fork, write a knob, let ksmd make full scans, write a page) on a fresh
`Kernel` and reads the counters of /sys/kernel/mm/ksm (`CountersProblem`, `KsmdCountProblem`),
or the fault each write takes (``ksmbook.sidechannel.classify``) or what an attacker's probe
finds (`ChoiceProblem`).
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..constants import MADV, MAP, PAGE_SIZE, PROT
from ..kernel import Kernel, Process
from ..ksm import PR_SET_MEMORY_MERGE
from ..profiles import get_profile
from ..render.ksm_pages import page_state, pages_text
from ..sidechannel import COW_KSM, KIND_TEXT, classify, probe
from .answers import AnswerError
from .problem import Problem
from .registry import register

__all__ = ["KOp", "KsmdProblem", "CountersProblem", "KsmdCountProblem", "ChoiceProblem",
           "content_name", "COUNTER_SHORT"]

#: Short names accepted for counters in answers.
COUNTER_SHORT = {"shared": "pages_shared", "sharing": "pages_sharing",
                 "unshared": "pages_unshared", "volatile": "pages_volatile",
                 "zero": "ksm_zero_pages", "profit": "general_profit"}
_LETTERS = "ABCDEFGHJKLMNPQRSTUVW"
_FOUR = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile")


def content_name(content: int) -> str:
    """How the exercises name page contents: 0 is the zero page, 1, 2, ... are A, B, ..."""
    if content == 0:
        return "0"
    if 0 < content <= len(_LETTERS):
        return _LETTERS[content - 1]
    return str(content)


@dataclass(frozen=True)
class KOp:
    """One step of a ksmd exercise.

    kinds: "map" (args: contents; advise) maps a private anonymous area in `proc` (a new
    process if needed), writes the contents (None: untouched) and, if advise, madvises it
    MERGEABLE; "write" (index, content); "fork" (child name); "exit"; "prctl" (MERGE_ANY on);
    "knob" (name, value); "scan" (full scans); "probe" (guesses, scans: the attack of
    ``ksmbook.sidechannel.probe``).
    """

    kind: str
    proc: str = ""
    args: tuple[Any, ...] = ()
    label: str = ""

    def text(self) -> str:
        a = self.args
        if self.kind == "map":
            contents = " ".join("." if c is None else content_name(int(c))
                                for c in a[0])
            how = ", madvise(MADV_MERGEABLE)" if a[1] else " (no madvise)"
            n = len(a[0])
            return f"{self.proc}: mmap {n} page{'s' if n != 1 else ''}, write [{contents}]{how}"
        if self.kind == "write":
            what = f"{self.proc}: write {content_name(int(a[1]))} to its page {a[0]}"
            return f"({self.label}) {what}" if self.label else what
        if self.kind == "fork":
            return f"{self.proc}: fork() -> {a[0]}"
        if self.kind == "exit":
            return f"{self.proc}: exit()"
        if self.kind == "prctl":
            return f"{self.proc}: prctl(PR_SET_MEMORY_MERGE, 1)"
        if self.kind == "knob":
            return f"echo {a[1]} > /sys/kernel/mm/ksm/{a[0]}"
        if self.kind == "scan":
            n = int(a[0])
            return f"ksmd: {n} full scan{'s' if n != 1 else ''}"
        if self.kind == "probe":
            guesses = " ".join(content_name(int(g)) for g in a[0])
            scans = "some" if a[1] is None else str(a[1])
            return (f"{self.proc}: probe [{guesses}]: mmap, write the guesses, madvise, "
                    f"ksmd makes {scans} full scans, then time a write to each")
        raise ValueError(f"unknown step {self.kind!r}")


@dataclass
class _Run:
    kernel: Kernel
    procs: dict[str, Process] = field(default_factory=dict)
    areas: dict[str, int] = field(default_factory=dict)
    after: list[dict[str, int]] = field(default_factory=list)
    faults: dict[str, str] = field(default_factory=dict)
    found: list[int] = field(default_factory=list)
    probe_text: str = ""


def replay(ops: Sequence[KOp], profile: str) -> _Run:
    """Run the steps on a fresh kernel of `profile` (ksmd running: run=1)."""
    k = Kernel(profile=profile)
    k.ksmd.tracing = False
    k.sysfs["run"] = 1
    run = _Run(k)
    rw, anon = PROT.PROT_READ | PROT.PROT_WRITE, MAP.MAP_PRIVATE | MAP.MAP_ANONYMOUS
    for op in ops:
        a = op.args
        if op.kind == "map":
            p = run.procs.get(op.proc)
            if p is None:
                p = run.procs[op.proc] = k.spawn(op.proc)
            contents = list(a[0])
            addr = p.mmap(len(contents) * PAGE_SIZE, rw, anon)
            run.areas[op.proc] = addr
            for i, c in enumerate(contents):
                if c is not None:
                    p.write_pages(addr + i * PAGE_SIZE, [int(c)])
            if a[1]:
                p.madvise(addr, len(contents) * PAGE_SIZE, MADV.MADV_MERGEABLE)
        elif op.kind == "write":
            p = run.procs[op.proc]
            addr = run.areas[op.proc] + int(a[0]) * PAGE_SIZE
            if op.label:
                run.faults[op.label] = classify(p, addr)
            p.write_pages(addr, [int(a[1])])
        elif op.kind == "fork":
            child = run.procs[op.proc].fork(str(a[0]))
            run.procs[str(a[0])] = child
            run.areas[str(a[0])] = run.areas[op.proc]
        elif op.kind == "exit":
            run.procs[op.proc].exit()
        elif op.kind == "prctl":
            run.procs[op.proc].prctl(PR_SET_MEMORY_MERGE, 1)
        elif op.kind == "knob":
            k.sysfs[str(a[0])] = int(a[1])
        elif op.kind == "scan":
            k.ksmd.full_scans(int(a[0]))
        elif op.kind == "probe":
            p = run.procs.get(op.proc) or k.spawn(op.proc)
            run.procs[op.proc] = p
            result = probe(p, [int(g) for g in a[0]], scans=int(a[1]),
                           rng=random.Random(0))
            run.found = result.found
            run.probe_text = result.text({int(g): content_name(int(g)) for g in a[0]})
        else:
            raise ValueError(f"unknown step {op.kind!r}")
        run.after.append(dict(k.ksmd.counters()))
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


class KsmdProblem(Problem):
    """A question about ksmd, or about the fault a write takes, after the steps `ops`.

    `why` explains the answer (the correct message and the solution show it).
    """

    def __init__(self, ops: Sequence[KOp], question: str, *, profile: str, why: str = "",
                 intro: str = "", hints: Iterable[str] = (), title: str = "Exercise",
                 ident: str = "") -> None:
        super().__init__(question, profile=profile, intro=intro, hints=tuple(hints),
                         title=title, ident=ident)
        if not get_profile(self.profile).has_ksmd:
            raise ValueError(f"the {self.profile} kernel has no ksmd: ksmd exercises need a "
                             "kernel with ksmd")
        self.ops, self._why = tuple(ops), why
        _ = self.answer  # run now: a broken problem fails where it is made

    # -- the simulator's run --------------------------------------------------------------

    def steps(self) -> list[KOp]:
        """The steps the simulator runs (`ops`, unless a kind fills in a number)."""
        return list(self.ops)

    @functools.cached_property
    def run(self) -> _Run:
        """The simulator's run of the steps."""
        return replay(self.steps(), self.profile)

    # -- the question ---------------------------------------------------------------------

    def kernel_line(self) -> str:
        return (f"Kernel: {get_profile(self.profile).title}; ksmd running (run=1) with its "
                "default knobs unless a step changes one")

    def setting(self) -> list[str]:
        return ["", "Steps (each process maps its own private anonymous pages; A, B, ... are "
                "page contents, 0 an all-zero page, . a page never touched):",
                *(f"    {op.text()}" for op in self.ops)]

    def why(self) -> str:
        return self._why

    # -- hints and solution ---------------------------------------------------------------

    def trace_hints(self) -> list[str]:
        return ["The counters after each step:\n" + "\n".join(
            f"  {op.text():<60} " + " ".join(f"{_SHORT[f]} {c[f]}" for f in _FOUR)
            for op, c in zip(self.ops, self.run.after, strict=True))]

    def shown_counters(self) -> list[str]:
        return ["full_scans", *_FOUR]

    def work(self) -> list[str]:
        out = ["The simulator's run (counters after each step):"]
        shown = self.shown_counters()
        for op, c in zip(self.ops, self.run.after, strict=True):
            out.append(f"  {op.text()}")
            out.append("      " + ", ".join(f"{f} {c[f]}" for f in shown))
        if self.run.faults:
            out += ["", "The fault each labelled write took:"]
            out += [f"  ({label}) {KIND_TEXT[kind]}" for label, kind in self.run.faults.items()]
        if self.run.probe_text:
            out += ["", "The probe:", self.run.probe_text]
        names = {c: content_name(c) for c in range(len(_LETTERS) + 1)}
        out += ["", "The pages at the end:", pages_text(page_state(self.run.kernel,
                                                                  names=names))]
        return out


class CountersProblem(KsmdProblem):
    """What are the counters `fields` of /sys/kernel/mm/ksm after the steps? An answer is a
    tuple of ints in that order, a dict of counter names (short names too), or the numbers as
    text."""

    kind = "counters"

    def __init__(self, ops: Sequence[KOp], question: str, *,
                 fields: Sequence[str] = _FOUR, **kwargs: Any) -> None:
        self.fields = tuple(fields)
        super().__init__(ops, question, **kwargs)

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
    """One number: the counter `field` after the steps, or what `measure(ops, profile)`
    computes (such as the fewest scans that make a probe succeed)."""

    kind = "count"

    def __init__(self, ops: Sequence[KOp], question: str, *, field: str,
                 measure: Callable[[Sequence[KOp], str], int] | None = None,
                 **kwargs: Any) -> None:
        self.field, self._measure = field, measure
        super().__init__(ops, question, **kwargs)

    @functools.cached_property
    def answer(self) -> int:
        if self._measure is not None:
            return self._measure(self.ops, self.profile)
        return self.run.after[-1][self.field]

    def steps(self) -> list[KOp]:
        """A probe of "some" scans makes as many as the answer says."""
        return [KOp(op.kind, op.proc, (op.args[0], self.answer), op.label)
                if op.kind == "probe" and op.args[1] is None else op for op in self.ops]

    def parse(self, answer: object) -> int:
        values = _ints(answer, "a number")
        if len(values) != 1:
            raise AnswerError("answer one number")
        return values[0]

    def misconception(self, given: int) -> str:
        high = given > self.answer
        what = "scans" if self.field == "scans" else self.field
        return f"{given} is too {'many' if high else 'few'} {what}." if what == "scans" \
            else f"{what} {given} is too {'high' if high else 'low'}."


class ChoiceProblem(KsmdProblem):
    """Which of the labelled steps: `choose` "cow-ksm" picks the writes that take a COW fault
    of a KSM page, "found" the guesses an attacker's probe finds."""

    kind = "choice"

    def __init__(self, ops: Sequence[KOp], question: str, *, choose: str,
                 **kwargs: Any) -> None:
        self.choose = choose
        super().__init__(ops, question, **kwargs)

    @property
    def answer(self) -> tuple[str, ...]:
        if self.choose == "found":
            return tuple(content_name(c) for c in self.run.found)
        return tuple(sorted(label for label, kind in self.run.faults.items()
                            if kind == COW_KSM))

    def answer_text(self) -> str:
        return " ".join(self.answer) if self.answer else "none"

    def example(self) -> str:
        return "answer = 'a c'   (the letters, or 'none')"

    def parse(self, answer: object) -> tuple[str, ...]:
        if isinstance(answer, str):
            words = answer.replace(",", " ").split()
            if [w.lower() for w in words] in (["none"], ["nothing"], []):
                return ()
        elif isinstance(answer, (list, tuple, set)):
            words = [str(x) for x in answer]
        else:
            raise AnswerError(f"{answer!r}: answer with the letters, such as 'a c', or 'none'")
        if self.choose == "found":
            allowed = {content_name(int(g)) for op in self.ops if op.kind == "probe"
                       for g in op.args[0]}
            picked = {w.upper() if len(w) == 1 else w for w in words}
        else:
            allowed = {op.label for op in self.ops if op.label}
            picked = {w.lower() for w in words}
        unknown = picked - allowed
        if unknown:
            raise AnswerError(f"{', '.join(sorted(unknown))} is not one of the choices "
                              f"({', '.join(sorted(allowed))})")
        return tuple(sorted(picked))

    def misconception(self, given: tuple[str, ...]) -> str:
        extra = sorted(set(given) - set(self.answer))
        missing = sorted(set(self.answer) - set(given))
        what = "found" if self.choose == "found" else "slow"
        parts = []
        if extra:
            parts.append(f"{', '.join(extra)} {'is' if len(extra) == 1 else 'are'} not {what}")
        if missing:
            parts.append(f"you left out {'one' if len(missing) == 1 else 'some'} that "
                         f"{'is' if len(missing) == 1 else 'are'}")
        return "; ".join(parts) + "."


_SHORT = {v: k for k, v in COUNTER_SHORT.items()}


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
    ops = [KOp("map", "p1", (tuple(p1), True)), KOp("map", "p2", (tuple(p2), True)),
           KOp("scan", args=(scans,))]
    return CountersProblem(
        ops, f"What are pages_shared, pages_sharing, pages_unshared and "
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
    ops = [KOp("map", "p1", (tuple(p1), True)), KOp("map", "p2", ((1,), True)),
           KOp("scan", args=(2,)), KOp("write", writer, (0, 9)), KOp("scan", args=(1,))]
    old = get_profile(profile).break_unshared_ksm_page
    why = ("In 2.6.32, ksm_do_scan() breaks a KSM page that is left with one mapping back "
           "into a normal page, so the merge disappears entirely." if old else
           "Since 2.6.33 a KSM page left with one mapping stays a KSM page: it still counts in "
           "pages_shared, while the written page is a new page, volatile at its first visit.")
    return CountersProblem(
        ops, "What are pages_shared, pages_sharing, pages_unshared and "
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
    ops = [KOp("knob", args=("max_page_sharing", m)), KOp("map", "p1", ((1,) * n, True)),
           KOp("scan", args=(2,))]
    rule = (f"A KSM page takes at most max_page_sharing = {m} mappings. With n = {n} "
            f"identical pages: q = n // m = {n // m} full KSM pages; the r = {n % m} left "
            "over make one more KSM page if r >= 2, or stay unshared if r = 1 "
            "(stable_node_chain with dups).")
    return CountersProblem(
        ops, "What are pages_shared, pages_sharing, pages_unshared, "
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
    ops = [KOp("knob", args=("use_zero_pages", zero)), KOp("map", "p1", (tuple(pages), True)),
           KOp("scan", args=(2,))]
    rule = ("general_profit = (pages_sharing + ksm_zero_pages) * 4096 - rmap_items * 64: "
            "every page ksmd visited costs a 64-byte rmap_item, and only the extra mappings "
            "of KSM pages (and, with use_zero_pages, the zero-filled pages mapped to the zero "
            "page) save a page.")
    return KsmdCountProblem(
        ops, "What does /sys/kernel/mm/ksm/general_profit say after two full scans?",
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
    ops = [KOp("map", "p1", (tuple(range(1, n + 1)), True)), KOp("scan", args=(scans,))]
    rule = ("smart_scan skips a page that keeps failing to merge: from its 4th visit on, "
            "should_skip_rmap_item() processes it once, then skips it 1, 2, 4 and then 8 "
            "passes between processings. A skipped page leaves the unstable tree, so it counts "
            "as volatile: unshared after visits 2, 3, 4, 6, 9, 14, ...; volatile after 5, 7, "
            "8, 10-13, ...")
    return CountersProblem(
        ops, f"What are pages_unshared, pages_volatile and pages_skipped after "
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
    ops: list[KOp] = [KOp("map", "victim", (tuple(victim), True)),
                      KOp("map", "attacker", (tuple(attacker), True)),
                      KOp("fork", "attacker", ("child",)), KOp("scan", args=(2,))]
    order = list(range(len(attacker)))
    rng.shuffle(order)
    labels = "abcd"
    writes = [KOp("write", "attacker", (i, 10 + j), labels[j]) for j, i in enumerate(order)]
    rule = ("Only a page that ksmd merged is a KSM page; a write to it always takes a "
            "copy-on-write fault. The attacker's pages merged only where another mapping "
            "(the victim's) had the same content; after fork() the child maps the same "
            "physical pages, but a COW-shared page never merges with itself, and an untouched "
            "page is never scanned.")
    return ChoiceProblem(
        ops + writes, "Which of the writes (a)-(d) take a copy-on-write fault of a "
        "KSM page, the slow write that tells the attacker another process has the same page?",
        profile=profile, choose=COW_KSM,
        intro="A victim and an attacker offer pages to KSM; the attacker forks a child (which "
              "keeps running) before ksmd scans.",
        hints=("Which contents does the victim have? A page of the attacker merges only with "
               "a page of the same content in another mapping.",
               "The child shares the attacker's pages after fork(): a write by the attacker to "
               "a page it never merged is a COW fault too, but not of a KSM page "
               "(sidechannel.classify() tells the kinds apart).", rule),
        why=rule)


@register("probe-guess", chapters=(8,), kernel="modern", needs=_KSMD)
def _probe_guess(rng: random.Random, profile: str) -> KsmdProblem:
    secret = rng.randrange(1, 7)
    ways = ("madvise", "none", "prctl") if get_profile(profile).prctl_memory_merge \
        else ("madvise", "none")
    how = rng.choice(ways)
    ops = [KOp("map", "victim", ((secret, 7), how == "madvise"))]
    if how == "prctl":
        ops.append(KOp("prctl", "victim"))
    ops.append(KOp("probe", "attacker", (tuple(range(1, 7)), 2)))
    rule = {"madvise": "The victim advised its pages MADV_MERGEABLE: its secret page is a "
                       "candidate, and the attacker's copy of it merges.",
            "none": "The victim never advised its pages and did not opt in with prctl: ksmd "
                    "never looks at them, so none of the attacker's guesses can merge. Only "
                    "areas a process offers to KSM can leak this way.",
            "prctl": "prctl(PR_SET_MEMORY_MERGE, 1) makes every compatible area of the victim "
                     "mergeable (MMF_VM_MERGE_ANY): its secret page is a candidate, although "
                     "the application never advised it."}[how]
    return ChoiceProblem(
        ops, "Which of the attacker's guesses come out slow (found)?",
        profile=profile, choose="found",
        intro="The victim holds a secret page (one of A-F) and a page G. The attacker tries "
              "every possible secret.",
        hints=("Which of the victim's pages can ksmd see at all? Look at how the victim "
               "mapped them.", rule),
        why=rule)


def _scans_until_found(ops: Sequence[KOp], profile: str) -> int:
    """The fewest full scans after the attacker's madvise that make the probe find the
    secret (replaying the steps from scratch for each count)."""
    head, last = list(ops[:-1]), ops[-1]
    for scans in range(1, 40):
        trial = head + [KOp("probe", last.proc, (last.args[0], scans))]
        if replay(trial, profile).found:
            return scans
    raise ValueError("the probe never finds the secret")


@register("probe-scans", chapters=(8,), kernel="modern", needs=_KSMD)
def _probe_scans(rng: random.Random, profile: str) -> KsmdProblem:
    age = rng.randrange(1, 10)
    ops = [KOp("map", "victim", ((1,), True)), KOp("scan", args=(age,)),
           KOp("probe", "attacker", ((1, 2, 3), None))]
    rule = ("The attacker's page needs two visits (the checksum gate), and the merge happens "
            "in a pass where both pages are processed: one is in the unstable tree when ksmd "
            "reaches the other. smart_scan skips the victim's lone page in some passes "
            f"(after {age} visits its next visits are "
            "processed/skipped by the schedule 4 processed, 5 skipped, 6 processed, 7-8 "
            "skipped, 9 processed, 10-13 skipped, ...), and in those passes nothing can merge "
            "with it.")
    return KsmdCountProblem(
        ops, "How many full scans must the attacker let ksmd make, at least, before "
        "its write to the page holding A is slow?", profile=profile, field="scans",
        intro=f"A victim's page A has been scanned {age} times when the attacker maps its "
              "guesses and advises them.",
        measure=_scans_until_found,
        hints=(_GATE, rule),
        why=rule)
