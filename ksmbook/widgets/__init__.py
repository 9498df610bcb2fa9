"""Jupyter widgets that drive the simulated kernel: `Explorer` (address spaces and
madvise), `PredictExplorer` (the same, asking the reader to predict each call first)
and `KsmdStepper` (ksmd, page by page).

    from ksmbook.widgets import Explorer
    Explorer(profile="seed", config_ksm=True)
"""

from __future__ import annotations

from .common import InputError
from .explorer import MAP_KINDS, PROTS, Explorer
from .ksmd import KsmdStepper
from .predict import PredictExplorer

__all__ = ["Explorer", "PredictExplorer", "KsmdStepper", "InputError", "MAP_KINDS", "PROTS"]
