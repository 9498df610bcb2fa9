"""nbgrader end to end: assignments made by `python -m ksmbook classroom assignment`, released,
answered by honest and cheating students, autograded, fed back and exported by nbgrader's own
commands, graded by ksmbook's step in nbgrader's process (not in the students' kernels).

One course for the module: "chapter02" (one problem set for the class drawn from the course
secret, three problems and a written question) and "variant07" (each student's own ksmd
problems, two points each).
"""

from __future__ import annotations

import ast
import contextlib
import csv
import html
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbgrader", reason="the classroom extra is not installed")

from ksmbook.__main__ import main  # noqa: E402
from ksmbook.classroom import write_assignment  # noqa: E402
from ksmbook.classroom.assignment import _solution_code, wrong_answers  # noqa: E402
from ksmbook.classroom.grading import verdict  # noqa: E402
from ksmbook.classroom.student import ANSWER_MIME, show_problem  # noqa: E402
from ksmbook.classroom.variants import load_plan, load_secret, problems_for  # noqa: E402
from ksmbook.exercises import CHAPTERS, chapter_exercises  # noqa: E402

BIN = str(Path(sys.executable).parent)
ENV = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
# One course for the module, built by real nbgrader runs (8 submissions autograded): minutes on
# a loaded machine, more than the suite's default per-test timeout.
pytestmark = pytest.mark.timeout(1200)
FIXED = ("solution", "untouched", "onewrong", "patcher", "transformer", "tamper")
VARIANT = ("alice", "bob")  # bob hands in alice's answers


class _Run:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _ksmbook(*args: str) -> _Run:
    """`python -m ksmbook classroom ARGS`, run in this process (the CLI's own main())."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["classroom", *args])
    return _Run(code, out.getvalue(), err.getvalue())


def _nbgrader(course: Path, *args: str) -> str:
    r = subprocess.run([os.path.join(BIN, "nbgrader"), *args], cwd=course, env=ENV,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"nbgrader {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def _by_id(nb: object) -> dict[str, object]:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells  # type: ignore[attr-defined]
            if "nbgrader" in c.metadata}


def _key(course: Path, assignment: str, student: str) -> dict[str, str]:
    r = _ksmbook("solutions", "--course", str(course), "--assignment", assignment,
                 "--student", student)
    assert r.returncode == 0, r.stderr
    return {line.split(" = ", 1)[0]: line for line in r.stdout.splitlines()}


PATCHER = """\
import builtins, sys, types
import ksmbook.classroom, ksmbook.exercises.problem as _p
ksmbook.classroom.grade_answer = lambda *a, **k: None   # the one line of issue 15
ksmbook.classroom.record_answer = lambda *a, **k: None
_p.Problem.grade = lambda self, a: _p.Feedback("correct", "Correct.")
fake = types.ModuleType("ksmbook.classroom")
fake.record_answer = fake.grade_answer = lambda *a, **k: None
sys.modules["ksmbook.classroom"] = fake
_import = builtins.__import__
builtins.__import__ = (lambda name, *a, **k:
                       fake if name.startswith("ksmbook") else _import(name, *a, **k))
answer_1 = "forged"
"""

TRANSFORMER = f"""\
import re
def _forge(lines):
    m = re.search(r"record_answer\\((\\d+)", "".join(lines))
    if not m:
        return lines
    data = {{'text/plain': 'ok',
            {ANSWER_MIME!r}: {{'answer': int(m.group(1)), 'repr': "'forged'"}}}}
    return ["from IPython.display import display\\n", f"display({{data!r}}, raw=True)\\n"]
get_ipython().input_transformers_post.append(_forge)
answer_1 = None
"""

TAMPER_1 = """\
import sqlite3, subprocess
subprocess.Popen(["sleep", "597"], start_new_session=True, stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # a process left behind
try:
    db = sqlite3.connect(r"{root}/gradebook.db")
    db.execute("UPDATE grade SET manual_score = 99")
    db.commit()
    print("gradebook written")
except Exception as e:
    print("gradebook:", repr(e))
try:
    with open(r"{root}/nbgrader_config.py", "a") as f:
        f.write("\\nc.Autograde.autograde_preprocessors = []\\n")
    print("config written")
except Exception as e:
    print("config:", repr(e))
{answer}
"""

TAMPER_3 = """\
try:
    answer_3 = open(r"{root}/.ksmbook/secret", "rb").read().hex()
except Exception:
    answer_3 = "denied"
"""


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("course") / "ksmbook-course"
    r = _ksmbook("assignment", "--chapter", "2", "--course", str(root), "--count", "3",
                 "--written", "1")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = _ksmbook("assignment", "--chapter", "7", "--course", str(root), "--name", "variant07",
                 "--count", "2", "--variants", "--students", "alice,bob,carol", "--points", "2")
    assert r.returncode == 0, r.stderr
    _nbgrader(root, "generate_assignment", "*")

    key = _key(root, "chapter02", "solution")
    problems = problems_for(load_plan(root, "chapter02"), load_secret(root))  # type: ignore[arg-type]
    for student in FIXED:
        nb = nbformat.read(root / "release" / "chapter02" / "chapter02.ipynb", as_version=4)
        cells = _by_id(nb)
        if student in ("solution", "onewrong", "tamper"):
            for gid, line in key.items():
                cells[gid].source = line  # type: ignore[attr-defined]
        if student == "solution":
            cells["explain_1"].source = "The rule that decides it, explained."  # type: ignore[attr-defined]
        if student == "onewrong":
            cells["answer_1"].source = f"answer_1 = {wrong_answers(problems[0])[0][0]}"  # type: ignore[attr-defined]
        if student == "patcher":
            cells["answer_1"].source = PATCHER  # type: ignore[attr-defined]
            for n in (2, 3):
                cells[f"answer_{n}"].source = f"answer_{n} = 'forged'"  # type: ignore[attr-defined]
        if student == "transformer":
            cells["answer_1"].source = TRANSFORMER  # type: ignore[attr-defined]
        if student == "tamper":
            cells["answer_1"].source = TAMPER_1.format(root=root, answer=key["answer_1"])  # type: ignore[attr-defined]
            cells["answer_3"].source = TAMPER_3.format(root=root)  # type: ignore[attr-defined]
            cells["test_2"].source = "print('all good')"  # type: ignore[attr-defined]
            nb.cells.remove(cells["test_1"])
        dest = root / "submitted" / student / "chapter02"
        dest.mkdir(parents=True)
        nbformat.write(nb, dest / "chapter02.ipynb")
    alice = _key(root, "variant07", "alice")
    for student in VARIANT:
        nb = nbformat.read(root / "release" / "variant07" / "variant07.ipynb", as_version=4)
        for gid, line in alice.items():
            _by_id(nb)[gid].source = line  # type: ignore[attr-defined]
        dest = root / "submitted" / student / "variant07"
        dest.mkdir(parents=True)
        nbformat.write(nb, dest / "variant07.ipynb")
    (root / "autograde.log").write_text(_nbgrader(root, "autograde", "*"))
    _nbgrader(root, "generate_feedback", "*")
    _nbgrader(root, "export")
    return root


def _scores(course: Path) -> dict[tuple[str, str], tuple[float, float]]:
    with open(course / "grades.csv", newline="") as f:
        return {(r["assignment"], r["student_id"]): (float(r["score"]), float(r["max_score"]))
                for r in csv.DictReader(f)}


def test_cheats_score_what_their_answers_are_worth(course: Path) -> None:
    """The one-line monkeypatch of issue 15 and its variants (patching ksmbook, builtins,
    sys.modules, the exercise classes; an input transformer forging the recorded answers;
    deleting and editing test cells; writing the gradebook and the course's config; reading
    the secret) raise no score. chapter02: three problems of 1 point, a written question of 2
    (graded by hand later, so 0 here)."""
    got = {s: _scores(course)[("chapter02", s)] for s in FIXED}
    assert got == {"solution": (3, 5), "untouched": (0, 5), "onewrong": (2, 5),
                   "patcher": (0, 5), "transformer": (0, 5), "tamper": (1, 5)}
    # tamper: problem 1 (its recording cell deleted) 0, problem 2 (cell edited, restored) 1,
    # problem 3 (the secret, unreadable) 0.
    config = (course / "nbgrader_config.py").read_text()
    assert "autograde_preprocessors = []" not in config
    from nbgrader.api import Gradebook  # type: ignore[import-untyped]

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        manual = [g.manual_score for sub in gb.assignment_submissions("chapter02")
                  for nb in sub.notebooks for g in nb.grades]
    assert manual and all(m is None for m in manual)
    # What a student's kernel left running was killed with it.
    left = subprocess.run(["pgrep", "-f", "sleep 597"], capture_output=True, text=True)
    assert left.stdout == "", "a process the tamper kernel started is still running"


def test_a_classmates_answers_score_what_they_are_worth_on_your_problems(course: Path) -> None:
    plan, secret = load_plan(course, "variant07"), load_secret(course)
    assert plan is not None
    mine, theirs = problems_for(plan, secret, "bob"), problems_for(plan, secret, "alice")
    assert [p.text() for p in mine] != [p.text() for p in theirs]
    alice = _key(course, "variant07", "alice")
    worth = sum(2 * verdict(p, n, alice[f"answer_{n}"].split(" = ", 1)[1])[0]
                for n, p in enumerate(mine, 1))
    scores = _scores(course)
    assert scores[("variant07", "alice")] == (4, 4)
    assert scores[("variant07", "bob")] == (worth, 4)
    assert worth < 4


def test_released_notebooks_hide_answers_seeds_and_rubric(course: Path) -> None:
    for name in ("chapter02", "variant07"):
        folder = course / "release" / name
        text = "".join(p.read_text() for p in folder.iterdir())
        assert "BEGIN SOLUTION" not in text and "Rubric" not in text
        assert "grade_answer" not in text and "HIDDEN TESTS" not in text
        assert not re.search(r"seed \d|/v\d", text), "a generator or seed is named"
        assert "alice" not in text and "carol" not in text  # problems.json: hashed ids
    source = (course / "source" / "chapter02" / "chapter02.ipynb").read_text()
    assert "Rubric" in source and "Part or no marks" in source
    secret = (course / ".ksmbook" / "secret").read_bytes()
    assert (course / ".ksmbook" / "secret").stat().st_mode & 0o777 == 0o600
    assert (course / ".ksmbook").stat().st_mode & 0o777 == 0o700
    for path in (course / "release").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret not in data and secret.hex().encode() not in data


def test_each_student_sees_their_own_problems(course: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    plan, secret = load_plan(course, "variant07"), load_secret(course)
    assert plan is not None
    folder = course / "release" / "variant07"
    for student in ("alice", "carol"):
        monkeypatch.setenv("JUPYTERHUB_USER", student)
        show_problem(2, folder)
        assert problems_for(plan, secret, student)[1].text() in capsys.readouterr().out
    monkeypatch.setenv("JUPYTERHUB_USER", "mallory")
    show_problem(1, folder)
    assert "no problems for 'mallory'" in capsys.readouterr().out


def test_feedback_is_plain_text_and_points_at_nothing_missing(course: Path) -> None:
    problems = problems_for(load_plan(course, "chapter02"), load_secret(course))  # type: ignore[arg-type]
    secret = (course / ".ksmbook" / "secret").read_bytes().hex()
    for student in FIXED:
        page = (course / "feedback" / student / "chapter02" / "chapter02.html").read_text()
        assert "most recent call last" not in page and "Cell In[" not in page
        assert "hint()" not in page and "solution()" not in page
        assert "site-packages" not in page and secret not in page
        assert student == "tamper" or str(course) not in page  # (tamper's code names it)
    wrong = wrong_answers(problems[0])[0]
    page = (course / "feedback" / "onewrong" / "chapter02" / "chapter02.html").read_text()
    message = html.escape(f"Problem 1: Not quite: {wrong[1]}", quote=False)
    assert message in page
    page = (course / "feedback" / "untouched" / "chapter02" / "chapter02.html").read_text()
    assert "Problem 1: no answer was recorded" in page
    page = (course / "feedback" / "tamper" / "chapter02" / "chapter02.html").read_text()
    assert "Problem 1: the cell that records answer_1 was deleted" in page
    assert "unable to open database file" in page and "Permission denied" in page


def test_no_checksum_warnings_for_honest_students(course: Path) -> None:
    log = (course / "autograde.log").read_text()
    parts = re.split(r"Creating/updating student with ID '([^']+)'", log)
    by_student: dict[str, str] = {}
    for student, text in zip(parts[1::2], parts[2::2], strict=True):
        by_student[student] = by_student.get(student, "") + text
    for student in ("solution", "untouched", "onewrong", "alice", "bob"):
        assert "hecksum" not in by_student[student], student
    assert "hecksum" in by_student["tamper"]  # its edited cell is noticed


def test_written_question_is_graded_by_hand(course: Path) -> None:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        grade = gb.find_grade("explain_1", "chapter02", "chapter02", "solution")
        assert grade.max_score == 2 and grade.needs_manual_grade
        assert gb.find_grade_cell("test_1", "variant07", "variant07").max_score == 2


def test_validate_names_blank_answers(course: Path, tmp_path: Path) -> None:
    blank = tmp_path / "chapter02.ipynb"
    shutil.copy(course / "release" / "chapter02" / "chapter02.ipynb", blank)
    out = _nbgrader(tmp_path, "validate", str(blank))
    assert "VALIDATION FAILED" in out and "problem 1 has no answer yet" in out
    assert "Success" not in out and "hecksum" not in out


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_every_chapter_grades_its_own_solution(chapter: int, tmp_path: Path) -> None:
    """Each chapter's notebook: the instructor's answers grade as correct in ksmbook's step,
    and a wrong answer gets the problem's own feedback."""
    nb = nbformat.read(write_assignment(chapter, tmp_path), as_version=4)
    cells = _by_id(nb)
    problems = problems_for(load_plan(tmp_path, f"chapter{chapter:02d}"),  # type: ignore[arg-type]
                            load_secret(tmp_path))
    assert len([g for g in cells if g.startswith("test_")]) == len(problems)
    for n, problem in enumerate(problems, 1):
        source = cells[f"answer_{n}"].source  # type: ignore[attr-defined]
        assert f"answer_{n} = {_solution_code(problem)}" in source
        literal = _solution_code(problem)
        assert verdict(problem, n, repr(ast.literal_eval(literal)))[0]
        for value, message in wrong_answers(problem, 2):
            ok, text = verdict(problem, n, value)
            assert not ok and text == f"Problem {n}: Not quite: {message}"
            assert "hint()" not in text and "solution()" not in text


def test_an_assignment_of_chapter_9_asks_its_huge_page_problems(tmp_path: Path) -> None:
    """Chapter 9's exercises are in the chapter sets, so a class can be set them: with --seed 0
    the book's own (each problem's steps, and its answer as the simulator gives it on the
    modern kernel with THP mode madvise), without a seed others of the same kind."""
    r = _ksmbook("assignment", "--chapter", "9", "--course", str(tmp_path), "--name", "book",
                 "--seed", "0")
    assert r.returncode == 0, r.stderr
    cells = _by_id(nbformat.read(tmp_path / "source" / "book" / "book.ipynb", as_version=4))
    book = chapter_exercises(9)
    assert len([g for g in cells if g.startswith("test_")]) == len(book)
    for n, ex in enumerate(book, 1):
        problem = cells[f"problem_{n}"].source  # type: ignore[attr-defined]
        assert all(line in problem for line in ex.setting()), n
        assert f"answer_{n} = {ex.answer_text()}" in cells[f"answer_{n}"].source  # type: ignore[attr-defined]
    assert _ksmbook("assignment", "--chapter", "9", "--course", str(tmp_path)).returncode == 0
    cells = _by_id(nbformat.read(tmp_path / "source" / "chapter09" / "chapter09.ipynb",
                                 as_version=4))
    for n in range(1, len(book) + 1):
        assert "2 MiB at a 2 MiB boundary" in cells[f"problem_{n}"].source  # type: ignore[attr-defined]


def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    course = tmp_path / "course"
    for args, says in [
        (("--chapter", str(max(CHAPTERS) + 1)), f"no chapter {max(CHAPTERS) + 1}"),
        (("--chapter", "2", "--count", "99"), "has 6 exercises"),
        (("--chapter", "2", "--variants"), "--variants needs the students"),
        (("--chapter", "2", "--variants", "--seed", "3", "--students", "a"), "do not go"),
        (("--chapter", "2", "--written", "7"), "--written 7"),
        (("--chapter", "2", "--written", "x"), "--written 'x'"),
        (("--chapter", "2", "--points", "-1"), "points are whole numbers"),
        (("--chapter", "2", "--variants", "--students", "a b"), "student id 'a b'"),
    ]:
        r = _ksmbook("assignment", "--course", str(course), *args)
        assert r.returncode == 2 and says in r.stderr, (args, r.stderr)
        assert not course.exists()

    assert _ksmbook("assignment", "--chapter", "2", "--course", str(course)).returncode == 0
    secret = (course / ".ksmbook" / "secret").read_bytes()
    target = course / "source" / "chapter02" / "chapter02.ipynb"
    before = target.read_bytes()
    r = _ksmbook("assignment", "--chapter", "3", "--course", str(course), "--name",
                 "chapter02")
    assert r.returncode == 2 and "--force" in r.stderr and target.read_bytes() == before
    r = _ksmbook("assignment", "--chapter", "3", "--course", str(course), "--name",
                 "chapter02", "--force")
    assert r.returncode == 0 and target.read_bytes() != before
    assert (course / ".ksmbook" / "secret").read_bytes() == secret  # never remade

    r = _ksmbook("assignment", "--chapter", "2", "--course", str(course), "--name", "book",
                 "--seed", "0")
    assert r.returncode == 0 and "book's own end-of-chapter exercises" in r.stderr

    for args, says in [
        (("--assignment", "nope", "--student", "a"), "no assignment 'nope'"),
        (("--assignment", "chapter02", "--student", "a/b"), "student id 'a/b'"),
    ]:
        r = _ksmbook("solutions", "--course", str(course), *args)
        assert r.returncode == 2 and says in r.stderr and r.stdout == ""
    (course / ".ksmbook" / "secret").rename(course / "moved")
    r = _ksmbook("solutions", "--course", str(course), "--assignment", "chapter02",
                 "--student", "a")
    assert r.returncode == 2 and "no course secret" in r.stderr
    for text in (r.stdout, r.stderr):
        assert secret.hex() not in text

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = _ksmbook("assignment", "--chapter", "2", "--course", str(blocker / "course"))
    assert r.returncode == 2 and "cannot write the course folder" in r.stderr
    assert blocker.read_text() == ""
