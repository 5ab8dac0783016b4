"""The ``ebm-ppl`` command: thin sub-commands whose flags map one to one onto library arguments.

Each sub-command is a pair ``(add_arguments, run)`` registered in :data:`COMMANDS`; its code
lives in this package (``fit``, ``sample``, ``diagnose``, ``logz``, ``demo``), the top layer of
the library. A user error (a bad flag value, a missing or unreadable file, a bad model spec,
params that do not fit the model) prints one line, ``ebm-ppl: error: ...``, naming the flag,
file or site, and exits with status 2; ``--debug`` prints the traceback as well.

**Trust boundary.** A model spec is Python code: loading it imports its module, which runs
that code, and ``fit --resume DIR`` imports the model named in ``DIR/command.json``. Checkpoints,
params files and data files are data only (arrays and JSON, never unpickled).
"""

from __future__ import annotations

import argparse
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from ebm_ppl.cli.common import TRUST_NOTE, UsageError
from ebm_ppl.cli.demo import demo_arguments, demo_model, run_demo
from ebm_ppl.cli.diagnose import diagnose_arguments, run_diagnose
from ebm_ppl.cli.fit import fit_arguments, run_fit
from ebm_ppl.cli.logz import logz_arguments, run_logz
from ebm_ppl.cli.sample import run_sample, sample_arguments
from ebm_ppl.kernels.compile_cache import enable_compilation_cache

__all__ = ["COMMANDS", "USER_ERRORS", "UsageError", "demo_model", "main"]

COMMANDS: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {
    "demo": (
        "fit an MLP energy to a 2-D toy set by PCD, sample it with MALA, diagnose",
        demo_arguments,
        run_demo,
    ),
    "fit": ("fit an energy model to data (CD, PCD, replay); resumable", fit_arguments, run_fit),
    "sample": (
        "sample a model with MCMC over devices; writes DIR/idata.nc",
        sample_arguments,
        run_sample,
    ),
    "diagnose": (
        "print the mixing report of an idata.nc and write plots",
        diagnose_arguments,
        run_diagnose,
    ),
    "logz": ("estimate log Z (exact, quadrature, ais, elbo, importance)", logz_arguments, run_logz),
}


#: Exceptions that are the user's to fix: printed as one line, exit status 2. ``ValueError`` and
#: ``TypeError`` are what the library raises for a bad argument or bad data (the message names
#: the argument); ``OSError`` covers files that cannot be read or written. A missing optional
#: package (``ModuleNotFoundError`` outside ebm_ppl) is reported with the extra that installs it.
#: Anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (UsageError, ValueError, TypeError, OSError)

# library argument names that differ from their flag's name
_LIBRARY_NAMES = {
    "fit": {
        "num_steps": "--steps",
        "num_mcmc_steps": "--mcmc-steps",
        "checkpoint_dir": "--out",
        "rng_key": "--seed",
        "init_params": "--params",
    },
    "sample": {"rng_key": "--seed", "params": "--params"},
    "logz": {"rng_key": "--seed", "params": "--params"},
    "diagnose": {"group_by": "--group-by", "var_names": "--var-names"},
    "demo": {},
}


# optional dependency -> the extra that installs it
_EXTRAS = {
    "matplotlib": "plot",
    "equinox": "nn",
    "sklearn": "data",
    "flowjax": "flow",
    "blackjax": "bench",
}

# one-word library arguments that messages name as such ("kernel must be one of ...")
_WORD_ARGS = ("kernel", "method", "objective", "optimizer", "thinning", "devices")


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are :class:`UsageError` (one line, status 2)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        raise UsageError(f"{command + ': ' if command else ''}{message}")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _flag_hint(message: str, parser: argparse.ArgumentParser | None, command: str) -> str:
    """`` [--flag]`` for the library argument a library message names, if it has a flag."""
    if parser is None:
        return ""
    flags = {
        a.dest: next((o for o in a.option_strings if o.startswith("--")), a.option_strings[0])
        for a in parser._actions
        if a.option_strings and a.dest not in ("help", "debug")
    }
    flags.update(_LIBRARY_NAMES.get(command, {}))
    named = []
    for name, flag in flags.items():
        # plain words ("data", "out", "steps") name no argument in prose; underscored names do
        if flag in message or flag in named or ("_" not in name and name not in _WORD_ARGS):
            continue
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", message):
            named.append(flag)
    return f" [{', '.join(named)}]" if named else ""


def _describe(e: BaseException) -> str:
    text = _one_line(str(e))
    if isinstance(e, (UsageError, ValueError, TypeError)):
        return text or type(e).__name__
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``ebm-ppl`` parser and its sub-command parsers.

    Examples:
        >>> parser, subparsers = build_parser()
        >>> sorted(subparsers)
        ['demo', 'diagnose', 'fit', 'logz', 'sample']
    """
    parser = _Parser(
        prog="ebm-ppl",
        description="Energy-based models on NumPyro. A user error prints one line "
        "(`ebm-ppl: error: ...`) and exits with status 2; --debug adds the traceback.",
        epilog=TRUST_NOTE,
    )
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of an error as well"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    subparsers: dict[str, argparse.ArgumentParser] = {}
    for name, (help_text, add_args, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        # also accepted after the sub-command; SUPPRESS keeps the top-level value otherwise
        p.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        subparsers[name] = p
    return parser, subparsers


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ebm-ppl`` command.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        the exit status: 0 on success, 1 when a run finished with a failure flag (non-finite
        training, ``diagnose --strict`` on chains that do not mix), 2 for a user error, which
        is printed as one line ``ebm-ppl: error: ...`` on stderr (with the traceback under
        ``--debug``), 130 when interrupted. Other exceptions are bugs and propagate.

    Examples:
        >>> import contextlib, io
        >>> buf = io.StringIO()
        >>> with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
        ...     main(["--help"])
        >>> "demo" in buf.getvalue()
        True
        >>> err = io.StringIO()
        >>> with contextlib.redirect_stderr(err):
        ...     main(["fit", "--steps", "0"])
        2
        >>> err.getvalue()
        "ebm-ppl: error: fit: argument --steps: must be an integer >= 1, got '0'\\n"
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser, subparsers = build_parser()
    command = ""
    try:
        args = parser.parse_args(argv)
        command = args.command
        enable_compilation_cache()  # a second run loads its compiled programs from disk
        return COMMANDS[command][2](args)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] == "ebm_ppl":
            raise  # a module of the library itself: a bug
        if debug:
            traceback.print_exception(e, file=sys.stderr)
        top = e.name.split(".")[0]
        extra = _EXTRAS.get(top)
        hint = f"pip install 'ebm_ppl[{extra}]'" if extra else f"pip install {top}"
        where = f"{command}: " if command else ""
        print(f"ebm-ppl: error: {where}this needs the package {top!r} ({hint})", file=sys.stderr)
        return 2
    except USER_ERRORS as e:
        if debug:
            traceback.print_exception(e, file=sys.stderr)
        message = _describe(e)
        if not isinstance(e, UsageError):
            message += _flag_hint(message, subparsers.get(command), command)
        prefix = f"{command}: " if command and not message.startswith(command + ":") else ""
        print(f"ebm-ppl: error: {prefix}{message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ebm-ppl: interrupted", file=sys.stderr)
        return 130
