"""A user's grid of fits: laws × datasets × options × seeds from one file, one results table.

The sweep file is JSON (``.json``) or TOML (``.toml``), read by ``json``/``tomllib`` only and
never evaluated::

    {"laws": ["hoffmann", "kaplan", "e + a/N**alpha + b/D**beta"],
     "datasets": ["chinchilla_epoch", "runs.csv"],
     "evals": 100, "seeds": [0, 1],
     "options": {"optimizer": ["ytopt", "lbfgs"], "residual": "log"}}

``laws`` and ``datasets`` are required; ``evals`` (default 200) is an integer or a list;
``seeds`` (default [0]) a list of integers; ``options`` holds ``fit``'s options by their
Python names (``tuner.FitConfig``), each one value or a list of values (a list is one more
axis of the grid). Relative paths (CSV files, law files, space files) are read from the
sweep file's directory. Every combination is checked before any fit runs; a bad one is one
error naming the file and the field.

Each combination is one task, a whole in-process fit (as ``rank`` fits), and all the tasks
run as one libEnsemble ensemble (``tuner.run.batch``), so the table does not depend on the
worker count.
"""
from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from tuner.errors import TunerError

KEYS = ("laws", "datasets", "evals", "seeds", "options")
# fit's options a sweep may vary (FitConfig fields); the run's own settings (workers, comms,
# eval_delay, bootstrap) belong to the command line, not to a fit of the grid.
OPTIONS = ("optimizer", "objective", "delta", "drop_outliers", "residual", "columns", "group",
           "per_group", "surrogate", "liar", "n_initial_points", "polish", "profile",
           "faithful", "space", "fix")
PATH_OPTIONS = ("space",)
MAX_FITS = 100_000  # a grid beyond this is a typo, not a study


def read_file(path: str | Path) -> dict:
    """The sweep file's object; TunerError naming the file if it cannot be read or parsed."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise TunerError(f"{path}: cannot read the sweep file ({exc.strerror or exc})") from None
    if path.suffix.lower() == ".toml":
        import tomllib
        try:
            raw = tomllib.loads(text.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise TunerError(f"{path}: not valid TOML ({exc})") from None
    else:
        try:
            raw = json.loads(text.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TunerError(f"{path}: not valid JSON ({exc}); a sweep file is JSON, or TOML "
                             "named .toml") from None
    if not isinstance(raw, dict):
        raise TunerError(f"{path}: a sweep file is an object with 'laws' and 'datasets' "
                         f"(and optionally {', '.join(KEYS[2:])}), got {type(raw).__name__}")
    return raw


def _strings(raw: dict, key: str, path: Path) -> list[str]:
    value = raw.get(key)
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v.strip() for v in value)):
        raise TunerError(f"{path}: '{key}' must be a non-empty list of strings, got "
                         f"{json.dumps(value)}")
    return value


def _integers(value: Any, field: str, path: Path, minimum: int | None) -> list[int]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise TunerError(f"{path}: '{field}' is an empty list")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or (minimum is not None
                                                             and v < minimum):
            bound = f" >= {minimum}" if minimum is not None else ""
            raise TunerError(f"{path}: '{field}' must be an integer{bound} or a list of them, "
                             f"got {json.dumps(v)}")
    return values


def _relative(value: str, base: Path) -> str:
    """A path in the file, read from the file's directory (names and formulas unchanged)."""
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p))


def _axis(key: str, value: Any) -> list:
    """The values of one option: a list is an axis of the grid, except where one value is a
    list itself (``per_group``: a list of lists is the axis)."""
    if not isinstance(value, list):
        return [value]
    if key == "per_group" and not all(isinstance(v, list) for v in value):
        return [value]
    return value


def plan(path: str | Path) -> tuple[list, list[str]]:
    """Every combination of the sweep file as a checked ``FitConfig``, in table order
    (laws, then datasets, then options, then evals, then seeds; the last varies fastest),
    and the options the file sets."""
    from tuner.data.datasets import catalog, load, resolve_data_path
    from tuner.laws import get_law
    from tuner.run.fit import FitConfig, prepare
    path = Path(path)
    raw = read_file(path)
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise TunerError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))} (known: "
                         f"{', '.join(KEYS)})")
    base = path.resolve().parent
    laws = _strings(raw, "laws", path)
    datasets = _strings(raw, "datasets", path)
    evals = _integers(raw.get("evals", 200), "evals", path, 1)
    if "seeds" in raw and not isinstance(raw["seeds"], list):
        raise TunerError(f"{path}: 'seeds' must be a list of integers, e.g. [0, 1, 2], got "
                         f"{json.dumps(raw['seeds'])}")
    seeds = _integers(raw.get("seeds", [0]), "seeds", path, 0)
    options = raw.get("options", {})
    if not isinstance(options, dict):
        raise TunerError(f"{path}: 'options' must be an object of fit options, got "
                         f"{json.dumps(options)}")
    bad = sorted(set(options) - set(OPTIONS))
    if bad:
        raise TunerError(f"{path}: options: unknown option(s) {', '.join(map(repr, bad))} "
                         f"(known: {', '.join(OPTIONS)})")

    law_specs = []
    for i, law in enumerate(laws):
        spec = _relative(law, base) if law.endswith(".json") else law
        try:
            get_law(spec)
        except TunerError as exc:
            raise TunerError(f"{path}: laws[{i}]: {exc}") from None
        law_specs.append(spec)
    data_specs = []
    for i, data in enumerate(datasets):
        is_path = data.endswith(".csv") or "/" in data
        spec = _relative(data, base) if is_path and data not in catalog() else data
        try:
            spec = resolve_data_path(spec)
            load(spec, drop_outliers=False)
        except TunerError as exc:
            raise TunerError(f"{path}: datasets[{i}]: {exc}") from None
        data_specs.append(spec)

    axes = {}
    for key, value in options.items():
        values = _axis(key, value)
        if not values:
            raise TunerError(f"{path}: options.{key} is an empty list")
        if key in PATH_OPTIONS:
            values = [_relative(v, base) if isinstance(v, str) and v.endswith(".json") else v
                      for v in values]
        for v in values:  # each value on its own, on the first law and dataset
            _check(FitConfig(law_specs[0], data_specs[0]), {key: v}, f"options.{key}", path)
        axes[key] = values

    n = len(law_specs) * len(data_specs) * math.prod(map(len, axes.values())) \
        * len(evals) * len(seeds)
    if n > MAX_FITS:
        raise TunerError(f"{path}: the grid holds {n} fits, more than {MAX_FITS}; split it")
    configs, checked = [], {}
    for law, data, combo, budget in itertools.product(
            law_specs, data_specs, itertools.product(*axes.values()), evals):
        opts = dict(zip(axes, combo))
        where = f"laws '{law}' × datasets '{Path(data).name}'" + "".join(
            f" × options.{k}={json.dumps(v)}" for k, v in opts.items())
        config = _check(FitConfig(law, data, evals=budget), opts, where, path)
        key = json.dumps([law, data, opts, budget], sort_keys=True, default=str)
        if key not in checked:  # seeds do not change what can go wrong
            try:
                prepare(replace(config))
            except TunerError as exc:
                raise TunerError(f"{path}: {where}: {exc}") from None
            checked[key] = True
        configs += [replace(config, seed=s) for s in seeds]
    return configs, list(axes)


def _check(config, opts: dict, where: str, path: Path):
    """``config`` with ``opts``, checked; TunerError naming the file and ``where``."""
    try:
        config = replace(config, **opts)
        config.check()
    except (TypeError, TunerError) as exc:
        raise TunerError(f"{path}: {where}: {exc}") from None
    return config


def fit_one(config) -> dict:
    """One fit of the grid, in process: the table row (coefficients under ``params``)."""
    from tuner.fitting.diagnostics import degenerate
    from tuner.fitting.loop import minimize_inprocess
    from tuner.run.fit import prepare
    start = time.perf_counter()
    prep = prepare(config)
    history: list[float] = []
    final: dict = {}
    params, value = minimize_inprocess(prep.objective, prep.space, config.optimizer,
                                       budget=config.evals, seed=config.seed, history=history,
                                       final=final, **config.options())
    return {"objective_value": value, "rmse_log": prep.objective.rmse_log(params),
            "evaluations": len(history), "wall_seconds": time.perf_counter() - start,
            "warnings": degenerate(final["space"], params, prep.objective.dataset),
            "params": params, "law_name": prep.objective.law.name}


def sweep(path: str | Path, *, workers: int = 1, comms: str = "local",
          progress: Callable[[int, int], None] | None = None) -> list[dict] | None:
    """Run every fit the sweep file lists; one row per fit, in the file's order (None on MPI
    worker ranks). Rows: fit (1, 2, ...), law, data, the options the file sets, evals, seed, evaluations,
    best_objective, rmse_log, wall_seconds, warnings (their text), params."""
    from tuner.run.batch import Task, check_parallel, run_tasks
    check_parallel(workers, comms)
    configs, options = plan(path)
    results = run_tasks([Task(fit_one, c) for c in configs], workers=workers, comms=comms,
                        progress=progress)
    if results is None:
        return None
    rows = []
    for i, (config, r) in enumerate(zip(configs, results), 1):
        data = config.data if "/" not in config.data else Path(config.data).name
        rows.append({"fit": i, "law": r["law_name"], "data": data,
                     **{k: getattr(config, k) for k in options},
                     "evals": config.evals, "seed": config.seed,
                     "evaluations": r["evaluations"], "best_objective": r["objective_value"],
                     "rmse_log": r["rmse_log"], "wall_seconds": r["wall_seconds"],
                     "warnings": r["warnings"], "params": r["params"]})
    return rows


def table_rows(rows: list[dict]) -> list[dict]:
    """The rows as a table: warnings as a count, one column per coefficient."""
    out = []
    for r in rows:
        t = {k: v for k, v in r.items() if k not in ("warnings", "params")}
        t = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in t.items()}
        t["warnings"] = len(r["warnings"])
        t.update(r["params"])
        out.append(t)
    return out
