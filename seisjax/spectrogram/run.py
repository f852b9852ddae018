"""A trained spectrogram run opened from its folder alone (``seisjax.load_run``): the family's operations on arrays."""

from __future__ import annotations

from seisjax.spectrogram.model import MODELS
from seisjax.train.restore import Run

__all__ = ["SpectrogramRun"]


class SpectrogramRun(Run):
    """See :class:`seisjax.train.restore.Run`."""

    task_name = "spectral_vae"
    models = MODELS
