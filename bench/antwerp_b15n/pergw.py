"""Per-gateway weights of the radio-map score, learned on val out of fold (brief B15, second session).

Usage: python pergw.py TERMS.npz
Score of candidate j for message n: -dw d / tau + sum over gateways g of
  heard g:     a_g (-0.5 res^2 / spread^2 - log spread) + b_g log p_heard
  not heard g: c_g log(1 - p_heard)
(today every weight is 1). a_g = exp(A + alpha_g) etc., the per-gateway alphas with an L2 penalty lam.
Loss: the expected distance (km) to the truth under the softmax of the score over the 300 candidates (the
posterior's expected error, which the geometric median minimises), or the cross-entropy to candidates near the
truth. 5 folds of val: fit on four, answer the fifth (geometric median of the 30 best); OOF median / mean.
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.models.baselines import posterior_answer  # noqa: E402

torch.set_num_threads(1)
z = np.load(sys.argv[1])
tau = float(z["tau_db"])
pos = z["train_pos"]
H = np.isfinite(z["val_raw"])  # [N, S]
N, K, S = z["val_resid"].shape
iv = np.where(H[:, None, :], 1.0 / np.maximum(z["val_isd"].astype(np.float64), 1e-3) ** 2, 0.0)
Q_RSS = torch.tensor(np.where(H[:, None, :], -0.5 * z["val_resid"].astype(np.float64) ** 2 * iv + 0.5 * np.log(np.maximum(iv, 1e-12)), 0.0), dtype=torch.float32)
LP = z["val_lpg"].astype(np.float64)
Q_P = torch.tensor(np.where(H[:, None, :], LP, 0.0), dtype=torch.float32)
Q_N = torch.tensor(np.where(H[:, None, :], 0.0, LP), dtype=torch.float32)
D = torch.tensor(z["val_d"].astype(np.float64) / tau, dtype=torch.float32)
PTS = pos[z["val_cand"]]  # [N, K, 2]
DIST = torch.tensor(np.hypot(*(PTS - z["val_truth"][:, None, :]).transpose(2, 0, 1)) / 1000.0, dtype=torch.float32)


def scores(th, rows):
    A, B, C, dw = th["g"].unbind()
    a, b, c = (torch.exp(x + th[n]) for x, n in ((A, "a"), (B, "b"), (C, "c")))
    return (-torch.exp(dw) * D[rows] + (Q_RSS[rows] * a).sum(-1) + (Q_P[rows] * b).sum(-1) + (Q_N[rows] * c).sum(-1))


def fit(rows, lam, loss, steps=40):
    th = {"g": torch.zeros(4, dtype=torch.float32, requires_grad=True)}
    th.update({n: torch.zeros(S, dtype=torch.float32, requires_grad=True) for n in "abc"})
    free = [th["g"]] if lam is None else list(th.values())  # None: the four global weights only
    opt = torch.optim.LBFGS(free, max_iter=steps, line_search_fn="strong_wolfe")
    r = torch.tensor(rows)

    def closure():
        opt.zero_grad()
        s = scores(th, r)
        logp = torch.log_softmax(s, 1)
        if loss == "exp_dist":
            val = (logp.exp() * DIST[r]).sum(1).mean()
        else:  # cross-entropy to candidates within ~100 m
            tgt = torch.softmax(-DIST[r] / 0.1, 1)
            val = -(tgt * logp).sum(1).mean()
        if lam is not None:
            val = val + lam * sum((th[n] ** 2).sum() for n in "abc")
        val.backward()
        return val

    opt.step(closure)
    return {k: v.detach() for k, v in th.items()}


def answer(th, rows, k=30):
    s = scores(th, torch.tensor(rows)).numpy()
    o = np.argsort(-s, 1)[:, :k]
    sk = np.take_along_axis(s, o, 1)
    w = np.exp(sk - sk[:, :1])
    w /= w.sum(1, keepdims=True)
    p, _ = posterior_answer(np.take_along_axis(PTS[rows], o[..., None], 1), w, estimate="median")
    return np.hypot(*(p - z["val_truth"][rows]).T)


if __name__ == "__main__":
    zero = {"g": torch.zeros(4, dtype=torch.float32), **{n: torch.zeros(S, dtype=torch.float32) for n in "abc"}}
    e0 = answer(zero, np.arange(N))
    print(f"today's weights: val {np.median(e0):.0f} / {e0.mean():.1f}", flush=True)
    folds = np.random.default_rng(0).permutation(N) % 5
    # the expected distance is not a proper score (it sharpens without bound: NaN); the cross-entropy is
    for loss in ("ce",):
        for lam in (None, 1e-2):  # None: the four global weights only
            e = np.empty(N)
            for f in range(5):
                th = fit(np.flatnonzero(folds != f), lam, loss)
                e[folds == f] = answer(th, np.flatnonzero(folds == f))
            print(f"{loss} lam {lam}: OOF val {np.median(e):.0f} / {e.mean():.1f}  (last fold global {th['g'].numpy().round(2)})", flush=True)
