"""Overview: what RFLocal does, the workspace, and the state of the backend."""

from __future__ import annotations

import streamlit as st

from pages.views.refresh import rerun_when_a_job_ends
from pages.views.signin import current_user
from rflocal_core import status
from rflocal_core.access import allowed

st.title("RFLocal workbench")
st.markdown(
    "Locate a radio device or transmitter from measurements. Build a city scene, ray-trace it "
    "with **Sionna RT**, generate realistic measurement datasets, train localization models and "
    "predict positions from uploaded measurement JSON."
)
rerun_when_a_job_ends()  # the counts change when a job ends

info = status.workspace_status()
cols = st.columns(4)
cols[0].metric("Scenes", info["scenes"])
cols[1].metric("Datasets", info["datasets"])
cols[2].metric("Runs", info["runs"])
cols[3].metric("Ray tracing", info["backend"]["device"])
st.caption(f"Workspace: `{info['workspace']}` (set `RFLOCAL_WORKSPACE` to move it)")
if info["demo"]["runs"] or info["demo"]["datasets"]:
    st.caption(f"The counts include the {info['demo']['runs']} demo run(s) and {info['demo']['datasets']} demo "
               "dataset(s) that ship with the app; Live Inference and Metrics copy them into the workspace.")
if not info["backend"]["ok"]:
    st.error(info["backend"]["message"])

st.info("New here? Open **Live Inference**: two demo models trained by this project's own pipeline ship with the "
        "app, with example measurement files, so you get a prediction before training anything.")

st.subheader("Workflow")
for step in status.WORKFLOW:
    if not allowed(current_user(), step["action"]):  # a viewer is not shown the steps it cannot take
        continue
    st.markdown(f"**{step['page']}** — {step['what']}")
