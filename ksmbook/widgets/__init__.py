"""Jupyter widgets that drive the simulated kernel: `Explorer`.

    from ksmbook.widgets import Explorer
    Explorer(profile="seed", config_ksm=True)
"""

from __future__ import annotations

from .explorer import MAP_KINDS, PROTS, Explorer, InputError, Step

__all__ = ["Explorer", "InputError", "Step", "MAP_KINDS", "PROTS"]
