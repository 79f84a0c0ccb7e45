"""The Python API the CLI is a thin layer over: fit, resume, score, and reading results back."""
from __future__ import annotations

import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from tuner import __version__
from tuner.fitting.diagnostics import degenerate
from tuner.run.ensemble import COMMS, EvalTask, GenState, in_process, run_libe, run_serial
from tuner.errors import TunerError
from tuner.fitting.evaluation import evaluate
from tuner.fitting.objective import Objective, ObjectiveSpec
from tuner.fitting.optimizers import LIARS, SURROGATES, make_optimizer
from tuner.laws import get_law
from tuner.paths import runs_dir
from tuner.run import mpi
from tuner.run.progress import Progress
from tuner.run.coefficients import coefficients
from tuner.run.rundir import RunDir, sync, write_json
from tuner.run.watchdog import MAX_EVAL_DELAY, check_capacity, check_fits, check_seed
from tuner.data.datasets import file_hash, resolve_data_path
from tuner.laws.spaces import Space, load_space, paper_space


# Options that are one word or a switch: (field, allowed types, what the message asks for).
_TYPED = [("optimizer", (str,), "a name"), ("objective", (str,), "a name"),
          ("residual", (str,), "a name"), ("comms", (str,), "a name"),
          ("surrogate", (str,), "a name"), ("liar", (str,), "a name"),
          ("space", (str,), "a name or a file"), ("group", (str,), "a column name"),
          ("drop_outliers", (bool,), "true or false"), ("profile", (bool,), "true or false"),
          ("faithful", (bool,), "true or false")]


@dataclass
class FitConfig:
    """Everything that defines a run; stored as config.json so the run can be resumed.

    Optimizer options left at None take the optimizer's defaults; one given to an optimizer
    that does not use it is refused (``make_optimizer``)."""

    law: str | dict  # a built-in law's name, a formula, or a law file's definition
    data: str        # a shipped dataset's name or a CSV path (made absolute by ``check``)
    optimizer: str = "ytopt"
    evals: int = 200
    seed: int = 0
    objective: str = "huber"
    delta: float = 1e-3
    drop_outliers: bool = True
    residual: str = "log"
    columns: dict | None = None
    group: str | None = None
    per_group: list | None = None
    surrogate: str | None = None
    liar: str | None = None
    n_initial_points: int | None = None
    polish: float | None = None  # ytopt: share of the budget for the polish (None: automatic)
    profile: bool | None = None  # ytopt: solve linear coefficients, search the exponents only
    faithful: bool | None = None  # ytopt exactly as published
    workers: int = 1
    comms: str = "local"
    eval_delay: float = 0.0
    space: str | None = None  # None: the space that follows the data; 'paper'; or a file
    fix: dict[str, float] = field(default_factory=dict)
    bootstrap: int = 0  # resamples refitted after the fit for 95% intervals (0: none)
    data_sha256: str | None = None  # the dataset file's hash when the run began

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
        for name, kinds, what in _TYPED:
            v = getattr(self, name)
            if v is not None and (not isinstance(v, kinds)
                                  or (bool not in kinds and isinstance(v, bool))):
                raise TunerError(f"--{name.replace('_', '-')} must be {what}, got {v!r}")
        if self.per_group is not None and self.group is None:
            raise TunerError("--per-group needs --group COLUMN (it names what is fitted per "
                             "group)")
        for name, what in (("evals", "--evals"), ("workers", "--workers"),
                           ("seed", "--seed"), ("n_initial_points", "--initial-points"),
                           ("bootstrap", "--bootstrap")):
            v = getattr(self, name)
            if v is None and name == "n_initial_points":
                continue  # not given: the optimizer's default
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
        if self.n_initial_points is not None and self.n_initial_points < 0:
            raise TunerError(f"--initial-points must be >= 0, got {self.n_initial_points}")
        if self.evals < 1:
            raise TunerError(f"--evals must be >= 1, got {self.evals}")
        if self.workers < 1:
            raise TunerError(f"--workers must be >= 1, got {self.workers}")
        if self.comms not in COMMS:
            raise TunerError(f"unknown --comms {self.comms!r}; choose one of {', '.join(COMMS)}")
        if self.surrogate is not None and self.surrogate.upper() not in SURROGATES:
            raise TunerError(f"unknown --surrogate {self.surrogate!r}; choose one of "
                             f"{', '.join(SURROGATES)}")
        if self.liar is not None and self.liar not in LIARS:
            raise TunerError(f"unknown --liar {self.liar!r}; choose one of {', '.join(LIARS)}")
        if not (math.isfinite(self.eval_delay) and self.eval_delay >= 0):
            raise TunerError(f"--eval-delay must be finite and >= 0, got {self.eval_delay}")
        if self.eval_delay > MAX_EVAL_DELAY:
            raise TunerError(f"--eval-delay must be at most {MAX_EVAL_DELAY:g} s (a day), got "
                             f"{self.eval_delay:g}")
        if self.bootstrap < 0 or self.bootstrap == 1:
            raise TunerError(f"--bootstrap must be 0 or >= 2, got {self.bootstrap}")
        check_seed(self.seed)
        check_fits(self.bootstrap, "--bootstrap")
        check_capacity(self.evals, self.workers, self.comms)
        if isinstance(self.law, str) and self.law.endswith(".json"):
            # A law file is read once; the run keeps its definition, not its path.
            self.law = get_law(self.law).definition()
        self.data = resolve_data_path(self.data)

    def options(self) -> dict:
        """The optimizer options the user gave (None: not given)."""
        return {"surrogate": self.surrogate, "liar": self.liar,
                "n_initial_points": self.n_initial_points, "polish": self.polish,
                "profile": self.profile, "faithful": self.faithful}

    def objective_spec(self) -> ObjectiveSpec:
        return ObjectiveSpec(self.law, self.data, self.objective, self.delta, self.drop_outliers,
                             self.residual, self.columns, self.group,
                             tuple(self.per_group) if self.per_group else None)

    def load_space(self, objective: Objective) -> Space:
        law = getattr(objective.law, "base", objective.law)
        if self.space in (None, "default"):
            space = objective.default_space()  # grouped already, when the law is
        else:
            space = paper_space(law) if self.space == "paper" else load_space(law, self.space)
            if self.group is not None:
                space = objective.law.expand_space(space)
        return space.with_fixed(self.fix) if self.fix else space


@dataclass
class Prepared:
    config: FitConfig
    space: Space
    objective: Objective


def prepare(config: FitConfig, *, optimizer: bool = True) -> Prepared:
    """Check every input before anything is written; ``optimizer=False`` where no optimizer
    runs (MPI worker ranks, reports), which then need not import scikit-optimize."""
    config.check()
    spec = config.objective_spec()
    objective = Objective.from_spec(spec)
    space = config.load_space(objective)
    if optimizer:
        # The run's own optimizer, built once here so its checks fail before anything is
        # written.
        _optimizer(config, space, objective_fn=None).close()
    return Prepared(config, space, objective)


def _optimizer(config: FitConfig, space: Space, objective_fn):
    """The optimizer a run uses (``objective_fn``: a user's, replacing the built-in one)."""
    return make_optimizer(config.optimizer, space, seed=config.seed, budget=config.evals,
                          options=config.options(),
                          # Custom objectives give no gradient and cannot solve linear
                          # coefficients; the 'paper' objective has no residuals to solve from.
                          context={"gradients": objective_fn is None,
                                   "profile_allowed": (objective_fn is None
                                                       and config.objective != "paper")})


def _default_run_dir(config: FitConfig) -> Path:
    import re
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    data = Path(config.data).stem
    law = get_law(config.law)
    name = law.name if law.builtin else re.sub(r"[^A-Za-z0-9_.]+", "_", law.name)[:40]
    return runs_dir() / "fit" / f"{name}-{data}-{config.optimizer}-{stamp}"


def _task(prep: Prepared, run: RunDir, objective_fn: Callable | None) -> EvalTask:
    return EvalTask(objective=prep.config.objective_spec().as_dict(), space=prep.space,
                    results_path=str(run.results_path), header=run.header(),
                    eval_delay=prep.config.eval_delay, objective_fn=objective_fn)


def fit(config: FitConfig, run_dir: str | Path | None = None, *, quiet: bool = False,
        objective_fn: Callable[[Mapping[str, float]], float] | None = None) -> dict | None:
    """Run one fit (in process with one worker, else through libEnsemble) and return its
    summary (None on MPI worker ranks).

    ``objective_fn`` replaces the built-in objective (picklable for local comms with several
    workers).
    """
    if config.bootstrap and objective_fn is not None:
        raise TunerError("--bootstrap needs the built-in objective")
    manager = mpi.is_manager(config.comms)
    prep = run = lock = None
    error = None
    if config.comms == "mpi":
        # config.json records the workers the run really had: the MPI ranks but one.
        config = replace(config, workers=mpi.workers())
    if manager:
        try:
            prep = prepare(config)
            if config.data_sha256 is None:
                config.data_sha256 = file_hash(config.data)
            run = RunDir.create(run_dir or _default_run_dir(config),
                                {"tuner_version": __version__, "versions": versions(),
                                 "fit": asdict(config)},
                                prep.space.all_names)
            lock = run.lock()
        except TunerError as exc:
            error = str(exc)
    if config.comms == "mpi":
        error, path = mpi.share((error, str(run.path) if run else None))
        if error is None and not manager:
            prep, run = prepare(config, optimizer=False), RunDir.open(path)
    if error is not None:
        if manager:
            raise TunerError(error)
        return None
    # The bootstrap (config.bootstrap) is an analysis of the finished fit: tuner.api.fit runs
    # it (tuner.analysis.bootstrap.bootstrap_run), above this layer.
    return _run(prep, run, done=None, lock=lock, quiet=quiet, objective_fn=objective_fn)


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
    manager = mpi.is_manager(comms)
    lock = run.lock() if manager else None
    failure, converged = None, False
    try:
        raw = run.config()
        config = FitConfig.from_dict(_upgrade(raw["fit"]), str(run.config_path))
        if config.data_sha256 and file_hash(config.data) != config.data_sha256:
            raise TunerError(f"{config.data}: the dataset changed since this run began (its "
                             "sha256 differs); resume refuses to mix data: start a new fit")
        if evals is not None:
            config.evals = evals
        if workers is not None:
            config.workers = workers
        if comms is not None:
            config.comms = comms
        if config.comms == "mpi":
            config.workers = mpi.workers()
        prep = prepare(config, optimizer=manager)
        run.check_header(prep.space.all_names)
        done = run.results()
        if run.summary_path.exists():
            run.summary()  # a corrupted summary is refused before anything is run
        if evals is not None and evals < len(done):
            raise TunerError(f"--evals {evals} is fewer than the {len(done)} evaluations this "
                             "run has already made")
        converged = evals is None and _converged(run, len(done))
        if manager and not converged:
            run.check_writable()
    except TunerError as exc:
        failure = exc
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    error = None if failure is None else str(failure)
    if comms == "mpi":
        # Every rank stops if one found an error (some checks are the manager's alone):
        # a rank that went on would wait forever for a manager that has stopped.
        error = mpi.first_error(error)
    if error is not None or converged:
        if lock is not None:
            lock.release()
        if error is not None and manager:
            raise failure if failure is not None and str(failure) == error else TunerError(error)
        return run.summary() if manager and error is None else None
    if manager:
        try:
            for w in done.attrs.get("warnings", []):
                print(f"tuner: warning: {w}", file=sys.stderr, flush=True)
            raw["fit"] = asdict(config)
            # The versions of the latest segment; summary.json's segments keep each one's.
            raw["versions"] = versions()
            write_json(run.config_path, raw)
        except BaseException:
            lock.release()
            raise
    return _run(prep, run, done=done, lock=lock, quiet=quiet or not manager,
                objective_fn=objective_fn)


def _converged(run: RunDir, n_done: int) -> bool:
    """The run stopped on convergence with these evaluations: nothing is left to run (a
    larger --evals asks for more search)."""
    try:
        summary = run.summary()
    except TunerError:
        return False
    return bool(summary.get("stopped")) and summary.get("evals") == n_done


def _upgrade(fit: dict) -> dict:
    """A run config written by an older tuner, read with its own meaning."""
    fit = dict(fit)
    fit.setdefault("profile", False)  # runs before the profile existed keep their method
    if "residual" not in fit:
        fit["space"] = fit.get("space") or "paper"  # the only space there was
        from tuner.fitting.optimizers import OPTIMIZERS
        from tuner.fitting.optimizers import OPTION_FLAGS
        takes = OPTIMIZERS[fit.get("optimizer", "ytopt")].OPTIONS
        for k in OPTION_FLAGS:
            if k not in takes:
                fit[k] = None  # defaults were written for every optimizer then
    return fit


def _run(prep: Prepared, run: RunDir, done, *, lock, quiet: bool,
         objective_fn: Callable | None) -> dict | None:
    """Run the remaining budget; releases ``lock`` (the manager's hold on the run) at the end."""
    config = prep.config
    manager = mpi.is_manager(config.comms)
    n_done = 0 if done is None else len(done)
    remaining = config.evals - n_done
    t0 = time.time()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    progress = None
    try:
        state = None
        if manager:
            opt = _optimizer(config, prep.space, objective_fn)
            if n_done:
                names = prep.space.all_names
                configs = [{n: float(r[n]) for n in names} for _, r in done.iterrows()]
                if objective_fn is None:
                    # Gradients are not logged; recompute them (a replay, not new evaluations)
                    # so a resumed local search continues exactly where it was.
                    replay = [evaluate(prep.objective, prep.space, c) for c in configs]
                    for ev, v in zip(replay, done["objective"].tolist()):
                        ev.value = float(v)
                    opt.tell_evaluations(replay)
                else:
                    opt.tell(configs, done["objective"].tolist())
            workers = mpi.workers() if config.comms == "mpi" else config.workers
            # Ids of torn lines count as used: a re-run gets a new id, never a repeated one.
            first_id = int(done.attrs.get("last_id", -1)) + 1 if done is not None else 0
            progress = Progress(config.evals, n_done, quiet,
                                desc=f"fit {prep.objective.law.name[:30]}")
            state = GenState(opt, remaining, workers, first_id, progress)
            if remaining <= 0:
                opt.close()
                return write_summary(run, prep, time.time() - t0, opt,
                                     segment=_segment(started, config, workers, n_done))
        if remaining > 0 and in_process(config.workers, config.comms):
            run_serial(_task(prep, run, objective_fn), state)
        elif remaining > 0:
            run_libe(_task(prep, run, objective_fn), state, workers=config.workers,
                     comms=config.comms, budget=remaining)
        if not manager:
            return None
        summary = write_summary(run, prep, time.time() - t0, state.optimizer,
                                segment=_segment(started, config, workers, n_done))
        if progress is not None:
            progress.close(summary["evals"], summary.get("best_objective"))
        return summary
    finally:
        if progress is not None:
            progress.close()
        if lock is not None:
            lock.release()


def _segment(started: str, config: FitConfig, workers: int, n_done: int) -> dict:
    """What one fit or resume session was: its start, workers, comms and versions."""
    return {"started": started, "evals_before": n_done, "workers": workers,
            "comms": config.comms, "versions": versions()}


def _segments(run: RunDir, frame, segment: dict | None, wall: float) -> list[dict]:
    """Every session of a run: those summary.json already lists, then one for evaluations
    logged by a session that was killed before it wrote a summary (its wall time estimated
    from the timestamps of its evaluations), then ``segment``, this session."""
    previous: list[dict] = []
    counted = 0
    if run.summary_path.is_file():
        try:
            old = run.summary()
        except (TunerError, ValueError):
            old = {}
        previous = list(old.get("segments") or [])
        if not previous and "wall_seconds" in old:  # a run from before segments existed
            previous = [{"evals": int(old.get("evals", 0)), "wall_seconds":
                         float(old["wall_seconds"])}]
        counted = sum(int(p.get("evals", 0)) for p in previous)
    before = segment["evals_before"] if segment else len(frame)
    if before > counted:
        lost = frame.iloc[counted:before]
        stamps = pd.to_datetime(lost["timestamp"], format="ISO8601")
        first_elapsed = float(lost["elapsed"].iloc[0]) if len(lost) else 0.0
        estimate = (stamps.max() - stamps.min()).total_seconds() + first_elapsed
        previous.append({"evals": int(before - counted), "wall_seconds": float(estimate),
                         "interrupted": True})
    if segment is not None:
        seg = {k: v for k, v in segment.items() if k != "evals_before"}
        previous.append({**seg, "evals": int(len(frame) - before), "wall_seconds": wall})
    return previous


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


def write_summary(run: RunDir, prep: Prepared, wall: float, opt=None, *,
                  segment: dict | None = None) -> dict:
    """summary.json from results.csv (the single record of the run).

    ``wall_seconds`` is the run's total over every session (fit, then each resume);
    ``segments`` lists each session's own evaluations, wall time, workers and versions.
    """
    sync(run.results_path)
    frame = run.results()
    space = opt.space if opt is not None else prep.space  # with any bound it widened
    names = space.all_names
    law = prep.objective.law
    segments = _segments(run, frame, segment, wall)
    summary: dict = {"run_dir": str(run.path), "law": law.name, "formula": law.formula,
                     "data": prep.config.data,
                     "optimizer": prep.config.optimizer, "objective": prep.config.objective,
                     "residual": prep.config.residual,
                     "evals": int(len(frame)), "budget": prep.config.evals,
                     "failed": int((frame["status"] != "ok").sum()) if len(frame) else 0,
                     "workers": sorted(int(w) for w in frame["worker"].dropna().unique()),
                     "wall_seconds": float(sum(g["wall_seconds"] for g in segments)),
                     "segments": segments, "space": space.source or "default"}
    if opt is not None and getattr(opt, "converged", False) and len(frame) < prep.config.evals:
        summary["stopped"] = (f"converged after {len(frame)} of {prep.config.evals} "
                              "evaluations (--evals is a ceiling)")
    widened = list(getattr(opt, "widenings", []) or [])
    if widened:
        summary["space_widened"] = widened
    if len(frame):
        best = frame.loc[frame["objective"].idxmin()]
        params = {n: float(best[n]) for n in names}
        published = law.published if law.published and len(law.published) == len(names) else None
        warnings = degenerate(space, params, prep.objective.dataset)
        warnings += [f"{w['name']}'s {w['bound']} bound {w['old']:g} was not physical and the "
                     f"fit pressed against it: widened to {w['new']:g} after "
                     f"{w['after_evals']} evaluations (same budget)" for w in widened]
        warnings += prep.objective.dataset.group_hints(prep.config.group)
        summary.update({
            "best_eval_id": int(best["eval_id"]),
            "best_objective": float(best["objective"]),
            "best_params": params,
            "rmse_log": prep.objective.rmse_log(params),
            "published_params": dict(published) if published else None,
            "published_objective": prep.objective(published) if published else None,
            "warnings": warnings,
        })
        if prep.config.group is not None:
            summary["group_params"] = law.group_params(params)
        from tuner.fitting.uncertainty import standard_errors
        summary["uncertainty"] = standard_errors(prep.objective, space, params)
    summary["versions"] = versions()
    write_json(run.summary_path, summary)
    return summary


def score(law: "str | dict", data: str, coeffs: str | None = "published", *,
          objective: str = "huber", delta: float = 1e-3, drop_outliers: bool = True,
          residual: str = "log", columns: dict | None = None) -> dict:
    """The objective and RMSE of log residuals of one coefficient set on one dataset."""
    obj = Objective.from_spec(ObjectiveSpec(law, resolve_data_path(data), objective, delta,
                                            drop_outliers, residual, columns))
    params = coefficients(law, coeffs)
    return {"law": obj.law.name, "data": data, "objective_kind": objective,
            "objective": obj(params), "rmse_log": obj.rmse_log(params), "runs": len(obj.dataset),
            "params": params}
