"""The one ask/tell loop that drives any optimizer, wherever the evaluations run.

``drive`` asks the optimizer for as many points as there are idle workers, hands them to an
executor, and tells each finished ``Evaluation`` as soon as the executor returns it, until the
budget is spent or the optimizer is done. libEnsemble's generator is one executor
(``tuner.run.ensemble``); ``InProcess`` runs the evaluations here, one at a time (bootstrap
refits, validation, ranking, tests, benchmarks). ``minimize_inprocess`` is the short form.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping, Protocol, Sequence

from tuner.fitting.evaluation import Config, Evaluation, evaluate
from tuner.fitting.objective import Objective
from tuner.fitting.optimizers import Optimizer, make_optimizer
from tuner.laws.spaces import Space


class Executor(Protocol):
    def submit(self, batch: Sequence[tuple[int, Config]]) -> None:
        """Start evaluating these (eval_id, proposal) pairs."""

    def results(self) -> list[Evaluation] | None:
        """Block until at least one submitted evaluation finished; None: stop now."""


def drive(opt: Optimizer, executor: Executor, *, budget: int, workers: int = 1,
          first_id: int = 0, on_results: Callable[[list[Evaluation]], None] | None = None
          ) -> int:
    """Run ``opt`` for at most ``budget`` evaluations; returns how many were told."""
    asked = told = 0
    next_id = first_id
    inflight: set[int] = set()
    while True:
        idle = min(workers - len(inflight), budget - asked)
        configs = opt.ask(idle) if idle > 0 else []
        if configs:
            batch = [(next_id + i, c) for i, c in enumerate(configs)]
            next_id += len(batch)
            asked += len(batch)
            inflight.update(i for i, _ in batch)
            executor.submit(batch)
        elif not inflight:
            return told  # budget spent or optimizer finished, nothing in flight
        done = executor.results()
        if done is None:
            return told
        if not done:
            continue
        for ev in done:
            inflight.discard(ev.eval_id)
        opt.tell_evaluations(done)
        told += len(done)
        if on_results is not None:
            on_results(done)


class InProcess:
    """Evaluations run in this process, in the order submitted."""

    def __init__(self, evaluate_one: Callable[[int, Config], Evaluation]):
        self.evaluate_one = evaluate_one
        self.queue: list[tuple[int, Config]] = []

    def submit(self, batch: Sequence[tuple[int, Config]]) -> None:
        self.queue.extend(batch)

    def results(self) -> list[Evaluation]:
        eval_id, config = self.queue.pop(0)
        return [self.evaluate_one(eval_id, config)]


def warm_space(space: Space, start: Mapping[str, float]) -> Space:
    """``space`` with ``start`` (clipped into the bounds) as its default configuration."""
    dims = tuple(replace(d, default=float(min(max(start[d.name], d.lower), d.upper)))
                 for d in space.dims)
    return replace(space, dims=dims)


def minimize_inprocess(objective: Objective, space: Space, optimizer: str = "lbfgs", *,
                       budget: int = 400, seed: int = 0,
                       start: Mapping[str, float] | None = None,
                       n_starts: int | None = None, history: list[float] | None = None,
                       final: dict | None = None,
                       **options) -> tuple[dict[str, float], float]:
    """Best (coefficients, objective) after at most ``budget`` evaluations, one at a time.

    ``history``, when given, receives every objective value in order; ``final`` receives the
    space the run ended with (``"space"``: soft bounds it widened) and ``"widenings"``;
    ``options`` are the optimizer's own (e.g. ``surrogate``, ``polish``), checked like the
    command line's."""
    if start is not None:
        space = warm_space(space, start)
    context = {"gradients": True, "n_starts": n_starts,
               # the 'paper' objective has no residuals to solve linear coefficients from
               "profile_allowed": objective.spec.kind != "paper"}
    opt = make_optimizer(optimizer, space, seed=seed, budget=budget, options=options,
                         context=context)
    try:
        drive(opt, InProcess(lambda i, c: evaluate(objective, opt.space, c, i)), budget=budget,
              on_results=(None if history is None
                          else lambda evs: history.extend(e.value for e in evs)))
    finally:
        opt.close()
    if final is not None:
        final.update(space=opt.space, widenings=list(opt.widenings))
    best = opt.best()
    if best is None:
        raise RuntimeError("optimizer proposed no configuration")
    return dict(best[0]), float(best[1])
