"""ksmbook.exercises: seeded generators, answer parsing, check/hint/solution, chapter sets."""

from __future__ import annotations

import ast
import errno
import io
import random
import re
from pathlib import Path

import pytest

import ksmbook as kb
from ksmbook.__main__ import main
from ksmbook.exercises import (
    BASE,
    CHAPTER_SETS,
    CHAPTERS,
    GENERATORS,
    VERSIONS,
    AdviceProblem,
    AnswerError,
    CountProblem,
    LayoutEntry,
    LayoutProblem,
    Problem,
    ResultProblem,
    ScenarioProblem,
    chapter_exercises,
    generate,
)
from ksmbook.exercises.answers import (
    format_layout,
    parse_advice,
    parse_count,
    parse_layout,
    parse_result,
    parse_yesno,
)
from ksmbook.procfs import format_maps
from ksmbook.scenario import Madvise, Map, format_scenario, run
from ksmbook.trace import Fail, Kind

# Published problems: these scenarios must never change for these seeds. A generator whose
# output has to change gets a new version (or name); it does not edit these lines.
GOLDEN_SEED_0 = {
    "warmup/v1": "map A 6p rw private anon at 0x10000000 fixed\nmadvise A+4p 1p MERGEABLE\n",
    "mmap-merge/v1": "map A 3p r private anon at 0x10000000 fixed\nmap B 3p rw private anon at "
                  "A+3p fixed\nmap C 4p rw private anon at A+7p fixed\nmap D 3p rw private "
                  "anon at A+11p fixed\n",
    "mprotect-layout/v1": "map A 6p rw private anon at 0x10000000 fixed\nmprotect A+3p 2p r\n"
                       "mprotect A+3p 3p none\n",
    "munmap-count/v1": "map A 4p rw private anon at 0x10000000 fixed\nmunmap A+2p 1p\nmap B 1p rw "
                    "private anon at A+2p fixed\n",
    "hole-result/v1": "map A 2p rw private anon at 0x10000000 fixed\nmap B 5p rw private anon at "
                   "A+3p fixed\nmadvise A+1p 2p MERGEABLE\n",
    "split-layout/v1": "map A 5p rw private anon at 0x10000000 fixed\nmadvise A 4p MERGEABLE\n",
    "split-count/v1": "map A 10p rw private anon at 0x10000000 fixed\nmadvise A+5p 1p MERGEABLE\n",
    "remerge-count/v1": "map A 8p rw private anon at 0x10000000 fixed\nmadvise A+1p 6p MERGEABLE\n"
                     "madvise A+2p 5p UNMERGEABLE\n",
    "reverse-advice/v1": "map A 7p rw private anon at 0x10000000 fixed\nmadvise A+1p 2p RANDOM\n"
                      "madvise A+1p 4p RANDOM\n",
    "ignored-count/v1": "map A 4p rw private anon at 0x10000000 fixed\nmap S 5p rw shared anon at "
                     "A+4p fixed\nmadvise A+1p 5p MERGEABLE\n",
    "mmf-flag/v1": "map A 3p rw private anon at 0x10000000 fixed\nmadvise A 3p UNMERGEABLE\n"
                "madvise A 3p DONTFORK\n",
    "repeat-splits/v1": "map A 7p rw private anon at 0x10000000 fixed\nmadvise A+5p 1p MERGEABLE\n"
                     "madvise A+5p 2p MERGEABLE\n",
    "entry-errors/v1": "map A 2p rw private anon at 0x10000000 fixed\nmadvise A+512 1p MERGEABLE\n",
    "partial-layout/v1": "map A 2p rw private anon at 0x10000000 fixed\nmap B 3p rw private anon "
                      "at A+4p fixed\nmadvise A 5p MERGEABLE\n",
    "eagain/v1": "map A 8p rw private anon at 0x10000000 fixed\nsysctl max_map_count=1\n"
              "madvise A 8p MERGEABLE\n",
    "eagain/v2": "map A 7p rw private anon at 0x10000000 fixed\nsysctl max_map_count=1\n"
                 "madvise A 7p MERGEABLE\n",
    "fork-layout/v1": "map A 7p rw private anon at 0x10000000 fixed\nmadvise A 3p DONTFORK\n"
                   "madvise A+4p 2p MERGEABLE\nfork child\n",
    "fork-mmf/v1": "map A 8p rw private anon at 0x10000000 fixed\nmap S 2p rw shared anon at A+9p "
                "fixed\nmadvise S 2p MERGEABLE\nfork child\n",
    "fork-count/v1": "map A 6p rw private anon at 0x10000000 fixed\nmadvise A+2p 4p DONTFORK\n"
                  "madvise A+3p 1p MERGEABLE\nfork child\n",
    "then-now-willneed/v1": "map A 3p rw private anon at 0x10000000 fixed\nmadvise A+2p 1p "
                         "WILLNEED\n",
    "then-now-free/v1": "map A 7p rw private anon at 0x10000000 fixed\nmadvise A+6p 1p FREE\n",
    "then-now-account/v1": "map A 5p rw private anon at 0x10000000 fixed\nmprotect A 5p r\n"
                        "map B 2p r private anon at A+5p fixed\n",
}


#: Every version of every generator of a scenario problem (chapters 0-6).
SCENARIO_GENERATORS = sorted(g for g in VERSIONS if g in GOLDEN_SEED_0)
#: The latest versions of those.
LATEST = sorted(n for n, g in GENERATORS.items() if g.ident in GOLDEN_SEED_0)


def body(ex: ScenarioProblem) -> str:
    """The scenario without its kernel line."""
    return format_scenario(ex.scenario).split("\n", 1)[1]


# -- generators: seeded, versioned, replayable ------------------------------------------------

@pytest.mark.parametrize("name", sorted(GOLDEN_SEED_0))
def test_published_problems_never_change(name: str) -> None:
    assert body(generate(name, 0)) == GOLDEN_SEED_0[name]


def test_every_generator_is_pinned() -> None:
    """Every version of a scenario generator is pinned here (the ksmd ones are pinned in
    test_ksmd_exercises)."""
    for ident in VERSIONS:
        assert (ident in GOLDEN_SEED_0) == isinstance(generate(ident, 0), ScenarioProblem)


def test_versions_and_latest() -> None:
    assert GENERATORS["eagain"].version == 2
    assert generate("eagain", 0).ident == "eagain/v2 seed 0"
    assert body(generate("eagain/v1", 1)) != body(generate("eagain/v2", 1))


@pytest.mark.parametrize("name", LATEST)
def test_same_seed_same_problem_other_seed_other_problems(name: str) -> None:
    a, b = generate(name, 7), generate(name, 7)
    assert a.text() == b.text() and a.answer == b.answer
    texts = {body(generate(name, s)) for s in range(12)}
    assert len(texts) >= 4, f"{name}: 12 seeds gave only {len(texts)} distinct problems"


def options(ex: ScenarioProblem) -> dict[str, object]:
    """The kind's own options of `ex` (measure, codes)."""
    return {k: getattr(ex, k) for k in ("measure", "codes") if hasattr(ex, k)}


@pytest.mark.parametrize("name", SCENARIO_GENERATORS)
@pytest.mark.parametrize("profile", kb.PROFILES)
def test_generators_make_valid_problems_on_every_profile(name: str, profile: str) -> None:
    for seed in range(6):
        ex = generate(name, seed, profile)
        assert isinstance(ex, ScenarioProblem) and ex.profile == profile
        assert format_scenario(ex.scenario).startswith(f"kernel {profile} ")
        # The scenario text is self-contained: parsing and running it again gives the answer.
        again = type(ex)(format_scenario(ex.scenario), ex.question, proc=ex.proc,
                         **options(ex))
        assert again.answer == ex.answer
        ex.text()
        ex.solution_text()


def test_unknown_generator_and_profile() -> None:
    with pytest.raises(ValueError, match="unknown generator"):
        generate("no-such", 0)
    with pytest.raises(ValueError, match="unknown profile"):
        generate("warmup", 0, "3.0")


def test_exercise_needs_a_last_operation() -> None:
    with pytest.raises(ValueError, match="last operation"):
        ResultProblem("kernel seed ksm=y\n", "?")
    with pytest.raises(ValueError, match="ends with madvise"):
        AdviceProblem("map A 1p rw private anon\n", "?")
    with pytest.raises(ValueError, match="measures"):
        CountProblem("map A 1p rw private anon\n", "?", measure="pages")


# -- answers are the simulator's, and match the kernel semantics -------------------------------

def test_answers_are_what_the_scenario_runs_to() -> None:
    for name in SCENARIO_GENERATORS:
        for seed in range(4):
            ex = generate(name, seed)
            assert isinstance(ex, ScenarioProblem)
            results = run(ex.scenario)
            last = results[-1]
            if ex.kind == "result":
                assert ex.answer == last.result
            elif isinstance(ex, CountProblem) and ex.measure == "vmas":
                assert ex.answer == len(last.maps[ex.proc])
            elif isinstance(ex, CountProblem):
                assert ex.answer == sum(e.kind is Kind.SPLIT for e in last.trace.events)
            elif ex.kind == "layout":
                got = [(e.start, e.end, "mg" in e.vmflags) for e in last.maps[ex.proc]]
                want = [(BASE + le.start * 4096, BASE + le.end * 4096, "mg" in le.codes)
                        for le in ex.answer]
                assert got == want


def test_hole_in_range_gives_enomem_after_advising_the_mapped_parts() -> None:
    # docs/kernel-semantics.md §2: holes give ENOMEM while all mapped parts are advised.
    crossing = 0
    for seed in range(30):
        ex = generate("hole-result", seed)
        op, a, b = ex.scenario.ops[-1], ex.scenario.ops[1], ex.scenario.ops[2]
        assert isinstance(op, Madvise) and isinstance(a, Map) and isinstance(b, Map)
        assert b.at is not None
        a_pages = a.length // 4096
        b_off = b.at.offset // 4096
        start = op.addr.offset // 4096
        end = start + op.length // 4096
        hole = start < b_off and end > a_pages
        assert (ex.answer == -errno.ENOMEM) == hole, format_scenario(ex.scenario)
        if hole:
            crossing += 1
            advised = [e for e in ex.results[-1].maps["p1"] if "mg" in e.vmflags]
            assert advised, "the mapped parts of the range must be VM_MERGEABLE"
    assert crossing >= 10


def test_ignored_advice_on_shared_memory_splits_nothing() -> None:
    for seed in range(10):
        ex = generate("ignored-count", seed)
        shared = [e for e in ex.results[-1].maps["p1"] if e.perms.endswith("s")]
        assert shared and not any("mg" in e.vmflags for e in shared)
        assert len(shared) == 1


def test_chapter_6_pairs_differ_between_kernels() -> None:
    ex = chapter_exercises(6)
    pairs = [(ex[i], ex[i + 1]) for i in range(0, len(ex), 2)]
    for old, new in pairs:
        assert body(old) == body(new) and old.profile != new.profile
        assert old.answer != new.answer, old.ident
    # Facts from docs/kernel-semantics.md (§4): WILLNEED on anon is EBADF in 2.6.32, 0 in 6.x;
    # MADV_FREE (8) is invalid before 4.5.
    assert ex[0].answer == -errno.EBADF and ex[1].answer == 0
    assert ex[2].answer == -errno.EINVAL and ex[3].answer == 0


def test_ksm_off_einval_comes_before_len_zero() -> None:
    ex = chapter_exercises(4)[1]
    assert "ksm=n" in format_scenario(ex.scenario) and " 0 MERGEABLE" in body(ex)
    assert ex.answer == -errno.EINVAL


# -- chapter sets ---------------------------------------------------------------------------

def test_every_chapter_has_a_set() -> None:
    """Every chapter notebook (notebooks/NN-*.ipynb) has its exercises in the registry's sets,
    and prints them from chapter_exercises(NN)."""
    notebooks = sorted(Path(__file__).resolve().parent.parent.glob("notebooks/[0-9][0-9]-*.ipynb"))
    chapters = [int(nb.name[:2]) for nb in notebooks]
    assert sorted(CHAPTER_SETS) == sorted(CHAPTERS) == chapters
    for chapter, nb in zip(chapters, notebooks, strict=True):
        exercises = chapter_exercises(chapter)
        assert exercises, chapter
        assert [e.title for e in exercises] == [
            f"Exercise {chapter}.{n}" for n in range(1, len(exercises) + 1)]
        assert f"chapter_exercises({chapter})" in nb.read_text(encoding="utf-8"), nb.name
    with pytest.raises(ValueError, match=f"no chapter {len(chapters)}"):
        chapter_exercises(len(chapters))


def test_chapter_sets_are_deterministic_and_reseedable() -> None:
    a = [e.text() for e in chapter_exercises(2)]
    assert a == [e.text() for e in chapter_exercises(2)]
    b = [e.text() for e in chapter_exercises(2, seed=5)]
    assert b != a and b == [e.text() for e in chapter_exercises(2, seed=5)]
    modern = chapter_exercises(2, profile="modern")
    assert all(e.profile == "modern" for e in modern)


def test_show_prints_the_question(capsys: pytest.CaptureFixture[str]) -> None:
    ex = chapter_exercises(2)[0]
    ex.show()
    out = capsys.readouterr().out
    assert out == ex.text() + "\n"
    assert "Exercise 2.1" in out and "Question:" in out
    assert "madvise A+1p 2p MERGEABLE" in out
    assert "ENOMEM" not in out.split("Question:")[1]


def test_advice_question_hides_the_advice() -> None:
    ex = generate("reverse-advice", 5)
    text = ex.text()
    assert "madvise A+1p 4p ???" in text
    assert "madvise A+1p 4p MERGEABLE" not in text


# -- answer parsing ---------------------------------------------------------------------------

@pytest.mark.parametrize("given, want", [
    (0, 0), ("0", 0), ("ENOMEM", -12), ("enomem", -12), ("-ENOMEM", -12), ("-1 ENOMEM", -12),
    (-12, -12), (errno.ENOMEM, -12), ("-12", -12), ("Cannot allocate memory", -12),
    ("EINVAL", -22), ("EAGAIN", -11), (" EBADF ", -9),
])
def test_parse_result(given: object, want: int) -> None:
    assert parse_result(given) == want


@pytest.mark.parametrize("bad", [True, None, 1.5, "ENOPE", "__import__('os')", "0 or 1"])
def test_parse_result_rejects(bad: object) -> None:
    with pytest.raises(AnswerError):
        parse_result(bad)


def test_parse_count_yesno_advice() -> None:
    assert parse_count(3) == 3 and parse_count(" 4 ") == 4
    for bad in (-1, True, "three", 2.0):
        with pytest.raises(AnswerError):
            parse_count(bad)
    assert parse_yesno(True) is True and parse_yesno("no") is False and parse_yesno("Y")
    with pytest.raises(AnswerError):
        parse_yesno(1)
    assert parse_advice("MERGEABLE") == kb.MADV_MERGEABLE == parse_advice("madv_mergeable")
    assert parse_advice(13) == kb.MADV_UNMERGEABLE
    op = parse_advice("madvise A+2p 4p DONTFORK")
    assert isinstance(op, Madvise) and op.advice == kb.MADV_DONTFORK
    for bad in ("MERGE", 99, "madvise A", "os.system('x')"):
        with pytest.raises(AnswerError):
            parse_advice(bad)


def test_parse_layout_forms() -> None:
    want = (LayoutEntry(0, 2, frozenset()), LayoutEntry(2, 6, frozenset({"mg"})))
    assert parse_layout([(0, 2, ""), (2, 6, "mg")], BASE) == want
    assert parse_layout([(2, 6, ["mg"]), (0, 2)], BASE) == want  # any order, flags optional
    prof = kb.get_profile("seed")
    rw_mg = parse_layout([(0, 1, kb.VM_READ | kb.VM_WRITE | kb.VM_MERGEABLE)], BASE, prof)
    assert rw_mg[0].codes == {"rd", "wr", "mg"}
    assert parse_layout([(0, 1, "rw-p mg")], BASE)[0].codes == {"rd", "wr", "mg"}
    assert parse_layout([(0, 1, "VM_MERGEABLE")], BASE, prof)[0].codes == {"mg"}
    maps = ("10000000-10002000 rw-p 00000000 00:00 0      VmFlags: rd wr mr mw me ac\n"
            "10002000-10006000 rw-p 00000000 00:00 0      VmFlags: rd wr mr mw me ac mg\n")
    parsed = parse_layout(maps, BASE)
    assert [(e.start, e.end, "mg" in e.codes) for e in parsed] == [(0, 2, False), (2, 6, True)]
    assert format_layout(parsed, ("mg",)) == "[(0, 2, ''), (2, 6, 'mg')]"


@pytest.mark.parametrize("bad", [
    [(0, 2, "xx")], [(2, 2, "")], [(0, 3, ""), (2, 4, "")], [("0", 2, "")], "hello",
    [(0, 2, "", 1)], {"a": 1}, 5, "0fff0000-10000000 rw-p",
])
def test_parse_layout_rejects(bad: object) -> None:
    with pytest.raises(AnswerError):
        parse_layout(bad, BASE)


# -- check, hint, solution --------------------------------------------------------------------

def test_unattempted_and_unreadable(capsys: pytest.CaptureFixture[str]) -> None:
    ex = chapter_exercises(2)[0]
    for blank in (..., None):
        fb = ex.grade(blank)
        assert fb.status == "unattempted" and fb.correct is None
    ex.check(...)
    out = capsys.readouterr().out
    assert out.startswith("Not answered yet") and f"\n    {ex.example()}\n" in out
    fb = ex.grade("maybe")
    assert fb.status == "unreadable" and "not a result" in fb.message
    assert [a.status for a in ex.attempts] == ["unattempted"]


def test_check_prints_correct(capsys: pytest.CaptureFixture[str]) -> None:
    ex = chapter_exercises(2)[0]
    ex.check("-1 ENOMEM")
    assert capsys.readouterr().out.startswith("Correct.")
    assert ex.attempts[-1].correct is True


@pytest.mark.parametrize("name, seed, answer, phrase", [
    # answered 0 where the range had a hole
    ("hole-result", 0, 0, "0 would mean every page of the range is mapped"),
    ("hole-result", 0, "EINVAL", "these arguments pass sys_madvise()'s entry checks"),
    ("hole-result", 0, "EAGAIN", "nothing here is short of memory"),
    # answered as if the ignored advice had split the shared VMA
    ("ignored-count", 0, 4, "4 VMAs is too many: does the advice change every VMA"),
    # forgot the re-merge after UNMERGEABLE
    ("remerge-count", 1, 3, "can two pieces with equal flags become one VMA again"),
    # adjacent anonymous mmaps merge
    ("mmap-merge", 2, 4, "does a new anonymous mapping always make a new VMA"),
    # vma_merge before split_vma
    ("split-count", 3, 1, "1 split is too many: a neighbour that already has the new flags"),
    # EINVAL vs ENOMEM, the other way round
    ("entry-errors", 0, "ENOMEM", "ENOMEM would mean the call got past sys_madvise()'s entry"),
    ("entry-errors", 9, 0, "a kernel built with CONFIG_KSM=n"),
    ("eagain/v1", 3, "ENOMEM", "reported to user space differently"),
    ("mmf-flag", 2, False, "which flag does it clear, VM_MERGEABLE or MMF_VM_MERGEABLE"),
    ("mmf-flag", 5, True, "True would mean __ksm_enter() ran"),
    ("fork-mmf", 1, "no", "False would mean ksm_fork() did not register the child"),
    ("partial-layout", 1, [(0, 1, ""), (1, 3, "mg"), (6, 7, ""), (7, 8, "")],
     "does it leave the mapped parts of the range alone?"),
    ("partial-layout", 1, [(0, 1, ""), (1, 3, "mg"), (6, 8, "")], "a layout of 3 VMAs is too few"),
])
def test_feedback_names_the_misconception(name: str, seed: int, answer: object,
                                          phrase: str) -> None:
    fb = generate(name, seed).grade(answer)
    assert fb.status == "incorrect"
    assert phrase in fb.message


def test_feedback_is_about_the_answer_given_and_keeps_the_answer_back() -> None:
    """Each wrong result gets its own message, and none names the expected errno."""
    wrong = ("0", "EINVAL", "ENOMEM", "EAGAIN", "EPERM")
    for name in ("hole-result", "entry-errors", "eagain/v1", "eagain/v2", "then-now-willneed"):
        for seed in range(6):
            ex = generate(name, seed)
            expected = ex.answer_text()
            messages = [str(ex.grade(g)) for g in wrong if g != expected]
            assert len(set(messages)) >= len(messages) - 1, (ex.ident, messages)
            if expected != "0":
                assert not any(expected in m for m in messages), (ex.ident, messages)


def test_minus_one_asks_for_an_errno_name() -> None:
    ex = chapter_exercises(2)[0]
    for c_return in (-1, "-1", " -1 "):
        fb = ex.grade(c_return)
        assert fb.status == "unreadable" and fb.correct is None
        assert "errno name" in str(fb) and "-1 is what the C call returns" in str(fb)
    assert ex.grade("-1 ENOMEM").correct is True


def test_feedback_reads_the_trace_events() -> None:
    """The facts behind the feedback are the kernel's structured events."""
    hole = generate("hole-result", 0)
    assert [e.kind for e in hole.last.trace.events if e.kind is Kind.HOLE] == [Kind.HOLE]
    assert hole.facts.hole and not hole.facts.failed
    unaligned = generate("entry-errors", 0)
    assert unaligned.facts.failed is Fail.UNALIGNED
    assert "not page aligned" in unaligned.solution_text().split("\n")[1]
    ignored = generate("ignored-count", 0)
    assert ignored.facts.ignored == ("VM_SHARED|VM_MAYSHARE",)
    enter = chapter_exercises(4)[7]
    assert enter.facts.failed is Fail.KSM_ENTER
    assert enter.why().startswith("__ksm_enter() cannot allocate the mm_slot; madvise reports "
                                  "that ENOMEM as EAGAIN")


def test_layout_answers_as_maps_text() -> None:
    ex = generate("partial-layout", 1)
    assert ex.grade(format_maps(ex.results[-1].maps["p1"])).correct is True
    assert ex.grade([(0, 1, "rd wr"), (1, 3, "mg ac"), (6, 7, "mg"), (7, 8, "")]).correct


def test_advice_answers_are_judged_by_simulation() -> None:
    ex = generate("reverse-advice", 5)  # RANDOM on [0, 2), then MERGEABLE on [1, 5)
    assert ex.grade("MERGEABLE").correct is True
    assert ex.grade("madvise A+1p 4p MERGEABLE").correct is True
    wrong = ex.grade("DONTFORK")
    assert wrong.correct is False and "'dc'" in wrong.message
    assert ex.grade("madvise A+1p 3p MERGEABLE").correct is False
    assert ex.grade("madvise Q 1p MERGEABLE").status == "unreadable"
    # Another advice with the same effect is right too: on a VMA that is already
    # VM_MERGEABLE, UNMERGEABLE twice is the same as once.
    twin = AdviceProblem("map A 4p rw private anon at 0x10000000 fixed\n"
                    "madvise A 4p NORMAL\n", "?")
    assert twin.grade("UNMERGEABLE").correct is True
    assert "same effect" in twin.grade("UNMERGEABLE").message


def test_hints_get_more_detailed(capsys: pytest.CaptureFixture[str]) -> None:
    ex = generate("hole-result", 0)
    hints = ex.hints()
    assert len(hints) >= 3
    assert "sys_madvise" in hints[1] and "hole" in hints[-1]
    for _ in range(len(hints) + 1):
        ex.hint()
    out = capsys.readouterr().out
    for n in range(1, len(hints) + 1):
        assert f"Hint {n}/{len(hints)}" in out
    assert out.count("That was the last hint") == 2


def test_solution_has_answer_and_step_trace(capsys: pytest.CaptureFixture[str]) -> None:
    ex = generate("split-layout", 5)
    ex.solution()
    out = capsys.readouterr().out
    assert out.startswith("Answer: [(0, 1, ''), (1, 3, 'mg'), (3, 4, '')]")
    assert "madvise A+1p 2p MERGEABLE" in out and "split_vma" in out
    assert out.count("[p1]") == 2  # the state after each of the 2 operations


def test_fork_layout_is_the_childs() -> None:
    ex = generate("fork-layout", 0)  # DONTFORK [0, 3), MERGEABLE [4, 6) of 7 pages
    assert ex.answer == (LayoutEntry(3, 4, frozenset()), LayoutEntry(4, 6, frozenset({"mg"})),
                         LayoutEntry(6, 7, frozenset()))
    assert ex.grade([(3, 4), (4, 6, "mg"), (6, 7)]).correct is True
    assert ex.grade([(0, 3, "dc"), (3, 4), (4, 6, "mg"), (6, 7)]).correct is False


def test_random_answers_never_crash() -> None:
    rng = random.Random(1)
    junk: list[object] = [0, -1, 3, "yes", "ENOMEM", [], [(0, 1, "")], "madvise A 1p NORMAL",
                          "x" * 300, [(0, 10**9, "mg")], (1, 2), b"0", object()]
    for name in GENERATORS:
        ex = generate(name, rng.randrange(1000))
        for answer in junk:
            fb = ex.grade(answer)
            assert fb.status in ("correct", "incorrect", "unreadable") and fb.message


# -- the live kernel agrees with the exercise answers --------------------------------------

@pytest.mark.live
def test_exercise_scenarios_replay_identically_on_the_live_kernel() -> None:
    live = pytest.importorskip("ksmbook.live")
    ok, why = live.available()
    if not ok:
        pytest.skip(f"live kernel unavailable: {why}")
    from ksmbook.exercises.answers import layout_of

    replayed = 0
    for name in sorted(GENERATORS):
        for seed in (0, 1):
            ex = generate(name, seed, "modern")
            try:
                real = live.replay(ex.scenario)
            except live.LiveRefused:
                continue  # sysctl, fault injection, ksm=n: simulator-only statements
            replayed += 1
            for sim, got in zip(ex.results, real, strict=True):
                assert sim.result == got.result, (ex.ident, str(sim.op))
                assert ({k: layout_of(v, BASE) for k, v in sim.maps.items()}
                        == {k: layout_of(v, BASE) for k, v in got.maps.items()}), ex.ident
    assert replayed >= 30


# -- what the questions show --------------------------------------------------------------------

def test_the_solution_shows_a_runnable_replay(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ex = generate("hole-result", 0)
    text = ex.solution_text()
    assert "run FILE" not in text
    m = re.search(r"^    (python -m ksmbook run - --maps --trace) <<'EOF'\n(.*?)^    EOF$", text,
                  flags=re.M | re.S)
    assert m is not None, text
    script = "".join(line.removeprefix("    ") + "\n" for line in m.group(2).splitlines())
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    assert main(m.group(1).split()[3:]) == 0
    out = capsys.readouterr().out
    assert "= -1 ENOMEM" in out and "find_vma: hole" in out


def test_exercise_4_8_fails_in_ksm_enter_on_a_kernel_where_it_can() -> None:
    ex = chapter_exercises(4)[7]
    assert ex.ident == "eagain/v2 seed 3" and ex.profile == "2.6.32"
    assert "inject __ksm_enter" in body(ex)
    assert ex.answer == -errno.EAGAIN
    # Version 2 never injects into the seed's dummy __ksm_enter(), which cannot fail.
    for seed in range(40):
        assert "inject __ksm_enter" not in body(generate("eagain/v2", seed, "seed"))
    assert any("inject __ksm_enter" in body(generate("eagain/v2", s, "modern"))
               for s in range(40))


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_every_example_is_an_answer_of_the_asked_form(chapter: int) -> None:
    """The Example line of each question is readable as an answer to it, and a layout's
    example uses only the codes that are compared."""
    for ex in chapter_exercises(chapter):
        line = ex.text().splitlines()[-1]
        assert line.startswith("Example: answer = ")
        literal = line.removeprefix("Example: answer = ").split("   ")[0]
        value = ast.literal_eval(literal)
        ex.parse(value)  # raises AnswerError if the example has the wrong form
        if isinstance(ex, LayoutProblem):
            used = {c for _, _, codes in value for c in codes.split()}
            assert used <= set(ex.codes), (ex.title, used, ex.codes)
        assert isinstance(ex, Problem)
