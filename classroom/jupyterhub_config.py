"""JupyterHub for a class working through ksmbook, on one machine (README: "The hub's path").

    sudo .venv/bin/python -m ksmbook classroom hub-admin --password-file FILE  # once, first
    sudo env PATH=$PWD/.venv/bin:$PWD/node_modules/.bin:$PATH \\
        jupyterhub -f classroom/jupyterhub_config.py                        # a class

    KSMBOOK_HUB_MODE=test KSMBOOK_HUB_PORT=8000 KSMBOOK_HUB_API_TOKEN=$(openssl rand -hex 32) \\
        jupyterhub -f classroom/jupyterhub_config.py                        # try it / CI

Both modes: configurable-http-proxy from npm (node_modules/, `npm ci`), JupyterLab as the
default view, every student's own copy of the book in ~/ksmbook-book (brought up to date at
every server start; see ksmbook/classroom/bookcopy.py), nbgrader's exchange for fetching and
submitting from JupyterLab, formgrader for the teacher only, idle servers stopped by
jupyterhub-idle-culler. Run as root, every student's server runs as an OS user of the
student's hub name, created on their first start with a private home (nbgrader names each
submission after that OS user, and checks it when the teacher collects); the teacher's hub
account (KSMBOOK_HUB_ADMIN, default "teacher") is an OS user too, whose server alone runs
formgrader, and who owns the course's folders in the exchange. Names that are reserved or
already accounts or groups of this machine are refused (ksmbook/classroom/hub.py).

Class mode (the default): sign-up on the login page, the teacher approves each sign-up at
/hub/authorize (ksmbook.classroom.hubserver.ClassAuthenticator, i.e. Native Authenticator);
the teacher's account is made beforehand by `python -m ksmbook classroom hub-admin` (the hub
refuses to start without it). Passwords of at least 10 characters, not common ones; five
failed logins in a row lock an account for ten minutes. Each server is a systemd unit with a
memory and CPU limit (KSMBOOK_HUB_MEM_LIMIT, default 1G; KSMBOOK_HUB_CPU_LIMIT, default 1), or
a plain local process with KSMBOOK_HUB_SPAWNER=local. Settings: KSMBOOK_HUB_IP (default all
interfaces), KSMBOOK_HUB_PORT (8000; the hub itself uses the next port, the proxy's API the
one after), KSMBOOK_HUB_STATE (/srv/ksmbook-hub: database, cookie secret), KSMBOOK_HUB_HOMES
(/home), KSMBOOK_COURSE (the nbgrader course id, also the name of the teacher's course folder
~/COURSE; default "ksmbook-course"), KSMBOOK_EXCHANGE (/srv/nbgrader/exchange),
KSMBOOK_HUB_CULL (idle seconds before a server is stopped; 3600), KSMBOOK_HUB_PYTHON (the
Python that runs every server, with this repository's packages; default the hub's own, which
every account must be able to run), KSMBOOK_BOOK (the book's folder that every student's copy
follows; default this repository's notebooks/).

Test mode (KSMBOOK_HUB_MODE=test): listens on 127.0.0.1:KSMBOOK_HUB_PORT only, accepts any
password (dummy authenticator: never for a class), runs local processes, and registers the
admin service "ksmbook-admin" whose API token is KSMBOOK_HUB_API_TOKEN. Its state, the homes
and the exchange are below KSMBOOK_HUB_ROOT (default /srv/ksmbook-hub-test as root, else
~/.local/share/ksmbook-hub-test), kept across restarts. Run by a user that is not root, every
server runs as that user: students are not kept apart, and the teacher's collect cannot check
who submitted what.
"""

import os
import pwd
import sys
from pathlib import Path

from ksmbook.classroom.hub import (
    FAILED_LOGINS,
    LOCKOUT_SECONDS,
    MIN_PASSWORD,
    NAME_PATTERN,
    AccountError,
    account_problem,
    ensure_os_user,
    hub_paths,
    prepare_exchange,
    reachable_by_all,
)

c = get_config()  # noqa: F821

REPO = Path(__file__).resolve().parent.parent
MODE = os.environ.get("KSMBOOK_HUB_MODE", "class")
if MODE not in ("class", "test"):
    raise SystemExit(f"KSMBOOK_HUB_MODE={MODE!r}: use 'class' (default) or 'test'")
CULL = os.environ.get("KSMBOOK_HUB_CULL", "3600")
ADMIN = os.environ.get("KSMBOOK_HUB_ADMIN", "teacher")
COURSE = os.environ.get("KSMBOOK_COURSE", "ksmbook-course")
TOKEN = os.environ.get("KSMBOOK_HUB_API_TOKEN", "")
ROOT_USER = os.geteuid() == 0
PATHS = hub_paths()
STATE, EXCHANGE, HOMES = PATHS.state, PATHS.exchange, PATHS.homes

if MODE == "test":
    if not os.environ.get("KSMBOOK_HUB_PORT") or not TOKEN:
        raise SystemExit("test mode needs KSMBOOK_HUB_PORT and KSMBOOK_HUB_API_TOKEN")
    IP = "127.0.0.1"
    SPAWNER = "local"
else:
    IP = os.environ.get("KSMBOOK_HUB_IP", "")
    SPAWNER = os.environ.get("KSMBOOK_HUB_SPAWNER", "systemd")
    if SPAWNER not in ("systemd", "local"):
        raise SystemExit(f"KSMBOOK_HUB_SPAWNER={SPAWNER!r}: use 'systemd' (default) or 'local'")
    if not ROOT_USER:
        raise SystemExit("class mode runs as root (each student's server runs as their own "
                         "OS user); to try the hub as another user, use KSMBOOK_HUB_MODE=test")
PORT = int(os.environ.get("KSMBOOK_HUB_PORT", "8000"))
problem = account_problem(ADMIN, reserved=frozenset(), existing_ok=True)
if problem:
    raise SystemExit(f"KSMBOOK_HUB_ADMIN: {problem}")

STATE.mkdir(mode=0o700, parents=True, exist_ok=True)
STATE.chmod(0o700)
HOMES.mkdir(parents=True, exist_ok=True)
if ROOT_USER:
    if HOMES.stat().st_mode & 0o005 != 0o005:
        HOMES.chmod(0o755)  # every student reaches their own home below it
    try:  # the teacher's OS user owns the course in the exchange before any student starts
        ensure_os_user(ADMIN, HOMES)
    except AccountError as e:
        raise SystemExit(f"KSMBOOK_HUB_ADMIN: {e}") from None
    prepare_exchange(EXCHANGE, COURSE, ADMIN)
else:
    print(f"ksmbook hub: not root: every server runs as {pwd.getpwuid(os.getuid()).pw_name}, "
          "and students are not kept apart (test mode only)", file=sys.stderr)
    prepare_exchange(EXCHANGE, COURSE, None)

# -- the hub and its proxy --------------------------------------------------------------------
c.JupyterHub.ip = IP
c.JupyterHub.port = PORT
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = PORT + 1  # explicit: 0 does not mean "any free port" here
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
c.ConfigurableHTTPProxy.command = [str(REPO / "node_modules" / ".bin" /
                                       "configurable-http-proxy")]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{PORT + 2}"
c.ConfigurableHTTPProxy.pid_file = str(STATE / "proxy.pid")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops every student's server

# -- every server: students' and the teacher's ------------------------------------------------
# The Python (with ksmbook, JupyterLab and nbgrader) that runs each server, as its student.
PYTHON = os.environ.get("KSMBOOK_HUB_PYTHON") or sys.executable
if ROOT_USER and not reachable_by_all(PYTHON):
    raise SystemExit(f"{os.path.realpath(PYTHON)} is not open to other users, so no student's "
                     "server can run it: install the repository (and its .venv, made with the "
                     "system's python3) where every account can read it, e.g. /opt/ksmbook, or "
                     "set KSMBOOK_HUB_PYTHON")
BIN = str(Path(PYTHON).parent)


def _config_path(spawner):
    """The teacher's server gets formgrader and the course; students' servers do not."""
    return str(REPO / "classroom" / ("teacher" if spawner.user.name == ADMIN else "student"))


c.Spawner.default_url = "/lab"
c.Spawner.cmd = [PYTHON, "-m", "ksmbook.classroom.bookcopy"]
c.Spawner.environment = {
    "KSMBOOK_BOOK": os.environ.get("KSMBOOK_BOOK") or str(REPO / "notebooks"),
    "JUPYTER_CONFIG_PATH": _config_path,
    "KSMBOOK_COURSE": COURSE,
    "KSMBOOK_EXCHANGE": str(EXCHANGE),
    # collect checks each submission's owner against the name it is filed under: only
    # meaningful when every student is an OS user of their own
    "KSMBOOK_CHECK_OWNER": "1" if ROOT_USER else "0",
    # nbgrader and alembic in a terminal; jupyterhub-singleuser
    "PATH": os.pathsep.join([BIN, "/usr/local/bin", "/usr/bin", "/bin"]),
}
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120

# -- idle servers stopped ---------------------------------------------------------------------
c.JupyterHub.services = [
    {"name": "idle-culler",
     "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={CULL}"]},
]
c.JupyterHub.load_roles = [
    {"name": "idle-culler", "services": ["idle-culler"],
     "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]},
]
if TOKEN:  # an API service for scripts and tests (required in test mode)
    c.JupyterHub.services.append({"name": "ksmbook-admin", "api_token": TOKEN})
    c.JupyterHub.load_roles.append(
        {"name": "ksmbook-admin", "services": ["ksmbook-admin"],
         "scopes": ["admin:users", "admin:servers", "access:servers", "tokens",
                    "list:services", "read:services"]})

# -- accounts ---------------------------------------------------------------------------------
c.Authenticator.admin_users = {ADMIN}
c.Authenticator.username_pattern = f"^{NAME_PATTERN}$"
c.JupyterHub.spawner_class = "ksmbook.classroom.hubserver.StudentSpawner"
c.StudentSpawner.homes = str(HOMES)
if MODE == "test":
    c.JupyterHub.authenticator_class = "dummy"
    c.Authenticator.allow_all = True
else:
    c.JupyterHub.authenticator_class = "ksmbook.classroom.hubserver.ClassAuthenticator"
    c.Authenticator.allow_all = True  # only approved sign-ups can log in at all
    c.ClassAuthenticator.open_signup = False  # the teacher approves each sign-up
    c.ClassAuthenticator.minimum_password_length = MIN_PASSWORD
    c.ClassAuthenticator.check_common_password = True
    c.ClassAuthenticator.allowed_failed_logins = FAILED_LOGINS
    c.ClassAuthenticator.seconds_before_next_try = LOCKOUT_SECONDS
    if SPAWNER == "systemd":
        c.JupyterHub.spawner_class = "ksmbook.classroom.hubserver.StudentSystemdSpawner"
        c.StudentSystemdSpawner.homes = str(HOMES)
        c.StudentSystemdSpawner.dynamic_users = False  # the student's own OS user
        c.StudentSystemdSpawner.mem_limit = os.environ.get("KSMBOOK_HUB_MEM_LIMIT", "1G")
        c.StudentSystemdSpawner.cpu_limit = float(os.environ.get("KSMBOOK_HUB_CPU_LIMIT", "1"))
        c.StudentSystemdSpawner.isolate_tmp = True
        c.StudentSystemdSpawner.isolate_devices = True
        c.StudentSystemdSpawner.disable_user_sudo = True
