"""Parallel efficiency and overheads of the libEnsemble run path, printed as one table.

    python benchmarks/ensemble.py [--evals 24] [--delay 0.5]

1. Wall time and speedup for 1, 2 and 4 local workers, random search, --eval-delay DELAY.
2. Manager overhead per evaluation: wall time of a zero-delay run over its evaluation count,
   minus the evaluation time itself (the run's `elapsed` column).

The optimizer's own time per evaluation, against the observations told, is measured by
benchmarks/optimizers.py beside scikit-optimize's and Optuna's.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tuner.run.fit import FitConfig, fit
from tuner.run.rundir import read_results


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evals", type=int, default=24)
    ap.add_argument("--delay", type=float, default=0.5)
    args = ap.parse_args()
    from tuner.views.tables import markdown
    with tempfile.TemporaryDirectory() as tmp:
        print(f"## {args.evals} evaluations, --eval-delay {args.delay}, local comms\n")
        print(markdown(parallel(args.evals, args.delay, Path(tmp))))
        print(f"\nmanager overhead per evaluation (400 zero-delay evals, 1 worker): "
              f"{manager_overhead(Path(tmp)) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
