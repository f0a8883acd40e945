"""Predicting a measurement file of a scene the run was never trained on.

A geometric model (ToA multilateration, AoA triangulation, log-distance, centroids) needs
nothing of its training scenes: given the nodes' positions it solves in any scene. So a file
whose scene or nodes the run never saw is read in that scene's own layout (its frame, the
file's nodes placed by the file or the workspace scene; :func:`~rflocal_core.reference.new_scene_reference`)
and predicted in its coordinates. A model tied to its training scenes (kNN's fingerprints,
map matching's and the map networks' radio maps, a network's learned node identities and
coordinate range) refuses such a file, naming the scene and why::

    inputs = file_inputs(load_run("toa-..."), load_measurements("city.json"))
    inputs.new_scene.name if inputs.new_scene else "a training scene"
"""

from __future__ import annotations

from dataclasses import dataclass

from rflocal_core.errors import InferenceInputError
from rflocal_core.infer.run import LoadedRun
from rflocal_core.measurements import MeasurementSet
from rflocal_core.models.inputs import Inputs
from rflocal_core.models.registry import BASELINES
from rflocal_core.reference import (
    BadSample,
    NewScene,
    RunReference,
    file_fit_problem,
    held_out_problem,
    measurements_to_inputs,
    new_scene_reference,
)


@dataclass(frozen=True)
class FileInputs:
    """A measurement file read for one run (see :func:`file_inputs`).

    Attributes
    ----------
    inputs : Inputs or None
        The samples that can be predicted (None if none can).
    bad : list of BadSample
    warnings : list of str
    flags : list of list of str
        Per kept sample, what is unusual about it.
    reference : RunReference
        Whose frame and nodes the inputs are in: the run's, or the file's own scene's.
    new_scene : NewScene or None
        The file's own scene when the run was not trained on it.
    """

    inputs: Inputs | None
    bad: list[BadSample]
    warnings: list[str]
    flags: list[list[str]]
    reference: RunReference
    new_scene: NewScene | None = None


def any_scene_models() -> list[str]:
    """The registered models that predict in a scene they were not trained on."""
    return [name for name, cls in BASELINES.items() if getattr(cls, "any_scene", False)]


def scene_refusal(run: LoadedRun) -> str | None:
    """Why ``run`` cannot predict in a scene it was not trained on; None when it can."""
    name = run.config.get("model") or getattr(run.model, "name", "the model")
    scenes = ", ".join(repr(s) for s in run.reference.scenes)
    if run.needs_maps and run.any_scene:  # window frame: any scene, given its maps (a file has none)
        return (f"{name} predicts from radio maps, which a file does not bring, and the run has those of its "
                f"training scene(s) {scenes} only (generate a dataset of this scene and evaluate the run on it: "
                "trained with frame=window, it predicts in any scene whose maps come with the data)")
    if run.needs_maps:
        return (f"{name} predicts from radio maps, and the run has those of its training scene(s) {scenes} only "
                "(generate a dataset of this scene and train on it)")
    if run.any_scene:
        return None
    if hasattr(run.model, "net"):
        area = run.reference.area_m
        return (f"{name} is a network that learned the node identities and the coordinate range of its training "
                f"scene(s) {scenes} (x {area[0]:.0f}..{area[1]:.0f} m, y {area[2]:.0f}..{area[3]:.0f} m)")
    return (f"{name} matches what it learned in its training scene(s) {scenes} (fingerprints of their nodes), "
            "which another scene does not share")


def _refused(problem: str, why: str) -> str:
    return (f"{problem}; {why}, so it cannot predict there. Models that predict in any scene from the nodes' "
            f"positions: {', '.join(any_scene_models())}, and setnet or heimdall trained with --set frame=sample")


def file_inputs(run: LoadedRun, ms: MeasurementSet) -> FileInputs:
    """Read a measurement file for ``run``: in its training scene when the file fits it, else in the
    file's own scene for a model that predicts in any scene.

    Raises
    ------
    InferenceInputError
        The file's mode is not the run's; or its scene is not one the run was trained on (or a
        node sits elsewhere) and the model cannot predict in another scene: the message names
        the scene and why.
    """
    ref = run.reference
    # a held-out scene of the run's own dataset: its maps are there (map models), and networks are scored
    # on it (the unseen-scene benchmark); a geometric model reads it as a new scene, kNN has no fingerprints
    fingerprints = not run.any_scene and not run.needs_maps and not hasattr(run.model, "net")
    # a file brings no maps: a map network (window frame or not) reads those of the run's dataset, as before
    held = held_out_problem(ms, ref) if (run.any_scene and not run.needs_maps) or fingerprints else None
    problem = held or file_fit_problem(ms, ref)
    why = scene_refusal(run) if problem is not None else None
    if held is not None and why is not None:
        raise InferenceInputError(_refused(held, why))
    if problem is None or why is not None:
        try:
            x, bad, warnings, flags = measurements_to_inputs(ms, ref, run_id=run.run_id, maps=run.scene_maps())
        except InferenceInputError as exc:
            if why is None:
                raise
            raise InferenceInputError(_refused(str(exc), why)) from None
        return FileInputs(x, bad, warnings, flags, ref)
    new = new_scene_reference(ms, ref)
    placed = any(row["x_m"] is not None for row in new.reference.nodes[new.name])
    if not placed and not any(r.node is None for s in ms.samples for r in s.reports):  # no mobile report either
        name = run.config.get("model") or "the model"
        msg = (f"nodes: the file is for scene {new.name!r}, which run {run.run_id!r} was not trained on, and none of "
               f"its {len(ms.nodes)} node(s) has a position (in the file, a workspace scene of that name or the run); "
               f"{name} places a sample from its nodes' positions: give each node lat/lon or x_m/y_m, or name the "
               "workspace scene whose sites they are")
        raise InferenceInputError(msg)
    x, bad, warnings, flags = measurements_to_inputs(ms, new.reference, run_id=run.run_id)
    return FileInputs(x, bad, [*new.notes, *warnings], flags, new.reference, new)

