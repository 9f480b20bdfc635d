"""The documentation site (issue 20, item 6): it builds with warnings as errors,
every example of the gallery runs, every public name has an API page, and the
built pages render in a real browser (Debian's headless ``chromium``).

Slow: building the site executes the gallery (about a minute). ``.ci/docs.sh``
builds the site once and points ``BPNET_DOCS_BUILT`` at it; without that
variable the test builds a copy of ``docs/`` into a temporary directory.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bpnet

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# what the estimators, conversions and ONNX export add to bpnet.__all__ (lazy names)
LAZY = ("BPNetClassifier", "BPNetRegressor", "FitInfo", "from_sklearn", "to_sklearn",
        "to_onnx")
CONSTANTS = ("__version__", "DISTRIBUTION")  # documented on the API page itself
EXAMPLES = sorted(p.stem for p in (DOCS / "examples").glob("plot_*.py"))
# (page, the heading it must show)
PAGES = [
    ("index.html", "bpnet"),
    ("api.html", "API reference"),
    ("guide/math.html", "What is computed"),
    ("guide/estimators.html", "Networks and estimators"),
    ("guide/cli.html", "Command line"),
    ("distributed.html", "Distributed training with Dask"),
    ("auto_examples/index.html", "Examples"),
    ("auto_examples/plot_digits_classifier.html", "Handwritten digits with BPNetClassifier"),
    ("generated/bpnet.Network.html", "bpnet.Network"),
    ("generated/bpnet.check_gradients.html", "bpnet.check_gradients"),
]
# what Sphinx or docutils leave in a page when something went wrong
ERROR_MARKERS = ('class="problematic"', 'class="system-message"', "Traceback (most recent",
                 "Unknown directive", "autodoc: failed")


def _build(tmp: Path) -> Path:
    for module in ("sphinx", "numpydoc", "sphinx_gallery", "pydata_sphinx_theme", "myst_parser"):
        pytest.importorskip(module, reason="the docs extra: pip install '.[docs]'")
    src = tmp / "docs"
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns(
        "_build", "generated", "auto_examples", "gen_modules", "sg_execution_times.rst"))
    out = tmp / "html"
    env = dict(os.environ, MPLBACKEND="Agg")
    res = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(src), str(out)],
        capture_output=True, text=True, timeout=1800, env=env,
    )
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    assert "build succeeded" in log and "WARNING" not in log, log[-4000:]
    assert f"executed {len(EXAMPLES)} out of {len(EXAMPLES)}" in log, log[-2000:]
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = os.environ.get("BPNET_DOCS_BUILT")
    if built:
        return Path(built)
    return _build(tmp_path_factory.mktemp("docs"))


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/docs.sh)")
    return exe


def _browser(*args: str) -> subprocess.CompletedProcess:
    # --no-sandbox: CI runs as root; the virtual time budget lets MathJax typeset
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--virtual-time-budget=15000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def _dom(page: Path) -> str:
    res = _browser("--dump-dom", page.as_uri())
    assert res.returncode == 0 and "<html" in res.stdout, res.stderr[-2000:]
    return res.stdout


def _h1(dom: str) -> list[str]:
    return [re.sub(r"<[^>]+>|¶|#", "", h).strip()
            for h in re.findall(r"<h1[^>]*>(.*?)</h1>", dom, flags=re.S)]


# -- the built files ---------------------------------------------------------------------
def test_every_public_name_has_an_api_page(site):
    api = (site / "api.html").read_text()
    for name in [*bpnet.__all__, *LAZY]:
        if name in CONSTANTS:
            assert f'id="bpnet.{name}"' in api, name
            continue
        page = site / "generated" / f"bpnet.{name}.html"
        assert page.is_file(), f"no API page for bpnet.{name}"
        assert f'href="generated/bpnet.{name}.html' in api, name
        text = page.read_text()
        assert f'id="bpnet.{name}"' in text, name  # the autodoc entry itself
        assert not any(marker in text for marker in ERROR_MARKERS), name


def test_numpydoc_sections_render(site):
    page = (site / "generated" / "bpnet.check_gradients.html").read_text()
    for section in ("Parameters", "Returns", "Raises"):
        assert re.search(rf">{section}\s*:?\s*<", page), section
    report = (site / "generated" / "bpnet.GradientReport.html").read_text()
    for section in ("Attributes", "Examples"):
        assert re.search(rf">{section}\s*:?\s*<", report), section
    for parameter in ("lam", "activation", "output", "sample_weight"):  # once left out
        assert re.search(rf"<strong>{parameter}</strong>", page), parameter


def test_every_example_ran_and_made_its_figures(site):
    for stem in EXAMPLES:
        page = (site / "auto_examples" / f"{stem}.html").read_text()
        images = re.findall(r'<img[^>]+src="\.\./(_images/sphx_glr_[^"]+\.png)"', page)
        assert images, f"{stem}: no figure"
        for src in images:
            assert (site / src).stat().st_size > 5000, src  # a real plot, not a stub
        assert "sphx-glr-script-out" in page, f"{stem}: no printed output"
        assert not any(marker in page for marker in ERROR_MARKERS), stem


# -- in the browser -----------------------------------------------------------------------
@pytest.mark.parametrize("page, heading", PAGES, ids=[p for p, _ in PAGES])
def test_page_renders_in_chromium(site, page, heading):
    dom = _dom(site / page)
    assert heading in _h1(dom), _h1(dom)
    assert not any(marker in dom for marker in ERROR_MARKERS)
    assert "bd-sidebar" in dom or "bd-header" in dom  # the theme's layout was applied


def test_formulas_are_typeset(site):
    if not (site / "_static" / "mathjax" / "MathJax.js").is_file():
        pytest.skip("built without Debian's libjs-mathjax: MathJax would come from a CDN")
    dom = _dom(site / "guide" / "math.html")
    assert dom.count('class="mjx-chtml') >= 20  # MathJax's output, one per formula
    assert 'class="MathJax_Error' not in dom and 'class="mjx-merror' not in dom


@pytest.mark.parametrize("page", ["index.html", "auto_examples/plot_regression.html",
                                  "guide/math.html"])
def test_screenshot_is_not_blank(site, page, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    shot = tmp_path / "shot.png"
    res = _browser("--window-size=1280,1600", f"--screenshot={shot}", (site / page).as_uri())
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    img = Image.open(shot).convert("L")
    assert img.size == (1280, 1600)
    hist = img.histogram()  # pixels per grey level 0..255
    dark = sum(hist[:128]) / sum(hist)  # text, code, figures
    assert 0.005 < dark < 0.6, dark  # neither an empty page nor a black one
    assert sum(n > 0 for n in hist) > 32  # anti-aliased text and images, not a flat fill


# -- the guide's code ---------------------------------------------------------------------
def _python_blocks(text: str) -> list[str]:
    """The ``.. code-block:: python`` blocks of a reStructuredText page, dedented."""
    import textwrap

    blocks = []
    for match in re.finditer(r"^\.\. code-block:: python\n\n((?:[ ]{3}.*\n|\n)+)", text, re.M):
        blocks.append(textwrap.dedent(match.group(1)))
    return blocks


RST_WITH_CODE = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.rst")
                       if "_build" not in p.parts and _python_blocks(p.read_text()))


@pytest.mark.parametrize("page", RST_WITH_CODE)
def test_guide_code_blocks_run_in_order(page, tmp_path, monkeypatch):
    """Each page's Python blocks run in order in one namespace (as a reader types
    them), warnings as errors, in an empty directory."""
    import warnings

    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for i, block in enumerate(_python_blocks((DOCS / page).read_text())):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                exec(compile(block, f"{page} block {i + 1}", "exec"), namespace)
            except Exception as err:  # name the block in the failure
                pytest.fail(f"{page}, code block {i + 1}: {type(err).__name__}: {err}\n{block}")


def test_the_guide_has_code_to_run():
    assert {"index.rst", "guide/estimators.rst", "guide/model_files.rst"} <= set(RST_WITH_CODE)
