"""The audit log (issue 20): who started, cancelled or deleted what, appended to
``workspace/audit.jsonl`` and never rewritten; and the owners of runs and datasets."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pandas as pd
import pytest

from rflocal_core import audit
from rflocal_core.audit import read_audit, record
from rflocal_core.errors import InvalidInputError
from rflocal_core.measurements import MeasurementSet, Node, Position, Report, Sample

ROOT = Path(__file__).resolve().parents[1]


def _measurements() -> MeasurementSet:
    """40 positions in a 400 m square around three gateways, RSS by a log-distance law (enough for kNN)."""
    lat0, lon0 = 51.21, 4.40
    gateways = [(0.0, 0.0), (400.0, 0.0), (0.0, 400.0)]
    nodes = tuple(Node(f"g{i}", lat=lat0 + y / 111_320, lon=lon0 + x / (111_320 * math.cos(math.radians(lat0))),
                       alt_m=20.0) for i, (x, y) in enumerate(gateways))
    samples = []
    for k in range(40):
        x, y = 20.0 + 9.0 * k, 380.0 - 8.5 * k
        reports = tuple(Report(node=f"g{i}", rss_dbm=-40.0 - 30.0 * math.log10(max(math.hypot(x - gx, y - gy), 1.0)))
                        for i, (gx, gy) in enumerate(gateways))
        truth = Position(lat=lat0 + y / 111_320, lon=lon0 + x / (111_320 * math.cos(math.radians(lat0))))
        samples.append(Sample(f"s{k}", reports, truth))
    return MeasurementSet("ue", None, nodes, tuple(samples))


def test_record_appends_one_json_line_per_entry_and_reads_them_back(workspace):
    first = record("ana", "start", "job:train-1", kind="train", label="r1")
    assert audit.audit_path() == workspace / "audit.jsonl"
    before = (workspace / "audit.jsonl").read_bytes()
    record("bo", "delete", "run:r1", owner="ana")
    after = (workspace / "audit.jsonl").read_bytes()
    assert after.startswith(before)  # appended, the earlier line untouched
    lines = after.decode().splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == first
    assert set(first) == {"time_utc", "actor", "action", "target", "details"} and first["time_utc"].endswith("+00:00")
    assert [e["actor"] for e in read_audit()] == ["ana", "bo"]
    assert read_audit(actor="bo") == [json.loads(lines[1])]
    assert read_audit(action="start")[0]["details"] == {"kind": "train", "label": "r1"}
    assert read_audit(target="run:r1")[0]["details"] == {"owner": "ana"}


def test_concurrent_writers_never_interleave_a_line(workspace):
    def write(n: int) -> None:
        for i in range(50):
            record(f"user{n}", "start", f"job:{n}-{i}", padding="x" * 500)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = read_audit()
    assert len(entries) == 400 and all(e["action"] == "start" for e in entries)
    assert len({e["target"] for e in entries}) == 400


def test_a_torn_line_is_reported_not_hidden_and_bad_entries_are_refused(workspace):
    record("ana", "start", "job:a")
    with open(workspace / "audit.jsonl", "a", encoding="utf-8") as f:
        f.write('{"time_utc": "2026-01-01T00:00:00+00:00", "actor": "an')  # a crash mid-write
    assert read_audit()[-1] == {"action": "unreadable", "line": 2}
    with pytest.raises(InvalidInputError, match=r"audit: actor must be a non-empty string, got ''"):
        record("", "start", "job:a")
    assert read_audit(action="unreadable") == [{"action": "unreadable", "line": 2}]


def test_an_empty_workspace_has_an_empty_log(workspace):
    assert read_audit() == [] and not (workspace / "audit.jsonl").exists()


def test_datasets_and_runs_keep_their_owner_and_deletes_are_recorded(workspace):
    from rflocal_core.dataset import delete_dataset, import_measurements, list_datasets
    from rflocal_core.train import delete_run, list_runs, train

    import_measurements(_measurements(), name="survey", owner="ana")
    assert [(d["name"], d["owner"]) for d in list_datasets()] == [("survey", "ana")]
    result = train("survey", "knn", owner="ana")
    assert [(r["run_id"], r["owner"]) for r in list_runs()] == [(result.run_id, "ana")]
    assert json.loads((workspace / "runs" / result.run_id / "config.json").read_text())["owner"] == "ana"

    delete_run(result.run_id, actor="bo")
    delete_dataset("survey", actor="bo")
    deletes = read_audit(action="delete")
    assert [(e["actor"], e["target"]) for e in deletes] == [("bo", f"run:{result.run_id}"), ("bo", "dataset:survey")]
    assert deletes[0]["details"] == {"model": "knn", "dataset": "survey", "owner": "ana"}
    assert deletes[1]["details"] == {"partial": False, "owner": "ana"}
    assert list_runs() == [] and list_datasets() == []


def test_without_an_owner_the_command_line_and_python_are_local(workspace, run_cli):
    from rflocal_core.dataset import import_measurements, list_datasets

    import_measurements(_measurements(), name="mine")
    assert list_datasets()[0]["owner"] == "local"
    proc = run_cli(["data", "delete", "mine"], workspace)
    assert proc.returncode == 0, proc.stderr
    assert [(e["actor"], e["action"], e["target"]) for e in read_audit()] == [("local", "delete", "dataset:mine")]
    record("ana", "start", "job:x")
    proc = run_cli(["audit", "--action", "delete"], workspace)  # the log from the command line
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == read_audit(action="delete")
    assert [e["actor"] for e in json.loads(run_cli(["audit"], workspace).stdout)] == ["local", "ana"]


def test_deleting_a_scene_is_recorded(workspace):
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene, delete_scene, list_scenes

    build_scene(SceneConfig(name="gone", procedural=ProceduralConfig(size_m=160, seed=3), sites=SiteConfig(count=3)))
    delete_scene("gone", actor="ana")
    assert list_scenes() == []
    assert [(e["actor"], e["action"], e["target"]) for e in read_audit()] == [("ana", "delete", "scene:gone")]


def test_the_pages_show_owners_of_datasets_and_runs(workspace):
    from streamlit.testing.v1 import AppTest

    from rflocal_core.dataset import import_measurements
    from rflocal_core.train import train

    import_measurements(_measurements(), name="survey", owner="ana")
    run_id = train("survey", "knn", owner="bo").run_id
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/views/data_generation.py")
    at.run()
    assert not at.exception
    listing = next(df.value for df in at.dataframe if "owner" in df.value.columns and "samples" in df.value.columns)
    assert listing.set_index("name").loc["survey", "owner"] == "ana"
    at.switch_page("pages/views/training_monitor.py")
    at.run()
    assert not at.exception
    runs = next(df.value for df in at.dataframe if "run" in df.value.columns)
    assert isinstance(runs, pd.DataFrame) and runs.set_index("run").loc[run_id, "owner"] == "bo"


def test_an_ablation_study_keeps_its_owner_and_gives_it_to_its_runs(workspace):
    from rflocal_core import ablate
    from rflocal_core.dataset import import_measurements
    from rflocal_core.train import list_runs

    import_measurements(_measurements(), name="survey")
    study = ablate.Study("own", "one kNN variant", "knn", (ablate.Variant("plain"),))
    out = ablate.run_study(study, "survey", name="owned", owner="ana")
    assert out["state"] == "done" and out["owner"] == "ana"
    assert [(a["name"], a["owner"]) for a in ablate.list_ablations()] == [("owned", "ana")]
    assert [r["owner"] for r in list_runs()] == ["ana"]
