"""The ``bpnet`` command's parser: subcommands, options and their argument types
(each a rule of :mod:`bpnet._params`, read from a string)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from .._about import DISTRIBUTION, __version__
from .._params import (
    ACTIVATIONS,
    DTYPES,
    FULL_BATCH_SOLVERS,
    MINIBATCH_SOLVERS,
    OUTPUTS,
    RULES,
    SOLVERS,
)
from .._pipeline import SCALE_METHODS
from .commands import cmd_evaluate, cmd_gradcheck, cmd_info, cmd_predict
from .data import DEFAULT_ENCODING, parse_delimiter, parse_encoding
from .plots import MIN_IMAGE_SIDE
from .train import cmd_train

DEFAULT_MODEL = "bpnet-model.npz"

EPILOG = """\
examples:
  bpnet train                                  # 8x8 digits, 64-25-10 net, prints test accuracy
  bpnet train data.csv --label-column label --hidden 50,20 --solver adam --plot plots/
  bpnet train ex4data1.mat --ten-is-zero --hidden 25 --lambda 1 --solver cg
  bpnet evaluate bpnet-model.npz data.csv --label-column label
  bpnet predict bpnet-model.npz new.csv -o predictions.csv
  bpnet gradcheck --layers 3,5,3 --lambda 3
  bpnet info bpnet-model.npz

data files: CSV (header optional; label column by name or index, default the
last), .npz with arrays X and y, or MATLAB .mat with X and y."""


def _sizes(spec: str) -> tuple[int, ...]:
    spec = spec.strip()
    if spec in ("", "none", "0"):
        return ()
    try:
        sizes = tuple(int(s) for s in spec.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated ints like 25 or 50,20; got {spec!r}"
        ) from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be >= 1; got {spec!r}")
    return sizes


def _typed(parse: Callable[[str], Any], *rules: str) -> Callable[[str], Any]:
    """An argparse type: ``parse(s)``, then each rule of :mod:`bpnet._params` in turn;
    an ArgumentTypeError (exit 2) says what was expected and what was given."""
    noun = "an int " if parse is int else "a number "

    def expected(rule: str) -> str:
        what = RULES[rule].expected
        return what if what.startswith(("a ", "an ", "'")) else noun + what

    def typed(s: str) -> Any:
        try:
            v = parse(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected(rules[0])}; got {s!r}") from None
        for rule in rules:
            if not RULES[rule].accepts(v):
                raise argparse.ArgumentTypeError(f"expected {expected(rule)}; got {v}")
        return v

    return typed


_fraction = _typed(float, "fraction")
_positive_float = _typed(float, "positive")
_positive_int = _typed(int, "count")
_seed = _typed(int, "seed")
_threads = _typed(int, "count", "n_threads")
_non_negative = _typed(float, "non_negative")

TASKS = ("auto", "classification", "regression")


def check_train_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors (exit 2): flags the chosen settings would ignore."""
    full_batch = args.solver in FULL_BATCH_SOLVERS
    for flag, value in (("--learning-rate", args.learning_rate),
                        ("--batch-size", args.batch_size)):
        if full_batch and value is not None:
            parser.error(f"{flag} applies to the mini-batch solvers "
                         f"({', '.join(MINIBATCH_SOLVERS)}); "
                         f"--solver {args.solver} would ignore it")
    if args.patience is not None and args.validation_split == 0:
        parser.error("--patience applies to early stopping; --validation-split 0 disables it")


_FMT = argparse.RawDescriptionHelpFormatter


def _add_csv_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--header", action=argparse.BooleanOptionalAction, default=None,
        help="CSV: the first row holds column names (--header) or is data (--no-header); "
        "default: detected conservatively (a first row holding any number is data) and "
        "reported on stderr",
    )
    sp.add_argument(
        "--delimiter", type=parse_delimiter, default=None, metavar="SEP",
        help="CSV field separator: a character or comma, tab, semicolon, pipe, space "
        "(default: detected from the first lines; tab for .tsv)",
    )
    sp.add_argument(
        "--encoding", type=parse_encoding, default=DEFAULT_ENCODING, metavar="NAME",
        help="CSV text encoding, e.g. latin-1 or cp1252 (default UTF-8; a byte order "
        "mark is skipped)",
    )


def _add_data_options(sp: argparse.ArgumentParser, label_default: str | None = "-1") -> None:
    sp.add_argument(
        "--label-column", metavar="COL", default=label_default,
        help="CSV label column: a header name or an index (negative counts from the end)"
        + (f"; default {label_default}" if label_default else "; default: none"),
    )
    _add_csv_options(sp)
    sp.add_argument("--drop-missing", action="store_true",
                    help="leave out the rows without a label (a CSV cell that is empty, '?' "
                    "or NaN; a NaN in an .npz or .mat y) and say how many; default: such "
                    "rows are an error naming them")
    sp.add_argument("--ten-is-zero", action="store_true",
                    help="labels are 1..10 with 10 meaning digit 0 "
                    "(the classic course .mat files)")


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "train", help="train a classifier or regressor and save it", formatter_class=_FMT,
        description="Train a classifier (or, --task, a regressor) on DATA (default: "
        "scikit-learn's 8x8 digits with a fixed train/test split), print a report and save "
        "the model.",
    )
    t.add_argument("data", nargs="?", metavar="DATA", help=".csv, .npz (X, y) or .mat (X, y)")
    _add_data_options(t)
    g = t.add_argument_group("network")
    g.add_argument("--hidden", type=_sizes, default=(25,), metavar="SIZES",
                   help="hidden layer sizes, comma-separated "
                   "(default 25; 'none' for no hidden layer)")
    g.add_argument("--activation", choices=ACTIVATIONS, default="sigmoid",
                   help="hidden activation (default sigmoid)")
    g.add_argument("--lambda", dest="lam", type=_non_negative, default=1.0, metavar="LAMBDA",
                   help="L2 regularization strength (default 1.0)")
    g.add_argument("--task", choices=TASKS, default="auto",
                   help="classification (softmax output, accuracy) or regression (identity "
                   "output, R^2 and MAE); default auto: regression for a numeric label "
                   "column holding a non-integer value, else classification")
    g.add_argument("--dtype", choices=DTYPES, default="float64",
                   help="working precision (default float64)")
    g.add_argument("--scale", choices=(*SCALE_METHODS, "none"), default="standard",
                   help="feature scaling fitted on the training rows and stored in the model "
                   "file (evaluate and predict apply it): standard (zero mean, unit variance; "
                   "the default), minmax ([0, 1]) or none")
    _add_training_options(t.add_argument_group("training"))
    g = t.add_argument_group("output")
    g.add_argument("-o", "--output", default=DEFAULT_MODEL, metavar="MODEL",
                   help=f"model file to write (default {DEFAULT_MODEL})")
    g.add_argument("--plot", metavar="DIR",
                   help="write loss.png (marking the kept / early-stopping iteration) and, "
                   "for image inputs, hidden_weights.png to DIR (needs matplotlib)")
    g.add_argument("--plot-weights", action=argparse.BooleanOptionalAction, default=None,
                   help="with --plot: draw hidden_weights.png (one image per first-layer "
                   "unit) or not; default: only for square images of at least "
                   f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)


def _add_training_options(g: argparse._ArgumentGroup) -> None:
    mini = ", ".join(MINIBATCH_SOLVERS)
    g.add_argument("--solver", choices=SOLVERS, default="lbfgs",
                   help="optimizer (default lbfgs)")
    g.add_argument("--iterations", type=_positive_int, default=200, metavar="N",
                   help=f"iterations (full batch) or epochs ({mini}); default 200")
    g.add_argument("--batch-size", type=_positive_int, default=None, metavar="N",
                   help=f"mini-batch size ({mini} only); default min(200, samples)")
    g.add_argument("--learning-rate", type=_positive_float, default=None, metavar="LR",
                   help=f"step size ({mini} only); default 0.001")
    g.add_argument("--tol", type=_non_negative, default=1e-5,
                   help="convergence tolerance (default 1e-5)")
    g.add_argument("--validation-split", type=_fraction, default=0.1, metavar="F",
                   help="share of the training data used for validation accuracy and early "
                   "stopping (default 0.1; 0 disables)")
    g.add_argument("--patience", type=_positive_int, default=None, metavar="N",
                   help="early stopping: iterations in which neither validation accuracy nor "
                   "validation loss improved (default 20)")
    g.add_argument("--test-split", type=_fraction, default=0.2, metavar="F",
                   help="share of DATA held out for the test accuracy (default 0.2)")
    g.add_argument("--threads", type=_threads, default=None, metavar="N",
                   help="threads of the C++ core (default: all)")
    g.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")


def _add_apply_parsers(sub: argparse._SubParsersAction) -> None:
    """The commands that apply a model to data: evaluate, predict."""
    e = sub.add_parser("evaluate", help="accuracy and confusion matrix of a model on data",
                       description="Evaluate MODEL on DATA (default: the digits test split).")
    e.add_argument("model", metavar="MODEL")
    e.add_argument("data", nargs="?", metavar="DATA")
    _add_data_options(e)
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="write predictions as CSV",
                        description="Predict DATA with MODEL; CSV to stdout or --output.")
    pr.add_argument("model", metavar="MODEL")
    pr.add_argument("data", metavar="DATA")
    pr.add_argument("--label-column", metavar="COL", default=None,
                    help="a CSV column to drop before predicting (name or index)")
    _add_csv_options(pr)
    pr.add_argument("-o", "--output", metavar="CSV", help="write here instead of stdout")
    pr.add_argument("--proba", action="store_true", help="add class probability columns")
    pr.epilog = ("Text from the model file (class names) is written with control characters "
                 "escaped (\\x1b, \\n), one prediction per line.")
    pr.set_defaults(func=cmd_predict)


def _add_gradcheck_parser(sub: argparse._SubParsersAction) -> None:
    gc = sub.add_parser("gradcheck", help="compare backprop with central differences",
                        description="Run the gradient check (debug weights, float64) and "
                        "print the per-layer report; exit 1 if it fails.")
    gc.add_argument("--layers", type=_sizes, default=(3, 5, 3), metavar="SIZES",
                    help="layer sizes incl. inputs and outputs (default 3,5,3)")
    gc.add_argument("--model", metavar="MODEL", help="check the shape and units of this model")
    gc.add_argument("--lambda", dest="lam", type=_non_negative, default=None, metavar="LAMBDA",
                    help="regularization (default 0, or the model's)")
    gc.add_argument("--activation", choices=ACTIVATIONS, default="sigmoid")
    gc.add_argument("--output", choices=OUTPUTS, default="sigmoid")
    gc.add_argument("--examples", type=_positive_int, default=5, metavar="M",
                    help="examples in the check problem (default 5)")
    gc.add_argument("--sample", type=_positive_int, default=None, metavar="N",
                    help="check N randomly chosen parameters (fixed seed; at least one bias "
                    "and one weight per layer); default all, refused with the estimated "
                    "time when that would exceed 60 s")
    gc.add_argument("--tol", type=_positive_float, default=1e-7,
                    help="pass if every relative difference printed (per layer and for the "
                    "whole network; overall, bias and weights) is below this, as printed "
                    "(default 1e-7: an exact gradient of a layer with tiny entries shows "
                    "~5e-9 from the central differences' rounding)")
    gc.set_defaults(func=cmd_gradcheck)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bpnet",
        description="Train and use backpropagation neural networks (C++/Eigen core).",
        epilog=EPILOG, formatter_class=_FMT,
    )
    p.add_argument("--version", action="version",
                   version=f"bpnet {__version__} (distribution {DISTRIBUTION})")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train_parser(sub)
    _add_apply_parsers(sub)
    _add_gradcheck_parser(sub)
    i = sub.add_parser("info", help="describe a model file",
                       description="Verify MODEL and print its metadata.")
    i.add_argument("model", metavar="MODEL")
    i.add_argument("--json", action="store_true", help="print the full metadata as JSON")
    i.set_defaults(func=cmd_info)
    return p
