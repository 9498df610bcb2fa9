"""ksmbook's grading step without nbgrader runs: answers read as data, feedback as plain text,
per-student problems from the course secret, the sandbox's launcher (fast tests; the end-to-end
runs are in test_classroom_nbgrader.py)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("nbgrader", reason="the classroom extra is not installed")

from ksmbook.__main__ import main  # noqa: E402
from ksmbook.classroom.assignment import _plain, write_assignment  # noqa: E402
from ksmbook.classroom.grading import MAX_ANSWER, verdict  # noqa: E402
from ksmbook.classroom.student import NotAnswered, record_answer  # noqa: E402
from ksmbook.classroom.variants import load_plan, load_secret, problems_for  # noqa: E402
from ksmbook.exercises import chapter_exercises, generate  # noqa: E402


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["classroom", *args])
    return code, out.getvalue(), err.getvalue()


def test_answers_are_read_as_data_never_run(tmp_path: Path) -> None:
    problem = chapter_exercises(2)[0]
    canary = tmp_path / "ran"
    for text in (f"__import__('pathlib').Path({str(canary)!r}).touch()",
                 "(lambda: 1)()", "[" * 500 + "]" * 500, "x" * (MAX_ANSWER + 1)):
        ok, message = verdict(problem, 1, text)
        assert not ok and message.startswith("Problem 1: ") and "0 points" in message
    assert not canary.exists()
    assert verdict(problem, 1, None)[1].startswith("Problem 1: no answer was recorded")
    assert verdict(problem, 1, repr(problem.answer_text()))[0]


def test_feedback_points_at_nothing_a_graded_notebook_lacks() -> None:
    assert _plain("Not quite: x. (hint() tells more; solution() shows the simulator's "
                  "answer.)") == "Not quite: x."
    assert _plain("Follow it through the checks (hint() shows the path).") == \
        "Follow it through the checks."
    assert _plain("Keep (this) and f() too.") == "Keep (this) and f() too."


def test_record_answer_names_a_blank_answer(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    for blank in (None, ...):
        with pytest.raises(NotAnswered, match="problem 3 has no answer yet: write answer_3"):
            record_answer(3, blank)
    with pytest.raises(NotAnswered):
        record_answer(3)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    record_answer(2, "ENOMEM")
    out, err = capsys.readouterr()
    assert "answer_2 = 'ENOMEM'" in out and "ksmbook's autograde step" in err


def test_problems_per_student_hide_their_seed(tmp_path: Path) -> None:
    write_assignment(3, tmp_path, variants=True, students=["ann", "ben"], count=3)
    plan, secret = load_plan(tmp_path, "chapter03"), load_secret(tmp_path)
    assert plan is not None and plan.students == ["ann", "ben"]
    ann, ben = (problems_for(plan, secret, s) for s in ("ann", "ben"))
    assert [p.text() for p in ann] == [p.text() for p in problems_for(plan, secret, "ann")]
    assert [p.text() for p in ann] != [p.text() for p in ben]
    book = chapter_exercises(3)
    for p, b in zip(ann, book, strict=False):
        assert not re.search(r"seed \d|/v\d", p.text())
        assert p.text() != b.text().replace(b.title, p.title)
    # Nobody without the secret: the same id under another secret gets other problems.
    other = problems_for(plan, b"another secret of 32 bytes......", "ann")
    assert [p.text() for p in other] != [p.text() for p in ann]
    # Pinned versions: the plan names each generator with its version.
    assert all("/v" in ident for ident, _profile, _seed in plan.problems)
    generate(plan.problems[0][0], 1)


def test_solutions_prints_the_key_and_the_problems(tmp_path: Path) -> None:
    write_assignment(2, tmp_path, variants=True, students=["ann"], count=2)
    code, out, err = _cli("solutions", "--course", str(tmp_path), "--assignment", "chapter02",
                          "--student", "ann")
    assert code == 0 and err == ""
    assert [line.split(" = ")[0] for line in out.splitlines()] == ["answer_1", "answer_2"]
    code, out, _ = _cli("solutions", "--course", str(tmp_path), "--assignment", "chapter02",
                        "--student", "ann", "--problems")
    assert code == 0 and "# Problem 1" in out and "answer_2 = " in out
    code, out, err = _cli("solutions", "--course", str(tmp_path), "--assignment", "chapter02",
                          "--student", "zed")
    assert code == 2 and out == "" and "'zed' is not among the students" in err
    secret = (tmp_path / ".ksmbook" / "secret").read_bytes()
    assert secret.hex() not in out + err


def test_existing_course_config_gets_the_grading_step(tmp_path: Path) -> None:
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\nc.X = 1\n")
    write_assignment(2, tmp_path, count=1)
    text = (tmp_path / "nbgrader_config.py").read_text()
    assert text.startswith("c = get_config()\nc.X = 1\n")
    assert text.count("AUTOGRADE_PREPROCESSORS") == 2
    write_assignment(2, tmp_path, count=1, name="again")
    assert (tmp_path / "nbgrader_config.py").read_text() == text


def test_sandbox_launcher(tmp_path: Path) -> None:
    """The launcher runs the kernel command as a throwaway uid, in a private home, with the
    course folder hidden; what it leaves running is killed by kill_uid."""
    from ksmbook.classroom.sandbox import THROWAWAY_UIDS, kill_uid

    r = subprocess.run([sys.executable, "-m", "ksmbook.classroom.sandbox"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr
    if os.geteuid() != 0:
        pytest.skip("the sandbox changes user only when run as root")
    hidden = tmp_path / "course"
    hidden.mkdir()
    (hidden / "gradebook.db").write_text("grades")
    os.chmod(hidden, 0o755)
    os.chmod(hidden / "gradebook.db", 0o666)  # even a world-writable file is out of reach
    uid = THROWAWAY_UIDS[12345]
    code = ("import os, subprocess; print(os.getuid(), os.getcwd());"
            f"p = {str(hidden / 'gradebook.db')!r}\n"
            "try:\n open(p, 'a'); print('wrote')\nexcept OSError as e: print('denied', e.errno)\n"
            "subprocess.Popen(['sleep', '300'], start_new_session=True, stdin=subprocess.DEVNULL,"
            " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)")
    r = subprocess.run([sys.executable, "-m", "ksmbook.classroom.sandbox",
                        f"--dir={tmp_path / 'k'}", f"--uid={uid}", f"--hide={hidden}", "--",
                        sys.executable, "-c", code], capture_output=True, text=True)
    if "unshare" in r.stderr and "Operation not permitted" in r.stderr:
        pytest.skip("no mount namespaces here")
    got_uid, cwd = r.stdout.split()[:2]
    assert int(got_uid) == uid and cwd == str(tmp_path / "k" / "home")
    assert "denied" in r.stdout and "wrote" not in r.stdout
    assert (hidden / "gradebook.db").read_text() == "grades"
    assert kill_uid(uid) == 1  # the sleep it left behind
    assert kill_uid(uid) == 0


def test_sandbox_without_root_hides_the_course() -> None:
    """Not root (here: inside the root launcher, as a throwaway uid), the launcher keeps the
    uid but hides the course folder in a user namespace of its own, which the kernel cannot
    undo, not even from a namespace it makes itself."""
    import tempfile

    from ksmbook.classroom.sandbox import THROWAWAY_UIDS, kill_uid

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root (to become a throwaway uid first) and unshare(1)")
    base = Path(tempfile.mkdtemp(prefix="ksmbook-test-"))  # reachable by any user
    try:
        os.chmod(base, 0o777)
        hidden = base / "course"
        hidden.mkdir(mode=0o755)
        (hidden / "gradebook.db").write_text("grades")
        os.chmod(hidden / "gradebook.db", 0o666)  # only the namespace keeps it out of reach
        uid = THROWAWAY_UIDS[54321]
        code = ("import os, subprocess\n"
                f"p = {str(hidden / 'gradebook.db')!r}\n"
                "try:\n open(p, 'a'); print('wrote')\nexcept OSError as e: print('denied')\n"
                "r = subprocess.run(['unshare', '-Urm', 'sh', '-c', f'umount "
                "{os.path.dirname(p)}; cat {p}'], capture_output=True, text=True)\n"
                "print('nested', 'grades' in r.stdout)")
        r = subprocess.run([sys.executable, "-m", "ksmbook.classroom.sandbox",
                            f"--dir={base / 'outer'}", f"--uid={uid}", "--",
                            sys.executable, "-m", "ksmbook.classroom.sandbox",
                            f"--dir={base / 'inner'}", f"--hide={hidden}", "--",
                            sys.executable, "-c", code],
                           capture_output=True, text=True, timeout=120)
        kill_uid(uid)
        if "unsandboxed" in r.stderr:
            pytest.skip(f"no user namespaces here: {r.stderr.strip()}")
        assert r.stdout.split() == ["denied", "nested", "False"], r.stderr
        assert (hidden / "gradebook.db").read_text() == "grades"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_namespace_constants_are_linux_values() -> None:
    """The sandbox's CLONE_*, MS_* and MNT_* values (classroom/_userns.py, a standalone script
    that keeps its own) are those of the Linux and glibc headers."""
    from ksmbook.classroom import _userns

    headers = {"linux/sched.h": ("CLONE_NEWNS", "CLONE_NEWUSER"),
               "linux/mount.h": ("MS_BIND", "MS_REC", "MS_PRIVATE"),
               "*/sys/mount.h": ("MNT_DETACH",)}
    for header, names in headers.items():
        path = next(Path("/usr/include").glob(header), None)
        if path is None:
            pytest.skip(f"no /usr/include/{header} (linux-libc-dev, libc6-dev)")
        text = path.read_text()
        for name in names:
            m = re.search(rf"^\s*(?:#define\s+)?{name}\b\s*=?\s*\(?(0x[0-9a-fA-F]+|\d+)"
                          r"(?:\s*<<\s*(\d+))?", text, re.M)
            assert m is not None, (header, name)
            value = int(m.group(1), 0) << int(m.group(2) or 0)
            assert getattr(_userns, name) == value, (name, value)


@pytest.mark.parametrize("sid, ok", [
    ("bob", True), ("Bob.Smith@uni", True), ("7-of_9", True), ("a" * 64, True),
    ("_bob", False), ("a+b", False), ("a" * 65, False), ("../etc", False), (".bob", False),
    ("bob smith", False), ("bob/x", False)])
def test_one_student_id_rule(tmp_path: Path, sid: str, ok: bool) -> None:
    """The roster, the assignment's students and the answer key accept the same ids."""
    from ksmbook.classroom.assignment import AssignmentError, solution_lines
    from ksmbook.classroom.course import CourseError, read_roster

    roster = tmp_path / "roster.csv"
    roster.write_text(f"id\n{sid}\n")
    try:
        assert [e.id for e in read_roster(roster)] == [sid] and ok
    except CourseError as e:
        assert "is not a user name" in str(e) and not ok
    with pytest.raises(AssignmentError) as refused:
        solution_lines(tmp_path / "none", "hw", sid)
    assert (f"student id {sid!r}" in str(refused.value)) != ok
    try:
        write_assignment(2, tmp_path / "course", count=1, variants=True, students=[sid])
        assert load_plan(tmp_path / "course", "chapter02").students == [sid] and ok  # type: ignore[union-attr]
    except AssignmentError as e:
        assert f"student id {sid!r}" in str(e) and not ok


def test_report_judges_each_student_on_their_own_problems(tmp_path: Path) -> None:
    """In a --variants assignment the class report checks each answer against that student's
    own problem: ada's answer key scores full marks for ada, not for bob."""
    import nbformat

    from ksmbook.classroom.course import Course
    from ksmbook.classroom.report import build_report

    course = tmp_path / "course"
    (course / ".ksmbook").mkdir(mode=0o700, parents=True)
    (course / ".ksmbook" / "secret").write_bytes(b"k" * 32)  # the same problems every run
    write_assignment(2, course, name="hw", count=3, variants=True, students=["ada", "bob"])
    roster = tmp_path / "roster.csv"
    roster.write_text("id\nada\nbob\n")
    assert _cli("roster", "--course", str(course), str(roster))[0] == 0
    key = dict(line.split(" = ", 1) for line in
               _cli("solutions", "--course", str(course), "--assignment", "hw",
                    "--student", "ada")[1].splitlines())
    for student in ("ada", "bob"):
        nb = nbformat.read(course / "source" / "hw" / "hw.ipynb", as_version=4)
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id", "")
            if gid in key:
                cell.source = f"{gid} = {key[gid]}"
        (course / "submitted" / student / "hw").mkdir(parents=True)
        nbformat.write(nb, course / "submitted" / student / "hw" / "hw.ipynb")
    rep = build_report(Course.open(course), "hw")
    assert [[a.student_id for a in q.answers if a.status == "correct"] for q in rep.questions] \
        == [["ada", "bob"], ["ada"], ["ada"]]  # bob's problem 1 has ada's answer, by chance
    assert rep.scores == {"ada": 3.0, "bob": 1.0}
