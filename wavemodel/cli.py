"""``wavemodel`` command line: one subcommand per module of ``wavemodel.commands``.

Each module there exposes ``add_parser(subparsers)`` (it adds its own subparser) and
``run(args) -> int``; this file finds them with ``pkgutil``, so a new command is a new module and
no edit here. Errors in the input (a ``ValueError`` from the model or a command, a bad option) print
one line, ``wavemodel: error: <message>``, to stderr and exit with status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import __version__, commands

USAGE_ERROR = 2
ENVIRONMENT_ERROR = 1


class UsageError(Exception):
    """A bad command line (argparse's complaint), reported in one line."""


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message):             # argparse prints usage + message and exits; we print one line
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _one_line(message) -> str:
    return " ".join(str(message).split())


def command_modules() -> dict:
    """Subcommand modules of ``wavemodel.commands`` by name; a module that fails to import is skipped."""
    found = {}
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{commands.__name__}.{info.name}")
        except Exception as e:  # a colleague's broken command must not take the others down
            print(f"wavemodel: warning: command {info.name!r} not loaded: {_one_line(e)}", file=sys.stderr)
            continue
        if callable(getattr(module, "add_parser", None)) and callable(getattr(module, "run", None)):
            found[info.name] = module
        else:
            print(f"wavemodel: warning: commands/{info.name}.py lacks add_parser(subparsers) or run(args)",
                  file=sys.stderr)
    return found


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="wavemodel",
        description="Predict GEMM and convolution latency on NVIDIA GPUs from tiling, occupancy and waves.",
    )
    parser.add_argument("--version", action="version", version=f"wavemodel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in command_modules().values():
        before = set(sub.choices)
        module.add_parser(sub)
        for name in set(sub.choices) - before:
            sub.choices[name].set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    try:
        args = build_parser().parse_args(argv)
        return int(args._run(args) or 0)
    except SystemExit as e:                # --help, --version
        return e.code if isinstance(e.code, int) else (0 if e.code is None else USAGE_ERROR)
    except (UsageError, ValueError) as e:
        print(f"wavemodel: error: {_one_line(e)}", file=sys.stderr)
        return USAGE_ERROR
    except OSError as e:                   # a file that cannot be written or read
        print(f"wavemodel: error: {_one_line(e)}", file=sys.stderr)
        return ENVIRONMENT_ERROR


if __name__ == "__main__":
    sys.exit(main())
