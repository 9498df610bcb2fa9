"""The class hub end to end, in test mode: three students log in, their servers start, a kernel
on each runs a ksmbook scenario, no student reaches another's files, and everything stops.

The students' scenarios run on the simulator only (no madvise on this machine, no ksmd).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("jupyterhub", reason="the classroom extra is not installed")

from ksmbook.classroom import write_assignment  # noqa: E402
from ksmbook.classroom.bookcopy import MANIFEST, sync_book  # noqa: E402
from ksmbook.classroom.hubclient import Hub, run_test_hub  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PROXY = REPO / "node_modules" / ".bin" / "configurable-http-proxy"
STUDENTS = ("ada", "grace", "linus")

SCENARIO = """\
import ksmbook as kb
k = kb.Kernel(profile="modern")
p = k.spawn()
a = p.mmap(8 * kb.PAGE_SIZE, kb.PROT_READ | kb.PROT_WRITE, kb.MAP_PRIVATE | kb.MAP_ANONYMOUS)
p.madvise(a + 2 * kb.PAGE_SIZE, 4 * kb.PAGE_SIZE, kb.MADV_MERGEABLE)
print(p.maps())
"""


COURSE = "ksmbook"  # the hub's default KSMBOOK_COURSE


async def _teacher(course: Path, root: Path, *steps: str) -> None:
    """Run nbgrader commands (pairs of command, assignment) in the course folder."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])}
    for command, assignment in zip(steps[::2], steps[1::2], strict=True):
        proc = await asyncio.create_subprocess_exec(
            str(bin_dir / "nbgrader"), command, assignment,
            f"--Exchange.root={root / 'exchange'}", cwd=course, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        assert proc.returncode == 0, f"nbgrader {command}: {out.decode()}"


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


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[Hub, Path, subprocess.Popen[bytes]]]:
    if not PROXY.exists():
        pytest.skip("configurable-http-proxy is not installed (npm ci)")
    with run_test_hub(tmp_path, REPO) as (client, proc):
        yield client, tmp_path, proc


def test_three_students_on_the_hub(hub: tuple[Hub, Path, subprocess.Popen[bytes]]) -> None:
    client, root, proc = hub
    homes = root / "homes"

    async def scenario() -> None:
        services = {s["name"] for s in (await client.api("GET", "/services")).values()}
        assert {"idle-culler", "ksmbook-admin"} <= services
        # The teacher releases an assignment while the students log in: any password logs
        # in (dummy authenticator), and each student gets a token of their own.
        course = root / "teacher" / COURSE
        write_assignment(2, course, count=2)
        release = asyncio.ensure_future(_teacher(course, root, "generate_assignment",
                                                 "chapter02", "release_assignment", "chapter02"))
        students = await asyncio.gather(*(client.login(n, secrets.token_hex(4))
                                          for n in STUDENTS))
        await asyncio.gather(*(s.start() for s in students))
        await release
        for s in students:
            user = await client.api("GET", f"/users/{s.name}")
            assert user["servers"][""]["ready"]
            assert (homes / s.name).is_dir()

        # Each kernel runs a ksmbook scenario; it prints what the simulator prints here.
        ns: dict[str, object] = {}
        from contextlib import redirect_stdout
        from io import StringIO
        buf = StringIO()
        with redirect_stdout(buf):
            exec(SCENARIO, ns)
        kernels = await asyncio.gather(*(s.kernel() for s in students))
        runs = await asyncio.gather(*(k.execute(SCENARIO) for k in kernels))
        for r in runs:
            assert r.status == "ok", r.error
            assert r.stdout == buf.getvalue()
            assert " mg" in r.stdout
        where = await kernels[0].execute("import os; print(os.getcwd())")
        assert where.stdout.strip() == str(homes / STUDENTS[0])

        # Students fetch and submit from JupyterLab; the teacher's tools are not theirs.
        code, _ = await students[0].server("GET", "/formgrader")
        assert code == 404
        code, page = await students[0].server("GET", "/lab")
        config = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">'
                                      r"(.*?)</script>", page, re.S).group(1))
        off = set(config["disabledExtensions"])
        assert {"@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment"} <= off
        assert "@jupyter/nbgrader:assignment-list" not in off

        # A student fetches it, answers and submits from JupyterLab; the teacher collects.
        ada = students[0]
        code, listing = await ada.server("POST", "/assignments/fetch",
                                         {"course_id": COURSE, "assignment_id": "chapter02"})
        assert code == 200, listing
        code, nb = await ada.server("GET", "/api/contents/chapter02/chapter02.ipynb")
        assert code == 200
        answer = next(c for c in nb["content"]["cells"]
                      if c["metadata"].get("nbgrader", {}).get("grade_id") == "answer_1")
        answer["source"] = "answer_1 = 'ENOMEM'  # ada's answer"
        code, _ = await ada.server("PUT", "/api/contents/chapter02/chapter02.ipynb",
                                   {"type": "notebook", "format": "json",
                                    "content": nb["content"]})
        assert code == 200
        code, out = await ada.server("POST", "/assignments/submit",
                                     {"course_id": COURSE, "assignment_id": "chapter02"})
        assert code == 200 and "error" not in str(out).lower(), out
        await _teacher(course, root, "collect", "chapter02")
        # nbgrader names a submission after the OS user of the student's server: in test
        # mode every student runs as the hub's own user.
        collected = course / "submitted" / getpass.getuser() / "chapter02" / "chapter02.ipynb"
        assert "ada's answer" in collected.read_text()

        # Each student's own copy of the book, and a file of their own.
        book = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
        for s in students:
            code, listing = await s.server("GET", "/api/contents/ksmbook-book")
            assert code == 200
            assert book == sorted(e["name"] for e in listing["content"]
                                  if e["name"].endswith(".ipynb"))
            code, _ = await s.server("PUT", "/api/contents/notes.txt",
                                     {"type": "file", "format": "text",
                                      "content": f"{s.name}'s notes"})
            assert code in (200, 201)

        # No student reaches another's files: not through the other's server, not through
        # their own (it serves only their home).
        a, b = students[0], students[1]
        code, _ = await b.server("GET", "/api/contents/notes.txt", token=a.token)
        assert code in (403, 404), code
        code, _ = await a.server("GET", f"/api/contents/../{b.name}/notes.txt")
        assert code in (400, 403, 404), code
        code, listing = await a.server("GET", "/api/contents")
        assert "notes.txt" in {e["name"] for e in listing["content"]}
        assert b.name not in {e["name"] for e in listing["content"]}
        code, data = await a.server("GET", "/api/contents/notes.txt")
        assert data["content"] == f"{a.name}'s notes"

        # Everything stops: kernels, servers.
        await asyncio.gather(*(k.shutdown() for k in kernels))
        await asyncio.gather(*(s.stop() for s in students))
        for _ in range(120):
            users = await client.api("GET", "/users")
            if not any(u["servers"] for u in users if u["name"] in STUDENTS):
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError("servers still running")

    asyncio.run(scenario())
    deadline = time.monotonic() + 30
    while _procs_under(homes) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _procs_under(homes) == []
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0 or proc.returncode in (-signal.SIGTERM,)
    pid_file = root / "hub" / "proxy.pid"
    assert not pid_file.exists() or not Path(f"/proc/{pid_file.read_text().strip()}").exists()


def test_book_copy_keeps_students_edits(tmp_path: Path) -> None:
    book, copy = tmp_path / "book", tmp_path / "copy"
    book.mkdir()
    (book / "01.ipynb").write_text("one v1")
    (book / "02.ipynb").write_text("two v1")
    first = sync_book(book, copy)
    assert first.copied == ("01.ipynb", "02.ipynb") and (copy / MANIFEST).exists()
    (copy / "02.ipynb").write_text("two, with my answers")
    (book / "01.ipynb").write_text("one v2")
    (book / "02.ipynb").write_text("two v2")
    (book / "03.ipynb").write_text("three v1")
    second = sync_book(book, copy)
    assert (second.copied, second.updated, second.kept) == (
        ("03.ipynb",), ("01.ipynb",), ("02.ipynb",))
    assert (copy / "01.ipynb").read_text() == "one v2"
    assert (copy / "02.ipynb").read_text() == "two, with my answers"
    assert (copy / "02.new.ipynb").read_text() == "two v2"
    (copy / "03.ipynb").unlink()  # deleting a chapter brings the current one back
    assert sync_book(book, copy).copied == ("03.ipynb",)


def test_kubernetes_values_match_the_image_built_from_environment_yml() -> None:
    """Zero to JupyterHub cannot run here: check what can be checked. The files are valid
    YAML; the values start what the repo2docker image of this repository holds; and
    repo2docker builds that image from environment.yml alone."""
    import importlib.util

    import yaml

    from scripts.check_env_agree import check

    kube = REPO / "classroom" / "kubernetes"
    values = yaml.safe_load((kube / "values.yaml").read_text())
    pvc = yaml.safe_load((kube / "exchange-pvc.yaml").read_text())
    steps = (kube / "README.md").read_text()
    single = values["singleuser"]

    # The image the values use is the one the README builds, with the repository where the
    # values look for it.
    build = re.search(r"jupyter-repo2docker --no-run --target-repo-dir (\S+) \\\n\s+"
                      r"--image-name (\S+):(\S+) \.", steps)
    assert build is not None
    target, name, tag = build.groups()
    assert (single["image"]["name"], single["image"]["tag"]) == (name, tag)
    env = single["extraEnv"]
    assert env["KSMBOOK_BOOK"] == f"{target}/notebooks" and (REPO / "notebooks").is_dir()
    assert env["JUPYTER_CONFIG_PATH"] == f"{target}/classroom/student"
    assert (REPO / "classroom" / "student" / "nbgrader_config.py").is_file()
    assert single["cmd"][:2] == ["python", "-m"]
    assert importlib.util.find_spec(single["cmd"][2]) is not None

    # repo2docker uses environment.yml only when nothing else takes precedence over it.
    for other in ("binder", ".binder", "Dockerfile", "requirements.txt", "Pipfile",
                  "Project.toml", "setup.py", "postBuild", "start"):
        assert not (REPO / other).exists(), f"{other} would change what repo2docker builds"
    env_yml = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env_yml["dependencies"] if isinstance(d, dict))
    pinned = {re.split(r"==", p)[0].lower() for p in pip if "==" in p}
    # The servers the values start need the hub's single-user server, JupyterLab and nbgrader.
    assert {"jupyterhub", "jupyterlab", "nbgrader"} <= pinned
    assert any(p.strip() in ("-e .", ".") for p in pip)
    assert check(REPO) == []  # the same pins as pyproject.toml

    # The exchange is one volume that every student's pod mounts, where nbgrader looks.
    mount = single["storage"]["extraVolumeMounts"][0]
    volume = single["storage"]["extraVolumes"][0]
    assert mount["mountPath"] == env["KSMBOOK_EXCHANGE"]
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    assert single["memory"]["limit"] and single["cpu"]["limit"]
    assert values["cull"]["enabled"] is True


def _load_config(monkeypatch: pytest.MonkeyPatch, **env: str) -> object:
    from jupyterhub.app import JupyterHub

    for name in ("KSMBOOK_HUB_MODE", "KSMBOOK_HUB_PORT", "KSMBOOK_HUB_API_TOKEN",
                 "KSMBOOK_HUB_ROOT", "KSMBOOK_HUB_STATE", "KSMBOOK_EXCHANGE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = JupyterHub()
    app.load_config_file("jupyterhub_config.py", path=str(REPO / "classroom"))
    return app


def test_class_mode_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Class mode (no systemd here to run it): its authenticator and spawner load, with the
    sign-up approval, the memory limit and the exchange the students' servers need."""
    pytest.importorskip("nativeauthenticator")
    pytest.importorskip("systemdspawner")
    app = _load_config(monkeypatch, KSMBOOK_HUB_STATE=str(tmp_path / "state"),
                       KSMBOOK_EXCHANGE=str(tmp_path / "exchange"),
                       KSMBOOK_HUB_MEM_LIMIT="2G")
    assert app.authenticator_class.__name__ == "NativeAuthenticator"  # type: ignore[attr-defined]
    assert app.spawner_class.__name__ == "SystemdSpawner"  # type: ignore[attr-defined]
    cfg = app.config  # type: ignore[attr-defined]
    assert cfg.NativeAuthenticator.open_signup is False
    assert cfg.Authenticator.admin_users == {"teacher"}
    assert cfg.SystemdSpawner.mem_limit == "2G" and cfg.SystemdSpawner.dynamic_users
    assert str(tmp_path / "exchange") in cfg.SystemdSpawner.readwrite_paths
    assert (tmp_path / "exchange").stat().st_mode & 0o777 == 0o777
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert cfg.Spawner.default_url == "/lab"
    assert Path(cfg.ConfigurableHTTPProxy.command[0]) == PROXY


def test_hub_mode_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit, match="KSMBOOK_HUB_PORT"):
        _load_config(monkeypatch, KSMBOOK_HUB_MODE="test")
    with pytest.raises(SystemExit, match="use 'class'"):
        _load_config(monkeypatch, KSMBOOK_HUB_MODE="production")
