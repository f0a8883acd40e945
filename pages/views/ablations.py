"""Ablations: run a study in the background, watch each variant, compare them, export the table."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages.views.refresh import job_line, rerun_when_a_job_ends
from pages.views.signin import current_user
from pages.views.widgets import bounded, multi, select
from rflocal_core import ablate, importance
from rflocal_core import dataset as ds
from rflocal_core.access import allowed
from rflocal_core.errors import RFLocalInputError
from rflocal_core.jobs import REGISTRY
from rflocal_core.train import list_runs

st.title("Ablations")
st.caption(
    "What each model ingredient is worth, measured: a study trains every variant on the same splits and seeds, "
    "tests it on the test split and keeps the table in workspace/ablations/."
)

user = current_user()  # passed to every core call that changes the workspace
rerun_when_a_job_ends()  # studies and datasets change when a job ends

datasets = [d["name"] for d in ds.list_datasets() if d.get("state") == "complete"]

with st.expander("Start a study", expanded=st.session_state.setdefault("ab_form_open", not ablate.list_ablations()),
                 key="ab_form"):  # stays as the user left it when a study appears (see the Training Monitor)
    if not datasets:
        st.info("No datasets yet: generate or import one on the Data Generation page first.")
    else:
        c = st.columns(2)
        study_name = select(c[0], "Study", list(ablate.STUDIES), key="ab_study")
        dataset = select(c[1], "Dataset", datasets, key="ab_dataset")
        study = ablate.STUDIES[study_name]
        st.markdown(f"{study.description} Base model: `{study.model}`.")
        names = [v.name for v in study.variants]
        chosen = multi(st, "Variants", names, default=names, key=f"ab_variants_{study_name}")
        c = st.columns(4)
        seeds = int(bounded(c[0], "Seeds", 1, 10, 1, key="ab_seeds"))
        epochs = int(bounded(c[1], "Epochs per variant (0 = model default)", 0, 10_000, 30, key="ab_epochs"))
        minutes = float(bounded(c[2], "Minutes per variant (0 = no limit)", 0.0, 1440.0, 2.0, key="ab_minutes"))
        name = c[3].text_input("Save as", value=f"{study_name}-{dataset}", key="ab_name")
        if st.button("Start study", type="primary", key="ab_start"):
            kwargs = {"seeds": seeds, "epochs": epochs or None, "max_minutes_per_variant": minutes or None,
                      "variants": chosen, "name": name}
            try:
                if not chosen:
                    raise RFLocalInputError("variants: choose at least one variant")
                ablate.check_study(study_name, dataset, **kwargs)
            except RFLocalInputError as exc:
                st.error(str(exc))
            else:
                try:
                    job = REGISTRY.submit("ablation", name, lambda ctx: ablate.run_study(
                        study_name, dataset, progress=ctx.progress, user=user, **kwargs), owner=user.name)
                except RFLocalInputError as exc:  # the job quota: too many jobs running and waiting
                    st.error(str(exc))
                else:
                    st.session_state["ab_want"] = name  # opened as soon as its folder exists
                    st.success(f"Started **{name}** ({len(chosen)} variants x {seeds} seed(s)) in the background."
                               if job.state == "running" else f"Queued **{name}**: {job.snapshot()['stage']}.")


def _coverage(s: dict, split: str, k: int) -> str | None:
    """``"before → after"`` percentages inside the kσ ellipse (None: no sigma, or a study from before)."""
    before, after = s.get(f"{split}_in_{k}sigma_before"), s.get(f"{split}_in_{k}sigma_after")
    return None if before is None or after is None else f"{100 * before:.0f}% → {100 * after:.0f}%"


def _summary_table(results: dict) -> pd.DataFrame:
    rows = [{"variant": s["variant"], "seeds": s["seeds"], "median m": s["median_m"], "± median": s["median_m_std"],
             "P95 m": s["p95_m"], "mean m": s["mean_m"], "train s": s["train_s"], "inference ms": s["infer_ms"],
             "parameters": s["parameters"], "σ scale": s.get("sigma_scale"),
             # temperature scaling fitted on val (its record), then applied on test (39% / 86% when calibrated)
             "val in 1σ": _coverage(s, "val", 1), "val in 2σ": _coverage(s, "val", 2),
             "test in 1σ": _coverage(s, "test", 1), "test in 2σ": _coverage(s, "test", 2)}
            for s in results.get("summary") or []]
    return pd.DataFrame(rows).astype({"± median": float, "σ scale": float}).round(3)  # one seed: no spread, blank


def _charts(results: dict) -> None:
    summary = results.get("summary") or []
    bars = go.Figure(go.Bar(
        x=[s["variant"] for s in summary], y=[s["median_m"] for s in summary],
        error_y={"type": "data", "array": [s["median_m_std"] or 0.0 for s in summary],
                 "visible": any(s["median_m_std"] for s in summary)}))
    bars.update_layout(yaxis_title="median test error (m)", height=340, margin={"t": 10, "b": 10, "l": 10, "r": 10})
    st.plotly_chart(bars, key="ab-bars")
    cdf = go.Figure()
    for key, curve in (results.get("cdfs") or {}).items():
        variant, seed = key.rsplit("#", 1)
        cdf.add_trace(go.Scatter(x=curve["x_m"], y=curve["fraction"], mode="lines", line_shape="hv",
                                 name=variant if results.get("summary", [{}])[0].get("seeds", 1) == 1
                                 else f"{variant} (seed {seed})"))
    cdf.update_layout(xaxis_title="test error (m)", yaxis_title="fraction of samples", height=380,
                      margin={"t": 10, "b": 10, "l": 10, "r": 10})
    cdf.update_xaxes(type="log")
    st.plotly_chart(cdf, key="ab-cdfs")


@st.fragment(run_every=1.5)
def live_panel() -> None:
    jobs = [j for j in REGISTRY.list(kind="ablation") if not j.finished]
    for job in jobs:
        snap = job.snapshot()
        cols = st.columns([5, 1])
        cols[0].progress(snap["fraction"], text=job_line(snap))
        if allowed(user, "cancel") and cols[1].button("Cancel", key=f"ab-cancel-{job.id}"):
            job.cancel(user=user)
    for job in REGISTRY.list(kind="ablation"):
        if job.state == "failed":
            st.error(f"{job.label}: {job.error}")

    saved = ablate.list_ablations()
    st.subheader("Studies")
    if not saved:
        st.info("No studies yet.")
        return
    st.dataframe(pd.DataFrame(saved), hide_index=True, width="stretch")
    names = [a["name"] for a in saved]
    if st.session_state.get("ab_want") in names:
        st.session_state["ab_open"] = st.session_state.pop("ab_want")
    if st.session_state.get("ab_open") not in names:
        st.session_state["ab_open"] = names[0]
    opened = st.selectbox("Open", names, key="ab_open")
    try:
        results = ablate.load_ablation(opened)
    except RFLocalInputError as exc:
        st.error(str(exc))
        return
    running = any(j.label == opened for j in jobs)
    state = results["state"] if results["state"] != "running" or running else "interrupted"
    st.markdown(f"**{results['study']}** on `{results['dataset']}` — {state}, "
                f"{len(results['rows'])} of {results.get('total')} variant runs done.")
    if results.get("error"):
        st.error(results["error"])
    if not results["rows"]:
        return
    st.dataframe(_summary_table(results), hide_index=True, width="stretch")
    _charts(results)
    st.download_button("Download CSV", ablate.rows_csv(results["rows"]), f"{opened}.csv", "text/csv",
                       key="ab-csv")


LAYER_COLOURS = {"rt": "#4C78A8", "phy": "#F58518", "mac": "#54A24B", "beams": "#B279A2", "other": "#9D9D9D"}


def _importance_chart(result: importance.ImportanceResult) -> None:
    rows = list(result.features)
    bars = go.Figure(go.Bar(
        x=[r.feature for r in rows], y=[r.delta_median_m for r in rows],
        marker_color=[LAYER_COLOURS.get(r.layer, "#9D9D9D") for r in rows],
        error_y={"type": "data", "array": [r.delta_median_std_m or 0.0 for r in rows],
                 "visible": any(r.delta_median_std_m for r in rows)},
        hovertext=[f"layer {r.layer}, present in {100 * r.present:.0f}% of the reports" for r in rows]))
    bars.update_layout(yaxis_title="median error added when shuffled (m)", height=340,
                       margin={"t": 10, "b": 10, "l": 10, "r": 10})
    st.plotly_chart(bars, key="imp-bars")
    st.dataframe(pd.DataFrame([{"feature": r.feature, "layer": r.layer, "present": r.present,
                                "Δ median m": r.delta_median_m, "± median": r.delta_median_std_m,
                                "Δ mean m": r.delta_mean_m, "± mean": r.delta_mean_std_m} for r in rows])
                 .astype({"± median": float, "± mean": float}).round(3), hide_index=True, width="stretch")


@st.fragment(run_every=2.0)
def importance_panel() -> None:
    st.subheader("Permutation importance")
    st.caption("Each feature a run reads is shuffled across the test samples, slot by slot (reports that lack it "
               "still lack it); the bar is the median test error it adds, over the repeats. Colours: the layer "
               "(RT, PHY, MAC, beams, other).")
    runs = [r["run_id"] for r in list_runs() if r.get("state") == "done"]
    if not runs:
        st.info("No finished runs yet: train one (or run a study) first.")
        return
    c = st.columns([3, 1, 1])
    run_id = select(c[0], "Run", runs, key="imp_run")
    repeats = int(bounded(c[1], "Repeats", 1, 50, 5, key="imp_repeats"))
    for job in REGISTRY.list(kind="importance"):
        if not job.finished:
            st.progress(job.snapshot()["fraction"], text=job_line(job.snapshot()))
        elif job.state == "failed" and job.label == run_id:
            st.error(f"{job.label}: {job.error}")
    if allowed(user, "ablate") and c[2].button("Compute", key="imp_start"):
        try:
            REGISTRY.submit("importance", run_id, lambda ctx: importance.permutation_importance(
                run_id, repeats=repeats, progress=ctx.progress, user=user), owner=user.name)
        except RFLocalInputError as exc:  # the job quota
            st.error(str(exc))
    result = importance.load_importance(run_id)
    if result is None:
        st.info(f"No permutation importance of {run_id} yet: press Compute.")
        return
    st.markdown(f"`{result.model}` on `{result.dataset}` ({result.split}, {result.count} samples, "
                f"{result.repeats} repeats): median {result.baseline_median_m:.1f} m, mean "
                f"{result.baseline_mean_m:.1f} m unshuffled.")
    _importance_chart(result)


live_panel()
importance_panel()
