"""Live Inference: measurements in, predicted positions with their uncertainty out, on a map."""

from __future__ import annotations

import json
import random

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages.views.inference_map import HEAT_FLOOR, map_figure
from pages.views.refresh import rerun_when_a_job_ends
from pages.views.table_mapping import table_mapping, table_source
from pages.views.widgets import choice, error_text, tracker, upload_limit_mib
from rflocal_core import dataset as ds
from rflocal_core import demo, infer
from rflocal_core.dataset.sequences import export_sequences
from rflocal_core.errors import RFLocalInputError
from rflocal_core.measurements import MAX_MEASUREMENT_FILE_BYTES, check_quality, load_measurements
from rflocal_core.measurements.table import MAX_TABLE_FILE_BYTES, table_kind
from rflocal_core.models.onnx_export import PredictOptions
from rflocal_core.train import list_runs

EXAMPLES = ["example_measurements.json", "example_single.json", "example_measurements_format.json",
            "example_survey.json"]

st.title("Live Inference")
st.caption(
    "Upload measurements (rflocal-measurements/1, the survey format or a CSV, TSV, TXT, Parquet or Excel table; see "
    "the README), choose one or several trained runs, and see each predicted position with its 1σ/2σ uncertainty on "
    "the map."
)
rerun_when_a_job_ends()  # the runs to predict with change when a training ends

if not st.session_state.get("li_demo_checked"):
    installed = demo.install_demo()  # the shipped demo runs: a prediction before anything is trained
    st.session_state["li_demo_checked"] = True
    if installed:
        st.toast(f"Installed the demo models {', '.join(installed)}.")


@st.cache_resource(show_spinner=False, max_entries=16)
def cached_run(run_id: str, stamp: int, backend: str = "torch") -> infer.LoadedRun:
    """A run loaded once per checkpoint version (``stamp``: model.pt mtime) and backend."""
    return infer.load_run(run_id, backend=backend)


show_ablation = st.checkbox("Show ablation runs", key="li_show_ablation",
                            help="runs trained by ablation studies are left out of the list by default")
runs = [r for r in list_runs(include_ablation=show_ablation) if r.get("state") == "done"]
if not runs:
    st.info("No trained runs yet: train one on the Training Monitor page (the demo models ship in assets/demo; "
            "`make demo-model` rebuilds them).")
    st.stop()

# --------------------------------------------------------------------------- input

done_ids = [r["run_id"] for r in runs]
# The newest run of the user's own, once there is one (the demo runs belong to the demo's scene);
# before that both demo runs (the demo's kNN has a posterior).
own = sorted((r for r in runs if r["run_id"] not in demo.DEMO_RUNS), key=lambda r: r.get("created_utc") or "")
default = [own[-1]["run_id"]] if own else [r for r in demo.DEMO_RUNS if r in done_ids] or [done_ids[-1]]
c = st.columns([4, 1])
chosen_runs = c[0].multiselect("Runs", done_ids, default=default, key="li_runs",
                               help="Several runs are compared side by side on the same samples.")
backend = choice(c[1], PredictOptions, "backend", key="li_backend")
if not chosen_runs:
    st.info("Choose at least one run.")
    st.stop()

c = st.columns([4, 1])
source = c[0].radio("Measurements", ["Upload a file", "Example file", "Dataset test split", "Demo sample"],
                    horizontal=True, key="li_source")
strict = c[1].checkbox("Strict quality", key="li_strict",
                       help="refuse a file with GPS or RSS sentinels, outliers or duplicate ids instead of dropping "
                            "those parts (see the README: Quality checks)")
data: bytes | None = None
table: dict | None = None  # read_table's keywords when the upload is a table
label = ""
ms = None
try:
    if source == "Upload a file":
        json_mib, table_mib = upload_limit_mib(MAX_MEASUREMENT_FILE_BYTES), upload_limit_mib(MAX_TABLE_FILE_BYTES)
        upload = st.file_uploader(f"Measurement JSON (at most {json_mib} MB) or table (at most {table_mib} MB), "
                                  "mapped as on the import tab", type=["json", "csv", "tsv", "txt", "parquet", "xlsx"],
                                  key="li_upload", max_upload_size=max(json_mib, table_mib))
        if upload is not None:
            data, label = upload.getvalue(), upload.name
            kind = table_kind(upload.name)
            if kind is not None:
                with st.expander("Table columns", expanded=True):
                    header, sheet = table_source(data, kind, prefix="li_tab")
                    table = {**table_mapping(header, prefix="li_tab"), "kind": kind, "sheet": sheet}
    elif source == "Example file":
        name = st.selectbox("Example", [e for e in EXAMPLES if (demo.ASSETS_DIR / e).is_file()], key="li_example")
        data, label = (demo.ASSETS_DIR / name).read_bytes(), name
    elif source == "Dataset test split":
        names = [d["name"] for d in ds.list_datasets()]
        if not names:
            st.info("No datasets in the workspace: generate or import one on the Data Generation page.")
        else:
            c = st.columns(3)
            chosen = c[0].selectbox("Dataset", names, key="li_dataset")
            limit = int(c[1].number_input("Samples", 1, 500, 20, key="li_limit"))
            as_sequences = c[2].checkbox("As sequences", key="li_sequences",
                                         help="a moving sample as one sample per report time, each with its truth, "
                                              "to track (datasets generated with motion)")
            ms = (export_sequences(chosen, split="test", limit=limit) if as_sequences
                  else ds.export_dataset(chosen, split="test", limit=limit))
            label = f"{chosen} (test split{', sequences' if as_sequences else ''})"
    else:
        if st.button("New demo sample", key="li_new_demo"):
            st.session_state["li_demo_seed"] = random.randrange(10**6)
        if demo.EXAMPLE_FILE.is_file():
            full = load_measurements(demo.EXAMPLE_FILE)
            pick = random.Random(st.session_state.get("li_demo_seed", 0)).randrange(len(full.samples))
            ms = type(full)(full.mode, full.scene, full.nodes, (full.samples[pick],), (), full.notes)
            label = f"demo sample {full.samples[pick].id}"
        else:
            st.info("The demo example file is missing: run `make demo-model`.")
    if data is not None:
        _, ms, quality = infer.read_input(data, table=table, strict=strict)
    elif ms is not None:
        ms, quality = check_quality(ms, strict=strict)
except RFLocalInputError as exc:
    st.error(error_text(exc))
    st.stop()

if ms is None:
    st.stop()
if quality.faulty:
    st.warning(f"{label}: {quality.summary()}")
    st.dataframe(pd.DataFrame(quality.rows()), hide_index=True)

# --------------------------------------------------------------------------- predict

results, models = [], {}
for run_id in chosen_runs:
    try:
        # onnxruntime: the first use exports the network and checks it against PyTorch (seconds)
        with st.spinner(f"Loading {run_id} ({backend}) ..."):
            run = cached_run(*infer.checkpoint_stamp(run_id), backend)
        res = infer.predict_measurements(run, ms)
    except RFLocalInputError as exc:
        st.error(f"**{run_id}**: {exc}")
        continue
    results.append(res)
    models[run_id] = run

if ms.errors or (results and results[0].bad_samples):
    bad = ([b.to_json() for b in results[0].bad_samples] if results
           else [{"index": e.index, "id": e.id, "message": e.message} for e in ms.errors])
    total = len(ms.samples) + len(ms.errors)
    st.warning(f"None of the {total} samples in {label} can be predicted:" if len(bad) == total else
               f"{len(bad)} of {total} samples in {label} cannot be predicted (the others are):")
    st.dataframe(pd.DataFrame(bad), hide_index=True)
for res in results:
    for w in res.warnings:
        st.warning(f"**{res.run_id}**: {w}")
results = [r for r in results if r.predictions]
if not results:
    st.stop()

# --------------------------------------------------------------------------- tracking (files with sequences)

if table is not None and "time" in table["columns"] and all(s.sequence is None for s in ms.samples):
    st.caption("A timed table can be tracked: map its track id to **sequence**, or set **Track gap (s)** (e.g. 60) "
               "to make tracks of the file where a pause cuts them.")
if any(s.sequence is not None for s in ms.samples):
    config = tracker("li_track")
    if config is not None:
        try:
            results = [infer.track_prediction(res, ms, config, mask=infer.run_outdoor_mask(models[res.run_id], res.scene)
                                              if config.method == "particle" else None) for res in results]
        except RFLocalInputError as exc:
            st.error(error_text(exc))

ids = [p.id for p in results[0].predictions]
sample_id = st.selectbox("Sample", ids, key="li_sample") if len(ids) > 1 else ids[0]
st.subheader(f"Sample {sample_id}")

cols = st.columns(len(results))
for col, res in zip(cols, results):
    row = res.sample(sample_id)
    with col:
        st.markdown(f"**{res.model}** · `{res.run_id}`" + (f" · {res.backend}" if res.backend else ""))
        st.metric("Predicted position", f"{row.lat:.6f}, {row.lon:.6f}",
                  help=f"scene metres: x = {row.x_m} m, y = {row.y_m} m")
        sigma = (f"σx {row.sigma_x_m:.1f} m · σy {row.sigma_y_m:.1f} m" if row.sigma_x_m is not None
                 else "no uncertainty from this model")
        err = f" · error **{row.error_m:.1f} m**" if row.error_m is not None else ""
        st.markdown(f"x = {row.x_m:.1f} m, y = {row.y_m:.1f} m · {sigma}{err} · "
                    f"{res.predict_ms:.1f} ms for {len(res.predictions)} sample(s)")
        if row.tracked_x_m is not None:
            terr = f" · error **{row.tracked_error_m:.1f} m**" if row.tracked_error_m is not None else ""
            st.markdown(f"tracked ({res.track}, sequence `{row.sequence}`, t = {row.t_s:g} s): "
                        f"x = {row.tracked_x_m:.1f} m, y = {row.tracked_y_m:.1f} m{terr}")
        for flag in row.flags:
            st.warning(flag)
        if row.candidates:
            st.dataframe(pd.DataFrame([c.to_json() for c in row.candidates])[["x_m", "y_m", "p"]]
                         .rename(columns={"p": "probability"}), hide_index=True)
            st.caption(f"Top {len(row.candidates)} candidate positions: the strongest posterior modes at least "
                       f"{2 * infer.CANDIDATE_RADIUS_M:g} m apart (scene metres); probability: the posterior mass "
                       f"within {infer.CANDIDATE_RADIUS_M:g} m of each.")

# --------------------------------------------------------------------------- map

heats = {res.run_id: h for res in results
         if (h := infer.sample_heatmap(models[res.run_id], ms, sample_id)) is not None}
c = st.columns([3, 1])
heat_run = None
if len(heats) > 1:
    heat_run = c[0].radio("Posterior shown", list(heats), horizontal=True, key="li_heat_run")
elif heats:
    heat_run = next(iter(heats))
focus = c[1].toggle("Zoom to the sample", key="li_focus",
                    help="the box around the predictions, their 2σ ellipses and the truth; off: the whole scene")
points = [(r.sample(sample_id).x_m, r.sample(sample_id).y_m) for r in results]
for res in results:
    row = res.sample(sample_id)
    ring = infer.ellipse_xy(row, k=infer.ellipse_k(row, 2))
    points += list(zip(*ring)) if ring else []
    points += [(row.truth.x_m, row.truth.y_m)] if row.truth else []
    points += [(row.tracked_x_m, row.tracked_y_m)] if row.tracked_x_m is not None else []
view = infer.scene_map(models[results[0].run_id], results[0].scene, points)
heat_model = next((r.model for r in results if r.run_id == heat_run), None)
fig = map_figure(view, results, sample_id, heat=heats.get(heat_run), heat_label=f"posterior of {heat_model}",
                 focus=focus)
for res in results:  # a tracked sequence: the model's positions over time and the filtered track
    lines = infer.sequence_lines(res, sample_id)
    if lines:
        fig.add_trace(go.Scatter(x=lines["raw_x"], y=lines["raw_y"], mode="lines+markers", name=f"raw track ({res.model})",
                                 line={"dash": "dot", "width": 1}, marker={"size": 4}))
        fig.add_trace(go.Scatter(x=lines["tracked_x"], y=lines["tracked_y"], mode="lines",
                                 name=f"tracked ({res.track}, {res.model})", line={"width": 3}))
        if any(v is not None for v in lines["truth_x"]):
            fig.add_trace(go.Scatter(x=lines["truth_x"], y=lines["truth_y"], mode="lines", name="true track",
                                     line={"color": "#1a7f37", "width": 1}))
st.plotly_chart(fig, width="stretch", key="li_map", config={"scrollZoom": True, "displaylogo": False})
heat_note = (f"shaded: the posterior of **{heat_model}** (`{heat_run}`), by the colour bar as a fraction of its peak "
             f"(cells under {HEAT_FLOOR:g} of it left clear)" if heat_run else
             "no posterior: none of the chosen runs has one (kNN and map matching do: add `demo-knn`)")
bar_m = view.focus_scale_bar_m if focus and view.focus_m else view.scale_bar_m
st.caption(f"Scene metres of the run's frame (x east, y north); the bar below the scene is {bar_m:g} m. "
           "Dots: predictions (one colour per run) with their 1σ (39%, solid) and 2σ (86%, dotted) ellipses "
           "(2σ is the run's fitted multiple of 1σ where its radii were fitted apart: sigma radii 'quantile', "
           "or 'auto' where the Gaussian radii missed); "
           f"green ×: the true position when the file gives it; black triangles: nodes; grey: buildings; {heat_note}.")

# --------------------------------------------------------------------------- timeline, batch

timeline = pd.DataFrame(infer.report_timeline(ms, sample_id))
if timeline["t_s"].nunique() > 1:
    fig = go.Figure()
    for node, part in timeline.dropna(subset=["rss_dbm"]).groupby("node"):
        fig.add_trace(go.Scatter(x=part["t_s"], y=part["rss_dbm"], mode="lines+markers", name=str(node)))
    fig.update_layout(title="RSS per node over time", xaxis_title="t (s)", yaxis_title="RSS (dBm)", height=320)
    st.plotly_chart(fig)

table = pd.DataFrame(infer.predictions_table(results))
with st.expander(f"All predictions ({len(table)} rows)", expanded=len(ids) > 1):
    st.dataframe(table, hide_index=True)
    c = st.columns(2)
    c[0].download_button("Download CSV", table.to_csv(index=False), "predictions.csv", "text/csv", key="li_csv")
    c[1].download_button("Download JSON", json.dumps([r.to_json() for r in results], indent=2), "predictions.json",
                         "application/json", key="li_json")
