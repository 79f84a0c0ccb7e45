import numpy as np
import pytest

from tuner.errors import TunerError
from tuner.objective import Objective, ObjectiveSpec
from tuner.optimizers import OPTIMIZERS, config_key, make_optimizer
from tuner.optimizers.sampling import grid_shape
from tuner.refit import internal_grad
from tuner.spaces import load_space

EPOCH = {"e": 1.8169, "a": 482.01, "b": 2085.43, "alpha": 0.3478, "beta": 0.3658}


@pytest.fixture(scope="module")
def problem():
    return load_space("hoffmann"), Objective.from_spec(ObjectiveSpec("hoffmann",
                                                                     "chinchilla_epoch"))


def score(opt, obj, c):
    """Value and gradient in internal coordinates, as the ensemble's workers return them."""
    return internal_grad(obj, opt.space, c)


def drive(opt, obj, budget, batch=1, gradients=True):
    """Serial ask/tell loop, with ``batch`` points in flight as the ensemble would."""
    inflight, n, history = [], 0, []
    while n < budget:
        room = min(batch - len(inflight), budget - n)
        new = opt.ask(room) if room > 0 else []
        inflight += new
        n += len(new)
        if not inflight:
            break
        inflight, rest = inflight[:1], inflight[1:]
        for c in inflight:
            v, g = score(opt, obj, c)
            opt.tell([c], [v], [g] if gradients else None)
            history.append((config_key(opt.space, c), v))
        inflight = rest
        if n >= budget:
            for c in inflight:
                v, g = score(opt, obj, c)
                opt.tell([c], [v], [g] if gradients else None)
                history.append((config_key(opt.space, c), v))
            inflight = []
    return history


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_contract_and_reproducible(problem, name):
    space, obj = problem
    runs = []
    for _ in range(2):
        opt = make_optimizer(name, space, seed=3, budget=40, n_initial_points=5)
        runs.append(drive(opt, obj, 14, batch=2))
    assert runs[0] == runs[1]
    keys = [k for k, _ in runs[0]]
    assert len(keys) == len(set(keys)) == 14
    b = space.bounds
    for k in keys:
        u = space.encode(dict(zip(space.names, k)))
        assert np.all(u >= b[:, 0] - 1e-9) and np.all(u <= b[:, 1] + 1e-9)


@pytest.mark.parametrize("surrogate", ["RF", "ET", "GBRT", "GP"])
def test_ytopt_surrogates_default_first_and_learn(problem, surrogate):
    space, obj = problem
    opt = make_optimizer("ytopt", space, seed=0, budget=16, surrogate=surrogate,
                         n_initial_points=5)
    first = opt.ask(1)[0]
    assert first == space.default()
    opt.tell([first], [obj(first)])
    drive(opt, obj, 10, batch=3)  # past the initial points: the surrogate is used
    assert len(opt.y) == 11 and not opt.pending


def test_ytopt_lies_never_become_observations(problem):
    space, obj = problem
    opt = make_optimizer("ytopt", space, seed=0, budget=30, n_initial_points=3)
    batch = opt.ask(3)
    opt.tell(batch, [obj(c) for c in batch])
    more = opt.ask(4)  # four points with liars on a copy
    assert len({config_key(space, c) for c in more}) == 4
    assert len(opt._opt.yi) == 3 and len(opt.y) == 3


def test_unknown_options():
    space = load_space("hoffmann")
    with pytest.raises(TunerError, match="unknown optimizer"):
        make_optimizer("bogus", space)
    with pytest.raises(TunerError, match="unknown surrogate"):
        make_optimizer("ytopt", space, surrogate="XGB")
    with pytest.raises(TunerError, match="unknown liar"):
        make_optimizer("ytopt", space, liar="cl_median")


def test_grid_shape_and_exhaustion(problem):
    assert grid_shape(5, 200) == [3, 3, 3, 3, 3] or np.prod(grid_shape(5, 200)) <= 200
    assert np.prod(grid_shape(5, 200)) <= 200 and min(grid_shape(5, 200)) >= 2
    assert grid_shape(2, 10) == [4, 2] or np.prod(grid_shape(2, 10)) <= 10
    space, obj = problem
    opt = make_optimizer("grid", space, seed=0, budget=40)
    hist = drive(opt, obj, 1000, batch=4)
    assert len(hist) == np.prod(opt.shape) <= 40 and opt.finished


def test_resume_by_telling_history_skips_done_points(problem):
    space, obj = problem
    for name in ("random", "grid", "lbfgs"):
        full = drive(make_optimizer(name, space, seed=1, budget=60), obj, 30)
        opt = make_optimizer(name, space, seed=1, budget=60)
        done = full[:12]
        opt.tell([space.complete(dict(zip(space.names, k))) for k, _ in done],
                 [v for _, v in done])
        opt.grads.update({k: score(opt, obj, space.complete(dict(zip(space.names, k))))[1]
                          for k, _ in done})
        rest = drive(opt, obj, 18)
        assert [k for k, _ in done + rest] == [k for k, _ in full], name


@pytest.mark.parametrize("gradients,budget", [(True, 400), (False, 3000)])
def test_lbfgs_reaches_epoch_refit(problem, gradients, budget):
    space, obj = problem
    opt = make_optimizer("lbfgs", space, seed=0, budget=budget, gradients=gradients)
    drive(opt, obj, budget, batch=2, gradients=gradients)
    best = opt.best()
    assert best[1] <= obj(EPOCH) * (1 + 1e-6)
    assert best[0]["alpha"] == pytest.approx(EPOCH["alpha"], rel=0.01)
    assert best[0]["beta"] == pytest.approx(EPOCH["beta"], rel=0.01)
    assert best[0]["e"] == pytest.approx(EPOCH["e"], rel=0.01)
