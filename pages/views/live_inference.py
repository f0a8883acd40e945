"""Live Inference: not built yet; says what it will do and what it needs first."""

from __future__ import annotations

import streamlit as st

from rflocal_core import status

info = status.stage_status("Live Inference")
st.title("Live Inference")
st.markdown(info["what"][:1].upper() + info["what"][1:])
st.info("This stage is not available yet in this version of RFLocal.")
if info["needs"]:
    st.markdown(
        f"**Needs first:** {info['needs']}. The workspace has {info['scenes']} scene(s), "
        f"{info['datasets']} dataset(s) and {info['runs']} run(s)."
    )
