"""The ``bpnet`` command line: train, evaluate, predict, gradcheck, info.

Exit codes: 0 success, 1 a problem with the data, a model file or a failed
gradient check (one line on stderr, no traceback), 2 bad command-line usage
(or a bad ``BPNET_ISA``), 130 interrupted. Text from the user's files is
printed through :func:`~bpnet.cli.data.shown` (control characters escaped).

The package: :mod:`~bpnet.cli.data` (CSV sniffing and loading),
:mod:`~bpnet.cli.plots` (plots and reports), :mod:`~bpnet.cli.train` and
:mod:`~bpnet.cli.commands` (the subcommands), :mod:`~bpnet.cli.args` (the
parser); :func:`main` runs one command.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from .._about import install_hint
from .._runtime import ISAError
from .args import build_parser, check_train_flags
from .data import UserError, shown

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bpnet`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) == "gradcheck" and len(args.layers) < 2:
        parser.error("--layers needs at least 2 sizes (inputs and outputs)")
    if getattr(args, "command", None) == "train":
        check_train_flags(parser, args)
    from ..persist import ModelFileError

    def fail(msg: str) -> int:
        # one line on stderr, whatever the message holds
        # one line, control characters escaped, whatever the message holds
        print(f"bpnet {args.command}: error: {shown(' '.join(str(msg).split()))}",
              file=sys.stderr)
        return 1

    try:
        return args.func(args)
    except ISAError as err:  # the core chosen on first use (a setting, as a usage error)
        print(f"bpnet {args.command}: error: {shown(err)}", file=sys.stderr)
        return 2
    except (UserError, ModelFileError) as err:
        return fail(str(err))
    except FloatingPointError as err:  # divergence: the fit kept its last good parameters
        return fail(f"training diverged: {err}")
    except ValueError as err:  # invalid settings or data reported by bpnet itself
        if args.command == "train":  # "alpha ..." is "--lambda ..." to the user
            from .train import as_flags

            return fail(as_flags(str(err)))
        return fail(str(err))
    except BrokenPipeError:  # `bpnet predict ... | head`: the reader left
        try:
            sys.stdout = open(os.devnull, "w")  # no flush error at exit
        except OSError:
            pass
        return 1
    except OSError as err:
        from .files import describe

        where = f"{err.filename}: " if err.filename else ""
        return fail(f"{where}{describe(err)}")
    except ImportError as err:
        return fail(f"{err} ({install_hint('cli')})")
    except MemoryError as err:
        return fail(f"out of memory{': ' + str(err) if str(err) else ''} "
                    "(a smaller network, --examples or data set?)")
    except RecursionError:
        return fail("input nested too deeply")
    except KeyboardInterrupt:
        print("bpnet: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # never a traceback: name the failure in one line
        return fail(f"unexpected {type(err).__name__}: {err}")
