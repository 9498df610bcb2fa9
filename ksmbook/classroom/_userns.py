"""Run a command in a user and mount namespace of its own with folders hidden (a helper of
``ksmbook.classroom.sandbox``, run as a script with ``python -I`` so that nothing imported has
started a thread: unshare(CLONE_NEWUSER) refuses a multithreaded process). The sandbox's root
launch uses its system calls too.

    python -I _userns.py HOME [HIDE ...] -- COMMAND...

Keeps the caller's uid and gid (mapped to themselves), covers each HIDE folder with an empty
mode-000 tmpfs, changes to HOME and runs COMMAND, which has no capability left (its uid in the
namespace is not 0). If the namespace cannot be made, COMMAND runs anyway and stderr says so.
"""

import ctypes
import ctypes.util
import os
import sys

# <linux/sched.h>, <linux/mount.h> and <sys/mount.h> (checked by tests/test_grading_units.py)
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MNT_DETACH = 2

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    check(libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None,
                     flags, data.encode() if data else None), f"mount {target}")


def _hide(folders: list[str]) -> None:
    uid, gid = os.getuid(), os.getgid()
    check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                       ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    for folder in folders:
        mount("tmpfs", folder, "tmpfs", 0, "mode=000,size=4k")


def main(argv: list[str]) -> None:
    i = argv.index("--")
    home, folders, cmd = argv[0], argv[1:i], argv[i + 1:]
    try:
        _hide(folders)
    except OSError as e:
        print(f"ksmbook sandbox: the student's kernel runs unsandboxed: {e}", file=sys.stderr)
    os.chdir(home)
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main(sys.argv[1:])
