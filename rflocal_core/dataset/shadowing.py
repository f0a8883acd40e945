"""Spatially correlated log-normal shadow fading (Gudmundson's exponential model).

The field has covariance ``σ² · exp(-r / d_corr)`` between points ``r`` apart. It is
drawn exactly on a periodic grid by circulant embedding (the covariance's
eigenvalues are the FFT of its first row); padding by several correlation distances
keeps the wrap-around out of the part that is used.
"""

from __future__ import annotations

import numpy as np


def gudmundson_field(
    ny: int, nx: int, cell_m: float, *, sigma_db: float, corr_m: float, rng: np.random.Generator, count: int = 1
) -> np.ndarray:
    """Draw ``count`` independent fields of shape [ny, nx] (returns [count, ny, nx], float32)."""
    if sigma_db == 0:
        return np.zeros((count, ny, nx), dtype=np.float32)
    pad = int(np.ceil(4 * corr_m / cell_m))
    py, px = ny + pad, nx + pad
    dy = np.minimum(np.arange(py), py - np.arange(py)) * cell_m
    dx = np.minimum(np.arange(px), px - np.arange(px)) * cell_m
    r = np.hypot(dy[:, None], dx[None, :])
    eig = np.fft.fft2(np.exp(-r / corr_m)).real
    sqrt_eig = np.sqrt(np.maximum(eig, 0.0))
    out = np.empty((count, ny, nx), dtype=np.float32)
    for k in range(count):
        white = rng.standard_normal((py, px))
        field = np.fft.ifft2(sqrt_eig * np.fft.fft2(white, norm="ortho"), norm="ortho").real
        out[k] = sigma_db * field[:ny, :nx]
    return out
