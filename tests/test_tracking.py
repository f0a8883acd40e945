"""Tracking (rflocal_core.tracking): physics-like checks of the Kalman and particle filters."""

from __future__ import annotations

import numpy as np
import pytest

from rflocal_core.errors import InvalidInputError
from rflocal_core.tracking import (
    TrackConfig,
    kalman_track,
    outdoor_mask,
    particle_track,
    track,
)


def _straight(speed: float, dt: float, steps: int, sigma: float, seed: int) -> tuple[np.ndarray, ...]:
    """A constant-velocity track along x with Gaussian reports of known σ: times, truth, reports, σ."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps) * dt
    truth = np.column_stack([-100.0 + speed * t, np.zeros(steps)])
    z = truth + rng.normal(0.0, sigma, size=truth.shape)
    return t, truth, z, np.full((steps, 2), sigma)


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=1))))


@pytest.mark.parametrize(("motion", "speed", "dt", "sigma"), [("pedestrian", 1.4, 1.0, 10.0),
                                                              ("vehicular", 12.0, 0.5, 15.0)])
def test_kalman_lowers_the_error_of_a_noisy_straight_track(motion: str, speed: float, dt: float, sigma: float) -> None:
    t, truth, z, s = _straight(speed, dt, 60, sigma, seed=1)
    raw = _rmse(z, truth)
    out = kalman_track(t, z, s, motion=motion)
    smoothed = kalman_track(t, z, s, motion=motion, smooth=True)
    assert raw == pytest.approx(sigma * np.sqrt(2), rel=0.25)  # the reports are as noisy as said
    # after a few reports to settle, the filter is far better than the reports
    assert _rmse(out.xy[10:], truth[10:]) < 0.6 * raw
    assert _rmse(smoothed.xy, truth) < _rmse(out.xy, truth)  # the smoother sees later reports too
    # and its σ is of the size of its error, not of the reports'
    assert float(np.median(out.sigma[10:])) < 0.7 * sigma


def test_reports_weigh_by_their_sigma() -> None:
    # two reports at one instant: a broad prior makes the estimate their inverse-variance mean
    t, z = np.array([0.0, 0.0]), np.array([[0.0, 0.0], [10.0, 0.0]])
    near_first = kalman_track(t, z, np.array([[2.0, 2.0], [4.0, 4.0]]))
    near_second = kalman_track(t, z, np.array([[4.0, 4.0], [2.0, 2.0]]))
    assert near_first.xy[-1, 0] == pytest.approx(2.0, abs=1e-3)  # (0/4 + 10/16) / (1/4 + 1/16)
    assert near_second.xy[-1, 0] == pytest.approx(8.0, abs=1e-3)
    assert near_first.sigma[-1, 0] == pytest.approx(np.sqrt(1 / (1 / 4 + 1 / 16)), rel=1e-3)
    # the particle filter leans the same way (less far: its likelihood has heavy tails)
    pf_first = particle_track(t, z, np.array([[2.0, 2.0], [4.0, 4.0]]), particles=4000, seed=3)
    pf_second = particle_track(t, z, np.array([[4.0, 4.0], [2.0, 2.0]]), particles=4000, seed=3)
    assert pf_first.xy[-1, 0] < 5.0
    assert pf_first.xy[-1, 0] + 2.0 < pf_second.xy[-1, 0]
    # larger report σ everywhere: a larger tracked σ
    t, _, z, s = _straight(1.4, 1.0, 30, 5.0, seed=2)
    assert (kalman_track(t, z, 4 * s).sigma[5:] > kalman_track(t, z, s).sigma[5:]).all()
    # no σ from the model: the configured default stands in
    assert np.allclose(kalman_track(t, z, None, default_sigma_m=5.0).xy, kalman_track(t, z, s).xy)


def test_particle_filter_never_places_the_estimate_inside_a_building() -> None:
    # a street along y = 0 with a building block right next to it (y from 6 m to 60 m)
    block = (np.array([-150.0, 150.0, 150.0, -150.0]), np.array([6.0, 6.0, 60.0, 60.0]))
    mask = outdoor_mask([block], (-200.0, 200.0, -80.0, 100.0), cell_m=1.0)
    t, truth, z, s = _straight(1.4, 1.0, 80, 12.0, seed=4)
    raw_inside = ~mask.is_outdoor(z[:, 0], z[:, 1])
    assert raw_inside.sum() >= 10  # many reports fall inside the building: the test can fail
    out = particle_track(t, z, s, mask=mask, particles=2000, seed=0)
    assert mask.is_outdoor(out.xy[:, 0], out.xy[:, 1]).all()
    assert _rmse(out.xy[10:], truth[10:]) < 0.6 * _rmse(z[10:], truth[10:])
    # the same filter without the building does place estimates inside it
    free = particle_track(t, z, s, mask=None, particles=2000, seed=0)
    assert (~mask.is_outdoor(free.xy[:, 0], free.xy[:, 1])).any()


def test_track_dispatches_and_refuses_unknown_choices() -> None:
    t, _, z, s = _straight(1.4, 1.0, 5, 5.0, seed=5)
    assert np.allclose(track(t, z, s, TrackConfig(method="kalman")).xy, kalman_track(t, z, s).xy)
    with pytest.raises(InvalidInputError, match=r"track: expected one of kalman, particle or None, got 'ukf'"):
        TrackConfig(method="ukf")
    with pytest.raises(InvalidInputError, match=r"motion: expected one of pedestrian, vehicular, got 'boat'"):
        TrackConfig(motion="boat")
    with pytest.raises(InvalidInputError, match=r"t_s: expected finite report times in increasing order"):
        kalman_track(t[::-1], z, s)
