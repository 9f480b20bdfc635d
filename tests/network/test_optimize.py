"""bpnet.optimize: the mini-batch ``state`` dict (keys per solver, resuming)."""

import numpy as np
import pytest

from bpnet.optimize import STATE_ARRAYS, minimize_minibatch


def _quadratic(theta, rows, grad):
    grad[...] = theta - 1.0
    return float(0.5 * np.sum((theta - 1.0) ** 2))


@pytest.mark.parametrize(
    "solver, keys",
    [("adam", {"moment1", "moment2", "step", "lr", "t"}), ("sgd", {"velocity", "step", "lr", "t"})],
)
def test_state_keys_per_solver(solver, keys):
    state = {}
    minimize_minibatch(_quadratic, np.zeros(3), 10, solver=solver, max_iter=2, batch_size=5,
                       tol=0, state=state, rng=0)
    assert set(state) == keys and set(STATE_ARRAYS[solver]) < keys
    assert state["step"] == 2 * 2 and state["t"] == 2 * 10


def test_resuming_continues_the_same_run():
    once, twice = {}, {}
    kw = dict(solver="adam", batch_size=5, tol=0, shuffle=False)
    full = minimize_minibatch(_quadratic, np.zeros(3), 10, max_iter=4, state=once, **kw)
    half = minimize_minibatch(_quadratic, np.zeros(3), 10, max_iter=2, state=twice, **kw)
    rest = minimize_minibatch(_quadratic, half.theta, 10, max_iter=2, state=twice, **kw)
    assert rest.theta.tobytes() == full.theta.tobytes()
    assert twice["moment1"].tobytes() == once["moment1"].tobytes()


@pytest.mark.parametrize("first, then", [("adam", "sgd"), ("sgd", "adam")])
def test_state_of_the_other_solver_is_refused(first, then):
    state = {}
    minimize_minibatch(_quadratic, np.zeros(3), 10, solver=first, max_iter=1, state=state)
    pattern = (rf"state holds .*{STATE_ARRAYS[first][0]}.*"
               rf"solver='{then}' resumes from .*{STATE_ARRAYS[then][0]}")
    with pytest.raises(ValueError, match=pattern):
        minimize_minibatch(_quadratic, np.zeros(3), 10, solver=then, max_iter=1, state=state)
