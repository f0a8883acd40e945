"""Tracking (rflocal_core.tracking): physics-like checks of the Kalman and particle filters."""

from __future__ import annotations

import numpy as np
import pytest

from rflocal_core.errors import InvalidInputError
from rflocal_core.tracking import (
    TrackConfig,
    floored_sigma,
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
    # with the model's σ as given (right here), the filter's σ is of the size of its error, not of the reports';
    # the default σ floor makes it conservative: larger than the error, never smaller
    exact = kalman_track(t, z, s, motion=motion, sigma_floor=0)
    assert _rmse(exact.xy[10:], truth[10:]) < 0.6 * raw
    assert float(np.median(exact.sigma[10:])) < 0.7 * sigma
    assert float(np.median(out.sigma[10:])) > _rmse(out.xy[10:], truth[10:])


def test_reports_weigh_by_their_sigma() -> None:
    # two reports at one instant: a broad prior makes the estimate their inverse-variance mean
    t, z = np.array([0.0, 0.0]), np.array([[0.0, 0.0], [10.0, 0.0]])
    near_first = kalman_track(t, z, np.array([[2.0, 2.0], [4.0, 4.0]]), sigma_floor=0)
    near_second = kalman_track(t, z, np.array([[4.0, 4.0], [2.0, 2.0]]), sigma_floor=0)
    assert near_first.xy[-1, 0] == pytest.approx(2.0, abs=1e-3)  # (0/4 + 10/16) / (1/4 + 1/16)
    assert near_second.xy[-1, 0] == pytest.approx(8.0, abs=1e-3)
    assert near_first.sigma[-1, 0] == pytest.approx(np.sqrt(1 / (1 / 4 + 1 / 16)), rel=1e-3)
    # the particle filter leans the same way (less far: its likelihood has heavy tails)
    pf_first = particle_track(t, z, np.array([[2.0, 2.0], [4.0, 4.0]]), particles=4000, seed=3, sigma_floor=0)
    pf_second = particle_track(t, z, np.array([[4.0, 4.0], [2.0, 2.0]]), particles=4000, seed=3, sigma_floor=0)
    assert pf_first.xy[-1, 0] < 5.0
    assert pf_first.xy[-1, 0] + 2.0 < pf_second.xy[-1, 0]
    # larger report σ everywhere: a larger tracked σ
    t, _, z, s = _straight(1.4, 1.0, 30, 5.0, seed=2)
    assert (kalman_track(t, z, 4 * s).sigma[5:] > kalman_track(t, z, s).sigma[5:]).all()
    # no σ from the model: the configured default stands in, as set (the σ floor is for a model's own σ)
    assert np.allclose(kalman_track(t, z, None, default_sigma_m=5.0).xy, kalman_track(t, z, s, sigma_floor=0).xy)


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


def test_sigma_floor_is_the_causal_median_added_in_quadrature() -> None:
    z = np.array([[0.0, 0.0], [1.0, 1.0], [np.nan, np.nan], [2.0, 2.0]])
    s = np.array([[1.0, 1.0], [3.0, 3.0], [100.0, 100.0], [5.0, 5.0]])
    out = floored_sigma(z, s, 1.0)
    # medians of the σ seen so far: 1, then 2 (1 and 3), then 2 (a row without a position does not count), then 3
    assert np.allclose(out[:, 0], np.sqrt(s[:, 0] ** 2 + np.array([1.0, 2.0, 2.0, 3.0]) ** 2))
    assert np.allclose(floored_sigma(z, s, 1.0, window=1)[1], np.sqrt(2) * 3.0)  # only the report itself
    assert np.array_equal(floored_sigma(z, s, 0.0), s)


def test_sigma_floor_resists_confidently_wrong_reports() -> None:
    # a car at 12 m/s; one report in four lands 60 m off with a σ of 1 m (kNN neighbours agreeing on the
    # wrong street), the others are right to their σ of 10 m: without a floor the filter follows the wrong ones
    t, truth, z, s = _straight(12.0, 1.0, 60, 10.0, seed=6)
    wrong = np.arange(3, 60, 4)
    z[wrong] = truth[wrong] + np.array([0.0, 60.0])
    s[wrong] = 1.0
    raw = _rmse(z[10:], truth[10:])
    plain = _rmse(kalman_track(t, z, s, motion="vehicular", sigma_floor=0).xy[10:], truth[10:])
    floored = _rmse(kalman_track(t, z, s, motion="vehicular").xy[10:], truth[10:])
    particles = _rmse(particle_track(t, z, s, motion="vehicular", particles=1000, seed=0).xy[10:], truth[10:])
    assert floored < 0.7 * plain
    assert floored < 0.7 * raw
    assert particles < 0.7 * raw


def test_vehicular_preset_follows_a_car_turning_at_a_junction() -> None:
    # a car at 10 m/s, 20 s east then 20 s north (a right-angle turn), reports 20 m off each second
    t = np.arange(40) * 1.0
    truth = np.where(t[:, None] < 20, np.column_stack([10 * t, 0 * t]), np.column_stack([200 + 0 * t, 10 * (t - 20)]))
    z = truth + np.random.default_rng(0).normal(0.0, 20.0, truth.shape)
    s = np.full_like(z, 20.0)
    raw = _rmse(z[5:], truth[5:])
    car = _rmse(kalman_track(t, z, s, motion="vehicular").xy[5:], truth[5:])
    walker = _rmse(kalman_track(t, z, s, motion="pedestrian").xy[5:], truth[5:])
    particles = _rmse(particle_track(t, z, s, motion="vehicular", particles=1000, seed=0).xy[5:], truth[5:])
    assert car < 0.85 * raw and particles < 0.85 * raw
    assert walker > raw  # a walker's preset cannot keep up with the car: it lags behind at the turn
