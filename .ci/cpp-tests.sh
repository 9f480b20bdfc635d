#!/usr/bin/env bash
# The C++ tests of the core's kernels (cpp/test), built by CMake and run by
# ctest: no wheel, no Python extension. Needs cmake, a C++ compiler, and a
# Python with pybind11 and cmeel-eigen (CMakeLists.txt finds Eigen there).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
# twice: the baseline ISA as it ships, then this CPU's widest ISA (-march=native:
# the AVX2 or AVX-512 kernels) under ASan + UBSan, which catch a kernel reading past
# its arrays (the narrow weight gradient reads a partial last packet whole where
# the lanes past the row lie inside its array)
for mode in plain sanitized; do
  build=$(mktemp -d /tmp/bpnet-ctest.XXXXXX)
  trap 'rm -rf "$build"' EXIT
  extra=()
  [ "$mode" = sanitized ] && extra=(-DBPNET_SANITIZE=ON -DCMAKE_CXX_FLAGS=-march=native)
  echo "== C++ kernel tests ($mode)"
  cmake -S . -B "$build" -DBPNET_BUILD_TESTS=ON -DBPNET_ISAS=baseline -DCMAKE_BUILD_TYPE=Release \
    -DPython_EXECUTABLE="$(command -v "$py")" -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" \
    "${extra[@]}" >/dev/null
  cmake --build "$build" --target bpnet_core_tests -j 2
  ctest --test-dir "$build" --output-on-failure
  rm -rf "$build"
done
