"""Bad input: one clear message naming field and value, and no scene folder left behind.

Every case runs twice: through the Python API (``pytest.raises`` on the message) and
through the command line (exit status 2, the message on stderr, nothing on stdout).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rflocal_core import settings
from rflocal_core.errors import (
    InvalidInputError,
    OSMDownloadError,
    OSMFormatError,
    RFLocalInputError,
    SceneExistsError,
)
from rflocal_core.geo import BBox
from rflocal_core.scene import (
    CustomSite,
    MaterialConfig,
    ProceduralConfig,
    SceneConfig,
    SiteConfig,
    build_scene,
    procedural,
)

#: A port nothing listens on: connecting fails at once, so "offline" is deterministic.
DEAD_OVERPASS = "http://127.0.0.1:9/api"

#: Bounds of the small OSM files written here (also a valid ~220 m box for bbox cases).
S, W, N, E = 48.135, 10.068, 48.137, 10.071


def osm_text(*, buildings: bool = True, padding: int = 0) -> str:
    """A small valid .osm file: one closed way, tagged building=yes or landuse=grass."""
    tag = '<tag k="building" v="yes"/>' if buildings else '<tag k="landuse" v="grass"/>'
    pad = f"  <!-- {'x' * padding} -->\n" if padding else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6" generator="rflocal-tests">\n'
        f'  <bounds minlat="{S}" minlon="{W}" maxlat="{N}" maxlon="{E}"/>\n{pad}'
        '  <node id="1" version="1" lat="48.1355" lon="10.0685"/>\n'
        '  <node id="2" version="1" lat="48.1355" lon="10.0688"/>\n'
        '  <node id="3" version="1" lat="48.1357" lon="10.0688"/>\n'
        '  <node id="4" version="1" lat="48.1357" lon="10.0685"/>\n'
        f'  <way id="10" version="1"><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="4"/><nd ref="1"/>{tag}</way>\n'
        "</osm>\n"
    )


def inside_building_xy() -> tuple[float, float]:
    """A point inside a building of the default procedural city."""
    buildings, _ = procedural.generate(ProceduralConfig())
    p = buildings[0].footprint.representative_point()
    return p.x, p.y


@dataclass
class Case:
    api: Callable[[], Any]
    cli: list[str]
    error: type[Exception]
    match: str
    existing: list[str] = field(default_factory=list)  # scenes that exist before (and must stay)
    max_file_bytes: int | None = None  # patch settings.max_osm_file_bytes


def make_case(name: str, tmp: Path) -> Case:
    """Build one case; files go to ``tmp`` (outside the workspace)."""
    tmp.mkdir(parents=True, exist_ok=True)
    if name == "corrupt osm (truncated)":
        path = tmp / "trunc.osm"
        path.write_text(osm_text()[:-60], encoding="utf-8")  # cut inside the <way>
        return Case(lambda: build_scene(SceneConfig(name="s", source="osm_file", path=str(path))),
                    ["--osm-file", str(path)], OSMFormatError,
                    r"^osm_file: 'trunc.osm' is not valid OpenStreetMap XML \(.+\)$")
    if name == "empty osm file":
        path = tmp / "empty.osm"
        path.write_bytes(b"")
        return Case(lambda: build_scene(SceneConfig(name="s", source="osm_file", path=str(path))),
                    ["--osm-file", str(path)], OSMFormatError,
                    r"^osm_file: file 'empty.osm' is empty; expected OpenStreetMap XML or GeoJSON$")
    if name == "osm file without buildings":
        path = tmp / "grass.osm"
        path.write_text(osm_text(buildings=False), encoding="utf-8")
        return Case(lambda: build_scene(SceneConfig(name="s", source="osm_file", path=str(path))),
                    ["--osm-file", str(path)], OSMFormatError, r"^osm_file: 'grass.osm' holds no buildings")
    if name == "missing osm file":
        path = tmp / "nowhere.osm"
        return Case(lambda: build_scene(SceneConfig(name="s", source="osm_file", path=str(path))),
                    ["--osm-file", str(path)], OSMFormatError, r"^osm_file: file not found: '.*nowhere.osm'$")
    if name == "geojson not json":
        path = tmp / "bad.geojson"
        path.write_text('{"type": "FeatureCollection", "features": [', encoding="utf-8")
        return Case(lambda: build_scene(SceneConfig(name="s", source="geojson_file", path=str(path))),
                    ["--geojson", str(path)], OSMFormatError, r"^geojson_file: 'bad.geojson' is not valid JSON")
    if name == "inverted bbox":
        return Case(lambda: build_scene(SceneConfig(name="s", source="bbox", bbox=BBox.parse(f"{N},{W},{S},{E}"))),
                    ["--bbox", f"{N},{W},{S},{E}"], InvalidInputError,
                    rf"^bbox: inverted box, north \({S}\) is below south \({N}\); expected south < north$")
    if name == "zero-area bbox":
        return Case(lambda: build_scene(SceneConfig(name="s", source="bbox", bbox=BBox.parse(f"{S},{W},{S},{E}"))),
                    ["--bbox", f"{S},{W},{S},{E}"], InvalidInputError,
                    rf"^bbox: zero-area box \({S}, {W}, {S}, {E}\); expected south < north and west < east$")
    if name == "bbox larger than 2 km":
        text = "48.10,11.50,48.12,11.55"  # about 3.7 km x 2.2 km
        return Case(lambda: build_scene(SceneConfig(name="s", source="bbox", bbox=BBox.parse(text))),
                    ["--bbox", text], InvalidInputError,
                    r"^bbox: 37\d\d m x 22\d\d m is too large; expected at most 2000 m x 2000 m \(choose a smaller area\)$")
    if name == "unknown material":
        return Case(lambda: build_scene(SceneConfig(name="s", materials=MaterialConfig(building="plastic"))),
                    ["--procedural", "--material", "plastic"], InvalidInputError,
                    r"^materials.building: unknown material 'plastic'; expected one of brick, concrete, glass, metal, wood$")
    if name == "frequency outside material model":
        return Case(lambda: build_scene(SceneConfig(name="s", sites=SiteConfig(freq_hz=30e9))),
                    ["--procedural", "--freq-hz", "30e9"], InvalidInputError,
                    r"^sites.freq_hz: 3e\+10 Hz is outside \[1, 10\] GHz")
    if name == "ground site inside a building":
        x, y = inside_building_xy()
        sites_file = tmp / "sites.json"
        sites_file.write_text(json.dumps([{"x_m": x, "y_m": y, "height_m": 10, "mount": "ground"}]), encoding="utf-8")
        site = CustomSite(x_m=x, y_m=y, height_m=10.0, mount="ground")
        return Case(lambda: build_scene(SceneConfig(name="s", sites=SiteConfig(placement="custom", custom=(site,)))),
                    ["--procedural", "--sites-file", str(sites_file)], InvalidInputError,
                    rf"^sites\[0\]: position \({x:.1f}, {y:.1f}\) m is inside building 0; expected an outdoor position, "
                    r"or set mount to 'rooftop'$")
    if name == "duplicate scene name":
        return Case(lambda: build_scene(SceneConfig(name="s")), ["--procedural"], SceneExistsError,
                    r"^name: a scene named 's' already exists; choose another name or delete it first$", existing=["s"])
    if name == "bad scene name":
        return Case(lambda: build_scene(SceneConfig(name="../x")), ["--procedural", "--name", "../x"],
                    InvalidInputError,
                    r"^name: expected 1-64 characters of letters, digits, '_', '-' or '.', starting with a letter "
                    r"or digit, got '../x'$")
    if name == "osm file too large":
        path = tmp / "big.osm"
        path.write_text(osm_text(padding=1_600_000), encoding="utf-8")  # valid, with a building, but 1.6 MB
        return Case(lambda: build_scene(SceneConfig(name="s", source="osm_file", path=str(path))),
                    ["--osm-file", str(path)], OSMFormatError,
                    r"^osm_file: file 'big.osm' is 1.6 MB; expected at most 1 MB \(cut a smaller extract\)$",
                    max_file_bytes=1_000_000)
    if name == "online bbox while offline":
        text = f"{S},{W},{N},{E}"
        return Case(lambda: build_scene(SceneConfig(name="s", source="bbox", bbox=BBox.parse(text))),
                    ["--bbox", text], OSMDownloadError,
                    r"^bbox: could not reach OpenStreetMap \(127.0.0.1:9: .+\); this machine seems to be offline. "
                    r"Load an OSM file or build a procedural city instead.$")
    raise AssertionError(name)


CASES = [
    "corrupt osm (truncated)",
    "empty osm file",
    "osm file without buildings",
    "missing osm file",
    "geojson not json",
    "inverted bbox",
    "zero-area bbox",
    "bbox larger than 2 km",
    "unknown material",
    "frequency outside material model",
    "ground site inside a building",
    "duplicate scene name",
    "bad scene name",
    "osm file too large",
    "online bbox while offline",
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test here may reach the internet: OpenStreetMap points at a dead local port."""
    monkeypatch.setenv(settings.OVERPASS_URL_ENV, DEAD_OVERPASS)


def _prepare(case: Case, workspace: Path) -> dict[str, bytes]:
    """Create the scenes a case expects to exist; return their scene.json bytes."""
    before = {}
    for name in case.existing:
        build_scene(SceneConfig(name=name, procedural=ProceduralConfig(size_m=200.0), sites=SiteConfig(count=1)))
        before[name] = (workspace / "scenes" / name / "scene.json").read_bytes()
    return before


def _assert_untouched(workspace: Path, before: dict[str, bytes], list_scene_entries: Any) -> None:
    assert list_scene_entries(workspace) == sorted(before), "a scene folder (or .tmp-*) was left behind"
    for name, data in before.items():
        assert (workspace / "scenes" / name / "scene.json").read_bytes() == data
    assert not (workspace / "x").exists() and not (workspace.parent / "x").exists()  # "../x" escaped nowhere


@pytest.mark.parametrize("name", CASES)
def test_api_rejects(name: str, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                     list_scene_entries: Any) -> None:
    case = make_case(name, tmp_path / "inputs")
    before = _prepare(case, workspace)
    if case.max_file_bytes is not None:
        monkeypatch.setattr(settings, "max_osm_file_bytes", case.max_file_bytes)
    with pytest.raises(case.error, match=case.match) as info:
        case.api()
    assert isinstance(info.value, RFLocalInputError)  # the command line turns it into status 2
    assert "\n" not in str(info.value)
    _assert_untouched(workspace, before, list_scene_entries)


@pytest.mark.parametrize("name", CASES)
def test_cli_rejects(name: str, workspace: Path, tmp_path: Path, list_scene_entries: Any, run_cli: Any) -> None:
    case = make_case(name, tmp_path / "inputs")
    before = _prepare(case, workspace)
    args = ["scene", "build", "--name", "s", *case.cli]
    env = {settings.OVERPASS_URL_ENV: DEAD_OVERPASS}
    if case.max_file_bytes is None:
        proc = run_cli(args, workspace, env=env)
    else:
        # The same command line, with the size limit lowered in that process.
        code = (
            "import sys; from rflocal_core import settings; "
            f"settings.max_osm_file_bytes = {case.max_file_bytes}; "
            "from rflocal_core.cli import main; sys.exit(main(sys.argv[1:]))"
        )
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                              env={**os.environ, settings.WORKSPACE_ENV: str(workspace), **env}, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {proc.stderr!r}"
    assert lines[0].startswith("error: ")
    assert re.search(case.match, lines[0][len("error: "):]), lines[0]
    _assert_untouched(workspace, before, list_scene_entries)


def test_failure_while_writing_leaves_nothing(workspace: Path, monkeypatch: pytest.MonkeyPatch,
                                              list_scene_entries: Any) -> None:
    """A failure after files were started (here: writing scene.xml) removes the half-written folder."""
    from rflocal_core.scene import build as build_module

    def broken_scene_xml(*args: Any, **kwargs: Any) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build_module, "scene_xml", broken_scene_xml)
    with pytest.raises(OSError, match="No space left"):
        build_scene(SceneConfig(name="half", procedural=ProceduralConfig(size_m=200.0), sites=SiteConfig(count=1)))
    assert list_scene_entries(workspace) == []
    monkeypatch.undo()
    # and the name is free afterwards
    monkeypatch.setenv(settings.WORKSPACE_ENV, str(workspace))
    build_scene(SceneConfig(name="half", procedural=ProceduralConfig(size_m=200.0), sites=SiteConfig(count=1)))
    assert list_scene_entries(workspace) == ["half"]
