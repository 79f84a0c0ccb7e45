"""Many fits at once: speed-up of bootstrap refits, `rank` and Fig. 7 over libEnsemble workers.

    python benchmarks/many_fits.py [--rounds 2] [--k 200] [--refit-budget 20] [--rank-evals 30]
    python benchmarks/many_fits.py --only fig7 [--fig7-evals 40] [--fig7-delay 0]

Each workload is one ensemble of whole fits (``tuner.run.batch``). Configurations run
interleaved, round by round (1, 2 and 4 local workers, 4 threads, and ``mpirun -np 5`` with
``--comms mpi`` when mpirun is found); the speed-up is the median over rounds of the
one-worker time over that configuration's time in the same round. "same" says whether the
results equal the one-worker results exactly.

1. CPU-bound: the real fits. ``bootstrap``: K resamples of hoffmann × chinchilla_epoch, each
   refitted by L-BFGS-B with ``--refit-budget`` evaluations (the default refit has 300: a
   shorter run, same scheduling). ``rank``: every built-in law on frantar_t5, ``--rank-evals``
   per fit. On a machine with C cores, CPU-bound tasks cannot speed up beyond C.
2. Delayed: the same tasks with a sleep added to each (``--delay`` per bootstrap refit,
   ``--rank-delay`` per law; tasks that wait
   on something other than this machine's CPU, as a cluster's costly fits are to the
   scheduler): this shows what the scheduling itself allows. Rank gets two formula laws
   besides the six built-in ones, because 6 tasks on 4 workers take 2 rounds (at most 3x).
3. ``fig7``: ``tuner reproduce fig7`` end to end (its 5 panels x 3 searchers x 2 seeds and a
   reference per panel, 35 fits as the tasks of one ensemble, then the tables and the
   figure), ``--fig7-evals`` per search, the reference at 100 evaluations, ytopt as published
   left out; ``--fig7-delay`` adds a sleep to each fit.

Every process warms up first (one small untimed run: imports, each law's derivatives), and
the mpirun time is measured inside rank 0 around the same call, so all rows time the same
work; mpirun's start-up (launch, imports, warm-up) is printed separately.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import tuner
from tuner.api import to_json
from tuner.laws import LAWS
from tuner.run import batch

RANK_DATA = "frantar_t5"
EXTRA_LAWS = ["e + a/N**alpha + b/D**beta", "e + a/N**alpha + b/D**beta + c*S"]


def _delayed(task, delay: float):
    """A task that first waits ``delay`` seconds (module level: picklable by reference)."""
    time.sleep(delay)
    return task()


_RUN_TASKS = batch.run_tasks


def _with_delay(delay: float) -> None:
    """Make every ensemble of this process wrap its tasks in ``_delayed`` (0: undo)."""
    if delay <= 0:
        batch.run_tasks = _RUN_TASKS
        return

    def run_delayed(tasks, **kw):
        return _RUN_TASKS([batch.Task(_delayed, t, delay) for t in tasks], **kw)
    batch.run_tasks = run_delayed


def _digest(value) -> str:
    return hashlib.sha256(to_json(value).encode()).hexdigest()[:12]


def workload(name: str, args, workers: int, comms: str) -> tuple[float, str | None]:
    """(wall seconds, digest of the results); digest None on MPI worker ranks."""
    _with_delay({"bootstrap": args.delay, "rank": args.rank_delay,
                 "fig7": args.fig7_delay}[name])
    if name == "fig7":
        import tempfile
        from tuner.views import reproduce
        reproduce.REFERENCE_EVALS = 100
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            res = reproduce.fig7(Path(out), evals=args.fig7_evals, seeds=2, faithful=False,
                                 workers=workers, comms=comms, quiet=True)
            wall = time.perf_counter() - t0
        if res is None:
            return wall, None
        return wall, _digest([{k: v for k, v in r.items() if not k.endswith("_seconds")}
                              for r in res["rows"]])
    if name == "bootstrap":
        from tuner.analysis.bootstrap import bootstrap
        from tuner.fitting.loop import minimize_inprocess
        from tuner.fitting.objective import Objective, ObjectiveSpec
        obj = Objective.from_spec(ObjectiveSpec("hoffmann", "chinchilla_epoch"))
        space = obj.default_space()
        best, _ = minimize_inprocess(obj, space, "lbfgs", budget=300)
        t0 = time.perf_counter()
        out = bootstrap(obj, space, best, k=args.k, budget=args.refit_budget, workers=workers,
                        comms=comms, quiet=True)
        wall = time.perf_counter() - t0
        return wall, None if out is None else _digest(out["bootstrap_params"])
    laws = None if args.rank_delay <= 0 else [*LAWS, *EXTRA_LAWS]
    t0 = time.perf_counter()
    out = tuner.rank(RANK_DATA, laws, evals=args.rank_evals, workers=workers, comms=comms)
    wall = time.perf_counter() - t0
    return wall, None if out is None else _digest(out)


def warm_up(name: str, args) -> None:
    """One small untimed run here (no ensemble): the one-time costs of a process (a law's
    derivatives, imports) are paid before timing, in this process and so in the workers it
    forks. Every MPI rank does the same before its timed run."""
    small = argparse.Namespace(**{**vars(args), "k": 2, "refit_budget": 5, "rank_evals": 3,
                                  "delay": 0.0, "rank_delay": 0.0, "fig7_evals": 3,
                                  "fig7_delay": 0.0})
    if name == "rank" and args.rank_delay > 0:
        small.rank_delay = 1e-9  # the same laws as the timed run
    workload(name, small, 1, "local")


def _mpirun() -> str | None:
    return shutil.which("mpirun") or shutil.which("mpirun", path=str(Path(sys.executable).parent))


def run_mpi(name: str, args) -> tuple[float, str, float]:
    cmd = [_mpirun(), "-np", "5", sys.executable, __file__, "--child", name, "--k", str(args.k),
           "--refit-budget", str(args.refit_budget), "--rank-evals", str(args.rank_evals),
           "--delay", str(args.delay), "--rank-delay", str(args.rank_delay),
           "--fig7-evals", str(args.fig7_evals), "--fig7-delay", str(args.fig7_delay)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    total = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    return doc["wall"], doc["digest"], total - doc["wall"]


CONFIGS = [(1, "local"), (2, "local"), (4, "local"), (4, "threads"), (4, "mpi")]


def measure(name: str, args) -> list[dict]:
    configs = [c for c in CONFIGS if c[1] != "mpi" or _mpirun()]
    walls: dict = {c: [] for c in configs}
    digests: dict = {c: set() for c in configs}
    startup = []
    warm_up(name, args)
    for rnd in range(args.rounds):
        for c in configs:  # interleaved: every configuration once per round
            if c[1] == "mpi":
                wall, digest, extra = run_mpi(name, args)
                startup.append(extra)
            else:
                wall, digest = workload(name, args, *c)
            walls[c].append(wall)
            digests[c].add(digest)
            print(f"  round {rnd + 1} {name} {c[0]} {c[1]}: {wall:.1f}s", file=sys.stderr,
                  flush=True)
    base = walls[(1, "local")]
    rows = []
    for c in configs:
        ratios = [b / w for b, w in zip(base, walls[c])]
        rows.append({"workload": name, "workers": c[0],
                     "comms": "mpirun -np 5" if c[1] == "mpi" else c[1],
                     "wall_s (median)": statistics.median(walls[c]),
                     "speed-up (median of rounds)": statistics.median(ratios),
                     "same as 1 worker": digests[c] == digests[(1, "local")]
                     and len(digests[c]) == 1})
    if startup:
        rows[-1]["comms"] += f" (+{statistics.median(startup):.1f}s start-up)"
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    ap.add_argument("--k", type=int, default=200, help="bootstrap resamples (default 200)")
    ap.add_argument("--refit-budget", type=int, default=20,
                    help="L-BFGS-B evaluations per bootstrap refit (default 20)")
    ap.add_argument("--rank-evals", type=int, default=30, help="evaluations per rank fit")
    ap.add_argument("--delay", type=float, default=0.0,
                    help="seconds of sleep added to each bootstrap refit (0: CPU-bound)")
    ap.add_argument("--rank-delay", type=float, default=0.0,
                    help="seconds of sleep added to each law's fits in rank (0: CPU-bound)")
    ap.add_argument("--fig7-evals", type=int, default=40, help="budget per Fig. 7 search")
    ap.add_argument("--fig7-delay", type=float, default=0.0,
                    help="seconds of sleep added to each Fig. 7 fit (0: CPU-bound)")
    ap.add_argument("--only", choices=["bootstrap", "rank", "fig7"],
                    help="one workload only (default: bootstrap and rank)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # one rank of an mpirun measurement
        warm_up(args.child, args)
        wall, digest = workload(args.child, args, 1, "mpi")
        if digest is not None:
            print(json.dumps({"wall": wall, "digest": digest}), flush=True)
        return
    from tuner.views.tables import markdown
    cores = os.cpu_count()
    what = (f"each task sleeps before its fit ({args.delay} s per bootstrap refit, "
            f"{args.rank_delay} s per rank law, {args.fig7_delay} s per Fig. 7 fit)"
            if args.delay > 0 or args.rank_delay > 0 or args.fig7_delay > 0
            else "CPU-bound (the fits alone)")
    print(f"## {what}; {cores} cores; load average {os.getloadavg()[0]:.1f} at the start; "
          f"{args.rounds} interleaved rounds\n")
    print(f"bootstrap: K={args.k} resamples of hoffmann x chinchilla_epoch, L-BFGS-B refits "
          f"of {args.refit_budget} evaluations; rank: {RANK_DATA}, "
          f"{'every built-in law' if args.rank_delay <= 0 else '6 built-in + 2 formula laws'}, "
          f"{args.rank_evals} evaluations per fit\n")
    rows = []
    for name in ("bootstrap", "rank", "fig7"):
        if args.only == name or (args.only is None and name != "fig7"):
            rows += measure(name, args)
    print(markdown(rows))


if __name__ == "__main__":
    main()
