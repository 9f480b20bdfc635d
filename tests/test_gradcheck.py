import numpy as np
import pytest

import bpnet


@pytest.mark.parametrize("lam", [0.0, 3.0])
def test_classic_check_net(lam):
    """3-5-3 net, 5 examples, debug init: backprop matches central differences."""
    report = bpnet.check_gradients((3, 5, 3), lam)
    assert report.relative_difference < 1e-9, str(report)
    assert report.numerical.shape == (bpnet.n_params((3, 5, 3)),)
    assert [r.shape for r in report.layers] == [(5, 4), (3, 6)]


def test_report_flags_a_wrong_gradient():
    """The harness is not blind: a gradient off in one bias entry is reported."""
    theta, X, y = bpnet.gradcheck.classic_check_data()
    real = bpnet.cost_grad

    def broken(*args, **kw):
        J, g = real(*args, **kw)
        g = g.copy()
        g[0] += 1e-3
        return J, g

    bpnet.gradcheck.cost_grad = broken
    try:
        report = bpnet.check_gradients((3, 5, 3), 0.0)
    finally:
        bpnet.gradcheck.cost_grad = real
    assert report.relative_difference > 1e-6
    assert report.layers[0].bias > 1e-6
    assert report.layers[1].relative_difference < 1e-9
    assert not report.ok()
    assert np.isfinite(report.weights)
