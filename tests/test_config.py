"""Experiment configs: loading with variants, typed overrides, unknown keys, hashing, saving."""

import json

import pytest

from seisjax.config import (apply_overrides, config_hash, diff_configs, load_config, load_saved_config,
                            parse_override_args, save_config)
from seisjax.errors import InputError
from tests.conftest import REPO

CONV_AE = str(REPO / "experiments" / "conv_ae.py")

EXPERIMENT = '''
import ml_collections
from ml_collections import config_dict

def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.name = "base"
    c.flag = False
    c.optim = ml_collections.ConfigDict(dict(lr=1e-3, stages=((2, 1e-3, 0.9),), frozen=()))
    c.train = ml_collections.ConfigDict(dict(num_steps=config_dict.placeholder(int), note=None))
    if arg == "quick":
        c.name = "quick"
    return c
'''


@pytest.fixture
def experiment(tmp_path):
    path = tmp_path / "exp.py"
    path.write_text(EXPERIMENT)
    return path


def test_variant_selects_get_config_argument(experiment):
    assert load_config(str(experiment)).name == "base"
    assert load_config(f"{experiment}:quick").name == "quick"


def test_overrides_are_typed_like_the_field(experiment):
    config = load_config(str(experiment), ["seed=7", "optim.lr=2e-4", "flag=true", "name=other",
                                          "optim.stages=((1, 0.5, 1.0), (3, 0.1, 0.9))",
                                          "optim.frozen=('encoder/*',)", "train.num_steps=12",
                                          "train.note=[1, 2]"])
    assert config.seed == 7 and isinstance(config.seed, int)
    assert config.optim.lr == 2e-4 and isinstance(config.optim.lr, float)
    assert config.flag is True
    assert config.name == "other"
    assert config.optim.stages == ((1, 0.5, 1.0), (3, 0.1, 0.9))
    assert config.optim.frozen == ("encoder/*",)
    assert config.train.num_steps == 12 and isinstance(config.train.num_steps, int)
    assert config.train.note == [1, 2]  # an unset field takes a Python literal


def test_unknown_key_is_an_error_naming_it(experiment):
    with pytest.raises(InputError, match=r"optim\.lrr.*known: frozen, lr, stages"):
        load_config(str(experiment), ["optim.lrr=1"])
    with pytest.raises(InputError, match="'nosection.lr'"):
        load_config(str(experiment), ["nosection.lr=1"])


def test_bad_values_and_sections_are_errors(experiment):
    with pytest.raises(InputError, match="seed='seven'.*int"):
        load_config(str(experiment), ["seed=seven"])
    with pytest.raises(InputError, match="flag='maybe'"):
        load_config(str(experiment), ["flag=maybe"])
    with pytest.raises(InputError, match="is a section"):
        load_config(str(experiment), ["optim=3"])
    with pytest.raises(InputError, match="placeholder|int"):
        load_config(str(experiment), ["train.num_steps=1.5"])


def test_missing_file_and_unknown_variant(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_config(str(tmp_path / "nope.py"))
    with pytest.raises(InputError, match="unknown variant 'bogus'"):
        load_config(f"{CONV_AE}:bogus")


def test_command_line_spellings():
    assert parse_override_args(["--config.a.b=1", "--config.c", "x y"]) == ["a.b=1", "c=x y"]
    with pytest.raises(InputError, match="unexpected argument"):
        parse_override_args(["--other=1"])


def test_hash_and_saved_config_round_trip(experiment, tmp_path):
    config = load_config(str(experiment), ["seed=3"])
    path = save_config(config, tmp_path / "run")
    reloaded = load_saved_config(tmp_path / "run")
    # Tuples come back as lists from JSON; the hash is of the canonical JSON, so it is unchanged.
    assert config_hash(reloaded) == config_hash(config)
    assert json.loads(path.read_text())["seed"] == 3
    assert diff_configs(config, reloaded) == []
    other = load_config(str(experiment), ["seed=4"])
    assert config_hash(other) != config_hash(config)
    assert diff_configs(config, other) == ["seed"]
    apply_overrides(other, {"optim.lr": 0.5})
    assert diff_configs(config, other) == ["optim.lr", "seed"]


def test_conv_ae_quick_docstring_holds_its_launch_command():
    import importlib.util

    spec = importlib.util.spec_from_file_location("conv_ae_cfg", CONV_AE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "python -m seisjax train --config experiments/conv_ae.py:quick --workdir" in module.__doc__
    quick = load_config(f"{CONV_AE}:quick")
    assert quick.task.name == "autoencoder" and quick.model.name == "conv_ae"
    assert quick.data.window % 2 ** len(quick.model.channels) == 0
