"""Figures and tables from run directories: convergence comparison (Fig. 7 style) and a fit's
report (predicted vs observed, residuals, fitted curves)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tuner.errors import TunerError  # noqa: E402
from tuner.fit.objective import PENALTY  # noqa: E402
from tuner.run.rundir import RunDir  # noqa: E402
from tuner.views.tables import write_tables  # noqa: E402

COLORS = {"ytopt": "tab:blue", "grid": "tab:orange", "random": "tab:green",
          "lbfgs": "black"}


@dataclass
class RunTrace:
    """One run's history, read back from its directory."""

    path: Path
    law: str
    data: str
    optimizer: str
    seed: int
    results: pd.DataFrame
    summary: dict

    @classmethod
    def read(cls, path: str | Path) -> "RunTrace":
        run = RunDir.open(path)
        fit = run.config()["fit"]
        results = run.results()
        if results.empty:
            raise TunerError(f"{run.path}: no finished evaluations")
        summary = run.summary() if run.summary_path.is_file() else {}
        return cls(run.path, fit["law"], fit["data"], fit["optimizer"], fit["seed"], results,
                   summary)

    @property
    def best_so_far(self) -> np.ndarray:
        return np.minimum.accumulate(self.results["objective"].to_numpy())

    @property
    def elapsed(self) -> np.ndarray:
        """Seconds since the run's first evaluation ended (x axis for --x time)."""
        t = pd.to_datetime(self.results["timestamp"], format="ISO8601")
        return (t - t.min()).dt.total_seconds().to_numpy()

    @property
    def best(self) -> float:
        return float(self.results["objective"].min())

    def evals_to_reach(self, target: float) -> int | None:
        hit = np.flatnonzero(self.best_so_far < target)
        return int(hit[0]) + 1 if len(hit) else None


def panel_key(trace: RunTrace) -> tuple[str, str]:
    return trace.law, Path(trace.data).stem


def convergence_figure(traces: Sequence[RunTrace], out: Path, *, x: str = "eval",
                       published: dict | None = None, reference: dict | None = None,
                       titles: dict | None = None) -> list[Path]:
    """One panel per (law, dataset): ytopt's evaluations as dots, every method's best so far,
    and horizontal lines at the published coefficients' objective and the L-BFGS reference."""
    panels: dict[tuple[str, str], list[RunTrace]] = defaultdict(list)
    for t in traces:
        panels[panel_key(t)].append(t)
    n = len(panels)
    cols = min(n, 2)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 4.6 * rows), squeeze=False)
    for ax, (key, group) in zip(axes.flat, panels.items()):
        finite = []
        labelled = set()
        for t in sorted(group, key=lambda t: (t.optimizer != "ytopt", t.optimizer, t.seed)):
            xs = (np.arange(1, len(t.results) + 1) if x == "eval" else t.elapsed)
            ys = t.results["objective"].to_numpy()
            color = COLORS.get(t.optimizer, None)
            if t.optimizer == "ytopt":
                ok = ys < PENALTY
                ax.scatter(xs[ok], ys[ok], s=7, color=color, alpha=0.35, linewidths=0,
                           label=None if "dots" in labelled else "ytopt evaluations")
                labelled.add("dots")
            if t.optimizer == "lbfgs" and reference is not None:
                continue  # drawn as its horizontal reference line
            label = f"{t.optimizer} best so far"
            ax.step(xs, t.best_so_far, where="post", color=color, lw=1.6,
                    label=None if label in labelled else label)
            labelled.add(label)
            finite.extend(ys[ys < PENALTY])
        pub = (published or {}).get(key)
        ref = (reference or {}).get(key)
        if pub is not None:
            ax.axhline(pub, color="tab:red", lw=1.8, label=f"published coefficients ({pub:.3g})")
        if ref is not None:
            ax.axhline(ref, color="black", ls="--", lw=1.2, label=f"L-BFGS reference ({ref:.3g})")
        ax.set_yscale("log")
        low = min([v for v in (ref, min(finite) if finite else None) if v is not None])
        high = max([v for v in (pub, np.percentile(finite, 90) if finite else None)
                    if v is not None])
        ax.set_ylim(low * 0.7, high * 3)
        ax.set_xlabel("evaluation number" if x == "eval" else "elapsed time (s)")
        ax.set_ylabel("objective (sum of Huber on log loss residuals)"
                      if group[0].summary.get("objective", "huber") == "huber" else "objective")
        title = (titles or {}).get(key, f"{key[0]} on {key[1]}")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper right")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    paths = []
    for ext in ("png", "svg"):
        p = out.with_suffix(f".{ext}")
        fig.savefig(p, dpi=130)
        paths.append(p)
    plt.close(fig)
    return paths


def compare(run_dirs: Sequence[str | Path], out: Path, *, x: str = "eval") -> list[dict]:
    """Convergence figure and table for any runs: ``out``.png/.svg/.md/.csv."""
    traces = [RunTrace.read(p) for p in run_dirs]
    published = {}
    for t in traces:
        if t.summary.get("published_objective") is not None:
            published[panel_key(t)] = t.summary["published_objective"]
    out.parent.mkdir(parents=True, exist_ok=True)
    convergence_figure(traces, out, x=x, published=published)
    rows = [{"law": t.law, "data": panel_key(t)[1], "optimizer": t.optimizer, "seed": t.seed,
             "evals": len(t.results), "best_objective": t.best,
             "published_objective": published.get(panel_key(t)),
             "wall_seconds": t.summary.get("wall_seconds"), "run": str(t.path),
             "warnings": "; ".join(t.summary.get("warnings", []))}
            for t in traces]
    write_tables(rows, out)
    return rows


def report(run_dir: str | Path, out: Path | None = None) -> list[Path]:
    """A fit's figure: predicted vs observed loss per run (log axes, by sparsity), residuals
    against compute, and the fitted law over N at the dataset's token counts."""
    from tuner.run.fit import FitConfig, prepare
    trace = RunTrace.read(run_dir)
    if not trace.summary:
        raise TunerError(f"{trace.path}: no summary.json yet ('tuner resume' finishes it)")
    prep = prepare(FitConfig(**RunDir.open(run_dir).config()["fit"]))
    obj = prep.objective
    params = trace.summary["best_params"]
    frame = obj.dataset.frame
    if obj.log_obs is None:
        raise TunerError(f"{trace.path}: the dataset has no observed losses to report against")
    pred = obj.predict(params)
    obs = frame["loss"].to_numpy()
    s = frame["sparsity"].to_numpy()
    compute = 6 * frame["n_active"].to_numpy() * frame["tokens"].to_numpy()
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(16, 4.8))
    sc = a1.scatter(obs, pred, c=s, cmap="viridis", vmin=0, vmax=1, s=14)
    lo, hi = min(obs.min(), pred.min()) * 0.97, max(obs.max(), pred.max()) * 1.03
    a1.plot([lo, hi], [lo, hi], color="gray", lw=1)
    a1.set(xscale="log", yscale="log", xlabel="observed loss (nats/token)",
           ylabel="predicted loss (nats/token)", title="predicted vs observed")
    fig.colorbar(sc, ax=a1, label="sparsity S")
    a2.scatter(compute, np.log(pred) - np.log(obs), c=s, cmap="viridis", vmin=0, vmax=1, s=14)
    a2.axhline(0, color="gray", lw=1)
    a2.set(xscale="log", xlabel="training compute 6·N_active·D (FLOPs)",
           ylabel="log residual  log L_pred − log L_obs",
           title=f"residuals (rmse_log {trace.summary['rmse_log']:.4f})")
    from tuner.laws import Runs, predict
    sparsities = np.unique(np.round(s, 3))[:6]
    tokens = np.unique(frame["tokens"].round(-6))
    tokens = tokens[np.linspace(0, len(tokens) - 1, min(3, len(tokens))).astype(int)]
    n_grid = np.logspace(np.log10(frame["n_active"].min() / 2),
                         np.log10(frame["n_active"].max() * 2), 200)
    cmap = plt.get_cmap("viridis")
    styles = ["-", "--", ":"]
    for si in sparsities:
        for ti, d in enumerate(tokens):
            runs = Runs(n_grid / (1 - si), n_grid, np.full_like(n_grid, d), np.full_like(n_grid, si))
            a3.plot(n_grid, predict(trace.law, params, runs), color=cmap(si), ls=styles[ti],
                    lw=1.2, label=f"S={si:g}, D={d:.2g}")
    a3.scatter(frame["n_active"], obs, c=s, cmap="viridis", vmin=0, vmax=1, s=10,
               edgecolors="k", linewidths=0.3)
    a3.set(xscale="log", xlabel="active parameters N", ylabel="loss (nats/token)",
           title=f"fitted {trace.law} over N (lines: token counts)")
    a3.legend(fontsize=6, ncol=2)
    fig.suptitle(f"{trace.law} on {panel_key(trace)[1]} ({trace.optimizer}, "
                 f"{len(trace.results)} evaluations, best objective {trace.best:.4g})")
    fig.tight_layout()
    out = out or trace.path / "report"
    paths = []
    for ext in ("png", "svg"):
        p = Path(out).with_suffix(f".{ext}")
        fig.savefig(p, dpi=120)
        paths.append(p)
    plt.close(fig)
    return paths
