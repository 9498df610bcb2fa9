"""nbgrader source notebooks made from the exercise generators.

An assignment is the exercises that end a chapter (``chapter_exercises``), one problem after
another: the question (a locked cell), an answer cell (an nbgrader solution cell: the
instructor's answer, computed by the simulator, between nbgrader's solution markers) and a
locked, autograded test cell that only records the answer: ``record_answer(N, answer_N)``
(``ksmbook.classroom.student``). Nothing is hidden in the test cells, so the released cells
are the source's (no checksum warnings), and nothing is graded in the student's kernel: the
course's ``nbgrader_config.py`` registers ksmbook's autograde step
(``ksmbook.classroom.grading``), which grades each recorded answer in nbgrader's own process.

Where the problems come from (``ksmbook.classroom.variants``):

- default: one problem set for the class, its seeds drawn from the course secret;
- ``variants=True``: each student's own problems (from the secret and the student's id); the
  released folder carries every listed student's problem texts (``problems.json``, keyed by a
  hash of the id), and each problem cell shows the student's own;
- ``seed=S``: ``chapter_exercises(chapter, seed=S)``; ``seed=0`` is the book's own exercises,
  whose ``solution()`` every student has (a warning says so).

``written`` adds "explain why" questions (nbgrader manually graded answers) after the chosen
problems, with a rubric drawn from what the problem's wrong answers reveal: the rubric is the
answer cell's content in the teacher's source, which nbgrader replaces in the release.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat

from ..exercises import CHAPTER_SETS, CHAPTERS, Problem
from .student import PROBLEMS_FILE
from .variants import (
    ASSIGNMENT_NAME,
    STUDENT_ID,
    STUDENT_ID_RULE,
    Plan,
    VariantError,
    load_secret,
    make_plan,
    problems_for,
    save_plan,
    student_key,
    write_atomic,
)

__all__ = ["AssignmentError", "assignment_notebook", "write_assignment", "solution_lines",
           "COURSE_CONFIG", "GRADER_CONFIG", "wrong_answers", "write_course_config"]

_POINTERS = re.compile(r"\s*\((?:[^()]|\(\))*\b(?:hint|solution)\(\)(?:[^()]|\(\))*\)")


def _plain(message: str) -> str:
    """A feedback message without pointers to hint()/solution(), which a graded notebook
    does not have."""
    return _POINTERS.sub("", message).replace(" :", ":").strip()


SPECIMEN = "specimen"

#: The lines of a course's nbgrader_config.py that make autograde grade with ksmbook.
GRADER_CONFIG = """\
# ksmbook grades the recorded answers in nbgrader's own process, not in the students' kernels
# (ksmbook.classroom.grading); the students' kernels run sandboxed when autograde runs as root.
from ksmbook.classroom.grading import AUTOGRADE_PREPROCESSORS  # noqa: E402
c.Autograde.autograde_preprocessors = AUTOGRADE_PREPROCESSORS  # noqa: F821
"""

#: nbgrader_config.py written into a new course folder (course_id is the folder's name).
COURSE_CONFIG = """\
# nbgrader configuration of this course folder (run nbgrader commands from here).
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {course_id!r}
# A kernel gets this long per cell.
c.ExecutePreprocessor.timeout = 120
""" + GRADER_CONFIG


class AssignmentError(Exception):
    """A request that cannot be turned into an assignment; the message says why."""


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


def wrong_answers(problem: Problem, limit: int = 3) -> list[tuple[str, str]]:
    """Up to `limit` (wrong answer, what it reveals) pairs for `problem`: the right answer
    nudged, and common slips, each with the misconception the problem's grader names."""
    try:
        right: Any = ast.literal_eval(problem.answer_text())
    except (ValueError, SyntaxError):
        right = problem.answer_text()
    nudged: list[object] = []
    if isinstance(right, bool):
        nudged.append(not right)
    elif isinstance(right, int):
        nudged += [right + 1, max(right - 1, 0)]
    elif isinstance(right, tuple) and right and all(isinstance(x, int) for x in right):
        nudged.append((right[0] + 1, *right[1:]))
    elif isinstance(right, list) and right:
        nudged.append(right[:-1] or [*right, (99, 100, "mg")])
    candidates = [*nudged, 0, "ENOMEM", "EINVAL", "EAGAIN", True, False, "none", "A", "a b"]
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for value in candidates:
        try:
            fb = problem.grade(value)
        except Exception:  # noqa: BLE001
            continue
        if fb.status != "incorrect":
            continue
        message = _plain(fb.message).removeprefix("Not quite: ")
        if message not in seen:
            seen.add(message)
            out.append((repr(value), message))
        if len(out) == limit:
            break
    return out


def _meta(grade_id: str, *, solution: bool = False, grade: bool = False, locked: bool = False,
          points: int = 0) -> dict[str, Any]:
    meta: dict[str, Any] = {"grade": grade, "grade_id": grade_id, "locked": locked,
                            "schema_version": 3, "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


def _rubric(n: int, problem: Problem, points: int, variants: bool) -> str:
    lines = [f"**Rubric** ({points} points; this text is the teacher's: nbgrader replaces it "
             "with an empty answer in the students' copy)", ""]
    if variants:
        lines += ["Each student has their own problem: `python -m ksmbook classroom solutions "
                  "--student ID` prints a student's answers. For the specimen problem:", ""]
    lines += [f"- Full marks: the answer `{problem.answer_text()}` and the reason: "
              f"{problem.why() or 'the kernel rule that decides it, named.'}"]
    wrong = wrong_answers(problem)
    if wrong:
        lines += ["- Part or no marks: an explanation that shows one of these misconceptions "
                  "(the wrong answer it leads to, and what it overlooks):"]
        lines += [f"  - `{value}`: {message}" for value, message in wrong]
    return "\n".join(lines)


def assignment_notebook(chapter: int, problems: list[Problem], name: str, *,
                        variants: bool = False, points: int = 1, written: list[int] = (),  # type: ignore[assignment]
                        written_points: int = 2) -> Any:
    """The nbgrader source notebook of `problems` (an nbformat v4 notebook). With `variants`,
    `problems` is a specimen: each problem cell shows the student's own problem."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    own = (" Every student has their own problems: run the notebook's cells (Run All) to see "
           "yours." if variants else "")
    intro = (f"# {name}: exercises on chapter {chapter}, {CHAPTERS[chapter]}\n\n"
             "For each problem, put your answer in the cell below it, as `answer_N = ...` in "
             "the form the problem's *Example* line shows, and run that cell and the one "
             f"after it, which records your answer for grading.{own} You may try things in new "
             "cells (`import ksmbook`), but leave the problem and recording cells as they are. "
             "Then validate and submit from the Assignments tab: Validate tells you which "
             "answers are still blank. Your answers are graded after you submit.")
    nb.cells.append(nbformat.v4.new_markdown_cell(intro, metadata=_meta("intro", locked=True)))
    for n, problem in enumerate(problems, 1):
        var = f"answer_{n}"
        if variants:
            nb.cells.append(nbformat.v4.new_code_cell(
                f"# Problem {n}: run this cell to see your own problem {n}.\n"
                "from ksmbook.classroom import show_problem\n"
                f"show_problem({n})", metadata=_meta(f"problem_{n}", locked=True)))
            solution = (f"{var} = None  # each student's own: python -m ksmbook classroom "
                        "solutions --student ID")
        else:
            nb.cells.append(nbformat.v4.new_markdown_cell(
                f"## Problem {n}\n\n```text\n{problem.text()}\n```",
                metadata=_meta(f"problem_{n}", locked=True)))
            solution = f"{var} = {_solution_code(problem)}"
        nb.cells.append(nbformat.v4.new_code_cell(
            f"# Your answer to problem {n}: {var} = ...\n"
            f"### BEGIN SOLUTION\n{solution}\n### END SOLUTION",
            metadata=_meta(var, solution=True)))
        nb.cells.append(nbformat.v4.new_code_cell(
            f"# Records {var} for grading (run it; leave it as it is).\n"
            "from ksmbook.classroom import record_answer\n"
            f"record_answer({n}, globals().get({var!r}))",
            metadata=_meta(f"test_{n}", grade=True, locked=True, points=points)))
        if n in written:
            nb.cells.append(nbformat.v4.new_markdown_cell(
                f"### Problem {n}: explain why\n\nIn a few sentences, explain why the answer to "
                f"problem {n} is what it is: which kernel function or rule decides it, and what "
                "a different answer would have overlooked. (Graded by your teacher.)",
                metadata=_meta(f"explain_{n}_question", locked=True)))
            nb.cells.append(nbformat.v4.new_markdown_cell(
                _rubric(n, problem, written_points, variants),
                metadata=_meta(f"explain_{n}", solution=True, grade=True,
                               points=written_points)))
    return nb


def _roster(course: Path, students: list[str]) -> list[str]:
    """`students`, and the students in the course's gradebook (if it has one)."""
    out = list(students)
    db = course / "gradebook.db"
    if db.is_file():
        try:
            from nbgrader.api import Gradebook  # type: ignore[import-untyped]

            with Gradebook(f"sqlite:///{db}") as gb:
                out += [s.id for s in gb.students]
        except Exception as e:  # noqa: BLE001
            raise AssignmentError(f"cannot read the students of {db}: {e}") from None
    for s in out:
        if not STUDENT_ID.match(s):
            raise AssignmentError(f"student id {s!r}: use {STUDENT_ID_RULE}")
    return sorted(set(out))


def write_course_config(course: Path) -> None:
    """``course/nbgrader_config.py``: made (course id: the folder's name), or given ksmbook's
    grading lines if it lacks them."""
    config = course / "nbgrader_config.py"
    if not config.exists():
        config.write_text(COURSE_CONFIG.format(course_id=course.resolve().name),
                          encoding="utf-8")
    elif "ksmbook.classroom.grading" not in config.read_text():
        with config.open("a") as f:
            f.write("\n" + GRADER_CONFIG)


def write_assignment(chapter: int, course: str | Path, *, name: str | None = None,
                     count: int | None = None, seed: int | None = None,
                     variants: bool = False, students: list[str] | None = None,
                     points: int = 1, written: list[int] | None = None,
                     written_points: int = 2, force: bool = False,
                     warn: Callable[[str], None] | None = None) -> Path:
    """Write ``course/source/NAME/NAME.ipynb`` (and, with `variants`, its ``problems.json``),
    the assignment's plan and the course secret in ``course/.ksmbook/``, and
    ``course/nbgrader_config.py`` (made, or given ksmbook's grading lines if it lacks them).

    Raises AssignmentError (nothing written) for an unknown chapter, a bad count, points or
    student id, an existing assignment without `force`, a variants assignment without students,
    or a course folder that cannot be written.
    """
    if chapter not in CHAPTERS:
        raise AssignmentError(f"no chapter {chapter}; chapters are "
                              f"{min(CHAPTERS)}-{max(CHAPTERS)}")
    name = name or f"chapter{chapter:02d}"
    if not ASSIGNMENT_NAME.match(name):
        raise AssignmentError(f"assignment name {name!r}: use letters, digits, - and _")
    if variants and seed is not None:
        raise AssignmentError("--variants and --seed do not go together: variants come from "
                              "the course secret")
    if seed is not None and seed < 0:
        raise AssignmentError(f"--seed {seed}: a seed is 0 or more")
    if not 0 <= points <= 100 or not 0 <= written_points <= 100:
        raise AssignmentError("points are whole numbers from 0 to 100")
    mode = "variants" if variants else "secret" if seed is None else "seed"
    total = len(CHAPTER_SETS[chapter])
    if count is not None and not 1 <= count <= total:
        raise AssignmentError(f"--count {count}: chapter {chapter} has {total} exercises")
    plan = make_plan(name, chapter, mode=mode, count=count, seed=seed, points=points,
                     written=written, written_points=written_points)
    bad = [n for n in plan.written if not 1 <= n <= len(plan.problems)]
    if bad:
        raise AssignmentError(f"--written {bad[0]}: this assignment has problems "
                              f"1-{len(plan.problems)}")

    course = Path(course)
    if course.exists() and not course.is_dir():
        raise AssignmentError(f"{course} is not a folder")
    target = course / "source" / name / f"{name}.ipynb"
    if target.exists() and not force:
        raise AssignmentError(f"{target} exists (use --force to overwrite it)")
    roster = _roster(course, students or [])
    if variants and not roster:
        raise AssignmentError("--variants needs the students: give --students ID,ID,... or "
                              "add them to the course's gradebook first (nbgrader db "
                              "student add ID)")
    if mode == "seed" and seed == 0 and warn:
        warn("--seed 0 gives the book's own end-of-chapter exercises: every student's book "
             "prints their answers (solution()); for graded work leave --seed out (a problem "
             "set drawn from the course secret) or use --variants")
    elif mode == "seed" and warn:
        warn(f"--seed {seed}: a student who tries seeds with ksmbook.exercises can find these "
             "problems and their answers; leave --seed out for a secret problem set")

    made_course = not course.exists()
    try:
        course.mkdir(parents=True, exist_ok=True)
        if made_course:
            os.chmod(course, 0o700)
        secret = None if mode == "seed" else load_secret(course, create=True)
        specimen = problems_for(plan, secret, SPECIMEN)
        nb = assignment_notebook(chapter, specimen, name, variants=variants, points=points,
                                 written=plan.written, written_points=written_points)
        target.parent.mkdir(parents=True, exist_ok=True)
        if variants:
            texts = {student_key(course.resolve().name, name, s):
                     [p.text() for p in problems_for(plan, secret, s)] for s in roster}
            (target.parent / PROBLEMS_FILE).write_text(json.dumps(
                {"course": course.resolve().name, "assignment": name, "students": texts},
                indent=1))
        else:
            (target.parent / PROBLEMS_FILE).unlink(missing_ok=True)
        plan.students = roster if variants else []
        save_plan(course, plan)
        write_atomic(target, nbformat.writes(nb) + "\n")
        write_course_config(course)
    except VariantError as e:
        raise AssignmentError(str(e)) from None
    except OSError as e:
        raise AssignmentError(f"cannot write the course folder {course}: {e.strerror or e}"
                              ) from None
    return target


def solution_lines(course: str | Path, assignment: str, student: str, *,
                   problems: bool = False) -> list[str]:
    """The answer key of `student` for `assignment`: ``answer_N = <python literal>`` lines
    (with `problems`, each problem's text above its answer, as # comment lines)."""
    from .variants import load_plan

    if not STUDENT_ID.match(student):
        raise AssignmentError(f"student id {student!r}: use {STUDENT_ID_RULE}")
    course = Path(course)
    if not course.is_dir():
        raise AssignmentError(f"{course} is not a course folder")
    try:
        plan: Plan | None = load_plan(course, assignment)
        if plan is None:
            raise AssignmentError(f"{course} has no assignment {assignment!r} made by "
                                  "`python -m ksmbook classroom assignment`")
        if plan.mode == "variants" and student not in plan.students:
            raise AssignmentError(f"{student!r} is not among the students of {assignment} "
                                  f"({len(plan.students)} students; add them with "
                                  "`classroom assignment --variants --students ... --force`)")
        secret = None if plan.mode == "seed" else load_secret(course)
        mine = problems_for(plan, secret, student)
    except VariantError as e:
        raise AssignmentError(str(e)) from None
    out = []
    for n, p in enumerate(mine, 1):
        if problems:
            out += [f"# {line}".rstrip() for line in p.text().splitlines()]
        out.append(f"answer_{n} = {_solution_code(p)}")
    return out
