"""The conftest's own checks: a live fixture without the live mark stops the run; the
browser, nbgrader and hub modules are marked by file name (what ``make test-fast`` leaves
out)."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py").read_text()


def test_a_live_fixture_without_the_live_mark_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_x="""
        import pytest

        @pytest.fixture
        def through(live_kernel):
            return live_kernel

        def test_direct(live_ksmd):
            pass

        def test_indirect(through):
            pass

        @pytest.mark.live
        def test_marked(live_kernel):
            pass
    """)
    result = pytester.runpytest_inprocess("--collect-only", "-q", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*must be marked @pytest.mark.live*",
                                 "*test_x.py::test_direct (uses live_kernel, live_ksmd)*",
                                 "*test_x.py::test_indirect (uses live_kernel)*"])
    assert "test_marked" not in result.stderr.str()


def test_modules_are_marked_by_kind(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    # (No test_browser.py here: in-process, it would clash with the real module of that name.)
    for name in ("test_hub_spawn", "test_grading_secret", "test_plain"):
        pytester.makepyfile(**{name: "def test_one():\n    pass\n"})
    result = pytester.runpytest_inprocess(
        "-q", "-p", "no:cacheprovider", "-m", "not (live or browser or nbgrader or hub or slow)")
    result.assert_outcomes(passed=1, deselected=2)
