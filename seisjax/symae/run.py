"""A trained symae run opened from its folder alone (``seisjax.load_run``): the family's operations on arrays."""

from __future__ import annotations

from seisjax.symae.model import MODELS
from seisjax.train.restore import Run

__all__ = ["SymAERun"]


class SymAERun(Run):
    """See :class:`seisjax.train.restore.Run`."""

    task_name = "symae"
    models = MODELS
