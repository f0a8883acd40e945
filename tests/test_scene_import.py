"""Importing Sionna / Mitsuba scenes: derived buildings, origin, refusals, and the whole pipeline on them.

Sionna's bundled ``simple_street_canyon`` (6 box buildings) and ``munich`` (2,367 meshes) are
imported, checked against their own meshes, ray-traced into a small dataset, and a kNN run
predicts a file exported from the test split. Bad files are hand-made in the tests.
"""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from shapely.geometry import Point, box, shape

from rflocal_core import settings
from rflocal_core.errors import InvalidInputError, SceneImportError
from rflocal_core.scene import CustomSite, SiteConfig, load_scene_meta, scene_dir, scene_frame
from rflocal_core.scene.importer import NOMINAL_ORIGIN, SceneImportConfig, bundled_scenes, import_scene
from rflocal_core.scene.mesh import extrude, ground_plane, write_ply

BUNDLED = bundled_scenes()
#: The class each ITU material of the bundled scenes maps to.
CLASSES = {"glass": "glass", "wood": "wood", "marble": "concrete", "brick": "brick", "metal": "metal"}
#: Small generation settings (as tests/conftest.py's tiny dataset): the run takes seconds.
TINY = {"map_samples_per_tx": 1_000_000, "paths_samples_per_src": 10_000, "min_sites": 2}


def sionna_meshes(xml: str) -> dict[str, tuple[str, np.ndarray]]:
    """Each object of a scene as Sionna RT loads it: name -> (material, vertices)."""
    from sionna.rt import load_scene

    scene = load_scene(xml, merge_shapes=False)
    return {name: (obj.radio_material.name, np.array(obj.mi_mesh.vertex_positions_buffer()).reshape(-1, 3))
            for name, obj in scene.objects.items()}


def features(name: str) -> list[dict[str, Any]]:
    """``buildings.geojson`` features with the footprint in scene metres under ``"xy"``."""
    meta = load_scene_meta(name)
    frame = scene_frame(meta)
    rows = json.loads((scene_dir(name) / "buildings.geojson").read_text())["features"]
    for row in rows:
        row["xy"] = frame.geometry_to_xy(shape(row["geometry"]))
    return rows


def knn_median_on_test_file(dataset: str, folder: Path, run_cli: Any | None = None) -> tuple[float, int]:
    """Train kNN, export the test split to a file, predict it (CLI when ``run_cli``); median error and count."""
    from rflocal_core.dataset import export_dataset
    from rflocal_core.infer import predict_file
    from rflocal_core.measurements import dump_measurements
    from rflocal_core.train import train

    run_id = train(dataset, "knn", seed=0).run_id
    path = folder / f"{dataset}-test.json"
    if run_cli is None:
        dump_measurements(export_dataset(dataset, split="test"), path)
        out = predict_file(run_id, path).runs[0]
        assert not out.bad_samples
        errors = [row.error_m for row in out.predictions]
    else:
        ws = Path(settings.workspace_dir())
        proc = run_cli(["data", "export", "--dataset", dataset, "--split", "test", "--out", str(path)], ws)
        assert proc.returncode == 0, proc.stderr
        proc = run_cli(["predict", "--run", run_id, "--input", str(path)], ws)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert not out["bad_samples"]
        errors = [row["error_m"] for row in out["predictions"]]
    return float(np.median(errors)), len(errors)


# --------------------------------------------------------------------------- bundled scenes


@pytest.fixture(scope="module")
def canyon(tmp_path_factory, workspace_env, run_cli):
    """simple_street_canyon imported through the command line, a small RSS dataset and kNN predicting a file."""
    from rflocal_core.dataset import GenerationConfig, generate_dataset

    ws = tmp_path_factory.mktemp("canyon") / "workspace"
    ws.mkdir()
    proc = run_cli(["scene", "import", "--bundled", "simple_street_canyon", "--name", "canyon", "--sites", "4"], ws)
    assert proc.returncode == 0, proc.stderr
    with workspace_env(ws):
        generate_dataset(GenerationConfig(name="canyon-ds", scenes=("canyon",), samples_per_scene=300,
                                          cell_size_m=4.0, timing=False, **TINY))
        median, count = knn_median_on_test_file("canyon-ds", ws, run_cli)
        yield {"ws": ws, "summary": json.loads(proc.stdout), "median": median, "count": count}


@pytest.fixture(scope="module")
def munich(tmp_path_factory, workspace_env):
    """munich imported through the API (2 m roof raster), a small dataset with PathSolver timing, kNN."""
    from rflocal_core.dataset import GenerationConfig, generate_dataset, open_dataset

    ws = tmp_path_factory.mktemp("munich") / "workspace"
    ws.mkdir()
    with workspace_env(ws):
        summary = import_scene(SceneImportConfig(name="munich", path=BUNDLED["munich"], raster_cell_m=2.0,
                                                 sites=SiteConfig(count=4, seed=7)))
        generate_dataset(GenerationConfig(name="munich-ds", scenes=("munich",), samples_per_scene=300,
                                          cell_size_m=8.0, **TINY))
        samples = open_dataset("munich-ds")["samples"]
        arrays = {k: samples[k][...] for k in ("toa_ns", "los", "pos_m", "node_pos_m", "rss_dbm")}
        median, count = knn_median_on_test_file("munich-ds", ws)
        yield {"ws": ws, "summary": summary, "arrays": arrays, "median": median, "count": count}


@pytest.mark.raytrace
def test_street_canyon_buildings_are_its_six_boxes(canyon, monkeypatch):
    monkeypatch.setenv(settings.WORKSPACE_ENV, str(canyon["ws"]))
    s = canyon["summary"]
    assert (s["buildings"], s["objects"], s["triangles"], s["sites"]) == (6, 7, 74, 4)
    assert s["footprints"] == {"components": 6, "kept": 6, "dropped_small": 0, "dropped_degenerate": 0}
    assert s["ground"]["detected"] and s["ground"]["objects"] == ["floor"]
    assert s["georeferenced"] is False and s["warnings"] == []
    meshes = sionna_meshes(BUNDLED["simple_street_canyon"])
    floor_z = float(meshes["floor"][1][:, 2].mean())
    rows = features("canyon")
    for name, (material, v) in meshes.items():
        if name == "floor":
            continue
        outline = box(*v[:, :2].min(0), *v[:, :2].max(0))  # the boxes are axis-aligned
        (row,) = [r for r in rows if r["xy"].representative_point().within(outline)]
        assert row["properties"]["height_m"] == pytest.approx(v[:, 2].max() - floor_z, abs=0.05)
        assert row["xy"].symmetric_difference(outline).area <= outline.length * 1.0  # one 1 m cell along the edges
        assert row["properties"]["material"] == CLASSES[material]
        assert row["properties"]["sionna_material"] == material
    # Rooftop antennas stand 3 m above the roof under them (z in the scene's coordinates, as Sionna places them).
    meta = load_scene_meta("canyon")
    for site in meta["sites"]:
        (row,) = [r for r in rows if r["properties"]["id"] == site["building"]]
        assert site["z_m"] == pytest.approx(floor_z + row["properties"]["height_max_m"] + 3.0, abs=0.01)


@pytest.mark.raytrace
def test_street_canyon_dataset_knn_and_a_predicted_file_through_the_cli(canyon):
    # Measured once: 14.4 m median on 30 test samples of a 186 m x 121 m scene.
    assert canyon["count"] == 30
    assert canyon["median"] < 35.0


@pytest.mark.raytrace
def test_a_scene_in_metres_only_never_passes_placeholder_lat_lon_as_real(canyon, run_cli, tmp_path):
    """Exports of a scene without origin carry metres only; lat/lon inputs are refused; predictions say so."""
    from rflocal_core.measurements import load_measurements

    ws = canyon["ws"]
    exported = load_measurements(ws / "canyon-ds-test.json")
    items = [*exported.nodes, *(s.truth for s in exported.samples)]
    assert all(i.lat is None and i.x_m is not None for i in items)
    assert any("not geo-referenced" in note for note in exported.notes)
    run_id = json.loads(run_cli(["runs", "list"], ws).stdout)[0]["run_id"]
    proc = run_cli(["predict", "--run", run_id, "--input", str(ws / "canyon-ds-test.json")], ws)
    out = json.loads(proc.stdout)
    assert out["georeferenced"] is False and any("not geo-referenced" in w for w in out["warnings"])
    # The same file with (placeholder-looking) lat/lon instead of metres cannot be placed in the scene.
    doc = json.loads((ws / "canyon-ds-test.json").read_text())
    frame = scene_frame(json.loads((ws / "scenes" / "canyon" / "scene.json").read_text()))
    for node in doc["nodes"]:
        lat, lon = frame.to_latlon(node.pop("x_m"), node.pop("y_m"))
        node.update(lat=float(lat), lon=float(lon))
    latlon_file = tmp_path / "latlon.json"
    latlon_file.write_text(json.dumps(doc))
    for args in (["predict", "--run", run_id, "--input", str(latlon_file)],
                 ["data", "import", str(latlon_file), "--name", "latlon-import", "--scene", "canyon"]):
        proc = run_cli(args, ws)
        assert proc.returncode == 2 and "not geo-referenced" in proc.stderr and "nodes[0]" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.raytrace
def test_munich_derived_buildings_against_its_meshes(munich, monkeypatch):
    monkeypatch.setenv(settings.WORKSPACE_ENV, str(munich["ws"]))
    s = munich["summary"]
    assert (s.objects, s.triangles, s.buildings) == (2367, 38936, 148)
    assert s.footprints == {"components": 148, "kept": 148, "dropped_small": 0, "dropped_degenerate": 0}
    assert s.ground["objects"] == ["ground"] and s.ground["z_m"] == 0.0
    assert s.extent_m == (1475.47, 1205.64)
    meshes = sionna_meshes(BUNDLED["munich"])
    tallest = max(v[:, 2].max() for name, (_, v) in meshes.items() if name != "ground")
    meta = load_scene_meta("munich")
    assert tallest - 0.5 <= meta["raster"]["tallest_m"] <= tallest + 1e-3  # the spire's apex, within a cell
    rows = features("munich")
    heights = np.array([r["properties"]["height_m"] for r in rows])
    assert 2.0 <= heights.min() and max(r["properties"]["height_max_m"] for r in rows) <= tallest + 1e-3
    assert meta["buildings"]["height_m"]["median"] == pytest.approx(float(np.median(heights)))
    # Footprints cover what the meshes cover: every building mesh's centre (outside courtyards) lies in one.
    union = shapely.union_all([r["xy"] for r in rows]).buffer(2.0)
    centres = [v[:, :2].mean(0) for name, (_, v) in meshes.items() if name != "ground" and v[:, 2].max() >= 4.0]
    inside = np.mean([union.contains(Point(*c)) for c in centres])
    assert inside > 0.95
    # Materials: walls of marble dominate; classes follow the table.
    assert {r["properties"]["sionna_material"] for r in rows} <= set(CLASSES)
    assert all(r["properties"]["material"] == CLASSES[r["properties"]["sionna_material"]] for r in rows)
    # The folder is self-contained: the copied XML names only files under meshes/, all present.
    folder = scene_dir("munich")
    names = [el.get("value") for el in ET.parse(folder / "scene.xml").iter("string") if el.get("name") == "filename"]
    assert len(names) == 2367 and all(n.startswith("meshes/") and (folder / n).is_file() for n in names)
    assert meta["source"]["sha256"] == hashlib.sha256(Path(BUNDLED["munich"]).read_bytes()).hexdigest()
    assert meta["source"]["kind"] == "sionna_xml" and meta["frame"]["georeferenced"] is False


@pytest.mark.raytrace
def test_munich_radio_maps_paths_and_knn(munich):
    a = munich["arrays"]
    # PathSolver on the imported scene: line-of-sight delays are the site-to-position distances over c
    # (10 ns ToA noise), blocked links arrive later; both kinds occur among the buildings.
    dist_m = np.linalg.norm(a["pos_m"][:, :, None, :] - a["node_pos_m"][:, None, :, :], axis=-1)
    excess_ns = a["toa_ns"] - dist_m / 0.299792458
    los, nlos = (a["los"] == 1) & np.isfinite(excess_ns), (a["los"] == 0) & np.isfinite(excess_ns)
    assert los.sum() > 50 and nlos.sum() > 50
    assert abs(np.median(excess_ns[los])) < 5.0 and np.percentile(np.abs(excess_ns[los]), 90) < 40.0
    assert np.median(excess_ns[nlos]) > 20.0
    assert np.isfinite(a["rss_dbm"]).mean() > 0.3
    # Measured once: 67 m median on 30 test samples (240 training samples over 1.5 km x 1.2 km).
    assert munich["count"] == 30
    assert munich["median"] < 150.0


# --------------------------------------------------------------------------- hand-made scenes


def write_scene(folder: Path, *, ground_z_m: float = 0.0, buildings: int = 2, defaults: str = "",
                skip_mesh: str | None = None, side_m: float = 200.0, slope: float = 0.0) -> Path:
    """A small real scene: a ground square of ``side_m`` and box buildings 20 m tall (PLY files + XML).

    ``slope`` tilts the ground along x (dz/dx); each building's base then sits at the ground
    height under its centre.
    """
    (folder / "meshes").mkdir(parents=True, exist_ok=True)
    half = side_m / 2
    gv, gf = ground_plane(-half, -half, half, half)
    gv[:, 2] = ground_z_m + slope * gv[:, 0]
    write_ply(folder / "meshes" / "ground.ply", gv, gf)
    shapes = ['<shape type="ply" id="mesh-ground"><string name="filename" value="meshes/ground.ply"/>'
              '<ref id="ground-material" name="bsdf"/></shape>']
    for i in range(buildings):
        v, f = extrude(box(-60 + 70 * i, -20, -20 + 70 * i, 20), 20.0, base_z_m=ground_z_m + slope * (-40 + 70 * i))
        if skip_mesh != f"b{i}.ply":
            write_ply(folder / "meshes" / f"b{i}.ply", v, f)
        shapes.append(f'<shape type="ply" id="mesh-b{i}"><string name="filename" value="meshes/b{i}.ply"/>'
                      '<ref id="concrete" name="bsdf"/></shape>')
    xml = ('<scene version="2.1.0">' + defaults +
           '<bsdf type="itu-radio-material" id="concrete"><string name="type" value="concrete"/>'
           '<float name="thickness" value="0.2"/></bsdf>'
           '<bsdf type="itu-radio-material" id="ground-material"><string name="type" value="medium_dry_ground"/>'
           '<float name="thickness" value="0.2"/></bsdf>' + "".join(shapes) + "</scene>")
    path = folder / "scene.xml"
    path.write_text(xml)
    return path


GROUND_SITES = SiteConfig(placement="grid", mount="ground", count=2)


def bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """One file per refusal, with the start of the expected message."""
    (tmp / "text.xml").write_text("these are not the droids\n")
    (tmp / "osm.xml").write_text('<osm version="0.6"><node id="1" lat="1" lon="2"/></osm>')
    (tmp / "empty.xml").write_text('<scene version="2.1.0"><bsdf type="itu-radio-material" id="c">'
                                   '<string name="type" value="concrete"/></bsdf></scene>')
    return {
        "not_xml": (tmp / "text.xml", "scene_xml: 'text.xml' is not XML"),
        "not_a_scene": (tmp / "osm.xml", "scene_xml: 'osm.xml' is XML but its root element is <osm>"),
        "missing_mesh": (write_scene(tmp / "missing", skip_mesh="b1.ply"),
                         "scene_xml: shape 'mesh-b1' references the mesh file 'meshes/b1.ply', which does not exist"),
        "no_geometry": (tmp / "empty.xml", "scene_xml: 'empty.xml' is a Mitsuba scene without geometry"),
        "too_large": (write_scene(tmp / "large", side_m=2500.0), "scene_xml: 'scene.xml' spans 2500 m x 2500 m"),
    }


@pytest.mark.parametrize("case", ["not_xml", "not_a_scene", "missing_mesh", "no_geometry", "too_large"])
def test_bad_scene_files_are_refused_and_leave_nothing(case, workspace, tmp_path, list_scene_entries):
    path, message = bad_files(tmp_path)[case]
    with pytest.raises(SceneImportError) as err:
        import_scene(SceneImportConfig(name="bad", path=str(path), sites=GROUND_SITES))
    assert str(err.value).startswith(message)
    assert list_scene_entries(workspace) == []


def test_bad_scene_files_exit_2_with_one_line_on_the_cli(workspace, tmp_path, run_cli, list_scene_entries):
    for case, (path, message) in bad_files(tmp_path).items():
        if case == "too_large":
            continue  # the same check as through the API; it needs Sionna, which the others never reach
        proc = run_cli(["scene", "import", str(path), "--name", "bad", "--placement", "grid", "--mount", "ground"],
                       workspace)
        assert proc.returncode == 2, (case, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), (case, lines)
        assert proc.stdout == ""
    assert list_scene_entries(workspace) == []


def test_geo2sigmap_origin_is_read_from_the_file_and_can_be_overridden(workspace, tmp_path):
    defaults = ''.join(f'<default name="{k}" value="{v}"/>' for k, v in {
        "scenegen_center_lat": "36.000000", "scenegen_center_lon": "-78.900000", "scenegen_UTM_zone": "EPSG:32617",
        "scenegen_min_lat": "35.999", "scenegen_max_lat": "36.001", "scenegen_min_lon": "-78.901",
        "scenegen_max_lon": "-78.899"}.items())
    path = write_scene(tmp_path / "g2s", defaults=defaults)
    s = import_scene(SceneImportConfig(name="g2s", path=str(path), sites=GROUND_SITES))
    assert s.georeferenced and s.origin_source.startswith("the file (scenegen_center_lat")
    frame = scene_frame(load_scene_meta("g2s"))
    assert frame.epsg == 32617
    lat, lon = frame.to_latlon(0.0, 0.0)  # Geo2SigMap's (0, 0): the centre of the box's UTM envelope
    assert (float(lat), float(lon)) == pytest.approx((36.0, -78.9), abs=2e-6)
    s = import_scene(SceneImportConfig(name="given", path=str(path), origin_lat=-33.9, origin_lon=18.4,
                                       sites=GROUND_SITES))
    assert s.origin_source.startswith("given (--origin); the file states 36.000000, -78.900000")
    assert scene_frame(load_scene_meta("given")).epsg == 32734


def test_a_scene_without_origin_works_in_metres_and_says_so(workspace, tmp_path):
    path = write_scene(tmp_path / "plain")
    s = import_scene(SceneImportConfig(name="plain", path=str(path), sites=GROUND_SITES))
    meta = load_scene_meta("plain")
    assert s.georeferenced is False and meta["frame"]["georeferenced"] is False
    assert (meta["frame"]["origin_lat"], meta["frame"]["origin_lon"]) == NOMINAL_ORIGIN  # never (0, 0)
    assert "placeholders" in meta["frame"]["origin_source"]
    assert (s.buildings, s.ground["objects"]) == (2, ["ground"])
    # Custom sites by lat/lon mean nothing without an origin; by metres they are fine.
    by_latlon = SiteConfig(placement="custom", custom=(CustomSite(lat=-48.87, lon=-123.39),))
    with pytest.raises(InvalidInputError, match=r"sites\[0\]: given by lat/lon .* has no geographic origin"):
        import_scene(SceneImportConfig(name="plain2", path=str(path), sites=by_latlon))
    with pytest.raises(InvalidInputError, match=r"origin: \(0, 0\) is the GPS no-fix sentinel"):
        SceneImportConfig(name="x", path=str(path), origin_lat=0.0, origin_lon=0.0)
    by_metres = SiteConfig(placement="custom", custom=(CustomSite(x_m=0.0, y_m=60.0, height_m=5.0),))
    assert import_scene(SceneImportConfig(name="plain3", path=str(path), sites=by_metres)).sites == 1


def test_a_raised_ground_is_moved_to_zero_in_the_copied_scene(workspace, tmp_path):
    from sionna.rt import load_scene

    path = write_scene(tmp_path / "raised", ground_z_m=12.0)
    s = import_scene(SceneImportConfig(name="raised", path=str(path), sites=GROUND_SITES))
    assert s.ground["z_m"] == 0.0
    meta = load_scene_meta("raised")
    assert meta["source"]["shift_z_m"] == -12.0
    assert meta["buildings"]["height_m"]["max"] == pytest.approx(20.0, abs=0.01)
    scene = load_scene(str(scene_dir("raised") / "scene.xml"), merge_shapes=False)
    ground = np.array(scene.objects["ground"].mi_mesh.vertex_positions_buffer()).reshape(-1, 3)
    roof = np.array(scene.objects["b0"].mi_mesh.vertex_positions_buffer()).reshape(-1, 3)
    assert np.allclose(ground[:, 2], 0.0, atol=1e-4) and roof[:, 2].max() == pytest.approx(20.0, abs=1e-4)


def test_a_terrain_is_ground_and_heights_are_measured_from_it(workspace, tmp_path):
    path = write_scene(tmp_path / "hill", slope=0.1)  # ground from -10 m to +10 m along x
    s = import_scene(SceneImportConfig(name="hill", path=str(path), sites=GROUND_SITES))
    assert s.ground["objects"] == ["ground"] and s.ground["z_span_m"] == pytest.approx(20.0, abs=0.01)
    assert s.warnings[0].startswith("the ground is a terrain (its height spans 20.0 m)")
    meta = load_scene_meta("hill")
    assert meta["source"]["shift_z_m"] == 10.0  # the lowest ground point moves to z = 0
    heights = sorted(r["properties"]["height_m"] for r in features("hill"))
    assert heights == pytest.approx([20.0, 20.0], abs=0.3)  # from the slope under each, not from z = 0
    for site in meta["sites"]:  # ground antennas 3 m above the slope under them
        assert site["z_m"] == pytest.approx(10.0 + 0.1 * site["x_m"] + 3.0, abs=0.15)


def test_a_frequency_outside_the_scenes_itu_materials_is_refused(workspace, list_scene_entries):
    with pytest.raises(InvalidInputError, match=r"sites.freq_hz: 7e\+10 Hz: .*not defined.*marble: 1-60"):
        import_scene(SceneImportConfig(name="hf", path=BUNDLED["simple_street_canyon"],
                                       sites=SiteConfig(freq_hz=70e9, count=4)))
    assert list_scene_entries(workspace) == []


def test_meshes_outside_the_scene_folder_are_copied_in_under_unique_names(workspace, tmp_path):
    path = write_scene(tmp_path / "a" / "scene")
    (tmp_path / "other").mkdir()
    (path.parent / "meshes" / "b1.ply").rename(tmp_path / "other" / "b0.ply")  # same file name, another folder
    path.write_text(path.read_text().replace('value="meshes/b1.ply"', f'value="{tmp_path / "other" / "b0.ply"}"'))
    s = import_scene(SceneImportConfig(name="gathered", path=str(path), sites=GROUND_SITES))
    assert s.buildings == 2
    folder = scene_dir("gathered")
    names = [el.get("value") for el in ET.parse(folder / "scene.xml").iter("string") if el.get("name") == "filename"]
    assert names == ["meshes/ground.ply", "meshes/b0.ply", "meshes/b0-1.ply"]
    assert sorted(p.name for p in (folder / "meshes").iterdir()) == ["b0-1.ply", "b0.ply", "ground.ply"]
    assert load_scene_meta("gathered")["source"]["meshes"] == 3


def test_an_uploaded_zip_of_a_scene_is_unpacked_and_imported(workspace, tmp_path):
    import io
    import zipfile

    from rflocal_core.scene.importer import save_scene_zip

    folder = write_scene(tmp_path / "zipme").parent
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"myscene/{path.relative_to(folder).as_posix()}")
    xml = save_scene_zip("my scene.zip", data.getvalue())
    assert xml.name == "scene.xml" and xml.is_relative_to(workspace / "uploads")
    assert import_scene(SceneImportConfig(name="zipped", path=str(xml), sites=GROUND_SITES)).buildings == 2
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../outside.xml", "<scene/>")
    with pytest.raises(SceneImportError, match=r"scene_zip: entry '../outside.xml' points outside"):
        save_scene_zip("evil.zip", evil.getvalue())
    with pytest.raises(SceneImportError, match=r"scene_zip: 'junk.zip' is not a zip archive"):
        save_scene_zip("junk.zip", b"not a zip")


def test_scene_builder_page_imports_a_bundled_scene_and_refuses_a_bad_file(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv(settings.WORKSPACE_ENV, str(tmp_path / "ws"))
    app = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    app.run()
    app.switch_page("pages/views/scene_builder.py")
    app.run()
    app.radio(key="sb_source").set_value("Sionna / Mitsuba scene")
    app.run()
    assert app.selectbox(key="sb_bundled").value == "simple_street_canyon"
    app.text_input(key="sb_name").set_value("canyon")
    app.button(key="sb_import").click()
    app.run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    expected = "Imported scene **canyon**: 6 buildings derived from 7 objects (74 triangles), 6 sites"
    assert expected in app.success[0].value
    assert any("no geographic origin" in w.value for w in app.warning)
    assert load_scene_meta("canyon")["source"]["kind"] == "sionna_xml"
    # A file that is not a scene: the core's message, nothing written.
    (tmp_path / "osm.xml").write_text('<osm version="0.6"/>')
    app.radio(key="sb_xml_kind").set_value("Path on this machine")
    app.run()
    app.text_input(key="sb_xml_path").set_value(str(tmp_path / "osm.xml"))
    app.text_input(key="sb_name").set_value("bad")
    app.button(key="sb_import").click()
    app.run()
    assert not app.exception
    assert app.error[0].value.startswith("scene_xml: 'osm.xml' is XML but its root element is <osm>")
    assert not (tmp_path / "ws" / "scenes" / "bad").exists()
