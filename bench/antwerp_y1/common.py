"""Shared helpers of the Y1 offline Antwerp studies (npz from bench/real_x5/dump.py)."""
import numpy as np


def errs(p, t):
    return np.hypot(*(p - t).T)


def fig(e):
    return f"{np.median(e):.0f}/{e.mean():.0f}"


def fill(rss, floor):
    return np.where(np.isfinite(rss), rss, floor)


def topk(q, ref, K, *, exclude_self=False):
    """K nearest fingerprints (Euclidean dB): indices [N, K], distances [N, K], sorted."""
    n = len(q)
    idx = np.empty((n, K), int)
    dist = np.empty((n, K))
    r2 = (ref**2).sum(1)
    for s in range(0, n, 1024):
        a = q[s:s + 1024]
        d = np.sqrt(np.maximum((a**2).sum(1)[:, None] + r2[None] - 2 * a @ ref.T, 0))
        if exclude_self:
            d[np.arange(len(a)), s + np.arange(len(a))] = np.inf
        nn = np.argpartition(d, K, 1)[:, :K]
        dk = np.take_along_axis(d, nn, 1)
        o = np.argsort(dk, 1)
        idx[s:s + 1024] = np.take_along_axis(nn, o, 1)
        dist[s:s + 1024] = np.take_along_axis(dk, o, 1)
    return idx, dist


def geomedian(pts, w, iters=40):
    """Weighted geometric median of pts [N, K, 2] with weights [N, K] (rows sum to 1)."""
    est = (w[..., None] * pts).sum(1)
    for _ in range(iters):
        d = np.hypot(*(pts - est[:, None]).transpose(2, 0, 1))
        inv = w / np.maximum(d, 1e-3)
        est = (inv[..., None] * pts).sum(1) / inv.sum(1)[:, None]
    return est


def density_mode(pts, w, h):
    """The point of pts [N, K, 2] where the weighted Gaussian kernel density (bandwidth h) is highest."""
    d2 = ((pts[:, :, None, :] - pts[:, None, :, :]) ** 2).sum(-1)  # [N, K, K]
    dens = (w[:, None, :] * np.exp(-0.5 * d2 / h**2)).sum(-1)
    j = dens.argmax(1)
    return pts[np.arange(len(pts)), j], dens


def score(e):
    return 0.5 * (np.median(e) + e.mean())


def report_sigmas(by, ens, z):
    """Each candidate sigma of ``by[split][name]``: its scale + power fitted on val, its val and test coverage."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from rflocal_core.metrics import calibration
    from rflocal_core.models.inputs import Prediction
    from rflocal_core.train.calibrate import fit_sigma_scale, scale_sigma

    for k in by["val"]:
        cal = fit_sigma_scale(ens["val"] - z["val_truth"], by["val"][k])
        q = scale_sigma(Prediction(ens["test"], by["test"][k]), cal.scale, power=cal.power, ref_m=cal.ref_m)
        cc = calibration(q.position_m - z["test_truth"], q.sigma_m)
        print(f"{k:16s} p={cal.power:g} val {100*cal.inside_1sigma_after:.0f}/{100*cal.inside_2sigma_after:.0f} "
              f"test {100*cc.inside_1sigma:.1f}/{100*cc.inside_2sigma:.1f}")
