"""The SymAE scripts' own logic: the extraction sweep's typed settings. (The noise-free scoring's
overrides are tested with the synthetic configs, tests/data/synthetic/test_config.py.)"""

import pytest

from seisjax.errors import InputError
from tests.symae.conftest import load_script


def test_extraction_sweep_settings_are_typed_and_checked():
    sweep = load_script("symae_extraction_sweep")
    name, kwargs = sweep.parse_setting("mix:steps=300,alpha=1.0,optimizer=adam,shift_prior=0")
    assert name == "mix" and kwargs == {"steps": 300, "alpha": 1.0, "optimizer": "adam", "shift_prior": 0.0}
    assert isinstance(kwargs["steps"], int) and isinstance(kwargs["shift_prior"], float)
    assert sweep.parse_setting("default:") == ("default", {})
    with pytest.raises(InputError, match="unknown key 'step'"):
        sweep.parse_setting("typo:step=3")

