"""The textbook reference solvers (rflocal_core/models/textbook.py): exact on noise-free hand-built cases."""

from __future__ import annotations

import numpy as np
import pytest

from rflocal_core.errors import InvalidInputError
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
