"""The main job: reproduce the paper's Fig. 7 on measured losses, with the comparison users
need (ytopt vs grid vs random at the same budget, the published coefficients, and an L-BFGS
reference), plus a recovery check of Table V on the reconstructed Abnar set."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from tuner.run.fit import FitConfig, fit
from tuner.laws import get_law
from tuner.views.reports import RunTrace, convergence_figure, panel_key
from tuner.laws.spaces import published
from tuner.views.tables import write_tables

PANELS = [  # (law, dataset): measured losses only, never pooled across corpora
    ("hoffmann", "chinchilla_epoch"),
    ("frantar", "frantar_t5"),
    ("abnar", "clark_routing"),
    ("generalized", "frantar_t5"),
]
RECOVERY = ("abnar", "abnar_reconstructed")
SEARCHERS = ("ytopt", "grid", "random")
REFERENCE_EVALS = 2000


def _fit(law, data, optimizer, evals, seed, workers, out: Path, quiet: bool) -> RunTrace:
    run_dir = out / "runs" / f"{law}-{data}" / f"{optimizer}-s{seed}"
    if not (run_dir / "summary.json").exists():
        if run_dir.exists():  # an interrupted earlier attempt: finish it, re-run nothing
            from tuner.run.fit import resume
            resume(run_dir, quiet=True)
        else:
            # The paper's spaces: Fig. 7 shows what the paper searched.
            fit(FitConfig(law, data, optimizer=optimizer, evals=evals, seed=seed,
                          workers=workers, space="paper"), run_dir, quiet=True)
    trace = RunTrace.read(run_dir)
    if not quiet:
        print(f"  {law:<12} {data:<20} {optimizer:<6} seed {seed}: best {trace.best:.6g} "
              f"({len(trace.results)} evals, {trace.summary['wall_seconds']:.1f}s)",
              file=sys.stderr, flush=True)
    return trace


def _spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{np.median(values):.4g} [{min(values):.4g}–{max(values):.4g}]"


def fig7(out: Path, *, evals: int = 200, workers: int = 1, seeds: int = 1, x: str = "eval",
         quiet: bool = False) -> dict:
    """Run every panel, draw fig7.png/.svg, write fig7.md/.csv and fig7_coefficients.md/.csv.
    Finished runs in ``out`` are reused, so an interrupted reproduction resumes."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    traces, pub_obj, ref_obj, rows, coef_rows, titles = [], {}, {}, [], [], {}
    for law, data in PANELS + [RECOVERY]:
        if not quiet:
            print(f"{law} on {data}:", file=sys.stderr, flush=True)
        panel = {opt: [_fit(law, data, opt, evals, s, workers, out, quiet)
                       for s in range(seeds)] for opt in SEARCHERS}
        ref = _fit(law, data, "lbfgs", max(REFERENCE_EVALS, evals), 0, workers, out, quiet)
        key = panel_key(ref)
        pub = ref.summary["published_objective"]
        recovery = (law, data) == RECOVERY
        if not recovery:
            traces += [t for runs in panel.values() for t in runs]
            pub_obj[key], ref_obj[key] = pub, ref.best
            titles[key] = f"{get_law(law).equation} ({law}) on {data} ({_n_runs(data)} runs)"
        best = {opt: [t.best for t in runs] for opt, runs in panel.items()}
        grid_final = float(np.median(best["grid"]))
        to_beat = [t.evals_to_reach(grid_final) for t in panel["ytopt"]]
        row = {"law": law, "data": data, "check": "recovery of Table V" if recovery else "fit",
               "runs": _n_runs(data), "published": pub,
               "grid": _spread(best["grid"]), "random": _spread(best["random"]),
               "ytopt": _spread(best["ytopt"]), "lbfgs_reference": ref.best,
               "ytopt_evals_to_beat_grid": _spread([v for v in to_beat if v] or [float("nan")]),
               "ytopt_vs_published": float(np.median(best["ytopt"])) / pub if pub else None}
        if recovery:  # how close each method comes to the coefficients that made the data
            truth = published(law)
            for opt, runs in [*panel.items(), ("lbfgs", [ref])]:
                best_run = min(runs, key=lambda t: t.best).summary["best_params"]
                row[f"{opt}_max_rel_coef_error"] = max(
                    abs(best_run[k] / v - 1) for k, v in truth.items() if v)
        for opt, runs in panel.items():
            row[f"{opt}_seconds"] = float(np.median([t.summary["wall_seconds"] for t in runs]))
        row["lbfgs_seconds"] = ref.summary["wall_seconds"]
        rows.append(row)
        ytopt_best = min(panel["ytopt"], key=lambda t: t.best).summary["best_params"]
        for name, value in published(law).items():
            coef_rows.append({"law": law, "data": data, "coefficient": name,
                              "published": value, "ytopt_best": ytopt_best[name],
                              "lbfgs_reference": ref.summary["best_params"][name],
                              "ytopt_rel_to_published": ytopt_best[name] / value - 1
                              if value else None})
    figure = convergence_figure(traces, out / "fig7", x=x, published=pub_obj,
                                reference=ref_obj, titles=titles)
    write_tables(rows, out / "fig7")
    write_tables(coef_rows, out / "fig7_coefficients")
    if not quiet:
        print(f"wrote {', '.join(str(p) for p in figure)}, {out / 'fig7.md'}, "
              f"{out / 'fig7_coefficients.md'} in {time.time() - t0:.0f}s", file=sys.stderr)
    return {"rows": rows, "coefficients": coef_rows, "figure": [str(p) for p in figure]}


def _n_runs(data: str) -> int:
    from tuner.data.datasets import load
    return len(load(data))
