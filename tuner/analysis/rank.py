"""Rank the laws a dataset supports: fit quality, information criteria and held-out error.

Each law is fitted by tuner's default method (ytopt: the linear coefficients
solved in closed form, the exponents searched, then polished), in the space that follows the
data. AIC and BIC treat the log residuals as Gaussian:
n ln(RSS/n) + 2k and n ln(RSS/n) + k ln n (lower is better), where k counts only the
coefficients the data can identify: a free coefficient whose term's column does not vary
(Eq 7's c and gamma on dense runs, D terms at a single token count) or whose curvature is
flat costs nothing and buys nothing, so it is not counted. The held-out error trains on the
75% of runs with the smallest compute C = 6 N_active D and predicts the rest (extrapolation in
compute, as scaling laws are used). Each law (both of its fits) is one task of one
libEnsemble ensemble (``tuner.run.batch``), so laws fit in parallel over ``workers``.

A fit with an identifiable coefficient on a bound of its search space (a search limit, not a
physical one) is not an optimum of the law: it is marked and, unless ``include_bound``, left
out of the ranking (listed after the ranked laws, without a rank). Every row carries the
text of its fit's warnings.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from tuner.data.datasets import Dataset, load
from tuner.fitting.diagnostics import degenerate, unidentified
from tuner.errors import TunerError
from tuner.laws import LAWS, get_law
from tuner.fitting.objective import Objective, ObjectiveSpec
from tuner.fitting.loop import minimize_inprocess
from tuner.fitting.uncertainty import EDGE, standard_errors
from tuner.laws.spaces import Space
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


def identifiable(space: Space, dataset: Dataset, errors: dict) -> tuple[list[str], dict]:
    """(identifiable free coefficients, {coefficient: why not} for the others)."""
    why = {n: reason for reason, names in unidentified(space, dataset).items() for n in names}
    for n, status in errors["status"].items():
        if status == "not identifiable" and n not in why:
            why[n] = "the objective is flat along it (zero curvature)"
    return [n for n in space.names if n not in why], why


def on_bound(space: Space, params: dict, names: list[str]) -> list[str]:
    """'name = value at the lower/upper bound B' for identifiable coefficients on a
    non-physical bound of the space."""
    out = []
    for d in space.dims:
        if d.name not in names:
            continue
        lo, hi = d.bounds
        u = d.encode(params[d.name])
        for side, hit, bound in (("lower", (u - lo) / (hi - lo) < EDGE, d.lower),
                                 ("upper", (hi - u) / (hi - lo) < EDGE, d.upper)):
            if hit and not d.physical[0 if side == "lower" else 1]:
                out.append(f"{d.name} = {params[d.name]:.4g} at the {side} bound {bound:g}")
    return out


def rank(data: str, laws: list[str] | None = None, *, evals: int = 200, seed: int = 0,
         drop_outliers: bool = True, include_bound: bool = False, residual: str = "log",
         columns: dict | None = None, workers: int = 1, comms: str = "local",
         progress: Callable[[int, int], None] | None = None) -> list[dict] | None:
    """One row per law: ranked laws by BIC first, then fits left out of the ranking.

    Each row has ``warnings`` (a list of sentences); ``rank`` is 1, 2, ... or None. Each law
    is one task of one ensemble (``tuner.run.batch``) over ``workers`` (under
    ``comms="mpi"`` every rank calls this and worker ranks get None).
    ``progress(done, total)`` is called before the first law and as each ends."""
    from tuner.data.datasets import resolve_data_path
    from tuner.run.batch import Task, check_parallel, run_tasks
    check_parallel(workers, comms)
    data = resolve_data_path(data)
    dataset = load(data, drop_outliers=drop_outliers, columns=columns)
    if len(dataset) < 3:
        raise TunerError(f"{data}: ranking needs at least 3 runs, got {len(dataset)}")
    laws = laws or supported_laws(dataset)
    for law in laws:
        get_law(law)  # unknown names and bad formulas fail here, before any fit
    mask = low_compute_mask(dataset)
    tasks = [Task(fit_law, ObjectiveSpec(law, data, drop_outliers=drop_outliers,
                                         residual=residual, columns=columns),
                  dataset, mask, evals=evals, seed=seed) for law in laws]
    rows = run_tasks(tasks, workers=workers, comms=comms, progress=progress)
    if rows is None:
        return None
    ranked = sorted((r for r in rows if include_bound or not r["on_bound"]),
                    key=lambda row: row["BIC"])
    for i, row in enumerate(ranked, 1):
        row["rank"] = i
    rest = [r for r in rows if r not in ranked]
    for row in rest:
        row["rank"] = None
    return ranked + sorted(rest, key=lambda row: row["BIC"])


def fit_law(spec: ObjectiveSpec, dataset: Dataset, mask: np.ndarray, *, evals: int,
            seed: int) -> dict:
    """One law's row: its fit on every run, k, AIC/BIC, the held-out error when trained on
    ``mask``, coefficients on a search bound, and the warnings (``rank`` is added later)."""
    objective = Objective(spec, dataset)
    space = objective.default_space()
    final: dict = {}
    params, value = minimize_inprocess(objective, space, "ytopt", budget=evals, seed=seed,
                                       final=final)
    space = final["space"]  # with the bounds the fit widened
    r = objective.residuals(params)
    errors = standard_errors(objective, space, params)
    ident, why = identifiable(space, dataset, errors)
    n, k = len(r), len(ident)
    rss = float(np.sum(r * r))
    base = n * math.log(rss / n) if rss > 0 else -math.inf
    held = holdout(spec, space, mask, optimizer="ytopt", evals=evals, seed=seed,
                   dataset=dataset)
    bound = on_bound(space, params, ident)
    warnings = degenerate(space, params, dataset)
    if why:
        warnings.append("not counted in k (not identifiable on these data): "
                        + ", ".join(f"{c} ({w})" for c, w in why.items()))
    warnings += [f"held-out fit: {w}" for w in
                 degenerate(space, held["params"], dataset.subset(mask, "train"))
                 if w not in warnings]
    return {"law": objective.law.name, "k": k, "k_free": len(space.names), "objective": value,
            "rmse_log": objective.rmse_log(params), "AIC": base + 2 * k,
            "BIC": base + k * math.log(n),
            "heldout_median_rel_err": held["median_abs_rel_error"],
            "heldout_max_rel_err": held["max_abs_rel_error"],
            "on_bound": "; ".join(bound), "warnings": warnings, "params": params}


def table_rows(rows: list[dict]) -> list[dict]:
    """The rows as a table: warnings as a count, no coefficients."""
    out = []
    for r in rows:
        t = {"rank": "-" if r["rank"] is None else r["rank"],
             **{k: v for k, v in r.items() if k not in ("rank", "warnings", "params")}}
        t["on_bound"] = t["on_bound"] or ""
        t["warnings"] = len(r["warnings"])
        out.append(t)
    return out
