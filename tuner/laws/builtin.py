"""The built-in laws (Hossain et al. 2025, Eq 1-7), each one definition.

Adding a law is adding a ``Law`` here (and, only if the default space does not suit it, a
search space file ``search_spaces/<name>.json``: the paper's spaces, used by Fig. 7).
"""
from __future__ import annotations

from typing import Mapping

from tuner.laws.registry import Law

PAPER = "Hossain et al. 2025, arXiv 2508.06617"


def chinchilla_optimum(p: Mapping[str, float], compute: float, sparsity: float = 0.0
                       ) -> tuple[float, float]:
    """Eq 2's optimum at C = 6 N D: N = G (C/6)^(beta/(alpha+beta)), G = (alpha a/(beta b))
    ^(1/(alpha+beta)), D = C/(6N)."""
    a, b, al, be = p["a"], p["b"], p["alpha"], p["beta"]
    g = (al * a / (be * b)) ** (1.0 / (al + be))
    n = g * (compute / 6.0) ** (be / (al + be))
    return n, compute / (6.0 * n)


def dense_chinchilla_optimum(p: Mapping[str, float], compute: float, sparsity: float = 0.0
                             ) -> tuple[float, float] | None:
    """Eq 7 is Eq 2 at S = 0 (the paper's lemma), so Eq 2's closed form holds there only."""
    return chinchilla_optimum(p, compute) if sparsity == 0.0 else None


BUILTIN = (
    Law("kaplan", "((Nc/N)**(aN/aD) + Dc/D)**aD", "Eq 1", "Kaplan et al. 2020, dense",
        {"aN": 0.076, "aD": 0.103, "Nc": 6.4e13, "Dc": 1.8e13}, f"{PAPER}, Table I",
        builtin=True),
    Law("hoffmann", "e + a/N**alpha + b/D**beta", "Eq 2",
        "Hoffmann et al. 2022 (Chinchilla), dense",
        {"e": 1.69, "a": 406.4, "b": 410.7, "alpha": 0.34, "beta": 0.28},
        f"{PAPER}, Table II (Hoffmann et al. 2022, approach 3). Besiroglu et al. 2024 (Epoch AI) "
        "showed these inconsistent with Hoffmann's own data; their refit: e 1.8169, a 482.01, "
        "b 2085.43, alpha 0.3478, beta 0.3658", closed_form=chinchilla_optimum,
        builtin=True),
    Law("frantar", "(aS*(1 - S)**bS + cS)*(1/N)**bN + (aD/D)**bD + c", "Eq 3",
        "Frantar et al. 2023, weight sparsity; N = non-zero parameters",
        {"aS": 16.8, "bS": 0.722, "cS": 45.0, "bN": 0.245, "aD": 6.9e8, "bD": 0.203,
         "c": 0.651}, f"{PAPER}, Table III (Frantar et al. 2023)", builtin=True),
    Law("frantar_reparam", "e + (aS*(1 - S)**bS + cS)/N**alpha + b/D**beta", "Eq 4",
        "Eq 3 reparameterized: e = c, alpha = bN, beta = bD, b = aD^bD",
        {"aS": 16.8, "bS": 0.722, "cS": 45.0, "b": 62.271, "alpha": 0.245, "beta": 0.203,
         "e": 0.651}, f"{PAPER}, Table IV", builtin=True),
    Law("abnar",
        "e + a/N_total**alpha + b/D**beta + c/(1 - S)**lambda + d/((1 - S)**delta*N_total**gamma)",
        "Eq 5", "Abnar et al. 2025, MoE sparsity; N = total parameters",
        {"e": 0.94, "a": 16612.5, "b": 5455.67, "c": 0.4598, "d": 17.26, "alpha": 0.5962,
         "beta": 0.3954, "lambda": -0.1666, "delta": 0.1603, "gamma": 0.1595},
        f"{PAPER}, Table V (Abnar et al. 2025)", builtin=True),
    Law("generalized",
        "e*(1 - S)**gamma + (a*(1 - S)**alpha + c*S)/N**alpha + b/D**beta", "Eq 7",
        "Hossain et al. 2025, dense and sparse; N = active parameters",
        {"e": 1.69, "a": 406.4, "b": 410.7, "c": 93.45, "alpha": 0.34, "beta": 0.28,
         "gamma": 0.01}, f"{PAPER}, Table VI", closed_form=dense_chinchilla_optimum,
        builtin=True),
)
