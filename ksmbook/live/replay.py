"""A scenario replayed on this machine's kernel (``replay``), step by step through the
scenario's own ``Runner``, and what the replay needs to place it (``ksmbook.live.harness``)
and to drive ksmd (``ksmbook.live.ksmd``).

The top layer of ``ksmbook.live``: it imports the harness and the live ksmd, never the other
way round.
"""

from __future__ import annotations

import contextlib

from ..profiles import PROFILES
from ..scenario import Boot, Map, Runner, Scenario, Statement, StepResult, parse
from .harness import (
    DEFAULT_ARENA_SIZE,
    SIM_MMAP_TOP,
    Arena,
    KsmShared,
    LiveKernel,
    LiveRefused,
    LiveSession,
    LiveTask,
)
from .ksmd import LiveKsmd, ksm_available, session

__all__ = ["LiveRunner", "replay"]


def _scenario_arena(scenario: Scenario) -> Arena:
    """The default arena if it holds every numeric address of the scenario, else one centred
    on them; refuse a scenario whose addresses cannot all be translated."""
    nums = [int(a.offset) for op in scenario.ops
            for a in (getattr(op, "at", None), getattr(op, "addr", None))
            if a is not None and a.label is None]
    default = Arena()
    if all(default.base <= n + default.offset <= default.end for n in nums):
        return default
    if any(isinstance(op, Map) and not (op.fixed or op.noreplace) for op in scenario.ops):
        nums.append(SIM_MMAP_TOP)  # top-down maps start there
    lo, hi = min(nums), max(nums)
    try:
        return Arena.for_sim_range(lo, hi)
    except LiveRefused:
        raise LiveRefused(
            f"the scenario's addresses span [{lo:#x}, {hi:#x}]: too wide to replay inside one "
            f"{DEFAULT_ARENA_SIZE >> 30} GiB arena (mix no fixed low addresses with top-down maps)"
        ) from None


class LiveRunner(Runner[LiveTask]):
    """``ksmbook.scenario.Runner`` on a :class:`LiveKernel`: the same statements, run by the
    same code, on this machine's kernel; the maps come from each worker's smaps. A ksmd or
    sysfs statement during which another process used KSM raises :class:`KsmShared`."""

    def __init__(self, kernel: LiveKernel, *, maps: bool = True) -> None:
        super().__init__(kernel, maps=maps)
        self.live = kernel

    def step(self, op: Statement) -> StepResult:
        got = super().step(op)
        if got.counters is not None:
            foreign = self.live.ksmd.foreign_mms([p.worker.pid for p in self.live.processes])
            if foreign:
                raise KsmShared(foreign)
        return got


def replay(scenario: Scenario | str, session: LiveSession | None = None, *,
           ksmd: bool = False, maps: bool = True) -> list[StepResult]:
    """Run a scenario on the real kernel; returns what ksmbook.scenario.run returns.

    Each StepResult has the statement, its result (an address or pid, 0, or -errno; addresses
    translated back into simulator addresses, pids numbered 1, 2, ... as the simulator does),
    ``trace=None``, and the maps of each live process (arena only, in simulator addresses,
    files under their simulator names). Mappings without ``fixed`` are placed top-down below
    the translated mmap_base (see ``LiveTask._unmapped_area``), and so are the moves of mremap
    whose place the kernel chooses (``LiveTask.mremap``). Statements the real kernel cannot
    honour safely (``ksm=n``, a different sysctl value, devices, fault injection,
    reclaim) raise :class:`LiveRefused`; so do ksmd and sysfs statements unless ``ksmd``: then
    this machine's ksmd is driven (``ksmbook.live.ksmd``: knobs set to the profile's boot
    values, ksmd reset and stepped batch by batch, every knob restored afterwards), and
    ksmd's and sysfs statements carry the live counters, relative to the reset, and each
    process's /proc/PID/ksm_stat (:class:`KsmShared` if another process used KSM meanwhile).
    With ``session``, the workers stay alive for inspection; ``maps=False`` leaves the maps
    out (as ``ksmbook.scenario.run`` does), sparing a read of every process's smaps a step.
    """
    if isinstance(scenario, str):
        scenario = parse(scenario)
    for op in scenario.ops:
        if isinstance(op, Boot) and not op.ksm:
            raise LiveRefused("this machine's kernel has CONFIG_KSM=y: cannot replay ksm=n")
    with contextlib.ExitStack() as stack:
        backend = _ksmd_backend(stack) if ksmd else None
        if session is None:
            session = stack.enter_context(LiveSession(arena=_scenario_arena(scenario)))
        runner = LiveRunner(LiveKernel(session, backend), maps=maps)
        return [runner.step(op) for op in scenario.ops]


def _ksmd_backend(stack: contextlib.ExitStack) -> LiveKsmd:
    """A stepped live ksmd for ``replay(..., ksmd=True)``, with the boot values of the knobs
    of the profile this machine's kernel is checked against, ended (and every knob restored)
    when `stack` closes."""
    ok, why = ksm_available()
    if not ok:
        raise LiveRefused(f"cannot drive this machine's ksmd: {why}")
    knobs = next(p for p in PROFILES.values() if p.checkable_live).ksm_knobs
    defaults = {name: int(knobs[name] or 0) for name in (
        "use_zero_pages", "smart_scan", "max_page_sharing", "merge_across_nodes",
        "stable_node_chains_prune_millisecs")}
    ksmd = stack.enter_context(session(**defaults))
    ksmd.stepping(int(knobs["pages_to_scan"] or 0))
    return ksmd
