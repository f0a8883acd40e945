"""The textbook reference solvers (rflocal_core/models/textbook.py): exact on noise-free hand-built cases."""

from __future__ import annotations

import numpy as np
import pytest

from rflocal_core.constants import C_M_PER_NS
from rflocal_core.errors import InvalidInputError
from rflocal_core.models import Inputs, LogDistanceMultilateration, ToAMultilateration, errors_m
from rflocal_core.models.textbook import DEVICE_Z_M, textbook_aoa, textbook_fixes, textbook_log_distance, textbook_toa

NODES = np.array([[-600.0, -500.0, 30.0], [650.0, -450.0, 12.0], [500.0, 700.0, 45.0], [-550.0, 640.0, 20.0]])
TARGETS = np.array([[420.0, -380.0], [-510.0, 590.0], [5.0, -20.0]])


def _ranges(p: np.ndarray) -> np.ndarray:
    return np.sqrt(((p - NODES[:, :2]) ** 2).sum(1) + (NODES[:, 2] - DEVICE_Z_M) ** 2)


@pytest.mark.parametrize("target", TARGETS)
def test_noise_free_fixes_are_exact(target: np.ndarray) -> None:
    d = target - NODES[:, :2]
    bearing = np.degrees(np.arctan2(d[:, 0], d[:, 1])) % 360
    gain = -30.0 - 10 * 3.2 * np.log10(_ranges(target))
    for fix in (textbook_toa(NODES, _ranges(target)), textbook_aoa(NODES, bearing),
                textbook_log_distance(NODES, gain, g0_db=-30.0, n=3.2)):
        assert np.hypot(*(fix - target)) < 0.5, fix


def test_soft_l1_toa_shrugs_off_one_nlos_range() -> None:
    """A range 150 m too long (NLoS) at one of five nodes: the soft-L1 fix stays within a few metres."""
    nodes = np.vstack([NODES, [[0.0, -700.0, 25.0]]])
    target = np.array([100.0, 50.0])
    rng = np.sqrt(((target - nodes[:, :2]) ** 2).sum(1) + (nodes[:, 2] - DEVICE_Z_M) ** 2)
    rng[1] += 150.0
    assert np.hypot(*(textbook_toa(nodes, rng) - target)) < 5.0


def test_fixes_refuse_an_unknown_kind_and_rss_without_a_law() -> None:
    with pytest.raises(InvalidInputError, match="kind: expected one of toa, aoa, rss"):
        textbook_fixes(None, "tdoa")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="g0_db, n: the rss solver needs a path-loss law"):
        textbook_fixes(None, "rss")  # type: ignore[arg-type]



def _shadowed(rng: np.random.Generator, n: int, sites: int, shadow_db: float) -> Inputs:
    """Free space with NLoS: ranges +3 m noise, +exp(30 m) on 30% of links; RSS law -30 - 30 log10(d), shadowed."""
    nodes = np.concatenate([rng.uniform(-400, 400, (n, sites, 2)), rng.uniform(10, 40, (n, sites, 1))], axis=2)
    truth = rng.uniform(-400, 400, (n, 2))
    d = np.sqrt(((truth[:, None] - nodes[..., :2]) ** 2).sum(-1) + (nodes[..., 2] - DEVICE_Z_M) ** 2)
    nlos = np.where(rng.random(d.shape) < 0.3, rng.exponential(30.0, d.shape), 0.0)
    rng_m = d + rng.normal(0, 3.0, d.shape) + nlos
    rss = 20.0 - 30.0 - 30.0 * np.log10(d) + rng.normal(0, shadow_db, d.shape)
    shape = (n, sites)
    return Inputs("handmade", "test", "ue", np.arange(n), rss, rng_m / C_M_PER_NS, np.full(shape, np.nan),
                  np.ones(shape, np.int8), nodes, np.ones(shape, bool), np.full(shape, 20.0),
                  np.broadcast_to(np.arange(sites), shape).copy(), truth, np.full(n, DEVICE_Z_M), np.zeros(n, np.int64),
                  ("free",), None, sites)


def test_toa_and_log_distance_baselines_keep_up_with_the_textbook() -> None:
    """Issue-19 fixes against the textbook on hand-built shadowed, NLoS data: ToA's soft-L1 scale 3 m (at
    the former 10 m: 1.64x the textbook median here, 1.24-1.47x on real held-out tiles). Log-distance
    now also starts at the strongest node: on the real Bavarian tile that took it from 1.34x to 0.94x;
    this free-space case does not separate the two starts (0.97x now), it guards the fix."""
    rng = np.random.default_rng(0)
    toa_train, toa_x = _shadowed(rng, 20, 6, 6.0), _shadowed(rng, 100, 6, 6.0)
    rows, ref = textbook_fixes(toa_x, "toa")
    x = toa_x.subset(rows)
    ours = np.median(errors_m(ToAMultilateration().fit(toa_train).predict(x), x))
    assert ours <= 1.2 * np.median(np.hypot(*(ref - x.truth_m).T))
    rng = np.random.default_rng(0)
    train, x = _shadowed(rng, 100, 3, 3.0), _shadowed(rng, 100, 3, 3.0)
    model = LogDistanceMultilateration().fit(train)
    st = model.state_dict()
    rows, ref = textbook_fixes(x, "rss", g0_db=st["g0_db"], n=st["n"])
    x = x.subset(rows)
    ours = np.median(errors_m(model.predict(x), x))
    assert ours <= 1.05 * np.median(np.hypot(*(ref - x.truth_m).T))
