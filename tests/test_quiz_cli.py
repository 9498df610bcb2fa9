"""`python -m ksmbook quiz`: seeded problem sets, answers, per-student sets."""

from __future__ import annotations

import hashlib
import hmac
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ksmbook.__main__ import main
from ksmbook.exercises import GENERATORS, QUIZ_POOLS, generator, problem_set, student_seed

# The published quizzes of seed 0: which generator and which problem seed each problem is.
QUIZ_V1_SEED_0 = ["remerge-count/v1 seed 433993408", "entry-errors/v1 seed 3121160858",
                  "ignored-count/v1 seed 1106870685", "mmap-merge/v1 seed 2184519318",
                  "mprotect-layout/v1 seed 3913091813", "partial-layout/v1 seed 4242787417"]
QUIZ_V2_SEED_0 = ["mprotect-layout/v1 seed 406259866", "entry-errors/v1 seed 1427335718",
                  "probe-guess/v1 seed 331423106", "then-now-account/v1 seed 3939483538",
                  "ksmd-cow/v1 seed 1462692759", "ksmd-max-sharing/v1 seed 716798340"]


def quiz(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["quiz", *args])
    out, err = capsys.readouterr()
    return code, out, err


def problems(out: str) -> list[str]:
    return re.findall(r"^Problem \d+  \[(.*)\]$", out, flags=re.M)


def test_published_quiz_never_changes() -> None:
    assert [e.ident for e in problem_set(0, 6, version=1)] == QUIZ_V1_SEED_0
    assert [e.ident for e in problem_set(0, 6, version=2)] == QUIZ_V2_SEED_0
    assert [e.ident for e in problem_set(0, 6)] == QUIZ_V2_SEED_0


def test_quiz_v2_covers_every_chapter(capsys: pytest.CaptureFixture[str]) -> None:
    covered = {c for g in QUIZ_POOLS[2] for c in generator(g).chapters}
    assert covered == set(range(1, 9))
    for chapter in range(1, 9):
        code, out, err = quiz(capsys, "--seed", "2", "-n", "3", "--chapter", str(chapter),
                              "--solve")
        assert code == 0 and err == "", err
        assert len(problems(out)) == 3 and out.count("Answer: ") == 3
        for p in problems(out):
            assert chapter in GENERATORS[p.split("/")[0]].chapters


def test_seed_gives_the_same_set(capsys: pytest.CaptureFixture[str]) -> None:
    code, a, err = quiz(capsys, "--seed", "3", "-n", "4")
    assert code == 0 and err == ""
    assert quiz(capsys, "--seed", "3", "-n", "4")[1] == a
    assert a.startswith("ksmbook quiz v2, seed 3: 4 problems\n")
    assert len(problems(a)) == 4 and a.count("Question:") == 4
    assert "Answer:" not in a and "Step trace" not in a
    other = quiz(capsys, "--seed", "4", "-n", "4")[1]
    assert problems(other) != problems(a)


def test_longer_set_starts_with_the_shorter(capsys: pytest.CaptureFixture[str]) -> None:
    short = problems(quiz(capsys, "--seed", "11", "-n", "3")[1])
    long = problems(quiz(capsys, "--seed", "11", "-n", "25")[1])
    assert long[:3] == short and len(long) == 25
    # Problems cycle through the whole pool before any generator comes back.
    kinds = [p.split("/")[0] for p in long]
    assert len(set(kinds[:17])) == 17


def test_solve_prints_answers_and_traces(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = quiz(capsys, "--seed", "3", "-n", "4", "--solve")
    assert code == 0 and out.count("Answer: ") == 4
    runs = out.count("Step trace; replay it with:") + out.count("The simulator's run")
    assert runs == 4
    plain = quiz(capsys, "--seed", "3", "-n", "4")[1]
    for name in problems(plain):
        assert name in out
    for ex in problem_set(3, 4):
        assert f"Answer: {ex.answer_text()}" in out


def test_student_sets_from_hmac(capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    mac = hmac.new(b"s3cret", b"ksmbook-quiz/alice", hashlib.sha256).digest()
    assert student_seed("alice", "s3cret") == int.from_bytes(mac[:8], "big")
    code, alice, _ = quiz(capsys, "--student", "alice", "--secret", "s3cret")
    assert code == 0 and alice.startswith("ksmbook quiz v2, student alice: 5 problems")
    assert "seed " + str(student_seed("alice", "s3cret")) not in alice.splitlines()[0]
    assert problems(alice) == [e.ident for e in problem_set(student_seed("alice", "s3cret"))]
    assert quiz(capsys, "--student", "alice", "--secret", "s3cret")[1] == alice
    assert problems(quiz(capsys, "--student", "bob", "--secret", "s3cret")[1]) != problems(alice)
    assert problems(quiz(capsys, "--student", "alice", "--secret", "other")[1]) != \
        problems(alice)
    monkeypatch.setenv("KSMBOOK_QUIZ_SECRET", "s3cret")
    assert quiz(capsys, "--student", "alice")[1] == alice


def test_student_without_secret_is_refused(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KSMBOOK_QUIZ_SECRET", raising=False)
    code, out, err = quiz(capsys, "--student", "alice")
    assert code == 2 and out == "" and "--secret" in err
    code, out, err = quiz(capsys, "--seed", "1", "--secret", "x")
    assert code == 2 and "only used with --student" in err
    with pytest.raises(SystemExit):
        main(["quiz", "--seed", "1", "--student", "alice", "--secret", "x"])
    assert "not allowed with" in capsys.readouterr().err


def test_help_documents_the_student_derivation(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["quiz", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for phrase in ("--student ID --secret S", "HMAC-SHA256", "KSMBOOK_QUIZ_SECRET", "--solve",
                   "--replay"):
        assert phrase in out


def test_profile_chapter_and_count(capsys: pytest.CaptureFixture[str]) -> None:
    out = quiz(capsys, "--seed", "5", "-n", "3", "--profile", "modern")[1]
    assert out.count("Kernel: Linux 6.x") == 3
    out = quiz(capsys, "--seed", "5", "-n", "20", "--profile", "2.6.32")[1]
    assert out.count("Kernel: Linux 2.6.32") == 20
    # Only problems that run on the seed kernel (no ksmd there).
    out = quiz(capsys, "--seed", "5", "-n", "30", "--profile", "seed")[1]
    assert out.count("kernel seed ksm=") == 30 and "ksmd" not in "".join(problems(out))
    out = quiz(capsys, "--seed", "5", "-n", "6", "--chapter", "5")[1]
    assert {p.split("/")[0] for p in problems(out)} == {"fork-layout", "fork-mmf", "fork-count"}
    out = quiz(capsys, "--seed", "5", "-n", "4", "--chapter", "1", "--chapter", "6")[1]
    assert all(6 in GENERATORS[p.split("/")[0]].chapters
               or 1 in GENERATORS[p.split("/")[0]].chapters for p in problems(out))
    code, _, err = quiz(capsys, "--seed", "5", "-n", "0")
    assert code == 2 and "at least one problem" in err
    code, _, err = quiz(capsys, "--chapter", "7", "--quiz-version", "1")
    assert code == 2 and "no quiz problems" in err
    code, _, err = quiz(capsys, "--chapter", "7", "--profile", "seed")
    assert code == 2 and "no quiz problems for chapters (7,) on the seed kernel" in err


def test_replay_a_scenario_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "s.txt"
    f.write_text("kernel 2.6.32 ksm=y\nmap A 8p rw private anon\nmadvise A+2p 4p MERGEABLE\n")
    code, out, _ = quiz(capsys, "--replay", str(f), "--ask", "layout", "--solve")
    assert code == 0 and "Kernel: Linux 2.6.32" in out
    assert "Answer: [(0, 2, ''), (2, 6, 'mg'), (6, 8, '')]" in out
    out = quiz(capsys, "--replay", str(f), "--ask", "vmas", "--solve", "--profile", "modern")[1]
    assert "Answer: 3" in out and "kernel modern ksm=y" in out
    out = quiz(capsys, "--replay", str(f), "--ask", "advice")[1]
    assert "madvise A+2p 4p ???" in out
    f.write_text("map A 8p rw private anon\nmunmap A 8p\n")
    code, _, err = quiz(capsys, "--replay", str(f), "--ask", "advice")
    assert code == 2 and "ends with madvise" in err
    f.write_text("map A 8p rw private anon\nmadvise B 1p MERGEABLE\n")
    code, _, err = quiz(capsys, "--replay", str(f))
    assert code == 2 and "no mapping labelled 'B'" in err
    code, _, err = quiz(capsys, "--replay", str(tmp_path / "missing.txt"))
    assert code == 2 and "missing.txt" in err


@pytest.mark.slow
def test_module_entry_point() -> None:
    done = subprocess.run([sys.executable, "-m", "ksmbook", "quiz", "--seed", "1", "-n", "1",
                           "--solve"], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ksmbook quiz v2, seed 1: 1 problem with answers")
    assert "Answer: " in done.stdout


def test_replay_asks_ksmd_counters(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--ask counters runs a scenario's ksmd statements through the runner, ksmd running."""
    f = tmp_path / "k.txt"
    f.write_text("kernel modern ksm=y\nmap A 4p rw private anon\nwrite A 1 1 2 3\n"
                 "madvise A 4p MERGEABLE\nksmd scan 2\n")
    code, out, err = quiz(capsys, "--replay", str(f), "--ask", "counters", "--solve")
    assert code == 0 and err == ""
    assert "    write A 1 1 2 3\n" in out and "sysfs run=1" in out
    # Two equal pages make one KSM page shared twice; the other two wait in the unstable tree.
    assert "Answer: (1, 1, 2, 0)" in out
    code, out, _ = quiz(capsys, "--replay", str(f), "--ask", "counters", "--profile", "2.6.32",
                        "--solve")
    assert code == 0 and "Kernel: Linux 2.6.32" in out and "Answer: (1, 1, 2, 0)" in out
    f.write_text("map A 4p rw private anon\nksmd scan 1\n")
    code, _, err = quiz(capsys, "--replay", str(f), "--ask", "counters")
    assert code == 2 and "seed kernel has no ksmd" in err
    f.write_text("kernel modern ksm=y\nwrite B 1\n")
    code, _, err = quiz(capsys, "--replay", str(f), "--ask", "counters")
    assert code == 2 and "no mapping labelled 'B'" in err
