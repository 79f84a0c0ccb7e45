"""Figures and tables from run directories: convergence comparison (Fig. 7 style) and a fit's
report (predicted vs observed, residuals, fitted curves)."""
from __future__ import annotations

import sys
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
from tuner.fitting.objective import PENALTY  # noqa: E402
from tuner.run.rundir import RunDir  # noqa: E402
from tuner.views.tables import write_tables  # noqa: E402
from tuner.views.outputs import save_figure  # noqa: E402

COLORS = {"ytopt": "tab:blue", "grid": "tab:orange", "random": "tab:green",
          "lbfgs": "black"}


@dataclass
class RunTrace:
    """One run's history, read back from its directory."""

    path: Path
    law: str  # its name (a law file's or a formula's text); law_spec is what the run used
    data: str
    optimizer: str
    seed: int
    results: pd.DataFrame
    summary: dict
    law_spec: "str | dict" = ""

    @classmethod
    def read(cls, path: str | Path) -> "RunTrace":
        run = RunDir.open(path)
        fit = run.config()["fit"]
        results = run.results()
        for w in results.attrs.get("warnings", []):  # torn or edited lines: never results
            print(f"tuner: warning: {w}", file=sys.stderr)
        if results.empty:
            raise TunerError(f"{run.path}: no finished evaluations")
        summary = run.summary() if run.summary_path.is_file() else {}
        from tuner.laws import get_law
        spec = fit["law"]
        name = spec if isinstance(spec, str) else get_law(spec).name
        return cls(run.path, name, fit["data"], fit["optimizer"], fit["seed"], results,
                   summary, spec)

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
    return save_figure(fig, out, dpi=130)


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
    prep = prepare(FitConfig(**RunDir.open(run_dir).config()["fit"]), optimizer=False)
    obj = prep.objective
    params = trace.summary["best_params"]
    frame = obj.dataset.frame
    if obj.obs is None:
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
    from tuner.laws import Runs, get_law, predict
    sparsities = np.unique(np.round(s, 3))[:6]
    tokens = np.unique(frame["tokens"].round(-6))
    tokens = tokens[np.linspace(0, len(tokens) - 1, min(3, len(tokens))).astype(int)]
    n_grid = np.logspace(np.log10(frame["n_active"].min() / 2),
                         np.log10(frame["n_active"].max() * 2), 200)
    cmap = plt.get_cmap("viridis")
    styles = ["-", "--", ":"]
    law = get_law(trace.law_spec or trace.law)
    for si in sparsities:
        for ti, d in enumerate(tokens):
            runs = Runs(n_grid / (1 - si), n_grid, np.full_like(n_grid, d), np.full_like(n_grid, si))
            a3.plot(n_grid, predict(law, params, runs), color=cmap(si), ls=styles[ti],
                    lw=1.2, label=f"S={si:g}, D={d:.2g}")
    a3.scatter(frame["n_active"], obs, c=s, cmap="viridis", vmin=0, vmax=1, s=10,
               edgecolors="k", linewidths=0.3)
    a3.set(xscale="log", xlabel="active parameters N", ylabel="loss (nats/token)",
           title=f"fitted {trace.law} over N (lines: token counts)")
    a3.legend(fontsize=6, ncol=2)
    fig.suptitle(f"{trace.law} on {panel_key(trace)[1]} ({trace.optimizer}, "
                 f"{len(trace.results)} evaluations, best objective {trace.best:.4g})")
    fig.tight_layout()
    return save_figure(fig, out or trace.path / "report")


# ----------------------------------------------------------------------------------------
# A fit report a reviewer can check: Markdown and a self-contained HTML page.

CHECKLIST = [  # Li et al. 2025, "(Mis)Fitting: A Survey of Scaling Laws", reporting checklist
    ("functional form of the law, with its equation", "Law"),
    ("what N, D (and S, C) count, and how compute is computed", "What the variables mean"),
    ("the training runs: number, ranges, source, which loss, any runs dropped", "Data"),
    ("the fitting objective: residual, loss function and its parameters, reduction",
     "Objective"),
    ("the optimizer, its initialization, search space and budget", "Optimizer"),
    ("the fitted coefficients with their uncertainty", "Coefficients"),
    ("diagnostics: identifiability, coefficients on bounds", "Warnings"),
    ("validation: error when extrapolating to held-out larger runs", "Held-out error"),
    ("plots of the fit against the data", "Figures"),
    ("code, versions and the data file's hash, so the fit can be rerun", "Reproduce"),
]


def _sha256(path: str | Path) -> str:
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.5g}"
    return "" if v is None else str(v)


def _blocks_md(blocks) -> str:
    out = []
    for kind, body in blocks:
        if kind == "h1":
            out.append(f"# {body}\n")
        elif kind == "h2":
            out.append(f"## {body}\n")
        elif kind == "p":
            out.append(body + "\n")
        elif kind == "ul":
            out.append("\n".join(f"- {x}" for x in body) + "\n")
        elif kind == "table":
            if not body:
                out.append("(none)\n")
                continue
            cols = list(dict.fromkeys(k for r in body for k in r))
            out.append("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
                       + "\n".join("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |"
                                   for r in body) + "\n")
        elif kind == "img":
            out.append(f"![{body.stem}]({body.name})\n")
        elif kind == "pre":
            out.append(f"```\n{body}\n```\n")
    return "\n".join(out)


def _blocks_html(blocks, title: str) -> str:
    import base64
    import html
    e = html.escape
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
           "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;"
           "line-height:1.4}table{border-collapse:collapse;font-size:90%}td,th{border:1px "
           "solid #ccc;padding:2px 6px;text-align:left;max-width:420px;overflow-wrap:anywhere}th{background:#eee}img{max-width:100%}"
           "li.warn{color:#a00}pre{background:#f6f6f6;padding:.5em;overflow-x:auto}</style>"
           "</head><body>"]
    for kind, body in blocks:
        if kind in ("h1", "h2", "p"):
            out.append(f"<{kind}>{e(body)}</{kind}>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in body) + "</ul>")
        elif kind == "table":
            if not body:
                out.append("<p>(none)</p>")
                continue
            cols = list(dict.fromkeys(k for r in body for k in r))
            out.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{e(_fmt(r.get(c)))}</td>" for c in cols)
                                 + "</tr>" for r in body) + "</table>")
        elif kind == "img":
            data = base64.b64encode(Path(body).read_bytes()).decode()
            out.append(f"<p><img alt='{e(body.stem)}' src='data:image/png;base64,{data}'></p>")
        elif kind == "pre":
            out.append(f"<pre>{e(body)}</pre>")
    out.append("</body></html>")
    return "\n".join(out)


def fit_report(run_dir: str | Path, out: Path | None = None, *, heldout_share: float = 0.75
               ) -> dict[str, Path]:
    """Write ``report.md`` and ``report.html`` (figures inline, base64 PNG) for a run.

    Sections follow the reporting checklist of Li et al. 2025; the held-out error refits the
    law (tuner's default method, 200 evaluations) on the ``heldout_share`` of runs with the
    smallest compute and predicts the largest-compute rest."""
    from tuner.laws import get_law
    from tuner.analysis.rank import low_compute_mask
    from tuner.analysis.validate import holdout
    from tuner.data.datasets import catalog
    from tuner.fitting.uncertainty import correlation_table, standard_errors
    from tuner.run.fit import FitConfig, prepare
    trace = RunTrace.read(run_dir)
    if not trace.summary or "best_params" not in trace.summary:
        raise TunerError(f"{trace.path}: no summary.json yet ('tuner resume' finishes it)")
    s = trace.summary
    cfg = RunDir.open(run_dir).config()
    config = FitConfig(**cfg["fit"])
    prep = prepare(config, optimizer=False)
    obj, space, ds = prep.objective, prep.space, prep.objective.dataset
    out = Path(out) if out else trace.path / "report"
    out.parent.mkdir(parents=True, exist_ok=True)
    figs = [p for p in report(run_dir, out) if p.suffix == ".png"]
    conv = out.with_name(out.name + "_convergence")
    convergence_figure([trace], conv, published={panel_key(trace): s.get("published_objective")}
                       if s.get("published_objective") is not None else None,
                       titles={panel_key(trace): f"{trace.law} on {panel_key(trace)[1]}: "
                                                 f"every evaluation ({trace.optimizer})"})
    figs.append(conv.with_suffix(".png"))
    law = trace.law
    params = s["best_params"]
    unc = s.get("uncertainty") or standard_errors(obj, space, params)
    f = ds.frame
    ranges = ds.ranges()
    definition = get_law(config.law)
    entry = catalog().get(config.data, {})
    b: list = [("h1", f"Fit report: {law} on {ds.name}")]
    b.append(("p", f"Run directory {trace.path}; tuner {cfg.get('tuner_version', '?')}."))
    named = ", ".join(x for x in (definition.name if definition.name != definition.formula
                                  else "", definition.equation) if x)
    b += [("h2", "Law"), ("p", f"L = {definition.formula}" + (f"   ({named})" if named else "")),
          ("p", f"Published coefficients: {definition.source or 'none (a user law)'}.")]
    b += [("h2", "What the variables mean"),
          ("ul", [f"N: {definition.n_meaning}",
                  "D: training tokens (column tokens)",
                  "S: sparsity in [0, 1), S = 1 - N_active / N_total (column sparsity); "
                  f"these data: S {ranges['sparsity'][0]:.3g}–{ranges['sparsity'][1]:.3g}",
                  "C: training compute C = 6 N_active D FLOPs (active parameters only)",
                  f"L: the runs' final pre-training loss as recorded in the data "
                  f"(losses are {ds.loss_kind})"])]
    b += [("h2", "Data"),
          ("table", [{"dataset": ds.name, "file": ds.path, "sha256": _sha256(ds.path),
                      "rows used": len(ds), "rows dropped (outlier flag)": ds.dropped,
                      "losses": ds.loss_kind, "source": entry.get("source", "user file"),
                      "license": entry.get("license", "unknown")}]),
          ("table", [{"column": k, "min": lo, "max": hi} for k, (lo, hi) in ranges.items()]
           + [{"column": "loss", "min": float(f.loss.min()), "max": float(f.loss.max())}])]
    spec = obj.spec
    r = "L_pred - L_obs" if spec.residual == "linear" else "log L_pred - log L_obs"
    resid = (f"sum over runs of Huber_delta({r})" if spec.kind == "huber"
             else f"mean of ({r})^2" if spec.kind == "mse"
             else "mean predicted loss (needs no observed loss; degenerate)")
    b += [("h2", "Objective"),
          ("ul", [f"kind: {spec.kind}: {resid}",
                  f"residual: {r}" + ("" if spec.residual == "linear" else " (natural log)"),
                  f"Huber delta: {spec.delta:g}" if spec.kind == "huber" else
                  "Huber delta: not used",
                  f"reduction: {'sum' if spec.kind == 'huber' else 'mean'}",
                  f"outliers: {'rows flagged outlier dropped' if spec.drop_outliers else 'kept'}",
                  "invalid predictions (NaN, overflow, <= 0) score a penalty"])]
    space_rows = [{"coefficient": d.name, "lower": d.lower, "upper": d.upper,
                   "scale": "log" if d.log else "linear", "start (default)": d.default}
                  for d in space.dims]
    space_rows += [{"coefficient": n, "lower": v, "upper": v, "scale": "fixed",
                    "start (default)": v} for n, v in space.fixed.items()]
    pub = s.get("published_params") or {}
    b += [("h2", "Optimizer"),
          ("ul", [f"method: {config.optimizer}"
                  + (" (" + ", ".join(f"{k} {'default' if v is None else v}"
                                      for k, v in config.options().items()) + ")"
                     if config.optimizer == "ytopt" else ""),
                  "start: the space's default configuration ("
                  + ("the published coefficients" if pub else "no published values: the "
                     "space's start values") + "; coefficients the law is linear in solved)",
                  f"budget: {config.evals} evaluations ({s['evals']} done, {s['failed']} "
                  f"failed), seed {config.seed}, {config.workers} worker(s) ({config.comms}), "
                  f"{s['wall_seconds']:.1f} s",
                  f"space: {space.source}"]),
          ("table", space_rows)]
    intervals = s.get("intervals") or {}
    flags = s.get("interval_flags") or {}
    coef_rows = []
    for n in space.all_names:
        row = {"coefficient": n, "fitted": params[n], "published": pub.get(n),
               "std. error": unc["stderr"].get(n), "rel. error": unc["rel_stderr"].get(n),
               "status": unc["status"].get(n, "fixed")}
        if n in intervals:
            row["95% bootstrap interval"] = f"[{intervals[n][0]:.5g}, {intervals[n][1]:.5g}]"
            row["interval flags"] = "; ".join(flags.get(n, []))
        coef_rows.append(row)
    boot = s.get("bootstrap")
    b += [("h2", "Coefficients"),
          ("p", f"Best objective {s['best_objective']:.6g} (rmse of log residuals "
                f"{s['rmse_log']:.4g}); "
                + (f"published coefficients score {_fmt(s.get('published_objective'))}. "
                   if s.get("published_objective") is not None
                   else "the law has no published coefficients. ")
                + f"Standard errors: {unc['method']} "
                "(local, linearised; the bootstrap is the reference). "
                + (f"Bootstrap: K = {boot['K']} resamples, seed {boot['seed']}, "
                   f"{boot['method']} intervals, refit by {boot['refit']}."
                   if boot else "No bootstrap was run (tuner fit --bootstrap K).")),
          ("table", coef_rows), ("p", "Correlation of the coefficients (from the curvature):"),
          ("table", correlation_table(unc))]
    warnings = list(s.get("warnings", [])) + list(unc.get("notes", []))
    if boot and boot["K"] < 100 and not any("K = " in w for w in warnings):
        warnings.append(f"bootstrap used K = {boot['K']} < 100 resamples: intervals unstable")
    b += [("h2", "Warnings"), ("ul", warnings or ["none"])]
    mask = low_compute_mask(ds, heldout_share)
    held = holdout(spec, space, mask, optimizer="ytopt", evals=200, seed=config.seed,
                   dataset=ds)
    c_train = (6 * f.n_active * f.tokens)[mask].max()
    b += [("h2", "Held-out error"),
          ("p", f"Refit on the {int(mask.sum())} runs with the smallest compute (C <= "
                f"{c_train:.3g}), predicting the {held['test_runs']} largest-compute runs: "
                f"median |relative error| {held['median_abs_rel_error']:.4g}, max "
                f"{held['max_abs_rel_error']:.4g}."),
          ("ul", [f"held-out fit: {w}" for w in held.get("warnings", [])] or
           ["held-out fit: no warnings"]),
          ("table", [{k: r[k] for k in ("n_active", "tokens", "sparsity", "observed",
                                         "predicted", "rel_error")}
                     for r in sorted(held["rows"], key=lambda r: -r["n_active"] * r["tokens"])
                     [:10]])]
    b += [("h2", "Figures")] + [("img", p) for p in figs]
    b += [("h2", "Reproduce"),
          ("pre", f"tuner fit --law {law} --data {config.data} --optimizer {config.optimizer} "
                  f"--evals {config.evals} --seed {config.seed} --objective {spec.kind} "
                  f"--delta {spec.delta:g}" + (" --bootstrap %d" % config.bootstrap
                                               if config.bootstrap else "")),
          ("table", [{"package": k, "version": v} for k, v in s.get("versions", {}).items()])]
    b += [("h2", "Checklist (Li et al. 2025, (Mis)Fitting: A Survey of Scaling Laws)"),
          ("table", [{"item": item, "where": section} for item, section in CHECKLIST])]
    md, html_path = out.with_suffix(".md"), out.with_suffix(".html")
    md.write_text(_blocks_md(b))
    html_path.write_text(_blocks_html(b, f"{law} on {ds.name}"))
    return {"markdown": md, "html": html_path, "figures": figs}
