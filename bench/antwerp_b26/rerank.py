"""Learned re-ranking of candidate positions (brief B26, issue 15): can a ranker over the members' candidates cut
Antwerp's mean?

Usage: python rerank.py OOF.npz [TOPN] [OUT.npz]
OOF.npz: bench/antwerp_b17/oof.py's output for B23's best ensemble run (its kNN members kgm, kmap, kmap100 and
lgbm refitted on 4/5 of x_val and answering the 5th, each kNN member's posterior over its 1,000 best positions).
x_val only; test is not touched.
Candidates per row: the TOPN best positions of each kNN member's posterior (kgm, kmap, kmap100), deduplicated,
plus each member's answer. Features per candidate: each member's posterior mass within 50 / 150 / 400 m of it,
its rank in each member, its distance to each member's answer, the training density around it, and per-row
features (gateways heard, spread of the answers). A LightGBM regressor of log(distance to truth) is trained on
4 folds' rows and answers the 5th (nested out of fold). Reports the mean / median of several answer rules.
"""
import sys
import time

import lightgbm as lgb
import numpy as np
from scipy.spatial import cKDTree

o = np.load(sys.argv[1])
TOPN = int(sys.argv[2]) if len(sys.argv) > 2 else 60
MASSN = 300
names = list(o["names"])
knn_members = [i for i, n in enumerate(names) if n != "lgbm"]
truth, fold, pos = o["truth"], o["fold"], o["pos"]
heard = o["heard"]
N = len(truth)
APP = np.asarray(o["all_post_pos"], np.float64)  # [M, N, K, 2]
APW = np.asarray(o["all_post_w"], np.float64)


def ranked(m):
    w = APW[m] / APW[m].sum(1, keepdims=True)
    order = np.argsort(-w, axis=1, kind="stable")[:, :MASSN]
    return np.take_along_axis(APP[m], order[..., None], 1), np.take_along_axis(w, order, 1)


R = {m: ranked(m) for m in knn_members}
trees = {f: cKDTree(truth[fold != f]) for f in range(fold.max() + 1)}


def row_candidates(i):
    c = [R[m][0][i, :TOPN] for m in knn_members] + [pos[:, i]]
    c = np.concatenate(c)
    c = c[np.isfinite(c).all(1)]
    _, u = np.unique(np.round(c / 5.0), axis=0, return_index=True)  # 5 m dedup
    return c[np.sort(u)]


def features(i, c):
    cols = []
    for m in knn_members:
        pp, pw = R[m][0][i], R[m][1][i]
        d = np.hypot(*(c[:, None, :] - pp[None]).transpose(2, 0, 1))  # [C, MASSN]
        for r in (50, 150, 400):
            cols.append(np.log((pw[None] * (d < r)).sum(1) + 1e-6))
        near = d < 10
        cols.append(np.where(near.any(1), near.argmax(1), MASSN).astype(float))
    ans = pos[:, i]
    da = np.hypot(*(c[:, None, :] - ans[None]).transpose(2, 0, 1))  # [C, M]
    cols += [np.log(da[:, j] + 1) for j in range(len(names))]
    tree = trees[fold[i]]
    for r in (50, 150):
        cols.append(np.log1p(tree.query_ball_point(c, r, return_length=True)))
    spread = np.sqrt(((ans - ans.mean(0)) ** 2).sum(1).mean())
    cols += [np.full(len(c), heard[i], float), np.full(len(c), np.log1p(spread), float)]
    return np.stack(cols, 1)


t0 = time.time()
X, Y, G, C = [], [], [], []
for i in range(N):
    c = row_candidates(i)
    X.append(features(i, c))
    Y.append(np.log(np.hypot(*(c - truth[i]).T) + 10))
    G.append(np.full(len(c), i))
    C.append(c)
print(f"features {time.time() - t0:.0f} s; candidates per row median {np.median([len(c) for c in C]):.0f}; "
      f"a candidate within 100 m: {np.mean([np.exp(y.min()) - 10 < 100 for y in Y]) * 100:.1f}%", flush=True)
X, Y, G, Cc = np.concatenate(X), np.concatenate(Y), np.concatenate(G), np.concatenate(C)
pred = np.full(len(Y), np.nan)
for f in range(fold.max() + 1):
    tr, te = fold[G] != f, fold[G] == f
    params = dict(objective="regression", learning_rate=0.05, num_leaves=63, min_data_in_leaf=50,
                  bagging_fraction=0.8, bagging_freq=1, feature_fraction=0.8, verbose=-1, num_threads=2, seed=0)
    mdl = lgb.train(params, lgb.Dataset(X[tr], Y[tr]), num_boost_round=400)
    pred[te] = mdl.predict(X[te])
    print(f"fold {f} {time.time() - t0:.0f} s", flush=True)
np.savez("sys.argv[3] if len(sys.argv) > 3 else "/tmp/b26_rerank_pred.npz"", pred=pred, G=G, C=Cc, Y=Y)
starts = np.r_[0, np.flatnonzero(np.diff(G)) + 1, len(G)]


def answer(rule, T=0.3):
    out = np.zeros((N, 2))
    for i in range(N):
        s = slice(starts[i], starts[i + 1])
        p, c = pred[s], Cc[s]
        if rule == "top":
            out[i] = c[np.argmin(p)]
        else:  # least expected distance under softmax(-p / T) over the candidates
            w = np.exp(-(p - p.min()) / T)
            w /= w.sum()
            d = np.hypot(*(c[:, None, :] - c[None]).transpose(2, 0, 1))
            out[i] = c[np.argmin(d @ w)]
    return out


def rep(label, p):
    e = np.hypot(*(p - truth).T)
    print(f"{label}: median {np.median(e):.1f} mean {e.mean():.1f} >1km {np.mean(e > 1000) * 100:.1f}%")


for j, n in enumerate(names):
    rep(f"member {n}", pos[j])
rep("median of members", np.median(pos, 0))
rep("ranker top", answer("top"))
for T in (0.1, 0.3, 1.0):
    rep(f"ranker least expected distance T={T}", answer("soft", T))
