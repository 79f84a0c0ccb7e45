"""tuner: fit dense and sparse LLM scaling laws by Bayesian optimization on libEnsemble.

The API for notebooks and scripts (each name is loaded on first use, so ``import tuner``
stays cheap)::

    import tuner
    result = tuner.fit("hoffmann", "chinchilla_epoch", evals=60)
    result.params, result.objective, result.trials      # a FitResult
    tuner.load("runs/fit/...")                          # the same object, from disk
    tuner.load_runs("runs/fit/*")                       # one DataFrame row per run
    tuner.score("hoffmann", "chinchilla_epoch", result)
    tuner.predict("hoffmann", 7e10, 1.4e12, coefficients=result)
    tuner.allocate("hoffmann", [1e20, 5.76e23], coefficients=result)

See ``tuner.api`` for every function's arguments.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "fit": "tuner.api", "resume": "tuner.api", "load": "tuner.api",
    "load_runs": "tuner.api", "score": "tuner.api", "predict": "tuner.api",
    "allocate": "tuner.api", "validate": "tuner.api", "rank": "tuner.api",
    "sweep": "tuner.api", "datasets": "tuner.api", "coefficients": "tuner.api",
    "FitResult": "tuner.api", "FitConfig": "tuner.run.fit", "TunerError": "tuner.errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these load on first use
    from tuner.api import (FitResult, allocate, coefficients, datasets, load, load_runs,
                           predict, rank, resume, score, sweep, validate)
    from tuner.errors import TunerError
    from tuner.run.fit import FitConfig


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tuner' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
