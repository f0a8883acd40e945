"""What an ablation changes in the data: features kept, sites kept, reports per sequence, dropout, map corruption.

An :class:`InputTransform` travels in a run's ``config.json`` (``input_transform``) so the
run is trained, validated and evaluated on the same view of its dataset::

    t = InputTransform(features=("rss",), max_sites=3)
    x = load_transformed("ds", "train", t, with_maps=False)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from rflocal_core.errors import InvalidInputError
from rflocal_core.models.inputs import PHY_INPUT_FIELDS, Inputs, SceneMaps, load_inputs, node_carriers
from rflocal_core.validation import check_int, check_number, dataclass_from_dict

FEATURES = ("rss", "toa", "aoa")
#: Test-time corruptions of the radio maps and scene rasters a map-conditioned model reads.
MAP_CORRUPTIONS = ("none", "buildings_removed", "buildings_added", "materials_wrong", "maps_missing")
#: Which reporting nodes ``max_sites`` keeps: the strongest by RSS, or a random draw (receivers failing).
SITE_CHOICES = ("strongest", "random")
_FIELD_OF = {"rss": "rss_dbm", "toa": "toa_ns", "aoa": "aoa_deg"}
#: The PHY/MAC report fields of each feature layer above the ray-traced one (RSS/ToA/AoA), for the layer
#: study: RSRP is the RSS token here (RSS − 10·log10(12·N_RB)) and the timing advance is the ToA token.
PHY_LAYERS: dict[str, tuple[str, ...]] = {
    "phy": ("rsrq_db", "sinr_db", "cqi", "ri"),
    "mac": ("serving", "neighbour_rank", "event_a3", "event_a5"),
    "beams": ("beam_id", "beam_rsrp_dbm"),
}


@dataclass(frozen=True)
class InputTransform:
    """A view of a dataset split.

    Parameters
    ----------
    features : tuple of str
        Measurement types kept (of ``rss``, ``toa``, ``aoa``); the others become missing.
    max_sites : int or None
        Keep only ``max_sites`` reporting nodes of each sample (which: ``site_choice``); the
        others lose every measurement, their IQ capture included.
    site_choice : str
        ``"strongest"`` (by RSS; the default) or ``"random"`` (a uniform draw among the reporting
        nodes, seeded: receivers that fail whatever they heard).
    max_steps : int or None
        Keep only the last ``max_steps`` report times of each sequence (RSS is averaged over
        the steps kept).
    feature_dropout : float
        Fraction of the (node, feature) measurements removed at random, in [0, 0.95].
    map_corruption : str
        One of :data:`MAP_CORRUPTIONS` (test time: what the maps get wrong).
    phy_fields : tuple of str or None
        PHY/MAC report fields kept (of :data:`~rflocal_core.models.inputs.PHY_INPUT_FIELDS`); the others
        become missing. None: all (``[]``: none).
    bands : tuple of float or None
        Carriers (Hz) whose cells are kept: the node slots on other bands lose every measurement
        (a network seen on one band only). None: all.
    seed : int
        Seed of the random parts (dropout, corruption).
    """

    features: tuple[str, ...] = FEATURES
    max_sites: int | None = None
    site_choice: str = "strongest"
    max_steps: int | None = None
    feature_dropout: float = 0.0
    map_corruption: str = "none"
    phy_fields: tuple[str, ...] | None = None
    bands: tuple[float, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        feats = tuple(self.features) if isinstance(self.features, (list, tuple)) else self.features
        if not isinstance(feats, tuple) or not feats or any(f not in FEATURES for f in feats):
            msg = f"features: expected a non-empty list of {', '.join(FEATURES)}, got {self.features!r}"
            raise InvalidInputError(msg)
        object.__setattr__(self, "features", feats)
        if self.max_sites is not None:
            check_int("max_sites", self.max_sites, 1, 1000)
        if self.site_choice not in SITE_CHOICES:
            msg = f"site_choice: expected one of {', '.join(SITE_CHOICES)}, got {self.site_choice!r}"
            raise InvalidInputError(msg)
        if self.max_steps is not None:
            check_int("max_steps", self.max_steps, 1, 100_000)
        check_number("feature_dropout", self.feature_dropout, 0.0, 0.95)
        if self.map_corruption not in MAP_CORRUPTIONS:
            msg = f"map_corruption: expected one of {', '.join(MAP_CORRUPTIONS)}, got {self.map_corruption!r}"
            raise InvalidInputError(msg)
        if self.phy_fields is not None:
            kept = tuple(self.phy_fields) if isinstance(self.phy_fields, (list, tuple)) else None
            if kept is None or any(f not in PHY_INPUT_FIELDS for f in kept):
                msg = f"phy_fields: expected a list of {', '.join(PHY_INPUT_FIELDS)}, got {self.phy_fields!r}"
                raise InvalidInputError(msg)
            object.__setattr__(self, "phy_fields", kept)
        if self.bands is not None:
            kept = tuple(self.bands) if isinstance(self.bands, (list, tuple)) else ()
            if not kept:
                msg = f"bands: expected a non-empty list of carriers in Hz, got {self.bands!r}"
                raise InvalidInputError(msg)
            for k, f in enumerate(kept):
                check_number(f"bands[{k}]", f, 1e8, 1e11, "Hz")
            object.__setattr__(self, "bands", tuple(float(f) for f in kept))
        check_int("seed", self.seed, 0, 2**31 - 1)

    @property
    def identity(self) -> bool:
        return self == InputTransform(seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["features"] = list(self.features)
        if self.phy_fields is not None:
            d["phy_fields"] = list(self.phy_fields)
        else:
            del d["phy_fields"]  # runs from before it read the same
        if self.bands is not None:
            d["bands"] = list(self.bands)
        else:
            del d["bands"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> InputTransform:
        return dataclass_from_dict(cls, d or {}, field="input_transform")


def load_transformed(dataset: str, split: str, transform: InputTransform | None, *, with_maps: bool) -> Inputs:
    """:func:`~rflocal_core.models.load_inputs` of a split, seen through ``transform``."""
    t = transform or InputTransform()
    x = load_inputs(dataset, split, with_maps=with_maps, max_steps=t.max_steps)
    return apply_transform(x, t)


def apply_transform(x: Inputs, t: InputTransform) -> Inputs:
    """``x`` with the features, sites, dropout and map corruption of ``t`` applied (steps: at load)."""
    if t.identity:
        return x
    rng = np.random.default_rng([t.seed, len(x)])
    fields = {name: getattr(x, name).copy() for name in _FIELD_OF.values()}
    for feat, name in _FIELD_OF.items():
        if feat not in t.features:
            fields[name][:] = np.nan
    keep_capture = np.ones(x.node_mask.shape, bool)
    if t.bands is not None:  # the cells of other bands are not heard
        off = ~np.isin(node_carriers(x), t.bands)
        for values in fields.values():
            values[off] = np.nan
        keep_capture = ~off
    if t.max_sites is not None:
        drop = _dropped_sites(x, fields, t, rng)
        for values in fields.values():
            values[drop] = np.nan
        keep_capture &= ~drop
    if t.feature_dropout > 0:
        for values in fields.values():
            values[rng.random(values.shape) < t.feature_dropout] = np.nan
    if x.rss_steps_dbm is not None:  # a slot whose RSS is gone loses it at every time
        fields["rss_steps_dbm"] = np.where(np.isfinite(fields["rss_dbm"])[:, None, :], x.rss_steps_dbm, np.nan)
    if x.phy is not None and t.phy_fields is not None:
        dropped = [k for k, key in enumerate(PHY_INPUT_FIELDS) if key not in t.phy_fields]
        fields["phy"] = x.phy.copy()
        fields["phy"][..., dropped] = np.nan
        if x.phy_steps is not None:  # the earlier reports' fields too (mapformer's history tokens)
            fields["phy_steps"] = x.phy_steps.copy()
            fields["phy_steps"][..., dropped] = np.nan
    if x.iq_scale is not None and not keep_capture.all():  # a dropped receiver's capture goes with it
        fields["iq_scale"] = np.where(keep_capture, x.iq_scale, np.nan)
    out = replace(x, **fields)
    if t.map_corruption != "none" and x.maps:
        out = replace(out, maps={k: corrupt_maps(m, t.map_corruption, rng) for k, m in x.maps.items()})
    return out


def _dropped_sites(x: Inputs, fields: dict[str, np.ndarray], t: InputTransform,
                   rng: np.random.Generator) -> np.ndarray:
    """[N, S] bool: the slots :attr:`InputTransform.max_sites` removes (and those not reporting)."""
    reporting = np.isfinite(fields["rss_dbm"]) | np.isfinite(fields["toa_ns"]) | np.isfinite(fields["aoa_deg"])
    if x.iq_scale is not None:  # a capture is a report of its own (the IQ branch, TDoA)
        reporting |= np.isfinite(x.iq_scale) & x.node_mask
    if t.site_choice == "random":
        strength = rng.random(reporting.shape)
    else:
        strength = np.where(np.isfinite(x.rss_dbm), x.rss_dbm, -1e9)  # heard without RSS: after the others
    strength = np.where(reporting, strength, -np.inf)
    rank = np.argsort(np.argsort(-strength, axis=1, kind="stable"), axis=1)  # 0 = strongest
    return (rank >= t.max_sites) | ~reporting


def corrupt_maps(maps: SceneMaps, kind: str, rng: np.random.Generator) -> SceneMaps:
    """A copy of one scene's maps with what ``kind`` gets wrong (see :data:`MAP_CORRUPTIONS`).

    ``buildings_removed``: a third of the building cells become open ground in the scene
    rasters; ``buildings_added``: as many open cells become 15 m buildings;
    ``materials_wrong``: building material classes are shuffled; ``maps_missing``: the radio
    map of every other site is absent (no ray anywhere).
    """
    r = {k: v.copy() for k, v in maps.rasters.items()}
    pg = maps.path_gain_db
    if kind in ("buildings_removed", "buildings_added") and "footprint" in r:
        foot = r["footprint"].astype(bool)
        if kind == "buildings_removed":
            cells = foot & (rng.random(foot.shape) < 1 / 3)
            for key in ("footprint", "building_height_m", "material"):
                if key in r:
                    r[key][cells] = 0
        else:
            cells = ~foot & (rng.random(foot.shape) < foot.mean() / 3)
            r["footprint"][cells] = 1
            if "building_height_m" in r:
                r["building_height_m"][cells] = 15.0
            if "material" in r:
                r["material"][cells] = 1
    elif kind == "materials_wrong" and "material" in r:
        m = r["material"]
        classes = np.unique(m[m > 0])
        if len(classes) > 1:
            shuffled = rng.permutation(classes)
            lut = np.arange(int(m.max()) + 1)
            lut[classes] = shuffled
            r["material"] = lut[m].astype(m.dtype)
    channels = maps.channels
    if kind == "maps_missing":
        pg = pg.copy()
        pg[1::2] = -np.inf
        channels = {k: v.copy() for k, v in maps.channels.items()}
        for v in channels.values():  # the SINR/ToA/AoA maps of those sites are absent too
            v[1::2] = np.nan
    outdoor = (r["footprint"] == 0) if "footprint" in r else maps.outdoor
    return replace(maps, path_gain_db=pg, rasters=r, outdoor=outdoor, channels=channels)
