"""The isoFLOP figure (Approach 2): profiles and their minima, then N_opt and D_opt against C
with the fitted power laws, their bootstrap band, and what the parametric fit (Approach 3)
implies."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tuner.analysis.isoflop import IsoflopResult  # noqa: E402
from tuner.data.datasets import Dataset  # noqa: E402
from tuner.views.outputs import save_figure  # noqa: E402


def isoflop_figure(result: IsoflopResult, dataset: Dataset, out: Path, *,
                   approach3: Mapping | None = None,
                   approach3_params: Mapping[str, float] | None = None) -> list[Path]:
    """Write ``out``.png and .svg; returns their paths."""
    from tuner.analysis.allocate import hoffmann_closed_form
    f = dataset.frame
    n_all, loss = f["n_active"].to_numpy(float), dataset.loss
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(17, 5.2))
    cmap = plt.get_cmap("viridis")
    lc = np.log10([b.compute for b in result.budgets])
    span = max(lc.max() - lc.min(), 1e-9)
    for b, x in zip(result.budgets, lc):
        color = cmap((x - lc.min()) / span) if b.used else "0.6"
        n = n_all[b.rows]
        a1.scatter(n, loss[b.rows], s=12, color=color, zorder=2)
        if np.all(np.isfinite(b.parabola)):
            grid = np.linspace(np.log(n.min()), np.log(n.max()), 100)
            a1.plot(np.exp(grid), np.polyval(b.parabola, grid), color=color, lw=1.2,
                    ls="-" if b.used else ":")
        if b.used:
            a1.scatter([b.n_opt], [b.loss_opt], marker="*", s=120, color=color,
                       edgecolors="k", linewidths=0.6, zorder=3)
    a1.set(xscale="log", xlabel="active parameters N", ylabel="loss (nats/token)",
           title=f"isoFLOP profiles: {sum(b.used for b in result.budgets)} budgets used "
                 f"(grey: left out)")
    used = [b for b in result.budgets if b.used]
    cs = np.array([b.compute for b in used])
    grid_c = np.logspace(np.log10(cs.min()) - 0.3, np.log10(cs.max()) + 0.3, 100)
    for ax, what, pts, coef, boot_idx, exp, lo_hi in (
            (a2, "N_opt", [b.n_opt for b in used], result.n_coef, 0, result.a,
             result.a_interval),
            (a3, "D_opt", [b.d_opt for b in used], result.d_coef, 1, result.b,
             result.b_interval)):
        ax.scatter(cs, pts, color="tab:blue", zorder=3, label="budget minima (Approach 2)")
        line = np.exp(coef[1] + coef[0] * np.log(grid_c))
        ax.plot(grid_c, line, color="tab:blue",
                label=f"fit: {what} ∝ C^{exp:.3f} [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]")
        if result.boot_n_coef is not None and len(result.boot_n_coef):
            bn = np.exp(result.boot_n_coef[:, 1:2] + result.boot_n_coef[:, 0:1]
                        * np.log(grid_c)[None, :])
            band = bn if boot_idx == 0 else grid_c[None, :] / (6.0 * bn)
            lo, hi = np.percentile(band, [2.5, 97.5], axis=0)
            ax.fill_between(grid_c, lo, hi, color="tab:blue", alpha=0.15,
                            label=f"95% bootstrap band (K={len(result.boot_n_coef)})")
        if approach3 is not None and approach3_params is not None:
            n3 = np.array([hoffmann_closed_form(approach3_params, c)[0] for c in grid_c])
            y3 = n3 if boot_idx == 0 else grid_c / (6.0 * n3)
            e3 = approach3["a"] if boot_idx == 0 else approach3["b"]
            ax.plot(grid_c, y3, color="tab:red", ls="--",
                    label=f"Approach 3 (Eq 2 fit): exponent {e3:.3f}")
        ax.set(xscale="log", yscale="log", xlabel="compute C = 6 N D (FLOPs)",
               ylabel=f"{what} ({'parameters' if boot_idx == 0 else 'tokens'})",
               title=f"{what} against compute")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Approach 2 on {dataset.name} ({len(dataset)} runs; {result.grouping})",
                 fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out)
