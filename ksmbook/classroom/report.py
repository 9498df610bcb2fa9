"""What the class got wrong: ``python -m ksmbook classroom report --course DIR --assignment NAME``.

An HTML page for the teacher (figures embedded as PNG, so the one file can be mailed or
projected): the score distribution, each question's success rate, and for every question the
misconceptions the wrong answers reveal, with counts and one example each.

The answers are read from the submitted notebooks as data: the right-hand side of each
``answer_N = ...`` line is read by ``ast.literal_eval``, never run (an answer computed in the
notebook is taken from the value the student's own run recorded, ``record_answer``'s data).
Each answer is judged by the problem's own ``grade()`` (the check ksmbook's grading step
makes), and a wrong one is described by the problem's ``misconception()``. Scores are
nbgrader's (late penalties and manual grades included) for the submissions it autograded; the
others are scored from their answers, and the page says how many. Where the gradebook and the
answer disagree (full points for an answer the problem calls wrong), the page lists the
submission: that is what a student who beat the grader would look like.
"""

from __future__ import annotations

import ast
import base64
import html
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exercises import Problem
from .course import Course, CourseError
from .export import (
    GRADED,
    NEEDS_MANUAL,
    NOT_AUTOGRADED,
    NOT_SUBMITTED,
    Submission,
    cell_source,
    collect,
    grade_id,
    notebook_cells,
)
from .student import recorded_answers
from .variants import load_plan, load_secret, problems_for, write_atomic

__all__ = ["Answer", "QuestionReport", "ClassReport", "build_report", "render_html",
           "write_report", "read_answer"]

_ANSWER_ID = re.compile(r"answer_(\d+)\Z")
_TEST_ID = re.compile(r"test_(\d+)\Z")


@dataclass
class Answer:
    """One student's answer to one question, as read and judged."""

    student_id: str
    source: str            # the answer as written (the right-hand side), "" if none
    status: str            # correct, incorrect, unreadable, unattempted
    misconception: str = ""


@dataclass
class QuestionReport:
    number: int
    title: str
    question: str
    max_points: float
    answers: list[Answer] = field(default_factory=list)
    autograde_disagrees: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for a in self.answers if a.status == status)

    @property
    def success_rate(self) -> float | None:
        return self.count("correct") / len(self.answers) if self.answers else None

    def misconceptions(self, status: str = "incorrect") -> list[tuple[str, int, str]]:
        """(misconception, how many answers, one example answer) of the answers with `status`
        (incorrect, or unreadable), most frequent first."""
        counts: Counter[str] = Counter()
        example: dict[str, str] = {}
        for a in self.answers:
            if a.status == status:
                counts[a.misconception] += 1
                example.setdefault(a.misconception, a.source)
        return [(m, n, example[m]) for m, n in counts.most_common()]


@dataclass
class ClassReport:
    course_id: str
    assignment: str
    submissions: list[Submission]
    scores: dict[str, float]           # student id -> score (submitted students only)
    from_answers: list[str]            # students scored from their answers (not autograded)
    max_score: float
    questions: list[QuestionReport]


def read_answer(source: str, name: str) -> tuple[str, object, str]:
    """The value a cell assigns to `name`, read as data: (text, value, status).

    Status is "ok", "unattempted" (no assignment, or ``...``/``None``/NotImplementedError
    left in) or "unreadable" (an expression that is not a literal: it is not run).
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source.strip()[:200], None, "unreadable"
    found: ast.expr | None = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            found = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and node.target.id == name and node.value is not None:
            found = node.value
    if found is None:
        return "", None, "unattempted"
    text = ast.get_source_segment(source, found) or ast.unparse(found)
    try:
        value = ast.literal_eval(found)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text, None, "unreadable"
    if value is None or value is Ellipsis:
        return text, value, "unattempted"
    return text, value, "ok"


def _key(text: str) -> str:
    """A misconception with the student's own figures taken out, so that "2 splits is too
    many" and "3 splits is too many" count as one."""
    text = re.sub(r"\b\d+\b", "N", text)
    return re.sub(r"\bN ([A-Za-z]{3,}?)s?\b", r"N \1(s)", text)


def _answers_of(path: Path) -> dict[int, str]:
    return {int(m.group(1)): cell_source(c) for c in notebook_cells(path)
            if (m := _ANSWER_ID.match(grade_id(c) or "")) is not None}


def _recorded_of(path: Path) -> dict[int, str]:
    """Question number -> the answer the student's own run recorded (``record_answer``'s
    data in the test cell's output, as the student submitted it)."""
    out = {}
    for c in notebook_cells(path):
        if _TEST_ID.match(grade_id(c) or "") is not None:
            out.update(recorded_answers(c.get("outputs", [])))
    return out


def build_report(course: Course, assignment: str) -> ClassReport:
    """Read every submission of `assignment` and judge its answers."""
    course.check_assignment(assignment)
    subs = collect(course, assignment)
    plan = load_plan(course.root, assignment)
    if plan is None or not plan.problems:
        raise CourseError(f"{assignment}: no autograded ksmbook problems in "
                          f"{course.root / 'source' / assignment}")
    numbers = range(1, len(plan.problems) + 1)
    secret = None if plan.mode == "seed" else load_secret(course.root)
    sets: dict[str | None, list[Problem]] = {}  # the class's, or each student's (variants)

    def problem(n: int, student: str | None = None) -> Problem | None:
        key = student if plan.mode == "variants" else None
        if key not in sets:  # (in a variants assignment, nobody's set is the class's)
            sets[key] = [] if plan.mode == "variants" and not key else \
                problems_for(plan, secret, key)
        return sets[key][n - 1] if sets[key] else None

    max_points: dict[int, float] = {}
    for s in subs:
        for grade in s.questions:
            m = _TEST_ID.match(grade.question)
            if m is not None:
                max_points[int(m.group(1))] = grade.max_points
    questions = {n: QuestionReport(n, f"Problem {n}", p.question if (p := problem(n)) else "",
                                   max_points.get(n, 1.0)) for n in numbers}
    scores: dict[str, float] = {}
    from_answers: list[str] = []
    for s in subs:
        if s.status == NOT_SUBMITTED:
            continue
        answers: dict[int, str] = {}
        recorded: dict[int, str] = {}
        for nb in sorted((course.root / "submitted" / s.student_id / assignment)
                         .glob("*.ipynb")):
            answers.update(_answers_of(nb))
            recorded.update(_recorded_of(nb))
        # question number -> full points in the gradebook (autograded submissions only)
        autograded: dict[int, bool] = {}
        if s.status in (GRADED, NEEDS_MANUAL):
            for grade in s.questions:
                m = _TEST_ID.match(grade.question)
                if m is not None and grade.status != NEEDS_MANUAL:
                    autograded[int(m.group(1))] = grade.points >= grade.max_points > 0
        points = 0.0
        for n in numbers:
            q = questions[n]
            mine = problem(n, s.student_id)
            text, value, status = read_answer(answers.get(n, ""), f"answer_{n}")
            from_run = False
            if status == "unreadable" and n in recorded:
                # an answer computed in the notebook: the value the student's run recorded
                rtext, value, rstatus = read_answer(f"a = {recorded[n]}", "a")
                if rstatus == "ok":
                    text, status, from_run = rtext, rstatus, True
            answer = Answer(s.student_id, text, status)
            if mine is not None and status == "ok":
                fb = mine.grade(value)
                answer.status = fb.status
                if fb.status == "incorrect":
                    answer.misconception = _key(mine.misconception(mine.parse(value)))
                elif fb.status == "unreadable":
                    answer.misconception = _key(str(fb).removeprefix("Cannot read that "
                                                                     "answer: "))
            elif status == "unreadable":
                answer.misconception = ("not a plain value (a number, a string, True/False, a "
                                        "list of tuples), and no value recorded by a run")
            q.answers.append(answer)
            if answer.status == "correct":
                points += q.max_points
            if n in autograded and autograded[n] and answer.status != "correct" \
                    and not from_run:
                q.autograde_disagrees.append(s.student_id)
        if s.status == NOT_AUTOGRADED:
            scores[s.student_id] = points
            from_answers.append(s.student_id)
        else:  # nbgrader's score: 0 for a failed autograde or a missing notebook
            scores[s.student_id] = s.score
    max_score = max((s.max_score for s in subs), default=0.0) or \
        sum(q.max_points for q in questions.values())
    return ClassReport(course.course_id, assignment, subs, scores, from_answers, max_score,
                       list(questions.values()))


# -- the page ----------------------------------------------------------------------------------

def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[:width - 1].rstrip() + "\u2026"


def _figures(rep: ClassReport) -> tuple[str, str]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3))
    ax = fig.add_subplot()
    values = list(rep.scores.values())
    top = rep.max_score or max(values, default=1.0) or 1.0
    step = 1.0 if top <= 20 else top / 20
    edges = [i * step - step / 2 for i in range(int(top / step) + 2)]
    ax.hist(values, bins=edges, color="#4c72b0", edgecolor="white")
    ax.set_xlabel(f"score (out of {top:g})")
    ax.set_ylabel("students")
    ax.set_title(f"{rep.assignment}: scores of {len(values)} submissions")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    scores_png = _png(fig)

    fig = Figure(figsize=(6, 0.5 + 0.45 * len(rep.questions)))
    ax = fig.add_subplot()
    labels = [_short(f"{q.number}. {q.question or q.title}") for q in rep.questions][::-1]
    rates = [100 * (q.success_rate or 0.0) for q in rep.questions][::-1]
    bars = ax.barh(labels, rates, color="#55a868")
    for bar, rate in zip(bars, rates, strict=True):
        ax.text(min(rate + 1, 92), bar.get_y() + bar.get_height() / 2, f"{rate:.0f}%",
                va="center", fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("answered correctly (% of submissions)")
    ax.set_title("success rate per question")
    return scores_png, _png(fig)


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.n { text-align: right; }
code { background: #f6f6f6; padding: 0 0.2rem; }
.warn { color: #a00; }
"""


def render_html(rep: ClassReport) -> str:
    e = html.escape
    submitted = [s for s in rep.submissions if s.status != NOT_SUBMITTED]
    values = sorted(rep.scores.values())
    mean = sum(values) / len(values) if values else 0.0
    median = (values[len(values) // 2] + values[(len(values) - 1) // 2]) / 2 if values else 0.0
    out = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
           f"<title>{e(rep.assignment)}: what the class got wrong</title>"
           f"<style>{_CSS}</style></head><body>",
           f"<h1>{e(rep.assignment)}: what the class got wrong</h1>",
           f"<p>Course <code>{e(rep.course_id)}</code>: {len(rep.submissions)} students, "
           f"{len(submitted)} submitted. Mean score {mean:.2f}, median {median:g}, "
           f"out of {rep.max_score:g}.</p>"]
    if rep.from_answers:
        out.append(f"<p>{len(rep.from_answers)} submission(s) not autograded yet are scored "
                   "here from their answers (the same check as the hidden tests): "
                   + e(", ".join(rep.from_answers)) + ".</p>")
    flagged = [s for s in rep.submissions if s.flagged]
    if flagged:
        out.append(f"<p class=\"warn\">{len(flagged)} flagged submission(s): check them by "
                   "hand (<code>python -m ksmbook classroom export</code> lists them too)</p>"
                   "<ul>" + "".join(f"<li>{e(s.student_id)}: {e('; '.join(s.flags))}</li>"
                                    for s in flagged) + "</ul>")
    if values:
        scores_png, rates_png = _figures(rep)
        out.append(f"<h2>Scores</h2><img alt=\"score distribution\" src=\"{scores_png}\">")
        out.append(f"<h2>Questions</h2><img alt=\"success rate per question\" "
                   f"src=\"{rates_png}\">")
    out.append("<table><tr><th>question</th><th>correct</th><th>wrong</th>"
               "<th>unreadable</th><th>not answered</th></tr>")
    for q in rep.questions:
        out.append(f"<tr><td>{q.number}. {e(q.title)}</td><td class=n>{q.count('correct')}</td>"
                   f"<td class=n>{q.count('incorrect')}</td>"
                   f"<td class=n>{q.count('unreadable')}</td>"
                   f"<td class=n>{q.count('unattempted')}</td></tr>")
    out.append("</table>")
    for q in rep.questions:
        rate = q.success_rate
        out.append(f"<h3>{q.number}. {e(q.title)}</h3><p>{e(q.question)} "
                   f"({q.max_points:g} point{'s' if q.max_points != 1 else ''}; "
                   + (f"{100 * rate:.0f}% right" if rate is not None else "no answers")
                   + ")</p>")
        if q.answers and not q.misconceptions():
            out.append("<p>No wrong answers.</p>")
        for status, heading in (("incorrect", "what the wrong answers overlooked"),
                                ("unreadable", "answers that could not be read")):
            rows = q.misconceptions(status)
            if rows:
                out.append(f"<table><tr><th>{heading}</th><th>answers</th>"
                           "<th>for example</th></tr>")
                out += [f"<tr><td>{e(text)}</td><td class=n>{n}</td>"
                        f"<td><code>{e(example)}</code></td></tr>" for text, n, example in rows]
                out.append("</table>")
        if q.autograde_disagrees:
            out.append("<p class=\"warn\">The autograder passed a wrong answer here (check "
                       "these submissions by hand): " + e(", ".join(q.autograde_disagrees))
                       + "</p>")
    out.append("</body></html>\n")
    return "\n".join(out)


def write_report(rep: ClassReport, path: Path) -> Path:
    """Write the page to `path` (whole, or not at all)."""
    page = render_html(rep)
    if path.is_dir():
        raise CourseError(f"--out {path}: a folder (give the HTML file's name)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, page)
    except OSError as err:
        raise CourseError(f"cannot write {path}: {err.strerror or err}") from None
    return path
