"""Metrics: error CDFs, percentiles, breakdowns, calibration, spatial error and the Cramér-Rao bound of runs."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages.views.refresh import rerun_when_a_job_ends
from pages.views.widgets import tracker
from rflocal_core import dataset as ds
from rflocal_core import demo
from rflocal_core import train as tr
from rflocal_core.dataset.sequences import keeps_tracks
from rflocal_core.dataset.store import SPLITS
from rflocal_core.errors import RFLocalInputError
from rflocal_core.infer import EvaluationResult, evaluate_run
from rflocal_core.metrics import SUCCESS_THRESHOLDS_M
from rflocal_core.tracking import TrackConfig

st.title("Metrics")
st.caption(
    "Evaluate finished runs on a dataset split: error CDF against the Cramér-Rao bound, percentiles and success "
    "rates, breakdowns, uncertainty calibration and the error over the scene. Results are cached with each run."
)
rerun_when_a_job_ends()  # runs and datasets to score change when a job ends

BREAKDOWN_TITLES = {"los": "LoS / NLoS (strongest link)", "nodes": "Number of reporting nodes",
                    "rss_band": "Strongest RSS (dBm)", "scene": "Scene seen in training"}


def _fmt(value: float | None, scale: float = 1.0) -> float | None:
    return None if value is None else round(value * scale, 2)


def _cdf_figure(results: list[EvaluationResult]) -> go.Figure:
    fig = go.Figure()
    for r in results:
        fig.add_trace(go.Scatter(x=r.cdf.x_m, y=r.cdf.fraction, name=r.run_id, mode="lines", line_shape="hv"))
        if r.tracked is not None:
            fig.add_trace(go.Scatter(x=r.tracked.cdf.x_m, y=r.tracked.cdf.fraction, name=f"{r.run_id} tracked",
                                     mode="lines", line_shape="hv", line={"dash": "dot"}))
    bound = next((r.crlb for r in results if r.crlb.available), None)
    if bound is not None:
        fig.add_trace(go.Scatter(x=bound.cdf.x_m, y=bound.cdf.fraction, name="CRLB (per sample)",
                                 mode="lines", line={"dash": "dash", "color": "black"}, line_shape="hv"))
    fig.update_layout(xaxis_title="error (m)", yaxis_title="fraction of samples", height=420,
                      margin={"t": 30, "b": 10, "l": 10, "r": 10}, legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(type="log")
    fig.update_yaxes(range=[0, 1.02])
    return fig


#: Columns of the error table and the success table: header -> (format, help).
ERROR_COLUMNS = {"samples": ("%d", "samples with a true position and an estimate"),
                 "mean (m)": ("%.2f m", None), "RMSE (m)": ("%.2f m", "root mean square error"),
                 "median (m)": ("%.2f m", None), "P67 (m)": ("%.2f m", "67th percentile"),
                 "P80 (m)": ("%.2f m", "80th percentile"), "P95 (m)": ("%.2f m", "95th percentile")}


def _error_table(results: list[EvaluationResult]) -> pd.DataFrame:
    """Error percentiles per run, in metres (a tracked run: a second row, its tracks filtered over time)."""
    rows = []
    for r in results:
        for label, s in [(r.run_id, r.summary)] + ([(f"{r.run_id} tracked", r.tracked.summary)] if r.tracked else []):
            rows.append({"run": label, "model": r.model, "samples": s.count, "mean (m)": _fmt(s.mean_m),
                         "RMSE (m)": _fmt(s.rmse_m), "median (m)": _fmt(s.median_m), "P67 (m)": _fmt(s.p67_m),
                         "P80 (m)": _fmt(s.p80_m), "P95 (m)": _fmt(s.p95_m)})
    return pd.DataFrame(rows)


def _success_table(results: list[EvaluationResult]) -> pd.DataFrame:
    """Success rates per run (%), the ratio to the bound and the inference cost."""
    rows = []
    for r in results:
        row = {"run": r.run_id}
        for t in SUCCESS_THRESHOLDS_M:
            row[f"≤ {t:g} m (%)"] = _fmt(r.summary.success_rates.get(f"{t:g}m"), 100)
        row["RMSE / √CRLB"] = _fmt(r.crlb.ratio_rmse_to_crlb)
        row["inference (ms/sample)"] = r.inference_ms_per_sample
        rows.append(row)
    return pd.DataFrame(rows)


def _summary(results: list[EvaluationResult]) -> None:
    """Two narrow tables (errors in m; success rates in %, cost) so that neither is cut off on the right."""
    config = {k: st.column_config.NumberColumn(k, format=f, help=h) for k, (f, h) in ERROR_COLUMNS.items()}
    st.dataframe(_error_table(results), hide_index=True, width="stretch", column_config=config)
    success = {f"≤ {t:g} m (%)": st.column_config.NumberColumn(format="%.1f %%", help=f"errors of at most {t:g} m")
               for t in SUCCESS_THRESHOLDS_M}
    success["RMSE / √CRLB"] = st.column_config.NumberColumn(
        format="%.2f", help="RMSE over the bound's RMS error (1: as good as the Cramér-Rao bound allows)")
    success["inference (ms/sample)"] = st.column_config.NumberColumn(format="%.3f ms")
    st.dataframe(_success_table(results), hide_index=True, width="stretch", column_config=success)


def _scene_warnings(results: list[EvaluationResult]) -> None:
    """Red above the results for a run scored on another place; a note where that is unknown or in-sample."""
    for r in results:
        check = r.scene_check
        if check.other_scene:
            st.error(f"**{r.run_id} is scored on another scene.** Dataset {r.dataset!r} is not the place it was "
                     "trained on, so its figures below measure a model of one place used in another, not its "
                     "accuracy:\n\n" + "\n".join(f"- {p}" for p in check.problems))
        elif check.status == "unknown":
            st.warning(check.summary(r.run_id, r.dataset) + ".")
        if r.in_sample:
            st.warning(f"**{r.run_id} was fitted on the {r.split} split of {r.dataset!r}**: its figures there are "
                       "in-sample, not an accuracy; score it on the test split.")


def _breakdown(results: list[EvaluationResult], key: str) -> None:
    rows = [{"run": r.run_id, "group": row.group, "samples": row.count, "not scored": row.missing,
             "mean (m)": row.mean_m, "median (m)": row.median_m, "P95 (m)": row.p95_m}
            for r in results for row in r.breakdowns.rows(key)]
    if not rows:
        st.info("No samples.")
        return
    frame = pd.DataFrame(rows)
    fig = go.Figure([go.Bar(x=[row.group for row in r.breakdowns.rows(key)],
                            y=[row.median_m for row in r.breakdowns.rows(key)], name=r.run_id)
                     for r in results])
    fig.update_layout(barmode="group", yaxis_title="median error (m)", height=300,
                      margin={"t": 10, "b": 10, "l": 10, "r": 10})
    st.plotly_chart(fig, key=f"mx-bd-{key}")
    st.dataframe(frame.round(2), hide_index=True, width="stretch")


def _calibration(results: list[EvaluationResult]) -> None:
    table, fig = [], go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], name="ideal", mode="lines", line={"dash": "dot", "color": "gray"}))
    for r in results:
        c = r.calibration
        table.append({"run": r.run_id, "with σ": c.count, "no σ": c.no_sigma, "σ scale": _fmt(r.sigma_scale),
                      "σ power": _fmt(r.sigma_power), "2σ radius (× 1σ)": _fmt(c.ratio_2sigma),
                      "inside 1σ %": _fmt(c.inside_1sigma, 100), "expected 1σ %": _fmt(c.expected_1sigma, 100),
                      "inside 2σ %": _fmt(c.inside_2sigma, 100), "expected 2σ %": _fmt(c.expected_2sigma, 100),
                      "median σ m": _fmt(c.median_sigma_m)})
        if c.available:
            fig.add_trace(go.Scatter(x=c.reliability.nominal, y=c.reliability.observed,
                                     name=r.run_id, mode="lines+markers"))
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")
    if not any(r.calibration.available for r in results):
        st.info("None of these runs predicts an uncertainty (σ), so there is nothing to calibrate.")
        return
    fig.update_layout(xaxis_title="nominal probability (inside the ellipse)", yaxis_title="observed fraction",
                      height=360, margin={"t": 10, "b": 10, "l": 10, "r": 10})
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1])
    st.plotly_chart(fig, key="mx-reliability")


def _spatial(result: EvaluationResult) -> None:
    s = result.spatial
    if not s.x_m:
        st.info("No sample has both a true position and an estimate.")
        return
    fig = go.Figure(go.Heatmap(x=s.x_m, y=s.y_m, z=s.median_m, colorscale="Viridis",
                               colorbar={"title": "median error (m)"}, customdata=s.count,
                               hovertemplate="x %{x:.0f} m, y %{y:.0f} m<br>median %{z:.1f} m"
                                             "<br>%{customdata} samples<extra></extra>"))
    fig.update_layout(xaxis_title="x east (m)", yaxis_title="y north (m)", height=480,
                      margin={"t": 10, "b": 10, "l": 10, "r": 10})
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    st.plotly_chart(fig, key="mx-spatial")
    st.caption(f"Cells of {s.cell_m:g} m over the true positions; empty cells are blank.")


def _tracker(dataset: str) -> TrackConfig | None:
    """For a dataset that keeps tracks (an import of timed walks): the tracker to score them with, or None."""
    return tracker("mx_track") if keeps_tracks(dataset) else None


def _default_dataset(datasets: list[str], runs: list[dict]) -> int:
    """Index of the dataset of the newest run (the one just trained), else the first."""
    for run in sorted(runs, key=lambda r: r.get("created_utc") or "", reverse=True):
        for k, name in enumerate(datasets):
            if run.get("dataset") in demo.training_datasets(name):
                return k
    return 0


def main() -> None:
    if not st.session_state.get("mx_demo_checked"):
        demo.install_demo()  # the shipped demo runs and their test split: scorable before anything is trained
        st.session_state["mx_demo_checked"] = True
    datasets = [d["name"] for d in ds.list_datasets() if d.get("state") == "complete"]
    show_ablation = st.checkbox("Show ablation runs", key="mx_show_ablation",
                                help="runs trained by ablation studies are left out of the list by default")
    runs = [r for r in tr.list_runs(include_ablation=show_ablation) if r.get("state") == "done"]
    if not datasets:
        st.info("No datasets yet: generate or import one on the Data Generation page first.")
        return
    if not runs:
        st.info("No finished runs yet: train a model (a baseline takes seconds) on the Training Monitor page, "
                "or run `python -m rflocal_core train --dataset DS --model knn`.")
        return
    c = st.columns([2, 1, 1])
    dataset = c[0].selectbox("Dataset", datasets, index=_default_dataset(datasets, runs), key="mx_dataset",
                             help="opens on the dataset of the newest run")
    split = c[1].selectbox("Split", SPLITS, index=SPLITS.index("test"), key="mx_split")
    recompute = c[2].checkbox("Recompute (ignore cache)", key="mx_recompute")
    ids = [r["run_id"] for r in runs]
    default = [r["run_id"] for r in runs if r.get("dataset") in demo.training_datasets(dataset)][:3]
    chosen = st.multiselect("Runs", ids, default=default, key="mx_runs",
                            help="finished runs; a run scored on data of another place is flagged in red")
    if not chosen:
        st.info("Choose one or more runs to evaluate.")
        return
    track = _tracker(dataset)

    results = []
    for run_id in chosen:
        with st.spinner(f"Evaluating {run_id} on {dataset}/{split}…"):
            try:
                # the page shows other-scene pairs with a red warning instead of refusing them
                results.append(evaluate_run(run_id, dataset, split=split, use_cache=not recompute,
                                            allow_other_scene=True, track=track))
            except RFLocalInputError as exc:
                st.error(str(exc))
    if not results:
        return

    _scene_warnings(results)
    st.subheader("Error CDF")
    st.plotly_chart(_cdf_figure(results), key="mx-cdf")
    st.subheader("Summary")
    _summary(results)

    crlb = next((r.crlb for r in results if r.crlb.available), results[0].crlb)
    if crlb.available:
        parts = [f"features {', '.join(crlb.features)}", f"median {crlb.median_m:.2f} m", f"RMS {crlb.rms_m:.2f} m"]
        if "rss" in crlb.features:
            parts.append(f"RSS σ {crlb.sigma_rss_db:.2f} dB, fitted path-loss exponent "
                         f"{crlb.path_loss_exponent:.2f}")
        if "toa" in crlb.features:
            parts.append(f"ToA σ {crlb.sigma_toa_m:.2f} m")
        if "aoa" in crlb.features:
            parts.append(f"AoA σ {crlb.sigma_aoa_deg:.2f}°")
        if crlb.unbounded:
            parts.append(f"{crlb.unbounded} sample(s) whose reports do not fix a position left out")
        st.markdown("**Cramér-Rao bound** (dashed): " + "; ".join(parts) + ".")
    else:
        st.warning("No Cramér-Rao bound for this split: " + (crlb.note or "no feature with a known noise."))
    if crlb.note and crlb.available:
        st.caption(crlb.note + ".")
    st.caption(crlb.caveat)

    st.subheader("Breakdowns")
    tabs = st.tabs(list(BREAKDOWN_TITLES.values()))
    for tab, key in zip(tabs, BREAKDOWN_TITLES):
        with tab:
            _breakdown(results, key)

    st.subheader("Uncertainty calibration")
    st.caption("Fraction of true positions inside the predicted 1σ and 2σ ellipses (x and y independent "
               "Gaussians: expected 39.3% and 86.5%), and the observed fraction at each nominal level. Each run's "
               "σ is the model's times its σ scale, fitted on the run's validation split when it was trained "
               "(1 for runs trained before). A run whose radii were fitted apart (sigma radii 'quantile', or "
               "'auto' where the Gaussian radii missed) has its 2σ ellipse at '2σ radius (× 1σ)' times the 1σ "
               "one, and its nominal levels follow that heavier-tailed law.")
    _calibration(results)

    st.subheader("Error over the scene")
    by_id = {r.run_id: r for r in results}
    shown = st.selectbox("Run", list(by_id), key="mx_spatial_run") if len(by_id) > 1 else next(iter(by_id))
    _spatial(by_id[shown])


main()
