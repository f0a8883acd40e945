"""Weights of the radio-map score's terms, chosen on val (brief B15, second session).

Usage: python terms.py TERMS.npz [--test]
Score of a candidate = -d / tau + a * heard-RSS term + b * sum log p_heard + c * sum log(1 - p_heard) (not heard);
today a = b = c = 1. Answer: the weighted geometric median of the k best (softmin of the score). Grid on val by
mean error; --test prints the val choice's test figures once.
"""
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.models.baselines import posterior_answer  # noqa: E402

z = np.load(sys.argv[1])
tau = float(z["tau_db"])
pos = z["train_pos"]


def answer(split, a, b, c, k=30, dw=1.0, T=1.0):
    s = -dw * z[f"{split}_d"] / tau + a * z[f"{split}_rss"] + b * z[f"{split}_lph"] + c * z[f"{split}_lnot"]
    o = np.argsort(-s, axis=1)[:, :k]
    sk = np.take_along_axis(s, o, 1).astype(np.float64)
    w = np.exp(sk - sk[:, :1])
    w /= w.sum(1, keepdims=True)
    pts = pos[np.take_along_axis(z[f"{split}_cand"], o, 1)]
    p, sig = posterior_answer(pts, w, estimate="median", temperature=T)
    e = np.hypot(*(p - z[f"{split}_truth"]).T)
    return e, p, sig


def out_of_fold(folds=5, seed=0):
    """The grid's choice made on four fifths of val, scored on the fifth: the honest val figure of the choice."""
    grid = list(itertools.product((0.5, 1, 1.5), (0, 0.5, 1, 2), (0, 0.5, 1, 2), (0, 0.5, 1)))
    errs = np.stack([answer("val", a, b, c, dw=dw)[0] for a, b, c, dw in grid])  # [G, N]
    fold = np.random.default_rng(seed).permutation(errs.shape[1]) % folds
    oof = np.empty(errs.shape[1])
    for f in range(folds):
        best = int(np.argmin(errs[:, fold != f].mean(1)))
        oof[fold == f] = errs[best, fold == f]
    return oof


if __name__ == "__main__":
    e, _, _ = answer("val", 1, 1, 1)
    print(f"today (a=b=c=1, k 30): val {np.median(e):.0f} / {e.mean():.1f}")
    rows = []
    for a, b, c, dw in itertools.product((0.5, 1, 1.5), (0, 0.5, 1, 2), (0, 0.5, 1, 2), (0, 0.5, 1)):
        e, _, _ = answer("val", a, b, c, dw=dw)
        rows.append((e.mean(), np.median(e), a, b, c, dw))
    rows.sort()
    for r in rows[:12]:
        print("val mean %.1f median %.0f  a %.1f b %.1f c %.1f dw %.1f" % r)
    for seed in (0, 1, 2):
        o = out_of_fold(seed=seed)
        print(f"choice on 4/5 of val, scored on the 5th (fold seed {seed}): {np.median(o):.0f} / {o.mean():.1f}")
    if "--test" in sys.argv:
        _, _, a, b, c, dw = rows[0]
        e, _, _ = answer("test", a, b, c, dw=dw)
        print(f"TEST val choice a {a} b {b} c {c} dw {dw}: {np.median(e):.0f} / {e.mean():.1f}")

