"""The student's kernel during autograde, kept away from the teacher's files.

``nbgrader autograde`` runs each submission's code in a kernel started by the teacher's
process, so by default the student's code runs as the teacher: it could rewrite the gradebook,
read the course secret and the answer keys, edit the course's configuration or read classmates'
submissions. ``SandboxKernelManager`` starts the kernel through this module's launcher instead:
when autograde runs as root (as on the class hub), the launcher copies the kernel's connection
file into a fresh private folder owned by an unprivileged user (``nobody``, or
``KSMBOOK_SANDBOX_USER``), drops every privilege to that user (groups, gid, uid) and starts the
kernel there, in that folder. Run as another user, autograde cannot change user: the kernel then
runs as that user (a warning says so), and the course folder should be readable by no one else.

The launcher also starts the kernel in a private mount namespace where the course folder is an
empty, unreadable tmpfs, and where the folders the interpreter and packages live in are
reachable by that user (a folder above them that it could not enter, such as ``/root``, is
covered by a tmpfs that holds only them).

    python -m ksmbook.classroom.sandbox [--dir=DIR] [--hide=DIR ...] -- KERNEL_COMMAND...
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
import tempfile
from typing import Any

from jupyter_client.manager import AsyncKernelManager

__all__ = ["SandboxKernelManager", "sandbox_user"]

_warned = False


def sandbox_user() -> pwd.struct_passwd | None:
    """The user student kernels run as (None if this process cannot change user)."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("KSMBOOK_SANDBOX_USER", "nobody")
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        raise RuntimeError(f"no user {name!r} to run the students' kernels as "
                           "(set KSMBOOK_SANDBOX_USER to an unprivileged user)") from None
    if user.pw_uid == 0:
        raise RuntimeError(f"KSMBOOK_SANDBOX_USER={name} is root: name an unprivileged user")
    return user


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels start through the sandbox launcher."""

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        global _warned
        cmd: list[str] = super().format_kernel_cmd(extra_arguments)
        if sandbox_user() is None:
            if not _warned:
                self.log.warning(
                    "ksmbook: autograde runs the students' code as this user (only root can "
                    "start their kernels as an unprivileged user): keep the course folder "
                    "readable by you alone, and grade as root or in a container")
                _warned = True
            return cmd
        hide = []
        try:
            from nbgrader.coursedir import CourseDirectory  # type: ignore[import-untyped]

            hide.append(os.path.realpath(CourseDirectory(config=self.config).root))
        except ImportError:  # pragma: no cover - nbgrader is what runs this
            pass
        self._sandbox_dir = tempfile.mkdtemp(prefix="ksmbook-kernel-")
        return [sys.executable, "-m", "ksmbook.classroom.sandbox", f"--dir={self._sandbox_dir}",
                *[f"--hide={h}" for h in hide], "--", *cmd]

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        folder = getattr(self, "_sandbox_dir", None)
        if folder and not restart:
            shutil.rmtree(folder, ignore_errors=True)

    cleanup_resources = _async_cleanup_resources


_CLONE_NEWNS = 0x00020000
_MS_BIND, _MS_REC, _MS_PRIVATE = 4096, 16384, 1 << 18
_MNT_DETACH = 2


def _libc() -> Any:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(libc: Any, source: str, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                      flags, data.encode() if data else None), f"mount {target}")


def _blocker(path: str, user: pwd.struct_passwd) -> str | None:
    """The highest folder above `path` that `user` cannot enter (None if it can reach it)."""
    parts = os.path.realpath(path).split(os.sep)[1:]
    cur = ""
    for part in parts[:-1]:
        cur = f"{cur}/{part}"
        st = os.stat(cur)
        if not (st.st_mode & 0o001 or (st.st_uid == user.pw_uid and st.st_mode & 0o100)
                or (st.st_gid == user.pw_gid and st.st_mode & 0o010)):
            return cur
    return None


def _private_mounts(user: pwd.struct_passwd, needed: list[str], hide: list[str],
                    stage: str) -> None:
    """In a new mount namespace: cover each folder in `hide` with an empty tmpfs, and make
    each path in `needed` (the interpreter, the packages) reachable by `user`: a folder above
    it that `user` cannot enter is covered by a tmpfs holding only the needed entries."""
    libc = _libc()
    _check(libc.unshare(_CLONE_NEWNS), "unshare")
    _mount(libc, "none", "/", None, _MS_REC | _MS_PRIVATE)
    for folder in hide:
        if os.path.isdir(folder):
            _mount(libc, "tmpfs", folder, "tmpfs", 0, "mode=000,size=4k")
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
                _mount(libc, os.path.join(folder, entry), tmp, None, _MS_BIND | _MS_REC)
                staged.append((entry, tmp))
            _mount(libc, "tmpfs", folder, "tmpfs", 0, "mode=755,size=64k")
            for entry, tmp in staged:
                os.mkdir(os.path.join(folder, entry))
                _mount(libc, tmp, os.path.join(folder, entry), None, _MS_BIND | _MS_REC)
                _check(libc.umount2(tmp.encode(), _MNT_DETACH), f"umount {tmp}")
    raise OSError(f"cannot make {needed} reachable by {user.pw_name}")


def _needed(cmd: list[str], hide: list[str]) -> list[str]:
    """The interpreter, its prefixes and the folders packages are imported from (not the
    current folder, nor anything in a hidden folder)."""
    import importlib.util

    spec = importlib.util.find_spec("ksmbook")
    package = os.path.dirname(spec.origin) if spec and spec.origin else sys.prefix
    paths = [cmd[0], sys.executable, sys.prefix, sys.base_prefix, os.path.dirname(package)]
    paths += [p for p in sys.path[1:] if p]
    out = []
    for p in map(os.path.realpath, paths):
        if os.path.exists(p) and not any(
                p == h or p.startswith(h.rstrip(os.sep) + os.sep) for h in hide):
            out.append(p)
    return sorted(set(out))


def _launch(cmd: list[str], hide: list[str], folder: str | None) -> None:
    user = sandbox_user()
    if user is None:
        os.execvp(cmd[0], cmd)
    folder = folder or tempfile.mkdtemp(prefix="ksmbook-kernel-")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o711)  # the user may enter it (to its home), not list it
    home, stage = os.path.join(folder, "home"), os.path.join(folder, "stage")
    os.mkdir(home, 0o700)
    os.mkdir(stage, 0o700)
    _private_mounts(user, _needed(cmd, hide), hide, stage)
    if "-f" in cmd:
        i = cmd.index("-f") + 1
        conn = os.path.join(home, "kernel.json")
        shutil.copyfile(cmd[i], conn)
        os.chown(conn, user.pw_uid, user.pw_gid)
        os.chmod(conn, 0o600)
        cmd = [*cmd[:i], conn, *cmd[i + 1:]]
    os.chown(home, user.pw_uid, user.pw_gid)
    os.chmod(home, 0o700)
    env: dict[str, Any] = {k: v for k, v in os.environ.items()
                           if not k.startswith(("JUPYTERHUB_", "JPY_API", "KSMBOOK_"))}
    env.update(HOME=home, USER=user.pw_name, LOGNAME=user.pw_name, TMPDIR=home,
               IPYTHONDIR=os.path.join(home, ".ipython"),
               MPLCONFIGDIR=os.path.join(home, ".matplotlib"))
    os.chdir(home)
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    os.umask(0o077)
    os.execvpe(cmd[0], cmd, env)


def main(argv: list[str]) -> None:
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print("usage: python -m ksmbook.classroom.sandbox [--dir=DIR] [--hide=DIR ...] -- "
              "KERNEL_COMMAND...",
              file=sys.stderr)
        sys.exit(2)
    i = argv.index("--")
    hide = [a.removeprefix("--hide=") for a in argv[:i] if a.startswith("--hide=")]
    folder = next((a.removeprefix("--dir=") for a in argv[:i] if a.startswith("--dir=")), None)
    _launch(argv[i + 1:], hide, folder)


if __name__ == "__main__":
    main(sys.argv[1:])
