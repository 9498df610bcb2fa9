"""The live-ksmd lock (ksmbook.live.ksmd._global_lock) works for every user, whoever made it.

A root run creates the lock file; a normal user's later run must still take the lock (and
the other way round), and the lock must still exclude. The lock file here is a stand-in in a
sticky world-writable directory like /run/lock, so no real lock is held; the normal user is
``nobody``, reached with setpriv. Skips where that cannot be done (not root, no setpriv, or
the repository unreadable for nobody).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ksmbook.live import ksmd as live_ksmd

REPO = Path(__file__).resolve().parent.parent
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
TAKE = ("import sys; from ksmbook.live import ksmd as L; L._LOCK_PATH = sys.argv[1]\n"
        "with L._global_lock():\n    print('locked', flush=True)\n")


def _as_nobody(path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*NOBODY, sys.executable, "-c", TAKE, str(path)], cwd="/",
                            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def sticky_dir() -> Iterator[Path]:
    """A fresh directory like /run/lock (mode 1777), reachable by nobody."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a step as another user (nobody)")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is missing: cannot run a step as nobody")
    probe = subprocess.run([*NOBODY, sys.executable, "-c", "import ksmbook"], cwd="/",
                           env={"PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"nobody cannot import ksmbook from {REPO}: {probe.stderr.strip()[-200:]}")
    d = Path(tempfile.mkdtemp(prefix="ksmbook-lock-", dir="/tmp"))
    d.chmod(0o1777)
    try:
        yield d
    finally:
        shutil.rmtree(d)


def test_a_normal_user_takes_the_lock_after_a_root_run(sticky_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    lock = sticky_dir / "ksmbook-live-ksmd.lock"
    monkeypatch.setattr(live_ksmd, "_LOCK_PATH", str(lock))
    old = os.umask(0o077)  # a strict umask must not matter
    try:
        with live_ksmd._global_lock():
            pass
    finally:
        os.umask(old)
    assert lock.stat().st_uid == 0 and lock.stat().st_mode & 0o777 == 0o644
    done = _as_nobody(lock).communicate(timeout=60)
    assert done == ("locked\n", "")


def test_root_takes_the_lock_a_normal_user_made(sticky_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    lock = sticky_dir / "ksmbook-live-ksmd.lock"
    assert _as_nobody(lock).communicate(timeout=60) == ("locked\n", "")
    assert lock.stat().st_uid != 0
    monkeypatch.setattr(live_ksmd, "_LOCK_PATH", str(lock))
    with live_ksmd._global_lock():
        assert lock.exists()


def test_the_lock_excludes_across_users(sticky_dir: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """While root holds the lock, nobody's run waits; it goes on once root lets go."""
    lock = sticky_dir / "ksmbook-live-ksmd.lock"
    monkeypatch.setattr(live_ksmd, "_LOCK_PATH", str(lock))
    with live_ksmd._global_lock():
        waiter = _as_nobody(lock)
        time.sleep(1.0)
        assert waiter.poll() is None, waiter.communicate()
    assert waiter.communicate(timeout=60) == ("locked\n", "")
