"""Experiment configs: loading with variants, typed overrides, unknown keys, hashing, saving."""

import ast
import json

import pytest

from seisjax.config import (apply_overrides, base_config, config_hash, diff_configs, load_config,
                            load_saved_config, parse_override_args, parse_variant, save_config)
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
    with pytest.raises(InputError, match=r"unknown variant word 'bogus' \(known: size: full, quick, toy\)"):
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


def test_variant_words_and_groups():
    groups = dict(size=("full", "quick"), stage=("dec", "pretrain"))
    assert vars(parse_variant(None, **groups)) == {"size": "full", "stage": "dec"}
    assert vars(parse_variant("quick,pretrain", **groups)) == {"size": "quick", "stage": "pretrain"}
    assert vars(parse_variant("stage=pretrain", **groups)) == {"size": "full", "stage": "pretrain"}
    with pytest.raises(InputError, match=r"unknown variant word 'quik' \(known: size: full, quick; stage: dec, pretrain\)"):
        parse_variant("quik", **groups)
    with pytest.raises(InputError, match="gives size twice"):
        parse_variant("quick,full", **groups)
    with pytest.raises(InputError, match="unknown variant 'stage=quick'"):
        parse_variant("stage=quick", **groups)


def test_unknown_key_names_the_nearest_ones():
    config = base_config()
    with pytest.raises(InputError, match=r"did you mean optim\.clip_norm"):
        apply_overrides(config, ["optim.clipnorm=1"])


def test_a_pair_of_floats_stays_floats():
    config = base_config()
    with config.unlocked():
        config.band = (0.5, 2.0)
    apply_overrides(config, ["band=(1,10)"])
    assert config.band == (1.0, 10.0) and all(isinstance(v, float) for v in config.band)


def test_configs_in_a_package_import_each_other(tmp_path):
    package = tmp_path / "myexperiments"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "base.py").write_text(EXPERIMENT)
    (package / "derived.py").write_text(
        "from myexperiments import base\n\n"
        "def get_config(arg=None):\n    c = base.get_config(arg)\n    c.name = 'derived ' + c.name\n    return c\n")
    assert load_config(f"{package / 'derived.py'}:quick").name == "derived quick"


EXPERIMENTS = sorted(p for p in (REPO / "experiments").glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_builds_on_the_base_config(path):
    """The engine's sections are written once (seisjax.config.base_config): an experiment changes
    their values, never their keys."""
    config = load_config(str(path))
    base = base_config()
    for section in ("optim", "train", "distributed", "debug"):
        assert set(config[section].keys()) == set(base[section].keys()), section
    assert set(base.eval.keys()) <= set(config.eval.keys())
    source = path.read_text()
    for section in ("optim", "train", "eval", "distributed", "debug"):
        assert f"config.{section} = " not in source, f"{path.name} builds config.{section} itself"
    assert len(ast.get_docstring(ast.parse(source)).splitlines()) <= 22, "docstring: command, runtime, headline"
