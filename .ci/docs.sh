#!/usr/bin/env bash
# The documentation job: build the Sphinx site (docs/) from scratch with warnings
# as errors, executing every example of the gallery, then open the built pages
# in headless Chromium (tests/project/test_docs.py, slow-marked). Run it in an
# environment where bpnet is installed (CI: the venv of the installed wheel);
# it installs the `docs` extra's requirements (not bpnet itself) and Debian's
# chromium and libjs-mathjax (formulas rendered offline) when they are missing.
# The site: docs/_build/html.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
py=${PYTHON:-python}

if ! command -v chromium >/dev/null || [ ! -f /usr/share/javascript/mathjax/MathJax.js ]; then
  echo "== apt-get install chromium libjs-mathjax"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y -q chromium libjs-mathjax >/dev/null \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium libjs-mathjax >/dev/null; }
fi

echo "== the docs extra's requirements (pyproject.toml)"
mapfile -t reqs < <("$py" - <<'PY'
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["docs"]))
PY
)
"$py" -m pip install -q "${reqs[@]}"
"$py" -c "import bpnet; print('documenting bpnet', bpnet.__version__, 'from', bpnet.__file__)"

echo "== sphinx-build -W --keep-going (every example executed)"
rm -rf docs/_build docs/generated docs/auto_examples docs/gen_modules docs/sg_execution_times.rst
t0=$SECONDS
MPLBACKEND=Agg "$py" -m sphinx -W --keep-going -b html docs docs/_build/html
echo "site built in $((SECONDS - t0)) s: docs/_build/html"

echo "== the built pages in headless Chromium"
BPNET_DOCS_BUILT="$PWD/docs/_build/html" "$py" -m pytest -p no:cacheprovider -q -m slow tests/project/test_docs.py

echo "docs job done in $((SECONDS - start)) s"
