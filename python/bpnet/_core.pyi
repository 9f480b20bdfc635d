"""Type stub for bpnet's compiled core (bpnet._core and its ISA twins
bpnet._core_avx2, bpnet._core_avx512, which have the same API).

Arrays must already have the working dtype (float64 or float32, chosen by
theta) and C order; nothing is converted here. Outputs (grad, out,
chunk_grads) are overwritten.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

class Workspace:
    def __init__(self) -> None: ...
    @property
    def nbytes(self) -> int: ...

build_info: dict[str, Any]
max_threads_limit: int

def n_params(layer_sizes: Sequence[int]) -> int: ...
def leaf_starts(m: int) -> npt.NDArray[np.int64]: ...
def cost_grad(
    theta: npt.NDArray[np.floating],
    layer_sizes: Sequence[int],
    X: npt.NDArray[np.floating],
    y: npt.NDArray[Any],
    lam: float,
    activation: str,
    output: str,
    sample_weight: npt.NDArray[np.floating] | None,
    grad: npt.NDArray[np.floating] | None,
    rows: npt.NDArray[np.int64] | None,
    n_threads: int,
    workspace: Workspace,
) -> tuple[float, npt.NDArray[np.floating]]: ...
def forward(
    theta: npt.NDArray[np.floating],
    layer_sizes: Sequence[int],
    X: npt.NDArray[np.floating],
    activation: str,
    output: str,
    out: npt.NDArray[np.floating] | None,
    rows: npt.NDArray[np.int64] | None,
    n_threads: int,
    workspace: Workspace,
) -> npt.NDArray[np.floating]: ...
def forward_cost(
    theta: npt.NDArray[np.floating],
    layer_sizes: Sequence[int],
    X: npt.NDArray[np.floating],
    y: npt.NDArray[Any],
    lam: float,
    activation: str,
    output: str,
    sample_weight: npt.NDArray[np.floating] | None,
    out: npt.NDArray[np.floating] | None,
    rows: npt.NDArray[np.int64] | None,
    n_threads: int,
    workspace: Workspace,
) -> tuple[float, npt.NDArray[np.floating]]: ...
def predict(
    theta: npt.NDArray[np.floating],
    layer_sizes: Sequence[int],
    X: npt.NDArray[np.floating],
    activation: str,
    out: npt.NDArray[np.int64] | None,
    rows: npt.NDArray[np.int64] | None,
    n_threads: int,
    workspace: Workspace,
) -> npt.NDArray[np.int64]: ...
def partial_sums(
    theta: npt.NDArray[np.floating],
    layer_sizes: Sequence[int],
    X: npt.NDArray[np.floating],
    y: npt.NDArray[Any],
    activation: str,
    output: str,
    sample_weight: npt.NDArray[np.floating] | None,
    starts: npt.NDArray[np.int64],
    leaf_grads: npt.NDArray[np.floating],
    n_threads: int,
    workspace: Workspace,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def finalize(
    theta: npt.NDArray[np.floating],
    layer_sizes: Sequence[int],
    lam: float,
    loss: float,
    weight_sum: float,
    grad: npt.NDArray[np.floating],
) -> float: ...
def adam_update(
    theta: npt.NDArray[np.floating],
    m1: npt.NDArray[np.floating],
    v: npt.NDArray[np.floating],
    grad: npt.NDArray[np.floating],
    beta_1: float,
    beta_2: float,
    step_size: float,
    epsilon: float,
    n_threads: int = -1,
) -> bool: ...
def sgd_update(
    theta: npt.NDArray[np.floating],
    velocity: npt.NDArray[np.floating],
    grad: npt.NDArray[np.floating],
    learning_rate: float,
    momentum: float,
    nesterov: bool,
    n_threads: int = -1,
) -> bool: ...
def scan_finite(x: npt.NDArray[np.floating], n_threads: int = -1) -> bool: ...
def reduce_tree(
    nodes: list[tuple[int, int, npt.NDArray[np.floating], float, float]], n_leaves: int
) -> list[tuple[int, int, npt.NDArray[np.floating], float, float]]: ...
def max_threads() -> int: ...
def cpu_supports(feature: str) -> bool: ...
