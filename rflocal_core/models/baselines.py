"""Classical localization baselines with one common interface.

Every baseline takes :class:`~rflocal_core.models.inputs.Inputs` (one dataset split as plain
numpy arrays, see :func:`~rflocal_core.models.inputs.load_inputs`) and returns a
:class:`~rflocal_core.models.inputs.Prediction` (positions in scene metres, x east, y north,
and a 1-sigma uncertainty per axis where the method has one)::

    model = MapMatching().fit(load_inputs("ds", "train"), load_inputs("ds", "val"))
    pred = model.predict(load_inputs("ds", "test"))
    state = model.state_dict()                      # plain numpy / python values
    again = MapMatching.from_state(model.config, state)

Methods: :class:`StrongestSite`, :class:`WeightedCentroid`,
:class:`LogDistanceMultilateration`, :class:`AoATriangulation`, :class:`ToAMultilateration`,
:class:`TDoAMultilateration`, :class:`KNNFingerprint`, :class:`MapMatching`.

Any scene: nothing fitted on the training scenes bounds a prediction. The geometric methods
(centroids, log-distance, AoA, ToA) solve in the coordinates of the data they predict and
clamp only to that scene's extent (:func:`~rflocal_core.models.inputs.scene_extent`: its
radio-map grid, else its node box widened); map matching searches the maps of the scene it
is given. kNN alone is tied to its training scenes (it returns training positions).
"""

from __future__ import annotations

import abc
import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import least_squares
from scipy.special import log_ndtr

from rflocal_core import iq
from rflocal_core.constants import C_M_PER_NS, SPEED_OF_LIGHT_M_S
from rflocal_core.dataset.rasters import Grid
from rflocal_core.errors import InvalidInputError, NotFittedError
from rflocal_core.models.inputs import Inputs, Prediction, SceneMaps, errors_m, scene_extent
from rflocal_core.models.radiomap import HEARD_PRIORS, fit_radio_map, radio_map_loglik
from rflocal_core.models.registry import register
from rflocal_core.options import check_options, option

#: Target height assumed when the training split has none (m).
DEFAULT_TARGET_Z_M = 1.5
#: A start at a node is moved off it by this much (m): a range's gradient is undefined on the node.
START_OFFSET_M = 0.5


# --------------------------------------------------------------------------- base


@dataclass(frozen=True)
class _NoConfig:
    """Configuration of a baseline without parameters."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Baseline(abc.ABC):
    """Common interface: ``fit``, ``predict``, ``state_dict``, ``from_state``."""

    #: The registry name, set by :func:`~rflocal_core.models.registry.register`.
    name: ClassVar[str] = "baseline"
    #: Which registry the class joins.
    kind: ClassVar[str] = "baseline"
    #: Whether fitting and predicting read the dataset's radio maps (``Inputs.maps``).
    needs_maps: ClassVar[bool] = False
    #: Whether it places each report at its node's position (reports of nodes of unknown position are ignored).
    needs_node_positions: ClassVar[bool] = False
    #: The report field (of :class:`~rflocal_core.models.inputs.Inputs`) it locates from, None: any; on a
    #: dataset without such reports it only falls back (model selection, train/auto.py, skips it there).
    needs_measurement: ClassVar[str | None] = None
    #: Whether it predicts in a scene it was not trained on from the nodes the data gives (the geometric
    #: methods); False: what it learned belongs to its training scenes (fingerprints, radio maps).
    any_scene: ClassVar[bool] = False
    config_cls: ClassVar[type] = _NoConfig
    #: Whether :meth:`refit` can fit the model again on train + val with what it chose on val fixed
    #: (``train --refit``; by default through :meth:`frozen_config`).
    can_refit: ClassVar[bool] = False
    #: Option sets that model selection (``train --model auto``) trains besides the defaults, by name
    #: (the candidate ``MODEL:NAME``); each must be valid options of ``config_cls``.
    auto_variants: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, config: Any = None) -> None:
        if config is None:
            config = self.config_cls()
        elif isinstance(config, dict):
            config = self.config_cls(**config)
        elif not isinstance(config, self.config_cls):
            msg = f"config: expected {self.config_cls.__name__} or a dict of its fields, got {type(config).__name__}"
            raise InvalidInputError(msg)
        self.config = config
        self._state: dict[str, Any] | None = None

    # subclasses implement _fit(train, val) -> state and _predict(x) -> Prediction
    def fit(self, train: Inputs, val: Inputs | None = None) -> Baseline:
        """Fit on ``train`` (with true positions); some methods tune on ``val``. Returns self."""
        _check_inputs(train, "train")
        if val is not None:
            _check_inputs(val, "val")
        self._state = self._fit(train, val)
        return self

    def predict(self, x: Inputs) -> Prediction:
        """Estimate the position of every sample of ``x``."""
        _check_inputs(x, "x")
        self._require_fit()
        return self._predict(x)

    def frozen_config(self) -> dict[str, Any]:
        """The fitted model's options with what it chose on val fixed (for a refit on train + val without val).

        Raises
        ------
        InvalidInputError
            The model cannot be refitted (``can_refit`` is False).
        """
        self._require_fit()
        msg = (f"refit: {self.name} cannot fix its validation choices for a refit on train + val (models that can: "
               "knn, lgbm, knn_lgbm, ensemble)")
        raise InvalidInputError(msg)

    def refit(self, data: Inputs) -> Baseline:
        """A new model fitted on ``data`` (train + val) with the choices this fitted one made on val fixed."""
        return type(self)(self.frozen_config()).fit(data)

    def state_dict(self) -> dict[str, Any]:
        """Everything fitted, as plain numpy arrays and python values."""
        self._require_fit()
        assert self._state is not None
        return dict(self._state)

    @classmethod
    def from_state(cls, config: Any, state: dict[str, Any]) -> Baseline:
        """Rebuild a fitted baseline from its config and :meth:`state_dict`."""
        if not isinstance(state, dict):
            msg = f"state: expected the dict from state_dict(), got {type(state).__name__}"
            raise InvalidInputError(msg)
        model = cls(config)
        model._state = dict(state)
        return model

    def _require_fit(self) -> None:
        if self._state is None:
            msg = f"{self.name}: not fitted; call fit(train) before predict() or state_dict()"
            raise NotFittedError(msg)

    def _fit(self, train: Inputs, val: Inputs | None) -> dict[str, Any]:
        # Nothing to learn; in particular not the training extent (see the module docstring).
        return {}

    @abc.abstractmethod
    def _predict(self, x: Inputs) -> Prediction:
        """Positions of the samples of ``x`` (each method's own estimator)."""


def _check_inputs(x: Any, what: str) -> None:
    if not isinstance(x, Inputs):
        msg = f"{what}: expected Inputs (from load_inputs), got {type(x).__name__}"
        raise InvalidInputError(msg)


def _clip(pos: np.ndarray, ext: np.ndarray) -> np.ndarray:
    """``pos`` [N, 2] clamped to the per-sample scene extent ``ext`` [N, 4] (see :func:`scene_extent`)."""
    return np.column_stack([np.clip(pos[:, 0], ext[:, 0], ext[:, 1]), np.clip(pos[:, 1], ext[:, 2], ext[:, 3])])


def _fallback_position(x: Inputs, ext: np.ndarray) -> np.ndarray:
    """Per sample: mean of its known nodes, else the centre of its scene's extent (its origin if unbounded). [N, 2]."""
    known = x.known_nodes
    xy = np.where(known[..., None], x.node_pos_m[..., :2], 0.0)
    cnt = known.sum(1)
    mean = xy.sum(1) / np.maximum(cnt, 1)[:, None]
    with np.errstate(invalid="ignore"):
        centre = np.column_stack([(ext[:, 0] + ext[:, 1]) / 2, (ext[:, 2] + ext[:, 3]) / 2])
    return np.where((cnt > 0)[:, None], mean, np.nan_to_num(centre, nan=0.0))


def _reported(x: Inputs) -> np.ndarray:
    """[N, S] bool: slots with an RSS report from a node with a known position."""
    return np.isfinite(x.rss_dbm) & x.known_nodes


# --------------------------------------------------------------------------- 1, 2


@register("strongest_site")
class StrongestSite(Baseline):
    """Position of the node with the highest RSS (no uncertainty).

    A sample without any RSS from a positioned node gets the mean of its known nodes.
    """

    any_scene = True
    needs_node_positions = True

    def _predict(self, x: Inputs) -> Prediction:
        ok = _reported(x)
        best = np.argmax(np.where(ok, x.rss_dbm, -np.inf), axis=1)
        pos = x.node_pos_m[np.arange(len(x)), best, :2]
        none = ~ok.any(1)
        pos = np.where(none[:, None], _fallback_position(x, scene_extent(x)), pos)
        return Prediction(pos, np.full_like(pos, np.nan), {"fallbacks": int(none.sum())})


@dataclass(frozen=True)
class WeightedCentroidConfig:
    """Weighting of the RSS-weighted centroid.

    Parameters
    ----------
    weighting : str
        ``"db"`` (default): w = rss - (weakest RSS of the sample) + ``offset_db``, i.e.
        linear in dB, so a 10 dB stronger node weighs ~10 dB more, not 10x: robust with the
        2-5 reports typical here. ``"power"``: w = 10^(rss/10) (nearly the strongest site).
    offset_db : float
        Weight of the weakest report (dB above zero), > 0.
    """

    weighting: str = option("db", choices=("db", "power"), help="db (linear in dB) or power weights")
    offset_db: float = option(5.0, lo=0, hi=100, lo_open=True, unit="dB", help="weight of the weakest report")

    def __post_init__(self) -> None:
        check_options(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _weighted_centroid(x: Inputs, config: WeightedCentroidConfig, ext: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = _reported(x)
    rss = np.where(ok, x.rss_dbm, np.nan)
    if config.weighting == "power":
        top = np.nanmax(np.where(ok, rss, -np.inf), axis=1, keepdims=True)
        w = np.where(ok, 10 ** ((rss - np.where(np.isfinite(top), top, 0.0)) / 10), 0.0)
    else:
        low = np.min(np.where(ok, rss, np.inf), axis=1, keepdims=True)
        w = np.where(ok, rss - np.where(np.isfinite(low), low, 0.0) + config.offset_db, 0.0)
    wsum = w.sum(1)
    xy = np.where(ok[..., None], x.node_pos_m[..., :2], 0.0)
    pos = (w[..., None] * xy).sum(1) / np.maximum(wsum, 1e-12)[:, None]
    none = wsum <= 0
    pos = np.where(none[:, None], _fallback_position(x, ext), pos)
    return pos, none


@register("weighted_centroid")
class WeightedCentroid(Baseline):
    """RSS-weighted centroid of the reporting nodes (see :class:`WeightedCentroidConfig`)."""

    any_scene = True
    needs_node_positions = True
    config_cls = WeightedCentroidConfig

    def _predict(self, x: Inputs) -> Prediction:
        pos, none = _weighted_centroid(x, self.config, scene_extent(x))
        return Prediction(pos, np.full_like(pos, np.nan), {"fallbacks": int(none.sum())})


# --------------------------------------------------------------------------- 3


def _dist3(p: np.ndarray, nodes: np.ndarray, z: float) -> np.ndarray:
    dz = np.where(np.isfinite(nodes[:, 2]), nodes[:, 2] - z, 0.0)
    return np.sqrt((p[0] - nodes[:, 0]) ** 2 + (p[1] - nodes[:, 1]) ** 2 + dz**2)


def _box(ext: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Lower and upper (x, y) corners of one sample's scene extent [4], and its larger side (the sigma cap)."""
    lo, hi = ext[[0, 2]], ext[[1, 3]]
    return lo, hi, float(max(hi - lo))


def _cov_sigma(jac: np.ndarray, scale2: float, cap: float) -> np.ndarray:
    cov = np.linalg.pinv(jac.T @ jac) * scale2
    return np.clip(np.sqrt(np.maximum(np.diag(cov)[:2], 0.0)), 0.0, cap)


@dataclass(frozen=True)
class LogDistanceConfig:
    """Log-distance multilateration.

    Parameters
    ----------
    min_distance_m : float
        Distances are clamped to at least this (m) in the model.
    centroid : WeightedCentroidConfig
        Start point, and the fallback for samples with too few reports.
    """

    min_distance_m: float = option(1.0, lo=0, hi=100, lo_open=True, unit="m",
                                   help="distances are clamped to at least this in the model")
    centroid: WeightedCentroidConfig = WeightedCentroidConfig()

    def __post_init__(self) -> None:
        if isinstance(self.centroid, dict):
            object.__setattr__(self, "centroid", WeightedCentroidConfig(**self.centroid))
        check_options(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@register("log_distance")
class LogDistanceMultilateration(Baseline):
    """RSS = P - 10 n log10(d) fitted on train, then per-sample nonlinear least squares.

    ``P`` = site transmit power + G0 where the power is known (ue mode), else G0 + dP with a
    per-sample offset dP (emitter mode: estimated jointly with x, y). Fit: least squares on
    the training links with true positions (emitter mode: within-sample demeaned, i.e. with
    per-sample offsets as fixed effects). Uncertainty: sqrt(diag((J^T J)^-1)) of the
    residuals scaled by the training residual std ``sigma_db`` (the model's residual variance).
    Samples with fewer reports than unknowns fall back to the weighted centroid.
    """

    any_scene = True
    needs_node_positions = True
    config_cls = LogDistanceConfig

    def _fit(self, train: Inputs, val: Inputs | None) -> dict[str, Any]:
        z = float(np.nanmedian(train.truth_z_m)) if np.isfinite(train.truth_z_m).any() else DEFAULT_TARGET_Z_M
        ok = _reported(train) & np.isfinite(train.truth_m).all(1)[:, None]
        rows, cols = np.nonzero(ok)
        if len(rows) < 3:
            msg = f"train: {len(rows)} RSS reports with known node and true positions; need at least 3 to fit n and P0"
            raise InvalidInputError(msg)
        nodes = train.node_pos_m[rows, cols]
        dz = np.where(np.isfinite(nodes[:, 2]), nodes[:, 2] - z, 0.0)
        d = np.sqrt(((train.truth_m[rows] - nodes[:, :2]) ** 2).sum(1) + dz**2)
        lg = -10 * np.log10(np.maximum(d, self.config.min_distance_m))
        tx = train.tx_power_dbm[rows, cols]
        known_tx = bool(np.isfinite(tx).all())
        y = train.rss_dbm[rows, cols] - (tx if known_tx else 0.0)
        if known_tx:
            a = np.column_stack([np.ones_like(lg), lg])
            (g0, n), *_ = np.linalg.lstsq(a, y, rcond=None)
            resid = y - a @ np.array([g0, n])
            dof = len(y) - 2
        else:
            # fixed effects: demean per sample
            sums_y = np.bincount(rows, y, minlength=len(train))
            sums_l = np.bincount(rows, lg, minlength=len(train))
            cnt = np.bincount(rows, minlength=len(train))
            yc = y - (sums_y / np.maximum(cnt, 1))[rows]
            lc = lg - (sums_l / np.maximum(cnt, 1))[rows]
            if np.sum(lc**2) <= 0:
                msg = "train: no sample has two RSS reports at different distances; cannot fit the path-loss exponent"
                raise InvalidInputError(msg)
            n = float(np.sum(yc * lc) / np.sum(lc**2))
            g0 = float(np.mean(y - n * lg))
            resid = yc - n * lc
            dof = len(y) - int((cnt > 0).sum()) - 1
        sigma = float(np.sqrt(np.sum(resid**2) / max(dof, 1)))
        return {"target_z_m": z, "n": float(n), "g0_db": float(g0),
                "sigma_db": max(sigma, 0.5), "known_tx": known_tx}

    def _predict(self, x: Inputs) -> Prediction:
        st = self._state
        ext = scene_extent(x)
        start, _ = _weighted_centroid(x, self.config.centroid, ext)
        start = _clip(start, ext)
        ok = _reported(x)
        pos = start.copy()
        sig = np.full_like(pos, np.nan)
        power = np.full(len(x), np.nan)
        fallbacks = 0
        n_exp, g0, sigma, z = st["n"], st["g0_db"], st["sigma_db"], st["target_z_m"]
        dmin = self.config.min_distance_m
        for i in range(len(x)):
            cols = np.flatnonzero(ok[i])
            tx = x.tx_power_dbm[i, cols]
            joint = not np.isfinite(tx).all()
            nodes = x.node_pos_m[i, cols]
            rss = x.rss_dbm[i, cols] - (0.0 if joint else tx)
            if len(cols) < (3 if joint else 2):
                fallbacks += 1
                continue
            lo, hi, cap = _box(ext[i])
            # the RSS cost has several basins: from the centroid and from the strongest node, the lower cost wins
            starts = [start[i], nodes[np.argmax(rss), :2] + START_OFFSET_M]
            sol = _log_distance_fix(rss, nodes, starts, lo, hi, joint=joint, law=(g0, n_exp, sigma, z, dmin))
            pos[i] = sol.x[:2]
            sig[i] = _cov_sigma(sol.jac, 1.0, cap)
            if joint:
                power[i] = sol.x[2]
        return Prediction(pos, sig, {"fallbacks": fallbacks, "power_offset_db": power,
                                     "n": n_exp, "g0_db": g0, "sigma_db": sigma})


def _log_distance_fix(rss: np.ndarray, nodes: np.ndarray, starts: list[np.ndarray], lo: np.ndarray, hi: np.ndarray,
                      *, joint: bool, law: tuple[float, float, float, float, float]) -> Any:
    """Least squares of ``rss`` (dB, less the tx power unless ``joint``) under the log-distance ``law``
    ``(g0, n, sigma, z, dmin)`` from each start; the lowest-cost solution (``x``: x, y[, power offset])."""
    g0, n_exp, sigma, z, dmin = law
    best = None
    for x_start in starts:
        if joint:
            d0 = _dist3(x_start, nodes, z)
            p_start = float(np.mean(rss - g0 + 10 * n_exp * np.log10(np.maximum(d0, dmin))))

            def res(p: np.ndarray) -> np.ndarray:
                d = np.maximum(_dist3(p, nodes, z), dmin)
                return (rss - (g0 + p[2] - 10 * n_exp * np.log10(d))) / sigma

            x0 = np.array([*x_start, p_start])
            lb, ub = np.array([*lo, -np.inf]), np.array([*hi, np.inf])
        else:

            def res(p: np.ndarray) -> np.ndarray:
                d = np.maximum(_dist3(p, nodes, z), dmin)
                return (rss - (g0 - 10 * n_exp * np.log10(d))) / sigma

            x0, lb, ub = np.asarray(x_start, dtype=float).copy(), lo, hi
        x0 = np.clip(x0, lb + 1e-6, ub - 1e-6)
        sol = least_squares(res, x0, bounds=(lb, ub), method="trf")
        if best is None or sol.cost < best.cost:
            best = sol
    return best


# --------------------------------------------------------------------------- 4


def _target_height(train: Inputs, device_height_m: float | None) -> float:
    """The device height of the model: the configured one, else the training median (1.5 m without one)."""
    if device_height_m is not None:
        return float(device_height_m)
    z = train.truth_z_m[np.isfinite(train.truth_z_m)]
    return float(np.median(z)) if len(z) else DEFAULT_TARGET_Z_M


def _solve_robust(res: Any, starts: list[np.ndarray], lo: np.ndarray, hi: np.ndarray, f_scale: float) -> Any:
    """Soft-L1 least squares of ``res`` from each start (clamped into [lo, hi]); the lowest-cost solution."""
    best = None
    for x0 in starts:
        x0 = np.clip(x0, lo + 1e-6, hi - 1e-6)
        sol = least_squares(res, x0, bounds=(lo, hi), loss="soft_l1", f_scale=f_scale, method="trf")
        if best is None or sol.cost < best.cost:
            best = sol
    return best


@dataclass(frozen=True)
class AoAConfig(WeightedCentroidConfig):
    """Robust bearing least squares (the centroid options give the start and the fallback).

    Parameters
    ----------
    loss_scale_deg : float
        Bearing residual where the soft-L1 loss turns from quadratic to linear: bearings off
        by much more (NLoS reflections) count linearly, not quadratically.
    """

    loss_scale_deg: float = option(5.0, lo=0, hi=90, lo_open=True, unit="deg",
                                   help="bearing residual where the soft-L1 loss turns linear (NLoS outliers)")


def _bearing_residual(p: np.ndarray, nodes: np.ndarray, theta_deg: np.ndarray) -> np.ndarray:
    """Wrapped difference (degrees) between the compass bearings node -> ``p`` and the measured ones."""
    pred = np.degrees(np.arctan2(p[0] - nodes[:, 0], p[1] - nodes[:, 1]))
    return (pred - theta_deg + 180.0) % 360.0 - 180.0


def _bearing_intersection(nodes: np.ndarray, theta_deg: np.ndarray) -> np.ndarray | None:
    """Linear least-squares intersection of the bearing lines, or None when they are nearly parallel."""
    th = np.radians(theta_deg)
    a = np.column_stack([np.cos(th), -np.sin(th)])
    b = (a * nodes[:, :2]).sum(1)
    ata = a.T @ a
    if np.linalg.cond(ata) > 1e6:
        return None
    return np.linalg.solve(ata, a.T @ b)


@register("aoa_triangulation")
class AoATriangulation(Baseline):
    """Robust least squares on the bearings (>= 2 angles), else the weighted centroid.

    Bearing theta (clockwise from north, node to target). Minimizes the soft-L1 loss of the
    wrapped bearing residuals (degrees, scale ``loss_scale_deg``) in the coordinates of the
    scene given, from two starts: the linear intersection of the bearing lines
    ((cos theta, -sin theta) . p = (cos theta, -sin theta) . node) and the weighted centroid;
    clamped to that scene's extent only. Uncertainty (> 2 bearings): residual variance times
    diag((J^T J)^-1); NaN with 2. Two nearly parallel lines fall back.
    """

    any_scene = True
    needs_node_positions = True
    needs_measurement = "aoa_deg"
    config_cls = AoAConfig

    def _predict(self, x: Inputs) -> Prediction:
        ext = scene_extent(x)
        centroid, _ = _weighted_centroid(x, self.config, ext)
        pos = _clip(centroid, ext)
        sig = np.full_like(pos, np.nan)
        ok = np.isfinite(x.aoa_deg) & x.known_nodes
        fallbacks = 0
        for i in range(len(x)):
            cols = np.flatnonzero(ok[i])
            nodes, theta = x.node_pos_m[i, cols], x.aoa_deg[i, cols]
            linear = _bearing_intersection(nodes, theta) if len(cols) >= 2 else None
            if linear is None:
                fallbacks += 1
                continue
            lo, hi, cap = _box(ext[i])
            sol = _solve_robust(lambda p, n=nodes, t=theta: _bearing_residual(p, n, t), [linear, centroid[i]], lo, hi,
                                self.config.loss_scale_deg)
            pos[i] = sol.x
            if len(cols) > 2:
                sig[i] = _cov_sigma(sol.jac, float(np.sum(sol.fun**2)) / (len(cols) - 2), cap)
        return Prediction(pos, sig, {"fallbacks": fallbacks})


@dataclass(frozen=True)
class ToAConfig(WeightedCentroidConfig):
    """Robust range least squares (the centroid options give a start and the fallback).

    Parameters
    ----------
    loss_scale_m : float
        Range residual where the soft-L1 loss turns from quadratic to linear: NLoS ranges,
        longer by tens of metres, count linearly.
    device_height_m : float or None
        Height of the target in the range model; None: the median height of the training
        targets (1.5 m when they have none).
    """

    # about the line-of-sight ranging noise (10 ns = 3 m): at 10 m, NLoS excesses of 10-30 m still
    # pulled fixes quadratically (1.24x the textbook solver's median on a real held-out tile)
    loss_scale_m: float = option(3.0, lo=0, hi=1000, lo_open=True, unit="m",
                                 help="range residual where the soft-L1 loss turns linear (NLoS outliers)")
    device_height_m: float | None = option(None, lo=-100, hi=10000, unit="m",
                                           none_means="the median height of the training targets",
                                           help="height of the target in the range model")


@register("toa_multilateration")
class ToAMultilateration(Baseline):
    """Robust least squares on the ranges toa_ns * c (>= 3 ToA), else the weighted centroid.

    3-D ranges from each node's own height to the device height (``device_height_m``).
    Minimizes the soft-L1 loss (scale ``loss_scale_m``) of the range residuals in the
    coordinates of the scene given, from the nearest node (shortest range), the
    range-weighted centroid of the ToA nodes and the RSS-weighted centroid; the lowest-cost
    fix wins; clamped to that scene's extent only. Uncertainty: residual variance (m^2)
    times diag((J^T J)^-1).
    """

    any_scene = True
    needs_node_positions = True
    needs_measurement = "toa_ns"
    config_cls = ToAConfig

    def _fit(self, train: Inputs, val: Inputs | None) -> dict[str, Any]:
        return {"target_z_m": _target_height(train, self.config.device_height_m)}

    def _predict(self, x: Inputs) -> Prediction:
        z = self._state["target_z_m"]
        ext = scene_extent(x)
        centroid, _ = _weighted_centroid(x, self.config, ext)
        pos = _clip(centroid, ext)
        sig = np.full_like(pos, np.nan)
        ok = np.isfinite(x.toa_ns) & x.known_nodes
        fallbacks = 0
        for i in range(len(x)):
            cols = np.flatnonzero(ok[i])
            if len(cols) < 3:
                fallbacks += 1
                continue
            rng = x.toa_ns[i, cols] * C_M_PER_NS
            nodes = x.node_pos_m[i, cols]
            w = 1.0 / np.maximum(rng, 1.0)
            starts = [nodes[np.argmin(rng), :2], (w[:, None] * nodes[:, :2]).sum(0) / w.sum(), centroid[i]]
            lo, hi, cap = _box(ext[i])
            sol = _solve_robust(lambda p, n=nodes, r=rng: _dist3(p, n, z) - r, starts, lo, hi, self.config.loss_scale_m)
            pos[i] = sol.x
            sig[i] = _cov_sigma(sol.jac, float(np.sum(sol.fun**2)) / max(len(cols) - 2, 1), cap)
        return Prediction(pos, sig, {"fallbacks": fallbacks, "target_z_m": z})


@dataclass(frozen=True)
class TDoAConfig(ToAConfig):
    """Robust range-difference least squares from cross-correlated IQ captures.

    Parameters
    ----------
    loss_scale_m : float
        As for ToA, but 10 m: range differences from correlation peaks are coarser than ToA.
    min_quality : float
        Least normalized correlation peak of a pair (in [0, 1]); weaker pairs are left out. The
        default sits just above what noise alone reaches: the largest of ~2000 lags of two
        independent 1024-sample noise captures is about sqrt(ln 2048 / 1024) = 0.09.
    """

    min_quality: float = option(0.1, lo=0, hi=1, help="least normalized correlation peak of a receiver pair")
    # range differences from correlation peaks are coarser than ToA (9.8 m per sample at 30.72 MS/s)
    loss_scale_m: float = option(10.0, lo=0, hi=1000, lo_open=True, unit="m",
                                 help="range-difference residual where the soft-L1 loss turns linear (NLoS outliers)")


@register("tdoa_multilateration")
class TDoAMultilateration(Baseline):
    """Time differences of arrival from the IQ captures (>= 3 receivers), else the weighted centroid.

    Needs a dataset with captures (``data generate --iq``). Per sample the reference is the
    receiver whose capture is strongest; every other capture is cross-correlated with it
    (:func:`rflocal_core.iq.tdoa_s`: sub-sample peak, plus the difference of the capture
    starts on the common clock), giving range differences ``c · tdoa``. Minimizes the soft-L1
    loss (scale ``loss_scale_m``) of ``|p - n_s| - |p - n_ref| - c · tdoa_s`` in the
    coordinates of the scene given (3-D, device at ``device_height_m``), from the reference
    node, the centroid of the receivers and the RSS-weighted centroid; clamped to the scene's
    extent. Nothing is fitted but the device height. Uncertainty (> 2 differences): residual
    variance times diag((J^T J)^-1).
    """

    any_scene = True
    needs_node_positions = True
    needs_measurement = "iq_scale"
    config_cls = TDoAConfig

    def _fit(self, train: Inputs, val: Inputs | None) -> dict[str, Any]:
        return {"target_z_m": _target_height(train, self.config.device_height_m)}

    def _predict(self, x: Inputs) -> Prediction:
        z = self._state["target_z_m"]
        ext = scene_extent(x)
        centroid, _ = _weighted_centroid(x, self.config, ext)
        pos = _clip(centroid, ext)
        sig = np.full_like(pos, np.nan)
        fallbacks = 0
        for i in range(len(x)):
            pairs = _range_differences(x, i, self.config.min_quality)
            if pairs is None:
                fallbacks += 1
                continue
            ref, nodes, diff, power_db = pairs
            lo, hi, cap = _box(ext[i])

            def res(p: np.ndarray, r: np.ndarray = ref, n: np.ndarray = nodes, d: np.ndarray = diff) -> np.ndarray:
                return _dist3(p, n, z) - _dist3(p, r[None], z) - d

            sol = _hyperbola_fix(res, [ref[:2], nodes[:, :2].mean(0), centroid[i], *_corners(lo, hi)], lo, hi,
                                 self.config.loss_scale_m,
                                 misfit=lambda p, n=np.vstack([ref, nodes]), w=power_db: _power_misfit(p, n, w, z))
            pos[i] = sol.x
            if len(diff) > 2:
                sig[i] = _cov_sigma(sol.jac, float(np.sum(sol.fun**2)) / (len(diff) - 2), cap)
        return Prediction(pos, sig, {"fallbacks": fallbacks, "target_z_m": z})


def _corners(lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    """Starts on a 3 x 3 grid over the box (a far branch of a hyperbola is reached from nearby only)."""
    steps = (1 / 6, 1 / 2, 5 / 6)
    return [lo + (hi - lo) * np.array([fx, fy]) for fx in steps for fy in steps]


def _hyperbola_fix(res: Any, starts: list[np.ndarray], lo: np.ndarray, hi: np.ndarray, f_scale: float, *,
                   misfit: Any) -> Any:
    """Soft-L1 least squares from every start; of the fixes as good as the best, the one of least ``misfit``.

    Two range differences (three receivers) cross in up to two points that fit equally well:
    the received powers (:func:`_power_misfit`) tell which.
    """
    sols = []
    for x0 in starts:
        x0 = np.clip(x0, lo + 1e-6, hi - 1e-6)
        sols.append(least_squares(res, x0, bounds=(lo, hi), loss="soft_l1", f_scale=f_scale, method="trf"))
    best = min(sol.cost for sol in sols)
    good = [sol for sol in sols if sol.cost <= best + 1e-3 * f_scale**2]  # as good: within 3% of the scale
    return min(good, key=lambda sol: misfit(sol.x))


def _power_misfit(p: np.ndarray, nodes: np.ndarray, power_db: np.ndarray, z: float) -> float:
    """How badly the powers fit a log-distance law ``A - 10 n log10 d`` (n >= 0) from ``p``: residual sum of squares."""
    logd = np.log10(np.maximum(_dist3(p, nodes, z), 1.0))
    a = np.column_stack([np.ones_like(logd), -10 * logd])
    coef, *_ = np.linalg.lstsq(a, power_db, rcond=None)
    if coef[1] < 0:  # power growing with distance: fit the best flat law instead
        return float(np.sum((power_db - power_db.mean()) ** 2)) + 1e6
    return float(np.sum((a @ coef - power_db) ** 2))


def _range_differences(x: Inputs, i: int, min_quality: float) -> tuple[np.ndarray, ...] | None:
    """Sample ``i``: the reference node [3], the other nodes [K, 3], ``c · tdoa`` [K] (m) and the capture
    powers (dB) [K + 1], reference first; None below 2 pairs."""
    if x.iq is None or x.iq_scale is None or x.iq_t0_s is None:
        return None
    cols = np.flatnonzero(np.isfinite(x.iq_scale[i]) & x.known_nodes[i])
    if len(cols) < 3:
        return None
    captures = {s: iq.dequantize(x.iq[i, s], float(x.iq_scale[i, s])) for s in cols}
    ref = max(cols, key=lambda s: float(np.mean(np.abs(captures[s]) ** 2)))
    keep, diff = [], []
    for s in cols:
        if s == ref:
            continue
        tdoa, quality = iq.tdoa_s(captures[ref], captures[s], sample_rate_hz=x.iq_sample_rate_hz,
                                  start_difference_s=float(x.iq_t0_s[i, s] - x.iq_t0_s[i, ref]))
        if quality >= min_quality:
            keep.append(s)
            diff.append(tdoa * SPEED_OF_LIGHT_M_S)
    if len(keep) < 2:
        return None
    power_db = np.array([10 * np.log10(max(float(np.mean(np.abs(captures[s]) ** 2)), 1e-30)) for s in [ref, *keep]])
    return x.node_pos_m[i, ref], x.node_pos_m[i, keep], np.asarray(diff), power_db


# --------------------------------------------------------------------------- 5


#: How kNN ranks the (k, floor) candidates it tries on the validation split.
KNN_CRITERIA = ("median", "mean", "median_mean")


@dataclass(frozen=True)
class KNNConfig:
    """kNN fingerprinting.

    Parameters
    ----------
    k : int or None
        Neighbours; None chooses k on the validation split from ``k_choices`` by ``select_by``.
    k_choices : tuple of int
    floor_dbm : float or None
        Value of a missing RSS ("not heard": information, not missing at random) in a
        fingerprint; None chooses it on the validation split from ``floor_choices``.
    floor_choices : tuple of float
    metric : str
        ``"euclidean"`` or ``"manhattan"`` distance between fingerprints (dB).
    weighting : str
        ``"inverse"``: w = 1/d; ``"softmin"``: w = exp(-(d - d_nearest) / tau) with tau =
        ``softmin_scale`` x the median nearest-fingerprint distance of the training set
        (leave-one-out), so far neighbours fade smoothly instead of by 1/d.
    softmin_scale : float
    softmin_min_db : float
        Smallest softmin tau (dB), about the RSS resolution: where most fingerprints have an
        identical twin the median nearest distance is 0, and a smaller tau would average exact ties only.
    select_by : str
        Validation criterion for k and the floor: ``"median"``, ``"mean"`` or
        ``"median_mean"`` (their average; the median alone picks k = 1, whose mean error is poor).
    estimate : str
        ``"mean"``: the weighted mean of the k neighbours' positions; ``"median"``: their weighted
        geometric median, which stays with the neighbours that agree when they point to two places
        (the mean falls between them, where no training position is).
    estimate_temperature : float
        Temperature T of the answer: the estimate uses the neighbours' weights raised to 1/T
        (renormalized), while ``sigma_m`` stays the spread of the untempered weights around it. With
        many neighbours (k in the hundreds) the weights are the model's posterior over the training
        positions; T > 1 flattens it, so the geometric median hedges between the places it finds
        plausible instead of following the best one, and the spread then counts how far the other
        places lie from that answer. 1: the weights as they are.
    radio_map_m : float or None
        Bandwidth (m) of a smoothed radio map over the training positions
        (:mod:`rflocal_core.models.radiomap`): the neighbours are then the training positions of
        best score ``-d / tau + radio_map_weight x`` the fingerprint's log-likelihood on the map
        (heard RSS and not-heard nodes against the map's averages, with the nodes' path loss as
        prior). None: fingerprint distance only. Needs ``weighting="softmin"``.
    radio_map_weight : float
    radio_map_sigma_db : float
        Spread (dB) of a heard RSS around the map's mean (with ``radio_map_spread="local"``: its prior).
    radio_map_spread : str
        ``"one"``: ``radio_map_sigma_db`` everywhere; ``"local"``: the spread of the training reports
        around each position and node (kernel average of the squared deviations).
    radio_map_adaptive_k : int or None
        Adaptive map bandwidth: each position's kernel width is the distance to its k-th nearest
        training position, clipped to [``radio_map_m``, ``radio_map_max_m``], so thinly sampled
        places get a smoother map. None: ``radio_map_m`` everywhere.
    radio_map_max_m : float
        Widest kernel (m) of the adaptive bandwidth.
    radio_map_heard_prior : str
        The map's prior chance of a node being heard where it has few reports: ``"half"`` (0.5),
        ``"rate"`` (the node's share of training reports) or ``"path_loss"`` (from its censored fit).
    """

    k: int | None = option(None, lo=1, none_means="chosen on the validation split", help="neighbours")
    # checked by hand: a list of integers
    k_choices: tuple[int, ...] = option((1, 3, 5, 7, 11, 15), check=False, help="candidates for k")
    floor_dbm: float | None = option(None, lo=-300, hi=0, unit="dBm", none_means="chosen on the validation split",
                                     help="value of a missing RSS (not heard) in a fingerprint")
    floor_choices: tuple[float, ...] = option((-110.0, -120.0, -125.0, -130.0, -140.0), check=False, unit="dBm",
                                              help="candidates for the not-heard floor")
    metric: str = option("euclidean", choices=("euclidean", "manhattan"), help="fingerprint distance (dB)")
    weighting: str = option("softmin", choices=("inverse", "softmin"),
                            help="neighbour weights: 1/d, or exp(-(d - d_nearest)/tau)")
    softmin_scale: float = option(0.5, lo=0, hi=100, lo_open=True,
                                  help="softmin tau as a multiple of the median nearest-fingerprint distance")
    # Duke CBRS: most fingerprints have an identical twin (1-2 cells, 1 dB RSRP steps), the median nearest
    # distance is 0 and tau fell to 1e-3 dB (kNN averaged exact ties only); 1 dB: 131 m against 144 m (split 0)
    softmin_min_db: float = option(1.0, lo=0, hi=100, lo_open=True, unit="dB",
                                   help="smallest softmin tau (about the RSS step)")
    select_by: str = option("median_mean", choices=KNN_CRITERIA,
                            help="validation criterion for k and the floor: median, mean or their average")
    # Antwerp, k = 15, tau 2 dB: 131 m median / 295 m mean on x_test against 182 / 315 for the mean (README)
    estimate: str = option("mean", choices=("mean", "median"),
                           help="position from the neighbours: weighted mean or weighted geometric median")
    # Antwerp radio-map kNN, k = 1000 (bench/antwerp_b15, val chooses): T = 3 holds val 1σ / 2σ at 48% / 77% where
    # T = 1 (k = 30) gave 52% / 73%, for a median of 104 m against 49 m (README "Radio-map posterior")
    estimate_temperature: float = option(1.0, lo=0, hi=100, lo_open=True,
                                         help="temperature of the answer's weights (> 1: hedge between modes)")
    # Antwerp (bench/antwerp_z3, val chooses): 35 m, weight 0.5, 3 dB, k = 30: 86 m median against 131 m
    radio_map_m: float | None = option(None, lo=0, hi=10000, lo_open=True, unit="m", none_means="off",
                                       help="bandwidth of a smoothed radio map scoring the training positions")
    radio_map_weight: float = option(0.5, lo=0, hi=100, help="weight of the radio-map log-likelihood")
    radio_map_sigma_db: float = option(3.0, lo=0, hi=50, lo_open=True, unit="dB",
                                       help="spread of a heard RSS around the radio map's mean")
    # Antwerp offline (bench/antwerp_z3/hetero.py, weight 1): val 48 / 245 m against 53 / 249 m for "one"
    radio_map_spread: str = option("one", choices=("one", "local"),
                                   help="RSS spread of the radio map: one value, or local per position and node")
    radio_map_adaptive_k: int | None = option(None, lo=1, hi=10000, none_means="off",
                                              help="adaptive map bandwidth: distance to the k-th nearest training position")
    radio_map_max_m: float = option(300.0, lo=0, hi=10000, lo_open=True, unit="m",
                                    help="widest kernel of the adaptive map bandwidth")
    radio_map_heard_prior: str = option("half", choices=HEARD_PRIORS,
                                        help="the map's prior chance of a node being heard: 0.5, its rate, its path loss")

    def __post_init__(self) -> None:
        object.__setattr__(self, "k_choices", tuple(self.k_choices))
        object.__setattr__(self, "floor_choices", tuple(self.floor_choices))
        check_options(self)
        if not self.k_choices or not all(isinstance(k, int) and k >= 1 for k in self.k_choices):
            msg = f"k_choices: expected integers >= 1, got {self.k_choices!r}"
            raise InvalidInputError(msg)
        if not self.floor_choices or not all(isinstance(f, (int, float)) and -300 <= f <= 0
                                             for f in self.floor_choices):
            msg = f"floor_choices: expected numbers in [-300, 0] dBm, got {self.floor_choices!r}"
            raise InvalidInputError(msg)
        if self.radio_map_m is not None and self.weighting != "softmin":
            msg = f"weighting: the radio map (radio_map_m={self.radio_map_m}) needs 'softmin', got {self.weighting!r}"
            raise InvalidInputError(msg)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def knn_criterion(err: np.ndarray, select_by: str) -> float:
    """The validation score (m, lower is better) of errors ``err`` under ``select_by`` (see :class:`KNNConfig`)."""
    med, mean = float(np.median(err)), float(np.mean(err))
    return {"median": med, "mean": mean, "median_mean": 0.5 * (med + mean)}[select_by]


@register("knn")
class KNNFingerprint(Baseline):
    """k nearest training fingerprints over the fixed node slots, per scene.

    Missing RSS becomes the floor (``floor_dbm``, or the one chosen on val). The estimate is
    the weighted mean (or geometric median, ``estimate``) of the k neighbours' positions
    (``weighting``, tempered by ``estimate_temperature``); ``sigma_m`` is their weighted spread
    around it (NaN for k = 1; :func:`posterior_answer`). The state keeps the chosen ``k``, ``floor_dbm``,
    ``tau_db`` and the validation table ``val_table`` (one row per candidate tried).
    Needs fixed node slots (not drone surveys).
    """

    config_cls = KNNConfig
    needs_fixed_slots: ClassVar[bool] = True  # model selection (train/auto.py) skips it where slots vary
    can_refit: ClassVar[bool] = True
    # radio_map: the neighbours scored on a radio map whose kernel is the distance to the 10th nearest training
    # position (no bandwidth in metres to guess for a user's data), the answer their geometric median. On the
    # real Antwerp set it is the best single model of the workbench (README "Model selection: --model auto").
    auto_variants: ClassVar[dict[str, dict[str, Any]]] = {
        "radio_map": {"k": 30, "estimate": "median", "radio_map_m": 1.0, "radio_map_adaptive_k": 10,
                      "radio_map_max_m": 10000.0, "radio_map_spread": "local", "radio_map_weight": 1.0},
    }

    def frozen_config(self) -> dict[str, Any]:
        """The options with the k and floor chosen on val fixed (a refit on train + val then needs no val)."""
        self._require_fit()
        assert self._state is not None
        return {**self.config.to_dict(), "k": int(self._state["k"]), "floor_dbm": float(self._state["floor_dbm"])}

    def _raw(self, x: Inputs) -> np.ndarray:
        if x.fixed_slots <= 0:
            msg = f"dataset {x.dataset!r}: kNN fingerprinting needs fixed node slots (same nodes every sample); it has none"
            raise InvalidInputError(msg)
        return x.rss_dbm[:, : x.fixed_slots]

    def _features(self, x: Inputs, floor: float | None = None) -> np.ndarray:
        f = self._raw(x)
        if floor is None:  # states saved before the floor was tuned keep it in the config only
            floor = self._state.get("floor_dbm", self.config.floor_dbm)
        return np.where(np.isfinite(f), f, float(floor))

    def _fit(self, train: Inputs, val: Inputs | None) -> dict[str, Any]:
        raw = self._raw(train)
        ok = np.isfinite(train.truth_m).all(1)
        if not ok.any():
            msg = f"train: split {train.split!r} of {train.dataset!r} has no sample with a true position"
            raise InvalidInputError(msg)
        cfg = self.config
        ks = cfg.k_choices if cfg.k is None else (cfg.k,)
        floors = cfg.floor_choices if cfg.floor_dbm is None else (cfg.floor_dbm,)
        tuned = len(ks) > 1 or len(floors) > 1
        if tuned and (val is None or not np.isfinite(val.truth_m).all(1).any()):
            msg = "val: KNNConfig.k or floor_dbm is None, so they are chosen on a validation split with true positions; pass val"
            raise InvalidInputError(msg)
        table = []
        best: dict[str, Any] | None = None
        maps = self._radio_maps(train, raw, ok)  # independent of the floor: fitted once
        for floor in floors:
            state = self._fingerprint_state(train, raw, ok, float(floor), ks[0], maps)
            if not tuned:
                return state
            self._state = state
            vok = np.isfinite(val.truth_m).all(1)
            for k, pred in self._predict_ks(val, ks):
                err = errors_m(pred, val)[vok]
                score = knn_criterion(err, cfg.select_by)
                table.append({"k": int(k), "floor_dbm": float(floor), "median_m": float(np.median(err)),
                              "mean_m": float(np.mean(err)), "score_m": score})
                if best is None or (score, k) < (best["score"], best["k"]):
                    best = {"score": score, "k": int(k), "state": state}
        assert best is not None
        state = dict(best["state"], k=best["k"], val_table=table)
        # the k column for the chosen floor, as before (older readers show it)
        state["val_median_m"] = {str(r["k"]): r["median_m"] for r in table if r["floor_dbm"] == state["floor_dbm"]}
        return state

    def _radio_maps(self, train: Inputs, raw: np.ndarray, ok: np.ndarray) -> dict[str, dict[str, Any]]:
        """Per scene the radio map of :mod:`~rflocal_core.models.radiomap` (empty when ``radio_map_m`` is None)."""
        if self.config.radio_map_m is None:
            return {}
        maps = {}
        for i, scene in enumerate(train.scenes):
            rows = ok & (train.scene_idx == i)
            if rows.any():
                node_xy = train.node_pos_m[rows, : raw.shape[1], :2]
                known = np.isfinite(node_xy).all(-1)
                first = np.argmax(known, axis=0)  # fixed slots: a node's position is the same in every sample
                xy = np.where(known.any(0)[:, None], node_xy[first, np.arange(raw.shape[1])], np.nan)
                c = self.config
                maps[scene] = fit_radio_map(train.truth_m[rows], raw[rows], xy, bandwidth_m=c.radio_map_m,
                                            sigma_db=c.radio_map_sigma_db, adaptive_k=c.radio_map_adaptive_k,
                                            max_bandwidth_m=c.radio_map_max_m, heard_prior_kind=c.radio_map_heard_prior)
        return maps

    def _fingerprint_state(self, train: Inputs, raw: np.ndarray, ok: np.ndarray, floor: float,
                           k: int, maps: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """Fingerprints per scene at ``floor`` (with their radio map of ``maps``) and the softmin bandwidth
        (median leave-one-out nearest distance)."""
        feats = np.where(np.isfinite(raw), raw, floor)
        db: dict[str, Any] = {}
        nearest = []
        for i, scene in enumerate(train.scenes):
            rows = ok & (train.scene_idx == i)
            if rows.any():
                ref = feats[rows].astype(np.float32)
                db[scene] = {"rss_dbm": ref, "pos_m": train.truth_m[rows].astype(np.float64)}
                if maps and scene in maps:
                    keys = ("p_heard", "mean_dbm") + (("spread_db",) if self.config.radio_map_spread == "local" else ())
                    db[scene].update({k: maps[scene][k] for k in keys})
                probe = ref[:: max(1, len(ref) // 1000)].astype(np.float64)  # at most ~1000 rows: cheap
                if len(ref) > 1:
                    d = _fingerprint_distance(probe, ref.astype(np.float64), self.config.metric)
                    nearest.append(np.sort(d, axis=1)[:, 1])  # column 0 is the probe itself
        tau = float(np.median(np.concatenate(nearest))) if nearest else 1.0
        return {"fingerprints": db, "k": int(k), "floor_dbm": floor,
                "tau_db": max(tau * self.config.softmin_scale, self.config.softmin_min_db), "val_median_m": {},
                "val_table": []}

    def _weighting(self) -> tuple[str, float]:
        """(weighting, tau_db); states saved before softmin weights (no ``tau_db``) keep 1/d."""
        if "tau_db" not in self._state:
            return "inverse", 1.0
        return self.config.weighting, float(self._state["tau_db"])

    def _predict(self, x: Inputs) -> Prediction:
        ((_, pred),) = self._predict_ks(x, (int(self._state["k"]),))
        return pred

    def _predict_ks(self, x: Inputs, ks: tuple[int, ...]) -> list[tuple[int, Prediction]]:
        """One prediction of ``x`` per k of ``ks`` (the distances are computed once)."""
        feats = self._features(x).astype(np.float64)
        raw = self._raw(x)
        pos = np.full((len(ks), len(x), 2), np.nan)
        sig = np.full((len(ks), len(x), 2), np.nan)
        for i, scene in enumerate(x.scenes):
            rows = np.flatnonzero(x.scene_idx == i)
            if len(rows) == 0:
                continue
            ref, ref_pos = self._fingerprints(scene, feats.shape[1])
            for start in range(0, len(rows), 1024):
                r = rows[start:start + 1024]
                d = self._map_score(_fingerprint_distance(feats[r], ref, self.config.metric), raw[r], scene)
                for j, k in enumerate(ks):
                    nn, w = _neighbour_weights(d, min(int(k), len(ref)), *self._weighting())
                    pos[j, r], sig[j, r] = posterior_answer(ref_pos[nn], w, estimate=self.config.estimate,
                                                            temperature=self.config.estimate_temperature)
        return [(int(k), Prediction(pos[j], sig[j], {"k": int(k)})) for j, k in enumerate(ks)]

    def _map_score(self, d: np.ndarray, raw: np.ndarray, scene: str) -> np.ndarray:
        """The distances ``d`` [N, M] (dB) less tau x ``radio_map_weight`` x the radio-map log-likelihood of
        the fingerprints ``raw`` [N, S] at the M training positions (``d`` as it is without a map), so the
        softmin weights become exp(-d / tau + weight x log-likelihood) up to a constant per row."""
        db = self._state["fingerprints"][scene]
        if "p_heard" not in db:
            return d
        sigma = np.asarray(db["spread_db"]) if "spread_db" in db else self.config.radio_map_sigma_db
        ll = radio_map_loglik(raw, np.asarray(db["p_heard"]), np.asarray(db["mean_dbm"]), sigma)
        ll -= ll.max(1, keepdims=True)  # 0 at the best position: the score stays near the dB scale
        return d - float(self._state["tau_db"]) * self.config.radio_map_weight * ll

    def _fingerprints(self, scene: str, slots: int) -> tuple[np.ndarray, np.ndarray]:
        """The training fingerprints [M, slots] (dB) of ``scene`` and their positions [M, 2]."""
        db = self._state["fingerprints"]
        if scene not in db:
            msg = f"x: scene {scene!r} has no training fingerprints (trained scenes: {sorted(db)})"
            raise InvalidInputError(msg)
        ref = np.asarray(db[scene]["rss_dbm"], dtype=np.float64)
        if ref.shape[1] != slots:
            msg = f"x: {slots} fingerprint slots, but the model was trained on {ref.shape[1]}"
            raise InvalidInputError(msg)
        return ref, np.asarray(db[scene]["pos_m"], dtype=np.float64)

    def neighbours(self, x: Inputs, *, exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The k neighbours of every sample of ``x``: positions [N, k, 2], weights [N, k] and distances [N, k] (dB).

        ``exclude_self``: ``x`` is the training split itself and each sample's own fingerprint
        (distance 0 at its own row) is left out: out-of-fold neighbours for stacking. The radio map
        (``radio_map_m``) is not refitted without the sample: its own report stays in the map's kernel
        averages (one report of many at 35 m on Antwerp). Samples of scenes with fewer than k + 1
        fingerprints get NaN.
        """
        _check_inputs(x, "x")
        self._require_fit()
        feats, raw = self._features(x).astype(np.float64), self._raw(x)
        k = int(self._state["k"])
        out_pos, out_w, out_d = np.full((len(x), k, 2), np.nan), np.full((len(x), k), np.nan), np.full((len(x), k), np.nan)
        for i, scene in enumerate(x.scenes):
            rows = np.flatnonzero(x.scene_idx == i)
            ref, ref_pos = self._fingerprints(scene, feats.shape[1]) if len(rows) else (None, None)
            if ref is None or len(ref) < k + int(exclude_self):
                continue
            for start in range(0, len(rows), 1024):
                r = rows[start:start + 1024]
                d = _fingerprint_distance(feats[r], ref, self.config.metric)
                if exclude_self:  # the sample's own row: the nearest at distance 0 (its position equal too)
                    d[np.arange(len(r)), np.argmin(d, axis=1)] = np.inf
                d = self._map_score(d, raw[r], scene)
                nn, w = _neighbour_weights(d, k, *self._weighting())
                out_pos[r], out_w[r], out_d[r] = ref_pos[nn], w, np.take_along_axis(d, nn, 1)
        return out_pos, out_w, out_d

    def posterior(self, x: Inputs, i: int) -> tuple[np.ndarray, Grid]:
        """The weights of sample ``i``'s k neighbours spread over a grid [ny, nx] (sums to 1), and the grid.

        Each neighbour's weight (as in the estimate) is spread as a Gaussian whose width is the
        typical spacing of the training positions (at least one cell), so the map shows where
        the fingerprints point and how they disagree; its mean is the estimate. The grid covers the training positions of the scene with a margin of three
        spacings, at most 200 cells a side.
        """
        _check_inputs(x, "x")
        self._require_fit()
        if not (isinstance(i, (int, np.integer)) and 0 <= i < len(x)):
            msg = f"i: expected a sample index in [0, {len(x)}), got {i!r}"
            raise InvalidInputError(msg)
        feats = self._features(x).astype(np.float64)
        ref, ref_pos = self._fingerprints(x.scenes[int(x.scene_idx[i])], feats.shape[1])
        d = _fingerprint_distance(feats[i:i + 1], ref, self.config.metric)
        d = self._map_score(d, self._raw(x)[i:i + 1], x.scenes[int(x.scene_idx[i])])
        nn, w = _neighbour_weights(d, min(int(self._state["k"]), len(ref)), *self._weighting())
        lo, hi = ref_pos.min(0), ref_pos.max(0)
        spacing = math.sqrt(max(float(np.prod(hi - lo)), 1.0) / len(ref_pos))
        lo, hi = lo - 3 * spacing, hi + 3 * spacing  # room for the Gaussians of neighbours at the edge
        cell = max(float((hi - lo).max()) / 200.0, 1.0)
        width = max(spacing, cell)
        n = np.floor((hi - lo) / cell).astype(int) + 1
        grid = Grid(float(lo[0]), float(lo[1]), cell, int(n[0]), int(n[1]))
        heat = np.zeros((grid.ny, grid.nx))
        for (px, py), weight in zip(ref_pos[nn[0]], w[0]):
            gx = np.exp(-0.5 * ((grid.x_m - px) / width) ** 2)
            gy = np.exp(-0.5 * ((grid.y_m - py) / width) ** 2)
            heat += weight * np.outer(gy, gx) / max(gx.sum() * gy.sum(), 1e-300)
        return heat / heat.sum(), grid


def _fingerprint_distance(q: np.ndarray, ref: np.ndarray, metric: str) -> np.ndarray:
    """Distances [N, M] (dB) between the fingerprints ``q`` [N, S] and ``ref`` [M, S]."""
    if metric == "manhattan":
        out = np.empty((len(q), len(ref)))
        for s in range(0, len(q), 64):  # [64, M, S] at a time: bounded memory
            out[s:s + 64] = np.abs(q[s:s + 64, None, :] - ref[None]).sum(-1)
        return out
    d2 = (q**2).sum(1)[:, None] + (ref**2).sum(1)[None] - 2 * q @ ref.T
    return np.sqrt(np.maximum(d2, 0.0))


#: Weiszfeld iterations of :func:`weighted_geometric_median`.
GEOMEDIAN_ITERATIONS = 30


def weighted_geometric_median(pts: np.ndarray, w: np.ndarray, *, start: np.ndarray | None = None) -> np.ndarray:
    """Weighted geometric median [N, 2] of the points ``pts`` [N, K, 2] with weights ``w`` [N, K] (Weiszfeld).

    ``start`` [N, 2]: the first iterate (default: the weighted mean).
    """
    est = (w[..., None] * pts).sum(1) / w.sum(1)[:, None] if start is None else start
    for _ in range(GEOMEDIAN_ITERATIONS):
        d = np.hypot(pts[..., 0] - est[:, None, 0], pts[..., 1] - est[:, None, 1])
        inv = w / np.maximum(d, 1e-3)  # a point at the estimate: a large finite weight, not a division by 0
        est = (inv[..., None] * pts).sum(1) / inv.sum(1)[:, None]
    return est


def posterior_answer(pts: np.ndarray, w: np.ndarray, *, estimate: str = "median",
                     temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The answer [N, 2] and its per-axis 1-sigma [N, 2] from candidates ``pts`` [N, K, 2] of weights ``w`` [N, K].

    Parameters
    ----------
    pts, w
        Candidate positions (m) and their weights (each row sums to 1): a discrete posterior.
    estimate : str
        ``"mean"``: the weighted mean; ``"median"``: the weighted geometric median (the point of least
        expected distance to the candidates, so of least expected error if the posterior is right).
    temperature : float
        The answer uses ``w ** (1 / temperature)``, renormalized: above 1 it hedges between the modes
        of the posterior (the geometric median leaves a mode that holds less than half of the weight).

    Returns
    -------
    position, sigma
        ``sigma`` is the RMS distance per axis of the candidates around the answer under the
        untempered ``w`` (a posterior with two distant modes gives a large sigma); NaN for K = 1.
    """
    if not temperature > 0:
        msg = f"temperature: expected a number > 0, got {temperature!r}"
        raise InvalidInputError(msg)
    if estimate not in ("mean", "median"):
        msg = f"estimate: expected one of mean, median, got {estimate!r}"
        raise InvalidInputError(msg)
    wt = w
    if temperature != 1.0:
        wt = np.power(w, 1.0 / temperature)
        wt = wt / wt.sum(1, keepdims=True)
    p = (wt[..., None] * pts).sum(1)
    if pts.shape[1] <= 1:
        return p, np.full(p.shape, np.nan)
    if estimate == "median":
        p = weighted_geometric_median(pts, wt, start=p)
    return p, np.sqrt((w[..., None] * (pts - p[:, None]) ** 2).sum(1))


#: Relative tolerance within which two fingerprint distances are a tie (:func:`nearest_columns`): above the
#: rounding of the distance's expansion, far below a 0.1 dB step of the fingerprints.
TIE_TOLERANCE = 1e-9
#: Seed of the fixed order in which tied columns are taken (:func:`tie_order`).
TIE_SEED = 0


def tie_order(m: int) -> np.ndarray:
    """The order [m] in which tied columns of ``m`` are taken, first first: a fixed shuffle (PCG64, :data:`TIE_SEED`),
    the same on every machine. Not the lowest index: a training set in recording order (a drive, a walk) would then
    hand every tie to the positions recorded first (Duke CBRS, where most fingerprints have identical twins: kNN
    141 m median on split 0 with lowest-index ties, 132 m with these)."""
    return np.random.default_rng(TIE_SEED).permutation(m)


def nearest_columns(d: np.ndarray, k: int) -> np.ndarray:
    """Column indices [N, k] of the ``k`` smallest entries of each row of ``d`` [N, M] (k < M), ties to the k-th
    smallest taken in the fixed order of :func:`tie_order`, returned in increasing column order."""
    kth = np.partition(d, k - 1, axis=1)[:, k - 1:k]
    tol = TIE_TOLERANCE * np.maximum(np.abs(kth), 1.0)
    less = d < kth - tol
    tied = ~less & (d <= kth + tol)
    room = k - less.sum(1, keepdims=True)  # >= 1: the k-th smallest itself is tied
    extra = np.flatnonzero(tied.sum(1) > room[:, 0])  # rows with more ties than room: those choose
    if len(extra):
        order = tie_order(d.shape[1])
        ranked = np.ascontiguousarray(tied[extra][:, order])  # C order: the row-wise cumsum stays fast
        ranked &= np.cumsum(ranked, axis=1) <= room[extra]
        taken = np.zeros_like(ranked)
        taken[:, order] = ranked
        tied[extra] = taken
    chosen = less | tied
    return np.nonzero(chosen)[1].reshape(len(d), k)


def _neighbour_weights(d: np.ndarray, k: int, weighting: str, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest columns of the distances ``d`` [N, M] per row and their weights, each [N, k] (weights sum to 1).

    Columns tied with the k-th distance (within :data:`TIE_TOLERANCE`, relative) are taken in a fixed order
    (:func:`tie_order`), so the answer does not depend on the machine: quantized fingerprints tie often (62 of the
    demo's 800 test rows at the k-th neighbour) and ``argpartition`` breaks ties by its CPU-dispatched algorithm and
    the distances' rounding.
    """
    nn = nearest_columns(d, k) if k < d.shape[1] else np.tile(np.arange(d.shape[1]), (len(d), 1))
    dk = np.take_along_axis(d, nn, 1)
    if weighting == "softmin":
        w = np.exp(-(dk - dk.min(1, keepdims=True)) / tau)
    else:
        w = 1.0 / (dk + 1e-6)
    return nn, w / w.sum(1, keepdims=True)


# --------------------------------------------------------------------------- 6


@dataclass(frozen=True)
class MapMatchingConfig:
    """Maximum-likelihood matching against the ray-traced path-gain maps.

    Parameters
    ----------
    sigma_db : float or None
        Shadowing std of the likelihood; None: the dataset's ``shadowing_sigma_db``
        (plus quantization variance q^2/12), at least ``min_sigma_db``.
    min_sigma_db : float
        Floor of sigma (map and model error: > 0 even for noise-free data).
    censoring : bool
        Score unreported sites by P(RSS < sensitivity) (see :class:`MapMatching`).
    no_signal_sigmas : float
        A report from a site with no ray at a cell scores like a residual of this many sigmas.
    batch_size : int
        Samples per vectorized batch.
    """

    sigma_db: float | None = option(None, lo=0, hi=50, lo_open=True, unit="dB",
                                    none_means="the dataset's shadowing sigma", help="shadowing std of the likelihood")
    min_sigma_db: float = option(1.0, lo=0, hi=50, lo_open=True, unit="dB", help="floor of sigma")
    censoring: bool = option(True, help="score unreported sites by P(RSS < sensitivity)")
    no_signal_sigmas: float = option(4.0, lo=0, hi=100,
                                     help="a report from a site with no ray scores like a residual of this many sigmas")
    batch_size: int = option(32, lo=1, hi=4096, help="samples per vectorized batch")

    def __post_init__(self) -> None:
        check_options(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@register("map_matching")
class MapMatching(Baseline):
    """Grid posterior from the radio maps of the sample's scene (outdoor cells only).

    Log-likelihood of a cell c with predicted RSS mu_j(c) = P_j + pg_j(c):

    - reported site j: -(rss_j - mu_j)^2 / (2 sigma^2); if site j has no ray at c,
      -no_signal_sigmas^2 / 2 (a report there is implausible, not impossible);
    - unreported site j (``censoring``, only when fewer than ``top_k`` reports, else the
      site may have been dropped by top-K): log P(rss < sensitivity) =
      log Phi((sensitivity - mu_j) / sigma); no-ray cells contribute 0 (surely unheard).

    P_j is the site's power in ue mode; in emitter mode (unknown power) the common offset
    P is profiled out per cell in closed form as the mean residual over the reported sites
    with a ray. Flat prior over outdoor cells; the estimate is the posterior mean, sigma the
    posterior std per axis; ``info["map_cell_m"]`` is the MAP cell centre. The maps come with
    the inputs (not the state): predict needs a dataset with ``scenes/``.
    """

    needs_maps = True
    config_cls = MapMatchingConfig

    def _fit(self, train: Inputs, val: Inputs | None) -> dict[str, Any]:
        _need_maps(train, "train")
        if self.config.sigma_db is not None:
            sigma = float(self.config.sigma_db)
        else:
            s0 = train.shadowing_sigma_db if np.isfinite(train.shadowing_sigma_db) else 6.0
            noise = train.rss_noise_db if np.isfinite(train.rss_noise_db) else 0.0
            sigma = float(np.sqrt(s0**2 + noise**2 + train.rss_quantization_db**2 / 12))
        sigma = max(sigma, float(self.config.min_sigma_db))
        sens = train.sensitivity_dbm if np.isfinite(train.sensitivity_dbm) else -120.0
        return {"sigma_db": sigma, "sensitivity_dbm": float(sens), "top_k": int(train.top_k)}

    def _loglik(self, x: Inputs, rows: np.ndarray, maps: SceneMaps, cells: np.ndarray) -> np.ndarray:
        """Log-likelihood [B, C] of samples ``rows`` over flat outdoor ``cells``."""
        st = self._state
        sigma, sens, top_k = st["sigma_db"], st["sensitivity_dbm"], st["top_k"]
        pg = maps.path_gain_db.reshape(len(maps.path_gain_db), -1)[:, cells].astype(np.float32)  # [M, C]
        has_ray = np.isfinite(pg)
        pg0 = np.where(has_ray, pg, np.float32(0.0))
        rss = x.rss_dbm[rows]
        site = x.slot_site[rows]
        usable = site >= 0
        reported = np.isfinite(rss) & usable
        tx = np.where(usable, maps.tx_power_dbm[np.maximum(site, 0)], np.nan)
        joint = ~np.isfinite(np.where(reported, tx, 0.0)).all(1)  # [B] power unknown
        b, c = len(rows), pg.shape[1]
        # per-sample, per-cell power P (only used where joint)
        if joint.any():
            num = np.zeros((b, c), np.float32)
            cnt = np.zeros((b, c), np.float32)
            for s in range(rss.shape[1]):
                rep = reported[:, s]
                if not rep.any():
                    continue
                m = np.maximum(site[:, s], 0)
                ray = has_ray[m] & rep[:, None]
                num += np.where(ray, (np.nan_to_num(rss[:, s])[:, None] - pg0[m]), 0.0)
                cnt += ray
            power = num / np.maximum(cnt, 1)
        else:
            power = np.zeros((b, c), np.float32)
        ll = np.zeros((b, c), np.float32)
        inv2 = np.float32(0.5 / sigma**2)
        penalty = np.float32(0.5 * self.config.no_signal_sigmas**2)
        n_rep = reported.sum(1)
        censor = self.config.censoring & ((top_k == 0) | (n_rep < top_k))
        for s in range(rss.shape[1]):
            m = np.maximum(site[:, s], 0)
            p_s = np.where(joint[:, None], power, np.nan_to_num(tx[:, s])[:, None]).astype(np.float32)
            mu = p_s + pg0[m]
            ray = has_ray[m]
            rep = reported[:, s]
            if rep.any():
                r = np.nan_to_num(rss[:, s])[:, None] - mu
                term = np.where(ray, -inv2 * r * r, -penalty)
                ll += np.where(rep[:, None], term, 0.0)
            unrep = usable[:, s] & ~rep & censor
            if unrep.any():
                z = np.where(ray & unrep[:, None], (sens - mu) / sigma, np.float32(50.0))
                ll += log_ndtr(z).astype(np.float32)
        return ll

    def _scene_cells(self, maps: SceneMaps) -> tuple[np.ndarray, np.ndarray]:
        cells = np.flatnonzero(maps.outdoor.ravel())
        if len(cells) == 0:
            msg = f"maps: scene {maps.name!r} has no outdoor cell"
            raise InvalidInputError(msg)
        iy, ix = np.unravel_index(cells, maps.outdoor.shape)
        return cells, np.column_stack([maps.grid.x_m[ix], maps.grid.y_m[iy]])

    def _predict(self, x: Inputs) -> Prediction:
        _need_maps(x, "x")
        assert x.maps is not None
        pos = np.full((len(x), 2), np.nan)
        sig = np.full((len(x), 2), np.nan)
        map_cell = np.full((len(x), 2), np.nan)
        for i, scene in enumerate(x.scenes):
            rows_all = np.flatnonzero(x.scene_idx == i)
            if len(rows_all) == 0:
                continue
            maps = x.maps[scene]
            cells, xy = self._scene_cells(maps)
            for start in range(0, len(rows_all), self.config.batch_size):
                rows = rows_all[start:start + self.config.batch_size]
                ll = self._loglik(x, rows, maps, cells)
                best = np.argmax(ll, axis=1)
                p = np.exp(ll - ll[np.arange(len(rows)), best][:, None])
                p /= p.sum(1, keepdims=True)
                mean = p @ xy
                var = p @ (xy**2) - mean**2
                pos[rows] = mean
                sig[rows] = np.sqrt(np.maximum(var, 0.0))
                map_cell[rows] = xy[best]
        return Prediction(pos, sig, {"map_cell_m": map_cell, "sigma_db": self._state["sigma_db"]})

    def posterior(self, x: Inputs, i: int) -> tuple[np.ndarray, Grid]:
        """Posterior of sample ``i`` of ``x`` as a heatmap [ny, nx] (sums to 1; 0 indoors) and its grid."""
        _check_inputs(x, "x")
        self._require_fit()
        _need_maps(x, "x")
        assert x.maps is not None
        if not (isinstance(i, (int, np.integer)) and 0 <= i < len(x)):
            msg = f"i: expected a sample index in [0, {len(x)}), got {i!r}"
            raise InvalidInputError(msg)
        maps = x.maps[x.scenes[int(x.scene_idx[i])]]
        cells, _ = self._scene_cells(maps)
        ll = self._loglik(x, np.array([i]), maps, cells)[0]
        p = np.exp(ll - ll.max())
        heat = np.zeros(maps.outdoor.size)
        heat[cells] = p / p.sum()
        return heat.reshape(maps.outdoor.shape), maps.grid


def _need_maps(x: Inputs, what: str) -> None:
    if not x.maps:
        msg = (f"{what}: dataset {x.dataset!r} has no radio maps (imported measurements, or loaded with "
               "with_maps=False); map matching needs a generated dataset with scenes/")
        raise InvalidInputError(msg)
    missing = [s for i, s in enumerate(x.scenes) if (x.scene_idx == i).any() and s not in x.maps]
    if missing:
        msg = f"{what}: no radio maps for scenes {missing}"
        raise InvalidInputError(msg)
