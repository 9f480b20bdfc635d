"""What a report starts with (CPU, ISA build, thread counts, load average) and
the Eigen GEMM reference program (bench/eigen_gemm.cpp, compiled on the fly)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_NUM_THREADS",
              "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_THREAD_TIMEOUT",
              "MKL_NUM_THREADS", "XLA_FLAGS", "BPNET_ISA", "BPNET_SPIN_US")
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl",
             "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile")
# the flags of bpnet's ISA builds (CMakeLists.txt: Release, -ffp-contract=off,
# EIGEN_DONT_PARALLELIZE there; here Eigen may thread in --mode eigen)
ISA_FLAGS = {
    "avx512": ["-march=x86-64-v4", "-mprefer-vector-width=512"],
    "avx2": ["-march=x86-64-v3"],
}
COMMON_FLAGS = ["-std=c++17", "-O3", "-DNDEBUG", "-ffp-contract=off", "-fopenmp",
                "-DEIGEN_MPL2_ONLY"]


def build_defines() -> list[str]:
    """Eigen settings of bpnet's build that change its GEMM (CMakeLists.txt):
    the stack allocation limit decides whether packing buffers come from the
    stack or the heap."""
    import re

    try:
        text = (HERE.parent / "CMakeLists.txt").read_text()
    except OSError:
        return []
    m = re.search(r"set\(BPNET_STACK_LIMIT\s+(\d+)\)", text)
    return [f"-DEIGEN_STACK_ALLOCATION_LIMIT={m.group(1)}"] if m else []


def cpu_info() -> dict:
    """Model name, family/model/stepping and the SIMD flags of CPU 0."""
    info = {"model_name": platform.processor() or "unknown", "family": None, "model": None,
            "stepping": None, "flags": [], "logical_cpus": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    first = text.split("\n\n")[0]
    fields = {}
    for line in first.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields[k.strip()] = v.strip()
    info["model_name"] = fields.get("model name", info["model_name"])
    info["vendor"] = fields.get("vendor_id")
    for k in ("family", "model", "stepping"):
        v = fields.get("cpu family" if k == "family" else k)
        info[k] = int(v) if v and v.isdigit() else v
    flags = set(fields.get("flags", "").split())
    info["flags"] = [f for f in CPU_FLAGS if f in flags]
    return info


def thread_info(libs: tuple[str, ...] = ("bpnet", "numpy", "sklearn", "torch", "jax")) -> dict:
    """Thread settings of every library, as this process sees them after
    importing `libs` (threadpoolctl lists each BLAS and OpenMP runtime)."""
    out = {"env": {k: os.environ.get(k) for k in THREAD_ENV}}
    versions = {"python": sys.version.split()[0]}
    if "bpnet" in libs:
        import bpnet

        versions["bpnet"] = bpnet.__version__
        out["bpnet_max_threads"] = bpnet.build_info()["max_threads"]
    import numpy as np

    versions["numpy"] = np.__version__
    try:
        import scipy

        versions["scipy"] = scipy.__version__
    except ImportError:
        pass
    if "sklearn" in libs:
        try:
            import sklearn

            versions["sklearn"] = sklearn.__version__
        except ImportError:
            versions["sklearn"] = None
    if "torch" in libs:
        try:
            import torch

            versions["torch"] = torch.__version__
            out["torch_threads"] = torch.get_num_threads()
            out["torch_interop_threads"] = torch.get_num_interop_threads()
        except ImportError:
            versions["torch"] = None
    if "jax" in libs:
        try:
            import jax

            versions["jax"] = jax.__version__
            try:
                import optax

                versions["optax"] = optax.__version__
            except ImportError:
                versions["optax"] = None
            out["jax_devices"] = [str(d) for d in jax.devices()]
            # XLA:CPU sizes its intra-op Eigen pool to the logical CPUs unless
            # XLA_FLAGS says otherwise; there is no public getter
            out["jax_intra_op_threads"] = os.cpu_count()
        except ImportError:
            versions["jax"] = None
    try:
        from threadpoolctl import threadpool_info

        out["threadpools"] = [
            {k: p.get(k) for k in ("user_api", "internal_api", "prefix", "num_threads",
                                   "version", "architecture", "filepath")}
            for p in threadpool_info()]
        blas = [p["num_threads"] for p in out["threadpools"] if p["user_api"] == "blas"]
        out["openblas_threads"] = blas[0] if blas else None
    except ImportError:
        out["threadpools"] = None
    out["versions"] = versions
    return out


def short_header() -> str:
    """One line naming the CPU, its SIMD flags, Python and the load average now
    (the header of the small standalone benches: side_by_side, wait_policy)."""
    import platform

    c = cpu_info()
    la = os.getloadavg()
    return (f"CPU: {c['model_name']} (family {c['family']}, model {c['model']}), "
            f"{c['logical_cpus']} logical CPUs, flags {' '.join(c['flags'])}; Python "
            f"{platform.python_version()}; load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")


def emit(lines: list[str], out: str | None) -> None:
    """Print a report and, given a path, write it there too."""
    report = "\n".join(lines)
    print(report)
    if out:
        Path(out).write_text(report + "\n")


def header_lines(h: dict) -> list[str]:
    """The header as text (the first lines of every report)."""
    c, b, t = h["cpu"], h["bpnet_build"], h["threads"]
    lines = [
        f"CPU: {c['model_name']} (vendor {c.get('vendor')}, family {c['family']}, model "
        f"{c['model']}, stepping {c['stepping']}), {c['logical_cpus']} logical CPUs; flags: "
        f"{' '.join(c['flags']) or 'none of ' + '/'.join(CPU_FLAGS)}",
        f"bpnet {t['versions'].get('bpnet')}: ISA build in use {b['isa']} ({b['simd']}); "
        f"builds this CPU runs: {', '.join(b['available_isas'])}; Eigen {b['eigen']}, "
        f"{b['compiler']}, OpenMP {b['openmp']}",
        "threads: bpnet {}; OpenBLAS (threadpoolctl) {}; torch {} (interop {}); JAX/XLA "
        "intra-op {} ({}); OMP_NUM_THREADS={}".format(
            t.get("bpnet_max_threads"), t.get("openblas_threads"), t.get("torch_threads"),
            t.get("torch_interop_threads"), t.get("jax_intra_op_threads"),
            ", ".join(t.get("jax_devices") or []) or "n/a", t["env"]["OMP_NUM_THREADS"]),
        "environment: " + ", ".join(f"{k}={v}" for k, v in t["env"].items() if v is not None)
        if any(v is not None for v in t["env"].values()) else
        "environment: none of " + ", ".join(THREAD_ENV) + " set",
    ]
    for p in t.get("threadpools") or []:
        lines.append(f"  pool: {p['user_api']}/{p['internal_api']} {p['prefix']} "
                     f"{p['version'] or ''} {p.get('architecture') or ''}: "
                     f"{p['num_threads']} threads ({p['filepath']})")
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in t["versions"].items()))
    la = h["loadavg_start"]
    lines.append(f"load average at start: {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} "
                 f"(1/5/15 min) on {c['logical_cpus']} CPUs")
    return lines


# ------------------------------------------------------------ Eigen GEMM program
def eigen_include() -> Path:
    """Eigen's headers from the cmeel-eigen wheel (the build requirement of bpnet):
    ``cmeel.prefix/include/eigen3`` next to site-packages."""
    roots = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    roots |= {p for p in sys.path if p.endswith("site-packages")}
    for r in sorted(roots):
        inc = Path(r) / "cmeel.prefix" / "include" / "eigen3"
        if (inc / "Eigen" / "Core").exists():
            return inc
    raise FileNotFoundError(
        "Eigen headers not found: expected cmeel.prefix/include/eigen3 in site-packages "
        f"({', '.join(sorted(roots))}); pip install cmeel-eigen")


def eigen_binary(isa: str) -> Path:
    """bench/eigen_gemm.cpp compiled with the flags of bpnet's `isa` build, cached
    by a digest of the source, the flags, the compiler and the Eigen path."""
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise FileNotFoundError("no C++ compiler (g++) on PATH for bench/eigen_gemm.cpp")
    src = HERE / "eigen_gemm.cpp"
    inc = eigen_include()
    flags = [*COMMON_FLAGS, *build_defines(), *ISA_FLAGS[isa], f"-I{inc}"]
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([src.read_text(), cxx, version, *flags]).encode())
    cache = Path(os.environ.get("BPNET_BENCH_CACHE", Path(tempfile.gettempdir()) / "bpnet-bench"))
    cache.mkdir(parents=True, exist_ok=True)
    exe = cache / f"eigen_gemm-{isa}-{key.hexdigest()[:16]}"
    if not exe.exists():
        tmp = exe.with_suffix(".tmp")
        r = subprocess.run([cxx, *flags, str(src), "-o", str(tmp)], capture_output=True,
                           text=True)
        if r.returncode:
            raise RuntimeError(f"compiling {src} failed ({cxx} {' '.join(flags)}):\n"
                               f"{r.stderr[-2000:]}")
        tmp.replace(exe)
    return exe


def eigen_compile_command(isa: str) -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++") or "g++"
    return " ".join([Path(cxx).name, *COMMON_FLAGS, *build_defines(), *ISA_FLAGS[isa],
                     "-I<cmeel eigen3>"])


def run_eigen(exe: Path, sizes, m, dtype, threads, blocks, mode, repeats, min_time):
    cmd = [str(exe), "--sizes", ",".join(map(str, sizes)), "--m", str(m),
           "--dtype", "f64" if dtype == "float64" else "f32",
           "--threads", ",".join(map(str, threads)), "--blocks", ",".join(map(str, blocks)),
           "--mode", mode, "--repeats", str(repeats), "--min-time", str(min_time)]
    # OpenMP's default wait policy (the program runs alone, spinning costs no one)
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr[-1000:]}")
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
