"""What the analyses need to know about a law, looked up in one place.

The law registry is being extended to carry each law's formula, published coefficients with
their source, and which data column each coefficient's term depends on. Until then these
helpers read today's ``get_law(name).params``, ``spaces.published`` and
``diagnostics.TERMS``; re-point them here and nothing else changes.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from tuner.laws import get_law

# Where each law's published coefficients (the defaults of its space file) come from.
SOURCES = {
    "kaplan": "Kaplan et al. 2020, as tabulated in Hossain et al. 2025 Table I",
    "hoffmann": "Hoffmann et al. 2022 (Chinchilla) approach 3, Hossain et al. 2025 Table II. "
                "Besiroglu et al. 2024 (Epoch AI) showed these inconsistent with Hoffmann's "
                "own data; their refit: A 482.01, B 2085.43, E 1.8169, alpha 0.3478, "
                "beta 0.3658",
    "frantar": "Frantar et al. 2023, Hossain et al. 2025 Table III",
    "frantar_reparam": "Hossain et al. 2025 Table IV (Eq 3 reparameterized)",
    "abnar": "Abnar et al. 2025, Hossain et al. 2025 Table V",
    "generalized": "Hossain et al. 2025 Table VI (e, a, b, alpha, beta from Hoffmann's Table II)",
}

FORMULAS = {
    "kaplan": "L = [(Nc/N)^(aN/aD) + Dc/D]^aD",
    "hoffmann": "L = e + a/N^alpha + b/D^beta",
    "frantar": "L = (aS(1-S)^bS + cS)(1/N)^bN + (aD/D)^bD + c",
    "frantar_reparam": "L = e + (aS(1-S)^bS + cS)/N^alpha + b/D^beta",
    "abnar": "L = e + a/N^alpha + b/D^beta + c/(1-S)^lambda + d/((1-S)^delta N^gamma)",
    "generalized": "L = e(1-S)^gamma + (a(1-S)^alpha + c S)/N^alpha + b/D^beta",
}

# What N means in each law (S = sparsity; C = 6 N_active D in every case).
N_MEANS = {"abnar": "total parameters (the last term couples N with the active share 1-S)",
           "frantar": "non-zero parameters", "frantar_reparam": "non-zero parameters"}


def params(law: str) -> tuple[str, ...]:
    return tuple(get_law(law).params)


def published(law: str) -> dict[str, float]:
    from tuner.laws.spaces import published as _published
    return _published(law)


def source(law: str) -> str:
    return SOURCES.get(law, "the defaults of the law's search-space file")


def formula(law: str) -> str:
    return FORMULAS.get(law, get_law(law).equation)


def n_meaning(law: str) -> str:
    return N_MEANS.get(law, "active parameters")


def unidentifiable(law: str, frame: pd.DataFrame, free: Iterable[str] | None = None
                   ) -> dict[str, str]:
    """Coefficient -> why the data cannot identify it (its column does not vary)."""
    from tuner.fit.diagnostics import TERMS, _constant
    free = set(params(law) if free is None else free)
    out: dict[str, str] = {}
    for column, names in TERMS.get(law, {}).items():
        why = _constant(frame[column].to_numpy(dtype=float), column)
        if why:
            out.update({n: why for n in names if n in free})
    return out


def irreducible(law: str) -> str | None:
    from tuner.fit.diagnostics import IRREDUCIBLE
    return IRREDUCIBLE.get(law)


def physical_bound(law: str, name: str, side: str) -> bool:
    """Is a coefficient sitting on this bound non-physical (an artefact of the box)?

    Every bound of the shipped spaces is a search limit, not a physical one, except a lower
    bound of 0 on a coefficient that is physically >= 0 (e.g. Eq 7's c = 0 means "no
    sparsity penalty", a legitimate answer)."""
    from tuner.laws.spaces import load_space
    dims = {d.name: d for d in load_space(law).dims}
    d = dims.get(name)
    return bool(d is not None and side == "lower" and d.lower == 0.0)


def columns_range(frame: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """The fitted data's range of N_active, N_total, D, S and C."""
    c = 6.0 * frame["n_active"].to_numpy(float) * frame["tokens"].to_numpy(float)
    out = {k: (float(frame[k].min()), float(frame[k].max()))
           for k in ("n_active", "n_total", "tokens", "sparsity")}
    out["compute"] = (float(np.min(c)), float(np.max(c)))
    return out
