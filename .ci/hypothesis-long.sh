#!/usr/bin/env bash
# The long property-based job: Hypothesis' ci-long profile (2,500 examples per
# property, no example database) plus the slow-marked property tests.
# The -W filter: on a failure Hypothesis' pytest plugin imports libcst to
# suggest a patch, and some libcst/mypy_extensions pairs warn on import, which
# the strict warnings setting would turn into an INTERNALERROR hiding the
# falsifying example.
set -euo pipefail
cd "$(dirname "$0")/.."
export BPNET_HYPOTHESIS_PROFILE=ci-long
python -m pytest -p no:cacheprovider -m "slow or not slow" -q \
  -W "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning" \
  tests/reliability/test_reliability_hypothesis.py --hypothesis-show-statistics "$@"
