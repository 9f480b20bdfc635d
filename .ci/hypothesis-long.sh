#!/usr/bin/env bash
# The long property-based job: Hypothesis' ci-long profile (2,500 examples per
# property, no example database) plus the slow-marked property tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export BPNET_HYPOTHESIS_PROFILE=ci-long
python -m pytest -p no:cacheprovider -m "slow or not slow" -q \
  tests/test_reliability_hypothesis.py --hypothesis-show-statistics "$@"
