"""kNN fingerprinting on real data: the tuned workbench kNN against a textbook k = 5 kNN, and its options."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from rflocal_core.errors import InvalidInputError
from rflocal_core.models import Inputs, KNNFingerprint, errors_m, load_inputs
from rflocal_core.models.baselines import KNNConfig, knn_criterion, posterior_answer, weighted_geometric_median


def antwerp_subset(import_antwerp: Callable[..., str], name: str) -> dict[str, Inputs]:
    """Antwerp's published test file imported 80/10/10 (conftest's ``import_antwerp``), cut to 2,500 train, all val
    and 800 test samples."""
    import_antwerp(name)
    return {"train": load_inputs(name, "train").subset(slice(0, 2500)), "val": load_inputs(name, "val"),
            "test": load_inputs(name, "test").subset(slice(0, 800))}


@pytest.fixture(scope="module")
def antwerp(import_antwerp, tmp_path_factory: pytest.TempPathFactory, workspace_env) -> dict[str, Inputs]:
    ws = tmp_path_factory.mktemp("knn") / "workspace"
    ws.mkdir()
    with workspace_env(ws):
        return antwerp_subset(import_antwerp, "antw")


def _errors(cfg: dict, s: dict[str, Inputs]) -> tuple[KNNFingerprint, np.ndarray]:
    model = KNNFingerprint(cfg).fit(s["train"], s["val"])
    return model, errors_m(model.predict(s["test"]), s["test"])


def test_tuned_knn_is_not_worse_than_textbook_k5(antwerp: dict[str, Inputs]) -> None:
    """The default (floor, k chosen on val by median and mean, softmin weights) against k = 5, 1/d weights,
    not heard = -110 dBm (the issue's textbook kNN) and = -130 dBm (the old workbench floor)."""
    _, tuned = _errors({}, antwerp)
    for floor in (-110.0, -130.0):
        _, textbook = _errors({"k": 5, "floor_dbm": floor, "weighting": "inverse"}, antwerp)
        print(f"floor {floor}: tuned {np.median(tuned):.0f}/{tuned.mean():.0f} m, "
              f"textbook {np.median(textbook):.0f}/{textbook.mean():.0f} m")
        assert np.median(tuned) <= 1.03 * np.median(textbook)
        assert tuned.mean() <= 1.03 * textbook.mean()


def test_validation_table_and_choice(antwerp: dict[str, Inputs]) -> None:
    cfg = {"k_choices": (1, 5, 9), "floor_choices": (-115.0, -130.0)}
    model = KNNFingerprint(cfg).fit(antwerp["train"], antwerp["val"])
    st = model.state_dict()
    table = st["val_table"]
    assert {(r["k"], r["floor_dbm"]) for r in table} == {(k, f) for k in (1, 5, 9) for f in (-115.0, -130.0)}
    best = min(table, key=lambda r: (r["score_m"], r["k"]))
    assert (st["k"], st["floor_dbm"]) == (best["k"], best["floor_dbm"])
    assert all(r["score_m"] == pytest.approx((r["median_m"] + r["mean_m"]) / 2) for r in table)
    # by median alone: the row of least median (k = 1 on this data: a good median, a poor mean)
    st_med = KNNFingerprint({**cfg, "select_by": "median"}).fit(antwerp["train"], antwerp["val"]).state_dict()
    row = min(st_med["val_table"], key=lambda r: (r["median_m"], r["k"]))
    assert (st_med["k"], st_med["floor_dbm"]) == (row["k"], row["floor_dbm"])


def test_state_saved_before_tuning_predicts_as_before(antwerp: dict[str, Inputs]) -> None:
    """A state without ``floor_dbm`` and ``tau_db`` (saved by the earlier kNN) keeps 1/d weights and the config floor."""
    cfg = {"k": 5, "floor_dbm": -130.0, "weighting": "inverse"}
    model = KNNFingerprint(cfg).fit(antwerp["train"])
    old = {k: v for k, v in model.state_dict().items() if k not in ("floor_dbm", "tau_db", "val_table")}
    again = KNNFingerprint.from_state({"k": 5, "floor_dbm": -130.0}, old)  # weighting defaults to softmin now
    np.testing.assert_allclose(again.predict(antwerp["test"]).position_m, model.predict(antwerp["test"]).position_m)


def test_softmin_and_manhattan_options(antwerp: dict[str, Inputs]) -> None:
    te = antwerp["test"].subset(slice(0, 50))
    model = KNNFingerprint({"k": 4, "floor_dbm": -125.0, "metric": "manhattan"}).fit(antwerp["train"].subset(slice(0, 600)))
    pos, w, d = model.neighbours(te)
    feats = np.where(np.isfinite(te.rss_dbm[:, :te.fixed_slots]), te.rss_dbm[:, :te.fixed_slots], -125.0)
    ref = np.asarray(model.state_dict()["fingerprints"][te.scenes[0]]["rss_dbm"], dtype=np.float64)
    l1 = np.abs(feats[:, None] - ref[None]).sum(-1)
    np.testing.assert_allclose(np.sort(d, 1), np.sort(l1, 1)[:, :4], rtol=1e-6)
    tau = model.state_dict()["tau_db"]
    expected = np.exp(-(d - d.min(1, keepdims=True)) / tau)
    np.testing.assert_allclose(w, expected / expected.sum(1, keepdims=True), rtol=1e-9)
    np.testing.assert_allclose((w[..., None] * pos).sum(1), model.predict(te).position_m, atol=1e-6)


def test_median_estimate_is_the_neighbours_geometric_median(antwerp: dict[str, Inputs]) -> None:
    """``estimate="median"``: the weighted geometric median of the k neighbours (follows the ones that agree)."""
    pts = np.array([[[0.0, 0.0], [10.0, 0.0], [1000.0, 0.0]]])
    gm = weighted_geometric_median(pts, np.array([[0.4, 0.3, 0.3]]))
    assert 0.0 <= gm[0, 0] <= 10.0 + 1e-6 and abs(gm[0, 1]) < 1e-9  # the mean would be at 303 m
    rng = np.random.default_rng(0)
    cloud, w = rng.normal(size=(1, 7, 2)) * 50, rng.uniform(0.1, 1, size=(1, 7))
    cost = lambda p: (w[0] * np.hypot(*(cloud[0] - p).T)).sum()
    best = weighted_geometric_median(cloud, w)[0]
    assert all(cost(best) <= cost(best + d) + 1e-6 for d in np.array([[1, 0], [-1, 0], [0, 1], [0, -1]]) * 0.5)
    te = antwerp["test"].subset(slice(0, 60))
    tr = antwerp["train"].subset(slice(0, 600))
    cfg = {"k": 6, "floor_dbm": -120.0}
    mean_model = KNNFingerprint(cfg).fit(tr)
    med = KNNFingerprint({**cfg, "estimate": "median"}).fit(tr).predict(te)
    pos, w, _ = mean_model.neighbours(te)
    np.testing.assert_allclose(med.position_m, weighted_geometric_median(pos, w), atol=1e-6)
    assert not np.allclose(med.position_m, mean_model.predict(te).position_m)


def test_tempered_answer_hedges_and_sigma_sees_two_modes(antwerp: dict[str, Inputs]) -> None:
    """``estimate_temperature`` (issue 15): the answer's weights tempered, the sigma from the untempered ones."""
    # a posterior with one candidate holding 55% and two others 1 km away holding 22.5% each
    pts, w = np.array([[[0.0, 0.0], [1000.0, 0.0], [1000.0, 1000.0]]]), np.array([[0.55, 0.225, 0.225]])
    p1, s1 = posterior_answer(pts, w, estimate="median")
    np.testing.assert_allclose(p1, [[0.0, 0.0]], atol=1.0)  # over half the weight: stays on it
    p3, _ = posterior_answer(pts, w, estimate="median", temperature=3.0)
    wt = w[0] ** (1 / 3) / (w[0] ** (1 / 3)).sum()  # 0.40 / 0.30 / 0.30: no candidate holds half
    cost = lambda p: (wt * np.hypot(*(pts[0] - p).T)).sum()
    steps = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert all(cost(p3[0]) <= cost(p3[0] + d) + 1e-6 for d in steps)  # the tempered weights' geometric median
    assert 100.0 < p3[0, 0] < 1000.0 and 0.0 < p3[0, 1] < p3[0, 0]  # left A for the other two, inside the triangle
    # sigma: the RMS distance of the (untempered) posterior around the answer, per axis
    np.testing.assert_allclose(s1, [[np.sqrt(0.45) * 1000.0, np.sqrt(0.225) * 1000.0]], rtol=1e-3)
    _, s_one = posterior_answer(np.array([[[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]]]), w, estimate="median")
    assert (s_one < 5.0).all() and (s1 > 100 * s_one).all()  # one mode: small; two modes 1 km apart: large
    # the kNN answers so from its own neighbours
    tr, te = antwerp["train"].subset(slice(0, 600)), antwerp["test"].subset(slice(0, 60))
    cfg = {"k": 50, "floor_dbm": -120.0, "estimate": "median"}
    base = KNNFingerprint(cfg).fit(tr)
    hedged = KNNFingerprint({**cfg, "estimate_temperature": 3.0}).fit(tr).predict(te)
    nb_pos, nb_w, _ = base.neighbours(te)
    want_p, want_s = posterior_answer(nb_pos, nb_w, estimate="median", temperature=3.0)
    np.testing.assert_allclose(hedged.position_m, want_p, atol=1e-6)
    np.testing.assert_allclose(hedged.sigma_m, want_s, atol=1e-6)
    assert not np.allclose(hedged.position_m, base.predict(te).position_m)
    with pytest.raises(InvalidInputError, match="estimate_temperature"):
        KNNConfig(estimate_temperature=0.0)
    with pytest.raises(InvalidInputError, match="estimate"):
        posterior_answer(pts, w, estimate="mode")


def test_softmin_tau_has_a_floor(antwerp: dict[str, Inputs]) -> None:
    """Where the median nearest-fingerprint distance is tiny (Duke: 0 dB), tau stays at ``softmin_min_db``."""
    tr = antwerp["train"].subset(slice(0, 600))
    free = KNNFingerprint({"k": 4, "floor_dbm": -125.0, "softmin_min_db": 1e-3}).fit(tr).state_dict()["tau_db"]
    floored = KNNFingerprint({"k": 4, "floor_dbm": -125.0, "softmin_min_db": 4 * free}).fit(tr).state_dict()["tau_db"]
    assert free >= 1e-3 and floored == pytest.approx(4 * free)


def test_neighbours_leave_the_sample_itself_out(antwerp: dict[str, Inputs]) -> None:
    tr = antwerp["train"].subset(slice(0, 300))
    model = KNNFingerprint({"k": 3, "floor_dbm": -125.0}).fit(tr)
    _, _, d_in = model.neighbours(tr)
    _, _, d_out = model.neighbours(tr, exclude_self=True)
    assert np.allclose(d_in.min(1), 0.0, atol=1e-3)  # each sample finds itself
    assert (d_out.min(1) >= d_in.min(1)).all() and (d_out.min(1) > 0).mean() > 0.5


def test_criterion_and_bad_options() -> None:
    err = np.array([1.0, 2.0, 3.0, 10.0])
    assert knn_criterion(err, "median") == 2.5 and knn_criterion(err, "mean") == 4.0
    assert knn_criterion(err, "median_mean") == 3.25
    with pytest.raises(InvalidInputError, match="floor_choices"):
        KNNConfig(floor_choices=(-120.0, 5.0))
    with pytest.raises(InvalidInputError, match="select_by"):
        KNNConfig(select_by="p95")
    with pytest.raises(InvalidInputError, match="metric"):
        KNNConfig(metric="cosine")
    with pytest.raises(InvalidInputError, match="estimate"):
        KNNConfig(estimate="mode")


def test_radio_map_scores_training_positions(antwerp: dict[str, Inputs]) -> None:
    """``radio_map_m``: neighbours by fingerprint distance and the smoothed radio map's likelihood (issue 15).

    The map is the kernel average of the training reports (hand check at one position), it beats the
    plain neighbours' geometric median on held-out Antwerp messages, and a saved state predicts the same.
    """
    from rflocal_core.models.radiomap import PRIOR_COUNT, PRIOR_HEARD, fit_radio_map

    tr, te = antwerp["train"], antwerp["test"].subset(slice(0, 400))
    cfg = {"k": 30, "floor_dbm": -120.0, "estimate": "median"}
    plain = errors_m(KNNFingerprint(cfg).fit(tr).predict(te), te)
    model = KNNFingerprint({**cfg, "radio_map_m": 35.0}).fit(tr)
    mapped = errors_m(model.predict(te), te)
    print(f"plain {np.median(plain):.0f}/{plain.mean():.0f} m, radio map {np.median(mapped):.0f}/{mapped.mean():.0f} m")
    assert np.median(mapped) < 0.9 * np.median(plain)
    # the map at one training position, slot by slot: kernel average with the prior's pseudo-count
    raw = tr.rss_dbm[:, : tr.fixed_slots]
    xy = tr.node_pos_m[0, : tr.fixed_slots, :2]
    m = fit_radio_map(tr.truth_m, raw, xy, bandwidth_m=35.0)
    w = np.exp(-0.5 * ((tr.truth_m - tr.truth_m[7]) ** 2).sum(1) / 35.0**2)
    busy = int(np.argmax(np.isfinite(raw).sum(0)))
    p = (w @ np.isfinite(raw[:, busy]) + PRIOR_COUNT * PRIOR_HEARD) / (w.sum() + PRIOR_COUNT)
    assert m["p_heard"][7, busy] == pytest.approx(np.clip(p, 0.05, 0.95), rel=1e-5)
    h = np.isfinite(raw[:, busy])
    mean = float(m["mean_dbm"][7, busy])
    spread = np.sqrt((w[h] @ (raw[h, busy] - mean) ** 2 + PRIOR_COUNT * 3.0**2) / (w[h].sum() + PRIOR_COUNT))
    assert m["spread_db"][7, busy] == pytest.approx(max(spread, 1.0), rel=1e-4)  # local spread, prior 3 dB
    p0, n, sigma = m["path_loss"][busy]
    assert 1.5 <= n <= 6.0 and -60 < p0 < 40 and 2 < sigma < 15  # a censored log-distance fit of that gateway
    few = te.subset(slice(0, 100))
    again = KNNFingerprint.from_state(model.config.to_dict(), model.state_dict())
    np.testing.assert_allclose(again.predict(few).position_m, model.predict(few).position_m)
    local = KNNFingerprint({**cfg, "radio_map_m": 35.0, "radio_map_spread": "local", "radio_map_weight": 1.0}).fit(tr)
    assert "spread_db" in local.state_dict()["fingerprints"][tr.scenes[0]]
    assert not np.allclose(local.predict(few).position_m, model.predict(few).position_m)
    with pytest.raises(InvalidInputError, match="weighting"):
        KNNConfig(radio_map_m=35.0, weighting="inverse")


def test_adaptive_radio_map_bandwidth_helps_thinly_sampled_messages(antwerp: dict[str, Inputs]) -> None:
    """``radio_map_adaptive_k``: the map's kernel widens where training positions are thin (issue 15, brief B19).

    Held-out Antwerp messages with fewer than 20 training messages within 100 m of their truth are
    placed better (mean) than with the fixed 35 m map; the width at a position is the distance to its
    k-th nearest other training position, clipped; off (None) leaves the map as it was.
    """
    from scipy.spatial import cKDTree

    from rflocal_core.models.radiomap import adaptive_bandwidth_m, fit_radio_map, heard_prior

    tr, te = antwerp["train"], antwerp["test"]
    near = np.array([len(r) for r in cKDTree(tr.truth_m).query_ball_point(te.truth_m, 100.0)])
    thin = te.subset(np.flatnonzero(near < 20))
    cfg = {"k": 30, "floor_dbm": -120.0, "estimate": "median", "radio_map_m": 35.0, "radio_map_spread": "local",
           "radio_map_weight": 1.0}
    fixed = errors_m(KNNFingerprint(cfg).fit(tr).predict(thin), thin)
    wide = errors_m(KNNFingerprint({**cfg, "radio_map_adaptive_k": 10, "radio_map_max_m": 600.0}).fit(tr).predict(thin),
                    thin)
    print(f"{len(thin)} thin messages: fixed {np.median(fixed):.0f}/{fixed.mean():.0f} m, "
          f"adaptive {np.median(wide):.0f}/{wide.mean():.0f} m")
    assert wide.mean() < 0.9 * fixed.mean()
    w = adaptive_bandwidth_m(tr.truth_m, bandwidth_m=35.0, k=10, max_m=600.0)
    for j in (0, 500, 2000):
        d = np.sort(np.hypot(*(tr.truth_m - tr.truth_m[j]).T))[10]  # index 0: the position itself
        assert w[j] == pytest.approx(min(max(d, 35.0), 600.0))
    assert w.min() == pytest.approx(35.0) and w.max() > 35.0
    raw, xy = tr.rss_dbm[:, : tr.fixed_slots], tr.node_pos_m[0, : tr.fixed_slots, :2]
    off = fit_radio_map(tr.truth_m[:300], raw[:300], xy, bandwidth_m=35.0)
    on = fit_radio_map(tr.truth_m[:300], raw[:300], xy, bandwidth_m=35.0, adaptive_k=1, max_bandwidth_m=35.0)
    np.testing.assert_array_equal(off["mean_dbm"], on["mean_dbm"])  # every width clipped to 35 m: the fixed map
    # the heard prior: each node's share of reports, or its censored fit's chance of clearing its floor
    rate = heard_prior(raw, off["path_loss"], np.full(raw.shape, -100.0), "rate")
    busy = int(np.argmax(np.isfinite(raw).sum(0)))
    assert rate[0, busy] == pytest.approx(np.clip(np.isfinite(raw[:, busy]).mean(), 0.05, 0.95))
    loud = heard_prior(raw, off["path_loss"], np.full(raw.shape, 0.0), "path_loss")
    assert loud[0, busy] == pytest.approx(0.95)  # 0 dBm at the position: certainly above the floor (clipped)
    with pytest.raises(InvalidInputError, match="radio_map_heard_prior"):
        KNNConfig(radio_map_m=35.0, radio_map_heard_prior="always")
