"""/sys/kernel/mm/ksm writes as this machine's kernfs parses them, against the modern profile.

Each write goes to a knob that ``KsmKnobs`` restores, under the project's lock; run only ever
gets values that leave ksmd stopped. The bytes are written with one write(2), exactly as given
(no newline added), and the result is compared with ``k.sysfs.write()`` of a modern kernel:
the count returned (or the errno) and the value read back.
"""

from __future__ import annotations

import errno
import os

import pytest

import ksmbook as kb
from ksmbook.sysfs import KSM_DIR

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("ksm_to_ourselves")]

#: (knob, bytes of one write): NUL bytes inside, 4096 bytes and more, and the plain cases.
WRITES = [
    ("sleep_millisecs", b"33"),
    ("sleep_millisecs", b"5\0junk"),
    ("sleep_millisecs", b"7\0"),
    ("sleep_millisecs", b"44\n\0x"),
    ("sleep_millisecs", b"\0"),
    ("sleep_millisecs", b"7 \0"),
    ("sleep_millisecs", b"+45"),
    ("sleep_millisecs", b"0" * 4095 + b"9"),
    ("sleep_millisecs", b"0" * 4094 + b"41"),
    ("sleep_millisecs", b"0" * 4093 + b"12\n"),
    ("sleep_millisecs", b"0" * 4100 + b"8"),
    ("pages_to_scan", b"17\0junk"),
    ("pages_to_scan", b"0" * 5000 + b"3"),
    ("pages_to_scan", b"3" * 4096),
    ("run", b"0\0"),
    ("run", b"3\0"),
    ("run", b"0" * 4096 + b"1"),
    ("smart_scan", b"1\0zz"),
    ("smart_scan", b"\0"),
    ("smart_scan", b"0" * 4097),
    ("advisor_mode", b"none\0x"),
    ("advisor_mode", b"scan-time\0"),
    ("advisor_mode", b"none"),
    ("stable_node_chains_prune_millisecs", b"2000\0" + b"9" * 5000),
]


def _live_write(name: str, data: bytes) -> tuple[int | str, str]:
    fd = os.open(os.path.join(KSM_DIR, name), os.O_WRONLY)
    try:
        got: int | str = os.write(fd, data)
    except OSError as e:
        got = errno.errorcode[e.errno]
    finally:
        os.close(fd)
    with open(os.path.join(KSM_DIR, name)) as f:
        return got, f.read()


def _sim_write(k: kb.Kernel, name: str, data: bytes) -> tuple[int | str, str]:
    try:
        got: int | str = k.sysfs.write(name, data.decode())
    except OSError as e:
        got = errno.errorcode[e.errno or 0]
    return got, k.sysfs.read(name)


def test_writes_parse_as_kernfs_does() -> None:
    """6.18 kernfs_fop_write_iter(): one write keeps min(count, PAGE_SIZE) bytes, NUL-terminates
    them and hands that count to the store function; kstrtox and sysfs_streq() stop at the
    first NUL byte. The modern profile gives the same count, errno and value for each write."""
    from ksmbook.live import ksmd as live_ksmd

    k = kb.Kernel("modern")
    with live_ksmd.KsmKnobs():
        start = {name: live_ksmd.KsmKnobs.snapshot()[name] for name, _ in WRITES}
        for name, value in start.items():   # the simulator starts where the machine is
            k.sysfs.write(name, value)
        for name, data in WRITES:
            live = _live_write(name, data)
            sim = _sim_write(k, name, data)
            assert sim == live, f"{name} <- {data[:16]!r}... ({len(data)} bytes)"


def test_knobs_are_root_only() -> None:
    """Knobs are 0644 and counters 0444, owned by root; a write by another user is refused
    with EACCES when the file is opened."""
    k = kb.Kernel("modern")
    for name in k.sysfs:
        st = os.stat(os.path.join(KSM_DIR, name))
        assert (st.st_mode & 0o777, st.st_uid) == (k.sysfs.mode(name), 0), name
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            try:
                os.close(os.open(os.path.join(KSM_DIR, "sleep_millisecs"), os.O_WRONLY))
                os.write(w, b"opened")
            except OSError as e:
                os.write(w, errno.errorcode[e.errno].encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        got = f.read().decode()
    assert os.waitpid(pid, 0)[1] == 0
    assert got == "EACCES"
    with pytest.raises(PermissionError) as e:
        k.sysfs.write("sleep_millisecs", 20, uid=65534)
    assert e.value.errno == errno.EACCES
