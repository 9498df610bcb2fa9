"""Grading outside the student's reach: ksmbook's step of ``nbgrader autograde``.

A course's ``nbgrader_config.py`` (written by ``classroom assignment``) sets::

    from ksmbook.classroom.grading import AUTOGRADE_PREPROCESSORS
    c.Autograde.autograde_preprocessors = AUTOGRADE_PREPROCESSORS

which is nbgrader's own list with two changes:

- ``SandboxExecute`` runs the student's notebook in a kernel started in an empty private
  folder and a mount namespace where the course folder and the exchange (and, not as root, the
  teacher's home) are hidden; as root, as a throwaway uid of its own: the student's code cannot
  write the gradebook, read the course secret, edit the course's configuration or read
  classmates' submissions (``ksmbook.classroom.sandbox``).
- ``GradeAnswers``, after the notebook ran and before nbgrader saves the grades, reads the
  answer each test cell recorded (``ksmbook.classroom.student.record_answer``) as DATA
  (``ast.literal_eval``, never eval), rebuilds that student's problems from the course's plan
  (and secret), grades the answer with the problem's own grader, and replaces the test cell's
  output with the verdict: a line of text on stdout (full points) or stderr (no points). A test
  cell that recorded nothing (suppressed, deleted, blank) scores 0. Every error output of the
  notebook becomes one plain line (no traceback, no paths).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from nbconvert.preprocessors import ClearMetadataPreprocessor
from nbformat.notebooknode import NotebookNode, from_dict
from nbgrader.api import Gradebook, MissingEntry  # type: ignore[import-untyped]
from nbgrader.coursedir import CourseDirectory  # type: ignore[import-untyped]
from nbgrader.preprocessors import (  # type: ignore[import-untyped]
    AssignLatePenalties,
    CheckCellMetadata,
    Execute,
    IgnorePattern,
    LimitOutput,
    NbGraderPreprocessor,
    SaveAutoGrades,
)

from ..exercises import Problem
from .assignment import _plain
from .student import recorded_answers
from .variants import VariantError, load_plan, load_secret, problems_for

__all__ = ["AUTOGRADE_PREPROCESSORS", "GradeAnswers", "SandboxExecute", "verdict"]

#: The longest recorded answer read (a layout answer is a few hundred characters).
MAX_ANSWER = 20_000


def verdict(problem: Problem, n: int, recorded: str | None) -> tuple[bool, str]:
    """(correct, feedback text) for the answer to problem `n` recorded as `recorded` (the
    repr the test cell showed; None if it recorded nothing)."""
    if recorded is None:
        return False, (f"Problem {n}: no answer was recorded (answer_{n} was blank, or the "
                       "cell that records it did not run): 0 points.")
    if len(recorded) > MAX_ANSWER:
        return False, f"Problem {n}: the answer is too long to read: 0 points."
    try:
        value = ast.literal_eval(recorded)
    except Exception:  # noqa: BLE001  (any unreadable text is an unreadable answer)
        return False, (f"Problem {n}: answer_{n} is not a plain value (a number, a string, "
                       "True/False, or a list of tuples, as the Example line shows): 0 points.")
    try:
        fb = problem.grade(value)
    except Exception:  # noqa: BLE001
        return False, f"Problem {n}: cannot read that answer: 0 points."
    return bool(fb.correct), f"Problem {n}: {_plain(fb.message)}"


def _stream(name: str, text: str) -> NotebookNode:
    return from_dict({"output_type": "stream", "name": name, "text": text + "\n"})


def _plain_errors(nb: NotebookNode) -> None:
    """Every error output becomes one line of stderr text: no traceback, no file paths."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [_stream("stderr", ": ".join(
            x for x in (o.get("ename") or "Error", o.get("evalue")) if x))
            if o.get("output_type") == "error" else o for o in cell.outputs]


class GradeAnswers(NbGraderPreprocessor):
    """Grade the recorded answers of a ksmbook assignment (see the module's docstring)."""

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]
                   ) -> tuple[NotebookNode, dict[str, Any]]:
        info = resources["nbgrader"]
        assignment, student, notebook = info["assignment"], info["student"], info["notebook"]
        course = Path(CourseDirectory(config=self.config).root)
        plan = load_plan(course, assignment)
        if plan is None or notebook != assignment:
            return nb, resources
        try:
            secret = None if plan.mode == "seed" else load_secret(course)
            problems = problems_for(plan, secret, student)
        except VariantError as e:
            raise RuntimeError(f"ksmbook cannot grade {assignment} for {student}: {e}"
                               ) from None
        cells = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells
                 if "grade_id" in c.metadata.get("nbgrader", {})}
        score = 0
        for n, problem in enumerate(problems, 1):
            gid = f"test_{n}"
            cell = cells.get(gid)
            if cell is None:
                # Deleted: 0 (no stale score of an earlier run), and a plain cell that says so
                # (nbgrader's export sees the grade cell missing).
                self._zero(gid, info)
                after = cells.get(f"answer_{n}")
                cell = from_dict({"cell_type": "code", "execution_count": None,
                                  "metadata": {}, "outputs": [],
                                  "source": f"# (the cell that recorded answer_{n})"})
                nb.cells.insert(nb.cells.index(after) + 1 if after is not None
                                else len(nb.cells), cell)
                correct, text = False, (f"Problem {n}: the cell that records answer_{n} was "
                                        "deleted from this notebook: 0 points.")
            else:
                recorded = recorded_answers(cell.get("outputs", [])).get(n)
                correct, text = verdict(problem, n, recorded)
            score += correct
            cell.outputs = [_stream("stdout" if correct else "stderr", text)]
        _plain_errors(nb)
        self.log.info("ksmbook graded %s for %s: %d of %d problems right", assignment, student,
                      score, len(problems))
        return nb, resources

    def _zero(self, gid: str, info: dict[str, Any]) -> None:
        try:
            with Gradebook(info["db_url"]) as gb:
                grade = gb.find_grade(gid, info["notebook"], info["assignment"],
                                      info["student"])
                grade.auto_score = 0.0  # (left needing a look: nbgrader flags it so)
                gb.db.commit()
        except MissingEntry:
            pass


class SandboxExecute(Execute):
    """nbgrader's Execute, with the student's kernel in ksmbook's sandbox."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from .sandbox import SandboxKernelManager

        kwargs["kernel_manager_class"] = SandboxKernelManager
        super().__init__(*args, **kwargs)


#: nbgrader 0.9's Autograde.autograde_preprocessors, with ksmbook's two steps.
AUTOGRADE_PREPROCESSORS = [SandboxExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                           GradeAnswers, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
