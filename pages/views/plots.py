"""Figures the pages share (Plotly). Not a page itself: the pages import it (``from pages.views.plots import ...``).

A figure is built from the data a core call returns, so a test can build it and read its traces.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

#: Fill and outline of buildings on a map; a cell without signal stays white, a building is grey.
BUILDING_FILL = "#c9ced6"
BUILDING_LINE = "#2b2f36"


def fit_to_extent(fig: go.Figure, extent_m: tuple[float, float, float, float]) -> go.Figure:
    """Show exactly ``extent_m`` (x_min, y_min, x_max, y_max) at one metre = one metre on both axes.

    ``constrain="domain"`` shrinks the plotting area to keep the aspect instead of widening the
    range, which is what showed ±600 m around a 512 m scene in a wide figure.
    """
    x_min, y_min, x_max, y_max = (float(v) for v in extent_m)
    fig.update_xaxes(range=[x_min, x_max], constrain="domain", title="x (m, east)")
    fig.update_yaxes(range=[y_min, y_max], constrain="domain", scaleanchor="x", scaleratio=1, title="y (m, north)")
    return fig


def radio_map_figure(scene: dict[str, Any], site: int, *, height: int = 560) -> go.Figure:
    """Path gain of one site over a scene, with the buildings filled and outlined and the sites marked.

    Parameters
    ----------
    scene
        One entry of ``dataset_overview(...)["scenes"]``: ``x_m``, ``y_m``, ``path_gain_db``
        [S, ny, nx] (NaN: no signal), ``building_height_m`` [ny, nx], ``site_ids``, ``site_xy``,
        ``extent_m``.
    site
        Index of the site whose map is drawn.
    """
    x, y = np.asarray(scene["x_m"]), np.asarray(scene["y_m"])
    building = np.asarray(scene["building_height_m"]) > 0
    fig = go.Figure(go.Heatmap(z=scene["path_gain_db"][site], x=x, y=y, colorscale="Viridis", name="path gain",
                               colorbar={"title": "path gain (dB)"}, hoverongaps=False))
    # buildings over the map: a grey fill (NaN elsewhere lets the map show through) and one outline level
    fig.add_trace(go.Heatmap(z=np.where(building, 1.0, np.nan), x=x, y=y, name="buildings", showscale=False,
                             colorscale=[[0, BUILDING_FILL], [1, BUILDING_FILL]], hoverinfo="skip"))
    fig.add_trace(go.Contour(z=building.astype(float), x=x, y=y, name="building outlines", showscale=False,
                             contours={"start": 0.5, "end": 0.5, "size": 1, "coloring": "none"},
                             line={"color": BUILDING_LINE, "width": 1}, hoverinfo="skip"))
    xy = np.asarray(scene["site_xy"])
    fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers+text", text=scene["site_ids"],
                             textposition="top center", cliponaxis=False, name="sites",
                             marker={"color": "red", "size": 9, "symbol": "triangle-up"}))
    fig.update_layout(height=height, legend={"orientation": "h", "y": -0.12}, plot_bgcolor="white")
    return fit_to_extent(fig, scene["extent_m"])


def variogram_figure(fit: Any, *, height: int = 360) -> go.Figure:
    """The binned semivariogram of a :class:`~rflocal_core.dataset.noisefit.NoiseFit` and its exponential fit."""
    v = fit.variogram
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=v.lag_m, y=v.semivariance_db2, mode="markers", name="empirical",
                             customdata=v.pairs, hovertemplate="%{x:.1f} m: %{y:.1f} dB² (%{customdata} pairs)"))
    fig.add_trace(go.Scatter(x=v.lag_m, y=v.model_db2, mode="lines", name="exponential fit"))
    fig.update_layout(height=height, title="Variogram of the residuals", xaxis_type="log",
                      xaxis_title="lag between the true positions (m)", yaxis_title="semivariance (dB²)")
    return fig


def residual_histogram_figure(fit: Any, *, height: int = 360) -> go.Figure:
    """Histogram of the residuals (RSS less the fitted path loss) of the heard reports."""
    edges = np.asarray(fit.residual_histogram["edges_db"])
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=fit.residual_histogram["counts"],
                           width=np.diff(edges), name="reports"))
    fig.update_layout(height=height, title="Residuals of the heard reports", xaxis_title="residual (dB)",
                      yaxis_title="reports", bargap=0)
    return fig


def not_heard_figure(fit: Any, *, height: int = 360) -> go.Figure:
    """Fraction of (sample, node) links not heard against distance."""
    bins = fit.not_heard
    fig = go.Figure(go.Scatter(x=[np.sqrt(b.lo_m * b.hi_m) for b in bins], y=[b.not_heard for b in bins],
                               mode="lines+markers", customdata=[b.links for b in bins],
                               hovertemplate="%{x:.0f} m: %{y:.0%} of %{customdata} links"))
    fig.update_layout(height=height, title="Not heard against distance", xaxis_type="log",
                      xaxis_title="distance to the node (m)", yaxis_title="fraction not heard", yaxis_range=[0, 1])
    return fig
