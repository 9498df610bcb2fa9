"""`python -m ksmbook quiz`: problem sets for a classroom, with or without their answers."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..profiles import PROFILES
from ..scenario import Boot, Scenario, ScenarioError, boot, parse, run
from .ksmd import CountersProblem, ProblemStep
from .problem import Problem
from .sets import CHAPTERS, QUIZ_POOLS, QUIZ_VERSION, problem_set, student_seed
from .vma import (
    AdviceProblem,
    CountProblem,
    LayoutProblem,
    MmfProblem,
    ResultProblem,
    ScenarioProblem,
)

__all__ = ["add_quiz_parser", "quiz"]

SECRET_ENV = "KSMBOOK_QUIZ_SECRET"

#: --ask for --replay: (problem class, its options, question).
_ASK: dict[str, tuple[type[ScenarioProblem], dict[str, Any], str]] = {
    "result": (ResultProblem, {}, "What does the last operation return?"),
    "vmas": (CountProblem, {"measure": "vmas"}, "How many VMAs does {proc} have at the end?"),
    "splits": (CountProblem, {"measure": "splits"},
               "How many times does the last operation call split_vma()?"),
    "merges": (CountProblem, {"measure": "merges"},
               "How many times does the last operation merge VMAs?"),
    "mmf": (MmfProblem, {}, "Is MMF_VM_MERGEABLE set in {proc}'s mm at the end?"),
    "layout": (LayoutProblem, {}, "What are {proc}'s VMAs at the end?"),
    "advice": (AdviceProblem, {}, "Which advice did the last madvise give?"),
}

_DESCRIPTION = """\
Print a set of problems about madvise(MADV_MERGEABLE), the VMAs and ksmd, generated from a
seed: the same seed always gives the same problems. --solve prints each problem with its
answer and the simulator's run (the maps after every operation and the kernel path of the
asked one, or ksmd's counters after each step). Every answer is computed by the simulator."""

_EPILOG = f"""\
one set per student:
  A teacher can give every student a different set that only the teacher can
  regenerate: --student ID --secret S derives the seed as the first 8 bytes of
  HMAC-SHA256(key=S, message="ksmbook-quiz/" + ID). Without S, nobody can tell
  which seed belongs to which student; with it, the teacher re-runs the same command
  with --solve to get the answer key. The secret may also be given in the
  environment variable {SECRET_ENV} (so it stays out of the shell history).

    python -m ksmbook quiz --student alice --secret 'our class 2026' -n 6
    python -m ksmbook quiz --student alice --secret 'our class 2026' -n 6 --solve

replaying a problem:
  --replay FILE asks one question (--ask) about the last operation of a scenario
  file (the language of 'python -m ksmbook run'), or about ksmd's counters at its
  end (--ask counters), e.g. to check a problem written by hand:
    python -m ksmbook quiz --replay s.txt --ask layout --solve

chapters: {"; ".join(f"{n} {t}" for n, t in CHAPTERS.items())}.
Problem sets are versioned (--quiz-version, now {QUIZ_VERSION}); a published
seed gives the same problems in every later release."""


def add_quiz_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `quiz` command to the `python -m ksmbook` parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "quiz", help="print a seeded problem set (with --solve: and its answers)",
        description=_DESCRIPTION, epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    who = p.add_mutually_exclusive_group()
    who.add_argument("-s", "--seed", type=int, default=0, help="the set's seed (default 0)")
    who.add_argument("--student", metavar="ID",
                     help="derive the seed from this student id and --secret (HMAC-SHA256)")
    p.add_argument("--secret", metavar="S",
                   help=f"the teacher's secret for --student (default: ${SECRET_ENV})")
    p.add_argument("-n", "--count", type=int, default=5, help="number of problems (default 5)")
    p.add_argument("--profile", choices=list(PROFILES),
                   help="the kernel the problems run on (default: each problem's own; with "
                        "--replay, the scenario's kernel line)")
    p.add_argument("--chapter", type=int, action="append", choices=sorted(CHAPTERS),
                   help="only problems on this chapter's topics (repeatable)")
    p.add_argument("--quiz-version", type=int, default=QUIZ_VERSION,
                   choices=sorted(QUIZ_POOLS), help="problem-set version (default: latest)")
    p.add_argument("-c", "--solve", action="store_true",
                   help="print the answers and step traces too")
    p.add_argument("--replay", metavar="FILE",
                   help="one problem from a scenario file ('-' for standard input)")
    p.add_argument("--ask", choices=[*_ASK, "counters"], default="result",
                   help="with --replay: what to ask about the last operation, or ksmd's "
                        "counters at the end (default result)")
    p.add_argument("--proc", default="p1", help="with --replay: the process asked about")
    p.set_defaults(func=quiz)
    return p


def _replay(args: argparse.Namespace) -> list[Problem]:
    text = sys.stdin.read() if args.replay == "-" else Path(args.replay).read_text("utf-8")
    if args.ask == "counters":
        return [_counters(parse(text), args)]
    cls, options, question = _ASK[args.ask]
    return [cls(parse(text), question.format(proc=args.proc), proc=args.proc,
                profile=args.profile, base=_lowest(text), title="Problem 1",
                ident=os.path.basename(args.replay), **options)]


def _counters(sc: Scenario, args: argparse.Namespace) -> Problem:
    """ksmd's four counters after a scenario's statements (ksmd running, run=1)."""
    kernel = sc.kernel
    if not kernel.ksm:
        raise ValueError("a kernel built with CONFIG_KSM=n has no ksmd")
    steps = [ProblemStep(str(op), (op,)) for op in sc.ops if not isinstance(op, Boot)]
    return CountersProblem(steps, "What are pages_shared, pages_sharing, pages_unshared and "
                           "pages_volatile at the end?", profile=args.profile or kernel.profile,
                           legend="Steps (the scenario's statements; page contents are "
                                  "numbers, 0 an all-zero page):",
                           title="Problem 1", ident=os.path.basename(args.replay))


def _lowest(text: str) -> int:
    """The start of the scenario's lowest mapping, page 0 of a replayed layout."""
    sc = parse(text)
    starts = [e.start for r in run(sc, boot(sc)) for es in r.maps.values() for e in es]
    return min(starts, default=0)


def quiz(args: argparse.Namespace) -> int:
    """Print the problem set (and its answers with --solve)."""
    try:
        if args.replay:
            problems = _replay(args)
            header = f"ksmbook problem from {args.replay}"
        else:
            if args.student is not None:
                secret = args.secret or os.environ.get(SECRET_ENV, "")
                if not secret:
                    print(f"quiz: --student needs --secret (or ${SECRET_ENV})", file=sys.stderr)
                    return 2
                seed, who = student_seed(args.student, secret), f"student {args.student}"
            else:
                if args.secret:
                    print("quiz: --secret is only used with --student", file=sys.stderr)
                    return 2
                seed, who = args.seed, f"seed {args.seed}"
            chapters = tuple(args.chapter) if args.chapter else None
            problems = problem_set(seed, args.count, profile=args.profile,
                                   chapters=chapters,
                                   version=args.quiz_version)
            n = len(problems)
            header = (f"ksmbook quiz v{args.quiz_version}, {who}: {n} problem"
                      + ("" if n == 1 else "s") + (" with answers" if args.solve else ""))
    except (ScenarioError, ValueError, OSError) as e:
        print(f"quiz: {e}", file=sys.stderr)
        return 2
    print(header)
    for ex in problems:
        print(f"\n{'=' * 72}\n{ex.text()}")
        if args.solve:
            print(f"\nSolution\n{ex.solution_text()}")
    return 0
