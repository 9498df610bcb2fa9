"""The README's "The teacher's path", run as written.

Every ```sh block of that subsection runs, in order, in one shell, as the teacher's terminal on
the hub would run it: a home of its own, the environment the hub gives the teacher's server
(the teacher's nbgrader configuration, the course id, the exchange), a class list of 30 at
``~/class.csv``. Between the release and the collect, three students submit: their
submissions are placed in the exchange exactly as nbgrader's ``submit`` places them
(``inbound/ID+ASSIGNMENT+TIMESTAMP+RANDOM/`` holding the released files, ``timestamp.txt`` and
``submission_secret.txt``), answered from each student's own answer key
(``classroom solutions``), one of them late. Then the grades, the flags, the feedback and the
report that the README promises are checked.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("nbgrader", reason="the classroom extra is not installed")
# nbgrader runs a dozen commands here, each a new Python: minutes on a loaded machine.
pytestmark = pytest.mark.timeout(900)

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
BIN = str(Path(sys.executable).parent)
COURSE = "ksmbook-course"
CLASS = 30
SUBMITTERS = {"alice": "right", "bob": "one wrong", "carol": "late"}

# Runs between the README's release and its collect: the students fetch and submit.
STUDENTS_SUBMIT = r'''
import contextlib, io, json, os, secrets, shutil
from datetime import timedelta
from pathlib import Path

from ksmbook.__main__ import main
from ksmbook.classroom.course import Course

exchange = Path(os.environ["KSMBOOK_EXCHANGE"]) / os.environ["KSMBOOK_COURSE"]
course = Course.open(Path.home() / os.environ["KSMBOOK_COURSE"])
with course.gradebook() as gb:
    due = gb.find_assignment("chapter02").duedate
released = exchange / "outbound" / "chapter02"
plan = json.loads(os.environ["SUBMITTERS"])
for student, how in plan.items():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # python -m ksmbook classroom solutions ...
        assert main(["classroom", "solutions", "--course", str(course.root),
                     "--assignment", "chapter02", "--student", student]) == 0
    answers = dict(line.split(" = ", 1) for line in out.getvalue().splitlines()
                   if line.startswith("answer_"))
    if how == "one wrong":
        answers["answer_1"] = "'not an answer'"
    when = due + (timedelta(days=1, hours=1) if how == "late" else -timedelta(hours=1))
    stamp = when.strftime("%Y-%m-%d %H:%M:%S.%f") + " UTC"
    dest = exchange / "inbound" / f"{student}+chapter02+{stamp}+r4nd0m{student}"
    shutil.copytree(released, dest)
    nb_path = dest / "chapter02.ipynb"
    nb = json.loads(nb_path.read_text())
    for cell in nb["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        if gid in answers:
            cell["source"] = f"{gid} = {answers[gid]}"
    nb_path.write_text(json.dumps(nb))
    (dest / "timestamp.txt").write_text(stamp)
    (dest / "submission_secret.txt").write_text(secrets.token_hex(64))  # as nbgrader submit
print(f"{len(plan)} students submitted")
'''


def teacher_blocks() -> list[str]:
    """The shell blocks of the README's teacher's path, dedented, in order."""
    text = README.read_text()
    start = text.index("### The teacher's path")
    end = text.index("\n### ", start + 1)
    blocks = re.findall(r"^( *)```sh\n(.*?)^\1```", text[start:end], re.M | re.S)
    return [textwrap.dedent("".join(line[len(indent):] if line.startswith(indent) else line
                                    for line in body.splitlines(keepends=True)))
            for indent, body in blocks]


def test_readme_names_one_course_and_one_exchange() -> None:
    """The README's teacher's path and the hub's configuration name the same course id and
    exchange, and the course folder the commands use is the course id's."""
    text = README.read_text()
    hub = (REPO / "classroom" / "jupyterhub_config.py").read_text()
    assert f'KSMBOOK_COURSE", "{COURSE}"' in hub
    assert '"/srv/nbgrader/exchange"' in hub or "/srv/nbgrader/exchange" in \
        (REPO / "ksmbook" / "classroom" / "hub.py").read_text()
    assert f"`{COURSE}` (`KSMBOOK_COURSE`)" in text
    assert "`/srv/nbgrader/exchange` (`KSMBOOK_EXCHANGE`)" in text
    for block in teacher_blocks():
        for course in re.findall(r"--course (\S+)", block):
            assert course in (f"~/{COURSE}", "."), block


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    blocks = teacher_blocks()
    assert len(blocks) >= 4 and any("release_assignment" in b for b in blocks)
    root = tmp_path_factory.mktemp("readme")
    home, exchange = root / "home" / "teacher", root / "exchange"
    home.mkdir(parents=True)
    # the exchange as the hub lays it out at its start
    from ksmbook.classroom.hub import prepare_exchange

    prepare_exchange(exchange, COURSE, None)
    lines = ["id,first_name,last_name,email"]
    names = [*SUBMITTERS, *(f"student{i:02d}" for i in range(len(SUBMITTERS), CLASS))]
    lines += [f"{n},{n.capitalize()},Name{i},{n}@example.org" for i, n in enumerate(names)]
    (home / "class.csv").write_text("\n".join(lines) + "\n")
    hook = root / "students_submit.py"
    hook.write_text(STUDENTS_SUBMIT)
    script = ["set -euo pipefail", "cd ~"]
    for block in blocks:
        script.append(block)
        if "release_assignment" in block:
            script.append(f'python "{hook}"')
    env = {
        "HOME": str(home), "USER": "teacher", "LANG": "C.UTF-8",
        # what the hub's Spawner.environment gives the teacher's server (its terminal)
        "PATH": os.pathsep.join([BIN, "/usr/local/bin", "/usr/bin", "/bin"]),
        "KSMBOOK_COURSE": COURSE, "KSMBOOK_EXCHANGE": str(exchange),
        "KSMBOOK_CHECK_OWNER": "0",  # one OS user submits for all three here
        "SUBMITTERS": __import__("json").dumps(SUBMITTERS),
    }
    if os.environ.get("PYTHONPATH"):  # the Python environment this test runs in
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    teacher = REPO / "classroom" / "teacher"
    if teacher.is_dir():
        env["JUPYTER_CONFIG_PATH"] = str(teacher)
    r = subprocess.run(["bash", "-c", "\n".join(script)], cwd=home, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return home / COURSE, exchange, r.stdout


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_grades_of_the_whole_class(ran: tuple[Path, Path, str]) -> None:
    course, _exchange, out = ran
    grades = {r["student_id"]: r for r in _rows(course / "grades.csv")}
    assert len(grades) == CLASS
    assert grades["alice"]["first_name"] == "Alice" and grades["alice"]["email"] == \
        "alice@example.org"
    top = float(grades["alice"]["max_score"])
    assert top >= 3
    assert float(grades["alice"]["score"]) == top
    assert float(grades["bob"]["raw_score"]) == top - 1
    late = grades["carol"]
    assert late["seconds_late"] == str(25 * 3600)
    assert float(late["raw_score"]) == top
    assert float(late["score"]) == pytest.approx(top * 0.8)  # two started days, 10 % each
    assert grades["student10"]["status"] == "not submitted"
    assert not [s for s, r in grades.items() if r["flagged"]]
    assert "flagged: none" in out and f"{CLASS - len(SUBMITTERS)}): " in out
    questions = _rows(course / "questions.csv")
    assert {q["question"] for q in questions if q["student_id"] == "alice"} >= {
        "test_1", "test_2", "test_3"}


def test_feedback_released_and_report_written(ran: tuple[Path, Path, str]) -> None:
    course, exchange, _out = ran
    feedback = list((exchange / COURSE / "feedback").glob("*.html"))
    assert len(feedback) == len(SUBMITTERS)
    page = (course / "reports" / "chapter02.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert f"{CLASS} students, {len(SUBMITTERS)} submitted" in page


def test_due_date_shown_to_students(ran: tuple[Path, Path, str]) -> None:
    _course, exchange, _out = ran
    released = (exchange / COURSE / "outbound" / "chapter02" / "chapter02.ipynb").read_text()
    assert "Due: Monday 14 December 2026, 17:00 CET" in released
    assert "loses 10% of its score" in released
