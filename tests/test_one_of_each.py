"""One of each: every error class in errors.py, one speed of light, one atomic write, osmnx settings restored."""

from __future__ import annotations

import ast
import functools
import os
import pickle
from pathlib import Path

import pytest

import rflocal_core
from rflocal_core import errors

CORE = Path(rflocal_core.__file__).resolve().parent


@functools.cache
def _core_modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(encoding="utf-8"))) for path in sorted(CORE.rglob("*.py"))]


#: Exceptions that are not errors: a cancelled job is a signal and lives with the progress callbacks.
NOT_ERRORS = {"JobCancelled"}


def _base_names(node: ast.ClassDef) -> list[str]:
    return [b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else "" for b in node.bases]


def test_every_error_class_is_defined_in_errors_py() -> None:
    elsewhere = [
        f"{path.relative_to(CORE)}:{node.lineno} {node.name}"
        for path, tree in _core_modules() if path.name != "errors.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name not in NOT_ERRORS
        and any(name.endswith(("Error", "Exception", "Warning")) for name in _base_names(node))
    ]
    assert elsewhere == []
    defined = [n.name for n in ast.parse((CORE / "errors.py").read_text(encoding="utf-8")).body
               if isinstance(n, ast.ClassDef)]
    assert len(defined) >= 17


def test_documented_error_names_are_still_importable_where_they_were() -> None:
    from rflocal_core.dataset import DatasetExistsError, DatasetNotFoundError
    from rflocal_core.measurements import MeasurementFormatError
    from rflocal_core.measurements.table import TableFormatError
    from rflocal_core.models import NotFittedError
    from rflocal_core.reference import InferenceInputError
    from rflocal_core.scene.mesh import MeshError
    from rflocal_core.train import CheckpointError, RunNotFoundError

    assert MeasurementFormatError is errors.MeasurementFormatError
    assert TableFormatError is errors.TableFormatError and issubclass(TableFormatError, MeasurementFormatError)
    assert (DatasetExistsError, DatasetNotFoundError) == (errors.DatasetExistsError, errors.DatasetNotFoundError)
    assert (CheckpointError, RunNotFoundError) == (errors.CheckpointError, errors.RunNotFoundError)
    assert (NotFittedError, InferenceInputError, MeshError) == (errors.NotFittedError, errors.InferenceInputError,
                                                                errors.MeshError)


def test_format_errors_keep_their_path_through_pickle() -> None:
    for cls in (errors.MeasurementFormatError, errors.TableFormatError):
        err = cls("expected a number in [-200, 30], got \"abc\"", path="reports[0].rss_dbm").within("samples[3]")
        copied = pickle.loads(pickle.dumps(err))
        assert type(copied) is errors.MeasurementFormatError  # within() builds the base class, as before
        assert copied.path == "samples[3].reports[0].rss_dbm"
        assert str(copied) == 'samples[3].reports[0].rss_dbm: expected a number in [-200, 30], got "abc"'
        table = pickle.loads(pickle.dumps(cls("bad", path="rows")))
        assert type(table) is cls and table.path == "rows" and table.detail == "bad"
    assert errors.join_path("samples[3]", "[0]") == "samples[3][0]"
    assert errors.join_path("", "id") == "id" and errors.join_path("nodes[1]", "") == "nodes[1]"


def test_one_speed_of_light() -> None:
    from rflocal_core.constants import C_M_PER_NS, SPEED_OF_LIGHT_M_S

    assert SPEED_OF_LIGHT_M_S == 299_792_458.0 and C_M_PER_NS == 0.299792458
    literals = [
        f"{path.relative_to(CORE)}:{node.lineno} {node.value!r}"
        for path, tree in _core_modules() if path.name != "constants.py"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
        and round(float(node.value) / 299_792_458.0, 12) in (1.0, 1e-9, 1e-6, 1e-3)
    ]
    assert literals == []


def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path: Path) -> None:
    from rflocal_core.workspace import TEMP_PREFIX, atomic_path, atomic_write_bytes, atomic_write_text

    target = tmp_path / "out.bin"
    assert atomic_write_bytes(target, b"\x00\x01") == target and target.read_bytes() == b"\x00\x01"
    assert atomic_write_text(tmp_path / "t.json", "é\n").read_bytes() == "é\n".encode()
    with pytest.raises(RuntimeError, match="writer failed"), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(f"{TEMP_PREFIX}out.bin-")
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "t.json"]
    with pytest.raises(TypeError):  # text where bytes are expected: nothing is left behind
        atomic_write_bytes(target, "text")  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "t.json"]
    names = set()
    for _ in range(3):
        with atomic_path(target) as tmp:
            names.add(tmp.name)
            tmp.write_bytes(b"new")
    assert len(names) == 3 and target.read_bytes() == b"new"


def test_torch_and_upload_writers_use_the_helper(tmp_path: Path, workspace: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from rflocal_core.scene.footprints import save_upload
    from rflocal_core.train.runs import write_torch

    file = tmp_path / "model.pt"
    write_torch(file, {"format": "x", "w": torch.arange(3)})
    assert torch.load(file, weights_only=True)["w"].tolist() == [0, 1, 2]

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", broken_replace)
        with pytest.raises(OSError, match="disk full"):
            write_torch(file, {"format": "y"})
        with pytest.raises(OSError, match="disk full"):
            save_upload("my city.osm", b"<osm/>")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != workspace.name) == ["model.pt"]
    assert torch.load(file, weights_only=True)["format"] == "x"
    assert list((workspace / "uploads").iterdir()) == []
    path = save_upload("my city.osm", b"<osm/>")
    assert path.name == "my_city.osm" and path.read_bytes() == b"<osm/>"
    assert [p.name for p in (workspace / "uploads").iterdir()] == ["my_city.osm"]


def test_no_other_rename_into_place() -> None:
    # Files reach their final name only through workspace.atomic_path; folders through
    # workspace.staged_dir (finished folders renamed: workspace.rename_dir), except the datasets'
    # resumable .partial-<name> folders (dataset/location.py: a local folder, or fsspec's move on a URL).
    allowed = {"workspace.py": 3, "dataset/exchange.py": 1, "dataset/location.py": 1}
    found: dict[str, int] = {}
    for path, tree in _core_modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            func, nargs = node.func, len(node.args) + len(node.keywords)
            is_os = isinstance(func.value, ast.Name) and func.value.id == "os" and func.attr in ("replace", "rename")
            is_path = func.attr in ("replace", "rename") and nargs == 1 and not node.keywords  # str.replace takes 2
            if is_os or is_path:
                key = path.relative_to(CORE).as_posix()
                found[key] = found.get(key, 0) + 1
    assert found == allowed


def test_osmnx_settings_are_restored_and_serialized() -> None:
    import threading

    import osmnx as ox

    from rflocal_core.scene.footprints import osmnx_settings

    before = (ox.settings.requests_timeout, ox.settings.use_cache, ox.settings.overpass_url)
    with pytest.raises(RuntimeError, match="download failed"), osmnx_settings(requests_timeout=3, use_cache=False):
        assert (ox.settings.requests_timeout, ox.settings.use_cache) == (3, False)
        raise RuntimeError("download failed")
    assert (ox.settings.requests_timeout, ox.settings.use_cache, ox.settings.overpass_url) == before
    with pytest.raises(AttributeError, match="requests_timeot"), osmnx_settings(requests_timeot=3):
        pass

    seen: list[object] = []
    entered, release = threading.Event(), threading.Event()

    def other_job() -> None:
        with osmnx_settings(overpass_url="http://127.0.0.1:9/api"):
            entered.set()
            release.wait(10)

    worker = threading.Thread(target=other_job)
    worker.start()
    assert entered.wait(10)
    def second_job() -> None:
        with osmnx_settings(use_cache=True):
            seen.append(ox.settings.overpass_url)

    waiter = threading.Thread(target=second_job)
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and seen == []  # the second download waits for the first
    release.set()
    worker.join(10)
    waiter.join(10)
    assert seen == [before[2]]  # and sees the first one's settings restored, not its overpass_url
    assert (ox.settings.requests_timeout, ox.settings.use_cache, ox.settings.overpass_url) == before


def test_from_bbox_offline_restores_osmnx_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import osmnx as ox

    from rflocal_core import settings
    from rflocal_core.errors import OSMDownloadError
    from rflocal_core.geo import BBox
    from rflocal_core.scene.footprints import from_bbox

    before = (ox.settings.requests_timeout, ox.settings.use_cache, ox.settings.overpass_url)
    monkeypatch.setenv(settings.OVERPASS_URL_ENV, "http://127.0.0.1:9/api")  # discard port: refused at once
    with pytest.raises(OSMDownloadError, match=r"could not reach OpenStreetMap \(127\.0\.0\.1:9"):
        from_bbox(BBox(48.137, 11.575, 48.139, 11.578))
    assert (ox.settings.requests_timeout, ox.settings.use_cache, ox.settings.overpass_url) == before
