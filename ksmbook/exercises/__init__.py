"""Exercises: seeded problems about the madvise/KSM interface, answered by the simulator.

    from ksmbook.exercises import chapter_exercises
    ex = chapter_exercises(2)      # the exercises that end chapter 2
    ex[0].show()                   # the question
    ex[0].check("ENOMEM")          # feedback aimed at the likely misconception
    ex[0].hint()                   # more detail at each call
    ex[0].solution()               # the answer with the step trace

`generate(name, seed, profile)` makes one problem (the same one for the same seed, always);
`problem_set(seed, count)` a classroom quiz (also `python -m ksmbook quiz`).
"""

from .answers import AnswerError, LayoutEntry, parse_layout, parse_result
from .core import BASE, KINDS, Exercise, Feedback
from .generators import GENERATORS, Generator, generate, register
from .ksmd import KSMD_GENERATORS, KsmdExercise, generate_ksmd
from .sets import (
    CHAPTER_SETS,
    CHAPTERS,
    QUIZ_POOLS,
    QUIZ_VERSION,
    chapter_exercises,
    problem_set,
    student_seed,
)

__all__ = ["Exercise", "Feedback", "AnswerError", "LayoutEntry", "BASE", "KINDS", "GENERATORS",
           "Generator", "generate", "register", "chapter_exercises", "problem_set",
           "student_seed", "CHAPTERS", "CHAPTER_SETS", "QUIZ_POOLS", "QUIZ_VERSION",
           "parse_layout", "parse_result", "KsmdExercise", "KSMD_GENERATORS", "generate_ksmd"]
