"""`python -m ksmbook classroom`: nbgrader assignments from the chapter exercises (`assignment`),
a student's answer key (`solutions`)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC
from pathlib import Path
from typing import Any

__all__ = ["add_classroom_parser"]

_EPILOG = """\
then, in the course folder, nbgrader's own commands:
  nbgrader generate_assignment chapter02    # release/chapter02/: the answers removed
  nbgrader release_assignment chapter02     # students fetch it from JupyterLab
  nbgrader collect chapter02
  nbgrader autograde chapter02
  nbgrader generate_feedback chapter02
  nbgrader export                           # grades.csv"""


def add_classroom_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `classroom` command to the `python -m ksmbook` parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "classroom", help="teach with the book: nbgrader assignments")
    sub = p.add_subparsers(dest="classroom_command", required=True)
    a = sub.add_parser(
        "assignment", help="write an nbgrader source notebook of a chapter's exercises",
        description="Write DIR/source/NAME/NAME.ipynb, an nbgrader source notebook of the "
                    "exercises that end chapter N (answers computed by the simulator), the "
                    "course secret and the assignment's plan in DIR/.ksmbook/, and "
                    "DIR/nbgrader_config.py (with ksmbook's grading step, which grades the "
                    "recorded answers in autograde's process).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("--chapter", type=int, required=True, metavar="N")
    a.add_argument("--course", required=True, metavar="DIR", help="the nbgrader course folder")
    a.add_argument("--name", help="assignment name (default chapterNN)")
    a.add_argument("--count", type=int, metavar="K", help="only the first K exercises")
    a.add_argument("--variants", action="store_true",
                   help="each student gets their own problems (from the course secret and "
                        "the student's id); needs the students (--students or the gradebook)")
    a.add_argument("--students", metavar="ID,ID,...",
                   help="the students' ids (nbgrader's ids: their hub names), added to those "
                        "in the course's gradebook")
    a.add_argument("--seed", type=int, default=None,
                   help="default: one problem set drawn from the course secret; 0: the book's "
                        "own exercises (their solutions are in every student's book); another "
                        "seed: chapter_exercises(N, seed=SEED), which students can find")
    a.add_argument("--points", type=int, default=1, metavar="P",
                   help="points of each problem (default 1; a field of each test cell's "
                        "nbgrader metadata, which can be edited in the source notebook)")
    a.add_argument("--written", metavar="N,N,...",
                   help="add an 'explain why' question after these problems (graded by hand "
                        "in formgrader; the rubric is in the source notebook only)")
    a.add_argument("--written-points", type=int, default=2, metavar="P",
                   help="points of each written question (default 2)")
    a.add_argument("--force", action="store_true", help="overwrite an existing assignment")
    a.set_defaults(func=_assignment)
    s = sub.add_parser(
        "solutions", help="print a student's answer key (needs the course secret)",
        description="Print the answers of one student's problems in assignment NAME, as the "
                    "lines to put in the answer cells: answer_N = <python literal>. For the "
                    "teacher only: it reads the course secret in DIR/.ksmbook/.")
    s.add_argument("--course", required=True, metavar="DIR", help="the nbgrader course folder")
    s.add_argument("--assignment", required=True, metavar="NAME")
    s.add_argument("--student", required=True, metavar="ID")
    s.add_argument("--problems", action="store_true",
                   help="also print each problem's text (as # comment lines) above its answer")
    s.set_defaults(func=_solutions)
    _add_course_parsers(sub)
    from .hub import add_hub_admin_parser
    add_hub_admin_parser(sub)
    return p


def _int_list(text: str | None, option: str) -> list[int]:
    if not text:
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{option} {text!r}: give problem numbers such as 1,3") from None


def _assignment(args: argparse.Namespace) -> int:
    from .assignment import AssignmentError, write_assignment

    def warn(message: str) -> None:
        print(f"classroom assignment: warning: {message}", file=sys.stderr)

    students = [s.strip() for s in (args.students or "").split(",") if s.strip()]
    try:
        written = _int_list(args.written, "--written")
        path = write_assignment(args.chapter, args.course, name=args.name, count=args.count,
                                seed=args.seed, variants=args.variants, students=students,
                                points=args.points, written=written,
                                written_points=args.written_points, force=args.force,
                                warn=warn)
    except (AssignmentError, ValueError) as e:
        return _error("assignment", e)
    print(path)
    return 0


def _solutions(args: argparse.Namespace) -> int:
    from .assignment import AssignmentError, solution_lines

    try:
        lines = solution_lines(args.course, args.assignment, args.student,
                               problems=args.problems)
    except AssignmentError as e:
        return _error("solutions", e)
    print("\n".join(lines))
    return 0


# -- the course: roster, due dates, export, report (ksmbook.classroom.course/export/report) -----

def _add_course_parsers(sub: Any) -> None:
    r = sub.add_parser(
        "roster", help="import the class list (CSV) into the course's gradebook",
        description="Add or update the students of FILE.csv in the nbgrader gradebook of the "
                    "course folder DIR (made, with its nbgrader_config.py, if it does not "
                    "exist yet). The first line names the columns: id (required: the "
                    "student's user name on the hub), first_name, last_name, email.")
    r.add_argument("--course", required=True, metavar="DIR", help="the nbgrader course folder")
    r.add_argument("file", metavar="FILE.csv")
    r.set_defaults(func=_roster)

    d = sub.add_parser(
        "due", help="set an assignment's due date and late policy",
        description="Set the due date of assignment NAME in the gradebook (nbgrader's autograde "
                    "measures lateness against it), the late policy that autograde applies, "
                    "and a locked cell in the source notebook that tells the students both. "
                    "Run it before `nbgrader generate_assignment NAME`.")
    d.add_argument("--course", required=True, metavar="DIR", help="the nbgrader course folder")
    d.add_argument("--assignment", required=True, metavar="NAME")
    d.add_argument("--due", required=True, metavar="WHEN",
                   help="e.g. '2026-12-14 17:00' (this machine's time zone), "
                        "'2026-12-14 17:00 Europe/Paris' or '2026-12-14T17:00+01:00'")
    d.add_argument("--late-penalty", type=float, metavar="PCT",
                   help="percent of the score lost per day (or part of a day) late; "
                        "100: a late submission scores 0 (default: no penalty)")
    d.add_argument("--late-days", type=float, metavar="D",
                   help="submissions more than D days late score 0")
    d.set_defaults(func=_due)

    e = sub.add_parser(
        "export", help="grades.csv and questions.csv, with flagged submissions",
        description="Write grades.csv (one row per student and assignment) and questions.csv "
                    "(one row per student and graded cell: points, max points, status) from "
                    "the course's gradebook and submissions, and print who is flagged and why "
                    "(autograde failed, not autograded, notebook missing or unreadable, a "
                    "locked or test cell deleted or edited).")
    e.add_argument("--course", required=True, metavar="DIR", help="the nbgrader course folder")
    e.add_argument("--assignment", metavar="NAME", help="only this assignment")
    e.add_argument("--out", metavar="OUTDIR", help="where to write the CSV files (default DIR)")
    e.set_defaults(func=_export)

    rp = sub.add_parser(
        "report", help="an HTML page of what the class got wrong",
        description="Write DIR/reports/NAME.html: the score distribution, each question's "
                    "success rate, and for every question the misconceptions the wrong "
                    "answers reveal, with counts and one example each. Answers are read from "
                    "the submitted notebooks as data (never run) and judged by each problem's "
                    "own check.")
    rp.add_argument("--course", required=True, metavar="DIR", help="the nbgrader course folder")
    rp.add_argument("--assignment", required=True, metavar="NAME")
    rp.add_argument("--out", metavar="FILE.html", help="default DIR/reports/NAME.html")
    rp.set_defaults(func=_report)


def _error(command: str, e: Exception) -> int:
    """Say why `command` cannot be done; the exit status of a refused request."""
    print(f"classroom {command}: {e}", file=sys.stderr)
    return 2


def _roster(args: argparse.Namespace) -> int:
    from .course import Course, CourseError, import_roster, read_roster

    try:
        entries = read_roster(args.file)  # read and checked before anything is made
        course = Course.open(args.course, create=True)
        added, updated, others = import_roster(course, entries)
    except CourseError as e:
        return _error("roster", e)
    print(f"{course.course_id}: {len(entries)} students in the roster ({added} added, "
          f"{updated} updated) in {course.db_url}")
    if others:
        print(f"kept {len(others)} student(s) of the gradebook that the roster does not list: "
              + ", ".join(others))
    import re

    from .hub import NAME_PATTERN, RESERVED

    unusable = [e.id for e in entries if not re.fullmatch(NAME_PATTERN, e.id)
                or e.id in RESERVED]
    if unusable:
        print("classroom roster: warning: the class hub refuses these names at sign-up (a "
              "lowercase letter, then a-z 0-9 _ -, not reserved), so their submissions would "
              "come under other names: " + ", ".join(unusable), file=sys.stderr)
    return 0


def _due(args: argparse.Namespace) -> int:
    from .course import Course, CourseError, LatePolicy, parse_due, set_due

    policy = None
    if args.late_penalty is not None or args.late_days is not None:
        policy = LatePolicy(args.late_penalty or 0.0, args.late_days)
    try:
        course = Course.open(args.course)
        due = parse_due(args.due)
        result = set_due(course, args.assignment, due, policy)
    except CourseError as e:
        return _error("due", e)

    utc = result.due.astimezone(UTC)
    print(f"{result.assignment}: due {result.due.isoformat(sep=' ', timespec='minutes')} "
          f"({utc.strftime('%Y-%m-%d %H:%M')} UTC)")
    print("late policy: " + (result.policy.describe() if result.policy else
                             "none set (nbgrader records lateness, no penalty)"))
    for path in result.notebooks:
        print(f"students see it in {path.relative_to(course.root)} once released")
    if result.released:
        print(f"release/{result.assignment} exists already: run `nbgrader generate_assignment "
              f"{result.assignment} --force` and `nbgrader release_assignment "
              f"{result.assignment} --force` so the students see the new date")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .course import Course, CourseError
    from .export import collect, summary, write_csvs

    try:
        course = Course.open(args.course)
        subs = collect(course, args.assignment)
        out = Path(args.out) if args.out else course.root
        grades, questions = write_csvs(subs, out)
    except CourseError as e:
        return _error("export", e)
    print(summary(subs))
    print(f"wrote {grades} and {questions}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .course import Course, CourseError
    from .report import build_report, write_report

    try:
        course = Course.open(args.course)
        rep = build_report(course, args.assignment)
        out = Path(args.out) if args.out else \
            course.root / "reports" / f"{args.assignment}.html"
        path = write_report(rep, out)
    except CourseError as e:
        return _error("report", e)
    submitted = len(rep.scores)
    print(f"{rep.assignment}: {submitted} submissions of {len(rep.submissions)} students")
    for q in rep.questions:
        rate = q.success_rate
        top = q.misconceptions()[:1]
        line = f"  {q.number}. {q.title}: " + (f"{100 * rate:.0f}% right" if rate is not None
                                                else "no answers")
        if top:
            line += f"; most common slip ({top[0][1]}): {top[0][0]}"
        print(line)
    print(f"wrote {path}")
    return 0
