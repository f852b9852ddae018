"""A trained conv_ae run opened from its folder alone (``seisjax.load_run``): the family's operations on arrays."""

from __future__ import annotations

from seisjax.conv_ae.model import MODELS
from seisjax.train.restore import Run

__all__ = ["ConvAERun"]


class ConvAERun(Run):
    """See :class:`seisjax.train.restore.Run`."""

    task_name = "autoencoder"
    models = MODELS
