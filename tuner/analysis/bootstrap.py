"""Bootstrap confidence intervals: refit on K resamples of the runs (drawn with replacement).

Resample k draws its runs with ``numpy.random.default_rng([seed, k])``, so intervals depend
only on (data, K, seed), not on scheduling. Every resample is refitted by L-BFGS-B (analytic
gradients, in process) warm-started from the full-data best, whatever the main optimizer was:
a resample's optimum lies near the full-data one, so a local method finds it cheaply. With
more than one worker, or under MPI, the K refits are the tasks of one libEnsemble ensemble
(``tuner.run.batch``: each task one resample refit); with one worker they run here, in order.
Either way resample k's refit is the same computation, so intervals do not depend on workers.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Mapping

import numpy as np

from tuner.fitting.objective import Objective
from tuner.fitting.loop import minimize_inprocess
from tuner.laws.spaces import Space

LEVEL = 0.95
BUDGET = 300      # evaluations per resample refit
N_STARTS = 8      # starts screened besides the warm start


class BootstrapTask:
    """What one refit needs (a plain class: libEnsemble's specs would turn a dataclass into a
    dict)."""

    def __init__(self, objective: Objective, space: Space, start: Mapping[str, float],
                 seed: int, budget: int = BUDGET):
        self.objective, self.space, self.start = objective, space, dict(start)
        self.seed, self.budget = seed, budget

    def resample(self, k: int) -> Objective:
        ds = self.objective.dataset
        rng = np.random.default_rng([self.seed, k])
        group = self.objective.spec.group
        if group is None:
            idx = rng.integers(0, len(ds), len(ds))
        else:  # within each group, so every group keeps its runs' count
            codes = ds.groups(group)[1]
            idx = np.concatenate([rng.choice(np.flatnonzero(codes == g), (codes == g).sum())
                                  for g in np.unique(codes)])
        frame = ds.frame.iloc[idx].reset_index(drop=True)
        return Objective(self.objective.spec, replace(ds, name=f"{ds.name}[boot{k}]",
                                                      frame=frame))

    def refit(self, k: int) -> np.ndarray:
        """Free coefficients of resample k's best fit, in ``space.names`` order."""
        params, _ = minimize_inprocess(self.resample(k), self.space, "lbfgs", budget=self.budget,
                                       seed=self.seed, start=self.start, n_starts=N_STARTS)
        return np.array([params[n] for n in self.space.names])


def bootstrap(objective: Objective, space: Space, best: Mapping[str, float], *, k: int,
              seed: int = 0, workers: int = 1, comms: str = "local",
              workdir: str | None = None, quiet: bool = False,
              budget: int = BUDGET) -> dict | None:
    """``intervals`` (free coefficient -> [low, high]), ``bootstrap`` (settings) and
    ``bootstrap_params`` (the K refitted coefficient sets, read by ``tuner predict``).
    ``budget``: evaluations per refit.

    The K refits are tasks of one ensemble (``tuner.run.batch``); under ``comms="mpi"`` every
    rank calls this, and worker ranks get None."""
    from tuner.run import mpi
    from tuner.run.batch import Task, run_tasks
    from tuner.run.progress import Progress
    task = BootstrapTask(objective, space, best, seed, budget)
    bar = Progress(k, quiet=quiet or not mpi.is_manager(comms), desc="bootstrap", unit="refit")
    try:
        rows = run_tasks([Task(task.refit, i) for i in range(k)], workers=workers,
                         comms=comms, progress=lambda done, total: bar(done), workdir=workdir)
    finally:
        bar.close()
    if rows is None:
        return None
    thetas = np.array(rows)
    q = 100 * (1 - LEVEL) / 2
    lo, hi = np.percentile(thetas, [q, 100 - q], axis=0)
    intervals = {n: [float(a), float(b)] for n, a, b in zip(space.names, lo, hi)}
    ran = mpi.workers() if comms == "mpi" else workers
    info = {"K": k, "seed": seed, "level": LEVEL, "method": "percentile",
            "refit": f"lbfgs in process, warm start at the full-data best, {budget} evaluations",
            "parallel": f"libEnsemble, {ran} workers ({comms})" if ran > 1 or comms == "mpi"
                        else "serial"}
    sets = [space.complete(dict(zip(space.names, map(float, t)))) for t in thetas]
    flags, warnings = check_intervals(space, thetas, intervals)
    return {"intervals": intervals, "bootstrap": info, "bootstrap_params": sets,
            "interval_flags": flags, "warnings": warnings}


ENOUGH = 100      # resamples below which percentile endpoints are called unstable
UNSTABLE = 0.25   # endpoint shift between the two halves, as a share of the interval width


def check_intervals(space: Space, thetas: np.ndarray, intervals: dict) -> tuple[dict, list]:
    """Flags per coefficient and warning sentences: intervals that touch a bound of the
    space (truncated by the box, not set by the data), and endpoints that move when the
    resamples are split in two halves (too few resamples; K < 100 always warns)."""
    from tuner.fitting.diagnostics import EDGE
    k = len(thetas)
    flags: dict[str, list[str]] = {n: [] for n in space.names}
    warnings: list[str] = []
    q = 100 * (1 - LEVEL) / 2
    for j, d in enumerate(space.dims):
        lo_b, hi_b = d.bounds
        u = np.array([d.encode(v) for v in thetas[:, j]])
        width = hi_b - lo_b
        for side, hit in (("lower", (u - lo_b) / width < EDGE),
                          ("upper", (hi_b - u) / width < EDGE)):
            if hit.any():
                bound = d.lower if side == "lower" else d.upper
                lo, hi = intervals[d.name]
                touches = (side == "lower" and (d.encode(lo) - lo_b) / width < EDGE) or \
                          (side == "upper" and (hi_b - d.encode(hi)) / width < EDGE)
                if touches:
                    flags[d.name].append(f"touches {side} bound {bound:g}")
                    warnings.append(
                        f"bootstrap interval of {d.name} [{lo:.4g}, {hi:.4g}] touches the "
                        f"{side} bound {bound:g} of its space ({int(hit.sum())} of {k} "
                        "resamples sit on it): the box, not the data, sets that end")
        if k >= ENOUGH:  # below ENOUGH one warning covers every interval
            half = k // 2
            a = np.percentile(thetas[:half, j], [q, 100 - q])
            b = np.percentile(thetas[half:, j], [q, 100 - q])
            w = abs(intervals[d.name][1] - intervals[d.name][0])
            shift = float(np.max(np.abs(a - b)))
            if w > 0 and shift > UNSTABLE * w:
                flags[d.name].append("unstable endpoints")
                warnings.append(f"bootstrap interval of {d.name}: its endpoints move by "
                                f"{shift / w:.0%} of its width between the two halves of the "
                                f"{k} resamples; more resamples are needed")
    if k < ENOUGH:
        warnings.append(f"bootstrap used K = {k} resamples: 95% percentile intervals from "
                        f"fewer than {ENOUGH} are unstable (their ends rest on the "
                        f"{max(int(k * (1 - LEVEL) / 2), 1)} most extreme resamples); use "
                        "--bootstrap 1000 for numbers to report")
    return {n: f for n, f in flags.items() if f}, warnings


def bootstrap_run(run_dir: str | Path, k: int, quiet: bool = False) -> dict | None:
    """Bootstrap a finished run (its own seed, workers and comms) and add the intervals, the
    settings and the K coefficient sets to its summary.json; returns the summary (None on
    MPI worker ranks, which every rank of an MPI run must call this to serve)."""
    from tuner.run.fit import FitConfig, _upgrade, prepare
    from tuner.run.rundir import RunDir, write_json
    run = RunDir.open(run_dir)
    config = FitConfig(**_upgrade(run.config()["fit"]))
    prep = prepare(config)
    summary = run.summary()
    boot = bootstrap(prep.objective, prep.space, summary["best_params"], k=k, seed=config.seed,
                     workers=config.workers, comms=config.comms, workdir=str(run.path),
                     quiet=quiet)
    if boot is None:
        return None
    summary["warnings"] = summary.get("warnings", []) + boot.pop("warnings", [])
    summary.update(boot)
    write_json(run.summary_path, summary)
    return summary
