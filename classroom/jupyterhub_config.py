"""JupyterHub for a class working through ksmbook, on one machine.

    jupyterhub -f classroom/jupyterhub_config.py                  # a class (run as root)
    KSMBOOK_HUB_MODE=test KSMBOOK_HUB_PORT=8000 KSMBOOK_HUB_API_TOKEN=$(openssl rand -hex 32) \\
        jupyterhub -f classroom/jupyterhub_config.py              # try it / CI

Both modes: configurable-http-proxy from npm (node_modules/, `npm ci`), JupyterLab as the
default view, every student's own copy of the book in ~/ksmbook-book (a fresh copy on first
login; chapters the student edited are never overwritten, see ksmbook/classroom/bookcopy.py),
nbgrader's exchange for fetching and submitting assignments from JupyterLab, and idle servers
culled by jupyterhub-idle-culler.

Class mode (the default): students sign up on the hub's login page and the teacher approves
them (Native Authenticator, /hub/authorize); the teacher is the admin named by
KSMBOOK_HUB_ADMIN (default "teacher") and signs up first under that name. Each student's server
runs under systemd (SystemdSpawner) as a dynamic user of its own, with a memory limit
(KSMBOOK_HUB_MEM_LIMIT, default 1G) and a CPU share (KSMBOOK_HUB_CPU_LIMIT, default 1 core).
Settings: KSMBOOK_HUB_IP (default all interfaces), KSMBOOK_HUB_PORT (8000), KSMBOOK_HUB_STATE
(/srv/ksmbook-hub: database, cookie secret), KSMBOOK_COURSE (the nbgrader course id, the name
of the course folder; default "ksmbook"), KSMBOOK_EXCHANGE (/srv/nbgrader/exchange),
KSMBOOK_HUB_CULL (idle seconds before a server is stopped; 3600).

Test mode (KSMBOOK_HUB_MODE=test): listens on 127.0.0.1:KSMBOOK_HUB_PORT only (the hub itself
on the next port, the proxy's API on the one after), accepts any password (dummy
authenticator), spawns local processes with each student's home below a temporary root
(KSMBOOK_HUB_ROOT, or a new folder under /tmp), and registers the admin service
"ksmbook-admin" whose API token is KSMBOOK_HUB_API_TOKEN.
Test mode isolates students only as far as Jupyter does (a student's token reaches only their
own server, which serves only their home); their processes share the hub's uid (so nbgrader,
which names a submission after the OS user, files every student's under that user) and have
no memory limit (local processes have none that the spawner enforces).
"""

import os
import sys
import tempfile
from pathlib import Path

c = get_config()  # noqa: F821

REPO = Path(__file__).resolve().parent.parent
MODE = os.environ.get("KSMBOOK_HUB_MODE", "class")
if MODE not in ("class", "test"):
    raise SystemExit(f"KSMBOOK_HUB_MODE={MODE!r}: use 'class' (default) or 'test'")
CULL = os.environ.get("KSMBOOK_HUB_CULL", "3600")

if MODE == "test":
    if not os.environ.get("KSMBOOK_HUB_PORT") or not os.environ.get("KSMBOOK_HUB_API_TOKEN"):
        raise SystemExit("test mode needs KSMBOOK_HUB_PORT and KSMBOOK_HUB_API_TOKEN")
    PORT = int(os.environ["KSMBOOK_HUB_PORT"])
    ROOT = Path(os.environ.get("KSMBOOK_HUB_ROOT") or tempfile.mkdtemp(prefix="ksmbook-hub-"))
    ROOT.mkdir(parents=True, exist_ok=True)
    STATE = ROOT / "hub"
    EXCHANGE = ROOT / "exchange"
    IP = "127.0.0.1"
else:
    PORT = int(os.environ.get("KSMBOOK_HUB_PORT", "8000"))
    STATE = Path(os.environ.get("KSMBOOK_HUB_STATE", "/srv/ksmbook-hub"))
    EXCHANGE = Path(os.environ.get("KSMBOOK_EXCHANGE", "/srv/nbgrader/exchange"))
    IP = os.environ.get("KSMBOOK_HUB_IP", "")

STATE.mkdir(mode=0o700, parents=True, exist_ok=True)
EXCHANGE.mkdir(parents=True, exist_ok=True)
EXCHANGE.chmod(0o777)  # nbgrader's exchange: every student writes their submissions here

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

# -- every student's server -------------------------------------------------------------------
c.Spawner.default_url = "/lab"
c.Spawner.cmd = [sys.executable, "-m", "ksmbook.classroom.bookcopy"]
c.Spawner.environment = {
    "KSMBOOK_BOOK": str(REPO / "notebooks"),
    # nbgrader's student-side configuration: the course id and the exchange
    "JUPYTER_CONFIG_PATH": str(REPO / "classroom" / "student"),
    "KSMBOOK_COURSE": os.environ.get("KSMBOOK_COURSE", "ksmbook"),
    "KSMBOOK_EXCHANGE": str(EXCHANGE),
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

if MODE == "test":
    c.JupyterHub.authenticator_class = "dummy"
    c.Authenticator.allow_all = True
    # Local processes, each student's home below ROOT (JupyterHub's testing spawner: every
    # server runs as the hub's own user, and serves only its own home).
    c.JupyterHub.spawner_class = "simple"
    c.SimpleLocalProcessSpawner.home_dir_template = str(ROOT / "homes" / "{username}")
    if os.geteuid() == 0:
        c.Spawner.args = ["--allow-root"]
    c.JupyterHub.services.append(
        {"name": "ksmbook-admin", "api_token": os.environ["KSMBOOK_HUB_API_TOKEN"]})
    c.JupyterHub.load_roles.append(
        {"name": "ksmbook-admin", "services": ["ksmbook-admin"],
         "scopes": ["admin:users", "admin:servers", "access:servers", "tokens",
                    "list:services", "read:services"]})
else:
    ADMIN = os.environ.get("KSMBOOK_HUB_ADMIN", "teacher")
    c.JupyterHub.authenticator_class = "native"
    c.NativeAuthenticator.open_signup = False  # the teacher approves each sign-up
    c.Authenticator.admin_users = {ADMIN}
    c.Authenticator.allow_all = True  # only approved sign-ups can log in at all
    c.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"
    c.SystemdSpawner.dynamic_users = True  # a uid per student, with a private home
    # The dynamic user is named after the student: nbgrader's exchange names submissions
    # after the OS user. (Approve no sign-up whose name is one of the machine's accounts.)
    c.SystemdSpawner.unit_extra_properties = {"User": "{USERNAME}"}
    c.SystemdSpawner.mem_limit = os.environ.get("KSMBOOK_HUB_MEM_LIMIT", "1G")
    c.SystemdSpawner.cpu_limit = float(os.environ.get("KSMBOOK_HUB_CPU_LIMIT", "1"))
    c.SystemdSpawner.isolate_tmp = True
    c.SystemdSpawner.isolate_devices = True
    c.SystemdSpawner.readwrite_paths = [str(EXCHANGE)]
