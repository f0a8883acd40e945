"""Duke CBRS (issue 15, brief C15): locate on a grid by fitted cell models, alone or mixed with kNN.

Usage (from the project root; DUMP_DIR holds duke_s{0,1,2}.npz written by ``dump.py``)::

    PYTHONPATH=$PWD nice -n 10 .venv/bin/python bench/duke_c15/study.py DUMP_DIR 0 1 2

For each area split: fit the six cells on train (cellfit.fit_cell), print their parameters and residual
sigma, then score every configuration of the grid posterior on val and test; the configuration is chosen on
val (lowest (median + mean) / 2, as kNN's own choice), test is reported for that choice and, for reference
only, the best on test.
"""
from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import cellfit as cf  # noqa: E402

STEP_M = 20.0
MARGIN_M = 200.0
TWO_IF_SIGMA_DB = 9.0  # a cell whose one-source residual exceeds this is fitted with two sources too
TWO_MIN_GAIN = 0.01  # kept if the mean negative log-likelihood per training sample drops by this


def kde_log(g: np.ndarray, pts: np.ndarray, w: np.ndarray, h_m: float, eps: float) -> np.ndarray:
    """log of (weighted Gaussian KDE of ``pts`` at ``g``, normalised to sum 1 over g) + eps / G."""
    out = np.zeros(len(g))
    for a in range(0, len(pts), 2000):
        d2 = ((g[:, None, :] - pts[None, a:a + 2000, :]) ** 2).sum(-1)
        out += (np.exp(-0.5 * d2 / h_m ** 2) * w[None, a:a + 2000]).sum(1)
    out /= out.sum()
    return np.log(out + eps / len(g))


def knn_log(g: np.ndarray, nnpos: np.ndarray, nnw: np.ndarray, h_m: float, eps: float) -> np.ndarray:
    """Per sample [N, G]: log of the kNN neighbours' weights blurred by a Gaussian of ``h_m`` (+ eps / G)."""
    out = np.empty((len(nnpos), len(g)), dtype=np.float32)
    for i in range(len(nnpos)):
        d2 = ((g[:, None, :] - nnpos[i][None]) ** 2).sum(-1)
        v = (np.exp(-0.5 * d2 / h_m ** 2) * nnw[i][None]).sum(1)
        out[i] = np.log(v / max(v.sum(), 1e-300) + eps / len(g))
    return out


def answer(g: np.ndarray, logpost: np.ndarray, how: str, top: int = 400) -> np.ndarray:
    """Answers [N, 2] from log posteriors [N, G]: ``gmed`` (geometric median of the ``top`` most probable
    grid points, Weiszfeld), ``mean`` (over the same points) or ``map``."""
    if how == "map":
        return g[np.argmax(logpost, axis=1)]
    idx = np.argpartition(-logpost, top, axis=1)[:, :top]
    lp = np.take_along_axis(logpost, idx, 1).astype(np.float64)
    w = np.exp(lp - lp.max(1, keepdims=True))
    pts = g[idx]  # [N, top, 2]
    z = (w[..., None] * pts).sum(1) / w.sum(1, keepdims=True)
    if how == "mean":
        return z
    for _ in range(30):
        q = w / np.maximum(np.linalg.norm(pts - z[:, None], axis=2), 1e-3)
        z = (q[..., None] * pts).sum(1) / q.sum(1, keepdims=True)
    return z


def fit_cells(xy: np.ndarray, rss: np.ndarray, seed: int) -> list[dict[str, float]]:
    """Fit every cell; print its parameters, residual sigma and how the random starts agree."""
    cells = []
    for c in range(rss.shape[1]):
        t = time.time()
        p, nll, scores = cf.fit_cell(xy, rss[:, c], starts=6, seed=seed)
        if cf.residual_sigma(p, xy, rss[:, c]) > TWO_IF_SIGMA_DB:  # try a second source (PCI reuse)
            p2, nll2, scores2 = cf.fit_cell(xy, rss[:, c], starts=4, seed=seed, two=True)
            if nll2 < nll - TWO_MIN_GAIN:
                p, nll, scores = p2, nll2, scores2
        cells.append(p)
        good = np.sum(np.array(scores) < nll + 0.01)
        print(f"  cell {'ABCDEF'[c]}: " + ", ".join(f"{k} {float(v):.2f}" for k, v in p.items())
              + f"; heard {np.isfinite(rss[:, c]).mean():.2f};"
              f" residual sigma {cf.residual_sigma(p, xy, rss[:, c]):.1f} dB;"
              f" {good}/{len(scores)} starts at the best; {time.time() - t:.0f} s", flush=True)
    return cells


def configs() -> list[dict]:
    """The option grid (model temperature, walked-ground prior, kNN term, answer)."""
    out = []
    for tau, prior, alpha, how in itertools.product(
            (0.0, 0.3, 1.0), ((None, 0), (50, 1e-2), (100, 1e-2), (100, 0.3)),
            ((0.0, None), (1.0, 50), (1.0, 100), (1.0, 200)), ("gmed", "mean")):
        if tau == 0 and alpha[0] == 0:
            continue
        out.append({"tau": tau, "prior_h_m": prior[0], "prior_eps": prior[1], "alpha": alpha[0],
                    "knn_h_m": alpha[1], "how": how})
    return out


def errors_each(z, split: str, cells, g, cache, cfgs: list[dict] | None = None) -> dict:
    """Per-sample errors [N] of every configuration on ``split`` (arrays ``{split}_xy``, ``_rss``, ``_nnpos``,
    ``_nnw`` of ``z``; the prior from ``train_xy``)."""
    xy = z[f"{split}_xy"]
    ll = cf.grid_loglik(cells, g, z[f"{split}_rss"])
    res = {}
    for c in configs() if cfgs is None else cfgs:
        lp = c["tau"] * ll
        if c["prior_h_m"]:
            key = ("prior", c["prior_h_m"], c["prior_eps"])
            if key not in cache:
                cache[key] = kde_log(g, z["train_xy"], np.ones(len(z["train_xy"])), c["prior_h_m"], c["prior_eps"])
            lp = lp + cache[key][None]
        if c["alpha"]:
            key = (split, "knn", c["knn_h_m"])
            if key not in cache:
                cache[key] = knn_log(g, z[f"{split}_nnpos"], z[f"{split}_nnw"], c["knn_h_m"], 1e-6)
            lp = lp + c["alpha"] * cache[key]
        res[json.dumps(c)] = np.linalg.norm(answer(g, lp, c["how"]) - xy, axis=1)
    return res


def errors(z, split: str, cells, g, cache) -> dict:
    """Median / mean error of every configuration on ``split``."""
    res = {}
    for key, e in errors_each(z, split, cells, g, cache).items():
        res[key] = (float(np.median(e)), float(np.mean(e)))
        print(f"    {split} {key}: {res[key][0]:.0f} / {res[key][1]:.0f}", flush=True)
    return res


def main(dump: Path, seeds: list[int]) -> None:
    """Per split: fit, score on val and test, print the val choice."""
    for s in seeds:
        z = dict(np.load(dump / f"duke_s{s}.npz"))
        print(f"split {s}: fit on train ({len(z['train_xy'])} samples)", flush=True)
        cells_file = dump / f"c15_s{s}_cells.json"
        if cells_file.exists():  # fitted before (the fit is the slow part): re-score only
            cells = json.loads(cells_file.read_text())
            print("  cells from " + str(cells_file) + ": " + json.dumps(cells), flush=True)
        else:
            cells = fit_cells(z["train_xy"], z["train_rss"], s)
            cells_file.write_text(json.dumps([{k: float(v) for k, v in p.items()} for p in cells]))
        g = cf.grid(z["train_xy"], STEP_M, MARGIN_M)
        cache: dict = {}
        ev = {sp: errors(z, sp, cells, g, cache) for sp in ("val", "test")}
        knn = {sp: np.linalg.norm(z[f"{sp}_knn"] - z[f"{sp}_xy"], axis=1) for sp in ("val", "test")}
        print(f"  knn: val {np.median(knn['val']):.0f} / {knn['val'].mean():.0f}, "
              f"test {np.median(knn['test']):.0f} / {knn['test'].mean():.0f}")
        order = sorted(ev["val"], key=lambda k: sum(ev["val"][k]))
        for k in order[:5]:
            print(f"  val-ranked {k}: val {ev['val'][k][0]:.0f} / {ev['val'][k][1]:.0f}, "
                  f"test {ev['test'][k][0]:.0f} / {ev['test'][k][1]:.0f}")
        best = min(ev["test"], key=lambda k: ev["test"][k][0])
        print(f"  best on test (reference only) {best}: test {ev['test'][best][0]:.0f} / {ev['test'][best][1]:.0f}")
        for k in ev["test"]:  # the model alone, uniform prior, for the record
            c = json.loads(k)
            if c["alpha"] == 0 and c["prior_h_m"] is None:
                print(f"  model alone tau {c['tau']} {c['how']}: val {ev['val'][k][0]:.0f} / {ev['val'][k][1]:.0f}, "
                      f"test {ev['test'][k][0]:.0f} / {ev['test'][k][1]:.0f}")
        with open(dump / f"c15_s{s}_eval.json", "w") as f:
            json.dump(ev, f)


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(a) for a in sys.argv[2:]])
