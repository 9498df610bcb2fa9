"""A course folder as the teacher keeps it: its nbgrader configuration, roster and due dates.

The course folder is where the teacher runs nbgrader (``nbgrader_config.py``, ``source/``,
``release/``, ``submitted/``, ``autograded/``, ``feedback/`` and the gradebook ``gradebook.db``).
This module reads it without changing what nbgrader keeps there, except through nbgrader's own
gradebook API:

- ``import_roster``: the class list from a CSV file (id, first name, last name, email) into the
  gradebook, so nbgrader's and ksmbook's exports name every student, and a student who never
  submitted still shows up, with 0;
- ``set_due``: an assignment's due date in the gradebook (nbgrader's autograde measures lateness
  against it), a late policy applied by ``LatePenalty`` (an nbgrader late-submission plugin that
  the course's ``nbgrader_config.py`` names), and a locked cell in the source notebook that
  tells the students both.

Every check happens before anything is written: a bad roster or date changes nothing.
"""

from __future__ import annotations

import ast
import csv
import math
import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from .variants import ASSIGNMENT_NAME, STUDENT_ID, STUDENT_ID_RULE, write_atomic

__all__ = ["CourseError", "Course", "RosterEntry", "LatePolicy", "read_roster",
           "import_roster", "parse_due", "set_due", "DUE_CELL_ID"]

#: The role (metadata ksmbook.role) of the read-only cell that shows the due date.
DUE_CELL_ID = "due_date"

_EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+\Z")

_POLICY_BEGIN = "# BEGIN ksmbook late policy"
_POLICY_END = "# END ksmbook late policy"


class CourseError(Exception):
    """A course folder, file or request that cannot be used; the message says why."""


@dataclass(frozen=True)
class Course:
    """An nbgrader course folder and what its ``nbgrader_config.py`` says."""

    root: Path
    course_id: str
    db_url: str
    config: Any

    @classmethod
    def open(cls, folder: str | Path, *, create: bool = False) -> Course:
        """The course in `folder`; CourseError if it is not an nbgrader course folder.

        With `create`, a folder that does not exist yet (in a folder that does) becomes a new
        course folder, with the ``nbgrader_config.py`` that ``classroom assignment`` writes
        (course id: the folder's name).
        """
        root = Path(folder).expanduser()
        if create and not (root / "nbgrader_config.py").exists():
            cls._create(root)
        if not root.is_dir():
            raise CourseError(f"no course folder {root} (make one with `python -m ksmbook "
                              "classroom assignment --course DIR ...`)")
        config_file = root / "nbgrader_config.py"
        if not config_file.is_file():
            raise CourseError(f"{root} has no nbgrader_config.py: not a course folder")
        from traitlets.config.loader import PyFileConfigLoader

        try:
            config = PyFileConfigLoader(config_file.name, path=str(root)).load_config()
        except Exception as e:  # the teacher's own Python file: any error is theirs to fix
            raise CourseError(f"cannot read {config_file}: {type(e).__name__}: {e}") from None
        cd = config.get("CourseDirectory", {})
        course_id = str(cd.get("course_id", "") or "")
        if not course_id:
            raise CourseError(f"{config_file} sets no c.CourseDirectory.course_id")
        root = root.resolve()
        db_url = str(cd.get("db_url", "") or f"sqlite:///{root / 'gradebook.db'}")
        return cls(root, course_id, db_url, config)

    @staticmethod
    def _create(root: Path) -> None:
        from .assignment import write_course_config

        if root.exists() and not root.is_dir():
            raise CourseError(f"{root} is not a folder")
        if not root.parent.is_dir():
            raise CourseError(f"no folder {root.parent} to make the course folder "
                              f"{root.name} in")
        if root.is_dir() and any(root.iterdir()):
            raise CourseError(f"{root} is not empty and has no nbgrader_config.py: not a "
                              "course folder")
        try:
            root.mkdir(mode=0o700, exist_ok=True)  # as `classroom assignment` makes one
            write_course_config(root)
        except OSError as e:
            raise CourseError(f"cannot make the course folder {root}: {e.strerror or e}"
                              ) from None

    @property
    def config_file(self) -> Path:
        return self.root / "nbgrader_config.py"

    def assignments(self) -> list[str]:
        """The assignments that have a source folder, by name."""
        source = self.root / "source"
        if not source.is_dir():
            return []
        return sorted(p.name for p in source.iterdir()
                      if p.is_dir() and ASSIGNMENT_NAME.match(p.name) and any(p.glob("*.ipynb")))

    def check_assignment(self, name: str) -> str:
        """`name` if the course has that assignment, else CourseError naming those it has."""
        names = self.assignments()
        if name not in names:
            have = ", ".join(names) if names else "none yet"
            raise CourseError(f"no assignment {name!r} in {self.root / 'source'} "
                              f"(assignments: {have})")
        return name

    @contextmanager
    def gradebook(self, *, create: bool = False) -> Iterator[Any]:
        """nbgrader's Gradebook of this course (CourseError if there is none and not `create`)."""
        sqlite = self.db_url.removeprefix("sqlite:///")
        if not create and sqlite != self.db_url and not Path(sqlite).is_file():
            raise CourseError(f"{self.root} has no gradebook yet: run `nbgrader "
                              "generate_assignment NAME` in the course folder first")
        from nbgrader.api import Gradebook  # type: ignore[import-untyped]

        # A new gradebook asks `alembic` (from PATH) for its schema version: the one installed
        # beside this Python, as when nbgrader's own commands run from the course's venv.
        path = os.environ.get("PATH", "")
        if shutil.which("alembic") is None:
            os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + path
        try:
            gb = Gradebook(self.db_url, self.course_id)
        except Exception as e:
            raise CourseError(f"cannot open the gradebook {self.db_url}: {e}") from None
        finally:
            os.environ["PATH"] = path
        with gb:
            yield gb


# -- roster ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RosterEntry:
    """One student of the class list."""

    id: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""


_COLUMNS = {
    "id": ("id", "student_id", "student id", "username", "user", "login"),
    "first_name": ("first_name", "first name", "firstname", "given name", "given_name"),
    "last_name": ("last_name", "last name", "lastname", "surname", "family name",
                  "family_name"),
    "email": ("email", "e-mail", "email address", "mail"),
}


def read_roster(path: str | Path) -> list[RosterEntry]:
    """The students of a CSV class list: a header row naming the columns ``id``,
    ``first_name``, ``last_name``, ``email`` (``id`` required; common spellings such as
    ``student_id`` or ``First name`` accepted), then one row per student.

    Raises CourseError naming the file, line and problem (no id, a repeated id, an id nbgrader
    cannot file submissions under, a malformed email, an unreadable file).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise CourseError(f"{path}: not UTF-8 text (save the roster as CSV, UTF-8)") from None
    except OSError as e:
        raise CourseError(f"cannot read the roster {path}: {e.strerror or e}") from None
    rows = list(csv.reader(text.splitlines()))
    while rows and not any(c.strip() for c in rows[0]):
        rows.pop(0)
    if not rows:
        raise CourseError(f"{path}: empty; the first line names the columns "
                          "(id,first_name,last_name,email)")
    header = [c.strip().lower() for c in rows[0]]
    where: dict[str, int] = {}
    for field, names in _COLUMNS.items():
        for i, h in enumerate(header):
            if h in names:
                if field in where:
                    raise CourseError(f"{path}, line 1: two columns for {field}")
                where[field] = i
    if "id" not in where:
        raise CourseError(f"{path}, line 1: no id column (the first line names the columns, "
                          f"e.g. id,first_name,last_name,email; found {','.join(rows[0])})")
    unknown = [rows[0][i] for i, h in enumerate(header)
               if h and i not in where.values()]
    if unknown:
        raise CourseError(f"{path}, line 1: unknown column(s) {', '.join(unknown)} "
                          "(columns: id, first_name, last_name, email)")
    entries: list[RosterEntry] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows[1:], 2):
        if not any(c.strip() for c in row):
            continue
        if len(row) > len(header):
            raise CourseError(f"{path}, line {line}: {len(row)} fields, the header has "
                              f"{len(header)} (a comma inside a name needs quotes)")
        values = {f: (row[i].strip() if i < len(row) else "") for f, i in where.items()}
        sid = values["id"]
        if not sid:
            raise CourseError(f"{path}, line {line}: no student id")
        if not STUDENT_ID.match(sid):
            raise CourseError(f"{path}, line {line}: student id {sid!r} is not a user name "
                              f"({STUDENT_ID_RULE}; nbgrader files submissions under it)")
        if sid in seen:
            raise CourseError(f"{path}, line {line}: student id {sid!r} again (first on line "
                              f"{seen[sid]})")
        seen[sid] = line
        email = values.get("email", "")
        if email and not _EMAIL.match(email):
            raise CourseError(f"{path}, line {line}: {email!r} is not an email address")
        entries.append(RosterEntry(sid, values.get("first_name", ""),
                                   values.get("last_name", ""), email))
    if not entries:
        raise CourseError(f"{path}: a header but no students")
    return entries


def import_roster(course: Course, entries: list[RosterEntry]) -> tuple[int, int, list[str]]:
    """Add or update `entries` in the gradebook; returns (added, updated, not in the roster).

    Students in the gradebook but not in the roster are kept (removing one would delete their
    grades): their ids are returned so the caller can say so.
    """
    with course.gradebook(create=True) as gb:
        existing = {s.id for s in gb.students}
        for e in entries:
            gb.update_or_create_student(e.id, first_name=e.first_name or None,
                                        last_name=e.last_name or None, email=e.email or None)
        ids = {e.id for e in entries}
        added = len(ids - existing)
        return added, len(ids) - added, sorted(existing - ids)


# -- due dates and late policy -----------------------------------------------------------------

@dataclass(frozen=True)
class LatePolicy:
    """How a late submission is marked down.

    `percent_per_day`: the share of the notebook's score lost for each day, or part of a day,
    late (0: no penalty; 100: a late submission scores 0). `days`: submissions more than this
    many days late score 0 (None: no limit).
    """

    percent_per_day: float = 0.0
    days: float | None = None

    def penalty(self, score: float, seconds_late: float) -> float:
        if seconds_late <= 0 or score <= 0:
            return 0.0
        if self.days is not None and seconds_late > self.days * 86400:
            return score
        started_days = math.ceil(seconds_late / 86400)
        return min(score, score * self.percent_per_day / 100 * started_days)

    def describe(self) -> str:
        if self.percent_per_day >= 100 or self.days == 0:
            return "Late submissions score 0."
        parts = []
        if self.percent_per_day > 0:
            parts.append(f"A late submission loses {self.percent_per_day:g}% of its score for "
                         "each day (or part of a day) it is late")
        else:
            parts.append("Late submissions are accepted without penalty")
        if self.days is not None:
            parts.append(f"more than {self.days:g} day{'s' if self.days != 1 else ''} late, "
                         "it scores 0")
        return "; ".join(parts) + "."


def _late_penalty_plugin() -> type:
    from nbgrader.plugins import LateSubmissionPlugin  # type: ignore[import-untyped]
    from traitlets import Dict

    class LatePenalty(LateSubmissionPlugin):
        """nbgrader late-submission plugin: each assignment's ksmbook late policy.

        ``c.LatePenalty.policies`` maps an assignment name to ``{"percent_per_day": P,
        "days": D}`` (written by ``python -m ksmbook classroom due``); assignments without a
        policy fall back to nbgrader's own ``penalty_method``.
        """

        policies = Dict(help="assignment name -> {'percent_per_day': P, 'days': D or None}"
                        ).tag(config=True)

        def late_submission_penalty(self, student_id: str, score: float,
                                    total_seconds_late: float) -> float | None:
            assignment = getattr(self.parent, "assignment_id", None)
            policy = self.policies.get(str(assignment))
            if policy is None:
                return super().late_submission_penalty(student_id, score, total_seconds_late)
            late = LatePolicy(float(policy.get("percent_per_day", 0) or 0), policy.get("days"))
            penalty = late.penalty(score, total_seconds_late)
            self.log.info("%s, %s: %.0f s late, penalty %g of %g", assignment, student_id,
                          total_seconds_late, penalty, score)
            return penalty

    return LatePenalty


def __getattr__(name: str) -> Any:
    # nbgrader imports the plugin by name from the course config; importing it lazily keeps
    # `import ksmbook.classroom` free of nbgrader for those who never grade.
    if name == "LatePenalty":
        cls = _late_penalty_plugin()
        globals()["LatePenalty"] = cls
        return cls
    raise AttributeError(name)


def parse_due(text: str) -> datetime:
    """A due date as the teacher writes it ("2026-12-14 17:00", "2026-12-14T17:00+01:00",
    "2026-12-14 17:00 Europe/Paris") as an aware datetime; without a zone, the machine's
    local time. CourseError if it cannot be read."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    raw = text.strip()
    zone: tzinfo | None = None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        date, _, name = raw.rpartition(" ")
        try:
            when = datetime.fromisoformat(date)
        except ValueError:
            raise CourseError(f"--due {text!r}: not a date and time (write e.g. '2026-12-14 "
                              "17:00' or '2026-12-14 17:00 Europe/Paris')") from None
        if name.upper() in ("UTC", "Z", "GMT"):
            zone = UTC
        else:
            try:
                zone = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise CourseError(f"--due {text!r}: unknown time zone {name!r} (e.g. UTC, "
                                  "Europe/Paris, or an offset such as +01:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone) if zone is not None else when.astimezone()
    elif zone is not None:
        raise CourseError(f"--due {text!r}: both an offset and a time zone")
    return when


def _due_text(due: datetime, policy: LatePolicy | None) -> str:
    utc = due.astimezone(UTC)
    local = due.strftime("%A %d %B %Y, %H:%M") + (f" {due.tzname()}" if due.tzname() else "")
    line = f"**Due: {local}**"
    if due.utcoffset() != utc.utcoffset():
        line += f" ({utc.strftime('%Y-%m-%d %H:%M')} UTC)"
    line += ". Submit from the Assignments tab before then; if you submit more than once, the " \
            "last submission counts."
    if policy is not None:
        line += " " + policy.describe()
    return line


def _is_due_cell(cell: Any) -> bool:
    meta = cell.get("metadata", {})
    return bool(meta.get("ksmbook", {}).get("role") == DUE_CELL_ID
                or meta.get("nbgrader", {}).get("grade_id") == DUE_CELL_ID)


def _with_due_cell(nb: Any, text: str) -> Any:
    """`nb` with its due-date cell (after the first cell) saying `text`.

    The cell is not an nbgrader cell (nbgrader refuses to add a cell to a notebook that has
    submissions, so the date can change after a release); JupyterLab keeps it read-only and
    undeletable by the standard ``editable``/``deletable`` metadata.
    """
    import nbformat

    meta = {"editable": False, "deletable": False, "ksmbook": {"role": DUE_CELL_ID}}
    cells = [c for c in nb.cells if not _is_due_cell(c)]
    cells.insert(1 if cells else 0, nbformat.v4.new_markdown_cell(text, metadata=meta))
    nb.cells = cells
    return nb


def _with_policy(config_text: str, assignment: str, policy: LatePolicy) -> str:
    """`config_text` with `assignment`'s late policy in ksmbook's block (made, or rewritten
    keeping the other assignments' policies)."""
    m = re.search(rf"^{re.escape(_POLICY_BEGIN)}.*?^c\.LatePenalty\.policies = (.*?)$",
                  config_text, re.M | re.S)
    try:
        policies = ast.literal_eval(m.group(1)) if m else {}
    except (ValueError, SyntaxError):
        policies = {}
    policies = {**(policies if isinstance(policies, dict) else {}), assignment: asdict(policy)}
    block = "\n".join([
        _POLICY_BEGIN + " (written by `python -m ksmbook classroom due`)",
        'c.AssignLatePenalties.plugin_class = "ksmbook.classroom.course.LatePenalty"',
        f"c.LatePenalty.policies = {policies!r}", _POLICY_END]) + "\n"
    old = re.compile(rf"^{re.escape(_POLICY_BEGIN)}.*?^{re.escape(_POLICY_END)}\n?", re.M | re.S)
    if old.search(config_text):
        return old.sub(lambda _m: block, config_text, count=1)
    return config_text.rstrip("\n") + "\n" + block


@dataclass(frozen=True)
class DueResult:
    assignment: str
    due: datetime
    policy: LatePolicy | None
    notebooks: list[Path]
    released: bool


def set_due(course: Course, assignment: str, due: datetime,
            policy: LatePolicy | None = None) -> DueResult:
    """Set `assignment`'s due date (and late policy) in the gradebook, the course config and
    the source notebooks. Everything is read and checked first; CourseError changes nothing.
    """
    import nbformat

    course.check_assignment(assignment)
    if policy is not None:
        if not 0 <= policy.percent_per_day <= 100:
            raise CourseError(f"--late-penalty {policy.percent_per_day:g}: a percentage, "
                              "0-100")
        if policy.days is not None and policy.days < 0:
            raise CourseError(f"--late-days {policy.days:g}: a number of days, 0 or more")
    sources = sorted((course.root / "source" / assignment).glob("*.ipynb"))
    text = _due_text(due, policy)
    notebooks = []
    for path in sources:
        try:
            notebooks.append((path, _with_due_cell(nbformat.read(path, as_version=4), text)))
        except Exception as e:
            raise CourseError(f"cannot read {path}: {e}") from None
    try:
        config_text = course.config_file.read_text(encoding="utf-8")
    except OSError as e:
        raise CourseError(f"cannot read {course.config_file}: {e.strerror or e}") from None
    new_config = _with_policy(config_text, assignment, policy) if policy is not None else None
    utc = due.astimezone(UTC).replace(tzinfo=None)
    try:
        with course.gradebook(create=True) as gb:
            gb.update_or_create_assignment(assignment, duedate=utc)
        for path, nb in notebooks:
            write_atomic(path, nbformat.writes(nb) + "\n")
        if new_config is not None:
            write_atomic(course.config_file, new_config)
    except OSError as e:
        raise CourseError(f"cannot write the course folder {course.root}: "
                          f"{e.strerror or e}") from None
    released = (course.root / "release" / assignment).is_dir()
    return DueResult(assignment, due, policy, [p for p, _ in notebooks], released)
