"""Ablations: what each model ingredient is worth, measured on the same splits and seeds.

A study is a base configuration plus a list of variants. The runner trains each variant
(for each seed) into an ordinary run, evaluates it on the test split (through the variant's
test-time view of the data), and keeps a results table in ``workspace/ablations/<name>/``::

    study.json      the study definition (variants, dataset, seeds, budgets)
    results.json    state (running / done / cancelled / failed), one row per variant and seed,
                    the test-error CDF of each, rewritten atomically after every variant
    results.csv     the same rows, for spreadsheets

    out = run_study("features", "ds", seeds=1, max_minutes_per_variant=2)
    out["rows"][0]  # {"variant", "seed", "median_m", "p95_m", "mean_m", "train_s", "infer_ms", "parameters", ...}

Ready-made studies: :data:`STUDIES`. A study whose model is not available in this version
says so instead of running.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rflocal_core.access import LOCAL_USER, User, require
from rflocal_core.errors import InvalidInputError
from rflocal_core.progress import JobCancelled, ProgressFn, StepProgressFn, as_progress, sub_progress
from rflocal_core.train.calibrate import unscale_sigma
from rflocal_core.train.runs import ABLATION_TAG
from rflocal_core.workspace import atomic_write_text, subdir, validate_name

STATES = ("running", "done", "cancelled", "failed")

#: Ablations running in this process (by folder name).
_ACTIVE: set[str] = set()
_ACTIVE_LOCK = threading.Lock()


@dataclass(frozen=True)
class Variant:
    """One arm of a study: changes to the base model, training and data.

    Attributes
    ----------
    name : str
    model : str or None
        Model name (None: the study's base model).
    model_config, train_config : dict
        Merged over the base configuration.
    train_transform : dict
        :class:`~rflocal_core.models.transforms.InputTransform` options for train/val.
    test_transform : dict
        Options for the test split (default: the train transform, less dropout).
    """

    name: str
    model: str | None = None
    model_config: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)
    train_transform: dict[str, Any] = field(default_factory=dict)
    test_transform: dict[str, Any] | None = None


@dataclass(frozen=True)
class Study:
    """A base configuration and its variants."""

    name: str
    description: str
    model: str
    variants: tuple[Variant, ...]
    model_config: dict[str, Any] = field(default_factory=dict)
    train_config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_LOCHEATMAP_MODES = ("proposal", "DCAe", "DCAe_simple", "LocUNet", "LocUNet_softargmax", "proposal_rss_only",
                     "proposal_aoa_only", "proposal_gaussian_dsnt", "proposal_gaussian_softargmax", "proposal_dsnt")
_ALL = ("rss", "toa", "aoa")


def _layer_variants(model: str) -> tuple[Variant, ...]:
    """RT only / + PHY / + MAC / + beams (each layer adds its PHY/MAC fields to the ones below) for ``model``."""
    from rflocal_core.models.transforms import PHY_LAYERS

    out, kept = [Variant(f"{model}: RT only", model=model)], ()
    for layer, label in (("phy", "PHY"), ("mac", "MAC"), ("beams", "beams")):
        kept = (*kept, *PHY_LAYERS[layer])
        out.append(Variant(f"{model}: + {label}", model=model, model_config={"phy_features": True},
                           train_transform={"phy_fields": list(kept)}))
    return tuple(out)


#: Receivers reporting at test time in the "receivers" study (None: all).
RECEIVER_COUNTS = (None, 7, 5, 3, 2)


def _receivers_variants() -> tuple[Variant, ...]:
    models = (("heimdall + IQ", "heimdall", {"use_iq": True}), ("heimdall", "heimdall", {}),
              ("heimdall + IQ lags", "heimdall", {"iq_lags": True}), ("tdoa", "tdoa_multilateration", {}))
    rss = {"features": ["rss"]}
    return tuple(Variant(f"{shown}: {k or 'all'} receivers", model=model, model_config=config, train_transform=rss,
                         test_transform=rss if k is None else {**rss, "max_sites": k, "site_choice": "random"})
                 for shown, model, config in models for k in RECEIVER_COUNTS)


#: The ready-made studies, by name.
STUDIES: dict[str, Study] = {s.name: s for s in (
    Study("features", "Which measurements matter: RSS only, RSS + ToA, RSS + AoA, all (setnet).", "setnet",
          (Variant("rss", train_transform={"features": ["rss"]}),
           Variant("rss+toa", train_transform={"features": ["rss", "toa"]}),
           Variant("rss+aoa", train_transform={"features": ["rss", "aoa"]}),
           Variant("all", train_transform={"features": list(_ALL)}))),
    Study("sparsity", "How many sites and reports are needed: 3 / 5 / all sites, 1 / 5 / 20 reports per sequence "
          "(setnet).", "setnet",
          (Variant("3 sites", train_transform={"max_sites": 3}),
           Variant("5 sites", train_transform={"max_sites": 5}),
           Variant("all sites"),
           Variant("1 report", train_transform={"max_steps": 1}),
           Variant("5 reports", train_transform={"max_steps": 5}),
           Variant("20 reports", train_transform={"max_steps": 20}))),
    Study("dropout", "Feature dropout in training: 0 / 20 / 50% of the measurements removed (setnet, tested on "
          "complete data).", "setnet",
          (Variant("dropout 0%"),
           Variant("dropout 20%", train_transform={"feature_dropout": 0.2}, test_transform={}),
           Variant("dropout 50%", train_transform={"feature_dropout": 0.5}, test_transform={}))),
    Study("map-channels", "mapformer with and without the SINR/ToA/AoA map stream (a dataset generated with "
          "--timing-maps; without those maps the stream is zeros).", "mapformer",
          (Variant("path gain + scene"), Variant("+ SINR/ToA/AoA maps", model_config={"use_map_channels": True}))),
    Study("band-feature", "setnet on a dataset that mixes bands (one place built at two carriers), without and with "
          "each sample's band as a token feature.", "setnet",
          (Variant("no band feature"), Variant("band feature", model_config={"band_feature": True}))),
    Study("bands", "setnet on a scene whose sites carry cells on two bands (3.5 and 28 GHz): trained and tested on "
          "one band's cells only, or on both bands' cells, without and with the band token feature.", "setnet",
          (Variant("3.5 GHz cells", train_transform={"bands": [3.5e9]}),
           Variant("28 GHz cells", train_transform={"bands": [28e9]}),
           Variant("both bands"),
           Variant("both bands + band feature", model_config={"band_feature": True}))),
    Study("locheatmap-modes", "The ten modes of the sparse-to-dense heatmap model (locheatmap), and proposal "
          "without the AoA log-prior and without the AoA back-projection channel.", "locheatmap",
          (*(Variant(m, model_config={"mode": m}) for m in _LOCHEATMAP_MODES),
           Variant("proposal, no AoA prior", model_config={"mode": "proposal", "aoa_prior": False}),
           Variant("proposal, no back-projection", model_config={"mode": "proposal", "aoa_backprojection": False}))),
    Study("mapformer-physics", "The physics-consistency loss and the map streams of mapformer.", "mapformer",
          (Variant("no physics loss", model_config={"physics_weight": 0.0}),
           Variant("lambda 0.01", model_config={"physics_weight": 0.01}),
           Variant("lambda 0.1", model_config={"physics_weight": 0.1}),
           Variant("lambda 1", model_config={"physics_weight": 1.0}),
           Variant("no radio-map stream", model_config={"use_radio_maps": False}),
           Variant("no OSM stream", model_config={"use_scene": False}),
           Variant("no fine head", model_config={"top_k": 0}),
           Variant("no physics prior", model_config={"physics_prior": False}))),
    Study("feature-layers", "What each layer of a network's reports is worth: ray-traced RSS/ToA/AoA only, + PHY "
          "(RSRQ, SINR, CQI, rank), + MAC (serving cell, neighbour rank, A3/A5 events), + beams (best SSB beam id "
          "and L1-RSRP), for setnet, heimdall and mapformer (needs a ue dataset with PHY reports; mapformer a "
          "generated one, with maps).", "setnet",
          (*_layer_variants("setnet"), *_layer_variants("heimdall"), *_layer_variants("mapformer"))),
    Study("map-corruption", "Map-based models when the maps are wrong at test time: buildings removed or added, "
          "materials wrong, maps missing (mapformer, and map matching for reference; each model is trained once "
          "and tested on every corruption).", "mapformer",
          tuple(Variant(f"{name}: {k.replace('_', ' ')}", model=model, test_transform={"map_corruption": k})
                for model, name in (("mapformer", "mapformer"), ("map_matching", "map matching"))
                for k in ("none", "buildings_removed", "buildings_added", "materials_wrong", "maps_missing"))),
    Study("iq", "IQ captures vs features (emitter datasets generated with --iq): heimdall with and without its IQ "
          "branch, on all features and on RSS only (no ToA/AoA: the timing must then come from the captures), with "
          "the captures' cross-correlation lags as features (iq_lags), and tdoa_multilateration as the classical "
          "peer.", "heimdall",
          (Variant("heimdall + IQ, all features", model_config={"use_iq": True}),
           Variant("heimdall, all features"),
           Variant("heimdall + IQ, RSS only", model_config={"use_iq": True}, train_transform={"features": ["rss"]}),
           Variant("heimdall, RSS only", train_transform={"features": ["rss"]}),
           Variant("heimdall + IQ lags, RSS only", model_config={"iq_lags": True},
                   train_transform={"features": ["rss"]}),
           Variant("heimdall + IQ lags, all features", model_config={"iq_lags": True}),
           Variant("tdoa_multilateration", model="tdoa_multilateration"))),
    Study("receivers", "Robustness to receivers failing (emitter datasets with --iq and >= 7 receivers): each model "
          "is trained once on every receiver (RSS and captures, no ToA/AoA) and tested with all, 7, 5, 3 and 2 "
          "receivers reporting, a random draw per sample (site_choice=random): heimdall with and without IQ, with the "
          "captures' lags (iq_lags), and tdoa_multilateration as the peer.", "heimdall", _receivers_variants()),
)}


def ablations_dir() -> Path:
    """Return ``<workspace>/ablations``."""
    return subdir("ablations")


def get_study(name: str) -> Study:
    """A ready-made study by name."""
    if name not in STUDIES:
        msg = f"study: expected one of {', '.join(STUDIES)}, got {name!r}"
        raise InvalidInputError(msg)
    return STUDIES[name]


def _check_available(study: Study) -> None:
    from rflocal_core.train import models

    missing = sorted({v.model or study.model for v in study.variants} - set(models()))
    if missing:
        msg = (f"study: {study.name!r} needs the model(s) {', '.join(missing)}, which this version does not have yet "
               f"(available: {', '.join(models())})")
        raise InvalidInputError(msg)


def _check_phy(st: Study, chosen: list[Variant], dataset: str, root: Any) -> None:
    """Variants that read PHY/MAC fields need a dataset that has them (else they only repeat the RT variant)."""
    from rflocal_core.models.inputs import PHY_INPUT_FIELDS

    reads = [v.name for v in chosen if {**st.model_config, **v.model_config}.get("phy_features")]
    if reads and not any(key in root["samples"] for key in PHY_INPUT_FIELDS):
        msg = (f"dataset: {dataset!r} has no PHY/MAC reports, which the variants {reads} read; generate a ue dataset "
               "with timing and PHY on (the default), or import a file with them")
        raise InvalidInputError(msg)


def check_study(
    study: str | Study, dataset: str, *, seeds: int = 1, max_minutes_per_variant: float | None = None,
    epochs: int | None = None, variants: list[str] | None = None, name: str | None = None,
) -> tuple[Study, list[Variant], str]:
    """Validate the arguments of :func:`run_study` (before a background job starts).

    Returns the study, the variants to run and the results folder name.
    """
    from rflocal_core.dataset.store import open_dataset
    from rflocal_core.models.transforms import InputTransform

    st = get_study(study) if isinstance(study, str) else study
    if not isinstance(seeds, int) or isinstance(seeds, bool) or not 1 <= seeds <= 10:
        msg = f"seeds: expected an integer in [1, 10], got {seeds!r}"
        raise InvalidInputError(msg)
    if max_minutes_per_variant is not None and not (0 < float(max_minutes_per_variant) <= 24 * 60):
        msg = f"max_minutes_per_variant: expected a number in (0, 1440], got {max_minutes_per_variant!r}"
        raise InvalidInputError(msg)
    if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool) or not 1 <= epochs <= 10_000):
        msg = f"epochs: expected an integer in [1, 10000], got {epochs!r}"
        raise InvalidInputError(msg)
    chosen = list(st.variants)
    if variants:
        known = [v.name for v in st.variants]
        unknown = [v for v in variants if v not in known]
        if unknown:
            msg = f"variants: {unknown} are not variants of {st.name!r}; expected some of {known}"
            raise InvalidInputError(msg)
        chosen = [v for v in st.variants if v.name in variants]
    _check_available(replace(st, variants=tuple(chosen)))
    for v in chosen:  # every transform is checked before anything runs
        InputTransform.from_dict(v.train_transform)
        InputTransform.from_dict(_test_transform(v))
    _check_phy(st, chosen, dataset, open_dataset(dataset))
    folder_name = validate_name(name or f"{st.name}-{dataset}", field="name")
    with _ACTIVE_LOCK:
        if folder_name in _ACTIVE:
            msg = f"name: the ablation {folder_name!r} is running; wait for it, cancel it, or choose another name"
            raise InvalidInputError(msg)
    return st, chosen, folder_name


def run_study(
    study: str | Study, dataset: str, *, seeds: int = 1, max_minutes_per_variant: float | None = None,
    epochs: int | None = None, variants: list[str] | None = None, name: str | None = None,
    progress: ProgressFn | None = None, owner: str | None = None, user: User = LOCAL_USER,
) -> dict[str, Any]:
    """Train and evaluate every variant of a study (for each seed) and keep the results table.

    Parameters
    ----------
    study : str or Study
        A name from :data:`STUDIES` or a study object.
    dataset : str
        The dataset: every variant uses its train/val/test splits.
    seeds : int
        Seeds 0 .. seeds-1 per variant (1 to 10).
    max_minutes_per_variant : float, optional
        Wall-clock budget of each network training.
    epochs : int, optional
        Maximum epochs of each network training (default: the model's).
    variants : list of str, optional
        Run only these variants (by name), in the study's order.
    name : str, optional
        Folder name under ``workspace/ablations`` (default ``<study>-<dataset>``).
    owner : str, optional
        Who started it (default the user's name; ``"local"``: the command line): kept in the results and in
        the runs it trains.
    user : User
        Who asks (default: the command line's :data:`~rflocal_core.access.LOCAL_USER`); a viewer is refused.

    Returns
    -------
    dict
        ``study``, ``dataset``, ``state``, ``rows`` (see module doc), ``summary`` (per variant:
        mean and std over seeds of median, P95 and mean error), ``path``.
    """
    require(user, "ablate")
    owner = user.name if owner is None else owner
    st, chosen, folder_name = check_study(study, dataset, seeds=seeds, max_minutes_per_variant=max_minutes_per_variant,
                                          epochs=epochs, variants=variants, name=name)
    with _ACTIVE_LOCK:
        if folder_name in _ACTIVE:
            msg = f"name: the ablation {folder_name!r} is running; wait for it, cancel it, or choose another name"
            raise InvalidInputError(msg)
        _ACTIVE.add(folder_name)
    try:
        return _run(st, chosen, folder_name, dataset, seeds, epochs, max_minutes_per_variant, progress, owner=owner)
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(folder_name)


def _run(st: Study, chosen: list[Variant], folder_name: str, dataset: str, seeds: int, epochs: int | None,
         max_minutes_per_variant: float | None, progress: ProgressFn | None, *, owner: str = "local") -> dict[str, Any]:
    folder = ablations_dir() / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    definition = {"study": st.to_dict(), "dataset": dataset, "seeds": seeds, "epochs": epochs,
                  "max_minutes_per_variant": max_minutes_per_variant, "variants": [v.name for v in chosen],
                  "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "owner": owner}
    atomic_write_text(folder / "study.json", json.dumps(definition, indent=2))
    report = as_progress(progress)
    results: dict[str, Any] = {"study": st.name, "dataset": dataset, "name": folder_name, "state": "running",
                               "error": None, "rows": [], "cdfs": {}, "total": len(chosen) * seeds, "owner": owner}
    _write(folder, results)
    jobs = [(v, s) for v in chosen for s in range(seeds)]
    trained: dict[str, tuple[str, float]] = {}
    try:
        for k, (variant, seed) in enumerate(jobs):
            label = f"{variant.name} (seed {seed})"
            # variants are parts of the study: those done time the ones left
            sub = sub_progress(report, prefix=f"{label}: ", span=(k / len(jobs), (k + 1) / len(jobs)), part=k,
                               parts=len(jobs))
            row, cdf = _run_variant(st, variant, dataset, seed, epochs, max_minutes_per_variant, sub, trained,
                                    owner=owner)
            results["rows"].append(row)
            results["cdfs"][f"{variant.name}#{seed}"] = cdf
            results["summary"] = summarize(results["rows"])
            _write(folder, results)
    except JobCancelled:
        results["state"] = "cancelled"
        _write(folder, results)
        raise
    except BaseException as exc:
        results.update(state="failed", error=f"{type(exc).__name__}: {exc}")
        _write(folder, results)
        raise
    results["state"] = "done"
    results["summary"] = summarize(results["rows"])
    _write(folder, results)
    report("done", 1.0)
    return {**{k: v for k, v in results.items() if k != "cdfs"}, "path": str(folder)}


def _test_transform(v: Variant) -> dict[str, Any]:
    if v.test_transform is not None:
        return dict(v.test_transform)
    return {k: val for k, val in v.train_transform.items() if k != "feature_dropout"}


def _run_variant(
    st: Study, v: Variant, dataset: str, seed: int, epochs: int | None, minutes: float | None, report: StepProgressFn,
    trained: dict[str, tuple[str, float]], *, owner: str = "local",
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Train (or reuse) and test one variant. ``trained``: training spec -> (run id, seconds), so
    variants that differ only at test time (map corruption) share one training."""
    from rflocal_core.infer import load_run
    from rflocal_core.metrics import error_cdf, error_summary
    from rflocal_core.models.inputs import errors_m
    from rflocal_core.models.registry import NETWORKS
    from rflocal_core.models.transforms import InputTransform, load_transformed
    from rflocal_core.train import train

    model = v.model or st.model
    train_config = {**st.train_config, **v.train_config}
    if model in NETWORKS:
        if epochs is not None:
            train_config["epochs"] = epochs
        if minutes is not None:
            train_config["max_minutes"] = minutes
    model_config = {**st.model_config, **v.model_config} or None
    transform = {**v.train_transform, "seed": seed}
    key = json.dumps([model, model_config, train_config, transform, seed], sort_keys=True)
    if key not in trained:
        t0 = time.perf_counter()
        out = train(dataset, model, model_config=model_config, train_config=train_config, seed=seed, progress=report,
                    input_transform=transform, tags=(ABLATION_TAG,), owner=owner)
        trained[key] = (out.run_id, time.perf_counter() - t0)
    run_id, train_s = trained[key]
    run = load_run(run_id)
    test_t = InputTransform.from_dict({**_test_transform(v), "seed": seed})
    x = load_transformed(dataset, "test", test_t, with_maps=run.needs_maps)
    if len(x) == 0:
        msg = f"dataset {dataset!r}: the test split is empty; an ablation is measured on it"
        raise InvalidInputError(msg)
    t1 = time.perf_counter()
    pred = run.predict(x)
    infer_ms = 1000 * (time.perf_counter() - t1) / len(x)
    err = errors_m(pred, x)
    s = error_summary(err)
    xs, frac = error_cdf(err)
    step = max(1, len(xs) // 200)
    row = {"variant": v.name, "seed": seed, "model": model, "run_id": run_id, "median_m": s.median_m,
           "p95_m": s.p95_m, "mean_m": s.mean_m, "rmse_m": s.rmse_m, "count": s.count,
           "train_s": round(train_s, 2), "infer_ms": round(infer_ms, 4), "parameters": _parameters(run),
           **calibration_columns(run, pred, x)}
    return row, {"x_m": [float(v) for v in xs[::step]], "fraction": [float(f) for f in frac[::step]]}


#: Calibration columns of a row: the run's sigma scale, the fractions inside the 1σ and 2σ ellipses on the
#: validation split before/after temperature scaling (train/calibrate.py's record, where the scale was fitted)
#: and the same on the test split (the scale applied to data it never saw). None: the model has no sigma.
CALIBRATION_KEYS = ("sigma_scale", "val_in_1sigma_before", "val_in_1sigma_after", "val_in_2sigma_before",
                    "val_in_2sigma_after", "test_in_1sigma_before", "test_in_1sigma_after", "test_in_2sigma_before",
                    "test_in_2sigma_after")


def calibration_columns(run: Any, pred: Any, x: Any) -> dict[str, float | None]:
    """:data:`CALIBRATION_KEYS` of a run's test prediction ``pred`` (calibrated, as runs predict) of ``x``."""
    from rflocal_core.metrics import ellipse_d2

    record = run.config.get("sigma_calibration") or {}
    scale = record.get("scale")
    out: dict[str, float | None] = {"sigma_scale": scale}
    for k in (1, 2):
        for when in ("before", "after"):
            out[f"val_in_{k}sigma_{when}"] = record.get(f"inside_{k}sigma_{when}")
    d2_after, _, has_sigma = ellipse_d2(pred.position_m - x.truth_m, pred.sigma_m)
    m = run.sigma_map  # the model's own sigma back from the calibrated one
    if m["power"] > 0 or m["ref_m"] is None:
        own = unscale_sigma(pred.sigma_m, m["scale"], power=m["power"], ref_m=m["ref_m"])
    else:  # a power of 0 gives every sample one sigma: nothing to invert, predict the model's own again
        own = run.model.predict(x).sigma_m
    d2_before, _, _ = ellipse_d2(pred.position_m - x.truth_m, own)
    for k in (1, 2):
        for when, d2 in (("before", d2_before), ("after", d2_after)):
            out[f"test_in_{k}sigma_{when}"] = float(np.mean(d2 <= k * k)) if has_sigma.any() else None
    return out


def _parameters(run: Any) -> int | None:
    net = getattr(run.model, "net", None)
    return int(sum(p.numel() for p in net.parameters())) if net is not None else None


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant (in first-seen order): seeds run, mean and std over seeds of median, P95 and mean error."""
    out = []
    for name in dict.fromkeys(r["variant"] for r in rows):
        part = [r for r in rows if r["variant"] == name]
        entry: dict[str, Any] = {"variant": name, "seeds": len(part)}
        for key in ("median_m", "p95_m", "mean_m", "train_s", "infer_ms", *CALIBRATION_KEYS):
            vals = np.array([r[key] for r in part if r.get(key) is not None], dtype=float)  # older rows lack some
            entry[key] = float(vals.mean()) if len(vals) else None
            entry[f"{key}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else None
        entry["parameters"] = part[0].get("parameters")
        out.append(entry)
    return out


def _write(folder: Path, results: dict[str, Any]) -> None:
    atomic_write_text(folder / "results.json", json.dumps(results, indent=2))
    atomic_write_text(folder / "results.csv", rows_csv(results["rows"]))


def rows_csv(rows: list[dict[str, Any]]) -> str:
    """The result rows as CSV text."""
    buf = io.StringIO()
    keys = ["variant", "seed", "model", "median_m", "p95_m", "mean_m", "rmse_m", "count", "train_s", "infer_ms",
            "parameters", *CALIBRATION_KEYS, "run_id"]
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow(r)
    return buf.getvalue()


def list_ablations() -> list[dict[str, Any]]:
    """The saved studies: name, study, dataset, state, variants done / total, owner (None: from before owners)."""
    out = []
    for path in sorted(ablations_dir().iterdir()):
        file = path / "results.json"
        if not file.is_file():
            continue
        try:
            r = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        out.append({"name": path.name, "study": r.get("study"), "dataset": r.get("dataset"), "state": r.get("state"),
                    "done": len(r.get("rows", [])), "total": r.get("total"), "owner": r.get("owner")})
    return out


def load_ablation(name: str) -> dict[str, Any]:
    """The saved results of ``workspace/ablations/<name>`` (rows, summary, cdfs, state)."""
    validate_name(name, field="name")
    file = ablations_dir() / name / "results.json"
    if not file.is_file():
        known = ", ".join(a["name"] for a in list_ablations()) or "none"
        msg = f"name: no ablation {name!r} in {ablations_dir()}; saved ablations: {known}"
        raise InvalidInputError(msg)
    return json.loads(file.read_text(encoding="utf-8"))
