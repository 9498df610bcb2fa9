"""This machine's kernel behind the simulator's API: the live side of the book.

Three layers, each importing only those before it:

* ``ksmbook.live.harness``: worker processes confined to an arena (``LiveSession``,
  ``Worker``) and the simulator's ``Kernel``/``Process`` API on them (``LiveKernel``,
  ``LiveTask``), in simulator addresses;
* ``ksmbook.live.ksmd``: this machine's ksmd, driven one full scan or batch at a time under
  the project's lock with every knob restored (``session``, ``KsmKnobs``), behind the
  simulated ksmd's API (``LiveKsmd``);
* ``ksmbook.live.replay``: a scenario run by the scenario's own Runner on a ``LiveKernel``
  (``replay``).

Every live measurement goes through them: the scenario replay, the ksmd experiment
(``ksmbook.experiment.measure``), the side-channel probe and the benchmarks.
"""

from .harness import (
    DEFAULT_ARENA_BASE,
    DEFAULT_ARENA_SIZE,
    FORBIDDEN_ADVICE,
    SIM_MMAP_TOP,
    Arena,
    KsmShared,
    LiveError,
    LiveFile,
    LiveKernel,
    LiveRefused,
    LiveSession,
    LiveTask,
    LiveVMA,
    Worker,
    WorkerDied,
    WorkerTimeout,
    available,
    parse_smaps,
)
from .ksmd import read_ksm_sysfs
from .replay import LiveRunner, replay

__all__ = ["DEFAULT_ARENA_BASE", "DEFAULT_ARENA_SIZE", "SIM_MMAP_TOP", "FORBIDDEN_ADVICE", "Arena",
           "KsmShared", "LiveFile", "LiveKernel", "LiveRunner", "LiveTask", "LiveVMA", "Worker",
           "LiveSession", "LiveError", "LiveRefused", "WorkerDied", "WorkerTimeout", "available",
           "parse_smaps", "read_ksm_sysfs", "replay"]
