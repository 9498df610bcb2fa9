"""What the Explorer's buttons ask: each call built as scenario statements from what the reader
typed (one word per field, parsed by the scenario parser, never evaluated), and the live-kernel
tab's replay, asked for and confirmed first.

`ExplorerCalls` turns controls into statements and hands each action to `_do` (the
`Explorer` runs it in its session and redraws).
"""

from __future__ import annotations

import html
from abc import abstractmethod

from ..constants import HPAGE_SIZE, MADV
from ..kernel import Kernel
from ..render import snapshot
from ..scenario import Map, Statement
from ..session import Session
from .common import InputError, guarded, pre
from .explorer_controls import MAP_KINDS, ExplorerControls
from .live_panel import CONFIRM, run_live
from .ranges import RangePicker, fresh_label, fresh_name, length, statements, word

__all__ = ["ExplorerCalls"]


class ExplorerCalls(ExplorerControls):
    """The Explorer's calls: mmap, madvise, mprotect, munmap, mremap, fork and exit of the
    chosen process, and the replay on the live kernel."""

    session: Session
    ranges: RangePicker
    _cache: dict

    @property
    def kernel(self) -> Kernel:
        return self.session.kernel

    @property
    def process_name(self) -> str:
        return str(self.process.value)

    @abstractmethod
    def _do(self, ops: tuple[Statement, ...], note: str = "") -> None:
        """Run one action's statements and show what they did."""

    # -- building statements --------------------------------------------------------------

    def _prefix(self) -> str:
        return f"{self.process_name}: "

    def _alive(self, what: str) -> None:
        """InputError naming the way forward if the chosen process has exited."""
        proc = self.session.process(self.process_name)
        if proc is not None and not proc.alive:
            others = self.session.live_names()
            way = (f"pick a process that runs ({', '.join(others)}) in the process menu"
                   if others else "no process runs any more: press Undo to take the exit "
                   "back, or Reset to start again")
            raise InputError(f"{self.process_name} has exited, so it cannot {what}: {way}.")

    @guarded
    def _on_map(self, _: object = None) -> None:
        self._alive("mmap")
        size = length(self.map_length.value)
        mtype, backing = MAP_KINDS[str(self.map_kind.value)]
        label = fresh_label(set(self.session.labels))
        at = self.map_at.value.strip()
        options = ""
        if at:
            options = f" at {word(at, 'an address', '0x7ffff7ff3000 or A+4p')}"
            options += " fixed" if self.map_fixed.value else ""
        elif self.map_fixed.value:
            raise InputError("MAP_FIXED needs an address: fill in 'at'.")
        setup = ""
        if backing == "file":
            name = fresh_name("f", self.session.files)
            setup, backing = f"file {name} {size}\n", f"file={name}"
        elif backing.startswith("device:"):
            name = fresh_name("d", self.session.files)
            setup, backing = f"device {name} {backing.split(':', 1)[1]}\n", f"device={name}"
        ops = statements(setup + f"{self._prefix()}map {label} {size} {self.map_prot.value} "
                         f"{mtype} {backing}{options}")
        note = ""
        if backing == "hugetlb":
            ops, note = self._reserve_huge_pages(ops)
        self._do(ops, note)

    def _reserve_huge_pages(self, ops: tuple[Statement, ...]) -> tuple[tuple[Statement, ...], str]:
        """Put `sysctl nr_hugepages=N` before a hugetlb map that needs more huge pages than
        are free (it shows in the script like any other statement)."""
        k = self.kernel
        last = ops[-1]
        assert isinstance(last, Map)
        need = -(-last.length // HPAGE_SIZE)
        free = k.sysctl["nr_hugepages"] - k.hugepages_reserved
        if 0 < need <= 1 << 20 and need > free:
            total = k.sysctl["nr_hugepages"] + need - free
            return (statements(f"sysctl nr_hugepages={total}") + ops,
                    f"Reserved huge pages first: sysctl nr_hugepages={total}.")
        return ops, ""

    def _range_call(self, call: str, *rest: str) -> None:
        start, size = self.ranges.words()
        self._do(statements(" ".join([f"{self._prefix()}{call} {start} {size}", *rest])))

    @guarded
    def _on_madvise(self, _: object = None) -> None:
        self._range_call("madvise", MADV(int(self.advice.value)).name.removeprefix("MADV_"))

    @guarded
    def _on_mprotect(self, _: object = None) -> None:
        self._range_call("mprotect", str(self.mprotect_prot.value))

    @guarded
    def _on_munmap(self, _: object = None) -> None:
        self._range_call("munmap")

    @guarded
    def _on_mremap(self, _: object = None) -> None:
        """mremap the range to the new length; with fixed (or as dontunmap's hint) to 'to'."""
        new = length(self.mremap_length.value)
        words = str(self.mremap_flags.value)
        at = ""
        if self.mremap_to.value.strip():
            at = "at " + word(self.mremap_to.value, "a target address", "0x20000000")
        elif "fixed" in words:
            raise InputError("MREMAP_FIXED needs an address: fill in 'to'.")
        self._range_call("mremap", new, *(x for x in (words, at) if x))

    @guarded
    def _on_fork(self, _: object = None) -> None:
        self._alive("fork")
        child = fresh_name("c", set(self.session.process_names))
        self._do(statements(f"{self._prefix()}fork {child}"))

    @guarded
    def _on_exit(self, _: object = None) -> None:
        self._alive("exit again")
        self._do(statements(f"{self._prefix()}exit"))

    # -- the live kernel ------------------------------------------------------------------

    @guarded
    def _on_live(self, _: object = None) -> None:
        """Ask first: say what will run where."""
        self.live_confirm.value = (f"<p class='ksmbook-confirm' style='max-width:60em'>"
                                   f"{html.escape(CONFIRM)}</p>")
        self.live_ask.layout.display = None

    @guarded
    def _on_live_no(self, _: object = None) -> None:
        self.live_ask.layout.display = "none"
        self.live_box.value = pre("Nothing was run.")

    @guarded
    def _on_live_yes(self, _: object = None) -> None:
        self.live_ask.layout.display = "none"
        self.live_box.value = run_live(self.session, lambda p: snapshot(p, self._cache))
