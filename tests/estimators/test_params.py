"""The parameter rules (bpnet._params): one table, each rule checked once per fit."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import bpnet
from bpnet import _params as P


def _counting(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Wrap every rule so each evaluation is counted by (rule, value)."""
    calls: Counter = Counter()
    for rid, rule in list(P.RULES.items()):

        def accepts(v, rid=rid, inner=rule.accepts):
            calls[rid, repr(v)] += 1
            return inner(v)

        monkeypatch.setitem(P.RULES, rid, P.Rule(accepts, rule.expected))
    return calls


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver, early", [("lbfgs", False), ("adam", False), ("sgd", True)])
def test_each_rule_is_checked_once_per_fit(monkeypatch, solver, early):
    pytest.importorskip("sklearn")
    calls = _counting(monkeypatch)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 4)), np.arange(60) % 3
    bpnet.BPNetClassifier(5, solver=solver, max_iter=3, early_stopping=early,
                          random_state=0).fit(X, y)
    assert calls["solver", repr(solver)] == 1  # was 3: estimator, Network.fit, the loop
    assert calls, "no rule was evaluated"
    twice = {k: n for k, n in calls.items() if n > 1}
    assert not twice, twice


def test_a_network_fit_on_its_own_checks_its_solver_once(monkeypatch):
    calls = _counting(monkeypatch)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)), np.arange(40) % 2
    bpnet.Network([3, 4, 2], output="softmax", rng=0).fit(X, y, solver="adam", max_iter=2)
    assert calls["solver", "'adam'"] == 1
    assert calls["minibatch_solver", "'adam'"] == 1


def test_outside_a_fit_every_call_checks():
    calls: Counter = Counter()
    rule = P.RULES["count"]
    try:
        P.RULES["count"] = P.Rule(lambda v: calls.update([v]) or rule.accepts(v), rule.expected)
        for _ in range(3):
            P.check("max_iter", 5, "count")
    finally:
        P.RULES["count"] = rule
    assert calls[5] == 3


@pytest.mark.parametrize(
    "name, value, rule, message",
    [
        ("momentum", 1.0, "fraction", r"^momentum must be in \[0, 1\); got 1.0$"),
        ("n_threads", 0, None, r"^n_threads must be None, -1 or an int in \[1, \d+\]; got 0$"),
        ("timeout", -1, None, r"^timeout must be 'auto', None or a number > 0; got -1$"),
        ("alpha", float("nan"), "non_negative", r"^alpha must be a finite number >= 0; got nan$"),
        ("max_iter", True, "count", r"^max_iter must be an int >= 1; got True$"),
    ],
)
def test_a_broken_rule_names_the_argument_and_the_value(name, value, rule, message):
    with pytest.raises(ValueError, match=message):
        P.check(name, value, rule)


@pytest.mark.parametrize("spelling", ["float32", "f4", np.float32, np.dtype(">f4")])
def test_the_dtype_rule_reads_any_spelling(spelling):
    assert P.check_dtype(spelling) == np.dtype(np.float32)


def test_the_dtype_rule_rejects_none_everywhere():
    """One answer for None (the README: it is rejected, not float64)."""
    for call in (lambda: P.check_dtype(None), lambda: bpnet.random_theta((2, 2), 0, dtype=None),
                 lambda: bpnet.Network([2, 2], dtype=None)):
        with pytest.raises(ValueError, match=r"^dtype must be 'float64' or 'float32'; got None"):
            call()
