"""The scaling laws: pure vectorized functions in one registry.

Each law maps coefficients and a batch of runs to predicted loss. Coefficients are given in
natural units as a mapping name -> array; arrays broadcast, so a column vector of k
coefficient sets against n runs gives a (k, n) prediction in one pass. The published
coefficients are not written here: they are the defaults of ``search_spaces/<law>.json``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from tuner.errors import TunerError

Params = Mapping[str, "np.ndarray | float"]


@dataclass(frozen=True)
class Runs:
    """The columns a law reads; ``sparsity`` is S in [0, 1)."""

    n_total: np.ndarray
    n_active: np.ndarray
    tokens: np.ndarray
    sparsity: np.ndarray


@dataclass(frozen=True)
class Law:
    name: str
    equation: str
    params: tuple[str, ...]
    predict: Callable[[Params, Runs], np.ndarray]
    gradient: Callable[[Params, Runs], dict[str, np.ndarray]]
    sparse: bool
    description: str
    # Coefficients the law is linear in once the others are fixed, as weights w: L = offset +
    # sum_j w_j * column_j. Usually w is the coefficient itself; ``power`` names the exponent
    # k when the law is linear in coefficient**k instead (Eq 3's aD: (aD/D)^bD = aD^bD D^-bD).
    linear: tuple[str, ...] = ()
    power: Mapping[str, str] = field(default_factory=dict)

    def linear_columns(self, p: Params, r: Runs, names: Sequence[str]
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(offset (n,), columns (n, k)) such that L = offset + columns @ w for ``names``.

        The law is affine in each weight, so a column is its derivative, read at weight 1."""
        ones = {**p, **{n: 1.0 for n in names}}
        grad = self.gradient(ones, r)
        pred = self.predict(ones, r)
        cols = [np.broadcast_to(grad[n] / (ones[self.power[n]] if n in self.power else 1.0),
                                np.shape(pred)) for n in names]
        a = np.column_stack(cols) if cols else np.zeros((np.size(pred), 0))
        return pred - a.sum(axis=1), a

    def to_weight(self, name: str, value: float, p: Params) -> float:
        return value ** p[self.power[name]] if name in self.power else value

    def from_weight(self, name: str, w: float, p: Params) -> float:
        return w ** (1.0 / p[self.power[name]]) if name in self.power else w


def kaplan(p: Params, r: Runs) -> np.ndarray:
    """Eq 1: L = [(Nc/N)^(aN/aD) + Dc/D]^aD, N = active (dense) parameters."""
    return ((p["Nc"] / r.n_active) ** (p["aN"] / p["aD"]) + p["Dc"] / r.tokens) ** p["aD"]


def hoffmann(p: Params, r: Runs) -> np.ndarray:
    """Eq 2: L = e + a/N^alpha + b/D^beta (Chinchilla), N = active parameters."""
    return p["e"] + p["a"] / r.n_active ** p["alpha"] + p["b"] / r.tokens ** p["beta"]


def frantar(p: Params, r: Runs) -> np.ndarray:
    """Eq 3: L = (aS(1-S)^bS + cS)(1/N)^bN + (aD/D)^bD + c, N = non-zero parameters."""
    dense = 1.0 - r.sparsity
    return ((p["aS"] * dense ** p["bS"] + p["cS"]) * (1.0 / r.n_active) ** p["bN"]
            + (p["aD"] / r.tokens) ** p["bD"] + p["c"])


def frantar_reparam(p: Params, r: Runs) -> np.ndarray:
    """Eq 4: Eq 3 with e = c, alpha = bN, beta = bD, b = aD^bD."""
    dense = 1.0 - r.sparsity
    return (p["e"] + (p["aS"] * dense ** p["bS"] + p["cS"]) / r.n_active ** p["alpha"]
            + p["b"] / r.tokens ** p["beta"])


def abnar(p: Params, r: Runs) -> np.ndarray:
    """Eq 5 (MoE): e + a/N^alpha + b/D^beta + c/(1-S)^lambda + d/((1-S)^delta N^gamma), N = total."""
    dense = 1.0 - r.sparsity
    n = r.n_total
    return (p["e"] + p["a"] / n ** p["alpha"] + p["b"] / r.tokens ** p["beta"]
            + p["c"] / dense ** p["lambda"] + p["d"] / (dense ** p["delta"] * n ** p["gamma"]))


def generalized(p: Params, r: Runs) -> np.ndarray:
    """Eq 7: e(1-S)^gamma + (a(1-S)^alpha + c S)/N^alpha + b/D^beta, N = active parameters."""
    dense = 1.0 - r.sparsity
    return (p["e"] * dense ** p["gamma"]
            + (p["a"] * dense ** p["alpha"] + p["c"] * r.sparsity) / r.n_active ** p["alpha"]
            + p["b"] / r.tokens ** p["beta"])


# Gradients dL/dp of each law, by hand; tests check them against finite differences.
def _log(x):
    return np.log(x)


def kaplan_grad(p: Params, r: Runs) -> dict[str, np.ndarray]:
    ratio = p["Nc"] / r.n_active
    x = ratio ** (p["aN"] / p["aD"])
    z = x + p["Dc"] / r.tokens
    loss = z ** p["aD"]
    return {"aN": loss * x * _log(ratio) / z,
            "aD": loss * (_log(z) - x * _log(ratio) * p["aN"] / (p["aD"] * z)),
            "Nc": loss * x * p["aN"] / (z * p["Nc"]),
            "Dc": loss * p["aD"] / (z * r.tokens)}


def hoffmann_grad(p: Params, r: Runs) -> dict[str, np.ndarray]:
    pn, pd = r.n_active ** -p["alpha"], r.tokens ** -p["beta"]
    one = np.ones_like(pn * pd)
    return {"e": one, "a": pn * one, "b": pd * one, "alpha": -p["a"] * pn * _log(r.n_active),
            "beta": -p["b"] * pd * _log(r.tokens)}


def _sparse_term(p: Params, r: Runs, exponent: str):
    dense = 1.0 - r.sparsity
    sd = dense ** p["bS"]
    pn = r.n_active ** -p[exponent]
    return dense, sd, pn


def frantar_grad(p: Params, r: Runs) -> dict[str, np.ndarray]:
    dense, sd, pn = _sparse_term(p, r, "bN")
    q = (p["aD"] / r.tokens) ** p["bD"]
    coef = p["aS"] * sd + p["cS"]
    return {"aS": sd * pn, "bS": p["aS"] * sd * _log(dense) * pn, "cS": pn * np.ones_like(sd),
            "bN": -coef * pn * _log(r.n_active), "aD": p["bD"] * q / p["aD"],
            "bD": q * _log(p["aD"] / r.tokens), "c": np.ones_like(coef * q)}


def frantar_reparam_grad(p: Params, r: Runs) -> dict[str, np.ndarray]:
    dense, sd, pn = _sparse_term(p, r, "alpha")
    pd = r.tokens ** -p["beta"]
    coef = p["aS"] * sd + p["cS"]
    return {"aS": sd * pn, "bS": p["aS"] * sd * _log(dense) * pn, "cS": pn * np.ones_like(sd),
            "b": pd * np.ones_like(pn), "alpha": -coef * pn * _log(r.n_active),
            "beta": -p["b"] * pd * _log(r.tokens), "e": np.ones_like(coef * pd)}


def abnar_grad(p: Params, r: Runs) -> dict[str, np.ndarray]:
    dense, n = 1.0 - r.sparsity, r.n_total
    pn, pd = n ** -p["alpha"], r.tokens ** -p["beta"]
    sl = dense ** -p["lambda"]
    last = dense ** -p["delta"] * n ** -p["gamma"]
    one = np.ones_like(pn * pd * sl * last)
    return {"e": one, "a": pn * one, "b": pd * one, "c": sl * one, "d": last * one,
            "alpha": -p["a"] * pn * _log(n), "beta": -p["b"] * pd * _log(r.tokens),
            "lambda": -p["c"] * sl * _log(dense), "delta": -p["d"] * last * _log(dense),
            "gamma": -p["d"] * last * _log(n)}


def generalized_grad(p: Params, r: Runs) -> dict[str, np.ndarray]:
    dense, s = 1.0 - r.sparsity, r.sparsity
    sg, sa = dense ** p["gamma"], dense ** p["alpha"]
    pn, pd = r.n_active ** -p["alpha"], r.tokens ** -p["beta"]
    coef = p["a"] * sa + p["c"] * s
    one = np.ones_like(sg * sa * pn * pd)
    return {"e": sg * one, "a": sa * pn * one, "b": pd * one, "c": s * pn * one,
            "alpha": (p["a"] * sa * _log(dense) - coef * _log(r.n_active)) * pn,
            "beta": -p["b"] * pd * _log(r.tokens), "gamma": p["e"] * sg * _log(dense)}


LAWS: dict[str, Law] = {law.name: law for law in (
    Law("kaplan", "Eq 1", ("aN", "aD", "Nc", "Dc"), kaplan, kaplan_grad, False,
        "Kaplan et al. 2020, dense"),
    Law("hoffmann", "Eq 2", ("e", "a", "b", "alpha", "beta"), hoffmann, hoffmann_grad, False,
        "Hoffmann et al. 2022 (Chinchilla), dense", linear=("e", "a", "b")),
    Law("frantar", "Eq 3", ("aS", "bS", "cS", "bN", "aD", "bD", "c"), frantar, frantar_grad, True,
        "Frantar et al. 2023, weight sparsity", linear=("aS", "cS", "aD", "c"),
        power={"aD": "bD"}),
    Law("frantar_reparam", "Eq 4", ("aS", "bS", "cS", "b", "alpha", "beta", "e"), frantar_reparam,
        frantar_reparam_grad, True, "Eq 3 reparameterized (Hossain et al. Table IV)",
        linear=("aS", "cS", "b", "e")),
    Law("abnar", "Eq 5", ("e", "a", "b", "c", "d", "alpha", "beta", "lambda", "delta", "gamma"),
        abnar, abnar_grad, True, "Abnar et al. 2025, MoE sparsity; N = total parameters",
        linear=("e", "a", "b", "c", "d")),
    Law("generalized", "Eq 7", ("e", "a", "b", "c", "alpha", "beta", "gamma"), generalized,
        generalized_grad, True, "Hossain et al. 2025, dense and sparse; N = active parameters",
        linear=("e", "a", "b", "c")),
)}


def get_law(name: str) -> Law:
    """Return the law called ``name``; TunerError naming the known ones otherwise."""
    try:
        return LAWS[name]
    except KeyError:
        raise TunerError(f"unknown law {name!r}; known laws: {', '.join(LAWS)}") from None


def predict(law: str | Law, params: Params, runs: Runs) -> np.ndarray:
    """Predicted loss; overflow, NaN and negative powers give inf/NaN, never an exception."""
    law = get_law(law) if isinstance(law, str) else law
    with np.errstate(all="ignore"):
        return np.asarray(law.predict(params, runs), dtype=float)
