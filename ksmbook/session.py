"""A reader's session with one simulated kernel: the statements run so far, undo and redo,
replay on another kernel, and the session copied out as a script.

    from ksmbook.session import Session
    s = Session(setup="kernel seed ksm=y\\nmap A 8p rw private anon\\n")
    s.do("madvise A+2p 4p MERGEABLE")       # one action: one or more statements
    s.undo(); s.redo()
    s.reboot(Boot("seed", ksm=False))        # the same history on another kernel
    print(s.script())                        # python -m ksmbook run replays it

A session is the scenario language's `Runner` on a kernel booted from a ``kernel`` statement,
plus the history that rebuilds it: the set-up statements (the starting point that Reset goes
back to) and the reader's actions since, each action a few statements that succeed or fail
together. Every change of history (an action, undo, redo, reset, another kernel, a loaded
script) is one step back for `undo`. Nothing here draws: the Explorer, predict mode and the
ksmd stepper are views of a session.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .kernel import Kernel, Process
from .scenario import (
    SETUP,
    Addr,
    Boot,
    Runner,
    Scenario,
    ScenarioError,
    Statement,
    StepResult,
    parse,
    process_of,
)
from .trace import errno_text

__all__ = ["Session", "History", "Failure", "statements", "sentence"]

#: Called with the process an action runs in (None if it does not exist yet) and its name,
#: just before the last action of a history runs; what it returns is `Session.before`.
BeforeHook = Callable[[Process | None, str], Any]


def statements(ops: str | Scenario | Iterable[Statement]) -> tuple[Statement, ...]:
    """Statements from scenario text, a `Scenario` or statements (ScenarioError if the text
    does not parse)."""
    if isinstance(ops, str):
        return parse(ops).ops
    if isinstance(ops, Scenario):
        return ops.ops
    return tuple(ops)


@dataclass(frozen=True)
class History:
    """What rebuilds a session: the kernel, the set-up statements and the reader's actions;
    `change` says what the next change of history was (for undo and redo messages)."""

    kernel: Boot
    setup: tuple[Statement, ...]
    actions: tuple[tuple[Statement, ...], ...]
    change: str = ""

    @property
    def ops(self) -> tuple[Statement, ...]:
        """Every statement after the kernel line, in order."""
        return self.setup + tuple(op for action in self.actions for op in action)


@dataclass(frozen=True)
class Failure:
    """A statement of a replayed history that fails on the new kernel (and did not before,
    or failed with another errno): its text and the errno names, before and after."""

    call: str
    before: str
    after: str

    def __str__(self) -> str:
        was = "" if self.before == "0" else f" (was {self.before})"
        return f"{self.call} -> {self.after}{was}"


class Session:
    """A kernel driven one action at a time, with the history that rebuilds it.

    `setup` (scenario text, a `Scenario` or statements) is run first; its ``kernel`` line (or
    `kernel`) chooses the kernel. `before` is called just before the last action runs (see
    `BeforeHook`). `maps` asks the runner for every process's maps after each statement.
    `factory`, instead of a set-up, builds the starting kernel with code (every rebuild calls
    it again); a script cannot replay that code, and says so in a comment.
    """

    def __init__(self, setup: str | Scenario | Iterable[Statement] = (), *,
                 kernel: Boot | None = None, before: BeforeHook | None = None,
                 maps: bool = False, factory: Callable[[], Kernel] | None = None) -> None:
        ops = statements(setup)
        self._factory = factory
        if factory is not None and kernel is None:
            k = factory()
            kernel = Boot(k.profile.name, k.config_ksm)
        kernel_op = kernel or Scenario(ops).kernel
        self._before_hook = before
        self._maps = maps
        self.before: Any = None
        #: The starting point (Reset goes back to it, on the kernel chosen then).
        self.start = History(kernel_op, tuple(op for op in ops if not isinstance(op, Boot)), ())
        self._undo: list[History] = []
        self._redo: list[History] = []
        self._build(self.start)

    # -- state ------------------------------------------------------------------------------

    @property
    def kernel_op(self) -> Boot:
        return self.history.kernel

    @property
    def scenario(self) -> Scenario:
        """The kernel line and every statement run, as a scenario."""
        return Scenario((self.history.kernel, *self.history.ops))

    @property
    def last_ops(self) -> tuple[Statement, ...]:
        """The statements of the latest action (with none yet, the last set-up statement):
        what a view shows as the latest change."""
        if self.history.actions:
            return self.history.actions[-1]
        return self.history.setup[-1:]

    @property
    def labels(self) -> dict[str, int]:
        return self.runner.labels

    @property
    def files(self) -> set[str]:
        return set(self.runner.files)

    @property
    def process_names(self) -> list[str]:
        """Every process the session knows (exited ones too)."""
        return list(self.runner.procs)

    def process(self, name: str) -> Process | None:
        return self.runner.procs.get(name)

    def live_names(self) -> list[str]:
        return [n for n, p in self.runner.procs.items() if p.alive]

    def addr(self, a: Addr) -> int:
        """The address `a` names now (`Runner.addr`; ScenarioError for an unknown label)."""
        return self.runner.addr(Boot(), a)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    # -- running ----------------------------------------------------------------------------

    def _build(self, history: History) -> None:
        """Boot a kernel for `history` and run it; on success it becomes the session's kernel
        and history (a ScenarioError leaves everything as it was)."""
        kernel = (self._factory() if self._factory is not None
                  else Kernel(history.kernel.profile, history.kernel.ksm))
        runner = Runner(kernel, maps=self._maps)
        actions = tuple((op,) for op in history.setup) + history.actions
        steps: list[StepResult] = []
        before = None
        for i, action in enumerate(actions):
            if i == len(actions) - 1:
                before = self._observe(runner, action)
            steps += [runner.step(op) for op in action]
        self.runner, self.history, self.steps, self.kernel = runner, history, steps, kernel
        self.before = before

    def _observe(self, runner: Runner, action: Sequence[Statement]) -> Any:
        if self._before_hook is None or not action:
            return None
        name = process_of(action[-1]) or "p1"
        return self._before_hook(runner.procs.get(name), name)

    def _change(self, history: History, change: str) -> None:
        """Make `history` the session's (ScenarioError: nothing changes) and remember the old
        one for undo."""
        old = self.history
        self._build(history)
        self._undo.append(dataclasses.replace(old, change=change))
        self._redo.clear()

    def do(self, ops: str | Scenario | Iterable[Statement],
           change: str | None = None) -> list[StepResult]:
        """Run one action (its statements succeed or fail together) and record it.

        A statement that names what does not exist raises ScenarioError and the session is
        rebuilt as it was; a refused system call is a result (-errno), and is kept."""
        action = statements(ops)
        if not action:
            return []
        old = self.history
        self.before = self._observe(self.runner, action)
        try:
            steps = [self.runner.step(op) for op in action]
        except BaseException:
            self._build(old)
            raise
        self.steps += steps
        self.history = dataclasses.replace(old, actions=(*old.actions, action))
        self._undo.append(dataclasses.replace(
            old, change=change or "; ".join(map(str, action))))
        self._redo.clear()
        return steps

    def with_maps(self, step: StepResult) -> StepResult:
        """`step` (the latest) with every live process's maps as they are now."""
        return dataclasses.replace(step, maps=self.runner.snapshot())

    def undo(self) -> str:
        """Go back one change of history; returns what it was (ValueError: nothing to undo)."""
        return self._swap(self._undo, self._redo, "nothing to undo")

    def redo(self) -> str:
        """Do again the change last undone; returns what it was."""
        return self._swap(self._redo, self._undo, "nothing to redo")

    def _swap(self, take: list[History], give: list[History], empty: str) -> str:
        """Rebuild the history on top of `take`, keeping the current one on `give`."""
        if not take:
            raise ValueError(empty)
        state = take.pop()
        old = self.history
        self._build(dataclasses.replace(state, change=""))
        give.append(dataclasses.replace(old, change=state.change))
        return state.change

    def reset(self) -> None:
        """Back to the starting point (the set-up, no actions) on the current kernel."""
        self._change(dataclasses.replace(self.start, kernel=self.history.kernel), "reset")

    def reboot(self, kernel: Boot) -> list[Failure]:
        """The same history on another kernel (ScenarioError if it cannot run there: nothing
        changes). Returns the calls that now fail, or fail with another errno."""
        old_steps = self.steps
        self._change(dataclasses.replace(self.history, kernel=kernel),
                     f"{self.history.kernel} -> {kernel}")
        return [Failure(str(new.op), errno_text(old.result), errno_text(new.result))
                for old, new in zip(old_steps, self.steps, strict=True)
                if not isinstance(new.op, SETUP) and new.errno is not None
                and errno_text(old.result) != errno_text(new.result)]

    def load(self, text: str) -> None:
        """Replace the history by a script (its ``kernel`` line, if any, chooses the kernel;
        each statement becomes one action). ScenarioError if it does not parse or run."""
        ops = parse(text).ops
        boots = [op for op in ops if isinstance(op, Boot)]
        kernel = boots[-1] if boots else self.history.kernel
        self._change(History(kernel, (), tuple((op,) for op in ops if not isinstance(op, Boot))),
                     "replay the script")

    # -- copying out ------------------------------------------------------------------------

    def script(self, outcomes: bool = False) -> str:
        """The session as scenario text that ``python -m ksmbook run`` replays to the same
        state: the kernel line, the set-up, every action. With `outcomes`, each system call's
        result follows as a comment (``# = 0x...``)."""
        lines = [str(self.history.kernel)]
        if self._factory is not None:
            name = getattr(self._factory, "__name__", "a function")
            lines.append(f"# set up by {name}(), which this script cannot replay")
        for step in self.steps:
            text = str(step.op)
            out = "" if isinstance(step.op, SETUP) or not outcomes else step.outcome()
            lines.append(f"{text:<44} # = {out}" if out else text)
        return "\n".join(lines) + "\n"


def sentence(error: ScenarioError) -> str:
    """A ScenarioError's message as a sentence for a reader."""
    return error.message[0].upper() + error.message[1:] + "."
