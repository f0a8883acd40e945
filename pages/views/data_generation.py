"""Data Generation: ray-traced radio maps and measurement datasets, generated in the background."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from pages.views.plots import (
    fit_to_extent,
    not_heard_figure,
    radio_map_figure,
    residual_histogram_figure,
    variogram_figure,
)
from pages.views.refresh import job_line, rerun_when_a_job_ends
from pages.views.signin import current_user
from pages.views.table_mapping import table_mapping, table_source
from pages.views.widgets import choice, error_text, multi, number, option_widgets, text, toggle, upload_limit_mib
from rflocal_core import dataset as ds
from rflocal_core.access import allowed
from rflocal_core.cluster import ExecutorConfig
from rflocal_core.dataset.noisefit import NoiseFit, NoiseFitConfig, fit_noise, generation_fields
from rflocal_core.dataset.splits import BLOCK_RANGE_M, BLOCK_SPLIT_HELP, SEQUENCE_SPLIT_HELP
from rflocal_core.dataset.table_import import import_table
from rflocal_core.dataset.view import PHY_HISTOGRAMS, dataset_overview, split_rows, split_text, stage_rows
from rflocal_core.errors import RFLocalInputError
from rflocal_core.jobs import REGISTRY
from rflocal_core.measurements import MAX_MEASUREMENT_FILE_BYTES
from rflocal_core.measurements.table import MAX_TABLE_FILE_BYTES, preview_samples, read_table, table_kind
from rflocal_core.scene import list_scenes

st.title("Data Generation")
st.caption(
    "Ray-trace each scene with Sionna RT, draw target positions and synthesize the reports a network or "
    "sensor array would make (RSS, time of arrival, timing advance, angle of arrival), stored as Zarr."
)

user = current_user()  # passed to every core call that changes the workspace
rerun_when_a_job_ends()  # the Datasets tab lists what a generation writes


def _summary_tables(splits: dict | None, seconds: dict | None = None) -> None:
    """Samples per split and, for a generation, time per stage, as two tables side by side."""
    c = st.columns(2)
    if splits:
        c[0].dataframe(pd.DataFrame(split_rows(splits)), hide_index=True)
    if seconds:
        c[1].dataframe(pd.DataFrame(stage_rows(seconds)), hide_index=True)


tab_gen, tab_import, tab_data = st.tabs(["Generate", "Import measurements", "Datasets"])

with tab_gen:
    scenes = [s["name"] for s in list_scenes()]
    if not scenes:
        st.info("No scenes yet: build one on the Scene Builder page first.")
    else:
        chosen = multi(st, "Scenes", scenes, default=scenes[:1], key="dg_scenes")
        c = st.columns(4)
        name = text(c[0], "Dataset name", value="dataset", key="dg_name")
        samples = number(c[1], ds.GenerationConfig, "samples_per_scene", key="dg_samples")
        mode = choice(c[2], ds.GenerationConfig, "mode", key="dg_mode", none_label="scene's own")
        seed = number(c[3], ds.GenerationConfig, "seed", key="dg_seed")
        with st.expander("Radio maps"):
            c = st.columns(4)
            cell = number(c[0], ds.GenerationConfig, "cell_size_m", key="dg_cell")
            plane = number(c[1], ds.GenerationConfig, "plane_height_m", key="dg_plane")
            rays = number(c[2], ds.GenerationConfig, "map_samples_per_tx", key="dg_rays")
            diffraction = toggle(c[3], ds.GenerationConfig, "map_diffraction", key="dg_diff")
        with st.expander("Measurements"):
            c = st.columns(4)
            sens = number(c[0], ds.GenerationConfig, "sensitivity_dbm", key="dg_sens")
            min_sites = number(c[1], ds.GenerationConfig, "min_sites", key="dg_min_sites")
            sampling = choice(c[2], ds.GenerationConfig, "sampling", key="dg_sampling")
            timing = toggle(c[3], ds.GenerationConfig, "timing", key="dg_timing")
            c = st.columns(4)
            sigma = number(c[0], ds.GenerationConfig, "shadowing_sigma_db", key="dg_sigma")
            corr = number(c[1], ds.GenerationConfig, "shadowing_corr_m", key="dg_corr")
            toa_noise = number(c[2], ds.GenerationConfig, "toa_noise_ns", key="dg_toa")
            aoa_noise = number(c[3], ds.GenerationConfig, "aoa_noise_deg", key="dg_aoa")
            c = st.columns(4)
            nlos_bias = number(c[0], ds.GenerationConfig, "nlos_bias_mean_ns", key="dg_bias")
            top_k = number(c[1], ds.GenerationConfig, "top_k", key="dg_topk")
            dropout = number(c[2], ds.GenerationConfig, "dropout", key="dg_dropout")
            rss_noise = number(c[3], ds.GenerationConfig, "rss_noise_db", key="dg_rss_noise")
            c = st.columns(4)
            rss_step = number(c[0], ds.GenerationConfig, "rss_quantization_db", key="dg_rss_step")
        with st.expander("Sequences and emitters"):
            c = st.columns(4)
            seq_min = number(c[0], ds.GenerationConfig, "sequence_length", index=0, key="dg_seq_min",
                             label="Reports per sample, min")
            seq_max = number(c[1], ds.GenerationConfig, "sequence_length", index=1, key="dg_seq_max",
                             label="Reports per sample, max")
            motion = choice(c[2], ds.GenerationConfig, "motion", key="dg_motion")
            c = st.columns(4)
            p_min = number(c[0], ds.GenerationConfig, "emitter_power_dbm", index=0, key="dg_pmin",
                           label="Emitter power min (dBm)")
            p_max = number(c[1], ds.GenerationConfig, "emitter_power_dbm", index=1, key="dg_pmax",
                           label="Emitter power max (dBm)")
            unseen = multi(c[2], "Held-out scenes (unseen-city test)", chosen, default=[], key="dg_unseen")
            c = st.columns(4)
            survey = choice(c[0], ds.GenerationConfig, "survey", key="dg_survey")
            drone_alt = number(c[1], ds.GenerationConfig, "drone_altitude_m", key="dg_drone_alt")
            drone_spacing = number(c[2], ds.GenerationConfig, "drone_spacing_m", key="dg_drone_spacing")
            drone_points = number(c[3], ds.GenerationConfig, "drone_points", key="dg_drone_points")
            c = st.columns(4)
            iq = toggle(c[0], ds.GenerationConfig, "iq", key="dg_iq")
            iq_waveform = choice(c[1], ds.GenerationConfig, "iq_waveform", key="dg_iq_waveform")
            iq_bandwidth = number(c[2], ds.GenerationConfig, "iq_bandwidth_hz", key="dg_iq_bw")
        with st.expander("Executor (Ray)"):
            st.caption("Where radio maps and path batches run: child processes here, or Ray tasks on a local Ray "
                       "cluster or the one at the address given (its nodes must see this workspace). The data is "
                       "the same on either.")
            executor_values, _ = option_widgets(st, ExecutorConfig, key="dg_exec", columns=3)
        with st.expander("PHY/MAC reports (ue mode, with timing)"):
            c = st.columns(4)
            phy_on = toggle(c[0], ds.GenerationConfig, "phy", key="dg_phy")
            scs = number(c[1], ds.GenerationConfig, "phy_scs_khz", key="dg_phy_scs")
            n_rb = number(c[2], ds.GenerationConfig, "phy_n_rb", key="dg_phy_rb")
            beams = number(c[3], ds.GenerationConfig, "phy_beams", key="dg_phy_beams")
            c = st.columns(4)
            load_min = number(c[0], ds.GenerationConfig, "phy_load", index=0, key="dg_phy_load_min",
                              label="Cell load, min")
            load_max = number(c[1], ds.GenerationConfig, "phy_load", index=1, key="dg_phy_load_max",
                              label="Cell load, max")
            gnb_ant = number(c[2], ds.GenerationConfig, "phy_gnb_antennas", key="dg_phy_gnb")
            ue_ant = number(c[3], ds.GenerationConfig, "phy_ue_antennas", key="dg_phy_ue")
            rrc_period = number(st.columns(4)[0], ds.GenerationConfig, "phy_rrc_period", key="dg_phy_rrc")
        with st.expander("ToA/AoA maps"):
            c = st.columns(4)
            timing_maps = toggle(c[0], ds.GenerationConfig, "timing_maps", key="dg_timing_maps")
            timing_factor = number(c[1], ds.GenerationConfig, "timing_map_factor", key="dg_timing_factor")
        if st.button("Generate dataset", type="primary", key="dg_start"):
            try:
                config = ds.GenerationConfig(
                    name=name, scenes=tuple(chosen), samples_per_scene=int(samples),
                    mode=mode, seed=int(seed), cell_size_m=float(cell),
                    plane_height_m=float(plane), map_samples_per_tx=int(rays), map_diffraction=diffraction,
                    paths_diffraction=diffraction, sensitivity_dbm=float(sens), min_sites=int(min_sites),
                    sampling=sampling, timing=timing, shadowing_sigma_db=float(sigma), shadowing_corr_m=float(corr),
                    rss_noise_db=float(rss_noise), rss_quantization_db=float(rss_step),
                    toa_noise_ns=float(toa_noise), aoa_noise_deg=float(aoa_noise), nlos_bias_mean_ns=float(nlos_bias),
                    top_k=int(top_k), dropout=float(dropout), sequence_length=(int(seq_min), int(seq_max)),
                    motion=motion, emitter_power_dbm=(float(p_min), float(p_max)), unseen_scenes=tuple(unseen),
                    survey=survey, drone_altitude_m=float(drone_alt), drone_spacing_m=float(drone_spacing),
                    drone_points=int(drone_points), phy=phy_on, phy_scs_khz=int(scs), phy_n_rb=int(n_rb),
                    phy_beams=int(beams), phy_load=(float(load_min), float(load_max)),
                    phy_gnb_antennas=int(gnb_ant), phy_ue_antennas=int(ue_ant),
                    phy_rrc_period=int(rrc_period), iq=iq, iq_waveform=iq_waveform,
                    iq_bandwidth_hz=float(iq_bandwidth), timing_maps=timing_maps,
                    timing_map_factor=int(timing_factor),
                )
                config.check_size()  # the cap on samples per job, refused here rather than in the job
                executor = ExecutorConfig(**executor_values)
            except RFLocalInputError as exc:
                st.error(str(exc))
            else:
                try:
                    job = REGISTRY.submit("generate", config.name,
                                          lambda ctx: ds.generate_dataset(config, progress=ctx.progress, user=user,
                                                                          executor=executor),
                                          owner=user.name)
                except RFLocalInputError as exc:  # the job quota: too many jobs running and waiting
                    st.error(str(exc))
                else:
                    st.session_state["dg_job"] = job.id
                    st.success(f"Started generating **{config.name}** in the background." if job.state == "running"
                               else f"Queued **{config.name}**: {job.snapshot()['stage']}.")

    @st.fragment(run_every=1.0)
    def jobs_panel() -> None:
        jobs = REGISTRY.list(kind="generate")
        if not jobs:
            return
        st.subheader("Generation jobs")
        newest_done = next((j.id for j in reversed(jobs) if j.state == "done"), None)
        for job in reversed(jobs):
            snap = job.snapshot()
            cols = st.columns([5, 1])
            cols[0].progress(snap["fraction"], text=job_line(snap))
            if not job.finished and allowed(user, "cancel") and cols[1].button("Cancel", key=f"cancel-{job.id}"):
                job.cancel(user=user)
            if snap["state"] == "failed":
                st.error(f"{snap['label']}: {snap['error']}")
            elif snap["state"] == "cancelled":
                st.warning(f"{snap['label']}: cancelled; run it again with the same settings to resume.")
            elif snap["state"] == "done":
                res = snap["result"]
                resumed = f", resumed: {', '.join(res['resumed'])}" if res.get("resumed") else ""
                # one summary open at a time: the newest; older ones stay one line each
                with st.expander(f"{res['name']}: {res['samples']:,} samples in {snap['elapsed_s']:.0f} s{resumed}",
                                 expanded=job.id == newest_done, icon=":material/check_circle:"):
                    _summary_tables(res["splits"], res["seconds"])

    jobs_panel()



def _phy_histograms(values: dict) -> None:
    """Histograms of the PHY/MAC report fields a dataset holds (ue mode with timing), three a row."""
    shown = [(key, v) for key, v in values.items() if len(v)]
    if not shown:
        return
    st.subheader("PHY/MAC reports")
    for start in range(0, len(shown), 3):
        cols = st.columns(3)
        for col, (key, v) in zip(cols, shown[start:start + 3]):
            integer = v.dtype.kind in "iu"
            fig = px.histogram(x=v, nbins=int(v.max() - v.min() + 1) if integer else 60,
                               labels={"x": PHY_HISTOGRAMS[key]})
            col.plotly_chart(fig, width="stretch", key=f"dg_phy_{key}")


def _show_summary(summary: ds.ImportResult) -> None:
    st.success(f"Imported **{summary.name}**: {summary.samples:,} samples, {summary.nodes:,} nodes.")
    _summary_tables(summary.splits)
    if summary.split is not None:
        by_track = "sequences" in summary.split
        parts = summary.split["sequences" if by_track else "blocks"]
        st.caption(("Split by track: tracks " if by_track else f"Split by squares of {summary.split['block_m']:g} m: ")
                   + ", ".join(f"{parts[k]} to {k}" for k in ("train", "val", "test")))
    quality = summary.quality
    if quality.faulty:
        st.warning(quality.summary())
        st.dataframe(pd.DataFrame(quality.rows()), hide_index=True)
    if summary.table is not None:
        table = summary.table
        st.caption(f"{table.rows:,} rows read, {table.rows_used:,} used, {table.reports:,} reports; "
                   f"nodes of unknown position: {', '.join(table.nodes_unknown_position) or 'none'}")
        if table.issues:
            st.dataframe(pd.DataFrame([{"reason": k, **v} for k, v in table.to_dict()["issues"].items()]),
                         hide_index=True)


def _table_tab(data: bytes, kind: str, import_name: str, frame_scene: str | None, strict: bool,
               split: dict[str, Any]) -> None:
    """The column mapping, a preview of the first samples, and the import of a table (``split``: how to draw the
    splits, ``import_table``'s keywords)."""
    header, sheet = table_source(data, kind, prefix="dg_tab")
    st.caption(f"{kind.upper()} table: {header.rows:,} rows, columns {', '.join(header.columns)}")
    st.dataframe(pd.DataFrame(list(header.preview)), hide_index=True)
    options = {**table_mapping(header, prefix="dg_tab"), "sheet": sheet}
    c = st.columns(2)
    if c[0].button("Preview samples", key="dg_tab_preview"):
        table = read_table(data, kind=kind, **options)
        st.dataframe(pd.DataFrame(preview_samples(table.measurements)), hide_index=True)
        st.caption(f"{table.report.samples:,} samples from {table.report.rows_used:,} of {table.report.rows:,} rows")
        if table.report.issues:
            st.dataframe(pd.DataFrame([{"reason": k, **v} for k, v in table.report.to_dict()["issues"].items()]),
                         hide_index=True)
    if c[1].button("Import", key="dg_import"):
        _show_summary(import_table(data, name=import_name, kind=kind, scene=frame_scene, strict=strict, user=user,
                                   **split, **options))


with tab_import:
    st.markdown(
        "Real measurements become a dataset without radio maps, usable by every model that does not need maps: "
        "the `rflocal-measurements/1` JSON format or the survey format (see the README), or a CSV, TSV, TXT, "
        "Parquet or Excel table with one row per measurement (or one row per sample with one column per node, a "
        "wide table, or with the heard cells in column pairs, a drive-test export), whose columns you map below."
    )
    json_mib, table_mib = upload_limit_mib(MAX_MEASUREMENT_FILE_BYTES), upload_limit_mib(MAX_TABLE_FILE_BYTES)
    upload = st.file_uploader(f"Measurement JSON (at most {json_mib} MB) or table (at most {table_mib} MB)",
                              type=["json", "csv", "tsv", "txt", "parquet", "xlsx"], key="dg_import_file",
                              max_upload_size=max(json_mib, table_mib))
    c = st.columns(5)
    import_name = c[0].text_input("Dataset name", value="imported", key="dg_import_name")
    frame_scene = c[1].selectbox("Scene frame", ["(from the file)", *[s["name"] for s in list_scenes()]],
                                 key="dg_import_scene")
    import_strict = c[2].checkbox("Strict quality", key="dg_import_strict",
                                  help="refuse a file with GPS or RSS sentinels, outliers or duplicate ids instead of "
                                       "dropping those parts (see the README: Quality checks)")
    block_m = c[3].number_input("Split by squares (m)", min_value=0.0, max_value=BLOCK_RANGE_M[1], value=0.0,
                                step=50.0, key="dg_import_block", help=f"{BLOCK_SPLIT_HELP}; 0: by sample")
    by_track = c[4].checkbox("Split by track", key="dg_import_by_track", help=SEQUENCE_SPLIT_HELP)
    split = {"split_block_m": float(block_m) if block_m else None, "split_by_sequence": by_track}
    frame_scene = None if frame_scene == "(from the file)" else frame_scene
    table_kind_ = table_kind(upload.name) if upload is not None else None
    try:
        if table_kind_ is not None:
            _table_tab(upload.getvalue(), table_kind_, import_name, frame_scene, import_strict, split)
        elif st.button("Import", key="dg_import"):
            if upload is None:
                st.error("file: choose a measurement JSON file or a table to upload")
            else:
                _show_summary(ds.import_measurements(upload.getvalue(), name=import_name, scene=frame_scene,
                                                     strict=import_strict, user=user, **split))
    except RFLocalInputError as exc:
        st.error(error_text(exc))

#: Generate-form widget of each option a measurement-model fit sets.
PRESET_KEYS = {"shadowing_sigma_db": "dg_sigma", "shadowing_corr_m": "dg_corr", "rss_noise_db": "dg_rss_noise",
               "rss_quantization_db": "dg_rss_step", "sensitivity_dbm": "dg_sens"}


def _fill_generate_form(values: dict[str, float]) -> None:
    """Button callback (runs before the rerun, so before the Generate form's widgets exist)."""
    for name, value in values.items():
        st.session_state[PRESET_KEYS[name]] = float(value)
    st.session_state["dg_fit_filled"] = values


def _fit_rows(fit: NoiseFit) -> list[dict]:
    return [{"figure": label, "value": round(e.value, 2), "95% low": round(e.lo, 2), "95% high": round(e.hi, 2),
             "unit": unit} for label, e, unit in (
        ("path-loss exponent n", fit.exponent, ""), ("intercept P0 at 1 m", fit.intercept_db, "dB"),
        ("shadowing σ", fit.sigma_db, "dB"), ("correlation distance", fit.corr_m, "m"),
        ("nugget (per-report noise)", fit.nugget_db, "dB"), ("residual σ (all)", fit.residual_sigma_db, "dB"))]


def _show_fit(fit: NoiseFit) -> None:
    unit = f"{fit.block_m:.0f} m squares of samples" if fit.block_m else "samples"
    st.caption(f"{fit.samples:,} samples, {fit.reports:,} reports, {fit.nodes_used} nodes; intervals: bootstrap over "
               f"{unit}, B = {fit.bootstrap}. RSS floor {fit.floor_dbm:.1f} dBm (lowest report), sensitivity "
               f"{fit.sensitivity_dbm:.1f} dBm, quantization step {fit.quantization_db:g} dB.")
    st.dataframe(pd.DataFrame(_fit_rows(fit)), hide_index=True)
    for line in fit.warnings:
        st.warning(line)
    c = st.columns(3)
    c[0].plotly_chart(variogram_figure(fit), width="stretch", key="dg_fit_variogram")
    c[1].plotly_chart(residual_histogram_figure(fit), width="stretch", key="dg_fit_hist")
    c[2].plotly_chart(not_heard_figure(fit), width="stretch", key="dg_fit_not_heard")
    with st.expander("Per node"):
        st.dataframe(pd.DataFrame([n.to_json() for n in fit.nodes]), hide_index=True)
    values, notes = generation_fields(fit)
    st.button("Generate like this dataset", key="dg_fit_like", on_click=_fill_generate_form, args=(values,),
              help="fill the Generate tab's shadowing, noise, resolution and sensitivity with these figures")
    for line in notes:
        st.caption(line)
    if st.session_state.get("dg_fit_filled") == values:
        st.success("The Generate tab's measurement options now hold: "
                   + ", ".join(f"{k} = {v:g}" for k, v in values.items()))


def _noise_panel(name: str) -> None:
    """The measurement model of the open dataset: fitted on request, kept for the session."""
    st.subheader("Measurement model")
    st.caption("Fit the log-distance path loss, the shadowing σ and its correlation distance (variogram of the "
               "residuals), the floor and the RSS resolution from the dataset's reports; needs node and true positions.")
    c = st.columns(3)
    split = choice(c[0], NoiseFitConfig, "split", key="dg_fit_split")
    rounds = number(c[1], NoiseFitConfig, "bootstrap", key="dg_fit_boot")
    if c[2].button("Fit measurement model", key="dg_fit"):
        try:
            with st.spinner("Fitting..."):
                st.session_state["dg_fit_result"] = fit_noise(name, NoiseFitConfig(split=split, bootstrap=int(rounds)))
        except RFLocalInputError as exc:
            st.session_state.pop("dg_fit_result", None)
            st.error(error_text(exc))
    fit = st.session_state.get("dg_fit_result")
    if fit is not None and fit.dataset == name:
        _show_fit(fit)


with tab_data:
    rows = ds.list_datasets()
    if not rows:
        st.info("No datasets yet.")
    else:
        generating = {j.label: j for j in REGISTRY.list(kind="generate") if not j.finished}
        listing = pd.DataFrame([{**r, "scenes": ", ".join(r.get("scenes") or []), "splits": split_text(r.get("splits")),
                                 # a partial folder a job is writing right now is not one to resume
                                 **({"state": f"generating ({generating[r['name']].fraction:.0%})"}
                                    if r["state"].startswith("partial") and r["name"] in generating else {})}
                                for r in rows])
        st.dataframe(listing, hide_index=True)
        complete = [r["name"] for r in rows if r["state"] == "complete"]
        if complete:
            chosen_ds = st.selectbox("Open dataset", complete, key="dg_open")
            try:
                view = dataset_overview(chosen_ds)
            except RFLocalInputError as exc:
                st.error(str(exc))
            else:
                counts = view["attrs"].get("counts", {})
                c = st.columns(4)
                c[0].metric("Samples", counts.get("samples"))
                c[1].metric("Mode", view["attrs"].get("mode"))
                c[2].metric("Sites (max)", counts.get("sites_max"))
                c[3].metric("Reports / sample", f"{counts.get('reports_per_sample_mean', 0):.1f}")
                _summary_tables(counts.get("splits"), view["attrs"].get("seconds"))
                for sc in view["scenes"]:
                    st.subheader(f"Radio maps — {sc['name']}")
                    site = st.selectbox("Site", sc["site_ids"], key=f"dg_site_{sc['name']}")
                    k = sc["site_ids"].index(site)
                    st.plotly_chart(radio_map_figure(sc, k), width="stretch", key=f"dg_map_{sc['name']}")
                    st.caption("Grey with a dark outline: buildings; white: no signal; "
                               "red triangles: sites. The axes span the scene.")
                smp = view["samples"]
                fig = px.scatter(x=smp["x_m"], y=smp["y_m"], color=smp["split"], symbol=smp["scene"],
                                 labels={"x": "x (m, east)", "y": "y (m, north)", "color": "split"}, opacity=0.6)
                fig.update_layout(height=480, yaxis_scaleanchor="x", title="Sample positions")
                if view["scenes"]:  # imported datasets have no maps and so no extent: autoscale
                    edges = np.array([sc["extent_m"] for sc in view["scenes"]])
                    fit_to_extent(fig, (*edges[:, :2].min(axis=0), *edges[:, 2:].max(axis=0)))
                st.plotly_chart(fig, width="stretch")
                c = st.columns(3)
                for col, key, label in zip(c, ("rss_dbm", "toa_ns", "aoa_deg"), ("RSS (dBm)", "ToA (ns)", "AoA (°)")):
                    if len(view["values"][key]):
                        col.plotly_chart(px.histogram(x=view["values"][key], nbins=60, labels={"x": label}),
                                         width="stretch")
                    else:
                        col.caption(f"No {label} in this dataset.")
                _phy_histograms(view["phy_values"])
                with st.expander("Attributes"):
                    st.json(view["attrs"], expanded=False)
                _noise_panel(chosen_ds)
