"""HEALPix pixels of stations seen from the source, (event, pixel) groups, and the
Earthquake-SymAE HDF5 layout."""

import importlib.util

import h5py
import healpy
import numpy as np
import obspy
import pandas as pd
import pytest
from obspy.geodetics import gps2dist_azimuth, locations2degrees

from seisjax.data.dataset import Dataset
from seisjax.data.grouping import assign_pixels, group_traces, read_symae_hdf5, source_centred_angles
from seisjax.errors import InputError
from tests.conftest import REPO


def destination(lat, lon, distance_deg, azimuth_deg):
    """Point at ``distance_deg`` along ``azimuth_deg`` from (lat, lon) on a sphere."""
    lat, lon, d, az = (np.radians(np.asarray(v, dtype=float)) for v in (lat, lon, distance_deg, azimuth_deg))
    lat2 = np.arcsin(np.sin(lat) * np.cos(d) + np.cos(lat) * np.sin(d) * np.cos(az))
    lon2 = lon + np.arctan2(np.sin(az) * np.sin(d) * np.cos(lat), np.cos(d) - np.sin(lat) * np.sin(lat2))
    return np.degrees(lat2), (np.degrees(lon2) + 180) % 360 - 180


def test_station_due_north_at_45_degrees():
    expected = healpy.ang2pix(4, np.radians(45.0), 0.0)
    assert assign_pixels(0.0, 0.0, 45.0, 0.0) == expected
    assert assign_pixels(-30.0, 100.0, 15.0, 100.0) == expected  # the same direction elsewhere
    # due east along the equator: azimuth 90 deg
    assert assign_pixels(0.0, 0.0, 0.0, 45.0) == healpy.ang2pix(4, np.radians(45.0), np.radians(90.0))
    assert healpy.nside2npix(4) == 192
    assert assign_pixels(0.0, 0.0, np.nan, 10.0) == -1


def test_distance_and_azimuth_match_obspy():
    rng = np.random.default_rng(0)
    src_lat, src_lon, sta_lat, sta_lon = rng.uniform(-80, 80, (4, 200))
    distance, azimuth = source_centred_angles(src_lat, src_lon, sta_lat, sta_lon)
    reference = [locations2degrees(*v) for v in zip(src_lat, src_lon, sta_lat, sta_lon)]
    np.testing.assert_allclose(np.degrees(distance), reference, atol=1e-9)  # both spherical
    # obspy's azimuth is on the WGS84 ellipsoid: agreement within 0.5 deg away from the antipode
    ellipsoidal = np.array([gps2dist_azimuth(*v)[1] for v in zip(src_lat, src_lon, sta_lat, sta_lon)])
    keep = np.degrees(distance) < 150
    diff = (np.degrees(azimuth) - ellipsoidal + 180) % 360 - 180
    assert np.abs(diff[keep]).max() < 0.5


def test_geometry_of_a_real_event_from_sac_headers(shared_data):
    stream = obspy.read(str(shared_data / "mtuq_alaska" / "20090407201255351" / "*.z"))
    sac = [tr.stats.sac for tr in stream]
    distance, azimuth = source_centred_angles([s.evla for s in sac], [s.evlo for s in sac],
                                              [s.stla for s in sac], [s.stlo for s in sac])
    np.testing.assert_allclose(distance * 6371.0, [s.dist for s in sac], rtol=0.01)
    diff = (np.degrees(azimuth) - np.array([s.az for s in sac]) + 180) % 360 - 180
    assert np.abs(diff).max() < 0.5
    pixels = assign_pixels(sac[0].evla, sac[0].evlo, [s.stla for s in sac], [s.stlo for s in sac])
    np.testing.assert_array_equal(pixels, healpy.ang2pix(4, distance, azimuth))


def synthetic_metadata():
    """Two events; stations placed at the centres of chosen pixels (plus jitter)."""
    rng = np.random.default_rng(5)
    rows = []
    plan = {("ev_a", 10.0, 20.0): {60: 25, 100: 5}, ("ev_b", -40.0, 150.0): {60: 21, 130: 20}}
    for (event, lat, lon), pixels in plan.items():
        for pixel, n_stations in pixels.items():
            theta, phi = healpy.pix2ang(4, pixel)
            dist = np.degrees(theta) + rng.uniform(-1, 1, n_stations)
            az = np.degrees(phi) + rng.uniform(-1, 1, n_stations)
            sta_lat, sta_lon = destination(lat, lon, dist, az)
            for k in range(n_stations):
                rows.append({"source_id": event, "source_latitude_deg": lat, "source_longitude_deg": lon,
                             "station_latitude_deg": sta_lat[k], "station_longitude_deg": sta_lon[k],
                             "station_network_code": "XX", "station_code": f"{event}_{pixel}_{k}"})
    return pd.DataFrame(rows)


def test_groups_respect_min_stations():
    meta = synthetic_metadata()
    groups = group_traces(meta, nside=4, min_stations=21)
    assert list(zip(groups["source_id"], groups["healpix_pixel"])) == [("ev_a", 60), ("ev_b", 60)]
    assert list(groups["n_stations"]) == [25, 21]
    for _, group in groups.iterrows():  # indices point at the group's own rows
        rows = meta.iloc[group["trace_indices"]]
        assert (rows["source_id"] == group["source_id"]).all()
        assert rows["station_code"].str.contains(f"_{group['healpix_pixel']}_").all()
    assert len(group_traces(meta, min_stations=5)) == 4
    assert len(group_traces(meta, min_stations=26)) == 0

    # a second trace of the same station adds a trace, not a station; a row without coordinates is
    # reported, not silently dropped
    extra = pd.concat([meta, meta.iloc[[0]], meta.iloc[[1]].assign(station_latitude_deg=np.nan)],
                      ignore_index=True)
    with pytest.warns(UserWarning, match="1 trace"):
        groups = group_traces(extra, min_stations=21)
    assert groups.loc[0, "n_stations"] == 25 and groups.loc[0, "n_traces"] == 26
    assert list(groups.attrs["unassigned"]) == [len(extra) - 1]
    with pytest.raises(InputError, match="coordinate columns"):
        group_traces(meta.drop(columns=["station_latitude_deg"]))


def write_symae_file(path):
    rng = np.random.default_rng(2)
    traces = {}
    with h5py.File(path, "w") as f:
        layout = {"20130524_054448_okt": {"12": 22, "40": 3}, "fiji_2018": {"7": 21}}
        for event, pixels in layout.items():
            group = f.create_group(event)
            group.attrs["source_magnitude"] = 6.1
            for pixel, n in pixels.items():
                for k in range(n):
                    data = rng.standard_normal(200 if k else 150).astype(np.float32)
                    f[f"{event}/{pixel}/ST{k:02d}"] = data
                    traces[f"{event}/{pixel}/ST{k:02d}"] = data
        f["fiji_2018/7/ST03"][5] = np.nan  # bad: NaN
        del traces["fiji_2018/7/ST03"]
        f["fiji_2018/7/BAD2D"] = np.zeros((2, 10), dtype=np.float32)  # bad: not 1-D
    return traces


def test_read_symae_hdf5_round_trip(tmp_path):
    source = tmp_path / "deep_EQs.hdf5"
    traces = write_symae_file(source)
    summary = read_symae_hdf5(source, tmp_path / "ds", sampling_rate=2.0, progress=False)
    assert (summary.n_traces, summary.n_events, summary.n_groups) == (len(traces), 2, 3)
    assert sorted(summary.rejected["trace_id"]) == ["fiji_2018/7/BAD2D", "fiji_2018/7/ST03"]
    rejected = pd.read_csv(tmp_path / "ds" / "rejected.csv")
    assert set(rejected["reason"]) == {"NaN or inf samples", "not a 1-D trace (shape (2, 10))"}

    with Dataset(tmp_path / "ds") as ds:
        assert ds.component_order == "Z" and ds.sampling_rate == 2.0 and len(ds) == len(traces)
        meta = ds.metadata
        for i in range(len(ds)):
            key = meta["trace_name_original"].iat[i]
            np.testing.assert_array_equal(ds.get_waveforms(i)[0], traces[key])  # bit for bit
            event, pixel, station = key.split("/")
            assert (meta["source_id"].iat[i], int(meta["healpix_pixel"].iat[i]),
                    meta["station_code"].iat[i]) == (event, int(pixel), station)
        assert (meta["source_magnitude"] == 6.1).all()
        # the pixel groups of the file; fiji_2018/7 lost a trace and keeps only 20 stations
        groups = group_traces(meta, min_stations=21)
        assert list(zip(groups["source_id"], groups["healpix_pixel"])) == [("20130524_054448_okt", 12)]


def test_read_symae_hdf5_needs_a_sampling_rate_and_traces(tmp_path):
    source = tmp_path / "f.hdf5"
    write_symae_file(source)
    with pytest.raises(InputError, match="sampling_rate"):
        read_symae_hdf5(source, tmp_path / "ds", progress=False)
    empty = tmp_path / "empty.hdf5"
    with h5py.File(empty, "w") as f:
        f["ev/1/ST"] = np.full(10, np.nan)
    with pytest.raises(InputError, match="no usable trace.*NaN"):
        read_symae_hdf5(empty, tmp_path / "ds2", sampling_rate=1.0, progress=False)
    (tmp_path / "junk.hdf5").write_text("not hdf5")
    with pytest.raises(InputError, match="cannot open"):
        read_symae_hdf5(tmp_path / "junk.hdf5", tmp_path / "ds3", sampling_rate=1.0, progress=False)


def test_convert_symae_script(tmp_path, capsys):
    script = REPO / "scripts" / "symae_convert_hdf5.py"
    spec = importlib.util.spec_from_file_location("convert_symae_hdf5", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    source = tmp_path / "deep_EQs.hdf5"
    traces = write_symae_file(source)
    assert module.main([str(source), "--out", str(tmp_path / "ds"), "--sampling-rate", "1", "--quiet"]) == 0
    with Dataset(tmp_path / "ds") as ds:
        assert len(ds) == len(traces) and ds.sampling_rate == 1.0
    assert module.main([str(source), "--out", str(tmp_path / "ds2")]) == 2
    assert "sampling_rate" in capsys.readouterr().err
