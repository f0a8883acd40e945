"""RFLocal workbench: the router. Each page lives in pages/ and calls rflocal_core."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="RFLocal", page_icon=":satellite_antenna:", layout="wide")

pages = [
    st.Page("pages/home.py", title="Overview", icon=":material/home:", default=True),
    st.Page("pages/scene_builder.py", title="Scene Builder", icon=":material/location_city:"),
    st.Page("pages/data_generation.py", title="Data Generation", icon=":material/cell_tower:"),
    st.Page("pages/training_monitor.py", title="Training Monitor", icon=":material/monitoring:"),
    st.Page("pages/live_inference.py", title="Live Inference", icon=":material/my_location:"),
    st.Page("pages/metrics.py", title="Metrics", icon=":material/analytics:"),
    st.Page("pages/ablations.py", title="Ablations", icon=":material/science:"),
]
st.navigation(pages).run()
