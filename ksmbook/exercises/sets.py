"""Problem sets: the exercises at the end of each chapter, and classroom quizzes.

Both are frozen lists of (generator, seed): adding a generator never changes a published set,
and a generator named with its version ("eagain/v1") keeps giving the problems it gave when a
newer version comes. A new quiz pool gets a new QUIZ_VERSION; the chapter sets are what the
notebooks print, so a change there shows up as a notebook diff.
"""

from __future__ import annotations

import hashlib
import hmac
import random

from ..profiles import get_profile
from .problem import Problem
from .registry import generate, generator

__all__ = ["CHAPTERS", "CHAPTER_SETS", "QUIZ_VERSION", "QUIZ_POOLS", "chapter_exercises",
           "problem_set", "student_seed"]

#: The book's chapters, by number.
CHAPTERS = {
    0: "How to use this book",
    1: "Address spaces and VMAs",
    2: "The madvise path",
    3: "The KSM mm interface",
    4: "Errors as design",
    5: "fork, exit and the mm flag",
    6: "Then and now",
    7: "What ksmd does with the advice",
    8: "Security: the deduplication side channel",
    9: "KSM and huge pages",
}

#: Each chapter's exercises: (generator, seed, profile or None for the generator's own kernel).
CHAPTER_SETS: dict[int, tuple[tuple[str, int, str | None], ...]] = {
    0: (("warmup", 0, None),),
    1: (("mmap-merge", 2, None), ("munmap-count", 8, None), ("munmap-count", 0, None),
        ("mprotect-layout", 6, None)),
    2: (("hole-result", 0, None), ("split-layout", 5, None), ("split-count", 3, None),
        ("remerge-count", 1, None), ("partial-layout", 1, None), ("reverse-advice", 5, None)),
    3: (("ignored-count", 0, None), ("mmf-flag", 5, None), ("mmf-flag", 2, None),
        ("repeat-splits", 5, None), ("repeat-splits", 0, None), ("reverse-advice", 33, None)),
    4: (("entry-errors", 9, None), ("entry-errors", 8, None), ("entry-errors", 0, None),
        ("entry-errors", 2, None), ("hole-result", 1, None), ("eagain/v1", 3, None),
        ("eagain/v1", 4, None), ("eagain/v2", 3, "2.6.32")),
    5: (("fork-layout", 6, None), ("fork-count", 1, None), ("fork-mmf", 1, None),
        ("fork-mmf", 0, None), ("fork-mmf", 2, None)),
    6: (("then-now-willneed", 0, "seed"), ("then-now-willneed", 0, "modern"),
        ("then-now-free", 0, "2.6.32"), ("then-now-free", 0, "modern"),
        ("then-now-account", 0, "2.6.32"), ("then-now-account", 0, "modern")),
    7: (("ksmd-mix", 0, "modern"), ("ksmd-mix", 6, "modern"), ("ksmd-cow", 0, "2.6.32"),
        ("ksmd-cow", 0, "modern"), ("ksmd-max-sharing", 2, "modern"),
        ("ksmd-profit", 0, "modern"), ("ksmd-smart-scan", 1, "modern")),
    8: (("slow-writes", 0, "modern"), ("probe-guess", 7, "modern"),
        ("probe-guess", 1, "modern"), ("probe-guess", 0, "modern"), ("probe-scans", 0, "modern")),
    9: (("ksmd-thp", 13, "modern"), ("ksmd-thp", 22, "modern"), ("ksmd-thp", 1, "modern"),
        ("ksmd-thp", 5, "modern")),
}

#: The generators a quiz draws from, by quiz version (as "name/vN"). Never edit a published
#: pool. Version 2 covers chapters 1-8, the ksmd chapters included.
QUIZ_POOLS: dict[int, tuple[str, ...]] = {
    1: ("mmap-merge/v1", "munmap-count/v1", "mprotect-layout/v1", "hole-result/v1",
        "split-layout/v1", "split-count/v1", "remerge-count/v1", "reverse-advice/v1",
        "ignored-count/v1", "mmf-flag/v1", "repeat-splits/v1", "entry-errors/v1",
        "partial-layout/v1", "eagain/v1", "fork-layout/v1", "fork-mmf/v1", "fork-count/v1"),
    2: ("mmap-merge/v1", "munmap-count/v1", "mprotect-layout/v1", "hole-result/v1",
        "split-layout/v1", "split-count/v1", "remerge-count/v1", "reverse-advice/v1",
        "ignored-count/v1", "mmf-flag/v1", "repeat-splits/v1", "entry-errors/v1",
        "partial-layout/v1", "eagain/v2", "fork-layout/v1", "fork-mmf/v1", "fork-count/v1",
        "then-now-willneed/v1", "then-now-free/v1", "then-now-account/v1", "ksmd-mix/v1",
        "ksmd-cow/v1", "ksmd-max-sharing/v1", "ksmd-profit/v1", "ksmd-smart-scan/v1",
        "slow-writes/v1", "probe-guess/v1", "probe-scans/v1"),
}
QUIZ_VERSION = max(QUIZ_POOLS)


def chapter_exercises(chapter: int, *, seed: int = 0, profile: str | None = None
                      ) -> list[Problem]:
    """The exercises that end `chapter` (0-9), titled "Exercise C.N".

    seed 0 gives the book's published problems; another seed gives other problems of the same
    kinds. `profile` runs them all on that kernel instead of each one's own.
    """
    if chapter not in CHAPTER_SETS:
        raise ValueError(f"no chapter {chapter}; chapters are {min(CHAPTERS)}-{max(CHAPTERS)}")
    if profile is not None:
        get_profile(profile)
    out: list[Problem] = []
    for n, (name, published, own) in enumerate(CHAPTER_SETS[chapter], 1):
        s = published if seed == 0 else random.Random(
            f"ksmbook/chapter/{chapter}/{n}/{seed}").getrandbits(32)
        ex = generate(name, s, profile or own)
        ex.title = f"Exercise {chapter}.{n}"
        out.append(ex)
    return out


def student_seed(student: str, secret: str) -> int:
    """The quiz seed of one student: HMAC-SHA256 keyed with the teacher's secret over the
    student id, first 8 bytes. Without the secret, a student cannot find another's seed."""
    if not secret:
        raise ValueError("the secret must not be empty")
    mac = hmac.new(secret.encode(), f"ksmbook-quiz/{student}".encode(), hashlib.sha256)
    return int.from_bytes(mac.digest()[:8], "big")


def problem_set(seed: int, count: int = 5, *, profile: str | None = None,
                chapters: tuple[int, ...] | None = None,
                version: int = QUIZ_VERSION) -> list[Problem]:
    """A quiz of `count` problems drawn from quiz pool `version` (only generators of
    `chapters`, if given, and, if `profile` is given, only those that run on it), each from
    its own seed derived from `seed`, on `profile` or each generator's own kernel. A longer
    quiz from the same seed starts with the problems of a shorter one."""
    if count < 1:
        raise ValueError("a quiz has at least one problem")
    if version not in QUIZ_POOLS:
        raise ValueError(f"no quiz version {version}; versions: {sorted(QUIZ_POOLS)}")
    if profile is not None:
        get_profile(profile)
    pool = [g for g in QUIZ_POOLS[version]
            if (chapters is None or set(generator(g).chapters) & set(chapters))
            and (profile is None or not generator(g).missing(profile))]
    if not pool:
        on = "" if profile is None else f" on the {profile} kernel"
        raise ValueError(f"no quiz problems for chapters {chapters}{on}")
    rng = random.Random(f"ksmbook/quiz/v{version}/{seed}")
    names: list[str] = []
    while len(names) < count:
        names += rng.sample(pool, len(pool))
    out = []
    for n, name in enumerate(names[:count], 1):
        sub = random.Random(f"ksmbook/quiz/v{version}/{seed}/{n}").getrandbits(32)
        ex = generate(name, sub, profile)
        ex.title = f"Problem {n}"
        out.append(ex)
    return out
