"""nbgrader end to end: assignments made by `python -m ksmbook classroom assignment`, released,
answered by four kinds of student, autograded, fed back and exported by nbgrader's own commands.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import html
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbgrader", reason="the classroom extra is not installed")

from ksmbook.__main__ import main  # noqa: E402
from ksmbook.classroom import ProblemRef, write_assignment  # noqa: E402
from ksmbook.exercises import CHAPTERS, chapter_exercises  # noqa: E402

BIN = str(Path(sys.executable).parent)
ENV = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
# chapter 2 whole (VMA problems), chapter 7 cut to 3 problems (ksmd problems, --count).
ASSIGNMENTS = {"chapter02": (2, None), "chapter07": (7, 3)}
STUDENTS = ("solution", "untouched", "onewrong", "blanked")


class _Run:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _ksmbook(*args: str) -> _Run:
    """`python -m ksmbook classroom ARGS`, run in this process (the CLI's own main())."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["classroom", *args])
    return _Run(code, out.getvalue(), err.getvalue())


def _nbgrader(course: Path, *args: str) -> None:
    r = subprocess.run([os.path.join(BIN, "nbgrader"), *args], cwd=course, env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"nbgrader {' '.join(args)}:\n{r.stdout}\n{r.stderr}"


def _by_id(nb: object) -> dict[str, object]:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells  # type: ignore[attr-defined]
            if "nbgrader" in c.metadata}


def _solution_line(source: str) -> str:
    """The instructor's answer: the line between nbgrader's solution markers."""
    lines = source.splitlines()
    return "\n".join(lines[lines.index("### BEGIN SOLUTION") + 1:lines.index("### END SOLUTION")])


def _wrong_answer(problem: object) -> str:
    """A readable answer (Python source) that the problem's own grader calls wrong: the right
    one nudged, or a common slip."""
    text = problem.answer_text()  # type: ignore[attr-defined]
    try:
        right = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        right = text
    nudged: list[object] = []
    if isinstance(right, int):
        nudged.append(right + 1)
    elif isinstance(right, tuple) and right and all(isinstance(x, int) for x in right):
        nudged.append((right[0] + 1, *right[1:]))
    elif isinstance(right, list) and right:
        nudged.append(right[:-1] or [*right, (99, 100, "mg")])
    candidates = [repr(x) for x in nudged] + [
        "0", "'ENOMEM'", "'EINVAL'", "True", "False", "'none'", "'A'", "'a b'"]
    for candidate in candidates:
        fb = problem.grade(eval(candidate))  # type: ignore[attr-defined]
        if fb.status == "incorrect":
            return candidate
    raise AssertionError(f"no wrong answer found for {problem!r}")


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("course")
    for name, (chapter, count) in ASSIGNMENTS.items():
        args = ["assignment", "--chapter", str(chapter), "--course", str(root), "--name", name]
        r = _ksmbook(*args, *(["--count", str(count)] if count else []))
        assert r.returncode == 0, r.stderr
    # nbgrader's commands take a glob of assignments: each runs once for both.
    _nbgrader(root, "generate_assignment", "chapter0?")
    for name, (chapter, _count) in ASSIGNMENTS.items():
        source = nbformat.read(root / "source" / name / f"{name}.ipynb", as_version=4)
        release = root / "release" / name / f"{name}.ipynb"
        answers = {gid: _solution_line(c.source) for gid, c in _by_id(source).items()
                   if gid.startswith("answer_")}
        for student in STUDENTS:
            nb = nbformat.read(release, as_version=4)
            cells = _by_id(nb)
            if student != "untouched":
                for gid, line in answers.items():
                    cells[gid].source = line  # type: ignore[attr-defined]
            if student == "onewrong":
                first = chapter_exercises(chapter)[0]
                cells["answer_1"].source = f"answer_1 = {_wrong_answer(first)}"  # type: ignore[attr-defined]
            if student == "blanked":
                for gid, cell in cells.items():
                    if gid.startswith("test_"):
                        cell.source = ""  # type: ignore[attr-defined]
            dest = root / "submitted" / student / name
            dest.mkdir(parents=True)
            nbformat.write(nb, dest / f"{name}.ipynb")
    _nbgrader(root, "autograde", "chapter0?")
    _nbgrader(root, "generate_feedback", "chapter0?")
    _nbgrader(root, "export")
    return root


def test_released_notebook_hides_answers_and_tests(course: Path) -> None:
    for name, (chapter, count) in ASSIGNMENTS.items():
        text = (course / "release" / name / f"{name}.ipynb").read_text()
        problems = chapter_exercises(chapter)[:count]
        assert "grade_answer" not in text and "BEGIN HIDDEN TESTS" not in text
        assert text.count("raise NotImplementedError()") == len(problems)
        for p in problems:
            assert f"[{p.ident}]" in text  # each problem's text is there, named by its ident


def test_autograde_scores_and_csv_export(course: Path) -> None:
    with open(course / "grades.csv", newline="") as f:
        rows = {(r["assignment"], r["student_id"]): r for r in csv.DictReader(f)}
    for name, (chapter, count) in ASSIGNMENTS.items():
        n = len(chapter_exercises(chapter)[:count])
        expected = {"solution": n, "untouched": 0, "onewrong": n - 1, "blanked": n}
        got = {s: float(rows[(name, s)]["score"]) for s in STUDENTS}
        assert got == expected, name
        assert {float(rows[(name, s)]["max_score"]) for s in STUDENTS} == {n}
    # The exact figures: chapter 2 has six exercises, the chapter 7 cut three.
    assert float(rows[("chapter02", "onewrong")]["score"]) == 5.0
    assert float(rows[("chapter07", "solution")]["score"]) == 3.0


def test_feedback_html_carries_the_misconception(course: Path) -> None:
    for name, (chapter, _count) in ASSIGNMENTS.items():
        for student in STUDENTS:
            page = course / "feedback" / student / name / f"{name}.html"
            assert page.is_file(), page
        wrong_page = (course / "feedback" / "onewrong" / name / f"{name}.html").read_text()
        first = chapter_exercises(chapter)[0]
        message = str(first.grade(eval(_wrong_answer(first))))
        assert html.escape(message, quote=False) in wrong_page or message in wrong_page
        right_page = (course / "feedback" / "solution" / name / f"{name}.html").read_text()
        assert "AssertionError" not in right_page


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_every_chapter_grades_its_own_solution(chapter: int, tmp_path: Path) -> None:
    """Each chapter's notebook: the instructor's answers pass the hidden tests, and a wrong
    answer fails with the problem's own feedback."""
    nb = nbformat.read(write_assignment(chapter, tmp_path), as_version=4)
    cells = _by_id(nb)
    problems = chapter_exercises(chapter)
    assert len([g for g in cells if g.startswith("test_")]) == len(problems)
    for n, problem in enumerate(problems, 1):
        ref = ProblemRef.of(problem)
        rebuilt = ref.rebuild()
        rebuilt.title = problem.title
        assert rebuilt.text() == problem.text()
        ns: dict[str, object] = {}
        exec(cells[f"answer_{n}"].source, ns)  # type: ignore[attr-defined]
        exec(cells[f"test_{n}"].source, ns)  # type: ignore[attr-defined]
        ns[f"answer_{n}"] = eval(_wrong_answer(problem))
        with pytest.raises(AssertionError) as err:
            exec(cells[f"test_{n}"].source, ns)  # type: ignore[attr-defined]
        assert str(err.value) == str(problem.grade(ns[f"answer_{n}"]))


def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    course = tmp_path / "course"
    r = _ksmbook("assignment", "--chapter", "9", "--course", str(course))
    assert r.returncode == 2 and "no chapter 9" in r.stderr and not course.exists()
    r = _ksmbook("assignment", "--chapter", "2", "--course", str(course), "--count", "99")
    assert r.returncode == 2 and "has 6 exercises" in r.stderr and not course.exists()

    assert _ksmbook("assignment", "--chapter", "2", "--course", str(course)).returncode == 0
    target = course / "source" / "chapter02" / "chapter02.ipynb"
    before = target.read_bytes()
    r = _ksmbook("assignment", "--chapter", "3", "--course", str(course), "--name",
                 "chapter02")
    assert r.returncode == 2 and "--force" in r.stderr and target.read_bytes() == before
    r = _ksmbook("assignment", "--chapter", "3", "--course", str(course), "--name",
                 "chapter02", "--force")
    assert r.returncode == 0 and target.read_bytes() != before

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = _ksmbook("assignment", "--chapter", "2", "--course", str(blocker / "course"))
    assert r.returncode == 2 and "cannot write the course folder" in r.stderr
    assert blocker.read_text() == ""
    shutil.rmtree(course)
