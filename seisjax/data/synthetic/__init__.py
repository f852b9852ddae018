"""Physics-based synthetic seismograms with ground truth: seisjax's built-in data.

``synthesize(scenario_config(scenario), out_dir)`` (or ``python -m seisjax data synth``) writes a
SeisBench-format dataset (``metadata.csv`` + ``waveforms.hdf5``) through
:class:`~seisjax.data.dataset.DatasetWriter`, ``truth.h5`` with everything needed to score a method,
the resolved ``config.json`` and a figure in ``figures/``. Every physical parameter is in
:func:`default_config`, and a config (its seed included) fixes every draw.

Two scenarios: ``teleseismic-p`` (deep earthquakes recorded at hundreds of stations at 30-90 degrees,
vertical P displacement, for SymAE) and ``local`` (three-component velocity records of local and
teleseismic events on a fixed network of named stations, for clustering, the spectrogram VAE/CVAE
and the LSTM AE). Each module documents the part of the physics it models:

- :mod:`.config`: the scenario configs and their validation;
- :mod:`.earthquakes`: locations, magnitudes, mechanisms and source time functions;
- :mod:`.traveltimes`: TauP travel times on interpolated grids, and the velocity model;
- :mod:`.physics`: radiation patterns, free-surface coefficients, attenuation, site and instrument
  responses;
- :mod:`.noise`: Peterson-model ground noise and the SNR;
- :mod:`.teleseismic` and :mod:`.local`: the networks, records and rows of each scenario;
- :mod:`.geometry`, :mod:`.streams`, :mod:`.metadata`: spherical geometry, the random streams, the
  columns both scenarios write;
- :mod:`.truth`: the ``truth.h5`` writer and reader; :mod:`.figures`: the overview figure;
- :mod:`.generator`: the driver, :func:`synthesize`.
"""

from seisjax.data.synthetic.config import SCENARIOS, default_config, flatten_config, scenario_config
from seisjax.data.synthetic.generator import events_for_traces, synthesize
from seisjax.data.synthetic.traveltimes import TravelTimeTable
from seisjax.data.synthetic.truth import read_truth

__all__ = ["SCENARIOS", "default_config", "scenario_config", "flatten_config", "synthesize", "read_truth",
           "events_for_traces", "TravelTimeTable"]
