"""The scenario Runner's backend contract (ksmbook.backend): the Runner uses nothing else.

mypy checks that the simulator and the live kernel fit the Protocols (``make typecheck``;
pyproject.toml forbids Any in the contract, the Runner and the live replay). These tests check
what mypy does not: that the Runner reads no private state of a backend, that nothing there
silences the type checker, and that a file of one backend is a bad descriptor to the other.
"""

from __future__ import annotations

import ast
import errno
from pathlib import Path

import pytest

import ksmbook as kb
from ksmbook.live.harness import LiveFile

PACKAGE = Path(kb.__file__).resolve().parent
CONTRACT = ("backend.py", "scenario.py", "live/replay.py")


def _runner_classes() -> list[ast.ClassDef]:
    out = []
    for name in ("scenario.py", "live/replay.py"):
        tree = ast.parse((PACKAGE / name).read_text())
        out += [n for n in tree.body if isinstance(n, ast.ClassDef) and "Runner" in n.name]
    return out


def test_the_runner_reads_no_private_state() -> None:
    """No ``x._name`` in the Runners except on ``self`` (``self.k.ksmd.ks`` was one)."""
    classes = _runner_classes()
    assert {c.name for c in classes} == {"Runner", "LiveRunner"}
    private = []
    for cls in classes:
        for node in ast.walk(cls):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__") \
                    and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                private.append(f"{cls.name}: {ast.unparse(node)}")
            if isinstance(node, ast.Attribute) and node.attr == "ks":
                private.append(f"{cls.name}: {ast.unparse(node)}")
    assert private == []


@pytest.mark.parametrize("name", CONTRACT)
def test_no_any_and_no_type_ignore_in_the_contract(name: str) -> None:
    text = (PACKAGE / name).read_text()
    assert "type: ignore" not in text
    tree = ast.parse(text)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert "Any" not in names and "cast" not in names


def test_a_file_of_another_backend_is_a_bad_descriptor() -> None:
    k = kb.Kernel("modern")
    p = k.spawn()
    with pytest.raises(OSError) as e:
        p.mmap(kb.PAGE_SIZE, kb.PROT_READ, kb.MAP_PRIVATE, file=LiveFile("/tmp/x", True))
    assert e.value.errno == errno.EBADF
    f = k.create_file("data.bin", 4 * kb.PAGE_SIZE)
    assert p.mmap(kb.PAGE_SIZE, kb.PROT_READ, kb.MAP_PRIVATE, file=f) > 0


def test_processes_give_their_maps_and_ksm_stat() -> None:
    """map_entries() and ksm_stat() are what the Runner reads of a simulated process."""
    k = kb.Kernel("modern")
    p = k.spawn()
    a = p.mmap(2 * kb.PAGE_SIZE, kb.PROT_READ | kb.PROT_WRITE,
               kb.MAP_PRIVATE | kb.MAP_ANONYMOUS)
    p.madvise(a, 2 * kb.PAGE_SIZE, kb.MADV_MERGEABLE)
    assert [(e.start, e.end, "mg" in e.vmflags) for e in p.map_entries()] == \
        [(a, a + 2 * kb.PAGE_SIZE, True)]
    assert p.ksm_stat()["ksm_mergeable"] == "yes"
    with pytest.raises(FileNotFoundError):
        kb.Kernel("2.6.32").spawn().ksm_stat()
