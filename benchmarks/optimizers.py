"""Fit quality and cost of tuner's optimizers against the peers a user would pick instead.

    python benchmarks/optimizers.py            # 3 problems x budgets 50/100/200 x 5 seeds
    python benchmarks/optimizers.py --quick    # CI smoke: 2 problems, budgets 50/100, 2 seeds

Every method minimises the same objective over the same space (internal coordinates: log scale
for large coefficients). An evaluation is one pass over the data; tuner's L-BFGS steps get the
gradient from that same pass. Columns: best objective / reference (median and worst over
seeds), evaluations to come within 1% of the reference (median; '-' = not reached), wall
seconds per run (median). The reference is multi-start L-BFGS-B with analytic gradients at a
large budget. Needs the `bench` extra (optuna) for the Optuna rows, and torch for Optuna's GP
sampler (`pip install torch==2.13.0`, a CPU build; the row is skipped without it).
"""
from __future__ import annotations

import argparse
import multiprocessing
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
    if sampler == "gp":
        import torch  # noqa: F401  Optuna's GP sampler needs it; without it every trial fails
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


# name -> (runner, result depends on the budget, GP-based: slow, so fewer seeds)
METHODS = {
    "tuner ytopt RF (default)": (lambda s, o, b, r: run_tuner("ytopt", s, o, b, r), True, False),
    "tuner ytopt ET": (lambda s, o, b, r: run_tuner("ytopt", s, o, b, r, surrogate="ET"), True,
                       False),
    "tuner ytopt GP": (lambda s, o, b, r: run_tuner("ytopt", s, o, b, r, surrogate="GP"), True,
                       True),
    "ytopt as published (polish 0)": (lambda s, o, b, r: run_tuner("ytopt", s, o, b, r,
                                                                   polish=0.0), False, False),
    "tuner lbfgs (analytic grad)": (lambda s, o, b, r: run_tuner("lbfgs", s, o, b, r), True,
                                    False),
    "grid": (lambda s, o, b, r: run_tuner("grid", s, o, b, r), True, False),
    "random": (lambda s, o, b, r: run_tuner("random", s, o, b, r), False, False),
    "optuna TPE (multivariate)": (lambda s, o, b, r: run_optuna("tpe", s, o, b, r), False,
                                  False),
    "optuna GP": (lambda s, o, b, r: run_optuna("gp", s, o, b, r), False, True),
    "skopt gp_minimize": (lambda s, o, b, r: run_skopt("gp", s, o, b, r), False, True),
    "skopt forest_minimize": (lambda s, o, b, r: run_skopt("rf", s, o, b, r), False, False),
}
QUICK = ["tuner ytopt RF (default)", "tuner lbfgs (analytic grad)", "grid", "random",
         "optuna TPE (multivariate)"]
_PROBLEM_CACHE: dict = {}


def problem(law: str, data: str):
    if (law, data) not in _PROBLEM_CACHE:
        space = load_space(law)
        obj = Objective.from_spec(ObjectiveSpec(law, data))
        params = space.default()
        t = time.perf_counter()
        for _ in range(200):
            obj.value_and_grad(params)
        _PROBLEM_CACHE[law, data] = (space, obj, (time.perf_counter() - t) / 200)
    return _PROBLEM_CACHE[law, data]


def task(args) -> dict:
    """One method, problem, seed and budget; budget-free methods run once at the largest
    budget and are read off at the smaller ones (their first k points do not depend on it)."""
    law, data, name, seed, budget = args
    space, obj, t_eval = problem(law, data)
    t = time.perf_counter()
    try:
        values = METHODS[name][0](space, obj, budget, seed)
    except ImportError as exc:
        return {"skipped": f"{name}: {exc}"}
    wall = time.perf_counter() - t
    if len(values) < budget and name not in ("grid", "tuner lbfgs (analytic grad)"):
        return {"skipped": f"{name}: stopped after {len(values)} of {budget} evaluations"}
    return {"law": law, "data": data, "name": name, "seed": seed, "budget": budget,
            "values": values, "wall": wall,
            "overhead": max(wall - len(values) * t_eval, 0.0) / max(len(values), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke mode (under 3 minutes)")
    ap.add_argument("--seeds", type=int, help="seeds per method (default 5; quick 2)")
    ap.add_argument("--gp-seeds", type=int, default=2,
                    help="seeds for the slow GP-based methods (default 2)")
    ap.add_argument("--gp-budget", type=int, default=100,
                    help="largest budget for the GP-based methods, whose cost grows with the "
                         "cube of the observations (default 100; skopt's gp_minimize at 200 "
                         "evaluations takes many minutes per run on 2 cores)")
    ap.add_argument("--jobs", type=int, default=2, help="parallel processes (default 2)")
    args = ap.parse_args()
    problems = PROBLEMS[:2] if args.quick else PROBLEMS
    budgets = [50, 100] if args.quick else [50, 100, 200]
    seeds = args.seeds or (2 if args.quick else 5)
    methods = QUICK if args.quick else list(METHODS)
    refs = {(law, data): min(run_tuner("lbfgs", *problem(law, data)[:2], 5000, 0))
            for law, data in problems}
    jobs = []
    for law, data in problems:
        for name in methods:
            _, per_budget, slow = METHODS[name]
            for seed in range(min(seeds, args.gp_seeds) if slow else seeds):
                allowed = [b for b in budgets if not slow or b <= args.gp_budget]
                for budget in (allowed if per_budget else allowed[-1:]):
                    jobs.append((law, data, name, seed, budget))
    # Slow jobs first so the pool stays busy to the end.
    jobs.sort(key=lambda j: -(j[4] * (10 if METHODS[j[2]][2] else 1)))
    t0 = time.perf_counter()
    with multiprocessing.Pool(args.jobs) as pool:
        results = []
        for r in pool.imap_unordered(task, jobs):
            results.append(r)
            if "skipped" not in r:  # progress, and a record should the run be cut short
                print(f"[{len(results)}/{len(jobs)}] {r['law']} {r['name']} seed {r['seed']} "
                      f"budget {r['budget']}: best {min(r['values']):.6g}, {r['wall']:.1f}s",
                      flush=True)
    for r in results:
        if "skipped" in r:
            print(f"skipped {r['skipped']}")
    results = [r for r in results if "skipped" not in r]
    rows = []
    for law, data in problems:
        ref = refs[law, data]
        for name in methods:
            for budget in budgets:
                runs = [r for r in results if (r["law"], r["data"], r["name"]) == (law, data, name)
                        and (r["budget"] == budget or not METHODS[name][1] and
                             len(r["values"]) >= budget)]
                if not runs:
                    continue
                best = [np.minimum.accumulate(r["values"][:budget]) for r in runs]
                ratios = [b[-1] / ref for b in best]
                reach = [int(np.flatnonzero(b <= ref * 1.01)[0]) + 1 for b in best
                         if np.any(b <= ref * 1.01)]
                rows.append({"problem": f"{law} x {data}", "method": name, "budget": budget,
                             "seeds": len(runs),
                             "best/ref median": float(np.median(ratios)),
                             "best/ref worst": float(np.max(ratios)),
                             "evals to 1% (median)": (int(np.median(reach))
                                                      if 2 * len(reach) > len(runs) else "-"),
                             "overhead ms/eval": 1e3 * float(np.median(
                                 [r["overhead"] for r in runs])),
                             "wall s (run)": float(np.median([r["wall"] for r in runs]))})
    print(markdown(rows))
    print(f"\n{len(jobs)} runs in {time.perf_counter() - t0:.0f}s on {args.jobs} processes; "
          "reference = best of multi-start L-BFGS-B (analytic gradients, 5000 evaluations); "
          "budget-free methods are read off their largest-budget run.")


if __name__ == "__main__":
    main()
