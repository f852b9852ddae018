"""Scenario configs: typed overrides, errors that name the key, and the ``data synth`` command."""

from __future__ import annotations

import pytest

from seisjax.cli import main as cli_main
from seisjax.config import apply_overrides
from seisjax.data.dataset import Dataset
from seisjax.data.synthetic import default_config, read_truth, scenario_config
from seisjax.errors import InputError
from tests.data.synthetic.conftest import TELE_SMALL


def test_overrides_are_type_checked():
    cfg = default_config("local")
    apply_overrides(cfg, ["noise.snr=(2, 20)", "network.code=XX", "propagation.q_p=500", "noise.enabled=false"])
    assert cfg.noise.snr == (2.0, 20.0) and cfg.network.code == "XX" and cfg.propagation.q_p == 500.0
    assert cfg.noise.enabled is False and isinstance(cfg.propagation.q_p, float)
    with pytest.raises(InputError, match="propagation.qp"):
        apply_overrides(cfg, ["propagation.qp=3"])
    with pytest.raises(InputError, match="noise.snr"):
        scenario_config("local", {"noise.snr": (1.0, 2.0, 3.0)})
    with pytest.raises(InputError, match="network.n_stations"):
        apply_overrides(cfg, ["network.n_stations=2.5"])
    with pytest.raises(InputError, match="is a section"):
        apply_overrides(cfg, ["noise=3"])


def test_cli_reports_bad_keys_and_ranges(tmp_path, capsys):
    code = cli_main(["data", "synth", "--scenario", "local", "--out", str(tmp_path / "x"), "--config.noise.snrr=(1,2)"])
    assert code == 2 and "noise.snrr" in capsys.readouterr().err
    code = cli_main(["data", "synth", "--scenario", "teleseismic-p", "--out", str(tmp_path / "y"),
                     "--config.source.depth_km=(600,100)"])
    assert code == 2 and "source.depth_km" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_cli_writes_a_dataset(tmp_path, capsys):
    args = ["data", "synth", "--scenario", "teleseismic-p", "--out", str(tmp_path / "cli"), "--config.events=1",
            "--config.seed", "5", "--no-figure", "--quiet"]
    for key, value in TELE_SMALL.items():
        args += [f"--config.{key}={value}"]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "traces of 1 teleseismic-p events" in out
    assert len(Dataset(tmp_path / "cli")) == read_truth(tmp_path / "cli")["attrs"]["n_traces"] > 0
    assert cli_main(args) == 2 and "exists" in capsys.readouterr().err  # no silent overwrite
