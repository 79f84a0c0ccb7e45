"""Rank the laws a dataset supports: fit quality, information criteria and held-out error.

Each law is fitted in process by L-BFGS-B. AIC and BIC treat the log residuals as Gaussian:
n ln(RSS/n) + 2k and n ln(RSS/n) + k ln n (k = free coefficients; lower is better). The
held-out error trains on the 75% of runs with the smallest compute C = 6 N_active D and
predicts the rest (extrapolation in compute, as scaling laws are used).
"""
from __future__ import annotations

import math

import numpy as np

from tuner.data.datasets import Dataset, load
from tuner.fitting.diagnostics import degenerate
from tuner.errors import TunerError
from tuner.laws import LAWS, get_law
from tuner.fitting.objective import Objective, ObjectiveSpec
from tuner.fitting.loop import minimize_inprocess
from tuner.analysis.validate import holdout

TRAIN_SHARE = 0.75


def supported_laws(dataset: Dataset) -> list[str]:
    """The built-in laws to compare on these data, read off the registry (a new law joins by
    its definition alone): every law on sparse data; on dense data, the dense laws and the
    sparse laws that reduce to a dense one (those with a dense closed-form allocation)."""
    dense = bool(np.all(dataset.frame["sparsity"].to_numpy() == 0))
    return [name for name, law in LAWS.items()
            if not (dense and law.sparse and law.closed_form is None)]


def low_compute_mask(dataset: Dataset, share: float = TRAIN_SHARE) -> np.ndarray:
    """True for the ``share`` of runs with the smallest 6 N_active D (stable on ties)."""
    f = dataset.frame
    order = np.argsort((6 * f.n_active * f.tokens).to_numpy(), kind="stable")
    mask = np.zeros(len(f), dtype=bool)
    mask[order[:max(1, min(len(f) - 1, math.ceil(share * len(f))))]] = True
    return mask


def rank(data: str, laws: list[str] | None = None, *, evals: int = 2000, seed: int = 0,
         drop_outliers: bool = True, residual: str = "log", columns: dict | None = None
         ) -> list[dict]:
    """One row per law, sorted by BIC."""
    from tuner.data.datasets import resolve_data_path
    data = resolve_data_path(data)
    dataset = load(data, drop_outliers=drop_outliers, columns=columns)
    if len(dataset) < 3:
        raise TunerError(f"{data}: ranking needs at least 3 runs, got {len(dataset)}")
    laws = laws or supported_laws(dataset)
    for law in laws:
        get_law(law)  # unknown names and bad formulas fail here, before any fit
    mask = low_compute_mask(dataset)
    rows = []
    for law in laws:
        spec = ObjectiveSpec(law, data, drop_outliers=drop_outliers, residual=residual,
                             columns=columns)
        objective = Objective(spec, dataset)
        space = objective.default_space()
        params, value = minimize_inprocess(objective, space, "lbfgs", budget=evals, seed=seed)
        r = objective.residuals(params)
        n, k = len(r), len(space.names)
        rss = float(np.sum(r * r))
        base = n * math.log(rss / n) if rss > 0 else -math.inf
        held = holdout(spec, space, mask, evals=evals, seed=seed, dataset=dataset)
        rows.append({"law": objective.law.name, "k": k, "objective": value,
                     "rmse_log": objective.rmse_log(params), "AIC": base + 2 * k,
                     "BIC": base + k * math.log(n),
                     "heldout_median_rel_err": held["median_abs_rel_error"],
                     "heldout_max_rel_err": held["max_abs_rel_error"],
                     "warnings": len(degenerate(space, params, dataset))})
    return sorted(rows, key=lambda row: row["BIC"])
