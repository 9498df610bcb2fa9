"""The course tooling: roster, due dates and late policy, the flagged export and the class
report, on one course folder graded by nbgrader's own commands."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbgrader", reason="the classroom extra is not installed")

from ksmbook.__main__ import main  # noqa: E402

BIN = str(Path(sys.executable).parent)
ENV = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
NAME = "hw1"
ROSTER = """\
id,first_name,last_name,email
good,Ada,Lovelace,ada@example.org
late,Bob,"Smith, Jr",bob@example.org
crash,Dee,Dee,dee@example.org
tampered,Eve,Adams,eve@example.org
broken,Gus,Grissom,gus@example.org
empty,Hal,Hope,hal@example.org
absent,Ida,Ives,ida@example.org
"""
# submission times against the due date 2026-03-02 17:00 UTC
ON_TIME = "2026-03-02 16:59:00.000000 UTC"
LATE = "2026-03-03 08:00:00.000000 UTC"      # 15 hours late: one started day, 10 % off


class _Run:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def ksmbook(*args: str) -> _Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["classroom", *args])
    return _Run(code, out.getvalue(), err.getvalue())


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([os.path.join(BIN, "nbgrader"), *args], cwd=course, env=ENV,
                          capture_output=True, text=True, timeout=300)


def _gid(cell: object) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")  # type: ignore[attr-defined]


def _solutions(course: Path) -> dict[str, str]:
    src = nbformat.read(course / "source" / NAME / f"{NAME}.ipynb", as_version=4)
    out = {}
    for c in src.cells:
        if c.metadata.get("nbgrader", {}).get("solution"):
            lines = c.source.splitlines()
            out[_gid(c)] = "\n".join(
                lines[lines.index("### BEGIN SOLUTION") + 1:lines.index("### END SOLUTION")])
    return out


def submit(course: Path, student: str, nb: object | str | None, when: str = ON_TIME) -> None:
    """Place a submission as nbgrader's collect does: submitted/STUDENT/NAME/ + timestamp."""
    dest = course / "submitted" / student / NAME
    dest.mkdir(parents=True)
    if isinstance(nb, str):
        (dest / f"{NAME}.ipynb").write_text(nb)
    elif nb is not None:
        nbformat.write(nb, dest / f"{NAME}.ipynb")
    (dest / "timestamp.txt").write_text(when)


def answered(course: Path, answers: dict[str, str] | None = None) -> object:
    nb = nbformat.read(course / "release" / NAME / f"{NAME}.ipynb", as_version=4)
    sol = {**_solutions(course), **(answers or {})}
    for c in nb.cells:
        if _gid(c) in sol:
            c.source = sol[_gid(c)]
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("course") / "ksmbook-course"
    r = ksmbook("assignment", "--chapter", "2", "--course", str(root), "--name", NAME,
                "--count", "3", "--seed", "0")  # the book's problems (chapter_exercises)
    assert r.returncode == 0, r.stderr
    roster = root.parent / "roster.csv"
    roster.write_text(ROSTER)
    r = ksmbook("roster", "--course", str(root), str(roster))
    assert r.returncode == 0, r.stderr
    r = ksmbook("due", "--course", str(root), "--assignment", NAME, "--due",
                "2026-03-02 18:00 Europe/Paris", "--late-penalty", "10", "--late-days", "3")
    assert r.returncode == 0, r.stderr
    g = nbgrader(root, "generate_assignment", NAME)
    assert g.returncode == 0, g.stderr
    submit(root, "good", answered(root))
    submit(root, "late", answered(root), LATE)
    crash = answered(root, {"answer_2": "import os; os._exit(1)"})
    submit(root, "crash", crash)
    tampered = answered(root)
    tampered.cells = [c for c in tampered.cells  # type: ignore[attr-defined]
                      if _gid(c) != "test_3"]
    for c in tampered.cells:  # type: ignore[attr-defined]
        if _gid(c) == "test_1":
            c.source = "pass"
    submit(root, "tampered", tampered)
    submit(root, "broken", "{ this is not a notebook")
    submit(root, "empty", None)
    g = nbgrader(root, "autograde", NAME)
    # nbgrader exits 1 because two submissions failed; the others are graded.
    assert "There was an error processing assignment 'hw1' for student 'crash'" in g.stderr
    # a submission collected after autograde ran
    submit(root, "straggler", answered(root))
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def exported(course: Path) -> tuple[_Run, dict[str, dict[str, str]], list[dict[str, str]]]:
    r = ksmbook("export", "--course", str(course), "--assignment", NAME)
    assert r.returncode == 0, r.stderr
    grades = {row["student_id"]: row for row in _rows(course / "grades.csv")}
    return r, grades, _rows(course / "questions.csv")


def test_roster_names_every_student_in_the_export(exported: tuple) -> None:
    _r, grades, _q = exported
    assert grades["late"]["last_name"] == "Smith, Jr" and grades["good"]["email"] == \
        "ada@example.org"
    assert grades["absent"]["status"] == "not submitted" and grades["absent"]["score"] == "0"
    assert grades["absent"]["first_name"] == "Ida"


def test_due_date_in_gradebook_and_released_notebook(course: Path, exported: tuple) -> None:
    _r, grades, _q = exported
    assert grades["good"]["duedate"] == "2026-03-02 17:00:00"  # 18:00 Paris, in UTC
    nb = json.loads((course / "release" / NAME / f"{NAME}.ipynb").read_text())
    due = nb["cells"][1]
    assert due["metadata"]["ksmbook"]["role"] == "due_date"
    assert due["metadata"]["editable"] is False
    text = "".join(due["source"])
    assert "Due: Monday 02 March 2026, 18:00 CET" in text and "16:00" not in text
    assert "10% of its score for each day" in text and "more than 3 days late" in text


def test_late_policy_applied_by_autograde(exported: tuple) -> None:
    _r, grades, _q = exported
    good, late = grades["good"], grades["late"]
    assert (good["raw_score"], good["late_submission_penalty"], good["score"]) == ("3", "0", "3")
    assert good["seconds_late"] == "0"
    assert late["seconds_late"] == str(15 * 3600)
    assert (late["raw_score"], late["late_submission_penalty"], late["score"]) == \
        ("3", "0.3", "2.7")


def test_late_policy_days() -> None:
    from ksmbook.classroom.course import LatePolicy

    policy = LatePolicy(10, 3)
    hour, day = 3600, 86400
    assert [policy.penalty(3, s) for s in (0, hour, day, day + 1, 3 * day, 3 * day + 1)] == \
        [0, pytest.approx(0.3), pytest.approx(0.3), pytest.approx(0.6), pytest.approx(0.9), 3]
    assert LatePolicy(100).penalty(2.5, 1) == 2.5 and LatePolicy(0).penalty(2, day) == 0


def test_export_flags_what_cannot_be_trusted(exported: tuple) -> None:
    r, grades, _q = exported
    assert {s for s, row in grades.items() if row["flagged"] == "yes"} == {
        "crash", "tampered", "broken", "empty", "straggler"}
    assert grades["crash"]["status"] == "autograde failed"
    assert "autograde failed" in grades["crash"]["flags"]
    assert "test cell test_3 deleted" in grades["tampered"]["flags"]
    assert "test cell test_1 edited" in grades["tampered"]["flags"]
    assert "unreadable" in grades["broken"]["flags"]
    assert "missing" in grades["empty"]["flags"]
    assert grades["straggler"]["status"] == "not autograded"
    # the summary the command prints names each flagged student with the reason
    flagged = r.stdout.split("FLAGGED (5)")[1]
    for student in ("crash", "tampered", "broken", "empty", "straggler"):
        assert f"\n    {student} " in flagged
    assert "not submitted (1): absent" in r.stdout
    assert "late (1): late 15h (penalty 0.3)" in r.stdout
    assert f"{NAME}: 8 students, 7 submitted, 3 autograded" in r.stdout


def test_questions_csv_has_points_per_question(exported: tuple) -> None:
    _r, _g, questions = exported
    mine = [q for q in questions if q["student_id"] == "good"]
    assert [q["question"] for q in mine] == ["test_1", "test_2", "test_3"]
    assert all(q["points"] == q["max_points"] == "1" for q in mine)
    assert {q["status"] for q in mine} == {"correct"}
    crash = [q for q in questions if q["student_id"] == "crash"]
    assert {q["status"] for q in crash} == {"autograde failed"}
    assert all(q["flagged"] == "yes" for q in crash)
    deleted = {q["question"]: q for q in questions if q["student_id"] == "tampered"}
    assert deleted["test_3"]["status"] in ("not graded (test cell missing)", "incorrect")
    assert deleted["test_3"]["flags"] == "test cell test_3 deleted"
    assert deleted["test_1"]["flags"] == "test cell test_1 edited"
    assert deleted["test_2"]["flags"] == ""  # a question's flags name its own cell only


def test_bad_input_exit_2_nothing_written(course: Path, tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in course.rglob("*") if p.is_file()}
    roster = tmp_path / "r.csv"
    cases = [
        ("id,first_name\nbob,Bob\nbob,Bobby\n", "student id 'bob' again"),
        ("name,email\nbob,b@x.org\n", "no id column"),
        ("id,email\nbob,not-an-email\n", "not an email address"),
        ("id,first_name\n../etc,Bob\n", "is not a user name"),
        ("", "empty"),
        ("id,first_name,last_name\nbob,Bob,Smith,Jr\n", "a comma inside a name needs quotes"),
    ]
    for text, message in cases:
        roster.write_text(text)
        r = ksmbook("roster", "--course", str(course), str(roster))
        assert r.returncode == 2 and message in r.stderr, (text, r.stderr)
    roster.write_bytes(b"id\n\xff\xfe\n")
    r = ksmbook("roster", "--course", str(course), str(roster))
    assert r.returncode == 2 and "not UTF-8" in r.stderr
    r = ksmbook("roster", "--course", str(course), str(tmp_path / "nope.csv"))
    assert r.returncode == 2 and "cannot read the roster" in r.stderr
    r = ksmbook("roster", "--course", str(tmp_path / "nocourse"), str(roster))
    assert r.returncode == 2 and "not UTF-8" in r.stderr  # the roster is read first
    assert not (tmp_path / "nocourse").exists()
    roster.write_text(ROSTER)
    r = ksmbook("roster", "--course", str(tmp_path / "no" / "course"), str(roster))
    assert r.returncode == 2 and "no folder" in r.stderr and not (tmp_path / "no").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    r = ksmbook("roster", "--course", str(tmp_path / "full"), str(roster))
    assert r.returncode == 2 and "not empty" in r.stderr
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["notes.txt"]
    r = ksmbook("roster", "--course", str(tmp_path / "new-course"), str(roster))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # every id of ROSTER is a name the hub accepts
    assert "new-course: 7 students in the roster (7 added, 0 updated)" in r.stdout
    assert "course_id = 'new-course'" in (tmp_path / "new-course" / "nbgrader_config.py"
                                          ).read_text()
    assert (tmp_path / "new-course").stat().st_mode & 0o777 == 0o700  # the gradebook's folder
    roster.write_text("id\nAlice\nroot\nbob\n")
    r = ksmbook("roster", "--course", str(tmp_path / "other-course"), str(roster))
    assert r.returncode == 0 and "refuses these names at sign-up" in r.stderr
    assert r.stderr.rstrip().endswith(": Alice, root")

    r = ksmbook("due", "--course", str(course), "--assignment", "hw9", "--due", "2026-03-01")
    assert r.returncode == 2 and "no assignment 'hw9'" in r.stderr and "hw1" in r.stderr
    r = ksmbook("due", "--course", str(course), "--assignment", NAME, "--due", "next tuesday")
    assert r.returncode == 2 and "not a date" in r.stderr
    r = ksmbook("due", "--course", str(course), "--assignment", NAME, "--due",
                "2026-03-01 10:00 Mars/Olympus")
    assert r.returncode == 2 and "unknown time zone" in r.stderr
    r = ksmbook("due", "--course", str(course), "--assignment", NAME, "--due", "2026-03-01",
                "--late-penalty", "150")
    assert r.returncode == 2 and "0-100" in r.stderr

    r = ksmbook("export", "--course", str(course), "--assignment", "hw9")
    assert r.returncode == 2 and "no assignment 'hw9'" in r.stderr
    r = ksmbook("export", "--course", str(course), "--out", str(course / "nbgrader_config.py"))
    assert r.returncode == 2 and "not a folder" in r.stderr
    r = ksmbook("export", "--course", str(tmp_path / "full"))
    assert r.returncode == 2 and "no nbgrader_config.py" in r.stderr
    r = ksmbook("export", "--course", str(tmp_path / "nocourse"))
    assert r.returncode == 2 and "no course folder" in r.stderr
    after = {p: p.read_bytes() for p in course.rglob("*") if p.is_file()}
    assert after == before


# -- the class report, on a synthetic class of 30 -----------------------------------------------

CLASS = 30
WRONG_POOL = ["0", "1", "2", "3", "'ENOMEM'", "'EINVAL'", "'EPERM'", "True",
              "[(0, 8, '')]", "[(0, 2, ''), (2, 8, 'mg')]", "[(0, 4, 'mg'), (4, 8, '')]",
              "'none'", "'A'"]


def _typical_wrong(problem: object) -> list[str]:
    """Up to three wrong answers (Python source) that the problem's grader calls incorrect,
    each revealing a different misconception."""
    from ksmbook.classroom.report import _key

    out, seen = [], set()
    for cand in WRONG_POOL:
        fb = problem.grade(eval(cand))  # type: ignore[attr-defined]
        if fb.status == "incorrect":
            key = _key(problem.misconception(problem.parse(eval(cand))))  # type: ignore[attr-defined]
            if key not in seen:
                seen.add(key)
                out.append(cand)
    return out[:3]


@pytest.fixture(scope="module")
def synthetic_class(course: Path) -> dict[str, dict[int, str]]:
    """hw2: chapter 2's first four problems, 30 students, answers drawn at random (right,
    a typical wrong one, unreadable, or left blank), submitted but not autograded."""
    import random

    from ksmbook.exercises import chapter_exercises

    r = ksmbook("assignment", "--chapter", "2", "--course", str(course), "--name", "hw2",
                "--count", "4", "--seed", "0")  # the book's problems (chapter_exercises)
    assert r.returncode == 0, r.stderr
    g = nbgrader(course, "generate_assignment", "hw2")
    assert g.returncode == 0, g.stderr
    problems = chapter_exercises(2)[:4]
    solutions = {}
    src = nbformat.read(course / "source" / "hw2" / "hw2.ipynb", as_version=4)
    for c in src.cells:
        if c.metadata.get("nbgrader", {}).get("solution"):
            lines = c.source.splitlines()
            solutions[_gid(c)] = lines[lines.index("### BEGIN SOLUTION") + 1].split(" = ", 1)[1]
    rng = random.Random(15)
    chosen: dict[str, dict[int, str]] = {}
    for i in range(CLASS):
        student = f"s{i:02d}"
        nb = nbformat.read(course / "release" / "hw2" / "hw2.ipynb", as_version=4)
        mine = {}
        for n, problem in enumerate(problems, 1):
            roll = rng.random()
            wrong = _typical_wrong(problem)
            if roll < 0.5 or not wrong:
                mine[n] = solutions[f"answer_{n}"]
            elif roll < 0.85:
                mine[n] = rng.choice(wrong)
            elif roll < 0.93:
                mine[n] = "'banana'"
            else:
                continue  # left as released: raise NotImplementedError()
        for c in nb.cells:
            m = _gid(c)
            if m and m.startswith("answer_") and int(m[7:]) in mine:
                c.source = f"# my answer\n{m} = {mine[int(m[7:])]}"
        dest = course / "submitted" / student / "hw2"
        dest.mkdir(parents=True)
        nbformat.write(nb, dest / "hw2.ipynb")
        (dest / "timestamp.txt").write_text(ON_TIME)
        chosen[student] = mine
    return chosen


def test_report_on_a_synthetic_class(course: Path, synthetic_class: dict[str, dict[int, str]],
                                     tmp_path: Path) -> None:
    import base64
    import html as html_mod

    from ksmbook.exercises import chapter_exercises

    out = tmp_path / "hw2.html"
    r = ksmbook("report", "--course", str(course), "--assignment", "hw2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    problems = chapter_exercises(2)[:4]
    # two embedded PNG figures: the score distribution and the success rates
    images = [src.split(",", 1)[1] for src in
              __import__("re").findall(r'src="(data:image/png;base64,[^"]+)"', page)]
    assert len(images) == 2
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert f"Course <code>ksmbook-course</code>: {CLASS + 7} students, {CLASS} submitted" in page
    from ksmbook.classroom.report import _key

    for n, problem in enumerate(problems, 1):
        given = [a[n] for a in synthetic_class.values() if n in a]
        right = sum(problem.grade(eval(a)).status == "correct" for a in given)
        rate = f"{100 * right / CLASS:.0f}% right"
        assert rate in page and f"  {n}. Problem {n}: {rate}" in r.stdout
        counts: dict[str, int] = {}
        for a in given:
            if problem.grade(eval(a)).status == "incorrect":
                key = _key(problem.misconception(problem.parse(eval(a))))
                counts[key] = counts.get(key, 0) + 1
        assert counts, f"problem {n}: the synthetic class got it all right"
        for key, count in counts.items():
            assert f"<tr><td>{html_mod.escape(key)}</td><td class=n>{count}</td>" in page
    assert "&#x27;banana&#x27;" in page  # an unreadable answer, with an example
    # mean of the scores read from the answers
    assert f"{CLASS} submission(s) not autograded yet are scored here" in page


def test_report_uses_the_gradebook_and_flags(course: Path, exported: tuple,
                                             tmp_path: Path) -> None:
    r = ksmbook("report", "--course", str(course), "--assignment", NAME)
    assert r.returncode == 0, r.stderr
    page = (course / "reports" / f"{NAME}.html").read_text()
    assert "Mean score" in page and "<li>tampered: test cell test_1 edited" in page
    assert "1 submission(s) not autograded yet" in page  # the straggler
    r = ksmbook("report", "--course", str(course), "--assignment", "nope")
    assert r.returncode == 2 and "no assignment 'nope'" in r.stderr
    r = ksmbook("report", "--course", str(course), "--assignment", NAME, "--out",
                str(tmp_path))
    assert r.returncode == 2 and "a folder" in r.stderr


def test_read_answer_never_runs_code() -> None:
    from ksmbook.classroom.report import read_answer

    assert read_answer("# x\nanswer_1 = [(0, 2, 'mg')]", "answer_1") == \
        ("[(0, 2, 'mg')]", [(0, 2, "mg")], "ok")
    assert read_answer("answer_1 = __import__('os').system('false')", "answer_1")[2] == \
        "unreadable"
    assert read_answer("raise NotImplementedError()", "answer_1")[2] == "unattempted"
    assert read_answer("answer_1 = ...", "answer_1")[2] == "unattempted"
    assert read_answer("answer_1 = (", "answer_1")[2] == "unreadable"


def test_report_reads_a_computed_answer_from_the_recorded_value(tmp_path: Path) -> None:
    from ksmbook.classroom.report import _recorded_of
    from ksmbook.classroom.student import ANSWER_MIME

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("record_answer(1, answer_1)")
    cell.metadata["nbgrader"] = {"grade_id": "test_1"}
    cell.outputs = [nbformat.v4.new_output(
        "display_data", data={"text/plain": "answer_1 = 3", ANSWER_MIME: {"answer": 1,
                                                                            "repr": "3"}})]
    nb.cells.append(cell)
    nbformat.write(nb, tmp_path / "hw.ipynb")
    assert _recorded_of(tmp_path / "hw.ipynb") == {1: "3"}
