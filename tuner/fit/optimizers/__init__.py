"""Optimizers behind one ask/tell interface, by name."""
from __future__ import annotations

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


def make_optimizer(name: str, space: Space, *, seed: int = 0, budget: int = 100,
                   **options) -> Optimizer:
    """Build optimizer ``name``; options the method does not take are ignored."""
    try:
        cls = OPTIMIZERS[name]
    except KeyError:
        raise TunerError(f"unknown optimizer {name!r}; choose one of "
                         f"{', '.join(OPTIMIZERS)}") from None
    import inspect
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in options.items() if k in accepted and v is not None}
    try:
        return cls(space, seed=seed, budget=budget, **kwargs)
    except ValueError as exc:
        raise TunerError(str(exc)) from None


__all__ = ["Config", "Optimizer", "config_key", "make_optimizer", "OPTIMIZERS", "LIARS",
           "SURROGATES"]
