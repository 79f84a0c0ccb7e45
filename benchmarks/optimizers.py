"""Fit quality and cost of tuner's optimizers against the peers a user would pick instead.

    python benchmarks/optimizers.py            # 3 problems x budgets 50/100/200 x 5 seeds
    python benchmarks/optimizers.py --quick    # CI smoke: 2 problems, budgets 50/100, 2 seeds

Every method minimises the same objective over the same space (internal coordinates: log scale
for large coefficients). An evaluation is one pass over the data; tuner's L-BFGS steps get the
gradient from that same pass. Columns: best objective / reference (median and worst over
seeds), evaluations to come within 1% of the reference (median; '-' = not reached), wall
seconds per run (median). The reference is multi-start L-BFGS-B with analytic gradients at a
large budget. Needs the `bench` extra (optuna) for the Optuna rows.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from tuner.objective import Objective, ObjectiveSpec
from tuner.optimizers import make_optimizer
from tuner.refit import minimize_inprocess
from tuner.spaces import load_space
from tuner.tables import markdown

PROBLEMS = [("hoffmann", "chinchilla_epoch"), ("frantar", "frantar_t5"),
            ("generalized", "frantar_t5")]


class Counter:
    """Wraps the objective in internal coordinates and records every value, in order."""

    def __init__(self, space, obj):
        self.space, self.obj, self.values = space, obj, []

    def __call__(self, u) -> float:
        v = self.obj(self.space.decode(np.asarray(u, dtype=float)))
        self.values.append(v)
        return v


def run_tuner(name: str, space, obj, budget: int, seed: int, **kw) -> list[float]:
    values: list[float] = []
    minimize_inprocess(obj, space, name, budget=budget, seed=seed, history=values, **kw)
    return values


def run_optuna(sampler: str, space, obj, budget: int, seed: int) -> list[float]:
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    f = Counter(space, obj)
    b = space.bounds
    s = (optuna.samplers.TPESampler(seed=seed, multivariate=True) if sampler == "tpe"
         else optuna.samplers.GPSampler(seed=seed))
    study = optuna.create_study(sampler=s)
    study.optimize(lambda t: f([t.suggest_float(d.name, lo, hi)
                                for d, (lo, hi) in zip(space.dims, b)]), n_trials=budget)
    return f.values


def run_skopt(kind: str, space, obj, budget: int, seed: int) -> list[float]:
    from skopt import forest_minimize, gp_minimize
    f = Counter(space, obj)
    fn = gp_minimize if kind == "gp" else forest_minimize
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn(f, [tuple(r) for r in space.bounds], n_calls=budget, random_state=seed)
    return f.values


METHODS = {
    "tuner ytopt RF (default)": lambda s, o, b, r: run_tuner("ytopt", s, o, b, r),
    "tuner ytopt ET": lambda s, o, b, r: run_tuner("ytopt", s, o, b, r, surrogate="ET"),
    "tuner ytopt GP": lambda s, o, b, r: run_tuner("ytopt", s, o, b, r, surrogate="GP"),
    "ytopt as published (polish 0)": lambda s, o, b, r: run_tuner("ytopt", s, o, b, r,
                                                                  polish=0.0),
    "tuner lbfgs (analytic grad)": lambda s, o, b, r: run_tuner("lbfgs", s, o, b, r),
    "grid": lambda s, o, b, r: run_tuner("grid", s, o, b, r),
    "random": lambda s, o, b, r: run_tuner("random", s, o, b, r),
    "optuna TPE (multivariate)": lambda s, o, b, r: run_optuna("tpe", s, o, b, r),
    "optuna GP": lambda s, o, b, r: run_optuna("gp", s, o, b, r),
    "skopt gp_minimize": lambda s, o, b, r: run_skopt("gp", s, o, b, r),
    "skopt forest_minimize": lambda s, o, b, r: run_skopt("rf", s, o, b, r),
}
QUICK = ["tuner ytopt RF (default)", "ytopt as published (polish 0)",
         "tuner lbfgs (analytic grad)", "grid", "random", "optuna TPE (multivariate)"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke mode (under 3 minutes)")
    ap.add_argument("--seeds", type=int)
    args = ap.parse_args()
    problems = PROBLEMS[:2] if args.quick else PROBLEMS
    budgets = [50, 100] if args.quick else [50, 100, 200]
    seeds = args.seeds or (2 if args.quick else 5)
    methods = QUICK if args.quick else list(METHODS)
    rows = []
    for law, data in problems:
        space = load_space(law)
        obj = Objective.from_spec(ObjectiveSpec(law, data))
        ref = min(run_tuner("lbfgs", space, obj, 5000, 0))
        for name in methods:
            for budget in budgets:
                ratios, reach, secs = [], [], []
                for seed in range(seeds):
                    t = time.perf_counter()
                    try:
                        values = METHODS[name](space, obj, budget, seed)
                    except ImportError as exc:
                        values = None
                        print(f"skipped {name}: {exc}")
                        break
                    secs.append(time.perf_counter() - t)
                    best = np.minimum.accumulate(values)
                    ratios.append(best[-1] / ref)
                    hit = np.flatnonzero(best <= ref * 1.01)
                    reach.append(int(hit[0]) + 1 if len(hit) else None)
                if not ratios:
                    continue
                got = [r for r in reach if r is not None]
                rows.append({"problem": f"{law} x {data}", "method": name, "budget": budget,
                             "best/ref median": float(np.median(ratios)),
                             "best/ref worst": float(np.max(ratios)),
                             "evals to 1% (median)": (int(np.median(got))
                                                      if len(got) > seeds // 2 else "-"),
                             "wall s (median)": float(np.median(secs))})
                print(f"{law:<12} {name:<32} {budget:>4}: median {np.median(ratios):.4f} "
                      f"worst {np.max(ratios):.4f}  {np.median(secs):.2f}s", flush=True)
    print()
    print(markdown(rows))


if __name__ == "__main__":
    main()
