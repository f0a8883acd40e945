"""Issue 19 benchmark: leave-one-city-out over real-morphology tiles, every model, one run.

Tiles: the three OpenStreetMap extracts of ``../shared/data/osm`` (West Oakland, Aguascalientes,
a Bavarian village) and a scene shipped with Sionna (``--bundled``: ``etoile`` by default; ``munich``
cannot be a test at these settings, see :func:`tile_facts`), built with ``build_tiles`` and ray-traced
once into one dataset (ue mode, RSS + ToA + AoA, coarse maps). For each held-out tile, a copy of
that dataset whose ``test_unseen`` split is the whole tile and whose train/val/test splits are
the other tiles' samples; every model trains on the others and is tested on it:

- ``textbook ToA``: the reference, a soft-L1 range solver from the nearest node
  (:mod:`rflocal_core.models.textbook`), on the samples with >= 3 ToA reports;
- ``physics prior``: mapformer's physics log-likelihood (RSS + ToA + AoA + indoor terms, its
  default spreads) with the tile's true radio maps on the tile's own map cells (no resampling; a grid
  of more than :data:`MAX_PRIOR_CELLS` a side is resampled), argmax, nothing learned; ``physics prior (mapformer grid)``: the same on the
  square and 64 x 64 cells mapformer reads the maps on (its training square, as it is on main);
  ``physics prior (window 8 m)`` / ``(window 4 m)``: the same on the window mapformer reads in the
  window frame (64 cells of 8 m or 4 m around the window centre); ``window centre``: the first
  position the window frame centres each sample's window on (its default ``window_centre="prior"``: the
  prior's argmax over the scene's whole 4 m window lattice, exact branch and bound,
  :func:`rflocal_core.models.window.map_position`, nothing learned), with the share of targets outside
  their 256 m window; ``window centre (top 24)``: ``window_centre="prior_top24"`` (that argmax searched near
  the 24 best cells of a 16 m search only: ``"prior"`` before 2026-12-03 12:30 UTC); ``window centre (16 m
  search)``: ``window_centre="search"`` (the 16 m search's best cell, the window frame's centring before
  2026-12-03 05:30 UTC); ``window centre (line or maps)``: the window centre of ``prior_timing="line_or_maps"`` (the
  argmax of ``physics prior (line or maps)`` on the 4 m lattice; needs ``--timing-maps``); ``mapformer
  (untrained)``: mapformer
  with its default options before any training step (its heads start at zero: its physics prior decoded
  by its own head, nothing learned); ``mapformer (untrained + line-or-maps prior)``: the same with
  ``prior_timing="line_or_maps"`` (its ToA/AoA terms the even mixture of straight line and ray-traced maps, as
  ``physics prior (line or maps)``; needs ``--timing-maps``); ``physics prior (line or pooled maps)``, ``window
  centre (line or pooled maps)`` and ``mapformer (untrained + line-or-pooled-maps prior)``: the same three with
  ``prior_timing="line_or_pooled_maps"`` (each slot's map terms the even mixture over the 3x3 cells around; brief A26);
- the baselines (map matching, the geometric ones; kNN refuses a scene it has no fingerprints of);
- the networks, each ``--minutes`` of training (torch 1 thread): setnet and heimdall in the scene
  and in the sample frame, mapformer (``mapformer``: the scene frame) and locheatmap in the scene
  and in the window frame; ``mapformer (window 4 m + line-or-maps prior)``: its prior with ``prior_timing=
  "line_or_maps"`` (needs ``--timing-maps``; its fair reference is ``physics prior (line or maps)``);
  ``mapformer (window 4 m + line-or-pooled-maps prior)``: the same with ``"line_or_pooled_maps"`` (reference
  ``physics prior (line or pooled maps)``).

Each row: median / P95 on the held-out tile next to the same model's seen error (the test split
of the training tiles, less the samples of a tile that cannot be a test: :func:`tile_facts`). The
geometric baselines are also compared with the textbook solver of their kind on the same held-out
samples (the issue's 1.2x goal). Scenes and datasets are kept in ``bench/workspace-any-city`` and
reused; results merge into ``bench/results/any_city.json`` (``--seen-only``: measure the seen
error of the stored rows again, networks from their saved runs).

``--train-extra munich``: Sionna scenes added as training-only tiles (to train on a dense European city when Paris
is held out): generated with the same settings into one dataset with the other tiles (``...-x-munich``); in each
held-out copy all their samples are in train, and the other tiles keep the train/val/test splits of the dataset
without them (:func:`splits_like`), so val, the seen test and the held-out tile are the samples of the runs
without them. Procedural tiles too, by scene name (``--train-extra pm1-p00,pm1-p01,pd1-p01``: presets of
:data:`PROCEDURAL_EXTRA`, tiles where the prior fails as on Paris, see ``bench_prior_tiles.py``); ``--extra-val``: their
val samples stay in val (``--extra-val-only``: val is theirs alone, the other tiles' val samples in no split). Use
another ``--out``::

    PYTHONPATH=$PWD nice -n 10 python bench/bench_any_city.py --train-extra munich --tiles etoile \
        --models "physics prior,mapformer (window 4 m)" --out any_city-x-munich.json

``--same-tile``: the degradation from not having seen the tile, on identical samples: each model trained the same
way and for the same time once on every tile's train split (the base dataset) and once per tile without that tile
(its held-out dataset), both evaluated on that tile's own test split (the held-out model's prediction of the whole
tile, restricted to the test split's sample indices); stored under ``tiles.<tile>.same_tile`` (the rows above kept)::

    PYTHONPATH=$PWD nice -n 10 python bench/bench_any_city.py [--tiles etoile,oakland] [--models setnet,knn] [--out any_city.json]
    PYTHONPATH=$PWD python bench/bench_any_city.py --table        # the markdown table of the JSON
    PYTHONPATH=$PWD nice -n 10 python bench/bench_any_city.py --same-tile --models "physics prior,map_matching"
    PYTHONPATH=$PWD python bench/bench_any_city.py --same-tile --table   # held out vs same-tile seen
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from rflocal_core.dataset.config import GenerationConfig  # noqa: E402 (after ROOT is on the path)
from rflocal_core.errors import InvalidInputError  # noqa: E402
from rflocal_core.models.window import map_pool_cells  # noqa: E402
from rflocal_core.options import check_value, flag_help, option_of  # noqa: E402

WORKSPACE = ROOT / "bench" / "workspace-any-city"
RESULTS = ROOT / "bench" / "results" / "any_city.json"  # --out replaces it
OSM_DIR = ROOT.parent / "shared" / "data" / "osm"
if not OSM_DIR.is_dir():  # a worktree beside the main checkout
    OSM_DIR = Path("/work/shared/data/osm")

#: The dataset option ``timing_map_factor`` (default, range, help) behind ``--timing-map-factor``.
TIMING_MAP_FACTOR = option_of(GenerationConfig, "timing_map_factor")
#: The factor the stored ``-tm`` datasets were traced at: their name stays, any other factor is another name (so a
#: new default of the option never reuses them).
STORED_TIMING_MAP_FACTOR = 4
#: Tile key: (kind, OSM file stem or bundled scene); the Sionna scene is ``--bundled``'s.
TILES = {"oakland": ("osm", "West-Oakland"), "aguascalientes": ("osm", "aguascalientes"),
         "bavaria": ("osm", "bavaria_village_48.135_10.068")}
#: Sionna scenes ``--bundled`` may add as the fourth tile.
BUNDLED = ("etoile", "munich", "florence", "san_francisco")
#: Procedural training-only tiles (``--train-extra pd1-p00``: tile 0 of seed 1 drawn from preset ``pd``; the name is the
#: tile's scene name): preset -> the ``TilesConfig`` ranges its tiles draw from. Chosen (brief A21) as tiles where the
#: physics prior fails as it does on Paris (few line-of-sight ranges), not on any held-out figure.
PROCEDURAL_EXTRA = {
    "pd": {"size_m": (600.0, 900.0), "block_m": (40.0, 80.0), "street_width_m": (5.0, 10.0),  # dense, narrow, tall
           "mean_height_m": (20.0, 40.0), "open_square_fraction": (0.0, 0.05), "site_count": (4, 6)},
    "pm": {"size_m": (700.0, 900.0), "block_m": (80.0, 140.0), "street_width_m": (10.0, 25.0),  # Paris-like blocks
           "mean_height_m": (15.0, 25.0), "open_square_fraction": (0.0, 0.1), "site_count": (4, 6)},
}
PROCEDURAL_NAME = re.compile(r"^(?P<preset>[a-z]+)(?P<seed>[0-9]+)-p(?P<k>[0-9]{2})$")
#: Baselines run (kNN to show that it refuses a new scene).
BASELINE_MODELS = ("strongest_site", "weighted_centroid", "log_distance", "aoa_triangulation",
                   "toa_multilateration", "map_matching", "knn")
#: Networks: shown name -> (model, model options).
NETWORKS = {"setnet (scene)": ("setnet", {"frame": "scene"}), "setnet (sample)": ("setnet", {"frame": "sample"}),
            "heimdall (scene)": ("heimdall", {"frame": "scene"}),
            "heimdall (sample)": ("heimdall", {"frame": "sample"}),
            "mapformer": ("mapformer", {"frame": "scene"}),
            "mapformer (window 8 m)": ("mapformer", {"frame": "window", "cell_m": 8.0}),
            "mapformer (window 4 m)": ("mapformer", {"frame": "window", "cell_m": 4.0}),
            "locheatmap (scene)": ("locheatmap", {"frame": "scene"}),
            "locheatmap (window)": ("locheatmap", {"frame": "window"}),
            "mapformer (window 4 m + map channels)": ("mapformer", {"frame": "window", "cell_m": 4.0,
                                                                   "use_map_channels": True}),
            "mapformer (window 4 m + line-or-maps prior)": ("mapformer", {"frame": "window", "cell_m": 4.0,
                                                                        "prior_timing": "line_or_maps"}),
            "mapformer (window 4 m + line-or-pooled-maps prior)": ("mapformer", {
                "frame": "window", "cell_m": 4.0, "prior_timing": "line_or_pooled_maps"})}
#: Rows trained like another with one ``TrainConfig.select_on`` (the validation figure that chooses the epoch kept,
#: brief A27): shown name -> (the row whose model and options it shares, ``select_on``).
SELECT_ROWS = {f"mapformer (window 4 m + line-or-maps prior; select on {s})": ("mapformer (window 4 m + line-or-maps "
                                                                               "prior)", s)
               for s in ("mean", "over_10m", "p95")}
NETWORKS.update({shown: NETWORKS[like] for shown, (like, _) in SELECT_ROWS.items()})
#: The ``mapformer (untrained...)`` rows: shown name -> mapformer options (the defaults otherwise).
UNTRAINED_ROWS = {"mapformer (untrained)": {},
                  "mapformer (untrained + line-or-maps prior)": {"prior_timing": "line_or_maps"},
                  "mapformer (untrained + line-or-pooled-maps prior)": {"prior_timing": "line_or_pooled_maps"}}
#: Rows that read the ToA/AoA maps of the dataset (``use_map_channels``): they need ``--timing-maps``.
MAP_CHANNEL_ROWS = ("physics prior (ToA/AoA maps)", "physics prior (line or maps)", "window centre (line or maps)",
                    "physics prior (line or pooled maps)", "window centre (line or pooled maps)",
                    *(k for k, o in UNTRAINED_ROWS.items() if o.get("prior_timing", "line") != "line"),
                    *(k for k, (_, o) in NETWORKS.items() if o.get("use_map_channels")
                      or o.get("prior_timing", "line") != "line"))
#: The ``window centre`` rows: shown name -> ``window_centre`` (and the prior's ToA/AoA terms, ``prior_timing``).
WINDOW_CENTRE_ROWS = {"window centre (16 m search)": ("search", "line"),
                      "window centre (top 24)": ("prior_top24", "line"), "window centre": ("prior", "line"),
                      "window centre (line or maps)": ("prior", "line_or_maps"),
                      "window centre (line or pooled maps)": ("prior", "line_or_pooled_maps")}
#: The physics-prior rows that argmax the whole tile: shown name -> :func:`physics_prior`'s options.
PRIORS = {"physics prior": {}, "physics prior (ToA/AoA maps)": {"timing": True},
          "physics prior (line or maps)": {"timing": True, "either": True},
          "physics prior (line or pooled maps)": {"timing": True, "either": True,
                                                  "pool": map_pool_cells("line_or_pooled_maps")}}
#: The :data:`PRIORS` row of each ``prior_timing``: the prior a network with it starts from (:func:`fair_prior`).
PRIOR_OF_TIMING = {"line": "physics prior", "line_or_maps": "physics prior (line or maps)",
                   "line_or_pooled_maps": "physics prior (line or pooled maps)"}
REFERENCES = ("textbook ToA", "physics prior", "physics prior (ToA/AoA maps)", "physics prior (line or maps)",
              "physics prior (line or pooled maps)",
              "physics prior (mapformer grid)", *WINDOW_CENTRE_ROWS,
              "physics prior (window 8 m)", "physics prior (window 4 m)", *UNTRAINED_ROWS)
ALL_MODELS = (*REFERENCES, *BASELINE_MODELS, *NETWORKS)
#: Largest grid side (cells) of the ``physics prior`` reference (memory); a larger scene's grid is resampled.
MAX_PRIOR_CELLS = 512
#: Geometric baseline -> the textbook solver kind it is measured against.
GEOMETRIC = {"toa_multilateration": "toa", "aoa_triangulation": "aoa", "log_distance": "rss"}


# --------------------------------------------------------------------------- data


def dataset_name(samples: int, cell_m: float, bundled: str, extra: tuple[str, ...] = (), *,
                 timing_maps: bool = False, timing_map_factor: int | None = None) -> str:
    """The one dataset's name: ``ac-all-500-4m-etoile``; with training-only tiles ``...-etoile-x-munich`` (a name over
    64 characters, a dataset name's limit, is cut and made unique by a digest); with ToA/AoA maps (``--timing-maps``)
    ``ac-all-500-4m-tm-etoile`` (traced every 4 cells, :data:`STORED_TIMING_MAP_FACTOR`), every
    ``timing_map_factor`` cells otherwise (``--timing-map-factor``; None: the dataset option's default)
    ``ac-all-500-4m-tm2-etoile`` (another dataset: nothing stored is reused for it)."""
    factor = timing_map_factor or TIMING_MAP_FACTOR.default
    factor = "" if factor == STORED_TIMING_MAP_FACTOR else str(factor)
    name = f"ac-all-{samples}-{cell_m:g}m".replace(".", "p") + (f"-tm{factor}" if timing_maps else "")
    name += "" if bundled == "munich" else f"-{bundled}"
    return short_name(name + "".join(f"-x-{e}" for e in extra))


def short_name(name: str, limit: int = 64) -> str:
    """``name`` when it fits a dataset name's ``limit``, else its first characters and a digest of the whole."""
    if len(name) <= limit:
        return name
    return f"{name[:limit - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def procedural_extra(name: str) -> Any:
    """The ``TilesConfig`` whose last procedural tile is the training-only tile ``name`` (``pd1-p02``: preset ``pd``
    of :data:`PROCEDURAL_EXTRA`, seed 1, tile 2; its scene is named ``name``), or None when ``name`` is not of that
    form or names no preset."""
    from rflocal_core.scene.tiles import TilesConfig

    match = PROCEDURAL_NAME.match(name)
    if match is None or match["preset"] not in PROCEDURAL_EXTRA:
        return None
    return TilesConfig(count=int(match["k"]) + 1, seed=int(match["seed"]), prefix=match["preset"], unseen=0,
                       **PROCEDURAL_EXTRA[match["preset"]])


def build_data(samples: int, cell_m: float, bundled: str, extra: tuple[str, ...] = (), *,
               timing_maps: bool = False, timing_map_factor: int | None = None) -> tuple[dict[str, str], str]:
    """Build the tiles and the one dataset over all of them (kept when present): tile key -> scene, dataset.

    ``extra``: Sionna scenes or procedural tiles (:func:`procedural_extra`) added after the others, in that order, as
    training-only tiles (``--train-extra``), generated with the same settings in the same dataset; their scene keys
    are their names.
    ``timing_maps``: the dataset also holds ToA and AoA maps per site (the dataset option ``timing_maps``: exact paths
    every ``timing_map_factor`` map cells, interpolated; None: the option's default, 4), for the rows that read them
    (:data:`MAP_CHANNEL_ROWS`); its seconds of ray tracing are printed and kept in the dataset's ``seconds``
    attribute.
    """
    from rflocal_core.scene.tiles import TilesConfig, build_tiles

    osm = tuple(str(OSM_DIR / f"{stem}.osm") for kind, stem in TILES.values() if kind == "osm")
    sionna = tuple(e for e in extra if e in BUNDLED)
    tiles = build_tiles(TilesConfig(count=0, seed=0, prefix="ac", unseen=0, osm=osm, bundled=(bundled, *sionna)))
    scenes = {}
    for key, (kind, stem) in {**TILES, **{b: ("bundled", b) for b in (bundled, *extra)}}.items():
        if key in extra and key not in BUNDLED:  # a procedural tile: built by its own draw, named as asked
            scenes[key] = next(t.name for t in build_tiles(procedural_extra(key)).tiles if t.name == key)
            continue
        scenes[key] = next(t.name for t in tiles.tiles if t.kind == kind and (
            Path(str(t.source)).stem == stem if kind == "osm" else t.source == stem))
    name = dataset_name(samples, cell_m, bundled, extra, timing_maps=timing_maps, timing_map_factor=timing_map_factor)
    generate_tiles(name, tuple(scenes.values()), samples, cell_m, timing_maps=timing_maps,
                   timing_map_factor=timing_map_factor)
    return scenes, name


def generate_tiles(name: str, scenes: tuple[str, ...], samples: int, cell_m: float, *,
                   timing_maps: bool = False, timing_map_factor: int | None = None) -> None:
    """Dataset ``name`` over ``scenes`` with the tiles' generation settings (ue mode, ``samples`` a scene, radio-map
    cells of ``cell_m``, 1e6 rays a site, 1e4 path samples a source; ``timing_maps``: ToA/AoA maps too, traced every
    ``timing_map_factor`` cells, None: the option's default); kept when present. Prints the seconds of each stage."""
    from rflocal_core.dataset import GenerationConfig, generate_dataset
    from rflocal_core.dataset.store import dataset_path

    if dataset_path(name).exists():
        return
    t0 = time.perf_counter()
    done = generate_dataset(GenerationConfig(name=name, scenes=scenes, samples_per_scene=samples, mode="ue",
                                             cell_size_m=cell_m, map_samples_per_tx=1_000_000,
                                             paths_samples_per_src=10_000, timing_maps=timing_maps,
                                             timing_map_factor=timing_map_factor or TIMING_MAP_FACTOR.default),
                            progress=lambda stage, fraction, **_: print(f"  {fraction:4.0%} {stage}", flush=True))
    print(f"dataset {name}: {time.perf_counter() - t0:.0f} s, by stage {json.dumps(done['seconds'])}", flush=True)


def held_out_dataset(base: str, scene: str, train_only: tuple[str, ...] = (), like: str | None = None, *,
                     extra_val: bool = False, extra_val_only: bool = False) -> str:
    """A copy of ``base`` with ``scene`` as its ``test_unseen`` split and the other scenes' splits (kept when present).

    ``train_only``: scenes whose val and test samples go to the train split too (training-only tiles). ``like``: a
    dataset whose samples are ``base``'s first ones (the same tiles, same positions, checked); its train/val/test
    splits are used for them, so the val and seen test samples are the ones of the runs without the extra tiles.
    ``extra_val``: the ``train_only`` scenes keep their val samples in val (the epoch is chosen on them too; only
    their test samples go to train); another dataset (``...-xv``). ``extra_val_only``: with ``extra_val``, val is
    only theirs (:func:`val_only_of`; the other scenes' val samples are in no split); another dataset (``...-xvo``).
    """
    import zarr

    from rflocal_core.dataset import store
    from rflocal_core.models import load_inputs

    suffix = "-xvo" if extra_val_only else "-xv" if extra_val else ""
    name = short_name(f"{base}-lo-{scene}{suffix}")  # a long base (--train-extra): cut, made unique by a digest
    if store.dataset_path(name).exists():
        return name
    tmp = store.dataset_path(name).with_name(f".{name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(store.dataset_path(base), tmp)
    root = zarr.open_group(str(tmp), mode="a")
    scenes = tuple(root.attrs["config"]["scenes"])
    scene_idx = np.asarray(root["samples/scene_idx"][...])
    out = scene_idx == scenes.index(scene)
    group = root["splits"]
    splits = {k: np.asarray(group[k][...]) for k in ("train", "val", "test")}
    if like is not None:
        splits = splits_like(root, like, splits)
    splits = {k: v[~out[v]] for k, v in splits.items()}
    splits = move_to_train(splits, scene_idx, [scenes.index(s) for s in train_only], keep_val=extra_val)
    if extra_val_only:
        splits = val_only_of(splits, scene_idx, [scenes.index(s) for s in train_only])
    splits["test_unseen"] = np.flatnonzero(out)
    for key, idx in splits.items():  # overwrites the split
        store.write_array(group, key, idx.astype(np.int64), chunk_rows=max(len(idx), 1))
    config = dict(root.attrs["config"])
    config["unseen_scenes"] = [scene]
    config["name"] = name
    root.attrs["config"] = config
    root.attrs["digest"] = f"{root.attrs.get('digest')}-lo-{scene}"  # another dataset: another digest
    counts = dict(root.attrs.get("counts") or {})
    counts["splits"] = {k: len(v) for k, v in splits.items()}
    root.attrs["counts"] = counts
    tmp.rename(store.dataset_path(name))
    assert len(load_inputs(name, "test_unseen", with_maps=False)) == int(out.sum())
    return name


def splits_like(root: Any, like: str, splits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``splits`` with the train/val/test splits of dataset ``like`` for its samples, which must be the first ones of
    ``root`` (the same positions); the samples after them keep their split in ``splits``.

    Raises ``ValueError`` naming ``like`` when its samples are not ``root``'s first ones.
    """
    import zarr

    from rflocal_core.dataset import store

    ref = zarr.open_group(str(store.dataset_path(like)), mode="r")
    n = ref["samples/scene_idx"].shape[0]
    same = n <= root["samples/scene_idx"].shape[0] and np.array_equal(
        np.asarray(ref["samples/pos_m"][...]), np.asarray(root["samples/pos_m"][:n]), equal_nan=True)
    if not same:
        msg = f"like: the samples of {like!r} are not the first {n} of this dataset (positions differ)"
        raise ValueError(msg)
    out = {k: np.asarray(ref["splits"][k][...]) for k in splits}
    return {k: np.sort(np.concatenate([out[k], v[v >= n]])) for k, v in splits.items()}


def move_to_train(splits: dict[str, np.ndarray], scene_idx: np.ndarray, scenes: list[int], *,
                  keep_val: bool = False) -> dict[str, np.ndarray]:
    """``splits`` (split -> sample indices) with the val and test samples of ``scenes`` (scene indices) in train
    (``keep_val``: only their test samples)."""
    kept = ("train", "val") if keep_val else ("train",)
    moved = {k: v[np.isin(scene_idx[v], scenes)] for k, v in splits.items() if k not in kept}
    out = {k: (v if k in kept else v[~np.isin(scene_idx[v], scenes)]) for k, v in splits.items()}
    out["train"] = np.sort(np.concatenate([splits["train"], *moved.values()]))
    return out


def val_only_of(splits: dict[str, np.ndarray], scene_idx: np.ndarray, scenes: list[int]) -> dict[str, np.ndarray]:
    """``splits`` with val reduced to the samples of ``scenes`` (scene indices; ``--extra-val-only``: the epoch is
    chosen on the training-only tiles, where the prior fails, alone); the others leave val for no split, so train
    is the same as with ``--extra-val``."""
    return {**splits, "val": splits["val"][np.isin(scene_idx[splits["val"]], scenes)]}


# --------------------------------------------------------------------------- references


def physics_prior(x: Any, cell_m: float, chunk: int = 8, *, spec: Any = None, res: int | None = None,
                  timing: bool = False, either: bool = False, pool: int = 0) -> np.ndarray:
    """Argmax of mapformer's physics log-likelihood with ``x``'s true maps, on each scene's own grid. [N, 2] m.

    With ``spec`` and ``res``: on that square instead (mapformer's: its training square, ``res`` cells a side).
    ``timing``: its ToA and AoA terms with the ray-traced ToA/AoA maps in place of straight lines
    (:func:`rflocal_core.models.mapformer.timing_map_terms`; a dataset made with ``timing_maps``); with ``either``,
    each of the two terms is the even mixture of its straight-line and its map version (the sample's ranges follow
    one or the other): mapformer's ``prior_timing="line_or_maps"``
    (:func:`~rflocal_core.models.mapformer.mix_timing_maps`); ``pool``: each slot's map terms mixed over the map
    cells within ``pool`` cells (``prior_timing="line_or_pooled_maps"``,
    :func:`~rflocal_core.models.mapformer.pool_map_cells`).
    """
    import torch

    from rflocal_core.models.features import FeatureSpec, make_batch
    from rflocal_core.models.inputs import scene_extent
    from rflocal_core.models.mapformer import MapFormerConfig, mix_timing_maps, physics_loglik, timing_map_terms
    from rflocal_core.models.maps import MapSource

    cfg = MapFormerConfig()
    out = np.full((len(x), 2), np.nan)
    ext = scene_extent(x)
    for i in range(len(x.scenes)):
        rows = np.flatnonzero(x.scene_idx == i)
        if len(rows) == 0:
            continue
        part = x.subset(rows)
        x0, x1, y0, y1 = ext[rows[0]]
        side = max(x1 - x0, y1 - y0)
        own = FeatureSpec(((x0 + x1 - side) / 2, (y0 + y1 - side) / 2), float(side), (), part.node_mask.shape[1])
        cells = int(min(MAX_PRIOR_CELLS, np.ceil(side / cell_m)))
        grid = (part.maps or {}).get(part.scenes[i]).grid if part.maps else None
        if grid is not None and max(grid.nx, grid.ny) <= MAX_PRIOR_CELLS:  # the scene's own map cells: no resampling
            cells = max(grid.nx, grid.ny)
            own = FeatureSpec((grid.x0_m - grid.cell_m / 2, grid.y0_m - grid.cell_m / 2), cells * grid.cell_m, (),
                              part.node_mask.shape[1])
        square = spec or own
        cells = res or cells
        source = MapSource.from_inputs(part, square, res=cells, channels=timing)
        batch = make_batch(part, square)
        unit = np.zeros((len(part), 2))
        with torch.no_grad():
            for s in range(0, len(part), chunk):
                sl = np.arange(s, min(s + chunk, len(part)))
                mb = source.batch(batch.index(torch.from_numpy(sl)), sl)
                ll = physics_loglik(mb, rss_sigma_db=cfg.prior_rss_sigma_db, toa_sigma_m=cfg.prior_toa_sigma_m,
                                    aoa_sigma_deg=cfg.prior_aoa_sigma_deg)  # [B, 4, H, W]
                if timing:  # mapformer's prior_timing="line_or_maps" (either), or the map terms alone
                    terms = timing_map_terms(mb, toa_sigma_m=cfg.prior_toa_sigma_m,
                                             aoa_sigma_deg=cfg.prior_aoa_sigma_deg, pool=pool)
                    if either:
                        ll = mix_timing_maps(ll, terms)
                    elif terms is not None:
                        ll[:, 1], ll[:, 2] = terms
                ll = ll.sum(1)  # [B, H, W]
                h, w = ll.shape[-2:]
                best = ll.reshape(len(sl), -1).argmax(1).numpy()
                unit[sl] = np.column_stack([(best % w + 0.5) / w, (best // w + 0.5) / h])
        out[rows] = square.to_metres(unit)
    return out


def window_centre(x: Any, train: Any, centre: str, cell_m: float = 4.0, timing: str = "line") -> dict[str, Any]:
    """Where mapformer's window frame (64 cells of ``cell_m``) centres each window (``centre``: its
    ``window_centre``; ``timing``: its ``prior_timing``), as error stats, and the share of samples whose target falls
    outside their window."""
    from rflocal_core.models.features import FeatureSpec
    from rflocal_core.models.mapformer import MapFormerConfig
    from rflocal_core.models.window import map_position

    t0 = time.perf_counter()
    fix, ok = map_position(x, fine_m=cell_m if centre != "search" else None, exact=centre == "prior",
                           prior_timing=timing)
    secs = time.perf_counter() - t0
    cfg = MapFormerConfig(cell_m=cell_m, window_centre=centre, prior_timing=timing)
    spec = FeatureSpec.fit(train, frame="window", window=cfg.window())
    origin, side = spec.frames(x)
    inside = ((x.truth_m >= origin) & (x.truth_m < origin + side[:, None])).all(1)
    return {**_stats(np.where(ok, _err(fix, x), np.nan)), "outside_window": round(float(1 - inside.mean()), 3),
            "search_s": round(secs, 1)}


def untrained_mapformer(train: Any, options: dict[str, Any] | None = None) -> Any:
    """mapformer with its default options (but ``options``) before any training step: its logit and fine heads
    start at zero,
    so it answers its physics prior through its own head (the 16 m cell holding the prior's best 4 m cell,
    ``prior_pool="max"``, the log-sum-exp's best before 2026-12-03 15:00 UTC; within it, the prior's posterior
    mean on 1 m points near that best 4 m cell, ``prior_subcell``), nothing learned."""
    import torch

    from rflocal_core.models.features import FeatureSpec
    from rflocal_core.models.nets import build_network
    from rflocal_core.models.neural import NeuralModel

    torch.manual_seed(0)
    options = options or {}
    probe = build_network("mapformer", options, vocab_size=0).config
    spec = FeatureSpec.fit(train, frame=probe.frame, window=probe.window())
    return NeuralModel("mapformer", build_network("mapformer", options, vocab_size=len(spec.node_keys)).eval(), spec)


def physics_prior_window(x: Any, train: Any, cell_m: float, chunk: int = 8) -> np.ndarray:
    """The same argmax on the windows mapformer reads in the window frame: ``map_res`` cells of ``cell_m``. [N, 2] m."""
    import torch

    from rflocal_core.models.features import FeatureSpec, make_batch
    from rflocal_core.models.mapformer import MapFormerConfig, physics_loglik
    from rflocal_core.models.maps import MapSource

    cfg = MapFormerConfig(frame="window", cell_m=cell_m)
    spec = FeatureSpec.fit(train, frame="window", window=cfg.window())
    source = MapSource.from_inputs(x, spec, res=cfg.map_res)
    batch = make_batch(x, spec)
    unit = np.zeros((len(x), 2))
    with torch.no_grad():
        for s in range(0, len(x), chunk):
            sl = np.arange(s, min(s + chunk, len(x)))
            mb = source.batch(batch.index(torch.from_numpy(sl)), sl)
            ll = physics_loglik(mb, rss_sigma_db=cfg.prior_rss_sigma_db, toa_sigma_m=cfg.prior_toa_sigma_m,
                                aoa_sigma_deg=cfg.prior_aoa_sigma_deg).sum(1)
            h, w = ll.shape[-2:]
            best = ll.reshape(len(sl), -1).argmax(1).numpy()
            unit[sl] = np.column_stack([(best % w + 0.5) / w, (best // w + 0.5) / h])
    return batch.to_metres(unit, spec)


def _stats(err: np.ndarray) -> dict[str, Any]:
    err = err[np.isfinite(err)]
    if len(err) == 0:
        return {"n": 0}
    return {"n": len(err), "median_m": round(float(np.median(err)), 1),
            "p95_m": round(float(np.percentile(err, 95)), 1)}


def _err(pos: np.ndarray, x: Any) -> np.ndarray:
    return np.hypot(*(pos - x.truth_m).T)


def _vs_textbook(name: str, model: Any, x: Any) -> dict[str, Any]:
    """A geometric baseline against the textbook solver of its kind, on the same samples of ``x``."""
    from rflocal_core.models.textbook import textbook_fixes

    kind = GEOMETRIC[name]
    law = {}
    if kind == "rss":
        st = model.state_dict()
        law = {"g0_db": st["g0_db"], "n": st["n"], "device_z_m": st["target_z_m"]}
    rows, ref = textbook_fixes(x, kind, **law)
    if len(rows) == 0:
        return {"n": 0}
    ours = np.median(_err(model.predict(x.subset(rows)).position_m, x.subset(rows)))
    theirs = np.median(np.hypot(*(ref - x.truth_m[rows]).T))
    return {"n": len(rows), "median_m": round(float(ours), 1), "textbook_median_m": round(float(theirs), 1),
            "ratio": round(float(ours / max(theirs, 1e-9)), 2)}


# --------------------------------------------------------------------------- models


def run_reference(name: str, train: Any, seen: Any, unseen: Any, cell_m: float, *,
                  only_seen: bool = False) -> dict[str, Any]:
    from rflocal_core.models.features import FeatureSpec
    from rflocal_core.models.mapformer import MapFormerConfig
    from rflocal_core.models.textbook import textbook_fixes

    row: dict[str, Any] = {}
    for key, x in (("seen", seen), ("unseen", unseen))[:1 if only_seen else 2]:
        if name in PRIORS:  # straight lines, the ray-traced ToA/AoA maps, or either (even odds)
            row[key] = _stats(_err(physics_prior(x, cell_m, **PRIORS[name]), x))
        elif name.startswith("physics prior (window"):  # "physics prior (window 4 m)": cells of 4 m
            row[key] = _stats(_err(physics_prior_window(x, train, float(name.split()[-2])), x))
        elif name in UNTRAINED_ROWS:  # its prior through its own head: nothing learned (heads start at 0)
            row[key] = _stats(_err(untrained_mapformer(train, UNTRAINED_ROWS[name]).predict(x).position_m, x))
        elif name.startswith("window centre"):  # where the window frame centres each sample's window (nothing learned)
            centre, timing = WINDOW_CENTRE_ROWS[name]
            row[key] = window_centre(x, train, centre, timing=timing)
        elif name == "physics prior (mapformer grid)":  # the square and cells mapformer reads the maps on
            grid = {"spec": FeatureSpec.fit(train), "res": MapFormerConfig().map_res}
            row[key] = _stats(_err(physics_prior(x, cell_m, **grid), x))
        else:
            rows, fixes = textbook_fixes(x, "toa")
            row[key] = _stats(np.hypot(*(fixes - x.truth_m[rows]).T))
    return row


def run_baseline(name: str, train: Any, val: Any, seen: Any, unseen: Any) -> dict[str, Any]:
    from rflocal_core.errors import InvalidInputError
    from rflocal_core.models import BASELINES

    t0 = time.perf_counter()
    model = BASELINES[name]().fit(train, val)
    row: dict[str, Any] = {"seen": _stats(_err(model.predict(seen).position_m, seen))}
    try:
        row["unseen"] = _stats(_err(model.predict(unseen).position_m, unseen))
    except InvalidInputError as exc:  # a model tied to its training scenes says so
        row["unseen"] = {"refused": str(exc)[:160]}
    if name in GEOMETRIC:
        row["vs_textbook"] = _vs_textbook(name, model, unseen)
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def run_network(shown: str, dataset: str, seen: Any, unseen: Any, minutes: float,
                prior_err: np.ndarray | None = None) -> dict[str, Any]:
    """``shown`` trained ``minutes`` on ``dataset``; with ``prior_err`` (the errors on ``unseen`` of its fair prior,
    :func:`fair_prior`) also its per-sample comparison with that prior there (:func:`versus_prior`; ``prior`` names
    it)."""
    from rflocal_core.infer import load_run
    from rflocal_core.train import train

    model, options = NETWORKS[shown]
    t0 = time.perf_counter()
    result = train(dataset, model, model_config=options, train_config=network_train_config(shown, minutes), seed=0)
    secs = time.perf_counter() - t0
    net = load_run(result.run_id).model
    err = _err(net.predict(unseen).position_m, unseen)
    row: dict[str, Any] = {"seen": _stats(_err(net.predict(seen).position_m, seen)), "unseen": _stats(err),
                           "train_s": round(secs, 1), "run": result.run_id}
    if prior_err is not None:
        row["vs_prior"] = {"prior": fair_prior(shown), **versus_prior(err, prior_err)}
    for key in ("best_epoch", "epochs_run", "stopped"):
        if getattr(result, key, None) is not None:
            row[key] = getattr(result, key)
    return row


def network_train_config(shown: str, minutes: float) -> dict[str, Any]:
    """The ``TrainConfig`` of network row ``shown``: 1000 epochs cut by ``minutes``; a :data:`SELECT_ROWS` row's
    ``select_on`` (the others: the default, the validation median)."""
    cfg: dict[str, Any] = {"epochs": 1000, "max_minutes": minutes}
    if shown in SELECT_ROWS:
        cfg["select_on"] = SELECT_ROWS[shown][1]
    return cfg


def fair_prior(shown: str) -> str:
    """The physics-prior row (of :data:`PRIORS`) network row ``shown`` is compared with sample by sample
    (``vs_prior``): the one it starts from, ``physics prior (line or maps)`` for ``prior_timing="line_or_maps"``
    (its ToA/AoA terms the mixture of straight line and maps), else the straight-line ``physics prior``."""
    return PRIOR_OF_TIMING[NETWORKS[shown][1].get("prior_timing", "line")]


def versus_prior(err: np.ndarray, prior_err: np.ndarray, far_m: float = 10.0) -> dict[str, Any]:
    """A model's errors against the physics prior's on the same samples (m, [N] each).

    ``prior_far``: the samples the prior has more than ``far_m`` off (on Paris its wrong mode, where few ranges are
    line-of-sight); ``fixed``: the share of those the model brings within ``far_m``; ``broken``: the share of the
    others it takes beyond ``far_m``; their medians; ``better_1m`` / ``worse_1m``: the shares of all samples where
    it is more than 1 m better / worse than the prior.
    """
    far = prior_err > far_m

    def share(mask: np.ndarray) -> float | None:
        return round(float(mask.mean()), 3) if len(mask) else None

    def median(values: np.ndarray) -> float | None:
        return round(float(np.median(values)), 1) if len(values) else None

    return {"prior_far": int(far.sum()), "fixed": share(err[far] <= far_m), "broken": share(err[~far] > far_m),
            "prior_far_median_m": median(prior_err[far]), "model_on_prior_far_median_m": median(err[far]),
            "better_1m": share(err < prior_err - 1.0), "worse_1m": share(err > prior_err + 1.0)}


def tile_facts(x: Any, cell_m: float) -> dict[str, Any]:
    """What a held-out tile's samples cover: their spread and reports; ``excluded`` says why a tile cannot be a test.

    Sionna's munich at 1e6 rays per site and 4 m cells: 1.5-8.6% of its cells have a ray from a site and
    almost none from three, so all 500 samples fell in two 4 m cells where PathSolver found no path (no ToA/AoA).
    """
    span = (x.truth_m.max(0) - x.truth_m.min(0)).round(1)
    facts = {"samples": len(x), "span_m": span.tolist(),
             **{f"{k}_per_sample": round(float(np.isfinite(getattr(x, f)).sum(1).mean()), 2)
                for k, f in (("rss", "rss_dbm"), ("toa", "toa_ns"), ("aoa", "aoa_deg"))}}
    why = []
    if span.max() < 10 * cell_m:
        why.append(f"its samples span only {span.max():.0f} m")
    if facts["toa_per_sample"] == 0:
        why.append("no ToA report (no path found)")
    if why:
        facts["excluded"] = "; ".join(why)
    return facts


def seen_again(key: str, scene: str, models: list[str], train: Any, val: Any, seen: Any, cell_m: float,
               save: Any) -> dict[str, Any]:
    """The seen error of each stored row measured again on ``seen`` (held-out rows kept; networks not retrained)."""
    from rflocal_core.infer import load_run
    from rflocal_core.models import BASELINES

    old = (json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}).get("tiles", {}).get(key, {}).get("models", {})
    rows = {}
    for name in models:
        if name not in old:
            continue
        row = dict(old[name])
        if name in REFERENCES:
            row["seen"] = run_reference(name, train, seen, seen, cell_m, only_seen=True)["seen"]
        elif name in BASELINE_MODELS:
            row["seen"] = _stats(_err(BASELINES[name]().fit(train, val).predict(seen).position_m, seen))
        else:
            row["seen"] = _stats(_err(load_run(row["run"]).model.predict(seen).position_m, seen))
        rows[name] = row
        print(f"  {name}: seen {row['seen']}", flush=True)
        save(key, scene, {name: row})
    return rows


def run_tile(key: str, scene: str, base: str, models: list[str], minutes: float, cell_m: float,
             save: Any, *, seen_only: bool = False, train_only: tuple[str, ...] = (),
             like: str | None = None, extra_val: bool = False, extra_val_only: bool = False) -> dict[str, Any]:
    """Every model of ``models`` held out on tile ``key`` (scene ``scene``); ``train_only`` and ``like``: see
    :func:`held_out_dataset` (``--train-extra``: the extra tiles' facts are stored with the held-out tile's)."""
    from rflocal_core.models import load_inputs

    dataset = held_out_dataset(base, scene, train_only, like, extra_val=extra_val, extra_val_only=extra_val_only)
    train, val = load_inputs(dataset, "train"), load_inputs(dataset, "val")
    seen, unseen = load_inputs(dataset, "test"), load_inputs(dataset, "test_unseen")
    print(f"== {key} ({scene}): train {len(train)}, seen test {len(seen)}, held out {len(unseen)}", flush=True)
    facts = tile_facts(unseen, cell_m)
    if train_only:  # what the training-only tiles bring (their samples are all in train)
        facts["train_extra"] = {s: tile_facts(train.subset(train.scene_idx == train.scenes.index(s)), cell_m)
                                for s in train_only}
        print(f"  training-only tiles: {json.dumps(facts['train_extra'])}", flush=True)
    junk = [i for i in np.unique(seen.scene_idx) if seen.scenes[i] != scene and "excluded" in tile_facts(
        load_inputs(held_out_dataset(like or base, seen.scenes[i]), "test_unseen", with_maps=False), cell_m)]
    if junk:  # the seen error is measured on tiles that can be a test (they still train on the others)
        seen = seen.subset(~np.isin(seen.scene_idx, junk))
        facts["seen_leaves_out"] = [seen.scenes[i] for i in junk]
    facts["seen_samples"] = len(seen)
    save(key, scene, {}, facts=facts)
    if "excluded" in facts:
        print(f"  excluded as a held-out tile: {facts['excluded']}", flush=True)
        return {}
    rows: dict[str, Any] = {}
    if seen_only:  # re-measure the seen error of the rows there are (networks: their saved runs)
        return seen_again(key, scene, models, train, val, seen, cell_m, save)
    prior_err = {p: _err(physics_prior(unseen, cell_m, **PRIORS[p]), unseen)  # per sample, for vs_prior
                 for p in {fair_prior(name) for name in models if name in NETWORKS}}
    for name in models:
        t0 = time.perf_counter()
        if name in REFERENCES:
            rows[name] = run_reference(name, train, seen, unseen, cell_m)
        elif name in BASELINE_MODELS:
            rows[name] = run_baseline(name, train, val, seen, unseen)
        else:
            rows[name] = run_network(name, dataset, seen, unseen, minutes, prior_err[fair_prior(name)])
        print(f"  {name}: {json.dumps(rows[name])} ({time.perf_counter() - t0:.0f} s)", flush=True)
        save(key, scene, {name: rows[name]})  # each row as it comes: a killed run keeps the ones done
    return rows


# --------------------------------------------------------------------------- same tile seen vs held out


def positions_of(indices: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions in ``indices`` (a split's dataset sample indices) of each of ``wanted``, in ``wanted``'s order.

    Raises ``ValueError`` naming the missing samples when ``wanted`` is not a subset of ``indices``.
    """
    indices, wanted = np.asarray(indices), np.asarray(wanted)
    order = np.argsort(indices, kind="stable")
    at = np.minimum(np.searchsorted(indices[order], wanted), max(len(indices) - 1, 0))
    found = indices[order][at] == wanted if len(indices) else np.zeros(len(wanted), dtype=bool)
    if not np.all(found):
        missing = wanted[~found]
        raise ValueError(f"wanted: {len(missing)} sample(s) not in the split, e.g. {missing[:5].tolist()}")
    return order[at]


def fit_model(name: str, dataset: str, minutes: float) -> tuple[Any, dict[str, Any]]:
    """``name`` fitted on ``dataset``'s train split as the held-out rows fit it (networks: ``minutes`` of training,
    torch 1 thread); references learn nothing and get the train split itself. Returns the model and run facts."""
    from rflocal_core.infer import load_run
    from rflocal_core.models import BASELINES, load_inputs
    from rflocal_core.train import train

    t0 = time.perf_counter()
    if name in REFERENCES:
        return load_inputs(dataset, "train"), {}
    if name in BASELINE_MODELS:
        model = BASELINES[name]().fit(load_inputs(dataset, "train"), load_inputs(dataset, "val"))
        return model, {"fit_s": round(time.perf_counter() - t0, 1)}
    net, options = NETWORKS[name]
    result = train(dataset, net, model_config=options, train_config=network_train_config(name, minutes), seed=0)
    facts = {"train_s": round(time.perf_counter() - t0, 1), "run": result.run_id,
             **{k: getattr(result, k) for k in ("best_epoch", "epochs_run", "stopped") if getattr(result, k, None)
                is not None}}
    return load_run(result.run_id).model, facts


def _errors_of(name: str, model: Any, x: Any, cell_m: float) -> dict[str, Any]:
    """Median / P95 of ``model`` on ``x``; a reference's ``model`` is its train split (it learns nothing)."""
    if name in REFERENCES:
        return run_reference(name, model, x, x, cell_m, only_seen=True)["seen"]
    return _stats(_err(model.predict(x).position_m, x))


def same_tile(name: str, tiles: dict[str, str], base: str, minutes: float, cell_m: float,
              save: Any) -> dict[str, Any]:
    """Held out vs seen on the same samples: ``name`` trained on every tile's train split (``base``) and, per tile,
    on the other tiles only (the held-out dataset), both evaluated on that tile's own test split.

    ``tiles``: tile key -> scene. The held-out model's figure is taken from its prediction of the whole tile,
    restricted to the dataset sample indices of the tile's test split (:func:`positions_of`).
    """
    from rflocal_core.models import load_inputs

    test = load_inputs(base, "test")
    seen_model, seen_facts = fit_model(name, base, minutes)
    print(f"  {name} on every tile: {json.dumps(seen_facts)}", flush=True)
    rows = {}
    for key, scene in tiles.items():
        dataset = held_out_dataset(base, scene)
        whole = load_inputs(dataset, "test_unseen")
        if "excluded" in tile_facts(whole, cell_m):
            continue
        own = test.subset(test.scene_idx == test.scenes.index(scene))
        held = whole.subset(positions_of(whole.indices, own.indices))
        assert np.array_equal(held.truth_m, own.truth_m)
        held_model, held_facts = fit_model(name, dataset, minutes)
        row = {"held_out": _errors_of(name, held_model, held, cell_m),
               "same_tile_seen": _errors_of(name, seen_model, own, cell_m),
               "held_out_whole_tile": _errors_of(name, held_model, whole, cell_m),
               "tile_test_indices": own.indices.tolist(), "held_out_fit": held_facts, "seen_fit": seen_facts}
        row["ratio"] = median_ratio(row["held_out"], row["same_tile_seen"])
        print(f"  {key}: {json.dumps({k: v for k, v in row.items() if k != 'tile_test_indices'})}", flush=True)
        save(key, scene, name, row)
        rows[key] = row
    return rows


def median_ratio(held: dict[str, Any], seen: dict[str, Any]) -> float | None:
    """Held-out over seen median, None without both."""
    if not (held.get("n") and seen.get("n")):
        return None
    return round(held["median_m"] / max(seen["median_m"], 1e-9), 2)


# --------------------------------------------------------------------------- table


def _cell(stats: dict[str, Any] | None) -> str:
    if not stats:
        return "-"
    if "refused" in stats:
        return "refuses"
    if not stats.get("n"):
        return "no samples"
    med = f"{stats['median_m']:.1f}" if stats["median_m"] < 10 else f"{stats['median_m']:.0f}"
    outside = f" ({100 * stats['outside_window']:.1f}% outside)" if "outside_window" in stats else ""
    return f"{med} / {stats['p95_m']:.0f}{outside}"


def _same_tile_cell(row: dict[str, Any] | None) -> str:
    """``held-out vs same-tile seen median (ratio, n)`` of a :func:`same_tile` row, ``-`` without one."""
    if not row or row.get("ratio") is None:
        return "-"
    held, seen = row["held_out"], row["same_tile_seen"]
    return f"{held['median_m']:g} vs {seen['median_m']:g} m ({row['ratio']:.1f}x, n={held['n']})"


def same_tile_table(results: dict[str, Any]) -> str:
    """Markdown: per tile and model with a :func:`same_tile` row, the held-out and same-tile seen median / P95 on the
    tile's test split, their ratio, and the ratio against the other tiles' test split (the ``seen`` column)."""
    lines = ["| tile | model | held out, tile test (m) | same-tile seen, tile test (m) | held-out / same-tile seen "
             "| held out, whole tile (m) | old ratio: held-out / other tiles' seen | epochs (held out; seen) |",
             "|---|---|---|---|---|---|---|---|"]
    for key, tile in results.get("tiles", {}).items():
        for name in ALL_MODELS:
            row = tile.get("same_tile", {}).get(name)
            if not row:
                continue
            old = tile.get("models", {}).get(name, {})
            un, se = old.get("unseen", {}), old.get("seen", {})
            old_ratio = median_ratio(un, se)
            epochs = "-"
            if "epochs_run" in row.get("held_out_fit", {}):
                fits = row["held_out_fit"], row["seen_fit"]
                epochs = "; ".join(f"{f['epochs_run']} (best {f.get('best_epoch')})" for f in fits)
            ratio = "-" if row.get("ratio") is None else f"{row['ratio']:.1f}x"
            lines.append(f"| {key} | {name} | {_cell(row['held_out'])} | {_cell(row['same_tile_seen'])} | {ratio} "
                         f"| {_cell(row.get('held_out_whole_tile'))} | "
                         f"{'-' if old_ratio is None else f'{old_ratio:.1f}x'} | {epochs} |")
    return "\n".join(lines)


def table(results: dict[str, Any]) -> str:
    """Markdown: per held-out tile and model, held-out and seen median / P95 (m), the ratio, and the 1.2x check."""
    lines = [("| held-out tile | model | held-out median / P95 (m) | seen median / P95 (m) | held-out / seen median "
             "| held-out / same-tile seen (tile's test split) | vs textbook (same samples) |"),
             "|---|---|---|---|---|---|---|"]
    for key, tile in results.get("tiles", {}).items():
        if "excluded" in tile.get("held_out", {}):
            lines.append(f"| {key} | (not a test: {tile['held_out']['excluded']}) | | | | | |")
            continue
        for name in ALL_MODELS:
            row = tile.get("models", {}).get(name)
            if row is None:
                continue
            un, se = row.get("unseen", {}), row.get("seen", {})
            ratio = (f"{un['median_m'] / max(se['median_m'], 1e-9):.1f}x" if un.get("n") and se.get("n") else "-")
            vt = row.get("vs_textbook")
            check = "-"
            if vt and vt.get("n"):
                check = (f"{vt['median_m']:.0f} vs {vt['textbook_median_m']:.0f} m ({vt['ratio']:.2f}x, "
                         f"{'ok' if vt['ratio'] <= 1.2 else 'MISSES 1.2x'}, n={vt['n']})")
            same = _same_tile_cell(tile.get("same_tile", {}).get(name))
            lines.append(f"| {key} | {name} | {_cell(un)} | {_cell(se)} | {ratio} | {same} | {check} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundled", default="etoile", choices=BUNDLED, help="the Sionna scene of the fourth tile")
    ap.add_argument("--train-extra", default="", help="training-only tiles (comma-separated): Sionna scenes, of: "
                    + ", ".join(BUNDLED) + " (not --bundled's), or procedural tiles PRESET<seed>-p<kk> (tile kk of "
                    "that seed, presets: " + ", ".join(PROCEDURAL_EXTRA) + "), same generation settings, one dataset "
                    "with the others; the other tiles keep the splits of the dataset without them. Use another --out")
    ap.add_argument("--extra-val", action="store_true", help="the --train-extra tiles keep their val samples in val "
                    "(the kept epoch is chosen on them too); only their test samples go to train. Use another --out")
    ap.add_argument("--extra-val-only", action="store_true", help="with --extra-val: val is only the --train-extra "
                    "tiles' val samples (the epoch is chosen where the prior fails); the other tiles' val samples are "
                    "left out (train as with --extra-val). Use another --out")
    ap.add_argument("--tiles", default=None, help="held-out tiles to run (default all), of: "
                    + ", ".join(TILES) + " and the --bundled one")
    ap.add_argument("--out", default="any_city.json", help="results file under bench/results")
    ap.add_argument("--models", default=None, help="models to run (comma-separated; default all, less "
                    + ", ".join(MAP_CHANNEL_ROWS) + " without --timing-maps), of: " + ", ".join(ALL_MODELS))
    ap.add_argument("--minutes", type=float, default=2.5, help="training time of each network")
    ap.add_argument("--samples", type=int, default=500, help="samples per tile")
    ap.add_argument("--cell", type=float, default=4.0, help="radio-map cell (m)")
    ap.add_argument("--timing-maps", action="store_true",
                    help="the dataset with ToA/AoA maps per site (another dataset, ...-tm-...: ray-traced again); "
                    "needed by the rows " + ", ".join(MAP_CHANNEL_ROWS) + ". Use another --out")
    ap.add_argument("--timing-map-factor", type=int, default=TIMING_MAP_FACTOR.default,
                    help="with --timing-maps: " + flag_help(TIMING_MAP_FACTOR) + " (the dataset option "
                    "timing_map_factor; another than 4, the stored datasets': another dataset, ...-tm2-...). "
                    "Use another --out")
    ap.add_argument("--table", action="store_true", help="only print the table of bench/results/any_city.json")
    ap.add_argument("--same-tile", action="store_true",
                    help="held out vs seen on the same samples: each model trained on every tile's train split and, "
                    "per tile, without that tile, both tested on the tile's test split (with --table: that table)")
    ap.add_argument("--seen-only", action="store_true",
                    help="measure the seen error of the stored rows again (networks from their saved runs)")
    return ap.parse_args()


def main() -> int:
    global RESULTS  # one results file per run, named by --out
    args = _parse()
    RESULTS = RESULTS.with_name(args.out)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"tiles": {}}
    if args.table:
        print(same_tile_table(results) if args.same_tile else table(results))
        return 0
    known = [*TILES, args.bundled]
    tiles = [t.strip() for t in (args.tiles or ",".join(known)).split(",") if t.strip()]
    default = [m for m in ALL_MODELS if args.timing_maps or m not in MAP_CHANNEL_ROWS]
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else default
    extra = tuple(e.strip() for e in args.train_extra.split(",") if e.strip())
    bad = [t for t in tiles if t not in known] + [m for m in models if m not in ALL_MODELS]
    bad += [e for e in extra if (e not in BUNDLED and procedural_extra(e) is None) or e == args.bundled]
    if extra and args.same_tile:
        bad.append("--same-tile with --train-extra")
    if args.extra_val and not extra:
        bad.append("--extra-val without --train-extra")
    if args.extra_val_only and not args.extra_val:
        bad.append("--extra-val-only without --extra-val")
    if not args.timing_maps:
        bad += [f"{m} without --timing-maps" for m in models if m in MAP_CHANNEL_ROWS]
    try:
        check_value("timing_map_factor", args.timing_map_factor, TIMING_MAP_FACTOR)
    except InvalidInputError as err:
        print(f"error: --timing-map-factor: {err}", file=sys.stderr)
        return 2
    if args.timing_map_factor != TIMING_MAP_FACTOR.default and not args.timing_maps:
        bad.append("--timing-map-factor without --timing-maps")
    if bad:
        print(f"error: unknown tile, model or --train-extra scene {bad} (--train-extra: of {', '.join(BUNDLED)}, "
              f"not --bundled's {args.bundled!r}, or PRESET<seed>-p<kk> of presets {', '.join(PROCEDURAL_EXTRA)}; "
              f"{', '.join(MAP_CHANNEL_ROWS)}: with --timing-maps)", file=sys.stderr)
        return 2
    os.environ["RFLOCAL_WORKSPACE"] = str(WORKSPACE)
    WORKSPACE.mkdir(parents=True, exist_ok=True)
    import torch

    torch.set_num_threads(1)
    load0 = os.getloadavg()[0]
    like = None
    if extra:  # the dataset without the extra tiles: its splits for the same tiles' samples
        like = build_data(args.samples, args.cell, args.bundled, timing_maps=args.timing_maps,
                          timing_map_factor=args.timing_map_factor)[1]
    scenes, base = build_data(args.samples, args.cell, args.bundled, extra, timing_maps=args.timing_maps,
                              timing_map_factor=args.timing_map_factor)

    def save(key: str, scene: str, rows: dict[str, Any], *, facts: dict[str, Any] | None = None) -> None:
        results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"tiles": {}}  # a parallel run's rows
        tile = results["tiles"].setdefault(key, {"scene": scene, "models": {}})
        tile["models"].update(rows)
        if facts is not None:
            tile["held_out"] = facts
            if "excluded" in facts:
                tile["models"] = {}
        runs = tile.setdefault("runs", {})
        runs.update({name: _run_facts(args, base, load0) for name in rows})
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1))

    def save_same(key: str, scene: str, name: str, row: dict[str, Any]) -> None:
        results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"tiles": {}}
        tile = results["tiles"].setdefault(key, {"scene": scene, "models": {}})
        tile.setdefault("same_tile", {})[name] = {**row, **_run_facts(args, base, load0)}
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1))

    if args.same_tile:  # every model trained once on all tiles, and once per tile without it
        for name in models:
            same_tile(name, {key: scenes[key] for key in tiles}, base, args.minutes, args.cell, save_same)
        print(same_tile_table(json.loads(RESULTS.read_text())))
        return 0
    for key in tiles:
        run_tile(key, scenes[key], base, models, args.minutes, args.cell, save, seen_only=args.seen_only,
                 train_only=tuple(scenes[e] for e in extra), like=like, extra_val=args.extra_val,
                 extra_val_only=args.extra_val_only)
    results = json.loads(RESULTS.read_text())
    print(table(results))
    return 0


def _run_facts(args: argparse.Namespace, base: str, load0: float) -> dict[str, Any]:
    """When, on what and under which load a row was measured, and the command that measures it again."""
    return {"date_utc": datetime.now(UTC).isoformat(timespec="minutes"), "dataset": base,
            "train_extra": args.train_extra, "extra_val": args.extra_val, "extra_val_only": args.extra_val_only,
            "minutes_per_network": args.minutes,
            "samples_per_tile": args.samples, "cell_m": args.cell, "timing_maps": args.timing_maps,
            "timing_map_factor": args.timing_map_factor if args.timing_maps else None,
            "load_1min": [round(load0, 1), round(os.getloadavg()[0], 1)], "cpus": os.cpu_count(),
            "command": " ".join(["python", *sys.argv])}


if __name__ == "__main__":
    raise SystemExit(main())
