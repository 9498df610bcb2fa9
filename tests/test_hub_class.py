"""Class mode, through its real authenticator (Native Authenticator, as pinned in pyproject):
the teacher's account made before the hub starts, sign-up, approval, login, the password rules,
the lockout, the names refused; formgrader on the teacher's server only.

One hub for the module, on 127.0.0.1, with local processes instead of systemd units
(KSMBOOK_HUB_SPAWNER=local); it runs as root, as class mode does, so its servers run as OS
users that the hub creates and the module's teardown removes.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import hub_root

pytest.importorskip("jupyterhub", reason="the classroom extra is not installed")
pytest.importorskip("nativeauthenticator", reason="the classroom extra is not installed")

from ksmbook.classroom.hub import MIN_PASSWORD, USER_MARK  # noqa: E402
from ksmbook.classroom.hubclient import (  # noqa: E402
    Browser,
    Hub,
    _message,
    hub_env,
    run_test_hub,
)

REPO = Path(__file__).resolve().parent.parent
TAG = secrets.token_hex(2)
TEACHER = f"kbt{TAG}"
TEACHER_PASSWORD = "a long teacher passphrase"
PASSWORD = "student passphrase 7"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="class mode runs as root (it creates an OS "
                                                   "user per student)"),
]


def _run(*args: str, env: dict[str, str], input: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ksmbook", *args], env=env, input=input,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    with hub_root("ksmbook-class-hub-") as path:
        yield path


@pytest.fixture(scope="module")
def env(root: Path) -> dict[str, str]:
    return {**hub_env(root, REPO, mode="class"), "KSMBOOK_HUB_ADMIN": TEACHER}


def _readme_commands() -> list[str]:
    """The commands of README's "The hub's path", one string each (continuations joined)."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### The hub's path"):text.index("### How many students")]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [" ".join(c.split()) for b in blocks
            for c in re.sub(r"\\\n\s*", " ", b).splitlines() if c.strip()]


@pytest.fixture(scope="module")
def hub(root: Path, env: dict[str, str]) -> Iterator[Hub]:
    # The teacher's account first, with the README's command as written (the password on
    # standard input), then the hub with the README's arguments.
    commands = _readme_commands()
    admin = next(c for c in commands if "hub-admin" in c)
    argv = shlex.split(admin.split("#")[0])
    assert argv[:2] == ["sudo", ".venv/bin/python"] and argv[2:4] == ["-m", "ksmbook"]
    made = _run(*argv[4:], env=env, input=TEACHER_PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    assert TEACHER in made.stdout
    start = next(c for c in commands if " jupyterhub " in c)
    assert start.endswith("jupyterhub -f classroom/jupyterhub_config.py")
    # Something else holds the port chosen for the hub's own API (the proxy's + 1): the hub
    # dies at start, and run_test_hub starts it again on new ports.
    taken = int(env["KSMBOOK_HUB_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken + 1))
        squatter.listen()
        with run_test_hub(root, REPO, timeout=90, env=env) as (client, _proc):
            assert int(env["KSMBOOK_HUB_PORT"]) != taken
            assert client.url == f"http://127.0.0.1:{env['KSMBOOK_HUB_PORT']}"
            squatter.close()
            yield client


def _signup(hub: Hub, name: str, password: str, confirm: str | None = None) -> str:
    async def go() -> str:
        code, page = await Browser(hub).form("/hub/signup", {
            "username": name, "signup_password": password,
            "signup_password_confirmation": password if confirm is None else confirm})
        assert code == 200, code
        return _message(page)
    return asyncio.run(go())


def _login(hub: Hub, name: str, password: str) -> tuple[int, str, Browser]:
    async def go() -> tuple[int, str, Browser]:
        b = Browser(hub)
        code, page = await b.form("/hub/login", {"username": name, "password": password})
        return code, _message(page), b
    return asyncio.run(go())


def _teacher(hub: Hub) -> Browser:
    code, message, browser = _login(hub, TEACHER, TEACHER_PASSWORD)
    assert code == 302, message
    return browser


def _approve(browser: Browser, name: str) -> int:
    return asyncio.run(browser.get(f"/hub/authorize/{name}"))[0]


def test_hub_admin_refuses_bad_input(root: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    from ksmbook.__main__ import main

    monkeypatch.setenv("KSMBOOK_HUB_STATE", str(root / "other-state"))
    short = root / "short"
    short.write_text("short\n")
    good = root / "good"
    good.write_text(TEACHER_PASSWORD)
    for args, message in (
            (["--password-file", str(short)], f"shorter than {MIN_PASSWORD}"),
            (["--password-file", str(root / "missing")], "cannot read"),
            (["--password-file", str(good), "--name", "root"], "account of this machine"),
            (["--password-file", str(good), "--name", "Bad Name"], "lowercase")):
        assert main(["classroom", "hub-admin", *args]) == 2, args
        out, err = capsys.readouterr()
        assert message in err and TEACHER_PASSWORD not in out + err
    assert not (root / "other-state").exists()


def test_hub_does_not_start_without_the_teachers_account(root: Path,
                                                         env: dict[str, str]) -> None:
    other = root / "no-teacher"
    other.mkdir()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "jupyterhub"), "-f",
         str(REPO / "classroom" / "jupyterhub_config.py")],
        env={**hub_env(other, REPO, mode="class"), "KSMBOOK_HUB_ADMIN": f"kbn{TAG}"},
        cwd=other, capture_output=True, text=True, timeout=90)
    assert done.returncode != 0
    assert "does not exist: create it first" in done.stdout + done.stderr


def test_sign_up_approve_log_in(hub: Hub) -> None:
    name = f"ada-{TAG}"
    # Nobody signs up as the teacher (the account exists before sign-ups open).
    assert "already in use" in _signup(hub, TEACHER, PASSWORD)
    assert _login(hub, TEACHER, PASSWORD)[0] == 200  # the sign-up did not change it
    # Short, common and mismatched passwords.
    assert f"at least {MIN_PASSWORD} characters" in _signup(hub, name, "short1")
    assert "at least" in _signup(hub, name, "1234567890")  # a common one
    assert "did not match" in _signup(hub, name, PASSWORD, PASSWORD + "x")
    assert "sent to the admin" in _signup(hub, name, PASSWORD)
    # Not yet approved: no login.
    code, message, _ = _login(hub, name, PASSWORD)
    assert code == 200 and "has not been authorized" in message
    # A student cannot approve anyone; the teacher can.
    assert _approve(_login(hub, name, PASSWORD)[2], name) in (302, 403)
    teacher = _teacher(hub)
    assert _approve(teacher, name) == 302
    code, _, student = _login(hub, name, PASSWORD)
    assert code == 302, "the approved student logs in"
    assert "jupyterhub-session-id" in student.cookies or student.cookies
    code, message, _ = _login(hub, name, PASSWORD + "x")
    assert code == 200 and "Invalid username or password" in message


def test_names_refused(hub: Hub) -> None:
    for name in ("root", "daemon", "sudo", "teacher", "nobody", "eve+x", "eve/x", "e ve"):
        message = _signup(hub, name, PASSWORD)
        assert "sent to the admin" not in message, name
    # A sign-up whose name became an account of this machine before approval: refused.
    late = f"mallory-{TAG}"
    assert "sent to the admin" in _signup(hub, late, PASSWORD)
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", late],
                   check=True)
    try:
        assert _approve(_teacher(hub), late) == 403
        assert _login(hub, late, PASSWORD)[0] == 200
    finally:
        subprocess.run(["userdel", late], check=True)


def test_lockout_after_failed_logins(hub: Hub) -> None:
    name = f"bob-{TAG}"
    assert "sent to the admin" in _signup(hub, name, PASSWORD)
    assert _approve(_teacher(hub), name) == 302
    for _ in range(5):
        assert _login(hub, name, "wrong password!")[0] == 200
    code, message, _ = _login(hub, name, PASSWORD)
    assert code == 200, "five failed logins lock the account for a while"


def test_formgrader_is_the_teachers_only(hub: Hub) -> None:
    name = f"cy-{TAG}"
    assert "sent to the admin" in _signup(hub, name, PASSWORD)
    assert _approve(_teacher(hub), name) == 302

    async def scenario() -> None:
        teacher, student = await asyncio.gather(hub.login(TEACHER, TEACHER_PASSWORD),
                                                hub.login(name, PASSWORD))
        t0 = time.monotonic()
        await asyncio.gather(teacher.start(), student.start())
        print(f"teacher and student ready in {time.monotonic() - t0:.1f} s")
        code, page = await teacher.server("GET", "/formgrader")
        assert code == 200 and "formgrader" in str(page).lower()
        code, _ = await student.server("GET", "/formgrader")
        assert code == 404
        # A student's token does not open the teacher's server.
        code, _ = await teacher.server("GET", "/formgrader", token=student.token)
        assert code in (403, 404)
        # Each runs as their own OS user, with a private home.
        kernel = await student.kernel()
        r = await kernel.execute("import os, pwd; e = pwd.getpwuid(os.getuid()); "
                                 "print(e.pw_name, e.pw_gecos, os.getcwd())")
        assert r.stdout.split()[0] == name and USER_MARK in r.stdout
        await kernel.shutdown()
        await asyncio.gather(teacher.stop(), student.stop())
    asyncio.run(scenario())
