"""Degenerate-fit warnings: what a fitted coefficient set cannot be trusted for.

Three checks: a coefficient pinned against a bound of its search space; a term the data
cannot identify (tokens or parameter counts nearly constant, max/min < 1.05, or a single
sparsity value, make that term's coefficients meaningless); an irreducible loss (``e``, or
``c`` in Eq 3) driven to its lower bound or to ~0 against the observed losses.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from tuner.data.datasets import Dataset
from tuner.laws.spaces import Space

EDGE = 1e-3    # relative distance (internal coordinates) to a bound counted as "at the bound"
SPREAD = 1.05  # max/min below which a column is treated as constant

# law -> column -> coefficients only that column's variation identifies.
TERMS: dict[str, dict[str, tuple[str, ...]]] = {
    "kaplan": {"tokens": ("Dc",), "n_active": ("Nc", "aN")},
    "hoffmann": {"tokens": ("b", "beta"), "n_active": ("a", "alpha")},
    "frantar": {"tokens": ("aD", "bD"), "n_active": ("bN",), "sparsity": ("aS", "bS")},
    "frantar_reparam": {"tokens": ("b", "beta"), "n_active": ("alpha",),
                        "sparsity": ("aS", "bS")},
    "abnar": {"tokens": ("b", "beta"), "n_total": ("a", "alpha", "gamma"),
              "sparsity": ("c", "lambda", "delta")},
    "generalized": {"tokens": ("b", "beta"), "n_active": ("a", "alpha"),
                    "sparsity": ("c", "gamma")},
}
IRREDUCIBLE = {"hoffmann": "e", "frantar": "c", "frantar_reparam": "e", "abnar": "e",
               "generalized": "e"}


def _constant(values: np.ndarray, column: str) -> str | None:
    if column == "sparsity":
        if np.ptp(values) == 0:
            return f"sparsity is {values[0]:g} in every run"
        return None
    if values.max() / values.min() < SPREAD:
        return f"{column} is nearly constant (max/min = {values.max() / values.min():.4g})"
    return None


def degenerate(space: Space, params: Mapping[str, float], dataset: Dataset) -> list[str]:
    """One sentence per problem found in ``params`` fitted to ``dataset`` (empty if none)."""
    out: list[str] = []
    free = set(space.names)
    irreducible = IRREDUCIBLE.get(space.law)
    for column, names in TERMS.get(space.law, {}).items():
        why = _constant(dataset.frame[column].to_numpy(dtype=float), column)
        shown = [n for n in names if n in free]
        if why and shown:
            out.append(f"{why}: the data cannot identify {', '.join(shown)} "
                       f"(their fitted values are meaningless)")
    loss = dataset.loss
    for d in space.dims:
        lo, hi = d.bounds
        u = d.encode(params[d.name])
        at_low, at_high = (u - lo) / (hi - lo) < EDGE, (hi - u) / (hi - lo) < EDGE
        if d.name == irreducible and (at_low or (loss is not None
                                                 and params[d.name] < EDGE * loss.min())):
            where = f"its lower bound {d.lower:g}" if at_low else "~0"
            out.append(f"irreducible loss {d.name} = {params[d.name]:.4g} was driven to "
                       f"{where}: the data do not determine the asymptote")
        elif at_low or at_high:
            side, bound = ("lower", d.lower) if at_low else ("upper", d.upper)
            out.append(f"{d.name} = {params[d.name]:.6g} is at the {side} bound {bound:g} of "
                       f"its search space: widen the space (--space) or fix it (--fix)")
    return out
