"""Optimizers behind one ask/tell interface, by name."""
from __future__ import annotations

import inspect
from typing import Mapping

from tuner.errors import TunerError
from tuner.laws.spaces import Space
from .base import Config, Optimizer, config_key
from .lbfgs import LBFGSOptimizer
from .sampling import GridSearch, RandomSearch
from .ytopt import LIARS, SURROGATES, YtoptOptimizer

OPTIMIZERS: dict[str, type[Optimizer]] = {
    "ytopt": YtoptOptimizer,
    "grid": GridSearch,
    "random": RandomSearch,
    "lbfgs": LBFGSOptimizer,
}


# Options a user sets (command line, API), by optimizer, with their command-line flags.
OPTION_FLAGS = {"surrogate": "--surrogate", "liar": "--liar",
                "n_initial_points": "--initial-points", "polish": "--polish",
                "profile": "--no-profile", "faithful": "--faithful"}


def make_optimizer(name: str, space: Space, *, seed: int = 0, budget: int = 100,
                   options: Mapping[str, object] | None = None,
                   context: Mapping[str, object] | None = None) -> Optimizer:
    """Build optimizer ``name``.

    ``options`` are the user's (None means not given): one the method does not use is an
    error, never silently dropped. ``context`` is what the caller knows (``gradients``: the
    evaluator returns them; ``profile_allowed``: linear coefficients can be solved;
    ``n_starts``), passed to the methods that use it."""
    try:
        cls = OPTIMIZERS[name]
    except KeyError:
        raise TunerError(f"unknown optimizer {name!r}; choose one of "
                         f"{', '.join(OPTIMIZERS)}") from None
    given = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = [k for k in given if k not in OPTION_FLAGS]
    if unknown:
        raise TunerError(f"unknown optimizer option(s) {', '.join(unknown)}")
    unused = [k for k in given if k not in cls.OPTIONS]
    if unused:
        takes = ", ".join(OPTION_FLAGS[k] for k in cls.OPTIONS) or "no options"
        raise TunerError(f"{', '.join(OPTION_FLAGS[k] for k in unused)}: not used by "
                         f"--optimizer {name} (it takes {takes})")
    accepted = inspect.signature(cls.__init__).parameters
    extra = {k: v for k, v in (context or {}).items() if k in accepted and v is not None}
    try:
        return cls(space, seed=seed, budget=budget, **given, **extra)
    except ValueError as exc:
        raise TunerError(str(exc)) from None


__all__ = ["Config", "Optimizer", "config_key", "make_optimizer", "OPTIMIZERS", "OPTION_FLAGS",
           "LIARS", "SURROGATES"]
