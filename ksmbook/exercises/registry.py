"""Seeded problem generators, as in OSTEP's simulators: a seed gives a problem, always the same.

`generate(name, seed, profile)` seeds `random.Random` with the generator's name, its version and
the seed, so a published problem never changes: a generator whose output must change gets a new
version (registered beside the old one), and tests pin a few seeds' problems of every version.
The generators only choose a scenario and a question; the answers come from running the
simulator. One registry holds the generators of every chapter.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..profiles import get_profile
from .problem import Problem

__all__ = ["Generator", "GENERATORS", "VERSIONS", "register", "generator", "generate"]

Make = Callable[[random.Random, str], Problem]


@dataclass(frozen=True)
class Generator:
    """A named, versioned problem generator: the chapters whose topics it drills, the kernel
    it runs on unless told otherwise, and the /sys/kernel/mm/ksm files a kernel must have for
    it (`needs`)."""

    name: str
    version: int
    chapters: tuple[int, ...]
    make: Make
    kernel: str = "seed"
    needs: tuple[str, ...] = ()

    @property
    def ident(self) -> str:
        return f"{self.name}/v{self.version}"

    def missing(self, profile: str) -> list[str]:
        """The files of `needs` that the kernel `profile` lacks."""
        p = get_profile(profile)
        return [f for f in self.needs if f not in p.ksm_knobs and f not in p.ksm_counters]


#: The latest version of every generator, by name.
GENERATORS: dict[str, Generator] = {}
#: Every version of every generator, by ident ("eagain/v1").
VERSIONS: dict[str, Generator] = {}

F = TypeVar("F", bound=Make)


def register(name: str, *, chapters: tuple[int, ...], version: int = 1, kernel: str = "seed",
             needs: tuple[str, ...] = ()) -> Callable[[F], F]:
    """Add a generator (a decorator)."""

    def add(make: F) -> F:
        g = Generator(name, version, chapters, make, kernel, needs)
        if g.ident in VERSIONS:
            raise ValueError(f"generator {g.ident!r} is registered twice")
        VERSIONS[g.ident] = g
        if name not in GENERATORS or GENERATORS[name].version < version:
            GENERATORS[name] = g
        return make
    return add


def generator(name: str) -> Generator:
    """The generator `name` ("eagain": the latest version) or `name/vN` (that version)."""
    g = VERSIONS.get(name) or GENERATORS.get(name)
    if g is None:
        raise ValueError(f"unknown generator {name!r}; choose one of "
                         f"{', '.join(sorted(GENERATORS))}")
    return g


def generate(name: str, seed: int, profile: str | None = None) -> Problem:
    """The problem that generator `name` makes from `seed`, on `profile` (default: the
    generator's own kernel)."""
    g = generator(name)
    prof = get_profile(profile or g.kernel).name
    missing = g.missing(prof)
    if missing:
        raise ValueError(f"{g.name} needs /sys/kernel/mm/ksm/{missing[0]}, which the {prof} "
                         "kernel does not have: generate it for a kernel that has it")
    rng = random.Random(f"ksmbook/{g.ident}/{seed}")
    problem = g.make(rng, prof)
    problem.ident = f"{g.ident} seed {seed}"
    return problem
