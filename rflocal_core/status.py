"""What is in the workspace and whether ray tracing can run: for overviews and pages."""

from __future__ import annotations

from typing import Any

from rflocal_core import backend, settings

#: The stages of the workbench, in order, with what each needs first.
#: The workflow's pages in order, each with the action (rflocal_core.access.ACTIONS) it exists for:
#: a role that may not take it does not see the page.
WORKFLOW: list[dict[str, str]] = [
    {"page": "Scene Builder", "action": "build_scene",
     "what": "draw a box on a map, load an OSM file or make a procedural city; "
     "buildings are extruded into a Sionna RT scene with materials and sites.", "needs": ""},
    {"page": "Data Generation", "action": "generate",
     "what": "ray-trace radio maps, sample positions and synthesize measurement "
     "reports (RSS, timing, angle of arrival) into Zarr datasets; import real measurements.", "needs": "a scene"},
    {"page": "Training Monitor", "action": "train",
     "what": "train classical baselines and PyTorch localization models in the "
     "background; watch live curves, cancel and resume.", "needs": "a dataset"},
    {"page": "Live Inference", "action": "predict",
     "what": "upload measurement JSON and see the predicted position, its "
     "uncertainty and heatmap on a map; ready demo models ship with the app.", "needs": "a trained run"},
    {"page": "Metrics", "action": "evaluate",
     "what": "error CDFs, percentiles, breakdowns, calibration and the Cramér-Rao bound.",
     "needs": "a trained run and a dataset"},
    {"page": "Ablations", "action": "ablate",
     "what": "what each model ingredient is worth, measured.", "needs": "a dataset"},
]


def _count(kind: str) -> int:
    path = settings.workspace_dir() / kind
    if not path.is_dir():
        return 0
    return sum(1 for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def backend_status() -> dict[str, Any]:
    """Whether Sionna RT can run, without importing it (cheap, for every page load)."""
    if backend.cuda_available():
        return {"ok": True, "device": "GPU (CUDA)", "message": ""}
    try:
        path = backend.check_llvm()
    except backend.BackendUnavailableError as exc:
        return {"ok": False, "device": "unavailable", "message": str(exc)}
    return {"ok": True, "device": "CPU (LLVM)", "message": path or ""}


def workspace_status() -> dict[str, Any]:
    """Counts of scenes, datasets and runs, the workspace path and the backend state.

    ``runs`` and ``datasets`` include the shipped demo runs and test split not yet copied into
    the workspace (they are, on first use by Live Inference or Metrics); ``demo`` says how many.
    """
    from rflocal_core import demo

    shipped = demo.shipped_not_installed()
    return {
        "workspace": str(settings.workspace_dir()),
        "scenes": _count("scenes"),
        "datasets": _count("datasets") + shipped["datasets"],
        "runs": _count("runs") + shipped["runs"],
        "demo": shipped,
        "backend": backend_status(),
    }


def stage_status(page: str) -> dict[str, Any]:
    """The description of a stage and what exists of its prerequisites."""
    step = next((s for s in WORKFLOW if s["page"] == page), None)
    if step is None:
        msg = f"page: expected one of {[s['page'] for s in WORKFLOW]}, got {page!r}"
        raise ValueError(msg)
    return {**step, "scenes": _count("scenes"), "datasets": _count("datasets"), "runs": _count("runs")}
