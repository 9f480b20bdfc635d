"""Per-step cost of bpnet's distributed (Dask) full-batch path against one process.

For the seed network [400, 25, 10] (m = 5000) and [784, 512, 256, 10]
(m = 10000) it times one full-batch cost+gradient step:

- single process: ``core.cost_grad`` with 1 and with 2 threads;
- Dask LocalCluster, worker processes: 1 worker x 1 thread, 1 worker x 2
  threads, 2 workers x 1 thread (Dask's default worker environment, which
  sets ``MALLOC_TRIM_THRESHOLD_=65536``), and 2 workers x 1 thread with
  bpnet's recommended environment (``bpnet.distributed.WORKER_ENV``);

and a mini-batch-sized step (200 rows of the seed network) locally and on 2
workers, the latency floor that decides whether mini-batch training is worth
distributing.

``--scaling`` instead measures the reduction on the workers (issue 13): for
1, 2, 4 and 8 single-threaded workers and P of about 10k, 100k and 1M
([1000, h, 10], m = 1024 rows, C = 16 leaves) it prints the median step, the
single-process step (1 thread) and the bytes of the arrays the driver
gathered per step, against the driver-side reduction of before (each worker
returns its per-leaf sums (k, P); the driver gathers C x P values and runs
``reduce_tree`` itself), timed on the same cluster.

Run: ``python bench/bench_distributed.py [--reps N] [--quick | --scaling]``. Prints medians
(and the inter-quartile range as a noise gauge) in milliseconds per step and
examples per second. On a shared machine, rerun: the medians move by 10-20 %.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

import bpnet
from bpnet import distributed as bdist
from bpnet._native import core


def timed(fn, reps: int) -> tuple[float, float]:
    """(median, IQR) of ``reps`` calls, in seconds, after 2 warm-up calls."""
    fn()
    fn()
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    q = statistics.quantiles(t, n=4) if len(t) >= 4 else [min(t), 0, max(t)]
    return statistics.median(t), q[2] - q[0]


def problem(sizes: tuple[int, ...], m: int):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((m, sizes[0]))
    y = rng.integers(0, sizes[-1], m)
    theta = bpnet.random_theta(sizes, rng)
    return X, y, theta


def row(label: str, med: float, iqr: float, m: int, ref: float | None = None) -> None:
    extra = "" if ref is None else f"  overhead {1e3 * (med - ref):+8.2f} ms ({med / ref:5.2f}x)"
    print(f"  {label:<38s} {1e3 * med:9.2f} ms  (IQR {1e3 * iqr:6.2f})  "
          f"{m / med:11.0f} ex/s{extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="seed network only, fewer reps")
    ap.add_argument("--scaling", action="store_true",
                    help="step time and driver bytes against workers (1, 2, 4, 8) and P")
    ap.add_argument("--workers", default="1,2,4,8", help="worker counts for --scaling")
    args = ap.parse_args()
    if args.scaling:
        scaling([int(w) for w in args.workers.split(",")], args.reps)
        return

    import dask
    import distributed

    print(f"bpnet core {core.__name__}; {os.cpu_count()} CPUs; {platform.processor() or ''}")
    print(f"dask {dask.__version__}, distributed {distributed.__version__}")
    print(f"Dask worker default pre-spawn env: "
          f"{dask.config.get('distributed.nanny.pre-spawn-environ')}")
    print(f"bpnet.distributed.WORKER_ENV: {bdist.WORKER_ENV}")

    configs = [((400, 25, 10), 5000, args.reps)]
    if not args.quick:
        configs.append(((784, 512, 256, 10), 10000, max(5, args.reps // 3)))
    clusters = [
        ("dask 1 worker x 1 thread", 1, 1, None),
        ("dask 1 worker x 2 threads", 1, 2, None),
        ("dask 2 workers x 1 thread (dask env)", 2, 1, None),
        ("dask 2 workers x 1 thread (bpnet env)", 2, 1, bdist.WORKER_ENV),
    ]
    results: dict[tuple, tuple[float, float]] = {}
    ws = core.Workspace()
    for sizes, m, reps in configs:
        X, y, theta = problem(sizes, m)
        for nt in (1, 2):
            results[(sizes, f"local {nt}")] = timed(
                lambda nt=nt, th=theta, s=sizes, X=X, y=y: core.cost_grad(
                    th, s, X, y, 0.0, "sigmoid", "sigmoid", None, None, None, nt, ws), reps)
    rows_mb = 200
    Xs, ys, ths = problem((400, 25, 10), rows_mb)
    results["mb local"] = timed(
        lambda: core.cost_grad(ths, (400, 25, 10), Xs, ys, 0.0, "sigmoid", "sigmoid", None,
                               None, None, 1, ws), 200)

    for label, n_workers, threads, env in clusters:
        with distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=threads, processes=True,
            dashboard_address=":0", env=env, silence_logs=40,
        ) as cluster, distributed.Client(cluster) as client:
            client.wait_for_workers(n_workers)
            envs = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
            label = f"{label}"
            for sizes, m, reps in configs:
                X, y, theta = problem(sizes, m)
                with bdist.DistributedObjective(client, sizes, X, y) as obj:
                    results[(sizes, label)] = timed(lambda obj=obj, th=theta: obj(th), reps)
            if n_workers == 2:
                with bdist.DistributedObjective(client, (400, 25, 10), Xs, ys) as obj:
                    results[("mb", label)] = timed(lambda obj=obj: obj(ths), 100)
            print(f"  ({label}: workers' MALLOC_TRIM_THRESHOLD_ = {set(envs.values())})")

    for sizes, m, _ in configs:
        P = bpnet.n_params(sizes)
        print(f"\n{list(sizes)}  m={m}  P={P}  theta {P * 8 / 1e6:.2f} MB, "
              f"chunk sums returned per step {8 * P * 8 / 1e6:.1f} MB")
        ref1 = results[(sizes, "local 1")][0]
        ref2 = results[(sizes, "local 2")][0]
        row("local, 1 thread", *results[(sizes, "local 1")], m)
        row("local, 2 threads", *results[(sizes, "local 2")], m)
        for label, n_workers, threads, _ in clusters:
            ref = ref2 if n_workers * threads == 2 else ref1
            row(label, *results[(sizes, label)], m, ref)
    print(f"\nmini-batch-sized step, {rows_mb} rows of [400, 25, 10]:")
    row("local, 1 thread", *results["mb local"], rows_mb)
    for label, n_workers, _, _ in clusters:
        if n_workers == 2:
            row(label, *results[("mb", label)], rows_mb, results["mb local"][0])


def array_bytes(obj) -> int:
    """Bytes of the NumPy arrays inside a (nested) result."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, (list, tuple)):
        return sum(array_bytes(o) for o in obj)
    return 0


def driver_reduce_step(client, obj, theta) -> int:
    """The pre-issue-13 step: per-leaf sums gathered, reduced on the driver. Returns bytes."""
    futures = [
        client.submit(bdist._shard_partial_sums, s.future, theta, obj.layer_sizes, "sigmoid",
                      "sigmoid", s.local_starts, s.chunk_ids, workers=[s.worker], pure=False)
        for s in obj.shards
    ]
    results = client.gather(futures)
    nodes = [(0, c, g[j].copy(), float(lo[j]), float(we[j]))
             for ids, g, lo, we, _ in results for j, c in enumerate(ids)]
    ((_, _, grad, loss, weight),) = core.reduce_tree(nodes, obj.n_chunks)
    core.finalize(theta, obj.layer_sizes, 0.0, loss, weight, grad)
    return array_bytes(results)


def scaling(worker_counts: list[int], reps: int) -> None:
    """Step time and bytes into the driver against the number of workers and P."""
    import distributed

    m = 1024
    nets = [(1000, 10, 10), (1000, 99, 10), (1000, 990, 10)]
    print(f"bpnet core {core.__name__}; {os.cpu_count()} CPUs; m = {m}, "
          f"C = {len(core.leaf_starts(m)) - 1} leaves; workers single-threaded, "
          f"env WORKER_ENV; median ms of {reps} steps (IQR)")
    ws = core.Workspace()
    local = {}
    for sizes in nets:
        X, y, theta = problem(sizes, m)
        local[sizes] = timed(lambda s=sizes, X=X, y=y, th=theta: core.cost_grad(
            th, s, X, y, 0.0, "sigmoid", "sigmoid", None, None, None, 1, ws), reps)
    print(f"{'P':>8s} {'W':>3s} {'local 1 thr':>12s} {'tree step':>16s} {'driver bytes':>13s}"
          f" {'before: driver reduce':>22s} {'driver bytes':>13s}")
    for W in worker_counts:
        with distributed.LocalCluster(
            n_workers=W, threads_per_worker=1, processes=True, dashboard_address=":0",
            env=bdist.WORKER_ENV, silence_logs=40,
        ) as cluster, distributed.Client(cluster) as client:
            client.wait_for_workers(W)
            for sizes in nets:
                P = bpnet.n_params(sizes)
                X, y, theta = problem(sizes, m)
                with bdist.DistributedObjective(client, sizes, X, y) as obj:
                    b0 = obj.received_bytes
                    med, iqr = timed(lambda obj=obj, th=theta: obj(th), reps)
                    tree_bytes = (obj.received_bytes - b0) // obj.n_steps if obj.n_steps else 0
                    old_bytes = driver_reduce_step(client, obj, theta)
                    med_old, iqr_old = timed(
                        lambda obj=obj, th=theta: driver_reduce_step(client, obj, th), reps)
                lm = local[sizes][0]
                print(f"{P:8d} {W:3d} {1e3 * lm:9.1f} ms {1e3 * med:8.1f} ({1e3 * iqr:5.1f})"
                      f" {tree_bytes:13d} {1e3 * med_old:14.1f} ({1e3 * iqr_old:5.1f})"
                      f" {old_bytes:13d}", flush=True)


if __name__ == "__main__":
    main()
