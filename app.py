"""RFLocal workbench: the router. Each page lives in pages/views/ and calls rflocal_core.

The page scripts sit one level down on purpose: Streamlit treats ``*.py`` files directly
in ``pages/`` as a legacy multipage app, and the first session of a server would then
show that legacy navigation instead of this one.
"""

from __future__ import annotations

import streamlit as st

from rflocal_core import serving
from rflocal_core.errors import ServingError

st.set_page_config(page_title="RFLocal", page_icon=":satellite_antenna:", layout="wide")

# Other machines only with sign-in or RFLOCAL_AUTH=none: `python -m rflocal_core serve` checks this
# before the server starts; this catches a server started by hand on another address.
try:
    open_banner = serving.check_app(st.get_option("server.address"))
except ServingError as exc:
    st.error(f"RFLocal does not serve this address without sign-in. {exc}", icon=":material/lock:")
    st.stop()
if open_banner:
    st.warning(open_banner, icon=":material/lock_open:")

pages = [
    st.Page("pages/views/home.py", title="Overview", icon=":material/home:", default=True),
    st.Page("pages/views/scene_builder.py", title="Scene Builder", icon=":material/location_city:"),
    st.Page("pages/views/data_generation.py", title="Data Generation", icon=":material/cell_tower:"),
    st.Page("pages/views/training_monitor.py", title="Training Monitor", icon=":material/monitoring:"),
    st.Page("pages/views/live_inference.py", title="Live Inference", icon=":material/my_location:"),
    st.Page("pages/views/metrics.py", title="Metrics", icon=":material/analytics:"),
    st.Page("pages/views/ablations.py", title="Ablations", icon=":material/science:"),
]
st.navigation(pages).run()
