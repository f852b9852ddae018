"""seisjax: unsupervised deep learning on seismic waveforms in JAX."""

__version__ = "0.1.0"
