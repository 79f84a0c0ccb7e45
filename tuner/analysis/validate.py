"""Held-out validation: fit on a subset of runs, predict the others, report relative errors.

The training subset is a condition over the dataset's numeric columns in the small grammar of
``tuner.data.filters`` (e.g. ``"n_active < 1e9"`` or ``"tokens*n_active*6 < 1e20"``; never run
as code), an explicit mask, or, with
leave-one-out, every run in turn (each LOO refit is warm-started from the all-runs fit; the
refits are tasks of one libEnsemble ensemble, ``tuner.run.batch``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tuner.data import filters
from tuner.data.datasets import Dataset
from tuner.errors import TunerError
from tuner.fitting.objective import Objective, ObjectiveSpec
from tuner.fitting.loop import minimize_inprocess
from tuner.laws.spaces import Space

ID_COLUMNS = ("run_id",)


def train_mask(dataset: Dataset, expr: str) -> np.ndarray:
    """Boolean mask of the rows ``expr`` selects (the grammar of ``tuner.data.filters``, never
    evaluated as code); TunerError if it is not a valid condition."""
    frame = dataset.frame
    numeric = {str(c): frame[c].to_numpy(dtype=float) for c in frame.columns
               if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])}
    return filters.mask(expr, numeric, len(dataset), "--train")


def _rows(dataset: Dataset, test: np.ndarray, predicted: np.ndarray) -> list[dict]:
    f = dataset.frame
    rows = []
    for i, pred in zip(np.flatnonzero(test), predicted):
        r = f.iloc[i]
        row = {c: r[c] for c in ID_COLUMNS if c in f}
        row.update({"n_active": float(r.n_active), "tokens": float(r.tokens),
                    "sparsity": float(r.sparsity), "predicted": float(pred),
                    "observed": float(r.loss), "rel_error": float(pred / r.loss - 1.0)})
        rows.append(row)
    return rows


def _report(rows: list[dict], n_train: int) -> dict:
    err = np.abs([r["rel_error"] for r in rows])
    return {"train_runs": n_train, "test_runs": len(rows),
            "median_abs_rel_error": float(np.median(err)),
            "max_abs_rel_error": float(np.max(err)), "rows": rows}


def holdout(spec: ObjectiveSpec, space: Space, mask: np.ndarray, *, optimizer: str = "ytopt",
            evals: int = 200, seed: int = 0, dataset: Dataset | None = None) -> dict:
    """Fit on ``mask`` rows, predict the others: errors per held-out run and their summary."""
    full = Objective.from_spec(spec) if dataset is None else Objective(spec, dataset)
    ds = full.dataset
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise TunerError("the training selection is empty: no run matches it")
    if mask.all():
        raise TunerError("the training selection holds every run: nothing left to predict")
    train = Objective(spec, ds.subset(mask, "train"))
    final: dict = {}
    params, value = minimize_inprocess(train, space, optimizer, budget=evals, seed=seed,
                                       final=final)
    space = final["space"]  # with the bounds the fit widened
    predicted = full.predict(params)[~mask]
    out = _report(_rows(ds, ~mask, predicted), int(mask.sum()))
    out.update({"law": full.law.name, "data": spec.data, "params": params,
                "train_objective": value, "warnings": _warnings(space, params, train.dataset)})
    return out


def _warnings(space: Space, params, dataset: Dataset) -> list[str]:
    """The degenerate-fit warnings of the fit the predictions come from."""
    from tuner.fitting.diagnostics import degenerate
    return degenerate(space, params, dataset)


def leave_one_out(spec: ObjectiveSpec, space: Space, *, optimizer: str = "ytopt",
                  evals: int = 200, seed: int = 0, workers: int = 1,
                  comms: str = "local") -> dict | None:
    """Each run predicted by a fit on all the others (warm-started from the all-runs fit).

    The refits are the tasks of one libEnsemble ensemble over ``workers`` (one task per
    held-out run; under ``comms="mpi"`` every rank calls this and worker ranks get None)."""
    from tuner.run import mpi
    from tuner.run.batch import Task, run_tasks
    from tuner.run.progress import Progress
    full = Objective.from_spec(spec)
    ds = full.dataset
    if len(ds) < 2:
        raise TunerError("leave-one-out needs at least 2 runs")
    first = run_tasks([Task(_fit_all, spec, ds, space, optimizer, evals, seed)],
                      workers=workers, comms=comms)
    start = first[0] if first is not None else None  # worker ranks ignore their tasks
    bar = Progress(len(ds), desc="leave-one-out", unit="refit", quiet=not mpi.is_manager(comms))
    try:
        predicted = run_tasks([Task(_refit_without, spec, ds, space, start, i, seed)
                               for i in range(len(ds))], workers=workers, comms=comms,
                              progress=lambda done, total: bar(done))
    finally:
        bar.close()
    if predicted is None:
        return None
    out = _report(_rows(ds, np.ones(len(ds), dtype=bool), np.array(predicted)), len(ds) - 1)
    out.update({"law": full.law.name, "data": spec.data, "params": start, "leave_one_out": True,
                "warnings": _warnings(space, start, ds)})
    return out


def _fit_all(spec: ObjectiveSpec, ds: Dataset, space: Space, optimizer: str, evals: int,
             seed: int) -> dict[str, float]:
    """The all-runs fit that every leave-one-out refit starts from."""
    params, _ = minimize_inprocess(Objective(spec, ds), space, optimizer, budget=evals,
                                   seed=seed)
    return params


def _refit_without(spec: ObjectiveSpec, ds: Dataset, space: Space, start: dict, i: int,
                   seed: int) -> float:
    """Run i's loss predicted by a fit on every other run."""
    mask = np.ones(len(ds), dtype=bool)
    mask[i] = False
    # a local method from the all-runs optimum: one run moves the optimum a little
    params, _ = minimize_inprocess(Objective(spec, ds.subset(mask, f"loo{i}")), space,
                                   "lbfgs", budget=400, seed=seed, start=start, n_starts=8)
    return float(Objective(spec, ds).predict(params)[i])
