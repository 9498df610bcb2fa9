"""``python -m ksmbook run FILE|-``: the printed steps, --maps, --trace, --profile, --no-ksm,
and exit code 2 with line and column for a bad scenario."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from ksmbook.__main__ import main

SCENARIO = "map A 8p rw private anon\nmadvise A+2p 4p MERGEABLE\n"


def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
            args: list[str], stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_run_from_stdin(capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = run_cli(capsys, monkeypatch, ["run", "-"], SCENARIO)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "# 2.6.32-rc, seed commit f8af4da3b4c1 (dummy mm/ksm.c), CONFIG_KSM=y"
    assert lines[1].split() == ["map", "A", "8p", "rw", "private", "anon", "=", "0x7ffff7ff7000"]
    assert lines[2].split() == ["madvise", "A+2p", "4p", "MERGEABLE", "=", "0"]
    assert len(lines) == 3


def test_run_from_a_file_with_maps(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "s.ksm"
    f.write_text(SCENARIO)
    code, out, _ = run_cli(capsys, monkeypatch, ["run", str(f), "--maps"])
    assert code == 0
    maps = [ln.strip() for ln in out.splitlines() if ln.startswith("    7ff")]
    assert len(maps) == 1 + 3
    assert maps[2].startswith("7ffff7ff9000-7ffff7ffd000 rw-p 00000000 00:00 0")
    assert maps[2].endswith("VmFlags: rd wr mr mw me ac mg")
    assert out.count("  [p1]") == 2


def test_run_with_trace(capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run_cli(capsys, monkeypatch, ["run", "-", "--trace"], SCENARIO)
    assert code == 0
    for fn in ("sys_madvise", "madvise_vma", "ksm_madvise", "__ksm_enter", "split_vma"):
        assert f" {fn}" in out
    assert out.count("split_vma: at") == 2


def test_profile_and_no_ksm_options(capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run_cli(capsys, monkeypatch, ["run", "-", "--profile", "modern", "--trace"],
                           SCENARIO)
    assert code == 0 and out.startswith("# Linux 6.") and "do_madvise" in out
    code, out, _ = run_cli(capsys, monkeypatch, ["run", "-", "--no-ksm"], SCENARIO)
    assert code == 0 and "CONFIG_KSM=n" in out.splitlines()[0]
    assert out.splitlines()[2].endswith("= -1 EINVAL")


def test_the_kernel_line_of_the_scenario_is_used(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run_cli(capsys, monkeypatch, ["run", "-"], "kernel 2.6.32\n" + SCENARIO)
    assert code == 0 and out.startswith("# Linux 2.6.32")


@pytest.mark.parametrize(("text", "where"), [
    ("map A 8p rw private\n", "line 1, column 20"),
    ("map A 8p rw private anon\nmadvise A 4p MERGABLE\n", "line 2, column 14"),
    ("map A 8p rw private anon\nmadvise B 4p MERGEABLE\n", "line 2"),
])
def test_bad_scenarios_exit_2_with_line_and_column(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        text: str, where: str) -> None:
    code, out, err = run_cli(capsys, monkeypatch, ["run", "-"], text)
    assert code == 2 and out == ""
    assert err.startswith(f"-: {where}") and "Traceback" not in err


@pytest.mark.parametrize("content", [None, b"\xff\xfe not text"])
def test_unreadable_files_exit_2_with_a_message(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        content: bytes | None) -> None:
    f = tmp_path / "s.ksm"
    if content is not None:
        f.write_bytes(content)
    code, _, err = run_cli(capsys, monkeypatch, ["run", str(f)])
    assert code == 2 and err.startswith(f"{f}: ")


@pytest.mark.slow
def test_the_module_runs_as_a_program(tmp_path: Path) -> None:
    """One real subprocess: `python -m ksmbook` wiring and exit codes."""
    bad = subprocess.run([sys.executable, "-m", "ksmbook", "run", "-"], input="bogus\n",
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    message = bad.stderr.strip()
    assert message.startswith("-: line 1, column 1: unknown statement 'bogus' (one of: map, ")
    assert message.endswith(")") and "\n" not in message
    listed = message.split("(one of: ")[1].rstrip(")").split(", ")
    assert {"map", "munmap", "mprotect", "madvise", "write", "read", "fork", "exit", "prctl",
            "kernel", "sysctl", "file", "device", "inject", "spawn", "ksmd", "sysfs"} <= set(listed)
    good = subprocess.run([sys.executable, "-m", "ksmbook", "run", "-", "--maps"],
                          input=SCENARIO, capture_output=True, text=True, timeout=60)
    assert good.returncode == 0 and "VmFlags: rd wr mr mw me ac mg" in good.stdout


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["run"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["run", "-", "--profile", "3.0"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_ksmd_statements_print_the_counters(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    text = ("kernel modern\nmap A 3p rw private anon\nwrite A 4 4 4\nmadvise A 3p MERGEABLE\n"
            "sysfs run=1\nksmd scan 2\n")
    code, out, err = run_cli(capsys, monkeypatch, ["run", "-"], text)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[-4].split() == ["sysfs", "run=1", "=", "0"]
    assert lines[-2].split() == ["ksmd", "scan", "2", "=", "6"]
    counters = dict(word.split("=") for word in lines[-1].split())
    assert (counters["full_scans"], counters["pages_shared"], counters["pages_sharing"]) == (
        "2", "1", "2")
    code, out, err = run_cli(capsys, monkeypatch, ["run", "-"], "ksmd batch\n")
    assert code == 2 and out == "" and "line 1, column 1: the seed kernel" in err
    assert "has no ksmd" in err
