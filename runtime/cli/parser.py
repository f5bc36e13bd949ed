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

from crisislens.runtime.cli.base import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_USAGE, Cli, CliError, printable
from crisislens.runtime.cli.commands import register as register_runtime
from crisislens.runtime.errors import CrisisLensError


class _VersionAction(argparse.Action):
    """`--version`, reading the installed distribution's version only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(
            option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, help="show program's version number and exit"
        )

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: object, values: object, option: str | None = None
    ) -> None:
        print(f"crisislens {_version()}")
        parser.exit()


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole command tree; given the command line `argv` that names one of the runtime's own
    commands (`crisislens triage ...`), the other stages' commands are not loaded: their
    imports cost a one-post run a noticeable part of its start."""
    parser = argparse.ArgumentParser(
        prog="crisislens",
        description="Explainable, offline triage of crisis social-media posts (text + photo).",
        epilog="Run 'crisislens COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action=_VersionAction)
    parser.set_defaults(_handler=None, _group_parser=parser)
    cli = Cli(parser)
    register_runtime(cli)
    if argv and cli.is_command(argv[0]):
        return parser  # a runtime command: a leaf no stage adds to
    from importlib.metadata import entry_points

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
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("crisislens")
    except PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
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
