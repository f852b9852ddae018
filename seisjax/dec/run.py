"""A trained dec run opened from its folder alone (``seisjax.load_run``): the family's operations on arrays."""

from __future__ import annotations

from seisjax.dec.model import MODELS
from seisjax.train.restore import Run

__all__ = ["DECRun"]


class DECRun(Run):
    """See :class:`seisjax.train.restore.Run`."""

    task_name = "dec"
    models = MODELS
