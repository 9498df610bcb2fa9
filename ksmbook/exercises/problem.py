"""One problem type for every exercise of the book, in the manner of learntools' `Problem`.

`Problem` writes, once, what every exercise does with a reader's answer: `check()` prints the
verdict, `hint()` tells more at each call, `solution()` prints the answer with the simulator's
run, and an answer left as `...` gets "not answered yet". A kind of problem (a syscall result, a
count, a layout, ksmd's counters, ...) is a subclass that says what the question shows, how an
answer is read, what the simulator's answer is, and what a wrong answer probably overlooked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from ..profiles import get_profile
from .answers import AnswerError

__all__ = ["Feedback", "Problem"]


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer: status is correct, incorrect, unreadable or unattempted."""

    status: str
    message: str

    @property
    def correct(self) -> bool | None:
        """True or False; None when there was no answer to judge."""
        if self.status in ("correct", "incorrect"):
            return self.status == "correct"
        return None

    def __str__(self) -> str:
        return self.message


class Problem(ABC):
    """A question whose answer the simulator computes.

    A subclass sets `kind` and writes `answer`, `parse()`, `kernel_line()` and `setting()`
    (what the question shows above it), `misconception()` (what a wrong answer overlooked)
    and `work()` (the simulator's run, for the solution); it may add `why()`,
    `trace_hints()`, `form()` and `example()`.
    """

    #: What the problem asks for ("result", "count", "counters", ...).
    kind: ClassVar[str]

    def __init__(self, question: str, *, profile: str, intro: str = "",
                 hints: tuple[str, ...] | list[str] = (), title: str = "Exercise",
                 ident: str = "") -> None:
        self.question, self.intro = question, intro
        self.profile = get_profile(profile).name
        self.title, self.ident = title, ident
        self._hints = tuple(hints)
        self._hints_given = 0
        self.attempts: list[Feedback] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.title!r} {self.ident}>"

    # -- what a kind says -------------------------------------------------------------------

    @property
    @abstractmethod
    def answer(self) -> Any:
        """The simulator's answer, in the form `parse()` gives."""

    @abstractmethod
    def parse(self, answer: object) -> object:
        """The reader's answer in normal form; raises AnswerError if it cannot be read."""

    @abstractmethod
    def kernel_line(self) -> str:
        """The question's line about the kernel it runs on."""

    @abstractmethod
    def setting(self) -> list[str]:
        """The lines of the question above "Question:" (kernel, steps, state)."""

    @abstractmethod
    def misconception(self, given: Any) -> str:
        """What the wrong answer `given` probably overlooked (never the answer itself)."""

    @abstractmethod
    def work(self) -> list[str]:
        """The simulator's run, as the solution shows it below the answer."""

    def example(self) -> str:
        """How an answer is written: `answer = ...` with a made-up value."""
        return "answer = 3"

    def form(self) -> list[str]:
        """What the question says about the form of the answer, besides the example."""
        return []

    def why(self) -> str:
        """Why the answer is what it is, in one or two sentences ("" if nothing to add)."""
        return ""

    def trace_hints(self) -> list[str]:
        """Hints read from the simulator's run, after the problem's own."""
        return []

    def answer_text(self) -> str:
        """The expected answer as a reader would write it."""
        return str(self.answer)

    def judge(self, given: Any) -> Feedback:
        """The verdict on a readable answer (equal to the simulator's: correct)."""
        if given == self.answer:
            return Feedback("correct", f"Correct. {self.why()}".strip())
        return Feedback("incorrect", f"Not quite: {self.misconception(given)} "
                        "(hint() tells more; solution() shows the simulator's answer.)")

    # -- written once for every kind ----------------------------------------------------------

    def text(self) -> str:
        """The question, as `show()` prints it (deterministic)."""
        out = [self.title + (f"  [{self.ident}]" if self.ident else ""), self.kernel_line()]
        if self.intro:
            out += ["", self.intro]
        out += self.setting()
        out += ["", f"Question: {self.question}", *self.form(), f"Example: {self.example()}"]
        return "\n".join(out)

    def show(self) -> None:
        """Print the question."""
        print(self.text())

    def grade(self, answer: object) -> Feedback:
        """Judge `answer` without printing; `check()` prints this."""
        if answer is None or answer is Ellipsis:
            return Feedback("unattempted", "Not answered yet: replace ... with your answer and "
                            f"run the cell again, for example:\n    {self.example()}")
        try:
            given = self.parse(answer)
        except AnswerError as e:
            return Feedback("unreadable", f"Cannot read that answer: {e}\nAn answer of the "
                            f"form expected:\n    {self.example()}")
        return self.judge(given)

    def check(self, answer: object = None) -> None:
        """Print whether `answer` is right, and if not, what was probably overlooked."""
        fb = self.grade(answer)
        self.attempts.append(fb)
        print(fb.message)

    def hints(self) -> list[str]:
        """Every hint, least detailed first."""
        return [*self._hints, *self.trace_hints()]

    def hint(self) -> None:
        """Print the next hint (each call gives more detail)."""
        all_hints = self.hints()
        if not all_hints:
            print("No hint for this one: try solution().")
            return
        i = min(self._hints_given, len(all_hints) - 1)
        more = i < len(all_hints) - 1
        self._hints_given = i + 1
        print(f"Hint {i + 1}/{len(all_hints)}: {all_hints[i]}"
              + ("" if more else "\n(That was the last hint; solution() shows the answer.)"))

    def solution_text(self) -> str:
        """The answer, why, and the simulator's run."""
        out = [f"Answer: {self.answer_text()}"]
        why = self.why()
        if why:
            out.append(f"Why: {why}")
        return "\n".join([*out, "", *self.work()])

    def solution(self) -> None:
        """Print the answer with the simulator's run."""
        print(self.solution_text())
