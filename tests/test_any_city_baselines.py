"""Issue 19, geometric baselines in any scene: trained on a small scene, they predict in the
coordinates and extent of the scene they are given (a larger one never seen), not the training one.

Figures (printed with ``-s``): the robust ToA and AoA baselines against independent textbook
solvers on the same samples of the unseen scene::

    PYTHONPATH=$PWD python -m pytest -q -s tests/test_any_city_baselines.py
"""

from __future__ import annotations

import numpy as np
import pytest

from rflocal_core.constants import C_M_PER_NS
from rflocal_core.dataset.rasters import Grid
from rflocal_core.errors import InvalidInputError
from rflocal_core.models import (
    BASELINES,
    AoATriangulation,
    Inputs,
    LogDistanceMultilateration,
    SceneMaps,
    ToAMultilateration,
    errors_m,
    load_inputs,
)
from rflocal_core.models.inputs import scene_extent, search_bounds
from rflocal_core.models.textbook import textbook_fixes

DEVICE_Z_M = 1.5
#: The hand-built scene: 1.5 km square centred on the origin, four rooftop nodes near its corners.
BIG_HALF_M = 750.0
BIG_NODES = np.array([[-700.0, -680.0, 25.0], [690.0, -700.0, 31.0], [710.0, 690.0, 18.0], [-690.0, 700.0, 40.0]])
#: Targets far outside the training scene (240 m: |x|, |y| <= 120 m).
FAR_TARGETS = np.array([[600.0, -550.0], [-640.0, 430.0], [300.0, 650.0]])


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, workspace_env):
    """A dataset on a 240 m training scene and a 640 m scene held out whole (``test_unseen``)."""
    from rflocal_core.dataset import GenerationConfig, generate_dataset
    from rflocal_core.scene import ProceduralConfig, SceneConfig, SiteConfig, build_scene

    path = tmp_path_factory.mktemp("anycity") / "workspace"
    path.mkdir()
    with workspace_env(path):
        build_scene(SceneConfig(name="small", procedural=ProceduralConfig(size_m=240, seed=4), sites=SiteConfig(count=5)))
        build_scene(SceneConfig(name="big", procedural=ProceduralConfig(size_m=640, seed=7), sites=SiteConfig(count=6)))
        generate_dataset(GenerationConfig(name="anycity", scenes=("small", "big"), unseen_scenes=("big",),
                                          samples_per_scene=150, cell_size_m=8.0, map_samples_per_tx=1_000_000,
                                          paths_samples_per_src=10_000, min_sites=3))
        yield {s: load_inputs("anycity", s) for s in ("train", "val", "test_unseen")}


def _big_scene_inputs(truth: np.ndarray, *, rss: np.ndarray | None = None, with_maps: bool = True) -> Inputs:
    """Noise-free ToA and exact bearings of the four ``BIG_NODES`` for each target of ``truth`` [N, 2]."""
    n, s = len(truth), len(BIG_NODES)
    nodes = np.broadcast_to(BIG_NODES, (n, s, 3)).copy()
    d = truth[:, None, :] - nodes[..., :2]
    dist = np.sqrt((d**2).sum(-1) + (nodes[..., 2] - DEVICE_Z_M) ** 2)
    bearing = np.degrees(np.arctan2(d[..., 0], d[..., 1])) % 360
    grid = Grid(-BIG_HALF_M + 5, -BIG_HALF_M + 5, 10.0, 150, 150)  # covers [-750, 750] m
    maps = {"big": SceneMaps("big", grid, np.full((s, 150, 150), -80.0, np.float32), np.ones((150, 150), bool),
                             BIG_NODES, np.full(s, 20.0))} if with_maps else None
    rss = np.full((n, s), -70.0) if rss is None else rss
    return Inputs("handmade", "test", "ue", np.arange(n), rss, dist / C_M_PER_NS, bearing, np.ones((n, s), np.int8),
                  nodes, np.ones((n, s), bool), np.full((n, s), 20.0), np.broadcast_to(np.arange(s), (n, s)).copy(),
                  truth.copy(), np.full(n, DEVICE_Z_M), np.zeros(n, np.int64), ("big",), maps, s)


def test_noise_free_far_outside_the_training_extent(ws: dict[str, Inputs]) -> None:
    """Trained on 240 m, each geometric method finds noise-free targets 500-700 m from the centre of a 1.5 km scene."""
    train = ws["train"]
    box = search_bounds(train)
    assert all(abs(v) < 200 for v in box)  # the training extent, far from the targets
    for with_maps in (True, False):  # the scene's extent from its maps, or from its nodes
        x = _big_scene_inputs(FAR_TARGETS, with_maps=with_maps)
        for model in (ToAMultilateration({"device_height_m": DEVICE_Z_M}).fit(train), AoATriangulation().fit(train)):
            pred = model.predict(x)
            err = errors_m(pred, x)
            assert pred.info["fallbacks"] == 0
            assert (err < 1.0).all(), (model.name, with_maps, err)
    # log-distance: RSS made with the model's own fitted law, so it too is noise-free
    ld = LogDistanceMultilateration().fit(train)
    st = ld.state_dict()
    x = _big_scene_inputs(FAR_TARGETS)
    d = np.sqrt(((FAR_TARGETS[:, None] - BIG_NODES[None, :, :2]) ** 2).sum(-1) + (BIG_NODES[:, 2] - st["target_z_m"]) ** 2)
    rss = 20.0 + st["g0_db"] - 10 * st["n"] * np.log10(d)
    err = errors_m(ld.predict(_big_scene_inputs(FAR_TARGETS, rss=rss)), x)
    assert (err < 1.0).all(), err


def test_every_baseline_predicts_inside_the_unseen_scene(ws: dict[str, Inputs]) -> None:
    """Predictions on the never-seen 640 m scene lie in its extent and reach beyond the 240 m training one."""
    train, val, te = ws["train"], ws["val"], ws["test_unseen"]
    ext = scene_extent(te)
    assert np.allclose(ext, [-320, 320, -320, 320])  # the unseen scene's grid, not the training one
    box = search_bounds(train)
    truth_out = (np.abs(te.truth_m) > 150).any(1)
    assert truth_out.sum() >= 30  # many unseen targets lie beyond the training extent
    for name, cls in BASELINES.items():
        model = cls().fit(train, val)
        if name in ("knn", "lgbm", "knn_lgbm", "ensemble"):  # fingerprint models belong to their training scenes: they refuse a new one
            with pytest.raises(InvalidInputError, match="no training fingerprints|no training samples"):
                model.predict(te)
            continue
        pos = model.predict(te).position_m
        assert np.isfinite(pos).all(), name
        inside = (pos[:, 0] >= ext[:, 0]) & (pos[:, 0] <= ext[:, 1]) & (pos[:, 1] >= ext[:, 2]) & (pos[:, 1] <= ext[:, 3])
        assert inside.all(), name
        beyond = (pos[:, 0] < box[0]) | (pos[:, 0] > box[1]) | (pos[:, 1] < box[2]) | (pos[:, 1] > box[3])
        # not clipped to the training extent: many fixes lie beyond it, as the targets do
        assert beyond[truth_out].mean() >= 0.3, (name, beyond[truth_out].mean())


@pytest.mark.parametrize(("name", "kind", "least"), [("toa_multilateration", "toa", 3), ("aoa_triangulation", "aoa", 2)])
def test_within_1_2x_of_a_textbook_solver_on_the_unseen_scene(ws: dict[str, Inputs], name: str, kind: str,
                                                              least: int) -> None:
    """The core's textbook solvers (rflocal_core/models/textbook.py) on the same samples."""
    train, te = ws["train"], ws["test_unseen"]
    rows, ref = textbook_fixes(te, kind)
    assert len(rows) >= 40
    ref_err = np.hypot(*(ref - te.truth_m[rows]).T)
    ours = BASELINES[name]().fit(train).predict(te.subset(rows))
    our_err = errors_m(ours, te.subset(rows))
    print(f"\n{name}: {len(rows)} unseen samples with >= {least} reports; median {np.median(our_err):.1f} m, "
          f"textbook {np.median(ref_err):.1f} m; P90 {np.percentile(our_err, 90):.1f} m vs "
          f"{np.percentile(ref_err, 90):.1f} m")
    assert np.median(our_err) <= 1.2 * np.median(ref_err)


def test_log_distance_within_1_2x_of_a_textbook_fit_of_the_same_law(ws: dict[str, Inputs]) -> None:
    """Least squares on RSS with the model's fitted path-loss law (n, G0), from the strongest node."""
    train, te = ws["train"], ws["test_unseen"]
    model = LogDistanceMultilateration().fit(train)
    st = model.state_dict()
    rows, ref = textbook_fixes(te, "rss", g0_db=st["g0_db"], n=st["n"], device_z_m=st["target_z_m"])
    assert len(rows) >= 100
    ref_err = np.hypot(*(ref - te.truth_m[rows]).T)
    our_err = errors_m(model.predict(te.subset(rows)), te.subset(rows))
    print(f"\nlog_distance: {len(rows)} unseen samples with >= 2 RSS reports; median {np.median(our_err):.1f} m, "
          f"textbook {np.median(ref_err):.1f} m")
    assert np.median(our_err) <= 1.2 * np.median(ref_err)


SET_NETS = {"setnet": {"d_model": 16, "layers": 1, "heads": 2},
            "heimdall": {"d_model": 16, "node_embedding_dim": 0}}


def test_every_network_predicts_inside_the_unseen_scene(ws: dict[str, Inputs]) -> None:
    """Every network, trained briefly on the 240 m scene in the frame that predicts in any scene (setnet,
    heimdall: sample; mapformer, locheatmap: window, on the unseen scene's own maps): its predictions on
    the never-seen 640 m scene lie in that scene's extent and reach beyond the training one. fpnet and
    fpnet_knn (fingerprints of the training scenes' nodes) are tied to their scenes: not any_scene."""
    import torch

    from rflocal_core.models import NETWORKS
    from rflocal_core.models.features import FeatureSpec, make_batch
    from rflocal_core.models.nets import build_network
    from rflocal_core.models.neural import NeuralModel
    from tests.test_any_city_networks import MAP_NETS, train_map_network

    torch.set_num_threads(1)
    train, te = ws["train"], ws["test_unseen"]
    ext, box = scene_extent(te), search_bounds(train)
    truth_out = (np.abs(te.truth_m) > 150).any(1)
    models = {name: train_map_network(name, "window", train, 30, {**MAP_NETS[name], "cell_m": 8.0})
              for name in MAP_NETS}
    for name, cfg in SET_NETS.items():
        torch.manual_seed(0)
        spec = FeatureSpec.fit(train, frame="sample")
        net = build_network(name, {**cfg, "frame": "sample"}, vocab_size=len(spec.node_keys))
        batch, opt = make_batch(train, spec), torch.optim.AdamW(net.parameters(), lr=2e-3)
        for _ in range(60):
            part = batch.index(torch.randint(0, len(batch), (32,))).compact()
            loss, _ = net.loss(part, net(part))
            opt.zero_grad()
            loss.backward()
            opt.step()
        models[name] = NeuralModel(name, net.eval(), spec)
    for name in NETWORKS:
        if name.startswith("fpnet"):  # scene frame only: refused in another scene at the run level
            assert build_network(name, {}, vocab_size=1).config.frame == "scene"
            continue
        model = models[name]
        assert model.any_scene, name
        pos = model.predict(te).position_m
        assert np.isfinite(pos).all(), name
        inside = (pos[:, 0] >= ext[:, 0]) & (pos[:, 0] <= ext[:, 1]) & (pos[:, 1] >= ext[:, 2]) & (pos[:, 1] <= ext[:, 3])
        assert inside.all(), name
        beyond = (pos[:, 0] < box[0]) | (pos[:, 0] > box[1]) | (pos[:, 1] < box[2]) | (pos[:, 1] > box[3])
        err = np.hypot(*(pos - te.truth_m).T)
        print(f"\n{name}: unseen 640 m scene median {np.median(err):.0f} m, beyond the training extent "
              f"{beyond[truth_out].mean():.0%} where the truth is")
        assert beyond[truth_out].mean() >= 0.3, (name, beyond[truth_out].mean())
