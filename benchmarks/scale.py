"""Scale: the objective on large data, a 2,000-evaluation run, and a 1,000,000-row dataset.

    python benchmarks/scale.py            # 10k-row timings, 2,000 evaluations, 1M rows
    python benchmarks/scale.py --quick    # smaller: 300 evaluations, 100k rows

Synthetic rows follow Epoch's refit of Eq 2 with 1% log-normal noise, over the sizes and token
counts of chinchilla_epoch (the objective's cost depends on the row count, not the values).
Times are medians of repeated calls on this machine; the runs go through the real pipeline
(libEnsemble, results.csv) with 2 workers.
"""
from __future__ import annotations

import argparse
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np
import pandas as pd

from tuner.run.fit import FitConfig, fit
from tuner.fitting.evaluation import evaluate
from tuner.fitting.objective import Objective, ObjectiveSpec
from tuner.laws.spaces import paper_space
from tuner.views.tables import markdown

EPOCH = {"e": 1.8169, "a": 482.01, "b": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def synthetic_csv(n: int, path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    n_params = 10 ** rng.uniform(7.6, 10.2, n)
    tokens = 10 ** rng.uniform(8.3, 11.7, n)
    loss = (EPOCH["e"] + EPOCH["a"] / n_params ** EPOCH["alpha"]
            + EPOCH["b"] / tokens ** EPOCH["beta"]) * np.exp(rng.normal(0, 0.01, n))
    pd.DataFrame({"n_total": n_params, "n_active": n_params, "tokens": tokens,
                  "sparsity": 0.0, "loss": loss}).to_csv(path, index=False)
    return path


def timed(fn, reps: int) -> float:
    return float(np.median(timeit.repeat(fn, number=1, repeat=reps)))


def objective_costs(path: Path, reps: int) -> dict:
    obj = Objective.from_spec(ObjectiveSpec("hoffmann", str(path)))
    space = paper_space("hoffmann")
    p = space.default()
    nan = {**p, "e": np.nan, "a": np.nan, "b": np.nan}
    return {"rows": len(obj.dataset),
            "objective ms": 1e3 * timed(lambda: obj(p), reps),
            "value+gradient ms": 1e3 * timed(lambda: obj.value_and_grad(p), reps),
            "worker evaluation ms (+curvature)": 1e3 * timed(lambda: evaluate(obj, space, p),
                                                             reps),
            "with linear solve ms": 1e3 * timed(lambda: evaluate(obj, space, nan), reps)}


def run(data: str, evals: int, out: Path) -> dict:
    t = time.perf_counter()
    s = fit(FitConfig(law="hoffmann", data=data, evals=evals, workers=2), out, quiet=True)
    wall = time.perf_counter() - t
    return {"data": Path(data).name, "evals": s["evals"], "budget": evals,
            "wall s": wall, "ms per evaluation": 1e3 * wall / s["evals"],
            "best objective": s["best_objective"],
            "published objective": s["published_objective"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    args = ap.parse_args()
    big = 100_000 if args.quick else 1_000_000
    long = 300 if args.quick else 2000
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        costs = [objective_costs(synthetic_csv(n, tmp / f"rows{n}.csv"), 200 if n <= 10_000
                                 else 5) for n in (240, 10_000, big)]
        print("Objective cost by rows (hoffmann, median; target: objective <= 1 ms at "
              "10,000 rows)\n")
        print(markdown(costs))
        runs = [run("chinchilla_epoch", long, tmp / "long"),
                run(str(tmp / f"rows{big}.csv"), 60, tmp / "big")]
        print(f"\nRuns through libEnsemble, 2 workers (default tuner fit):\n")
        print(markdown(runs))


if __name__ == "__main__":
    main()
