"""Training Monitor: start training in the background, watch live curves, cancel, resume, delete."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from pages.views.refresh import job_line, rerun_when_a_job_ends
from pages.views.signin import current_user
from pages.views.widgets import bounded, choice, multi, number, option_widgets, select, toggle
from rflocal_core import dataset as ds
from rflocal_core import train as tr
from rflocal_core.access import allowed
from rflocal_core.errors import RFLocalInputError
from rflocal_core.jobs import REGISTRY
from rflocal_core.models import registry
from rflocal_core.models.registry import BASELINES, NETWORKS, config_class
from rflocal_core.options import option_paths
from rflocal_core.train import auto, netsearch
from rflocal_core.train.runs import new_run_id

st.title("Training Monitor")
st.caption(
    "Train localization models in the background: the networks `setnet` and `heimdall` epoch by epoch, and the "
    "classical baselines in one fit; or **auto**: every model that fits the dataset within a time budget, the best "
    "on the validation split kept as the run. Training keeps running when you switch pages or reload the browser."
)

user = current_user()  # passed to every core call that changes the workspace
rerun_when_a_job_ends()  # the runs table and the dataset choices change when a job ends

datasets = [d["name"] for d in ds.list_datasets()]


def start_auto(dataset: str, auto_config: dict, seed: int, large: bool) -> None:
    """Check a model selection on the page, then start it as a background training job."""
    try:
        config = auto.check_auto(dataset, auto_config, allow_large_extent=large)
    except RFLocalInputError as exc:
        st.error(str(exc))
        return
    run_id = new_run_id(auto.AUTO_MODEL, dataset)
    try:
        job = REGISTRY.submit("train", run_id, lambda ctx: auto.auto_train(
            dataset, config=config, seed=seed, progress=ctx.progress, run_id=run_id, allow_large_extent=large,
            user=user), owner=user.name)
    except RFLocalInputError as exc:  # the job quota: too many jobs running and waiting
        st.error(str(exc))
        return
    st.session_state["tm_selected"] = run_id
    st.success(f"Started **{run_id}** in the background: the best of the candidates on the validation split "
               f"becomes this run." if job.state == "running" else f"Queued **{run_id}**: {job.snapshot()['stage']}.")


# open on a first visit without runs; a key and a value fixed for the session keep it open or closed as
# the user left it when the model changes or a run appears (issue 14: the form collapsed)
with st.expander("Start a run", expanded=st.session_state.setdefault("tm_form_open", not tr.list_runs()),
                 key="tm_form"):
    if not datasets:
        st.info("No datasets yet: generate or import one on the Data Generation page first.")
    else:
        c = st.columns(3)
        dataset = select(c[0], "Dataset", datasets, key="tm_dataset")
        model = select(c[1], "Model", [*tr.models(), auto.AUTO_MODEL], key="tm_model",
                       help="setnet, heimdall, mapformer and locheatmap are networks; the others classical baselines; "
                            "auto trains every model that fits and keeps the best on the validation split")
        seed = bounded(c[2], "Seed", 0, 2**31 - 1, 0, key="tm_seed")
        train_config: dict = {}
        if model == auto.AUTO_MODEL:
            c = st.columns(3)
            auto_config = {
                "max_minutes": number(c[0], auto.AutoConfig, "max_minutes", key="tm_auto_minutes"),
                "candidates": multi(c[1], "Candidates (none: every model that fits)", auto.candidate_names(),
                                    default=[], key="tm_auto_candidates"),
                "keep_candidates": toggle(c[2], auto.AutoConfig, "keep_candidates", key="tm_auto_keep"),
                "select": choice(st, auto.AutoConfig, "select", key="tm_auto_select"),
            }
        elif model in NETWORKS:
            c = st.columns(4)
            train_config["epochs"] = number(c[0], tr.TrainConfig, "epochs", key="tm_epochs")
            train_config["batch_size"] = number(c[1], tr.TrainConfig, "batch_size", key="tm_batch")
            train_config["lr"] = number(c[2], tr.TrainConfig, "lr", format="%.4f", key="tm_lr")
            minutes = number(c[3], tr.TrainConfig, "max_minutes", none_value=0.0, key="tm_minutes",
                             label="Time budget (min, 0 = none)")
            if minutes is not None:
                train_config["max_minutes"] = minutes
            c = st.columns(4)
            train_config["schedule"] = choice(c[0], tr.TrainConfig, "schedule", key="tm_schedule")
            train_config["warmup_epochs"] = number(c[1], tr.TrainConfig, "warmup_epochs", key="tm_warmup")
            train_config["patience"] = number(c[2], tr.TrainConfig, "patience", key="tm_patience")
            train_config["device"] = choice(c[3], tr.TrainConfig, "device", key="tm_device")
            c = st.columns(2)
            train_config["select_on"] = choice(c[0], tr.TrainConfig, "select_on", key="tm_select_on")
            train_config["sigma_radii"] = choice(c[1], tr.TrainConfig, "sigma_radii", key="tm_sigma_radii_net")
            train_config["initial_validation"] = toggle(st, tr.TrainConfig, "initial_validation", key="tm_initial_val")
            c = st.columns(2)  # a search of the options on val before the run trains (Optuna TPE, issue 15)
            train_config["search_trials"] = number(c[0], tr.TrainConfig, "search_trials", key="tm_search_trials")
            train_config["search_minutes"] = number(c[1], tr.TrainConfig, "search_minutes", key="tm_search_minutes")
            c = st.columns(2)  # a refit: the val-chosen steps again on train + val, no val (README, brief B22)
            train_config["refit"] = toggle(c[0], tr.TrainConfig, "refit", key="tm_refit_net")
            train_config["refit_steps_scale"] = number(c[1], tr.TrainConfig, "refit_steps_scale", none_value=0.0,
                                                       key="tm_refit_scale",
                                                       label="Refit steps scale (0 = (train + val) / train)")
        else:  # a baseline is fitted once: where its sigma is calibrated, and (knn) a refit on train + val
            c = st.columns(4)
            train_config["calibration"] = choice(c[0], tr.TrainConfig, "calibration", key="tm_calibration")
            train_config["calibration_block_m"] = number(c[1], tr.TrainConfig, "calibration_block_m",
                                                         key="tm_cal_block")
            train_config["calibration_folds"] = number(c[2], tr.TrainConfig, "calibration_folds", key="tm_cal_folds")
            train_config["sigma_radii"] = choice(c[3], tr.TrainConfig, "sigma_radii", key="tm_sigma_radii")
            if BASELINES[model].can_refit:
                train_config["refit"] = toggle(st, tr.TrainConfig, "refit", key="tm_refit")
        with st.expander("Model options", key="tm_model_options"):  # from the model's config fields, as `models NAME`
            if model == auto.AUTO_MODEL:
                model_values, model_lists = {}, []
                st.caption("auto trains each candidate with its default options, then with each option set the "
                           "model names for selection (MODEL:VARIANT, e.g. knn:radio_map; `models MODEL` lists them).")
            elif option_paths(config_class(model)):
                model_values, model_lists = option_widgets(st, config_class(model), key=f"tm_opt_{model}")
            else:
                model_values, model_lists = {}, []
                st.caption(f"{model} has no options.")
        large = st.checkbox("Allow an extent over 50 km", key="tm_large_extent",
                            help="a dataset whose positions span more than settings.max_dataset_extent_m is refused: "
                                 "so large an extent is almost always a GPS fault (README: Quality checks)")
        start = st.button("Start training", type="primary", key="tm_start")
        if start and model == auto.AUTO_MODEL:
            start_auto(dataset, auto_config, int(seed), large)
        elif start:
            try:
                tr.check_extent(dataset, allow_large_extent=large)  # refused here, on the page, not in a job
                # checked here so a bad option is reported on the page, not in a job
                model_config = registry.model_config(model, model_values, model_lists)
                tr.TrainConfig.from_dict(train_config)
            except RFLocalInputError as exc:
                st.error(str(exc))
            else:
                run_id = new_run_id(model, dataset)
                try:
                    job = REGISTRY.submit("train", run_id, lambda ctx: tr.train(
                        dataset, model, model_config=model_config, train_config=train_config, seed=int(seed),
                        progress=ctx.progress, run_id=run_id, allow_large_extent=large, user=user), owner=user.name)
                except RFLocalInputError as exc:  # the job quota: too many jobs running and waiting
                    st.error(str(exc))
                else:
                    st.session_state["tm_selected"] = run_id
                    st.success(f"Started **{run_id}** in the background." if job.state == "running"
                               else f"Queued **{run_id}**: {job.snapshot()['stage']}.")


def _job_for(run_id: str):
    jobs = [j for j in REGISTRY.list(kind="train") if j.label == run_id]
    return jobs[-1] if jobs else None


def _curves(run_id: str) -> go.Figure | None:
    rows = tr.read_metrics(run_id)
    rows = [r for r in rows if "train_loss" in r]
    if not rows:
        return None
    epochs = [r["epoch"] for r in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Validation error (m)"))
    fig.add_trace(go.Scatter(x=epochs, y=[r["train_loss"] for r in rows], name="train loss", mode="lines+markers"),
                  1, 1)
    fig.add_trace(go.Scatter(x=epochs, y=[r["val_loss"] for r in rows], name="val loss", mode="lines+markers"), 1, 1)
    fig.add_trace(go.Scatter(x=epochs, y=[r["val"]["median_m"] for r in rows], name="val median",
                             mode="lines+markers"), 1, 2)
    fig.add_trace(go.Scatter(x=epochs, y=[r["val"]["p95_m"] for r in rows], name="val P95", mode="lines",
                             line={"dash": "dot"}), 1, 2)
    best = [r for r in rows if r.get("best")]
    if best:
        fig.add_trace(go.Scatter(x=[best[-1]["epoch"]], y=[best[-1]["val"]["median_m"]], name="best",
                                 mode="markers", marker={"size": 12, "symbol": "star"}), 1, 2)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_layout(height=360, margin={"t": 40, "b": 10, "l": 10, "r": 10})
    return fig


@st.fragment(run_every=1.5)
def live_panel() -> None:
    jobs = [j for j in REGISTRY.list(kind="train") if not j.finished]
    if jobs:
        st.subheader("Running")
    for job in jobs:
        snap = job.snapshot()
        cols = st.columns([5, 1])
        cols[0].progress(snap["fraction"], text=job_line(snap))
        if allowed(user, "cancel") and cols[1].button("Cancel", key=f"tm-cancel-{job.id}"):
            job.cancel(user=user)

    show_ablation = st.checkbox("Show ablation runs", key="tm_show_ablation",
                                help="runs trained by ablation studies, and the candidates auto kept but did "
                                     "not choose, are left out of the list by default")
    runs = sorted(tr.list_runs(include_ablation=show_ablation), key=lambda r: (r.get("created_utc") or "", r["run_id"]))
    known = {r["run_id"] for r in runs}
    for job in REGISTRY.list(kind="train"):  # failures before the run folder existed
        if job.state == "failed" and job.label not in known:
            st.error(f"{job.label}: {job.error}")
    st.subheader("Runs")
    starting = [j.label for j in REGISTRY.list(kind="train") if not j.finished and j.label not in known]
    if not runs and not starting:
        st.info("No runs yet.")
        return
    table = pd.DataFrame([{
        "run": r["run_id"], "model": r.get("model"), "dataset": r.get("dataset"),
        "state": ("running" if r.get("active") else "interrupted") if r.get("state") == "running" else r.get("state"),
        "stopped": r.get("stopped"),
        "best val median (m)": r.get("median_m"), "best val P95 (m)": r.get("p95_m"), "best epoch": r.get("epoch"),
        "duration (s)": r.get("seconds"), "created": r.get("created_utc"), "owner": r.get("owner"),
    } for r in reversed(runs)])
    if runs:  # a first run (or a model selection) that is starting has no row yet, but can be selected
        st.dataframe(table, hide_index=True, width="stretch")

    ids = starting + [r["run_id"] for r in reversed(runs)]
    if st.session_state.get("tm_selected") not in ids:
        st.session_state["tm_selected"] = ids[0]
    run_id = st.selectbox("Run", ids, key="tm_selected")
    row = next((r for r in runs if r["run_id"] == run_id), None)
    if row is None:
        job = _job_for(run_id)
        queued = job is not None and job.state == "queued"
        if queued:
            st.info(f"{run_id} is {job.snapshot()['stage']}.")
        elif job is not None and run_id.startswith(f"{auto.AUTO_MODEL}-"):  # a selection: its run appears at the end
            st.info(f"{run_id} is choosing a model; the best candidate's run appears here when all are trained "
                    f"(now: {job.snapshot()['stage']}).")
        else:
            st.info(f"{run_id} is starting (loading the dataset).")
        return
    if row.get("state") == "failed":
        st.error(f"{run_id} failed: {row.get('error')}")
    elif row.get("state") == "cancelled":
        st.warning(f"{run_id} was cancelled" + ("; it can be resumed." if row.get("resumable") else "."))
    elif row.get("state") == "running" and not row.get("active"):
        st.warning(f"{run_id} is marked running but no job in this app trains it: it was interrupted "
                   "(or runs in another process).")
    if row.get("stopped"):
        st.markdown(f"**Stopped:** {row['stopped']}")
    fig = _curves(run_id)
    if fig is not None:
        st.plotly_chart(fig, key=f"tm-curves-{run_id}")
    elif row.get("kind") == "baseline" and row.get("state") == "done":
        st.caption(f"Baseline fitted in one step: validation median {row['median_m']:.2f} m, "
                   f"P95 {row['p95_m']:.2f} m.")
    table = auto.auto_table(run_id)
    if table is not None:
        st.markdown(f"**Chosen by auto:** {table['chosen']} ({table['criterion']}; budget "
                    f"{table['max_minutes']:g} min, took {table['seconds']:.0f} s)")
        st.dataframe(pd.DataFrame([{
            "model": auto.candidate_name(c["model"], c.get("variant")), "kind": c["kind"], "status": c["status"],
            "chosen": c.get("chosen", False),
            "val median (m)": c.get("val_median_m"), "val mean (m)": c.get("val_mean_m"),
            "SE of the median gap (m)": c.get("val_se_m"), "seconds": c.get("seconds"),
            "budget (min)": c.get("max_minutes"), "reason": c.get("reason"),
        } for c in table["candidates"]]), hide_index=True, width="stretch", key=f"tm-auto-{run_id}")
    search = netsearch.search_table(run_id)
    if search is not None:
        done = [t for t in search["trials"] if t.get("state") == "complete"]
        st.markdown(f"**Options chosen by a search on val:** {len(done)} of {len(search['trials'])} trials "
                    f"({search['trial_minutes']:.2g} min each at most, {search['seconds']:.0f} s), least val "
                    f"{search['select_on']} {search['best_value']:.2f}")
        trials = pd.DataFrame(search["trials"]).rename(columns={"value": f"val {search['select_on']} (score)"})
        st.dataframe(trials, hide_index=True, width="stretch", key=f"tm-search-{run_id}")

    c = st.columns(3)
    job = _job_for(run_id)
    if row.get("active") and job is not None and not job.finished and allowed(user, "cancel"):
        if c[0].button("Cancel run", key="tm-cancel-selected"):
            job.cancel(user=user)
    if row.get("resumable") and not row.get("active"):
        if c[1].button("Resume", key="tm-resume"):
            try:  # the job quota may refuse it
                REGISTRY.submit("train", run_id, lambda ctx: tr.resume(run_id, progress=ctx.progress, user=user),
                                owner=user.name)
            except RFLocalInputError as exc:
                st.error(str(exc))
            else:
                st.success(f"Resuming **{run_id}**.")
    if not row.get("active") and allowed(user, "delete_run"):
        confirm = c[2].checkbox("Confirm delete", key=f"tm-confirm-{run_id}")
        if c[2].button("Delete run", key="tm-delete", disabled=not confirm):
            try:
                tr.delete_run(run_id, user=user)
            except RFLocalInputError as exc:
                st.error(str(exc))
            else:
                st.rerun()


live_panel()
