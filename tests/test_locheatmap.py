"""locheatmap: heatmap read-outs, report rasters, completion targets, the ten modes, overfitting, options."""

from __future__ import annotations

import math

import pytest
import torch

from rflocal_core.errors import InvalidInputError
from rflocal_core.models.features import RSS_MAX_DBM, RSS_MIN_DBM, TOKEN_COLUMNS, Batch
from rflocal_core.models.locheatmap import (
    MODES,
    LocHeatmap,
    LocHeatmapConfig,
    cell_centres,
    centre_of_mass,
    completed_channel_names,
    completion_targets,
    dsnt,
    gaussian_heatmap,
    gaussian_target_loss,
    heatmap_moments,
    js_regularizer,
    backprojection,
    rasterize_reports,
    soft_argmax,
)
from rflocal_core.models.maps import MapBatch, pg_to_unit

COL = {c: i for i, c in enumerate(TOKEN_COLUMNS)}
SMALL = {"res": 16, "completion_channels": (8, 16), "unet_channels": (8, 16, 32), "latent_dim": 32, "d_model": 32}


@pytest.fixture(autouse=True)
def one_thread():
    """Small convolutions run fastest on one thread (and a busy machine makes two much slower)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# --------------------------------------------------------------------------- synthetic data


def _pg_db(dist_unit: torch.Tensor, extent_m: float = 200.0) -> torch.Tensor:
    return -40.0 - 30.0 * torch.log10(torch.hypot(dist_unit * extent_m, torch.tensor(10.0)))


def synthetic(n: int, res: int, *, sites: int = 5, seed: int = 0) -> MapBatch:
    """Fixed sites on the unit square, log-distance RSS, exact AoA bearings, exact site maps."""
    site_xy = torch.rand(sites, 2, generator=torch.Generator().manual_seed(99)) * 0.8 + 0.1
    truth = torch.rand(n, 2, generator=torch.Generator().manual_seed(seed)) * 0.9 + 0.05
    node_xy = site_xy.expand(n, -1, -1).clone()
    delta = truth[:, None] - node_xy
    d = delta.norm(dim=-1)
    feats = torch.zeros(n, sites, len(TOKEN_COLUMNS))
    feats[..., COL["pos_ok"]] = 1
    feats[..., COL["rss"]] = (20.0 + _pg_db(d) - RSS_MIN_DBM) / (RSS_MAX_DBM - RSS_MIN_DBM)
    feats[..., COL["rss_ok"]] = 1
    feats[..., COL["aoa_sin"]] = delta[..., 0] / d  # compass bearing node -> target: sin = east share
    feats[..., COL["aoa_cos"]] = delta[..., 1] / d
    feats[..., COL["aoa_ok"]] = 1
    base = Batch(node_xy, feats, torch.zeros(n, sites, dtype=torch.long), torch.ones(n, sites, dtype=torch.bool),
                 truth)
    x, y = cell_centres(res, res)
    dist = torch.hypot(x.view(1, 1, 1, res) - node_xy[..., 0, None, None],
                       y.view(1, 1, res, 1) - node_xy[..., 1, None, None])
    maps = pg_to_unit(_pg_db(dist))
    return MapBatch(base, maps, torch.ones_like(maps, dtype=torch.bool), torch.ones(n, sites, dtype=torch.bool),
                    torch.rand(n, 4, res, res, generator=torch.Generator().manual_seed(5)))


def _one_report(xy: tuple[float, float], rss: float, bearing_deg: float | None, *, pos_ok: float = 1.0) -> tuple:
    f = torch.zeros(len(TOKEN_COLUMNS))
    f[COL["pos_ok"]] = pos_ok
    f[COL["rss"]], f[COL["rss_ok"]] = rss, 1.0
    if bearing_deg is not None:
        b = math.radians(bearing_deg)
        f[COL["aoa_sin"]], f[COL["aoa_cos"]], f[COL["aoa_ok"]] = math.sin(b), math.cos(b), 1.0
    return torch.tensor(xy), f


def _batch(reports: list[tuple], mask: list[bool]) -> Batch:
    xy = torch.stack([r[0] for r in reports]).unsqueeze(0)
    feats = torch.stack([r[1] for r in reports]).unsqueeze(0)
    s = len(reports)
    return Batch(xy, feats, torch.zeros(1, s, dtype=torch.long), torch.tensor([mask]), torch.tensor([[0.5, 0.5]]))


# --------------------------------------------------------------------------- read-outs


def _blob(h: int, w: int, cx: float, cy: float, *, radius: float, positive: bool = False) -> torch.Tensor:
    """Logits [1, 1, H, W] of a Gaussian blob at (cx, cy) in cells, cut to a disc (-inf outside): symmetric."""
    x = torch.arange(w, dtype=torch.float64) + 0.5
    y = torch.arange(h, dtype=torch.float64) + 0.5
    d2 = (x.view(1, w) - cx) ** 2 + (y.view(h, 1) - cy) ** 2
    z = torch.exp(-d2 / 4.0) if positive else -d2 / 4.0
    return torch.where(d2 <= radius ** 2, z, torch.tensor(-math.inf, dtype=torch.float64)).view(1, 1, h, w)


@pytest.mark.parametrize(("cx", "cy", "label"), [(3.5, 7.5, "on a cell centre"), (7.0, 4.0, "between cells"),
                                                 (8.0, 6.5, "on a cell edge")])
def test_readouts_return_the_centre_of_a_symmetric_heatmap_exactly(cx, cy, label):
    h, w = 12, 16
    want = torch.tensor([[cx / w, cy / h]], dtype=torch.float64)
    logits = _blob(h, w, cx, cy, radius=3.0)
    for got in (dsnt(logits), soft_argmax(logits, 1.0), soft_argmax(logits, 7.0),
                centre_of_mass(_blob(h, w, cx, cy, radius=3.0, positive=True), "relu"),
                centre_of_mass(_blob(h, w, cx, cy, radius=3.0, positive=True), "sigmoid")):
        torch.testing.assert_close(got, want, atol=1e-14, rtol=0, msg=label)
    # float32 and a Gaussian on the whole (symmetric) grid: the centre of an odd grid, the middle of an even one
    for n in (15, 16):
        g = gaussian_heatmap(torch.tensor([[0.5, 0.5]]), n, n, 0.1)
        torch.testing.assert_close(dsnt(g.log().unsqueeze(1)), torch.tensor([[0.5, 0.5]]), atol=1e-6, rtol=0)
        torch.testing.assert_close(soft_argmax(g.log(), 3.0), torch.tensor([[0.5, 0.5]]), atol=1e-6, rtol=0)


def test_readouts_and_heatmap_losses_are_differentiable():
    torch.manual_seed(0)
    z = torch.randn(2, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    pos = torch.tensor([[0.3, 0.6], [0.8, 0.1]], dtype=torch.float64)
    assert torch.autograd.gradcheck(dsnt, (z,))
    assert torch.autograd.gradcheck(lambda t: soft_argmax(t, 2.5), (z,))
    assert torch.autograd.gradcheck(lambda t: centre_of_mass(t, "sigmoid"), (z,))
    assert torch.autograd.gradcheck(lambda t: centre_of_mass(t.abs() + 0.1, "relu"), (z,))
    assert torch.autograd.gradcheck(lambda t: gaussian_target_loss(t, pos, 1.0, 2.0), (z,))
    assert torch.autograd.gradcheck(lambda t: js_regularizer(torch.softmax(t.flatten(1), 1).view(2, 4, 5), pos, 1.0),
                                    (z,))
    for f in (dsnt, lambda t: soft_argmax(t, 5.0), lambda t: centre_of_mass(t, "relu")):
        (grad,) = torch.autograd.grad(f(z).sum(), z)
        assert torch.isfinite(grad).all() and grad.abs().max() > 0


def test_gaussian_losses_are_smallest_at_the_truth():
    pos = torch.tensor([[0.40, 0.70]])
    target = gaussian_heatmap(pos, 16, 16, 1.0 / 16)
    assert abs(float(target.sum()) - 1.0) < 1e-6
    at_truth = target.log().unsqueeze(1)
    elsewhere = gaussian_heatmap(torch.tensor([[0.6, 0.3]]), 16, 16, 1.0 / 16).log().unsqueeze(1)
    assert gaussian_target_loss(at_truth, pos, 1.0) < gaussian_target_loss(elsewhere, pos, 1.0)
    assert float(js_regularizer(target, pos, 1.0)) < 1e-6 < float(js_regularizer(elsewhere.exp()[:, 0], pos, 1.0))


def test_spread_of_a_heatmap():
    n = 8
    uniform = torch.full((1, n, n), 1.0 / n ** 2, dtype=torch.float64)
    mu, var = heatmap_moments(uniform)
    torch.testing.assert_close(mu, torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    torch.testing.assert_close(var, torch.full((1, 2), (1 - 1 / n ** 2) / 12, dtype=torch.float64))
    one_cell = torch.zeros(1, n, n, dtype=torch.float64)
    one_cell[0, 2, 5] = 1
    mu, var = heatmap_moments(one_cell)
    torch.testing.assert_close(mu, torch.tensor([[5.5 / n, 2.5 / n]], dtype=torch.float64))
    assert float(var.abs().max()) < 1e-15


# --------------------------------------------------------------------------- rasters and targets


def test_rasterize_puts_each_report_in_its_cell_and_masks_empty_cells():
    res = 10
    reports = [
        _one_report((0.30, 0.70), 0.6, 90.0),    # row 7, column 3
        _one_report((0.52, 0.15), 0.2, 0.0),     # row 1, column 5 ...
        _one_report((0.58, 0.11), 0.4, 90.0),    # ... the same cell: averaged
        _one_report((0.95, 0.05), 0.9, None),    # RSS only: row 0, column 9
        _one_report((1.20, 0.50), 0.5, 45.0),    # outside the square: dropped
        _one_report((0.50, 0.50), 0.5, 45.0, pos_ok=0.0),  # unknown position: dropped
        _one_report((0.10, 0.10), float("nan"), 45.0),     # masked (NaN is never read)
    ]
    r = rasterize_reports(_batch(reports, [True] * 6 + [False]), res)
    assert r.shape == (1, 5, res, res) and torch.isfinite(r).all()
    rss, sin, cos, rss_ok, aoa_ok = r[0]
    assert rss[7, 3] == pytest.approx(0.6) and sin[7, 3] == pytest.approx(1.0) and abs(cos[7, 3]) < 1e-6
    assert rss[1, 5] == pytest.approx(0.3) and sin[1, 5] == pytest.approx(0.5) and cos[1, 5] == pytest.approx(0.5)
    assert rss[0, 9] == pytest.approx(0.9) and aoa_ok[0, 9] == 0 and sin[0, 9] == 0
    want_rss = torch.zeros(res, res, dtype=torch.bool)
    want_rss[7, 3] = want_rss[1, 5] = want_rss[0, 9] = True
    assert torch.equal(rss_ok.bool(), want_rss)
    assert set(map(tuple, aoa_ok.nonzero().tolist())) == {(7, 3), (1, 5)}
    assert (r[:, :3][~want_rss.expand(1, 3, res, res)] == 0).all()


def test_backprojection_peaks_where_the_bearings_cross():
    res = 20
    target = (0.62, 0.33)  # cell (row 6, column 12)

    def towards(node):
        return math.degrees(math.atan2(target[0] - node[0], target[1] - node[1]))  # compass bearing

    nodes = [(0.1, 0.1), (0.9, 0.9), (0.2, 0.8)]
    reports = [_one_report(n, 0.5, towards(n)) for n in nodes]
    reports.append(_one_report((0.5, 0.5), float("nan"), 10.0))  # masked: ignored
    bp = backprojection(_batch(reports, [True] * 3 + [False]), res, sigma_deg=3.0)
    assert bp.shape == (1, 1, res, res) and torch.isfinite(bp).all()
    assert float(bp.max()) == 0.0 and float(bp.min()) >= -5.0
    best = int(bp.flatten().argmax())
    assert (best // res, best % res) == (6, 12)
    # one bearing alone is a ray: cells along it score 0, across it low
    ray = backprojection(_batch(reports[:1], [True]), res, sigma_deg=3.0)[0, 0]
    assert ray[6, 12] > -0.05 and ray[12, 6] < -0.4  # the uniform share caps the penalty at 4.3 nats
    # a sample without bearings: all zeros (no evidence)
    no_aoa = [_one_report((0.3, 0.3), 0.5, None)]
    assert (backprojection(_batch(no_aoa, [True]), res, sigma_deg=3.0) == 0).all()


def test_backprojection_option_sets_the_input_channels():
    on = LocHeatmap(LocHeatmapConfig(mode="LocUNet", **SMALL))
    off = LocHeatmap(LocHeatmapConfig(mode="LocUNet", aoa_backprojection=False, **SMALL))
    assert len(on.in_idx) == len(off.in_idx) + 1
    assert len(LocHeatmap(LocHeatmapConfig(mode="proposal_rss_only", **SMALL)).in_idx) == 2
    mb = synthetic(2, SMALL["res"])
    with torch.no_grad():
        assert torch.isfinite(on.eval()(mb)["mu"]).all() and torch.isfinite(off.eval()(mb)["mu"]).all()


def test_completion_targets_are_the_bearing_field_and_the_strongest_site_map():
    mb = synthetic(2, 8)
    mb.base.mask[1, 2] = False  # a masked slot's map is not used
    targets, weights = completion_targets(mb, 8)
    x, y = cell_centres(8, 8)
    t = mb.base.truth
    d = torch.hypot(t[0, 0] - x[3], t[0, 1] - y[6])
    assert targets[0, 0, 6, 3] == pytest.approx(float((t[0, 0] - x[3]) / d), abs=1e-6)
    assert targets[0, 1, 6, 3] == pytest.approx(float((t[0, 1] - y[6]) / d), abs=1e-6)
    torch.testing.assert_close(targets[0, 2], mb.site_maps[0].max(0).values)
    keep = [0, 1, 3, 4]
    torch.testing.assert_close(targets[1, 2], mb.site_maps[1, keep].max(0).values)
    assert (weights[:, 2] == 1).all()
    mean_t, _ = completion_targets(mb, 8, rss_target="mean")
    torch.testing.assert_close(mean_t[1, 2], mb.site_maps[1, keep].mean(0))
    # no maps (a plain Batch, or slots without maps such as drone waypoints): no pg target
    assert (completion_targets(mb.base, 8)[1][:, 2] == 0).all()
    no_maps = MapBatch(mb.base, mb.site_maps, mb.site_ok, torch.zeros_like(mb.site_has_map), mb.scene_rasters)
    assert (completion_targets(no_maps, 8)[1][:, 2] == 0).all()


# --------------------------------------------------------------------------- the modes


def _with_garbage_slot(mb: MapBatch, slot: int) -> MapBatch:
    """``mb`` plus a masked slot at ``slot`` whose values are garbage (NaN features, random maps)."""
    b = mb.base
    n = len(b)
    feats = torch.full((n, 1, b.feats.shape[2]), float("nan"))
    xy = torch.rand(n, 1, 2)

    def ins(t: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        return torch.cat([t[:, :slot], extra, t[:, slot:]], 1)

    base = Batch(ins(b.node_xy, xy), ins(b.feats, feats), ins(b.node_id, torch.zeros(n, 1, dtype=torch.long)),
                 ins(b.mask, torch.zeros(n, 1, dtype=torch.bool)), b.truth)
    return MapBatch(base, ins(mb.site_maps, torch.rand(n, 1, *mb.site_maps.shape[2:]) * 5),
                    ins(mb.site_ok, torch.ones(n, 1, *mb.site_ok.shape[2:], dtype=torch.bool)),
                    ins(mb.site_has_map, torch.ones(n, 1, dtype=torch.bool)), mb.scene_rasters)


def _drop_slot(mb: MapBatch, slot: int) -> MapBatch:
    keep = [j for j in range(mb.base.mask.shape[1]) if j != slot]
    b = mb.base
    return MapBatch(Batch(b.node_xy[:, keep], b.feats[:, keep], b.node_id[:, keep], b.mask[:, keep], b.truth),
                    mb.site_maps[:, keep], mb.site_ok[:, keep], mb.site_has_map[:, keep], mb.scene_rasters)


@pytest.mark.parametrize("mode", MODES)
def test_shapes_and_masks_of_every_mode(mode):
    torch.manual_seed(0)
    cfg = LocHeatmapConfig(mode=mode, **SMALL)
    net = LocHeatmap(cfg).eval()
    res = cfg.res
    mb = synthetic(3, res)
    with torch.no_grad():
        out = net(mb)
        masked = net(_with_garbage_slot(mb, 2))
        fewer = net(_drop_slot(mb, 0))
    assert out["mu"].shape == (3, 2) and out["sigma"].shape == (3, 2)
    assert torch.isfinite(out["mu"]).all() and (out["sigma"] >= cfg.sigma_min).all()
    assert out["heatmap"].shape == (3, res, res)
    torch.testing.assert_close(out["heatmap"].sum((1, 2)), torch.ones(3))
    names = completed_channel_names(cfg)
    if names:
        assert out["completed"].shape == (3, len(names), res, res)
    else:
        assert "completed" not in out
    # a masked slot (with garbage values and maps) is the same as no slot at all ...
    for key in ("mu", "sigma", "heatmap", *(("completed",) if names else ())):
        torch.testing.assert_close(masked[key], out[key], atol=1e-5, rtol=1e-5)
    # ... while removing a real report changes the answer
    assert not torch.allclose(fewer["heatmap"], out["heatmap"], atol=1e-7)
    # training loss and gradients are finite, from a MapBatch, a batch of one and a plain Batch without reports
    net.train()
    loss, parts = net.loss(mb, net(mb))
    loss.backward()
    assert torch.isfinite(loss) and all(math.isfinite(v) for v in parts.values())
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    empty = Batch(mb.base.node_xy[:1], mb.base.feats[:1], mb.base.node_id[:1],
                  torch.zeros(1, 5, dtype=torch.bool), mb.base.truth[:1])
    for case in (mb.index(slice(0, 1)), empty):
        o = net(case)
        assert torch.isfinite(net.loss(case, o)[0]) and torch.isfinite(o["mu"]).all()


@pytest.mark.parametrize("mode", ["proposal", "LocUNet", "DCAe"])
def test_representative_modes_overfit_a_tiny_dataset(mode):
    torch.manual_seed(0)
    cfg = LocHeatmapConfig(mode=mode, **SMALL)
    net = LocHeatmap(cfg)
    mb = synthetic(48, cfg.res, seed=1)
    steps = 150
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    net.train()
    for _ in range(steps):
        loss, _ = net.loss(mb, net(mb))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        out = net(mb)
    err_cells = (out["mu"] - mb.base.truth).norm(dim=1) * cfg.res
    assert float(err_cells.median()) < 0.5, f"{mode}: median training error {float(err_cells.median()):.2f} cells"
    assert torch.isfinite(out["sigma"]).all() and (out["sigma"] < 0.25).all()


# --------------------------------------------------------------------------- options


def test_network_identity():
    assert LocHeatmap.name == "locheatmap" and LocHeatmap.needs_maps is True
    assert LocHeatmap.config_cls is LocHeatmapConfig
    assert len(MODES) == 10 and len(set(MODES)) == 10


@pytest.mark.parametrize(("options", "message"), [
    ({"mode": "unet"}, "mode: expected one of proposal, DCAe, DCAe_simple, LocUNet, LocUNet_softargmax, "
                       "proposal_rss_only, proposal_aoa_only, proposal_gaussian_dsnt, proposal_gaussian_softargmax, "
                       "proposal_dsnt, got 'unet'"),
    ({"res": 60}, "res: expected a multiple of 8"),
    ({"res": 4}, r"res: expected an integer in \[8, 512\], got 4"),
    ({"completion_channels": [16, 0]}, "completion_channels: expected a list of 1 to 5 channel widths"),
    ({"unet_channels": [16]}, "unet_channels: expected a list of 2 to 6 channel widths"),
    ({"gaussian_sigma_cells": 0.0}, r"gaussian_sigma_cells: expected a number in \[0.1, 64.0\] cells, got 0.0"),
    ({"softargmax_beta": -1}, "softargmax_beta: expected a number"),
    ({"completion_weight": "1"}, "completion_weight: expected a number"),
    ({"com_activation": "tanh"}, "com_activation: expected one of relu, sigmoid, got 'tanh'"),
    ({"position_loss": "l2"}, "position_loss: expected one of nll, euclidean, both, got 'l2'"),
    ({"rss_target": "min"}, "rss_target: expected one of max, mean, got 'min'"),
    ({"scene_rasters": 1}, "scene_rasters: expected true or false, got 1"),
    ({"holdout_fraction": 1.0}, "holdout_fraction: expected a number"),
    ({"sigma_min": 0}, "sigma_min: expected a number"),
    ({"resolution": 64}, r"unknown option\(s\) \['resolution'\]"),
    ({"aoa_backprojection": "on"}, "aoa_backprojection: expected true or false, got 'on'"),
    ({"aoa_sigma_deg": 0}, r"aoa_sigma_deg: expected a number in \[0.1, 90.0\] deg, got 0"),
])
def test_bad_options_name_the_field_and_the_allowed_values(options, message):
    with pytest.raises(InvalidInputError, match=message):
        LocHeatmapConfig.from_dict(options)


def test_options_round_trip_through_a_dict():
    cfg = LocHeatmapConfig.from_dict({"mode": "LocUNet", "unet_channels": [8, 16], "res": 32})
    assert cfg.unet_channels == (8, 16) and isinstance(cfg.unet_channels, tuple)
    assert LocHeatmapConfig.from_dict(cfg.to_dict()) == cfg


def test_augment_changes_the_reports_and_keeps_the_maps():
    cfg = LocHeatmapConfig(node_dropout=(0.5,), rss_noise_db=3.0, **SMALL)
    net = LocHeatmap(cfg)
    mb = synthetic(8, cfg.res)
    aug = net.augment(mb, epoch_fraction=0.0, extent_m=200.0, generator=torch.Generator().manual_seed(0))
    assert isinstance(aug, MapBatch) and aug.site_maps is mb.site_maps and aug.scene_rasters is mb.scene_rasters
    assert aug.base.mask.sum() < mb.base.mask.sum() and aug.base.mask.any(1).all()
    plain = net.augment(mb.base, epoch_fraction=0.0, extent_m=200.0, generator=torch.Generator().manual_seed(0))
    assert isinstance(plain, Batch) and torch.equal(plain.mask, aug.base.mask)
