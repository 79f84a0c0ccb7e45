"""The Python API the CLI is a thin layer over: fit, resume, score, and reading results back."""
from __future__ import annotations

import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from tuner import __version__
from tuner.data.datasets import load
from tuner.fit.diagnostics import degenerate
from tuner.run.ensemble import COMMS, EvalTask, GenState, run_libe
from tuner.errors import TunerError
from tuner.fit.objective import Objective, ObjectiveSpec, evaluate
from tuner.fit.optimizers import LIARS, SURROGATES, make_optimizer
from tuner.paths import runs_dir
from tuner.run.rundir import RunDir, write_json
from tuner.run.watchdog import check_capacity
from tuner.laws.spaces import Space, load_space, parse_assignments

@dataclass
class FitConfig:
    """Everything that defines a run; stored as config.json so the run can be resumed."""

    law: str
    data: str
    optimizer: str = "ytopt"
    evals: int = 200
    seed: int = 0
    objective: str = "huber"
    delta: float = 1e-3
    drop_outliers: bool = True
    surrogate: str = "RF"
    liar: str = "cl_max"
    n_initial_points: int = 10
    polish: float | None = None  # ytopt: share of the budget for the polish (None: automatic)
    profile: bool = True  # ytopt: solve linear coefficients, search the exponents only
    faithful: bool = False  # ytopt exactly as published
    workers: int = 1
    comms: str = "local"
    eval_delay: float = 0.0
    space: str | None = None
    fix: dict[str, float] = field(default_factory=dict)
    bootstrap: int = 0  # resamples refitted after the fit for 95% intervals (0: none)

    @classmethod
    def from_dict(cls, raw: Mapping, where: str) -> "FitConfig":
        """A config read back from ``where``; unknown keys or wrong types are one line."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise TunerError(f"{where}: unknown key(s) {', '.join(unknown)} in 'fit' "
                             f"(known: {', '.join(sorted(known))})")
        try:
            config = cls(**raw)
            config.check()
        except TypeError as exc:
            raise TunerError(f"{where}: invalid 'fit' configuration ({exc})") from None
        except TunerError as exc:
            raise TunerError(f"{where}: {exc}") from None
        return config

    def check(self) -> None:
        """Every option checked before anything is written; TunerError naming the bad one."""
        for name, what in (("evals", "--evals"), ("workers", "--workers"),
                           ("seed", "--seed"), ("n_initial_points", "--initial-points"),
                           ("bootstrap", "--bootstrap")):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TunerError(f"{what} must be an integer, got {v!r}")
        for name, what in (("delta", "--delta"), ("eval_delay", "--eval-delay"),
                           ("polish", "--polish")):
            v = getattr(self, name)
            if v is None and name == "polish":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TunerError(f"{what} must be a finite number, got {v!r}")
        if not isinstance(self.fix, dict):
            raise TunerError(f"--fix must be name=value pairs, got {self.fix!r}")
        for k, v in self.fix.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TunerError(f"--fix: {k}={v!r} is not a finite number")
        if self.n_initial_points < 0:
            raise TunerError(f"--initial-points must be >= 0, got {self.n_initial_points}")
        if self.evals < 1:
            raise TunerError(f"--evals must be >= 1, got {self.evals}")
        if self.workers < 1:
            raise TunerError(f"--workers must be >= 1, got {self.workers}")
        if self.comms not in COMMS:
            raise TunerError(f"unknown --comms {self.comms!r}; choose one of {', '.join(COMMS)}")
        if self.surrogate.upper() not in SURROGATES:
            raise TunerError(f"unknown --surrogate {self.surrogate!r}; choose one of "
                             f"{', '.join(SURROGATES)}")
        if self.liar not in LIARS:
            raise TunerError(f"unknown --liar {self.liar!r}; choose one of {', '.join(LIARS)}")
        if self.eval_delay < 0:
            raise TunerError(f"--eval-delay must be >= 0, got {self.eval_delay}")
        if self.bootstrap < 0 or self.bootstrap == 1:
            raise TunerError(f"--bootstrap must be 0 or >= 2, got {self.bootstrap}")
        check_capacity(self.evals, self.workers, self.comms)

    def objective_spec(self) -> ObjectiveSpec:
        return ObjectiveSpec(self.law, self.data, self.objective, self.delta, self.drop_outliers)

    def load_space(self) -> Space:
        space = load_space(self.law, self.space)
        return space.with_fixed(self.fix) if self.fix else space


@dataclass
class Prepared:
    config: FitConfig
    space: Space
    objective: Objective


def prepare(config: FitConfig) -> Prepared:
    """Check every input before anything is written."""
    config.check()
    spec = config.objective_spec()
    objective = Objective.from_spec(spec)
    space = config.load_space()
    # The run's own optimizer, built once here so its checks fail before anything is written.
    _make_optimizer(config, space, custom=False).close()
    return Prepared(config, space, objective)


def _make_optimizer(config: FitConfig, space: Space, *, custom: bool):
    """The optimizer a run uses (``custom``: a user objective_fn replaces the built-in one)."""
    return make_optimizer(config.optimizer, space, seed=config.seed, budget=config.evals,
                          surrogate=config.surrogate, liar=config.liar,
                          n_initial_points=config.n_initial_points, polish=config.polish,
                          faithful=config.faithful,
                          # Custom objectives cannot solve linear coefficients; the 'paper'
                          # objective has no residuals to solve them from.
                          profile=(config.profile and not custom
                                   and config.objective != "paper"),
                          gradients=not custom)


class Progress:
    """One line per update on stderr: evaluations done, best so far, rate, ETA."""

    def __init__(self, total: int, done: int = 0, quiet: bool = False, every: float = 1.0):
        self.total, self.start_done, self.quiet, self.every = total, done, quiet, every
        self.t0 = time.time()
        self.last = 0.0

    def __call__(self, told: int, best: float) -> None:
        if self.quiet:
            return
        now = time.time()
        done = self.start_done + told
        if now - self.last < self.every and done < self.total:
            return
        self.last = now
        rate = told / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        print(f"[{done:>5}/{self.total}] best {best:.6g}  {rate:.1f} eval/s  "
              f"ETA {eta:.0f}s", file=sys.stderr, flush=True)


def _default_run_dir(config: FitConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    data = Path(config.data).stem
    return runs_dir() / f"{config.law}-{data}-{config.optimizer}-{stamp}"


def _task(prep: Prepared, run: RunDir, objective_fn: Callable | None) -> EvalTask:
    return EvalTask(objective=prep.config.objective_spec().as_dict(), space=prep.space,
                    results_path=str(run.results_path), header=run.header(),
                    eval_delay=prep.config.eval_delay, objective_fn=objective_fn)


def _mpi_share(value_or_error):
    """Rank 0's (value, error) reaches every rank; workers do no preparation of their own."""
    from mpi4py import MPI
    return MPI.COMM_WORLD.bcast(value_or_error, root=0)


def fit(config: FitConfig, run_dir: str | Path | None = None, *, quiet: bool = False,
        objective_fn: Callable[[Mapping[str, float]], float] | None = None) -> dict | None:
    """Run one fit through libEnsemble and return its summary (None on MPI worker ranks).

    ``objective_fn`` replaces the built-in objective (it must be picklable for local comms).
    """
    manager = config.comms != "mpi" or _rank() == 0
    prep = run = lock = None
    error = None
    if manager:
        try:
            prep = prepare(config)
            run = RunDir.create(run_dir or _default_run_dir(config),
                                {"tuner_version": __version__, "fit": asdict(config)},
                                prep.space.all_names)
            lock = run.lock()
        except TunerError as exc:
            error = str(exc)
    if config.comms == "mpi":
        error, path = _mpi_share((error, str(run.path) if run else None))
        if error is None and not manager:
            prep, run = prepare(config), RunDir.open(path)
    if error is not None:
        if manager:
            raise TunerError(error)
        return None
    summary = _run(prep, run, done=None, lock=lock, quiet=quiet, objective_fn=objective_fn)
    if summary is not None and config.bootstrap and "best_params" in summary:
        if objective_fn is not None:
            raise TunerError("--bootstrap needs the built-in objective")
        from tuner.analysis.bootstrap import bootstrap
        summary.update(bootstrap(prep.objective, prep.space, summary["best_params"],
                                 k=config.bootstrap, seed=config.seed, workers=config.workers,
                                 comms=config.comms, workdir=str(run.path)))
        write_json(run.summary_path, summary)
    return summary


def resume(run_dir: str | Path, evals: int | None = None, *, workers: int | None = None,
           comms: str | None = None, quiet: bool = False,
           objective_fn: Callable | None = None) -> dict | None:
    """Continue a run to its budget (or ``evals``): finished evaluations are told, not re-run.

    Nothing in the directory changes before this process holds the run's lock and every
    input (config.json, the header of results.csv, the new options) has been checked; a torn
    or unparseable line of results.csv is reported once and its evaluation run again.
    """
    run = RunDir.open(run_dir)
    if comms is None:  # a read, to learn whether this process is an MPI worker rank
        comms = run.config()["fit"].get("comms", "local")
    manager = comms != "mpi" or _rank() == 0
    lock = run.lock() if manager else None
    try:
        raw = run.config()
        fit_raw = dict(raw["fit"])
        # Runs made before the profile existed continue with the method they started with.
        fit_raw.setdefault("profile", False)
        config = FitConfig.from_dict(fit_raw, str(run.config_path))
        if evals is not None:
            config.evals = evals
        if workers is not None:
            config.workers = workers
        if comms is not None:
            config.comms = comms
        prep = prepare(config)
        run.check_header(prep.space.all_names)
        done = run.results()
        if manager:
            run.check_writable()
            for w in done.attrs.get("warnings", []):
                print(f"tuner: warning: {w}", file=sys.stderr, flush=True)
            raw["fit"] = asdict(config)
            write_json(run.config_path, raw)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return _run(prep, run, done=done, lock=lock, quiet=quiet or not manager,
                objective_fn=objective_fn)


def _rank() -> int:
    from mpi4py import MPI
    return MPI.COMM_WORLD.Get_rank()


def _run(prep: Prepared, run: RunDir, done, *, lock, quiet: bool,
         objective_fn: Callable | None) -> dict | None:
    """Run the remaining budget; releases ``lock`` (the manager's hold on the run) at the end."""
    config = prep.config
    manager = config.comms != "mpi" or _rank() == 0
    n_done = 0 if done is None else len(done)
    remaining = config.evals - n_done
    t0 = time.time()
    try:
        state = None
        if manager:
            opt = _make_optimizer(config, prep.space, custom=objective_fn is not None)
            if n_done:
                names = prep.space.all_names
                configs = [{n: float(r[n]) for n in names} for _, r in done.iterrows()]
                grads = curvs = None
                if objective_fn is None:
                    # Gradients are not logged; recompute them (a replay, not new evaluations)
                    # so a resumed local search continues exactly where it was.
                    replay = [evaluate(prep.objective, prep.space, c) for c in configs]
                    grads, curvs = [r[2] for r in replay], [r[3] for r in replay]
                opt.tell(configs, done["objective"].tolist(), grads, curvatures=curvs)
            workers = config.workers
            if config.comms == "mpi":
                from mpi4py import MPI
                workers = MPI.COMM_WORLD.Get_size() - 1
                if workers < 1:
                    raise TunerError("--comms mpi needs at least 2 MPI ranks "
                                     "(mpirun -np N+1: one manager and N workers)")
            # Ids of torn lines count as used: a re-run gets a new id, never a repeated one.
            first_id = int(done.attrs.get("last_id", -1)) + 1 if done is not None else 0
            state = GenState(opt, remaining, workers, first_id,
                             Progress(config.evals, n_done, quiet))
            if remaining <= 0:
                opt.close()
                return write_summary(run, prep, time.time() - t0)
        if remaining > 0:
            run_libe(_task(prep, run, objective_fn), state, workers=config.workers,
                     comms=config.comms, budget=remaining)
        if not manager:
            return None
        return write_summary(run, prep, time.time() - t0)
    finally:
        if lock is not None:
            lock.release()


def versions() -> dict[str, str]:
    import importlib.metadata as md
    out = {"python": platform.python_version(), "tuner": __version__}
    for pkg in ("libensemble", "ConfigSpace", "scikit-optimize", "scikit-learn", "numpy",
                "scipy", "pandas", "mpi4py"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def write_summary(run: RunDir, prep: Prepared, wall: float) -> dict:
    """summary.json from results.csv (the single record of the run)."""
    frame = run.results()
    names = prep.space.all_names
    summary: dict = {"run_dir": str(run.path), "law": prep.config.law, "data": prep.config.data,
                     "optimizer": prep.config.optimizer, "objective": prep.config.objective,
                     "evals": int(len(frame)), "budget": prep.config.evals,
                     "failed": int((frame["status"] != "ok").sum()) if len(frame) else 0,
                     "workers": sorted(int(w) for w in frame["worker"].dropna().unique()),
                     "wall_seconds": wall}
    if len(frame):
        best = frame.loc[frame["objective"].idxmin()]
        params = {n: float(best[n]) for n in names}
        published = prep.space.default() if prep.space.source else None
        summary.update({
            "best_eval_id": int(best["eval_id"]),
            "best_objective": float(best["objective"]),
            "best_params": params,
            "rmse_log": prep.objective.rmse_log(params),
            "published_params": published,
            "published_objective": prep.objective(published) if published else None,
            "warnings": degenerate(prep.space, params, prep.objective.dataset),
        })
    summary["versions"] = versions()
    write_json(run.summary_path, summary)
    return summary


def coefficients(law: str, spec: str | None) -> dict[str, float]:
    """Coefficients from 'published', a run directory, or 'k=v,...' (others published)."""
    from tuner.laws.spaces import published
    base = published(law)
    if spec in (None, "", "published"):
        return base
    path = Path(spec)
    if path.is_dir():
        summary = RunDir.open(path).summary()
        if summary.get("law") != law:
            raise TunerError(f"{path}: run fitted law {summary.get('law')!r}, not {law!r}")
        return {n: float(summary["best_params"][n]) for n in base}
    given = parse_assignments(spec)
    unknown = [k for k in given if k not in base]
    if unknown:
        raise TunerError(f"--coefficients: {', '.join(unknown)} not coefficients of {law} "
                         f"({', '.join(base)})")
    return {**base, **given}


def score(law: str, data: str, coeffs: str | None = "published", *, objective: str = "huber",
          delta: float = 1e-3, drop_outliers: bool = True) -> dict:
    """The objective and RMSE of log residuals of one coefficient set on one dataset."""
    obj = Objective.from_spec(ObjectiveSpec(law, data, objective, delta, drop_outliers))
    params = coefficients(law, coeffs)
    return {"law": law, "data": data, "objective_kind": objective,
            "objective": obj(params), "rmse_log": obj.rmse_log(params), "runs": len(obj.dataset),
            "params": params}
