"""RFLocal workbench: the router. Each page lives in pages/views/ and calls rflocal_core.

The page scripts sit one level down on purpose: Streamlit treats ``*.py`` files directly
in ``pages/`` as a legacy multipage app, and the first session of a server would then
show that legacy navigation instead of this one.

Sign-in next (pages/views/signin.py): with a password or an identity provider configured, a session
sees only the sign-in form until it has signed in, and the navigation then lists only the pages its
role may use.
"""

from __future__ import annotations

import streamlit as st

from pages.views.signin import account_panel, secrets_files, signed_in_user
from rflocal_core import serving, status
from rflocal_core.access import allowed
from rflocal_core.errors import ServingError

st.set_page_config(page_title="RFLocal", page_icon=":satellite_antenna:", layout="wide")

# Other machines only with sign-in or RFLOCAL_AUTH=none: `python -m rflocal_core serve` checks this
# before the server starts; this catches a server started by hand on another address.
try:
    open_banner = serving.check_app(st.get_option("server.address"), files=secrets_files())
except ServingError as exc:
    st.error(f"RFLocal does not serve this address without sign-in. {exc}", icon=":material/lock:")
    st.stop()
if open_banner:
    st.warning(open_banner, icon=":material/lock_open:")

user = signed_in_user()

# Each page with the action it exists for (status.WORKFLOW): a role that may not take it does not see the page.
ACTION = {step["page"]: step["action"] for step in status.WORKFLOW}
pages = [
    (st.Page("pages/views/home.py", title="Overview", icon=":material/home:", default=True), "view"),
    *((st.Page(f"pages/views/{script}.py", title=title, icon=icon), ACTION[title]) for script, title, icon in (
        ("scene_builder", "Scene Builder", ":material/location_city:"),
        ("data_generation", "Data Generation", ":material/cell_tower:"),
        ("training_monitor", "Training Monitor", ":material/monitoring:"),
        ("live_inference", "Live Inference", ":material/my_location:"),
        ("metrics", "Metrics", ":material/analytics:"),
        ("ablations", "Ablations", ":material/science:"),
    )),
]
account_panel(user)
st.navigation([page for page, action in pages if allowed(user, action)]).run()
