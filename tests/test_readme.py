"""The README's examples are run as written, so that they keep matching the simulator."""

from __future__ import annotations

import contextlib
import doctest
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_examples() -> None:
    result = doctest.testfile(str(README), module_relative=False,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 5
    assert result.failed == 0


@pytest.mark.slow
def test_readme_shell_examples() -> None:
    text = README.read_text()
    blocks = re.findall(r"```console\n\$ printf '(.*?)' \| python -m ksmbook run -\n(.*?)```",
                        text, re.S)
    assert len(blocks) >= 2
    for printed, expected in blocks:
        script = printed.encode().decode("unicode_escape")
        out = subprocess.run([sys.executable, "-m", "ksmbook", "run", "-"], input=script,
                             capture_output=True, text=True, check=True).stdout
        assert out == expected


def test_readme_starts_with_the_two_commands() -> None:
    lines = [line for line in README.read_text().splitlines() if line.strip()][:4]
    assert any("make lab" in line for line in lines)
    assert any("make test" in line for line in lines)


@pytest.mark.live
def test_readme_live_example(live_kernel: None) -> None:
    """The example that runs a scenario on the simulator and on this machine prints what the
    README shows."""
    code, expected = re.search(r"```python\n(from ksmbook import live, scenario\n.*?)```\n\n"
                               r"```text\n(.*?)```", README.read_text(), re.S).groups()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, {})
    assert out.getvalue() == expected
