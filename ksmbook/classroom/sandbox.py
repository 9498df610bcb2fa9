"""The student's kernel during autograde, kept away from the teacher's files.

``nbgrader autograde`` runs each submission's code in a kernel started by the teacher's
process, so by default the student's code runs as the teacher: it could rewrite the gradebook,
read the course secret and the answer keys, edit the course's configuration or read classmates'
submissions. ``SandboxKernelManager`` starts the kernel through this module's launcher instead:
when autograde runs as root (as on the class hub), the launcher copies the kernel's connection
file into a fresh private folder owned by a throwaway uid of the kernel's own (no account has
it: one student's kernel cannot reach another's; at most 256 processes; whatever it leaves
running is killed when the kernel shuts down), or by ``KSMBOOK_SANDBOX_USER`` if set, drops
every privilege to it (groups, gid, uid) and starts the kernel there, in that folder. Run as
another user, autograde cannot change user: the kernel then runs as that user (a warning says
so), and the course folder should be readable by no one else.

The launcher also starts the kernel in a private mount namespace where the course folder is an
empty, unreadable tmpfs, and where the folders the interpreter and packages live in are
reachable by that user (a folder above them that it could not enter, such as ``/root``, is
covered by a tmpfs that holds only them).

    python -m ksmbook.classroom.sandbox [--dir=DIR] [--uid=N] [--hide=DIR ...] -- KERNEL_COMMAND...
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import sys
import tempfile
from typing import NamedTuple, NoReturn

from jupyter_client.manager import AsyncKernelManager

from ._userns import CLONE_NEWNS, MNT_DETACH, MS_BIND, MS_PRIVATE, MS_REC, check, libc, mount

__all__ = ["Identity", "SandboxKernelManager", "kill_uid", "sandbox_user"]

_warned = False


class Identity(NamedTuple):
    """Whom a student kernel runs as: a throwaway uid of its own (`throwaway`: its processes
    are killed when the kernel shuts down), or the named KSMBOOK_SANDBOX_USER."""

    uid: int
    gid: int
    name: str
    throwaway: bool


#: Throwaway uids are drawn from here (no account has them; checked against the passwd data).
THROWAWAY_UIDS = range(3_900_000_000, 3_990_000_000)


def sandbox_user(uid: int | None = None) -> Identity | None:
    """Whom the next student kernel runs as (None if this process cannot change user): the
    user KSMBOOK_SANDBOX_USER names, else the throwaway `uid` (a fresh one if None)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("KSMBOOK_SANDBOX_USER")
    if name:
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            raise RuntimeError(f"KSMBOOK_SANDBOX_USER={name}: no such user") from None
        if user.pw_uid == 0:
            raise RuntimeError(f"KSMBOOK_SANDBOX_USER={name} is root: name an unprivileged "
                               "user")
        return Identity(user.pw_uid, user.pw_gid, name, False)
    while uid is None:
        uid = secrets.choice(THROWAWAY_UIDS)
        try:
            pwd.getpwuid(uid)
            uid = None
        except KeyError:
            pass
    return Identity(uid, uid, f"student-kernel-{uid}", True)


def kill_uid(uid: int) -> int:
    """SIGKILL every live process of `uid` (what a student's kernel or server left running);
    returns how many."""
    import signal
    import time

    killed: set[int] = set()
    for _round in range(5):
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/status") as f:
                    status = dict(line.split(":", 1) for line in f if ":" in line)
            except OSError:
                continue
            if str(uid) in status.get("Uid", "").split() and \
                    not status.get("State", "").strip().startswith(("Z", "X")):
                found.append(int(entry))
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:
                pass
        time.sleep(0.05)
    return len(killed)


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels start through the sandbox launcher."""

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        global _warned
        cmd: list[str] = super().format_kernel_cmd(extra_arguments)
        who = sandbox_user()
        hide = [os.path.expanduser("~")] if who is None else []
        try:
            from nbgrader.coursedir import CourseDirectory  # type: ignore[import-untyped]
            from nbgrader.exchange.default.exchange import (  # type: ignore[import-untyped]
                Exchange,
            )

            hide.append(os.path.realpath(CourseDirectory(config=self.config).root))
            hide.append(os.path.realpath(Exchange(config=self.config).root))
        except ImportError:  # pragma: no cover - nbgrader is what runs this
            pass
        if who is None and not _warned:
            self.log.warning(
                "ksmbook: autograde runs the students' code as this user (only root can give "
                "their kernels a user of their own); it is started with your home, the course "
                "folder and the exchange hidden from it where user namespaces allow, but it "
                "can still write what you can write elsewhere: grade as root where you can")
            _warned = True
        self._sandbox_dir = tempfile.mkdtemp(prefix="ksmbook-kernel-")
        self._sandbox_uid = who.uid if who is not None and who.throwaway else None
        return [sys.executable, "-m", "ksmbook.classroom.sandbox", f"--dir={self._sandbox_dir}",
                *([f"--uid={who.uid}"] if who is not None and who.throwaway else []),
                *[f"--hide={h}" for h in hide], "--", *cmd]

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        uid = getattr(self, "_sandbox_uid", None)
        if uid is not None and not restart:
            left = kill_uid(uid)
            if left:
                self.log.warning("ksmbook: killed %d process(es) the student's kernel left "
                                 "running", left)
        folder = getattr(self, "_sandbox_dir", None)
        if folder and not restart:
            shutil.rmtree(folder, ignore_errors=True)

    cleanup_resources = _async_cleanup_resources


def _blocker(path: str, user: Identity) -> str | None:
    """The highest folder above `path` that `user` cannot enter (None if it can reach it)."""
    parts = os.path.realpath(path).split(os.sep)[1:]
    cur = ""
    for part in parts[:-1]:
        cur = f"{cur}/{part}"
        st = os.stat(cur)
        if not (st.st_mode & 0o001 or (st.st_uid == user.uid and st.st_mode & 0o100)
                or (st.st_gid == user.gid and st.st_mode & 0o010)):
            return cur
    return None


def _private_mounts(user: Identity, needed: list[str], hide: list[str],
                    stage: str) -> None:
    """In a new mount namespace: cover each folder in `hide` with an empty tmpfs, and make
    each path in `needed` (the interpreter, the packages) reachable by `user`: a folder above
    it that `user` cannot enter is covered by a tmpfs holding only the needed entries."""
    check(libc.unshare(CLONE_NEWNS), "unshare")
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    for folder in hide:
        if os.path.isdir(folder):
            mount("tmpfs", folder, "tmpfs", 0, "mode=000,size=4k")
    for _round in range(8):
        blocked: dict[str, set[str]] = {}
        for path in needed:
            b = _blocker(path, user)
            if b is not None:
                rest = os.path.relpath(os.path.realpath(path), b).split(os.sep)[0]
                blocked.setdefault(b, set()).add(rest)
        if not blocked:
            return
        for n, (folder, entries) in enumerate(sorted(blocked.items())):
            staged = []
            for m, entry in enumerate(sorted(entries)):
                tmp = os.path.join(stage, f"{_round}-{n}-{m}")
                os.mkdir(tmp)
                mount(os.path.join(folder, entry), tmp, None, MS_BIND | MS_REC)
                staged.append((entry, tmp))
            mount("tmpfs", folder, "tmpfs", 0, "mode=755,size=64k")
            for entry, tmp in staged:
                os.mkdir(os.path.join(folder, entry))
                mount(tmp, os.path.join(folder, entry), None, MS_BIND | MS_REC)
                check(libc.umount2(tmp.encode(), MNT_DETACH), f"umount {tmp}")
    raise OSError(f"cannot make {needed} reachable by {user.name}")


def _needed(cmd: list[str], hide: list[str]) -> list[str]:
    """The interpreter, its prefixes and the folders packages are imported from (not the
    current folder, nor anything in a hidden folder)."""
    import importlib.util

    spec = importlib.util.find_spec("ksmbook")
    package = os.path.dirname(spec.origin) if spec and spec.origin else sys.prefix
    paths = [cmd[0], sys.executable, sys.prefix, sys.base_prefix, os.path.dirname(package)]
    paths += [p for p in sys.path[1:] if p]
    out = [p for p in map(os.path.realpath, paths)
           if os.path.exists(p) and not any(_within(p, h) for h in hide)]
    return sorted(set(out))


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _own_connection_file(cmd: list[str], home: str) -> list[str]:
    """`cmd` with its connection file (``-f FILE``) copied into `home` (mode 0600: it holds
    the kernel's key), if it has one."""
    if "-f" not in cmd:
        return cmd
    i = cmd.index("-f") + 1
    conn = os.path.join(home, "kernel.json")
    shutil.copyfile(cmd[i], conn)
    os.chmod(conn, 0o600)
    return [*cmd[:i], conn, *cmd[i + 1:]]


def _kernel_env(home: str, **more: str) -> dict[str, str]:
    """The kernel's environment: without the hub's and ksmbook's variables, at home in `home`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTERHUB_", "JPY_API", "KSMBOOK_"))}
    env.update(HOME=home, TMPDIR=home, IPYTHONDIR=os.path.join(home, ".ipython"),
               MPLCONFIGDIR=os.path.join(home, ".matplotlib"), **more)
    return env


def _launch(cmd: list[str], hide: list[str], folder: str | None, uid: int | None) -> None:
    user = sandbox_user(uid)
    folder = folder or tempfile.mkdtemp(prefix="ksmbook-kernel-")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    if user is None:
        _launch_unprivileged(cmd, hide, folder)
    os.chmod(folder, 0o711)  # the user may enter it (to its home), not list it
    home, stage = os.path.join(folder, "home"), os.path.join(folder, "stage")
    os.mkdir(home, 0o700)
    os.mkdir(stage, 0o700)
    _private_mounts(user, _needed(cmd, hide), hide, stage)
    cmd = _own_connection_file(cmd, home)
    if "-f" in cmd:
        os.chown(cmd[cmd.index("-f") + 1], user.uid, user.gid)
    os.chown(home, user.uid, user.gid)
    os.chmod(home, 0o700)
    env = _kernel_env(home, USER=user.name, LOGNAME=user.name)
    os.chdir(home)
    if user.throwaway:  # a uid of its own: bound its processes (a fork bomb stops here)
        import resource

        resource.setrlimit(resource.RLIMIT_NPROC, (256, 256))
    os.setgroups([])
    os.setgid(user.gid)
    os.setuid(user.uid)
    os.umask(0o077)
    os.execvpe(cmd[0], cmd, env)


def _launch_unprivileged(cmd: list[str], hide: list[str], folder: str) -> NoReturn:
    """Not root: the kernel keeps this uid, but starts in a user and mount namespace of its own
    where each folder of `hide` (the course, the exchange, the home if nothing needed is in it)
    is an empty tmpfs, in a private home. Its capabilities in that namespace end at execve (its
    uid there is not 0), so it cannot unmount them; a namespace it makes inside gets them
    locked. Where user namespaces are refused, it runs unsandboxed (a warning says so)."""
    home = os.path.join(folder, "home")
    os.makedirs(home, mode=0o700, exist_ok=True)
    cmd = _own_connection_file(cmd, home)
    needed = _needed(cmd, [])
    hide = [h for h in hide if os.path.isdir(h) and not _within(home, h)
            and not any(_within(p, h) for p in needed)]
    env = _kernel_env(home)
    os.umask(0o077)
    helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_userns.py")
    os.execvpe(sys.executable, [sys.executable, "-I", helper, home, *hide, "--", *cmd], env)


def main(argv: list[str]) -> None:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print("usage: python -m ksmbook.classroom.sandbox [--dir=DIR] [--hide=DIR ...] -- "
              "KERNEL_COMMAND...",
              file=sys.stderr)
        sys.exit(2)
    i = argv.index("--")
    hide = [a.removeprefix("--hide=") for a in argv[:i] if a.startswith("--hide=")]
    folder = next((a.removeprefix("--dir=") for a in argv[:i] if a.startswith("--dir=")), None)
    uid = next((int(a.removeprefix("--uid=")) for a in argv[:i] if a.startswith("--uid=")),
               None)
    _launch(argv[i + 1:], hide, folder, uid)


if __name__ == "__main__":
    main(sys.argv[1:])
