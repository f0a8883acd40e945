"""Building procedural scenes: files, scene.json, determinism, materials, sites, store, Sionna."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from shapely.geometry import Point, shape

from rflocal_core import settings
from rflocal_core.errors import SceneNotFoundError
from rflocal_core.geo import LocalFrame
from rflocal_core.scene import (
    BUILDING_MATERIALS,
    CustomSite,
    MaterialConfig,
    ProceduralConfig,
    SceneConfig,
    SiteConfig,
    build_scene,
    delete_scene,
    list_scenes,
    load_scene_meta,
    scene_dir,
    scene_frame,
)
from rflocal_core.scene import procedural
from rflocal_core.scene.build import DEFAULT_ORIGIN
from rflocal_core.scene.mesh import is_closed, read_ply, signed_volume

SITE_KEYS = {"id", "x_m", "y_m", "z_m", "lat", "lon", "mount", "building", "role", "freq_hz", "tx_power_dbm",
             "pattern", "azimuth_deg", "downtilt_deg"}


def small_config(name: str, seed: int = 3, *, materials: MaterialConfig | None = None,
                 sites: SiteConfig | None = None, size_m: float = 300.0) -> SceneConfig:
    """A small procedural scene whose city, materials and sites all follow ``seed``."""
    return SceneConfig(
        name=name,
        procedural=ProceduralConfig(size_m=size_m, seed=seed),
        materials=materials or MaterialConfig(),
        sites=sites or SiteConfig(count=4, seed=seed),
        seed=seed,
    )


def read_buildings(name: str, folder: Path | None = None) -> tuple[list[dict[str, Any]], list[Any], LocalFrame]:
    """Features of ``buildings.geojson`` and their footprints projected back to scene metres.

    ``folder`` reads a scene folder directly (outside the current workspace).
    """
    folder = folder or scene_dir(name)
    meta = json.loads((folder / "scene.json").read_text(encoding="utf-8"))
    frame = scene_frame(meta)
    features = json.loads((folder / "buildings.geojson").read_text(encoding="utf-8"))["features"]

    def to_m(coords: np.ndarray) -> np.ndarray:
        return np.column_stack(frame.to_xy(coords[:, 1], coords[:, 0]))

    footprints = [shapely.transform(shape(f["geometry"]), to_m) for f in features]
    return features, footprints, frame


# --------------------------------------------------------------------------- the default scene


def test_default_procedural_scene_metadata(demo_scene: dict[str, Any]) -> None:
    meta = demo_scene
    expected_buildings, expected_roads = procedural.generate(ProceduralConfig())
    assert meta["schema_version"] == settings.scene_schema_version == 1
    assert meta["name"] == "demo"
    assert meta["source"]["kind"] == "procedural"
    assert meta["source"]["size_m"] == 512.0 and meta["source"]["seed"] == 7
    assert meta["mode"] == "ue"
    # frame: the UTM zone of the (default) centre, origin at the centre
    assert meta["frame"]["crs"] == "EPSG:32632" and meta["frame"]["utm_zone"] == "32N"
    assert (meta["frame"]["origin_lat"], meta["frame"]["origin_lon"]) == DEFAULT_ORIGIN
    frame = scene_frame(meta)
    # bbox: a 512 m square around the origin
    bbox = meta["bbox"]
    assert bbox["south"] < DEFAULT_ORIGIN[0] < bbox["north"] and bbox["west"] < DEFAULT_ORIGIN[1] < bbox["east"]
    x, y = frame.to_xy([bbox["south"], bbox["north"]], [bbox["west"], bbox["east"]])
    np.testing.assert_allclose(x, [-256.0, 256.0], atol=0.5)
    np.testing.assert_allclose(y, [-256.0, 256.0], atol=0.5)
    assert meta["extent_m"] == {"x_min": -256.0, "y_min": -256.0, "x_max": 256.0, "y_max": 256.0,
                                "width": 512.0, "height": 512.0}
    # buildings: every generated building is kept, with its statistics
    count = meta["buildings"]["count"]
    assert count == len(expected_buildings) and 60 <= count <= 300
    assert meta["roads"] == len(expected_roads)
    heights = np.array([b.height_m for b in expected_buildings])
    stats = meta["buildings"]["height_m"]
    assert stats["min"] == heights.min() and stats["max"] == heights.max()
    assert stats["mean"] == pytest.approx(heights.mean()) and stats["median"] == pytest.approx(np.median(heights))
    assert stats["min"] >= 6.0 and stats["max"] > stats["min"]
    assert meta["buildings"]["height_rules"] == {"procedural": count}
    assert meta["buildings"]["footprint_area_m2"] == pytest.approx(sum(b.footprint.area for b in expected_buildings))
    # materials: the default mix, every building counted once
    table = meta["materials"]["table"]
    assert sum(row["buildings"] for row in table) == count
    assert {row["id"] for row in table} <= set(BUILDING_MATERIALS)
    assert all(row["kind"] == "itu" and row["itu_type"] == row["id"] for row in table)
    assert meta["materials"]["ground"]["itu_type"] == "medium_dry_ground"
    # sites: six rooftop transmitters
    assert len(meta["sites"]) == 6
    for site in meta["sites"]:
        assert set(site) >= SITE_KEYS
        assert site["role"] == "transmitter" and site["tx_power_dbm"] == 43.0 and site["freq_hz"] == 3.5e9
    assert len({s["id"] for s in meta["sites"]}) == 6


def test_default_scene_files_agree_with_metadata(demo_scene: dict[str, Any]) -> None:
    folder = demo_scene["_workspace"] / "scenes" / "demo"
    count = demo_scene["buildings"]["count"]
    features, footprints, _ = read_buildings("demo")
    assert len(features) == count
    # Every building has a closed mesh whose volume is its footprint area times its height.
    plys = sorted((folder / "meshes").glob("building_*.ply"))
    assert len(plys) == count
    for feature, footprint in zip(features, footprints):
        props = feature["properties"]
        vertices, faces = read_ply(folder / "meshes" / f"building_{props['id']:05d}.ply")
        assert is_closed(faces), f"building {props['id']} mesh is not closed"
        assert vertices[:, 2].max() == pytest.approx(props["height_m"], abs=1e-3)
        assert signed_volume(vertices, faces) == pytest.approx(props["area_m2"] * props["height_m"], rel=0.01)
        # the WGS84 footprint in the GeoJSON maps back onto the mesh's footprint
        assert footprint.area == pytest.approx(props["area_m2"], rel=1e-3)
    materials = {row["id"]: row["buildings"] for row in demo_scene["materials"]["table"]}
    used: dict[str, int] = {}
    for feature in features:
        used[feature["properties"]["material"]] = used.get(feature["properties"]["material"], 0) + 1
    assert used == materials
    # scene.xml: one bsdf per material + ground, one shape per building + ground, files exist
    root = ET.parse(folder / "scene.xml").getroot()
    bsdfs = {b.get("id"): b for b in root.iter("bsdf")}
    assert set(bsdfs) == {*materials, "ground-material"}
    shapes = root.findall("shape")
    assert len(shapes) == count + 1
    for s in shapes:
        filename = s.find("string[@name='filename']").get("value")
        assert (folder / filename).is_file()
        assert s.find("ref").get("id") in bsdfs
    vertices, faces = read_ply(folder / "meshes" / "ground.ply")
    margin = settings.ground_margin_m
    assert vertices[:, 0].min() == pytest.approx(-256 - margin) and vertices[:, 1].max() == pytest.approx(256 + margin)
    # no temporary folder left behind
    assert sorted(p.name for p in (demo_scene["_workspace"] / "scenes").iterdir()) == ["demo"]


def test_rooftop_sites_stand_on_their_roofs(demo_scene: dict[str, Any]) -> None:
    features, footprints, frame = read_buildings("demo")
    by_id = {f["properties"]["id"]: (f["properties"], fp) for f, fp in zip(features, footprints)}
    for site in demo_scene["sites"]:
        assert site["mount"] == "rooftop" and site["building"] is not None
        props, footprint = by_id[site["building"]]
        assert footprint.buffer(0.01).contains(Point(site["x_m"], site["y_m"]))
        assert site["z_m"] == pytest.approx(props["height_m"] + 3.0)  # SiteConfig.height_m above the roof
        x, y = frame.to_xy(site["lat"], site["lon"])
        assert float(x) == pytest.approx(site["x_m"], abs=0.01) and float(y) == pytest.approx(site["y_m"], abs=0.01)
    # spread over the city, not clustered
    xy = np.array([[s["x_m"], s["y_m"]] for s in demo_scene["sites"]])
    pairwise = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    assert pairwise[np.triu_indices(len(xy), 1)].min() > 100.0


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_scene_other_seed_other_scene(workspace: Path) -> None:
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        build_scene(small_config(name, seed))
    folder = workspace / "scenes"
    geo = {n: (folder / n / "buildings.geojson").read_bytes() for n in "abc"}
    xml = {n: (folder / n / "scene.xml").read_bytes() for n in "abc"}
    meta = {n: load_scene_meta(n) for n in "abc"}
    assert geo["a"] == geo["b"]
    assert xml["a"] == xml["b"]
    assert meta["a"]["sites"] == meta["b"]["sites"]
    assert meta["a"]["content_sha256"] == meta["b"]["content_sha256"]
    assert geo["a"] != geo["c"]
    assert meta["a"]["sites"] != meta["c"]["sites"]
    assert meta["a"]["content_sha256"] != meta["c"]["content_sha256"]


# --------------------------------------------------------------------------- materials


def test_mixed_materials_follow_the_mix(workspace: Path) -> None:
    build_scene(SceneConfig(name="mixed", seed=5))
    table = {row["id"]: row["buildings"] for row in load_scene_meta("mixed")["materials"]["table"]}
    assert len(table) >= 3, f"default mix gave only {table}"
    assert max(table, key=table.get) == "concrete"  # weight 0.5 of the default mix
    build_scene(SceneConfig(name="glassy", materials=MaterialConfig(mix=(("glass", 3.0), ("wood", 1.0))), seed=5))
    table = {row["id"]: row["buildings"] for row in load_scene_meta("glassy")["materials"]["table"]}
    assert set(table) == {"glass", "wood"}
    assert table["glass"] > table["wood"]


def test_single_material(workspace: Path) -> None:
    build_scene(small_config("bricks", materials=MaterialConfig(building="brick", ground="wet_ground")))
    meta = load_scene_meta("bricks")
    count = meta["buildings"]["count"]
    assert meta["materials"]["table"] == [
        {"id": "brick", "kind": "itu", "itu_type": "brick", "thickness_m": settings.wall_thickness_m, "buildings": count}
    ]
    assert meta["materials"]["ground"]["itu_type"] == "wet_ground"
    features, _, _ = read_buildings("bricks")
    assert {f["properties"]["material"] for f in features} == {"brick"}
    root = ET.parse(scene_dir("bricks") / "scene.xml").getroot()
    types = {b.get("id"): b.find("string[@name='type']").get("value") for b in root.iter("bsdf")}
    assert types == {"brick": "brick", "ground-material": "wet_ground"}


def _randomized_table(name: str, seed: int) -> list[dict[str, Any]]:
    build_scene(small_config(name, seed, materials=MaterialConfig(randomize=True), size_m=400.0))
    return load_scene_meta(name)["materials"]["table"]


def test_randomized_materials(workspace: Path) -> None:
    table = _randomized_table("rand1", 21)
    meta = load_scene_meta("rand1")
    count = meta["buildings"]["count"]
    assert len(table) == count  # one material per building
    eps = np.array([row["relative_permittivity"] for row in table])
    sigma = np.array([row["conductivity_s_per_m"] for row in table])
    assert all(row["kind"] == "custom" and row["buildings"] == 1 for row in table)
    assert np.all((eps >= 2.0) & (eps <= 15.0))
    assert np.all((sigma >= 0.001) & (sigma <= 10.0))
    # really spread over the ranges (uniform / log-uniform), not one value
    assert eps.min() < 5.0 and eps.max() > 12.0
    assert sigma.min() < 0.01 and sigma.max() > 1.0
    # recorded per building: each building names its own row
    features, _, _ = read_buildings("rand1")
    rows = {row["id"]: row for row in table}
    assert sorted(f["properties"]["material"] for f in features) == sorted(rows)
    # and written into scene.xml with those values
    root = ET.parse(scene_dir("rand1") / "scene.xml").getroot()
    for bsdf in root.iter("bsdf"):
        if bsdf.get("id") == "ground-material":
            continue
        assert bsdf.get("type") == "radio-material"
        row = rows[bsdf.get("id")]
        values = {f.get("name"): float(f.get("value")) for f in bsdf.iter("float")}
        assert values["relative_permittivity"] == pytest.approx(row["relative_permittivity"], rel=1e-5)
        assert values["conductivity"] == pytest.approx(row["conductivity_s_per_m"], rel=1e-5)
    # deterministic for a seed, different for another
    assert _randomized_table("rand2", 21) == table
    other = _randomized_table("rand3", 22)
    assert [r["relative_permittivity"] for r in other] != [r["relative_permittivity"] for r in table]


# --------------------------------------------------------------------------- sites


def test_grid_sites_on_the_ground_are_outdoors(workspace: Path) -> None:
    build_scene(small_config("grid", sites=SiteConfig(placement="grid", count=9, mount="ground", height_m=12.0)))
    meta = load_scene_meta("grid")
    _, footprints, _ = read_buildings("grid")
    sites = meta["sites"]
    assert len(sites) == 9
    for site in sites:
        assert site["mount"] == "ground" and site["building"] is None and site["z_m"] == 12.0
        p = Point(site["x_m"], site["y_m"])
        assert not any(fp.contains(p) for fp in footprints), f"{site['id']} stands inside a building"
    # a 3 x 3 grid: cell centres of the 300 m extent, unless moved out of a building
    xs = sorted(s["x_m"] for s in sites)
    expected = np.repeat([-100.0, 0.0, 100.0], 3)
    assert np.max(np.abs(np.array(xs) - expected)) < 40.0


def test_grid_sites_on_roofs(workspace: Path) -> None:
    build_scene(small_config("gridroof", sites=SiteConfig(placement="grid", count=4, mount="rooftop", height_m=2.0)))
    features, footprints, _ = read_buildings("gridroof")
    heights = {f["properties"]["id"]: (f["properties"]["height_m"], fp) for f, fp in zip(features, footprints)}
    for site in load_scene_meta("gridroof")["sites"]:
        height, footprint = heights[site["building"]]
        assert site["mount"] == "rooftop"
        assert site["z_m"] == pytest.approx(height + 2.0)
        assert site["z_m"] > height  # above the roof, not inside the building
        assert footprint.buffer(0.01).contains(Point(site["x_m"], site["y_m"]))


def test_random_sites_deterministic_and_inside(workspace: Path) -> None:
    def sites(name: str, seed: int) -> list[dict[str, Any]]:
        cfg = SiteConfig(placement="random", count=5, mount="ground", seed=seed)
        build_scene(SceneConfig(name=name, procedural=ProceduralConfig(size_m=300.0, seed=3), sites=cfg))
        return load_scene_meta(name)["sites"]

    first, again, other = sites("r1", 1), sites("r2", 1), sites("r3", 2)
    assert first == again
    assert [(s["x_m"], s["y_m"]) for s in first] != [(s["x_m"], s["y_m"]) for s in other]
    _, footprints, _ = read_buildings("r1")
    for site in first:
        assert -150.0 <= site["x_m"] <= 150.0 and -150.0 <= site["y_m"] <= 150.0
        assert not any(fp.contains(Point(site["x_m"], site["y_m"])) for fp in footprints)


def test_custom_sites_xy_latlon_rooftop_and_emitter_mode(_demo_workspace: Path, workspace: Path) -> None:
    # Find an outdoor point and a building in the demo city (same procedural config).
    features, footprints, frame = read_buildings("demo", _demo_workspace / "scenes" / "demo")
    union = shapely.unary_union(footprints)
    outdoor = next(Point(x, 0.0) for x in np.arange(-200.0, 200.0, 1.0) if union.distance(Point(x, 0.0)) > 3.0)
    target = features[10]["properties"]
    roof_point = footprints[10].representative_point()
    lat, lon = frame.to_latlon(outdoor.x, outdoor.y)
    custom = (
        CustomSite(x_m=outdoor.x, y_m=outdoor.y, height_m=10.0, mount="ground", id="street"),
        CustomSite(lat=float(lat), lon=float(lon), height_m=4.0, mount="ground"),
        CustomSite(x_m=roof_point.x, y_m=roof_point.y, height_m=5.0, mount="rooftop", id="roof"),
    )
    config = SceneConfig(name="custom", sites=SiteConfig(mode="emitter", placement="custom", custom=custom))
    build_scene(config)
    meta = load_scene_meta("custom")
    assert meta["mode"] == "emitter"
    street, by_latlon, roof = meta["sites"]
    assert [s["id"] for s in meta["sites"]] == ["street", "site-1", "roof"]
    assert (street["x_m"], street["y_m"], street["z_m"]) == (pytest.approx(outdoor.x), pytest.approx(outdoor.y), 10.0)
    assert by_latlon["x_m"] == pytest.approx(outdoor.x, abs=0.01) and by_latlon["z_m"] == 4.0
    assert roof["building"] == target["id"] and roof["z_m"] == pytest.approx(target["height_m"] + 5.0)
    for site in meta["sites"]:
        assert site["role"] == "receiver" and site["tx_power_dbm"] is None


def test_ue_mode_sites_transmit(workspace: Path) -> None:
    build_scene(small_config("ue", sites=SiteConfig(mode="ue", count=2, tx_power_dbm=30.0, freq_hz=2.4e9)))
    meta = load_scene_meta("ue")
    assert meta["mode"] == "ue" and meta["site_config"]["mode"] == "ue"
    assert [(s["role"], s["tx_power_dbm"], s["freq_hz"]) for s in meta["sites"]] == [("transmitter", 30.0, 2.4e9)] * 2


# --------------------------------------------------------------------------- store


def test_list_and_delete_scenes(workspace: Path) -> None:
    assert list_scenes() == []
    build_scene(small_config("zeta", sites=SiteConfig(count=2)))
    build_scene(small_config("alpha", sites=SiteConfig(mode="emitter", count=3)))
    # An unfinished build and a stray folder are not scenes.
    (workspace / "scenes" / ".tmp-beta-1234abcd").mkdir()
    (workspace / "scenes" / "stray").mkdir()
    rows = list_scenes()
    assert [r["name"] for r in rows] == ["alpha", "zeta"]
    alpha = rows[0]
    assert alpha["source"] == "procedural" and alpha["mode"] == "emitter" and alpha["sites"] == 3
    assert alpha["buildings"] == load_scene_meta("alpha")["buildings"]["count"] > 0
    assert alpha["extent_m"] == [300.0, 300.0]
    delete_scene("zeta")
    assert not (workspace / "scenes" / "zeta").exists()
    assert [r["name"] for r in list_scenes()] == ["alpha"]
    with pytest.raises(SceneNotFoundError, match="no scene named 'zeta'.*existing scenes: alpha"):
        delete_scene("zeta")
    with pytest.raises(SceneNotFoundError, match="no scene named 'stray'"):
        load_scene_meta("stray")


# --------------------------------------------------------------------------- Sionna RT


@pytest.mark.raytrace
def test_scene_loads_in_sionna_rt(demo_scene: dict[str, Any]) -> None:
    from rflocal_core.raytrace import load_rt_scene

    count = demo_scene["buildings"]["count"]
    scene = load_rt_scene("demo", merge_shapes=False)
    names = set(scene.objects)
    assert len(names) == count + 1
    assert names == {f"building-{i}" for i in range(count)} | {"ground"}
    assert scene.frequency.numpy().item() == pytest.approx(3.5e9)
    assert len(scene.transmitters) == len(demo_scene["sites"])
    for site in demo_scene["sites"]:
        pos = np.asarray(scene.transmitters[site["id"]].position.numpy()).ravel()
        np.testing.assert_allclose(pos, [site["x_m"], site["y_m"], site["z_m"]], atol=1e-3)
    # building materials as recorded
    features, _, _ = read_buildings("demo")
    for f in features[:10]:
        assert scene.objects[f"building-{f['properties']['id']}"].radio_material.name == f["properties"]["material"]
    merged = load_rt_scene("demo", merge_shapes=True)
    assert len(merged.objects) == len(demo_scene["materials"]["table"]) + 1  # one per material, and the ground


@pytest.mark.raytrace
def test_randomized_materials_load_in_sionna_rt(workspace: Path) -> None:
    from rflocal_core.raytrace import load_rt_scene

    build_scene(small_config("rand", 4, materials=MaterialConfig(randomize=True)))
    meta = load_scene_meta("rand")
    rows = {row["id"]: row for row in meta["materials"]["table"]}
    scene = load_rt_scene("rand", merge_shapes=False)
    assert len(scene.objects) == meta["buildings"]["count"] + 1
    features, _, _ = read_buildings("rand")
    for f in features:
        material = scene.objects[f"building-{f['properties']['id']}"].radio_material
        row = rows[f["properties"]["material"]]
        assert material.name == row["id"]
        assert float(material.relative_permittivity.numpy().item()) == pytest.approx(row["relative_permittivity"], rel=1e-5)
        assert float(material.conductivity.numpy().item()) == pytest.approx(row["conductivity_s_per_m"], rel=1e-5)
        assert math.isclose(float(material.thickness.numpy().item()), settings.wall_thickness_m, rel_tol=1e-6)
