"""Dataset exchange: export a split as rflocal-measurements/1, import measurement files as datasets.

A small two-scene dataset is generated once for the module (Sionna RT, a few seconds); the
real Antwerp LoRaWAN test split is imported once (skipped when ../shared/data is absent).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from rflocal_core.dataset import (
    DatasetExistsError,
    DatasetNotFoundError,
    ImportResult,
    export_dataset,
    import_measurements,
    open_dataset,
)
from rflocal_core.dataset.exchange import IMPORT_SOURCE, parse_split_fractions
from rflocal_core.dataset.store import position_extent_m
from rflocal_core.errors import InvalidInputError, SceneNotFoundError
from rflocal_core.geo import LocalFrame
from rflocal_core.measurements import (
    PHY_FIELDS,
    MeasurementFormatError,
    MeasurementSet,
    Node,
    Position,
    Report,
    Sample,
    convert_antwerp,
    dump_measurements,
    load_measurements,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SCENES = ("xa", "xb")
DATASET = "gen2"


def _ok(proc: Any) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _fails(proc: Any, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in line, (needle, line)
    return line


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def gen_ws(tmp_path_factory: pytest.TempPathFactory, workspace_env: Any) -> Path:
    """A workspace with two small procedural scenes and a generated dataset over both (ue mode, timing)."""
    from rflocal_core.dataset import GenerationConfig, generate_dataset
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    ws = tmp_path_factory.mktemp("exchange_ws")
    with workspace_env(ws):
        for i, name in enumerate(SCENES):
            build_scene(SceneConfig(name=name, procedural=ProceduralConfig(size_m=200, seed=7 + i),
                                    sites=SiteConfig(count=4), seed=7 + i))
        generate_dataset(GenerationConfig(name=DATASET, scenes=SCENES, samples_per_scene=60, cell_size_m=4.0,
                                          map_samples_per_tx=1_000_000, timing=True, paths_samples_per_src=10_000))
    return ws


@pytest.fixture
def gen(gen_ws: Path, workspace_env: Any) -> Iterator[Path]:
    """``$RFLOCAL_WORKSPACE`` pointed at the generated workspace for one test."""
    with workspace_env(gen_ws):
        yield gen_ws


@pytest.fixture(scope="module")
def antwerp_ms(antwerp_dir: Path) -> MeasurementSet:
    return convert_antwerp(antwerp_dir, split="test")


@pytest.fixture(scope="module")
def antwerp_ws(antwerp_ms: MeasurementSet, tmp_path_factory: pytest.TempPathFactory,
               workspace_env: Any) -> tuple[Path, ImportResult]:
    """A workspace holding the Antwerp test split imported as dataset ``antwerp``, and the summary."""
    ws = tmp_path_factory.mktemp("antwerp_ws")
    with workspace_env(ws):
        summary = import_measurements(antwerp_ms, name="antwerp", seed=3)
    return ws, summary


@pytest.fixture
def antwerp(antwerp_ws: tuple[Path, ImportResult], workspace_env: Any) -> Iterator[ImportResult]:
    ws, summary = antwerp_ws
    with workspace_env(ws):
        yield summary


# --------------------------------------------------------------------------- export of generated data


@pytest.mark.raytrace
def test_export_generated_nodes_reports_truth(gen: Path) -> None:
    from rflocal_core.scene import load_scene_meta

    root = open_dataset(DATASET)
    s = root["samples"]
    train = np.asarray(root["splits/train"][...])
    scene_idx = np.asarray(s["scene_idx"][...])
    ms = export_dataset(DATASET, split="train", scene="xb")
    assert ms.mode == "ue" and ms.scene == "xb"
    meta = load_scene_meta("xb")
    assert [n.id for n in ms.nodes] == [site["id"] for site in meta["sites"]]
    for node, site in zip(ms.nodes, meta["sites"]):
        assert node.lat == pytest.approx(site["lat"], abs=1e-8) and node.lon == pytest.approx(site["lon"], abs=1e-8)
        assert node.x_m == pytest.approx(site["x_m"], abs=1e-3) and node.alt_m == pytest.approx(site["z_m"], abs=1e-3)
        assert node.tx_power_dbm == pytest.approx(site["tx_power_dbm"])
    rows = train[scene_idx[train] == 1]
    assert [smp.id for smp in ms.samples] == [f"{DATASET}-{k}" for k in rows]
    arrays = {key: np.asarray(s[key][...]) for key in ("rss_dbm", "toa_ns", "aoa_deg", "snr_db", "ta")}
    with_toa = 0
    for smp, k in zip(ms.samples, rows):
        by_node = {r.node: r for r in smp.reports}
        present = {ms.nodes[j].id for j in np.flatnonzero(np.isfinite(arrays["rss_dbm"][k, 0])
                                                          | np.isfinite(arrays["toa_ns"][k, 0]))}
        assert set(by_node) == present
        for j, node in enumerate(ms.nodes):
            if node.id not in by_node:
                continue
            r = by_node[node.id]
            assert r.t_s == 0.0
            for key in ("rss_dbm", "toa_ns", "aoa_deg", "snr_db"):
                value = getattr(r, key)
                assert (np.nan if value is None else np.float32(value)) == arrays[key][k, 0, j] or (
                    value is None and np.isnan(arrays[key][k, 0, j])), (key, r)
            assert (-1 if r.ta is None else r.ta) == arrays["ta"][k, 0, j]
            with_toa += r.toa_ns is not None
        lat, lon = np.asarray(s["latlon"][k, 0])
        assert (smp.truth.lat, smp.truth.lon) == (float(lat), float(lon))
        assert smp.truth.alt_m == 1.5
    assert with_toa > 0  # timing was generated
    # PHY/MAC fields: one serving cell per sample, CQI and RSRQ with every report
    for smp in ms.samples:
        assert sum(r.serving == 1 for r in smp.reports) == 1
        assert all(r.cqi is not None and r.rsrq_db is not None and r.serving is not None for r in smp.reports)
    # limit keeps the first samples; the default split is test
    limited = export_dataset(DATASET, split="train", scene="xb", limit=3)
    assert [x.id for x in limited.samples] == [x.id for x in ms.samples[:3]]


@pytest.mark.raytrace
def test_export_multi_scene_needs_a_scene(gen: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"scene: .*2 scenes \(xa, xb\).*--scene"):
        export_dataset(DATASET, split="test")
    with pytest.raises(InvalidInputError, match="scene: dataset 'gen2' has the scenes xa, xb, got 'nope'"):
        export_dataset(DATASET, scene="nope")
    with pytest.raises(InvalidInputError, match="split: expected one of train, val, test, test_unseen, got 'tset'"):
        export_dataset(DATASET, split="tset")
    with pytest.raises(InvalidInputError, match="split: the 'test_unseen' split of 'gen2' is empty"):
        export_dataset(DATASET, split="test_unseen", scene="xa")
    with pytest.raises(InvalidInputError, match="limit: expected a positive integer"):
        export_dataset(DATASET, scene="xa", limit=0)
    with pytest.raises(DatasetNotFoundError, match="no dataset named 'missing'"):
        export_dataset("missing")


# --------------------------------------------------------------------------- round trip


@pytest.mark.raytrace
def test_round_trip_generated(gen: Path, tmp_path: Path) -> None:
    """export -> JSON file -> load_measurements -> import_measurements gives back the same values."""
    path = dump_measurements(export_dataset(DATASET, split="train", scene="xa"), tmp_path / "xa_train.json")
    ms = load_measurements(path)
    summary = import_measurements(ms, name="rt-xa", split_fractions=(1.0, 0.0, 0.0))
    assert summary.samples == len(ms.samples) and summary.splits["train"] == len(ms.samples)
    assert summary.scene == "xa" and summary.frame_source.startswith("scene 'xa'")

    orig, new = open_dataset(DATASET), open_dataset("rt-xa")
    rows = np.array([int(smp.id.rsplit("-", 1)[1]) for smp in ms.samples])
    assert new.attrs["source"] == IMPORT_SOURCE and new.attrs["mode"] == "ue"
    assert "scenes" not in new
    assert new["samples"].attrs["sample_ids"] == [smp.id for smp in ms.samples]
    # the PHY/MAC fields (ue mode with timing) travel too, masked where absent
    for key in ("rss_dbm", "toa_ns", "aoa_deg", "snr_db", "ta", "pos_m", "latlon", "t_s", "step_mask",
                "node_pos_m", "node_mask", *PHY_FIELDS, "mask_rsrq_db", "mask_serving", "phy_mask"):
        a = np.asarray(orig["samples"][key][...])[rows]
        b = np.asarray(new["samples"][key][...]).astype(a.dtype)
        assert a.shape == b.shape, key
        assert np.array_equal(a, b, equal_nan=True), key
    assert np.asarray(new["samples/node_pos_known"][...]).all()
    frame = LocalFrame.from_dict(new.attrs["frame"])
    assert frame == LocalFrame.from_dict(orig["scenes/xa"].attrs["frame"])

    # and back out: the imported dataset exports the same file content
    again = export_dataset("rt-xa", split="train")
    assert [smp.id for smp in again.samples] == [smp.id for smp in ms.samples]
    assert again.nodes == ms.nodes
    for a, b in zip(again.samples, ms.samples):
        assert a.reports == b.reports and a.truth == b.truth


# --------------------------------------------------------------------------- the real Antwerp data


def test_antwerp_import(antwerp: ImportResult, antwerp_ms: MeasurementSet) -> None:
    assert antwerp.samples == 8307 and antwerp.nodes == 44 and antwerp.unknown_position_nodes == 5
    assert antwerp.unlabeled == 0 and antwerp.mobile_slots == 0 and antwerp.steps == 1
    assert not antwerp.quality.faulty and antwerp.quality.kept["reports"] == 37_627
    plain = antwerp.to_json()  # what `data import` prints: the same keys as before results were typed
    assert list(plain) == ["name", "path", "samples", "splits", "unlabeled", "nodes", "unknown_position_nodes",
                           "mobile_slots", "steps", "mode", "scene", "frame_source", "seconds", "quality"]
    assert plain["quality"] == antwerp.quality.to_dict()
    # training looks at where the messages are (9 km), not at the gateways (53 km)
    assert 5_000 < position_extent_m("antwerp")["extent_m"] < 10_000
    root = open_dataset("antwerp")
    attrs = dict(root.attrs)
    assert attrs["complete"] is True and attrs["source"] == "import" and attrs["mode"] == "emitter"
    assert attrs["notes"] == list(antwerp_ms.notes) and attrs["scene"] is None
    assert attrs["frame_source"].startswith("centroid") and attrs["node_ids"] == [n.id for n in antwerp_ms.nodes]
    frame = LocalFrame.from_dict(attrs["frame"])
    assert 51.1 < frame.origin_lat < 51.3 and 4.3 < frame.origin_lon < 4.5
    s = root["samples"]
    assert s["rss_dbm"].shape == (8307, 1, 44) and s["node_pos_m"].shape == (8307, 44, 3)

    # splits partition the samples with truth (here: all of them), about 80/10/10
    splits = {k: np.asarray(root[f"splits/{k}"][...]) for k in ("train", "val", "test", "test_unseen")}
    together = np.concatenate(list(splits.values()))
    assert len(together) == len(set(together.tolist())) == 8307
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (6646, 831, 830)
    assert len(splits["test_unseen"]) == 0

    # gateways with unknown position: slot kept (node_mask), position NaN, flagged in node_pos_known
    known = np.asarray(s["node_pos_known"][0])
    unknown = [n.id for n, k in zip(antwerp_ms.nodes, known) if not k]
    assert unknown == [n.id for n in antwerp_ms.unknown_position_nodes]
    assert np.asarray(s["node_mask"][...]).all()
    node_pos = np.asarray(s["node_pos_m"][0])
    assert np.isnan(node_pos[~known, :2]).all() and np.isfinite(node_pos[known, :2]).all()
    rss = np.asarray(s["rss_dbm"][...])
    assert np.isfinite(rss[:, 0, ~known]).any()  # their RSSI is kept for fingerprinting
    # known gateways: metres in the centroid frame, exact degrees in node_latlon
    latlon = np.asarray(s["node_latlon"][0])
    x, y = frame.to_xy(latlon[known, 0], latlon[known, 1])
    assert np.allclose(node_pos[known, :2], np.column_stack([x, y]), atol=0.01)
    assert [tuple(latlon[j]) for j in np.flatnonzero(known)] == [(n.lat, n.lon) for n in antwerp_ms.nodes if n.lat]

    # values: every report lands in its sample row and node slot
    index = {n.id: j for j, n in enumerate(antwerp_ms.nodes)}
    expected = np.full_like(rss, np.nan)
    for i, smp in enumerate(antwerp_ms.samples):
        for r in smp.reports:
            expected[i, 0, index[r.node]] = r.rss_dbm
    assert np.array_equal(rss, expected, equal_nan=True)
    truth = np.asarray(s["latlon"][:, 0])
    assert np.array_equal(truth, [(smp.truth.lat, smp.truth.lon) for smp in antwerp_ms.samples])
    assert np.isnan(np.asarray(s["pos_m"][:, 0, 2])).all()  # no altitude in the data


def test_antwerp_export_gives_back_the_file(antwerp: ImportResult, antwerp_ms: MeasurementSet) -> None:
    ms = export_dataset("antwerp", split="val")
    by_id = {smp.id: smp for smp in antwerp_ms.samples}
    assert ms.mode == "emitter" and ms.nodes == antwerp_ms.nodes and len(ms.samples) == 831
    for smp in ms.samples:
        orig = by_id[smp.id]
        assert sorted(smp.reports, key=lambda r: r.node) == sorted(orig.reports, key=lambda r: r.node)
        assert smp.truth == orig.truth


def test_antwerp_zarr_samples_and_dataloader(antwerp: ImportResult) -> None:
    torch = pytest.importorskip("torch")
    from rflocal_core.dataset.torch_data import ZarrSamples

    ds = ZarrSamples("antwerp", "val")
    assert len(ds) == 831
    item = ds[0]
    assert item["rss_dbm"].shape == (1, 44) and item["node_pos_m"].shape == (44, 3)
    assert item["mask_rss_dbm"].sum() >= 3 and not item["mask_toa_ns"].any()
    assert torch.isfinite(item["target_m"][:2]).all()
    subset = torch.utils.data.Subset(ds, range(256))
    loader = torch.utils.data.DataLoader(subset, batch_size=64, shuffle=True, num_workers=2)
    seen = []
    for batch in loader:
        assert batch["rss_dbm"].shape[1:] == (1, 44) and batch["node_mask"].shape[1:] == (44,)
        assert torch.equal(batch["mask_rss_dbm"], torch.isfinite(batch["rss_dbm"]))
        seen += batch["index"].tolist()
    assert sorted(seen) == sorted(ds.indices[:256].tolist())


def test_antwerp_import_via_cli(antwerp_dir: Path, antwerp_ms: MeasurementSet, tmp_path: Path, workspace: Path,
                                run_cli: Any) -> None:
    src = dump_measurements(antwerp_ms, tmp_path / "antwerp_test.json")
    summary = _ok(run_cli(["data", "import", str(src), "--name", "ant", "--split-fractions", "0.5,0.25,0.25",
                           "--seed", "1"], workspace))
    assert summary["samples"] == 8307 and summary["nodes"] == 44
    assert summary["splits"] == {"train": 4154, "val": 2077, "test": 2076, "test_unseen": 0}
    attrs = _ok(run_cli(["data", "show", "ant"], workspace))
    assert attrs["input"]["file"] == str(src.resolve()) and len(attrs["input"]["sha256"]) == 64
    listed = _ok(run_cli(["data", "list"], workspace))
    assert [row["name"] for row in listed] == ["ant"] and listed[0]["samples"] == 8307
    _fails(run_cli(["data", "import", str(src), "--name", "ant"], workspace),
           "name: a dataset named 'ant' already exists")


# --------------------------------------------------------------------------- representation details


def test_mobile_sensors_times_and_missing_truth(workspace: Path) -> None:
    """Mobile-sensor reports get per-sample slots; T = distinct times; samples without truth are in no split."""
    nodes = (Node("g1", lat=51.21, lon=4.40, alt_m=30.0, tx_power_dbm=14.0), Node("g2"))
    samples = (
        Sample("a", (Report(node="g1", t_s=0.0, rss_dbm=-90.0), Report(node="g1", t_s=1.5, rss_dbm=-91.0, toa_ns=5.0),
                     Report(node="g2", t_s=1.5, rss_dbm=-99.0, ta=3),
                     Report(lat=51.2101, lon=4.4002, t_s=0.0, rss_dbm=-80.0),
                     Report(lat=51.2102, lon=4.4003, alt_m=2.0, t_s=1.5, aoa_deg=90.0)),
               Position(lat=51.2105, lon=4.4005)),
        Sample("b", (Report(node="g2", t_s=7.0, snr_db=3.0),)),
        Sample("c", (Report(lat=51.2110, lon=4.4010, rss_dbm=-70.0),), Position(lat=51.2111, lon=4.4011, alt_m=1.0)),
    )
    ms = MeasurementSet("emitter", None, nodes, samples, notes=("made up",))
    summary = import_measurements(ms, name="mob", split_fractions=(0.5, 0.0, 0.5))
    assert summary.mobile_slots == 2 and summary.steps == 2 and summary.unlabeled == 1
    root = open_dataset("mob")
    s = root["samples"]
    assert s["rss_dbm"].shape == (3, 2, 4)  # S = 2 nodes + 2 mobile slots, T = 2 distinct times
    assert np.array_equal(s["t_s"][...], [[0.0, 1.5], [7.0, 0.0], [0.0, 0.0]])
    assert np.array_equal(s["step_mask"][...], [[True, True], [True, False], [True, False]])
    assert np.array_equal(s["node_mask"][...], [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]])
    assert np.array_equal(s["node_pos_known"][...], [[1, 0, 1, 1], [1, 0, 0, 0], [1, 0, 1, 0]])
    rss = np.asarray(s["rss_dbm"][...])
    assert np.array_equal(rss[0], [[-90.0, np.nan, -80.0, np.nan], [-91.0, -99.0, np.nan, np.nan]], equal_nan=True)
    assert s["ta"][0, 1, 1] == 3 and s["toa_ns"][0, 1, 0] == 5.0 and s["aoa_deg"][0, 1, 3] == 90.0
    assert s["snr_db"][1, 0, 1] == 3.0
    frame = LocalFrame.from_dict(root.attrs["frame"])
    x, y = frame.to_xy(51.2102, 4.4003)
    assert np.allclose(s["node_pos_m"][0, 3], [x, y, 2.0], atol=1e-3)
    assert np.array_equal(s["node_latlon"][0, 2], [51.2101, 4.4002])
    # truth at the last step only
    pos = np.asarray(s["pos_m"][...])
    assert np.isnan(pos[0, 0]).all() and np.isfinite(pos[0, 1, :2]).all() and np.isnan(pos[0, 1, 2])
    assert np.isnan(pos[1]).all() and pos[2, 0, 2] == 1.0
    splits = np.concatenate([np.asarray(root[f"splits/{k}"][...]) for k in ("train", "val", "test")])
    assert sorted(splits.tolist()) == [0, 2]
    assert root.attrs["counts"]["unlabeled"] == 1
    assert root.attrs["nodes"][0] == {"id": "g1", "lat": 51.21, "lon": 4.40, "alt_m": 30.0, "tx_power_dbm": 14.0}
    assert any("no truth" in a for a in root.attrs["assumptions"])

    # and back: mobile reports come out with their own lat/lon
    split = next(k for k in ("train", "test") if 0 in np.asarray(root[f"splits/{k}"][...]))
    back = export_dataset("mob", split=split)
    assert back.samples[0].id == "a"
    assert sorted(back.samples[0].reports, key=repr) == sorted(samples[0].reports, key=repr)


def test_survey_file_import(workspace: Path) -> None:
    summary = import_measurements(REPO_ROOT / "assets" / "example_survey.json", name="survey")
    assert summary.samples == 2 and summary.nodes == 0 and summary.mobile_slots == 5
    assert summary.unlabeled == 1 and sum(summary.splits.values()) == 1
    s = open_dataset("survey")["samples"]
    assert s["rss_dbm"].shape == (2, 1, 5)
    assert np.array_equal(s["node_mask"][...].sum(1), [5, 3])


def test_example_file_needs_its_scene_for_scene_metres(workspace: Path) -> None:
    """The example file gives some positions only as x_m/y_m of scene 'demo': they need that scene's frame."""
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene, load_scene_meta

    example = REPO_ROOT / "assets" / "example_measurements_format.json"
    with pytest.raises(InvalidInputError, match=r"nodes\[2\]: .*x_m/y_m needs its scene's frame.*'demo' is not in"):
        import_measurements(example, name="ex")
    build_scene(SceneConfig(name="demo", procedural=ProceduralConfig(size_m=200), sites=SiteConfig(count=3)))
    summary = import_measurements(example, name="ex")
    assert summary.frame_source.startswith("scene 'demo'") and summary.steps == 3
    root = open_dataset("ex")
    assert root.attrs["frame"] == load_scene_meta("demo")["frame"] and root.attrs["scene"] == "demo"
    s = root["samples"]
    assert np.allclose(s["node_pos_m"][0, 2], [-311.3, -266.3, 20.0])
    assert np.allclose(s["pos_m"][2, 0], [-120.0, 85.0, np.nan], equal_nan=True)
    assert np.array_equal(s["t_s"][1], [0.0, 0.5, 1.0])
    assert np.allclose(s["rss_dbm"][1, :, :2], [[-65.1, -78.4], [-66.0, np.nan], [-64.2, -79.1]], equal_nan=True)


def test_bad_imports_leave_nothing_behind(workspace: Path) -> None:
    node = Node("g1", lat=51.0, lon=4.0)
    dup = MeasurementSet("ue", None, (node,), (
        Sample("ok", (Report(node="g1", rss_dbm=-80.0),), Position(lat=51.001, lon=4.0)),
        Sample("bad", (Report(node="g1", rss_dbm=-80.0), Report(node="g1", rss_dbm=-81.0))),
    ))
    with pytest.raises(MeasurementFormatError, match=r"samples\[1\].reports\[1\]: .*second report of node 'g1'"):
        import_measurements(dup, name="dup")
    xy_only = MeasurementSet("ue", "nowhere", (Node("g1", x_m=1.0, y_m=2.0),), (
        Sample("s", (Report(node="g1", rss_dbm=-80.0),)),))
    with pytest.raises(InvalidInputError, match=r"nodes\[0\]: .*x_m/y_m needs its scene's frame.*'nowhere'"):
        import_measurements(xy_only, name="xy")
    with pytest.raises(SceneNotFoundError, match="no scene named 'nowhere'"):
        import_measurements(dup, name="sc", scene="nowhere")
    with pytest.raises(InvalidInputError, match="split_fractions: expected three fractions"):
        import_measurements(dup, name="fr", split_fractions=(0.5, 0.5, 0.5))
    with pytest.raises(InvalidInputError, match="name: expected 1-64 characters"):
        import_measurements(dup, name="../x")
    with pytest.raises(MeasurementFormatError, match="no such file"):
        import_measurements(workspace / "missing.json", name="m")
    assert not (workspace / "datasets").exists() or list((workspace / "datasets").iterdir()) == []
    import_measurements(MeasurementSet("ue", None, (node,), dup.samples[:1]), name="one")
    with pytest.raises(DatasetExistsError, match="a dataset named 'one' already exists"):
        import_measurements(dup, name="one")
    assert sorted(p.name for p in (workspace / "datasets").iterdir()) == ["one"]


def test_import_replaces_an_interrupted_import_but_not_a_generation(workspace: Path) -> None:
    from rflocal_core.dataset.store import partial_path

    ms = MeasurementSet("ue", None, (Node("g1", lat=51.0, lon=4.0),),
                        (Sample("s", (Report(node="g1", rss_dbm=-80.0),), Position(lat=51.001, lon=4.0)),))
    zarr.open_group(str(partial_path("left")), mode="w").attrs.update({"source": IMPORT_SOURCE, "complete": False})
    assert import_measurements(ms, name="left").samples == 1
    assert not partial_path("left").exists()
    zarr.open_group(str(partial_path("gen")), mode="w").attrs.update({"digest": "abc", "complete": False})
    with pytest.raises(DatasetExistsError, match="interrupted generation of 'gen'"):
        import_measurements(ms, name="gen")
    assert partial_path("gen").exists()


def test_parse_split_fractions() -> None:
    assert parse_split_fractions("0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    assert parse_split_fractions("1,0,0") == (1.0, 0.0, 0.0)
    for bad in ("0.8,0.1", "a,b,c", "0.9,0.1,0.1", "-0.1,0.6,0.5", "nan,0.5,0.5"):
        with pytest.raises(InvalidInputError, match="split_fractions: expected"):
            parse_split_fractions(bad)


# --------------------------------------------------------------------------- command line


@pytest.mark.raytrace
def test_cli_export_and_import(gen: Path, tmp_path: Path, run_cli: Any) -> None:
    out = tmp_path / "sub" / "xb_test.json"
    summary = _ok(run_cli(["data", "export", "--dataset", DATASET, "--split", "val", "--scene", "xb",
                           "--out", str(out), "--limit", "2"], gen))
    assert summary["samples"] == 2 and summary["scene"] == "xb" and summary["nodes"] == 4 and summary["mode"] == "ue"
    assert summary["out"] == str(out) and summary["bytes"] == out.stat().st_size
    ms = load_measurements(out)
    assert len(ms.samples) == 2 and ms.scene == "xb"
    summary = _ok(run_cli(["data", "import", str(out), "--name", "cli-xb", "--seed", "4"], gen))
    assert summary["name"] == "cli-xb" and summary["samples"] == 2 and summary["scene"] == "xb"
    assert sum(summary["splits"].values()) == 2


@pytest.mark.raytrace
def test_cli_export_errors(gen: Path, tmp_path: Path, run_cli: Any) -> None:
    out = str(tmp_path / "o.json")
    _fails(run_cli(["data", "export", "--dataset", "nope", "--out", out], gen), "no dataset named 'nope'")
    _fails(run_cli(["data", "export", "--dataset", DATASET, "--split", "tset", "--out", out], gen),
           "split: expected one of train, val, test, test_unseen, got 'tset'")
    _fails(run_cli(["data", "export", "--dataset", DATASET, "--out", out], gen), "scene:", "--scene")
    _fails(run_cli(["data", "export", "--dataset", DATASET, "--scene", "xa", "--out", str(tmp_path)], gen),
           "out: cannot write")
    _fails(run_cli(["data", "export", "--dataset", DATASET, "--scene", "xa", "--limit", "-1", "--out", out], gen),
           "limit: expected a positive integer")
    assert not Path(out).exists()


def test_cli_import_errors(workspace: Path, tmp_path: Path, run_cli: Any) -> None:
    _fails(run_cli(["data", "import", str(tmp_path / "missing.json"), "--name", "x"], workspace), "no such file")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "rflocal-measurements/1", "mode": "ue",\n "samples": [}', encoding="utf-8")
    _fails(run_cli(["data", "import", str(bad), "--name", "x"], workspace), "bad.json: invalid JSON at line 2")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": "rflocal-measurements/1", "mode": "ue", "samples": [
        {"reports": [{"lat": 51.0, "lon": 4.0, "rssi": -80}]}]}), encoding="utf-8")
    _fails(run_cli(["data", "import", str(wrong), "--name", "x"], workspace), "samples[0].reports[0].rssi: unknown key")
    good = REPO_ROOT / "assets" / "example_survey.json"
    _fails(run_cli(["data", "import", str(good), "--name", "x", "--split-fractions", "0.8,0.3"], workspace),
           "split_fractions: expected three")
    _fails(run_cli(["data", "import", str(good), "--name", "bad/name"], workspace), "name: expected 1-64 characters")
    assert _ok(run_cli(["data", "import", str(good), "--name", "s1"], workspace))["samples"] == 2
    _fails(run_cli(["data", "import", str(good), "--name", "s1"], workspace),
           "name: a dataset named 's1' already exists")
    assert sorted(p.name for p in (workspace / "datasets").iterdir()) == ["s1"]
