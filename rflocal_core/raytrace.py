"""Ray tracing with Sionna RT: load a built scene and compute radio maps.

Sionna RT is the only propagation engine of RFLocal. If it cannot run here,
:func:`rflocal_core.backend.ensure_backend` says why and nothing is computed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rflocal_core import settings
from rflocal_core.backend import ensure_backend
from rflocal_core.cluster import ExecutorConfig, run_tasks
from rflocal_core.constants import SPEED_OF_LIGHT_M_S
from rflocal_core.errors import InvalidInputError
from rflocal_core.phy import ArraySetup, LinkChannel, direction, link_channel
from rflocal_core.scene.sites import sionna_orientation_rad
from rflocal_core.scene.store import load_scene_meta, scene_dir


def backend_device() -> str:
    """``"cuda"`` or ``"cpu"``: where ray tracing runs."""
    return ensure_backend().device


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
    from sionna.rt import PlanarArray, load_scene

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
        add_site(scene, site)
    return scene


def add_site(scene: Any, site: dict[str, Any]) -> None:
    """Add a site (a record of ``scene.json``) to a Sionna scene as a transmitter."""
    from sionna.rt import Transmitter

    pattern = site.get("pattern", "iso")
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
    diffraction: bool = False,
    on_site: Any = None,
    reproducible: bool = True,
    workers: int | None = None,
    executor: ExecutorConfig | None = None,
    known: MapsSoFar | None = None,
    on_map: Any = None,
    sink: MapSink | None = None,
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
    diffraction : bool
        Include (first-order wedge) diffraction: slower, but street canyons out of
        sight of a rooftop site are no longer left without signal.
    workers : int, optional
        Child processes of the local executor (default: one per core, at most one per site).
    executor : ExecutorConfig, optional
        ``executor="ray"``: one Ray task per site (:mod:`rflocal_core.cluster`), the same maps bit
        for bit; default the local executor.
    known, on_map, sink : MapsSoFar, callable, MapSink, optional
        Ray executor: maps an interrupted run traced (not traced again); ``on_map(site_index,
        linear_gain, cell_centres)`` as each site's task finishes (to keep it; may raise to cancel);
        where each task writes its map itself (``on_map`` then gets ``None`` and the sink's receipt).
    """
    _check_grid(cell_size_m, plane_height_m)
    ensure_backend()
    meta = load_scene_meta(name)
    sites = meta["sites"] if sites is None else sites
    ext = meta["extent_m"]
    center_m = ((ext["x_min"] + ext["x_max"]) / 2, (ext["y_min"] + ext["y_max"]) / 2) if center_m is None else center_m
    size_m = (ext["width"], ext["height"]) if size_m is None else size_m
    solve = {"center_m": tuple(center_m), "size_m": tuple(size_m), "plane_height_m": plane_height_m,
             "cell_size_m": cell_size_m, "samples_per_tx": samples_per_tx, "max_depth": max_depth, "seed": seed,
             "diffraction": diffraction}
    t0 = time.perf_counter()
    gain, centres = _solve_all(name, sites, solve, workers=workers, executor=executor, on_site=on_site,
                               reproducible=reproducible, known=known, on_map=on_map, sink=sink)
    seconds = time.perf_counter() - t0
    with np.errstate(divide="ignore"):
        gain_db = 10.0 * np.log10(gain)
    tx_power = np.array([s.get("tx_power_dbm") or 0.0 for s in sites])
    return RadioMap(
        path_gain_db=gain_db,
        rss_dbm=gain_db + tx_power[:, None, None],
        x_m=centres[0, :, 0].astype(np.float64),
        y_m=centres[:, 0, 1].astype(np.float64),
        height_m=float(plane_height_m),
        cell_size_m=float(cell_size_m),
        site_ids=[str(s["id"]) for s in sites],
        seconds=seconds,
    )


def map_shape(name: str, cell_size_m: float) -> tuple[int, int]:
    """``(ny, nx)`` of the maps :func:`compute_radio_map` makes of the whole scene ``name``.

    Sionna's planar radio map has ``ceil(size / cell_size)`` cells per side, computed in float32
    (``mi.Point2f``); a store for the maps is made before any is traced (:class:`MapSink`).
    """
    ext = load_scene_meta(name)["extent_m"]
    cell = np.float32(cell_size_m)
    return int(np.ceil(np.float32(ext["height"]) / cell)), int(np.ceil(np.float32(ext["width"]) / cell))


def _check_grid(cell_size_m: float, plane_height_m: float) -> None:
    if not 0.5 <= cell_size_m <= 20.0:
        msg = f"cell_size_m: expected a number in [0.5, 20] m, got {cell_size_m!r}"
        raise InvalidInputError(msg)
    if not 0.1 <= plane_height_m <= 500.0:
        msg = f"plane_height_m: expected a number in [0.1, 500] m, got {plane_height_m!r}"
        raise InvalidInputError(msg)


def _solve_all(name: str, sites: list[dict[str, Any]], solve: dict[str, Any], *, workers: int | None,
               executor: ExecutorConfig | None, on_site: Any, reproducible: bool, known: MapsSoFar | None,
               on_map: Any, sink: MapSink | None) -> tuple[np.ndarray, np.ndarray]:
    """Maps of all sites on the executor asked for: Ray tasks, child processes, or this process."""
    if (known is not None or on_map is not None or sink is not None) and not (executor is not None
                                                                              and executor.uses_ray):
        msg = "known, on_map, sink: apply with the Ray executor (one task per site), got the local executor"
        raise ValueError(msg)
    if executor is not None and executor.uses_ray:
        return _solve_sites_on_ray(name, sites, solve, executor, on_site, reproducible=reproducible,
                                   known=known or MapsSoFar({}, None), on_map=on_map, sink=sink)
    if workers is None:
        workers = min(os.cpu_count() or 1, len(sites)) if reproducible and backend_device() == "cpu" else 1
    if workers > 1:
        return _solve_sites_in_processes(name, sites, solve, workers, on_site)
    return solve_sites_here(name, sites, solve, on_site=on_site, reproducible=reproducible)


@contextlib.contextmanager
def _reproducible_threads(*, enabled: bool) -> Iterator[None]:
    """Run Dr.Jit's CPU backend on one thread while inside.

    With diffraction, ``RadioMapSolver`` on several threads is not reproducible for a
    fixed seed (Sionna issue NVlabs/sionna#1071; measured on the default city, 6 sites,
    2 m cells: 3 to 18,392 cells differed by > 0.01 dB between identical calls). On one
    thread five identical calls matched exactly, at about 10% more time on 2 cores.

    ``PathSolver`` neither: its candidate generator keeps one ray per specular chain or
    diffraction edge (a hash table, first ray wins by an atomic counter), so which ray is kept
    depends on thread timing, and the kept ray's own triangle or wedge decides whether the image
    method accepts the path and with which material (a building's floor coincides with the
    ground: one reflection was 'ground' or the building, 9 dB apart, call to call). On the drone
    test's scene a link's strongest (diffracted) path was missing in 4 of 26 threaded calls, its
    AoA then 49 degrees off; on one thread every call matched bit for bit.
    """
    import drjit as dr

    if not enabled or backend_device() != "cpu":
        yield
        return
    before = dr.thread_count()
    dr.set_thread_count(1)
    try:
        yield
    finally:
        dr.set_thread_count(before)


def solve_sites_here(
    name: str, sites: list[dict[str, Any]], solve: dict[str, Any], *, on_site: Any = None, reproducible: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Maps of ``sites`` in this process: linear gain [num_sites, ny, nx] and cell centres [ny, nx, 3].

    One solver call per site (progress per site, one map in memory at a time), the
    transmitter moved from site to site in a scene loaded once.
    """
    from sionna.rt import RadioMapSolver

    scene = load_rt_scene(name, sites=sites[:1])
    with _reproducible_threads(enabled=reproducible):
        return _solve_sites(RadioMapSolver(), scene, sites, on_site=on_site, **solve)


def _solve_sites_in_processes(name: str, sites: list[dict[str, Any]], solve: dict[str, Any], workers: int,
                              on_site: Any) -> tuple[np.ndarray, np.ndarray]:
    """Maps of all sites computed by ``workers`` child processes (sites dealt round-robin).

    Children are fresh interpreters (``python -m rflocal_core.mapworker``), not
    multiprocessing forks or spawns: they never re-import the caller's main script and
    are safe to start from any thread. Each prints a line per finished site (progress)
    and saves its maps to a temporary ``.npz``.
    """
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-maps-", dir=settings.workspace_dir()))
    try:
        commands = []
        for w in range(workers):
            job = {"name": name, "sites": sites[w::workers], "solve": solve, "out": str(tmp / f"worker-{w}.npz")}
            (tmp / f"worker-{w}.json").write_text(json.dumps(job), encoding="utf-8")
            commands.append([sys.executable, "-m", "rflocal_core.mapworker", str(tmp / f"worker-{w}.json")])
        done = 0

        def on_line(line: str) -> None:
            nonlocal done
            if line.startswith("site-done"):
                done += 1
                if on_site is not None:
                    on_site(done, len(sites))

        run_children(commands, on_line=on_line, log_dir=tmp, what="radio map worker")
        parts = [np.load(tmp / f"worker-{w}.npz") for w in range(workers)]
        gains = [None] * len(sites)
        for w, part in enumerate(parts):
            for j, k in enumerate(range(w, len(sites), workers)):
                gains[k] = part["gain"][j]
        return np.stack(gains), parts[0]["centres"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class MapsSoFar:
    """The sites an interrupted run traced: linear gain [ny, nx] by site index, and the cell centres."""

    gains: dict[int, np.ndarray]
    centres: np.ndarray | None


@dataclass(frozen=True)
class MapSink:
    """Where Ray tasks write their site maps themselves: a store every worker sees.

    Attributes
    ----------
    write : callable
        ``write(site_index, linear_gain [ny, nx], cell_centres [ny, nx, 3]) -> receipt``, run in the
        worker (a module-level function or a ``functools.partial`` of one: it travels to the worker);
        the task returns ``None, receipt``.
    read : callable
        ``read() -> (linear_gain [num_sites, ny, nx], cell_centres)``, run here once every site is stored.
    """

    write: Callable[[int, np.ndarray, np.ndarray], Any]
    read: Callable[[], tuple[np.ndarray, np.ndarray]]


def _solve_sites_on_ray(name: str, sites: list[dict[str, Any]], solve: dict[str, Any], executor: ExecutorConfig,
                        on_site: Any, *, reproducible: bool, known: MapsSoFar,
                        on_map: Any, sink: MapSink | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Maps of all sites, one Ray task per site not ``known``; progress as each finishes, in any order.

    With ``sink`` the tasks write their maps into the store and return nothing; the maps are read from it.
    """
    todo = [k for k in range(len(sites)) if k not in known.gains]
    done = len(sites) - len(todo)

    def finished(index: int, result: Any) -> None:
        nonlocal done
        done += 1
        if on_map is not None:
            on_map(todo[index], *result)
        if on_site is not None:
            on_site(done, len(sites))

    workspace = str(settings.workspace_dir())
    calls = [(workspace, name, sites[k], solve, reproducible, None if sink is None else sink.write, k) for k in todo]
    names = [f"radio map of site {sites[k]['id']!r} of scene {name!r}" for k in todo]
    results = dict(zip(todo, run_tasks(site_map_task, calls, config=executor, names=names, on_done=finished)))
    if sink is not None:
        return sink.read()
    gains = [known.gains[k] if k in known.gains else results[k][0] for k in range(len(sites))]
    return np.stack(gains), results[todo[0]][1] if todo else known.centres


#: The scene a Ray worker traced last, kept loaded for its next task on the same scene:
#: ``key`` (scene files and their times, and what the scene was loaded for) and ``scene``.
_WORKER_SCENE: dict[str, Any] = {}


def _worker_scene(name: str, purpose: tuple[Any, ...], load: Any) -> Any:
    """``load()`` once per worker process, scene and ``purpose``; a changed scene file loads again."""
    folder = scene_dir(name)
    key = (str(folder), *((folder / f).stat().st_mtime_ns for f in ("scene.xml", "scene.json")), *purpose)
    if _WORKER_SCENE.get("key") != key:
        _WORKER_SCENE.clear()  # one scene at a time: a worker may serve many scenes and workspaces
        _WORKER_SCENE.update(key=key, scene=load())
    return _WORKER_SCENE["scene"]


def _map_scene(name: str, site: dict[str, Any]) -> Any:
    """The scene ``name`` without transmitters, for maps at the site's frequency and antenna pattern."""
    scene = load_rt_scene(name, sites=[site])
    scene.remove(str(site["id"]))
    return scene


def site_map_task(workspace: str, name: str, site: dict[str, Any], solve: dict[str, Any],
                  reproducible: bool, write: Callable[[int, np.ndarray, np.ndarray], Any] | None = None,
                  index: int = 0) -> tuple[np.ndarray | None, Any]:
    """A Ray task: the linear gain map [ny, nx] of one site and the cell centres [ny, nx, 3].

    The same solver call as :func:`solve_sites_here` (hence the same map bit for bit); the scene
    stays loaded in the worker for its next site. With ``write`` (:attr:`MapSink.write`) the task
    stores them itself, as site ``index``, and returns ``None`` and what ``write`` returned (a receipt).
    """
    from sionna.rt import RadioMapSolver

    with settings.use_workspace(workspace):
        purpose = ("map", float(site["freq_hz"]), site.get("pattern", "iso"))
        scene = _worker_scene(name, purpose, lambda: _map_scene(name, site))
        add_site(scene, site)
        try:
            with _reproducible_threads(enabled=reproducible):
                gain, centres = _solve_sites(RadioMapSolver(), scene, [site], on_site=None, **solve)
        finally:
            scene.remove(str(site["id"]))
    if write is not None:
        return None, write(index, gain[0], centres)
    return gain[0], centres


def path_batch_task(workspace: str, name: str, positions_m: np.ndarray, options: dict[str, Any]) -> PathFeatures:
    """A Ray task: :func:`compute_paths` from every site of scene ``name`` to ``positions_m``.

    One Dr.Jit thread (``compute_paths(reproducible=True)``; the task asked Ray for one CPU); the
    scene stays loaded in the worker for its next batch.
    """
    with settings.use_workspace(workspace):
        scenes = _worker_scene(name, ("paths",), lambda: band_scenes(name))
        return compute_band_paths(scenes, positions_m, **options)  # one thread: compute_paths' reproducible


def drone_paths_task(workspace: str, name: str, waypoint: dict[str, Any], positions_m: np.ndarray,
                     options: dict[str, Any]) -> PathFeatures:
    """A Ray task: :func:`compute_paths` from one drone waypoint (the transmitter ``"drone"``) to ``positions_m``."""
    with settings.use_workspace(workspace):
        purpose = ("drone", float(waypoint["freq_hz"]), waypoint.get("pattern", "iso"))
        scene = _worker_scene(name, purpose, lambda: load_rt_scene(name, sites=[{**waypoint, "id": "drone"}]))
        scene.get("drone").position = [waypoint["x_m"], waypoint["y_m"], waypoint["z_m"]]
        return compute_paths(scene, positions_m, **options)  # one thread: its reproducible default


def run_children(commands: list[list[str]], *, on_line: Any, log_dir: Path, what: str = "worker") -> None:
    """Run child processes at once; pass each stdout line to ``on_line``; raise if one fails.

    Each child's stderr goes to a file in ``log_dir``, not to a pipe: a pipe read only
    after the child exits fills up (about 64 KB, e.g. a Dr.Jit warning storm) and
    blocks the child forever.

    Raises
    ------
    RuntimeError
        A child exited with a non-zero status; the message names it and quotes the last
        line of its stderr.
    """
    procs, logs = [], []
    try:
        for w, argv in enumerate(commands):
            logs.append(open(log_dir / f"worker-{w}.stderr", "w+", encoding="utf-8", errors="replace"))  # noqa: SIM115
            procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=logs[-1], text=True,
                                          env=os.environ.copy()))
        lines: queue.Queue[str | None] = queue.Queue()
        for proc in procs:
            threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
        finished = 0
        while finished < len(procs):
            line = lines.get()
            if line is None:
                finished += 1
            else:
                on_line(line)
        for w, proc in enumerate(procs):
            if proc.wait() != 0:
                logs[w].seek(0)
                err = logs[w].read().strip().splitlines()
                msg = f"{what} {w} failed: {err[-1] if err else 'exit status ' + str(proc.returncode)}"
                raise RuntimeError(msg)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()


def _pump(stream: Any, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.strip())
    lines.put(None)


def _solve_sites(solver: Any, scene: Any, sites: list[dict[str, Any]], *, center_m: tuple[float, float],
                 size_m: tuple[float, float], plane_height_m: float, cell_size_m: float, samples_per_tx: int,
                 max_depth: int, seed: int, diffraction: bool, on_site: Any) -> tuple[np.ndarray, np.ndarray]:
    """Path-gain maps [num_sites, ny, nx] (one solver call per site) and cell centres [ny, nx, 3]."""
    gains = []
    for k, site in enumerate(sites):
        if k > 0:
            scene.remove(str(sites[k - 1]["id"]))
            add_site(scene, site)
        if float(scene.frequency[0]) != float(site["freq_hz"]):  # a cell on another band: materials at its carrier
            scene.frequency = float(site["freq_hz"])
        rm = solver(
            scene,
            center=[float(center_m[0]), float(center_m[1]), float(plane_height_m)],
            orientation=[0.0, 0.0, 0.0],
            size=[float(size_m[0]), float(size_m[1])],
            cell_size=[float(cell_size_m), float(cell_size_m)],
            samples_per_tx=int(samples_per_tx),
            max_depth=int(max_depth),
            seed=int(seed),
            diffraction=bool(diffraction),
        )
        gains.append(np.asarray(rm.path_gain.numpy(), dtype=np.float64)[0])
        if on_site is not None:
            on_site(k + 1, len(sites))
    return np.stack(gains), np.asarray(rm.cell_centers.numpy())


@dataclass
class PathFeatures:
    """Per-link features from Sionna's ``PathSolver``, site -> target.

    All arrays have shape [num_positions, num_sites]; NaN where no path was found.

    Attributes
    ----------
    toa_ns : first-path delay (the smallest delay of any valid path), in ns.
    aoa_deg : compass bearing (clockwise from north) at the site of the strongest path,
        i.e. the direction in which the site sees the target's signal.
    los : 1 if a line-of-sight path exists, 0 if not (paths exist but none direct),
        -1 if no path at all.
    delay_spread_ns : RMS delay spread, power-weighted.
    path_gain_db : sum of path powers (incoherent), in dB.
    channel : LinkChannel or None
        SSB beam gains, MIMO eigenvalues and arrival direction per link (:func:`rflocal_core.phy.link_channel`),
        when :func:`compute_paths` was given a :class:`PhySpec`.
    taps : PathTaps or None
        The strongest paths themselves (``compute_paths(..., taps=K)``), for IQ synthesis.
    channel : LinkChannel or None
        SSB beam gains, MIMO eigenvalues and arrival direction per link (:func:`rflocal_core.phy.link_channel`),
        when :func:`compute_paths` was given a :class:`PhySpec`.
    """

    toa_ns: np.ndarray
    aoa_deg: np.ndarray
    los: np.ndarray
    delay_spread_ns: np.ndarray
    path_gain_db: np.ndarray
    taps: PathTaps | None = None
    channel: LinkChannel | None = None


@dataclass
class PathTaps:
    """The K strongest paths of each link, strongest first; arrays [num_positions, num_sites, K].

    Attributes
    ----------
    gain_re, gain_im : complex amplitude gain of the path (Sionna's ``paths.a``, carrier phase
        included); 0 where there is no path.
    delay_ns : propagation delay; NaN where there is no path.
    direction : [..., K, 3] unit vector at the position (the target) along which the path
        leaves it towards the site (Sionna's ``theta_r``/``phi_r`` of the position as receiver):
        a target moving with velocity v sees a Doppler shift ``v · direction / λ`` on that path.
    """

    gain_re: np.ndarray
    gain_im: np.ndarray
    delay_ns: np.ndarray
    direction: np.ndarray


def compute_paths(
    scene: Any,
    positions_m: np.ndarray,
    *,
    max_depth: int = 3,
    samples_per_src: int = 100_000,
    batch_size: int = 200,
    seed: int = 42,
    diffraction: bool = False,
    on_batch: Any = None,
    phy: PhySpec | None = None,
    taps: int = 0,
    reproducible: bool = True,
) -> PathFeatures:
    """Trace exact paths between every transmitter of ``scene`` and each position.

    The scene's transmitters are the sites (see :func:`load_rt_scene`); positions
    are added as receivers in batches. By reciprocity the same paths serve the
    uplink (``emitter`` mode): the angle at the site is the departure angle ``phi_t``.

    Parameters
    ----------
    scene : sionna.rt.Scene
        With one transmitter per site and no receivers.
    positions_m : ndarray, shape [num_positions, 3]
    max_depth, samples_per_src, seed, diffraction
        Passed to ``PathSolver``.
    batch_size : int
        Receivers per solver call (bounds memory).
    on_batch : callable, optional
        ``on_batch(done, total)`` after each batch (progress; may raise to cancel).
    phy : PhySpec, optional
        Also keep each link's channel (beams, MIMO, arrival direction) as ``channel``.
    taps : int
        Keep the ``taps`` strongest paths of each link (:class:`PathTaps`); 0 keeps none.
    reproducible : bool
        Solve on one CPU thread (default): the same paths bit for bit on every call (see
        :func:`_reproducible_threads`); False lets Dr.Jit use every core.
    """
    ensure_backend()
    from sionna.rt import PathSolver

    positions_m = np.asarray(positions_m, dtype=np.float64)
    n = len(positions_m)
    num_sites = len(scene.transmitters)
    out = {k: np.full((n, num_sites), np.nan) for k in ("toa_ns", "aoa_deg", "delay_spread_ns", "path_gain_db")}
    los = np.full((n, num_sites), -1, dtype=np.int8)
    kept = _empty_taps(n, num_sites, taps) if taps else None
    channels: list[LinkChannel] = []
    solver = PathSolver()
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        with _reproducible_threads(enabled=reproducible):
            traced, rx_side, theta_t = _trace_batch(solver, scene, positions_m[start:stop], first=start,
                                                    max_depth=max_depth, samples_per_src=samples_per_src, seed=seed,
                                                    diffraction=diffraction)
        features, direct = _link_features(*traced)
        for key, value in features.items():
            out[key][start:stop] = value
        los[start:stop] = direct
        if kept is not None:
            for key, value in _strongest_taps(traced[1], traced[3], *rx_side, count=taps).items():
                getattr(kept, key)[start:stop] = value
        if phy is not None:
            channels.append(_link_channel(traced, rx_side, theta_t, phy))
        if on_batch is not None:
            on_batch(stop, n)
    return PathFeatures(out["toa_ns"], out["aoa_deg"], los, out["delay_spread_ns"], out["path_gain_db"], kept,
                        _concat_channels(channels))


@dataclass(frozen=True)
class BandScene:
    """The Sionna scene of one carrier: its cells as transmitters, ``scene.frequency`` at the carrier.

    Attributes
    ----------
    freq_hz : float
    columns : ndarray [k] int
        Indices of those cells among all the sites.
    scene : sionna.rt.Scene
    num_sites : int
        How many sites in all (the width of merged results).
    """

    freq_hz: float
    columns: np.ndarray
    scene: Any
    num_sites: int


def band_scenes(name: str, *, sites: list[dict[str, Any]] | None = None) -> list[BandScene]:
    """One scene per carrier of ``sites`` (default the scene's): a scene traces at one frequency.

    A scene of one band gives one :class:`BandScene` with every site, as :func:`load_rt_scene` did.
    """
    sites = load_scene_meta(name)["sites"] if sites is None else sites
    groups: dict[float, list[int]] = {}
    for k, site in enumerate(sites):
        groups.setdefault(float(site["freq_hz"]), []).append(k)
    return [BandScene(freq, np.asarray(cols), load_rt_scene(name, sites=[sites[k] for k in cols]), len(sites))
            for freq, cols in groups.items()]


def compute_band_paths(scenes: list[BandScene], positions_m: np.ndarray, *, phy: PhySpec | None = None,
                       **options: Any) -> PathFeatures:
    """:func:`compute_paths` at every band's scene, merged into one [num_positions, num_sites] result.

    Each band is traced at its own carrier (materials and path gains at that frequency); one band
    is :func:`compute_paths` itself.
    """
    parts = []
    for band in scenes:
        sub = None if phy is None else replace(phy, sectors=[phy.sectors[k] for k in band.columns])
        parts.append(compute_paths(band.scene, positions_m, phy=sub, **options))
    if len(scenes) == 1 and len(scenes[0].columns) == scenes[0].num_sites:
        return parts[0]
    return merge_band_paths(parts, [b.columns for b in scenes], scenes[0].num_sites)


def merge_band_paths(parts: list[PathFeatures], columns: list[np.ndarray], num_sites: int) -> PathFeatures:
    """The per-band results ``parts`` (sites ``columns`` of each) as one over ``num_sites`` sites."""

    def merged(arrays: list[np.ndarray], fill: Any) -> np.ndarray:
        tail = tuple(max(a.shape[k] for a in arrays) for k in range(2, arrays[0].ndim))
        out = np.full((arrays[0].shape[0], num_sites, *tail), fill, dtype=arrays[0].dtype)
        for a, cols in zip(arrays, columns):
            out[(slice(None), cols, *(slice(0, w) for w in a.shape[2:]))] = a
        return out

    first = parts[0]
    fields = {key: merged([getattr(p, key) for p in parts], -1 if key == "los" else np.nan)
              for key in ("toa_ns", "aoa_deg", "los", "delay_spread_ns", "path_gain_db")}
    taps = None if first.taps is None else PathTaps(
        *(merged([getattr(p.taps, key) for p in parts], 0.0 if key.startswith("gain") else np.nan)
          for key in ("gain_re", "gain_im", "delay_ns", "direction")))
    channel = None if first.channel is None else LinkChannel(
        *(merged([getattr(p.channel, key) for p in parts], np.nan) for key in ("beam_gain", "eig", "arrival_dir")))
    return PathFeatures(**fields, taps=taps, channel=channel)


@dataclass(frozen=True)
class PhySpec:
    """What :func:`compute_paths` needs to keep each link's channel for the PHY reports.

    Attributes
    ----------
    sectors : list of list of float
        Sector azimuths of every transmitter of the scene (:func:`rflocal_core.phy.site_sectors`).
    arrays : ArraySetup
    bandwidth_hz : float
        Band of the wideband MIMO covariance.
    """

    sectors: list[list[float]]
    arrays: ArraySetup
    bandwidth_hz: float


def _link_channel(traced: tuple[np.ndarray, ...], rx_side: tuple[np.ndarray, ...], theta_t: np.ndarray,
                  phy: PhySpec) -> LinkChannel:
    """The PHY channel summary of a batch: departure and arrival unit vectors from Sionna's angles."""
    _, tau, phi_t, valid, _ = traced
    a, theta_r, phi_r = rx_side
    return link_channel(a, tau, valid, direction(theta_t, phi_t), direction(theta_r, phi_r), sectors=phy.sectors,
                        setup=phy.arrays, bandwidth_hz=phy.bandwidth_hz)


def _concat_channels(channels: list[LinkChannel]) -> LinkChannel | None:
    if not channels:
        return None
    return LinkChannel(*(np.concatenate([getattr(c, k) for c in channels]) for k in ("beam_gain", "eig", "arrival_dir")))


def _empty_taps(n: int, num_sites: int, count: int) -> PathTaps:
    shape = (n, num_sites, count)
    return PathTaps(np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.full(shape, np.nan, np.float32),
                    np.full((*shape, 3), np.nan, np.float32))


def _strongest_taps(tau: np.ndarray, valid: np.ndarray, a: np.ndarray, theta_r: np.ndarray, phi_r: np.ndarray, *,
                    count: int) -> dict[str, np.ndarray]:
    """The ``count`` strongest valid paths of each link [rx, tx, count] (zeros/NaN where fewer)."""
    power = np.where(valid, np.abs(a) ** 2, -1.0)
    order = np.argsort(-power, axis=-1, kind="stable")[..., :count]

    def take(v: np.ndarray) -> np.ndarray:
        return np.take_along_axis(v, order, -1)

    ok = take(valid)
    gain = np.where(ok, take(a), 0.0)
    theta, phi = take(theta_r), take(phi_r)
    direction = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1)
    out = {"gain_re": gain.real, "gain_im": gain.imag, "delay_ns": np.where(ok, take(tau) * 1e9, np.nan),
           "direction": np.where(ok[..., None], direction, np.nan)}
    pad = count - order.shape[-1]  # fewer candidate paths than taps in this batch
    if pad > 0:
        fills = {"gain_re": 0.0, "gain_im": 0.0, "delay_ns": np.nan, "direction": np.nan}
        for key, value in out.items():
            widths = [(0, 0)] * value.ndim
            widths[2] = (0, pad)
            out[key] = np.pad(value, widths, constant_values=fills[key])
    return out


def _trace_batch(
    solver: Any, scene: Any, positions_m: np.ndarray, *, first: int, max_depth: int, samples_per_src: int,
    seed: int, diffraction: bool,
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], np.ndarray]:
    """Paths from every transmitter to receivers added at ``positions_m`` (removed again afterwards).

    Returns power [rx, tx, p], delay ``tau`` (s), departure azimuth ``phi_t`` (rad), ``valid`` and
    interaction types [depth, rx, tx, p]; then the complex gain ``a`` and the arrival angles
    ``theta_r``, ``phi_r`` (rad) at the receivers [rx, tx, p]; then the departure zenith ``theta_t``
    (rad) at the sites. At least one (invalid) path per link.
    """
    from sionna.rt import Receiver

    names = [f"rflocal-rx-{i}" for i in range(first, first + len(positions_m))]
    for name, pos in zip(names, positions_m):
        scene.add(Receiver(name=name, position=[float(v) for v in pos]))
    try:
        # Candidates beyond max_num_paths_per_src are dropped silently; depth 3 with diffraction
        # needs ~80 per receiver and source at 30k samples, so leave ample room.
        paths = solver(scene, max_depth=max_depth, samples_per_src=samples_per_src,
                       max_num_paths_per_src=max(10_000, 500 * len(names)), synthetic_array=True, seed=seed,
                       diffraction=diffraction)
        a_re, a_im = paths.a
        a = (np.asarray(a_re.numpy()) + 1j * np.asarray(a_im.numpy()))[:, 0, :, 0, :]  # [rx, 1, tx, 1, p]
        power = np.abs(a) ** 2
        tau = np.asarray(paths.tau.numpy())  # [rx, tx, p]
        phi = np.asarray(paths.phi_t.numpy())
        theta_r, phi_r = np.asarray(paths.theta_r.numpy()), np.asarray(paths.phi_r.numpy())
        theta_t = np.asarray(paths.theta_t.numpy())
        valid = np.asarray(paths.valid.numpy()).astype(bool)
        inter = np.asarray(paths.interactions.numpy())  # [depth, rx, tx, p]
    finally:
        for name in names:
            scene.remove(name)
    if valid.shape[-1] == 0:  # no path at all in this batch: one invalid placeholder path
        power, tau, phi, valid, a, theta_r, phi_r, theta_t = (
            np.pad(v, [(0, 0)] * (v.ndim - 1) + [(0, 1)]) for v in (power, tau, phi, valid, a, theta_r, phi_r, theta_t))
        inter = np.pad(inter, [(0, 0)] * (inter.ndim - 1) + [(0, 1)])
    return (power, tau, phi, valid, inter), (a, theta_r, phi_r), theta_t


#: Paths within this of the strongest (dB) count as tied with it; the earliest of them is "the strongest".
PATH_TIE_DB = 1e-3
#: Tied paths within this of the earliest delay (s) arrive together (mirror images in a symmetric street have
#: equal delays up to the last bits too); among those the smallest azimuth in [0, 2 pi) wins.
PATH_TIE_S = 1e-12


def strongest_path(power: np.ndarray, tau: np.ndarray, valid: np.ndarray, phi: np.ndarray | None = None) -> np.ndarray:
    """Index [...] of each link's strongest path (``power``, ``tau``, ``valid``, azimuth ``phi`` rad [..., paths]).

    Dr.Jit sums a path's contributions in parallel, so two paths of equal power (a symmetric street)
    differ in the last bits from run to run and a plain argmax flips between them: their AoAs can be
    tens of degrees apart. Paths within ``PATH_TIE_DB`` of the maximum are tied, and the earliest wins;
    two mirror-image paths also arrive together (within ``PATH_TIE_S``), so among those the smallest
    azimuth wins (with ``phi``; without it, the earliest by the last bits).
    """
    with np.errstate(divide="ignore"):
        db = np.where(valid & (power > 0), 10.0 * np.log10(np.where(power > 0, power, 1.0)), -np.inf)
    best = db.max(-1, keepdims=True)
    tied = valid & (db >= best - PATH_TIE_DB)
    t = np.where(tied, tau, np.inf)
    if phi is None:
        return t.argmin(-1)
    together = tied & (t <= t.min(-1, keepdims=True) + PATH_TIE_S)
    # a link without a valid path: every key inf, argmin 0 (a harmless index, as before)
    return np.where(together, np.mod(phi, 2 * np.pi), np.inf).argmin(-1)


def _link_features(
    power: np.ndarray, tau: np.ndarray, phi: np.ndarray, valid: np.ndarray, inter: np.ndarray,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-link ToA, AoA, delay spread and path gain [rx, tx] (NaN without a path), and the LoS flag."""
    from sionna.rt.constants import InteractionType

    power = np.where(valid, power, 0.0)
    has = valid.any(-1)
    total = power.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        first = np.where(valid, tau, np.inf).min(-1)
        strongest = strongest_path(power, tau, valid, phi)
        phi_best = np.take_along_axis(phi, strongest[..., None], -1)[..., 0]
        mean_tau = (power * tau).sum(-1) / total
        spread = np.sqrt(np.maximum((power * (tau - mean_tau[..., None]) ** 2).sum(-1) / total, 0.0))
        direct = (valid & (inter == InteractionType.NONE).all(0)).any(-1)
        features = {
            "toa_ns": np.where(has, first * 1e9, np.nan),
            "aoa_deg": np.where(has, np.mod(90.0 - np.degrees(phi_best), 360.0), np.nan),
            "delay_spread_ns": np.where(has, spread * 1e9, np.nan),
            "path_gain_db": np.where(has & (total > 0), 10 * np.log10(total), np.nan),
        }
    return features, np.where(has, direct.astype(np.int8), -1)
