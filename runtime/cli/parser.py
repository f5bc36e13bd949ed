"""The `crisislens` command: the parser with every stage's subcommands, and `main`, which turns
the errors a user can act on into one line and an exit code.

The runtime registers its own commands (`crisislens.runtime.cli.commands`); the stages that
stand on it (evaluation, distill, export, tui) plug in through the `crisislens.cli` entry-point
group, each with a `register(cli: Cli)` function. Stage modules import their heavy dependencies
(torch, sklearn, textual) inside the command functions, so `crisislens --help` stays fast and
works on a base (runtime-only) install.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, entry_points, version

from crisislens.runtime.cli.base import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_USAGE, Cli, CliError, printable
from crisislens.runtime.cli.commands import register as register_runtime
from crisislens.runtime.errors import CrisisLensError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crisislens",
        description="Explainable, offline triage of crisis social-media posts (text + photo).",
        epilog="Run 'crisislens COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"crisislens {_version()}")
    parser.set_defaults(_handler=None, _group_parser=parser)
    cli = Cli(parser)
    register_runtime(cli)
    for ep in sorted(entry_points(group="crisislens.cli"), key=lambda e: e.name):
        try:
            register = ep.load()
        except ImportError as exc:  # a stage whose own imports are broken must not take the CLI down
            print(f"crisislens: warning: commands of '{ep.name}' unavailable: {exc}", file=sys.stderr)
            continue
        register(cli)
    return parser


def _version() -> str:
    """The installed distribution's version (a checkout run without an install: unknown)."""
    try:
        return version("crisislens")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "_handler", None)
    if handler is None:
        args._group_parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(handler(args) or 0)
    except CliError as exc:  # its text may hold a file name, a CSV header: escape sequences are escaped
        print(f"crisislens: error: {printable(str(exc), keep_newlines=True)}", file=sys.stderr)
        return exc.code
    except CrisisLensError as exc:  # one a command did not catch: still one line, no traceback
        print(f"crisislens: error: {printable(str(exc), keep_newlines=True)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("crisislens: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`crisislens validate ... | head`): stop quietly
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush at exit meets no closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a file (captured, replaced)
        pass
