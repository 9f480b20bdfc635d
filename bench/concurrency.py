"""Wall time of N models trained in N Python threads vs one after another
(the GIL is released in the core). Prints the figures; asserts nothing.

    python bench/concurrency.py [n_models]
"""

import sys
import threading
import time

import numpy as np

import bpnet


def main(n: int = 2) -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4000, 64))
    y = rng.integers(0, 10, 4000)

    def train(seed):
        return bpnet.Network((64, 64, 10), rng=seed, n_threads=1).fit(X, y, max_iter=60).theta

    t0 = time.perf_counter()
    serial = [train(s) for s in range(n)]
    t_serial = time.perf_counter() - t0
    out = [None] * n
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, train(i))) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t_threads = time.perf_counter() - t0
    same = all(np.array_equal(a, b) for a, b in zip(serial, out))
    print(
        f"{n} models: serial {t_serial:.2f} s, {n} threads {t_threads:.2f} s, "
        f"speed-up {t_serial / t_threads:.2f}x, identical results: {same}"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
