"""The demo (``python -m seisjax demo``): its data follows ``--config.data.synthetic.*``, and data
made with another config is refused before any training."""

import pytest

from seisjax.data.synthetic import synthesize
from seisjax.errors import InputError
from seisjax.symae.demo import run as run_demo
from seisjax.symae.demo import symae_config


def test_demo_set_changes_the_data_and_refuses_data_made_otherwise(tmp_path):
    noisy = symae_config(tmp_path / "data" / "teleseismic-p",
                         overrides=["data.synthetic.events=1", "data.synthetic.noise.snr=(0.2, 2.0)"])
    synthesize(noisy.data.synthetic, noisy.data.path, figure=False, progress=False)
    one = "data.synthetic.events=1"
    # other noise than the data in the workdir: refused before any training, naming the key
    with pytest.raises(InputError, match=r"another config \(noise.snr differ.*--overwrite"):
        run_demo(tmp_path, overrides=[one, "data.synthetic.noise.snr=(1.0, 3.0)"])
    with pytest.raises(InputError, match=r"another config \(noise.snr differ"):
        run_demo(tmp_path, overrides=[one])
    with pytest.raises(InputError, match="noise.snrr"):
        run_demo(tmp_path, overrides=[one, "data.synthetic.noise.snrr=(1.0, 3.0)"])
    assert not (tmp_path / "symae").exists()
