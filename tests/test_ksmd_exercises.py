"""The exercises of chapters 7, 8 and 9 (ksmbook.exercises.ksmd and .thp): published problems
never change, every answer is what the simulator computes (checked here against an independent
path through the model, and for chapter 9 against the live kernel), the steps are scenario
statements that `python -m ksmbook run` replays, and check/hint/solution behave as in the other
chapters."""

from __future__ import annotations

import io
import random
import re
from typing import TypeVar

import pytest

import ksmbook as kb
from ksmbook.__main__ import main
from ksmbook.exercises import (
    GENERATORS,
    VERSIONS,
    KsmdProblem,
    Problem,
    chapter_exercises,
    generate,
)
from ksmbook.experiment import predict
from ksmbook.scenario import KsmdScans, Madvise, Map, Prctl, SysfsWrite, Write, parse

#: The first step of a chapter 9 problem, up to its advice.
HUGE = "p1: mmap 2 MiB at a 2 MiB boundary (512 pages), "
#: The published problems (seed 0 sets): their steps and answers. Never edit: a changed
#: generator gets a new version.
GOLDEN = {
    7: [
        ("ksmd-mix/v1 seed 0", ["p1: mmap 4 pages, write [B B B B], madvise(MADV_MERGEABLE)",
                                "p2: mmap 4 pages, write [B B B B], madvise(MADV_MERGEABLE)",
                                "ksmd: 1 full scan"], "(0, 0, 0, 8)"),
        ("ksmd-mix/v1 seed 6", ["p1: mmap 4 pages, write [C C A B], madvise(MADV_MERGEABLE)",
                                "p2: mmap 3 pages, write [A C A], madvise(MADV_MERGEABLE)",
                                "ksmd: 2 full scans"], "(2, 4, 1, 0)"),
        ("ksmd-cow/v1 seed 0", ["p1: mmap 2 pages, write [A B], madvise(MADV_MERGEABLE)",
                                "p2: mmap 1 page, write [A], madvise(MADV_MERGEABLE)",
                                "ksmd: 2 full scans", "p1: write J to its page 0",
                                "ksmd: 1 full scan"], "(0, 0, 1, 2)"),
        ("ksmd-cow/v1 seed 0", ["p1: mmap 2 pages, write [A B], madvise(MADV_MERGEABLE)",
                                "p2: mmap 1 page, write [A], madvise(MADV_MERGEABLE)",
                                "ksmd: 2 full scans", "p1: write J to its page 0",
                                "ksmd: 1 full scan"], "(1, 0, 1, 1)"),
        ("ksmd-max-sharing/v1 seed 2", ["echo 2 > /sys/kernel/mm/ksm/max_page_sharing",
                                        "p1: mmap 7 pages, write [A A A A A A A], "
                                        "madvise(MADV_MERGEABLE)", "ksmd: 2 full scans"],
         "(3, 3, 1, 1, 3)"),
        ("ksmd-profit/v1 seed 0", ["echo 1 > /sys/kernel/mm/ksm/use_zero_pages",
                                   "p1: mmap 8 pages, write [A A 0 A B A B A], "
                                   "madvise(MADV_MERGEABLE)", "ksmd: 2 full scans"], "24064"),
        ("ksmd-smart-scan/v1 seed 1", ["p1: mmap 3 pages, write [A B C], madvise(MADV_MERGEABLE)",
                                       "ksmd: 7 full scans"], "(0, 3, 6)"),
    ],
    8: [
        ("slow-writes/v1 seed 0", ["victim: mmap 3 pages, write [A B C], madvise(MADV_MERGEABLE)",
                                   "attacker: mmap 4 pages, write [C D . A], "
                                   "madvise(MADV_MERGEABLE)", "attacker: fork() -> child",
                                   "ksmd: 2 full scans", "(a) attacker: write K to its page 1",
                                   "(b) attacker: write L to its page 2",
                                   "(c) attacker: write M to its page 0",
                                   "(d) attacker: write N to its page 3"], "c d"),
        ("probe-guess/v1 seed 7", ["victim: mmap 2 pages, write [B G], madvise(MADV_MERGEABLE)",
                                   "attacker: probe [A B C D E F]: mmap, write the guesses, "
                                   "madvise, ksmd makes 2 full scans, then time a write to each"],
         "B"),
        ("probe-guess/v1 seed 1", ["victim: mmap 2 pages, write [E G] (no madvise)",
                                   "victim: prctl(PR_SET_MEMORY_MERGE, 1)",
                                   "attacker: probe [A B C D E F]: mmap, write the guesses, "
                                   "madvise, ksmd makes 2 full scans, then time a write to each"],
         "E"),
        ("probe-guess/v1 seed 0", ["victim: mmap 2 pages, write [C G] (no madvise)",
                                   "attacker: probe [A B C D E F]: mmap, write the guesses, "
                                   "madvise, ksmd makes 2 full scans, then time a write to each"],
         "none"),
        ("probe-scans/v1 seed 0", ["victim: mmap 1 page, write [A], madvise(MADV_MERGEABLE)",
                                   "ksmd: 6 full scans",
                                   "attacker: probe [A B C]: mmap, write the guesses, madvise, "
                                   "ksmd makes some full scans, then time a write to each"], "3"),
    ],
    9: [
        ("ksmd-thp/v1 seed 13", [HUGE + "madvise(MADV_HUGEPAGE), madvise(MADV_MERGEABLE); write A "
                                 "to page 39, A to page 296", "ksmd: 1 full scan"],
         "(0, 0, 0, 512)"),
        ("ksmd-thp/v1 seed 22", [HUGE + "madvise(MADV_HUGEPAGE), madvise(MADV_MERGEABLE); write A "
                                 "to page 296, A to page 443", "ksmd: 3 full scans"],
         "(1, 1, 0, 0)"),
        ("ksmd-thp/v1 seed 1", [HUGE + "madvise(MADV_HUGEPAGE), madvise(MADV_MERGEABLE); write A "
                                "to page 118, A to page 317, A to page 409", "ksmd: 2 full scans"],
         "(0, 0, 1, 4)"),
        ("ksmd-thp/v1 seed 5", [HUGE + "madvise(MADV_NOHUGEPAGE), madvise(MADV_MERGEABLE); write A "
                                "to page 61, A to page 247, A to page 353, A to page 451",
                                "p2: mmap 2 pages, write [A A], madvise(MADV_MERGEABLE)",
                                "ksmd: 1 full scan"], "(0, 0, 0, 6)"),
    ],
}


S = TypeVar("S")


def statements(ex: KsmdProblem, kind: type[S]) -> list[S]:
    """The statements of type `kind` that the problem runs, in order."""
    return [op for op in ex.scenario.ops if isinstance(op, kind)]


def shown_steps(ex: KsmdProblem) -> list[str]:
    """The step lines the question shows."""
    lines = ex.text().split("Steps (", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    return [line.strip() for line in lines]


#: The ksmd generators.
KSMD = sorted(n for n, g in GENERATORS.items() if set(g.chapters) & {7, 8} and g.kernel != "seed")


@pytest.mark.parametrize("chapter", [7, 8, 9])
def test_published_problems_never_change(chapter: int) -> None:
    exercises = chapter_exercises(chapter)
    got = [(e.ident, shown_steps(e), e.answer_text()) for e in exercises]
    assert got == GOLDEN[chapter]
    assert [e.title for e in exercises] == [f"Exercise {chapter}.{n}"
                                            for n in range(1, len(exercises) + 1)]


def test_every_ksmd_generator_is_pinned() -> None:
    pinned = {ident.split(" ")[0] for chapter in GOLDEN.values() for ident, _, _ in chapter}
    assert pinned == {ident for ident in VERSIONS if isinstance(generate(ident, 0), KsmdProblem)}


def test_other_seeds_give_other_problems_the_same_way() -> None:
    for name in KSMD:
        a, b = generate(name, 11), generate(name, 11)
        assert a.text() == b.text() and a.answer == b.answer
    texts = {generate("ksmd-mix", s).text() for s in range(8)}
    assert len(texts) > 4
    assert [e.text() for e in chapter_exercises(7, seed=3)] == \
        [e.text() for e in chapter_exercises(7, seed=3)]


def test_counter_answers_agree_with_predict() -> None:
    """ksmd-mix answers against ksmbook.experiment.predict (a separate path through the model)."""
    for seed in range(10):
        ex = generate("ksmd-mix", seed)
        maps = [list(w.values) for w in statements(ex, Write)]
        scans = statements(ex, KsmdScans)[0].count
        got = predict(None, processes=maps, scans=scans)
        assert ex.answer == tuple(got[f] for f in ex.fields), seed


def test_cow_differs_between_kernels() -> None:
    old, new = generate("ksmd-cow", 0, "2.6.32"), generate("ksmd-cow", 0, "modern")
    assert old.answer[:2] == (0, 0) and new.answer[:2] == (1, 0)


def test_max_sharing_answer_is_the_qr_rule() -> None:
    for seed in range(10):
        ex = generate("ksmd-max-sharing", seed)
        m = int(statements(ex, SysfsWrite)[1].value)  # after run=1
        n = statements(ex, Map)[0].length // kb.PAGE_SIZE
        q, r = divmod(n, m)
        nodes = q + (r >= 2)
        assert ex.answer == (nodes, n - nodes - (r == 1), int(r == 1),
                             int(nodes >= 2), nodes if nodes >= 2 else 0), seed


def test_slow_writes_are_the_cow_faults_of_ksm_pages() -> None:
    ex = generate("slow-writes", 0)
    assert ex.run.faults == {"a": "cow", "b": "first-touch", "c": "cow-ksm", "d": "cow-ksm"}


def test_probe_guess_follows_the_victims_choice() -> None:
    for seed in range(12):
        ex = generate("probe-guess", seed)
        victim = statements(ex, Write)[0].values
        offered = any(op.proc == "victim" for op in statements(ex, Madvise)) \
            or bool(statements(ex, Prctl))
        expected = ("ABCDEF"[victim[0] - 1],) if offered else ()
        assert ex.answer == expected, seed


def test_grading() -> None:
    ex = chapter_exercises(7)[1]                       # (2, 4, 1, 0)
    assert ex.grade(...).status == "unattempted"
    for good in ((2, 4, 1, 0), [2, 4, 1, 0], "2 4 1 0", "(2, 4, 1, 0)",
                 {"shared": 2, "sharing": 4, "unshared": 1, "volatile": 0},
                 {"pages_shared": 2, "pages_sharing": 4, "pages_unshared": 1,
                  "pages_volatile": 0}):
        assert ex.grade(good).correct is True, good
    wrong = ex.grade((2, 6, 1, 0))
    assert wrong.correct is False and "pages_sharing" in wrong.message
    for bad in ("two", (1, 2), {"shared": 1}, 3.5, True, "__import__('os')"):
        assert ex.grade(bad).status == "unreadable", bad
    choice = chapter_exercises(8)[0]                   # c d
    assert choice.grade("c d").correct and choice.grade(["d", "c"]).correct
    assert choice.grade("C,D").correct
    assert choice.grade("a c").correct is False
    assert choice.grade("z").status == "unreadable"
    none = chapter_exercises(8)[3]
    assert none.grade("none").correct and none.grade([]).correct
    assert none.grade("B").correct is False
    assert chapter_exercises(7)[5].grade(24064).correct
    assert chapter_exercises(7)[5].grade("-64").correct is False


def test_check_hint_solution_print(capsys: pytest.CaptureFixture[str]) -> None:
    ex = chapter_exercises(7)[2]
    ex.check(...)
    assert capsys.readouterr().out.startswith("Not answered yet")
    ex.check((0, 0, 1, 2))
    assert capsys.readouterr().out.startswith("Correct.")
    hints = []
    for _ in range(len(ex.hints()) + 1):
        ex.hint()
        hints.append(capsys.readouterr().out)
    assert hints[0].startswith("Hint 1/") and "last hint" in hints[-1]
    ex.solution()
    out = capsys.readouterr().out
    assert out.startswith("Answer: (0, 0, 1, 2)")
    assert "stable tree:" in out and "counters:" in out


def test_features_a_kernel_lacks_are_refused_clearly() -> None:
    for name, knob in (("ksmd-max-sharing", "max_page_sharing"),
                       ("ksmd-profit", "use_zero_pages"), ("ksmd-smart-scan", "smart_scan")):
        with pytest.raises(ValueError, match=f"needs /sys/kernel/mm/ksm/{knob}, which the "
                                             "2.6.32 kernel does not have"):
            generate(name, 0, "2.6.32")
    with pytest.raises(ValueError, match="/run, which the seed kernel does not have"):
        chapter_exercises(7, profile="seed")
    assert all(e.profile == "2.6.32" for e in
               [generate("ksmd-mix", 0, "2.6.32"), generate("probe-guess", 1, "2.6.32")])


def test_random_answers_never_crash() -> None:
    rng = random.Random(0)
    junk: list[object] = [None, ..., 0, -1, "", " ", "none", "a", [1], (1, 2, 3, 4, 5), {},
                          {"x": 1}, 1.5, object(), "9" * 40]
    for chapter in (7, 8):
        for ex in chapter_exercises(chapter):
            assert isinstance(ex, KsmdProblem) and isinstance(ex, Problem)
            for answer in junk + [rng.randrange(-5, 50) for _ in range(5)]:
                assert ex.grade(answer).status in ("correct", "incorrect", "unreadable",
                                                   "unattempted")


def test_the_exercise_kernel_is_the_book_kernel() -> None:
    ex = chapter_exercises(8)[0]
    assert isinstance(ex.run.kernel, kb.Kernel) and ex.run.kernel.profile.name == "modern"


@pytest.mark.parametrize("chapter", [7, 8, 9])
def test_the_solution_replays_through_the_scenario_runner(
        chapter: int, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The statements the solution prints are the problem's own, and `python -m ksmbook run`
    replays them to the same counters."""
    for ex in chapter_exercises(chapter):
        text = ex.solution_text()
        m = re.search(r"^    python -m ksmbook run - <<'EOF'\n(.*?)^    EOF$", text,
                      flags=re.M | re.S)
        assert m is not None, ex.ident
        script = "".join(line.removeprefix("    ") + "\n" for line in m.group(1).splitlines())
        assert parse(script) == ex.scenario
        monkeypatch.setattr("sys.stdin", io.StringIO(script))
        assert main(["run", "-"]) == 0
        out = capsys.readouterr().out
        printed = re.findall(r"pages_shared=(\d+) pages_sharing=(\d+)", out)[-1]
        steps = ex.run_steps()
        last_scan = max(i for i, step in enumerate(steps)
                        if any(isinstance(op, KsmdScans) for op in step.statements))
        counters = ex.run.after[last_scan]
        assert printed == (str(counters["pages_shared"]), str(counters["pages_sharing"]))


def test_huge_page_problems_need_thp() -> None:
    with pytest.raises(ValueError, match="ksmd-thp needs transparent huge pages, which the "
                                         "2.6.32 kernel does not have"):
        generate("ksmd-thp", 0, "2.6.32")
    with pytest.raises(ValueError, match="transparent huge pages"):
        chapter_exercises(9, profile="2.6.32")


def test_huge_page_first_pass_counts_every_subpage() -> None:
    """After one full scan every present page is volatile: all 512 subpages of a huge page (a
    MADV_HUGEPAGE range in THP mode madvise), only the written pages of a range without it."""
    seen = set()
    for seed in range(40):
        ex = generate("ksmd-thp", seed)
        if statements(ex, KsmdScans)[0].count != 1:
            continue
        huge = any(op.advice == kb.MADV_HUGEPAGE for op in statements(ex, Madvise))
        p2 = sum(len(w.values) for w in statements(ex, Write) if w.proc == "p2")
        p1 = 512 if huge else len([w for w in statements(ex, Write) if w.proc == "p1"])
        assert ex.answer == (0, 0, 0, p1 + p2), seed
        seen.add(huge)
    assert seen == {True, False}


@pytest.mark.live
@pytest.mark.usefixtures("ksm_to_ourselves")
def test_huge_page_answers_are_the_live_kernels() -> None:
    """Chapter 9's problems and those of 24 more seeds, replayed on this machine's kernel (THP
    mode madvise, ksmd stepped batch by batch): the counters after the last scan are the
    answer. A run during which khugepaged collapsed pages is skipped, not compared."""
    from test_thp import _collapsed, _host_thp_mode

    from ksmbook.live.replay import replay

    if _host_thp_mode() != "madvise":
        pytest.skip("the problems are written for THP mode madvise (this machine's)")
    collapsed = _collapsed()
    for ex in [*chapter_exercises(9), *(generate("ksmd-thp", s) for s in range(100, 124))]:
        live = [r.counters for r in replay(ex.scenario, ksmd=True, maps=False)
                if r.counters is not None][-1]
        assert tuple(live[f] for f in ex.fields) == ex.answer, ex.ident
    if _collapsed() != collapsed:
        pytest.skip("khugepaged collapsed pages during the check (pid-agnostic counter)")
