"""Planning with a fitted law: compute-optimal allocations and single-model loss predictions.

A thin layer over ``allocate.optimal`` / ``allocate.optimal_sparsity`` and ``laws.predict`` that
checks the user's numbers and, when a run directory carries bootstrap coefficient sets
(``summary.json`` key ``bootstrap_params``), adds a percentile interval for each quantity.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from tuner.analysis.allocate import Allocation, optimal, optimal_sparsity
from tuner.errors import TunerError
from tuner.laws import Runs, get_law, predict

INTERVAL = (2.5, 97.5)  # percentiles of the bootstrap sets: a 95% interval


def check_compute(compute: Sequence[float]) -> list[float]:
    out = [float(c) for c in compute]
    bad = [c for c in out if not (math.isfinite(c) and c > 0)]
    if bad:
        raise TunerError(f"--compute must be finite and > 0 FLOPs, got {bad[0]:g}")
    return out


def check_sparsity(s: float, what: str = "--sparsity") -> float:
    if not (math.isfinite(s) and 0.0 <= s < 1.0):
        raise TunerError(f"{what} must lie in [0, 1), got {s:g}")
    return float(s)


def check_positive(x: float, what: str) -> float:
    if not (math.isfinite(x) and x > 0):
        raise TunerError(f"{what} must be finite and > 0, got {x:g}")
    return float(x)


def bootstrap_sets(law: str, spec: str | None) -> list[dict[str, float]]:
    """Coefficient sets of a bootstrap fit in run directory ``spec``; [] when there are none."""
    if spec in (None, "", "published") or not Path(spec).is_dir():
        return []
    path = Path(spec) / "summary.json"
    if not path.is_file():
        return []
    summary = json.loads(path.read_text())
    sets = summary.get("bootstrap_params")
    if sets is None and isinstance(summary.get("intervals"), dict):
        sets = summary["intervals"].get("bootstrap_params")
    if not isinstance(sets, list) or summary.get("law") != get_law(law).name:
        return []
    names = get_law(law).params
    return [{n: float(s[n]) for n in names} for s in sets
            if isinstance(s, dict) and all(n in s for n in names)]


def _allocate(law: str, params: Mapping[str, float], compute: float, sparsity: float | None,
              s_max: float) -> Allocation:
    if sparsity is None:
        return optimal_sparsity(law, params, compute, s_max)
    return optimal(law, params, compute, sparsity)


FIELDS = ("sparsity", "n_active", "n_total", "tokens", "loss")


def allocation_rows(law: str, params: Mapping[str, float], compute: Sequence[float],
                    sparsity: float | None = 0.0, s_max: float = 0.99,
                    boot: Sequence[Mapping[str, float]] = ()) -> list[dict]:
    """One row per compute budget; ``sparsity=None`` optimises it over [0, s_max].

    With bootstrap sets, each field gets ``<field>_lo`` / ``<field>_hi`` (95% percentiles).
    """
    get_law(law)
    compute = check_compute(compute)
    if sparsity is not None:
        check_sparsity(sparsity)
    s_max = check_sparsity(s_max, "--s-max")
    rows = []
    for c in compute:
        a = _allocate(law, params, c, sparsity, s_max)
        row: dict = {"compute": c, **{f: getattr(a, f) for f in FIELDS}, "method": a.method}
        if boot:
            others = [_allocate(law, b, c, sparsity, s_max) for b in boot]
            for f in FIELDS:
                vals = np.array([getattr(o, f) for o in others], dtype=float)
                lo, hi = np.nanpercentile(vals, INTERVAL)
                row[f"{f}_lo"], row[f"{f}_hi"] = float(lo), float(hi)
        rows.append(row)
    return rows


def predict_one(law: str, params: Mapping[str, float], n_active: float, tokens: float,
                sparsity: float = 0.0, n_total: float | None = None,
                boot: Sequence[Mapping[str, float]] = ()) -> dict:
    """Predicted loss of one model; ``n_total`` defaults to n_active / (1 - sparsity).

    Given both ``n_total`` and a non-zero ``sparsity``, they must agree
    (S = 1 - n_active / n_total); given ``n_total`` alone, S is derived from it.
    """
    n_active = check_positive(n_active, "--n-active")
    tokens = check_positive(tokens, "--tokens")
    sparsity = check_sparsity(sparsity)
    if n_total is None:
        n_total = n_active / (1.0 - sparsity)
    else:
        n_total = check_positive(n_total, "--n-total")
        if n_active > n_total * (1 + 1e-9):
            raise TunerError(f"--n-active {n_active:g} exceeds --n-total {n_total:g}")
        derived = 1.0 - n_active / n_total
        if sparsity and abs(derived - sparsity) > 1e-6:
            raise TunerError(f"--sparsity {sparsity:g} disagrees with 1 - n_active/n_total = "
                             f"{derived:.6g}; give one of them")
        sparsity = derived
    runs = Runs(*(np.array([v]) for v in (n_total, n_active, tokens, sparsity)))
    out = {"law": get_law(law).name, "n_active": n_active, "n_total": n_total, "tokens": tokens,
           "sparsity": sparsity, "compute": 6.0 * n_active * tokens,
           "loss": float(predict(law, params, runs)[0])}
    if boot:
        vals = np.array([predict(law, b, runs)[0] for b in boot], dtype=float)
        out["loss_lo"], out["loss_hi"] = (float(v) for v in np.nanpercentile(vals, INTERVAL))
    return out
