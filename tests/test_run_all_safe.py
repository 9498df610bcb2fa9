"""Run All of every notebook leaves this machine's KSM alone.

A reader who opens a chapter and runs all its cells (as root, in a class hub's container, or
``make html`` executing the book) must not write /sys/kernel/mm/ksm or start the host's ksmd:
the cells that drive the live ksmd run only when the reader asks for it with an explicit
argument. Replaying madvise scenarios in worker processes (no sysfs writes) may stay automatic.

Each notebook is executed as stored (nbconvert's ExecutePreprocessor) with the knobs watched
three ways:

- an audit hook (``sys.addaudithook``), installed by a ``sitecustomize`` module on the kernel's
  PYTHONPATH and so in every Python process it starts that is not isolated, refuses and logs
  any open for writing of a file under /sys/kernel/mm/ksm, any command line naming that
  directory, and any attempt to take the live-ksmd lock (the first step of driving ksmd): a
  write that is restored afterwards is caught too;
- every file under /sys/kernel/mm/ksm is read before and after, and must be unchanged (the
  counters too when ksmd was stopped, run=0: a scan moves full_scans and pages_scanned);
- the test holds the live-ksmd lock meanwhile, so the live tests cannot move the counters.
"""

from __future__ import annotations

import contextlib
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ksmbook.live import ksmd as live_ksmd

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))

SITECUSTOMIZE = textwrap.dedent('''
    """Refuse and log every write to /sys/kernel/mm/ksm from this process (test_run_all_safe)."""
    import errno
    import os
    import sys

    _LOG = os.environ["KSMBOOK_KSM_WATCH_LOG"]
    _LOCK = os.environ["KSMBOOK_KSM_WATCH_LOCK"]
    _KSM = os.environ["KSMBOOK_KSM_WATCH_DIR"]
    _WRITE = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


    def _refuse(what):
        fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"pid {os.getpid()}: {what}\\n".encode())
        finally:
            os.close(fd)
        raise PermissionError(errno.EPERM, f"Run All must not drive KSM: {what}")


    def _hook(event, args):
        if event == "open" and not isinstance(args[0], int):
            path = os.path.abspath(os.fsdecode(args[0]))
            mode, flags = args[1], args[2] or 0
            writes = flags & _WRITE or (mode is not None and any(c in mode for c in "wax+"))
            if (path == _KSM or path.startswith(_KSM + "/")) and writes:
                _refuse(f"open({path!r}) for writing")
            if path == _LOCK:
                _refuse(f"takes the live-ksmd lock {path}")
        elif event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn"):
            words = args[1] if event != "os.system" else args[0]
            text = os.fsdecode(words) if isinstance(words, (str, bytes)) else \\
                " ".join(os.fsdecode(w) for w in words or ())
            if _KSM in text:
                _refuse(f"{event}: {text}")


    sys.addaudithook(_hook)
''')


def ksm_files() -> dict[str, str]:
    """Every readable file of /sys/kernel/mm/ksm and its content ({} without KSM)."""
    return live_ksmd.read_ksm_sysfs() if os.path.isdir(live_ksmd.KSM_DIR) else {}


@contextlib.contextmanager
def live_ksmd_lock() -> Iterator[None]:
    """Hold the lock every user of ksmbook.live.ksmd takes (the live tests wait meanwhile)."""
    with live_ksmd._global_lock():
        yield


@pytest.fixture
def watched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PYTHONPATH entry whose sitecustomize refuses KSM writes; returns the log path."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "ksm-writes.log"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("KSMBOOK_KSM_WATCH_LOG", str(log))
    monkeypatch.setenv("KSMBOOK_KSM_WATCH_LOCK", live_ksmd._LOCK_PATH)
    monkeypatch.setenv("KSMBOOK_KSM_WATCH_DIR", live_ksmd.KSM_DIR)
    return log


def test_the_watch_catches_a_write(watched: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook refuses what the live-ksmd code does first, and logs it (even when caught).
    Here the watched directory and the lock are stand-ins in tmp_path, so that a hook that
    failed to install would write nothing real."""
    import subprocess
    import sys

    fake = tmp_path / "ksm"
    fake.mkdir()
    (fake / "run").write_text("0\n")
    lock = tmp_path / "live-ksmd.lock"
    monkeypatch.setenv("KSMBOOK_KSM_WATCH_DIR", str(fake))
    monkeypatch.setenv("KSMBOOK_KSM_WATCH_LOCK", str(lock))
    script = textwrap.dedent(f"""
        from ksmbook.live import ksmd as live_ksmd
        live_ksmd.KSM_DIR, live_ksmd._LOCK_PATH = {str(fake)!r}, {str(lock)!r}
        try:
            with live_ksmd.session():
                pass
        except PermissionError as e:
            print("refused:", e)
        try:
            live_ksmd._write("run", 1)
        except PermissionError as e:
            print("refused:", e)
        import subprocess
        try:
            subprocess.run(["sh", "-c", "echo 1 > {fake}/run"])
        except PermissionError as e:
            print("refused:", e)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert out.count("refused: [Errno 1] Run All must not drive KSM") == 3, out
    assert (fake / "run").read_text() == "0\n"
    log = watched.read_text()
    assert f"takes the live-ksmd lock {lock}" in log
    assert f"open('{fake}/run') for writing" in log
    assert f"subprocess.Popen: sh -c echo 1 > {fake}/run" in log


@pytest.mark.slow
@pytest.mark.parametrize("path", ALL, ids=[p.stem for p in ALL])
def test_run_all_leaves_ksm_alone(path: Path, watched: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    from nbconvert.preprocessors import CellExecutionError, ExecutePreprocessor

    nb = nbformat.read(path, as_version=4)
    ep = ExecutePreprocessor(timeout=240, kernel_name="python3")
    with live_ksmd_lock():
        before = ksm_files()
        try:
            ep.preprocess(nb, {"metadata": {"path": str(NOTEBOOKS)}})
        except CellExecutionError as e:
            pytest.fail(f"{path.name}: a cell failed under Run All:\n{str(e)[-2000:]}")
        after = ksm_files()
    refused = watched.read_text() if watched.exists() else ""
    assert not refused, f"{path.name} tried to drive this machine's KSM:\n{refused}"
    if before.get("run") != "0":  # ksmd may be scanning others' pages: compare the knobs only
        before = {k: v for k, v in before.items() if k not in live_ksmd.COUNTERS}
        after = {k: v for k, v in after.items() if k not in live_ksmd.COUNTERS}
    changed = {k: (before.get(k), after.get(k)) for k in before.keys() | after.keys()
               if before.get(k) != after.get(k)}
    assert not changed, f"{path.name} changed /sys/kernel/mm/ksm (before, after): {changed}"
