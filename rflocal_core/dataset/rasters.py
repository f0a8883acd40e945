"""The radio-map grid and the scene rasters co-registered with it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape

from rflocal_core.geo import LocalFrame
from rflocal_core.scene.store import scene_dir

#: Material classes of the material raster (0 = no building).
MATERIAL_CLASSES = ("none", "concrete", "brick", "glass", "metal", "wood")

#: Half-width given to road centre lines when rasterized, in metres.
ROAD_HALF_WIDTH_M = 3.0


@dataclass(frozen=True)
class Grid:
    """A regular grid in scene metres; cell (iy, ix) has centre (x0 + ix·cell, y0 + iy·cell)."""

    x0_m: float
    y0_m: float
    cell_m: float
    nx: int
    ny: int

    @property
    def x_m(self) -> np.ndarray:
        return self.x0_m + self.cell_m * np.arange(self.nx)

    @property
    def y_m(self) -> np.ndarray:
        return self.y0_m + self.cell_m * np.arange(self.ny)

    @property
    def extent_m(self) -> tuple[float, float, float, float]:
        """(x_min, y_min, x_max, y_max): the outer edges of the cells, i.e. the area the grid covers."""
        half = self.cell_m / 2
        return (self.x0_m - half, self.y0_m - half,
                self.x0_m + (self.nx - 1) * self.cell_m + half, self.y0_m + (self.ny - 1) * self.cell_m + half)

    def cell_of(self, x_m: np.ndarray, y_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices (iy, ix) of the cells containing the points, clipped to the grid."""
        ix = np.floor((np.asarray(x_m) - self.x0_m) / self.cell_m + 0.5).astype(np.int64)
        iy = np.floor((np.asarray(y_m) - self.y0_m) / self.cell_m + 0.5).astype(np.int64)
        return np.clip(iy, 0, self.ny - 1), np.clip(ix, 0, self.nx - 1)

    def bilinear(self, field: np.ndarray, x_m: np.ndarray, y_m: np.ndarray) -> np.ndarray:
        """Bilinear interpolation of ``field`` [..., ny, nx] at points; returns [..., num_points]."""
        fx = np.clip((np.asarray(x_m) - self.x0_m) / self.cell_m, 0, self.nx - 1)
        fy = np.clip((np.asarray(y_m) - self.y0_m) / self.cell_m, 0, self.ny - 1)
        x0 = np.minimum(np.floor(fx).astype(np.int64), self.nx - 2) if self.nx > 1 else np.zeros_like(fx, dtype=np.int64)
        y0 = np.minimum(np.floor(fy).astype(np.int64), self.ny - 2) if self.ny > 1 else np.zeros_like(fy, dtype=np.int64)
        tx, ty = fx - x0, fy - y0
        x1, y1 = np.minimum(x0 + 1, self.nx - 1), np.minimum(y0 + 1, self.ny - 1)
        return (field[..., y0, x0] * (1 - tx) * (1 - ty) + field[..., y0, x1] * tx * (1 - ty)
                + field[..., y1, x0] * (1 - tx) * ty + field[..., y1, x1] * tx * ty)

    def to_dict(self) -> dict[str, Any]:
        return {"x0_m": self.x0_m, "y0_m": self.y0_m, "cell_m": self.cell_m, "nx": self.nx, "ny": self.ny}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grid:
        return cls(float(data["x0_m"]), float(data["y0_m"]), float(data["cell_m"]), int(data["nx"]), int(data["ny"]))


def scene_grid(meta: dict[str, Any], cell_m: float) -> Grid:
    """The grid covering a scene's extent with cells of ``cell_m`` (as RadioMapSolver lays it)."""
    ext = meta["extent_m"]
    nx = max(1, int(round(ext["width"] / cell_m)))
    ny = max(1, int(round(ext["height"] / cell_m)))
    cx, cy = (ext["x_min"] + ext["x_max"]) / 2, (ext["y_min"] + ext["y_max"]) / 2
    return Grid(cx - (nx - 1) * cell_m / 2, cy - (ny - 1) * cell_m / 2, float(cell_m), nx, ny)


def load_footprints_m(name: str, meta: dict[str, Any]) -> tuple[list[Any], list[float], list[str]]:
    """Footprints of a scene in scene metres, with heights and base material names."""
    frame = LocalFrame.from_dict(meta["frame"])
    features = json.loads((scene_dir(name) / "buildings.geojson").read_text(encoding="utf-8"))["features"]
    materials = {row["id"]: row for row in meta["materials"]["table"]}

    geoms, heights, mats = [], [], []
    for f in features:
        geoms.append(frame.geometry_to_xy(shape(f["geometry"])))
        heights.append(float(f["properties"]["height_m"]))
        row = materials.get(f["properties"]["material"], {})
        mats.append(row.get("itu_type") or row.get("base_material") or "concrete")
    return geoms, heights, mats


def load_roads_m(name: str, meta: dict[str, Any]) -> list[Any]:
    """Road centre lines of a scene in scene metres (empty if the source had none)."""
    path = scene_dir(name) / "roads.geojson"
    if not path.is_file():
        return []
    frame = LocalFrame.from_dict(meta["frame"])
    features = json.loads(path.read_text(encoding="utf-8"))["features"]
    return [frame.geometry_to_xy(shape(f["geometry"])) for f in features]


def rasterize_scene(
    name: str, meta: dict[str, Any], grid: Grid,
    footprints: tuple[list[Any], list[float], list[str]] | None = None,
) -> dict[str, np.ndarray]:
    """Scene rasters on ``grid``, each [ny, nx], sampled at cell centres.

    Returns ``building_height_m`` (float32, 0 outdoors), ``footprint`` (uint8),
    ``material`` (int8 index into :data:`MATERIAL_CLASSES`) and ``roads`` (uint8).
    ``footprints`` is what :func:`load_footprints_m` returns, when the caller has it already.
    """
    geoms, heights, mats = footprints if footprints is not None else load_footprints_m(name, meta)
    xs, ys = grid.x_m, grid.y_m
    height = np.zeros((grid.ny, grid.nx), dtype=np.float32)
    material = np.zeros((grid.ny, grid.nx), dtype=np.int8)
    for geom, h, mat in zip(geoms, heights, mats):
        minx, miny, maxx, maxy = geom.bounds
        ix = np.nonzero((xs >= minx) & (xs <= maxx))[0]
        iy = np.nonzero((ys >= miny) & (ys <= maxy))[0]
        if ix.size == 0 or iy.size == 0:
            continue
        gx, gy = np.meshgrid(xs[ix], ys[iy])
        inside = shapely.contains_xy(geom, gx, gy)
        sub_h = height[np.ix_(iy, ix)]
        height[np.ix_(iy, ix)] = np.where(inside, np.maximum(sub_h, h), sub_h)
        sub_m = material[np.ix_(iy, ix)]
        material[np.ix_(iy, ix)] = np.where(inside, MATERIAL_CLASSES.index(mat) if mat in MATERIAL_CLASSES else 1, sub_m)
    roads = np.zeros((grid.ny, grid.nx), dtype=np.uint8)
    lines = load_roads_m(name, meta)
    if lines:
        area = shapely.unary_union([line.buffer(ROAD_HALF_WIDTH_M) for line in lines])
        gx, gy = np.meshgrid(xs, ys)
        roads = shapely.contains_xy(area, gx, gy).astype(np.uint8)
    return {"building_height_m": height, "footprint": (height > 0).astype(np.uint8), "material": material, "roads": roads}
