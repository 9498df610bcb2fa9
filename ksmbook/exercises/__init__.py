"""Exercises: seeded problems about the madvise/KSM interface and ksmd, answered by the simulator.

    from ksmbook.exercises import chapter_exercises
    ex = chapter_exercises(2)      # the exercises that end chapter 2
    ex[0].show()                   # the question
    ex[0].check("ENOMEM")          # feedback aimed at the likely misconception
    ex[0].hint()                   # more detail at each call
    ex[0].solution()               # the answer with the simulator's run

Every problem is a `Problem`: one class per kind of question (`ResultProblem`, `CountProblem`,
`MmfProblem`, `AdviceProblem`, `LayoutProblem` about a scenario's last operation;
`CountersProblem`, `KsmdCountProblem`, `ChoiceProblem`, `ScansProblem` about ksmd, whose
`ProblemStep`s are scenario statements). `generate(name, seed, profile)` makes one problem
(the same one for the same seed, always); `problem_set(seed, count)` a classroom quiz (also
`python -m ksmbook quiz`).
"""

from . import generators as _generators  # noqa: F401  (registers chapters 0-6)
from . import thp as _thp  # noqa: F401  (registers chapter 9)
from .answers import AnswerError, LayoutEntry, parse_layout, parse_result
from .ksmd import (
    ChoiceProblem,
    CountersProblem,
    KsmdCountProblem,
    KsmdProblem,
    ProblemStep,
    ScansProblem,
)
from .problem import Feedback, Problem
from .registry import GENERATORS, VERSIONS, Generator, generate, generator, register
from .sets import (
    CHAPTER_SETS,
    CHAPTERS,
    QUIZ_POOLS,
    QUIZ_VERSION,
    chapter_exercises,
    problem_set,
    student_seed,
)
from .vma import (
    BASE,
    AdviceProblem,
    CountProblem,
    LayoutProblem,
    MmfProblem,
    ResultProblem,
    ScenarioProblem,
)

__all__ = ["Problem", "Feedback", "AnswerError", "LayoutEntry", "BASE", "ScenarioProblem",
           "ResultProblem", "CountProblem", "MmfProblem", "AdviceProblem", "LayoutProblem",
           "KsmdProblem", "CountersProblem", "KsmdCountProblem", "ChoiceProblem", "ScansProblem",
           "ProblemStep", "GENERATORS", "VERSIONS", "Generator", "generate", "generator",
           "register",
           "chapter_exercises", "problem_set", "student_seed", "CHAPTERS", "CHAPTER_SETS",
           "QUIZ_POOLS", "QUIZ_VERSION", "parse_layout", "parse_result"]
