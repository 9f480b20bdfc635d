#!/usr/bin/env bash
# Wheels for every other CPython 3.9-3.13 on this machine: build each from
# this checkout (isolated), repair it with auditwheel when one is given,
# install it into a fresh venv of that Python and run the smoke subset against
# the installed package. The primary Python (PRIMARY_PYTHON, default python3)
# gets the full suite in .ci/run, on the wheel as shipped (all instruction-set
# builds).
#
# These wheels carry the baseline build only (BPNET_ISAS=baseline, a third of
# the compile): what differs between Pythons is the binding glue and the
# Python headers, compiled in every build; the avx2/avx512 builds differ from
# it in compiler flags only, and .ci/run tests them. PYTHONS_ISAS="all" builds
# them as shipped; any other value is passed as BPNET_ISAS (e.g.
# "baseline;avx512").
#
# Interpreters: the newest pyenv 3.X.*, else python3.X on PATH; a version that
# is not on the machine is reported and skipped. PYTHONS="3.9 3.12" limits it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
start=$SECONDS

primary=${PRIMARY_PYTHON:-python3}
primary_ver=$("$primary" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
auditwheel=${AUDITWHEEL:-}
isas=${PYTHONS_ISAS:-baseline}
isa_args=()
skip=()
if [ "$isas" != "all" ]; then
    isa_args=(-C "cmake.define.BPNET_ISAS=$isas")
    # it checks that the wheel holds every build this CPU runs (true of .ci/run's)
    skip=(--deselect tests/core/test_core.py::test_all_isa_builds_present)
fi
work=$(mktemp -d /tmp/bpnet-pythons.XXXXXX)
trap 'rm -rf "$work"' EXIT

# the smoke subset: the core against the NumPy oracle, the network, pickling,
# gradient checks, the build and packaging checks (no scikit-learn, Dask, ONNX)
smoke=(tests/core/test_hand_worked.py tests/core/test_core.py tests/core/test_boundary.py
       tests/network/test_init.py tests/network/test_gradcheck.py tests/files/test_pickle.py
       tests/project/test_build.py tests/project/test_packaging.py)

find_python() {  # the newest pyenv 3.X.*, else python3.X on PATH; only one that runs
    local ver=$1 py
    py=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$ver".*/bin/python 2>/dev/null \
         | sort -V | tail -n 1 || true)
    if [ -z "$py" ]; then
        py=$(command -v "python$ver" || true)
    fi
    if [ -n "$py" ] && "$py" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$ver'.split('.')))" 2>/dev/null; then
        echo "$py"
    fi
}

tested=()
for ver in ${PYTHONS:-3.9 3.10 3.11 3.12 3.13}; do
    if [ "$ver" = "$primary_ver" ]; then
        echo "-- CPython $ver: the primary Python (full suite in .ci/run)"
        continue
    fi
    py=$(find_python "$ver")
    if [ -z "$py" ]; then
        echo "-- CPython $ver: not on this machine, skipped"
        continue
    fi
    t0=$SECONDS
    echo "== CPython $ver ($py)"
    "$py" -m venv "$work/venv$ver"
    vpy="$work/venv$ver/bin/python"
    "$vpy" -m pip install -q --upgrade pip
    "$vpy" -m pip wheel -q --no-deps "${isa_args[@]}" . -w "$work/dist$ver"
    wheel=$(ls "$work/dist$ver"/bpnet_mlp-*.whl)
    if [ -n "$auditwheel" ]; then
        "$auditwheel" repair -w "$work/wheelhouse$ver" "$wheel" >/dev/null
        wheel=$(ls "$work/wheelhouse$ver"/bpnet_mlp-*.whl)
    fi
    echo "wheel: $(basename "$wheel")"
    "$vpy" -m pip install -q "$wheel" "pytest>=7"
    "$vpy" -c "import bpnet, json; print(json.dumps(bpnet.build_info()))"
    if [ "$isas" = "baseline" ]; then  # the wheel holds the one build asked for
        "$vpy" -c "import bpnet; i = bpnet.build_info(); assert i['available_isas'] == ['baseline'], i"
    fi
    "$vpy" -m pytest -q -p no:cacheprovider "${skip[@]}" "${smoke[@]}"
    echo "CPython $ver: built and tested in $((SECONDS - t0)) s"
    tested+=("$ver")
done
echo "wheels ($isas) built and smoke-tested for CPython ${tested[*]:-(none)} in $((SECONDS - start)) s"
