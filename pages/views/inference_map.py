"""The Live Inference map as a Plotly figure in scene metres: buildings, nodes, predictions with their
ellipses, the truth, a posterior heatmap with its colour bar, a scale bar and a legend.

Not a page itself: app.py's navigation lists the pages; live_inference.py draws with it. Everything
it draws comes from the core (:func:`rflocal_core.infer.scene_map`, the predictions and heatmaps);
this module only lays it out. Scene metres, not tiles: the map works offline and keeps distances true.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from rflocal_core import infer

#: One colour per run (hex), in the order the runs are chosen.
RUN_COLOURS = ("#1f6feb", "#d1242f", "#8250df", "#bf8700", "#0969da", "#cf222e")
#: The posterior's colour scale: light (little) to dark (the peak), readable over grey buildings.
HEAT_SCALE = "YlOrRd"
#: Posterior cells under this fraction of the peak are left transparent.
HEAT_FLOOR = 1e-3
#: Trace names a test (or a reader of the figure's JSON) finds the parts by.
SCALE_BAR, BUILDINGS, NODES, TRUTH = "scale bar", "buildings", "nodes", "true position"


def _buildings(view: infer.SceneMap) -> go.Scatter:
    xs: list[float | None] = []
    ys: list[float | None] = []
    for rx, ry in view.buildings:
        xs += [*rx, rx[0], None]
        ys += [*ry, ry[0], None]
    return go.Scatter(x=xs, y=ys, mode="lines", fill="toself", fillcolor="rgba(140,149,159,0.35)",
                      line={"color": "rgb(110,119,129)", "width": 1}, name=BUILDINGS, hoverinfo="skip")


def _heat(heat: infer.Heatmap, label: str) -> go.Heatmap:
    rel = heat.p / max(float(heat.p.max()), 1e-300)
    z = np.round(np.where(rel >= HEAT_FLOOR, rel, np.nan), 3)  # clear where negligible; 3 digits keep the page light
    return go.Heatmap(x=heat.grid.x_m, y=heat.grid.y_m, z=z, zmin=0.0, zmax=1.0, colorscale=HEAT_SCALE, opacity=0.85,
                      name=label, showlegend=True, showscale=True,
                      colorbar={"title": {"text": "posterior<br>(÷ peak)"}, "len": 0.6, "thickness": 14},
                      hovertemplate="x %{x:.0f} m, y %{y:.0f} m<br>posterior %{z:.3f} of the peak<extra></extra>")


def _run_traces(res: infer.RunPrediction, row: infer.PredictedSample, colour: str) -> list[go.Scatter]:
    traces = []
    for level, width, dash in ((1, 2.5, "solid"), (2, 1.2, "dot")):
        ring = infer.ellipse_xy(row, k=infer.ellipse_k(row, level))
        if ring:
            traces.append(go.Scatter(
                x=ring[0], y=ring[1], mode="lines", line={"color": colour, "width": width, "dash": dash},
                name=f"{res.model} {level}σ ({100 * infer.ELLIPSE_LEVELS[level]:.0f}%)", legendgroup=res.run_id,
                hoverinfo="skip"))
    traces.append(go.Scatter(
        x=[row.x_m], y=[row.y_m], mode="markers", name=f"{res.model} ({res.run_id})", legendgroup=res.run_id,
        marker={"color": colour, "size": 12, "line": {"color": "white", "width": 1.5}},
        hovertemplate=f"{res.model}: predicted x %{{x:.1f}} m, y %{{y:.1f}} m<br>{row.lat}, {row.lon}<extra></extra>"))
    return traces


def _scale_bar(box: tuple[float, float, float, float], length: float) -> tuple[go.Scatter, dict[str, Any]]:
    """A bar of ``length`` metres in the strip below ``box`` (left), in data units so it scales with zooming."""
    x0, x1, y0, y1 = box
    left, base = x0 + 0.02 * (x1 - x0), y0 - 0.06 * (y1 - y0)
    tick = 0.012 * (y1 - y0)
    bar = go.Scatter(x=[left, left, None, left, left + length, None, left + length, left + length],
                     y=[base - tick, base + tick, None, base, base, None, base - tick, base + tick],
                     mode="lines", line={"color": "black", "width": 3}, name=SCALE_BAR, showlegend=False,
                     hoverinfo="skip")
    label = {"x": left + length / 2, "y": base + tick, "text": f"{length:g} m", "showarrow": False,
             "yanchor": "bottom", "font": {"size": 13}, "bgcolor": "rgba(255,255,255,0.8)"}
    return bar, label


def map_figure(view: infer.SceneMap, results: list[infer.RunPrediction], sample_id: str, *,
               heat: infer.Heatmap | None = None, heat_label: str = "posterior", focus: bool = False) -> go.Figure:
    """The map of one sample: the scene of ``view``, each run's prediction and ellipses, the truth, and
    ``heat`` (a posterior) under them with a colour bar; scale bar, legend, equal axes in metres.

    The axes show the whole scene (``view.extent_m``: no building clipped), or with ``focus`` the box
    around the sample's predictions (``view.focus_m``); zooming and panning reach the rest."""
    fig = go.Figure()
    if heat is not None:
        fig.add_trace(_heat(heat, heat_label))
    if view.buildings:
        fig.add_trace(_buildings(view))
    if view.nodes:
        fig.add_trace(go.Scatter(
            x=[n["x_m"] for n in view.nodes], y=[n["y_m"] for n in view.nodes], mode="markers+text",
            text=[n["id"] for n in view.nodes], textposition="top center", textfont={"size": 10}, name=NODES,
            marker={"symbol": "triangle-up", "color": "#24292f", "size": 11},
            hovertemplate="node %{text}: x %{x:.0f} m, y %{y:.0f} m<extra></extra>"))
    truth = None
    for k, res in enumerate(results):
        row = res.sample(sample_id)
        for trace in _run_traces(res, row, RUN_COLOURS[k % len(RUN_COLOURS)]):
            fig.add_trace(trace)
        truth = row.truth or truth
    if truth is not None and truth.x_m is not None:
        fig.add_trace(go.Scatter(x=[truth.x_m], y=[truth.y_m], mode="markers", name=TRUTH,
                                 marker={"symbol": "x", "color": "#1a7f37", "size": 13, "line": {"width": 1}},
                                 hovertemplate="true position x %{x:.1f} m, y %{y:.1f} m<extra></extra>"))
    box, length = ((view.focus_m, view.focus_scale_bar_m) if focus and view.focus_m
                   else (view.extent_m, view.scale_bar_m))
    bar, label = _scale_bar(box, length)
    fig.add_trace(bar)
    x0, x1, y0, y1 = box
    y0 -= 0.09 * (y1 - y0)  # the strip below the scene holds the scale bar
    fig.update_layout(
        height=780, margin={"l": 10, "r": 10, "t": 10, "b": 10}, plot_bgcolor="white", annotations=[label],
        legend={"orientation": "h", "yanchor": "top", "y": -0.08, "xanchor": "left", "x": 0.0},
        xaxis={"title": "x east (m)", "range": [x0, x1], "showgrid": True, "gridcolor": "#eef1f4", "zeroline": False},
        yaxis={"title": "y north (m)", "range": [y0, y1], "scaleanchor": "x", "scaleratio": 1, "showgrid": True,
               "gridcolor": "#eef1f4", "zeroline": False},
    )
    return fig
