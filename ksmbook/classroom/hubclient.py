"""A small client of the class hub: log a student in, start their server, run code on a kernel.

Used by the hub's end-to-end test and by benchmarks/classroom_capacity.py. It speaks only
JupyterHub's and Jupyter Server's public HTTP APIs and the kernel websocket protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

__all__ = ["HubError", "Hub", "Browser", "Student", "Kernel", "Execution", "hub_env",
           "run_test_hub", "remove_hub_users", "shared_python"]


class HubError(Exception):
    """The hub or a student's server answered something unexpected."""


@dataclass
class Execution:
    """What one cell printed, and whether it raised."""

    status: str
    stdout: str
    error: str
    seconds: float


@dataclass
class Hub:
    """The hub at `url` (http://127.0.0.1:PORT), its REST API used with the admin `token`."""

    url: str
    token: str

    async def request(self, method: str, path: str, *, token: str | None = None,
                      body: Any = None, headers: dict[str, str] | None = None,
                      raw_body: str | None = None, follow: bool = True) -> tuple[int, Any, Any]:
        """(status, decoded JSON or text, response headers); never raises on an HTTP error."""
        hdrs = dict(headers or {})
        if token is not None or "Cookie" not in hdrs:
            hdrs["Authorization"] = f"token {token or self.token}"
        data = raw_body if raw_body is not None else (
            None if body is None else json.dumps(body))
        if data is None and method in ("POST", "PUT", "PATCH"):
            data = ""
        req = HTTPRequest(self.url + path, method=method, headers=hdrs, body=data,
                          follow_redirects=follow, request_timeout=300)
        try:
            resp = await AsyncHTTPClient().fetch(req, raise_error=False)
        except HTTPClientError as e:  # pragma: no cover - raise_error=False
            raise HubError(str(e)) from None
        text = resp.body.decode() if resp.body else ""
        try:
            decoded: Any = json.loads(text) if text else None
        except ValueError:
            decoded = text
        return resp.code, decoded, resp.headers

    async def api(self, method: str, path: str, *, token: str | None = None,
                  body: Any = None, ok: tuple[int, ...] = (200, 201, 202, 204)) -> Any:
        code, data, _ = await self.request(method, "/hub/api" + path, token=token, body=body)
        if code not in ok:
            raise HubError(f"{method} /hub/api{path}: {code} {data}")
        return data

    async def login(self, name: str, password: str) -> Student:
        """Log in through the hub's login form (the authenticator decides), then get the
        student an API token of their own."""
        browser = Browser(self)
        code, page = await browser.form("/hub/login", {"username": name, "password": password})
        if code != 302:
            raise HubError(f"login of {name}: the hub answered {code}: {_message(page)}")
        token = (await self.api("POST", f"/users/{name}/tokens",
                                body={"note": "ksmbook hub client"}))["token"]
        return Student(self, name, token)


def _message(page: Any) -> str:
    """The alert or error a hub page shows (sign-up, login), as text."""
    import re

    text = str(page or "")
    m = re.search(r'<(?:div|p) class="(?:alert[^"]*|login_error)"[^>]*>(.*?)</(?:div|p)>', text,
                  re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", m.group(1))).strip() if m else ""


@dataclass
class Browser:
    """What a person's browser does on the hub's pages: cookies kept, forms posted with the
    hub's XSRF token, redirects not followed."""

    hub: Hub
    cookies: dict[str, str] = field(default_factory=dict)

    async def get(self, path: str) -> tuple[int, Any]:
        code, data, _ = await self._fetch("GET", path)
        return code, data

    async def form(self, path: str, fields: dict[str, str]) -> tuple[int, Any]:
        """POST a form; (status, page)."""
        if "_xsrf" not in self.cookies:
            await self._fetch("GET", "/hub/login")
        body = urlencode({**fields, "_xsrf": self.cookies["_xsrf"]})
        code, data, _ = await self._fetch("POST", path, body)
        return code, data

    async def _fetch(self, method: str, path: str, body: str | None = None
                     ) -> tuple[int, Any, Any]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        code, data, resp_headers = await self.hub.request(method, path, headers=headers,
                                                          raw_body=body, follow=False)
        for value in resp_headers.get_list("Set-Cookie"):
            jar: SimpleCookie = SimpleCookie()
            jar.load(value)
            for key, morsel in jar.items():
                if morsel.value and "1970" not in str(morsel["expires"]):
                    self.cookies[key] = morsel.value
                else:
                    self.cookies.pop(key, None)
        return code, data, resp_headers


@dataclass
class Student:
    """One logged-in student, acting with their own token."""

    hub: Hub
    name: str
    token: str

    async def start(self, timeout: float = 180) -> float:
        """Start the student's server and wait until the hub calls it ready; seconds taken.

        A failed spawn may first answer 500, so readiness is polled, not trusted."""
        t0 = time.monotonic()
        await self.hub.api("POST", f"/users/{self.name}/server", token=self.token,
                           ok=(201, 202, 400, 500))
        while time.monotonic() - t0 < timeout:
            user = await self.hub.api("GET", f"/users/{self.name}", token=self.token)
            server = user.get("servers", {}).get("")
            if server and server.get("ready"):
                return time.monotonic() - t0
            if not server or not server.get("pending"):
                await self.hub.api("POST", f"/users/{self.name}/server", token=self.token,
                                   ok=(201, 202, 400, 500))
            await asyncio.sleep(0.5)
        raise HubError(f"{self.name}'s server not ready after {timeout} s")

    async def stop(self) -> None:
        await self.hub.api("DELETE", f"/users/{self.name}/server", token=self.token)

    async def server(self, method: str, path: str, body: Any = None,
                     token: str | None = None) -> tuple[int, Any]:
        """A request to the student's own server (/user/NAME/...), with `token` or theirs."""
        code, data, _ = await self.hub.request(method, f"/user/{self.name}{path}",
                                               token=token or self.token, body=body)
        return code, data

    async def kernel(self) -> Kernel:
        code, data = await self.server("POST", "/api/kernels", {"name": "python3"})
        if code != 201:
            raise HubError(f"{self.name}: cannot start a kernel: {code} {data}")
        ws_url = (self.hub.url.replace("http", "ws", 1)
                  + f"/user/{self.name}/api/kernels/{data['id']}/channels")
        conn = await websocket_connect(HTTPRequest(
            ws_url, headers={"Authorization": f"token {self.token}"}, connect_timeout=300,
            request_timeout=300))
        return Kernel(self, data["id"], conn)


@dataclass
class Kernel:
    """A kernel on a student's server, driven over its websocket."""

    student: Student
    id: str
    conn: Any

    async def execute(self, code: str, timeout: float = 300) -> Execution:
        msg_id = uuid.uuid4().hex
        self.conn.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "",
                       "session": uuid.uuid4().hex, "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        t0 = time.monotonic()
        out: list[str] = []
        error = ""
        status = ""
        idle = False
        while not (status and idle):
            raw = await asyncio.wait_for(self.conn.read_message(), timeout)
            if raw is None:
                raise HubError("the kernel's websocket closed")
            if not isinstance(raw, str):
                continue
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                error = f"{content['ename']}: {content['evalue']}"
            elif kind == "execute_reply":
                status = content["status"]
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
        return Execution(status, "".join(out), error, time.monotonic() - t0)

    async def shutdown(self) -> None:
        self.conn.close()
        await self.student.server("DELETE", f"/api/kernels/{self.id}")


def _free_ports(n: int) -> int:
    """A port p such that p .. p+n-1 are free on 127.0.0.1, below the ephemeral range (where
    the kernel picks the local ports of outgoing connections, which could take one of them
    before the hub binds it)."""
    ports = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low = int(ports.read_text().split()[0]) if ports.exists() else 32768
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(10000, low - n)
        try:
            for k in range(n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + k))
        except OSError:
            continue
        return base
    raise HubError("no free ports on 127.0.0.1")


def hub_env(root: Path, repo: Path, mode: str = "test", port: int | None = None,
            token: str | None = None) -> dict[str, str]:
    """The environment that runs `repo`'s class hub on 127.0.0.1 with everything below
    `root`: test mode, or class mode with local processes (KSMBOOK_HUB_SPAWNER=local)."""
    bin_dir = str(Path(sys.executable).parent)
    proxy_dir = repo / "node_modules" / ".bin"
    env = {**os.environ, "KSMBOOK_HUB_MODE": mode,
           "KSMBOOK_HUB_PORT": str(port or _free_ports(3)),
           "KSMBOOK_HUB_API_TOKEN": token or secrets.token_hex(32),
           "PATH": os.pathsep.join([bin_dir, str(proxy_dir), os.environ.get("PATH", "")])}
    if os.geteuid() == 0:  # each server runs as its student: a Python they can all run
        python = shared_python(root)
        if python is None:
            raise HubError(f"no Python that every account can run ({sys.executable} is "
                           "private and there is no system python3 of its version)")
        env["KSMBOOK_HUB_PYTHON"] = str(python)
    if mode == "test":
        env["KSMBOOK_HUB_ROOT"] = str(root)
    else:
        env.update(KSMBOOK_HUB_SPAWNER="local", KSMBOOK_HUB_IP="127.0.0.1",
                   KSMBOOK_HUB_STATE=str(root / "hub"), KSMBOOK_EXCHANGE=str(root / "exchange"),
                   KSMBOOK_HUB_HOMES=str(root / "homes"))
    return env


@contextlib.contextmanager
def run_test_hub(root: Path, repo: Path, timeout: float = 60, *,
                 env: dict[str, str] | None = None
                 ) -> Iterator[tuple[Hub, subprocess.Popen[bytes]]]:
    """Run `repo`'s class hub with its state and homes below `root` (in test mode, or as
    `env` from hub_env() says); stop it (and with it every student's server) on exit. The
    log is root/hub.log (mode 0600). A hub that does not answer within `timeout` seconds (it
    exited, or another process holds one of its ports) is stopped and started again, twice
    at most, on new ports (env's KSMBOOK_HUB_PORT is updated, so a restart with `env` finds it)."""
    env = env or hub_env(root, repo)
    bin_dir = str(Path(sys.executable).parent)
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        if attempt:  # no answer, most likely a port taken meanwhile: new ports
            env["KSMBOOK_HUB_PORT"] = str(_free_ports(3))
        with open(os.open(root / "hub.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                  "wb") as log:
            proc = subprocess.Popen(
                [os.path.join(bin_dir, "jupyterhub"), "-f",
                 str(repo / "classroom" / "jupyterhub_config.py")],
                cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        hub = Hub(f"http://127.0.0.1:{env['KSMBOOK_HUB_PORT']}", env["KSMBOOK_HUB_API_TOKEN"])
        if asyncio.run(_answers(hub, proc, timeout)):
            break
        _stop(proc)
        if attempt == 2:
            tail = (root / "hub.log").read_text(errors="replace")[-3000:]
            raise HubError(f"the hub did not start:\n{tail}")
    try:
        yield hub, proc
    finally:
        _stop(proc)


async def _answers(hub: Hub, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether the hub answers its API within `timeout` seconds (False: it exited or not)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:  # each try bounded: a port held by another process may accept and never answer
            await asyncio.wait_for(hub.api("GET", "/"), min(10, deadline - time.monotonic()))
            return True
        except (HubError, OSError):  # TimeoutError is an OSError
            await asyncio.sleep(0.25)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a hub started by run_test_hub: SIGTERM (it stops the students' servers and its
    proxy), then SIGKILL to what is left of its session (its proxy and idle culler, if it
    died or hung), after at most 60 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def shared_python(dest: Path) -> Path | None:
    """A Python with this interpreter's packages that every account can run: this one if it
    can, else (this machine's Python lives in a private folder) a venv in `dest` made from
    the system's python3 of the same version whose site-packages are this one's, with this
    venv's commands; None if there is no such python3."""
    from .hub import reachable_by_all

    if reachable_by_all(sys.executable):
        return Path(sys.executable)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = Path("/usr/bin") / version
    if not reachable_by_all(system):
        return None
    venv = dest / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([str(system), "-m", "venv", "--without-pip", str(venv)], check=True)
        site = Path(sys.prefix) / "lib" / version / "site-packages"
        (venv / "lib" / version / "site-packages" / "ksmbook-shared.pth").write_text(
            f"import site; site.addsitedir({str(site)!r})\n")
        for data in ("share", "etc"):  # Jupyter's data files and its extensions' config
            if (Path(sys.prefix) / data).is_dir():
                (venv / data).symlink_to(Path(sys.prefix) / data)
        own = f"#!{sys.prefix}/bin/python"
        for script in (Path(sys.prefix) / "bin").iterdir():
            if script.is_file() and not (venv / "bin" / script.name).exists():
                try:
                    text = script.read_text()
                except (UnicodeDecodeError, OSError):
                    continue
                if text.startswith(own):
                    out = venv / "bin" / script.name
                    out.write_text(f"#!{python}\n" + text.split("\n", 1)[1])
                    out.chmod(0o755)
    return python if reachable_by_all(dest) else None


def remove_hub_users(homes: Path) -> list[str]:
    """Remove the OS users the hub created whose homes are below `homes` (as root), with
    their processes; the names removed."""
    import pwd

    from .hub import USER_MARK, remove_os_user
    from .sandbox import kill_uid

    removed = []
    for entry in pwd.getpwall():
        if entry.pw_gecos == USER_MARK and Path(entry.pw_dir).is_relative_to(homes):
            kill_uid(entry.pw_uid)
            remove_os_user(entry.pw_name)
            removed.append(entry.pw_name)
    return removed
