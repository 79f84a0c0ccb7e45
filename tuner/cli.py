"""Command line: a thin layer over tuner.api. Bad input ends in one line and exit code 2."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from tuner.errors import TunerError


def _fmt_params(params: dict) -> str:
    return ", ".join(f"{k}={v:.6g}" for k, v in params.items())


def _add_fit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--optimizer", default="ytopt",
                   help="ytopt (Bayesian, default), grid, random, or lbfgs (multi-start "
                        "L-BFGS-B, the classical reference)")
    p.add_argument("--evals", type=int, default=200,
                   help="evaluation budget: coefficient sets scored (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--objective", default="huber",
                   help="huber (sum of Huber on log residuals, default), mse (mean squared log "
                        "residual) or paper (mean predicted loss: the literal Fig. 7 objective)")
    p.add_argument("--delta", type=float, default=1e-3, help="Huber delta (default 1e-3)")
    p.add_argument("--keep-outliers", action="store_true",
                   help="keep rows flagged outlier (dropped by default, as Epoch AI did)")
    p.add_argument("--surrogate", default="RF",
                   help="ytopt surrogate: RF (default), ET, GBRT or GP")
    p.add_argument("--liar", default="cl_max",
                   help="constant-liar strategy for parallel asks: cl_max (default), cl_min, "
                        "cl_mean")
    p.add_argument("--initial-points", type=int, default=10,
                   help="ytopt random initial points, the first being the published default "
                        "(default 10)")
    p.add_argument("--polish", type=float, default=None, metavar="FRACTION",
                   help="ytopt: share of the budget spent at the end polishing the 5 best "
                        "points by Levenberg-Marquardt on the objective's gradient and "
                        "Gauss-Newton curvature (L-BFGS-B for custom objectives), every step "
                        "one counted evaluation (default: what 20 + 10 per searched dimension "
                        "Bayesian steps leave, at least half; 0 = none)")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="ytopt: search every coefficient; by default the coefficients a law "
                        "is linear in (e, a, b, c...) are solved exactly at each point and the "
                        "Bayesian search runs over the exponents only")
    p.add_argument("--faithful", action="store_true",
                   help="ytopt exactly as published: RF of 100 trees, 10,000 candidates, raw "
                        "objective values, no profile, no polish (slow and inexact; for "
                        "comparison)")
    p.add_argument("--space", help="ConfigSpace JSON file to search instead of "
                                   "search_spaces/<law>.json")
    p.add_argument("--fix", default="", metavar="K=V,...",
                   help="coefficients held fixed, e.g. 'alpha=0.34,beta=0.28'")
    p.add_argument("--bootstrap", type=int, default=0, metavar="K",
                   help="after the fit, refit K resamples of the runs (with replacement, "
                        "seeded by --seed; L-BFGS warm-started from the best, parallel over "
                        "--workers) for 95%% percentile intervals (default 0: none)")
    _add_parallel_options(p)
    p.add_argument("--run-dir", help="output directory (default runs/<law>-<data>-"
                                     "<optimizer>-<time>); must not exist")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _add_parallel_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=1,
                   help="libEnsemble workers evaluating in parallel (default 1; with --comms "
                        "mpi it is the number of MPI ranks minus one)")
    p.add_argument("--comms", default="local",
                   help="local (processes, default), threads, or mpi (under mpirun -np N+1)")
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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fit", help="fit a law's coefficients to a dataset")
    p.add_argument("--law", required=True, help="kaplan, hoffmann, frantar, frantar_reparam, "
                                                "abnar or generalized")
    p.add_argument("--data", required=True, help="shipped dataset name (see 'tuner datasets') "
                                                 "or a CSV path")
    _add_fit_options(p)

    p = sub.add_parser("resume", help="continue a killed or extended run to its budget")
    p.add_argument("run_dir", help="the run directory to continue")
    p.add_argument("--evals", type=int, help="new total budget (default: the run's own)")
    p.add_argument("--workers", type=int, help="workers (default: the run's own)")
    p.add_argument("--comms", help="local, threads or mpi (default: the run's own)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser("score", help="objective and RMSE of log residuals of one coefficient set")
    p.add_argument("--law", required=True, help="law name")
    p.add_argument("--data", required=True, help="dataset name or CSV path")
    p.add_argument("--coefficients", default="published",
                   help="'published' (default), a run directory (its best), or 'k=v,...' "
                        "(unnamed ones published)")
    p.add_argument("--objective", default="huber", help="huber, mse or paper")
    p.add_argument("--delta", type=float, default=1e-3, help="Huber delta (default 1e-3)")
    p.add_argument("--keep-outliers", action="store_true", help="keep rows flagged outlier")
    p.add_argument("--json", action="store_true", help="print a JSON object")

    p = sub.add_parser("datasets", help="list shipped datasets: rows, ranges, loss provenance")
    p.add_argument("--json", action="store_true", help="print JSON")

    sub.add_parser("laws", help="list the laws, their coefficients and published values")
    _add_planning_parsers(sub)
    _add_validation_parsers(sub)

    p = sub.add_parser("reproduce", help="reproduce a figure of the paper (fig7: the main job)")
    p.add_argument("figure", choices=["fig7"], help="which figure")
    p.add_argument("--out", default="runs/fig7", help="output directory (default runs/fig7); "
                   "finished runs in it are reused")
    p.add_argument("--evals", type=int, default=200,
                   help="budget per search (ytopt, grid, random alike; default 200)")
    p.add_argument("--workers", type=int, default=1, help="libEnsemble workers per run")
    p.add_argument("--seeds", type=int, default=1,
                   help="seeds per search; the table shows median [min-max] (default 1)")
    p.add_argument("--x", choices=["eval", "time"], default="eval",
                   help="x axis: evaluation number (default) or elapsed time")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    _force_option(p)

    p = sub.add_parser("compare", help="convergence plot and table for any runs")
    p.add_argument("run_dirs", nargs="+", help="run directories")
    p.add_argument("--out", default="runs/compare",
                   help="output stem: writes OUT.png, .svg, .md, .csv (default runs/compare)")
    p.add_argument("--x", choices=["eval", "time"], default="eval", help="x axis")
    _force_option(p)

    p = sub.add_parser("report", help="a fit's figure: predicted vs observed, residuals, curves")
    p.add_argument("run_dir", help="a finished run directory")
    p.add_argument("--out", help="output stem (default RUN_DIR/report)")
    _force_option(p)
    return parser


def cmd_fit(args) -> int:
    from tuner.run.fit import FitConfig, fit
    from tuner.laws.spaces import parse_assignments
    config = FitConfig(law=args.law, data=args.data, optimizer=args.optimizer, evals=args.evals,
                       seed=args.seed, objective=args.objective, delta=args.delta,
                       drop_outliers=not args.keep_outliers, surrogate=args.surrogate,
                       liar=args.liar, n_initial_points=args.initial_points, polish=args.polish,
                       profile=args.profile, faithful=args.faithful,
                       workers=args.workers, comms=args.comms, eval_delay=args.eval_delay,
                       space=args.space, fix=parse_assignments(args.fix, "--fix"),
                       bootstrap=args.bootstrap)
    summary = fit(config, args.run_dir, quiet=args.quiet)
    if summary is not None:
        _print_summary(summary, args.json)
    return 0


def cmd_resume(args) -> int:
    from tuner.run.fit import resume
    summary = resume(args.run_dir, args.evals, workers=args.workers, comms=args.comms,
                     quiet=args.quiet)
    if summary is not None:
        _print_summary(summary, args.json)
    return 0


def _print_summary(s: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(s, indent=2))
        return
    print(f"run: {s.get('run_dir', '')}".rstrip())
    print(f"{s['law']} on {s['data']} with {s['optimizer']}: {s['evals']} evaluations "
          f"({s['failed']} failed) in {s['wall_seconds']:.1f}s")
    if "best_objective" in s:
        print(f"best objective {s['best_objective']:.6g} (rmse_log {s['rmse_log']:.4g})")
        print(f"best: {_fmt_params(s['best_params'])}")
        if s.get("published_objective") is not None:
            print(f"published objective {s['published_objective']:.6g}: "
                  f"{_fmt_params(s['published_params'])}")
    if s.get("intervals"):
        b = s["bootstrap"]
        print(f"bootstrap {b['level']:.0%} intervals (K={b['K']}, seed={b['seed']}, "
              f"{b['parallel']}):")
        for name, (lo, hi) in s["intervals"].items():
            print(f"  {name}: [{lo:.6g}, {hi:.6g}]")
    for w in s.get("warnings", []):
        print(f"warning: {w}")


def cmd_score(args) -> int:
    from tuner.run.fit import score
    s = score(args.law, args.data, args.coefficients, objective=args.objective,
              delta=args.delta, drop_outliers=not args.keep_outliers)
    if args.json:
        print(json.dumps(s, indent=2))
    else:
        print(f"{args.law} on {args.data} ({s['runs']} runs), {args.objective}: "
              f"objective {s['objective']:.6g}, rmse_log {s['rmse_log']:.6g}")
        print(f"coefficients: {_fmt_params(s['params'])}")
    return 0


def cmd_datasets(args) -> int:
    from tuner.data.datasets import summary_rows
    from tuner.views.tables import markdown
    rows = summary_rows()
    print(json.dumps(rows, indent=2) if args.json else markdown(rows))
    return 0


def cmd_laws(args) -> int:
    from tuner.laws import LAWS
    from tuner.laws.spaces import published
    for law in LAWS.values():
        print(f"{law.name} ({law.equation}, {law.description}): {_fmt_params(published(law.name))}")
    return 0


def cmd_reproduce(args) -> int:
    from pathlib import Path

    from tuner.views.reproduce import fig7
    from tuner.run.watchdog import check_capacity
    from tuner.views.outputs import guard, record, stems
    if args.evals < 1 or args.seeds < 1 or args.workers < 1:
        raise TunerError("--evals, --seeds and --workers must be >= 1")
    check_capacity(args.evals, args.workers, "local")
    out = Path(args.out)
    written = guard(stems(out / "fig7", ("png", "svg", "md", "csv"))
                    + stems(out / "fig7_coefficients", ("md", "csv")), args.force)
    result = fig7(out, evals=args.evals, workers=args.workers, seeds=args.seeds,
                  x=args.x, quiet=args.quiet)
    record(written)
    from tuner.views.tables import markdown
    print(markdown(result["rows"]))
    print(f"figure: {result['figure'][0]}")
    return 0


def cmd_compare(args) -> int:
    from pathlib import Path

    from tuner.views.reports import compare
    from tuner.views.tables import markdown
    from tuner.views.outputs import guard, record, stems
    out = Path(args.out)
    written = guard(stems(out, ("png", "svg", "md", "csv")), args.force)
    rows = compare(args.run_dirs, out, x=args.x)
    record(written)
    print(markdown(rows))
    print(f"figure: {out.with_suffix('.png')}")
    return 0


def cmd_report(args) -> int:
    from pathlib import Path

    from tuner.views.outputs import guard, record, stems
    from tuner.views.reports import report
    written = guard(stems(Path(args.out) if args.out else Path(args.run_dir) / "report",
                          ("png", "svg")), args.force)
    paths = report(args.run_dir, args.out)
    record(written)
    print(f"figure: {paths[0]}")
    return 0


def _add_planning_parsers(sub) -> None:
    coeff_help = "'published' (default) or a fit run directory (its best)"
    p = sub.add_parser("figures", help="draw the paper's figures 1-6 and 8 (PNG and SVG)")
    p.add_argument("--out", default="figures", help="output directory (default ./figures)")
    p.add_argument("--coefficients", nargs="+", default=["published"], metavar="SOURCE",
                   help=coeff_help + "; several: one column each. A run's coefficients apply "
                        "to its law; other laws use published values")
    p.add_argument("--only", nargs="+", metavar="FIG", help="draw only these (e.g. fig1 fig8)")
    _force_option(p)

    p = sub.add_parser("allocate", help="compute-optimal N_active, N_total, D (and sparsity)")
    p.add_argument("--law", required=True, help="law name")
    p.add_argument("--compute", type=float, nargs="+", required=True, metavar="C",
                   help="compute budget(s) in FLOPs (C = 6 N_active D)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--sparsity", type=float, default=0.0, help="sparsity S in [0, 1) (default 0)")
    g.add_argument("--optimal-sparsity", action="store_true",
                   help="choose the sparsity in [0, --s-max] that minimises the loss")
    p.add_argument("--s-max", type=float, default=0.99, help="largest sparsity (default 0.99)")
    p.add_argument("--coefficients", default="published", help=coeff_help + ", or 'k=v,...'")
    p.add_argument("--json", action="store_true", help="print JSON")
    _accept_negative_floats(p)

    p = sub.add_parser("predict", help="predicted loss of one model")
    p.add_argument("--law", required=True, help="law name")
    p.add_argument("--n-active", type=float, required=True, help="active (non-zero) parameters")
    p.add_argument("--tokens", type=float, required=True, help="training tokens D")
    p.add_argument("--sparsity", type=float, default=0.0, help="sparsity S in [0, 1) (default 0)")
    p.add_argument("--n-total", type=float,
                   help="total parameters (default n_active/(1-S); sets S if given alone)")
    p.add_argument("--coefficients", default="published", help=coeff_help + ", or 'k=v,...'")
    p.add_argument("--json", action="store_true", help="print JSON")
    _accept_negative_floats(p)


def _accept_negative_floats(p: argparse.ArgumentParser) -> None:
    """Let '-1e20' reach the value checks (argparse would take it for an option)."""
    import re
    p._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$", re.I)


def cmd_figures(args) -> int:
    from pathlib import Path

    from tuner.views.figures import FIGURES, draw
    from tuner.views.outputs import guard, record, stems
    names = [n for n in (args.only or FIGURES) if n in FIGURES]  # draw() names unknown ones
    written = guard([p for n in names for p in stems(Path(args.out) / n, ("png", "svg"))],
                    args.force)
    for path in draw(args.out, args.coefficients, args.only):
        print(path)
    record(written)
    return 0


def cmd_allocate(args) -> int:
    from tuner.run.fit import coefficients
    from tuner.analysis.planning import allocation_rows, bootstrap_sets
    from tuner.views.tables import markdown
    params = coefficients(args.law, args.coefficients)
    rows = allocation_rows(args.law, params, args.compute,
                           None if args.optimal_sparsity else args.sparsity, args.s_max,
                           bootstrap_sets(args.law, args.coefficients))
    print(json.dumps(rows, indent=2) if args.json else markdown(rows))
    return 0


def cmd_predict(args) -> int:
    from tuner.run.fit import coefficients
    from tuner.analysis.planning import bootstrap_sets, predict_one
    out = predict_one(args.law, coefficients(args.law, args.coefficients), args.n_active,
                      args.tokens, args.sparsity, args.n_total,
                      bootstrap_sets(args.law, args.coefficients))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        interval = (f" (95% bootstrap interval {out['loss_lo']:.6g}-{out['loss_hi']:.6g})"
                    if "loss_lo" in out else "")
        print(f"{args.law}: loss {out['loss']:.6g} nats/token{interval} at N_active "
              f"{out['n_active']:.4g}, N_total {out['n_total']:.4g}, D {out['tokens']:.4g}, "
              f"S {out['sparsity']:.4g}, C {out['compute']:.4g} FLOPs")
    return 0


PLANNING_COMMANDS = {"figures": cmd_figures, "allocate": cmd_allocate, "predict": cmd_predict}


def _add_validation_parsers(sub) -> None:
    p = sub.add_parser("validate", help="fit on a subset of runs, report errors on the rest")
    p.add_argument("--law", required=True, help="law name")
    p.add_argument("--data", required=True, help="dataset name or CSV path")
    p.add_argument("--train", help="condition selecting the training runs (columns, numbers, + - * / **, "
                                   "comparisons, and/or/not; never run as code), e.g. "
                                   "'n_active < 1e9' or 'tokens*n_active*6 < 1e20'")
    p.add_argument("--loo", action="store_true", help="leave-one-out over all runs instead")
    p.add_argument("--optimizer", default="lbfgs", help="in-process optimizer (default lbfgs)")
    p.add_argument("--evals", type=int, default=2000, help="evaluations per fit (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--keep-outliers", action="store_true", help="keep rows flagged outlier")
    p.add_argument("--json", action="store_true", help="print a JSON object")

    p = sub.add_parser("rank", help="fit every law the data support and compare them")
    p.add_argument("--data", required=True, help="dataset name or CSV path")
    p.add_argument("--laws", nargs="+", help="laws to compare (default: those the data support)")
    p.add_argument("--evals", type=int, default=2000, help="L-BFGS evaluations per fit")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--keep-outliers", action="store_true", help="keep rows flagged outlier")
    p.add_argument("--out", help="also write OUT/rank.md and OUT/rank.csv")
    _force_option(p)


def cmd_validate(args) -> int:
    from tuner.data.datasets import load
    from tuner.fit.objective import ObjectiveSpec
    from tuner.laws.spaces import load_space
    from tuner.views.tables import markdown
    from tuner.analysis.validate import holdout, leave_one_out, train_mask
    if args.loo == bool(args.train):
        raise TunerError("validate: give exactly one of --train EXPR or --loo")
    if args.evals < 1:
        raise TunerError(f"--evals must be >= 1, got {args.evals}")
    spec = ObjectiveSpec(args.law, args.data, drop_outliers=not args.keep_outliers)
    space = load_space(args.law)
    opts = {"optimizer": args.optimizer, "evals": args.evals, "seed": args.seed}
    if args.loo:
        r = leave_one_out(spec, space, **opts)
    else:
        data = load(args.data, drop_outliers=not args.keep_outliers)
        r = holdout(spec, space, train_mask(data, args.train), dataset=data, **opts)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    what = "leave-one-out" if args.loo else f"trained on {r['train_runs']} runs ({args.train})"
    print(f"{args.law} on {args.data}, {what}: {_fmt_params(r['params'])}")
    print(markdown(r["rows"]))
    print(f"held-out runs {r['test_runs']}: median |rel error| {r['median_abs_rel_error']:.4g}, "
          f"max {r['max_abs_rel_error']:.4g}")
    return 0


def cmd_rank(args) -> int:
    from pathlib import Path

    from tuner.analysis.rank import rank
    from tuner.views.tables import markdown, write_tables
    from tuner.views.outputs import guard, record, stems
    written = (guard(stems(Path(args.out) / "rank", ("md", "csv")), args.force)
               if args.out else [])
    rows = rank(args.data, args.laws, evals=args.evals, seed=args.seed,
                drop_outliers=not args.keep_outliers)
    print(markdown(rows))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        write_tables(rows, out / "rank")
        record(written)
        print(f"tables: {out / 'rank.md'}, {out / 'rank.csv'}")
    return 0


VALIDATION_COMMANDS = {"validate": cmd_validate, "rank": cmd_rank}

COMMANDS = {**PLANNING_COMMANDS, **VALIDATION_COMMANDS, "reproduce": cmd_reproduce, "compare": cmd_compare, "report": cmd_report, "fit": cmd_fit, "resume": cmd_resume, "score": cmd_score,
            "datasets": cmd_datasets, "laws": cmd_laws}


def main(argv: Sequence[str] | None = None) -> int:
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
