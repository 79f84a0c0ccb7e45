"""The paper's figures 1-6 and 8, drawn from the laws (matplotlib, Agg backend).

Each figure has one column per coefficient source ('published' or a fit run directory). A run
directory holds coefficients for one law; for any other law in the same figure the published
coefficients are used, and the column title says which.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from .allocate import loss_at  # noqa: E402
from .datasets import load  # noqa: E402
from .errors import TunerError  # noqa: E402
from .laws import LAWS, Runs, predict  # noqa: E402

ISO_COMPUTE = 1e20
ISO_SPARSITIES = (0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98)
LOSS = "loss (nats/token)"
COMPUTE = "training compute C = 6·N_active·D (FLOPs)"
# First law: thick translucent solid line; second: thin dashed on top, so identical curves
# (Fig 4) still show both.
STYLE = {0: dict(ls="-", lw=3.0, alpha=0.45), 1: dict(ls="--", lw=1.3)}


class Source:
    """A coefficient source: 'published' or a run directory fitted for one law."""

    def __init__(self, spec: str):
        self.spec = spec
        self.law: str | None = None
        if spec != "published":
            path = Path(spec)
            summary = path / "summary.json"
            if not summary.is_file():
                raise TunerError(f"--coefficients {spec!r}: figures take 'published' or a run "
                                 "directory with summary.json")
            self.law = json.loads(summary.read_text()).get("law")
            if self.law not in LAWS:
                raise TunerError(f"{summary}: unknown law {self.law!r}")

    def params(self, law: str) -> dict[str, float]:
        from .api import coefficients
        return coefficients(law, self.spec if law == self.law else "published")

    def label(self, laws: Sequence[str]) -> str:
        if self.law is None or self.law not in laws:
            return "published coefficients"
        name = Path(self.spec).resolve().name
        return f"{LAWS[self.law].equation}: fit {name}; others published"


def _eq(law: str) -> str:
    return f"{LAWS[law].equation} ({law})"


def _colors(n: int):
    return plt.cm.viridis(np.linspace(0.0, 0.9, n))


def _legend(ax, laws: Sequence[str], sparsities: Sequence[float] = (), points: bool = False,
            loc: str = "best"):
    handles = [Line2D([], [], color="k", label=_eq(law), **STYLE[i]) for i, law in
               enumerate(laws)]
    handles += [Line2D([], [], color=c, lw=3, label=f"S = {s:g}")
                for s, c in zip(sparsities, _colors(len(sparsities)))]
    if points:
        handles.append(Line2D([], [], color="gray", marker="o", ls="", label="measured"))
    ax.legend(handles=handles, fontsize=7, loc=loc)


def _isoflop(ax, src: Source, law: str) -> None:
    n = np.logspace(5, 11.5, 400)
    params = src.params(law)
    for s, c in zip(ISO_SPARSITIES, _colors(len(ISO_SPARSITIES))):
        ax.plot(n, loss_at(law, params, ISO_COMPUTE, s, n), color=c)
    ax.set_xscale("log")
    ax.set_xlabel("non-zero (active) parameters N_active (parameters)")
    ax.set_ylabel(LOSS)
    _legend(ax, [law], ISO_SPARSITIES, loc="upper right")
    ax.set_ylim(top=min(ax.get_ylim()[1], 6.0))


def _dense_models(ax, src: Source, laws: Sequence[str]) -> None:
    f = load("hoffmann_table3").frame
    runs = Runs(*(f[c].to_numpy(float) for c in ("n_total", "n_active", "tokens", "sparsity")))
    for i, law in enumerate(laws):
        ax.plot(runs.n_active, predict(law, src.params(law), runs), marker="os"[i],
                color=f"C{i}", label=_eq(law), mfc="none" if i else None, **STYLE[i])
    ax.set_xscale("log")
    ax.set_xlabel("parameters N (Hoffmann Table 3 models; D from the table)")
    ax.set_ylabel(LOSS)
    ax.legend(fontsize=8)


def _by_compute(ax, src: Source, laws: Sequence[str], data: str, points: bool) -> None:
    f = load(data).frame.copy()
    f["compute"] = 6.0 * f.n_active * f.tokens
    key = "n_active" if data == "frantar_t5" else None
    sparsities = sorted(f.sparsity.unique())
    for s, c in zip(sparsities, _colors(len(sparsities))):
        part = f[f.sparsity == s]
        groups = [g for _, g in part.groupby(key)] if key else [part]
        for g in groups:
            g = g.sort_values("compute")
            runs = Runs(*(g[k].to_numpy(float) for k in ("n_total", "n_active", "tokens",
                                                           "sparsity")))
            for i, law in enumerate(laws):
                ax.plot(g.compute, predict(law, src.params(law), runs), color=c, **STYLE[i])
            if points:
                ax.plot(g.compute, g.loss, "o", color=c, ms=4, mec="k", mew=0.4)
    ax.set_xscale("log")
    ax.set_xlabel(COMPUTE)
    ax.set_ylabel(LOSS)
    _legend(ax, laws, sparsities, points)


Drawer = Callable[[plt.Axes, Source], None]

FIGURES: dict[str, tuple[str, tuple[str, ...], Drawer]] = {
    "fig1": (f"Eq 3 isoFLOP curves at C = {ISO_COMPUTE:.0e} FLOPs by sparsity",
             ("frantar",), lambda ax, s: _isoflop(ax, s, "frantar")),
    "fig2": ("Eq 2 vs Eq 3 at S = 0 on Hoffmann's 9 models", ("hoffmann", "frantar"),
             lambda ax, s: _dense_models(ax, s, ("hoffmann", "frantar"))),
    "fig3": ("Eq 2 vs Eq 5 at S = 0 on Hoffmann's 9 models", ("hoffmann", "abnar"),
             lambda ax, s: _dense_models(ax, s, ("hoffmann", "abnar"))),
    "fig4": ("Eq 2 vs Eq 7 on Hoffmann's 9 models (S = 0: identical)", ("hoffmann", "generalized"),
             lambda ax, s: _by_compute(ax, s, ("hoffmann", "generalized"), "hoffmann_table3",
                                       False)),
    "fig5": ("Eq 3 vs Eq 7 on Frantar's 48 T5 runs (points: measured)", ("frantar", "generalized"),
             lambda ax, s: _by_compute(ax, s, ("frantar", "generalized"), "frantar_t5", True)),
    "fig6": ("Eq 5 vs Eq 7 on Abnar's 35 runs (N, D reconstructed from Eq 5)",
             ("abnar", "generalized"),
             lambda ax, s: _by_compute(ax, s, ("abnar", "generalized"), "abnar_reconstructed",
                                       False)),
    "fig8": (f"Eq 7 isoFLOP curves at C = {ISO_COMPUTE:.0e} FLOPs by sparsity",
             ("generalized",), lambda ax, s: _isoflop(ax, s, "generalized")),
}


def draw(out: str | Path, specs: Sequence[str] = ("published",),
         only: Sequence[str] | None = None) -> list[Path]:
    """Write ``<fig>.png`` and ``<fig>.svg`` for each figure into ``out``; return the paths."""
    sources = [Source(s) for s in (specs or ["published"])]
    names = list(only) if only else list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise TunerError(f"unknown figure {unknown[0]!r}; figures: {', '.join(FIGURES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        title, laws, drawer = FIGURES[name]
        fig, axes = plt.subplots(1, len(sources), figsize=(6.4 * len(sources), 4.8),
                                 squeeze=False)
        for ax, src in zip(axes[0], sources):
            drawer(ax, src)
            ax.set_title(src.label(laws), fontsize=9)
            ax.grid(True, which="both", alpha=0.25)
        fig.suptitle(f"{name}: {title}", fontsize=11)
        fig.tight_layout()
        for ext in ("png", "svg"):
            path = out / f"{name}.{ext}"
            fig.savefig(path, dpi=120)
            written.append(path)
        plt.close(fig)
    return written
