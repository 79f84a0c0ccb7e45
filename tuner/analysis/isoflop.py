"""Hoffmann et al.'s Approach 2: isoFLOP profiles, their minima, and N_opt, D_opt power laws.

Runs are grouped into compute budgets, either by a column of the data (``--budget-column``)
or by clustering C = 6 N_active D in log10 space: a flat-kernel mean shift of bandwidth
``bandwidth`` decades finds the budgets, each run joins the nearest one within ``bandwidth``,
and a budget needs ``min_runs`` runs. Runs near no budget are left out and counted.

Per budget, a parabola in log N is fitted to the loss (as Hoffmann et al. did). Its vertex
is the budget's optimum N_opt if the parabola opens upwards and the vertex lies inside the
budget's sampled N range; otherwise the budget is reported with the reason and left out of
the power laws. D_opt = C / (6 N_opt), with C the budget's geometric-mean compute. Then
log N_opt = a log C + const and log D_opt = b log C + const by least squares (a + b = 1
follows from D = C / 6N). Intervals come from a bootstrap that resamples the runs within each
budget and redoes every parabola and both regressions.

Approach 3 (the parametric fit of Eq 2) implies a = beta / (alpha + beta) and
b = alpha / (alpha + beta); ``approach3`` turns a fit's coefficients (and its covariance or
bootstrap sets) into those, so both answers can be set side by side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from tuner.data.datasets import Dataset
from tuner.errors import TunerError

BANDWIDTH = 0.1   # decades of compute: mean-shift bandwidth and the join distance
MIN_RUNS = 5      # runs a budget needs for a parabola (3 parameters) with some slack
LEVEL = 0.95
BOOTSTRAP = 1000


@dataclass
class Budget:
    """One isoFLOP profile."""

    compute: float              # geometric mean of its runs' C
    rows: np.ndarray            # indices into the dataset's frame
    n_opt: float = math.nan
    d_opt: float = math.nan
    loss_opt: float = math.nan
    parabola: tuple[float, float, float] = (math.nan, math.nan, math.nan)  # loss = p0 x^2+p1 x+p2
    status: str = "ok"          # ok, or why its optimum is not used

    @property
    def used(self) -> bool:
        return self.status == "ok"


@dataclass
class IsoflopResult:
    budgets: list[Budget]
    a: float                    # N_opt ∝ C^a
    b: float                    # D_opt ∝ C^b
    a_interval: tuple[float, float]
    b_interval: tuple[float, float]
    n_coef: tuple[float, float]  # (slope, intercept) of log N_opt on log C (natural logs)
    d_coef: tuple[float, float]
    grouping: str
    left_out: int               # runs in no budget
    bootstrap: int
    seed: int
    warnings: list[str] = field(default_factory=list)
    boot_n_coef: np.ndarray | None = None  # (K, 2) bootstrap (slope, intercept) pairs

    def n_opt(self, compute) -> np.ndarray:
        return np.exp(self.n_coef[1] + self.n_coef[0] * np.log(compute))

    def d_opt(self, compute) -> np.ndarray:
        return np.exp(self.d_coef[1] + self.d_coef[0] * np.log(compute))


def cluster_compute(compute: np.ndarray, bandwidth: float = BANDWIDTH,
                    min_runs: int = MIN_RUNS) -> np.ndarray:
    """Budget label per run (-1: near no budget) by mean shift on log10 C."""
    x = np.log10(np.asarray(compute, dtype=float))
    modes = x.copy()
    for _ in range(200):
        near = np.abs(modes[:, None] - x[None, :]) <= bandwidth
        new = (near * x[None, :]).sum(axis=1) / near.sum(axis=1)
        if np.allclose(new, modes, atol=1e-9):
            break
        modes = new
    centres: list[float] = []
    for m in np.sort(modes):
        if not centres or m - centres[-1] > bandwidth / 2:
            centres.append(float(m))
    centres_a = np.array(centres)
    dist = np.abs(x[:, None] - centres_a[None, :])
    label = np.argmin(dist, axis=1)
    label[dist[np.arange(len(x)), label] > bandwidth] = -1
    counts = np.bincount(label[label >= 0], minlength=len(centres_a))
    small = np.flatnonzero(counts < min_runs)
    label[np.isin(label, small)] = -1
    # Renumber in order of compute.
    kept = np.unique(label[label >= 0])
    remap = {old: new for new, old in enumerate(kept)}
    return np.array([remap.get(v, -1) for v in label])


def _vertex(x: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, str]:
    """Parabola coefficients and a status: ok, or why its vertex is no optimum."""
    p = np.polyfit(x, loss, 2)
    if not p[0] > 0:
        return p, "profile is not convex (parabola opens downwards)"
    v = -p[1] / (2 * p[0])
    if not x.min() <= v <= x.max():
        side = "below" if v < x.min() else "above"
        return p, f"minimum {side} the sampled N range (extrapolated vertex)"
    return p, "ok"


def _profiles(log_n: np.ndarray, loss: np.ndarray, log_c: np.ndarray,
              groups: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log C, log N_opt, used) per budget; NaN where unused."""
    lc = np.array([log_c[g].mean() for g in groups])
    ln = np.full(len(groups), np.nan)
    for i, g in enumerate(groups):
        if len(np.unique(log_n[g])) < 3:
            continue
        p, status = _vertex(log_n[g], loss[g])
        if status == "ok":
            ln[i] = -p[1] / (2 * p[0])
    return lc, ln, np.isfinite(ln)


def _slopes(lc: np.ndarray, ln: np.ndarray, used: np.ndarray):
    n = np.polyfit(lc[used], ln[used], 1)
    ld = lc[used] - math.log(6.0) - ln[used]
    d = np.polyfit(lc[used], ld, 1)
    return (float(n[0]), float(n[1])), (float(d[0]), float(d[1]))


def isoflop(dataset: Dataset, *, budget_column: str | None = None,
            bandwidth: float = BANDWIDTH, min_runs: int = MIN_RUNS,
            bootstrap: int = BOOTSTRAP, seed: int = 0) -> IsoflopResult:
    """Approach 2 on ``dataset``: budgets, per-budget optima, the power laws and intervals."""
    f = dataset.frame
    if dataset.loss is None:
        raise TunerError(f"{dataset.path}: isoFLOP profiles need a loss column")
    if bootstrap < 0 or bootstrap == 1:
        raise TunerError(f"--bootstrap must be 0 or >= 2, got {bootstrap}")
    from tuner.run.watchdog import check_fits, check_seed
    check_seed(seed)
    check_fits(bootstrap, "--bootstrap")
    if not bandwidth > 0:
        raise TunerError(f"--bandwidth must be > 0 decades, got {bandwidth}")
    n = f["n_active"].to_numpy(dtype=float)
    compute = 6.0 * n * f["tokens"].to_numpy(dtype=float)
    loss = dataset.loss
    if budget_column is not None:
        if budget_column not in f:
            raise TunerError(f"{dataset.path}: no column {budget_column!r} to group budgets by "
                             f"(columns: {', '.join(map(str, f.columns))})")
        if f[budget_column].isna().any():
            raise TunerError(f"--budget-column {budget_column}: {dataset.path}: "
                             f"{dataset.which(f[budget_column].isna().to_numpy())} has no value")
        keys = f[budget_column].to_numpy()
        uniq = sorted(set(keys), key=lambda k: float(np.mean(compute[keys == k])))
        label = np.array([uniq.index(k) for k in keys])
        counts = np.bincount(label, minlength=len(uniq))
        label[np.isin(label, np.flatnonzero(counts < min_runs))] = -1
        grouping = f"column {budget_column!r}, budgets with >= {min_runs} runs"
    else:
        label = cluster_compute(compute, bandwidth, min_runs)
        grouping = (f"clusters of log10 C (mean shift, bandwidth {bandwidth:g} decades), "
                    f">= {min_runs} runs each")
    ids = sorted(set(label[label >= 0]))
    groups = [np.flatnonzero(label == i) for i in ids]
    log_n, log_c = np.log(n), np.log(compute)
    budgets = []
    for g in groups:
        b = Budget(float(math.exp(log_c[g].mean())), g)
        if len(np.unique(n[g])) < 3:
            b.status = "fewer than 3 distinct model sizes"
        else:
            p, b.status = _vertex(log_n[g], loss[g])
            b.parabola = tuple(float(v) for v in p)
            if b.used:
                v = -p[1] / (2 * p[0])
                b.n_opt = math.exp(v)
                b.d_opt = b.compute / (6.0 * b.n_opt)
                b.loss_opt = float(np.polyval(p, v))
        budgets.append(b)
    used = np.array([b.used for b in budgets], dtype=bool)
    if used.sum() < 3:
        raise TunerError(f"{dataset.name}: {int(used.sum())} budget(s) with an interior "
                         f"optimum out of {len(budgets)}; the power laws need at least 3 "
                         "(try --budget-column or another --bandwidth)")
    lc = np.log([b.compute for b in budgets])
    ln = np.log([b.n_opt if b.used else math.nan for b in budgets])
    n_coef, d_coef = _slopes(lc, ln, used)
    warnings = [f"budget C = {b.compute:.3g} ({len(b.rows)} runs) left out: {b.status}"
                for b in budgets if not b.used]
    if np.ptp(f["sparsity"].to_numpy(dtype=float)) > 0:
        warnings.append("the runs span several sparsities and the profiles mix them; "
                        "Approach 2 assumes one model family (select one sparsity first)")
    left_out = int((label < 0).sum())
    if left_out:
        warnings.append(f"{left_out} of {len(f)} runs belong to no budget and are not used")
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(bootstrap):
        resampled = [rng.choice(g, size=len(g), replace=True) for g in groups]
        blc, bln, bused = _profiles(log_n, loss, log_c, resampled)
        if bused.sum() >= 3:
            sn, sd = _slopes(blc, bln, bused)
            boot.append([sn[0], sn[1], sd[0]])
    q = 100 * (1 - LEVEL) / 2
    a_int = b_int = (math.nan, math.nan)
    boot_arr = np.array(boot) if boot else None
    if boot:
        lo, hi = np.percentile(boot_arr, [q, 100 - q], axis=0)
        a_int, b_int = (float(lo[0]), float(hi[0])), (float(lo[2]), float(hi[2]))
        failed = bootstrap - len(boot)
        if failed:
            warnings.append(f"{failed} of {bootstrap} bootstrap resamples had fewer than 3 "
                            "usable budgets and were dropped")
    if 0 < bootstrap < 100:
        warnings.append(f"only {bootstrap} bootstrap resamples: intervals are rough "
                        "(use >= 100, ideally 1000)")
    if used.sum() < 5:
        warnings.append(f"the power laws rest on {int(used.sum())} budgets only")
    return IsoflopResult(budgets, n_coef[0], d_coef[0], a_int, b_int, n_coef, d_coef, grouping,
                         left_out, bootstrap, seed, warnings,
                         None if boot_arr is None else boot_arr[:, :2])


def approach3(params: Mapping[str, float], cov: Mapping | None = None,
              boot: Sequence[Mapping[str, float]] = ()) -> dict:
    """Exponents Eq 2's coefficients imply: a = beta/(alpha+beta), b = alpha/(alpha+beta).

    ``cov``: an ``uncertainty.standard_errors`` result (delta-method interval from the
    alpha-beta covariance); ``boot``: bootstrap coefficient sets (percentile interval)."""
    al, be = float(params["alpha"]), float(params["beta"])
    out = {"a": be / (al + be), "b": al / (al + be)}
    if cov is not None:
        c = cov["correlation"]
        if "alpha" in c["names"] and "beta" in c["names"]:
            i, j = c["names"].index("alpha"), c["names"].index("beta")
            sa, sb = cov["stderr"]["alpha"], cov["stderr"]["beta"]
            rho = c["matrix"][i][j]
            g = np.array([-be, al]) / (al + be) ** 2  # d a / d(alpha, beta)
            s = np.array([[sa * sa, rho * sa * sb], [rho * sa * sb, sb * sb]])
            se = float(math.sqrt(max(g @ s @ g, 0.0)))
            out["a_stderr"] = out["b_stderr"] = se
            out["a_interval_delta"] = (out["a"] - 1.96 * se, out["a"] + 1.96 * se)
            out["b_interval_delta"] = (out["b"] - 1.96 * se, out["b"] + 1.96 * se)
    if boot:
        a = np.array([s["beta"] / (s["alpha"] + s["beta"]) for s in boot])
        q = 100 * (1 - LEVEL) / 2
        lo, hi = np.percentile(a, [q, 100 - q])
        out["a_interval_bootstrap"] = (float(lo), float(hi))
        out["b_interval_bootstrap"] = (float(1 - hi), float(1 - lo))
        out["bootstrap"] = len(boot)
    return out


def budget_rows(result: IsoflopResult, dataset: Dataset) -> list[dict]:
    """One table row per budget."""
    f = dataset.frame
    rows = []
    for b in result.budgets:
        c = 6 * f["n_active"].to_numpy()[b.rows] * f["tokens"].to_numpy()[b.rows]
        rows.append({"compute": b.compute, "runs": len(b.rows),
                     "C_spread": f"{c.min():.3g}–{c.max():.3g}",
                     "N_range": f"{f['n_active'].to_numpy()[b.rows].min():.3g}–"
                                f"{f['n_active'].to_numpy()[b.rows].max():.3g}",
                     "N_opt": b.n_opt, "D_opt": b.d_opt, "loss_opt": b.loss_opt,
                     "used": "yes" if b.used else f"no: {b.status}"})
    return rows


def fit_approach3(data: str, *, run_dir: str | None = None, drop_outliers: bool = True,
                  seed: int = 0, evals: int = 150) -> dict:
    """Eq 2 (``hoffmann``) fitted to the same runs, and the exponents it implies.

    With ``run_dir`` (a hoffmann fit), its best coefficients and bootstrap sets are used;
    otherwise tuner's default method fits in process (``evals`` evaluations). Either way the
    standard errors come from the curvature at the coefficients (delta-method interval)."""
    from tuner.analysis.planning import bootstrap_sets
    from tuner.fitting.loop import minimize_inprocess
    from tuner.fitting.objective import Objective, ObjectiveSpec
    from tuner.fitting.uncertainty import standard_errors
    objective = Objective.from_spec(ObjectiveSpec("hoffmann", data, drop_outliers=drop_outliers))
    space = objective.default_space()
    if run_dir is not None:
        from tuner.run.coefficients import coefficients
        params = coefficients("hoffmann", run_dir)
        boot = bootstrap_sets("hoffmann", run_dir)
        source = f"run {run_dir}"
    else:
        params, _ = minimize_inprocess(objective, space, "ytopt", budget=evals, seed=seed)
        boot = []
        source = f"fitted here (tuner's ytopt method, {evals} evaluations, seed {seed})"
    errors = standard_errors(objective, space, params)
    out = approach3(params, errors, boot)
    out.update({"params": params, "source": source, "objective": objective(params)})
    return out
