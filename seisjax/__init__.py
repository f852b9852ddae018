"""seisjax: unsupervised deep learning on seismic waveforms in JAX.

``seisjax.load_run(workdir)`` opens a trained run for inference from its folder alone; the rest is
in the subpackages (``seisjax.symae``, ``seisjax.spectrogram``, ``seisjax.lstm_ae``, ``seisjax.dec``,
``seisjax.data``, ...).
"""

__version__ = "0.1.0"
__all__ = ["load_run"]


def load_run(workdir, step="latest"):
    """The trained run in ``workdir`` at checkpoint ``step`` with its family's operations on arrays
    (:func:`seisjax.families.load_run`)."""
    from seisjax.families import load_run as _load_run  # lazy: `python -m seisjax --help` imports this package

    return _load_run(workdir, step)
