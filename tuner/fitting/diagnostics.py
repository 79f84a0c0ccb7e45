"""Degenerate-fit warnings: what a fitted coefficient set cannot be trusted for.

Three checks, each read off the law's definition rather than a table per law: a data column
the law uses that is (nearly) constant, which leaves the coefficients of the part of the
formula it drives unidentified (``Law.unidentified``); a coefficient pinned against a bound of
its search space, told apart by cause (a physical bound such as an irreducible loss of 0 or an
exponent of 0, versus a bound of the space that a wider space would move); an irreducible
loss driven to ~0 against the observed losses.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from tuner.data.datasets import Dataset
from tuner.laws.spaces import Space

EDGE = 1e-3    # relative distance (internal coordinates) to a bound counted as "at the bound"
SPREAD = 1.05  # max/min below which a column is treated as constant


def _constant(values: np.ndarray, column: str) -> str | None:
    if column == "sparsity":
        if np.ptp(values) == 0:
            return f"sparsity is {values[0]:g} in every run"
        return None
    if values.max() / values.min() < SPREAD:
        return f"{column} is nearly constant (max/min = {values.max() / values.min():.4g})"
    return None


def unidentified(space: Space, dataset: Dataset) -> dict[str, list[str]]:
    """{why: free coefficients the data cannot identify} for each (nearly) constant column."""
    out: dict[str, list[str]] = {}
    free = set(space.names)
    for column in space.law.variables:
        values = dataset.frame[column].to_numpy(dtype=float)
        why = _constant(values, column)
        if why:
            lost = [n for n in space.law.unidentified({column: float(np.median(values))})
                    if n in free]
            if lost:
                out[why] = lost
    return out


def identifiable(space: Space, dataset: Dataset) -> list[str]:
    """The free coefficients these data can identify."""
    lost = {n for names in unidentified(space, dataset).values() for n in names}
    return [n for n in space.names if n not in lost]


def degenerate(space: Space, params: Mapping[str, float], dataset: Dataset) -> list[str]:
    """One sentence per problem found in ``params`` fitted to ``dataset`` (empty if none)."""
    out = [f"{why}: the data cannot identify {', '.join(names)} (their fitted values are "
           "meaningless)" for why, names in unidentified(space, dataset).items()]
    loss = dataset.loss
    for d in space.dims:
        lo, hi = d.bounds
        u = d.encode(params[d.name])
        at_low, at_high = (u - lo) / (hi - lo) < EDGE, (hi - u) / (hi - lo) < EDGE
        if d.kind == "irreducible" and ((at_low and d.lower == 0) or (
                loss is not None and params[d.name] < EDGE * loss.min())):
            out.append(f"irreducible loss {d.name} = {params[d.name]:.4g} is ~0 (its physical "
                       "lower bound): the fit finds no floor the loss approaches within these "
                       "data (the largest runs are still far from it)")
        elif d.kind == "irreducible" and at_high and loss is not None \
                and d.upper >= loss.min() * (1 - 1e-9):
            out.append(f"irreducible loss {d.name} = {params[d.name]:.4g} equals the smallest "
                       "observed loss (its physical upper bound): the law's other terms "
                       "vanish at the largest runs, or the law does not suit these data")
        elif d.kind == "linear" and at_low and d.lower <= 1e-9:
            out.append(f"{d.name} = {params[d.name]:.4g} is ~0 (a term's coefficient cannot be "
                       "negative): the data do not support its term; a law without it fits "
                       "as well")
        elif d.kind == "exponent" and at_low and d.lower == 0:
            out.append(f"exponent {d.name} = {params[d.name]:.4g} is 0 (its physical lower "
                       "bound): that term does not vary with the data; the law may have a term "
                       "too many for these data")
        elif at_low or at_high:
            side, bound = ("lower", d.lower) if at_low else ("upper", d.upper)
            fix = ("not a physical bound: more --evals let the polish widen it, or give "
                   "--space FILE" if d.soft[0 if at_low else 1]
                   else "widen the space (--space) or fix it (--fix)")
            what = "irreducible loss " if d.kind == "irreducible" else ""
            out.append(f"{what}{d.name} = {params[d.name]:.6g} is at the {side} bound {bound:g} "
                       f"of its search space ({space.source or 'default'}): {fix}")
    return out
