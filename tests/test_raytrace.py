"""Sionna RT on built scenes: free-space agreement with Friis, blocking by buildings, backend checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
from shapely.geometry import Point, shape

from rflocal_core.errors import InvalidInputError
from rflocal_core.raytrace import compute_radio_map, friis_path_gain_db
from rflocal_core.scene import CustomSite, MaterialConfig, SceneConfig, SiteConfig, build_scene, load_scene_meta

pytestmark = pytest.mark.raytrace

REPO_ROOT = Path(__file__).resolve().parents[1]
LLVM15 = Path("/usr/lib/x86_64-linux-gnu/libLLVM-15.so.1")


def buildings_m(folder: Path) -> list[tuple[Any, float]]:
    """``(footprint in scene metres, height)`` of every building of a scene folder."""
    from rflocal_core.scene import scene_frame

    meta = json.loads((folder / "scene.json").read_text(encoding="utf-8"))
    frame = scene_frame(meta)
    features = json.loads((folder / "buildings.geojson").read_text(encoding="utf-8"))["features"]

    def to_m(c: np.ndarray) -> np.ndarray:
        return np.column_stack(frame.to_xy(c[:, 1], c[:, 0]))

    return [(shapely.transform(shape(f["geometry"]), to_m), float(f["properties"]["height_m"])) for f in features]


def test_friis_above_a_rooftop_site(demo_scene: dict[str, Any]) -> None:
    """Cells 3-8 m from a rooftop antenna, 1.5 m below it, see free space: within 3 dB of Friis."""
    folder = demo_scene["_workspace"] / "scenes" / "demo"
    footprints = [fp for fp, _ in buildings_m(folder)]
    # A rooftop site whose roof extends beyond the 8 m ring (so every compared cell is above that roof).
    site = next(
        (s for s in demo_scene["sites"]
         if footprints[s["building"]].contains(Point(s["x_m"], s["y_m"]).buffer(9.0))),
        None,
    )
    assert site is not None, "no rooftop site with a roof wider than 18 m in the default scene"
    roof_m = site["z_m"] - SiteConfig().height_m
    plane = roof_m + 1.5
    rm = compute_radio_map(
        "demo", cell_size_m=1.0, plane_height_m=plane, center_m=(site["x_m"], site["y_m"]), size_m=(20.0, 20.0),
        samples_per_tx=5_000_000, sites=[site],
    )
    assert rm.path_gain_db.shape == (1, 20, 20)
    assert rm.site_ids == [site["id"]]
    assert rm.x_m.min() == pytest.approx(site["x_m"] - 9.5, abs=1e-3) and rm.y_m.max() == pytest.approx(site["y_m"] + 9.5, abs=1e-3)
    x, y = np.meshgrid(rm.x_m - site["x_m"], rm.y_m - site["y_m"])
    horizontal = np.hypot(x, y)
    ring = (horizontal >= 3.0) & (horizontal <= 8.0)
    assert ring.sum() > 100
    friis = friis_path_gain_db(np.hypot(horizontal, site["z_m"] - plane), site["freq_hz"])
    diff = rm.path_gain_db[0][ring] - friis[ring]
    assert np.all(np.isfinite(diff)), "cells near the antenna received no rays"
    assert np.max(np.abs(diff)) < 3.0, f"deviation from Friis up to {np.max(np.abs(diff)):.2f} dB"
    # Received power is transmit power plus path gain.
    np.testing.assert_allclose(rm.rss_dbm, rm.path_gain_db + site["tx_power_dbm"])
    # value_at looks up (x, y) with axis 1 = y and axis 2 = x
    np.testing.assert_array_equal(rm.value_at(rm.x_m[3] + 0.2, rm.y_m[15] - 0.2), rm.path_gain_db[:, 15, 3])


def _los_blocked(tx: tuple[float, float, float], x: np.ndarray, y: np.ndarray, z: float,
                 buildings: list[tuple[Any, float]]) -> np.ndarray:
    """True where the straight line from ``tx`` to ``(x, y, z)`` passes through a building."""
    starts = np.broadcast_to(np.array(tx[:2]), (x.size, 2))
    ends = np.column_stack([x.ravel(), y.ravel()])
    lines = shapely.linestrings(np.stack([starts, ends], axis=1))
    polys = np.array([fp for fp, _ in buildings], dtype=object)
    heights = np.array([h for _, h in buildings])
    line_idx, bld_idx = shapely.STRtree(polys).query(lines, predicate="intersects")
    blocked = np.zeros(x.size, dtype=bool)
    lengths = shapely.length(lines)
    for li, bi, part in zip(line_idx, bld_idx, shapely.intersection(lines[line_idx], polys[bld_idx])):
        coords = shapely.get_coordinates(part)
        if len(coords) == 0:
            continue
        # The line descends from the antenna: the far end of the crossing is where it is lowest.
        t = np.hypot(coords[:, 0] - tx[0], coords[:, 1] - tx[1]).max() / max(lengths[li], 1e-9)
        if tx[2] + (z - tx[2]) * t < heights[bi]:
            blocked[li] = True
    return blocked.reshape(x.shape)


def test_buildings_block_a_ground_site(_demo_workspace: Path, workspace: Path) -> None:
    """A 10 m mast on the street: shadowed cells lose > 10 dB against Friis, LoS cells agree."""
    buildings = buildings_m(_demo_workspace / "scenes" / "demo")
    union = shapely.unary_union([fp for fp, _ in buildings])
    # A tall building and a street point 6 m west of it.
    site_xy = None
    for footprint, height in sorted(buildings, key=lambda b: -b[0].area):
        if height < 15.0 or footprint.geom_type != "Polygon" or footprint.interiors or footprint.area < 300:
            continue
        min_x, _, _, _ = footprint.bounds
        candidate = Point(min_x - 6.0, footprint.centroid.y)
        if union.distance(candidate) >= 4.0:
            site_xy = candidate
            break
    assert site_xy is not None
    # Same city as the demo (default procedural config), concrete walls, one custom ground site.
    sites = SiteConfig(placement="custom", custom=(CustomSite(x_m=site_xy.x, y_m=site_xy.y, height_m=10.0, mount="ground"),))
    build_scene(SceneConfig(name="mast", materials=MaterialConfig(building="concrete"), sites=sites))
    site = load_scene_meta("mast")["sites"][0]
    assert site["mount"] == "ground" and site["z_m"] == 10.0
    rm = compute_radio_map("mast", cell_size_m=1.0, plane_height_m=1.5, center_m=(site["x_m"] + 40.0, site["y_m"]),
                           size_m=(100.0, 80.0), samples_per_tx=5_000_000)
    x, y = np.meshgrid(rm.x_m, rm.y_m)
    indoors = shapely.intersects(shapely.points(x.ravel(), y.ravel()), union).reshape(x.shape)
    blocked = _los_blocked((site["x_m"], site["y_m"], site["z_m"]), x, y, 1.5, buildings)
    horizontal = np.hypot(x - site["x_m"], y - site["y_m"])
    friis = friis_path_gain_db(np.hypot(horizontal, site["z_m"] - 1.5), site["freq_hz"])
    diff = rm.path_gain_db[0] - friis
    shadow = blocked & ~indoors
    los = ~blocked & ~indoors & (horizontal >= 3.0) & (horizontal <= 20.0)
    assert shadow.sum() > 200 and los.sum() > 200
    # Behind the building: no ray at all (-inf) or weak refracted/reflected ones.
    assert np.median(diff[shadow]) < -10.0, f"shadowed cells only {np.median(diff[shadow]):.1f} dB below Friis"
    # Line of sight: Friis, plus the ground reflection added in power (at most about +3 dB).
    los_diff = diff[los]
    assert np.all(np.isfinite(los_diff))
    assert abs(np.median(los_diff)) < 3.0
    assert los_diff.min() > -1.5 and los_diff.max() < 3.5, (los_diff.min(), los_diff.max())


def test_radio_map_rejects_bad_parameters(demo_scene: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError, match=r"cell_size_m: expected a number in \[0.5, 20\] m, got 0.1"):
        compute_radio_map("demo", cell_size_m=0.1)
    with pytest.raises(InvalidInputError, match=r"plane_height_m: .* got 0.0"):
        compute_radio_map("demo", plane_height_m=0.0)
    with pytest.raises(InvalidInputError, match="sites: scene 'demo' has no sites"):
        compute_radio_map("demo", sites=[])


# --------------------------------------------------------------------------- backend


def _ensure_backend_with(llvm_path: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DRJIT_LIBLLVM_PATH": llvm_path, "CUDA_VISIBLE_DEVICES": ""}  # force the CPU path
    return subprocess.run(
        [sys.executable, "-c", "from rflocal_core.backend import ensure_backend; ensure_backend()"],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120, check=False,
    )


def test_old_llvm_is_refused_with_the_fix() -> None:
    if not LLVM15.is_file():
        pytest.skip(f"{LLVM15} not installed")
    proc = _ensure_backend_with(str(LLVM15))
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("rflocal_core.errors.BackendUnavailableError:")
    assert "LLVM 15" in last and "libllvm19" in last
    assert "Cannot select" in last  # names the crash it prevents, instead of crashing


def test_missing_llvm_is_refused_with_the_fix(tmp_path: Path) -> None:
    proc = _ensure_backend_with(str(tmp_path / "libLLVM-19.so"))
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("rflocal_core.errors.BackendUnavailableError:")
    assert "does not exist" in last and "libllvm19" in last


def test_radio_maps_are_repeatable_and_independent_of_worker_count(workspace):
    """Same seed, same map, bit for bit, whether sites are traced here or in 2 or 3 child processes."""
    from rflocal_core.raytrace import compute_radio_map
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    build_scene(SceneConfig(name="rep", procedural=ProceduralConfig(size_m=160, seed=5), sites=SiteConfig(count=3)))
    kwargs = {"cell_size_m": 4.0, "samples_per_tx": 300_000, "diffraction": True}
    here = compute_radio_map("rep", workers=1, **kwargs)
    seen = []
    two = compute_radio_map("rep", workers=2, on_site=lambda done, total: seen.append((done, total)), **kwargs)
    three = compute_radio_map("rep", workers=3, **kwargs)
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert np.isfinite(here.path_gain_db).mean() > 0.2
    assert np.array_equal(here.path_gain_db, two.path_gain_db)
    assert np.array_equal(here.path_gain_db, three.path_gain_db)
    assert np.array_equal(here.x_m, two.x_m) and np.array_equal(here.y_m, two.y_m)


def test_children_that_flood_stderr_do_not_hang(tmp_path: Path) -> None:
    """A child writing 1 MB to stderr (far more than a pipe holds) finishes; a failing one is named."""
    from rflocal_core.raytrace import run_children

    flood = "import sys; sys.stderr.write('w' * 2**20 + '\\n'); print('site-done', flush=True)"
    fail = "import sys; sys.stderr.write('x' * 2**20 + '\\nboom: the last line\\n'); sys.exit(3)"
    lines: list[str] = []
    run_children([[sys.executable, "-c", flood]] * 2, on_line=lines.append, log_dir=tmp_path)
    assert lines == ["site-done", "site-done"]
    assert (tmp_path / "worker-0.stderr").stat().st_size > 2**20
    with pytest.raises(RuntimeError, match=r"worker 1 failed: boom: the last line"):
        run_children([[sys.executable, "-c", flood], [sys.executable, "-c", fail]], on_line=lines.append,
                     log_dir=tmp_path)


def test_strongest_path_breaks_near_ties_by_arrival_whatever_the_last_bits():
    """Two equally strong paths that differ in the last bits (parallel sums) give the same answer both ways."""
    from rflocal_core.raytrace import strongest_path

    tau = np.array([[3e-7, 1e-7, 2e-7]])
    valid = np.ones((1, 3), bool)
    for eps in (1e-9, -1e-9):  # path 0 or path 1 slightly stronger
        power = np.array([[1e-9 * (1 + eps), 1e-9, 1e-12]])
        assert strongest_path(power, tau, valid)[0] == 1  # tied: the earlier one
    clear = np.array([[2e-9, 1e-9, 1e-12]])  # 3 dB apart: the stronger, though later
    assert strongest_path(clear, tau, valid)[0] == 0
    # an invalid path never wins, however strong; a link without paths gives a harmless index
    assert strongest_path(np.array([[5e-9, 1e-9, 1e-12]]), tau, np.array([[False, True, True]]))[0] == 1
    assert strongest_path(np.zeros((1, 3)), tau, np.zeros((1, 3), bool))[0] in (0, 1, 2)
    # mirror images: equally strong and arriving together up to the last bits, bearings 40 deg apart: the
    # smaller azimuth wins whichever is a hair stronger or earlier
    phi = np.deg2rad(np.array([[70.0, 30.0, 200.0]]))
    for eps in (1e-9, -1e-9):
        power = np.array([[1e-9 * (1 + eps), 1e-9, 1e-12]])
        same = np.array([[1e-7 * (1 - eps), 1e-7 * (1 + eps), 2e-7]])
        assert strongest_path(power, same, valid, phi)[0] == 1
        assert strongest_path(power, same, valid)[0] == (0 if eps > 0 else 1)  # by the bits alone: flips
    later = np.deg2rad(np.array([[30.0, 70.0, 200.0]]))  # the smaller azimuth arrives later: the earlier wins
    assert strongest_path(power, tau, valid, later)[0] == 1
