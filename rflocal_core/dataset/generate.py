"""Generate a dataset: radio maps, positions, exact paths, reports -> Zarr.

Stages per scene (each cached in the partial store, so an interrupted run resumes):
radio maps (``RadioMapSolver``) and rasters; target positions and their motion;
exact paths at every report position (``PathSolver``, in batches); reports.
Every random draw comes from a generator seeded by (seed, scene index, purpose), so
the same configuration always gives the same dataset, resumed or not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import zarr

from rflocal_core import __version__
from rflocal_core.access import LOCAL_USER, User, require
from rflocal_core.cluster import LOCAL, ExecutorConfig, connect
from rflocal_core.dataset import store
from rflocal_core.dataset.config import GenerationConfig
from rflocal_core.dataset.location import (
    StoreLocation,
    exists,
    open_group,
    remove,
    rename,
    store_location,
    worker_location,
)
from rflocal_core.dataset.partial import (
    SITE_MAPS,
    check_receipt,
    check_site_map,
    path_batch_write_task,
    path_rows_receipt,
    put_path_rows,
    put_site_map,
    read_site_maps,
    site_map_store,
    write_site_map,
)
from rflocal_core.dataset.rasters import Grid, load_footprints_m, rasterize_scene
from rflocal_core.dataset.sampling import candidate_cells, sample_positions, trajectories
from rflocal_core.dataset.shadowing import gudmundson_field
from rflocal_core.dataset.synth import Reports, synthesize
from rflocal_core.errors import DatasetExistsError, InvalidInputError
from rflocal_core.geo import LocalFrame
from rflocal_core.phy import PhyReports
from rflocal_core.progress import ProgressFn, Step, StepProgressFn, as_progress, sub_progress
from rflocal_core.scene.sites import band_label, site_carriers
from rflocal_core.scene.store import load_scene_meta

#: Receivers per PathSolver call; also the granularity of resuming.
PATH_BATCH = 100
#: Path batches each child process takes at least (:func:`path_workers`).
PATH_BATCHES_PER_WORKER = 4

#: The exact-path features kept per link.
_PATH_KEYS = ("toa_ns", "aoa_deg", "delay_spread_ns", "los")

_PURPOSE = {"shadowing": 1, "positions": 2, "motion": 3, "power": 4, "reports": 5, "splits": 6, "flight": 7,
            "iq": 8, "load": 9}

#: Per-link channel summaries kept with the paths for the PHY reports (ue mode).
PHY_PATH_KEYS = ("beam_gain", "eig", "arrival_dir")


def _rng(config: GenerationConfig, scene_index: int, purpose: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([config.seed, scene_index, _PURPOSE[purpose]]))


def generate_dataset(config: GenerationConfig, *, progress: ProgressFn | None = None, restart: bool = False,
                     owner: str | None = None, user: User = LOCAL_USER,
                     executor: ExecutorConfig | None = None, out: str | None = None) -> dict[str, Any]:
    """Generate ``config.name`` into ``workspace/datasets`` (or ``out``); resume an interrupted run.

    Parameters
    ----------
    config : GenerationConfig
    progress : callable, optional
        ``progress(stage, fraction)``, or ``progress(stage, fraction, *, step)`` to get the sites
        and path batches done per stage (:class:`~rflocal_core.progress.Step`, for the time
        left); it may raise to cancel (the partial work is kept).
    restart : bool
        Discard a partial run of this name instead of resuming it.
    owner : str, optional
        Who started it (default the user's name; ``"local"`` on the command line): the dataset's
        ``owner`` attribute, shown in dataset lists (a resumed generation keeps the first owner).
    user : User
        Who asks (default: the command line's :data:`~rflocal_core.access.LOCAL_USER`); a viewer is refused.
    executor : ExecutorConfig, optional
        Where radio maps and path batches run (:mod:`rflocal_core.cluster`); default child processes
        here. No part of the data: the same dataset on any executor, and a run interrupted on one
        resumes on another.
    out : str, optional
        A folder or an fsspec URL (``s3://bucket/datasets``; :mod:`~rflocal_core.dataset.location`)
        to write ``<out>/<name>`` to instead of the workspace: a store every worker of a cluster sees.

    Returns
    -------
    dict
        ``name``, ``path``, ``samples``, ``splits`` (counts), ``seconds`` per stage,
        ``resumed`` (stages reused from an interrupted run).

    Raises
    ------
    InvalidInputError
        The job asks for more samples than :func:`~rflocal_core.settings.max_dataset_samples`
        (:meth:`GenerationConfig.check_size`), among other bad inputs.
    """
    require(user, "generate")
    owner = user.name if owner is None else owner
    config.check_size()  # the cap on what one job may request (issue 20), before any work
    report = as_progress(progress)
    executor = LOCAL if executor is None else executor
    where = store_location(config.name, out)
    if exists(where.final):
        msg = f"name: a dataset named {config.name!r} already exists; choose another name or delete it first"
        raise DatasetExistsError(msg)
    if executor.uses_ray:
        connect(executor)  # an unreachable cluster fails here, before any work
    metas = [load_scene_meta(s) for s in config.scenes]  # fails early on unknown scenes
    root = _open_partial(config, where, restart=restart, owner=owner)

    seconds: dict[str, float] = {}
    resumed: list[str] = []
    per_scene = []
    n_scenes = len(config.scenes)
    for i, (scene, meta) in enumerate(zip(config.scenes, metas)):
        # scenes are parts of the job: the first ones time the ones left
        sub = sub_progress(report, prefix=f"{scene}: ", span=(i / n_scenes, (i + 0.95) / n_scenes), part=i,
                           parts=n_scenes)
        per_scene.append(_generate_scene(root, i, scene, meta, config, sub, seconds, resumed, executor))

    counts = _finish(root, where, per_scene, metas, config, report, seconds)
    return {"name": config.name, "path": where.final, "samples": counts["samples"], "splits": counts["splits"],
            "seconds": {k: round(v, 3) for k, v in seconds.items()}, "resumed": resumed,
            **{k: counts[k] for k in ("iq_captures", "iq_ms_per_capture", "iq_ms_per_sample") if k in counts}}


def _finish(root: zarr.Group, where: StoreLocation, per_scene: list[dict[str, Any]], metas: list[dict[str, Any]],
            config: GenerationConfig, report: StepProgressFn, seconds: dict[str, float]) -> dict[str, Any]:
    """Write the samples and the attributes, then rename the partial store to its final name; the counts."""
    report("writing samples", 0.97)
    t0 = time.perf_counter()
    counts = _write_samples(root, per_scene, config)
    seconds["write"] = time.perf_counter() - t0
    if counts.get("iq_captures"):  # the IQ cost, next to the other generation figures
        counts["iq_ms_per_capture"] = round(1000 * seconds["iq"] / counts["iq_captures"], 3)
        counts["iq_ms_per_sample"] = round(1000 * seconds["iq"] / max(counts["samples"], 1), 3)
    root.attrs.update({
        "complete": True,
        "mode": per_scene[0]["mode"] if len({p["mode"] for p in per_scene}) == 1 else "mixed",
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "counts": counts,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "scene_hashes": {m["name"]: m.get("content_sha256") for m in metas},
        "versions": _versions(),
    })
    rename(where.partial, where.final)
    report("done", 1.0)
    return counts


def _open_partial(config: GenerationConfig, where: StoreLocation, *, restart: bool, owner: str) -> zarr.Group:
    """The store of an interrupted generation of the same configuration (resumed), or a new one."""
    partial = where.partial
    if exists(partial) and restart:
        if where.in_workspace:
            store.delete_dataset(config.name, partial=True, actor=owner)  # audited
        else:
            remove(partial)
    if exists(partial):
        root = open_group(partial, mode="a")
        if root.attrs.get("digest") != config.digest():
            msg = (
                f"name: an interrupted generation of {config.name!r} with another configuration exists; "
                "restart it (--restart) or choose another name"
            )
            raise InvalidInputError(msg)
        return root
    root = open_group(partial, mode="w")
    root.attrs.update({"format": store.FORMAT, "complete": False, "digest": config.digest(),
                       "config": config.to_dict(), "owner": owner})
    return root


def _versions() -> dict[str, str]:
    import mitsuba
    import sionna.rt

    return {"rflocal": __version__, "sionna_rt": sionna.rt.__version__, "mitsuba": mitsuba.__version__,
            "zarr": zarr.__version__, "numpy": np.__version__}


def _add_seconds(seconds: dict[str, float], key: str, value: float) -> None:
    seconds[key] = seconds.get(key, 0.0) + value


@dataclass(frozen=True)
class _SceneMaps:
    """A scene's radio maps and rasters, computed or read back from the partial store."""

    grid: Grid
    path_gain_db: np.ndarray  # [num_sites, ny, nx] float32
    footprint: np.ndarray  # [ny, nx]
    shadowing_db: np.ndarray  # [num_sites, ny, nx]


@dataclass(frozen=True)
class _Motion:
    """Where each sample is at each step, which sites fill its slots and with what power."""

    pos: np.ndarray  # [n, T, 3]
    t_s: np.ndarray  # [n, T]
    step_mask: np.ndarray  # [n, T]
    slots: np.ndarray  # [n, S]: site (or drone waypoint) index per slot
    link_power: np.ndarray  # [n, T, S] transmit power of each link, dBm
    emitter_power: np.ndarray  # [n]: the emitter's power (emitter mode), NaN in ue mode


def _generate_scene(
    root: zarr.Group, index: int, scene: str, meta: dict[str, Any], config: GenerationConfig,
    report: StepProgressFn, seconds: dict[str, float], resumed: list[str], executor: ExecutorConfig,
) -> dict[str, Any]:
    mode = config.mode or meta["mode"]
    if config.iq and mode != "emitter":
        msg = f"iq: IQ captures need emitter mode; scene {scene!r} is in {mode!r} mode (set mode 'emitter')"
        raise InvalidInputError(msg)
    drone = config.survey == "drone"
    sites = drone_waypoints(meta, config) if drone else meta["sites"]
    site_pos = np.array([[s["x_m"], s["y_m"], s["z_m"]] for s in sites], dtype=np.float64)
    group = root.require_group(f"scenes/{scene}")
    footprints = load_footprints_m(scene, meta)  # read and projected once: rasters and sampling use them

    # Radio maps and rasters.
    if group.attrs.get("maps_done"):
        resumed.append(f"{scene}: radio maps")
        maps = _read_maps(group)
    else:
        maps = _compute_maps(group, index, scene, meta, sites, site_pos, footprints, mode=mode, config=config,
                             report=report, seconds=seconds, executor=executor, resumed=resumed)

    # Positions and motion (cheap and deterministic: recomputed on resume).
    report("sampling positions", 0.2)
    t0 = time.perf_counter()
    motion = _sample_motion(group, index, scene, sites, site_pos, maps, footprints[0], mode=mode, config=config)
    _add_seconds(seconds, "sampling", time.perf_counter() - t0)

    # Exact paths at every report position.
    features = None
    if config.timing:
        if drone:
            features = _drone_paths(group, scene, sites, motion.pos, motion.slots, config, report, seconds, resumed,
                                    executor)
        else:
            phy_spec = _phy_spec(sites, config) if _phy_on(mode, config) else None
            features = _paths(group, scene, motion.pos, motion.step_mask, config, report, seconds, resumed,
                              executor, phy=phy_spec)

    # Reports (and IQ captures): one unit of work, a Ray task with the Ray executor.
    job = SynthesisJob(maps=maps, motion=motion, features=features, config=config, index=index, sites=sites,
                       top_k=0 if drone else config.top_k)
    reps, phy_reps, captures = _synthesize(job, scene, report, seconds, executor)
    pos = motion.pos
    frame = LocalFrame.from_dict(meta["frame"])
    lat, lon = frame.to_latlon(pos[..., 0], pos[..., 1])
    carriers = site_carriers(meta["sites"])
    return {"scene": scene, "index": index, "mode": mode, "pos": pos, "latlon": np.stack([lat, lon], -1),
            "t_s": motion.t_s, "step_mask": motion.step_mask, "site_pos": site_pos, "node_pos": site_pos[motion.slots],
            "tx_power": motion.emitter_power, "reports": reps, "phy": phy_reps, "iq": captures,
            # the sample's band when its scene has one; a multi-band scene's bands are per node
            "carrier_hz": carriers[0] if len(carriers) == 1 else None,
            "node_carrier": site_freqs(sites)[motion.slots]}


@dataclass(frozen=True)
class SynthesisJob:
    """What one scene's report synthesis reads: a unit of work that runs here or as a Ray task.

    Its random draws come from the generators of (seed, scene index, purpose), so where it runs
    changes nothing in the dataset.
    """

    maps: _SceneMaps
    motion: _Motion
    features: dict[str, np.ndarray] | None
    config: GenerationConfig
    index: int
    sites: list[dict[str, Any]]
    top_k: int


def synthesize_scene(job: SynthesisJob) -> tuple[Reports, PhyReports | None, dict[str, np.ndarray] | None,
                                                 dict[str, float]]:
    """One scene's reports, PHY reports and IQ captures, and the seconds each took (a Ray task's body)."""
    t0 = time.perf_counter()
    reps = _synthesize_reports(job.maps, job.motion, job.features, job.config, _rng(job.config, job.index, "reports"),
                               top_k=job.top_k)
    phy_reps = None
    if job.features is not None and "beam_gain" in job.features:
        phy_reps = _phy_reports(job.maps, job.motion, job.features, reps, job.sites, job.config,
                                _rng(job.config, job.index, "load"))
    seconds = {"reports": time.perf_counter() - t0}
    captures = None
    if job.config.iq and job.features is not None:
        t0 = time.perf_counter()
        captures = _iq_captures(job.maps, job.motion, job.features, reps, site_freqs(job.sites)[job.motion.slots],
                                job.config, job.index)
        seconds["iq"] = time.perf_counter() - t0
    return reps, phy_reps, captures, seconds


def _synthesize(job: SynthesisJob, scene: str, report: StepProgressFn, seconds: dict[str, float],
                executor: ExecutorConfig) -> tuple[Reports, PhyReports | None, dict[str, np.ndarray] | None]:
    """:func:`synthesize_scene` in this process, or as one Ray task with the Ray executor."""
    with_iq = job.config.iq and job.features is not None
    what = "synthesizing reports and IQ captures" if with_iq else "synthesizing reports"
    if executor.uses_ray:
        from rflocal_core.cluster import run_tasks

        report(f"{what} (on Ray)", 0.95)
        reps, phy_reps, captures, took = run_tasks(synthesize_scene, [(job,)], config=executor,
                                                   names=[f"report synthesis of scene {scene!r}"])[0]
    else:
        report(what, 0.95)
        reps, phy_reps, captures, took = synthesize_scene(job)
    for key, value in took.items():
        _add_seconds(seconds, key, value)
    return reps, phy_reps, captures


def site_freqs(sites: list[dict[str, Any]]) -> np.ndarray:
    """The carrier of every site (cell) [num_sites], Hz."""
    return np.array([float(s["freq_hz"]) for s in sites], dtype=np.float64)


def _read_maps(group: zarr.Group) -> _SceneMaps:
    """The radio maps and rasters of an interrupted run."""
    return _SceneMaps(Grid.from_dict(group.attrs["grid"]), np.asarray(group["path_gain_db"][...]),
                      np.asarray(group["footprint"][...]), np.asarray(group["shadowing_db"][...]))


def _compute_maps(
    group: zarr.Group, index: int, scene: str, meta: dict[str, Any], sites: list[dict[str, Any]],
    site_pos: np.ndarray, footprints: tuple[list[Any], list[float], list[str]], *, mode: str,
    config: GenerationConfig, report: StepProgressFn, seconds: dict[str, float], executor: ExecutorConfig,
    resumed: list[str],
) -> _SceneMaps:
    """Radio maps (Sionna RT), rasters and shadowing of a scene, written to ``group``."""
    drone = config.survey == "drone"
    t0 = time.perf_counter()
    rm = _radio_maps(group, scene, sites, config, report, executor, resumed)
    _add_seconds(seconds, "radio_maps", time.perf_counter() - t0)
    grid = Grid(float(rm.x_m[0]), float(rm.y_m[0]), config.cell_size_m, len(rm.x_m), len(rm.y_m))
    pg_map = rm.path_gain_db.astype(np.float32)
    if config.timing_maps:
        _write_timing_maps(group, scene, sites, grid, config, report, seconds)
    report("rasters", 0.15)
    t0 = time.perf_counter()
    rasters = rasterize_scene(scene, meta, grid, footprints)
    shadow = gudmundson_field(grid.ny, grid.nx, grid.cell_m, sigma_db=config.shadowing_sigma_db,
                              corr_m=config.shadowing_corr_m, rng=_rng(config, index, "shadowing"), count=len(sites))
    store.write_array(group, "path_gain_db", pg_map)
    if mode == "ue":
        rss_map, sinr = _ue_maps(pg_map, sites, config)
        store.write_array(group, "rss_dbm", rss_map)
        store.write_array(group, "sinr_db", sinr)
        group.attrs["sinr_load"] = map_load(config, len(sites)).tolist()
    store.write_array(group, "shadowing_db", shadow)
    for key, value in rasters.items():
        store.write_array(group, key, value)
    store.write_array(group, "site_pos_m", site_pos.astype(np.float32))
    group.attrs.update({"grid": grid.to_dict(), "site_ids": [s["id"] for s in sites], "mode": mode,
                        "site_freq_hz": site_freqs(sites).tolist(),
                        "survey": config.survey,
                        "waypoint_grid": _waypoint_grid_shape(sites) if drone else None,
                        "frame": meta["frame"], "extent_m": meta["extent_m"], "maps_done": True})
    if SITE_MAPS in group:
        del group[SITE_MAPS]  # the maps of single sites, now in path_gain_db
    _add_seconds(seconds, "rasters", time.perf_counter() - t0)
    return _SceneMaps(grid, pg_map, rasters["footprint"], shadow)


def _write_timing_maps(group: zarr.Group, scene: str, sites: list[dict[str, Any]], grid: Grid,
                       config: GenerationConfig, report: StepProgressFn, seconds: dict[str, float]) -> None:
    """ToA and AoA maps per site (:mod:`rflocal_core.dataset.timing_maps`) and their mask, into ``group``."""
    from rflocal_core.dataset.timing_maps import timing_maps

    report("ToA/AoA maps (Sionna PathSolver)", 0.15)
    t0 = time.perf_counter()
    maps = timing_maps(scene, sites, grid, factor=config.timing_map_factor, plane_height_m=config.plane_height_m,
                       max_depth=config.paths_max_depth, samples_per_src=config.paths_samples_per_src,
                       seed=config.seed, diffraction=config.paths_diffraction, batch_size=PATH_BATCH)
    store.write_array(group, "toa_ns", maps.toa_ns)
    store.write_array(group, "aoa_deg", maps.aoa_deg)
    store.write_array(group, "mask_timing", maps.mask)
    group.attrs["timing_grid"] = maps.coarse.to_dict()
    _add_seconds(seconds, "timing_maps", time.perf_counter() - t0)


def _radio_maps(group: zarr.Group, scene: str, sites: list[dict[str, Any]], config: GenerationConfig,
                report: StepProgressFn, executor: ExecutorConfig, resumed: list[str]) -> Any:
    """One path-gain map per site (or drone waypoint) from Sionna's ``RadioMapSolver``.

    On Ray (one task per site) each finished site's map is kept in the partial store (written by the
    worker itself where it sees the store), and a resumed run traces only the others.
    """
    from rflocal_core.raytrace import compute_radio_map, map_shape

    drone = config.survey == "drone"
    keep: dict[str, Any] = {}
    if executor.uses_ray:
        kept = site_map_store(group, len(sites), map_shape(scene, config.cell_size_m))
        known = _maps_so_far(kept)
        if known.gains:
            resumed.append(f"{scene}: {len(known.gains)}/{len(sites)} radio maps")
        keep = {"known": known, "on_map": lambda k, gain, centres: _keep_site_map(kept, k, gain, centres),
                "sink": _map_sink(kept)}
    report("radio maps (Sionna RT)", 0.0, step=Step("radio maps", len(keep["known"].gains) if keep else 0, len(sites)))
    return compute_radio_map(scene, cell_size_m=config.cell_size_m, plane_height_m=config.plane_height_m,
                             samples_per_tx=config.drone_map_samples_per_tx if drone else config.map_samples_per_tx,
                             max_depth=config.map_max_depth, seed=config.seed, diffraction=config.map_diffraction,
                             sites=sites if drone else None, executor=executor, **keep,
                             on_site=lambda done, total: report(f"radio maps (Sionna RT) {done}/{total} sites",
                                                                0.15 * done / total,
                                                                step=Step("radio maps", done, total)))


def _maps_so_far(kept: zarr.Group) -> Any:
    """The single-site maps an interrupted Ray run kept (:class:`~rflocal_core.raytrace.MapsSoFar`)."""
    from rflocal_core.raytrace import MapsSoFar

    done = np.asarray(kept["done"][...])
    centres = np.asarray(kept["centres"][...]) if len(done) and done[0] else None  # stored with site 0's map
    return MapsSoFar({int(k): np.asarray(kept["gain"][int(k)]) for k in np.flatnonzero(done)}, centres)


def _map_sink(kept: zarr.Group) -> Any:
    """Where Ray tasks write their maps themselves (:class:`~rflocal_core.raytrace.MapSink`); None when
    the workers cannot see the store (``memory://``: the driver writes what they return)."""
    from functools import partial

    from rflocal_core.raytrace import MapSink

    url = worker_location(kept)
    return None if url is None else MapSink(partial(write_site_map, url), partial(read_site_maps, url))


def _keep_site_map(kept: zarr.Group, k: int, gain: np.ndarray | None, centres: Any) -> None:
    """Site ``k``'s map into the partial store (``gain`` None: its task wrote it, ``centres`` is then the
    task's receipt, checked against what this process reads); its ``done`` flag last."""
    if gain is None:
        check_site_map(kept, k, centres)
    else:
        put_site_map(kept, k, gain, centres)
    kept["done"][k] = True


def _ue_maps(
    pg_map: np.ndarray, sites: list[dict[str, Any]], config: GenerationConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """RSS maps (dBm) and SINR maps (dB, float32) of the base stations, for ue mode.

    The SINR map is what a device in each map cell would report for each cell
    (:func:`rflocal_core.phy.sinr_map_db`): every cell at the middle of ``phy_load``
    (:func:`map_load`), noise per resource element of the PHY numerology.
    """
    from rflocal_core.phy import Numerology, sinr_map_db

    tx = np.array([s.get("tx_power_dbm") or 0.0 for s in sites], dtype=np.float32)
    rss_map = pg_map + tx[:, None, None]
    sinr = sinr_map_db(pg_map, tx, map_load(config, len(sites)),
                       numerology=Numerology(scs_khz=config.phy_scs_khz, n_rb=config.phy_n_rb),
                       noise_figure_db=config.noise_figure_db, freq_hz=site_freqs(sites))
    return rss_map, sinr


def map_load(config: GenerationConfig, num_sites: int) -> np.ndarray:
    """Load of every cell [num_sites] behind the SINR maps: the middle of ``phy_load`` (reports draw theirs)."""
    return np.full(num_sites, float(np.mean(config.phy_load)))


def _link_power(
    sites: list[dict[str, Any]], pg_map: np.ndarray, index: int, *, mode: str, config: GenerationConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Transmit power per link [n, T, num_sites], sites covering each cell [ny, nx], emitter power [n]."""
    n, num_sites = config.samples_per_scene, len(sites)
    if mode == "ue":
        tx_power = np.array([s.get("tx_power_dbm") or 0.0 for s in sites])
        link_power = np.broadcast_to(tx_power[None, None, :], (n, config.max_steps, num_sites))
        covered = (pg_map + tx_power[:, None, None] >= config.sensitivity_dbm).sum(0)
        emitter_power = np.full(n, np.nan)
    else:
        emitter_power = _rng(config, index, "power").uniform(*config.emitter_power_dbm, size=n)
        link_power = np.broadcast_to(emitter_power[:, None, None], (n, config.max_steps, num_sites))
        covered = (pg_map + float(np.mean(config.emitter_power_dbm)) >= config.sensitivity_dbm).sum(0)
    return link_power, covered, emitter_power


def _sample_motion(
    group: zarr.Group, index: int, scene: str, sites: list[dict[str, Any]], site_pos: np.ndarray, maps: _SceneMaps,
    buildings: list[Any], *, mode: str, config: GenerationConfig,
) -> _Motion:
    """Start positions in covered outdoor cells, their trajectories, and the sites each sample hears."""
    n = config.samples_per_scene
    grid, footprint = maps.grid, maps.footprint
    link_power, covered, emitter_power = _link_power(sites, maps.path_gain_db, index, mode=mode, config=config)
    cells, weights = candidate_cells(covered, footprint, grid, site_pos[:, :2], config)
    start = sample_positions(n, cells, weights, grid, buildings, _rng(config, index, "positions"), scene=scene)
    xy, t_s, step_mask = trajectories(start, config, grid, footprint, buildings, _rng(config, index, "motion"))
    steps = xy.shape[1]
    pos = np.concatenate([xy, np.full((n, steps, 1), config.plane_height_m)], axis=-1)
    # Which site (or drone waypoint) fills each node slot of each sample: [n, S].
    if config.survey == "drone":
        slots = flight_slots(n, sites, config, _rng(config, index, "flight"))
        link_power = link_power[..., : slots.shape[1]]
    else:
        slots = np.broadcast_to(np.arange(len(sites))[None], (n, len(sites)))
    return _Motion(pos, t_s, step_mask, slots, link_power, emitter_power)


def _synthesize_reports(
    maps: _SceneMaps, motion: _Motion, features: dict[str, np.ndarray] | None, config: GenerationConfig,
    rng: np.random.Generator, *, top_k: int,
) -> Reports:
    """Reports of every sample's slots at every step, from the maps at its positions and the exact paths."""
    pos, slots = motion.pos, motion.slots
    n, steps = pos.shape[:2]
    iy, ix = maps.grid.cell_of(pos[..., 0], pos[..., 1])
    pg_all = np.moveaxis(maps.path_gain_db[:, iy, ix], 0, -1)  # [n, T, num_sites]
    take = np.broadcast_to(slots[:, None, :], (n, steps, slots.shape[1]))
    pg = np.take_along_axis(pg_all, take, axis=-1)  # [n, T, S]
    shadow_at = _link_shadow(maps, motion)
    return synthesize(
        pg_db=pg, shadow_db=shadow_at, tx_power_dbm=motion.link_power,
        toa_true_ns=None if features is None else features["toa_ns"],
        aoa_true_deg=None if features is None else features["aoa_deg"],
        los=None if features is None else features["los"],
        delay_spread_ns=None if features is None else features["delay_spread_ns"],
        step_mask=motion.step_mask, config=config, rng=rng, top_k=top_k,
    )


def _phy_on(mode: str, config: GenerationConfig) -> bool:
    """PHY/MAC reports are made in ue mode with timing (the paths' channel), unless switched off."""
    return config.phy and config.timing and mode == "ue" and config.survey == "fixed"


def _phy_spec(sites: list[dict[str, Any]], config: GenerationConfig) -> Any:
    """What the path tracer keeps of each link for the PHY reports: sectors, arrays, band."""
    from rflocal_core.phy import ArraySetup, Numerology, site_sectors
    from rflocal_core.raytrace import PhySpec

    arrays = ArraySetup(beams=config.phy_beams, gnb_antennas=config.phy_gnb_antennas,
                        ue_antennas=config.phy_ue_antennas)
    band = Numerology(scs_khz=config.phy_scs_khz, n_rb=config.phy_n_rb).bandwidth_hz
    return PhySpec(sectors=[site_sectors(s) for s in sites], arrays=arrays, bandwidth_hz=band)


def _velocity(pos: np.ndarray, t_s: np.ndarray, step_mask: np.ndarray) -> np.ndarray:
    """Velocity [n, T, 3] at each report: towards the next report (the last one: from the one before)."""
    n, steps, _ = pos.shape
    vel = np.zeros((n, steps, 3))
    if steps < 2:
        return vel
    dt = np.diff(t_s, axis=1)
    both = step_mask[:, 1:] & step_mask[:, :-1] & (dt > 0)
    forward = np.where(both[..., None], np.diff(pos, axis=1) / np.where(dt > 0, dt, 1.0)[..., None], 0.0)
    vel[:, :-1] = forward
    last = step_mask & ~np.concatenate([both, np.zeros((n, 1), bool)], 1)  # no report after this one
    vel[:, 1:] = np.where(last[:, 1:, None], forward, vel[:, 1:])
    return vel


def _phy_reports(maps: _SceneMaps, motion: _Motion, features: dict[str, np.ndarray], reps: Reports,
                 sites: list[dict[str, Any]], config: GenerationConfig, rng: np.random.Generator) -> PhyReports:
    """RSRQ, SINR, CQI, rank, beams, serving cell, Doppler of every report (ue mode), from every cell heard."""
    from rflocal_core.phy import ArraySetup, LinkChannel, Numerology, drop_fields, phy_reports

    pos = motion.pos
    iy, ix = maps.grid.cell_of(pos[..., 0], pos[..., 1])
    pg = np.moveaxis(maps.path_gain_db[:, iy, ix], 0, -1).astype(np.float64)  # [n, T, S]
    shadow = np.moveaxis(maps.grid.bilinear(maps.shadowing_db, pos[..., 0], pos[..., 1]), 0, -1)
    rx = np.where(np.isfinite(pg), motion.link_power + pg + shadow, np.nan)
    load = rng.uniform(*config.phy_load, size=(len(pos), len(sites)))
    present = np.isfinite(reps.rss_dbm) | np.isfinite(reps.toa_ns) | np.isfinite(reps.aoa_deg)
    out = phy_reports(
        rx_power_dbm=rx, load=load, channel=LinkChannel(*(features[k] for k in PHY_PATH_KEYS)),
        velocity_m_s=_velocity(pos, motion.t_s, motion.step_mask), present=present,
        numerology=Numerology(scs_khz=config.phy_scs_khz, n_rb=config.phy_n_rb),
        noise_figure_db=config.noise_figure_db,
        setup=ArraySetup(beams=config.phy_beams, gnb_antennas=config.phy_gnb_antennas,
                         ue_antennas=config.phy_ue_antennas),
        freq_hz=site_freqs(sites), neighbours=config.phy_neighbours, top_beams=config.phy_top_beams,
        rrc_period=config.phy_rrc_period)
    return drop_fields(out, config.dropout, rng)  # each feature of a report missing at random, as the others


def _link_shadow(maps: _SceneMaps, motion: _Motion) -> np.ndarray:
    """The shadow fading [n, T, S] of each sample's slots at its positions."""
    pos, slots = motion.pos, motion.slots
    shadow_all = np.moveaxis(maps.grid.bilinear(maps.shadowing_db, pos[..., 0], pos[..., 1]), 0, -1)
    take = np.broadcast_to(slots[:, None, :], (*pos.shape[:2], slots.shape[1]))
    return np.take_along_axis(shadow_all, take, axis=-1)


def _waypoint_grid_shape(waypoints: list[dict[str, Any]]) -> list[int]:
    return [max(w["grid"][0] for w in waypoints) + 1, max(w["grid"][1] for w in waypoints) + 1]


def drone_waypoints(meta: dict[str, Any], config: GenerationConfig) -> list[dict[str, Any]]:
    """Waypoints on a grid over the scene at the drone's altitude, as site records: one per grid point and
    carrier of the scene's cells (the drone measures every band at each point; in a multi-band scene each
    is a node on its own carrier, id ``wp-<row>-<col>/<band>``, so its maps and paths are traced there)."""
    ext = meta["extent_m"]
    spacing = config.drone_spacing_m
    xs = np.arange(ext["x_min"] + spacing / 2, ext["x_max"], spacing)
    ys = np.arange(ext["y_min"] + spacing / 2, ext["y_max"], spacing)
    carriers = site_carriers(meta["sites"]) or [3.5e9]
    waypoints = []
    for j, y in enumerate(ys):
        for i, x in enumerate(xs):
            for freq in carriers:
                band = f"/{band_label(freq)}" if len(carriers) > 1 else ""
                waypoints.append({"id": f"wp-{j}-{i}{band}", "x_m": float(x), "y_m": float(y),
                                  "z_m": config.drone_altitude_m, "freq_hz": freq, "pattern": "iso",
                                  "tx_power_dbm": None, "grid": [j, i]})
    return waypoints


def flight_slots(n: int, waypoints: list[dict[str, Any]], config: GenerationConfig,
                 rng: np.random.Generator) -> np.ndarray:
    """Waypoint indices [n, drone_points x bands] of each sample's flight line (:func:`_flight_lines`), every
    band measured at each point of the line, in the order of :func:`drone_waypoints`."""
    grid = _waypoint_grid_shape(waypoints)
    bands = len(waypoints) // (grid[0] * grid[1])
    line = _flight_lines(n, grid, config, rng)
    return (line[..., None] * bands + np.arange(bands)).reshape(n, -1)


def _flight_lines(n: int, grid_shape: list[int], config: GenerationConfig, rng: np.random.Generator) -> np.ndarray:
    """Waypoint indices [n, drone_points] of a lawnmower flight line per sample.

    A line starts at a random waypoint, flies east/west/north/south, and at the edge of
    the grid moves one row (or column) over and turns back.
    """
    rows, cols = grid_shape
    out = np.empty((n, config.drone_points), dtype=np.int64)
    for k in range(n):
        j, i = int(rng.integers(rows)), int(rng.integers(cols))
        along_x = bool(rng.integers(2))
        step = 1 if rng.integers(2) else -1
        shift = 1 if rng.integers(2) else -1
        for p in range(config.drone_points):
            out[k, p] = j * cols + i
            if along_x:
                if 0 <= i + step < cols:
                    i += step
                else:
                    step = -step
                    if not 0 <= j + shift < rows:
                        shift = -shift
                    j = min(max(j + shift, 0), rows - 1)
            else:
                if 0 <= j + step < rows:
                    j += step
                else:
                    step = -step
                    if not 0 <= i + shift < cols:
                        shift = -shift
                    i = min(max(i + shift, 0), cols - 1)
    return out


def _drone_paths(
    group: zarr.Group, scene: str, waypoints: list[dict[str, Any]], pos: np.ndarray, slots: np.ndarray,
    config: GenerationConfig, report: StepProgressFn, seconds: dict[str, float], resumed: list[str],
    executor: ExecutorConfig = LOCAL,
) -> dict[str, np.ndarray]:
    """Exact paths between each sample's emitter and its own drone waypoints only.

    One waypoint at a time is the transmitter (reciprocity), with the emitters that
    the drone visits there as receivers; resumable per waypoint (here, or a Ray task per waypoint).
    """
    n, steps, _ = pos.shape
    num_wp = len(waypoints)
    paths = group.require_group("paths")
    shape = (n, slots.shape[1])
    if "done" not in paths or paths["done"].shape != (num_wp,):
        for key in _PATH_KEYS:
            dtype = np.int8 if key == "los" else np.float32
            paths.create_array(key, shape=shape, chunks=shape, dtype=dtype,
                               fill_value=-1 if key == "los" else np.nan, overwrite=True)
        paths.create_array("done", shape=(num_wp,), chunks=(num_wp,), dtype=bool, fill_value=False, overwrite=True)
    done = np.asarray(paths["done"][...])
    if done.any():
        resumed.append(f"{scene}: {int(done.sum())}/{num_wp} drone waypoints")
    t0 = time.perf_counter()
    # the emitters each waypoint serves: (sample, slot) pairs; waypoints serving none are done at once
    links = {w: np.nonzero(slots == w) for w in range(num_wp) if not done[w]}
    trace = _drone_waypoints_on_ray if executor.uses_ray else _drone_waypoints_here
    trace(paths, done, scene, waypoints, pos, links, config, report, executor)
    _add_seconds(seconds, "paths", time.perf_counter() - t0)
    return {key: np.asarray(paths[key][...])[:, None, :].repeat(steps, axis=1) for key in _PATH_KEYS}


def _store_waypoint(paths: zarr.Group, done: np.ndarray, w: int, link: tuple[np.ndarray, np.ndarray],
                    features: Any) -> None:
    """Waypoint ``w``'s links into the store (only those, not the whole array); its ``done`` flag last."""
    sample_idx, slot_idx = link
    if features is not None:
        for key in _PATH_KEYS:
            paths[key].vindex[sample_idx, slot_idx] = getattr(features, key)[:, 0]
    done[w] = True
    paths["done"][w] = True


def _drone_waypoints_here(paths: zarr.Group, done: np.ndarray, scene: str, waypoints: list[dict[str, Any]],
                          pos: np.ndarray, links: dict[int, tuple[np.ndarray, np.ndarray]], config: GenerationConfig,
                          report: StepProgressFn, executor: ExecutorConfig) -> None:
    """The waypoints not done yet in this process: one transmitter moved from waypoint to waypoint."""
    from rflocal_core.raytrace import compute_paths, load_rt_scene

    num_wp = len(waypoints)
    rt_scene = None
    for w, link in links.items():
        report(f"exact paths (Sionna PathSolver), waypoint {w + 1}/{num_wp}", 0.25 + 0.7 * w / num_wp,
               step=Step("exact paths", int(done.sum()), num_wp))
        features = None
        if len(link[0]):
            if rt_scene is None:  # loading the scene is the slow part
                rt_scene = load_rt_scene(scene, sites=[{**waypoints[w], "id": "drone"}])
            wp = waypoints[w]
            rt_scene.get("drone").position = [wp["x_m"], wp["y_m"], wp["z_m"]]
            if float(rt_scene.frequency[0]) != float(wp["freq_hz"]):  # a waypoint of another band: its carrier
                rt_scene.frequency = float(wp["freq_hz"])
            features = compute_paths(rt_scene, pos[link[0], 0], **_path_options(config))
        _store_waypoint(paths, done, w, link, features)


def _drone_waypoints_on_ray(paths: zarr.Group, done: np.ndarray, scene: str, waypoints: list[dict[str, Any]],
                            pos: np.ndarray, links: dict[int, tuple[np.ndarray, np.ndarray]],
                            config: GenerationConfig, report: StepProgressFn, executor: ExecutorConfig) -> None:
    """The waypoints not done yet, one Ray task per waypoint that serves an emitter; stored as each finishes."""
    from rflocal_core import settings
    from rflocal_core.cluster import run_tasks
    from rflocal_core.raytrace import drone_paths_task

    num_wp = len(waypoints)
    for w in [w for w, link in links.items() if not len(link[0])]:
        _store_waypoint(paths, done, w, links[w], None)
    todo = [w for w, link in links.items() if len(link[0])]
    workspace, options = str(settings.workspace_dir()), _path_options(config)
    calls = [(workspace, scene, waypoints[w], pos[links[w][0], 0], options) for w in todo]
    names = [f"exact paths of drone waypoint {w + 1}/{num_wp} of scene {scene!r}" for w in todo]

    def finished(i: int, features: Any) -> None:
        _store_waypoint(paths, done, todo[i], links[todo[i]], features)
        count = int(done.sum())
        report(f"exact paths (Sionna PathSolver on Ray) {count}/{num_wp} waypoints", 0.25 + 0.7 * count / num_wp,
               step=Step("exact paths", count, num_wp))

    run_tasks(drone_paths_task, calls, config=executor, names=names, on_done=finished)


#: Exact-path arrays of a scene's partial store: dtype, fill, trailing shape (``taps``: the IQ taps).
_PATH_ARRAYS = {"toa_ns": (np.float32, np.nan, ()), "aoa_deg": (np.float32, np.nan, ()),
                "delay_spread_ns": (np.float32, np.nan, ()), "los": (np.int8, -1, ())}
_TAP_ARRAYS = {"gain_re": (np.float32, 0.0, ("taps",)), "gain_im": (np.float32, 0.0, ("taps",)),
               "delay_ns": (np.float32, np.nan, ("taps",)), "direction": (np.float32, np.nan, ("taps", 3))}


def _paths(
    group: zarr.Group, scene: str, pos: np.ndarray, step_mask: np.ndarray, config: GenerationConfig,
    report: StepProgressFn, seconds: dict[str, float], resumed: list[str], executor: ExecutorConfig = LOCAL, *,
    phy: Any = None,
) -> dict[str, np.ndarray]:
    """Exact-path features at every report position, one ``PATH_BATCH`` of positions at a time.

    With ``phy`` (a :class:`~rflocal_core.raytrace.PhySpec`) also each link's channel for the PHY
    reports (:data:`PHY_PATH_KEYS`).

    Each finished batch is stored in the partial store with its ``done`` flag (a killed run resumes
    after it); the batches run here, or as Ray tasks with the Ray executor.
    """
    n, steps, _ = pos.shape
    flat = pos[step_mask]  # only positions where a report is made
    m = len(flat)
    num_batches = (m + PATH_BATCH - 1) // PATH_BATCH
    taps = _path_options(config)["taps"]  # the store holds the taps the traced batches return
    arrays = {**_PATH_ARRAYS, **({f"tap_{k}": v for k, v in _TAP_ARRAYS.items()} if taps else {}),
              **(_phy_arrays(phy) if phy is not None else {})}
    paths = _path_store(group, arrays, m=m, num_batches=num_batches, taps=taps)
    done = np.asarray(paths["done"][...])
    if done.any():
        resumed.append(f"{scene}: {int(done.sum())}/{num_batches} path batches")
    t0 = time.perf_counter()
    if executor.uses_ray:
        trace = _trace_batches_on_ray
    else:  # children where there are enough batches for them (path_workers), else this process
        trace = _trace_batches_in_children if path_workers(int((~done).sum())) > 1 else _trace_batches_here
    trace(paths, done, scene, flat, config, report, executor, phy=phy)
    _add_seconds(seconds, "paths", time.perf_counter() - t0)
    out = {}
    for key, (_, fill, _) in arrays.items():
        values = np.asarray(paths[key][...])
        full = np.full((n, steps, *values.shape[1:]), fill, dtype=values.dtype)
        full[step_mask] = values
        out[key] = full
    return out


def _path_store(group: zarr.Group, arrays: dict[str, tuple[Any, Any, tuple]], *, m: int, num_batches: int,
                taps: int) -> zarr.Group:
    """The ``paths`` group of a scene's partial store, (re)created unless it holds these batches already."""
    paths = group.require_group("paths")
    if "done" in paths and paths["done"].shape == (num_batches,) and all(key in paths for key in arrays):
        return paths
    num_sites = len(group.attrs["site_ids"])
    for key, (dtype, fill, tail) in arrays.items():
        shape = (m, num_sites, *(taps if d == "taps" else d for d in tail))
        paths.create_array(key, shape=shape, chunks=(PATH_BATCH, *shape[1:]), dtype=dtype, fill_value=fill,
                           overwrite=True)
    paths.create_array("done", shape=(num_batches,), chunks=(max(num_batches, 1),), dtype=bool,
                       fill_value=False, overwrite=True)
    return paths


def _phy_arrays(phy: Any) -> dict[str, tuple[Any, Any, tuple]]:
    """The per-link channel arrays of the PHY reports (:data:`PHY_PATH_KEYS`), as :data:`_PATH_ARRAYS`."""
    rank = min(phy.arrays.ue_antennas, phy.arrays.gnb_antennas)
    beams = max(len(s) for s in phy.sectors) * phy.arrays.beams
    return {"beam_gain": (np.float32, np.nan, (beams,)), "eig": (np.float32, np.nan, (rank,)),
            "arrival_dir": (np.float32, np.nan, (3,))}


def _path_options(config: GenerationConfig, phy: Any = None) -> dict[str, Any]:
    from rflocal_core.dataset.iqgen import IQ_TAPS

    return {"max_depth": config.paths_max_depth, "samples_per_src": config.paths_samples_per_src,
            "batch_size": PATH_BATCH, "seed": config.seed, "diffraction": config.paths_diffraction,
            "taps": IQ_TAPS if config.iq else 0, **({"phy": phy} if phy is not None else {})}


def _store_batch(paths: zarr.Group, done: np.ndarray, b: int, features: Any) -> None:
    """Batch ``b``'s features into the store (a receipt: its task wrote them, checked here); its ``done``
    flag last (a batch counts once all is stored)."""
    if isinstance(features, str):
        check_receipt(paths, f"path batch {b + 1}", features, path_rows_receipt(paths, b, PATH_BATCH))
    else:
        put_path_rows(paths, b, features, batch=PATH_BATCH, phy_keys=PHY_PATH_KEYS)
    done[b] = True
    paths["done"][b] = True


def _trace_batches_here(paths: zarr.Group, done: np.ndarray, scene: str, flat: np.ndarray, config: GenerationConfig,
                        report: StepProgressFn, executor: ExecutorConfig, *, phy: Any = None) -> None:
    """The batches not done yet, one after the other in this process (one scene loaded for all)."""
    from rflocal_core.raytrace import band_scenes, compute_band_paths

    m, num_batches = len(flat), len(done)
    rt_scenes = None
    for b in range(num_batches):
        if done[b]:
            continue
        if rt_scenes is None:
            rt_scenes = band_scenes(scene)  # one per carrier: each band traced at its own frequency
        stop = min((b + 1) * PATH_BATCH, m)
        report(f"exact paths (Sionna PathSolver) {stop}/{m}", 0.25 + 0.7 * b / max(num_batches, 1),
               step=Step("exact paths", int(done.sum()), num_batches))
        _store_batch(paths, done, b, compute_band_paths(rt_scenes, flat[b * PATH_BATCH:stop],
                                                        **_path_options(config, phy)))


def path_workers(batches: int) -> int:
    """How many child processes trace ``batches`` path batches on this machine (1: this process).

    A batch is solved on one Dr.Jit thread wherever it runs (the same paths bit for bit; the
    solver's threads race, :func:`rflocal_core.raytrace.compute_paths`), so on a CPU the cores are used
    by one child process per core, as for the radio maps. A child costs seconds to start (Sionna,
    the scene), so each takes at least :data:`PATH_BATCHES_PER_WORKER` batches; a GPU runs them here.
    """
    import os

    from rflocal_core.raytrace import backend_device

    if batches < 2 * PATH_BATCHES_PER_WORKER or backend_device() != "cpu":
        return 1
    return max(1, min(os.cpu_count() or 1, batches // PATH_BATCHES_PER_WORKER))


def _trace_batches_in_children(paths: zarr.Group, done: np.ndarray, scene: str, flat: np.ndarray,
                               config: GenerationConfig, report: StepProgressFn, executor: ExecutorConfig, *,
                               phy: Any = None) -> None:
    """The batches not done yet in :func:`path_workers` child processes (batches dealt round-robin; rows and
    ``done`` flags stored here as each batch finishes). A cancel (``report`` raising) stops the children.

    Children are fresh interpreters (``python -m rflocal_core.pathworker``), not multiprocessing
    spawns: a spawn re-runs the caller's main script (a Streamlit page, seen in the tests).
    """
    import pickle
    import shutil
    import sys
    import tempfile
    from pathlib import Path

    from rflocal_core import settings
    from rflocal_core.raytrace import run_children

    num_batches = len(done)
    todo = [b for b in range(num_batches) if not done[b]]
    workers = path_workers(len(todo))
    what = f"exact paths (Sionna PathSolver, {workers} processes)"
    report(what, 0.25 + 0.7 * int(done.sum()) / num_batches, step=Step("exact paths", int(done.sum()), num_batches))
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-paths-", dir=settings.workspace_dir()))
    try:
        job = {"workspace": str(settings.workspace_dir()), "scene": scene, "options": _path_options(config, phy),
               "out_dir": str(tmp)}
        commands = []
        for w in range(workers):
            batches = [(b, flat[b * PATH_BATCH:(b + 1) * PATH_BATCH]) for b in todo[w::workers]]
            (tmp / f"job-{w}.pkl").write_bytes(pickle.dumps({**job, "batches": batches}))
            commands.append([sys.executable, "-m", "rflocal_core.pathworker", str(tmp / f"job-{w}.pkl")])

        def on_line(line: str) -> None:
            if not line.startswith("batch-done "):
                return
            b = int(line.split()[1])
            _store_batch(paths, done, b, pickle.loads((tmp / f"batch-{b}.pkl").read_bytes()))  # our children's files
            count = int(done.sum())
            report(f"{what} {count}/{num_batches} batches", 0.25 + 0.7 * count / num_batches,
                   step=Step("exact paths", count, num_batches))

        run_children(commands, on_line=on_line, log_dir=tmp, what="path worker")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _trace_batches_on_ray(paths: zarr.Group, done: np.ndarray, scene: str, flat: np.ndarray,
                          config: GenerationConfig, report: StepProgressFn, executor: ExecutorConfig, *,
                          phy: Any = None) -> None:
    """The batches not done yet as Ray tasks, in any order; each writes its rows into the store itself where
    it sees the store, else returns them and they are stored here; the ``done`` flags are set here."""
    from rflocal_core import settings
    from rflocal_core.cluster import run_tasks
    from rflocal_core.raytrace import path_batch_task

    num_batches = len(done)
    todo = [b for b in range(num_batches) if not done[b]]
    workers = path_workers(len(todo))
    workspace, options = str(settings.workspace_dir()), _path_options(config, phy)
    calls = [(workspace, scene, flat[b * PATH_BATCH:(b + 1) * PATH_BATCH], options) for b in todo]
    url = worker_location(paths)
    task = path_batch_task if url is None else path_batch_write_task
    if url is not None:
        calls = [(url, b, PATH_BATCH, PHY_PATH_KEYS, *call) for b, call in zip(todo, calls)]
    names = [f"path batch {b + 1}/{num_batches} of scene {scene!r}" for b in todo]

    def finished(i: int, features: Any) -> None:
        _store_batch(paths, done, todo[i], features)
        count = int(done.sum())
        report(f"exact paths (Sionna PathSolver on Ray) {count}/{num_batches} batches",
               0.25 + 0.7 * count / max(num_batches, 1), step=Step("exact paths", count, num_batches))

    report("exact paths (Sionna PathSolver on Ray)", 0.25 + 0.7 * int(done.sum()) / max(num_batches, 1),
           step=Step("exact paths", int(done.sum()), num_batches))
    run_tasks(task, calls, config=executor, names=names, on_done=finished)


def _iq_captures(maps: _SceneMaps, motion: _Motion, features: dict[str, np.ndarray], reps: Reports,
                 carriers: np.ndarray, config: GenerationConfig, index: int) -> dict[str, np.ndarray]:
    """Each present report's IQ capture and the features estimated from it (:mod:`rflocal_core.dataset.iqgen`);
    ``carriers`` [n, S]: each slot's node carrier (a multi-band scene's cells, drone waypoints per band)."""
    from rflocal_core.dataset.iqgen import synthesize_iq

    present = np.isfinite(reps.rss_dbm) | np.isfinite(reps.toa_ns)
    taps = {key[4:]: value for key, value in features.items() if key.startswith("tap_")}
    gain_db = motion.link_power + _link_shadow(maps, motion)
    return synthesize_iq(pos=motion.pos, t_s=motion.t_s, present=present, taps=taps, gain_db=gain_db,
                         carrier_hz=carriers, config=config,
                         rng=_rng(config, index, "iq"))


def _write_iq(samples: zarr.Group, per_scene: list[dict[str, Any]], s_max: int, config: GenerationConfig) -> None:
    """The IQ captures and their features, node slots padded to ``s_max`` (axis 2), in small chunks."""
    from rflocal_core.dataset.iqgen import capture_attrs

    for key in per_scene[0]["iq"]:
        parts = []
        for p in per_scene:
            value = p["iq"][key]
            if value.ndim >= 3:
                widths = [(0, 0)] * value.ndim
                widths[2] = (0, s_max - value.shape[2])
                fill = False if value.dtype == bool else (0 if value.dtype.kind in "iu" else np.nan)
                value = np.pad(value, widths, constant_values=fill)
            parts.append(value)
        store.write_array(samples, key, np.concatenate(parts),
                          chunk_rows=store.IQ_CHUNK if key == "iq" else store.SAMPLE_CHUNK)
    # one carrier for every capture, else None: each capture is at its node's (samples/node_carrier_hz)
    carriers = {float(c) for p in per_scene for c in np.unique(p["node_carrier"])}
    samples.attrs["iq"] = capture_attrs(config, carriers.pop() if len(carriers) == 1 else None)


def _phy_samples(per_scene: list[dict[str, Any]], s_max: int) -> dict[str, np.ndarray]:
    """The PHY report arrays of all scenes, padded to ``s_max`` slots (empty if no scene has them).

    A scene without PHY reports (emitter mode, no timing) is all missing (NaN, -1); ``phy_mask``
    [n, T, S] says where a PHY report was made.
    """
    made = [p["phy"] for p in per_scene if p["phy"] is not None]
    if not made:
        return {}
    out: dict[str, np.ndarray] = {}
    for key, template in vars(made[0]).items():
        fill = -1 if template.dtype.kind in "iu" else np.nan
        parts = []
        for p in per_scene:
            n, steps = p["pos"].shape[:2]
            if p["phy"] is None:
                shape = (n, steps) if template.ndim == 2 else (n, steps, s_max, *template.shape[3:])
                parts.append(np.full(shape, fill, dtype=template.dtype))
                continue
            value = getattr(p["phy"], key)
            if value.ndim > 2:  # slots are axis 2
                widths = [(0, 0), (0, 0), (0, s_max - value.shape[2])] + [(0, 0)] * (value.ndim - 3)
                value = np.pad(value, widths, constant_values=fill)
            parts.append(value)
        out[key] = np.concatenate(parts)
    out["phy_mask"] = out["serving"] >= 0
    return out


def _write_samples(root: zarr.Group, per_scene: list[dict[str, Any]], config: GenerationConfig) -> dict[str, Any]:
    s_max = max(p["node_pos"].shape[1] for p in per_scene)

    def pad(a: np.ndarray, fill: Any) -> np.ndarray:
        extra = s_max - a.shape[-1]
        if extra == 0:
            return a
        widths = [(0, 0)] * (a.ndim - 1) + [(0, extra)]
        return np.pad(a, widths, constant_values=fill)

    cat = {}
    fields = ("rss_dbm", "snr_db", "toa_ns", "ta", "aoa_deg", "los", "delay_spread_ns", "pg_true_db")
    for key in fields:
        fill = -1 if key in ("ta", "los") else np.nan
        cat[key] = np.concatenate([pad(getattr(p["reports"], key), fill) for p in per_scene])
    n_each = [len(p["pos"]) for p in per_scene]
    node_pos = np.concatenate([
        np.pad(p["node_pos"], ((0, 0), (0, s_max - p["node_pos"].shape[1]), (0, 0)), constant_values=np.nan)
        for p in per_scene
    ]).astype(np.float32)
    node_mask = np.isfinite(node_pos).all(-1)
    samples = root.require_group("samples")
    arrays = {
        "scene_idx": np.concatenate([np.full(n, p["index"], dtype=np.int16) for p, n in zip(per_scene, n_each)]),
        "pos_m": np.concatenate([p["pos"] for p in per_scene]).astype(np.float32),
        "latlon": np.concatenate([p["latlon"] for p in per_scene]).astype(np.float64),
        "t_s": np.concatenate([p["t_s"] for p in per_scene]).astype(np.float32),
        "step_mask": np.concatenate([p["step_mask"] for p in per_scene]),
        "node_pos_m": node_pos,
        "node_mask": node_mask,
        "tx_power_dbm": np.concatenate([p["tx_power"] for p in per_scene]).astype(np.float32),
        # the band of each sample: its scene's carrier (scenes of one city at two bands make a mixed-band dataset)
        "carrier_hz": np.concatenate([np.full(n, np.nan if p["carrier_hz"] is None else p["carrier_hz"])
                                      for p, n in zip(per_scene, n_each)]).astype(np.float64),
        # the carrier of each node slot (co-sited cells of a multi-band scene are nodes of their own)
        "node_carrier_hz": np.concatenate([pad(p["node_carrier"], np.nan) for p in per_scene]).astype(np.float64),
        **cat,
        **_phy_samples(per_scene, s_max),
    }
    store.write_samples(samples, arrays)
    if per_scene[0].get("iq") is not None:
        _write_iq(samples, per_scene, s_max, config)

    # Splits: whole unseen scenes to test_unseen; the rest shuffled into train/val/test.
    rng = _rng(config, 0, "splits")
    scene_idx = arrays["scene_idx"]
    unseen = np.array([config.scenes[i] in config.unseen_scenes for i in scene_idx], dtype=bool)
    seen_idx = rng.permutation(np.flatnonzero(~unseen))
    n_train = int(round(config.split[0] * len(seen_idx)))
    n_val = int(round(config.split[1] * len(seen_idx)))
    splits = {"train": np.sort(seen_idx[:n_train]), "val": np.sort(seen_idx[n_train:n_train + n_val]),
              "test": np.sort(seen_idx[n_train + n_val:]), "test_unseen": np.flatnonzero(unseen)}
    group = root.require_group("splits")
    for key, idx in splits.items():
        store.write_array(group, key, idx.astype(np.int64), chunk_rows=max(len(idx), 1))
    present = np.isfinite(cat["rss_dbm"])
    extra = {}
    if per_scene[0].get("iq") is not None:
        captures = int(sum(np.count_nonzero(p["iq"]["mask_iq"]) for p in per_scene))
        extra = {"iq_captures": captures}
    return {**extra,
        "samples": int(len(scene_idx)),
        "splits": {k: int(len(v)) for k, v in splits.items()},
        "sites_max": int(s_max),
        "steps_max": int(config.max_steps),
        "reports_per_sample_mean": float(present.any(1).sum(-1).mean()) if len(scene_idx) else 0.0,
    }
