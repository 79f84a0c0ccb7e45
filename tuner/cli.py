"""Command line: a thin layer over tuner.api. Bad input ends in one line and exit code 2.

Every command that prints a result takes ``--json``; ``--out DIR`` is always a directory
(default ``runs/<command>/``); long commands show progress on stderr unless ``--quiet``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from tuner import __version__
from tuner.errors import TunerError

# The closed sets, as argparse choices. Written out here, because importing the registries
# (skopt, libEnsemble) would cost a second on every start; tests/test_cli_json.py checks
# that they match tuner.fitting.optimizers, tuner.fitting.objective and tuner.run.ensemble.
OPTIMIZERS = ("ytopt", "grid", "random", "lbfgs")
OBJECTIVES = ("huber", "mse", "paper")
SURROGATES = ("RF", "ET", "GBRT", "GP")
LIARS = ("cl_max", "cl_min", "cl_mean")
COMMS = ("local", "threads", "mpi")


def _fmt_params(params: dict) -> str:
    return ", ".join(f"{k}={v:.6g}" for k, v in params.items())


def _print_json(value: Any) -> None:
    from tuner.api import to_json
    print(to_json(value))


def _add_json(p: argparse.ArgumentParser, what: str = "the result") -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout")


def _add_out(p: argparse.ArgumentParser, command: str, what: str) -> None:
    p.add_argument("--out", default=f"runs/{command}", metavar="DIR",
                   help=f"output directory for {what} (default runs/{command}; created if "
                        "missing)")


def _add_fit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--optimizer", default="ytopt", choices=OPTIMIZERS,
                   help="ytopt (Bayesian, default), grid, random, or lbfgs (multi-start "
                        "L-BFGS-B, the classical reference)")
    p.add_argument("--evals", type=int, default=200,
                   help="evaluation budget: coefficient sets scored (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--objective", default="huber", choices=OBJECTIVES,
                   help="huber (sum of Huber on log residuals, default), mse (mean squared log "
                        "residual) or paper (mean predicted loss: the literal Fig. 7 objective)")
    p.add_argument("--delta", type=float, default=1e-3, help="Huber delta (default 1e-3)")
    p.add_argument("--keep-outliers", action="store_true",
                   help="keep rows flagged outlier (dropped by default, as Epoch AI did)")
    p.add_argument("--surrogate", default=None, type=str.upper, choices=SURROGATES,
                   help="ytopt surrogate: RF (default), ET, GBRT or GP")
    p.add_argument("--liar", default=None, choices=LIARS,
                   help="constant-liar strategy for parallel asks: cl_max (default), cl_min, "
                        "cl_mean")
    p.add_argument("--initial-points", type=int, default=None,
                   help="ytopt random initial points, the first being the published default "
                        "(default 10)")
    p.add_argument("--polish", type=float, default=None, metavar="FRACTION",
                   help="ytopt: share of the budget left to the polish, Levenberg-Marquardt "
                        "on the objective's gradient and Gauss-Newton curvature (L-BFGS-B for "
                        "custom objectives) from the best initial point and, after the "
                        "Bayesian steps, from their 5 best distinct points; every step one "
                        "counted evaluation; the run stops once they converge (default: what "
                        "20 + 10 per searched dimension Bayesian steps leave, at least half; "
                        "0 = none: Bayesian steps to the budget)")
    p.add_argument("--no-profile", dest="profile", action="store_const", const=False,
                   default=None,
                   help="ytopt: search every coefficient; by default the coefficients a law "
                        "is linear in (e, a, b, c...) are solved exactly at each point and the "
                        "Bayesian search runs over the exponents only")
    p.add_argument("--faithful", action="store_const", const=True, default=None,
                   help="ytopt exactly as published: RF of 100 trees, 10,000 candidates, raw "
                        "objective values, no profile, no polish (slow and inexact; for "
                        "comparison)")
    p.add_argument("--space", help="where to search: by default a space that follows the "
                                   "data (irreducible loss in [0, smallest loss], exponents in "
                                   "[0, 3] widened if a fit presses against 3, linear "
                                   "coefficients solved); 'paper' for the paper's space of a "
                                   "built-in law; or a ConfigSpace JSON file")
    p.add_argument("--fix", default="", metavar="K=V,...",
                   help="coefficients held fixed, e.g. 'alpha=0.34,beta=0.28'")
    p.add_argument("--bootstrap", type=int, default=0, metavar="K",
                   help="after the fit, refit K resamples of the runs (with replacement, "
                        "seeded by --seed; L-BFGS warm-started from the best, parallel over "
                        "--workers) for 95%% percentile intervals (default 0: none)")
    _add_parallel_options(p)
    p.add_argument("--run-dir", help="the new run directory (default runs/fit/<law>-<data>-"
                                     "<optimizer>-<time>); must not exist")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_json(p, "the summary (summary.json)")


LAW_HELP = ("a built-in law (see 'tuner laws'), a formula such as 'e + a/N**alpha + b/D**beta' "
            "(variables N = active parameters, N_total, D = tokens, S = sparsity; every other "
            "name is a coefficient; + - * / **, exp, log, sqrt, min, max), or a law file .json "
            "with 'formula' and optional 'name', 'defaults', 'bounds'")


def _add_data_options(p: argparse.ArgumentParser, *, group: bool = True) -> None:
    p.add_argument("--columns", metavar="NAME=COLUMN,...",
                   help="map tuner's names (n_active, n_total, tokens, sparsity, loss) to the "
                        "CSV's columns, e.g. 'n_active=params,tokens=toks,loss=loss_a'; only "
                        "n_active, tokens and loss are needed (no n_total: dense runs)")
    p.add_argument("--residual", choices=["log", "linear"], default="log",
                   help="residual of the objective: log L_pred - log L_obs (default, Hoffmann "
                        "et al.) or L_pred - L_obs (as Frantar et al. fit vision runs)")
    if group:
        p.add_argument("--group", metavar="COLUMN",
                       help="fit one law jointly over the groups of runs in COLUMN (e.g. a "
                            "training corpus): exponents shared, the law's linear "
                            "coefficients per group")
        p.add_argument("--per-group", metavar="C,...",
                       help="with --group: the coefficients fitted per group (default: the "
                            "ones the law is linear in)")


def _add_workers_comms(p: argparse.ArgumentParser, what: str = "evaluating") -> None:
    p.add_argument("--workers", type=int, default=1,
                   help=f"libEnsemble workers {what} in parallel (default 1: this process, "
                        "without an ensemble; with --comms mpi it is the number of MPI ranks "
                        "minus one)")
    p.add_argument("--comms", default="local", choices=COMMS,
                   help="local (processes, default), threads, or mpi (under mpirun -np N+1)")


def _add_batch_options(p: argparse.ArgumentParser, workers_what: str, out_name: str,
                       files: str, json_what: str) -> None:
    """The options of a command that runs a batch of fits and writes one table."""
    _add_workers_comms(p, workers_what)
    _add_out(p, out_name, files)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_json(p, json_what)
    _force_option(p)


def _add_parallel_options(p: argparse.ArgumentParser) -> None:
    _add_workers_comms(p)
    p.add_argument("--eval-delay", type=float, default=0.0, metavar="SECONDS",
                   help="sleep added to each evaluation, to emulate costly evaluations")


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error format: one line, exit code 2 (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"tuner: error: {self.prog.removeprefix('tuner ')}: {message}\n"
                  if self.prog != "tuner" else f"tuner: error: {message}\n")


def _force_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true",
                   help="overwrite output files that tuner did not write there earlier")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tuner", description="Fit dense and sparse LLM scaling laws to training runs by "
        "Bayesian optimization (ytopt method) on libEnsemble, and compare with grid search, "
        "random search and L-BFGS.")
    parser.add_argument("--version", action="version", version=f"tuner {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fit", help="fit a law's coefficients to a dataset")
    p.add_argument("--law", required=True, help=LAW_HELP)
    p.add_argument("--data", required=True, help="shipped dataset name (see 'tuner datasets') "
                                                 "or a CSV path")
    _add_data_options(p)
    _add_fit_options(p)

    p = sub.add_parser("resume", help="continue a killed or extended run to its budget")
    p.add_argument("run_dir", help="the run directory to continue")
    p.add_argument("--evals", type=int, help="new total budget (default: the run's own)")
    p.add_argument("--workers", type=int, help="workers (default: the run's own)")
    p.add_argument("--comms", choices=COMMS, help="local, threads or mpi (default: the run's "
                                                  "own)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_json(p, "the summary (summary.json)")

    p = sub.add_parser("score", help="objective and RMSE of log residuals of one coefficient set")
    p.add_argument("--law", required=True, help=LAW_HELP)
    p.add_argument("--data", required=True, help="dataset name or CSV path")
    _add_data_options(p, group=False)
    p.add_argument("--coefficients", default="published",
                   help="'published' (default), a run directory (its best), or 'k=v,...' "
                        "(unnamed ones published)")
    p.add_argument("--objective", default="huber", choices=OBJECTIVES,
                   help="huber (default), mse or paper")
    p.add_argument("--delta", type=float, default=1e-3, help="Huber delta (default 1e-3)")
    p.add_argument("--keep-outliers", action="store_true", help="keep rows flagged outlier")
    _add_json(p)

    p = sub.add_parser("datasets", help="list shipped datasets: rows, ranges, loss provenance")
    _add_json(p, "one object per dataset")

    p = sub.add_parser("laws", help="list the laws, their coefficients and published values")
    _add_json(p, "one object per law")
    _add_planning_parsers(sub)
    _add_validation_parsers(sub)
    _add_sweep_parser(sub)

    p = sub.add_parser("reproduce", help="reproduce a figure of the paper (fig7: the main job)")
    p.add_argument("figure", choices=["fig7"], help="which figure")
    p.add_argument("--out", default="runs/reproduce", metavar="DIR",
                   help="output directory (default runs/reproduce; created if missing); "
                        "finished runs in it are reused")
    p.add_argument("--evals", type=int, default=200,
                   help="budget per search (ytopt, grid, random alike; default 200)")
    _add_workers_comms(p, "fitting (one task per fit; each fit runs the same evaluations "
                          "whatever the worker count)")
    p.add_argument("--seeds", type=int, default=3,
                   help="seeds per search; the table shows median [min-max] (default 3)")
    p.add_argument("--no-faithful", dest="faithful", action="store_false",
                   help="skip ytopt as published (--faithful), the slowest method")
    p.add_argument("--faithful-seeds", type=int, default=1,
                   help="seeds of ytopt as published (default 1: ~0.3 s per step)")
    p.add_argument("--faithful-evals", type=int, default=100,
                   help="budget of ytopt as published (default 100; the figure says so)")
    p.add_argument("--x", choices=["eval", "time"], default="eval",
                   help="x axis: evaluation number (default) or elapsed time")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_json(p, "the tables' rows and the figure paths")
    _force_option(p)

    p = sub.add_parser("compare", help="convergence plot and table for any runs")
    p.add_argument("run_dirs", nargs="+", help="run directories")
    _add_out(p, "compare", "compare.png, .svg, .md and .csv")
    p.add_argument("--x", choices=["eval", "time"], default="eval", help="x axis")
    _add_json(p, "the table's rows and the figure paths")
    _force_option(p)

    p = sub.add_parser("report", help="a fit report a reviewer can check: Markdown and HTML "
                                      "(figures inline), following Li et al. 2025's checklist")
    p.add_argument("run_dir", help="a finished run directory")
    _add_out(p, "report", "<run name>/report.md, report.html and the figures")
    _add_json(p, "the paths written")
    _force_option(p)
    _add_isoflop_parser(sub)
    return parser


def cmd_fit(args) -> int:
    from tuner.api import fit
    from tuner.data.datasets import parse_columns
    from tuner.laws.spaces import parse_assignments
    result = fit(args.law, args.data, run_dir=args.run_dir, quiet=args.quiet,
                 optimizer=args.optimizer, evals=args.evals,
                 seed=args.seed, objective=args.objective, delta=args.delta,
                 drop_outliers=not args.keep_outliers, residual=args.residual,
                 columns=parse_columns(args.columns), group=args.group,
                 per_group=_names(args.per_group, "--per-group"), surrogate=args.surrogate,
                 liar=args.liar, n_initial_points=args.initial_points, polish=args.polish,
                 profile=args.profile, faithful=args.faithful,
                 workers=args.workers, comms=args.comms, eval_delay=args.eval_delay,
                 space=args.space, fix=parse_assignments(args.fix, "--fix"),
                 bootstrap=args.bootstrap)
    if result is not None:
        _print_summary(result.summary, args.json)
    return 0


def _names(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise TunerError(f"{what}: give coefficient names, e.g. 'e,a'")
    return names


def _slug(text: str) -> str:
    """A file-name-safe form of a law's name (a formula has '/' and '*')."""
    import re
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text))[:40]


def cmd_resume(args) -> int:
    from tuner.api import resume
    result = resume(args.run_dir, args.evals, workers=args.workers, comms=args.comms,
                    quiet=args.quiet)
    if result is not None:
        _print_summary(result.summary, args.json)
    return 0


def _print_summary(s: dict, as_json: bool) -> None:
    if as_json:
        _print_json(s)
        return
    print(f"run: {s.get('run_dir', '')}".rstrip())
    sessions = len(s.get("segments") or [])
    print(f"{s['law']} on {s['data']} with {s['optimizer']}: {s['evals']} evaluations "
          f"({s['failed']} failed) in {s['wall_seconds']:.1f}s"
          + (f" over {sessions} sessions" if sessions > 1 else ""))
    if s.get("stopped"):
        print(f"stopped: {s['stopped']}")
    if "best_objective" in s:
        print(f"best objective {s['best_objective']:.6g} (rmse_log {s['rmse_log']:.4g})")
        print(f"best: {_fmt_params(s['best_params'])}")
        if s.get("published_objective") is not None:
            print(f"published objective {s['published_objective']:.6g}: "
                  f"{_fmt_params(s['published_params'])}")
    for group, params in (s.get("group_params") or {}).items():
        print(f"  group {group}: {_fmt_params(params)}")
    if s.get("space_widened"):
        w = s["space_widened"][-1]
        print(f"space widened: {', '.join(sorted({x['name'] for x in s['space_widened']}))} "
              f"(last: {w['name']} {w['bound']} bound {w['old']:g} -> {w['new']:g})")
    if s.get("uncertainty"):
        from tuner.fitting.uncertainty import describe
        print("standard errors (local, from the curvature; the bootstrap is the reference):")
        for line in describe(s["uncertainty"]):
            print(f"  {line}")
    if s.get("intervals"):
        b = s["bootstrap"]
        print(f"bootstrap {b['level']:.0%} intervals (K={b['K']}, seed={b['seed']}, "
              f"{b['parallel']}):")
        flags = s.get("interval_flags", {})
        for name, (lo, hi) in s["intervals"].items():
            flag = f"  ({'; '.join(flags[name])})" if name in flags else ""
            print(f"  {name}: [{lo:.6g}, {hi:.6g}]{flag}")
    for w in s.get("warnings", []):
        print(f"warning: {w}")


def cmd_score(args) -> int:
    from tuner.api import score
    from tuner.data.datasets import parse_columns
    s = score(args.law, args.data, args.coefficients, objective=args.objective,
              delta=args.delta, drop_outliers=not args.keep_outliers, residual=args.residual,
              columns=parse_columns(args.columns))
    if args.json:
        _print_json(s)
    else:
        print(f"{s['law']} on {args.data} ({s['runs']} runs), {args.objective}: "
              f"objective {s['objective']:.6g}, rmse_log {s['rmse_log']:.6g}")
        print(f"coefficients: {_fmt_params(s['params'])}")
    return 0


def cmd_datasets(args) -> int:
    from tuner.api import datasets
    from tuner.views.tables import markdown
    rows = datasets()
    if args.json:
        _print_json(rows)
    else:
        print(markdown(rows))
    return 0


def cmd_laws(args) -> int:
    from tuner.api import laws
    rows = laws()
    if args.json:
        _print_json(rows)
        return 0
    for law in rows.itertuples():
        print(f"{law.law} ({law.equation}): L = {law.formula}")
        print(f"    {law.description}; linear in {', '.join(law.linear) or 'none'}")
        print(f"    published ({law.source}): {_fmt_params(law.published)}")
    return 0


def cmd_reproduce(args) -> int:
    from pathlib import Path

    from tuner.views.reproduce import fig7
    from tuner.run.watchdog import check_capacity, check_fits
    from tuner.views.outputs import guard, record, stems
    if args.evals < 1 or args.seeds < 1 or args.workers < 1:
        raise TunerError("--evals, --seeds and --workers must be >= 1")
    if args.faithful_seeds < 1 or (args.faithful_evals is not None and args.faithful_evals < 1):
        raise TunerError("--faithful-seeds and --faithful-evals must be >= 1 (--no-faithful "
                         "leaves ytopt as published out)")
    check_capacity(args.evals, args.workers, args.comms)
    check_fits(5 * (3 * args.seeds + 1) + 4 * args.faithful_seeds, "--seeds")
    out = Path(args.out)
    written = guard(stems(out / "fig7", ("png", "svg", "md", "csv"))
                    + stems(out / "fig7_coefficients", ("md", "csv"))
                    + stems(out / "fig7_warnings", ("md",)), args.force)
    result = fig7(out, evals=args.evals, workers=args.workers, comms=args.comms,
                  seeds=args.seeds, x=args.x, quiet=args.quiet, faithful=args.faithful,
                  faithful_seeds=args.faithful_seeds, faithful_evals=args.faithful_evals)
    if result is None:  # an MPI worker rank: the manager writes and prints
        return 0
    record(written)
    if args.json:
        _print_json(result)
        return 0
    from tuner.views.tables import markdown
    print(markdown(result["rows"]))
    for w in result["warnings"]:
        print(f"warning: {w['law']} on {w['data']}, {w['method']} seed {w['seed']}: "
              f"{w['warning']}")
    print(result["caption"])
    print(f"figure: {result['figure'][0]}")
    return 0


def cmd_compare(args) -> int:
    from tuner.views.reports import compare
    from tuner.views.tables import markdown
    from tuner.views.outputs import guard, record, stems
    stem = Path(args.out).resolve() / "compare"
    written = guard(stems(stem, ("png", "svg", "md", "csv")), args.force)
    rows = compare(args.run_dirs, stem, x=args.x)  # checks the runs, then makes --out
    record(written)
    figures = [str(stem.with_suffix(f".{e}")) for e in ("png", "svg")]
    tables = [str(stem.with_suffix(f".{e}")) for e in ("md", "csv")]
    if args.json:
        _print_json({"rows": rows, "figures": figures, "tables": tables})
        return 0
    print(markdown(rows))
    print(f"figure: {figures[0]}")
    return 0


def cmd_report(args) -> int:
    from tuner.run.rundir import RunDir
    from tuner.views.outputs import guard, record, stems
    from tuner.views.reports import fit_report
    run = RunDir.open(args.run_dir)
    out = Path(args.out).resolve() / run.path.name.replace(".", "_")
    guarded = guard(stems(out / "report", ("png", "svg", "md", "html"))
                    + stems(out / "report_convergence", ("png", "svg")), args.force)
    written = fit_report(run.path, out / "report")
    record(guarded)
    if args.json:
        _print_json({"run_dir": str(run.path), **{k: [str(p) for p in v] if isinstance(v, list)
                                                  else str(v) for k, v in written.items()}})
        return 0
    print(f"report: {written['markdown']}, {written['html']}")
    print(f"figure: {written['figures'][0]}")
    return 0


def _add_planning_parsers(sub) -> None:
    coeff_help = "'published' (default) or a fit run directory (its best)"
    p = sub.add_parser("figures", help="draw the paper's figures 1-6 and 8 (PNG and SVG)")
    _add_out(p, "figures", "<fig>.png and .svg")
    p.add_argument("--coefficients", nargs="+", default=["published"], metavar="SOURCE",
                   help=coeff_help + "; several: one column each. A run's coefficients apply "
                        "to its law; other laws use published values")
    p.add_argument("--only", nargs="+", metavar="FIG", help="draw only these (e.g. fig1 fig8)")
    _add_json(p, "the paths written")
    _force_option(p)

    p = sub.add_parser("allocate", help="compute-optimal N_active, N_total, D (and sparsity)")
    p.add_argument("--law", required=True, help=LAW_HELP)
    p.add_argument("--compute", type=float, nargs="+", required=True, metavar="C",
                   help="compute budget(s) in FLOPs (C = 6 N_active D)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--sparsity", type=float, default=0.0, help="sparsity S in [0, 1) (default 0)")
    g.add_argument("--optimal-sparsity", action="store_true",
                   help="choose the sparsity in [0, --s-max] that minimises the loss")
    p.add_argument("--s-max", type=float, default=0.99, help="largest sparsity (default 0.99)")
    p.add_argument("--coefficients", default="published", help=coeff_help + ", or 'k=v,...'")
    p.add_argument("--data", help="flag answers outside this dataset's N, D, S, C ranges "
                                   "(default: a run's own data; none for published values)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="K",
                   help="with a run directory lacking a bootstrap: refit K resamples now for "
                        "intervals (the run is not modified)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    _add_json(p)
    _accept_negative_floats(p)

    p = sub.add_parser("predict", help="predicted loss of one model")
    p.add_argument("--law", required=True, help=LAW_HELP)
    p.add_argument("--n-active", type=float, required=True, help="active (non-zero) parameters")
    p.add_argument("--tokens", type=float, required=True, help="training tokens D")
    p.add_argument("--sparsity", type=float, default=0.0, help="sparsity S in [0, 1) (default 0)")
    p.add_argument("--n-total", type=float,
                   help="total parameters (default n_active/(1-S); sets S if given alone)")
    p.add_argument("--coefficients", default="published", help=coeff_help + ", or 'k=v,...'")
    _add_json(p)
    _accept_negative_floats(p)


def _accept_negative_floats(p: argparse.ArgumentParser) -> None:
    """Let '-1e20' reach the value checks (argparse would take it for an option)."""
    import re
    p._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$", re.I)


def cmd_figures(args) -> int:
    from tuner.views.figures import FIGURES, draw
    from tuner.views.outputs import guard, record, stems
    names = [n for n in (args.only or FIGURES) if n in FIGURES]  # draw() names unknown ones
    out = Path(args.out).resolve()
    written = guard([p for n in names for p in stems(out / n, ("png", "svg"))], args.force)
    paths = [str(p) for p in draw(out, args.coefficients, args.only)]
    record(written)
    if args.json:
        _print_json({"figures": paths})
        return 0
    for path in paths:
        print(path)
    return 0


def cmd_allocate(args) -> int:
    from tuner.views.tables import markdown
    from tuner.analysis.planning import (allocation_report, allocation_table,
                                         describe_allocation)
    rep = allocation_report(args.law, args.coefficients, args.compute,
                            None if args.optimal_sparsity else args.sparsity, args.s_max,
                            data=args.data, bootstrap=args.bootstrap, seed=args.seed)
    if args.json:
        _print_json(rep)
        return 0
    print("\n".join(describe_allocation(rep)))
    print(markdown(allocation_table(rep)))
    return 0


def cmd_predict(args) -> int:
    from tuner.api import predict
    out = predict(args.law, args.n_active, args.tokens, sparsity=args.sparsity,
                  n_total=args.n_total, coefficients=args.coefficients)
    if args.json:
        _print_json(out)
    else:
        interval = (f" (95% bootstrap interval {out['loss_lo']:.6g}-{out['loss_hi']:.6g})"
                    if "loss_lo" in out else "")
        print(f"{out['law']}: loss {out['loss']:.6g} nats/token{interval} at N_active "
              f"{out['n_active']:.4g}, N_total {out['n_total']:.4g}, D {out['tokens']:.4g}, "
              f"S {out['sparsity']:.4g}, C {out['compute']:.4g} FLOPs")
    return 0


PLANNING_COMMANDS = {"figures": cmd_figures, "allocate": cmd_allocate, "predict": cmd_predict}


def _add_validation_parsers(sub) -> None:
    p = sub.add_parser("validate", help="fit on a subset of runs, report errors on the rest")
    p.add_argument("--law", required=True, help=LAW_HELP)
    p.add_argument("--data", required=True, help="dataset name or CSV path")
    _add_data_options(p, group=False)
    p.add_argument("--train", help="condition selecting the training runs (columns, numbers, "
                                   "+ - * / **, comparisons, and/or/not; never run as code), e.g. "
                                   "'n_active < 1e9' or 'tokens*n_active*6 < 1e20'")
    p.add_argument("--loo", action="store_true", help="leave-one-out over all runs instead")
    p.add_argument("--optimizer", default="ytopt", choices=OPTIMIZERS,
                   help="in-process optimizer of the training fit (default ytopt, as fit; "
                        "--loo refits each run by L-BFGS-B from the all-runs optimum)")
    p.add_argument("--evals", type=int, default=200,
                   help="evaluations per fit (default 200, as fit)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--keep-outliers", action="store_true", help="keep rows flagged outlier")
    _add_workers_comms(p, "refitting (--loo: one task per held-out run)")
    _add_out(p, "validate", "the held-out rows, <law>-<data>.md and .csv")
    _add_json(p, "the summary and every held-out row")
    _force_option(p)

    p = sub.add_parser("rank", help="fit every law the data support and compare them")
    p.add_argument("--data", required=True, help="dataset name or CSV path")
    p.add_argument("--laws", nargs="+", metavar="LAW",
                   help="laws to compare, each a built-in name, a formula or a law file "
                        "(default: the built-in laws the data support)")
    _add_data_options(p, group=False)
    p.add_argument("--evals", type=int, default=200,
                   help="evaluations per fit, tuner's default method (default 200, as fit; "
                        "every law is fitted twice, on all runs and on the low-compute 75%%)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--keep-outliers", action="store_true", help="keep rows flagged outlier")
    p.add_argument("--include-bound", action="store_true",
                   help="rank fits with a coefficient on a bound of its space too (left out "
                        "of the ranking by default)")
    _add_batch_options(p, "fitting laws (one task per law)", "rank", "rank.md and rank.csv",
                       "one object per law")


def cmd_validate(args) -> int:
    from tuner.api import validate
    from tuner.data.datasets import parse_columns
    from tuner.views.tables import write_tables
    r = validate(args.law, args.data, train=args.train, loo=args.loo, optimizer=args.optimizer,
                 evals=args.evals, seed=args.seed, drop_outliers=not args.keep_outliers,
                 residual=args.residual, columns=parse_columns(args.columns),
                 workers=args.workers, comms=args.comms)
    if r is None:  # an MPI worker rank: rank 0 writes and prints
        return 0
    from tuner.views.outputs import guard, record, stems
    stem = Path(args.out).resolve() / f"{_slug(r['law'])}-{Path(args.data).stem}"
    written = guard(stems(stem, ("md", "csv")), args.force)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tables = write_tables(r["rows"], stem)
    record(written)
    if args.json:
        _print_json({**r, "tables": [str(t) for t in tables]})
        return 0
    what = "leave-one-out" if args.loo else f"trained on {r['train_runs']} runs ({args.train})"
    print(f"{r['law']} on {args.data}, {what}: {_fmt_params(r['params'])}")
    worst = max(r["rows"], key=lambda row: abs(row["rel_error"]))
    print(f"held-out runs {r['test_runs']}: median |rel error| {r['median_abs_rel_error']:.4g}, "
          f"max {r['max_abs_rel_error']:.4g} (N_active {worst['n_active']:.4g}, D "
          f"{worst['tokens']:.4g}, S {worst['sparsity']:.4g}: predicted "
          f"{worst['predicted']:.4g}, observed {worst['observed']:.4g})")
    for w in r.get("warnings", []):
        print(f"warning: {w}")
    print(f"rows: {tables[0]}, {tables[1]}")
    return 0


def _batch_tables(table, table_rows, stem: Path, written, as_json: bool):
    """Write a batch's table (Markdown and CSV at ``stem``); with ``as_json`` print it."""
    from tuner.views.outputs import record
    from tuner.views.tables import write_tables
    full = table.to_dict(orient="records")
    rows = table_rows(full)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tables = write_tables(rows, stem)
    record(written)
    if as_json:
        _print_json({"rows": full, "tables": [str(t) for t in tables]})
    return full, rows, tables


def cmd_rank(args) -> int:
    from tuner.api import rank
    from tuner.run.progress import BatchProgress
    from tuner.views.tables import markdown
    from tuner.analysis.rank import table_rows
    from tuner.data.datasets import parse_columns
    from tuner.views.outputs import guard, stems
    out = Path(args.out).resolve()
    written = guard(stems(out / "rank", ("md", "csv")), args.force)
    progress = BatchProgress(args.quiet, desc=f"rank {args.data}", unit="law")
    try:
        table = rank(args.data, args.laws, evals=args.evals, seed=args.seed,
                     drop_outliers=not args.keep_outliers, include_bound=args.include_bound,
                     residual=args.residual, columns=parse_columns(args.columns),
                     workers=args.workers, comms=args.comms, progress=progress)
    finally:
        progress.close()
    if table is None:  # an MPI worker rank: rank 0 writes and prints
        return 0
    full, rows, tables = _batch_tables(table, table_rows, out / "rank", written, args.json)
    if args.json:
        return 0
    print(markdown(rows))
    print("k: identifiable coefficients (k_free: free in the space); AIC/BIC count k only")
    for r in full:
        if r["rank"] is None:
            print(f"{r['law']}: not ranked, a coefficient sits on a bound of its search space "
                  f"({r['on_bound']}); --include-bound ranks it anyway")
        for w in r["warnings"]:
            print(f"warning: {r['law']}: {w}")
    print(f"tables: {tables[0]}, {tables[1]}")
    return 0


def _add_sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="a grid of fits from a file (laws × datasets × options × "
                                     "seeds) as one libEnsemble ensemble; one results table")
    p.add_argument("file", help="the sweep file, JSON (or TOML named .toml): {\"laws\": [...], "
                                "\"datasets\": [...], \"evals\": 200, \"seeds\": [0], "
                                "\"options\": {fit options by their Python names; a list "
                                "is one more axis}}; relative paths are read from its folder")
    _add_batch_options(p, "fitting (one task per fit)", "sweep", "sweep.md and sweep.csv",
                       "one object per fit (coefficients under params) and the tables' paths")


def cmd_sweep(args) -> int:
    from tuner.analysis.sweep import table_rows
    from tuner.api import sweep
    from tuner.run.progress import BatchProgress
    from tuner.views.outputs import guard, stems
    from tuner.views.tables import markdown
    out = Path(args.out).resolve()
    written = guard(stems(out / "sweep", ("md", "csv")), args.force)
    progress = BatchProgress(args.quiet, desc="sweep", unit="fit")
    try:
        table = sweep(args.file, workers=args.workers, comms=args.comms, progress=progress)
    finally:
        progress.close()
    if table is None:  # an MPI worker rank: rank 0 writes and prints
        return 0
    full, rows, tables = _batch_tables(table, table_rows, out / "sweep", written, args.json)
    if args.json:
        return 0
    print(markdown([{k: v for k, v in r.items() if k not in full[i]["params"]}
                    for i, r in enumerate(rows)]))
    for r in rows:  # the coefficients, one line per fit, numbered as in the table
        print(f"fit {r['fit']}: {_fmt_params(full[r['fit'] - 1]['params'])}")
    for r in full:
        for w in r["warnings"]:
            print(f"warning: fit {r['fit']} ({r['law']} on {r['data']}): {w}")
    print(f"tables: {tables[0]}, {tables[1]}")
    return 0


VALIDATION_COMMANDS = {"validate": cmd_validate, "rank": cmd_rank, "sweep": cmd_sweep}


def _add_isoflop_parser(sub) -> None:
    p = sub.add_parser("isoflop", help="Hoffmann's Approach 2: isoFLOP profiles, N_opt and "
                                       "D_opt power laws, beside the parametric fit")
    p.add_argument("--data", required=True, help="dataset name or CSV path")
    p.add_argument("--budget-column", help="column naming each run's compute budget (default: "
                                           "cluster 6 N D in log space)")
    p.add_argument("--bandwidth", type=float, default=0.1,
                   help="clustering bandwidth in decades of compute (default 0.1)")
    p.add_argument("--min-runs", type=int, default=5, help="runs a budget needs (default 5)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="K",
                   help="resamples (within budgets) for the intervals (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--fit", metavar="RUN_DIR", help="a hoffmann fit to compare with (default: "
                                                    "fit Eq 2 to the same runs here)")
    p.add_argument("--keep-outliers", action="store_true", help="keep rows flagged outlier")
    _add_out(p, "isoflop", "isoflop.png/.svg/.md/.csv")
    _force_option(p)
    _add_json(p, "the power laws, budgets and Approach 3")


def cmd_isoflop(args) -> int:
    from pathlib import Path

    from tuner.analysis.isoflop import budget_rows, fit_approach3, isoflop
    from tuner.data.datasets import load
    from tuner.views.isoflop import isoflop_figure
    from tuner.views.outputs import guard, record, stems
    from tuner.views.tables import markdown, write_tables
    out = Path(args.out).resolve() / "isoflop"
    written = guard(stems(out, ("md", "csv", "png", "svg")), args.force)
    data = load(args.data, drop_outliers=not args.keep_outliers)
    r = isoflop(data, budget_column=args.budget_column, bandwidth=args.bandwidth,
                min_runs=args.min_runs, bootstrap=args.bootstrap, seed=args.seed)
    a3 = fit_approach3(args.data, run_dir=args.fit, drop_outliers=not args.keep_outliers,
                       seed=args.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = budget_rows(r, data)
    write_tables(rows, out)
    fig = isoflop_figure(r, data, out, approach3=a3, approach3_params=a3["params"])
    record(written)
    if args.json:
        _print_json({"a": r.a, "a_interval": r.a_interval, "b": r.b,
                     "b_interval": r.b_interval, "budgets": rows, "grouping": r.grouping,
                     "warnings": r.warnings, "approach3": a3, "figure": str(fig[0])})
        return 0
    print(f"Approach 2 on {data.name} ({len(data)} runs; {r.grouping}):")
    print(markdown(rows))
    k = f"{r.bootstrap} bootstrap resamples within budgets" if r.bootstrap else "no bootstrap"
    print(f"N_opt ∝ C^a: a = {r.a:.3f} [{r.a_interval[0]:.3f}, {r.a_interval[1]:.3f}]  "
          f"(95%, {k})")
    print(f"D_opt ∝ C^b: b = {r.b:.3f} [{r.b_interval[0]:.3f}, {r.b_interval[1]:.3f}]")
    line = (f"Approach 3 (Eq 2, {a3['source']}; alpha {a3['params']['alpha']:.4f}, "
            f"beta {a3['params']['beta']:.4f}): a = beta/(alpha+beta) = {a3['a']:.3f}")
    if "a_interval_delta" in a3:
        lo, hi = a3["a_interval_delta"]
        line += f" [{lo:.3f}, {hi:.3f}] (±1.96 curvature standard errors)"
    if "a_interval_bootstrap" in a3:
        lo, hi = a3["a_interval_bootstrap"]
        line += f", [{lo:.3f}, {hi:.3f}] (bootstrap, K={a3['bootstrap']})"
    print(line + f", b = {a3['b']:.3f}")
    for w in r.warnings:
        print(f"warning: {w}")
    print(f"figure: {fig[0]}\ntables: {out.with_suffix('.md')}, {out.with_suffix('.csv')}")
    return 0

COMMANDS = {**PLANNING_COMMANDS, **VALIDATION_COMMANDS, "reproduce": cmd_reproduce,
            "compare": cmd_compare, "report": cmd_report, "fit": cmd_fit, "resume": cmd_resume,
            "score": cmd_score, "datasets": cmd_datasets, "laws": cmd_laws,
            "isoflop": cmd_isoflop}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tuner`` command line with ``argv`` (default ``sys.argv[1:]``); return the
    exit code: 0, 2 for bad input (one line on stderr), 130 when interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except TunerError as exc:
        print(f"tuner: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)  # a stopped run (dead worker, signal) has its own
    except KeyboardInterrupt:
        print("tuner: interrupted; finished evaluations are in the run's results.csv "
              "('tuner resume RUN_DIR' continues)", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a path the user gave that the system refuses (/proc, a full disk)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"tuner: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


def run() -> None:
    """The ``tuner`` and ``python -m tuner`` entry point: ``main``, then exit with its code.

    At exit the interpreter collects garbage one last time, walking every object the imports
    made (scipy, scikit-learn, pandas: 0.3-0.4 s of a 4 s fit here). The command has closed
    what it opened, so those objects are frozen out of that walk first."""
    import gc
    code = main()
    gc.freeze()
    sys.exit(code)
