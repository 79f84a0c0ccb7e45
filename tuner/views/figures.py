"""The paper's figures 1-6 and 8, drawn from the laws (matplotlib, Agg backend).

Each figure is drawn once per coefficient source ('published' or a fit run directory): one
column per source, or, for a figure with several panels (Fig 5), one row per source. A run
directory holds coefficients for one law; for any other law in the same figure the published
coefficients are used, and the panel title says which.

The curves come from small pure functions (``isoflop_curves``, ``token_curves``,
``abnar_path_curves``) so tests can check what is drawn, not only that a file exists.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from tuner.analysis.allocate import loss_at, optimal  # noqa: E402
from tuner.data.datasets import load  # noqa: E402
from tuner.errors import TunerError  # noqa: E402
from tuner.laws import LAWS, Runs, predict  # noqa: E402
from tuner.views.outputs import save_figure  # noqa: E402

ISO_COMPUTE = 1e20
ISO_SPARSITIES = (0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98)
ISO_N = np.logspace(5, 11.5, 400)  # non-zero (active) parameters on the isoFLOP x axis
LOSS = "loss (nats/token)"
COMPUTE = "training compute C = 6·N_active·D (FLOPs)"
# First law: thick translucent solid line; second: thin dashed on top, so identical curves
# (Fig 4) still show both.
STYLE = {0: dict(ls="-", lw=3.0, alpha=0.45), 1: dict(ls="--", lw=1.3)}
ISO_CAPTION = "\n".join((
    "x: non-zero (active) parameters N; tokens D = C/(6N), C = 1e20 FLOPs. At fixed C, Eq 3 "
    "and Eq 7",
    "are A(S)·N^-p + B·N^q + const with A(S), B > 0 for every S in [0, 1): convex in log N, "
    "one minimum,",
    "no spike. Other conventions tried (x = total parameters, compute counted on total "
    "parameters,",
    "N down to 1 parameter, Eq 4) give no spike either with the published coefficients; "
    "see README."))


class Source:
    """A coefficient source: 'published' or a run directory fitted for one law."""

    def __init__(self, spec: str):
        self.spec = spec
        self.law: str | None = None
        if spec != "published":
            from tuner.run.rundir import RunDir
            if not Path(spec).is_dir():
                raise TunerError(f"--coefficients {spec!r}: figures take 'published' or a run "
                                 "directory with summary.json")
            self.law = RunDir.open(spec).summary().get("law")
            if self.law not in LAWS:
                raise TunerError(f"{spec}: figures draw the built-in laws; this run fitted "
                                 f"{self.law!r}")

    def params(self, law: str) -> dict[str, float]:
        from tuner.run.coefficients import coefficients
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


def _runs(frame: pd.DataFrame) -> Runs:
    return Runs(*(frame[c].to_numpy(float) for c in ("n_total", "n_active", "tokens",
                                                      "sparsity")))


def _legend(ax, laws: Sequence[str], sparsities: Sequence[float] = (), points: str = "",
            loc: str = "best"):
    handles = [Line2D([], [], color="k", label=_eq(law), **STYLE[i]) for i, law in
               enumerate(laws)]
    handles += [Line2D([], [], color=c, lw=3, label=f"S = {s:g}")
                for s, c in zip(sparsities, _colors(len(sparsities)))]
    if points:
        handles.append(Line2D([], [], color="gray", marker="o", ls="", mec="k", mew=0.4,
                              label=points))
    ax.legend(handles=handles, fontsize=7, loc=loc)


# ---- curve data (pure) ----------------------------------------------------------------------

def isoflop_curves(law: str, params: Mapping[str, float], compute: float = ISO_COMPUTE,
                   sparsities: Sequence[float] = ISO_SPARSITIES,
                   n: np.ndarray = ISO_N) -> dict[float, np.ndarray]:
    """Loss along the isoFLOP line C = 6·N·D for each sparsity; N = non-zero (active) params."""
    return {float(s): loss_at(law, params, compute, float(s), n) for s in sparsities}


def slope_sign_changes(y: np.ndarray) -> int:
    """How often the curve turns (a U turns once; a spike or bump adds two turns)."""
    sign = np.sign(np.diff(np.asarray(y, dtype=float)))
    sign = sign[sign != 0]
    return int((np.diff(sign) != 0).sum())


@dataclass(frozen=True)
class Curve:
    """One law curve and the runs it belongs to (``runs`` may be empty)."""

    sparsity: float
    compute: np.ndarray
    loss: dict[str, np.ndarray]  # law -> loss along ``compute``
    runs: pd.DataFrame


def token_curves(src: Source, laws: Sequence[str], data: str = "frantar_t5",
                 points: int = 120) -> dict[float, list[Curve]]:
    """Per token count D: for each sparsity, each law along N at fixed D (compute = 6·N·D).

    The grid reaches 0.3 decade either side of the runs' non-zero sizes and contains every
    run's own N, so each curve passes through the law's prediction at each measured run.
    """
    f = load(data).frame
    out: dict[float, list[Curve]] = {}
    for d, part in f.groupby("tokens"):
        lo, hi = np.log10(part.n_active.min()) - 0.3, np.log10(part.n_active.max()) + 0.3
        curves = []
        for s, g in part.groupby("sparsity"):
            n = np.unique(np.concatenate([np.logspace(lo, hi, points),
                                          g.n_active.to_numpy(float)]))
            runs = Runs(n / (1.0 - s), n, np.full_like(n, d), np.full_like(n, s))
            curves.append(Curve(float(s), 6.0 * n * d,
                                {law: predict(law, src.params(law), runs) for law in laws},
                                g.sort_values("n_active")))
        out[float(d)] = curves
    return out


@lru_cache(maxsize=None)
def _abnar_path(sparsity: float, c_lo: float, c_hi: float, points: int) -> pd.DataFrame:
    """(N_total, N_active, D) of published Eq 5's compute optimum: where abnar_reconstructed
    placed its runs (tuner/data/shipped/build.py), on a dense compute grid."""
    from tuner.laws.spaces import published
    p5 = published("abnar")
    rows = [optimal("abnar", p5, float(c), sparsity).as_dict()
            for c in np.logspace(np.log10(c_lo), np.log10(c_hi), points)]
    return pd.DataFrame(rows)


def abnar_path_curves(src: Source, laws: Sequence[str], points: int = 40) -> list[Curve]:
    """Per sparsity: each law along the path the 35 reconstructed Abnar runs lie on."""
    f = load("abnar_reconstructed").frame.copy()
    f["compute"] = 6.0 * f.n_active * f.tokens
    curves = []
    for s, g in f.groupby("sparsity"):
        path = _abnar_path(float(s), float(g.compute.min()), float(g.compute.max()), points)
        runs = _runs(path.assign(sparsity=float(s)))
        curves.append(Curve(float(s), path.compute.to_numpy(float),
                            {law: predict(law, src.params(law), runs) for law in laws},
                            g.sort_values("compute")))
    return curves


# ---- drawers --------------------------------------------------------------------------------

def _isoflop(axes, src: Source, law: str) -> None:
    (ax,) = axes
    curves = isoflop_curves(law, src.params(law))
    for (s, y), c in zip(curves.items(), _colors(len(curves))):
        ax.plot(ISO_N, y, color=c)
    ax.set_xscale("log")
    ax.set_xlabel("non-zero (active) parameters N (D = C/(6N) tokens)")
    ax.set_ylabel(LOSS)
    _legend(ax, [law], ISO_SPARSITIES, loc="upper center")
    ax.set_ylim(top=min(ax.get_ylim()[1], 6.0))


def _dense_models(axes, src: Source, laws: Sequence[str], x: str = "n_active") -> None:
    (ax,) = axes
    f = load("hoffmann_table3").frame
    runs = _runs(f)
    xs = 6.0 * runs.n_active * runs.tokens if x == "compute" else runs.n_active
    for i, law in enumerate(laws):
        ax.plot(xs, predict(law, src.params(law), runs), marker="os"[i],
                color=f"C{i}", label=_eq(law), mfc="none" if i else None, **STYLE[i])
    ax.set_xscale("log")
    ax.set_xlabel("training compute C = 6·N·D (FLOPs; N, D from Hoffmann Table 3)"
                  if x == "compute" else
                  "parameters N (Hoffmann Table 3 models; D from the table)")
    ax.set_ylabel(LOSS + ", S = 0")
    ax.legend(fontsize=8)


def _by_tokens(axes, src: Source, laws: Sequence[str]) -> None:
    groups = token_curves(src, laws)
    sparsities = sorted({c.sparsity for cs in groups.values() for c in cs})
    colors = dict(zip(sparsities, _colors(len(sparsities))))
    for ax, (d, curves) in zip(axes, groups.items()):
        for cur in curves:
            color = colors[cur.sparsity]
            for i, law in enumerate(laws):
                ax.plot(cur.compute, cur.loss[law], color=color, **STYLE[i])
            r = cur.runs
            ax.plot(6.0 * r.n_active * r.tokens, r.loss, "o", color=color, ms=5, mec="k",
                    mew=0.5, zorder=3)
        ax.set_xscale("log")
        ax.set_xlabel(COMPUTE)
        ax.set_title(f"D = {d:.3g} tokens; N = non-zero params varies", fontsize=8)
    axes[0].set_ylabel(LOSS)
    _legend(axes[0], laws, sparsities, "measured (T5/C4)")


def _abnar(axes, src: Source, laws: Sequence[str]) -> None:
    (ax,) = axes
    curves = abnar_path_curves(src, laws)
    for cur, color in zip(curves, _colors(len(curves))):
        for i, law in enumerate(laws):
            ax.plot(cur.compute, cur.loss[law], color=color, **STYLE[i])
        ax.plot(cur.runs.compute, cur.runs.loss, "o", color=color, mfc="none", ms=5, mew=1.0)
    ax.set_xscale("log")
    ax.set_xlabel(COMPUTE + "; N at published Eq 5's optimum")
    ax.set_ylabel(LOSS)
    handles = [Line2D([], [], color="k", label=_eq(law), **STYLE[i]) for i, law in
               enumerate(laws)]
    handles += [Line2D([], [], color=c, lw=3, label=f"S = {cur.sparsity:g}")
                for cur, c in zip(curves, _colors(len(curves)))]
    handles.append(Line2D([], [], color="gray", marker="o", mfc="none", ls="",
                          label="the 35 runs: loss from\npublished Eq 5, not measured"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


Drawer = Callable[[Sequence[plt.Axes], Source], None]


@dataclass(frozen=True)
class Figure:
    title: str
    laws: tuple[str, ...]
    draw: Drawer
    panels: int = 1
    caption: str = ""
    width: float = 6.4  # inches per panel


FIGURES: dict[str, Figure] = {
    "fig1": Figure(f"Eq 3 isoFLOP curves at C = {ISO_COMPUTE:.0e} FLOPs by sparsity",
                   ("frantar",), lambda ax, s: _isoflop(ax, s, "frantar"),
                   caption=ISO_CAPTION),
    "fig2": Figure("Eq 2 vs Eq 3 at S = 0 on Hoffmann's 9 models", ("hoffmann", "frantar"),
                   lambda ax, s: _dense_models(ax, s, ("hoffmann", "frantar"))),
    "fig3": Figure("Eq 2 vs Eq 5 at S = 0 on Hoffmann's 9 models", ("hoffmann", "abnar"),
                   lambda ax, s: _dense_models(ax, s, ("hoffmann", "abnar"))),
    "fig4": Figure("Eq 2 vs Eq 7 on Hoffmann's 9 models (S = 0: identical)",
                   ("hoffmann", "generalized"),
                   lambda ax, s: _dense_models(ax, s, ("hoffmann", "generalized"), "compute")),
    "fig5": Figure("Eq 3 vs Eq 7 on Frantar's 48 T5 runs, one panel per token count "
                   "(points: measured)", ("frantar", "generalized"),
                   lambda ax, s: _by_tokens(ax, s, ("frantar", "generalized")), panels=3,
                   width=5.2,
                   caption="Lines: each law along the non-zero size N at the panel's token "
                           "count D and the colour's sparsity; points: the measured runs."),
    "fig6": Figure("Eq 5 vs Eq 7 on Abnar's 35 runs (N, D reconstructed from Eq 5)",
                   ("abnar", "generalized"), lambda ax, s: _abnar(ax, s, ("abnar", "generalized")),
                   width=8.4,
                   caption="Lines: each law along published Eq 5's compute-optimal (N, D) for "
                           "each sparsity,\nwhere tuner/data/shipped/build.py placed the 35 runs; "
                           "circles: those runs."),
    "fig8": Figure(f"Eq 7 isoFLOP curves at C = {ISO_COMPUTE:.0e} FLOPs by sparsity",
                   ("generalized",), lambda ax, s: _isoflop(ax, s, "generalized"),
                   caption=ISO_CAPTION),
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
        spec = FIGURES[name]
        # One panel: sources side by side. Several panels: one row per source.
        rows, cols = (1, len(sources)) if spec.panels == 1 else (len(sources), spec.panels)
        extra = 0.15 + 0.13 * (spec.caption.count("\n") + 1) if spec.caption else 0.0
        fig, grid = plt.subplots(rows, cols, figsize=(spec.width * cols, 4.8 * rows + extra),
                                 squeeze=False, sharey="row" if spec.panels > 1 else False)
        for i, src in enumerate(sources):
            axes = list(grid[i]) if spec.panels > 1 else [grid[0][i]]
            spec.draw(axes, src)
            for ax in axes:
                ax.grid(True, which="both", alpha=0.25)
                if spec.panels > 1:
                    ax.set_title(f"{src.label(spec.laws)}\n{ax.get_title()}", fontsize=8)
                else:
                    ax.set_title(src.label(spec.laws), fontsize=9)
        fig.suptitle(f"{name}: {spec.title}", fontsize=11)
        if spec.caption:
            fig.text(0.01, 0.01, spec.caption, fontsize=7, va="bottom", ha="left")
            fig.tight_layout(rect=(0, extra / (4.8 * rows + extra), 1, 1))
        else:
            fig.tight_layout()
        written += save_figure(fig, out / name)
    return written
