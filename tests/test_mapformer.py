"""mapformer on synthetic map batches: shapes, masks, the physics lookup and loss, refinement,
overfitting, augmentation, configuration errors and the ablation options."""

from __future__ import annotations

import math

import pytest
import torch

from rflocal_core.errors import InvalidInputError
from rflocal_core.models.features import TOKEN_COLUMNS, Batch
from rflocal_core.models.mapformer import (PRIOR_TERMS, MapFormer, MapFormerConfig, _pool_prior, physics_loglik,
                                           physics_residual)
from rflocal_core.models.maps import MapBatch, lookup, pg_to_unit, unit_to_pg_db

SMALL = {"d_model": 32, "heads": 2, "layers": 1}
NO_AUGMENT = {"node_dropout": [0.0], "feature_dropout": 0.0, "map_rotation_deg": 0.0, "map_scale": 0.0}
EXTENT_M = 200.0


def synthetic(n: int, *, sites: int = 4, res: int = 32, seed: int = 0, tx_known: bool = True,
              noise_db: float = 0.0) -> MapBatch:
    """Sites on the unit square with log-distance path-gain maps; RSS = 20 dBm + the map at the truth."""
    site_xy = torch.rand(sites, 2, generator=torch.Generator().manual_seed(99)) * 0.8 + 0.1
    g = torch.Generator().manual_seed(seed)
    u = (torch.arange(res) + 0.5) / res
    gy, gx = torch.meshgrid(u, u, indexing="ij")
    d_m = torch.hypot(gx - site_xy[:, 0, None, None], gy - site_xy[:, 1, None, None]) * EXTENT_M
    maps = pg_to_unit(-40.0 - 30.0 * torch.log10(d_m.clamp_min(1.0)))
    truth = torch.rand(n, 2, generator=g) * 0.9 + 0.05
    site_maps = maps.expand(n, -1, -1, -1).clone()
    rss = 20.0 + unit_to_pg_db(lookup(site_maps, truth)) + noise_db * torch.randn((n, sites), generator=g)
    delta = truth[:, None] - site_xy[None]
    bearing = torch.atan2(delta[..., 0], delta[..., 1])
    ones = torch.ones(n, sites)
    cols = {"node_z": 0.2 * ones, "pos_ok": ones, "rss": (rss + 120.0) / 90.0, "rss_ok": ones,
            "aoa_sin": bearing.sin(), "aoa_cos": bearing.cos(), "aoa_ok": ones, "toa": delta.norm(dim=-1),
            "toa_ok": ones, "tx": ones * (20.0 / 50.0 if tx_known else 0.0), "tx_ok": ones * float(tx_known)}
    feats = torch.stack([cols[c] for c in TOKEN_COLUMNS], -1)
    base = Batch(site_xy.expand(n, -1, -1).clone(), feats, torch.arange(1, sites + 1).expand(n, -1).clone(),
                 torch.ones(n, sites, dtype=torch.bool), truth)
    scene = (torch.rand(n, 4, res, res, generator=g) < 0.3).float()
    return MapBatch(base, site_maps, torch.ones(n, sites, res, res, dtype=torch.bool),
                    torch.ones(n, sites, dtype=torch.bool), scene)


def slots(mb: MapBatch, keep: list[int]) -> MapBatch:
    """The batch with only the slots ``keep`` (in that order)."""
    b = mb.base
    k = torch.tensor(keep)
    return MapBatch(Batch(b.node_xy[:, k], b.feats[:, k], b.node_id[:, k], b.mask[:, k], b.truth),
                    mb.site_maps[:, k], mb.site_ok[:, k], mb.site_has_map[:, k], mb.scene_rasters)


def net_for(vocab: int = 4, seed: int = 0, **options) -> MapFormer:
    torch.manual_seed(seed)
    return MapFormer(MapFormerConfig.from_dict({**SMALL, **options}), vocab_size=vocab)


def test_output_shapes_and_an_empty_sample():
    mb = synthetic(3)
    net = net_for(grid_cells=8, top_k=3).eval()
    with torch.no_grad():
        out = net(mb)
    assert out["mu"].shape == (3, 2) and out["sigma"].shape == (3, 2)
    assert out["coarse_logits"].shape == (3, 64)
    assert out["topk_cells"].shape == (3, 3) and out["topk_mu"].shape == (3, 3, 2)
    assert out["topk_prob"].shape == (3, 3) and torch.allclose(out["topk_prob"].sum(1), torch.ones(3))
    assert out["residual_db"].shape == (3,)
    assert (out["sigma"] > 0).all() and torch.isfinite(out["mu"]).all()
    # mu is the best cell's centre plus an offset of at most one cell
    best = out["coarse_logits"].argmax(1)
    centre = torch.stack([best % 8, best // 8], -1).float().add(0.5) / 8
    assert ((out["mu"] - centre).abs() <= 1 / 8 + 1e-6).all()
    # a sample without any report: finite, no physics evidence (NaN residual)
    empty = mb.index(slice(0, 1)).with_base(Batch(*(t[:1] for t in (
        mb.base.node_xy, mb.base.feats, mb.base.node_id, torch.zeros_like(mb.base.mask), mb.base.truth))))
    with torch.no_grad():
        e = net(empty)
    assert torch.isfinite(e["mu"]).all() and (e["sigma"] > 0).all() and torch.isnan(e["residual_db"]).all()
    with pytest.raises(InvalidInputError, match="mapformer: expected a MapBatch"):
        net(mb.base)


@pytest.mark.parametrize("encoder", ["patch", "cnn"])
def test_masking_a_slot_equals_removing_it_and_slot_order_does_not_matter(encoder):
    mb = synthetic(6, sites=5, seed=1)
    net = net_for(vocab=5, map_encoder=encoder).eval()
    masked = MapBatch(mb.base, mb.site_maps.clone(), mb.site_ok.clone(), mb.site_has_map, mb.scene_rasters)
    masked.base = Batch(mb.base.node_xy, mb.base.feats.clone(), mb.base.node_id, mb.base.mask.clone(), mb.base.truth)
    masked.base.mask[:, 2] = False
    masked.base.feats[:, 2] = 7.0  # whatever a masked slot holds is ignored
    masked.site_maps[:, 2] = torch.rand(masked.site_maps[:, 2].shape)
    masked.site_ok[:, 2] = False
    removed = slots(mb, [0, 1, 3, 4])
    permuted = slots(mb, [3, 0, 4, 2, 1])
    with torch.no_grad():
        a, b, full, p = net(masked), net(removed), net(mb), net(permuted)
    for key in ("mu", "sigma", "coarse_logits", "residual_db"):
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(p[key], full[key], atol=1e-5, rtol=1e-4)
    # and the slot does matter when it is not masked (the test is not vacuous)
    assert (a["coarse_logits"] - full["coarse_logits"]).abs().max() > 1e-3


def test_lookup_is_exact_at_cell_centres_and_bilinear_between():
    h, w = 6, 8
    maps = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(5))
    iy, ix = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    centres = torch.stack([(ix.flatten() + 0.5) / w, (iy.flatten() + 0.5) / h], -1)  # row 0 in the south
    for n in range(2):
        got = lookup(maps[n:n + 1].expand(len(centres), -1, -1, -1), centres)  # [H*W, 3]
        torch.testing.assert_close(got, maps[n].flatten(1).T, atol=1e-6, rtol=0)
    # a quarter of the way from cell (2, 3) to its east neighbour, and half-way to its north one
    i, j = 2, 3
    east = torch.tensor([[(j + 0.5 + 0.25) / w, (i + 0.5) / h]])
    torch.testing.assert_close(lookup(maps[:1], east)[0], 0.75 * maps[0, :, i, j] + 0.25 * maps[0, :, i, j + 1])
    north = torch.tensor([[(j + 0.5) / w, (i + 1.0) / h]])
    torch.testing.assert_close(lookup(maps[:1], north)[0], 0.5 * (maps[0, :, i, j] + maps[0, :, i + 1, j]))
    mid = torch.tensor([[(j + 1.0) / w, (i + 1.0) / h]])
    torch.testing.assert_close(lookup(maps[:1], mid)[0], maps[0, :, i:i + 2, j:j + 2].mean((-1, -2)))


@pytest.mark.parametrize("tx_known", [True, False], ids=["tx-known", "emitter"])
def test_physics_loss_vanishes_at_the_truth_grows_away_and_has_gradients(tx_known):
    mb = synthetic(16, seed=2, tx_known=tx_known)
    truth = mb.base.truth
    mse, has = physics_residual(mb, truth)
    assert has.all() and mse.max() < 1e-6
    far, _ = physics_residual(mb, (truth + 0.05).clamp(0, 1))  # 10 m off
    assert (far > 0.01).all() and far.median() > 1.0
    # a slot without a map, or without a ray there, is left out whatever its RSS says
    bad = MapBatch(mb.base, mb.site_maps, mb.site_ok.clone(), mb.site_has_map.clone(), mb.scene_rasters)
    bad.base = Batch(mb.base.node_xy, mb.base.feats.clone(), mb.base.node_id, mb.base.mask, truth)
    bad.base.feats[:, :2, TOKEN_COLUMNS.index("rss")] = 0.0  # -120 dBm, far off the maps
    bad.site_has_map[:, 0] = False
    bad.site_ok[:, 1] = False
    assert physics_residual(bad, truth)[0].max() < 1e-6

    net = net_for(grid_cells=8)
    out = net(mb)
    out["mu"] = truth.clone()
    assert net.loss(mb, out)[1]["physics"] < 1e-8
    mu = (truth + 0.03).clamp(0, 1).requires_grad_(True)
    out["mu"] = mu
    loss, parts = net.loss(mb, out)
    assert parts["physics"] > 0.01
    loss.backward()
    assert torch.isfinite(mu.grad).all() and (mu.grad.abs().sum(1) > 0).all()


@pytest.mark.parametrize("tx_known", [True, False], ids=["tx-known", "emitter"])
def test_refine_reduces_the_residual_on_consistent_data(tx_known):
    mb = synthetic(24, seed=3, tx_known=tx_known)
    start = (mb.base.truth + torch.tensor([0.03, -0.02])).clamp(0, 1)
    net = net_for(grid_cells=8).eval()
    before = physics_residual(mb, start)[0].sqrt()
    with torch.no_grad():  # as at inference
        mu, resid = net.refine(mb, {"mu": start}, steps=60, lr=0.004)
    assert (resid <= before + 1e-6).all()
    assert resid.median() < 0.3 * before.median()
    err0 = (start - mb.base.truth).norm(dim=-1)
    err1 = (mu - mb.base.truth).norm(dim=-1)
    assert err1.median() < 0.5 * err0.median()
    # forward applies it in eval mode when refine_steps > 0
    net = net_for(grid_cells=8, refine_steps=5).eval()
    with torch.no_grad():
        out = net(mb)
    assert {"mu_net", "residual_db"} <= set(out)
    plain = physics_residual(mb, out["mu_net"])[0].sqrt()
    assert (out["residual_db"] <= plain + 1e-5).all()


def test_overfits_a_tiny_dataset():
    mb = synthetic(64, seed=3)
    cfg = {**NO_AUGMENT, "grid_cells": 8}
    net = net_for(**cfg)
    steps = 120
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    net.train()
    for _ in range(steps):
        out = net(mb)
        loss, parts = net.loss(mb, out)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        out = net(mb)
    err_cells = (out["mu"] - mb.base.truth).norm(dim=-1) * 8
    assert err_cells.median() < 0.2, f"median training error {float(err_cells.median()):.3f} cells"
    assert parts["coarse"] < 0.1 and parts["physics"] < 0.05


@pytest.mark.parametrize(("options", "message"), [
    ({"map_encoder": "rnn"}, "map_encoder: expected one of patch, cnn, got 'rnn'"),
    ({"grid_cells": 4, "top_k": 17}, r"top_k: expected at most grid_cells\^2 = 16, got 17"),
    ({"grid_cells": 1}, r"grid_cells: expected an integer in \[2, 128\], got 1"),
    ({"physics_weight": -0.1}, r"physics_weight: expected a number in \[0.0, 100.0\], got -0.1"),
    ({"d_model": 60, "heads": 8}, r"heads: d_model \(60\) must be divisible by heads"),
    ({"use_scene": "no"}, "use_scene: expected true or false, got 'no'"),
    ({"use_radio_maps": 1}, "use_radio_maps: expected true or false, got 1"),
    ({"refine_steps": 2.5}, r"refine_steps: expected an integer in \[0, 1000\], got 2.5"),
    ({"refine_lr": 0.0}, r"refine_lr: expected a number in \[1e-05, 0.5\]"),
    ({"feature_dropout": 0.95}, r"feature_dropout: expected a number in \[0.0, 0.9\]"),
    ({"map_rotation_deg": 90}, r"map_rotation_deg: expected a number in \[0.0, 45.0\] deg, got 90"),
    ({"patch_size": 0}, r"patch_size: expected an integer in \[1, 64\], got 0"),
    ({"patch": 8}, r"unknown option\(s\) \['patch'\]"),
    ({"physics_prior": "yes"}, "physics_prior: expected true or false, got 'yes'"),
    ({"prior_toa_sigma_m": 0.0}, r"prior_toa_sigma_m: expected a number in \[0.1, 1000.0\] m, got 0.0"),
    ({"prior_aoa_sigma_deg": 120}, r"prior_aoa_sigma_deg: expected a number in \[0.1, 90.0\] deg, got 120"),
])
def test_bad_options_name_the_field(options, message):
    with pytest.raises(InvalidInputError, match=message):
        MapFormerConfig.from_dict(options)


@pytest.mark.parametrize("options", [
    {"use_radio_maps": False}, {"use_scene": False}, {"use_radio_maps": False, "use_scene": False},
    {"physics_weight": 0.0}, {"physics_weight": 1.0}, {"top_k": 0}, {"top_k": 1}, {"map_encoder": "cnn"},
    {"map_layers": 0}, {"patch_size": 7}, {"refine_steps": 3}, {"physics_prior": False},
    {"physics_prior": True, "use_radio_maps": False},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_ablation_options_train_and_predict(options):
    mb = synthetic(8, seed=4)
    net = net_for(grid_cells=8, **options)
    net.train()
    batch = net.augment(mb, epoch_fraction=0.5, extent_m=EXTENT_M, generator=torch.Generator().manual_seed(0))
    out = net(batch)
    loss, parts = net.loss(batch, out)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    assert ("fine" in parts) == (net.config.top_k > 0)
    expected = parts["coarse"] + parts["position"] + parts.get("fine", 0.0) + net.config.physics_weight * parts[
        "physics"]
    assert math.isclose(float(loss.detach()), expected, rel_tol=1e-4, abs_tol=1e-5)
    net.eval()
    with torch.no_grad():
        pred = net(mb)
    assert pred["mu"].shape == (8, 2) and torch.isfinite(pred["mu"]).all() and (pred["sigma"] > 0).all()


def test_augmentation_moves_maps_positions_and_measurements_together():
    mb = synthetic(32, res=64, seed=6)
    net = net_for(map_rotation_deg=20.0, map_scale=0.2, node_dropout=[0.0], feature_dropout=0.5)
    a = net.augment(mb, epoch_fraction=0.0, extent_m=EXTENT_M, generator=torch.Generator().manual_seed(1))
    assert isinstance(a, MapBatch)
    b = a.base
    assert (b.truth - mb.base.truth).abs().max() > 0.01  # it moved
    # the rotated/scaled maps at the moved truth still explain the (unchanged) RSS
    mse, has = physics_residual(a.with_base(Batch(b.node_xy, mb.base.feats, b.node_id, b.mask, b.truth)), b.truth)
    assert has.all() and mse.sqrt().median() < 0.1
    # AoA and ToA follow the moved geometry where they were kept
    delta = b.truth[:, None] - b.node_xy
    bearing = torch.atan2(delta[..., 0], delta[..., 1])
    aoa_ok, toa_ok = b.col("aoa_ok") > 0, b.col("toa_ok") > 0
    torch.testing.assert_close(b.col("aoa_sin")[aoa_ok], bearing.sin()[aoa_ok], atol=1e-5, rtol=0)
    torch.testing.assert_close(b.col("aoa_cos")[aoa_ok], bearing.cos()[aoa_ok], atol=1e-5, rtol=0)
    torch.testing.assert_close(b.col("toa")[toa_ok], delta.norm(dim=-1)[toa_ok], atol=1e-5, rtol=0)
    # feature dropout removed some groups, never all of a token's
    kept = torch.stack([b.col(c) > 0 for c in ("rss_ok", "aoa_ok", "toa_ok")], -1)
    assert kept.any(-1).all() and not kept.all()
    # with the augmentation options off nothing moves
    off = net_for(**NO_AUGMENT).augment(mb, epoch_fraction=0.0, extent_m=EXTENT_M,
                                        generator=torch.Generator().manual_seed(1))
    assert torch.equal(off.base.truth, mb.base.truth) and torch.equal(off.site_maps, mb.site_maps)


def test_augmentation_keeps_far_nodes_toa_in_the_window_frame():
    """The window frame keeps ToA ranges up to 16 window sides (a node 1 km from a 256 m window); the rotation and
    scaling once clamped every range at 4 sides, so the prior's ToA term put such a target 4 sides from its node
    and the training data's prior was wrong for ~15% of samples (coarse cross-entropy ~300 nats, issue 19)."""
    mb = synthetic(16, res=32, seed=3)
    b = mb.base
    node_xy = b.node_xy.clone()
    node_xy[:, 0] = torch.tensor([6.0, 0.5])  # ~5.5 sides east of every target
    feats = b.feats.clone()
    feats[..., TOKEN_COLUMNS.index("toa")] = (b.truth[:, None] - node_xy).norm(dim=-1)
    mb = mb.with_base(Batch(node_xy, feats, b.node_id, b.mask, b.truth))
    net = net_for(frame="window", map_rotation_deg=5.0, map_scale=0.05, node_dropout=[0.0], feature_dropout=0.0)
    a = net.augment(mb, epoch_fraction=0.0, extent_m=EXTENT_M, generator=torch.Generator().manual_seed(2)).base
    far = (a.truth[:, None] - a.node_xy).norm(dim=-1)[:, 0]
    assert float(far.min()) > 4.5
    torch.testing.assert_close(a.col("toa")[:, 0], far, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- physics prior


def _with_extent(mb: MapBatch, *, toa_3d: bool = True) -> MapBatch:
    """``mb`` with its extent in metres and ToA as the 3D distance node -> truth (target on the ground)."""
    b = mb.base
    feats = b.feats.clone()
    if toa_3d:
        dz = b.col("node_z") * 100.0 / EXTENT_M
        d2 = (b.truth[:, None] - b.node_xy).norm(dim=-1)
        feats[..., TOKEN_COLUMNS.index("toa")] = torch.sqrt(d2 ** 2 + dz ** 2)
    return MapBatch(Batch(b.node_xy, feats, b.node_id, b.mask, b.truth), mb.site_maps, mb.site_ok, mb.site_has_map,
                    mb.scene_rasters, EXTENT_M)


def _cell_of(pos: torch.Tensor, res: int) -> torch.Tensor:
    return (pos * res).floor().long().clamp(0, res - 1)


@pytest.mark.parametrize("term", ["rss", "toa", "aoa"])
def test_each_physics_term_peaks_at_the_true_cell_on_consistent_data(term):
    res = 32
    mb = _with_extent(synthetic(6, res=res, seed=11))
    ll = physics_loglik(mb, rss_sigma_db=6.0, toa_sigma_m=4.0, aoa_sigma_deg=5.0)
    assert ll.shape == (6, len(PRIOR_TERMS), res, res) and torch.isfinite(ll).all()
    t = ll[:, PRIOR_TERMS.index(term)]
    best = t.flatten(1).argmax(1)
    best_xy = torch.stack([best % res, best // res], -1)
    # the argmax is the truth's cell or a neighbour (the truth is not at a cell centre)
    assert ((best_xy - _cell_of(mb.base.truth, res)).abs() <= 1).all(), term


def test_physics_terms_are_the_formulas():
    res = 16
    mb = _with_extent(synthetic(2, res=res, seed=12, tx_known=True))
    ll = physics_loglik(mb, rss_sigma_db=5.0, toa_sigma_m=4.0, aoa_sigma_deg=5.0)
    # RSS at one cell: -sum_j (rss_j - tx - pg_j(c))^2 / (2 sigma^2)
    iy, ix = 3, 9
    pg = unit_to_pg_db(mb.site_maps[0, :, iy, ix])
    rss = mb.base.col("rss")[0] * 90.0 - 120.0
    expected = -((rss - 20.0 - pg) ** 2).sum() / (2 * 5.0 ** 2)
    assert math.isclose(float(ll[0, 0, iy, ix]), float(expected), rel_tol=1e-4)
    # indoor: -3 nats where the footprint raster is set, 0 elsewhere
    foot = mb.scene_rasters[:, 1] > 0.5
    assert torch.equal(ll[:, 3] == -3.0, foot) and (ll[:, 3][~foot] == 0).all()
    # without an extent in metres, ToA gives no evidence
    no_extent = MapBatch(mb.base, mb.site_maps, mb.site_ok, mb.site_has_map, mb.scene_rasters)
    assert (physics_loglik(no_extent, rss_sigma_db=5.0, toa_sigma_m=4.0, aoa_sigma_deg=5.0)[:, 1] == 0).all()


def test_physics_loglik_ignores_masked_slots_even_with_garbage():
    mb = _with_extent(synthetic(3, res=16, seed=13))
    b = mb.base
    feats = b.feats.clone()
    feats[:, 1] = float("nan")
    mask = b.mask.clone()
    mask[:, 1] = False
    masked = MapBatch(Batch(b.node_xy, feats, b.node_id, mask, b.truth), mb.site_maps, mb.site_ok, mb.site_has_map,
                      mb.scene_rasters, EXTENT_M)
    kw = {"rss_sigma_db": 6.0, "toa_sigma_m": 4.0, "aoa_sigma_deg": 5.0}
    without = _with_extent(slots(mb, [0, 2, 3]), toa_3d=False)  # the slot removed (ToA already 3D)
    torch.testing.assert_close(physics_loglik(masked, **kw), physics_loglik(without, **kw))


def test_pool_prior_is_the_log_sum_exp_and_the_mean_offset_in_each_cell():
    g, k = 4, 4
    total = torch.full((1, g * k, g * k), -1e4)
    total[0, 5, 6] = 0.0  # one sub-cell of coarse cell (row 1, col 1) dominates
    lse, offset = _pool_prior(total, g)
    assert lse.shape == (1, g * g) and offset.shape == (1, g * g, 2)
    cell = 1 * g + 1
    assert math.isclose(float(lse[0, cell]), 0.0, abs_tol=1e-6) and lse[0].argmax() == cell
    # sub-cell (5, 6) of the 16 x 16 grid: centre (6.5 / 16, 5.5 / 16); cell centre (1.5 / 4, 1.5 / 4)
    torch.testing.assert_close(offset[0, cell], torch.tensor([6.5 / 16 - 1.5 / 4, 5.5 / 16 - 1.5 / 4]))
    # a flat cell: offset 0; a raster whose side is not a multiple of g is resampled
    assert offset[0, 0].abs().max() < 1e-6
    lse2, off2 = _pool_prior(torch.zeros(2, 10, 10), g)
    assert lse2.shape == (2, g * g) and torch.isfinite(lse2).all() and off2.abs().max() < 1e-6


def test_max_pooled_prior_picks_the_cell_of_the_sharp_peak_over_a_broad_one():
    """prior_pool="max": the coarse cell holding the prior's best map cell wins, even where another coarse cell
    holds more prior mass (log-sum-exp picks that one); its offset is that map cell's centre."""
    g, k = 4, 4
    total = torch.full((1, g * k, g * k), -1e4)
    total[0, 0:4, 0:4] = -1.0  # coarse cell 0: 16 map cells at -1 (mass e^-1 * 16 ~ 5.9)
    total[0, 9, 14] = 0.0  # coarse cell (row 2, col 3): one map cell at 0 (mass 1)
    lse, _ = _pool_prior(total, g, "lse")
    peak, offset = _pool_prior(total, g, "max")
    sharp = 2 * g + 3
    assert int(lse[0].argmax()) == 0 and int(peak[0].argmax()) == sharp
    assert math.isclose(float(peak[0, 0]), -1.0) and math.isclose(float(peak[0, sharp]), 0.0)
    torch.testing.assert_close(offset[0, sharp], torch.tensor([14.5 / 16 - 3.5 / 4, 9.5 / 16 - 2.5 / 4]))


def test_the_prior_makes_an_untrained_network_locate_consistent_data():
    mb = _with_extent(synthetic(16, res=32, seed=14))
    with torch.no_grad():
        on = net_for(grid_cells=8, physics_prior=True).eval()(mb)
        off = net_for(grid_cells=8, physics_prior=False).eval()(mb)
    err_on = (on["mu"] - mb.base.truth).norm(dim=-1) * EXTENT_M
    err_off = (off["mu"] - mb.base.truth).norm(dim=-1) * EXTENT_M
    assert float(err_on.median()) < 15.0 < float(err_off.median())


def test_untrained_max_pooled_network_answers_the_priors_argmax():
    """prior_pool="max" (prior_subcell=0): the untrained network's answer is the centre of the prior's best map cell
    over the whole raster, on noisy data where that is not the truth; "lse" leaves it where another coarse cell
    holds more prior mass (issue 19: 15% of held-out Paris samples)."""
    res = 32
    mb = _with_extent(synthetic(48, res=res, seed=21, noise_db=8.0))
    b = mb.base
    feats = b.feats.clone()
    for col in ("aoa_sin", "aoa_cos", "aoa_ok", "toa", "toa_ok"):  # RSS alone: a broad, many-peaked prior
        feats[..., TOKEN_COLUMNS.index(col)] = 0.0
    mb = mb.with_base(Batch(b.node_xy, feats, b.node_id, b.mask, b.truth))
    kw = {"grid_cells": 8, "prior_subcell": 0, "use_scene": False}
    with torch.no_grad():
        mu = {pool: net_for(prior_pool=pool, **kw).eval()(mb)["mu"] for pool in ("max", "lse")}
        ll = physics_loglik(mb, rss_sigma_db=6.5, toa_sigma_m=4.0, aoa_sigma_deg=7.0)[:, :3].sum(1).flatten(1)
    best = ll.argmax(1)
    argmax = torch.stack([best % res, best // res], -1).float().add(0.5) / res
    torch.testing.assert_close(mu["max"], argmax, atol=1e-6, rtol=0)
    off = (mu["lse"] - argmax).norm(dim=-1) * res  # map cells
    assert int((off > 2).sum()) >= 1, off


def test_a_checkpoint_whose_weights_do_not_fit_is_refused_with_a_clear_error():
    from rflocal_core.models.features import FeatureSpec
    from rflocal_core.models.neural import NeuralModel

    net = net_for(vocab=2)
    spec = FeatureSpec((0.0, 0.0), EXTENT_M, ("a", "b"), 4)
    payload = {"model": "mapformer", "config": {"model_config": net.config.to_dict(), "features": spec.to_dict()},
               "state": {k: v.numpy() for k, v in net.state_dict().items()}}
    assert NeuralModel.from_checkpoint(payload).name == "mapformer"
    del payload["state"]["prior_weight"]  # a run from before the physics prior
    with pytest.raises(InvalidInputError, match="checkpoint: the weights of this mapformer run do not fit"):
        NeuralModel.from_checkpoint(payload)


# --------------------------------------------------------------------------- history tokens


def _with_history(mb: MapBatch, steps: int = 3, seed: int = 0) -> MapBatch:
    """``mb`` plus ``steps`` earlier RSS reports of every slot, ages 1 .. steps seconds."""
    b = mb.base
    n, s = b.mask.shape
    g = torch.Generator().manual_seed(seed)
    rss = b.col("rss").unsqueeze(1).expand(n, steps, s) + 0.02 * torch.randn((n, steps, s), generator=g)
    age = torch.arange(1, steps + 1, dtype=torch.float32).view(1, steps, 1).expand(n, steps, s) / 10.0
    hist = torch.stack([rss, age], -1)
    hist_mask = b.mask.unsqueeze(1).expand(n, steps, s).clone()
    base = Batch(b.node_xy, b.feats, b.node_id, b.mask, b.truth, hist, hist_mask)
    return mb.with_base(base)


def test_history_tokens_are_read_masked_and_follow_the_slots():
    mb = synthetic(4, res=16, seed=21)
    net = net_for(grid_cells=4, physics_prior=False).eval()  # with the prior, untrained logits are the prior's
    hb = _with_history(mb)
    with torch.no_grad():
        plain, with_hist = net(mb), net(hb)
        # no history token set == no history at all (the snapshot network)
        none = net(hb.with_base(hb.base.with_tokens(hist_mask=torch.zeros_like(hb.base.hist_mask))))
        # a masked history token with garbage values is ignored
        garbage = hb.base.hist.clone()
        garbage[:, 0] = float("nan")
        hm = hb.base.hist_mask.clone()
        hm[:, 0] = False
        masked = net(hb.with_base(Batch(*(getattr(hb.base, k) for k in ("node_xy", "feats", "node_id", "mask",
                                                                          "truth")), garbage, hm)))
        fewer = net(hb.with_base(hb.base.with_tokens(hist_mask=hm)))
    assert not torch.allclose(plain["coarse_logits"], with_hist["coarse_logits"])
    torch.testing.assert_close(none["coarse_logits"], plain["coarse_logits"])
    torch.testing.assert_close(masked["coarse_logits"], fewer["coarse_logits"])
    # a slot that stops reporting loses its history too
    drop = hb.base.mask.clone()
    drop[:, 0] = False
    assert not hb.base.with_tokens(mask=drop).hist_mask[:, :, 0].any()


def test_temporal_dropout_drops_earlier_reports_in_training_only():
    hb = _with_history(synthetic(64, res=16, seed=22), steps=4)
    # without the prior (whose zero-initialized heads pass no gradient back on the first step)
    net = net_for(grid_cells=4, temporal_dropout=0.5, physics_prior=False, **NO_AUGMENT)
    a = net.augment(hb, epoch_fraction=0.0, extent_m=EXTENT_M, generator=torch.Generator().manual_seed(0))
    kept = float(a.base.hist_mask.sum()) / float(hb.base.hist_mask.sum())
    assert 0.4 < kept < 0.6
    net.train()
    loss, _ = net.loss(a, net(a))
    loss.backward()
    assert torch.isfinite(loss) and net.hist_mlp[0].weight.grad.abs().sum() > 0


def test_history_tokens_read_their_phy_columns_masked_where_absent_and_old_weights_load():
    """history_phy: an earlier report's PHY/MAC columns move the output; all absent (zeros, ``ok`` 0) is the same
    as a history without them; weights from before the option (no PHY inputs in hist_mlp) compute what they did."""
    from rflocal_core.models.features import PHY_COLUMNS

    mb = synthetic(4, res=16, seed=23)
    b = mb.base
    n, s = b.mask.shape
    feats = torch.cat([b.feats, torch.zeros(n, s, len(PHY_COLUMNS))], -1)  # current reports: no PHY fields
    hb = _with_history(mb.with_base(b.with_tokens(feats=feats)))
    h = hb.base.hist
    g = torch.Generator().manual_seed(5)
    phy = torch.stack([torch.ones(h.shape[:-1]) if c.endswith("_ok") else torch.rand(h.shape[:-1], generator=g)
                       for c in PHY_COLUMNS], -1)  # every field reported

    def with_hist(hist: torch.Tensor) -> MapBatch:
        return hb.with_base(Batch(*(getattr(hb.base, k) for k in ("node_xy", "feats", "node_id", "mask", "truth")),
                                  hist, hb.base.hist_mask))

    options = {"grid_cells": 4, "physics_prior": False, "phy_features": True}
    net = net_for(**options).eval()
    assert net.hist_mlp[0].in_features == 4 * net.config.pe_freqs + 3 + len(PHY_COLUMNS)
    with torch.no_grad():
        read = net(with_hist(torch.cat([h, phy], -1)))["coarse_logits"]
        absent = net(with_hist(torch.cat([h, torch.zeros_like(phy)], -1)))["coarse_logits"]
        narrow = net(with_hist(h))["coarse_logits"]  # a history of RSS and age only: PHY absent
    assert not torch.allclose(read, absent)
    torch.testing.assert_close(absent, narrow)
    # a checkpoint from before history_phy: hist_mlp without the PHY inputs; loaded, the PHY columns do nothing
    old = net_for(**options, history_phy=False).eval()
    assert old.hist_mlp[0].in_features == 4 * old.config.pe_freqs + 3
    loaded = MapFormer(MapFormerConfig.from_dict({**SMALL, **options}), vocab_size=4).eval()
    loaded.load_state_dict(dict(old.state_dict()))
    with torch.no_grad():
        before = old(with_hist(h))["coarse_logits"]
        after = loaded(with_hist(torch.cat([h, phy], -1)))["coarse_logits"]
    torch.testing.assert_close(before, after)
