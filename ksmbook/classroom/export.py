"""Grades a teacher can use: ``python -m ksmbook classroom export --course DIR``.

Reads nbgrader's gradebook and the course folder's submissions and writes two CSV files:

- ``grades.csv``: one row per student and assignment (nbgrader's own export columns, then the
  seconds late, a status and the flags);
- ``questions.csv``: one row per student, assignment and graded cell (points, max points,
  status, flags and the autograder's message).

A submission is *flagged* when its grade cannot be trusted as it stands: its autograde failed
(nbgrader gives it 0 and says so only in its log), it was never autograded, a notebook is
missing or unreadable, or a locked cell the student received (a problem, a test cell) was
deleted or edited. The command prints who is flagged and why.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .course import Course, CourseError
from .variants import write_atomic

__all__ = ["Submission", "QuestionGrade", "collect", "write_csvs", "summary",
           "GRADE_COLUMNS", "QUESTION_COLUMNS"]

GRADE_COLUMNS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name",
                 "email", "raw_score", "late_submission_penalty", "score", "max_score",
                 "seconds_late", "status", "flagged", "flags"]
QUESTION_COLUMNS = ["assignment", "student_id", "last_name", "first_name", "email", "notebook",
                    "question", "points", "max_points", "status", "flagged", "flags",
                    "message"]

#: Submission statuses.
NOT_SUBMITTED = "not submitted"
NOT_AUTOGRADED = "not autograded"
AUTOGRADE_FAILED = "autograde failed"
NO_NOTEBOOK = "no readable notebook"
NEEDS_MANUAL = "needs manual grading"
GRADED = "graded"


@dataclass
class QuestionGrade:
    """One graded cell of one student's submission."""

    notebook: str
    question: str
    points: float
    max_points: float
    status: str  # correct, partly correct, incorrect, needs manual grading, not graded, ...
    flags: list[str] = field(default_factory=list)
    message: str = ""


@dataclass
class Submission:
    """One student's submission of one assignment (or its absence)."""

    assignment: str
    student_id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    duedate: Any = None
    timestamp: Any = None
    seconds_late: float = 0.0
    raw_score: float = 0.0
    penalty: float = 0.0
    max_score: float = 0.0
    status: str = NOT_SUBMITTED
    flags: list[str] = field(default_factory=list)
    questions: list[QuestionGrade] = field(default_factory=list)

    @property
    def score(self) -> float:
        return max(0.0, self.raw_score - self.penalty)

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


def grade_id(cell: Any) -> str | None:
    """The cell's nbgrader grade_id (None: not an nbgrader cell)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    gid = meta.get("grade_id")
    return gid if isinstance(gid, str) else None


def read_notebook(path: Path) -> tuple[Any | None, str]:
    """The notebook at `path` as plain JSON, or None and why it cannot be read."""
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"unreadable ({type(e).__name__})"
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        return None, "unreadable (not a notebook)"
    return nb, ""


def notebook_cells(path: Path) -> list[dict[str, Any]]:
    """The cells of the notebook at `path` ([] if it cannot be read)."""
    nb = read_notebook(path)[0]
    return [c for c in nb["cells"] if isinstance(c, dict)] if nb is not None else []


def cell_source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def _tampering(released: dict[str, Any], submitted: dict[str, Any]) -> list[str]:
    """The locked or graded cells of the released notebook that the submission deleted or
    changed (answer cells are the student's to change)."""
    got: dict[str, list[dict[str, Any]]] = {}
    for cell in submitted["cells"]:
        gid = grade_id(cell)
        if gid is not None:
            got.setdefault(gid, []).append(cell)
    flags = []
    for cell in released["cells"]:
        gid = grade_id(cell)
        if gid is None:
            continue
        meta = cell["metadata"]["nbgrader"]
        kind = "test cell" if meta.get("grade") and not meta.get("solution") else \
            "answer cell" if meta.get("solution") else "locked cell"
        mine = got.get(gid, [])
        if not mine:
            flags.append(f"{kind} {gid} deleted")
        elif len(mine) > 1:
            flags.append(f"{kind} {gid} duplicated")
        elif (meta.get("locked") or kind == "test cell") and \
                cell_source(mine[0]).strip() != cell_source(cell).strip():
            flags.append(f"{kind} {gid} edited")
    return flags


def _cell_message(cell: dict[str, Any]) -> str:
    """What an autograded test cell said: its error (the misconception feedback) or output."""
    texts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            ename, evalue = out.get("ename", ""), out.get("evalue", "")
            texts.append(evalue if ename == "AssertionError" else f"{ename}: {evalue}")
        elif out.get("output_type") == "stream":
            texts.append(cell_source({"source": out.get("text", "")}))
    text = " ".join(" ".join(texts).split())
    return text[:500]


def _notebook_names(course: Course, assignment: str, gb_assignment: Any) -> list[str]:
    if gb_assignment is not None and gb_assignment.notebooks:
        return sorted(n.name for n in gb_assignment.notebooks)
    return sorted(p.stem for p in (course.root / "source" / assignment).glob("*.ipynb"))


def _natural(name: str) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def _cell_order(path: Path) -> dict[str, int]:
    ids = [grade_id(c) for c in notebook_cells(path)]
    return {gid: i for i, gid in enumerate(ids) if gid is not None}


def _question_status(points: float, max_points: float) -> str:
    if max_points and points >= max_points:
        return "correct"
    return "partly correct" if points > 0 else "incorrect"


def collect(course: Course, assignment: str | None = None) -> list[Submission]:
    """Every (student, assignment) of the course's gradebook and submitted folder."""
    from nbgrader.api import MissingEntry  # type: ignore[import-untyped]

    if assignment is not None:
        course.check_assignment(assignment)
    result: list[Submission] = []
    with course.gradebook() as gb:
        known = {a.name: a for a in gb.assignments}
        names = [assignment] if assignment is not None else \
            sorted(set(known) | set(course.assignments()))
        students = {s.id: s for s in gb.students}
        submitted_root = course.root / "submitted"
        on_disk = {p.name for p in submitted_root.iterdir() if p.is_dir()} \
            if submitted_root.is_dir() else set()
        for name in names:
            gb_a = known.get(name)
            notebooks = _notebook_names(course, name, gb_a)
            cells: dict[str, list[Any]] = {}
            if gb_a is not None:
                for nb in gb_a.notebooks:
                    order = _cell_order(course.root / "source" / name / f"{nb.name}.ipynb")
                    cells[nb.name] = sorted(
                        nb.grade_cells,
                        key=lambda c, o=order: (o.get(c.name, len(o)), _natural(c.name)))  # type: ignore[misc]
            released = {n: read_notebook(course.root / "release" / name / f"{n}.ipynb")[0]
                        for n in notebooks}
            ids = sorted(set(students) | {s for s in on_disk
                                          if (submitted_root / s / name).is_dir()})
            for sid in ids:
                st = students.get(sid)
                sub = Submission(name, sid,
                                 first_name=(st.first_name or "") if st else "",
                                 last_name=(st.last_name or "") if st else "",
                                 email=(st.email or "") if st else "",
                                 duedate=gb_a.duedate if gb_a is not None else None,
                                 max_score=float(gb_a.max_score) if gb_a is not None else 0.0)
                result.append(sub)
                _fill(course, sub, notebooks, cells, released, gb, MissingEntry)
    return result


def _fill(course: Course, sub: Submission, notebooks: list[str], cells: dict[str, list[Any]],
          released: dict[str, Any], gb: Any, missing_entry: type[Exception]) -> None:
    sdir = course.root / "submitted" / sub.student_id / sub.assignment
    adir = course.root / "autograded" / sub.student_id / sub.assignment
    try:
        gsub = gb.find_submission(sub.assignment, sub.student_id)
    except missing_entry:
        gsub = None
    if not sdir.is_dir() and gsub is None:
        sub.status = NOT_SUBMITTED
        for nb_name in notebooks:
            for gc in cells.get(nb_name, []):
                sub.questions.append(QuestionGrade(nb_name, gc.name, 0.0, float(gc.max_score),
                                                   NOT_SUBMITTED))
        return
    if gsub is not None:
        sub.timestamp = gsub.timestamp
        sub.seconds_late = float(gsub.total_seconds_late or 0.0)
        sub.raw_score = float(gsub.score or 0.0)
        sub.penalty = float(gsub.late_submission_penalty or 0.0)
    readable: dict[str, Any] = {}
    for nb_name in notebooks:
        nb, why = read_notebook(sdir / f"{nb_name}.ipynb")
        if nb is None:
            sub.flags.append(f"notebook {nb_name}.ipynb {why}")
            continue
        readable[nb_name] = nb
        if released.get(nb_name) is not None:
            sub.flags.extend(_tampering(released[nb_name], nb))
    if not readable:
        sub.status = NO_NOTEBOOK
    elif gsub is None:
        sub.status = NOT_AUTOGRADED
        sub.flags.append(f"not autograded yet (run nbgrader autograde {sub.assignment})")
    else:
        autograded = {n: read_notebook(adir / f"{n}.ipynb")[0] for n in notebooks}
        failed = [n for n in readable if autograded.get(n) is None]
        if failed:
            sub.status = AUTOGRADE_FAILED
            sub.flags.append(f"autograde failed for {', '.join(f'{n}.ipynb' for n in failed)} "
                             "(scored 0; nbgrader autograde's output says why)")
        else:
            sub.status = NEEDS_MANUAL if gsub.needs_manual_grade else GRADED
    own_cell = re.compile(r"(?:test|answer|locked) cell (\S+) |(\S+): not graded")
    whole = [f for f in sub.flags if not own_cell.match(f)]
    gsubnbs = {nb.name: nb for nb in gsub.notebooks} if gsub is not None else {}
    for nb_name in notebooks:
        grades = {g.name: g for g in gsubnbs[nb_name].grades} if nb_name in gsubnbs else {}
        ag_cells = {}
        if sub.status in (GRADED, NEEDS_MANUAL):
            ag_cells = {grade_id(c): c for c in notebook_cells(adir / f"{nb_name}.ipynb")
                        if grade_id(c) is not None}
        for gc in cells.get(nb_name, []):
            q = QuestionGrade(nb_name, gc.name, 0.0, float(gc.max_score), NOT_AUTOGRADED)
            g = grades.get(gc.name)
            qflags = [f for f in sub.flags if f.split(" ")[-2:-1] == [gc.name]]
            qflags += whole
            if nb_name not in readable:
                q.status = "notebook missing" if sdir.is_dir() else NOT_SUBMITTED
            elif sub.status == AUTOGRADE_FAILED:
                q.status = AUTOGRADE_FAILED
            elif g is not None and sub.status in (GRADED, NEEDS_MANUAL):
                q.points = float(g.score or 0.0)
                if g.needs_manual_grade:
                    if gc.cell_type == "code" and gc.name not in ag_cells:
                        q.status = "not graded (test cell missing)"
                        if not any(gc.name in f for f in qflags):
                            qflags.append(f"{gc.name}: not graded, its cell is missing")
                    else:
                        q.status = NEEDS_MANUAL
                else:
                    q.status = _question_status(q.points, q.max_points)
                if gc.name in ag_cells:
                    q.message = _cell_message(ag_cells[gc.name])
            q.flags = qflags
            sub.questions.append(q)
    for q in sub.questions:
        for f in q.flags:
            if f not in sub.flags:
                sub.flags.append(f)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _csv(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns)
    w.writerows([_fmt(v) for v in row] for row in rows)
    return out.getvalue()


def grades_csv(subs: list[Submission]) -> str:
    return _csv(GRADE_COLUMNS, [(
        s.assignment, s.duedate, s.timestamp, s.student_id, s.last_name, s.first_name,
        s.email, s.raw_score, s.penalty, s.score, s.max_score, round(s.seconds_late),
        s.status, "yes" if s.flagged else "", "; ".join(s.flags)) for s in subs])


def questions_csv(subs: list[Submission]) -> str:
    return _csv(QUESTION_COLUMNS, [(
        s.assignment, s.student_id, s.last_name, s.first_name, s.email, q.notebook,
        q.question, q.points, q.max_points, q.status, "yes" if (q.flags or s.flagged) else "",
        "; ".join(q.flags), q.message) for s in subs for q in s.questions])


def write_csvs(subs: list[Submission], out_dir: Path) -> tuple[Path, Path]:
    """Write grades.csv and questions.csv into `out_dir` (each replaced whole, or not at all)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise CourseError(f"--out {out_dir}: not a folder")
    grades, questions = out_dir / "grades.csv", out_dir / "questions.csv"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(grades, grades_csv(subs))
        write_atomic(questions, questions_csv(subs))
    except OSError as e:
        raise CourseError(f"cannot write {out_dir}: {e.strerror or e}") from None
    return grades, questions


def _duration(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return " ".join(f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "min"))
                    if n) or f"{int(seconds)}s"


def summary(subs: list[Submission]) -> str:
    """What the export command prints: per assignment the counts, then who is flagged, why."""
    lines = []
    for name in sorted({s.assignment for s in subs}):
        mine = [s for s in subs if s.assignment == name]
        handed = [s for s in mine if s.status != NOT_SUBMITTED]
        graded = [s for s in mine if s.status in (GRADED, NEEDS_MANUAL)]
        line = (f"{name}: {len(mine)} students, {len(handed)} submitted, {len(graded)} "
                "autograded")
        if graded:
            mean = sum(s.score for s in graded) / len(graded)
            line += f", mean score {mean:.2f} of {graded[0].max_score:g}"
        late = [s for s in handed if s.seconds_late > 0]
        if late:
            line += f", {len(late)} late"
        lines.append(line)
        if late:
            lines.append(f"  late ({len(late)}): " + ", ".join(
                f"{s.student_id} {_duration(s.seconds_late)}"
                + (f" (penalty {s.penalty:g})" if s.penalty else "") for s in late))
        manual = [s.student_id for s in mine if s.status == NEEDS_MANUAL]
        if manual:
            lines.append(f"  needs manual grading in formgrader ({len(manual)}): "
                         + ", ".join(manual))
        missing = [s.student_id for s in mine if s.status == NOT_SUBMITTED]
        if missing:
            lines.append(f"  not submitted ({len(missing)}): " + ", ".join(missing))
        flagged = [s for s in mine if s.flagged]
        if flagged:
            lines.append(f"  FLAGGED ({len(flagged)}): check these by hand")
            width = max(len(s.student_id) for s in flagged)
            for s in flagged:
                lines.append(f"    {s.student_id:<{width}}  " + "; ".join(s.flags))
        else:
            lines.append("  flagged: none")
    return "\n".join(lines)
