"""The Explorer's "Live kernel" tab: the session's script replayed on this machine's Linux
kernel (`ksmbook.live.replay`, in a throwaway child process inside a reserved address range),
compared statement by statement and map by map with the simulator."""

from __future__ import annotations

import html
from collections.abc import Callable

from ..kernel import Process
from ..render import Snapshot, SpaceFigure, from_entries, maps_text, to_svg
from ..scenario import SETUP, Boot, StepResult
from ..session import Session
from .common import pre

__all__ = ["CONFIRM", "run_live"]

#: What the confirmation says before anything runs on the real kernel.
CONFIRM = (
    "This runs the script above, statement by statement, on this machine's Linux kernel: "
    "in a child process started for it, inside an address range reserved for it, so that "
    "nothing else of this machine is touched; the child exits at the end. Then each result "
    "and each process's maps are shown beside the simulator's. Run it?")


def run_live(session: Session, snapshot: Callable[[Process], Snapshot]) -> str:
    """Replay the session on the live kernel and return the comparison as HTML (or why it
    could not run)."""
    from .. import live

    ok, why = live.available()
    if not ok:
        return pre(f"The live kernel cannot run here: {why}")
    try:
        results = live.replay(session.scenario)
    except live.LiveRefused as e:
        return pre(f"The live kernel refused this script: {e}")
    except live.LiveError as e:
        return pre(f"The live replay failed: {e}")
    return compare(session, snapshot, results)


def compare(session: Session, snapshot: Callable[[Process], Snapshot],
            results: list[StepResult]) -> str:
    """Side by side: each statement's result here and on the real kernel, then the final maps
    of each process from both, and a diagram with both as rows."""
    lines = [f"{'statement':<44} {'simulator':>16} {'live kernel':>16}"]
    differ = 0
    live_steps = [r for r in results if not isinstance(r.op, Boot)]
    for s, r in zip(session.steps, live_steps, strict=False):
        ours = "" if isinstance(s.op, SETUP) else s.outcome()
        live_out = r.outcome() if ours else ""
        mark = "" if live_out == ours else "  <- differs"
        differ += bool(mark)
        lines.append(f"{s.op!s:<44} {ours:>16} {live_out:>16}{mark}")
    final = results[-1].maps if results else {}
    rows: list[Snapshot] = []
    blocks = []
    k = session.kernel
    for name in session.live_names():
        proc = session.process(name)
        assert proc is not None
        mine = snapshot(proc)
        theirs = from_entries(final.get(name, []), f"live {name}")
        rows += [mine, theirs]
        if k.profile.checkable_live:
            same = mine.entries == theirs.entries
        else:  # other kernels' VmFlags codes cannot match this machine's
            same = [(e.start, e.end, e.perms) for e in mine.entries] == \
                [(e.start, e.end, e.perms) for e in theirs.entries]
        differ += not same
        blocks.append(
            '<div style="display:flex;gap:12px">'
            + pre(f"simulator [{name}]\n{maps_text(mine)}")
            + pre(f"live kernel [{name}]\n{maps_text(theirs)}") + "</div>")
    verdict = ("Same results and the same VMAs." if not differ
               else f"{differ} difference(s) (marked).")
    note = "" if k.profile.checkable_live else (
        f" The simulator runs the {k.profile.name} profile; the live kernel is modern "
        "Linux, so differences may be version differences.")
    fig = SpaceFigure()
    fig.show_rows(rows, title="simulator and live kernel")
    return (f"<div class='ksmbook-live'><b>{html.escape(verdict)}</b>{html.escape(note)}"
            + pre("\n".join(lines)) + "".join(blocks) + to_svg(fig.figure) + "</div>")
