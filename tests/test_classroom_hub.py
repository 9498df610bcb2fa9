"""The class hub end to end, in test mode, as root (one hub for the module): the teacher and
three students log in, each server runs as the OS user of its hub name; the teacher releases
an assignment from their own server, the students submit from JupyterLab, and the teacher's
collect gets three submissions, each under its student's name, which autograde grades. Each
thing a cheating student tries is a test, run as that student's OS user: reading others' files
and the hub's token, renaming or planting in the exchange, submitting in a classmate's name,
links to the teacher's files. Last, the hub restarts and everything is still there.

The students' scenarios run on the simulator only (no madvise on this machine, no ksmd).
The hub creates OS users; the module's teardown removes them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from helpers import HUB_PROXY, hub_root

pytest.importorskip("jupyterhub", reason="the classroom extra is not installed")

from ksmbook.classroom.bookcopy import COPY, MANIFEST, NOTICE, sync_book  # noqa: E402
from ksmbook.classroom.hubclient import (  # noqa: E402
    Hub,
    Kernel,
    Student,
    hub_env,
    run_test_hub,
)

REPO = Path(__file__).resolve().parent.parent
TAG = secrets.token_hex(2)
TEACHER = f"kbt{TAG}"
ADA, GRACE, LINUS = (f"{n}-{TAG}" for n in ("ada", "grace", "linus"))
STUDENTS = (ADA, GRACE, LINUS)
COURSE = "ksmbook-course"  # the hub's default KSMBOOK_COURSE
EDITED, RUN = "02-madvise.ipynb", "03-the-ksm-mm-interface.ipynb"  # chapters ada edits / only runs

SCENARIO = """\
import ksmbook as kb
k = kb.Kernel(profile="modern")
p = k.spawn()
a = p.mmap(8 * kb.PAGE_SIZE, kb.PROT_READ | kb.PROT_WRITE, kb.MAP_PRIVATE | kb.MAP_ANONYMOUS)
p.madvise(a + 2 * kb.PAGE_SIZE, 4 * kb.PAGE_SIZE, kb.MADV_MERGEABLE)
print(p.maps())
"""


async def _sh(kernel: Kernel, *cmd: str, cwd: str = "~") -> tuple[int, str]:
    """Run a command from a kernel (as that kernel's OS user): (exit status, output)."""
    r = await kernel.execute(
        "import os, subprocess\n"
        f"r = subprocess.run({list(cmd)!r}, cwd=os.path.expanduser({cwd!r}), "
        "capture_output=True, text=True)\n"
        "print(r.returncode); print(r.stdout + r.stderr)")
    assert r.status == "ok", r.error
    status, _, out = r.stdout.partition("\n")
    return int(status), out


async def _py(kernel: Kernel, code: str) -> str:
    r = await kernel.execute(code)
    assert r.status == "ok", r.error
    return r.stdout


def _procs_under(root: Path) -> list[int]:
    """Pids of processes whose working directory is below `root`."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if Path(os.readlink(d / "cwd")).is_relative_to(root):
                    out.append(int(d.name))
            except OSError:
                continue
    return out


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    with hub_root("ksmbook-test-hub-") as path:
        yield path


@dataclass
class Klass:
    """The module's class: its hub (test mode, as root) and everyone logged in."""

    client: Hub
    hub_pid: int
    token: str
    root: Path
    env: dict[str, str]
    teacher: Student
    students: dict[str, Student]
    stack: ExitStack

    @property
    def homes(self) -> Path:
        return self.root / "homes"

    @property
    def course(self) -> Path:
        return self.homes / TEACHER / COURSE

    @property
    def inbound(self) -> Path:
        return self.root / "exchange" / COURSE / "inbound"

    def run(self, scenario: Callable[..., Awaitable[Any]], *names: str) -> Any:
        """Run `scenario(kernel of each of names...)` (the teacher is TEACHER)."""
        async def go() -> Any:
            people = [self.teacher if n == TEACHER else self.students[n] for n in names]
            kernels = await asyncio.gather(*(p.kernel() for p in people))
            try:
                return await scenario(*kernels)
            finally:
                await asyncio.gather(*(k.shutdown() for k in kernels))
        return asyncio.run(go())

    def collect(self, *args: str) -> str:
        async def go(tk: Kernel) -> str:
            status, out = await _sh(tk, "nbgrader", "collect", *args, "chapter02",
                                    cwd=f"~/{COURSE}")
            assert status == 0, out
            return out
        out: str = self.run(go, TEACHER)
        return out

    def submitted(self, name: str) -> str:
        return (self.course / "submitted" / name / "chapter02" / "chapter02.ipynb").read_text()


@pytest.fixture(scope="module")
def klass(root: Path) -> Iterator[Klass]:
    """The teacher and three students log in; the teacher releases an assignment from their
    own server; each student submits from JupyterLab."""
    if os.geteuid() != 0:
        pytest.skip("not root: the test-mode hub cannot run each student as an OS user of "
                    "their own (students would share the hub's user)")
    book = root / "book"  # the book the students' copies follow, updated below
    shutil.copytree(REPO / "notebooks", book)
    env = {**hub_env(root, REPO), "KSMBOOK_HUB_ADMIN": TEACHER, "KSMBOOK_BOOK": str(book)}
    with ExitStack() as stack:
        client, proc = stack.enter_context(run_test_hub(root, REPO, timeout=120, env=env))

        async def setup() -> list[Student]:
            # Test mode: any password logs in (dummy authenticator).
            people = await asyncio.gather(*(client.login(n, secrets.token_hex(4))
                                            for n in (TEACHER, *STUDENTS)))
            t0 = time.monotonic()
            await asyncio.gather(*(p.start() for p in people))
            print(f"4 servers ready in {time.monotonic() - t0:.1f} s")
            tk = await people[0].kernel()
            course = str(root / "homes" / TEACHER / COURSE)
            status, out = await _sh(tk, "python", "-m", "ksmbook", "classroom", "assignment",
                                    "--chapter", "2", "--course", course, "--count", "2")
            assert status == 0, out
            for step in ("generate_assignment", "release_assignment"):
                status, out = await _sh(tk, "nbgrader", step, "chapter02", cwd=f"~/{COURSE}")
                assert status == 0, out
            await tk.shutdown()
            for s in people[1:]:
                await _submit(s, f"{s.name}'s answer")
            return people
        people = asyncio.run(setup())
        yield Klass(client, proc.pid, env["KSMBOOK_HUB_API_TOKEN"], root, env, people[0],
                    {s.name: s for s in people[1:]}, stack)


def test_each_student_runs_as_themselves(klass: Klass) -> None:
    """Not root, in their own home; their kernel prints what the simulator prints here."""
    buf = StringIO()
    with redirect_stdout(buf):
        exec(SCENARIO, {})

    async def scenario(*kernels: Kernel) -> None:
        runs = await asyncio.gather(*(k.execute(SCENARIO) for k in kernels))
        for r in runs:
            assert r.status == "ok", r.error
            assert r.stdout == buf.getvalue() and " mg" in r.stdout
        for name, k in zip(STUDENTS, kernels, strict=True):
            who = await _py(k, "import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name, "
                               "os.getuid(), os.getcwd())")
            user, uid, cwd = who.split()
            assert user == name and int(uid) != 0 and cwd == str(klass.homes / name)
    klass.run(scenario, *STUDENTS)


def test_formgrader_is_the_teachers_only(klass: Klass) -> None:
    async def scenario() -> None:
        ada = klass.students[ADA]
        code, _ = await ada.server("GET", "/formgrader")
        assert code == 404
        code, page = await ada.server("GET", "/lab")
        config = json.loads(re.search(
            r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
            page, re.S).group(1))
        off = set(config["disabledExtensions"])
        assert {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment"} <= off
        assert "@jupyter/nbgrader:assignment-list" not in off
        code, _ = await klass.teacher.server("GET", "/formgrader")
        assert code == 200
    asyncio.run(scenario())


def _attempts(klass: Klass, code: str) -> dict[str, str]:
    """Run `attempt(what, lambda: ...)` lines in ada's kernel: what each raised."""
    async def scenario(k: Kernel) -> str:
        return await _py(k, "import os\n"
                            "def attempt(what, f):\n"
                            "    try:\n"
                            "        f()\n"
                            "        print(what + ': done')\n"
                            "    except OSError as e:\n"
                            "        print(what + ': ' + type(e).__name__)\n" + code)
    out: str = klass.run(scenario, ADA)
    return dict(line.split(": ", 1) for line in out.strip().splitlines())


def test_a_student_cannot_read_others_files(klass: Klass) -> None:
    source = klass.course / "source" / "chapter02" / "chapter02.ipynb"
    assert _attempts(klass, f"""
attempt("teacher's solutions", lambda: open({str(source)!r}).read())
attempt("teacher's home", lambda: os.listdir({str(klass.homes / TEACHER)!r}))
attempt("a classmate's home", lambda: os.listdir({str(klass.homes / GRACE)!r}))
attempt("the submissions", lambda: os.listdir({str(klass.inbound)!r}))
""") == dict.fromkeys(["teacher's solutions", "teacher's home", "a classmate's home",
                       "the submissions"], "PermissionError")


def test_the_hubs_token_is_out_of_a_students_reach(klass: Klass) -> None:
    async def scenario(k: Kernel) -> str:
        return await _py(k, f"""
import os, subprocess
try:
    open("/proc/{klass.hub_pid}/environ").read()
    print("environ read")
except OSError as e:
    print("environ", type(e).__name__)
ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
print("ps", {klass.token!r} in ps)
print("env", any({klass.token!r} in v for v in os.environ.values()))
""")
    assert klass.run(scenario, ADA).split("\n")[:3] == [
        "environ PermissionError", "ps False", "env False"]


def test_a_student_cannot_rearrange_the_exchange(klass: Klass) -> None:
    exchange = klass.root / "exchange"
    release = exchange / COURSE / "outbound" / "chapter02" / "chapter02.ipynb"
    assert _attempts(klass, f"""
attempt("rename the course", lambda: os.rename({str(exchange / COURSE)!r},
                                               {str(exchange / "stolen")!r}))
attempt("plant an assignment", lambda: os.mkdir({str(exchange / COURSE / "outbound" / "x")!r}))
attempt("change a release", lambda: open({str(release)!r}, "a").close())
attempt("move the inbound", lambda: os.rename({str(klass.inbound)!r},
                                              {str(exchange / "gone")!r}))
""") == dict.fromkeys(["rename the course", "plant an assignment", "change a release",
                       "move the inbound"], "PermissionError")


def test_collect_gets_each_students_own_and_autograde_grades_them(klass: Klass) -> None:
    klass.collect()
    submitted = klass.course / "submitted"
    assert sorted(p.name for p in submitted.iterdir()) == sorted(STUDENTS)
    for name in STUDENTS:
        assert f"{name}'s answer" in klass.submitted(name)
    assert (submitted / ADA).stat().st_uid == (klass.homes / TEACHER).stat().st_uid

    async def grade(tk: Kernel) -> None:
        status, out = await _sh(tk, "nbgrader", "autograde", "chapter02", cwd=f"~/{COURSE}")
        assert status == 0, out
    klass.run(grade, TEACHER)
    autograded = klass.course / "autograded"
    assert sorted(p.name for p in autograded.iterdir()) == sorted(STUDENTS)


def test_submitting_in_a_classmates_name_is_not_collected(klass: Klass) -> None:
    async def cheat(k: Kernel) -> None:
        status, out = await _sh(k, "nbgrader", "submit", "chapter02", f"--student={GRACE}")
        assert status == 0, out  # nbgrader lets her; the teacher's collect does not
    klass.run(cheat, ADA)
    out = klass.collect("--update")
    assert f"claims to be submitted by {GRACE} but is owned by {ADA}" in out
    assert f"{GRACE}'s answer" in klass.submitted(GRACE)


def test_links_to_the_teachers_files_are_not_collected(klass: Klass) -> None:
    later = "2099-01-01 00:00:00.000000 UTC"
    source = klass.course / "source" / "chapter02"
    inbound = str(klass.inbound)

    async def cheat(k: Kernel) -> None:
        await _py(k, f"""
import os
os.symlink({str(source)!r}, {inbound!r} + "/{ADA}+chapter02+{later}+link")
d = {inbound!r} + "/{ADA}+chapter02+{later}+inside"
os.mkdir(d)
os.symlink({str(source / "chapter02.ipynb")!r}, d + "/chapter02.ipynb")
""")
    klass.run(cheat, ADA)
    out = klass.collect("--update")
    assert "not a folder" in out and "not a regular file" in out
    text = klass.submitted(ADA)
    assert f"{ADA}'s answer" in text and "### BEGIN SOLUTION" not in text


def test_state_survives_a_restart_and_book_updates_reach_students(klass: Klass) -> None:
    """ada edits a chapter and runs another; the book is corrected while the hub is down;
    after the restart everything is there, and ada's next login brings the update."""
    async def before() -> None:
        ada = klass.students[ADA]
        for chapter, change in ((EDITED, "source"), (RUN, "outputs")):
            path = f"/api/contents/{COPY}/{chapter}"
            code, nb = await ada.server("GET", path)
            assert code == 200
            cell = next(c for c in nb["content"]["cells"] if c["cell_type"] == "code")
            if change == "source":
                cell["source"] += "\n# ada's edit"
            else:
                cell["outputs"] = [{"output_type": "stream", "name": "stdout",
                                    "text": "ran\n"}]
                cell["execution_count"] = 99
            code, _ = await ada.server("PUT", path, {"type": "notebook", "format": "json",
                                                     "content": nb["content"]})
            assert code == 200
        code, _ = await ada.server("PUT", "/api/contents/notes.txt", {
            "type": "file", "format": "text", "content": f"{ADA}'s notes"})
        assert code in (200, 201)
        # A classmate's token does not open ada's server.
        code, _ = await ada.server("GET", "/api/contents/notes.txt",
                                   token=klass.students[GRACE].token)
        assert code in (403, 404)
        await asyncio.gather(*(p.stop() for p in [klass.teacher, *klass.students.values()]))
    asyncio.run(before())
    klass.stack.close()  # the hub stops, and with it every server
    deadline = time.monotonic() + 30
    while _procs_under(klass.homes) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _procs_under(klass.homes) == []
    book = Path(klass.env["KSMBOOK_BOOK"])
    for chapter in (EDITED, RUN):
        nb = json.loads((book / chapter).read_text())
        nb["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "Corrected."})
        (book / chapter).write_text(json.dumps(nb))

    with run_test_hub(klass.root, REPO, timeout=120, env=klass.env) as (client, _):
        async def after() -> None:
            users = {u["name"] for u in await client.api("GET", "/users")}
            assert {TEACHER, *STUDENTS} <= users
            ada = await client.login(ADA, "any")
            await ada.start()
            code, _, headers = await client.request("GET", f"/user/{ADA}/", token=ada.token,
                                                    follow=False)
            assert code == 302
            assert headers["Location"].split("?")[0].endswith(f"/lab/tree/{COPY}/{NOTICE}")
            code, notice = await ada.server("GET", f"/api/contents/{COPY}/{NOTICE}")
            assert code == 200
            assert EDITED.replace(".ipynb", ".new.ipynb") in notice["content"]
            code, mine = await ada.server("GET", f"/api/contents/{COPY}/{EDITED}")
            assert any("# ada's edit" in c["source"] for c in mine["content"]["cells"])
            code, ran = await ada.server("GET", f"/api/contents/{COPY}/{RUN}")
            assert "Corrected." in str(ran["content"]["cells"])
            code, notes = await ada.server("GET", "/api/contents/notes.txt")
            assert notes["content"] == f"{ADA}'s notes"
            await ada.stop()
        asyncio.run(after())
    assert len(list(klass.inbound.iterdir())) >= 3
    assert (klass.course / "submitted" / ADA).is_dir()


async def _submit(student: Student, answer: str) -> None:
    code, listing = await student.server("POST", "/assignments/fetch",
                                         {"course_id": COURSE, "assignment_id": "chapter02"})
    assert code == 200, listing
    path = "/api/contents/chapter02/chapter02.ipynb"
    code, nb = await student.server("GET", path)
    assert code == 200, nb
    cell = next(c for c in nb["content"]["cells"]
                if c["metadata"].get("nbgrader", {}).get("grade_id") == "answer_1")
    cell["source"] = f"answer_1 = 'ENOMEM'  # {answer}"
    code, _ = await student.server("PUT", path, {"type": "notebook", "format": "json",
                                                 "content": nb["content"]})
    assert code == 200
    code, out = await student.server("POST", "/assignments/submit",
                                     {"course_id": COURSE, "assignment_id": "chapter02"})
    assert code == 200 and "error" not in str(out).lower(), out


def _chapter(path: Path, *sources: str, outputs: str = "") -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    for i, src in enumerate(sources):
        cell = nbformat.v4.new_code_cell(src, execution_count=i + 1 if outputs else None)
        if outputs:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=outputs)]
        nb.cells.append(cell)
    nbformat.write(nb, path)


def _run_and_save(path: Path, text: str) -> None:
    """What running a chapter and saving it does: outputs, counts, metadata; no source."""
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        cell["execution_count"] = 40 + i
        cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": text}]
        cell["metadata"]["collapsed"] = True
    nb["metadata"]["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    path.write_text(json.dumps(nb))


def test_book_copy_at_each_login(tmp_path: Path) -> None:
    from ksmbook.classroom.bookcopy import prepare

    book, home = tmp_path / "book", tmp_path / "home"
    copy = home / COPY
    book.mkdir()
    _chapter(book / "01.ipynb", "print(1)")
    _chapter(book / "02.ipynb", "print(2)")
    (book / "data.txt").write_text("v1")
    first, url = prepare(book, home)  # first login
    assert first.copied == ("01.ipynb", "02.ipynb", "data.txt") and url is None
    assert (copy / MANIFEST).exists()

    # Running and saving chapter 1 is not an edit; a changed source in chapter 2 is.
    _run_and_save(copy / "01.ipynb", "my output")
    _run_and_save(copy / "02.ipynb", "my output")
    mine = json.loads((copy / "02.ipynb").read_text())
    mine["cells"][0]["source"] = "print(2)  # my answer"
    (copy / "02.ipynb").write_text(json.dumps(mine))
    assert prepare(book, home) == (sync_book(book, copy), None)  # nothing new in the book

    # The book is updated; the next login brings it.
    _chapter(book / "01.ipynb", "print('one')")
    _chapter(book / "02.ipynb", "print('two')")
    _chapter(book / "03.ipynb", "print(3)")
    done, url = prepare(book, home)
    assert (done.copied, done.updated, done.kept, done.placed) == (
        ("03.ipynb",), ("01.ipynb",), ("02.ipynb",), ("02.ipynb",))
    assert "print('one')" in (copy / "01.ipynb").read_text()
    assert not (copy / "01.new.ipynb").exists()
    # The edited chapter is the student's; the new one is beside it, and they are told where:
    # JupyterLab opens the notice at this login, and the chapter's first cell says so.
    assert "print('two')" in (copy / "02.new.ipynb").read_text()
    assert url == f"/lab/tree/{COPY}/{NOTICE}"
    assert "02.new.ipynb" in (copy / NOTICE).read_text()
    cells = json.loads((copy / "02.ipynb").read_text())["cells"]
    assert "02.new.ipynb" in cells[0]["source"] and cells[1]["source"].endswith("# my answer")

    # The next login: nothing new, no notice opened, no second note.
    done, url = prepare(book, home)
    assert done.kept == ("02.ipynb",) and done.placed == () and url is None
    _chapter(book / "02.ipynb", "print('two, fixed')")
    done, url = prepare(book, home)
    assert done.placed == ("02.ipynb",) and url is not None
    cells = json.loads((copy / "02.ipynb").read_text())["cells"]
    assert sum("02.new.ipynb" in c["source"] for c in cells) == 1
    assert "fixed" in (copy / "02.new.ipynb").read_text()

    # Deleting the chapter brings the current one back, and the notice goes.
    (copy / "02.ipynb").unlink()
    done, url = prepare(book, home)
    assert done.copied == ("02.ipynb",) and url is None
    assert not (copy / "02.new.ipynb").exists() and not (copy / NOTICE).exists()
    # Other files: their bytes.
    (copy / "data.txt").write_text("mine")
    (book / "data.txt").write_text("v2")
    assert prepare(book, home)[0].kept == ("data.txt",)


def test_book_copy_reads_older_manifests(tmp_path: Path) -> None:
    """A copy made before fingerprints (the manifest holds each file's sha256) updates."""
    import hashlib

    book, copy = tmp_path / "book", tmp_path / "copy"
    book.mkdir()
    copy.mkdir()
    _chapter(book / "01.ipynb", "print(1)")
    (copy / "01.ipynb").write_bytes((book / "01.ipynb").read_bytes())
    (copy / MANIFEST).write_text(json.dumps(
        {"01.ipynb": hashlib.sha256((book / "01.ipynb").read_bytes()).hexdigest()}))
    _chapter(book / "01.ipynb", "print('one')")
    assert sync_book(book, copy).updated == ("01.ipynb",)


def _load_config(monkeypatch: pytest.MonkeyPatch, **env: str) -> object:
    from jupyterhub.app import JupyterHub

    for name in ("KSMBOOK_HUB_MODE", "KSMBOOK_HUB_PORT", "KSMBOOK_HUB_API_TOKEN",
                 "KSMBOOK_HUB_ROOT", "KSMBOOK_HUB_STATE", "KSMBOOK_EXCHANGE",
                 "KSMBOOK_HUB_HOMES", "KSMBOOK_HUB_ADMIN", "KSMBOOK_HUB_PYTHON"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = JupyterHub()
    app.load_config_file("jupyterhub_config.py", path=str(REPO / "classroom"))
    return app


@pytest.mark.skipif(os.geteuid() != 0, reason="class mode runs as root")
def test_class_mode_configuration(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Class mode with systemd (no systemd here to run it): its authenticator and spawner
    load, with the sign-up rules, the limits and the exchange the students' servers need."""
    pytest.importorskip("nativeauthenticator")
    pytest.importorskip("systemdspawner")
    from ksmbook.classroom.hubclient import shared_python

    conf = root / "conf"
    admin = f"kbc{TAG}"
    app = _load_config(monkeypatch, KSMBOOK_HUB_STATE=str(conf / "state"),
                       KSMBOOK_EXCHANGE=str(conf / "exchange"),
                       KSMBOOK_HUB_HOMES=str(conf / "homes"), KSMBOOK_HUB_ADMIN=admin,
                       KSMBOOK_HUB_PYTHON=str(shared_python(root)), KSMBOOK_HUB_MEM_LIMIT="2G")
    assert app.authenticator_class.__name__ == "ClassAuthenticator"  # type: ignore[attr-defined]
    assert app.spawner_class.__name__ == "StudentSystemdSpawner"  # type: ignore[attr-defined]
    cfg = app.config  # type: ignore[attr-defined]
    assert cfg.ClassAuthenticator.open_signup is False
    assert cfg.ClassAuthenticator.minimum_password_length >= 10
    assert cfg.ClassAuthenticator.allowed_failed_logins > 0
    assert cfg.Authenticator.admin_users == {admin}
    assert cfg.StudentSystemdSpawner.mem_limit == "2G"
    assert cfg.StudentSystemdSpawner.dynamic_users is False
    assert (conf / "exchange").stat().st_mode & 0o7777 == 0o1777
    course = conf / "exchange" / COURSE
    assert {p.name: p.stat().st_mode & 0o7777 for p in course.iterdir()} == {
        "inbound": 0o2733, "outbound": 0o755, "feedback": 0o711}
    assert course.owner() == admin and (conf / "homes" / admin).owner() == admin
    assert (conf / "state").stat().st_mode & 0o777 == 0o700
    assert cfg.Spawner.default_url == "/lab"
    assert Path(cfg.ConfigurableHTTPProxy.command[0]) == HUB_PROXY


def test_hub_mode_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit, match="KSMBOOK_HUB_PORT"):
        _load_config(monkeypatch, KSMBOOK_HUB_MODE="test")
    with pytest.raises(SystemExit, match="use 'class'"):
        _load_config(monkeypatch, KSMBOOK_HUB_MODE="production")
    with pytest.raises(SystemExit, match="KSMBOOK_HUB_ADMIN"):
        _load_config(monkeypatch, KSMBOOK_HUB_MODE="test", KSMBOOK_HUB_PORT="18000",
                     KSMBOOK_HUB_API_TOKEN="x", KSMBOOK_HUB_ADMIN="root",
                     KSMBOOK_HUB_ROOT=tempfile.mkdtemp())
