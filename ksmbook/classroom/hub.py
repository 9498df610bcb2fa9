"""The class hub's own parts: where its state lives, who may have an account, the teacher's
account, and an OS user per student.

classroom/jupyterhub_config.py builds the hub from these; ``python -m ksmbook classroom
hub-admin`` creates the teacher's account before sign-ups open.

Accounts. A hub name becomes an OS user of the same name (nbgrader names a submission after
the OS user of the process that submits it, and ``nbgrader collect`` checks the name against
the submission's owner). So a name is refused at sign-up, at approval and at spawn when it is
reserved (``RESERVED``, the teacher's name) or is already an account or group of this machine
(anything in its passwd or group database: ``root``, ``daemon``, ``sudo``...), except an
account this hub created itself (its GECOS field is ``USER_MARK``).

Paths (both modes read them from the environment, so the hub and the command agree):

    class mode  state KSMBOOK_HUB_STATE (/srv/ksmbook-hub)  exchange KSMBOOK_EXCHANGE
                (/srv/nbgrader/exchange)  homes KSMBOOK_HUB_HOMES (/home)
    test mode   everything below KSMBOOK_HUB_ROOT (/srv/ksmbook-hub-test as root, else
                ~/.local/share/ksmbook-hub-test): hub/, exchange/, homes/
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import os
import pwd
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["HubPaths", "hub_paths", "RESERVED", "USER_MARK", "MIN_PASSWORD", "NAME_PATTERN",
           "AccountError", "account_problem", "ensure_os_user", "remove_os_user",
           "prepare_exchange", "write_admin", "read_password_file", "add_hub_admin_parser",
           "reachable_by_all"]

#: A student's or the teacher's hub name: also their OS user name and their nbgrader id.
NAME_PATTERN = r"[a-z][a-z0-9_-]{0,31}"
#: Names nobody can sign up under, whatever the machine's accounts are.
RESERVED = frozenset({
    "root", "admin", "administrator", "superuser", "sudo", "wheel", "staff", "users",
    "nobody", "nogroup", "daemon", "jovyan", "hub", "jupyterhub", "jupyter", "ksmbook",
    "nbgrader", "exchange", "teacher", "instructor", "grader", "student", "system", "www-data",
})
#: The GECOS field of the OS users this hub creates (and the only ones it runs servers as).
USER_MARK = "ksmbook hub user"
#: The shortest password the hub accepts (sign-up, change of password, the teacher's).
MIN_PASSWORD = 10
#: Failed logins in a row before an account waits LOCKOUT_SECONDS.
FAILED_LOGINS = 5
LOCKOUT_SECONDS = 600


class AccountError(Exception):
    """A name or an account the hub refuses; the message says why."""


@dataclass(frozen=True)
class HubPaths:
    """Where one hub keeps things."""

    mode: str
    state: Path     # the hub's database, cookie secret, pid files (0700)
    exchange: Path  # nbgrader's exchange
    homes: Path     # the parent of every student's (and the teacher's) home


def hub_paths(env: Mapping[str, str] | None = None) -> HubPaths:
    """The hub's paths for the mode and settings in `env` (default os.environ)."""
    env = os.environ if env is None else env
    mode = env.get("KSMBOOK_HUB_MODE", "class")
    if mode == "test":
        default = (Path("/srv/ksmbook-hub-test") if os.geteuid() == 0
                   else Path.home() / ".local" / "share" / "ksmbook-hub-test")
        root = Path(env.get("KSMBOOK_HUB_ROOT") or default)
        return HubPaths(mode, root / "hub", root / "exchange", root / "homes")
    return HubPaths(mode, Path(env.get("KSMBOOK_HUB_STATE") or "/srv/ksmbook-hub"),
                    Path(env.get("KSMBOOK_EXCHANGE") or "/srv/nbgrader/exchange"),
                    Path(env.get("KSMBOOK_HUB_HOMES") or "/home"))


def _passwd(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def is_ours(name: str) -> bool:
    """True if `name` is an OS user this hub created (and not a privileged one)."""
    entry = _passwd(name)
    return entry is not None and entry.pw_gecos == USER_MARK and entry.pw_uid >= 1000


def account_problem(name: str, *, reserved: frozenset[str] = RESERVED,
                    existing_ok: bool = False) -> str | None:
    """Why `name` cannot be a hub account, or None.

    `existing_ok`: an OS user this hub created under that name is fine (logging in again,
    spawning); at sign-up it is not (a new person would get someone's old home)."""
    if not re.fullmatch(NAME_PATTERN, name):
        return (f"{name!r}: use 1 to 32 lowercase letters, digits, '-' or '_', "
                "starting with a letter")
    if name in reserved:
        return f"{name!r} is reserved"
    if existing_ok and is_ours(name):
        return None
    if _passwd(name) is not None:
        return f"{name!r} is an account of this machine"
    with contextlib.suppress(KeyError):
        grp.getgrnam(name)
        return f"{name!r} is a group of this machine"
    return None


def ensure_os_user(name: str, homes: Path) -> pwd.struct_passwd:
    """The OS user `name` (created, with a private home below `homes`, if missing).

    Refuses (AccountError) a name that is an account this hub did not create. Needs root."""
    entry = _passwd(name)
    if entry is None:
        problem = account_problem(name, reserved=frozenset())
        if problem:
            raise AccountError(problem)
        homes.mkdir(parents=True, exist_ok=True)
        home = homes / name
        cmd = ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash",
               "--comment", USER_MARK, "--user-group", "--key", "UMASK=077", name]
        for attempt in range(20):  # useradd fails while another holds /etc/passwd's lock
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode == 0 or _passwd(name) is not None:
                break
            if done.returncode not in (1, 10):  # 1: cannot lock/update passwd, 10: group
                raise AccountError(f"useradd {name}: {done.stderr.strip()}")
            time.sleep(0.1 * (attempt + 1))
        entry = _passwd(name)
        if entry is None:
            raise AccountError(f"useradd {name} failed")
        home.chmod(0o700)
    if not is_ours(name):
        raise AccountError(f"{name!r} is an account of this machine that this hub did not "
                           "create: no server runs as it")
    return entry


def remove_os_user(name: str) -> None:
    """Remove an OS user this hub created, with its home and group (tests, cleanup)."""
    if not is_ours(name):
        raise AccountError(f"{name!r} is not an account this hub created")
    for attempt in range(20):
        done = subprocess.run(["userdel", "--remove", name], capture_output=True, text=True)
        if _passwd(name) is None:
            return
        time.sleep(0.1 * (attempt + 1))
    raise AccountError(f"userdel {name}: {done.stderr.strip()}")


def prepare_exchange(exchange: Path, course: str, owner: str | None) -> None:
    """nbgrader's exchange for `course`, laid out as nbgrader lays it out, before any student
    can touch it: the root world-writable with the sticky bit (nobody renames or removes what
    is not theirs), the course folder, outbound/ (0755) and feedback/ (0711) the teacher's,
    inbound/ 2733 (students create submissions but cannot list them). `owner`: the teacher's
    OS user (None: the hub's own user)."""
    exchange.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(exchange, 0, 0)
    exchange.chmod(0o1777)
    uid, gid = os.geteuid(), os.getegid()
    if owner is not None:
        entry = pwd.getpwnam(owner)
        uid, gid = entry.pw_uid, entry.pw_gid
    course_dir = exchange / course
    for path, mode in ((course_dir, 0o755), (course_dir / "outbound", 0o755),
                       (course_dir / "inbound", 0o2733), (course_dir / "feedback", 0o711)):
        if path.is_symlink():
            path.unlink()
        path.mkdir(exist_ok=True)
        st = path.lstat()
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(path, uid, gid, follow_symlinks=False)
        path.chmod(mode)


def reachable_by_all(path: str | Path) -> bool:
    """True if every account can run `path` (it and each folder above it, links resolved,
    are open to others): a student's server runs the hub's Python as the student."""
    real = Path(os.path.realpath(path))
    try:
        if not real.stat().st_mode & 0o001:
            return False
        return all(parent.stat().st_mode & 0o001 for parent in real.parents)
    except OSError:
        return False


def read_password_file(path: str) -> str:
    """The password in `path` ('-': standard input): its first line."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise AccountError(f"cannot read the password file {path}: {e}") from None
    lines = text.splitlines()
    password = lines[0] if lines else ""
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password in {path} is shorter than {MIN_PASSWORD} characters")
    return password


def write_admin(state: Path, name: str, password: str) -> Path:
    """Create (or reset the password of) the teacher's hub account `name`, approved, in the
    hub database below `state`. Returns the database's path."""
    import logging

    import bcrypt
    from jupyterhub import orm
    from nativeauthenticator.orm import UserInfo

    if not re.fullmatch(NAME_PATTERN, name):
        raise AccountError(account_problem(name) or f"{name!r} is not a valid name")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password is shorter than {MIN_PASSWORD} characters")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    if state.stat().st_uid == os.geteuid():  # (a mounted volume may be another's)
        state.chmod(0o700)
    db = state / "jupyterhub.sqlite"
    session: Any = orm.new_session_factory(f"sqlite:///{db}")()
    try:
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
        info = UserInfo.find(session, name)
        if info is None:
            session.add(UserInfo(username=name, password=hashed, is_authorized=True))
        else:
            info.password, info.is_authorized = hashed, True
        session.commit()
    finally:
        session.close()
    db.chmod(0o600)
    return db


def add_hub_admin_parser(sub: Any) -> None:
    """`python -m ksmbook classroom hub-admin`: the teacher's account, before sign-ups open."""
    p = sub.add_parser(
        "hub-admin", help="create the teacher's account on the class hub (before it starts)",
        description="Create the teacher's account of the class hub (classroom/"
                    "jupyterhub_config.py, class mode), approved, in the hub's database; or "
                    "reset its password. Run it as the user the hub runs as (root), before the "
                    "hub's first start: the hub does not start without it, and nobody can "
                    "sign up under the teacher's name.")
    p.add_argument("--password-file", required=True, metavar="FILE",
                   help=f"a file whose first line is the password (at least {MIN_PASSWORD} "
                        "characters; '-': standard input)")
    p.add_argument("--name", default=os.environ.get("KSMBOOK_HUB_ADMIN", "teacher"),
                   help="the teacher's hub name (default $KSMBOOK_HUB_ADMIN or 'teacher')")
    p.add_argument("--state", type=Path, default=None, metavar="DIR",
                   help="the hub's state folder (default $KSMBOOK_HUB_STATE or "
                        "/srv/ksmbook-hub)")
    p.set_defaults(func=_hub_admin)


def _hub_admin(args: argparse.Namespace) -> int:
    state = args.state or hub_paths({**os.environ, "KSMBOOK_HUB_MODE": "class"}).state
    try:
        password = read_password_file(args.password_file)
        problem = account_problem(args.name, reserved=frozenset(), existing_ok=True)
        if problem:
            raise AccountError(problem)
        db = write_admin(state, args.name, password)
    except AccountError as e:
        print(f"classroom hub-admin: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # the database: not the hub's, newer, unreadable
        print(f"classroom hub-admin: {state}: {e}", file=sys.stderr)
        return 2
    print(f"the hub account {args.name!r} is ready (approved, admin) in {db}")
    return 0
