#!/usr/bin/env bash
# Build bpnet's core with AddressSanitizer + UndefinedBehaviorSanitizer into a
# separate venv (never touches the main install) and run the test suite under
# it. Python itself is not instrumented, so the gcc sanitizer runtimes are
# preloaded; leak detection is off because CPython keeps objects alive at exit
# by design. Any UB report aborts the run (halt_on_error=1).
#
# Usage: .ci/sanitize.sh [pytest args...]    (default: the whole default suite)
# Env:   BPNET_ASAN_DIR   where the venv and build dir go (default /tmp/bpnet-asan)
#        PYTHON           interpreter to base the venv on (default python3)
#
# Time: the sanitized build of one ISA (baseline only) takes ~1-2 min; the
# default suite runs ~3-5x slower than normal (about 3-6 min on 2 cores), so
# the default test selection is the full default suite (slow tests excluded by
# pyproject's addopts). Hypothesis runs its small default profile.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
py=${PYTHON:-python3}
dir=${BPNET_ASAN_DIR:-/tmp/bpnet-asan}
venv="$dir/venv"
build="$dir/build"

if [ ! -x "$venv/bin/python" ]; then
  # --system-site-packages: reuse the already installed numpy/scipy/pytest/
  # hypothesis/psutil; bpnet itself is installed into the venv below and
  # shadows any system copy.
  "$py" -m venv --system-site-packages "$venv"
fi

# An editable install of bpnet in the base interpreter (a .pth that adds a
# meta-path finder and the source tree's python/ folder) would shadow the
# venv's sanitized copy: drop both for this venv only.
site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cat > "$site/sitecustomize.py" <<'PY'
import sys

sys.meta_path[:] = [
    f for f in sys.meta_path if not type(f).__module__.startswith("_editable_skbc_bpnet")
]
import os

# a bpnet source tree on sys.path (outside this venv) is not the sanitized build
sys.path[:] = [
    p for p in sys.path
    if p.startswith(sys.prefix) or not os.path.isfile(os.path.join(p or ".", "bpnet", "__init__.py"))
]
PY

echo "== sanitized build (ASan + UBSan, baseline ISA) into $build"
t0=$SECONDS
"$venv/bin/python" -m pip install -q --no-build-isolation --no-deps --force-reinstall . \
  -C build-dir="$build" \
  -C cmake.build-type=RelWithDebInfo \
  -C cmake.define.BPNET_SANITIZE=ON \
  -C cmake.define.BPNET_ISAS=baseline
echo "built in $((SECONDS - t0)) s"

libasan=$(gcc -print-file-name=libasan.so)
libubsan=$(gcc -print-file-name=libubsan.so)
for f in "$libasan" "$libubsan"; do
  [ -f "$f" ] || { echo "sanitizer runtime not found: $f" >&2; exit 2; }
done

export LD_PRELOAD="$libasan $libubsan"
# allocator_may_return_null: an impossible allocation (a test asks for one) is a
# MemoryError, as without ASan, instead of an abort.
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:strict_init_order=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export BPNET_HYPOTHESIS_PROFILE=${BPNET_HYPOTHESIS_PROFILE:-default}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

# Run from outside the source tree so that 'import bpnet' finds the venv's
# sanitized install, not an editable/source copy.
cd "$dir"
"$venv/bin/python" - <<'PY'
import bpnet, bpnet._native as n
info = bpnet.build_info()
print("bpnet from", bpnet.__file__, "| isa", info["isa"], "| available", info["available_isas"])
assert n.available() == ["baseline"], n.available()
PY

echo "== test suite under ASan + UBSan"
t0=$SECONDS
cd "$root"
# test_all_isa_builds_present checks the normal wheel's three ISA builds; this
# build has only the baseline one by design.
"$venv/bin/python" -m pytest -c "$root/pyproject.toml" --rootdir="$root" -p no:cacheprovider \
  --deselect tests/test_core.py::test_all_isa_builds_present "${@:-$root/tests}"
echo "sanitized test suite passed in $((SECONDS - t0)) s"
