"""``ensemble``: several fingerprint models fitted together, their positions combined with weights chosen on val.

A baseline (``kind = "baseline"``: one run, fitted in one step) that fits each of its members on
the same train/val splits and keeps them all in its state::

    model = Ensemble({"members": "knn,nn1=knn,knn_lgbm,fpnet_knn", "member_set": "nn1:k=1",
                      "max_minutes": 6}).fit(train, val)
    pred = model.predict(test)     # position_m [N, 2], sigma_m [N, 2]; info["weights"]

Members are registered models by name (not ``ensemble``): baselines are fitted as such; networks
are trained by the workbench's epoch loop (:func:`rflocal_core.train.engine.fit_network`, best
epoch on val kept) in a scratch folder, with ``max_minutes`` shared equally between them, and
their weights travel in the ensemble's state, so the run predicts alone (``predict``, Live
Inference, Metrics).

Combination: the weights are the point of a simplex grid (step ``weight_step``) that scores best
on the validation split by ``select_by``; the position is their weighted mean (``combine="mean"``)
or weighted geometric median (``"median"``: robust to one member's outlier). The members tuned
on the same val split (early stopping, kNN's k and floor), so the val score is optimistic for
all of them alike. Sigma per axis: the square root of the weighted spread of the members'
positions plus the weighted mean of their own variances (a mixture's variance), where members
give one; the run's sigma scale is then fitted on val as for any run. With ``sigma_member`` the σ is that
member's own instead (the answer unchanged): on Duke CBRS's area splits (brief B25) the members' spread is
relatively narrower in an unseen area than in the held-out squares of ``--calibration blocks``, while kNN's
neighbour spread keeps its level (``sigma_member=knn`` with blocks and the default radii: 4 of 6 test splits x
deals of squares in the σ band, against 2 of 6 with the spread; README "Duke, 2026-12-05").

Hedged answer (``posterior_member``, issue 15): a ``knn`` member joins the geometric median with its
posterior over its ``posterior_k`` best training positions (softmin weights ** 1 / ``posterior_temperature``,
with the member's weight in all) instead of its one answer, so the answer hedges between the places that
member finds plausible; with ``sigma_mass`` the σ is the radius around that answer holding that share of the
member's (untempered) posterior, over 2. On Antwerp (brief B16, T 2 and 0.8 chosen on val) this brings the
best ensemble's 1σ / 2σ shares on test from 50% / 73% to 42% / 78% (the goal band: 29–49% / >= 76.5%), at 117 m
median instead of 101 m and the same mean (236 m; one bench_real run, README "A hedged ensemble answer").
With ``hedge="search"`` the model chooses T and the mass itself on val when it fits (the rule in
:class:`EnsembleConfig`; in a new Antwerp run it chose T 2 / 0.8: 119 m / 236 m, 42% / 79% on test; README
"Stacking on folds of x_val").
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rflocal_core.errors import InvalidInputError
from rflocal_core.metrics.stats import EXPECTED_1SIGMA, EXPECTED_2SIGMA
from rflocal_core.models.baselines import (
    KNN_CRITERIA,
    Baseline,
    KNNFingerprint,
    knn_criterion,
    weighted_geometric_median,
)
from rflocal_core.models.inputs import Inputs, Prediction, errors_m
from rflocal_core.models.registry import BASELINES, NETWORKS, model_config, register
from rflocal_core.options import check_options, option, parse_assignments

#: Most members (the weight grid grows as step^-(members - 1)).
MAX_MEMBERS = 6
#: TrainConfig options of a network member that the ensemble sets itself (``member_train`` cannot).
ENSEMBLE_TRAIN_KEYS = ("epochs", "max_minutes", "refit", "refit_steps_scale", "search_trials", "search_minutes",
                       "data_loading", "memory_budget_mb", "calibration", "calibration_block_m", "calibration_folds",
                       "sigma_radii")
#: Weiszfeld iterations of the weighted geometric median.
MEDIAN_ITERATIONS = 30
#: Smallest credible radius (m) of ``sigma_mass``: a posterior on one position would give 0.
RADIUS_FLOOR_M = 1.0
#: Samples hedged at a time (the posterior is [rows, posterior_k, 2]: bounded memory).
HEDGE_ROWS = 1024
#: ``hedge="search"``: the temperatures and credible masses tried on val (B16's study: T 2-3 and 0.7-0.8 won).
HEDGE_TEMPERATURES = (1.0, 2.0, 3.0, 4.0)
HEDGE_MASSES = (0.6, 0.7, 0.8, 0.9)
#: ``hedge="search"``: a candidate qualifies if its val 1σ and 2σ shares (after the run's kind of σ map) are
#: both within this of 39.3% / 86.5% (half the goal's 10 points: val is a few hundred samples).
HEDGE_GAP = 0.05


@dataclass(frozen=True)
class EnsembleConfig:
    """``ensemble`` options (see the module docstring).

    Parameters
    ----------
    members : str
        Comma-separated registered models (2 to :data:`MAX_MEMBERS`, no ``ensemble``); ``ALIAS=MODEL``
        names a member, so one model can join twice with other options (``"knn,nn1=knn"``).
    member_set : str
        Options of the members by name, ``NAME:KEY=VALUE`` separated by ``;`` (as ``train --set``),
        e.g. ``"fpnet:rss_offset_db=0;nn1:k=1"``.
    member_train : str
        Training options of the network members by name, ``NAME:KEY=VALUE`` separated by ``;``: the
        :class:`~rflocal_core.train.engine.TrainConfig` options but those the ensemble sets itself
        (:data:`ENSEMBLE_TRAIN_KEYS`), e.g. ``"fpnet_knn:lr=0.0009;fpnet_knn:batch_size=256;fpnet_knn:select_on=mean"``
        (what a network's search chose, ``train --search-trials``). Kept through the refit.
    combine : str
        ``"mean"``: weighted mean of the members' positions; ``"median"``: weighted geometric median.
    weight_step : float
        Step of the simplex grid of weights searched on val.
    select_by : str
        Validation criterion of the weights: ``"median"``, ``"mean"`` or ``"median_mean"``.
    max_minutes : float
        Training budget of the network members together (shared equally).
    epochs : int
        Most epochs of each network member.
    seed : int
        Seed of the network members (plus the member's place in ``members``).
    snap_k : int
        After combining, move the estimate to the mean of the ``snap_k`` training positions nearest
        to it (0: off): the targets were where the training data was taken (roads, walks), so an
        estimate between them is pulled back (Antwerp: 152 -> 145 m median at 10, mean unchanged).
    weight_bags : int
        0: the weights of best validation score. B > 0: the mean of the best weights on B bootstrap
        resamples of val (seeded), which overfit a small val split less (bagging).
    posterior_member : str
        ``""``: off. The name of a ``knn`` member whose posterior over its ``posterior_k`` best training
        positions joins the combination in place of its answer (the module docstring: hedged answer).
    posterior_k : int
        Candidates of that posterior (at most the training positions of the scene).
    posterior_temperature : float
        The candidates' weights are raised to 1 / T (renormalized) for the answer: above 1 the answer hedges more.
    sigma_mass : float
        0: σ is the spread of the members and the posterior around the answer. In (0, 1]: σ per axis is the
        radius around the answer holding this share of the member's untempered posterior, over 2.
    hedge : str
        ``"fixed"``: ``posterior_temperature`` and ``sigma_mass`` as set. ``"search"``: chosen when the model fits,
        on val, among :data:`HEDGE_TEMPERATURES` x :data:`HEDGE_MASSES`: the candidates whose val 1σ / 2σ shares
        (after a σ map fitted on val, as the run's) are within :data:`HEDGE_GAP` of 39.3% / 86.5% and whose val
        median is at most ``hedge_median_m``, then the least val mean (none qualifies: the least coverage gap).
        The choice and every candidate's val figures are kept in the state (``hedge``).
    hedge_median_m : float
        ``hedge="search"``: the largest val median of a candidate (0: no bound).
    refit_networks : bool
        :meth:`Ensemble.refit` (``train --refit``) trains the network members again too: a new network each (its
        seed, options and feature frame) on train + val without val for the steps to its val-chosen epoch x
        (train + val) / train, on its cosine schedule stretched to end where that epoch stood
        (:func:`rflocal_core.train.engine.fit_fixed`; as long again as their training). False: they keep the fit
        on train.
    """

    # baselines only by default (minutes at most; Antwerp: 162 m median / 267 m mean, against knn_lgbm's
    # 171 / 279); add fpnet_knn and fpnet with a max_minutes budget for the best on real data (README)
    members: str = option("knn,nn1=knn,lgbm,knn_lgbm",
                          help="comma-separated models combined (2-6, fitted on the same splits; ALIAS=MODEL)")
    member_set: str = option("nn1:k=1", help="member options: NAME:KEY=VALUE separated by ';'")
    member_train: str = option("", help="network members' training options (lr, batch_size, weight_decay, select_on, "
                                        "...): NAME:KEY=VALUE separated by ';'")
    # the geometric median follows the members that agree (Antwerp: 167 m median against 175 m for the mean)
    combine: str = option("median", choices=("mean", "median"), help="weighted mean or weighted geometric median")
    weight_step: float = option(0.1, lo=0.01, hi=1.0, help="step of the weight grid searched on val")
    select_by: str = option("median_mean", choices=KNN_CRITERIA, help="validation criterion of the weights")
    max_minutes: float = option(10.0, lo=0.01, hi=60 * 24 * 30, unit="min",
                                help="training budget of the network members together")
    epochs: int = option(200, lo=1, hi=100_000, help="most epochs of each network member")
    seed: int = option(0, lo=0, hi=2**31 - 1, help="seed of the network members")
    snap_k: int = option(0, lo=0, hi=1000, help="pull the estimate to the mean of its k nearest training positions "
                         "(0: off)")
    # Antwerp (831 val messages), select_by=mean: 100 bags 147 / 257 m against 153 / 257 m for one choice (README)
    weight_bags: int = option(0, lo=0, hi=10_000, help="average the best weights over this many bootstrap "
                              "resamples of val (0: one choice)")
    # Antwerp (brief B16, val chooses): kmap, k 1000, T 2, sigma_mass 0.8 -> test 42% / 79% inside 1σ / 2σ
    posterior_member: str = option("", help="a knn member whose posterior over its posterior_k best positions "
                                   "joins the combination instead of its answer ('': off)")
    posterior_k: int = option(1000, lo=2, hi=1_000_000, help="candidates of that member's posterior")
    posterior_temperature: float = option(2.0, lo=0.0, lo_open=True, hi=100.0,
                                          help="the posterior's weights ** (1 / T) for the answer (T > 1 hedges)")
    sigma_mass: float = option(0.0, lo=0.0, hi=1.0, help="σ: the radius around the answer holding this share of "
                               "the posterior member's weights, over 2 (0: the spread around the answer)")
    # Antwerp (brief B17): with hedge_median_m=120 the model makes B16's choice itself (README)
    hedge: str = option("fixed", choices=("fixed", "search"), help="posterior_temperature and sigma_mass as set, "
                        "or chosen on val: val 1σ/2σ within 5 points of 39/86%, then the least val mean")
    hedge_median_m: float = option(0.0, lo=0.0, hi=1e7, unit="m", help="hedge=search: the largest val median of "
                                   "a candidate (0: no bound)")
    # Duke CBRS area splits (brief B25): the members' spread is narrower in an unseen area than in the held-out
    # squares it is calibrated on; knn's neighbour spread keeps its level better (4 of 6 test splits x deals in
    # the σ band with blocks, against 2 of 6)
    sigma_member: str = option("", help="σ: this member's own σ instead of the members' spread around the answer "
                               "('': the spread)")
    refit_networks: bool = option(False, help="refit: train the network members again on train + val for their "
                                  "val-chosen steps x (train + val) / train (as long again as their training)")

    def __post_init__(self) -> None:
        check_options(self)
        members = self.member_models()
        bad = [m for m in members.values() if m == "ensemble" or (m not in BASELINES and m not in NETWORKS)]
        names = [n.strip() for n in str(self.members).split(",") if n.strip()]
        if bad or not 2 <= len(names) <= MAX_MEMBERS or len(members) < len(names):
            known = ", ".join(n for n in [*NETWORKS, *BASELINES] if n != "ensemble")
            msg = (f"members: expected 2 to {MAX_MEMBERS} different names (MODEL or ALIAS=MODEL) of models among "
                   f"{known}, got {self.members!r}" + (f" ({', '.join(bad)} not allowed)" if bad else ""))
            raise InvalidInputError(msg)
        self.member_configs()  # checks every member option now, before anything is fitted
        self.member_train_configs()
        post = str(self.posterior_member).strip()
        if post and members.get(post) != "knn":
            knns = ", ".join(n for n, m in members.items() if m == "knn") or "none"
            msg = (f"posterior_member: expected '' or the name of a knn member (here: {knns}), "
                   f"got {self.posterior_member!r}")
            raise InvalidInputError(msg)
        own = str(self.sigma_member).strip()
        if own and own not in members:
            msg = f"sigma_member: expected '' or a member's name ({', '.join(members)}), got {self.sigma_member!r}"
            raise InvalidInputError(msg)

    def check_hedge(self) -> None:
        """``sigma_mass`` > 0 needs a ``posterior_member`` (checked when the model fits or predicts: each option
        alone stays settable)."""
        if self.sigma_mass > 0 and not str(self.posterior_member).strip():
            msg = f"sigma_mass: expected 0 without a posterior_member, got {self.sigma_mass!r}"
            raise InvalidInputError(msg)
        if self.hedge == "search" and not str(self.posterior_member).strip():
            msg = f"hedge: expected 'fixed' without a posterior_member, got {self.hedge!r}"
            raise InvalidInputError(msg)
        if str(self.sigma_member).strip() and (self.sigma_mass > 0 or self.hedge == "search"):
            msg = f"sigma_member: expected '' with a sigma_mass or hedge search (they set σ), got {self.sigma_member!r}"
            raise InvalidInputError(msg)

    def member_names(self) -> list[str]:
        """The members' names (an alias where given), in order."""
        return list(self.member_models())

    def member_models(self) -> dict[str, str]:
        """``{name: model}``: ``"nn1=knn"`` is a member named ``nn1`` of model ``knn`` (one model twice)."""
        out = {}
        for item in (n.strip() for n in str(self.members).split(",")):
            if item:
                alias, _, model = item.rpartition("=")
                out[alias.strip() or model.strip()] = model.strip()
        return out

    def member_configs(self) -> dict[str, dict[str, Any]]:
        """``{member: model_config}`` from ``member_set`` (checked by each member's options)."""
        by_model = self._assignments("member_set", self.member_names(), "(the default member_set sets nn1's k; "
                                     "set member_set= to clear it)")
        models = self.member_models()
        return {name: model_config(models[name], None, items) for name, items in by_model.items()}

    def member_train_configs(self) -> dict[str, dict[str, Any]]:
        """``{network member: TrainConfig options}`` from ``member_train`` (checked against TrainConfig)."""
        from rflocal_core.train.engine import TrainConfig  # the epoch loop sits above the models

        networks = [n for n, m in self.member_models().items() if m in NETWORKS]
        out = {}
        for name, items in self._assignments("member_train", networks, "", "network members").items():
            values = parse_assignments(TrainConfig, items, owner="member_train")
            owned = sorted(set(values) & set(ENSEMBLE_TRAIN_KEYS))
            if owned:
                msg = (f"member_train: {', '.join(owned)} of {name!r} is set by the ensemble itself; expected other "
                       f"TrainConfig options than {', '.join(ENSEMBLE_TRAIN_KEYS)}, got {values!r}")
                raise InvalidInputError(msg)
            TrainConfig.from_dict(values)
            out[name] = values
        return out

    def _assignments(self, field: str, names: list[str], hint: str, which: str = "members") -> dict[str, list[str]]:
        """``{name: ["KEY=VALUE", ...]}`` of the option ``field`` (``NAME:KEY=VALUE;...``), names among ``names``."""
        out: dict[str, list[str]] = {}
        for item in (s.strip() for s in str(getattr(self, field)).split(";")):
            if not item:
                continue
            name, sep, assignment = item.partition(":")
            if not sep or name.strip() not in names:
                msg = (f"{field}: expected NAME:KEY=VALUE with NAME among the {which} ({', '.join(names) or 'none'}), "
                       f"got {item!r} {hint}")
                raise InvalidInputError(msg)
            out.setdefault(name.strip(), []).append(assignment)
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def simplex_grid(members: int, step: float) -> np.ndarray:
    """Every weight vector [G, members] with entries on multiples of ``step`` summing to 1."""
    n = max(1, round(1.0 / step))
    rows = [c for c in itertools.product(range(n + 1), repeat=members - 1) if sum(c) <= n]
    return np.array([[*c, n - sum(c)] for c in rows], dtype=np.float64) / n


def combine_positions(pos: np.ndarray, weights: np.ndarray, how: str) -> np.ndarray:
    """[M, N, 2] member positions, [M] weights -> [N, 2]: weighted mean or weighted geometric median.

    A member without a position for a sample (NaN) leaves it to the others (weights renormalized);
    NaN where no weighted member has one.
    """
    ok = np.isfinite(pos).all(-1)  # [M, N]
    w = np.where(ok, weights[:, None], 0.0)
    total = w.sum(0)
    w = w / np.where(total > 0, total, np.nan)
    pos = np.where(ok[..., None], pos, 0.0)
    mean = (w[..., None] * pos).sum(0)
    if how == "mean":
        return mean
    est = mean
    for _ in range(MEDIAN_ITERATIONS):  # Weiszfeld from the mean
        d = np.hypot(*(pos - est[None]).transpose(2, 0, 1))  # [M, N]
        inv = w / np.maximum(d, 1e-3)
        est = (inv[..., None] * pos).sum(0) / inv.sum(0)[:, None]
    return est


def bagged_weights(grid: np.ndarray, err: np.ndarray, select_by: str, *, bags: int, seed: int) -> np.ndarray:
    """Mean over ``bags`` bootstrap resamples of the validation samples of the best grid point [G, M].

    ``err`` [G, N]: each grid point's validation errors; the score of a resample is
    :func:`~rflocal_core.models.baselines.knn_criterion` over its columns.
    """
    rng = np.random.default_rng(seed)
    picks = []
    for _ in range(bags):
        cols = err[:, rng.integers(0, err.shape[1], err.shape[1])]
        med, mean = np.median(cols, 1), cols.mean(1)
        score = {"median": med, "mean": mean, "median_mean": 0.5 * (med + mean)}[select_by]
        picks.append(grid[int(np.argmin(score))])
    return np.mean(picks, 0)


def mixture_sigma(pos: np.ndarray, sigma: np.ndarray, weights: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Per-axis 1-sigma [N, 2]: weighted spread of the members around ``centre`` plus their mean variance."""
    w = weights[:, None, None]
    spread = (w * (pos - centre[None]) ** 2).sum(0)
    has = np.isfinite(sigma).all(-1)  # [M, N]: members without a sigma add only their spread
    ws = np.where(has, weights[:, None], 0.0)
    own = (ws[..., None] * np.where(has[..., None], sigma, 0.0) ** 2).sum(0) / np.maximum(ws.sum(0), 1e-12)[:, None]
    return np.sqrt(spread + own)


def hedged_answer(pos: np.ndarray, weights: np.ndarray, post_pos: np.ndarray, post_w: np.ndarray, *,
                  temperature: float, how: str) -> tuple[np.ndarray, np.ndarray]:
    """The combination of members' answers and one member's posterior: answer [N, 2] and spread σ [N, 2].

    Parameters
    ----------
    pos, weights
        The other members' answers [M, N, 2] (NaN: no answer) and their weights [M].
    post_pos, post_w
        The posterior member's candidates [N, K, 2] and their weights [N, K] (each row sums to 1); the member's
        weight is 1 - sum(weights), spread over its candidates.
    temperature : float
        The candidates' weights are raised to 1 / temperature (renormalized) for the answer.
    how : str
        ``"mean"`` or ``"median"`` (weighted geometric median), as :func:`combine_positions`.

    Returns
    -------
    answer, sigma
        ``sigma`` per axis: the RMS distance of the members and the untempered candidates around the answer.
    """
    share = max(1.0 - float(np.sum(weights)), 0.0)
    ok = np.isfinite(pos).all(-1).T  # [N, M]
    wm = np.where(ok, weights[None], 0.0)
    pts = np.concatenate([np.where(ok[..., None], pos.transpose(1, 0, 2), 0.0), post_pos], 1)
    tempered = post_w ** (1.0 / temperature)
    tempered = tempered / tempered.sum(1, keepdims=True)
    wt = np.concatenate([wm, share * tempered], 1)
    wt = wt / wt.sum(1, keepdims=True)
    answer = (wt[..., None] * pts).sum(1)
    if how == "median":
        answer = weighted_geometric_median(pts, wt, start=answer)
    w1 = np.concatenate([wm, share * post_w], 1)
    w1 = w1 / w1.sum(1, keepdims=True)
    return answer, np.sqrt((w1[..., None] * (pts - answer[:, None]) ** 2).sum(1))


def credible_radius(post_pos: np.ndarray, post_w: np.ndarray, centre: np.ndarray, mass: float) -> np.ndarray:
    """[N] the radius around ``centre`` [N, 2] of the smallest circle holding ``mass`` of the weights ``post_w``
    [N, K] of the candidates ``post_pos`` [N, K, 2] (at least :data:`RADIUS_FLOOR_M`, added in quadrature)."""
    d = np.hypot(post_pos[..., 0] - centre[:, None, 0], post_pos[..., 1] - centre[:, None, 1])
    order = np.argsort(d, axis=1)
    d, w = np.take_along_axis(d, order, 1), np.take_along_axis(post_w, order, 1)
    i = np.minimum((np.cumsum(w, 1) < mass - 1e-12).sum(1), d.shape[1] - 1)
    return np.sqrt(d[np.arange(len(d)), i] ** 2 + RADIUS_FLOOR_M**2)


@register("ensemble")
class Ensemble(Baseline):
    """Weighted combination of fitted members (see the module docstring).

    The state: ``members`` (names), ``models``, ``kinds``, ``states`` (each baseline's state, or a
    network's ``{"config", "state"}`` checkpoint payload and ``"fit"``: its best epoch, epochs run,
    why it stopped), ``weights``, ``search`` (the validation score of each member alone and of the
    chosen weights).
    """

    config_cls = EnsembleConfig
    #: It fingerprints the fixed node slots (model selection skips it on data without them).
    needs_fixed_slots = True
    #: Its members that can (``knn``, ``lgbm``) are refitted on train + val; the others and the weights stay.
    can_refit: ClassVar[bool] = True

    def refit(self, data: Inputs) -> Ensemble:
        """A copy whose refittable baseline members (``can_refit``: ``knn``; ``lgbm`` with the trees val stopped it
        at, scaled) are fitted again on ``data`` (train + val) with their val choices fixed, and with
        ``refit_networks`` its networks trained again on it (:meth:`_refit_network`); the weights chosen on val and
        the answer rule stay. The state lists the refitted members (``refitted``)."""
        self._require_fit()
        st = dict(self._state)
        states, configs, done = list(st["states"]), dict(st.get("configs") or {}), []
        trains = self.config.member_train_configs()
        for i, (name, model, kind) in enumerate(zip(st["members"], st["models"], st["kinds"], strict=True)):
            if kind == "baseline" and BASELINES[model].can_refit:
                member = BASELINES[model].from_state(configs.get(name), states[i]).refit(data)
                states[i], configs[name] = member.state_dict(), member.config.to_dict()
                done.append(name)
            elif kind == "network" and self.config.refit_networks:
                states[i] = self._refit_network(name, model, states[i], data, seed=self.config.seed + i,
                                                train_options=trains.get(name))
                done.append(name)
        st.update(states=states, configs=configs, refitted=done)
        if "snap_positions" in st:
            has = np.isfinite(data.truth_m).all(1)
            by_scene = {scene: data.truth_m[has & (data.scene_idx == i)] for i, scene in enumerate(data.scenes)}
            st["snap_positions"] = {scene: pos for scene, pos in by_scene.items() if len(pos)}
        return type(self).from_state(self.config, st)

    def _fit(self, train: Inputs, val: Inputs | None) -> dict[str, Any]:
        self.config.check_hedge()  # before minutes of training
        if val is None or not np.isfinite(val.truth_m).all(1).any():
            msg = f"val: {self.name} chooses its weights on a validation split with true positions; pass val"
            raise InvalidInputError(msg)
        models = self.config.member_models()
        configs, trains = self.config.member_configs(), self.config.member_train_configs()
        networks = sum(1 for m in models.values() if m in NETWORKS)
        states, kinds = [], []
        for i, (name, model) in enumerate(models.items()):
            if model in NETWORKS:  # seed + place: two members of one network (aliases) differ
                states.append(self._train_network(model, configs.get(name), train, val, networks,
                                                  seed=self.config.seed + i, train_options=trains.get(name)))
                kinds.append("network")
            else:
                states.append(BASELINES[model](configs.get(name)).fit(train, val).state_dict())
                kinds.append("baseline")
        self._state = {"members": list(models), "models": list(models.values()), "kinds": kinds, "states": states,
                       "configs": configs}
        self._cache = self._wide = None
        ok = np.isfinite(val.truth_m).all(1)
        preds = self._member_predictions(val.subset(ok))
        weights, search = self._choose_weights(preds, val.subset(ok))
        self._state.update({"weights": weights.tolist(), "search": search})
        if self.config.hedge == "search":
            self._state["hedge"] = self._search_hedge(val.subset(ok), np.stack([p.position_m for p in preds]),
                                                      weights)
        if self.config.snap_k > 0:  # the training positions per scene, for the snap at predict time
            has = np.isfinite(train.truth_m).all(1)
            by_scene = {scene: train.truth_m[has & (train.scene_idx == i)] for i, scene in enumerate(train.scenes)}
            self._state["snap_positions"] = {scene: pos for scene, pos in by_scene.items() if len(pos)}
        return self._state

    def _train_network(self, name: str, cfg: dict[str, Any] | None, train: Inputs, val: Inputs,
                       networks: int, *, seed: int, train_options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Train one network member in a scratch folder; its checkpoint payload (config, numpy weights)."""
        # imported here: the epoch loop (rflocal_core.train) sits above the models
        from rflocal_core.models.features import FeatureSpec
        from rflocal_core.models.nets import build_network
        from rflocal_core.train.engine import TrainConfig, fit_network

        c = self.config
        probe = build_network(name, cfg, vocab_size=0).config
        spec = FeatureSpec.fit(train, frame=probe.frame, window=probe.window() if hasattr(probe, "window") else None)
        tc = TrainConfig(**(train_options or {}), epochs=c.epochs, max_minutes=max(c.max_minutes / networks, 0.01))
        member, fit = _trained_member(name, name, cfg, spec, train, seed=seed, fit=lambda path, model: fit_network(
            path, model, tc, train, val, seed=seed, progress=lambda *a, **k: None))
        return {**member, "fit": {"best_epoch": int(fit.best_epoch), "epochs_run": int(fit.epochs_run),
                        "stop_reason": fit.stop_reason, "seconds": float(fit.seconds), "best_step": fit.best_step,
                        "best_progress": fit.best_progress,
                        "train_samples": int(np.isfinite(train.truth_m).all(1).sum()),
                        "train_options": dict(train_options or {})}}

    def _refit_network(self, name: str, model: str, state: dict[str, Any], data: Inputs, *, seed: int,
                       train_options: dict[str, Any] | None = None) -> dict[str, Any]:
        """The network member ``name`` trained again on ``data`` (train + val) for its val-chosen steps x (train +
        val) / train (:func:`~rflocal_core.train.engine.refit_plan`, :func:`~rflocal_core.train.engine.fit_fixed`):
        a new network with its seed, options and feature frame; its state with ``fit.refit`` (the plan, the run)."""
        from rflocal_core.models.features import FeatureSpec
        from rflocal_core.train.engine import TrainConfig, fit_fixed, refit_plan

        fit = dict(state.get("fit") or {})
        if "train_samples" not in fit:
            msg = (f"refit_networks: the network member {name!r} was trained before its steps to the val-chosen epoch "
                   "were kept; fit the ensemble again, or refit with refit_networks False")
            raise InvalidInputError(msg)
        tc = TrainConfig(**(train_options or {}), epochs=self.config.epochs)  # its lr, batch size, ... again
        plan = refit_plan(fit.get("best_step"), fit.get("best_progress"), tc, train_samples=int(fit["train_samples"]),
                          refit_samples=int(np.isfinite(data.truth_m).all(1).sum()))
        if plan.epochs == 0:  # val chose the untrained network: nothing to train again
            return {**state, "fit": {**fit, "refit": plan.to_dict()}}
        spec = FeatureSpec.from_dict(state["config"]["features"])
        before = getattr(NETWORKS[model].config_cls, "checkpoint_defaults", {})  # as NeuralModel.from_checkpoint
        options = {**before, **(state["config"].get("model_config") or {}), "frame": spec.frame}
        member, run = _trained_member(name, model, options, spec, data, seed=seed, fit=lambda path, net: fit_fixed(
            path, net, tc, data, plan, seed=seed, progress=lambda *a, **k: None))
        return {**member, "fit": {**fit, "refit": {**plan.to_dict(), **run}}}

    def _members(self) -> list[Any]:
        """The fitted members (baselines, or :class:`~rflocal_core.models.neural.NeuralModel`), built once."""
        cache = getattr(self, "_cache", None)
        if cache is None:
            from rflocal_core.models.neural import NeuralModel

            st = self._state
            cache = []
            for name, model, kind, state in zip(st["members"], st["models"], st["kinds"], st["states"], strict=True):
                if kind == "network":
                    cache.append(NeuralModel.from_checkpoint({"model": model, "config": state["config"],
                                                              "state": state["state"]}))
                else:
                    cache.append(BASELINES[model].from_state((st.get("configs") or {}).get(name), state))
            self._cache = cache
        return cache

    def _member_predictions(self, x: Inputs) -> list[Prediction]:
        return [m.predict(x) for m in self._members()]

    def _choose_weights(self, preds: list[Prediction], val: Inputs) -> tuple[np.ndarray, dict[str, Any]]:
        """The grid point of best validation score; the scores of each member alone and of the choice."""
        c = self.config
        pos = np.stack([p.position_m for p in preds])
        grid = simplex_grid(len(preds), c.weight_step)
        truth = val.truth_m

        def errors(w: np.ndarray) -> np.ndarray:
            return np.hypot(*(combine_positions(pos, w, c.combine) - truth).T)

        if c.weight_bags > 0:  # [G, N] errors kept for the resamples (val is small where bagging matters)
            best = bagged_weights(grid, np.stack([errors(w) for w in grid]), c.select_by, bags=c.weight_bags,
                                  seed=c.seed)
        else:
            best = grid[int(np.argmin([knn_criterion(errors(w), c.select_by) for w in grid]))]
        alone = {name: knn_criterion(errors_m(p, val), c.select_by)
                 for name, p in zip(self._state["members"], preds, strict=True)}
        return best, {"criterion": c.select_by, "grid_points": len(grid), "members_alone_m": alone,
                      "chosen_m": float(knn_criterion(errors(best), c.select_by)),
                      "bags": int(c.weight_bags)}

    def _predict(self, x: Inputs) -> Prediction:
        self.config.check_hedge()
        preds = self._member_predictions(x)
        weights = np.asarray(self._state["weights"], dtype=np.float64)
        pos = np.stack([p.position_m for p in preds])
        sig = np.stack([p.sigma_m for p in preds])
        if str(self.config.posterior_member).strip():
            centre, sigma = self._hedge(x, pos, weights)
        else:
            centre = combine_positions(pos, weights, self.config.combine)
            sigma = mixture_sigma(pos, sig, weights, centre)
        own = str(self.config.sigma_member).strip()
        if own:
            sigma = sig[self._state["members"].index(own)]
        if self.config.snap_k > 0:
            centre = self._snap(x, centre)
        return Prediction(centre, sigma, {"weights": dict(zip(self._state["members"], weights.tolist(), strict=True))})

    def hedge_params(self) -> tuple[float, float]:
        """The (temperature, sigma_mass) the model predicts with: chosen on val (``hedge="search"``) or set."""
        chosen = self._state.get("hedge") if self._state and self.config.hedge == "search" else None
        if self.config.hedge == "search" and not chosen:
            msg = "hedge: 'search' needs a fit that searched (this state has no hedge choice); fit again or set 'fixed'"
            raise InvalidInputError(msg)
        if chosen:
            return float(chosen["temperature"]), float(chosen["sigma_mass"])
        return float(self.config.posterior_temperature), float(self.config.sigma_mass)

    def _hedge(self, x: Inputs, pos: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Answer and σ [N, 2] with ``posterior_member``'s posterior in place of its answer (module docstring)."""
        temperature, mass = self.hedge_params()
        return self._hedges(x, pos, weights, (temperature,), (mass,))[temperature, mass]

    def _hedges(self, x: Inputs, pos: np.ndarray, weights: np.ndarray, temperatures: tuple[float, ...],
                masses: tuple[float, ...]) -> dict[tuple[float, float], tuple[np.ndarray, np.ndarray]]:
        """``{(T, mass): (answer, σ)}`` [N, 2] each, the posterior searched once per chunk for every pair."""
        i = self._state["members"].index(str(self.config.posterior_member).strip())
        wide = getattr(self, "_wide", None)
        if wide is None:  # the member with k = posterior_k (at most its smallest scene's pool)
            st = self._state["states"][i]
            pool = min(len(db["pos_m"]) for db in st["fingerprints"].values())
            cfg = (self._state.get("configs") or {}).get(self._state["members"][i])
            wide = self._wide = KNNFingerprint.from_state(cfg, {**st, "k": min(int(self.config.posterior_k), pool)})
        others = [j for j in range(len(weights)) if j != i]
        out = {(t, m): (np.full((len(x), 2), np.nan), np.full((len(x), 2), np.nan))
               for t in temperatures for m in masses}
        for s in range(0, len(x), HEDGE_ROWS):
            rows = slice(s, s + HEDGE_ROWS)
            post_pos, post_w, _ = wide.neighbours(x.subset(rows))
            ok = np.isfinite(post_w).all(1)  # a scene with fewer fingerprints than k: NaN, left as is
            idx = np.arange(len(x))[rows][ok]
            for t in temperatures:
                a, sp = hedged_answer(pos[others][:, rows][:, ok], weights[others], post_pos[ok], post_w[ok],
                                      temperature=t, how=self.config.combine)
                for m in masses:  # mass 0: the spread; else the credible radius over 2 on both axes
                    r = credible_radius(post_pos[ok], post_w[ok], a, m)[:, None] if m > 0 else None
                    sig = sp if r is None else np.repeat(r, 2, 1) / 2
                    out[t, m][0][idx], out[t, m][1][idx] = a, sig
        return out

    def _search_hedge(self, val: Inputs, pos: np.ndarray, weights: np.ndarray) -> dict[str, Any]:
        """``hedge="search"``: (T, mass) by the rule of :class:`EnsembleConfig` on ``val``, with every candidate."""
        # imported here: the σ map (rflocal_core.train) sits above the models
        from rflocal_core.train.calibrate import fit_sigma_scale

        rows = []
        for (t, m), (answer, sigma) in self._hedges(val, pos, weights, HEDGE_TEMPERATURES, HEDGE_MASSES).items():
            e = np.hypot(*(answer - val.truth_m).T)
            cal = fit_sigma_scale(answer - val.truth_m, sigma)
            c1, c2 = cal.inside_1sigma_after, cal.inside_2sigma_after
            gap = 1.0 if c1 is None or c2 is None else max(abs(c1 - EXPECTED_1SIGMA), abs(c2 - EXPECTED_2SIGMA))
            rows.append({"temperature": t, "sigma_mass": m, "val_median_m": float(np.nanmedian(e)),
                         "val_mean_m": float(np.nanmean(e)), "val_inside_1sigma": c1, "val_inside_2sigma": c2,
                         "gap": float(gap)})
        cap = float(self.config.hedge_median_m)
        ok = [r for r in rows if r["gap"] <= HEDGE_GAP and (cap <= 0 or r["val_median_m"] <= cap)]
        best = min(ok, key=lambda r: r["val_mean_m"]) if ok else min(rows, key=lambda r: r["gap"])
        rule = (f"val gap <= {HEDGE_GAP}" + (f", val median <= {cap:g} m" if cap > 0 else "") + ", least val mean"
                if ok else f"none within the rule: least val gap (gap <= {HEDGE_GAP} wanted)")
        return {"temperature": best["temperature"], "sigma_mass": best["sigma_mass"], "rule": rule,
                "candidates": rows}

    def _snap(self, x: Inputs, centre: np.ndarray) -> np.ndarray:
        """``centre`` [N, 2] moved to the mean of its ``snap_k`` nearest training positions (scene by scene)."""
        out = centre.copy()
        stored = self._state.get("snap_positions") or {}
        for i, scene in enumerate(x.scenes):
            ref = np.asarray(stored.get(scene, np.zeros((0, 2))), dtype=np.float64)
            rows = np.flatnonzero((x.scene_idx == i) & np.isfinite(centre).all(1))
            if len(ref) == 0 or len(rows) == 0:  # a scene without training positions keeps its estimate
                continue
            k = min(int(self.config.snap_k), len(ref))
            out[rows] = snap_to_positions(centre[rows], ref, k)
        return out


def _trained_member(name: str, model: str, options: dict[str, Any], spec: Any, data: Inputs, *, seed: int,
                    fit: Any) -> tuple[dict[str, Any], Any]:
    """A network member built from ``options`` (seeded; ``prepare`` on ``data``), trained by ``fit(path, model)`` in a
    temporary run folder; its checkpoint as ``{"config", "state"}`` (numpy) and what ``fit`` returned."""
    from rflocal_core.models.nets import prepared_network
    from rflocal_core.models.neural import NeuralModel
    from rflocal_core.train.runs import CHECKPOINT_FORMAT, read_torch

    net = prepared_network(model, options, spec=spec, data=data, seed=seed)
    with tempfile.TemporaryDirectory(prefix="rflocal-ensemble-") as tmp:
        result = fit(Path(tmp), NeuralModel(model, net, spec))
        payload = read_torch(Path(tmp) / "model.pt", run_id=f"ensemble member {name}",
                             expected_format=CHECKPOINT_FORMAT)
    return {"config": payload["config"], "state": {k: v.cpu().numpy() for k, v in payload["state"].items()}}, result


def snap_to_positions(points: np.ndarray, ref: np.ndarray, k: int) -> np.ndarray:
    """Mean [N, 2] of the ``k`` positions of ``ref`` [M, 2] nearest to each of ``points`` [N, 2]."""
    out = np.empty_like(points)
    for start in range(0, len(points), 1024):  # [1024, M] distances at a time: bounded memory
        p = points[start:start + 1024]
        d = (p**2).sum(1)[:, None] + (ref**2).sum(1)[None] - 2 * p @ ref.T
        nn = np.argpartition(d, k - 1, axis=1)[:, :k] if k < len(ref) else np.tile(np.arange(len(ref)), (len(p), 1))
        out[start:start + 1024] = ref[nn].mean(1)
    return out
