"""Parallel efficiency and overheads of the libEnsemble run path, printed as one table.

    python benchmarks/ensemble.py [--evals 24] [--delay 0.5]

1. Wall time and speedup for 1, 2 and 4 local workers, random search, --eval-delay DELAY.
2. Manager overhead per evaluation: wall time of a zero-delay run over its evaluation count,
   minus the evaluation time itself (the run's `elapsed` column).
3. ytopt ask/tell time per evaluation at 50, 100 and 200 observations, beside scikit-optimize's
   own Optimizer (RF, sampling) driven the same way, as a ratio.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tuner.api import FitConfig, fit
from tuner.objective import Objective, ObjectiveSpec
from tuner.optimizers import make_optimizer
from tuner.runlog import read_results
from tuner.spaces import load_space


def parallel(evals: int, delay: float, tmp: Path) -> list[dict]:
    rows, base = [], None
    for w in (1, 2, 4):
        s = fit(FitConfig("hoffmann", "chinchilla_epoch", optimizer="random", evals=evals,
                          workers=w, eval_delay=delay), tmp / f"w{w}", quiet=True)
        base = base or s["wall_seconds"]
        rows.append({"workers": w, "evals": s["evals"], "wall_s": s["wall_seconds"],
                     "speedup": base / s["wall_seconds"],
                     "efficiency": base / s["wall_seconds"] / w})
    return rows


def manager_overhead(tmp: Path, evals: int = 400) -> float:
    s = fit(FitConfig("hoffmann", "chinchilla_epoch", optimizer="random", evals=evals),
            tmp / "overhead", quiet=True)
    res = read_results(Path(s["run_dir"]) / "results.csv")
    return (s["wall_seconds"] - res["elapsed"].sum()) / evals


def ask_tell_times(points=(50, 100, 200), reps: int = 5) -> list[dict]:
    from skopt import Optimizer as SkOpt
    from skopt.space import Real
    space = load_space("hoffmann")
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", "chinchilla_epoch"))
    rng = np.random.default_rng(0)
    b = space.bounds
    history = [space.decode(rng.uniform(b[:, 0], b[:, 1])) for _ in range(max(points))]
    values = [obj(c) for c in history]
    rows = []
    for n in points:
        ours = make_optimizer("ytopt", space, seed=0, budget=10**6)
        ours.tell(history[:n], values[:n])
        sk = SkOpt([Real(d.lower, d.upper, prior="log-uniform" if d.log else "uniform")
                    for d in space.dims], base_estimator="RF", acq_optimizer="sampling",
                   random_state=0)
        sk.tell([[c[k] for k in space.names] for c in history[:n]], values[:n])
        t_ours, t_sk = [], []
        for _ in range(reps):
            t = time.perf_counter()
            c = ours.ask(1)
            ours.tell(c, [obj(c[0])])
            t_ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            x = sk.ask()
            sk.tell(x, obj(space.complete(dict(zip(space.names, x)))))
            t_sk.append(time.perf_counter() - t)
        rows.append({"observations": n, "tuner_ytopt_s": float(np.median(t_ours)),
                     "skopt_RF_sampling_s": float(np.median(t_sk)),
                     "ratio": float(np.median(t_ours) / np.median(t_sk))})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evals", type=int, default=24)
    ap.add_argument("--delay", type=float, default=0.5)
    args = ap.parse_args()
    from tuner.tables import markdown
    with tempfile.TemporaryDirectory() as tmp:
        print(f"## {args.evals} evaluations, --eval-delay {args.delay}, local comms\n")
        print(markdown(parallel(args.evals, args.delay, Path(tmp))))
        print(f"\nmanager overhead per evaluation (400 zero-delay evals, 1 worker): "
              f"{manager_overhead(Path(tmp)) * 1e3:.2f} ms")
    print("\n## optimizer ask+tell per evaluation (median of 5)\n")
    print(markdown(ask_tell_times()))


if __name__ == "__main__":
    main()
