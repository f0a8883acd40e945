"""Whether a dataset shows the place a run was trained on: scene digests, frames and node sets.

A run scored on another scene gives meaningless figures (a model of one city in another), and a
scene name says little: two workspaces can both hold a scene called ``demo``. So a run and a
dataset are compared by what identifies a place::

    check = check_scene("demo-setnet", "my-ds", split="test")
    check.status      # "same", "other" or "unknown"
    check.problems    # what differs, one line each (field, value, expectation)

- the scene's content digest (``content_sha256`` of its files, kept by the dataset in
  ``scene_hashes`` and by the run in its ``reference.json``), where both sides know it;
- the frame: the geographic origin of the scene's metres;
- the node set: every node of the dataset must be one the run was trained with, at the
  same position (within :data:`~rflocal_core.reference.NODE_MOVED_M`).

:func:`~rflocal_core.infer.evaluate_run` refuses an ``"other"`` pair unless asked
(``allow_other_scene``), and keeps the check in its result for the Metrics page.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rflocal_core.dataset.store import open_dataset
from rflocal_core.errors import RFLocalInputError
from rflocal_core.reference import NODE_MOVED_M, RunReference, run_reference
from rflocal_core.results import JsonResult

#: Frame origins farther apart than this are other places (m).
FRAME_MOVED_M = 1.0
#: Node problems named per scene before "and N more".
MAX_NODE_PROBLEMS = 3
STATUSES = ("same", "other", "unknown")


@dataclass(frozen=True)
class SceneIdentity:
    """What identifies one scene of a run or a dataset.

    Attributes
    ----------
    name : str
        The scene's name (as the models know it).
    digest : str or None
        ``content_sha256`` of the scene's files (None: not recorded).
    origin : tuple of float or None
        ``(lat, lon)`` of the frame origin (None: no frame, or not geo-referenced).
    nodes : dict of str to tuple or None
        Node id -> ``(x_m, y_m)`` in the scene's metres (None: position unknown).
    source : {"generated", "import"}
    """

    name: str
    digest: str | None
    origin: tuple[float, float] | None
    nodes: dict[str, tuple[float, float] | None]
    source: str = "generated"


@dataclass(frozen=True, kw_only=True)
class SceneCheck(JsonResult):
    """Whether a dataset (split) shows the scene(s) a run was trained on (see :func:`check_scene`).

    Attributes
    ----------
    status : {"same", "other", "unknown"}
        ``same``: everything that could be compared agrees; ``other``: something differs
        (``problems`` says what); ``unknown``: nothing could be compared.
    run_scenes, dataset_scenes : tuple of str
        The scenes the run was trained on; the scenes of the evaluated split.
    problems : tuple of str
        What differs, one line each: the field, the dataset's value and the run's.
    notes : tuple of str
        What could not be compared, and scenes held out of training by design.
    differing : tuple of str
        The dataset scenes that are not the run's (other digest, frame or nodes, or unknown to it).
    """

    status: str
    run_scenes: tuple[str, ...] = ()
    dataset_scenes: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    differing: tuple[str, ...] = ()

    def seen_in_training(self, training_scenes: list[str] | None) -> list[str] | None:
        """The scenes of the dataset to count as seen in training (the Metrics breakdown).

        ``training_scenes``: read from the run's dataset (None where it is gone); then the run's
        own scenes are used. Scenes of the same name but another place are never seen.
        """
        scenes = training_scenes if training_scenes is not None else (
            list(self.run_scenes) if self.status != "unknown" else None)
        return None if scenes is None else [s for s in scenes if s not in self.differing]

    @property
    def other_scene(self) -> bool:
        """True when the dataset is of another place than the run's training data."""
        return self.status == "other"

    def summary(self, run_id: str, dataset: str) -> str:
        """One paragraph for a page or an error message."""
        if self.status == "other":
            shown = "; ".join(self.problems[:4]) + (f"; and {len(self.problems) - 4} more" if len(self.problems) > 4
                                                    else "")
            return (f"scene: dataset {dataset!r} is not the place run {run_id!r} was trained on ({shown}); "
                    "its errors measure a model of one place used in another")
        if self.status == "unknown":
            return (f"scene: whether dataset {dataset!r} shows the place run {run_id!r} was trained on is unknown ("
                    + "; ".join(self.notes) + ")")
        return f"scene: dataset {dataset!r} shows the scene(s) run {run_id!r} was trained on"


# --------------------------------------------------------------------------- identities


def _origin(frame: dict[str, Any] | None) -> tuple[float, float] | None:
    if not frame or frame.get("georeferenced", True) is False:
        return None
    try:
        return float(frame["origin_lat"]), float(frame["origin_lon"])
    except (KeyError, TypeError, ValueError):
        return None


def _xy(x: Any, y: Any) -> tuple[float, float] | None:
    if x is None or y is None or not (math.isfinite(float(x)) and math.isfinite(float(y))):
        return None
    return float(x), float(y)


def run_identities(run_id: str, run_config: dict[str, Any]) -> dict[str, SceneIdentity] | None:
    """The scenes a run was trained on, from its reference (None: the run has none and its data is gone)."""
    try:
        ref = run_reference(run_id)
    except RFLocalInputError:
        return None
    hashes = dict(ref.scene_hashes)
    if not hashes:  # a run from before digests were kept: its dataset may still know them
        hashes = _training_dataset_hashes(ref, run_config)
    return {name: _run_identity(ref, name, hashes.get(name)) for name in ref.scenes}


def _run_identity(ref: RunReference, name: str, digest: str | None) -> SceneIdentity:
    nodes = {str(row["id"]): _xy(row.get("x_m"), row.get("y_m")) for row in ref.nodes.get(name, [])}
    return SceneIdentity(name, digest, _origin(ref.frames.get(name)), nodes, ref.source)


def _training_dataset_hashes(ref: RunReference, run_config: dict[str, Any]) -> dict[str, str]:
    """Scene digests of the run's training dataset, when it is still the same data (its digest matches)."""
    try:
        attrs = dict(open_dataset(ref.dataset).attrs)
    except RFLocalInputError:
        return {}
    if run_config.get("dataset_digest") not in (None, data_digest(attrs)):
        return {}
    return {k: v for k, v in (attrs.get("scene_hashes") or {}).items() if v}


def data_digest(attrs: dict[str, Any]) -> str | None:
    """A run's ``dataset_digest`` of its data: the generation config's digest, or the imported file's."""
    return attrs.get("digest") or (attrs.get("input") or {}).get("sha256")


def split_scenes(attrs: dict[str, Any], dataset: str, split: str) -> tuple[str, ...]:
    """The scenes whose samples a split holds (held-out scenes only in ``test_unseen``)."""
    config = attrs.get("config") or {}
    scenes = tuple(str(s) for s in (config.get("scenes") or ()))
    if attrs.get("source") == "import" or not scenes:
        return scenes or (str(attrs.get("scene") or dataset),)
    unseen = {str(s) for s in (config.get("unseen_scenes") or ())}
    picked = tuple(s for s in scenes if (s in unseen) == (split == "test_unseen"))
    return picked or scenes


def dataset_identities(dataset: str, split: str) -> tuple[dict[str, SceneIdentity], dict[str, Any]]:
    """The scenes of a dataset split, and the dataset's attrs."""
    root = open_dataset(dataset)
    attrs = dict(root.attrs)
    hashes = attrs.get("scene_hashes") or {}
    out = {}
    for name in split_scenes(attrs, dataset, split):
        if "scenes" in root and name in root["scenes"]:
            group = root[f"scenes/{name}"]
            ids = [str(s) for s in group.attrs.get("site_ids", [])]
            pos = np.asarray(group["site_pos_m"][...], dtype=np.float64) if "site_pos_m" in group else None
            drone = (attrs.get("config") or {}).get("survey") == "drone"
            nodes = {} if drone else {i: (_xy(pos[k, 0], pos[k, 1]) if pos is not None and k < len(pos) else None)
                                      for k, i in enumerate(ids)}
            out[name] = SceneIdentity(name, hashes.get(name), _origin(dict(group.attrs).get("frame")), nodes)
        else:
            out[name] = _imported_identity(root, attrs, name, hashes.get(name))
    return out, attrs


def _imported_identity(root: Any, attrs: dict[str, Any], name: str, digest: str | None) -> SceneIdentity:
    """An imported dataset's one scene: its frame and the file's nodes (positions from the first sample)."""
    samples = root["samples"]
    pos = np.asarray(samples["node_pos_m"][0], dtype=np.float64) if samples["node_pos_m"].shape[0] else None
    known = np.asarray(samples["node_pos_known"][0], dtype=bool) if "node_pos_known" in samples else None
    nodes = {}
    for s, row in enumerate(attrs.get("nodes") or []):
        ok = pos is not None and s < len(pos) and (known is None or bool(known[s]))
        nodes[str(row["id"])] = _xy(pos[s, 0], pos[s, 1]) if ok else None
    return SceneIdentity(name, digest, _origin(attrs.get("frame")), nodes, "import")


# --------------------------------------------------------------------------- comparison


def _distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance of two (lat, lon) points (m)."""
    la1, lo1, la2, lo2 = map(math.radians, (*a, *b))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6_371_000.0 * math.asin(min(1.0, math.sqrt(h)))


def _compare(ds: SceneIdentity, run: SceneIdentity, dataset: str) -> tuple[list[str], list[str], int]:
    """Problems, notes and how many facts were compared, for one dataset scene against one run scene."""
    problems, notes, compared = [], [], 0
    where = f"dataset {dataset!r} scene {ds.name!r}"
    if ds.digest and run.digest:
        compared += 1
        if ds.digest != run.digest:
            problems.append(f"scene digest: {where} has content {ds.digest[:12]}, expected {run.digest[:12]} as in "
                            f"training (a scene named {run.name!r} with other buildings or sites)")
    else:
        side = "the run" if not run.digest else "the dataset"
        notes.append(f"scene {ds.name!r}: no content digest recorded by {side}; compared frame and nodes only")
    if ds.origin and run.origin:
        compared += 1
        far = _distance_m(ds.origin, run.origin)
        if far > FRAME_MOVED_M:
            away = f"{far / 1000:,.2f} km" if far >= 1000 else f"{far:.1f} m"
            problems.append(f"frame: {where} has its origin at {ds.origin[0]:.5f}, {ds.origin[1]:.5f}, "
                            f"{away} from the training origin {run.origin[0]:.5f}, {run.origin[1]:.5f}; expected at "
                            f"most {FRAME_MOVED_M:g} m")
    node_problems, placed = _compare_nodes(ds, run, where)
    problems += node_problems
    return problems, notes, compared + placed


def _compare_nodes(ds: SceneIdentity, run: SceneIdentity, where: str) -> tuple[list[str], int]:
    """Nodes of the dataset the run never saw or saw elsewhere; and how many positions were compared."""
    out, compared = [], 0
    known = ", ".join(sorted(run.nodes)[:8]) or "none"
    for node, xy in ds.nodes.items():
        if node not in run.nodes:
            out.append(f"nodes: {where} has node {node!r}, expected one of the training nodes ({known})")
            continue
        trained = run.nodes[node]
        if xy is None or trained is None:
            continue
        compared += 1
        far = math.hypot(xy[0] - trained[0], xy[1] - trained[1])
        if far > NODE_MOVED_M:
            out.append(f"nodes: {where} has node {node!r} at x={xy[0]:.1f} m, y={xy[1]:.1f} m, {far:.1f} m from "
                       f"its training position (x={trained[0]:.1f}, y={trained[1]:.1f}); expected at most "
                       f"{NODE_MOVED_M:g} m")
    if len(out) > MAX_NODE_PROBLEMS:
        out = [*out[:MAX_NODE_PROBLEMS], f"nodes: and {len(out) - MAX_NODE_PROBLEMS} more node(s) of {where} differ"]
    return out, compared


def _counterpart(ds: SceneIdentity, runs: dict[str, SceneIdentity]) -> SceneIdentity | None:
    """The run scene a dataset scene is compared with: the one of its name; for imported data (whose
    scene names are free text) the run's only scene."""
    if ds.name in runs:
        return runs[ds.name]
    if len(runs) == 1 and "import" in (ds.source, next(iter(runs.values())).source):
        return next(iter(runs.values()))
    return None


def check_scene(run_id: str, dataset: str, *, split: str = "test") -> SceneCheck:
    """Compare the scenes of a dataset split with those a run was trained on.

    Parameters
    ----------
    run_id : str
        A run in the workspace.
    dataset : str
        A complete dataset in the workspace.
    split : str
        The split to be evaluated (``test_unseen`` holds the held-out scenes).

    Returns
    -------
    SceneCheck
        ``status`` ("same", "other", "unknown"), the scenes of both sides, ``problems`` and ``notes``.

    Raises
    ------
    RFLocalInputError
        Unknown run or dataset.
    """
    import json

    from rflocal_core.train.runs import run_dir

    config = json.loads((run_dir(run_id) / "config.json").read_text(encoding="utf-8"))
    ds_scenes, attrs = dataset_identities(dataset, split)
    runs = run_identities(run_id, config)
    if runs is None:
        return SceneCheck(status="unknown", dataset_scenes=tuple(ds_scenes), notes=(
            f"run {run_id!r} has no reference.json and its training data is not in the workspace",))
    own_data = dataset == config.get("dataset") and config.get("dataset_digest") in (None, data_digest(attrs))
    problems: list[str] = []
    notes: list[str] = []
    differing: list[str] = []
    compared = 0
    for ds in ds_scenes.values():
        before = len(problems)
        run = _counterpart(ds, runs)
        if run is None:
            if own_data:  # the dataset's held-out scenes: unseen by design, shown in the breakdowns
                notes.append(f"scene {ds.name!r} was held out of training (an unseen scene of the run's own dataset)")
                compared += 1
            else:
                problems.append(f"scene: dataset {dataset!r} holds scene {ds.name!r}, expected one of the run's "
                                f"training scenes ({', '.join(runs) or 'none'})")
            continue
        p, n, c = _compare(ds, run, dataset)
        problems += p
        notes += n
        compared += c
        if len(problems) > before:
            differing.append(ds.name)
    status = "other" if problems else ("same" if compared else "unknown")
    if status == "unknown":
        notes.append("no scene digest, geo-referenced frame or node position to compare")
    return SceneCheck(status=status, run_scenes=tuple(runs), dataset_scenes=tuple(ds_scenes),
                      problems=tuple(problems), notes=tuple(notes), differing=tuple(differing))
