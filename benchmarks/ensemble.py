"""Parallel runs of the default fit through libEnsemble: speed-up, manager time, quality.

    python benchmarks/ensemble.py [--evals 40] [--delay 0.5] [--reps 2] [--no-mpi]
    python benchmarks/ensemble.py --only quality        # or speed-up, manager
    python benchmarks/ensemble.py --only quality --all-problems --in-process --workers 4 \
        --seeds 11 12 13 14 15 16                         # deterministic, 6 problems

1. The default fit (ytopt) of hoffmann x chinchilla_epoch with ``--eval-delay DELAY`` (each
   evaluation sleeps, as a costly objective would), 1 and 4 workers, with local processes,
   threads and ``mpirun -np 5`` (4 workers); each run is the command end to end
   (``python -m tuner fit``, a fresh process), interleaved and repeated; the speed-up is the
   1-worker median (evaluated in process, as ``--workers 1`` runs) over each median (issue
   17.3's target: >= 3.6x at 4 workers).
2. The manager's own time per evaluation: a zero-delay run's wall time minus the time its
   evaluations took (the ``elapsed`` column), per evaluation, with 1 worker (target: <= 2 ms),
   in a libEnsemble ensemble and in process (what ``--workers 1`` runs). The optimizer's
   ask/tell is part of it.
3. Quality at 4 workers: evaluations to come within 1% of the best value of the 1-worker run,
   seeds 11-13, no delay (target: the same as 1 worker's, +-20%); hoffmann x chinchilla_epoch,
   or with ``--all-problems`` the 6 problems of ``benchmarks/speed.py``; ``--in-process``
   evaluates in this process, results in the order asked (deterministic), at ``--workers W``
   over ``--seeds``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tuner.run import ensemble
from tuner.run.fit import FitConfig, fit
from tuner.run.rundir import read_results
from tuner.views.tables import markdown

FIT = ["-m", "tuner", "fit", "--law", "hoffmann", "--data", "chinchilla_epoch", "--quiet",
       "--json"]


def command(comms: str, workers: int, evals: int, delay: float, run_dir: Path) -> list[str]:
    args = [*FIT, "--evals", str(evals), "--eval-delay", str(delay), "--run-dir", str(run_dir)]
    if comms == "mpi":
        mpirun = shutil.which("mpirun", path=str(Path(sys.executable).parent)) or "mpirun"
        return [mpirun, "-np", str(workers + 1), sys.executable, *args, "--comms", "mpi"]
    return [sys.executable, *args, "--comms", comms, "--workers", str(workers)]


def speedups(evals: int, delay: float, reps: int, mpi: bool, tmp: Path) -> list[dict]:
    cases = [("local", 1), ("local", 4), ("threads", 4)] + ([("mpi", 4)] if mpi else [])
    walls: dict = {c: [] for c in cases}
    evals_made: dict = {c: [] for c in cases}
    for r in range(reps):
        for comms, w in cases:
            out = tmp / f"{comms}{w}-{r}"
            t = time.perf_counter()
            p = subprocess.run(command(comms, w, evals, delay, out), capture_output=True,
                               text=True)
            walls[comms, w].append(time.perf_counter() - t)
            if p.returncode != 0:
                raise SystemExit(f"{comms} x{w} failed:\n{p.stderr[-2000:]}")
            evals_made[comms, w].append(len(read_results(out / "results.csv")))
    base = float(np.median(walls["local", 1]))
    return [{"comms": c, "workers": w, "evaluations": int(np.median(evals_made[c, w])),
             "wall s (median)": float(np.median(walls[c, w])),
             "speed-up over 1 worker": base / float(np.median(walls[c, w])),
             "target": ">= 3.6x" if w == 4 else "-"} for c, w in cases]


def manager_time(tmp: Path, evals: int = 200) -> dict:
    """ms per evaluation that is not the evaluation itself, for random search and ytopt, in
    an ensemble of one worker process and in process (what ``--workers 1`` runs)."""
    import tuner.run.fit as run_fit

    out = {}
    for where in ("libEnsemble", "in process"):
        for optimizer in ("random", "ytopt"):
            # A one-worker fit runs in process; switched off, it is a libEnsemble ensemble.
            run_fit.in_process = (ensemble.in_process if where == "in process"
                                  else lambda workers, comms: False)
            t = time.perf_counter()
            s = fit(FitConfig("hoffmann", "chinchilla_epoch", optimizer=optimizer,
                              evals=evals), tmp / f"overhead-{optimizer}-{where}", quiet=True)
            wall = time.perf_counter() - t
            res = read_results(Path(s["run_dir"]) / "results.csv")
            key = f"{where}, {optimizer}"
            out[key] = 1e3 * (s["wall_seconds"] - res["elapsed"].sum()) / len(res)
            out[f"{key} (whole call)"] = 1e3 * (wall - res["elapsed"].sum()) / len(res)
    run_fit.in_process = ensemble.in_process
    return out


PROBLEMS = [("hoffmann", "chinchilla_epoch"), ("frantar", "frantar_t5"),
            ("abnar", "clark_routing"), ("generalized", "frantar_t5"),
            ("generalized", "clark_routing"), ("kaplan", "chinchilla_epoch")]


def _history_in_process(law: str, data: str, seed: int, workers: int, budget: int) -> list:
    """The default fit's values with ``workers`` points in flight, evaluated in this process
    in the order asked (the ensemble's loop without its timing: the same every run)."""
    from tuner.fitting.evaluation import evaluate
    from tuner.fitting.loop import InProcess, drive
    from tuner.fitting.objective import Objective, ObjectiveSpec
    from tuner.fitting.optimizers import make_optimizer

    obj = Objective.from_spec(ObjectiveSpec(law, data))
    opt = make_optimizer("ytopt", obj.default_space(), seed=seed, budget=budget, options={},
                         context={"gradients": True, "n_starts": None,
                                  "profile_allowed": True})
    values: list = []
    drive(opt, InProcess(lambda i, c: evaluate(obj, opt.space, c, i)), budget=budget,
          workers=workers, on_results=lambda evs: values.extend(e.value for e in evs))
    return values


def quality(tmp: Path, budget: int = 200, problems=PROBLEMS[:1], seeds=(11, 12, 13),
            workers: int = 4, in_process: bool = False) -> list[dict]:
    rows = []
    for (law, data), seed in ((p, s) for p in problems for s in seeds):
        runs = {}
        for w in (1, workers):
            if in_process:
                values = _history_in_process(law, data, seed, w, budget)
            else:
                s = fit(FitConfig(law, data, evals=budget, workers=w, seed=seed),
                        tmp / f"q{law}{data}{seed}-{w}", quiet=True)
                values = read_results(Path(s["run_dir"]) / "results.csv")["objective"]
            runs[w] = np.minimum.accumulate(np.asarray(values, dtype=float))
        ref = runs[1][-1]
        reach = {w: int(np.argmax(b <= 1.01 * ref)) + 1 if np.any(b <= 1.01 * ref) else None
                 for w, b in runs.items()}
        rows.append({"problem": f"{law} x {data}", "seed": seed,
                     "evals to 1% (1 worker)": reach[1],
                     f"evals to 1% ({workers} workers)": reach[workers] or "-",
                     "ratio": reach[workers] / reach[1] if reach[workers] else "-",
                     f"best {workers} workers / 1 worker": runs[workers][-1] / ref,
                     f"evaluations 1 / {workers} workers": f"{len(runs[1])} / "
                                                            f"{len(runs[workers])}"})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evals", type=int, default=40, help="evaluations per run (default 40)")
    ap.add_argument("--delay", type=float, default=0.5, help="--eval-delay (default 0.5 s)")
    ap.add_argument("--reps", type=int, default=2, help="repetitions of each case (default 2)")
    ap.add_argument("--no-mpi", dest="mpi", action="store_false", help="skip mpirun")
    ap.add_argument("--only", choices=["speed-up", "manager", "quality"],
                    help="one part only (default: all three)")
    ap.add_argument("--all-problems", action="store_true",
                    help="quality on the 6 problems of benchmarks/speed.py, not hoffmann only")
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13],
                    help="quality: seeds (default 11 12 13)")
    ap.add_argument("--workers", type=int, default=4,
                    help="quality: workers compared with one (default 4)")
    ap.add_argument("--in-process", action="store_true",
                    help="quality: evaluate in this process, results in the order asked "
                         "(the same every run), instead of a libEnsemble ensemble")
    args = ap.parse_args()
    problems = PROBLEMS if args.all_problems else PROBLEMS[:1]
    if args.workers < 2:
        ap.error(f"--workers: at least 2 to compare with one, got {args.workers}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.only == "quality":
            print(markdown(quality(tmp, problems=problems, seeds=args.seeds,
                                   workers=args.workers, in_process=args.in_process)))
            return
        if args.only == "manager":
            print(json.dumps({k: round(v, 3) for k, v in manager_time(tmp).items()}))
            return
        if args.only == "speed-up":
            print(markdown(speedups(args.evals, args.delay, args.reps, args.mpi, tmp)))
            return
        print(f"## Speed-up: default fit, {args.evals} evaluations, --eval-delay {args.delay}, "
              f"end to end, median of {args.reps}\n")
        print(markdown(speedups(args.evals, args.delay, args.reps, args.mpi, tmp)))
        print("\n## Manager time per evaluation (200 zero-delay evaluations, 1 worker; "
              "target <= 2 ms)\n")
        print(json.dumps({k: round(v, 3) for k, v in manager_time(tmp).items()}))
        print("\n## Quality: evaluations to 1% of the 1-worker best, 1 and 4 workers "
              "(target: ratio 0.8-1.2)\n")
        print(markdown(quality(tmp, problems=problems)))


if __name__ == "__main__":
    main()
