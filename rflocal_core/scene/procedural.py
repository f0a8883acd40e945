"""A procedural city: street grid, blocks, varied footprints and heights, open squares.

Deterministic for a seed: the same ``ProceduralConfig`` always gives the same city.
Coordinates are scene metres with the origin at the centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from shapely.geometry import LineString, Polygon, box

from rflocal_core import settings
from rflocal_core.errors import InvalidInputError
from rflocal_core.options import check_options, option, seed_option
from rflocal_core.scene.footprints import Building


@dataclass(frozen=True)
class ProceduralConfig:
    """Parameters of the procedural city.

    Parameters
    ----------
    size_m : float
        Side of the square city, in metres (100-2000).
    block_m : float
        Mean block size between street centre lines, in metres (30-300).
    street_width_m : float
        Width of ordinary streets; every fourth street is an avenue 1.5 times wider.
    open_square_fraction : float
        Fraction of blocks left open as squares or parks (0-0.9).
    mean_height_m : float
        Median building height; heights are log-normal around it, in whole storeys.
    seed : int
        Random seed.
    """

    size_m: float = option(512.0, lo=100.0, hi=2000.0, unit="m", step=32.0, label="Size (m)",
                           help="procedural city side")
    block_m: float = option(80.0, lo=30.0, hi=300.0, unit="m", label="Block (m)", help="procedural block size")
    street_width_m: float = option(16.0, lo=4.0, hi=60.0, unit="m", label="Street width (m)",
                                   help="width of ordinary streets (avenues are 1.5 times wider)")
    open_square_fraction: float = option(0.12, lo=0.0, hi=0.9, label="Open squares", flag="open-squares",
                                         help="fraction of blocks left open as squares or parks")
    mean_height_m: float = option(18.0, lo=3.0, hi=150.0, unit="m", label="Median height (m)",
                                  help="procedural median building height")
    seed: int = seed_option(settings.scene_seed, flag=None, help="seed of the city")

    def __post_init__(self) -> None:
        check_options(self, prefix="procedural.")
        if self.street_width_m >= self.block_m / 2:
            msg = (
                f"procedural.street_width_m: {self.street_width_m} leaves no room for buildings in "
                f"{self.block_m} m blocks; expected less than half of block_m"
            )
            raise InvalidInputError(msg)


def _street_lines(size_m: float, block_m: float, rng: np.random.Generator) -> np.ndarray:
    """Street centre lines along one axis, jittered, covering [-size/2, size/2]."""
    half = size_m / 2.0
    lines = [-half]
    while lines[-1] < half:
        lines.append(lines[-1] + block_m * rng.uniform(0.75, 1.25))
    lines[-1] = half
    if len(lines) > 2 and lines[-1] - lines[-2] < block_m * 0.5:
        del lines[-2]
    return np.asarray(lines)


def generate(config: ProceduralConfig) -> tuple[list[Building], list[LineString]]:
    """Generate the city.

    Returns
    -------
    buildings : list of Building
        Footprints in scene metres with ``height_rule == "procedural"``.
    roads : list of LineString
        Street centre lines in scene metres.
    """
    rng = np.random.default_rng(config.seed)
    xs = _street_lines(config.size_m, config.block_m, rng)
    ys = _street_lines(config.size_m, config.block_m, rng)
    half = config.size_m / 2.0

    def width(i: int) -> float:
        return config.street_width_m * (1.5 if i % 4 == 0 else 1.0)

    roads = [LineString([(x, -half), (x, half)]) for x in xs] + [LineString([(-half, y), (half, y)]) for y in ys]
    buildings: list[Building] = []
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            x0, x1 = xs[i] + width(i) / 2, xs[i + 1] - width(i + 1) / 2
            y0, y1 = ys[j] + width(j) / 2, ys[j + 1] - width(j + 1) / 2
            if x1 - x0 < 8 or y1 - y0 < 8:
                continue
            if rng.random() < config.open_square_fraction:
                continue  # an open square or park
            district_height = config.mean_height_m * math.exp(rng.normal(0.0, 0.35))
            for footprint in _block_lots(x0, y0, x1, y1, rng):
                height = district_height * math.exp(rng.normal(0.0, 0.3))
                height = float(np.clip(round(height / 3.0), 2, 50) * 3.0)
                buildings.append(Building(len(buildings), footprint, height, "procedural", {"building": "yes"}))
    return buildings, roads


def _block_lots(x0: float, y0: float, x1: float, y1: float, rng: np.random.Generator) -> list[Polygon]:
    """Split a block into lots and give each a building footprint."""
    w, h = x1 - x0, y1 - y0
    if rng.random() < 0.2 and min(w, h) > 40:
        return [_courtyard(x0, y0, x1, y1, rng)]
    along_x = w >= h
    length = w if along_x else h
    n_lots = max(1, int(round(length / rng.uniform(18.0, 30.0))))
    cuts = np.sort(rng.uniform(0.0, 1.0, n_lots - 1)) if n_lots > 1 else np.array([])
    cuts = np.concatenate([[0.0], 0.15 / n_lots + cuts * (1 - 0.3 / n_lots), [1.0]]) if n_lots > 1 else np.array([0.0, 1.0])
    two_rows = min(w, h) > 36 and rng.random() < 0.6
    lots: list[Polygon] = []
    for k in range(len(cuts) - 1):
        a, b = cuts[k] * length, cuts[k + 1] * length
        if b - a < 6:
            continue
        rows = [(0.0, 0.5), (0.5, 1.0)] if two_rows else [(0.0, 1.0)]
        for r0, r1 in rows:
            if along_x:
                lot = (x0 + a, y0 + r0 * h, x0 + b, y0 + r1 * h)
            else:
                lot = (x0 + r0 * w, y0 + a, x0 + r1 * w, y0 + b)
            shape = _lot_building(*lot, rng)
            if shape is not None:
                lots.append(shape)
    return lots


def _lot_building(x0: float, y0: float, x1: float, y1: float, rng: np.random.Generator) -> Polygon | None:
    gap = rng.uniform(0.5, 2.0)  # passage between neighbouring buildings
    x0, y0, x1, y1 = x0 + gap, y0 + gap, x1 - gap, y1 - gap
    if x1 - x0 < 5 or y1 - y0 < 5:
        return None
    rect = box(x0, y0, x1, y1)
    if rng.random() < 0.25 and min(x1 - x0, y1 - y0) > 12:
        # An L-shape: cut away one corner.
        cx = x0 + (x1 - x0) * rng.uniform(0.4, 0.6)
        cy = y0 + (y1 - y0) * rng.uniform(0.4, 0.6)
        corner = [box(cx, cy, x1, y1), box(x0, cy, cx, y1), box(cx, y0, x1, cy), box(x0, y0, cx, cy)][rng.integers(4)]
        rect = rect.difference(corner)
    return rect if isinstance(rect, Polygon) else None


def _courtyard(x0: float, y0: float, x1: float, y1: float, rng: np.random.Generator) -> Polygon:
    """A perimeter block with an inner courtyard (a polygon with a hole)."""
    inset = rng.uniform(1.0, 2.5)
    depth = rng.uniform(9.0, 14.0)
    outer = [(x0 + inset, y0 + inset), (x1 - inset, y0 + inset), (x1 - inset, y1 - inset), (x0 + inset, y1 - inset)]
    hole = [
        (x0 + inset + depth, y0 + inset + depth),
        (x0 + inset + depth, y1 - inset - depth),
        (x1 - inset - depth, y1 - inset - depth),
        (x1 - inset - depth, y0 + inset + depth),
    ]
    return Polygon(outer, [hole])
