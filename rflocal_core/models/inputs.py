"""The data every model reads and returns: :class:`Inputs`, :class:`Prediction`, :class:`SceneMaps`.

:func:`load_inputs` reads one split of a dataset (generated or imported) as :class:`Inputs`
(plain numpy arrays, one snapshot per sample); every model, baseline or network, returns a
:class:`Prediction` (positions in scene metres, x east, y north, and a 1-sigma uncertainty per
axis where the method has one)::

    train, test = load_inputs("ds", "train"), load_inputs("ds", "test")
    pred = model.fit(train).predict(test)
    errors_m(pred, test)        # [N] metres
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np

from rflocal_core.dataset.rasters import Grid
from rflocal_core.dataset.store import SPLITS, open_dataset
from rflocal_core.errors import InvalidInputError

# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, eq=False)
class SceneMaps:
    """The precomputed radio maps of one scene.

    Attributes
    ----------
    name : str
    grid : Grid
    path_gain_db : ndarray [M, ny, nx] float32
        Ray-traced path gain per site (-inf: no ray).
    outdoor : ndarray [ny, nx] bool
        Cells outside buildings (``footprint == 0``).
    site_pos_m : ndarray [M, 3]
    tx_power_dbm : ndarray [M]
        Site transmit power (``ue`` mode: RSS map minus path-gain map); NaN if unknown.
    rasters : dict of str to ndarray [ny, nx]
        Scene rasters on the same grid: ``building_height_m``, ``footprint``, ``material``
        (class index), ``roads`` (those the dataset has).
    channels : dict of str to ndarray [M, ny, nx]
        Per-site map channels beyond path gain (issue 18), those the dataset has (:data:`MAP_CHANNEL_KEYS`):
        ``sinr_db`` (ue mode), ``toa_ns`` and ``aoa_deg`` (``timing_maps``; NaN where no path).
    """

    name: str
    grid: Grid
    path_gain_db: np.ndarray
    outdoor: np.ndarray
    site_pos_m: np.ndarray
    tx_power_dbm: np.ndarray
    rasters: dict[str, np.ndarray] = field(default_factory=dict)
    channels: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Inputs:
    """One dataset split as per-sample snapshots.

    Attributes
    ----------
    dataset, split, mode : str
        Dataset name, split name, ``"ue"`` or ``"emitter"`` (or ``"mixed"``).
    indices : ndarray [N] int
        Sample rows in the dataset.
    rss_dbm : ndarray [N, S] float
        Mean RSS over the sample's valid steps (dBm; NaN: not reported).
    toa_ns, aoa_deg : ndarray [N, S] float
        Time of arrival (ns) and compass bearing (degrees clockwise from north, node to
        target) at the sample's last valid step; NaN where missing.
    los : ndarray [N, S] int8
        1 LoS, 0 NLoS, -1 unknown (last valid step).
    node_pos_m : ndarray [N, S, 3]
        Node positions (NaN where unknown).
    node_mask : ndarray [N, S] bool
        Slots that hold a node.
    tx_power_dbm : ndarray [N, S]
        Known transmit power of the link (``ue`` sites); NaN if unknown (emitter mode).
    slot_site : ndarray [N, S] int
        Identity of the slot's node within its scene (-1: none): the site index in the
        scene's :class:`SceneMaps` for generated datasets, the index in the dataset's node
        list for imported ones. Drone waypoints have none.
    truth_m : ndarray [N, 2]
        True position at the last valid step (NaN if absent).
    truth_z_m : ndarray [N]
        True height at the last valid step (NaN if absent).
    scene_idx : ndarray [N] int
        Index into ``scenes``.
    scenes : tuple of str
    maps : dict of str to SceneMaps, or None
        Per-scene radio maps (None for imported datasets).
    fixed_slots : int
        The first ``fixed_slots`` slots hold the same node in every sample of a scene
        (fingerprinting uses those); 0 when slots vary (drone surveys).
    sensitivity_dbm, shadowing_sigma_db, rss_quantization_db, rss_noise_db : float
        From the dataset configuration (NaN when unknown).
    top_k : int
        Reports kept per step (0: all).
    rss_steps_dbm : ndarray [N, T, S], optional
        RSS of every report time (NaN: no report, or no such step); None for snapshots.
    step_age_s : ndarray [N, T], optional
        Seconds from each report time to the sample's last one (0 at the last, NaN for
        padding steps); None with ``rss_steps_dbm``.
    phy : ndarray [N, S, P], optional
        PHY/MAC report fields :data:`PHY_INPUT_FIELDS` at the sample's last valid step (NaN where
        missing); None when the dataset has none.
    phy_steps : ndarray [N, T, S, P] float32, optional
        The same fields at every report time (NaN: not reported, or no such step): the earlier reports'
        PHY/MAC columns of mapformer's history tokens; None for snapshots or without PHY fields.
    iq : ndarray [N, S, 2, n] int, optional
        IQ captures at the last valid step as ADC codes (datasets with captures, else None).
    iq_scale : ndarray [N, S], optional
        √mW per code of each capture; NaN: no capture.
    iq_t0_s : ndarray [N, S], optional
        Start of each capture on the receivers' common clock, seconds.
    iq_sample_rate_hz : float
        Sample rate of the captures (NaN without).
    carrier_hz : ndarray [N], optional
        The band of each sample (its scene's carrier; a dataset may mix bands); None when the
        dataset does not say (imports, datasets before it).
    node_carrier_hz : ndarray [N, S], optional
        The carrier of each node slot (NaN: unknown): a multi-band scene's co-sited cells, or an
        imported file's nodes with ``carrier_hz``; None when the dataset does not say.
    """

    dataset: str
    split: str
    mode: str
    indices: np.ndarray
    rss_dbm: np.ndarray
    toa_ns: np.ndarray
    aoa_deg: np.ndarray
    los: np.ndarray
    node_pos_m: np.ndarray
    node_mask: np.ndarray
    tx_power_dbm: np.ndarray
    slot_site: np.ndarray
    truth_m: np.ndarray
    truth_z_m: np.ndarray
    scene_idx: np.ndarray
    scenes: tuple[str, ...]
    maps: dict[str, SceneMaps] | None = None
    fixed_slots: int = 0
    sensitivity_dbm: float = float("nan")
    shadowing_sigma_db: float = float("nan")
    rss_quantization_db: float = 0.0
    rss_noise_db: float = float("nan")
    top_k: int = 0
    rss_steps_dbm: np.ndarray | None = None
    step_age_s: np.ndarray | None = None
    phy: np.ndarray | None = None
    phy_steps: np.ndarray | None = None
    iq: np.ndarray | None = None
    iq_scale: np.ndarray | None = None
    iq_t0_s: np.ndarray | None = None
    iq_sample_rate_hz: float = float("nan")
    carrier_hz: np.ndarray | None = None
    node_carrier_hz: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.indices)

    #: Fields indexed [N, S, ...] (per sample and report slot).
    SLOT_FIELDS: ClassVar[tuple[str, ...]] = ("rss_dbm", "toa_ns", "aoa_deg", "los", "node_pos_m", "node_mask",
                                              "tx_power_dbm", "slot_site")
    #: Fields indexed [N, ...] (per sample).
    SAMPLE_FIELDS: ClassVar[tuple[str, ...]] = ("indices", "truth_m", "truth_z_m", "scene_idx")
    #: Optional fields indexed [N, S, ...] (None without IQ captures).
    IQ_FIELDS: ClassVar[tuple[str, ...]] = ("iq", "iq_scale", "iq_t0_s")

    def subset(self, rows: np.ndarray | slice) -> Inputs:
        """The samples ``rows`` (an index array, boolean mask or slice)."""
        steps = {} if self.rss_steps_dbm is None else {"rss_steps_dbm": self.rss_steps_dbm[rows],
                                                       "step_age_s": self.step_age_s[rows]}
        if self.phy is not None:
            steps["phy"] = self.phy[rows]
        if self.phy_steps is not None:
            steps["phy_steps"] = self.phy_steps[rows]
        if self.carrier_hz is not None:
            steps["carrier_hz"] = self.carrier_hz[rows]
        if self.node_carrier_hz is not None:
            steps["node_carrier_hz"] = self.node_carrier_hz[rows]
        steps.update({f: getattr(self, f)[rows] for f in self.IQ_FIELDS if getattr(self, f) is not None})
        return replace(self, **{f: getattr(self, f)[rows] for f in self.SLOT_FIELDS + self.SAMPLE_FIELDS}, **steps)

    def slots(self, cols: np.ndarray | slice) -> Inputs:
        """The report slots ``cols`` of every sample (reordered or removed).

        ``fixed_slots`` becomes 0 unless the first slots stay in place: a slot's position
        then no longer names the same node in every sample.
        """
        sel = np.arange(self.node_mask.shape[1])[cols]
        fixed = self.fixed_slots if np.array_equal(sel[: self.fixed_slots], np.arange(self.fixed_slots)) else 0
        steps = {} if self.rss_steps_dbm is None else {"rss_steps_dbm": self.rss_steps_dbm[:, :, sel]}
        if self.phy is not None:
            steps["phy"] = self.phy[:, sel]
        if self.phy_steps is not None:
            steps["phy_steps"] = self.phy_steps[:, :, sel]
        if self.node_carrier_hz is not None:
            steps["node_carrier_hz"] = self.node_carrier_hz[:, sel]
        steps.update({f: getattr(self, f)[:, sel] for f in self.IQ_FIELDS if getattr(self, f) is not None})
        return replace(self, fixed_slots=fixed, **{f: getattr(self, f)[:, sel] for f in self.SLOT_FIELDS}, **steps)

    @property
    def known_nodes(self) -> np.ndarray:
        """[N, S] bool: slots holding a node with a known x/y position."""
        return self.node_mask & np.isfinite(self.node_pos_m[..., :2]).all(-1)


#: Optional per-sample fields of :class:`Inputs` (None where the dataset has none), besides the IQ ones.
OPTIONAL_SAMPLE_FIELDS = ("rss_steps_dbm", "step_age_s", "phy", "phy_steps", "carrier_hz", "node_carrier_hz")


def join_inputs(a: Inputs, b: Inputs) -> Inputs:
    """The samples of ``a`` followed by those of ``b``, two splits of one dataset (e.g. train + val for a refit).

    Scenes are matched by name (``b``'s scene indices are remapped); the split is named ``"a+b"``.

    Raises
    ------
    InvalidInputError
        The two are of different datasets, report slots, fixed slots, or one has an optional field
        (steps, PHY, carriers, IQ) the other lacks.
    """
    if a.dataset != b.dataset or a.rss_dbm.shape[1:] != b.rss_dbm.shape[1:] or a.fixed_slots != b.fixed_slots:
        msg = (f"b: expected a split of dataset {a.dataset!r} with {a.rss_dbm.shape[1]} slots ({a.fixed_slots} fixed), "
               f"got {b.dataset!r} with {b.rss_dbm.shape[1]} ({b.fixed_slots} fixed)")
        raise InvalidInputError(msg)
    scenes = a.scenes + tuple(s for s in b.scenes if s not in a.scenes)
    remap = np.array([scenes.index(s) for s in b.scenes], dtype=np.int64)
    fields = {f: np.concatenate([getattr(a, f), getattr(b, f)]) for f in a.SLOT_FIELDS + a.SAMPLE_FIELDS}
    fields["scene_idx"] = np.concatenate([a.scene_idx, remap[b.scene_idx]]).astype(a.scene_idx.dtype)
    for f in OPTIONAL_SAMPLE_FIELDS + a.IQ_FIELDS:
        va, vb = getattr(a, f), getattr(b, f)
        if (va is None) != (vb is None):
            msg = f"b: field {f!r} is present in only one of splits {a.split!r} and {b.split!r}; expected both or neither"
            raise InvalidInputError(msg)
        if va is not None:
            fields[f] = np.concatenate([va, vb])
    maps = None if a.maps is None and b.maps is None else {**(b.maps or {}), **(a.maps or {})}
    return replace(a, split=f"{a.split}+{b.split}", scenes=scenes, maps=maps, **fields)


def node_carriers(x: Inputs) -> np.ndarray:
    """[N, S] carrier of every slot, Hz (NaN: unknown): the node's own (multi-band scenes, files with
    ``carrier_hz``), else its sample's band."""
    n, s = x.node_mask.shape
    carrier = np.full(n, np.nan) if x.carrier_hz is None else np.asarray(x.carrier_hz, dtype=np.float64)
    out = np.broadcast_to(carrier[:, None], (n, s))
    if x.node_carrier_hz is not None:
        own = np.asarray(x.node_carrier_hz, dtype=np.float64)
        out = np.where(np.isfinite(own), own, out)
    return out


def read_scene_maps(root: Any, name: str) -> SceneMaps:
    """The radio maps of scene ``name`` in an open generated dataset (``root["scenes/<name>"]``).

    A ``ue`` site's transmit power is its RSS map minus its path-gain map (median over the
    cells where both are finite); NaN in ``emitter`` mode.
    """
    sg = root[f"scenes/{name}"]
    site_pos = np.asarray(sg["site_pos_m"][...], dtype=np.float64)
    pg = np.asarray(sg["path_gain_db"][...], dtype=np.float32)
    site_tx = np.full(len(site_pos), np.nan)
    if sg.attrs.get("mode") == "ue" and "rss_dbm" in sg:
        rss_map = np.asarray(sg["rss_dbm"][...], dtype=np.float64)
        for m in range(len(site_pos)):
            ok = np.isfinite(rss_map[m]) & np.isfinite(pg[m])
            site_tx[m] = float(np.median(rss_map[m][ok] - pg[m][ok])) if ok.any() else np.nan
    rasters = {key: np.asarray(sg[key][...]) for key in ("building_height_m", "footprint", "material", "roads")
               if key in sg}
    channels = {key: np.asarray(sg[key][...], dtype=np.float32) for key in MAP_CHANNEL_KEYS if key in sg}
    return SceneMaps(name, Grid.from_dict(sg.attrs["grid"]), pg, np.asarray(sg["footprint"][...]) == 0, site_pos,
                     site_tx, rasters, channels)


#: Per-site map channels a generated dataset may hold beside path gain (``scenes/<s>/...``).
MAP_CHANNEL_KEYS: tuple[str, ...] = ("sinr_db", "toa_ns", "aoa_deg")


#: PHY/MAC report fields read into :attr:`Inputs.phy` (those a dataset holds; integers' -1 is NaN).
PHY_INPUT_FIELDS: tuple[str, ...] = ("rsrq_db", "sinr_db", "cqi", "ri", "serving", "beam_rsrp_dbm", "doppler_hz",
                                     "beam_id", "neighbour_rank", "event_a3", "event_a5")


def _read_phy(g: Any, read: Any, last: np.ndarray, step_mask: np.ndarray) -> dict[str, np.ndarray | None]:
    """PHY/MAC fields: ``phy`` [N, S, P] at each sample's last valid step ``last`` [N], and with several steps
    ``phy_steps`` [N, T, S, P] (float32; NaN outside ``step_mask`` [N, T]); ``{}`` if the dataset has none."""
    if not any(key in g for key in PHY_INPUT_FIELDS):
        return {}
    n, t = step_mask.shape
    cols = []
    for key in PHY_INPUT_FIELDS:
        if key not in g:
            cols.append(np.full((n, t, g["node_mask"].shape[1]), np.nan, np.float32))
            continue
        values = read(key)  # stored as float32 or int8: float32 holds them exactly
        cols.append(np.where(values >= 0, values, np.nan).astype(np.float32) if values.dtype.kind in "iu"
                    else values.astype(np.float32))
    steps = np.stack(cols, -1)  # [N, T, S, P]
    phy = steps[np.arange(n), last].astype(np.float64)
    if t < 2:  # a snapshot has no earlier reports (as rss_steps_dbm)
        return {"phy": phy}
    steps[~step_mask] = np.nan
    return {"phy": phy, "phy_steps": steps}


def _last_step(values: np.ndarray, last: np.ndarray) -> np.ndarray:
    return values[np.arange(len(last)), last]


def load_inputs(dataset: str, split: str, *, with_maps: bool = True, max_steps: int | None = None,
                rows: np.ndarray | None = None, root: Any = None, split_index: np.ndarray | None = None,
                scene_maps: dict[str, SceneMaps] | None = None) -> Inputs:
    """Read one split of a dataset (or some of its samples) as :class:`Inputs`.

    Parameters
    ----------
    dataset : str
        Dataset name in the workspace.
    split : str
        One of ``train``, ``val``, ``test``, ``test_unseen``.
    with_maps : bool
        Also read the per-scene radio maps (generated datasets only).
    max_steps : int, optional
        Use only the last ``max_steps`` valid report times of each sample (sparser sequences).
    rows : ndarray of int, optional
        Only these positions of the split, in this order (streaming: only the chunks of ``samples/``
        that hold them are read); default the whole split.
    root : zarr.Group, optional
        The dataset's group, already open (default: ``open_dataset(dataset)``).
    split_index : ndarray of int, optional
        ``splits/<split>``, already read (a reader of many blocks reads it once).
    scene_maps : dict of str to SceneMaps, optional
        Every scene's maps, already read (:func:`read_scene_maps`): a reader of many blocks reads them once.

    Returns
    -------
    Inputs
        RSS averaged over each sample's valid steps (NaN ignored); ToA, AoA and the truth
        at the last valid step; for datasets with sequences also the RSS of every step and
        its age (``rss_steps_dbm``, ``step_age_s``).
    """
    if split not in SPLITS:
        msg = f"split: expected one of {', '.join(SPLITS)}, got {split!r}"
        raise InvalidInputError(msg)
    root = open_dataset(dataset) if root is None else root
    attrs = dict(root.attrs)
    config = attrs.get("config", {}) or {}
    idx = np.asarray(root[f"splits/{split}"][...] if split_index is None else split_index, dtype=np.int64)
    if rows is not None:
        idx = idx[np.asarray(rows, dtype=np.int64)]
    g = root["samples"]
    read = _row_reader(g, idx, whole=rows is None)

    steps = _read_steps(read, "t_s" in g, "los" in g, max_steps)
    node_pos = read("node_pos_m").astype(np.float64)
    if "node_pos_known" in g:
        known = read("node_pos_known").astype(bool)
        node_pos = np.where(known[..., None], node_pos, np.nan)
    scene_idx = read("scene_idx").astype(np.int64) if "scene_idx" in g else np.zeros(len(idx), np.int64)
    scenes = tuple(config.get("scenes") or ())
    if "scenes" in root:
        slots = _generated_slots(root, config, scenes, scene_idx, node_pos, with_maps=with_maps, cached=scene_maps)
    else:
        slots = _imported_slots(attrs, len(idx), steps["rss"].shape[1])
        scenes = scenes or (str(attrs.get("scene") or dataset),)
    rss_t, step_age = steps["rss_t"], steps["step_age"]
    return Inputs(
        dataset=dataset, split=split, mode=str(attrs.get("mode", "ue")), indices=idx, rss_dbm=steps["rss"],
        toa_ns=steps["toa"], aoa_deg=steps["aoa"], los=steps["los"], node_pos_m=node_pos,
        node_mask=read("node_mask").astype(bool), tx_power_dbm=slots["tx"], slot_site=slots["slot_site"],
        truth_m=steps["pos"][:, :2], truth_z_m=steps["pos"][:, 2], scene_idx=scene_idx, scenes=scenes,
        maps=slots["maps"], fixed_slots=slots["fixed"],
        sensitivity_dbm=float(config.get("sensitivity_dbm", np.nan)),
        shadowing_sigma_db=float(config.get("shadowing_sigma_db", np.nan)),
        rss_quantization_db=float(config.get("rss_quantization_db", 0.0) or 0.0),
        rss_noise_db=float(config.get("rss_noise_db", 0.0 if "rss_quantization_db" in config else np.nan)),
        top_k=int(config.get("top_k", 0) or 0),
        rss_steps_dbm=rss_t if rss_t.shape[1] > 1 else None, step_age_s=step_age if rss_t.shape[1] > 1 else None,
        **_read_captures(g, idx, steps["last"]),
        **_read_phy(g, read, steps["last"], steps["step_mask"]),
        carrier_hz=np.asarray(read("carrier_hz"), dtype=np.float64) if "carrier_hz" in g else None,
        node_carrier_hz=np.asarray(read("node_carrier_hz"), dtype=np.float64) if "node_carrier_hz" in g else None,
    )


def _row_reader(g: Any, idx: np.ndarray, *, whole: bool) -> Any:
    """``read(key)``: the rows ``idx`` of ``g[key]``. ``whole``: read the array, then index (a whole split);
    else only the chunks holding ``idx`` (each row read once, in sorted order, then put in ``idx``'s order)."""
    if whole:
        return lambda key: np.asarray(g[key][...])[idx]
    unique, back = np.unique(idx, return_inverse=True)

    def read(key: str) -> np.ndarray:
        if not len(unique):
            return np.zeros((0, *g[key].shape[1:]), dtype=g[key].dtype)
        return np.asarray(g[key].get_orthogonal_selection((unique,)))[back]

    return read


def _read_captures(g: Any, idx: np.ndarray, last: np.ndarray) -> dict[str, Any]:
    """The IQ captures at each sample's last valid step (``iq``, ``iq_scale``, ``iq_t0_s``), if the dataset has any."""
    if "mask_iq" not in g or "iq" not in g:
        return {}
    rows = np.arange(len(idx))

    def read(key: str) -> np.ndarray:  # only the split's rows: the captures are the largest arrays
        return np.asarray(g[key].oindex[idx])[rows, last] if len(idx) else np.zeros((0, *g[key].shape[2:]))

    mask = read("mask_iq").astype(bool)
    return {"iq": read("iq"), "iq_scale": np.where(mask, read("iq_scale").astype(np.float64), np.nan),
            "iq_t0_s": read("iq_t0_s").astype(np.float64),
            "iq_sample_rate_hz": float(dict(g.attrs).get("iq", {}).get("sample_rate_hz", np.nan))}


def _read_steps(read: Any, has_times: bool, has_los: bool, max_steps: int | None) -> dict[str, np.ndarray]:
    """The per-step arrays of the split, reduced to one snapshot per sample.

    ``rss`` [N, S] is the mean over the valid steps; ``toa``, ``aoa``, ``los`` and ``pos``
    are taken at the last valid step; ``rss_t`` [N, T, S] and ``step_age`` [N, T] keep the steps.
    """
    step_mask = read("step_mask").astype(bool)
    if max_steps is not None:
        from_end = np.cumsum(step_mask[:, ::-1], axis=1)[:, ::-1]  # valid steps at or after each step
        step_mask &= from_end <= max_steps
    last = np.where(step_mask.any(1), step_mask.shape[1] - 1 - np.argmax(step_mask[:, ::-1], axis=1), 0)
    rss_t = read("rss_dbm").astype(np.float64)
    rss_t = np.where(step_mask[..., None], rss_t, np.nan)
    count = np.isfinite(rss_t).sum(1)
    with np.errstate(invalid="ignore"):
        rss = np.where(count > 0, np.nansum(rss_t, axis=1) / np.maximum(count, 1), np.nan)
    t_s = read("t_s").astype(np.float64) if has_times else np.zeros(step_mask.shape)
    last_t = np.take_along_axis(t_s, last[:, None], 1)
    return {
        "rss": rss, "rss_t": rss_t, "step_age": np.where(step_mask, last_t - t_s, np.nan),
        "toa": _last_step(read("toa_ns").astype(np.float64), last),
        "aoa": _last_step(read("aoa_deg").astype(np.float64), last),
        "los": _last_step(read("los"), last).astype(np.int8) if has_los else np.full(rss.shape, -1, np.int8),
        "pos": _last_step(read("pos_m").astype(np.float64), last),
        "last": last, "step_mask": step_mask,
    }


def _generated_slots(root: Any, config: dict[str, Any], scenes: tuple[str, ...], scene_idx: np.ndarray,
                     node_pos: np.ndarray, *, with_maps: bool, cached: dict[str, SceneMaps] | None = None
                     ) -> dict[str, Any]:
    """Site of each slot (the scene's site within 5 cm of the node), its transmit power, and the maps
    (``cached``: the scenes' maps, already read)."""
    n, s = node_pos.shape[:2]
    tx = np.full((n, s), np.nan)
    slot_site = np.full((n, s), -1, dtype=np.int64)
    maps: dict[str, SceneMaps] = {}
    for i, name in enumerate(scenes):
        scene_maps = cached[name] if cached is not None and name in cached else read_scene_maps(root, name)
        site_pos, site_tx = scene_maps.site_pos_m, scene_maps.tx_power_dbm
        rows = scene_idx == i
        if rows.any():
            d = np.linalg.norm(node_pos[rows][:, :, None, :] - site_pos[None, None], axis=-1)  # [n, S, M]
            d = np.where(np.isnan(d), np.inf, d)
            nearest = np.argmin(d, axis=-1)
            ok = np.take_along_axis(d, nearest[..., None], -1)[..., 0] < 0.05
            slot_site[rows] = np.where(ok, nearest, -1)
            tx[rows] = np.where(ok, site_tx[nearest], np.nan)
        if with_maps:
            maps[name] = scene_maps
    fixed = 0 if config.get("survey") == "drone" else s
    return {"tx": tx, "slot_site": slot_site, "maps": maps if with_maps else None, "fixed": fixed}


def _imported_slots(attrs: dict[str, Any], n: int, s: int) -> dict[str, Any]:
    """Imported data: the first slots are the file's nodes (with their transmit power); no maps."""
    tx = np.full((n, s), np.nan)
    slot_site = np.full((n, s), -1, dtype=np.int64)
    fixed = len(list(attrs.get("node_ids") or []))
    slot_site[:, : min(fixed, s)] = np.arange(min(fixed, s))
    for j, row in enumerate((attrs.get("nodes") or [])[:s]):
        if row.get("tx_power_dbm") is not None:
            tx[:, j] = float(row["tx_power_dbm"])
    return {"tx": tx, "slot_site": slot_site, "maps": None, "fixed": fixed}


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True, eq=False)
class Prediction:
    """Positions estimated by a model (baseline or network).

    Attributes
    ----------
    position_m : ndarray [N, 2]
        Estimated x, y in scene metres.
    sigma_m : ndarray [N, 2]
        1-sigma uncertainty of x and y in metres (NaN where the method has none).
    info : dict
        Method-specific extras (e.g. ``fallbacks``: samples that fell back to the
        weighted centroid; ``map_cell_m`` [N, 2] for map matching).
    """

    position_m: np.ndarray
    sigma_m: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def errors_m(pred: Prediction, x: Inputs) -> np.ndarray:
    """Euclidean 2-D error [N] in metres of ``pred`` against ``x.truth_m``."""
    return np.hypot(*(pred.position_m - x.truth_m).T)


def search_bounds(train: Inputs) -> list[float]:
    """Search box [x_min, x_max, y_min, y_max] (m): training truths and known nodes, 10% margin.

    The extent of the *training* scenes: the geometric baselines no longer use it (they use
    :func:`scene_extent` of the data they predict); the networks' normalization still does.
    """
    box = points_box(train)
    if box is None:
        msg = f"train: split {train.split!r} of {train.dataset!r} has neither true positions nor known node positions"
        raise InvalidInputError(msg)
    return box_bounds(*box)


def points_box(x: Inputs) -> tuple[np.ndarray, np.ndarray] | None:
    """Lowest and highest x, y [2] of the true positions and known node positions of ``x`` (None: none).

    The box of a split read in blocks is the box of the blocks' boxes (:func:`box_bounds` then gives its
    :func:`search_bounds`).
    """
    pts = [x.truth_m[np.isfinite(x.truth_m).all(1)], x.node_pos_m[..., :2][x.known_nodes]]
    pts = np.concatenate([p.reshape(-1, 2) for p in pts])
    if len(pts) == 0:
        return None
    return pts.min(0), pts.max(0)


def box_bounds(lo: np.ndarray, hi: np.ndarray) -> list[float]:
    """:func:`search_bounds` of the box ``lo``, ``hi``: widened by 10% of its larger side (at least 1 m)."""
    margin = 0.1 * max(float((hi - lo).max()), 10.0)
    return [float(lo[0] - margin), float(hi[0] + margin), float(lo[1] - margin), float(hi[1] + margin)]


#: Least margin (m) around the node box of a scene without radio maps (see :func:`scene_extent`).
MIN_NODE_MARGIN_M = 100.0


def scene_extent(x: Inputs) -> np.ndarray:
    """Per sample, the extent ``[x_min, x_max, y_min, y_max]`` (m) of its scene as ``x`` gives it. [N, 4].

    Nothing here comes from training: this is the area a model predicting ``x`` may clamp
    to, whatever the scenes it was trained on. Where ``x`` carries the scene's radio maps:
    the area their grid covers. Otherwise (imported measurements, ``with_maps=False``): the
    box of the scene's known node positions in ``x``, widened on every side by its larger
    side (at least :data:`MIN_NODE_MARGIN_M`), since a geometric fix lies near its nodes;
    +-inf where the scene has neither (no clamp).
    """
    ext = np.tile(np.array([-np.inf, np.inf, -np.inf, np.inf]), (len(x), 1))
    for i, scene in enumerate(x.scenes):
        rows = x.scene_idx == i
        if not rows.any():
            continue
        if x.maps and scene in x.maps:
            x0, y0, x1, y1 = x.maps[scene].grid.extent_m
            ext[rows] = [x0, x1, y0, y1]
            continue
        nodes = x.node_pos_m[rows][..., :2][x.known_nodes[rows]]
        if len(nodes):
            lo, hi = nodes.min(0), nodes.max(0)
            margin = max(float((hi - lo).max()), MIN_NODE_MARGIN_M)
            ext[rows] = [lo[0] - margin, hi[0] + margin, lo[1] - margin, hi[1] + margin]
    return ext
