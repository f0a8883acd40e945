"""Many scene tiles of different morphology in one call: training data that looks like the world.

A model that has seen one 512 m procedural city has learned that city. :func:`build_tiles` builds
a set of tiles to generate one dataset over (issue 19): procedural cities whose size, block, street
width, median building height, open squares and site count are drawn per tile (a seed makes the
set reproducible), the real OpenStreetMap extracts of a folder, and scenes shipped with Sionna RT;
some of them are drawn to be held out whole as the ``test_unseen`` split::

    result = build_tiles(TilesConfig(count=6, seed=1, osm=("../shared/data/osm",), bundled=("munich",)))
    result.scenes, result.unseen      # names for generate_dataset(GenerationConfig(scenes=..., unseen_scenes=...))
    result.generate_command           # the same as one `data generate` command line

Tile ``k`` of a seed is the same whatever the count, and a tile already in the workspace under its
name is kept when it is that tile (so a repeated command resumes where an earlier one stopped);
one of the same name built with other options is refused.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rflocal_core.access import LOCAL_USER, User
from rflocal_core.errors import InvalidInputError, OSMFormatError, SceneImportError
from rflocal_core.options import check_options, option, seed_option
from rflocal_core.progress import ProgressFn
from rflocal_core.results import JsonResult
from rflocal_core.scene import procedural
from rflocal_core.scene.build import SceneConfig, build_scene, scenes_dir
from rflocal_core.scene.sites import SiteConfig
from rflocal_core.workspace import validate_name

#: Kinds of tile.
KINDS = ("procedural", "osm", "bundled")


@dataclass(frozen=True)
class TilesConfig:
    """A set of scene tiles (see :func:`build_tiles`).

    Parameters
    ----------
    count : int
        Procedural tiles (0-64).
    seed : int
        Seed of every draw: the tiles' morphology and sites, and which tiles are held out.
    prefix : str
        Tile names are ``<prefix><seed>-<kind>-...``.
    size_m, block_m, street_width_m, mean_height_m, open_square_fraction : (float, float)
        Ranges each procedural tile draws its :class:`~rflocal_core.scene.procedural.ProceduralConfig`
        from: size, block and median height log-uniformly, the others uniformly. A block is at most
        a third of its tile's side, a street less than half its block.
    site_count : (int, int)
        Range of each tile's site count (at most the tile's buildings).
    unseen : int
        Tiles held out whole as ``test_unseen``: real ones (OSM, bundled) first, drawn by the seed.
    osm : tuple of str
        ``.osm`` files, or folders whose ``.osm`` files each become a tile.
    bundled : tuple of str
        Scenes shipped with Sionna RT (:func:`~rflocal_core.scene.bundled_scenes`), each a tile.
    sites : SiteConfig
        Site options of every tile (its ``count`` and ``seed`` are drawn per tile).
    """

    count: int = option(4, lo=0, hi=64, label="Procedural tiles", help="procedural tiles of randomized morphology")
    seed: int = seed_option(0, help="seed of the tiles' morphology, their sites and the held-out tiles")
    prefix: str = option("tile", label="Name prefix", help="tile names start with PREFIX<seed>-")
    size_m: tuple[float, float] = option((256.0, 2000.0), lo=100.0, hi=2000.0, unit="m", label="Tile side (m)",
                                         help="side of a procedural tile, drawn log-uniformly")
    block_m: tuple[float, float] = option((40.0, 160.0), lo=30.0, hi=300.0, unit="m", label="Block (m)",
                                          help="block size, drawn log-uniformly (at most a third of the side)")
    street_width_m: tuple[float, float] = option((6.0, 30.0), lo=4.0, hi=60.0, unit="m", label="Street width (m)",
                                                 help="street width, drawn uniformly (less than half the block)")
    mean_height_m: tuple[float, float] = option((6.0, 45.0), lo=3.0, hi=150.0, unit="m", label="Median height (m)",
                                                help="median building height, drawn log-uniformly")
    open_square_fraction: tuple[float, float] = option((0.0, 0.3), lo=0.0, hi=0.9, label="Open squares",
                                                       flag="open-squares",
                                                       help="fraction of blocks left open, drawn uniformly")
    site_count: tuple[int, int] = option((3, 12), lo=1, hi=64, label="Sites per tile",
                                         help="site count, drawn uniformly (at most the tile's buildings)")
    unseen: int = option(1, lo=0, hi=64, label="Held-out tiles",
                         help="tiles held out whole as test_unseen (real ones first)")
    osm: tuple[str, ...] = ()
    bundled: tuple[str, ...] = ()
    sites: SiteConfig = field(default_factory=SiteConfig)

    def __post_init__(self) -> None:
        check_options(self)
        validate_name(f"{self.prefix}{self.seed}-x", field="prefix")
        for name in ("osm", "bundled"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
                msg = f"{name}: expected a list of non-empty strings, got {value!r}"
                raise InvalidInputError(msg)
            object.__setattr__(self, name, tuple(value))
        if self.sites.placement == "custom":
            msg = "sites.placement: 'custom' sites belong to one scene; expected rooftop, grid or random for tiles"
            raise InvalidInputError(msg)


@dataclass(frozen=True, kw_only=True)
class Tile(JsonResult):
    """One tile of a set: a scene in the workspace."""

    name: str
    #: ``procedural``, ``osm`` or ``bundled``.
    kind: str
    #: The OSM file or bundled scene it comes from; for a procedural tile, its drawn city options.
    source: str | dict[str, Any]
    buildings: int
    sites: int
    #: Width and height of the scene box (m).
    extent_m: tuple[float, float]
    #: Median building height (m).
    median_height_m: float
    #: False when the scene was already in the workspace and kept as it was.
    built: bool
    #: Held out whole as ``test_unseen``.
    unseen: bool


@dataclass(frozen=True, kw_only=True)
class TilesResult(JsonResult):
    """A set of tiles built by :func:`build_tiles`."""

    tiles: tuple[Tile, ...]
    #: Every tile's scene name, for ``GenerationConfig.scenes``.
    scenes: tuple[str, ...]
    #: The held-out tiles, for ``GenerationConfig.unseen_scenes``.
    unseen: tuple[str, ...]
    #: One ``data generate`` command line over the tiles (DATASET: a name to choose).
    generate_command: str
    seconds: float


# --------------------------------------------------------------------------- drawing the tiles


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else float(lo)


def draw_procedural(config: TilesConfig, k: int) -> procedural.ProceduralConfig:
    """The city options of procedural tile ``k``: its own draw from ``config``'s ranges (independent of the count)."""
    rng = np.random.default_rng([config.seed, k])
    size = round(_log_uniform(rng, *config.size_m))
    block_hi = max(config.block_m[0], min(config.block_m[1], size / 3.0))
    block = round(_log_uniform(rng, config.block_m[0], block_hi), 1)
    street = round(min(float(rng.uniform(*config.street_width_m)), 0.45 * block), 1)
    height = round(_log_uniform(rng, *config.mean_height_m), 1)
    squares = round(float(rng.uniform(*config.open_square_fraction)), 3)
    seed = int(rng.integers(0, 2**31 - 1))
    return procedural.ProceduralConfig(size_m=float(size), block_m=block, street_width_m=max(street, 4.0),
                                       open_square_fraction=squares, mean_height_m=height, seed=seed)


def _tile_sites(config: TilesConfig, k: int, buildings: int | None) -> SiteConfig:
    """The site options of tile ``k``: a drawn count (at most ``buildings`` for rooftop sites) and seed."""
    rng = np.random.default_rng([config.seed, k, 1])
    count = int(rng.integers(config.site_count[0], config.site_count[1] + 1))
    if buildings is not None and config.sites.placement == "rooftop":
        count = max(1, min(count, buildings))
    return replace(config.sites, count=count, seed=int(rng.integers(0, 2**31 - 1)))


def _slug(text: str) -> str:
    """A name part from a file stem: lower case, runs of other characters as one ``-``, at most 24 characters."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:24].strip("-") or "x"


def osm_files(paths: tuple[str, ...]) -> list[Path]:
    """The ``.osm`` files named, folders expanded (sorted); refuses a path that is neither."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".osm" and p.is_file())
            if not found:
                msg = f"osm: folder {raw!r} holds no .osm file"
                raise InvalidInputError(msg)
            out += found
        elif path.is_file():
            out.append(path)
        else:
            msg = f"osm: {raw!r} is neither an .osm file nor a folder of them"
            raise InvalidInputError(msg)
    return out


def _plan(config: TilesConfig) -> list[tuple[str, str, Any]]:
    """``(name, kind, what)`` of every tile: its ProceduralConfig, OSM file or bundled scene path."""
    from rflocal_core.scene.importer import bundled_scenes

    stem = f"{config.prefix}{config.seed}"
    plan: list[tuple[str, str, Any]] = [(f"{stem}-p{k:02d}", "procedural", draw_procedural(config, k))
                                        for k in range(config.count)]
    plan += [(f"{stem}-osm-{_slug(p.stem)}", "osm", p) for p in osm_files(config.osm)]
    known = bundled_scenes() if config.bundled else {}
    for name in config.bundled:
        if name not in known:
            msg = f"bundled: Sionna RT ships no scene {name!r}; expected one of {', '.join(known) or 'none (no Sionna)'}"
            raise InvalidInputError(msg)
        plan.append((f"{stem}-sionna-{_slug(name)}", "bundled", known[name]))
    names = [p[0] for p in plan]
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        msg = f"osm: files whose names give the same tile name {twice}; rename one"
        raise InvalidInputError(msg)
    if not plan:
        msg = "count: expected at least one tile (procedural count, --osm or --bundled), got none"
        raise InvalidInputError(msg)
    return plan


def pick_unseen(config: TilesConfig, plan: list[tuple[str, str, Any]]) -> tuple[str, ...]:
    """The tiles held out whole: ``config.unseen`` of them, real tiles (OSM, bundled) first, drawn by the seed.

    At least one tile stays seen (a dataset needs one to train on).
    """
    if config.unseen >= len(plan):
        msg = (f"unseen: {config.unseen} held-out tile(s) of {len(plan)} leave none to train on; expected at most "
               f"{len(plan) - 1}")
        raise InvalidInputError(msg)
    rng = np.random.default_rng([config.seed, 2])
    real = [name for name, kind, _ in plan if kind != "procedural"]
    made = [name for name, kind, _ in plan if kind == "procedural"]
    order = [*rng.permutation(real).tolist(), *rng.permutation(made).tolist()]
    return tuple(sorted(order[:config.unseen]))


# --------------------------------------------------------------------------- building them


def _existing(name: str) -> dict[str, Any] | None:
    """``scene.json`` of a scene already in the workspace under ``name``, else None."""
    from rflocal_core.scene.store import load_scene_meta

    if not (scenes_dir() / name / "scene.json").is_file():
        return None
    return load_scene_meta(name)


def _kept_differences(meta: dict[str, Any], config: TilesConfig, kind: str, what: Any) -> list[str]:
    """What differs between a scene already in the workspace and the tile asked for (empty: the same tile)."""
    source = dict(meta.get("source") or {})
    if kind == "procedural":
        want = asdict(what)
        diffs = [f"{k} {source.get(k)!r} (asked {v!r})" for k, v in want.items() if source.get(k) != v]
    else:
        file = Path(what).name
        diffs = [] if source.get("file") == file else [f"source {source.get('file')!r} (asked {file!r})"]
    have = meta.get("site_config") or {}
    for key, value in asdict(config.sites).items():
        had = have.get(key, () if key == "bands" else None)  # scenes from before bands: one carrier
        if key not in ("count", "seed", "custom") and _same(had) != _same(value):
            diffs.append(f"sites.{key} {have.get(key)!r} (asked {value!r})")
    return diffs


def _same(value: Any) -> Any:
    """A site option as compared: lists (from JSON) and tuples alike."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _build_tile(config: TilesConfig, index: int, name: str, kind: str, what: Any, user: User) -> None:
    """Build (or import) one tile into the workspace."""
    from rflocal_core.scene.importer import SceneImportConfig, import_scene

    if kind == "procedural":
        buildings, _ = procedural.generate(what)  # counted first: rooftop sites need as many roofs
        sites = _tile_sites(config, index, len(buildings))
        build_scene(SceneConfig(name=name, procedural=what, sites=sites, seed=what.seed), user=user)
        return
    sites = _tile_sites(config, index, None)
    while True:
        try:
            if kind == "osm":
                build_scene(SceneConfig(name=name, source="osm_file", path=str(what), sites=sites), user=user)
            else:
                import_scene(SceneImportConfig(name=name, path=str(what), sites=sites), user=user)
            return
        except InvalidInputError as exc:
            # a real scene's roofs are counted only when it is read: fewer rooftop sites where it has few buildings
            if not str(exc).startswith("sites.count:") or sites.count == 1:
                raise
            sites = replace(sites, count=max(1, sites.count // 2))


def _tile(meta: dict[str, Any], kind: str, what: Any, *, built: bool, unseen: bool) -> Tile:
    source = asdict(what) if kind == "procedural" else (Path(what).stem if kind == "bundled" else str(what))
    ext = meta["extent_m"]
    return Tile(name=meta["name"], kind=kind, source=source, buildings=int(meta["buildings"]["count"]),
                sites=len(meta["sites"]), extent_m=(round(float(ext["width"]), 1), round(float(ext["height"]), 1)),
                median_height_m=round(float(meta["buildings"]["height_m"]["median"]), 1), built=built, unseen=unseen)


def generate_command(scenes: tuple[str, ...], unseen: tuple[str, ...], dataset: str = "DATASET") -> str:
    """The ``data generate`` command line over ``scenes`` with ``unseen`` held out."""
    parts = ["python -m rflocal_core data generate --name", dataset, *(f"--scene {s}" for s in scenes),
             *(f"--unseen {u}" for u in unseen)]
    return " ".join(parts)


def build_tiles(config: TilesConfig, *, progress: ProgressFn | None = None, user: User = LOCAL_USER) -> TilesResult:
    """Build every tile of ``config`` into ``workspace/scenes`` (``user`` must be an editor).

    Tiles already in the workspace under their names are kept as they are (``built`` False).

    Returns
    -------
    TilesResult
        ``tiles`` (name, kind, source, buildings, sites, extent, median height, built, unseen),
        ``scenes``, ``unseen``, ``generate_command`` and ``seconds``.

    Raises
    ------
    InvalidInputError
        Bad options, a missing OSM file or bundled scene, or a tile that cannot be built (the
        message names the tile).
    """
    import time

    t0 = time.perf_counter()
    report = progress or (lambda stage, fraction: None)
    plan = _plan(config)
    unseen = pick_unseen(config, plan)
    tiles = []
    for i, (name, kind, what) in enumerate(plan):
        report(f"tile {i + 1}/{len(plan)}: {name}", i / len(plan))
        meta = _existing(name)
        built = meta is None
        diffs = [] if built else _kept_differences(meta, config, kind, what)
        if diffs:
            msg = (f"tile {name!r}: a scene of that name is in the workspace with other options ({'; '.join(diffs[:4])}); "
                   f"delete it (scene delete {name}) or choose another --seed or --prefix")
            raise InvalidInputError(msg)
        if built:
            index = i if kind == "procedural" else 1000 + i - config.count  # a procedural tile's draw is its own
            try:
                _build_tile(config, index, name, kind, what, user)
            except (InvalidInputError, OSMFormatError, SceneImportError) as exc:  # name the tile
                source = kind if kind == "procedural" else f"{kind} {what}"
                msg = f"tile {name!r} ({source}): {exc}"
                raise InvalidInputError(msg) from exc
            meta = _existing(name)
        tiles.append(_tile(meta, kind, what, built=built, unseen=name in unseen))
    report("done", 1.0)
    scenes = tuple(t.name for t in tiles)
    return TilesResult(tiles=tuple(tiles), scenes=scenes, unseen=unseen,
                       generate_command=generate_command(scenes, unseen), seconds=round(time.perf_counter() - t0, 3))
