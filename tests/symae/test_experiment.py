"""experiments/symae.py: its variants, one syntax for all of them, and the demo's sizes."""

import pytest

from seisjax.config import load_config
from seisjax.errors import InputError
from seisjax.symae.demo import DEMO_VARIANTS, symae_config
from tests.conftest import REPO

CONFIG = str(REPO / "experiments" / "symae.py")


def test_demo_variants_differ_only_in_the_training_length(tmp_path):
    configs = {v: symae_config(tmp_path, variant=v) for v in DEMO_VARIANTS}
    steps = {v: sum(epochs for epochs, _, _ in c.optim.stages) for v, c in configs.items()}
    assert steps["quick"] < steps["medium"] < steps["long"] < steps["xlong"]
    for variant, config in configs.items():
        assert config.data.path == str(tmp_path) and config.data.source == "synthetic"
        assert config.data.to_dict() == configs["quick"].data.to_dict(), variant
        assert config.model.to_dict() == configs["quick"].model.to_dict(), variant
    with pytest.raises(InputError, match="variant = 'huge'.*quick, medium, long, xlong"):
        symae_config(tmp_path, variant="huge")


def test_variants_are_a_size_or_the_alaska_data():
    quick = load_config(f"{CONFIG}:quick")
    assert load_config(f"{CONFIG}:size=quick,data=synthetic").to_dict() == quick.to_dict()
    alaska = load_config(f"{CONFIG}:alaska")
    assert alaska.data.source == "dataset" and alaska.data.sampling_rate == 5.0
    assert load_config(f"{CONFIG}:data=alaska,size=full").to_dict() == alaska.to_dict()
    with pytest.raises(InputError, match="alaska has its own sizes and schedule; leave out 'quick'"):
        load_config(f"{CONFIG}:alaska,quick")
    with pytest.raises(InputError, match="unknown variant word 'huge'.*size: full, quick, medium, long, xlong"):
        load_config(f"{CONFIG}:huge")
