"""What runs in a student's kernel: show the student's problems, record each answer.

Nothing here grades. ``record_answer`` shows the answer and attaches it, as data, to the cell's
output (MIME type ``ANSWER_MIME``); the grade is computed later, when the teacher runs
``nbgrader autograde``, by ksmbook's preprocessor in nbgrader's own process
(``ksmbook.classroom.grading``), which reads that data with ``ast.literal_eval`` and grades it
against the student's own problems. Whatever a student's code changes in the kernel, it can at
most change the value recorded: that is, answer something else.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["ANSWER_MIME", "NotAnswered", "record_answer", "recorded_answers", "show_problem",
           "student_id"]

#: The MIME type of a recorded answer: {"answer": N, "repr": repr(answer_N)}.
ANSWER_MIME = "application/vnd.ksmbook.answer+json"
#: The released file that holds each student's problem texts (variants assignments).
PROBLEMS_FILE = "problems.json"

_UNSET: Any = object()


class NotAnswered(Exception):
    """An answer cell left blank (nbgrader's Validate reports it)."""


def student_id() -> str:
    """Who is working: the hub's user name (JUPYTERHUB_USER), else the login name, which is
    what nbgrader's exchange files a submission under."""
    return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()


def record_answer(n: int, value: object = _UNSET) -> None:
    """Show ``answer_N`` and record it for grading; raise NotAnswered if it is blank."""
    __tracebackhide__ = True  # noqa: F841  (IPython: show only the cell's own line)
    if value is _UNSET or value is None or value is Ellipsis:
        raise NotAnswered(f"problem {n} has no answer yet: write answer_{n} = ... in the cell "
                          "under the problem and run it")
    text = repr(value)
    bundle = {"text/plain": f"answer_{n} = {text}  (recorded for grading)",
              ANSWER_MIME: {"answer": n, "repr": text}}
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - outside Jupyter
        print(bundle["text/plain"])
        return
    display(bundle, raw=True)
    if os.environ.get("NBGRADER_EXECUTION") == "autograde":
        # Fail closed: if the course's nbgrader_config.py lacks ksmbook's grading step, which
        # replaces this cell's output, nbgrader scores a cell that wrote to stderr 0.
        print("(to be graded by ksmbook's autograde step)", file=sys.stderr)


def recorded_answers(outputs: list[Any]) -> dict[int, str]:
    """Problem number -> the answer's repr, as ``record_answer`` attached it to `outputs` (a
    cell's outputs, read as data; the last record of a number counts)."""
    out = {}
    for o in outputs:
        shown = isinstance(o, dict) and o.get("output_type") in ("display_data", "execute_result")
        rec = o.get("data", {}).get(ANSWER_MIME) if shown else None
        if isinstance(rec, dict) and isinstance(rec.get("answer"), int) \
                and isinstance(rec.get("repr"), str):
            out[rec["answer"]] = rec["repr"]
    return out


def show_problem(n: int, folder: str | Path = ".") -> None:
    """Print problem `n` of this student's own set (from the released ``problems.json``)."""
    from .variants import student_key

    path = Path(folder) / PROBLEMS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        print(f"The problems of this assignment ({PROBLEMS_FILE}) are missing from this "
              "folder: fetch the assignment again, or ask your teacher.")
        return
    who = student_id()
    texts = data.get("students", {}).get(
        student_key(data.get("course", ""), data.get("assignment", ""), who))
    if not texts:
        print(f"There are no problems for {who!r} in this assignment: ask your teacher to "
              "add you to it.")
        return
    if not 1 <= n <= len(texts):
        print(f"This assignment has problems 1-{len(texts)}.")
        return
    print(f"(the problems of {who})\n{texts[n - 1]}")
