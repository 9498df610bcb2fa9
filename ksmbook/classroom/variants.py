"""Which problems a student gets: the course secret, the assignment's plan, each student's set.

The teacher's side of a course keeps, in ``COURSE/.ksmbook/`` (mode 0700, never released):

- ``secret``: 32 random bytes (mode 0600), made by the first ``classroom assignment``;
- ``assignments/NAME.json``: the plan of assignment NAME: its chapter, the generators (pinned to
  their version) and kernels of its problems, and where their seeds come from.

Seeds come from the plan's ``mode``:

- ``variants``: each student's own problems, seeds HMAC-SHA256(secret, assignment, student id,
  problem number): without the secret nobody can find a student's seeds;
- ``secret``: one problem set for the class, seeds HMAC-SHA256(secret, assignment, number);
- ``seed``: the teacher's explicit ``--seed S`` (``chapter_exercises(chapter, seed=S)``; 0 is
  the book's own exercises, whose ``solution()`` every student has).

A plan pins each generator's version, so a newer generator never changes a published problem.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import re
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..exercises import CHAPTER_SETS, Problem, generate, generator

__all__ = ["STATE_DIR", "ASSIGNMENT_NAME", "STUDENT_ID", "STUDENT_ID_RULE", "VariantError", "Plan",
           "state_dir", "load_secret", "plan_path", "save_plan", "load_plan", "make_plan",
           "problems_for", "student_key", "write_atomic"]

#: The teacher's folder in a course (its name starts with a dot: never released, and no
#: folder named ``ksmbook`` hides the package from commands run in the course folder).
STATE_DIR = ".ksmbook"
MODES = ("variants", "secret", "seed")
#: An assignment's name (its folder under source/, and its plan's file name).
ASSIGNMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\Z")
#: A student's id: a user name, and the folder nbgrader files their submissions in.
STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")
STUDENT_ID_RULE = "1 to 64 letters, digits, . _ @ -, starting with a letter or digit"


class VariantError(Exception):
    """A course or plan that cannot be read or written; the message says why (never the
    secret)."""


@dataclass
class Plan:
    """What makes an assignment's problems (stored as ``.ksmbook/assignments/NAME.json``)."""

    name: str
    chapter: int
    mode: str
    #: Each problem: [generator ident "name/vN", kernel profile, the book's seed].
    problems: list[tuple[str, str, int]]
    seed: int | None = None
    points: int = 1
    #: Problem numbers that also get an "explain why" question, and its points.
    written: list[int] = field(default_factory=list)
    written_points: int = 2
    #: The students of a variants assignment (their problems are in the release).
    students: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        d = json.loads(text)
        d["problems"] = [tuple(p) for p in d["problems"]]
        plan = cls(**d)
        if plan.mode not in MODES:
            raise ValueError(f"unknown mode {plan.mode!r}")
        return plan


def state_dir(course: str | Path) -> Path:
    return Path(course) / STATE_DIR


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def load_secret(course: str | Path, *, create: bool = False) -> bytes:
    """The course secret (``COURSE/.ksmbook/secret``), made (mode 0600) if `create`."""
    path = state_dir(course) / "secret"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if not create:
            raise VariantError(f"{Path(course)} has no course secret ({STATE_DIR}/secret): was "
                               "it made by `python -m ksmbook classroom assignment`?") from None
        data = b""
    except OSError as e:
        raise VariantError(f"cannot read the course secret of {Path(course)}: "
                           f"{e.strerror or e}") from None
    if not data:
        try:
            _private_dir(state_dir(course))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            data = secrets.token_bytes(32)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except OSError as e:
            raise VariantError(f"cannot make the course secret in {Path(course)}: "
                               f"{e.strerror or e}") from None
    if len(data) < 16:
        raise VariantError(f"the course secret of {Path(course)} is too short: remove "
                           f"{STATE_DIR}/secret only if no assignment was released with it")
    return data


def plan_path(course: str | Path, name: str) -> Path:
    if not ASSIGNMENT_NAME.match(name):
        raise VariantError(f"assignment name {name!r}: use letters, digits, - and _")
    return state_dir(course) / "assignments" / f"{name}.json"


def write_atomic(path: Path, data: str) -> None:
    """Replace `path` whole (a temporary file beside it, renamed over it), or not at all."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(data, encoding="utf-8")
    tmp.replace(path)


def save_plan(course: str | Path, plan: Plan) -> Path:
    path = plan_path(course, plan.name)
    try:
        _private_dir(path.parent)
        write_atomic(path, plan.to_json())
    except OSError as e:
        raise VariantError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def load_plan(course: str | Path, name: str) -> Plan | None:
    """The plan of assignment `name`, or None if ksmbook did not make it."""
    path = plan_path(course, name)
    try:
        return Plan.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise VariantError(f"cannot read {path}: {e}") from None


def make_plan(name: str, chapter: int, *, mode: str, count: int | None = None,
              seed: int | None = None, points: int = 1, written: list[int] | None = None,
              written_points: int = 2) -> Plan:
    """The plan of an assignment of chapter `chapter`'s exercises (the first `count`)."""
    entries = CHAPTER_SETS[chapter][:count]
    problems = []
    for gen, published, own in entries:
        g = generator(gen)
        problems.append((g.ident, own or g.kernel, published))
    return Plan(name, chapter, mode, problems, seed, points, sorted(set(written or [])),
                written_points)


def _mac(secret: bytes, *parts: object) -> int:
    msg = "\0".join(str(p) for p in parts).encode()
    return int.from_bytes(hmac.new(secret, msg, hashlib.sha256).digest()[:4], "big")


def problems_for(plan: Plan, secret: bytes | None, student: str | None = None
                 ) -> list[Problem]:
    """The problems of `plan` for `student` (needed, with the secret, in variants mode),
    titled "Problem N", with no ident (nothing in their text names a generator or seed)."""
    out = []
    for n, (ident, profile, published) in enumerate(plan.problems, 1):
        if plan.mode == "seed":
            s = published if plan.seed == 0 else random.Random(
                f"ksmbook/chapter/{plan.chapter}/{n}/{plan.seed}").getrandbits(32)
        elif secret is None:
            raise VariantError("this assignment's problems need the course secret")
        elif plan.mode == "secret":
            s = _mac(secret, "ksmbook-assignment", plan.name, n)
        else:
            if not student:
                raise VariantError("a variants assignment needs the student's id")
            s = _mac(secret, "ksmbook-variant", plan.name, student, n)
        problem = generate(ident, s, profile)
        problem.title, problem.ident = f"Problem {n}", ""
        out.append(problem)
    return out


def student_key(course_id: str, assignment: str, student: str) -> str:
    """The key of a student's problems in a released ``problems.json`` (a hash of the id, so
    the file does not list the class)."""
    return hashlib.sha256(f"ksmbook/{course_id}/{assignment}/{student}".encode()).hexdigest()[:32]
