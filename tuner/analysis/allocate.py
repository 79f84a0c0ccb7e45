"""Compute-optimal allocation: the N, D (and sparsity) that minimise a law's loss at compute C.

C = 6 · N_active · D. For Eq 2 the closed form is used; every other law is minimised over
log N_active by a dense grid followed by a bounded Brent refinement (robust to the
non-convex shapes of Eq 3 at high sparsity).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, asdict, replace
from typing import Mapping

import numpy as np

from tuner.laws import Runs, get_law, predict
from tuner.laws.builtin import chinchilla_optimum


@dataclass(frozen=True)
class Allocation:
    compute: float
    sparsity: float
    n_active: float
    n_total: float
    tokens: float
    loss: float
    method: str
    at_limit: str = ""  # non-empty: the optimum sits on a search limit, not in the interior

    def as_dict(self) -> dict:
        return asdict(self)


def runs_at(compute: float, sparsity: float, n_active: np.ndarray) -> Runs:
    n_active = np.asarray(n_active, dtype=float)
    dense = 1.0 - sparsity
    return Runs(n_total=n_active / dense, n_active=n_active,
                tokens=compute / (6.0 * n_active), sparsity=np.full_like(n_active, sparsity))


def loss_at(law: str, params: Mapping[str, float], compute: float, sparsity: float,
            n_active: np.ndarray) -> np.ndarray:
    return predict(law, params, runs_at(compute, sparsity, n_active))


hoffmann_closed_form = chinchilla_optimum


def optimal(law: str, params: Mapping[str, float], compute: float,
            sparsity: float = 0.0, *, closed_form: bool = True) -> Allocation:
    """The compute-optimal allocation at one compute budget and sparsity.

    ``closed_form=False`` forces the generic grid + Brent search even where Eq 2's closed form
    applies (tests use it to check one against the other).
    """
    definition = get_law(law)
    exact = None
    if closed_form and definition.closed_form:
        try:
            exact = definition.closed_form(params, compute, sparsity)
        except (ZeroDivisionError, OverflowError, ValueError):
            exact = (math.nan, math.nan)
    if exact is not None:
        n, d = exact
        if math.isfinite(n) and math.isfinite(d) and 1e3 <= n <= compute / 6.0:
            loss = float(loss_at(law, params, compute, sparsity, np.array([n]))[0])
            return Allocation(compute, sparsity, n, n / (1 - sparsity), d, loss, "closed form")
        # No finite interior optimum (e.g. b = 0: no data term): the search below says so.
    # A model needs at least ~1e3 parameters and one token per parameter is far beyond any
    # optimum these laws give; the grid spans that whole range. An optimum on either end is
    # a search limit, not an optimum, and is reported as such.
    lo, hi = math.log(N_MIN), math.log(max(compute / 6.0, 1e7))
    grid = np.linspace(lo, hi, 2001)
    values = loss_at(law, params, compute, sparsity, np.exp(grid))
    values = np.where(np.isfinite(values), values, np.inf)
    i = int(np.argmin(values))
    step = grid[1] - grid[0]
    from scipy.optimize import minimize_scalar  # here: a prediction needs no scipy
    res = minimize_scalar(lambda u: float(loss_at(law, params, compute, sparsity,
                                                    np.array([math.exp(u)]))[0]),
                          bounds=(grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]),
                          method="bounded", options={"xatol": step * 1e-6})
    u = float(res.x) if res.fun <= values[i] else float(grid[i])
    n = math.exp(u)
    loss = float(loss_at(law, params, compute, sparsity, np.array([n]))[0])
    limit = ""
    if i == 0:
        limit = (f"N_active at the lower search limit {N_MIN:g} parameters: the loss still "
                 "falls towards smaller models")
    elif i == len(grid) - 1:
        limit = (f"N_active at the upper search limit C/6 = {math.exp(hi):.3g} (D = "
                 f"{compute / (6 * math.exp(hi)):.3g} tokens): the loss still falls towards "
                 "larger models, as when a law has no data term")
    return Allocation(compute, sparsity, n, n / (1 - sparsity), compute / (6 * n), loss,
                      "grid + Brent", limit)


N_MIN = 1e3  # smallest model the search considers


def optimal_sparsity(law: str, params: Mapping[str, float], compute: float,
                     s_max: float = 0.99) -> Allocation:
    """Joint optimum over sparsity in [0, s_max] and N: a sparsity grid then Brent on it."""
    grid = np.concatenate([np.linspace(0.0, s_max, 199), [0.25, 0.5, 0.75, 0.9, 0.95, 0.98]])
    grid = np.unique(grid[grid <= s_max])
    allocs = [optimal(law, params, compute, float(s)) for s in grid]
    losses = np.array([a.loss for a in allocs])
    i = int(np.nanargmin(losses))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    best = allocs[i]
    if hi > lo:
        from scipy.optimize import minimize_scalar
        res = minimize_scalar(lambda s: optimal(law, params, compute, float(s)).loss,
                              bounds=(lo, hi), method="bounded", options={"xatol": 1e-7})
        refined = optimal(law, params, compute, float(res.x))
        if refined.loss <= best.loss:
            best = refined
    if s_max - best.sparsity < 1e-4 * max(s_max, 1e-9) + 1e-9 and len(grid) > 1:
        below = allocs[int(np.searchsorted(grid, s_max)) - 1]
        why = (f"sparsity at the search limit --s-max = {s_max:g}: the loss still falls "
               f"there ({below.loss:.6g} at S = {below.sparsity:.4g}, {best.loss:.6g} at "
               f"S = {s_max:g}), so the law has no interior optimum in S and the largest "
               "allowed sparsity always wins")
        best = replace(best, at_limit="; ".join(filter(None, [why, best.at_limit])))
    return best
