"""The public Python API: what a notebook or script uses; the CLI is a layer over these names.

Every function checks its input and raises :class:`tuner.errors.TunerError` (a ValueError)
naming the bad value. Results are plain values, dicts, DataFrames, or a :class:`FitResult`.

Example::

    import tuner
    result = tuner.fit("hoffmann", "chinchilla_epoch", evals=60, quiet=True)
    result.params, result.objective, result.trials.head()
    tuner.load_runs("runs/fit/*")          # one row per run
"""
from __future__ import annotations

import glob as _glob
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence, Union

from tuner.errors import TunerError

if TYPE_CHECKING:  # imported lazily: `import tuner` stays cheap
    import pandas as pd

    from tuner.run.fit import FitConfig

__all__ = ["FitResult", "FitConfig", "fit", "resume", "load", "load_runs", "score", "predict",
           "allocate", "validate", "rank", "sweep", "datasets", "laws", "coefficients"]

PathLike = Union[str, Path]
Coefficients = Union[str, Path, Mapping[str, float], "FitResult", None]


def __getattr__(name: str) -> Any:
    if name == "FitConfig":  # the run configuration dataclass, without importing it eagerly
        from tuner.run.fit import FitConfig
        return FitConfig
    raise AttributeError(f"module 'tuner.api' has no attribute {name!r}")


@dataclass(repr=False)
class FitResult:
    """A fit, finished or loaded from its run directory.

    Attributes:
        run_dir: the run directory (config.json, results.csv, summary.json).
        summary: summary.json as a dict (what ``tuner fit --json`` prints).
        config: the run's configuration (config.json's ``fit`` entry).
    """

    run_dir: Path
    summary: dict
    config: dict = field(default_factory=dict)
    _trials: Any = field(default=None, init=False, compare=False)

    @property
    def law(self) -> str:
        """The law fitted (e.g. ``"hoffmann"``)."""
        return self.summary["law"]

    @property
    def data(self) -> str:
        """The dataset: a shipped name or a CSV path."""
        return self.summary["data"]

    @property
    def optimizer(self) -> str:
        """The optimizer that ran: ytopt, grid, random or lbfgs."""
        return self.summary["optimizer"]

    @property
    def params(self) -> dict[str, float]:
        """The best coefficients found (empty if no evaluation finished)."""
        return dict(self.summary.get("best_params") or {})

    @property
    def objective(self) -> float | None:
        """The best objective value (lower is better)."""
        return self.summary.get("best_objective")

    @property
    def rmse_log(self) -> float | None:
        """Root mean squared log residual of the best coefficients."""
        return self.summary.get("rmse_log")

    @property
    def published_objective(self) -> float | None:
        """The objective of the law's published coefficients on the same data."""
        return self.summary.get("published_objective")

    @property
    def intervals(self) -> dict[str, tuple[float, float]]:
        """95% bootstrap intervals per coefficient (empty unless fitted with ``bootstrap=K``)."""
        return {k: (float(lo), float(hi))
                for k, (lo, hi) in (self.summary.get("intervals") or {}).items()}

    @property
    def warnings(self) -> list[str]:
        """Coefficients at a bound, terms the data cannot identify, and the like."""
        return list(self.summary.get("warnings") or [])

    @property
    def evals(self) -> int:
        """Evaluations finished (over every session of the run)."""
        return int(self.summary.get("evals", 0))

    @property
    def wall_seconds(self) -> float:
        """Wall time over every session of the run (fit and each resume)."""
        return float(self.summary.get("wall_seconds", math.nan))

    @property
    def trials(self) -> "pd.DataFrame":
        """Every evaluation, one row each: eval_id, coefficients, objective, status, elapsed,
        timestamp, worker, error (results.csv, read once)."""
        if self._trials is None:
            from tuner.run.rundir import RunDir
            self._trials = RunDir.open(self.run_dir).results()
        return self._trials

    def to_dict(self) -> dict:
        """summary.json as a dict (JSON-serialisable)."""
        return dict(self.summary)

    def __repr__(self) -> str:
        head = (f"FitResult({self.law} on {self.data}, {self.optimizer}, "
                f"{self.evals} evals, {self.wall_seconds:.1f}s)")
        lines = [head]
        if self.objective is not None:
            pub = self.published_objective
            lines.append(f"  objective {self.objective:.6g}" + (
                f" (published {pub:.6g})" if pub is not None else "")
                + (f", rmse_log {self.rmse_log:.4g}" if self.rmse_log is not None else ""))
        intervals = self.intervals
        for name, value in self.params.items():
            iv = intervals.get(name)
            lines.append(f"  {name:<8} {value:.6g}" + (
                f"  [{iv[0]:.6g}, {iv[1]:.6g}]" if iv else ""))
        lines += [f"  warning: {w}" for w in self.warnings]
        lines.append(f"  run_dir: {self.run_dir}")
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle) -> None:  # IPython / Jupyter
        p.text(repr(self))


def _config_fields() -> list[str]:
    from tuner.run.fit import FitConfig
    return [f.name for f in fields(FitConfig)]


def fit(law: str, data: str, *, run_dir: PathLike | None = None, quiet: bool = False,
        objective_fn: Callable[[Mapping[str, float]], float] | None = None,
        **options: Any) -> FitResult | None:
    """Fit ``law``'s coefficients to ``data`` and return the result (several ``workers``: a
    libEnsemble ensemble; one: in this process).

    Args:
        law: a law name (``tuner.laws()`` lists them).
        data: a shipped dataset name (``tuner.datasets()``) or a CSV path.
        run_dir: the new run directory (must not exist); default
            ``runs/fit/<law>-<data>-<optimizer>-<time>`` under the working directory.
        quiet: no progress bar.
        objective_fn: replaces the built-in objective (picklable for local comms with several
            workers).
        **options: any :class:`tuner.run.fit.FitConfig` field: ``optimizer`` ("ytopt",
            "grid", "random", "lbfgs"), ``evals`` (200), ``seed`` (0), ``objective``
            ("huber", "mse", "paper"), ``delta``, ``drop_outliers``, ``surrogate``, ``liar``,
            ``n_initial_points``, ``polish``, ``profile``, ``faithful``, ``workers``,
            ``comms`` ("local", "threads", "mpi"), ``eval_delay``, ``space``, ``fix`` (a dict),
            ``bootstrap`` (K resamples for intervals).

    Returns:
        The :class:`FitResult`; None on MPI worker ranks (only rank 0 has the result).

    Raises:
        TunerError: an unknown option, law, dataset or value, or an existing ``run_dir``.
    """
    from tuner.run.fit import FitConfig, fit as run_fit
    allowed = [n for n in _config_fields() if n not in ("law", "data")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TunerError(f"fit: unknown option(s) {', '.join(unknown)}; options: "
                         f"{', '.join(allowed)}")
    options.setdefault("fix", {})
    options["fix"] = dict(options["fix"])
    config = FitConfig(law=law, data=str(data), **options)
    summary = run_fit(config, run_dir, quiet=quiet, objective_fn=objective_fn)
    boot_dir = summary["run_dir"] if summary and "best_params" in summary else None
    if config.bootstrap and config.comms == "mpi":
        # The refits are one ensemble over the same ranks: worker ranks (summary None) learn
        # from rank 0 whether there is one and which run it is for.
        from tuner.run import mpi
        boot_dir = mpi.share(boot_dir)
    if config.bootstrap and boot_dir is not None:
        from tuner.analysis.bootstrap import bootstrap_run
        bootstrap_run(boot_dir, config.bootstrap, quiet=quiet)
    return None if summary is None else load(summary["run_dir"])


def resume(run_dir: PathLike, evals: int | None = None, *, workers: int | None = None,
           comms: str | None = None, quiet: bool = False,
           objective_fn: Callable[[Mapping[str, float]], float] | None = None
           ) -> FitResult | None:
    """Continue a killed or extended run to its budget (or a new total ``evals``).

    Finished evaluations are told to the optimizer, never re-run.

    Returns:
        The :class:`FitResult` (None on MPI worker ranks).

    Raises:
        TunerError: not a run directory, or a bad option.
    """
    from tuner.run.fit import resume as run_resume
    summary = run_resume(run_dir, evals, workers=workers, comms=comms, quiet=quiet,
                         objective_fn=objective_fn)
    return None if summary is None else load(summary["run_dir"])


def load(run_dir: PathLike) -> FitResult:
    """The :class:`FitResult` of a finished run directory.

    Raises:
        TunerError: not a run directory, or unfinished (no summary.json: resume it).
    """
    from tuner.run.rundir import RunDir
    run = RunDir.open(run_dir)
    return FitResult(run.path, run.summary(), dict(run.config().get("fit", {})))


def _run_dirs(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    out: list[Path] = []
    for item in items:
        text = str(item)
        if any(ch in text for ch in "*?["):
            matches = [Path(m) for m in sorted(_glob.glob(text))]
        else:
            matches = [Path(text)]
            if not matches[0].exists():
                raise TunerError(f"{text}: no such run directory")
        for m in matches:
            if (m / "config.json").is_file():
                out.append(m)
            elif m.is_dir():  # a folder of runs, e.g. runs/ or runs/fit/
                out += sorted(p.parent for p in m.rglob("config.json")
                              if (p.parent / "results.csv").is_file())
    unique = list(dict.fromkeys(p.resolve() for p in out))
    if not unique:
        raise TunerError(f"no run directories in {', '.join(map(str, items))}")
    return unique


def load_runs(paths: PathLike | Iterable[PathLike]) -> "pd.DataFrame":
    """One DataFrame row per run: what it fitted, how, and its best coefficients.

    Args:
        paths: a run directory, a folder of them (searched recursively), a glob pattern
            (``"runs/fit/hoffmann-*"``), or a list of any of these.

    Returns:
        Columns ``run_dir, law, data, optimizer, seed, objective_kind, evals, budget,
        finished, best_objective, rmse_log, published_objective, wall_seconds, workers``, then
        one column per coefficient (NaN where a run's law has no such coefficient). An
        unfinished run (no summary.json) has ``finished`` False and its best so far.

    Raises:
        TunerError: nothing matches, or a directory is not a run.
    """
    import pandas as pd

    from tuner.run.rundir import RunDir
    rows = []
    for path in _run_dirs(paths):
        run = RunDir.open(path)
        cfg = run.config().get("fit", {})
        row: dict[str, Any] = {"run_dir": str(run.path), "law": cfg.get("law"),
                               "data": cfg.get("data"), "optimizer": cfg.get("optimizer"),
                               "seed": cfg.get("seed"), "objective_kind": cfg.get("objective"),
                               "budget": cfg.get("evals")}
        if run.summary_path.is_file():
            s = run.summary()
            params = s.get("best_params") or {}
            row.update({"evals": s.get("evals"), "finished": True,
                        "best_objective": s.get("best_objective"),
                        "rmse_log": s.get("rmse_log"),
                        "published_objective": s.get("published_objective"),
                        "wall_seconds": s.get("wall_seconds"),
                        "workers": len(s.get("workers") or [])})
        else:
            trials = run.results()
            params = {}
            row.update({"evals": len(trials), "finished": False})
            if len(trials):
                best = trials.loc[trials["objective"].idxmin()]
                row["best_objective"] = float(best["objective"])
                names = [c for c in trials.columns if c not in (
                    "eval_id", "objective", "status", "elapsed", "timestamp", "worker", "error")]
                params = {n: float(best[n]) for n in names}
        for name, value in params.items():
            row[name if name not in row else f"param_{name}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


def _coefficient_spec(coefficients: Coefficients) -> str | None:
    """The CLI's coefficient spec ('published', a run directory, or 'k=v,...') of any input."""
    if isinstance(coefficients, FitResult):
        return str(coefficients.run_dir)
    if isinstance(coefficients, Mapping):
        # repr round-trips floats exactly through the 'k=v' parser.
        return ",".join(f"{k}={float(v)!r}" for k, v in coefficients.items()) or "published"
    return None if coefficients is None else str(coefficients)


def coefficients(law: str, coefficients: Coefficients = "published") -> dict[str, float]:
    """A full coefficient set of ``law``: published values, a run's best (a run directory or a
    :class:`FitResult`), or a partial mapping / ``"k=v,..."`` completed with published values.

    Raises:
        TunerError: an unknown law or coefficient name, or a run of another law.
    """
    from tuner.run.coefficients import coefficients as resolve
    return resolve(law, _coefficient_spec(coefficients))


def score(law: str, data: str, coefficients: Coefficients = "published", *,
          objective: str = "huber", delta: float = 1e-3, drop_outliers: bool = True,
          residual: str = "log", columns: Mapping[str, str] | None = None) -> dict:
    """Objective and RMSE of log residuals of one coefficient set on a dataset.

    Returns:
        ``{"law", "data", "objective_kind", "objective", "rmse_log", "runs", "params"}``.

    Raises:
        TunerError: unknown law, dataset, objective or coefficient.
    """
    from tuner.run.fit import score as run_score
    return run_score(law, str(data), _coefficient_spec(coefficients), objective=objective,
                     delta=delta, drop_outliers=drop_outliers, residual=residual,
                     columns=dict(columns) if columns else None)


def predict(law: str, n_active: float | Sequence[float] | "pd.DataFrame" | str, tokens:
            float | Sequence[float] | None = None, *, sparsity: float | Sequence[float] = 0.0,
            n_total: float | Sequence[float] | None = None,
            coefficients: Coefficients = "published") -> "dict | pd.DataFrame":
    """Predicted loss (nats/token) of one model, or of many.

    Args:
        law: law name.
        n_active: active (non-zero) parameters; or a DataFrame / dataset name / CSV path with
            columns n_active, tokens, sparsity (and n_total).
        tokens: training tokens D (not with a DataFrame).
        sparsity: S in [0, 1).
        n_total: total parameters (default n_active / (1 - S)).
        coefficients: 'published', a run directory or FitResult (its best), or a mapping.

    Returns:
        For one model, a dict ``{"law", "n_active", "n_total", "tokens", "sparsity",
        "compute", "loss"}`` (plus ``loss_lo``/``loss_hi`` from a bootstrap run); for many,
        a DataFrame with those columns, one row per model.

    Raises:
        TunerError: a value out of range, or an unknown law or coefficient.
    """
    import numpy as np
    import pandas as pd

    from tuner.analysis.planning import bootstrap_sets, predict_one
    spec = _coefficient_spec(coefficients)
    params = _resolve(law, spec)
    boot = bootstrap_sets(law, spec)
    if isinstance(n_active, (str, Path)) or isinstance(n_active, pd.DataFrame):
        if tokens is not None:
            raise TunerError("predict: give tokens as a column of the data, not separately")
        if isinstance(n_active, pd.DataFrame):
            from tuner.data.datasets import check_frame
            f = check_frame(n_active, "predict data", need_loss=False)
        else:
            from tuner.data.datasets import load
            f = load(str(n_active), drop_outliers=False, need_loss=False).frame
        rows = [predict_one(law, params, r.n_active, r.tokens, r.sparsity, r.n_total, boot)
                for r in f.itertuples()]
        return pd.DataFrame(rows)
    if tokens is None:
        raise TunerError("predict: tokens is required with n_active")
    if np.ndim(n_active) == 0 and np.ndim(tokens) == 0 and np.ndim(sparsity) == 0 and (
            n_total is None or np.ndim(n_total) == 0):
        return predict_one(law, params, float(n_active), float(tokens), float(sparsity),
                           None if n_total is None else float(n_total), boot)
    b = np.broadcast_arrays(np.asarray(n_active, float), np.asarray(tokens, float),
                            np.asarray(sparsity, float),
                            np.asarray(np.nan if n_total is None else n_total, float))
    rows = [predict_one(law, params, a, d, s, None if math.isnan(t) else t, boot)
            for a, d, s, t in zip(*(x.ravel() for x in b))]
    return pd.DataFrame(rows)


def _resolve(law: str, spec: str | None) -> dict[str, float]:
    from tuner.run.coefficients import coefficients as resolve
    return resolve(law, spec)


def allocate(law: str, compute: float | Sequence[float], *, sparsity: float | None = 0.0,
             s_max: float = 0.99, coefficients: Coefficients = "published") -> "pd.DataFrame":
    """Compute-optimal allocation for each budget (C = 6 N_active D, FLOPs).

    Args:
        law: law name.
        compute: one budget or several, in FLOPs.
        sparsity: fixed sparsity S in [0, 1); None chooses the best S in [0, ``s_max``].
        s_max: largest sparsity considered when ``sparsity`` is None.
        coefficients: 'published', a run directory or FitResult (its best; a bootstrap run
            adds ``<field>_lo`` / ``<field>_hi`` 95% columns), or a mapping.

    Returns:
        A DataFrame, one row per budget: compute, sparsity, n_active, n_total, tokens, loss,
        method.

    Raises:
        TunerError: a budget or sparsity out of range, or an unknown law or coefficient.
    """
    import numpy as np
    import pandas as pd

    from tuner.analysis.planning import allocation_rows, bootstrap_sets
    spec = _coefficient_spec(coefficients)
    budgets = [float(c) for c in np.atleast_1d(np.asarray(compute, dtype=float))]
    rows = allocation_rows(law, _resolve(law, spec), budgets, sparsity, s_max,
                           bootstrap_sets(law, spec))
    return pd.DataFrame(rows)


def validate(law: str, data: str, *, train: str | None = None, loo: bool = False,
             optimizer: str = "ytopt", evals: int = 200, seed: int = 0,
             drop_outliers: bool = True, residual: str = "log",
             columns: Mapping[str, str] | None = None, workers: int = 1,
             comms: str = "local") -> dict | None:
    """Fit on the runs ``train`` selects (a condition in tuner's filter grammar, e.g.
    ``"n_active < 1e9"``; never run as code) or
    leave each run out in turn (``loo=True``), and report errors on the held-out runs.

    Fits with ``fit``'s defaults (ytopt, 200 evaluations); with ``loo`` each run's refit is
    L-BFGS-B from the all-runs optimum, and the refits are tasks of one libEnsemble
    ensemble over ``workers`` (``comms`` "local", "threads" or "mpi").

    Returns:
        ``{"law", "data", "params", "train_runs", "test_runs", "median_abs_rel_error",
        "max_abs_rel_error", "rows"}``; ``rows`` has one dict per held-out run (n_active,
        tokens, sparsity, predicted, observed, rel_error). None on MPI worker ranks.

    Raises:
        TunerError: neither or both of ``train`` and ``loo``, a bad condition, or bad input.
    """
    from tuner.analysis.validate import holdout, leave_one_out, train_mask
    from tuner.data.datasets import resolve_data_path
    from tuner.fitting.objective import Objective, ObjectiveSpec
    from tuner.run.batch import Task, check_parallel, run_tasks
    check_parallel(workers, comms)
    if loo == bool(train):
        raise TunerError("validate: give exactly one of --train EXPR or --loo")
    if evals < 1:
        raise TunerError(f"--evals must be >= 1, got {evals}")
    from tuner.run.watchdog import check_capacity, check_seed
    check_seed(seed)
    check_capacity(evals, 1, "threads")
    spec = ObjectiveSpec(law, resolve_data_path(str(data)), drop_outliers=drop_outliers,
                         residual=residual, columns=dict(columns) if columns else None)
    full = Objective.from_spec(spec)
    space = full.default_space()
    opts = {"optimizer": optimizer, "evals": evals, "seed": seed}
    if loo:
        return leave_one_out(spec, space, workers=workers, comms=comms, **opts)
    # One fit: one task, so that under MPI only one rank fits.
    out = run_tasks([Task(holdout, spec, space, train_mask(full.dataset, train),
                          dataset=full.dataset, **opts)], workers=workers, comms=comms)
    return None if out is None else out[0]


def rank(data: str, laws: Sequence[str] | None = None, *, evals: int = 200, seed: int = 0,
         drop_outliers: bool = True, include_bound: bool = False, residual: str = "log",
         columns: Mapping[str, str] | None = None, workers: int = 1, comms: str = "local",
         progress: Callable[[int, int], None] | None = None) -> "pd.DataFrame | None":
    """Fit every law the data support (or ``laws``: names, formulas or law files) by
    tuner's default method (ytopt) and compare them.

    Each law is one task of one libEnsemble ensemble over ``workers`` (``comms`` "local",
    "threads" or "mpi"); the table does not depend on the worker count.

    Returns:
        A DataFrame, ranked laws first by BIC: rank (None for fits left out: a coefficient on
        a search bound, unless ``include_bound``), law, k (identifiable coefficients), k_free,
        objective, rmse_log, AIC, BIC, the held-out median and max relative error (trained
        on the 75% lowest-compute runs), on_bound, warnings (their text), params. None on
        MPI worker ranks.

    Raises:
        TunerError: an unknown law, a bad formula, too few runs, bad data, or bad
        ``workers``/``comms``.
    """
    import pandas as pd

    from tuner.analysis.rank import rank as rank_laws
    from tuner.run.watchdog import check_capacity, check_seed
    if evals < 1:
        raise TunerError(f"--evals must be >= 1, got {evals}")
    check_seed(seed)
    check_capacity(evals, 1, "threads")
    rows = rank_laws(str(data), list(laws) if laws else None, evals=evals, seed=seed,
                     drop_outliers=drop_outliers, include_bound=include_bound,
                     residual=residual, columns=dict(columns) if columns else None,
                     workers=workers, comms=comms, progress=progress)
    if rows is None:
        return None
    frame = pd.DataFrame(rows)
    frame["rank"] = pd.Series([r["rank"] for r in rows], dtype=object)  # None: not ranked
    return frame


def sweep(path: PathLike, *, workers: int = 1, comms: str = "local",
          progress: Callable[[int, int], None] | None = None) -> "pd.DataFrame | None":
    """Run the grid of fits a sweep file lists (laws × datasets × options × seeds; JSON, or
    TOML named ``.toml``; see ``tuner.analysis.sweep``) as one libEnsemble ensemble over
    ``workers`` (``comms`` "local", "threads" or "mpi"), one task per fit.

    Returns:
        A DataFrame, one row per fit in the file's order: fit (1, 2, ...), law, data, the
        options the file
        sets, evals, seed, evaluations, best_objective, rmse_log, wall_seconds, warnings
        (their text), params (the best coefficients). None on MPI worker ranks. The same
        rows whatever the worker count (wall_seconds aside).

    Raises:
        TunerError: the file unreadable or malformed, an unknown key, law, dataset or
        option, an impossible value (the message names the file and the field), or bad
        ``workers``/``comms``.
    """
    import pandas as pd

    from tuner.analysis.sweep import sweep as run_sweep
    rows = run_sweep(path, workers=workers, comms=comms, progress=progress)
    return None if rows is None else pd.DataFrame(rows)


def datasets() -> "pd.DataFrame":
    """The shipped datasets: rows, rows used, ranges, loss provenance and source."""
    import pandas as pd

    from tuner.data.datasets import summary_rows
    return pd.DataFrame(summary_rows())


def laws() -> "pd.DataFrame":
    """The laws: name, equation, description, coefficient names and published values."""
    import pandas as pd

    from tuner.laws import LAWS
    return pd.DataFrame([{"law": law.name, "equation": law.equation, "formula": law.formula,
                          "description": law.description, "coefficients": list(law.params),
                          "linear": list(law.linear), "published": dict(law.published),
                          "source": law.source} for law in LAWS.values()])


def _jsonable(value: Any) -> Any:
    """Plain JSON of results: DataFrames become lists of records, numpy scalars floats."""
    import numpy as np
    import pandas as pd
    if isinstance(value, FitResult):
        return value.to_dict()
    if isinstance(value, pd.DataFrame):
        return [_jsonable(r) for r in value.to_dict(orient="records")]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(value: Any) -> str:
    """JSON text of any result of this module (NaN and infinities become null)."""
    return json.dumps(_jsonable(value), indent=2)
