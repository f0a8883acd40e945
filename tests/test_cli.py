"""The command line ``python -m rflocal_core``: JSON on stdout, errors on stderr, exit statuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rflocal_core.scene import ProceduralConfig, procedural

SUMMARY_KEYS = {"name", "path", "buildings", "sites", "extent_m", "height_rules"}


def ok_json(proc: Any) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # exactly one JSON document, nothing else


@pytest.fixture(scope="module")
def cli_demo(tmp_path_factory: pytest.TempPathFactory, run_cli: Any) -> tuple[Path, dict[str, Any]]:
    """A workspace where ``scene build --procedural --seed 7 --name demo`` ran."""
    ws = tmp_path_factory.mktemp("cli_ws")
    proc = run_cli(["scene", "build", "--procedural", "--seed", "7", "--name", "demo"], ws)
    return ws, ok_json(proc)


def test_build_procedural_prints_summary(cli_demo: tuple[Path, dict[str, Any]]) -> None:
    ws, summary = cli_demo
    assert isinstance(summary, dict)
    assert set(summary) >= SUMMARY_KEYS
    assert summary["name"] == "demo"
    assert Path(summary["path"]) == (ws / "scenes" / "demo").resolve()
    meta = json.loads((Path(summary["path"]) / "scene.json").read_text())
    expected = len(procedural.generate(ProceduralConfig(seed=7))[0])
    assert summary["buildings"] == meta["buildings"]["count"] == expected
    assert summary["sites"] == len(meta["sites"]) == 6
    assert summary["extent_m"] == [512.0, 512.0]
    assert summary["height_rules"] == {"procedural": expected}
    # --seed reaches city, materials and sites
    assert meta["source"]["seed"] == 7 and meta["seed"] == 7 and meta["site_config"]["seed"] == 7


def test_cli_and_api_build_the_same_scene(cli_demo: tuple[Path, dict[str, Any]], workspace: Path) -> None:
    from rflocal_core.scene import SceneConfig, SiteConfig, build_scene

    ws, _ = cli_demo
    build_scene(SceneConfig(name="api", procedural=ProceduralConfig(seed=7), sites=SiteConfig(seed=7), seed=7))
    for name in ("buildings.geojson", "scene.xml"):
        assert (workspace / "scenes" / "api" / name).read_bytes() == (ws / "scenes" / "demo" / name).read_bytes()


def test_list_and_show(cli_demo: tuple[Path, dict[str, Any]], run_cli: Any) -> None:
    ws, summary = cli_demo
    rows = ok_json(run_cli(["scene", "list"], ws))
    assert isinstance(rows, list) and [r["name"] for r in rows] == ["demo"]
    assert rows[0]["buildings"] == summary["buildings"] and rows[0]["source"] == "procedural"
    shown = ok_json(run_cli(["scene", "show", "demo"], ws))
    assert shown == json.loads((ws / "scenes" / "demo" / "scene.json").read_text())


def test_list_empty_workspace(workspace: Path, run_cli: Any) -> None:
    assert ok_json(run_cli(["scene", "list"], workspace)) == []


def test_delete(workspace: Path, run_cli: Any) -> None:
    ok_json(run_cli(["scene", "build", "--procedural", "--size-m", "200", "--sites", "1", "--name", "gone"], workspace))
    ok_json(run_cli(["scene", "build", "--procedural", "--size-m", "200", "--sites", "1", "--name", "kept"], workspace))
    assert ok_json(run_cli(["scene", "delete", "gone"], workspace)) == {"deleted": "gone"}
    assert not (workspace / "scenes" / "gone").exists()
    assert [r["name"] for r in ok_json(run_cli(["scene", "list"], workspace))] == ["kept"]
    for cmd in (["scene", "show", "gone"], ["scene", "delete", "gone"]):
        proc = run_cli(cmd, workspace)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.startswith("error: scene: no scene named 'gone'")
        assert "existing scenes: kept" in proc.stderr


def test_build_osm_file(osm_dir: Path, workspace: Path, run_cli: Any) -> None:
    path = osm_dir / "West-Oakland.osm"
    summary = ok_json(run_cli(["scene", "build", "--osm-file", str(path), "--name", "oakland"], workspace))
    assert set(summary) >= SUMMARY_KEYS
    assert summary["buildings"] == 23  # 23 closed building ways in the extract (data README)
    assert summary["height_rules"] == {"default": 21, "levels": 2}  # 2 carry building:levels
    assert 300 < summary["extent_m"][0] < 450 and 300 < summary["extent_m"][1] < 400
    meta = json.loads((workspace / "scenes" / "oakland" / "scene.json").read_text())
    assert meta["source"] == {"kind": "osm_file", "file": "West-Oakland.osm"}
    assert meta["frame"]["utm_zone"] == "10N"


def test_build_options_reach_the_scene(workspace: Path, tmp_path: Path, run_cli: Any) -> None:
    args = ["scene", "build", "--procedural", "--name", "opts", "--size-m", "300", "--origin", "-33.8688,151.2093",
            "--mode", "emitter", "--placement", "grid", "--sites", "4", "--mount", "ground", "--site-height-m", "7",
            "--randomize-materials", "--freq-hz", "2.4e9", "--default-height-m", "9"]
    summary = ok_json(run_cli(args, workspace))
    assert summary["sites"] == 4 and summary["extent_m"] == [300.0, 300.0]
    meta = json.loads((workspace / "scenes" / "opts" / "scene.json").read_text())
    assert meta["frame"]["utm_zone"] == "56S"
    assert (meta["frame"]["origin_lat"], meta["frame"]["origin_lon"]) == (-33.8688, 151.2093)
    assert meta["mode"] == "emitter"
    assert all(s["mount"] == "ground" and s["z_m"] == 7.0 and s["freq_hz"] == 2.4e9 and s["role"] == "receiver"
               for s in meta["sites"])
    assert all(row["kind"] == "custom" for row in meta["materials"]["table"])
    # custom sites from a JSON file
    sites_file = tmp_path / "sites.json"
    site = meta["sites"][0]
    sites_file.write_text(json.dumps([{"x_m": site["x_m"], "y_m": site["y_m"], "height_m": 12, "id": "mast"}]))
    args = ["scene", "build", "--procedural", "--name", "custom", "--size-m", "300", "--origin", "-33.8688,151.2093",
            "--sites-file", str(sites_file)]
    ok_json(run_cli(args, workspace))
    meta = json.loads((workspace / "scenes" / "custom" / "scene.json").read_text())
    assert [(s["id"], s["x_m"], s["y_m"], s["z_m"]) for s in meta["sites"]] == [("mast", site["x_m"], site["y_m"], 12.0)]


def test_usage_errors_exit_2(workspace: Path, run_cli: Any) -> None:
    for args in (["scene", "build", "--name", "x"],  # no source
                 ["scene", "build", "--procedural", "--osm-file", "a.osm", "--name", "x"],  # two sources
                 ["scene", "build", "--procedural", "--name", "x", "--seed", "seven"],
                 ["nonsense"]):
        proc = run_cli(args, workspace)
        assert proc.returncode == 2, args
        assert proc.stdout == ""
        assert "error:" in proc.stderr
    assert not (workspace / "scenes").exists() or not any((workspace / "scenes").iterdir())


def test_bad_sites_file(workspace: Path, tmp_path: Path, run_cli: Any) -> None:
    bad = tmp_path / "sites.json"
    bad.write_text('[{"x_m": 0, "y_m": 0, "colour": "red"}]')
    proc = run_cli(["scene", "build", "--procedural", "--name", "x", "--sites-file", str(bad)], workspace)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == ("error: sites[0]: unknown field(s) ['colour']; expected some of "
                                   "['bands', 'height_m', 'id', 'lat', 'lon', 'mount', 'x_m', 'y_m']")


@pytest.mark.raytrace
def test_doctor(workspace: Path, run_cli: Any) -> None:
    report = ok_json(run_cli(["doctor"], workspace))
    assert set(report) >= {"variant", "device", "llvm_library", "llvm_major", "sionna_rt", "mitsuba", "workspace"}
    assert report["workspace"] == str(workspace.resolve())
    assert report["sionna_rt"].startswith("2.")
    assert (report["variant"], report["device"]) in {("llvm_ad_mono_polarized", "cpu"), ("cuda_ad_mono_polarized", "cuda")}
    if report["device"] == "cpu":
        assert report["llvm_major"] >= 16 and Path(report["llvm_library"]).exists()


def test_doctor_without_llvm_exits_3(workspace: Path, tmp_path: Path, run_cli: Any) -> None:
    env = {"DRJIT_LIBLLVM_PATH": str(tmp_path / "libLLVM-19.so"), "CUDA_VISIBLE_DEVICES": ""}
    proc = run_cli(["doctor"], workspace, env=env)
    assert proc.returncode == 3
    assert proc.stdout == ""
    # Dr.Jit itself may log that it could not load the library; our message is the last line.
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: DRJIT_LIBLLVM_PATH=") and "does not exist" in last
    assert "libllvm19" in last


def test_southern_hemisphere_coordinates_parse(workspace: Path, run_cli: Any) -> None:
    """``--bbox -34.61,...`` (a value starting with '-') reaches the builder, not an argparse error."""
    env = {"RFLOCAL_OVERPASS_URL": "http://127.0.0.1:9/api"}  # offline on purpose
    proc = run_cli(["scene", "build", "--name", "ba", "--bbox", "-34.61,-58.39,-34.60,-58.37"], workspace, env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: bbox: could not reach OpenStreetMap")
    proc = run_cli(["scene", "build", "--name", "ba", "--bbox", "-34.60,-58.39,-34.61,-58.37"], workspace, env=env)
    assert proc.stderr.strip() == (
        "error: bbox: inverted box, north (-34.61) is below south (-34.6); expected south < north"
    )
