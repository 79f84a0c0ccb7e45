"""Command line: a thin layer over tuner.api. Bad input ends in one line and exit code 2."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .errors import TunerError


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
    p.add_argument("--space", help="ConfigSpace JSON file to search instead of "
                                   "search_spaces/<law>.json")
    p.add_argument("--fix", default="", metavar="K=V,...",
                   help="coefficients held fixed, e.g. 'alpha=0.34,beta=0.28'")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    return parser


def cmd_fit(args) -> int:
    from .api import FitConfig, fit
    from .spaces import parse_assignments
    config = FitConfig(law=args.law, data=args.data, optimizer=args.optimizer, evals=args.evals,
                       seed=args.seed, objective=args.objective, delta=args.delta,
                       drop_outliers=not args.keep_outliers, surrogate=args.surrogate,
                       liar=args.liar, n_initial_points=args.initial_points,
                       workers=args.workers, comms=args.comms, eval_delay=args.eval_delay,
                       space=args.space, fix=parse_assignments(args.fix, "--fix"))
    summary = fit(config, args.run_dir, quiet=args.quiet)
    if summary is not None:
        _print_summary(summary, args.json)
    return 0


def cmd_resume(args) -> int:
    from .api import resume
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
    for w in s.get("warnings", []):
        print(f"warning: {w}")


def cmd_score(args) -> int:
    from .api import score
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
    from .datasets import summary_rows
    from .tables import markdown
    rows = summary_rows()
    print(json.dumps(rows, indent=2) if args.json else markdown(rows))
    return 0


def cmd_laws(args) -> int:
    from .laws import LAWS
    from .spaces import published
    for law in LAWS.values():
        print(f"{law.name} ({law.equation}, {law.description}): {_fmt_params(published(law.name))}")
    return 0


COMMANDS = {"fit": cmd_fit, "resume": cmd_resume, "score": cmd_score,
            "datasets": cmd_datasets, "laws": cmd_laws}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except TunerError as exc:
        print(f"tuner: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tuner: interrupted; finished evaluations are in the run's results.csv "
              "('tuner resume RUN_DIR' continues)", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
