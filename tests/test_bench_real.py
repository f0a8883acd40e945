"""bench/bench_real.py on small slices of the real sets: imports, splits, skips, figures, table (not timed)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

@pytest.fixture(scope="module")
def bench(load_bench) -> ModuleType:
    """``bench/bench_real.py`` as a module."""
    return load_bench("bench_real")


def _head(src: Path, dst: Path, rows: int) -> None:
    """The header and the first ``rows`` lines of ``src`` into ``dst``."""
    with src.open() as f:
        lines = [next(f) for _ in range(rows + 1)]
    dst.write_text("".join(lines))


@pytest.fixture
def real_slices(shared_data: Path, tmp_path: Path) -> Path:
    """A data folder like ``../shared/data/real`` with the first rows of each real set."""
    real = shared_data / "real"
    antwerp, duke = real / "antwerp_lorawan", real / "duke_cbrs"
    if not (antwerp / "x_test.csv").is_file() or not (duke / "Duke_CBRS.csv").is_file():
        pytest.skip(f"real sets absent under {real}")
    out = tmp_path / "real"
    (out / "antwerp_lorawan").mkdir(parents=True)
    (out / "duke_cbrs").mkdir()
    for name in ("x_val.csv", "y_val.csv", "x_test.csv", "y_test.csv"):
        _head(antwerp / name, out / "antwerp_lorawan" / name, 300)
    for name in ("bs_to_gateway_crosswalk_from_anantarj.csv", "lorawan_antwerp_gateway_locations.json"):
        shutil.copy(antwerp / name, out / "antwerp_lorawan" / name)
    _head(duke / "Duke_CBRS.csv", out / "duke_cbrs" / "Duke_CBRS.csv", 6000)
    return out


def test_duke_slice_split_by_area_and_fingerprint_models_only(bench: ModuleType, real_slices: Path,
                                                              workspace: Path) -> None:
    from rflocal_core.dataset import open_dataset
    from rflocal_core.geo import LocalFrame

    real = bench.SETS["duke"]
    info = bench.ensure_dataset(real, real_slices, 0)
    assert info["dataset"] == "duke-b200-s0" and info["split"]["kind"] == "spatial blocks" and info["split"]["block_m"] == bench.DUKE_BLOCK_M
    counts = info["splits"]
    total = counts["train"] + counts["val"] + counts["test"]
    assert all(counts[k] > 0 for k in ("train", "val", "test")) and counts["train"] > total / 2
    # no 200 m square on two sides (squares as block_splits draws them: frame at the samples' mean)
    root = open_dataset(info["dataset"])
    latlon = np.asarray(root["samples/latlon"][...]).reshape(total, -1)[:, :2]
    x, y = LocalFrame.at(*latlon.mean(0)).to_xy(latlon[:, 0], latlon[:, 1])
    square = np.floor(np.column_stack([x, y]) / bench.DUKE_BLOCK_M).astype(int)
    sides = {k: {tuple(b) for b in square[np.asarray(root[f"splits/{k}"][...])]} for k in ("train", "val", "test")}
    assert not sides["train"] & sides["val"] and not sides["train"] & sides["test"] and not sides["val"] & sides["test"]
    assert {k: len(v) for k, v in sides.items()} == info["split"]["blocks"]

    assert bench.ensure_dataset(real, real_slices, 1)["dataset"] == "duke-b200-s1"
    rows = bench.bench_set(real, ["knn", "setnet", "strongest_site", "map_matching"], seeds=[0, 1], epochs=1,
                           max_minutes=0.2)
    by = {r.model: r for r in rows}
    knn = by["knn"]
    # a baseline runs once per area split: split i with seed i
    assert knn.skipped is None and [(r["seed"], r["dataset"]) for r in knn.runs] == [(0, "duke-b200-s0"),
                                                                                     (1, "duke-b200-s1")]
    run = knn.runs[0]
    assert run["test_count"] == counts["test"] and 0 < run["test_median_m"] <= run["test_p95_m"]
    assert knn.runs[1]["test_median_m"] != run["test_median_m"]  # another area split
    assert 0.0 <= run["inside_1sigma"] <= run["inside_2sigma"] <= 1.0
    for model in ("setnet", "strongest_site"):
        assert by[model].skipped.startswith("places reports at their nodes' positions; no node reporting in the "
                                            "train split of 'duke-b200-s0' has a known position")
        assert not by[model].runs
    assert by["map_matching"].skipped.startswith("reads radio maps and scene rasters; 'duke-b200-s0' has none")

    text = bench.table(rows)
    assert f"| duke | knn | 2 | {knn.figure('test_median_m'):.0f} | {knn.figure('test_mean_m'):.0f} |" in text
    assert "- duke / map_matching: reads radio maps" in text and "| duke | setnet |" not in text
    median = (knn.runs[0]["test_median_m"] + knn.runs[1]["test_median_m"]) / 2
    assert json.loads(json.dumps(knn.to_json()))["median_over_seeds"]["test_median_m"] == pytest.approx(median)


def test_antwerp_slice_network_over_seeds_and_published_rows(bench: ModuleType, real_slices: Path,
                                                             workspace: Path) -> None:
    real = bench.SETS["antwerp"]
    info = bench.ensure_dataset(real, real_slices, 2)
    assert info["dataset"] == "antwerp" and info["splits"]["test"] == 300 and info["splits"]["train"] + info["splits"]["val"] == 300
    rows = bench.bench_set(real, ["heimdall", "toa_multilateration"], seeds=[0, 1, 2], epochs=1, max_minutes=0.5,
                           train_options={"batch_size": 64})
    net, toa = rows
    from rflocal_core.train.runs import run_dir

    config = json.loads((run_dir(net.runs[0]["run_id"]) / "config.json").read_text(encoding="utf-8"))
    assert config["train_config"]["batch_size"] == 64  # --train-set reaches the network runs
    assert toa.skipped.startswith("locates from time-of-arrival reports; no node of known position reports one") \
        and not toa.runs
    assert net.skipped is None and [r["seed"] for r in net.runs] == [0, 1, 2]  # one dataset, three seeds
    assert {r["dataset"] for r in net.runs} == {"antwerp"}
    assert len({r["test_median_m"] for r in net.runs}) > 1  # the seeds differ
    medians = sorted(r["test_median_m"] for r in net.runs)
    assert net.figure("test_median_m") == medians[1]  # the median over the seeds, not the mean
    assert all(r["inside_1sigma"] is not None for r in net.runs)  # networks predict a sigma
    text = bench.table(rows)
    assert "| antwerp | heimdall | 3 |" in text
    assert "| antwerp | DRAFNET (published): messages heard by >= 3 gateways (as our test file) | – | – | 226 |" in text


def test_cli_refuses_unknown_names(bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = bench.main(["--sets", "nowhere", "--only", "knn,nonet", "--workspace", str(tmp_path / "ws"),
                       "--out", str(tmp_path / "real.json")])
    assert code == 2 and "unknown set or model: nowhere, nonet" in capsys.readouterr().err
    assert not (tmp_path / "real.json").exists()


def test_cli_refuses_bad_options_in_one_line(bench: ModuleType, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--sets", "antwerp", "--only", "fpnet", "--workspace", str(tmp_path / "ws"), "--out", str(tmp_path / "r.json")]
    assert bench.main([*args, "--train-set", "batch_size=abc"]) == 2
    assert capsys.readouterr().err == "error: batch_size: expected an integer in [1, 65536], got 'abc'\n"
    assert bench.main([*args, "--train-set", "max_minutes=3"]) == 2
    assert "--train-set: max_minutes has its own flag" in capsys.readouterr().err
    assert bench.main([*args, "--set", "fpnet:d_model=0"]) == 2 and "d_model" in capsys.readouterr().err
    assert bench.training_options(["batch_size=256", "select_on=mean"]) == {"batch_size": 256, "select_on": "mean"}
    assert not (tmp_path / "r.json").exists()


def test_results_file_keeps_the_rows_not_rerun(bench: ModuleType, tmp_path: Path, workspace: Path) -> None:
    def done(name: str, model: str, median: float) -> dict:
        run = {"seed": 0, "dataset": name, "test_median_m": median, "test_mean_m": 2 * median, "test_p95_m": 5 * median,
               "inside_1sigma": 0.4, "inside_2sigma": 0.85, "val_median_m": median, "train_s": 1.0}
        kind = "network" if model == "heimdall" else "baseline"
        return {name: {"rows": [{**bench.Row(name, model, kind, [run]).to_json(), "bench": {"command": model}}]}}

    target = tmp_path / "real.json"
    target.write_text("[1, 2]")  # not a file of this bench: replaced
    bench.write_results(target, done("duke", "knn", 140.0))
    bench.write_results(target, done("antwerp", "knn", 160.0))
    bench.write_results(target, done("duke", "heimdall", 130.0))  # another model of a set: added
    out = bench.write_results(target, done("duke", "knn", 120.0))  # re-run of one model: replaced
    assert json.loads(target.read_text()) == out and list(out["sets"]) == ["antwerp", "duke"]
    assert [r["model"] for r in out["sets"]["duke"]["rows"]] == ["heimdall", "knn"]  # registry order
    lines = out["table"].splitlines()
    assert "| antwerp | knn | 1 | 160 | 320 | 800 | 40% | 85% | 1 |" in lines
    assert "| duke | knn | 1 | 120 | 240 | 600 | 40% | 85% | 1 |" in lines and "| duke | knn | 1 | 140 |" not in out["table"]
    assert "| duke | heimdall | 1 | 130 |" in out["table"]
    assert ("- duke: best model other than knn (lowest median): heimdall, 130 m median / 260 m mean = 1.08 / 1.08 x "
            "knn's") in lines


def test_processes_side_by_side_import_a_set_once(bench: ModuleType, real_slices: Path, workspace: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Bench processes split by --only start together: one imports the set, the others wait and read it (two
    imports of one name at once once left a half-replaced dataset and a crash)."""
    from concurrent.futures import ThreadPoolExecutor

    real = bench.SETS["antwerp"]
    with ThreadPoolExecutor(3) as pool:
        infos = list(pool.map(lambda _: bench.ensure_dataset(real, real_slices, 0), range(3)))
    assert all(info == infos[0] for info in infos) and infos[0]["splits"]["test"] == 300
    assert capsys.readouterr().err.count("imported antwerp") == 1
