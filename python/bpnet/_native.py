"""Pick the compiled core built for the best instruction set this CPU runs.

The wheel carries the same Eigen core built three times: ``_core`` (baseline
x86-64, runs anywhere), ``_core_avx2`` (x86-64-v3: AVX2 + FMA) and
``_core_avx512`` (x86-64-v4). ``BPNET_ISA=baseline|avx2|avx512`` forces one.

The builds compute the same formulas but not the same bits: their vector
widths and FMA contractions differ, so results agree to about 1e-15 relative,
not bit for bit. Bitwise reproducibility holds within one build; a fit can run
on another build than the default (:func:`bpnet._runtime.using_build`), as a
distributed fit does so that every worker computes with the same one.
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType


def _import_baseline() -> ModuleType:
    # OpenMP's default wait policy spins idle threads for milliseconds after
    # each parallel region; on a small machine they then starve OpenBLAS's
    # threads inside SciPy's optimizers between our calls. Unless the user
    # chose a policy, our OpenMP runtime starts passive (it reads the variable
    # once, when it loads): a little slower on small calls, much faster in
    # full-batch fits (see bench/README.md, "The core's tuning decisions",
    # OpenMP wait policy). Users with free cores can set GOMP_SPINCOUNT
    # (honoured together with passive) or OMP_WAIT_POLICY themselves.
    if "OMP_WAIT_POLICY" in os.environ:
        return importlib.import_module("bpnet._core")
    os.environ["OMP_WAIT_POLICY"] = "passive"
    try:
        return importlib.import_module("bpnet._core")
    finally:
        del os.environ["OMP_WAIT_POLICY"]


_baseline = _import_baseline()

ISAS = ("baseline", "avx2", "avx512")
_MODULES = {"baseline": "_core", "avx2": "_core_avx2", "avx512": "_core_avx512"}


def available() -> list[str]:
    """ISA levels that are both built into this install and supported by this CPU."""
    found = []
    for isa in ISAS:
        if not _baseline.cpu_supports(isa):
            continue
        try:
            importlib.import_module(f"bpnet.{_MODULES[isa]}")
        except ImportError:
            continue
        found.append(isa)
    return found


def load(isa: str) -> ModuleType:
    """The core module built for ``isa``; ValueError if this CPU or build lacks it."""
    if isa not in _MODULES:
        raise ValueError(f"isa must be one of {ISAS}; got {isa!r}")
    if not _baseline.cpu_supports(isa):
        raise ValueError(f"this CPU cannot run the {isa!r} build of bpnet's core")
    try:
        return importlib.import_module(f"bpnet.{_MODULES[isa]}")
    except ImportError as e:
        raise ValueError(f"the {isa!r} build of bpnet's core is not installed: {e}") from e


class ISAError(ValueError):
    """``BPNET_ISA`` names a build of the core that this install or CPU cannot run."""


def _running_the_command() -> bool:
    """Whether this process is the ``bpnet`` command (the console script or
    ``python -m bpnet``), whose errors are one line and an exit code."""
    argv = getattr(sys, "orig_argv", None) or sys.argv
    if os.path.basename(sys.argv[0]) in ("bpnet", "bpnet.exe"):
        return True
    return any(a == "-m" and b == "bpnet" for a, b in zip(argv, argv[1:]))


def _forced(isa: str) -> ModuleType:
    """The build ``BPNET_ISA`` forces. A bad setting raises :class:`ISAError`
    (one line naming the variable and the builds that would run); in the
    ``bpnet`` command it is that line on stderr and exit code 2 (usage), even
    before the command line is read (``bpnet --version``)."""
    try:
        return load(isa)
    except ValueError as err:
        error = ISAError(f"BPNET_ISA={isa!r}: {err}; unset BPNET_ISA or set it to one of "
                         f"{', '.join(available())} (the builds this CPU runs)")
    if _running_the_command():
        print(f"bpnet: error: {error}", file=sys.stderr)
        raise SystemExit(2)
    raise error


FORCED: str | None = os.environ.get("BPNET_ISA", "").strip().lower() or None
"""The build ``BPNET_ISA`` forced when bpnet was imported (None: not set)."""


def _default() -> ModuleType:
    if FORCED:
        return _forced(FORCED)
    # The highest level this CPU runs: the avx512 build beat avx2 on every case
    # measured (see bench/README.md, "The core's tuning decisions", ISA build).
    # `python bench/run.py --cases I` measures every level.
    for isa in reversed(ISAS):
        if isa in available():
            return load(isa)
    return _baseline


core: ModuleType = _default()
