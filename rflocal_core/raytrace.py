"""Ray tracing with Sionna RT: load a built scene and compute radio maps.

Sionna RT is the only propagation engine of RFLocal. If it cannot run here,
:func:`rflocal_core.backend.ensure_backend` says why and nothing is computed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from rflocal_core.backend import ensure_backend
from rflocal_core.errors import InvalidInputError
from rflocal_core.scene.sites import sionna_orientation_rad
from rflocal_core.scene.store import load_scene_meta, scene_dir

#: Speed of light in vacuum, m/s.
SPEED_OF_LIGHT_M_S = 299_792_458.0


def friis_path_gain_db(distance_m: Any, freq_hz: float) -> np.ndarray:
    """Free-space path gain ``20·log10(λ / (4π d))`` in dB (isotropic antennas)."""
    wavelength = SPEED_OF_LIGHT_M_S / freq_hz
    return 20.0 * np.log10(wavelength / (4.0 * math.pi * np.asarray(distance_m, dtype=float)))


def load_rt_scene(name: str, *, sites: list[dict[str, Any]] | None = None, merge_shapes: bool = True) -> Any:
    """Load a scene into Sionna RT with one transmitter per site.

    In ``emitter`` mode the sensors are still added as transmitters: by reciprocity
    the map of a sensor-as-transmitter is the path gain from any emitter position to
    that sensor.

    Parameters
    ----------
    name : str
        Scene name in the workspace.
    sites : list of dict, optional
        Site records to place instead of those in ``scene.json`` (same keys).
    merge_shapes : bool
        Merge shapes of the same material (faster); False keeps one object per building.

    Returns
    -------
    sionna.rt.Scene
    """
    ensure_backend()
    from sionna.rt import PlanarArray, Transmitter, load_scene

    meta = load_scene_meta(name)
    sites = meta["sites"] if sites is None else sites
    if not sites:
        msg = f"sites: scene {name!r} has no sites to trace from"
        raise InvalidInputError(msg)
    scene = load_scene(str(scene_dir(name) / "scene.xml"), merge_shapes=merge_shapes)
    scene.frequency = float(sites[0]["freq_hz"])
    pattern = sites[0].get("pattern", "iso")
    scene.tx_array = PlanarArray(num_rows=1, num_cols=1, pattern=pattern, polarization="V")
    scene.rx_array = PlanarArray(num_rows=1, num_cols=1, pattern="iso", polarization="V")
    for site in sites:
        orientation = sionna_orientation_rad(site.get("azimuth_deg") or 0.0, site.get("downtilt_deg") or 0.0)
        power = site.get("tx_power_dbm")
        scene.add(
            Transmitter(
                name=str(site["id"]),
                position=[float(site["x_m"]), float(site["y_m"]), float(site["z_m"])],
                orientation=list(orientation) if pattern != "iso" else [0.0, 0.0, 0.0],
                power_dbm=float(power) if power is not None else 0.0,
            )
        )
    return scene


@dataclass
class RadioMap:
    """A radio map on a regular grid in scene metres.

    Attributes
    ----------
    path_gain_db : ndarray, shape [num_sites, num_y, num_x]
        Path gain per site; ``-inf`` where no ray arrived. Axis 1 is y, axis 2 is x.
    rss_dbm : ndarray, shape [num_sites, num_y, num_x]
        Received power (transmit power + path gain).
    x_m, y_m : ndarray, shape [num_x], [num_y]
        Cell-centre coordinates.
    height_m : float
        Height of the measurement plane above the ground.
    cell_size_m : float
    site_ids : list of str
    seconds : float
        Wall time of the solver call including the evaluation of results.
    """

    path_gain_db: np.ndarray
    rss_dbm: np.ndarray
    x_m: np.ndarray
    y_m: np.ndarray
    height_m: float
    cell_size_m: float
    site_ids: list[str]
    seconds: float

    def value_at(self, x_m: float, y_m: float) -> np.ndarray:
        """Path gain (dB) per site in the cell containing ``(x_m, y_m)``."""
        ix = int(np.argmin(np.abs(self.x_m - x_m)))
        iy = int(np.argmin(np.abs(self.y_m - y_m)))
        return self.path_gain_db[:, iy, ix]


def compute_radio_map(
    name: str,
    *,
    cell_size_m: float = 2.0,
    plane_height_m: float = 1.5,
    center_m: tuple[float, float] | None = None,
    size_m: tuple[float, float] | None = None,
    samples_per_tx: int = 1_000_000,
    max_depth: int = 3,
    sites: list[dict[str, Any]] | None = None,
    seed: int = 42,
) -> RadioMap:
    """Compute path gain and RSS maps of every site with Sionna's ``RadioMapSolver``.

    Parameters
    ----------
    name : str
        Scene name.
    cell_size_m : float
        Cell side (0.5-20 m).
    plane_height_m : float
        Height of the horizontal measurement plane above the ground.
    center_m, size_m : tuple of float, optional
        Region of the map; the whole scene extent by default.
    samples_per_tx : int
        Rays launched per site (Monte-Carlo; more is less noisy).
    max_depth : int
        Maximum number of interactions (reflections/refractions) per path.
    sites : list of dict, optional
        Override of the scene's sites.
    seed : int
        Solver seed.
    """
    if not 0.5 <= cell_size_m <= 20.0:
        msg = f"cell_size_m: expected a number in [0.5, 20] m, got {cell_size_m!r}"
        raise InvalidInputError(msg)
    if not 0.1 <= plane_height_m <= 500.0:
        msg = f"plane_height_m: expected a number in [0.1, 500] m, got {plane_height_m!r}"
        raise InvalidInputError(msg)
    ensure_backend()
    from sionna.rt import RadioMapSolver

    meta = load_scene_meta(name)
    scene = load_rt_scene(name, sites=sites)
    ext = meta["extent_m"]
    if center_m is None:
        center_m = ((ext["x_min"] + ext["x_max"]) / 2, (ext["y_min"] + ext["y_max"]) / 2)
    if size_m is None:
        size_m = (ext["width"], ext["height"])
    t0 = time.perf_counter()
    rm = RadioMapSolver()(
        scene,
        center=[float(center_m[0]), float(center_m[1]), float(plane_height_m)],
        orientation=[0.0, 0.0, 0.0],
        size=[float(size_m[0]), float(size_m[1])],
        cell_size=[float(cell_size_m), float(cell_size_m)],
        samples_per_tx=int(samples_per_tx),
        max_depth=int(max_depth),
        seed=int(seed),
    )
    gain = np.asarray(rm.path_gain.numpy(), dtype=np.float64)
    centres = np.asarray(rm.cell_centers.numpy())
    seconds = time.perf_counter() - t0
    with np.errstate(divide="ignore"):
        gain_db = 10.0 * np.log10(gain)
    tx_power = np.array([s.get("tx_power_dbm") or 0.0 for s in (sites or meta["sites"])])
    return RadioMap(
        path_gain_db=gain_db,
        rss_dbm=gain_db + tx_power[:, None, None],
        x_m=centres[0, :, 0].astype(np.float64),
        y_m=centres[:, 0, 1].astype(np.float64),
        height_m=float(plane_height_m),
        cell_size_m=float(cell_size_m),
        site_ids=[str(s["id"]) for s in (sites or meta["sites"])],
        seconds=seconds,
    )
