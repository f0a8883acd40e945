"""The shape of the core: every module imports, inference sits above the metrics, models join their
registry by decorator, and the typed results turn into the JSON the CLI prints. (Function length,
private names across modules and import cycles: tests/test_code_shape.py.)"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from rflocal_core.measurements import QualityReport
from rflocal_core.models.registry import BASELINES, NETWORKS, register
from rflocal_core.results import JsonResult, json_field

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "rflocal_core"


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of rflocal_core (packages by their ``__init__``)."""
    out = {}
    for path in sorted(CORE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> list[tuple[int, str, str | None]]:
    """``(line, module, name)`` of every import of rflocal_core in a file, at any depth (lazy imports too).

    ``name`` is the imported name for ``from module import name``, None for ``import module``.
    """
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, None) for a in node.names if a.name.startswith("rflocal_core")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rflocal_core"):
            out += [(node.lineno, node.module, a.name) for a in node.names]
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the rflocal_core modules it imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    graph = {}
    for name, path in MODULES.items():
        deps = set()
        for _, module, imported in _imports(path):
            sub = f"{module}.{imported}"
            deps.add(sub if sub in MODULES else module)
        graph[name] = {d for d in deps if d in MODULES and d != name}
    return graph


def test_run_evaluation_sits_with_inference_above_the_metrics() -> None:
    """Data flows from inference to the metrics, never back (no cycle anywhere: tests/test_code_shape.py)."""
    graph = import_graph()
    assert graph["rflocal_core.infer.evaluate"] >= {"rflocal_core.metrics", "rflocal_core.infer.run"}
    assert not any(m.startswith("rflocal_core.infer") for m in graph["rflocal_core.metrics.stats"])


def test_the_metrics_import_nothing_of_models_runs_or_inference_at_run_time() -> None:
    """Error statistics and the bound are plain numpy: data flows from inference to them, never back."""
    for name in ("rflocal_core.metrics", "rflocal_core.metrics.stats", "rflocal_core.metrics.crlb"):
        tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
        runtime = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        modules = {n.module for n in runtime if isinstance(n, ast.ImportFrom)}
        assert not {m for m in modules if m and m.startswith(("rflocal_core.models", "rflocal_core.train",
                                                                 "rflocal_core.infer"))}, name


def test_every_module_imports_and_none_imports_streamlit() -> None:
    """Each module imports on its own (in a fresh interpreter); the core never pulls in the UI."""
    names = [n for n in MODULES if not n.endswith("__main__")]
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted(m for m in ('streamlit', 'sionna') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().replace("'", '"')) == []  # Sionna loads only when ray tracing


# --------------------------------------------------------------------------- registry

REGISTRIES = ("NETWORKS", "BASELINES")


def test_models_join_their_registry_by_decorator() -> None:
    assert list(NETWORKS) == ["setnet", "heimdall", "mapformer", "locheatmap", "fpnet", "fpnet_knn"]
    assert list(BASELINES) == ["strongest_site", "weighted_centroid", "log_distance", "aoa_triangulation",
                               "toa_multilateration", "tdoa_multilateration", "knn", "map_matching", "lgbm",
                               "knn_lgbm", "ensemble"]
    for name, cls in {**NETWORKS, **BASELINES}.items():
        assert cls.name == name
    assert {cls.kind for cls in NETWORKS.values()} == {"network"}
    assert {cls.kind for cls in BASELINES.values()} == {"baseline"}
    # the registries are filled by the decorator only: no other module writes into them
    writes = []
    for path in CORE.rglob("*.py"):
        if path.name == "registry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for t in targets:
                if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id in REGISTRIES:
                    writes.append(f"{path.name}:{node.lineno}")
                if isinstance(t, ast.Name) and t.id in REGISTRIES:
                    writes.append(f"{path.name}:{node.lineno}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in REGISTRIES
                    and node.func.attr in ("setdefault", "update", "__setitem__", "pop")):
                writes.append(f"{path.name}:{node.lineno}")
    assert not writes, writes


def test_register_refuses_a_taken_name_and_a_class_of_no_kind() -> None:
    knn = BASELINES["knn"]

    class Impostor:
        kind = "baseline"

    with pytest.raises(ValueError, match="the name 'knn' is taken by rflocal_core.models.baselines.KNNFingerprint"):
        register("knn")(Impostor)

    class NoKind:
        pass

    with pytest.raises(TypeError, match="NoKind has kind None; expected one of baseline, network"):
        register("nokind")(NoKind)
    assert BASELINES["knn"] is knn and "nokind" not in BASELINES and "nokind" not in NETWORKS
    assert register("knn")(knn) is knn  # the same class again (a module reloaded) is no conflict


# --------------------------------------------------------------------------- typed results


@dataclass(frozen=True)
class _Part(JsonResult):
    a_m: float
    b: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class _Whole(JsonResult):
    name: str
    part: _Part = json_field(flatten=True)
    parts: dict[str, list[_Part]] = json_field(default_factory=dict)
    maybe: _Part | None = None
    note: str | None = json_field(default=None, omit_none=True)
    warnings: tuple[str, ...] = json_field(default=(), omit_empty=True)
    arrays: np.ndarray | None = json_field(default=None, json=False)
    quality: QualityReport = json_field(default_factory=QualityReport)


def test_results_to_json_and_back() -> None:
    whole = _Whole(name="w", part=_Part(float("nan"), (1, 2)), parts={"x": [_Part(np.float32(1.5))]},
                   maybe=_Part(2.0), arrays=np.zeros(3))
    plain = whole.to_json()
    assert plain == {"name": "w", "a_m": None, "b": [1, 2], "parts": {"x": [{"a_m": 1.5, "b": []}]},
                     "maybe": {"a_m": 2.0, "b": []}, "quality": QualityReport().to_dict()}
    json.dumps(plain, allow_nan=False)  # NaN is None, numpy values are Python's, tuples are lists
    again = _Whole.from_json(plain)
    assert again.part == _Part(None, (1, 2)) and again.parts == {"x": [_Part(1.5)]} and again.maybe == _Part(2.0)
    assert isinstance(again.quality, QualityReport) and again.arrays is None
    noted = _Whole(name="n", part=_Part(1.0), note="hi", warnings=("careful",))
    assert list(noted.to_json()) == ["name", "a_m", "b", "parts", "maybe", "note", "warnings", "quality"]
    assert _Whole.from_json(noted.to_json()) == noted
