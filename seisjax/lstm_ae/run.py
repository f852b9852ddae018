"""A trained lstm_ae run opened from its folder alone (``seisjax.load_run``): the family's operations on arrays."""

from __future__ import annotations

from seisjax.lstm_ae.model import MODELS
from seisjax.train.restore import Run

__all__ = ["LSTMAERun"]


class LSTMAERun(Run):
    """See :class:`seisjax.train.restore.Run`."""

    task_name = "lstm_ae"
    models = MODELS
