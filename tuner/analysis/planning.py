"""Planning with a fitted law: compute-optimal allocations and single-model loss predictions.

A thin layer over ``allocate.optimal`` / ``allocate.optimal_sparsity`` and ``laws.predict`` that
checks the user's numbers and, when a run directory carries bootstrap coefficient sets
(``summary.json`` key ``bootstrap_params``), adds a percentile interval for each quantity.
"""
from __future__ import annotations

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
    from tuner.run.rundir import RunDir
    if spec in (None, "", "published") or not Path(spec).is_dir():
        return []
    run = RunDir.open(spec)
    if not run.summary_path.is_file():
        return []
    summary = run.summary()
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


def coefficient_source(law: str, spec: str | None) -> dict:
    """Where coefficients come from: {"kind": published|run|manual, "text": ..., ...}."""
    from tuner.run.rundir import RunDir
    definition = get_law(law)
    if spec in (None, "", "published"):
        return {"kind": "published",
                "text": f"published coefficients of {definition.name} ({definition.source}); "
                        "point values: no uncertainty is attached to them here"}
    path = Path(spec)
    if path.is_dir():
        run = RunDir.open(path)
        summary = run.summary() if run.summary_path.is_file() else {}
        cfg = run.config().get("fit", {})
        text = (f"fit in {path}: {law} on {summary.get('data', cfg.get('data', '?'))} "
                f"({summary.get('optimizer', cfg.get('optimizer', '?'))}, objective "
                f"{summary.get('objective', cfg.get('objective', '?'))}, "
                f"{summary.get('evals', '?')} evaluations)")
        return {"kind": "run", "text": text, "data": cfg.get("data", summary.get("data")),
                "drop_outliers": cfg.get("drop_outliers", True),
                "warnings": list(summary.get("warnings", []))}
    return {"kind": "manual",
            "text": f"coefficients given by hand ({spec}), the others published "
                    f"({definition.source or 'none'}); no uncertainty"}


def fresh_bootstrap(law: str, run_dir: str, k: int, seed: int = 0) -> list[dict[str, float]]:
    """K bootstrap coefficient sets for a run that has none (the run is not modified)."""
    from tuner.analysis.bootstrap import bootstrap
    from tuner.run.fit import FitConfig, prepare
    from tuner.run.rundir import RunDir
    run = RunDir.open(run_dir)
    prep = prepare(FitConfig(**run.config()["fit"]), optimizer=False)
    best = run.summary()["best_params"]
    return bootstrap(prep.objective, prep.space, best, k=k, seed=seed)["bootstrap_params"]


def extrapolation(row: Mapping, ranges: Mapping[str, tuple[float, float]]) -> list[str]:
    """One phrase per quantity of an allocation outside the fitted data's range."""
    names = {"n_active": "N_active", "n_total": "N_total", "tokens": "D", "sparsity": "S",
             "compute": "C"}
    out = []
    for key, label in names.items():
        lo, hi = ranges[key]
        v = row[key]
        tol = 1e-9 * max(abs(hi), 1.0)
        if v < lo - tol or v > hi + tol:
            out.append(f"{label} {v:.3g} outside the data's {lo:.3g}–{hi:.3g}")
    return out


def allocation_report(law: str, coeffs: str | None, compute: Sequence[float],
                      sparsity: float | None = 0.0, s_max: float = 0.99, *,
                      data: str | None = None, bootstrap: int = 0, seed: int = 0) -> dict:
    """An allocation a researcher can defend: rows plus where the coefficients come from,
    intervals (a run's bootstrap, or ``bootstrap`` fresh resamples), optima on a search
    limit, extrapolation beyond the fitted data (or ``data``), and for sparse answers the
    dense model of the same compute."""
    from tuner.data.datasets import load
    from tuner.run.coefficients import coefficients
    params = coefficients(law, coeffs)
    src = coefficient_source(law, coeffs)
    notes: list[str] = []
    boot = bootstrap_sets(law, coeffs) if src["kind"] == "run" else []
    if bootstrap:
        if bootstrap < 2:
            raise TunerError(f"--bootstrap must be >= 2, got {bootstrap}")
        if src["kind"] != "run":
            raise TunerError("--bootstrap needs a fitted run directory as --coefficients "
                             "(published and hand-given coefficients have no data to resample)")
        if len(boot) < bootstrap:
            boot = fresh_bootstrap(law, coeffs, bootstrap, seed)
            notes.append(f"intervals from {bootstrap} bootstrap resamples computed now "
                         "(not saved in the run)")
    if src["kind"] == "run":
        if boot:
            notes.append(f"95% intervals: percentiles over {len(boot)} bootstrap refits")
            if len(boot) < 100:
                notes.append(f"only {len(boot)} bootstrap sets: intervals are rough; use "
                             "--bootstrap 1000")
        else:
            notes.append("this run has no bootstrap: no intervals (add --bootstrap K, e.g. 200)")
    ranges = None
    range_source = data or (src.get("data") if src["kind"] == "run" else None)
    if range_source:
        ds = load(range_source, drop_outliers=src.get("drop_outliers", True))
        ranges = ds.ranges()
    else:
        notes.append("extrapolation not checked: the data behind these coefficients are not "
                     "shipped (--data DATASET compares with a dataset's ranges)")
    rows = allocation_rows(law, params, compute, sparsity, s_max, boot)
    for row in rows:
        a = (optimal_sparsity(law, params, row["compute"], s_max) if sparsity is None
             else optimal(law, params, row["compute"], sparsity))
        row["at_limit"] = a.at_limit
        row["extrapolation"] = "; ".join(extrapolation(row, ranges)) if ranges else ""
        if row["sparsity"] > 0:
            dense = optimal(law, params, row["compute"], 0.0)
            row.update({"dense_n": dense.n_active, "dense_tokens": dense.tokens,
                        "dense_loss": dense.loss})
    return {"law": law, "source": src, "params": params, "rows": rows, "notes": notes,
            "ranges": ranges, "range_source": range_source,
            "warnings": src.get("warnings", [])}


def describe_allocation(rep: Mapping) -> list[str]:
    """Lines a user reads: the source, one block per budget, the notes and warnings."""
    def iv(row, f, fmt=".3g"):
        v = format(row[f], fmt)
        return f"{v} [{row[f + '_lo']:{fmt}}, {row[f + '_hi']:{fmt}}]" if f + "_lo" in row \
            else v
    lines = [f"coefficients: {rep['source']['text']}"]
    for row in rep["rows"]:
        head = (f"C = {row['compute']:.3g} FLOPs: N_active {iv(row, 'n_active')}, "
                f"D {iv(row, 'tokens')} tokens, loss {iv(row, 'loss', '.4g')}")
        if row["sparsity"] > 0:
            head += (f", S {iv(row, 'sparsity', '.4g')}, N_total {iv(row, 'n_total')} "
                     "(compute counts active parameters only)")
        lines.append(head + f"  ({row['method']})")
        if row["at_limit"]:
            lines.append(f"  AT THE LIMIT, not an optimum: {row['at_limit']}")
        if row["extrapolation"]:
            lines.append(f"  EXTRAPOLATION beyond {rep['range_source']}: {row['extrapolation']}")
        if "dense_n" in row:
            lines.append(f"  dense model of the same compute: N {row['dense_n']:.3g}, "
                         f"D {row['dense_tokens']:.3g}, loss {row['dense_loss']:.4g}")
    lines += [f"note: {n}" for n in rep["notes"]]
    lines += [f"warning: {w}" for w in rep["warnings"]]
    return lines


def allocation_table(rep: Mapping) -> list[dict]:
    """The rows with the long at-limit and extrapolation texts shortened to flags."""
    out = []
    for row in rep["rows"]:
        r = {k: v for k, v in row.items() if k not in ("at_limit", "extrapolation")}
        r["flags"] = ", ".join(f for f, on in (("at limit", row["at_limit"]),
                                               ("extrapolation", row["extrapolation"])) if on)
        out.append(r)
    return out
