"""What a trained run needs to read a measurement file: its training data's frame, nodes and ranges.

A run's ``reference.json`` is written when it is trained (and rebuilt from the dataset for
older runs), so a run predicts from an uploaded file even where its dataset is not in the
workspace (the shipped demo model)::

    ref = run_reference("setnet-demo-...")          # RunReference
    x, bad, warnings = measurements_to_inputs(load_measurements("file.json"), ref)

The file's nodes are matched to the nodes the model was trained on by id (or, for an id it
does not know, by position within :data:`NODE_MATCH_M`); a file of another mode or scene, a
node the model never saw, or a node that sits elsewhere than in training is refused with a
message that says so, instead of giving a silently wrong answer.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rflocal_core.dataset.iqexchange import file_captures
from rflocal_core.errors import DatasetNotFoundError, InferenceInputError, InvalidInputError
from rflocal_core.geo import LocalFrame
from rflocal_core.measurements import MeasurementSet
from rflocal_core.models.inputs import PHY_INPUT_FIELDS, Inputs, SceneMaps, read_scene_maps
from rflocal_core.results import JsonResult
from rflocal_core.workspace import atomic_write_text

REFERENCE_FILE = "reference.json"
REFERENCE_FORMAT = "rflocal-reference/1"

#: A file node whose id the model does not know is matched to a training node this close (m).
NODE_MATCH_M = 1.0
#: A known node id placed farther than this from its training position means another layout (m).
NODE_MOVED_M = 5.0
#: Measurements this far outside the training range are flagged (dB for RSS).
RSS_MARGIN_DB = 10.0
#: ToA beyond this factor of the training maximum is flagged.
TOA_FACTOR = 1.5

#: Report fields a model reads, as named in the measurement format.
FEATURES = ("rss_dbm", "toa_ns", "aoa_deg")


@dataclass(frozen=True)
class RunReference:
    """The training data of a run, as far as reading new measurements needs it.

    Attributes
    ----------
    dataset : str
        Name of the training dataset.
    mode : {"ue", "emitter"}
    source : {"generated", "import"}
    scenes : tuple of str
        Scene names as the models know them (``Inputs.scenes``).
    declared_scene : str or None
        Imported data: the scene its file named (None: any).
    frames : dict of str to dict
        Per scene, :meth:`LocalFrame.to_dict` (lat/lon <-> scene metres).
    nodes : dict of str to list of dict
        Per scene, the node slots in training order: ``id``, ``x_m``, ``y_m``, ``z_m`` (None
        where unknown), ``tx_power_dbm`` (None where unknown).
    slots : int
        Node slots per sample in training (kNN fingerprints need the same count).
    fixed_slots : bool
        Whether a slot names the same node in every sample (False: drone surveys).
    features : tuple of str
        Report fields present in the training split (of ``rss_dbm``, ``toa_ns``, ``aoa_deg``).
    ranges : dict of str to [lo, hi]
        0.1 and 99.9 percentiles of each feature in training (RSS: per-sample means).
    area_m : list of float
        ``[x_min, x_max, y_min, y_max]`` of the training truths (m).
    config : dict
        Noise and receiver settings of the dataset (sensitivity_dbm, shadowing_sigma_db,
        rss_noise_db, rss_quantization_db, top_k, toa_noise_ns, aoa_noise_deg).
    scene_hashes : dict of str to str
        Per scene, the content digest of its files (``content_sha256``) where the dataset
        recorded it: a scene of the same name elsewhere is told apart by it (empty for older runs).
    held_out : tuple of str
        Scenes of the dataset without a training sample (held out as ``test_unseen``): the run
        knows their frame and nodes but learned nothing there (empty for older runs).
    """

    dataset: str
    mode: str
    source: str
    scenes: tuple[str, ...]
    declared_scene: str | None
    frames: dict[str, dict[str, Any]]
    nodes: dict[str, list[dict[str, Any]]]
    slots: int
    fixed_slots: bool
    features: tuple[str, ...]
    ranges: dict[str, list[float]]
    area_m: list[float]
    config: dict[str, Any] = field(default_factory=dict)
    scene_hashes: dict[str, str] = field(default_factory=dict)
    held_out: tuple[str, ...] = ()

    def frame(self, scene: str) -> LocalFrame:
        return LocalFrame.from_dict(self.frames[scene])

    def to_dict(self) -> dict[str, Any]:
        return {"format": REFERENCE_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunReference:
        if d.get("format") != REFERENCE_FORMAT:
            msg = f"reference: expected format {REFERENCE_FORMAT!r}, got {d.get('format')!r}"
            raise InvalidInputError(msg)
        fields = {k: v for k, v in d.items() if k != "format"}
        fields["scenes"] = tuple(fields["scenes"])
        fields["features"] = tuple(fields["features"])
        fields["held_out"] = tuple(fields.get("held_out", ()))
        return cls(**fields)


# --------------------------------------------------------------------------- building


def _num(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def build_reference(dataset: str, train: Inputs) -> RunReference:
    """The reference of a run trained on ``train``, the train split of ``dataset`` (see :class:`RunReference`).

    ``train`` is the split as the run saw it (through its input transform: its features are
    the ones the run knows); training passes the split it has already loaded.
    """
    from rflocal_core.dataset.store import open_dataset

    root = open_dataset(dataset)
    attrs = dict(root.attrs)
    config = attrs.get("config", {}) or {}
    nodes: dict[str, list[dict[str, Any]]] = {}
    frames: dict[str, dict[str, Any]] = {}
    if "scenes" in root:
        source = "generated"
        fixed = config.get("survey") != "drone"
        for name in train.scenes:
            group = root[f"scenes/{name}"]
            frames[name] = dict(group.attrs["frame"])
            site_ids = list(group.attrs["site_ids"])
            if not fixed:  # drone surveys: every report carries its own position
                nodes[name] = []
                continue
            maps = read_scene_maps(root, name)
            nodes[name] = [
                {"id": str(site_ids[s]), "x_m": float(maps.site_pos_m[s, 0]), "y_m": float(maps.site_pos_m[s, 1]),
                 "z_m": float(maps.site_pos_m[s, 2]), "tx_power_dbm": _num(maps.tx_power_dbm[s])}
                for s in range(len(site_ids))
            ]
        declared = None
    else:
        source = "import"
        name = train.scenes[0]
        frames[name] = dict(attrs["frame"])
        pos = (np.asarray(root["samples/node_pos_m"][0], dtype=np.float64) if root["samples/node_pos_m"].shape[0]
               else None)
        known = (np.asarray(root["samples/node_pos_known"][0], dtype=bool) if "node_pos_known" in root["samples"]
                 else None)
        rows = []
        for s, row in enumerate(attrs.get("nodes") or []):
            ok = pos is not None and (known is None or bool(known[s])) and np.isfinite(pos[s, :2]).all()
            rows.append({"id": str(row["id"]), "x_m": float(pos[s, 0]) if ok else None,
                         "y_m": float(pos[s, 1]) if ok else None,
                         "z_m": _num(pos[s, 2]) if ok else None, "tx_power_dbm": _num(row.get("tx_power_dbm"))})
        nodes[name] = rows
        declared = attrs.get("scene")
        fixed = True
    features, ranges = [], {}
    for key, values in (("rss_dbm", train.rss_dbm), ("toa_ns", train.toa_ns), ("aoa_deg", train.aoa_deg)):
        finite = values[np.isfinite(values)]
        if len(finite):
            features.append(key)
            lo, hi = np.percentile(finite, [0.1, 99.9])
            ranges[key] = [float(lo), float(hi)]
    truth = train.truth_m[np.isfinite(train.truth_m).all(1)]
    if len(truth) == 0:
        msg = f"dataset {dataset!r}: the train split has no sample with a true position"
        raise InvalidInputError(msg)
    area = [float(truth[:, 0].min()), float(truth[:, 0].max()), float(truth[:, 1].min()), float(truth[:, 1].max())]
    keep = ("sensitivity_dbm", "shadowing_sigma_db", "rss_noise_db", "rss_quantization_db", "top_k", "toa_noise_ns",
            "aoa_noise_deg", "survey")
    return RunReference(
        dataset=dataset, mode=train.mode, source=source, scenes=tuple(train.scenes), declared_scene=declared,
        frames=frames, nodes=nodes, slots=int(train.node_mask.shape[1]), fixed_slots=bool(fixed),
        features=tuple(features), ranges=ranges, area_m=area, config={k: config[k] for k in keep if k in config},
        scene_hashes={k: str(v) for k, v in (attrs.get("scene_hashes") or {}).items() if v and k in train.scenes},
        held_out=tuple(s for i, s in enumerate(train.scenes) if not (train.scene_idx == i).any()),
    )


def write_reference(run_path: Path, dataset: str, train: Inputs) -> RunReference:
    """Build the reference (:func:`build_reference`) and write it as ``<run>/reference.json`` (atomically)."""
    ref = build_reference(dataset, train)
    atomic_write_text(run_path / REFERENCE_FILE, json.dumps(ref.to_dict(), indent=1))
    return ref


def run_reference(run_id: str) -> RunReference:
    """The reference of a run: its ``reference.json``, else built from its dataset (and then written)."""
    from rflocal_core.train.runs import run_dir

    path = run_dir(run_id)
    file = path / REFERENCE_FILE
    if file.is_file():
        return RunReference.from_dict(json.loads(file.read_text(encoding="utf-8")))
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    try:
        from rflocal_core.models.transforms import InputTransform, load_transformed

        transform = InputTransform.from_dict(config.get("input_transform"))
        train = load_transformed(config["dataset"], "train", transform, with_maps=False)
        return write_reference(path, config["dataset"], train)
    except DatasetNotFoundError:
        msg = (f"run {run_id!r}: has no {REFERENCE_FILE} and its training dataset {config['dataset']!r} is not in "
               "the workspace, so its nodes and frame are unknown; retrain it or restore the dataset")
        raise InferenceInputError(msg) from None


# --------------------------------------------------------------------------- measurements -> inputs


@dataclass(frozen=True)
class BadSample(JsonResult):
    """A sample of a file that cannot be predicted: its index, id and why."""

    index: int
    id: str
    message: str


def _choose_scene(ms: MeasurementSet, ref: RunReference, who: str) -> str:
    if ref.source == "import":
        scene = ref.scenes[0]
        if ms.scene is not None and ref.declared_scene is not None and ms.scene != ref.declared_scene:
            msg = (f"scene: the file is for scene {ms.scene!r}, but {who} was trained on measurements of scene "
                   f"{ref.declared_scene!r}; a model of one place gives wrong positions in another")
            raise InferenceInputError(msg)
        return scene
    if ms.scene is None:
        if len(ref.scenes) == 1:
            return ref.scenes[0]
        msg = (f"scene: the file names no scene, but {who} was trained on several ({', '.join(ref.scenes)}); "
               'add "scene": "<name>" to the file')
        raise InferenceInputError(msg)
    if ms.scene not in ref.scenes:
        msg = (f"scene: the file is for scene {ms.scene!r}, but {who} was trained on scene(s) "
               f"{', '.join(ref.scenes)}; a model of one scene gives wrong positions in another")
        raise InferenceInputError(msg)
    return ms.scene


def _xy_of(item: Any, frame: LocalFrame, where: str = "position") -> tuple[float, float] | None:
    if item.x_m is not None:
        return float(item.x_m), float(item.y_m)
    if item.lat is not None:
        frame.check_latlon_input(where)  # a scene in metres only cannot place lat/lon
        x, y = frame.to_xy(item.lat, item.lon)
        return float(x), float(y)
    return None


def _match_nodes(ms: MeasurementSet, ref: RunReference, scene: str, who: str) -> dict[str, int | None]:
    """File node id -> training slot (None: the model never saw it)."""
    frame = ref.frame(scene)
    table = ref.nodes.get(scene, [])
    by_id = {row["id"]: s for s, row in enumerate(table)}
    placed = [(s, row["x_m"], row["y_m"]) for s, row in enumerate(table) if row["x_m"] is not None]
    out: dict[str, int | None] = {}
    for i, node in enumerate(ms.nodes):
        xy = _xy_of(node, frame, f"nodes[{i}]")
        slot = by_id.get(node.id)
        if slot is not None:
            row = table[slot]
            if xy is not None and row["x_m"] is not None:
                dist = math.hypot(xy[0] - row["x_m"], xy[1] - row["y_m"])
                if dist > NODE_MOVED_M:
                    msg = (f"nodes[{i}]: node {node.id!r} is at x={xy[0]:.1f} m, y={xy[1]:.1f} m, {dist:.1f} m from "
                           f"where {who} was trained with it (x={row['x_m']:.1f}, y={row['y_m']:.1f}); expected at "
                           f"most {NODE_MOVED_M:g} m: the file belongs to another scene or site layout")
                    raise InferenceInputError(msg)
            out[node.id] = slot
            continue
        if xy is not None and placed:
            d = [(math.hypot(xy[0] - x, xy[1] - y), s) for s, x, y in placed]
            dist, s = min(d)
            if dist <= NODE_MATCH_M:
                out[node.id] = s
                continue
        out[node.id] = None
    return out


def _known_ids(ref: RunReference, scene: str) -> str:
    ids = [row["id"] for row in ref.nodes.get(scene, [])]
    return ", ".join(ids[:8]) + (f", ... ({len(ids)} in all)" if len(ids) > 8 else "") if ids else "none"


def measurements_to_inputs(
    ms: MeasurementSet, ref: RunReference, *, run_id: str = "the model", maps: dict[str, SceneMaps] | None = None,
) -> tuple[Inputs | None, list[BadSample], list[str], list[list[str]]]:
    """Turn a measurement file into :class:`Inputs` laid out as the run's training data.

    Parameters
    ----------
    ms : MeasurementSet
        A validated file (:func:`~rflocal_core.measurements.load_measurements`).
    ref : RunReference
        The run's reference.
    run_id : str
        Named in messages.
    maps : dict, optional
        Radio maps to attach (map matching).

    Returns
    -------
    inputs : Inputs or None
        The samples that can be predicted (None if none can), in file order; per sample the
        RSS averaged over its report times, ToA/AoA at its last report time, the truth (NaN
        where the file gives none); with several report times also the RSS at each time and
        its age (``rss_steps_dbm``, ``step_age_s``).
    bad : list of BadSample
        Samples that cannot be predicted (invalid in the file, or reporting a node the model
        never saw), with the reason.
    warnings : list of str
        File-level remarks (features the model was not trained with are ignored, nodes
        matched by position).
    flags : list of list of str
        Per kept sample, what is unusual about it (measurements outside the training range).

    Raises
    ------
    InferenceInputError
        The file's mode or scene is not the run's, or a node sits elsewhere than in training.
    """
    who = f"run {run_id!r}" if run_id != "the model" else run_id
    if ms.mode != ref.mode:
        msg = (f"mode: the file holds {ms.mode!r} measurements, but {who} was trained on {ref.mode!r} data "
               f"({'known nodes transmit, the device is located' if ref.mode == 'ue' else 'known nodes receive, the transmitter is located'})")
        raise InferenceInputError(msg)
    scene = _choose_scene(ms, ref, who)
    slot_of = _match_nodes(ms, ref, scene, who)
    table = ref.nodes.get(scene, [])
    warnings: list[str] = []
    by_position = [nid for nid, s in slot_of.items() if s is not None and table[s]["id"] != nid]
    if by_position:
        warnings.append(f"nodes {by_position} are not known by id; matched to training nodes at the same position "
                        f"(within {NODE_MATCH_M:g} m)")
    keep, bad = _usable_samples(ms, ref, scene, slot_of, who)
    dropped = sorted({k for _, s in keep for r in s.reports for k in FEATURES
                      if getattr(r, k) is not None and k not in ref.features})
    if dropped:
        warnings.append(f"{', '.join(dropped)} given in the file but {who} was trained without it; ignored")
    if not keep:
        return None, bad, warnings, []
    a = _fixed_slots(ms, ref, table, slot_of, keep)
    frame = ref.frame(scene)
    flags = [_fill_sample(a, row, sample, slot_of, frame, ref) for row, (_, sample) in enumerate(keep)]
    n, cfg = len(keep), ref.config
    x = Inputs(
        dataset=ref.dataset, split="upload", mode=ref.mode, indices=np.array([i for i, _ in keep], dtype=np.int64),
        rss_dbm=a["rss"], toa_ns=a["toa"], aoa_deg=a["aoa"], los=np.full(a["rss"].shape, -1, dtype=np.int8),
        node_pos_m=a["node_pos"], node_mask=a["node_mask"], tx_power_dbm=a["tx"], slot_site=a["slot_site"],
        truth_m=a["truth"], truth_z_m=a["truth_z"], scene_idx=np.full(n, ref.scenes.index(scene), dtype=np.int64),
        scenes=ref.scenes, maps=maps, fixed_slots=a["base"] if ref.fixed_slots else 0,
        sensitivity_dbm=float(cfg.get("sensitivity_dbm", np.nan)),
        shadowing_sigma_db=float(cfg.get("shadowing_sigma_db", np.nan)),
        rss_quantization_db=float(cfg.get("rss_quantization_db", 0.0) or 0.0),
        rss_noise_db=float(cfg.get("rss_noise_db", np.nan)),
        top_k=int(cfg.get("top_k", 0) or 0), rss_steps_dbm=a["rss_steps"], step_age_s=a["step_age"],
        phy=a["phy"] if np.isfinite(a["phy"]).any() else None,
        phy_steps=a["phy_steps"] if a["phy_steps"] is not None and np.isfinite(a["phy_steps"]).any() else None,
        node_carrier_hz=file_carriers(ms, slot_of, a["node_mask"].shape),
        **file_captures([sample for _, sample in keep], slot_of, a["rss"].shape),
    )
    return x, bad, warnings, flags


def file_carriers(ms: MeasurementSet, slot_of: dict[str, int | None], shape: tuple[int, int]) -> np.ndarray | None:
    """[N, S] carrier of each slot from the file nodes' ``carrier_hz`` (NaN elsewhere); None if no node says."""
    given = {slot_of.get(node.id): node.carrier_hz for node in ms.nodes if node.carrier_hz is not None}
    given.pop(None, None)
    if not given:
        return None
    out = np.full(shape, np.nan)
    for slot, carrier in given.items():
        out[:, slot] = carrier
    return out


def _usable_samples(ms: MeasurementSet, ref: RunReference, scene: str, slot_of: dict[str, int | None],
                    who: str) -> tuple[list[tuple[int, Any]], list[BadSample]]:
    """``(index, sample)`` of the samples the run can predict, and the others (with why), file errors first."""
    table = ref.nodes.get(scene, [])
    bad = [BadSample(e.index, e.id, e.message) for e in ms.errors]
    keep: list[tuple[int, Any]] = []
    for i, sample in enumerate(ms.samples):
        unknown = sorted({r.node for r in sample.reports if r.node is not None and slot_of.get(r.node) is None})
        if unknown:
            bad.append(BadSample(i, sample.id, (
                f"samples[{i}]: reports node(s) {', '.join(repr(u) for u in unknown)} that {who} never saw in "
                f"training (it knows {_known_ids(ref, scene)}); predicting without them would be silently wrong")))
            continue
        if ref.fixed_slots is False and any(r.node is not None for r in sample.reports) and not table:
            bad.append(BadSample(i, sample.id, f"samples[{i}]: {who} was trained on a drone survey (reports with their "
                                 "own positions); reports of fixed nodes do not fit it"))
            continue
        keep.append((i, sample))
    return keep, bad


def _fixed_slots(ms: MeasurementSet, ref: RunReference, table: list[dict[str, Any]], slot_of: dict[str, int | None],
                 keep: list[tuple[int, Any]]) -> dict[str, Any]:
    """The arrays of the kept samples, empty but for the training nodes in their slots.

    The fixed slots are exactly as in training (kNN compares fingerprints slot by slot):
    generated datasets pad every scene to the most sites; imported ones list the file's
    nodes first. Mobile reports get the slots after them (``base`` on).
    """
    n = len(keep)
    base = (ref.slots if ref.source == "generated" else len(table)) if ref.fixed_slots else 0
    slots = base + max(sum(r.node is None for r in s.reports) for _, s in keep)
    # report times as the dataset stores them (float32), so the ages match a Zarr split exactly
    times = [sorted({float(np.float32(r.t_s)) for r in sample.reports}) for _, sample in keep]
    n_steps = max((len(t) for t in times), default=1)
    a: dict[str, Any] = {
        "base": base, "times": times, "rss": np.full((n, slots), np.nan), "toa": np.full((n, slots), np.nan),
        "aoa": np.full((n, slots), np.nan), "node_pos": np.full((n, slots, 3), np.nan),
        "node_mask": np.zeros((n, slots), dtype=bool), "tx": np.full((n, slots), np.nan),
        "slot_site": np.full((n, slots), -1, dtype=np.int64), "truth": np.full((n, 2), np.nan),
        "truth_z": np.full(n, np.nan), "rss_steps": np.full((n, n_steps, slots), np.nan) if n_steps > 1 else None,
        "step_age": np.full((n, n_steps), np.nan) if n_steps > 1 else None,
        "phy": np.full((n, slots, len(PHY_INPUT_FIELDS)), np.nan),
        "phy_steps": np.full((n, n_steps, slots, len(PHY_INPUT_FIELDS)), np.nan, np.float32) if n_steps > 1 else None,
    }
    for s, row in enumerate(table):
        if row["x_m"] is not None:
            a["node_pos"][:, s] = [row["x_m"], row["y_m"], np.nan if row["z_m"] is None else row["z_m"]]
        a["node_mask"][:, s] = True
        a["slot_site"][:, s] = s
        if row["tx_power_dbm"] is not None:
            a["tx"][:, s] = row["tx_power_dbm"]
    if ref.mode == "ue":  # a power given in the file wins over the training one
        file_tx = {node.id: node.tx_power_dbm for node in ms.nodes}
        for nid, s in slot_of.items():
            if s is not None and file_tx.get(nid) is not None:
                a["tx"][:, s] = file_tx[nid]
    return a


def _fill_sample(a: dict[str, Any], row: int, sample: Any, slot_of: dict[str, int | None], frame: LocalFrame,
                 ref: RunReference) -> list[str]:
    """Put one sample's reports (RSS averaged per slot over its times, ToA/AoA at its last time) and truth
    into row ``row`` of the arrays ``a``; return what is unusual about it."""
    use = {k: k in ref.features for k in FEATURES}
    times = a["times"][row]
    last_t = max(r.t_s for r in sample.reports)
    step_of = {t: k for k, t in enumerate(times)}
    if a["step_age"] is not None:
        a["step_age"][row, :len(times)] = times[-1] - np.asarray(times)
    sums: dict[int, list[float]] = {}
    step_sums: dict[tuple[int, int], list[float]] = {}
    m = 0
    for report in sample.reports:
        if report.node is not None:
            s = slot_of[report.node]
        else:
            s = a["base"] + m
            m += 1
            xy = _xy_of(report, frame, f"sample {sample.id!r}: a mobile report")
            a["node_pos"][row, s] = [xy[0], xy[1], np.nan if report.alt_m is None else report.alt_m]
            a["node_mask"][row, s] = True
        if report.rss_dbm is not None and use["rss_dbm"]:
            sums.setdefault(s, []).append(report.rss_dbm)
            step_sums.setdefault((step_of[float(np.float32(report.t_s))], s), []).append(report.rss_dbm)
        if a["phy_steps"] is not None:  # every time's PHY/MAC fields: mapformer's history tokens read them
            _put_phy(a["phy_steps"][row, step_of[float(np.float32(report.t_s))], s], report)
        if report.t_s == last_t:
            if report.toa_ns is not None and use["toa_ns"]:
                a["toa"][row, s] = report.toa_ns
            if report.aoa_deg is not None and use["aoa_deg"]:
                a["aoa"][row, s] = report.aoa_deg
            _put_phy(a["phy"][row, s], report)  # PHY/MAC fields at the last time, as in training
    for s, values in sums.items():
        a["rss"][row, s] = float(np.mean(values))
    if a["rss_steps"] is not None:
        for (k, s), values in step_sums.items():
            a["rss_steps"][row, k, s] = float(np.mean(values))
    if sample.truth is not None:
        xy = _xy_of(sample.truth, frame, f"sample {sample.id!r}: truth")
        if xy is not None:
            a["truth"][row] = xy
        a["truth_z"][row] = np.nan if sample.truth.alt_m is None else sample.truth.alt_m
    return _range_flags(a["rss"][row], a["toa"][row], ref)


def _put_phy(out: np.ndarray, report: Any) -> None:
    """Write the PHY/MAC fields ``report`` gives into ``out`` [P] (in :data:`PHY_INPUT_FIELDS` order)."""
    for k, key in enumerate(PHY_INPUT_FIELDS):
        if getattr(report, key) is not None:
            out[k] = getattr(report, key)


def _range_flags(rss: np.ndarray, toa: np.ndarray, ref: RunReference) -> list[str]:
    out = []
    if "rss_dbm" in ref.ranges:
        lo, hi = ref.ranges["rss_dbm"]
        v = rss[np.isfinite(rss)]
        far = v[(v < lo - RSS_MARGIN_DB) | (v > hi + RSS_MARGIN_DB)]
        if len(far):
            out.append(f"RSS {', '.join(f'{f:.0f}' for f in far[:4])} dBm outside the training range "
                       f"[{lo:.0f}, {hi:.0f}] dBm (more than {RSS_MARGIN_DB:g} dB away)")
    if "toa_ns" in ref.ranges:
        hi = ref.ranges["toa_ns"][1]
        v = toa[np.isfinite(toa)]
        far = v[v > TOA_FACTOR * hi]
        if len(far):
            out.append(f"ToA {', '.join(f'{f:.0f}' for f in far[:4])} ns beyond {TOA_FACTOR:g}x the training "
                       f"maximum ({hi:.0f} ns)")
    if not np.isfinite(rss).any() and not np.isfinite(toa).any():
        out.append("no RSS or ToA the model can use")
    return out


def scene_maps_of(ref: RunReference) -> dict[str, SceneMaps]:
    """The radio maps of the run's training dataset (map matching): it must be in the workspace."""
    from rflocal_core.dataset.store import open_dataset

    try:
        root = open_dataset(ref.dataset)
    except DatasetNotFoundError:
        msg = (f"dataset: map matching predicts from the radio maps of its dataset {ref.dataset!r}, which is not in "
               "the workspace")
        raise InferenceInputError(msg) from None
    if "scenes" not in root:
        msg = f"dataset: {ref.dataset!r} has no radio maps"
        raise InferenceInputError(msg)
    return {name: read_scene_maps(root, name) for name in ref.scenes}


# --------------------------------------------------------------------------- a scene the run never saw

#: The name a file's own scene takes when the file names none.
UNNAMED_SCENE = "file"


@dataclass(frozen=True)
class NewScene:
    """A file's own scene, laid out for a model that predicts in any scene (see :func:`new_scene_reference`).

    Attributes
    ----------
    reference : RunReference
        The run's reference with the training scenes replaced by this one: its frame, its
        nodes in file order, ``area_m`` its extent. Reading the file through it
        (:func:`measurements_to_inputs`) gives inputs in this scene's coordinates.
    name : str
        The scene's name (the file's, else :data:`UNNAMED_SCENE`).
    notes : tuple of str
        Where the frame and the node positions came from, and nodes left without a position.
    extent_from : str
        What ``reference.area_m`` is: the workspace scene's box, or the node box widened.
    """

    reference: RunReference
    name: str
    notes: tuple[str, ...]
    extent_from: str


def file_fit_problem(ms: MeasurementSet, ref: RunReference) -> str | None:
    """Why a file does not fit the scene(s) and nodes a run was trained on; None when it fits.

    It does not fit when it names a scene the run was not trained on, names none while the
    run knows several, places a known node elsewhere, or reports a node the run never saw.
    A file of another mode fits (its mode is refused on its own by :func:`measurements_to_inputs`).
    """
    if ms.mode != ref.mode:
        return None
    try:
        scene = _choose_scene(ms, ref, "the model")
        slot_of = _match_nodes(ms, ref, scene, "the model")
    except InferenceInputError as exc:
        return str(exc)
    reported = {r.node for s in ms.samples for r in s.reports if r.node is not None}
    unknown = sorted(n for n in reported if slot_of.get(n) is None)
    if unknown:
        return (f"nodes: the file reports node(s) {', '.join(repr(u) for u in unknown[:5])} that the model never saw "
                f"in scene {scene!r} (it knows {_known_ids(ref, scene)})")
    return None


def held_out_problem(ms: MeasurementSet, ref: RunReference) -> str | None:
    """Why a file is of a scene the run's dataset held out of training (``test_unseen``); None when not."""
    if ms.mode != ref.mode:
        return None
    try:
        scene = _choose_scene(ms, ref, "the model")
    except InferenceInputError:
        return None
    if scene not in ref.held_out:
        return None
    return (f"scene: the file is for scene {scene!r}, which dataset {ref.dataset!r} held out of training (its "
            "test_unseen split): the model learned nothing there")


def _workspace_scene(name: str | None) -> dict[str, Any] | None:
    """``scene.json`` of the workspace scene ``name``; None when there is none of that name."""
    if name is None:
        return None
    from rflocal_core.errors import RFLocalInputError
    from rflocal_core.scene.store import load_scene_meta

    try:
        return load_scene_meta(name)
    except RFLocalInputError:
        return None


def _run_scene(ms: MeasurementSet, ref: RunReference) -> str | None:
    """The run's scene a file that does not fit it is of, by name, or (naming none) by a node id it
    shares with exactly one of them; None: a scene the run does not know."""
    if ref.source == "import":
        if ms.scene is not None and ref.declared_scene is not None:
            return ref.scenes[0] if ms.scene == ref.declared_scene else None
        candidates: tuple[str, ...] = ref.scenes[:1]
    else:
        if ms.scene is not None:
            return ms.scene if ms.scene in ref.scenes else None
        candidates = ref.scenes
    ids = {node.id for node in ms.nodes}
    hits = [s for s in candidates if ids & {row["id"] for row in ref.nodes.get(s, [])}]
    return hits[0] if len(hits) == 1 else None


def _new_scene_frame(ms: MeasurementSet, ref: RunReference, known: str | None,
                     meta: dict[str, Any] | None) -> tuple[LocalFrame, str]:
    """The frame of a file's own scene, and where it came from.

    The run's frame for a scene it knows (``known``); the workspace scene's; a frame centred on
    the file's nodes when every placed node is given in lat/lon; else the file's own metres
    (not geo-referenced).
    """
    if known is not None:
        return ref.frame(known), f"the frame of scene {known!r} as the run knows it"
    if meta is not None:
        return LocalFrame.from_dict(meta["frame"]), f"the frame of workspace scene {ms.scene!r}"
    placed = [n for n in ms.nodes if n.has_position]
    if placed and all(n.lat is not None for n in placed):
        lat = float(np.mean([n.lat for n in placed]))
        lon = float(np.mean([n.lon for n in placed]))
        return LocalFrame.at(lat, lon), f"a frame centred on the file's nodes ({lat:.5f}, {lon:.5f})"
    from rflocal_core.scene.importer import NOMINAL_ORIGIN

    frame = replace(LocalFrame.at(*NOMINAL_ORIGIN), georeferenced=False)
    return frame, "the file's own metres (x_m, y_m; not geo-referenced)"


def _new_scene_nodes(ms: MeasurementSet, ref: RunReference, known: str | None, meta: dict[str, Any] | None,
                     frame: LocalFrame) -> tuple[list[dict[str, Any]], list[str]]:
    """The file's nodes in file order, placed by the file, else by the workspace scene's sites, else by
    the run's nodes of the scene it knows (``known``); and the ids left without a position."""
    sites = {str(s["id"]): s for s in (meta or {}).get("sites", [])}
    trained = {row["id"]: row for row in ref.nodes.get(known, [])} if known is not None else {}
    table, unplaced = [], []
    for i, node in enumerate(ms.nodes):
        xy = _xy_of(node, frame, f"nodes[{i}]")
        other = sites.get(node.id) or trained.get(node.id) or {}
        if xy is None and other.get("x_m") is not None:
            xy = (float(other["x_m"]), float(other["y_m"]))
        z = node.alt_m if node.alt_m is not None else _num(other.get("z_m"))
        tx = node.tx_power_dbm if node.tx_power_dbm is not None else _num(other.get("tx_power_dbm"))
        if xy is None:
            unplaced.append(node.id)
        table.append({"id": node.id, "x_m": None if xy is None else xy[0], "y_m": None if xy is None else xy[1],
                      "z_m": None if xy is None else z, "tx_power_dbm": tx})
    return table, unplaced


def _new_scene_extent(meta: dict[str, Any] | None, table: list[dict[str, Any]]) -> tuple[list[float], str]:
    """``[x_min, x_max, y_min, y_max]`` of the scene: the workspace scene's box, else its node box widened."""
    if meta is not None and "extent_m" in meta:
        e = meta["extent_m"]
        return [float(e["x_min"]), float(e["x_max"]), float(e["y_min"]), float(e["y_max"])], "the workspace scene"
    from rflocal_core.models.inputs import MIN_NODE_MARGIN_M

    xy = np.array([[row["x_m"], row["y_m"]] for row in table if row["x_m"] is not None], dtype=np.float64)
    if not len(xy):
        return [-math.inf, math.inf, -math.inf, math.inf], "no node position"
    lo, hi = xy.min(0), xy.max(0)
    margin = max(float((hi - lo).max()), MIN_NODE_MARGIN_M)
    return ([float(lo[0] - margin), float(hi[0] + margin), float(lo[1] - margin), float(hi[1] + margin)],
            "the file's nodes (their box widened by its larger side)")


def new_scene_reference(ms: MeasurementSet, ref: RunReference) -> NewScene:
    """The file's own scene as a run's reference, for models that predict in any scene.

    Its nodes are the file's (in file order), placed where the file says, else where the
    workspace scene of the file's name has the site of that id, else where the run had it
    (a scene the run knows: by the file's scene name, or, naming none, by a node id they
    share); its frame as :func:`_new_scene_frame` chooses. The
    run's features, ranges and receiver settings are kept: the model reads the file as it
    read its training data, in the coordinates of this scene.
    """
    known = _run_scene(ms, ref)
    name = ms.scene or known or UNNAMED_SCENE
    meta = _workspace_scene(ms.scene) if known is None else None
    frame, frame_note = _new_scene_frame(ms, ref, known, meta)
    table, unplaced = _new_scene_nodes(ms, ref, known, meta, frame)
    area, extent_from = _new_scene_extent(meta, table)
    notes = [(f"scene {name!r}: the model was not trained on this scene or these nodes; predicted in the scene's own "
              f"coordinates from the file's {len(table)} node(s), in {frame_note}")]
    if unplaced:
        notes.append(f"nodes {unplaced[:8]} have no position in the file{' or the workspace scene' if meta else ''}: "
                     "their reports are not used")
    new = replace_reference(ref, name, frame, table, area)
    return NewScene(new, name, tuple(notes), extent_from)


def replace_reference(ref: RunReference, scene: str, frame: LocalFrame, table: list[dict[str, Any]],
                      area_m: list[float]) -> RunReference:
    """``ref`` with one scene ``scene`` of nodes ``table`` (fixed slots in that order) instead of its own."""
    # longer ranges are what a larger scene has, not a sign of a fault: only the RSS range is kept
    ranges = {k: v for k, v in ref.ranges.items() if k != "toa_ns"}
    return replace(ref, source="import", scenes=(scene,), declared_scene=scene, frames={scene: frame.to_dict()},
                   nodes={scene: table}, slots=len(table), fixed_slots=True, ranges=ranges, area_m=area_m,
                   scene_hashes={}, held_out=())
