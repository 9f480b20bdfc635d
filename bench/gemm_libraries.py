"""The matrix products alone in each BLAS, beside the whole cost + gradient.

    python bench/gemm_libraries.py [--case C] [--rounds 5] [--dtypes float64,float32]
                                   [--out FILE]

Case C of bench/run.py (``[784, 512, 256, 10]``, m = 10,000) is GEMM-bound:
bpnet's cost + gradient takes little more than its matrix products, and so
does PyTorch's. This script asks how fast those products run in each library
that a peer uses, at the network's own shapes, and so where the ceiling of a
"1.2x the fastest peer" target lies:

- ``mkl products``: the products of one fused pass through ``torch.matmul``
  with ``out=`` (PyTorch's CPU wheels run them on Intel MKL);
- ``openblas products``: the same through ``np.matmul`` (OpenBLAS), as
  bench/run.py's ``openblas-gemm`` row;
- ``eigen products``: bench/eigen_gemm.cpp (the ``eigen-gemm`` row, compiled
  with bpnet's avx512 or avx2 flags), the faster of Eigen's own threading on
  whole-m products and bpnet's split into row blocks;
- ``bpnet``: the public ``bpnet.cost_grad`` (bench/run.py's ``bpnet`` system);
- ``torch``: PyTorch's whole cost + gradient (bench/run.py's ``torch`` system).

The products are ``systems.gemm_pass``'s (those of ``systems.openblas_gemm``):
forward ``Z = A W^T`` per layer, gradient ``G = D^T A`` per layer and ``D W``
for the hidden deltas (no activation, bias, loss or reduction). All run in this process, one system
after another in each round (the Eigen program as a child process), each the
best of 5 calls per round; the report gives the median over the rounds and
the rounds' range. Threads: bpnet's count for every library.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # bench/ is on the path (above)
import systems as S

CASES = {"A": ([400, 25, 10], 5000), "B": ([64, 25, 10], 1797),
         "C": ([784, 512, 256, 10], 10000)}
CALLS = 5


def numpy_products(d, sizes):
    """The fused pass's products through NumPy (OpenBLAS), as
    ``systems.openblas_gemm``; the step returns the weight-gradient products
    G^(l) (s_{l+1}, s_l)."""
    import numpy as np

    ops = S.gemm_operands(sizes, d["X"])
    return lambda: S.gemm_pass(*ops, lambda a, b, out: np.matmul(a, b, out=out))


def torch_products(d, sizes):
    """The same products through ``torch.matmul`` (MKL in PyTorch's CPU wheels);
    the step returns the G^(l) as NumPy views."""
    import torch

    tdt = torch.from_numpy(d["X"]).dtype
    ops = S.gemm_operands(sizes, d["X"], empty=lambda shape: torch.empty(shape, dtype=tdt),
                          convert=torch.from_numpy)

    def step():
        G = S.gemm_pass(*ops, lambda a, b, out: torch.matmul(a, b, out=out))
        return [g.numpy() for g in G]

    return step


def _best(step) -> float:
    t = []
    for _ in range(CALLS):
        t0 = time.perf_counter()
        step()
        t.append(time.perf_counter() - t0)
    return min(t)


def _eigen(exe, sizes, m, dtype, threads) -> float:
    """The faster of Eigen's own threading (whole-m products) and bpnet's split
    into row blocks (256 and 512 rows), seconds."""
    rows = machine.run_eigen(exe, sizes, m, dtype, [threads], [0], "eigen", CALLS, 0.2)
    rows += machine.run_eigen(exe, sizes, m, dtype, [threads], [256, 512], "chunks", CALLS,
                              0.2)
    return min(r["median_s"] for r in rows)


def run(case: str, dtypes: list[str], rounds: int, say=print) -> dict:
    import torch

    import bpnet

    sizes, m = CASES[case]
    threads = bpnet.build_info()["max_threads"]
    torch.set_num_threads(threads)
    isa = bpnet.build_info()["isa"]
    exe = machine.eigen_binary("avx512" if isa == "avx512" else "avx2")
    say(f"case {case}: layer_sizes={sizes}, m={m}; {threads} threads for every library "
        f"(bpnet's {isa} build, Eigen's program with its flags); best of {CALLS} calls "
        f"per round, {rounds} rounds")
    out = {}
    for dtype in dtypes:
        d = S.cast(S.make_data(sizes, m), dtype)
        steps = {"mkl products": torch_products(d, sizes),
                 "openblas products": numpy_products(d, sizes),
                 "bpnet": S.bpnet_public(d, sizes, 1.0),
                 "torch": S.torch_system(d, sizes, 1.0)}
        for step in steps.values():
            step()
        t: dict[str, list[float]] = {k: [] for k in [*steps, "eigen products"]}
        for r in range(rounds):
            order = list(steps)[r % len(steps):] + list(steps)[:r % len(steps)]
            for k in order:
                t[k].append(_best(steps[k]))
            t["eigen products"].append(_eigen(exe, sizes, m, dtype, threads))
        med = {k: statistics.median(v) for k, v in t.items()}
        say(f"  {dtype}: system                median ms   rounds' range   / bpnet")
        for k in ("mkl products", "openblas products", "eigen products", "bpnet", "torch"):
            say(f"  {dtype}: {k:<20} {med[k] * 1e3:10.3f}  {min(t[k]) * 1e3:7.3f}-"
                f"{max(t[k]) * 1e3:<8.3f}  {med[k] / med['bpnet']:7.2f}")
        need = med["torch"] / 1.2
        say(f"  {dtype}: PyTorch's time / bpnet's {med['torch'] / med['bpnet']:.2f}x; the "
            f"products' time in Eigen / in MKL {med['eigen products'] / med['mkl products']:.2f}"
            f", in OpenBLAS / in MKL {med['openblas products'] / med['mkl products']:.2f}; "
            f"1.2x PyTorch needs bpnet at {need * 1e3:.3f} ms = "
            f"{need / med['eigen products']:.2f} of Eigen's products' time, "
            f"{need / med['mkl products']:.2f} of MKL's")
        out[dtype] = {k: v * 1e3 for k, v in med.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="C", choices=sorted(CASES))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--out", help="also write the report to this file")
    a = ap.parse_args(argv)
    lines: list[str] = []

    def say(s: str) -> None:
        print(s, flush=True)
        lines.append(s)

    say(machine.short_header() + " (at the start)")
    run(a.case, a.dtypes.split(","), a.rounds, say)
    say("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if a.out:
        Path(a.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
