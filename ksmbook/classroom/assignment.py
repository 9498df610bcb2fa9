"""nbgrader source notebooks made from the exercise generators.

An assignment is the exercises that end a chapter (``chapter_exercises``), one problem after
another: the question as a locked Markdown cell, an answer cell that is an nbgrader solution
cell (the instructor's answer, computed by the simulator, between nbgrader's solution markers)
and an autograded test cell whose checks are hidden tests. The hidden test rebuilds the problem
from its generator, version, seed and kernel profile and grades the student's answer with the
problem's own ``grade()``: the failure message is the misconception feedback of ``check()``.
nbgrader's own commands (generate_assignment, release_assignment, collect, autograde,
generate_feedback, export) do everything else.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from ..exercises import CHAPTERS, Problem, chapter_exercises, generate

__all__ = ["AssignmentError", "ProblemRef", "grade_answer", "assignment_notebook",
           "write_assignment", "COURSE_CONFIG"]

#: The points an autograded test cell is worth.
POINTS = 1

_IDENT = re.compile(r"(?P<name>[A-Za-z0-9_-]+)/v(?P<version>\d+) seed (?P<seed>\d+)\Z")

#: nbgrader_config.py written into a new course folder (course_id is the folder's name).
COURSE_CONFIG = """\
# nbgrader configuration of this course folder (run nbgrader commands from here).
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {course_id!r}
# Students' answers are rebuilt and graded by ksmbook; a kernel gets this long per cell.
c.ExecutePreprocessor.timeout = 120
"""


class AssignmentError(Exception):
    """A request that cannot be turned into an assignment; the message says why."""


@dataclass(frozen=True)
class ProblemRef:
    """What rebuilds one problem: its generator, the generator's version, seed and profile."""

    generator: str
    version: int
    seed: int
    profile: str

    @classmethod
    def of(cls, problem: Problem) -> ProblemRef:
        m = _IDENT.match(problem.ident)
        if m is None:
            raise AssignmentError(f"{problem.title} does not name its generator and seed "
                                  f"({problem.ident!r})")
        return cls(m["name"], int(m["version"]), int(m["seed"]), problem.profile)

    def rebuild(self) -> Problem:
        """The problem, made again by the same version of its generator."""
        try:
            return generate(f"{self.generator}/v{self.version}", self.seed, self.profile)
        except ValueError as e:
            raise AssignmentError(f"cannot rebuild {self.generator}/v{self.version} seed "
                                  f"{self.seed}: {e}") from None


def grade_answer(generator: str, version: int, seed: int, profile: str,
                 answer: object) -> None:
    """The hidden test of one problem: rebuild it and grade `answer` with its ``grade()``.

    Raises AssertionError whose message is the feedback ``check()`` prints, unless the answer
    is correct.
    """
    problem = ProblemRef(generator, version, seed, profile).rebuild()
    feedback = problem.grade(answer)
    if not feedback.correct:
        raise AssertionError(str(feedback))


def _solution_code(problem: Problem) -> str:
    """The instructor's answer as Python source, checked by the problem's own grader."""
    text = problem.answer_text()
    candidates = []
    try:
        candidates.append((text, ast.literal_eval(text)))
    except (ValueError, SyntaxError):
        pass
    candidates.append((repr(text), text))
    for code, value in candidates:
        if problem.grade(value).correct:
            return code
    raise AssignmentError(f"{problem.title}: the simulator's answer {text!r} does not grade "
                          "as correct")


def _meta(grade_id: str, *, solution: bool = False, grade: bool = False, locked: bool = False,
          points: int = 0) -> dict[str, Any]:
    meta: dict[str, Any] = {"grade": grade, "grade_id": grade_id, "locked": locked,
                            "schema_version": 3, "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


def assignment_notebook(chapter: int, problems: list[Problem], name: str) -> Any:
    """The nbgrader source notebook of `problems` (an nbformat v4 notebook)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    intro = (f"# {name}: exercises on chapter {chapter}, {CHAPTERS[chapter]}\n\n"
             "For each problem, put your answer in the cell below it, as `answer_N = ...` in "
             "the form the problem's *Example* line shows. You may try things in new cells "
             "(`import ksmbook`), but leave the problem and test cells as they are. "
             "Then run all cells, and validate and submit from the Assignments tab.")
    nb.cells.append(nbformat.v4.new_markdown_cell(intro, metadata=_meta("intro", locked=True)))
    for n, problem in enumerate(problems, 1):
        ref = ProblemRef.of(problem)
        var = f"answer_{n}"
        nb.cells.append(nbformat.v4.new_markdown_cell(
            f"## Problem {n}\n\n```text\n{problem.text()}\n```",
            metadata=_meta(f"problem_{n}", locked=True)))
        nb.cells.append(nbformat.v4.new_code_cell(
            f"# Your answer to problem {n}: {var} = ...\n"
            f"### BEGIN SOLUTION\n{var} = {_solution_code(problem)}\n### END SOLUTION",
            metadata=_meta(f"answer_{n}", solution=True)))
        nb.cells.append(nbformat.v4.new_code_cell(
            f"# Checks {var} (the checks are hidden until grading).\n"
            "### BEGIN HIDDEN TESTS\n"
            "from ksmbook.classroom import grade_answer\n"
            f"grade_answer({ref.generator!r}, {ref.version}, {ref.seed}, {ref.profile!r}, "
            f"{var})\n"
            "### END HIDDEN TESTS",
            metadata=_meta(f"test_{n}", grade=True, locked=True, points=POINTS)))
    return nb


def write_assignment(chapter: int, course: str | Path, *, name: str | None = None,
                     count: int | None = None, seed: int = 0, force: bool = False) -> Path:
    """Write ``course/source/NAME/NAME.ipynb`` (and ``course/nbgrader_config.py`` if missing).

    `seed` 0 gives the book's own end-of-chapter exercises; another seed other problems of the
    same kinds. `count` keeps the first `count` of them. Raises AssignmentError (nothing
    written) for an unknown chapter, a bad count, an existing assignment without `force`, or
    a course folder that cannot be written.
    """
    if chapter not in CHAPTERS:
        raise AssignmentError(f"no chapter {chapter}; chapters are "
                              f"{min(CHAPTERS)}-{max(CHAPTERS)}")
    name = name or f"chapter{chapter:02d}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
        raise AssignmentError(f"assignment name {name!r}: use letters, digits, - and _")
    try:
        problems: list[Problem] = list(chapter_exercises(chapter, seed=seed))
    except ValueError as e:
        raise AssignmentError(str(e)) from None
    if count is not None:
        if not 1 <= count <= len(problems):
            raise AssignmentError(f"--count {count}: chapter {chapter} has {len(problems)} "
                                  "exercises")
        problems = problems[:count]
    nb = assignment_notebook(chapter, problems, name)

    course = Path(course)
    target = course / "source" / name / f"{name}.ipynb"
    if target.exists() and not force:
        raise AssignmentError(f"{target} exists (use --force to overwrite it)")
    if course.exists() and not course.is_dir():
        raise AssignmentError(f"{course} is not a folder")
    config = course / "nbgrader_config.py"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        nbformat.write(nb, tmp)
        tmp.replace(target)
        if not config.exists():
            config.write_text(COURSE_CONFIG.format(course_id=course.resolve().name))
    except OSError as e:
        raise AssignmentError(f"cannot write the course folder {course}: {e.strerror or e}"
                              ) from None
    return target
