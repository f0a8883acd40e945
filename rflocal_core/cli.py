"""Command line: ``python -m rflocal_core ...`` (also installed as ``rflocal``).

Every command prints one JSON object (or list) on stdout. Bad input exits with
status 2 and a one-line message on stderr; a backend that cannot run exits with 3.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rflocal_core import serving
from rflocal_core.errors import BackendUnavailableError, RFLocalInputError


class _Parser(argparse.ArgumentParser):
    """Exits 2 with one clean line; adds its config flags only when it parses or prints help.

    The flags of a subcommand are derived from its config dataclasses (:mod:`rflocal_core.options`),
    whose modules import numpy, shapely or torch: ``flags`` (a function adding them) runs when
    this subcommand is the one used, so ``rflocal scene list`` does not import torch.
    """

    def __init__(self, *args: Any, flags: Callable[[argparse.ArgumentParser], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._flags = flags

    def _add_flags(self) -> None:
        flags, self._flags = self._flags, None
        if flags is not None:
            flags(self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._add_flags()
        if args is not None:
            args = _attach_negative_values(list(args))
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._add_flags()
        return super().format_usage()

    def format_help(self) -> str:
        self._add_flags()
        return super().format_help()

    def error(self, message: str) -> None:  # argparse's own exit 2, one clean line
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _add_scene_parsers(sub: Any) -> None:
    scene = sub.add_parser("scene", help="build, list, show and delete scenes")
    scene_sub = scene.add_subparsers(dest="scene_cmd", required=True, parser_class=_Parser)

    build = scene_sub.add_parser("build", help="build a scene into workspace/scenes/NAME", flags=_scene_build_flags)
    src = build.add_mutually_exclusive_group(required=True)
    src.add_argument("--procedural", action="store_true", help="a procedural city (offline)")
    src.add_argument("--osm-file", metavar="PATH", help="an .osm XML extract")
    src.add_argument("--geojson", metavar="PATH", help="a GeoJSON FeatureCollection of footprints")
    src.add_argument("--bbox", metavar="S,W,N,E", help="download buildings in this box (needs internet)")
    build.add_argument("--name", required=True)
    build.add_argument("--origin", metavar="LAT,LON", help="geographic centre of a procedural city")
    build.add_argument("--sites-file", metavar="JSON", help="custom sites: a JSON list of objects")

    imp = scene_sub.add_parser("import", help="import a Sionna / Mitsuba scene (XML + meshes) as workspace/scenes/NAME",
                               flags=_scene_import_flags)
    imp.add_argument("xml", nargs="?", metavar="SCENE.xml", help="the scene file (its meshes beside it)")
    imp.add_argument("--bundled", metavar="SCENE", help="a scene shipped with Sionna RT instead (e.g. munich)")
    imp.add_argument("--name", required=True)
    imp.add_argument("--origin", metavar="LAT,LON", help="geographic position of the scene's (0, 0) "
                     "(default: the file's, else scene metres only)")
    imp.add_argument("--sites-file", metavar="JSON", help="custom sites: a JSON list of objects")

    tiles = scene_sub.add_parser("tiles", help="build many scene tiles of different morphology for one dataset "
                                 "(procedural cities, OSM extracts, Sionna scenes); prints their names",
                                 flags=_scene_tiles_flags)
    tiles.add_argument("--osm", action="append", default=[], metavar="PATH",
                       help="an .osm file, or a folder whose .osm files each become a tile (repeatable)")
    tiles.add_argument("--bundled", action="append", default=[], metavar="SCENE",
                       help="a scene shipped with Sionna RT as a tile, e.g. munich (repeatable)")
    tiles.add_argument("--generate", metavar="DATASET",
                       help="then generate dataset DATASET over every tile, the held-out ones as test_unseen")
    tiles.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="a dataset option for --generate (repeatable), e.g. cell_size_m=4 samples_per_scene=1500")

    scene_sub.add_parser("list", help="list scenes")
    show = scene_sub.add_parser("show", help="print a scene's scene.json")
    show.add_argument("name")
    delete = scene_sub.add_parser("delete", help="delete a scene")
    delete.add_argument("name")


def _scene_build_flags(parser: argparse.ArgumentParser) -> None:
    """The option flags of ``scene build``: scene, procedural city, materials and sites (one ``--seed`` for all)."""
    from rflocal_core.options import add_flags
    from rflocal_core.scene import MaterialConfig, ProceduralConfig, SceneConfig, SiteConfig

    for cls in (SceneConfig, ProceduralConfig, MaterialConfig, SiteConfig):
        add_flags(parser.add_argument_group(_GROUPS[cls.__name__]), cls)


def _scene_import_flags(parser: argparse.ArgumentParser) -> None:
    """The option flags of ``scene import``: import and sites (one ``--seed`` for both)."""
    from rflocal_core.options import add_flags
    from rflocal_core.scene import SiteConfig
    from rflocal_core.scene.importer import SceneImportConfig

    for cls in (SceneImportConfig, SiteConfig):
        add_flags(parser.add_argument_group(_GROUPS[cls.__name__]), cls)


def _scene_tiles_flags(parser: argparse.ArgumentParser) -> None:
    """The option flags of ``scene tiles``: the tiles' ranges and the sites of every tile (count and seed drawn)."""
    from rflocal_core.options import add_flags
    from rflocal_core.scene import SiteConfig
    from rflocal_core.scene.tiles import TilesConfig

    add_flags(parser.add_argument_group(_GROUPS["TilesConfig"]), TilesConfig)
    add_flags(parser.add_argument_group(_GROUPS["SiteConfig"]), SiteConfig, skip=("count", "seed"))


def _track_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of ``predict --track``: the tracker's options."""
    from rflocal_core.options import add_flags
    from rflocal_core.tracking import TrackConfig

    add_flags(parser.add_argument_group(_GROUPS["TrackConfig"]), TrackConfig)


#: Titles of the flag groups in ``--help``, by config class.
_GROUPS = {"SceneConfig": "scene", "ProceduralConfig": "procedural city (--procedural)",
           "MaterialConfig": "materials", "SiteConfig": "sites", "SceneImportConfig": "import",
           "GenerationConfig": "dataset", "ExecutorConfig": "executor (radio maps and path batches on Ray)",
           "TilesConfig": "tiles (procedural ranges: MIN,MAX)",
           "TrainConfig": "network training (override --train-config)",
           "AutoConfig": "model selection (--model auto; its budget is --max-minutes)",
           "LaunchConfig": "several training processes (DistributedDataParallel; or start under torchrun)",
           "TrackConfig": "tracking over time (--track; samples that carry a sequence id and t_s)"}


def _add_data_parsers(sub: Any) -> None:
    data = sub.add_parser("data", help="generate, list, show, delete, export and import datasets")
    data_sub = data.add_subparsers(dest="data_cmd", required=True, parser_class=_Parser)
    gen = data_sub.add_parser("generate", help="ray-trace scenes and synthesize a measurement dataset",
                              flags=_generate_flags)
    gen.add_argument("--scene", action="append", required=True, help="scene name (repeat for several)")
    gen.add_argument("--name", required=True, help="dataset name")
    gen.add_argument("--unseen", action="append", default=[], help="scene held out as test_unseen")
    gen.add_argument("--restart", action="store_true", help="discard an interrupted run instead of resuming")
    gen.add_argument("--out", default=None, metavar="FOLDER_OR_URL",
                     help="write OUT/NAME instead of the workspace: a folder, or an fsspec URL (s3://bucket/datasets) "
                     "that every Ray worker sees")
    gen.add_argument("--like", default=None, metavar="DATASET", help="take the shadowing, noise, quantization and "
                     "sensitivity from the measurement model fitted on DATASET (see data fit-noise); flags given win")
    data_sub.add_parser("list", help="list datasets")
    show = data_sub.add_parser("show", help="print a dataset's attributes")
    show.add_argument("name")
    delete = data_sub.add_parser("delete", help="delete a dataset")
    delete.add_argument("name")
    delete.add_argument("--partial", action="store_true", help="delete an interrupted generation")
    export = data_sub.add_parser("export", help="write a split of a dataset as an rflocal-measurements/1 file")
    export.add_argument("--dataset", required=True, help="dataset name")
    export.add_argument("--split", default="test", help="train, val, test or test_unseen")
    export.add_argument("--out", required=True, metavar="FILE.json", help="file to write (atomically)")
    export.add_argument("--limit", type=int, default=None, help="export only the first N samples of the split")
    export.add_argument("--scene", default=None, help="export this scene's samples (needed for multi-scene splits)")
    export.add_argument("--sequences", choices=("per-report", "history"), default=None,
                        help="moving samples as sequences for predict --track: one sample per report time with its "
                             "truth (per-report: that time's reports; history: the reports so far)")
    imp = data_sub.add_parser("import", help="turn a measurement file or table into a dataset (no radio maps)",
                              flags=_data_import_flags)
    imp.add_argument("file", metavar="FILE", help="an rflocal-measurements/1 (or survey) .json file, or a .csv, .tsv "
                     "or .parquet / .xlsx table with one row per measurement")
    imp.add_argument("--name", required=True, help="dataset name")
    imp.add_argument("--split-fractions", default="0.8,0.1,0.1", metavar="TRAIN,VAL,TEST",
                     help="fractions of the samples with truth")
    imp.add_argument("--seed", type=int, default=0, help="seed of the split shuffle")
    imp.add_argument("--scene", default=None, help="workspace scene whose frame to use (default: the file's)")
    imp.add_argument("--strict", action="store_true",
                     help="refuse a file with GPS / RSS sentinels, outliers or duplicate ids instead of dropping them")
    imp.add_argument("--min-reports", type=int, default=1, help="drop samples left with fewer reports after cleaning")
    fit = data_sub.add_parser("fit-noise", help="fit the measurement model of a dataset with known node and true "
                              "positions: path loss, shadowing sigma and correlation distance, floor, quantization",
                              flags=_fit_noise_flags)
    fit.add_argument("--dataset", required=True, help="dataset name (e.g. an imported real set)")
    fit.add_argument("--out", default=None, metavar="DIR", help="also write DIR/noise_fit.json (atomically)")


def _generate_flags(parser: argparse.ArgumentParser) -> None:
    """The option flags of ``data generate`` (``--no-diffraction`` turns it off in maps and paths)."""
    from rflocal_core.cluster import ExecutorConfig
    from rflocal_core.dataset import GenerationConfig
    from rflocal_core.options import add_flags

    add_flags(parser.add_argument_group(_GROUPS["GenerationConfig"]), GenerationConfig)
    add_flags(parser.add_argument_group(_GROUPS["ExecutorConfig"]), ExecutorConfig)


def _fit_noise_flags(parser: argparse.ArgumentParser) -> None:
    from rflocal_core.dataset.noisefit import NoiseFitConfig
    from rflocal_core.options import add_flags

    add_flags(parser.add_argument_group("fit"), NoiseFitConfig)


def _fit_noise(args: argparse.Namespace) -> Any:
    """``data fit-noise``: the fit as JSON on stdout, its main figures with intervals on stderr."""
    from pathlib import Path

    from rflocal_core.dataset.noisefit import NoiseFitConfig, fit_noise, generation_fields
    from rflocal_core.errors import InvalidInputError
    from rflocal_core.options import flag_values
    from rflocal_core.workspace import atomic_write_text

    fit = fit_noise(args.dataset, NoiseFitConfig(**flag_values(args, NoiseFitConfig)))
    fields, notes = generation_fields(fit)
    print("\n".join([*fit.summary_lines(), f"generate like this: {fields}", *notes, *fit.warnings]), file=sys.stderr)
    if args.out:
        out = fit.to_json() | {"generation_options": fields}
        try:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            atomic_write_text(Path(args.out) / "noise_fit.json", json.dumps(out, indent=2))
        except OSError as exc:
            msg = f"out: cannot write {args.out!r} ({exc.strerror or exc}); expected a writable folder"
            raise InvalidInputError(msg) from None
    return fit


def _data_import_flags(parser: argparse.ArgumentParser) -> None:
    """The block split and table flags of ``data import``, added when it is used (the table help names the column
    keys, whose module imports pandas: ``--help`` of other commands and their error paths should not pay for it)."""
    from rflocal_core.dataset.splits import BLOCK_SPLIT_HELP, SEQUENCE_SPLIT_HELP

    parser.add_argument("--split-block-m", type=float, default=None, metavar="M", help=BLOCK_SPLIT_HELP)
    parser.add_argument("--split-by-sequence", action="store_true", help=SEQUENCE_SPLIT_HELP)
    _add_table_arguments(parser.add_argument_group("tables (.csv, .tsv, .txt, .parquet, .xlsx)"))


def _add_table_arguments(group: Any) -> None:
    from rflocal_core.measurements.columns import (
        COLUMN_KEYS,
        CRS_HELP,
        NODE_PAIRS_HELP,
        SEQUENCE_GAP_HELP,
        TIME_FORMAT_HELP,
    )

    group.add_argument("--columns", action="append", metavar="KEY=COLUMN,...",
                       help=f"which column holds what (repeatable); keys: {', '.join(COLUMN_KEYS)}")
    group.add_argument("--mode", default=None, help="ue (default: the device that measures is located; lat/lon "
                       "are its position) or emitter (lat/lon are a mobile sensor's position)")
    group.add_argument("--group-by", action="append", metavar="COL,...",
                       help="columns whose values identify a sample, when there is no sample id column")
    group.add_argument("--missing", action="append", metavar="VALUE",
                       help="a measurement value meaning 'not received', e.g. -101 (repeatable, or comma-separated)")
    group.add_argument("--nodes", metavar="NODES.csv|xlsx|json", default=None,
                       help="node positions: a table id, lat, lon[, alt_m][, tx_power_dbm] (a table file like the "
                            "measurements', or JSON)")
    group.add_argument("--node-columns", action="append", metavar="COL|GLOB,...",
                       help="a wide table (one row per sample): the columns, by name or glob ('BS *'), that each hold "
                            "one node's value; the node is the column's name (repeatable, or comma-separated)")
    group.add_argument("--node-pairs", action="append", metavar="ID:VALUE,...",
                       help=NODE_PAIRS_HELP + " (repeatable, or comma-separated)")
    group.add_argument("--node-value", default=None, metavar="KEY",
                       help="what the node columns or node pairs of a wide table hold (default rss_dbm)")
    group.add_argument("--crs", default=None, metavar="CRS", help=CRS_HELP)
    group.add_argument("--sheet", default=None, metavar="NAME|N",
                       help="the sheet of an .xlsx workbook to read: its name, or its number from 1 (default: the "
                            "first)")
    group.add_argument("--time-format", default=None, metavar="FORMAT",
                       help=TIME_FORMAT_HELP.replace("%", "%%"))  # argparse formats help with %
    group.add_argument("--sequence-gap-s", default=None, metavar="S", help=SEQUENCE_GAP_HELP)


def _generation_config(args: argparse.Namespace) -> Any:
    from rflocal_core.dataset import GenerationConfig
    from rflocal_core.options import flag_values

    given = flag_values(args, GenerationConfig)
    if "map_diffraction" in given:  # one flag for both
        given["paths_diffraction"] = given["map_diffraction"]
    like: dict[str, Any] = {}
    if getattr(args, "like", None):
        from rflocal_core.dataset.noisefit import NoiseFitConfig, fit_noise, generation_fields

        like, notes = generation_fields(fit_noise(args.like, NoiseFitConfig(bootstrap=0)))
        print("\n".join([f"like {args.like}: {like}", *notes]), file=sys.stderr)
    return GenerationConfig(name=args.name, scenes=tuple(args.scene), unseen_scenes=tuple(args.unseen),
                            **(like | given))


def _export(args: argparse.Namespace) -> dict[str, Any]:
    from rflocal_core.dataset import export_dataset
    from rflocal_core.errors import InvalidInputError
    from rflocal_core.measurements import MAX_MEASUREMENT_FILE_BYTES, dump_measurements

    if args.sequences:
        from rflocal_core.dataset.sequences import export_sequences

        ms = export_sequences(args.dataset, split=args.split, limit=args.limit, scene=args.scene,
                              history=args.sequences == "history")
    else:
        ms = export_dataset(args.dataset, split=args.split, limit=args.limit, scene=args.scene)
    try:
        path = dump_measurements(ms, args.out)
    except OSError as exc:
        msg = f"out: cannot write {args.out!r} ({exc.strerror or exc}); expected a writable file path"
        raise InvalidInputError(msg) from None
    size = path.stat().st_size
    out = {"dataset": args.dataset, "split": args.split, "scene": ms.scene, "mode": ms.mode, "out": str(path),
           "samples": len(ms.samples), "nodes": len(ms.nodes), "reports": sum(len(s.reports) for s in ms.samples),
           "bytes": size}
    if size > MAX_MEASUREMENT_FILE_BYTES:
        out["warning"] = (f"the file is larger than {MAX_MEASUREMENT_FILE_BYTES:,} bytes, the default limit of "
                          "load_measurements; use --limit or pass max_bytes when reading it")
    return out


def _table_options(args: argparse.Namespace, path: str) -> dict[str, Any] | None:
    """``read_table``'s keywords from the table flags when ``path`` is a table (by its suffix); None for a
    JSON file, which must come without them (it names its own nodes, mode and samples)."""
    from pathlib import Path

    from rflocal_core.errors import InvalidInputError
    from rflocal_core.measurements.columns import parse_columns, parse_list
    from rflocal_core.measurements.table import TABLE_SUFFIXES

    name = Path(path).name
    if Path(path).suffix.lower() not in TABLE_SUFFIXES:
        flags = {"--columns": args.columns, "--mode": args.mode, "--group-by": args.group_by,
                 "--missing": args.missing, "--nodes": args.nodes, "--node-columns": args.node_columns,
                 "--node-pairs": args.node_pairs, "--node-value": args.node_value, "--sheet": args.sheet,
                 "--crs": args.crs, "--time-format": args.time_format, "--sequence-gap-s": args.sequence_gap_s}
        given = [flag for flag, value in flags.items() if value is not None]
        if given:
            msg = (f"{given[0]}: applies to tables (.csv, .tsv, .txt, .parquet, .xlsx); {name} is read as "
                   "rflocal-measurements/1 JSON, which names its own nodes, mode and samples")
            raise InvalidInputError(msg)
        return None
    if not args.columns and not args.node_columns and not args.node_pairs:
        msg = (f"--columns: a table needs the column mapping, e.g. --columns node=PCI,lat=latitude,lon=longitude,"
               f"rss_dbm=rsrp (or --node-columns or --node-pairs for a wide table); {name} was not read")
        raise InvalidInputError(msg)
    return {"columns": parse_columns(args.columns) if args.columns else {}, "mode": args.mode or "ue",
            "group_by": parse_list(args.group_by), "missing": parse_list(args.missing), "nodes": args.nodes,
            "node_columns": parse_list(args.node_columns), "node_value": args.node_value or "rss_dbm",
            "node_pairs": parse_list(args.node_pairs), "sheet": args.sheet,
            "crs": args.crs, "time_format": args.time_format, "sequence_gap_s": args.sequence_gap_s}


def _evaluate(args: argparse.Namespace) -> Any:
    """``evaluate``: every figure of a run on a dataset split, with ``--track`` its tracks filtered too."""
    from rflocal_core.infer import evaluate_run
    from rflocal_core.options import flag_values
    from rflocal_core.tracking import TrackConfig

    return evaluate_run(args.run, args.dataset, split=args.split, allow_other_scene=args.allow_other_scene,
                        track=TrackConfig(**flag_values(args, TrackConfig)))


def _import(args: argparse.Namespace) -> Any:
    """``data import``: a JSON measurement file, or a table (chosen by the file's suffix)."""
    from pathlib import Path

    from rflocal_core.dataset import import_measurements
    from rflocal_core.dataset.exchange import parse_split_fractions
    from rflocal_core.errors import InvalidInputError
    from rflocal_core.measurements.table import TABLE_SUFFIXES

    fractions = parse_split_fractions(args.split_fractions)
    common = {"name": args.name, "scene": args.scene, "seed": args.seed, "split_fractions": fractions,
              "strict": args.strict, "min_reports": args.min_reports, "split_block_m": args.split_block_m,
              "split_by_sequence": args.split_by_sequence}
    suffix = Path(args.file).suffix.lower()
    if suffix != ".json" and suffix not in TABLE_SUFFIXES:
        msg = (f"file: expected a .json measurement file or a table ending in {', '.join(TABLE_SUFFIXES)}, "
               f"got {Path(args.file).name!r}")
        raise InvalidInputError(msg)
    table = _table_options(args, args.file)
    if table is None:
        return import_measurements(args.file, **common)
    from rflocal_core.dataset.table_import import import_table

    return import_table(args.file, **table, **common)


def _run_data(args: argparse.Namespace) -> Any:
    from rflocal_core import dataset

    if args.data_cmd == "generate":
        from rflocal_core.cluster import ExecutorConfig
        from rflocal_core.options import flag_values

        config = command_config(args)
        executor = ExecutorConfig(**flag_values(args, ExecutorConfig))
        return dataset.generate_dataset(config, progress=_stderr_progress(every=True), restart=args.restart,
                                        executor=executor, out=args.out)
    if args.data_cmd == "list":
        return dataset.list_datasets()
    if args.data_cmd == "show":
        return dict(dataset.open_dataset(args.name).attrs)
    if args.data_cmd == "export":
        return _export(args)
    if args.data_cmd == "fit-noise":
        return _fit_noise(args)
    if args.data_cmd == "import":
        summary = _import(args)
        _warn_quality(summary.quality)
        return summary
    dataset.delete_dataset(args.name, partial=args.partial)
    return {"deleted": args.name}


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the command line."""
    parser = _Parser(prog="rflocal", description="RFLocal: radio localization workbench (core command line)")
    sub = parser.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    _add_scene_parsers(sub)
    _add_data_parsers(sub)
    sub.add_parser("doctor", help="check the ray-tracing backend and the workspace")
    tr = sub.add_parser("train", help="fit a model on a dataset and save it as a run", flags=_train_flags)
    tr.add_argument("--dataset", required=True)
    tr.add_argument("--model", required=True, help="setnet, heimdall, mapformer, locheatmap, fpnet, fpnet_knn, "
                    "strongest_site, weighted_centroid, log_distance, aoa_triangulation, toa_multilateration, "
                    "tdoa_multilateration, knn, "
                    "map_matching, lgbm, knn_lgbm or ensemble "
                    "(`rflocal models` lists them); auto: train every model that fits the dataset within "
                    "--max-minutes (all together, default 10) and keep the best on the validation split")
    tr.add_argument("--config", metavar="JSON", default=None, help="model configuration as a JSON object")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="model_options",
                    help="a model option, over --config (repeatable; lists as A,B,C; none where allowed); "
                         "`rflocal models MODEL` lists a model's options with their defaults and ranges")
    tr.add_argument("--train-config", metavar="JSON", default=None,
                    help="network training options as a JSON object (see TrainConfig)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--allow-large-extent", action="store_true",
                    help="train on a dataset whose positions span more than the configured limit (50 km)")
    ev = sub.add_parser("evaluate", help="error statistics of a run on a dataset split")
    ev.add_argument("--run", required=True)
    ev.add_argument("--dataset", required=True)
    ev.add_argument("--split", default="test")
    ev.add_argument("--allow-other-scene", action="store_true",
                    help="evaluate even when the dataset is of another place than the run's training data (its "
                    "scene digest, frame or nodes differ); refused without it (exit 2)")
    _track_flags(ev)  # --track: the errors of each track filtered over time too (a dataset that keeps tracks)
    _add_predict_parser(sub)
    _add_export_parser(sub)
    _add_ablate_parser(sub)
    models = sub.add_parser("models", help="list the models, or one model's options (default, range, unit, help)")
    models.add_argument("model", nargs="?", default=None, help="a model name: print its options")
    demo = sub.add_parser("demo", help="the shipped demo models: rebuild them, or install them into the workspace")
    demo_sub = demo.add_subparsers(dest="demo_cmd", required=True, parser_class=_Parser)
    dbuild = demo_sub.add_parser("build", help="rebuild assets/demo from scratch (scene, ray tracing, training)")
    dbuild.add_argument("--samples", type=int, default=8000)
    dbuild.add_argument("--epochs", type=int, default=150)
    dbuild.add_argument("--max-minutes", type=float, default=5.0)
    demo_sub.add_parser("install", help="copy the shipped demo runs into the workspace")
    runs = sub.add_parser("runs", help="list or delete runs")
    runs_sub = runs.add_subparsers(dest="runs_cmd", required=True, parser_class=_Parser)
    runs_sub.add_parser("list", help="list runs")
    rdel = runs_sub.add_parser("delete", help="delete a run")
    rdel.add_argument("run")
    rres = runs_sub.add_parser("resume", help="continue a cancelled or interrupted network run")
    rres.add_argument("run")
    rres.add_argument("--max-minutes", type=float, default=None, help="new wall-clock budget for the whole run")
    rcal = runs_sub.add_parser("calibrate", help="fit a run's sigma scale (and power) on its validation split again "
                               "(runs trained before they were kept)")
    rcal.add_argument("run")
    auth = sub.add_parser("auth", help="sign-in of the workbench: make a password hash")
    auth_sub = auth.add_subparsers(dest="auth_cmd", required=True, parser_class=_Parser)
    auth_sub.add_parser("hash", help="read a password from stdin, print its salted hash (for RFLOCAL_PASSWORD_HASH "
                        "or [rflocal] password_hash in .streamlit/secrets.toml)")
    serve = sub.add_parser("serve", help="serve the workbench (Streamlit); refuses a non-loopback address "
                           "without sign-in configured or RFLOCAL_AUTH=none")
    serve.add_argument("--address", default=serving.DEFAULT_ADDRESS,
                       help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=serving.DEFAULT_PORT)
    log = sub.add_parser("audit", help="who started, cancelled or deleted what (workspace/audit.jsonl), oldest first")
    for flag in ("actor", "action", "target"):
        log.add_argument(f"--{flag}", default=None, help=f"only the entries of this {flag}")
    return parser


def _add_ablate_parser(sub: Any) -> None:
    """``ablate``: a study, or ``ablate importance`` (permutation importance of a run)."""
    ab = sub.add_parser("ablate", help="run an ablation study: train and test each variant, print the table; "
                        "'ablate importance --run R': permutation importance of each feature of a run")
    ab.add_argument("action", nargs="?", choices=["importance"], default=None,
                    help="importance: shuffle each feature of --run across the split's samples, print the error added")
    ab.add_argument("--study", default=None, help="features, sparsity, dropout, locheatmap-modes, "
                    "mapformer-physics, feature-layers, map-corruption, map-channels, band-feature, bands, iq or receivers "
                    "(required without an action)")
    ab.add_argument("--dataset", default=None, help="required with --study; importance: default the run's own")
    ab.add_argument("--run", default=None, help="importance: the run")
    ab.add_argument("--split", default=None, help="importance: the split (default test)")
    ab.add_argument("--repeats", type=int, default=None, help="importance: shuffles per feature (default 5)")
    ab.add_argument("--features", default=None, metavar="A,B", help="importance: only these features")
    ab.add_argument("--seeds", type=int, default=1)
    ab.add_argument("--max-minutes-per-variant", type=float, default=None)
    ab.add_argument("--epochs", type=int, default=None, help="networks: maximum epochs per variant")
    ab.add_argument("--variants", default=None, metavar="A,B", help="run only these variants (comma-separated)")
    ab.add_argument("--name", default=None, help="results folder under workspace/ablations")


def _add_predict_parser(sub: Any) -> None:
    pr = sub.add_parser("predict", help="predict the positions of the samples of a measurement file",
                        flags=_predict_flags)
    pr.add_argument("--run", required=True, action="append", help="run id (repeat to compare several)")
    pr.add_argument("--input", required=True, metavar="FILE", help="an rflocal-measurements/1 or survey .json file, "
                    "or a .csv, .tsv, .txt, .parquet or .xlsx table (with --columns, as imported)")
    pr.add_argument("--out", default=None, metavar="predictions.json", help="also write the result here (atomically)")
    pr.add_argument("--strict", action="store_true",
                    help="refuse a file with GPS / RSS sentinels, outliers or duplicate ids instead of dropping them")


def _add_export_parser(sub: Any) -> None:
    ex = sub.add_parser("export", help="export a network run as an ONNX graph, checked against PyTorch on the "
                        "validation split (a baseline is refused, exit 2)")
    ex.add_argument("--run", required=True)
    ex.add_argument("--format", default="onnx", choices=("onnx",), help="the graph format (onnx)")
    ex.add_argument("--out", default=None, metavar="FILE.onnx",
                    help="where to write it (atomically); default the run's model.onnx, which --backend onnxruntime runs")


def _auth_hash() -> dict[str, str]:
    """The salted hash of the password on stdin (asked for without echo on a terminal)."""
    import getpass

    from rflocal_core.access import hash_password

    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\r\n")
    return {"password_hash": hash_password(password)}


def _train_flags(parser: argparse.ArgumentParser) -> None:
    """The TrainConfig flags of ``train``: each given one overrides ``--train-config``."""
    from rflocal_core.options import add_flags
    from rflocal_core.train import TrainConfig

    add_flags(parser.add_argument_group(_GROUPS["TrainConfig"]), TrainConfig)
    from rflocal_core.train.auto import AutoConfig

    add_flags(parser.add_argument_group(_GROUPS["AutoConfig"]), AutoConfig)
    from rflocal_core.train.distributed import LaunchConfig

    add_flags(parser.add_argument_group(_GROUPS["LaunchConfig"]), LaunchConfig)


def train_configs(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model and training options a parsed ``train`` runs with: ``--set`` over ``--config``, flags over
    ``--train-config``; each value checked against its option (a bad one raises naming field, value and range)."""
    from rflocal_core.models.registry import model_config
    from rflocal_core.options import flag_values
    from rflocal_core.train import TrainConfig
    from rflocal_core.validation import json_object

    config = model_config(args.model, json_object("config", args.config), args.model_options)
    train_config = json_object("train-config", args.train_config) or {}
    train_config.update(flag_values(args, TrainConfig))
    return config, train_config


def _train(args: argparse.Namespace) -> Any:
    from rflocal_core.train import train
    from rflocal_core.train.auto import AUTO_MODEL

    if args.model == AUTO_MODEL:
        return _train_auto(args)
    config, train_config = train_configs(args)
    return train(args.dataset, args.model, model_config=config, train_config=train_config, seed=args.seed,
                 progress=_stderr_progress(), allow_large_extent=args.allow_large_extent)


def _train_auto(args: argparse.Namespace) -> Any:
    """``train --model auto``: :func:`~rflocal_core.train.auto.auto_train`; ``--max-minutes`` is the whole budget,
    the other training flags go to every network candidate."""
    from rflocal_core.errors import InvalidInputError
    from rflocal_core.options import flag_values
    from rflocal_core.train import TrainConfig
    from rflocal_core.train.auto import AutoConfig, auto_train
    from rflocal_core.validation import json_object

    if args.config is not None or args.model_options:
        msg = ("model: --config and --set are options of one model; --model auto trains each candidate with its "
               "defaults (train the chosen model again with options to tune it)")
        raise InvalidInputError(msg)
    train_config = json_object("train-config", args.train_config) or {}
    train_config.update(flag_values(args, TrainConfig))
    budget = train_config.pop("max_minutes", None)
    auto = {**flag_values(args, AutoConfig), **({} if budget is None else {"max_minutes": budget})}
    return auto_train(args.dataset, config=auto, train_config=train_config, seed=args.seed,
                      progress=_stderr_progress(), allow_large_extent=args.allow_large_extent)


def _launch_ranks(args: argparse.Namespace, argv: Sequence[str]) -> int | None:
    """``train --nproc N`` (N > 1): run this command as N DDP ranks through torchrun's launcher and
    return its exit status; None when this process trains by itself."""
    from rflocal_core.errors import InvalidInputError
    from rflocal_core.models.registry import NETWORKS
    from rflocal_core.options import flag_values
    from rflocal_core.train import distributed

    nproc = distributed.LaunchConfig(**flag_values(args, distributed.LaunchConfig)).nproc
    if distributed.launched() and args.model not in NETWORKS:
        msg = (f"model: under torchrun, train trains one network with DDP ({', '.join(NETWORKS)}); {args.model!r} "
               "is not one: run it without torchrun")
        raise InvalidInputError(msg)
    if nproc == 1:
        return None
    if distributed.launched():
        msg = f"nproc: --nproc {nproc} starts torchrun itself; under torchrun leave it out (--nproc-per-node sets it)"
        raise InvalidInputError(msg)
    if args.model not in NETWORKS:
        msg = (f"nproc: --nproc {nproc} trains one network with DDP ({', '.join(NETWORKS)}); "
               f"{args.model!r} is not one: leave --nproc out")
        raise InvalidInputError(msg)
    return distributed.launch(distributed.without_nproc(argv), nproc)


def _is_rank_zero() -> bool:
    """Whether this process prints the result: always, except a torchrun rank other than 0."""
    import os

    return os.environ.get("RANK", "0") in ("", "0")


#: Seconds a DDP rank other than 0 waits before exiting on an input error: every rank reads the same
#: inputs, so rank 0 meets the same error; the launcher stops the others at the first failure, and when
#: that is rank 0's it shows rank 0's line once (a loaded machine otherwise let rank 1 exit first, rank 0
#: be killed after printing, and the launcher add rank 1's copy).
RANK_ERROR_GRACE_S = 10.0


def _let_rank_zero_fail_first() -> None:
    import time

    if not _is_rank_zero():
        time.sleep(RANK_ERROR_GRACE_S)


def _models(args: argparse.Namespace) -> Any:
    """``models``: every model's name and kind, or (``models NAME``) one model's options."""
    from rflocal_core.models.registry import describe_model
    from rflocal_core.train import models

    if args.model is not None:
        return describe_model(args.model)
    return [{key: value for key, value in describe_model(name).items() if key != "options"} for name in models()]


def _predict_flags(parser: argparse.ArgumentParser) -> None:
    from rflocal_core.models.onnx_export import PredictOptions
    from rflocal_core.options import add_flags

    add_flags(parser, PredictOptions)
    _track_flags(parser)  # here, not when the parser is built: the tracker's module imports the dataset package
    _add_table_arguments(parser.add_argument_group("tables (.csv, .tsv, .txt, .parquet, .xlsx): the import's "
                                                   "mapping"))


def _importance(args: argparse.Namespace) -> Any:
    """``ablate importance``: permutation importance of ``--run``'s features."""
    from rflocal_core.errors import InvalidInputError
    from rflocal_core.importance import permutation_importance

    if args.run is None:
        msg = "run: 'ablate importance' needs --run RUN_ID"
        raise InvalidInputError(msg)
    features = [f.strip() for f in args.features.split(",") if f.strip()] if args.features else None
    given = {k: v for k, v in (("split", args.split), ("repeats", args.repeats)) if v is not None}  # else the core's
    return permutation_importance(args.run, dataset=args.dataset, features=features, progress=_stderr_progress(),
                                  **given)


def _predict(args: argparse.Namespace) -> dict[str, Any]:
    from pathlib import Path

    from rflocal_core.errors import InvalidInputError
    from rflocal_core.infer.track import predict_tracked_file
    from rflocal_core.models.onnx_export import PredictOptions
    from rflocal_core.options import flag_values
    from rflocal_core.tracking import TrackConfig
    from rflocal_core.workspace import atomic_write_text

    track = TrackConfig(**flag_values(args, TrackConfig))
    options = PredictOptions(**flag_values(args, PredictOptions))
    result = predict_tracked_file(args.run, args.input, track, strict=args.strict, backend=options.backend,
                                  table=_table_options(args, args.input))
    quality = result.file.quality
    _warn_quality(quality)
    for run in result.runs:
        for bad in run.bad_samples:
            print(f"warning: {run.run_id}: sample {bad.id!r} not predicted: {bad.message}", file=sys.stderr)
        if not run.predictions:
            first = run.bad_samples[0].message if run.bad_samples else quality.summary()
            msg = f"input: none of the samples of {args.input!r} could be predicted by {run.run_id!r} ({first})"
            raise InvalidInputError(msg)
    out = result.to_json()
    if len(result.runs) == 1:
        out = {**result.runs[0].to_json(), "quality": quality.to_dict()}
    if args.out:
        try:
            atomic_write_text(Path(args.out), json.dumps(out, indent=2))
        except OSError as exc:
            msg = f"out: cannot write {args.out!r} ({exc.strerror or exc}); expected a writable file path"
            raise InvalidInputError(msg) from None
    return out


def _warn_quality(quality: Any) -> None:
    """One warning line on stderr per reason the quality checks (a ``QualityReport``) dropped something for."""
    for reason, issue in quality.issues.items():
        if not issue.count:
            continue
        ids = issue.ids
        listed = f" ({', '.join(repr(i) for i in ids)}{', ...' if issue.count > len(ids) else ''})" if ids else ""
        print(f"warning: quality: dropped {issue.count} {issue.unit.replace('_', ' ')}{listed}: {reason}, "
              f"{issue.what}; first: {issue.first}", file=sys.stderr)


def _stderr_progress(*, every: bool = False) -> Any:
    """A progress callback that prints to stderr (stdout stays pure JSON) each new stage text
    (``every``), or each new stage but epochs only when validated, with the time left once known."""
    import time

    from rflocal_core.progress import EtaEstimator, Step

    last = {"stage": None}
    estimator = EtaEstimator()

    def report(stage: str, fraction: float, *, step: Step | None = None) -> None:
        now = time.monotonic()
        estimator.update(stage, step, now)
        new = stage != last["stage"]
        last["stage"] = stage
        if new and (every or not stage.startswith("epoch")) or "val median" in stage:
            eta = estimator.estimate(now)
            tail = f" ({eta.text})" if eta is not None else ""
            print(f"[{100 * fraction:5.1f}%] {stage}{tail}", file=sys.stderr, flush=True)

    return report


def _site_config(args: argparse.Namespace, seed: dict[str, int]) -> Any:
    """The :class:`SiteConfig` of the site options (``--sites-file`` implies placement custom)."""
    from rflocal_core.errors import InvalidInputError
    from rflocal_core.options import flag_values
    from rflocal_core.scene import CustomSite, SiteConfig

    given = flag_values(args, SiteConfig)
    if args.sites_file:
        try:
            with open(args.sites_file, encoding="utf-8") as fh:
                rows = json.load(fh)
        except (OSError, json.JSONDecodeError) as exc:
            msg = f"sites_file: cannot read {args.sites_file!r} as JSON ({exc})"
            raise InvalidInputError(msg) from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            msg = f"sites_file: expected a JSON list of objects, got {type(rows).__name__}"
            raise InvalidInputError(msg)
        given["custom"] = tuple(CustomSite.from_dict(r, index=i) for i, r in enumerate(rows))
        given["placement"] = "custom"
    return SiteConfig(**{**seed, **given})  # --site-seed wins over --seed


def _origin(args: argparse.Namespace) -> dict[str, float]:
    """``{"origin_lat": ..., "origin_lon": ...}`` from ``--origin LAT,LON``, or an empty dict."""
    from rflocal_core.scene.importer import parse_origin

    origin = parse_origin(args.origin)
    return {} if origin is None else {"origin_lat": origin[0], "origin_lon": origin[1]}


def _scene_config(args: argparse.Namespace) -> Any:
    from rflocal_core.geo import BBox
    from rflocal_core.options import flag_values
    from rflocal_core.scene import MaterialConfig, ProceduralConfig, SceneConfig

    given = flag_values(args, SceneConfig)
    seed = {"seed": given["seed"]} if "seed" in given else {}  # --seed: city, materials and sites
    common = {"name": args.name, "materials": MaterialConfig(**flag_values(args, MaterialConfig)),
              "sites": _site_config(args, seed), **given, **_origin(args)}
    if args.procedural:
        proc = ProceduralConfig(**flag_values(args, ProceduralConfig), **seed)
        return SceneConfig(source="procedural", procedural=proc, **common)
    if args.osm_file:
        return SceneConfig(source="osm_file", path=args.osm_file, **common)
    if args.geojson:
        return SceneConfig(source="geojson_file", path=args.geojson, **common)
    return SceneConfig(source="bbox", bbox=BBox.parse(args.bbox), **common)


def _scene_import_config(args: argparse.Namespace) -> Any:
    from rflocal_core.errors import InvalidInputError
    from rflocal_core.options import flag_values
    from rflocal_core.scene.importer import SceneImportConfig, bundled_scenes

    if (args.xml is None) == (args.bundled is None):
        msg = f"xml: expected a scene file or --bundled NAME (one of them), got {args.xml!r} and {args.bundled!r}"
        raise InvalidInputError(msg)
    path = args.xml
    if args.bundled is not None:
        known = bundled_scenes()
        if args.bundled not in known:
            msg = f"bundled: Sionna RT ships no scene {args.bundled!r}; expected one of {', '.join(known)}"
            raise InvalidInputError(msg)
        path = known[args.bundled]
    given = flag_values(args, SceneImportConfig)
    seed = {"seed": given["seed"]} if "seed" in given else {}  # --seed: recorded, and site placement
    return SceneImportConfig(name=args.name, path=path, sites=_site_config(args, seed), **given, **_origin(args))


def _tiles_config(args: argparse.Namespace) -> Any:
    from rflocal_core.options import flag_values
    from rflocal_core.scene import SiteConfig
    from rflocal_core.scene.tiles import TilesConfig

    return TilesConfig(**flag_values(args, TilesConfig), osm=tuple(args.osm), bundled=tuple(args.bundled),
                       sites=SiteConfig(**flag_values(args, SiteConfig)))


def _tiles(args: argparse.Namespace) -> Any:
    """``scene tiles``: build the tiles; with ``--generate``, a dataset over them (tiles and dataset printed)."""
    from rflocal_core.dataset import GenerationConfig, generate_dataset
    from rflocal_core.errors import InvalidInputError
    from rflocal_core.options import parse_assignments
    from rflocal_core.scene.tiles import build_tiles

    if args.set and not args.generate:
        msg = f"--set: dataset options apply with --generate DATASET, got {args.set[0]!r} without it"
        raise InvalidInputError(msg)
    given = parse_assignments(GenerationConfig, args.set)  # checked before anything is built
    result = build_tiles(command_config(args), progress=_stderr_progress())
    if not args.generate:
        return result
    config = GenerationConfig(name=args.generate, scenes=result.scenes, unseen_scenes=result.unseen, **given)
    return {**result.to_json(), "dataset": generate_dataset(config, progress=_stderr_progress(every=True))}


def command_config(args: argparse.Namespace) -> Any:
    """The configuration a parsed ``scene build``, ``scene import``, ``scene tiles`` or ``data generate`` runs with.

    Options not given on the command line keep their field defaults, so
    ``command_config(build_parser().parse_args([...]))`` equals the API's default config.
    """
    if args.cmd == "data" and args.data_cmd == "generate":
        return _generation_config(args)
    if args.cmd == "scene" and args.scene_cmd == "build":
        return _scene_config(args)
    if args.cmd == "scene" and args.scene_cmd == "import":
        return _scene_import_config(args)
    if args.cmd == "scene" and args.scene_cmd == "tiles":
        return _tiles_config(args)
    msg = f"command_config: no configuration for {args.cmd!r}"
    raise ValueError(msg)


def _run(args: argparse.Namespace) -> Any:
    if args.cmd == "serve":
        serving.serve(args.address, args.port)  # replaces this process with the server; returns only by raising
    if args.cmd == "doctor":
        return _doctor()
    if args.cmd == "data":
        return _run_data(args)
    if args.cmd == "train":
        return _train(args)
    if args.cmd == "models":
        return _models(args)
    if args.cmd == "evaluate":
        return _evaluate(args)
    if args.cmd == "ablate" and args.action == "importance":
        return _importance(args)
    if args.cmd == "ablate":
        from rflocal_core.ablate import run_study
        from rflocal_core.errors import InvalidInputError

        for flag in ("study", "dataset"):
            if getattr(args, flag) is None:
                msg = f"{flag}: --{flag} is required to run a study (or use 'ablate importance --run R')"
                raise InvalidInputError(msg)
        variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
        return run_study(args.study, args.dataset, seeds=args.seeds, epochs=args.epochs, variants=variants,
                         max_minutes_per_variant=args.max_minutes_per_variant, name=args.name,
                         progress=_stderr_progress())
    if args.cmd == "demo":
        from rflocal_core import demo

        if args.demo_cmd == "install":
            return {"installed": demo.install_demo(), "runs": list(demo.DEMO_RUNS), "dataset": demo.DEMO_TEST_DATASET}
        return demo.build_demo(samples=args.samples, epochs=args.epochs, max_minutes=args.max_minutes,
                               progress=_stderr_progress())
    if args.cmd == "predict":
        return _predict(args)
    if args.cmd == "export":
        from rflocal_core.infer import export_onnx

        return export_onnx(args.run, out=args.out)
    if args.cmd == "auth":
        return _auth_hash()
    if args.cmd == "audit":
        from rflocal_core.audit import read_audit

        return read_audit(actor=args.actor, action=args.action, target=args.target)
    if args.cmd == "runs":
        from rflocal_core.train import delete_run, list_runs

        if args.runs_cmd == "list":
            return list_runs()
        if args.runs_cmd == "resume":
            from rflocal_core.train import resume

            return resume(args.run, max_minutes=args.max_minutes, progress=_stderr_progress())
        if args.runs_cmd == "calibrate":
            from rflocal_core.infer import calibrate_run

            return calibrate_run(args.run)
        delete_run(args.run)
        return {"deleted": args.run}
    from rflocal_core import scene

    if args.scene_cmd == "build":
        return scene.build_scene(command_config(args))
    if args.scene_cmd == "import":
        from rflocal_core.scene.importer import import_scene

        return import_scene(command_config(args))
    if args.scene_cmd == "tiles":
        return _tiles(args)
    if args.scene_cmd == "list":
        return scene.list_scenes()
    if args.scene_cmd == "show":
        return scene.load_scene_meta(args.name)
    scene.delete_scene(args.name)
    return {"deleted": args.name}


def _doctor() -> dict[str, Any]:
    from rflocal_core import backend, settings

    llvm_path, llvm_major = backend.find_llvm()
    info = backend.ensure_backend()
    import mitsuba as mi
    import sionna.rt

    return {
        "variant": info.variant,
        "device": info.device,
        "llvm_library": llvm_path,
        "llvm_major": llvm_major,
        "sionna_rt": sionna.rt.__version__,
        "mitsuba": mi.__version__,
        "workspace": str(settings.workspace_dir()),
    }


#: Options whose value is a comma-separated list of numbers that may start with a minus sign
#: (coordinates, and "not received" codes such as --missing -101,-200).
_COORD_OPTIONS = ("--bbox", "--origin", "--missing")


def _attach_negative_values(argv: Sequence[str]) -> list[str]:
    """Rewrite ``--bbox -34.6,...`` as ``--bbox=-34.6,...`` (and any ``--flag -5,20``).

    argparse takes a value that starts with '-' and is not a single number for an option
    and fails with 'expected one argument'; southern latitudes (and western longitudes
    given first) start so.
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        negative = i + 1 < len(argv) and re.match(r"-\.?\d", argv[i + 1])
        # also any MIN,MAX pair that starts below zero (--emitter-power-dbm -5,20)
        if negative and (argv[i] in _COORD_OPTIONS or argv[i].startswith("--") and "," in argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    argv = _attach_negative_values(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    try:
        status = _launch_ranks(args, argv) if args.cmd == "train" else None
        if status is not None:
            return status
        result = _run(args)
    except RFLocalInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        _let_rank_zero_fail_first()
        return 2
    except BackendUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    from rflocal_core.results import JsonResult

    if not _is_rank_zero():  # every rank returns the same result; one prints it
        return 0
    print(json.dumps(result.to_json() if isinstance(result, JsonResult) else result, indent=2))
    return 0
