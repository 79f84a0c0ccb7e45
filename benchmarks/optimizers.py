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
import json
import multiprocessing
import time
import timeit
import warnings
from pathlib import Path

import numpy as np

from tuner.fitting.objective import Objective, ObjectiveSpec
from tuner.fitting.optimizers import make_optimizer
from tuner.fitting.loop import minimize_inprocess
from tuner.laws.spaces import paper_space
from tuner.views.tables import markdown

PROBLEMS = [("hoffmann", "chinchilla_epoch"), ("frantar", "frantar_t5"),
            ("generalized", "frantar_t5")]


class Counter:
    """Wraps the objective in internal coordinates; records every value and when it ended."""

    def __init__(self, space, obj):
        self.space, self.obj, self.values, self.times = space, obj, [], []
        self.t0 = time.perf_counter()

    def __call__(self, u) -> float:
        v = self.obj(self.space.decode(np.asarray(u, dtype=float)))
        self.values.append(v)
        self.times.append(time.perf_counter() - self.t0)
        return v


class Timed:
    """The objective as tuner's evaluator sees it, recording when each evaluation ended."""

    def __init__(self, obj):
        self._obj, self.times, self.t0 = obj, [], time.perf_counter()

    def __getattr__(self, name):
        return getattr(self._obj, name)

    def value_and_grad(self, *args, **kwargs):
        out = self._obj.value_and_grad(*args, **kwargs)
        self.times.append(time.perf_counter() - self.t0)
        return out


def run_tuner(name: str, space, obj, budget: int, seed: int, **kw):
    values: list[float] = []
    timed = Timed(obj)
    minimize_inprocess(timed, space, name, budget=budget, seed=seed, history=values, **kw)
    return values, timed.times


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
    return f.values, f.times


def run_skopt(kind: str, space, obj, budget: int, seed: int) -> list[float]:
    from skopt import forest_minimize, gp_minimize
    f = Counter(space, obj)
    fn = gp_minimize if kind == "gp" else forest_minimize
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn(f, [tuple(r) for r in space.bounds], n_calls=budget, random_state=seed)
    return f.values, f.times


# name -> (runner, result depends on the budget, cost class: "fast" runs every seed; "slow"
# (minutes per run) runs --slow-seeds; "gp" (GP peers, whose cost grows with the cube of the
# observations) runs --gp-seeds up to --gp-budget)
METHODS = {
    "tuner ytopt RF (default)": (lambda s, o, b, r: run_tuner("ytopt", s, o, b, r), True, "fast"),
    "tuner ytopt ET": (lambda s, o, b, r: run_tuner("ytopt", s, o, b, r, surrogate="ET"), True,
                       "fast"),
    "tuner ytopt GP": (lambda s, o, b, r: run_tuner("ytopt", s, o, b, r, surrogate="GP"), True,
                       "slow"),
    "ytopt as published (--faithful)": (lambda s, o, b, r: run_tuner("ytopt", s, o, b, r,
                                                                     faithful=True), False,
                                        "slow"),
    "tuner lbfgs (analytic grad)": (lambda s, o, b, r: run_tuner("lbfgs", s, o, b, r), True,
                                    "fast"),
    "grid": (lambda s, o, b, r: run_tuner("grid", s, o, b, r), True, "fast"),
    "random": (lambda s, o, b, r: run_tuner("random", s, o, b, r), False, "fast"),
    "optuna TPE (multivariate)": (lambda s, o, b, r: run_optuna("tpe", s, o, b, r), False,
                                  "fast"),
    "optuna GP": (lambda s, o, b, r: run_optuna("gp", s, o, b, r), False, "gp"),
    "skopt gp_minimize": (lambda s, o, b, r: run_skopt("gp", s, o, b, r), False, "gp"),
    "skopt forest_minimize": (lambda s, o, b, r: run_skopt("rf", s, o, b, r), False, "slow"),
}
QUICK = ["tuner ytopt RF (default)", "tuner lbfgs (analytic grad)", "grid", "random",
         "optuna TPE (multivariate)"]
_PROBLEM_CACHE: dict = {}


def problem(law: str, data: str):
    if (law, data) not in _PROBLEM_CACHE:
        space = paper_space(law)
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
        values, times = METHODS[name][0](space, obj, budget, seed)
    except ImportError as exc:
        return {"skipped": f"{name}: {exc}"}
    wall = time.perf_counter() - t
    if len(values) < budget and name not in ("grid", "tuner lbfgs (analytic grad)"):
        return {"skipped": f"{name}: stopped after {len(values)} of {budget} evaluations"}
    return {"law": law, "data": data, "name": name, "seed": seed, "budget": budget,
            "values": values, "times": times, "wall": wall,
            "overhead": max(wall - len(values) * t_eval, 0.0) / max(len(values), 1)}


def _time_steps(step, reps: int) -> float:
    return float(np.median(timeit.repeat(step, number=1, repeat=reps)))


def overhead_at(n: int, reps: int = 5) -> dict:
    """Median seconds of one ask + tell with ``n`` observations already told, on hoffmann x
    chinchilla_epoch: tuner's Bayesian step (default, and as published), scikit-optimize's
    Optimizer(base_estimator="RF", acq_optimizer="sampling") and Optuna's TPE. Each timed
    step includes its one evaluation (well under a millisecond here); each method searches
    its own space (tuner's default only the exponents); Optuna's column is left out when
    Optuna is not installed."""
    from skopt import Optimizer as SkOptimizer
    from skopt.space import Real

    from tuner.fitting.evaluation import evaluate

    space, obj, _ = problem("hoffmann", "chinchilla_epoch")
    rng = np.random.default_rng(n)
    b = space.bounds
    units = rng.uniform(b[:, 0], b[:, 1], size=(n, len(b)))
    scored = [evaluate(obj, space, space.decode(u)) for u in units]
    configs, values = [e.params for e in scored], [e.value for e in scored]
    out = {"observations": n}
    for label, kw in (("tuner ytopt (default)", {}), ("ytopt as published", {"faithful": True})):
        opt = make_optimizer("ytopt", space, seed=0, budget=n + reps + 1,
                             options={"polish": 0.0, **kw})
        opt._first.clear()  # time a Bayesian step, not the default's evaluation
        opt.tell(configs, values)

        def step(opt=opt):
            c = opt.ask(1)[0]
            opt.tell_evaluations([evaluate(obj, space, c)])
        out[label] = _time_steps(step, reps)
    sk = SkOptimizer([Real(lo, hi) for lo, hi in b], base_estimator="RF",
                     acq_optimizer="sampling", random_state=0)
    sk.tell([list(u) for u in units], values)
    out["skopt Optimizer RF (default)"] = _time_steps(
        lambda: sk.tell(x := sk.ask(), float(obj(space.decode(np.array(x))))), reps)
    try:
        import optuna
    except ImportError:
        return out
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {d.name: optuna.distributions.FloatDistribution(lo, hi)
             for d, (lo, hi) in zip(space.dims, b)}
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, multivariate=True))
    study.add_trials([optuna.trial.create_trial(params=dict(zip(dists, map(float, u))),
                                                distributions=dists, value=v)
                      for u, v in zip(units, values)])

    def tpe_step():
        trial = study.ask(dists)
        study.tell(trial, float(obj(space.decode(np.array([trial.params[k] for k in dists])))))
    out["optuna TPE"] = _time_steps(tpe_step, reps)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke mode (under 3 minutes)")
    ap.add_argument("--seeds", type=int, help="seeds per method (default 5; quick 2)")
    ap.add_argument("--slow-seeds", type=int, default=2,
                    help="seeds for methods taking minutes per run: ytopt as published, "
                         "tuner's GP surrogate, forest_minimize (default 2)")
    ap.add_argument("--gp-seeds", type=int, default=1,
                    help="seeds for the GP peers, gp_minimize and Optuna's GP (default 1)")
    ap.add_argument("--gp-budget", type=int, default=100,
                    help="largest budget for the GP-based methods, whose cost grows with the "
                         "cube of the observations (default 100; skopt's gp_minimize at 200 "
                         "evaluations takes many minutes per run on 2 cores)")
    ap.add_argument("--overhead-at", type=int, nargs="+", metavar="N",
                    help="observation counts for the overhead curve (default 50 100 200 500 "
                         "1000 2000; quick 50 200)")
    ap.add_argument("--raw", default="runs/benchmarks/optimizers_raw.json",
                    help="where every run's history is saved (default "
                         "runs/benchmarks/optimizers_raw.json; '' = nowhere)")
    ap.add_argument("--jobs", type=int, default=2, help="parallel processes (default 2)")
    args = ap.parse_args()
    problems = PROBLEMS[:2] if args.quick else PROBLEMS
    args.overhead_at = args.overhead_at or ([50, 200] if args.quick
                                            else [50, 100, 200, 500, 1000, 2000])
    budgets = [50, 100] if args.quick else [50, 100, 200]
    seeds = args.seeds or (2 if args.quick else 5)
    methods = QUICK if args.quick else list(METHODS)
    refs = {(law, data): min(run_tuner("lbfgs", *problem(law, data)[:2], 5000, 0)[0])
            for law, data in problems}
    jobs = []
    for law, data in problems:
        for name in methods:
            _, per_budget, cost = METHODS[name]
            n_seeds = {"fast": seeds, "slow": args.slow_seeds, "gp": args.gp_seeds}[cost]
            allowed = [b for b in budgets if cost != "gp" or b <= args.gp_budget]
            for seed in range(min(seeds, n_seeds)):
                for budget in (allowed if per_budget else allowed[-1:]):
                    jobs.append((law, data, name, seed, budget))
    # Slow jobs first so the pool stays busy to the end.
    jobs.sort(key=lambda j: -(j[4] * {"fast": 1, "slow": 10, "gp": 100}[METHODS[j[2]][2]]))
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
    if args.raw:  # every run's history, should the tabulation below ever fail
        Path(args.raw).parent.mkdir(parents=True, exist_ok=True)
        Path(args.raw).write_text(json.dumps({"refs": [[*k, v] for k, v in refs.items()],
                                              "results": results}))
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
                hit = [(r, np.flatnonzero(b <= ref * 1.01)) for r, b in zip(runs, best)]
                reach = [int(i[0]) + 1 for _, i in hit if len(i)]
                reach_s = [r["times"][int(i[0])] for r, i in hit if len(i)]
                most = 2 * len(reach) > len(runs)
                rows.append({"problem": f"{law} x {data}", "method": name, "budget": budget,
                             "seeds": len(runs),
                             "best/ref median": float(np.median(ratios)),
                             "best/ref worst": float(np.max(ratios)),
                             "evals to 1% (median)": int(np.median(reach)) if most else "-",
                             "wall s to 1% (median)": (float(np.median(reach_s)) if most
                                                       else "-"),
                             "overhead ms/eval": 1e3 * float(np.median(
                                 [r["overhead"] for r in runs])),
                             "wall s (run)": float(np.median([r["wall"] for r in runs]))})
    print(markdown(rows))
    print("\nOptimizer time per evaluation (one ask + tell, median of 5, seconds) against the "
          "observations already told, hoffmann x chinchilla_epoch:\n")
    curve = []
    for n in args.overhead_at:
        r = overhead_at(n)
        base = r["skopt Optimizer RF (default)"]
        curve.append({**r, "tuner default / skopt default": r["tuner ytopt (default)"] / base})
    print(markdown(curve))
    print(f"\n{len(jobs)} runs in {time.perf_counter() - t0:.0f}s on {args.jobs} processes; "
          "reference = best of multi-start L-BFGS-B (analytic gradients, 5000 evaluations); "
          "budget-free methods are read off their largest-budget run.")


if __name__ == "__main__":
    main()
