"""Positions as tables write them: projected coordinates (UTM, web Mercator, metres from a point: ``crs``),
and degrees with hemisphere letters or in degrees, minutes and seconds.

Real drive tests and fingerprint sets often give easting / northing in metres (UJIIndoorLoc: web Mercator);
the table reader converts them to WGS84 when told their coordinate reference system, and says what it expected
when it is not told, or told wrong. Site lists typed by people give 51°12'48"N.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyproj import Transformer

from rflocal_core.dataset import open_dataset
from rflocal_core.dataset.table_import import import_table
from rflocal_core.errors import InvalidInputError, TableFormatError
from rflocal_core.geo import parse_crs, to_wgs84
from rflocal_core.measurements.table import read_nodes, read_table
from tests.page_support import import_tab, import_with

UTM_COLUMNS = {"node": "PCI", "lat": "northing", "lon": "easting", "rss_dbm": "rsrp"}
UTM_GROUP = ("northing", "easting", "device")


def _ellipsoid_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Distance on the WGS84 ellipsoid over a short segment, from its radii of curvature (no projection library)."""
    a, e2 = 6_378_137.0, 0.00669437999014
    phi = math.radians((lat1 + lat2) / 2)
    w = 1 - e2 * math.sin(phi) ** 2
    meridian, normal = a * (1 - e2) / w**1.5, a / math.sqrt(w)
    return math.hypot(math.radians(lat2 - lat1) * meridian, math.radians(lon2 - lon1) * normal * math.cos(phi))


def _duke(shared_data: Path, rows: int) -> pd.DataFrame:
    src = shared_data / "real" / "duke_cbrs" / "Duke_CBRS.csv"
    if not src.is_file():
        pytest.skip(f"{src} is absent")
    return pd.read_csv(src, nrows=rows)


def _duke_utm(shared_data: Path, folder: Path, rows: int) -> tuple[Path, Path]:
    """The first Duke rows as they are (degrees) and with UTM 17N easting / northing in metres instead."""
    src = _duke(shared_data, rows)
    east, north = Transformer.from_crs(4326, 32617, always_xy=True).transform(src.longitude.to_numpy(),
                                                                             src.latitude.to_numpy())
    degrees, metres = folder / "duke.csv", folder / "duke_utm.csv"
    src.to_csv(degrees, index=False)
    src.assign(easting=east, northing=north).drop(columns=["latitude", "longitude"]).to_csv(metres, index=False)
    return degrees, metres


def _truths(table: Any) -> dict[str, tuple[float, float]]:
    return {s.id: (s.truth.lat, s.truth.lon) for s in table.measurements.samples if s.truth is not None}


def _read_wide(frame: pd.DataFrame, path: Path, lat: str, lon: str, crs: str | None) -> Any:
    """Antwerp's gateway columns beside truth columns ``lat``/``lon`` in ``crs``, written and read as a wide table."""
    frame.to_csv(path, index=False)
    return read_table(path, columns={"truth_lat": lat, "truth_lon": lon}, mode="emitter", node_columns=["BS *"],
                      missing=["-200"], crs=crs)


def _ok(proc: Any) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _dms(value: float, letters: str) -> str:
    """36.00407567 -> 36°00'14.6724"N: degrees, minutes, seconds to 4 decimals (3 mm), a hemisphere letter."""
    letter = letters[0] if value >= 0 else letters[1]
    value = abs(value)
    degrees, minutes = int(value), int(value * 60 % 60)
    seconds = value * 3600 - degrees * 3600 - minutes * 60
    return f"{degrees}°{minutes:02d}'{seconds:07.4f}\"{letter}"


def _to_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.assign(n=range(len(frame))).to_csv(path, index=False)
    return path


def test_utm_rows_read_as_the_same_rows_in_degrees(shared_data: Path, tmp_path: Path) -> None:
    """Real Duke rows in UTM 17N: the same samples and positions as the file in degrees; distances kept."""
    degrees, metres = _duke_utm(shared_data, tmp_path, 2000)
    ref = read_table(degrees, columns={**UTM_COLUMNS, "lat": "latitude", "lon": "longitude"},
                     group_by=["latitude", "longitude", "device"])
    mine = read_table(metres, columns=UTM_COLUMNS, group_by=UTM_GROUP, crs="EPSG:32617")
    a, b = _truths(ref), _truths(mine)
    assert list(a) == list(b) and len(a) > 1000
    pa, pb = np.array(list(a.values())), np.array(list(b.values()))
    assert np.abs(pa - pb).max() < 1e-7  # degrees: about 1 cm
    assert [len(s.reports) for s in mine.measurements.samples] == [len(s.reports) for s in ref.measurements.samples]
    # independent of pyproj: two rows' grid distance over their distance on the ellipsoid is UTM's scale there,
    # k0 (1 + E^2 / 2R^2) with E their distance from zone 17's central meridian (81 W), about 186 km
    grid = pd.read_csv(metres)
    d_grid = math.hypot(grid.easting[0] - grid.easting[1500], grid.northing[0] - grid.northing[1500])
    lat, lon = to_wgs84(grid.easting[[0, 1500]], grid.northing[[0, 1500]], "EPSG:32617")
    scale = 0.9996 * (1 + (grid.easting[0] - 500_000.0) ** 2 / (2 * 6_371_000.0**2))
    assert d_grid > 100 and abs(d_grid / _ellipsoid_m(lat[0], lon[0], lat[1], lon[1]) / scale - 1) < 2e-5
    assert mine.input_info["crs"] == "EPSG:32617" and ref.input_info["crs"] is None
    assert any("given in EPSG:32617" in note for note in mine.measurements.notes)


def test_messy_projected_cells_are_named_and_wrong_coordinates_refused(shared_data: Path, tmp_path: Path) -> None:
    """A word, a northing of 1e12 (inverse UTM would put it at 32 N) and the wrong or missing crs."""
    _, metres = _duke_utm(shared_data, tmp_path, 300)
    lines = metres.read_text().splitlines()
    head = lines[0].split(",")
    row = lines[5].split(",")
    row[head.index("northing")] = "1e12"
    lines[5] = ",".join(row)
    row = lines[9].split(",")
    row[head.index("easting")] = "east"
    lines[9] = ",".join(row)
    messy = tmp_path / "messy.csv"
    messy.write_text("\n".join(lines) + "\n")
    table = read_table(messy, columns=UTM_COLUMNS, group_by=UTM_GROUP, crs="EPSG:32617")
    issues = table.report.to_dict()["issues"]
    assert issues["lat_out_of_range"]["rows"] == [5] and issues["lat_out_of_range"]["values"][0].startswith("1e+12")
    assert "area of use of EPSG:32617" in issues["lat_out_of_range"]["detail"]
    assert issues["lon_not_a_number"]["rows"] == [9] and issues["lon_not_a_number"]["values"] == ["east"]
    with pytest.raises(TableFormatError, match="row 9: lon .column .easting..: expected a number, got .east. .*strict"):
        read_table(messy, columns=UTM_COLUMNS, group_by=UTM_GROUP, crs="EPSG:32617", strict=True)
    with pytest.raises(TableFormatError, match=r"column 'northing' \(lat\) holds no value in degrees .*give their crs"):
        read_table(messy, columns=UTM_COLUMNS, group_by=UTM_GROUP)
    swapped = {**UTM_COLUMNS, "lat": "easting", "lon": "northing"}  # valid UTM numbers, 50 degrees off the zone
    with pytest.raises(TableFormatError, match=r"hold no point of EPSG:32617 in its area of use .*y \(northing\)"):
        read_table(messy, columns=swapped, group_by=UTM_GROUP, crs="EPSG:32617")
    with pytest.raises(TableFormatError, match="hold no point of EPSG:2056"):  # Swiss metres, not North Carolina
        read_table(messy, columns=UTM_COLUMNS, group_by=UTM_GROUP, crs="EPSG:2056")
    with pytest.raises(InvalidInputError, match="crs: 'EPSG:99999' is not a known coordinate reference system"):
        read_table(messy, columns=UTM_COLUMNS, group_by=UTM_GROUP, crs="EPSG:99999")
    with pytest.raises(InvalidInputError, match="crs: 'EPSG:4978' .* not a two-dimensional"):
        read_table(messy, columns=UTM_COLUMNS, group_by=UTM_GROUP, crs="EPSG:4978")
    assert parse_crs("WGS84") is None and parse_crs(" ") is None and parse_crs("epsg:32617") == "EPSG:32617"


def test_web_mercator_wide_table_and_a_local_frame(shared_data: Path, tmp_path: Path) -> None:
    """Antwerp's messages with web-Mercator positions (as UJIIndoorLoc gives them), and metres from a point."""
    root = shared_data / "real" / "antwerp_lorawan"
    if not (root / "x_val.csv").is_file():
        pytest.skip(f"{root} is absent")
    x, y = pd.read_csv(root / "x_val.csv", nrows=400), pd.read_csv(root / "y_val.csv", nrows=400)
    ref = _read_wide(pd.concat([y, x], axis=1), tmp_path / "deg.csv", "Latitude", "Longitude", None)
    tr = Transformer.from_crs(4326, 3857, always_xy=True)
    mx, my = tr.transform(y.Longitude.to_numpy(), y.Latitude.to_numpy())
    merc = pd.concat([pd.DataFrame({"LATITUDE": my, "LONGITUDE": mx}), x], axis=1)
    mine = _read_wide(merc, tmp_path / "merc.csv", "LATITUDE", "LONGITUDE", "EPSG:3857")
    pa, pb = np.array(list(_truths(ref).values())), np.array(list(_truths(mine).values()))
    assert pa.shape == pb.shape == (400, 2) and np.abs(pa - pb).max() < 1e-7
    aeqd = "+proj=aeqd +lat_0=51.2 +lon_0=4.4 +units=m"  # a local x/y frame in metres, anchored at one point
    ex, ny = Transformer.from_crs(4326, aeqd, always_xy=True).transform(y.Longitude.to_numpy(), y.Latitude.to_numpy())
    local = pd.concat([pd.DataFrame({"y_m": ny, "x_m": ex}), x], axis=1)
    pc = np.array(list(_truths(_read_wide(local, tmp_path / "local.csv", "y_m", "x_m", aeqd)).values()))
    assert np.abs(pa - pc).max() < 1e-7


def test_a_nodes_table_in_the_same_crs(tmp_path: Path) -> None:
    """Node positions in UTM 32N (Munich, columns northing / easting) beside the rows: converted; a node off the
    zone is refused by its row."""
    fwd = Transformer.from_crs(4326, 32632, always_xy=True)
    nodes = {"bs1": (48.1370, 11.5750), "bs2": (48.1400, 11.5800)}
    lines = ["id,northing,easting"]
    for name, (lat, lon) in nodes.items():
        e, n = fwd.transform(lon, lat)
        lines.append(f"{name},{n:.3f},{e:.3f}")
    path = tmp_path / "nodes.csv"
    path.write_text("\n".join(lines) + "\n")
    got = {n.id: (n.lat, n.lon) for n in read_nodes(path, crs="EPSG:32632")}
    for name, (lat, lon) in nodes.items():
        assert abs(got[name][0] - lat) < 1e-7 and abs(got[name][1] - lon) < 1e-7
    e, n = fwd.transform(11.58, 48.14)
    rows = tmp_path / "rows.csv"
    rows.write_text(f"sample,node,rss,n,e\ns1,bs1,-70,{n:.2f},{e:.2f}\ns1,bs2,-80,{n:.2f},{e:.2f}\n")
    table = read_table(rows, columns={"sample": "sample", "node": "node", "rss_dbm": "rss", "lat": "n", "lon": "e"},
                       nodes=path, crs="EPSG:32632")
    assert {n.id: (round(n.lat, 6), round(n.lon, 6)) for n in table.measurements.nodes} == \
        {k: (round(v[0], 6), round(v[1], 6)) for k, v in nodes.items()}
    path.write_text("\n".join([*lines[:2], "bs3,4000000,9000000"]) + "\n")
    with pytest.raises(TableFormatError, match=r"nodes.csv row 2, columns 'northing'/'easting': expected y/x coordinates in "
                                               r"EPSG:32632 of a point in its area of use, got 4000000, 9000000"):
        read_nodes(path, crs="EPSG:32632")


def test_crs_on_the_command_line_import_and_predict(shared_data: Path, tmp_path: Path, workspace: Path,
                                                    run_cli: Any) -> None:
    """``data import --crs`` and ``predict --crs`` on UTM rows; refusals exit 2 with one line naming crs."""

    def cli(*args: str) -> Any:
        return run_cli(list(args), workspace)

    degrees, metres = _duke_utm(shared_data, tmp_path, 3000)
    flags = ["--columns", "node=PCI,lat=northing,lon=easting,rss_dbm=rsrp", "--group-by", ",".join(UTM_GROUP)]
    out = json.loads(_ok(cli("data", "import", str(metres), "--name", "dutm", *flags, "--crs", "EPSG:32617",
                             "--split-block-m", "100")))
    assert out["samples"] > 1000 and open_dataset("dutm").attrs["input"]["crs"] == "EPSG:32617"
    ref = import_table(degrees, name="dref", columns={**UTM_COLUMNS, "lat": "latitude", "lon": "longitude"},
                       group_by=["latitude", "longitude", "device"], split_block_m=100)
    assert out["splits"] == ref.splits  # the same squares: the positions are the same
    run_id = json.loads(_ok(cli("train", "--dataset", "dutm", "--model", "knn")))["run_id"]
    mine = json.loads(_ok(cli("predict", "--run", run_id, "--input", str(metres), *flags, "--crs", "EPSG:32617")))
    theirs = json.loads(_ok(cli("predict", "--run", run_id, "--input", str(degrees), "--columns",
                                "node=PCI,lat=latitude,lon=longitude,rss_dbm=rsrp", "--group-by",
                                "latitude,longitude,device")))
    assert len(mine["predictions"]) == out["samples"]
    assert [p["error_m"] for p in mine["predictions"]] == [p["error_m"] for p in theirs["predictions"]]
    for extra, needle in (((), "give their crs"),
                          (("--crs", "UTM17"), "error: crs: 'UTM17' is not a known coordinate reference system")):
        bad = cli("data", "import", str(metres), "--name", "dutm2", *flags, *extra)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert needle in bad.stderr and bad.stderr.startswith("error: ")
    bad = cli("predict", "--run", run_id, "--input", str(tmp_path / "x.json"), "--crs", "EPSG:32617")
    assert bad.returncode == 2 and "--crs: applies to tables" in bad.stderr


def test_page_imports_projected_rows_and_names_a_bad_crs(shared_data: Path, tmp_path: Path, workspace: Path) -> None:
    """The import tab guesses northing / easting as lat / lon; "Coordinates (CRS)" converts them; errors are shown."""
    _, metres = _duke_utm(shared_data, tmp_path, 1500)
    at = import_tab("duke_utm.csv", metres.read_bytes(), "text/csv")
    assert at.selectbox(key="dg_tab_lat").value == "northing" and at.selectbox(key="dg_tab_lon").value == "easting"
    assert at.multiselect(key="dg_tab_group").value == ["northing", "easting", "device"]
    for texts, needle in (({"dg_import_name": "duke-utm"}, "give their crs, e.g. EPSG:32617"),
                          ({"dg_tab_crs": "EPSG:326170"}, "crs: 'EPSG:326170' is not a known coordinate reference system"),
                          ({"dg_tab_crs": "EPSG:32617", "dg_tab_time_format": "%Q"},
                           "time_format: expected a strftime format")):
        assert needle in import_with(at, **texts).error[0].value
    import_with(at, dg_tab_time_format="")
    assert not at.error, [e.value for e in at.error]
    assert at.success[0].value.startswith("Imported **duke-utm**")
    assert open_dataset("duke-utm").attrs["input"]["crs"] == "EPSG:32617"


def test_degrees_minutes_seconds_and_hemisphere_letters(shared_data: Path, tmp_path: Path) -> None:
    """Real Duke rows with 36°00'14.6724"N / 78.9394644W, and Antwerp's gateway list in DMS: the same positions;
    a letter of the other axis is a bad cell."""
    frame = _duke(shared_data, 400)
    ref = read_table(_to_csv(frame, tmp_path / "deg.csv"), columns={**UTM_COLUMNS, "lat": "latitude",
                                                                    "lon": "longitude"}, group_by=["device", "n"])
    written = frame.assign(latitude=[_dms(v, "NS") for v in frame.latitude],
                           longitude=[f"{abs(v)}{'W' if v < 0 else 'E'}" for v in frame.longitude])
    written.loc[7, "latitude"] = "36.0041E"
    mine = read_table(_to_csv(written, tmp_path / "dms.csv"), columns={**UTM_COLUMNS, "lat": "latitude",
                                                                       "lon": "longitude"}, group_by=["device", "n"])
    a, b = _truths(ref), _truths(mine)
    assert len(a) == 400 and list(b) == [k for k in a if k != "row-8"]  # row 8's latitude has an E
    assert max(abs(a[k][0] - b[k][0]) + abs(a[k][1] - b[k][1]) for k in b) < 1e-7
    issue = mine.report.to_dict()["issues"]["lat_not_a_number"]
    assert issue["rows"] == [8] and issue["values"] == ["36.0041E"] and "51°12'48\"N" in issue["detail"]
    root = shared_data / "real" / "antwerp_lorawan"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    sites = pd.read_csv(root / "bs_to_gateway_crosswalk_from_anantarj.csv").dropna()
    sites = sites.rename(columns={"gateway_id": "id", "catalogue_latitude": "lat", "catalogue_longitude": "lon"})
    plain = read_nodes(_to_csv(sites[["id", "lat", "lon"]], tmp_path / "sites.csv"))
    dms = sites.assign(lat=[_dms(v, "NS") for v in sites.lat], lon=[_dms(v, "EW") for v in sites.lon])
    typed = read_nodes(_to_csv(dms[["id", "lat", "lon"]], tmp_path / "sites_dms.csv"))
    assert len(typed) == len(plain) > 30 and "°" in (tmp_path / "sites_dms.csv").read_text()
    assert max(abs(x.lat - y.lat) + abs(x.lon - y.lon) for x, y in zip(plain, typed)) < 1e-7
