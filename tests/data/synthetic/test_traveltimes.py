"""The TauP travel-time grids against direct TauP calls."""

import numpy as np

from seisjax.data.synthetic import TravelTimeTable
from tests.data.synthetic.conftest import first_arrival


def test_travel_time_table_where_branches_change():
    """Between 8 and 10 degrees from a 243 km deep source, iasp91's first P changes from the 'p' to
    the 'P' branch; the interpolated first arrival still follows TauP there (not one branch's end)."""
    table = TravelTimeTable("iasp91", {"P": ("p", "P", "Pn")}, (240.0, 250.0), (7.99, 11.99), 10.0, 2.0)
    distances = np.array([8.5, 9.3, 9.9, 11.0])
    got = table("P", 243.3, distances)["time"]
    expected = [first_arrival(243.3, d, ("p", "P", "Pn")).time for d in distances]
    np.testing.assert_allclose(got, expected, atol=0.5)
