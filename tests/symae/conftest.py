import pytest

from seisjax.data.dataset import Dataset
from seisjax.data.synthetic import scenario_config, synthesize
from seisjax.symae.data import prepare_symae_groups
from tests.conftest import load_file

# Dense arrays of 28 stations within 2 degrees, so that (event, pixel) groups of more than 20 exist
# in 3 events; records just long enough for the 200 s window at 1 Hz with its margins.
TINY = ["stations.n_scattered=0", "stations.n_arrays=10", "stations.array_size=28",
        "stations.array_radius_deg=2.0", "source.depth_km=(100.0, 200.0)", "window.pre_p_s=80.0",
        "window.post_p_s=180.0"]
SETTINGS = {"pick_column": "trace_p_predicted_sample"}


@pytest.fixture(scope="module")
def tele(tmp_path_factory):
    """A tiny synthetic teleseismic-p dataset with its truth, and its SymAE preparation."""
    path = tmp_path_factory.mktemp("tele") / "data"
    synthesize(scenario_config("teleseismic-p", TINY, events=3), path, figure=False, progress=False)
    dataset = Dataset(path)
    yield dataset, prepare_symae_groups(dataset, SETTINGS)
    dataset.close()


def load_script(name: str):
    """``scripts/<name>.py`` as a module (scripts are not a package)."""
    return load_file(f"scripts/{name}.py")
