"""The ISA build is part of the determinism contract (issue 19, item 16).

- :func:`bpnet._runtime.using_build` runs one thread's core calls on another
  build, and only that thread's;
- a fit records the build it ran on (``FitResult.build``, the model file's
  ``training.build``); a file without the field still loads (format version 1
  does not require it), one with an unknown build is refused;
- :func:`bpnet.distributed.choose_build` picks one build every process of a
  distributed fit can run, or refuses naming who lacks it.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import bpnet
from bpnet import _native, _runtime
from bpnet.distributed import choose_build
from bpnet.network import Network

SIZES = (6, 4, 3)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((700, SIZES[0]))
    return X, rng.integers(0, SIZES[-1], 700)


def theta0() -> np.ndarray:
    return bpnet.random_theta(SIZES, np.random.default_rng(2))


@pytest.mark.parametrize("build", _native.available())
def test_using_build_runs_that_build_in_this_thread_only(data, build):
    X, y = data
    mod = _native.load(build)
    want = mod.cost_grad(theta0(), SIZES, X, y, 0.5, "sigmoid", "sigmoid", None, None, None, 1,
                         mod.Workspace())
    seen: list[str] = []
    with _runtime.using_build(build) as name:
        assert name == build == _runtime.active_build()
        other = threading.Thread(target=lambda: seen.append(_runtime.active_build()))
        other.start()
        other.join()
        J, g = _runtime.cost_grad(theta0(), SIZES, X, y, 0.5, "sigmoid", "sigmoid", None, None,
                                  None, 1)
    assert seen == [_native.core.build_info["isa"]]  # another thread: the default build
    assert _runtime.active_build() == _native.core.build_info["isa"]
    assert J == want[0]
    np.testing.assert_array_equal(g, want[1])


def test_using_an_unknown_build_is_refused():
    with pytest.raises(ValueError, match="isa must be one of"):
        with _runtime.using_build("sse9"):
            pass


def test_a_fit_and_its_model_file_record_the_build(data, tmp_path):
    X, y = data
    builds = _native.available()
    for build in (builds[0], builds[-1]):
        with _runtime.using_build(build):
            net = Network(SIZES, theta=theta0()).fit(X, y, max_iter=5)
        assert net.result.build == build
        body, arrays = net._record()
        assert body["training"]["build"] == build
        back = bpnet.load(net.save(tmp_path / f"{build}.bpnet"))
        assert back.result.build == build
    # format version 1 does not require the field: a record without it loads
    del body["training"]["build"]
    assert Network._from_record(body, arrays).result.build is None
    body["training"]["build"] = "sse9"
    with pytest.raises(ValueError, match=r"training.build must be one of \('baseline', "
                       r"'avx2', 'avx512'\) or absent; got 'sse9'"):
        Network._from_record(body, arrays)


def test_choose_build_picks_the_highest_common_or_refuses():
    everything = ["baseline", "avx2", "avx512"]
    assert choose_build(everything, {"a": everything, "b": ["baseline", "avx2"]}) == "avx2"
    assert choose_build(everything, {"a": everything}) == "avx512"
    assert choose_build(["baseline", "avx2"], {"a": everything}) == "avx2"
    assert choose_build(everything, {"a": everything}, forced="baseline") == "baseline"
    with pytest.raises(ValueError, match=r"BPNET_ISA=avx512 on the driver, but not every "
                       r"process can run that build: .*'b': \['baseline', 'avx2'\].* unset "
                       r"BPNET_ISA or set it to one of \['baseline', 'avx2'\]"):
        choose_build(everything, {"a": everything, "b": ["baseline", "avx2"]}, forced="avx512")
    with pytest.raises(ValueError, match=r"no build of bpnet's core that the driver and every "
                       r"worker can run: .*'b': \[\].* install the same bpnet wheel"):
        choose_build(everything, {"a": everything, "b": []})
