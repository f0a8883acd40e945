"""Duke CBRS (issue 15, brief C15): fit each cell's position and a log-distance + sector model to the
training reports, then locate a sample on a grid by that model's likelihood (it can answer inside unwalked
squares). Study code: numpy/scipy only, on arrays dumped from the bench workspace (see ``dump`` in study.py).

Per cell: mean RSRP mu(g) = p0 - 10 n log10(max(d, 10 m) / 100 m) - a (1 - cos(psi - phi)) / 2, with d and
psi the distance and bearing from the cell at (x, y) to g (a smooth sector pattern: front-to-back a dB).
A report is heard with probability pi * Phi((r - T) / s) of its RSRP r (a soft sensitivity T, and pi < 1
because phones list few neighbours), so the likelihood is
heard r: pi * N(r; mu, sigma) * Phi((r - T) / s); not heard: 1 - pi * Phi((mu - T) / sqrt(sigma^2 + s^2)).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares, minimize
from scipy.special import log_ndtr

D_MIN_M = 10.0
D_REF_M = 100.0
A_MAX_DB = 30.0  # front-to-back ratio cap (3GPP sector antennas: 25-30 dB)
NAMES = ("x_m", "y_m", "p0_dbm", "n", "phi_rad", "a_db", "t_dbm", "s_db", "sigma_db", "pi")


def unpack(v: np.ndarray) -> dict[str, float]:
    """Unconstrained vector -> named parameters (a, s, sigma > 0 by exp; pi in (0, 1) by logistic)."""
    return {"x_m": v[0], "y_m": v[1], "p0_dbm": v[2], "n": v[3], "phi_rad": v[4], "a_db": np.exp(v[5]),
            "t_dbm": v[6], "s_db": np.exp(v[7]), "sigma_db": np.exp(v[8]), "pi": 1 / (1 + np.exp(-v[9])),
            **({"x2_m": v[10], "y2_m": v[11], "p02_dbm": v[12]} if len(v) > 10 else {})}


def mean_dbm(p: dict[str, float], xy: np.ndarray) -> np.ndarray:
    """Model mean RSRP at positions ``xy`` [..., 2]."""
    dx, dy = xy[..., 0] - p["x_m"], xy[..., 1] - p["y_m"]
    d = np.maximum(np.hypot(dx, dy), D_MIN_M)
    psi = np.arctan2(dx, dy)
    mu = p["p0_dbm"] - 10 * p["n"] * np.log10(d / D_REF_M) - p["a_db"] * (1 - np.cos(psi - p["phi_rad"])) / 2
    if "x2_m" not in p:
        return mu
    # a second, omnidirectional source with the same label (PCI reuse: cell B is heard strongly 2 km apart)
    d2 = np.maximum(np.hypot(xy[..., 0] - p["x2_m"], xy[..., 1] - p["y2_m"]), D_MIN_M)
    mu2 = p["p02_dbm"] - 10 * p["n"] * np.log10(d2 / D_REF_M)
    return 10 * np.logaddexp(mu * np.log(10) / 10, mu2 * np.log(10) / 10) / np.log(10)


def loglik(p: dict[str, float], mu: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Log-likelihood of each report (r NaN: not heard) given model means ``mu`` (broadcast)."""
    heard = np.isfinite(r)
    rr = np.where(heard, r, 0.0)
    sig, s = p["sigma_db"], p["s_db"]
    lh = (np.log(p["pi"]) - 0.5 * ((rr - mu) / sig) ** 2 - np.log(sig * np.sqrt(2 * np.pi))
          + log_ndtr((rr - p["t_dbm"]) / s))
    pdet = p["pi"] * np.exp(log_ndtr((mu - p["t_dbm"]) / np.sqrt(sig ** 2 + s ** 2)))
    ln = np.log1p(-np.minimum(pdet, 1 - 1e-12))
    return np.where(heard, lh, ln)


def fit_cell(xy: np.ndarray, r: np.ndarray, *, starts: int = 12, seed: int = 0,
             sector: bool = True, two: bool = False) -> tuple[dict[str, float], float, list[float]]:
    """Fit one cell from positions [N, 2] and its RSRP [N] (NaN: not heard): best of several random starts.

    Returns the parameters, the mean negative log-likelihood and the start scores (to see if they agree).
    """
    rng = np.random.default_rng(seed)
    heard = np.isfinite(r)
    lo, hi = xy.min(0), xy.max(0)
    top = heard & (np.nan_to_num(r, nan=-999) >= np.nanpercentile(r, 98))
    first = xy[top].mean(0)
    cands = [first] + [rng.uniform(lo - 200, hi + 200) for _ in range(starts - 1)]
    extra_lo, extra_hi = ([lo[0] - 1000, lo[1] - 1000, -160], [hi[0] + 1000, hi[1] + 1000, -20]) if two else ([], [])

    def nll(v: np.ndarray) -> float:
        if not sector:
            v = v.copy(); v[5] = np.log(0.1)
        p = unpack(v)
        return -float(np.mean(loglik(p, mean_dbm(p, xy), r)))

    results, scores = [], []
    lo_b = [lo[0] - 1000, lo[1] - 1000, -160, 1.5, -np.inf, np.log(0.1)]
    hi_b = [hi[0] + 1000, hi[1] + 1000, -20, 6.0, np.inf, np.log(A_MAX_DB)]
    t0 = float(np.nanpercentile(r, 5))
    for c in cands:
        # stage 1: robust least squares on the heard reports only (the censored likelihood alone can
        # settle on "explain everything by the sensitivity" with a 20 dB sigma)
        u0 = np.array([c[0], c[1], np.nanmedian(r) + 10, 3.0, rng.uniform(-np.pi, np.pi), np.log(6.0)])
        if two:
            u0 = np.r_[u0, rng.uniform(lo, hi), np.nanmedian(r)]
        if not sector:
            u0[5] = np.log(0.1)

        def resid(u: np.ndarray) -> np.ndarray:
            q = unpack(np.r_[u[:5], (u[5] if sector else np.log(0.1)), 0, 0, 0, 0, u[6:]])
            return mean_dbm(q, xy[heard]) - r[heard]

        u = least_squares(resid, u0, loss="soft_l1", f_scale=6.0, bounds=(lo_b + extra_lo, hi_b + extra_hi),
                          max_nfev=200).x
        v0 = np.r_[u[:6], t0, np.log(3.0), np.log(8.0), 0.0, u[6:]]
        bounds = [(a, b) if np.isfinite(a) else (None, None) for a, b in zip(lo_b, hi_b)] + [
            (-145, -90), (np.log(0.5), np.log(20)), (np.log(2), np.log(20)), (-6, 8)] + list(zip(extra_lo, extra_hi))
        res = minimize(nll, v0, method="L-BFGS-B", bounds=bounds, options={"maxiter": 400})
        results.append(res.x); scores.append(float(res.fun))
    best = int(np.argmin(scores))
    v = results[best].copy()
    if not sector:
        v[5] = np.log(0.1)
    return unpack(v), scores[best], scores


def residual_sigma(p: dict[str, float], xy: np.ndarray, r: np.ndarray) -> float:
    """RMS of heard RSRP minus the model mean (dB): comparable with Geo2SigMap's 6.04 dB map RMSE."""
    h = np.isfinite(r)
    return float(np.sqrt(np.mean((r[h] - mean_dbm(p, xy[h])) ** 2)))


def grid(xy: np.ndarray, step_m: float, margin_m: float) -> np.ndarray:
    """Candidate positions [G, 2] covering the bounding box of ``xy`` plus a margin."""
    lo, hi = xy.min(0) - margin_m, xy.max(0) + margin_m
    gx, gy = np.arange(lo[0], hi[0] + step_m, step_m), np.arange(lo[1], hi[1] + step_m, step_m)
    X, Y = np.meshgrid(gx, gy)
    return np.c_[X.ravel(), Y.ravel()]


def grid_loglik(cells: list[dict[str, float]], g: np.ndarray, rss: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Log-likelihood [N, G] of every sample's reports [N, C] at every grid point [G, 2]."""
    mus = [mean_dbm(p, g) for p in cells]
    out = np.empty((len(rss), len(g)), dtype=np.float32)
    for a in range(0, len(rss), chunk):
        r = rss[a:a + chunk]
        acc = np.zeros((len(r), len(g)))
        for c, p in enumerate(cells):
            acc += loglik(p, mus[c][None, :], r[:, c:c + 1])
        out[a:a + chunk] = acc
    return out


def geometric_median(pts: np.ndarray, w: np.ndarray, iters: int = 50) -> np.ndarray:
    """Weighted geometric median (Weiszfeld) of ``pts`` [M, 2] with weights [M]."""
    z = (w[:, None] * pts).sum(0) / w.sum()
    for _ in range(iters):
        d = np.maximum(np.linalg.norm(pts - z, axis=1), 1e-3)
        q = w / d
        z = (q[:, None] * pts).sum(0) / q.sum()
    return z


def pack(p: dict[str, float]) -> np.ndarray:
    """Named parameters -> the unconstrained vector of :func:`unpack`."""
    v = [p["x_m"], p["y_m"], p["p0_dbm"], p["n"], p["phi_rad"], np.log(p["a_db"]), p["t_dbm"], np.log(p["s_db"]),
         np.log(p["sigma_db"]), np.log(min(max(p["pi"], 1e-3), 1 - 1e-3) / (1 - min(max(p["pi"], 1e-3), 1 - 1e-3)))]
    return np.array(v + ([p["x2_m"], p["y2_m"], p["p02_dbm"]] if "x2_m" in p else []), dtype=np.float64)


def refit_cell(xy: np.ndarray, r: np.ndarray, p: dict[str, float]) -> dict[str, float]:
    """Re-optimise a fitted cell on other data (one local run from ``p``: block folds, where a full multi-start
    fit per fold would take too long on the shared cores)."""
    v0 = pack(p)
    v0[9] = np.clip(v0[9], -6, 8)

    def nll(v: np.ndarray) -> float:
        q = unpack(v)
        return -float(np.mean(loglik(q, mean_dbm(q, xy), r)))

    lo, hi = xy.min(0), xy.max(0)
    bounds = [(v0[0] - 1500, v0[0] + 1500), (v0[1] - 1500, v0[1] + 1500), (-160, -20), (1.5, 6.0), (None, None),
              (np.log(0.1), np.log(A_MAX_DB)), (-145, -90), (np.log(0.5), np.log(20)), (np.log(2), np.log(20)),
              (-6, 8)] + ([(v0[10] - 1500, v0[10] + 1500), (v0[11] - 1500, v0[11] + 1500), (-160, -20)]
                          if len(v0) > 10 else [])
    v0 = np.array([np.clip(a, b[0] if b[0] is not None else -np.inf, b[1] if b[1] is not None else np.inf)
                   for a, b in zip(v0, bounds)])
    del lo, hi
    return unpack(minimize(nll, v0, method="L-BFGS-B", bounds=bounds, options={"maxiter": 300}).x)
