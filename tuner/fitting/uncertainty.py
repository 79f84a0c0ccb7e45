"""Standard errors and the correlation matrix of fitted coefficients, from the curvature.

The objective already returns, in the same pass as its value, the Gauss-Newton matrix
A = J^T W J of its IRLS form (J: Jacobian of log L_pred, W: Huber weights min(1, delta/|r|),
or a constant for ``mse``). As lmfit does for least squares (``Minimizer`` scales the inverse
curvature by the reduced chi-square), the covariance of the free coefficients is taken as

    cov = s^2 A^-1,   s^2 = sum_i W_i r_i^2 / (n - p)

which is the classical least-squares covariance when W is constant and the weighted one at an
IRLS fixed point otherwise. It is a local, linearised estimate: it says at a glance which
coefficients the data pin down (small relative error, modest correlations) and which trade off
against each other (|correlation| near 1). The bootstrap (``tuner fit --bootstrap K``) remains
the reference for intervals.

Coefficients that cannot enter the inversion are reported, not hidden: one on a bound of its
search space (``at bound``: the curvature there is not that of an interior optimum) and one the
data do not constrain (a zero row of A, e.g. Eq 7's c and gamma on dense runs: ``not
identifiable``). Their standard error is NaN and they are left out of the correlation matrix.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from tuner.fitting.objective import Objective
from tuner.laws.spaces import Space

EDGE = 1e-3          # relative distance (internal coordinates) to a bound: "at bound"
FLAT = 1e-12         # curvature diagonal below FLAT * its largest entry: "not identifiable"
CORRELATED = 0.99    # |correlation| at or above which a pair is called out


def standard_errors(objective: Objective, space: Space, params: Mapping[str, float]) -> dict:
    """Standard errors (natural units) and correlations of the free coefficients at ``params``.

    Returns ``{"stderr": {name: float}, "rel_stderr": {name: float}, "status": {name: str},
    "correlation": {"names": [...], "matrix": [[...]]}, "method": str, "notes": [str]}``.
    ``status`` is ``ok``, ``at bound``, ``not identifiable`` or ``singular``. Objectives
    without residuals (``paper``) give NaN everywhere and a note saying why.
    """
    names = list(space.names)
    nan = {n: math.nan for n in names}
    out = {"stderr": dict(nan), "rel_stderr": dict(nan), "status": {n: "ok" for n in names},
           "correlation": {"names": [], "matrix": []},
           "method": "lmfit-style: s^2 (J^T W J)^-1 of the IRLS Gauss-Newton curvature, "
                     "s^2 = sum W r^2 / (n - p)",
           "notes": []}
    if objective.obs is None or objective.spec.kind == "paper":
        out["status"] = {n: "no residuals" for n in names}
        out["notes"].append("the objective has no residuals: no curvature-based errors")
        return out
    _, _, curv = objective.value_and_grad(dict(params), curvature=True)
    idx = [objective.law.params.index(n) for n in names]
    a = np.asarray(curv, dtype=float)[np.ix_(idx, idx)]
    r = objective.fit_residuals(params)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(r))):
        out["status"] = {n: "singular" for n in names}
        out["notes"].append("the law gives no valid prediction at these coefficients")
        return out
    if objective.spec.kind == "huber":
        w = np.minimum(1.0, objective.spec.delta / np.maximum(np.abs(r), 1e-300))
    else:
        w = np.ones_like(r)
    # A carries the objective's own scale of W (mse: 2/n); s^2 must use the same scale.
    scale = 2.0 / len(r) if objective.spec.kind == "mse" else 1.0
    keep = []
    # Identifiability is judged on the curvature for relative changes (x_j dL/dx_j), which
    # does not depend on the coefficients' units (aD ~ 1e9 against bN ~ 0.2).
    x = np.array([abs(float(params[n])) or 1.0 for n in names])
    diag = np.diag(a) * x * x
    top = float(np.max(diag, initial=0.0))
    for j, d in enumerate(space.dims):
        lo, hi = d.bounds
        u = d.encode(params[d.name])
        if (u - lo) / (hi - lo) < EDGE or (hi - u) / (hi - lo) < EDGE:
            out["status"][d.name] = "at bound"
        elif not diag[j] > FLAT * max(top, 1e-300):
            out["status"][d.name] = "not identifiable"
        else:
            keep.append(j)
    p = len(keep)
    dof = len(r) - p
    if p == 0 or dof <= 0:
        out["notes"].append(f"{len(r)} runs for {p} free coefficients: no degrees of freedom")
        return out
    s2 = float(np.sum(scale * w * r * r)) / dof
    sub = a[np.ix_(keep, keep)]
    # Scale to unit diagonal before inverting: coefficients differ by many decades.
    d = np.sqrt(np.diag(sub))
    corr_curv = sub / np.outer(d, d)
    cond = np.linalg.cond(corr_curv)
    if not np.isfinite(cond) or cond > 1e14:
        for j in keep:
            out["status"][names[j]] = "singular"
        out["notes"].append(f"the curvature is singular (condition number {cond:.3g}): "
                            "some combination of coefficients is not determined by the data")
        return out
    cov = s2 * np.linalg.inv(corr_curv) / np.outer(d, d)
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    corr = cov / np.outer(se, se)
    kept = [names[j] for j in keep]
    for n, e in zip(kept, se):
        out["stderr"][n] = float(e)
        v = float(params[n])
        out["rel_stderr"][n] = float(e / abs(v)) if v else math.inf
    out["correlation"] = {"names": kept, "matrix": [[float(x) for x in row] for row in corr]}
    for i in range(p):
        for j in range(i + 1, p):
            if abs(corr[i, j]) >= CORRELATED:
                out["notes"].append(f"{kept[i]} and {kept[j]} are correlated "
                                    f"{corr[i, j]:+.3f}: the data fix a combination of them, "
                                    "not each one")
    return out


def describe(errors: Mapping) -> list[str]:
    """One line per coefficient: ``name: se (rel%) [status]``, then the notes."""
    lines = []
    for n, se in errors["stderr"].items():
        status = errors["status"][n]
        if status == "ok":
            lines.append(f"{n}: ± {se:.4g} ({100 * errors['rel_stderr'][n]:.3g}%)")
        else:
            lines.append(f"{n}: no standard error ({status})")
    return lines + list(errors.get("notes", []))


def correlation_table(errors: Mapping) -> list[dict]:
    """The correlation matrix as table rows (one per coefficient), 3 decimals."""
    c = errors["correlation"]
    return [{"": a, **{b: round(v, 3) for b, v in zip(c["names"], row)}}
            for a, row in zip(c["names"], c["matrix"])]
