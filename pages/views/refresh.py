"""Redraw a page when a background job ends. Not a page itself: the pages import it.

A page's listings (datasets, runs, counts) are read when the whole page runs; a fragment that
polls a job redraws only itself, so a finished generation stayed "partial (resumable)" in the
Datasets tab until the page was left. :func:`rerun_when_a_job_ends` polls the job registry
(in memory, cheap) and reruns the whole page once a job has ended since the page was drawn.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from rflocal_core.jobs import REGISTRY

#: Session key: ids of the jobs that had ended when this session last drew a whole page.
SEEN_KEY = "jobs_ended_seen"


def rerun_when_a_job_ends(*, every_s: float = 1.5) -> None:
    """Rerun the whole page within ``every_s`` of any background job ending.

    Call it at the top of a page, before the page reads its listings: a job that ends after
    this call is then one the page has not seen.
    """
    st.session_state[SEEN_KEY] = REGISTRY.ended()

    @st.fragment(run_every=every_s)
    def watch_jobs() -> None:
        ended = REGISTRY.ended()
        if ended - st.session_state.get(SEEN_KEY, frozenset()):
            st.session_state[SEEN_KEY] = ended
            st.rerun(scope="app")

    watch_jobs()


def job_line(snap: dict[str, Any]) -> str:
    """The text of a job's progress bar: "**label** — stage (12 s, about 20–30 s left)"; a queued job
    says its place ("**label** — queued, 2nd in line"), a job of another user its owner."""
    parts = [f"{snap['elapsed_s']:.0f} s"] if snap.get("elapsed_s") is not None else []
    if snap.get("eta_text"):  # a range, only once it is known
        parts.append(snap["eta_text"])
    owner = f" [{snap['owner']}]" if snap.get("owner") not in (None, "local") else ""
    return f"**{snap['label']}**{owner} — {snap['stage']}" + (f" ({', '.join(parts)})" if parts else "")
