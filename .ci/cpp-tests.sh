#!/usr/bin/env bash
# The C++ tests of the core's kernels (cpp/test), built by CMake and run by
# ctest: no wheel, no Python extension. Needs cmake, a C++ compiler, and a
# Python with pybind11 and cmeel-eigen (CMakeLists.txt finds Eigen there).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
build=$(mktemp -d /tmp/bpnet-ctest.XXXXXX)
trap 'rm -rf "$build"' EXIT
cmake -S . -B "$build" -DBPNET_BUILD_TESTS=ON -DBPNET_ISAS=baseline -DCMAKE_BUILD_TYPE=Release \
  -DPython_EXECUTABLE="$(command -v "$py")" -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" >/dev/null
cmake --build "$build" --target bpnet_core_tests -j 2
ctest --test-dir "$build" --output-on-failure
