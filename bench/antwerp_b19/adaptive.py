"""Antwerp: the radio map's bandwidth following the sampling density, out of fold on all of x_val (brief B19).

Usage: python adaptive.py WORKSPACE RUN_ID OUT.json VARIANT [VARIANT ...]
RUN_ID: the ``ensemble --refit`` run of README "A hedged ensemble answer" (its ``kmap`` member: 35 m map, local
spread, k 30, val choices fixed). VARIANT: ``[MEMBER/]name:opt=value,opt=value`` overriding the options of the
run's member MEMBER (default kmap; ``base:`` for none), e.g. ``a10:radio_map_adaptive_k=10,radio_map_max_m=300``
or ``kmap100/base:``. Each variant is fitted on 4/5 of all of x_val
(8,306 messages; folds at random, seed 0, as bench/antwerp_b17/oof.py) and answers the 5th. Prints and writes
out-of-fold median / mean, > 1 km share and the mean per band of training messages (of the other folds) within
100 m of the truth (B18's bands). Test is not touched.
"""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

os.environ["RFLOCAL_WORKSPACE"] = sys.argv[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from rflocal_core.infer import load_run  # noqa: E402
from rflocal_core.models import load_inputs  # noqa: E402
from rflocal_core.models.inputs import join_inputs  # noqa: E402
from rflocal_core.models.registry import BASELINES  # noqa: E402

BANDS = ((0, 1), (1, 5), (5, 20), (20, 50), (50, 200), (200, 10**9))
FOLDS = 5


def parse(spec: str) -> tuple[str, str, dict]:
    """``[member/]name:opt=value,...`` into the member, the name and the overrides (numbers as numbers)."""
    name, _, rest = spec.partition(":")
    member, _, _ = name.rpartition("/")
    out = {}
    for kv in filter(None, rest.split(",")):
        key, value = kv.split("=")
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = None if value == "None" else value
    return member or "kmap", name, out


def main() -> None:
    run = load_run(sys.argv[2])
    ds = run.config["dataset"]
    x = join_inputs(load_inputs(ds, "train"), load_inputs(ds, "val"))
    fold = np.random.default_rng(0).permutation(len(x)) % FOLDS
    st = run.model.state_dict()
    density = np.empty(len(x), np.int64)  # training messages (other folds) within 100 m of the truth
    for f in range(FOLDS):
        held = fold == f
        density[held] = [len(r) for r in cKDTree(x.truth_m[~held]).query_ball_point(x.truth_m[held], 100.0)]
    results = {}
    for spec in sys.argv[4:]:
        who, name, over = parse(spec)
        i = st["members"].index(who)
        config = (st.get("configs") or {}).get(who)
        pos = np.full((len(x), 2), np.nan)
        t0 = time.time()
        for f in range(FOLDS):
            fit_x, held = x.subset(np.flatnonzero(fold != f)), np.flatnonzero(fold == f)
            member = BASELINES[st["models"][i]].from_state({**config, **over}, st["states"][i]).refit(fit_x)
            pos[held] = member.predict(x.subset(held)).position_m
        e = np.hypot(*(pos - x.truth_m).T)
        bands = {f"{lo}-{hi}": float(e[(density >= lo) & (density < hi)].mean()) for lo, hi in BANDS}
        r = {"options": over, "median_m": float(np.median(e)), "mean_m": float(e.mean()),
             "over_1km": float((e > 1000).mean()), "mean_by_density_m": bands, "seconds": time.time() - t0}
        results[name] = r
        print(f"{name:>10} {over}: {r['median_m']:.1f} / {r['mean_m']:.1f} m, >1 km {r['over_1km'] * 100:.1f}%; "
              f"mean by density {' '.join(f'{v:.0f}' for v in bands.values())} ({r['seconds']:.0f} s)", flush=True)
        np.save(f"{sys.argv[3]}.{name.replace('/', '-')}.npy", pos)
        Path(sys.argv[3]).write_text(json.dumps({"bands_messages_within_100m": BANDS, "results": results}, indent=1))


main()
